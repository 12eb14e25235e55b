//! The watchdog of client connections: one lazy timer per connection, instead of a timer per
//! request, that enforces `headerReadTimeout` and `idleTimeout`.
//!
//! The request path only stamps state changes into the connection's
//! [`Activity`](crate::connection::Activity) (two clock reads per request). [`serve`] races the
//! connection against one sleep; when the sleep fires it asks the activity for its verdict,
//! closes the connection if its deadline has passed and otherwise sleeps until the deadline the
//! state now implies.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::connection::{Activity, Connection, Limits, Verdict};
use crate::io::BatchedStream;

/// A client's TCP stream that reports the bytes it reads, and writes that cannot go on, to its
/// connection's [`Activity`]. It holds the connection's slot of its entrypoint's
/// `maxConnections`, if there is a limit, for as long as the socket is open (an upgraded
/// connection's tunnel included).
#[derive(Debug)]
pub struct WatchedStream {
    stream: BatchedStream,
    conn: Arc<Connection>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl WatchedStream {
    /// Wraps `stream`, the socket of `conn`, holding `slot` until it closes.
    pub fn new(stream: TcpStream, conn: Arc<Connection>, slot: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            stream: BatchedStream::new(stream),
            conn,
            _slot: slot,
        }
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.conn.activity.bytes_read(read);
            }
        }
        polled
    }
}

impl WatchedStream {
    /// Tells the activity whether a write went through or is stuck.
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.conn.activity.write_stuck(),
            Poll::Ready(Ok(n)) if *n > 0 => self.conn.activity.write_moved(),
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Runs `connection` (hyper serving `activity`'s client) until it ends or a client timeout
/// closes it; the outcome is the connection's own, or `Ok` when a timeout closed it.
pub async fn serve<F, E>(connection: F, activity: &Activity, limits: Limits) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let Some(first) = limits.header_read.or(limits.idle) else {
        return connection.await;
    };
    let sleep = tokio::time::sleep(first);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            done = &mut connection => return done,
            () = &mut sleep => match activity.verdict(&limits, activity.now_ms()) {
                Verdict::Expired(why) => {
                    tracing::debug!("client connection closed: {why}");
                    return Ok(());
                }
                Verdict::Recheck(Some(after)) => sleep.as_mut().reset(tokio::time::Instant::now() + after),
                Verdict::Recheck(None) => return connection.await,
            },
        }
    }
}
