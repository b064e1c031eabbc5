//! The upload engine against the real server: every rule of the reference's upload-session
//! section (§8) and its chosen answers, over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::api::{assert_graph_error, assert_session_gone, random_bytes, sha256, Api};
use common::Server;
use futures_util::future::join_all;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn dev_server(extra: &[&str]) -> Server {
    let mut args = vec!["--insecure-dev-auth"];
    args.extend_from_slice(extra);
    Server::start(&args, &[])
}

fn ranges(v: &Value) -> Vec<String> {
    v["nextExpectedRanges"]
        .as_array()
        .expect("nextExpectedRanges")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Graph timestamps: UTC, 7 fractional digits, Z.
fn assert_graph_timestamp(s: &Value) {
    let s = s.as_str().expect("timestamp string");
    assert_eq!(s.len(), "2020-10-25T02:19:38.1694207Z".len(), "{s}");
    assert!(s.ends_with('Z') && s.as_bytes()[19] == b'.', "{s}");
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339");
}

#[tokio::test]
async fn twenty_mib_in_shuffled_segments_over_four_connections_downloads_identically() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let printer = api.printer("Office").await;
    let share = api.share(&printer, "Office share").await;
    let job = api.job(&format!("shares/{share}")).await;

    let data = random_bytes(20 * 1024 * 1024, 7);
    let total = data.len() as u64;
    let session = api.session(&job, total).await;
    assert_eq!(ranges(&session), vec![format!("0-{}", total - 1)]);
    let url = session["uploadUrl"].as_str().unwrap().to_string();

    // Uneven segments (not multiples of anything), shuffled, sent by 4 concurrent workers.
    let mut segments = Vec::new();
    let mut start = 0usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    while start < data.len() {
        let len = (700_001 + (start % 3) * 123_457).min(data.len() - start);
        segments.push((start, len));
        start += len;
    }
    segments.shuffle(&mut rng);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(segments));
    let data = std::sync::Arc::new(data);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (queue, data, url) = (queue.clone(), data.clone(), url.clone());
        let http = reqwest::Client::new();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some((s, len)) = next else { break };
                let resp = http
                    .put(&url)
                    .header(
                        "Content-Range",
                        format!("bytes {}-{}/{}", s, s + len - 1, total),
                    )
                    .body(data[s..s + len].to_vec())
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let body: Value = resp.json().await.unwrap();
                statuses.push((status, body));
            }
            statuses
        }));
    }
    let results: Vec<(StatusCode, Value)> = join_all(workers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "exactly one 201");
    assert!(results
        .iter()
        .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::ACCEPTED));
    let doc = created[0];
    assert_eq!(doc["id"], job.document.as_str());
    assert_eq!(doc["size"], total);
    assert_eq!(doc["displayName"], "test.pdf");
    assert_eq!(doc["documentName"], "test.pdf");
    assert_eq!(doc["contentType"], "application/pdf");
    assert_graph_timestamp(&doc["uploadedDateTime"]);

    // Whole download through $value.
    let (location, bytes) = api.download(&job).await;
    assert!(
        location.starts_with(server.base_url()),
        "same scheme and host"
    );
    assert_eq!(sha256(&bytes), sha256(&data));

    // And by Range.
    let part = api
        .http
        .get(&location)
        .header("Range", "bytes=1048576-2097151")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1048576-2097151/{total}").as_str()
    );
    assert_eq!(part.headers()["content-type"], "application/pdf");
    assert_eq!(&part.bytes().await.unwrap()[..], &data[1048576..2097152]);
}

#[tokio::test]
async fn missing_ranges_are_closed_sorted_and_list_every_gap() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(2500).await;
    let data = random_bytes(2500, 1);

    let r = Api::expect(
        api.put(&url, 1100, 2500, &data[1100..1500]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(ranges(&r), vec!["0-1099", "1500-2499"]);
    assert_graph_timestamp(&r["expirationDateTime"]);
    assert!(
        r.get("@odata.context").is_none(),
        "upload URL answers carry no context"
    );

    let r = Api::expect(
        api.put(&url, 0, 2500, &data[0..1000]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(ranges(&r), vec!["1000-1099", "1500-2499"]);
    let status = api.status(&url).await;
    assert_eq!(ranges(&status), vec!["1000-1099", "1500-2499"]);

    // The doc-example spelling `bytes=a-b/N` works too.
    let resp = api
        .http
        .put(&url)
        .header("Content-Range", "bytes=1000-1099/2500")
        .body(data[1000..1100].to_vec())
        .send()
        .await
        .unwrap();
    let r = Api::expect(resp, StatusCode::ACCEPTED).await;
    assert_eq!(ranges(&r), vec!["1500-2499"]);

    let done = Api::expect(
        api.put(&url, 1500, 2500, &data[1500..]).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(done["size"], 2500);
}

#[tokio::test]
async fn identical_overlaps_are_accepted_and_differing_ones_refused_with_nothing_written() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(3000).await;
    let data = random_bytes(3000, 2);

    Api::expect(
        api.put(&url, 0, 3000, &data[0..1000]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    // Overlaps 500..999 with identical bytes and adds 1000..1499 (the JS SDK's gap case).
    let r = Api::expect(
        api.put(&url, 500, 3000, &data[500..1500]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(ranges(&r), vec!["1500-2999"]);
    // Entirely received, identical: 202 with the current ranges.
    let r = Api::expect(
        api.put(&url, 0, 3000, &data[0..1500]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(ranges(&r), vec!["1500-2999"]);

    // Overlaps received bytes with one differing byte, and would add 1500..2499.
    let mut evil = data[1000..2500].to_vec();
    evil[10] ^= 0xff;
    assert_graph_error(
        api.put(&url, 1000, 3000, &evil).await,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "invalidRange",
        Some("fragmentOverlap"),
    )
    .await;
    // Nothing was recorded: 1500.. is still missing.
    assert_eq!(ranges(&api.status(&url).await), vec!["1500-2999"]);

    // The differing byte comes last in the body this time (new bytes streamed first).
    let mut evil = data[1400..3000].to_vec();
    evil[50] ^= 1; // offset 1450, received
    let resp = api.put(&url, 1400, 3000, &evil).await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(ranges(&api.status(&url).await), vec!["1500-2999"]);

    Api::expect(
        api.put(&url, 1500, 3000, &data[1500..]).await,
        StatusCode::CREATED,
    )
    .await;
    let (_, bytes) = api.download(&job).await;
    assert_eq!(bytes, data, "the refused segments left no trace");
}

#[tokio::test]
async fn malformed_content_ranges_get_specific_errors_and_change_nothing() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(100).await;

    let put = |cr: Option<&str>, body: Vec<u8>| {
        let mut req = api.http.put(&url).body(body);
        if let Some(cr) = cr {
            req = req.header("Content-Range", cr);
        }
        req.send()
    };
    for (cr, len) in [
        (None, 10),
        (Some("bytes 0-9"), 10),
        (Some("bytes */100"), 10),
        (Some("bytes 0-9/*"), 10),
        (Some("items 0-9/100"), 10),
        (Some("bytes -5-9/100"), 10),
        (Some("bytes a-9/100"), 10),
        (Some("bytes 0-18446744073709551616/100"), 10),
        (Some("bytes 0-4,5-9/100"), 10),
        (Some("bytes 9-0/100"), 10),
        (Some("bytes 95-100/100"), 6),
    ] {
        let resp = put(cr, vec![0u8; len]).await.unwrap();
        let v = assert_graph_error(resp, StatusCode::BAD_REQUEST, "invalidRequest", None).await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Content-Range"),
            "{cr:?}: {v}"
        );
    }
    // Total differs from the declared size.
    assert_graph_error(
        put(Some("bytes 0-9/101"), vec![0u8; 10]).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("fragmentLengthMismatch"),
    )
    .await;
    // Body longer and shorter than the range.
    for len in [9, 11] {
        assert_graph_error(
            put(Some("bytes 0-9/100"), vec![0u8; len]).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            Some("fragmentLengthMismatch"),
        )
        .await;
    }
    // A chunked body (no Content-Length) that is shorter than its range.
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(vec![1u8; 4]),
        Ok(vec![2u8; 4]),
    ]);
    let resp = api
        .http
        .put(&url)
        .header("Content-Range", "bytes 0-9/100")
        .body(reqwest::Body::wrap_stream(stream))
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
        ranges(&api.status(&url).await),
        vec!["0-99"],
        "nothing recorded"
    );
}

#[tokio::test]
async fn limits_are_enforced_with_graph_errors() {
    let server = dev_server(&["--max-segment-size", "1024", "--max-document-size", "1MiB"]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(4096).await;

    assert_graph_error(
        api.put(&url, 0, 4096, &[7u8; 1025]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalidRequest",
        Some("maxFragmentLengthExceeded"),
    )
    .await;
    Api::expect(
        api.put(&url, 0, 4096, &[7u8; 1024]).await,
        StatusCode::ACCEPTED,
    )
    .await;

    let too_big = api
        .post(
            &format!("{}/createUploadSession", job.document_path()),
            json!({"properties": {"documentName": "x.pdf", "contentType": "application/pdf", "size": 1024 * 1024 + 1}}),
        )
        .await;
    assert_graph_error(
        too_big,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("maxFileSizeExceeded"),
    )
    .await;
    // The refused request did not replace the working session.
    assert_eq!(ranges(&api.status(&url).await), vec!["1024-4095"]);
}

/// Received bytes may fall into at most `--max-session-ranges` separate ranges: a segment that
/// would start one more is refused before its body is read, with nothing recorded, while a
/// segment that joins or extends received ranges is always taken, so the gaps can be filled.
#[tokio::test]
async fn a_session_holds_at_most_max_session_ranges_separate_ranges() {
    let server = dev_server(&["--max-session-ranges", "3"]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(5000).await;
    let data = random_bytes(5000, 9);
    let put = |a: usize, b: usize| api.put(&url, a as u64, 5000, &data[a..b]);

    for (a, b) in [(0, 100), (1000, 1100), (2000, 2100)] {
        Api::expect(put(a, b).await, StatusCode::ACCEPTED).await;
    }
    let gaps = vec!["100-999", "1100-1999", "2100-4999"];
    assert_eq!(ranges(&api.status(&url).await), gaps);

    // A fourth separate range: refused, nothing recorded.
    let body = assert_graph_error(
        put(3000, 3100).await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("tooManyFragments"),
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains('3'),
        "the message names the limit: {body}"
    );
    assert_eq!(ranges(&api.status(&url).await), gaps);

    // Extending a range (and touching it exactly) is always taken.
    Api::expect(put(2100, 2200).await, StatusCode::ACCEPTED).await;
    // Joining two ranges frees one, so a new separate range fits again.
    Api::expect(put(100, 1000).await, StatusCode::ACCEPTED).await;
    Api::expect(put(3000, 3100).await, StatusCode::ACCEPTED).await;
    assert_eq!(
        ranges(&api.status(&url).await),
        vec!["1100-1999", "2200-2999", "3100-4999"]
    );

    for (a, b) in [(1100, 2000), (2200, 3000)] {
        Api::expect(put(a, b).await, StatusCode::ACCEPTED).await;
    }
    Api::expect(put(3100, 5000).await, StatusCode::CREATED).await;
    let (_, bytes) = api.download(&job).await;
    assert_eq!(bytes, data);
}

#[tokio::test]
async fn create_upload_session_validates_its_properties() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let printer = api.printer("P").await;
    let job = api.job(&format!("printers/{printer}")).await;
    let path = format!("{}/createUploadSession", job.document_path());
    for body in [
        json!({}),
        json!({"properties": {"contentType": "application/pdf"}}),
        json!({"properties": {"contentType": "application/pdf", "size": 0}}),
        json!({"properties": {"contentType": "application/pdf", "size": -5}}),
        json!({"properties": {"contentType": "application/pdf", "size": 1.5}}),
        json!({"properties": {"contentType": "application/pdf", "size": "100"}}),
        json!({"properties": {"size": 100}}),
        json!({"properties": {"contentType": "pdf", "size": 100}}),
        json!({"properties": {"contentType": "application/pdf", "size": 100, "documentName": 5}}),
        json!({"properties": {"contentType": "application/pdf", "size": 100, "colour": "red"}}),
        json!({"properties": {"contentType": "application/pdf", "size": 100}, "extra": 1}),
    ] {
        assert_graph_error(
            api.post(&path, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            None,
        )
        .await;
    }
    // The session form works with @odata.type annotations and a lower-case action name.
    let resp = api
        .http
        .post(api.url(&format!("{}/createuploadsession", job.document_path())))
        .json(&json!({"properties": {"@odata.type": "microsoft.graph.printDocumentUploadProperties", "contentType": "application/pdf", "size": 10}}))
        .send()
        .await
        .unwrap();
    let s = Api::expect(resp, StatusCode::OK).await;
    let upload_url = s["uploadUrl"].as_str().unwrap();
    assert!(upload_url.starts_with(&format!("{}/uploadSessions/", server.base_url())));
    let token = upload_url.split("tempauthtoken=").nth(1).unwrap();
    assert!(
        token.len() >= 22 && !token.contains('&'),
        "at least 128 bits, no '&'"
    );
    assert_eq!(
        s["@odata.context"],
        format!(
            "{}/v1.0/$metadata#microsoft.graph.uploadSession",
            server.base_url()
        )
    );
    assert_graph_timestamp(&s["expirationDateTime"]);
}

#[tokio::test]
async fn unknown_wrong_token_and_replaced_sessions_are_refused() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(10).await;

    let unknown = format!(
        "{}/uploadSessions/{}?tempauthtoken=x",
        server.base_url(),
        uuid_like()
    );
    assert_session_gone(api.http.get(&unknown).send().await.unwrap()).await;
    let not_an_id = format!(
        "{}/uploadSessions/..%2f..%2fetc?tempauthtoken=x",
        server.base_url()
    );
    assert_eq!(
        api.http.get(&not_an_id).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let tampered = format!("{}A", url);
    let resp = api.put(&tampered, 0, 10, &[1u8; 10]).await;
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_graph_error(
        resp,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        None,
    )
    .await;
    let no_token = url.split('?').next().unwrap().to_string();
    assert_eq!(
        api.http.get(&no_token).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        ranges(&api.status(&url).await),
        vec!["0-9"],
        "nothing recorded"
    );

    // Authorization on the upload URL is accepted and ignored.
    let resp = api
        .http
        .put(&url)
        .header("Authorization", "Bearer not-a-real-token")
        .header("Content-Range", "bytes 0-4/10")
        .body(vec![1u8; 5])
        .send()
        .await
        .unwrap();
    Api::expect(resp, StatusCode::ACCEPTED).await;

    // A new session replaces the old one, whose URL is gone from then on.
    let newer = api.session(&job, 10).await;
    assert_session_gone(api.put(&url, 5, 10, &[1u8; 5]).await).await;
    let new_url = newer["uploadUrl"].as_str().unwrap();
    assert_eq!(
        ranges(&api.status(new_url).await),
        vec!["0-9"],
        "partial data discarded"
    );

    // Other methods on an upload URL.
    let resp = api.http.post(new_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp.headers()["allow"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    for m in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
    assert_graph_error(resp, StatusCode::METHOD_NOT_ALLOWED, "notSupported", None).await;
}

fn uuid_like() -> String {
    "3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46".into()
}

#[tokio::test]
async fn replays_after_completion_follow_the_grace_rules() {
    let server = dev_server(&["--replay-grace", "2s"]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(2500).await;
    let data = random_bytes(2500, 3);

    Api::expect(
        api.put(&url, 0, 2500, &data[..2001]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let first = Api::expect(
        api.put(&url, 2001, 2500, &data[2001..]).await,
        StatusCode::CREATED,
    )
    .await;

    // The Python SDK's replay of the final range: same bytes -> the same document.
    let again = Api::expect(
        api.put(&url, 2001, 2500, &data[2001..]).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(again, first);
    // The single-slice form: the same Content-Range with an empty body.
    let resp = api
        .http
        .put(&url)
        .header("Content-Range", "bytes 2001-2499/2500")
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(Api::expect(resp, StatusCode::CREATED).await, first);
    // Different bytes are refused; a wrong total gets the normal 400.
    let mut other = data[2001..].to_vec();
    other[0] ^= 1;
    assert_graph_error(
        api.put(&url, 2001, 2500, &other).await,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "invalidRange",
        Some("fragmentOverlap"),
    )
    .await;
    assert_graph_error(
        api.put(&url, 0, 2501, &data[..10]).await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("fragmentLengthMismatch"),
    )
    .await;
    let status = api.status(&url).await;
    assert_eq!(ranges(&status), Vec::<String>::new());

    // A new session for an uploaded document is refused.
    let resp = api
        .post(
            &format!("{}/createUploadSession", job.document_path()),
            json!({"properties": {"contentType": "application/pdf", "size": 10}}),
        )
        .await;
    assert_graph_error(resp, StatusCode::BAD_REQUEST, "invalidRequest", None).await;

    // After the grace period the URL is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = api.http.get(&url).send().await.unwrap();
        if resp.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "grace never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api.put(&url, 2001, 2500, &data[2001..]).await.status(),
        StatusCode::NOT_FOUND
    );
    // The document itself stays.
    assert_eq!(api.download(&job).await.1, data);
}

#[tokio::test]
async fn delete_discards_the_session_and_the_job_keeps_waiting() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(100).await;
    Api::expect(
        api.put(&url, 0, 100, &[1u8; 50]).await,
        StatusCode::ACCEPTED,
    )
    .await;

    let resp = api.http.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.http.delete(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let j = Api::expect(api.get(&job.job_path()).await, StatusCode::OK).await;
    assert_eq!(j["status"]["state"], "paused");
    assert_eq!(j["status"]["details"], json!(["uploadPending"]));
    let s = api.session(&job, 100).await;
    assert_eq!(ranges(&s), vec!["0-99"]);
}

#[tokio::test]
async fn sessions_expire_after_their_sliding_lifetime() {
    let server = dev_server(&["--session-ttl", "2s", "--sweep-interval", "1s"]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(100).await;
    let r = Api::expect(
        api.put(&url, 0, 100, &[1u8; 10]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let created_expiry =
        chrono::DateTime::parse_from_rfc3339(r["expirationDateTime"].as_str().unwrap()).unwrap();
    // GET does not extend it.
    let s = api.status(&url).await;
    assert_eq!(s["expirationDateTime"], r["expirationDateTime"]);

    let deadline = Instant::now() + Duration::from_secs(20);
    while api.http.get(&url).send().await.unwrap().status() != StatusCode::NOT_FOUND {
        assert!(
            Instant::now() < deadline,
            "session never expired (expiry {created_expiry})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_session_gone(api.put(&url, 10, 100, &[1u8; 10]).await).await;

    // The sweeper removes the expired session's bytes from disk.
    let blobs = server.data_dir().join("blobs");
    while std::fs::read_dir(&blobs).unwrap().count() != 0 {
        assert!(Instant::now() < deadline, "expired bytes never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The job still waits for an upload, and a new session works.
    let j = Api::expect(api.get(&job.job_path()).await, StatusCode::OK).await;
    assert_eq!(j["status"]["details"], json!(["uploadPending"]));
    api.session(&job, 100).await;
}

#[tokio::test]
async fn the_if_match_form_feeds_the_same_engine() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let printer = api.printer("P").await;
    let job = api.job(&format!("printers/{printer}")).await;
    let data = random_bytes(300, 4);
    let path = api.url(&format!("{}/uploadSession/$value", job.document_path()));
    let post = |if_match: Option<&str>, ct: &str, start: usize, end: usize| {
        let mut req = api
            .http
            .post(&path)
            .header("Authorization", "Bearer dev")
            .header("Content-Type", ct)
            .header("Content-Range", format!("bytes {start}-{}/300", end - 1))
            .body(data[start..end].to_vec());
        if let Some(m) = if_match {
            req = req.header("If-Match", m);
        }
        req.send()
    };
    // No session yet.
    assert_session_gone(
        post(Some("*"), "application/octet-stream", 0, 100)
            .await
            .unwrap(),
    )
    .await;

    let s = api.session(&job, 300).await;
    let url = s["uploadUrl"].as_str().unwrap();
    let id = url
        .split("/uploadSessions/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();

    assert_graph_error(
        post(None, "application/octet-stream", 0, 100)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        None,
    )
    .await;
    assert_graph_error(
        post(Some(&uuid_like()), "application/octet-stream", 0, 100)
            .await
            .unwrap(),
        StatusCode::PRECONDITION_FAILED,
        "resourceModified",
        None,
    )
    .await;
    assert_graph_error(
        post(Some(&id), "application/json", 0, 100).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalidRequest",
        None,
    )
    .await;

    let r = Api::expect(
        post(Some(&id), "application/octet-stream", 100, 200)
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(ranges(&r), vec!["0-99", "200-299"]);
    let quoted = format!("\"{id}\"");
    Api::expect(
        post(Some(&quoted), "application/octet-stream", 0, 100)
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    // The upload URL sees the same session state.
    assert_eq!(ranges(&api.status(url).await), vec!["200-299"]);
    let done = Api::expect(
        post(Some("*"), "application/octet-stream; x=y", 200, 300)
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(done["id"], job.document.as_str());
    assert_eq!(api.download(&job).await.1, data);
}

#[tokio::test]
async fn the_same_segment_on_eight_connections_completes_exactly_once() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(4 * 1024 * 1024).await;
    let data = random_bytes(4 * 1024 * 1024, 5);
    Api::expect(
        api.put(&url, 0, data.len() as u64, &data[..1024 * 1024])
            .await,
        StatusCode::ACCEPTED,
    )
    .await;

    let tail = data[1024 * 1024..].to_vec();
    let sends = (0..8).map(|_| {
        let (url, tail) = (url.clone(), tail.clone());
        async move {
            let http = reqwest::Client::new();
            let resp = http
                .put(&url)
                .header(
                    "Content-Range",
                    format!(
                        "bytes {}-{}/{}",
                        1024 * 1024,
                        4 * 1024 * 1024 - 1,
                        4 * 1024 * 1024
                    ),
                )
                .body(tail)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    });
    let results = join_all(sends).await;
    // The first to commit completes (201); the others are replays of identical bytes (201).
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let docs: Vec<&Value> = results.iter().map(|(_, b)| b).collect();
    assert!(
        docs.windows(2).all(|w| w[0] == w[1]),
        "every answer carries the same document"
    );
    assert_eq!(api.download(&job).await.1, data);
}

#[tokio::test]
async fn concurrent_overlapping_segments_with_different_bytes_let_one_win() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(2 * 1024 * 1024).await;
    let total = 2 * 1024 * 1024u64;
    // Eight versions of the first megabyte, sent at once.
    let sends = (0..8u64).map(|i| {
        let url = url.clone();
        async move {
            let body = random_bytes(1024 * 1024, 100 + i);
            let resp = reqwest::Client::new()
                .put(&url)
                .header("Content-Range", format!("bytes 0-1048575/{total}"))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            (resp.status(), body)
        }
    });
    let results = join_all(sends).await;
    let winners: Vec<&Vec<u8>> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(results
        .iter()
        .all(|(s, _)| *s == StatusCode::ACCEPTED || *s == StatusCode::RANGE_NOT_SATISFIABLE));
    let rest = random_bytes(1024 * 1024, 200);
    Api::expect(
        api.put(&url, 1024 * 1024, total, &rest).await,
        StatusCode::CREATED,
    )
    .await;
    let mut expected = winners[0].clone();
    expected.extend_from_slice(&rest);
    assert_eq!(api.download(&job).await.1, expected);
}

#[tokio::test]
async fn acknowledged_ranges_survive_a_restart() {
    let mut server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(1_000_000).await;
    let data = random_bytes(1_000_000, 6);
    Api::expect(
        api.put(&url, 0, 1_000_000, &data[..300_000]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    Api::expect(
        api.put(&url, 600_000, 1_000_000, &data[600_000..700_000])
            .await,
        StatusCode::ACCEPTED,
    )
    .await;

    assert!(server.stop_gracefully().success());
    server.restart();
    // The listener may have a new port; the session URL's path and token stay valid.
    let api = Api::new(server.base_url());
    let path_and_query = &url[url.find("/uploadSessions/").unwrap()..];
    let url = format!("{}{}", server.base_url(), path_and_query);
    assert_eq!(
        ranges(&api.status(&url).await),
        vec!["300000-599999", "700000-999999"]
    );

    Api::expect(
        api.put(&url, 300_000, 1_000_000, &data[300_000..600_000])
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    Api::expect(
        api.put(&url, 700_000, 1_000_000, &data[700_000..]).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(api.download(&job).await.1, data);
}

#[tokio::test]
async fn acknowledged_ranges_survive_a_kill() {
    let mut server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(500_000).await;
    let data = random_bytes(500_000, 8);
    Api::expect(
        api.put(&url, 100_000, 500_000, &data[100_000..250_000])
            .await,
        StatusCode::ACCEPTED,
    )
    .await;

    server.kill();
    server.restart();
    let api = Api::new(server.base_url());
    let url = format!(
        "{}{}",
        server.base_url(),
        &url[url.find("/uploadSessions/").unwrap()..]
    );
    assert_eq!(
        ranges(&api.status(&url).await),
        vec!["0-99999", "250000-499999"]
    );
    Api::expect(
        api.put(&url, 0, 500_000, &data[..100_000]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    Api::expect(
        api.put(&url, 250_000, 500_000, &data[250_000..]).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(api.download(&job).await.1, data);
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test]
async fn large_segments_stream_through_bounded_memory() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let segment = 60 * 1024 * 1024;
    let total = 3 * segment as u64;
    let (job, url) = api.ready_upload(total).await;
    let before = peak_rss_kib(server.pid());

    // Three 60 MiB segments at once, streamed from the client in 1 MiB chunks.
    let sends = (0..3u64).map(|i| {
        let url = url.clone();
        async move {
            let chunks = (0..60u64)
                .map(move |c| Ok::<_, std::io::Error>(random_bytes(1024 * 1024, i * 1000 + c)));
            let resp = reqwest::Client::new()
                .put(&url)
                .header(
                    "Content-Range",
                    format!(
                        "bytes {}-{}/{total}",
                        i * segment as u64,
                        (i + 1) * segment as u64 - 1
                    ),
                )
                .header("Content-Length", segment.to_string())
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
                .send()
                .await
                .unwrap();
            resp.status()
        }
    });
    let statuses = join_all(sends).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    let grown_mib = (peak_rss_kib(server.pid()).saturating_sub(before)) / 1024;
    eprintln!("server peak RSS grew by {grown_mib} MiB for 3 concurrent 60 MiB segments");
    // 180 MiB went through; holding even one body whole would add 60 MiB.
    assert!(grown_mib < 48, "server peak memory grew by {grown_mib} MiB");

    // Completion copied nothing: the blob store holds exactly one file, of the document's size.
    let files: Vec<_> = std::fs::read_dir(server.data_dir().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].metadata().unwrap().len(), total);
    let (_, bytes) = api.download(&job).await;
    assert_eq!(bytes.len() as u64, total);
}

/// A PUT whose body the test feeds chunk by chunk through the returned sender.
fn streaming_put(
    url: &str,
    range: &str,
    len: usize,
) -> (
    tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let req = reqwest::Client::new()
        .put(url)
        .header("Content-Range", range)
        .header("Content-Length", len.to_string())
        .body(reqwest::Body::wrap_stream(stream));
    (tx, tokio::spawn(req.send()))
}

/// Waits until the server reports `n` segment requests in flight.
async fn wait_in_flight(api: &Api, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = format!("upspool_upload_segments_in_flight {n}");
    loop {
        let text = api
            .http
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == want) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server logged that its shutdown began.
async fn wait_shutting_down(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.stderr().contains("shutting down") {
        assert!(Instant::now() < deadline, "shutdown never began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_segment_in_flight_at_shutdown_completes_and_is_acknowledged() {
    let mut server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(200_000).await;
    let data = random_bytes(100_000, 12);
    let (tx, put) = streaming_put(&url, "bytes 0-99999/200000", 100_000);
    tx.send(Ok(data[..40_000].to_vec())).await.unwrap();
    wait_in_flight(&api, 1).await;

    common::sigterm(server.pid());
    wait_shutting_down(&server).await;
    tx.send(Ok(data[40_000..].to_vec())).await.unwrap();
    drop(tx);
    let resp = put
        .await
        .unwrap()
        .expect("the request in flight is answered");
    let r = Api::expect(resp, StatusCode::ACCEPTED).await;
    assert_eq!(ranges(&r), vec!["100000-199999"]);
    assert!(server.wait().success());

    server.restart();
    let url = format!(
        "{}{}",
        server.base_url(),
        &url[url.find("/uploadSessions/").unwrap()..]
    );
    let api = Api::new(server.base_url());
    assert_eq!(ranges(&api.status(&url).await), vec!["100000-199999"]);
}

#[tokio::test]
async fn a_segment_cut_off_by_the_shutdown_timeout_counts_as_never_received() {
    let mut server = dev_server(&["--shutdown-timeout", "1s"]);
    let api = Api::new(server.base_url());
    let (_, url) = api.ready_upload(200_000).await;
    let (tx, put) = streaming_put(&url, "bytes 0-99999/200000", 100_000);
    tx.send(Ok(random_bytes(40_000, 13))).await.unwrap();
    wait_in_flight(&api, 1).await;

    common::sigterm(server.pid());
    assert!(server.wait().success());
    // The client never finished its body; the server gave up on it.
    assert!(
        put.await.unwrap().is_err(),
        "a cut-off request gets no answer"
    );
    drop(tx);

    server.restart();
    let url = format!(
        "{}{}",
        server.base_url(),
        &url[url.find("/uploadSessions/").unwrap()..]
    );
    let api = Api::new(server.base_url());
    assert_eq!(ranges(&api.status(&url).await), vec!["0-199999"]);
}

/// What Microsoft's JS client needs over HTTPS (it treats any URL without `https://` as a
/// relative path and the first path segment as an API version), checked without the SDK: with
/// a TLS listener the upload URL is https with two path segments and a `tempauthtoken` that
/// has no `&`, the `$value` redirect keeps the https scheme (the Python SDK refuses scheme
/// changes), and upload answers are JSON.
#[tokio::test]
async fn with_tls_upload_and_download_urls_are_https_for_the_sdks() {
    let server = dev_server(&["--tls-listen", "127.0.0.1:0"]);
    let https = server.https_url().expect("an HTTPS listener").to_string();
    let mut api = Api::new(&https);
    api.http = common::client_trusting_without_redirects(&server.data_dir().join("tls/cert.pem"));
    let data = random_bytes(3000, 11);
    let (job, url) = api.ready_upload(data.len() as u64).await;
    let rest = url
        .strip_prefix(&format!("{https}/"))
        .unwrap_or_else(|| panic!("upload URL on the HTTPS listener: {url}"));
    let (path, query) = rest.split_once('?').expect("a query");
    assert_eq!(path.split('/').count(), 2, "two path segments: {url}");
    assert!(path.starts_with("uploadSessions/"), "{url}");
    assert!(
        query.starts_with("tempauthtoken=") && !query.contains('&'),
        "{url}"
    );
    let done = api.upload_all(&url, &data, 1000).await;
    assert_eq!(done["size"], 3000);
    let (location, bytes) = api.download(&job).await;
    assert!(
        location.starts_with(&format!("{https}/downloads/")),
        "{location}"
    );
    assert_eq!(sha256(&bytes), sha256(&data));
}

/// A session's row is kept in memory from its creation and between segments, so a segment
/// skips a read; a kept row must never outlive the session. Deleting the printer deletes its
/// jobs, their sessions and their bytes at once, without the upload engine seeing it: the
/// next segment (the first, or a later one) must still be told the session is gone (404), not
/// meet the missing bytes (500). And a session discarded through the engine (DELETE of the
/// upload URL) is gone at once.
#[tokio::test]
async fn a_kept_session_row_never_outlives_its_session() {
    let server = dev_server(&[]);
    let api = Api::new(server.base_url());
    let data = random_bytes(3 * 65536, 5);
    let total = data.len() as u64;

    for sent in [0, 2] {
        let printer = api.printer("Deleted mid-upload").await;
        let job = api.job(&format!("printers/{printer}")).await;
        let url = api.session(&job, total).await["uploadUrl"]
            .as_str()
            .unwrap()
            .to_string();
        for at in (0..sent).map(|i| i * 65536) {
            let resp = api
                .put(&url, at, total, &data[at as usize..][..65536])
                .await;
            Api::expect(resp, StatusCode::ACCEPTED).await;
        }
        let resp = api
            .send(
                reqwest::Method::DELETE,
                &format!("/print/printers/{printer}"),
                None,
            )
            .await;
        Api::expect(resp, StatusCode::NO_CONTENT).await;
        let at = sent * 65536;
        let resp = api.put(&url, at, total, &data[at as usize..]).await;
        assert_session_gone(resp).await;
    }

    let (_, url) = api.ready_upload(total).await;
    let resp = api.put(&url, 0, total, &data[..65536]).await;
    Api::expect(resp, StatusCode::ACCEPTED).await;
    let resp = api.http.delete(&url).send().await.unwrap();
    Api::expect(resp, StatusCode::NO_CONTENT).await;
    let resp = api.put(&url, 65536, total, &data[65536..131072]).await;
    assert_session_gone(resp).await;
}
