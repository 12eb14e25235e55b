//! Validating services made of services (`weighted`, `failover`, `mirroring`).
//!
//! Two steps, because a child may come from any provider: [`validate`] checks one service on its
//! own (weights, percentages, names qualified with the parent's provider), and once every
//! provider's services are known, [`resolve_children`] disables each composite whose child is
//! missing, disabled or part of a cycle, naming the child and the key. A disabled composite
//! disables its own parents in turn; the routers that use any of them are disabled by the merge,
//! and everything else keeps serving.

use std::collections::{BTreeMap, HashSet};

use crate::aggregate::qualify;
use crate::balancing::{Choice, CookieSpec};
use crate::model::{Failover, Mirror, Mirroring, Service, Weighted, WeightedService};
use crate::runtime::{ServiceInfo, Status};

/// drover's default `maxBodySize` for mirrors: 64 KiB.
pub const DEFAULT_MIRROR_BODY: i64 = 64 * 1024;

/// A composite service checked on its own, children qualified.
#[derive(Debug, Default)]
pub struct Checked {
    /// `weighted`, children qualified.
    pub weighted: Option<Weighted>,
    /// `failover`, children qualified.
    pub failover: Option<Failover>,
    /// `mirroring`, children qualified, `maxBodySize` and `mirrorBody` filled in.
    pub mirroring: Option<Mirroring>,
    /// The weighted level's sticky cookie.
    pub choice: Choice,
    /// Reasons to disable the service.
    pub fatal: Vec<String>,
    /// Warnings (a default was used).
    pub warnings: Vec<String>,
}

/// Checks service `name` of `provider`, which has no `loadBalancer`, on its own.
pub fn validate(name: &str, provider: &str, s: &Service) -> Checked {
    let mut out = Checked::default();
    let qualified = qualify(name, provider);
    let at = format!("http.services.{name}");
    let kinds = [s.weighted.is_some(), s.failover.is_some(), s.mirroring.is_some()];
    if kinds.iter().filter(|k| **k).count() > 1 {
        out.fatal.push(format!(
            "{at} defines more than one of weighted, failover and mirroring; a service is one kind"
        ));
        return out;
    }
    if let Some(w) = &s.weighted {
        if w.services.is_empty() {
            out.fatal.push(format!("{at}.weighted.services is empty"));
        }
        let mut seen = HashSet::new();
        let mut services = Vec::new();
        for (i, child) in w.services.iter().enumerate() {
            if child.name.trim().is_empty() {
                out.fatal.push(format!("{at}.weighted.services[{i}].name is missing"));
                continue;
            }
            let child_name = qualify(child.name.trim(), provider);
            if !seen.insert(child_name.clone()) {
                out.fatal
                    .push(format!("{at}.weighted.services[{i}]: `{child_name}` is listed twice"));
                continue;
            }
            services.push(WeightedService {
                name: child_name,
                weight: Some(child.weight.unwrap_or(1)),
            });
        }
        if !services.is_empty() && services.iter().all(|c| c.weight == Some(0)) {
            out.fatal.push(format!("{at}.weighted.services: every weight is 0"));
        }
        if let Some(cookie) = w.sticky.as_ref().and_then(|s| s.cookie.as_ref()) {
            out.choice.sticky = Some(CookieSpec::resolve(
                cookie,
                &qualified,
                &format!("{at}.weighted.sticky.cookie"),
                &mut out.warnings,
            ));
        }
        out.weighted = Some(Weighted {
            services,
            sticky: w.sticky.clone(),
            health_check: w.health_check,
        });
    }
    if let Some(f) = &s.failover {
        let mut child = |key: &str, value: &str| {
            if value.trim().is_empty() {
                out.fatal.push(format!("{at}.failover.{key} is missing"));
                String::new()
            } else {
                qualify(value.trim(), provider)
            }
        };
        let service = child("service", &f.service);
        let fallback = child("fallback", &f.fallback);
        if !service.is_empty() && service == fallback {
            out.fatal
                .push(format!("{at}.failover: the service and its fallback are both `{service}`"));
        }
        out.failover = Some(Failover {
            service,
            fallback,
            health_check: f.health_check,
        });
    }
    if let Some(m) = &s.mirroring {
        let service = if m.service.trim().is_empty() {
            out.fatal.push(format!("{at}.mirroring.service is missing"));
            String::new()
        } else {
            qualify(m.service.trim(), provider)
        };
        let mut mirrors = Vec::new();
        for (i, mirror) in m.mirrors.iter().enumerate() {
            let percent = mirror.percent.unwrap_or(0);
            if mirror.name.trim().is_empty() {
                out.fatal.push(format!("{at}.mirroring.mirrors[{i}].name is missing"));
                continue;
            }
            if percent > 100 {
                out.fatal
                    .push(format!("{at}.mirroring.mirrors[{i}].percent: {percent} is above 100"));
                continue;
            }
            mirrors.push(Mirror {
                name: qualify(mirror.name.trim(), provider),
                percent: Some(percent),
            });
        }
        let max_body_size = match m.max_body_size {
            None => DEFAULT_MIRROR_BODY,
            Some(n) if n < 0 => {
                out.warnings.push(format!(
                    "{at}.mirroring.maxBodySize: {n} (no limit) is capped at drover's {DEFAULT_MIRROR_BODY} bytes"
                ));
                DEFAULT_MIRROR_BODY
            }
            Some(n) => n,
        };
        out.mirroring = Some(Mirroring {
            service,
            mirrors,
            max_body_size: Some(max_body_size),
            mirror_body: Some(m.mirror_body.unwrap_or(true)),
            health_check: m.health_check,
        });
    }
    out
}

impl ServiceInfo {
    /// The services this one is made of (qualified), with the key that names each.
    pub fn children(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(w) = &self.weighted {
            for (i, c) in w.services.iter().enumerate() {
                out.push((format!("weighted.services[{i}]"), c.name.as_str()));
            }
        }
        if let Some(f) = &self.failover {
            out.push(("failover.service".to_string(), f.service.as_str()));
            out.push(("failover.fallback".to_string(), f.fallback.as_str()));
        }
        if let Some(m) = &self.mirroring {
            out.push(("mirroring.service".to_string(), m.service.as_str()));
            for (i, c) in m.mirrors.iter().enumerate() {
                out.push((format!("mirroring.mirrors[{i}]"), c.name.as_str()));
            }
        }
        out.retain(|(_, name)| !name.is_empty());
        out
    }
}

/// Disables every composite service whose child is missing, disabled, or on a cycle through it.
pub fn resolve_children(services: &mut BTreeMap<String, ServiceInfo>) {
    // Cycles first: each is reported once per service on it, naming the whole loop.
    let names: Vec<String> = services.keys().cloned().collect();
    let mut on_cycle: BTreeMap<String, String> = BTreeMap::new();
    for start in &names {
        if on_cycle.contains_key(start) {
            continue;
        }
        if let Some(cycle) = find_cycle(services, start) {
            let text = cycle.join("` → `");
            for member in &cycle[..cycle.len() - 1] {
                on_cycle.entry(member.clone()).or_insert_with(|| text.clone());
            }
        }
    }
    for (name, text) in &on_cycle {
        if let Some(info) = services.get_mut(name) {
            disable(info, format!("the services form a cycle: `{text}`"));
        }
    }
    // Then missing or disabled children, until nothing changes (a parent of a parent).
    loop {
        let mut changes = Vec::new();
        for (name, info) in services.iter() {
            if info.status == Status::Disabled {
                continue;
            }
            for (key, child) in info.children() {
                let local = name.split('@').next().unwrap_or(name);
                let why = match services.get(child) {
                    None => format!("http.services.{local}.{key}: the service `{child}` does not exist"),
                    Some(c) if c.status == Status::Disabled => {
                        format!("http.services.{local}.{key}: the service `{child}` is disabled")
                    }
                    Some(_) => continue,
                };
                changes.push((name.clone(), why));
                break;
            }
        }
        if changes.is_empty() {
            break;
        }
        for (name, why) in changes {
            if let Some(info) = services.get_mut(&name) {
                disable(info, why);
            }
        }
    }
}

fn disable(info: &mut ServiceInfo, why: String) {
    info.status = Status::Disabled;
    tracing::warn!(service = %info.name, "service disabled: {why}");
    info.errors.push(why);
}

/// A path `start → … → start` through children, if there is one.
fn find_cycle(services: &BTreeMap<String, ServiceInfo>, start: &str) -> Option<Vec<String>> {
    // Depth-first, iterative; the graph is small (composites only have a few children).
    let mut path: Vec<(String, usize)> = vec![(start.to_string(), 0)];
    let mut done: HashSet<String> = HashSet::new();
    while let Some((node, next)) = path.last().cloned() {
        let children: Vec<String> = services
            .get(&node)
            .map(|i| i.children().into_iter().map(|(_, c)| c.to_string()).collect())
            .unwrap_or_default();
        if next >= children.len() {
            done.insert(node);
            path.pop();
            continue;
        }
        if let Some(top) = path.last_mut() {
            top.1 += 1;
        }
        let child = &children[next];
        if child == start {
            let mut cycle: Vec<String> = path.iter().map(|(n, _)| n.clone()).collect();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if done.contains(child) || path.iter().any(|(n, _)| n == child) {
            continue;
        }
        path.push((child.clone(), 0));
    }
    None
}
