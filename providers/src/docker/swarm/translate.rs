//! From Swarm's services, tasks and networks to routers, services and a decision for every
//! service and task.
//!
//! Services, tasks and networks are read with drover's own lenient types: bollard has no field for
//! a task's network attachments, and its enums reject values a newer daemon may send.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use crate::docker::config::Common;
use crate::docker::network::{choose_address, choose_port, SelfContainer, Wanted};
use crate::docker::translate::{addresses, enable_label, parse_labels, Attachment, Observed};
use crate::labels::{normalize, Merger, Target, TemplateVars};
use crate::model::DynamicConfig;
use crate::provider::{Decision, ItemReport};

/// `GET /services` entry (the fields drover reads).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SwarmService {
    /// Service id.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The spec.
    #[serde(rename = "Spec", default)]
    pub spec: ServiceSpec,
    /// Its endpoint (virtual IPs).
    #[serde(rename = "Endpoint", default)]
    pub endpoint: ServiceEndpoint,
}

/// `Spec`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceSpec {
    /// Service name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Service labels (`deploy.labels` in a stack file).
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
    /// `EndpointSpec.Mode`: `vip` (default) or `dnsrr`.
    #[serde(rename = "EndpointSpec", default)]
    pub endpoint_spec: Option<EndpointSpec>,
}

/// `EndpointSpec`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EndpointSpec {
    /// `vip` or `dnsrr`.
    #[serde(rename = "Mode", default)]
    pub mode: Option<String>,
}

/// `Endpoint`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceEndpoint {
    /// One virtual IP per network, CIDR form.
    #[serde(rename = "VirtualIPs", default)]
    pub virtual_ips: Vec<VirtualIp>,
}

/// `Endpoint.VirtualIPs[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VirtualIp {
    /// Network id.
    #[serde(rename = "NetworkID", default)]
    pub network_id: String,
    /// `10.0.1.2/24`.
    #[serde(rename = "Addr", default)]
    pub addr: String,
}

/// `GET /tasks` entry.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SwarmTask {
    /// Task id.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Its service.
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// Replica slot (absent for global services).
    #[serde(rename = "Slot", default)]
    pub slot: Option<u64>,
    /// Status.
    #[serde(rename = "Status", default)]
    pub status: TaskStatus,
    /// Network attachments (not in bollard's types).
    #[serde(rename = "NetworksAttachments", default)]
    pub attachments: Vec<TaskAttachment>,
}

/// `Status`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskStatus {
    /// `running`, `starting`, …
    #[serde(rename = "State", default)]
    pub state: String,
    /// The container.
    #[serde(rename = "ContainerStatus", default)]
    pub container: Option<TaskContainer>,
}

/// `Status.ContainerStatus`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskContainer {
    /// Container id.
    #[serde(rename = "ContainerID", default)]
    pub id: String,
}

/// `NetworksAttachments[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskAttachment {
    /// The network.
    #[serde(rename = "Network", default)]
    pub network: AttachedNetwork,
    /// CIDR addresses.
    #[serde(rename = "Addresses", default)]
    pub addresses: Vec<String>,
}

/// `NetworksAttachments[].Network`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AttachedNetwork {
    /// Network id.
    #[serde(rename = "ID", default)]
    pub id: String,
}

/// `GET /networks` entry.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SwarmNetwork {
    /// Name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Id.
    #[serde(rename = "Id", default)]
    pub id: String,
    /// The routing-mesh network.
    #[serde(rename = "Ingress", default)]
    pub ingress: bool,
}

/// Everything one refresh read.
#[derive(Clone, Debug, Default)]
pub struct SwarmState {
    /// Services.
    pub services: Vec<SwarmService>,
    /// Tasks with desired state `running`.
    pub tasks: Vec<SwarmTask>,
    /// Swarm-scoped networks.
    pub networks: Vec<SwarmNetwork>,
}

fn strip_cidr(addr: &str) -> &str {
    addr.split('/').next().unwrap_or(addr)
}

/// Decides about every service and task; `stopping` holds container ids sent their stop signal.
pub fn decide_all(
    state: &SwarmState,
    common: &Common,
    provider: &str,
    me: Option<&SelfContainer>,
    stopping: &HashSet<String>,
) -> (DynamicConfig, Vec<ItemReport>) {
    let nets: HashMap<&str, &SwarmNetwork> = state.networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut tasks_of: HashMap<&str, Vec<&SwarmTask>> = HashMap::new();
    for t in &state.tasks {
        tasks_of.entry(t.service_id.as_str()).or_default().push(t);
    }
    let mut services: Vec<&SwarmService> = state.services.iter().collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut merger = Merger::default();
    let mut reports = Vec::new();
    let prefix = &common.label_prefix;
    let no_tasks = Vec::new();
    for service in services {
        let name = &service.spec.name;
        let service_report = |reasons: Vec<String>| ItemReport {
            kind: "service".into(),
            name: name.clone(),
            id: service.id.clone(),
            decision: Decision::Skipped,
            reasons,
            ..Default::default()
        };
        if !enable_label(&service.spec.labels, prefix).unwrap_or(common.exposed_by_default) {
            reports.push(service_report(vec![format!(
                "not enabled: no {prefix}.enable=true label on the service (exposedByDefault is false)"
            )]));
            continue;
        }
        let labels = match parse_labels(&service.spec.labels, prefix) {
            Ok(l) => l,
            Err(errors) => {
                reports.push(service_report(errors.iter().map(|e| format!("label error: {e}")).collect()));
                continue;
            }
        };
        let wanted_name = labels
            .options
            .get("swarm.network")
            .or_else(|| labels.options.get("docker.network"))
            .filter(|n| !n.is_empty());
        let wanted = match (wanted_name, &common.network) {
            (Some(n), _) => Some(Wanted {
                name: n,
                source: format!("label {prefix}.swarm.network"),
            }),
            (None, Some(n)) => Some(Wanted {
                name: n,
                source: "the provider's `network` option".into(),
            }),
            _ => None,
        };
        let router_name = normalize(name);
        let lbswarm = labels
            .options
            .get("swarm.lbswarm")
            .or_else(|| labels.options.get("docker.lbswarm"))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let dnsrr = service
            .spec
            .endpoint_spec
            .as_ref()
            .and_then(|e| e.mode.as_deref())
            .is_some_and(|m| m.eq_ignore_ascii_case("dnsrr"));
        let build = |item_name: &str, attachments: Vec<(String, String, String)>| -> Result<(DynamicConfig, Vec<String>), Vec<String>> {
            let observed = Observed {
                id: String::new(),
                name: item_name.to_string(),
                state: "running".into(),
                network_mode: "swarm".into(),
                networks: attachments
                    .into_iter()
                    .map(|(net, id, ip)| {
                        let v6 = ip.contains(':');
                        (
                            net,
                            Attachment {
                                network_id: id,
                                ipv4: if v6 { String::new() } else { ip.clone() },
                                ipv6: if v6 { ip } else { String::new() },
                                gateway: String::new(),
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            };
            let address = choose_address(&observed, wanted.as_ref(), me, &HashMap::new(), 0).map_err(|e| vec![e])?;
            let notes = std::cell::RefCell::new(Vec::new());
            let port = |label: Option<&str>| match label {
                None => Err(
                    "no port: Swarm does not expose ports to read; set the label http.services.<name>.loadbalancer.server.port".to_string(),
                ),
                some => choose_port(some, &[], &mut notes.borrow_mut()),
            };
            let target = Target {
                name: &router_name,
                host: &address.host,
                port: &port,
            };
            let vars = TemplateVars {
                name,
                container_name: item_name,
                labels: Some(&service.spec.labels),
            };
            let fragment = labels.fragment(&target, &common.default_rule, &vars)?;
            let mut reasons = vec![address.why];
            reasons.extend(address.warnings);
            reasons.extend(fragment.notes);
            Ok((fragment.config, reasons))
        };
        let mut routed = |kind: &str, item: String, id: String, result: Result<(DynamicConfig, Vec<String>), Vec<String>>| {
            let report = match result {
                Err(reasons) => ItemReport {
                    kind: kind.into(),
                    name: item,
                    id,
                    decision: Decision::Skipped,
                    reasons,
                    ..Default::default()
                },
                Ok((config, mut reasons)) => {
                    reasons.extend(merger.add(&config).into_iter().map(|c| format!("conflict: {c}")));
                    let q = |n: &String| crate::aggregate::qualify(n, provider);
                    ItemReport {
                        kind: kind.into(),
                        name: item,
                        id,
                        decision: Decision::Routed,
                        reasons,
                        routers: config.http.routers.keys().map(q).collect(),
                        services: config.http.services.keys().map(q).collect(),
                        addresses: addresses(&config),
                    }
                }
            };
            reports.push(report);
        };
        if lbswarm && !dnsrr {
            let vips: Vec<(String, String, String)> = service
                .endpoint
                .virtual_ips
                .iter()
                .filter(|v| !strip_cidr(&v.addr).is_empty())
                .filter_map(|v| nets.get(v.network_id.as_str()).map(|n| (n, v)))
                .filter(|(n, _)| !n.ingress || wanted.as_ref().is_some_and(|w| w.name == n.name))
                .map(|(n, v)| (n.name.clone(), n.id.clone(), strip_cidr(&v.addr).to_string()))
                .collect();
            let result = if vips.is_empty() {
                Err(vec!["lbswarm: the service has no virtual IP on a swarm network".to_string()])
            } else {
                build(name, vips).map(|(c, mut r)| {
                    r.insert(0, "lbswarm: the service's virtual IP (Swarm balances across its tasks)".into());
                    (c, r)
                })
            };
            routed("service", name.clone(), service.id.clone(), result);
            continue;
        }
        let mut any = false;
        let tasks = tasks_of.get(service.id.as_str()).unwrap_or(&no_tasks);
        let mut tasks: Vec<&&SwarmTask> = tasks.iter().collect();
        tasks.sort_by_key(|t| (t.slot, t.id.clone()));
        for task in tasks {
            let item = match task.slot {
                Some(slot) => format!("{name}.{slot}"),
                None => format!("{name}.{}", task.id),
            };
            any = true;
            let container = task.status.container.as_ref().map(|c| c.id.as_str()).unwrap_or("");
            let result = if task.status.state != "running" {
                Err(vec![format!("task state `{}`: only running tasks are routed", task.status.state)])
            } else if !container.is_empty() && stopping.contains(container) {
                Err(vec!["stopping: its container was sent its stop signal".to_string()])
            } else {
                let attachments: Vec<(String, String, String)> = task
                    .attachments
                    .iter()
                    .filter_map(|a| nets.get(a.network.id.as_str()).map(|n| (n, a)))
                    .filter(|(n, _)| !n.ingress || wanted.as_ref().is_some_and(|w| w.name == n.name))
                    .filter_map(|(n, a)| {
                        a.addresses
                            .first()
                            .map(|ip| (n.name.clone(), n.id.clone(), strip_cidr(ip).to_string()))
                    })
                    .collect();
                let mut r = build(&item, attachments);
                if dnsrr && lbswarm {
                    if let Ok((_, reasons)) = &mut r {
                        reasons.push("lbswarm is ignored: the service uses dnsrr endpoint mode (no virtual IP)".into());
                    }
                }
                r
            };
            routed("task", item, task.id.clone(), result);
        }
        if !any {
            reports.push(service_report(vec!["no task with desired state running".into()]));
        }
    }
    (merger.finish(), reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::config::SwarmConfig;

    const SERVICES: &str = r#"[{"ID":"9mnp1","Spec":{"Name":"shop_web","Labels":{"drover.enable":"true","drover.http.services.web.loadbalancer.server.port":"80"},
   "EndpointSpec":{"Mode":"vip"}},"Endpoint":{"VirtualIPs":[{"NetworkID":"ingress01","Addr":"10.0.0.7/24"},{"NetworkID":"ov01","Addr":"10.0.1.2/24"}]}},
 {"ID":"vip1","Spec":{"Name":"shop_api","Labels":{"drover.enable":"true","drover.swarm.lbswarm":"true","drover.http.services.api.loadbalancer.server.port":"8080"}},
  "Endpoint":{"VirtualIPs":[{"NetworkID":"ov01","Addr":"10.0.1.9/24"}]}},
 {"ID":"7q2x9","Spec":{"Name":"shop_cache","Labels":{"drover.enable":"false"},"Mode":{"Global":{}},"EndpointSpec":{"Mode":"dnsrr"}},"Endpoint":{"Spec":{"Mode":"dnsrr"}}},
 {"ID":"noport","Spec":{"Name":"shop_admin","Labels":{"drover.enable":"true"}}}]"#;
    const TASKS: &str = r#"[{"ID":"t0kzz1","ServiceID":"9mnp1","Slot":1,"NodeID":"n","DesiredState":"running","Status":{"State":"running","ContainerStatus":{"ContainerID":"c1"}},
  "NetworksAttachments":[{"Network":{"ID":"ingress01","Spec":{"Name":"ingress"}},"Addresses":["10.0.0.9/24"]},{"Network":{"ID":"ov01","Spec":{"Name":"shop_net"}},"Addresses":["10.0.1.5/24"]}]},
 {"ID":"t1ylj2","ServiceID":"9mnp1","Slot":2,"DesiredState":"running","Status":{"State":"starting"},"NetworksAttachments":[{"Network":{"ID":"ov01"},"Addresses":["10.0.1.6/24"]}]},
 {"ID":"t3","ServiceID":"9mnp1","Slot":3,"DesiredState":"running","Status":{"State":"running","ContainerStatus":{"ContainerID":"c3"}},"NetworksAttachments":[{"Network":{"ID":"ov01"},"Addresses":["10.0.1.7/24"]}]},
 {"ID":"t4","ServiceID":"noport","Slot":1,"Status":{"State":"running"},"NetworksAttachments":[{"Network":{"ID":"ov01"},"Addresses":["10.0.1.8/24"]}]}]"#;
    const NETWORKS: &str = r#"[{"Name":"ingress","Id":"ingress01","Scope":"swarm","Driver":"overlay","Ingress":true},{"Name":"shop_net","Id":"ov01","Scope":"swarm","Ingress":false}]"#;

    #[test]
    fn tasks_vips_and_reasons_from_sample_bodies() {
        let state = SwarmState {
            services: serde_json::from_str(SERVICES).unwrap(),
            tasks: serde_json::from_str(TASKS).unwrap(),
            networks: serde_json::from_str(NETWORKS).unwrap(),
        };
        let common = SwarmConfig::default().check().unwrap();
        let stopping = HashSet::from(["c3".to_string()]);
        let (config, reports) = decide_all(&state, &common, "swarm", None, &stopping);
        let web = config.http.services["web"].load_balancer.as_ref().unwrap();
        assert_eq!(web.servers.len(), 1, "one running task not stopping: {web:?}");
        assert_eq!(web.servers[0].url, "http://10.0.1.5:80", "the overlay, not ingress");
        let api = config.http.services["api"].load_balancer.as_ref().unwrap();
        assert_eq!(api.servers[0].url, "http://10.0.1.9:8080");
        let by: HashMap<&str, &ItemReport> = reports.iter().map(|r| (r.name.as_str(), r)).collect();
        assert!(by["shop_web.2"].reasons[0].contains("starting"));
        assert!(by["shop_web.3"].reasons[0].contains("stopping"));
        assert!(by["shop_cache"].reasons[0].contains("not enabled"));
        assert!(by["shop_admin.1"].reasons[0].contains("no port"), "{:?}", by["shop_admin.1"]);
        assert_eq!(config.http.routers["shop-web"].rule, "Host(`shop-web`)");
    }
}
