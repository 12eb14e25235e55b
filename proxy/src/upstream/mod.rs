//! Upstream servers and their connection pools.
//!
//! An [`Upstream`] is one server address. It lives outside the routing snapshot, in the
//! [`Upstreams`] registry keyed by address, so a configuration change never drops connections
//! it can keep: the new snapshot is compiled against the same `Arc<Upstream>`.
//!
//! Each worker thread has its own lane of idle connections per server, as Envoy and HAProxy
//! keep per-thread pools: a connection's socket is registered with the I/O driver of the
//! worker that opened it, so a request sent on it from another worker would get its readiness
//! through the first worker's thread, waking both. Lane 0 belongs to every thread that is not a
//! worker (active health checks on the control thread).
//!
//! Servers are reached over plain HTTP/1.1 (`http://`), TLS (`https://`: HTTP/2 when the server
//! offers it by ALPN, see [`tls`]) or cleartext HTTP/2 (`h2c://`, see [`h2`]), through a
//! [`Transport`]: the static `[serversTransport]`, or a dynamic servers transport laid over it
//! ([`transports`]). The registry keys a server by scheme, address and transport, so two
//! transports to the same `host:port` never share a connection.
//!
//! Each server's requests in flight are counted, and held to the transport's `maxConnsPerHost`
//! with a queue in front ([`limit`]). The count belongs to the server (scheme, address and
//! transport), not to one configuration: an upstream made anew because its transport changed
//! takes over its predecessor's [`Limiter`], so requests still running on the old one count.

mod h2;
pub mod limit;
mod pool;
pub mod tls;
pub mod transports;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_providers::runtime::Scheme;

pub use limit::{Limiter, Limits, Refused, Slot};
pub use pool::{BodyProgress, BodyTap, Pooled, RequestBody, SendError, Upstream};

/// Connection settings shared by every upstream.
#[derive(Clone, Debug)]
pub struct Transport {
    /// Deadline for the TCP connect.
    pub dial_timeout: Duration,
    /// Idle pooled connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Idle connections kept per server, split evenly across the workers' lanes.
    pub max_idle: usize,
    /// Worker threads (each gets its own lane of idle connections).
    pub workers: usize,
    /// The servers transport this is (`name@provider`); `None` for the static one.
    pub name: Option<Arc<str>>,
    /// TLS to `https://` servers; `None`: Mozilla's roots, no client certificate.
    pub tls: Option<Arc<tls::TlsClient>>,
    /// HTTP/2 to servers.
    pub http2: Http2,
    /// `responseHeaderTimeout` when this transport sets its own (`Some(None)`: none); `None`:
    /// the static one.
    pub response_header_timeout: Option<Option<Duration>>,
    /// `maxConnsPerHost`, `queueTimeout`, `maxQueued`: put in force on a server's limiter when
    /// a snapshot is compiled (a change to them alone keeps the pooled connections).
    pub limits: Limits,
    /// Changes whenever anything above but the limits (or a file it was read from) changes: an
    /// upstream made with another fingerprint is not reused.
    pub fingerprint: u64,
}

/// HTTP/2 to servers.
#[derive(Clone, Debug)]
pub struct Http2 {
    /// Offer `h2` to TLS servers by ALPN (`disableHTTP2` turns it off).
    pub enabled: bool,
    /// `readIdleTimeout`: ping a connection that received no frame for this long.
    pub read_idle_timeout: Option<Duration>,
    /// `pingTimeout`: close a connection whose ping is unanswered for this long.
    pub ping_timeout: Duration,
}

impl Default for Http2 {
    fn default() -> Self {
        Self {
            enabled: true,
            read_idle_timeout: None,
            ping_timeout: Duration::from_secs(15),
        }
    }
}

impl Transport {
    /// The TLS client for `https://` servers.
    pub fn tls_client(&self) -> &tls::TlsClient {
        self.tls.as_deref().unwrap_or(tls::default_client())
    }
}

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `index` (0-based): the connections it opens, and the idle
/// connections it reuses, are its own.
pub fn enter_worker(index: usize) {
    LANE.with(|lane| lane.set(index + 1));
}

/// The calling thread's lane: 0 outside workers, 1 + index in worker `index`.
pub(crate) fn current_lane() -> usize {
    LANE.with(Cell::get)
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_idle: 200,
            workers: 1,
            name: None,
            tls: None,
            http2: Http2::default(),
            response_header_timeout: None,
            limits: Limits::default(),
            fingerprint: 0,
        }
    }
}

/// Every upstream in use, by `host:port`.
#[derive(Debug)]
pub struct Upstreams {
    transport: Arc<Transport>,
    tls_defaults: transports::TlsDefaults,
    by_authority: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Upstreams {
    /// An empty registry whose upstreams use `transport`.
    pub fn new(transport: Transport) -> Self {
        Self::with_tls_defaults(transport, transports::TlsDefaults::default())
    }

    /// An empty registry whose upstreams use `transport`, whose TLS keys dynamic servers
    /// transports inherit (`tls_defaults`).
    pub fn with_tls_defaults(transport: Transport, tls_defaults: transports::TlsDefaults) -> Self {
        Self {
            transport: Arc::new(transport),
            tls_defaults,
            by_authority: Mutex::new(HashMap::new()),
        }
    }

    /// The static transport, which dynamic servers transports are laid over.
    pub fn base(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// Every servers transport of `config` laid over the static one, by qualified name; those
    /// that cannot be built are disabled in `config` (see [`transports::resolve_all`]).
    pub fn resolve_transports(&self, config: &mut Arc<drover_providers::runtime::RuntimeConfig>) -> HashMap<String, Arc<Transport>> {
        transports::resolve_all(config, &self.transport, &self.tls_defaults)
    }

    /// The upstream for `authority` (`host:port`) over plain HTTP/1.1 and the static transport,
    /// created on first use. Called when compiling a snapshot, never per request.
    pub fn get(&self, authority: &str) -> Arc<Upstream> {
        self.get_with(Scheme::Http, authority, None)
    }

    /// The upstream for `scheme://authority` through `transport` (`None`: the static one),
    /// created on first use, or anew when the transport changed (keeping the server's count of
    /// requests in flight); the transport's limits are put in force either way.
    pub fn get_with(&self, scheme: Scheme, authority: &str, transport: Option<&Arc<Transport>>) -> Arc<Upstream> {
        let key = match (scheme, transport) {
            (Scheme::Http, None) => authority.to_string(),
            (_, transport) => {
                let via = transport.and_then(|t| t.name.as_deref()).unwrap_or("");
                let scheme = match scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                    Scheme::H2c => "h2c",
                };
                format!("{scheme}://{authority} via {via}")
            }
        };
        let transport = transport.unwrap_or(&self.transport);
        let mut map = self.by_authority.lock().unwrap_or_else(|p| p.into_inner());
        let upstream = match map.get(&key) {
            Some(upstream) if upstream.transport().fingerprint == transport.fingerprint => upstream.clone(),
            previous => {
                let limiter = previous.map(|p| p.limiter().clone());
                let upstream = Arc::new(Upstream::with_limiter(scheme, authority, transport.clone(), limiter));
                map.insert(key, upstream.clone());
                upstream
            }
        };
        if upstream.limiter().limits() != transport.limits {
            upstream.limiter().configure(transport.limits);
        }
        upstream
    }

    /// Forgets upstreams no snapshot refers to any more (their idle connections close).
    pub fn retain_used(&self) {
        let mut map = self.by_authority.lock().unwrap_or_else(|p| p.into_inner());
        // Only the registry itself holds an unused upstream.
        map.retain(|_, upstream| Arc::strong_count(upstream) > 1);
    }

    /// A copy of the registry's current contents.
    pub fn all(&self) -> Vec<Arc<Upstream>> {
        self.by_authority
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
