//! What least-request (`p2c`) and least-time (`leasttime`) balancing read: each server's
//! requests in flight and a moving average of its time to the response head.
//!
//! The numbers belong to a (service, server) pair and outlive snapshots ([`Loads`]), so a reload
//! neither forgets a slow server's average nor loses count of the requests still in flight on
//! it. Only services with one of these strategies count anything: round robin pays nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// One server's load.
#[derive(Debug, Default)]
pub struct ServerLoad {
    in_flight: AtomicU32,
    /// Exponentially weighted moving average of the time to the response head, microseconds;
    /// 0 until the first response.
    ttfb_us: AtomicU64,
}

impl ServerLoad {
    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The average time to the response head (zero before the first response).
    pub fn ttfb(&self) -> Duration {
        Duration::from_micros(self.ttfb_us.load(Ordering::Relaxed))
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { load: self.clone() }
    }

    /// Records one response head after `elapsed` (weight 1/8 for the newest, as linkerd's and
    /// nginx's averages roughly do; a lost race between two updates loses one sample).
    pub fn record_ttfb(&self, elapsed: Duration) {
        let sample = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.ttfb_us.load(Ordering::Relaxed);
        let new = if old == 0 { sample.max(1) } else { (old * 7 + sample) / 8 };
        self.ttfb_us.store(new.max(1), Ordering::Relaxed);
    }
}

/// A request in flight on a server (see [`ServerLoad::start`]).
#[derive(Debug)]
pub struct InFlight {
    load: Arc<ServerLoad>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every (service, server)'s load, kept while some snapshot uses it.
#[derive(Debug, Default)]
pub struct Loads {
    by_server: Mutex<HashMap<(String, String), Weak<ServerLoad>>>,
}

impl Loads {
    /// The load of `server` (its URL) in `service`.
    pub fn get(&self, service: &str, server: &str) -> Arc<ServerLoad> {
        // Invariant: the lock is never held across a call that can panic.
        let mut map = self.by_server.lock().unwrap_or_else(|p| p.into_inner());
        let key = (service.to_string(), server.to_string());
        if let Some(load) = map.get(&key).and_then(Weak::upgrade) {
            return load;
        }
        let load = Arc::new(ServerLoad::default());
        map.insert(key, Arc::downgrade(&load));
        load
    }

    /// Forgets the loads no snapshot uses any more.
    pub fn sweep(&self) {
        let mut map = self.by_server.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, load| load.strong_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_until_the_guard_drops_and_loads_outlive_a_reload() {
        let loads = Loads::default();
        let a = loads.get("s", "http://a");
        let guard = a.start();
        assert_eq!(loads.get("s", "http://a").in_flight(), 1, "the same load while in use");
        drop(guard);
        assert_eq!(a.in_flight(), 0);
        a.record_ttfb(Duration::from_millis(80));
        a.record_ttfb(Duration::from_millis(0));
        assert_eq!(a.ttfb(), Duration::from_millis(70));
        drop(a);
        loads.sweep();
        assert_eq!(loads.get("s", "http://a").ttfb(), Duration::ZERO, "forgotten once unused");
    }
}
