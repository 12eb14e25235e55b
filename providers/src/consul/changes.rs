//! Which services a change in Consul's check list touches.
//!
//! The checks watch (`/v1/health/state/any`) returns every check of the cluster. Rather than diff
//! it against the previous list, it is compared with the checks drover *holds* for each service
//! (the ones that came with its instance list): a service is refreshed when the two differ. That
//! needs no baseline, so it is exact on the first answer, after a reconnect and after an index
//! reset alike, and it also catches the change that happened between listing a service and the
//! first answer of the watch.
//!
//! A node-level check (`serfHealth`, `_node_maintenance`) belongs to every service that has an
//! instance on that node. An instance registered without any check on a node that hosts no other
//! instance of its service leaves no trace here: the catalog watch covers it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::consul::catalog::{HealthCheck, ServiceEntry};

type CheckKey<'a> = (&'a str, &'a str, &'a str);

/// Services whose held checks differ from `checks`, plus services that have service checks in
/// `checks` but no instance held (new, or not listed yet).
pub fn touched_by_checks(held: &BTreeMap<String, Vec<ServiceEntry>>, checks: &[HealthCheck]) -> BTreeSet<String> {
    let mut node_checks: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    let mut service_checks: HashMap<&str, BTreeSet<CheckKey>> = HashMap::new();
    for c in checks {
        if c.service_id.is_empty() {
            node_checks
                .entry(c.node.as_str())
                .or_default()
                .push((c.check_id.as_str(), c.status.as_str()));
        } else {
            service_checks
                .entry(c.service_name.as_str())
                .or_default()
                .insert((c.node.as_str(), c.check_id.as_str(), c.status.as_str()));
        }
    }
    let mut out = BTreeSet::new();
    for (name, entries) in held {
        let mine: BTreeSet<CheckKey> = entries
            .iter()
            .flat_map(|e| e.checks.iter())
            .map(|c| (c.node.as_str(), c.check_id.as_str(), c.status.as_str()))
            .collect();
        let nodes: BTreeSet<&str> = entries.iter().map(|e| e.node.node.as_str()).collect();
        let mut current: BTreeSet<CheckKey> = service_checks.get(name.as_str()).cloned().unwrap_or_default();
        for node in nodes {
            for (id, status) in node_checks.get(node).into_iter().flatten() {
                current.insert((node, id, status));
            }
        }
        if mine != current {
            out.insert(name.clone());
        }
    }
    for name in service_checks.keys() {
        if !held.contains_key(*name) {
            out.insert((*name).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(node: &str, id: &str, service: &str, status: &str) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: id.into(),
            status: status.into(),
            service_id: if service.is_empty() {
                String::new()
            } else {
                format!("{service}-{node}")
            },
            service_name: service.into(),
            ..Default::default()
        }
    }

    fn entry(node: &str, service: &str, checks: Vec<HealthCheck>) -> ServiceEntry {
        let mut e = ServiceEntry::default();
        e.node.node = node.into();
        e.service.service = service.into();
        e.service.id = format!("{service}-{node}");
        e.checks = checks;
        e
    }

    fn held() -> BTreeMap<String, Vec<ServiceEntry>> {
        BTreeMap::from([
            (
                "web".to_string(),
                vec![
                    entry(
                        "a",
                        "web",
                        vec![check("a", "serfHealth", "", "passing"), check("a", "w", "web", "passing")],
                    ),
                    entry(
                        "b",
                        "web",
                        vec![check("b", "serfHealth", "", "passing"), check("b", "w", "web", "passing")],
                    ),
                ],
            ),
            (
                "api".to_string(),
                vec![entry("b", "api", vec![check("b", "serfHealth", "", "passing")])],
            ),
        ])
    }

    fn cluster(web_b: &str, serf_b: &str) -> Vec<HealthCheck> {
        vec![
            check("a", "serfHealth", "", "passing"),
            check("b", "serfHealth", "", serf_b),
            check("c", "serfHealth", "", "passing"),
            check("a", "w", "web", "passing"),
            check("b", "w", "web", web_b),
            check("c", "x", "other", "passing"),
        ]
    }

    #[test]
    fn an_unchanged_cluster_touches_nothing_held() {
        let touched = touched_by_checks(&held(), &cluster("passing", "passing"));
        assert_eq!(touched, BTreeSet::from(["other".to_string()]), "only the service not held yet");
    }

    #[test]
    fn a_service_check_touches_its_service_only() {
        let touched = touched_by_checks(&held(), &cluster("critical", "passing"));
        assert!(touched.contains("web") && !touched.contains("api"), "{touched:?}");
    }

    #[test]
    fn a_node_check_touches_every_service_on_the_node() {
        let touched = touched_by_checks(&held(), &cluster("passing", "critical"));
        assert!(touched.contains("web") && touched.contains("api"), "{touched:?}");
        let mut maintenance = cluster("passing", "passing");
        maintenance.push(check("b", "_node_maintenance", "", "critical"));
        let touched = touched_by_checks(&held(), &maintenance);
        assert!(touched.contains("web") && touched.contains("api"), "{touched:?}");
    }

    #[test]
    fn a_vanished_check_touches_its_service() {
        let mut checks = cluster("passing", "passing");
        checks.retain(|c| !(c.node == "b" && c.check_id == "w"));
        let touched = touched_by_checks(&held(), &checks);
        assert!(touched.contains("web") && !touched.contains("api"), "{touched:?}");
    }
}
