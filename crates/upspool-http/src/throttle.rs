//! Bounds on concurrent requests: per caller (client IP address, since upload URLs carry no
//! principal) for every request, and per upload session for segment requests. Past a bound
//! the request is refused at once with 429 and `Retry-After`, before its body is read, so one
//! client cannot tie up connections, memory (one I/O buffer per segment) or the disk.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::graph_error::ApiError;
use crate::AppState;

/// Requests in flight per key.
type InFlight<K> = Arc<Mutex<HashMap<K, u32>>>;

/// Requests in flight per key, each bounded by `max` (0 = unbounded).
struct Counter<K> {
    max: u32,
    in_flight: InFlight<K>,
}

/// One counted request; dropping it (the request ended, or was cancelled) frees its place.
pub struct Permit<K: Eq + Hash> {
    in_flight: Option<(InFlight<K>, K)>,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(max: u32) -> Self {
        Counter {
            max,
            in_flight: Arc::default(),
        }
    }

    fn try_acquire(&self, key: K) -> Option<Permit<K>> {
        if self.max == 0 {
            return Some(Permit { in_flight: None });
        }
        let mut map = self.in_flight.lock().expect("throttle lock poisoned");
        let n = map.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Permit {
            in_flight: Some((self.in_flight.clone(), key)),
        })
    }
}

impl<K: Eq + Hash> Drop for Permit<K> {
    fn drop(&mut self) {
        if let Some((map, key)) = self.in_flight.take() {
            let mut map = map.lock().expect("throttle lock poisoned");
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

/// The counters of one server.
pub struct Throttle {
    callers: Counter<IpAddr>,
    sessions: Counter<Uuid>,
}

impl Throttle {
    pub fn new(per_caller: u32, per_session: u32) -> Self {
        Throttle {
            callers: Counter::new(per_caller),
            sessions: Counter::new(per_session),
        }
    }

    /// A place for one more segment request of `session` (the upload session id, or the
    /// document id for the draft form: a document has one session).
    pub fn session(&self, session: Uuid) -> Result<Permit<Uuid>, ApiError> {
        self.sessions.try_acquire(session).ok_or_else(|| {
            ApiError::throttled(format!(
                "Too many concurrent requests for this upload session (at most {}). Retry after the others finish.",
                self.sessions.max
            ))
        })
    }
}

/// Middleware: counts every request against its client's IP address. Requests without a
/// peer address (in-process tests) are not counted.
pub async fn per_caller(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let _permit = match ip {
        Some(ip) => match state.throttle.callers.try_acquire(ip) {
            Some(p) => Some(p),
            None => {
                return ApiError::throttled(format!(
                    "Too many concurrent requests from this client (at most {}). Retry after the others finish.",
                    state.throttle.callers.max
                ))
                .into_response()
            }
        },
        None => None,
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_per_key_and_freed_on_drop() {
        let c = Counter::new(2);
        let a1 = c.try_acquire("a").unwrap();
        let _a2 = c.try_acquire("a").unwrap();
        assert!(c.try_acquire("a").is_none());
        let _b = c.try_acquire("b").expect("other keys are separate");
        drop(a1);
        let _a3 = c.try_acquire("a").expect("freed");
        assert!(c.try_acquire("a").is_none());
    }

    #[test]
    fn zero_means_unbounded_and_keys_are_forgotten() {
        let c = Counter::new(0);
        let permits: Vec<_> = (0..100).map(|_| c.try_acquire(1).unwrap()).collect();
        drop(permits);
        let c = Counter::new(1);
        drop(c.try_acquire(7).unwrap());
        assert!(c.in_flight.lock().unwrap().is_empty());
    }
}
