//! Microsoft's JS Graph client (`@microsoft/microsoft-graph-client` 3.0.7) against upspool,
//! set up as the README's recipe says: the HTTPS listener with its generated loopback
//! certificate (trusted through `NODE_EXTRA_CA_CERTS`), `customHosts` naming the host, and a
//! static token.
//!
//! `tests/sdk/js/print_roundtrip.js` lists shares, prints a 12 MiB file (three 5 MiB slices) and
//! a small one (one slice) with the client's `LargeFileUploadTask` (after cancelling a first
//! session through the task), reads each job back, starts it, downloads the document and pages
//! through the share's jobs. The test checks what the client reported and, independently,
//! what the server saw and stored.
//!
//! Without `node` or the installed client the test is skipped, except in CI (`CI` set), where it
//! fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::api::{sha256, Api, JobRef};
use common::sdk;
use common::Server;
use serde_json::json;

const MIB: usize = 1024 * 1024;
/// The task's default slice size.
const SLICE: u64 = 5 * MIB as u64;

fn node() -> Option<PathBuf> {
    let node = std::env::var_os("SDK_NODE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("node"))
                    .find(|n| n.is_file())
            })
        })
        .unwrap_or_else(|| PathBuf::from("node"));
    sdk::require("node", "SDK_NODE", node)
}

#[tokio::test]
async fn js_sdk_prints_over_https_with_custom_hosts() {
    let Some(node) = node() else { return };
    let Some(_) = sdk::require(
        "the JS SDK (node_modules)",
        "SDK_JS_MODULES",
        sdk::sdk_dir("js/node_modules/@microsoft/microsoft-graph-client"),
    ) else {
        return;
    };
    let server = Server::start(&["--tls-listen", "127.0.0.1:0"], &[]);
    let https = server.https_url().expect("an HTTPS listener").to_string();
    let cert = server.data_dir().join("tls/cert.pem");
    let mut tls_api = Api::new(&https);
    tls_api.http = common::client_trusting_without_redirects(&cert);
    let target = sdk::print_target(&server, &tls_api).await;
    let user = tls_api.with_token(&target.user_token);
    let plain = Api::new(server.base_url());

    let inputs = sdk::Inputs::new(17);

    let mut cmd = Command::new(&node);
    cmd.arg(sdk::sdk_dir("js/print_roundtrip.js"))
        .args(inputs.paths())
        .env("NODE_EXTRA_CA_CERTS", &cert)
        .env("SDK_BASE_URL", &https)
        .env("SDK_VERSION", "v1.0")
        .env("SDK_TOKEN", &target.user_token)
        .env("SDK_SHARE_ID", &target.share);
    let run = sdk::run_program(cmd, Duration::from_secs(300)).await;
    eprintln!("JS SDK program ran {:?}", run.elapsed);
    let report = run.json("print_roundtrip.js");

    assert!(
        report["shares"]
            .as_array()
            .expect("shares")
            .iter()
            .any(|s| s["id"] == target.share.as_str() && s["displayName"] == "SDK share"),
        "share listed: {report}"
    );
    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), inputs.files.len(), "{report}");
    for ((name, bytes), job) in inputs.files.iter().zip(jobs) {
        let size = bytes.len() as u64;
        let doc = job["document"].as_str().expect("document id");
        assert_eq!(job["created_state"], "paused", "{name}: {job}");
        // The Graph error envelope, turned into a GraphError by the client.
        let early = &job["early_start"];
        assert_eq!(early["status"], 400, "{name}: {job}");
        assert_eq!(early["code"], "invalidRequest", "{name}: {job}");
        assert!(early["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(early["requestId"].is_string(), "{name}: {job}");
        // cancel(): exactly 204, so the client marks the session cancelled.
        assert_eq!(
            job["cancelled_session"],
            json!({"status": 204, "isCancelled": true}),
            "{name}: {job}"
        );
        // An https upload URL with two path segments (the client takes the first as a version).
        let url = job["session"]["url"].as_str().expect("upload URL");
        assert!(
            url.starts_with(&format!("{https}/uploadSessions/")),
            "{name}: {url}"
        );
        // The slices: exactly C bytes each, the last one the rest; the 201 ends the loop.
        let expected: Vec<[u64; 2]> = (0..size.div_ceil(SLICE))
            .map(|i| [i * SLICE, ((i + 1) * SLICE).min(size) - 1])
            .collect();
        assert_eq!(job["upload"]["progress"], json!(expected), "{name}: {job}");
        let body = &job["upload"]["responseBody"];
        assert_eq!(body["id"], doc, "{name}: {job}");
        assert_eq!(body["size"], size, "{name}");
        let back = &job["read_back"];
        assert_eq!(back["documents"][0]["id"], doc, "{name}: {back}");
        assert_eq!(back["documents"][0]["size"], size, "{name}: {back}");
        assert!(
            back["context"]
                .as_str()
                .is_some_and(|c| c.starts_with(&format!("{https}/v1.0/$metadata#"))),
            "{name}: {back}"
        );
        // Through beta: beta's context and beta's extra properties.
        assert!(
            job["beta"]["context"]
                .as_str()
                .is_some_and(|c| c.starts_with(&format!("{https}/beta/$metadata#"))),
            "{name}: {job}"
        );
        assert_eq!(job["beta"]["hasDisplayName"], true, "{name}: {job}");
        assert_eq!(job["start_status"]["state"], "processing", "{name}: {job}");
        assert_eq!(job["status_after_start"]["state"], "processing", "{name}");
        assert_eq!(job["download"]["sha256"], sha256(bytes), "{name}");
        assert_eq!(job["download"]["matches"], true, "{name}");

        let jref = JobRef {
            scope: format!("shares/{}", target.share),
            job: job["job"].as_str().unwrap().to_string(),
            document: doc.to_string(),
        };
        let (_, stored) = user.download(&jref).await;
        assert_eq!(sha256(&stored), sha256(bytes), "{name}: stored bytes");
    }

    // Paging through @odata.nextLink with the client's PageIterator: every job, newest first.
    let mut ids: Vec<&str> = jobs.iter().map(|j| j["job"].as_str().unwrap()).collect();
    ids.reverse();
    assert_eq!(report["paged_job_ids"], json!(ids), "{report}");

    // What the server saw: 3 + 1 slices, one 201 per document, no replays, no errors.
    assert_eq!(
        sdk::upload_requests(&plain, "PUT", 202).await,
        2,
        "202 answers"
    );
    assert_eq!(
        sdk::upload_requests(&plain, "PUT", 201).await,
        2,
        "201 answers"
    );
    for status in [400, 404, 413, 416] {
        assert_eq!(
            sdk::upload_requests(&plain, "PUT", status).await,
            0,
            "no {status} on uploads"
        );
    }
    let deletes = sdk::upload_requests(&plain, "DELETE", 204).await;
    assert_eq!(deletes, 2, "one cancelled session per document");
}
