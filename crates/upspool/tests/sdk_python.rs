//! Microsoft's Python Graph SDK against upspool, unchanged but for the base URL and the token.
//!
//! `tests/sdk/python/print_roundtrip.py` uses `msgraph-sdk`'s request builders and
//! `msgraph-core`'s `LargeFileUploadTask` (default 5 MiB slices) from the virtual environment
//! made by `scripts/sdk-env.sh`. It lists shares, prints a 12 MiB file (three slices, the middle
//! one C + 1 bytes, then the task's replay of the last slice) and a small one (one slice, then a
//! replay with an empty body), reads each job back, starts it and downloads the document. The
//! test checks what the SDK reported and, independently, what the server saw and stored.
//!
//! It runs twice: over plain HTTP on loopback, and over the HTTPS listener with the generated
//! certificate trusted through `SSL_CERT_FILE` (httpx reads it), as a deployment with its own
//! CA would. Without the environment the tests are skipped, except in CI (`CI` set), where they
//! fail.

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{sha256, Api, JobRef};
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

/// Runs the SDK program against a fresh server (`tls`: through its HTTPS listener) and checks
/// everything it reports and everything the server saw.
async fn print_with_the_python_sdk(tls: bool) {
    let Some(python) = venv_python() else { return };
    let server = if tls {
        Server::start(&["--tls-listen", "127.0.0.1:0"], &[])
    } else {
        Server::start(&[], &[])
    };
    let cert = server.data_dir().join("tls/cert.pem");
    // The API base the SDK is given, and a client for the test's own checks on it.
    let (base, http) = match server.https_url() {
        Some(https) => (
            https.to_string(),
            common::client_trusting_without_redirects(&cert),
        ),
        None => (
            server.base_url().to_string(),
            Api::new("http://unused").http,
        ),
    };
    let mut api = Api::new(&base);
    api.http = http;
    let target = sdk::print_target(&server, &api).await;
    let user = api.with_token(&target.user_token);
    // /metrics on the plain listener.
    let plain = Api::new(server.base_url());

    let inputs = sdk::Inputs::new(7);

    let mut cmd = Command::new(&python);
    cmd.arg(sdk::sdk_dir("python/print_roundtrip.py"))
        .args(inputs.paths())
        .env("SDK_BASE_URL", format!("{base}/v1.0"))
        .env("SDK_TOKEN", &target.user_token)
        .env("SDK_SHARE_ID", &target.share)
        .env("PYTHONUNBUFFERED", "1")
        // httpx honours proxy variables: loopback must never go through one.
        .env("NO_PROXY", "127.0.0.1,localhost");
    if tls {
        cmd.env("SSL_CERT_FILE", &cert);
    } else {
        cmd.env_remove("SSL_CERT_FILE");
    }
    let run = sdk::run_program(cmd, Duration::from_secs(300)).await;
    eprintln!("python SDK program (tls: {tls}) ran {:?}", run.elapsed);
    let report = run.json("print_roundtrip.py");
    // LargeFileUploadTask logs and swallows errors inside its loop: there must be none.
    assert!(
        !run.stderr.contains("Error uploading chunk"),
        "the task hit errors:\n{}",
        run.stderr
    );

    // The share is listed with its name.
    let shares = report["shares"].as_array().expect("shares");
    assert!(
        shares
            .iter()
            .any(|s| s["id"] == target.share.as_str() && s["displayName"] == "SDK share"),
        "share listed: {report}"
    );

    // The share's printer through the SDK's `.printer.get()` navigation.
    assert_eq!(
        report["share_printer"],
        serde_json::json!({"id": target.printer, "displayName": "SDK printer"}),
        "{report}"
    );

    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), inputs.files.len(), "{report}");
    for ((name, bytes), job) in inputs.files.iter().zip(jobs) {
        let size = bytes.len() as u64;
        let doc = job["document"].as_str().expect("document id");
        assert_eq!(job["created_state"], "paused", "{name}: {job}");
        // The Graph error envelope, parsed by the SDK into an ODataError.
        let early = &job["early_start"];
        assert_eq!(early["status"], 400, "{name}: {job}");
        assert_eq!(early["code"], "invalidRequest", "{name}: {job}");
        assert!(early["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(early["request_id"].is_string(), "{name}: {job}");
        // The session as the SDK parsed it: a timezone-aware expiry, closed ranges, the
        // upload URL on the listener the SDK was given.
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
        assert!(
            job["session"]["uploadUrl"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{base}/uploadSessions/"))),
            "{name}: {job}"
        );
        // upload() returned (it raises when the replay is refused) with the replay's answer:
        // the same document.
        let upload = &job["upload"];
        assert_eq!(upload["succeeded"], true, "{name}: {job}");
        assert_eq!(upload["replay_response"]["id"], doc, "{name}: {job}");
        assert_eq!(upload["replay_response"]["size"], size, "{name}: {job}");
        assert_eq!(upload["replay_response"]["documentName"], *name, "{name}");
        // Progress: the first slice, then msgraph-core's C + 1 arithmetic, up to the size.
        let progress: Vec<[u64; 2]> = serde_json::from_value(upload["progress"].clone()).unwrap();
        // (It reports ends capped at the size, not size - 1.)
        let mut expected = vec![[0, (SLICE - 1).min(size)]];
        while expected.last().unwrap()[1] < size - 1 {
            let start = expected.last().unwrap()[1] + 1;
            expected.push([start, (start + SLICE).min(size)]);
        }
        assert_eq!(progress, expected, "{name}: progress");

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

        // Downloaded through $value by the SDK (it refuses a redirect that changes the
        // scheme), equal to the input.
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

    // Paging through @odata.nextLink with the SDK's PageIterator: every job, newest first.
    let mut ids: Vec<&str> = jobs.iter().map(|j| j["job"].as_str().unwrap()).collect();
    ids.reverse();
    assert_eq!(report["paged_job_ids"], serde_json::json!(ids), "{report}");

    // What the server saw: the 12 MiB file in three slices (C, C + 1, the rest), the small one
    // in one; each completion followed by the task's replay, answered 201 as well.
    assert_eq!(
        sdk::upload_requests(&plain, "PUT", 202).await,
        2,
        "202 answers"
    );
    assert_eq!(
        sdk::upload_requests(&plain, "PUT", 201).await,
        2 * 2,
        "201 answers (two replays)"
    );
    for status in [400, 404, 413, 416] {
        assert_eq!(
            sdk::upload_requests(&plain, "PUT", status).await,
            0,
            "no {status} on uploads"
        );
    }
}

#[tokio::test]
async fn python_sdk_prints_uploads_starts_and_downloads() {
    print_with_the_python_sdk(false).await;
}

#[tokio::test]
async fn python_sdk_over_https_with_the_generated_certificate() {
    print_with_the_python_sdk(true).await;
}
