//! Scripted backends that misbehave on purpose and count exactly what they received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the backend does with each request.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Answers `500` to everything, keeping the connection alive.
    Always500,
    /// Reads the request head (and whatever body arrived), then closes the connection without
    /// answering: a reset before response headers.
    CloseAfterRequest,
}

/// A running scripted backend; stops when dropped.
pub struct Scripted {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Scripted {
    pub async fn spawn(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind scripted backend");
        let addr = listener.local_addr().expect("scripted backend address");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut pending = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        // Count complete request heads (bodies in these tests are small or none).
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                            let body_len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            let total = end + 4 + body_len;
                            if pending.len() < total {
                                break;
                            }
                            pending.drain(..total);
                            counter.fetch_add(1, Ordering::SeqCst);
                            match behaviour {
                                Behaviour::Always500 => {
                                    let answer =
                                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nX-Whoami-Name: bad\r\n\r\nboom";
                                    if stream.write_all(answer).await.is_err() {
                                        return;
                                    }
                                }
                                Behaviour::CloseAfterRequest => return,
                            }
                        }
                    }
                });
            }
        });
        Self { addr, requests, task }
    }

    /// Complete requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}
