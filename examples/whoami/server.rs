//! `whoami`: the test backend every drover test and demo talks to.
//!
//! It answers any request with a plain-text description of what it received (who it is, who
//! asked, the request line, every header and how many body bytes arrived), so a test can assert
//! what the proxy actually forwarded. A few paths add behaviour a proxy must cope with: chosen
//! status codes, slow answers, long streamed bodies, WebSocket echo, a switchable health check
//! and a minimal response for load tests.
//!
//! Two choices shape this file:
//! * Nothing is buffered whole. Request bodies are counted frame by frame and `/data` streams a
//!   static pattern, so a 200 MB upload or download runs in constant memory and a proxy test
//!   measures the proxy, not the backend.
//! * Stopping a backend behaves like killing its process. Every connection, including an
//!   upgraded WebSocket, runs inside one task owned by the accept loop, and the loop aborts them
//!   all on shutdown; [`WhoamiHandle`] closes the listening socket synchronously on drop. So a
//!   test that stops a backend sees refused connects and closed keep-alive connections at once,
//!   which is what drover's health checking and retry logic must react to.
//!
//! The file is also compiled into test binaries through `#[path]`, so it depends only on the
//! root package's dev-dependencies, and each includer uses only part of the API.
#![allow(dead_code)]
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// A whoami backend: the name it reports in every answer.
pub struct Whoami {
    /// Reported as `Name:` in bodies and as the `x-whoami-name` response header.
    pub name: String,
}

impl Whoami {
    /// Serve on an already-bound listener until `shutdown` resolves, then close every connection.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let state = State::new(self.name)?;
        accept_loop(Arc::new(Listener::new(listener)), state, shutdown).await
    }
}

/// Serve on an already-bound listener until `shutdown` resolves; HTTP/1.1 and h2c (hyper_util
/// auto builder). Open connections are closed when it returns.
pub async fn serve(listener: TcpListener, name: String, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    Whoami { name }.serve(listener, shutdown).await
}

/// Convenience for tests: bind 127.0.0.1:0, spawn `serve` on the current runtime, return the
/// address and a handle whose drop (or `.stop()`) stops accepting AND closes all open connections
/// of this backend (like killing the process).
///
/// Panics if loopback cannot be bound or `name` is not a valid header value: a test cannot run
/// without its backend.
pub async fn spawn(name: &str) -> (SocketAddr, WhoamiHandle) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("whoami {name}: cannot bind 127.0.0.1:0: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("whoami {name}: bound listener has no address: {e}"));
    let state = State::new(name.to_owned()).unwrap_or_else(|e| panic!("whoami {name}: {e}"));
    let listener = Arc::new(Listener::new(listener));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(accept_loop(listener.clone(), state, async {
        // Resolves when the handle sends or is dropped.
        let _ = stopped.await;
    }));
    let handle = WhoamiHandle {
        addr,
        listener,
        stop: Some(stop),
        task: Some(task),
    };
    (addr, handle)
}

/// Owner of a backend started by [`spawn`]; dropping it kills the backend.
pub struct WhoamiHandle {
    addr: SocketAddr,
    listener: Arc<Listener>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl WhoamiHandle {
    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kill the backend and wait until every one of its connections is closed.
    pub async fn stop(mut self) {
        self.kill();
        if let Some(task) = self.task.take() {
            // A panicked or cancelled accept loop has closed its connections just the same.
            let _ = task.await;
        }
    }

    fn kill(&mut self) {
        // Closing the socket here, not in the task, makes the very next connect fail.
        self.listener.close();
        self.stop.take();
    }
}

impl Drop for WhoamiHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The listening socket, closable from outside the task that accepts on it.
struct Listener(Mutex<Option<TcpListener>>);

impl Listener {
    fn new(listener: TcpListener) -> Self {
        Self(Mutex::new(Some(listener)))
    }

    fn close(&self) {
        let listener = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(listener);
    }

    /// The next connection, or `None` once the listener is closed.
    async fn accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        poll_fn(|cx| {
            let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(listener) => listener.poll_accept(cx).map_ok(Some),
                None => Poll::Ready(Ok(None)),
            }
        })
        .await
    }
}

/// What every connection of one backend shares.
struct State {
    name: String,
    name_header: HeaderValue,
    health: AtomicU16,
    http: auto::Builder<TokioExecutor>,
}

impl State {
    fn new(name: String) -> io::Result<Arc<Self>> {
        let name_header = name_header(&name)?;
        Ok(Arc::new(Self {
            name,
            name_header,
            health: AtomicU16::new(200),
            http: auto::Builder::new(TokioExecutor::new()),
        }))
    }
}

/// The `x-whoami-name` value for `name`, or why `name` cannot be one; [`serve`] fails the same way.
pub fn name_header(name: &str) -> io::Result<HeaderValue> {
    HeaderValue::from_str(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("name {name:?} is not a valid HTTP header value"),
        )
    })
}

async fn accept_loop(listener: Arc<Listener>, state: Arc<State>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(Some((stream, peer))) => {
                    connections.spawn(serve_connection(state.clone(), stream, peer));
                }
                Ok(None) => break,
                Err(e) => accept_failed(&state.name, e).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    listener.close();
    connections.shutdown().await;
    Ok(())
}

/// Accept errors are about one connection or a momentary lack of resources (EMFILE); keep
/// serving, after a pause when retrying at once would spin.
async fn accept_failed(name: &str, error: io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => {}
        _ => {
            eprintln!("whoami {name}: accept failed: {error}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One connection, start to end, including its WebSocket life after an upgrade, so aborting this
/// task closes everything the connection holds.
async fn serve_connection(state: Arc<State>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let upgrade: Arc<Mutex<Option<OnUpgrade>>> = Arc::default();
    let service = {
        let state = state.clone();
        let upgrade = upgrade.clone();
        service_fn(move |req| handle(state.clone(), peer, upgrade.clone(), req))
    };
    let served = state.http.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
    if served.is_err() {
        return;
    }
    let upgrade = upgrade.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(upgrade) = upgrade {
        echo_websocket(upgrade).await;
    }
}

/// Which behaviour a request path selects.
enum Route<'a> {
    Bench,
    Echo,
    Health,
    Data,
    Status(&'a str),
    Close,
    Describe,
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Self {
        match path {
            "/bench" => Self::Bench,
            "/echo" => Self::Echo,
            "/health" => Self::Health,
            "/data" => Self::Data,
            "/close" => Self::Close,
            _ => match path.strip_prefix("/status/") {
                Some(code) => Self::Status(code),
                None => Self::Describe,
            },
        }
    }
}

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    upgrade: Arc<Mutex<Option<OnUpgrade>>>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let uri = req.uri().clone();
    let route = Route::of(uri.path());
    if let Route::Bench = route {
        return Ok(Response::new(Body::full(Bytes::from_static(b"1"))));
    }
    let query = uri.query().unwrap_or("");
    let delay = match query_param(query, "delay").map(|v| (v, parse_duration(v))) {
        None => None,
        Some((_, Some(delay))) => Some(delay),
        Some((value, None)) => {
            return Ok(bad_request(
                &state,
                format!("query parameter delay={value}: expected a duration like 500ms, 2s or 250"),
            ));
        }
    };

    let response = match route {
        Route::Echo => websocket(&state, &mut req, &upgrade),
        Route::Health if req.method() == Method::POST => set_health(&state, req.into_body()).await?,
        Route::Health => {
            drain(req.into_body()).await?;
            health(&state)
        }
        Route::Data => {
            drain(req.into_body()).await?;
            data(&state, query)
        }
        Route::Status(code) => match parse_status(code) {
            Some(status) => describe(&state, peer, req, status).await?,
            None => bad_request(&state, format!("path /status/{code}: expected a status code from 200 to 999")),
        },
        Route::Close => {
            let mut response = describe(&state, peer, req, StatusCode::OK).await?;
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Route::Describe | Route::Bench => describe(&state, peer, req, StatusCode::OK).await?,
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(response)
}

/// The default answer: who answered, who asked, and everything that was asked.
async fn describe(state: &State, peer: SocketAddr, req: Request<Incoming>, status: StatusCode) -> Result<Response<Body>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let had_body = !http_body::Body::is_end_stream(&body)
        || parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body_length = drain(body).await?;

    let mut text = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = writeln!(text, "Name: {}", state.name);
    let _ = writeln!(text, "RemoteAddr: {peer}");
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let _ = writeln!(text, "{} {target} {:?}", parts.method, parts.version);
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/2 carries the host as :authority, which is not a header.
        if let Some(authority) = parts.uri.authority() {
            let _ = writeln!(text, "host: {authority}");
        }
    }
    for (key, value) in &parts.headers {
        let _ = writeln!(text, "{key}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    if had_body {
        let _ = writeln!(text, "Body-Length: {body_length}");
    }
    Ok(plain(state, status, text))
}

/// Count a request body frame by frame without keeping it.
async fn drain(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            length += data.len() as u64;
        }
    }
    Ok(length)
}

fn health(state: &State) -> Response<Body> {
    let code = state.health.load(Ordering::Relaxed);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = if status.is_success() { "ok" } else { "unhealthy" };
    plain(state, status, text)
}

/// `POST /health` with a status code as body: `/health` answers with it from then on.
async fn set_health(state: &State, mut body: Incoming) -> Result<Response<Body>, hyper::Error> {
    const LIMIT: usize = 16;
    let mut text = Vec::with_capacity(LIMIT);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if text.len() + data.len() > LIMIT {
                let mut response = bad_request(state, "POST /health: body must be a status code like 500".to_owned());
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(response);
            }
            text.extend_from_slice(&data);
        }
    }
    let code = std::str::from_utf8(&text).unwrap_or("").trim();
    Ok(match parse_status(code) {
        Some(status) => {
            state.health.store(status.as_u16(), Ordering::Relaxed);
            plain(state, StatusCode::OK, format!("health set to {}\n", status.as_u16()))
        }
        None => bad_request(state, format!("POST /health: body {code:?} is not a status code from 200 to 999")),
    })
}

/// `/echo`: accept a WebSocket upgrade; the connection task echoes once hyper hands it over.
fn websocket(state: &State, req: &mut Request<Incoming>, upgrade: &Mutex<Option<OnUpgrade>>) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket");
    if !is_upgrade {
        return bad_request(
            state,
            "/echo: expected a WebSocket upgrade (GET over HTTP/1.1 with Connection: upgrade and Upgrade: websocket)".to_owned(),
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return bad_request(state, "/echo: Sec-WebSocket-Version must be 13".to_owned());
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return bad_request(state, "/echo: Sec-WebSocket-Key is missing".to_owned());
    };
    let accept = HeaderValue::try_from(derive_accept_key(key.as_bytes())).expect("base64 text is always a valid header value");
    *upgrade.lock().unwrap_or_else(PoisonError::into_inner) = Some(hyper::upgrade::on(req));

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    headers.insert(NAME_HEADER, state.name_header.clone());
    response
}

async fn echo_websocket(upgrade: OnUpgrade) {
    let Ok(upgraded) = upgrade.await else { return };
    let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    // Pings and closes are answered by tungstenite itself; the stream ends after the close.
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}

/// `/data?size=<bytes>[&chunk=<bytes>][&interval=<dur>][&length=1]`
fn data(state: &State, query: &str) -> Response<Body> {
    let size = match query_param(query, "size") {
        None => return bad_request(state, "/data: query parameter size is required".to_owned()),
        Some(value) => match parse_bytes(value) {
            Some(size) => size,
            None => return bad_param(state, "size", value, "a byte count like 1000, 64k or 2m"),
        },
    };
    let chunk = match query_param(query, "chunk") {
        None => PATTERN.len(),
        Some(value) => match parse_bytes(value) {
            Some(chunk) if (1..=MAX_CHUNK).contains(&chunk) => chunk as usize,
            _ => return bad_param(state, "chunk", value, "a byte count from 1 to 16m"),
        },
    };
    let interval = match query_param(query, "interval") {
        None => None,
        Some(value) => match parse_duration(value) {
            Some(interval) => Some(interval),
            None => return bad_param(state, "interval", value, "a duration like 500ms or 2s"),
        },
    };
    let exact = query_param(query, "length") == Some("1");

    let mut response = Response::new(Body::data(size, chunk, interval, exact));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(NAME_HEADER, state.name_header.clone());
    if exact {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    response
}

const NAME_HEADER: &str = "x-whoami-name";

/// Largest `/data` chunk; larger chunks would make memory depend on the request.
const MAX_CHUNK: u64 = 16 << 20;

/// What `/data` sends: printable 64-byte lines, so a body is easy to eyeball in a capture.
static PATTERN: [u8; 64 << 10] = pattern();

const fn pattern<const N: usize>() -> [u8; N] {
    const LINE: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n";
    let mut bytes = [0; N];
    let mut i = 0;
    while i < N {
        bytes[i] = LINE[i % LINE.len()];
        i += 1;
    }
    bytes
}

fn plain(state: &State, status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::full(text.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(NAME_HEADER, state.name_header.clone());
    response
}

fn bad_request(state: &State, mut message: String) -> Response<Body> {
    message.push('\n');
    plain(state, StatusCode::BAD_REQUEST, message)
}

fn bad_param(state: &State, key: &str, value: &str, expected: &str) -> Response<Body> {
    bad_request(state, format!("query parameter {key}={value}: expected {expected}"))
}

fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The value of the first `key=value` pair in a query; values here never need percent-decoding.
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

fn parse_status(text: &str) -> Option<StatusCode> {
    let code: u16 = text.parse().ok()?;
    (200..=999).contains(&code).then(|| StatusCode::from_u16(code).ok()).flatten()
}

/// `500ms`, `2s`, `1.5s`, `1m`, `250us`; a bare number is milliseconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds_per_unit = match unit {
        "" | "ms" => 1e-3,
        "us" => 1e-6,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).ok()
}

/// `1000`, or with a binary suffix `64k`, `2m`, `1g`.
fn parse_bytes(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// Response body: a ready buffer, or the `/data` stream.
struct Body(Kind);

enum Kind {
    Full(Option<Bytes>),
    Data(DataStream),
}

/// `remaining` bytes sent as slices of one `chunk`, with an optional pause between chunks.
struct DataStream {
    remaining: u64,
    chunk: Bytes,
    interval: Option<(Duration, Pin<Box<Sleep>>)>,
    waiting: bool,
    exact: bool,
}

impl Body {
    fn empty() -> Self {
        Self(Kind::Full(None))
    }

    fn full(bytes: Bytes) -> Self {
        Self(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    fn data(size: u64, chunk: usize, interval: Option<Duration>, exact: bool) -> Self {
        let chunk = match PATTERN.get(..chunk) {
            Some(pattern) => Bytes::from_static(pattern),
            // One allocation per response, whatever the size.
            None => PATTERN.iter().copied().cycle().take(chunk).collect(),
        };
        Self(Kind::Data(DataStream {
            remaining: size,
            chunk,
            interval: interval.map(|i| (i, Box::pin(tokio::time::sleep(i)))),
            waiting: false,
            exact,
        }))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Data(stream) => stream.poll_chunk(cx).map(|c| c.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Data(stream) => stream.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            // Without an exact hint hyper sends no Content-Length (chunked on HTTP/1.1).
            Kind::Data(stream) if stream.exact => SizeHint::with_exact(stream.remaining),
            Kind::Data(_) => SizeHint::default(),
        }
    }
}

impl DataStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.waiting {
            if let Some((_, sleep)) = &mut self.interval {
                ready!(sleep.as_mut().poll(cx));
            }
            self.waiting = false;
        }
        let len = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= len;
        if let (true, Some((interval, sleep))) = (self.remaining > 0, &mut self.interval) {
            sleep.as_mut().reset(Instant::now() + *interval);
            self.waiting = true;
        }
        Poll::Ready(Some(self.chunk.slice(..len as usize)))
    }
}
