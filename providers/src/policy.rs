//! Health and retry settings with defaults filled in and checked: what the data path runs on.

use std::time::Duration;

use serde::Serialize;

use crate::model::{HealthCheck, LoadBalancer, PassiveHealthCheck, Retry};

/// What to do when no server of a service is usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AllEjected {
    /// Balance across every server anyway: the ejections may be a false alarm.
    Panic,
    /// Answer 503.
    Fail,
}

/// Passive health (outlier ejection), resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassivePolicy {
    /// Ejection is on.
    pub enabled: bool,
    /// Consecutive local-origin failures that eject.
    pub consecutive_local_failures: u32,
    /// Consecutive 5xx answers that eject.
    pub consecutive_5xx: u32,
    /// First ejection's length.
    #[serde(with = "millis")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(with = "millis")]
    pub max_ejection_time: Duration,
    /// Most of the service ejected at once (percent; one server always may be).
    pub max_ejection_percent: u32,
    /// Ramp-up after readmission.
    #[serde(with = "millis")]
    pub slow_start: Duration,
    /// Behaviour when nothing is usable.
    pub on_all_ejected: AllEjected,
    /// Usable share (percent) under which the service panics.
    pub panic_threshold: u32,
    /// Failure-rate trigger: (threshold percent, minimum requests, window).
    pub failure_rate: Option<(u32, u32, Duration)>,
}

impl Default for PassivePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_local_failures: 3,
            consecutive_5xx: 5,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            slow_start: Duration::from_secs(10),
            on_all_ejected: AllEjected::Panic,
            panic_threshold: 0,
            failure_rate: None,
        }
    }
}

/// Active health checks, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivePolicy {
    /// Path and query to request.
    pub path: String,
    /// Port override.
    pub port: Option<u16>,
    /// Host header.
    pub hostname: Option<String>,
    /// Method.
    pub method: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Interval while up.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Interval while down.
    #[serde(with = "millis")]
    pub unhealthy_interval: Duration,
    /// Deadline per check.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Expected status, or `None` for 200–399.
    pub status: Option<u16>,
    /// Passes to come back (rise).
    pub passes: u32,
    /// Failures to go out (fall).
    pub fails: u32,
}

/// Retries, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub attempts: u32,
    /// Retries may add at most this share of requests (percent).
    pub budget_percent: u32,
    /// Retries always allowed per second.
    pub min_retries_per_second: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            budget_percent: 20,
            min_retries_per_second: 3,
        }
    }
}

/// Every health-related setting of one service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    /// Passive ejection.
    pub passive: PassivePolicy,
    /// Active checks, if configured.
    pub active: Option<ActivePolicy>,
    /// Retries.
    pub retry: RetryPolicy,
}

fn passive(p: &PassiveHealthCheck, at: &str, errors: &mut Vec<String>) -> PassivePolicy {
    let d = PassivePolicy::default();
    let base = p.base_ejection_time.or(p.failure_window).map_or(d.base_ejection_time, |c| c.0);
    let max = p.max_ejection_time.map_or(d.max_ejection_time.max(base), |c| c.0);
    let mut out = PassivePolicy {
        enabled: p.enabled.unwrap_or(true),
        consecutive_local_failures: p.max_failed_attempts.unwrap_or(d.consecutive_local_failures),
        consecutive_5xx: p.consecutive_5xx.unwrap_or(d.consecutive_5xx),
        base_ejection_time: base,
        max_ejection_time: max,
        max_ejection_percent: p.max_ejection_percent.unwrap_or(d.max_ejection_percent),
        slow_start: p.slow_start.map_or(d.slow_start, |c| c.0),
        on_all_ejected: d.on_all_ejected,
        panic_threshold: p.panic_threshold.unwrap_or(0),
        failure_rate: None,
    };
    match p.on_all_ejected.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("panic") => {}
        Some("fail") => out.on_all_ejected = AllEjected::Fail,
        Some(other) => errors.push(format!("{at}.onAllEjected: `{other}` must be `panic` or `fail`")),
    }
    if out.consecutive_local_failures == 0 || out.consecutive_5xx == 0 {
        errors.push(format!(
            "{at}: maxFailedAttempts and consecutive5xx must be at least 1 (set enabled = false to turn ejection off)"
        ));
    }
    if base.is_zero() {
        errors.push(format!("{at}.baseEjectionTime must be more than 0"));
    }
    if max < base {
        errors.push(format!(
            "{at}.maxEjectionTime ({max:?}) is shorter than baseEjectionTime ({base:?})"
        ));
    }
    if out.max_ejection_percent > 100 || out.panic_threshold > 100 {
        errors.push(format!("{at}: maxEjectionPercent and panicThreshold are percentages (0–100)"));
    }
    if let Some(rate) = &p.failure_rate {
        if rate.threshold == 0 || rate.threshold > 100 {
            errors.push(format!("{at}.failureRate.threshold must be 1–100"));
        } else {
            out.failure_rate = Some((
                rate.threshold,
                rate.min_requests.unwrap_or(20),
                rate.window.map_or(Duration::from_secs(10), |w| w.0),
            ));
        }
    }
    out
}

fn active(h: &HealthCheck, at: &str, errors: &mut Vec<String>) -> Option<ActivePolicy> {
    if !h.path.starts_with('/') {
        errors.push(format!("{at}.path `{}` must start with `/`", h.path));
        return None;
    }
    if let Some(scheme) = h.scheme.as_deref().filter(|s| !s.eq_ignore_ascii_case("http")) {
        errors.push(format!("{at}.scheme `{scheme}` is not supported (only http)"));
    }
    if let Some(mode) = h.mode.as_deref().filter(|m| !m.eq_ignore_ascii_case("http")) {
        errors.push(format!("{at}.mode `{mode}` is not supported (only http)"));
    }
    let interval = h.interval.map_or(Duration::from_secs(10), |c| c.0);
    let timeout = h.timeout.map_or(Duration::from_secs(5), |c| c.0);
    if interval.is_zero() || timeout.is_zero() {
        errors.push(format!("{at}: interval and timeout must be more than 0"));
        return None;
    }
    Some(ActivePolicy {
        path: h.path.clone(),
        port: h.port,
        hostname: h.hostname.clone(),
        method: h.method.clone().unwrap_or_else(|| "GET".into()).to_ascii_uppercase(),
        headers: h.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        interval,
        unhealthy_interval: h.unhealthy_interval.map_or(interval, |c| c.0),
        timeout,
        status: h.status,
        passes: h.passes.unwrap_or(2).max(1),
        fails: h.fails.unwrap_or(3).max(1),
    })
}

fn retry(r: &Retry) -> RetryPolicy {
    let d = RetryPolicy::default();
    RetryPolicy {
        attempts: r.attempts.unwrap_or(d.attempts).min(10),
        budget_percent: r.budget_percent.unwrap_or(d.budget_percent).min(100),
        min_retries_per_second: r.min_retries_per_second.unwrap_or(d.min_retries_per_second),
    }
}

impl HealthPolicy {
    /// Resolves a load balancer's health settings; `at` prefixes error messages
    /// (`http.services.web.loadBalancer`). Problems are appended to `errors`.
    pub fn resolve(lb: &LoadBalancer, at: &str, errors: &mut Vec<String>) -> Self {
        Self {
            passive: lb
                .passive_health_check
                .as_ref()
                .map_or_else(PassivePolicy::default, |p| passive(p, &format!("{at}.passiveHealthCheck"), errors)),
            active: lb
                .health_check
                .as_ref()
                .and_then(|h| active(h, &format!("{at}.healthCheck"), errors)),
            retry: lb.retry.as_ref().map_or_else(RetryPolicy::default, retry),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u128(d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DynamicConfig;

    fn resolve(toml: &str) -> (HealthPolicy, Vec<String>) {
        let c = DynamicConfig::from_toml(toml).unwrap();
        let lb = c.http.services["s"].load_balancer.clone().unwrap();
        let mut errors = Vec::new();
        (HealthPolicy::resolve(&lb, "http.services.s.loadBalancer", &mut errors), errors)
    }

    #[test]
    fn defaults_and_traefik_keys() {
        let (p, e) = resolve("[http.services.s.loadBalancer]\n");
        assert!(e.is_empty());
        assert_eq!(p, HealthPolicy::default());
        let (p, e) = resolve("[http.services.s.loadBalancer.passiveHealthCheck]\nmaxFailedAttempts = 1\nfailureWindow = \"3s\"\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            (p.passive.consecutive_local_failures, p.passive.base_ejection_time),
            (1, Duration::from_secs(3))
        );
    }

    #[test]
    fn bad_values_are_named() {
        let (_, e) = resolve("[http.services.s.loadBalancer.passiveHealthCheck]\nonAllEjected = \"shrug\"\nmaxEjectionPercent = 150\n");
        assert!(e.iter().any(|e| e.contains("onAllEjected")), "{e:?}");
        assert!(e.iter().any(|e| e.contains("percentages")), "{e:?}");
        let (p, e) = resolve("[http.services.s.loadBalancer.healthCheck]\npath = \"health\"\n");
        assert!(p.active.is_none() && e[0].contains("must start with `/`"), "{e:?}");
    }
}
