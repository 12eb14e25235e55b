//! The container provider's task: one full sync, then the events stream, one container at a time.
//!
//! A session is: ping (negotiate the version), open the events stream (replaying from a second
//! before the daemon's clock, so nothing that happens during the sync is missed), list every
//! container, inspect the enabled ones concurrently, find drover's own container, send. Then each
//! batch of events re-inspects only the containers it names and the fragment is rebuilt from the
//! cache. Containers that are not enabled are never inspected: their labels are in the list and
//! in every event about them (Traefik inspects everything on every health event, #13321).
//!
//! When the stream ends or the daemon cannot be reached, the session ends: the error goes to the
//! provider's status, the last good fragment stays in force, and a new session (with a full
//! resync) starts after a backoff of 200 ms doubling to 10 s (with [`crate::backoff`]'s jitter).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use bollard::query_parameters::ListContainersOptionsBuilder;
use futures_util::stream::{self, StreamExt};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::client::{ApiError, Client, LineSplitter};
use super::config::{Common, DockerConfig};
use super::events::{is_stop_signal, Effect, Event};
use super::network::{own_container_candidates, SelfContainer};
use super::translate::{assemble, decide, enable_label, parse_labels, Context, Observed};
use crate::backoff::Backoff;
use crate::error::ProviderError;
use crate::http_client::encode;
use crate::labels::{LabelError, Labels};
use crate::model::DynamicConfig;
use crate::provider::{ItemReport, Provider, ProviderHandle};

/// How many inspects run at once during a sync.
const INSPECT_CONCURRENCY: usize = 16;
/// First pause before a new session; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest pause between sessions.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The Docker provider (plain containers).
#[derive(Clone, Debug)]
pub struct DockerProvider {
    common: Common,
    watch: bool,
}

struct Entry {
    observed: Observed,
    labels: Result<Labels, Vec<LabelError>>,
}

impl Entry {
    fn new(observed: Observed, prefix: &str) -> Self {
        let labels = parse_labels(&observed.labels, prefix);
        Self { observed, labels }
    }
}

/// Why a session ended.
enum End {
    /// The aggregator is gone: stop.
    Shutdown,
    /// The daemon or the stream failed; `synced` tells whether this session had sent a fragment.
    Lost { error: ProviderError, synced: bool },
}

struct Session<'a> {
    client: Client,
    common: &'a Common,
    handle: &'a ProviderHandle,
    entries: HashMap<String, Entry>,
    me: Option<SelfContainer>,
    last_sent: Option<(DynamicConfig, Vec<ItemReport>)>,
}

impl Provider for DockerProvider {
    const NAME: &'static str = "docker";
    type Config = DockerConfig;

    /// A provider for these settings; the error names the key that is wrong.
    fn new(config: &DockerConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            common: config.check().map_err(Self::refuse)?,
            watch: config.watch,
        })
    }

    /// Runs until the aggregator goes away.
    async fn run(self, handle: ProviderHandle) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            match self.session(&handle).await {
                End::Shutdown => return,
                End::Lost { error, synced } => {
                    if synced {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    let note = format!("keeping the last good routes; reconnecting in {} ms", delay.as_millis());
                    if !handle.report_error(&error.note(note)) {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl DockerProvider {
    async fn session(&self, handle: &ProviderHandle) -> End {
        let lost = |e: ApiError| End::Lost {
            error: e.into(),
            synced: false,
        };
        let client = match Client::new(&self.common.endpoint, self.common.timeout) {
            Ok(c) => c,
            Err(e) => return lost(e),
        };
        let ping = match client.ping().await {
            Ok(p) => p,
            Err(e) => return lost(e),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _reader = if self.watch {
            let since = ping
                .daemon_time
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| format!("since={}&", d.as_secs().saturating_sub(1)))
                .unwrap_or_default();
            let filters = encode(r#"{"type":["container","network"]}"#);
            match client.stream(&format!("/events?{since}filters={filters}")).await {
                Ok(body) => Some(AbortOnDrop(tokio::spawn(read_events(body, tx)))),
                Err(e) => return lost(e),
            }
        } else {
            None
        };
        let mut session = Session {
            client,
            common: &self.common,
            handle,
            entries: HashMap::new(),
            me: None,
            last_sent: None,
        };
        if let Err(e) = session.full_sync().await {
            return lost(e);
        }
        tracing::info!(
            endpoint = %session.client.endpoint(),
            api = %format!("1.{}", ping.minor),
            containers = session.entries.len(),
            own_container = session.me.as_ref().map_or("none (drover is not in a container)", |m| m.name.as_str()),
            "docker: synchronised"
        );
        if !session.send() {
            return End::Shutdown;
        }
        if !self.watch {
            std::future::pending::<()>().await;
        }
        loop {
            let Some(first) = rx.recv().await else {
                return End::Lost {
                    error: ProviderError::unreachable("the Docker events stream ended"),
                    synced: true,
                };
            };
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut events = Vec::with_capacity(batch.len());
            for item in batch {
                match item {
                    Ok(e) => events.push(e),
                    Err(error) => {
                        return End::Lost {
                            error: ProviderError::unreachable(error),
                            synced: true,
                        }
                    }
                }
            }
            if let Err(e) = session.apply(events).await {
                return End::Lost {
                    error: e.into(),
                    synced: true,
                };
            }
            if !session.send() {
                return End::Shutdown;
            }
        }
    }
}

/// Aborts the task when dropped (the events reader must not outlive its session).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the events stream into `tx`; the last item is an error saying why it ended.
pub(super) async fn read_events(mut body: hyper::body::Incoming, tx: mpsc::UnboundedSender<Result<Event, String>>) {
    let mut lines = LineSplitter::default();
    loop {
        let error = match body.frame().await {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { continue };
                match lines.push(&data) {
                    Ok(lines) => {
                        for line in lines {
                            match serde_json::from_slice::<Event>(&line) {
                                Ok(e) => {
                                    if tx.send(Ok(e)).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => tracing::warn!("docker: an event could not be read and is skipped: {e}"),
                            }
                        }
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Some(Err(e)) => format!("the Docker events stream broke: {e}"),
            None => "the Docker daemon closed the events stream".to_string(),
        };
        let _ = tx.send(Err(error));
        return;
    }
}

impl Session<'_> {
    fn prefix(&self) -> &str {
        &self.common.label_prefix
    }

    fn enabled_by_labels(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        enable_label(labels, self.prefix()).unwrap_or(self.common.exposed_by_default)
    }

    /// Lists everything, inspects what may be routed, finds drover's own container.
    async fn full_sync(&mut self) -> Result<(), ApiError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let list = self
            .client
            .docker()
            .list_containers(Some(options))
            .await
            .map_err(|e| self.client.bollard_error(e, "/containers/json"))?;
        let mut to_inspect = Vec::new();
        let mut entries = HashMap::new();
        for summary in list {
            let Some(id) = summary.id.clone().filter(|s| !s.is_empty()) else {
                continue;
            };
            let labels: std::collections::BTreeMap<String, String> = summary.labels.clone().unwrap_or_default().into_iter().collect();
            if self.enabled_by_labels(&labels) {
                to_inspect.push(id);
            } else {
                let observed = Observed {
                    id: id.clone(),
                    name: summary
                        .names
                        .as_ref()
                        .and_then(|n| n.first())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    labels,
                    state: summary.state.map(|s| s.to_string()).unwrap_or_default(),
                    ..Default::default()
                };
                entries.insert(id, Entry::new(observed, &self.common.label_prefix));
            }
        }
        let me_candidates = own_container_candidates();
        let mut inspected = self
            .inspect_many(to_inspect.into_iter().chain(me_candidates.iter().cloned()).collect())
            .await?;
        self.me = None;
        for candidate in &me_candidates {
            if let Some(Some(o)) = inspected.get(candidate) {
                self.me = Some(SelfContainer::from_observed(o));
                break;
            }
        }
        for (id, observed) in inspected.drain() {
            let Some(observed) = observed else { continue };
            entries.insert(id, Entry::new(observed, &self.common.label_prefix));
        }
        self.entries = entries;
        Ok(())
    }

    /// Inspects containers concurrently; `None` for those that are gone (404) or unreadable.
    async fn inspect_many(&self, ids: Vec<String>) -> Result<HashMap<String, Option<Observed>>, ApiError> {
        let results: Vec<(String, Result<Option<Observed>, ApiError>)> = stream::iter(ids)
            .map(|id| async move {
                let r = self.inspect(&id).await;
                (id, r)
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        let mut out = HashMap::new();
        for (id, r) in results {
            out.insert(id, r?);
        }
        Ok(out)
    }

    /// One inspect: `Ok(None)` when the container is gone; an unreadable answer is logged and
    /// treated as gone (it affects only that container).
    async fn inspect(&self, id: &str) -> Result<Option<Observed>, ApiError> {
        match self.client.docker().inspect_container(id, None).await {
            Ok(c) => match Observed::from_inspect(c) {
                Ok(o) => Ok(Some(o)),
                Err(e) => {
                    tracing::warn!(container = %id, "docker: {e}");
                    Ok(None)
                }
            },
            Err(e) => {
                let e = self.client.bollard_error(e, &format!("/containers/{id}/json"));
                match e {
                    e if e.is_not_found() => Ok(None),
                    ApiError::Decode { message, .. } => {
                        tracing::warn!(container = %id, "docker: cannot read the container's inspect answer: {message}");
                        Ok(None)
                    }
                    e => Err(e),
                }
            }
        }
    }

    /// Applies a batch of events: stop signals at once, then one inspect per container named.
    async fn apply(&mut self, events: Vec<Event>) -> Result<(), ApiError> {
        let mut dirty = BTreeSet::new();
        let mut me_dirty = false;
        for event in &events {
            let effect = event.effect();
            let id = match &effect {
                Effect::Inspect(id) | Effect::Forget(id) | Effect::Stopping { id, .. } => id.clone(),
                Effect::Ignore => continue,
            };
            if self.me.as_ref().is_some_and(|me| me.id == id) {
                me_dirty = true;
            }
            match effect {
                Effect::Forget(id) => {
                    dirty.remove(&id);
                    self.entries.remove(&id);
                }
                Effect::Stopping { id, signal } => {
                    if let Some(entry) = self.entries.get_mut(&id) {
                        let o = &mut entry.observed;
                        if o.state == "running" && is_stop_signal(&signal, o.stop_signal.as_deref()) {
                            o.stopping = Some(signal);
                        }
                    }
                }
                Effect::Inspect(id) => {
                    // Not enabled by its labels (every container event carries them): no inspect.
                    let labels: std::collections::BTreeMap<String, String> = event
                        .actor
                        .attributes
                        .iter()
                        .filter(|(k, _)| k.contains('.'))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let known_disabled = self.entries.get(&id).is_some_and(|e| !self.enabled_by_labels(&e.observed.labels));
                    let event_disabled = event.kind == "container" && !self.enabled_by_labels(&labels);
                    if known_disabled || event_disabled {
                        self.note_disabled(&id, event, labels);
                    } else {
                        dirty.insert(id);
                    }
                }
                Effect::Ignore => {}
            }
        }
        if me_dirty {
            if let Some(me) = self.me.clone() {
                match self.inspect(&me.id).await? {
                    Some(o) => self.me = Some(SelfContainer::from_observed(&o)),
                    None => self.me = None,
                }
            }
        }
        let inspected = self.inspect_many(dirty.into_iter().collect()).await?;
        for (id, observed) in inspected {
            match observed {
                None => {
                    self.entries.remove(&id);
                }
                Some(mut o) => {
                    if let Some(old) = self.entries.get(&id) {
                        let same_run = old.observed.started_at == o.started_at;
                        if same_run && o.state == "running" {
                            o.stopping = old.observed.stopping.clone();
                        }
                    }
                    let prefix = self.common.label_prefix.clone();
                    self.entries.insert(id, Entry::new(o, &prefix));
                }
            }
        }
        Ok(())
    }

    /// Keeps a not-enabled container in the report without inspecting it.
    fn note_disabled(&mut self, id: &str, event: &Event, labels: std::collections::BTreeMap<String, String>) {
        let prefix = self.common.label_prefix.clone();
        let state = match event.action.as_str() {
            "start" | "restart" | "unpause" => "running",
            "die" | "stop" => "exited",
            "pause" => "paused",
            "create" => "created",
            _ => "",
        };
        let entry = self.entries.entry(id.to_string()).or_insert_with(|| {
            Entry::new(
                Observed {
                    id: id.to_string(),
                    labels,
                    ..Default::default()
                },
                &prefix,
            )
        });
        if let Some(name) = event.actor.attributes.get("name") {
            entry.observed.name = name.trim_start_matches('/').to_string();
        }
        if !state.is_empty() && event.kind == "container" {
            entry.observed.state = state.to_string();
        }
    }

    /// Rebuilds the fragment from the cache and sends it when something changed.
    fn send(&mut self) -> bool {
        let all: HashMap<String, Observed> = self.entries.iter().map(|(id, e)| (id.clone(), e.observed.clone())).collect();
        let ctx = Context {
            common: self.common,
            provider: self.handle.name(),
            me: self.me.as_ref(),
            all: &all,
        };
        let decided = self.entries.values().map(|e| decide(&e.observed, &e.labels, &ctx)).collect();
        let (config, items) = assemble(decided);
        let current = (config, items);
        if self.last_sent.as_ref() == Some(&current) {
            return true;
        }
        self.last_sent = Some(current.clone());
        let (config, items) = current;
        self.handle.send_config_with_items(config, items)
    }
}
