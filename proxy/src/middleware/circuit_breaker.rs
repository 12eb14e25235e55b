//! `circuitBreaker`: stop sending a service requests while its recent answers look bad.
//! <https://doc.traefik.io/traefik/middlewares/http/circuitbreaker/>
//!
//! Three states, as in Traefik: *closed* (requests pass and are counted; every `checkPeriod`
//! the expression is checked over the last ten seconds of them), *open* for `fallbackDuration`
//! (requests are answered `responseCode`, 503 by default, and never reach the service), then
//! *recovering* for `recoveryDuration` (a share of requests growing from 0 to all passes; the
//! expression tripping again opens it again). A network error is what Traefik counts as one: an
//! answer of 502 or 504. The state lives outside the snapshot, by middleware, so a reload does
//! not close an open breaker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_providers::breaker::{self, Expr, Window};
use drover_providers::model::middleware as model;
use http::StatusCode;
use tokio::time::Instant;

use super::{answer, BuildError, Req, Step};

/// Seconds of history the expression looks at.
const WINDOW_SECONDS: usize = 10;
/// Upper bounds (ms) of the latency histogram's buckets; the last is open.
const LATENCY_MS: [f64; 14] = [
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1e3,
    2e3,
    5e3,
    1e4,
    f64::INFINITY,
];

#[derive(Clone, Copy, Debug, Default)]
struct Second {
    /// Which second (since the breaker's start) this slot holds.
    at: u64,
    requests: u64,
    network_errors: u64,
    /// Requests by status class, 1xx … 5xx (index 1–5); 0 holds anything else.
    statuses: [u64; 6],
    latency: [u64; LATENCY_MS.len()],
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    Recovering { since: Instant, until: Instant },
}

/// One breaker's state, kept across reloads.
#[derive(Debug)]
pub struct BreakerState(Mutex<Inner>);

#[derive(Debug)]
struct Inner {
    base: Instant,
    seconds: [Second; WINDOW_SECONDS],
    phase: Phase,
    next_check: Instant,
    /// Exact status counts are needed for ResponseCodeRatio's arbitrary ranges: kept per code.
    codes: Vec<(u64, u16, u64)>,
}

impl Default for BreakerState {
    fn default() -> Self {
        let now = Instant::now();
        Self(Mutex::new(Inner {
            base: now,
            seconds: [Second::default(); WINDOW_SECONDS],
            phase: Phase::Closed,
            next_check: now,
            codes: Vec::new(),
        }))
    }
}

/// The window as the expression sees it.
struct View<'a> {
    inner: &'a Inner,
    now_second: u64,
}

impl View<'_> {
    fn live(&self) -> impl Iterator<Item = &Second> {
        let now = self.now_second;
        self.inner
            .seconds
            .iter()
            .filter(move |s| s.at + WINDOW_SECONDS as u64 > now && s.at <= now)
    }

    fn count_codes(&self, from: u16, to: u16) -> u64 {
        let oldest = self.now_second.saturating_sub(WINDOW_SECONDS as u64 - 1);
        self.inner
            .codes
            .iter()
            .filter(|(at, code, _)| *at >= oldest && *code >= from && *code < to)
            .map(|(_, _, n)| n)
            .sum()
    }
}

impl Window for View<'_> {
    fn network_error_ratio(&self) -> f64 {
        let (errors, all) = self.live().fold((0, 0), |(e, a), s| (e + s.network_errors, a + s.requests));
        if all == 0 {
            0.0
        } else {
            errors as f64 / all as f64
        }
    }

    fn response_code_ratio(&self, from: u16, to: u16, divided_from: u16, divided_to: u16) -> f64 {
        let divisor = self.count_codes(divided_from, divided_to);
        if divisor == 0 {
            0.0
        } else {
            self.count_codes(from, to) as f64 / divisor as f64
        }
    }

    fn latency_at_quantile_ms(&self, quantile: f64) -> f64 {
        let mut buckets = [0u64; LATENCY_MS.len()];
        for s in self.live() {
            for (b, n) in buckets.iter_mut().zip(s.latency) {
                *b += n;
            }
        }
        let total: u64 = buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let wanted = (quantile.clamp(0.0, 100.0) / 100.0 * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bound, n) in LATENCY_MS.iter().zip(buckets) {
            seen += n;
            if seen >= wanted {
                return if bound.is_finite() { *bound } else { 1e5 };
            }
        }
        1e5
    }

    fn requests(&self) -> f64 {
        self.live().map(|s| s.requests).sum::<u64>() as f64
    }
}

/// A compiled `circuitBreaker`.
#[derive(Debug)]
pub struct CircuitBreaker {
    expression: Expr,
    check_period: Duration,
    fallback: Duration,
    recovery: Duration,
    status: StatusCode,
    state: Arc<BreakerState>,
}

fn duration(d: Option<drover_providers::duration::ConfigDuration>, default: Duration) -> Duration {
    d.map_or(default, |d| d.0)
}

impl CircuitBreaker {
    /// Compiles the model, with `state` kept across reloads.
    pub fn build(m: &model::CircuitBreaker, state: Arc<BreakerState>) -> Result<Self, BuildError> {
        let code = m.response_code.unwrap_or(503);
        Ok(Self {
            expression: breaker::parse(&m.expression).map_err(|e| BuildError(e.to_string()))?,
            check_period: duration(m.check_period, Duration::from_millis(100)),
            fallback: duration(m.fallback_duration, Duration::from_secs(10)),
            recovery: duration(m.recovery_duration, Duration::from_secs(10)),
            status: StatusCode::from_u16(code).map_err(|_| BuildError(format!("{code} is not an HTTP status")))?,
            state,
        })
    }

    fn trips(&self, inner: &Inner, now: Instant) -> bool {
        let view = View {
            inner,
            now_second: now.saturating_duration_since(inner.base).as_secs(),
        };
        self.expression.holds(&view)
    }

    /// Lets the request through, or answers `responseCode` while open.
    pub fn request(&self, _req: &mut Req<'_>) -> Step {
        let now = Instant::now();
        let mut inner = self.state.0.lock().unwrap_or_else(|p| p.into_inner());
        let check = now >= inner.next_check;
        if check {
            inner.next_check = now + self.check_period;
        }
        let pass = match inner.phase {
            Phase::Closed => {
                if check && self.trips(&inner, now) {
                    tracing::warn!("circuit breaker opens for {:?}", self.fallback);
                    inner.phase = Phase::Open {
                        until: now + self.fallback,
                    };
                    false
                } else {
                    true
                }
            }
            Phase::Open { until } if now < until => false,
            Phase::Open { .. } => {
                // A fresh window judges the recovery.
                inner.seconds = [Second::default(); WINDOW_SECONDS];
                inner.codes.clear();
                inner.phase = Phase::Recovering {
                    since: now,
                    until: now + self.recovery,
                };
                false
            }
            Phase::Recovering { since, until } => {
                if check && self.trips(&inner, now) {
                    inner.phase = Phase::Open {
                        until: now + self.fallback,
                    };
                    false
                } else if now >= until {
                    inner.phase = Phase::Closed;
                    true
                } else {
                    let share = now.saturating_duration_since(since).as_secs_f64() / self.recovery.as_secs_f64().max(1e-9);
                    fastrand::f64() < share
                }
            }
        };
        drop(inner);
        if pass {
            Step::Next
        } else {
            let mut response = answer(self.status, "Service Unavailable: the circuit breaker is open\n");
            *response.status_mut() = self.status;
            Step::Answer(response)
        }
    }

    /// Counts a response that passed through.
    pub fn record(&self, status: StatusCode, took: Duration) {
        let now = Instant::now();
        let mut inner = self.state.0.lock().unwrap_or_else(|p| p.into_inner());
        let at = now.saturating_duration_since(inner.base).as_secs();
        let slot = &mut inner.seconds[at as usize % WINDOW_SECONDS];
        if slot.at != at {
            *slot = Second { at, ..Second::default() };
        }
        slot.requests += 1;
        let code = status.as_u16();
        if code == 502 || code == 504 {
            slot.network_errors += 1;
        }
        slot.statuses[usize::from(code / 100).min(5)] += 1;
        let ms = took.as_secs_f64() * 1e3;
        let bucket = LATENCY_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_MS.len() - 1);
        slot.latency[bucket] += 1;
        let oldest = at.saturating_sub(WINDOW_SECONDS as u64 - 1);
        inner.codes.retain(|(second, _, _)| *second >= oldest);
        match inner.codes.iter_mut().find(|(second, c, _)| *second == at && *c == code) {
            Some(entry) => entry.2 += 1,
            None => inner.codes.push((at, code, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_providers::duration::ConfigDuration;

    fn breaker(expression: &str) -> CircuitBreaker {
        let m = model::CircuitBreaker {
            expression: expression.into(),
            check_period: Some(ConfigDuration(Duration::from_millis(100))),
            fallback_duration: Some(ConfigDuration(Duration::from_secs(5))),
            recovery_duration: Some(ConfigDuration(Duration::from_secs(5))),
            response_code: None,
        };
        CircuitBreaker::build(&m, Arc::default()).unwrap()
    }

    fn passes(b: &CircuitBreaker) -> bool {
        let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let mut req = Req {
            parts: &mut parts,
            peer: [127, 0, 0, 1].into(),
            host: None,
            scheme: "http",
            trusted: false,
            body: None,
        };
        matches!(b.request(&mut req), Step::Next)
    }

    #[tokio::test(start_paused = true)]
    async fn trips_on_errors_stays_open_then_recovers() {
        let b = breaker("ResponseCodeRatio(500, 600, 0, 600) > 0.5");
        for _ in 0..10 {
            assert!(passes(&b));
            b.record(StatusCode::OK, Duration::from_millis(3));
        }
        for _ in 0..20 {
            b.record(StatusCode::INTERNAL_SERVER_ERROR, Duration::from_millis(3));
        }
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(!passes(&b), "two thirds errors: open");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!passes(&b), "still within fallbackDuration");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!passes(&b), "the first request after the fallback starts the recovery");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(passes(&b), "after recoveryDuration: closed");
        assert!(passes(&b));
    }

    #[tokio::test(start_paused = true)]
    async fn network_errors_are_502_and_504() {
        let b = breaker("NetworkErrorRatio() > 0.3 && RequestThreshold() >= 4");
        for code in [200, 502, 504, 200] {
            b.record(StatusCode::from_u16(code).unwrap(), Duration::from_millis(1));
        }
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(!passes(&b));
    }
}
