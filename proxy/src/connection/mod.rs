//! What client connections share, and what each one carries.
//!
//! [`Shared`] is the process-wide state every worker's connections read: the snapshot (swapped
//! whole by the control plane), the health registry, metrics and the access log. A
//! [`Connection`] is built once per accepted client connection and handed to each of its requests:
//! where it came from, the forwarded-header values derived from that ([`Forwarded`]), and what it
//! is doing for its timeouts ([`Activity`]).
//!
//! This module sits below the data path: `server` accepts and builds connections, `forward`
//! serves their requests, and both import from here, never the other way round.

mod activity;
mod forwarded;
mod policy;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::time::{Instant, Sleep};

pub(crate) use activity::Verdict;
pub use activity::{Activity, InFlight, Limits};
pub use forwarded::{Forwarded, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO, X_REAL_IP};
pub use policy::{Encoded, PathPolicy, Redirect, TrustedProxies};

use crate::snapshot::{Observe, Snapshot};

/// State every connection of every worker shares.
pub struct Shared {
    /// The routing snapshot, swapped whole on every configuration change.
    pub snapshot: ArcSwap<Snapshot>,
    /// Deadline for a server's response head; `None` waits forever.
    pub response_header_timeout: Option<Duration>,
    /// How long a request or response body may move no byte before it is cut; `None` waits
    /// forever.
    pub body_idle_timeout: Option<Duration>,
    /// Health of every server, kept across snapshots.
    pub health: crate::health::HealthRegistry,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Turns true when drover shuts down (upgraded connections close then).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The access log, when enabled.
    pub access_log: Option<crate::access_log::AccessLog>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("generation", &self.snapshot.load().config.generation)
            .finish_non_exhaustive()
    }
}

/// What a connection takes from the entrypoint that accepted it.
#[derive(Clone, Debug)]
pub struct EntryPointRules {
    /// Index of the entrypoint in the snapshot's tables.
    pub index: usize,
    /// The entrypoint's name.
    pub name: Arc<str>,
    /// What it records by default (access log, metrics).
    pub observe: Observe,
    /// How it checks and normalises request paths.
    pub path_policy: PathPolicy,
    /// Peers whose forwarding headers it keeps.
    pub trusted: Arc<TrustedProxies>,
    /// Its open-connections gauge (shared by every worker).
    pub open_connections: Arc<AtomicI64>,
    /// How long an upgraded connection (WebSocket) may be silent: its `idleTimeout`.
    pub tunnel_idle: Option<Duration>,
    /// `readTimeout`: the whole request within this of its start.
    pub read_timeout: Option<Duration>,
    /// `writeTimeout`: the whole response within this of the request's start.
    pub write_timeout: Option<Duration>,
    /// `http.redirections.entryPoint`: plain-HTTP requests are redirected.
    pub redirect: Option<Arc<Redirect>>,
    /// ACME HTTP-01 answers, when a resolver's `httpChallenge.entryPoint` is this one.
    pub acme_http01: Option<Arc<crate::acme::Challenges>>,
    /// PROXY protocol and TCP routers' settings.
    pub l4: crate::l4::dispatch::L4Rules,
}

/// One client connection's context, built when it is accepted (or served again after parking).
/// Kept small: a connection between two requests holds little more than this, its socket and its
/// task until it parks (see `server::parking`), so what every connection of an entrypoint shares
/// is reached through `entry`, never copied.
#[derive(Debug)]
pub struct Connection {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The entrypoint that accepted it: its index, name, timeouts, redirection, path policy.
    pub entry: Arc<EntryPointRules>,
    /// What its TLS handshake negotiated; `None` for a plain connection.
    pub tls: Option<crate::tls::TlsSession>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Forwarded-header values for this client.
    pub forwarded: Forwarded,
    /// What the connection is doing, for its client timeouts.
    pub activity: Activity,
    /// The deadline for server response heads, reused by the connection's requests.
    pub(crate) response_timer: ResponseTimer,
}

/// A reusable timer for the response-head deadline, one per client connection and kept between
/// its requests. Moving a registered timer's deadline later is one atomic store; a new timer per
/// request would cost an insertion into and a removal from the runtime's timer wheel, each
/// under its lock. Concurrent requests (HTTP/2) that find it taken use a timer of their own.
#[derive(Default)]
pub(crate) struct ResponseTimer(Mutex<Option<Pin<Box<Sleep>>>>);

impl std::fmt::Debug for ResponseTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseTimer")
    }
}

impl ResponseTimer {
    /// The connection's timer set to `deadline`, or a new one if another request holds it.
    pub(crate) fn take(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        match self.0.try_lock().ok().and_then(|mut kept| kept.take()) {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the connection's next request.
    pub(crate) fn give_back(&self, timer: Pin<Box<Sleep>>) {
        if let Ok(mut kept) = self.0.try_lock() {
            kept.get_or_insert(timer);
        }
    }
}

impl Connection {
    /// Marks the connection as TLS-terminated with `session` (its forwarded proto is `https`).
    pub fn with_tls(mut self, session: crate::tls::TlsSession) -> Self {
        self.tls = Some(session);
        self.forwarded.proto = HeaderValue::from_static("https");
        self
    }

    /// The context of a parked connection served again (see `server::parking`): as new, known
    /// to speak HTTP/1.
    pub fn resumed(shared: Arc<Shared>, rules: &Arc<EntryPointRules>, peer: SocketAddr, local: SocketAddr) -> Self {
        Self {
            activity: Activity::resumed(),
            ..Self::new(shared, rules, peer, local)
        }
    }

    /// The context of a connection from `peer` accepted at `local` by the entrypoint `rules`
    /// describe.
    pub fn new(shared: Arc<Shared>, rules: &Arc<EntryPointRules>, peer: SocketAddr, local: SocketAddr) -> Self {
        let ip = peer.ip().to_canonical();
        let forwarded = Forwarded {
            // Invariant: an IP address and a port number print as valid header values.
            client_ip: HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from(local.port()),
            port_number: local.port(),
            trusted: rules.trusted.trusts(ip),
        };
        Self {
            shared,
            entry: rules.clone(),
            tls: None,
            peer: SocketAddr::new(ip, peer.port()),
            forwarded,
            activity: Activity::new(),
            response_timer: ResponseTimer::default(),
        }
    }
}
