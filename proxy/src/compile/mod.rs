//! Compiling: the providers' fragments become one immutable [`Snapshot`].
//!
//! A reload is two steps on one thread: [`Fragments::merge`] validates and namespaces what the
//! providers said (a [`RuntimeConfig`], which the admin side shows), then [`Compiler::compile`]
//! turns it into what the data path matches and balances with. Both read one [`RuleCache`], so a
//! rule text is parsed once, compiled into its matcher once, and forgotten once no router uses
//! it: a one-router change at 10,000 routers parses and compiles one rule.
//!
//! # What it reads and what it changes
//!
//! A compilation is a function of the configuration, except for state that must outlive
//! snapshots, which it looks up by identity rather than builds:
//! * [`Upstreams`] (owned here: only the compiler creates upstreams): a server's connection pool
//!   by `host:port`, so a reload keeps pooled connections; upstreams no snapshot uses any more
//!   are dropped at the end ([`Upstreams::retain_used`]).
//! * [`HealthRegistry`]: each (service, server)'s passive-health state and each service's retry
//!   budget, so a reload never makes an ejected server look healthy; servers the new
//!   configuration lacks are marked removed ([`HealthRegistry::finish`]).
//! * [`Metrics`]: a stable id per router and service name.
//!
//! Active health checks follow the snapshot (`health::active::ActiveChecks::reconcile`), on the
//! runtime that runs them, after the compilation.
//!
//! # Where it runs
//!
//! Off the control thread's task loop (`server` hands each compilation to a blocking thread): a
//! 10,000-router reload takes tens of milliseconds, which must stall neither the providers'
//! watches nor the admin API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use drover_providers::aggregate::{Fragments, RuleCache};
use drover_providers::balancing::Strategy as ChoiceStrategy;
use drover_providers::model::RouterTls;
use drover_providers::runtime::{RouterInfo, RuntimeConfig, ServiceInfo, Status};

use crate::balance::hash::Ring;
use crate::balance::{Balancing, Loads, SmoothWeighted, Sticky, Strategy};
use crate::health::HealthRegistry;
use crate::metrics::Metrics;
use crate::middleware::{Chain, Middleware, Stores};
use crate::routing::{CompiledRule, HostPattern, RouteEntry, RouteTable};
use crate::service::mirror::MirrorStats;
use crate::service::{Composite, Failover, Mirroring, Weighted};
use crate::snapshot::{Route, Server, Service, Snapshot, Tier};
use crate::tls::TlsCompiler;
use crate::upstream::{Transport, Upstreams};

mod patch;
use patch::Last;

/// Builds snapshots, keeping what one reload can reuse from the previous one.
#[derive(Debug)]
pub struct Compiler {
    /// The static entrypoints' names, in the order of the snapshot's route tables.
    entry_points: Vec<String>,
    /// The UDP entrypoints' names, in the order of the snapshot's UDP services.
    udp_entry_points: Vec<String>,
    upstreams: Upstreams,
    rules: RuleCache<Matchable>,
    tls: TlsCompiler,
    /// Servers' loads for `p2c` and `leasttime` (kept across reloads).
    loads: Loads,
    /// Mirroring services' counts (kept across reloads).
    mirror_stats: HashMap<String, Arc<MirrorStats>>,
    /// `entryPoints.<name>.http.middlewares`: run before each router's own.
    entry_point_middlewares: BTreeMap<String, Vec<String>>,
    /// Middleware state kept across reloads (rate-limit buckets, in-flight counts).
    stores: Stores,
    /// The middlewares the last compilation built, by name.
    built: HashMap<String, Arc<Middleware>>,
    /// What the last reload made, for the next one to patch (and the next full compile to
    /// continue its balancers).
    last: Option<Last>,
    /// The next reload merges and compiles everything ([`Compiler::forget_last`]).
    full_next: bool,
    /// How long the last reload's steps took.
    timings: Timings,
}

/// A router's entries in the route tables: entrypoint index, whether in the TLS table, entry.
type Entries = Vec<(usize, bool, RouteEntry<Arc<Route>>)>;

/// A rule as route tables take it: compiled, with the hosts it requires. Kept per rule text, and
/// shared by every router and reload that uses the text.
#[derive(Debug)]
struct Matchable {
    rule: CompiledRule,
    hosts: Option<Arc<[HostPattern]>>,
}

impl Matchable {
    fn compile(rule: &drover_providers::rule::Rule) -> Result<Self, regex::Error> {
        Ok(Self {
            rule: CompiledRule::compile(rule)?,
            hosts: rule.required_hosts().map(Into::into),
        })
    }
}

/// How long the steps of one reload took (logged with each configuration put in force).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Merging and validating the providers' fragments.
    pub merge: std::time::Duration,
    /// Compiling the merged configuration into a snapshot.
    pub compile: std::time::Duration,
    /// Whether the reload patched the last snapshot (a few routers changed) rather than merged
    /// and compiled everything.
    pub patched: bool,
}

impl Compiler {
    /// A compiler for the static entrypoints `entry_points` (by name, in index order) whose
    /// servers are reached through `upstreams`.
    pub fn new(entry_points: Vec<String>, upstreams: Upstreams) -> Self {
        Self {
            tls: TlsCompiler::new(vec![None; entry_points.len()]),
            entry_points,
            udp_entry_points: Vec::new(),
            upstreams,
            rules: RuleCache::default(),
            loads: Loads::default(),
            mirror_stats: HashMap::new(),
            entry_point_middlewares: BTreeMap::new(),
            stores: Stores::default(),
            built: HashMap::new(),
            last: None,
            full_next: false,
            timings: Timings::default(),
        }
    }

    /// Makes the next reload merge and compile everything, although its fragments may differ
    /// little from the last ones: for when something read while compiling changed (certificate
    /// files, `usersFile`s, ACME state).
    pub fn forget_last(&mut self) {
        self.full_next = true;
    }

    /// How long the steps of the last reload took.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// Sets each entrypoint's `http.tls` defaults (index order): every router on such an
    /// entrypoint is a TLS router there.
    pub fn with_entry_point_tls(mut self, defaults: Vec<Option<RouterTls>>) -> Self {
        self.tls.entry_points = defaults;
        self
    }

    /// Serves certificates from ACME resolvers and tells them what routers want.
    pub fn with_acme(mut self, acme: Arc<crate::acme::Acme>) -> Self {
        self.tls.acme = Some(acme);
        self
    }

    /// Names the UDP entrypoints (index order).
    pub fn with_udp_entry_points(mut self, names: Vec<String>) -> Self {
        self.udp_entry_points = names;
        self
    }

    /// The certificate files the last compilation read, for the watcher.
    pub fn certificate_files(&self) -> Vec<std::path::PathBuf> {
        self.tls.files()
    }

    /// Sets each entrypoint's default middlewares (by entrypoint name), which its routers run
    /// before their own.
    pub fn with_entry_point_middlewares(mut self, defaults: BTreeMap<String, Vec<String>>) -> Self {
        self.entry_point_middlewares = defaults;
        self
    }

    /// Merges `fragments` and compiles the result: the whole reload. When the fragments differ
    /// from the last ones in a few HTTP routers only, those routers are patched into the last
    /// snapshot's configuration and tables instead (see [`patch`] and [`drover_providers::incremental`]), which gives the same
    /// snapshot at a cost in proportion to the change.
    pub fn reload(&mut self, fragments: &Fragments, health: &HealthRegistry, metrics: &Metrics) -> Snapshot {
        let started = std::time::Instant::now();
        if let Some(snapshot) = self.patch(fragments, metrics, started) {
            return snapshot;
        }
        let mut config = fragments.merge(&self.entry_points, &mut self.rules);
        drover_providers::middlewares::apply_entry_point_defaults(&mut config, &self.entry_point_middlewares);
        let merged = std::time::Instant::now();
        let snapshot = self.compile(Arc::new(config), health, metrics);
        self.last = Some(Last::of(fragments, &snapshot));
        self.timings = Timings {
            merge: merged - started,
            compile: merged.elapsed(),
            patched: false,
        };
        snapshot
    }

    /// Compiles a merged configuration. Rules come from the cache the merge keeps (one merged
    /// elsewhere has its rules compiled here and kept until the next merge sweeps the cache).
    pub fn compile(&mut self, mut config: Arc<RuntimeConfig>, health: &HealthRegistry, metrics: &Metrics) -> Snapshot {
        // Its services' balancers hand their cursors on (see `SmoothWeighted::continuing`).
        let previous = self.last.take();
        health.begin();
        // TLS may disable routers (missing or invalid options) and adds its findings to the
        // configuration the API shows, so it runs before the configuration is frozen.
        let (tls, tls_routers) = self.tls.compile(Arc::make_mut(&mut config), &self.entry_points);
        let l4 = crate::l4::compile::compile(
            Arc::make_mut(&mut config),
            &self.entry_points,
            &self.udp_entry_points,
            &tls,
            health,
            (&metrics.tcp, &metrics.udp),
        );
        let transports = self.upstreams.resolve_transports(&mut config);
        let services = self.services(&config, &transports, health, metrics, previous.as_ref());
        drop(previous);
        disable_unbuilt_composites(&mut config, &services);
        let mut tables: Vec<Vec<RouteEntry<Arc<Route>>>> = self.entry_points.iter().map(|_| Vec::new()).collect();
        let mut tls_tables: Vec<Vec<RouteEntry<Arc<Route>>>> = self.entry_points.iter().map(|_| Vec::new()).collect();
        let mut built: HashMap<String, Arc<Middleware>> = HashMap::new();
        build_middlewares(&mut config, &mut self.stores, &mut built, &services);
        // Routers that cannot be served after all (see `served`), with why, for the API.
        let mut off: Vec<(String, String)> = Vec::new();
        for (name, info) in &config.routers {
            if info.status == Status::Disabled {
                continue;
            }
            let Some(rule) = &info.parsed else { continue };
            match self.routes_of(info, rule, &config, &services, &mut built, tls_routers.get(name), metrics) {
                Ok(entries) => {
                    for (i, tls, entry) in entries {
                        let table = if tls { &mut tls_tables[i] } else { &mut tables[i] };
                        table.push(entry);
                    }
                }
                Err(whys) => off.extend(whys.into_iter().map(|why| (name.clone(), why))),
            }
        }
        if !off.is_empty() {
            // A router the API shows disabled is in no table, on any entrypoint.
            let config = Arc::make_mut(&mut config);
            for (name, why) in off {
                disable_router(config, &name, why);
            }
        }
        let used: std::collections::HashSet<&str> = built.keys().map(String::as_str).collect();
        self.stores.retain(&|name| used.contains(name));
        let snapshot = Snapshot {
            config,
            entry_points: tables.into_iter().map(|t| Arc::new(RouteTable::build(t))).collect(),
            tls_entry_points: tls_tables.into_iter().map(|t| Arc::new(RouteTable::build(t))).collect(),
            tls: Arc::new(tls),
            services,
            l4: Arc::new(l4),
        };
        self.built = built;
        self.upstreams.retain_used();
        self.loads.sweep();
        self.mirror_stats.retain(|name, _| snapshot.services.contains_key(name));
        health.finish(snapshot.services.keys().cloned());
        snapshot
    }

    /// The route table entries of router `info` (whose parsed rule is `rule`), or why it cannot
    /// be served (a reason per entrypoint whose middlewares fail). `on_tls`: the entrypoints
    /// where it is a TLS router.
    #[allow(clippy::too_many_arguments)]
    fn routes_of(
        &mut self,
        info: &RouterInfo,
        rule: &drover_providers::rule::Rule,
        config: &RuntimeConfig,
        services: &HashMap<String, Arc<Service>>,
        built: &mut HashMap<String, Arc<Middleware>>,
        on_tls: Option<&Vec<bool>>,
        metrics: &Metrics,
    ) -> Result<Entries, Vec<String>> {
        let name = &info.name;
        let service = served(config, services, &info.service).map_err(|why| vec![why])?;
        let (compiled, hosts) = match self.rules.compiled(&info.rule, rule, Matchable::compile) {
            Ok(m) => (m.rule.clone(), m.hosts.clone()),
            Err(e) => {
                // The merge validated the rule; reaching this is a bug worth a log line.
                tracing::error!(router = %name, "rule failed to compile: {e}");
                return Err(vec![format!("the rule failed to compile: {e}")]);
            }
        };
        let router: Arc<str> = name.as_str().into();
        let mut entries = Vec::new();
        let mut failed = Vec::new();
        // One route per distinct middleware list: entrypoints with the same defaults share it.
        let mut routes: Vec<(Vec<String>, Arc<Route>)> = Vec::new();
        for (i, ep) in self.entry_points.iter().enumerate() {
            if !info.using.contains(ep) {
                continue;
            }
            let mut names = self.entry_point_middlewares.get(ep).cloned().unwrap_or_default();
            names.extend(info.middlewares.iter().cloned());
            let route = match routes.iter().find(|(n, _)| *n == names) {
                Some((_, route)) => route.clone(),
                None => {
                    let chain = match chain(&mut self.stores, config, &names, &info.provider, built, services) {
                        Ok(chain) => chain,
                        Err(e) => {
                            // `build_middlewares` disabled the routers of every middleware that
                            // fails; reaching this is a bug. The router stays off rather than run
                            // without them, and the API says so.
                            tracing::error!(router = %name, entrypoint = %ep, "middlewares failed to compile: {e}");
                            failed.push(format!("entrypoint `{ep}`: {e}"));
                            continue;
                        }
                    };
                    let route = Arc::new(Route {
                        router_id: metrics.id(name),
                        router: router.clone(),
                        service: service.clone(),
                        access_log: info.observability.and_then(|o| o.access_logs),
                        metrics: info.observability.and_then(|o| o.metrics),
                        middlewares: chain,
                    });
                    routes.push((names, route.clone()));
                    route
                }
            };
            let entry = RouteEntry {
                name: router.clone(),
                priority: info.priority,
                rule: compiled.clone(),
                hosts: hosts.clone(),
                payload: route,
            };
            entries.push((i, on_tls.is_some_and(|on| on[i]), entry));
        }
        if failed.is_empty() {
            Ok(entries)
        } else {
            Err(failed)
        }
    }

    /// Every enabled service, with its servers' upstreams and health looked up; services made
    /// of services after their children.
    fn services(
        &mut self,
        config: &RuntimeConfig,
        transports: &HashMap<String, Arc<Transport>>,
        health: &HealthRegistry,
        metrics: &Metrics,
        previous: Option<&Last>,
    ) -> HashMap<String, Arc<Service>> {
        let mut services = HashMap::new();
        for (name, info) in &config.services {
            if info.status == Status::Disabled || info.load_balancer.is_none() {
                continue;
            }
            let transport = match &info.servers_transport {
                Some(name) => match transports.get(name) {
                    Some(transport) => Some(transport),
                    // The merge and the transports' resolution disable such a service.
                    None => continue,
                },
                None => None,
            };
            let keep_for = info.health.passive.base_ejection_time;
            let servers: Box<[Server]> = info
                .servers
                .iter()
                .map(|spec| Server {
                    url: spec.url.as_str().into(),
                    weight: spec.weight,
                    tier: spec.tier,
                    upstream: self.upstreams.get_with(spec.scheme, &spec.authority, transport),
                    health: health.server(name, &spec.authority, &spec.url, keep_for),
                })
                .collect();
            let service = Service {
                name: name.as_str().into(),
                metrics_id: metrics.id(name),
                tiers: tiers(&servers, previous.and_then(|last| last.service(name)).map(|s| &s.tiers[..])),
                balancing: self.balancing(name, info, &servers),
                servers,
                pass_host_header: info.pass_host_header,
                health: info.health.clone(),
                budget: health.budget(name),
                composite: None,
            };
            services.insert(name.clone(), Arc::new(service));
        }
        for name in config.services.keys() {
            self.composite(name, config, health, metrics, &mut services, 0);
        }
        services
    }

    /// How the load balancer `name` chooses, when it is not plain round robin.
    fn balancing(&self, name: &str, info: &ServiceInfo, servers: &[Server]) -> Option<Box<Balancing>> {
        let choice = &info.choice;
        if choice.strategy == ChoiceStrategy::Wrr && choice.sticky.is_none() {
            return None;
        }
        let strategy = match &choice.strategy {
            ChoiceStrategy::Wrr => Strategy::Wrr,
            ChoiceStrategy::P2c => Strategy::P2c,
            ChoiceStrategy::LeastTime => Strategy::LeastTime,
            ChoiceStrategy::Hrw => Strategy::Hrw,
            ChoiceStrategy::Hash(key) => Strategy::Hash {
                key: key.clone(),
                ring: Ring::new(servers.iter().map(|s| (&*s.url, s.weight))),
            },
        };
        let loads =
            matches!(strategy, Strategy::P2c | Strategy::LeastTime).then(|| servers.iter().map(|s| self.loads.get(name, &s.url)).collect());
        Some(Box::new(Balancing {
            strategy,
            sticky: choice
                .sticky
                .as_ref()
                .map(|spec| Sticky::new(spec, servers.iter().map(|s| &*s.url))),
            loads,
        }))
    }

    /// Builds the composite service `name` (and its composite children first); `None` when it
    /// is not an enabled composite. `depth` guards against cycles the merge would have refused.
    fn composite(
        &mut self,
        name: &str,
        config: &RuntimeConfig,
        health: &HealthRegistry,
        metrics: &Metrics,
        services: &mut HashMap<String, Arc<Service>>,
        depth: usize,
    ) -> Option<Arc<Service>> {
        if let Some(done) = services.get(name) {
            return Some(done.clone());
        }
        let info = config.services.get(name).filter(|i| i.status != Status::Disabled)?;
        if depth > 64 || info.load_balancer.is_some() {
            return None;
        }
        let mut child = |this: &mut Self, child: &str| this.composite(child, config, health, metrics, services, depth + 1);
        let composite = if let Some(w) = &info.weighted {
            let mut children = Vec::new();
            for c in &w.services {
                children.push((child(self, &c.name)?, c.weight.unwrap_or(1)));
            }
            let sticky = info
                .choice
                .sticky
                .as_ref()
                .map(|spec| Sticky::new(spec, children.iter().map(|(c, _)| &*c.name)));
            Composite::Weighted(Weighted::new(children, sticky))
        } else if let Some(f) = &info.failover {
            Composite::Failover(Failover {
                service: child(self, &f.service)?,
                fallback: child(self, &f.fallback)?,
            })
        } else if let Some(m) = &info.mirroring {
            let main = child(self, &m.service)?;
            let mut mirrors = Vec::new();
            for mirror in &m.mirrors {
                mirrors.push((child(self, &mirror.name)?, mirror.percent.unwrap_or(0)));
            }
            let stats = self.mirror_stats.entry(name.to_string()).or_default().clone();
            Composite::Mirroring(Mirroring::new(
                main,
                mirrors,
                m.max_body_size.unwrap_or(0).max(0) as u64,
                m.mirror_body.unwrap_or(true),
                stats,
            ))
        } else {
            return None;
        };
        let service = Arc::new(Service {
            name: name.into(),
            metrics_id: metrics.id(name),
            servers: Box::new([]),
            tiers: Box::new([]),
            pass_host_header: true,
            health: info.health.clone(),
            budget: health.budget(name),
            balancing: None,
            composite: Some(Box::new(composite)),
        });
        services.insert(name.to_string(), service.clone());
        Some(service)
    }
}

/// Shows disabled the composite services that could not be built because a service they are
/// made of was disabled while compiling (a servers transport whose files are unreadable), naming
/// it as the merge does; their routers are then disabled through [`served`].
fn disable_unbuilt_composites(config: &mut Arc<RuntimeConfig>, services: &HashMap<String, Arc<crate::snapshot::Service>>) {
    let unbuilt: Vec<(String, String)> = config
        .services
        .iter()
        .filter(|(name, info)| info.status != Status::Disabled && !services.contains_key(*name))
        .filter_map(|(name, info)| {
            let (key, child) = info.children().into_iter().find(|(_, child)| !services.contains_key(*child))?;
            let local = name.split('@').next().unwrap_or(name);
            Some((
                name.clone(),
                format!("http.services.{local}.{key}: the service `{child}` is disabled"),
            ))
        })
        .collect();
    if unbuilt.is_empty() {
        return;
    }
    let config = Arc::make_mut(config);
    for (name, why) in unbuilt {
        if let Some(info) = config.services.get_mut(&name) {
            tracing::warn!(service = %name, "service disabled: {why}");
            info.status = Status::Disabled;
            info.errors.push(why);
        }
    }
}

/// Compiles every middleware a router runs, ahead of the routers. The merge validated each one,
/// but some can only fail here, where what they need is read or built: `forwardAuth`'s `tls`
/// files, and the service an `errors` middleware sends to (a servers transport whose files are
/// unreadable disables that service only now). One that fails is disabled with the key and the
/// problem, and so is every router that runs it (its own, through a chain or as an entrypoint
/// default), as the merge does for an invalid middleware: the API says what is served, and
/// nothing else stops. The others are kept in `built` for the chains.
fn build_middlewares(
    config: &mut Arc<RuntimeConfig>,
    stores: &mut Stores,
    built: &mut HashMap<String, Arc<Middleware>>,
    services: &HashMap<String, Arc<crate::snapshot::Service>>,
) {
    let mut failed = Vec::new();
    for (name, info) in &config.middlewares {
        if info.status == Status::Disabled || info.config.chain.is_some() || info.used_by.is_empty() {
            continue;
        }
        match Middleware::build(info, stores, &|name| served(config, services, name)) {
            Ok(m) => {
                built.insert(name.clone(), Arc::new(m));
            }
            Err(e) => failed.push((name.clone(), keyed(info, e.0))),
        }
    }
    if failed.is_empty() {
        return;
    }
    let config = Arc::make_mut(config);
    for (name, why) in failed {
        let Some(info) = config.middlewares.get_mut(&name) else { continue };
        tracing::warn!(middleware = %name, routers = %info.used_by.join(", "), "middleware disabled: {why}");
        info.status = Status::Disabled;
        info.errors.push(why.clone());
        for router in info.used_by.clone() {
            disable_router(config, &router, format!("middleware `{name}` is disabled: {why}"));
        }
    }
}

/// `why` (from [`Middleware::build`]) as an error that names the middleware's key. Build errors
/// start with the whole key (`http.middlewares.auth.forwardAuth.tls.ca: …`), with the type's
/// (`errors.service: …`), or with neither.
fn keyed(info: &drover_providers::middlewares::MiddlewareInfo, why: String) -> String {
    if why.starts_with("http.middlewares.") {
        return why;
    }
    let local = info.name.split('@').next().unwrap_or(&info.name);
    let head = why.split(": ").next().unwrap_or("");
    let type_key = !head.contains(' ') && head.split('.').next().is_some_and(|t| t.eq_ignore_ascii_case(&info.kind));
    if type_key {
        format!("http.middlewares.{local}.{why}")
    } else {
        format!("http.middlewares.{local}: {why}")
    }
}

/// The compiled service `name`, or why there is none: a router's, or the one `errors` sends to.
/// A composite service whose child was disabled while compiling has none.
fn served(
    config: &RuntimeConfig,
    services: &HashMap<String, Arc<crate::snapshot::Service>>,
    name: &str,
) -> Result<Arc<crate::snapshot::Service>, String> {
    if let Some(service) = services.get(name) {
        return Ok(service.clone());
    }
    Err(match config.services.get(name) {
        None => format!("service `{name}` does not exist"),
        Some(info) if info.status == Status::Disabled => {
            format!("service `{name}` is disabled: {}", info.errors.join("; "))
        }
        Some(_) => format!("service `{name}` is not served: a service it is made of is disabled"),
    })
}

/// Disables router `name` for `why`, unless something disabled it already.
fn disable_router(config: &mut RuntimeConfig, name: &str, why: String) {
    if let Some(r) = config.routers.get_mut(name) {
        if r.status != Status::Disabled {
            tracing::warn!(router = %name, "router disabled: {why}");
            // Shared with the merge's cache: this router alone is copied.
            let r = Arc::make_mut(r);
            r.status = Status::Disabled;
            r.errors.push(why);
        }
    }
}

/// The compiled chain of middlewares `names` (written in `provider`'s configuration);
/// `None` when there are none. `built` keeps what this compilation already built.
fn chain(
    stores: &mut Stores,
    config: &RuntimeConfig,
    names: &[String],
    provider: &str,
    built: &mut HashMap<String, Arc<Middleware>>,
    services: &HashMap<String, Arc<crate::snapshot::Service>>,
) -> Result<Option<Arc<Chain>>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    let flat = drover_providers::middlewares::flatten(&config.middlewares, names, provider)?;
    let mut steps = Vec::with_capacity(flat.len());
    for name in &flat {
        let step = match built.get(name) {
            Some(step) => step.clone(),
            None => {
                // `build_middlewares` built every middleware a router runs; this is a bug path.
                let info = config
                    .middlewares
                    .get(name)
                    .ok_or_else(|| format!("middleware `{name}` does not exist"))?;
                let step = Middleware::build(info, stores, &|name| served(config, services, name))
                    .map(Arc::new)
                    .map_err(|e| format!("middleware `{name}` could not be compiled: {e}"))?;
                built.insert(name.clone(), step.clone());
                step
            }
        };
        steps.push(step);
    }
    Ok(Some(Arc::new(Chain::new(flat.iter().map(|n| n.as_str().into()).collect(), steps))))
}

/// The failover tiers of `servers`: one smooth weighted round robin per tier number that has a
/// server with a positive weight, lowest first. A tier whose members were a tier of `previous`
/// (the service's tiers in the last snapshot) goes on with its cursors where the cycle is the same.
fn tiers(servers: &[Server], previous: Option<&[Tier]>) -> Box<[Tier]> {
    let mut numbers: Vec<u32> = servers.iter().filter(|s| s.weight > 0).map(|s| s.tier).collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
        .into_iter()
        .map(|t| {
            let members: Box<[u32]> = (0..servers.len() as u32).filter(|i| servers[*i as usize].tier == t).collect();
            let weights: Vec<u32> = members.iter().map(|i| servers[*i as usize].weight).collect();
            let before = previous.and_then(|tiers| tiers.iter().find(|tier| tier.members == members));
            Tier {
                balancer: SmoothWeighted::continuing(&weights, before.map(|tier| &tier.balancer)),
                members,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use drover_providers::DynamicConfig;
    use tokio::time::Instant;

    use super::*;
    use crate::health::Outcome;
    use crate::routing::testing::Req;
    use crate::snapshot::Picked;

    fn fragments(generation: u64, text: &str) -> Fragments {
        let config = DynamicConfig::from_toml(text).expect("test config parses");
        Fragments {
            generation,
            fragments: vec![("file".into(), Arc::new(config))],
        }
    }

    const TWO_ROUTERS: &str = r#"
        [http.routers.a]
        rule = "Host(`a.test`)"
        service = "s"
        [http.routers.b]
        rule = "PathPrefix(`/b`)"
        service = "s"
        entryPoints = ["admin"]
        [[http.services.s.loadBalancer.servers]]
        url = "http://127.0.0.1:9001"
        [[http.services.s.loadBalancer.servers]]
        url = "http://127.0.0.1:9002"
        weight = 3
        tier = 1
    "#;

    #[test]
    fn a_reload_routes_by_entrypoint_and_builds_tiers() {
        let mut compiler = Compiler::new(vec!["web".into(), "admin".into()], Upstreams::new(Transport::default()));
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let snapshot = compiler.reload(&fragments(7, TWO_ROUTERS), &health, &metrics);
        assert_eq!(snapshot.config.generation, 7);
        let web = Req::get("a.test", "/b");
        assert_eq!(snapshot.entry_points[0].find(&web.view()).map(|r| &*r.router), Some("a@file"));
        let admin = Req::get("x.test", "/b/c");
        assert_eq!(snapshot.entry_points[1].find(&admin.view()).map(|r| &*r.router), Some("b@file"));
        assert!(snapshot.entry_points[0].find(&admin.view()).is_none(), "b is not on web");
        let service = &snapshot.services["s@file"];
        assert_eq!(service.tiers.len(), 2);
        let Picked::Server { server, .. } = service.pick(Default::default(), Instant::now()) else {
            panic!("a server is picked")
        };
        assert_eq!(&*server.url, "http://127.0.0.1:9001", "tier 0 is preferred");
        assert_eq!(compiler.rules.len(), 2);
    }

    /// The URL of the server `service` picks next.
    fn next_url(snapshot: &Snapshot, service: &str) -> String {
        let Picked::Server { server, .. } = snapshot.services[service].pick(Default::default(), Instant::now()) else {
            panic!("a server is picked")
        };
        server.url.to_string()
    }

    /// Reloads often, light traffic: a full reload that leaves a service's cycle as it was goes
    /// on where the last snapshot's balancer was, instead of giving the top of the cycle again.
    #[test]
    fn a_full_reload_continues_an_unchanged_cycle_and_restarts_a_changed_one() {
        const THREE: &str = r#"
            [http.routers.r]
            rule = "PathPrefix(`/`)"
            service = "s"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:9001"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:9002"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:9003"
        "#;
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let first = compiler.reload(&fragments(1, THREE), &health, &metrics);
        assert_eq!(next_url(&first, "s@file"), "http://127.0.0.1:9001");
        // Another service changes: not a router-only change, so the reload compiles everything.
        let other = format!("{THREE}\n[[http.services.t.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9100\"\n");
        let second = compiler.reload(&fragments(2, &other), &health, &metrics);
        assert!(!compiler.timings().patched);
        assert!(!Arc::ptr_eq(&first.services["s@file"], &second.services["s@file"]), "compiled anew");
        assert_eq!(next_url(&second, "s@file"), "http://127.0.0.1:9002", "the cycle goes on");
        // A forced full compile (certificate files changed) continues too.
        compiler.forget_last();
        let third = compiler.reload(&fragments(3, &other), &health, &metrics);
        assert_eq!(next_url(&third, "s@file"), "http://127.0.0.1:9003");
        // A new weight is a new cycle: it starts at its top.
        let weighted = other.replacen("url = \"http://127.0.0.1:9001\"", "url = \"http://127.0.0.1:9001\"\nweight = 2", 1);
        let fourth = compiler.reload(&fragments(4, &weighted), &health, &metrics);
        assert_eq!(next_url(&fourth, "s@file"), "http://127.0.0.1:9001");
        assert_eq!(next_url(&fourth, "s@file"), "http://127.0.0.1:9002");
    }

    const ACME_ROUTERS: &str = r#"
        [http.routers.named]
        rule = "Host(`a.test`) || Host(`b.test`)"
        service = "s"
        tls = { certResolver = "le" }
        [http.routers.domains]
        rule = "HostRegexp(`^.+[.]c[.]test$`)"
        service = "s"
        [http.routers.domains.tls]
        certResolver = "le"
        domains = [{ main = "c.test", sans = ["www.c.test"] }]
        [http.routers.regexp]
        rule = "HostRegexp(`^.+$`)"
        service = "s"
        tls = { certResolver = "le" }
        [http.routers.unknown]
        rule = "Host(`d.test`)"
        service = "s"
        tls = { certResolver = "nope" }
        [http.routers.wild]
        rule = "Host(`x.e.test`)"
        service = "s"
        [http.routers.wild.tls]
        certResolver = "le"
        domains = [{ main = "*.e.test" }]
        [[http.services.s.loadBalancer.servers]]
        url = "http://127.0.0.1:9001"
    "#;

    #[test]
    fn routers_with_a_resolver_ask_for_their_names_and_what_cannot_be_ordered_is_said() {
        let le: crate::acme::config::AcmeConfig = toml::from_str("httpChallenge = { entryPoint = \"web\" }").expect("parses");
        let acme = Arc::new(crate::acme::Acme::new([("le".to_string(), le)].into_iter().collect()));
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default())).with_acme(acme);
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let snapshot = compiler.reload(&fragments(1, ACME_ROUTERS), &health, &metrics);
        let wanted: Vec<(String, Vec<&str>)> = snapshot
            .tls
            .acme_wanted
            .iter()
            .map(|w| (w.resolver.clone(), w.domain.names().collect()))
            .collect();
        assert_eq!(
            wanted,
            vec![
                ("le".to_string(), vec!["a.test", "b.test"]),
                ("le".to_string(), vec!["c.test", "www.c.test"]),
            ]
        );
        let errors = |router: &str| {
            let info = &snapshot.config.routers[router];
            assert_eq!(info.status, drover_providers::runtime::Status::Warning, "{router} still serves");
            info.errors.join("; ")
        };
        assert!(errors("regexp@file").contains("nothing to order"), "{}", errors("regexp@file"));
        assert!(errors("unknown@file").contains("`nope` is not in the static configuration's certificatesResolvers (defined: le)"));
        assert!(errors("wild@file").contains("only be ordered through DNS-01"));
        assert!(snapshot.tls.acme.is_some(), "TLS-ALPN-01 answers reach the handshake");
    }

    #[test]
    fn an_entrypoints_resolver_applies_only_to_routers_on_that_entrypoint() {
        let le: crate::acme::config::AcmeConfig = toml::from_str("tlsChallenge = {}").expect("parses");
        let acme = Arc::new(crate::acme::Acme::new([("le".to_string(), le)].into_iter().collect()));
        let secure = RouterTls {
            cert_resolver: Some("le".into()),
            ..RouterTls::default()
        };
        let mut compiler = Compiler::new(vec!["web".into(), "secure".into()], Upstreams::new(Transport::default()))
            .with_entry_point_tls(vec![None, Some(secure)])
            .with_acme(acme);
        let routes = r#"
            [http.routers.onsecure]
            rule = "Host(`s.test`)"
            entryPoints = ["secure"]
            service = "s"
            [http.routers.onweb]
            rule = "Host(`w.test`)"
            entryPoints = ["web"]
            service = "s"
            tls = {}
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:9001"
        "#;
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let snapshot = compiler.reload(&fragments(1, routes), &health, &metrics);
        let mains: Vec<&str> = snapshot.tls.acme_wanted.iter().map(|w| w.domain.main.as_str()).collect();
        assert_eq!(
            mains,
            ["s.test"],
            "the web router has no resolver of its own or from its entrypoint"
        );
    }

    const TRANSPORTS: &str = r#"
        [http.serversTransports.one]
        maxIdleConnsPerHost = 5
        [http.serversTransports.two]
        maxIdleConnsPerHost = 7
        [http.routers.a]
        rule = "Path(`/a`)"
        service = "a"
        [http.services.a.loadBalancer]
        serversTransport = "one"
        [[http.services.a.loadBalancer.servers]]
        url = "https://127.0.0.1:9443"
        [http.services.b.loadBalancer]
        serversTransport = "two"
        [[http.services.b.loadBalancer.servers]]
        url = "https://127.0.0.1:9443"
        [[http.services.c.loadBalancer.servers]]
        url = "https://127.0.0.1:9443"
    "#;

    #[test]
    fn two_transports_to_one_address_never_share_a_pool_and_a_changed_transport_gets_a_new_one() {
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let first = compiler.reload(&fragments(1, TRANSPORTS), &health, &metrics);
        let upstream = |snapshot: &Snapshot, service: &str| snapshot.services[service].servers[0].upstream.clone();
        let (a, b, c) = (upstream(&first, "a@file"), upstream(&first, "b@file"), upstream(&first, "c@file"));
        assert!(!Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c) && !Arc::ptr_eq(&b, &c));
        assert_eq!(
            (a.transport().max_idle, b.transport().max_idle, c.transport().max_idle),
            (5, 7, 200)
        );
        assert_eq!(a.transport().name.as_deref(), Some("one@file"));

        let same = compiler.reload(&fragments(2, TRANSPORTS), &health, &metrics);
        assert!(Arc::ptr_eq(&a, &upstream(&same, "a@file")), "an unchanged transport keeps its pool");
        let changed = compiler.reload(&fragments(3, &TRANSPORTS.replace("= 5", "= 6")), &health, &metrics);
        let a2 = upstream(&changed, "a@file");
        assert!(!Arc::ptr_eq(&a, &a2), "a changed transport opens new connections");
        assert_eq!(a2.transport().max_idle, 6);
        assert!(Arc::ptr_eq(&b, &upstream(&changed, "b@file")));
    }

    #[test]
    fn routes_carry_their_entrypoints_chain_and_none_without_middlewares() {
        let routes = r#"
            [http.routers.a]
            rule = "Host(`a.test`)"
            service = "s"
            middlewares = ["strip"]
            [http.routers.b]
            rule = "Host(`x.test`)"
            service = "s"
            entryPoints = ["admin"]
            [http.middlewares.strip.stripPrefix]
            prefixes = ["/x"]
            [http.middlewares.base.addPrefix]
            prefix = "/b"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:9001"
        "#;
        let defaults = BTreeMap::from([("admin".to_string(), vec!["base".to_string()])]);
        let mut compiler =
            Compiler::new(vec!["web".into(), "admin".into()], Upstreams::new(Transport::default())).with_entry_point_middlewares(defaults);
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let snapshot = compiler.reload(&fragments(1, routes), &health, &metrics);
        let names = |ep: usize, req: &Req| -> Option<Vec<String>> {
            let route = snapshot.entry_points[ep].find(&req.view()).expect("routed");
            route
                .middlewares
                .as_ref()
                .map(|c| c.names().iter().map(|n| n.to_string()).collect())
        };
        assert_eq!(names(0, &Req::get("a.test", "/")), Some(vec!["strip@file".to_string()]));
        assert_eq!(
            names(1, &Req::get("a.test", "/")),
            Some(vec!["base@file".to_string(), "strip@file".to_string()]),
            "the entrypoint's defaults run first"
        );
        assert_eq!(names(1, &Req::get("x.test", "/")), Some(vec!["base@file".to_string()]));
        let plain = Compiler::new(vec!["web".into(), "admin".into()], Upstreams::new(Transport::default())).reload(
            &fragments(1, TWO_ROUTERS),
            &health,
            &metrics,
        );
        let route = plain.entry_points[0].find(&Req::get("a.test", "/").view()).expect("routed");
        assert!(route.middlewares.is_none(), "no middlewares, no chain");
    }

    /// An `errors` middleware whose service is disabled only when compiled (its servers
    /// transport's CA file is missing), run directly, through a chain and as an entrypoint
    /// default.
    const PAGES_WITHOUT_CA: &str = r#"
        [http.routers.direct]
        rule = "Host(`d.test`)"
        service = "s"
        middlewares = ["pages"]
        [http.routers.chained]
        rule = "Host(`c.test`)"
        service = "s"
        middlewares = ["guard"]
        entryPoints = ["web"]
        [http.routers.plain]
        rule = "Host(`p.test`)"
        service = "s"
        entryPoints = ["web"]
        [http.routers.behind]
        rule = "Host(`b.test`)"
        service = "s"
        entryPoints = ["admin"]
        [http.middlewares.guard.chain]
        middlewares = ["strip", "pages"]
        [http.middlewares.strip.stripPrefix]
        prefixes = ["/x"]
        [http.middlewares.pages.errors]
        status = ["500-599"]
        service = "pages"
        [http.services.pages.loadBalancer]
        serversTransport = "pagesTls"
        [[http.services.pages.loadBalancer.servers]]
        url = "https://127.0.0.1:9443"
        [http.serversTransports.pagesTls]
        rootCAs = ["/nonexistent/drover-test/ca.pem"]
        [[http.services.s.loadBalancer.servers]]
        url = "http://127.0.0.1:9001"
    "#;

    #[test]
    fn a_middleware_that_fails_to_compile_is_disabled_with_every_router_that_runs_it() {
        let defaults = BTreeMap::from([("admin".to_string(), vec!["guard".to_string()])]);
        let mut compiler =
            Compiler::new(vec!["web".into(), "admin".into()], Upstreams::new(Transport::default())).with_entry_point_middlewares(defaults);
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let snapshot = compiler.reload(&fragments(1, PAGES_WITHOUT_CA), &health, &metrics);
        let pages = &snapshot.config.middlewares["pages@file"];
        assert_eq!(pages.status, Status::Disabled);
        let why = pages.errors.join("; ");
        assert!(
            why.starts_with("http.middlewares.pages.errors.service: service `pages@file` is disabled: the servers transport `pagesTls@file` is disabled: ")
                && why.contains("/nonexistent/drover-test/ca.pem"),
            "{why}"
        );
        for router in ["direct@file", "chained@file", "behind@file"] {
            let info = &snapshot.config.routers[router];
            assert_eq!(info.status, Status::Disabled, "{router}");
            assert!(
                info.errors
                    .iter()
                    .any(|e| e.starts_with("middleware `pages@file` is disabled: http.middlewares.pages.errors.service: ")),
                "{router}: {:?}",
                info.errors
            );
        }
        for (ep, host) in [(0, "d.test"), (1, "d.test"), (0, "c.test"), (1, "b.test")] {
            assert!(
                snapshot.entry_points[ep].find(&Req::get(host, "/").view()).is_none(),
                "{host} on {ep}"
            );
        }
        assert_eq!(snapshot.config.routers["plain@file"].status, Status::Enabled);
        let plain = snapshot.entry_points[0].find(&Req::get("p.test", "/").view());
        assert_eq!(plain.map(|r| &*r.router), Some("plain@file"), "the others keep serving");
        assert_eq!(snapshot.config.middlewares["strip@file"].status, Status::Enabled);

        let fixed = PAGES_WITHOUT_CA.replace("rootCAs = [\"/nonexistent/drover-test/ca.pem\"]", "");
        let snapshot = compiler.reload(&fragments(2, &fixed), &health, &metrics);
        assert_eq!(snapshot.config.middlewares["pages@file"].status, Status::Enabled);
        for (ep, host, router) in [
            (0, "d.test", "direct@file"),
            (0, "c.test", "chained@file"),
            (1, "b.test", "behind@file"),
        ] {
            assert_eq!(snapshot.config.routers[router].status, Status::Enabled, "{router}");
            let found = snapshot.entry_points[ep].find(&Req::get(host, "/").view());
            assert_eq!(found.map(|r| &*r.router), Some(router));
        }
    }

    #[test]
    fn a_composite_whose_child_is_disabled_while_compiling_is_shown_disabled_with_its_router() {
        let routes = r#"
            [http.routers.split]
            rule = "Host(`w.test`)"
            service = "w"
            [http.routers.plain]
            rule = "Host(`p.test`)"
            service = "a"
            [[http.services.w.weighted.services]]
            name = "a"
            [[http.services.w.weighted.services]]
            name = "b"
            [[http.services.a.loadBalancer.servers]]
            url = "http://127.0.0.1:9001"
            [http.services.b.loadBalancer]
            serversTransport = "noCa"
            [[http.services.b.loadBalancer.servers]]
            url = "https://127.0.0.1:9443"
            [http.serversTransports.noCa]
            rootCAs = ["/nonexistent/drover-test/ca.pem"]
        "#;
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let snapshot = compiler.reload(&fragments(1, routes), &health, &metrics);
        let w = &snapshot.config.services["w@file"];
        assert_eq!(w.status, Status::Disabled);
        assert_eq!(w.errors, ["http.services.w.weighted.services[1]: the service `b@file` is disabled"]);
        let split = &snapshot.config.routers["split@file"];
        assert_eq!(split.status, Status::Disabled);
        assert!(
            split.errors[0].starts_with("service `w@file` is disabled: http.services.w."),
            "{:?}",
            split.errors
        );
        assert!(snapshot.entry_points[0].find(&Req::get("w.test", "/").view()).is_none());
        let plain = snapshot.entry_points[0].find(&Req::get("p.test", "/").view());
        assert_eq!(plain.map(|r| &*r.router), Some("plain@file"));
    }

    #[test]
    fn build_errors_are_given_the_middlewares_key() {
        let config = DynamicConfig::from_toml("[http.middlewares.zip.compress]\n").expect("parses");
        let info = drover_providers::middlewares::validate("zip", "file", &config.http.middlewares["zip"]);
        assert_eq!(
            keyed(&info, "compress.encodings: `lz4` is not one of gzip, br, zstd".into()),
            "http.middlewares.zip.compress.encodings: `lz4` is not one of gzip, br, zstd"
        );
        assert_eq!(keyed(&info, "`x`: bad".into()), "http.middlewares.zip: `x`: bad");
        let whole = "http.middlewares.zip.compress: as is".to_string();
        assert_eq!(keyed(&info, whole.clone()), whole);
    }

    #[test]
    fn a_reload_keeps_pools_and_health_and_forgets_what_is_gone() {
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let first = compiler.reload(&fragments(1, TWO_ROUTERS), &health, &metrics);
        let service = &first.services["s@file"];
        let policy = service.health.passive.clone();
        for _ in 0..policy.consecutive_local_failures.max(1) {
            service.record(0, Outcome::LocalFailure, false, Instant::now());
        }
        assert!(service.servers[0].health.is_out(), "the test ejects server 0");

        // The same service in a changed configuration: the same pool, still ejected.
        let changed = TWO_ROUTERS.replace("PathPrefix(`/b`)", "PathPrefix(`/c`)");
        let second = compiler.reload(&fragments(2, &changed), &health, &metrics);
        let again = &second.services["s@file"];
        assert!(Arc::ptr_eq(&service.servers[0].upstream, &again.servers[0].upstream));
        assert!(again.servers[0].health.is_out(), "a reload must not readmit an ejected server");
        assert_eq!(compiler.rules.len(), 2, "the old rule text was forgotten, the new one kept");
        drop((first, second));

        // Nothing uses the servers any more: their upstreams are dropped from the registry.
        let _third = compiler.reload(&fragments(3, ""), &health, &metrics);
        assert!(compiler.upstreams.all().is_empty());
        assert!(compiler.rules.is_empty());
    }
}
