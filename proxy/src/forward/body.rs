//! The response body drover sends to clients: streamed from a server, or a short local answer.
//!
//! A server's body that moves no byte for `bodyIdleTimeout`, or is still running at the
//! entrypoint's `writeTimeout` (a cap on the whole response, off by default), is cut: the
//! client's connection ends without the body's proper end (so a truncated response never looks
//! complete) and the server's connection is discarded. The idle check costs a flag per frame
//! (and a clock read when `writeTimeout` is set); one timer, allocated only if the body ever has
//! to wait, looks at the flag once per idle period, so a stall is noticed between one and two
//! periods after the last byte.
//!
//! A client that stops reading is the connection watchdog's business (`server::timeouts`): the
//! body is then not polled at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::completion::Completion;
use crate::error::Error;
use crate::upstream::Pooled;

/// A response body. Upstream bodies are passed through frame by frame, never collected. When
/// it is dropped its [`Completion`] records the request (metrics, access log).
pub struct ProxyBody {
    inner: Inner,
    completion: Option<Completion>,
}

enum Inner {
    /// A server's body, holding the connection until the body ends.
    Upstream(UpstreamBody),
    /// A short body drover wrote itself (error pages).
    Local(Option<Bytes>),
    /// A body a middleware reshaped (compressed, buffered, replaced): only routes that use
    /// such a middleware pay for the box.
    Transformed(Pin<Box<dyn Body<Data = Bytes, Error = Error> + Send>>),
}

impl ProxyBody {
    /// A local body.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            inner: Inner::Local((!bytes.is_empty()).then_some(bytes)),
            completion: None,
        }
    }

    /// No body.
    pub fn empty() -> Self {
        Self {
            inner: Inner::Local(None),
            completion: None,
        }
    }

    /// A server's body.
    pub fn upstream(body: UpstreamBody) -> Self {
        Self {
            inner: Inner::Upstream(body),
            completion: None,
        }
    }

    /// A body a middleware made (compressed, buffered, an error page).
    pub fn transformed(body: Pin<Box<dyn Body<Data = Bytes, Error = Error> + Send>>) -> Self {
        Self {
            inner: Inner::Transformed(body),
            completion: None,
        }
    }

    /// Records `completion` when this body is done.
    pub(super) fn with_completion(mut self, completion: Completion) -> Self {
        self.completion = Some(completion);
        self
    }
}

/// A server's response body; drives the connection that feeds it, and gives the connection back
/// to the pool at a clean end (or, for an HTTP/2 stream, frees the server's slot it holds).
pub struct UpstreamBody {
    inner: Incoming,
    /// The connection (HTTP/1.1) or stream (HTTP/2) until the body is done.
    conn: Option<Pooled>,
    /// `conn` is lent to this body, which drives it (HTTP/1.1).
    lent: bool,
    watch: Option<Watch>,
    /// A frame read by [`UpstreamBody::peek`], handed out first.
    peeked: Option<Frame<Bytes>>,
    /// A failure held back for one poll, so the data handed out before it is flushed to the
    /// client first (hyper drops what it has buffered when a body fails).
    failed: Option<Box<Error>>,
    /// The last poll handed out a frame.
    after_frame: bool,
}

/// Notices a body that stopped moving or outlived its deadline (see the module docs).
struct Watch {
    /// `bodyIdleTimeout`.
    idle: Option<Duration>,
    /// `writeTimeout`, from the request's start.
    deadline: Option<Instant>,
    /// A frame arrived since the timer was last set.
    moved: bool,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Watch {
    fn new(idle: Option<Duration>, deadline: Option<Instant>) -> Option<Self> {
        (idle.is_some() || deadline.is_some()).then_some(Self {
            idle,
            deadline,
            moved: false,
            timer: None,
        })
    }

    /// When to look next, from `now`.
    fn next(idle: Option<Duration>, deadline: Option<Instant>, now: Instant) -> Instant {
        match (idle.map(|idle| now + idle), deadline) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(now),
        }
    }

    /// A frame arrived: the error that cuts the body if its deadline has passed.
    fn frame(&mut self) -> Option<Error> {
        self.moved = true;
        self.deadline
            .filter(|&d| Instant::now() >= d)
            .map(|_| Error::response_write_timeout())
    }

    /// On a body that has to wait: the error that cuts it when it has not moved for a whole
    /// idle period (the timer, set when it first waits, fired with no frame since) or its
    /// deadline has passed; otherwise the timer is (re)set.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Option<Error> {
        let (idle, deadline) = (self.idle, self.deadline);
        let first = Self::next(idle, deadline, Instant::now());
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first)));
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Some(Error::response_write_timeout());
            }
            if idle.is_some() && !std::mem::take(&mut self.moved) {
                return Some(Error::response_body_idle());
            }
            timer.as_mut().reset(Self::next(idle, deadline, now));
        }
        None
    }
}

impl UpstreamBody {
    /// Wraps `inner`, returning `conn` to its pool once `inner` ends; a body that moves no byte
    /// for `idle`, or is still running at `deadline`, is cut.
    pub fn new(inner: Incoming, mut conn: Pooled, idle: Option<Duration>, deadline: Option<Instant>) -> Self {
        if inner.is_end_stream() {
            // Nothing to read (HEAD, 204, 304, Content-Length: 0): the connection is free now.
            conn.release();
            return Self {
                inner,
                conn: None,
                lent: false,
                watch: None,
                peeked: None,
                failed: None,
                after_frame: false,
            };
        }
        Self {
            inner,
            // An HTTP/2 stream's connection runs on its own: the body is then woken by it.
            lent: conn.is_lent(),
            conn: Some(conn),
            watch: Watch::new(idle, deadline),
            peeked: None,
            failed: None,
            after_frame: false,
        }
    }

    /// Reads the first frame if it is already there, so that a body broken from its first bytes
    /// is known before the response head goes to the client; the frame is kept for the client.
    pub fn peek(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        if self.peeked.is_some() || !self.lent {
            return Ok(());
        }
        match Pin::new(&mut *self).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.peeked = Some(frame);
                Ok(())
            }
            Poll::Ready(Some(Err(e))) => Err(e),
            Poll::Ready(None) | Poll::Pending => Ok(()),
        }
    }
}

impl UpstreamBody {
    /// The next frame from the server, cut by the watch, with the connection released or
    /// discarded at the end.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self;
        if let Some(frame) = this.peeked.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let polled = match this.conn.as_mut().filter(|_| this.lent) {
            Some(conn) => {
                // Only the connection's I/O moves the body on, and this task drives it: the
                // body's own wake-ups would only poll this task once more.
                conn.drive(cx);
                Pin::new(&mut this.inner).poll_frame(&mut Context::from_waker(Waker::noop()))
            }
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        let polled = polled.map(|frame| frame.map(|result| result.map_err(Error::response_body)));
        if let Some(watch) = this.watch.as_mut() {
            let cut = match &polled {
                Poll::Ready(Some(Ok(_))) => watch.frame(),
                Poll::Pending => watch.stalled(cx),
                _ => None,
            };
            if let Some(error) = cut {
                if let Some(mut conn) = this.conn.take() {
                    conn.discard();
                }
                this.watch = None;
                return Poll::Ready(Some(Err(error)));
            }
        }
        match &polled {
            Poll::Ready(None) => {
                if let Some(mut conn) = this.conn.take() {
                    conn.release();
                }
            }
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                if let Some(mut conn) = this.conn.take() {
                    conn.release();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut conn) = this.conn.take() {
                    conn.discard();
                }
            }
            _ => {}
        }
        polled
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(*error)));
        }
        match this.poll_upstream(cx) {
            // A failure right after data: one Pending first, on which hyper flushes that data,
            // so the client gets everything the server sent before the break (and still sees
            // the break: a short body and a close, or a reset stream).
            Poll::Ready(Some(Err(error))) if this.after_frame => {
                this.after_frame = false;
                this.failed = Some(Box::new(error));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            polled => {
                this.after_frame = matches!(polled, Poll::Ready(Some(Ok(_))));
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peeked.is_none() && self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.peeked {
            // hyper checks the hint against Content-Length: count the kept frame back in.
            Some(frame) => {
                let kept = frame.data_ref().map_or(0, |d| d.len() as u64);
                let rest = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + kept);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + kept);
                }
                hint
            }
            None => self.inner.size_hint(),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Transformed(body) => body.as_mut().poll_frame(cx),
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(completion)) = (&polled, this.completion.as_mut()) {
            if let Some(data) = frame.data_ref() {
                completion.bytes_out += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Local(bytes) => bytes.is_none(),
            Inner::Transformed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Local(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Transformed(body) => body.size_hint(),
        }
    }
}
