//! HTTP/2 floods from the hardening catalogue (`tests/HARDENING.md`, rows H*), sent as raw frames
//! (an HTTP/2 library would refuse to misbehave): rapid reset, streams drover must reset itself,
//! CONTINUATION without end, PINGs to a client that reads nothing, more streams than allowed.
//! Each must stay bounded (work reaching the backend, memory) and end in GOAWAY or a close,
//! while a second client keeps being served.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::wire::{exchange, router, Wire};
use support::TestDrover;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;

/// One frame drover sent: its type and payload.
#[derive(Clone, Debug)]
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A HPACK header block for `GET /` on `authority`, with `extra` literal fields (name, value)
/// appended; static-table indexes, no Huffman, nothing added to the dynamic table.
fn get(authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    // :method GET, :path /, :scheme http.
    let mut block = vec![0x82, 0x84, 0x86];
    // :authority (static index 1), literal without indexing.
    block.push(0x01);
    block.push(authority.len() as u8);
    block.extend_from_slice(authority.as_bytes());
    for (name, value) in extra {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A raw HTTP/2 client: frames go out as written, frames coming back are collected.
struct RawH2 {
    writer: OwnedWriteHalf,
    frames: Arc<Mutex<Vec<Frame>>>,
    closed: Arc<Mutex<bool>>,
}

impl RawH2 {
    /// Connects, exchanges SETTINGS (acknowledging drover's), and starts collecting frames;
    /// `read` false collects nothing and never reads again after the handshake.
    async fn connect(addr: std::net::SocketAddr, read: bool) -> (Self, Frame) {
        Self::connect_with(addr, read, &[]).await
    }

    /// Like [`RawH2::connect`], announcing `settings` (identifier, value).
    async fn connect_with(addr: std::net::SocketAddr, read: bool, settings: &[(u16, u32)]) -> (Self, Frame) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if !read {
            // A small window, so that what drover cannot write backs up quickly.
            socket.set_recv_buffer_size(4096).unwrap();
        }
        let stream = socket.connect(addr).await.expect("connect to drover");
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let announced: Vec<u8> = settings
            .iter()
            .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
            .collect();
        writer.write_all(&frame(SETTINGS, 0, 0, &announced)).await.unwrap();
        let settings = read_frame(&mut reader).await.expect("drover's SETTINGS");
        assert_eq!(settings.kind, SETTINGS);
        writer.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        let frames: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let closed = Arc::new(Mutex::new(false));
        if read {
            let (frames, closed) = (frames.clone(), closed.clone());
            tokio::spawn(async move {
                while let Some(f) = read_frame(&mut reader).await {
                    frames.lock().unwrap().push(f);
                }
                *closed.lock().unwrap() = true;
            });
        } else {
            // Kept open, never read.
            tokio::spawn(async move {
                let _reader = reader;
                std::future::pending::<()>().await;
            });
        }
        (Self { writer, frames, closed }, settings)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    fn goaway(&self) -> Option<u32> {
        self.frames()
            .iter()
            .find(|f| f.kind == GOAWAY)
            .map(|f| u32::from_be_bytes(f.payload[4..8].try_into().unwrap()))
    }

    fn ended(&self) -> bool {
        *self.closed.lock().unwrap() || self.goaway().is_some()
    }

    /// Sends `burst(i)` for i in 0..`count` until drover stops taking them or ends the
    /// connection, then waits (10 s at most) for the GOAWAY or close that must come; how many
    /// bursts went out.
    async fn flood_until_ended(&mut self, count: u32, what: &str, burst: impl Fn(u32) -> Vec<u8>) -> u32 {
        let mut sent = 0;
        for i in 0..count {
            if self.ended() || self.send(&burst(i)).await.is_err() {
                break;
            }
            sent += 1;
        }
        support::wait_until(Duration::from_secs(10), || self.ended())
            .await
            .unwrap_or_else(|| panic!("{sent} {what} and no GOAWAY or close"));
        sent
    }
}

async fn read_frame(reader: &mut (impl AsyncReadExt + Unpin)) -> Option<Frame> {
    let mut head = [0u8; 9];
    reader.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.ok()?;
    Some(Frame { kind: head[3], payload })
}

/// A backend that answers `200 ok` and counts requests.
async fn counting() -> (Wire, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let wire = Wire::spawn(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    })
    .await;
    (wire, requests)
}

/// A second client's requests go through while a flood runs.
async fn others_are_served(drover: &TestDrover) {
    for i in 0..20 {
        let (status, _) = exchange(drover.web(), format!("GET /other/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await;
        assert_eq!(status, 200, "the other client's request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drover_announces_its_stream_and_header_list_limits() {
    let (backend, _) = counting().await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", backend.addr)).await;
    let (_client, settings) = RawH2::connect(drover.web(), true).await;
    let mut announced = std::collections::HashMap::new();
    for setting in settings.payload.chunks(6) {
        let id = u16::from_be_bytes([setting[0], setting[1]]);
        announced.insert(id, u32::from_be_bytes(setting[2..6].try_into().unwrap()));
    }
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) and SETTINGS_MAX_HEADER_LIST_SIZE (0x6).
    assert_eq!(announced.get(&0x3), Some(&250), "{announced:?}");
    assert_eq!(announced.get(&0x6), Some(&65_536), "{announced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_bounded_and_ends_in_goaway() {
    let (backend, requests) = counting().await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", backend.addr)).await;
    let (mut client, _) = RawH2::connect(drover.web(), true).await;
    let block = get("a", &[]);
    let sent = client
        .flood_until_ended(20_000, "HEADERS+RST_STREAM pairs", |i| {
            let id = 2 * i + 1;
            let mut burst = frame(HEADERS, END_STREAM | END_HEADERS, id, &block);
            burst.extend_from_slice(&frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
            burst
        })
        .await;
    others_are_served(&drover).await;
    let reached = requests.load(Ordering::SeqCst);
    assert!(
        reached < 1_000,
        "{reached} of {sent} reset requests reached the backend (GOAWAY {:?})",
        client.goaway()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_drover_must_reset_end_in_goaway() {
    let (backend, requests) = counting().await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", backend.addr)).await;
    let (mut client, _) = RawH2::connect(drover.web(), true).await;
    // A connection-specific header makes each request malformed (RFC 9113 §8.2.2): h2 resets
    // the stream itself, which costs drover work and the client nothing.
    let block = get("a", &[("connection", "close")]);
    client
        .flood_until_ended(3_000, "malformed streams", |i| {
            frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &block)
        })
        .await;
    let resets = client.frames().iter().filter(|f| f.kind == RST_STREAM).count();
    assert!(resets <= 1_100, "{resets} resets before the connection ended");
    assert_eq!(requests.load(Ordering::SeqCst), 0, "no malformed request was forwarded");
    others_are_served(&drover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_that_never_ends_is_cut_off_in_bounded_memory() {
    let (backend, requests) = counting().await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", backend.addr)).await;
    let rss_before = support::rss_bytes(std::process::id());
    let (mut client, _) = RawH2::connect(drover.web(), true).await;
    client.send(&frame(HEADERS, 0, 1, &get("a", &[]))).await.unwrap();
    // 16 KiB of header fields per CONTINUATION, none with END_HEADERS: 160 MB if it never stops.
    let value = "v".repeat(120);
    let fields: Vec<(&str, &str)> = (0..128).map(|_| ("x-flood", value.as_str())).collect();
    let fragment = get("a", &fields)[7..].to_vec();
    let sent = client
        .flood_until_ended(10_000, "CONTINUATION frames", |_| frame(CONTINUATION, 0, 1, &fragment))
        .await;
    let grew = support::rss_bytes(std::process::id()).saturating_sub(rss_before);
    assert!(grew < 64 << 20, "RSS grew by {} MiB over {sent} frames", grew >> 20);
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    others_are_served(&drover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_and_settings_flood_from_a_client_that_reads_nothing_stays_bounded() {
    let (backend, _) = counting().await;
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", backend.addr)).await;
    let rss_before = support::rss_bytes(std::process::id());
    let (mut client, _) = RawH2::connect(drover.web(), false).await;
    // h2 keeps one PONG (and one SETTINGS ack) pending at most and reads no further while it
    // cannot write it: what a client that reads nothing can make drover hold is the socket
    // buffers. PINGs and SETTINGS, each asking for an answer:
    let mut pair = frame(PING, 0, 0, &[7; 8]);
    pair.extend_from_slice(&frame(SETTINGS, 0, 0, &[]));
    let burst: Vec<u8> = pair.iter().copied().cycle().take(pair.len() * 500).collect();
    let flood = async {
        for _ in 0..100 {
            if client.send(&burst).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), flood).await;
    let grew = support::rss_bytes(std::process::id()).saturating_sub(rss_before);
    assert!(
        grew < 32 << 20,
        "RSS grew by {} MiB over 50 000 PINGs and 50 000 SETTINGS",
        grew >> 20
    );
    others_are_served(&drover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_opens_its_window_and_reads_nothing_is_closed() {
    let (backend, mut dropped) = support::wire::endless().await;
    let drover = TestDrover::start_with(
        &router("a", "PathPrefix(`/`)", backend),
        "[serversTransport.forwardingTimeouts]\nbodyIdleTimeout = \"500ms\"\n",
    )
    .await;
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) at its maximum and the connection window opened as
    // far: flow control never stops drover, only the socket does.
    let (mut client, _) = RawH2::connect_with(drover.web(), false, &[(0x4, 0x7fff_ffff)]).await;
    client
        .send(&frame(WINDOW_UPDATE, 0, 0, &(0x7fff_ffffu32 - 65_535).to_be_bytes()))
        .await
        .unwrap();
    client
        .send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &get("a", &[])))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), dropped.recv())
        .await
        .expect("drover let go of the server's connection within 15 s")
        .expect("the backend says so");
    assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    let gauge = || drover.open_connections();
    support::wait_until(Duration::from_secs(5), || gauge() == Some(0))
        .await
        .unwrap_or_else(|| panic!("the client connection is still counted open: {:?}", gauge()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_above_the_limit_are_refused_and_never_reach_the_backend() {
    // Holds every request without answering; counts how many it holds at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(AtomicUsize::new(0));
    let counted = held.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.read(&mut buf).await;
                }
            });
        }
    });
    let drover = TestDrover::start(&router("a", "PathPrefix(`/`)", addr)).await;
    let (mut client, _) = RawH2::connect(drover.web(), true).await;
    let block = get("a", &[]);
    for i in 0..300u32 {
        client
            .send(&frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &block))
            .await
            .unwrap();
    }
    let refused = || {
        client
            .frames()
            .iter()
            .filter(|f| f.kind == RST_STREAM && f.payload == REFUSED_STREAM.to_be_bytes())
            .count()
    };
    support::wait_until(Duration::from_secs(10), || refused() >= 50 && held.load(Ordering::SeqCst) >= 250)
        .await
        .unwrap_or_else(|| panic!("refused {}, held {}", refused(), held.load(Ordering::SeqCst)));
    // Another client's request still reaches the backend, and nothing more from the flood does.
    let mut other = TcpStream::connect(drover.web()).await.unwrap();
    other.write_all(b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    support::wait_until(Duration::from_secs(10), || held.load(Ordering::SeqCst) >= 251)
        .await
        .expect("the other client's request reached the backend");
    assert_eq!(
        held.load(Ordering::SeqCst),
        251,
        "250 streams and the other client's request, no more"
    );
    assert!(!client.frames().iter().any(|f| f.kind == DATA), "nothing was answered");
}
