//! The outermost middleware: request ids, access logs, request metrics, and rendering of
//! every error response as a Graph error envelope.
//!
//! Logs carry the path but never the query string: upload and download URLs hold secrets there.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::graph_error::GraphError;
use crate::AppState;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
pub static CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// Client-supplied ids longer than this are replaced, so logs and headers stay bounded.
const MAX_CLIENT_ID: usize = 128;

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = Uuid::new_v4().to_string();
    let client_request_id = req
        .headers()
        .get(&CLIENT_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CLIENT_ID)
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %req.uri().path(),
    );

    let mut resp = next.run(req).instrument(span.clone()).await;

    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let graph = resp
            .extensions_mut()
            .remove::<GraphError>()
            .unwrap_or_else(|| GraphError::for_bare_status(status));
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let body = graph.body(&request_id, &client_request_id, &date);
        let (mut parts, _) = resp.into_parts();
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        resp = Response::from_parts(parts, Body::from(body.to_string())).into_response();
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&client_request_id) {
        headers.insert(CLIENT_REQUEST_ID.clone(), v);
    }

    state
        .metrics
        .requests
        .with_label_values(&[&route, method.as_str(), status.as_str()])
        .inc();
    let took = started.elapsed().as_secs_f64();
    state
        .metrics
        .request_seconds
        .with_label_values(&[&route, method.as_str()])
        .observe(took);
    let ms = took * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request finished");
        } else {
            tracing::info!(status = status.as_u16(), ms, "request finished");
        }
    });
    resp
}
