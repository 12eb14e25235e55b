//! Wire-level peers for the hardening tests: backends that record exactly the bytes they
//! received, per connection, and answer from a script; clients that send raw bytes and read
//! raw answers. Nothing here parses HTTP more than it must to know where a request ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A file-provider router `name` with `rule` and one server at `backend`.
pub fn router(name: &str, rule: &str, backend: SocketAddr) -> String {
    format!(
        "[http.routers.{name}]\nrule = \"{rule}\"\nservice = \"{name}\"\n[[http.services.{name}.loadBalancer.servers]]\nurl = \"http://{backend}\"\n"
    )
}

/// Where the first complete request in `bytes` ends, if one is complete: after its head and its
/// body, framed by Content-Length or by chunked encoding (up to the `0\r\n\r\n` terminator).
pub fn request_end(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        let terminator = bytes[head_end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head_end + terminator + 5);
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (bytes.len() >= head_end + length).then_some(head_end + length)
}

/// One connection a [`Wire`] backend accepted: every byte it received, and whether it ended.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub bytes: Vec<u8>,
    pub closed: bool,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A backend that records each connection's bytes and answers each complete request with
/// what `answer` returns for it (head and body, as received); `None` answers nothing and keeps
/// reading.
pub struct Wire {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<Received>>>,
}

impl Wire {
    pub async fn spawn(answer: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind wire backend");
        let addr = listener.local_addr().expect("wire backend address");
        let connections: Arc<Mutex<Vec<Received>>> = Arc::default();
        let kept = connections.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let index = {
                    let mut all = kept.lock().unwrap();
                    all.push(Received::default());
                    all.len() - 1
                };
                let (kept, answer) = (kept.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            kept.lock().unwrap()[index].closed = true;
                            return;
                        }
                        kept.lock().unwrap()[index].bytes.extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = request_end(&pending) {
                            let request = String::from_utf8_lossy(&pending[..end]).into_owned();
                            pending.drain(..end);
                            if let Some(bytes) = answer(&request) {
                                if stream.write_all(&bytes).await.is_err() {
                                    kept.lock().unwrap()[index].closed = true;
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, connections }
    }

    /// A backend that answers every request with the same bytes.
    pub async fn answering(answer: &'static [u8]) -> Self {
        Self::spawn(move |_| Some(answer.to_vec())).await
    }

    /// Every connection accepted so far, in order.
    pub fn connections(&self) -> Vec<Received> {
        self.connections.lock().unwrap().clone()
    }

    /// Everything every connection received, joined.
    pub fn all_text(&self) -> String {
        self.connections().iter().map(Received::text).collect()
    }
}

/// The status code of a raw HTTP/1 answer (0 when there is none).
pub fn status_of(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends `raw` on a new connection and reads one response: its status and body.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to drover");
    exchange_on(&mut stream, raw).await
}

/// Sends `raw` on `stream` (a kept-alive connection) and reads one response: its status and body.
pub async fn exchange_on(stream: &mut TcpStream, raw: &[u8]) -> (u16, String) {
    stream.write_all(raw).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&got).into_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status_of(&text), body)
}

/// Sends `raw` on a new connection and reads until drover closes it (within `limit`):
/// everything that came back.
pub async fn until_closed(addr: SocketAddr, raw: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect to drover");
    // The peer may close (or reset) before taking everything; what came back still counts.
    let _ = stream.write_all(raw).await;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("drover did not close the connection within {limit:?}"));
    String::from_utf8_lossy(&got).into_owned()
}

/// The status codes of every response in a raw stream of HTTP/1 answers, in order.
pub fn statuses(answers: &str) -> Vec<u16> {
    answers
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answers.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// A backend whose `n`th answer (counting from 0) is a `503 busy` when `busy(n)`, else a `200 ok`,
/// and the count of requests it has answered.
pub async fn busy_when(busy: impl Fn(usize) -> bool + Send + Sync + 'static) -> (Wire, Arc<AtomicUsize>) {
    let answered = counter();
    let count = answered.clone();
    let backend = Wire::spawn(move |_| {
        Some(if busy(count.fetch_add(1, Ordering::SeqCst)) {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
    })
    .await;
    (backend, answered)
}

/// A counter shared with a backend closure.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Reads a counter made by [`counter`].
pub fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

/// A backend that answers every request with an endless chunked body, and says (once) when a
/// write to drover failed: drover dropped its connection.
pub async fn endless() -> (SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind endless backend");
    let addr = listener.local_addr().expect("endless backend address");
    let (dropped, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let dropped = dropped.clone();
            tokio::spawn(async move {
                if !read_head(&mut socket).await {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
                let _ = dropped.try_send(());
            });
        }
    });
    (addr, rx)
}

/// Reads from `socket` until a request head has ended; false when the peer went away first.
pub async fn read_head(socket: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A backend that answers each connection's first request with `answer` and closes it: a
/// server that breaks off wherever `answer` ends.
pub async fn breaking_off(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind breaking-off backend");
    let addr = listener.local_addr().expect("breaking-off backend address");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            if read_head(&mut stream).await {
                let _ = stream.write_all(&answer).await;
            }
        }
    });
    addr
}
