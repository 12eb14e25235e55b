//! The label grammar shared by Docker labels, Consul tags and Marathon labels.
//!
//! Keys follow Traefik v3 with a configurable prefix (`drover` by default; `traefik` reads a
//! Traefik-labelled stack unchanged): `<prefix>.enable`, `<prefix>.http.routers.<r>.rule`,
//! `<prefix>.http.services.<s>.loadbalancer.server.port`, … Keys are case-insensitive; router and
//! service names keep their case. Lists are comma-separated.
//!
//! [`parse`] turns an item's labels into a [`Labels`] value or a list of errors naming each bad
//! key; [`Labels::fragment`] builds the item's routers and services from it and the address the
//! provider found; [`Merger`] joins the fragments of all items the way Traefik does (replicas of
//! one service become one service with one server each).

mod tree;

pub mod template;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::{DynamicConfig, Ignored, LoadBalancer, Middleware, Router, RouterObservability, Server, Service};
use crate::rule;
pub use template::{normalize, DefaultRule, TemplateVars};
pub use tree::LabelError;
use tree::{Node, NodeDeserializer};

/// Provider namespaces whose keys are returned raw in [`Labels::options`].
const PROVIDER_NAMESPACES: &[&str] = &["docker", "swarm", "marathon", "consulcatalog"];

/// An item's labels, parsed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Labels {
    /// `<prefix>.enable`.
    pub enable: Option<bool>,
    /// HTTP routers by name.
    pub routers: BTreeMap<String, LabelRouter>,
    /// HTTP services by name.
    pub services: BTreeMap<String, LabelService>,
    /// HTTP middlewares by name (the model's own structs: every key has a lower-case alias).
    pub middlewares: BTreeMap<String, Middleware>,
    /// Provider-specific keys, lowercased, without the prefix: `docker.network` → value.
    pub options: BTreeMap<String, String>,
    /// Keys drover accepts but does not act on yet (full label keys).
    pub ignored: Vec<String>,
}

/// `<prefix>.http.routers.<r>.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelRouter {
    /// The rule; the provider's `defaultRule` when absent.
    pub rule: Option<String>,
    /// Entrypoints (comma-separated).
    pub entrypoints: Option<Vec<String>>,
    /// The service; the item's only service when absent.
    pub service: Option<String>,
    /// Priority (0 = the rule's length).
    pub priority: Option<i64>,
    /// Middlewares (comma-separated).
    pub middlewares: Option<Vec<String>>,
    /// Not implemented yet.
    pub tls: Option<Ignored>,
    /// Access-log and metrics switches.
    pub observability: Option<LabelObservability>,
    /// drover speaks v3 only.
    pub rulesyntax: Option<Ignored>,
}

/// `<prefix>.http.routers.<r>.observability.*`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelObservability {
    /// Log this router's requests.
    pub accesslogs: Option<bool>,
    /// Count this router's requests in the metrics.
    pub metrics: Option<bool>,
    /// drover has no tracing.
    pub tracing: Option<Ignored>,
    /// drover has no tracing.
    pub traceverbosity: Option<Ignored>,
}

/// `<prefix>.http.services.<s>.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelService {
    /// The load balancer.
    pub loadbalancer: Option<LabelLoadBalancer>,
}

/// `<prefix>.http.services.<s>.loadbalancer.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelLoadBalancer {
    /// The item's server.
    pub server: Option<LabelServer>,
    /// Pass the client's Host (default true).
    pub passhostheader: Option<bool>,
    /// Only `wrr`.
    pub strategy: Option<String>,
    /// Not implemented yet.
    pub sticky: Option<Ignored>,
    /// Active health checks.
    pub healthcheck: Option<crate::model::HealthCheck>,
    /// Passive health (ejection).
    pub passivehealthcheck: Option<crate::model::PassiveHealthCheck>,
    /// Retries (drover).
    pub retry: Option<crate::model::Retry>,
    /// Not implemented yet.
    pub serverstransport: Option<Ignored>,
    /// drover always streams.
    pub responseforwarding: Option<Ignored>,
}

/// `<prefix>.http.services.<s>.loadbalancer.server.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelServer {
    /// The port (a number; Marathon also accepts `index:N` and `name:NAME`).
    pub port: Option<String>,
    /// `http` (default).
    pub scheme: Option<String>,
    /// A full URL instead of port and scheme.
    pub url: Option<String>,
    /// Weight (default 1).
    pub weight: Option<u32>,
    /// Not implemented.
    pub preservepath: Option<Ignored>,
}

/// Parses every label under `<prefix>.`; other labels are not looked at. All errors are
/// returned, each naming its key.
pub fn parse<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, prefix: &str) -> Result<Labels, Vec<LabelError>> {
    let prefix_dot = format!("{}.", prefix.to_ascii_lowercase());
    let mut out = Labels::default();
    let mut errors = Vec::new();
    let mut http = Node::default();
    for (key, value) in labels {
        let Some(rest) = strip_prefix_ignore_case(key, &prefix_dot).filter(|rest| !rest.is_empty()) else {
            continue;
        };
        let segments: Vec<&str> = rest.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            errors.push(LabelError {
                key: key.to_string(),
                message: "empty segment in the key".into(),
            });
            continue;
        }
        let head = segments[0].to_ascii_lowercase();
        match head.as_str() {
            "enable" if segments.len() == 1 => match value.trim().to_ascii_lowercase().as_str() {
                "true" => out.enable = Some(true),
                "false" => out.enable = Some(false),
                other => errors.push(LabelError {
                    key: key.to_string(),
                    message: format!("`{other}` is not true or false"),
                }),
            },
            "http" if segments.len() >= 3 => {
                let kind = segments[1].to_ascii_lowercase();
                match kind.as_str() {
                    "routers" | "services" | "middlewares" => {
                        // Lowercase every segment but the object's name (index 2).
                        let mut path: Vec<String> = vec![kind.clone(), segments[2].to_string()];
                        path.extend(segments[3..].iter().map(|s| s.to_ascii_lowercase()));
                        let path: Vec<&str> = path.iter().map(String::as_str).collect();
                        http.insert(&path, value);
                    }
                    "serverstransports" => out.ignored.push(key.to_string()),
                    _ => errors.push(LabelError {
                        key: key.to_string(),
                        message: format!("unknown key `http.{}`", segments[1]),
                    }),
                }
            }
            "tcp" | "udp" | "tls" => out.ignored.push(key.to_string()),
            ns if PROVIDER_NAMESPACES.contains(&ns) && segments.len() >= 2 => {
                out.options.insert(rest.to_ascii_lowercase(), value.to_string());
            }
            _ => errors.push(LabelError {
                key: key.to_string(),
                message: "unknown label (expected enable, http.routers.*, http.services.*, or a provider option)".into(),
            }),
        }
    }
    let base = format!("{prefix}.http");
    if let Some(routers) = http.children.get("routers") {
        for (name, node) in &routers.children {
            let key = format!("{base}.routers.{name}");
            if name.contains('@') {
                errors.push(LabelError {
                    key,
                    message: "a router name must not contain `@`".into(),
                });
                continue;
            }
            match LabelRouter::deserialize(NodeDeserializer::new(node, key.clone())) {
                Ok(r) => {
                    if let Some(rule_text) = &r.rule {
                        if let Err(e) = rule::parse(rule_text) {
                            errors.push(LabelError {
                                key: format!("{key}.rule"),
                                message: e.to_string(),
                            });
                            continue;
                        }
                    }
                    for (present, sub) in [
                        (r.tls.is_some(), "tls"),
                        (r.observability.is_some_and(|o| o.tracing.is_some()), "observability.tracing"),
                        (
                            r.observability.is_some_and(|o| o.traceverbosity.is_some()),
                            "observability.traceverbosity",
                        ),
                        (r.rulesyntax.is_some(), "rulesyntax"),
                    ] {
                        if present {
                            out.ignored.push(format!("{key}.{sub}"));
                        }
                    }
                    out.routers.insert(name.clone(), r);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(services) = http.children.get("services") {
        for (name, node) in &services.children {
            let key = format!("{base}.services.{name}");
            if name.contains('@') {
                errors.push(LabelError {
                    key,
                    message: "a service name must not contain `@`".into(),
                });
                continue;
            }
            match LabelService::deserialize(NodeDeserializer::new(node, key.clone())) {
                Ok(s) => {
                    if let Some(lb) = &s.loadbalancer {
                        let lb_key = format!("{key}.loadbalancer");
                        for (present, sub) in [
                            (lb.sticky.is_some(), "sticky"),
                            (lb.serverstransport.is_some(), "serverstransport"),
                            (lb.responseforwarding.is_some(), "responseforwarding"),
                        ] {
                            if present {
                                out.ignored.push(format!("{lb_key}.{sub}"));
                            }
                        }
                        if let Some(server) = &lb.server {
                            if server.url.is_some() && (server.port.is_some() || server.scheme.is_some()) {
                                errors.push(LabelError {
                                    key: format!("{lb_key}.server.url"),
                                    message: "cannot be combined with server.port or server.scheme".into(),
                                });
                                continue;
                            }
                        }
                    }
                    out.services.insert(name.clone(), s);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(middlewares) = http.children.get("middlewares") {
        for (name, node) in &middlewares.children {
            let key = format!("{base}.middlewares.{name}");
            if name.contains('@') {
                errors.push(LabelError {
                    key,
                    message: "a middleware name must not contain `@`".into(),
                });
                continue;
            }
            match Middleware::deserialize(NodeDeserializer::new(node, key.clone())) {
                Ok(m) => {
                    out.middlewares.insert(name.clone(), m);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `key` without `prefix`, whose ASCII letters match in any case; `None` when `key` does not
/// start with it. (A label key is any UTF-8: its byte at the prefix's length need not start a
/// character.)
fn strip_prefix_ignore_case<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let head = key.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &key[prefix.len()..])
}

/// Where an item can be reached, as the provider found it.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The name its automatic router and service get (already normalised by the provider).
    pub name: &'a str,
    /// Host for server URLs: an IP (IPv6 without brackets is fine) or a host name.
    pub host: &'a str,
    /// Resolves a `server.port` label value (`None` = no label) to a port, or says why not.
    pub port: &'a dyn Fn(Option<&str>) -> Result<u16, String>,
}

/// The routers and services one item contributes, with notes for its diagnostics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fragment {
    /// The item's routers and services.
    pub config: DynamicConfig,
    /// Notes (which port was used and why, ignored keys).
    pub notes: Vec<String>,
}

impl Labels {
    /// Whether the item is exposed, given the provider's `exposedByDefault`.
    pub fn enabled(&self, exposed_by_default: bool) -> bool {
        self.enable.unwrap_or(exposed_by_default)
    }

    /// Builds the item's routers and services (Traefik's defaulting), or says why it cannot be
    /// routed.
    pub fn fragment(&self, target: &Target, default_rule: &DefaultRule, vars: &TemplateVars) -> Result<Fragment, Vec<String>> {
        let mut errors = Vec::new();
        let mut out = Fragment::default();
        for key in &self.ignored {
            out.notes.push(format!("`{key}` is not supported by drover yet and is ignored"));
        }
        let host = if target.host.contains(':') && !target.host.starts_with('[') {
            format!("[{}]", target.host)
        } else {
            target.host.to_string()
        };
        let default_service = LabelService::default();
        let services: Vec<(&str, &LabelService)> = if self.services.is_empty() {
            vec![(target.name, &default_service)]
        } else {
            self.services.iter().map(|(n, s)| (n.as_str(), s)).collect()
        };
        for (name, service) in &services {
            let lb = service.loadbalancer.clone().unwrap_or_default();
            let server = lb.server.clone().unwrap_or_default();
            let url = match &server.url {
                Some(url) => url.clone(),
                None => {
                    let scheme = server.scheme.as_deref().unwrap_or("http");
                    match (target.port)(server.port.as_deref()) {
                        Ok(port) => format!("{scheme}://{host}:{port}"),
                        Err(why) => {
                            errors.push(format!("service `{name}`: {why}"));
                            continue;
                        }
                    }
                }
            };
            out.config.http.services.insert(
                (*name).to_string(),
                Service {
                    load_balancer: Some(LoadBalancer {
                        servers: vec![Server {
                            url,
                            weight: server.weight,
                            ..Default::default()
                        }],
                        pass_host_header: lb.passhostheader,
                        strategy: lb.strategy.clone(),
                        health_check: lb.healthcheck.clone(),
                        passive_health_check: lb.passivehealthcheck.clone(),
                        retry: lb.retry.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
        }
        out.config.http.middlewares = self.middlewares.clone();
        let default_routers;
        let routers: &BTreeMap<String, LabelRouter> = if self.routers.is_empty() && services.len() == 1 {
            default_routers = BTreeMap::from([(target.name.to_string(), LabelRouter::default())]);
            &default_routers
        } else {
            &self.routers
        };
        for (name, r) in routers {
            let service = match (&r.service, services.as_slice()) {
                (Some(s), _) => s.clone(),
                (None, [(only, _)]) => (*only).to_string(),
                (None, _) => {
                    errors.push(format!(
                        "router `{name}` names no service and the item defines several; set http.routers.{name}.service"
                    ));
                    continue;
                }
            };
            let rule = match &r.rule {
                Some(rule) => rule.clone(),
                None => match default_rule.render(vars) {
                    Ok(rule) => rule,
                    Err(why) => {
                        errors.push(format!("router `{name}`: {why}"));
                        continue;
                    }
                },
            };
            out.config.http.routers.insert(
                name.clone(),
                Router {
                    rule,
                    entry_points: r.entrypoints.clone().unwrap_or_default(),
                    service,
                    priority: r.priority.unwrap_or(0),
                    middlewares: r.middlewares.clone().unwrap_or_default(),
                    observability: r.observability.map(|o| RouterObservability {
                        access_logs: o.accesslogs,
                        metrics: o.metrics,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// Joins item fragments into one provider fragment, Traefik-style: same-named services with the
/// same settings pool their servers (replicas); same-named routers must be identical. On a
/// conflict the first item (in the order added; add items sorted by name) keeps the name and the
/// later one is reported.
#[derive(Debug, Default)]
pub struct Merger {
    config: DynamicConfig,
}

impl Merger {
    /// Adds one item's fragment; returns the conflicts it had with earlier items (each a reason
    /// for that item's diagnostics). Nothing of a conflicting object is added.
    pub fn add(&mut self, fragment: &DynamicConfig) -> Vec<String> {
        let mut conflicts = Vec::new();
        for (name, service) in &fragment.http.services {
            match self.config.http.services.get_mut(name) {
                None => {
                    self.config.http.services.insert(name.clone(), service.clone());
                }
                Some(existing) => {
                    let (Some(a), Some(b)) = (existing.load_balancer.as_mut(), service.load_balancer.as_ref()) else {
                        continue;
                    };
                    let same_settings = LoadBalancer {
                        servers: Vec::new(),
                        ..a.clone()
                    } == LoadBalancer {
                        servers: Vec::new(),
                        ..b.clone()
                    };
                    if same_settings {
                        for server in &b.servers {
                            if !a.servers.iter().any(|s| s.url == server.url) {
                                a.servers.push(server.clone());
                            }
                        }
                    } else {
                        conflicts.push(format!(
                            "service `{name}` is defined by another item with different settings; this item's server is left out"
                        ));
                    }
                }
            }
        }
        for (name, m) in &fragment.http.middlewares {
            match self.config.http.middlewares.get(name) {
                None => {
                    self.config.http.middlewares.insert(name.clone(), m.clone());
                }
                Some(existing) if existing == m => {}
                Some(_) => conflicts.push(format!(
                    "middleware `{name}` is defined by another item with a different configuration; this item's version is left out"
                )),
            }
        }
        for (name, router) in &fragment.http.routers {
            match self.config.http.routers.get(name) {
                None => {
                    self.config.http.routers.insert(name.clone(), router.clone());
                }
                Some(existing) if existing == router => {}
                Some(_) => conflicts.push(format!(
                    "router `{name}` is defined by another item with a different configuration; this item's version is left out"
                )),
            }
        }
        conflicts
    }

    /// The merged fragment.
    pub fn finish(self) -> DynamicConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse_pairs(pairs: &[(&str, &str)], prefix: &str) -> Result<Labels, Vec<LabelError>> {
        let l = labels(pairs);
        parse(l.iter().map(|(k, v)| (k.as_str(), v.as_str())), prefix)
    }

    fn port_from(label: Option<&str>) -> Result<u16, String> {
        match label {
            Some(p) => p.parse().map_err(|_| format!("port `{p}` is not a number")),
            None => Ok(80),
        }
    }

    #[test]
    fn a_key_with_a_character_across_the_prefix_end_is_not_ours() {
        // Found by fuzzing (#20 item 8): `ғ` takes bytes 6 and 7, so byte 7 (the length of
        // `drover.`) is inside it, and slicing the key there panicked the provider.
        let l = parse_pairs(&[("drover\u{493}nable", "true"), ("drover.enable", "true")], "drover").unwrap();
        assert_eq!(l.enable, Some(true));
        assert!(l.ignored.is_empty() && l.options.is_empty());
        assert_eq!(
            parse_pairs(&[("DROVER\u{e9}", "x"), ("\u{e9}", "y")], "drover").unwrap(),
            Labels::default()
        );
    }

    #[test]
    fn traefik_labels_build_routers_and_services() {
        let l = parse_pairs(
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.Web.rule", "Host(`shop.local`)"),
                ("traefik.http.routers.Web.entryPoints", "web, websecure"),
                ("traefik.http.services.shop.loadBalancer.server.port", "8080"),
                ("traefik.http.services.shop.loadbalancer.passhostheader", "false"),
                ("traefik.docker.network", "front"),
                ("com.example.other", "ignored"),
            ],
            "traefik",
        )
        .unwrap();
        assert_eq!(l.enable, Some(true));
        assert_eq!(l.options["docker.network"], "front");
        let target = Target {
            name: "shop-1",
            host: "10.0.0.5",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        let router = &f.config.http.routers["Web"];
        assert_eq!((router.service.as_str(), router.entry_points.len()), ("shop", 2));
        let lb = f.config.http.services["shop"].load_balancer.as_ref().unwrap();
        assert_eq!(lb.servers[0].url, "http://10.0.0.5:8080");
        assert_eq!(lb.pass_host_header, Some(false));
    }

    #[test]
    fn observability_labels_switch_logs_and_metrics_and_tracing_is_reported() {
        let l = parse_pairs(
            &[
                ("traefik.http.routers.health.rule", "Path(`/healthz`)"),
                ("traefik.http.routers.health.observability.accessLogs", "false"),
                ("traefik.http.routers.health.observability.metrics", "true"),
                ("traefik.http.routers.health.observability.tracing", "false"),
                ("traefik.http.services.app.loadbalancer.server.port", "80"),
            ],
            "traefik",
        )
        .unwrap();
        assert_eq!(l.ignored, vec!["traefik.http.routers.health.observability.tracing".to_string()]);
        let target = Target {
            name: "app",
            host: "10.0.0.5",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        let o = f.config.http.routers["health"].observability.unwrap();
        assert_eq!((o.access_logs, o.metrics), (Some(false), Some(true)));

        let bad = parse_pairs(&[("drover.http.routers.r.observability.accesslogs", "sometimes")], "drover").unwrap_err();
        assert!(bad[0].key.contains("observability.accesslogs"), "{bad:?}");
    }

    #[test]
    fn defaults_give_one_router_and_service_named_after_the_item() {
        let l = parse_pairs(&[("drover.enable", "true")], "drover").unwrap();
        let target = Target {
            name: "api",
            host: "fd00::5",
            port: &port_from,
        };
        let vars = TemplateVars {
            name: "api",
            container_name: "api-1",
            labels: None,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &vars).unwrap();
        assert_eq!(f.config.http.routers["api"].rule, "Host(`api`)");
        assert_eq!(
            f.config.http.services["api"].load_balancer.as_ref().unwrap().servers[0].url,
            "http://[fd00::5]:80"
        );
    }

    #[test]
    fn bad_labels_name_their_keys() {
        let errs = parse_pairs(
            &[
                ("drover.http.routers.r.rule", "Host(`a`"),
                ("drover.http.routers.r2.priority", "high"),
                ("drover.http.services.s.loadbalancer.server.weight", "-1"),
                ("drover.http.services.s2.loadbalancer.servr.port", "80"),
                ("drover.enable", "yes"),
                ("drover.bogus", "1"),
            ],
            "drover",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "drover.http.routers.r.rule",
            "drover.http.routers.r2.priority",
            "drover.http.services.s.loadbalancer.server.weight",
            "drover.http.services.s2.loadbalancer.servr",
            "drover.enable",
            "drover.bogus",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(errs.iter().any(|e| e.message.contains("column")), "{errs:?}");
    }

    #[test]
    fn middleware_labels_fill_the_model_in_any_case() {
        let l = parse_pairs(
            &[
                ("traefik.http.routers.web.middlewares", "strip, auth@file"),
                ("traefik.http.routers.web.rule", "Host(`app.local`)"),
                ("traefik.http.middlewares.strip.stripPrefix.prefixes", "/api,/v1"),
                ("traefik.http.middlewares.Limit.RateLimit.average", "100"),
                ("traefik.http.middlewares.Limit.ratelimit.period", "1m"),
                ("traefik.http.middlewares.Limit.ratelimit.sourcecriterion.ipstrategy.depth", "1"),
                ("traefik.http.middlewares.hdr.headers.customrequestheaders.X-Script-Name", "test"),
                ("traefik.http.middlewares.hdr.headers.forceSTSHeader", "true"),
                ("traefik.http.middlewares.https.redirectscheme.scheme", "https"),
                ("traefik.http.middlewares.https.redirectscheme.port", "443"),
                ("traefik.http.services.app.loadbalancer.server.port", "80"),
            ],
            "traefik",
        )
        .unwrap();
        let target = Target {
            name: "app",
            host: "10.0.0.5",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        let m = &f.config.http.middlewares;
        assert_eq!(m["strip"].strip_prefix.as_ref().unwrap().prefixes, ["/api", "/v1"]);
        let limit = m["Limit"].rate_limit.as_ref().unwrap();
        assert_eq!((limit.average, limit.period.unwrap().0.as_secs()), (100, 60));
        assert_eq!(limit.source_criterion.as_ref().unwrap().ip_strategy.as_ref().unwrap().depth, 1);
        let hdr = m["hdr"].headers.as_ref().unwrap();
        assert_eq!(hdr.custom_request_headers["x-script-name"], "test");
        assert!(hdr.force_sts_header);
        assert_eq!(m["https"].redirect_scheme.as_ref().unwrap().port.as_deref(), Some("443"));
        assert_eq!(f.config.http.routers["web"].middlewares, ["strip", "auth@file"]);

        let bad = parse_pairs(&[("drover.http.middlewares.x.stripprefix.prefixs", "/a")], "drover").unwrap_err();
        assert_eq!(bad[0].key, "drover.http.middlewares.x.stripprefix.prefixs", "{bad:?}");
    }

    #[test]
    fn a_router_without_service_needs_a_single_service() {
        let l = parse_pairs(
            &[
                ("drover.http.routers.r.rule", "Path(`/`)"),
                ("drover.http.services.a.loadbalancer.server.port", "1"),
                ("drover.http.services.b.loadbalancer.server.port", "2"),
            ],
            "drover",
        )
        .unwrap();
        let target = Target {
            name: "x",
            host: "10.0.0.1",
            port: &port_from,
        };
        let errs = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap_err();
        assert!(errs[0].contains("names no service"), "{errs:?}");
    }

    #[test]
    fn replicas_merge_into_one_service_and_conflicts_are_reported() {
        let l = parse_pairs(&[("drover.http.services.web.loadbalancer.server.port", "80")], "drover").unwrap();
        let mut merger = Merger::default();
        for host in ["10.0.0.1", "10.0.0.2"] {
            let target = Target {
                name: "web",
                host,
                port: &port_from,
            };
            let vars = TemplateVars {
                name: "web",
                container_name: host,
                labels: None,
            };
            assert!(merger
                .add(&l.fragment(&target, &DefaultRule::default(), &vars).unwrap().config)
                .is_empty());
        }
        let other = parse_pairs(&[("drover.http.services.web.loadbalancer.passhostheader", "false")], "drover").unwrap();
        let target = Target {
            name: "web",
            host: "10.0.0.3",
            port: &port_from,
        };
        let conflicts = merger.add(
            &other
                .fragment(
                    &target,
                    &DefaultRule::default(),
                    &TemplateVars {
                        name: "web",
                        ..Default::default()
                    },
                )
                .unwrap()
                .config,
        );
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        let config = merger.finish();
        assert_eq!(config.http.services["web"].load_balancer.as_ref().unwrap().servers.len(), 2);
    }
}
