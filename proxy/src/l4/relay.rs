//! Moving bytes between a client and a server connection, both ways, until both are done.
//!
//! Between two plain sockets (plain TCP routers and TLS passthrough) bytes go through a pipe
//! with `splice(2)`: socket → pipe → socket inside the kernel, never copied into user space
//! (rustix's `splice` is safe; this crate has no `unsafe`). Otherwise (TLS terminated on either
//! side) each direction copies through one buffer allocated once per connection.
//!
//! Ends, as Traefik does them: when one side stops sending (EOF), the other side's write half
//! is shut (`shutdown(SHUT_WR)`, or a TLS close_notify), so a client that half-closes still
//! receives the whole answer. The other direction then goes on while bytes keep moving, but
//! no longer than `termination_delay` without any (Traefik cuts at `terminationDelay` after
//! the first end; drover counts it from the last byte, so a long answer is not cut). An
//! `idle` timeout ends a connection on which nothing moved either way for that long.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes moved in one splice call at most (the default pipe capacity).
const CHUNK: usize = 64 * 1024;
/// The buffer of one copying direction.
const COPY_BUFFER: usize = 16 * 1024;

/// Limits of one relayed connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// End when nothing moved either way for this long.
    pub idle: Option<Duration>,
    /// After one direction ended, end when the other is silent for this long.
    pub termination_delay: Option<Duration>,
}

/// What a relayed connection moved, and how it ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Client → server bytes.
    pub up: u64,
    /// Server → client bytes.
    pub down: u64,
    /// It was ended by a timeout (idle, or termination delay).
    pub timed_out: bool,
}

/// Shared by both directions of one connection. One task drives both, so the atomics are
/// never contended; they are atomics only because the task may move between threads.
struct Progress {
    start: Instant,
    /// Nanoseconds from `start` to the last byte moved.
    last: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    fn moved(&self, up: bool, n: usize) {
        let counter = if up { &self.up } else { &self.down };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        let since = self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.last.store(since, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// Relays between two plain sockets with `splice(2)`.
pub async fn splice_both(client: &TcpStream, server: &TcpStream, limits: Limits) -> io::Result<Relayed> {
    let up_pipe = Pipe::new()?;
    let down_pipe = Pipe::new()?;
    let progress = Progress::new();
    let up = splice_one(client, server, &up_pipe, &progress, true);
    let down = splice_one(server, client, &down_pipe, &progress, false);
    run(up, down, &progress, limits).await
}

/// Relays between any two streams through a buffer per direction.
pub async fn copy_both<C, S>(client: C, server: S, limits: Limits) -> io::Result<Relayed>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (client_r, client_w) = tokio::io::split(client);
    let (server_r, server_w) = tokio::io::split(server);
    let progress = Progress::new();
    let up = copy_one(client_r, server_w, &progress, true);
    let down = copy_one(server_r, client_w, &progress, false);
    run(up, down, &progress, limits).await
}

/// Drives both directions and the timers.
async fn run(
    up: impl Future<Output = io::Result<()>>,
    down: impl Future<Output = io::Result<()>>,
    progress: &Progress,
    limits: Limits,
) -> io::Result<Relayed> {
    let mut up = pin!(up);
    let mut down = pin!(down);
    let (mut up_done, mut down_done) = (false, false);
    let mut timed_out = false;
    loop {
        let limit = if up_done || down_done {
            limits.termination_delay
        } else {
            limits.idle
        };
        let deadline = limit.map(|l| progress.last() + l);
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
            }
            r = &mut down, if !down_done => {
                r?;
                down_done = true;
            }
            () = sleep_until(deadline) => {
                if limit.is_some_and(|l| progress.last().elapsed() >= l) {
                    timed_out = true;
                    break;
                }
            }
        }
        if up_done && down_done {
            break;
        }
    }
    Ok(Relayed {
        up: progress.up.load(Ordering::Relaxed),
        down: progress.down.load(Ordering::Relaxed),
        timed_out,
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The two ends of one pipe.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Self { read, write })
    }
}

/// One direction: `src` → pipe → `dst` until `src` ends, then `dst`'s write half is shut.
async fn splice_one(src: &TcpStream, dst: &TcpStream, pipe: &Pipe, progress: &Progress, up: bool) -> io::Result<()> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        src.readable().await?;
        let filled = match src.try_io(Interest::READABLE, || Ok(splice(src, None, &pipe.write, None, CHUNK, flags)?)) {
            Ok(0) => {
                // The peer may already be gone; its own direction reports that.
                let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut left = filled;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || Ok(splice(&pipe.read, None, dst, None, left, flags)?)) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        progress.moved(up, filled);
    }
}

/// One direction through a buffer.
async fn copy_one<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(mut src: R, mut dst: W, progress: &Progress, up: bool) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            let _ = dst.shutdown().await;
            return Ok(());
        }
        dst.write_all(&buf[..n]).await?;
        dst.flush().await?;
        progress.moved(up, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// client ⇄ [relay] ⇄ server, with an echo-then-more server: the client half-closes after
    /// its request and must still get the whole answer.
    async fn half_close(splice: bool) {
        let (mut client, relay_client) = pair().await;
        let (relay_server, mut server) = pair().await;
        let relay = tokio::spawn(async move {
            let limits = Limits {
                idle: None,
                termination_delay: Some(Duration::from_secs(5)),
            };
            if splice {
                splice_both(&relay_client, &relay_server, limits).await
            } else {
                copy_both(relay_client, relay_server, limits).await
            }
        });
        let answer = vec![7u8; 300_000];
        let expected = answer.clone();
        let backend = tokio::spawn(async move {
            let mut request = Vec::new();
            server.read_to_end(&mut request).await.unwrap();
            server.write_all(&request).await.unwrap();
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
        });
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"hello");
        assert_eq!(&got[5..], &expected[..]);
        backend.await.unwrap();
        let relayed = relay.await.unwrap().unwrap();
        assert_eq!(
            relayed,
            Relayed {
                up: 5,
                down: 300_005,
                timed_out: false
            }
        );
    }

    #[tokio::test]
    async fn splice_carries_half_close_and_counts_bytes() {
        half_close(true).await;
    }

    #[tokio::test]
    async fn copy_carries_half_close_and_counts_bytes() {
        half_close(false).await;
    }

    #[tokio::test]
    async fn idle_connections_end() {
        let (_client, relay_client) = pair().await;
        let (relay_server, _server) = pair().await;
        let limits = Limits {
            idle: Some(Duration::from_millis(50)),
            termination_delay: None,
        };
        let relayed = splice_both(&relay_client, &relay_server, limits).await.unwrap();
        assert!(relayed.timed_out);
    }
}
