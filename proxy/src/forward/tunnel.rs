//! Upgraded connections (WebSocket and other `101 Switching Protocols`): bytes copied both ways
//! until a side closes, the tunnel has been idle for its entrypoint's `idleTimeout`, or drover
//! shuts down.
//!
//! Once hyper hands an upgraded connection over, it no longer counts it, times it or drains it;
//! a tunnel would otherwise be invisible in the open-connections gauge, live forever when both
//! ends fall silent, and hold a worker past its grace period. The idle check is lazy, as for
//! client connections: reads set a flag, and one timer per tunnel looks at it once per period,
//! so a silent tunnel is closed between one and two periods after its last byte.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// What a tunnel needs from the connection that asked for it.
pub(super) struct Tunnel {
    /// The entrypoint's open-connections gauge.
    pub(super) open: Arc<AtomicI64>,
    /// Close after this long without a byte either way.
    pub(super) idle: Option<Duration>,
    /// Turns true when drover shuts down.
    pub(super) shutdown: watch::Receiver<bool>,
}

impl Tunnel {
    /// Copies between `client` and `server` until one of the ends described above.
    pub(super) async fn run<C, S>(mut self, client: C, server: S)
    where
        C: AsyncRead + AsyncWrite + Unpin,
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.open.fetch_add(1, Ordering::Relaxed);
        let moved = AtomicBool::new(false);
        let mut client = Marked { io: client, moved: &moved };
        let mut server = Marked { io: server, moved: &moved };
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        let mut copy = std::pin::pin!(copy);
        let period = self.idle.unwrap_or(Duration::MAX);
        let sleep = tokio::time::sleep(period.min(Duration::from_secs(365 * 24 * 3600)));
        let mut sleep = std::pin::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                done = &mut copy => {
                    if let Err(e) = done {
                        tracing::debug!("upgraded connection ended: {e}");
                    }
                    break;
                }
                _ = self.shutdown.wait_for(|stop| *stop) => {
                    tracing::debug!("upgraded connection closed: drover is shutting down");
                    break;
                }
                () = &mut sleep, if self.idle.is_some() => {
                    if !moved.swap(false, Ordering::Relaxed) {
                        tracing::debug!("upgraded connection closed: idle for idleTimeout");
                        break;
                    }
                    sleep.as_mut().reset(tokio::time::Instant::now() + period);
                }
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream whose reads mark the tunnel as active.
struct Marked<'a, T> {
    io: T,
    moved: &'a AtomicBool,
}

impl<T: AsyncRead + Unpin> AsyncRead for Marked<'_, T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Marked<'_, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
