//! The dashboard's history (`drover::metrics::history`) at 10,000 routers and 1,000 services
//! (3,000 servers), every router with traffic: what one 3-second sample costs the control thread,
//! what `GET /api/history` costs, and how much memory 15 minutes of history hold (counted by the
//! allocator, so it is measured rather than estimated).
//!
//! `cargo bench --bench history`

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use drover::compile::Compiler;
use drover::health::HealthRegistry;
use drover::metrics::history::{History, POINTS};
use drover::metrics::{method_index, Metrics, RequestKey};
use drover::snapshot::Snapshot;
use drover::upstream::{Transport, Upstreams};
use drover_providers::aggregate::Fragments;
use drover_providers::DynamicConfig;

/// mimalloc (as the drover binary), counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every call is forwarded unchanged to mimalloc; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { INNER.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUTERS: usize = 10_000;
const SERVICES: usize = 1_000;

fn setup() -> (Metrics, Snapshot, Vec<RequestKey>) {
    let mut text = String::new();
    for i in 0..ROUTERS {
        text.push_str(&format!(
            "[http.routers.r{i}]\nrule = \"Host(`h{i}.example`)\"\nservice = \"s{}\"\n",
            i % SERVICES
        ));
    }
    for s in 0..SERVICES {
        for k in 0..3 {
            text.push_str(&format!(
                "[[http.services.s{s}.loadBalancer.servers]]\nurl = \"http://10.{}.{}.{k}:8080\"\n",
                s / 256,
                s % 256
            ));
        }
    }
    let fragments = Fragments {
        generation: 1,
        fragments: vec![("file".into(), Arc::new(DynamicConfig::from_toml(&text).expect("bench config")))],
    };
    let metrics = Metrics::default();
    metrics.set_entry_points(&["web".to_string()]);
    let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
    let snapshot = compiler.reload(&fragments, &HealthRegistry::default(), &metrics);
    let keys = (0..ROUTERS)
        .flat_map(|i| {
            let router = metrics.id(&format!("r{i}@file"));
            let service = metrics.id(&format!("s{}@file", i % SERVICES));
            [200u16, 502].map(|code| RequestKey {
                entry_point: 0,
                router,
                service,
                code,
                method: method_index(&http::Method::GET),
                protocol: 0,
            })
        })
        .collect();
    (metrics, snapshot, keys)
}

fn traffic(metrics: &Metrics, keys: &[RequestKey], round: usize) {
    for (i, key) in keys.iter().enumerate() {
        // Uneven traffic, so that "busiest" changes from round to round.
        if !(i + round).is_multiple_of(7) {
            metrics.record(*key, Duration::from_micros(300 + (i as u64 % 50) * 100), 0, 0);
        }
    }
}

fn bench(c: &mut Criterion) {
    let (metrics, snapshot, keys) = setup();
    let now = tokio::time::Instant::now();
    // The counters' own maps (one entry per key, kept by `Metrics` anyway) exist before the
    // history does: only what the history adds is counted.
    traffic(&metrics, &keys, 0);
    let before = LIVE.load(Ordering::Relaxed);
    let mut history = History::default();
    let started = Instant::now();
    for round in 1..=POINTS {
        traffic(&metrics, &keys, round);
        history.sample(&metrics, &snapshot, round as u64 * 3000, now);
    }
    let filled = started.elapsed();
    let held = LIVE.load(Ordering::Relaxed) - before;
    let json = history.to_json(&metrics).to_string();
    println!(
        "history: {ROUTERS} routers, {SERVICES} services ({} servers), {} request keys: after {POINTS} samples (15 min) it holds {:.2} MB; \
         filling took {filled:?} including the traffic; GET /api/history is {:.0} KB",
        SERVICES * 3,
        keys.len(),
        held as f64 / 1e6,
        json.len() as f64 / 1e3
    );
    let mut round = POINTS;
    c.bench_function("history sample (10k routers, 1k services)", |b| {
        b.iter(|| {
            round += 1;
            history.sample(&metrics, &snapshot, round as u64 * 3000, now);
        })
    });
    c.bench_function("history to_json (GET /api/history)", |b| b.iter(|| history.to_json(&metrics)));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
