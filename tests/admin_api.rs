//! The admin API through a real drover: Traefik's shapes and values after a known configuration
//! (routers, services, servers, an ejected server, a provider error), pagination and search,
//! 404s for unknown names, authentication, and no secret in any answer.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{client, get, send, whoami, Answer, HttpClient, TestDrover};

/// A known configuration: four routers (one with a warning, one disabled), three services (one
/// with a warning: its only server URL carries credentials, so it has no server), and two
/// secrets that must never be shown.
fn routes(web: &[std::net::SocketAddr], api: std::net::SocketAddr) -> String {
    let mut out = String::from(
        r#"
[http.routers.web]
rule = "PathPrefix(`/`)"
service = "web"

[http.routers.api]
rule = "Host(`api.test`)"
service = "api"
priority = 100

[http.routers.warned]
rule = "Host(`warned.test`)"
entryPoints = ["web", "nope"]
service = "api"

[http.routers.broken]
rule = "Host(`x`"
service = "web"

[http.services.bad.loadBalancer]
[[http.services.bad.loadBalancer.servers]]
url = "http://bob:hunter2@127.0.0.1:1"
"#,
    );
    for addr in web {
        out.push_str(&format!("[[http.services.web.loadBalancer.servers]]\nurl = \"http://{addr}\"\n"));
    }
    out.push_str(&format!(
        "[[http.services.api.loadBalancer.servers]]\nurl = \"http://{api}\"\n\
         [http.services.api.loadBalancer.healthCheck]\npath = \"/health\"\ninterval = \"1h\"\n\
         [http.services.api.loadBalancer.healthCheck.headers]\nAuthorization = \"Bearer topsecret\"\n"
    ));
    out
}

const SECRETS: [&str; 2] = ["hunter2", "topsecret"];

async fn admin(c: &HttpClient, d: &TestDrover, path: &str) -> Answer {
    get(c, &format!("http://{}{path}", d.drover.api())).await
}

async fn admin_json(c: &HttpClient, d: &TestDrover, path: &str) -> (Answer, Value) {
    let answer = admin(c, d, path).await;
    let value = serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", answer.body));
    for secret in SECRETS {
        assert!(
            !answer.body.contains(secret),
            "GET {path} shows the secret `{secret}`: {}",
            answer.body
        );
    }
    (answer, value)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default())
        .collect()
}

fn next_page(a: &Answer) -> &str {
    a.headers.get("x-next-page").and_then(|v| v.to_str().ok()).unwrap_or("<missing>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_values_pagination_search_and_404s() {
    let (a, _ha) = whoami::spawn("a").await;
    let (b, _hb) = whoami::spawn("b").await;
    let (api_addr, hc) = whoami::spawn("c").await;
    let d = TestDrover::start(&routes(&[a, b], api_addr)).await;
    let c = client();

    // Overview: Traefik's counts, plus drover's server counts.
    let (_, o) = admin_json(&c, &d, "/api/overview").await;
    assert_eq!(
        o["http"]["routers"],
        serde_json::json!({"total": 4, "warnings": 1, "errors": 1}),
        "{o}"
    );
    assert_eq!(
        o["http"]["services"],
        serde_json::json!({"total": 3, "warnings": 1, "errors": 0}),
        "{o}"
    );
    assert_eq!(o["http"]["middlewares"]["total"], 0);
    assert_eq!(o["tcp"]["routers"]["total"], 0);
    assert_eq!(o["providers"], serde_json::json!(["file"]));
    assert_eq!(o["servers"]["total"], 3);
    assert_eq!(o["servers"]["up"], 3);
    assert_eq!(o["features"]["metrics"], "prometheus");

    // Routers: the whole list, by name, with Traefik's fields.
    let (answer, routers) = admin_json(&c, &d, "/api/http/routers").await;
    assert_eq!(names(&routers), ["api@file", "broken@file", "warned@file", "web@file"]);
    assert_eq!(next_page(&answer), "1");
    let api = &routers[0];
    assert_eq!(api["rule"], "Host(`api.test`)");
    assert_eq!(api["priority"], 100);
    assert_eq!(api["service"], "api@file");
    assert_eq!(api["provider"], "file");
    assert_eq!(api["status"], "enabled");
    assert_eq!(api["using"], serde_json::json!(["web"]));
    assert!(api.get("error").is_none(), "no error[] without problems: {api}");
    let broken = &routers[1];
    assert_eq!(broken["status"], "disabled");
    assert!(broken["error"][0].as_str().unwrap_or_default().contains("rule"), "{broken}");
    let warned = &routers[2];
    assert_eq!(warned["status"], "warning");
    assert!(warned["error"][0].as_str().unwrap_or_default().contains("`nope`"), "{warned}");
    assert_eq!(routers[3]["priority"], 15, "default priority is the rule's length");

    // Pagination, like Traefik: X-Next-Page, 1 on the last page.
    let (answer, page) = admin_json(&c, &d, "/api/http/routers?per_page=3").await;
    assert_eq!((names(&page).len(), next_page(&answer)), (3, "2"));
    let (answer, page) = admin_json(&c, &d, "/api/http/routers?per_page=3&page=2").await;
    assert_eq!((names(&page), next_page(&answer)), (vec!["web@file"], "1"));
    let (answer, err) = admin_json(&c, &d, "/api/http/routers?per_page=3&page=3").await;
    assert_eq!(answer.status, 404, "a page past the end");
    assert!(err["message"].as_str().unwrap_or_default().contains("page 3"), "{err}");
    for bad in ["page=0", "page=x", "per_page=-1", "per_page=10001", "status=sick"] {
        let (answer, err) = admin_json(&c, &d, &format!("/api/http/routers?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {err}");
        assert!(err["message"].is_string(), "{bad}: {err}");
    }

    // Search (name or rule, case-insensitive), status, serviceName.
    let (_, found) = admin_json(&c, &d, "/api/http/routers?search=API").await;
    assert_eq!(names(&found), ["api@file"]);
    let (_, found) = admin_json(&c, &d, "/api/http/routers?search=warned.test").await;
    assert_eq!(names(&found), ["warned@file"]);
    let (_, found) = admin_json(&c, &d, "/api/http/routers?status=disabled").await;
    assert_eq!(names(&found), ["broken@file"]);
    let (_, found) = admin_json(&c, &d, "/api/http/routers?serviceName=api@file").await;
    assert_eq!(names(&found), ["api@file", "warned@file"]);
    let (_, found) = admin_json(&c, &d, "/api/http/services?status=warning").await;
    assert_eq!(names(&found), ["bad@file"]);

    // Details and 404s.
    let (answer, r) = admin_json(&c, &d, "/api/http/routers/web@file").await;
    assert_eq!((answer.status, r["name"].as_str()), (200, Some("web@file")));
    for path in [
        "/api/http/routers/nope@file",
        "/api/http/services/nope@file",
        "/api/http/middlewares/nope@file",
        "/api/tcp/routers/nope@file",
        "/api/entrypoints/nope",
        "/api/providers/nope",
        "/api/no/such/path",
    ] {
        let (answer, err) = admin_json(&c, &d, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(err["message"].is_string(), "{path}: {err}");
    }

    // Services: Traefik's serverStatus, drover's servers, usedBy, type.
    let (_, services) = admin_json(&c, &d, "/api/http/services").await;
    assert_eq!(names(&services), ["api@file", "bad@file", "web@file"]);
    let (_, web) = admin_json(&c, &d, "/api/http/services/web@file").await;
    assert_eq!(web["type"], "loadbalancer");
    assert_eq!(web["usedBy"], serde_json::json!(["broken@file", "web@file"]));
    assert_eq!(web["serverStatus"][format!("http://{a}")], "UP");
    assert_eq!(web["serverStatus"][format!("http://{b}")], "UP");
    let servers = web["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["url"], format!("http://{a}"));
    assert_eq!(servers[0]["state"], "up");
    assert_eq!(servers[0]["weight"], 1);
    assert_eq!(servers[0]["totalEjections"], 0);
    let (_, bad) = admin_json(&c, &d, "/api/http/services/bad@file").await;
    assert_eq!(
        (bad["status"].as_str(), bad["servers"].as_array().map(Vec::len)),
        (Some("warning"), Some(0)),
        "{bad}"
    );
    assert!(
        bad.to_string().contains("REDACTED@127.0.0.1"),
        "credentials are cut from URLs: {bad}"
    );
    let (_, api_service) = admin_json(&c, &d, "/api/http/services/api@file").await;
    assert_eq!(api_service["loadBalancer"]["healthCheck"]["headers"]["Authorization"], "REDACTED");

    // Entrypoints, version, empty kinds, rawdata.
    let (answer, eps) = admin_json(&c, &d, "/api/entrypoints").await;
    assert_eq!((names(&eps), next_page(&answer)), (vec!["web"], "1"));
    assert_eq!(eps[0]["boundAddress"], d.web().to_string());
    let (_, ep) = admin_json(&c, &d, "/api/entrypoints/web").await;
    assert_eq!(ep["transport"]["respondingTimeouts"]["headerReadTimeout"], "30s");
    let (_, v) = admin_json(&c, &d, "/api/version").await;
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["Codename"], "drover");
    assert!(v["startDate"].as_str().is_some_and(|s| s.len() == 20 && s.ends_with('Z')), "{v}");
    for kind in ["/api/http/middlewares", "/api/tcp/routers", "/api/tcp/services", "/api/udp/routers"] {
        let (answer, list) = admin_json(&c, &d, kind).await;
        assert_eq!(
            (answer.status, list, next_page(&answer)),
            (200, serde_json::json!([]), "1"),
            "{kind}"
        );
    }
    let (_, raw) = admin_json(&c, &d, "/api/rawdata").await;
    assert_eq!(raw["services"]["web@file"]["serverStatus"][format!("http://{a}")], "UP");
    assert!(raw["routers"]["api@file"].is_object() && raw["middlewares"].is_object(), "{raw}");

    // /ping and /metrics.
    let ping = admin(&c, &d, "/ping").await;
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    let metrics = admin(&c, &d, "/metrics").await;
    assert_eq!(metrics.status, 200);
    // The body is OpenMetrics text (it ends with `# EOF`), and the content type says so.
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(metrics.body.trim_end().ends_with("# EOF"), "{}", metrics.body);

    // An ejected server: kill the only server of `api`, send traffic, watch it go.
    hc.stop().await;
    for _ in 0..6 {
        let _ = send(&c, "GET", &d.url("/"), &[("host", "api.test")]).await;
    }
    let (_, api_service) = admin_json(&c, &d, "/api/http/services/api@file").await;
    let server = &api_service["servers"][0];
    assert_eq!(server["state"], "ejected", "{api_service}");
    assert!(server["totalEjections"].as_u64() >= Some(1), "{server}");
    assert!(server["connectionFailures"].as_u64() >= Some(3), "{server}");
    assert!(server["reason"].as_str().is_some_and(|r| !r.is_empty()), "{server}");
    assert_eq!(api_service["serverStatus"][format!("http://{api_addr}")], "DOWN");
    let (_, o) = admin_json(&c, &d, "/api/overview").await;
    assert_eq!(
        (o["servers"]["up"].as_u64(), o["servers"]["ejected"].as_u64()),
        (Some(2), Some(1)),
        "{o}"
    );

    // A provider error: the routes file turns invalid; the last good routes stay.
    d.write_routes("[http.routers.web\nrule = ");
    let mut status = Value::Null;
    for _ in 0..200 {
        status = admin_json(&c, &d, "/api/providers/file").await.1;
        if status["state"] == "error" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status["state"], "error", "{status}");
    assert!(status["lastError"].as_str().is_some_and(|e| e.contains("routes.toml")), "{status}");
    let (_, providers) = admin_json(&c, &d, "/api/providers").await;
    assert_eq!(names(&providers), ["file"]);
    assert_eq!(providers[0]["state"], "error");
    let (_, o) = admin_json(&c, &d, "/api/overview").await;
    assert_eq!(o["providerErrors"], 1);
    assert_eq!(get(&c, &d.url("/")).await.status, 200, "the last good routes stay");
}

const BASIC_USER: &str = "alice";
const BASIC_PASSWORD: &str = "wonderland";
/// bcrypt (cost 4) of `wonderland`, as `htpasswd -nbB -C 4 alice wonderland` prints it.
const BASIC_HASH: &str = "$2y$04$yythxO6/jQjD/4PhSF0eFOII9IsbKmurAnVdbco1o1enHBcHOh6R6";
const TOKEN: &str = "t0ken-for-tests";

fn basic_header(user: &str, password: &str) -> String {
    // Base64 by hand: the root package has no base64 dependency.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_bearer_token_protect_the_admin_side_and_never_show() {
    let (a, _ha) = whoami::spawn("a").await;
    let routes = support::service_toml("web", "PathPrefix(`/`)", "web", &[(a, 1)]);
    let d = TestDrover::start_with_api(
        &routes,
        &format!("basicAuth = [\"{BASIC_USER}:{BASIC_HASH}\"]\nbearerToken = \"{TOKEN}\"\n"),
        "",
    )
    .await;
    let c = client();
    let base = format!("http://{}", d.drover.api());

    let refused = send(&c, "GET", &format!("{base}/api/overview"), &[]).await.expect("answer");
    assert_eq!(refused.status, 401);
    let challenges: Vec<&str> = refused
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(challenges.iter().any(|c| c.starts_with("Basic realm=\"drover\"")), "{challenges:?}");
    assert!(challenges.iter().any(|c| c.starts_with("Bearer")), "{challenges:?}");

    let good_basic = basic_header(BASIC_USER, BASIC_PASSWORD);
    let bearer = format!("Bearer {TOKEN}");
    for (auth, expected) in [
        (good_basic.as_str(), 200),
        (good_basic.as_str(), 200),
        (bearer.as_str(), 200),
        ("Bearer wrong", 401),
        ("Basic !!!", 401),
    ] {
        let a = send(&c, "GET", &format!("{base}/api/http/routers"), &[("authorization", auth)])
            .await
            .expect("answer");
        assert_eq!(a.status, expected, "{auth}");
    }
    let wrong = basic_header(BASIC_USER, "cheshire");
    let a = send(&c, "GET", &format!("{base}/metrics"), &[("authorization", &wrong)])
        .await
        .expect("answer");
    assert_eq!(a.status, 401);
    let a = send(&c, "GET", &format!("{base}/dashboard/"), &[]).await.expect("answer");
    assert_eq!(a.status, 401, "with basic auth the page itself asks for the password");

    // Public: liveness and the API description.
    assert_eq!(get(&c, &format!("{base}/ping")).await.status, 200);
    let doc = get(&c, &format!("{base}/api/openapi.json")).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body.contains("basicAuth") && doc.body.contains("bearerAuth"));

    // No answer shows the hash or the token.
    for path in [
        "/api/overview",
        "/api/rawdata",
        "/api/entrypoints",
        "/api/providers",
        "/api/http/services",
        "/api/version",
    ] {
        let a = send(&c, "GET", &format!("{base}{path}"), &[("authorization", &bearer)])
            .await
            .expect("answer");
        assert_eq!(a.status, 200, "{path}");
        for secret in [BASIC_HASH, TOKEN, "yythxO6"] {
            assert!(!a.body.contains(secret) && !doc.body.contains(secret), "{path} shows a secret");
        }
    }
}

#[test]
fn bad_credentials_in_the_static_configuration_are_named() {
    let err = drover::config::StaticConfig::parse(
        std::path::Path::new("s.toml"),
        "[entryPoints.web]\naddress = \":80\"\n[api]\nbasicAuth = [\"alice:plaintext\"]\n",
    )
    .expect_err("a plain-text password is refused");
    assert!(
        err.0.contains("api.basicAuth[0]") && err.0.contains("bcrypt") && !err.0.contains("plaintext"),
        "{}",
        err.0
    );
    let ok = drover::config::StaticConfig::parse(
        std::path::Path::new("s.toml"),
        &format!("[entryPoints.web]\naddress = \":80\"\n[api]\nbearerToken = \"{TOKEN}\"\n"),
    )
    .expect("valid");
    assert!(!format!("{ok:?}").contains(TOKEN), "Debug of the configuration hides the token");
}
