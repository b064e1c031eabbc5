//! Graph calls over reqwest (rustls, system roots plus an optional extra CA): printers,
//! shares, jobs, upload sessions. Only documented Universal Print calls, so the same client
//! works against upspool and against Microsoft Graph itself.
//!
//! Every call is one attempt; [`crate::retry::RetryPolicy`] decides about repeating it.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::error::{ClientError, Result};
use crate::plan::{parse_ranges, ByteRange};
use crate::retry::parse_retry_after;

/// Where jobs go: a printer share (how users print) or a printer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Share(String),
    Printer(String),
}

impl Scope {
    /// `shares/{id}` or `printers/{id}`, the path under `/print/`.
    pub fn path(&self) -> String {
        match self {
            Scope::Share(id) => format!("shares/{id}"),
            Scope::Printer(id) => format!("printers/{id}"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A job as created: its id and its one document's id.
#[derive(Clone, Debug)]
pub struct CreatedJob {
    pub job: String,
    pub document: String,
}

/// An upload session: where to send bytes and what is still missing.
#[derive(Clone, Debug)]
pub struct SessionStatus {
    pub expiration: Option<chrono::DateTime<chrono::Utc>>,
    pub missing: Vec<ByteRange>,
}

/// The answer to a segment: more is expected, or the document is complete.
#[derive(Debug)]
pub enum PutOutcome {
    Accepted,
    Completed(Value),
}

/// Connection settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// e.g. `https://graph.microsoft.com` or `http://127.0.0.1:8631`; `/v1.0` is added.
    pub server: String,
    /// Bearer token for Graph calls (never sent to upload URLs).
    pub token: Option<String>,
    /// An extra trusted root, PEM, besides the system's.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Longest wait for the service to start answering one request.
    pub read_timeout: Option<Duration>,
}

/// A Graph client. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct Graph {
    http: Client,
    base: String,
    token: Option<String>,
}

impl Graph {
    pub fn new(settings: &Settings) -> Result<Self> {
        let base = settings.server.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Config(format!("invalid server URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "the server URL must start with http:// or https://, not {base:?}"
            )));
        }
        let mut builder = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(settings.read_timeout.unwrap_or(Duration::from_secs(120)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("upspool-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| ClientError::Config(format!("unusable CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up HTTPS: {e}")))?;
        Ok(Graph {
            http,
            base,
            token: settings.token.clone(),
        })
    }

    /// The server URL as configured (no trailing slash).
    pub fn server(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        let what = format!("{method} {path}");
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::transport(&what, e))?;
        check(resp, &what).await
    }

    async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let what = format!("{method} {path}");
        let resp = self.call(method, path, body).await?;
        read_json(resp, &what).await
    }

    /// Every item of a collection, following `@odata.nextLink`.
    async fn collection(&self, path: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut page = self.json(Method::GET, path, None).await?;
        loop {
            match page.get_mut("value").map(Value::take) {
                Some(Value::Array(items)) => out.extend(items),
                _ => {
                    return Err(ClientError::Protocol {
                        what: format!("GET {path}"),
                        detail: "no 'value' array".into(),
                    })
                }
            }
            let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) else {
                return Ok(out);
            };
            let rel = next
                .strip_prefix(&format!("{}/v1.0", self.base))
                .ok_or_else(|| ClientError::Protocol {
                    what: format!("GET {path}"),
                    detail: format!("nextLink {next:?} points to another server"),
                })?
                .to_string();
            page = self.json(Method::GET, &rel, None).await?;
        }
    }

    pub async fn printers(&self) -> Result<Vec<Value>> {
        self.collection("/print/printers").await
    }

    pub async fn shares(&self) -> Result<Vec<Value>> {
        self.collection("/print/shares").await
    }

    /// A share id from an id or a display name. An exact id wins; otherwise the name must
    /// match exactly one share's `displayName` (case-insensitively).
    pub async fn resolve_share(&self, id_or_name: &str) -> Result<String> {
        let shares = self.shares().await?;
        if shares.iter().any(|s| s["id"] == id_or_name) {
            return Ok(id_or_name.to_string());
        }
        let matching: Vec<&Value> = shares
            .iter()
            .filter(|s| {
                s["displayName"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(id_or_name))
            })
            .collect();
        match matching.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            [] => Err(ClientError::Target(format!(
                "no printer share has the id or name {id_or_name:?} ({} shares visible; \
                 `upspool shares` lists them)",
                shares.len()
            ))),
            many => Err(ClientError::Target(format!(
                "{} printer shares are named {id_or_name:?}; give the id instead: {}",
                many.len(),
                many.iter()
                    .filter_map(|s| s["id"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// `POST /print/{scope}/jobs` with a `printJobConfiguration`; the job comes with one
    /// empty document.
    pub async fn create_job(
        &self,
        scope: &Scope,
        configuration: &Value,
        display_name: &str,
    ) -> Result<CreatedJob> {
        let path = format!("/print/{scope}/jobs");
        let body = json!({"displayName": display_name, "configuration": configuration});
        let v = self.json(Method::POST, &path, Some(&body)).await?;
        let job = v["id"].as_str();
        let document = v["documents"][0]["id"].as_str();
        match (job, document) {
            (Some(j), Some(d)) => Ok(CreatedJob {
                job: j.to_string(),
                document: d.to_string(),
            }),
            _ => Err(ClientError::Protocol {
                what: format!("POST {path}"),
                detail: "the job has no id or no document".into(),
            }),
        }
    }

    /// `createUploadSession` for the job's document: (uploadUrl, status).
    pub async fn create_upload_session(
        &self,
        scope: &Scope,
        job: &CreatedJob,
        document_name: &str,
        content_type: &str,
        size: u64,
    ) -> Result<(String, SessionStatus)> {
        let path = format!(
            "/print/{scope}/jobs/{}/documents/{}/createUploadSession",
            job.job, job.document
        );
        let body = json!({"properties": {
            "documentName": document_name, "contentType": content_type, "size": size,
        }});
        let v = self.json(Method::POST, &path, Some(&body)).await?;
        let url = v["uploadUrl"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol {
                what: format!("POST {path}"),
                detail: "no uploadUrl".into(),
            })?
            .to_string();
        Ok((url, session_status(&v, size, &path)?))
    }

    /// `GET {uploadUrl}`: what is still missing. A vanished session is
    /// [`ClientError::SessionGone`].
    pub async fn session_status(&self, upload_url: &str, size: u64) -> Result<SessionStatus> {
        let what = "GET {uploadUrl}";
        let resp = self
            .http
            .get(upload_url)
            .send()
            .await
            .map_err(|e| ClientError::transport(what, e))?;
        let resp = check_session(resp, what).await?;
        let v = read_json(resp, what).await?;
        session_status(&v, size, what)
    }

    /// `PUT {uploadUrl}` of `range` with `body` (exactly `range.len()` bytes).
    pub async fn put_segment(
        &self,
        upload_url: &str,
        range: ByteRange,
        size: u64,
        body: reqwest::Body,
    ) -> Result<PutOutcome> {
        let what = format!("PUT {{uploadUrl}} bytes {range}");
        let resp = self
            .http
            .put(upload_url)
            .header(CONTENT_RANGE, format!("bytes {range}/{size}"))
            .header(CONTENT_LENGTH, range.len())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::transport(&what, e))?;
        let status = resp.status();
        let resp = check_session(resp, &what).await?;
        if status == StatusCode::ACCEPTED {
            Ok(PutOutcome::Accepted)
        } else {
            Ok(PutOutcome::Completed(read_json(resp, &what).await?))
        }
    }

    /// `DELETE {uploadUrl}`, ending a session whose bytes are no longer wanted.
    pub async fn delete_session(&self, upload_url: &str) -> Result<()> {
        let what = "DELETE {uploadUrl}";
        let resp = self
            .http
            .delete(upload_url)
            .send()
            .await
            .map_err(|e| ClientError::transport(what, e))?;
        check_session(resp, what).await.map(drop)
    }

    /// `POST .../jobs/{id}/start`: the job's status.
    pub async fn start_job(&self, scope: &Scope, job: &str) -> Result<Value> {
        self.json(
            Method::POST,
            &format!("/print/{scope}/jobs/{job}/start"),
            None,
        )
        .await
    }

    /// `GET .../jobs/{id}?$expand=documents`.
    pub async fn job(&self, scope: &Scope, job: &str) -> Result<Value> {
        self.json(
            Method::GET,
            &format!("/print/{scope}/jobs/{job}?$expand=documents"),
            None,
        )
        .await
    }

    /// Every job of a scope, newest first (sorted here: `$orderby` is not documented for
    /// print jobs in Graph).
    pub async fn jobs(&self, scope: &Scope) -> Result<Vec<Value>> {
        let mut jobs = self.collection(&format!("/print/{scope}/jobs")).await?;
        jobs.sort_by(|a, b| {
            let t = |v: &Value| v["createdDateTime"].as_str().unwrap_or("").to_string();
            t(b).cmp(&t(a))
        });
        Ok(jobs)
    }

    /// `POST .../jobs/{id}/cancel`.
    pub async fn cancel_job(&self, scope: &Scope, job: &str) -> Result<()> {
        self.call(
            Method::POST,
            &format!("/print/{scope}/jobs/{job}/cancel"),
            None,
        )
        .await
        .map(drop)
    }

    /// Finds which share (or else printer) a job id belongs to, for commands given only the
    /// job id: Graph addresses a job through its share or printer.
    pub async fn find_job(&self, job: &str) -> Result<(Scope, Value)> {
        let mut scopes: Vec<Scope> = self
            .shares()
            .await?
            .iter()
            .filter_map(|s| s["id"].as_str().map(|id| Scope::Share(id.into())))
            .collect();
        // Printers are visible to administrators only; without them, shares are all we have.
        if let Ok(printers) = self.printers().await {
            scopes.extend(
                printers
                    .iter()
                    .filter_map(|p| p["id"].as_str().map(|id| Scope::Printer(id.into()))),
            );
        }
        for scope in scopes {
            match self.job(&scope, job).await {
                Ok(v) => return Ok((scope, v)),
                Err(ClientError::Api { status: 404, .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Target(format!(
            "no job {job:?} on any share or printer visible to you"
        )))
    }
}

/// `expirationDateTime` and `nextExpectedRanges` of a session answer.
fn session_status(v: &Value, size: u64, what: &str) -> Result<SessionStatus> {
    let items: Vec<String> = match v.get("nextExpectedRanges") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(ClientError::Protocol {
                what: what.into(),
                detail: "nextExpectedRanges is not an array".into(),
            })
        }
    };
    let expiration = v["expirationDateTime"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    Ok(SessionStatus {
        expiration,
        missing: parse_ranges(&items, size)?,
    })
}

/// Upload URL answers: `404`/`410` mean the session is gone.
async fn check_session(resp: Response, what: &str) -> Result<Response> {
    match resp.status() {
        StatusCode::NOT_FOUND | StatusCode::GONE => Err(ClientError::SessionGone),
        _ => check(resp, what).await,
    }
}

/// A success response, or its Graph error as [`ClientError::Api`].
async fn check(resp: Response, what: &str) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after(resp.headers());
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v["error"].is_object() => (
            v["error"]["code"].as_str().unwrap_or("").to_string(),
            v["error"]["message"].as_str().unwrap_or("").to_string(),
        ),
        _ => (
            status.canonical_reason().unwrap_or("").to_string(),
            text.chars().take(200).collect(),
        ),
    };
    Err(ClientError::Api {
        what: what.into(),
        status: status.as_u16(),
        code,
        message,
        retry_after,
    })
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

async fn read_json(resp: Response, what: &str) -> Result<Value> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::transport(what, e))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
        what: what.into(),
        detail: format!("invalid JSON: {e}"),
    })
}
