//! TLS termination end to end: SNI certificate choice, the default and generated certificates,
//! sniStrict, mTLS and 421, HTTP/2 by ALPN, plain and TLS on one entrypoint, the HTTP → HTTPS
//! redirect, certificate files replaced under load, and bad input reported while the rest
//! keeps serving. Clients are rustls (to read which certificate was presented), curl and wrk.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;

use support::pki::{Ca, Client};
use support::{get, TestDrover};

fn router(name: &str, rule: &str, service: &str, tls: &str) -> String {
    format!("[http.routers.{name}]\nrule = \"{rule}\"\nservice = \"{service}\"\n{tls}")
}

fn service(name: &str, backend: SocketAddr) -> String {
    format!("[[http.services.{name}.loadBalancer.servers]]\nurl = \"http://{backend}\"\n")
}

fn curl(args: &[&str]) -> (String, String, bool) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (tests/setup.sh installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

async fn api(drover: &TestDrover, path: &str) -> serde_json::Value {
    let body = get(&support::client(), &format!("http://{}{path}", drover.drover.api())).await.body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_exact_then_wildcard_then_default_and_plain_http_shares_the_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Test CA");
    let exact = ca.leaf(dir.path(), "a", &["a.test"]);
    let wildcard = ca.leaf(dir.path(), "wild", &["*.b.test"]);
    let default = ca.leaf(dir.path(), "default", &["default.test"]);
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`a.test`)", "s", "[http.routers.a.tls]\n"),
        router("b", "HostRegexp(`^.+\\\\.b\\\\.test$`)", "s", "[http.routers.b.tls]\n"),
        router("plain", "Host(`a.test`)", "s", ""),
        service("s", backend),
        exact.toml(),
        wildcard.toml(),
        format!(
            "[tls.stores.default.defaultCertificate]\ncertFile = \"{}\"\nkeyFile = \"{}\"\n",
            default.cert_file.display(),
            default.key_file.display()
        ),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let client = Client::new(&["http/1.1"], None);
    let web = drover.web();
    assert_eq!(client.presented(web, "a.test").await.expect("handshake"), exact.der, "exact name");
    assert_eq!(
        client.presented(web, "x.b.test").await.expect("handshake"),
        wildcard.der,
        "one-label wildcard"
    );
    assert_eq!(
        client.presented(web, "y.x.b.test").await.expect("handshake"),
        default.der,
        "a wildcard covers one label only"
    );
    assert_eq!(
        client.presented(web, "unknown.test").await.expect("handshake"),
        default.der,
        "the default"
    );

    // A real client over TLS, verifying the chain against the CA.
    let ca_file = ca.write(dir.path(), "ca.pem");
    let port = web.port();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let (body, err, ok) = curl(&[
        "--cacert",
        ca_file.to_str().expect("utf-8 path"),
        "--resolve",
        &resolve,
        &format!("https://a.test:{port}/hello"),
    ]);
    assert!(ok, "curl over TLS: {err}");
    assert!(body.to_ascii_lowercase().contains("x-forwarded-proto: https"), "{body}");
    // The same port speaks plain HTTP, where only the router without `tls` matches.
    let plain = get(&support::client(), &format!("http://{web}/hello")).await;
    assert_eq!(plain.status, 404, "no plain router for this host name: {}", plain.body);
    let (body, _, ok) = curl(&["-H", "Host: a.test", &format!("http://{web}/hello")]);
    assert!(ok, "plain HTTP on the TLS port");
    assert!(
        body.to_ascii_lowercase().lines().any(|l| l.trim_end() == "x-forwarded-proto: http"),
        "{body}"
    );

    // Explain tells the TLS routers from the plain ones by the URL's scheme.
    let tls = api(&drover, "/api/explain?url=https://a.test/hello").await;
    assert_eq!(tls["router"], "a@file", "{tls}");
    assert!(tls.to_string().contains("serves plain HTTP only"), "{tls}");
    let plain = api(&drover, "/api/explain?url=http://a.test/hello").await;
    assert_eq!(plain["router"], "plain@file", "{plain}");

    // The API lists the certificates with the routers they serve.
    let certs = api(&drover, "/api/tls/certificates").await;
    let list = certs.as_array().expect("a list");
    let a = list.iter().find(|c| c["sans"][0] == "a.test").expect("a.test listed");
    assert_eq!(a["usedBy"], serde_json::json!(["a@file"]));
    assert!(a["notAfter"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(list.iter().any(|c| c["default"] == true && c["sans"][0] == "default.test"));
    let metrics = drover.drover.metrics_text();
    assert!(metrics.contains("drover_tls_certs_not_after{cn=\"a.test\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_default_certificate_one_is_generated_and_sni_strict_refuses_unknown_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Test CA");
    let exact = ca.leaf(dir.path(), "a", &["a.test"]);
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`a.test`)", "s", "[http.routers.a.tls]\n"),
        service("s", backend),
        exact.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let client = Client::new(&["http/1.1"], None);
    let generated = client
        .presented(drover.web(), "other.test")
        .await
        .expect("the generated default serves");
    assert_ne!(generated, exact.der);
    let certs = api(&drover, "/api/tls/certificates").await;
    assert!(
        certs
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["source"] == "generated" && c["default"] == true),
        "{certs}"
    );

    drover.write_routes(&format!("{routes}[tls.options.default]\nsniStrict = true\n"));
    drover.wait_for_generation(2).await;
    assert!(
        client.presented(drover.web(), "other.test").await.is_err(),
        "sniStrict refuses an unknown name"
    );
    assert!(client.presented(drover.web(), "a.test").await.is_ok(), "and serves a known one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_verifies_client_certificates_and_a_fronted_host_gets_421() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Server CA");
    let clients = Ca::new("Client CA");
    let stranger_ca = Ca::new("Other CA");
    let server = ca.leaf(dir.path(), "server", &["secure.test", "open.test"]);
    let good = clients.leaf(dir.path(), "alice", &["alice"]);
    let stranger = stranger_ca.leaf(dir.path(), "mallory", &["mallory"]);
    let clients_file = clients.write(dir.path(), "clients.pem");
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router(
            "secure",
            "Host(`secure.test`)",
            "s",
            "[http.routers.secure.tls]\noptions = \"mtls\"\n",
        ),
        router("open", "Host(`open.test`)", "s", "[http.routers.open.tls]\n"),
        service("s", backend),
        server.toml(),
        format!(
            "[tls.options.mtls.clientAuth]\ncaFiles = [\"{}\"]\nclientAuthType = \"RequireAndVerifyClientCert\"\n",
            clients_file.display()
        ),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let web = drover.web();
    let anonymous = Client::new(&["http/1.1"], None);
    let alice = Client::new(&["http/1.1"], Some(&good));
    let mallory = Client::new(&["http/1.1"], Some(&stranger));

    let refused = anonymous.get(web, "secure.test", "secure.test", "/").await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused = mallory.get(web, "secure.test", "secure.test", "/").await;
    assert!(refused.is_err(), "a certificate from another CA: {refused:?}");
    let (status, _, _) = alice
        .get(web, "secure.test", "secure.test", "/")
        .await
        .expect("the right certificate");
    assert_eq!(status, 200);

    // Domain fronting: a connection made for the open host cannot reach the mTLS host.
    let (status, body, _) = anonymous.get(web, "open.test", "secure.test", "/").await.expect("a response");
    assert_eq!(status, 421, "{body}");
    let (status, _, _) = alice.get(web, "secure.test", "open.test", "/").await.expect("a response");
    assert_eq!(status, 421, "the other way round too");
    let (status, _, _) = anonymous.get(web, "open.test", "open.test", "/").await.expect("a response");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_asking_different_options_for_one_host_keep_the_stronger_priority_and_say_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let server = ca.leaf(dir.path(), "server", &["shop.test"]);
    let clients = Ca::new("Client CA");
    let clients_file = clients.write(dir.path(), "clients.pem");
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router(
            "admin",
            "Host(`shop.test`) && PathPrefix(`/admin`)",
            "s",
            "priority = 100\n[http.routers.admin.tls]\noptions = \"mtls\"\n",
        ),
        router("shop", "Host(`shop.test`)", "s", "priority = 1\n[http.routers.shop.tls]\n"),
        service("s", backend),
        server.toml(),
        format!(
            "[tls.options.mtls.clientAuth]\ncaFiles = [\"{}\"]\nclientAuthType = \"RequireAndVerifyClientCert\"\n",
            clients_file.display()
        ),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let routers = api(&drover, "/api/http/routers").await;
    for name in ["admin@file", "shop@file"] {
        let r = routers
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == name)
            .expect("listed");
        assert_eq!(r["status"], "warning", "{r}");
        assert!(r["error"].to_string().contains("ask for different TLS options"), "{r}");
    }
    // mTLS is not silently dropped: the host keeps the higher-priority router's options.
    let anonymous = Client::new(&["http/1.1"], None);
    assert!(anonymous.get(drover.web(), "shop.test", "shop.test", "/").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_by_alpn_and_http1_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let server = ca.leaf(dir.path(), "server", &["a.test"]);
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`a.test`)", "s", "[http.routers.a.tls]\n"),
        service("s", backend),
        server.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let (status, _, version) = Client::new(&["h2", "http/1.1"], None)
        .get(drover.web(), "a.test", "a.test", "/")
        .await
        .expect("h2");
    assert_eq!((status, version), (200, http::Version::HTTP_2));
    let (status, _, version) = Client::new(&["http/1.1"], None)
        .get(drover.web(), "a.test", "a.test", "/")
        .await
        .expect("h1");
    assert_eq!((status, version), (200, http::Version::HTTP_11));
    let ca_file = ca.write(dir.path(), "ca.pem");
    let port = drover.web().port();
    let (out, err, ok) = curl(&[
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "--cacert",
        ca_file.to_str().expect("utf-8"),
        "--resolve",
        &format!("a.test:{port}:127.0.0.1"),
        &format!("https://a.test:{port}/"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "2 200");
}

/// An HTTP/2-over-TLS connection's requests (each future boxed when it starts, see
/// `server::worker::serve_request`): many at once on one connection, each answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_http2_streams_over_one_tls_connection_are_all_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let server = ca.leaf(dir.path(), "server", &["a.test"]);
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`a.test`)", "s", "[http.routers.a.tls]\n"),
        service("s", backend),
        server.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    let port = drover.web().port();
    let url = format!("https://a.test:{port}/n");
    let mut args: Vec<String> = [
        "--http2",
        "--parallel",
        "--parallel-max",
        "100",
        "--cacert",
        ca_file.to_str().expect("utf-8"),
        "--resolve",
        &format!("a.test:{port}:127.0.0.1"),
        "-w",
        "%{http_version} %{http_code} %{num_connects}\\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..200 {
        args.extend(["-o".to_string(), "/dev/null".to_string(), url.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, err, ok) = curl(&args);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 200, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("2 200 ")), "{out}");
    let connects: u32 = lines
        .iter()
        .map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u32>().ok()).expect("a count"))
        .sum();
    assert!(
        connects < 20,
        "curl multiplexed the streams over few connections ({connects} opened): {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_to_the_tls_entrypoint_with_path_and_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let server = ca.leaf(dir.path(), "server", &["a.test"]);
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [router("a", "Host(`a.test`)", "s", ""), service("s", backend), server.toml()].concat();
    let drover = TestDrover::start_with(
        &routes,
        "[entryPoints.websecure]\naddress = \"127.0.0.1:0\"\n[entryPoints.websecure.http.tls]\n[entryPoints.web.http.redirections.entryPoint]\nto = \"websecure\"\n",
    )
    .await;
    let secure = drover.drover.entry_point("websecure").expect("websecure");
    let c = support::client();
    let answer = support::send(&c, "GET", &format!("http://{}/x/y?q=1&r=2", drover.web()), &[("host", "a.test")])
        .await
        .expect("an answer");
    assert_eq!(answer.status, 301);
    assert_eq!(
        answer.headers["location"],
        format!("https://a.test:{}/x/y?q=1&r=2", secure.port()).as_str()
    );
    let answer = support::send(&c, "POST", &format!("http://{}/form", drover.web()), &[("host", "a.test")])
        .await
        .expect("an answer");
    assert_eq!(answer.status, 308, "a POST keeps its method");
    // The router has no `tls` of its own: the entrypoint's `http.tls` makes it a TLS router there.
    let (status, body, _) = Client::new(&["http/1.1"], None)
        .get(secure, "a.test", "a.test", "/x")
        .await
        .expect("https");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_input_is_reported_and_everything_else_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let good = ca.leaf(dir.path(), "good", &["a.test"]);
    let other = ca.leaf(dir.path(), "other", &["b.test"]);
    // A key that belongs to another certificate.
    let mismatched = ca.leaf(dir.path(), "mismatched", &["c.test"]);
    std::fs::copy(&other.key_file, &mismatched.key_file).expect("copy key");
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`a.test`)", "s", "[http.routers.a.tls]\n"),
        router("typo", "Host(`typo.test`)", "s", "[http.routers.typo.tls]\noptions = \"weak\"\n"),
        router("missing", "Host(`m.test`)", "s", "[http.routers.missing.tls]\noptions = \"nope\"\n"),
        service("s", backend),
        good.toml(),
        mismatched.toml(),
        "[[tls.certificates]]\ncertFile = \"/nonexistent/x.pem\"\nkeyFile = \"/nonexistent/x.key\"\n".to_string(),
        "[tls.options.weak]\ncipherSuites = [\"TLS_RSA_WITH_AES_128_CBC_SHA\", \"TLS_MADE_UP\"]\n".to_string(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let client = Client::new(&["http/1.1"], None);
    let (status, _, _) = client.get(drover.web(), "a.test", "a.test", "/").await.expect("a.test serves");
    assert_eq!(status, 200);
    let certs = api(&drover, "/api/tls/certificates").await.to_string();
    assert!(certs.contains("the key does not match the certificate"), "{certs}");
    assert!(certs.contains("/nonexistent/x.pem: cannot read"), "{certs}");
    let routers = api(&drover, "/api/http/routers").await;
    let find = |n: &str| {
        routers
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .expect("listed")
    };
    assert_eq!(find("typo@file")["status"], "disabled");
    assert!(find("typo@file")["error"].to_string().contains("`weak@file` are invalid"));
    assert!(find("missing@file")["error"].to_string().contains("`nope@file` do not exist"));
    let options = api(&drover, "/api/tls/options").await.to_string();
    assert!(options.contains("`TLS_MADE_UP` is not a cipher suite name"), "{options}");
    assert!(options.contains("TLS_RSA_WITH_AES_128_CBC_SHA` is ignored"), "{options}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_within_a_second_without_failing_requests_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let ca = Ca::new("CA");
    let first = ca.leaf(&certs, "site", &["localhost"]);
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`localhost`)", "s", "[http.routers.a.tls]\n"),
        service("s", backend),
        first.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let web = drover.web();
    let client = Client::new(&["http/1.1"], None);
    assert_eq!(client.presented(web, "localhost").await.expect("handshake"), first.der);

    // wrk keeps HTTPS connections busy while the files are replaced (rename over, as certbot).
    let wrk = Command::new("wrk")
        .args(["-t1", "-c4", "-d3s", &format!("https://localhost:{}/", web.port())])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wrk runs (tests/setup.sh installs it)");
    tokio::time::sleep(Duration::from_millis(500)).await; // let wrk get going: pacing, not a wait
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    let second = ca.leaf(&staging, "site", &["localhost"]);
    std::fs::rename(&second.key_file, &first.key_file).expect("rename key");
    std::fs::rename(&second.cert_file, &first.cert_file).expect("rename cert");
    let replaced = Instant::now();
    let mut seen = None;
    while replaced.elapsed() < Duration::from_secs(5) {
        if client.presented(web, "localhost").await.ok().as_deref() == Some(second.der.as_slice()) {
            seen = Some(replaced.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.expect("the new certificate is served");
    println!("new certificate served {seen:?} after the files were replaced");
    assert!(seen < Duration::from_secs(1), "took {seen:?}");
    let out = wrk.wait_with_output().expect("wrk finishes");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(report.contains("requests in"), "{report}");
    assert!(!report.contains("Socket errors") && !report.contains("Non-2xx"), "{report}");

    // A broken replacement (a key of another pair) keeps the second certificate serving.
    let third = ca.leaf(&staging, "other", &["localhost"]);
    std::fs::copy(&third.key_file, &first.key_file).expect("overwrite key in place");
    let body = loop_until_error(&drover).await;
    assert!(body.contains("does not match"), "{body}");
    assert_eq!(
        client.presented(web, "localhost").await.expect("handshake"),
        second.der,
        "the last good pair serves"
    );
}

/// Polls `/api/tls/certificates` until a certificate reports an error (up to 5 s).
async fn loop_until_error(drover: &TestDrover) -> String {
    let mut last = String::new();
    for _ in 0..500 {
        last = api(drover, "/api/tls/certificates").await.to_string();
        if last.contains("\"error\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    last
}

/// sslyze (PyPI; tests/setup.sh installs it) scans a TLS entrypoint: no protocol below TLS 1.2,
/// every accepted suite with forward secrecy (ECDHE, or TLS 1.3), a chain valid against the CA,
/// no compression, no insecure renegotiation, and Mozilla's `intermediate` profile met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_scanner_finds_only_modern_protocols_forward_secret_suites_and_a_valid_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Scan CA");
    let server = ca.leaf(dir.path(), "server", &["localhost"]);
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("a", "Host(`localhost`)", "s", "[http.routers.a.tls]\n"),
        service("s", backend),
        server.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let json = dir.path().join("scan.json");
    let out = tokio::process::Command::new("sslyze")
        .args([
            &format!("--json_out={}", json.display()),
            &format!("--certinfo_ca_file={}", ca_file.display()),
            "--mozilla_config=disable",
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            "--certinfo",
            "--compression",
            "--reneg",
            "--resum",
            &format!("localhost:{}{{127.0.0.1}}", drover.web().port()),
        ])
        .output()
        .await
        .expect("sslyze runs (tests/setup.sh installs it)");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no scan result ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let scan: serde_json::Value = serde_json::from_str(&text).expect("sslyze JSON");
    let result = &scan["server_scan_results"][0]["scan_result"];
    assert!(!result.is_null(), "{text}");
    let accepted = |protocol: &str| -> Vec<String> {
        result[protocol]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap_or_else(|| panic!("{protocol} scanned: {}", result[protocol]))
            .iter()
            .filter_map(|s| s["cipher_suite"]["name"].as_str().map(str::to_string))
            .collect()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert!(accepted(old).is_empty(), "{old} accepted: {:?}", accepted(old));
    }
    let tls12 = accepted("tls_1_2_cipher_suites");
    assert!(!tls12.is_empty(), "TLS 1.2 is offered");
    assert!(tls12.iter().all(|s| s.contains("ECDHE")), "forward secrecy only: {tls12:?}");
    assert!(!accepted("tls_1_3_cipher_suites").is_empty(), "TLS 1.3 is offered");
    let deployment = &result["certificate_info"]["result"]["certificate_deployments"][0];
    let trusted = deployment["path_validation_results"]
        .as_array()
        .expect("path validation results")
        .iter()
        .any(|v| v["trust_store"]["name"] == "Supplied CA file" && v["was_validation_successful"] == true);
    assert!(trusted, "the chain is valid against the CA: {deployment}");
    println!(
        "{}",
        serde_json::json!({"compression": result["tls_compression"]["result"], "reneg": result["session_renegotiation"]["result"], "resumption": result["session_resumption"]["result"], "tls12": tls12})
    );
    assert_eq!(result["tls_compression"]["result"]["supports_compression"], false);
    assert_eq!(
        result["session_renegotiation"]["result"]["is_vulnerable_to_client_renegotiation_dos"],
        false
    );
    assert_eq!(result["session_renegotiation"]["result"]["supports_secure_renegotiation"], true);
    let resumption = &result["session_resumption"]["result"];
    assert_eq!(
        resumption["session_id_resumption_result"], "FULLY_SUPPORTED",
        "sessions resume: {resumption}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_works_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let server = ca.leaf(dir.path(), "server", &["ws.test"]);
    let (backend, _whoami) = support::whoami::spawn("ws").await;
    let routes = [
        router("ws", "Host(`ws.test`)", "s", "[http.routers.ws.tls]\n"),
        service("s", backend),
        server.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let tls = Client::new(&["http/1.1"], None)
        .connect(drover.web(), "ws.test")
        .await
        .expect("TLS");
    let (mut ws, _) = tokio_tungstenite::client_async("wss://ws.test/echo", tls)
        .await
        .expect("a WebSocket over TLS");
    ws.send(Message::text("over tls")).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo in time");
    assert!(
        matches!(echoed, Some(Ok(Message::Text(ref t))) if t.as_str() == "over tls"),
        "{echoed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecdsa_and_an_rsa_certificate_for_one_name_are_chosen_by_the_clients_signature_schemes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let ecdsa = ca.leaf(dir.path(), "ecdsa", &["dual.test"]);
    // rcgen cannot make RSA keys: openssl can.
    let (rsa_cert, rsa_key) = (dir.path().join("rsa.pem"), dir.path().join("rsa.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=dual.test",
        ])
        .args(["-addext", "subjectAltName=DNS:dual.test", "-keyout"])
        .arg(&rsa_key)
        .arg("-out")
        .arg(&rsa_cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (backend, _whoami) = support::whoami::spawn("tls").await;
    let routes = [
        router("d", "Host(`dual.test`)", "s", "[http.routers.d.tls]\n"),
        service("s", backend),
        format!(
            "[[tls.certificates]]\ncertFile = \"{}\"\nkeyFile = \"{}\"\n",
            rsa_cert.display(),
            rsa_key.display()
        ),
        ecdsa.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let presented = Client::new(&["http/1.1"], None)
        .presented(drover.web(), "dual.test")
        .await
        .expect("handshake");
    assert_eq!(presented, ecdsa.der, "a client that takes both gets the cheaper ECDSA one");
    let presented = Client::rsa_only()
        .presented(drover.web(), "dual.test")
        .await
        .expect("an RSA-only handshake");
    let rsa_der = rustls::pki_types::CertificateDer::from_pem_file(&rsa_cert).expect("RSA PEM");
    assert_eq!(presented, rsa_der.to_vec(), "an RSA-only client gets the RSA one");
}
