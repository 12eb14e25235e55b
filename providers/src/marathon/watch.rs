//! The provider's task: list everything, then follow the event stream, re-reading only the apps
//! an event names.
//!
//! Per-app results are cached ([`Catalog`]): an event about `/shop/web` costs one
//! `GET /v2/apps/shop/web`, one evaluation of that app, and a merge of the cached fragments of
//! every app (cheap: no parsing, no I/O). The stream is opened *before* the full list is read, so
//! nothing that happens between the two is missed; after any disconnect the list is read again
//! in full, because events sent while nobody listened are gone. Events that arrive together are
//! handled together (one re-read per app named, however many events named it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::backoff::Backoff;
use crate::error::ProviderError;
use crate::labels::Merger;
use crate::model::DynamicConfig;
use crate::provider::{Decision, ItemReport, ProviderHandle};

use super::api::{self, Affected, App};
use super::client::{Apps, MarathonClient};
use super::config::Settings;
use super::sse::EventStream;
use super::translate::{self, AppOutcome, Rules};

/// The provider name (`name@marathon`).
pub const PROVIDER: &str = "marathon";

/// A session that lasted this long resets the reconnect delay.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Every app's latest JSON and outcome, and what was last sent.
#[derive(Default)]
pub struct Catalog {
    apps: BTreeMap<String, (App, AppOutcome)>,
    unreadable: BTreeMap<String, String>,
    last_sent: Option<(DynamicConfig, Vec<ItemReport>)>,
}

impl Catalog {
    /// Replaces everything with a full list.
    pub fn replace_all(&mut self, list: Apps, rules: &Rules, now: SystemTime) {
        self.apps.clear();
        self.unreadable.clear();
        for app in list.apps {
            let outcome = translate::evaluate(&app, rules, now);
            self.apps.insert(app.id.clone(), (app, outcome));
        }
        for (id, why) in list.unreadable {
            self.unreadable.insert(id, why);
        }
    }

    /// Replaces one app: `None` = it no longer exists, `Some(Err)` = it cannot be read.
    pub fn update_app(&mut self, id: &str, app: Option<Result<App, String>>, rules: &Rules, now: SystemTime) {
        self.apps.remove(id);
        self.unreadable.remove(id);
        match app {
            None => {}
            Some(Err(why)) => {
                self.unreadable.insert(id.to_string(), why);
            }
            Some(Ok(app)) => {
                let outcome = translate::evaluate(&app, rules, now);
                // Keyed by the ID asked for, so a later event for it finds this entry.
                self.apps.insert(id.to_string(), (app, outcome));
            }
        }
    }

    /// Re-evaluates the apps with a time-based decision due by `now`; true if any was.
    pub fn recheck(&mut self, rules: &Rules, now: SystemTime) -> bool {
        let mut any = false;
        for (app, outcome) in self.apps.values_mut() {
            if outcome.recheck_at.is_some_and(|at| at <= now) {
                *outcome = translate::evaluate(app, rules, now);
                any = true;
            }
        }
        any
    }

    /// The earliest pending time-based decision.
    pub fn next_recheck(&self) -> Option<SystemTime> {
        self.apps.values().filter_map(|(_, o)| o.recheck_at).min()
    }

    /// Merges every app's fragments (apps and tasks in ID order) and builds the item reports.
    pub fn build(&self) -> (DynamicConfig, Vec<ItemReport>) {
        let mut merger = Merger::default();
        let mut default_names: HashMap<&str, &str> = HashMap::new();
        let mut items = Vec::with_capacity(self.apps.len() * 4 + self.unreadable.len());
        for (id, (_, outcome)) in &self.apps {
            let mut report = outcome.report.clone();
            let mut tasks: Vec<ItemReport> = Vec::with_capacity(outcome.tasks.len());
            // Two app IDs can normalise to one name (`/a/b`, `/a-b`); pooling their servers in
            // one service by accident would be wrong, so the second is left out and told why.
            let uses_default_name = outcome
                .tasks
                .iter()
                .filter_map(|t| t.fragment.as_ref())
                .any(|f| f.http.services.contains_key(&outcome.name) || f.http.routers.contains_key(&outcome.name));
            let taken_by = uses_default_name
                .then(|| default_names.get(outcome.name.as_str()).copied())
                .flatten();
            if uses_default_name && taken_by.is_none() {
                default_names.insert(&outcome.name, id);
            }
            for task in &outcome.tasks {
                let mut item = task.report.clone();
                match (&task.fragment, taken_by) {
                    (Some(_), Some(first)) => {
                        item.decision = Decision::Skipped;
                        item.reasons.push(format!(
                            "the name `{}` is already used by app `{first}` (app IDs normalise to the same name); name this app's router and service with labels",
                            outcome.name
                        ));
                        item.routers.clear();
                        item.services.clear();
                        item.addresses.clear();
                    }
                    (Some(fragment), None) => {
                        let conflicts = merger.add(fragment);
                        let lost = fragment
                            .http
                            .services
                            .keys()
                            .filter(|s| conflicts.iter().any(|c| c.starts_with(&format!("service `{s}`"))))
                            .count();
                        if lost > 0 && lost == fragment.http.services.len() {
                            item.decision = Decision::Skipped;
                            item.addresses.clear();
                        }
                        item.reasons.extend(conflicts);
                    }
                    (None, _) => {}
                }
                tasks.push(item);
            }
            let routed: Vec<&ItemReport> = tasks.iter().filter(|t| t.decision == Decision::Routed).collect();
            report.decision = if routed.is_empty() { Decision::Skipped } else { Decision::Routed };
            if report.reasons.is_empty() {
                report.reasons.push(format!("{} of {} tasks routed", routed.len(), tasks.len()));
            }
            let mut routers = BTreeSet::new();
            let mut services = BTreeSet::new();
            for t in &routed {
                routers.extend(t.routers.iter().cloned());
                services.extend(t.services.iter().cloned());
            }
            report.routers = routers.into_iter().collect();
            report.services = services.into_iter().collect();
            items.push(report);
            items.extend(tasks);
        }
        for (id, why) in &self.unreadable {
            items.push(ItemReport {
                kind: "app".into(),
                name: id.clone(),
                reasons: vec![format!("the app cannot be read: {why}")],
                ..Default::default()
            });
        }
        (merger.finish(), items)
    }

    /// Forgets what was sent, so the next [`Catalog::publish`] sends even an unchanged fragment
    /// (after an error, that is what clears the provider's error status).
    pub fn invalidate(&mut self) {
        self.last_sent = None;
    }

    /// Sends the merged fragment if it differs from the last one sent; false when the
    /// aggregator is gone.
    pub fn publish(&mut self, handle: &ProviderHandle) -> bool {
        let built = self.build();
        if self.last_sent.as_ref() == Some(&built) {
            return true;
        }
        self.last_sent = Some(built.clone());
        handle.send_config_with_items(built.0, built.1)
    }
}

/// How a session ended without an error.
enum Ended {
    /// Marathon closed the stream (leader change, restart): reconnect.
    StreamClosed,
    /// Nothing more to do (`watch = false` after a good list, or the aggregator is gone).
    Done,
}

/// Runs the provider until the aggregator goes away.
pub async fn run(settings: Settings, handle: ProviderHandle) {
    for warning in &settings.warnings {
        tracing::warn!(provider = PROVIDER, "{warning}");
    }
    let mut client = MarathonClient::new(&settings);
    let mut catalog = Catalog::default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let mut listed = false;
        let started = tokio::time::Instant::now();
        let result = session(&settings, &mut client, &mut catalog, &handle, &mut listed).await;
        // Only a session that lasted resets the delay: a stream that some proxy closes right
        // after it opens must not turn into a full re-list ten times a second.
        if listed && started.elapsed() >= STABLE_SESSION {
            backoff.reset();
        }
        match result {
            Ok(Ended::Done) => return,
            Ok(Ended::StreamClosed) => {
                tracing::info!(provider = PROVIDER, endpoint = %client.preferred(), "Marathon closed the event stream; reconnecting");
            }
            Err(e) => {
                catalog.invalidate();
                if !handle.report_error(&e.note("keeping the last good configuration, retrying")) {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn rules(settings: &Settings) -> Rules<'_> {
    Rules {
        prefix: &settings.prefix,
        exposed_by_default: settings.exposed_by_default,
        default_rule: &settings.default_rule,
        respect_readiness_checks: settings.respect_readiness_checks,
        force_task_hostname: settings.force_task_hostname,
        provider: PROVIDER,
    }
}

/// One connection: open the stream, list everything, then follow events until something fails.
async fn session(
    settings: &Settings,
    client: &mut MarathonClient,
    catalog: &mut Catalog,
    handle: &ProviderHandle,
    listed: &mut bool,
) -> Result<Ended, ProviderError> {
    let rules = rules(settings);
    let mut stream = if settings.watch {
        let events = client.events().await?;
        tracing::info!(provider = PROVIDER, url = %events.url, "Marathon event stream attached");
        Some(EventStream::new(events.body, settings.idle_timeout))
    } else {
        None
    };
    let started = std::time::Instant::now();
    let apps = client.apps().await?;
    let count = apps.apps.len();
    catalog.replace_all(apps, &rules, SystemTime::now());
    *listed = true;
    tracing::debug!(provider = PROVIDER, apps = count, elapsed = ?started.elapsed(), "Marathon apps listed");
    if !catalog.publish(handle) {
        return Ok(Ended::Done);
    }
    let Some(stream) = stream.as_mut() else {
        return Ok(Ended::Done);
    };
    loop {
        let recheck = catalog.next_recheck().map(|at| {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + wait
        });
        let first = tokio::select! {
            event = stream.next() => event,
            _ = sleep_until_some(recheck) => {
                if catalog.recheck(&rules, SystemTime::now()) && !catalog.publish(handle) {
                    return Ok(Ended::Done);
                }
                continue;
            }
        };
        let mut full = false;
        let mut ids = BTreeSet::new();
        let mut ended = false;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event? {
                None => {
                    ended = true;
                    break;
                }
                Some(event) => {
                    tracing::debug!(provider = PROVIDER, event = %event.event_type, "Marathon event");
                    match api::affected(&event.event_type, &event.data) {
                        Affected::Nothing => {}
                        Affected::All => full = true,
                        Affected::Apps(apps) => ids.extend(apps),
                    }
                }
            }
            next = stream.try_next();
        }
        if full {
            let apps = client.apps().await?;
            catalog.replace_all(apps, &rules, SystemTime::now());
        } else {
            for id in &ids {
                let app = client.app(id).await?;
                catalog.update_app(id, app, &rules, SystemTime::now());
            }
        }
        if (full || !ids.is_empty()) && !catalog.publish(handle) {
            return Ok(Ended::Done);
        }
        if ended {
            return Ok(Ended::StreamClosed);
        }
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::DefaultRule;

    fn app(json: serde_json::Value) -> App {
        serde_json::from_value(json).unwrap()
    }

    fn web(id: &str, host: &str, ports: &[u16]) -> App {
        let tasks: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| serde_json::json!({"id": format!("t{i}"), "host": host, "ports": [p], "state": "TASK_RUNNING"}))
            .collect();
        app(serde_json::json!({"id": id, "labels": {"drover.enable": "true"}, "tasks": tasks}))
    }

    fn with_rules<T>(f: impl FnOnce(&Rules) -> T) -> T {
        let rule = DefaultRule::default();
        f(&Rules {
            prefix: "drover",
            exposed_by_default: false,
            default_rule: &rule,
            respect_readiness_checks: false,
            force_task_hostname: false,
            provider: PROVIDER,
        })
    }

    #[test]
    fn one_app_is_replaced_and_the_rest_kept() {
        with_rules(|rules| {
            let now = SystemTime::now();
            let mut catalog = Catalog::default();
            catalog.replace_all(
                Apps {
                    apps: vec![web("/shop/web", "10.0.0.1", &[8001, 8002]), web("/shop/api", "10.0.0.2", &[9001])],
                    unreadable: vec![("/broken".into(), "invalid type".into())],
                },
                rules,
                now,
            );
            let (config, items) = catalog.build();
            assert_eq!(config.http.services["shop-web"].load_balancer.as_ref().unwrap().servers.len(), 2);
            assert_eq!(items.iter().filter(|i| i.kind == "app").count(), 3);
            let broken = items.iter().find(|i| i.name == "/broken").unwrap();
            assert_eq!(broken.decision, Decision::Skipped);
            assert!(broken.reasons[0].contains("cannot be read: invalid type"));
            let web_report = items.iter().find(|i| i.kind == "app" && i.name == "/shop/web").unwrap();
            assert_eq!(web_report.decision, Decision::Routed);
            assert_eq!(web_report.reasons, vec!["2 of 2 tasks routed"]);
            assert_eq!(web_report.services, vec!["shop-web@marathon"]);

            let mut fewer = web("/shop/web", "10.0.0.1", &[8001, 8002]);
            fewer.tasks[1].state = "TASK_KILLED".into();
            catalog.update_app("/shop/web", Some(Ok(fewer)), rules, now);
            let (config, items) = catalog.build();
            let servers = &config.http.services["shop-web"].load_balancer.as_ref().unwrap().servers;
            assert_eq!(servers.len(), 1);
            assert_eq!(servers[0].url, "http://10.0.0.1:8001");
            assert!(config.http.services.contains_key("shop-api"), "other apps untouched");
            let killed = items.iter().find(|i| i.id == "t1" && i.name == "/shop/web").unwrap();
            assert!(killed.reasons[0].contains("TASK_KILLED"));

            catalog.update_app("/shop/web", None, rules, now);
            let (config, _) = catalog.build();
            assert!(!config.http.services.contains_key("shop-web"), "a removed app is gone");
        });
    }

    #[test]
    fn colliding_normalised_names_are_reported_not_pooled() {
        with_rules(|rules| {
            let mut catalog = Catalog::default();
            catalog.replace_all(
                Apps {
                    apps: vec![web("/a/b", "10.0.0.1", &[1000]), web("/a-b", "10.0.0.2", &[2000])],
                    unreadable: vec![],
                },
                rules,
                SystemTime::now(),
            );
            let (config, items) = catalog.build();
            let servers = &config.http.services["a-b"].load_balancer.as_ref().unwrap().servers;
            assert_eq!(servers.len(), 1);
            assert_eq!(servers[0].url, "http://10.0.0.2:2000", "the first app in ID order keeps the name");
            let loser = items.iter().find(|i| i.kind == "task" && i.name == "/a/b").unwrap();
            assert_eq!(loser.decision, Decision::Skipped);
            assert!(loser.reasons.iter().any(|r| r.contains("already used by app `/a-b`")));
        });
    }

    #[test]
    fn unchanged_state_is_not_resent() {
        with_rules(|rules| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let handle = ProviderHandle::new(PROVIDER, tx);
            let mut catalog = Catalog::default();
            catalog.replace_all(
                Apps {
                    apps: vec![web("/w", "h", &[1])],
                    unreadable: vec![],
                },
                rules,
                SystemTime::now(),
            );
            assert!(catalog.publish(&handle));
            assert!(catalog.publish(&handle));
            assert!(rx.try_recv().is_ok());
            assert!(rx.try_recv().is_err(), "the second, identical fragment was not sent");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        let nominal = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        for n in nominal {
            let d = backoff.next_delay().as_millis();
            assert!(n - n / 5 <= d && d <= n, "{d} ms, nominal {n} ms");
            tokio::time::sleep(Duration::from_millis(d as u64)).await;
        }
        // Nine failures in a row wait between 26.2 s and 32.7 s in all.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(26_160) && waited <= Duration::from_millis(32_700),
            "{waited:?}"
        );
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
