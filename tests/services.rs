//! Services beyond one pool (#27), end to end: weighted canaries, failover, mirroring, sticky
//! cookies, consistent hashing and least-request balancing, through a real drover to real
//! backends on 127.0.0.1.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use support::load::{Load, Restartable};
use support::recording::{Answer, Recording};
use support::{client, get, send, servers_toml, whoami, TestDrover};

fn router(name: &str, rule: &str, service: &str) -> String {
    format!("[http.routers.{name}]\nrule = \"{rule}\"\nservice = \"{service}\"\n")
}

/// Counts which backend answered `n` sequential GETs of `path` (each must be a 200).
async fn count_backends(drover: &TestDrover, path: &str, headers: &[(&str, &str)], n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let a = send(&c, "GET", &drover.url(path), headers).await.expect("request");
        assert_eq!(a.status, 200, "{}", a.body);
        *counts.entry(a.backend().to_string()).or_default() += 1;
    }
    counts
}

async fn service_json(drover: &TestDrover, name: &str) -> serde_json::Value {
    let body = get(&client(), &format!("http://{}/api/http/services/{name}", drover.drover.api()))
        .await
        .body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("service JSON: {e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_9_to_1_canary_splits_1000_requests_900_100_exactly() {
    let (v1, _h1) = whoami::spawn("v1").await;
    let (v2, _h2) = whoami::spawn("v2").await;
    let routes = format!(
        "{}[http.services.canary.weighted]\nservices = [{{ name = \"v1\", weight = 9 }}, {{ name = \"v2\", weight = 1 }}]\n{}{}",
        router("r", "PathPrefix(`/`)", "canary"),
        servers_toml("v1", &[(v1, 1)]),
        servers_toml("v2", &[(v2, 1)]),
    );
    // One worker (see `start_with_api`); the rotation is shared, so it is exact with more too
    // as long as requests come one at a time.
    let drover = TestDrover::start_with_api(&routes, "", "").await;
    let counts = count_backends(&drover, "/", &[], 1_000).await;
    assert_eq!(counts, HashMap::from([("v1".into(), 900), ("v2".into(), 100)]));

    // The API shows the tree, children qualified.
    let canary = service_json(&drover, "canary@file").await;
    assert_eq!(canary["weighted"]["services"][1]["name"], "v2@file", "{canary}");
    assert_eq!(canary["status"], "enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_servers_are_all_dead_is_skipped_without_a_failed_request() {
    let (v1, _h1) = whoami::spawn("v1").await;
    let (v2, h2) = whoami::spawn("v2").await;
    let routes = format!(
        "{}[http.services.canary.weighted]\nservices = [{{ name = \"v1\", weight = 1 }}, {{ name = \"v2\", weight = 1 }}]\n{}{}[http.services.v2.loadBalancer.passiveHealthCheck]\nbaseEjectionTime = \"1m\"\n",
        router("r", "PathPrefix(`/`)", "canary"),
        servers_toml("v1", &[(v1, 1)]),
        servers_toml("v2", &[(v2, 1)]),
    );
    // One worker, so that 10 requests are one cursor's 5 + 5 (see balance::round_robin).
    let drover = TestDrover::start_one_worker(&routes).await;
    let counts = count_backends(&drover, "/", &[], 10).await;
    assert_eq!(counts, HashMap::from([("v1".into(), 5), ("v2".into(), 5)]));

    h2.stop().await;
    // Every request succeeds: the first ones to v2 find its server refusing connections and go
    // on to v1 (nothing was sent); once v2's only server is ejected v2 is skipped outright.
    let counts = count_backends(&drover, "/", &[], 100).await;
    assert_eq!(counts, HashMap::from([("v1".into(), 100)]));
    let v2 = service_json(&drover, "v2@file").await;
    assert_ne!(v2["servers"][0]["state"], "up", "v2's server was ejected: {v2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_to_the_fallback_under_load_with_no_failed_request_and_back() {
    let mut m1 = Restartable::start("main-1").await;
    let mut m2 = Restartable::start("main-2").await;
    let (spare, _hs) = whoami::spawn("spare").await;
    let routes = format!(
        "{}[http.services.app.failover]\nservice = \"main\"\nfallback = \"spare\"\n{}[http.services.main.loadBalancer.passiveHealthCheck]\nbaseEjectionTime = \"300ms\"\nmaxEjectionTime = \"300ms\"\nslowStart = \"0s\"\n{}",
        router("r", "PathPrefix(`/`)", "app"),
        servers_toml("main", &[(m1.addr, 1), (m2.addr, 1)]),
        servers_toml("spare", &[(spare, 1)]),
    );
    let drover = TestDrover::start(&routes).await;
    let started = Instant::now();
    let load = Load::start(drover.url("/"), 8);
    let warm = support::wait_until(Duration::from_secs(10), || {
        load.count_since("main-1", started) >= 20 && load.count_since("main-2", started) >= 20
    })
    .await;
    assert!(warm.is_some(), "the main service takes the traffic first");
    assert_eq!(
        load.count_since("spare", started),
        0,
        "nothing goes to the fallback while main is up"
    );

    m1.kill();
    m2.kill();
    let killed = Instant::now();
    let moved = support::wait_until(Duration::from_secs(5), || load.count_since("spare", killed) >= 100).await;
    assert!(moved.is_some(), "the fallback took over");

    m1.restart().await;
    m2.restart().await;
    let restarted = Instant::now();
    let back = support::wait_until(Duration::from_secs(5), || {
        load.count_since("main-1", restarted) >= 20 && load.count_since("main-2", restarted) >= 20
    })
    .await;
    let (failed, hits) = load.finish().await;
    assert_eq!(failed, 0, "no client request may fail");
    assert!(back.is_some(), "traffic went back to the main service after it recovered");
    let spare_after_back = hits
        .iter()
        .filter(|(t, n)| n == "spare" && *t > restarted + back.unwrap_or_default() + Duration::from_millis(100))
        .count();
    assert_eq!(spare_after_back, 0, "once back, everything goes to the main service");
    eprintln!(
        "{} requests; fallback after {:?}, back {:?} after the restart",
        hits.len(),
        moved.unwrap_or_default(),
        back.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_50_percent_copies_every_second_request_with_its_body() {
    let main = Recording::spawn("main", Answer::After(Duration::ZERO)).await;
    let mirror = Recording::spawn("mirror", Answer::After(Duration::ZERO)).await;
    let routes = format!(
        "{}[http.services.shadow.mirroring]\nservice = \"main\"\nmaxBodySize = 1024\nmirrors = [{{ name = \"copy\", percent = 50 }}]\n{}{}",
        router("r", "PathPrefix(`/`)", "shadow"),
        servers_toml("main", &[(main.addr, 1)]),
        servers_toml("copy", &[(mirror.addr, 1)]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client_full();
    for i in 0..100 {
        let req = http::Request::post(drover.url(&format!("/item/{i}")))
            .body(http_body_util::Full::new(bytes::Bytes::from(format!("payload-{i}"))))
            .unwrap();
        let response = c.request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-whoami-name"], "main", "the main service answers");
    }
    assert!(
        support::wait_until(Duration::from_secs(5), || mirror.count() >= 50).await.is_some(),
        "the mirror got {} copies",
        mirror.count()
    );
    assert_eq!(main.count(), 100);
    let copies: BTreeSet<(String, String)> = mirror
        .received()
        .into_iter()
        .map(|r| (r.path, String::from_utf8_lossy(&r.body).into_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = (0..100)
        .filter(|i| i % 2 == 1)
        .map(|i| (format!("/item/{i}"), format!("payload-{i}")))
        .collect();
    assert_eq!(copies, expected, "every second request, each with its own body");

    // A body over maxBodySize (1 KiB) still streams whole to the main service; the mirror gets
    // the request without it.
    let big = vec![b'x'; 4096];
    for _ in 0..2 {
        let req = http::Request::post(drover.url("/big"))
            .body(http_body_util::Full::new(bytes::Bytes::from(big.clone())))
            .unwrap();
        let response = c.request(req).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let main_big: Vec<_> = main.received().into_iter().filter(|r| r.path == "/big").collect();
    assert!(main_big.iter().all(|r| r.body.len() == 4096), "the main service got every byte");
    assert!(support::wait_until(Duration::from_secs(5), || mirror.count() >= 51).await.is_some());
    let mirrored_big: Vec<_> = mirror.received().into_iter().filter(|r| r.path == "/big").collect();
    assert_eq!(mirrored_big.len(), 1);
    assert!(mirrored_big[0].body.is_empty(), "mirrored without its body");
    assert!(!mirrored_big[0].headers.contains_key("content-length") || mirrored_big[0].headers["content-length"] == "0");
    let shadow = service_json(&drover, "shadow@file").await;
    assert_eq!(shadow["type"], "mirroring");
    assert_eq!(shadow["mirrorCopies"]["withoutBody"], 1, "counted: {shadow}");
    assert_eq!(shadow["mirrorCopies"]["sent"], 51, "{shadow}");
}

fn client_full(
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_mirror_changes_nothing_for_the_client() {
    let (main, _hm) = whoami::spawn("main").await;
    let hanging = Recording::spawn("hanging", Answer::Never).await;
    let failing = Recording::spawn("failing", Answer::Fail).await;
    let routes = format!(
        "{}[http.services.shadow.mirroring]\nservice = \"main\"\nmirrors = [{{ name = \"hang\", percent = 100 }}, {{ name = \"fail\", percent = 100 }}, {{ name = \"gone\", percent = 100 }}]\n{}{}{}{}",
        router("r", "PathPrefix(`/`)", "shadow"),
        servers_toml("main", &[(main, 1)]),
        servers_toml("hang", &[(hanging.addr, 1)]),
        servers_toml("fail", &[(failing.addr, 1)]),
        // A mirror nobody listens on: every copy is refused.
        servers_toml("gone", &[(support::free_port(), 1)]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..200 {
        let t = Instant::now();
        let a = tokio::time::timeout(Duration::from_secs(2), get(&c, &drover.url("/")))
            .await
            .expect("a hanging mirror must not hold up the client");
        slowest = slowest.max(t.elapsed());
        assert_eq!((a.status, a.backend()), (200, "main"));
    }
    assert!(
        support::wait_until(Duration::from_secs(5), || hanging.count() >= 200 && failing.count() >= 200)
            .await
            .is_some(),
        "the mirrors got their copies: {} {}",
        hanging.count(),
        failing.count()
    );
    eprintln!("slowest of 200 requests with a hanging, a failing and a refusing mirror: {slowest:?}");
}

fn set_cookie(a: &support::Answer) -> Option<String> {
    a.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_client_stays_on_its_server_across_a_reload_and_is_re_pinned_when_it_dies() {
    let mut backends = Vec::new();
    for name in ["s1", "s2", "s3"] {
        backends.push(whoami::spawn(name).await);
    }
    let routes = |extra: &str| {
        format!(
            "{}{}[http.services.app.loadBalancer.sticky.cookie]\nname = \"pin\"\nhttpOnly = true\nsameSite = \"lax\"\n[http.services.app.loadBalancer.passiveHealthCheck]\nbaseEjectionTime = \"1m\"\n{extra}",
            router("r", "PathPrefix(`/`)", "app"),
            servers_toml("app", &backends.iter().map(|(a, _)| (*a, 1)).collect::<Vec<_>>()),
        )
    };
    let drover = TestDrover::start(&routes("")).await;
    let c = client();
    let first = get(&c, &drover.url("/")).await;
    let cookie = set_cookie(&first).expect("the first answer pins the client");
    assert!(
        cookie.starts_with("pin=") && cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let pinned = first.backend().to_string();
    assert!(!pair.contains("127.0.0.1"), "the cookie does not show the server's address: {pair}");

    let counts = count_backends(&drover, "/", &[("cookie", &pair)], 100).await;
    assert_eq!(counts, HashMap::from([(pinned.clone(), 100)]), "100 requests stay");
    let again = send(&c, "GET", &drover.url("/"), &[("cookie", &pair)]).await.unwrap();
    assert_eq!(set_cookie(&again), None, "a pinned client is not sent the cookie again");

    drover.write_routes(&format!("{}{}", routes(""), router("other", "Path(`/other`)", "app")));
    drover.wait_for_generation(2).await;
    let counts = count_backends(&drover, "/", &[("cookie", &pair)], 20).await;
    assert_eq!(counts, HashMap::from([(pinned.clone(), 20)]), "and after a reload");

    let index = ["s1", "s2", "s3"].iter().position(|n| *n == pinned).unwrap();
    let (_, handle) = backends.remove(index);
    handle.stop().await;
    let moved = send(&c, "GET", &drover.url("/"), &[("cookie", &pair)]).await.unwrap();
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_ne!(moved.backend(), pinned);
    let new_cookie = set_cookie(&moved).expect("re-pinned");
    let new_pair = new_cookie.split(';').next().unwrap().to_string();
    assert_ne!(new_pair, pair);
    let counts = count_backends(&drover, "/", &[("cookie", &new_pair)], 50).await;
    assert_eq!(
        counts,
        HashMap::from([(moved.backend().to_string(), 50)]),
        "stays on the new server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_key_keeps_each_user_on_one_server() {
    let mut backends = Vec::new();
    for name in ["h1", "h2", "h3", "h4"] {
        backends.push(whoami::spawn(name).await);
    }
    let routes = format!(
        "{}{}[http.services.app.loadBalancer.hash]\nkey = \"header:X-User\"\n",
        router("r", "PathPrefix(`/`)", "app"),
        servers_toml("app", &backends.iter().map(|(a, _)| (*a, 1)).collect::<Vec<_>>()),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let mut owner = HashMap::new();
    for round in 0..3 {
        for user in 0..100 {
            let user = format!("user-{user}");
            let a = send(&c, "GET", &drover.url("/"), &[("x-user", &user)]).await.unwrap();
            assert_eq!(a.status, 200);
            let first = owner.entry(user.clone()).or_insert_with(|| a.backend().to_string());
            assert_eq!(first, a.backend(), "{user} moved in round {round}");
        }
    }
    let used: BTreeSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 4, "the users are spread over every server");

    // Traefik's `hrw`: rendezvous on the client IP, so this client (127.0.0.1) always lands on
    // one server, whatever its headers.
    drover.write_routes(&routes.replace(
        "[http.services.app.loadBalancer.hash]\nkey = \"header:X-User\"\n",
        "[http.services.app.loadBalancer]\nstrategy = \"hrw\"\n",
    ));
    drover.wait_for_generation(2).await;
    let mut seen = BTreeSet::new();
    for user in 0..40 {
        let a = send(&c, "GET", &drover.url("/"), &[("x-user", &format!("user-{user}"))])
            .await
            .unwrap();
        seen.insert(a.backend().to_string());
    }
    assert_eq!(seen.len(), 1, "one client IP, one server: {seen:?}");
}

/// Sends `n` GETs from `clients` concurrent clients; how many each backend answered.
async fn concurrent_counts(url: String, clients: usize, n: usize) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut names = Vec::new();
            for _ in 0..n / clients {
                let a = get(&c, &url).await;
                assert_eq!(a.status, 200);
                names.push(a.backend().to_string());
            }
            names
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_and_least_time_send_fewer_requests_to_a_slow_server_than_round_robin() {
    let fast = Recording::spawn("fast", Answer::After(Duration::from_millis(2))).await;
    let slow = Recording::spawn("slow", Answer::After(Duration::from_millis(150))).await;
    let routes = |strategy: &str| {
        format!(
            "{}{}[http.services.app.loadBalancer]\nstrategy = \"{strategy}\"\n",
            router("r", "PathPrefix(`/`)", "app"),
            servers_toml("app", &[(fast.addr, 1), (slow.addr, 1)]),
        )
    };
    let drover = TestDrover::start(&routes("wrr")).await;
    let wrr = concurrent_counts(drover.url("/"), 8, 96).await;
    drover.write_routes(&routes("p2c"));
    drover.wait_for_generation(2).await;
    let p2c = concurrent_counts(drover.url("/"), 8, 96).await;
    drover.write_routes(&routes("leasttime"));
    drover.wait_for_generation(3).await;
    let leasttime = concurrent_counts(drover.url("/"), 8, 96).await;
    eprintln!("slow server's share of 96 requests: wrr {wrr:?}, p2c {p2c:?}, leasttime {leasttime:?}");
    let slow_share = |c: &HashMap<String, usize>| c.get("slow").copied().unwrap_or(0);
    assert_eq!(slow_share(&wrr), 48, "round robin splits evenly whatever the speed");
    assert!(slow_share(&p2c) < slow_share(&wrr) / 2, "p2c: {p2c:?}");
    assert!(slow_share(&leasttime) < slow_share(&wrr) / 2, "leasttime: {leasttime:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_child_or_a_cycle_disables_only_what_uses_it() {
    let (v1, _h1) = whoami::spawn("v1").await;
    let routes = format!(
        "{}{}{}[http.services.broken.weighted]\nservices = [{{ name = \"v1\" }}, {{ name = \"nowhere\" }}]\n[http.services.a.failover]\nservice = \"b\"\nfallback = \"v1\"\n[http.services.b.weighted]\nservices = [{{ name = \"a\" }}]\n{}",
        router("ok", "Path(`/ok`)", "v1"),
        router("broken", "Path(`/broken`)", "broken"),
        router("loop", "Path(`/loop`)", "a"),
        servers_toml("v1", &[(v1, 1)]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    assert_eq!(get(&c, &drover.url("/ok")).await.status, 200, "everything else keeps serving");
    assert_eq!(get(&c, &drover.url("/broken")).await.status, 404);
    assert_eq!(get(&c, &drover.url("/loop")).await.status, 404);
    let broken = service_json(&drover, "broken@file").await;
    assert_eq!(broken["status"], "disabled");
    assert!(
        broken["error"][0]
            .as_str()
            .unwrap()
            .contains("weighted.services[1]: the service `nowhere@file` does not exist"),
        "{broken}"
    );
    let a = service_json(&drover, "a@file").await;
    assert!(a["error"][0].as_str().unwrap().contains("cycle"), "{a}");
    let router_json: serde_json::Value = serde_json::from_str(
        &get(&c, &format!("http://{}/api/http/routers/broken@file", drover.drover.api()))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(router_json["status"], "disabled", "{router_json}");
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn explain(drover: &TestDrover, headers: &[&str]) -> serde_json::Value {
    let mut query = vec!["entryPoint=web".to_string(), format!("url={}", encode("/page"))];
    query.extend(headers.iter().map(|h| format!("header={}", encode(h))));
    let url = format!("http://{}/api/explain?{}", drover.drover.api(), query.join("&"));
    let answer = get(&client(), &url).await;
    assert_eq!(answer.status, 200, "{url}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_child_service_the_sticky_cookie_and_the_hash_bucket_the_data_path_uses() {
    let mut names = HashMap::new();
    let mut handles = Vec::new();
    for name in ["v1-a", "v1-b", "h-a", "h-b", "h-c"] {
        let (addr, handle) = whoami::spawn(name).await;
        names.insert(format!("http://{addr}"), name.to_string());
        handles.push((addr, handle));
    }
    let addrs: Vec<_> = handles.iter().map(|(a, _)| (*a, 1)).collect();
    let routes = format!(
        "{}[http.services.canary.weighted]\nservices = [{{ name = \"v1\", weight = 9 }}, {{ name = \"hashed\", weight = 1 }}]\n[http.services.canary.weighted.sticky.cookie]\nname = \"canary\"\n{}[http.services.v1.loadBalancer.sticky.cookie]\nname = \"pin\"\n{}[http.services.hashed.loadBalancer.hash]\nkey = \"header:X-User\"\n",
        router("r", "PathPrefix(`/`)", "canary"),
        servers_toml("v1", &addrs[..2]),
        servers_toml("hashed", &addrs[2..]),
    );
    let drover = TestDrover::start(&routes).await;

    let plain = explain(&drover, &[]).await;
    assert_eq!(plain["choice"]["path"][0]["service"], "v1@file", "{plain}");
    assert!(
        plain["choice"]["path"][0]["why"]
            .as_str()
            .unwrap()
            .contains("weighted rotation (weight 9 of 10)"),
        "{plain}"
    );
    assert!(plain["summary"].as_str().unwrap().contains("`v1@file`"), "{plain}");

    let to_hashed = format!("Cookie: canary={}", drover::balance::sticky::value_of("hashed@file"));
    let x = explain(&drover, &[&to_hashed, "X-User: alice"]).await;
    assert_eq!(x["choice"]["path"][0]["service"], "hashed@file", "{x}");
    assert!(
        x["choice"]["path"][0]["why"].as_str().unwrap().contains("sticky cookie `canary`"),
        "{x}"
    );
    let why = x["choice"]["why"].as_str().unwrap();
    assert!(why.starts_with("consistent hash of header:x-user: ring point "), "{why}");
    let predicted = names[x["nextServer"].as_str().unwrap()].clone();
    let c = client();
    let cookie = to_hashed.trim_start_matches("Cookie: ");
    for _ in 0..5 {
        let a = send(&c, "GET", &drover.url("/page"), &[("cookie", cookie), ("x-user", "alice")])
            .await
            .unwrap();
        assert_eq!(a.backend(), predicted, "the data path goes where explain said");
    }

    let pin = format!(
        "Cookie: pin={}",
        drover::balance::sticky::value_of(&format!("http://{}", addrs[1].0))
    );
    let x = explain(&drover, &[&pin]).await;
    assert_eq!(names[x["nextServer"].as_str().unwrap()], "v1-b", "{x}");
    assert!(
        x["choice"]["why"]
            .as_str()
            .unwrap()
            .contains("sticky cookie `pin` names this server"),
        "{x}"
    );
}
