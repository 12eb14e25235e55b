//! `rateLimit`: a token bucket per source, refused with 429 and `Retry-After`.
//! <https://doc.traefik.io/traefik/middlewares/http/ratelimit/>
//!
//! Each source (the client address by default, see [`super::source`]) has a bucket of `burst`
//! tokens refilled at `average` per `period`. It is kept as one number, the bucket's theoretical
//! arrival time (GCRA): a request conforms when that time, less the burst's tolerance, is not in
//! the future. As in Traefik, a request that would conform within a short delay (half the
//! emission interval, 500 ms below one request per second) is held for that delay instead of
//! refused, so a client slightly faster than the limit is slowed rather than failed.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] sources are kept (Traefik's number). A source whose
//! bucket is full again is the same as an unknown one, so those go first when the table is
//! full; if none is, the fullest bucket is forgotten. The buckets outlive reloads (kept by the
//! compiler per middleware), so a reload does not refill everyone's bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_providers::model::middleware as model;
use http::header::{self, HeaderValue};
use http::StatusCode;
use tokio::time::Instant;

use super::source::{Key, Source};
use super::{answer, BuildError, Req, Step};

/// Most sources one middleware remembers.
pub const MAX_SOURCES: usize = 65_536;

/// The buckets of one middleware, by source.
#[derive(Debug, Default)]
pub struct Buckets(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    base: Option<Instant>,
    /// Source → theoretical arrival time, in nanoseconds after `base`.
    tats: HashMap<Key, u64>,
}

/// What the bucket says about one request.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Pass,
    Delay(Duration),
    Refuse(Duration),
}

/// A compiled `rateLimit`.
#[derive(Debug)]
pub struct RateLimit {
    /// None: `average` is 0, nothing is limited.
    interval: Option<u64>,
    tolerance: u64,
    max_delay: u64,
    source: Source,
    buckets: Arc<Buckets>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RateLimit {
    /// Compiles the model, with `buckets` kept across reloads.
    pub fn build(m: &model::RateLimit, buckets: Arc<Buckets>) -> Result<Self, BuildError> {
        let period = m.period.map_or(Duration::from_secs(1), |p| p.0);
        let burst = m.burst.unwrap_or(1).max(1);
        let interval = (m.average > 0).then(|| nanos(period) / m.average).map(|i| i.max(1));
        let per_second = m.average as f64 / period.as_secs_f64();
        let max_delay = if per_second < 1.0 {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(1) / (2 * per_second.floor().min(f64::from(u32::MAX / 2)) as u32)
        };
        Ok(Self {
            interval,
            tolerance: interval.map_or(0, |i| i.saturating_mul(burst - 1)),
            max_delay: nanos(max_delay),
            source: Source::build(m.source_criterion.as_ref())?,
            buckets,
        })
    }

    /// What the bucket of `key` says at `now`; `take`: a request that passes (now or after its
    /// delay) spends a token. A known source costs one hash lookup (the table's hasher is
    /// SipHash: the keys are the clients' to choose), an unknown one a second for its insertion.
    fn decide(&self, key: &Key, now: Instant, take: bool) -> Decision {
        let Some(interval) = self.interval else { return Decision::Pass };
        let mut table = self.buckets.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let table = &mut *table;
        let base = *table.base.get_or_insert(now);
        let t = nanos(now.saturating_duration_since(base));
        if let Some(slot) = table.tats.get_mut(key) {
            let tat = (*slot).max(t);
            let decision = self.judge(tat, t);
            if take && !matches!(decision, Decision::Refuse(_)) {
                *slot = tat + interval;
            }
            return decision;
        }
        // An unknown source's bucket is full: its arrival time is now.
        let decision = self.judge(t, t);
        if take && !matches!(decision, Decision::Refuse(_)) {
            if table.tats.len() >= MAX_SOURCES {
                table.tats.retain(|_, tat| *tat > t);
                if table.tats.len() >= MAX_SOURCES {
                    if let Some(fullest) = table.tats.iter().min_by_key(|(_, tat)| **tat).map(|(k, _)| k.clone()) {
                        table.tats.remove(&fullest);
                    }
                }
            }
            table.tats.insert(key.clone(), t + interval);
        }
        decision
    }

    /// The decision for a bucket whose theoretical arrival time is `tat`, at `t`.
    fn judge(&self, tat: u64, t: u64) -> Decision {
        let conforms_at = tat.saturating_sub(self.tolerance);
        if conforms_at <= t {
            Decision::Pass
        } else if conforms_at - t <= self.max_delay {
            Decision::Delay(Duration::from_nanos(conforms_at - t))
        } else {
            Decision::Refuse(Duration::from_nanos(conforms_at - t))
        }
    }

    /// Passes (maybe after a short delay) or answers 429 with `Retry-After`.
    pub async fn request(&self, req: &mut Req<'_>) -> Step {
        if self.interval.is_none() {
            return Step::Next;
        }
        let Some(key) = self.source.key(req) else {
            return Step::Answer(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: no source for rateLimit\n",
            ));
        };
        match self.decide(&key, Instant::now(), true) {
            Decision::Pass => Step::Next,
            Decision::Delay(wait) => {
                tokio::time::sleep(wait).await;
                Step::Next
            }
            Decision::Refuse(wait) => {
                let mut response = answer(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                Step::Answer(response)
            }
        }
    }

    /// What it would decide now (nothing is taken from the bucket).
    pub fn explain(&self, req: &Req<'_>) -> String {
        if self.interval.is_none() {
            return "average is 0: nothing is limited".into();
        }
        let Some(key) = self.source.key(req) else {
            return "the source cannot be determined: drover answers 500".into();
        };
        match self.decide(&key, Instant::now(), false) {
            Decision::Pass => format!("source {key}: within the limit, passes"),
            Decision::Delay(d) => format!("source {key}: held for {d:?}, then passes"),
            Decision::Refuse(d) => format!("source {key}: over the limit, drover answers 429 (retry in {d:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_providers::duration::ConfigDuration;

    fn limit(average: u64, period: Duration, burst: u64) -> RateLimit {
        let m = model::RateLimit {
            average,
            period: Some(ConfigDuration(period)),
            burst: Some(burst),
            source_criterion: None,
        };
        RateLimit::build(&m, Arc::default()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_one_per_interval() {
        let l = limit(10, Duration::from_secs(1), 3);
        let key = Key::Ip([10, 0, 0, 1].into());
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.decide(&key, start, true), Decision::Pass);
        }
        // The fourth would conform in 100 ms, more than the 50 ms Traefik waits at 10/s.
        assert_eq!(l.decide(&key, start, true), Decision::Refuse(Duration::from_millis(100)));
        assert_eq!(
            l.decide(&key, start + Duration::from_millis(60), true),
            Decision::Delay(Duration::from_millis(40))
        );
        assert_eq!(l.decide(&key, start + Duration::from_millis(300), true), Decision::Pass);
        let other = Key::Ip([10, 0, 0, 2].into());
        assert_eq!(l.decide(&other, start, true), Decision::Pass, "each source has its own bucket");
    }

    #[test]
    fn memory_is_bounded() {
        let l = limit(1, Duration::from_secs(3600), 1);
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.decide(&Key::Ip(std::net::Ipv4Addr::from(i).into()), now, true);
        }
        assert_eq!(l.buckets.0.lock().unwrap().tats.len(), MAX_SOURCES);
    }
}
