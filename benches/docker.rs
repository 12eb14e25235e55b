//! Docker provider timings against the real engine, printed:
//! * `docker start` → first routed request, and `docker stop` → removal from the routes, p50/p99
//!   over 50 runs (target: p99 under 250 ms for both);
//! * the first full sync with 200 containers (list + inspect + fragment).
//!
//! ```text
//! cargo bench --bench docker                 # RUNS=50 CONTAINERS=200 by default
//! RUNS=10 CONTAINERS=50 cargo bench --bench docker
//! ```
//!
//! "Start" is the container's `State.StartedAt` (when its process started); "routed" is the
//! first 200 through drover for the container's own `Host`. "Stop" is just before `docker stop`
//! is invoked; "removed" is the first 404 for that host. The containers ignore their stop signal
//! (`--stop-signal SIGUSR1`; whoami as PID 1 has no handler), as a draining service would, so
//! removal is measured against a container that is still running. drover's coalescing window
//! (`providersThrottleDuration`, 100 ms) is part of both numbers. Skips with a message when no
//! Docker engine answers.

#[path = "../tests/support/docker.rs"]
#[allow(dead_code)]
mod docker_support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use docker_support::{self as dk, Scope, WHOAMI_IMAGE};
use drover::config::StaticConfig;
use drover::Drover;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn start_drover() -> Drover {
    let text =
        "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[api]\naddress = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[providers.docker]\n";
    let resolved = StaticConfig::parse(Path::new("bench.toml"), text).expect("bench config");
    Drover::start(resolved, 1).expect("drover starts")
}

async fn status(c: &HttpClient, drover: &Drover, host: &str) -> u16 {
    let Some(web) = drover.entry_point("web") else { return 0 };
    let req = http::Request::get(format!("http://{web}/")).header("host", host).body(Empty::new());
    let Ok(req) = req else { return 0 };
    match c.request(req).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// `2025-07-20T10:00:01.512345678Z` → time since the epoch.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.trim().split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos: u64 = format!("{frac:0<9}")[..9].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(UNIX_EPOCH + Duration::new(days * 86_400 + hh * 3600 + mm * 60 + ss, nanos as u32))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what:<32} n={:<3} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
        v.len(),
        percentile(&v, 0.50).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

fn labels_for(host: &str) -> Vec<String> {
    vec![
        "drover.enable=true".into(),
        format!("drover.http.routers.r.rule=Host(`{host}`)"),
        "drover.http.services.r.loadbalancer.server.port=80".into(),
    ]
}

async fn start_stop(scope: &Scope, net: &str, runs: usize) {
    let drover = start_drover();
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for i in 0..runs {
        let host = format!("b{i}.bench");
        let short = format!("b{i}");
        let full = scope.name(&short);
        let mut args: Vec<String> = vec!["--network".into(), net.into(), "--stop-signal".into(), "SIGUSR1".into()];
        for l in labels_for(&host) {
            args.push("--label".into());
            args.push(l);
        }
        args.extend([WHOAMI_IMAGE.to_string(), "--name".into(), full.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        scope.create(&short, &refs);
        dk::must(&["start", &full]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while status(&c, &drover, &host).await != 200 {
            assert!(Instant::now() < deadline, "{full} was never routed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let routed = SystemTime::now();
        let started = parse_rfc3339(&dk::inspect(&full, "{{ .State.StartedAt }}")).expect("StartedAt");
        starts.push(routed.duration_since(started).unwrap_or_default());

        let stop_at = Instant::now();
        let stopper = {
            let full = full.clone();
            tokio::task::spawn_blocking(move || dk::docker(&["stop", "-t", "10", &full]))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while status(&c, &drover, &host).await == 200 {
            assert!(Instant::now() < deadline, "{full} was never removed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stops.push(stop_at.elapsed());
        let _ = dk::docker(&["rm", "-f", &full]);
        let _ = stopper.await;
    }
    report("docker start → first routed", starts);
    report("docker stop → removed", stops);
}

async fn first_sync(scope: &Scope, net: &str, count: usize) {
    let created = Instant::now();
    let names: Vec<String> = (0..count).map(|i| format!("s{i}")).collect();
    for chunk in names.chunks(4) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|short| {
                let full = scope.name(short);
                let mut args: Vec<String> = vec!["--network".into(), net.into()];
                for l in labels_for("many.bench") {
                    args.push("--label".into());
                    args.push(l);
                }
                args.extend([WHOAMI_IMAGE.to_string(), "--name".into(), full]);
                (short.clone(), args)
            })
            .collect();
        std::thread::scope(|s| {
            for (short, args) in &handles {
                s.spawn(move || {
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    scope.run(short, &refs);
                });
            }
        });
    }
    println!("({count} labelled containers started in {:.1} s)", created.elapsed().as_secs_f64());
    let start = Instant::now();
    let drover = start_drover();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let synced = drover
            .provider_statuses()
            .iter()
            .any(|s| s.name == "docker" && s.syncs >= 1 && s.items.len() >= count);
        if synced {
            break;
        }
        assert!(Instant::now() < deadline, "no full sync within 60 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sync = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while drover.generation() < 1 {
        assert!(Instant::now() < deadline, "no configuration published");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "{:<32} {count} containers: {:.1} ms (routes in force after {:.1} ms)",
        "first full sync",
        sync.as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    if !dk::engine_or_skip("bench docker") {
        return;
    }
    let runs = env_usize("RUNS", 50);
    let containers = env_usize("CONTAINERS", 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        dk::images();
        let scope = Scope::new();
        let net = scope.network("bench", &[]);
        start_stop(&scope, &net, runs).await;
        first_sync(&scope, &net, containers).await;
        scope.cleanup();
    });
}
