//! Server health: passive ejection, active checks, retry budgets.
//!
//! All of it lives in the [`HealthRegistry`], outside the routing snapshot and keyed by
//! (service, server address), so a reload — or the same server appearing in a new provider
//! fragment — keeps ejections, counters and probation. A server that disappears from the
//! configuration and comes back within its ejection time keeps its state; one that was gone
//! longer starts fresh.

pub mod active;
pub mod budget;
pub mod outlier;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub use budget::RetryBudget;
pub use outlier::{Admission, Outcome, ServerHealth, State};

/// How long the state of a server no longer in the configuration is remembered at most.
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Entry {
    health: Arc<ServerHealth>,
    seen: u64,
    removed_at: Option<Instant>,
    /// How long a removal may last and still keep the state (the service's base ejection time).
    keep_for: Duration,
}

/// Health state of every (service, server) and every service's retry budget.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    servers: HashMap<(String, String), Entry>,
    budgets: HashMap<String, Arc<RetryBudget>>,
}

impl HealthRegistry {
    /// Starts a compilation: every server obtained until [`HealthRegistry::finish`] counts as
    /// present in the new configuration.
    pub fn begin(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
    }

    /// The health of `url` (at `authority`) in `service`; `keep_for` is how long a removal may
    /// last without losing the state (the service's base ejection time).
    pub fn server(&self, service: &str, authority: &str, url: &str, keep_for: Duration) -> Arc<ServerHealth> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let generation = inner.generation;
        let entry = inner
            .servers
            .entry((service.to_string(), authority.to_string()))
            .or_insert_with(|| Entry {
                health: Arc::new(ServerHealth::new(service, url)),
                seen: generation,
                removed_at: None,
                keep_for,
            });
        if let Some(removed) = entry.removed_at.take() {
            if now.saturating_duration_since(removed) > entry.keep_for {
                entry.health.reset();
            }
        }
        entry.seen = generation;
        entry.keep_for = keep_for;
        entry.health.clone()
    }

    /// The retry budget of `service`.
    pub fn budget(&self, service: &str) -> Arc<RetryBudget> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.budgets.entry(service.to_string()).or_default().clone()
    }

    /// Ends a compilation: servers not obtained since [`HealthRegistry::begin`] are marked
    /// removed, and ones removed long ago are forgotten.
    pub fn finish(&self, services: impl Iterator<Item = String>) {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let generation = inner.generation;
        inner.servers.retain(|_, entry| {
            if entry.seen != generation && entry.removed_at.is_none() {
                entry.removed_at = Some(now);
            }
            entry
                .removed_at
                .is_none_or(|removed| now.saturating_duration_since(removed) < FORGET_AFTER.max(entry.keep_for))
        });
        let live: std::collections::HashSet<String> = services.collect();
        inner.budgets.retain(|name, _| live.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_providers::policy::PassivePolicy;

    #[tokio::test(start_paused = true)]
    async fn state_survives_a_reload_and_a_short_absence_but_not_a_long_one() {
        let registry = HealthRegistry::default();
        let p = PassivePolicy::default();
        let keep = p.base_ejection_time;
        registry.begin();
        let h = registry.server("s", "10.0.0.1:80", "http://10.0.0.1", keep);
        registry.finish(["s".to_string()].into_iter());
        for _ in 0..3 {
            h.record(Outcome::LocalFailure, false, &p, Instant::now(), || true);
        }
        assert!(h.is_out());
        // A reload that still has the server: same state.
        registry.begin();
        let again = registry.server("s", "10.0.0.1:80", "http://10.0.0.1", keep);
        registry.finish(["s".to_string()].into_iter());
        assert!(Arc::ptr_eq(&h, &again) && again.is_out());
        // Gone for less than the ejection time, then back: still ejected.
        registry.begin();
        registry.finish(["s".to_string()].into_iter());
        tokio::time::advance(Duration::from_secs(5)).await;
        registry.begin();
        assert!(registry.server("s", "10.0.0.1:80", "http://10.0.0.1", keep).is_out());
        registry.finish(["s".to_string()].into_iter());
        // Gone for longer: fresh.
        registry.begin();
        registry.finish(["s".to_string()].into_iter());
        tokio::time::advance(Duration::from_secs(11)).await;
        registry.begin();
        assert!(!registry.server("s", "10.0.0.1:80", "http://10.0.0.1", keep).is_out());
    }
}
