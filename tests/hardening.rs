//! Hardening (issue #20): what an attacker or an unlucky operator sends, on raw sockets, against
//! backends that record exactly what they received.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;

use tokio::net::TcpStream;

use support::wire::{exchange, exchange_on, router, statuses, until_closed, Wire};
use support::TestDrover;

/// A backend that answers `200 <name>` to every request and keeps each request head it received
/// (as sent, without the blank line).
struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn spawn(name: &'static str) -> Self {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        let backend = Wire::spawn(move |request| {
            let head = request.split_once("\r\n\r\n").map_or(request, |(head, _)| head);
            kept.lock().unwrap().push(head.to_string());
            Some(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len()).into_bytes())
        })
        .await;
        Self { addr: backend.addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The value of header `name` in the only request received.
    fn only_header(&self, name: &str) -> Option<String> {
        let heads = self.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        heads[0].lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn only_request_line(&self) -> String {
        let heads = self.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        heads[0].lines().next().unwrap_or_default().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_that_routed_a_request_is_the_one_forwarded() {
    let a = Recorder::spawn("a").await;
    let b = Recorder::spawn("b").await;
    let routes = router("a", "Host(`a.test`)", a.addr) + &router("b", "Host(`b.test`)", b.addr);
    let drover = TestDrover::start(&routes).await;
    let (status, body) = exchange(drover.web(), b"GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "a"));
    assert!(b.heads().is_empty(), "b.test's backend saw nothing");
    assert_eq!(a.only_header("host").as_deref(), Some("a.test"));
    assert_eq!(a.only_header("x-forwarded-host").as_deref(), Some("a.test"));
    assert_eq!(a.only_request_line(), "GET /x HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_host_header_that_differs_from_the_authority_is_refused() {
    let a = Recorder::spawn("a").await;
    let b = Recorder::spawn("b").await;
    let routes = router("a", "Host(`a.test`)", a.addr) + &router("b", "Host(`b.test`)", b.addr);
    let drover = TestDrover::start(&routes).await;
    let web = drover.web();
    let send = |host: Option<&'static str>| async move {
        let mut request = http::Request::builder().uri(format!("http://a.test:{}/x", web.port()));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let request = request.body(Empty::<Bytes>::new()).unwrap();
        // h2c with prior knowledge; the URI above becomes :authority.
        let stream = TcpStream::connect(web).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.map(|r| r.status().as_u16())
    };
    assert_eq!(send(Some("b.test")).await.expect("an answer"), 400);
    assert!(a.heads().is_empty() && b.heads().is_empty(), "nothing was forwarded");
    assert_eq!(send(None).await.expect("an answer"), 200);
    assert!(a.only_header("host").is_some_and(|h| h.starts_with("a.test")), "{:?}", a.heads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repeated_and_invalid_hosts_get_400() {
    let a = Recorder::spawn("a").await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", a.addr)).await;
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test:8o\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    ] {
        let (status, _) = exchange(drover.web(), request).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(request));
    }
    assert!(a.heads().is_empty(), "nothing was forwarded: {:?}", a.heads());
    // HTTP/1.0 may come without a Host.
    let (status, body) = exchange(drover.web(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_routing_and_forwarded_as_routed() {
    let api = Recorder::spawn("api").await;
    let admin = Recorder::spawn("admin").await;
    let routes = router("api", "PathPrefix(`/api`)", api.addr) + &router("admin", "PathPrefix(`/admin`)", admin.addr);
    let drover = TestDrover::start(&routes).await;
    for (target, line) in [
        ("/api/../admin/x?q=%2e", "GET /admin/x?q=%2e HTTP/1.1"),
        ("/api/%2e%2e/admin/x", "GET /admin/x HTTP/1.1"),
        ("/api/%2E%2E/admin/./x", "GET /admin/x HTTP/1.1"),
        ("//admin//x", "GET /admin/x HTTP/1.1"),
    ] {
        admin.heads.lock().unwrap().clear();
        let request = format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let (status, body) = exchange(drover.web(), request.as_bytes()).await;
        assert_eq!((status, body.as_str()), (200, "admin"), "{target}");
        assert_eq!(admin.only_request_line(), line, "{target}");
    }
    assert!(api.heads().is_empty(), "the /api router never saw them: {:?}", api.heads());
    // Encoded characters that servers decode differently are refused.
    for target in [
        "/api/a%2Fb",
        "/api/a%5Cb",
        "/api/a%00",
        "/api/a%3Bb",
        "/api/a%25b",
        "/api/a%3Fb",
        "/api/a%23b",
        "/api/%zz",
        "/api\\..\\admin/x",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let (status, _) = exchange(drover.web(), request.as_bytes()).await;
        assert_eq!(status, 400, "{target}");
    }
    assert!(api.heads().is_empty(), "{:?}", api.heads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrypoint_may_allow_an_encoded_slash_which_is_then_kept() {
    let api = Recorder::spawn("api").await;
    let drover = TestDrover::start_with(
        &router("api", "PathPrefix(`/api`)", api.addr),
        "[entryPoints.web.http.encodedCharacters]\nallowEncodedSlash = true\n",
    )
    .await;
    let (status, _) = exchange(drover.web(), b"GET /api/a%2Fb HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(api.only_request_line(), "GET /api/a%2Fb HTTP/1.1");
    let (status, _) = exchange(drover.web(), b"GET /api/a%3Bb HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 400, "only the slash was allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_the_asterisk_form_and_double_framing_are_answered_locally() {
    let a = Recorder::spawn("a").await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", a.addr)).await;
    let (status, _) = exchange(drover.web(), b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n").await;
    assert_eq!(status, 405);
    let (status, _) = exchange(drover.web(), b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 400);
    // Transfer-Encodings a server behind drover might read otherwise than hyper does.
    for te in [
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: ,chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: identity",
    ] {
        let request = format!("POST / HTTP/1.1\r\nHost: a.test\r\n{te}\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
        let (status, _) = exchange(drover.web(), request.as_bytes()).await;
        assert_eq!(status, 400, "{te}");
    }
    let (status, _) = exchange(
        drover.web(),
        b"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "chunked on HTTP/1.0");
    assert!(a.heads().is_empty(), "nothing was forwarded: {:?}", a.heads());
    // Content-Length with Transfer-Encoding, in either order, on a new connection or after a
    // request on a kept-alive one: refused as nginx does (RFC 9112 §6.1), nothing forwarded.
    for (name, raw) in [
        (
            "length first",
            &b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"[..],
        ),
        (
            "chunked first",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\ncontent-LENGTH: 4\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        ),
    ] {
        let answers = until_closed(drover.web(), raw, Duration::from_secs(5)).await;
        assert_eq!(statuses(&answers), [400], "{name}: {answers}");
        assert!(answers.contains("Content-Length and Transfer-Encoding"), "{name}: {answers}");
    }
    let mut kept = TcpStream::connect(drover.web()).await.expect("connect");
    let (first, _) = exchange_on(&mut kept, b"GET /ok HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(first, 200);
    let post = b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
    let (second, why) = exchange_on(&mut kept, post).await;
    assert_eq!(second, 400, "on a kept-alive connection too: {why}");
    assert!(
        a.heads().iter().all(|h| h.starts_with("GET /ok ")),
        "no POST was forwarded: {:?}",
        a.heads()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_left_drover_goes_on_to_every_other_server() {
    let live = Recorder::spawn("live").await;
    // Three servers that refuse connections: ports that were free a moment ago.
    let dead: Vec<SocketAddr> = (0..3).map(|_| support::free_port()).collect();
    let mut routes = "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n".to_string();
    for addr in dead.iter().chain([&live.addr]) {
        routes.push_str(&format!("[[http.services.s.loadBalancer.servers]]\nurl = \"http://{addr}\"\n"));
    }
    // Retries of requests that reached a server are off: failing over is not a retry.
    routes.push_str("[http.services.s.loadBalancer.retry]\nattempts = 0\n");
    let drover = TestDrover::start(&routes).await;
    let c = support::client();
    for i in 0..40 {
        let answer = support::get(&c, &drover.url(&format!("/{i}"))).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "live"), "request {i}");
    }
    assert_eq!(live.heads().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarding_headers_are_kept_and_appended_to() {
    let a = Recorder::spawn("a").await;
    let routes = router("a", "PathPrefix(`/`)", a.addr) + &router("spoofed", "ClientIP(`192.0.2.9`)", a.addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.json");
    let drover = TestDrover::start_with(
        &routes,
        &format!(
            "[entryPoints.web.forwardedHeaders]\ntrustedIPs = [\"10.0.0.0/8\", \"127.0.0.1\"]\n[accessLog]\nfilePath = \"{}\"\nformat = \"json\"\n",
            log.display()
        ),
    )
    .await;
    let (status, _) = exchange(
        drover.web(),
        b"GET /t HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 192.0.2.9\r\nX_Forwarded_Host: evil.test\r\n\r\n",
    )
    .await;
    // ClientIP matches the socket's address, never a forwarded one: the `spoofed` router
    // (longer rule, so tried first) did not take it.
    assert_eq!(status, 200);
    assert_eq!(a.only_header("x-forwarded-for").as_deref(), Some("192.0.2.9, 127.0.0.1"));
    assert_eq!(a.only_header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(a.only_header("x-real-ip").as_deref(), Some("192.0.2.9"));
    assert_eq!(
        a.only_header("x-forwarded-host").as_deref(),
        Some("a.test"),
        "underscore spellings never pass"
    );
    let line = support::wait_for_text(
        Duration::from_secs(5),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |t| t.contains('\n'),
    )
    .await;
    let entry: serde_json::Value = serde_json::from_str(line.lines().next().expect("an access-log line")).expect("JSON");
    assert_eq!(entry["ClientHost"], "127.0.0.1");
    assert_eq!(entry["request_X-Forwarded-For"], "192.0.2.9");
    assert_eq!(entry["RouterName"], "a@file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_forwarding_headers_are_replaced() {
    let a = Recorder::spawn("a").await;
    let drover = TestDrover::start_with(
        &router("a", "PathPrefix(`/`)", a.addr),
        "[entryPoints.web.forwardedHeaders]\ntrustedIPs = [\"10.0.0.0/8\"]\n",
    )
    .await;
    let (status, _) = exchange(
        drover.web(),
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 192.0.2.9\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(a.only_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(a.only_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(a.only_header("x-real-ip").as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_is_counted_and_closed_when_idle() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (backend, _whoami) = support::whoami::spawn("ws").await;
    let drover = TestDrover::start_with(
        &router("ws", "PathPrefix(`/`)", backend),
        "[entryPoints.web.transport.respondingTimeouts]\nidleTimeout = \"500ms\"\n",
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", drover.web()))
        .await
        .expect("a WebSocket through drover");
    ws.send(Message::text("hello")).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo in time");
    assert!(
        matches!(echoed, Some(Ok(Message::Text(ref t))) if t.as_str() == "hello"),
        "{echoed:?}"
    );
    assert_eq!(
        drover.open_connections().expect("an open-connections gauge for web"),
        1,
        "the tunnel is one open connection"
    );
    // Silence both ways: drover closes it after idleTimeout (between one and two periods).
    let silent = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the idle tunnel was not closed within 5 s");
    assert!(silent.elapsed() >= Duration::from_millis(500), "{:?}", silent.elapsed());
    support::wait_until(Duration::from_secs(2), || {
        drover.open_connections().expect("an open-connections gauge for web") == 0
    })
    .await
    .expect("the gauge goes back to 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answer_with_broken_framing_becomes_a_502_and_its_connection_is_dropped() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ] {
        let backend = Wire::answering(answer).await;
        let drover = TestDrover::start(&router("r", "PathPrefix(`/`)", backend.addr)).await;
        for round in 1..=2 {
            let (status, body) = exchange(drover.web(), b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
            assert_eq!(status, 502, "{}: {body}", String::from_utf8_lossy(answer));
            assert_eq!(
                backend.connections().len(),
                round,
                "a connection that answered badly is never reused"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_side_is_never_served_on_a_traffic_entrypoint() {
    let a = Recorder::spawn("a").await;
    let drover = TestDrover::start(&router("a", "Host(`a.test`)", a.addr)).await;
    for path in ["/api/rawdata", "/api/overview", "/metrics", "/dashboard/", "/ping", "/openapi.json"] {
        let (status, body) = exchange(drover.web(), format!("GET {path} HTTP/1.1\r\nHost: admin.test\r\n\r\n").as_bytes()).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("no router"), "{path}: drover's own 404, not the admin side: {body}");
    }
    // On a host a router takes, the path goes to that router's server like any other.
    let (status, body) = exchange(drover.web(), b"GET /metrics HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "a"));
}
