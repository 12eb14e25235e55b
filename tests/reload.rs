//! Live reconfiguration through the watched routes file, under load.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{client, send, servers_toml, whoami, TestDrover};

/// Version `v` of the routes: `/load` goes to a service whose servers change from version to
/// version, and `/probe/<v>` exists only in version `v` (so its arrival can be timed).
fn routes(v: usize, backends: &[std::net::SocketAddr]) -> String {
    let service = ["left", "right"][v % 2];
    let servers: Vec<_> = match v % 4 {
        0 => vec![(backends[0], 1), (backends[1], 1)],
        1 => vec![(backends[2], 1)],
        2 => vec![(backends[0], 1)],
        _ => vec![(backends[2], 1), (backends[3], 2)],
    };
    format!(
        "[http.routers.load]\nrule = \"PathPrefix(`/load`)\"\nservice = \"{service}\"\n\
         [http.routers.probe]\nrule = \"Path(`/probe/{v}`)\"\nservice = \"{service}\"\n{}",
        servers_toml(service, &servers)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rewrites_under_load_fail_no_request_and_apply_within_300ms() {
    let mut backends = Vec::new();
    let mut handles = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (addr, h) = whoami::spawn(name).await;
        backends.push(addr);
        handles.push(h);
    }
    let drover = TestDrover::start(&routes(0, &backends)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), drover.url("/load"));
        clients.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match send(&c, "GET", &url, &[]).await {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(a) => {
                        eprintln!("failed request: {} {}", a.status, a.body);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("failed request: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let probe = client();
    let mut delays = Vec::new();
    for v in 1..=50 {
        let written = Instant::now();
        drover.write_routes(&routes(v, &backends));
        let url = drover.url(&format!("/probe/{v}"));
        loop {
            if send(&probe, "GET", &url, &[]).await.is_ok_and(|a| a.status == 200) {
                break;
            }
            assert!(written.elapsed() < Duration::from_secs(5), "version {v} never took effect");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(written.elapsed());
        // Let the load run on this version for a moment before the next change.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    delays.sort();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "{ok} requests, {failed} failed; change-to-effect p50 {:?}, max {:?}",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    assert!(ok > 500, "the clients kept sending ({ok})");
    assert_eq!(failed, 0, "no request may fail during reloads");
    assert!(
        delays[delays.len() - 1] <= Duration::from_millis(300),
        "slowest change took {:?}",
        delays[delays.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_last_good_routes_and_says_where() {
    let (a, _h) = whoami::spawn("a").await;
    let good = support::service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]);
    let drover = TestDrover::start(&good).await;
    let c = client();
    drover.write_routes(
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = 42\n",
    );
    let status = support::wait_until(Duration::from_secs(5), || {
        drover.drover.provider_statuses().iter().any(|s| s.last_error.is_some())
    })
    .await;
    assert!(status.is_some(), "the error was reported");
    let error = drover.drover.provider_statuses()[0].last_error.clone().unwrap();
    assert!(error.contains("routes.toml:5:7"), "file, line and column: {error}");
    assert_eq!(
        support::get(&c, &drover.url("/")).await.backend(),
        "a",
        "the last good routes still serve"
    );

    // A rule error disables only that router, and says where in the rule.
    drover.write_routes(&format!("{good}[http.routers.broken]\nrule = \"Host(`x`) && \"\nservice = \"s\"\n"));
    drover.wait_for_generation(2).await;
    let raw = support::get(&c, &format!("http://{}/api/rawdata", drover.drover.api())).await.body;
    assert!(raw.contains("http.routers.broken.rule: column"), "{raw}");
    assert_eq!(support::get(&c, &drover.url("/")).await.backend(), "a");

    drover.write_routes(&good.replace("PathPrefix(`/`)", "PathPrefix(`/fixed`)"));
    drover.wait_for_generation(3).await;
    assert_eq!(support::get(&c, &drover.url("/fixed")).await.backend(), "a");
    assert_eq!(support::get(&c, &drover.url("/")).await.status, 404);
    assert!(
        drover.drover.provider_statuses()[0].last_error.is_none(),
        "a good file clears the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_routes_file_routes_reloads_and_reports_errors_with_their_position() {
    let (a, _ha) = whoami::spawn("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let yaml = |server: std::net::SocketAddr| {
        format!(
            "http:\n  routers:\n    r:\n      rule: \"PathPrefix(`/`)\"\n      service: s\n  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: \"http://{server}\"\n"
        )
    };
    let drover = TestDrover::start_with_file("routes.yaml", &yaml(a), "").await;
    let c = client();
    assert_eq!(support::get(&c, &drover.url("/")).await.backend(), "a");

    drover.write_routes(&yaml(b));
    drover.wait_for_generation(2).await;
    assert_eq!(support::get(&c, &drover.url("/")).await.backend(), "b");

    drover.write_routes(&yaml(b).replace("- url:", "- weight: abc\n            url:"));
    let reported = support::wait_until(Duration::from_secs(5), || {
        drover.drover.provider_statuses().iter().any(|s| s.last_error.is_some())
    })
    .await;
    assert!(reported.is_some(), "the error was reported");
    let error = drover.drover.provider_statuses()[0].last_error.clone().unwrap();
    assert!(
        error.contains("routes.yaml:10:") && error.contains("weight"),
        "file, line, column and key: {error}"
    );
    assert_eq!(
        support::get(&c, &drover.url("/")).await.backend(),
        "b",
        "the last good routes still serve"
    );
}
