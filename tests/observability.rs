//! Metrics and access logs: what an operator reads must match what happened.

mod support;

use std::time::Duration;

use support::{client, get, send, service_toml, whoami, TestDrover};

/// Parses an exposition with the reference Python parser (prometheus_client's OpenMetrics
/// parser) and returns `name{labels} value` lines, sorted.
fn parse_with_prometheus_client(text: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out.append(f"{s.name}{{{labels}}} {s.value}")
print("\n".join(sorted(out)))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/setup.sh installs prometheus_client)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition did not parse (`tests/setup.sh` installs prometheus_client): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn sample(samples: &[String], prefix: &str) -> f64 {
    let matching: Vec<&String> = samples.iter().filter(|s| s.starts_with(prefix)).collect();
    assert_eq!(matching.len(), 1, "exactly one sample starting with {prefix}: {matching:?}");
    matching[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_was_sent() {
    let (a, _ha) = whoami::spawn("a").await;
    let (dead, _) = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (l.local_addr().unwrap(), ())
    };
    let routes = format!(
        "{}{}",
        service_toml("app", "PathPrefix(`/app`)", "app", &[(a, 1)]),
        service_toml("gone", "PathPrefix(`/gone`)", "gone", &[(dead, 1)]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    for _ in 0..30 {
        assert_eq!(get(&c, &drover.url("/app")).await.status, 200);
    }
    for _ in 0..4 {
        assert_eq!(send(&c, "POST", &drover.url("/app/post"), &[]).await.unwrap().status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get(&c, &drover.url("/nowhere")).await.status, 404);
    }
    for _ in 0..3 {
        assert_eq!(get(&c, &drover.url("/gone")).await.status, 502);
    }
    // Completions are recorded when response bodies are dropped, just after the client got them.
    let text = support::wait_for_text(
        Duration::from_secs(2),
        || drover.drover.metrics_text(),
        |t| t.contains("code=\"502\""),
    )
    .await;
    let samples = parse_with_prometheus_client(&text);
    let ep = |code: &str, method: &str| {
        format!("drover_entrypoint_requests_total{{code=\"{code}\",entrypoint=\"web\",method=\"{method}\",protocol=\"http\"}}")
    };
    assert_eq!(sample(&samples, &ep("200", "GET")), 30.0);
    assert_eq!(sample(&samples, &ep("200", "POST")), 4.0);
    assert_eq!(sample(&samples, &ep("404", "GET")), 5.0);
    assert_eq!(sample(&samples, &ep("502", "GET")), 3.0);
    assert_eq!(
        sample(
            &samples,
            "drover_router_requests_total{code=\"200\",method=\"GET\",protocol=\"http\",router=\"app@file\",service=\"app@file\"}"
        ),
        30.0
    );
    assert_eq!(
        sample(
            &samples,
            "drover_service_requests_total{code=\"502\",method=\"GET\",protocol=\"http\",service=\"gone@file\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "drover_entrypoint_request_duration_seconds_count{code=\"200\",entrypoint=\"web\",method=\"GET\",protocol=\"http\"}"
        ),
        30.0
    );
    assert_eq!(
        sample(
            &samples,
            &format!("drover_service_server_up{{service=\"app@file\",url=\"http://{a}\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            &format!("drover_service_server_up{{service=\"gone@file\",url=\"http://{dead}\"}}")
        ),
        0.0,
        "3 refusals ejected it"
    );
    assert_eq!(
        sample(
            &samples,
            &format!("drover_service_server_ejections_total{{service=\"gone@file\",url=\"http://{dead}\"}}")
        ),
        1.0
    );
    let opened = sample(&samples, &format!("drover_upstream_connections_opened_total{{server=\"{a}\"}}"));
    let reused = sample(&samples, &format!("drover_upstream_connections_reused_total{{server=\"{a}\"}}"));
    assert!(
        opened >= 1.0 && opened + reused >= 34.0 && reused >= 30.0,
        "keep-alive reuse: opened {opened}, reused {reused}"
    );
    assert!(sample(&samples, "drover_config_reloads_total") >= 1.0);
    assert!(
        sample(&samples, "drover_open_connections{entrypoint=\"web\",protocol=\"TCP\"}") >= 1.0,
        "the client's keep-alive connection is open"
    );
    assert!(samples
        .iter()
        .any(|s| s.starts_with("drover_entrypoint_responses_bytes_total{entrypoint=\"web\"}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_line_per_request_in_both_formats() {
    for format in ["common", "json"] {
        let (a, _ha) = whoami::spawn("a").await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let extra = format!("[accessLog]\nfilePath = \"{}\"\nformat = \"{format}\"\n", log.display());
        let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &extra).await;
        let c = client();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let c = c.clone();
            let url = drover.url(&format!("/client/{i}"));
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    assert_eq!(
                        send(
                            &c,
                            "GET",
                            &url,
                            &[("authorization", "Bearer secret-token"), ("user-agent", "drover-test")]
                        )
                        .await
                        .unwrap()
                        .status,
                        200
                    );
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let lines = support::wait_for_text(
            Duration::from_secs(5),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            |t| t.lines().count() >= 400,
        )
        .await;
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 400, "{format}: one line per request");
        assert!(
            !lines.iter().any(|l| l.contains("secret-token")),
            "{format}: no Authorization in the log"
        );
        match format {
            "common" => assert!(
                lines[0].starts_with("127.0.0.1 - - [")
                    && lines[0].contains("\"GET /client/")
                    && lines[0].contains(" 200 ")
                    && lines[0].contains("\"r@file\""),
                "{}",
                lines[0]
            ),
            _ => {
                let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
                assert_eq!(
                    (
                        v["DownstreamStatus"].as_u64(),
                        v["RouterName"].as_str(),
                        v["request_User-Agent"].as_str()
                    ),
                    (Some(200), Some("r@file"), Some("drover-test"))
                );
                assert_eq!(v["ServiceURL"], format!("http://{a}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_nobody_reads_drops_lines_instead_of_blocking_traffic() {
    let (a, _ha) = whoami::spawn("a").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.pipe");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // Keep a reader open that never reads: the pipe's buffer fills and writes block.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblocking()
        .open(&fifo)
        .unwrap();
    let extra = format!(
        "[accessLog]\nfilePath = \"{}\"\nformat = \"json\"\nbufferingSize = 64\n",
        fifo.display()
    );
    let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &extra).await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        let url = drover.url("/x?pad=".to_string().as_str()) + &"p".repeat(200);
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                assert_eq!(send(&c, "GET", &url, &[]).await.unwrap().status, 200);
            }
        }));
    }
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    // If a slow sink could block requests, 4,000 requests would never finish.
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("traffic kept flowing");
    let text = drover.drover.metrics_text();
    let dropped: f64 = text
        .lines()
        .find(|l| l.starts_with("drover_access_log_dropped_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        dropped > 1_000.0,
        "lines were dropped and counted, not queued without bound: {dropped}"
    );
    drop(reader);
}

trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// Router and entrypoint `observability` switches: a router can leave the access log, the
/// metrics or both; an entrypoint sets the default for its routers (and its 404s), which a
/// router's own switch overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_switches_leave_out_lines_and_metrics_per_router_and_entrypoint() {
    let (a, _ha) = whoami::spawn("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let extra = format!(
        "[entryPoints.quiet]\naddress = \"127.0.0.1:0\"\n[entryPoints.quiet.observability]\naccessLogs = false\nmetrics = false\n\
         [accessLog]\nfilePath = \"{}\"\nformat = \"json\"\n",
        log.display()
    );
    let routes = format!(
        "{}{}{}\
         [http.routers.hush.observability]\naccessLogs = false\nmetrics = false\n\
         [http.routers.partial.observability]\nmetrics = false\n\
         [http.routers.back]\nrule = \"PathPrefix(`/back`)\"\nservice = \"loud\"\nentryPoints = [\"quiet\"]\n\
         [http.routers.back.observability]\naccessLogs = true\n",
        service_toml("loud", "PathPrefix(`/loud`)", "loud", &[(a, 1)]),
        service_toml("hush", "PathPrefix(`/hush`)", "hush", &[(a, 1)]),
        service_toml("partial", "PathPrefix(`/partial`)", "partial", &[(a, 1)]),
    );
    let drover = TestDrover::start_with(&routes, &extra).await;
    let quiet = drover.drover.entry_point("quiet").expect("entrypoint quiet");
    let c = client();
    let mut expect_lines = 0;
    for (url, times, status, logged) in [
        (format!("http://{quiet}/loud"), 6, 200, false),
        (format!("http://{quiet}/nowhere"), 2, 404, false),
        (format!("http://{quiet}/back"), 7, 200, true),
        (drover.url("/hush"), 4, 200, false),
        (drover.url("/partial"), 5, 200, true),
        (drover.url("/nowhere"), 1, 404, true),
        (drover.url("/loud"), 3, 200, true),
    ] {
        for _ in 0..times {
            assert_eq!(get(&c, &url).await.status, status, "{url}");
        }
        if logged {
            expect_lines += times;
        }
    }
    let text = support::wait_for_text(
        Duration::from_secs(5),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |t| t.lines().count() >= expect_lines,
    )
    .await;
    let mut by_router = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = format!(
            "{}@{}",
            v["RouterName"].as_str().unwrap_or("none"),
            v["EntryPointName"].as_str().unwrap()
        );
        *by_router.entry(key).or_insert(0) += 1;
    }
    let want: std::collections::BTreeMap<String, i32> = [
        ("back@file@quiet", 7),
        ("partial@file@web", 5),
        ("none@web", 1),
        ("loud@file@web", 3),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(by_router, want, "access-log lines by router and entrypoint");

    let text = support::wait_for_text(
        Duration::from_secs(2),
        || drover.drover.metrics_text(),
        |t| t.contains("router=\"loud@file\""),
    )
    .await;
    let samples = parse_with_prometheus_client(&text);
    let requests: Vec<(&str, f64)> = samples
        .iter()
        .filter(|s| s.starts_with("drover_entrypoint_requests_total") || s.starts_with("drover_router_requests_total"))
        .map(|s| {
            let (name, value) = s.rsplit_once(' ').unwrap();
            (name, value.parse().unwrap())
        })
        .collect();
    assert_eq!(
        requests,
        vec![
            (
                "drover_entrypoint_requests_total{code=\"200\",entrypoint=\"web\",method=\"GET\",protocol=\"http\"}",
                3.0
            ),
            (
                "drover_entrypoint_requests_total{code=\"404\",entrypoint=\"web\",method=\"GET\",protocol=\"http\"}",
                1.0
            ),
            (
                "drover_router_requests_total{code=\"200\",method=\"GET\",protocol=\"http\",router=\"loud@file\",service=\"loud@file\"}",
                3.0
            ),
        ],
        "only requests whose router (or entrypoint) keeps metrics are counted"
    );
}
