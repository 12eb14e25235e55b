//! A worker: one thread running a single-threaded tokio runtime that accepts on every
//! entrypoint and serves its connections to the end.
//!
//! Workers share nothing but [`Shared`] (the snapshot, health registry, metrics and access-log
//! queue, all read or updated without locks on the request path) and the upstream pools, each
//! split into per-worker lanes, so there is no cross-thread scheduling on the request path. All workers accept on the same listening sockets; the kernel
//! hands each connection to one of them.
//!
//! **Draining** (SIGTERM, or a successor took the sockets over) must not close a keep-alive
//! connection under its client's next request: a client that sends a request on a connection
//! just as the server closes it sees a reset, not an answer, and cannot know whether to retry.
//! So for [`LINGER`] (within the grace period) nothing is closed: each HTTP/1 response says
//! `Connection: close` and the connection ends after it, and a busy client reconnects (to the
//! successor, after an upgrade) between two requests of its own. Only then does hyper's
//! graceful shutdown close what is still idle (a client silent all that time) and send
//! HTTP/2 clients GOAWAY, and whatever is still open when the grace period ends is cut.
//! Parked connections (idle HTTP/1 connections holding their bare socket, see
//! `server::timeouts`) close at that moment too; one whose client speaks during [`LINGER`] is
//! served again, its response saying `Connection: close`.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};

use super::admission::Admission;
use super::handshake::{self, Accepted};
use super::timeouts::{self, Served, WatchedStream, PARK_AFTER};
use crate::connection::{Connection, EntryPointRules, Limits, Shared};
use crate::forward::handle;
use crate::l4::dispatch::{self, Dispatched};

/// What a worker needs to serve one entrypoint.
#[derive(Debug)]
pub struct EntryPointSocket {
    /// What its connections take from it.
    pub rules: EntryPointRules,
    /// Its listening socket (a clone of the shared one).
    pub listener: std::net::TcpListener,
    /// Client connection timeouts.
    pub limits: Limits,
    /// Grace period for in-flight requests at shutdown.
    pub grace: Duration,
    /// Its connection limit and accept-failure report (shared by every worker).
    pub admission: Arc<Admission>,
}

/// The TLS handshake's deadline when the entrypoint has no `headerReadTimeout`.
const HANDSHAKE_FALLBACK: Duration = Duration::from_secs(60);

/// How long a draining worker lets its connections end after a response of their own before
/// it closes the idle ones.
pub const LINGER: Duration = Duration::from_secs(1);

/// hyper's own header read timeout is off: it arms a timer for every request, where
/// [`timeouts::serve`] keeps one per connection and also tells idle from slow.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(250)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(64 * 1024);
    builder
}

/// Runs one worker until `shutdown` turns true and its connections have finished (or the grace
/// period ran out). It starts accepting once `in_force` says a first configuration is in force.
pub async fn run(sockets: Vec<EntryPointSocket>, shared: Arc<Shared>, mut in_force: watch::Receiver<u64>, shutdown: watch::Receiver<bool>) {
    {
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = in_force.wait_for(|generation| *generation >= 1) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
    // Each connection holds a receiver until it ends; a value sent asks them to shut down
    // gracefully (hyper-util's `GracefulShutdown` cannot follow a connection across parking).
    let (graceful, _) = watch::channel(());
    // Told each time one of this worker's connections ends, while draining.
    let ended = Arc::new(Notify::new());
    // Sends the small writes of this worker's connections once per batch (see `crate::io`).
    let flusher = tokio::spawn(crate::io::run_flusher());
    let mut grace = Duration::ZERO;
    let mut accepting = Vec::new();
    for socket in sockets {
        grace = grace.max(socket.grace);
        let listener = match tokio::net::TcpListener::from_std(socket.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot use listening socket: {e}");
                continue;
            }
        };
        let local = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("listening socket has no address: {e}");
                continue;
            }
        };
        let builder = Arc::new(connection_builder());
        // A parked connection is known to speak HTTP/1: no version detection when it resumes.
        let resumed = Arc::new(connection_builder().http1_only());
        let limits = socket.limits;
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        let rules = socket.rules;
        let admission = socket.admission;
        let open_connections = rules.open_connections.clone();
        let graceful = &graceful;
        let ended = &ended;
        let rules = Arc::new(rules);
        accepting.push(async move {
            loop {
                // Over `maxConnections`, the next connection waits in the backlog, unaccepted.
                let slot = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    slot = admission.slot() => slot,
                };
                let accepted = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(ok) => {
                        admission.accepted();
                        ok
                    }
                    Err(e) => {
                        // Out of descriptors or memory: back off instead of spinning, and say
                        // so once in a while rather than each time.
                        let pause = admission.accept_failed(&e);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let open = open_connections.clone();
                open.fetch_add(1, Ordering::Relaxed);
                let serving = Serving {
                    builder: builder.clone(),
                    resumed: resumed.clone(),
                    stop: graceful.subscribe(),
                    limits,
                };
                let (shared, rules, ended) = (shared.clone(), rules.clone(), ended.clone());
                tokio::spawn(async move {
                    let deadline = limits.header_read.unwrap_or(HANDSHAKE_FALLBACK);
                    // TCP routers and PROXY headers come first; the snapshot is looked at
                    // (one guarded load) only to see whether this entrypoint has TCP routers.
                    let (stream, peer) = if rules.l4.proxy_protocol.is_some() || shared.snapshot.load().l4.table(rules.index).is_some() {
                        // Boxed: the TCP routers' state would otherwise stay in every connection's task.
                        match Box::pin(dispatch::dispatch(stream, peer, local, &shared, rules.index, &rules.l4, deadline)).await {
                            Dispatched::Http(stream, client) => (stream, client),
                            Dispatched::Done => {
                                drop(slot);
                                open.fetch_sub(1, Ordering::Relaxed);
                                ended.notify_one();
                                return;
                            }
                        }
                    } else {
                        (stream, peer)
                    };
                    match handshake::accept(stream, &shared.snapshot, rules.index, deadline).await {
                        Ok(Some(Accepted::Plain(stream))) => {
                            let conn = Arc::new(Connection::new(shared, &rules, peer, local));
                            serving.run_plain(stream, conn, slot).await;
                        }
                        // The TLS stream stays boxed: unboxed, rustls's state would be part of
                        // every connection's task, plain ones included, for its whole life.
                        Ok(Some(Accepted::Tls(stream, session))) => {
                            let conn = Arc::new(Connection::new(shared, &rules, peer, local).with_tls(session));
                            serving.run(WatchedStream::over(stream, conn.clone(), slot), conn).await;
                        }
                        Ok(None) => {}
                        Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                    ended.notify_one();
                });
            }
        });
    }
    futures_util::future::join_all(accepting).await;
    tracing::debug!(connections = graceful.receiver_count(), "worker draining connections");
    let deadline = tokio::time::Instant::now() + grace;
    // First, connections end after a response of their own (see the module's notes).
    let linger = tokio::time::Instant::now() + LINGER.min(grace);
    while graceful.receiver_count() > 0 {
        tokio::select! {
            () = ended.notified() => {}
            () = tokio::time::sleep_until(linger) => break,
        }
    }
    let _ = graceful.send(());
    if tokio::time::timeout_at(deadline, graceful.closed()).await.is_err() {
        tracing::warn!("grace period ({grace:?}) ran out with connections still open; closing them");
    }
    flusher.abort();
}

/// What serving one accepted connection takes from its entrypoint.
struct Serving {
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// The same, HTTP/1 only: for a parked connection served again.
    resumed: Arc<auto::Builder<TokioExecutor>>,
    /// Changes when the worker shuts its connections down gracefully.
    stop: watch::Receiver<()>,
    limits: Limits,
}

impl Serving {
    /// Serves `conn` over `io` (a TLS stream) until it ends or a client timeout closes it.
    async fn run<S>(mut self, io: WatchedStream<S>, conn: Arc<Connection>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let watched = conn.clone();
        let service = service_fn(move |req| handle(conn.clone(), req));
        let serving = Box::pin(self.builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
        let mut stopping = false;
        let serving = graceful(serving, &mut self.stop, &mut stopping);
        if let Served::Done(Err(e)) = timeouts::serve(serving, &watched.activity, self.limits, None).await {
            tracing::debug!("client connection ended: {e}");
        }
    }

    /// Serves the plain connection `conn` on `socket` until it ends or a client timeout closes
    /// it, parking it whenever it is idle (see `server::timeouts`): hyper's state, boxed, lives
    /// only while the connection is in use. `slot` (its place under `maxConnections`) is held
    /// until the socket closes.
    async fn run_plain(mut self, socket: TcpStream, conn: Arc<Connection>, slot: Option<OwnedSemaphorePermit>) {
        let socket = Arc::new(socket);
        let slot = slot.map(Arc::new);
        let mut builder = &self.builder;
        loop {
            let io = WatchedStream::shared(socket.clone(), conn.clone(), slot.clone());
            let served = conn.clone();
            let service = service_fn(move |req| handle(served.clone(), req));
            let serving = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
            let mut stopping = false;
            let serving = graceful(serving, &mut self.stop, &mut stopping);
            match timeouts::serve(serving, &conn.activity, self.limits, Some(PARK_AFTER)).await {
                Served::Done(Ok(())) => return,
                Served::Done(Err(e)) => {
                    tracing::debug!("client connection ended: {e}");
                    return;
                }
                Served::Parked if stopping => return,
                Served::Parked => {}
            }
            if !timeouts::parked(&socket, &conn.activity, self.limits, &mut self.stop).await {
                return;
            }
            builder = &self.resumed;
        }
    }
}

/// A hyper connection that `stop` tells to shut down gracefully (`stopping` is then set).
async fn graceful<C: GracefulConnection>(
    mut serving: Pin<Box<C>>,
    stop: &mut watch::Receiver<()>,
    stopping: &mut bool,
) -> Result<(), C::Error> {
    tokio::select! {
        biased;
        done = serving.as_mut() => return done,
        _ = stop.changed() => {}
    }
    *stopping = true;
    serving.as_mut().graceful_shutdown();
    serving.await
}
