//! From one Marathon app to routers, services and a decision for every task.
//!
//! Which tasks are routed follows Traefik's Marathon provider (v1.7/v2.11), with two deliberate
//! differences:
//!
//! * **Marathon's health results count.** A task is left out while any of its health check
//!   results says `alive: false` (Traefik stopped looking in v1.6). A task with no results yet (a
//!   new task, or an app without checks) stays in: missing is not unhealthy.
//! * **Container networking uses container ports.** With `networks: [{mode: container}]` the
//!   task is reached on its own IP, where only the *container* port listens; the host port of a
//!   mapping exists on the agent's address only. So, without a port label, a task IP is paired
//!   with `portMappings[0].containerPort` (Traefik paired it with the host port when one was
//!   mapped), and `index:N` / `name:NAME` index the mappings. Host and bridge networking use the
//!   agent host name and the task's host ports, as Traefik did.
//!
//! Everything that decides is a pure function of the app, the settings and the current time, so
//! it is tested without a Marathon and re-run cheaply when only time changed (readiness).

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::labels::{self, DefaultRule, Labels, Target, TemplateVars};
use crate::model::DynamicConfig;
use crate::provider::{Decision, ItemReport};

use super::api::{self, App, Task};

/// What the decisions depend on besides the app.
#[derive(Clone, Debug)]
pub struct Rules<'a> {
    /// Label prefix.
    pub prefix: &'a str,
    /// Route apps without an enable label.
    pub exposed_by_default: bool,
    /// The default rule template.
    pub default_rule: &'a DefaultRule,
    /// Apply readiness checks during deployments.
    pub respect_readiness_checks: bool,
    /// Always use the agent host name.
    pub force_task_hostname: bool,
    /// Provider name, for qualified names in reports.
    pub provider: &'a str,
}

/// One task's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskOutcome {
    /// What the admin side shows.
    pub report: ItemReport,
    /// Its routers and services, when routed.
    pub fragment: Option<DynamicConfig>,
}

/// One app's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct AppOutcome {
    /// The app's service name (`/shop/web` → `shop-web`).
    pub name: String,
    /// What the admin side shows about the app (its decision is set when fragments are merged).
    pub report: ItemReport,
    /// Every task, sorted by ID.
    pub tasks: Vec<TaskOutcome>,
    /// When a time-based decision (readiness grace) changes, if any task has one pending.
    pub recheck_at: Option<SystemTime>,
}

/// Normalises an app ID into a service name: `/shop/web` → `shop-web`.
pub fn service_name(app_id: &str) -> String {
    app_id.trim_matches('/').replace('/', "-")
}

/// The networking an app uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Networking {
    /// `host`: tasks share the agent's network.
    Host,
    /// `container/bridge`: host ports mapped into the container.
    Bridge,
    /// `container` (IP per task).
    Container,
}

impl Networking {
    /// The app's networking: `networks[0].mode`, else the 1.4 `container.docker.network`, else
    /// container when the 1.4 `ipAddress` is set, else host.
    pub fn of(app: &App) -> Self {
        if let Some(net) = app.networks.first() {
            return match net.mode.as_str() {
                "container" => Self::Container,
                "container/bridge" => Self::Bridge,
                _ => Self::Host,
            };
        }
        let legacy = app
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .and_then(|d| d.network.as_deref());
        match legacy.map(str::to_ascii_uppercase).as_deref() {
            Some("BRIDGE") => Self::Bridge,
            Some("USER") => Self::Container,
            Some("HOST") => Self::Host,
            _ if app.ip_address.is_some() => Self::Container,
            _ => Self::Host,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Bridge => "container/bridge",
            Self::Container => "container",
        }
    }
}

/// Evaluates every task of `app` at time `now`.
pub fn evaluate(app: &App, rules: &Rules, now: SystemTime) -> AppOutcome {
    let name = service_name(&app.id);
    let mut report = ItemReport {
        kind: "app".into(),
        name: app.id.clone(),
        ..Default::default()
    };
    let mut tasks: Vec<&Task> = app.tasks.iter().collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let skip_all = |report: &mut ItemReport, why: String| {
        report.reasons.push(why.clone());
        let tasks = tasks
            .iter()
            .map(|t| TaskOutcome {
                report: task_report(app, t, Decision::Skipped, vec![format!("the app is not routed: {why}")]),
                fragment: None,
            })
            .collect();
        (tasks, None)
    };
    let (tasks, recheck_at) = if name.is_empty() || !api::is_valid_app_id(&app.id) {
        skip_all(&mut report, format!("`{}` is not a usable app ID", app.id))
    } else {
        match labels::parse(app.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), rules.prefix) {
            Err(errors) => {
                let why = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                skip_all(&mut report, format!("bad labels: {why}"))
            }
            Ok(parsed) if !parsed.enabled(rules.exposed_by_default) => skip_all(
                &mut report,
                format!(
                    "not exposed: `{}.enable` is {} and exposedByDefault is false",
                    rules.prefix,
                    if parsed.enable == Some(false) { "false" } else { "not set" }
                ),
            ),
            Ok(parsed) => {
                let mut recheck: Option<SystemTime> = None;
                let outcomes = tasks
                    .iter()
                    .map(|task| {
                        let (outcome, at) = evaluate_task(app, task, &parsed, &name, rules, now);
                        recheck = match (recheck, at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        outcome
                    })
                    .collect();
                (outcomes, recheck)
            }
        }
    };
    AppOutcome {
        name,
        report,
        tasks,
        recheck_at,
    }
}

fn task_report(app: &App, task: &Task, decision: Decision, reasons: Vec<String>) -> ItemReport {
    ItemReport {
        kind: "task".into(),
        name: app.id.clone(),
        id: task.id.clone(),
        decision,
        reasons,
        ..Default::default()
    }
}

/// One task: state, health, readiness, address, then the label fragment.
fn evaluate_task(app: &App, task: &Task, labels: &Labels, name: &str, rules: &Rules, now: SystemTime) -> (TaskOutcome, Option<SystemTime>) {
    let skipped = |why: String| TaskOutcome {
        report: task_report(app, task, Decision::Skipped, vec![why]),
        fragment: None,
    };
    if task.state != "TASK_RUNNING" {
        let state = if task.state.is_empty() { "unknown" } else { task.state.as_str() };
        return (skipped(format!("state {state}: only TASK_RUNNING tasks are routed")), None);
    }
    if let Some(failing) = task.health_check_results.iter().find(|r| !r.alive) {
        let mut why = "a Marathon health check reports alive:false".to_string();
        if let Some(n) = failing.consecutive_failures {
            why.push_str(&format!(" ({n} consecutive failures"));
            if let Some(cause) = failing.last_failure_cause.as_deref().filter(|c| !c.is_empty()) {
                why.push_str(&format!(", last: {cause}"));
            }
            why.push(')');
        }
        return (skipped(why), None);
    }
    let mut notes = Vec::new();
    if rules.respect_readiness_checks && !app.deployments.is_empty() && !app.readiness_checks.is_empty() {
        match readiness(app, task, now) {
            Readiness::Ready(note) => notes.push(note),
            Readiness::NotReady(why, at) => {
                return (skipped(why), at);
            }
        }
    }
    let networking = Networking::of(app);
    let by_host = networking != Networking::Container || rules.force_task_hostname;
    let host = if by_host {
        if task.host.is_empty() {
            return (skipped("the task has no host name".into()), None);
        }
        notes.push(format!(
            "{} networking{}: reached at the agent host `{}`",
            networking.describe(),
            if networking == Networking::Container {
                " with forceTaskHostname"
            } else {
                ""
            },
            task.host
        ));
        task.host.clone()
    } else {
        match task_ip(task, labels) {
            Ok((ip, note)) => {
                notes.push(note);
                ip
            }
            Err(why) => return (skipped(why), None),
        }
    };
    let port_notes = RefCell::new(Vec::new());
    let resolve = |label: Option<&str>| -> Result<u16, String> {
        let (port, note) = resolve_port(app, task, networking, by_host, label)?;
        port_notes.borrow_mut().push(note);
        Ok(port)
    };
    let target = Target {
        name,
        host: &host,
        port: &resolve,
    };
    let vars = TemplateVars {
        name: &app.id,
        container_name: &task.id,
        labels: Some(&app.labels),
    };
    match labels.fragment(&target, rules.default_rule, &vars) {
        Err(errors) => (skipped(errors.join("; ")), None),
        Ok(fragment) => {
            notes.extend(port_notes.into_inner());
            notes.extend(fragment.notes);
            let mut report = task_report(app, task, Decision::Routed, notes);
            report.routers = fragment
                .config
                .http
                .routers
                .keys()
                .map(|r| format!("{r}@{}", rules.provider))
                .collect();
            report.services = fragment
                .config
                .http
                .services
                .keys()
                .map(|s| format!("{s}@{}", rules.provider))
                .collect();
            report.addresses = fragment
                .config
                .http
                .services
                .values()
                .filter_map(|s| s.load_balancer.as_ref())
                .flat_map(|lb| lb.servers.iter())
                .map(|s| {
                    s.url
                        .split_once("://")
                        .map_or(s.url.as_str(), |(_, rest)| rest)
                        .trim_end_matches('/')
                        .to_string()
                })
                .collect();
            (
                TaskOutcome {
                    report,
                    fragment: Some(fragment.config),
                },
                None,
            )
        }
    }
}

enum Readiness {
    Ready(String),
    NotReady(String, Option<SystemTime>),
}

/// Traefik's readiness rule, used only during a deployment of an app with readiness checks.
fn readiness(app: &App, task: &Task, now: SystemTime) -> Readiness {
    let results: Vec<_> = app.readiness_check_results.iter().filter(|r| r.task_id == task.id).collect();
    if !results.is_empty() {
        return match results.iter().find(|r| !r.ready) {
            Some(r) => Readiness::NotReady(
                format!(
                    "readiness check `{}` is not ready (a deployment is running and respectReadinessChecks is on)",
                    r.name.as_deref().unwrap_or("?")
                ),
                None,
            ),
            None => Readiness::Ready("readiness checks passed".into()),
        };
    }
    // No result yet: not ready until the first check's timeout (+5 s) has passed since start.
    let timeout = app.readiness_checks.first().and_then(|c| c.timeout_seconds).unwrap_or(10);
    let grace = if timeout <= 0 {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(timeout.unsigned_abs()) + Duration::from_secs(5)
    };
    let Some(started) = task.started_at.as_deref().and_then(api::parse_timestamp) else {
        return Readiness::NotReady("no readiness result yet and no readable startedAt: not ready".into(), None);
    };
    let started = UNIX_EPOCH + Duration::from_millis(started.max(0).unsigned_abs());
    // A timeout too long for the clock to represent never runs out: no re-check is asked for.
    match started.checked_add(grace) {
        Some(ready_at) if now >= ready_at => Readiness::Ready(format!("no readiness result, but started more than {grace:?} ago")),
        ready_at => Readiness::NotReady(
            format!("no readiness result yet: not ready until {grace:?} after the task started"),
            ready_at,
        ),
    }
}

/// The task IP for container networking (`<prefix>.marathon.ipAddressIdx` picks among several).
fn task_ip(task: &Task, labels: &Labels) -> Result<(String, String), String> {
    let ips: Vec<&str> = task
        .ip_addresses
        .iter()
        .map(|ip| ip.ip_address.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    let idx_label = labels
        .options
        .get("marathon.ipaddressidx")
        .or_else(|| labels.options.get("marathon.ipadressidx"));
    match (ips.as_slice(), idx_label) {
        ([], _) => Err("container networking, but the task has no IP address".into()),
        ([only], None) => Ok((only.to_string(), format!("container networking: reached at the task IP {only}"))),
        (_, None) => Err(format!(
            "container networking and {} IP addresses ({}): set the label `marathon.ipAddressIdx` to pick one",
            ips.len(),
            ips.join(", ")
        )),
        (_, Some(idx)) => match idx.trim().parse::<usize>() {
            Ok(i) if i < ips.len() => Ok((
                ips[i].to_string(),
                format!("container networking: task IP {} (ipAddressIdx {i})", ips[i]),
            )),
            Ok(i) => Err(format!(
                "label marathon.ipAddressIdx is {i}, but the task has {} IP addresses",
                ips.len()
            )),
            Err(_) => Err(format!("label marathon.ipAddressIdx `{idx}` is not a number")),
        },
    }
}

fn port_u16(value: i64) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// Resolves a `server.port` label (`N`, `index:N`, `name:NAME`, or none) to a port and a note.
fn resolve_port(app: &App, task: &Task, networking: Networking, by_host: bool, label: Option<&str>) -> Result<(u16, String), String> {
    let label = label.map(str::trim);
    let index = match label {
        Some(text) => {
            if let Some(i) = text.strip_prefix("index:") {
                i.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("port label `{text}`: `{i}` is not an index"))?
            } else if let Some(wanted) = text.strip_prefix("name:") {
                let names = port_names(app, networking, by_host);
                names.iter().position(|n| n.as_deref() == Some(wanted.trim())).ok_or_else(|| {
                    let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
                    format!(
                        "port label `{text}`: no port named `{wanted}` (named ports: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    )
                })?
            } else {
                let port = text
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("port label `{text}`: use a port number, `index:N` or `name:NAME`"))?;
                return Ok((port, format!("port {port} from the port label")));
            }
        }
        None => 0,
    };
    let (ports, what) = available_ports(app, task, by_host);
    match ports.get(index) {
        Some(Some(port)) => Ok((
            *port,
            match label {
                Some(l) => format!("port {port} ({what}[{index}], from the port label `{l}`)"),
                None => format!("port {port}: the first of the {what}"),
            },
        )),
        Some(None) => Err(format!("{what}[{index}] is not a usable port")),
        None if ports.is_empty() => Err(format!(
            "no port found ({what} are empty); set the label `http.services.<name>.loadbalancer.server.port`"
        )),
        None => Err(format!("port index {index} is out of range: the task has {} {what}", ports.len())),
    }
}

/// The ports a task can be reached on, in index order, and what they are.
fn available_ports(app: &App, task: &Task, by_host: bool) -> (Vec<Option<u16>>, &'static str) {
    let host_ports = || task.ports.iter().map(|p| port_u16(*p)).collect::<Vec<_>>();
    if by_host {
        if !task.ports.is_empty() {
            return (host_ports(), "task host ports");
        }
        if app.require_ports && !app.port_definitions.is_empty() {
            return (app.port_definitions.iter().map(|d| port_u16(d.port)).collect(), "port definitions");
        }
        return (Vec::new(), "task host ports");
    }
    let mappings = port_mappings(app);
    if !mappings.is_empty() {
        // containerPort 0 means "the same as the host port"; host ports are listed in the order
        // of the mappings that have one.
        let mut host = task.ports.iter();
        let ports = mappings
            .iter()
            .map(|m| {
                let host_port = if m.host_port.is_some() { host.next().copied() } else { None };
                match port_u16(m.container_port) {
                    Some(p) => Some(p),
                    None => host_port.and_then(port_u16),
                }
            })
            .collect();
        return (ports, "container ports");
    }
    if let Some(discovery) = app.ip_address.as_ref().and_then(|ip| ip.discovery.as_ref()) {
        if !discovery.ports.is_empty() {
            return (discovery.ports.iter().map(|p| port_u16(p.number)).collect(), "discovery ports");
        }
    }
    if !task.ports.is_empty() {
        return (host_ports(), "task host ports");
    }
    (Vec::new(), "container ports")
}

/// `portMappings` (1.5+ under `container`, 1.4 under `container.docker`).
fn port_mappings(app: &App) -> &[api::PortMapping] {
    match &app.container {
        Some(c) if !c.port_mappings.is_empty() => &c.port_mappings,
        Some(c) => c.docker.as_ref().map_or(&[][..], |d| d.port_mappings.as_slice()),
        None => &[],
    }
}

/// Port names aligned with [`available_ports`].
fn port_names(app: &App, networking: Networking, by_host: bool) -> Vec<Option<String>> {
    let from_mappings = || port_mappings(app).iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    match (by_host, networking) {
        (true, Networking::Host) => app.port_definitions.iter().map(|d| d.name.clone()).collect(),
        (true, _) => {
            // Host ports exist for the mappings that have a host port, in order.
            port_mappings(app)
                .iter()
                .filter(|m| m.host_port.is_some())
                .map(|m| m.name.clone())
                .collect()
        }
        (false, _) => {
            let names = from_mappings();
            if !names.is_empty() {
                return names;
            }
            app.ip_address
                .as_ref()
                .and_then(|ip| ip.discovery.as_ref())
                .map(|d| d.ports.iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The M1 sample of the provider spec (three apps), plus what each needs.
    const M1: &str = r#"{"apps":[
 {"id":"/shop/web","instances":2,"labels":{"traefik.enable":"true","traefik.http.routers.web.rule":"Host(`shop.example.com`)"},
  "networks":[{"mode":"host"}],"portDefinitions":[{"port":10001,"protocol":"tcp","name":"http","labels":{}}],"requirePorts":false,
  "healthChecks":[{"protocol":"HTTP","path":"/health","portIndex":0}],"readinessChecks":[],"deployments":[],
  "tasks":[
   {"id":"shop_web.instance-1b2c._app.1","appId":"/shop/web","host":"agent-1.example.internal","ports":[31001],"servicePorts":[10001],
    "ipAddresses":[{"ipAddress":"10.0.5.11","protocol":"IPv4"}],"state":"TASK_RUNNING","startedAt":"2025-07-01T09:00:05.000Z",
    "healthCheckResults":[{"alive":true,"consecutiveFailures":0,"instanceId":"shop_web.marathon-1b2c"}]},
   {"id":"shop_web.instance-3d4e._app.1","appId":"/shop/web","host":"agent-2.example.internal","ports":[31007],"servicePorts":[10001],
    "ipAddresses":[{"ipAddress":"10.0.5.12","protocol":"IPv4"}],"state":"TASK_RUNNING","startedAt":"2025-07-01T09:00:06.000Z",
    "healthCheckResults":[{"alive":false,"consecutiveFailures":2,"lastFailureCause":"ConnectionAttemptFailedException","instanceId":"shop_web.marathon-3d4e"}]}]},
 {"id":"/shop/api","instances":2,"labels":{"traefik.enable":"true","traefik.http.services.api.loadbalancer.server.port":"index:0"},
  "container":{"type":"DOCKER","docker":{"image":"shop/api:2.4"},
               "portMappings":[{"containerPort":8080,"hostPort":0,"servicePort":10002,"protocol":"tcp","name":"http","labels":{}}],"volumes":[]},
  "networks":[{"mode":"container/bridge"}],"healthChecks":[{"protocol":"MESOS_HTTP","path":"/ping","portIndex":0}],"deployments":[],
  "tasks":[
   {"id":"shop_api.instance-5f6a._app.1","appId":"/shop/api","host":"agent-3.example.internal","ports":[31045],"state":"TASK_RUNNING",
    "startedAt":"2025-07-20T10:00:04.000Z","healthCheckResults":[{"alive":true,"consecutiveFailures":0}]},
   {"id":"shop_api.instance-7b8c._app.1","appId":"/shop/api","host":"agent-1.example.internal","ports":[31046],"state":"TASK_STAGING"}]},
 {"id":"/shop/search","instances":1,"labels":{"traefik.enable":"true","traefik.http.services.search.loadbalancer.server.port":"9200"},
  "container":{"type":"MESOS","docker":{"image":"search:7"},"portMappings":[{"containerPort":9200,"servicePort":10003,"protocol":"tcp","name":"http"}]},
  "networks":[{"mode":"container","name":"dcos"}],
  "readinessChecks":[{"name":"readiness","protocol":"HTTP","path":"/_ready","portName":"http","intervalSeconds":5,"timeoutSeconds":3}],
  "deployments":[{"id":"5a1c0d8e-7d9e-4c55-9e3b-2f6e1f0a9b11"}],
  "readinessCheckResults":[{"name":"readiness","taskId":"shop_search.instance-9d0e._app.1","ready":false,"lastResponse":{"status":503}}],
  "tasks":[{"id":"shop_search.instance-9d0e._app.1","appId":"/shop/search","host":"agent-2.example.internal","ports":[],
            "ipAddresses":[{"ipAddress":"9.0.3.7","protocol":"IPv4"}],"state":"TASK_RUNNING","startedAt":"2025-07-20T10:02:03.000Z"}]}
]}"#;

    fn apps(text: &str) -> Vec<App> {
        let list: api::AppList = serde_json::from_str(text).unwrap();
        list.apps
            .into_iter()
            .enumerate()
            .map(|(i, v)| api::read_app(v, i).unwrap())
            .collect()
    }

    fn app(json: serde_json::Value) -> App {
        serde_json::from_value(json).unwrap()
    }

    fn rules(rule: &DefaultRule) -> Rules<'_> {
        Rules {
            prefix: "traefik",
            exposed_by_default: false,
            default_rule: rule,
            respect_readiness_checks: false,
            force_task_hostname: false,
            provider: "marathon",
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_753_006_000) // 2025-07-20T10:06:40Z
    }

    fn routed(outcome: &AppOutcome) -> Vec<String> {
        outcome
            .tasks
            .iter()
            .filter(|t| t.report.decision == Decision::Routed)
            .flat_map(|t| t.report.addresses.clone())
            .collect()
    }

    #[test]
    fn m1_with_health_respected() {
        let rule = DefaultRule::default();
        let apps = apps(M1);
        let web = evaluate(&apps[0], &rules(&rule), now());
        assert_eq!(web.name, "shop-web");
        assert_eq!(routed(&web), vec!["agent-1.example.internal:31001"]);
        assert!(web.tasks[1].report.reasons[0].contains("alive:false (2 consecutive failures, last: ConnectionAttemptFailedException)"));
        let router = &web.tasks[0].fragment.as_ref().unwrap().http.routers["web"];
        assert_eq!(
            (router.rule.as_str(), router.service.as_str()),
            ("Host(`shop.example.com`)", "shop-web")
        );

        let api = evaluate(&apps[1], &rules(&rule), now());
        assert_eq!(
            routed(&api),
            vec!["agent-3.example.internal:31045"],
            "bridge: agent host and host port"
        );
        assert!(api.tasks[1].report.reasons[0].contains("TASK_STAGING"));
        assert_eq!(api.tasks[0].report.services, vec!["api@marathon"]);

        let search = evaluate(&apps[2], &rules(&rule), now());
        assert_eq!(routed(&search), vec!["9.0.3.7:9200"], "readiness ignored unless asked");
        let mut with_readiness = rules(&rule);
        with_readiness.respect_readiness_checks = true;
        let search = evaluate(&apps[2], &with_readiness, now());
        assert!(routed(&search).is_empty());
        assert!(search.tasks[0].report.reasons[0].contains("readiness check `readiness` is not ready"));
    }

    #[test]
    fn readiness_without_a_result_waits_for_the_timeout_and_asks_for_a_recheck() {
        let rule = DefaultRule::default();
        let mut r = rules(&rule);
        r.respect_readiness_checks = true;
        let a = app(serde_json::json!({
            "id": "/r", "labels": {"traefik.enable": "true"},
            "readinessChecks": [{"name": "ready", "timeoutSeconds": 3}], "deployments": [{"id": "d"}],
            "tasks": [{"id": "t", "host": "h", "ports": [31000], "state": "TASK_RUNNING", "startedAt": "2025-07-20T10:06:38.000Z"}]
        }));
        let early = evaluate(&a, &r, now());
        assert!(routed(&early).is_empty());
        let ready_at = UNIX_EPOCH + Duration::from_secs(1_753_005_998 + 8);
        assert_eq!(early.recheck_at, Some(ready_at));
        assert_eq!(routed(&evaluate(&a, &r, ready_at)), vec!["h:31000"]);
        let mut no_start = a.clone();
        no_start.tasks[0].started_at = Some("yesterday".into());
        assert!(evaluate(&no_start, &r, now()).tasks[0].report.reasons[0].contains("startedAt"));
        let mut done = a.clone();
        done.deployments.clear();
        assert_eq!(routed(&evaluate(&done, &r, now())), vec!["h:31000"], "only during deployments");
        // Found with the marathon fuzz target (#20 item 8): start + timeout overflowed SystemTime
        // and panicked.
        let mut endless = a.clone();
        endless.readiness_checks[0].timeout_seconds = Some(i64::MAX);
        let waiting = evaluate(&endless, &r, now());
        assert!(routed(&waiting).is_empty());
        assert_eq!(waiting.recheck_at, None);
    }

    #[test]
    fn container_networking_uses_the_task_ip_and_container_ports() {
        let rule = DefaultRule::default();
        let base = serde_json::json!({
            "id": "/c", "labels": {"traefik.enable": "true"},
            "networks": [{"mode": "container", "name": "dcos"}],
            "container": {"portMappings": [{"containerPort": 8080, "hostPort": 31500, "name": "web"}, {"containerPort": 9090, "name": "admin"}]},
            "tasks": [{"id": "t", "host": "agent", "ports": [31500], "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "10.1.0.5"}, {"ipAddress": "10.2.0.5"}]}]
        });
        let several = evaluate(&app(base.clone()), &rules(&rule), now());
        assert!(
            several.tasks[0].report.reasons[0].contains("ipAddressIdx"),
            "{:?}",
            several.tasks[0].report
        );
        let with = |labels: serde_json::Value| {
            let mut json = base.clone();
            json["labels"] = labels;
            routed(&evaluate(&app(json), &rules(&rule), now()))
        };
        assert_eq!(
            with(serde_json::json!({"traefik.enable": "true", "traefik.marathon.ipAddressIdx": "1"})),
            vec!["10.2.0.5:8080"]
        );
        assert_eq!(
            with(serde_json::json!({"traefik.enable": "true", "traefik.marathon.ipadressidx": "0",
                                    "traefik.http.services.s.loadbalancer.server.port": "name:admin"})),
            vec!["10.1.0.5:9090"]
        );
        assert_eq!(
            with(serde_json::json!({"traefik.enable": "true", "traefik.marathon.ipAddressIdx": "0",
                                    "traefik.http.services.s.loadbalancer.server.port": "index:1"})),
            vec!["10.1.0.5:9090"]
        );
        assert!(
            with(serde_json::json!({"traefik.enable": "true", "traefik.marathon.ipAddressIdx": "2"})).is_empty(),
            "idx == len is refused"
        );
        let mut forced = rules(&rule);
        forced.force_task_hostname = true;
        let mut json = base.clone();
        json["labels"]["traefik.http.services.s.loadbalancer.server.port"] = "name:web".into();
        assert_eq!(
            routed(&evaluate(&app(json), &forced, now())),
            vec!["agent:31500"],
            "forced host name: host ports"
        );
    }

    #[test]
    fn ports_by_label_and_their_errors() {
        let rule = DefaultRule::default();
        let a = |port: Option<&str>, ports: serde_json::Value| {
            let mut labels = serde_json::json!({"traefik.enable": "true"});
            if let Some(p) = port {
                labels["traefik.http.services.s.loadbalancer.server.port"] = p.into();
            }
            evaluate(
                &app(serde_json::json!({
                    "id": "/p", "labels": labels, "portDefinitions": [{"port": 10000, "name": "http"}, {"port": 10001, "name": "metrics"}],
                    "tasks": [{"id": "t", "host": "h", "ports": ports, "state": "TASK_RUNNING"}]
                })),
                &rules(&rule),
                now(),
            )
        };
        assert_eq!(routed(&a(None, serde_json::json!([31000, 31001]))), vec!["h:31000"]);
        assert_eq!(routed(&a(Some("index:1"), serde_json::json!([31000, 31001]))), vec!["h:31001"]);
        assert_eq!(routed(&a(Some("name:metrics"), serde_json::json!([31000, 31001]))), vec!["h:31001"]);
        assert_eq!(routed(&a(Some("8081"), serde_json::json!([]))), vec!["h:8081"]);
        let reason = |o: AppOutcome| o.tasks[0].report.reasons.join(" ");
        assert!(reason(a(Some("index:5"), serde_json::json!([31000]))).contains("out of range"));
        assert!(reason(a(Some("name:nope"), serde_json::json!([31000]))).contains("named ports: http, metrics"));
        assert!(reason(a(Some("http"), serde_json::json!([31000]))).contains("index:N"));
        assert!(reason(a(None, serde_json::json!([]))).contains("no port found"));
        assert!(reason(a(None, serde_json::json!([70000]))).contains("not a usable port"));
    }

    #[test]
    fn legacy_1_4_shapes() {
        let rule = DefaultRule::default();
        let bridge = app(serde_json::json!({
            "id": "/old/bridge", "labels": {"traefik.enable": "true"},
            "container": {"type": "DOCKER", "docker": {"network": "BRIDGE", "portMappings": [{"containerPort": 80, "hostPort": 0, "name": "http"}]}},
            "tasks": [{"id": "t", "host": "agent-9", "ports": [31999], "state": "TASK_RUNNING"}]
        }));
        assert_eq!(Networking::of(&bridge), Networking::Bridge);
        assert_eq!(routed(&evaluate(&bridge, &rules(&rule), now())), vec!["agent-9:31999"]);
        let ip_per_task = app(serde_json::json!({
            "id": "/old/ipt", "labels": {"traefik.enable": "true"},
            "ipAddress": {"networkName": "dcos", "discovery": {"ports": [{"number": 8080, "name": "http", "protocol": "tcp"}]}},
            "tasks": [{"id": "t", "host": "agent-9", "ports": [], "state": "TASK_RUNNING", "ipAddresses": [{"ipAddress": "9.0.0.2"}]}]
        }));
        assert_eq!(Networking::of(&ip_per_task), Networking::Container);
        assert_eq!(routed(&evaluate(&ip_per_task, &rules(&rule), now())), vec!["9.0.0.2:8080"]);
    }

    #[test]
    fn apps_not_routed_say_why_for_every_task() {
        let rule = DefaultRule::default();
        let hidden = evaluate(
            &app(serde_json::json!({"id": "/h", "tasks": [{"id": "t", "host": "h", "ports": [1], "state": "TASK_RUNNING"}]})),
            &rules(&rule),
            now(),
        );
        assert!(hidden.report.reasons[0].contains("not exposed"));
        assert!(hidden.tasks[0].report.reasons[0].starts_with("the app is not routed: not exposed"));
        let bad = evaluate(
            &app(
                serde_json::json!({"id": "/b", "labels": {"traefik.enable": "true", "traefik.http.routers.r.rule": "Host(`x`"},
                                     "tasks": [{"id": "t", "host": "h", "ports": [1], "state": "TASK_RUNNING"}]}),
            ),
            &rules(&rule),
            now(),
        );
        assert!(bad.report.reasons[0].contains("traefik.http.routers.r.rule"), "{:?}", bad.report);
        let default_rule = evaluate(
            &app(serde_json::json!({"id": "/shop/web", "labels": {"traefik.enable": "true"},
                                     "tasks": [{"id": "t", "host": "h", "ports": [1], "state": "TASK_RUNNING"}]})),
            &rules(&rule),
            now(),
        );
        assert_eq!(
            default_rule.tasks[0].fragment.as_ref().unwrap().http.routers["shop-web"].rule,
            "Host(`shop-web`)"
        );
        for (state, expected) in [
            ("TASK_KILLING", "TASK_KILLING"),
            ("TASK_UNREACHABLE", "TASK_UNREACHABLE"),
            ("", "unknown"),
        ] {
            let o = evaluate(
                &app(serde_json::json!({"id": "/s", "labels": {"traefik.enable": "true"},
                                         "tasks": [{"id": "t", "host": "h", "ports": [1], "state": state}]})),
                &rules(&rule),
                now(),
            );
            assert!(o.tasks[0].report.reasons[0].contains(expected));
        }
    }
}
