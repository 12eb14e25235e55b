//! From Consul instances to drover routes: one decision per instance, then one fragment.
//!
//! Each instance is judged on its own tags (Consul's service-level tag list is only the union of
//! its instances' tags): tags become labels by splitting at the first `=`, exactly as Docker labels
//! ([`crate::labels`]); the address is `Service.Address`, else `Node.Address`; the port is the
//! `server.port` tag, else `Service.Port`. Health decides last. An instance whose health
//! `strictChecks` does not admit still contributes its routers and an *empty* service, so a
//! service whose every instance is down answers 503 ("no available server") instead of
//! disappearing into a 404, which would hide the outage behind a routing miss.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::aggregate::qualify;
use crate::consul::catalog::ServiceEntry;
use crate::consul::config::Admitted;
use crate::consul::health;
use crate::labels::{self, normalize, DefaultRule, Merger, Target, TemplateVars};
use crate::model::DynamicConfig;
use crate::provider::{Decision, ItemReport};

/// How instances are judged (from the static configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tag prefix (`drover`).
    pub prefix: String,
    /// Route instances without `<prefix>.enable`.
    pub exposed_by_default: bool,
    /// Rule of routers without one.
    pub default_rule: DefaultRule,
    /// Health states that are routed.
    pub admitted: Vec<Admitted>,
    /// Provider name, for qualified names in reports.
    pub provider: String,
}

impl Settings {
    /// Whether a service is worth listing instances for, from its tag union: any `<prefix>.` tag,
    /// or every service when `exposedByDefault` is on.
    pub fn is_candidate(&self, union_tags: &[String]) -> bool {
        self.exposed_by_default || union_tags.iter().any(|t| has_prefix(t, &self.prefix))
    }

    fn strict_checks(&self) -> String {
        self.admitted
            .iter()
            .map(|a| match a {
                Admitted::Any => "any".to_string(),
                Admitted::State(s) => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn has_prefix(tag: &str, prefix: &str) -> bool {
    tag.len() > prefix.len() && tag.as_bytes()[prefix.len()] == b'.' && tag[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The provider's whole fragment and the report on everything seen.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Built {
    /// Routers and services of every routed (and every enabled but unhealthy) instance.
    pub config: DynamicConfig,
    /// One report per instance, and one per service skipped without looking at its instances.
    pub items: Vec<ItemReport>,
}

/// Builds the fragment from the catalog (`name → tag union`) and the instances listed so far.
pub fn build(catalog: &BTreeMap<String, Vec<String>>, instances: &BTreeMap<String, Vec<ServiceEntry>>, settings: &Settings) -> Built {
    let mut merger = Merger::default();
    let mut items = Vec::new();
    for (name, tags) in catalog {
        if !settings.is_candidate(tags) {
            items.push(ItemReport {
                kind: "service".into(),
                name: name.clone(),
                decision: Decision::Skipped,
                reasons: vec![format!(
                    "no instance has a `{}.` tag and exposedByDefault is false",
                    settings.prefix
                )],
                ..Default::default()
            });
            continue;
        }
        let Some(entries) = instances.get(name) else { continue };
        let mut sorted: Vec<&ServiceEntry> = entries.iter().collect();
        sorted.sort_by(|a, b| (&a.node.node, &a.service.id).cmp(&(&b.node.node, &b.service.id)));
        for entry in sorted {
            let (mut item, fragment) = judge(name, entry, settings);
            if let Some(fragment) = fragment {
                let conflicts = merger.add(&fragment);
                item.reasons.extend(conflicts);
            }
            items.push(item);
        }
    }
    Built {
        config: merger.finish(),
        items,
    }
}

/// One instance's decision, and the fragment it contributes (servers removed when unhealthy).
pub fn judge(service: &str, entry: &ServiceEntry, settings: &Settings) -> (ItemReport, Option<DynamicConfig>) {
    let node_id = if entry.node.id.is_empty() {
        &entry.node.node
    } else {
        &entry.node.id
    };
    let mut item = ItemReport {
        kind: "instance".into(),
        name: format!("{service}/{} on {}", entry.service.id, entry.node.node),
        id: format!("{node_id}/{}", entry.service.id),
        ..Default::default()
    };
    let skip = |mut item: ItemReport, reasons: Vec<String>| {
        item.decision = Decision::Skipped;
        item.reasons.extend(reasons);
        (item, None)
    };
    let tag_labels: BTreeMap<String, String> = entry
        .service
        .tags
        .iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for key in duplicate_keys(&entry.service.tags) {
        item.reasons
            .push(format!("tag key `{key}` is set more than once; the last one is used"));
    }
    let labels = match labels::parse(tag_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), &settings.prefix) {
        Ok(l) => l,
        Err(errors) => return skip(item, errors.iter().map(|e| e.to_string().replacen("label", "tag", 1)).collect()),
    };
    if !labels.enabled(settings.exposed_by_default) {
        let why = match labels.enable {
            Some(false) => format!("tag `{}.enable=false`", settings.prefix),
            _ => format!("no `{}.enable=true` tag and exposedByDefault is false", settings.prefix),
        };
        return skip(item, vec![format!("not enabled: {why}")]);
    }
    for (key, value) in &labels.options {
        match key.as_str() {
            "consulcatalog.connect" if value.trim().eq_ignore_ascii_case("true") => {
                return skip(
                    item,
                    vec![format!(
                        "tag `{}.consulcatalog.connect=true`: Consul Connect is not supported by drover",
                        settings.prefix
                    )],
                )
            }
            "consulcatalog.connect" => {}
            "consulcatalog.canary" => item.reasons.push(format!(
                "tag `{}.consulcatalog.canary` is not supported by drover and is ignored: this instance is balanced with the others",
                settings.prefix
            )),
            other => item
                .reasons
                .push(format!("tag `{}.{other}` does not apply to Consul and is ignored", settings.prefix)),
        }
    }
    let (host, host_note) = if !entry.service.address.is_empty() {
        (
            entry.service.address.as_str(),
            format!("address {} from Service.Address", entry.service.address),
        )
    } else if !entry.node.address.is_empty() {
        (
            entry.node.address.as_str(),
            format!("address {} from Node.Address (Service.Address is empty)", entry.node.address),
        )
    } else {
        return skip(item, vec!["no address: Service.Address and Node.Address are both empty".into()]);
    };
    let target_name = normalize(service);
    if target_name.is_empty() {
        return skip(
            item,
            vec![format!(
                "the service name `{service}` has no letters or digits to name a router after"
            )],
        );
    }
    let port_notes = RefCell::new(Vec::new());
    let service_port = entry.service.port;
    let prefix = settings.prefix.as_str();
    let port = |tag: Option<&str>| -> Result<u16, String> {
        match tag {
            Some(text) => match text.trim().parse::<u16>() {
                Ok(p) if p != 0 => {
                    port_notes.borrow_mut().push(format!("port {p} from the server.port tag"));
                    Ok(p)
                }
                _ => Err(format!("the server.port tag `{text}` is not a port number (1-65535)")),
            },
            None => match u16::try_from(service_port) {
                Ok(p) if p != 0 => {
                    port_notes.borrow_mut().push(format!("port {p} from Service.Port"));
                    Ok(p)
                }
                _ => Err(format!(
                    "Service.Port is {service_port} (registered without a usable port) and no `{prefix}.http.services.<name>.loadbalancer.server.port` tag sets one"
                )),
            },
        }
    };
    let vars = TemplateVars {
        name: service,
        container_name: &entry.service.id,
        labels: Some(&tag_labels),
    };
    let target = Target {
        name: &target_name,
        host,
        port: &port,
    };
    let fragment = match labels.fragment(&target, &settings.default_rule, &vars) {
        Ok(f) => f,
        Err(errors) => return skip(item, errors),
    };
    item.reasons.push(host_note);
    item.reasons.append(&mut port_notes.borrow_mut());
    item.reasons.extend(fragment.notes);
    let mut config = fragment.config;
    item.routers = config.http.routers.keys().map(|r| qualify(r, &settings.provider)).collect();
    item.services = config.http.services.keys().map(|s| qualify(s, &settings.provider)).collect();
    let status = health::aggregate(&entry.checks);
    let failing = health::explain(&entry.checks);
    if health::is_admitted(status, &settings.admitted) {
        item.decision = Decision::Routed;
        let checks = if entry.checks.is_empty() {
            "no checks".to_string()
        } else {
            format!("{} checks", entry.checks.len())
        };
        item.reasons.push(format!("health {status} ({checks})"));
        item.reasons.extend(failing);
        item.addresses = config
            .http
            .services
            .values()
            .filter_map(|s| s.load_balancer.as_ref())
            .flat_map(|lb| lb.servers.iter())
            .map(|s| s.url.trim_start_matches("http://").to_string())
            .collect();
    } else {
        item.decision = Decision::Skipped;
        item.reasons.push(format!(
            "health {status}, which strictChecks [{}] does not route; its routers stay so that the service answers 503 when no instance is left",
            settings.strict_checks()
        ));
        item.reasons.extend(failing);
        for service in config.http.services.values_mut() {
            if let Some(lb) = service.load_balancer.as_mut() {
                lb.servers.clear();
            }
        }
    }
    (item, Some(config))
}

fn duplicate_keys(tags: &[String]) -> Vec<String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for (k, v) in tags.iter().filter_map(|t| t.split_once('=')) {
        if let Some(prev) = seen.insert(k, v) {
            if prev != v && !out.iter().any(|o| o == k) {
                out.push(k.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consul::catalog::{parse_entries, tests::C2};
    use crate::consul::health::Status;

    fn settings(prefix: &str, admitted: Vec<Admitted>) -> Settings {
        Settings {
            prefix: prefix.into(),
            exposed_by_default: false,
            default_rule: DefaultRule::default(),
            admitted,
            provider: "consulCatalog".into(),
        }
    }

    fn default_checks() -> Vec<Admitted> {
        vec![Admitted::State(Status::Passing), Admitted::State(Status::Warning)]
    }

    #[test]
    fn the_documented_sample_gives_the_documented_result() {
        let entries = parse_entries("web", C2.as_bytes()).unwrap();
        let catalog = BTreeMap::from([("web".to_string(), vec!["traefik.enable=true".to_string()])]);
        let instances = BTreeMap::from([("web".to_string(), entries)]);
        let built = build(&catalog, &instances, &settings("traefik", default_checks()));
        let servers: Vec<&str> = built.config.http.services["web"]
            .load_balancer
            .as_ref()
            .unwrap()
            .servers
            .iter()
            .map(|s| s.url.as_str())
            .collect();
        assert_eq!(
            servers,
            vec!["http://172.17.0.3:8080", "http://10.1.10.13:8080"],
            "web-3 is in maintenance"
        );
        assert_eq!(built.config.http.routers["web"].rule, "Host(`web`)");
        let decisions: Vec<(String, Decision)> = built.items.iter().map(|i| (i.id.clone(), i.decision)).collect();
        assert_eq!(
            decisions,
            vec![
                ("5c3a/web-1".to_string(), Decision::Routed),
                ("8f24/web-2".to_string(), Decision::Routed),
                ("a9e0/web-3".to_string(), Decision::Skipped)
            ]
        );
        assert!(
            built.items[1].reasons.iter().any(|r| r.contains("from Node.Address")),
            "{:?}",
            built.items[1]
        );
        assert!(
            built.items[1].reasons.iter().any(|r| r.contains("health warning")),
            "{:?}",
            built.items[1]
        );
        assert!(
            built.items[2].reasons.iter().any(|r| r.contains("health maintenance")),
            "{:?}",
            built.items[2]
        );
        assert!(
            built.items[2].reasons.iter().any(|r| r.contains("(deploy)")),
            "the maintenance reason is shown"
        );
        assert_eq!(built.items[0].addresses, vec!["172.17.0.3:8080".to_string()]);

        let strict = build(&catalog, &instances, &settings("traefik", vec![Admitted::State(Status::Passing)]));
        let lb = strict.config.http.services["web"].load_balancer.clone().unwrap();
        assert_eq!(lb.servers.len(), 1, "strictChecks = [passing] drops the warning instance");
    }

    fn entry(node: &str, id: &str, tags: &[&str], address: &str, port: u32) -> ServiceEntry {
        let mut e = ServiceEntry::default();
        e.node.id = format!("id-{node}");
        e.node.node = node.into();
        e.node.address = "10.0.0.1".into();
        e.service.id = id.into();
        e.service.service = "api".into();
        e.service.tags = tags.iter().map(|t| t.to_string()).collect();
        e.service.address = address.into();
        e.service.port = port;
        e
    }

    #[test]
    fn tags_split_at_the_first_equals_and_errors_name_the_tag() {
        let s = settings("drover", default_checks());
        let e = entry(
            "n1",
            "api-1",
            &[
                "drover.enable=true",
                "drover.http.routers.api.rule=Host(`a.example`) && Path(`/x=1`)",
                "v2",
            ],
            "10.0.0.9",
            9000,
        );
        let (item, config) = judge("api", &e, &s);
        assert_eq!(item.decision, Decision::Routed, "{item:?}");
        assert_eq!(config.unwrap().http.routers["api"].rule, "Host(`a.example`) && Path(`/x=1`)");
        let bad = entry(
            "n1",
            "api-2",
            &["drover.enable=true", "drover.http.routers.api.rule=Host(`a"],
            "10.0.0.9",
            9000,
        );
        let (item, config) = judge("api", &bad, &s);
        assert!(config.is_none());
        assert!(
            item.reasons[0].starts_with("tag `drover.http.routers.api.rule`"),
            "{:?}",
            item.reasons
        );
    }

    #[test]
    fn ports_addresses_and_enablement() {
        let s = settings("drover", default_checks());
        let (item, _) = judge("api", &entry("n1", "a", &["drover.http.routers.x.rule=Path(`/`)"], "", 80), &s);
        assert!(item.reasons[0].contains("no `drover.enable=true` tag"), "{:?}", item.reasons);
        let (item, _) = judge("api", &entry("n1", "a", &["drover.enable=true"], "", 0), &s);
        assert_eq!(item.decision, Decision::Skipped);
        assert!(item.reasons.iter().any(|r| r.contains("Service.Port is 0")), "{:?}", item.reasons);
        let (item, config) = judge(
            "api",
            &entry(
                "n1",
                "a",
                &["drover.enable=true", "drover.http.services.api.loadbalancer.server.port=8081"],
                "",
                0,
            ),
            &s,
        );
        assert_eq!(item.decision, Decision::Routed, "{item:?}");
        assert_eq!(
            config.unwrap().http.services["api"].load_balancer.as_ref().unwrap().servers[0].url,
            "http://10.0.0.1:8081"
        );
        let (item, config) = judge("api", &entry("n1", "a", &["drover.enable=true"], "fd00::7", 80), &s);
        assert_eq!(item.addresses, vec!["[fd00::7]:80".to_string()]);
        assert!(config.is_some());
        let (item, _) = judge(
            "api",
            &entry("n1", "a", &["drover.enable=true", "drover.consulcatalog.connect=true"], "", 80),
            &s,
        );
        assert!(item.reasons[0].contains("Consul Connect"), "{:?}", item.reasons);
    }

    #[test]
    fn the_same_service_id_on_two_nodes_gives_two_servers() {
        let s = settings("drover", default_checks());
        let catalog = BTreeMap::from([("api".to_string(), vec!["drover.enable=true".to_string()])]);
        let instances = BTreeMap::from([(
            "api".to_string(),
            vec![
                entry("n2", "api", &["drover.enable=true"], "10.0.0.2", 80),
                entry("n1", "api", &["drover.enable=true"], "10.0.0.1", 80),
            ],
        )]);
        let built = build(&catalog, &instances, &s);
        assert_eq!(built.config.http.services["api"].load_balancer.as_ref().unwrap().servers.len(), 2);
        assert_eq!(built.items[0].id, "id-n1/api");
        assert_eq!(built.items[1].id, "id-n2/api");
    }

    #[test]
    fn a_service_whose_instances_are_all_down_keeps_its_router_with_no_server() {
        let s = settings("drover", default_checks());
        let mut down = entry("n1", "api-1", &["drover.enable=true"], "10.0.0.2", 80);
        down.checks.push(crate::consul::catalog::HealthCheck {
            node: "n1".into(),
            check_id: "serfHealth".into(),
            status: "critical".into(),
            ..Default::default()
        });
        let catalog = BTreeMap::from([
            ("api".to_string(), vec!["drover.enable=true".to_string()]),
            ("redis".to_string(), vec!["primary".to_string()]),
        ]);
        let instances = BTreeMap::from([("api".to_string(), vec![down])]);
        let built = build(&catalog, &instances, &s);
        assert!(built.config.http.routers.contains_key("api"));
        assert!(built.config.http.services["api"].load_balancer.as_ref().unwrap().servers.is_empty());
        assert!(
            built.items[0]
                .reasons
                .iter()
                .any(|r| r.contains("node check `serfHealth` on n1: critical")),
            "{:?}",
            built.items[0]
        );
        assert_eq!(
            (built.items[1].kind.as_str(), built.items[1].decision),
            ("service", Decision::Skipped)
        );
    }
}
