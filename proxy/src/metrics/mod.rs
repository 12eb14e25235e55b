//! Prometheus metrics, Traefik's names with a `drover_` prefix.
//!
//! Request metrics are recorded into a per-worker shard: each worker thread owns one map,
//! behind a mutex only the scrape ever contends for, keyed by small integers (entrypoint,
//! router and service ids, status code, method). So recording costs one uncontended lock and
//! one hash lookup; there is no global lock and no label string on the request path. A scrape
//! sums the shards and hands everything to `prometheus-client`'s encoder.
//!
//! Everything else (servers up, ejections, retries, connections opened vs reused, reloads,
//! provider errors) is read at scrape time from where it already lives.

mod encode;
pub mod history;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use rustc_hash::FxHashMap;

pub use encode::encode;

/// Histogram upper bounds in seconds that `/metrics` exports (Traefik's defaults).
pub const BUCKETS: [f64; 4] = [0.1, 0.3, 1.2, 5.0];

/// The finer upper bounds each request is counted under: every [`BUCKETS`] bound is one of them,
/// so `/metrics` sums them into Traefik's buckets, while the dashboard's p50/p99
/// ([`history`]) read milliseconds rather than "under 100 ms". Finding the bucket is a binary
/// search of 15 bounds per request, as before of 4.
pub const FINE_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.2, 2.5, 5.0, 10.0,
];

/// Marks "no router" (404) and "no service" in a [`RequestKey`].
pub const NONE: u32 = u32::MAX;

/// What one request is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// Entrypoint index.
    pub entry_point: u16,
    /// Router id ([`Metrics::id`]) or [`NONE`].
    pub router: u32,
    /// Service id or [`NONE`].
    pub service: u32,
    /// Response status.
    pub code: u16,
    /// Method index ([`method_index`]).
    pub method: u8,
    /// 0 = http, 1 = websocket.
    pub protocol: u8,
}

/// Sums for one key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Requests.
    pub count: u64,
    /// Total duration in seconds.
    pub seconds: f64,
    /// Non-cumulative bucket counts, one per [`FINE_BUCKETS`] bound plus +Inf.
    pub buckets: [u64; FINE_BUCKETS.len() + 1],
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

impl Stats {
    fn add(&mut self, duration: Duration, bytes_in: u64, bytes_out: u64) {
        let secs = duration.as_secs_f64();
        self.count += 1;
        self.seconds += secs;
        self.buckets[FINE_BUCKETS.partition_point(|b| *b < secs)] += 1;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
    }

    /// Non-cumulative counts in [`BUCKETS`] (plus +Inf), summed from the fine buckets.
    pub fn coarse(&self) -> [u64; BUCKETS.len() + 1] {
        let mut out = [0; BUCKETS.len() + 1];
        for (i, count) in self.buckets.iter().enumerate() {
            let bound = FINE_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            out[BUCKETS.partition_point(|b| *b < bound)] += count;
        }
        out
    }

    fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.seconds += other.seconds;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

/// One thread's counters. The key is a handful of small integers, hashed with FxHash: SipHash's
/// flood resistance buys nothing for keys drover builds itself, and it is recorded per request.
type Shard = Arc<Mutex<FxHashMap<RequestKey, Stats>>>;

thread_local! {
    /// This thread's shard for each `Metrics` instance (tests run several drovers in one process).
    static SHARDS: RefCell<Vec<(usize, Shard)>> = const { RefCell::new(Vec::new()) };
}

/// Methods with their own label value; anything else is `OTHER` (no unbounded label values).
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

/// The index of `method` in the label table.
pub fn method_index(method: &Method) -> u8 {
    METHODS.iter().position(|m| m == method).unwrap_or(METHODS.len()) as u8
}

fn method_name(index: u8) -> &'static str {
    METHODS.get(index as usize).map_or("OTHER", |m| m.as_str())
}

/// Every metric drover keeps.
#[derive(Debug)]
pub struct Metrics {
    /// Unique per instance, so a thread's shard is never mistaken for another drover's.
    instance: usize,
    shards: Mutex<Vec<Shard>>,
    names: Mutex<Names>,
    entry_points: Mutex<Vec<String>>,
    open_connections: Mutex<Vec<Arc<AtomicI64>>>,
    reloads: AtomicU64,
    last_reload_success: AtomicU64,
    access_log_dropped: AtomicU64,
    /// TCP routers' counters (kept across reloads).
    pub tcp: crate::l4::serve::L4StatsRegistry,
    /// UDP routers' counters (a session counts as a connection).
    pub udp: crate::l4::serve::L4StatsRegistry,
}

impl Default for Metrics {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Self {
            instance: NEXT.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::default(),
            names: Mutex::default(),
            entry_points: Mutex::default(),
            open_connections: Mutex::default(),
            reloads: AtomicU64::default(),
            last_reload_success: AtomicU64::default(),
            access_log_dropped: AtomicU64::default(),
            tcp: crate::l4::serve::L4StatsRegistry::default(),
            udp: crate::l4::serve::L4StatsRegistry::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Metrics {
    /// Names the entrypoints (by index) and returns one open-connections gauge per entrypoint.
    pub fn set_entry_points(&self, names: &[String]) -> Vec<Arc<AtomicI64>> {
        *self.entry_points.lock().unwrap_or_else(|p| p.into_inner()) = names.to_vec();
        let gauges: Vec<Arc<AtomicI64>> = names.iter().map(|_| Arc::default()).collect();
        *self.open_connections.lock().unwrap_or_else(|p| p.into_inner()) = gauges.clone();
        gauges
    }

    /// A stable id for a router or service name (called when compiling, never per request).
    pub fn id(&self, name: &str) -> u32 {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = names.ids.get(name) {
            return *id;
        }
        let id = names.names.len() as u32;
        names.names.push(name.to_string());
        names.ids.insert(name.to_string(), id);
        id
    }

    /// Counts one finished request.
    pub fn record(&self, key: RequestKey, duration: Duration, bytes_in: u64, bytes_out: u64) {
        let me = self.instance;
        SHARDS.with(|shards| {
            let mut shards = shards.borrow_mut();
            let index = match shards.iter().position(|(owner, _)| *owner == me) {
                Some(i) => i,
                None => {
                    // First request this thread records for this drover: register its shard.
                    let shard: Shard = Arc::default();
                    self.shards.lock().unwrap_or_else(|p| p.into_inner()).push(shard.clone());
                    shards.push((me, shard));
                    shards.len() - 1
                }
            };
            let mut map = shards[index].1.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key).or_default().add(duration, bytes_in, bytes_out);
        });
    }

    /// A configuration was applied.
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_reload_success.store(now, Ordering::Relaxed);
    }

    /// An access-log line was dropped because the sink was slow.
    pub fn access_log_dropped(&self) {
        self.access_log_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Every shard summed.
    fn totals(&self) -> HashMap<RequestKey, Stats> {
        let mut out: HashMap<RequestKey, Stats> = HashMap::new();
        for shard in self.shards.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for (key, stats) in shard.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                out.entry(*key).or_default().merge(stats);
            }
        }
        out
    }

    fn name(&self, id: u32) -> String {
        if id == NONE {
            return String::new();
        }
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .names
            .get(id as usize)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_from_several_threads_sum_up() {
        let metrics = Arc::new(Metrics::default());
        metrics.set_entry_points(&["web".to_string()]);
        let router = metrics.id("r@file");
        let service = metrics.id("s@file");
        let key = RequestKey {
            entry_point: 0,
            router,
            service,
            code: 200,
            method: method_index(&Method::GET),
            protocol: 0,
        };
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let m = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.record(key, Duration::from_millis(150), 10, 20);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let totals = metrics.totals();
        let stats = totals[&key];
        assert_eq!((stats.count, stats.bytes_in, stats.bytes_out), (300, 3000, 6000));
        assert_eq!(stats.coarse(), [0, 300, 0, 0, 0], "150 ms falls in the 0.3 s bucket");
        assert_eq!(stats.buckets[7], 300, "and in the fine 0.2 s bucket");
        assert_eq!(metrics.id("r@file"), router, "ids are stable");
    }
}
