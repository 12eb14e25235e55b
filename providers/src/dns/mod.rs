//! The DNS provider: services discovered through SRV records (RFC 2782) or A/AAAA records.
//!
//! DNS is the oldest form of service discovery and still the most widely deployed: Consul's DNS
//! interface, Mesos-DNS, CoreDNS/SkyDNS, BIND with `nsupdate` registrations, and Docker's
//! embedded DNS (`tasks.<service>`). Each configured service becomes `<name>@dns`, usable from
//! any provider's routers, and optionally gets a router of its own.
//!
//! Rooms:
//! * [`config`]: `[providers.dns]` and its validation;
//! * [`client`]: asking nameservers, and sorting outcomes into answers, authoritative
//!   "nothing here" (NXDOMAIN/NODATA) and transient failures (SERVFAIL, REFUSED, timeouts);
//! * [`translate`]: RFC 2782 semantics mapped onto one load balancer (priority → failover tier,
//!   weight → balancer weight);
//! * [`watch`]: one task per service that re-asks exactly when a TTL runs out (clamped), keeps
//!   the last good answer through failures and backs off.
//!
//! This file joins them: it starts the per-service tasks, waits (briefly) for every service's
//! first answer so the first fragment is complete, then sends a new full fragment whenever a
//! service's servers or reports change, and nothing when they do not. Transient failures are
//! also reported as the provider's error, so the admin side shows them next to the item that
//! explains which servers are being kept.

pub mod client;
pub mod config;
pub mod translate;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::ProviderError;
use crate::model::{DynamicConfig, LoadBalancer, Router, Service};
use crate::provider::{ItemReport, Provider, ProviderHandle};

pub use client::{Dns, DnsClient};
pub use config::{DnsConfig, DnsService};

use config::Validated;
use watch::{ServiceState, ServiceView, Timing};

/// How many services may be querying at the same moment.
const CONCURRENT_LOOKUPS: usize = 16;

/// How long to wait before retrying when the resolver itself cannot be set up (for example an
/// unreadable `/etc/resolv.conf`).
const SETUP_RETRY: Duration = Duration::from_secs(10);

/// The DNS provider, ready to run.
#[derive(Clone, Debug)]
pub struct DnsProvider {
    config: Validated,
}

impl Provider for DnsProvider {
    const NAME: &'static str = "dns";
    type Config = DnsConfig;

    /// Validates `config` (see [`DnsConfig::validate`]).
    fn new(config: &DnsConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            config: config.validate().map_err(Self::refuse)?,
        })
    }

    /// Watches every configured service, asking the configured nameservers (or the system's),
    /// until the aggregator goes away.
    async fn run(self, handle: ProviderHandle) {
        let client = loop {
            match DnsClient::new(&self.config.nameservers, self.config.timeout) {
                Ok(client) => break client,
                Err(e) => {
                    let retry = format!("retrying in {}", humantime::format_duration(SETUP_RETRY));
                    if !handle.report_error(&ProviderError::unreachable(e).note(retry)) {
                        return;
                    }
                    tokio::time::sleep(SETUP_RETRY).await;
                }
            }
        };
        self.run_with(Arc::new(client), handle).await;
    }
}

impl DnsProvider {
    /// [`Provider::run`] with any [`Dns`] implementation.
    pub async fn run_with<D: Dns>(self, dns: Arc<D>, handle: ProviderHandle) {
        let provider = handle.name().to_string();
        let timing = Timing {
            min_ttl: self.config.min_ttl,
            max_ttl: self.config.max_ttl,
            jitter: true,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(CONCURRENT_LOOKUPS));
        // Dropping the set (when this future is dropped) stops every service's task.
        let mut tasks = JoinSet::new();
        for (index, spec) in self.config.services.iter().enumerate() {
            tasks.spawn(watch::watch(
                ServiceState::new(spec.clone(), timing),
                dns.clone(),
                provider.clone(),
                index,
                tx.clone(),
                permits.clone(),
            ));
        }
        drop(tx);
        let mut views: Vec<ServiceView> = vec![ServiceView::default(); self.config.services.len()];
        // The first fragment waits for every service's first outcome (a nameserver that does not
        // answer at all takes up to two attempts), so that it is complete rather than one of many.
        let first_deadline = Instant::now() + self.config.timeout * 3;
        let mut started = false;
        let mut last_sent: Option<(DynamicConfig, Vec<ItemReport>)> = None;
        loop {
            let received = if started {
                rx.recv().await
            } else {
                match tokio::time::timeout_at(first_deadline, rx.recv()).await {
                    Ok(received) => received,
                    // Send what is known; the stragglers follow when they answer.
                    Err(_elapsed) => {
                        started = true;
                        Some((usize::MAX, ServiceView::default()))
                    }
                }
            };
            let Some((index, view)) = received else { return };
            let mut store = |index: usize, view: ServiceView| {
                if let Some(slot) = views.get_mut(index) {
                    *slot = view;
                }
            };
            store(index, view);
            while let Ok((index, view)) = rx.try_recv() {
                store(index, view);
            }
            if !started {
                if !views.iter().all(|v| v.answered) {
                    continue;
                }
                started = true;
            }
            let (config, items) = self.fragment(&provider, &views);
            if last_sent.as_ref() != Some(&(config.clone(), items.clone())) {
                if !handle.send_config_with_items(config.clone(), items.clone()) {
                    return;
                }
                last_sent = Some((config, items));
                let errors: Vec<&str> = views.iter().flat_map(|v| v.errors.iter().map(String::as_str)).collect();
                if !errors.is_empty() && !handle.report_error(&ProviderError::unreachable(errors.join("; "))) {
                    return;
                }
            }
        }
    }

    /// The full fragment for the current views: every service (empty ones too, so routers that
    /// use them answer 503 rather than 404), and the configured routers.
    fn fragment(&self, provider: &str, views: &[ServiceView]) -> (DynamicConfig, Vec<ItemReport>) {
        let mut config = DynamicConfig::default();
        let mut items = Vec::new();
        for (spec, view) in self.config.services.iter().zip(views) {
            config.http.services.insert(
                spec.name.clone(),
                Service {
                    load_balancer: Some(LoadBalancer {
                        servers: view.servers.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            if let Some((rule, entry_points, middlewares)) = &spec.router {
                config.http.routers.insert(
                    spec.name.clone(),
                    Router {
                        rule: rule.clone(),
                        entry_points: entry_points.clone(),
                        service: spec.name.clone(),
                        middlewares: middlewares.clone(),
                        ..Default::default()
                    },
                );
            }
            if view.items.is_empty() {
                items.push(ItemReport {
                    kind: "lookup".into(),
                    name: spec.lookup.describe(),
                    reasons: vec!["waiting for the first answer".into()],
                    services: vec![format!("{}@{provider}", spec.name)],
                    ..Default::default()
                });
            }
            items.extend(view.items.iter().cloned());
        }
        (config, items)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::dns::client::{AddressRecord, LookupFailure, SrvAnswer, SrvRecord};
    use crate::provider::{Decision, Update};

    /// Answers from a table that tests change while the provider runs.
    #[derive(Default)]
    struct Table {
        srv: Mutex<BTreeMap<String, Result<SrvAnswer, LookupFailure>>>,
        addrs: Mutex<BTreeMap<String, Result<Vec<AddressRecord>, LookupFailure>>>,
    }

    impl Dns for Table {
        async fn srv(&self, name: &str) -> Result<SrvAnswer, LookupFailure> {
            let found = self.srv.lock().unwrap().get(name).cloned();
            found.unwrap_or(Err(LookupFailure::NoRecords {
                nx_domain: true,
                negative_ttl: None,
            }))
        }
        async fn addresses(&self, name: &str) -> Result<Vec<AddressRecord>, LookupFailure> {
            let found = self.addrs.lock().unwrap().get(name).cloned();
            found.unwrap_or(Err(LookupFailure::NoRecords {
                nx_domain: true,
                negative_ttl: None,
            }))
        }
    }

    fn answer(ports: &[u16], ttl: u32) -> Result<SrvAnswer, LookupFailure> {
        Ok(SrvAnswer {
            records: ports
                .iter()
                .map(|p| SrvRecord {
                    priority: 1,
                    weight: 1,
                    port: *p,
                    target: "a.example.".into(),
                    ttl,
                })
                .collect(),
            glue: vec![AddressRecord {
                name: "a.example.".into(),
                ip: "127.0.0.1".parse().unwrap(),
                ttl,
            }],
        })
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Update>) -> Update {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("an update within a minute of paused time")
            .expect("the provider is running")
    }

    #[tokio::test(start_paused = true)]
    async fn one_complete_fragment_first_then_only_changes() {
        let config: DnsConfig = toml::from_str(
            "[[services]]\nname = \"web\"\nsrv = \"_http._tcp.web.example.\"\nrule = \"Host(`web`)\"\n\
             [[services]]\nname = \"api\"\nsrv = \"_http._tcp.api.example.\"\n\
             [[services]]\nname = \"tasks\"\na = \"tasks.web\"\nport = 8080\n",
        )
        .unwrap();
        let table = Arc::new(Table::default());
        table
            .srv
            .lock()
            .unwrap()
            .insert("_http._tcp.web.example.".into(), answer(&[8080, 8081], 5));
        table
            .srv
            .lock()
            .unwrap()
            .insert("_http._tcp.api.example.".into(), answer(&[9000], 5));
        let localhost = |name: &str, ttl| {
            Ok(vec![AddressRecord {
                name: name.into(),
                ip: "127.0.0.1".parse().unwrap(),
                ttl,
            }])
        };
        // Asked directly when the SRV answer (and its glue) cannot be refreshed.
        table.addrs.lock().unwrap().insert("a.example.".into(), localhost("a.example.", 5));
        table.addrs.lock().unwrap().insert("tasks.web".into(), localhost("tasks.web.", 600));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let provider = DnsProvider::new(&config).unwrap();
        let task = tokio::spawn(provider.run_with(table.clone(), ProviderHandle::new("dns", tx)));

        let Update::Config { config, items, .. } = next(&mut rx).await else {
            panic!("a fragment first")
        };
        assert_eq!(config.http.services.len(), 3, "every service in the first fragment");
        assert_eq!(config.http.routers["web"].service, "web");
        assert_eq!(config.http.routers.len(), 1);
        let web = &config.http.services["web"].load_balancer.as_ref().unwrap().servers;
        assert_eq!(web.len(), 2);
        assert_eq!(web[0].url, "http://127.0.0.1:8080");
        let tasks = &config.http.services["tasks"].load_balancer.as_ref().unwrap().servers;
        assert_eq!(tasks[0].url, "http://127.0.0.1:8080");
        let items = items.unwrap();
        let lookup = items.iter().find(|i| i.name == "SRV _http._tcp.web.example.").unwrap();
        assert_eq!(lookup.decision, Decision::Routed);
        assert_eq!(lookup.services, vec!["web@dns"]);
        assert_eq!(lookup.routers, vec!["web@dns"]);

        // Nothing changes for a while: nothing is sent, however often the TTLs run out.
        assert!(tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.is_err());

        // One record goes: one new fragment, with the other services unchanged.
        table
            .srv
            .lock()
            .unwrap()
            .insert("_http._tcp.web.example.".into(), answer(&[8081], 5));
        let Update::Config { config, .. } = next(&mut rx).await else {
            panic!("a fragment")
        };
        let web = &config.http.services["web"].load_balancer.as_ref().unwrap().servers;
        assert_eq!(web.len(), 1);
        assert_eq!(config.http.services["api"].load_balancer.as_ref().unwrap().servers.len(), 1);

        // A failure: the same servers are sent again with the reports, then the error.
        table.srv.lock().unwrap().insert(
            "_http._tcp.api.example.".into(),
            Err(LookupFailure::Transient("SERVFAIL (the nameserver could not answer)".into())),
        );
        let Update::Config { config: same, .. } = next(&mut rx).await else {
            panic!("a fragment")
        };
        assert_eq!(same, config, "the servers are kept");
        let Update::Error { error, .. } = next(&mut rx).await else {
            panic!("then the error")
        };
        let error = error.to_string();
        assert!(error.contains("SRV _http._tcp.api.example.: SERVFAIL"), "{error}");
        assert!(error.contains("keeping the servers of the last good answer"), "{error}");

        // NXDOMAIN: the service stays, empty.
        table.srv.lock().unwrap().remove("_http._tcp.api.example.");
        let config = loop {
            if let Update::Config { config, .. } = next(&mut rx).await {
                break config;
            }
        };
        assert!(config.http.services["api"].load_balancer.as_ref().unwrap().servers.is_empty());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_nameserver_does_not_hold_the_first_fragment_forever() {
        struct Silent;
        impl Dns for Silent {
            async fn srv(&self, _: &str) -> Result<SrvAnswer, LookupFailure> {
                std::future::pending().await
            }
            async fn addresses(&self, _: &str) -> Result<Vec<AddressRecord>, LookupFailure> {
                std::future::pending().await
            }
        }
        let config: DnsConfig = toml::from_str("[[services]]\nname = \"web\"\nsrv = \"_http._tcp.web.example.\"\n").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        let task = tokio::spawn(
            DnsProvider::new(&config)
                .unwrap()
                .run_with(Arc::new(Silent), ProviderHandle::new("dns", tx)),
        );
        let Update::Config { config, items, .. } = next(&mut rx).await else {
            panic!("a fragment")
        };
        assert_eq!(started.elapsed(), Duration::from_secs(6), "three query timeouts");
        assert!(config.http.services["web"].load_balancer.as_ref().unwrap().servers.is_empty());
        assert!(items.unwrap()[0].reasons[0].contains("waiting for the first answer"));
        task.abort();
    }
}
