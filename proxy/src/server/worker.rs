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
//! Parked connections (idle HTTP/1 connections whose bare socket waits in the worker's parking
//! lot, see `server::parking`) close at that moment too; one whose client speaks during
//! [`LINGER`] is served again, its response saying `Connection: close`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};

use super::admission::Admission;
use super::handshake::{self, Accepted};
use super::parking::{CloseParked, Parked, ParkingLot};
use super::timeouts::{self, Served, WatchedStream, PARK_AFTER};
use crate::connection::{Connection, EntryPointRules, Limits, Shared};
use crate::forward::{handle, ProxyBody};
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
    // Each connection's task holds a receiver until it ends (or parks); a value sent asks them to
    // shut down gracefully (hyper-util's `GracefulShutdown` cannot follow a connection across
    // parking).
    let graceful = Arc::new(watch::channel(()).0);
    // Told each time one of this worker's connections ends, while draining.
    let ended = Arc::new(Notify::new());
    // Closes the parked connections when the worker shuts down (they hold no receiver).
    let close_parked = Arc::new(CloseParked::default());
    // Sends the small writes of this worker's connections once per batch (see `crate::io`).
    let flusher = tokio::spawn(crate::io::run_flusher());
    let mut grace = Duration::ZERO;
    let mut accepting = Vec::new();
    let mut lots = Vec::new();
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
        let lot = match ParkingLot::new(close_parked.clone()) {
            Ok(lot) => lot,
            Err(e) => {
                tracing::error!("cannot make a parking lot for idle connections: {e}");
                continue;
            }
        };
        let at = Arc::new(Accepting {
            shared: shared.clone(),
            rules: Arc::new(socket.rules),
            builder: connection_builder(),
            // A parked connection is known to speak HTTP/1: no version detection when it resumes.
            resumed: connection_builder().http1_only(),
            limits: socket.limits,
            local,
            ended: ended.clone(),
            lot,
            accepted: AtomicU64::new(0),
        });
        tokio::spawn(run_lot(at.clone(), graceful.clone()));
        lots.push(at.clone());
        let admission = socket.admission;
        let mut shutdown = shutdown.clone();
        let graceful = &*graceful;
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
                at.rules.open_connections.fetch_add(1, Ordering::Relaxed);
                at.accepted.fetch_add(1, Ordering::Relaxed);
                // Boxed: sorting the connection (TCP routers, the TLS handshake) needs far more
                // than serving it idle, and this box is freed once it is done.
                let sorting = Box::pin(sort(at.clone(), stream, peer));
                tokio::spawn(serve_client(at.clone(), sorting, slot, graceful.subscribe()));
            }
        });
    }
    if crate::memory::can_trim() && !lots.is_empty() {
        tokio::spawn(trim_when_quiet(lots.clone(), close_parked.clone()));
    }
    futures_util::future::join_all(accepting).await;
    let open = || graceful.receiver_count() + lots.iter().map(|at| at.lot.parked()).sum::<usize>();
    tracing::debug!(connections = open(), "worker draining connections");
    let deadline = tokio::time::Instant::now() + grace;
    // First, connections end after a response of their own (see the module's notes).
    let linger = tokio::time::Instant::now() + LINGER.min(grace);
    while open() > 0 {
        tokio::select! {
            () = ended.notified() => {}
            () = tokio::time::sleep_until(linger) => break,
        }
    }
    let _ = graceful.send(());
    close_parked.close_all();
    if tokio::time::timeout_at(deadline, graceful.closed()).await.is_err() {
        tracing::warn!("grace period ({grace:?}) ran out with connections still open; closing them");
    }
    flusher.abort();
}

/// What the connections accepted on one listening socket share.
struct Accepting {
    shared: Arc<Shared>,
    rules: Arc<EntryPointRules>,
    builder: auto::Builder<TokioExecutor>,
    /// The same, HTTP/1 only: for a parked connection served again.
    resumed: auto::Builder<TokioExecutor>,
    limits: Limits,
    /// The listening socket's address.
    local: SocketAddr,
    /// Told when a connection ends (the worker counts them while draining).
    ended: Arc<Notify>,
    /// This worker's idle connections of the listening socket.
    lot: ParkingLot,
    /// Connections this worker accepted here (with the lot's parks, what tells a quiet worker,
    /// see [`trim_when_quiet`]).
    accepted: AtomicU64,
}

impl Accepting {
    /// A client connection is closed: it no longer counts.
    fn connection_ended(&self) {
        self.rules.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.ended.notify_one();
    }
}

/// Runs `at`'s parking lot until the worker closes it: a connection whose client speaks again
/// is served by a new task (subscribed to `graceful`, the worker's graceful shutdown).
async fn run_lot(at: Arc<Accepting>, graceful: Arc<watch::Sender<()>>) {
    let resuming = at.clone();
    let resume = move |parked| {
        tokio::spawn(resume(resuming.clone(), parked, graceful.subscribe()));
    };
    at.lot.run(resume, || at.connection_ended()).await;
}

/// Serves a parked connection whose client spoke again, until it ends or parks once more.
async fn resume(at: Arc<Accepting>, parked: Parked, mut stop: watch::Receiver<()>) {
    let Parked { socket, peer, slot } = parked;
    match TcpStream::from_std(socket) {
        Ok(stream) => {
            let conn = Arc::new(Connection::resumed(at.shared.clone(), &at.rules, peer, at.local));
            if run_plain(&at, &at.resumed, Arc::new(stream), conn, slot, &mut stop).await {
                return;
            }
        }
        Err(e) => tracing::debug!(%peer, "a parked connection could not be served again: {e}"),
    }
    at.connection_ended();
}

/// Hands the memory of a burst back to the system once this worker stops accepting and parking
/// connections (see `crate::memory`); ends when the worker closes its lots.
async fn trim_when_quiet(lots: Vec<Arc<Accepting>>, close: Arc<CloseParked>) {
    let mut ticks = tokio::time::interval(crate::memory::QUIET);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet = crate::memory::Quiet::default();
    while !close.is_closing() {
        ticks.tick().await;
        if quiet.tick(
            lots.iter()
                .map(|at| at.accepted.load(Ordering::Relaxed) + at.lot.parks_so_far())
                .sum(),
        ) {
            crate::memory::trim();
        }
    }
}

/// Serves a client connection until it ends, once `sorting` (see [`sort`]) has said what it is.
/// `slot` (its place under `maxConnections`) is held until the socket closes; `stop` changes
/// when the worker shuts connections down gracefully.
///
/// This future is what an idle connection costs besides its socket and [`Connection`]. Its
/// size is that of its largest state plus its arguments (which an async function keeps for its
/// whole life), so the arguments are small and every state that holds more than the parked wait
/// (sorting, the TLS handshake and stream, hyper serving requests) is boxed, its memory held
/// only while it runs.
async fn serve_client<F>(at: Arc<Accepting>, sorting: Pin<Box<F>>, slot: Option<OwnedSemaphorePermit>, mut stop: watch::Receiver<()>)
where
    F: std::future::Future<Output = Option<(Accepted, SocketAddr)>>,
{
    match sorting.await {
        Some((Accepted::Plain(stream), peer)) => {
            let conn = Arc::new(Connection::new(at.shared.clone(), &at.rules, peer, at.local));
            if run_plain(&at, &at.builder, Arc::new(stream), conn, slot.map(Arc::new), &mut stop).await {
                // Parked: the lot has it now.
                return;
            }
        }
        Some((Accepted::Tls(stream, session), peer)) => {
            let conn = Arc::new(Connection::new(at.shared.clone(), &at.rules, peer, at.local).with_tls(session));
            let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = WatchedStream::over(stream, conn.clone(), slot);
            if http2 {
                Box::pin(run_tls(&at, io, conn, &mut stop, serve_request)).await;
            } else {
                Box::pin(run_tls(&at, io, conn, &mut stop, handle)).await;
            }
        }
        None => {}
    }
    at.connection_ended();
}

/// What a new connection is: TCP routers and PROXY headers come first (`None` when a TCP router
/// took it), then a TLS handshake or plain HTTP, with the client's address.
async fn sort(at: Arc<Accepting>, stream: TcpStream, peer: SocketAddr) -> Option<(Accepted, SocketAddr)> {
    let deadline = at.limits.header_read.unwrap_or(HANDSHAKE_FALLBACK);
    let (shared, rules) = (&at.shared, &at.rules);
    // The snapshot is looked at (one guarded load) only to see whether this entrypoint has TCP
    // routers; boxed, the TCP routers' state is allocated only where there are some.
    let (stream, peer) = if rules.l4.proxy_protocol.is_some() || shared.snapshot.load().l4.table(rules.index).is_some() {
        match Box::pin(dispatch::dispatch(stream, peer, at.local, shared, rules.index, &rules.l4, deadline)).await {
            Dispatched::Http(stream, client) => (stream, client),
            Dispatched::Done => return None,
        }
    } else {
        (stream, peer)
    };
    match handshake::accept(stream, &shared.snapshot, rules.index, deadline).await {
        Ok(Some(accepted)) => Some((accepted, peer)),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            None
        }
    }
}

/// What hyper runs for each request of an HTTP/2 connection: [`handle`]'s future, boxed when
/// first polled. hyper moves the future it is given whole for each stream (into the stream's
/// state, then to the executor, which boxes it); `handle`'s future is ~5 KiB, this one holds only
/// the request until it runs, then a pointer. HTTP/1.1 keeps `handle` unboxed: hyper moves it
/// once into its dispatcher there, and a box would cost an allocation per request.
async fn serve_request(conn: Arc<Connection>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    Box::pin(handle(conn, req)).await
}

/// Serves `conn` over `io` (a TLS stream) until it ends or a client timeout closes it, each
/// request with `handler`: [`serve_request`] when ALPN chose HTTP/2, [`handle`] for HTTP/1.1.
async fn run_tls<S, H, R>(at: &Accepting, io: WatchedStream<S>, conn: Arc<Connection>, stop: &mut watch::Receiver<()>, handler: H)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Arc<Connection>, Request<Incoming>) -> R + Send + 'static,
    R: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let watched = conn.clone();
    let service = service_fn(move |req| handler(conn.clone(), req));
    // Pinned in place: this whole future is boxed by its caller.
    let serving = std::pin::pin!(at.builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
    let mut stopping = false;
    let serving = graceful(serving, stop, &mut stopping);
    if let Served::Done(Err(e)) = timeouts::serve(serving, &watched.activity, at.limits, None).await {
        tracing::debug!("client connection ended: {e}");
    }
}

/// Serves the plain connection `conn` on `socket` with `builder` until it ends or a client
/// timeout closes it (false), or it is idle and parked: then its socket is in the worker's
/// parking lot and the connection's task may end (true). `slot` is held until the socket closes.
async fn run_plain(
    at: &Accepting,
    mut builder: &auto::Builder<TokioExecutor>,
    mut socket: Arc<TcpStream>,
    conn: Arc<Connection>,
    slot: Option<Arc<OwnedSemaphorePermit>>,
    stop: &mut watch::Receiver<()>,
) -> bool {
    loop {
        if !Box::pin(serve_until_idle(builder, &socket, &conn, &slot, at.limits, stop)).await {
            return false;
        }
        let left = conn.activity.idle_left(&at.limits, conn.activity.now_ms());
        // hyper's state is gone, and with it every other handle on the socket.
        socket = match Arc::try_unwrap(socket) {
            Ok(stream) => {
                let parked = match stream.into_std() {
                    Ok(socket) => Parked {
                        socket,
                        peer: conn.peer,
                        slot,
                    },
                    Err(e) => {
                        tracing::debug!("an idle client connection could not be parked: {e}");
                        return false;
                    }
                };
                let deadline = left.map(|left| tokio::time::Instant::now() + left);
                return match at.lot.park(parked, deadline) {
                    Ok(()) => true,
                    Err((_, e)) => {
                        tracing::debug!("client connection closed instead of parked: {e}");
                        false
                    }
                };
            }
            // Still shared (it never is once hyper's state is dropped): keep serving it.
            Err(socket) => socket,
        };
        builder = &at.resumed;
    }
}

/// One stretch of hyper serving a plain connection: true when it ended parked (idle, and the
/// worker is not shutting down), false when the connection is over.
async fn serve_until_idle(
    builder: &auto::Builder<TokioExecutor>,
    socket: &Arc<TcpStream>,
    conn: &Arc<Connection>,
    slot: &Option<Arc<OwnedSemaphorePermit>>,
    limits: Limits,
    stop: &mut watch::Receiver<()>,
) -> bool {
    let io = WatchedStream::shared(socket.clone(), conn.clone(), slot.clone());
    let served = conn.clone();
    let service = service_fn(move |req| handle(served.clone(), req));
    // Pinned in place: this whole future is boxed by `run_plain`.
    let serving = std::pin::pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
    let mut stopping = false;
    let serving = graceful(serving, stop, &mut stopping);
    match timeouts::serve(serving, &conn.activity, limits, Some(PARK_AFTER)).await {
        Served::Done(Ok(())) => false,
        Served::Done(Err(e)) => {
            tracing::debug!("client connection ended: {e}");
            false
        }
        Served::Parked => !stopping,
    }
}

/// A hyper connection that `stop` tells to shut down gracefully (`stopping` is then set).
async fn graceful<C: GracefulConnection>(
    mut serving: Pin<&mut C>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, F: std::future::Future>(_f: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A parked plain connection is a [`Parked`] in its lot's table and nothing else (no task,
    /// no [`Connection`]); a connection in use holds its task besides hyper's boxed state, whose
    /// future is as large as its largest state plus its arguments, so every large state is
    /// boxed (see [`serve_client`]). This keeps both small (the bounds hold for the unoptimised
    /// test build, whose futures are the larger).
    #[test]
    fn an_idle_connection_holds_a_table_entry_and_a_busy_one_a_small_task() {
        type Sorted = std::future::Ready<Option<(Accepted, SocketAddr)>>;
        let task = future_size(serve_client::<Sorted>);
        let parked = std::mem::size_of::<Option<Parked>>();
        let conn = std::mem::size_of::<Connection>();
        println!("connection task: {task} bytes; parked: {parked} bytes; Connection: {conn} bytes");
        assert!(task <= 320, "the connection task's future grew to {task} bytes");
        assert!(parked <= 64, "a parked connection grew to {parked} bytes");
        assert!(conn <= 320, "Connection grew to {conn} bytes");
    }

    /// Every request's future is moved whole where it runs (into hyper's HTTP/1 dispatcher, or
    /// into a task of its own per HTTP/2 stream), so its size is copied at least once per
    /// request: what only some requests need (middlewares, dialing, retries' state) is boxed,
    /// and the upstream exchange is awaited in place (see `forward::deadline`). It was 7,816
    /// bytes before that; this keeps it from creeping back.
    #[test]
    fn a_request_future_stays_small() {
        fn future_size<A, B, F: std::future::Future>(_f: impl FnOnce(A, B) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let request = future_size(handle);
        let moved = future_size(serve_request);
        println!("request future: {request} bytes, {moved} bytes as hyper moves it");
        assert!(request <= 5_376, "a request's future grew to {request} bytes");
        assert!(moved <= 512, "the future hyper moves per request grew to {moved} bytes");
    }
}
