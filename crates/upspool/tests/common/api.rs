//! A small Graph client for the end-to-end tests: plain reqwest calls, no upspool code, so the
//! tests see exactly what a real client sees.
#![allow(dead_code)]

use rand::{RngCore, SeedableRng};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub struct Api {
    pub http: Client,
    /// e.g. `http://127.0.0.1:PORT`
    pub base: String,
    /// `v1.0` or `beta`
    pub version: &'static str,
    /// Sent as `Authorization: Bearer` on Graph calls (not on upload or download URLs).
    pub token: Option<String>,
}

/// A job with its one document, on a printer or a share.
#[derive(Clone, Debug)]
pub struct JobRef {
    /// `printers/{id}` or `shares/{id}`
    pub scope: String,
    pub job: String,
    pub document: String,
}

impl JobRef {
    pub fn job_path(&self) -> String {
        format!("/print/{}/jobs/{}", self.scope, self.job)
    }
    pub fn document_path(&self) -> String {
        format!("{}/documents/{}", self.job_path(), self.document)
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub fn sha256(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.trim_end_matches('/').to_string(),
            version: "v1.0",
            token: None,
        }
    }

    /// The same client, calling Graph routes with `token`.
    pub fn with_token(&self, token: &str) -> Self {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            version: self.version,
            token: Some(token.to_string()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}{}", self.base, self.version, path)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A JSON body, asserting the status first (and showing the body when it differs).
    pub async fn expect(resp: Response, status: StatusCode) -> Value {
        let got = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.expect("body");
        assert_eq!(got, status, "unexpected status; body: {text}");
        if text.is_empty() {
            return Value::Null;
        }
        assert_eq!(ct.as_deref(), Some("application/json"), "JSON content type");
        serde_json::from_str(&text).expect("JSON body")
    }

    pub async fn printer(&self, name: &str) -> String {
        let v = Self::expect(
            self.post("/print/printers", json!({"displayName": name}))
                .await,
            StatusCode::CREATED,
        )
        .await;
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn share(&self, printer: &str, name: &str) -> String {
        let v = Self::expect(
            self.post(
                "/print/shares",
                json!({
                    "displayName": name,
                    "allowAllUsers": true,
                    "printer@odata.bind": format!("{}/v1.0/print/printers/{printer}", self.base),
                }),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// Creates a job on `scope` (`printers/{id}` or `shares/{id}`).
    pub async fn job(&self, scope: &str) -> JobRef {
        let v = Self::expect(
            self.post(
                &format!("/print/{scope}/jobs"),
                json!({"configuration": {"copies": 1}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        JobRef {
            scope: scope.to_string(),
            job: v["id"].as_str().unwrap().to_string(),
            document: v["documents"][0]["id"].as_str().unwrap().to_string(),
        }
    }

    /// createUploadSession; returns the session JSON.
    pub async fn session(&self, job: &JobRef, size: u64) -> Value {
        Self::expect(
            self.post(
                &format!("{}/createUploadSession", job.document_path()),
                json!({"properties": {"documentName": "test.pdf", "contentType": "application/pdf", "size": size}}),
            )
            .await,
            StatusCode::OK,
        )
        .await
    }

    /// A fresh printer, job and session of `size` bytes: (job, uploadUrl).
    pub async fn ready_upload(&self, size: u64) -> (JobRef, String) {
        let printer = self.printer("Test printer").await;
        let job = self.job(&format!("printers/{printer}")).await;
        let s = self.session(&job, size).await;
        (job, s["uploadUrl"].as_str().unwrap().to_string())
    }

    /// PUT one segment with the RFC Content-Range form.
    pub async fn put(&self, url: &str, start: u64, total: u64, bytes: &[u8]) -> Response {
        let end = start + bytes.len() as u64 - 1;
        self.http
            .put(url)
            .header("Content-Range", format!("bytes {start}-{end}/{total}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT sent")
    }

    /// GET on the upload URL: the session status JSON.
    pub async fn status(&self, url: &str) -> Value {
        Self::expect(
            self.http.get(url).send().await.expect("GET sent"),
            StatusCode::OK,
        )
        .await
    }

    /// Uploads all of `data` in `segment`-sized pieces, in order; returns the final response JSON.
    pub async fn upload_all(&self, url: &str, data: &[u8], segment: usize) -> Value {
        let total = data.len() as u64;
        let mut last = Value::Null;
        for (i, chunk) in data.chunks(segment).enumerate() {
            let start = (i * segment) as u64;
            let resp = self.put(url, start, total, chunk).await;
            let expected = if start + chunk.len() as u64 == total {
                StatusCode::CREATED
            } else {
                StatusCode::ACCEPTED
            };
            last = Self::expect(resp, expected).await;
        }
        last
    }

    /// Follows `$value` to the download URL; returns (download URL, bytes).
    pub async fn download(&self, job: &JobRef) -> (String, Vec<u8>) {
        let resp = self.get(&format!("{}/$value", job.document_path())).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let body = self.http.get(&location).send().await.expect("download");
        assert_eq!(body.status(), StatusCode::OK);
        (location, body.bytes().await.unwrap().to_vec())
    }
}

/// Asserts a Graph error envelope with the given status, code and inner code.
/// An upload URL whose session is gone (deleted, replaced, expired or never there): `404
/// itemNotFound` with the inner code `uploadSessionNotFound`.
pub async fn assert_session_gone(resp: Response) -> Value {
    assert_graph_error(
        resp,
        StatusCode::NOT_FOUND,
        "itemNotFound",
        Some("uploadSessionNotFound"),
    )
    .await
}

pub async fn assert_graph_error(
    resp: Response,
    status: StatusCode,
    code: &str,
    inner: Option<&str>,
) -> Value {
    let request_id = resp
        .headers()
        .get("request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let v = Api::expect(resp, status).await;
    assert_eq!(v["error"]["code"], code, "error code in {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message in {v}"
    );
    match inner {
        Some(i) => assert_eq!(v["error"]["innerError"]["code"], i, "inner code in {v}"),
        None => assert!(
            v["error"]["innerError"].get("code").is_none(),
            "no inner code in {v}"
        ),
    }
    assert_eq!(
        v["error"]["innerError"]["request-id"].as_str(),
        request_id.as_deref(),
        "innerError request-id equals the header"
    );
    v
}
