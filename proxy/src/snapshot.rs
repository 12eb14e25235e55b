//! The snapshot: everything a request needs, compiled from one runtime configuration and
//! published through one `ArcSwap`, so no request can ever see half of a change.
//!
//! [`crate::compile`] builds it, resolving each server to its long-lived [`Upstream`] (connection
//! pool) and [`ServerHealth`] from registries that outlive snapshots, so the snapshot itself is
//! cheap to throw away: a new one is built on every change and in-flight requests finish on the
//! one they started with.

use std::collections::HashMap;
use std::sync::{mpsc, Arc};

use drover_providers::policy::{AllEjected, HealthPolicy};
use drover_providers::runtime::RuntimeConfig;
use tokio::time::Instant;

use crate::balance::SmoothWeighted;
use crate::health::{Admission, Outcome, RetryBudget, ServerHealth};
use crate::routing::RouteTable;
use crate::upstream::Upstream;

/// An immutable routing state.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration it was compiled from.
    pub config: Arc<RuntimeConfig>,
    /// Route tables for plain-HTTP connections, indexed like the static entrypoints. Shared: a
    /// reload that changes no router of an entrypoint keeps its table.
    pub entry_points: Vec<Arc<RouteTable<Arc<Route>>>>,
    /// Route tables for TLS connections (routers with `tls`, or on an entrypoint with
    /// `http.tls`), indexed the same way.
    pub tls_entry_points: Vec<Arc<RouteTable<Arc<Route>>>>,
    /// Certificates and TLS options.
    pub tls: Arc<crate::tls::TlsSnapshot>,
    /// Services by qualified name.
    pub services: HashMap<String, Arc<Service>>,
    /// TCP routers per entrypoint, UDP services per UDP entrypoint (shared like the tables).
    pub l4: Arc<crate::l4::TcpTables>,
}

/// A matched router: where its requests go.
#[derive(Debug)]
pub struct Route {
    /// Qualified router name.
    pub router: Arc<str>,
    /// Its id in the metrics.
    pub router_id: u32,
    /// Its service.
    pub service: Arc<Service>,
    /// Its own access-log switch; `None` follows the entrypoint.
    pub access_log: Option<bool>,
    /// Its own metrics switch; `None` follows the entrypoint.
    pub metrics: Option<bool>,
    /// Its middlewares (the entrypoint's defaults first); `None` when it has none.
    pub middlewares: Option<Arc<crate::middleware::Chain>>,
}

/// What is recorded for requests: an access-log line each, metrics. An entrypoint's defaults,
/// which a router's own switches override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observe {
    /// Write access-log lines (when the access log is on).
    pub access_log: bool,
    /// Record metrics.
    pub metrics: bool,
}

impl Observe {
    /// Everything recorded (the default).
    pub const ALL: Observe = Observe {
        access_log: true,
        metrics: true,
    };

    /// These defaults with `route`'s own switches applied.
    pub fn for_route(self, route: &Route) -> Observe {
        Observe {
            access_log: route.access_log.unwrap_or(self.access_log),
            metrics: route.metrics.unwrap_or(self.metrics),
        }
    }
}

/// A load-balanced service.
#[derive(Debug)]
pub struct Service {
    /// Qualified service name.
    pub name: Arc<str>,
    /// Its id in the metrics.
    pub metrics_id: u32,
    /// Its servers, in configuration order.
    pub servers: Box<[Server]>,
    /// Failover tiers, lowest (preferred) first, each a smooth weighted round robin over the
    /// indices of its servers in `servers`.
    pub(crate) tiers: Box<[Tier]>,
    /// Send the client's Host header (true) or the server's authority.
    pub pass_host_header: bool,
    /// Passive and active health, retries.
    pub health: HealthPolicy,
    /// Its retry budget (kept across reloads).
    pub budget: Arc<RetryBudget>,
    /// A strategy other than round robin, or a sticky cookie (`None`: plain round robin).
    pub balancing: Option<Box<crate::balance::Balancing>>,
    /// A service made of services (`weighted`, `failover`, `mirroring`): it has no servers.
    pub composite: Option<Box<crate::service::Composite>>,
}

/// One failover tier of a service.
#[derive(Debug)]
pub(crate) struct Tier {
    /// Indices into `Service::servers`.
    pub(crate) members: Box<[u32]>,
    pub(crate) balancer: SmoothWeighted,
}

/// One server of a service.
#[derive(Debug)]
pub struct Server {
    /// The URL as configured.
    pub url: Arc<str>,
    /// Its weight.
    pub weight: u32,
    /// Its failover tier.
    pub tier: u32,
    /// The connection pool of its address.
    pub upstream: Arc<Upstream>,
    /// Its health in this service (kept across reloads).
    pub health: Arc<ServerHealth>,
}

/// Servers already tried for one request (retries go elsewhere).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tried(u64);

impl Tried {
    /// Marks server `i` as tried.
    pub fn add(&mut self, i: usize) {
        if i < 64 {
            self.0 |= 1 << i;
        }
    }

    /// Was server `i` tried? (Services with more than 64 servers may retry one of the others
    /// beyond the 64th twice; harmless.)
    pub fn contains(&self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
}

/// The result of choosing a server.
#[derive(Debug)]
pub enum Picked<'a> {
    /// This server (index in `servers`); `probe` when it is its probation request.
    Server {
        /// Index in `Service::servers`.
        index: usize,
        /// The server.
        server: &'a Server,
        /// The single probation request of an ejected server: its outcome must be recorded.
        probe: bool,
    },
    /// The service has no server with a positive weight.
    NoServers,
    /// Every server that has not been tried is ejected and the service is set to `fail`.
    AllEjected,
    /// Every server was already tried by this request.
    Exhausted,
}

impl Service {
    /// The next server: the lowest tier with a usable server, by smooth weighted round robin,
    /// skipping `tried` ones. When none is usable, `panic` mode balances across all servers
    /// regardless of health (the ejections may be a false alarm).
    pub fn pick(&self, tried: Tried, now: Instant) -> Picked<'_> {
        if self.tiers.is_empty() {
            return Picked::NoServers;
        }
        let policy = &self.health.passive;
        if !self.panicking() {
            for tier in self.tiers.iter() {
                let mut probe = false;
                let chosen = tier.balancer.pick(|k| {
                    let i = tier.members[k] as usize;
                    if tried.contains(i) {
                        return false;
                    }
                    match self.servers[i].health.admit(policy, now) {
                        Admission::Admit => true,
                        Admission::Probe => {
                            probe = true;
                            true
                        }
                        Admission::Refuse => false,
                    }
                });
                if let Some(k) = chosen {
                    let index = tier.members[k] as usize;
                    return Picked::Server {
                        index,
                        server: &self.servers[index],
                        probe,
                    };
                }
            }
            if policy.on_all_ejected == AllEjected::Fail {
                return Picked::AllEjected;
            }
        }
        // Panic: every untried server, healthy or not, preferred tiers first.
        for tier in self.tiers.iter() {
            if let Some(k) = tier.balancer.pick(|k| !tried.contains(tier.members[k] as usize)) {
                let index = tier.members[k] as usize;
                return Picked::Server {
                    index,
                    server: &self.servers[index],
                    probe: false,
                };
            }
        }
        Picked::Exhausted
    }

    /// Too few servers are usable: balance across all of them regardless of health.
    pub fn panicking(&self) -> bool {
        let policy = &self.health.passive;
        policy.panic_threshold > 0 && {
            let usable = self.servers.iter().filter(|s| s.weight > 0 && !s.health.is_out()).count();
            let total = self.servers.iter().filter(|s| s.weight > 0).count();
            usable * 100 < total * policy.panic_threshold as usize
        }
    }

    /// The server the next request would most likely go to, without taking the turn (for the
    /// explain API). `None` when no server is usable.
    pub fn peek(&self, now: Instant) -> Option<&Server> {
        self.tiers.iter().find_map(|tier| {
            tier.balancer
                .peek(|k| self.servers[tier.members[k] as usize].health.would_admit(now))
                .map(|k| &self.servers[tier.members[k] as usize])
        })
    }

    /// Records what happened to a request sent to server `index`.
    pub fn record(&self, index: usize, outcome: Outcome, probe: bool, now: Instant) {
        let Some(server) = self.servers.get(index) else { return };
        let policy = &self.health.passive;
        server.health.record(outcome, probe, policy, now, || {
            // At least one server may always be ejected; beyond that, maxEjectionPercent.
            let total = self.servers.len();
            let out = self.servers.iter().filter(|s| s.health.is_out()).count();
            let allowed = (total * policy.max_ejection_percent as usize / 100).max(1);
            out < allowed
        });
    }
}

impl Snapshot {
    /// The route table of entrypoint `index` for a plain (`tls` false) or TLS connection.
    pub fn table(&self, index: usize, tls: bool) -> Option<&RouteTable<Arc<Route>>> {
        if tls {
            self.tls_entry_points.get(index).map(|t| &**t)
        } else {
            self.entry_points.get(index).map(|t| &**t)
        }
    }

    /// A snapshot that routes nothing (before the first configuration arrives).
    pub fn empty(entry_points: usize) -> Self {
        Self {
            config: Arc::new(RuntimeConfig::default()),
            entry_points: (0..entry_points).map(|_| Arc::new(RouteTable::build(Vec::new()))).collect(),
            tls_entry_points: (0..entry_points).map(|_| Arc::new(RouteTable::build(Vec::new()))).collect(),
            tls: Arc::new(crate::tls::TlsSnapshot::empty(entry_points)),
            services: HashMap::new(),
            l4: Arc::default(),
        }
    }
}

/// Drops replaced snapshots on a thread of its own.
///
/// Freeing a large snapshot is not free: at 10,000 routers every route, rule, name and router
/// record is an allocation of its own, and dropping them all takes milliseconds. The thread that
/// swaps snapshots in also runs the providers' watches and the admin API, so it hands the old
/// snapshot here instead. A request still holding the old snapshot frees whatever it holds last
/// when it finishes, as before.
#[derive(Clone, Debug)]
pub struct Retirer {
    old: mpsc::Sender<Arc<Snapshot>>,
}

impl Retirer {
    /// Starts the thread that drops retired snapshots; it ends when every `Retirer` is gone.
    pub fn start() -> std::io::Result<Self> {
        let (old, retired) = mpsc::channel::<Arc<Snapshot>>();
        std::thread::Builder::new()
            .name("drover-retire".into())
            .spawn(move || retired.into_iter().for_each(drop))?;
        Ok(Self { old })
    }

    /// Hands `snapshot` to the thread to drop (or drops it here if that thread is gone).
    pub fn retire(&self, snapshot: Arc<Snapshot>) {
        if let Err(mpsc::SendError(snapshot)) = self.old.send(snapshot) {
            drop(snapshot);
        }
    }
}
