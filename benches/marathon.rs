//! Marathon provider costs, against the contract-test server (`tests/support/marathon.rs`):
//!
//! * event → routed: from a `status_update_event` to the snapshot that has (or no longer has)
//!   the task, over 100 task changes, p50/p99, with the default 100 ms coalescing window and
//!   with none (which isolates the provider: event read, one app re-read, merge, compile);
//! * a full re-list of 200 apps × 5 tasks: the HTTP list and JSON read, the per-app
//!   evaluation, and the merge into one fragment, each timed (median of 10).
//!
//! ```text
//! cargo bench --bench marathon
//! ```

#[path = "../tests/support/marathon.rs"]
mod marathon;
#[path = "../tests/support/serve.rs"]
mod serve;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use drover::config::StaticConfig;
use drover::Drover;
use drover_providers::labels::DefaultRule;
use drover_providers::marathon::client::MarathonClient;
use drover_providers::marathon::translate::Rules;
use drover_providers::marathon::watch::Catalog;
use drover_providers::marathon::MarathonConfig;
use marathon::Marathon;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn start_drover(endpoint: &str, throttle: &str) -> Drover {
    let text = format!(
        "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[api]\naddress = \"127.0.0.1:0\"\n[log]\nlevel = \"error\"\n\
         [providers]\nprovidersThrottleDuration = \"{throttle}\"\n[providers.marathon]\nendpoint = \"{endpoint}\"\n"
    );
    let resolved = StaticConfig::parse(Path::new("bench.toml"), &text).expect("bench static config");
    Drover::start(resolved, 1).expect("drover starts")
}

async fn wait_generation(drover: &Drover, above: u64) -> Duration {
    let start = Instant::now();
    while drover.generation() <= above {
        assert!(start.elapsed() < Duration::from_secs(10), "no new configuration within 10 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    start.elapsed()
}

/// 100 task changes (alternately a task added and the previous one killed); the time from each
/// event to the configuration that reflects it.
async fn event_to_routed(throttle: &str) -> Vec<Duration> {
    let cluster = Marathon::start().await;
    let labels = json!({"drover.enable": "true", "drover.http.routers.bench.rule": "Host(`bench.test`)"});
    let tasks: Vec<_> = (0..5)
        .map(|i| marathon::task("/bench/app", i, ([127, 0, 0, 1], 20_000 + i as u16).into()))
        .collect();
    cluster.put_app(marathon::app("/bench/app", labels, tasks));
    let drover = start_drover(&cluster.leader_url(), throttle);
    wait_generation(&drover, 0).await;
    let start = Instant::now();
    while cluster.streams() == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the provider never attached");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let any publication of the start settle before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delays = Vec::with_capacity(100);
    let mut last_added = None;
    for change in 0..100usize {
        let generation = drover.generation();
        let emitted = Instant::now();
        match last_added.take() {
            None => {
                let task = marathon::task("/bench/app", 100 + change, ([127, 0, 0, 1], 21_000 + change as u16).into());
                last_added = Some(task["id"].as_str().expect("task id").to_string());
                cluster.add_task("/bench/app", task);
            }
            Some(id) => cluster.set_task_state("/bench/app", &id, "TASK_KILLED"),
        }
        wait_generation(&drover, generation).await;
        delays.push(emitted.elapsed());
    }
    drover.shutdown();
    delays
}

fn big_cluster_app(i: usize) -> serde_json::Value {
    let id = format!("/team{}/app{i}", i % 10);
    // Router and service names are per app: the label grammar keys them by name.
    let mut labels = serde_json::Map::new();
    labels.insert("drover.enable".into(), "true".into());
    labels.insert(
        format!("drover.http.routers.r{i}.rule"),
        format!("Host(`app{i}.example.com`)").into(),
    );
    labels.insert(format!("drover.http.services.s{i}.loadbalancer.server.port"), "index:0".into());
    let labels = serde_json::Value::Object(labels);
    let tasks = (0..5)
        .map(|t| {
            let mut task = marathon::task(
                &id,
                t,
                ([10, (i / 250) as u8, (i % 250) as u8, t as u8 + 1], 31_000 + t as u16).into(),
            );
            task["healthCheckResults"] = json!([{"alive": true, "consecutiveFailures": 0, "instanceId": format!("i{t}")}]);
            task
        })
        .collect();
    marathon::app(&id, labels, tasks)
}

/// A full re-list of 200 apps × 5 tasks, in its three parts (median of 10 runs).
async fn full_refetch() -> (Duration, Duration, Duration, usize, usize) {
    let cluster = Marathon::start().await;
    cluster.mutate_silently(|apps| {
        for i in 0..200 {
            let app = big_cluster_app(i);
            apps.insert(app["id"].as_str().expect("id").to_string(), app);
        }
    });
    let config = MarathonConfig {
        endpoint: cluster.leader_url(),
        ..Default::default()
    };
    let settings = config.validate().expect("valid settings");
    let mut client = MarathonClient::new(&settings);
    let rule = DefaultRule::default();
    let rules = Rules {
        prefix: "drover",
        exposed_by_default: false,
        default_rule: &rule,
        respect_readiness_checks: false,
        force_task_hostname: false,
        provider: "marathon",
    };
    let (mut fetch, mut evaluate, mut merge) = (Vec::new(), Vec::new(), Vec::new());
    let (mut services, mut servers) = (0, 0);
    for _ in 0..10 {
        let t0 = Instant::now();
        let apps = client.apps().await.expect("list apps");
        let t1 = Instant::now();
        let mut catalog = Catalog::default();
        catalog.replace_all(apps, &rules, SystemTime::now());
        let t2 = Instant::now();
        let (config, _items) = catalog.build();
        let t3 = Instant::now();
        fetch.push(t1 - t0);
        evaluate.push(t2 - t1);
        merge.push(t3 - t2);
        services = config.http.services.len();
        servers = config
            .http
            .services
            .values()
            .filter_map(|s| s.load_balancer.as_ref())
            .map(|lb| lb.servers.len())
            .sum();
    }
    for v in [&mut fetch, &mut evaluate, &mut merge] {
        v.sort();
    }
    (fetch[5], evaluate[5], merge[5], services, servers)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("bench runtime");
    runtime.block_on(async {
        for (label, throttle) in [("default 100 ms coalescing window", "100ms"), ("no coalescing window", "0s")] {
            let mut delays = event_to_routed(throttle).await;
            delays.sort();
            println!(
                "marathon event→routed over {} task changes ({label}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                delays.len(),
                percentile(&delays, 0.50).as_secs_f64() * 1e3,
                percentile(&delays, 0.99).as_secs_f64() * 1e3,
                delays[delays.len() - 1].as_secs_f64() * 1e3,
            );
        }
        let (fetch, evaluate, merge, services, servers) = full_refetch().await;
        println!(
            "marathon full refetch, 200 apps × 5 tasks ({services} services, {servers} servers): {:.1} ms \
             (GET /v2/apps + JSON {:.1} ms, evaluate {:.1} ms, merge {:.1} ms; median of 10)",
            (fetch + evaluate + merge).as_secs_f64() * 1e3,
            fetch.as_secs_f64() * 1e3,
            evaluate.as_secs_f64() * 1e3,
            merge.as_secs_f64() * 1e3,
        );
    });
}
