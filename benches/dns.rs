//! The DNS provider's two numbers: how soon an `nsupdate` registration is routed, and how much
//! resolver traffic drover makes.
//!
//! ```text
//! cargo bench --bench dns              # 20 updates, two 20 s query windows
//! QUICK=1 cargo bench --bench dns      # 5 updates, two 6 s windows: to check that it works
//! ```
//!
//! 1. **nsupdate → routed.** A real BIND 9 (started here, on a loopback port) serves an SRV
//!    set with TTL 1 s; each round moves the set to the other of two backends with `nsupdate`
//!    and times how long until a GET through drover is answered by the new one. Rounds start at
//!    staggered offsets so the update lands at every phase of drover's re-query clock. Needs
//!    `apt-get install bind9 bind9-utils bind9-dnsutils`.
//! 2. **Resolver traffic.** An in-process DNS server counts the queries drover sends for 100
//!    services whose records have TTL 5 s, over a window after start-up: once with glue in the
//!    Additional section (1 SRV query per service per TTL), once without glue and with a
//!    longer SRV TTL (10 s) than the targets' addresses (5 s), where the targets must be
//!    re-resolved on their own clock (A and AAAA every 5 s) and the SRV set on its own. Each is checked against the
//!    rate the TTLs allow; the bench exits non-zero if drover asks more often.

#[path = "../tests/support/bind.rs"]
mod bind;
#[path = "../tests/support/fake_dns.rs"]
mod fake_dns;
#[path = "../examples/whoami/server.rs"]
mod whoami;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drover::config::StaticConfig;
use drover::Drover;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn main() {
    let quick = std::env::var_os("QUICK").is_some_and(|v| v == "1") || std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = runtime.block_on(async move {
        update_latency(if quick { 5 } else { 20 }).await;
        let window = Duration::from_secs(if quick { 6 } else { 20 });
        let with_glue = query_rate("100 services, SRV TTL 5 s with glue", window, true, 5, 5).await;
        let without_glue = query_rate("100 services, SRV TTL 10 s, target A/AAAA TTL 5 s, no glue", window, false, 10, 5).await;
        with_glue && without_glue
    });
    if !ok {
        std::process::exit(1);
    }
}

/// drover in-process on free loopback ports with `extra` static configuration.
fn start_drover(extra: &str) -> Drover {
    let text = format!("[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[api]\naddress = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n{extra}");
    let resolved = StaticConfig::parse(Path::new("bench.toml"), &text).unwrap_or_else(|e| panic!("bench static config: {e}"));
    Drover::start(resolved, 1).unwrap_or_else(|e| panic!("drover starts: {e}"))
}

async fn backend_of(c: &HttpClient, url: &str) -> Option<String> {
    let req = http::Request::get(url).body(Empty::new()).ok()?;
    let response = c.request(req).await.ok()?;
    let name = response.headers().get("x-whoami-name")?.to_str().ok()?.to_string();
    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    Some(name)
}

async fn update_latency(rounds: usize) {
    const TTL: u32 = 1;
    let (one, _one) = whoami::spawn("one").await;
    let (two, _two) = whoami::spawn("two").await;
    let records = format!(
        "one IN A 127.0.0.1\ntwo IN A 127.0.0.1\n_http._tcp.web IN SRV 1 1 {} one\n",
        one.port()
    );
    let bind = bind::Bind::start(&[bind::ZoneSpec {
        origin: "example.",
        ttl: TTL,
        negative_ttl: 1,
        records: &records,
    }])
    .await;
    let drover = start_drover(&format!(
        "[providers.dns]\nnameservers = [\"{}\"]\n[[providers.dns.services]]\nname = \"web\"\nsrv = \"_http._tcp.web.example.\"\nrule = \"PathPrefix(`/`)\"\n",
        bind.addr
    ));
    let url = format!("http://{}/", drover.entry_point("web").expect("entrypoint web"));
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let wait_for = |name: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let started = Instant::now();
            while backend_of(&c, &url).await.as_deref() != Some(name) {
                assert!(started.elapsed() < Duration::from_secs(10), "{name} never answered");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            started.elapsed()
        }
    };
    wait_for("one").await;
    let mut latencies = Vec::new();
    for round in 0..rounds {
        // Land the update at a different phase of the 1 s re-query clock each round.
        tokio::time::sleep(Duration::from_millis(100 + (round as u64 * 379) % 1000)).await;
        let (name, port) = if round % 2 == 0 { ("two", two.port()) } else { ("one", one.port()) };
        bind.update(
            "example.",
            &format!(
                "update delete _http._tcp.web.example. SRV\nupdate add _http._tcp.web.example. {TTL} IN SRV 1 1 {port} {name}.example."
            ),
        )
        .await;
        latencies.push(wait_for(name).await);
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "nsupdate → first routed request (SRV TTL {TTL} s, minTtl 1 s, {rounds} updates): p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies[0].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    drover.shutdown();
}

/// Runs drover over 100 SRV services and counts its queries over `window`; true when the rate
/// is within what the TTLs allow.
async fn query_rate(label: &str, window: Duration, glue: bool, srv_ttl: u32, address_ttl: u32) -> bool {
    const SERVICES: usize = 100;
    let fake = fake_dns::FakeDns::start().await;
    let mut services = String::new();
    fake.zone(|z| {
        z.glue = glue;
        for i in 0..SERVICES {
            z.records.push(fake_dns::srv(
                &format!("_http._tcp.s{i}.test."),
                srv_ttl,
                1,
                1,
                8080,
                &format!("t{i}.test."),
            ));
            z.records.push(fake_dns::address(&format!("t{i}.test."), address_ttl, LOCALHOST));
        }
    });
    for i in 0..SERVICES {
        services.push_str(&format!(
            "[[providers.dns.services]]\nname = \"s{i}\"\nsrv = \"_http._tcp.s{i}.test.\"\n"
        ));
    }
    let drover = start_drover(&format!("[providers.dns]\nnameservers = [\"{}\"]\n{services}", fake.addr));
    // Start-up: every service asks once; measure the steady state after it.
    let started = Instant::now();
    while drover.generation() < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "the DNS fragment never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = || (fake.queries_of("SRV"), fake.queries_of("A"), fake.queries_of("AAAA"));
    let before = count();
    let measured = Instant::now();
    tokio::time::sleep(window).await;
    let after = count();
    let secs = measured.elapsed().as_secs_f64();
    drover.shutdown();
    let rate = |a: u64, b: u64| (b - a) as f64 / secs;
    let (srv, a, aaaa) = (rate(before.0, after.0), rate(before.1, after.1), rate(before.2, after.2));
    let total = srv + a + aaaa;
    let srv_allowed = SERVICES as f64 / f64::from(srv_ttl);
    let address_allowed = if glue {
        0.0
    } else {
        2.0 * SERVICES as f64 / f64::from(address_ttl)
    };
    let allowed = srv_allowed + address_allowed;
    // A window edge can catch one extra round of every clock.
    let slack = (SERVICES as f64 * if glue { 1.0 } else { 3.0 }) / secs;
    let ok = total <= allowed + slack;
    println!(
        "resolver traffic, {label}: {total:.1} queries/s (SRV {srv:.1}, A {a:.1}, AAAA {aaaa:.1}) over {secs:.0} s; the TTLs allow {allowed:.1}/s: {}",
        if ok { "ok" } else { "EXCEEDED" }
    );
    ok
}
