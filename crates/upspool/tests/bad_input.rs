//! A corpus of malformed and hostile requests against the real server, each with the exact
//! answer it must get: status, Graph code and inner code, and a message that names what is
//! wrong. After every case the server must still serve, and nothing it stores may have
//! changed (printers, shares, jobs and their states, the document, the upload session's
//! received ranges).

mod common;

use common::api::{random_bytes, Api};
use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What a case sends as its body.
enum Body {
    None,
    /// Sent as `application/json` unless the case sets a Content-Type.
    Json(String),
    Bytes(Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    /// With `{P}` printer, `{S}` share, `{J}` job, `{D}` document, `{U}` the upload URL's
    /// path and query, `{SID}` the session id, `{JOBS}` the printer's job collection.
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Body,
    status: u16,
    code: &'static str,
    inner: Option<&'static str>,
    /// A word the message must contain (case-insensitive), showing it says what is wrong.
    mentions: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    status: u16,
    code: &'static str,
    inner: Option<&'static str>,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Body::None,
        status,
        code,
        inner,
        mentions,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }
    fn json(mut self, body: impl Into<String>) -> Self {
        self.body = Body::Json(body.into());
        self
    }
    fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Body::Bytes(body);
        self
    }
    /// A segment PUT on the upload URL with this Content-Range and a body of `len` bytes.
    fn segment(name: &'static str, range: &str, len: usize) -> Self {
        case(
            name,
            Method::PUT,
            "{U}",
            400,
            "invalidRequest",
            None,
            "Content-Range",
        )
        .header("Content-Range", range)
        .bytes(vec![1; len])
    }
    fn expect(mut self, status: u16, code: &'static str, inner: Option<&'static str>) -> Self {
        self.status = status;
        self.code = code;
        self.inner = inner;
        self
    }
    fn mentions(mut self, word: &'static str) -> Self {
        self.mentions = word;
        self
    }
}

const SIZE: u64 = 200_000;
const MAX_SEGMENT: u64 = 64 * 1024;

fn corpus() -> Vec<Case> {
    use Method as M;
    let seg = Case::segment;
    let upload = |s: &'static str, m: Method| case(s, m, "{U}", 0, "", None, "");
    let doc_session = "/v1.0/print/printers/{P}/jobs/{J}/documents/{D}/createUploadSession";
    let session_body = |props: &str| format!("{{\"properties\": {props}}}");
    let good_props = r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": 10}"#;
    let jobs = "/v1.0/print/printers/{P}/jobs";
    let draft = "/v1.0/print/printers/{P}/jobs/{J}/documents/{D}/uploadSession/$value";
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let huge = "x".repeat(200_000);
    let v = vec![
        // Content-Range
        case(
            "Content-Range missing",
            M::PUT,
            "{U}",
            400,
            "invalidRequest",
            None,
            "Content-Range",
        )
        .bytes(vec![1; 10]),
        seg("Content-Range negative start", "bytes -1-9/200000", 10),
        seg("Content-Range negative end", "bytes 0--9/200000", 10),
        seg("Content-Range reversed", "bytes 9-0/200000", 10).mentions("start <= end"),
        seg("Content-Range end at total", "bytes 199990-200000/200000", 11).mentions("< total"),
        seg("Content-Range far beyond total", "bytes 300000-300009/200000", 10),
        seg("Content-Range non-numeric start", "bytes a-9/200000", 10),
        seg("Content-Range non-numeric total", "bytes 0-9/lots", 10),
        seg("Content-Range hex", "bytes 0x0-0x9/200000", 10),
        seg(
            "Content-Range overflowing u64",
            "bytes 0-18446744073709551616/200000",
            10,
        ),
        seg(
            "Content-Range total overflowing u64",
            "bytes 0-9/99999999999999999999999",
            10,
        ),
        seg("Content-Range * range", "bytes */200000", 10).mentions("'*'"),
        seg("Content-Range * total", "bytes 0-9/*", 10).mentions("'*'"),
        seg("Content-Range several ranges", "bytes 0-4,5-9/200000", 10),
        seg("Content-Range without total", "bytes 0-9", 10),
        seg("Content-Range without range", "bytes 200000", 10),
        seg("Content-Range wrong unit", "items 0-9/200000", 10).mentions("bytes"),
        seg("Content-Range no unit", "0-9/200000", 10),
        seg("Content-Range empty", "   ", 10),
        seg("Content-Range trailing garbage", "bytes 0-9/200000 x", 10),
        seg("Content-Range decimal", "bytes 0-9.5/200000", 10),
        case(
            "Content-Range not ASCII",
            M::PUT,
            "{U}",
            400,
            "invalidRequest",
            None,
            "Content-Range",
        )
        .header("Content-Range", b"bytes 0-9/20000\xff")
        .bytes(vec![1; 10]),
        seg("Content-Range total too small", "bytes 0-9/199999", 10)
            .expect(400, "invalidRequest", Some("fragmentLengthMismatch"))
            .mentions("declared size"),
        seg("Content-Range total too large", "bytes 0-9/200001", 10)
            .expect(400, "invalidRequest", Some("fragmentLengthMismatch"))
            .mentions("declared size"),
        seg("Content-Range total zero", "bytes 0-0/0", 1)
            .expect(400, "invalidRequest", Some("fragmentLengthMismatch")),
        seg("body shorter than range", "bytes 100-109/200000", 5)
            .expect(400, "invalidRequest", Some("fragmentLengthMismatch"))
            .mentions("5 bytes"),
        seg("body longer than range", "bytes 100-109/200000", 15)
            .expect(400, "invalidRequest", Some("fragmentLengthMismatch"))
            .mentions("bytes"),
        seg("empty body for an active session", "bytes 100-109/200000", 0)
            .expect(400, "invalidRequest", Some("fragmentLengthMismatch")),
        seg("segment above the limit", "bytes 0-65536/200000", 0)
            .expect(413, "invalidRequest", Some("maxFragmentLengthExceeded"))
            .mentions("maximum"),
        seg("overlap with different bytes", "bytes 0-99/200000", 100)
            .expect(416, "invalidRange", Some("fragmentOverlap"))
            .mentions("overlaps"),
        // Upload URL ids and tokens
        case(
            "session id not a GUID",
            M::PUT,
            "/uploadSessions/not-a-guid?tempauthtoken=x",
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "session",
        )
        .header("Content-Range", "bytes 0-9/200000")
        .bytes(vec![1; 10]),
        case(
            "session id with path traversal",
            M::GET,
            "/uploadSessions/..%2F..%2Fupspool.db?tempauthtoken=x",
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "session",
        ),
        case(
            "session id with backslash traversal",
            M::DELETE,
            "/uploadSessions/..%5C..%5Cupspool.db?tempauthtoken=x",
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "session",
        ),
        case(
            "unknown session",
            M::GET,
            "/uploadSessions/00000000-0000-4000-8000-000000000000?tempauthtoken=x",
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "session",
        ),
        case(
            "wrong tempauthtoken",
            M::PUT,
            "/uploadSessions/{SID}?tempauthtoken=AAAAAAAAAAAAAAAAAAAAAA",
            401,
            "InvalidAuthenticationToken",
            None,
            "tempauthtoken",
        )
        .header("Content-Range", "bytes 100-109/200000")
        .bytes(vec![1; 10]),
        case(
            "missing tempauthtoken",
            M::DELETE,
            "/uploadSessions/{SID}",
            401,
            "InvalidAuthenticationToken",
            None,
            "tempauthtoken",
        ),
        upload("POST on the upload URL", M::POST)
            .expect(405, "notSupported", None)
            .mentions("method"),
        upload("PATCH on the upload URL", M::PATCH)
            .expect(405, "notSupported", None)
            .mentions("method"),
        // JSON bodies
        case(
            "malformed JSON",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "JSON",
        )
        .json(r#"{"properties": {"size": 10"#),
        case(
            "JSON that is not an object",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "object",
        )
        .json("[1, 2]"),
        case(
            "JSON nested too deep",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "recursion",
        )
        .json(format!("{{\"properties\": {deep}}}")),
        case(
            "JSON with trailing garbage",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "JSON",
        )
        .json(format!("{good_props} trailing")),
        case(
            "size as a string",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "size",
        )
        .json(session_body(
            r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": "10"}"#,
        )),
        case(
            "size negative",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "size",
        )
        .json(session_body(
            r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": -1}"#,
        )),
        case("size zero", M::POST, doc_session, 400, "invalidRequest", None, "size").json(
            session_body(
                r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": 0}"#,
            ),
        ),
        case(
            "size fractional",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "size",
        )
        .json(session_body(
            r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": 1.5}"#,
        )),
        case(
            "size beyond u64",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "size",
        )
        .json(session_body(
            r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": 1e30}"#,
        )),
        case(
            "size above the maximum",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            Some("maxFileSizeExceeded"),
            "maximum",
        )
        .json(session_body(
            r#"{"documentName": "a.pdf", "contentType": "application/pdf", "size": 2000000}"#,
        )),
        case(
            "documentName as a number",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "documentName",
        )
        .json(session_body(
            r#"{"documentName": 7, "contentType": "application/pdf", "size": 10}"#,
        )),
        case(
            "documentName huge",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "documentName",
        )
        .json(session_body(&format!(
            r#"{{"documentName": "{huge}", "contentType": "application/pdf", "size": 10}}"#
        ))),
        case(
            "documentName with path traversal and control characters",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "documentName",
        )
        .json(session_body(
            r#"{"documentName": "../../etc/passwd\u0000", "contentType": "application/pdf", "size": 10}"#,
        )),
        case(
            "contentType not a MIME type",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "contentType",
        )
        .json(session_body(
            r#"{"documentName": "a.pdf", "contentType": "pdf", "size": 10}"#,
        )),
        case(
            "unknown property",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "colour",
        )
        .json(format!(r#"{{"properties": {good_props}, "colour": "red"}}"#)),
        case(
            "properties missing",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "properties",
        )
        .json("{}"),
        case(
            "properties of the wrong type",
            M::POST,
            doc_session,
            400,
            "invalidRequest",
            None,
            "properties",
        )
        .json(r#"{"properties": "a.pdf"}"#),
        case(
            "JSON body above the limit",
            M::POST,
            doc_session,
            413,
            "invalidRequest",
            None,
            "larger",
        )
        .json(format!(r#"{{"properties": {good_props}, "pad": "{}"}}"#, "x".repeat(300_000))),
        case(
            "JSON endpoint with a text body",
            M::POST,
            doc_session,
            415,
            "invalidRequest",
            None,
            "JSON",
        )
        .header("Content-Type", "text/plain")
        .json(session_body(good_props)),
        case(
            "JSON endpoint with a form body",
            M::POST,
            jobs,
            415,
            "invalidRequest",
            None,
            "JSON",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .json("configuration=x"),
        case(
            "job with copies of the wrong type",
            M::POST,
            jobs,
            400,
            "invalidRequest",
            None,
            "configuration",
        )
        .json(r#"{"configuration": {"copies": "two"}}"#),
        case(
            "job with an unknown orientation",
            M::POST,
            jobs,
            400,
            "invalidRequest",
            None,
            "sideways",
        )
        .json(r#"{"configuration": {"orientation": "sideways"}}"#),
        case(
            "job with an unknown duplex mode",
            M::POST,
            jobs,
            400,
            "invalidRequest",
            None,
            "configuration",
        )
        .json(r#"{"configuration": {"duplexMode": 3}}"#),
        case(
            "job with an unknown configuration property",
            M::POST,
            jobs,
            400,
            "invalidRequest",
            None,
            "configuration",
        )
        .json(r#"{"configuration": {"stapleEverything": true}}"#),
        case(
            "job with configuration of the wrong type",
            M::POST,
            jobs,
            400,
            "invalidRequest",
            None,
            "configuration",
        )
        .json(r#"{"configuration": [1]}"#),
        case(
            "printer with a numeric name",
            M::POST,
            "/v1.0/print/printers",
            400,
            "invalidRequest",
            None,
            "displayName",
        )
        .json(r#"{"displayName": 42}"#),
        case(
            "printer without a name",
            M::POST,
            "/v1.0/print/printers",
            400,
            "invalidRequest",
            None,
            "displayName",
        )
        .json("{}"),
        case(
            "share bound to no URL",
            M::POST,
            "/v1.0/print/shares",
            400,
            "invalidRequest",
            None,
            "printer@odata.bind",
        )
        .json(r#"{"displayName": "s", "printer@odata.bind": "../../printers/x"}"#),
        case(
            "share with allowAllUsers of the wrong type",
            M::POST,
            "/v1.0/print/shares",
            400,
            "invalidRequest",
            None,
            "allowAllUsers",
        )
        .json(r#"{"displayName": "s", "allowAllUsers": "yes", "printer@odata.bind": "http://h/v1.0/print/printers/{P}"}"#),
        // Ids that are not ids
        case(
            "printer id not a GUID",
            M::GET,
            "/v1.0/print/printers/not-a-guid",
            404,
            "itemNotFound",
            None,
            "printer",
        ),
        case(
            "printer id with path traversal",
            M::GET,
            "/v1.0/print/printers/..%2F..%2Fupspool.db",
            404,
            "itemNotFound",
            None,
            "printer",
        ),
        case(
            "unknown printer",
            M::GET,
            "/v1.0/print/printers/00000000-0000-4000-8000-000000000000",
            404,
            "itemNotFound",
            None,
            "printer",
        ),
        case(
            "job id not a number",
            M::GET,
            "/v1.0/print/printers/{P}/jobs/abc",
            404,
            "itemNotFound",
            None,
            "job",
        ),
        case(
            "job id zero-padded",
            M::GET,
            "/v1.0/print/printers/{P}/jobs/0{J}",
            404,
            "itemNotFound",
            None,
            "job",
        ),
        case(
            "job id overflowing",
            M::GET,
            "/v1.0/print/printers/{P}/jobs/99999999999999999999999",
            404,
            "itemNotFound",
            None,
            "job",
        ),
        case(
            "job id negative",
            M::GET,
            "/v1.0/print/printers/{P}/jobs/-1",
            404,
            "itemNotFound",
            None,
            "job",
        ),
        case(
            "document id not a GUID",
            M::GET,
            "/v1.0/print/printers/{P}/jobs/{J}/documents/{J}",
            404,
            "itemNotFound",
            None,
            "document",
        ),
        case(
            "share id is a printer id",
            M::GET,
            "/v1.0/print/shares/{P}",
            404,
            "itemNotFound",
            None,
            "share",
        ),
        case(
            "path traversal out of the API",
            M::GET,
            "/v1.0/print/%2e%2e/%2e%2e/etc/passwd",
            404,
            "itemNotFound",
            None,
            "not exist",
        ),
        // OData
        case(
            "$filter syntax",
            M::GET,
            "{JOBS}?$filter=status/state%20eq",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$filter",
        ),
        case(
            "$filter unknown state",
            M::GET,
            "{JOBS}?$filter=status/state%20eq%20'melting'",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "melting",
        ),
        case(
            "$filter unterminated string",
            M::GET,
            "{JOBS}?$filter=createdBy/userPrincipalName%20eq%20'a",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "unterminated",
        ),
        case(
            "$filter unsupported operator",
            M::GET,
            "{JOBS}?$filter=isFetchable%20ne%20true",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "ne",
        ),
        case(
            "$top negative",
            M::GET,
            "{JOBS}?$top=-1",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$top",
        ),
        case(
            "$top not a number",
            M::GET,
            "{JOBS}?$top=ten",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$top",
        ),
        case(
            "$top overflowing",
            M::GET,
            "{JOBS}?$top=99999999999999999999999",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$top",
        ),
        case(
            "$skip negative",
            M::GET,
            "{JOBS}?$skip=-5",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$skip",
        ),
        case(
            "$select unknown field",
            M::GET,
            "{JOBS}?$select=id,secretField",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "secretField",
        ),
        case(
            "$orderby unsupported",
            M::GET,
            "{JOBS}?$orderby=displayName",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$orderby",
        ),
        case(
            "$expand unknown",
            M::GET,
            "{JOBS}?$expand=printer",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$expand",
        ),
        case(
            "unknown $ option",
            M::GET,
            "{JOBS}?$frobnicate=1",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "$frobnicate",
        ),
        case(
            "$top given twice",
            M::GET,
            "{JOBS}?$top=1&top=2",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "more than once",
        ),
        case(
            "$top on a single item",
            M::GET,
            "/v1.0/print/printers/{P}/jobs/{J}?$top=1",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "collections",
        ),
        case(
            "query not UTF-8",
            M::GET,
            "{JOBS}?$filter=%ff",
            400,
            "invalidRequest",
            Some("invalidQueryOption"),
            "UTF-8",
        ),
        // Content types and methods
        case(
            "draft upload with a text body",
            M::POST,
            draft,
            415,
            "invalidRequest",
            None,
            "octet-stream",
        )
        .header("Content-Type", "text/plain")
        .header("If-Match", "*")
        .header("Content-Range", "bytes 100-109/200000")
        .bytes(vec![1; 10]),
        case(
            "draft upload without If-Match",
            M::POST,
            draft,
            400,
            "invalidRequest",
            None,
            "If-Match",
        )
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "bytes 100-109/200000")
        .bytes(vec![1; 10]),
        case(
            "draft upload naming another session",
            M::POST,
            draft,
            412,
            "resourceModified",
            None,
            "If-Match",
        )
        .header("Content-Type", "application/octet-stream")
        .header("If-Match", "\"00000000-0000-4000-8000-000000000000\"")
        .header("Content-Range", "bytes 100-109/200000")
        .bytes(vec![1; 10]),
        case(
            "method not allowed on a job",
            M::DELETE,
            "/v1.0/print/printers/{P}/jobs/{J}",
            405,
            "notSupported",
            None,
            "method",
        ),
        case(
            "start while the upload is pending",
            M::POST,
            "/v1.0/print/printers/{P}/jobs/{J}/start",
            400,
            "invalidRequest",
            None,
            "upload",
        )
        .json("{}"),
    ];
    assert_eq!(
        MAX_SEGMENT, 65_536,
        "the limit case above sends 65537 bytes"
    );
    v
}

struct Fixture {
    printer: String,
    share: String,
    job: String,
    document: String,
    upload_path: String,
    session_id: String,
}

impl Fixture {
    fn fill(&self, s: &str) -> String {
        s.replace("{JOBS}", "/v1.0/print/printers/{P}/jobs")
            .replace("{U}", &self.upload_path)
            .replace("{SID}", &self.session_id)
            .replace("{P}", &self.printer)
            .replace("{S}", &self.share)
            .replace("{J}", &self.job)
            .replace("{D}", &self.document)
    }
}

/// Everything the corpus must not change.
async fn snapshot(api: &Api, f: &Fixture) -> Value {
    let get = |path: String| async move {
        let resp = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .expect("the server still answers");
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    };
    let mut session = get(f.upload_path.clone()).await;
    session
        .as_object_mut()
        .unwrap()
        .remove("expirationDateTime");
    json!({
        "printers": get("/v1.0/print/printers".into()).await,
        "shares": get("/v1.0/print/shares".into()).await,
        "jobs": get(f.fill("/v1.0/print/printers/{P}/jobs?$expand=documents")).await,
        "session": session,
    })
}

#[tokio::test]
async fn every_malformed_request_gets_its_error_and_changes_nothing() {
    let server = Server::start(
        &[
            "--insecure-dev-auth",
            "--max-segment-size",
            "64KiB",
            "--max-document-size",
            "1MB",
        ],
        &[],
    );
    let api = Api::new(server.base_url());
    let printer = api.printer("Corpus printer").await;
    let share = api.share(&printer, "Corpus share").await;
    let job = api.job(&format!("printers/{printer}")).await;
    let session = api.session(&job, SIZE).await;
    let url = session["uploadUrl"].as_str().unwrap();
    let upload_path = url[url.find("/uploadSessions/").unwrap()..].to_string();
    let session_id =
        upload_path["/uploadSessions/".len()..upload_path.find('?').unwrap()].to_string();
    let data = random_bytes(100, 1);
    Api::expect(api.put(url, 0, SIZE, &data).await, StatusCode::ACCEPTED).await;
    let f = Fixture {
        printer,
        share,
        job: job.job.clone(),
        document: job.document.clone(),
        upload_path,
        session_id,
    };
    let before = snapshot(&api, &f).await;

    let corpus = corpus();
    assert!(corpus.len() >= 60, "{} cases", corpus.len());
    let mut failures = Vec::new();
    for c in &corpus {
        let url = format!("{}{}", server.base_url(), f.fill(&c.path));
        let mut req = api.http.request(c.method.clone(), &url);
        let has_ct = c
            .headers
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case("content-type"));
        for (h, v) in &c.headers {
            req = req.header(*h, reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        req = match &c.body {
            Body::None => req,
            Body::Json(s) if has_ct => req.body(f.fill(s)),
            Body::Json(s) => req
                .header("Content-Type", "application/json")
                .body(f.fill(s)),
            Body::Bytes(b) => req.body(b.clone()),
        };
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let header_id = resp
            .headers()
            .get("request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let e = &v["error"];
        let message = e["message"].as_str().unwrap_or("");
        let ok = status == c.status
            && e["code"] == c.code
            && e["innerError"]["code"].as_str() == c.inner
            && e["innerError"]["request-id"].as_str() == header_id.as_deref()
            && message.to_lowercase().contains(&c.mentions.to_lowercase());
        if !ok {
            failures.push(format!(
                "{}: expected {} {} {:?} mentioning {:?}, got {status} {text}",
                c.name, c.status, c.code, c.inner, c.mentions
            ));
        }
        let after = snapshot(&api, &f).await;
        if after != before {
            failures.push(format!(
                "{}: the store changed:\nbefore {before}\nafter  {after}",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    // Still serving: the upload completes normally.
    let rest = random_bytes((SIZE - 100) as usize, 2);
    for (i, chunk) in rest.chunks(MAX_SEGMENT as usize).enumerate() {
        let start = 100 + (i * MAX_SEGMENT as usize) as u64;
        let resp = api.put(url, start, SIZE, chunk).await;
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    assert_eq!(api.download(&job).await.1, [data, rest].concat());
}
