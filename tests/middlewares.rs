//! Traefik's HTTP middlewares through a real drover on real sockets: what the backend received,
//! what the client got, in which order middlewares ran, and what the API says about them.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::tls_backend::{start_tls, Ca, TlsBackend};
use support::{client, get, send, whoami, wire, Answer, HttpClient, TestDrover};

/// A router `name` on `rule` to a service of one server at `backend`, running `middlewares`.
fn router(name: &str, rule: &str, backend: SocketAddr, middlewares: &[&str]) -> String {
    let list: Vec<String> = middlewares.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[http.routers.{name}]\nrule = \"{}\"\nservice = \"{name}\"\nmiddlewares = [{}]\n[[http.services.{name}.loadBalancer.servers]]\nurl = \"http://{backend}\"\n",
        rule.replace('"', "\\\""),
        list.join(", ")
    )
}

async fn api(c: &HttpClient, drover: &TestDrover, path: &str) -> Value {
    let body = get(c, &format!("http://{}{path}", drover.drover.api())).await.body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

async fn ask(c: &HttpClient, drover: &TestDrover, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(c, method, &drover.url(path), headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The request line the backend saw (whoami echoes it first).
fn request_line(a: &Answer) -> &str {
    a.body.lines().find(|l| l.contains(" HTTP/1.1")).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entrypoint_router_chain_and_nested_chain_run_in_order() {
    let (backend, _h) = whoami::spawn("b").await;
    // Each addPrefix prepends, so the backend's path reads the order backwards.
    let routes = format!(
        r#"{}
[http.middlewares.ep.addPrefix]
prefix = "/ep"
[http.middlewares.first.addPrefix]
prefix = "/first"
[http.middlewares.outer.chain]
middlewares = ["mid", "inner"]
[http.middlewares.mid.addPrefix]
prefix = "/mid"
[http.middlewares.inner.chain]
middlewares = ["deep@file"]
[http.middlewares.deep.addPrefix]
prefix = "/deep"
"#,
        router("r", "PathPrefix(`/x`)", backend, &["first", "outer"])
    );
    let drover = TestDrover::start_with(&routes, "[entryPoints.web.http]\nmiddlewares = [\"ep@file\"]\n").await;
    let c = client();
    let a = ask(&c, &drover, "GET", "/x?q=1", &[]).await;
    assert_eq!(a.status, 200);
    assert!(
        request_line(&a).starts_with("GET /deep/mid/first/ep/x?q=1 "),
        "entrypoint, router, chain, nested chain: {}",
        request_line(&a)
    );

    let explain = api(&c, &drover, "/api/explain?url=http://any.test/x").await;
    assert_eq!(
        explain["middlewares"],
        serde_json::json!(["ep@file", "first@file", "mid@file", "deep@file"])
    );
    let middlewares = api(&c, &drover, "/api/http/middlewares").await;
    let deep = middlewares.as_array().unwrap().iter().find(|m| m["name"] == "deep@file").unwrap();
    assert_eq!(deep["type"], "addprefix");
    assert_eq!(deep["addPrefix"]["prefix"], "/deep");
    assert_eq!(deep["usedBy"], serde_json::json!(["r@file"]));
    assert_eq!(api(&c, &drover, "/api/overview").await["http"]["middlewares"]["total"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_invalid_and_cyclic_middlewares_disable_only_their_routers() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        r#"{}{}{}{}
[http.middlewares.loop1.chain]
middlewares = ["loop2"]
[http.middlewares.loop2.chain]
middlewares = ["loop1"]
[http.middlewares.bad.replacePathRegex]
regex = '^/(unclosed'
replacement = "/"
[http.middlewares.ok.addPrefix]
prefix = "/ok"
"#,
        router("missing", "PathPrefix(`/missing`)", backend, &["nope"]),
        router("cycle", "PathPrefix(`/cycle`)", backend, &["loop1"]),
        router("invalid", "PathPrefix(`/invalid`)", backend, &["bad"]),
        router("fine", "PathPrefix(`/fine`)", backend, &["ok"]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    for path in ["/missing", "/cycle", "/invalid"] {
        assert_eq!(ask(&c, &drover, "GET", path, &[]).await.status, 404, "{path} is not routed");
    }
    assert!(request_line(&ask(&c, &drover, "GET", "/fine", &[]).await).starts_with("GET /ok/fine "));
    let routers = api(&c, &drover, "/api/http/routers").await;
    let errors = |name: &str| -> String {
        let r = routers.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(r["status"], "disabled", "{name}");
        r["error"].to_string()
    };
    assert!(errors("missing@file").contains("`nope@file` does not exist"));
    assert!(errors("cycle@file").contains("cycle"), "{}", errors("cycle@file"));
    assert!(errors("invalid@file").contains("http.middlewares.bad.replacePathRegex.regex"));
    let loop1 = api(&c, &drover, "/api/http/middlewares/loop1@file").await;
    assert_eq!(loop1["status"], "disabled");
    assert!(
        loop1["error"][0].as_str().unwrap().contains("loop1@file → loop2@file → loop1@file"),
        "{loop1}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_set_and_remove_and_add_security_and_cors() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        r#"{}
[http.middlewares.hdr.headers]
frameDeny = true
contentTypeNosniff = true
stsSeconds = 31536000
stsIncludeSubdomains = true
forceSTSHeader = true
referrerPolicy = "no-referrer"
accessControlAllowOriginList = ["https://app.test"]
accessControlAllowMethods = ["GET", "PUT"]
accessControlAllowHeaders = ["X-Token"]
accessControlMaxAge = 600
accessControlExposeHeaders = ["X-Whoami-Name"]
addVaryHeader = true
[http.middlewares.hdr.headers.customRequestHeaders]
X-Script-Name = "drover"
User-Agent = ""
X-Forwarded-Proto = "https"
[http.middlewares.hdr.headers.customResponseHeaders]
X-Custom = "yes"
X-Whoami-Name = ""
"#,
        router("r", "PathPrefix(`/`)", backend, &["hdr"])
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let a = ask(&c, &drover, "GET", "/h", &[("user-agent", "curl"), ("origin", "https://app.test")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.received("x-script-name"), Some("drover"));
    assert_eq!(a.received("user-agent"), None, "an empty value removes the request header");
    assert_eq!(a.received("x-forwarded-proto"), Some("https"), "a custom header overrides drover's");
    let h = |n: &str| a.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(h("x-custom").as_deref(), Some("yes"));
    assert_eq!(h("x-whoami-name"), None, "an empty value removes the response header");
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(
        h("strict-transport-security").as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(h("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(h("access-control-allow-origin").as_deref(), Some("https://app.test"));
    assert_eq!(h("access-control-expose-headers").as_deref(), Some("X-Whoami-Name"));
    assert_eq!(h("vary").as_deref(), Some("Origin"));

    let other = ask(&c, &drover, "GET", "/h", &[("origin", "https://evil.test")]).await;
    assert!(
        other.headers.get("access-control-allow-origin").is_none(),
        "an origin not listed gets no CORS"
    );

    // A preflight is answered by drover: no server sees it.
    let pre = ask(
        &c,
        &drover,
        "OPTIONS",
        "/h",
        &[("origin", "https://app.test"), ("access-control-request-method", "PUT")],
    )
    .await;
    assert_eq!(pre.status, 200);
    assert!(pre.body.is_empty(), "the server did not answer: {}", pre.body);
    let p = |n: &str| pre.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(p("access-control-allow-origin"), "https://app.test");
    assert_eq!(p("access-control-allow-methods"), "GET,PUT");
    assert_eq!(p("access-control-allow-headers"), "X-Token");
    assert_eq!(p("access-control-max-age"), "600");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_keep_path_and_query_and_pick_the_status_by_method() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        r#"{}{}{}
[http.middlewares.https.redirectScheme]
scheme = "https"
port = "8443"
[http.middlewares.moved.redirectScheme]
scheme = "https"
permanent = true
[http.middlewares.www.redirectRegex]
regex = '^http://old\.test/(.*)'
replacement = "http://new.test/${{1}}"
"#,
        router("s", "PathPrefix(`/s`)", backend, &["https"]),
        router("p", "PathPrefix(`/p`)", backend, &["moved"]),
        router("x", "PathPrefix(`/x`)", backend, &["www"]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let loc = |a: &Answer| a.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let a = ask(&c, &drover, "GET", "/s/a?b=1", &[("host", "shop.test:8080")]).await;
    assert_eq!((a.status, loc(&a)), (302, "https://shop.test:8443/s/a?b=1".to_string()));
    let a = ask(&c, &drover, "POST", "/s/a", &[("host", "shop.test")]).await;
    assert_eq!(a.status, 307, "a POST keeps its method");
    let a = ask(&c, &drover, "GET", "/p", &[("host", "shop.test:8080")]).await;
    assert_eq!((a.status, loc(&a)), (301, "https://shop.test/p".to_string()), "443 is not written");
    let a = ask(&c, &drover, "PUT", "/p", &[("host", "shop.test")]).await;
    assert_eq!(a.status, 308);
    let a = ask(&c, &drover, "GET", "/x/y?z", &[("host", "old.test")]).await;
    assert_eq!((a.status, loc(&a)), (302, "http://new.test/x/y?z".to_string()));
    let a = ask(&c, &drover, "GET", "/x/y", &[("host", "other.test")]).await;
    assert_eq!((a.status, a.backend()), (200, "b"), "no match: forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rewrites_tell_the_backend_what_they_did_and_cannot_be_spoofed() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        r#"{}{}{}{}
[http.middlewares.strip.stripPrefix]
prefixes = ["/api"]
[http.middlewares.strip-re.stripPrefixRegex]
regex = ['/v[0-9]+']
[http.middlewares.replace.replacePath]
path = "/fixed"
[http.middlewares.replace-re.replacePathRegex]
regex = '^/re/(.*)'
replacement = "/moved/$1"
"#,
        router("api", "PathPrefix(`/api`)", backend, &["strip"]),
        router("ver", "PathPrefix(`/v`)", backend, &["strip-re"]),
        router("rep", "PathPrefix(`/rep`)", backend, &["replace"]),
        router("re", "PathPrefix(`/re/`)", backend, &["replace-re"]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    // A client's own X-Forwarded-Prefix never reaches the backend: drover's replaces it.
    let a = ask(&c, &drover, "GET", "/api/users?id=1", &[("x-forwarded-prefix", "/evil")]).await;
    assert!(request_line(&a).starts_with("GET /users?id=1 "), "{}", request_line(&a));
    assert_eq!(a.received("x-forwarded-prefix"), Some("/api"));
    let a = ask(&c, &drover, "GET", "/v2/items", &[]).await;
    assert!(request_line(&a).starts_with("GET /items "));
    assert_eq!(a.received("x-forwarded-prefix"), Some("/v2"));
    let a = ask(&c, &drover, "GET", "/rep/x", &[]).await;
    assert!(request_line(&a).starts_with("GET /fixed "));
    assert_eq!(a.received("x-replaced-path"), Some("/rep/x"));
    let a = ask(&c, &drover, "GET", "/re/a/b", &[]).await;
    assert!(request_line(&a).starts_with("GET /moved/a/b "));
    assert_eq!(a.received("x-replaced-path"), Some("/re/a/b"));
    // Paths are normalised before routing: a dot segment cannot carry `/api` past the router
    // and have stripPrefix hand the backend something else.
    let a = ask(&c, &drover, "GET", "/api/../secret", &[]).await;
    assert_eq!(a.status, 404, "/secret has no router");
    let a = ask(&c, &drover, "GET", "/api/%2e%2e/rep/x", &[]).await;
    assert!(
        request_line(&a).starts_with("GET /fixed "),
        "routed as /rep/x: {}",
        request_line(&a)
    );
    assert_eq!(a.received("x-forwarded-prefix"), None, "stripPrefix did not run");
}

fn htpasswd(args: &[&str]) -> String {
    let program = support::bind::require("htpasswd");
    let out = std::process::Command::new(program).args(args).output().expect("htpasswd runs");
    assert!(out.status.success(), "htpasswd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("htpasswd prints text").trim().to_string()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_accepts_htpasswd_bcrypt_md5_and_sha_as_written() {
    let (backend, _h) = whoami::spawn("b").await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let lines = [
        htpasswd(&["-nbB", "-C", "4", "bcrypt-user", "pw-b"]),
        htpasswd(&["-nbm", "md5-user", "pw-m"]),
        htpasswd(&["-nbs", "sha-user", "pw-s"]),
    ];
    std::fs::write(&users, lines.join("\n") + "\n").unwrap();
    let routes = format!(
        r#"{}{}
[http.middlewares.auth.basicAuth]
usersFile = "{}"
realm = "staff"
headerField = "X-Auth-User"
removeHeader = true
[http.middlewares.keep.basicAuth]
users = ["{}"]
"#,
        router("r", "PathPrefix(`/`)", backend, &["auth"]),
        router("k", "PathPrefix(`/keep`)", backend, &["keep"]),
        users.display(),
        lines[1]
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let a = ask(&c, &drover, "GET", "/", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.headers["www-authenticate"], "Basic realm=\"staff\"");
    for (user, pw) in [("bcrypt-user", "pw-b"), ("md5-user", "pw-m"), ("sha-user", "pw-s")] {
        let a = ask(&c, &drover, "GET", "/", &[("authorization", &basic(user, pw))]).await;
        assert_eq!((a.status, a.backend()), (200, "b"), "{user}");
        assert_eq!(a.received("x-auth-user"), Some(user));
        assert_eq!(a.received("authorization"), None, "removeHeader");
        let wrong = ask(&c, &drover, "GET", "/", &[("authorization", &basic(user, "nope"))]).await;
        assert_eq!(wrong.status, 401, "{user} with a wrong password");
    }
    let a = ask(&c, &drover, "GET", "/", &[("authorization", &basic("nobody", "pw-b"))]).await;
    assert_eq!(a.status, 401);
    let a = ask(&c, &drover, "GET", "/keep", &[("authorization", &basic("md5-user", "pw-m"))]).await;
    assert_eq!(a.status, 200);
    assert!(a.received("authorization").is_some(), "the header is kept by default");

    let shown = get(&c, &format!("http://{}/api/http/middlewares/keep@file", drover.drover.api()))
        .await
        .body;
    assert!(shown.contains("md5-user:REDACTED") && !shown.contains("$apr1$"), "{shown}");

    // The users file is watched: replaced (written aside, renamed over), the new list is in
    // force with no configuration change, and the removed user is refused.
    let replacement = dir.path().join("users.new");
    std::fs::write(&replacement, htpasswd(&["-nbB", "-C", "4", "new-user", "pw-n"]) + "\n").unwrap();
    std::fs::rename(&replacement, &users).unwrap();
    let started = std::time::Instant::now();
    loop {
        let a = ask(&c, &drover, "GET", "/", &[("authorization", &basic("new-user", "pw-n"))]).await;
        if a.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the new users file was not read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let gone = ask(&c, &drover, "GET", "/", &[("authorization", &basic("md5-user", "pw-m"))]).await;
    assert_eq!(gone.status, 401, "a user removed from the file is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_allow_list_uses_the_peer_unless_depth_and_trusted_ips_say_otherwise() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        r#"{}{}{}
[http.middlewares.lan.ipAllowList]
sourceRange = ["10.0.0.0/8"]
rejectStatusCode = 404
[http.middlewares.local.ipAllowList]
sourceRange = ["127.0.0.1/32", "::1"]
[http.middlewares.behind.ipAllowList]
sourceRange = ["10.0.0.0/8"]
[http.middlewares.behind.ipAllowList.ipStrategy]
depth = 2
"#,
        router("lan", "PathPrefix(`/lan`)", backend, &["lan"]),
        router("local", "PathPrefix(`/local`)", backend, &["local"]),
        router("behind", "PathPrefix(`/behind`)", backend, &["behind"]),
    );
    let c = client();
    {
        let drover = TestDrover::start(&routes).await;
        let spoof = [("x-forwarded-for", "10.1.2.3")];
        assert_eq!(ask(&c, &drover, "GET", "/lan", &spoof).await.status, 404, "rejectStatusCode");
        assert_eq!(ask(&c, &drover, "GET", "/local", &[]).await.status, 200);
        // Untrusted peer: its X-Forwarded-For is dropped, so depth 2 finds nothing: refused.
        assert_eq!(ask(&c, &drover, "GET", "/behind", &spoof).await.status, 403);
        let explain = api(&c, &drover, "/api/explain?url=http://a.test/lan&clientIp=10.0.0.9").await;
        assert!(
            explain["middlewareDecisions"][0]["decision"]
                .as_str()
                .unwrap()
                .contains("10.0.0.9 is in the allowed ranges"),
            "{explain}"
        );
    }
    // Behind a trusted proxy (127.0.0.1), depth 2 is the address that proxy saw.
    let drover = TestDrover::start_with(&routes, "[entryPoints.web.forwardedHeaders]\ntrustedIPs = [\"127.0.0.1\"]\n").await;
    assert_eq!(
        ask(&c, &drover, "GET", "/behind", &[("x-forwarded-for", "10.1.2.3")]).await.status,
        200
    );
    assert_eq!(
        ask(&c, &drover, "GET", "/behind", &[("x-forwarded-for", "192.0.2.1")]).await.status,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_with_retry_after_and_spoofed_forwarded_for_does_not_help() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        r#"{}{}
[http.middlewares.slow.rateLimit]
average = 1
period = "1m"
burst = 2
[http.middlewares.per-key.rateLimit]
average = 1
period = "1m"
burst = 1
[http.middlewares.per-key.rateLimit.sourceCriterion]
requestHeaderName = "X-Api-Key"
"#,
        router("r", "PathPrefix(`/r`)", backend, &["slow"]),
        router("k", "PathPrefix(`/k`)", backend, &["per-key"]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    for i in 0..2 {
        let a = ask(&c, &drover, "GET", "/r", &[("x-forwarded-for", &format!("10.0.0.{i}"))]).await;
        assert_eq!(a.status, 200, "burst request {i}");
    }
    for i in 2..5 {
        let a = ask(&c, &drover, "GET", "/r", &[("x-forwarded-for", &format!("10.0.0.{i}"))]).await;
        assert_eq!(a.status, 429, "a new X-Forwarded-For is not a new client");
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(ask(&c, &drover, "GET", "/k", &[("x-api-key", "a")]).await.status, 200);
    assert_eq!(ask(&c, &drover, "GET", "/k", &[("x-api-key", "a")]).await.status, 429);
    assert_eq!(
        ask(&c, &drover, "GET", "/k", &[("x-api-key", "b")]).await.status,
        200,
        "another key, another bucket"
    );
    let explain = api(&c, &drover, "/api/explain?url=http://a.test/r").await;
    assert!(
        explain["middlewareDecisions"][0]["decision"].as_str().unwrap().contains("429"),
        "{explain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_req_counts_a_request_until_its_body_ends() {
    let (backend, _dropped) = wire::endless().await;
    let routes = format!(
        "{}[http.middlewares.one.inFlightReq]\namount = 1\n",
        router("r", "PathPrefix(`/`)", backend, &["one"])
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let req = || {
        http::Request::get(drover.url("/"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let first = c.request(req()).await.expect("first request");
    assert_eq!(first.status(), 200);
    // The first response's body is still streaming: the second is over the amount.
    let second = c.request(req()).await.expect("second request");
    assert_eq!(second.status(), 429);
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut freed = None;
    while freed.is_none() && std::time::Instant::now() < deadline {
        let again = c.request(req()).await.expect("third request");
        if again.status() == 200 {
            freed = Some(());
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(freed.is_some(), "the slot is released when the client drops the body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_decides_and_cannot_be_fooled_by_injected_headers() {
    let (backend, _h) = whoami::spawn("b").await;
    let auth = wire::Wire::spawn(|request| {
        let request = request.to_ascii_lowercase();
        Some(if request.contains("authorization: bearer good") {
            b"HTTP/1.1 200 OK\r\nx-auth-user: alice\r\nset-cookie: session=abc; Path=/\r\nset-cookie: other=x\r\ncontent-length: 0\r\n\r\n"
                .to_vec()
        } else if request.contains("authorization: bearer anon") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 302 Found\r\nlocation: /login\r\ncontent-length: 5\r\n\r\nlogin".to_vec()
        })
    })
    .await;
    let routes = format!(
        r#"{}
[http.middlewares.auth.forwardAuth]
address = "http://{}/verify"
authResponseHeaders = ["X-Auth-User"]
addAuthCookiesToResponse = ["session"]
"#,
        router("app", "PathPrefix(`/app`)", backend, &["auth"]),
        auth.addr
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();

    let a = ask(&c, &drover, "GET", "/app/secret", &[]).await;
    assert_eq!(a.status, 302, "the server's refusal is the client's answer");
    assert_eq!(a.headers["location"], format!("http://{}/login", auth.addr).as_str());
    assert_eq!(a.body, "login");

    let injected = [
        ("authorization", "Bearer good"),
        ("x-auth-user", "admin"),
        ("x-forwarded-uri", "/public"),
        ("x-forwarded-method", "OPTIONS"),
    ];
    let a = ask(&c, &drover, "GET", "/app/secret?x=1", &injected).await;
    assert_eq!((a.status, a.backend()), (200, "b"));
    assert_eq!(
        a.received("x-auth-user"),
        Some("alice"),
        "the server's word replaces the client's:\n{}",
        a.body
    );
    assert_eq!(
        a.body.matches("x-auth-user").count() + a.body.matches("X-Auth-User").count(),
        1,
        "{}",
        a.body
    );
    let cookies: Vec<&str> = a.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(cookies, ["session=abc; Path=/"], "only the listed cookie is added");
    let asked = auth.all_text().to_ascii_lowercase();
    assert!(asked.contains("get /verify http/1.1"), "{asked}");
    assert!(asked.contains("x-forwarded-uri: /app/secret?x=1"), "{asked}");
    assert!(asked.contains("x-forwarded-method: get"), "{asked}");
    assert!(
        !asked.contains("x-forwarded-uri: /public"),
        "a client cannot choose what is judged: {asked}"
    );

    let a = ask(
        &c,
        &drover,
        "GET",
        "/app/x",
        &[("authorization", "Bearer anon"), ("x-auth-user", "admin")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.received("x-auth-user"), None, "not set by the server, so not set at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_over_tls_verifies_the_server_and_presents_a_client_certificate() {
    let (backend, _h) = whoami::spawn("b").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("auth CA");
    let other = Ca::new("someone else's CA");
    let clients = Ca::new("client CA");
    let auth = start_tls(TlsBackend {
        leaf: &ca.issue("auth", &["127.0.0.1"]),
        http2: false,
        client_ca: None,
    })
    .await;
    let strict = start_tls(TlsBackend {
        leaf: &ca.issue("strict auth", &["127.0.0.1"]),
        http2: false,
        client_ca: Some(&clients),
    })
    .await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    let other_file = other.write(dir.path(), "other.pem");
    let (cert, key) = clients.issue("drover", &["drover.test"]).write(dir.path(), "client");
    let (_, stray_key) = clients.issue("stray", &["stray.test"]).write(dir.path(), "stray");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let p = |path: &std::path::Path| path.display().to_string();
    let middleware = |name: &str, address: String, tls: &str| {
        format!("[http.middlewares.{name}.forwardAuth]\naddress = \"{address}\"\nauthResponseHeaders = [\"X-Seen\"]\n{tls}")
    };
    let tls = |ca: &str, pair: Option<(&str, &str)>| {
        let mut t = format!("[http.middlewares.NAME.forwardAuth.tls]\nca = \"{ca}\"\n");
        if let Some((cert, key)) = pair {
            t.push_str(&format!("cert = \"{cert}\"\nkey = \"{key}\"\n"));
        }
        t
    };
    let mut routes = String::new();
    for (name, address, block) in [
        ("ok", format!("https://{auth}/allow"), tls(&p(&ca_file), None)),
        ("deny", format!("https://{auth}/deny"), tls(&p(&ca_file), None)),
        ("wrongca", format!("https://{auth}/allow"), tls(&p(&other_file), None)),
        ("mozilla", format!("https://{auth}/allow"), String::new()),
        (
            "mtls",
            format!("https://{strict}/allow"),
            tls(&p(&ca_file), Some((&p(&cert), &p(&key)))),
        ),
        ("nocert", format!("https://{strict}/allow"), tls(&p(&ca_file), None)),
        ("unreadable", format!("https://{auth}/allow"), tls("/nonexistent/ca.pem", None)),
        ("notpem", format!("https://{auth}/allow"), tls(&p(&garbage), None)),
        (
            "mismatch",
            format!("https://{strict}/allow"),
            tls(&p(&ca_file), Some((&p(&cert), &p(&stray_key)))),
        ),
    ] {
        routes.push_str(&router(name, &format!("PathPrefix(`/{name}`)"), backend, &[name]));
        routes.push_str(&middleware(name, address, &block.replace("NAME", name)));
    }
    let drover = TestDrover::start(&routes).await;
    let c = client();

    let a = ask(&c, &drover, "GET", "/ok", &[]).await;
    assert_eq!((a.status, a.backend()), (200, "b"), "{}", a.body);
    let seen = a.received("x-seen").unwrap_or_default();
    assert!(seen.contains("client-cert=no") && seen.contains("path=/allow"), "{seen}");
    let a = ask(&c, &drover, "GET", "/deny", &[]).await;
    assert_eq!(a.status, 401, "the server's refusal over TLS is the client's answer");
    assert!(a.body.contains("path=/deny"), "{}", a.body);

    for (path, why) in [
        ("/wrongca", "a server that the configured CA did not sign"),
        ("/mozilla", "no ca: Mozilla's roots, which did not sign it"),
        ("/nocert", "a server that requires a client certificate, given none"),
    ] {
        let a = ask(&c, &drover, "GET", path, &[]).await;
        assert_eq!(a.status, 500, "{why}: fails closed ({})", a.body);
        assert_ne!(a.backend(), "b", "{why}: the request is not forwarded");
    }

    let a = ask(&c, &drover, "GET", "/mtls", &[]).await;
    assert_eq!((a.status, a.backend()), (200, "b"), "{}", a.body);
    assert!(
        a.received("x-seen").unwrap_or_default().contains("client-cert=yes"),
        "the client certificate was presented: {}",
        a.body
    );

    for (name, key, what) in [
        ("unreadable", "tls.ca", "cannot read `/nonexistent/ca.pem`"),
        ("notpem", "tls.ca", "holds no usable CA certificate"),
        ("mismatch", "tls.cert/key", "the key does not fit the certificate"),
    ] {
        let m = api(&c, &drover, &format!("/api/http/middlewares/{name}@file")).await;
        assert_eq!(m["status"], "disabled", "{m}");
        let error = m["error"][0].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!("http.middlewares.{name}.forwardAuth.{key}: ")) && error.contains(what),
            "{error}"
        );
        let r = api(&c, &drover, &format!("/api/http/routers/{name}@file")).await;
        assert_eq!(r["status"], "disabled", "its router is off: {r}");
        let a = ask(&c, &drover, "GET", &format!("/{name}"), &[]).await;
        assert_eq!(a.status, 404, "never served without its authentication");
    }
    assert_eq!(ask(&c, &drover, "GET", "/ok", &[]).await.status, 200, "the rest keeps working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_sends_the_body_then_the_service_gets_it_too() {
    let auth = wire::Wire::spawn(|request| {
        Some(if request.contains("please deny") {
            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\ndenied".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
        })
    })
    .await;
    let backend = wire::Wire::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let routes = format!(
        r#"{}
[http.middlewares.auth.forwardAuth]
address = "http://{}/check"
forwardBody = true
maxBodySize = 100
"#,
        router("app", "PathPrefix(`/app`)", backend.addr, &["auth"]),
        auth.addr
    );
    let drover = TestDrover::start(&routes).await;
    let post = |body: &str| {
        format!(
            "POST /app HTTP/1.1\r\nhost: any.test\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let asked = || auth.all_text().matches("GET /check HTTP/1.1").count();
    let forwarded = || backend.all_text().matches("POST /app HTTP/1.1").count();

    let (status, answer) = wire::exchange(drover.web(), post("let me in: 42").as_bytes()).await;
    assert_eq!((status, answer.as_str()), (200, "ok"));
    let question = auth.all_text().to_ascii_lowercase();
    assert!(
        question.contains("content-length: 13\r\n") && question.ends_with("\r\n\r\nlet me in: 42"),
        "the server saw the body: {question}"
    );
    let sent = backend.all_text();
    assert!(
        sent.to_ascii_lowercase().contains("content-length: 13\r\n") && sent.ends_with("\r\n\r\nlet me in: 42"),
        "the service got the same body: {sent}"
    );

    let (status, answer) = wire::exchange(drover.web(), post("please deny this").as_bytes()).await;
    assert_eq!((status, answer.as_str()), (403, "denied"));
    assert_eq!((asked(), forwarded()), (2, 1), "refused: the service saw nothing");

    let (status, _) = wire::exchange(drover.web(), post(&"x".repeat(101)).as_bytes()).await;
    assert_eq!(status, 401, "past maxBodySize: Traefik's 401");
    assert_eq!((asked(), forwarded()), (2, 1), "neither the server nor the service saw it");

    // A chunked upload within the limit: both get it whole, with its length.
    let body = "chunk one, chunk two";
    let mut raw = b"PUT /app HTTP/1.1\r\nhost: any.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for piece in body.as_bytes().chunks(10) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = wire::exchange(drover.web(), &raw).await;
    assert_eq!(status, 200);
    assert!(auth.all_text().ends_with(body), "{}", auth.all_text());
    let sent = backend.all_text().to_ascii_lowercase();
    assert!(sent.ends_with(body) && sent.contains("content-length: 20\r\n"), "{sent}");

    let c = client();
    let a = ask(&c, &drover, "GET", "/app", &[]).await;
    assert_eq!(a.status, 200, "no body: a question without one");
    let last = auth.all_text();
    let last = &last[last.rfind("GET /check").unwrap_or(0)..];
    assert!(
        !last.to_ascii_lowercase().contains("content-length") && !last.to_ascii_lowercase().contains("transfer-encoding"),
        "{last}"
    );

    // Bytes received from the client are counted once, whoever they were sent to.
    let url = format!("http://{}/metrics", drover.drover.api());
    let expected = format!("drover_service_requests_bytes_total{{service=\"app@file\"}} {}", 13 + 16 + 20);
    let mut text = String::new();
    for _ in 0..50 {
        text = get(&c, &url).await.body;
        if text.contains(&expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains(&expected), "{expected} in:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_body_works_with_retry_and_buffering_around_it() {
    let auth = wire::Wire::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    // Every other answer is a 503: the first attempt of each request is retried.
    let (backend, _) = wire::busy_when(|n| n & 1 == 0).await;
    let routes = format!(
        r#"{}{}{}
[http.middlewares.auth.forwardAuth]
address = "http://{}/check"
forwardBody = true
[http.middlewares.again.retry]
attempts = 2
status = ["503"]
[http.middlewares.small.buffering]
maxRequestBodyBytes = 10
"#,
        router("before", "PathPrefix(`/before`)", backend.addr, &["auth", "again"]),
        router("after", "PathPrefix(`/after`)", backend.addr, &["again", "auth"]),
        router("small", "PathPrefix(`/small`)", backend.addr, &["auth", "small"]),
        auth.addr
    );
    let drover = TestDrover::start(&routes).await;
    let put = |path: &str, body: &str| {
        format!(
            "PUT {path} HTTP/1.1\r\nhost: any.test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let asked = || auth.all_text().matches(" /check HTTP/1.1").count();
    let bodies = |text: String, body: &str| text.matches(&format!("\r\n\r\n{body}")).count();

    let (status, answer) = wire::exchange(drover.web(), put("/before", "first body").as_bytes()).await;
    assert_eq!((status, answer.as_str()), (200, "ok"), "the 503 was retried");
    assert_eq!(asked(), 1, "asked once, before the retry");
    assert_eq!(bodies(backend.all_text(), "first body"), 2, "each attempt carried the body");

    let (status, _) = wire::exchange(drover.web(), put("/after", "second body").as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(asked(), 3, "after the retry: asked once per attempt");
    assert_eq!(bodies(auth.all_text(), "second body"), 2, "each time with the body");
    assert_eq!(bodies(backend.all_text(), "second body"), 2);

    let (status, _) = wire::exchange(drover.web(), put("/small", "eleven byte").as_bytes()).await;
    assert_eq!(status, 413, "read for the authentication, still past buffering's maximum");
    assert_eq!(asked(), 4);
    assert_eq!(bodies(backend.all_text(), "eleven byte"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_body_gives_up_on_a_stalled_upload_at_read_timeout() {
    let auth = wire::Wire::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let backend = wire::Wire::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let routes = format!(
        "{}[http.middlewares.auth.forwardAuth]\naddress = \"http://{}/check\"\nforwardBody = true\n",
        router("app", "PathPrefix(`/app`)", backend.addr, &["auth"]),
        auth.addr
    );
    let limits = "[entryPoints.web.transport.respondingTimeouts]\nreadTimeout = \"300ms\"\n";
    let drover = TestDrover::start_with(&routes, limits).await;
    let started = std::time::Instant::now();
    let (status, _) = wire::exchange(
        drover.web(),
        b"POST /app HTTP/1.1\r\nhost: any.test\r\ncontent-length: 100\r\n\r\nonly ten b",
    )
    .await;
    assert_eq!(status, 408, "the body never came whole");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(auth.all_text(), "", "the server was not asked with half a body");
    assert_eq!(backend.all_text(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_on_errors_and_spares_the_service() {
    let failing = wire::Wire::answering(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nfail").await;
    let routes = format!(
        r#"{}
[http.middlewares.cb.circuitBreaker]
expression = "ResponseCodeRatio(500, 600, 0, 600) > 0.5"
checkPeriod = "10ms"
fallbackDuration = "1m"
"#,
        router("r", "PathPrefix(`/`)", failing.addr, &["cb"])
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let requests = || failing.all_text().matches("GET / HTTP/1.1").count();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut opened = false;
    while !opened && std::time::Instant::now() < deadline {
        let a = ask(&c, &drover, "GET", "/", &[]).await;
        match a.status {
            500 => tokio::time::sleep(Duration::from_millis(5)).await,
            503 => opened = true,
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert!(opened, "the breaker opened after {} failed requests", requests());
    let seen = requests();
    for _ in 0..5 {
        let a = ask(&c, &drover, "GET", "/", &[]).await;
        assert_eq!(a.status, 503, "open for fallbackDuration");
        assert!(a.body.contains("circuit breaker"), "{}", a.body);
    }
    assert_eq!(requests(), seen, "no request reaches the service while the breaker is open");
}
