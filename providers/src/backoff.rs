//! Exponential backoff with jitter between a provider's failed attempts (Consul queries, Marathon
//! and Docker sessions, DNS retries): `base`, doubling, capped at `max`, back to `base` after a
//! success.
//!
//! # Why jitter
//!
//! Failures come in crowds. When Consul loses its leader or the Docker daemon restarts, every
//! watch of every drover pointed at it fails in the same second; with a fixed schedule they would
//! all retry in the same second too, again and again, and the source would meet each recovery
//! attempt with a wall of requests. So each delay is drawn from the last fifth below its nominal
//! value (`[0.8·d, d]`, whole milliseconds): the crowd spreads out within a few rounds, a
//! delay never exceeds `max` (what the settings and the messages promise), and it never falls
//! far below the schedule a user reads in the logs. [`Backoff::exact`] leaves jitter out, for
//! tests that count exact instants on paused time.

use std::time::Duration;

/// The share of a nominal delay that jitter may take off (one fifth).
const JITTER_DIVISOR: u64 = 5;

/// Delays from `base`, doubling, never above `max`, each shortened by up to a fifth at random.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    /// `None`: exact delays.
    jitter: Option<fastrand::Rng>,
}

impl Backoff {
    /// A backoff starting at `base`, never above `max`, with jitter.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: 0,
            jitter: Some(fastrand::Rng::new()),
        }
    }

    /// The same schedule without jitter: every delay is exactly its nominal value.
    pub fn exact(base: Duration, max: Duration) -> Self {
        Self {
            jitter: None,
            ..Self::new(base, max)
        }
    }

    /// The delay before the next attempt (and doubles the one after it).
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.base.saturating_mul(1 << self.failures.min(20)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        match &mut self.jitter {
            Some(rng) => {
                let spread = u64::try_from(nominal.as_millis()).unwrap_or(u64::MAX) / JITTER_DIVISOR;
                nominal.saturating_sub(Duration::from_millis(rng.u64(0..=spread)))
            }
            None => nominal,
        }
    }

    /// Failures since the last success (delays handed out since the last [`Backoff::reset`]).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_its_cap_and_resets() {
        let mut b = Backoff::exact(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let mut capped = Backoff::exact(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(capped.next_delay(), Duration::from_secs(1), "a base above the cap is capped");
        let mut long = Backoff::exact(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(
            (0..100).map(|_| long.next_delay()).last(),
            Some(Duration::from_secs(30)),
            "no overflow"
        );
    }

    #[test]
    fn jitter_takes_at_most_a_fifth_off_and_spreads_the_delays() {
        let nominal = [100u64, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
            for n in nominal {
                let d = b.next_delay();
                assert!(d <= Duration::from_millis(n), "{d:?} is above {n} ms");
                assert!(d >= Duration::from_millis(n - n / 5), "{d:?} is more than a fifth below {n} ms");
                assert_eq!(d.subsec_nanos() % 1_000_000, 0, "whole milliseconds: {d:?}");
            }
            b.reset();
            let first = b.next_delay();
            assert!(
                first <= Duration::from_millis(100) && first >= Duration::from_millis(80),
                "{first:?}"
            );
            seen.insert(first);
        }
        assert!(seen.len() > 1, "fifty backoffs all drew the same first delay: {seen:?}");
    }
}
