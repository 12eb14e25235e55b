//! Backends over TLS and HTTP/2 (#21 item 6): `https://` servers verified with a servers
//! transport's `rootCAs` (and refused without), `serverName`, `insecureSkipVerify`, client
//! certificates for servers that require them, HTTP/2 by ALPN unless `disableHTTP2`, `h2c://`
//! servers with trailers both ways, and broken transports that disable only what uses them.
//!
//! Every backend is a real TLS or HTTP/2 server on 127.0.0.1 whose certificates come from a CA
//! made in the test; it answers with what it saw (protocol, SNI, client certificate).

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::tls_backend::{start_h2c, start_tls, Ca, TlsBackend};
use support::{client, send, Answer, HttpClient, TestDrover};

/// GET `/` through drover with `Host: host`.
async fn get_host(c: &HttpClient, d: &TestDrover, host: &str) -> Answer {
    send(c, "GET", &d.url("/"), &[("host", host)])
        .await
        .unwrap_or_else(|e| panic!("GET / for {host}: {e}"))
}

/// A router `name` for `Host(`<name>.test`)` to service `name`, over `url`, through
/// `transport` if given.
fn route(name: &str, url: &str, transport: Option<&str>) -> String {
    let transport = transport.map_or(String::new(), |t| {
        format!("[http.services.{name}.loadBalancer]\nserversTransport = \"{t}\"\n")
    });
    format!(
        "[http.routers.{name}]\nrule = \"Host(`{name}.test`)\"\nservice = \"{name}\"\n{transport}[[http.services.{name}.loadBalancer.servers]]\nurl = \"{url}\"\n"
    )
}

fn toml_path(path: &Path) -> String {
    path.display().to_string()
}

/// The JSON the admin API shows at `path`.
async fn api(c: &HttpClient, d: &TestDrover, path: &str) -> serde_json::Value {
    let answer = support::get(c, &format!("http://{}{path}", d.drover.api())).await;
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", answer.body))
}

#[tokio::test]
async fn a_private_ca_backend_is_reached_with_root_cas_and_refused_without() {
    let ca = Ca::new("drover test CA");
    let leaf = ca.issue("backend", &["localhost", "127.0.0.1"]);
    let backend = start_tls(TlsBackend {
        leaf: &leaf,
        http2: true,
        client_ca: None,
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let url = format!("https://127.0.0.1:{}", backend.port());
    let routes = format!(
        "{}{}[http.serversTransports.private]\nrootCAs = [\"{}\"]\n",
        route("trusted", &url, Some("private")),
        route("untrusted", &url, None),
        toml_path(&ca_file)
    );
    let d = TestDrover::start(&routes).await;
    let c = client();

    let trusted = get_host(&c, &d, "trusted.test").await;
    assert_eq!(trusted.status, 200, "{}", trusted.body);
    assert!(
        trusted.body.starts_with("proto=HTTP/2.0"),
        "HTTP/2 chosen by ALPN: {}",
        trusted.body
    );
    assert!(
        trusted.body.contains("authority=trusted.test"),
        "the client's Host is passed: {}",
        trusted.body
    );

    // The same server without the private CA: drover's bundled roots do not know it.
    let untrusted = get_host(&c, &d, "untrusted.test").await;
    assert_eq!(untrusted.status, 502, "{}", untrusted.body);
    assert!(untrusted.body.contains("not signed by a trusted CA"), "{}", untrusted.body);

    // The API shows which transport each service uses.
    let service = api(&c, &d, "/api/http/services/trusted@file").await;
    assert_eq!(service["serversTransport"], "private@file");
    let transport = api(&c, &d, "/api/http/serversTransports/private@file").await;
    assert_eq!(transport["usedBy"], serde_json::json!(["trusted@file"]));
    assert_eq!(transport["status"], "enabled");
}

#[tokio::test]
async fn server_name_is_sent_as_sni_and_checked_and_insecure_skip_verify_checks_nothing() {
    let ca = Ca::new("drover test CA");
    let leaf = ca.issue("internal", &["backend.internal"]);
    let backend = start_tls(TlsBackend {
        leaf: &leaf,
        http2: true,
        client_ca: None,
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = toml_path(&ca.write(dir.path(), "ca.pem"));
    let url = format!("https://127.0.0.1:{}", backend.port());
    let localhost = format!("https://localhost:{}", backend.port());
    let routes = format!(
        "{}{}{}[http.serversTransports.named]\nrootCAs = [\"{ca_file}\"]\nserverName = \"backend.internal\"\n\
         [http.serversTransports.plain]\nrootCAs = [\"{ca_file}\"]\n\
         [http.serversTransports.insecure]\ninsecureSkipVerify = true\n",
        route("named", &url, Some("named")),
        route("wrongname", &localhost, Some("plain")),
        route("insecure", &localhost, Some("insecure")),
    );
    let d = TestDrover::start(&routes).await;
    let c = client();

    let named = get_host(&c, &d, "named.test").await;
    assert_eq!(named.status, 200, "{}", named.body);
    assert!(named.body.contains("sni=backend.internal"), "{}", named.body);

    let wrong = get_host(&c, &d, "wrongname.test").await;
    assert_eq!(wrong.status, 502, "{}", wrong.body);
    assert!(wrong.body.contains("not valid for the expected name"), "{}", wrong.body);

    let insecure = get_host(&c, &d, "insecure.test").await;
    assert_eq!(insecure.status, 200, "{}", insecure.body);
    assert!(insecure.body.contains("sni=localhost"), "SNI is the URL's host: {}", insecure.body);
}

#[tokio::test]
async fn a_backend_that_requires_a_client_certificate_gets_the_transports() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let leaf = ca.issue("backend", &["127.0.0.1"]);
    let backend = start_tls(TlsBackend {
        leaf: &leaf,
        http2: true,
        client_ca: Some(&clients),
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = toml_path(&ca.write(dir.path(), "ca.pem"));
    let (cert, key) = clients.issue("drover", &["drover.client"]).write(dir.path(), "client");
    let (other_cert, other_key) = Ca::new("someone else")
        .issue("drover", &["drover.client"])
        .write(dir.path(), "other");
    let url = format!("https://127.0.0.1:{}", backend.port());
    let routes = format!(
        "{}{}{}{}[http.serversTransports.mtls]\nrootCAs = [\"{ca_file}\"]\n\
         [[http.serversTransports.mtls.certificates]]\ncertFile = \"{}\"\nkeyFile = \"{}\"\n\
         [http.serversTransports.nocert]\nrootCAs = [\"{ca_file}\"]\n\
         [http.serversTransports.nocerth1]\nrootCAs = [\"{ca_file}\"]\ndisableHTTP2 = true\n\
         [http.serversTransports.othercert]\nrootCAs = [\"{ca_file}\"]\n\
         [[http.serversTransports.othercert.certificates]]\ncertFile = \"{}\"\nkeyFile = \"{}\"\n",
        route("mtls", &url, Some("mtls")),
        route("nocert", &url, Some("nocert")),
        route("othercert", &url, Some("othercert")),
        route("nocerth1", &url, Some("nocerth1")),
        toml_path(&cert),
        toml_path(&key),
        toml_path(&other_cert),
        toml_path(&other_key),
    );
    let d = TestDrover::start(&routes).await;
    let c = client();

    let mtls = get_host(&c, &d, "mtls.test").await;
    assert_eq!(mtls.status, 200, "{}", mtls.body);
    assert!(mtls.body.contains("client-cert=yes"), "{}", mtls.body);
    // Over HTTP/2 and HTTP/1.1 alike: a TLS 1.3 server refuses after the handshake.
    for refused in ["nocert.test", "othercert.test", "nocerth1.test"] {
        let answer = get_host(&c, &d, refused).await;
        assert_eq!(answer.status, 502, "{refused}: {}", answer.body);
        assert!(answer.body.contains("client certificate"), "{refused}: {}", answer.body);
    }
}

#[tokio::test]
async fn disable_http2_speaks_http1_to_a_server_that_offers_http2() {
    let ca = Ca::new("drover test CA");
    let leaf = ca.issue("backend", &["127.0.0.1"]);
    let h2_backend = start_tls(TlsBackend {
        leaf: &leaf,
        http2: true,
        client_ca: None,
    })
    .await;
    let h1_backend = start_tls(TlsBackend {
        leaf: &leaf,
        http2: false,
        client_ca: None,
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = toml_path(&ca.write(dir.path(), "ca.pem"));
    let routes = format!(
        "{}{}{}[http.serversTransports.h2]\nrootCAs = [\"{ca_file}\"]\n\
         [http.serversTransports.h1]\nrootCAs = [\"{ca_file}\"]\ndisableHTTP2 = true\n",
        route("offered", &format!("https://127.0.0.1:{}", h2_backend.port()), Some("h2")),
        route("disabled", &format!("https://127.0.0.1:{}", h2_backend.port()), Some("h1")),
        route("notoffered", &format!("https://127.0.0.1:{}", h1_backend.port()), Some("h2")),
    );
    let d = TestDrover::start(&routes).await;
    let c = client();
    for (host, proto) in [
        ("offered.test", "HTTP/2.0"),
        ("disabled.test", "HTTP/1.1"),
        ("notoffered.test", "HTTP/1.1"),
    ] {
        // Twice: the second request reuses the pooled (or multiplexed) connection.
        for _ in 0..2 {
            let answer = get_host(&c, &d, host).await;
            assert_eq!(answer.status, 200, "{host}: {}", answer.body);
            assert!(answer.body.starts_with(&format!("proto={proto}")), "{host}: {}", answer.body);
        }
    }
}

/// A request with trailers, sent over HTTP/2 with prior knowledge to drover, which forwards it to
/// an `h2c://` server: the server receives the request's trailers, and the client receives the
/// response's (`grpc-status` and the echo of the request's).
#[tokio::test]
async fn trailers_pass_both_ways_to_an_h2c_server() {
    let backend = start_h2c().await;
    let routes = format!(
        "[http.routers.grpc]\nrule = \"PathPrefix(`/`)\"\nservice = \"grpc\"\n[[http.services.grpc.loadBalancer.servers]]\nurl = \"h2c://{backend}\"\n"
    );
    let d = TestDrover::start(&routes).await;
    let tcp = tokio::net::TcpStream::connect(d.web()).await.expect("connect to drover");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("HTTP/2 with prior knowledge");
    tokio::spawn(conn);
    for call in 0..2 {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_str(&format!("call-{call}")).expect("value"));
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let request = Request::post(format!("http://{}/echo.Echo/Say", d.web()))
            .header("te", "trailers")
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("answered in time")
            .expect("response");
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("the response's trailers arrived");
        let body = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
        assert!(body.starts_with("proto=HTTP/2.0") && body.contains("body=5"), "{body}");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(
            trailers["x-echo-x-checksum"],
            format!("call-{call}").as_str(),
            "the server got the request's trailers"
        );
    }
}

#[tokio::test]
async fn a_missing_transport_or_an_unreadable_ca_disables_only_what_uses_it() {
    let backend = start_h2c().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let missing_ca = dir.path().join("not-yet.pem");
    let good = format!("h2c://{backend}");
    let routes = format!(
        "{}{}{}[http.serversTransports.broken]\nrootCAs = [\"{}\"]\n",
        route("good", &good, None),
        route("orphan", &good, Some("nope")),
        route("badca", "https://127.0.0.1:1", Some("broken")),
        toml_path(&missing_ca),
    );
    let d = TestDrover::start(&routes).await;
    let c = client();

    assert_eq!(get_host(&c, &d, "good.test").await.status, 200, "other routes keep serving");
    assert_eq!(
        get_host(&c, &d, "orphan.test").await.status,
        404,
        "the router of the disabled service"
    );
    assert_eq!(get_host(&c, &d, "badca.test").await.status, 404);

    let orphan = api(&c, &d, "/api/http/services/orphan@file").await;
    assert_eq!(orphan["status"], "disabled");
    let why = orphan["error"].to_string();
    assert!(
        why.contains("http.services.orphan.loadBalancer.serversTransport") && why.contains("`nope@file` does not exist"),
        "{why}"
    );
    let broken = api(&c, &d, "/api/http/serversTransports/broken@file").await;
    assert_eq!(broken["status"], "disabled");
    let why = broken["error"].to_string();
    assert!(
        why.contains("http.serversTransports.broken.rootCAs[0]") && why.contains(&toml_path(&missing_ca)),
        "{why}"
    );
    let badca = api(&c, &d, "/api/http/services/badca@file").await;
    assert_eq!(badca["status"], "disabled");
    assert!(badca["error"].to_string().contains("broken@file"), "{}", badca["error"]);
    let router = api(&c, &d, "/api/http/routers/badca@file").await;
    assert_eq!(router["status"], "disabled");

    // The file appears and the configuration is reloaded: the transport is in force.
    Ca::new("late CA").write(dir.path(), "not-yet.pem");
    d.write_routes(&format!("{routes}{}", route("another", &good, None)));
    d.wait_for_generation(2).await;
    let broken = api(&c, &d, "/api/http/serversTransports/broken@file").await;
    assert_eq!(broken["status"], "enabled", "{broken}");
    assert_eq!(get_host(&c, &d, "badca.test").await.status, 502, "routed now; the server is down");
}

#[tokio::test]
async fn a_transports_response_header_timeout_replaces_the_static_one() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("http://{silent}");
    let routes = format!(
        "{}[http.serversTransports.quick.forwardingTimeouts]\nresponseHeaderTimeout = \"300ms\"\n",
        route("quick", &url, Some("quick"))
    );
    // The static deadline is a minute: only the transport's can answer within the 10 s below.
    let d = TestDrover::start(&routes).await;
    let c = client();
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), get_host(&c, &d, "quick.test"))
        .await
        .expect("answered by the transport's deadline, not the static minute");
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the deadline");
}
