//! An instance's health, aggregated from every check Consul reports for it.
//!
//! `/v1/health/service/<name>` returns each instance with *all* its checks: the service's own and
//! the node's (`serfHealth`, maintenance). The aggregate follows Consul's Go API
//! (`HealthChecks.AggregatedStatus`), which Traefik uses: any maintenance check wins, then
//! critical, then warning, else passing; an instance without checks is passing; a status string
//! Consul does not define makes the aggregate unknown, which only `strictChecks = ["any"]` routes.

use std::fmt;

use crate::consul::catalog::HealthCheck;
use crate::consul::config::Admitted;

/// CheckID of node maintenance mode.
pub const NODE_MAINTENANCE: &str = "_node_maintenance";
/// CheckID prefix of service maintenance mode (`_service_maintenance:<service id>`).
pub const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

/// An aggregate health state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Every check passes (or there are none).
    Passing,
    /// At least one check warns, none is critical.
    Warning,
    /// At least one check is critical.
    Critical,
    /// The node or the service is in maintenance mode.
    Maintenance,
    /// A check has a status Consul does not define.
    Unknown,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Maintenance => "maintenance",
            Status::Unknown => "unknown",
        })
    }
}

/// Whether a check is a maintenance-mode check.
pub fn is_maintenance(check: &HealthCheck) -> bool {
    check.check_id == NODE_MAINTENANCE || check.check_id.starts_with(SERVICE_MAINTENANCE_PREFIX)
}

/// The aggregate state of `checks`.
pub fn aggregate<'a>(checks: impl IntoIterator<Item = &'a HealthCheck>) -> Status {
    let (mut warning, mut critical, mut maintenance) = (false, false, false);
    for check in checks {
        if is_maintenance(check) {
            maintenance = true;
            continue;
        }
        match check.status.as_str() {
            "passing" => {}
            "warning" => warning = true,
            "critical" => critical = true,
            _ => return Status::Unknown,
        }
    }
    if maintenance {
        Status::Maintenance
    } else if critical {
        Status::Critical
    } else if warning {
        Status::Warning
    } else {
        Status::Passing
    }
}

/// Whether `status` is routed under `admitted` (`strictChecks`).
pub fn is_admitted(status: Status, admitted: &[Admitted]) -> bool {
    admitted.iter().any(|a| match a {
        Admitted::Any => true,
        Admitted::State(s) => *s == status,
    })
}

/// One line per check that is not passing, for an instance's diagnostics
/// (`node check serfHealth on node-b: critical (Agent not live or unreachable)`).
pub fn explain<'a>(checks: impl IntoIterator<Item = &'a HealthCheck>) -> Vec<String> {
    checks
        .into_iter()
        .filter(|c| c.status != "passing" || is_maintenance(c))
        .map(|c| {
            let scope = if c.service_id.is_empty() {
                format!("node check `{}` on {}", c.check_id, c.node)
            } else {
                format!("check `{}`", c.check_id)
            };
            let detail = [c.notes.trim(), c.output.trim()]
                .into_iter()
                .find(|s| !s.is_empty())
                .map(|s| format!(" ({})", truncate(s, 160)))
                .unwrap_or_default();
            let status = if is_maintenance(c) {
                "maintenance".to_string()
            } else {
                c.status.clone()
            };
            format!("{scope}: {status}{detail}")
        })
        .collect()
}

/// At most `max` characters of `s`, with `…` when cut; control characters become spaces.
pub fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consul::health::Status::*;

    fn check(id: &str, service: &str, status: &str) -> HealthCheck {
        HealthCheck {
            node: "n".into(),
            check_id: id.into(),
            status: status.into(),
            service_id: service.into(),
            ..Default::default()
        }
    }

    #[test]
    fn aggregation_follows_consul() {
        assert_eq!(aggregate(&[]), Passing, "no checks at all is passing");
        assert_eq!(
            aggregate(&[check("serfHealth", "", "passing"), check("s", "web-1", "warning")]),
            Warning
        );
        assert_eq!(
            aggregate(&[check("serfHealth", "", "critical"), check("s", "web-1", "passing")]),
            Critical,
            "a failing node takes its instances down"
        );
        assert_eq!(
            aggregate(&[
                check("_service_maintenance:web-1", "web-1", "critical"),
                check("s", "web-1", "passing")
            ]),
            Maintenance
        );
        assert_eq!(aggregate(&[check(NODE_MAINTENANCE, "", "critical")]), Maintenance);
        assert_eq!(aggregate(&[check("s", "web-1", "Passing")]), Unknown, "statuses are exact strings");
    }

    #[test]
    fn strict_checks_admit_by_state() {
        let default = [Admitted::State(Passing), Admitted::State(Warning)];
        assert!(is_admitted(Warning, &default));
        assert!(!is_admitted(Critical, &default));
        assert!(!is_admitted(Maintenance, &default));
        assert!(!is_admitted(Unknown, &default));
        assert!(!is_admitted(Warning, &[Admitted::State(Passing)]));
        assert!(is_admitted(Unknown, &[Admitted::Any]));
    }

    #[test]
    fn explanations_name_the_check() {
        let mut serf = check("serfHealth", "", "critical");
        serf.output = "Agent not live or unreachable".into();
        let lines = explain(&[serf, check("s", "web-1", "passing")]);
        assert_eq!(
            lines,
            vec!["node check `serfHealth` on n: critical (Agent not live or unreachable)".to_string()]
        );
    }
}
