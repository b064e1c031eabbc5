//! upspool's HTTP layer: the Graph routes under `/v1.0` and `/beta`, upload and download
//! URLs, operations endpoints, the Graph error envelope, request ids and metrics. Handlers
//! translate HTTP to [`upspool_domain::PrintService`] calls and back; no rule lives here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::routing::IntoMakeService;
use axum::{Router, ServiceExt};
use tower::util::MapRequest;
use tower::Layer;
use upspool_domain::PrintService;

pub mod views;

/// Settings the HTTP layer needs from the binary's configuration.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Base of every URL upspool hands out (uploadUrl, download redirects, @odata links),
    /// without a trailing slash, e.g. `https://print.example.org` or `http://127.0.0.1:8631`.
    pub public_url: String,
    /// Accept every Graph request as a fixed development user. Never on by default.
    pub insecure_dev_auth: bool,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<PrintService>,
    pub config: Arc<HttpConfig>,
}

impl AppState {
    pub fn new(service: Arc<PrintService>, mut config: HttpConfig) -> Self {
        while config.public_url.ends_with('/') {
            config.public_url.pop();
        }
        AppState {
            service,
            config: Arc::new(config),
        }
    }
}

/// The router wrapped so that paths are normalised before routing (Graph matches action and
/// navigation segments case-insensitively).
pub type App = MapRequest<Router, fn(Request<Body>) -> Request<Body>>;

/// The whole application as a service.
pub fn app(state: AppState) -> App {
    let router = Router::new().with_state(state);
    tower::util::MapRequestLayer::new(normalize as fn(Request<Body>) -> Request<Body>).layer(router)
}

/// The application ready for `axum::serve` or `axum_server`.
pub fn make_service(state: AppState) -> IntoMakeService<App> {
    app(state).into_make_service()
}

fn normalize(req: Request<Body>) -> Request<Body> {
    req
}
