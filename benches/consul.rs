//! Consul catalog provider costs, against the Consul stand-in (`tests/support/consul.rs`):
//!
//! * change → routed: from a write in Consul to the snapshot that has (or no longer has) the
//!   instance, over 100 changes (check critical / passing, deregister / register, in turn), p50
//!   and p99, with the default 100 ms coalescing window and with none (which isolates the provider:
//!   the blocking query's wake-up, the instance re-list, the fragment, the merge and compile).
//!   These passes lift the watch rate limit (`watchRefill = "1ms"`) since the changes follow each
//!   other faster than the default allows; a third pass keeps every default and spaces 20 changes
//!   one second apart (the rate the default bucket sustains);
//! * the request rate drover sends to Consul when nothing changes: with the default `wait` (55 s)
//!   it must be 0 beyond the two open blocking queries; with `wait = "2s"` it shows the cost of
//!   one re-issued blocking query per watch per wait.
//!
//! ```text
//! cargo bench --bench consul
//! IDLE_SECS=60 cargo bench --bench consul     # longer idle windows (default 20 s)
//! ```

#[path = "../tests/support/consul.rs"]
mod consul;
#[path = "../tests/support/serve.rs"]
mod serve;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use consul::{ConsulServer, Registration};
use drover::config::StaticConfig;
use drover::Drover;

const SERVICES: usize = 10;
const INSTANCES: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn start_drover(consul: &ConsulServer, throttle: &str, extra: &str) -> Drover {
    let text = format!(
        "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[api]\naddress = \"127.0.0.1:0\"\n[log]\nlevel = \"error\"\n\
         [providers]\nprovidersThrottleDuration = \"{throttle}\"\n{}",
        consul.provider_toml(extra, "")
    );
    let resolved = StaticConfig::parse(Path::new("bench.toml"), &text).expect("bench static config");
    Drover::start(resolved, 1).expect("drover starts")
}

async fn wait_generation(drover: &Drover, above: u64) -> Duration {
    let start = Instant::now();
    while drover.generation() <= above {
        assert!(start.elapsed() < Duration::from_secs(20), "no new configuration within 20 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    start.elapsed()
}

fn instance(service: usize, n: usize) -> Registration {
    let addr = SocketAddr::from(([127, 0, 0, 1], 20_000 + (service * INSTANCES + n) as u16));
    let name = format!("svc{service}");
    let tags = [
        "drover.enable=true".to_string(),
        format!("drover.http.routers.{name}.rule=Host(`{name}.example`)"),
    ];
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    Registration::new(&format!("node-{n}"), &format!("{name}-{n}"), &name, addr, &tags)
}

/// Applies change `i` of the cycle to instance `svc0-2`; returns its kind.
fn change(consul: &ConsulServer, i: usize) -> &'static str {
    match i % 4 {
        0 => {
            consul.set_check("node-2", "service:svc0-2", Some("svc0-2"), "critical");
            "check"
        }
        1 => {
            consul.set_check("node-2", "service:svc0-2", Some("svc0-2"), "passing");
            "check"
        }
        2 => {
            consul.deregister("node-2", "svc0-2");
            "catalog"
        }
        _ => {
            consul.register(instance(0, 2));
            consul.set_check("node-2", "service:svc0-2", Some("svc0-2"), "passing");
            "catalog"
        }
    }
}

async fn latency_pass(consul: &ConsulServer, label: &str, throttle: &str, extra: &str, changes: usize, spacing: Duration) {
    let drover = start_drover(consul, throttle, extra);
    wait_generation(&drover, 0).await;
    // Let the first listing and the checks watch settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = Vec::new();
    let mut by_kind: [(&str, Vec<Duration>); 2] = [("check", Vec::new()), ("catalog", Vec::new())];
    for i in 0..changes {
        let generation = drover.generation();
        let start = Instant::now();
        let kind = change(consul, i);
        wait_generation(&drover, generation).await;
        let took = start.elapsed();
        all.push(took);
        if let Some((_, v)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
            v.push(took);
        }
        if !spacing.is_zero() {
            tokio::time::sleep(spacing).await;
        } else {
            // Let the fragment of a two-write change (register + check) land before the next.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    all.sort();
    println!(
        "change → routed, {label}: {changes} changes: p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all[all.len() - 1]
    );
    for (kind, mut v) in by_kind {
        v.sort();
        if !v.is_empty() {
            println!(
                "    {kind:<8} ({:>3}): p50 {:>8.2?}  p99 {:>8.2?}",
                v.len(),
                percentile(&v, 0.5),
                percentile(&v, 0.99)
            );
        }
    }
    drover.shutdown();
    drover.wait();
}

async fn idle_pass(consul: &ConsulServer, label: &str, extra: &str, secs: u64) {
    let drover = start_drover(consul, "100ms", extra);
    wait_generation(&drover, 0).await;
    let start = Instant::now();
    while consul.blocked() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the two watches never blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = consul.requests();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let sent = consul.requests() - before;
    println!(
        "idle, {label}: {sent} requests in {secs} s = {:.3} req/s; blocking queries open: {}",
        sent as f64 / secs as f64,
        consul.blocked()
    );
    drover.shutdown();
    drover.wait();
}

fn main() {
    let idle_secs: u64 = std::env::var("IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!("catalog: {SERVICES} services × {INSTANCES} instances with drover tags (a check each), 20 services without");
        let fast = "watchRefill = \"1ms\"";
        // A fresh stand-in for every pass: blocking queries of a stopped drover stay open on the
        // server until their wait expires, as on a real agent.
        latency_pass(
            &catalog().await,
            "coalescing 100 ms (default), rate limit lifted",
            "100ms",
            fast,
            100,
            Duration::ZERO,
        )
        .await;
        latency_pass(
            &catalog().await,
            "no coalescing, rate limit lifted",
            "0s",
            fast,
            100,
            Duration::ZERO,
        )
        .await;
        latency_pass(
            &catalog().await,
            "every default, one change per second",
            "100ms",
            "",
            20,
            Duration::from_secs(1),
        )
        .await;
        idle_pass(&catalog().await, "wait 55 s (default)", "", idle_secs).await;
        idle_pass(&catalog().await, "wait 2 s", "wait = \"2s\"", idle_secs).await;
    });
}

/// The stand-in with the bench's catalog.
async fn catalog() -> ConsulServer {
    let consul = ConsulServer::start().await;
    for service in 0..SERVICES {
        for n in 0..INSTANCES {
            let r = instance(service, n);
            let (node, id) = (r.node.clone(), r.id.clone());
            consul.register(r);
            consul.set_check(&node, &format!("service:{id}"), Some(&id), "passing");
        }
    }
    for other in 0..20 {
        let addr = SocketAddr::from(([127, 0, 0, 1], 30_000 + other));
        consul.register(Registration::new(
            "node-x",
            &format!("other-{other}"),
            &format!("other{other}"),
            addr,
            &["v1"],
        ));
    }
    consul
}
