//! upspool's HTTP layer: the Graph routes under `/v1.0` and `/beta`, upload and download
//! URLs, operations endpoints, the Graph error envelope, request ids and metrics. Handlers
//! translate HTTP to [`upspool_domain::PrintService`] calls and back; no rule lives here.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::Request;
use axum::http::Uri;
use axum::Router;
use tower::util::MapRequest;
use tower::Layer;
use upspool_domain::PrintService;

pub mod auth;
pub mod extract;
pub mod graph_error;
pub mod jwt;
pub mod metrics;
pub mod odata;
pub mod request_id;
mod routes;
pub mod throttle;
pub mod views;

/// Settings the HTTP layer needs from the binary's configuration.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Base of every URL upspool hands out (uploadUrl, download redirects, @odata links),
    /// without a trailing slash, e.g. `https://print.example.org` or `http://127.0.0.1:8631`.
    pub public_url: String,
    /// Accept every Graph request as a fixed development user. Never on by default.
    pub insecure_dev_auth: bool,
    pub limits: HttpLimits,
}

/// Bounds on slow and greedy clients; docs/reliability.md explains the defaults.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Longest wait for the next bytes of an upload body before the request is answered
    /// 408 and nothing from it is recorded. Default 60 s.
    pub body_idle_timeout: Duration,
    /// Concurrent segment requests per upload session; 0 means unbounded. Default 16.
    pub max_requests_per_session: u32,
    /// Concurrent requests per client IP address; 0 means unbounded. Default 256.
    pub max_requests_per_caller: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body_idle_timeout: Duration::from_secs(60),
            max_requests_per_session: 16,
            max_requests_per_caller: 256,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<PrintService>,
    pub config: Arc<HttpConfig>,
    pub metrics: Arc<metrics::Metrics>,
    /// Validates bearer tokens; `None` refuses every token (unless `insecure_dev_auth`).
    pub verifier: Option<Arc<jwt::TokenVerifier>>,
    pub throttle: Arc<throttle::Throttle>,
}

impl AppState {
    /// Also installs the metrics as the service's upload observer.
    pub fn new(service: Arc<PrintService>, mut config: HttpConfig) -> Self {
        while config.public_url.ends_with('/') {
            config.public_url.pop();
        }
        let metrics = Arc::new(metrics::Metrics::new());
        service.observe(metrics.clone());
        let throttle = Arc::new(throttle::Throttle::new(
            config.limits.max_requests_per_caller,
            config.limits.max_requests_per_session,
        ));
        AppState {
            service,
            config: Arc::new(config),
            metrics,
            verifier: None,
            throttle,
        }
    }

    /// Accept bearer tokens that `verifier` validates.
    pub fn with_verifier(mut self, verifier: jwt::TokenVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }
}

/// The router wrapped so that paths are normalised before routing (Graph matches action and
/// navigation segments case-insensitively).
pub type App = MapRequest<Router, fn(Request<Body>) -> Request<Body>>;

/// The whole application as a service.
pub fn app(state: AppState) -> App {
    let router = routes::router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            throttle::per_caller,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::middleware,
        ))
        .with_state(state);
    tower::util::MapRequestLayer::new(normalize as fn(Request<Body>) -> Request<Body>).layer(router)
}

/// The application ready for `axum::serve` or `axum_server`, whatever request body type the
/// server hands it (hyper's `Incoming` under axum-server). Requests carry the peer address
/// as `ConnectInfo<SocketAddr>` (for the per-caller bound).
pub fn make_service(
    state: AppState,
) -> IntoMakeServiceWithConnectInfo<AnyBody<App>, std::net::SocketAddr> {
    axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info(AnyBody(app(state)))
}

/// Adapts [`App`], which takes `Request<axum::body::Body>`, to any body type.
#[derive(Clone)]
pub struct AnyBody<S>(S);

impl<S, B> tower::Service<Request<B>> for AnyBody<S>
where
    S: tower::Service<Request<Body>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.0.call(req.map(Body::new))
    }
}

/// Rewrites known path segments to their canonical spelling (`createuploadsession` ->
/// `createUploadSession`, `%24value` -> `$value`), leaving ids and the query untouched.
fn normalize(mut req: Request<Body>) -> Request<Body> {
    let uri = req.uri();
    let path = uri.path();
    let mut changed = false;
    let segments: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let decoded = if seg.eq_ignore_ascii_case("%24value") {
                "$value"
            } else if seg.eq_ignore_ascii_case("%24ref") {
                "$ref"
            } else {
                seg
            };
            match routes::CANONICAL_SEGMENTS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(decoded))
            {
                Some(c) if *c != seg => {
                    changed = true;
                    *c
                }
                _ => seg,
            }
        })
        .collect();
    if changed {
        let mut new = segments.join("/");
        if let Some(q) = uri.query() {
            new.push('?');
            new.push_str(q);
        }
        if let Ok(pq) = new.parse() {
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(u) = Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    }
    req
}
