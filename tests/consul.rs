//! The Consul catalog provider against the Consul stand-in (`support::consul`): registrations,
//! deregistrations, checks, node failures and maintenance reach the data path; Consul's faults
//! (index backwards, index 0, 403, 5xx, being down) leave the last good routes in force.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::consul::{ConsulServer, Registration};
use support::{client, send, wait_until, whoami, HttpClient, TestDrover};

/// Tags of an instance routed for every path.
const TAGS: &[&str] = &["drover.enable=true", "drover.http.routers.web.rule=PathPrefix(`/`)", "v2"];
/// Watch pacing for functional tests: changes follow each other faster than the default token
/// bucket (burst 2, one per second) would let through at once. The bucket has its own tests.
const FAST: &str = "watchRefill = \"10ms\"";
/// How long a change may take to show in traffic (generous: shared 2-core machines).
const SETTLE: Duration = Duration::from_secs(5);

struct Lab {
    consul: ConsulServer,
    backends: BTreeMap<String, (SocketAddr, whoami::WhoamiHandle)>,
}

impl Lab {
    /// The stand-in with `web-1` on node-a and `web-2`, `web-3` on node-b, each with a passing
    /// service check, and a `redis` service without drover tags.
    async fn start() -> Self {
        let consul = ConsulServer::start().await;
        let mut backends = BTreeMap::new();
        for (node, id) in [("node-a", "web-1"), ("node-b", "web-2"), ("node-b", "web-3")] {
            let (addr, handle) = whoami::spawn(id).await;
            consul.register(Registration::new(node, id, "web", addr, TAGS));
            consul.set_check(node, &format!("service:{id}"), Some(id), "passing");
            backends.insert(id.to_string(), (addr, handle));
        }
        let (redis, _) = whoami::spawn("redis").await;
        consul.register(Registration::new("node-a", "redis-1", "redis", redis, &["primary"]));
        Self { consul, backends }
    }

    async fn drover(&self, extra: &str) -> TestDrover {
        self.drover_with(extra, "").await
    }

    async fn drover_with(&self, extra: &str, endpoint_extra: &str) -> TestDrover {
        // A file route of its own, so that the file provider's first fragment is a change and
        // `TestDrover` sees generation 1 even while Consul refuses drover.
        let routes = "[http.routers.probe]\nrule = \"Path(`/__probe`)\"\nservice = \"probe\"\n\
                      [[http.services.probe.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9\"\n";
        TestDrover::start_with(routes, &self.consul.provider_toml(extra, endpoint_extra)).await
    }

    fn register(&self, node: &str, id: &str) {
        self.consul.register(Registration::new(node, id, "web", self.backends[id].0, TAGS));
        self.consul.set_check(node, &format!("service:{id}"), Some(id), "passing");
    }
}

/// Which backends answer `url` over `n` requests (non-200 answers count under their status).
async fn answering(c: &HttpClient, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let key = match send(c, "GET", url, &[]).await {
            Ok(a) if a.status == 200 => a.backend().to_string(),
            Ok(a) => a.status.to_string(),
            Err(e) => format!("error: {e}"),
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

/// Waits until exactly `expected` answer, or panics with what answered instead.
///
/// Each worker walks the round robin with its own cursor, and the client may open a second
/// connection (to the other worker) while the first is still on its way back to its pool, so a
/// short batch can miss a server that is still routed. A match is therefore confirmed by a batch
/// of `LANES × (expected + 1)` requests: some cursor (two workers and the shared one) then makes
/// `expected + 1` picks in a row, which visits every server of a set one larger than expected,
/// so a server on its way out is seen until it is really gone.
async fn expect_backends(c: &HttpClient, url: &str, expected: &[&str], what: &str) {
    const LANES: usize = 3;
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let matches = |seen: &BTreeMap<String, usize>| seen.keys().cloned().collect::<BTreeSet<_>>() == want;
    let start = Instant::now();
    let mut last = BTreeMap::new();
    while start.elapsed() < SETTLE {
        last = answering(c, url, 2 * expected.len().max(1)).await;
        if matches(&last) {
            last = answering(c, url, LANES * (expected.len() + 1)).await;
            if matches(&last) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: expected {want:?} to answer, got {last:?}");
}

/// Clients sending requests until stopped, counting failures (anything but a 200).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failures, url) = (stop.clone(), ok.clone(), failures.clone(), url.clone());
                tokio::spawn(async move {
                    let c = client();
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        match send(&c, "GET", &url, &[]).await {
                            Ok(a) if a.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(a) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{:?}: {} {}", started.elapsed(), a.status, a.body.trim())),
                            Err(e) => failures.lock().unwrap().push(format!("{:?}: {e}", started.elapsed())),
                        }
                    }
                })
            })
            .collect();
        Self { stop, ok, failures, tasks }
    }

    /// Stops the clients; returns (successful requests, failures).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

async fn provider_status(c: &HttpClient, drover: &TestDrover) -> serde_json::Value {
    let url = format!("http://{}/api/providers/consulCatalog", drover.drover.api());
    let answer = support::get(c, &url).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).expect("provider status is JSON")
}

/// Waits until the provider's status satisfies `done`; returns it.
async fn wait_status(c: &HttpClient, drover: &TestDrover, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = provider_status(c, drover).await;
        if done(&status) {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{what}; status: {status:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_checks_node_failures_and_maintenance_reach_the_data_path_under_load() {
    let lab = Lab::start().await;
    let drover = lab.drover(FAST).await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "three registered instances").await;
    let spread = answering(&c, &url, 300).await;
    // Round robin, not chance: each of drover's two workers walks the cycle with its own cursor,
    // so each server is within one request per worker of its 100.
    for id in ["web-1", "web-2", "web-3"] {
        let n = spread.get(id).copied().unwrap_or(0);
        assert!((98..=102).contains(&n), "round robin over the three: {spread:?}");
    }
    let load = Load::start(url.clone(), 4);

    // Deregistration: out within 200 ms (the generation moves once: nothing else changes).
    let generation = drover.drover.generation();
    let deregistered = Instant::now();
    lab.consul.deregister("node-b", "web-3");
    let took = wait_until(Duration::from_secs(5), || drover.drover.generation() > generation)
        .await
        .expect("the deregistration is published");
    expect_backends(&c, &url, &["web-1", "web-2"], "after deregistering web-3").await;
    eprintln!(
        "deregistration routed out after {took:?} (measured from the write: {:?})",
        deregistered.elapsed()
    );
    assert!(took <= Duration::from_millis(200), "deregistration took {took:?}");
    lab.register("node-b", "web-3");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "web-3 registered again").await;

    lab.consul.set_check("node-b", "service:web-2", Some("web-2"), "critical");
    expect_backends(&c, &url, &["web-1", "web-3"], "web-2's check critical").await;
    lab.consul.set_check("node-b", "service:web-2", Some("web-2"), "warning");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "web-2 warning is routed by default").await;
    lab.consul.set_check("node-b", "service:web-2", Some("web-2"), "passing");

    lab.consul.set_serf("node-b", "critical");
    expect_backends(&c, &url, &["web-1"], "node-b failed (serfHealth critical)").await;
    lab.consul.set_serf("node-b", "passing");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "node-b back").await;

    lab.consul.service_maintenance("node-a", "web-1", true, "deploy");
    expect_backends(&c, &url, &["web-2", "web-3"], "web-1 in maintenance").await;
    lab.consul.service_maintenance("node-a", "web-1", false, "");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "web-1 out of maintenance").await;
    lab.consul.node_maintenance("node-b", true, "kernel upgrade");
    expect_backends(&c, &url, &["web-1"], "node-b in maintenance").await;
    lab.consul.node_maintenance("node-b", false, "");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "node-b out of maintenance").await;

    // A snapshot restore: every index drops; the provider starts over and keeps following.
    let before = lab.consul.requests();
    lab.consul.index_goes_backwards(3);
    lab.consul.deregister("node-b", "web-3");
    expect_backends(&c, &url, &["web-1", "web-2"], "a change after the index went backwards").await;
    lab.register("node-b", "web-3");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "and the next one").await;
    assert!(lab.consul.requests() - before < 100, "no busy loop after the reset");

    let (ok, failures) = load.finish().await;
    eprintln!("{ok} requests under load, {} failed", failures.len());
    assert!(ok > 200, "the load kept running ({ok})");
    assert!(failures.is_empty(), "no request may fail while Consul changes: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_checks_passing_drops_warning_instances() {
    let lab = Lab::start().await;
    let drover = lab.drover(&format!("{FAST}\nstrictChecks = [\"passing\"]")).await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "all passing").await;
    lab.consul.set_check("node-b", "service:web-2", Some("web-2"), "warning");
    expect_backends(&c, &url, &["web-1", "web-3"], "warning is out with strictChecks = [passing]").await;
    let status = provider_status(&c, &drover).await;
    let web2 = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "web/web-2 on node-b")
        .cloned()
        .expect("web-2 reported");
    assert_eq!(web2["decision"], "skipped");
    let reasons = web2["reasons"].to_string();
    assert!(
        reasons.contains("health warning") && reasons.contains("strictChecks [passing]"),
        "{reasons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_down_answers_503_not_404() {
    let lab = Lab::start().await;
    let drover = lab.drover(FAST).await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "all up").await;
    lab.consul.set_serf("node-a", "critical");
    lab.consul.set_serf("node-b", "critical");
    expect_backends(&c, &url, &["503"], "every node failed").await;
    lab.consul.set_serf("node-a", "passing");
    expect_backends(&c, &url, &["web-1"], "node-a back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_down_for_ten_seconds_keeps_the_routes_then_resyncs() {
    let lab = Lab::start().await;
    let drover = lab.drover(FAST).await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "all up").await;
    let load = Load::start(url.clone(), 2);

    lab.consul.stop().await;
    let down = Instant::now();
    let status = wait_status(&c, &drover, "the outage is reported", |s| s["state"] == "error").await;
    let error = status["lastError"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("Consul at") && error.contains("keeping the last good routes"),
        "{error}"
    );
    // Meanwhile the catalog changes: web-3 goes away.
    lab.consul.deregister("node-b", "web-3");
    let mut union = BTreeSet::new();
    // Samples at a steady pace across the 10 s outage (a measurement window, not a wait for
    // state).
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    while down.elapsed() < Duration::from_secs(10) {
        pace.tick().await;
        let seen = answering(&c, &url, 12).await;
        union.extend(seen.keys().cloned());
        assert!(
            seen.keys().all(|k| k.starts_with("web-")),
            "the last good routes stay while Consul is down: {seen:?}"
        );
    }
    assert_eq!(union.len(), 3, "all three kept answering during the outage: {union:?}");
    lab.consul.restart().await;
    expect_backends(&c, &url, &["web-1", "web-2"], "resynced after the outage").await;
    wait_status(&c, &drover, "the provider is ok again", |s| s["state"] == "ok").await;

    // A 5xx (no leader) is an outage too.
    lab.consul.set_failure(Some((500, "No cluster leader")));
    lab.consul.deregister("node-a", "web-1");
    let status = wait_status(&c, &drover, "the 500 is reported", |s| s["state"] == "error").await;
    assert!(
        status["lastError"].as_str().unwrap_or_default().contains("No cluster leader"),
        "{status:#}"
    );
    let seen = answering(&c, &url, 30).await;
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        vec!["web-1", "web-2"],
        "routes kept during the 500s"
    );
    lab.consul.set_failure(None);
    expect_backends(&c, &url, &["web-2"], "resynced after the 500s").await;

    let (ok, failures) = load.finish().await;
    assert!(ok > 50, "{ok}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_named_and_a_fixed_acl_recovers() {
    let lab = Lab::start().await;
    lab.consul.require_token(Some("the-right-token"));
    let drover = lab.drover_with(FAST, "token = \"a-wrong-token\"").await;
    let c = client();
    let status = wait_status(&c, &drover, "the 403 is reported", |s| s["state"] == "error").await;
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("403 Forbidden") && error.contains("ACL not found"), "{error}");
    assert!(
        error.contains("providers.consulCatalog.endpoint.token"),
        "names the setting: {error}"
    );
    assert!(!error.contains("a-wrong-token"), "never shows the token: {error}");
    assert_eq!(answering(&c, &drover.url("/"), 2).await.keys().collect::<Vec<_>>(), vec!["404"]);
    // The operator fixes the ACL on the Consul side.
    lab.consul.require_token(Some("a-wrong-token"));
    expect_backends(&c, &drover.url("/"), &["web-1", "web-2", "web-3"], "after the ACL is fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_stuck_at_zero_does_not_make_a_busy_loop() {
    let lab = Lab::start().await;
    let drover = lab.drover(&format!("{FAST}\nwait = \"300ms\"")).await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "all up").await;
    lab.consul.set_zero_index(true);
    // Wait until both watches have been answered since the switch (each then holds index 0).
    let switched = lab.consul.requests();
    wait_until(Duration::from_secs(5), || lab.consul.requests() >= switched + 2)
        .await
        .expect("both watches were answered with index 0");
    // The signal: six more requests. Each watch's requests block ~300 ms apart, so one of them
    // sent at least three, spanning 600 ms or more; a loop that sent index=0 would not block at
    // all and send the six within milliseconds.
    let (before, since) = (lab.consul.requests(), Instant::now());
    wait_until(Duration::from_secs(5), || lab.consul.requests() >= before + 6)
        .await
        .expect("the watches keep asking");
    let took = since.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "six requests in {took:?} with the index stuck at 0"
    );
    lab.consul.set_zero_index(false);
    lab.consul.set_check("node-b", "service:web-2", Some("web-2"), "critical");
    expect_backends(&c, &url, &["web-1", "web-3"], "a change after the index recovered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_means_two_open_blocking_queries_and_churn_is_rate_limited() {
    let lab = Lab::start().await;
    // The default token bucket: burst 2, then one query per second per watch; `wait` 1 s, so
    // that an idle watch's query expires and is sent again within the test.
    let drover = lab.drover("wait = \"1s\"").await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "all up").await;
    wait_until(Duration::from_secs(5), || lab.consul.blocked() == 2)
        .await
        .expect("both watches block");
    // Idle, each watch sends its next query only when the open one has blocked for the whole
    // `wait` and expired; the signal is two such expiries on each watch.
    for watch in ["/v1/catalog/services", "/v1/health/state/any"] {
        let (asked, expired) = (lab.consul.requests_to(watch), lab.consul.expired_on(watch).len());
        wait_until(Duration::from_secs(5), || lab.consul.requests_to(watch) >= asked + 2)
            .await
            .unwrap_or_else(|| panic!("{watch}: the expired query was not sent again"));
        assert_eq!(
            lab.consul.requests_to(watch),
            asked + 2,
            "{watch}: idle, only expired queries are sent again"
        );
        let blocked = lab.consul.expired_on(watch).split_off(expired);
        assert!(
            blocked.len() == 2 && blocked.iter().all(|d| *d >= Duration::from_secs(1)),
            "{watch}: each query must block for the whole wait (1 s) before the next: {blocked:?}"
        );
    }
    wait_until(Duration::from_secs(5), || lab.consul.blocked() == 2)
        .await
        .expect("both watches block again");

    // The catalog's index churns every 5 ms for 3 s.
    let before = lab.consul.requests_to("/v1/catalog/services");
    let churn = Instant::now();
    while churn.elapsed() < Duration::from_secs(3) {
        lab.consul.touch_services();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queries = lab.consul.requests_to("/v1/catalog/services") - before;
    eprintln!("{queries} services queries during 3 s of churn");
    // Burst of 2, then one per second: at most about 5; far from the ~600 of an unlimited loop.
    assert!(queries <= 7, "{queries} queries during 3 s of churn");
    lab.consul.deregister("node-b", "web-3");
    expect_backends(&c, &url, &["web-1", "web-2"], "a real change after the churn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_show_every_service_and_instance_with_its_decision() {
    let lab = Lab::start().await;
    lab.consul.require_token(Some("t0ken"));
    lab.consul.hide_from_token("billing");
    let (billing, _b) = whoami::spawn("billing").await;
    lab.consul.register(Registration::new(
        "node-a",
        "billing-1",
        "billing",
        billing,
        &["drover.enable=true"],
    ));
    let (api, _a) = whoami::spawn("api").await;
    lab.consul
        .register(Registration::new("node-a", "api-1", "api", api, &["drover.enable=false"]));
    lab.consul.register(Registration::new(
        "node-b",
        "api-2",
        "api",
        api,
        &["drover.enable=true", "drover.http.routers.api.rule=Host(`api.example`"],
    ));
    lab.consul.set_check("node-b", "service:web-3", Some("web-3"), "critical");
    let drover = lab.drover_with(FAST, "token = \"t0ken\"").await;
    let c = client();
    let status = wait_status(&c, &drover, "every instance reported", |s| {
        s["items"].as_array().is_some_and(|i| i.len() >= 7)
    })
    .await;
    let items = status["items"].as_array().unwrap();
    let find = |name: &str| {
        items
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {status:#}"))
    };
    let web1 = find("web/web-1 on node-a");
    assert_eq!(web1["decision"], "routed");
    assert_eq!(web1["addresses"][0], lab.backends["web-1"].0.to_string());
    assert_eq!(web1["routers"][0], "web@consulCatalog");
    assert_eq!(web1["services"][0], "web@consulCatalog");
    assert!(web1["id"].as_str().unwrap().ends_with("/web-1"), "keyed by node id and service id");
    let web3 = find("web/web-3 on node-b");
    assert_eq!(web3["decision"], "skipped");
    assert!(web3["reasons"].to_string().contains("health critical"), "{web3}");
    let api1 = find("api/api-1 on node-a");
    assert!(api1["reasons"].to_string().contains("drover.enable=false"), "{api1}");
    let api2 = find("api/api-2 on node-b");
    assert!(api2["reasons"].to_string().contains("tag `drover.http.routers.api.rule`"), "{api2}");
    let redis = find("redis");
    assert_eq!(
        (redis["kind"].as_str(), redis["decision"].as_str()),
        (Some("service"), Some("skipped"))
    );
    let consul = find("consul");
    assert_eq!(consul["decision"], "skipped");
    let acl = find("/v1/catalog/services");
    assert!(acl["reasons"].to_string().contains("X-Consul-Results-Filtered-By-ACLs"), "{acl}");
    assert!(!items.iter().any(|i| i["name"].as_str().unwrap_or_default().starts_with("billing")));
}

/// Backends that die before Consul notices: the realistic order of events. Only retries and
/// passive ejection (issue 3) can make these races invisible to clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_when_instances_die_before_consul_notices() {
    let mut lab = Lab::start().await;
    let drover = lab.drover(FAST).await;
    let c = client();
    let url = drover.url("/");
    expect_backends(&c, &url, &["web-1", "web-2", "web-3"], "all up").await;
    let load = Load::start(url.clone(), 4);
    // Let the load get going (some answers in) before the backend dies.
    wait_until(Duration::from_secs(5), || load.ok.load(Ordering::Relaxed) >= 50)
        .await
        .expect("the load got answers");

    // web-3's process dies; its check goes critical 100 ms later (a check interval).
    let (_, web3) = lab.backends.remove("web-3").expect("web-3");
    web3.stop().await;
    // Models Consul's check interval: the check lags the death, and traffic meets the dead
    // server in the gap (passive health covers it).
    let at_death = load.ok.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(5), || load.ok.load(Ordering::Relaxed) >= at_death + 200)
        .await
        .expect("the load went on after web-3 died");
    lab.consul.set_check("node-b", "service:web-3", Some("web-3"), "critical");
    expect_backends(&c, &url, &["web-1", "web-2"], "web-3 out").await;

    // web-2 is deregistered by a shutdown hook and stops at once.
    lab.consul.deregister("node-b", "web-2");
    let (_, web2) = lab.backends.remove("web-2").expect("web-2");
    web2.stop().await;
    expect_backends(&c, &url, &["web-1"], "web-2 out").await;
    // Keeps the load running a little past the last change, so failures it causes are counted.
    let at_last_change = load.ok.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(5), || load.ok.load(Ordering::Relaxed) >= at_last_change + 100)
        .await
        .expect("the load went on after the last change");

    let (ok, failures) = load.finish().await;
    eprintln!("{ok} requests, {} failed: {failures:#?}", failures.len());
    assert!(ok > 100, "{ok}");
    assert!(
        failures.is_empty(),
        "requests failed in the window between a backend dying and Consul noticing \
         (needs retries and passive ejection, issue 3): {failures:#?}"
    );
}

/// The stand-in itself answers as Consul documents (shared/specs/providers.md §2), so the tests
/// above test against Consul's behaviour, not against our reading of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_behaves_as_consul_documents() {
    let lab = Lab::start().await;
    let c = client();
    let base = format!("http://{}", lab.consul.addr());
    let get = |path: &str, headers: &[(&str, &str)]| {
        let (c, url, headers) = (
            c.clone(),
            format!("{base}{path}"),
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
        );
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let a = send(&c, "GET", &url, &h).await.expect("the stand-in answers");
            let index: u64 = a
                .headers
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (a, index)
        }
    };
    let json = |a: &support::Answer| serde_json::from_str::<serde_json::Value>(&a.body).expect("JSON");

    let (services, index) = get("/v1/catalog/services", &[]).await;
    assert!(index > 0);
    assert_eq!(services.headers["x-consul-knownleader"], "true");
    let body = json(&services);
    assert_eq!(body["consul"], serde_json::json!([]));
    assert_eq!(
        body["web"].as_array().map(Vec::len),
        Some(3),
        "the union of the instances' tags: {body}"
    );

    // Blocking: an expired wait answers the same index and body after `wait` (+ up to wait/16).
    let started = Instant::now();
    let (again, same) = get(&format!("/v1/catalog/services?index={index}&wait=300ms"), &[]).await;
    let waited = started.elapsed();
    assert_eq!((same, again.body.as_str()), (index, services.body.as_str()));
    assert!(waited >= Duration::from_millis(300), "blocked {waited:?}");
    // A write releases a blocked query at once with a higher index.
    let blocked = tokio::spawn(get(&format!("/v1/catalog/services?index={index}&wait=10s"), &[]));
    wait_until(Duration::from_secs(2), || lab.consul.blocked() == 1)
        .await
        .expect("the query blocks");
    let started = Instant::now();
    lab.consul.deregister("node-b", "web-3");
    let (_, moved) = blocked.await.unwrap();
    assert!(
        moved > index && started.elapsed() < Duration::from_secs(5),
        "{moved} after {:?}",
        started.elapsed()
    );

    // Health entries: Service.Address may be empty (use Node.Address); node checks included.
    let (health, service_index) = get("/v1/health/service/web?dc=dc7", &[]).await;
    let entries = json(&health);
    assert_eq!(entries.as_array().map(Vec::len), Some(2));
    assert_eq!(entries[0]["Node"]["Datacenter"], "dc7", "dc is echoed");
    let checks: Vec<&str> = entries[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(checks, vec!["serfHealth", "service:web-1"]);
    // ?passing drops instances with any non-passing check, node-level ones included.
    lab.consul.set_serf("node-a", "critical");
    lab.consul.service_maintenance("node-b", "web-2", true, "deploy");
    let (passing, _) = get("/v1/health/service/web?passing", &[]).await;
    assert_eq!(json(&passing), serde_json::json!([]), "node-a failed and web-2 is in maintenance");
    let (all, _) = get("/v1/health/service/web", &[]).await;
    let maintenance = json(&all)[1]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "_service_maintenance:web-2")
        .cloned()
        .unwrap();
    assert_eq!(
        (maintenance["Status"].as_str(), maintenance["Notes"].as_str()),
        (Some("critical"), Some("deploy"))
    );
    let (tagged, _) = get("/v1/health/service/web?tag=v2&tag=drover.enable%3Dtrue", &[]).await;
    assert_eq!(json(&tagged).as_array().map(Vec::len), Some(2), "every tag= must match");
    let (untagged, _) = get("/v1/health/service/web?tag=v3", &[]).await;
    assert_eq!(json(&untagged), serde_json::json!([]));
    let (nope, nope_index) = get("/v1/health/service/nope", &[]).await;
    assert_eq!(
        (nope.status, nope.body.as_str()),
        (200, "[]"),
        "an unknown service is an empty list"
    );
    assert!(nope_index > 0 && service_index > 0);
    let (state, _) = get("/v1/health/state/critical", &[]).await;
    assert_eq!(
        json(&state).as_array().map(Vec::len),
        Some(2),
        "serfHealth of node-a and the maintenance check"
    );

    // The index going backwards releases blocked queries at once with the lower index.
    let (_, checks_index) = get("/v1/health/state/any", &[]).await;
    let blocked = tokio::spawn(get(&format!("/v1/health/state/any?index={checks_index}&wait=10s"), &[]));
    wait_until(Duration::from_secs(2), || lab.consul.blocked() == 1)
        .await
        .expect("the query blocks");
    lab.consul.index_goes_backwards(3);
    let (_, lower) = blocked.await.unwrap();
    assert_eq!(lower, 3);

    // ACLs: a wrong or missing token is a 403 with Consul's body; lists are filtered silently.
    lab.consul.require_token(Some("s3cret"));
    let (denied, _) = get("/v1/catalog/services", &[("x-consul-token", "nope")]).await;
    assert_eq!((denied.status, denied.body.as_str()), (403, "ACL not found"));
    assert_eq!(get("/v1/catalog/services", &[]).await.0.status, 403);
    assert_eq!(
        get("/v1/catalog/services", &[("authorization", "Bearer s3cret")]).await.0.status,
        200
    );
    lab.consul.hide_from_token("redis");
    let (filtered, _) = get("/v1/catalog/services", &[("x-consul-token", "s3cret")]).await;
    assert_eq!(filtered.headers["x-consul-results-filtered-by-acls"], "true");
    assert!(json(&filtered).get("redis").is_none());

    // Index 0 and 5xx.
    lab.consul.require_token(None);
    lab.consul.set_zero_index(true);
    assert_eq!(get("/v1/catalog/services", &[]).await.1, 0);
    lab.consul.set_failure(Some((500, "No cluster leader")));
    let (failed, _) = get("/v1/catalog/services", &[]).await;
    assert_eq!((failed.status, failed.body.as_str()), (500, "No cluster leader"));
}

#[test]
fn static_configuration_errors_name_the_key() {
    use drover::config::StaticConfig;
    let parse = |section: &str| {
        StaticConfig::parse(
            std::path::Path::new("drover.toml"),
            &format!("[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[providers.consulCatalog]\n{section}\n"),
        )
        .map(|_| ())
        .map_err(|e| e.0)
    };
    assert!(parse("prefix = \"traefik\"\nexposedByDefault = true").is_ok());
    let err = parse("strictChecks = [\"healthy\"]").unwrap_err();
    assert!(
        err.starts_with("drover.toml: providers.consulCatalog.strictChecks: `healthy`"),
        "{err}"
    );
    let err = parse("[providers.consulCatalog.endpoint]\nscheme = \"https\"").unwrap_err();
    assert!(err.contains("providers.consulCatalog.endpoint.tls.ca is required"), "{err}");
    let err = parse("refreshIntervall = \"15s\"").unwrap_err();
    assert!(err.contains("refreshIntervall"), "{err}");
}
