//! `/api/explain` through a real drover: the router it names is the one the data path takes, and
//! for the others it says why not (which matcher failed, on what), in the order they are tried.

mod support;

use std::net::SocketAddr;

use serde_json::Value;
use support::{client, get, send, whoami, HttpClient, TestDrover};

struct Backends {
    shop: [SocketAddr; 2],
    api: SocketAddr,
    canary: SocketAddr,
    live: SocketAddr,
    dead: SocketAddr,
}

fn routes(b: &Backends) -> String {
    let server = |service: &str, addr: SocketAddr| format!("[[http.services.{service}.loadBalancer.servers]]\nurl = \"http://{addr}\"\n");
    let mut out = String::from(
        r#"
[http.routers.site]
rule = "Host(`shop.test`)"
service = "shop"

[http.routers.site-api]
rule = "Host(`shop.test`) && PathPrefix(`/api`)"
service = "api"

[http.routers.not-admin]
rule = "Host(`admin.test`) && !PathPrefix(`/private`)"
service = "shop"

[http.routers.tie-a]
rule = "Host(`tie.test`) && Path(`/x`)"
priority = 50
service = "api"

[http.routers.tie-b]
rule = "Host(`tie.test`) && Path(`/x`)"
priority = 50
service = "shop"

[http.routers.by-header]
rule = "Header(`X-Env`, `canary`)"
priority = 1000
service = "canary"

[http.routers.by-method]
rule = "Host(`m.test`) && Method(`POST`)"
service = "api"

[http.routers.by-query]
rule = "Host(`q.test`) && Query(`debug`, `1`)"
service = "api"

[http.routers.by-ip]
rule = "Host(`ip.test`) && ClientIP(`10.0.0.0/8`)"
service = "api"

[http.routers.either]
rule = "Host(`a.test`) || Host(`b.test`)"
service = "shop"

[http.routers.internal-only]
rule = "PathPrefix(`/`)"
entryPoints = ["internal"]
service = "api"

[http.routers.broken]
rule = "Host(`x`"
service = "shop"

[http.routers.dead]
rule = "Host(`dead.test`)"
service = "dead"
"#,
    );
    out.push_str(&server("shop", b.shop[0]));
    out.push_str(&server("shop", b.shop[1]));
    out.push_str(&server("api", b.api));
    out.push_str(&server("canary", b.canary));
    out.push_str(&server("dead", b.live));
    out.push_str(&server("dead", b.dead));
    out
}

/// Two entrypoints (`web`, `internal`), the file provider with `routes`.
async fn start(routes: &str) -> TestDrover {
    TestDrover::start_with_api(routes, "", "[entryPoints.internal]\naddress = \"127.0.0.1:0\"\n").await
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Explains on entrypoint `web` unless `params` names another (the default is the first by
/// name, `internal`).
async fn explain(c: &HttpClient, d: &TestDrover, params: &[(&str, &str)]) -> Value {
    let mut query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    if !params.iter().any(|(k, _)| *k == "entryPoint") {
        query.push("entryPoint=web".into());
    }
    let url = format!("http://{}/api/explain?{}", d.drover.api(), query.join("&"));
    let answer = get(c, &url).await;
    assert_eq!(answer.status, 200, "{url}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{url}: {e}: {}", answer.body))
}

fn line<'a>(x: &'a Value, router: &str) -> &'a Value {
    x["routers"]
        .as_array()
        .and_then(|r| r.iter().find(|l| l["name"] == router))
        .unwrap_or_else(|| panic!("{router} not listed in {x}"))
}

fn reasons(x: &Value, router: &str) -> String {
    line(x, router)["reasons"].to_string()
}

/// The backend that actually answers the same request through the `web` entrypoint.
async fn answered_by(c: &HttpClient, d: &TestDrover, host: &str, target: &str, method: &str, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    let a = send(c, method, &d.url(target), &all).await.expect("answer");
    if a.status == 404 {
        return "404".into();
    }
    a.backend().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_router_the_data_path_takes_and_why_the_others_did_not() {
    let (s1, _h1) = whoami::spawn("s1").await;
    let (s2, _h2) = whoami::spawn("s2").await;
    let (api, _h3) = whoami::spawn("api").await;
    let (canary, _h4) = whoami::spawn("canary").await;
    let (live, _h5) = whoami::spawn("live").await;
    let (dead, dead_handle) = whoami::spawn("dead").await;
    let b = Backends {
        shop: [s1, s2],
        api,
        canary,
        live,
        dead,
    };
    let d = start(&routes(&b)).await;
    let c = client();
    let shop_names = ["s1", "s2"];

    // 1. No match: 404, with every router's reason, skipped ones included.
    let x = explain(&c, &d, &[("url", "http://nowhere.test/")]).await;
    assert_eq!((x["matched"].as_bool(), x["router"].is_null()), (Some(false), true), "{x}");
    assert!(x["summary"].as_str().unwrap_or_default().contains("404"), "{x}");
    assert_eq!(line(&x, "site@file")["result"], "not-matched");
    assert!(
        reasons(&x, "site@file").contains("Host(`shop.test`) did not match host `nowhere.test`"),
        "{x}"
    );
    assert_eq!(line(&x, "internal-only@file")["result"], "skipped");
    assert!(reasons(&x, "internal-only@file").contains("not on entrypoint `web`"), "{x}");
    assert_eq!(line(&x, "broken@file")["result"], "skipped");
    assert!(reasons(&x, "broken@file").contains("disabled"), "{x}");
    assert_eq!(answered_by(&c, &d, "nowhere.test", "/", "GET", &[]).await, "404");
    // Every router is listed, in the order they are tried.
    let priorities: Vec<i64> = x["routers"]
        .as_array()
        .expect("routers")
        .iter()
        .map(|l| l["priority"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(priorities.len(), 13);
    assert!(priorities.windows(2).all(|w| w[0] >= w[1]), "{priorities:?}");
    assert_eq!(x["routers"][0]["name"], "by-header@file");

    // 2. A longer rule wins over a shorter one that also matches.
    let x = explain(&c, &d, &[("url", "http://shop.test/api/users")]).await;
    assert_eq!(x["router"], "site-api@file");
    assert_eq!(line(&x, "site@file")["result"], "also-matches");
    assert!(reasons(&x, "site@file").contains("higher priority (39 > 17)"), "{x}");
    assert_eq!(x["service"]["name"], "api@file");
    assert_eq!(x["nextServer"], format!("http://{api}"));
    assert_eq!(answered_by(&c, &d, "shop.test", "/api/users", "GET", &[]).await, "api");

    // 3. The shorter one takes what the longer one does not, and says why the longer did not.
    let x = explain(&c, &d, &[("url", "http://shop.test/cart")]).await;
    assert_eq!(x["router"], "site@file");
    assert!(
        reasons(&x, "site-api@file").contains("PathPrefix(`/api`) did not match path `/cart`"),
        "{x}"
    );
    assert!(
        !reasons(&x, "site-api@file").contains("Host("),
        "only the failing matcher is named: {x}"
    );
    assert!(shop_names.contains(&answered_by(&c, &d, "shop.test", "/cart", "GET", &[]).await.as_str()));

    // 4. A `!` rule: excluded, and the reason names the negated matcher that matched.
    let x = explain(&c, &d, &[("url", "http://admin.test/private/keys")]).await;
    assert_eq!(x["matched"], false);
    let why = reasons(&x, "not-admin@file");
    assert!(
        why.contains("excluded it") && why.contains("PathPrefix(`/private`) matched path `/private/keys`"),
        "{why}"
    );
    let x = explain(&c, &d, &[("url", "http://admin.test/public")]).await;
    assert_eq!(x["router"], "not-admin@file");
    assert!(shop_names.contains(&answered_by(&c, &d, "admin.test", "/public", "GET", &[]).await.as_str()));

    // 5. Equal priorities: the name that sorts first wins, and the other says so.
    let x = explain(&c, &d, &[("url", "http://tie.test/x")]).await;
    assert_eq!(x["router"], "tie-a@file");
    assert_eq!(line(&x, "tie-b@file")["result"], "also-matches");
    assert!(reasons(&x, "tie-b@file").contains("same priority (50)"), "{x}");
    assert_eq!(answered_by(&c, &d, "tie.test", "/x", "GET", &[]).await, "api");

    // 6. A header matcher, with and without the header.
    let x = explain(&c, &d, &[("url", "http://shop.test/"), ("header", "X-Env: canary")]).await;
    assert_eq!(x["router"], "by-header@file");
    assert_eq!(x["request"]["requestHeaders"], serde_json::json!(["x-env: canary"]));
    assert_eq!(answered_by(&c, &d, "shop.test", "/", "GET", &[("x-env", "canary")]).await, "canary");
    let x = explain(&c, &d, &[("url", "http://shop.test/"), ("header", "X-Env: prod")]).await;
    assert_eq!(x["router"], "site@file");
    assert!(reasons(&x, "by-header@file").contains("header `x-env: prod`"), "{x}");
    let x = explain(&c, &d, &[("url", "http://shop.test/")]).await;
    assert!(reasons(&x, "by-header@file").contains("without a `x-env` header"), "{x}");

    // 7. Method.
    let x = explain(&c, &d, &[("url", "http://m.test/"), ("method", "POST")]).await;
    assert_eq!(x["router"], "by-method@file");
    assert_eq!(answered_by(&c, &d, "m.test", "/", "POST", &[]).await, "api");
    let x = explain(&c, &d, &[("url", "http://m.test/")]).await;
    assert!(
        reasons(&x, "by-method@file").contains("Method(`POST`) did not match method `GET`"),
        "{x}"
    );

    // 8. Query.
    let x = explain(&c, &d, &[("url", "http://q.test/?debug=1")]).await;
    assert_eq!(x["router"], "by-query@file");
    let x = explain(&c, &d, &[("url", "http://q.test/?debug=0")]).await;
    assert!(reasons(&x, "by-query@file").contains("query `debug=0`"), "{x}");

    // 9. Client IP.
    let x = explain(&c, &d, &[("url", "http://ip.test/"), ("clientIp", "10.1.2.3")]).await;
    assert_eq!(x["router"], "by-ip@file");
    let x = explain(&c, &d, &[("url", "http://ip.test/")]).await;
    assert!(reasons(&x, "by-ip@file").contains("client IP `127.0.0.1`"), "{x}");
    assert_eq!(
        answered_by(&c, &d, "ip.test", "/", "GET", &[]).await,
        "404",
        "the test client is 127.0.0.1"
    );

    // 10. `||`: either host; neither says both.
    let x = explain(&c, &d, &[("url", "http://b.test/")]).await;
    assert_eq!(x["router"], "either@file");
    let x = explain(&c, &d, &[("url", "http://c.test/")]).await;
    let why = reasons(&x, "either@file");
    assert!(
        why.contains("none of the 2 alternatives") && why.contains("Host(`a.test`)") && why.contains("Host(`b.test`)"),
        "{why}"
    );

    // 11. Another entrypoint, and a path-only URL with the host in a header.
    let x = explain(&c, &d, &[("url", "/anything"), ("entryPoint", "internal")]).await;
    assert_eq!(x["router"], "internal-only@file");
    let x = explain(&c, &d, &[("url", "/cart"), ("header", "Host: Shop.Test:8080")]).await;
    assert_eq!(
        (x["router"].as_str(), x["request"]["host"].as_str()),
        (Some("site@file"), Some("shop.test"))
    );

    // 12. An ejected server: shown as ejected, and never the next pick.
    let x = explain(&c, &d, &[("url", "http://dead.test/")]).await;
    assert_eq!(x["service"]["servers"].as_array().map(Vec::len), Some(2));
    dead_handle.stop().await;
    for _ in 0..10 {
        let _ = send(&c, "GET", &d.url("/"), &[("host", "dead.test")]).await;
    }
    for _ in 0..3 {
        let x = explain(&c, &d, &[("url", "http://dead.test/")]).await;
        assert_eq!(x["router"], "dead@file");
        let servers = x["service"]["servers"].as_array().expect("servers");
        let state_of = |addr: SocketAddr| {
            servers
                .iter()
                .find(|s| s["url"] == format!("http://{addr}"))
                .map(|s| s["state"].as_str().unwrap_or_default().to_string())
        };
        assert_eq!(state_of(dead).as_deref(), Some("ejected"), "{x}");
        assert_eq!(state_of(live).as_deref(), Some("up"), "{x}");
        assert_eq!(x["nextServer"], format!("http://{live}"), "{x}");
        assert_eq!(x["service"]["serverStatus"][format!("http://{dead}")], "DOWN");
    }
    assert_eq!(answered_by(&c, &d, "dead.test", "/", "GET", &[]).await, "live");

    // Bad questions.
    let base = format!("http://{}/api/explain", d.drover.api());
    for (query, status) in [
        ("", 400),
        ("?url=no-slash", 400),
        ("?url=/&method=get", 400),
        ("?url=/&entryPoint=nope", 404),
    ] {
        let a = get(&c, &format!("{base}{query}")).await;
        assert_eq!(a.status, status, "{query}: {}", a.body);
        assert!(a.body.contains("\"message\""), "{query}: {}", a.body);
    }
}
