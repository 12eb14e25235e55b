//! The dynamic-configuration model: what a provider says it wants routed.
//!
//! The shape and key names follow Traefik v3's file-provider schema, so an existing Traefik dynamic
//! file works for the parts drover has. Keys Traefik knows but drover does not implement yet are
//! accepted and reported as ignored (see [`DynamicConfig::unsupported`]), never silently dropped;
//! keys nobody knows are an error naming the key, so a typo cannot pass for configuration.

mod composite;
mod health;
pub mod middleware;
mod tcp;
mod tls;
mod transport;

use std::collections::BTreeMap;

use serde::de::IgnoredAny;

pub use composite::{Failover, Hash, Mirror, Mirroring, Sticky, StickyCookie, Weighted, WeightedService};
pub use health::{FailureRate, HealthCheck, PassiveHealthCheck, Retry};
pub use middleware::Middleware;
use serde::{Deserialize, Serialize};
pub use tcp::{
    ProxyProtocol, TcpConfig, TcpHealthCheck, TcpLoadBalancer, TcpRouter, TcpRouterTls, TcpServer, TcpServersTransport, TcpService,
    TcpTransportTls, UdpConfig, UdpLoadBalancer, UdpRouter, UdpServer, UdpService,
};
pub use tls::{Certificate, ClientAuth, Domain, RouterTls, TlsConfig, TlsOptions, TlsStore};
pub use transport::{ClientCertificate, ServersTransport, TransportTimeouts};

/// One provider's complete desired state. Names are local to the provider (`web`, not `web@file`),
/// except references to another provider's objects (`svc@docker`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicConfig {
    /// HTTP routers, services and middlewares.
    #[serde(default)]
    pub http: HttpConfig,
    /// TCP routers, services and servers transports.
    #[serde(default, skip_serializing_if = "TcpConfig::is_empty")]
    pub tcp: TcpConfig,
    /// UDP routers and services.
    #[serde(default, skip_serializing_if = "UdpConfig::is_empty")]
    pub udp: UdpConfig,
    /// `[tls]`: certificates, options, the default certificate.
    #[serde(default, skip_serializing_if = "TlsConfig::is_empty")]
    pub tls: TlsConfig,
}

/// A Traefik key drover accepts but does not act on yet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(de).map(|_| Ignored)
    }
}

/// The `[http]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Routers by local name.
    #[serde(default)]
    pub routers: BTreeMap<String, Router>,
    /// Services by local name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Middlewares by local name.
    #[serde(default)]
    pub middlewares: BTreeMap<String, Middleware>,
    /// Servers transports by local name: how services reach their servers (TLS, HTTP/2).
    #[serde(default, rename = "serversTransports", alias = "serverstransports", skip_serializing)]
    pub servers_transports: BTreeMap<String, ServersTransport>,
}

/// An HTTP router: which requests (rule, entrypoints) go to which service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Router {
    /// The rule, in Traefik v3 syntax (``Host(`a.example`) && PathPrefix(`/api`)``).
    pub rule: String,
    /// Entrypoints this router listens on; empty means every entrypoint.
    #[serde(default, alias = "entrypoints")]
    pub entry_points: Vec<String>,
    /// The service, local (`web`) or qualified (`web@docker`).
    pub service: String,
    /// Explicit priority; 0 (the default) means "the rule's length".
    #[serde(default)]
    pub priority: i64,
    /// Middleware names, in order.
    #[serde(default)]
    pub middlewares: Vec<String>,
    /// `tls`: the router serves TLS connections (and only those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouterTls>,
    /// Access-log and metrics switches for this router (Traefik v3.1+); unset switches follow
    /// the entrypoint's `observability`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<RouterObservability>,
    /// `ruleSyntax` (drover speaks v3 only: reported as ignored).
    #[serde(default, alias = "rulesyntax", skip_serializing)]
    pub rule_syntax: Option<Ignored>,
}

/// `http.routers.<r>.observability`: whether the router's requests are logged and counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouterObservability {
    /// Write an access-log line for each request (when the access log is on). Unset: the
    /// entrypoint's setting, true by default.
    #[serde(default, alias = "accesslogs", skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<bool>,
    /// Record each request in the metrics. Unset: the entrypoint's setting, true by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<bool>,
    /// `tracing` (drover has no tracing: reported as ignored).
    #[serde(default, skip_serializing)]
    pub tracing: Option<Ignored>,
    /// `traceVerbosity` (drover has no tracing: reported as ignored).
    #[serde(default, alias = "traceverbosity", skip_serializing)]
    pub trace_verbosity: Option<Ignored>,
}

/// An HTTP service: exactly one of `loadBalancer`, `weighted`, `mirroring`, `failover`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// A load balancer over servers.
    #[serde(default, alias = "loadbalancer")]
    pub load_balancer: Option<LoadBalancer>,
    /// Smooth weighted round robin over services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted: Option<Weighted>,
    /// A service whose requests are copied to others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<Mirroring>,
    /// A service with a standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// `loadBalancer`: smooth weighted round robin over `servers`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    /// The servers.
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Pass the client's `Host` header to the server (default true); false sends the server's.
    #[serde(default, alias = "passhostheader", skip_serializing_if = "Option::is_none")]
    pub pass_host_header: Option<bool>,
    /// `strategy`: `wrr` (default), `p2c`, `hrw` or `leasttime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `sticky.cookie`: session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// drover: consistent hashing on a request key (takes precedence over `strategy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Hash>,
    /// `healthCheck`: active checks (optional).
    #[serde(default, alias = "healthcheck", skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// `passiveHealthCheck`: ejection from live traffic (on by default).
    #[serde(default, alias = "passivehealthcheck", skip_serializing_if = "Option::is_none")]
    pub passive_health_check: Option<PassiveHealthCheck>,
    /// `retry` (drover): retries on another server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// `serversTransport`: the servers transport to use, `name` or `name@provider`; unset, the
    /// static `[serversTransport]`.
    #[serde(default, alias = "serverstransport", skip_serializing_if = "Option::is_none")]
    pub servers_transport: Option<String>,
    /// `responseForwarding` (drover always streams: reported as ignored).
    #[serde(default, alias = "responseforwarding", skip_serializing)]
    pub response_forwarding: Option<Ignored>,
}

/// One server of a load balancer.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    /// `http://host:port` (a path, if any, is an error: drover does not rewrite paths here).
    pub url: String,
    /// Relative weight (default 1; 0 takes no traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// drover: failover tier (default 0). Traffic goes to the lowest tier that has a usable
    /// server; higher tiers take over only when every server of the lower ones is out (DNS SRV
    /// priorities map here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<u32>,
    /// `preservePath` (not implemented: reported as ignored).
    #[serde(default, alias = "preservepath", skip_serializing)]
    pub preserve_path: Option<Ignored>,
}

impl DynamicConfig {
    /// Parses a TOML document in the Traefik file-provider schema.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Parses a YAML document in the same schema, through the same structs, so a file and its YAML
    /// translation give the same configuration. An empty document (or one of only comments) is an
    /// empty configuration, as an empty TOML file is.
    pub fn from_yaml(text: &str) -> Result<Self, yaml_serde::Error> {
        yaml_serde::from_str(text)
    }

    /// True when `other` differs from this fragment in its HTTP routers at most: a reload can
    /// then patch the routers alone ([`crate::incremental`]).
    pub fn same_but_http_routers(&self, other: &Self) -> bool {
        let (a, b) = (&self.http, &other.http);
        a.services == b.services
            && a.middlewares == b.middlewares
            && a.servers_transports == b.servers_transports
            && self.tcp == other.tcp
            && self.udp == other.udp
            && self.tls == other.tls
    }

    /// The keys of [`Self::unsupported`] under `http.routers.<name>.`, in the same order: those
    /// of router `name`, and of routers whose names continue it with a dot. For one router of a
    /// large fragment, without walking every router.
    pub fn unsupported_under_router(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let dotted = format!("{name}.");
        for (other, r) in self
            .http
            .routers
            .range::<str, _>((std::ops::Bound::Included(name), std::ops::Bound::Unbounded))
        {
            if other != name && !other.starts_with(&dotted) {
                // Names that continue `name` with a dot sort right after it, unless a name
                // continues it with a character below the dot (`-`, a space); skip those.
                if other.as_str() > dotted.as_str() {
                    break;
                }
                continue;
            }
            router_unsupported(other, r, &mut out);
        }
        out
    }

    /// Every key present that drover accepts but does not act on, as dotted paths, so the user is
    /// told rather than left guessing.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, r) in &self.tcp.routers {
            if r.rule_syntax.is_some() {
                out.push(format!("tcp.routers.{name}.ruleSyntax"));
            }
        }
        for (name, store) in &self.tls.stores {
            if store.default_generated_cert.is_some() {
                out.push(format!("tls.stores.{name}.defaultGeneratedCert"));
            }
        }
        for (name, m) in &self.http.middlewares {
            if let Some(h) = &m.headers {
                out.extend(
                    h.deprecated()
                        .into_iter()
                        .map(|key| format!("http.middlewares.{name}.headers.{key}")),
                );
            }
        }
        for (name, r) in &self.http.routers {
            router_unsupported(name, r, &mut out);
        }
        for (name, s) in &self.http.services {
            if let Some(lb) = &s.load_balancer {
                for (present, key) in [(lb.response_forwarding.is_some(), "responseForwarding")] {
                    if present {
                        out.push(format!("http.services.{name}.loadBalancer.{key}"));
                    }
                }
                for (i, server) in lb.servers.iter().enumerate() {
                    if server.preserve_path.is_some() {
                        out.push(format!("http.services.{name}.loadBalancer.servers[{i}].preservePath"));
                    }
                }
            }
        }
        out
    }
}

/// The keys of router `name` (written as `r`) that drover accepts but does not act on.
fn router_unsupported(name: &str, r: &Router, out: &mut Vec<String>) {
    for (present, key) in [
        (r.tls.as_ref().is_some_and(|t| t.passthrough.is_some()), "tls.passthrough"),
        (r.observability.is_some_and(|o| o.tracing.is_some()), "observability.tracing"),
        (
            r.observability.is_some_and(|o| o.trace_verbosity.is_some()),
            "observability.traceVerbosity",
        ),
        (r.rule_syntax.is_some(), "ruleSyntax"),
    ] {
        if present {
            out.push(format!("http.routers.{name}.{key}"));
        }
    }
}
