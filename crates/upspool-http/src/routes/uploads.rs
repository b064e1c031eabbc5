//! Upload URLs (`PUT`, `GET`, `DELETE {uploadUrl}`) and the draft bearer form
//! (`POST .../uploadSession/$value` with `If-Match`). Both feed the same engine.
//!
//! Authorization headers on upload URLs are ignored: the URL's `tempauthtoken` is the credential.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use upspool_domain::upload::{Segment, SegmentOutcome, SegmentTarget};
use upspool_domain::DomainError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::extract::Addr;
use crate::graph_error::ApiResult;
use crate::views;
use crate::AppState;

/// The `tempauthtoken` of an upload or download URL; missing reads as empty (and fails).
#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    tempauthtoken: String,
}

impl TokenQuery {
    pub fn token(&self) -> &str {
        &self.tempauthtoken
    }
}

fn session_id(s: &str) -> ApiResult<Uuid> {
    crate::extract::parse_uuid(s, "upload session")
        .map_err(|_| DomainError::UploadSessionNotFound.into())
}

/// Header value as text; a header that is not visible ASCII is passed on as unparsable.
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_text(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

fn outcome_response(outcome: SegmentOutcome) -> Response {
    match outcome {
        SegmentOutcome::Accepted(status) => {
            (StatusCode::ACCEPTED, Json(views::session_status(&status))).into_response()
        }
        SegmentOutcome::Completed(doc) => {
            (StatusCode::CREATED, Json(views::completed_document(&doc))).into_response()
        }
    }
}

/// The body as the engine's stream. Waiting longer than `idle` for the next chunk ends the
/// stream with a `TimedOut` error, so a trickling client cannot hold a claim for ever.
fn body_stream(body: Body, idle: Duration) -> upspool_domain::upload::BodyStream {
    let chunks = body.into_data_stream();
    futures_util::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(None) => None,
            Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), Some(chunks))),
            Err(_) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("The request body sent nothing for {}s", idle.as_secs_f64()),
                );
                Some((Err(e), None))
            }
        }
    })
    .boxed()
}

struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(g: &'a prometheus::IntGauge) -> Self {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn put(
    State(st): State<AppState>,
    Path(session): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let session = session_id(&session)?;
    let _permit = st.throttle.session(session)?;
    let _in_flight = InFlight::new(&st.metrics.segments_in_flight);
    let outcome = st
        .service
        .put_segment(
            SegmentTarget::Url {
                session,
                token: &q.tempauthtoken,
            },
            Segment {
                content_range: header_text(&headers, header::CONTENT_RANGE),
                content_length: content_length(&headers),
                body: body_stream(body, st.config.limits.body_idle_timeout),
            },
        )
        .await?;
    Ok(outcome_response(outcome))
}

pub async fn status(
    State(st): State<AppState>,
    Path(session): Path<String>,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Response> {
    let status = st
        .service
        .session_status(session_id(&session)?, &q.tempauthtoken)
        .await?;
    Ok(Json(views::session_status(&status)).into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    Path(session): Path<String>,
    Query(q): Query<TokenQuery>,
) -> ApiResult<StatusCode> {
    st.service
        .delete_session(session_id(&session)?, &q.tempauthtoken)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The draft form: a bearer token, `If-Match: {session id}`, and an octet-stream body.
pub async fn post_draft(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let _permit = st.throttle.session(addr.document())?;
    let _in_flight = InFlight::new(&st.metrics.segments_in_flight);
    let ct = header_text(&headers, header::CONTENT_TYPE).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/octet-stream") {
        return Err(DomainError::UnsupportedMediaType(format!(
            "Upload segments must be sent as Content-Type: application/octet-stream, not '{essence}'."
        ))
        .into());
    }
    let outcome = st
        .service
        .put_segment(
            SegmentTarget::IfMatch {
                who: &who,
                scope: addr.scope(),
                job: addr.job(),
                document: addr.document(),
                if_match: header_text(&headers, header::IF_MATCH),
            },
            Segment {
                content_range: header_text(&headers, header::CONTENT_RANGE),
                content_length: content_length(&headers),
                body: body_stream(body, st.config.limits.body_idle_timeout),
            },
        )
        .await?;
    Ok(outcome_response(outcome))
}
