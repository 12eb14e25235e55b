//! The watchdog of client connections: one lazy timer per connection, instead of a timer per
//! request, that enforces `headerReadTimeout` and `idleTimeout`.
//!
//! The request path only stamps state changes into the connection's
//! [`Activity`](crate::connection::Activity) (two clock reads per request). [`serve`] races the
//! connection against one sleep; when the sleep fires it asks the activity for its verdict,
//! closes the connection if its deadline has passed and otherwise sleeps until the deadline the
//! state now implies.
//!
//! **Parking.** hyper keeps a connection's state for its whole life: a read buffer and a write
//! buffer of 8 KiB each, its dispatcher and the slot for the request's future, ~50 KiB in all
//! per idle keep-alive connection, where nginx and HAProxy keep about one. So a plain HTTP/1
//! connection that has been idle for [`PARK_AFTER`] is *parked*: the watchdog ends [`serve`],
//! which drops hyper's connection with all of it, and the bare socket (no buffer at all, no task)
//! waits in its worker's parking lot (`server::parking`) for the client's next bytes, its idle
//! deadline or the worker's shutdown; the next bytes start a new hyper connection on the same
//! socket. The watchdog only parks when
//! hyper holds nothing of the client's that it has not used (see `connection::activity`), and
//! a busy connection never parks, so a client sending request after request keeps its hyper
//! state: only one that paused for [`PARK_AFTER`] pays for building it again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::connection::{Activity, Connection, Limits, Verdict};
use crate::io::BatchedStream;

/// How long an idle HTTP/1 connection keeps hyper's state before it is parked.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A client's TCP stream that reports the bytes it reads, and writes that cannot go on, to its
/// connection's [`Activity`]. It holds the connection's slot of its entrypoint's
/// `maxConnections`, if there is a limit, for as long as the socket is open (an upgraded
/// connection's tunnel included).
///
/// `S` is the byte stream hyper reads: the socket itself, or the TLS stream over it (whose
/// plaintext is what the activity must see).
#[derive(Debug)]
pub struct WatchedStream<S = BatchedStream> {
    stream: S,
    conn: Arc<Connection>,
    _slot: Option<Arc<OwnedSemaphorePermit>>,
}

impl WatchedStream {
    /// Reads and writes `socket`, the socket of `conn`, which the caller keeps too (to park the
    /// connection); holds `slot` until it is dropped.
    pub fn shared(socket: Arc<TcpStream>, conn: Arc<Connection>, slot: Option<Arc<OwnedSemaphorePermit>>) -> Self {
        Self {
            stream: BatchedStream::shared(socket),
            conn,
            _slot: slot,
        }
    }
}

impl<S> WatchedStream<S> {
    /// Wraps `stream` (already over `conn`'s socket: a TLS stream), holding `slot` until it
    /// closes.
    pub fn over(stream: S, conn: Arc<Connection>, slot: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            stream,
            conn,
            _slot: slot.map(Arc::new),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
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

/// hyper's answer to a head larger than its buffer, and ours when what overflowed was the
/// request line: the same length (the reason phrase is padded), so it can replace it in place.
const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n";
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long                   \r\n";
const _: () = assert!(HEAD_TOO_LARGE.len() == URI_TOO_LONG.len());

impl<S> WatchedStream<S> {
    /// `bytes`, about to be written, with hyper's 431 turned into a 414 when the head that
    /// overflowed had not finished its request line (RFC 9110 §15.5.15); `None` when unchanged.
    fn uri_too_long(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        // While a response is written the request line is never open: one load, no comparison.
        if !self.conn.activity.request_line_open() || !bytes.starts_with(HEAD_TOO_LARGE) {
            return None;
        }
        let mut fixed = bytes.to_vec();
        fixed[..URI_TOO_LONG.len()].copy_from_slice(URI_TOO_LONG);
        Some(fixed)
    }

    /// Tells the activity whether a write went through or is stuck.
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.conn.activity.write_stuck(),
            Poll::Ready(Ok(n)) if *n > 0 => self.conn.activity.write_moved(),
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let fixed = self.uri_too_long(buf);
        let polled = Pin::new(&mut self.stream).poll_write(cx, fixed.as_deref().unwrap_or(buf));
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if let Some(fixed) = bufs.first().and_then(|first| self.uri_too_long(first)) {
            // Rare (one answer per refused connection): the first slice alone, fixed.
            let polled = Pin::new(&mut self.stream).poll_write(cx, &fixed);
            self.note_write(&polled);
            return polled;
        }
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Small writes are kept and sent by the flush (see `io`): a flush that cannot go on is
        // a stuck write too (HTTP/2 writes its frames this way).
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        match polled {
            Poll::Pending => self.conn.activity.write_stuck(),
            Poll::Ready(Ok(())) => self.conn.activity.write_moved(),
            Poll::Ready(Err(_)) => {}
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How [`serve`] ended.
#[derive(Debug)]
pub enum Served<E> {
    /// The connection ended (its own outcome), or a client timeout closed it (`Ok`).
    Done(Result<(), E>),
    /// It was idle for the parking delay: its future was dropped, its socket is the caller's.
    Parked,
}

/// Runs `connection` (hyper serving `activity`'s client) until it ends or a client timeout
/// closes it; with `park` (a plain HTTP/1 connection may be parked), also until it has been
/// idle for that long with nothing left unused (see the module).
pub async fn serve<F, E>(connection: F, activity: &Activity, limits: Limits, park: Option<Duration>) -> Served<E>
where
    F: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    // The first look comes at the shortest limit: a write stall can start before any head.
    let first = match (limits.recheck(), park) {
        (Some(limit), Some(park)) => Some(limit.min(park)),
        (limit, park) => limit.or(park),
    };
    let Some(first) = first else {
        return Served::Done(connection.await);
    };
    let sleep = tokio::time::sleep(first);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            done = &mut connection => return Served::Done(done),
            () = &mut sleep => {
                let now = activity.now_ms();
                if park.is_some_and(|after| activity.may_park(now, after)) {
                    return Served::Parked;
                }
                let next = match activity.verdict(&limits, now) {
                    Verdict::Expired(why) => {
                        tracing::debug!("client connection closed: {why}");
                        return Served::Done(Ok(()));
                    }
                    Verdict::Recheck(next) => next,
                };
                // A connection that may park, now or after its next request, is looked at again
                // within the parking delay: one whose first head was late, or whose last request
                // had a body, parks a second after its next bodyless request, not when its
                // idle or header deadline comes.
                let next = match (next, park.filter(|_| activity.may_park_later())) {
                    (Some(next), Some(park)) => Some(next.min(park)),
                    (next, park) => next.or(park),
                };
                match next {
                    Some(after) => sleep.as_mut().reset(tokio::time::Instant::now() + after),
                    None => return Served::Done(connection.await),
                }
            },
        }
    }
}
