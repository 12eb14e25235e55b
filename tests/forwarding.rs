//! What the backend receives, and what clients get when drover answers itself.

mod support;

use std::time::{Duration, Instant};

use support::{client, send, servers_toml, service_toml, whoami, TestDrover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_and_forwarded_headers_rebuilt() {
    let (backend, _h) = whoami::spawn("b").await;
    let drover = TestDrover::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)])).await;
    let c = client();
    let a = send(
        &c,
        "GET",
        &drover.url("/h?q=1"),
        &[
            ("host", "app.local:8443"),
            ("connection", "x-secret, X-Forwarded-For"),
            ("x-secret", "do-not-forward"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "deflate;q=0.5, trailers"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-custom", "kept"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(a.status, 200);
    for gone in ["x-secret", "keep-alive", "proxy-connection", "forwarded", "x_forwarded_for"] {
        assert_eq!(a.received(gone), None, "{gone} must not reach the backend:\n{}", a.body);
    }
    assert_eq!(a.received("te"), Some("trailers"), "of TE, only `trailers` goes end to end");
    assert_eq!(a.received("x-custom"), Some("kept"));
    assert_eq!(
        a.received("x-forwarded-for"),
        Some("127.0.0.1"),
        "rebuilt from the socket, not the client's value"
    );
    assert_eq!(a.received("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(a.received("x-forwarded-proto"), Some("http"));
    assert_eq!(a.received("x-forwarded-host"), Some("app.local:8443"));
    assert_eq!(a.received("x-forwarded-port"), Some("8443"));
    assert_eq!(a.received("host"), Some("app.local:8443"), "Host passes through by default");
    assert!(a.body.contains("GET /h?q=1 HTTP/1.1"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_host_header_false_sends_the_server_authority() {
    let (backend, _h) = whoami::spawn("b").await;
    let routes = format!(
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n[http.services.s.loadBalancer]\npassHostHeader = false\n{}",
        servers_toml("s", &[(backend, 1)])
    );
    let drover = TestDrover::start(&routes).await;
    let a = send(&client(), "GET", &drover.url("/"), &[("host", "app.local")])
        .await
        .expect("request");
    assert_eq!(a.received("host"), Some(backend.to_string().as_str()));
    assert_eq!(a.received("x-forwarded-host"), Some("app.local"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    // A raw backend that sends hop-by-hop headers in its response.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=9\r\nX-Public: yes\r\n\r\nok")
                    .await;
            });
        }
    });
    let drover = TestDrover::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)])).await;
    let a = send(&client(), "GET", &drover.url("/"), &[]).await.expect("request");
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));
    assert!(
        a.headers.get("x-internal").is_none() && a.headers.get("keep-alive").is_none(),
        "{:?}",
        a.headers
    );
    assert_eq!(a.headers["x-public"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_answers_404_502_503_504_say_which() {
    let (slow, _h) = whoami::spawn("slow").await;
    let dead = support::free_port();
    let routes = format!(
        "{}{}{}[http.routers.empty]\nrule = \"Path(`/empty`)\"\nservice = \"empty\"\n[http.services.empty.loadBalancer]\nservers = []\n",
        service_toml("dead", "Path(`/dead`)", "dead", &[(dead, 1)]),
        service_toml("slow", "Path(`/slow`)", "slow", &[(slow, 1)]),
        service_toml("zero", "Path(`/zero`)", "zero", &[(slow, 0)]),
    );
    let drover = TestDrover::start_with(
        &routes,
        "[serversTransport.forwardingTimeouts]\nresponseHeaderTimeout = \"300ms\"\n",
    )
    .await;
    let c = client();
    let cases = [
        ("/nothing", 404, "no router matches"),
        ("/dead", 502, "Bad Gateway"),
        ("/empty", 503, "no available server"),
        ("/zero", 503, "no available server"),
        ("/slow?delay=2s", 504, "did not answer in time"),
        // The response-head timer is kept per client connection: after it fired it is armed
        // again for the next request, and a fast answer is not cut by an earlier deadline.
        ("/slow?delay=100ms", 200, "Name: slow"),
        ("/slow?delay=2s", 504, "did not answer in time"),
    ];
    for (path, status, text) in cases {
        let started = Instant::now();
        let a = send(&c, "GET", &drover.url(path), &[]).await.expect("request");
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(a.body.contains(text), "{path}: {}", a.body);
        if status != 200 {
            assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
        }
        if status == 504 {
            assert!(started.elapsed() < Duration::from_millis(1500), "the response timeout cut the wait");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_clients_are_served() {
    let (backend, _h) = whoami::spawn("h2").await;
    let drover = TestDrover::start(&service_toml("r", "Host(`h2.local`)", "s", &[(backend, 1)])).await;
    let url = format!("http://h2.local:{}/two", drover.web().port());
    let req = http::Request::get(url).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(drover.web()).await.unwrap()),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let response = sender.send_request(req).await.expect("h2 request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.headers()["x-whoami-name"], "h2");
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("GET /two HTTP/1.1"), "forwarded as HTTP/1.1: {body}");
    assert!(
        body.to_ascii_lowercase()
            .contains(&format!("host: h2.local:{}", drover.web().port())),
        "the :authority became Host: {body}"
    );
}
