//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::graph_error::ApiResult;
use crate::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The stores answer: safe to send traffic here.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Response> {
    state.service.ready().await?;
    Ok(Json(json!({"status": "ready"})).into_response())
}

pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let active = state.service.active_sessions().await?;
    let gauges = [(
        "upload_sessions_active",
        "Upload sessions accepting segments",
        i64::try_from(active).unwrap_or(i64::MAX),
    )];
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
        .into_response())
}
