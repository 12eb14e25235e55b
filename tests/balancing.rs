//! Routing and smooth weighted round robin through a real drover to real backends.

mod support;

use std::collections::HashMap;

use support::{client, get, send, servers_toml, service_toml, whoami, TestDrover};

async fn count_backends(drover: &TestDrover, path: &str, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let a = get(&c, &drover.url(path)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        *counts.entry(a.backend().to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_weights_split_exactly_and_2_1_1_splits_150_75_75() {
    let (a, _ha) = whoami::spawn("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let (c, _hc) = whoami::spawn("c").await;
    // One worker: each worker keeps its own place in the cycle (the shares hold per worker and
    // so overall, but 300 requests spread over two workers' cycles need not split exactly).
    let drover = TestDrover::start_one_worker(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1), (b, 1), (c, 1)])).await;
    let counts = count_backends(&drover, "/", 300).await;
    assert_eq!(counts, HashMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)]));

    drover.write_routes(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 2), (b, 1), (c, 1)]));
    drover.wait_for_generation(2).await;
    let counts = count_backends(&drover, "/", 300).await;
    assert_eq!(counts, HashMap::from([("a".into(), 150), ("b".into(), 75), ("c".into(), 75)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_path_header_and_method_each_pick_the_right_service() {
    let (host_b, _h1) = whoami::spawn("by-host").await;
    let (path_b, _h2) = whoami::spawn("by-path").await;
    let (header_b, _h3) = whoami::spawn("by-header").await;
    let (method_b, _h4) = whoami::spawn("by-method").await;
    let (logic_b, _h5) = whoami::spawn("by-logic").await;
    let routes = format!(
        "{}{}{}{}{}",
        service_toml("host", "Host(`a.local`)", "host", &[(host_b, 1)]),
        service_toml("path", "PathPrefix(`/api`)", "path", &[(path_b, 1)]),
        service_toml("header", "Header(`X-Tenant`, `blue`)", "header", &[(header_b, 1)]),
        service_toml("method", "Method(`DELETE`)", "method", &[(method_b, 1)]),
        service_toml(
            "logic",
            "!PathPrefix(`/api`) && (Query(`v`, `2`) || Host(`b.local`))",
            "logic",
            &[(logic_b, 1)]
        ),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let url = drover.url("/x");
    // (method, url, headers, backend expected or None for 404)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("GET", url.clone(), vec![("host", "a.local")], Some("by-host")),
        ("GET", url.clone(), vec![("host", "A.LOCAL.:8080")], Some("by-host")),
        ("GET", drover.url("/api/users"), vec![], Some("by-path")),
        ("GET", url.clone(), vec![("x-tenant", "blue")], Some("by-header")),
        ("GET", url.clone(), vec![("x-tenant", "green")], None),
        ("DELETE", url.clone(), vec![], Some("by-method")),
        ("GET", drover.url("/x?v=2"), vec![], Some("by-logic")),
        ("GET", url.clone(), vec![("host", "b.local")], Some("by-logic")),
        ("GET", drover.url("/api?v=2"), vec![("host", "b.local")], Some("by-path")),
        ("GET", drover.url("/x?v=3"), vec![], None),
    ];
    for (method, url, headers, expected) in cases {
        let a = send(&c, method, &url, &headers).await.expect("request");
        match expected {
            Some(name) => assert_eq!((a.status, a.backend()), (200, name), "{method} {url} {headers:?}"),
            None => assert_eq!(a.status, 404, "{method} {url} {headers:?} should match nothing: {}", a.body),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_host_routers_still_route_correctly() {
    let (a, _ha) = whoami::spawn("even").await;
    let (b, _hb) = whoami::spawn("odd").await;
    let mut routes = String::new();
    for i in 0..10_000 {
        let service = if i % 2 == 0 { "even" } else { "odd" };
        routes.push_str(&format!(
            "[http.routers.h{i}]\nrule = \"Host(`host{i}.example.com`)\"\nservice = \"{service}\"\n"
        ));
    }
    routes.push_str(&servers_toml("even", &[(a, 1)]));
    routes.push_str(&servers_toml("odd", &[(b, 1)]));
    let drover = TestDrover::start(&routes).await;
    let c = client();
    for i in [0, 1, 4_999, 5_000, 9_998, 9_999] {
        let host = format!("host{i}.example.com");
        let a = send(&c, "GET", &drover.url("/"), &[("host", &host)]).await.expect("request");
        assert_eq!((a.status, a.backend()), (200, if i % 2 == 0 { "even" } else { "odd" }), "{host}");
    }
    let miss = send(&c, "GET", &drover.url("/"), &[("host", "host10000.example.com")])
        .await
        .expect("request");
    assert_eq!(miss.status, 404);
}
