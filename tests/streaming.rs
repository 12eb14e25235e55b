//! Bodies stream through drover: 200 MB each way in bounded memory, early flushes, WebSockets.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use support::{client, rss_bytes, service_toml, whoami, DroverProcess, TestDrover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const SIZE: u64 = 200 * 1024 * 1024;
const RSS_GROWTH_LIMIT: u64 = 32 * 1024 * 1024;

/// Uploads `SIZE` bytes through drover over a raw socket; returns the backend's answer.
async fn upload(web: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(web).await.expect("connect to drover");
    let head = format!("POST /upload HTTP/1.1\r\nHost: up.local\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    let chunk = vec![b'x'; 256 * 1024];
    let mut left = SIZE;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n]).await.expect("write body");
        left -= n as u64;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read answer");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_each_way_in_bounded_memory() {
    let (backend, _h) = whoami::spawn("big").await;
    let drover = DroverProcess::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]), 1).await;
    let pid = drover.child.id();
    // Warm up so the baseline includes the runtime's steady-state allocations.
    let c = client();
    support::get(&c, &drover.url("/")).await;
    let baseline = rss_bytes(pid);

    let answer = upload(drover.web).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..answer.len().min(200)]);
    assert!(
        answer.contains(&format!("Body-Length: {SIZE}")),
        "the backend received every byte: {answer}"
    );
    let after_upload = rss_bytes(pid);

    let response = c
        .get(drover.url(&format!("/data?size={SIZE}")).parse().unwrap())
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut peak = after_upload;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
            if received % (16 * 1024 * 1024) < data.len() as u64 {
                peak = peak.max(rss_bytes(pid));
            }
        }
    }
    assert_eq!(received, SIZE, "every byte came through");
    let after = rss_bytes(pid).max(peak);
    let growth = after.saturating_sub(baseline);
    eprintln!(
        "drover RSS: baseline {} MiB, after upload {} MiB, peak {} MiB",
        baseline >> 20,
        after_upload >> 20,
        after >> 20
    );
    assert!(growth < RSS_GROWTH_LIMIT, "drover's RSS grew by {} MiB moving 400 MB", growth >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_flushed_before_the_backend_finishes() {
    let (backend, _h) = whoami::spawn("slow").await;
    let drover = TestDrover::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)])).await;
    let c = client();
    let started = Instant::now();
    // Three 1 KiB chunks, 700 ms apart: the backend needs at least 1.4 s to finish.
    let response = c
        .get(drover.url("/data?size=3072&chunk=1024&interval=700ms").parse().unwrap())
        .await
        .expect("request");
    let mut body = response.into_body();
    let first = loop {
        let frame = body.frame().await.expect("a first chunk").expect("frame");
        if frame.data_ref().is_some_and(|d| !d.is_empty()) {
            break started.elapsed();
        }
    };
    while body.frame().await.is_some() {}
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(1400), "the backend paced its body ({total:?})");
    assert!(
        first + Duration::from_millis(700) < total,
        "the first chunk arrived at {first:?}, only at the end ({total:?}): buffered, not streamed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_drover() {
    let (backend, _h) = whoami::spawn("ws").await;
    let drover = TestDrover::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)])).await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/echo", drover.web()))
        .await
        .expect("websocket handshake through drover");
    assert_eq!(response.status(), 101);
    for text in ["hello", "drover", &"x".repeat(100_000)] {
        ws.send(Message::Text(text.to_string().into())).await.expect("send");
        let echoed = ws.next().await.expect("an echo").expect("a message");
        assert_eq!(echoed, Message::Text(text.to_string().into()));
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into())).await.expect("send binary");
    assert_eq!(
        ws.next().await.expect("echo").expect("message"),
        Message::Binary(vec![0u8, 1, 2, 255].into())
    );
    ws.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_answered_200_is_not_tunnelled() {
    let (backend, _h) = whoami::spawn("plain").await;
    let drover = TestDrover::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)])).await;
    let mut stream = tokio::net::TcpStream::connect(drover.web()).await.unwrap();
    // Not /echo: whoami answers 200 and ignores the upgrade. The next request on the same
    // connection must be parsed as HTTP, not tunnelled.
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.contains("GET /b HTTP/1.1"), "{out}");
    let second = &out[out.find("GET /b").expect("second request reached the backend")..];
    assert!(!second.contains("upgrade: websocket"), "the second request is plain HTTP: {out}");
}
