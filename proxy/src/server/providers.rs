//! Which providers run, from the static configuration. Each provider is one task on the control
//! runtime that owns a [`ProviderHandle`]; every one is started the same way ([`Provider`]), so
//! adding a provider means adding one line here.

use std::future::Future;
use std::pin::Pin;

use drover_providers::consul::ConsulCatalog;
use drover_providers::dns::DnsProvider;
use drover_providers::docker::{DockerProvider, SwarmProvider};
use drover_providers::file::FileProvider;
use drover_providers::marathon::MarathonProvider;
use drover_providers::{Provider, ProviderHandle};

use crate::config::Providers;

/// Starts a provider's task with its handle.
pub type Start = Box<dyn FnOnce(ProviderHandle) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A provider ready to start: its name and the task to run with its handle.
pub struct Configured {
    /// The provider's name, as in `name@provider`.
    pub name: &'static str,
    /// Starts the provider's task.
    pub start: Start,
}

/// Every provider the static configuration enables.
pub fn configured(providers: &Providers) -> Vec<Configured> {
    [
        providers.file.as_ref().map(one::<FileProvider>),
        providers.dns.as_ref().map(one::<DnsProvider>),
        providers.docker.as_ref().map(one::<DockerProvider>),
        providers.swarm.as_ref().map(one::<SwarmProvider>),
        providers.marathon.as_ref().map(one::<MarathonProvider>),
        providers.consul_catalog.as_ref().map(one::<ConsulCatalog>),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Provider `P` built from `config`. `StaticConfig::parse` validated it already; should it still be
/// refused (a TLS file gone since), the task reports why instead of taking drover down.
fn one<P: Provider>(config: &P::Config) -> Configured {
    let start: Start = match P::new(config) {
        Ok(provider) => Box::new(move |handle| Box::pin(provider.run(handle))),
        Err(why) => Box::new(move |handle| {
            Box::pin(async move {
                handle.report_error(&why);
            })
        }),
    };
    Configured { name: P::NAME, start }
}
