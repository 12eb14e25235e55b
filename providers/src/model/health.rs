//! Health settings of a load balancer: passive ejection, active checks, retries.
//!
//! Traefik's keys are accepted where Traefik has them (`passiveHealthCheck.maxFailedAttempts`,
//! `failureWindow`; `healthCheck.*`); the rest are drover's own, for what Traefik lacks. Every key
//! has an all-lowercase alias so labels (`…loadbalancer.passivehealthcheck.basejectiontime`) fill
//! the same structs.

use serde::{Deserialize, Serialize};

use crate::duration::ConfigDuration;

/// `loadBalancer.passiveHealthCheck`: ejection from live traffic. On by default.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// Set false to never eject (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Consecutive local-origin failures (refused, reset, timeout) that eject. Default 3.
    /// (Traefik's key; Traefik counts any failure within `failureWindow`.)
    #[serde(default, alias = "maxfailedattempts", skip_serializing_if = "Option::is_none")]
    pub max_failed_attempts: Option<u32>,
    /// Consecutive 5xx responses that eject. Default 5.
    #[serde(
        default,
        rename = "consecutive5xx",
        alias = "consecutive5Xx",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx: Option<u32>,
    /// Traefik's key: taken as the base ejection time when `baseEjectionTime` is not set.
    #[serde(default, alias = "failurewindow", skip_serializing_if = "Option::is_none")]
    pub failure_window: Option<ConfigDuration>,
    /// First ejection lasts this long; each further one multiplies it. Default 10 s.
    #[serde(default, alias = "baseejectiontime", skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<ConfigDuration>,
    /// Cap on one ejection. Default 5 min.
    #[serde(default, alias = "maxejectiontime", skip_serializing_if = "Option::is_none")]
    pub max_ejection_time: Option<ConfigDuration>,
    /// Most of the service that may be ejected at once, in percent (at least one server always
    /// may be). Default 50.
    #[serde(default, alias = "maxejectionpercent", skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// After readmission, the server's share ramps up over this period. Default 10 s; 0 disables.
    #[serde(default, alias = "slowstart", skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<ConfigDuration>,
    /// When every server is ejected (or fewer than `panicThreshold` percent are usable):
    /// `panic` (default) balances across all of them, `fail` answers 503.
    #[serde(default, alias = "onallejected", skip_serializing_if = "Option::is_none")]
    pub on_all_ejected: Option<String>,
    /// Usable share (percent) below which the service balances across all servers. Default 0:
    /// only when none is usable.
    #[serde(default, alias = "panicthreshold", skip_serializing_if = "Option::is_none")]
    pub panic_threshold: Option<u32>,
    /// Optional failure-rate trigger over a window (off by default).
    #[serde(default, alias = "failurerate", skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRate>,
}

/// `passiveHealthCheck.failureRate`: eject when the failure share over `window` reaches
/// `threshold` percent, once at least `minRequests` were seen in it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FailureRate {
    /// Failure share in percent that ejects (1–100).
    pub threshold: u32,
    /// Requests the window needs before the rate counts. Default 20.
    #[serde(default, alias = "minrequests", skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// Window length. Default 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ConfigDuration>,
}

/// `loadBalancer.healthCheck`: active HTTP checks (optional).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// Path to request (`/health`). Required.
    pub path: String,
    /// `http` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Port to check instead of the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Host header to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Time between checks. Default 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ConfigDuration>,
    /// Time between checks while the server is down (default: `interval`).
    #[serde(default, alias = "unhealthyinterval", skip_serializing_if = "Option::is_none")]
    pub unhealthy_interval: Option<ConfigDuration>,
    /// Deadline for one check. Default 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ConfigDuration>,
    /// Expected status; without it 200–399 pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Consecutive passes that bring a server back (rise). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
    /// Consecutive failures that take a server out (fall). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fails: Option<u32>,
    /// Traefik's `mode` (only `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Traefik's `followRedirects` (drover never follows: a 3xx passes).
    #[serde(default, alias = "followredirects", skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
}

/// `loadBalancer.retry` (drover): retries of failed attempts on another server.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// Extra attempts after the first (default 2; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Retries may add at most this share of the service's requests, in percent (default 20).
    #[serde(default, alias = "budgetpercent", skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<u32>,
    /// Retries always allowed per second on top of the budget (default 3).
    #[serde(default, alias = "minretriespersecond", skip_serializing_if = "Option::is_none")]
    pub min_retries_per_second: Option<u32>,
}
