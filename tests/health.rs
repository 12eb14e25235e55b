//! Passive health, retries and panic mode through a real drover, against backends that die,
//! fail or reset.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::load::{Load, Restartable};
use support::scripted::{Behaviour, Scripted};
use support::{client, get, send, servers_toml, whoami, TestDrover};

fn lb(service: &str, router_rule: &str, servers: &[(SocketAddr, u32)], passive: &str) -> String {
    format!(
        "[http.routers.{service}]\nrule = \"{router_rule}\"\nservice = \"{service}\"\n[http.services.{service}.loadBalancer.passiveHealthCheck]\n{passive}\n{}",
        servers_toml(service, servers)
    )
}

async fn service_json(drover: &TestDrover, name: &str) -> serde_json::Value {
    let body = get(&client(), &format!("http://{}/api/http/services/{name}", drover.drover.api()))
        .await
        .body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("service JSON: {e}: {body}"))
}

fn server_entry(service: &serde_json::Value, addr: SocketAddr) -> &serde_json::Value {
    let url = format!("http://{addr}");
    service["servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["url"] == url.as_str()))
        .unwrap_or_else(|| panic!("no server {url} in {service}"))
}

/// The real thing end to end; the timing of each step (backoff up to the cap, readmission) is
/// checked exactly, with paused time, in `proxy/src/health/outlier.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_failed_request_and_comes_back_after_restart() {
    let mut a = Restartable::start("a").await;
    let b = Restartable::start("b").await;
    let c = Restartable::start("c").await;
    let routes = lb(
        "web",
        "PathPrefix(`/`)",
        &[(a.addr, 1), (b.addr, 1), (c.addr, 1)],
        "baseEjectionTime = \"500ms\"\nmaxEjectionTime = \"2s\"\nslowStart = \"500ms\"",
    );
    let drover = TestDrover::start(&routes).await;
    let started = Instant::now();
    let load = Load::start(drover.url("/"), 8);
    let warm = support::wait_until(Duration::from_secs(10), || {
        ["a", "b", "c"].iter().all(|n| load.count_since(n, started) >= 20)
    })
    .await;
    assert!(warm.is_some(), "every backend takes traffic before the kill");
    a.kill();
    let killed = Instant::now();
    let state = loop {
        let s = service_json(&drover, "web@file").await;
        let entry = server_entry(&s, a.addr).clone();
        if entry["state"] != "up" {
            break entry;
        }
        assert!(killed.elapsed() < Duration::from_secs(3), "the dead server was never ejected: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let failures_at_ejection = state["connectionFailures"].as_u64().unwrap();
    eprintln!(
        "ejected {:?} after the kill, after {failures_at_ejection} connection failures: {state}",
        killed.elapsed()
    );
    // While it stays dead its probation requests fail and eject it again, for longer each time
    // (500 ms, then 1 s): wait for the third ejection.
    loop {
        let s = service_json(&drover, "web@file").await;
        if server_entry(&s, a.addr)["totalEjections"].as_u64() >= Some(3) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "failed probes did not eject it again: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.restart().await;
    let restarted = Instant::now();
    // Worst case: it was just ejected for the longest (2 s + 10% jitter) when it came back.
    let limit = Duration::from_millis(2_200 + 500);
    let back = support::wait_until(limit, || load.count_since("a", restarted) > 0).await;
    let (failed, hits) = load.finish().await;

    assert_eq!(failed, 0, "no client request may fail");
    // In flight at the kill: up to one request per client can fail on its connection, then at
    // most `maxFailedAttempts` (3) connection attempts before ejection.
    assert!(
        failures_at_ejection <= 3 + 8,
        "the dead server took {failures_at_ejection} attempts before ejection"
    );
    let back = back.unwrap_or_else(|| panic!("the restarted server got no traffic within {limit:?}"));
    eprintln!("{} requests; the restarted server got traffic again after {back:?}", hits.len());
    let per_backend = hits.iter().fold(HashMap::<&str, usize>::new(), |mut m, (_, n)| {
        *m.entry(n.as_str()).or_default() += 1;
        m
    });
    assert!(per_backend["b"] > 100 && per_backend["c"] > 100, "{per_backend:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_500_is_ejected_after_m_requests() {
    let bad = Scripted::spawn(Behaviour::Always500).await;
    let (good1, _g1) = whoami::spawn("good1").await;
    let (good2, _g2) = whoami::spawn("good2").await;
    let routes = lb(
        "web",
        "PathPrefix(`/`)",
        &[(bad.addr, 1), (good1, 1), (good2, 1)],
        "consecutive5xx = 5\nbaseEjectionTime = \"1m\"",
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let mut five_hundreds = 0;
    for _ in 0..300 {
        let a = get(&c, &drover.url("/")).await;
        if a.status == 500 {
            five_hundreds += 1;
        }
    }
    assert_eq!(bad.requests(), 5, "ejected after exactly 5 consecutive 500s");
    assert_eq!(five_hundreds, 5, "5xx responses are passed on, not retried");
    let s = service_json(&drover, "web@file").await;
    assert_eq!(s["serverStatus"][format!("http://{}", bad.addr)], "DOWN", "{s}");
    assert_eq!(s["serverStatus"][format!("http://{good1}")], "UP");
    let entry = server_entry(&s, bad.addr);
    assert_eq!(entry["state"], "ejected");
    assert!(entry["reason"].as_str().unwrap().contains("5 consecutive 5xx"), "{entry}");
    assert_eq!(entry["totalEjections"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_was_sent_is_never_retried_but_a_get_is() {
    let resetter = Scripted::spawn(Behaviour::CloseAfterRequest).await;
    let (good, _g) = whoami::spawn("good").await;
    // Passive health off so the resetting server keeps its turn; a generous per-second retry
    // minimum so the budget does not get in the way of this test.
    let routes = format!(
        "{}[http.services.web.loadBalancer.retry]\nminRetriesPerSecond = 100\n",
        lb("web", "PathPrefix(`/`)", &[(resetter.addr, 1), (good, 1)], "enabled = false")
    );
    let drover = TestDrover::start(&routes).await;

    let mut stream = tokio::net::TcpStream::connect(drover.web()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut statuses = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(b"POST /order HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n\r\nhello world")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        statuses.push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string());
    }
    assert_eq!(resetter.requests(), 1, "one of the two POSTs went to the resetting server, once");
    assert!(
        statuses.iter().any(|s| s.starts_with("HTTP/1.1 502")),
        "that POST failed rather than being sent again: {statuses:?}"
    );
    assert!(statuses.iter().any(|s| s.starts_with("HTTP/1.1 200")), "{statuses:?}");

    // GETs carry no body: a reset before the response is retried on the other server, with
    // the same headers as the first attempt (the client's and drover's forwarding headers).
    let c = client();
    for _ in 0..6 {
        let a = send(&c, "GET", &drover.url("/?q=1"), &[("x-trace", "t1")]).await.expect("GET");
        assert_eq!((a.status, a.backend()), (200, "good"));
        assert_eq!(a.received("x-trace"), Some("t1"), "{}", a.body);
        assert_eq!(a.received("x-forwarded-for"), Some("127.0.0.1"), "{}", a.body);
        assert_eq!(a.received("x-forwarded-proto"), Some("http"), "{}", a.body);
        assert!(a.body.contains("GET /?q=1 HTTP/1.1"), "{}", a.body);
    }
    assert!(resetter.requests() >= 3, "the GETs did reach the resetting server first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_ejected_panic_keeps_answering_and_fail_says_why() {
    let mut a = Restartable::start("a").await;
    let mut b = Restartable::start("b").await;
    let passive = "maxEjectionPercent = 100\nbaseEjectionTime = \"1m\"\nslowStart = \"0s\"";
    let routes = format!(
        "{}{}",
        lb("panicky", "PathPrefix(`/p`)", &[(a.addr, 1), (b.addr, 1)], passive),
        lb(
            "strict",
            "PathPrefix(`/f`)",
            &[(a.addr, 1), (b.addr, 1)],
            &format!("{passive}\nonAllEjected = \"fail\"")
        ),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    a.kill();
    b.kill();
    for prefix in ["/p", "/f"] {
        for _ in 0..10 {
            let _ = send(&c, "GET", &drover.url(prefix), &[]).await;
        }
    }
    for service in ["panicky@file", "strict@file"] {
        let s = service_json(&drover, service).await;
        assert!(s["servers"].as_array().unwrap().iter().all(|e| e["state"] == "ejected"), "{s}");
    }
    let refused = get(&c, &drover.url("/f")).await;
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains("all servers of the service are ejected"), "{}", refused.body);

    b.restart().await;
    let c = client();
    for _ in 0..20 {
        let answer = get(&c, &drover.url("/p")).await;
        assert_eq!(
            (answer.status, answer.backend()),
            (200, "b"),
            "panic mode reaches the server that recovered: {}",
            answer.body
        );
    }
    assert_eq!(
        get(&c, &drover.url("/f")).await.status,
        503,
        "fail mode stays shut until the ejection ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_does_not_touch_the_service_keeps_an_ejected_server_ejected() {
    let mut a = Restartable::start("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let routes = lb("web", "PathPrefix(`/`)", &[(a.addr, 1), (b, 1)], "baseEjectionTime = \"1m\"");
    let drover = TestDrover::start(&routes).await;
    let c = client();
    a.kill();
    for _ in 0..10 {
        assert_eq!(get(&c, &drover.url("/")).await.status, 200);
    }
    let before = service_json(&drover, "web@file").await;
    assert_eq!(server_entry(&before, a.addr)["state"], "ejected", "{before}");
    let failures = server_entry(&before, a.addr)["connectionFailures"].clone();

    // Traefik #13218: any reload rebuilt every balancer with all servers UP.
    let (other, _ho) = whoami::spawn("other").await;
    drover.write_routes(&format!("{routes}{}", lb("other", "Host(`other.local`)", &[(other, 1)], "")));
    drover.wait_for_generation(2).await;
    for _ in 0..20 {
        assert_eq!(get(&c, &drover.url("/")).await.backend(), "b");
    }
    let after = service_json(&drover, "web@file").await;
    assert_eq!(server_entry(&after, a.addr)["state"], "ejected", "{after}");
    assert_eq!(
        server_entry(&after, a.addr)["connectionFailures"],
        failures,
        "no request was sent to it after the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_extra_load_during_a_50_percent_outage() {
    let resetter = Scripted::spawn(Behaviour::CloseAfterRequest).await;
    let good = Scripted::spawn(Behaviour::Always500).await; // answers, so it counts every attempt
    let routes = lb("web", "PathPrefix(`/`)", &[(resetter.addr, 1), (good.addr, 1)], "enabled = false");
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let requests = 1_000;
    let started = Instant::now();
    for _ in 0..requests {
        let _ = send(&c, "GET", &drover.url("/"), &[]).await;
    }
    let seconds = started.elapsed().as_secs() + 1;
    let attempts = resetter.requests() + good.requests();
    let retries = attempts - requests;
    eprintln!("{requests} requests took {attempts} attempts ({retries} retries) in {seconds} s");
    assert!(
        retries as u64 <= requests as u64 * 20 / 100 + 3 * seconds + 10,
        "retries {retries} exceed 20% + 3/s"
    );
    assert!(retries >= 150, "the budget was used: {retries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_run_at_once_eject_and_readmit() {
    let (sick, _hs) = whoami::spawn("sick").await;
    let (fine, _hf) = whoami::spawn("fine").await;
    let c = client();
    // `sick` fails its health endpoint before drover even starts.
    let set = |addr: SocketAddr, code: &'static str| async move {
        let req = http::Request::post(format!("http://{addr}/health"))
            .body(http_body_util::Full::new(bytes::Bytes::from(code)))
            .unwrap();
        let poster: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        assert!(poster.request(req).await.unwrap().status().is_success());
    };
    set(sick, "500").await;
    let routes = format!(
        "{}[http.services.web.loadBalancer.healthCheck]\npath = \"/health\"\ninterval = \"1h\"\nunhealthyInterval = \"100ms\"\ntimeout = \"1s\"\nfails = 1\npasses = 1\n",
        lb("web", "PathPrefix(`/`)", &[(sick, 1), (fine, 1)], "slowStart = \"0s\"")
    );
    let started = Instant::now();
    let drover = TestDrover::start(&routes).await;
    // The first check runs immediately, not one (hour-long) interval later.
    loop {
        let s = service_json(&drover, "web@file").await;
        if server_entry(&s, sick)["state"] == "ejected" {
            assert_eq!(server_entry(&s, sick)["activeDown"], true);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the first active check did not run at once: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..10 {
        assert_eq!(get(&c, &drover.url("/")).await.backend(), "fine");
    }
    set(sick, "200").await;
    let healed = Instant::now();
    loop {
        let s = service_json(&drover, "web@file").await;
        if server_entry(&s, sick)["state"] == "up" {
            break;
        }
        assert!(healed.elapsed() < Duration::from_secs(3), "an active pass did not readmit it: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backends: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(&c, &drover.url("/")).await.backend().to_string());
        }
        v
    };
    assert!(backends.iter().any(|b| b == "sick"), "back in rotation: {backends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_aborting_its_upload_never_counts_against_the_server() {
    let (only, _h) = whoami::spawn("only").await;
    // One failure would eject it, and with `fail` an ejected lone server means 503s.
    let routes = lb(
        "web",
        "PathPrefix(`/`)",
        &[(only, 1)],
        "maxFailedAttempts = 1\nmaxEjectionPercent = 100\nonAllEjected = \"fail\"",
    );
    let drover = TestDrover::start(&routes).await;
    use tokio::io::AsyncWriteExt;
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(drover.web()).await.unwrap();
        stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        drop(stream); // the client goes away mid-upload
    }
    // Watch the server for a while: an abort counted as its failure would eject it at once.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(500) {
        let s = service_json(&drover, "web@file").await;
        let entry = server_entry(&s, only);
        assert_eq!(entry["state"], "up", "a client's abort ejected the server: {entry}");
        assert_eq!(entry["connectionFailures"], 0, "{entry}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(&client(), &drover.url("/")).await.backend(), "only");
}
