//! The retry budget: retries may add at most a share of a service's requests, plus a few per
//! second, so a partial outage cannot multiply the load on the servers that are left.
//!
//! Every request deposits `budgetPercent`/100 of a token; a retry takes a whole one. The balance
//! is capped at [`MAX_TOKENS`], so quiet periods cannot save up a storm. When the balance is
//! empty, `minRetriesPerSecond` retries per second are still allowed (a service with little
//! traffic must be able to retry at all).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Most retries a service can save up.
pub const MAX_TOKENS: i64 = 10;
const MILLI: i64 = 1000;

/// One service's retry budget.
#[derive(Debug, Default)]
pub struct RetryBudget {
    milli_tokens: AtomicI64,
    second: AtomicU64,
    spent_this_second: AtomicU32,
    retries: AtomicU64,
    refused: AtomicU64,
}

impl RetryBudget {
    /// A request arrived: deposit `percent`% of a token.
    pub fn deposit(&self, percent: u32) {
        if self.milli_tokens.load(Ordering::Relaxed) < MAX_TOKENS * MILLI {
            self.milli_tokens.fetch_add(i64::from(percent) * MILLI / 100, Ordering::Relaxed);
        }
    }

    /// May one retry happen now? `now_secs` is a whole-second clock.
    pub fn withdraw(&self, min_per_second: u32, now_secs: u64) -> bool {
        if self.milli_tokens.fetch_sub(MILLI, Ordering::Relaxed) >= MILLI {
            self.retries.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.milli_tokens.fetch_add(MILLI, Ordering::Relaxed);
        if self.second.swap(now_secs, Ordering::Relaxed) != now_secs {
            self.spent_this_second.store(0, Ordering::Relaxed);
        }
        if self.spent_this_second.fetch_add(1, Ordering::Relaxed) < min_per_second {
            self.retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Retries granted so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Retries refused by the budget so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_the_share_plus_the_minimum() {
        let b = RetryBudget::default();
        let mut granted = 0;
        // 1,000 requests in one second, each wanting a retry.
        for _ in 0..1_000 {
            b.deposit(20);
            if b.withdraw(3, 7) {
                granted += 1;
            }
        }
        assert!((200..=203).contains(&granted), "20% plus at most 3 per second: {granted}");
    }

    #[test]
    fn a_quiet_service_can_still_retry_a_few_times_a_second() {
        let b = RetryBudget::default();
        assert!(b.withdraw(3, 1) && b.withdraw(3, 1) && b.withdraw(3, 1));
        assert!(!b.withdraw(3, 1));
        assert!(b.withdraw(3, 2), "a new second");
    }

    #[test]
    fn savings_are_capped() {
        let b = RetryBudget::default();
        for _ in 0..100_000 {
            b.deposit(20);
        }
        let granted = (0..100).filter(|_| b.withdraw(0, 1)).count() as i64;
        assert!(granted <= MAX_TOKENS + 1, "{granted}");
    }
}
