//! One server's health, as seen by one service: passive ejection from live traffic, probation,
//! slow start, and the verdicts of active checks.
//!
//! Why *consecutive* failures rather than a time-decayed error rate: a server that was killed
//! fails every request from the moment it dies, so three failures in a row are enough evidence
//! and arrive within milliseconds under load, while a decayed average needs time and volume to
//! move, during which clients see errors. A windowed failure rate is available for servers that
//! fail only some requests (off by default; it needs a minimum volume to mean anything).
//!
//! The states (linkerd's failure-accrual gate, Envoy's ejection multiplier):
//!
//! ```text
//!  Up ──(N consecutive failures, within maxEjectionPercent)──► Ejected(until = now + base×k ± jitter)
//!  Ejected ──(time is up: the next pick)──► Probation: exactly one live request is let through
//!  Probation ──success──► SlowStart (share ramps 10% → 100% over slowStart) ──► Up
//!  Probation ──failure──► Ejected (k+1, capped at maxEjectionTime)
//!  any ──(active check fails `fails` times)──► Ejected until an active check passes `passes` times
//! ```
//!
//! `k`, the multiplier, decays by one for every `baseEjectionTime` the server then stays healthy.
//!
//! Cost on the request path: admitting a healthy server is one atomic load; recording a success
//! writes nothing when the failure counters are already zero. The mutex is only taken for servers
//! that are ejected, on probation or in slow start, and when a failure reaches a threshold.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use drover_providers::policy::PassivePolicy;
use serde::Serialize;
use tokio::time::Instant;

/// What happened to one request sent to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response that is not a 5xx.
    Success,
    /// A 5xx response (502/503/504 included).
    ServerError,
    /// drover's side failed: refused, reset or closed before a response, timed out, garbage.
    LocalFailure,
}

/// The result of asking whether a server may take a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Admit,
    /// Yes, as the single probation request: report its outcome with `probe` set
    /// ([`ServerHealth::record`]), or free the slot with [`ServerHealth::release_probe`] if it
    /// will not report.
    Probe,
    /// No: ejected, its probe is in flight, or its slow-start share is used up.
    Refuse,
}

/// The state a server is in, as the admin side shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Taking its full share.
    Up,
    /// Taking no traffic until `ejected_until` (or an active check passes).
    Ejected,
    /// Its ejection ended; one request decides.
    Probation,
    /// Readmitted; its share is ramping up.
    SlowStart,
}

#[derive(Debug)]
struct Detail {
    state: State,
    /// Ejections in a row (Envoy's multiplier); decays while healthy.
    multiplier: u32,
    total_ejections: u64,
    ejected_until: Option<Instant>,
    reason: Option<String>,
    probe_in_flight: bool,
    healthy_since: Option<Instant>,
    slow_start_from: Option<Instant>,
    slow_start_picks: u64,
    active_down: bool,
    active_passes: u32,
    active_fails: u32,
    window_start: Option<Instant>,
    window_requests: u32,
    window_failures: u32,
}

impl Detail {
    fn fresh() -> Self {
        Self {
            state: State::Up,
            multiplier: 0,
            total_ejections: 0,
            ejected_until: None,
            reason: None,
            probe_in_flight: false,
            healthy_since: None,
            slow_start_from: None,
            slow_start_picks: 0,
            active_down: false,
            active_passes: 0,
            active_fails: 0,
            window_start: None,
            window_requests: 0,
            window_failures: 0,
        }
    }
}

/// A snapshot of a server's health for the admin side.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Current state.
    pub state: State,
    /// Milliseconds until the ejection ends (absent when not ejected or ejected until an active
    /// check passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_for_ms: Option<u64>,
    /// Why it was last ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Consecutive local-origin failures now.
    pub consecutive_failures: u32,
    /// Consecutive 5xx answers now.
    pub consecutive_5xx: u32,
    /// Ejections since drover started (or since the server was last forgotten).
    pub total_ejections: u64,
    /// The ejection multiplier now.
    pub multiplier: u32,
    /// An active check currently holds it out.
    pub active_down: bool,
}

/// One server's health within one service. Lives in the [`super::HealthRegistry`], outside the
/// snapshot, so a reload never makes an ejected server look healthy.
#[derive(Debug)]
pub struct ServerHealth {
    service: Box<str>,
    server: Box<str>,
    /// False while Up: the fast path. True in every other state.
    degraded: AtomicBool,
    /// True while Ejected or on Probation: counted against maxEjectionPercent.
    out: AtomicBool,
    consecutive_local: AtomicU32,
    consecutive_5xx: AtomicU32,
    local_failures_total: AtomicU64,
    detail: Mutex<Detail>,
}

/// How far through its slow start a server is admitted, in per-mille of its share.
fn ramp_permille(elapsed: Duration, period: Duration) -> u64 {
    if period.is_zero() || elapsed >= period {
        return 1000;
    }
    100 + 900 * elapsed.as_millis() as u64 / period.as_millis().max(1) as u64
}

impl ServerHealth {
    /// A healthy server `server` (its URL) of `service`.
    pub fn new(service: &str, server: &str) -> Self {
        Self {
            service: service.into(),
            server: server.into(),
            degraded: AtomicBool::new(false),
            out: AtomicBool::new(false),
            consecutive_local: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            local_failures_total: AtomicU64::new(0),
            detail: Mutex::new(Detail::fresh()),
        }
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        // A panic while holding this lock cannot leave the state half-written in a way that
        // matters more than losing it; carry on with what is there.
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything: the server counts as new.
    pub fn reset(&self) {
        *self.detail() = Detail::fresh();
        self.consecutive_local.store(0, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.out.store(false, Ordering::Release);
        self.degraded.store(false, Ordering::Release);
    }

    /// True while ejected or on probation.
    pub fn is_out(&self) -> bool {
        self.out.load(Ordering::Acquire)
    }

    /// Local-origin failures since it was created.
    pub fn local_failures_total(&self) -> u64 {
        self.local_failures_total.load(Ordering::Relaxed)
    }

    /// May this server take a request now?
    pub fn admit(&self, policy: &PassivePolicy, now: Instant) -> Admission {
        if !self.degraded.load(Ordering::Acquire) {
            return Admission::Admit;
        }
        let mut d = self.detail();
        match d.state {
            State::Up => Admission::Admit,
            State::Ejected => match d.ejected_until {
                Some(until) if now >= until && !d.active_down => {
                    d.state = State::Probation;
                    d.probe_in_flight = true;
                    tracing::info!(service = %self.service, server = %self.server, "ejection over: one probation request");
                    Admission::Probe
                }
                _ => Admission::Refuse,
            },
            State::Probation if !d.probe_in_flight => {
                d.probe_in_flight = true;
                Admission::Probe
            }
            State::Probation => Admission::Refuse,
            State::SlowStart => {
                let from = d.slow_start_from.unwrap_or(now);
                let permille = ramp_permille(now.saturating_duration_since(from), policy.slow_start);
                if permille >= 1000 {
                    d.state = State::Up;
                    d.slow_start_from = None;
                    self.degraded.store(false, Ordering::Release);
                    return Admission::Admit;
                }
                // Admit `permille` of the picks that land here, deterministically and at the
                // current ramp (no catching up on earlier, smaller shares).
                let before = d.slow_start_picks * permille / 1000;
                d.slow_start_picks += 1;
                if d.slow_start_picks * permille / 1000 > before {
                    Admission::Admit
                } else {
                    Admission::Refuse
                }
            }
        }
    }

    /// Would [`ServerHealth::admit`] let a request through now? Changes nothing (explain API).
    pub fn would_admit(&self, now: Instant) -> bool {
        if !self.degraded.load(Ordering::Acquire) {
            return true;
        }
        let d = self.detail();
        match d.state {
            State::Up | State::SlowStart => true,
            State::Ejected => !d.active_down && d.ejected_until.is_some_and(|until| now >= until),
            State::Probation => !d.probe_in_flight,
        }
    }

    /// Records the outcome of a request this server took. `probe` says whether it was the
    /// probation request; `may_eject` answers whether the service can afford one more ejection.
    pub fn record(&self, outcome: Outcome, probe: bool, policy: &PassivePolicy, now: Instant, may_eject: impl FnOnce() -> bool) {
        if outcome == Outcome::LocalFailure {
            self.local_failures_total.fetch_add(1, Ordering::Relaxed);
        }
        if probe {
            let mut d = self.detail();
            d.probe_in_flight = false;
            if d.state == State::Probation {
                match outcome {
                    Outcome::Success => self.readmit(&mut d, policy, now, "the probation request succeeded"),
                    _ => self.eject(&mut d, policy, now, format!("the probation request failed ({})", describe(outcome))),
                }
                return;
            }
        }
        if outcome == Outcome::Success && self.degraded.load(Ordering::Acquire) {
            // A success while ejected: traffic sent in panic mode proved the server works.
            let mut d = self.detail();
            if d.state == State::Ejected && !d.active_down {
                self.readmit(&mut d, policy, now, "it answered while the service was panicking");
            }
        }
        if !policy.enabled {
            return;
        }
        let triggered = match outcome {
            Outcome::Success => {
                if self.consecutive_local.load(Ordering::Relaxed) != 0 {
                    self.consecutive_local.store(0, Ordering::Relaxed);
                }
                if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                    self.consecutive_5xx.store(0, Ordering::Relaxed);
                }
                None
            }
            Outcome::ServerError => {
                // The server answered: it is reachable.
                if self.consecutive_local.load(Ordering::Relaxed) != 0 {
                    self.consecutive_local.store(0, Ordering::Relaxed);
                }
                let n = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                (n >= policy.consecutive_5xx).then(|| format!("{n} consecutive 5xx responses"))
            }
            Outcome::LocalFailure => {
                let n = self.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                (n >= policy.consecutive_local_failures)
                    .then(|| format!("{n} consecutive connection failures (refused, reset or timed out)"))
            }
        };
        let triggered = triggered.or_else(|| self.failure_rate(outcome, policy, now));
        if let Some(reason) = triggered {
            let mut d = self.detail();
            if matches!(d.state, State::Up | State::SlowStart) && may_eject() {
                self.eject(&mut d, policy, now, reason);
            }
        }
    }

    fn failure_rate(&self, outcome: Outcome, policy: &PassivePolicy, now: Instant) -> Option<String> {
        let (threshold, min_requests, window) = policy.failure_rate?;
        let mut d = self.detail();
        let start = *d.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= window {
            d.window_start = Some(now);
            d.window_requests = 0;
            d.window_failures = 0;
        }
        d.window_requests += 1;
        if outcome != Outcome::Success {
            d.window_failures += 1;
        }
        let (requests, failures) = (d.window_requests, d.window_failures);
        (requests >= min_requests && failures * 100 >= threshold * requests).then(|| {
            d.window_requests = 0;
            d.window_failures = 0;
            format!("{failures} of {requests} requests failed within {window:?}")
        })
    }

    /// A probation or active-check request that will not report (the client went away) frees
    /// the probation slot for the next request.
    pub fn release_probe(&self) {
        let mut d = self.detail();
        d.probe_in_flight = false;
    }

    /// An active check's verdict. `passes`/`fails` are the rise/fall thresholds.
    pub fn active_result(&self, passed: bool, passes: u32, fails: u32, policy: &PassivePolicy, now: Instant) {
        let mut d = self.detail();
        if passed {
            d.active_fails = 0;
            d.active_passes = d.active_passes.saturating_add(1);
            if d.active_passes >= passes && matches!(d.state, State::Ejected | State::Probation) {
                d.active_down = false;
                self.readmit(&mut d, policy, now, "the active health check passed");
            }
        } else {
            d.active_passes = 0;
            d.active_fails = d.active_fails.saturating_add(1);
            if d.active_fails >= fails && !d.active_down {
                d.active_down = true;
                let reason = format!("the active health check failed {} times in a row", d.active_fails);
                self.eject(&mut d, policy, now, reason);
            }
        }
    }

    fn eject(&self, d: &mut Detail, policy: &PassivePolicy, now: Instant, reason: String) {
        if let Some(since) = d.healthy_since.take() {
            let healthy = now.saturating_duration_since(since);
            let decay = (healthy.as_millis() / policy.base_ejection_time.as_millis().max(1)) as u32;
            d.multiplier = d.multiplier.saturating_sub(decay);
        }
        d.multiplier = d.multiplier.saturating_add(1);
        let until = if d.active_down {
            None
        } else {
            let length = policy.base_ejection_time.saturating_mul(d.multiplier).min(policy.max_ejection_time);
            // Up to 10% jitter, so servers ejected together do not all come back together.
            let jitter = Duration::from_millis(fastrand::u64(0..=length.as_millis() as u64 / 10));
            Some(now + length + jitter)
        };
        d.state = State::Ejected;
        d.ejected_until = until;
        d.total_ejections += 1;
        d.probe_in_flight = false;
        d.slow_start_from = None;
        self.consecutive_local.store(0, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.out.store(true, Ordering::Release);
        self.degraded.store(true, Ordering::Release);
        match until {
            Some(until) => {
                tracing::warn!(service = %self.service, server = %self.server, %reason, ejected_for = ?until.saturating_duration_since(now), ejections = d.total_ejections, "server ejected")
            }
            None => tracing::warn!(service = %self.service, server = %self.server, %reason, "server ejected until an active check passes"),
        }
        d.reason = Some(reason);
    }

    fn readmit(&self, d: &mut Detail, policy: &PassivePolicy, now: Instant, why: &str) {
        d.ejected_until = None;
        d.probe_in_flight = false;
        d.healthy_since = Some(now);
        self.out.store(false, Ordering::Release);
        if policy.slow_start.is_zero() {
            d.state = State::Up;
            self.degraded.store(false, Ordering::Release);
        } else {
            d.state = State::SlowStart;
            d.slow_start_from = Some(now);
            d.slow_start_picks = 0;
        }
        tracing::info!(service = %self.service, server = %self.server, reason = why, "server readmitted");
    }

    /// The server's health for the admin side.
    pub fn report(&self, now: Instant) -> Report {
        let d = self.detail();
        Report {
            state: d.state,
            ejected_for_ms: d
                .ejected_until
                .filter(|_| d.state == State::Ejected)
                .map(|u| u.saturating_duration_since(now).as_millis() as u64),
            reason: d.reason.clone(),
            consecutive_failures: self.consecutive_local.load(Ordering::Relaxed),
            consecutive_5xx: self.consecutive_5xx.load(Ordering::Relaxed),
            total_ejections: d.total_ejections,
            multiplier: d.multiplier,
            active_down: d.active_down,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.detail().state
    }
}

fn describe(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::ServerError => "5xx",
        Outcome::LocalFailure => "connection failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PassivePolicy {
        PassivePolicy {
            slow_start: Duration::from_secs(10),
            ..Default::default()
        }
    }

    fn fail(h: &ServerHealth, p: &PassivePolicy, n: u32) {
        for _ in 0..n {
            h.record(Outcome::LocalFailure, false, p, Instant::now(), || true);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_probation_and_readmission_in_order() {
        let p = policy();
        let h = ServerHealth::new("s", "http://a");
        fail(&h, &p, 2);
        assert_eq!(h.state(), State::Up, "two failures are not enough");
        fail(&h, &p, 1);
        assert_eq!(h.state(), State::Ejected);
        assert!(h.is_out());
        assert_eq!(h.admit(&p, Instant::now()), Admission::Refuse);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(
            h.admit(&p, Instant::now()),
            Admission::Refuse,
            "still inside the base ejection time"
        );
        tokio::time::advance(Duration::from_millis(1_001)).await; // past 10 s + up to 10% jitter
        assert_eq!(h.admit(&p, Instant::now()), Admission::Probe, "exactly one probation request");
        assert_eq!(
            h.admit(&p, Instant::now()),
            Admission::Refuse,
            "and no second one while it is in flight"
        );
        h.record(Outcome::Success, true, &p, Instant::now(), || true);
        assert_eq!(h.state(), State::SlowStart);
        assert!(!h.is_out());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_the_slot() {
        let p = policy();
        let h = ServerHealth::new("s", "http://a");
        fail(&h, &p, 3);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(h.admit(&p, Instant::now()), Admission::Probe);
        h.release_probe();
        assert_eq!(h.admit(&p, Instant::now()), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_with_each_ejection_then_decays() {
        let p = PassivePolicy {
            slow_start: Duration::ZERO,
            ..policy()
        };
        let h = ServerHealth::new("s", "http://a");
        let mut lengths = Vec::new();
        for _ in 0..4 {
            fail(&h, &p, 3);
            let start = Instant::now();
            loop {
                tokio::time::advance(Duration::from_millis(100)).await;
                if h.admit(&p, Instant::now()) == Admission::Probe {
                    break;
                }
            }
            lengths.push(Instant::now() - start);
            // The probe fails: ejected again, for longer.
            h.record(Outcome::LocalFailure, true, &p, Instant::now(), || true);
            assert_eq!(h.state(), State::Ejected);
            tokio::time::advance(Duration::from_secs(400)).await;
            assert_eq!(h.admit(&p, Instant::now()), Admission::Probe);
            h.record(Outcome::Success, true, &p, Instant::now(), || true);
        }
        // Each cycle: ejection k (3 failures), then the failed probe makes it k+1.
        for (i, length) in lengths.iter().enumerate() {
            let k = 1 + 2 * i as u32;
            let base = Duration::from_secs(10) * k;
            let base = base.min(Duration::from_secs(300));
            assert!(
                *length >= base && *length <= base + base / 10 + Duration::from_millis(100),
                "ejection {i}: {length:?} vs {base:?} + ≤10%"
            );
        }
        // Healthy for a long time: the multiplier decays back.
        tokio::time::advance(Duration::from_secs(3_600)).await;
        fail(&h, &p, 3);
        assert_eq!(h.report(Instant::now()).multiplier, 1, "decayed to a first ejection");
    }

    /// A killed server that comes back, with the short times of `tests/health.rs`: while it is
    /// dead every probation request fails and each ejection is longer, up to `maxEjectionTime`;
    /// once it answers, the next probe readmits it at most the cap (+ jitter) later, and after
    /// `slowStart` it takes its full share.
    #[tokio::test(start_paused = true)]
    async fn a_server_that_comes_back_is_readmitted_within_the_capped_ejection() {
        let p = PassivePolicy {
            base_ejection_time: Duration::from_millis(500),
            max_ejection_time: Duration::from_secs(2),
            slow_start: Duration::from_millis(500),
            ..Default::default()
        };
        let step = Duration::from_millis(10);
        let h = ServerHealth::new("s", "http://a");
        let until_probe = || async {
            let start = Instant::now();
            while h.admit(&p, Instant::now()) != Admission::Probe {
                tokio::time::advance(step).await;
            }
            Instant::now() - start
        };
        fail(&h, &p, 3);
        for expected_ms in [500, 1_000, 1_500, 2_000, 2_000] {
            let length = until_probe().await;
            let expected = Duration::from_millis(expected_ms);
            assert!(
                length >= expected && length <= expected + expected / 10 + step,
                "ejected for {length:?}, expected {expected:?} + up to 10%"
            );
            h.record(Outcome::LocalFailure, true, &p, Instant::now(), || true);
            assert_eq!(h.state(), State::Ejected, "a failed probe ejects it again");
        }
        // It answers again: the next probe, at most the capped ejection later, readmits it.
        let back = until_probe().await;
        assert!(back <= Duration::from_millis(2_200) + step, "probed again after {back:?}");
        h.record(Outcome::Success, true, &p, Instant::now(), || true);
        assert_eq!(h.state(), State::SlowStart);
        assert!(!h.is_out());
        tokio::time::advance(p.slow_start).await;
        let admitted = (0..100).filter(|_| h.admit(&p, Instant::now()) == Admission::Admit).count();
        assert_eq!(admitted, 100, "its full share after slowStart");
        assert_eq!(h.state(), State::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_the_share() {
        let p = policy();
        let h = ServerHealth::new("s", "http://a");
        fail(&h, &p, 3);
        tokio::time::advance(Duration::from_secs(12)).await;
        assert_eq!(h.admit(&p, Instant::now()), Admission::Probe);
        h.record(Outcome::Success, true, &p, Instant::now(), || true);
        let admitted = |n: u32| (0..n).filter(|_| h.admit(&p, Instant::now()) == Admission::Admit).count();
        assert_eq!(admitted(1000), 100, "10% at the start");
        tokio::time::advance(Duration::from_secs(5)).await;
        let half = admitted(1000);
        assert!((540..=560).contains(&half), "55% half way: {half}");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(admitted(100), 100, "full share after slowStart");
        assert_eq!(h.state(), State::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn five_hundreds_eject_after_m_and_success_resets() {
        let p = policy();
        let h = ServerHealth::new("s", "http://a");
        for _ in 0..4 {
            h.record(Outcome::ServerError, false, &p, Instant::now(), || true);
        }
        h.record(Outcome::Success, false, &p, Instant::now(), || true);
        for _ in 0..4 {
            h.record(Outcome::ServerError, false, &p, Instant::now(), || true);
        }
        assert_eq!(h.state(), State::Up, "the success in between reset the count");
        h.record(Outcome::ServerError, false, &p, Instant::now(), || true);
        assert_eq!(h.state(), State::Ejected);
        assert!(h.report(Instant::now()).reason.unwrap().contains("5 consecutive 5xx"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_ejection_cap_is_respected() {
        let p = policy();
        let h = ServerHealth::new("s", "http://a");
        for _ in 0..10 {
            h.record(Outcome::LocalFailure, false, &p, Instant::now(), || false);
        }
        assert_eq!(h.state(), State::Up, "the service could not afford another ejection");
    }

    #[tokio::test(start_paused = true)]
    async fn active_checks_eject_and_readmit() {
        let p = PassivePolicy {
            slow_start: Duration::ZERO,
            ..policy()
        };
        let h = ServerHealth::new("s", "http://a");
        for _ in 0..2 {
            h.active_result(false, 2, 3, &p, Instant::now());
        }
        assert_eq!(h.state(), State::Up);
        h.active_result(false, 2, 3, &p, Instant::now());
        assert_eq!(h.state(), State::Ejected);
        tokio::time::advance(Duration::from_secs(1_000)).await;
        assert_eq!(
            h.admit(&p, Instant::now()),
            Admission::Refuse,
            "held out until an active pass, not by time"
        );
        h.active_result(true, 2, 3, &p, Instant::now());
        assert_eq!(h.state(), State::Ejected, "one pass of two");
        h.active_result(true, 2, 3, &p, Instant::now());
        assert_eq!(h.state(), State::Up);
        // A passive ejection ends early on active passes.
        fail(&h, &p, 3);
        h.active_result(true, 2, 3, &p, Instant::now());
        h.active_result(true, 2, 3, &p, Instant::now());
        assert_eq!(h.state(), State::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_trigger_needs_volume() {
        let p = PassivePolicy {
            failure_rate: Some((50, 10, Duration::from_secs(10))),
            consecutive_5xx: 100,
            ..policy()
        };
        let h = ServerHealth::new("s", "http://a");
        for i in 0..9 {
            let o = if i % 2 == 0 { Outcome::ServerError } else { Outcome::Success };
            h.record(o, false, &p, Instant::now(), || true);
        }
        assert_eq!(h.state(), State::Up, "9 requests are under the minimum volume");
        h.record(Outcome::ServerError, false, &p, Instant::now(), || true);
        assert_eq!(h.state(), State::Ejected);
    }
}
