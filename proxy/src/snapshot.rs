//! The snapshot: everything a request needs, compiled from one runtime configuration and
//! published through one `ArcSwap`, so no request can ever see half of a change.
//!
//! Compiling resolves each server to its long-lived [`Upstream`] (pool and, later, health) from
//! the registry, so the snapshot itself is cheap to throw away: a new one is built on every
//! change and in-flight requests finish on the one they started with.

use std::collections::HashMap;
use std::sync::Arc;

use drover_providers::runtime::{RuntimeConfig, Status};

use crate::balance::SmoothWeighted;
use crate::routing::{CompiledRule, RouteEntry, RouteTable};
use crate::upstream::{Upstream, Upstreams};

/// An immutable routing state.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration it was compiled from.
    pub config: Arc<RuntimeConfig>,
    /// Route tables, indexed like the static entrypoints.
    pub entry_points: Vec<RouteTable<Arc<Route>>>,
    /// Services by qualified name.
    pub services: HashMap<String, Arc<Service>>,
}

/// A matched router: where its requests go.
#[derive(Debug)]
pub struct Route {
    /// Qualified router name.
    pub router: Arc<str>,
    /// Its service.
    pub service: Arc<Service>,
}

/// A load-balanced service.
#[derive(Debug)]
pub struct Service {
    /// Qualified service name.
    pub name: Arc<str>,
    /// Its servers, in configuration order.
    pub servers: Box<[Server]>,
    /// Smooth weighted round robin over `servers`.
    pub balancer: SmoothWeighted,
    /// Send the client's Host header (true) or the server's authority.
    pub pass_host_header: bool,
}

/// One server of a service.
#[derive(Debug)]
pub struct Server {
    /// The URL as configured.
    pub url: Arc<str>,
    /// Its weight.
    pub weight: u32,
    /// The connection pool of its address.
    pub upstream: Arc<Upstream>,
}

impl Service {
    /// The next server by smooth weighted round robin.
    pub fn pick(&self) -> Option<&Server> {
        self.balancer.pick(|_| true).map(|i| &self.servers[i])
    }
}

/// Compiled rules by source text, kept across compilations so a reload compiles (and builds
/// regexes for) only the rules that changed.
#[derive(Debug, Default)]
pub struct CompiledRules {
    compiled: HashMap<String, CompiledRule>,
}

impl Snapshot {
    /// A snapshot that routes nothing (before the first configuration arrives).
    pub fn empty(entry_points: usize) -> Self {
        Self {
            config: Arc::new(RuntimeConfig::default()),
            entry_points: (0..entry_points).map(|_| RouteTable::build(Vec::new())).collect(),
            services: HashMap::new(),
        }
    }

    /// Compiles `config` for the static entrypoints `entry_points` (by name, in index order).
    pub fn compile(config: Arc<RuntimeConfig>, entry_points: &[String], upstreams: &Upstreams) -> Self {
        Self::compile_cached(config, entry_points, upstreams, &mut CompiledRules::default())
    }

    /// [`Snapshot::compile`], reusing compiled rules from `cache` and leaving only the ones in
    /// use in it.
    pub fn compile_cached(config: Arc<RuntimeConfig>, entry_points: &[String], upstreams: &Upstreams, cache: &mut CompiledRules) -> Self {
        let mut compiled_rules = HashMap::with_capacity(cache.compiled.len());
        let mut services = HashMap::new();
        for (name, info) in &config.services {
            if info.status == Status::Disabled {
                continue;
            }
            let servers: Box<[Server]> = info
                .servers
                .iter()
                .map(|spec| Server {
                    url: spec.url.as_str().into(),
                    weight: spec.weight,
                    upstream: upstreams.get(&spec.authority),
                })
                .collect();
            let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
            let service = Service {
                name: name.as_str().into(),
                balancer: SmoothWeighted::new(&weights),
                servers,
                pass_host_header: info.pass_host_header,
            };
            services.insert(name.clone(), Arc::new(service));
        }
        let mut tables: Vec<Vec<RouteEntry<Arc<Route>>>> = entry_points.iter().map(|_| Vec::new()).collect();
        for (name, info) in &config.routers {
            if info.status == Status::Disabled {
                continue;
            }
            let (Some(rule), Some(service)) = (&info.parsed, services.get(&info.service)) else {
                continue;
            };
            let cached = cache
                .compiled
                .remove(&info.rule)
                .or_else(|| compiled_rules.get(&info.rule).cloned());
            let compiled = match cached.map_or_else(|| CompiledRule::compile(rule), Ok) {
                Ok(c) => c,
                Err(e) => {
                    // The providers crate validated the rule; reaching this is a bug worth a log line.
                    tracing::error!(router = %name, "rule failed to compile: {e}");
                    continue;
                }
            };
            compiled_rules.insert(info.rule.clone(), compiled.clone());
            let route = Arc::new(Route {
                router: name.as_str().into(),
                service: service.clone(),
            });
            for (i, ep) in entry_points.iter().enumerate() {
                if info.using.contains(ep) {
                    tables[i].push(RouteEntry {
                        name: name.clone(),
                        priority: info.priority,
                        rule: compiled.clone(),
                        hosts: rule.required_hosts(),
                        payload: route.clone(),
                    });
                }
            }
        }
        let snapshot = Self {
            config,
            entry_points: tables.into_iter().map(RouteTable::build).collect(),
            services,
        };
        upstreams.retain_used();
        cache.compiled = compiled_rules;
        snapshot
    }
}
