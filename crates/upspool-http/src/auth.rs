//! The one authentication extractor. Every Graph handler takes a [`Caller`]: the principal of
//! a valid `Authorization: Bearer` token (see `jwt`), or the fixed development user under
//! `--insecure-dev-auth`. Upload and download URLs do not use it: their `tempauthtoken` is
//! the credential, and an Authorization header sent there is ignored.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use upspool_domain::principal::Principal;
use upspool_domain::DomainError;

use crate::graph_error::ApiError;
use crate::AppState;

/// The authenticated principal of a Graph request.
pub struct Caller(pub Principal);

fn refuse(message: impl Into<String>) -> ApiError {
    DomainError::Unauthenticated(message.into()).into()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.insecure_dev_auth {
            return Ok(Caller(Principal::insecure_dev()));
        }
        let Some(verifier) = &state.verifier else {
            return Err(refuse(
                "No token issuer is configured on this server, so no bearer token can be accepted.",
            ));
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
        verifier.verify(token).await.map(Caller).map_err(refuse)
    }
}
