//! Waiting for a server's response head, and every deadline that runs meanwhile.
//!
//! * `responseHeaderTimeout` runs from the end of the request body, not from its head: an upload
//!   slower than the timeout is not cut while it still moves (the server cannot answer before it
//!   has read it).
//! * `bodyIdleTimeout`: a request body that moves no byte for it is cut, so a stalled client
//!   cannot hold the server forever (408), nor a server that stopped reading hold the client
//!   (504, counted against the server). Which side stalled is the body's last read: nothing
//!   there is the client's stall, a read frame not taken is the server's.
//! * `readTimeout` (Traefik's key, off by default): the whole request, body included, must have
//!   been read within it of the request's start (408).
//! * `writeTimeout` (Traefik's key, off by default): the whole response within it of the
//!   request's start; before the head arrives that is a 504 (the body's share is cut by
//!   [`super::body`]).
//!
//! One timer per connection serves them all: when it fires, the deadline the body's progress now
//! implies is worked out, and the timer is set again or the request fails.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::error::Error;
use crate::upstream::{BodyProgress, Pooled, SendError};

type Sent = Result<(Response<Incoming>, Pooled), Box<SendError>>;

/// Waits for the server's response head to `sent`, a request that began at `started` and was
/// sent at `sent_at`, whose streamed body (if any) reports to `body`. `head` is the servers
/// transport's own `responseHeaderTimeout`, if it sets one.
///
/// `sent` is pinned by the caller: taken by value, it would be stored in this future's state
/// once as the argument and again where it is awaited, and every request's future (which hyper
/// moves whole into the place where it runs) would carry the copies.
pub(super) async fn wait_for_head<F: Future<Output = Sent>>(
    mut sent: Pin<&mut F>,
    head: Option<Option<Duration>>,
    conn: &Connection,
    body: Option<&BodyProgress>,
    sent_at: Instant,
    started: Instant,
) -> Sent {
    let limits = Limits {
        head: head.unwrap_or(conn.shared.response_header_timeout),
        idle: conn.shared.body_idle_timeout.filter(|_| body.is_some()),
        read_by: conn.entry.read_timeout.filter(|_| body.is_some()).map(|t| started + t),
        write_by: conn.entry.write_timeout.map(|t| started + t),
        sent_at,
    };
    // The body's bytes at the last look, and since when they have not moved.
    let mut last_move = (0, sent_at);
    let Some(first) = limits.next(body, last_move.1) else {
        return sent.await;
    };
    let mut timer = conn.response_timer.take(first);
    let result = loop {
        tokio::select! {
            biased;
            result = sent.as_mut() => break result,
            () = &mut timer => match limits.check(Instant::now(), body, &mut last_move) {
                Verdict::Wait(next) => timer.as_mut().reset(next),
                Verdict::Fail(error) => break Err(SendError::new(error, None)),
                Verdict::Forever => break sent.as_mut().await,
            },
        }
    };
    conn.response_timer.give_back(timer);
    result
}

/// The deadlines of one request while its head is awaited.
struct Limits {
    head: Option<Duration>,
    idle: Option<Duration>,
    read_by: Option<Instant>,
    write_by: Option<Instant>,
    sent_at: Instant,
}

enum Verdict {
    Wait(Instant),
    Fail(Error),
    Forever,
}

impl Limits {
    /// The next moment to look, given when the body last moved; `None`: nothing to wait for.
    fn next(&self, body: Option<&BodyProgress>, moved_at: Instant) -> Option<Instant> {
        let streaming = body.is_some_and(|b| b.ended().is_none());
        let phase = if streaming {
            match (self.idle, self.head) {
                (Some(idle), _) => Some(moved_at + idle),
                // No idle limit: look again one head timeout later, to see whether it has ended.
                (None, Some(head)) => Some(Instant::now() + head),
                (None, None) => None,
            }
        } else {
            let ended = body.and_then(BodyProgress::ended).map_or(self.sent_at, |e| e.max(self.sent_at));
            self.head.map(|head| ended + head)
        };
        [phase, self.read_by.filter(|_| streaming), self.write_by]
            .into_iter()
            .flatten()
            .min()
    }

    /// What to do when the timer fires at `at`.
    fn check(&self, at: Instant, body: Option<&BodyProgress>, last_move: &mut (u64, Instant)) -> Verdict {
        if let Some(body) = body.filter(|b| b.ended().is_none()) {
            if body.bytes() != last_move.0 {
                *last_move = (body.bytes(), at);
            } else if self.idle.is_some_and(|idle| at >= last_move.1 + idle) {
                return Verdict::Fail(if body.waiting_on_client() {
                    Error::client_idle()
                } else {
                    Error::upload_stalled()
                });
            }
            if self.read_by.is_some_and(|by| at >= by) {
                return Verdict::Fail(Error::client_read_timeout());
            }
        }
        if self.write_by.is_some_and(|by| at >= by) {
            return Verdict::Fail(Error::response_timeout());
        }
        match self.next(body, last_move.1) {
            Some(next) if next > at => Verdict::Wait(next),
            Some(_) => Verdict::Fail(Error::response_timeout()),
            None => Verdict::Forever,
        }
    }
}
