//! The runtime configuration: every provider's fragment merged, namespaced and validated.
//!
//! This is what the proxy compiles into its snapshot and what the admin API shows. Each object
//! carries its own `status` and `errors`, in Traefik's shape: one broken router is disabled and
//! explained, the others keep working.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model;
use crate::rule::Rule;

/// The merged, validated configuration of all providers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuntimeConfig {
    /// HTTP routers by qualified name (`web@file`). Shared: a reload that leaves a router as it
    /// was reuses its record (change one with `Arc::make_mut`).
    pub routers: BTreeMap<String, std::sync::Arc<RouterInfo>>,
    /// HTTP services by qualified name.
    pub services: BTreeMap<String, ServiceInfo>,
    /// TLS options and certificates of every provider.
    pub tls: TlsRuntime,
    /// Servers transports by qualified name.
    #[serde(rename = "serversTransports")]
    pub servers_transports: BTreeMap<String, TransportInfo>,
    /// HTTP middlewares by qualified name.
    pub middlewares: BTreeMap<String, crate::middlewares::MiddlewareInfo>,
    /// TCP and UDP routers, services and transports.
    #[serde(flatten)]
    pub l4: crate::tcp::L4Runtime,
    /// Increases by one with every configuration published.
    pub generation: u64,
}

/// Every provider's `[tls]`, namespaced like routers (options `modern@file`; the options named
/// `default` stay `default`, as in Traefik).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsRuntime {
    /// Options by qualified name.
    pub options: BTreeMap<String, TlsOptionsInfo>,
    /// Certificates, each with the provider that named it.
    #[serde(skip)]
    pub certificates: Vec<(String, model::Certificate)>,
    /// The default store's default certificate, if a provider set one.
    #[serde(skip)]
    pub default_certificate: Option<(String, model::Certificate)>,
    /// Problems with the section as a whole (a second default certificate, a store other than
    /// `default`).
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One set of TLS options after merging.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsOptionsInfo {
    /// Qualified name.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// The options as written.
    pub options: model::TlsOptions,
    /// Enabled, warning (a name ignored) or disabled (an unknown name).
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Routers whose hosts use these options.
    pub used_by: Vec<String>,
}

/// Whether an object takes part in routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In force, nothing to report.
    Enabled,
    /// In force, with warnings in `errors` (something was ignored).
    Warning,
    /// Not in force; `errors` says why.
    Disabled,
}

/// One HTTP router after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterInfo {
    /// Qualified name, `name@provider`.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// The rule as written.
    pub rule: String,
    /// The parsed rule (absent when it did not parse).
    #[serde(skip)]
    pub parsed: Option<std::sync::Arc<Rule>>,
    /// Effective priority: the explicit one, else the rule's length in bytes (as Traefik).
    pub priority: i64,
    /// Entrypoints as written (empty = all).
    pub entry_points: Vec<String>,
    /// The entrypoints actually in effect.
    pub using: Vec<String>,
    /// The qualified service name.
    pub service: String,
    /// Middlewares as written.
    pub middlewares: Vec<String>,
    /// Its `tls` section with the options name qualified; `None`: plain HTTP only (unless its
    /// entrypoint sets TLS for all its routers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<model::RouterTls>,
    /// Its access-log and metrics switches as written (unset ones follow the entrypoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observability: Option<crate::model::RouterObservability>,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One HTTP service after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// Qualified name, `name@provider`.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// The service as the provider gave it.
    pub load_balancer: Option<model::LoadBalancer>,
    /// A `weighted` service, children qualified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted: Option<model::Weighted>,
    /// A `failover` service, children qualified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<model::Failover>,
    /// A `mirroring` service, children qualified, defaults filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<model::Mirroring>,
    /// How servers (or, for `weighted`, children) are chosen: strategy and sticky cookie.
    #[serde(skip)]
    pub choice: crate::balancing::Choice,
    /// Valid servers, in the order given.
    #[serde(skip)]
    pub servers: Vec<ServerSpec>,
    /// Pass the client's Host header (default true).
    #[serde(skip)]
    pub pass_host_header: bool,
    /// Passive and active health, retries.
    #[serde(skip)]
    pub health: crate::policy::HealthPolicy,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Routers that use this service.
    pub used_by: Vec<String>,
    /// The qualified servers transport its servers are reached through; none: the static
    /// `[serversTransport]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers_transport: Option<String>,
}

/// One servers transport after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportInfo {
    /// Qualified name, `name@provider`.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// The transport as the provider gave it.
    pub transport: model::ServersTransport,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Services that use this transport.
    pub used_by: Vec<String>,
}

/// Scheme spoken to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// TLS; HTTP/2 when the server offers it by ALPN, else HTTP/1.1.
    Https,
    /// Cleartext HTTP/2 with prior knowledge (gRPC servers).
    H2c,
}

/// One server, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ServerSpec {
    /// The URL as written (the identity shown to users).
    pub url: String,
    /// The scheme.
    pub scheme: Scheme,
    /// `host:port` with the default port filled in; IPv6 hosts bracketed.
    pub authority: String,
    /// Relative weight; 0 takes no traffic.
    pub weight: u32,
    /// Failover tier; lower tiers are preferred.
    pub tier: u32,
}

/// Why a server URL was rejected.
#[derive(Debug, PartialEq, Eq)]
pub struct BadServerUrl(pub String);

impl fmt::Display for BadServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ServerSpec {
    /// Parses `http://`, `https://` or `h2c://` `host[:port][/]` with a weight.
    pub fn parse(url: &str, weight: u32) -> Result<Self, BadServerUrl> {
        let bad = |why: &str| BadServerUrl(format!("server url `{url}`: {why}"));
        let (scheme, rest, default_port) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest, 80)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest, 443)
        } else if let Some(rest) = url.strip_prefix("h2c://") {
            (Scheme::H2c, rest, 80)
        } else {
            return Err(bad("expected `http://`, `https://` or `h2c://` and `host:port`"));
        };
        let (hostport, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") {
            return Err(bad("a path is not supported in a server url"));
        }
        if hostport.contains('@') {
            return Err(bad("credentials in a server url are not supported"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed `[` in IPv6 address"))?;
            let addr = &v6[..end];
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 address"));
            }
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after the IPv6 address")),
            };
            (format!("[{addr}]"), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if !host.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return Err(bad("the host has characters a host name cannot have"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(Self {
            url: url.to_string(),
            scheme,
            authority: format!("{}:{port}", host.to_ascii_lowercase()),
            weight,
            tier: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let s = ServerSpec::parse("http://10.0.0.1:8080", 1).unwrap();
        assert_eq!(s.authority, "10.0.0.1:8080");
        assert_eq!(ServerSpec::parse("http://Web/", 2).unwrap().authority, "web:80");
        assert_eq!(ServerSpec::parse("http://[::1]:9000", 1).unwrap().authority, "[::1]:9000");
        assert_eq!(ServerSpec::parse("http://[::1]", 1).unwrap().authority, "[::1]:80");
        let tls = ServerSpec::parse("https://Api.example", 1).unwrap();
        assert_eq!((tls.scheme, tls.authority.as_str()), (Scheme::Https, "api.example:443"));
        let h2c = ServerSpec::parse("h2c://10.0.0.2:50051", 1).unwrap();
        assert_eq!((h2c.scheme, h2c.authority.as_str()), (Scheme::H2c, "10.0.0.2:50051"));
        for bad in [
            "ftp://x",
            "http://",
            "http://x:0",
            "http://x:99999",
            "http://x:ab",
            "http://x/path",
            "http://[zz]:1",
            "http://a b:1",
            "https://x:0",
            "h2c://",
        ] {
            assert!(ServerSpec::parse(bad, 1).is_err(), "{bad} should be rejected");
        }
    }
}
