//! `retry`: <https://doc.traefik.io/traefik/middlewares/http/retry/>.
//!
//! The request side stops at this step; the forwarding code then runs the steps after it and
//! the sending once per attempt ([`super::Chain::request_from`]). An attempt is tried again
//! when no server answered it (a connection refused, reset or failed TLS: drover's own 502),
//! and, with `status`, when a server answered with one of those statuses. As in Traefik, a
//! server's answer otherwise ends the retries whatever its status, a 503 drover made because no
//! server is available is not retried, and neither is a timeout (the server has the request
//! and may still be working on it). Inside each attempt the load balancer keeps its own safe
//! retries (other servers for a request that never left drover, a replay of a body-less
//! request a server reset): this middleware adds passes on top, spaced by its backoff.
//!
//! Only requests that can be sent again are retried: idempotent methods (and `POST`, `PATCH`,
//! `LOCK` with `retryNonIdempotentMethod`), never a protocol upgrade, and a body read whole
//! first, at most `maxRequestBodyBytes` (2 MB by default, -1 for no maximum; a larger body is
//! answered 413, as in Traefik), 1 MiB of it in memory and the rest in a temporary file. Other
//! requests pass through this step untouched.
//!
//! Beyond Traefik, each pass spends the service's retry budget (`loadBalancer.retry`'s
//! `budgetPercent` and `minRetriesPerSecond`) as the load balancer's own replays do: when a
//! service fails for everyone, retries add at most that share of its traffic.
//!
//! The waits follow Traefik's exponential backoff: the first is `initialInterval`, and they
//! grow by a factor chosen so that the last is about twice the first, each randomised by
//! ±50%. No `initialInterval` means no wait. `timeout` caps the time spent retrying.

use std::time::Duration;

use http::{header, Method, StatusCode};

use super::{BuildError, Req};

/// Traefik's default `maxRequestBodyBytes`.
const DEFAULT_MAX_BODY: u64 = 2 * 1024 * 1024;

/// Body bytes kept in memory for attempts; the rest goes to a temporary file, so that
/// `maxRequestBodyBytes = -1` does not mean unbounded memory.
pub const MEMORY: u64 = 1024 * 1024;

/// A compiled `retry` middleware.
#[derive(Debug)]
pub struct Retry {
    /// Tries in all (at least 1).
    pub attempts: u32,
    initial: Duration,
    multiplier: f64,
    /// How long retrying may go on, from the first attempt.
    pub timeout: Option<Duration>,
    /// The largest body kept for attempts (`None`: no maximum).
    pub max_body: Option<u64>,
    status: Vec<(u16, u16)>,
    on_network_error: bool,
    non_idempotent: bool,
}

impl Retry {
    /// Compiles a validated `retry`.
    pub fn build(m: &drover_providers::model::middleware::Retry) -> Result<Self, BuildError> {
        let mut status = Vec::new();
        for s in &m.status {
            status.push(
                drover_providers::middlewares::parse_status_range(s)
                    .ok_or_else(|| BuildError(format!("retry.status: `{s}` is not a status range")))?,
            );
        }
        let attempts = m.attempts.max(1);
        Ok(Self {
            attempts,
            initial: m.initial_interval.map_or(Duration::ZERO, |d| d.0),
            multiplier: if attempts > 1 {
                2f64.powf(1.0 / f64::from(attempts - 1))
            } else {
                1.0
            },
            timeout: m.timeout.map(|d| d.0).filter(|d| !d.is_zero()),
            max_body: match m.max_request_body_bytes {
                None => Some(DEFAULT_MAX_BODY),
                Some(n) if n < 0 => None,
                Some(n) => Some(n as u64),
            },
            status,
            on_network_error: !m.disable_retry_on_network_error,
            non_idempotent: m.retry_non_idempotent_method,
        })
    }

    /// Whether this request can be sent more than once.
    pub fn replays(&self, req: &Req<'_>) -> bool {
        if self.attempts < 2 || req.parts.headers.contains_key(header::UPGRADE) {
            return false;
        }
        let method = &req.parts.method;
        let idempotent = matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
        );
        idempotent || (self.non_idempotent && *method != Method::CONNECT)
    }

    /// Whether an attempt that ended this way is tried again: `answered` is false when no
    /// server answered (drover's own 502).
    pub fn again(&self, answered: bool, status: StatusCode) -> bool {
        if !answered {
            return self.on_network_error;
        }
        let code = status.as_u16();
        self.status.iter().any(|(from, to)| (*from..=*to).contains(&code))
    }

    /// The wait before attempt `next` (2 for the first retry).
    pub fn backoff(&self, next: u32) -> Duration {
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(next.saturating_sub(2)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        // Traefik's backoff randomises each wait by ±50%.
        let jitter = 0.5 + fastrand::f64();
        Duration::from_secs_f64((base * jitter).min(self.initial.as_secs_f64() * 3.0))
    }

    /// What it would do for this request (the explain API).
    pub fn explain(&self, req: &Req<'_>) -> String {
        if self.replays(req) {
            format!("up to {} attempts when no server answers", self.attempts)
        } else {
            "this request is sent once (its method or an upgrade cannot be sent again)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_providers::duration::ConfigDuration;
    use drover_providers::model::middleware::Retry as Config;

    #[test]
    fn backoff_starts_at_the_initial_interval_and_stays_near_twice_it() {
        let r = Retry::build(&Config {
            attempts: 5,
            initial_interval: Some(ConfigDuration(Duration::from_millis(100))),
            ..Config::default()
        })
        .unwrap();
        for _ in 0..50 {
            let first = r.backoff(2);
            assert!((50..=150).contains(&first.as_millis()), "{first:?}");
            // The third growth of 2^(1/4) from 100 ms is 168 ms, randomised by ±50%.
            let last = r.backoff(5);
            assert!((84..=253).contains(&last.as_millis()), "{last:?}");
        }
        let none = Retry::build(&Config {
            attempts: 3,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(none.backoff(2), Duration::ZERO);
    }

    #[test]
    fn statuses_are_retried_only_when_listed_and_network_errors_unless_disabled() {
        let r = Retry::build(&Config {
            attempts: 2,
            status: vec!["500-502".into(), "429".into()],
            disable_retry_on_network_error: true,
            ..Config::default()
        })
        .unwrap();
        assert!(r.again(true, StatusCode::BAD_GATEWAY));
        assert!(r.again(true, StatusCode::TOO_MANY_REQUESTS));
        assert!(!r.again(true, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!r.again(false, StatusCode::BAD_GATEWAY));
        assert_eq!(r.max_body, Some(DEFAULT_MAX_BODY));
    }
}
