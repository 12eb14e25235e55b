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

use crate::model::{
    DynamicConfig, Failover, Hash, Ignored, LoadBalancer, Middleware, Mirror, Mirroring, Router, RouterObservability, Server, Service,
    Sticky, Weighted, WeightedService,
};
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
    /// TCP routers by name.
    pub tcp_routers: BTreeMap<String, LabelTcpRouter>,
    /// TCP services by name.
    pub tcp_services: BTreeMap<String, LabelTcpService>,
    /// UDP routers by name.
    pub udp_routers: BTreeMap<String, LabelUdpRouter>,
    /// UDP services by name.
    pub udp_services: BTreeMap<String, LabelUdpService>,
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
    /// `tls=true`, `tls.options`, `tls.certresolver`, `tls.domains[n].main/sans` (read by
    /// [`router_tls`], not by serde: `tls` is both a value and a parent).
    #[serde(skip)]
    pub tls: Option<crate::model::RouterTls>,
    /// Access-log and metrics switches.
    pub observability: Option<LabelObservability>,
    /// drover speaks v3 only.
    pub rulesyntax: Option<Ignored>,
}

/// A router's `tls` labels: `tls=true` (or `false`), `tls.options`, `tls.certresolver`,
/// `tls.domains[n].main`, `tls.domains[n].sans` (comma-separated), `tls.passthrough`.
fn router_tls(node: &Node, key: &str) -> Result<Option<crate::model::RouterTls>, LabelError> {
    let bad = |key: String, message: String| LabelError { key, message };
    let on = match node.value.as_deref().map(str::trim) {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(other) => return Err(bad(key.to_string(), format!("`{other}` is not true or false"))),
    };
    if !on {
        return Ok(None);
    }
    let mut tls = crate::model::RouterTls::default();
    let leaf = |child: &Node, at: String| -> Result<String, LabelError> {
        match (&child.value, child.children.is_empty()) {
            (Some(v), true) => Ok(v.trim().to_string()),
            _ => Err(bad(at, "expected a value".into())),
        }
    };
    let mut domains: BTreeMap<usize, crate::model::Domain> = BTreeMap::new();
    for (name, child) in &node.children {
        let at = format!("{key}.{name}");
        match name.as_str() {
            "options" => tls.options = Some(leaf(child, at)?),
            "certresolver" => tls.cert_resolver = Some(leaf(child, at)?),
            "passthrough" => tls.passthrough = Some(leaf(child, at.clone())?.eq_ignore_ascii_case("true")),
            other => {
                let index = other
                    .strip_prefix("domains[")
                    .and_then(|i| i.strip_suffix(']'))
                    .and_then(|i| i.parse::<usize>().ok())
                    .ok_or_else(|| {
                        bad(
                            at.clone(),
                            "unknown key (expected options, certresolver, domains[n].main, domains[n].sans)".into(),
                        )
                    })?;
                let domain = domains.entry(index).or_default();
                for (field, value) in &child.children {
                    let at = format!("{at}.{field}");
                    match field.as_str() {
                        "main" => domain.main = leaf(value, at)?,
                        "sans" => {
                            domain.sans = leaf(value, at)?
                                .split(',')
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty())
                                .collect()
                        }
                        _ => return Err(bad(at, "unknown key (expected main or sans)".into())),
                    }
                }
                if domain.main.is_empty() {
                    return Err(bad(format!("{at}.main"), "a domain needs its main name".into()));
                }
            }
        }
    }
    tls.domains = domains.into_values().collect();
    Ok(Some(tls))
}

/// `<prefix>.tcp.routers.<r>.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelTcpRouter {
    /// The rule (required: TCP routers have no default rule).
    pub rule: Option<String>,
    /// Entrypoints (comma-separated).
    pub entrypoints: Option<Vec<String>>,
    /// The service; the item's only TCP service when absent.
    pub service: Option<String>,
    /// Priority.
    pub priority: Option<i64>,
    /// TCP middlewares (not implemented: such a router is disabled by the merge).
    pub middlewares: Option<Vec<String>>,
    /// `tls=true`, `tls.passthrough`, `tls.options`, `tls.certresolver`, `tls.domains[n]`
    /// (read by [`router_tls`]).
    #[serde(skip)]
    pub tls: Option<crate::model::TcpRouterTls>,
    /// drover speaks v3 only.
    pub rulesyntax: Option<Ignored>,
}

/// `<prefix>.tcp.services.<s>.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelTcpService {
    /// The load balancer.
    pub loadbalancer: Option<LabelTcpLoadBalancer>,
}

/// `<prefix>.tcp.services.<s>.loadbalancer.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelTcpLoadBalancer {
    /// The item's server.
    pub server: Option<LabelTcpServer>,
    /// The TCP servers transport (defined in a file).
    pub serverstransport: Option<String>,
    /// Traefik v2 keys, moved to the transport in v3 (reported by the merge).
    pub proxyprotocol: Option<crate::model::ProxyProtocol>,
    /// Traefik v2 key, moved to the transport in v3.
    pub terminationdelay: Option<crate::duration::ConfigDuration>,
}

/// `<prefix>.tcp.services.<s>.loadbalancer.server.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelTcpServer {
    /// The port (as for HTTP services).
    pub port: Option<String>,
    /// TLS to the server.
    pub tls: Option<bool>,
    /// Weight.
    pub weight: Option<u32>,
}

/// `<prefix>.udp.routers.<r>.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelUdpRouter {
    /// Entrypoints (comma-separated).
    pub entrypoints: Option<Vec<String>>,
    /// The service; the item's only UDP service when absent.
    pub service: Option<String>,
}

/// `<prefix>.udp.services.<s>.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelUdpService {
    /// The load balancer.
    pub loadbalancer: Option<LabelUdpLoadBalancer>,
}

/// `<prefix>.udp.services.<s>.loadbalancer.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelUdpLoadBalancer {
    /// The item's server.
    pub server: Option<LabelUdpServer>,
}

/// `<prefix>.udp.services.<s>.loadbalancer.server.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelUdpServer {
    /// The port.
    pub port: Option<String>,
    /// Weight.
    pub weight: Option<u32>,
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
    /// drover: a `weighted` service (`weighted.services.<i>.name|weight`, `weighted.sticky.cookie.*`).
    pub weighted: Option<LabelWeighted>,
    /// drover: a `failover` service (`failover.service`, `failover.fallback`).
    pub failover: Option<Failover>,
    /// drover: a `mirroring` service (`mirroring.service`, `mirroring.mirrors.<i>.name|percent`,
    /// `mirroring.maxbodysize`, `mirroring.mirrorbody`).
    pub mirroring: Option<LabelMirroring>,
}

/// `<prefix>.http.services.<s>.weighted.*`: list items are keyed by their index, as in
/// Traefik's KV paths (`weighted.services.0.name`).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelWeighted {
    /// Children by index.
    #[serde(default)]
    pub services: BTreeMap<String, WeightedService>,
    /// The sticky cookie between children.
    pub sticky: Option<Sticky>,
    /// `healthcheck` (accepted; children's health always counts).
    pub healthcheck: Option<Ignored>,
}

/// `<prefix>.http.services.<s>.mirroring.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelMirroring {
    /// The service that answers.
    pub service: Option<String>,
    /// Mirrors by index.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Largest mirrored body.
    pub maxbodysize: Option<i64>,
    /// Mirror bodies at all.
    pub mirrorbody: Option<bool>,
    /// `healthcheck` (accepted; children's health always counts).
    pub healthcheck: Option<Ignored>,
}

/// Items keyed by list index (`0`, `1`, … `10`), in index order; a key that is not a number sorts
/// last, by text.
fn by_index<T: Clone>(items: &BTreeMap<String, T>) -> Vec<T> {
    let mut keyed: Vec<(Option<u64>, &String, &T)> = items.iter().map(|(k, v)| (k.parse().ok(), k, v)).collect();
    keyed.sort_by(|a, b| (a.0.is_none(), a.0, a.1).cmp(&(b.0.is_none(), b.0, b.1)));
    keyed.into_iter().map(|(_, _, v)| v.clone()).collect()
}

/// `<prefix>.http.services.<s>.loadbalancer.*`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct LabelLoadBalancer {
    /// The item's server.
    pub server: Option<LabelServer>,
    /// Pass the client's Host (default true).
    pub passhostheader: Option<bool>,
    /// `wrr`, `p2c`, `hrw` or `leasttime`.
    pub strategy: Option<String>,
    /// The sticky cookie.
    pub sticky: Option<Sticky>,
    /// drover: consistent hashing (`hash.key`).
    pub hash: Option<Hash>,
    /// Active health checks.
    pub healthcheck: Option<crate::model::HealthCheck>,
    /// Passive health (ejection).
    pub passivehealthcheck: Option<crate::model::PassiveHealthCheck>,
    /// Retries (drover).
    pub retry: Option<crate::model::Retry>,
    /// The servers transport, `name` or `name@provider` (transports are defined in files).
    pub serverstransport: Option<String>,
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
    let mut tcp = Node::default();
    let mut udp = Node::default();
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
            "tcp" | "udp" if segments.len() >= 3 => {
                let kind = segments[1].to_ascii_lowercase();
                match kind.as_str() {
                    "routers" | "services" => {
                        let mut path: Vec<String> = vec![kind.clone(), segments[2].to_string()];
                        path.extend(segments[3..].iter().map(|s| s.to_ascii_lowercase()));
                        let path: Vec<&str> = path.iter().map(String::as_str).collect();
                        if head == "tcp" { &mut tcp } else { &mut udp }.insert(&path, value);
                    }
                    "middlewares" | "serverstransports" => out.ignored.push(key.to_string()),
                    _ => errors.push(LabelError {
                        key: key.to_string(),
                        message: format!("unknown key `{head}.{}`", segments[1]),
                    }),
                }
            }
            "tls" => out.ignored.push(key.to_string()),
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
            let mut rest = node.clone();
            let tls = rest.children.remove("tls").map(|tls| router_tls(&tls, &format!("{key}.tls")));
            match LabelRouter::deserialize(NodeDeserializer::new(&rest, key.clone())) {
                Ok(mut r) => {
                    match tls {
                        Some(Err(e)) => {
                            errors.push(e);
                            continue;
                        }
                        Some(Ok(tls)) => r.tls = tls,
                        None => {}
                    }
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
                        (r.tls.as_ref().is_some_and(|t| t.passthrough.is_some()), "tls.passthrough"),
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
                        for (present, sub) in [(lb.responseforwarding.is_some(), "responseforwarding")] {
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
    named_objects(
        http.children.get("middlewares"),
        "middleware",
        &format!("{base}.middlewares"),
        &mut out.middlewares,
        &mut errors,
    );
    parse_l4(&tcp, &udp, prefix, &mut out, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The `tcp.*` and `udp.*` labels.
fn parse_l4(tcp: &Node, udp: &Node, prefix: &str, out: &mut Labels, errors: &mut Vec<LabelError>) {
    let named = |kind: &str, name: &str, key: &str, errors: &mut Vec<LabelError>| {
        if name.contains('@') {
            errors.push(LabelError {
                key: key.to_string(),
                message: format!("a {kind} name must not contain `@`"),
            });
            false
        } else {
            true
        }
    };
    if let Some(routers) = tcp.children.get("routers") {
        for (name, node) in &routers.children {
            let key = format!("{prefix}.tcp.routers.{name}");
            if !named("router", name, &key, errors) {
                continue;
            }
            let mut rest = node.clone();
            let tls = rest.children.remove("tls").map(|tls| router_tls(&tls, &format!("{key}.tls")));
            match LabelTcpRouter::deserialize(NodeDeserializer::new(&rest, key.clone())) {
                Ok(mut r) => {
                    match tls {
                        Some(Err(e)) => {
                            errors.push(e);
                            continue;
                        }
                        Some(Ok(tls)) => {
                            r.tls = tls.map(|t| crate::model::TcpRouterTls {
                                passthrough: t.passthrough.unwrap_or(false),
                                options: t.options,
                                cert_resolver: t.cert_resolver,
                                domains: t.domains,
                            })
                        }
                        None => {}
                    }
                    match &r.rule {
                        None => errors.push(LabelError {
                            key: format!("{key}.rule"),
                            message: "a TCP router needs a rule, such as HostSNI(`*`) (there is no default rule for TCP)".into(),
                        }),
                        Some(text) => match rule::parse_tcp(text) {
                            Err(e) => errors.push(LabelError {
                                key: format!("{key}.rule"),
                                message: e.to_string(),
                            }),
                            Ok(_) => {
                                out.tcp_routers.insert(name.clone(), r);
                            }
                        },
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    }
    named_objects(
        tcp.children.get("services"),
        "service",
        &format!("{prefix}.tcp.services"),
        &mut out.tcp_services,
        errors,
    );
    named_objects(
        udp.children.get("routers"),
        "router",
        &format!("{prefix}.udp.routers"),
        &mut out.udp_routers,
        errors,
    );
    named_objects(
        udp.children.get("services"),
        "service",
        &format!("{prefix}.udp.services"),
        &mut out.udp_services,
        errors,
    );
}

/// Reads each child of `parent` (`<base>.<name>.*` labels) as a `T` into `out`; a name with `@`
/// or a bad key is an error naming the key.
fn named_objects<T: serde::de::DeserializeOwned>(
    parent: Option<&Node>,
    what: &str,
    base: &str,
    out: &mut BTreeMap<String, T>,
    errors: &mut Vec<LabelError>,
) {
    let Some(parent) = parent else { return };
    for (name, node) in &parent.children {
        let key = format!("{base}.{name}");
        if name.contains('@') {
            errors.push(LabelError {
                key,
                message: format!("a {what} name must not contain `@`"),
            });
            continue;
        }
        match T::deserialize(NodeDeserializer::new(node, key)) {
            Ok(value) => {
                out.insert(name.clone(), value);
            }
            Err(e) => errors.push(e),
        }
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
        self.l4_fragment(target, &host, &mut out, &mut errors);
        // An item labelled only for TCP or UDP gets no default HTTP router (as in Traefik).
        let l4_only = (!self.tcp_routers.is_empty()
            || !self.tcp_services.is_empty()
            || !self.udp_routers.is_empty()
            || !self.udp_services.is_empty())
            && self.routers.is_empty()
            && self.services.is_empty()
            && self.middlewares.is_empty();
        if l4_only {
            return if errors.is_empty() { Ok(out) } else { Err(errors) };
        }
        let default_service = LabelService::default();
        let services: Vec<(&str, &LabelService)> = if self.services.is_empty() {
            vec![(target.name, &default_service)]
        } else {
            self.services.iter().map(|(n, s)| (n.as_str(), s)).collect()
        };
        for (name, service) in &services {
            if service.weighted.is_some() || service.failover.is_some() || service.mirroring.is_some() {
                // A service made of services: no server of this item's own (a loadbalancer
                // label beside it is reported by the merge as two kinds in one service).
                out.config.http.services.insert(
                    (*name).to_string(),
                    Service {
                        load_balancer: service.loadbalancer.as_ref().map(|_| LoadBalancer::default()),
                        weighted: service.weighted.as_ref().map(|w| Weighted {
                            services: by_index(&w.services),
                            sticky: w.sticky.clone(),
                            health_check: w.healthcheck,
                        }),
                        failover: service.failover.clone(),
                        mirroring: service.mirroring.as_ref().map(|m| Mirroring {
                            service: m.service.clone().unwrap_or_default(),
                            mirrors: by_index(&m.mirrors),
                            max_body_size: m.maxbodysize,
                            mirror_body: m.mirrorbody,
                            health_check: m.healthcheck,
                        }),
                    },
                );
                continue;
            }
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
                        sticky: lb.sticky.clone(),
                        hash: lb.hash.clone(),
                        health_check: lb.healthcheck.clone(),
                        passive_health_check: lb.passivehealthcheck.clone(),
                        retry: lb.retry.clone(),
                        servers_transport: lb.serverstransport.clone(),
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
                    tls: r.tls.clone(),
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

impl Labels {
    /// The item's TCP and UDP routers and services: a router without `service` uses the item's
    /// only service of its kind; routers with no service of their kind get one named after the
    /// item, on the item's port.
    fn l4_fragment(&self, target: &Target, host: &str, out: &mut Fragment, errors: &mut Vec<String>) {
        let default_tcp = LabelTcpService::default();
        let tcp_services: Vec<(&str, &LabelTcpService)> = if self.tcp_services.is_empty() && !self.tcp_routers.is_empty() {
            vec![(target.name, &default_tcp)]
        } else {
            self.tcp_services.iter().map(|(n, s)| (n.as_str(), s)).collect()
        };
        for (name, s) in &tcp_services {
            let lb = s.loadbalancer.clone().unwrap_or_default();
            let server = lb.server.clone().unwrap_or_default();
            match (target.port)(server.port.as_deref()) {
                Ok(port) => {
                    out.config.tcp.services.insert(
                        (*name).to_string(),
                        crate::model::TcpService {
                            load_balancer: Some(crate::model::TcpLoadBalancer {
                                servers: vec![crate::model::TcpServer {
                                    address: format!("{host}:{port}"),
                                    tls: server.tls,
                                    weight: server.weight,
                                }],
                                servers_transport: lb.serverstransport.clone(),
                                proxy_protocol: lb.proxyprotocol,
                                termination_delay: lb.terminationdelay,
                                health_check: None,
                            }),
                            weighted: None,
                        },
                    );
                }
                Err(why) => errors.push(format!("TCP service `{name}`: {why}")),
            }
        }
        for (name, r) in &self.tcp_routers {
            let service = match (&r.service, tcp_services.as_slice()) {
                (Some(s), _) => s.clone(),
                (None, [(only, _)]) => (*only).to_string(),
                (None, _) => {
                    errors.push(format!(
                        "TCP router `{name}` names no service and the item defines several; set tcp.routers.{name}.service"
                    ));
                    continue;
                }
            };
            out.config.tcp.routers.insert(
                name.clone(),
                crate::model::TcpRouter {
                    rule: r.rule.clone().unwrap_or_default(),
                    entry_points: r.entrypoints.clone().unwrap_or_default(),
                    service,
                    priority: r.priority.unwrap_or(0),
                    middlewares: r.middlewares.clone().unwrap_or_default(),
                    tls: r.tls.clone(),
                    rule_syntax: r.rulesyntax,
                },
            );
        }
        let default_udp = LabelUdpService::default();
        let udp_services: Vec<(&str, &LabelUdpService)> = if self.udp_services.is_empty() && !self.udp_routers.is_empty() {
            vec![(target.name, &default_udp)]
        } else {
            self.udp_services.iter().map(|(n, s)| (n.as_str(), s)).collect()
        };
        for (name, s) in &udp_services {
            let server = s.loadbalancer.clone().unwrap_or_default().server.unwrap_or_default();
            match (target.port)(server.port.as_deref()) {
                Ok(port) => {
                    out.config.udp.services.insert(
                        (*name).to_string(),
                        crate::model::UdpService {
                            load_balancer: Some(crate::model::UdpLoadBalancer {
                                servers: vec![crate::model::UdpServer {
                                    address: format!("{host}:{port}"),
                                    weight: server.weight,
                                }],
                            }),
                            weighted: None,
                        },
                    );
                }
                Err(why) => errors.push(format!("UDP service `{name}`: {why}")),
            }
        }
        for (name, r) in &self.udp_routers {
            let service = match (&r.service, udp_services.as_slice()) {
                (Some(s), _) => s.clone(),
                (None, [(only, _)]) => (*only).to_string(),
                (None, _) => {
                    errors.push(format!(
                        "UDP router `{name}` names no service and the item defines several; set udp.routers.{name}.service"
                    ));
                    continue;
                }
            };
            out.config.udp.routers.insert(
                name.clone(),
                crate::model::UdpRouter {
                    entry_points: r.entrypoints.clone().unwrap_or_default(),
                    service,
                },
            );
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
                        // Services made of services: replicas must say the same thing.
                        if existing != service {
                            conflicts.push(format!(
                                "service `{name}` is defined by another item with different settings; this item's version is left out"
                            ));
                        }
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
        self.add_l4(fragment, &mut conflicts);
        conflicts
    }

    /// TCP and UDP objects: services with equal settings pool their servers (replicas), routers
    /// must be identical.
    fn add_l4(&mut self, fragment: &DynamicConfig, conflicts: &mut Vec<String>) {
        for (name, service) in &fragment.tcp.services {
            match self.config.tcp.services.get_mut(name) {
                None => {
                    self.config.tcp.services.insert(name.clone(), service.clone());
                }
                Some(existing) => match (existing.load_balancer.as_mut(), service.load_balancer.as_ref()) {
                    (Some(a), Some(b))
                        if crate::model::TcpLoadBalancer {
                            servers: Vec::new(),
                            ..a.clone()
                        } == crate::model::TcpLoadBalancer {
                            servers: Vec::new(),
                            ..b.clone()
                        } =>
                    {
                        for server in &b.servers {
                            if !a.servers.iter().any(|s| s.address == server.address) {
                                a.servers.push(server.clone());
                            }
                        }
                    }
                    _ => conflicts.push(format!(
                        "TCP service `{name}` is defined by another item with different settings; this item's server is left out"
                    )),
                },
            }
        }
        for (name, router) in &fragment.tcp.routers {
            match self.config.tcp.routers.get(name) {
                None => {
                    self.config.tcp.routers.insert(name.clone(), router.clone());
                }
                Some(existing) if existing == router => {}
                Some(_) => conflicts.push(format!(
                    "TCP router `{name}` is defined by another item with a different configuration; this item's version is left out"
                )),
            }
        }
        for (name, service) in &fragment.udp.services {
            match self.config.udp.services.get_mut(name) {
                None => {
                    self.config.udp.services.insert(name.clone(), service.clone());
                }
                Some(existing) => match (existing.load_balancer.as_mut(), service.load_balancer.as_ref()) {
                    (Some(a), Some(b)) => {
                        for server in &b.servers {
                            if !a.servers.iter().any(|s| s.address == server.address) {
                                a.servers.push(server.clone());
                            }
                        }
                    }
                    _ => conflicts.push(format!(
                        "UDP service `{name}` is defined by another item differently; this item's server is left out"
                    )),
                },
            }
        }
        for (name, router) in &fragment.udp.routers {
            match self.config.udp.routers.get(name) {
                None => {
                    self.config.udp.routers.insert(name.clone(), router.clone());
                }
                Some(existing) if existing == router => {}
                Some(_) => conflicts.push(format!(
                    "UDP router `{name}` is defined by another item with a different configuration; this item's version is left out"
                )),
            }
        }
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
    fn tls_labels_make_a_tls_router_with_options_resolver_and_domains() {
        let l = parse_pairs(
            &[
                ("traefik.http.routers.web.rule", "Host(`shop.local`)"),
                ("traefik.http.routers.web.tls", "true"),
                ("traefik.http.routers.web.tls.options", "modern@file"),
                ("traefik.http.routers.web.tls.certresolver", "le"),
                ("traefik.http.routers.web.tls.domains[0].main", "shop.local"),
                ("traefik.http.routers.web.tls.domains[0].sans", "a.shop.local, b.shop.local"),
                ("traefik.http.routers.plain.rule", "Host(`plain.local`)"),
                ("traefik.http.routers.plain.tls", "false"),
                ("traefik.http.services.shop.loadbalancer.server.port", "80"),
            ],
            "traefik",
        )
        .unwrap();
        let tls = l.routers["web"].tls.as_ref().expect("a TLS router");
        assert_eq!(tls.options.as_deref(), Some("modern@file"));
        assert_eq!(tls.cert_resolver.as_deref(), Some("le"));
        assert_eq!(tls.domains[0].main, "shop.local");
        assert_eq!(tls.domains[0].sans, vec!["a.shop.local", "b.shop.local"]);
        assert!(l.routers["plain"].tls.is_none(), "tls=false is no TLS");
        let target = Target {
            name: "shop-1",
            host: "10.0.0.5",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        assert_eq!(f.config.http.routers["web"].tls.as_ref(), Some(tls));

        let bad = parse_pairs(&[("traefik.http.routers.web.tls.domains[x].main", "a")], "traefik").unwrap_err();
        assert!(bad[0].key.ends_with("tls.domains[x]"), "{bad:?}");
        let bad = parse_pairs(&[("traefik.http.routers.web.tls", "yes")], "traefik").unwrap_err();
        assert!(bad[0].message.contains("not true or false"), "{bad:?}");
    }

    #[test]
    fn a_services_servers_transport_and_scheme_come_from_labels() {
        let l = parse_pairs(
            &[
                ("drover.http.routers.api.rule", "Host(`api.local`)"),
                ("drover.http.services.api.loadbalancer.server.port", "8443"),
                ("drover.http.services.api.loadbalancer.server.scheme", "https"),
                ("drover.http.services.api.loadbalancer.serverstransport", "private@file"),
            ],
            "drover",
        )
        .unwrap();
        assert!(l.ignored.is_empty(), "{:?}", l.ignored);
        let target = Target {
            name: "api-1",
            host: "10.0.0.7",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        let lb = f.config.http.services["api"].load_balancer.as_ref().unwrap();
        assert_eq!(lb.servers[0].url, "https://10.0.0.7:8443");
        assert_eq!(lb.servers_transport.as_deref(), Some("private@file"));
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
    fn compress_retry_errors_and_buffering_labels_fill_the_model() {
        let l = parse_pairs(
            &[
                ("drover.http.routers.web.rule", "Host(`app.local`)"),
                ("drover.http.middlewares.zip.compress", "true"),
                (
                    "drover.http.middlewares.zip2.compress.excludedcontenttypes",
                    "text/event-stream,image/png",
                ),
                ("drover.http.middlewares.zip2.compress.minresponsebodybytes", "2048"),
                ("drover.http.middlewares.again.retry.attempts", "4"),
                ("drover.http.middlewares.again.retry.initialinterval", "100ms"),
                ("drover.http.middlewares.oops.errors.status", "500-599,404"),
                ("drover.http.middlewares.oops.errors.service", "pages@file"),
                ("drover.http.middlewares.oops.errors.query", "/{status}.html"),
                ("drover.http.middlewares.oops.errors.statusrewrites.418", "404"),
                ("drover.http.middlewares.buf.buffering.maxrequestbodybytes", "2000000"),
                ("drover.http.middlewares.buf.buffering.memRequestBodyBytes", "1000"),
                ("drover.http.services.app.loadbalancer.server.port", "80"),
            ],
            "drover",
        )
        .unwrap();
        let target = Target {
            name: "app",
            host: "10.0.0.5",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        let m = &f.config.http.middlewares;
        assert_eq!(m["zip"].compress, Some(Default::default()), "`compress=true`: every default");
        let zip2 = m["zip2"].compress.as_ref().unwrap();
        assert_eq!(zip2.excluded_content_types, ["text/event-stream", "image/png"]);
        assert_eq!(zip2.min_response_body_bytes, Some(2048));
        let again = m["again"].retry.as_ref().unwrap();
        assert_eq!((again.attempts, again.initial_interval.unwrap().0.as_millis()), (4, 100));
        let oops = m["oops"].errors.as_ref().unwrap();
        assert_eq!(oops.status, ["500-599", "404"]);
        assert_eq!(
            (oops.service.as_str(), oops.query.as_deref()),
            ("pages@file", Some("/{status}.html"))
        );
        assert_eq!(oops.status_rewrites["418"], 404);
        let buf = m["buf"].buffering.as_ref().unwrap();
        assert_eq!((buf.max_request_body_bytes, buf.mem_request_body_bytes), (2_000_000, Some(1000)));

        let bad = parse_pairs(&[("drover.http.middlewares.z.compress", "yes")], "drover").unwrap_err();
        assert_eq!(bad[0].key, "drover.http.middlewares.z.compress", "{bad:?}");
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

    #[test]
    fn composite_services_and_choice_settings_come_from_labels_with_traefik_key_paths() {
        let labels = parse_pairs(
            &[
                ("drover.http.services.canary.weighted.services.0.name", "v1"),
                ("drover.http.services.canary.weighted.services.0.weight", "9"),
                ("drover.http.services.canary.weighted.services.1.name", "v2@file"),
                ("drover.http.services.canary.weighted.services.1.weight", "1"),
                ("drover.http.services.canary.weighted.sticky.cookie.name", "canary"),
                ("drover.http.services.fo.failover.service", "v1"),
                ("drover.http.services.fo.failover.fallback", "spare@file"),
                ("drover.http.services.shadow.mirroring.service", "v1"),
                ("drover.http.services.shadow.mirroring.mirrors.0.name", "v2@file"),
                ("drover.http.services.shadow.mirroring.mirrors.0.percent", "50"),
                ("drover.http.services.shadow.mirroring.maxbodysize", "1024"),
                ("drover.http.services.v1.loadbalancer.server.port", "80"),
                ("drover.http.services.v1.loadbalancer.strategy", "p2c"),
                ("drover.http.services.v1.loadbalancer.hash.key", "header:X-User"),
                ("drover.http.services.v1.loadbalancer.sticky.cookie.httponly", "true"),
                ("drover.http.services.v1.loadbalancer.sticky.cookie.samesite", "lax"),
                ("drover.http.routers.r.service", "canary"),
                ("drover.http.routers.r.rule", "Path(`/`)"),
            ],
            "drover",
        )
        .unwrap();
        assert!(labels.ignored.is_empty(), "{:?}", labels.ignored);
        let port = |_: Option<&str>| Ok(80);
        let target = Target {
            name: "app",
            host: "10.0.0.1",
            port: &port,
        };
        let fragment = labels.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        let services = &fragment.config.http.services;
        let canary = services["canary"].weighted.as_ref().unwrap();
        let children: Vec<_> = canary.services.iter().map(|c| (c.name.as_str(), c.weight)).collect();
        assert_eq!(children, [("v1", Some(9)), ("v2@file", Some(1))]);
        assert_eq!(
            canary.sticky.as_ref().unwrap().cookie.as_ref().unwrap().name.as_deref(),
            Some("canary")
        );
        assert!(
            services["canary"].load_balancer.is_none(),
            "a weighted service gets no server of the item"
        );
        let fo = services["fo"].failover.as_ref().unwrap();
        assert_eq!((fo.service.as_str(), fo.fallback.as_str()), ("v1", "spare@file"));
        let shadow = services["shadow"].mirroring.as_ref().unwrap();
        assert_eq!(shadow.mirrors[0].percent, Some(50));
        assert_eq!(shadow.max_body_size, Some(1024));
        let lb = services["v1"].load_balancer.as_ref().unwrap();
        assert_eq!(lb.strategy.as_deref(), Some("p2c"));
        assert_eq!(lb.hash.as_ref().unwrap().key, "header:X-User");
        let cookie = lb.sticky.as_ref().unwrap().cookie.as_ref().unwrap();
        assert_eq!((cookie.http_only, cookie.same_site.as_deref()), (Some(true), Some("lax")));

        // Traefik's shorthand: `sticky.cookie=true` is a cookie with every default.
        let labels = parse_pairs(
            &[
                ("traefik.http.services.s.loadbalancer.server.port", "80"),
                ("traefik.http.services.s.loadbalancer.sticky.cookie", "true"),
            ],
            "traefik",
        )
        .unwrap();
        let sticky = labels.services["s"].loadbalancer.as_ref().unwrap().sticky.as_ref().unwrap();
        assert_eq!(sticky.cookie, Some(crate::model::StickyCookie::default()));
        let err = parse_pairs(&[("drover.http.services.s.loadbalancer.sticky.cookie", "maybe")], "drover").unwrap_err();
        assert!(err[0].to_string().contains("sticky.cookie"), "{err:?}");
    }

    #[test]
    fn tcp_and_udp_labels_build_routers_services_and_no_default_http_router() {
        let l = parse_pairs(
            &[
                ("traefik.enable", "true"),
                ("traefik.tcp.routers.pg.rule", "HostSNI(`db.test`)"),
                ("traefik.tcp.routers.pg.tls.passthrough", "true"),
                ("traefik.tcp.routers.pg.entrypoints", "pg"),
                ("traefik.tcp.services.pg.loadbalancer.server.port", "5432"),
                ("traefik.udp.routers.dns.entrypoints", "dns"),
                ("traefik.udp.services.dns.loadbalancer.server.port", "53"),
            ],
            "traefik",
        )
        .unwrap();
        let target = Target {
            name: "db-1",
            host: "10.0.0.9",
            port: &port_from,
        };
        let f = l.fragment(&target, &DefaultRule::default(), &TemplateVars::default()).unwrap();
        assert!(
            f.config.http.routers.is_empty() && f.config.http.services.is_empty(),
            "{:?}",
            f.config.http
        );
        let router = &f.config.tcp.routers["pg"];
        assert_eq!(router.service, "pg");
        assert!(router.tls.as_ref().unwrap().passthrough);
        assert_eq!(router.entry_points, ["pg"]);
        assert_eq!(
            f.config.tcp.services["pg"].load_balancer.as_ref().unwrap().servers[0].address,
            "10.0.0.9:5432"
        );
        assert_eq!(f.config.udp.routers["dns"].service, "dns");
        assert_eq!(
            f.config.udp.services["dns"].load_balancer.as_ref().unwrap().servers[0].address,
            "10.0.0.9:53"
        );

        // Replicas pool their servers.
        let mut merger = Merger::default();
        assert!(merger.add(&f.config).is_empty());
        let other = Target {
            name: "db-2",
            host: "10.0.0.10",
            port: &port_from,
        };
        assert!(merger
            .add(
                &l.fragment(&other, &DefaultRule::default(), &TemplateVars::default())
                    .unwrap()
                    .config
            )
            .is_empty());
        assert_eq!(merger.finish().tcp.services["pg"].load_balancer.as_ref().unwrap().servers.len(), 2);

        // A TCP router needs a rule, and a valid one.
        let err = parse_pairs(&[("drover.tcp.routers.x.entrypoints", "web")], "drover").unwrap_err();
        assert!(err[0].to_string().contains("needs a rule"), "{err:?}");
        let err = parse_pairs(&[("drover.tcp.routers.x.rule", "Host(`a`)")], "drover").unwrap_err();
        assert!(err[0].to_string().contains("HTTP router matcher"), "{err:?}");
    }
}
