//! One container: what drover keeps of its inspect answer, and the decision taken about it.
//!
//! The decision is a pure function of the cached inspect data, the parsed labels and drover's own
//! container, so a change to one container (or to drover's networks) rebuilds the whole provider
//! fragment from memory, without asking the daemon about anyone else.
//!
//! Order of the checks (the first that fails is the reason shown): enabled, labels parse, state
//! (`running`, not stopping), health (`healthy` or no health check), an address, then the routers
//! and services the labels (or the defaults) describe.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use bollard::models::ContainerInspectResponse;

use super::config::Common;
use super::network::{choose_address, choose_port, SelfContainer, Wanted};
use crate::labels::{self, normalize, LabelError, Labels, Merger, Target, TemplateVars};
use crate::model::DynamicConfig;
use crate::provider::{Decision, ItemReport};

/// One network attachment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// `NetworkID`.
    pub network_id: String,
    /// `IPAddress` (empty when stopped).
    pub ipv4: String,
    /// `GlobalIPv6Address`.
    pub ipv6: String,
    /// `Gateway`.
    pub gateway: String,
}

impl Attachment {
    /// IPv4 if any, else IPv6, else empty.
    pub fn ip(&self) -> &str {
        if self.ipv4.is_empty() {
            &self.ipv6
        } else {
            &self.ipv4
        }
    }
}

/// What drover keeps of a container's inspect answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `State.Status`: `running`, `paused`, `exited`, …
    pub state: String,
    /// `State.Health.Status`; `None` when the container has no health check.
    pub health: Option<String>,
    /// `State.StartedAt` (tells a restart from the same run).
    pub started_at: String,
    /// `Config.StopSignal`.
    pub stop_signal: Option<String>,
    /// `HostConfig.NetworkMode`.
    pub network_mode: String,
    /// Networks by name.
    pub networks: BTreeMap<String, Attachment>,
    /// Exposed and published TCP ports, sorted.
    pub ports: Vec<u16>,
    /// Set when a stop signal was sent (from the `kill` event) during this run.
    pub stopping: Option<String>,
}

impl Observed {
    /// Reads an inspect answer.
    pub fn from_inspect(c: ContainerInspectResponse) -> Result<Self, String> {
        let id = c.id.filter(|s| !s.is_empty()).ok_or("the inspect answer has no Id")?;
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let settings = c.network_settings.unwrap_or_default();
        let mut ports: Vec<u16> = settings
            .ports
            .iter()
            .flat_map(|m| m.keys())
            .chain(config.exposed_ports.iter().flatten())
            .filter_map(|key| {
                let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
                (proto == "tcp").then(|| port.parse().ok()).flatten()
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let health = state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        Ok(Self {
            id,
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health,
            started_at: state.started_at.unwrap_or_default(),
            stop_signal: config.stop_signal,
            network_mode: c.host_config.and_then(|h| h.network_mode).unwrap_or_default(),
            networks: settings
                .networks
                .unwrap_or_default()
                .into_iter()
                .map(|(name, e)| {
                    (
                        name,
                        Attachment {
                            network_id: e.network_id.unwrap_or_default(),
                            ipv4: e.ip_address.unwrap_or_default(),
                            ipv6: e.global_ipv6_address.unwrap_or_default(),
                            gateway: e.gateway.unwrap_or_default(),
                        },
                    )
                })
                .collect(),
            ports,
            stopping: None,
        })
    }

    /// The name its automatic router and service get, before normalising: Compose's
    /// `<service>_<project>` (so replicas share it), else the container name.
    pub fn service_name(&self) -> String {
        match (
            self.labels.get("com.docker.compose.service"),
            self.labels.get("com.docker.compose.project"),
        ) {
            (Some(s), Some(p)) => format!("{s}_{p}"),
            _ => self.name.clone(),
        }
    }
}

/// `<prefix>.enable` read directly (so `enable=false` wins even when other labels are broken).
pub fn enable_label(labels: &BTreeMap<String, String>, prefix: &str) -> Option<bool> {
    let key = format!("{prefix}.enable");
    labels
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
}

/// Parses the labels under `prefix`.
pub fn parse_labels(labels: &BTreeMap<String, String>, prefix: &str) -> Result<Labels, Vec<LabelError>> {
    labels::parse(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), prefix)
}

/// What the decision needs besides the container.
pub struct Context<'a> {
    /// Provider settings.
    pub common: &'a Common,
    /// Provider name (`docker`), to qualify names in reports.
    pub provider: &'a str,
    /// drover's own container, when it runs in one.
    pub me: Option<&'a SelfContainer>,
    /// Every known container by id (for `container:<id>` network modes).
    pub all: &'a HashMap<String, Observed>,
}

/// A decision: the container's routers and services (when routed) and its report.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    /// Its fragment, when routed.
    pub fragment: Option<DynamicConfig>,
    /// What the admin side shows.
    pub report: ItemReport,
}

fn skipped(o: &Observed, reasons: Vec<String>) -> Decided {
    Decided {
        fragment: None,
        report: ItemReport {
            kind: "container".into(),
            name: o.name.clone(),
            id: o.id.clone(),
            decision: Decision::Skipped,
            reasons,
            ..Default::default()
        },
    }
}

/// Decides about one container.
pub fn decide(o: &Observed, labels: &Result<Labels, Vec<LabelError>>, ctx: &Context) -> Decided {
    let prefix = &ctx.common.label_prefix;
    let enabled = enable_label(&o.labels, prefix).unwrap_or(ctx.common.exposed_by_default);
    if !enabled {
        let why = if enable_label(&o.labels, prefix) == Some(false) {
            format!("not enabled: {prefix}.enable=false")
        } else {
            format!("not enabled: no {prefix}.enable=true label (exposedByDefault is false)")
        };
        return skipped(o, vec![why]);
    }
    let labels = match labels {
        Ok(l) => l,
        Err(errors) => return skipped(o, errors.iter().map(|e| format!("label error: {e}")).collect()),
    };
    if let Some(signal) = &o.stopping {
        return skipped(o, vec![format!("stopping: sent signal {signal}; taken out before it exits")]);
    }
    if o.state != "running" {
        let state = if o.state.is_empty() { "unknown" } else { o.state.as_str() };
        return skipped(o, vec![format!("{state}: only running containers are routed")]);
    }
    match o.health.as_deref() {
        None | Some("healthy") => {}
        Some("starting") => return skipped(o, vec!["health check starting: routed once it reports healthy".into()]),
        Some(other) => return skipped(o, vec![format!("{other}: its health check fails")]),
    }
    let wanted_label = labels.options.get("docker.network").filter(|n| !n.is_empty());
    let wanted = match (wanted_label, &ctx.common.network) {
        (Some(n), _) => Some(Wanted {
            name: n,
            source: format!("label {prefix}.docker.network"),
        }),
        (None, Some(n)) => Some(Wanted {
            name: n,
            source: "the provider's `network` option".into(),
        }),
        (None, None) => None,
    };
    let address = match choose_address(o, wanted.as_ref(), ctx.me, ctx.all, 0) {
        Ok(a) => a,
        Err(why) => return skipped(o, vec![why]),
    };
    let name = normalize(&o.service_name());
    if name.is_empty() {
        return skipped(o, vec!["its name has no letter or digit to build a router name from".into()]);
    }
    let notes = RefCell::new(Vec::new());
    let port = |label: Option<&str>| choose_port(label, &o.ports, &mut notes.borrow_mut());
    let target = Target {
        name: &name,
        host: &address.host,
        port: &port,
    };
    let service_name = o.service_name();
    let vars = TemplateVars {
        name: &service_name,
        container_name: &o.name,
        labels: Some(&o.labels),
    };
    match labels.fragment(&target, &ctx.common.default_rule, &vars) {
        Err(errors) => skipped(o, errors),
        Ok(fragment) => {
            let mut reasons = vec![address.why.clone()];
            reasons.extend(address.warnings.iter().cloned());
            reasons.extend(notes.into_inner());
            reasons.extend(fragment.notes);
            let config = fragment.config;
            let q = |n: &String| crate::aggregate::qualify(n, ctx.provider);
            let report = ItemReport {
                kind: "container".into(),
                name: o.name.clone(),
                id: o.id.clone(),
                decision: Decision::Routed,
                reasons,
                routers: config
                    .http
                    .routers
                    .keys()
                    .chain(config.tcp.routers.keys())
                    .chain(config.udp.routers.keys())
                    .map(q)
                    .collect(),
                services: config
                    .http
                    .services
                    .keys()
                    .chain(config.tcp.services.keys())
                    .chain(config.udp.services.keys())
                    .map(q)
                    .collect(),
                addresses: addresses(&config),
            };
            Decided {
                fragment: Some(config),
                report,
            }
        }
    }
}

/// The server URLs of a fragment, without the scheme.
pub fn addresses(config: &DynamicConfig) -> Vec<String> {
    let mut out: Vec<String> = config
        .http
        .services
        .values()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.servers.iter())
        .map(|s| s.url.split_once("://").map_or(s.url.as_str(), |(_, rest)| rest).to_string())
        .chain(
            config
                .tcp
                .services
                .values()
                .filter_map(|s| s.load_balancer.as_ref())
                .flat_map(|lb| lb.servers.iter().map(|s| s.address.clone())),
        )
        .chain(
            config
                .udp
                .services
                .values()
                .filter_map(|s| s.load_balancer.as_ref())
                .flat_map(|lb| lb.servers.iter().map(|s| s.address.clone())),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Joins the decisions (in item-name order) into the provider's fragment and reports.
pub fn assemble(mut decided: Vec<Decided>) -> (DynamicConfig, Vec<ItemReport>) {
    decided.sort_by(|a, b| (&a.report.name, &a.report.id).cmp(&(&b.report.name, &b.report.id)));
    let mut merger = Merger::default();
    let mut reports = Vec::with_capacity(decided.len());
    for d in decided {
        let mut report = d.report;
        if let Some(fragment) = &d.fragment {
            let conflicts = merger.add(fragment);
            report.reasons.extend(conflicts.into_iter().map(|c| format!("conflict: {c}")));
        }
        reports.push(report);
    }
    (merger.finish(), reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::config::DockerConfig;

    fn running(name: &str, ip: &str, labels: &[(&str, &str)]) -> Observed {
        Observed {
            id: format!("id-{name}"),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            state: "running".into(),
            network_mode: "stack_net".into(),
            networks: BTreeMap::from([(
                "stack_net".to_string(),
                Attachment {
                    network_id: "n1".into(),
                    ipv4: ip.into(),
                    ..Default::default()
                },
            )]),
            ports: vec![80],
            ..Default::default()
        }
    }

    fn run(containers: &[Observed], common: &Common) -> (DynamicConfig, Vec<ItemReport>) {
        let all = HashMap::new();
        let ctx = Context {
            common,
            provider: "docker",
            me: None,
            all: &all,
        };
        assemble(
            containers
                .iter()
                .map(|o| decide(o, &parse_labels(&o.labels, &common.label_prefix), &ctx))
                .collect(),
        )
    }

    #[test]
    fn compose_replicas_merge_and_broken_neighbours_are_explained() {
        let common = DockerConfig::default().check().unwrap();
        let compose = [
            ("drover.enable", "true"),
            ("com.docker.compose.service", "web"),
            ("com.docker.compose.project", "shop"),
        ];
        let mut bad = running(
            "bad-1",
            "10.0.0.9",
            &[("drover.enable", "true"), ("drover.http.routers.b.rule", "Host(`x`")],
        );
        bad.id = "id-bad".into();
        let noport = running(
            "noport",
            "10.0.0.8",
            &[
                ("drover.enable", "true"),
                ("drover.http.services.n.loadbalancer.server.port", "eighty"),
            ],
        );
        let plain = running("plain", "10.0.0.7", &[]);
        let (config, reports) = run(
            &[
                running("shop-web-1", "10.0.0.2", &compose),
                running("shop-web-2", "10.0.0.3", &compose),
                bad,
                noport,
                plain,
            ],
            &common,
        );
        let lb = config.http.services["web-shop"].load_balancer.as_ref().unwrap();
        assert_eq!(lb.servers.len(), 2);
        assert_eq!(config.http.routers["web-shop"].rule, "Host(`web-shop`)");
        let by_name: HashMap<_, _> = reports.iter().map(|r| (r.name.as_str(), r)).collect();
        assert_eq!(by_name["shop-web-1"].decision, Decision::Routed);
        assert_eq!(by_name["shop-web-1"].addresses, vec!["10.0.0.2:80".to_string()]);
        assert!(
            by_name["bad-1"].reasons[0].contains("drover.http.routers.b.rule"),
            "{:?}",
            by_name["bad-1"]
        );
        assert!(
            by_name["noport"].reasons[0].contains("`eighty` is not a port number"),
            "{:?}",
            by_name["noport"]
        );
        assert!(by_name["plain"].reasons[0].contains("not enabled"));
    }

    #[test]
    fn state_health_and_stopping() {
        let common = DockerConfig::default().check().unwrap();
        let on = [("drover.enable", "true")];
        let mut starting = running("a", "10.0.0.2", &on);
        starting.health = Some("starting".into());
        let mut unhealthy = running("b", "10.0.0.3", &on);
        unhealthy.health = Some("unhealthy".into());
        let mut paused = running("c", "10.0.0.4", &on);
        paused.state = "paused".into();
        let mut stopping = running("d", "10.0.0.5", &on);
        stopping.stopping = Some("15".into());
        let mut healthy = running("e", "10.0.0.6", &on);
        healthy.health = Some("healthy".into());
        let (config, reports) = run(&[starting, unhealthy, paused, stopping, healthy], &common);
        assert_eq!(config.http.services.len(), 1);
        assert!(config.http.services.contains_key("e"));
        let reasons: Vec<&str> = reports.iter().map(|r| r.reasons[0].as_str()).collect();
        assert!(reasons[0].contains("starting") && reasons[1].contains("unhealthy") && reasons[2].contains("paused"));
        assert!(reasons[3].contains("stopping"));
    }

    #[test]
    fn traefik_prefix_and_injection_safe_names() {
        let c = DockerConfig {
            label_prefix: "traefik".into(),
            ..Default::default()
        };
        let common = c.check().unwrap();
        let t = running(
            "legacy",
            "10.0.0.2",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.app.rule", "PathPrefix(`/app`)"),
                ("traefik.http.services.app.loadbalancer.server.port", "8080"),
            ],
        );
        let evil = running("x`) || Host(`evil", "10.0.0.3", &[("traefik.enable", "true")]);
        let (config, _) = run(&[t, evil], &common);
        assert_eq!(config.http.routers["app"].rule, "PathPrefix(`/app`)");
        assert_eq!(
            config.http.services["app"].load_balancer.as_ref().unwrap().servers[0].url,
            "http://10.0.0.2:8080"
        );
        assert_eq!(config.http.routers["x-Host-evil"].rule, "Host(`x-Host-evil`)");
    }
}
