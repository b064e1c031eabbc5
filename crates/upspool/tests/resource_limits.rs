//! Resource exhaustion against the real server: a full store (a configured quota) answers
//! 507 and damages nothing, slow or greedy clients are cut off or throttled, and oversized
//! requests are refused before their bodies are read.
//!
//! Slow-client tests speak raw HTTP/1.1 over TCP, because they need to stop mid-request.

mod common;

use std::time::{Duration, Instant};

use common::api::{assert_graph_error, random_bytes, Api, JobRef};
use common::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for any condition polled here; a pass normally takes far less.
const DEADLINE: Duration = Duration::from_secs(30);

fn upload_path(url: &str) -> String {
    url[url.find("/uploadSessions/").unwrap()..].to_string()
}

async fn create_session(api: &Api, job: &JobRef, size: u64) -> reqwest::Response {
    api.post(
        &format!("{}/createUploadSession", job.document_path()),
        json!({"properties": {"documentName": "q.pdf", "contentType": "application/pdf", "size": size}}),
    )
    .await
}

#[tokio::test]
async fn a_full_quota_answers_507_and_freed_space_is_usable_again() {
    let server = Server::start(
        &[
            "--insecure-dev-auth",
            "--storage-quota",
            "1MiB",
            "--sweep-interval",
            "200ms",
        ],
        &[],
    );
    let api = Api::new(server.base_url());
    let printer = api.printer("Quota printer").await;
    let scope = format!("printers/{printer}");

    let a = api.job(&scope).await;
    let session = api.session(&a, 600_000).await;
    let url_a = session["uploadUrl"].as_str().unwrap().to_string();
    let data_a = random_bytes(600_000, 1);
    Api::expect(
        api.put(&url_a, 0, 600_000, &data_a[..300_000]).await,
        StatusCode::ACCEPTED,
    )
    .await;

    // 600 000 + 600 000 declared bytes do not fit in 1 MiB.
    let b = api.job(&scope).await;
    let v = assert_graph_error(
        create_session(&api, &b, 600_000).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quotaLimitReached",
        None,
    )
    .await;
    assert!(v["error"]["message"].as_str().unwrap().contains("nothing"));
    // Nothing was recorded for b; a's acknowledged bytes are intact and it completes.
    let doc_b = Api::expect(api.get(&b.document_path()).await, StatusCode::OK).await;
    assert_eq!(doc_b["size"], 0, "{doc_b}");
    assert_eq!(
        api.status(&url_a).await["nextExpectedRanges"],
        json!(["300000-599999"])
    );
    Api::expect(
        api.put(&url_a, 300_000, 600_000, &data_a[300_000..]).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(api.download(&a).await.1, data_a);
    assert_graph_error(
        create_session(&api, &b, 600_000).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quotaLimitReached",
        None,
    )
    .await;

    // Canceling a frees its document's bytes (the sweeper deletes them): b fits again.
    let resp = api
        .post(&format!("{}/cancel", a.job_path()), json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let started = Instant::now();
    let url_b = loop {
        let resp = create_session(&api, &b, 600_000).await;
        if resp.status() == StatusCode::OK {
            let v: Value = resp.json().await.unwrap();
            break v["uploadUrl"].as_str().unwrap().to_string();
        }
        assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(started.elapsed() < DEADLINE, "space was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Deleting a session frees its space at once.
    let c = api.job(&scope).await;
    assert_graph_error(
        create_session(&api, &c, 500_000).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quotaLimitReached",
        None,
    )
    .await;
    let resp = api.http.delete(&url_b).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let s = Api::expect(create_session(&api, &c, 500_000).await, StatusCode::OK).await;
    let data_c = random_bytes(500_000, 3);
    let url_c = s["uploadUrl"].as_str().unwrap();
    api.upload_all(url_c, &data_c, 200_000).await;
    assert_eq!(api.download(&c).await.1, data_c);
}

#[tokio::test]
async fn the_quota_counts_what_is_stored_across_restarts() {
    let mut server = Server::start(&["--insecure-dev-auth", "--storage-quota", "100KB"], &[]);
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(60_000).await;
    let data = random_bytes(60_000, 4);
    api.upload_all(&url, &data, 30_000).await;
    server.restart();
    let api = Api::new(server.base_url());
    let printer = api.printer("After restart").await;
    let job = api.job(&format!("printers/{printer}")).await;
    assert_graph_error(
        create_session(&api, &job, 50_000).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quotaLimitReached",
        None,
    )
    .await;
    Api::expect(create_session(&api, &job, 40_000).await, StatusCode::OK).await;
}

/// A raw HTTP/1.1 connection to the server.
async fn connect(server: &Server) -> TcpStream {
    let addr = server.base_url().trim_start_matches("http://").to_string();
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads one response (status and body) or `None` if the server closed the connection
/// first. Gives up after [`DEADLINE`].
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = head.split(' ').nth(1)?.parse().ok()?;
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    return Some((status, body));
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the server answers or closes within the deadline")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn graph_code(body: &str) -> (String, Option<String>) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON error: {body}"));
    (
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["innerError"]["code"].as_str().map(String::from),
    )
}

/// Starts a PUT of `range` on `path` announcing `length` body bytes and sends `sent` of them.
async fn partial_put(
    server: &Server,
    path: &str,
    range: &str,
    length: u64,
    sent: usize,
) -> TcpStream {
    let mut s = connect(server).await;
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Range: {range}\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![7u8; sent]).await.unwrap();
    s.flush().await.unwrap();
    s
}

#[tokio::test]
async fn a_trickling_body_times_out_with_408_and_records_nothing() {
    let server = Server::start(
        &["--insecure-dev-auth", "--body-idle-timeout", "500ms"],
        &[],
    );
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(1000).await;
    let path = upload_path(&url);
    let mut s = partial_put(&server, &path, "bytes 0-99/1000", 100, 40).await;
    let started = Instant::now();
    let (status, body) = read_response(&mut s)
        .await
        .expect("an answer, not a hang-up");
    assert_eq!(status, 408, "{body}");
    assert_eq!(graph_code(&body).0, "invalidRequest");
    assert!(
        body.contains("nothing from this request was recorded"),
        "{body}"
    );
    assert!(started.elapsed() < DEADLINE);
    assert_eq!(
        api.status(&url).await["nextExpectedRanges"],
        json!(["0-999"])
    );
    // A client that keeps sending is not cut off.
    Api::expect(
        api.put(&url, 0, 1000, &[1u8; 100]).await,
        StatusCode::ACCEPTED,
    )
    .await;
}

#[tokio::test]
async fn trickling_or_oversized_headers_are_cut_off() {
    let server = Server::start(
        &[
            "--insecure-dev-auth",
            "--header-read-timeout",
            "500ms",
            "--max-header-size",
            "16KiB",
        ],
        &[],
    );
    // Headers that never end: the connection is closed without an answer.
    let mut s = connect(&server).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(read_response(&mut s).await, None);
    assert!(started.elapsed() < DEADLINE);

    // A head larger than the bound: 431.
    let mut s = connect(&server).await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    s.write_all(big.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut s).await.expect("an answer");
    assert_eq!(status, 431);

    // Within the bounds all is well.
    let resp = reqwest::get(format!("{}/healthz", server.base_url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_segment_is_refused_before_its_body_is_sent() {
    let server = Server::start(&["--insecure-dev-auth", "--max-segment-size", "1MiB"], &[]);
    let api = Api::new(server.base_url());
    let size = 200 * 1024 * 1024;
    let (_, url) = api.ready_upload(size).await;
    // Announce 100 MiB, send none of it: the answer must come anyway.
    let mut s = partial_put(
        &server,
        &upload_path(&url),
        &format!("bytes 0-{}/{size}", 100 * 1024 * 1024 - 1),
        100 * 1024 * 1024,
        0,
    )
    .await;
    let (status, body) = read_response(&mut s).await.expect("an answer");
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        graph_code(&body),
        (
            "invalidRequest".into(),
            Some("maxFragmentLengthExceeded".into())
        )
    );
}

#[tokio::test]
async fn a_chunked_body_longer_than_its_range_is_refused() {
    let server = Server::start(&["--insecure-dev-auth"], &[]);
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(1000).await;
    let chunks = futures_util::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![3u8; 30])));
    let resp = api
        .http
        .put(&url)
        .header("Content-Range", "bytes 0-99/1000")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_graph_error(
        resp,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("fragmentLengthMismatch"),
    )
    .await;
    assert_eq!(
        api.status(&url).await["nextExpectedRanges"],
        json!(["0-999"])
    );
}

/// Polls `f` until it answers true.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < DEADLINE, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server reports `n` upload segment requests in flight, asking from
/// 127.0.0.2 so that the question does not count against 127.0.0.1's bound.
async fn wait_in_flight(server: &Server, n: u64) {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let url = format!("{}/metrics", server.base_url());
    let want = format!("upspool_upload_segments_in_flight {n}");
    let (client, url, want) = (&client, &url, &want);
    eventually(&format!("{n} segments in flight"), move || async move {
        let text = client.get(url).send().await.unwrap().text().await.unwrap();
        text.lines().any(|l| l == want)
    })
    .await;
}

async fn assert_throttled(resp: reqwest::Response) {
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    assert_graph_error(
        resp,
        StatusCode::TOO_MANY_REQUESTS,
        "activityLimitReached",
        Some("throttledRequest"),
    )
    .await;
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!(secs >= 1);
}

#[tokio::test]
async fn concurrent_requests_per_session_are_bounded_with_429() {
    let server = Server::start(
        &["--insecure-dev-auth", "--max-requests-per-session", "2"],
        &[],
    );
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(1000).await;
    let (_, other) = api.ready_upload(1000).await;
    let path = upload_path(&url);
    let first = partial_put(&server, &path, "bytes 0-99/1000", 100, 10).await;
    let second = partial_put(&server, &path, "bytes 100-199/1000", 100, 10).await;
    wait_in_flight(&server, 2).await;
    assert_throttled(api.put(&url, 200, 1000, &[1u8; 100]).await).await;
    let (api, url) = (&api, &url);
    // Another session is not affected.
    Api::expect(
        api.put(&other, 0, 1000, &[1u8; 100]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    // Hanging up frees the places.
    drop(first);
    drop(second);
    eventually("a place freed", move || async move {
        api.put(url, 200, 1000, &[1u8; 100]).await.status() == StatusCode::ACCEPTED
    })
    .await;
    assert_eq!(
        api.status(url).await["nextExpectedRanges"],
        json!(["0-199", "300-999"]),
        "the abandoned requests recorded nothing"
    );
}

#[tokio::test]
async fn concurrent_requests_per_caller_are_bounded_with_429() {
    let server = Server::start(
        &["--insecure-dev-auth", "--max-requests-per-caller", "3"],
        &[],
    );
    let api = Api::new(server.base_url());
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let (_, url) = api.ready_upload(1000).await;
        stalled.push(partial_put(&server, &upload_path(&url), "bytes 0-99/1000", 100, 1).await);
    }
    wait_in_flight(&server, 3).await;
    assert_throttled(api.get("/print/printers").await).await;
    // Another caller is not affected.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let resp = elsewhere
        .get(format!("{}/v1.0/print/printers", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    stalled.clear();
    let api = &api;
    eventually("a place freed", move || async move {
        api.get("/print/printers").await.status() == StatusCode::OK
    })
    .await;
}

/// A server whose byte store (`DATA_DIR/blobs`) is a 4 MiB tmpfs, mounted in a user and mount
/// namespace (no root needed). An error with the reason when this machine does not allow it.
struct SmallDiskServer {
    child: std::process::Child,
    base_url: String,
    _root: tempfile::TempDir,
}

impl SmallDiskServer {
    fn start() -> Result<Self, String> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let root = tempfile::tempdir().unwrap();
        let probe = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size=4m tmpfs '{}'",
                root.path().display()
            ))
            .output()
            .map_err(|e| format!("no unshare: {e}"))?;
        if !probe.status.success() {
            return Err(format!(
                "cannot mount a tmpfs in a user namespace: {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ));
        }
        // Only the byte store is small: the database keeps room to record deletes.
        let script = format!(
            "mkdir -p '{dir}/data/blobs' && mount -t tmpfs -o size=4m tmpfs '{dir}/data/blobs' && \
             exec '{bin}' serve --data-dir '{dir}/data' --listen 127.0.0.1:0 --insecure-dev-auth",
            dir = root.path().display(),
            bin = common::bin()
        );
        let mut child = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .env_remove("UPSPOOL_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot spawn: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.strip_prefix("upspool listening on http://") {
                    let _ = tx.send(format!("http://{a}"));
                }
            }
        });
        let base_url = rx
            .recv_timeout(common::START_TIMEOUT)
            .map_err(|_| "the server did not start on the small disk".to_string());
        let server = SmallDiskServer {
            child,
            base_url: base_url.clone().unwrap_or_default(),
            _root: root,
        };
        // On error, dropping `server` kills the child.
        base_url.map(|_| server)
    }
}

impl Drop for SmallDiskServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_full_disk_answers_507_damages_nothing_and_recovers() {
    let server = match SmallDiskServer::start() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let api = Api::new(&server.base_url);
    const MIB: usize = 1024 * 1024;
    const SEG: usize = 256 * 1024;
    let (_, url_a) = api.ready_upload(3 * MIB as u64).await;
    let (job_b, url_b) = api.ready_upload(3 * MIB as u64).await;
    let a = random_bytes(3 * MIB, 5);
    let b = random_bytes(3 * MIB, 6);
    for start in (0..2 * MIB).step_by(SEG) {
        let resp = api
            .put(&url_a, start as u64, a.len() as u64, &a[start..start + SEG])
            .await;
        Api::expect(resp, StatusCode::ACCEPTED).await;
    }
    // b fills the disk: some segment is refused with 507, earlier ones were acknowledged.
    let mut acked = Vec::new();
    let mut full_at = None;
    for start in (0..b.len()).step_by(SEG) {
        let resp = api
            .put(&url_b, start as u64, b.len() as u64, &b[start..start + SEG])
            .await;
        if resp.status() == StatusCode::INSUFFICIENT_STORAGE {
            assert_graph_error(
                resp,
                StatusCode::INSUFFICIENT_STORAGE,
                "quotaLimitReached",
                None,
            )
            .await;
            full_at = Some(start);
            break;
        }
        Api::expect(resp, StatusCode::ACCEPTED).await;
        acked.push(start);
    }
    let full_at = full_at.expect("a 4 MiB disk cannot hold 5 MiB");
    // A segment of several blocks has its space allocated before any byte is written: on the
    // full disk that allocation fails, with the same answer and nothing recorded.
    let resp = api
        .put(&url_a, 2 * MIB as u64, a.len() as u64, &a[2 * MIB..])
        .await;
    assert_graph_error(
        resp,
        StatusCode::INSUFFICIENT_STORAGE,
        "quotaLimitReached",
        None,
    )
    .await;
    // Nothing acknowledged was lost, and the refused segments are still missing.
    let missing_a = api.status(&url_a).await["nextExpectedRanges"].clone();
    assert_eq!(missing_a, json!([format!("{}-{}", 2 * MIB, 3 * MIB - 1)]));
    let missing_b = api.status(&url_b).await["nextExpectedRanges"].clone();
    assert_eq!(
        missing_b,
        json!([format!("{full_at}-{}", 3 * MIB - 1)]),
        "acknowledged {acked:?}"
    );
    // Free space by discarding a; b then completes with exactly its bytes.
    let resp = api.http.delete(&url_a).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for start in (full_at..b.len()).step_by(SEG) {
        let resp = api
            .put(&url_b, start as u64, b.len() as u64, &b[start..start + SEG])
            .await;
        let expected = if start + SEG == b.len() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        Api::expect(resp, expected).await;
    }
    assert_eq!(api.download(&job_b).await.1, b);
}
