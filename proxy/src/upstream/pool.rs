//! One server's connection pool: HTTP/1.1 keep-alive connections, reused lock-free.
//!
//! Idle connections sit in bounded lock-free queues, one per lane (worker thread, see the module
//! above). A request pops one from its own lane (stale or closed ones are discarded), or connects
//! a new one, which then belongs to that lane. The response body hands its connection back when the
//! body has been read to the end ([`Pooled`]); a body dropped early closes the connection, since
//! the rest of its response would still be in the way.
//!
//! Sending uses hyper's `try_send_request`: if a pooled connection turns out to be dead before
//! the request was written, the request comes back untouched and is sent on another connection.
//!
//! A connection has no task of its own: the request that uses it drives its I/O ([`Conn`]),
//! from sending the request head to the end of the response body. A spawned connection task
//! would have to be woken to write each request and would wake the request's task back with
//! the response: two more task switches per request, and a second task the backend's answer
//! waits on.
//!
//! Idle connections are watched by one task per lane ([`watch_lane`]), started with the lane's
//! first idle connection: a connection given back registers that task's waker with its socket,
//! so when the server closes it (its keep-alive timeout, a restart) the task is woken, finds it
//! ended and closes drover's side at once, as nginx and HAProxy do, instead of leaving it in
//! CLOSE_WAIT until it is next picked. The task also closes connections that stayed idle for
//! the idle timeout. A request that still picks a connection the server is closing just then
//! finds it dead before sending, and sends on another.
//!
//! A request admitted by the server's [`Limiter`] hands its slot to the [`Pooled`] connection
//! that carries it ([`Pooled::hold`]), which frees it when the response is done with: given back,
//! discarded, upgraded or dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

use drover_providers::runtime::Scheme;
use rustls::pki_types::ServerName;

use super::h2::{self, Multiplexed};
use super::limit::{Limiter, Slot};
use super::tls::CLIENT_CERT_REFUSED;
use super::{current_lane, Transport};
use crate::error::Error;
use crate::io::BatchedStream;

type Sender = http1::SendRequest<RequestBody>;

/// How far a streamed request body has got: the bytes forwarded, when it ended, and who it waits
/// for. The body writes it; the request's deadlines and its access-log line read it.
#[derive(Debug)]
pub struct BodyProgress {
    started: Instant,
    bytes: AtomicU64,
    /// The last read of the client's body found nothing there: a stall now is the client's.
    /// Otherwise the server is not taking what was read (or has not asked for it yet).
    waiting_on_client: AtomicBool,
    /// Milliseconds from `started` to the body's end; `u64::MAX` while it streams.
    ended_ms: AtomicU64,
}

impl BodyProgress {
    /// A body whose request began at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            bytes: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
            ended_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Bytes forwarded so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The body is stalled on the client (its last read found nothing), not on the server.
    pub fn waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }

    /// When the whole body had been read, if it has.
    pub fn ended(&self) -> Option<Instant> {
        match self.ended_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(self.started + Duration::from_millis(ms)),
        }
    }

    fn end(&self) {
        if self.ended_ms.load(Ordering::Relaxed) == u64::MAX {
            let ms = Instant::now().saturating_duration_since(self.started).as_millis() as u64;
            self.ended_ms.store(ms.min(u64::MAX - 1), Ordering::Relaxed);
        }
    }
}

/// The body of a request sent upstream: the client's, streamed, or none.
#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed as it arrives.
    Incoming(Incoming),
    /// The client's body, its progress recorded.
    Counted(Incoming, Arc<BodyProgress>),
    /// No body (probes, replays of body-less requests).
    Empty,
    /// A body already in memory (copies for mirrors).
    Full(Option<Bytes>),
    /// Another body whose data is also shown to a tap as it streams (mirroring).
    Tapped(Box<RequestBody>, Box<dyn BodyTap>),
    /// A body read whole first, partly from a temporary file (`buffering`, `retry`).
    Spooled(crate::middleware::spool::SpoolBody),
}

/// Sees a request body's data as it is forwarded (see [`RequestBody::Tapped`]).
pub trait BodyTap: Send + std::fmt::Debug {
    /// A chunk of the body went by.
    fn data(&mut self, data: &Bytes);
    /// The body ended, complete.
    fn end(&mut self);
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Counted(body, progress) => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                progress.waiting_on_client.store(polled.is_pending(), Ordering::Relaxed);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            progress.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        if body.is_end_stream() {
                            progress.end();
                        }
                    }
                    Poll::Ready(None) => progress.end(),
                    _ => {}
                }
                polled
            }
            RequestBody::Empty | RequestBody::Full(None) => Poll::Ready(None),
            RequestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Spooled(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => {
                    // hyper's error cannot carry it: ending the body short of its
                    // Content-Length makes the connection fail the request instead.
                    tracing::warn!("reading a buffered request body back failed: {e}");
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            RequestBody::Tapped(body, tap) => {
                let polled = Pin::new(&mut **body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            tap.data(data);
                        }
                        if body.is_end_stream() {
                            tap.end();
                        }
                    }
                    Poll::Ready(None) => tap.end(),
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) | RequestBody::Counted(body, _) => body.is_end_stream(),
            RequestBody::Empty => true,
            RequestBody::Full(data) => data.is_none(),
            RequestBody::Tapped(body, _) => body.is_end_stream(),
            RequestBody::Spooled(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) | RequestBody::Counted(body, _) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            RequestBody::Tapped(body, _) => body.size_hint(),
            RequestBody::Spooled(body) => body.size_hint(),
        }
    }
}

/// A connection's I/O: hyper's connection future, with upgrades (its type cannot be named).
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One upstream connection: the handle requests are sent on and the future that does its I/O,
/// which whoever uses the connection polls.
struct Conn {
    sender: Sender,
    /// `None` once the connection has ended: a finished driver is dropped at once, which fails
    /// whatever still waits on it (a response, a body) instead of leaving it pending.
    driver: Option<Driver>,
    /// Its TLS server asked for a client certificate (see [`super::tls::Handshake`]).
    client_cert_asked: bool,
}

impl Conn {
    /// Does the connection's pending I/O; false once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else { return false };
        match driver.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!("upstream connection ended: {e}");
                }
                self.driver = None;
                false
            }
        }
    }

    /// Drives the connection until `exchange` (which only the connection's I/O moves on) is done.
    /// `exchange` is polled without a waker: its wake-ups would only poll this task once more.
    fn poll_exchange<F: Future>(&mut self, exchange: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let alive = self.drive(cx);
        let mut exchange = exchange;
        let polled = exchange.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        match polled {
            Poll::Ready(out) => Poll::Ready(out),
            Poll::Pending if alive => Poll::Pending,
            // The connection ended and its driver is gone, which failed the exchange.
            Poll::Pending => exchange.poll(&mut Context::from_waker(Waker::noop())),
        }
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// One lane's idle connections and the task that watches them.
struct Lane {
    idle: ArrayQueue<Idle>,
    /// Set when the lane's watcher has been started.
    watched: AtomicBool,
    /// The watcher's waker, once it has run: idle connections register it with their sockets.
    watcher: OnceLock<Waker>,
}

/// One server address with its pool of idle connections.
pub struct Upstream {
    authority: Box<str>,
    scheme: Scheme,
    /// The name TLS verifies and sends in SNI (`https://` only), or why the host cannot be one.
    server_name: Option<Result<ServerName<'static>, String>>,
    /// Each lane's HTTP/2 connection (`https://` and `h2c://` only).
    multiplexed: Option<Multiplexed>,
    host_header: HeaderValue,
    socket_addr: Option<SocketAddr>,
    transport: Arc<Transport>,
    /// Idle connections by lane.
    lanes: Box<[Lane]>,
    /// Requests in flight and the queue for a slot (`maxConnsPerHost`); shared with the
    /// upstreams this one replaced or is replaced by.
    limiter: Arc<Limiter>,
    opened: AtomicU64,
    reused: AtomicU64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.authority)
            .field("idle", &self.idle_connections())
            .finish()
    }
}

/// A new connection: lent to one request at a time (HTTP/1.1), or shared by the lane (HTTP/2).
enum Connected {
    Http1(Box<Conn>),
    Http2(h2::Sender),
}

impl Upstream {
    #[cfg(test)]
    pub(super) fn new(authority: &str, transport: Arc<Transport>) -> Self {
        Self::with_limiter(Scheme::Http, authority, transport, None)
    }

    /// The upstream for `scheme://authority` through `transport`, counting its requests in
    /// flight on `limiter` (a predecessor's) or on a new one.
    pub(super) fn with_limiter(scheme: Scheme, authority: &str, transport: Arc<Transport>, limiter: Option<Arc<Limiter>>) -> Self {
        let workers = transport.workers.max(1);
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        Self {
            authority: authority.into(),
            scheme,
            server_name: (scheme == Scheme::Https).then(|| transport.tls_client().server_name(host)),
            multiplexed: (scheme != Scheme::Http).then(|| Multiplexed::new(workers + 1)),
            // Invariant: authorities come from ServerSpec::parse, which only admits host-name characters.
            host_header: HeaderValue::from_str(authority).expect("a parsed server authority is a valid header value"),
            socket_addr: authority.parse().ok(),
            lanes: {
                let workers = transport.workers.max(1);
                let per_lane = transport.max_idle.div_ceil(workers).max(1);
                (0..=workers)
                    .map(|_| Lane {
                        idle: ArrayQueue::new(per_lane),
                        watched: AtomicBool::new(false),
                        watcher: OnceLock::new(),
                    })
                    .collect()
            },
            limiter: limiter.unwrap_or_else(|| Arc::new(Limiter::new(transport.limits))),
            transport,
            opened: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        }
    }

    /// The count of this server's requests in flight, its limit and queue.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The transport its connections are made with.
    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// Open HTTP/2 connections (one per lane at most).
    pub fn http2_connections(&self) -> usize {
        self.multiplexed.as_ref().map_or(0, Multiplexed::open)
    }

    /// `host:port` as a `Host` header value (used when `passHostHeader = false`).
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Requests sent on a reused pooled connection so far.
    pub fn connections_reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Idle connections in the pool now (all lanes).
    pub fn idle_connections(&self) -> usize {
        self.lanes.iter().map(|lane| lane.idle.len()).sum()
    }

    /// The calling thread's lane, within this pool's lanes.
    fn lane(&self) -> usize {
        current_lane().min(self.lanes.len() - 1)
    }

    /// An idle connection of `lane` that is still usable at `now`.
    fn checkout(&self, lane: usize, now: Instant) -> Option<Box<Conn>> {
        while let Some(idle) = self.lanes[lane].idle.pop() {
            if now.saturating_duration_since(idle.since) < self.transport.idle_timeout && idle.conn.sender.is_ready() {
                return Some(idle.conn);
            }
        }
        None
    }

    /// The waker idle connections of `lane` register: its watcher's, or nobody's until that ran.
    fn idle_waker(&self, lane: usize) -> &Waker {
        self.lanes[lane].watcher.get().unwrap_or(Waker::noop())
    }

    /// Keeps `conn`, which has no exchange left and was last driven with [`Self::idle_waker`],
    /// as an idle connection of `lane`.
    fn checkin(self: &Arc<Self>, lane: usize, conn: Box<Conn>) {
        if self.transport.max_idle == 0 {
            return; // a negative maxIdleConnsPerHost: no reuse
        }
        // A full lane drops the connection, which closes it.
        let _ = self.lanes[lane].idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        if !self.lanes[lane].watched.swap(true, Ordering::Relaxed) {
            tokio::spawn(watch_lane(Arc::downgrade(self), lane));
        }
    }

    /// Classifies a failed exchange: a TLS refusal (a server that wants another client
    /// certificate says so after the handshake, on the first read) is told apart.
    #[cold]
    fn classify(&self, error: hyper::Error, otherwise: fn(hyper::Error) -> Error) -> Error {
        if self.scheme == Scheme::Https {
            if let Some(reason) = super::tls::failure_in(&error) {
                tracing::warn!(server = %self.authority, transport = self.transport.name.as_deref().unwrap_or("static"), "{reason}: {error}");
                return Error::tls(reason, error);
            }
        }
        otherwise(error)
    }

    /// A TCP connection to the server, within the dial timeout.
    async fn dial(&self) -> Result<TcpStream, Error> {
        self.make_room(self.lane());
        let connecting = async {
            match self.socket_addr {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect(&*self.authority).await,
            }
        };
        let stream = match tokio::time::timeout(self.transport.dial_timeout, connecting).await {
            Err(_) => return Err(Error::connect_timeout()),
            Ok(Err(e)) => return Err(Error::connect(e)),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Before a new connection is opened: if the busy connections and the idle ones together
    /// are at `maxConnsPerHost`, closes an idle one of another lane, so that the server is not
    /// asked for more connections than the limit (idle connections hold no slot, and a worker
    /// only reuses its own).
    fn make_room(&self, lane: usize) {
        let max = self.limiter.limits().max_conns;
        if max == 0 {
            return;
        }
        if self.limiter.in_flight() + self.idle_connections() <= max {
            return;
        }
        let others = (0..self.lanes.len()).filter(|&l| l != lane);
        for other in others {
            if self.lanes[other].idle.pop().is_some() {
                return; // dropped: closed
            }
        }
    }

    async fn connect(&self) -> Result<Connected, Error> {
        if self.scheme != Scheme::Http {
            // Boxed: the TLS handshake's state would make every plain request's future larger.
            return Box::pin(self.connect_other(true)).await;
        }
        let stream = self.dial().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(BatchedStream::new(stream)))
            .await
            .map_err(Error::connect)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Connected::Http1(Box::new(Conn {
            sender,
            driver: Some(Box::pin(conn.with_upgrades())),
            client_cert_asked: false,
        })))
    }

    /// A connection to an `https://` server (HTTP/2 if `http2` and the server chooses it, else
    /// HTTP/1.1) or an `h2c://` one.
    async fn connect_other(&self, http2: bool) -> Result<Connected, Error> {
        let stream = self.dial().await?;
        let connected = match self.scheme {
            Scheme::Https => {
                let name = match &self.server_name {
                    Some(Ok(name)) => name.clone(),
                    Some(Err(why)) => return Err(Error::tls("the server's name cannot be checked by TLS", why.clone())),
                    None => unreachable!("an https upstream has a server name (set in Upstream::with_scheme)"),
                };
                let handshake = self
                    .transport
                    .tls_client()
                    .handshake(stream, name, http2 && self.transport.http2.enabled);
                let done = match tokio::time::timeout(self.transport.dial_timeout, handshake).await {
                    Err(_) => return Err(Error::connect_timeout()),
                    Ok(Err(e)) => {
                        tracing::warn!(server = %self.authority, transport = self.transport.name.as_deref().unwrap_or("static"), "{e}");
                        return Err(e);
                    }
                    Ok(Ok(done)) => done,
                };
                let asked = done.client_cert_asked;
                if done.http2 {
                    let handshake = h2::handshake(TokioIo::new(done.stream), &self.transport, asked).await;
                    Connected::Http2(handshake.map_err(|e| self.classify(e, Error::connect))?)
                } else {
                    let (sender, conn) = http1::Builder::new()
                        .handshake(TokioIo::new(done.stream))
                        .await
                        .map_err(Error::connect)?;
                    Connected::Http1(Box::new(Conn {
                        sender,
                        driver: Some(Box::pin(conn.with_upgrades())),
                        client_cert_asked: asked,
                    }))
                }
            }
            Scheme::H2c | Scheme::Http => {
                let handshake = h2::handshake(TokioIo::new(stream), &self.transport, false).await;
                Connected::Http2(handshake.map_err(Error::connect)?)
            }
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(connected)
    }

    /// Sends `req` on `lane`'s HTTP/2 connection `sender` (`reused`: it served requests before).
    /// A request that comes back unsent is restored for an HTTP/1.1 connection.
    async fn send_h2(
        self: &Arc<Self>,
        mut sender: h2::Sender,
        mut req: Request<RequestBody>,
        lane: usize,
        reused: bool,
    ) -> Result<(Response<Incoming>, Pooled), Box<SendError>> {
        let scheme = if self.scheme == Scheme::Https {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        h2::prepare(&mut req, scheme);
        match sender.requests.try_send_request(req).await {
            Ok(response) => {
                sender.answered.store(true, Ordering::Relaxed);
                if reused {
                    self.reused.fetch_add(1, Ordering::Relaxed);
                }
                Ok((
                    response,
                    Pooled {
                        conn: None,
                        upstream: self.clone(),
                        lane,
                        slot: false,
                    },
                ))
            }
            Err(mut failed) => match failed.take_message() {
                Some(mut back) => {
                    h2::unprepare(&mut back);
                    if let Some(multiplexed) = &self.multiplexed {
                        multiplexed.forget(lane);
                    }
                    let error = failed.into_error();
                    let error = match sender.tls_failure.get() {
                        Some(reason) => Error::tls(reason, error),
                        None => self.classify(error, Error::not_sent),
                    };
                    Err(SendError::new(error, Some(back)))
                }
                None => {
                    let error = failed.into_error();
                    let error = match sender.tls_failure.get() {
                        Some(reason) => Error::tls(reason, error),
                        None => self.classify(error, Error::from_hyper),
                    };
                    Err(SendError::new(error, None))
                }
            },
        }
    }

    /// Sends `req` on a pooled or new connection (`now` is the current time, which the caller
    /// has read already). On failure the request comes back when none of it was sent, so the
    /// caller may try another server.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        now: Instant,
    ) -> Result<(Response<Incoming>, Pooled), Box<SendError>> {
        let lane = self.lane();
        // HTTP/2 cannot carry an HTTP/1.1 upgrade (a WebSocket): such a request goes on HTTP/1.1.
        let upgrade = self.multiplexed.is_some() && req.headers().contains_key(http::header::UPGRADE);
        loop {
            if let Some(multiplexed) = self.multiplexed.as_ref().filter(|_| !upgrade) {
                if let Some(sender) = multiplexed.ready(lane, now, self.transport.idle_timeout) {
                    match Box::pin(self.send_h2(sender, req, lane, true)).await {
                        // The connection closed meanwhile: try a new one.
                        Err(failed) if failed.request.is_some() => {
                            req = failed.request.unwrap_or_else(|| unreachable!("checked by the guard"));
                            continue;
                        }
                        sent => return sent,
                    }
                }
            }
            // A new connection takes its first request at once; hyper queues it until the
            // connection is ready.
            let (mut conn, reused) = match self.checkout(lane, now) {
                Some(conn) => (conn, true),
                None => match if upgrade {
                    Box::pin(self.connect_other(false)).await
                } else {
                    self.connect().await
                } {
                    Ok(Connected::Http1(conn)) => (conn, false),
                    Ok(Connected::Http2(sender)) => {
                        if let Some(multiplexed) = &self.multiplexed {
                            multiplexed.keep(lane, sender.clone());
                        }
                        return Box::pin(self.send_h2(sender, req, lane, false)).await;
                    }
                    Err(e) => return Err(SendError::new(e, Some(req))),
                },
            };
            let mut exchange = pin!(conn.sender.try_send_request(req));
            let result = std::future::poll_fn(|cx| conn.poll_exchange(exchange.as_mut(), cx)).await;
            match result {
                Ok(response) => {
                    if reused {
                        self.reused.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok((
                        response,
                        Pooled {
                            conn: Some(conn),
                            upstream: self.clone(),
                            lane,
                            slot: false,
                        },
                    ));
                }
                Err(mut failed) => match failed.take_message() {
                    // A pooled connection died before anything was written: use another one.
                    Some(back) if reused => req = back,
                    Some(back) if conn.client_cert_asked => {
                        return Err(SendError::new(Error::tls(CLIENT_CERT_REFUSED, failed.into_error()), Some(back)))
                    }
                    Some(back) => return Err(SendError::new(self.classify(failed.into_error(), Error::not_sent), Some(back))),
                    None if !reused && conn.client_cert_asked => {
                        return Err(SendError::new(Error::tls(CLIENT_CERT_REFUSED, failed.into_error()), None))
                    }
                    None => return Err(SendError::new(self.classify(failed.into_error(), Error::from_hyper), None)),
                },
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Let the watchers see that their upstream is gone, so that they end.
        for lane in self.lanes.iter() {
            if let Some(watcher) = lane.watcher.get() {
                watcher.wake_by_ref();
            }
        }
    }
}

/// Watches the idle connections of `upstream`'s `lane`: closes those the server closed (or
/// that failed) as soon as it is woken for them, and those idle for longer than the idle timeout.
/// Ends with the upstream.
async fn watch_lane(upstream: Weak<Upstream>, lane: usize) {
    let mut expiry: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        // Held only while polled: an idle upstream is not kept alive by its watchers.
        let Some(upstream) = upstream.upgrade() else {
            return Poll::Ready(());
        };
        let lane = &upstream.lanes[lane];
        lane.watcher.get_or_init(|| cx.waker().clone());
        let timeout = upstream.transport.idle_timeout;
        let mut now = Instant::now();
        loop {
            let mut oldest: Option<Instant> = None;
            // One pass over the lane; connections put back go behind the others, in order.
            for _ in 0..lane.idle.len() {
                let Some(mut idle) = lane.idle.pop() else { break };
                if now.saturating_duration_since(idle.since) >= timeout || !idle.conn.drive(cx) || !idle.conn.sender.is_ready() {
                    continue; // dropped: closed
                }
                oldest = Some(oldest.map_or(idle.since, |o| o.min(idle.since)));
                let _ = lane.idle.push(idle);
            }
            // With no idle connection, look again one timeout from now: one given back later
            // (which does not wake this task) cannot be due before that.
            let deadline = oldest.unwrap_or(now) + timeout;
            let timer = expiry.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Expired: another pass closes the oldest (at least those due at `deadline`).
            now = Instant::now().max(deadline);
        }
    })
    .await
}

/// A failed send: what went wrong, and the request when none of it was sent. Boxed, since it
/// is large and rare.
#[derive(Debug)]
pub struct SendError {
    /// The classified failure.
    pub error: Error,
    /// The request, untouched, when nothing of it reached the server.
    pub request: Option<Request<RequestBody>>,
}

impl SendError {
    /// A boxed send error.
    pub fn new(error: Error, request: Option<Request<RequestBody>>) -> Box<Self> {
        Box::new(Self { error, request })
    }
}

/// A connection lent to one response (HTTP/1.1), or the stream of one (HTTP/2); given back to
/// the pool when the response body is done. Until then the body's reader drives a lent
/// connection ([`Pooled::drive`]): the connection feeds the body. It also holds the request's
/// slot of the server's limit, if it was given one ([`Pooled::hold`]), until then.
pub struct Pooled {
    conn: Option<Box<Conn>>,
    upstream: Arc<Upstream>,
    /// The lane the connection belongs to (the worker whose reactor its socket is registered with).
    lane: usize,
    /// Holds a slot of `upstream`'s limiter, freed when the response is done with.
    slot: bool,
}

impl Pooled {
    /// Does the connection's pending I/O (reading the response body into it, writing the rest of
    /// the request body); false once the connection has ended or was let go.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.as_mut().is_some_and(|conn| conn.drive(cx))
    }

    /// Takes over `slot`, the request's slot of this server's limit: freed once the response is
    /// done with (the connection given back, discarded, upgraded, or this dropped).
    pub fn hold(&mut self, slot: Slot<'_>) {
        debug_assert!(
            std::ptr::eq(slot.limiter(), &*self.upstream.limiter),
            "a slot is held by a connection to the server it was taken for"
        );
        if std::mem::replace(&mut self.slot, true) {
            // Already holding one (cannot happen: one request, one slot): free the extra.
            return;
        }
        slot.keep();
    }

    /// Frees the slot this holds, if any.
    fn free_slot(&mut self) {
        if std::mem::take(&mut self.slot) {
            self.upstream.limiter.release();
        }
    }

    /// The response ended cleanly: the connection can serve another request.
    pub fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.give_back(conn);
        }
        self.free_slot();
    }

    fn give_back(&mut self, mut conn: Box<Conn>) {
        // From now on its lane's watcher, not this request, is told about the connection.
        let mut idle = Context::from_waker(self.upstream.idle_waker(self.lane));
        if !conn.drive(&mut idle) {
            return;
        }
        match conn.sender.poll_ready(&mut idle) {
            Poll::Ready(Ok(())) => self.upstream.checkin(self.lane, conn),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                // The connection is finishing the exchange (e.g. the rest of a request body);
                // give it back once it is idle, or drop it if that takes too long. It is still
                // busy, so it keeps the slot until then.
                let upstream = self.upstream.clone();
                let lane = self.lane;
                let slot = std::mem::take(&mut self.slot);
                let limit = upstream.transport.idle_timeout;
                tokio::spawn(async move {
                    let ready = std::future::poll_fn(|cx| {
                        if !conn.drive(cx) {
                            return Poll::Ready(false);
                        }
                        conn.sender.poll_ready(cx).map(|r| r.is_ok())
                    });
                    if let Ok(true) = tokio::time::timeout(limit, ready).await {
                        if conn.drive(&mut Context::from_waker(upstream.idle_waker(lane))) {
                            upstream.checkin(lane, conn);
                        }
                    }
                    if slot {
                        upstream.limiter.release();
                    }
                });
            }
        }
    }

    /// The connection must not be reused: its response was cut short. Dropping it closes it.
    pub fn discard(&mut self) {
        self.conn = None;
        self.free_slot();
    }

    /// The server switched protocols: the connection is driven on its own until hyper hands its
    /// socket to the upgrade, and never comes back to the pool. The tunnel holds no slot.
    pub fn upgrade(&mut self) {
        if let Some(driver) = self.conn.take().and_then(|conn| conn.driver) {
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    tracing::debug!("upstream connection ended before the upgrade: {e}");
                }
            });
        }
        self.free_slot();
    }

    /// The upstream this connection belongs to.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// The connection is lent to this response alone, which then drives it; false for an
    /// HTTP/2 stream, whose connection runs in its own task.
    pub fn is_lent(&self) -> bool {
        self.conn.is_some()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.free_slot();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::upstream::enter_worker;

    /// A keep-alive HTTP/1.1 server on its own thread that answers every request `200 ok`.
    fn server() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let runtime = runtime();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0; 1024];
                        loop {
                            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                buf.drain(..end + 4);
                                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                                if stream.write_all(reply).await.is_err() {
                                    return;
                                }
                            }
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                    });
                }
            });
        });
        addr
    }

    /// One GET through `upstream`, its body read to the end and the connection given back.
    /// A request sent on another thread's connection would wait for that thread's runtime,
    /// which is blocked here: the deadline turns that into a failure rather than a hang.
    async fn get(upstream: &Arc<Upstream>) {
        tokio::time::timeout(Duration::from_secs(5), get_once(upstream))
            .await
            .expect("the request was answered (on a connection of this thread)");
    }

    async fn get_once(upstream: &Arc<Upstream>) {
        let request = Request::builder()
            .uri("/")
            .header(http::header::HOST, upstream.host_header().clone())
            .body(RequestBody::Empty)
            .unwrap();
        let slot = upstream.limiter().try_acquire().expect("a free slot");
        let (response, mut pooled) = upstream.send(request, Instant::now()).await.map_err(|e| e.error).unwrap();
        pooled.hold(slot);
        assert_eq!(upstream.limiter().in_flight(), 1, "the connection holds the request's slot");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        // The connection feeds the body: drive it while reading.
        while let Some(frame) = std::future::poll_fn(|cx| {
            pooled.drive(cx);
            Pin::new(&mut body).poll_frame(cx)
        })
        .await
        {
            frame.unwrap();
        }
        pooled.release();
        assert_eq!(upstream.limiter().in_flight(), 0, "given back with its connection");
    }

    /// Runs `requests` GETs on a new thread marked as worker `worker` (or on no worker), whose
    /// runtime (which drives the connections it opened) lives until `done` is dropped.
    fn on_thread(upstream: &Arc<Upstream>, worker: Option<usize>, requests: usize) -> mpsc::Sender<()> {
        let (done, wait) = mpsc::channel::<()>();
        let (finished, requests_done) = mpsc::channel();
        let upstream = upstream.clone();
        std::thread::spawn(move || {
            if let Some(w) = worker {
                enter_worker(w);
            }
            let runtime = runtime();
            runtime.block_on(async {
                for _ in 0..requests {
                    get(&upstream).await;
                }
            });
            finished.send(()).unwrap();
            let _ = wait.recv();
        });
        requests_done.recv().expect("the requests ran");
        done
    }

    #[test]
    fn each_worker_reuses_only_the_connections_it_opened() {
        let addr = server();
        let transport = Arc::new(Transport {
            workers: 2,
            ..Transport::default()
        });
        let upstream = Arc::new(Upstream::new(&addr.to_string(), transport));
        let _a = on_thread(&upstream, Some(0), 3);
        assert_eq!((upstream.connections_opened(), upstream.connections_reused()), (1, 2));
        // Worker 1 finds worker 0's idle connection but opens its own: a request on worker 0's
        // connection would have to cross to worker 0's thread and back.
        let _b = on_thread(&upstream, Some(1), 3);
        assert_eq!((upstream.connections_opened(), upstream.connections_reused()), (2, 4));
        // So does a thread that is no worker (active health checks).
        let _c = on_thread(&upstream, None, 2);
        assert_eq!((upstream.connections_opened(), upstream.connections_reused()), (3, 5));
        assert_eq!(upstream.idle_connections(), 3, "one idle connection in each lane");
    }

    /// At `maxConnsPerHost`, a worker that must open a connection first closes an idle one of
    /// another worker: idle connections hold no slot, but the server would count them.
    #[test]
    fn at_the_limit_an_idle_connection_of_another_worker_makes_room() {
        let addr = server();
        let transport = Arc::new(Transport {
            workers: 2,
            limits: crate::upstream::Limits {
                max_conns: 1,
                ..Default::default()
            },
            ..Transport::default()
        });
        let upstream = Arc::new(Upstream::new(&addr.to_string(), transport));
        let _a = on_thread(&upstream, Some(0), 1);
        assert_eq!(upstream.lanes[1].idle.len(), 1, "worker 0 keeps its connection");
        let _b = on_thread(&upstream, Some(1), 1);
        assert_eq!(upstream.connections_opened(), 2);
        assert_eq!(
            (upstream.lanes[1].idle.len(), upstream.lanes[2].idle.len()),
            (0, 1),
            "worker 0's idle connection was closed for worker 1's: one open in all"
        );
    }

    /// A server that answers one request per connection and closes the connection when told to
    /// (on the first channel), saying so once closed (on the second).
    fn closing_server() -> (SocketAddr, mpsc::Sender<()>, mpsc::Receiver<()>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed, on_close) = mpsc::channel();
        let (close, when_told) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                if when_told.recv().is_err() {
                    return;
                }
                drop(stream);
                if closed.send(()).is_err() {
                    return;
                }
            }
        });
        (addr, close, on_close)
    }

    /// A runtime of the kind a worker runs.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Waits until `done()` holds, at most 5 s (of the runtime's clock).
    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let waiting = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), waiting).await.is_err() {
            panic!("not within 5 s: {what}");
        }
    }

    /// A connection the server closes while idle (its keep-alive timeout, a restart) is closed
    /// on drover's side at once, not left in CLOSE_WAIT until a request picks it; the next
    /// request goes out on a new connection.
    #[test]
    fn a_connection_the_server_closes_while_idle_is_closed_at_once() {
        let (addr, close, closed) = closing_server();
        let upstream = Arc::new(Upstream::new(&addr.to_string(), Arc::new(Transport::default())));
        let runtime = runtime();
        runtime.block_on(async {
            get(&upstream).await;
            assert_eq!(upstream.idle_connections(), 1, "kept for the next request");
            close.send(()).unwrap();
            closed.recv().unwrap();
            wait_until("the closed connection left the pool", || upstream.idle_connections() == 0).await;
            get(&upstream).await;
            close.send(()).unwrap();
        });
        assert_eq!(
            (upstream.connections_opened(), upstream.connections_reused()),
            (2, 0),
            "the second request went out on a second connection"
        );
    }

    /// Connections idle for the idle timeout are closed even when no request comes to notice.
    #[test]
    fn a_connection_idle_for_the_idle_timeout_is_closed() {
        let addr = server();
        let transport = Arc::new(Transport {
            idle_timeout: Duration::from_secs(90),
            ..Transport::default()
        });
        let upstream = Arc::new(Upstream::new(&addr.to_string(), transport));
        let runtime = runtime();
        runtime.block_on(async {
            get(&upstream).await;
            get(&upstream).await;
            assert_eq!(upstream.idle_connections(), 1);
            tokio::time::pause();
            tokio::time::advance(Duration::from_secs(89)).await;
            assert_eq!(upstream.idle_connections(), 1, "still kept within the idle timeout");
            tokio::time::advance(Duration::from_secs(2)).await;
            wait_until("the expired connection was closed", || upstream.idle_connections() == 0).await;
        });
        assert_eq!((upstream.connections_opened(), upstream.connections_reused()), (1, 1));
    }

    /// The watchers end with their upstream, also when they watch no connection just then: no
    /// task is left behind per removed server.
    #[test]
    fn the_watchers_end_with_their_upstream() {
        let (addr, close, closed) = closing_server();
        let upstream = Arc::new(Upstream::new(&addr.to_string(), Arc::new(Transport::default())));
        let runtime = runtime();
        runtime.block_on(async {
            get(&upstream).await;
            close.send(()).unwrap();
            closed.recv().unwrap();
            wait_until("the lane is empty", || upstream.idle_connections() == 0).await;
            let metrics = tokio::runtime::Handle::current().metrics();
            assert_eq!(metrics.num_alive_tasks(), 1, "the lane's watcher, waiting for its timer");
            drop(upstream);
            wait_until("the watcher ended", || metrics.num_alive_tasks() == 0).await;
        });
    }

    #[test]
    fn the_idle_limit_is_split_across_the_lanes() {
        let transport = Arc::new(Transport {
            workers: 4,
            max_idle: 10,
            ..Transport::default()
        });
        let upstream = Upstream::new("127.0.0.1:1", transport);
        assert_eq!(upstream.lanes.len(), 5, "a lane per worker and one for other threads");
        assert!(upstream.lanes.iter().all(|lane| lane.idle.capacity() == 3), "⌈10 / 4⌉ each");
    }
}
