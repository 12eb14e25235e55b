//! Starting and stopping drover: listeners, worker threads, the control plane.
//!
//! Threads: one *control* thread runs providers, the aggregator, the reload loop and the admin
//! side on its own runtime, and compilations on a blocking thread beside it ([`reload`]);
//! `workers` threads each run a single-threaded runtime for traffic. The two sides meet only at
//! the `ArcSwap<Snapshot>` in [`Shared`]: the control plane stores, the data plane loads.
//!
//! Listening sockets are bound here, or taken over from a running drover ([`upgrade`]): either
//! way nothing accepts before the first configuration is in force, so a connection made during
//! start-up waits in the backlog instead of being answered 404 for want of routes.

mod admission;
mod handover;
pub(crate) mod handshake;
mod listener;
mod parking;
pub mod providers;
mod reload;
pub mod systemd;
pub mod timeouts;
pub mod upgrade;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use drover_providers::aggregate::{Aggregator, Fragments};
use drover_providers::ProviderStatus;
use tokio::sync::watch;

use crate::admin;
use crate::compile::Compiler;
use crate::config::Resolved;
use crate::connection::{EntryPointRules, Limits, Shared};
use crate::health::HealthRegistry;
use crate::snapshot::Snapshot;
use crate::upstream::Upstreams;

/// A running drover.
pub struct Drover {
    entry_points: Vec<(String, SocketAddr)>,
    udp_entry_points: Vec<(String, SocketAddr)>,
    api: SocketAddr,
    shared: Arc<Shared>,
    statuses: watch::Receiver<Vec<ProviderStatus>>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    handed_over: watch::Receiver<Option<u32>>,
    upgrade_socket: Option<upgrade::Cleanup>,
}

/// The redirect of entrypoint `ep` (`http.redirections.entryPoint`), to the port its target
/// entrypoint is bound to.
fn redirect(ep: &crate::config::EntryPoint, bound: &[(String, SocketAddr)]) -> Option<Arc<crate::connection::Redirect>> {
    let r = ep.http.redirections.as_ref()?.entry_point.as_ref()?;
    let port = bound.iter().find(|(n, _)| n == r.to.get_ref()).map(|(_, a)| a.port())?;
    let scheme = http::uri::Scheme::try_from(r.scheme.as_str()).ok()?;
    let default = if scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
    Some(Arc::new(crate::connection::Redirect {
        scheme,
        port: (port != default).then_some(port),
        permanent: r.permanent,
    }))
}

impl Drover {
    /// Binds every listener, then starts the control thread and `workers` worker threads.
    /// Fails (before serving anything) when a listener cannot be bound.
    pub fn start(resolved: Resolved, workers: usize) -> io::Result<Self> {
        Self::start_with(resolved, workers, None)
    }

    /// Like [`Drover::start`], reusing the listening sockets `takeover` received from a running
    /// drover where name and address match (binding the others), and telling that drover once
    /// this one is ready to serve.
    pub fn start_with(resolved: Resolved, workers: usize, mut takeover: Option<upgrade::Takeover>) -> io::Result<Self> {
        let config = resolved.config;
        let workers = workers.max(1);
        crate::balance::round_robin::set_workers(workers);
        let mut sockets = Vec::new();
        let mut entry_points = Vec::new();
        let mut offer = upgrade::Offer::new();
        for (name, addr) in &resolved.entry_points {
            let inherited = takeover.as_mut().and_then(|t| t.take(handover::Role::EntryPoint, name, *addr));
            let listener = match inherited {
                Some(listener) => listener,
                None => listener::bind(*addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("entrypoint `{name}` cannot listen on {addr}: {e}")))?,
            };
            let address = listener.local_addr()?;
            entry_points.push((name.clone(), address));
            offer.push((
                handover::Described {
                    role: handover::Role::EntryPoint,
                    name: name.clone(),
                    address,
                },
                listener.try_clone()?,
            ));
            sockets.push(listener);
        }
        let api_listener = match takeover.as_mut().and_then(|t| t.take(handover::Role::Api, "api", resolved.api)) {
            Some(listener) => listener,
            None => listener::bind(resolved.api)
                .map_err(|e| io::Error::new(e.kind(), format!("the admin side cannot listen on {}: {e}", resolved.api)))?,
        };
        let api = api_listener.local_addr()?;
        offer.push((
            handover::Described {
                role: handover::Role::Api,
                name: "api".into(),
                address: api,
            },
            api_listener.try_clone()?,
        ));
        if let Some(takeover) = &takeover {
            for unused in takeover.unused() {
                tracing::info!(
                    "not reusing the running drover's {} `{}` on {}: this configuration does not have it there",
                    if unused.role == handover::Role::Api {
                        "admin side"
                    } else {
                        "entrypoint"
                    },
                    unused.name,
                    unused.address
                );
            }
        }
        let upgrade_socket = match &config.upgrade.socket {
            Some(path) => Some(upgrade::UpgradeSocket::bind(path)?),
            None => None,
        };
        let predecessor = takeover.map(|t| (t.pid(), t.into_stream()));

        let mut udp_sockets = Vec::new();
        for (name, addr) in &resolved.udp_entry_points {
            let socket = std::net::UdpSocket::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("UDP entrypoint `{name}` cannot listen on {addr}: {e}")))?;
            socket.set_nonblocking(true)?;
            udp_sockets.push((name.clone(), socket));
        }
        let udp_addresses: Vec<(String, SocketAddr)> = udp_sockets
            .iter()
            .map(|(n, s)| Ok((n.clone(), s.local_addr()?)))
            .collect::<io::Result<_>>()?;
        let names: Vec<String> = entry_points.iter().map(|(n, _)| n.clone()).collect();
        let timeouts = &config.servers_transport.forwarding_timeouts;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty(names.len())),
            response_header_timeout: Some(timeouts.response_header_timeout.0).filter(|d| !d.is_zero()),
            body_idle_timeout: Some(timeouts.body_idle_timeout.0).filter(|d| !d.is_zero()),
            health: HealthRegistry::default(),
            metrics: crate::metrics::Metrics::default(),
            shutdown: shutdown_rx.clone(),
            access_log: match &config.access_log {
                Some(c) => Some(crate::access_log::AccessLog::start(c)?),
                None => None,
            },
        });
        let open_connections = shared.metrics.set_entry_points(&names);
        let (transport, tls_defaults) = crate::upstream::transports::from_static(&config.servers_transport, workers)
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        let upstreams = Upstreams::with_tls_defaults(transport, tls_defaults);
        // Workers accept once the first configuration is in force: until then connections wait
        // in the listen backlog instead of being answered 404 for want of routes.
        let (in_force, in_force_rx) = watch::channel(0u64);

        let mut aggregator = Aggregator::new(config.providers.providers_throttle_duration.0);
        let providers: Vec<_> = providers::configured(&config.providers)
            .into_iter()
            .map(|provider| (aggregator.provider(provider.name), provider))
            .collect();
        let provider_names: Vec<&str> = providers.iter().map(|(_, p)| p.name).collect();
        let statuses = aggregator.statuses();
        tracing::info!(
            entrypoints = %entry_points.iter().map(|(n, a)| format!("{n}={a}")).collect::<Vec<_>>().join(" "),
            admin = %api,
            taken_over_from = %predecessor.as_ref().map_or("none".to_string(), |(pid, _)| format!("pid {pid}")),
            workers,
            tls = crate::tls::provider::NAME,
            providers = %if provider_names.is_empty() { "none".to_string() } else { provider_names.join(", ") },
            "drover listening"
        );
        let compiler = Compiler::new(names, upstreams)
            .with_udp_entry_points(udp_sockets.iter().map(|(n, _)| n.clone()).collect())
            .with_entry_point_tls(entry_points.iter().map(|(n, _)| config.entry_points[n].http.tls.clone()).collect())
            .with_entry_point_middlewares(
                config
                    .entry_points
                    .iter()
                    .map(|(name, ep)| (name.clone(), ep.http.middlewares.clone()))
                    .collect(),
            );

        let acme = Arc::new(crate::acme::Acme::new(
            config
                .certificates_resolvers
                .iter()
                .map(|(name, r)| (name.clone(), r.acme.clone()))
                .collect(),
        ));
        let compiler = compiler.with_acme(acme.clone());
        let (acme_changed, acme_changes) = watch::channel(0u64);

        let admin_info = admin::Info::new(&config, &entry_points);
        let (handed_over_tx, handed_over) = watch::channel(None);
        let cleanup = upgrade_socket.as_ref().map(upgrade::UpgradeSocket::cleanup);
        let mut threads = Vec::new();
        {
            let shared = shared.clone();
            let acme = acme.clone();
            let mut shutdown = shutdown_rx.clone();
            let statuses = statuses.clone();
            let in_force_rx = in_force_rx.clone();
            let mut admin_gate = in_force_rx.clone();
            let taking_over = predecessor.is_some();
            let control = move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the control runtime starts");
                runtime.block_on(async move {
                    for (handle, provider) in providers {
                        tokio::spawn((provider.start)(handle));
                    }
                    let (fragments_tx, fragments_rx) = watch::channel(Fragments::default());
                    tokio::spawn(aggregator.run(move |fragments| {
                        fragments_tx.send_replace(fragments);
                    }));
                    tokio::spawn(reload::run(fragments_rx, compiler, shared.clone(), in_force, acme_changes));
                    if !acme.resolvers.is_empty() {
                        tokio::spawn(crate::acme::manager::run(
                            acme.clone(),
                            shared.clone(),
                            in_force_rx.clone(),
                            acme_changed,
                        ));
                    }
                    let mut ready_gate = in_force_rx.clone();
                    let mut stop = shutdown.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = ready_gate.wait_for(|generation| *generation >= 1) => {}
                            _ = stop.wait_for(|stop| *stop) => return,
                        }
                        // systemd first: it must follow this process before the old one exits.
                        systemd::ready();
                        if let Some(socket) = upgrade_socket {
                            let predecessor = predecessor.map(|(_, stream)| stream);
                            upgrade::run(socket, predecessor, offer, in_force_rx, handed_over_tx, stop).await;
                        }
                    });
                    let admin = admin::serve(api_listener, admin::State::new(shared, statuses, admin_info), shutdown.clone());
                    let mut stop = shutdown.clone();
                    tokio::spawn(async move {
                        // A successor shares the admin socket with the drover it replaces: it
                        // answers there once it is ready, as on its entrypoints. A fresh start
                        // answers at once (`/ping`, provider statuses while it starts).
                        if taking_over {
                            tokio::select! {
                                _ = admin_gate.wait_for(|generation| *generation >= 1) => {}
                                _ = stop.wait_for(|stop| *stop) => return,
                            }
                        }
                        admin.await
                    });
                    let _ = shutdown.wait_for(|stop| *stop).await;
                });
            };
            threads.push(std::thread::Builder::new().name("drover-control".into()).spawn(control)?);
        }
        if !udp_sockets.is_empty() {
            let shared = shared.clone();
            let shutdown = shutdown_rx.clone();
            let mut in_force = in_force_rx.clone();
            let timeouts: Vec<Duration> = udp_sockets.iter().map(|(n, _)| config.entry_points[n].udp.timeout.0).collect();
            let thread = std::thread::Builder::new().name("drover-udp".into()).spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the UDP runtime starts");
                runtime.block_on(async move {
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        _ = in_force.wait_for(|generation| *generation >= 1) => {}
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                    let mut serving = Vec::new();
                    for (index, ((name, socket), timeout)) in udp_sockets.into_iter().zip(timeouts).enumerate() {
                        match tokio::net::UdpSocket::from_std(socket) {
                            Ok(socket) => serving.push(crate::l4::udp::run(socket, index, shared.clone(), timeout, shutdown.clone())),
                            Err(e) => tracing::error!(entrypoint = %name, "cannot use UDP socket: {e}"),
                        }
                    }
                    futures_util::future::join_all(serving).await;
                });
            })?;
            threads.push(thread);
        }
        let admissions: Vec<Arc<admission::Admission>> = entry_points
            .iter()
            .map(|(name, _)| {
                let max = config.entry_points[name].transport.max_connections;
                Arc::new(admission::Admission::new(name.as_str().into(), max))
            })
            .collect();
        for w in 0..workers {
            let mut worker_sockets = Vec::new();
            for (index, listener) in sockets.iter().enumerate() {
                let ep = &config.entry_points[&entry_points[index].0];
                worker_sockets.push(worker::EntryPointSocket {
                    rules: EntryPointRules {
                        index,
                        name: entry_points[index].0.as_str().into(),
                        observe: ep.observability.observe(),
                        path_policy: ep.http.path_policy(),
                        trusted: Arc::new(ep.forwarded_headers.trusted()),
                        open_connections: open_connections[index].clone(),
                        tunnel_idle: Some(ep.transport.responding_timeouts.idle_timeout.0).filter(|d| !d.is_zero()),
                        read_timeout: Some(ep.transport.responding_timeouts.read_timeout.0).filter(|d| !d.is_zero()),
                        write_timeout: Some(ep.transport.responding_timeouts.write_timeout.0).filter(|d| !d.is_zero()),
                        redirect: redirect(ep, &entry_points),
                        acme_http01: acme
                            .http_entry_points
                            .contains(&entry_points[index].0)
                            .then(|| acme.challenges.clone()),
                        l4: crate::l4::dispatch::L4Rules {
                            proxy_protocol: ep.proxy_protocol.as_ref().map(|p| Arc::new(p.trusted())),
                            tcp_idle: Some(ep.tcp.idle_timeout.0).filter(|d| !d.is_zero()),
                            splice: ep.tcp.splice,
                        },
                    },
                    listener: listener.try_clone()?,
                    limits: Limits::new(
                        ep.transport.responding_timeouts.header_read_timeout.0,
                        ep.transport.responding_timeouts.idle_timeout.0,
                    )
                    .with_write_stall(Some(timeouts.body_idle_timeout.0)),
                    grace: ep.transport.life_cycle.grace_time_out.0,
                    admission: admissions[index].clone(),
                });
            }
            let shared = shared.clone();
            let shutdown = shutdown_rx.clone();
            let in_force = in_force_rx.clone();
            let thread = std::thread::Builder::new().name(format!("drover-worker-{w}")).spawn(move || {
                crate::upstream::enter_worker(w);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime starts");
                runtime.block_on(worker::run(worker_sockets, shared, in_force, shutdown));
            })?;
            threads.push(thread);
        }
        Ok(Self {
            entry_points,
            udp_entry_points: udp_addresses,
            api,
            shared,
            statuses,
            shutdown,
            threads,
            handed_over,
            upgrade_socket: cleanup,
        })
    }

    /// Resolves with the successor's pid once a new drover took the listening sockets over and
    /// is ready; never without an upgrade socket. Then this one should [`Drover::shutdown`].
    pub async fn handed_over(&self) -> u32 {
        let mut handed_over = self.handed_over.clone();
        let pid = match handed_over.wait_for(Option::is_some).await {
            Ok(pid) => pid.unwrap_or_default(),
            Err(_) => std::future::pending().await,
        };
        pid
    }

    /// The bound address of each entrypoint, by name.
    pub fn entry_points(&self) -> &[(String, SocketAddr)] {
        &self.entry_points
    }

    /// The bound address of entrypoint `name`.
    pub fn entry_point(&self, name: &str) -> Option<SocketAddr> {
        self.entry_points.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// The bound address of UDP entrypoint `name`.
    pub fn udp_entry_point(&self, name: &str) -> Option<SocketAddr> {
        self.udp_entry_points.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// The admin side's address.
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// The generation of the configuration in force (0 before the first one).
    pub fn generation(&self) -> u64 {
        self.shared.snapshot.load().config.generation
    }

    /// The Prometheus exposition, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        crate::metrics::encode(&self.shared.metrics, &self.shared.snapshot.load(), &self.statuses.borrow())
    }

    /// Every provider's status.
    pub fn provider_statuses(&self) -> Vec<ProviderStatus> {
        self.statuses.borrow().clone()
    }

    /// Stops accepting and lets in-flight requests finish (within each entrypoint's grace period).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until every thread has finished (after [`Drover::shutdown`]).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(socket) = &self.upgrade_socket {
            socket.finish(self.handed_over.borrow().is_some());
        }
        // Every request has ended: the last access-log lines go out before the process does.
        if let Some(log) = &self.shared.access_log {
            log.finish(Duration::from_secs(2));
        }
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
