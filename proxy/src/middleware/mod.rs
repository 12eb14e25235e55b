//! HTTP middlewares (Traefik v3's), compiled once per router into the snapshot.
//!
//! A router's middlewares (its entrypoint's defaults first, then its own, chains expanded) become
//! one [`Chain`]: an ordered list of compiled steps shared through an `Arc`. A route without
//! middlewares has no chain at all, so its requests pay for nothing: no allocation, no branch
//! beyond one `Option` test.
//!
//! # Why a list of steps and not a stack of `tower` layers
//!
//! drover's forwarding path is one hand-written function (retries, passive health, replay,
//! upgrades), not a `tower::Service`; wrapping it in layers would box a future per layer per
//! request. What Traefik's middlewares do fits two phases instead, run around that function:
//! * on the way in, each step may rewrite the request (path, headers) or answer it itself
//!   (redirect, 401, 403, 429, a CORS preflight), which ends the chain there;
//! * on the way out, the steps that ran edit the response head in reverse order (custom and
//!   security headers, CORS), whether the answer came from a server, from drover (502, 504) or
//!   from a later step, as a Traefik middleware wrapping its successor would.
//!
//! Steps that must hold something until the response body ends (`inFlightReq`'s slot) hand it
//! to the response body's completion through [`Pending::into_held`].
//!
//! Four middlewares go beyond the head, and a chain that has one of them takes a second, async
//! response path ([`Pending::respond`]); chains without them never enter it:
//! * `compress` wraps the response body in an encoder (streamed, never collected; a body
//!   without a `Content-Type` is first awaited to its first data frame, whose bytes name its
//!   type);
//! * `errors` replaces the body of a response whose status it catches with a page fetched from
//!   another service;
//! * `buffering` reads the request body whole before it is sent (memory, then a temporary file;
//!   413 past its maximum), and the response body whole before it goes to the client;
//! * `retry` ends the request side: the forwarding code runs the steps after it, and the
//!   sending, once per attempt (see [`Chain::request_from`]), each attempt still using the load
//!   balancer's own safe retries inside it.
//!
//! Request bodies are read by the forwarding code once every step before the sending has passed
//! the request ([`BodyPlan`]): reading one earlier would make a refused request pay for its
//! upload. The one step that must see the body, `forwardAuth` with `forwardBody`, reads it
//! itself when its turn comes ([`client_body`]), and the forwarding code sends on what it read.
//!
//! State that must outlive a reload (rate-limit buckets) is kept by the compiler per middleware
//! name and configuration (see [`Stores`]), so a reload does not hand every client a full
//! bucket again.

mod basic_auth;
pub mod buffering;
mod circuit_breaker;
pub mod client_body;
pub mod compress;
pub mod errors;
mod forward_auth;
mod headers;
mod in_flight;
mod ip_allow;
mod md5_crypt;
mod path;
mod rate_limit;
mod redirect;
pub mod retry;
mod sniff;
mod source;
pub mod spool;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use drover_providers::middlewares::MiddlewareInfo;
use drover_providers::model::middleware::Kind;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

/// One compiled middleware.
#[derive(Debug)]
pub enum Middleware {
    /// `headers`.
    Headers(Box<headers::Headers>),
    /// `redirectScheme`.
    RedirectScheme(redirect::RedirectScheme),
    /// `redirectRegex`.
    RedirectRegex(redirect::RedirectRegex),
    /// `stripPrefix`, `stripPrefixRegex`, `addPrefix`, `replacePath`, `replacePathRegex`.
    Path(path::PathRewrite),
    /// `basicAuth`.
    BasicAuth(basic_auth::BasicAuth),
    /// `ipAllowList`.
    IpAllowList(ip_allow::IpAllowList),
    /// `rateLimit`.
    RateLimit(rate_limit::RateLimit),
    /// `inFlightReq`.
    InFlightReq(in_flight::InFlightReq),
    /// `forwardAuth`.
    ForwardAuth(Box<forward_auth::ForwardAuth>),
    /// `circuitBreaker`.
    CircuitBreaker(circuit_breaker::CircuitBreaker),
    /// `compress`.
    Compress(compress::Compress),
    /// `retry`.
    Retry(retry::Retry),
    /// `errors`.
    Errors(Box<errors::Errors>),
    /// `buffering`.
    Buffering(buffering::Buffering),
}

impl Middleware {
    /// Whether it works on bodies (the async response path, see the module docs).
    fn reshapes(&self) -> bool {
        matches!(self, Self::Compress(_) | Self::Errors(_) | Self::Buffering(_))
    }
}

/// Why a middleware could not be compiled: what the merge cannot check (a `forwardAuth` TLS file,
/// the `errors` service as compiled), or a bug. Messages that know their key start with
/// `http.middlewares.<name>.`.
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// State some middlewares keep across reloads, by middleware name.
#[derive(Debug, Default)]
pub struct Stores {
    rate_limits: HashMap<String, (drover_providers::model::middleware::RateLimit, Arc<rate_limit::Buckets>)>,
    in_flight: HashMap<String, (drover_providers::model::middleware::InFlightReq, Arc<in_flight::Counts>)>,
    breakers: HashMap<
        String,
        (
            drover_providers::model::middleware::CircuitBreaker,
            Arc<circuit_breaker::BreakerState>,
        ),
    >,
}

impl Stores {
    /// Forgets the state of middlewares not in `used`.
    pub fn retain(&mut self, used: &dyn Fn(&str) -> bool) {
        self.rate_limits.retain(|name, _| used(name));
        self.in_flight.retain(|name, _| used(name));
        self.breakers.retain(|name, _| used(name));
    }
}

impl Middleware {
    /// Compiles a validated middleware (not a chain: chains are flattened by the merge);
    /// `service` finds a compiled service by qualified name, or says why there is none
    /// (`errors` sends to one).
    pub fn build(
        info: &MiddlewareInfo,
        stores: &mut Stores,
        service: &dyn Fn(&str) -> Result<Arc<crate::snapshot::Service>, String>,
    ) -> Result<Self, BuildError> {
        let kind = info.config.kind().map_err(BuildError)?;
        let at = format!("http.middlewares.{}", info.name.split('@').next().unwrap_or(&info.name));
        Ok(match kind {
            Kind::Headers(h) => Self::Headers(Box::new(headers::Headers::build(h)?)),
            Kind::RedirectScheme(r) => Self::RedirectScheme(redirect::RedirectScheme::build(r)),
            Kind::RedirectRegex(r) => Self::RedirectRegex(redirect::RedirectRegex::build(r)?),
            Kind::StripPrefix(m) => Self::Path(path::PathRewrite::strip_prefix(m)),
            Kind::StripPrefixRegex(m) => Self::Path(path::PathRewrite::strip_prefix_regex(m)?),
            Kind::AddPrefix(m) => Self::Path(path::PathRewrite::add_prefix(m)),
            Kind::ReplacePath(m) => Self::Path(path::PathRewrite::replace_path(m)),
            Kind::ReplacePathRegex(m) => Self::Path(path::PathRewrite::replace_path_regex(m)?),
            Kind::BasicAuth(m) => Self::BasicAuth(basic_auth::BasicAuth::build(m, &info.users)),
            Kind::IpAllowList(m) => Self::IpAllowList(ip_allow::IpAllowList::build(m)?),
            Kind::RateLimit(m) => {
                let buckets = match stores.rate_limits.get(&info.name) {
                    Some((config, buckets)) if config == m => buckets.clone(),
                    _ => {
                        let buckets = Arc::new(rate_limit::Buckets::default());
                        stores.rate_limits.insert(info.name.clone(), (m.clone(), buckets.clone()));
                        buckets
                    }
                };
                Self::RateLimit(rate_limit::RateLimit::build(m, buckets)?)
            }
            Kind::InFlightReq(m) => {
                let counts = match stores.in_flight.get(&info.name) {
                    Some((config, counts)) if config == m => counts.clone(),
                    _ => {
                        let counts = Arc::new(in_flight::Counts::default());
                        stores.in_flight.insert(info.name.clone(), (m.clone(), counts.clone()));
                        counts
                    }
                };
                Self::InFlightReq(in_flight::InFlightReq::build(m, counts)?)
            }
            Kind::ForwardAuth(m) => Self::ForwardAuth(Box::new(forward_auth::ForwardAuth::build(m, &at)?)),
            Kind::CircuitBreaker(m) => {
                let state = match stores.breakers.get(&info.name) {
                    Some((config, state)) if config == m => state.clone(),
                    _ => {
                        let state = Arc::new(circuit_breaker::BreakerState::default());
                        stores.breakers.insert(info.name.clone(), (m.clone(), state.clone()));
                        state
                    }
                };
                Self::CircuitBreaker(circuit_breaker::CircuitBreaker::build(m, state)?)
            }
            Kind::Compress(m) => Self::Compress(compress::Compress::build(m)?),
            Kind::Retry(m) => Self::Retry(retry::Retry::build(m)?),
            Kind::Errors(m) => {
                let name = drover_providers::aggregate::qualify(&m.service, &info.provider);
                let target = service(&name).map_err(|why| BuildError(format!("{at}.errors.service: {why}")))?;
                Self::Errors(Box::new(errors::Errors::build(m, target)?))
            }
            Kind::Buffering(m) => Self::Buffering(buffering::Buffering::build(m)),
            Kind::Chain(_) => {
                return Err(BuildError(format!(
                    "`{}` is a chain; chains are flattened before compiling",
                    info.name
                )))
            }
            Kind::Unsupported(name) => return Err(BuildError(format!("`{name}` middlewares are not supported by drover yet"))),
        })
    }

    /// What this middleware would decide for a request, for the explain API (no secrets, no
    /// state changed); `None` when it has nothing to say before the request runs.
    pub fn explain(&self, req: &Req<'_>) -> Option<String> {
        match self {
            Self::IpAllowList(m) => Some(m.explain(req)),
            Self::RateLimit(m) => Some(m.explain(req)),
            Self::BasicAuth(m) => Some(m.explain(req)),
            Self::Compress(m) => Some(m.explain(req)),
            Self::Retry(m) => Some(m.explain(req)),
            Self::Errors(m) => Some(m.explain()),
            Self::Buffering(m) => Some(m.explain()),
            _ => None,
        }
    }
}

/// A router's middlewares, in the order they run.
#[derive(Debug)]
pub struct Chain {
    names: Box<[Arc<str>]>,
    steps: Box<[Arc<Middleware>]>,
}

/// How the forwarding code must read a request body before sending it, as the steps that ran
/// asked (`buffering`, `retry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyPlan {
    /// Read the body whole before sending it.
    pub read_whole: bool,
    /// A larger body is refused with 413.
    pub max: Option<u64>,
    /// Bytes kept in memory before the rest goes to a temporary file (`None`: all in memory).
    pub memory: Option<u64>,
}

impl BodyPlan {
    fn limit(&mut self, max: Option<u64>, memory: Option<u64>) {
        self.read_whole = true;
        if let Some(max) = max {
            self.max = Some(self.max.map_or(max, |m| m.min(max)));
        }
        if let Some(memory) = memory {
            self.memory = Some(self.memory.map_or(memory, |m| m.min(memory)));
        }
    }
}

/// What the steps see of a request.
pub struct Req<'a> {
    /// The request head; steps edit it in place.
    pub parts: &'a mut http::request::Parts,
    /// The client's address (the socket peer).
    pub peer: IpAddr,
    /// The authority the request was routed by (`Host`), as the client sent it.
    pub host: Option<&'a HeaderValue>,
    /// The scheme the client used (`http`, `https`).
    pub scheme: &'a str,
    /// The peer is trusted (`forwardedHeaders.trustedIPs`): its forwarded headers were kept.
    pub trusted: bool,
    /// The client's body, for the one step that reads it (`forwardAuth` with `forwardBody`);
    /// `None` where there is no request to read (the explain API).
    pub body: Option<&'a mut client_body::BodySlot>,
}

/// What one step decided.
pub enum Step {
    /// Go on with the next step (or the service).
    Next,
    /// Answer the client with this, and stop.
    Answer(Response<Bytes>),
}

/// What the response side needs from the request side.
pub struct Pending {
    chain: Arc<Chain>,
    /// The first step this part of the chain ran (after a `retry`, the next one).
    from: usize,
    /// The end of the steps whose response sides apply (those that ran and passed the request
    /// on).
    ran: usize,
    /// A step of `from..ran` works on bodies.
    reshapes: bool,
    /// The `retry` step the request side stopped at (its index).
    retry: Option<usize>,
    /// What `compress` needs from the request.
    compress: Option<compress::Asked>,
    /// What `errors` needs from the request.
    original: Option<Box<errors::Original>>,
    /// How the request body is to be read.
    body: BodyPlan,
    /// The request's `Origin` (CORS).
    origin: Option<HeaderValue>,
    /// The request came over TLS, or a header of `sslProxyHeaders` says so (STS).
    secure: bool,
    /// When the first circuit breaker let the request through (its latency is measured).
    started: Option<tokio::time::Instant>,
    /// `Set-Cookie` values `forwardAuth` adds to the response.
    cookies: Vec<HeaderValue>,
    held: Held,
}

/// What must live until the response body ends (in-flight slots).
#[derive(Debug, Default)]
pub struct Held(Vec<in_flight::Slot>);

impl Held {
    /// Adds what `other` holds (the steps after a `retry`, for the attempt that answered).
    pub fn extend(&mut self, other: Held) {
        self.0.extend(other.0);
    }
}

impl Chain {
    /// A chain of `steps`, named for the API.
    pub fn new(names: Vec<Arc<str>>, steps: Vec<Arc<Middleware>>) -> Self {
        Self {
            names: names.into(),
            steps: steps.into(),
        }
    }

    /// The `retry` step just before step `from`, if that is one.
    pub fn retry_before(&self, from: usize) -> Option<&retry::Retry> {
        match self.steps.get(from.checked_sub(1)?).map(|s| &**s) {
            Some(Middleware::Retry(m)) => Some(m),
            _ => None,
        }
    }

    /// Whether a step from `from` on reads the request body (`forwardAuth` with `forwardBody`).
    pub fn reads_body(&self, from: usize) -> bool {
        self.steps
            .iter()
            .skip(from)
            .any(|s| matches!(&**s, Middleware::ForwardAuth(m) if m.forwards_body()))
    }

    /// The qualified names of the middlewares, in order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The compiled middlewares, in order.
    pub fn steps(&self) -> impl Iterator<Item = (&str, &Middleware)> {
        self.names.iter().map(|n| &**n).zip(self.steps.iter().map(|s| &**s))
    }

    /// Runs the request side. The answer is that of the step that stopped the request, if one
    /// did; [`Pending`] carries what the response side needs. A `retry` step ends the request
    /// side ([`Pending::retry`]); the steps after it run once per attempt.
    pub async fn request(self: &Arc<Self>, req: &mut Req<'_>) -> (Pending, Option<Response<Bytes>>) {
        self.request_from(0, req).await
    }

    /// Runs the request side from step `from` (the one after a `retry`).
    pub async fn request_from(self: &Arc<Self>, from: usize, req: &mut Req<'_>) -> (Pending, Option<Response<Bytes>>) {
        let mut pending = Pending {
            chain: self.clone(),
            from,
            ran: from,
            reshapes: false,
            retry: None,
            compress: None,
            original: None,
            body: BodyPlan::default(),
            origin: req.parts.headers.get(header::ORIGIN).cloned(),
            secure: req.scheme == "https",
            started: None,
            cookies: Vec::new(),
            held: Held::default(),
        };
        for (index, step) in self.steps.iter().enumerate().skip(from) {
            pending.reshapes |= step.reshapes();
            let decided = match &**step {
                Middleware::Headers(m) => m.request(req, &mut pending.secure),
                Middleware::RedirectScheme(m) => m.request(req),
                Middleware::RedirectRegex(m) => m.request(req),
                Middleware::Path(m) => m.request(req),
                Middleware::BasicAuth(m) => m.request(req).await,
                Middleware::IpAllowList(m) => m.request(req),
                Middleware::RateLimit(m) => m.request(req).await,
                Middleware::InFlightReq(m) => match m.request(req) {
                    Ok(slot) => {
                        pending.held.0.push(slot);
                        Step::Next
                    }
                    Err(answer) => Step::Answer(*answer),
                },
                Middleware::CircuitBreaker(m) => {
                    let step = m.request(req);
                    if matches!(step, Step::Next) && pending.started.is_none() {
                        pending.started = Some(tokio::time::Instant::now());
                    }
                    step
                }
                Middleware::ForwardAuth(m) => match m.request(req).await {
                    Ok(cookies) => {
                        pending.cookies.extend(cookies);
                        Step::Next
                    }
                    Err(answer) => Step::Answer(*answer),
                },
                Middleware::Compress(_) => {
                    if pending.compress.is_none() {
                        pending.compress = Some(compress::Asked::of(req));
                    }
                    Step::Next
                }
                Middleware::Errors(_) => {
                    if pending.original.is_none() {
                        pending.original = Some(Box::new(errors::Original::of(req)));
                    }
                    Step::Next
                }
                Middleware::Buffering(m) => {
                    pending.body.limit(m.max_request, Some(m.memory_request));
                    Step::Next
                }
                Middleware::Retry(m) => {
                    if m.replays(req) {
                        pending.body.limit(m.max_body, Some(retry::MEMORY));
                        pending.retry = Some(index);
                        pending.ran += 1;
                        return (pending, None);
                    }
                    Step::Next
                }
            };
            match decided {
                Step::Next => pending.ran += 1,
                Step::Answer(answer) => return (pending, Some(answer)),
            }
        }
        (pending, None)
    }
}

impl Pending {
    /// Runs the response side of the steps that ran, last first, on a response head.
    pub fn response(&self, status: StatusCode, headers: &mut HeaderMap) {
        for step in self.chain.steps[self.from..self.ran].iter().rev() {
            match &**step {
                Middleware::Headers(m) => m.response(status, headers, self.origin.as_ref(), self.secure),
                Middleware::CircuitBreaker(m) => {
                    let took = self.started.map_or(std::time::Duration::ZERO, |s| s.elapsed());
                    m.record(status, took);
                }
                _ => {}
            }
        }
        for cookie in &self.cookies {
            headers.append(header::SET_COOKIE, cookie.clone());
        }
    }

    /// What must live until the response body ends.
    pub fn into_held(self) -> Held {
        self.held
    }

    /// The step after the `retry` the request side stopped at, if it did: the forwarding code
    /// then runs the rest from there once per attempt.
    pub fn retry(&self) -> Option<usize> {
        self.retry.map(|index| index + 1)
    }

    /// How the request body must be read before it is sent.
    pub fn body_plan(&self) -> BodyPlan {
        self.body
    }

    /// Runs the response side of the steps that ran, last first, on a whole response: heads as
    /// [`Pending::response`] does, and bodies for `compress`, `errors` and `buffering`.
    pub async fn respond(
        self,
        response: Response<crate::forward::ProxyBody>,
        conn: &crate::connection::Connection,
    ) -> (Response<crate::forward::ProxyBody>, Held) {
        if !self.reshapes {
            let mut response = response;
            let status = response.status();
            self.response(status, response.headers_mut());
            return (response, self.held);
        }
        Box::pin(self.reshape(response, conn)).await
    }

    async fn reshape(
        self,
        mut response: Response<crate::forward::ProxyBody>,
        conn: &crate::connection::Connection,
    ) -> (Response<crate::forward::ProxyBody>, Held) {
        for step in self.chain.steps[self.from..self.ran].iter().rev() {
            match &**step {
                Middleware::Headers(m) => {
                    let status = response.status();
                    m.response(status, response.headers_mut(), self.origin.as_ref(), self.secure);
                }
                Middleware::CircuitBreaker(m) => {
                    let took = self.started.map_or(std::time::Duration::ZERO, |s| s.elapsed());
                    m.record(response.status(), took);
                }
                Middleware::Compress(m) => {
                    if let Some(asked) = &self.compress {
                        response = m.response(asked, response).await;
                    }
                }
                Middleware::Errors(m) => {
                    if let Some(original) = &self.original {
                        response = m.response(original, response, conn).await;
                    }
                }
                Middleware::Buffering(m) => response = m.response(response).await,
                _ => {}
            }
        }
        for cookie in &self.cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie.clone());
        }
        (response, self.held)
    }
}

/// A short plain-text answer.
pub(crate) fn answer(status: StatusCode, text: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(text.as_bytes()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The request path without the query.
pub(crate) fn request_path<'a>(req: &'a Req<'_>) -> &'a str {
    req.parts.uri.path()
}
