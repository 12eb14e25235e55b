//! The DNS provider end to end: a real BIND 9 started by the tests (changed live with
//! `nsupdate`), drover in-process, whoami backends, and an in-process DNS server for the
//! answers BIND will not give on demand (SERVFAIL, REFUSED, silence, the TC bit, TTL 0).
//!
//! BIND tests need `named` and `nsupdate` (`tests/setup.sh` installs them) and fail, naming that
//! command, when they are missing.

mod support;

#[path = "support/fake_dns.rs"]
mod fake_dns;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_providers::dns::client::{AddressRecord, Dns, DnsClient, LookupFailure, SrvAnswer, SrvRecord};
use drover_providers::dns::{DnsConfig, DnsProvider, DnsService};
use drover_providers::{Provider, ProviderHandle, Update};
use fake_dns::{address, cname, srv, FakeDns, Mode};
use support::bind::{Bind, ZoneSpec};
use support::{client, send, whoami, HttpClient, TestDrover};
use tokio::sync::mpsc::UnboundedReceiver;

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// `[providers.dns]` asking `nameserver`, with `extra` keys, then `services`.
fn dns_section(nameserver: SocketAddr, extra: &str, services: &str) -> String {
    format!("[providers.dns]\nnameservers = [\"{nameserver}\"]\n{extra}\n{services}")
}

/// A service `name` over SRV `srv`, routed for every path.
fn srv_service(name: &str, srv: &str) -> String {
    format!("[[providers.dns.services]]\nname = \"{name}\"\nsrv = \"{srv}\"\nrule = \"PathPrefix(`/`)\"\n")
}

/// Which backend answered (`""` for a non-whoami answer), or why the request failed.
async fn who(c: &HttpClient, url: &str) -> Result<String, String> {
    match send(c, "GET", url, &[]).await {
        Ok(a) if a.status == 200 => Ok(a.backend().to_string()),
        Ok(a) => Err(format!("{} {}", a.status, a.body.trim())),
        Err(e) => Err(e),
    }
}

/// Polls until `url` is answered by one of `backends` (up to `limit`); returns how long it took.
async fn until_answered_by(c: &HttpClient, url: &str, backends: &[&str], limit: Duration) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match who(c, url).await {
            Ok(b) if backends.contains(&b.as_str()) => return started.elapsed(),
            Ok(b) => last = format!("answered by {b}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{url} not answered by {backends:?} within {limit:?}; last: {last}");
}

/// Polls until `url` answers with `status` (up to `limit`).
async fn until_status(c: &HttpClient, url: &str, status: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if send(c, "GET", url, &[]).await.is_ok_and(|a| a.status == status) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{url} never answered {status} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `n` GETs over `clients` keep-alive connections: answers by backend, and the failures.
async fn hit(url: &str, n: usize, clients: usize) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut tasks = Vec::new();
    for i in 0..clients {
        let url = url.to_string();
        let share = n / clients + usize::from(i < n % clients);
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut counts = BTreeMap::new();
            let mut failures = Vec::new();
            for _ in 0..share {
                match who(&c, &url).await {
                    Ok(b) => *counts.entry(b).or_insert(0) += 1,
                    Err(e) => failures.push(e),
                }
            }
            (counts, failures)
        }));
    }
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    for task in tasks {
        let (c, f) = task.await.expect("client task");
        for (b, n) in c {
            *counts.entry(b).or_insert(0) += n;
        }
        failures.extend(f);
    }
    (counts, failures)
}

/// Clients sending GETs without pause until stopped, counting answers per backend and failures.
struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, counts, failures, url) = (stop.clone(), counts.clone(), failures.clone(), url.to_string());
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        match who(&c, &url).await {
                            Ok(b) => *counts.lock().unwrap().entry(b).or_insert(0u64) += 1,
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            counts,
            failures,
            tasks,
        }
    }

    fn count(&self, backend: &str) -> u64 {
        self.counts.lock().unwrap().get(backend).copied().unwrap_or(0)
    }

    async fn finish(self) -> (BTreeMap<String, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let counts = self.counts.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (counts, failures)
    }
}

/// BIND serving `records` in `example.` (TTL 60 s), and drover routing every path to the service
/// `web` over `_http._tcp.web.example.`.
async fn web_over_srv(records: &str) -> (Bind, TestDrover) {
    let bind = Bind::start(&[ZoneSpec {
        origin: "example.",
        ttl: 60,
        negative_ttl: 1,
        records,
    }])
    .await;
    let drover = TestDrover::start_with("", &dns_section(bind.addr, "", &srv_service("web", "_http._tcp.web.example."))).await;
    (bind, drover)
}

fn dns_status(drover: &TestDrover) -> drover_providers::ProviderStatus {
    drover
        .drover
        .provider_statuses()
        .into_iter()
        .find(|s| s.name == "dns")
        .expect("the dns provider has a status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_srv_set_60_40_0_splits_traffic_by_weight() {
    let (a, _a) = whoami::spawn("a").await;
    let (b, _b) = whoami::spawn("b").await;
    let (c_addr, _c) = whoami::spawn("c").await;
    let records = format!(
        "a IN A 127.0.0.1\nb IN A 127.0.0.1\nc IN A 127.0.0.1\n\
         _http._tcp.web IN SRV 10 60 {} a\n_http._tcp.web IN SRV 10 40 {} b\n_http._tcp.web IN SRV 10 0 {} c\n",
        a.port(),
        b.port(),
        c_addr.port()
    );
    let (_bind, drover) = web_over_srv(&records).await;
    let c = client();
    until_answered_by(&c, &drover.url("/"), &["a", "b"], Duration::from_secs(10)).await;

    let (counts, failures) = hit(&drover.url("/"), 10_000, 4).await;
    eprintln!("10,000 GETs: {counts:?}");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let share = |b: &str| counts.get(b).copied().unwrap_or(0);
    assert!((5_820..=6_180).contains(&share("a")), "weight 60 → 6,000 ± 3 %: {counts:?}");
    assert!((3_880..=4_120).contains(&share("b")), "weight 40 → 4,000 ± 3 %: {counts:?}");
    assert!(
        share("c") <= 10,
        "weight 0 beside positive weights gets (almost) nothing: {counts:?}"
    );

    // The admin side says why c gets nothing.
    let status = dns_status(&drover);
    let record = status
        .items
        .iter()
        .find(|i| i.kind == "srv" && i.name.ends_with(&format!("{} c.example.", c_addr.port())))
        .unwrap_or_else(|| panic!("an item for c's record: {:?}", status.items));
    assert!(record.reasons.iter().any(|r| r.contains("balancer weight 0")), "{record:?}");
    assert_eq!(record.services, vec!["web@dns"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsupdate_adds_and_deletes_take_effect_within_the_ttl_and_fail_no_request() {
    const TTL: u64 = 2;
    let (a, _a) = whoami::spawn("a").await;
    let (b, _b) = whoami::spawn("b").await;
    let (c_addr, _c) = whoami::spawn("c").await;
    let records = format!(
        "a IN A 127.0.0.1\nb IN A 127.0.0.1\nc IN A 127.0.0.1\n\
         _http._tcp.web IN SRV 10 50 {} a\n_http._tcp.web IN SRV 10 50 {} b\n",
        a.port(),
        b.port()
    );
    let bind = Bind::start(&[ZoneSpec {
        origin: "example.",
        ttl: TTL as u32,
        negative_ttl: 1,
        records: &records,
    }])
    .await;
    let drover = TestDrover::start_with("", &dns_section(bind.addr, "", &srv_service("web", "_http._tcp.web.example."))).await;
    let c = client();
    let url = drover.url("/");
    until_answered_by(&c, &url, &["a", "b"], Duration::from_secs(10)).await;
    let load = Load::start(&url, 4);

    // A new registration reaches traffic within its TTL + 1 s.
    bind.update(
        "example.",
        &format!("update add _http._tcp.web.example. {TTL} IN SRV 10 50 {} c.example.", c_addr.port()),
    )
    .await;
    let added = Instant::now();
    while load.count("c") == 0 {
        assert!(added.elapsed() <= Duration::from_secs(TTL + 1), "c got no traffic within TTL + 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("nsupdate add → first request to c: {:?}", added.elapsed());

    // A deleted registration leaves the configuration in force when its TTL runs out (exactly
    // when: `records_are_asked_again_when_their_ttl_runs_out`, with paused time), and then gets
    // no more traffic while the others keep serving.
    bind.update(
        "example.",
        &format!("update delete _http._tcp.web.example. SRV 10 50 {} b.example.", b.port()),
    )
    .await;
    let without_b: std::collections::BTreeSet<String> = [a, c_addr].iter().map(|s| format!("http://{s}")).collect();
    let deleted = Instant::now();
    while support::servers_in_force(&c, &drover, "web@dns").await != without_b {
        assert!(
            deleted.elapsed() <= Duration::from_secs(TTL + 2),
            "b still routed TTL + 2 s after its deletion"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Requests already sent to b before the swap finish within the next few dozen requests.
    let served = || load.count("a") + load.count("c");
    let settled = served() + 40;
    support::wait_until(Duration::from_secs(10), || served() >= settled)
        .await
        .expect("traffic flows");
    let (b_then, more) = (load.count("b"), served() + 200);
    support::wait_until(Duration::from_secs(10), || served() >= more)
        .await
        .expect("the others keep serving");
    assert_eq!(load.count("b"), b_then, "b still gets traffic after it left the configuration");

    let (counts, failures) = load.finish().await;
    eprintln!("during the updates: {counts:?}");
    assert!(failures.is_empty(), "no request may fail: {:?}", &failures[..failures.len().min(5)]);

    // Deleting every record leaves NXDOMAIN: the service is empty and clients get 503.
    bind.update("example.", "update delete _http._tcp.web.example. SRV").await;
    until_status(&c, &url, 503, Duration::from_secs(TTL + 2)).await;
    let status = dns_status(&drover);
    let lookup = status.items.iter().find(|i| i.kind == "lookup").expect("a lookup item");
    assert!(lookup.reasons[0].contains("NXDOMAIN"), "{lookup:?}");
    assert!(
        status.last_error.is_none(),
        "an authoritative empty answer is not an error: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_four_srv_servers_killed_at_once_cost_at_most_what_replays_allow() {
    let mut servers = Vec::new();
    let mut records = String::new();
    for name in ["s1", "s2", "s3", "s4"] {
        let (addr, handle) = whoami::spawn(name).await;
        records.push_str(&format!(
            "{name} IN A 127.0.0.1\n_http._tcp.web IN SRV 10 10 {} {name}\n",
            addr.port()
        ));
        servers.push(handle);
    }
    let (_bind, drover) = web_over_srv(&records).await;
    let c = client();
    let url = drover.url("/");
    until_answered_by(&c, &url, &["s1", "s2", "s3", "s4"], Duration::from_secs(10)).await;

    // Under load, three of the four die at once; DNS still lists them (TTL 60 s).
    let load = Load::start(&url, 4);
    let before = Instant::now();
    while load.count("s4") < 50 {
        assert!(before.elapsed() < Duration::from_secs(10), "the load never reached s4");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let survivor = servers.pop().expect("four servers");
    for handle in servers {
        handle.stop().await;
    }
    let after_kill = load.count("s4");
    while load.count("s4") < after_kill + 500 {
        assert!(before.elapsed() < Duration::from_secs(30), "s4 did not take the traffic");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (counts, failures) = load.finish().await;
    // A request that never reached a dead server (connect refused, a pooled connection found
    // dead) goes on to the next server for free. One that a dying server had received and reset
    // is replayed only within the service's retry settings (2 attempts, a budget of 3 replays a
    // second beyond 20% of requests): with four clients in flight as three servers die at once,
    // a request can meet all three, or the budget can run out, so one or two of ~700 may fail
    // (seen in CI). Without failover it would be hundreds.
    assert!(
        failures.len() <= 2,
        "{} requests failed after three of four servers died (first: {:?}); answered: {counts:?}",
        failures.len(),
        failures.first()
    );
    drop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_failover_takes_over_with_no_failed_get_and_traffic_returns() {
    let (a, a_handle) = whoami::spawn("a").await;
    let (b, b_handle) = whoami::spawn("b").await;
    let (backup, _backup) = whoami::spawn("backup").await;
    let records = format!(
        "a IN A 127.0.0.1\nb IN A 127.0.0.1\nbackup IN A 127.0.0.1\n\
         _http._tcp.web IN SRV 10 50 {} a\n_http._tcp.web IN SRV 10 50 {} b\n_http._tcp.web IN SRV 20 0 {} backup\n",
        a.port(),
        b.port(),
        backup.port()
    );
    let (_bind, drover) = web_over_srv(&records).await;
    let c = client();
    let url = drover.url("/");
    until_answered_by(&c, &url, &["a", "b"], Duration::from_secs(10)).await;

    // Priority 10 is active: the priority-20 server takes nothing.
    let (counts, failures) = hit(&url, 300, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(counts.get("backup"), None, "priority 20 is a failover tier only: {counts:?}");

    // Every priority-10 server dies: priority 20 takes the traffic, and no GET fails.
    a_handle.stop().await;
    b_handle.stop().await;
    let (counts, failures) = hit(&url, 300, 2).await;
    assert!(
        failures.is_empty(),
        "{} of 300 GETs failed after the priority-10 servers died (first: {:?}); answered: {counts:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(counts.get("backup").copied(), Some(300), "{counts:?}");

    // They come back on the same addresses: traffic returns to priority 10.
    let mut stops = Vec::new();
    for (addr, name) in [(a, "a"), (b, "b")] {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind the backend's port");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(whoami::serve(listener, name.to_string(), async {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    let started = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "traffic did not return to priority 10 within 30 s"
        );
        match who(&c, &url).await {
            Ok(b) if b == "a" || b == "b" => in_a_row += 1,
            Ok(_) => {
                in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a GET failed while the priority-10 servers came back: {e}"),
        }
    }
    eprintln!("traffic back on priority 10 after {:?}", started.elapsed());
    drop(stops);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_refused_and_silence_keep_the_last_good_servers_nxdomain_empties_with_503() {
    let (a, _a) = whoami::spawn("a").await;
    let fake = FakeDns::start().await;
    fake.zone(|z| {
        z.records = vec![
            srv("_http._tcp.web.test.", 1, 1, 1, a.port(), "a.test."),
            address("a.test.", 1, LOCALHOST),
        ];
    });
    let drover = TestDrover::start_with(
        "",
        &dns_section(
            fake.addr,
            "maxTtl = \"1s\"\ntimeout = \"300ms\"",
            &srv_service("web", "_http._tcp.web.test."),
        ),
    )
    .await;
    let c = client();
    let url = drover.url("/");
    until_answered_by(&c, &url, &["a"], Duration::from_secs(10)).await;
    let api = format!("http://{}/api/providers/dns", drover.drover.api());

    for (mode, says) in [
        (Mode::ServFail, "SERVFAIL"),
        (Mode::Refused, "REFUSED"),
        (Mode::Silent, "timed out"),
    ] {
        fake.zone(|z| z.mode = mode);
        let seen = support::wait_until(Duration::from_secs(10), || {
            dns_status(&drover).last_error.is_some_and(|e| e.contains(says))
        })
        .await;
        assert!(seen.is_some(), "{mode:?} is reported; status: {:?}", dns_status(&drover));
        let (counts, failures) = hit(&url, 20, 1).await;
        assert!(failures.is_empty(), "{mode:?}: the last good servers keep serving: {failures:?}");
        assert_eq!(counts.get("a").copied(), Some(20));
        let shown = support::get(&c, &api).await.body;
        assert!(
            shown.contains(says) && shown.contains("keeping the servers"),
            "{mode:?} on the admin side: {shown}"
        );
    }

    fake.zone(|z| z.mode = Mode::NxDomain);
    until_status(&c, &url, 503, Duration::from_secs(5)).await;
    let answer = support::get(&c, &url).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(dns_status(&drover).last_error.is_none(), "NXDOMAIN is an answer, not an error");

    fake.zone(|z| z.mode = Mode::Answer);
    until_answered_by(&c, &url, &["a"], Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_going_away_keeps_the_last_good_servers() {
    let (a, _a) = whoami::spawn("a").await;
    let records = format!("a IN A 127.0.0.1\n_http._tcp.web IN SRV 10 1 {} a\n", a.port());
    let mut bind = Bind::start(&[ZoneSpec {
        origin: "example.",
        ttl: 1,
        negative_ttl: 1,
        records: &records,
    }])
    .await;
    let drover = TestDrover::start_with(
        "",
        &dns_section(bind.addr, "timeout = \"300ms\"", &srv_service("web", "_http._tcp.web.example.")),
    )
    .await;
    let c = client();
    let url = drover.url("/");
    until_answered_by(&c, &url, &["a"], Duration::from_secs(10)).await;
    bind.stop().await;
    let seen = support::wait_until(Duration::from_secs(10), || dns_status(&drover).last_error.is_some()).await;
    assert!(seen.is_some(), "the outage is reported");
    let (counts, failures) = hit(&url, 50, 1).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(counts.get("a").copied(), Some(50));
    eprintln!("reported: {:?}", dns_status(&drover).last_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_with_a_configured_port_serve_a_file_provider_router() {
    let (t, _t) = whoami::spawn("task").await;
    let bind = Bind::start(&[ZoneSpec {
        origin: "web.",
        ttl: 600,
        negative_ttl: 1,
        records: "tasks IN A 127.0.0.1\n",
    }])
    .await;
    let services = format!(
        "[[providers.dns.services]]\nname = \"tasks\"\na = \"tasks.web\"\nport = {}\n",
        t.port()
    );
    let routes = "[http.routers.file]\nrule = \"PathPrefix(`/file`)\"\nservice = \"tasks@dns\"\n";
    let drover = TestDrover::start_with(routes, &dns_section(bind.addr, "", &services)).await;
    let c = client();
    until_answered_by(&c, &drover.url("/file"), &["task"], Duration::from_secs(10)).await;
    assert_eq!(
        support::get(&c, &drover.url("/other")).await.status,
        404,
        "the dns service has no router of its own"
    );
    let status = dns_status(&drover);
    let record = status.items.iter().find(|i| i.kind == "a").expect("an item for the A record");
    assert_eq!(record.addresses, vec![format!("127.0.0.1:{}", t.port())]);
    let lookup = status.items.iter().find(|i| i.kind == "lookup").expect("a lookup item");
    assert!(
        lookup.reasons[0].contains("TTL 600 s, asked again every 5m"),
        "Docker's 600 s is capped: {lookup:?}"
    );
}

/// The resolver layer against the in-process server: what BIND will not produce on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_client_classifies_answers_and_copes_with_odd_ones() {
    let fake = FakeDns::start().await;
    let v6: IpAddr = "fd00::12".parse().unwrap();
    fake.zone(|z| {
        z.records = vec![
            srv("_http._tcp.web.test.", 0, 10, 60, 8080, "a.test."),
            srv("_http._tcp.web.test.", 0, 10, 40, 8080, "b.test."),
            address("a.test.", 30, LOCALHOST),
            address("b.test.", 30, LOCALHOST),
            address("b.test.", 30, v6),
            address("v6only.test.", 30, v6),
            cname("alias.test.", 30, "a.test."),
            srv("_none._tcp.unavailable.test.", 30, 0, 0, 0, "."),
        ];
        z.negative_ttl = 7;
    });
    let dns = DnsClient::new(&[fake.addr], Duration::from_millis(300)).expect("a client");

    let answer = dns.srv("_HTTP._TCP.Web.Test.").await.expect("mixed case finds the records");
    let mut records = answer.records.clone();
    records.sort();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (
            records[0].priority,
            records[0].weight,
            records[0].port,
            records[0].target.as_str(),
            records[0].ttl
        ),
        (10, 40, 8080, "b.test.", 0),
        "TTL 0 is passed on as it is (the provider clamps it)"
    );
    let mut glue: Vec<(String, IpAddr)> = answer.glue.iter().map(|g| (g.name.clone(), g.ip)).collect();
    glue.sort();
    assert_eq!(
        glue,
        vec![("a.test.".into(), LOCALHOST), ("b.test.".into(), LOCALHOST), ("b.test.".into(), v6)],
        "glue from the Additional section, A and AAAA"
    );

    let unavailable = dns.srv("_none._tcp.unavailable.test.").await.expect("a `.` record is an answer");
    assert_eq!(unavailable.records[0].target, ".");

    // Addresses: both families, a CNAME chain, AAAA only, none.
    let ips = |r: Vec<drover_providers::dns::client::AddressRecord>| {
        let mut ips: Vec<IpAddr> = r.into_iter().map(|a| a.ip).collect();
        ips.sort();
        ips
    };
    assert_eq!(ips(dns.addresses("b.test.").await.unwrap()), vec![LOCALHOST, v6]);
    let alias = dns.addresses("alias.test.").await.unwrap();
    assert_eq!(alias[0].name, "alias.test.", "a CNAME target counts under the name asked");
    assert_eq!(ips(alias), vec![LOCALHOST]);
    assert_eq!(ips(dns.addresses("v6only.test.").await.unwrap()), vec![v6]);

    // Negative answers are authoritative, with the SOA's negative TTL.
    assert_eq!(
        dns.srv("_http._tcp.nowhere.test.").await.unwrap_err(),
        LookupFailure::NoRecords {
            nx_domain: true,
            negative_ttl: Some(7)
        }
    );
    assert_eq!(
        dns.srv("a.test.").await.unwrap_err(),
        LookupFailure::NoRecords {
            nx_domain: false,
            negative_ttl: Some(7)
        },
        "NODATA: the name exists, without SRV records"
    );

    // A truncated UDP answer is asked again over TCP.
    fake.zone(|z| z.truncate_udp = true);
    let before = fake.tcp_queries();
    assert_eq!(
        dns.srv("_http._tcp.web.test.").await.expect("the TCP retry answers").records.len(),
        2
    );
    assert!(fake.tcp_queries() > before, "the retry went over TCP");
    fake.zone(|z| z.truncate_udp = false);

    // Failures are transient, and say what happened.
    for (mode, says) in [
        (Mode::ServFail, "SERVFAIL"),
        (Mode::Refused, "REFUSED"),
        (Mode::Silent, "timed out"),
    ] {
        fake.zone(|z| z.mode = mode);
        match dns.srv("_http._tcp.web.test.").await {
            Err(LookupFailure::Transient(why)) => assert!(why.contains(says), "{mode:?}: {why}"),
            other => panic!("{mode:?} must be transient, got {other:?}"),
        }
    }
}

/// A resolver the DNS provider takes in place of [`DnsClient`] (`DnsProvider::run_with`): SRV
/// answers from a table the test changes, every question counted. No sockets, so tests run on
/// paused time and see exactly when the provider asks (a real server cannot follow paused time).
#[derive(Default)]
struct ScriptedDns {
    srv: Mutex<BTreeMap<String, SrvAnswer>>,
    srv_asked: Mutex<Vec<tokio::time::Instant>>,
    addresses_asked: AtomicU64,
}

impl ScriptedDns {
    /// SRV records of `name`, each `(port, ttl)`, all on target `a.example.` with its glue.
    fn set(&self, name: &str, records: &[(u16, u32)]) {
        let answer = SrvAnswer {
            records: records
                .iter()
                .map(|&(port, ttl)| SrvRecord {
                    priority: 10,
                    weight: 1,
                    port,
                    target: "a.example.".into(),
                    ttl,
                })
                .collect(),
            glue: vec![AddressRecord {
                name: "a.example.".into(),
                ip: LOCALHOST,
                ttl: records.iter().map(|r| r.1).min().unwrap_or(0),
            }],
        };
        self.srv.lock().unwrap().insert(name.into(), answer);
    }
}

impl Dns for ScriptedDns {
    async fn srv(&self, name: &str) -> Result<SrvAnswer, LookupFailure> {
        self.srv_asked.lock().unwrap().push(tokio::time::Instant::now());
        let found = self.srv.lock().unwrap().get(name).cloned();
        found.ok_or(LookupFailure::NoRecords {
            nx_domain: true,
            negative_ttl: None,
        })
    }

    async fn addresses(&self, _: &str) -> Result<Vec<AddressRecord>, LookupFailure> {
        self.addresses_asked.fetch_add(1, Ordering::SeqCst);
        Err(LookupFailure::NoRecords {
            nx_domain: true,
            negative_ttl: None,
        })
    }
}

/// Runs the DNS provider over `dns` for one SRV service `web`; its fragments arrive on the receiver.
fn run_provider(dns: &Arc<ScriptedDns>, min_ttl: Duration) -> (tokio::task::JoinHandle<()>, UnboundedReceiver<Update>) {
    let config = DnsConfig {
        min_ttl: min_ttl.into(),
        services: vec![DnsService {
            name: "web".into(),
            srv: Some("_http._tcp.web.example.".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let provider = DnsProvider::new(&config)
        .expect("valid")
        .run_with(dns.clone(), ProviderHandle::new("dns", tx));
    (tokio::spawn(provider), rx)
}

/// The next fragment's server URLs of `web`.
async fn next_servers(rx: &mut UnboundedReceiver<Update>) -> Vec<String> {
    let update = tokio::time::timeout(Duration::from_secs(600), rx.recv())
        .await
        .expect("a fragment within 10 minutes of paused time")
        .expect("the provider runs");
    let Update::Config { config, .. } = update else {
        panic!("a fragment, got {update:?}")
    };
    let servers = &config.http.services["web"].load_balancer.as_ref().expect("a load balancer").servers;
    servers.iter().map(|s| s.url.clone()).collect()
}

/// A record set is asked again exactly when its TTL runs out: a new record is routed then, not
/// before, and a deleted one leaves then.
#[tokio::test(start_paused = true)]
async fn records_are_asked_again_when_their_ttl_runs_out() {
    const TTL: Duration = Duration::from_secs(30);
    let dns = Arc::new(ScriptedDns::default());
    dns.set("_http._tcp.web.example.", &[(8080, 30)]);
    let started = tokio::time::Instant::now();
    let (provider, mut rx) = run_provider(&dns, Duration::from_secs(1));
    assert_eq!(next_servers(&mut rx).await, ["http://127.0.0.1:8080"]);

    tokio::time::advance(Duration::from_secs(1)).await;
    dns.set("_http._tcp.web.example.", &[(8080, 30), (8081, 30)]);
    assert_eq!(next_servers(&mut rx).await, ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]);
    assert_eq!(started.elapsed(), TTL, "the new record is seen when the TTL runs out");

    dns.set("_http._tcp.web.example.", &[(8081, 30)]);
    assert_eq!(next_servers(&mut rx).await, ["http://127.0.0.1:8081"]);
    assert_eq!(started.elapsed(), TTL * 2, "the deleted record leaves one TTL later");
    assert_eq!(dns.srv_asked.lock().unwrap().len(), 3, "asked once per TTL");
    provider.abort();
}

/// Consul answers with TTL 0: drover must ask once per `minTtl`, not in a loop.
#[tokio::test(start_paused = true)]
async fn a_ttl_of_zero_is_asked_once_per_min_ttl() {
    let dns = Arc::new(ScriptedDns::default());
    dns.set("_http._tcp.web.example.", &[(8080, 0)]);
    let (provider, mut rx) = run_provider(&dns, Duration::from_millis(500));
    assert_eq!(next_servers(&mut rx).await, ["http://127.0.0.1:8080"]);
    // Paused time: the first query was at 0; this sleep ends between two queries.
    tokio::time::sleep(Duration::from_millis(2_250)).await;
    let asked = dns.srv_asked.lock().unwrap().clone();
    let gaps: Vec<Duration> = asked.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [Duration::from_millis(500); 4],
        "TTL 0 with minTtl 500 ms: one SRV query every 500 ms"
    );
    assert_eq!(dns.addresses_asked.load(Ordering::SeqCst), 0, "the glue answered the target");
    assert!(rx.try_recv().is_err(), "an unchanged answer sends nothing");
    provider.abort();
}

#[test]
fn a_bad_dns_section_stops_drover_at_start_naming_the_key() {
    let text =
        "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[providers.dns]\n[[providers.dns.services]]\nname = \"web\"\na = \"tasks.web\"\n";
    let err = drover::config::StaticConfig::parse(Path::new("static.toml"), text).unwrap_err().0;
    assert!(
        err.contains("static.toml") && err.contains("providers.dns.services[0].port (`web`): missing"),
        "{err}"
    );
    let ok = text.replace("a = \"tasks.web\"", "a = \"tasks.web\"\nport = 8080");
    assert!(drover::config::StaticConfig::parse(Path::new("static.toml"), &ok).is_ok());
}
