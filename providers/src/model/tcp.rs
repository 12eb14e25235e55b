//! `[tcp]` and `[udp]`: routers that take whole connections (by TLS server name, ALPN and client
//! address) or datagrams, and the services behind them, in Traefik v3's keys. Every key also has
//! an all-lowercase alias, so label-shaped keys fill the same structs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClientCertificate, Domain, Ignored};
use crate::duration::ConfigDuration;

/// The `[tcp]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// TCP routers by local name.
    #[serde(default)]
    pub routers: BTreeMap<String, TcpRouter>,
    /// TCP services by local name.
    #[serde(default)]
    pub services: BTreeMap<String, TcpService>,
    /// TCP servers transports by local name.
    #[serde(default, rename = "serversTransports", alias = "serverstransports")]
    pub servers_transports: BTreeMap<String, TcpServersTransport>,
    /// `middlewares` (TCP middlewares are not implemented: a router naming one is disabled).
    #[serde(default, skip_serializing)]
    pub middlewares: Option<Ignored>,
}

impl TcpConfig {
    /// Whether the section says nothing.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty() && self.servers_transports.is_empty()
    }
}

/// A TCP router: which connections (rule, entrypoints) go to which service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRouter {
    /// The rule: ``HostSNI(`db.example`)``, ``HostSNIRegexp(`re`)``, ``ClientIP(`net`)``,
    /// ``ALPN(`proto`)`` with `&&`, `||`, `!` and parentheses.
    pub rule: String,
    /// Entrypoints; empty means every entrypoint.
    #[serde(default, alias = "entrypoints")]
    pub entry_points: Vec<String>,
    /// The service, local or qualified.
    pub service: String,
    /// Explicit priority; 0 means the rule's length.
    #[serde(default)]
    pub priority: i64,
    /// TCP middlewares (not implemented: a router that names any is disabled, never run
    /// without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
    /// `tls`: the router takes TLS connections, passed through or terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TcpRouterTls>,
    /// `ruleSyntax` (v3 only: reported as ignored).
    #[serde(default, alias = "rulesyntax", skip_serializing)]
    pub rule_syntax: Option<Ignored>,
}

/// `tcp.routers.<r>.tls`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRouterTls {
    /// Forward the TLS stream untouched (the server terminates it); else drover terminates.
    #[serde(default)]
    pub passthrough: bool,
    /// TLS options (when drover terminates), `name` or `name@provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
    /// Certificate resolver (ACME).
    #[serde(default, alias = "certresolver", skip_serializing_if = "Option::is_none")]
    pub cert_resolver: Option<String>,
    /// Domains to get certificates for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
}

/// A TCP service: a load balancer over servers (`weighted` is reported as not implemented).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpService {
    /// Weighted round robin over servers.
    #[serde(default, alias = "loadbalancer", skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<TcpLoadBalancer>,
    /// `weighted` (not implemented for TCP yet: the service is disabled).
    #[serde(default, skip_serializing)]
    pub weighted: Option<Ignored>,
}

/// `tcp.services.<s>.loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpLoadBalancer {
    /// The servers.
    #[serde(default)]
    pub servers: Vec<TcpServer>,
    /// The TCP servers transport, `name` or `name@provider`.
    #[serde(default, alias = "serverstransport", skip_serializing_if = "Option::is_none")]
    pub servers_transport: Option<String>,
    /// Active checks: a connect, or `send`/`expect`.
    #[serde(default, alias = "healthcheck", skip_serializing_if = "Option::is_none")]
    pub health_check: Option<TcpHealthCheck>,
    /// Traefik v2's `proxyProtocol` on the load balancer (deprecated; moved to the transport).
    #[serde(default, alias = "proxyprotocol", skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Traefik v2's `terminationDelay` on the load balancer (deprecated; moved to the transport).
    #[serde(default, alias = "terminationdelay", skip_serializing_if = "Option::is_none")]
    pub termination_delay: Option<ConfigDuration>,
}

/// One TCP server.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpServer {
    /// `host:port`.
    pub address: String,
    /// Speak TLS to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// Relative weight (default 1; 0 takes no traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `tcp.services.<s>.loadBalancer.healthCheck`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpHealthCheck {
    /// Bytes to send after connecting (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Bytes the answer must contain (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Time between checks (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ConfigDuration>,
    /// Time between checks while the server is down (default: `interval`).
    #[serde(default, alias = "unhealthyinterval", skip_serializing_if = "Option::is_none")]
    pub unhealthy_interval: Option<ConfigDuration>,
    /// Deadline of one check (default 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ConfigDuration>,
    /// Check this port instead of the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `proxyProtocol`: a PROXY protocol header sent to the server before the client's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    /// 1 (text) or 2 (binary; the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
}

/// `[tcp.serversTransports.<name>]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpServersTransport {
    /// Deadline of a connect (default 30 s).
    #[serde(default, alias = "dialtimeout", skip_serializing_if = "Option::is_none")]
    pub dial_timeout: Option<ConfigDuration>,
    /// TCP keep-alive on server connections (default 15 s; 0 or negative: off).
    #[serde(default, alias = "dialkeepalive", skip_serializing_if = "Option::is_none")]
    pub dial_keep_alive: Option<ConfigDuration>,
    /// How long the other direction may go on after one side closed its write half (default
    /// 100 ms).
    #[serde(default, alias = "terminationdelay", skip_serializing_if = "Option::is_none")]
    pub termination_delay: Option<ConfigDuration>,
    /// Send a PROXY protocol header to the servers.
    #[serde(default, alias = "proxyprotocol", skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// TLS to the servers that have `tls = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TcpTransportTls>,
}

/// `tcp.serversTransports.<name>.tls`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpTransportTls {
    /// The name sent in SNI and checked against the certificate; default the server's host.
    #[serde(default, alias = "servername", skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate.
    #[serde(default, alias = "insecureskipverify", skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// CA certificates (PEM files or inline) instead of the bundled roots.
    #[serde(default, rename = "rootCAs", alias = "rootcas", skip_serializing_if = "Option::is_none")]
    pub root_cas: Option<Vec<String>>,
    /// Client certificates for servers that ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<ClientCertificate>>,
    /// `peerCertURI` (not implemented: the transport is refused when set).
    #[serde(default, rename = "peerCertURI", alias = "peercerturi", skip_serializing_if = "Option::is_none")]
    pub peer_cert_uri: Option<String>,
    /// `spiffe` (not implemented: the transport is refused when set).
    #[serde(default, skip_serializing)]
    pub spiffe: Option<Ignored>,
}

/// The `[udp]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    /// UDP routers by local name.
    #[serde(default)]
    pub routers: BTreeMap<String, UdpRouter>,
    /// UDP services by local name.
    #[serde(default)]
    pub services: BTreeMap<String, UdpService>,
}

impl UdpConfig {
    /// Whether the section says nothing.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty()
    }
}

/// A UDP router: every datagram of its entrypoints goes to its service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UdpRouter {
    /// Entrypoints (UDP ones); empty means every UDP entrypoint.
    #[serde(default, alias = "entrypoints")]
    pub entry_points: Vec<String>,
    /// The service, local or qualified.
    pub service: String,
}

/// A UDP service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UdpService {
    /// Weighted round robin over servers, one choice per client session.
    #[serde(default, alias = "loadbalancer", skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<UdpLoadBalancer>,
    /// `weighted` (not implemented for UDP: the service is disabled).
    #[serde(default, skip_serializing)]
    pub weighted: Option<Ignored>,
}

/// `udp.services.<s>.loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UdpLoadBalancer {
    /// The servers.
    #[serde(default)]
    pub servers: Vec<UdpServer>,
}

/// One UDP server.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UdpServer {
    /// `host:port`.
    pub address: String,
    /// Relative weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}
