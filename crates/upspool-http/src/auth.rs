//! The one authentication extractor. Every Graph handler takes a [`Caller`], so when bearer
//! tokens arrive (the identity issue) only this file changes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use upspool_domain::principal::Principal;
use upspool_domain::DomainError;

use crate::graph_error::ApiError;
use crate::AppState;

/// The authenticated principal of a Graph request.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.insecure_dev_auth {
            return Ok(Caller(Principal::insecure_dev()));
        }
        Err(DomainError::Unauthenticated(
            "A valid bearer token is required. This server does not validate tokens yet; \
             start it with --insecure-dev-auth for development."
                .into(),
        )
        .into())
    }
}
