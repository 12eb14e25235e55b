//! Per-request cost of choosing a server with each balancing strategy (#27), beside plain smooth
//! weighted round robin: the work `forward::handler` does between routing and sending, on a
//! compiled snapshot with ten healthy servers per service.
//!
//! `wrr/pick` is the path every plain load balancer keeps; `wrr/choose` the same through the
//! strategy dispatch (one branch more); the others add their own work: a cookie lookup (sticky),
//! two random reads (p2c), a scan (leasttime), ten scores (hrw), a CRC32 and a binary search
//! (hash), and for composites the resolution to a leaf before the leaf's choice.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use drover::balance::Affinity;
use drover::compile::Compiler;
use drover::health::HealthRegistry;
use drover::metrics::Metrics;
use drover::service::{Avoid, Resolution};
use drover::snapshot::{Picked, Service, Tried};
use drover::upstream::{Transport, Upstreams};
use drover_providers::aggregate::Fragments;
use drover_providers::DynamicConfig;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pool(name: &str, extra: &str) -> String {
    let mut text = String::new();
    for k in 0..10 {
        text.push_str(&format!(
            "[[http.services.{name}.loadBalancer.servers]]\nurl = \"http://10.0.{}.{k}:8080\"\n",
            name.len()
        ));
    }
    if !extra.is_empty() {
        text.push_str(&format!("[http.services.{name}.loadBalancer]\n{extra}\n"));
    }
    text
}

fn config() -> DynamicConfig {
    let text = [
        pool("wrr", ""),
        pool("sticky", "sticky.cookie.name = \"pin\""),
        pool("p2c", "strategy = \"p2c\""),
        pool("leasttime", "strategy = \"leasttime\""),
        pool("hrw", "strategy = \"hrw\""),
        pool("hashed", "hash.key = \"header:X-User\""),
        "[http.services.canary.weighted]\nservices = [{ name = \"wrr\", weight = 9 }, { name = \"p2c\", weight = 1 }]\n".into(),
        "[http.services.standby.failover]\nservice = \"wrr\"\nfallback = \"p2c\"\n".into(),
    ]
    .concat();
    DynamicConfig::from_toml(&text).expect("bench config parses")
}

fn strategies(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = runtime.enter();
    let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
    let (health, metrics) = (HealthRegistry::default(), Metrics::default());
    let fragments = Fragments {
        generation: 1,
        fragments: vec![("file".into(), Arc::new(config()))],
    };
    let snapshot = compiler.reload(&fragments, &health, &metrics);
    let service = |name: &str| snapshot.services[&format!("{name}@file")].clone();
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("user-12345"));
    headers.insert("cookie", HeaderValue::from_static("session=abc; other=1"));
    let affinity = Affinity {
        headers: &headers,
        path: "/api/items",
        client_ip: b"192.0.2.44",
    };
    let now = Instant::now();
    let index = |picked: Picked<'_>| match picked {
        Picked::Server { index, .. } => index,
        other => panic!("bench services always have a server: {other:?}"),
    };

    let mut group = c.benchmark_group("choose");
    let wrr = service("wrr");
    group.bench_function("wrr/pick", |b| b.iter(|| index(wrr.pick(Tried::default(), now))));
    for name in ["wrr", "sticky", "p2c", "leasttime", "hrw", "hashed"] {
        let s = service(name);
        group.bench_function(format!("{name}/choose"), |b| {
            b.iter(|| index(s.choose(Tried::default(), now, &affinity)))
        });
    }
    for name in ["canary", "standby"] {
        let s: Arc<Service> = service(name);
        group.bench_function(format!("{name}/resolve+choose"), |b| {
            b.iter(|| {
                let mut resolution = Resolution::default();
                let leaf = s.resolve(&affinity, now, &Avoid::default(), true, &mut resolution).expect("a leaf");
                index(leaf.choose(Tried::default(), now, &affinity))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, strategies);
criterion_main!(benches);
