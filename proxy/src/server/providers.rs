//! Which providers run, from the static configuration. Each provider is one task on the control
//! runtime that owns a [`ProviderHandle`]; adding a provider means adding one entry here.

use std::future::Future;
use std::pin::Pin;

use drover_providers::consul::ConsulCatalog;
use drover_providers::dns::DnsProvider;
use drover_providers::docker::{DockerProvider, SwarmProvider};
use drover_providers::file::{FileProvider, Source};
use drover_providers::marathon::MarathonProvider;
use drover_providers::ProviderHandle;

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
    let mut out = Vec::new();
    if let Some(file) = &providers.file {
        let source = match (&file.filename, &file.directory) {
            (Some(f), _) => Source::File(f.clone()),
            (None, Some(d)) => Source::Directory(d.clone()),
            (None, None) => unreachable!("StaticConfig::parse requires filename or directory"),
        };
        let provider = FileProvider::new(source, file.watch);
        out.push(Configured {
            name: "file",
            start: Box::new(move |handle| Box::pin(provider.run(handle))),
        });
    }
    if let Some(dns) = &providers.dns {
        match DnsProvider::new(dns) {
            Ok(provider) => out.push(Configured {
                name: "dns",
                start: Box::new(move |handle| Box::pin(provider.run(handle))),
            }),
            // StaticConfig::parse validated it already; should it still be refused, the provider
            // reports why instead of taking drover down.
            Err(why) => out.push(Configured {
                name: "dns",
                start: Box::new(move |handle| {
                    Box::pin(async move {
                        handle.report_error(format!("[providers.dns]: {why}"));
                    })
                }),
            }),
        }
    }
    if let Some(docker) = &providers.docker {
        match DockerProvider::new(docker) {
            Ok(provider) => out.push(Configured {
                name: "docker",
                start: Box::new(move |handle| Box::pin(provider.run(handle))),
            }),
            Err(why) => out.push(Configured {
                name: "docker",
                start: Box::new(move |handle| {
                    Box::pin(async move {
                        handle.report_error(format!("[providers.docker]: {why}"));
                    })
                }),
            }),
        }
    }
    if let Some(swarm) = &providers.swarm {
        match SwarmProvider::new(swarm) {
            Ok(provider) => out.push(Configured {
                name: "swarm",
                start: Box::new(move |handle| Box::pin(provider.run(handle))),
            }),
            Err(why) => out.push(Configured {
                name: "swarm",
                start: Box::new(move |handle| {
                    Box::pin(async move {
                        handle.report_error(format!("[providers.swarm]: {why}"));
                    })
                }),
            }),
        }
    }
    if let Some(marathon) = &providers.marathon {
        match MarathonProvider::new(marathon) {
            Ok(provider) => out.push(Configured {
                name: "marathon",
                start: Box::new(move |handle| Box::pin(provider.run(handle))),
            }),
            Err(why) => out.push(Configured {
                name: "marathon",
                start: Box::new(move |handle| {
                    Box::pin(async move {
                        handle.report_error(format!("[providers.marathon]: {why}"));
                    })
                }),
            }),
        }
    }
    if let Some(consul) = &providers.consul_catalog {
        // Validated by StaticConfig::parse; what cannot be honoured at run time (TLS) is reported
        // by the provider itself.
        let provider = ConsulCatalog::new(consul.clone());
        out.push(Configured {
            name: drover_providers::consul::NAME,
            start: Box::new(move |handle| Box::pin(provider.run(handle))),
        });
    }
    out
}
