//! Merges every provider's fragment into one validated [`RuntimeConfig`].
//!
//! Providers send full fragments, never diffs, so merging is a pure function of the latest
//! fragment of each provider ([`merge`]). The [`Aggregator`] task keeps those fragments, coalesces
//! bursts of updates and publishes a new configuration at most once per throttle window.
//!
//! Coalescing is *not* a sliding debounce: the first update of a burst opens a window of
//! `throttle` (100 ms by default) and whatever arrived by its end is published. A stream of
//! updates can therefore never postpone a change indefinitely; the worst-case delay is one window.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::model::{DynamicConfig, Service};
use crate::policy::HealthPolicy;
use crate::provider::{ProviderState, ProviderStatus, Update};
use crate::rule;
use crate::runtime::{RouterInfo, RuntimeConfig, ServerSpec, ServiceInfo, Status};

/// Middlewares drover implements (none yet). A router naming any other is disabled rather than
/// run without it: skipping an auth or allow-list middleware would expose what it protects.
const KNOWN_MIDDLEWARES: &[&str] = &[];

/// Qualifies `name` as `name@provider` unless it already names a provider.
pub fn qualify(name: &str, provider: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@{provider}")
    }
}

/// Parsed rules by source text, kept across merges so that a change re-parses only the rules
/// that changed (with thousands of routers, parsing and regex validation dominate a reload).
#[derive(Debug, Default)]
pub struct RuleCache {
    parsed: HashMap<String, Result<rule::Rule, rule::RuleError>>,
    used: HashSet<String>,
}

impl RuleCache {
    fn parse(&mut self, source: &str) -> Result<rule::Rule, rule::RuleError> {
        if !self.used.contains(source) {
            self.used.insert(source.to_string());
        }
        if let Some(hit) = self.parsed.get(source) {
            return hit.clone();
        }
        let parsed = rule::parse(source);
        self.parsed.insert(source.to_string(), parsed.clone());
        parsed
    }

    /// Forgets the rules the last merge did not use.
    fn sweep(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.parsed.retain(|source, _| used.contains(source));
    }
}

/// Merges the fragments (provider name → its config) into a validated runtime configuration.
/// `entry_points` are the entrypoint names of the static configuration.
pub fn merge<'a>(fragments: impl IntoIterator<Item = (&'a str, &'a DynamicConfig)>, entry_points: &[String]) -> RuntimeConfig {
    merge_cached(fragments, entry_points, &mut RuleCache::default())
}

/// [`merge`], reusing (and refreshing) parsed rules from `cache`.
pub fn merge_cached<'a>(
    fragments: impl IntoIterator<Item = (&'a str, &'a DynamicConfig)>,
    entry_points: &[String],
    cache: &mut RuleCache,
) -> RuntimeConfig {
    let mut out = RuntimeConfig::default();
    let fragments: Vec<_> = fragments.into_iter().collect();
    for (provider, config) in &fragments {
        let unsupported = config.unsupported();
        for (name, service) in &config.http.services {
            let info = validate_service(name, provider, service, &unsupported);
            out.services.insert(info.name.clone(), info);
        }
    }
    for (provider, config) in &fragments {
        let unsupported = config.unsupported();
        for (name, router) in &config.http.routers {
            let mut info = validate_router(name, provider, router, entry_points, &unsupported, cache);
            match out.services.get_mut(&info.service) {
                None => disable(
                    &mut info.status,
                    &mut info.errors,
                    format!("the service `{}` does not exist", info.service),
                ),
                Some(service) => {
                    service.used_by.push(info.name.clone());
                    if service.status == Status::Disabled {
                        disable(
                            &mut info.status,
                            &mut info.errors,
                            format!("the service `{}` is disabled", info.service),
                        );
                    }
                }
            }
            if info.status == Status::Disabled {
                tracing::warn!(router = %info.name, "router disabled: {}", info.errors.join("; "));
            }
            out.routers.insert(info.name.clone(), info);
        }
    }
    cache.sweep();
    out
}

fn disable(status: &mut Status, errors: &mut Vec<String>, why: String) {
    *status = Status::Disabled;
    errors.push(why);
}

fn warn(status: &mut Status, errors: &mut Vec<String>, why: String) {
    if *status == Status::Enabled {
        *status = Status::Warning;
    }
    errors.push(why);
}

fn ignored_keys(unsupported: &[String], prefix: &str, status: &mut Status, errors: &mut Vec<String>) {
    for key in unsupported.iter().filter(|k| k.starts_with(prefix)) {
        warn(status, errors, format!("`{key}` is not supported by drover yet and is ignored"));
    }
}

fn validate_router(
    name: &str,
    provider: &str,
    r: &crate::model::Router,
    entry_points: &[String],
    unsupported: &[String],
    cache: &mut RuleCache,
) -> RouterInfo {
    let mut status = Status::Enabled;
    let mut errors = Vec::new();
    if name.contains('@') {
        disable(&mut status, &mut errors, format!("router name `{name}` must not contain `@`"));
    }
    let parsed = match cache.parse(&r.rule) {
        Ok(rule) => Some(rule),
        Err(e) => {
            disable(&mut status, &mut errors, format!("http.routers.{name}.rule: {e}"));
            None
        }
    };
    let mut using = Vec::new();
    if r.entry_points.is_empty() {
        using = entry_points.to_vec();
    } else {
        for ep in &r.entry_points {
            if entry_points.contains(ep) {
                using.push(ep.clone());
            } else {
                warn(
                    &mut status,
                    &mut errors,
                    format!("entrypoint `{ep}` does not exist (known: {})", entry_points.join(", ")),
                );
            }
        }
        if using.is_empty() {
            disable(&mut status, &mut errors, "none of the router's entrypoints exists".into());
        }
    }
    let service = if r.service.is_empty() {
        disable(&mut status, &mut errors, format!("http.routers.{name}.service is missing"));
        String::new()
    } else {
        qualify(&r.service, provider)
    };
    for m in &r.middlewares {
        let local = m.split('@').next().unwrap_or(m);
        if !KNOWN_MIDDLEWARES.contains(&local) {
            disable(
                &mut status,
                &mut errors,
                format!("middleware `{m}` is not supported by drover yet; the router is disabled rather than run without it"),
            );
        }
    }
    ignored_keys(unsupported, &format!("http.routers.{name}."), &mut status, &mut errors);
    // Traefik's default: the rule's length in bytes.
    let priority = if r.priority != 0 { r.priority } else { r.rule.len() as i64 };
    RouterInfo {
        name: qualify(name, provider),
        provider: provider.to_string(),
        rule: r.rule.clone(),
        parsed,
        priority,
        entry_points: r.entry_points.clone(),
        using,
        service,
        middlewares: r.middlewares.clone(),
        observability: r.observability,
        status,
        errors,
    }
}

fn validate_service(name: &str, provider: &str, s: &Service, unsupported: &[String]) -> ServiceInfo {
    let mut status = Status::Enabled;
    let mut errors = Vec::new();
    let mut servers = Vec::new();
    let mut health = HealthPolicy::default();
    if name.contains('@') {
        disable(&mut status, &mut errors, format!("service name `{name}` must not contain `@`"));
    }
    match &s.load_balancer {
        None => {
            let kind = [
                (s.weighted.is_some(), "weighted"),
                (s.mirroring.is_some(), "mirroring"),
                (s.failover.is_some(), "failover"),
            ]
            .into_iter()
            .find_map(|(present, kind)| present.then_some(kind));
            match kind {
                Some(kind) => disable(
                    &mut status,
                    &mut errors,
                    format!("`{kind}` services are not supported by drover yet"),
                ),
                None => disable(&mut status, &mut errors, format!("http.services.{name} has no loadBalancer")),
            }
        }
        Some(lb) => {
            let mut health_errors = Vec::new();
            health = HealthPolicy::resolve(lb, &format!("http.services.{name}.loadBalancer"), &mut health_errors);
            // A bad health setting must not take the service down: warn and use the default.
            for e in health_errors {
                warn(&mut status, &mut errors, format!("{e}; the default is used"));
            }
            if let Some(strategy) = lb.strategy.as_deref().filter(|s| !s.eq_ignore_ascii_case("wrr")) {
                warn(
                    &mut status,
                    &mut errors,
                    format!("strategy `{strategy}` is not supported; using smooth weighted round robin (wrr)"),
                );
            }
            let mut seen = BTreeSet::new();
            for (i, server) in lb.servers.iter().enumerate() {
                match ServerSpec::parse(&server.url, server.weight.unwrap_or(1)).map(|spec| ServerSpec {
                    tier: server.tier.unwrap_or(0),
                    ..spec
                }) {
                    Err(e) => warn(
                        &mut status,
                        &mut errors,
                        format!("http.services.{name}.loadBalancer.servers[{i}]: {e}; server skipped"),
                    ),
                    Ok(spec) if !seen.insert(spec.authority.clone()) => warn(
                        &mut status,
                        &mut errors,
                        format!(
                            "http.services.{name}.loadBalancer.servers[{i}]: `{}` is listed twice; the first entry is used",
                            spec.url
                        ),
                    ),
                    Ok(spec) => servers.push(spec),
                }
            }
        }
    }
    ignored_keys(unsupported, &format!("http.services.{name}."), &mut status, &mut errors);
    ServiceInfo {
        name: qualify(name, provider),
        provider: provider.to_string(),
        load_balancer: s.load_balancer.clone(),
        servers,
        pass_host_header: s.load_balancer.as_ref().and_then(|lb| lb.pass_host_header).unwrap_or(true),
        health,
        status,
        errors,
        used_by: Vec::new(),
    }
}

struct Fragment {
    config: DynamicConfig,
    status: ProviderStatus,
}

/// The task that owns every provider's latest fragment and publishes merged configurations.
pub struct Aggregator {
    entry_points: Vec<String>,
    throttle: Duration,
    fragments: BTreeMap<Arc<str>, Fragment>,
    generation: u64,
    statuses: watch::Sender<Vec<ProviderStatus>>,
    rules: RuleCache,
}

impl Aggregator {
    /// An aggregator for the given static entrypoints, publishing at most once per `throttle`.
    pub fn new(entry_points: Vec<String>, throttle: Duration) -> Self {
        Self {
            entry_points,
            throttle,
            fragments: BTreeMap::new(),
            generation: 0,
            statuses: watch::channel(Vec::new()).0,
            rules: RuleCache::default(),
        }
    }

    /// Every provider's status, updated as updates arrive.
    pub fn statuses(&self) -> watch::Receiver<Vec<ProviderStatus>> {
        self.statuses.subscribe()
    }

    /// Registers a provider before it has sent anything, so its status shows `pending`.
    pub fn expect_provider(&mut self, name: &str) {
        let status = ProviderStatus {
            name: name.to_string(),
            ..Default::default()
        };
        self.fragments.entry(name.into()).or_insert(Fragment {
            config: DynamicConfig::default(),
            status,
        });
        self.publish_statuses();
    }

    /// Runs until every sender is dropped, calling `publish` with each new configuration.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Update>, mut publish: impl FnMut(Arc<RuntimeConfig>)) {
        while let Some(first) = rx.recv().await {
            let mut changed = self.apply(first);
            let window_end = Instant::now() + self.throttle;
            loop {
                tokio::select! {
                    update = rx.recv() => match update {
                        Some(update) => changed |= self.apply(update),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(window_end) => break,
                }
            }
            self.publish_statuses();
            if changed {
                self.generation += 1;
                let mut config = merge_cached(
                    self.fragments.iter().map(|(p, f)| (&**p, &f.config)),
                    &self.entry_points,
                    &mut self.rules,
                );
                config.generation = self.generation;
                tracing::info!(
                    generation = self.generation,
                    routers = config.routers.len(),
                    services = config.services.len(),
                    "configuration published"
                );
                publish(Arc::new(config));
            }
        }
    }

    /// Applies one update; true when the merged configuration may have changed.
    fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Config { provider, config, items } => {
                let now = SystemTime::now();
                let fragment = self.fragments.entry(provider.clone()).or_insert_with(|| Fragment {
                    config: DynamicConfig::default(),
                    status: ProviderStatus {
                        name: provider.to_string(),
                        ..Default::default()
                    },
                });
                let status = &mut fragment.status;
                status.state = ProviderState::Ok;
                status.last_sync = Some(now);
                status.last_error = None;
                status.last_error_at = None;
                status.syncs += 1;
                status.routers = config.http.routers.len();
                status.services = config.http.services.len();
                if let Some(items) = items {
                    status.items = items;
                }
                let changed = fragment.config != config;
                fragment.config = config;
                changed
            }
            Update::Error { provider, error } => {
                let fragment = self.fragments.entry(provider.clone()).or_insert_with(|| Fragment {
                    config: DynamicConfig::default(),
                    status: ProviderStatus {
                        name: provider.to_string(),
                        ..Default::default()
                    },
                });
                fragment.status.state = ProviderState::Error;
                fragment.status.errors += 1;
                fragment.status.last_error = Some(error);
                fragment.status.last_error_at = Some(SystemTime::now());
                false
            }
        }
    }

    fn publish_statuses(&self) {
        let statuses = self.fragments.values().map(|f| f.status.clone()).collect();
        self.statuses.send_replace(statuses);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> DynamicConfig {
        DynamicConfig::from_toml(text).expect("test config parses")
    }

    #[test]
    fn a_broken_router_is_disabled_and_explained_while_others_work() {
        let file = config(
            r#"
            [http.routers.good]
            rule = "Host(`a.local`)"
            service = "s"
            [http.routers.badrule]
            rule = "Host(`a.local`"
            service = "s"
            [http.routers.orphan]
            rule = "Path(`/x`)"
            service = "missing"
            [http.routers.cross]
            rule = "Path(`/y`)"
            service = "other@docker"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:9001"
            "#,
        );
        let docker = config(
            r#"
            [[http.services.other.loadBalancer.servers]]
            url = "http://127.0.0.1:9002"
            "#,
        );
        let eps = vec!["web".to_string()];
        let rc = merge([("file", &file), ("docker", &docker)], &eps);
        assert_eq!(rc.routers["good@file"].status, Status::Enabled);
        assert_eq!(rc.routers["good@file"].priority, "Host(`a.local`)".len() as i64);
        assert_eq!(rc.routers["badrule@file"].status, Status::Disabled);
        assert!(
            rc.routers["badrule@file"].errors[0].contains("http.routers.badrule.rule: column"),
            "{:?}",
            rc.routers["badrule@file"].errors
        );
        assert_eq!(rc.routers["orphan@file"].status, Status::Disabled);
        assert!(rc.routers["orphan@file"].errors[0].contains("`missing@file` does not exist"));
        assert_eq!(rc.routers["cross@file"].status, Status::Enabled);
        assert_eq!(rc.services["other@docker"].used_by, vec!["cross@file".to_string()]);
        assert_eq!(rc.routers["good@file"].using, eps);
    }

    #[test]
    fn unsupported_keys_warn_and_unsupported_middlewares_disable() {
        let file = config(
            r#"
            [http.routers.r]
            rule = "Path(`/`)"
            service = "s"
            middlewares = ["auth"]
            [http.routers.t]
            rule = "Path(`/t`)"
            service = "s"
            entryPoints = ["web", "nope"]
            [http.routers.t.tls]
            [http.services.s.loadBalancer]
            strategy = "p2c"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:1"
            [[http.services.s.loadBalancer.servers]]
            url = "https://127.0.0.1:2"
            "#,
        );
        let rc = merge([("file", &file)], &["web".to_string()]);
        assert_eq!(rc.routers["r@file"].status, Status::Disabled);
        let t = &rc.routers["t@file"];
        assert_eq!(t.status, Status::Warning);
        assert_eq!(t.using, vec!["web".to_string()]);
        assert!(t.errors.iter().any(|e| e.contains("`nope` does not exist")));
        assert!(t.errors.iter().any(|e| e.contains("http.routers.t.tls")));
        let s = &rc.services["s@file"];
        assert_eq!(s.status, Status::Warning);
        assert_eq!(s.servers.len(), 1);
        assert!(s.errors.iter().any(|e| e.contains("p2c")));
    }

    #[test]
    fn router_observability_is_kept_and_only_tracing_is_reported() {
        let file = config(
            r#"
            [http.routers.r]
            rule = "Path(`/`)"
            service = "s"
            [http.routers.r.observability]
            accessLogs = false
            tracing = true
            [http.routers.plain]
            rule = "Path(`/p`)"
            service = "s"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:1"
            "#,
        );
        let rc = merge([("file", &file)], &["web".to_string()]);
        let r = &rc.routers["r@file"];
        let o = r.observability.unwrap();
        assert_eq!((o.access_logs, o.metrics), (Some(false), None));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.errors.iter().any(|e| e.contains("http.routers.r.observability.tracing")),
            "{:?}",
            r.errors
        );
        assert!(!r.errors.iter().any(|e| e.contains("observability.accessLogs")));
        assert_eq!(rc.routers["plain@file"].observability, None);
        assert_eq!(rc.routers["plain@file"].status, Status::Enabled);

        let err = DynamicConfig::from_toml(
            "[http.routers.r]\nrule = \"Path(`/`)\"\nservice = \"s\"\n[http.routers.r.observability]\naccessLog = false\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("accessLog"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let err = DynamicConfig::from_toml("[http.routers.r]\nrule = \"Path(`/`)\"\nservise = \"s\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("servise"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_coalesced_into_one_publication_within_one_window() {
        let (tx, rx) = mpsc::unbounded_channel();
        let agg = Aggregator::new(vec!["web".into()], Duration::from_millis(100));
        let (pub_tx, mut pub_rx) = mpsc::unbounded_channel();
        tokio::spawn(agg.run(rx, move |rc| {
            let _ = pub_tx.send((Instant::now(), rc));
        }));
        let handle = crate::ProviderHandle::new("file", tx);
        let start = Instant::now();
        for i in 0..20u32 {
            let mut c = DynamicConfig::default();
            c.http.services.insert(format!("s{i}"), Default::default());
            handle.send_config(c);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (at, first) = pub_rx.recv().await.expect("a publication");
        assert_eq!(
            at - start,
            Duration::from_millis(100),
            "published at the end of the first window, not postponed"
        );
        assert!(first.services.len() == 1);
        let (_, second) = pub_rx.recv().await.expect("the rest of the burst");
        assert!(second.services.contains_key("s19@file"));
        assert_eq!(second.generation, 2);
    }
}
