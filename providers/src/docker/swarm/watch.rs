//! The Swarm provider's task: a refresh every `refreshSeconds`, and at once on service events and
//! on events of task containers on this node.

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::translate::{decide_all, SwarmNetwork, SwarmService, SwarmState, SwarmTask};
use crate::docker::client::{ApiError, Client};
use crate::docker::config::{Common, SwarmConfig};
use crate::docker::events::{is_stop_signal, Event};
use crate::docker::network::{own_container_candidates, SelfContainer};
use crate::docker::translate::Observed;
use crate::docker::watch::read_events;
use crate::error::ProviderError;
use crate::http_client::encode;
use crate::model::DynamicConfig;
use crate::provider::{ItemReport, Provider, ProviderHandle};

/// The Swarm provider.
#[derive(Clone, Debug)]
pub struct SwarmProvider {
    common: Common,
    watch: bool,
    refresh: Duration,
}

impl Provider for SwarmProvider {
    const NAME: &'static str = "swarm";
    type Config = SwarmConfig;

    /// A provider for these settings; the error names the key that is wrong.
    fn new(config: &SwarmConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            common: config.check().map_err(Self::refuse)?,
            watch: config.watch,
            refresh: config.refresh_seconds.0,
        })
    }

    /// Runs until the aggregator goes away: a refresh every `refreshSeconds`, and at once on
    /// service events and task-container events.
    fn run(self, handle: ProviderHandle) -> impl std::future::Future<Output = ()> + Send {
        self.follow(handle)
    }
}

impl SwarmProvider {
    /// Reads services, running tasks and swarm networks.
    pub async fn read(client: &Client) -> Result<SwarmState, ApiError> {
        let networks: Vec<SwarmNetwork> = client
            .get_json(&format!("/networks?filters={}", encode(r#"{"scope":["swarm"]}"#)))
            .await?;
        let services: Vec<SwarmService> = client.get_json("/services").await?;
        let tasks: Vec<SwarmTask> = client
            .get_json(&format!("/tasks?filters={}", encode(r#"{"desired-state":["running"]}"#)))
            .await?;
        Ok(SwarmState { services, tasks, networks })
    }

    async fn follow(self, handle: ProviderHandle) {
        let mut client: Option<Client> = None;
        let mut me: Option<SelfContainer> = None;
        let mut stopping: HashSet<String> = HashSet::new();
        let mut last: Option<(DynamicConfig, Vec<ItemReport>)> = None;
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<Event, String>>();
        let mut reader: Option<tokio::task::JoinHandle<()>> = None;
        let mut next_poll = tokio::time::Instant::now();
        loop {
            // Wait for the poll tick or an event that matters.
            let mut refresh_now = false;
            tokio::select! {
                _ = tokio::time::sleep_until(next_poll) => refresh_now = true,
                item = rx.recv() => match item {
                    Some(Ok(e)) => refresh_now |= self.note_event(&e, &mut stopping),
                    Some(Err(e)) => {
                        tracing::warn!("swarm: {e}; polling continues and the stream is reopened");
                        reader = None;
                    }
                    None => {}
                },
            }
            if !refresh_now {
                continue;
            }
            // Coalesce a burst (a scale-up sends several events at once).
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(item) = rx.try_recv() {
                if let Ok(e) = item {
                    self.note_event(&e, &mut stopping);
                }
            }
            next_poll = tokio::time::Instant::now() + self.refresh;
            let c = match &client {
                Some(c) => c.clone(),
                None => match Client::new(&self.common.endpoint, self.common.timeout) {
                    Ok(c) => match c.ping().await {
                        Ok(_) => {
                            me = find_me(&c).await;
                            client = Some(c.clone());
                            c
                        }
                        Err(e) => {
                            if !handle.report_error(&ProviderError::from(e).at("swarm").note("keeping the last good routes")) {
                                return;
                            }
                            continue;
                        }
                    },
                    Err(e) => {
                        if !handle.report_error(&ProviderError::from(e).at("swarm")) {
                            return;
                        }
                        continue;
                    }
                },
            };
            if self.watch && reader.as_ref().is_none_or(|r| r.is_finished()) {
                let filters = encode(r#"{"type":["service","container"]}"#);
                let since = std::time::SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs().saturating_sub(1))
                    .unwrap_or(0);
                match c.stream(&format!("/events?since={since}&filters={filters}")).await {
                    Ok(body) => reader = Some(tokio::spawn(read_events(body, tx.clone()))),
                    Err(e) => tracing::warn!("swarm: cannot follow events ({e}); polling only"),
                }
            }
            match Self::read(&c).await {
                Ok(state) => {
                    let running: HashSet<&str> = state
                        .tasks
                        .iter()
                        .filter(|t| t.status.state == "running")
                        .filter_map(|t| t.status.container.as_ref().map(|c| c.id.as_str()))
                        .collect();
                    stopping.retain(|id| running.contains(id.as_str()));
                    let current = decide_all(&state, &self.common, handle.name(), me.as_ref(), &stopping);
                    if last.as_ref() != Some(&current) {
                        last = Some(current.clone());
                        if !handle.send_config_with_items(current.0, current.1) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if e.is_unreachable() {
                        client = None;
                        if let Some(r) = reader.take() {
                            r.abort();
                        }
                    }
                    if !handle.report_error(&ProviderError::from(e).at("swarm").note("keeping the last good routes")) {
                        return;
                    }
                }
            }
        }
    }

    /// Records what an event means; true when it calls for a refresh.
    fn note_event(&self, e: &Event, stopping: &mut HashSet<String>) -> bool {
        match e.kind.as_str() {
            "service" => true,
            "container" if e.actor.attributes.contains_key("com.docker.swarm.task.id") => match e.action.as_str() {
                "kill" => {
                    let signal = e.actor.attributes.get("signal").map(String::as_str).unwrap_or("");
                    if is_stop_signal(signal, None) {
                        stopping.insert(e.actor.id.clone());
                        true
                    } else {
                        false
                    }
                }
                "start" | "die" | "stop" | "destroy" => true,
                a => a.starts_with("health_status"),
            },
            _ => false,
        }
    }
}

/// drover's own container on this node, if it runs in one.
async fn find_me(client: &Client) -> Option<SelfContainer> {
    for id in own_container_candidates() {
        if let Ok(c) = client.docker().inspect_container(&id, None).await {
            if let Ok(o) = Observed::from_inspect(c) {
                return Some(SelfContainer::from_observed(&o));
            }
        }
    }
    None
}
