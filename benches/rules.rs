//! `RouteTable::find` cost: host-indexed tables of 10, 1,000 and 10,000 routers (a hit in the
//! middle and a miss), and a table of 200 regex routers that the host index cannot narrow down.
//!
//! Run with `cargo bench --bench rules` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use drover::routing::{CompiledRule, RequestView, RouteEntry, RouteTable};
use http::{HeaderMap, Method};

fn entry(name: String, src: &str) -> RouteEntry<usize> {
    let rule = drover_providers::rule::parse(src).expect("bench rules are valid");
    RouteEntry {
        priority: rule.default_priority(),
        rule: CompiledRule::compile(&rule).expect("bench rules compile"),
        hosts: rule.required_hosts().map(Into::into),
        name: name.into(),
        payload: 0,
    }
}

/// `n` routers of the usual shape: one host each, plus a path condition.
fn host_table(n: usize) -> RouteTable<usize> {
    let entries = (0..n)
        .map(|i| {
            let src = format!("Host(`svc{i}.example.com`) && PathPrefix(`/`)");
            entry(format!("svc{i}"), &src)
        })
        .collect();
    RouteTable::build(entries)
}

/// 100 HostRegexp and 100 PathRegexp routers: none has a required host, so all are tried.
fn regex_table() -> RouteTable<usize> {
    let entries = (0..100)
        .flat_map(|i| {
            [
                entry(
                    format!("hostre{i}"),
                    &format!(r"HostRegexp(`^(www\.)?svc{i}\.example\.(com|net)$`)"),
                ),
                entry(format!("pathre{i}"), &format!(r"PathRegexp(`^/api/v{i}/users/[0-9]+(/[a-z]+)?$`)")),
            ]
        })
        .collect();
    RouteTable::build(entries)
}

struct Request {
    host: String,
    path: &'static str,
    method: Method,
    headers: HeaderMap,
}

impl Request {
    fn new(host: String, path: &'static str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::USER_AGENT, "bench/1.0".parse().expect("valid"));
        headers.insert(http::header::ACCEPT, "*/*".parse().expect("valid"));
        Request {
            host,
            path,
            method: Method::GET,
            headers,
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: &self.host,
            path: self.path,
            query: None,
            method: &self.method,
            headers: &self.headers,
            client_ip: IpAddr::from([192, 0, 2, 1]),
        }
    }
}

fn host_routers(c: &mut Criterion) {
    let mut group = c.benchmark_group("find/host");
    for n in [10, 1_000, 10_000] {
        let table = host_table(n);
        let hit = Request::new(format!("svc{}.example.com", n / 2), "/index.html");
        assert!(table.find(&hit.view()).is_some(), "the hit request must match");
        let miss = Request::new("unknown.example.org".to_owned(), "/index.html");
        assert!(table.find(&miss.view()).is_none(), "the miss request must not match");

        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, req| {
            let view = req.view();
            b.iter(|| table.find(black_box(&view)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, req| {
            let view = req.view();
            b.iter(|| table.find(black_box(&view)).is_some())
        });
    }
    group.finish();
}

fn regex_routers(c: &mut Criterion) {
    let table = regex_table();
    let mut group = c.benchmark_group("find/regex200");
    let cases = [
        ("host_hit", Request::new("www.svc50.example.net".to_owned(), "/")),
        ("path_hit", Request::new("x.org".to_owned(), "/api/v50/users/42/posts")),
        ("miss", Request::new("x.org".to_owned(), "/static/app.js")),
    ];
    for (label, req) in &cases {
        let should_match = *label != "miss";
        assert_eq!(table.find(&req.view()).is_some(), should_match, "{label}");
        group.bench_function(*label, |b| {
            let view = req.view();
            b.iter(|| table.find(black_box(&view)).is_some())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = host_routers, regex_routers
}
criterion_main!(benches);
