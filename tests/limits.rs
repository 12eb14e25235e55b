//! Limits and slow peers from the hardening catalogue (`tests/HARDENING.md`, rows L* and B*):
//! heads too large, slow-loris clients (one and many), backends that stop reading, connect to
//! nothing or break off mid-answer, and clients that leave. Raw sockets both sides.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::wire::{breaking_off, exchange, router, status_of, until_closed, Wire};
use support::TestDrover;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_too_large_get_414_or_431_and_a_close() {
    let backend = Wire::spawn(|_| Some(ok("ok"))).await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", backend.addr)).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(1 << 20));
    let answer = until_closed(drover.web(), long_uri.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&answer), 414, "a 1 MB URI: {answer}");
    let long_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "h".repeat(70 * 1024));
    let answer = until_closed(drover.web(), long_header.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&answer), 431, "a 70 KiB header: {answer}");
    // hyper's limit is 100 header lines, Host included.
    let many = |n: usize| {
        let lines: String = (1..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("GET /many HTTP/1.1\r\nHost: a\r\n{lines}\r\n")
    };
    let answer = until_closed(drover.web(), many(101).as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&answer), 431, "101 headers: {answer}");
    assert!(backend.connections().is_empty(), "nothing was forwarded");
    let (status, _) = exchange(drover.web(), many(100).as_bytes()).await;
    assert_eq!(status, 200, "100 headers are fine");
    // A long URI pipelined after a request still gets an answer and a close, never a route.
    let pipelined = format!("GET /first HTTP/1.1\r\nHost: a\r\n\r\n{long_uri}");
    let answer = until_closed(drover.web(), pipelined.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("HTTP/1.1 414") || answer.contains("HTTP/1.1 431"), "{answer}");
}

/// A drover whose clients must send a head within `header_read`.
async fn with_header_read(backend: SocketAddr, header_read: &str) -> TestDrover {
    TestDrover::start_with(
        &router("a", "PathPrefix(`/`)", backend),
        &format!("[entryPoints.web.transport.respondingTimeouts]\nheaderReadTimeout = \"{header_read}\"\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_a_byte_at_a_time_is_cut_at_the_head_deadline() {
    let backend = Wire::spawn(|_| Some(ok("ok"))).await;
    let drover = with_header_read(backend.addr, "1s").await;
    let mut slow = TcpStream::connect(drover.web()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms of a head that would take 6 s: each byte is progress, but the
    // deadline counts from the head's first byte.
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for byte in head.chunks(1) {
        if slow.write_all(byte).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut probe)).await {
            Ok(Ok(0) | Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => panic!("drover answered a head it never got in full"),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the trickling connection was closed before its head ended");
    assert!(closed_after >= Duration::from_millis(900), "closed early: {closed_after:?}");
    assert!(closed_after < Duration::from_secs(4), "closed late: {closed_after:?}");
    assert!(backend.connections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_slow_loris_connections_do_not_keep_others_waiting() {
    let backend = Wire::spawn(|_| Some(ok("ok"))).await;
    let drover = with_header_read(backend.addr, "2s").await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(drover.web()).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();
    // Served in full while all 300 hold their half heads.
    for i in 0..50 {
        let (status, _) = exchange(drover.web(), format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await;
        assert_eq!(status, 200, "request {i}");
    }
    assert!(
        opened.elapsed() < Duration::from_secs(2),
        "the other client was served before the slow ones were cut: {:?}",
        opened.elapsed()
    );
    // And every slow one is closed at its deadline, with nothing sent back.
    for (i, stream) in slow.iter_mut().enumerate() {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("slow connection {i} still open after 10 s"));
        assert!(matches!(read, Ok(0) | Err(_)), "slow connection {i} got an answer");
    }
    assert_eq!(backend.all_text().matches("HTTP/1.1\r\n").count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_an_upload_is_cut_after_body_idle_timeout() {
    // Reads the head, then nothing: drover's writes of the body stall once the buffers fill.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        // Wait for drover to give up on us, without reading: the first error or EOF ends it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut rest = vec![0u8; 1 << 20];
        while let Ok(n) = stream.read(&mut rest).await {
            if n == 0 {
                break;
            }
        }
        let _ = closed_tx.send(()).await;
    });
    let drover = TestDrover::start_with(
        &router("a", "PathPrefix(`/`)", addr),
        "[entryPoints.web.transport.respondingTimeouts]\nheaderReadTimeout = \"5s\"\n[serversTransport.forwardingTimeouts]\nbodyIdleTimeout = \"1s\"\nresponseHeaderTimeout = \"30s\"\n",
    )
    .await;
    let mut client = TcpStream::connect(drover.web()).await.unwrap();
    client
        .write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 104857600\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Push until drover stops taking bytes or answers.
    let chunk = vec![b'x'; 64 * 1024];
    let (mut reader, mut writer) = client.into_split();
    let pushing = tokio::spawn(async move { while writer.write_all(&chunk).await.is_ok() {} });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    pushing.abort();
    assert!(read.is_ok(), "the stalled upload was never ended");
    let answer = String::from_utf8_lossy(&answer);
    let took = started.elapsed();
    // The server stopped reading: a gateway error, not the client's fault (408).
    assert!(matches!(status_of(&answer), 502 | 504), "{answer}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    tokio::time::timeout(Duration::from_secs(10), closed.recv())
        .await
        .expect("drover closed its side of the stalled backend connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_completes_a_connect_is_passed_over_after_the_dial_timeout() {
    // A listener with a backlog of one that never accepts: once its queue is full, the kernel
    // drops further SYNs and a connect to it hangs, as one to a black-holed address does.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let socket = socket2::Socket::from(hole);
    socket.listen(1).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let attempt = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(hole_addr)).await;
        match attempt {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let probe = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(hole_addr)).await;
    assert!(probe.is_err(), "the black hole still completes connects");

    let live = Wire::spawn(|_| Some(ok("live"))).await;
    let routes = format!(
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://{hole_addr}\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://{}\"\n[http.services.s.loadBalancer.retry]\nattempts = 0\n",
        live.addr
    );
    let drover = TestDrover::start_with(&routes, "[serversTransport.forwardingTimeouts]\ndialTimeout = \"300ms\"\n").await;
    for i in 0..6 {
        let started = Instant::now();
        let (status, body) = exchange(drover.web(), format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await;
        assert_eq!((status, body.as_str()), (200, "live"), "request {i}");
        assert!(started.elapsed() < Duration::from_secs(3), "request {i}: {:?}", started.elapsed());
    }
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_breaks_off_mid_answer_never_yields_a_complete_looking_one() {
    // 50 000 bytes of a promised 100 000, or of a chunked body that never ends, then a close.
    let part = "0123456789".repeat(5_000);
    for (name, head) in [
        (
            "short Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_string(),
        ),
        (
            "chunked without its end",
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", part.len()),
        ),
    ] {
        let addr = breaking_off(format!("{head}{part}").into_bytes()).await;
        let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", addr)).await;
        let got = until_closed(drover.web(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_secs(10)).await;
        // What the server sent before the break is passed on, and the break shows.
        assert_eq!(status_of(&got), 200, "{name}: {} bytes came back", got.len());
        let (head, body) = got.split_once("\r\n\r\n").expect("a head");
        let head = head.to_ascii_lowercase();
        let payload = if let Some(length) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
            let length: usize = length.trim().parse().unwrap();
            assert!(body.len() < length, "{name}: a complete-looking body");
            body.to_string()
        } else {
            assert!(head.contains("transfer-encoding: chunked"), "{name}: {head}");
            assert!(!body.ends_with("0\r\n\r\n"), "{name}: the chunked body was ended");
            // The chunks that came whole.
            let mut payload = String::new();
            let mut rest = body;
            while let Some((size, after)) = rest.split_once("\r\n") {
                let size = usize::from_str_radix(size, 16).expect("a chunk size");
                let Some(data) = after.get(..size) else { break };
                payload.push_str(data);
                rest = after.get(size + 2..).unwrap_or_default();
            }
            payload
        };
        assert_eq!(payload, part, "{name}: all 50 000 bytes were passed on");
    }

    // Over HTTP/2 the stream is reset, never ended cleanly.
    let addr = breaking_off(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec()).await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", addr)).await;
    let stream = TcpStream::connect(drover.web()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(format!("http://a:{}/", drover.web().port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a response head");
    assert_eq!(response.status(), 200);
    use http_body_util::BodyExt;
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the body ends one way or the other");
    assert!(body.is_err(), "an HTTP/2 body cut short must end in a reset, not END_STREAM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_cancels_its_upstream_request() {
    // Never answers; tells when drover closes the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(4);
    let (closed_tx, mut closed) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (seen_tx, closed_tx) = (seen_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = seen_tx.send(()).await;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = closed_tx.send(Instant::now()).await;
            });
        }
    });
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", addr)).await;
    let mut client = TcpStream::connect(drover.web()).await.unwrap();
    client.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the request reached the backend");
    let left = Instant::now();
    drop(client);
    let closed_at = tokio::time::timeout(Duration::from_secs(5), closed.recv())
        .await
        .expect("drover closed the upstream connection after its client left")
        .unwrap();
    assert!(closed_at.duration_since(left) < Duration::from_secs(2));
    let gauge = || drover.open_connections();
    support::wait_until(Duration::from_secs(5), || gauge() == Some(0))
        .await
        .unwrap_or_else(|| panic!("open connections stayed at {:?}", gauge()));
}
