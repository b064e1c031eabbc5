//! Microsoft's Python Graph SDK against upspool, unchanged but for the base URL and the token.
//!
//! `tests/sdk/python/print_roundtrip.py` uses `msgraph-sdk`'s request builders and
//! `msgraph-core`'s `LargeFileUploadTask` (default 5 MiB slices) from the virtual environment
//! made by `scripts/sdk-env.sh`. It lists shares, prints a 12 MiB file (three slices, the middle
//! one C + 1 bytes, then the task's replay of the last slice) and a small one (one slice, then a
//! replay with an empty body), reads each job back, starts it and downloads the document. The
//! test checks what the SDK reported and, independently, what the server saw and stored.
//!
//! Without the environment the test is skipped, except in CI (`CI` set), where it fails.

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{random_bytes, sha256, Api, JobRef};
use common::sdk;
use common::Server;
use reqwest::StatusCode;
use serde_json::Value;

const MIB: usize = 1024 * 1024;
/// The task's default slice size.
const SLICE: u64 = 5 * MIB as u64;

fn venv_python() -> Option<std::path::PathBuf> {
    sdk::require(
        "the Python SDK environment",
        "SDK_PYTHON",
        sdk::workspace_root().join("target/sdk-env/python/bin/python"),
    )
}

/// `upspool_http_requests_total` for PUTs on upload URLs with `status`.
async fn upload_puts(api: &Api, status: u16) -> u64 {
    sdk::metric(
        &api.base,
        &api.http,
        &format!(
            "upspool_http_requests_total{{method=\"PUT\",route=\"/uploadSessions/{{session}}\",status=\"{status}\"}}"
        ),
    )
    .await
}

#[tokio::test]
async fn python_sdk_prints_uploads_starts_and_downloads() {
    let Some(python) = venv_python() else { return };
    let server = Server::start(&[], &[]);
    let target = sdk::print_target(&server, &Api::new(server.base_url())).await;
    let user = Api::new(server.base_url()).with_token(&target.user_token);

    let files = tempfile::TempDir::new().unwrap();
    let inputs = [
        ("large.pdf", random_bytes(12 * MIB, 7)),
        ("small.pdf", random_bytes(300_000, 8)),
    ];
    for (name, bytes) in &inputs {
        std::fs::write(files.path().join(name), bytes).unwrap();
    }

    let mut cmd = Command::new(&python);
    cmd.arg(sdk::sdk_dir("python/print_roundtrip.py"))
        .args(inputs.iter().map(|(n, _)| files.path().join(n)))
        .env("SDK_BASE_URL", format!("{}/v1.0", server.base_url()))
        .env("SDK_TOKEN", &target.user_token)
        .env("SDK_SHARE_ID", &target.share)
        .env("PYTHONUNBUFFERED", "1");
    let run = sdk::run_program(cmd, Duration::from_secs(300)).await;
    eprintln!("python SDK program ran {:?}", run.elapsed);
    let report = run.json("print_roundtrip.py");

    // The share is listed with its name.
    let shares = report["shares"].as_array().expect("shares");
    assert!(
        shares
            .iter()
            .any(|s| s["id"] == target.share.as_str() && s["displayName"] == "SDK share"),
        "share listed: {report}"
    );

    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), inputs.len(), "{report}");
    for ((name, bytes), job) in inputs.iter().zip(jobs) {
        let size = bytes.len() as u64;
        let doc = job["document"].as_str().expect("document id");
        assert_eq!(job["created_state"], "paused", "{name}: {job}");
        // The session as the SDK parsed it: a timezone-aware expiry, closed ranges.
        assert_eq!(
            job["session"]["nextExpectedRanges"],
            serde_json::json!([format!("0-{}", size - 1)]),
            "{name}: {job}"
        );
        assert!(
            job["session"]["expirationDateTime"]
                .as_str()
                .is_some_and(|t| t.ends_with("+00:00")),
            "{name}: aware expiry: {job}"
        );
        // upload() returned (it raises when the replay is refused) with the replay's answer:
        // the same document.
        let upload = &job["upload"];
        assert_eq!(upload["succeeded"], true, "{name}: {job}");
        assert_eq!(upload["replay_response"]["id"], doc, "{name}: {job}");
        assert_eq!(upload["replay_response"]["size"], size, "{name}: {job}");
        assert_eq!(upload["replay_response"]["documentName"], *name, "{name}");
        // Progress: slices of C, then C + 1 (msgraph-core's arithmetic), up to the size.
        let progress: Vec<Vec<u64>> = serde_json::from_value(upload["progress"].clone()).unwrap();
        assert!(!progress.is_empty(), "{name}: progress reported");
        assert_eq!(progress.last().unwrap()[1], size, "{name}: {progress:?}");

        // Read back with its document, uploaded.
        let back = &job["read_back"];
        assert_eq!(back["id"], job["job"], "{name}");
        let docs = back["documents"].as_array().expect("expanded documents");
        assert_eq!(docs.len(), 1, "{name}: {back}");
        assert_eq!(docs[0]["id"], doc, "{name}");
        assert_eq!(docs[0]["size"], size, "{name}");
        assert_eq!(docs[0]["displayName"], *name, "{name}");
        assert_eq!(docs[0]["contentType"], "application/pdf", "{name}");
        assert!(docs[0]["uploadedDateTime"].is_string(), "{name}: {back}");

        // Started: processing.
        assert_eq!(job["start_status"]["state"], "processing", "{name}: {job}");
        assert_eq!(
            job["status_after_start"]["state"], "processing",
            "{name}: {job}"
        );

        // Downloaded through $value by the SDK, equal to the input.
        assert_eq!(job["download"]["size"], size, "{name}");
        assert_eq!(job["download"]["sha256"], sha256(bytes), "{name}");
        assert_eq!(job["download"]["matches"], true, "{name}");

        // The server's own view, through the test's client: the stored bytes are the file.
        let jref = JobRef {
            scope: format!("shares/{}", target.share),
            job: job["job"].as_str().unwrap().to_string(),
            document: doc.to_string(),
        };
        let (_, stored) = user.download(&jref).await;
        assert_eq!(sha256(&stored), sha256(bytes), "{name}: stored bytes");
        let v: Value = Api::expect(user.get(&jref.job_path()).await, StatusCode::OK).await;
        assert_eq!(v["status"]["state"], "processing", "{name}: {v}");
    }

    // What the server saw: the 12 MiB file in three slices (C, C + 1, the rest), the small one
    // in one; each completion followed by the task's replay, answered 201 as well.
    let large = 12 * MIB as u64;
    let slices = large.div_ceil(SLICE + 1);
    assert_eq!(slices, 3);
    assert_eq!(upload_puts(&user, 202).await, slices - 1, "202 answers");
    assert_eq!(upload_puts(&user, 201).await, 2 * 2, "201 answers (two replays)");
    for status in [400, 404, 413, 416] {
        assert_eq!(upload_puts(&user, status).await, 0, "no {status} on uploads");
    }
}
