//! Each resolver's loop: which names the configuration in force wants, which of them have a
//! certificate that is not due, and orders for the rest, one at a time per name set, with
//! backoff after failures and a lock shared with other instances.
//!
//! # States (shown by the API per name set)
//! * `ordering` — no certificate yet; the default certificate serves meanwhile.
//! * `valid` — a certificate serves and is not due.
//! * `renewing` — the certificate is due and a new one is being ordered; the old one serves.
//! * `waiting` — another instance holds the lock for these names; its result is picked up from
//!   the storage file when it lands (polled: inotify does not see other NFS clients' writes).
//! * `failed` — the last order failed (reason shown); retried at `nextTry`, after an
//!   exponentially growing wait with jitter (`retryMin` doubling up to `retryMax`), so a failing
//!   CA is never hammered (Traefik #6818). A certificate still valid keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::Account;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::challenge::Challenges;
use super::config::AcmeConfig;
use super::dns01::Dns01;
use super::order;
use super::store::{Lock, Storage, StoredCertificate, StoredDomain};
use crate::connection::Shared;
use crate::tls::certs::{self, Loaded};

/// How often a resolver looks at the storage file while another instance orders.
const WAITING_POLL: Duration = Duration::from_secs(1);

/// How long one order may take in all.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// A name set a router wants from a resolver.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    /// The resolver.
    pub resolver: String,
    /// The names, `main` first.
    pub domain: StoredDomain,
}

/// Where a name set stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No certificate yet; ordering.
    Ordering,
    /// Served and not due.
    Valid,
    /// Due; a new one is being ordered while the old one serves.
    Renewing,
    /// Another instance orders these names.
    Waiting,
    /// The last order failed.
    Failed,
}

impl State {
    /// Its name, as the API and metrics write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ordering => "ordering",
            Self::Valid => "valid",
            Self::Renewing => "renewing",
            Self::Waiting => "waiting",
            Self::Failed => "failed",
        }
    }
}

/// One name set's certificate and state.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The resolver.
    pub resolver: String,
    /// The names.
    pub domain: StoredDomain,
    /// The certificate serving them, if any.
    pub cert: Option<Arc<Loaded>>,
    /// When it is due for renewal (Unix seconds).
    pub renew_at: Option<i64>,
    /// Its state.
    pub state: State,
    /// Why the last order failed.
    pub error: Option<String>,
    /// When a failed order is tried again (Unix seconds).
    pub next_try: Option<i64>,
    /// Failures in a row.
    pub failures: u32,
    /// Orders this instance attempted for these names.
    pub orders: u64,
}

/// What every resolver knows, read by the TLS compilation (certificates to serve, states to
/// show) and written by the resolvers' loops.
#[derive(Debug, Default)]
pub struct Book {
    entries: Mutex<BTreeMap<(String, String), Entry>>,
}

impl Book {
    /// Every entry, in resolver and name order.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.values().cloned().collect()).unwrap_or_default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<(String, String), Entry>) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut entries)
    }
}

/// Everything ACME shares with the rest of drover.
#[derive(Debug, Default)]
pub struct Acme {
    /// Challenge answers, for the data path.
    pub challenges: Arc<Challenges>,
    /// Certificates and states, for the compilation and the API.
    pub book: Arc<Book>,
    /// The configured resolvers.
    pub resolvers: BTreeMap<String, AcmeConfig>,
    /// The entrypoint answering HTTP-01, if any resolver has one.
    pub http_entry_points: Vec<String>,
}

impl Acme {
    /// ACME for `resolvers`.
    pub fn new(resolvers: BTreeMap<String, AcmeConfig>) -> Self {
        let http_entry_points = resolvers
            .values()
            .filter_map(|r| r.http_challenge.as_ref().map(|h| h.entry_point.clone()))
            .collect();
        let mut shared: Vec<_> = resolvers.values().map(|r| super::challenge::shared_dir(&r.storage)).collect();
        shared.dedup();
        Self {
            challenges: Arc::new(Challenges::new(shared)),
            resolvers,
            http_entry_points,
            ..Self::default()
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The first whole second (Unix time, as entries keep it) at least `wait` from now. Adding
/// `wait`'s whole seconds to the current second instead cut a 1.9 s wait that began late in a
/// second to a few milliseconds.
fn unix_after(wait: Duration) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now + wait).as_secs() as i64 + i64::from((now + wait).subsec_nanos() > 0)
}

/// When `loaded` is due: `renewBefore` before its end, else when a third of its lifetime is left.
fn renew_at(loaded: &Loaded, config: &AcmeConfig) -> i64 {
    let not_after = loaded.info.not_after_unix;
    let not_before = loaded
        .key
        .cert
        .first()
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
        .map(|(_, cert)| cert.validity().not_before.timestamp())
        .unwrap_or(not_after - 90 * 86_400);
    let before = match config.renew_before {
        Some(before) => before.0.as_secs() as i64,
        None => (not_after - not_before) / 3,
    };
    not_after - before
}

/// The wait before retry number `failures` (1 = the first failure), with ±25 % jitter.
fn backoff(config: &AcmeConfig, failures: u32) -> Duration {
    let base = config
        .retry_min
        .0
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(config.retry_max.0);
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// How an attempt ended.
enum Outcome {
    /// A new certificate, stored.
    Issued(StoredCertificate),
    /// Another instance holds the lock.
    Locked,
    /// Another instance stored a certificate that is not due: nothing was ordered.
    Found(StoredCertificate),
    /// The order failed.
    Failed(String),
}

/// One resolver.
struct Resolver {
    name: String,
    config: AcmeConfig,
    storage: Storage,
    challenges: Arc<Challenges>,
    book: Arc<Book>,
    dns: Option<Arc<Dns01>>,
    account: Arc<tokio::sync::Mutex<Option<Account>>>,
    /// Bumped after every change the TLS compilation must see.
    changed: watch::Sender<u64>,
    stamp: Option<(SystemTime, u64)>,
}

/// Runs every configured resolver until drover stops; `changed` asks for a recompilation.
pub async fn run(acme: Arc<Acme>, shared: Arc<Shared>, in_force: watch::Receiver<u64>, changed: watch::Sender<u64>) {
    let mut tasks = JoinSet::new();
    for (name, config) in &acme.resolvers {
        let dns = match &config.dns_challenge {
            Some(dns) => match Dns01::new(dns, &|key| std::env::var(key).ok()) {
                Ok(dns) => Some(Arc::new(dns)),
                Err(e) => {
                    tracing::error!(resolver = %name, "dnsChallenge: {e}");
                    None
                }
            },
            None => None,
        };
        let resolver = Resolver {
            name: name.clone(),
            config: config.clone(),
            storage: Storage::new(config.storage.clone()),
            challenges: acme.challenges.clone(),
            book: acme.book.clone(),
            dns,
            account: Arc::default(),
            changed: changed.clone(),
            stamp: None,
        };
        tasks.spawn(resolver.run(shared.clone(), in_force.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

impl Resolver {
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// The name sets the configuration in force wants from this resolver.
    fn wanted(&self, shared: &Shared) -> Vec<StoredDomain> {
        let snapshot = shared.snapshot.load();
        snapshot
            .tls
            .acme_wanted
            .iter()
            .filter(|w| w.resolver == self.name)
            .map(|w| w.domain.clone())
            .collect()
    }

    /// Reads the storage file when it changed (another instance's write, or this one's) and
    /// takes the certificates it holds for wanted names.
    fn read_storage(&mut self, wanted: &[StoredDomain]) {
        let stamp = self.storage.stamp();
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        let entry = match self.storage.read(&self.name) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::error!(resolver = %self.name, "{e}");
                self.fail_all(wanted, &e);
                return;
            }
        };
        let mut any = false;
        for stored in entry.certificates {
            if wanted.contains(&stored.domain) {
                any |= self.install(&stored);
            }
        }
        if any {
            self.bump();
        }
    }

    fn fail_all(&self, wanted: &[StoredDomain], why: &str) {
        self.book.with(|entries| {
            for domain in wanted {
                let entry = entries
                    .entry((self.name.clone(), domain.main.clone()))
                    .or_insert_with(|| self.new_entry(domain));
                entry.state = State::Failed;
                entry.error = Some(why.to_string());
            }
        });
        self.bump();
    }

    fn new_entry(&self, domain: &StoredDomain) -> Entry {
        Entry {
            resolver: self.name.clone(),
            domain: domain.clone(),
            cert: None,
            renew_at: None,
            state: State::Ordering,
            error: None,
            next_try: None,
            failures: 0,
            orders: 0,
        }
    }

    /// Serves `stored` if it parses and is newer than what serves now; whether it changed.
    fn install(&self, stored: &StoredCertificate) -> bool {
        let loaded = match certs::parse(&stored.certificate, &stored.key, "acme.json", now_unix()) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(resolver = %self.name, domain = %stored.domain.main, "a stored certificate is unusable: {e}");
                return false;
            }
        };
        let renew_at = renew_at(&loaded, &self.config);
        self.book.with(|entries| {
            let entry = entries
                .entry((self.name.clone(), stored.domain.main.clone()))
                .or_insert_with(|| self.new_entry(&stored.domain));
            if entry.domain != stored.domain {
                *entry = self.new_entry(&stored.domain);
            }
            let newer = entry
                .cert
                .as_ref()
                .is_none_or(|old| old.info.not_after_unix < loaded.info.not_after_unix || old.key.cert != loaded.key.cert);
            if !newer {
                return false;
            }
            let mut loaded = loaded;
            loaded.info.provider = "acme".into();
            loaded.info.source = format!("{} (resolver {})", self.storage.path().display(), self.name);
            entry.cert = Some(Arc::new(loaded));
            entry.renew_at = Some(renew_at);
            if now_unix() < renew_at {
                entry.state = State::Valid;
                entry.error = None;
                entry.next_try = None;
                entry.failures = 0;
            }
            true
        })
    }

    async fn run(mut self, shared: Arc<Shared>, mut in_force: watch::Receiver<u64>) {
        if let Err(e) = self.storage.check_mode() {
            tracing::error!(resolver = %self.name, "{e}");
        }
        let mut orders: JoinSet<(StoredDomain, Outcome)> = JoinSet::new();
        let mut in_flight: HashMap<String, StoredDomain> = HashMap::new();
        let mut stop = shared.shutdown.clone();
        loop {
            let wanted = self.wanted(&shared);
            self.read_storage(&wanted);
            let now = now_unix();
            let mut next_wake = self.config.check_interval.0;
            for domain in &wanted {
                if in_flight.contains_key(&domain.main) {
                    continue;
                }
                let (due, start, state) = self.book.with(|entries| {
                    let entry = entries
                        .entry((self.name.clone(), domain.main.clone()))
                        .or_insert_with(|| self.new_entry(domain));
                    if entry.domain != *domain {
                        *entry = self.new_entry(domain);
                    }
                    let due = entry.renew_at.is_none_or(|at| now >= at);
                    let start = due && entry.next_try.is_none_or(|at| now >= at);
                    (due, start, entry.state)
                });
                if !due {
                    continue;
                }
                if !start {
                    let at = self
                        .book
                        .with(|e| e.get(&(self.name.clone(), domain.main.clone())).and_then(|e| e.next_try));
                    if let Some(at) = at {
                        next_wake = next_wake.min(Duration::from_secs((at - now).max(1) as u64));
                    }
                    if state == State::Waiting {
                        next_wake = next_wake.min(WAITING_POLL);
                    }
                    continue;
                }
                self.set_state(domain, |entry| {
                    entry.state = if entry.cert.is_some() { State::Renewing } else { State::Ordering };
                });
                in_flight.insert(domain.main.clone(), domain.clone());
                orders.spawn(self.attempt(domain.clone()));
            }
            if !in_flight.is_empty() {
                next_wake = next_wake.min(WAITING_POLL);
            }
            tokio::select! {
                changed = in_force.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
                done = orders.join_next(), if !orders.is_empty() => {
                    if let Some(Ok((domain, outcome))) = done {
                        in_flight.remove(&domain.main);
                        self.settle(&domain, outcome);
                    }
                }
                _ = tokio::time::sleep(next_wake) => {}
            }
        }
    }

    fn set_state(&self, domain: &StoredDomain, change: impl FnOnce(&mut Entry)) {
        self.book.with(|entries| {
            if let Some(entry) = entries.get_mut(&(self.name.clone(), domain.main.clone())) {
                change(entry);
            }
        });
        self.bump();
    }

    fn settle(&mut self, domain: &StoredDomain, outcome: Outcome) {
        match outcome {
            Outcome::Issued(stored) => {
                tracing::info!(resolver = %self.name, domain = %domain.main, sans = ?domain.sans, "certificate issued and stored");
                self.install(&stored);
                self.stamp = None;
                let interval = self.config.check_interval.0;
                self.set_state(domain, |entry| {
                    if entry.renew_at.is_some_and(|at| at <= now_unix()) {
                        // renewBefore is longer than the CA's lifetime: renewing at once would
                        // loop; the next renewal waits a check interval.
                        tracing::warn!(
                            resolver = %entry.resolver,
                            domain = %entry.domain.main,
                            "the new certificate is already due for renewal (renewBefore is longer than its lifetime); renewing again in {}s",
                            interval.as_secs()
                        );
                        entry.state = State::Valid;
                        entry.next_try = Some(unix_after(interval.max(Duration::from_secs(1))));
                    }
                });
            }
            Outcome::Found(stored) => {
                tracing::info!(resolver = %self.name, domain = %domain.main, "another instance stored a certificate: using it");
                self.install(&stored);
                self.bump();
            }
            Outcome::Locked => self.set_state(domain, |entry| {
                entry.state = State::Waiting;
                entry.next_try = Some(unix_after(WAITING_POLL));
            }),
            Outcome::Failed(why) => {
                let config = self.config.clone();
                self.set_state(domain, |entry| {
                    entry.failures += 1;
                    let wait = backoff(&config, entry.failures);
                    entry.next_try = Some(unix_after(wait));
                    entry.state = State::Failed;
                    tracing::error!(
                        resolver = %entry.resolver,
                        domain = %entry.domain.main,
                        failures = entry.failures,
                        "ordering a certificate failed, next try in {}s: {why}",
                        wait.as_secs()
                    );
                    entry.error = Some(why);
                });
            }
        }
    }

    /// One attempt for `domain`: under the order lock, unless storage already has it.
    fn attempt(&self, domain: StoredDomain) -> impl std::future::Future<Output = (StoredDomain, Outcome)> + Send + 'static {
        let name = self.name.clone();
        let config = self.config.clone();
        let storage = self.storage.clone();
        let challenges = self.challenges.clone();
        let dns = self.dns.clone();
        let account = self.account.clone();
        let book = self.book.clone();
        async move {
            let outcome = attempt(&name, &config, &storage, &challenges, dns.as_deref(), &account, &book, &domain).await;
            (domain, outcome)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    name: &str,
    config: &AcmeConfig,
    storage: &Storage,
    challenges: &Challenges,
    dns: Option<&Dns01>,
    account: &tokio::sync::Mutex<Option<Account>>,
    book: &Book,
    domain: &StoredDomain,
) -> Outcome {
    let lock_path = storage.order_lock_path(name, &domain.main);
    let lock = match Lock::try_take(&lock_path, "order", config.lock_timeout.0) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Outcome::Locked,
        Err(e) => return Outcome::Failed(e),
    };
    // Another instance may have stored it between our last look and the lock.
    match storage.read(name) {
        Ok(entry) => {
            if let Some(stored) = entry.certificates.into_iter().find(|c| c.domain == *domain) {
                if let Ok(loaded) = certs::parse(&stored.certificate, &stored.key, "acme.json", now_unix()) {
                    if now_unix() < renew_at(&loaded, config) {
                        return Outcome::Found(stored);
                    }
                }
            }
        }
        Err(e) => return Outcome::Failed(e),
    }
    book.with(|entries| {
        if let Some(entry) = entries.get_mut(&(name.to_string(), domain.main.clone())) {
            entry.orders += 1;
        }
    });
    let names: Vec<String> = domain.names().map(str::to_string).collect();
    let work = async {
        let mut held = account.lock().await;
        let new_account = match &*held {
            Some(_) => None,
            None => {
                let stored = storage.read(name)?.account;
                let (created, new) = order::account(config, stored.as_ref()).await?;
                *held = Some(created);
                new
            }
        };
        let account = held.clone().ok_or("no account")?;
        drop(held);
        if let Some(new) = new_account {
            let storage = storage.clone();
            let resolver = name.to_string();
            let timeout = config.lock_timeout.0;
            tokio::task::spawn_blocking(move || storage.update(&resolver, timeout, |entry| entry.account = Some(new)))
                .await
                .map_err(|e| e.to_string())??;
        }
        let issued = order::order(&account, config, &names, challenges, dns).await?;
        Ok::<_, String>(issued)
    };
    // The lock stays fresh while the order runs, so others wait instead of ordering too.
    let refresh_every = (config.lock_timeout.0 / 4).max(Duration::from_millis(100));
    let issued = {
        let mut work = std::pin::pin!(tokio::time::timeout(ORDER_TIMEOUT, work));
        loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tokio::time::sleep(refresh_every) => lock.refresh(),
            }
        }
    };
    let issued = match issued {
        Ok(Ok(issued)) => issued,
        Ok(Err(why)) => return Outcome::Failed(why),
        Err(_) => return Outcome::Failed(format!("the order took longer than {}s", ORDER_TIMEOUT.as_secs())),
    };
    let stored = StoredCertificate {
        domain: domain.clone(),
        certificate: issued.chain.into_bytes(),
        key: issued.key.into_bytes(),
        store: "default".into(),
    };
    let write = {
        let storage = storage.clone();
        let resolver = name.to_string();
        let timeout = config.lock_timeout.0;
        let stored = stored.clone();
        tokio::task::spawn_blocking(move || {
            storage.update(&resolver, timeout, |entry| {
                entry.certificates.retain(|c| c.domain != stored.domain);
                entry.certificates.push(stored);
            })
        })
        .await
    };
    drop(lock);
    match write {
        Ok(Ok(_)) => Outcome::Issued(stored),
        Ok(Err(e)) => Outcome::Failed(format!("issued, but not stored: {e}")),
        Err(e) => Outcome::Failed(format!("issued, but not stored: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(retry_min: u64, retry_max: u64) -> AcmeConfig {
        let text = format!("retryMin = \"{retry_min}s\"\nretryMax = \"{retry_max}s\"\ntlsChallenge = {{}}\n");
        toml::from_str(&text).expect("parses")
    }

    #[test]
    fn a_next_try_is_never_sooner_than_its_wait() {
        for wait_ms in [1, 999, 1_000, 1_900, 2_001] {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            let at = unix_after(Duration::from_millis(wait_ms)) as f64;
            assert!(at >= now + wait_ms as f64 / 1000.0, "{wait_ms} ms from {now}: {at}");
            assert!(at < now + wait_ms as f64 / 1000.0 + 1.01, "and at most a second later");
        }
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_up_to_the_maximum() {
        let config = config(60, 3600);
        for (failures, base) in [(1u32, 60f64), (2, 120.0), (3, 240.0), (7, 3600.0), (30, 3600.0)] {
            let wait = backoff(&config, failures).as_secs_f64();
            assert!(
                wait >= base * 0.75 && wait <= base * 1.25,
                "failure {failures}: {wait}s, base {base}s"
            );
        }
    }
}
