//! Merges every provider's fragment into one validated [`RuntimeConfig`].
//!
//! Providers send full fragments, never diffs, so merging is a pure function of the latest
//! fragment of each provider ([`merge`]). The [`Aggregator`] task reads each provider's mailbox
//! (the newest fragment wins, see [`crate::provider`]), coalesces bursts and publishes the set of
//! fragments ([`Fragments`]) at most once per throttle window; whoever consumes them merges and
//! compiles, off the task that runs the providers.
//!
//! Coalescing is *not* a sliding debounce: the first update of a burst opens a window of
//! `throttle` (100 ms by default) and whatever arrived by its end is published. A stream of
//! updates can therefore never postpone a change indefinitely; the worst-case delay is one window.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::{DynamicConfig, Service};
use crate::policy::HealthPolicy;
use crate::provider::{Mailbox, ProviderHandle, ProviderState, ProviderStatus};
use crate::rule;
use crate::runtime::{RouterInfo, RuntimeConfig, ServerSpec, ServiceInfo, Status, TlsOptionsInfo, TlsRuntime, TransportInfo};

/// Qualifies `name` as `name@provider` unless it already names a provider.
pub fn qualify(name: &str, provider: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@{provider}")
    }
}

/// Rules by source text, kept across reloads so that a change parses, validates and compiles only
/// the rules that changed: with thousands of routers, parsing, regex validation and regex
/// compilation dominate a reload.
///
/// One cache serves both steps: the merge parses ([`RuleCache::parse`]), and whoever compiles
/// rules into a matchable form `C` keeps that form in the same entry ([`RuleCache::compiled`]),
/// so a rule text is looked up, kept and forgotten in one place. A merge forgets the rules no
/// router used.
///
/// It also keeps each router as the merge validated it, by provider and name, with what it was
/// validated from: a router its provider sends again unchanged is not validated again, and its
/// record is shared with the previous configuration rather than rebuilt.
#[derive(Debug)]
pub struct RuleCache<C = ()> {
    /// Rule texts and router names come from providers, not from clients: a fast hasher rather
    /// than SipHash (which was ~10% of a full merge of 10,000 routers).
    entries: FxHashMap<String, CachedRule<C>>,
    /// Validated routers by provider, then by (local) name.
    routers: FxHashMap<String, FxHashMap<String, CachedRouter>>,
    /// The entrypoints the cached routers were validated against.
    entry_points: Vec<String>,
    /// Bumped by every merge; entries not marked with the current value are forgotten.
    epoch: u64,
}

/// A router as validated, before the checks that involve other objects (its service, its
/// middlewares), which every merge makes again.
#[derive(Debug)]
struct CachedRouter {
    /// The router as its provider wrote it.
    from: crate::model::Router,
    /// The unsupported keys of the fragment that concern it.
    ignored: Vec<String>,
    info: Arc<RouterInfo>,
    used: u64,
}

#[derive(Debug)]
struct CachedRule<C> {
    parsed: Result<Arc<rule::Rule>, rule::RuleError>,
    compiled: Option<C>,
    used: u64,
}

impl<C> Default for RuleCache<C> {
    fn default() -> Self {
        Self {
            entries: FxHashMap::default(),
            routers: FxHashMap::default(),
            entry_points: Vec::new(),
            epoch: 0,
        }
    }
}

impl<C> RuleCache<C> {
    /// The rule `source` parses to (or why it does not), parsed only the first time; every
    /// router with this rule text shares the parsed rule.
    pub fn parse(&mut self, source: &str) -> Result<Arc<rule::Rule>, rule::RuleError> {
        let epoch = self.epoch;
        if let Some(hit) = self.entries.get_mut(source) {
            hit.used = epoch;
            return hit.parsed.clone();
        }
        let parsed = rule::parse(source).map(Arc::new);
        self.entries.insert(
            source.to_string(),
            CachedRule {
                parsed: parsed.clone(),
                compiled: None,
                used: epoch,
            },
        );
        parsed
    }

    /// The compiled form of `source` (whose parsed form is `rule`), made by `compile` the first
    /// time it is asked for and kept while routers use the rule. Only the merge decides what is
    /// used; a rule that no merge parsed is kept until the next merge's sweep.
    pub fn compiled<E>(&mut self, source: &str, rule: &rule::Rule, compile: impl FnOnce(&rule::Rule) -> Result<C, E>) -> Result<&C, E> {
        if !self.entries.contains_key(source) {
            self.entries.insert(
                source.to_string(),
                CachedRule {
                    parsed: Ok(Arc::new(rule.clone())),
                    compiled: None,
                    used: self.epoch,
                },
            );
        }
        let Some(entry) = self.entries.get_mut(source) else {
            unreachable!("the entry for `{source}` was inserted above")
        };
        let compiled = match entry.compiled.take() {
            Some(compiled) => compiled,
            None => compile(rule)?,
        };
        Ok(entry.compiled.insert(compiled))
    }

    /// Router `name` of `provider` (written as `r`) validated, or as validated by an earlier
    /// merge when `r`, the entrypoints and the unsupported keys that concern it are the same.
    pub(crate) fn router(
        &mut self,
        provider: &str,
        name: &str,
        r: &crate::model::Router,
        entry_points: &[String],
        unsupported: &[String],
    ) -> Arc<RouterInfo> {
        if self.entry_points != entry_points {
            self.routers.clear();
            self.entry_points = entry_points.to_vec();
        }
        // The keys `ignored_keys` reports for this router: those under `http.routers.<name>.`.
        let ignored = || {
            unsupported.iter().filter(move |k| {
                k.strip_prefix("http.routers.")
                    .and_then(|k| k.strip_prefix(name))
                    .is_some_and(|k| k.starts_with('.'))
            })
        };
        let epoch = self.epoch;
        if let Some(hit) = self.routers.get_mut(provider).and_then(|routers| routers.get_mut(name)) {
            if hit.from == *r && hit.ignored.iter().eq(ignored()) {
                hit.used = epoch;
                let info = hit.info.clone();
                // Its rule stays parsed and compiled.
                let _ = self.parse(&r.rule);
                return info;
            }
        }
        let info = Arc::new(validate_router(name, provider, r, entry_points, unsupported, self));
        let cached = CachedRouter {
            from: r.clone(),
            ignored: ignored().cloned().collect(),
            info: info.clone(),
            used: epoch,
        };
        match self.routers.get_mut(provider) {
            Some(routers) => {
                routers.insert(name.to_string(), cached);
            }
            None => {
                self.routers
                    .insert(provider.to_string(), FxHashMap::from_iter([(name.to_string(), cached)]));
            }
        }
        info
    }

    /// Starts a merge's round: what it does not use is forgotten by its [`Self::sweep`]. What a
    /// patch ([`crate::incremental`]) adds between two merges counts as used by the last one.
    fn begin(&mut self) {
        self.epoch += 1;
    }

    /// Forgets the rules and routers the merge did not use.
    fn sweep(&mut self) {
        let epoch = self.epoch;
        self.entries.retain(|_, entry| entry.used == epoch);
        self.routers.retain(|_, routers| {
            routers.retain(|_, router| router.used == epoch);
            !routers.is_empty()
        });
    }

    /// Forgets the validated router `name` of `provider` (gone from its fragment).
    pub(crate) fn forget_router(&mut self, provider: &str, name: &str) {
        if let Some(routers) = self.routers.get_mut(provider) {
            routers.remove(name);
            if routers.is_empty() {
                self.routers.remove(provider);
            }
        }
    }

    /// Forgets the rule `source` (no router uses it any more).
    pub(crate) fn forget_rule(&mut self, source: &str) {
        self.entries.remove(source);
    }

    /// How many rule texts are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no rule is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Merges the fragments (provider name → its config) into a validated runtime configuration.
/// `entry_points` are the entrypoint names of the static configuration.
pub fn merge<'a>(fragments: impl IntoIterator<Item = (&'a str, &'a DynamicConfig)>, entry_points: &[String]) -> RuntimeConfig {
    merge_cached(fragments, entry_points, &mut RuleCache::<()>::default())
}

/// [`merge`], reusing (and refreshing) parsed rules from `cache`.
pub fn merge_cached<'a, C>(
    fragments: impl IntoIterator<Item = (&'a str, &'a DynamicConfig)>,
    entry_points: &[String],
    cache: &mut RuleCache<C>,
) -> RuntimeConfig {
    let mut out = RuntimeConfig::default();
    cache.begin();
    let fragments: Vec<_> = fragments.into_iter().collect();
    out.middlewares = crate::middlewares::validate_all(&fragments);
    for (provider, config) in &fragments {
        merge_tls(&mut out.tls, provider, &config.tls);
    }
    for (provider, config) in &fragments {
        let unsupported = config.unsupported();
        for (name, service) in &config.http.services {
            let info = validate_service(name, provider, service, &unsupported);
            out.services.insert(info.name.clone(), info);
        }
        for (name, transport) in &config.http.servers_transports {
            let info = TransportInfo {
                name: qualify(name, provider),
                provider: provider.to_string(),
                transport: transport.clone(),
                status: Status::Enabled,
                errors: Vec::new(),
                used_by: Vec::new(),
            };
            out.servers_transports.insert(info.name.clone(), info);
        }
    }
    link_transports(&mut out);
    crate::composite::resolve_children(&mut out.services);
    // Collected, then built in one go: inserting thousands of names in order into a `BTreeMap`
    // compares each with every name of the nodes along its right edge. Equal names keep the
    // last one, as inserting would.
    let mut routers = Vec::new();
    for (provider, config) in &fragments {
        let unsupported = config.unsupported();
        for (name, router) in &config.http.routers {
            let mut info = cache.router(provider, name, router, entry_points, &unsupported);
            match out.services.get_mut(&info.service) {
                None => {
                    let info = Arc::make_mut(&mut info);
                    disable(
                        &mut info.status,
                        &mut info.errors,
                        format!("the service `{}` does not exist", info.service),
                    )
                }
                Some(service) => {
                    service.used_by.push(info.name.clone());
                    if service.status == Status::Disabled {
                        let info = Arc::make_mut(&mut info);
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
            routers.push((info.name.clone(), info));
        }
    }
    out.routers = routers.into_iter().collect();
    // Middlewares are checked after the routers so that each disabled router says why.
    crate::middlewares::resolve_routers(&mut out);
    out.l4 = crate::tcp::merge(&fragments, entry_points);
    cache.sweep();
    out
}

/// The qualified name of TLS options named `name` by `provider`: `default` is global.
pub fn qualify_tls_options(name: &str, provider: &str) -> String {
    if name == "default" || name.starts_with("default@") {
        "default".to_string()
    } else {
        qualify(name, provider)
    }
}

fn merge_tls(out: &mut TlsRuntime, provider: &str, tls: &crate::model::TlsConfig) {
    for (name, options) in &tls.options {
        let qualified = qualify_tls_options(name, provider);
        if let Some(first) = out.options.get(&qualified) {
            out.errors.push(format!(
                "tls.options.{name} from {provider}: `{qualified}` is already defined by {}; this one is left out",
                first.provider
            ));
            continue;
        }
        out.options.insert(
            qualified.clone(),
            TlsOptionsInfo {
                name: qualified,
                provider: provider.to_string(),
                options: options.clone(),
                status: Status::Enabled,
                errors: Vec::new(),
                used_by: Vec::new(),
            },
        );
    }
    for certificate in &tls.certificates {
        if let Some(store) = certificate.stores.iter().find(|s| *s != "default") {
            out.errors.push(format!(
                "tls.certificates from {provider}: store `{store}` does not exist (only `default` does); the certificate goes to `default`"
            ));
        }
        out.certificates.push((provider.to_string(), certificate.clone()));
    }
    for (name, store) in &tls.stores {
        if name != "default" {
            out.errors.push(format!(
                "tls.stores.{name} from {provider}: only the store named `default` is used; this one is ignored"
            ));
            continue;
        }
        if let Some(certificate) = &store.default_certificate {
            match &out.default_certificate {
                Some((first, _)) => out.errors.push(format!(
                    "tls.stores.default.defaultCertificate from {provider}: {first} already set one; this one is ignored"
                )),
                None => out.default_certificate = Some((provider.to_string(), certificate.clone())),
            }
        }
    }
}

/// Each service's `serversTransport` must exist: a service whose transport is missing is disabled
/// (its routers with it) rather than sent through another transport, which could skip the
/// certificate checks or client certificate it was meant to use.
fn link_transports(out: &mut RuntimeConfig) {
    for service in out.services.values_mut() {
        let Some(transport) = &service.servers_transport else { continue };
        match out.servers_transports.get_mut(transport) {
            Some(info) => info.used_by.push(service.name.clone()),
            None => {
                let local = service.name.split('@').next().unwrap_or(&service.name);
                let why =
                    format!("http.services.{local}.loadBalancer.serversTransport: the servers transport `{transport}` does not exist");
                disable(&mut service.status, &mut service.errors, why);
            }
        }
    }
}

/// Disables an object (status and reason), for checks made after the merge (the proxy's
/// compile step).
pub fn disable_in(status: &mut Status, errors: &mut Vec<String>, why: String) {
    disable(status, errors, why);
}

/// Adds a warning to an object, for checks made after the merge.
pub fn warn_in(status: &mut Status, errors: &mut Vec<String>, why: String) {
    warn(status, errors, why);
}

pub(crate) fn disable(status: &mut Status, errors: &mut Vec<String>, why: String) {
    *status = Status::Disabled;
    errors.push(why);
}

pub(crate) fn warn(status: &mut Status, errors: &mut Vec<String>, why: String) {
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

fn validate_router<C>(
    name: &str,
    provider: &str,
    r: &crate::model::Router,
    entry_points: &[String],
    unsupported: &[String],
    cache: &mut RuleCache<C>,
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
    let using = crate::tcp::using(&r.entry_points, entry_points, &mut status, &mut errors);
    let service = if r.service.is_empty() {
        disable(&mut status, &mut errors, format!("http.routers.{name}.service is missing"));
        String::new()
    } else {
        qualify(&r.service, provider)
    };
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
        tls: r.tls.as_ref().map(|t| crate::model::RouterTls {
            options: t.options.as_ref().map(|o| qualify_tls_options(o, provider)),
            ..t.clone()
        }),
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
    let mut composite = crate::composite::Checked::default();
    match &s.load_balancer {
        None if s.weighted.is_none() && s.failover.is_none() && s.mirroring.is_none() => {
            disable(&mut status, &mut errors, format!("http.services.{name} has no loadBalancer"))
        }
        None => {
            composite = crate::composite::validate(name, provider, s);
            for why in std::mem::take(&mut composite.fatal) {
                disable(&mut status, &mut errors, why);
            }
            for why in std::mem::take(&mut composite.warnings) {
                warn(&mut status, &mut errors, why);
            }
        }
        Some(_) if s.weighted.is_some() || s.failover.is_some() || s.mirroring.is_some() => disable(
            &mut status,
            &mut errors,
            format!("http.services.{name} defines a loadBalancer and a weighted, failover or mirroring service; a service is one kind"),
        ),
        Some(lb) => {
            let mut health_errors = Vec::new();
            health = HealthPolicy::resolve(lb, &format!("http.services.{name}.loadBalancer"), &mut health_errors);
            // A bad health setting must not take the service down: warn and use the default.
            for e in health_errors {
                warn(&mut status, &mut errors, format!("{e}; the default is used"));
            }
            let mut choice_errors = Vec::new();
            composite.choice = crate::balancing::Choice::resolve(
                lb,
                &qualify(name, provider),
                &format!("http.services.{name}.loadBalancer"),
                &mut choice_errors,
            );
            for e in choice_errors {
                warn(&mut status, &mut errors, e);
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
        weighted: composite.weighted,
        failover: composite.failover,
        mirroring: composite.mirroring,
        choice: composite.choice,
        servers,
        pass_host_header: s.load_balancer.as_ref().and_then(|lb| lb.pass_host_header).unwrap_or(true),
        health,
        status,
        errors,
        used_by: Vec::new(),
        servers_transport: s
            .load_balancer
            .as_ref()
            .and_then(|lb| lb.servers_transport.as_deref())
            .map(|t| qualify(t, provider)),
    }
}

/// What the aggregator publishes: every provider's newest fragment, by provider name. Cheap to
/// clone (the fragments are shared), so it crosses to the thread that merges and compiles.
#[derive(Clone, Debug, Default)]
pub struct Fragments {
    /// Increases by one with every publication; becomes the configuration's generation.
    pub generation: u64,
    /// Provider name → its newest fragment, in name order.
    pub fragments: Vec<(Arc<str>, Arc<DynamicConfig>)>,
}

impl Fragments {
    /// Merges the fragments (see [`merge_cached`]) into the configuration of this generation.
    pub fn merge<C>(&self, entry_points: &[String], cache: &mut RuleCache<C>) -> RuntimeConfig {
        let mut config = merge_cached(self.fragments.iter().map(|(p, c)| (&**p, &**c)), entry_points, cache);
        config.generation = self.generation;
        config
    }
}

/// One provider as the aggregator sees it.
struct Source {
    name: Arc<str>,
    mailbox: Mailbox,
    /// False once every handle of the provider was dropped (its last word still counts).
    open: bool,
    config: Arc<DynamicConfig>,
    status: ProviderStatus,
}

impl Source {
    /// The provider sent a fragment or reported an error at least once (or is gone).
    fn has_spoken(&self) -> bool {
        let posted = self.mailbox.borrow();
        posted.syncs > 0 || posted.errors > 0 || !self.open
    }
}

/// How long the first publication waits for every provider's first fragment or error.
pub const FIRST_WORDS: Duration = Duration::from_secs(5);

/// The task that reads every provider's mailbox and publishes their fragments.
pub struct Aggregator {
    throttle: Duration,
    sources: Vec<Source>,
    generation: u64,
    statuses: watch::Sender<Vec<ProviderStatus>>,
}

impl Aggregator {
    /// An aggregator publishing at most once per `throttle`.
    pub fn new(throttle: Duration) -> Self {
        Self {
            throttle,
            sources: Vec::new(),
            generation: 0,
            statuses: watch::channel(Vec::new()).0,
        }
    }

    /// Every provider's status, updated as updates arrive.
    pub fn statuses(&self) -> watch::Receiver<Vec<ProviderStatus>> {
        self.statuses.subscribe()
    }

    /// Registers provider `name` (its status shows `pending` until it speaks) and returns the
    /// handle it publishes through.
    pub fn provider(&mut self, name: &str) -> ProviderHandle {
        let (handle, mailbox) = ProviderHandle::mailbox(name);
        self.sources.push(Source {
            name: name.into(),
            mailbox,
            open: true,
            config: Arc::default(),
            status: ProviderStatus {
                name: name.to_string(),
                ..Default::default()
            },
        });
        self.sources.sort_by(|a, b| a.name.cmp(&b.name));
        self.publish_statuses();
        handle
    }

    /// Runs until every provider's handles are dropped, calling `publish` with the fragments
    /// whenever one of them changed.
    ///
    /// The first publication waits until every provider has spoken once (a fragment or an error),
    /// for at most [`FIRST_WORDS`]: a configuration with the file's routes but not yet Docker's
    /// would answer 404 for every container for a moment after each start. It is made even when
    /// empty, so that "a first configuration is in force" always comes true.
    pub async fn run(mut self, mut publish: impl FnMut(Fragments)) {
        let deadline = Instant::now() + FIRST_WORDS;
        while !self.everyone_spoke() {
            tokio::select! {
                open = self.next_change() => if !open { break },
                () = tokio::time::sleep_until(deadline) => {
                    let silent: Vec<&str> = self.sources.iter().filter(|s| !s.has_spoken()).map(|s| &*s.name).collect();
                    tracing::warn!("providers {} said nothing within {FIRST_WORDS:?}; starting without them", silent.join(", "));
                    break;
                }
            }
        }
        self.read_mailboxes();
        self.publish_statuses();
        self.generation += 1;
        publish(self.fragments());
        while self.next_change().await {
            // Whatever arrives until the window closes is read at once at its end.
            tokio::time::sleep_until(Instant::now() + self.throttle).await;
            let changed = self.read_mailboxes();
            self.publish_statuses();
            if changed {
                self.generation += 1;
                publish(self.fragments());
            }
        }
        // The providers are gone; what they said last is still shown.
        self.read_mailboxes();
        self.publish_statuses();
    }

    fn fragments(&self) -> Fragments {
        Fragments {
            generation: self.generation,
            fragments: self.sources.iter().map(|s| (s.name.clone(), s.config.clone())).collect(),
        }
    }

    fn everyone_spoke(&self) -> bool {
        self.sources.iter().all(Source::has_spoken)
    }

    /// Waits until some provider posts something; false when every provider is gone.
    async fn next_change(&mut self) -> bool {
        loop {
            let (indices, waits): (Vec<usize>, Vec<_>) = self
                .sources
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| s.open)
                .map(|(i, s)| (i, Box::pin(s.mailbox.changed())))
                .unzip();
            if waits.is_empty() {
                return false;
            }
            let (result, which, _) = futures_util::future::select_all(waits).await;
            if result.is_ok() {
                return true;
            }
            let index = indices[which];
            self.sources[index].open = false;
        }
    }

    /// Takes in what every provider posted; true when a fragment changed.
    fn read_mailboxes(&mut self) -> bool {
        let mut changed = false;
        for source in &mut self.sources {
            let posted = source.mailbox.borrow_and_update().clone();
            if let Some(config) = posted.config {
                if !Arc::ptr_eq(&config, &source.config) {
                    if *config != *source.config {
                        changed = true;
                        tracing::info!(
                            provider = %source.name,
                            routers = config.http.routers.len(),
                            services = config.http.services.len(),
                            "provider configuration changed"
                        );
                    }
                    source.config = config;
                }
            }
            let status = &mut source.status;
            status.state = match (&posted.error, posted.syncs) {
                (Some(_), _) => ProviderState::Error,
                (None, 0) => ProviderState::Pending,
                (None, _) => ProviderState::Ok,
            };
            status.last_sync = posted.last_sync;
            (status.last_error, status.last_error_at) = match posted.error {
                Some((error, at)) => (Some(error.to_string()), Some(at)),
                None => (None, None),
            };
            status.syncs = posted.syncs;
            status.errors = posted.errors;
            status.routers = source.config.http.routers.len();
            status.services = source.config.http.services.len();
            if let Some(items) = posted.items {
                if *items != status.items {
                    status.items = items.to_vec();
                }
            }
        }
        changed
    }

    fn publish_statuses(&self) {
        let statuses = self.sources.iter().map(|s| s.status.clone()).collect();
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
            strategy = "drr"
            [[http.services.s.loadBalancer.servers]]
            url = "http://127.0.0.1:1"
            [[http.services.s.loadBalancer.servers]]
            url = "ftp://127.0.0.1:2"
            "#,
        );
        let rc = merge([("file", &file)], &["web".to_string()]);
        assert_eq!(rc.routers["r@file"].status, Status::Disabled);
        let t = &rc.routers["t@file"];
        assert_eq!(t.status, Status::Warning);
        assert_eq!(t.using, vec!["web".to_string()]);
        assert!(t.errors.iter().any(|e| e.contains("`nope` does not exist")));
        assert_eq!(t.tls, Some(Default::default()), "an empty tls section makes a TLS router");
        let s = &rc.services["s@file"];
        assert_eq!(s.status, Status::Warning);
        assert_eq!(s.servers.len(), 1);
        assert!(s.errors.iter().any(|e| e.contains("strategy: `drr`")), "{:?}", s.errors);
    }

    #[test]
    fn tls_options_are_namespaced_and_default_is_global() {
        let file = config(
            r#"
            [http.routers.r]
            rule = "Host(`a.test`)"
            service = "s@docker"
            [http.routers.r.tls]
            options = "modern"
            [tls.options.modern]
            minVersion = "VersionTLS13"
            [tls.options.default]
            sniStrict = true
            [[tls.certificates]]
            certFile = "/a.pem"
            keyFile = "/a.key"
            stores = ["other"]
            [tls.stores.default.defaultCertificate]
            certFile = "/d.pem"
            keyFile = "/d.key"
            "#,
        );
        let docker = config("[tls.options.default]\n[tls.stores.default.defaultCertificate]\ncertFile = \"x\"\nkeyFile = \"y\"\n");
        let rc = merge([("file", &file), ("docker", &docker)], &["web".to_string()]);
        assert_eq!(
            rc.routers["r@file"].tls.as_ref().and_then(|t| t.options.as_deref()),
            Some("modern@file")
        );
        assert!(rc.tls.options.contains_key("modern@file") && rc.tls.options.contains_key("default"));
        assert_eq!(rc.tls.options["default"].provider, "file", "the first default stays");
        assert_eq!(rc.tls.certificates.len(), 1);
        assert_eq!(
            rc.tls.default_certificate.as_ref().map(|(p, c)| (p.as_str(), c.cert_file.as_str())),
            Some(("file", "/d.pem"))
        );
        let errors = rc.tls.errors.join("\n");
        assert!(errors.contains("`default` is already defined by file"), "{errors}");
        assert!(errors.contains("store `other` does not exist"), "{errors}");
        assert!(errors.contains("docker: file already set one"), "{errors}");
    }

    #[test]
    fn a_service_naming_a_missing_servers_transport_is_disabled_with_its_routers() {
        let file = config(
            r#"
            [http.serversTransports.private]
            serverName = "api.internal"
            [http.routers.a]
            rule = "Path(`/a`)"
            service = "a"
            [http.routers.b]
            rule = "Path(`/b`)"
            service = "b"
            [http.services.a.loadBalancer]
            serversTransport = "private"
            [[http.services.a.loadBalancer.servers]]
            url = "https://10.0.0.1"
            [http.services.b.loadBalancer]
            serversTransport = "private@docker"
            [[http.services.b.loadBalancer.servers]]
            url = "h2c://10.0.0.2:50051"
            "#,
        );
        let rc = merge([("file", &file)], &["web".to_string()]);
        assert_eq!(rc.services["a@file"].status, Status::Enabled);
        assert_eq!(rc.services["a@file"].servers_transport.as_deref(), Some("private@file"));
        assert_eq!(rc.servers_transports["private@file"].used_by, vec!["a@file".to_string()]);
        let b = &rc.services["b@file"];
        assert_eq!(b.status, Status::Disabled);
        assert!(
            b.errors
                .iter()
                .any(|e| e.contains("http.services.b.loadBalancer.serversTransport") && e.contains("`private@docker` does not exist")),
            "{:?}",
            b.errors
        );
        assert_eq!(rc.routers["b@file"].status, Status::Disabled);
        assert_eq!(rc.routers["a@file"].status, Status::Enabled);
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
        let mut agg = Aggregator::new(Duration::from_millis(100));
        let handle = agg.provider("file");
        let (pub_tx, mut pub_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(agg.run(move |fragments| {
            let _ = pub_tx.send((
                Instant::now(),
                fragments.merge(&["web".to_string()], &mut RuleCache::<()>::default()),
            ));
        }));
        handle.send_config(DynamicConfig::default());
        let (at, initial) = pub_rx.recv().await.expect("the first publication");
        assert_eq!(initial.generation, 1);
        let start = Instant::now();
        assert_eq!(at, start, "the first publication does not wait once every provider spoke");
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
        assert_eq!(first.services.len(), 1);
        assert_eq!(first.generation, 2);
        let (_, second) = pub_rx.recv().await.expect("the rest of the burst");
        assert!(second.services.contains_key("s19@file"));
        assert_eq!(second.generation, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chatty_provider_is_read_newest_first_and_its_counts_stay_exact() {
        let mut agg = Aggregator::new(Duration::from_millis(100));
        let statuses = agg.statuses();
        let handle = agg.provider("docker");
        // Everything is posted before the aggregator reads anything: only the newest is kept.
        for i in 0..1_000u32 {
            let mut c = DynamicConfig::default();
            c.http.services.insert(format!("s{i}"), Default::default());
            handle.send_config(c);
        }
        handle.report_error(&crate::ProviderError::unreachable("the engine went away"));
        let (pub_tx, mut pub_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(agg.run(move |fragments| {
            let _ = pub_tx.send(fragments);
        }));
        let published = pub_rx.recv().await.expect("a publication");
        assert_eq!(published.fragments.len(), 1);
        let (name, config) = &published.fragments[0];
        assert_eq!(&**name, "docker");
        assert_eq!(config.http.services.keys().collect::<Vec<_>>(), vec!["s999"]);
        let status = statuses.borrow()[0].clone();
        assert_eq!((status.syncs, status.errors), (1_000, 1));
        assert_eq!(status.state, ProviderState::Error, "an error after the last fragment shows");
        assert_eq!(status.last_error.as_deref(), Some("the engine went away"));
        assert_eq!(status.services, 1, "the last good fragment stays in force");

        // A fragment after the error clears it; the same fragment again publishes nothing.
        handle.send_config((**config).clone());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let status = statuses.borrow()[0].clone();
        assert_eq!((status.state, status.syncs), (ProviderState::Ok, 1_001));
        assert!(status.last_error.is_none());
        assert!(pub_rx.try_recv().is_err(), "an unchanged fragment is not published again");

        // When the provider is gone, the aggregator ends.
        assert_eq!(published.generation, 1);
        drop(handle);
        tokio::time::timeout(Duration::from_secs(1), pub_rx.recv())
            .await
            .expect("the aggregator ends with its providers");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_publication_waits_for_every_provider_but_not_forever() {
        let mut agg = Aggregator::new(Duration::from_millis(100));
        let file = agg.provider("file");
        let _silent = agg.provider("consulCatalog");
        let docker = agg.provider("docker");
        let (pub_tx, mut pub_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(agg.run(move |fragments| {
            let _ = pub_tx.send((Instant::now(), fragments));
        }));
        let start = Instant::now();
        file.send_config(config("[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:1\"\n"));
        docker.report_error(&crate::ProviderError::unreachable("no engine"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(pub_rx.try_recv().is_err(), "consulCatalog has not spoken yet");
        let (at, first) = pub_rx.recv().await.expect("a first publication");
        assert_eq!(at - start, FIRST_WORDS);
        assert_eq!(first.generation, 1);
        assert_eq!(
            first.fragments.iter().map(|(n, _)| &**n).collect::<Vec<_>>(),
            vec!["consulCatalog", "docker", "file"]
        );
        assert_eq!(first.fragments[2].1.http.services.len(), 1);

        // With no provider at all there is a first (empty) configuration at once.
        let (pub_tx, mut pub_rx) = tokio::sync::mpsc::unbounded_channel();
        let none = Aggregator::new(Duration::from_millis(100));
        let at = Instant::now();
        tokio::spawn(none.run(move |fragments| {
            let _ = pub_tx.send((Instant::now(), fragments));
        }));
        let (when, empty) = pub_rx.recv().await.expect("an empty first configuration");
        assert_eq!((when, empty.generation, empty.fragments.len()), (at, 1, 0));
    }

    #[test]
    fn composites_resolve_children_across_providers_and_report_missing_ones_and_cycles() {
        let file = config(
            r#"
            [http.routers.canary]
            rule = "Path(`/c`)"
            service = "canary"
            [http.routers.loop]
            rule = "Path(`/l`)"
            service = "a"
            [http.routers.plain]
            rule = "Path(`/p`)"
            service = "v1"
            [http.services.canary.weighted]
            services = [{ name = "v1", weight = 9 }, { name = "v2@docker", weight = 1 }]
            [http.services.fo.failover]
            service = "v1"
            fallback = "nowhere"
            [http.services.top.weighted]
            services = [{ name = "fo" }]
            [http.services.a.weighted]
            services = [{ name = "b" }]
            [http.services.b.failover]
            service = "a"
            fallback = "v1"
            [http.services.m.mirroring]
            service = "v1"
            mirrors = [{ name = "v2@docker", percent = 150 }]
            [[http.services.v1.loadBalancer.servers]]
            url = "http://127.0.0.1:1"
            "#,
        );
        let docker = config("[[http.services.v2.loadBalancer.servers]]\nurl = \"http://127.0.0.1:2\"\n");
        let rc = merge([("file", &file), ("docker", &docker)], &["web".to_string()]);
        let canary = &rc.services["canary@file"];
        assert_eq!(canary.status, Status::Enabled, "{:?}", canary.errors);
        let children: Vec<_> = canary
            .weighted
            .as_ref()
            .unwrap()
            .services
            .iter()
            .map(|c| (c.name.as_str(), c.weight))
            .collect();
        assert_eq!(children, [("v1@file", Some(9)), ("v2@docker", Some(1))]);
        assert_eq!(rc.routers["canary@file"].status, Status::Enabled);

        let fo = &rc.services["fo@file"];
        assert_eq!(fo.status, Status::Disabled);
        assert_eq!(
            fo.errors,
            ["http.services.fo.failover.fallback: the service `nowhere@file` does not exist"]
        );
        assert!(rc.services["top@file"].errors[0].contains("the service `fo@file` is disabled"));

        for name in ["a@file", "b@file"] {
            let info = &rc.services[name];
            assert_eq!(info.status, Status::Disabled);
            assert!(info.errors[0].starts_with("the services form a cycle: `"), "{:?}", info.errors);
        }
        assert_eq!(rc.routers["loop@file"].status, Status::Disabled);
        assert!(rc.services["m@file"].errors[0].contains("percent: 150 is above 100"));
        assert_eq!(rc.routers["plain@file"].status, Status::Enabled, "everything else keeps serving");
    }
}
