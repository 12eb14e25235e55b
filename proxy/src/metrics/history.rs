//! The last 15 minutes, for the dashboard's charts: requests per second, the share of 5xx and of
//! drover's own error answers, p50/p99 latency, and each server's health, every 3 s.
//!
//! # Why sampling, and what it costs
//!
//! The data path already counts every request into its worker's shard ([`super::Metrics`]); the
//! history adds nothing there. Every [`INTERVAL`] the control thread sums the shards (as a scrape
//! does), subtracts the previous sums, and appends one [`Point`] per series: counts and two
//! percentiles read from the fine histogram ([`super::FINE_BUCKETS`]) of that interval. The
//! percentiles are interpolated inside a bucket, so they are as exact as the buckets are narrow
//! (1, 2.5, 5, 10, 25, 50, 100, 200, 300, 500, 750 ms, 1.2, 2.5, 5, 10 s).
//!
//! # Memory, bounded
//!
//! A series is a ring of [`POINTS`] (300 × 3 s = 15 min) points of 20 bytes: 6 KB. Series are kept
//! for every entrypoint, for the [`MAX_SERVICES`] busiest services and the [`MAX_ROUTERS`] busiest
//! routers (busiest by an exponentially decayed request count, so a router that stops taking
//! traffic leaves the set within minutes), and a server timeline (300 one-byte states plus at
//! most [`MAX_EVENTS`] transitions with their reasons) for at most [`MAX_SERVERS`] servers of the
//! kept services. So however many routers there are, at most 250 series plus the entrypoints
//! (≈ 1.5 MB) and 1,000 timelines (≈ 0.4 MB); on top of that, the previous sums to subtract from,
//! about 170 bytes per router or service that has seen traffic.
//!
//! Measured (`cargo bench --bench history`, counting allocator): 10,000 routers and 1,000
//! services (3,000 servers), all with traffic, hold 5.3 MB after 15 minutes; one sample takes
//! 10 ms of the control thread every 3 s (25 ms on a loaded 2-core machine), one
//! `GET /api/history` answer (121 KB) 32 ms.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Value};

use super::{Metrics, FINE_BUCKETS, NONE};
use crate::health::outlier::State;
use crate::snapshot::Snapshot;

/// Time between two points.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// Points per series: 15 minutes.
pub const POINTS: usize = 300;
/// Services with a history (the busiest).
pub const MAX_SERVICES: usize = 200;
/// Routers with a history (the busiest).
pub const MAX_ROUTERS: usize = 50;
/// Servers with a health timeline.
pub const MAX_SERVERS: usize = 1000;
/// State changes kept per server (with their reasons).
pub const MAX_EVENTS: usize = 32;

/// Each interval, a series' decayed request count keeps this share of its previous value.
const DECAY: f64 = 0.9;

/// One interval of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// Requests completed.
    pub requests: u32,
    /// Of which answered 5xx.
    pub errors_5xx: u32,
    /// Of which answered 404, 502, 503 or 504 (drover's own error answers: no route, a server
    /// failed, none left, a server too slow).
    pub local: u32,
    /// Median duration in milliseconds (0 without requests).
    pub p50_ms: f32,
    /// 99th percentile in milliseconds (0 without requests).
    pub p99_ms: f32,
}

/// Sums since start for one series, to subtract from.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    requests: u64,
    errors_5xx: u64,
    local: u64,
    buckets: [u64; FINE_BUCKETS.len() + 1],
}

impl Sums {
    fn add(&mut self, code: u16, stats: &super::Stats) {
        self.requests += stats.count;
        if (500..600).contains(&code) {
            self.errors_5xx += stats.count;
        }
        if matches!(code, 404 | 502 | 503 | 504) {
            self.local += stats.count;
        }
        for (a, b) in self.buckets.iter_mut().zip(stats.buckets) {
            *a += b;
        }
    }

    /// This interval: `self` minus the sums of the previous one (all of `self` after a restart
    /// of the counters, which cannot happen but must not underflow).
    fn since(&self, before: &Sums) -> Point {
        let sub = |a: u64, b: u64| if a >= b { a - b } else { a };
        let mut buckets = [0u64; FINE_BUCKETS.len() + 1];
        for (i, b) in buckets.iter_mut().enumerate() {
            *b = sub(self.buckets[i], before.buckets[i]);
        }
        let clamp = |n: u64| n.min(u64::from(u32::MAX)) as u32;
        Point {
            requests: clamp(sub(self.requests, before.requests)),
            errors_5xx: clamp(sub(self.errors_5xx, before.errors_5xx)),
            local: clamp(sub(self.local, before.local)),
            p50_ms: percentile(&buckets, 0.5),
            p99_ms: percentile(&buckets, 0.99),
        }
    }
}

/// The `q` quantile, in milliseconds, of durations counted in fine `buckets` (non-cumulative),
/// interpolated linearly inside its bucket; 0 without any.
pub fn percentile(buckets: &[u64; FINE_BUCKETS.len() + 1], q: f64) -> f32 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, count) in buckets.iter().enumerate() {
        if *count > 0 && (below + count) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { FINE_BUCKETS[i - 1] };
            let Some(upper) = FINE_BUCKETS.get(i).copied() else {
                // Beyond the last bound: all that is known is "more than 10 s".
                return (lower * 1000.0) as f32;
            };
            let within = ((rank - below as f64) / *count as f64).clamp(0.0, 1.0);
            return ((lower + (upper - lower) * within) * 1000.0) as f32;
        }
        below += count;
    }
    (FINE_BUCKETS[FINE_BUCKETS.len() - 1] * 1000.0) as f32
}

/// A series' points, oldest first.
#[derive(Debug, Default)]
struct Series {
    points: VecDeque<Point>,
    /// Requests, decayed each interval: what "busiest" ranks by.
    recent: f64,
}

impl Series {
    fn push(&mut self, point: Point) {
        // Exactly 15 minutes: growing by doubling would reserve 512 points.
        if self.points.capacity() == 0 {
            self.points.reserve_exact(POINTS);
        }
        if self.points.len() == POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }
}

/// One server's states, one per interval, and its state changes.
#[derive(Debug, Default)]
struct Timeline {
    states: VecDeque<State>,
    events: VecDeque<Event>,
    last: Option<State>,
    ejections: u64,
}

/// A server's state change.
#[derive(Clone, Debug)]
struct Event {
    at_ms: u64,
    state: State,
    reason: Option<String>,
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Up => "up",
        State::Ejected => "ejected",
        State::Probation => "probation",
        State::SlowStart => "slow-start",
    }
}

/// The charts' data: kept on the control thread, sampled every [`INTERVAL`].
#[derive(Debug, Default)]
pub struct History {
    /// Unix milliseconds of the newest point.
    newest_ms: u64,
    entry_points: Vec<(String, Series)>,
    services: HashMap<u32, Series>,
    routers: HashMap<u32, Series>,
    /// Previous sums by entrypoint index, service id and router id.
    before_entry_points: HashMap<u16, Sums>,
    before_services: HashMap<u32, Sums>,
    before_routers: HashMap<u32, Sums>,
    /// Decayed request counts of every router and service seen, for ranking.
    recent_services: HashMap<u32, f64>,
    recent_routers: HashMap<u32, f64>,
    /// By (service, server URL).
    servers: BTreeMap<(String, String), Timeline>,
}

impl History {
    /// Appends one point to every kept series, from `metrics` now, and the servers' states from
    /// `snapshot`; `now_ms` is the Unix time in milliseconds it stands for.
    pub fn sample(&mut self, metrics: &Metrics, snapshot: &Snapshot, now_ms: u64, now: tokio::time::Instant) {
        let totals = metrics.totals();
        let mut entry_points: HashMap<u16, Sums> = HashMap::new();
        let mut services: HashMap<u32, Sums> = HashMap::new();
        let mut routers: HashMap<u32, Sums> = HashMap::new();
        for (key, stats) in &totals {
            entry_points.entry(key.entry_point).or_default().add(key.code, stats);
            if key.service != NONE {
                services.entry(key.service).or_default().add(key.code, stats);
            }
            if key.router != NONE {
                routers.entry(key.router).or_default().add(key.code, stats);
            }
        }

        let names = metrics.entry_points.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if self.entry_points.len() != names.len() || self.entry_points.iter().zip(&names).any(|((a, _), b)| a != b) {
            self.entry_points = names.iter().map(|n| (n.clone(), Series::default())).collect();
        }
        for (i, (_, series)) in self.entry_points.iter_mut().enumerate() {
            let now_sums = entry_points.get(&(i as u16)).copied().unwrap_or_default();
            let before = self.before_entry_points.get(&(i as u16)).copied().unwrap_or_default();
            series.push(now_sums.since(&before));
        }
        self.before_entry_points = entry_points;

        // Services in the snapshot are candidates even before their first request, so a chart
        // shows the quiet before a burst.
        let configured: Vec<u32> = snapshot.services.values().map(|s| s.metrics_id).collect();
        keep_busiest(
            &mut self.services,
            &mut self.recent_services,
            &mut self.before_services,
            services,
            &configured,
            MAX_SERVICES,
        );
        keep_busiest(
            &mut self.routers,
            &mut self.recent_routers,
            &mut self.before_routers,
            routers,
            &[],
            MAX_ROUTERS,
        );

        let mut seen = 0;
        let mut present = Vec::new();
        let mut kept: Vec<_> = snapshot
            .services
            .values()
            .filter(|s| self.services.contains_key(&s.metrics_id))
            .collect();
        kept.sort_by(|a, b| a.name.cmp(&b.name));
        'services: for service in kept {
            for server in service.servers.iter() {
                if seen == MAX_SERVERS {
                    break 'services;
                }
                seen += 1;
                let key = (service.name.to_string(), server.url.to_string());
                let report = server.health.report(now);
                let timeline = self.servers.entry(key.clone()).or_default();
                // An ejection that ended within the interval still shows as one.
                let flash = report.total_ejections > timeline.ejections && timeline.last.is_some();
                let state = if flash && report.state != State::Ejected {
                    State::Ejected
                } else {
                    report.state
                };
                if timeline.last != Some(state) || flash {
                    if timeline.events.len() == MAX_EVENTS {
                        timeline.events.pop_front();
                    }
                    timeline.events.push_back(Event {
                        at_ms: now_ms,
                        state,
                        reason: report.reason.clone().filter(|_| state != State::Up),
                    });
                }
                timeline.last = Some(report.state);
                timeline.ejections = report.total_ejections;
                if timeline.states.capacity() == 0 {
                    timeline.states.reserve_exact(POINTS);
                }
                if timeline.states.len() == POINTS {
                    timeline.states.pop_front();
                }
                timeline.states.push_back(state);
                present.push(key);
            }
        }
        present.sort();
        self.servers.retain(|key, _| present.binary_search(key).is_ok());
        self.newest_ms = now_ms;
    }

    /// What `GET /api/history` answers: every series oldest point first, aligned on the newest
    /// point (a series kept for less than 15 minutes is shorter).
    pub fn to_json(&self, metrics: &Metrics) -> Value {
        let seconds = INTERVAL.as_secs_f64();
        let series = |name: String, s: &Series| {
            let share = |n: fn(&Point) -> u32| -> Vec<Value> {
                s.points
                    .iter()
                    .map(|p| {
                        if p.requests == 0 {
                            Value::Null
                        } else {
                            json!(f64::from(n(p)) / f64::from(p.requests))
                        }
                    })
                    .collect()
            };
            let latency = |n: fn(&Point) -> f32| -> Vec<Value> {
                s.points
                    .iter()
                    .map(|p| {
                        if p.requests == 0 {
                            Value::Null
                        } else {
                            json!((f64::from(n(p)) * 100.0).round() / 100.0)
                        }
                    })
                    .collect()
            };
            json!({
                "name": name,
                "requestsPerSecond": s.points.iter().map(|p| (f64::from(p.requests) / seconds * 100.0).round() / 100.0).collect::<Vec<_>>(),
                "share5xx": share(|p| p.errors_5xx),
                "shareLocal": share(|p| p.local),
                "p50Ms": latency(|p| p.p50_ms),
                "p99Ms": latency(|p| p.p99_ms),
            })
        };
        let by_traffic = |map: &HashMap<u32, Series>| {
            let mut list: Vec<(&u32, &Series)> = map.iter().collect();
            list.sort_by(|a, b| b.1.recent.total_cmp(&a.1.recent).then(a.0.cmp(b.0)));
            list.into_iter().map(|(id, s)| series(metrics.name(*id), s)).collect::<Vec<_>>()
        };
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|((service, url), t)| {
                json!({
                    "service": service,
                    "url": url,
                    "states": t.states.iter().map(|s| state_name(*s)).collect::<Vec<_>>(),
                    "events": t.events.iter().map(|e| json!({
                        "at": e.at_ms,
                        "state": state_name(e.state),
                        "reason": e.reason,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "intervalMs": INTERVAL.as_millis() as u64,
            "points": POINTS,
            "newest": self.newest_ms,
            "entryPoints": self.entry_points.iter().map(|(n, s)| series(n.clone(), s)).collect::<Vec<_>>(),
            "services": by_traffic(&self.services),
            "routers": by_traffic(&self.routers),
            "servers": servers,
        })
    }
}

/// Appends this interval to the `limit` busiest series of `now` (by id), among ids with traffic
/// and `configured` ones; forgets the series that fell out.
fn keep_busiest(
    series: &mut HashMap<u32, Series>,
    recent: &mut HashMap<u32, f64>,
    before: &mut HashMap<u32, Sums>,
    now: HashMap<u32, Sums>,
    configured: &[u32],
    limit: usize,
) {
    let mut points: HashMap<u32, Point> = HashMap::with_capacity(now.len());
    for (id, sums) in &now {
        let point = sums.since(&before.get(id).copied().unwrap_or_default());
        let r = recent.entry(*id).or_default();
        *r = *r * DECAY + f64::from(point.requests);
        points.insert(*id, point);
    }
    for id in configured {
        recent.entry(*id).or_default();
    }
    let mut ranked: Vec<(u32, f64)> = recent.iter().map(|(id, r)| (*id, *r)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(limit);
    let keep: HashMap<u32, f64> = ranked.into_iter().collect();
    series.retain(|id, _| keep.contains_key(id));
    for (id, r) in &keep {
        let s = series.entry(*id).or_default();
        s.recent = *r;
        s.push(points.get(id).copied().unwrap_or_default());
    }
    // Only what may be ranked again is remembered: ids with traffic, and the configured ones.
    recent.retain(|id, r| *r >= 0.01 || configured.contains(id) || now.contains_key(id));
    *before = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{method_index, RequestKey};

    #[test]
    fn percentiles_interpolate_inside_fine_buckets() {
        let mut buckets = [0u64; FINE_BUCKETS.len() + 1];
        assert_eq!(percentile(&buckets, 0.5), 0.0);
        buckets[4] = 100; // 10–25 ms
        assert!((percentile(&buckets, 0.5) - 17.5).abs() < 0.01);
        buckets[FINE_BUCKETS.len()] = 2; // beyond 10 s
        assert_eq!(percentile(&buckets, 0.99), 10_000.0);
    }

    #[test]
    fn points_are_what_each_interval_added_and_rings_are_bounded() {
        let metrics = Metrics::default();
        metrics.set_entry_points(&["web".to_string()]);
        let (router, service) = (metrics.id("r@file"), metrics.id("s@file"));
        let key = |code| RequestKey {
            entry_point: 0,
            router,
            service,
            code,
            method: method_index(&http::Method::GET),
            protocol: 0,
        };
        let snapshot = Snapshot::empty(1);
        let mut history = History::default();
        let now = tokio::time::Instant::now();
        for _ in 0..30 {
            metrics.record(key(200), Duration::from_millis(3), 0, 0);
        }
        history.sample(&metrics, &snapshot, 1_000, now);
        for _ in 0..6 {
            metrics.record(key(502), Duration::from_millis(40), 0, 0);
        }
        history.sample(&metrics, &snapshot, 4_000, now);
        let answer = history.to_json(&metrics);
        let web = &answer["entryPoints"][0];
        assert_eq!(web["name"], "web");
        assert_eq!(web["requestsPerSecond"], json!([10.0, 2.0]));
        assert_eq!(web["share5xx"], json!([0.0, 1.0]));
        assert_eq!(web["shareLocal"], json!([0.0, 1.0]));
        let p50 = web["p50Ms"][0].as_f64().expect("a latency");
        assert!((2.5..=5.0).contains(&p50), "{p50}");
        assert_eq!(answer["routers"][0]["name"], "r@file");
        assert_eq!(answer["services"][0]["name"], "s@file");

        for i in 0..(POINTS as u64 + 10) {
            history.sample(&metrics, &snapshot, 7_000 + i * 3_000, now);
        }
        let answer = history.to_json(&metrics);
        assert_eq!(answer["entryPoints"][0]["requestsPerSecond"].as_array().map(Vec::len), Some(POINTS));
        assert_eq!(
            answer["entryPoints"][0]["share5xx"][POINTS - 1],
            Value::Null,
            "no requests, no share"
        );
    }

    #[test]
    fn only_the_busiest_routers_keep_a_history() {
        let metrics = Metrics::default();
        metrics.set_entry_points(&["web".to_string()]);
        let ids: Vec<u32> = (0..MAX_ROUTERS as u32 + 20).map(|i| metrics.id(&format!("r{i}@file"))).collect();
        let snapshot = Snapshot::empty(1);
        let mut history = History::default();
        for (n, id) in ids.iter().enumerate() {
            let key = RequestKey {
                entry_point: 0,
                router: *id,
                service: NONE,
                code: 200,
                method: 0,
                protocol: 0,
            };
            for _ in 0..=n {
                metrics.record(key, Duration::from_millis(1), 0, 0);
            }
        }
        history.sample(&metrics, &snapshot, 1_000, tokio::time::Instant::now());
        assert_eq!(history.routers.len(), MAX_ROUTERS);
        assert!(history.routers.contains_key(&ids[ids.len() - 1]), "the busiest is kept");
        assert!(!history.routers.contains_key(&ids[0]), "the quietest is not");
    }
}
