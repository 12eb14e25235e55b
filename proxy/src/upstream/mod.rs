//! Upstream servers and their connection pools.
//!
//! An [`Upstream`] is one server address. It lives outside the routing snapshot, in the
//! [`Upstreams`] registry keyed by address, so a configuration change never drops connections
//! it can keep: the new snapshot is compiled against the same `Arc<Upstream>`.
//!
//! Each worker thread has its own lane of idle connections per server, as Envoy and HAProxy
//! keep per-thread pools: a connection's socket is registered with the I/O driver of the
//! worker that opened it, so a request sent on it from another worker would get its readiness
//! through the first worker's thread, waking both. Lane 0 belongs to every thread that is not a
//! worker (active health checks on the control thread).

mod pool;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use pool::{BodyProgress, BodyTap, Pooled, RequestBody, SendError, Upstream};

/// Connection settings shared by every upstream.
#[derive(Clone, Debug)]
pub struct Transport {
    /// Deadline for the TCP connect.
    pub dial_timeout: Duration,
    /// Idle pooled connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Idle connections kept per server, split evenly across the workers' lanes.
    pub max_idle: usize,
    /// Worker threads (each gets its own lane of idle connections).
    pub workers: usize,
}

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `index` (0-based): the connections it opens, and the idle
/// connections it reuses, are its own.
pub fn enter_worker(index: usize) {
    LANE.with(|lane| lane.set(index + 1));
}

/// The calling thread's lane: 0 outside workers, 1 + index in worker `index`.
fn current_lane() -> usize {
    LANE.with(Cell::get)
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_idle: 200,
            workers: 1,
        }
    }
}

/// Every upstream in use, by `host:port`.
#[derive(Debug)]
pub struct Upstreams {
    transport: Arc<Transport>,
    by_authority: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Upstreams {
    /// An empty registry whose upstreams use `transport`.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport: Arc::new(transport),
            by_authority: Mutex::new(HashMap::new()),
        }
    }

    /// The upstream for `authority` (`host:port`), created on first use. Called when compiling a
    /// snapshot, never per request.
    pub fn get(&self, authority: &str) -> Arc<Upstream> {
        let mut map = self.by_authority.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(authority.to_string())
            .or_insert_with(|| Arc::new(Upstream::new(authority, self.transport.clone())))
            .clone()
    }

    /// Forgets upstreams no snapshot refers to any more (their idle connections close).
    pub fn retain_used(&self) {
        let mut map = self.by_authority.lock().unwrap_or_else(|p| p.into_inner());
        // Only the registry itself holds an unused upstream.
        map.retain(|_, upstream| Arc::strong_count(upstream) > 1);
    }

    /// A copy of the registry's current contents.
    pub fn all(&self) -> Vec<Arc<Upstream>> {
        self.by_authority
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
