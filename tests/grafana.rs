//! The Grafana dashboard in `examples/grafana/` queries only metrics drover exports: a renamed
//! metric must not leave a dashboard panel silently empty.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{client, get, service_toml, whoami, TestDrover};

const DASHBOARD: &str = include_str!("../examples/grafana/drover.json");

/// Every PromQL text of the dashboard: panel targets, template variables, annotations.
fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    ("query", serde_json::Value::String(q)) if q.contains('(') => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `drover_…` metric names a query uses (outside quoted label values).
fn metric_names(query: &str) -> Vec<String> {
    let unquoted: String = query.split('"').step_by(2).collect::<Vec<_>>().join(" ");
    let mut names = Vec::new();
    let mut rest = unquoted.as_str();
    while let Some(at) = rest.find("drover_") {
        let preceded = rest[..at].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !preceded {
            names.push(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    assert!(all.len() >= 20, "the dashboard's queries were not found: {all:?}");
    let mut used = BTreeSet::new();
    for query in &all {
        let names = metric_names(query);
        assert!(!names.is_empty(), "a query on no drover metric: {query}");
        used.extend(names);
    }

    // A drover that served a request exports a sample for every family.
    let (backend, _w) = whoami::spawn("a").await;
    let drover = TestDrover::start(&service_toml("app", "PathPrefix(`/`)", "app", &[(backend, 1)])).await;
    let c = client();
    assert_eq!(get(&c, &drover.url("/")).await.status, 200);
    let metrics_url = format!("http://{}/metrics", drover.drover.api());
    let text = support::wait_for_text(
        Duration::from_secs(5),
        || drover.drover.metrics_text(),
        |t| t.contains("drover_service_requests_total{"),
    )
    .await;
    assert!(text.contains("drover_service_requests_total{"), "{text}");
    let scraped = get(&c, &metrics_url).await;
    assert_eq!(scraped.status, 200);
    let exported: BTreeSet<String> = scraped
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = used.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not have:\n{exported:#?}"
    );

    // It covers what an operator looks at first.
    for topic in [
        "drover_entrypoint_requests_total",
        "drover_service_request_duration_seconds_bucket",
        "drover_service_server_up",
        "drover_service_server_ejections_total",
        "drover_service_retries_total",
        "drover_config_reloads_total",
        "drover_provider_errors_total",
    ] {
        assert!(used.contains(topic), "the dashboard has no panel on {topic}");
    }
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names("sum by (le) (rate(drover_a_bucket{x=\"drover_not\"}[$__rate_interval])) / drover_b"),
        ["drover_a_bucket", "drover_b"]
    );
    assert_eq!(metric_names("up{job=\"x_drover_y\"}"), Vec::<String>::new());
}
