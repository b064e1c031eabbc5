//! A small HTTP reverse proxy for client tests: it stands between the `upspool` client and a
//! real server and, per request, forwards it, answers an error itself (503, 429 with
//! `Retry-After`), or holds it until released. Everything it sees is logged with the instant
//! it arrived, so tests can assert what the client did and in which order.
//!
//! It runs on its own thread and runtime, so tests can block on client processes freely.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Answer this status itself, with `Retry-After: {secs}` when given.
    Respond {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Keep the request waiting until [`Proxy::release`], then forward it.
    Hold,
    /// Forward, and cut the answer's `nextExpectedRanges` to its first entry, as a service
    /// that lists only some of the gaps would answer.
    ForwardFirstGapOnly,
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub action: Action,
}

/// Decides each request's fate from its method, path (no query) and `Content-Range`.
pub type Rule = Box<dyn FnMut(&str, &str, Option<&str>) -> Action + Send>;

struct Shared {
    upstream: Mutex<String>,
    rule: Mutex<Rule>,
    log: Mutex<Vec<Seen>>,
    released: tokio::sync::watch::Sender<bool>,
    /// Forwarded requests that got an upstream answer.
    answered: AtomicUsize,
    /// Requests waiting in [`Action::Hold`].
    holding: AtomicUsize,
    http: reqwest::Client,
}

pub struct Proxy {
    url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A rule that forwards everything.
pub fn forward_all() -> Rule {
    Box::new(|_, _, _| Action::Forward)
}

impl Proxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream` (which may be set
    /// later with [`Proxy::set_upstream`], e.g. once a server that needs the proxy's URL runs).
    pub fn start(upstream: &str, rule: Rule) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (released, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.trim_end_matches('/').to_string()),
            rule: Mutex::new(rule),
            log: Mutex::new(Vec::new()),
            released,
            answered: AtomicUsize::new(0),
            holding: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        Proxy {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().unwrap() = upstream.trim_end_matches('/').to_string();
    }

    pub fn set_rule(&self, rule: Rule) {
        *self.shared.rule.lock().unwrap() = rule;
    }

    /// Lets every held request (and every later [`Action::Hold`]) through.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    pub fn log(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    pub fn holding(&self) -> usize {
        self.shared.holding.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(State(st): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let action = (st.rule.lock().unwrap())(&method, &path, range.as_deref());
    st.log.lock().unwrap().push(Seen {
        at: Instant::now(),
        method: method.clone(),
        path,
        action,
    });
    match action {
        Action::Respond {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap();
            let body = format!(
                "{{\"error\":{{\"code\":\"proxyRefused\",\"message\":\"The test proxy answered {status}.\"}}}}"
            );
            let mut resp = (status, [("content-type", "application/json")], body).into_response();
            if let Some(s) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", s.to_string().parse().unwrap());
            }
            return resp;
        }
        Action::Hold => {
            st.holding.fetch_add(1, Ordering::SeqCst);
            let mut rx = st.released.subscribe();
            let _ = rx.wait_for(|r| *r).await;
            st.holding.fetch_sub(1, Ordering::SeqCst);
        }
        Action::Forward | Action::ForwardFirstGapOnly => {}
    }
    let resp = forward(&st, req).await;
    if action == Action::ForwardFirstGapOnly {
        return first_gap_only(resp).await;
    }
    resp
}

/// The same answer with `nextExpectedRanges` cut to its first entry.
async fn first_gap_only(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) if v["nextExpectedRanges"].is_array() => {
            let ranges = v["nextExpectedRanges"].as_array_mut().unwrap();
            ranges.truncate(1);
            serde_json::to_vec(&v).unwrap().into()
        }
        _ => bytes,
    };
    parts.headers.remove("content-length");
    Response::from_parts(parts, Body::from(bytes))
}

/// Sends the request on to the upstream, bodies streamed both ways; `502` when the upstream
/// cannot be reached, as a real reverse proxy answers.
async fn forward(st: &Shared, req: Request) -> Response {
    let upstream = st.upstream.lock().unwrap().clone();
    let target = format!(
        "{upstream}{}",
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let (parts, body) = req.into_parts();
    let mut out = st.http.request(parts.method, target);
    for (name, value) in &parts.headers {
        if !is_hop_header(name) {
            out = out.header(name, value);
        }
    }
    let out = out.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    match out.send().await {
        Ok(resp) => {
            st.answered.fetch_add(1, Ordering::SeqCst);
            let mut builder = Response::builder().status(resp.status().as_u16());
            for (name, value) in resp.headers() {
                if !is_hop_header(name) {
                    builder = builder.header(name, value);
                }
            }
            builder
                .body(Body::from_stream(resp.bytes_stream()))
                .unwrap()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("upstream unreachable: {e}"),
        )
            .into_response(),
    }
}

fn is_hop_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "transfer-encoding" | "keep-alive" | "upgrade"
    )
}
