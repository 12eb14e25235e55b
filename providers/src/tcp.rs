//! TCP and UDP routers and services after merging: namespaced, validated, each with its status
//! and errors in Traefik's shape, as [`crate::aggregate`] does for HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::aggregate::{disable, qualify, qualify_tls_options, warn};
use crate::model::{self, DynamicConfig};
use crate::rule::{self, TcpRule};
use crate::runtime::Status;

/// Every provider's `[tcp]` and `[udp]`, merged.
#[derive(Clone, Debug, Default, Serialize)]
pub struct L4Runtime {
    /// TCP routers by qualified name.
    #[serde(rename = "tcpRouters")]
    pub routers: BTreeMap<String, TcpRouterInfo>,
    /// TCP services by qualified name.
    #[serde(rename = "tcpServices")]
    pub services: BTreeMap<String, TcpServiceInfo>,
    /// TCP servers transports by qualified name.
    #[serde(rename = "tcpServersTransports")]
    pub servers_transports: BTreeMap<String, TcpTransportInfo>,
    /// UDP routers by qualified name.
    #[serde(rename = "udpRouters")]
    pub udp_routers: BTreeMap<String, UdpRouterInfo>,
    /// UDP services by qualified name.
    #[serde(rename = "udpServices")]
    pub udp_services: BTreeMap<String, UdpServiceInfo>,
}

/// How a TCP router treats TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpMode {
    /// No TLS: the bytes go as they come (``HostSNI(`*`)`` only).
    Plain,
    /// TLS passed through untouched; routed by the ClientHello.
    Passthrough,
    /// TLS terminated by drover; the plaintext goes to the server.
    Terminate,
}

/// One TCP router after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRouterInfo {
    /// Qualified name.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// The rule as written.
    pub rule: String,
    /// The parsed rule (absent when it did not parse).
    #[serde(skip)]
    pub parsed: Option<TcpRule>,
    /// Effective priority.
    pub priority: i64,
    /// Entrypoints as written (empty = all).
    pub entry_points: Vec<String>,
    /// The entrypoints in effect.
    pub using: Vec<String>,
    /// The qualified service name.
    pub service: String,
    /// TLS as written, options qualified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<model::TcpRouterTls>,
    /// Plain, passthrough or terminate.
    pub mode: TcpMode,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One TCP server, checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TcpServerSpec {
    /// `host:port` as written.
    pub address: String,
    /// TLS to the server.
    pub tls: bool,
    /// Relative weight.
    pub weight: u32,
}

/// One TCP service after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpServiceInfo {
    /// Qualified name.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// The load balancer as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<model::TcpLoadBalancer>,
    /// Valid servers, in order.
    #[serde(skip)]
    pub servers: Vec<TcpServerSpec>,
    /// The qualified transport; none: drover's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers_transport: Option<String>,
    /// The active check, resolved (`healthCheck`).
    #[serde(skip)]
    pub check: Option<TcpCheckPolicy>,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Routers that use it.
    pub used_by: Vec<String>,
}

/// `tcp.services.<s>.loadBalancer.healthCheck`, with Traefik's defaults filled in: connect (to
/// `port` when given), send `send` when given, and pass when the answer contains `expect` (or,
/// with no `expect`, when the connection opens), all within `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpCheckPolicy {
    /// Check this port instead of the server's.
    pub port: Option<u16>,
    /// Bytes sent once connected.
    pub send: Option<String>,
    /// Bytes the answer must contain.
    pub expect: Option<String>,
    /// Time between checks while the server is up (default 30 s).
    pub interval: Duration,
    /// Time between checks while it is down (default: `interval`).
    pub unhealthy_interval: Duration,
    /// Deadline of one check (default 5 s).
    pub timeout: Duration,
}

impl TcpCheckPolicy {
    /// Resolves `check`, or says what is wrong (the key named).
    fn resolve(name: &str, check: &model::TcpHealthCheck) -> Result<Self, String> {
        let at = format!("tcp.services.{name}.loadBalancer.healthCheck");
        let interval = check.interval.map_or(Duration::from_secs(30), |d| d.0);
        let timeout = check.timeout.map_or(Duration::from_secs(5), |d| d.0);
        if interval.is_zero() {
            return Err(format!("{at}.interval: must be above zero"));
        }
        if timeout.is_zero() {
            return Err(format!("{at}.timeout: must be above zero"));
        }
        if check.port == Some(0) {
            return Err(format!("{at}.port: 0 is not a port"));
        }
        if check.expect.as_deref() == Some("") {
            return Err(format!("{at}.expect: empty; leave it out to pass on a connect alone"));
        }
        Ok(Self {
            port: check.port,
            send: check.send.clone().filter(|s| !s.is_empty()),
            expect: check.expect.clone(),
            interval,
            unhealthy_interval: check.unhealthy_interval.map_or(interval, |d| d.0),
            timeout,
        })
    }
}

/// One TCP servers transport after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpTransportInfo {
    /// Qualified name.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// As written.
    pub transport: model::TcpServersTransport,
    /// Enabled or disabled.
    pub status: Status,
    /// What is wrong.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Services that use it.
    pub used_by: Vec<String>,
}

/// One UDP router after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UdpRouterInfo {
    /// Qualified name.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// Entrypoints as written (empty = every UDP entrypoint).
    pub entry_points: Vec<String>,
    /// The entrypoints as written (the proxy checks that they are UDP ones).
    pub using: Vec<String>,
    /// The qualified service name.
    pub service: String,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One UDP service after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UdpServiceInfo {
    /// Qualified name.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// As written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<model::UdpLoadBalancer>,
    /// Valid servers (`host:port`, weight).
    #[serde(skip)]
    pub servers: Vec<(String, u32)>,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Routers that use it.
    pub used_by: Vec<String>,
}

/// Checks `host:port`: a host (name, IPv4 or bracketed IPv6) and a port.
fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}` has no port; write host:port"))?;
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("`{address}`: write an IPv6 address in brackets, as in [::1]:5432"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{address}` has an invalid port `{port}`")),
        Ok(_) => Ok(()),
    }
}

/// The entrypoints a router is served on: those written that exist (a missing one is a
/// warning), every one when none is written; disabled when none of those written exists.
pub(crate) fn using(written: &[String], entry_points: &[String], status: &mut Status, errors: &mut Vec<String>) -> Vec<String> {
    if written.is_empty() {
        return entry_points.to_vec();
    }
    let mut using = Vec::new();
    for ep in written {
        if entry_points.contains(ep) {
            using.push(ep.clone());
        } else {
            warn(
                status,
                errors,
                format!("entrypoint `{ep}` does not exist (known: {})", entry_points.join(", ")),
            );
        }
    }
    if using.is_empty() {
        disable(status, errors, "none of the router's entrypoints exists".into());
    }
    using
}

/// Merges every provider's `[tcp]` and `[udp]`. `entry_points` are the static entrypoints (TCP
/// and UDP alike; the proxy keeps each router on the kind it can serve).
pub fn merge(fragments: &[(&str, &DynamicConfig)], entry_points: &[String]) -> L4Runtime {
    let mut out = L4Runtime::default();
    for (provider, config) in fragments {
        for (name, t) in &config.tcp.servers_transports {
            let mut status = Status::Enabled;
            let mut errors = Vec::new();
            if let Some(v) = t.proxy_protocol.and_then(|p| p.version) {
                if v != 1 && v != 2 {
                    disable(
                        &mut status,
                        &mut errors,
                        format!("tcp.serversTransports.{name}.proxyProtocol.version: {v} is not 1 or 2"),
                    );
                }
            }
            if let Some(tls) = &t.tls {
                if tls.peer_cert_uri.is_some() || tls.spiffe.is_some() {
                    disable(
                        &mut status,
                        &mut errors,
                        format!("tcp.serversTransports.{name}.tls: peerCertURI and spiffe are not implemented; the transport is refused rather than used without the check"),
                    );
                }
            }
            let info = TcpTransportInfo {
                name: qualify(name, provider),
                provider: provider.to_string(),
                transport: t.clone(),
                status,
                errors,
                used_by: Vec::new(),
            };
            out.servers_transports.insert(info.name.clone(), info);
        }
        for (name, s) in &config.tcp.services {
            let info = tcp_service(name, provider, s, &mut out.servers_transports);
            out.services.insert(info.name.clone(), info);
        }
        for (name, s) in &config.udp.services {
            let info = udp_service(name, provider, s);
            out.udp_services.insert(info.name.clone(), info);
        }
    }
    for (provider, config) in fragments {
        for (name, r) in &config.tcp.routers {
            let mut info = tcp_router(name, provider, r, entry_points);
            match out.services.get_mut(&info.service) {
                None => disable(
                    &mut info.status,
                    &mut info.errors,
                    format!("the TCP service `{}` does not exist", info.service),
                ),
                Some(service) => {
                    service.used_by.push(info.name.clone());
                    if service.status == Status::Disabled {
                        disable(
                            &mut info.status,
                            &mut info.errors,
                            format!("the TCP service `{}` is disabled", info.service),
                        );
                    }
                }
            }
            if info.status == Status::Disabled {
                tracing::warn!(router = %info.name, "TCP router disabled: {}", info.errors.join("; "));
            }
            out.routers.insert(info.name.clone(), info);
        }
        for (name, r) in &config.udp.routers {
            let mut status = Status::Enabled;
            let mut errors = Vec::new();
            if name.contains('@') {
                disable(&mut status, &mut errors, format!("router name `{name}` must not contain `@`"));
            }
            // UDP entrypoints are checked by the proxy, which knows which entrypoints are UDP.
            let using = r.entry_points.clone();
            let service = qualify(&r.service, provider);
            match out.udp_services.get_mut(&service) {
                None => disable(&mut status, &mut errors, format!("the UDP service `{service}` does not exist")),
                Some(s) => {
                    s.used_by.push(qualify(name, provider));
                    if s.status == Status::Disabled {
                        disable(&mut status, &mut errors, format!("the UDP service `{service}` is disabled"));
                    }
                }
            }
            let info = UdpRouterInfo {
                name: qualify(name, provider),
                provider: provider.to_string(),
                entry_points: r.entry_points.clone(),
                using,
                service,
                status,
                errors,
            };
            out.udp_routers.insert(info.name.clone(), info);
        }
    }
    out
}

fn tcp_router(name: &str, provider: &str, r: &model::TcpRouter, entry_points: &[String]) -> TcpRouterInfo {
    let mut status = Status::Enabled;
    let mut errors = Vec::new();
    if name.contains('@') {
        disable(&mut status, &mut errors, format!("router name `{name}` must not contain `@`"));
    }
    let parsed = match rule::parse_tcp(&r.rule) {
        Ok(rule) => Some(rule),
        Err(e) => {
            disable(&mut status, &mut errors, format!("tcp.routers.{name}.rule: {e}"));
            None
        }
    };
    let mode = match &r.tls {
        None => TcpMode::Plain,
        Some(t) if t.passthrough => TcpMode::Passthrough,
        Some(_) => TcpMode::Terminate,
    };
    if let Some(rule) = &parsed {
        if mode == TcpMode::Plain && !rule.is_catch_all() {
            disable(
                &mut status,
                &mut errors,
                format!(
                    "tcp.routers.{name}.rule: a router without TLS sees no server name or ALPN, so it may only use HostSNI(`*`) \
                     (with ClientIP if needed); add a `tls` section (passthrough = true to keep the TLS end to end)"
                ),
            );
        }
    }
    if !r.middlewares.is_empty() {
        disable(
            &mut status,
            &mut errors,
            format!(
                "tcp.routers.{name}.middlewares: TCP middlewares are not implemented; the router stays off rather than run without them"
            ),
        );
    }
    if r.rule_syntax.is_some() {
        warn(
            &mut status,
            &mut errors,
            format!("`tcp.routers.{name}.ruleSyntax` is not supported by drover and is ignored"),
        );
    }
    if let Some(tls) = &r.tls {
        if tls.passthrough && tls.cert_resolver.is_some() {
            warn(
                &mut status,
                &mut errors,
                format!(
                    "tcp.routers.{name}.tls.certResolver: a passthrough router presents the server's certificate; the resolver is not used"
                ),
            );
        }
    }
    let using = using(&r.entry_points, entry_points, &mut status, &mut errors);
    let service = if r.service.is_empty() {
        disable(&mut status, &mut errors, format!("tcp.routers.{name}.service is missing"));
        String::new()
    } else {
        qualify(&r.service, provider)
    };
    TcpRouterInfo {
        name: qualify(name, provider),
        provider: provider.to_string(),
        rule: r.rule.clone(),
        parsed,
        priority: if r.priority != 0 { r.priority } else { r.rule.len() as i64 },
        entry_points: r.entry_points.clone(),
        using,
        service,
        tls: r.tls.as_ref().map(|t| model::TcpRouterTls {
            options: t.options.as_ref().map(|o| qualify_tls_options(o, provider)),
            ..t.clone()
        }),
        mode,
        status,
        errors,
    }
}

fn tcp_service(name: &str, provider: &str, s: &model::TcpService, transports: &mut BTreeMap<String, TcpTransportInfo>) -> TcpServiceInfo {
    let mut status = Status::Enabled;
    let mut errors = Vec::new();
    let mut servers = Vec::new();
    if name.contains('@') {
        disable(&mut status, &mut errors, format!("service name `{name}` must not contain `@`"));
    }
    if s.weighted.is_some() {
        disable(
            &mut status,
            &mut errors,
            format!("tcp.services.{name}.weighted: weighted TCP services are not implemented yet"),
        );
    }
    let qualified = qualify(name, provider);
    let mut transport = None;
    let mut resolved_check = None;
    match &s.load_balancer {
        None => {
            if s.weighted.is_none() {
                disable(&mut status, &mut errors, format!("tcp.services.{name} has no loadBalancer"));
            }
        }
        Some(lb) => {
            let mut seen = BTreeSet::new();
            for (i, server) in lb.servers.iter().enumerate() {
                match check_address(&server.address) {
                    Err(e) => warn(
                        &mut status,
                        &mut errors,
                        format!("tcp.services.{name}.loadBalancer.servers[{i}].address: {e}; server skipped"),
                    ),
                    Ok(()) if !seen.insert(server.address.clone()) => warn(
                        &mut status,
                        &mut errors,
                        format!(
                            "tcp.services.{name}.loadBalancer.servers[{i}]: `{}` is listed twice; the first entry is used",
                            server.address
                        ),
                    ),
                    Ok(()) => servers.push(TcpServerSpec {
                        address: server.address.clone(),
                        tls: server.tls.unwrap_or(false),
                        weight: server.weight.unwrap_or(1),
                    }),
                }
            }
            if servers.is_empty() && status != Status::Disabled {
                warn(
                    &mut status,
                    &mut errors,
                    format!("tcp.services.{name} has no usable server: its connections are refused"),
                );
            }
            if lb.proxy_protocol.is_some() || lb.termination_delay.is_some() {
                warn(
                    &mut status,
                    &mut errors,
                    format!("tcp.services.{name}.loadBalancer: proxyProtocol and terminationDelay moved to tcp.serversTransports in Traefik v3 and are ignored here"),
                );
            }
            if let Some(t) = &lb.servers_transport {
                let t = qualify(t, provider);
                match transports.get_mut(&t) {
                    None => disable(
                        &mut status,
                        &mut errors,
                        format!("tcp.services.{name}.loadBalancer.serversTransport: the TCP servers transport `{t}` does not exist"),
                    ),
                    Some(info) => {
                        info.used_by.push(qualified.clone());
                        if info.status == Status::Disabled {
                            disable(&mut status, &mut errors, format!("the TCP servers transport `{t}` is disabled"));
                        }
                    }
                }
                transport = Some(t);
            }
            if let Some(check) = &lb.health_check {
                match TcpCheckPolicy::resolve(name, check) {
                    Ok(policy) => resolved_check = Some(policy),
                    Err(why) => disable(&mut status, &mut errors, why),
                }
            }
        }
    }
    TcpServiceInfo {
        name: qualified,
        provider: provider.to_string(),
        load_balancer: s.load_balancer.clone(),
        servers,
        servers_transport: transport,
        check: resolved_check,
        status,
        errors,
        used_by: Vec::new(),
    }
}

fn udp_service(name: &str, provider: &str, s: &model::UdpService) -> UdpServiceInfo {
    let mut status = Status::Enabled;
    let mut errors = Vec::new();
    let mut servers = Vec::new();
    if name.contains('@') {
        disable(&mut status, &mut errors, format!("service name `{name}` must not contain `@`"));
    }
    match &s.load_balancer {
        None => disable(
            &mut status,
            &mut errors,
            if s.weighted.is_some() {
                format!("udp.services.{name}.weighted: weighted UDP services are not implemented yet")
            } else {
                format!("udp.services.{name} has no loadBalancer")
            },
        ),
        Some(lb) => {
            for (i, server) in lb.servers.iter().enumerate() {
                match check_address(&server.address) {
                    Err(e) => warn(
                        &mut status,
                        &mut errors,
                        format!("udp.services.{name}.loadBalancer.servers[{i}].address: {e}; server skipped"),
                    ),
                    Ok(()) => servers.push((server.address.clone(), server.weight.unwrap_or(1))),
                }
            }
        }
    }
    UdpServiceInfo {
        name: qualify(name, provider),
        provider: provider.to_string(),
        load_balancer: s.load_balancer.clone(),
        servers,
        status,
        errors,
        used_by: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(text: &str) -> L4Runtime {
        let config = DynamicConfig::from_toml(text).unwrap();
        merge(&[("file", &config)], &["web".into(), "dns".into()])
    }

    #[test]
    fn a_health_check_gets_traefiks_defaults_and_a_bad_one_disables_its_service() {
        let l4 = merged(
            r#"
[tcp.services.ok.loadBalancer]
servers = [{ address = "127.0.0.1:1" }]
healthCheck = { send = "PING", expect = "PONG", unhealthyInterval = "1s" }
[tcp.services.bad.loadBalancer]
servers = [{ address = "127.0.0.1:1" }]
healthCheck = { interval = "0s" }
"#,
        );
        let ok = l4.services["ok@file"].check.clone().expect("resolved");
        assert_eq!(
            (ok.interval, ok.unhealthy_interval, ok.timeout),
            (Duration::from_secs(30), Duration::from_secs(1), Duration::from_secs(5))
        );
        assert_eq!((ok.send.as_deref(), ok.expect.as_deref()), (Some("PING"), Some("PONG")));
        let bad = &l4.services["bad@file"];
        assert_eq!(bad.status, Status::Disabled);
        assert!(
            bad.errors[0].contains("tcp.services.bad.loadBalancer.healthCheck.interval"),
            "{:?}",
            bad.errors
        );
    }

    #[test]
    fn routers_take_their_mode_and_traefiks_rules_are_enforced() {
        let l4 = merged(
            r#"
[tcp.routers.pass]
rule = "HostSNI(`pass.test`)"
service = "s"
tls = { passthrough = true }
[tcp.routers.term]
rule = "HostSNI(`term.test`)"
service = "s"
tls = { options = "modern" }
[tcp.routers.plain]
rule = "HostSNI(`*`)"
entryPoints = ["web"]
service = "s"
[tcp.routers.bad]
rule = "HostSNI(`x.test`)"
service = "s"
[tcp.routers.nosvc]
rule = "HostSNI(`*`)"
service = "missing"
[[tcp.services.s.loadBalancer.servers]]
address = "127.0.0.1:5432"
[[tcp.services.s.loadBalancer.servers]]
address = "nope"
"#,
        );
        assert_eq!(l4.routers["pass@file"].mode, TcpMode::Passthrough);
        assert_eq!(l4.routers["term@file"].mode, TcpMode::Terminate);
        assert_eq!(
            l4.routers["term@file"].tls.as_ref().unwrap().options.as_deref(),
            Some("modern@file")
        );
        assert_eq!(l4.routers["plain@file"].using, ["web"]);
        assert_eq!(l4.routers["plain@file"].status, Status::Enabled);
        assert_eq!(l4.routers["bad@file"].status, Status::Disabled);
        assert!(l4.routers["bad@file"].errors[0].contains("may only use HostSNI(`*`)"));
        assert!(l4.routers["nosvc@file"].errors[0].contains("`missing@file` does not exist"));
        let s = &l4.services["s@file"];
        assert_eq!(s.status, Status::Warning);
        assert_eq!(s.servers.len(), 1);
        assert!(s.errors[0].contains("servers[1].address: `nope` has no port"), "{:?}", s.errors);
        assert_eq!(s.used_by.len(), 4);
    }

    #[test]
    fn transports_and_udp_are_checked() {
        let l4 = merged(
            r#"
[tcp.serversTransports.pp]
proxyProtocol = { version = 3 }
[tcp.services.s.loadBalancer]
serversTransport = "pp"
servers = [{ address = "127.0.0.1:1" }]
[tcp.services.t.loadBalancer]
serversTransport = "gone"
[udp.routers.dns]
entryPoints = ["dns"]
service = "bind"
[udp.services.bind.loadBalancer]
servers = [{ address = "127.0.0.1:53" }, { address = "[::1]:53", weight = 2 }]
"#,
        );
        assert_eq!(l4.servers_transports["pp@file"].status, Status::Disabled);
        assert_eq!(l4.services["s@file"].status, Status::Disabled);
        assert!(l4.services["t@file"]
            .errors
            .iter()
            .any(|e| e.contains("`gone@file` does not exist")));
        assert_eq!(l4.udp_routers["dns@file"].status, Status::Enabled);
        assert_eq!(
            l4.udp_services["bind@file"].servers,
            [("127.0.0.1:53".into(), 1), ("[::1]:53".into(), 2)]
        );
    }

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert!(check_address("db:5432").is_ok());
        assert!(check_address("[::1]:53").is_ok());
        assert!(check_address("::1:53").is_err());
        assert!(check_address(":53").is_err());
        assert!(check_address("db:0").is_err());
        assert!(check_address("db").is_err());
    }
}
