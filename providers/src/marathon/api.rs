//! Marathon's JSON, as far as routing needs it: apps, tasks, and the event payloads.
//!
//! Everything is lenient on purpose. Unknown fields are ignored; every collection accepts `null`
//! or absence as empty; enum-like fields (`state`, `networks[].mode`) stay strings, so a state
//! added by a later Marathon never fails a whole response; ports are read as wide integers and
//! range-checked where they are used. A list response is split into apps *before* the apps are
//! read, so one app drover cannot read is reported on its own and the others are still routed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Reads `null` as the type's default (Marathon writes `null` for some absent values).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(de: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// `GET /v2/apps` before its apps are read one by one.
#[derive(Debug, Default, Deserialize)]
pub struct AppList {
    /// The apps, still as JSON.
    #[serde(default, deserialize_with = "nullable")]
    pub apps: Vec<Value>,
}

/// `GET /v2/apps/{id}`.
#[derive(Debug, Deserialize)]
pub struct AppEnvelope {
    /// The app, still as JSON.
    pub app: Value,
}

/// An app (`AppInfo` with the tasks, deployments and readiness embeds).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Absolute path, `/shop/web`.
    pub id: String,
    /// Labels (string to string).
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// Marathon 1.5+ networks.
    #[serde(default, deserialize_with = "nullable")]
    pub networks: Vec<Network>,
    /// The container, with its port mappings.
    #[serde(default)]
    pub container: Option<Container>,
    /// Ports of host-networked apps.
    #[serde(default, deserialize_with = "nullable")]
    pub port_definitions: Vec<PortDefinition>,
    /// Whether `portDefinitions[].port` are the host ports.
    #[serde(default, deserialize_with = "nullable")]
    pub require_ports: bool,
    /// Marathon 1.4 and earlier IP-per-task.
    #[serde(default)]
    pub ip_address: Option<LegacyIpAddress>,
    /// Health check definitions (only counted).
    #[serde(default, deserialize_with = "nullable")]
    pub health_checks: Vec<Value>,
    /// Readiness check definitions.
    #[serde(default, deserialize_with = "nullable")]
    pub readiness_checks: Vec<ReadinessCheck>,
    /// Deployments in progress (embed `apps.deployments`).
    #[serde(default, deserialize_with = "nullable")]
    pub deployments: Vec<Value>,
    /// Readiness results (embed `apps.readiness`).
    #[serde(default, deserialize_with = "nullable")]
    pub readiness_check_results: Vec<ReadinessCheckResult>,
    /// Tasks (embed `apps.tasks`).
    #[serde(default, deserialize_with = "nullable")]
    pub tasks: Vec<Task>,
}

/// `networks[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Network {
    /// `host`, `container/bridge` or `container`.
    #[serde(default, deserialize_with = "nullable")]
    pub mode: String,
    /// The network's name (container mode).
    #[serde(default)]
    pub name: Option<String>,
}

/// `container`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Marathon 1.5+ port mappings.
    #[serde(default, deserialize_with = "nullable")]
    pub port_mappings: Vec<PortMapping>,
    /// The Docker part (1.4 and earlier kept network and port mappings here).
    #[serde(default)]
    pub docker: Option<Docker>,
}

/// `container.docker`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    /// 1.4 and earlier: `HOST`, `BRIDGE` or `USER`.
    #[serde(default)]
    pub network: Option<String>,
    /// 1.4 and earlier port mappings.
    #[serde(default, deserialize_with = "nullable")]
    pub port_mappings: Vec<PortMapping>,
}

/// `portMappings[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the container (0: the same as the host port).
    #[serde(default, deserialize_with = "nullable")]
    pub container_port: i64,
    /// Port on the agent (absent in container mode: none allocated).
    #[serde(default)]
    pub host_port: Option<i64>,
    /// Name, for `name:` port labels.
    #[serde(default)]
    pub name: Option<String>,
}

/// `portDefinitions[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PortDefinition {
    /// A service port, or the host port with `requirePorts`.
    #[serde(default, deserialize_with = "nullable")]
    pub port: i64,
    /// Name, for `name:` port labels.
    #[serde(default)]
    pub name: Option<String>,
}

/// Marathon 1.4 `ipAddress`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct LegacyIpAddress {
    /// Service discovery ports.
    #[serde(default)]
    pub discovery: Option<Discovery>,
}

/// `ipAddress.discovery`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Discovery {
    /// Ports inside the task's network namespace.
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<DiscoveryPort>,
}

/// `ipAddress.discovery.ports[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DiscoveryPort {
    /// The port.
    #[serde(default, deserialize_with = "nullable")]
    pub number: i64,
    /// Name, for `name:` port labels.
    #[serde(default)]
    pub name: Option<String>,
}

/// `readinessChecks[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Marathon's default is 10 s.
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
}

/// `readinessCheckResults[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheckResult {
    /// Check name.
    #[serde(default)]
    pub name: Option<String>,
    /// The task it is about.
    #[serde(default, deserialize_with = "nullable")]
    pub task_id: String,
    /// Whether the task is ready.
    #[serde(default, deserialize_with = "nullable")]
    pub ready: bool,
}

/// A task.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Opaque task ID.
    pub id: String,
    /// Agent host name.
    #[serde(default, deserialize_with = "nullable")]
    pub host: String,
    /// Host ports.
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<i64>,
    /// The task's IP addresses.
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addresses: Vec<TaskIp>,
    /// `TASK_RUNNING`, `TASK_STAGING`, …
    #[serde(default, deserialize_with = "nullable")]
    pub state: String,
    /// RFC 3339 start time (absent until the task runs).
    #[serde(default)]
    pub started_at: Option<String>,
    /// Marathon health check results (only once the app has checks and results exist).
    #[serde(default, deserialize_with = "nullable")]
    pub health_check_results: Vec<HealthCheckResult>,
}

/// `ipAddresses[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIp {
    /// The address.
    #[serde(default, deserialize_with = "nullable")]
    pub ip_address: String,
}

/// `healthCheckResults[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    /// Whether the check passes.
    #[serde(default, deserialize_with = "nullable")]
    pub alive: bool,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: Option<i64>,
    /// Why the last check failed.
    #[serde(default)]
    pub last_failure_cause: Option<String>,
}

/// Reads one app of a list, naming it (or its position) when it cannot be read.
pub fn read_app(value: Value, position: usize) -> Result<App, (String, String)> {
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    serde_json::from_value::<App>(value).map_err(|e| (id.unwrap_or_else(|| format!("apps[{position}]")), e.to_string()))
}

/// Whether `id` is a Marathon app ID that can be put in a URL path as it is.
pub fn is_valid_app_id(id: &str) -> bool {
    id.starts_with('/')
        && id.len() > 1
        && id[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        })
}

/// What an event asks the provider to re-read.
#[derive(Debug, PartialEq, Eq)]
pub enum Affected {
    /// Nothing routing depends on.
    Nothing,
    /// These apps (absolute IDs).
    Apps(BTreeSet<String>),
    /// Everything (the event does not say which apps, or cannot be read).
    All,
}

/// Event types the provider asks Marathon for (`?event_type=`), and reacts to.
pub const SUBSCRIBED_EVENTS: &[&str] = &[
    "event_stream_attached",
    "status_update_event",
    "instance_changed_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "failed_health_check_event",
    "unhealthy_instance_kill_event",
    "add_health_check_event",
    "remove_health_check_event",
    "app_terminated_event",
    "api_post_event",
    "deployment_info",
    "deployment_step_success",
    "deployment_step_failure",
    "deployment_success",
    "deployment_failed",
    "group_change_success",
];

/// Which apps event `event_type` with JSON `data` may have changed. Events are signals, not
/// state: the apps named are re-read, never patched from the event.
pub fn affected(event_type: &str, data: &str) -> Affected {
    let single = |value: Option<&Value>| match value.and_then(Value::as_str) {
        Some(id) if is_valid_app_id(id) => Affected::Apps(BTreeSet::from([id.to_string()])),
        _ => Affected::All,
    };
    let json = match event_type {
        "event_stream_attached" | "event_stream_detached" => return Affected::Nothing,
        t if t.starts_with("pod_") || t.starts_with("scheduler_") || t.starts_with("framework_") || t.contains("subscribe") => {
            return Affected::Nothing
        }
        _ => match serde_json::from_str::<Value>(data) {
            Ok(json) => json,
            Err(_) => return Affected::All,
        },
    };
    match event_type {
        "status_update_event"
        | "health_status_changed_event"
        | "failed_health_check_event"
        | "unhealthy_instance_kill_event"
        | "add_health_check_event"
        | "remove_health_check_event"
        | "app_terminated_event" => single(json.get("appId")),
        "instance_changed_event" | "instance_health_changed_event" => single(json.get("runSpecId")),
        "api_post_event" => single(json.get("appDefinition").and_then(|d| d.get("id"))),
        t if t.starts_with("deployment_") => {
            let mut apps = BTreeSet::new();
            collect_plan_apps(json.get("plan").unwrap_or(&Value::Null), &mut apps);
            if let Some(step) = json.get("currentStep") {
                collect_plan_apps(step, &mut apps);
            }
            if apps.is_empty() || !apps.iter().all(|a| is_valid_app_id(a)) {
                Affected::All
            } else {
                Affected::Apps(apps)
            }
        }
        "group_change_success" | "group_change_failed" => Affected::All,
        // Unknown types (a later Marathon): a re-read costs little and cannot be wrong.
        _ => Affected::All,
    }
}

/// Every `"app": "/id"` under a deployment plan or step (the light format; read leniently).
fn collect_plan_apps(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("app", Value::String(id)) => {
                        out.insert(id.clone());
                    }
                    _ => collect_plan_apps(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_plan_apps(v, out)),
        _ => {}
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time (`2025-07-20T10:02:03.000Z`, or
/// with a `+hh:mm` offset). `None` when it cannot be read.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        // Compared as bytes: the text after the seconds may hold any character.
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let at = text.len() - rest.len();
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2025-07-20T10:02:03.000Z"), Some(1_753_005_723_000));
        assert_eq!(parse_timestamp("2025-07-20T10:02:03.5Z"), Some(1_753_005_723_500));
        assert_eq!(parse_timestamp("2025-07-20T12:02:03.000+02:00"), Some(1_753_005_723_000));
        for bad in [
            "",
            "2025-07-20",
            "2025-13-20T10:02:03Z",
            "2025-07-20T10:02:03",
            "2025-07-20T10:02:03.Z",
            "x025-07-20T10:02:03Z",
            // Found with the marathon fuzz target (#20 item 8): an offset-sized tail that starts
            // inside a character panicked the provider when it sliced the tail's first byte.
            "2025-07-20T10:00:04\u{e9}1:00",
            "2025-07-20T10:00:04+0\u{e9}00",
            "2025-07-20T10:00:04+-1:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn nulls_and_unknown_fields_are_tolerated() {
        let app: App = serde_json::from_str(
            r#"{"id":"/a","labels":null,"networks":null,"container":null,"portDefinitions":null,"unknownField":{"x":1},
                "tasks":[{"id":"t1","host":"h","ports":null,"state":"TASK_SOMETHING_NEW","healthCheckResults":null,"ipAddresses":[{"ipAddress":"10.0.0.1","protocol":"IPv4"}]}]}"#,
        )
        .unwrap();
        assert_eq!(app.tasks[0].state, "TASK_SOMETHING_NEW");
        assert!(app.labels.is_empty() && app.tasks[0].ports.is_empty());
        assert_eq!(app.tasks[0].ip_addresses[0].ip_address, "10.0.0.1");
        let err = read_app(serde_json::json!({"id": "/b", "tasks": "not a list"}), 3).unwrap_err();
        assert_eq!(err.0, "/b");
        assert_eq!(read_app(serde_json::json!({"tasks": []}), 3).unwrap_err().0, "apps[3]");
    }

    #[test]
    fn events_name_the_apps_to_reread() {
        let one = |id: &str| Affected::Apps(BTreeSet::from([id.to_string()]));
        assert_eq!(
            affected(
                "status_update_event",
                r#"{"taskId":"t","taskStatus":"TASK_KILLED","appId":"/shop/api"}"#
            ),
            one("/shop/api")
        );
        assert_eq!(
            affected("health_status_changed_event", r#"{"appId":"/shop/web","alive":false}"#),
            one("/shop/web")
        );
        assert_eq!(affected("app_terminated_event", r#"{"appId":"/shop/old"}"#), one("/shop/old"));
        assert_eq!(affected("api_post_event", r#"{"appDefinition":{"id":"/x"}}"#), one("/x"));
        assert_eq!(affected("instance_changed_event", r#"{"runSpecId":"/y"}"#), one("/y"));
        assert_eq!(
            affected(
                "deployment_success",
                r#"{"id":"d","plan":{"id":"d","steps":[{"actions":[{"action":"StartApplication","app":"/shop/search"},{"action":"ScaleApplication","app":"/shop/api"}]}]}}"#
            ),
            Affected::Apps(BTreeSet::from(["/shop/search".to_string(), "/shop/api".to_string()]))
        );
        assert_eq!(affected("deployment_info", r#"{"plan":{"weird":true}}"#), Affected::All);
        assert_eq!(affected("status_update_event", "not json"), Affected::All);
        assert_eq!(affected("status_update_event", r#"{"appId":"/../v2/x"}"#), Affected::All);
        assert_eq!(affected("event_stream_attached", "{}"), Affected::Nothing);
        assert_eq!(affected("pod_created_event", "{}"), Affected::Nothing);
        assert_eq!(affected("something_new_event", "{}"), Affected::All);
    }
}
