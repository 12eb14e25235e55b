//! The Consul catalog provider: every instance whose tags carry `<prefix>.*` labels is routed, and a
//! change in Consul reaches the data path as soon as Consul reports it.
//!
//! # Why two watches, not one per service
//!
//! Consul pushes changes through *blocking queries*: a `GET` with `?index=N&wait=55s` hangs until
//! the data moves past index `N`. Each one holds an HTTP connection for its whole wait, and Consul
//! caps the connections of one client address (`limits.http_max_conns_per_client`, 200 by
//! default), past which it refuses them. One blocking query per service (on
//! `/v1/health/service/<name>`) would need one connection per service: a catalog of a couple of
//! hundred services, or a few drovers behind one NAT address, would hit the cap and lose watches —
//! and the same cap protects other tools of the same host. drover instead holds exactly two, as
//! Traefik does: `/v1/catalog/services` and `/v1/health/state/any`, plus at most
//! [`watch::PARALLEL`] short-lived requests while it re-lists instances. The number of
//! connections does not grow with the catalog.
//!
//! What two watches cost is precision, and [`watch`] wins most of it back: a change of checks
//! (the common case: a check flapping, a node failing, maintenance mode) is traced to the services
//! it touches ([`changes`]) and only those are re-listed; a change of the catalog itself
//! (registration, deregistration) re-lists the services that carry drover tags, because Consul's
//! service list cannot say which service's instances moved.
//!
//! # Rooms
//!
//! * [`config`]: `[providers.consulCatalog]` (Traefik key names) and its validation.
//! * [`client`]: the HTTP client and its classified error (TLS through [`crate::tls`]).
//! * [`blocking`]: the blocking-query index rules, the token bucket, the failure backoff.
//! * [`catalog`]: Consul's JSON, leniently read.
//! * [`health`]: an instance's aggregate health and `strictChecks`.
//! * [`translate`]: instance → decision → routers and services.
//! * [`changes`]: which services a check change touches.
//! * [`watch`]: the task that ties them together.

pub mod blocking;
pub mod catalog;
pub mod changes;
pub mod client;
pub mod config;
pub mod health;
pub mod translate;
pub mod watch;

pub use config::ConsulCatalogConfig;

use crate::labels::DefaultRule;
use crate::provider::ProviderHandle;

/// The provider's name, as in `web@consulCatalog`.
pub const NAME: &str = "consulCatalog";

/// A configured Consul catalog provider.
#[derive(Debug, Clone)]
pub struct ConsulCatalog {
    config: ConsulCatalogConfig,
}

impl ConsulCatalog {
    /// A provider with these settings (checked by [`ConsulCatalogConfig::validate`] at start-up).
    pub fn new(config: ConsulCatalogConfig) -> Self {
        Self { config }
    }

    /// Watches Consul and sends a full fragment after every change, until the aggregator goes
    /// away. Settings that cannot be used (a TLS file gone since start-up) are reported.
    pub async fn run(self, handle: ProviderHandle) {
        let config = self.config;
        for note in config.ignored() {
            tracing::warn!(provider = NAME, "{note}; ignored");
        }
        let prepared = config.validate().and_then(|()| {
            let client = client::ConsulClient::new(&config)?;
            let default_rule = DefaultRule::parse(&config.default_rule)?;
            let admitted = config.admitted()?;
            Ok((client, default_rule, admitted))
        });
        let (client, default_rule, admitted) = match prepared {
            Ok(p) => p,
            Err(e) => {
                handle.report_error(e);
                return;
            }
        };
        let settings = translate::Settings {
            prefix: config.prefix.clone(),
            exposed_by_default: config.exposed_by_default,
            default_rule,
            admitted,
            provider: handle.name().to_string(),
        };
        let pace = watch::Pace {
            wait: config.wait(),
            burst: config.watch_burst,
            refill: config.watch_refill.0,
        };
        tracing::info!(
            provider = NAME,
            consul = client.authority(),
            prefix = %settings.prefix,
            wait = ?pace.wait,
            "watching the Consul catalog"
        );
        watch::run(client, settings, pace, handle).await;
    }
}
