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

use crate::consul::config::Admitted;
use crate::error::ProviderError;
use crate::labels::DefaultRule;
use crate::provider::{Provider, ProviderHandle};

/// The provider's name, as in `web@consulCatalog`.
pub const NAME: &str = "consulCatalog";

/// A configured Consul catalog provider: its settings checked, its client built.
#[derive(Debug, Clone)]
pub struct ConsulCatalog {
    config: ConsulCatalogConfig,
    client: client::ConsulClient,
    default_rule: DefaultRule,
    admitted: Vec<Admitted>,
}

impl Provider for ConsulCatalog {
    const NAME: &'static str = NAME;
    type Config = ConsulCatalogConfig;

    /// Checks `config` ([`ConsulCatalogConfig::validate`]) and builds the client: a TLS file that
    /// cannot be read is refused here, before anything runs.
    fn new(config: &ConsulCatalogConfig) -> Result<Self, ProviderError> {
        config.validate().map_err(Self::refuse)?;
        Ok(Self {
            client: client::ConsulClient::new(config).map_err(Self::refuse)?,
            default_rule: DefaultRule::parse(&config.default_rule).map_err(Self::refuse)?,
            admitted: config.admitted().map_err(Self::refuse)?,
            config: config.clone(),
        })
    }

    /// Watches Consul and sends a full fragment after every change, until the aggregator goes
    /// away.
    async fn run(self, handle: ProviderHandle) {
        let Self {
            config,
            client,
            default_rule,
            admitted,
        } = self;
        for note in config.ignored() {
            tracing::warn!(provider = NAME, "{note}; ignored");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_refused_at_construction_naming_the_key() {
        let config = |text: &str| -> ConsulCatalogConfig { toml::from_str(text).unwrap() };
        assert!(ConsulCatalog::new(&config("")).is_ok());
        let err = ConsulCatalog::new(&config("strictChecks = []")).unwrap_err();
        assert!(err.is_config(), "{err}");
        assert!(err.to_string().starts_with("providers.consulCatalog.strictChecks: empty"), "{err}");
        let err = ConsulCatalog::new(&config(
            "[endpoint]\nscheme = \"https\"\n[endpoint.tls]\nca = \"/nonexistent/ca.pem\"\n",
        ))
        .unwrap_err();
        assert!(err.is_config(), "{err}");
        assert!(err.to_string().contains("tls.ca: cannot read /nonexistent/ca.pem"), "{err}");
    }
}
