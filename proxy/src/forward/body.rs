//! The response body drover sends to clients: streamed from a server, or a short local answer.
//!
//! A server's body that moves no byte for `bodyIdleTimeout` is cut: the client's connection
//! ends without the body's proper end (so a truncated response never looks complete) and the
//! server's connection is discarded. The check costs a flag per frame; one timer, allocated only
//! if the body ever has to wait, looks at the flag once per idle period, so a stall is noticed
//! between one and two periods after the last byte.

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

    /// Records `completion` when this body is done.
    pub(super) fn with_completion(mut self, completion: Completion) -> Self {
        self.completion = Some(completion);
        self
    }
}

/// A server's response body; drives the connection that feeds it, and gives the connection back
/// to the pool at a clean end.
pub struct UpstreamBody {
    inner: Incoming,
    conn: Option<Pooled>,
    idle: Option<IdleWatch>,
    /// A frame read by [`UpstreamBody::peek`], handed out first.
    peeked: Option<Frame<Bytes>>,
}

/// Notices a body that stopped moving (see the module docs).
struct IdleWatch {
    limit: Duration,
    /// A frame arrived since the timer was last set.
    moved: bool,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleWatch {
    /// On a body that has to wait: true when it has not moved for a whole period (the timer,
    /// set when it first waits, fired with no frame since); otherwise the timer is (re)set.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(self.limit)));
        while timer.as_mut().poll(cx).is_ready() {
            if !std::mem::take(&mut self.moved) {
                return true;
            }
            timer.as_mut().reset(Instant::now() + self.limit);
        }
        false
    }
}

impl UpstreamBody {
    /// Wraps `inner`, returning `conn` to its pool once `inner` ends; a body that moves no byte
    /// for `idle` is cut.
    pub fn new(inner: Incoming, mut conn: Pooled, idle: Option<Duration>) -> Self {
        if inner.is_end_stream() {
            // Nothing to read (HEAD, 204, 304, Content-Length: 0): the connection is free now.
            conn.release();
            return Self {
                inner,
                conn: None,
                idle: None,
                peeked: None,
            };
        }
        Self {
            inner,
            conn: Some(conn),
            idle: idle.map(|limit| IdleWatch {
                limit,
                moved: false,
                timer: None,
            }),
            peeked: None,
        }
    }

    /// Reads the first frame if it is already there, so that a body broken from its first bytes
    /// is known before the response head goes to the client; the frame is kept for the client.
    pub fn peek(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        if self.peeked.is_some() || self.conn.is_none() {
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

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(frame) = this.peeked.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let polled = match this.conn.as_mut() {
            Some(conn) => {
                // Only the connection's I/O moves the body on, and this task drives it: the
                // body's own wake-ups would only poll this task once more.
                conn.drive(cx);
                Pin::new(&mut this.inner).poll_frame(&mut Context::from_waker(Waker::noop()))
            }
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        let polled = polled.map(|frame| frame.map(|result| result.map_err(Error::response_body)));
        if let Some(idle) = this.idle.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(_))) => idle.moved = true,
                Poll::Pending if idle.stalled(cx) => {
                    if let Some(mut conn) = this.conn.take() {
                        conn.discard();
                    }
                    this.idle = None;
                    return Poll::Ready(Some(Err(Error::response_body_idle())));
                }
                _ => {}
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

    fn is_end_stream(&self) -> bool {
        self.peeked.is_none() && self.inner.is_end_stream()
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Local(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
