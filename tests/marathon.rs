//! The Marathon provider against the contract-test server (`support::marathon`): apps and tasks
//! routed to real whoami backends, events applied, the stream dropped and resumed, a standby's
//! redirect followed, credentials refused, diagnostics on the admin API, all under load.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::marathon::{self, Marathon};
use support::{client, send, whoami, HttpClient, TestDrover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A file route that never matches the tests' requests, so drover reaches generation 1 even
/// when Marathon sends nothing (wrong credentials).
const FILE_ROUTES: &str =
    "[http.routers.file]\nrule = \"Path(`/__file`)\"\nservice = \"file\"\n[[http.services.file.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9\"\n";

fn section(endpoint: &str, extra: &str) -> String {
    format!("[providers.marathon]\nendpoint = \"{endpoint}\"\neventStreamIdleTimeout = \"2s\"\n{extra}")
}

fn shop_labels() -> Value {
    json!({"drover.enable": "true", "drover.http.routers.shop.rule": "Host(`shop.test`)"})
}

/// Waits until `service` has exactly `expected` as servers; returns how long it took.
async fn wait_servers(c: &HttpClient, drover: &TestDrover, service: &str, expected: &[SocketAddr]) -> Duration {
    let want: BTreeSet<String> = expected.iter().map(|a| format!("http://{a}")).collect();
    let start = Instant::now();
    loop {
        let seen = support::servers_in_force(c, drover, service).await;
        if seen == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{service}: expected {want:?}, still {seen:?}; provider: {:?}",
            drover
                .drover
                .provider_statuses()
                .iter()
                .find(|s| s.name == "marathon")
                .map(|s| (&s.state, &s.last_error))
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    support::wait_until(Duration::from_secs(5), &mut done)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"));
}

fn marathon_status(drover: &TestDrover) -> drover_providers::ProviderStatus {
    drover
        .drover
        .provider_statuses()
        .into_iter()
        .find(|s| s.name == "marathon")
        .expect("the marathon provider is registered")
}

/// Clients sending `GET /` to `shop.test` in a loop until stopped; counts answers by backend.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        match send(&c, "GET", &url, &[("host", "shop.test")]).await {
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
                })
            })
            .collect();
        Self { stop, ok, failed, tasks }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load client");
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_follow_events_and_reconnects_under_load() {
    let mut backends = Vec::new();
    let mut handles = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (addr, h) = whoami::spawn(name).await;
        backends.push(addr);
        handles.push(Some(h));
    }
    let cluster = Marathon::start().await;
    cluster.set_heartbeat(Duration::from_millis(300));
    let tasks: Vec<Value> = (0..3).map(|i| marathon::task("/shop/web", i, backends[i])).collect();
    let task_id = |i: usize| tasks[i]["id"].as_str().expect("task id").to_string();
    cluster.put_app(marathon::app("/shop/web", shop_labels(), tasks.clone()));
    let drover = TestDrover::start_with(FILE_ROUTES, &section(&cluster.leader_url(), "")).await;
    let c = client();
    wait_servers(&c, &drover, "shop-web@marathon", &backends[..3]).await;

    // Three tasks, balanced.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let answer = send(&c, "GET", &drover.url("/"), &[("host", "shop.test")]).await.expect("request");
        assert_eq!(answer.status, 200);
        *seen.entry(answer.backend().to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "every task answers: {seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "balanced: {seen:?}");

    let load = Load::start(drover.url("/"), 4);

    // A task killed: out within 200 ms of the event; its process stops once it is out.
    let killed_at = Instant::now();
    cluster.set_task_state("/shop/web", &task_id(1), "TASK_KILLED");
    wait_servers(&c, &drover, "shop-web@marathon", &[backends[0], backends[2]]).await;
    let kill_delay = killed_at.elapsed();
    if let Some(h) = handles[1].take() {
        h.stop().await;
    }

    // Marathon's health check fails: out.
    let unhealthy_at = Instant::now();
    cluster.set_health("/shop/web", &task_id(2), false);
    wait_servers(&c, &drover, "shop-web@marathon", &[backends[0]]).await;
    let health_delay = unhealthy_at.elapsed();

    // A new task: in.
    let new_task = marathon::task("/shop/web", 3, backends[3]);
    let added_at = Instant::now();
    cluster.add_task("/shop/web", new_task.clone());
    wait_servers(&c, &drover, "shop-web@marathon", &[backends[0], backends[3]]).await;
    let add_delay = added_at.elapsed();

    // Quiet for longer than the idle timeout (2 s): heartbeats (every 300 ms) keep the stream up.
    // Nine heartbeats on the stream span at least 2.4 s of quiet.
    let (events_before, beats) = (cluster.count("/v2/events"), cluster.heartbeats());
    wait_for("nine heartbeats", || cluster.heartbeats() >= beats + 9).await;
    assert_eq!(cluster.count("/v2/events"), events_before, "no reconnect while heartbeats arrive");
    assert_eq!(cluster.streams(), 1, "the stream is still attached");

    // The stream drops and a change happens while nobody listens: the reconnect re-lists.
    let lists_before = cluster.count("/v2/apps?");
    cluster.mutate_silently(|apps| {
        let tasks = apps.get_mut("/shop/web").and_then(|a| a["tasks"].as_array_mut()).expect("tasks");
        for t in tasks.iter_mut().filter(|t| t["id"] == task_id(2).as_str()) {
            t["healthCheckResults"][0]["alive"] = true.into();
        }
    });
    cluster.drop_streams();
    let recovered = wait_servers(&c, &drover, "shop-web@marathon", &[backends[0], backends[2], backends[3]]).await;
    assert!(cluster.count("/v2/apps?") > lists_before, "a full list after the reconnect");
    wait_for("the stream to be re-attached", || cluster.streams() == 1).await;

    // ... and events flow again on the new stream (a task going TASK_KILLING leaves at once).
    cluster.set_task_state("/shop/web", new_task["id"].as_str().expect("id"), "TASK_KILLING");
    wait_servers(&c, &drover, "shop-web@marathon", &[backends[0], backends[2]]).await;

    let (ok, failed) = load.finish().await;
    eprintln!(
        "kill→out {kill_delay:?}, unhealthy→out {health_delay:?}, new→in {add_delay:?}, drop→recovered {recovered:?}; {ok} requests, {failed} failed"
    );
    assert!(ok > 200, "the load kept going ({ok})");
    assert_eq!(failed, 0, "no request may fail while tasks come and go");
    assert!(
        kill_delay <= Duration::from_millis(200),
        "a killed task left routing after {kill_delay:?}"
    );
    let status = marathon_status(&drover);
    assert_eq!(status.last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_redirects_the_event_stream_to_the_leader() {
    let (a, _ha) = whoami::spawn("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let cluster = Marathon::start().await;
    let tasks = vec![marathon::task("/shop/web", 0, a), marathon::task("/shop/web", 1, b)];
    cluster.put_app(marathon::app("/shop/web", shop_labels(), tasks.clone()));
    let drover = TestDrover::start_with(FILE_ROUTES, &section(&cluster.standby_url(), "")).await;
    let c = client();
    wait_servers(&c, &drover, "shop-web@marathon", &[a, b]).await;
    wait_for("the stream on the leader", || cluster.streams() == 1).await;
    let log = cluster.log();
    let redirect = log
        .iter()
        .find(|l| l.instance == "standby" && l.target.starts_with("/v2/events"))
        .expect("asked the standby");
    assert_eq!(redirect.status, 302);
    let followed = log
        .iter()
        .find(|l| l.instance == "leader" && l.target.starts_with("/v2/events"))
        .expect("followed to the leader");
    assert_eq!(followed.status, 200);
    assert_eq!(followed.target, redirect.target, "the query (event_type filter) was kept");
    assert!(followed.target.contains("event_type=status_update_event"));
    assert!(
        log.iter().any(|l| l.instance == "standby" && l.target.starts_with("/v2/apps?")),
        "the list came from the standby"
    );

    cluster.set_task_state("/shop/web", tasks[1]["id"].as_str().expect("id"), "TASK_KILLED");
    wait_servers(&c, &drover, "shop-web@marathon", &[a]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_cluster_is_verified_with_the_configured_ca_and_followed() {
    let (a, _ha) = whoami::spawn("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let cluster = Marathon::start_tls().await;
    assert!(cluster.standby_url().starts_with("https://"), "{}", cluster.standby_url());
    let tasks = [marathon::task("/shop/web", 0, a), marathon::task("/shop/web", 1, b)];
    cluster.put_app(marathon::app("/shop/web", shop_labels(), vec![tasks[0].clone()]));
    let tls = format!("[providers.marathon.tls]\nca = \"{}\"\n", marathon::TEST_CA);
    let drover = TestDrover::start_with(FILE_ROUTES, &section(&cluster.standby_url(), &tls)).await;
    let c = client();
    wait_servers(&c, &drover, "shop-web@marathon", &[a]).await;
    // The standby's redirect to the leader stays on https, and the stream is followed there.
    wait_for("the stream on the leader", || cluster.streams() == 1).await;
    assert!(cluster
        .log()
        .iter()
        .any(|l| l.instance == "leader" && l.target.starts_with("/v2/events") && l.status == 200));
    cluster.add_task("/shop/web", tasks[1].clone());
    wait_servers(&c, &drover, "shop-web@marathon", &[a, b]).await;
    let answer = send(&c, "GET", &drover.url("/"), &[("host", "shop.test")]).await.expect("request");
    assert_eq!(answer.status, 200);
    assert_eq!(marathon_status(&drover).last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_cluster_signed_by_another_ca_is_refused_and_reported() {
    let (a, _ha) = whoami::spawn("a").await;
    let cluster = Marathon::start_tls().await;
    cluster.put_app(marathon::app("/shop/web", shop_labels(), vec![marathon::task("/shop/web", 0, a)]));
    let tls = format!("[providers.marathon.tls]\nca = \"{}\"\n", marathon::OTHER_CA);
    let drover = TestDrover::start_with(FILE_ROUTES, &section(&cluster.leader_url(), &tls)).await;
    wait_for("the refusal to be reported", || marathon_status(&drover).last_error.is_some()).await;
    let error = marathon_status(&drover).last_error.expect("an error");
    assert!(
        error.contains(&cluster.leader_url()) && error.contains("invalid peer certificate"),
        "{error}"
    );
    assert!(error.contains("check providers.marathon.tls.ca"), "{error}");
    assert!(
        support::servers_in_force(&client(), &drover, "shop-web@marathon").await.is_empty(),
        "nothing is routed from an unverified Marathon"
    );
    assert!(cluster.log().is_empty(), "no request got past the handshake: {:?}", cluster.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_endpoint_takes_over_when_the_leader_dies() {
    let (a, _ha) = whoami::spawn("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let mut cluster = Marathon::start().await;
    cluster.put_app(marathon::app("/shop/web", shop_labels(), vec![marathon::task("/shop/web", 0, a)]));
    let endpoints = format!("{}, {}", cluster.leader_url(), cluster.standby_url());
    let drover = TestDrover::start_with(FILE_ROUTES, &section(&endpoints, "")).await;
    let c = client();
    wait_servers(&c, &drover, "shop-web@marathon", &[a]).await;
    let load = Load::start(drover.url("/"), 2);
    cluster.fail_over();
    // Routes stay while the provider reconnects to the new leader, which it then follows.
    wait_for("the stream on the new leader", || cluster.streams() == 1).await;
    cluster.add_task("/shop/web", marathon::task("/shop/web", 1, b));
    wait_servers(&c, &drover, "shop-web@marathon", &[a, b]).await;
    let (ok, failed) = load.finish().await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "the leader's death does not touch the data path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_last_routes_is_reported_and_recovery_clears_it() {
    let (a, _ha) = whoami::spawn("a").await;
    let mut cluster = Marathon::start().await;
    cluster.put_app(marathon::app("/shop/web", shop_labels(), vec![marathon::task("/shop/web", 0, a)]));
    let endpoints = format!("{},{}", cluster.leader_url(), cluster.standby_url());
    let drover = TestDrover::start_with(FILE_ROUTES, &section(&endpoints, "")).await;
    let c = client();
    wait_servers(&c, &drover, "shop-web@marathon", &[a]).await;
    let load = Load::start(drover.url("/"), 2);

    // No leader: the leader is gone and the standby answers 502.
    cluster.kill_leader();
    wait_for("the outage to be reported", || marathon_status(&drover).last_error.is_some()).await;
    let error = marathon_status(&drover).last_error.expect("an error");
    assert!(error.contains("no Marathon endpoint answered"), "{error}");
    assert!(
        error.contains("502") && error.contains("Could not determine the current leader"),
        "{error}"
    );
    assert_eq!(
        support::servers_in_force(&c, &drover, "shop-web@marathon").await.len(),
        1,
        "the last good routes stay"
    );

    // A new leader: the provider reconnects, re-lists (nothing changed) and the error clears.
    cluster.promote_standby();
    wait_for("the error to clear", || marathon_status(&drover).last_error.is_none()).await;
    assert_eq!(marathon_status(&drover).state, drover_providers::provider::ProviderState::Ok);
    wait_for("the stream on the new leader", || cluster.streams() == 1).await;
    let (ok, failed) = load.finish().await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "the outage does not touch the data path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_basic_token_and_a_clear_error_when_refused() {
    let (a, _ha) = whoami::spawn("a").await;
    let cluster = Marathon::start().await;
    cluster.put_app(marathon::app("/shop/web", shop_labels(), vec![marathon::task("/shop/web", 0, a)]));
    cluster.require_basic("drover", "s3cret");

    let wrong = TestDrover::start_with(
        FILE_ROUTES,
        &section(
            &cluster.leader_url(),
            "[providers.marathon.basic]\nhttpBasicAuthUser = \"drover\"\nhttpBasicPassword = \"wrong-pw\"\n",
        ),
    )
    .await;
    wait_for("the credentials error", || marathon_status(&wrong).last_error.is_some()).await;
    let error = marathon_status(&wrong).last_error.expect("an error");
    assert!(error.contains("401"), "{error}");
    assert!(
        error.contains("credentials were refused") && error.contains("httpBasicPassword"),
        "{error}"
    );
    assert!(!error.contains("wrong-pw"), "no secret in the error: {error}");
    let providers = support::get(&client(), &format!("http://{}/api/providers/marathon", wrong.drover.api()))
        .await
        .body;
    assert!(
        providers.contains("\"state\":\"error\"") && !providers.contains("wrong-pw"),
        "{providers}"
    );
    let c = client();
    assert!(support::servers_in_force(&c, &wrong, "shop-web@marathon").await.is_empty());
    // Once Marathon accepts that password, the provider's retries get through.
    cluster.require_basic("drover", "wrong-pw");
    wait_servers(&c, &wrong, "shop-web@marathon", &[a]).await;
    assert_eq!(marathon_status(&wrong).last_error, None);
    cluster.require_basic("drover", "s3cret");

    let right = TestDrover::start_with(
        FILE_ROUTES,
        &section(
            &cluster.leader_url(),
            "[providers.marathon.basic]\nhttpBasicAuthUser = \"drover\"\nhttpBasicPassword = \"s3cret\"\n",
        ),
    )
    .await;
    wait_servers(&c, &right, "shop-web@marathon", &[a]).await;

    let dcos = Marathon::start().await;
    dcos.require_token("eyJhbGciOi.dcos");
    dcos.put_app(marathon::app("/shop/web", shop_labels(), vec![marathon::task("/shop/web", 0, a)]));
    let token = TestDrover::start_with(FILE_ROUTES, &section(&dcos.leader_url(), "dcosToken = \"eyJhbGciOi.dcos\"\n")).await;
    wait_servers(&c, &token, "shop-web@marathon", &[a]).await;
    wait_for("the token-authenticated stream", || dcos.streams() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_list_every_app_and_task_with_its_decision() {
    let cluster = Marathon::start().await;
    let m1: Value = serde_json::from_str(marathon::M1_APPS).expect("M1 fixture");
    cluster.mutate_silently(|apps| {
        for app in m1["apps"].as_array().expect("apps") {
            apps.insert(app["id"].as_str().expect("id").to_string(), app.clone());
        }
        let legacy: Value = serde_json::from_str(marathon::LEGACY_1_4_APP).expect("legacy fixture");
        apps.insert("/legacy/web".into(), legacy);
        apps.insert("/hidden".into(), marathon::app("/hidden", json!({}), vec![]));
    });
    let drover = TestDrover::start_with(
        FILE_ROUTES,
        &section(&cluster.leader_url(), "prefix = \"traefik\"\nrespectReadinessChecks = true\n"),
    )
    .await;
    wait_for("the marathon items", || !marathon_status(&drover).items.is_empty()).await;
    let body = support::get(&client(), &format!("http://{}/api/providers/marathon", drover.drover.api()))
        .await
        .body;
    let status: Value = serde_json::from_str(&body).expect("provider status JSON");
    let items = status["items"].as_array().expect("items");
    let find = |kind: &str, name: &str, id: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind && i["name"] == name && (id.is_empty() || i["id"] == id))
            .unwrap_or_else(|| panic!("no {kind} {name} {id} in {body}"))
    };
    let reasons = |item: &Value| item["reasons"].to_string();

    let web_ok = find("task", "/shop/web", "shop_web.instance-1b2c._app.1");
    assert_eq!(web_ok["decision"], "routed");
    assert_eq!(web_ok["addresses"], json!(["agent-1.example.internal:31001"]));
    assert_eq!(web_ok["routers"], json!(["web@marathon"]));
    let web_sick = find("task", "/shop/web", "shop_web.instance-3d4e._app.1");
    assert_eq!(web_sick["decision"], "skipped");
    assert!(reasons(web_sick).contains("alive:false"), "{web_sick}");
    assert!(reasons(find("app", "/shop/web", "")).contains("1 of 2 tasks routed"));

    assert_eq!(
        find("task", "/shop/api", "shop_api.instance-5f6a._app.1")["addresses"],
        json!(["agent-3.example.internal:31045"])
    );
    assert!(reasons(find("task", "/shop/api", "shop_api.instance-7b8c._app.1")).contains("TASK_STAGING"));

    let search = find("task", "/shop/search", "shop_search.instance-9d0e._app.1");
    assert_eq!(search["decision"], "skipped");
    assert!(reasons(search).contains("readiness check `readiness` is not ready"), "{search}");
    assert_eq!(find("app", "/shop/search", "")["decision"], "skipped");

    assert_eq!(
        find("task", "/legacy/web", "legacy_web.1a2b3c")["addresses"],
        json!(["agent-7.example.internal:31777"])
    );
    assert!(reasons(find("app", "/hidden", "")).contains("not exposed"));

    let raw = support::get(&client(), &format!("http://{}/api/rawdata", drover.drover.api()))
        .await
        .body;
    assert!(
        raw.contains("\"web@marathon\"") && raw.contains("Host(`shop.example.com`)"),
        "{raw}"
    );
}

/// Reads from a raw connection until `done` holds for what arrived (or 5 s pass).
async fn read_until(stream: &mut tokio::net::TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut text = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(&String::from_utf8_lossy(&text)) && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => text.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

async fn raw_get(base: &str, target: &str, headers: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the contract server");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_server_behaves_as_documented() {
    let cluster = Marathon::start().await;
    cluster.set_heartbeat(Duration::from_millis(100));

    // 405 unless an Accept value is exactly text/event-stream.
    let mut s = raw_get(&cluster.leader_url(), "/v2/events", "Accept: text/event-stream, */*\r\n").await;
    let answer = read_until(&mut s, |t| t.contains("</html>")).await;
    assert!(
        answer.starts_with("HTTP/1.1 405") && answer.contains("HTTP method GET is not supported by this URL"),
        "{answer}"
    );

    // 200, close-delimited, CRLF framing, event_stream_attached first, heartbeats, the filter.
    let mut s = raw_get(
        &cluster.leader_url(),
        "/v2/events?event_type=app_terminated_event",
        "Accept: text/event-stream\r\n",
    )
    .await;
    let head = read_until(&mut s, |t| t.contains("\r\n\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/event-stream;charset=UTF-8\r\n") && head.contains("Connection: close\r\n"),
        "{head}"
    );
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding") && !head.to_ascii_lowercase().contains("content-length"));
    let mut unfiltered = raw_get(&cluster.leader_url(), "/v2/events", "Accept: text/event-stream\r\n").await;
    let attached = read_until(&mut unfiltered, |t| t.contains("}\r\n\r\n")).await;
    let body = attached.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert!(body.starts_with("event: event_stream_attached\r\ndata: {"), "{attached}");
    wait_for("both streams", || cluster.streams() == 2).await;
    cluster.emit("status_update_event", json!({"appId": "/x", "taskStatus": "TASK_RUNNING"}));
    cluster.remove_app("/gone");
    let events = read_until(&mut s, |t| t.contains("app_terminated_event\",") && t.ends_with("\r\n\r\n\r\n")).await;
    assert!(!events.contains("status_update_event"), "filtered out: {events}");
    assert!(
        events.contains("event: app_terminated_event\r\ndata: {\"appId\":\"/gone\""),
        "{events}"
    );
    assert!(events.ends_with("}\r\n\r\n\r\n"), "a bare-CRLF heartbeat follows: {events:?}");

    // The standby redirects the stream, query kept; 401 with a Basic challenge.
    let mut s = raw_get(&cluster.standby_url(), "/v2/events?event_type=a", "Accept: text/event-stream\r\n").await;
    let redirect = read_until(&mut s, |t| t.contains("\r\n\r\n")).await;
    assert!(redirect.starts_with("HTTP/1.1 302"), "{redirect}");
    assert!(
        redirect.contains(&format!("Location: {}/v2/events?event_type=a\r\n", cluster.leader_url())),
        "{redirect}"
    );
    cluster.require_basic("u", "p");
    let mut s = raw_get(&cluster.leader_url(), "/v2/apps", "").await;
    let refused = read_until(&mut s, |t| t.contains("\r\n\r\n")).await;
    assert!(
        refused.starts_with("HTTP/1.1 401") && refused.contains("WWW-Authenticate: Basic realm=\"Mesosphere\""),
        "{refused}"
    );
    let mut s = raw_get(&cluster.leader_url(), "/v2/apps?embed=apps.tasks", "Authorization: Basic dTpw\r\n").await;
    let listed = read_until(&mut s, |t| t.contains("{\"apps\":")).await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
}

#[test]
fn bad_marathon_settings_are_refused_at_start_naming_the_key() {
    let base = "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n";
    for (section, expected) in [
        (
            "[providers.marathon]\nendpoint = \"https://m:8443\"\n",
            "s.toml: [providers.marathon] tls.ca is required: drover has no system root store",
        ),
        (
            "[providers.marathon]\nendpoint = \"https://m:8443\"\n[providers.marathon.tls]\nca = \"/nonexistent/ca.pem\"\n",
            "s.toml: [providers.marathon] tls.ca: cannot read /nonexistent/ca.pem",
        ),
        (
            "[providers.marathon]\ndcosToken = \"t\"\n[providers.marathon.basic]\nhttpBasicAuthUser = \"u\"\nhttpBasicPassword = \"p\"\n",
            "[providers.marathon] `basic` and `dcosToken` cannot both be set",
        ),
        ("[providers.marathon]\nendpoit = \"http://m:8080\"\n", "endpoit"),
    ] {
        let err = drover::config::StaticConfig::parse(std::path::Path::new("s.toml"), &format!("{base}{section}"))
            .err()
            .unwrap_or_else(|| panic!("{section} was accepted"))
            .0;
        assert!(err.contains(expected), "{err}");
    }
}
