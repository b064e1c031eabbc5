//! The one authentication extractor. Every Graph handler takes a [`Caller`]: the principal of
//! a valid `Authorization: Bearer` token (see `jwt`), or the fixed development user under
//! `--insecure-dev-auth`. Upload and download URLs do not use it: their `tempauthtoken` is
//! the credential, and an Authorization header sent there is ignored.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use upspool_domain::principal::Principal;
use upspool_domain::DomainError;

use crate::graph_error::ApiError;
use crate::AppState;

/// The authenticated principal of a Graph request.
pub struct Caller(pub Principal);

fn refuse(message: impl Into<String>) -> ApiError {
    DomainError::Unauthenticated(message.into()).into()
}

/// A refused Graph request. A bearer token that was sent but is not valid (bad signature,
/// expired, wrong audience...) also says `error="invalid_token"` in its challenge (RFC 6750
/// §3.1), which tells OAuth clients to get a new token rather than give up; a request without
/// a usable token gets the bare challenge, as the RFC asks.
pub struct AuthRejection {
    error: ApiError,
    invalid_token: bool,
}

impl From<ApiError> for AuthRejection {
    fn from(error: ApiError) -> Self {
        AuthRejection {
            error,
            invalid_token: false,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let mut resp = self.error.into_response();
        if self.invalid_token && resp.headers().contains_key(WWW_AUTHENTICATE) {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"upspool\", error=\"invalid_token\""),
            );
        }
        resp
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, AuthRejection> {
        if state.config.insecure_dev_auth {
            return Ok(Caller(Principal::insecure_dev()));
        }
        let Some(verifier) = &state.verifier else {
            return Err(refuse(
                "No token issuer is configured on this server, so no bearer token can be accepted.",
            )
            .into());
        };
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            refuse("Access token is empty: send 'Authorization: Bearer {token}'.")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse("The Authorization header must be 'Bearer {token}'."))?;
        verifier
            .verify(token)
            .await
            .map(Caller)
            .map_err(|e| AuthRejection {
                error: refuse(e),
                invalid_token: true,
            })
    }
}
