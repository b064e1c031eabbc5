//! Pre-authenticated downloads (`/downloads/{grant}?tempauthtoken=...`), where `$value`
//! redirects. Serves `HEAD`, one `Range` (206, or 416 when unsatisfiable), `ETag` with
//! `If-None-Match` and `If-Range`, and the document's own content type. A request with several
//! ranges gets the whole document (200), which HTTP allows.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use upspool_domain::model::Document;
use upspool_domain::DomainError;

use crate::graph_error::{ApiResult, GraphError};
use crate::routes::uploads::TokenQuery;
use crate::AppState;

/// Strong validator: a document's bytes never change once uploaded.
fn etag(doc: &Document) -> String {
    format!("\"{}-{}\"", doc.id.simple(), doc.size)
}

/// A satisfiable single range, as (offset, length).
enum Wanted {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n`. Anything else (other units, several ranges,
/// garbage) is ignored and the whole document served, as RFC 9110 permits.
fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), num(a), num(b)) {
        (true, _, Some(n)) => match n.min(size) {
            0 => Wanted::Unsatisfiable,
            n => Wanted::Part(size - n, n),
        },
        (false, Some(start), end) if b.trim().is_empty() || end.is_some() => {
            if start >= size {
                return Wanted::Unsatisfiable;
            }
            let last = end.map_or(size - 1, |e| e.min(size - 1));
            if last < start {
                return Wanted::Whole;
            }
            Wanted::Part(start, last - start + 1)
        }
        _ => Wanted::Whole,
    }
}

pub async fn get(
    State(st): State<AppState>,
    method: Method,
    Path(grant): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let grant = crate::extract::parse_uuid(&grant, "download")?;
    let doc = st.service.open_download(grant, q.token()).await?;
    let tag = etag(&doc);
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());

    let mut builder = Response::builder()
        .header(header::ETAG, &tag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, doc.content_type.as_str())
        .header(header::CACHE_CONTROL, "private, no-store");
    if text(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
    {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(internal);
    }
    let range_applies = text(header::IF_RANGE).is_none_or(|v| v.trim() == tag);
    let want = if range_applies {
        wanted(text(header::RANGE), doc.size)
    } else {
        Wanted::Whole
    };
    let (status, offset, len) = match want {
        Wanted::Whole => (StatusCode::OK, 0, doc.size),
        Wanted::Part(o, l) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", o, o + l - 1, doc.size),
            );
            (StatusCode::PARTIAL_CONTENT, o, l)
        }
        Wanted::Unsatisfiable => {
            let mut resp: Response = GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                format!(
                    "The requested range is outside the document's {} bytes.",
                    doc.size
                ),
            )
            .into_response_with_status();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", doc.size)).map_err(internal)?,
            );
            return Ok(resp);
        }
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        Body::from_stream(st.service.read_document(&doc, offset, len).await?)
    };
    builder.body(body).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> crate::graph_error::ApiError {
    DomainError::Internal(e.to_string()).into()
}
