//! Forwarding one request.
//!
//! The snapshot is loaded once per request and its guard released as soon as the route is found;
//! from then on the request holds its route's `Arc<Service>` (and, once picked, that service's
//! server and pooled connection), so a configuration change never waits for slow requests and
//! never changes where an in-flight request goes: the old service lives until its last request
//! ends.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::body::{ProxyBody, UpstreamBody};
use super::completion::Completion;
use super::deadline::wait_for_head;
use super::headers;
use super::target::{self, Refusal};
use super::tunnel::Tunnel;
use crate::access_log::{AccessLog, Entry};
use crate::balance::Affinity;
use crate::connection::{Connection, InFlight, X_FORWARDED_FOR};
use crate::health::{Outcome, ServerHealth};
use crate::metrics::{method_index, RequestKey, NONE};
use crate::middleware::client_body::{BodySlot, ClientBody};
use crate::middleware::spool::{Spool, SpoolError};
use crate::middleware::{BodyPlan, Chain, Held, Pending, Req};
use crate::routing::{normalize_host, RequestView};
use crate::service::{mirror, Avoid, Resolution};
use crate::snapshot::{Observe, Picked, Route, Tried};
use crate::upstream::{BodyProgress, Refused, RequestBody, SendError};

fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The 502 for a server drover would not (or could not) speak TLS with, saying why.
#[cold]
fn tls_refused(reason: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(format!("502 Bad Gateway: {reason}\n")));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The 503 for a request that found `server` at its `maxConnsPerHost` and could not wait for a
/// slot (its queue full, or `queueTimeout` reached), saying which.
#[cold]
fn server_full(server: &str, refused: Refused) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(refused.explain(server)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Releases an ejected server's probation slot if the request ends without an outcome (the
/// client went away): client cancellations never count against a server.
struct ProbeGuard<'a> {
    health: Option<&'a Arc<ServerHealth>>,
}

impl ProbeGuard<'_> {
    /// The attempt finished with an outcome that will be recorded; true if it was the probe.
    fn disarm(mut self) -> bool {
        self.health.take().is_some()
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(health) = self.health {
            health.release_probe();
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// What is kept of a body-less request so that it can be sent again after a server reset it:
/// the client's own headers (already cleaned), not the forwarding headers drover adds, which
/// are derived from the connection again. Most clients send a handful of headers, so this is
/// one small allocation where a copy of the whole header map was two and twice the entries.
struct Replay {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    client_host: Option<HeaderValue>,
    /// The headers already include the forwarding headers (and what middlewares set after
    /// them): they are sent as kept.
    complete: bool,
}

impl Replay {
    fn keep(method: &Method, uri: &Uri, headers: &HeaderMap, client_host: Option<&HeaderValue>) -> Self {
        // Sized up front: a header map's iterator does not know its length, so `collect` grew
        // the vector 4 → 8 → 16 entries, which cost more than the copies themselves.
        let mut kept = Vec::with_capacity(headers.len());
        kept.extend(headers.iter().map(|(name, value)| (name.clone(), value.clone())));
        Self {
            method: method.clone(),
            uri: uri.clone(),
            headers: kept,
            client_host: client_host.cloned(),
            complete: false,
        }
    }

    /// The request as it was first sent.
    fn rebuild(&self, conn: &Connection, pass_host_header: bool) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::Empty);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        headers.reserve(self.headers.len() + 6);
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        if !self.complete {
            forwarding_headers(conn, headers, self.client_host.clone(), pass_host_header);
        }
        request
    }
}

/// Adds what drover sets on every forwarded request: `X-Forwarded-*`, `X-Real-Ip` and, with
/// `passHostHeader`, the client's Host.
fn forwarding_headers(conn: &Connection, headers: &mut HeaderMap, client_host: Option<HeaderValue>, pass_host_header: bool) {
    conn.forwarded.apply(headers, client_host.as_ref());
    if pass_host_header {
        if let Some(host) = client_host {
            headers.insert(header::HOST, host);
        }
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        })
}

/// What [`forward`] learned about a request, for metrics and the access log.
struct Trace {
    router: u32,
    service: u32,
    /// What is recorded: the entrypoint's defaults, then the router's.
    observe: Observe,
    /// The access-log entry, when the request is logged.
    access: Option<Box<Entry>>,
    retries: u32,
    bytes_in: Option<Arc<BodyProgress>>,
    websocket: bool,
    /// The response side of the router's middlewares, once their request side ran (boxed, as
    /// is everything only some requests need: see [`handle`]).
    middleware: Option<Box<Pending>>,
    /// The response side of the steps after a `retry`, for the attempt that answered.
    retried: Option<Box<Pending>>,
}

/// The start of `req`'s access-log entry; the rest is filled in as it is forwarded.
fn access_entry(log: &AccessLog, conn: &Connection, req: &Request<Incoming>, route: Option<&Route>, start: Instant) -> Box<Entry> {
    let mut entry = log.entry(start.into_std(), &conn.forwarded.client_ip, &conn.entry.name);
    entry.method.clone_from(req.method());
    entry.version = req.version();
    // One pass over the headers finds all three: cheaper than three lookups, each hashing.
    let (mut host, mut referer, mut user_agent) = (None, None, None);
    for (name, value) in req.headers() {
        let slot = if name == header::HOST {
            &mut host
        } else if name == header::REFERER {
            &mut referer
        } else if name == header::USER_AGENT {
            &mut user_agent
        } else {
            if conn.forwarded.trusted && name == X_FORWARDED_FOR {
                // A trusted proxy's word on the client, beside the socket's address.
                if !entry.forwarded_for.is_empty() {
                    entry.forwarded_for.extend_from_slice(b", ");
                }
                entry.forwarded_for.extend_from_slice(value.as_bytes());
            }
            continue;
        };
        if slot.is_none() {
            *slot = Some(value.as_bytes());
        }
    }
    entry.request.fill(
        req.uri().path_and_query().map_or("/", |pq| pq.as_str()).as_bytes(),
        host.or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes())),
        referer,
        user_agent,
    );
    if let Some(route) = route {
        entry.router = Some(route.router.clone());
        entry.service = Some(route.service.name.clone());
    }
    entry
}

/// Handles one request from `conn`. Never fails: every problem becomes a response. Metrics and
/// the access log are recorded when the response body ends.
pub async fn handle(conn: Arc<Connection>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    // Read once and reused for the first attempt's server choice, deadline and pooled
    // connection check: each read of the clock costs ~20 ns, and a request made ~12 of them.
    let start = Instant::now();
    let request = InFlight::start(conn, req.body().is_end_stream());
    let conn = &**request;
    let method = method_index(req.method());
    let http1 = req.version() < Version::HTTP_2;
    let mut trace = Trace {
        router: NONE,
        service: NONE,
        observe: conn.entry.observe,
        access: None,
        retries: 0,
        bytes_in: None,
        websocket: false,
        middleware: None,
        retried: None,
    };
    let mut response = forward(conn, req, &mut trace, start).await;
    let held = match trace.middleware {
        None => None,
        Some(pending) => {
            let mut held = Held::default();
            if let Some(inner) = trace.retried {
                let (answered, inner_held) = Box::pin(inner.respond(response, conn)).await;
                response = answered;
                held = inner_held;
            }
            let (answered, mut outer_held) = Box::pin(pending.respond(response, conn)).await;
            response = answered;
            outer_held.extend(held);
            Some(outer_held)
        }
    };
    let mut access = trace.access;
    if let Some(entry) = access.as_mut() {
        entry.retries = trace.retries;
    }
    let key = RequestKey {
        entry_point: conn.entry.index as u16,
        router: trace.router,
        service: trace.service,
        code: response.status().as_u16(),
        method,
        protocol: u8::from(trace.websocket),
    };
    // While drover drains, an HTTP/1 response also closes its connection, so that the client's
    // next request goes to a new connection (maybe the next drover's) rather than into a
    // closing one. The flag only ever turns true; `has_changed` is one atomic load (an error
    // means drover is going away too).
    let close = http1 && response.status() != StatusCode::SWITCHING_PROTOCOLS && conn.shared.shutdown.has_changed().unwrap_or(true);
    let completion = Completion {
        request,
        key,
        start: start.into_std(),
        bytes_in: trace.bytes_in,
        bytes_out: 0,
        metrics: trace.observe.metrics,
        access,
        held,
    };
    let (mut parts, body) = response.into_parts();
    if close {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(Response::from_parts(parts, body.with_completion(completion)))
}

/// The request's one authority and its path as routed (`None`: the path as it came), or why it
/// is refused before routing (see [`target`]).
fn checked_target(conn: &Connection, req: &Request<Incoming>) -> Result<(Option<HeaderValue>, Option<String>), Refusal> {
    target::check_request(req, conn.activity.head_had_length())?;
    let authority = target::authority(req)?;
    let path = match target::normalize_path(req.uri().path(), conn.entry.path_policy)? {
        Cow::Borrowed(_) => None,
        Cow::Owned(normalized) => Some(normalized),
    };
    Ok((authority, path))
}

async fn forward(conn: &Connection, mut req: Request<Incoming>, trace: &mut Trace, start: Instant) -> Response<ProxyBody> {
    let (authority, routed_path) = match checked_target(conn, &req) {
        Ok(checked) => checked,
        Err(refusal) => {
            if let Some(log) = conn.shared.access_log.as_ref().filter(|_| trace.observe.access_log) {
                trace.access = Some(access_entry(log, conn, &req, None, start));
            }
            return match refusal {
                Refusal::BadRequest(why) => local(StatusCode::BAD_REQUEST, why),
                Refusal::MethodNotAllowed(why) => local(StatusCode::METHOD_NOT_ALLOWED, why),
            };
        }
    };
    // ACME's HTTP-01 answers come first: ahead of every router and of the HTTP → HTTPS redirect.
    if let Some(answer) = conn.entry.acme_http01.as_deref().and_then(|c| c.http01(req.uri().path())) {
        let mut response = Response::new(ProxyBody::local(Bytes::from(answer)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        return response;
    }
    // Validated as a host[:port] made of visible ASCII, so it reads as text.
    let host = normalize_host(authority.as_ref().and_then(|a| a.to_str().ok()).unwrap_or(""));
    if let Some(redirect) = conn.entry.redirect.as_deref().filter(|_| conn.tls.is_none()) {
        return super::redirect::to_entry_point(redirect, &req, &host);
    }
    let (service, chain) = {
        let snapshot = conn.shared.snapshot.load();
        if let Some(tls) = &conn.tls {
            // The Host must map to the options the handshake used: presenting one host's SNI
            // must not skip another host's client-certificate check (domain fronting).
            let wanted = snapshot.tls.options_for((!host.is_empty()).then_some(&*host));
            if wanted.is_some_and(|o| o.name != tls.options) {
                return local(
                    StatusCode::MISDIRECTED_REQUEST,
                    "421 Misdirected Request: this host needs another TLS connection (its TLS options differ from this connection's)\n",
                );
            }
        }
        let view = RequestView {
            host: &host,
            path: routed_path.as_deref().unwrap_or(req.uri().path()),
            query: req.uri().query(),
            method: req.method(),
            headers: req.headers(),
            client_ip: conn.peer.ip(),
        };
        match snapshot
            .table(conn.entry.index, conn.tls.is_some())
            .and_then(|table| table.find(&view))
        {
            Some(route) => {
                trace.router = route.router_id;
                trace.service = route.service.metrics_id;
                trace.observe = conn.entry.observe.for_route(route);
                if let Some(log) = conn.shared.access_log.as_ref().filter(|_| trace.observe.access_log) {
                    trace.access = Some(access_entry(log, conn, &req, Some(route), start));
                }
                (route.service.clone(), route.middlewares.clone())
            }
            None => {
                if let Some(log) = conn.shared.access_log.as_ref().filter(|_| trace.observe.access_log) {
                    trace.access = Some(access_entry(log, conn, &req, None, start));
                }
                return local(StatusCode::NOT_FOUND, "404 Not Found: no router matches this request\n");
            }
        }
    };
    drop(host);
    // A service made of services is resolved to the load balancer this request goes to; `root`
    // keeps it for a second resolution if no server of that one can take the request.
    let (mut service, mut root, mut resolution) = (service, None, Resolution::default());
    if service.composite.is_some() {
        let affinity = Affinity {
            headers: req.headers(),
            path: req.uri().path(),
            client_ip: conn.forwarded.client_ip.as_bytes(),
        };
        let Some(leaf) = service.resolve(&affinity, start, &Avoid::default(), true, &mut resolution) else {
            return local(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: the service has no available server\n",
            );
        };
        root = Some(std::mem::replace(&mut service, leaf));
    }
    let retry = service.health.retry.clone();
    if retry.attempts > 0 {
        service.budget.deposit(retry.budget_percent);
    }

    let upgrade = wants_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // The authority that routed the request is the one forwarded (see `target`).
    let client_host = authority;
    headers::clean_request(&mut parts.headers, upgrade, conn.forwarded.trusted);
    if let Some(path) = routed_path {
        let target = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        parts.uri = match Uri::try_from(target) {
            Ok(uri) => uri,
            // Only unreserved characters were decoded, so this cannot happen; refuse if it does.
            Err(_) => return local(StatusCode::BAD_REQUEST, "400 Bad Request: the normalised path is not a valid URI\n"),
        };
    } else if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    parts.version = Version::HTTP_11;
    // A body-less idempotent request can be sent again even after a server reset it mid-way;
    // keep what is needed to rebuild it. Requests with a body are never replayed: what was
    // streamed to the failed server is gone.
    let replayable = retry.attempts > 0 && !upgrade && is_idempotent(&parts.method) && body.is_end_stream();
    let (replay, body) = match chain {
        None => {
            let replay = replayable.then(|| Replay::keep(&parts.method, &parts.uri, &parts.headers, client_host.as_ref()));
            forwarding_headers(conn, &mut parts.headers, client_host, service.pass_host_header);
            (replay, body)
        }
        Some(chain) => {
            // Middlewares see the request as the server would, forwarding headers included (a
            // custom `X-Forwarded-Proto` overrides drover's, `ipStrategy` reads drover's
            // `X-Forwarded-For`), and may answer it themselves.
            forwarding_headers(conn, &mut parts.headers, client_host.clone(), service.pass_host_header);
            let mut slot = BodySlot::new(body, start, conn.entry.read_timeout.map(|limit| start + limit));
            let mut req = Req {
                parts: &mut parts,
                peer: conn.peer.ip(),
                host: client_host.as_ref(),
                scheme: conn.forwarded.proto.to_str().unwrap_or("http"),
                trusted: conn.forwarded.trusted,
                body: Some(&mut slot),
            };
            // Boxed so that the requests of routes without middlewares (most of them) do not
            // carry the chain's future in theirs.
            let (pending, answered) = Box::pin(chain.request(&mut req)).await;
            let (plan, retry_from) = (pending.body_plan(), pending.retry());
            trace.middleware = Some(Box::new(pending));
            if let Some(progress) = slot.take_progress() {
                // A step (forwardAuth's forwardBody) read the body: counted there, once.
                trace.bytes_in = Some(progress);
            }
            if let Some(answer) = answered {
                let (parts, body) = answer.into_parts();
                return Response::from_parts(parts, ProxyBody::local(body));
            }
            // Streamed as usual, unless the plan wants it whole or a step read it already.
            let body = match slot.body {
                ClientBody::Unread(body) if !plan.read_whole => body,
                body => {
                    let sending = Sending {
                        service,
                        root,
                        resolution,
                        retry,
                        client_upgrade,
                    };
                    let whole = Whole {
                        chain,
                        plan,
                        retry_from,
                        peer: conn.peer.ip(),
                        host: client_host,
                    };
                    return Box::pin(forward_whole(conn, whole, parts, body, sending, trace, start)).await;
                }
            };
            let replay = replayable.then(|| Replay {
                complete: true,
                ..Replay::keep(&parts.method, &parts.uri, &parts.headers, None)
            });
            (replay, body)
        }
    };
    let mut body = if body.is_end_stream() {
        RequestBody::Incoming(body)
    } else {
        let progress = Arc::new(BodyProgress::new(start));
        trace.bytes_in = Some(progress.clone());
        RequestBody::Counted(body, progress)
    };
    // An upgrade (WebSocket) is not mirrored: a mirror that switched protocols would hold
    // its copy open until the copy timeout.
    if !resolution.mirrors.is_empty() && !upgrade {
        body = mirror::dispatch(&parts, body, resolution.mirrors.drain(..));
    }
    let request = Request::from_parts(parts, body);
    let sending = Sending {
        service,
        root,
        resolution,
        retry,
        client_upgrade,
    };
    send(conn, sending, replay, request, trace, start).await.0
}

/// What [`forward_whole`] needs from the chain.
struct Whole {
    chain: Arc<Chain>,
    plan: BodyPlan,
    /// The step after the `retry` the chain stopped at, if it did.
    retry_from: Option<usize>,
    peer: std::net::IpAddr,
    host: Option<HeaderValue>,
}

/// Forwards a request whose body the middlewares want read whole first (`buffering`, `retry`),
/// or that a step already read (`forwardAuth`'s `forwardBody`), and, after a `retry`, runs the
/// rest of the chain and the sending once per attempt.
async fn forward_whole(
    conn: &Connection,
    whole: Whole,
    parts: http::request::Parts,
    body: ClientBody,
    sending: Sending,
    trace: &mut Trace,
    start: Instant,
) -> Response<ProxyBody> {
    let body = match body {
        ClientBody::Unread(body) => body,
        ClientBody::Read(spool) if whole.plan.max.is_some_and(|max| spool.len() > max) => {
            return local(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Content Too Large: the request body is larger than this route accepts\n",
            )
        }
        ClientBody::Read(spool) => return forward_spool(conn, whole, parts, Some(spool), sending, trace, start).await,
        ClientBody::Gone => return forward_spool(conn, whole, parts, None, sending, trace, start).await,
    };
    let spool = if body.is_end_stream() {
        None
    } else {
        // Counted as it is read from the client, once: the copies sent on (one per attempt)
        // are not the client's bytes again.
        let progress = Arc::new(BodyProgress::new(start));
        trace.bytes_in = Some(progress.clone());
        // The entrypoint's readTimeout bounds the upload here as it does a streamed one.
        let read = Spool::read(RequestBody::Counted(body, progress), whole.plan.max, whole.plan.memory);
        let read = match conn.entry.read_timeout {
            Some(limit) => match tokio::time::timeout_at(start + limit, read).await {
                Ok(read) => read,
                Err(_) => {
                    return local(
                        StatusCode::REQUEST_TIMEOUT,
                        "408 Request Timeout: the request body stalled, or was not read within readTimeout\n",
                    )
                }
            },
            None => read.await,
        };
        match read {
            Ok(spool) => Some(spool),
            Err(SpoolError::TooLarge) => {
                return local(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "413 Content Too Large: the request body is larger than this route accepts\n",
                )
            }
            Err(SpoolError::Body(e)) => {
                tracing::debug!("reading a request body whole failed: {e}");
                return local(StatusCode::BAD_REQUEST, "400 Bad Request: the request body broke off\n");
            }
            Err(SpoolError::File(e)) => {
                tracing::warn!("cannot keep a request body in a temporary file: {e}");
                return local(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the request body could not be buffered\n",
                );
            }
        }
    };
    forward_spool(conn, whole, parts, spool, sending, trace, start).await
}

/// Sends a request whose body was read whole (`None`: it had none), once or, after a `retry`,
/// once per attempt, running the steps after the `retry` each time.
async fn forward_spool(
    conn: &Connection,
    whole: Whole,
    mut parts: http::request::Parts,
    spool: Option<Spool>,
    sending: Sending,
    trace: &mut Trace,
    start: Instant,
) -> Response<ProxyBody> {
    if let Some(spool) = &spool {
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(spool.len()));
    }
    let body = |spool: &Option<Spool>| match spool {
        None => RequestBody::Empty,
        Some(spool) => match spool.single() {
            Some(bytes) => RequestBody::Full(Some(bytes)),
            None => RequestBody::Spooled(spool.body()),
        },
    };
    // A body-less idempotent request can still be replayed by the load balancer.
    let replay = |parts: &http::request::Parts, spool: &Option<Spool>, sending: &Sending| {
        (sending.retry.attempts > 0 && spool.is_none() && is_idempotent(&parts.method)).then(|| Replay {
            complete: true,
            ..Replay::keep(&parts.method, &parts.uri, &parts.headers, None)
        })
    };
    let Some((from, retry)) = whole.retry_from.and_then(|from| Some((from, whole.chain.retry_before(from)?))) else {
        let mut sending = sending;
        let replay = replay(&parts, &spool, &sending);
        let mut body = body(&spool);
        if !sending.resolution.mirrors.is_empty() {
            body = mirror::dispatch(&parts, body, sending.resolution.mirrors.drain(..));
        }
        let request = Request::from_parts(parts, body);
        return send(conn, sending, replay, request, trace, start).await.0;
    };
    let deadline = retry.timeout.map(|t| start + t);
    let Sending {
        service,
        root,
        mut resolution,
        retry: lb_retry,
        client_upgrade: _,
    } = sending;
    let scheme = conn.forwarded.proto.to_str().unwrap_or("http");
    // The body is handed to the steps after the retry only if one reads it (a copy per attempt).
    let reads_body = whole.chain.reads_body(from);
    let mut attempt = 1;
    loop {
        let mut attempt_parts = parts.clone();
        let mut slot = BodySlot::read_already(spool.as_ref().filter(|_| reads_body).cloned(), start);
        let mut req = Req {
            parts: &mut attempt_parts,
            peer: whole.peer,
            host: whole.host.as_ref(),
            scheme,
            trusted: conn.forwarded.trusted,
            body: Some(&mut slot),
        };
        let (inner, answered) = Box::pin(whole.chain.request_from(from, &mut req)).await;
        if let Some(answer) = answered {
            trace.retried = Some(Box::new(inner));
            let (parts, body) = answer.into_parts();
            return Response::from_parts(parts, ProxyBody::local(body));
        }
        let sending = Sending {
            service: service.clone(),
            root: root.clone(),
            resolution: Resolution {
                set_cookies: resolution.set_cookies.clone(),
                ..Resolution::default()
            },
            retry: lb_retry.clone(),
            client_upgrade: None,
        };
        let replay = replay(&attempt_parts, &spool, &sending);
        let mut body = body(&spool);
        if attempt == 1 && !resolution.mirrors.is_empty() {
            // Mirrors get the first attempt only: a copy is for watching, not for load.
            body = mirror::dispatch(&attempt_parts, body, resolution.mirrors.drain(..));
        }
        let request = Request::from_parts(attempt_parts, body);
        let retries_before = std::mem::take(&mut trace.retries);
        let (mut response, reached) = send(conn, sending, replay, request, trace, start).await;
        let now = Instant::now();
        // Each pass spends the service's retry budget like the load balancer's own replays, so
        // a failing service is not sent a multiple of its traffic.
        let again = reached != Reached::Other
            && attempt < retry.attempts
            && retry.again(reached == Reached::Server, response.status())
            && deadline.is_none_or(|d| now < d)
            && service.budget.withdraw(lb_retry.min_retries_per_second, unix_seconds());
        trace.retries += retries_before;
        if !again {
            trace.retries += attempt - 1;
            trace.retried = Some(Box::new(inner));
            return response;
        }
        // This attempt's steps see how it ended (a circuit breaker after the retry counts it).
        let status = response.status();
        inner.response(status, response.headers_mut());
        drop((response, inner));
        attempt += 1;
        let mut wait = retry.backoff(attempt);
        if let Some(deadline) = deadline {
            wait = wait.min(deadline.saturating_duration_since(now));
        }
        tracing::debug!(attempt, ?wait, "retry: no answer worth keeping, trying again");
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What [`send`] needs besides the request: where it goes, and how.
struct Sending {
    /// The load balancer the request goes to (a leaf, once a composite was resolved).
    service: Arc<crate::snapshot::Service>,
    /// The service made of services it was resolved from, if it was.
    root: Option<Arc<crate::snapshot::Service>>,
    resolution: Resolution,
    /// The load balancer's own retries.
    retry: drover_providers::policy::RetryPolicy,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// How [`send`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reached {
    /// A server answered (the response is its).
    Server,
    /// No server answered: drover's 502 (connect failures, resets, TLS).
    NoAnswer,
    /// Anything else drover answered itself (no server available, timeouts, client failures).
    Other,
}

/// Sends `request` to its service: servers chosen by the load balancer, its safe retries and
/// failovers, the response head checked and its body wrapped.
async fn send(
    conn: &Connection,
    sending: Sending,
    replay: Option<Replay>,
    mut request: Request<RequestBody>,
    trace: &mut Trace,
    start: Instant,
) -> (Response<ProxyBody>, Reached) {
    let Sending {
        mut service,
        root,
        mut resolution,
        retry,
        client_upgrade,
    } = sending;
    let mut avoid = Avoid::default();
    let mut set_cookie;

    let mut tried = Tried::default();
    let mut retries = 0;
    let mut failovers = 0;
    let mut first_attempt = true;
    // Why TLS with the last server tried failed, if it did: said in the 502 when none is left.
    let mut tls_failure = None;
    let (mut response, mut pooled) = loop {
        let now = if std::mem::take(&mut first_attempt) {
            start
        } else {
            Instant::now()
        };
        let affinity = Affinity {
            headers: request.headers(),
            path: request.uri().path(),
            client_ip: conn.forwarded.client_ip.as_bytes(),
        };
        let picked = service.choose(tried, now, &affinity);
        if !matches!(picked, Picked::Server { .. }) {
            // No server of this load balancer can take the request, which is still here: a
            // service made of services sends it elsewhere (a failover to its fallback).
            if let Some(root) = &root {
                avoid.add(&service);
                if let Some(next) = root.resolve(&affinity, now, &avoid, false, &mut resolution) {
                    service = next;
                    tried = Tried::default();
                    failovers = 0;
                    continue;
                }
            }
        }
        let (index, server, probe) = match picked {
            Picked::Server { index, server, probe } => (index, server, probe),
            Picked::NoServers => {
                return (
                    local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "503 Service Unavailable: the service has no available server\n",
                    ),
                    Reached::Other,
                )
            }
            Picked::AllEjected => {
                return (
                    local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "503 Service Unavailable: all servers of the service are ejected\n",
                    ),
                    Reached::Other,
                )
            }
            Picked::Exhausted => {
                let answer = match tls_failure {
                    Some(reason) => tls_refused(reason),
                    None => local(StatusCode::BAD_GATEWAY, "502 Bad Gateway: every server of the service failed\n"),
                };
                return (answer, Reached::NoAnswer);
            }
        };
        tried.add(index);
        set_cookie = service.sticky_cookie(index, request.headers());
        let in_flight = service.load(index).map(|load| load.start());
        if !service.pass_host_header || !request.headers().contains_key(header::HOST) {
            request.headers_mut().insert(header::HOST, server.upstream.host_header().clone());
        }
        let probe = ProbeGuard {
            health: probe.then_some(&server.health),
        };
        // A slot of the server's limit: at once under it, else a wait in its queue. A request
        // refused there was never sent, so nothing counts against the server (a probe's slot
        // goes back with its guard).
        let limiter = server.upstream.limiter();
        let (slot, sent_at) = match limiter.try_acquire() {
            Some(slot) => (slot, now),
            None => match Box::pin(limiter.acquire()).await {
                Ok(slot) => (slot, Instant::now()),
                Err(refused) => {
                    tracing::debug!(service = %service.name, server = %server.url, "{refused:?}");
                    if let Some(entry) = trace.access.as_mut() {
                        entry.server = Some(server.url.clone());
                    }
                    return (server_full(server.upstream.authority(), refused), Reached::Other);
                }
            },
        };
        let sent = std::pin::pin!(server.upstream.send(request, sent_at));
        let head = server.upstream.transport().response_header_timeout;
        let result = wait_for_head(sent, head, conn, trace.bytes_in.as_deref(), sent_at, start).await;
        let was_probe = probe.disarm();
        if let Some(load) = in_flight.is_some().then(|| service.load(index)).flatten() {
            load.record_ttfb(Instant::now().saturating_duration_since(sent_at));
        }
        drop(in_flight);
        match result {
            Ok((response, mut pooled)) => {
                pooled.hold(slot);
                if response.headers().contains_key(header::TRANSFER_ENCODING) && response.headers().contains_key(header::CONTENT_LENGTH) {
                    // RFC 9112 §6.3: a sign of response splitting. Neither framing can be trusted,
                    // so neither is forwarded, and the connection is not used again.
                    pooled.discard();
                    service.record(index, Outcome::LocalFailure, was_probe, Instant::now());
                    return (
                        local(
                            StatusCode::BAD_GATEWAY,
                            "502 Bad Gateway: the server answered with both Content-Length and Transfer-Encoding\n",
                        ),
                        Reached::Other,
                    );
                }
                let outcome = if response.status().is_server_error() {
                    Outcome::ServerError
                } else {
                    Outcome::Success
                };
                service.record(index, outcome, was_probe, Instant::now());
                trace.retries = retries + failovers;
                if let Some(entry) = trace.access.as_mut() {
                    entry.server = Some(server.url.clone());
                }
                break (response, pooled);
            }
            Err(failed) => {
                let SendError { error, request: back } = *failed;
                tls_failure = error.tls_failure();
                if error.is_client_gone() || error.is_client_idle() {
                    // The client's failures never count against a server.
                    if was_probe {
                        server.health.release_probe();
                    }
                    let answer = if error.is_client_idle() {
                        local(
                            StatusCode::REQUEST_TIMEOUT,
                            "408 Request Timeout: the request body stalled, or was not read within readTimeout\n",
                        )
                    } else {
                        local(StatusCode::BAD_REQUEST, "400 Bad Request: the request body broke off\n")
                    };
                    return (answer, Reached::Other);
                }
                service.record(index, Outcome::LocalFailure, was_probe, Instant::now());
                tracing::debug!(service = %service.name, server = %server.url, "attempt failed: {error}");
                // A request that never left drover (connect refused or timed out, a pooled
                // connection found dead) adds no load anywhere when sent elsewhere: it goes on
                // to every other usable server, in tier order (`pick` skips the tried ones),
                // before a 502, as nginx's `proxy_next_upstream` does, and counts against
                // neither `attempts` nor the budget. Sending again one that a server received
                // (a replay) needs both.
                let again = match back {
                    Some(back) if (failovers as usize) < service.servers.len() => {
                        failovers += 1;
                        Some(back)
                    }
                    Some(_) => None,
                    None if error.is_reset_before_response() && retries < retry.attempts => {
                        let replayed = replay
                            .as_ref()
                            .filter(|_| service.budget.withdraw(retry.min_retries_per_second, unix_seconds()))
                            .map(|replay| replay.rebuild(conn, service.pass_host_header));
                        retries += u32::from(replayed.is_some());
                        replayed
                    }
                    None => None,
                };
                match again {
                    Some(again) => request = again,
                    None => {
                        if let Some(reason) = error.tls_failure() {
                            return (tls_refused(reason), Reached::NoAnswer);
                        }
                        return if error.is_timeout() {
                            (
                                local(
                                    StatusCode::GATEWAY_TIMEOUT,
                                    "504 Gateway Timeout: the server did not answer in time\n",
                                ),
                                Reached::Other,
                            )
                        } else {
                            (
                                local(
                                    StatusCode::BAD_GATEWAY,
                                    "502 Bad Gateway: the server could not be reached or answered badly\n",
                                ),
                                if error.is_bad_response() {
                                    Reached::Other
                                } else {
                                    Reached::NoAnswer
                                },
                            )
                        };
                    }
                }
            }
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        pooled.upgrade();
        let Some(client_upgrade) = client_upgrade else {
            // A 101 nobody asked for cannot be tunnelled.
            return (
                local(StatusCode::BAD_GATEWAY, "502 Bad Gateway: the server switched protocols unasked\n"),
                Reached::Other,
            );
        };
        let server_upgrade = hyper::upgrade::on(&mut response);
        let tunnel = Tunnel {
            open: conn.entry.open_connections.clone(),
            idle: conn.entry.tunnel_idle,
            shutdown: conn.shared.shutdown.clone(),
        };
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((client, server)) => tunnel.run(TokioIo::new(client), TokioIo::new(server)).await,
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let (mut parts, _) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        trace.websocket = true;
        return (Response::from_parts(parts, ProxyBody::empty()), Reached::Server);
    }

    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    for cookie in resolution.set_cookies.drain(..).chain(set_cookie) {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    // The client's connection decides its own version; the server's (maybe 1.0) must not leak.
    parts.version = Version::HTTP_11;
    let mut body = UpstreamBody::new(
        body,
        pooled,
        conn.shared.body_idle_timeout,
        conn.entry.write_timeout.map(|t| start + t),
    );
    // A body already broken at its first bytes (an invalid chunk size) is answered 502 while
    // nothing has gone to the client yet; later breaks can only cut the response short.
    if std::future::poll_fn(|cx| std::task::Poll::Ready(body.peek(cx))).await.is_err() {
        return (
            local(
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the server's response body is malformed\n",
            ),
            Reached::Other,
        );
    }
    (Response::from_parts(parts, ProxyBody::upstream(body)), Reached::Server)
}
