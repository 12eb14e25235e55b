//! Client connection timeouts: `headerReadTimeout` cuts off clients that are slow to send a
//! request head, `idleTimeout` closes keep-alive connections nobody uses, and neither touches a
//! request that is being served. Raw TCP clients, so what the socket sees is what is checked.

mod support;

use std::time::{Duration, Instant};

use support::{service_toml, whoami, TestDrover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn timeouts(header_read: &str, idle: &str) -> String {
    format!("[entryPoints.web.transport.respondingTimeouts]\nheaderReadTimeout = \"{header_read}\"\nidleTimeout = \"{idle}\"\n")
}

/// Reads until the peer closes the connection (or `limit` passes); the time it took, and
/// everything read.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (closed.ok().map(|()| start.elapsed()), seen)
}

/// Sends one keep-alive GET and reads its whole response (it has a Content-Length).
async fn exchange(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t.local\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_head_is_cut_off_after_header_read_timeout() {
    let (a, _ha) = whoami::spawn("a").await;
    let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &timeouts("1s", "60s")).await;

    // Half a head, then nothing.
    let connected = Instant::now();
    let mut slow = TcpStream::connect(drover.web()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t.local\r\n").await.unwrap();
    // A connection that sends nothing at all is bound by the same limit.
    let mut silent = TcpStream::connect(drover.web()).await.unwrap();

    for (what, stream) in [("half a head", &mut slow), ("nothing", &mut silent)] {
        let (closed, seen) = until_closed(stream, Duration::from_secs(10)).await;
        closed.unwrap_or_else(|| panic!("{what}: still open after 10 s"));
        let open_for = connected.elapsed();
        assert!(
            open_for >= Duration::from_millis(900) && open_for <= Duration::from_secs(4),
            "{what}: closed after {open_for:?}, expected about 1 s"
        );
        assert!(seen.is_empty(), "{what}: {}", String::from_utf8_lossy(&seen));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_lives_for_idle_timeout_not_header_read_timeout() {
    let (a, _ha) = whoami::spawn("a").await;
    let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &timeouts("1s", "3s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    let answer = exchange(&mut stream, "/first").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Still usable after more than headerReadTimeout of idleness… (idleness is what is tested
    // here: it can only be shown over time, on a drover whose runtime paused time cannot reach)
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let answer = exchange(&mut stream, "/second").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "idle past headerReadTimeout must not close: {answer}"
    );
    // …and closed once idle for idleTimeout.
    let (closed, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    let closed = closed.expect("closed within 10 s of idleness");
    assert!(
        closed >= Duration::from_millis(2_500) && closed <= Duration::from_secs(6),
        "closed after {closed:?} of idleness, expected about 3 s"
    );
}

/// An idle HTTP/1 connection drops hyper's state after a second or two and keeps its bare socket
/// ("parking", `server::timeouts`); what the client sees must not change: the next request is
/// served on the same connection, pipelined heads are all answered, and the start of a head
/// sent before a pause is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_long_enough_to_park_serves_its_next_requests_as_before() {
    let (a, _ha) = whoami::spawn("a").await;
    let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &timeouts("10s", "60s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    let answer = exchange(&mut stream, "/first").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("/first"), "{answer}");
    // Past the parking delay (1 s, looked at every second): parked by now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Two whole heads and the start of a third, in one write.
    stream
        .write_all(b"GET /second HTTP/1.1\r\nHost: t.local\r\n\r\nGET /third HTTP/1.1\r\nHost: t.local\r\n\r\nGET /fou")
        .await
        .unwrap();
    for (answer, path) in read_responses(&mut stream, 2).await.iter().zip(["/second", "/third"]) {
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(path), "{path}: {answer}");
    }
    // The connection is idle with half a head in hyper's buffer: it must not park and lose it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stream.write_all(b"rth HTTP/1.1\r\nHost: t.local\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("/fourth"), "{answer}");
    // A request with a body, then a pause, then one more.
    stream
        .write_all(b"POST /fifth HTTP/1.1\r\nHost: t.local\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("/fifth"), "{answer}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let answer = exchange(&mut stream, "/sixth").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("/sixth"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_response_is_not_cut_by_client_timeouts() {
    let (a, _ha) = whoami::spawn("a").await;
    let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &timeouts("1s", "1s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    let answer = exchange(&mut stream, "/slow?delay=2500ms").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The connection went idle when that response ended, so it gets its full idleTimeout now.
    let (closed, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    let closed = closed.expect("closed within 10 s");
    assert!(closed >= Duration::from_millis(700), "closed after {closed:?}, before idleTimeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_disables_the_limits() {
    let (a, _ha) = whoami::spawn("a").await;
    let drover = TestDrover::start_with(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)]), &timeouts("0s", "0s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    let (closed, _) = until_closed(&mut stream, Duration::from_millis(2_500)).await;
    assert_eq!(closed, None, "a connection with no limits stays open");
    let answer = exchange(&mut stream, "/late").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn forwarding(response_header: &str, body_idle: &str) -> String {
    format!("[serversTransport.forwardingTimeouts]\nresponseHeaderTimeout = \"{response_header}\"\nbodyIdleTimeout = \"{body_idle}\"\n")
}

/// Reads one response (it has a Content-Length) within 10 s.
async fn read_response(stream: &mut TcpStream) -> String {
    read_responses(stream, 1).await.remove(0)
}

/// The length of the complete response (it has a Content-Length) at the start of `bytes`.
fn response_length(bytes: &[u8]) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let length: usize = String::from_utf8_lossy(&bytes[..end])
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    (bytes.len() >= end + 4 + length).then_some(end + 4 + length)
}

/// Reads `n` responses, each within 10 s. Responses to pipelined requests may arrive in one
/// segment (drover sends the writes of one pass over its ready connections together).
async fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut answers = Vec::new();
    let mut buf = [0u8; 4096];
    while answers.len() < n {
        if let Some(length) = response_length(&seen) {
            answers.push(String::from_utf8_lossy(&seen[..length]).into_owned());
            seen.drain(..length);
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(read > 0, "closed before the response ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..read]);
    }
    assert!(seen.is_empty(), "bytes after the last response: {}", String::from_utf8_lossy(&seen));
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_the_response_header_timeout_is_not_cut_while_it_moves() {
    let (backend, _w) = whoami::spawn("up").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &forwarding("500ms", "2s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t.local\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    // One byte every 150 ms: the body takes 1.5 s, three times the response-header timeout.
    let started = Instant::now();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.write_all(b"x").await.unwrap();
    }
    let answer = read_response(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Body-Length: 10"), "the server read the whole body: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_header_timeout_runs_from_the_end_of_the_body() {
    let (backend, _w) = whoami::spawn("slow").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &forwarding("500ms", "2s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /slow?delay=3s HTTP/1.1\r\nHost: t.local\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_after_body_idle_timeout_with_408() {
    let (backend, _w) = whoami::spawn("up").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &forwarding("5s", "400ms")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t.local\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let stalled = Instant::now();
    let answer = read_response(&mut stream).await;
    let took = stalled.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(4), "{took:?}");
    // The client's stall is not the server's failure: it still answers.
    let mut again = TcpStream::connect(drover.web()).await.unwrap();
    assert!(exchange(&mut again, "/").await.starts_with("HTTP/1.1 200"));
}

/// A backend that answers every request with a 100-byte body, sending 10 bytes every `every`
/// (`None`: the first 10, then nothing).
async fn trickling_backend(every: Option<Duration>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !support::wire::read_head(&mut socket).await {
                    return;
                }
                let mut buf = [0u8; 1024];
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789").await;
                let Some(every) = every else {
                    // Stall with the connection open until the test ends.
                    let _ = socket.read(&mut buf).await;
                    return;
                };
                for _ in 0..9 {
                    tokio::time::sleep(every).await;
                    if socket.write_all(b"0123456789").await.is_err() {
                        return;
                    }
                }
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_stalls_is_cut_after_body_idle_timeout() {
    let backend = trickling_backend(None).await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &forwarding("5s", "400ms")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t.local\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let (closed, seen) = until_closed(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("drover closes the client connection");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(body, "0123456789", "the truncated body is not made to look complete");
    assert!(
        closed >= Duration::from_millis(400) && started.elapsed() < Duration::from_secs(4),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_keeps_moving_is_never_cut() {
    // 1.35 s in all, a chunk every 150 ms: longer than bodyIdleTimeout, never idle that long.
    let backend = trickling_backend(Some(Duration::from_millis(150))).await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &forwarding("5s", "400ms")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t.local\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.ends_with(&"0123456789".repeat(10)), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_never_sends_a_request_is_cut_off_after_header_read_timeout() {
    let (backend, _w) = whoami::spawn("h2").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &timeouts("300ms", "10s")).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    // The preface and an empty SETTINGS frame, then nothing: no header block ever comes.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (closed, _) = until_closed(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("drover closes the connection, long before idleTimeout (10 s)");
    assert!(
        closed >= Duration::from_millis(250) && closed < Duration::from_secs(3),
        "{closed:?}"
    );
}

fn responding(read: &str, write: &str) -> String {
    format!("[entryPoints.web.transport.respondingTimeouts]\nreadTimeout = \"{read}\"\nwriteTimeout = \"{write}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_caps_the_whole_request_even_while_it_moves() {
    let (backend, _w) = whoami::spawn("up").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &(responding("600ms", "0s") + &forwarding("5s", "5s"))).await;
    let stream = TcpStream::connect(drover.web()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    write
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t.local\r\nContent-Length: 30\r\n\r\n")
        .await
        .unwrap();
    // One byte every 100 ms: it never stalls (bodyIdleTimeout is 5 s), but would take 3 s.
    let upload = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed without an answer");
        seen.extend_from_slice(&buf[..n]);
    }
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
    upload.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_answers_504_while_the_server_has_not_answered() {
    let (backend, _w) = whoami::spawn("slow").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &(responding("0s", "600ms") + &forwarding("5s", "5s"))).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    let started = Instant::now();
    let answer = exchange(&mut stream, "/slow?delay=3s").await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
    // A quick answer is untouched.
    assert!(exchange(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_cuts_a_response_body_still_running_at_it() {
    // 1.35 s in all, a chunk every 150 ms: never idle, but longer than writeTimeout.
    let backend = trickling_backend(Some(Duration::from_millis(150))).await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = TestDrover::start_with(&routes, &(responding("0s", "600ms") + &forwarding("5s", "5s"))).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t.local\r\n\r\n").await.unwrap();
    let (closed, seen) = until_closed(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("drover closes the client connection");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 100, "the body was cut, not completed: {body}");
    assert!(
        closed >= Duration::from_millis(600) && closed < Duration::from_millis(1_300),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_body_idle_timeout() {
    let (backend, mut dropped) = support::wire::endless().await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    // The watchdog looks once per its shortest limit, so a stall is noticed within two.
    let drover = TestDrover::start_with(&routes, &(forwarding("5s", "500ms") + &timeouts("500ms", "180s"))).await;
    let mut stream = TcpStream::connect(drover.web()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t.local\r\n\r\n").await.unwrap();
    let started = Instant::now();
    // The client reads nothing; drover must let go of both sides.
    tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("drover drops the server's connection within 10 s")
        .expect("the backend says so");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    let (closed, seen) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "drover closed the client connection");
    assert!(
        seen.len() < 64 << 20,
        "what drover held for the client is bounded: {} bytes",
        seen.len()
    );
}
