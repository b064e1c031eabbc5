//! The Graph error envelope, built in exactly one place.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` decides status, code and message and
//! attaches them to the response as a [`GraphError`] extension with an empty body. The
//! request-id middleware (which knows the request's ids) then renders every error response,
//! including those axum produces itself (no route, method not allowed), as
//! `{"error":{"code","message","innerError":{...}}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use upspool_domain::DomainError;

/// The parts of a Graph error that do not depend on the request.
#[derive(Clone, Debug)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub inner_code: Option<&'static str>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            inner_code: None,
        }
    }

    pub fn inner(mut self, inner: &'static str) -> Self {
        self.inner_code = Some(inner);
        self
    }

    /// The error for a response axum (not a handler) produced, judged by its status alone.
    pub fn for_bare_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => GraphError::new(
                status,
                "itemNotFound",
                "The requested resource does not exist.",
            ),
            StatusCode::METHOD_NOT_ALLOWED => GraphError::new(
                status,
                "notSupported",
                "The HTTP method is not supported on this resource.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => GraphError::new(
                status,
                "invalidRequest",
                "The request body is larger than this endpoint accepts.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => GraphError::new(
                status,
                "invalidRequest",
                "The request's Content-Type is not supported here.",
            ),
            s if s.is_server_error() => GraphError::new(
                status,
                "generalException",
                "An unexpected error occurred on the server.",
            ),
            s => GraphError::new(
                s,
                "invalidRequest",
                s.canonical_reason().unwrap_or("The request is invalid."),
            ),
        }
    }

    /// A response carrying this error for the request-id middleware to render.
    pub fn into_response_with_status(self) -> Response {
        let mut resp = self.status.into_response();
        resp.extensions_mut().insert(self);
        resp
    }

    /// The JSON body, given the request's ids.
    pub fn body(&self, request_id: &str, client_request_id: &str, date: &str) -> serde_json::Value {
        let mut inner = json!({
            "date": date,
            "request-id": request_id,
            "client-request-id": client_request_id,
        });
        if let Some(code) = self.inner_code {
            inner["code"] = json!(code);
        }
        json!({"error": {"code": self.code, "message": self.message, "innerError": inner}})
    }
}

/// Every way a handler can fail. Domain errors map one-to-one to Graph codes here.
#[derive(Debug)]
pub enum ApiError {
    Domain(DomainError),
    /// An error decided by the HTTP layer itself (bad JSON, bad id, bad query).
    Graph(GraphError),
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Domain(e)
    }
}

impl From<GraphError> for ApiError {
    fn from(e: GraphError) -> Self {
        ApiError::Graph(e)
    }
}

impl ApiError {
    pub fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::Graph(GraphError::new(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            message,
        ))
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        ApiError::Graph(
            GraphError::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
                .inner("invalidQueryOption"),
        )
    }

    /// 429: a concurrency bound was reached; answered with `Retry-After`.
    pub fn throttled(message: impl Into<String>) -> Self {
        ApiError::Graph(
            GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "activityLimitReached",
                message,
            )
            .inner("throttledRequest"),
        )
    }

    pub fn not_found(what: &'static str) -> Self {
        ApiError::Domain(DomainError::NotFound(what))
    }
}

/// Status, code, inner code and message for a domain error.
fn graph_error_of(e: &DomainError) -> GraphError {
    use DomainError::*;
    let g = |s: StatusCode, c: &'static str, m: String| GraphError::new(s, c, m);
    match e {
        NotFound(_) => g(StatusCode::NOT_FOUND, "itemNotFound", e.to_string()),
        UploadSessionNotFound => {
            g(StatusCode::NOT_FOUND, "itemNotFound", e.to_string()).inner("uploadSessionNotFound")
        }
        Unauthenticated(_) => g(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            e.to_string(),
        ),
        AccessDenied(_) => g(StatusCode::FORBIDDEN, "accessDenied", e.to_string()),
        InvalidRequest(_) => g(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string()),
        InvalidQueryOption(_) => {
            g(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string()).inner("invalidQueryOption")
        }
        FragmentLengthMismatch(_) => g(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string())
            .inner("fragmentLengthMismatch"),
        MaxFileSizeExceeded { .. } => {
            g(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string()).inner("maxFileSizeExceeded")
        }
        MaxFragmentLengthExceeded { .. } => g(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalidRequest",
            e.to_string(),
        )
        .inner("maxFragmentLengthExceeded"),
        TooManyRanges { .. } => {
            g(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string()).inner("tooManyFragments")
        }
        FragmentOverlap => g(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "Uploaded fragment overlaps with existing data.".into(),
        )
        .inner("fragmentOverlap"),
        PreconditionFailed(_) => g(
            StatusCode::PRECONDITION_FAILED,
            "resourceModified",
            e.to_string(),
        ),
        UnsupportedMediaType(_) => g(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalidRequest",
            e.to_string(),
        ),
        NotSupported(_) => g(StatusCode::NOT_IMPLEMENTED, "notSupported", e.to_string()),
        BodyAborted(_) => g(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string())
            .inner("fragmentLengthMismatch"),
        BodyTimeout(_) => g(StatusCode::REQUEST_TIMEOUT, "invalidRequest", e.to_string()),
        StorageFull => g(
            StatusCode::INSUFFICIENT_STORAGE,
            "quotaLimitReached",
            "The server's storage is full; nothing from this request was recorded. Retry later."
                .into(),
        ),
        Unavailable(_) => g(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "A storage back end is temporarily unavailable. Retry later.".into(),
        ),
        Internal(_) => g(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "An unexpected error occurred on the server.".into(),
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let graph = match &self {
            ApiError::Graph(g) => g.clone(),
            ApiError::Domain(e) => {
                match e {
                    DomainError::Internal(_) | DomainError::Unavailable(_) => {
                        tracing::error!(error = %e, "request failed")
                    }
                    DomainError::StorageFull => tracing::warn!(error = %e, "storage full"),
                    _ => tracing::debug!(error = %e, "request refused"),
                }
                graph_error_of(e)
            }
        };
        let mut resp = graph.status.into_response();
        match graph.status {
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"upspool\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp.extensions_mut().insert(graph);
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
