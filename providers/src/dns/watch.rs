//! Keeping one service fresh: when to ask again, what to keep when asking fails.
//!
//! Every record set is re-queried when its TTL runs out, and not before, so drover never asks
//! a nameserver more often than the records allow. The SRV set and each target's addresses keep
//! their own clocks: a target whose A record has a short TTL is re-resolved on its own, without
//! re-asking the SRV set, and glue in an SRV answer refreshes the targets it covers. A TTL is
//! clamped into `[minTtl, maxTtl]`: Consul's TTL 0 would otherwise be a busy loop, Docker's
//! 600 s would keep gone tasks for ten minutes.
//!
//! Outcomes are handled by kind (see [`LookupFailure`]):
//! * an answer replaces what was known;
//! * NXDOMAIN or NODATA is authoritative: the service (or the target) is emptied, and asked
//!   again after the negative-caching TTL of the SOA, clamped the same way;
//! * SERVFAIL, REFUSED, a timeout keep the last good answer and retry with exponential backoff
//!   (`minTtl`, doubling, at most 30 s or `maxTtl` if shorter, with [`crate::backoff`]'s jitter),
//!   and the failure is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::model;
use crate::provider::{Decision, ItemReport};

use super::client::{display, AddressRecord, Dns, LookupFailure, SrvRecord};
use super::config::{Lookup, ServiceSpec};
use super::translate::{self, Mapping, TargetAddresses};

/// Longest pause between retries of a failing query.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The TTL clamp and the retry backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Lower TTL bound (also the first retry delay).
    pub min_ttl: Duration,
    /// Upper TTL bound.
    pub max_ttl: Duration,
    /// Retry delays with jitter ([`Backoff`]); off only where tests count exact instants.
    pub jitter: bool,
}

impl Timing {
    /// How long an answer with TTL `secs` is trusted.
    pub fn ttl(&self, secs: u32) -> Duration {
        Duration::from_secs(u64::from(secs)).clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }

    /// The retry schedule of one lookup: `minTtl`, doubling, at most 30 s or `maxTtl` if shorter.
    pub fn backoff(&self) -> Backoff {
        let cap = MAX_BACKOFF.min(self.max_ttl).max(self.min_ttl);
        if self.jitter {
            Backoff::new(self.min_ttl, cap)
        } else {
            Backoff::exact(self.min_ttl, cap)
        }
    }
}

/// What the provider needs of one service after a refresh; compared to decide whether anything
/// needs to be sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceView {
    /// The servers.
    pub servers: Vec<model::Server>,
    /// One report for the lookup, then one per record.
    pub items: Vec<ItemReport>,
    /// Transient failures in force (the last good answer is being kept).
    pub errors: Vec<String>,
    /// False until the first lookup completed, successfully or not.
    pub answered: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// Nothing heard yet.
    Pending,
    /// SRV records.
    Srv(Vec<SrvRecord>),
    /// Addresses (for `a = ...`).
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN or NODATA (described).
    Empty(String),
}

#[derive(Clone, Debug)]
struct Target {
    ips: Vec<IpAddr>,
    due: Instant,
    backoff: Backoff,
    note: Option<String>,
}

/// One service's lookups and their clocks.
#[derive(Debug)]
pub struct ServiceState {
    spec: ServiceSpec,
    timing: Timing,
    answer: Answer,
    /// TTL of the answer as received (seconds), for the report.
    answer_ttl: u32,
    due: Instant,
    backoff: Backoff,
    error: Option<String>,
    attempted: bool,
    targets: BTreeMap<String, Target>,
}

impl ServiceState {
    /// A service nothing is known about yet; its first lookup is due at once.
    pub fn new(spec: ServiceSpec, timing: Timing) -> Self {
        Self {
            spec,
            timing,
            answer: Answer::Pending,
            answer_ttl: 0,
            due: Instant::now(),
            backoff: timing.backoff(),
            error: None,
            attempted: false,
            targets: BTreeMap::new(),
        }
    }

    /// When the next lookup is due (the service's own, or one of its targets').
    pub fn next_due(&self) -> Instant {
        self.targets.values().map(|t| t.due).fold(self.due, Instant::min)
    }

    /// Runs every lookup that is due.
    pub async fn refresh<D: Dns>(&mut self, dns: &Arc<D>) {
        if Instant::now() >= self.due {
            self.refresh_answer(dns).await;
        }
        if let Answer::Srv(records) = &self.answer {
            let needed: BTreeSet<String> = records.iter().filter(|r| r.target != ".").map(|r| r.target.clone()).collect();
            self.targets.retain(|name, _| needed.contains(name));
            let now = Instant::now();
            let due: Vec<String> = needed
                .into_iter()
                .filter(|name| self.targets.get(name).is_none_or(|t| t.due <= now))
                .collect();
            if !due.is_empty() {
                self.refresh_targets(dns, due).await;
            }
        }
    }

    async fn refresh_answer<D: Dns>(&mut self, dns: &Arc<D>) {
        self.attempted = true;
        // (answer, its TTL, glue for the targets)
        let outcome = match &self.spec.lookup {
            Lookup::Srv(name) => dns.srv(name).await.map(|a| {
                let ttl = a.records.iter().map(|r| r.ttl).min().unwrap_or(0);
                (Answer::Srv(a.records), ttl, a.glue)
            }),
            Lookup::Address { name, .. } => dns.addresses(name).await.map(|addrs| {
                let ttl = addrs.iter().map(|a| a.ttl).min().unwrap_or(0);
                (Answer::Addresses(sorted(addrs.iter().map(|a| a.ip))), ttl, Vec::new())
            }),
        };
        let now = Instant::now();
        match outcome {
            Ok((answer, ttl, glue)) => {
                self.answer = answer;
                self.answer_ttl = ttl;
                self.due = now + self.timing.ttl(ttl);
                self.backoff.reset();
                self.error = None;
                self.apply_glue(&glue, now);
            }
            Err(LookupFailure::NoRecords { nx_domain, negative_ttl }) => {
                let failure = LookupFailure::NoRecords { nx_domain, negative_ttl };
                self.answer = Answer::Empty(failure.describe());
                self.answer_ttl = negative_ttl.unwrap_or(0);
                self.due = now + self.timing.ttl(self.answer_ttl);
                self.backoff.reset();
                self.error = None;
                self.targets.clear();
            }
            Err(LookupFailure::Transient(why)) => {
                let wait = self.backoff.next_delay();
                self.due = now + wait;
                let kept = match &self.answer {
                    Answer::Pending => "no answer yet, so no servers".to_string(),
                    Answer::Empty(_) => "keeping the last answer (empty)".to_string(),
                    _ => "keeping the servers of the last good answer".to_string(),
                };
                self.error = Some(format!(
                    "{}: {why}; {kept}; retry {} in {}",
                    self.spec.lookup.describe(),
                    self.backoff.failures(),
                    humantime::format_duration(wait)
                ));
            }
        }
    }

    /// Addresses from the Additional section refresh the targets they name.
    fn apply_glue(&mut self, glue: &[AddressRecord], now: Instant) {
        let mut by_name: BTreeMap<&str, Vec<&AddressRecord>> = BTreeMap::new();
        for g in glue {
            by_name.entry(g.name.as_str()).or_default().push(g);
        }
        let Answer::Srv(records) = &self.answer else { return };
        for r in records {
            let Some(found) = by_name.get(r.target.as_str()) else { continue };
            let ttl = found.iter().map(|g| g.ttl).min().unwrap_or(0);
            self.targets.insert(
                r.target.clone(),
                Target {
                    ips: sorted(found.iter().map(|g| g.ip)),
                    due: now + self.timing.ttl(ttl),
                    backoff: self.timing.backoff(),
                    note: None,
                },
            );
        }
    }

    async fn refresh_targets<D: Dns>(&mut self, dns: &Arc<D>, names: Vec<String>) {
        let mut lookups = JoinSet::new();
        for name in names {
            let dns = dns.clone();
            lookups.spawn(async move {
                let outcome = dns.addresses(&name).await;
                (name, outcome, Instant::now())
            });
        }
        while let Some(joined) = lookups.join_next().await {
            let Ok((name, outcome, now)) = joined else { continue };
            match outcome {
                Ok(addrs) => {
                    let ttl = addrs.iter().map(|a| a.ttl).min().unwrap_or(0);
                    self.targets.insert(
                        name,
                        Target {
                            ips: sorted(addrs.iter().map(|a| a.ip)),
                            due: now + self.timing.ttl(ttl),
                            backoff: self.timing.backoff(),
                            note: None,
                        },
                    );
                }
                Err(LookupFailure::NoRecords { nx_domain, negative_ttl }) => {
                    let note = LookupFailure::NoRecords { nx_domain, negative_ttl }.describe();
                    self.targets.insert(
                        name,
                        Target {
                            ips: Vec::new(),
                            due: now + self.timing.ttl(negative_ttl.unwrap_or(0)),
                            backoff: self.timing.backoff(),
                            note: Some(note),
                        },
                    );
                }
                Err(LookupFailure::Transient(why)) => {
                    let target = self.targets.entry(name).or_insert_with(|| Target {
                        ips: Vec::new(),
                        due: now,
                        backoff: self.timing.backoff(),
                        note: None,
                    });
                    target.due = now + target.backoff.next_delay();
                    target.note = Some(if target.ips.is_empty() {
                        format!("no address yet: {why}")
                    } else {
                        format!("kept from the last good answer: {why}")
                    });
                }
            }
        }
    }

    /// The servers and reports as of now.
    pub fn view(&self, provider: &str) -> ServiceView {
        let qualified = format!("{}@{provider}", self.spec.name);
        let mapping = match (&self.answer, &self.spec.lookup) {
            (Answer::Srv(records), Lookup::Srv(owner)) => {
                let targets = self
                    .targets
                    .iter()
                    .map(|(name, t)| {
                        (
                            name.clone(),
                            TargetAddresses {
                                ips: t.ips.clone(),
                                note: t.note.clone(),
                            },
                        )
                    })
                    .collect();
                translate::map_srv(owner, records, &targets)
            }
            (Answer::Addresses(ips), Lookup::Address { name, port }) => translate::map_addresses(name, *port, ips),
            _ => Mapping::default(),
        };
        let servers: Vec<model::Server> = mapping
            .endpoints
            .iter()
            .map(|e| model::Server {
                url: format!("{}://{}", self.spec.scheme, e.address()),
                weight: Some(e.weight),
                tier: Some(e.tier),
                ..Default::default()
            })
            .collect();
        let mut reasons = Vec::new();
        match &self.answer {
            Answer::Pending => reasons.push("waiting for the first answer".to_string()),
            Answer::Empty(why) => reasons.push(format!(
                "{why}: the service has no server (clients get 503); asked again in {}",
                humantime::format_duration(self.timing.ttl(self.answer_ttl))
            )),
            Answer::Srv(records) => reasons.push(format!(
                "{} record(s), TTL {} s, asked again every {}",
                records.len(),
                self.answer_ttl,
                humantime::format_duration(self.timing.ttl(self.answer_ttl))
            )),
            Answer::Addresses(ips) => reasons.push(format!(
                "{} address(es), TTL {} s, asked again every {}",
                ips.len(),
                self.answer_ttl,
                humantime::format_duration(self.timing.ttl(self.answer_ttl))
            )),
        }
        if mapping.unavailable {
            reasons.push("declared not available by a lone `.` target: clients get 503".into());
        } else if servers.is_empty() && matches!(self.answer, Answer::Srv(_) | Answer::Addresses(_)) {
            reasons.push("no record yields a server: clients get 503".into());
        }
        let mut errors: Vec<String> = self.error.iter().cloned().collect();
        for (name, t) in &self.targets {
            if t.backoff.failures() > 0 {
                if let Some(note) = &t.note {
                    errors.push(format!("{} target {}: {note}", self.spec.lookup.describe(), display(name)));
                }
            }
        }
        reasons.extend(errors.iter().cloned());
        let routers: Vec<String> = self.spec.router.iter().map(|_| qualified.clone()).collect();
        let mut items = vec![ItemReport {
            kind: "lookup".into(),
            name: self.spec.lookup.describe(),
            decision: if servers.iter().any(|s| s.weight != Some(0)) {
                Decision::Routed
            } else {
                Decision::Skipped
            },
            reasons,
            addresses: mapping.endpoints.iter().map(|e| e.address()).collect(),
            ..Default::default()
        }];
        items.extend(mapping.records);
        for item in &mut items {
            item.services = vec![qualified.clone()];
            item.routers = routers.clone();
        }
        ServiceView {
            servers,
            items,
            errors,
            answered: self.attempted,
        }
    }
}

fn sorted(ips: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = ips.collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Refreshes one service for as long as the provider runs, sending its view on `tx` whenever
/// it changed. `permits` bounds how many services query at the same moment.
pub async fn watch<D: Dns>(
    mut state: ServiceState,
    dns: Arc<D>,
    provider: String,
    index: usize,
    tx: mpsc::UnboundedSender<(usize, ServiceView)>,
    permits: Arc<Semaphore>,
) {
    let mut last: Option<ServiceView> = None;
    loop {
        {
            // The semaphore is never closed; if it were, refreshing without a permit is harmless.
            let _permit = permits.acquire().await;
            state.refresh(&dns).await;
        }
        let view = state.view(&provider);
        if last.as_ref() != Some(&view) {
            if tx.send((index, view.clone())).is_err() {
                return;
            }
            last = Some(view);
        }
        tokio::time::sleep_until(state.next_due()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::dns::client::SrvAnswer;

    /// A scripted nameserver: each query pops the next scripted outcome for its name (the last
    /// one repeats) and is logged with the (paused) time it was asked at.
    type Queue<T> = Mutex<BTreeMap<String, VecDeque<Result<T, LookupFailure>>>>;

    #[derive(Default)]
    struct Script {
        srv: Queue<SrvAnswer>,
        addrs: Queue<Vec<AddressRecord>>,
        log: Mutex<Vec<(Duration, String)>>,
        start: Mutex<Option<Instant>>,
    }

    fn next<T: Clone>(queue: &mut VecDeque<T>) -> Option<T> {
        if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        }
    }

    impl Script {
        fn log(&self, what: String) {
            let start = *self.start.lock().unwrap().get_or_insert_with(Instant::now);
            self.log.lock().unwrap().push((start.elapsed(), what));
        }
        fn srv_then(&self, name: &str, outcome: Result<SrvAnswer, LookupFailure>) {
            self.srv.lock().unwrap().entry(name.into()).or_default().push_back(outcome);
        }
        fn addrs_then(&self, name: &str, outcome: Result<Vec<AddressRecord>, LookupFailure>) {
            self.addrs.lock().unwrap().entry(name.into()).or_default().push_back(outcome);
        }
        fn asked(&self, what: &str) -> Vec<u64> {
            self.log
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, w)| w == what)
                .map(|(t, _)| t.as_secs())
                .collect()
        }
    }

    impl Dns for Script {
        async fn srv(&self, name: &str) -> Result<SrvAnswer, LookupFailure> {
            self.log(format!("SRV {name}"));
            let outcome = self.srv.lock().unwrap().get_mut(name).and_then(next);
            outcome.unwrap_or(Err(LookupFailure::Transient("unscripted".into())))
        }
        async fn addresses(&self, name: &str) -> Result<Vec<AddressRecord>, LookupFailure> {
            self.log(format!("ADDR {name}"));
            let outcome = self.addrs.lock().unwrap().get_mut(name).and_then(next);
            outcome.unwrap_or(Err(LookupFailure::Transient("unscripted".into())))
        }
    }

    const TIMING: Timing = Timing {
        min_ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(300),
        jitter: false,
    };

    fn rec(priority: u16, weight: u16, port: u16, target: &str, ttl: u32) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
            ttl,
        }
    }

    fn addr(name: &str, ip: &str, ttl: u32) -> AddressRecord {
        AddressRecord {
            name: name.into(),
            ip: ip.parse().unwrap(),
            ttl,
        }
    }

    fn spec(lookup: Lookup) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            lookup,
            scheme: "http".into(),
            router: None,
        }
    }

    fn srv_spec() -> ServiceSpec {
        spec(Lookup::Srv("_http._tcp.web.example.".into()))
    }

    /// Runs the service's watch loop for `secs` of paused time; returns every view it sent.
    async fn run_for(script: &Arc<Script>, spec: ServiceSpec, timing: Timing, how_long: Duration) -> Vec<ServiceView> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(watch(
            ServiceState::new(spec, timing),
            script.clone(),
            "dns".into(),
            0,
            tx,
            Arc::new(Semaphore::new(1)),
        ));
        tokio::time::sleep(how_long).await;
        task.abort();
        let mut views = Vec::new();
        while let Ok((_, v)) = rx.try_recv() {
            views.push(v);
        }
        views
    }

    fn urls(view: &ServiceView) -> Vec<(String, u32, u32)> {
        view.servers
            .iter()
            .map(|s| (s.url.clone(), s.weight.unwrap_or(1), s.tier.unwrap_or(0)))
            .collect()
    }

    #[test]
    fn ttls_are_clamped_and_backoff_doubles_up_to_its_cap() {
        assert_eq!(TIMING.ttl(0), Duration::from_secs(1), "TTL 0 is not a busy loop");
        assert_eq!(TIMING.ttl(5), Duration::from_secs(5));
        assert_eq!(TIMING.ttl(600), Duration::from_secs(300), "Docker's 600 s is capped");
        let mut backoff = TIMING.backoff();
        let delays: Vec<u64> = (1..=8).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        let short = Timing {
            min_ttl: Duration::from_millis(200),
            max_ttl: Duration::from_secs(2),
            jitter: false,
        };
        let delays: Vec<Duration> = (1..=5).scan(short.backoff(), |b, _| Some(b.next_delay())).collect();
        assert_eq!(delays[0], Duration::from_millis(200));
        assert_eq!(delays[4], Duration::from_secs(2), "never longer than maxTtl");
        // With jitter (as the provider runs): never longer, at most a fifth shorter.
        let mut jittered = Timing { jitter: true, ..TIMING }.backoff();
        for nominal in [1000, 2000, 4000, 8000, 16_000, 30_000] {
            let d = jittered.next_delay().as_millis();
            assert!(nominal - nominal / 5 <= d && d <= nominal, "{d} ms, nominal {nominal} ms");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_zero_is_asked_once_a_second_and_a_long_ttl_at_the_cap() {
        let script = Arc::new(Script::default());
        script.srv_then(
            "_http._tcp.web.example.",
            Ok(SrvAnswer {
                records: vec![rec(1, 1, 80, "a.example.", 0)],
                glue: vec![addr("a.example.", "10.0.0.1", 0)],
            }),
        );
        let views = run_for(&script, srv_spec(), TIMING, Duration::from_millis(9_500)).await;
        assert_eq!(
            script.asked("SRV _http._tcp.web.example."),
            (0..10).collect::<Vec<_>>(),
            "one query per second, never more"
        );
        assert!(script.asked("ADDR a.example.").is_empty(), "glue answered the target");
        assert_eq!(views.len(), 1, "an unchanged answer is not sent again");
        assert_eq!(urls(&views[0]), vec![("http://10.0.0.1:80".into(), 1, 1)]);

        let script = Arc::new(Script::default());
        script.addrs_then("tasks.web", Ok(vec![addr("tasks.web.", "10.0.1.5", 600)]));
        let tasks = spec(Lookup::Address {
            name: "tasks.web".into(),
            port: 8080,
        });
        run_for(&script, tasks, TIMING, Duration::from_secs(700)).await;
        assert_eq!(script.asked("ADDR tasks.web"), vec![0, 300, 600], "600 s capped to 300 s");
    }

    #[tokio::test(start_paused = true)]
    async fn targets_keep_their_own_clock() {
        let script = Arc::new(Script::default());
        script.srv_then(
            "_http._tcp.web.example.",
            Ok(SrvAnswer {
                records: vec![rec(1, 1, 80, "a.example.", 30), rec(1, 1, 80, "b.example.", 30)],
                glue: vec![addr("a.example.", "10.0.0.1", 30)],
            }),
        );
        script.addrs_then(
            "b.example.",
            Ok(vec![addr("b.example.", "10.0.0.2", 5), addr("b.example.", "fd00::2", 10)]),
        );
        let views = run_for(&script, srv_spec(), TIMING, Duration::from_millis(60_500)).await;
        assert_eq!(script.asked("SRV _http._tcp.web.example."), vec![0, 30, 60]);
        assert_eq!(
            script.asked("ADDR b.example."),
            (0..=60).step_by(5).collect::<Vec<_>>(),
            "b's addresses every 5 s (their shortest TTL), the SRV set every 30 s"
        );
        assert!(script.asked("ADDR a.example.").is_empty(), "glue keeps a fresh");
        assert_eq!(
            urls(&views[0]),
            vec![
                ("http://10.0.0.1:80".into(), 2, 1),
                ("http://10.0.0.2:80".into(), 1, 1),
                ("http://[fd00::2]:80".into(), 1, 1)
            ],
            "b's share is split over its A and AAAA address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_keep_the_last_good_servers_and_back_off_then_nxdomain_empties() {
        let script = Arc::new(Script::default());
        let name = "_http._tcp.web.example.";
        let good = Ok(SrvAnswer {
            records: vec![rec(10, 60, 80, "a.example.", 5), rec(20, 0, 80, "b.example.", 5)],
            glue: vec![addr("a.example.", "10.0.0.1", 5), addr("b.example.", "10.0.0.2", 5)],
        });
        script.srv_then(name, good.clone());
        // The targets' glue expires with the SRV set; their own lookups keep answering.
        script.addrs_then("a.example.", Ok(vec![addr("a.example.", "10.0.0.1", 5)]));
        script.addrs_then("b.example.", Ok(vec![addr("b.example.", "10.0.0.2", 5)]));
        for _ in 0..5 {
            script.srv_then(
                name,
                Err(LookupFailure::Transient("SERVFAIL (the nameserver could not answer)".into())),
            );
        }
        script.srv_then(
            name,
            Err(LookupFailure::NoRecords {
                nx_domain: true,
                negative_ttl: Some(3),
            }),
        );
        script.srv_then(name, good);
        let views = run_for(&script, srv_spec(), TIMING, Duration::from_millis(59_500)).await;
        // 0: good; 5: fail (retry in 1); 6: fail (2); 8: fail (4); 12: fail (8); 20: fail (16);
        // 36: NXDOMAIN (negative TTL 3); 39: good again, then every 5 s.
        assert_eq!(
            script.asked(&format!("SRV {name}")),
            vec![0, 5, 6, 8, 12, 20, 36, 39, 44, 49, 54, 59]
        );
        let good_servers = vec![("http://10.0.0.1:80".into(), 60, 10), ("http://10.0.0.2:80".into(), 1, 20)];
        assert_eq!(urls(&views[0]), good_servers);
        let failing: Vec<&ServiceView> = views.iter().filter(|v| !v.errors.is_empty()).collect();
        assert_eq!(failing.len(), 5, "each failure is reported");
        for v in &failing {
            assert_eq!(urls(v), good_servers, "the last good servers are kept");
            assert!(
                v.errors[0].contains("SERVFAIL") && v.errors[0].contains("keeping the servers"),
                "{:?}",
                v.errors
            );
        }
        assert!(failing[1].errors[0].contains("retry 2 in 2s"), "{:?}", failing[1].errors);
        let empty = views.iter().find(|v| v.servers.is_empty()).expect("NXDOMAIN empties the service");
        assert!(empty.errors.is_empty(), "an authoritative answer is not an error");
        assert!(empty.items[0].reasons[0].contains("NXDOMAIN"), "{:?}", empty.items[0]);
        assert_eq!(urls(views.last().unwrap()), good_servers);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_target_keeps_its_addresses_and_a_vanished_one_goes() {
        let script = Arc::new(Script::default());
        let name = "_http._tcp.web.example.";
        script.srv_then(
            name,
            Ok(SrvAnswer {
                records: vec![rec(1, 1, 80, "a.example.", 10), rec(1, 1, 80, "b.example.", 10)],
                glue: vec![],
            }),
        );
        script.srv_then(
            name,
            Ok(SrvAnswer {
                records: vec![rec(1, 1, 80, "a.example.", 10)],
                glue: vec![],
            }),
        );
        script.addrs_then("a.example.", Ok(vec![addr("a.example.", "10.0.0.1", 10)]));
        script.addrs_then("a.example.", Err(LookupFailure::Transient("timed out".into())));
        script.addrs_then("a.example.", Ok(vec![addr("a.example.", "10.0.0.1", 10)]));
        script.addrs_then("b.example.", Ok(vec![addr("b.example.", "10.0.0.2", 10)]));
        let views = run_for(&script, srv_spec(), TIMING, Duration::from_secs(15)).await;
        assert_eq!(
            urls(&views[0]),
            vec![("http://10.0.0.1:80".into(), 1, 1), ("http://10.0.0.2:80".into(), 1, 1)]
        );
        // At 10 s the SRV set lost b, and a's address lookup timed out: a is kept, b is gone.
        let at_10 = &views[1];
        assert_eq!(urls(at_10), vec![("http://10.0.0.1:80".into(), 1, 1)]);
        assert!(
            at_10.errors[0].contains("target a.example: kept from the last good answer: timed out"),
            "{:?}",
            at_10.errors
        );
        // At 11 s the retry succeeded and the error is gone.
        assert_eq!(script.asked("ADDR a.example."), vec![0, 10, 11]);
        assert!(views[2].errors.is_empty());
        assert_eq!(views.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_lookup_that_fails_leaves_an_empty_service_and_says_why() {
        let script = Arc::new(Script::default());
        let views = run_for(&script, srv_spec(), TIMING, Duration::from_secs(2)).await;
        assert!(views[0].answered);
        assert!(views[0].servers.is_empty());
        assert!(views[0].errors[0].contains("unscripted; no answer yet"), "{:?}", views[0].errors);
        assert_eq!(views[0].items[0].decision, Decision::Skipped);
    }
}
