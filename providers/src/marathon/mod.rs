//! The Marathon provider: routes Marathon (Mesos / DC/OS) apps from their labels and tasks.
//!
//! Traefik dropped Marathon in v3, so sites still running it have no maintained
//! self-configuring proxy; this provider reads the same labels Traefik v2 read (with prefix
//! `traefik`, a labelled cluster works unchanged) and keeps Traefik's choices of tasks, hosts and
//! ports, except where they were wrong (see [`translate`]).
//!
//! How it stays current, and why it is shaped this way:
//!
//! * **Events are signals, not state.** Marathon's event bus does not guarantee order, and its
//!   payloads are partial (a `status_update_event` carries no labels, no health results), so an
//!   event is only ever a reason to re-read. Unlike Traefik, which re-read *every* app on *every*
//!   event, only the app an event names is re-read (`GET /v2/apps/{id}`); results are cached per
//!   app and merged ([`watch::Catalog`]). On a 1,000-task cluster that is the difference between
//!   parsing a megabyte and parsing a few kilobytes per task change.
//! * **Reconnect means re-list.** Events sent while the stream was down are lost, so every new
//!   stream is followed by a full `GET /v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness`.
//!   The stream is opened *first*, so a change between the list and the subscription is seen.
//! * **A dead stream is noticed.** Marathon sends a heartbeat about every 10 s; a connection that
//!   delivers no byte for `eventStreamIdleTimeout` (30 s) is dropped and re-established ([`sse`]).
//! * **A failing source changes nothing.** Errors are reported (provider status on
//!   `/api/providers/marathon`) and the last good fragment stays in force while the provider
//!   retries with backoff and fails over between the configured endpoints ([`client`]).
//!
//! Rooms: [`config`] (static settings), [`client`] (HTTP, failover, redirects, auth), [`api`]
//! (Marathon's JSON and which apps an event names), [`sse`] (the event stream), [`translate`] (app and
//! task → routers, services, decisions), [`watch`] (the task that ties them together).

pub mod api;
pub mod client;
pub mod config;
pub mod sse;
pub mod translate;
pub mod watch;

pub use config::{MarathonConfig, Settings};

use crate::error::ProviderError;
use crate::provider::{Provider, ProviderHandle};

/// A configured Marathon provider, ready to run.
#[derive(Clone, Debug)]
pub struct MarathonProvider {
    settings: Settings,
}

impl Provider for MarathonProvider {
    const NAME: &'static str = "marathon";
    type Config = MarathonConfig;

    /// Checks `config`; the error names the offending key.
    fn new(config: &MarathonConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            settings: config.validate().map_err(Self::refuse)?,
        })
    }

    /// Runs until the aggregator goes away, sending a full fragment after every change.
    fn run(self, handle: ProviderHandle) -> impl std::future::Future<Output = ()> + Send {
        watch::run(self.settings, handle)
    }
}
