//! When to try again and how long to wait: exponential backoff with jitter, never shorter
//! than the service's `Retry-After`.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{ClientError, Result};

/// Longest `Retry-After` honoured; a larger value is taken as this (a broken or hostile
/// header must not park the client for a day).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How many times and how patiently a failing request is repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: fail on the first error).
    pub retries: u32,
    /// Backoff before the first retry; doubled for each further one.
    pub base: Duration,
    /// Upper bound of the backoff (not of `Retry-After`).
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 8 retries from 250 ms up to 10 s: about 40 s of patience, enough to ride through a
    /// server restart.
    fn default() -> Self {
        RetryPolicy {
            retries: 8,
            base: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): "equal jitter", a random value between
    /// half and all of `base * 2^(retry-1)` (capped at `max`), so that parallel streams do not
    /// retry in lockstep; then at least `retry_after`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let jittered = half + rand::thread_rng().gen_range(Duration::ZERO..=exp - half);
        match retry_after {
            Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// Runs `op` until it succeeds, fails with an error that is not worth retrying, or the
    /// retries are used up. `idempotent: false` retries only errors after which the request
    /// was certainly not processed. `on_retry` hears about each wait before it starts.
    pub async fn run<T, F, Fut>(
        &self,
        idempotent: bool,
        mut on_retry: impl FnMut(&ClientError, Duration),
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut failures = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let retry = if idempotent {
                        e.is_retryable()
                    } else {
                        e.was_not_processed()
                    };
                    if !retry {
                        return Err(e);
                    }
                    failures += 1;
                    if failures > self.retries {
                        return Err(ClientError::RetriesExhausted {
                            attempts: failures,
                            last: Box::new(e),
                        });
                    }
                    let wait = self.delay(failures, e.retry_after());
                    on_retry(&e, wait);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past is
/// zero; anything unparsable is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_jittered_and_capped() {
        let p = RetryPolicy {
            retries: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d30 = p.delay(30, None);
            assert!(d30 >= Duration::from_millis(500) && d30 <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
