//! The blocking-query loop's three client rules, and the failure backoff.
//!
//! Consul's documentation asks every blocking client for three things, and each one guards against
//! a way the loop can go wrong:
//!
//! * **The index can go backwards** (snapshot restore, some upgrades). Waiting on an index the
//!   server will not reach for a long time would freeze the watch, so a lower index resets the
//!   loop to 0: the next request does not block and the caller re-lists everything
//!   ([`Index::observe`] returns [`Observed::Reset`]).
//! * **The index must be at least 1.** A returned 0 (a Consul bug on some versions, or an empty
//!   table) would make the next request non-blocking, and the loop a busy loop; waiting on 1 is
//!   always safe.
//! * **Rate-limit, do not sleep.** A fixed sleep on every turn delays every update in the normal
//!   case. A [`TokenBucket`] lets a burst of queries through at once and, when the watched data
//!   churns, degrades to one query per refill interval.
//!
//! [`Backoff`](crate::backoff::Backoff) is separate: it spaces attempts after a *failure* (Consul unreachable, 5xx, 403),
//! which is not churn and must not spend the bucket.

use std::time::Duration;

use tokio::time::Instant;

/// What a new `X-Consul-Index` means for the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The index moved forward (or this was the first answer): something may have changed.
    Changed,
    /// The same index: the wait expired or a write changed nothing; nothing to do.
    Unchanged,
    /// The index went backwards: the loop was reset to 0 and the data must be re-listed.
    Reset,
}

/// The index a blocking loop waits on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Index(u64);

impl Index {
    /// The `index` query parameter to send; `None` for a first (non-blocking) request.
    pub fn query(&self) -> Option<u64> {
        (self.0 > 0).then_some(self.0)
    }

    /// Starts over: the next request does not block.
    pub fn reset(&mut self) {
        self.0 = 0;
    }

    /// Applies the client rules to the index an answer carried.
    pub fn observe(&mut self, returned: u64) -> Observed {
        let next = returned.max(1);
        if self.0 > 0 && next < self.0 {
            self.0 = 0;
            return Observed::Reset;
        }
        let changed = next != self.0;
        self.0 = next;
        if changed {
            Observed::Changed
        } else {
            Observed::Unchanged
        }
    }
}

/// A token bucket holding up to `burst` queries, refilled with one per `interval`.
///
/// Kept as a "theoretical arrival time" (GCRA), which is the same bucket in one `Instant`: exact
/// under paused tokio time and free of float rounding.
#[derive(Debug)]
pub struct TokenBucket {
    interval: Duration,
    burst: u32,
    tat: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, interval: Duration) -> Self {
        Self {
            interval,
            burst: burst.max(1),
            tat: Instant::now(),
        }
    }

    /// How long [`TokenBucket::take`] would wait now.
    pub fn delay(&self) -> Duration {
        let now = Instant::now();
        let allowance = self.interval * (self.burst - 1);
        self.tat.max(now).saturating_duration_since(now).saturating_sub(allowance)
    }

    /// Takes one token, waiting for it when the bucket is empty.
    pub async fn take(&mut self) {
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.tat = self.tat.max(Instant::now()) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_rules() {
        let mut index = Index::default();
        assert_eq!(index.query(), None, "the first request does not block");
        assert_eq!(index.observe(4102), Observed::Changed);
        assert_eq!(index.query(), Some(4102));
        assert_eq!(index.observe(4102), Observed::Unchanged, "a wait that expired");
        assert_eq!(index.observe(4117), Observed::Changed);
        assert_eq!(index.observe(12), Observed::Reset, "the index went backwards");
        assert_eq!(index.query(), None, "reset to 0: the next request returns at once");
        assert_eq!(index.observe(12), Observed::Changed);
        let mut zero = Index::default();
        assert_eq!(zero.observe(0), Observed::Changed);
        assert_eq!(zero.query(), Some(1), "an index of 0 is waited on as 1, never as 0");
        assert_eq!(zero.observe(0), Observed::Unchanged, "and 0 again is not a change");
        assert_eq!(zero.query(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_lets_a_burst_through_then_one_per_interval() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, Duration::from_secs(15));
        bucket.take().await;
        bucket.take().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst of two goes at once");
        bucket.take().await;
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        bucket.take().await;
        assert_eq!(start.elapsed(), Duration::from_secs(30), "churn degrades to one per interval");
        tokio::time::sleep(Duration::from_secs(300)).await;
        let idle = Instant::now();
        bucket.take().await;
        bucket.take().await;
        assert_eq!(idle.elapsed(), Duration::ZERO, "an idle loop gets its burst back");
        assert_eq!(bucket.delay(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partly_refilled_bucket_waits_only_for_the_rest() {
        let mut bucket = TokenBucket::new(2, Duration::from_secs(10));
        bucket.take().await;
        bucket.take().await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let start = Instant::now();
        bucket.take().await;
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }
}
