//! Extractors: where a request points (version, printer or share, job, document) and JSON
//! bodies with Graph errors instead of axum's plain-text rejections.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};
use upspool_domain::model::JobId;
use upspool_domain::service::JobScope;
use uuid::Uuid;

use crate::graph_error::{ApiError, GraphError};
use crate::views::ApiVersion;

/// The resource a Graph path names, parsed from its segments:
/// `/{version}/print/{printers|shares}/{id}/jobs/{job}/documents/{document}/...`.
/// Ids that cannot be ids are "not found", like ids that do not exist.
#[derive(Clone, Copy, Debug)]
pub struct Addr {
    pub version: ApiVersion,
    pub scope: Option<JobScope>,
    pub job: Option<JobId>,
    pub document: Option<Uuid>,
}

impl Addr {
    pub fn scope(&self) -> JobScope {
        self.scope.expect("route has a printer or share segment")
    }
    pub fn job(&self) -> JobId {
        self.job.expect("route has a job segment")
    }
    pub fn document(&self) -> Uuid {
        self.document.expect("route has a document segment")
    }
}

pub fn parse_uuid(s: &str, what: &'static str) -> Result<Uuid, ApiError> {
    // Only the canonical hyphenated form: other spellings would be other URLs for one thing.
    if s.len() != 36 {
        return Err(ApiError::not_found(what));
    }
    Uuid::parse_str(s).map_err(|_| ApiError::not_found(what))
}

fn parse_job_id(s: &str) -> Result<JobId, ApiError> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0')
    {
        return Err(ApiError::not_found("print job"));
    }
    s.parse().map_err(|_| ApiError::not_found("print job"))
}

impl<S: Send + Sync> FromRequestParts<S> for Addr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let segs: Vec<&str> = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .collect();
        let version = match segs.first() {
            Some(&"beta") => ApiVersion::Beta,
            _ => ApiVersion::V1,
        };
        let mut addr = Addr {
            version,
            scope: None,
            job: None,
            document: None,
        };
        if let Some(id) = segs.get(3) {
            addr.scope = Some(match segs.get(2) {
                Some(&"shares") => JobScope::Share(parse_uuid(id, "printer share")?),
                _ => JobScope::Printer(parse_uuid(id, "printer")?),
            });
        }
        if let (Some(&"jobs"), Some(id)) = (segs.get(4), segs.get(5)) {
            addr.job = Some(parse_job_id(id)?);
        }
        if let (Some(&"documents"), Some(id)) = (segs.get(6), segs.get(7)) {
            addr.document = Some(parse_uuid(id, "print document")?);
        }
        Ok(addr)
    }
}

/// Largest JSON body accepted on Graph routes; real ones are a few hundred bytes.
pub const MAX_JSON_BODY: usize = 256 * 1024;

/// A JSON object body. An empty body reads as `{}`. `@odata.*` annotations at the top level
/// are dropped (Graph bodies may carry `@odata.type`).
pub struct GraphJson(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for GraphJson {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let essence = ct
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" {
                return Err(GraphError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalidRequest",
                    format!("This endpoint takes a JSON body (Content-Type: application/json), not '{essence}'."),
                )
                .into());
            }
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|_| {
                GraphError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalidRequest",
                    format!("The JSON body is larger than {MAX_JSON_BODY} bytes."),
                )
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(GraphJson(Map::new()));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::invalid_request(format!("The request body is not valid JSON: {e}."))
        })?;
        match value {
            Value::Object(mut map) => {
                map.retain(|k, _| !k.starts_with("@odata.") || k.ends_with("@odata.bind"));
                Ok(GraphJson(map))
            }
            _ => Err(ApiError::invalid_request(
                "The request body must be a JSON object.",
            )),
        }
    }
}

/// Refuses properties outside `allowed`, naming the first one found.
pub fn only_properties(
    body: &Map<String, Value>,
    allowed: &[&str],
    ignored: &[&str],
) -> Result<(), ApiError> {
    match body
        .keys()
        .find(|k| !allowed.contains(&k.as_str()) && !ignored.contains(&k.as_str()))
    {
        Some(k) => Err(ApiError::invalid_request(format!(
            "The property '{k}' is not supported here; supported: {}.",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// An optional string property.
pub fn opt_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_request(format!(
            "The property '{key}' must be a string."
        ))),
    }
}
