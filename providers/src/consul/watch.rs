//! The provider task: two blocking watches, targeted refreshes, one full fragment per change.
//!
//! Two loops run beside the main task, each holding one blocking query:
//!
//! * `/v1/catalog/services` moves when an instance is registered, deregistered or re-tagged. Its
//!   body (name → union of tags) cannot say *which* service's instances changed (a third
//!   instance of `web` with the same tags leaves it identical), and one index step can cover
//!   several writes, so a move re-lists the instances of every candidate service.
//! * `/v1/health/state/any` moves when any check changes: a check going critical, a node failing
//!   (`serfHealth`), maintenance mode. The check list is compared with the checks held for each
//!   service ([`crate::consul::changes`]), and only the services that differ are re-listed.
//!
//! Instance lists come from `/v1/health/service/<name>` (non-blocking, at most [`PARALLEL`] at a
//! time). The fragment is rebuilt from everything held and sent whole; the aggregator ignores a
//! fragment equal to the last one.
//!
//! A failed request (unreachable, 5xx, 403, unreadable answer) is reported through the handle —
//! the aggregator keeps the last good routes and shows the error — the loop backs off, and after
//! it recovers it starts again from index 0, which re-lists everything: events missed during an
//! outage cannot be replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::consul::blocking::{Index, Observed, TokenBucket};
use crate::consul::catalog::{self, HealthCheck, ServiceEntry};
use crate::consul::changes::touched_by_checks;
use crate::consul::client::{ConsulClient, ConsulError};
use crate::consul::translate::{self, Built, Settings};
use crate::error::ProviderError;
use crate::http_client::encode;
use crate::provider::{Decision, ItemReport, ProviderHandle};

/// Instance lists fetched at the same time (each holds one connection to the agent).
pub const PARALLEL: usize = 4;
/// First delay after a failure; doubles up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest delay between attempts while Consul is unreachable or failing.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest delay between attempts while Consul refuses the token (it will not fix itself soon,
/// but an operator fixing the ACL should not wait long either).
const FORBIDDEN_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the watch loops tell the main task.
#[derive(Debug)]
enum Event {
    /// `/v1/catalog/services` answered with a new index.
    Services {
        services: BTreeMap<String, Vec<String>>,
        filtered_by_acls: bool,
    },
    /// `/v1/health/state/any` answered with a new index.
    Checks { checks: Vec<HealthCheck> },
    /// A watch request failed; it retries after `retry_in`.
    Failed {
        watch: Watch,
        error: ConsulError,
        retry_in: Duration,
    },
}

/// The two watched endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// `/v1/catalog/services`.
    Services,
    /// `/v1/health/state/any`.
    Checks,
}

impl Watch {
    /// The endpoint.
    pub fn path(self) -> &'static str {
        match self {
            Watch::Services => "/v1/catalog/services",
            Watch::Checks => "/v1/health/state/any",
        }
    }
}

/// How the watches pace themselves.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Blocking `wait`.
    pub wait: Duration,
    /// Token-bucket burst.
    pub burst: u32,
    /// Token-bucket refill interval.
    pub refill: Duration,
}

/// Runs the provider until the aggregator goes away.
pub async fn run(client: ConsulClient, settings: Settings, pace: Pace, handle: ProviderHandle) {
    let (tx, mut rx) = mpsc::channel(64);
    let mut watches = JoinSet::new();
    for watch in [Watch::Services, Watch::Checks] {
        watches.spawn(watch_loop(watch, client.clone(), pace, tx.clone()));
    }
    drop(tx);
    let mut state = State::new(settings);
    let mut retry_at: Option<Instant> = None;
    let mut refresh_backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    loop {
        let event = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => Some(event),
                None => return,
            },
            () = sleep_until(retry_at), if retry_at.is_some() => None,
        };
        if let Some(event) = event {
            if !state.apply(event, &handle) {
                return;
            }
        }
        // Coalesce what queued up meanwhile (both watches often fire for one change).
        while let Ok(event) = rx.try_recv() {
            if !state.apply(event, &handle) {
                return;
            }
        }
        if !state.ready() {
            continue;
        }
        if !state.pending() {
            // Nothing to list, but a watch that failed may have recovered: say so.
            if state.failing && state.healthy() && !state.publish(&handle) {
                return;
            }
            continue;
        }
        retry_at = None;
        let failures = state.refresh(&client).await;
        if failures.is_empty() {
            refresh_backoff.reset();
            state.refresh_error = None;
        } else {
            let delay = refresh_backoff.next_delay();
            retry_at = Some(Instant::now() + delay);
            let list: Vec<String> = failures.iter().map(|(name, e)| format!("`{name}`: {e}")).collect();
            let message = format!(
                "listing instances failed for {}; keeping their last known instances, retrying in {delay:?}",
                list.join("; ")
            );
            // Classified as the first failure: one cause (an outage, a token) usually fails them all.
            state.refresh_error = failures
                .into_iter()
                .next()
                .map(|(_, first)| ProviderError::from(first).retold(message));
        }
        if !state.publish(&handle) {
            return;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One blocking loop: obeys the index rules, spends a token per request, backs off on failure.
async fn watch_loop(watch: Watch, client: ConsulClient, pace: Pace, tx: mpsc::Sender<Event>) {
    let mut index = Index::default();
    let mut bucket = TokenBucket::new(pace.burst, pace.refill);
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    let mut forbidden = Backoff::new(BACKOFF_BASE, FORBIDDEN_BACKOFF_MAX);
    let mut resync = true;
    loop {
        bucket.take().await;
        let blocking = index.query().map(|i| (i, pace.wait));
        let result = client.get(watch.path(), blocking).await.and_then(|answer| {
            match index.observe(answer.index) {
                Observed::Reset => {
                    tracing::warn!(
                        endpoint = watch.path(),
                        index = answer.index,
                        "Consul's index went backwards (snapshot restore?); starting over from index 0"
                    );
                    resync = true;
                    return Ok(None);
                }
                Observed::Unchanged if !resync => return Ok(None),
                Observed::Unchanged | Observed::Changed => {}
            }
            let event = match watch {
                Watch::Services => catalog::parse_services(&answer.body).map(|services| Event::Services {
                    services,
                    filtered_by_acls: answer.filtered_by_acls,
                }),
                Watch::Checks => catalog::parse_checks(&answer.body).map(|checks| Event::Checks { checks }),
            };
            event.map(Some).map_err(ConsulError::bad_response)
        });
        match result {
            Ok(None) => {
                backoff.reset();
                forbidden.reset();
            }
            Ok(Some(event)) => {
                backoff.reset();
                forbidden.reset();
                resync = false;
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // Whatever happened while we could not look is lost: start over from index 0.
                index.reset();
                resync = true;
                let retry_in = if error.is_forbidden() {
                    backoff.reset();
                    forbidden.next_delay()
                } else {
                    forbidden.reset();
                    backoff.next_delay()
                };
                if tx.send(Event::Failed { watch, error, retry_in }).await.is_err() {
                    return;
                }
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}

/// What the main task holds between changes.
struct State {
    settings: Settings,
    /// The last service list (name → tag union); `None` until the first answer.
    catalog: Option<BTreeMap<String, Vec<String>>>,
    filtered_by_acls: bool,
    /// Instances of each candidate service, as last listed.
    held: BTreeMap<String, Vec<ServiceEntry>>,
    /// Re-list every candidate service.
    full: bool,
    /// Re-list these services.
    dirty: BTreeSet<String>,
    /// What was last sent.
    sent: Option<Built>,
    /// An error was reported after the last fragment: the next one must be sent even if equal,
    /// so the provider's status returns to ok.
    failing: bool,
    /// The last error of each watch, until it answers again.
    watch_errors: [Option<ProviderError>; 2],
    /// Instance lists that could not be read, until they are.
    refresh_error: Option<ProviderError>,
}

impl State {
    fn new(settings: Settings) -> Self {
        Self {
            settings,
            catalog: None,
            filtered_by_acls: false,
            held: BTreeMap::new(),
            full: false,
            dirty: BTreeSet::new(),
            sent: None,
            failing: false,
            watch_errors: [None, None],
            refresh_error: None,
        }
    }

    /// No watch is failing and every instance list could be read.
    fn healthy(&self) -> bool {
        self.watch_errors.iter().all(Option::is_none) && self.refresh_error.is_none()
    }

    fn ready(&self) -> bool {
        self.catalog.is_some()
    }

    fn pending(&self) -> bool {
        self.full || !self.dirty.is_empty()
    }

    fn candidates(&self) -> BTreeSet<String> {
        self.catalog
            .iter()
            .flatten()
            .filter(|(_, tags)| self.settings.is_candidate(tags))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Takes in one event; false when the aggregator is gone.
    fn apply(&mut self, event: Event, handle: &ProviderHandle) -> bool {
        match event {
            Event::Services {
                services,
                filtered_by_acls,
            } => {
                self.watch_errors[Watch::Services as usize] = None;
                self.catalog = Some(services);
                self.filtered_by_acls = filtered_by_acls;
                self.full = true;
                true
            }
            Event::Checks { checks } => {
                self.watch_errors[Watch::Checks as usize] = None;
                if self.catalog.is_some() {
                    let candidates = self.candidates();
                    self.dirty.extend(
                        touched_by_checks(&self.held, &checks)
                            .into_iter()
                            .filter(|s| candidates.contains(s)),
                    );
                }
                true
            }
            Event::Failed { watch, error, retry_in } => {
                self.failing = true;
                let error = ProviderError::from(error).note(format!("keeping the last good routes, retrying in {retry_in:?}"));
                let sent = handle.report_error(&error);
                self.watch_errors[watch as usize] = Some(error);
                sent
            }
        }
    }

    /// Re-lists what is pending; returns the services that could not be listed (they keep their
    /// last known instances and stay pending).
    async fn refresh(&mut self, client: &ConsulClient) -> Vec<(String, ConsulError)> {
        let candidates = self.candidates();
        self.held.retain(|name, _| candidates.contains(name));
        let targets: Vec<String> = if self.full {
            candidates.iter().cloned().collect()
        } else {
            self.dirty.iter().filter(|s| candidates.contains(*s)).cloned().collect()
        };
        self.full = false;
        self.dirty.clear();
        let mut failures = Vec::new();
        let mut queue = targets.into_iter();
        let mut running = JoinSet::new();
        let spawn = |running: &mut JoinSet<_>, name: String| {
            let client = client.clone();
            running.spawn(async move {
                let path = format!("/v1/health/service/{}", encode(&name));
                let result = match client.get(&path, None).await {
                    Ok(answer) => catalog::parse_entries(&name, &answer.body).map_err(ConsulError::bad_response),
                    Err(e) => Err(e),
                };
                (name, result)
            });
        };
        for name in queue.by_ref().take(PARALLEL) {
            spawn(&mut running, name);
        }
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok((name, Ok(entries))) => {
                    // The service may have gone from the catalog between the two calls: `[]`.
                    self.held.insert(name, entries);
                }
                Ok((name, Err(e))) => {
                    self.dirty.insert(name.clone());
                    failures.push((name, e));
                }
                Err(e) => {
                    // A listing task panicked or was cancelled: list everything again later.
                    tracing::error!("a Consul listing task failed: {e}");
                    self.full = true;
                }
            }
            if let Some(name) = queue.next() {
                spawn(&mut running, name);
            }
        }
        failures
    }

    /// Sends the fragment when it differs from the last one (or an error must be cleared).
    fn publish(&mut self, handle: &ProviderHandle) -> bool {
        let Some(catalog) = &self.catalog else { return true };
        let mut built = translate::build(catalog, &self.held, &self.settings);
        if self.filtered_by_acls {
            built.items.insert(
                0,
                ItemReport {
                    kind: "catalog".into(),
                    name: "/v1/catalog/services".into(),
                    decision: Decision::Skipped,
                    reasons: vec![
                        "Consul left out services the ACL token may not read (X-Consul-Results-Filtered-By-ACLs): they are not routed"
                            .into(),
                    ],
                    ..Default::default()
                },
            );
        }
        let healthy = self.healthy();
        if self.sent.as_ref() == Some(&built) && !(self.failing && healthy) {
            return match &self.refresh_error {
                Some(error) => {
                    self.failing = true;
                    handle.report_error(error)
                }
                None => true,
            };
        }
        if !handle.send_config_with_items(built.config.clone(), built.items.clone()) {
            return false;
        }
        self.sent = Some(built);
        self.failing = !healthy;
        // A fragment clears the provider's error; whatever is still failing is said again.
        self.watch_errors
            .iter()
            .flatten()
            .chain(&self.refresh_error)
            .all(|e| handle.report_error(e))
    }
}
