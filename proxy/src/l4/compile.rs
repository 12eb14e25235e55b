//! Compiling the TCP and UDP parts of a runtime configuration into [`super::TcpTables`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use drover_providers::aggregate::{disable_in, warn_in};
use drover_providers::runtime::{RuntimeConfig, Status};
use drover_providers::tcp::TcpMode;

use super::serve::L4StatsRegistry;
use super::{TcpNode, TcpRoute, TcpServer, TcpService, TcpTable, TcpTables, TcpTransport, UdpService};
use crate::balance::SmoothWeighted;
use crate::health::HealthRegistry;
use crate::tls::TlsSnapshot;

/// The passive-health key of a TCP service (HTTP and TCP services may share a name).
fn health_key(service: &str) -> String {
    format!("tcp/{service}")
}

/// Builds every TCP and UDP table. Routers whose TLS options are missing are disabled here
/// (with the reason in `config`), as for HTTP.
pub fn compile(
    config: &mut RuntimeConfig,
    entry_points: &[String],
    udp_entry_points: &[String],
    tls: &TlsSnapshot,
    health: &HealthRegistry,
    (stats, udp_stats): (&L4StatsRegistry, &L4StatsRegistry),
) -> TcpTables {
    let transports = transports(config);
    let mut services: HashMap<String, Arc<TcpService>> = HashMap::new();
    for (name, info) in &config.l4.services {
        if info.status == Status::Disabled {
            continue;
        }
        let transport = match &info.servers_transport {
            Some(t) => match transports.get(t) {
                Some(Some(t)) => t.clone(),
                _ => continue,
            },
            None => TcpTransport::default(),
        };
        let policy = drover_providers::policy::PassivePolicy::default();
        let servers: Box<[TcpServer]> = info
            .servers
            .iter()
            .map(|s| TcpServer {
                address: s.address.as_str().into(),
                tls: s.tls,
                weight: s.weight,
                health: health.server(&health_key(name), &s.address, &s.address, policy.base_ejection_time),
            })
            .collect();
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        services.insert(
            name.clone(),
            Arc::new(TcpService {
                name: name.as_str().into(),
                balancer: SmoothWeighted::new(&weights),
                servers,
                policy,
                transport,
                check: info.check.clone(),
            }),
        );
    }
    // TLS configurations for terminating routers: their options without ALPN (the bytes after
    // the handshake are not HTTP), one per options set.
    let mut configs: HashMap<String, Option<Arc<rustls::ServerConfig>>> = HashMap::new();
    let mut tables: Vec<TcpTable> = entry_points.iter().map(|_| TcpTable::default()).collect();
    let mut routes: Vec<(i64, String, Arc<TcpRoute>, Vec<String>)> = Vec::new();
    for (name, info) in config.l4.routers.iter_mut() {
        if info.status == Status::Disabled {
            continue;
        }
        let (Some(rule), Some(service)) = (&info.parsed, services.get(&info.service)) else {
            continue;
        };
        let rule = match TcpNode::compile(rule) {
            Ok(rule) => rule,
            Err(e) => {
                disable_in(&mut info.status, &mut info.errors, format!("tcp.routers rule: {e}"));
                continue;
            }
        };
        let tls_config = if info.mode == TcpMode::Terminate {
            let options = info
                .tls
                .as_ref()
                .and_then(|t| t.options.clone())
                .unwrap_or_else(|| "default".into());
            let built = configs
                .entry(options.clone())
                .or_insert_with(|| {
                    tls.by_name.get(options.as_str()).map(|o| {
                        let mut c = (*o.config).clone();
                        c.alpn_protocols.clear();
                        Arc::new(c)
                    })
                })
                .clone();
            match built {
                Some(c) => Some(c),
                None => {
                    disable_in(
                        &mut info.status,
                        &mut info.errors,
                        format!("the TLS options `{options}` do not exist or are invalid"),
                    );
                    continue;
                }
            }
        } else {
            None
        };
        let route = Arc::new(TcpRoute {
            router: name.as_str().into(),
            rule,
            mode: info.mode,
            service: service.clone(),
            tls: tls_config,
            stats: stats.router(name),
        });
        let unusable: Vec<String> = info.using.iter().filter(|ep| !entry_points.contains(ep)).cloned().collect();
        for ep in unusable {
            warn_in(
                &mut info.status,
                &mut info.errors,
                format!("entrypoint `{ep}` is a UDP entrypoint; a TCP router is not served there"),
            );
        }
        routes.push((info.priority, name.clone(), route, info.using.clone()));
    }
    routes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, _, route, using) in routes {
        for (i, ep) in entry_points.iter().enumerate() {
            if !using.contains(ep) {
                continue;
            }
            if route.mode == TcpMode::Plain {
                tables[i].plain.push(route.clone());
            } else {
                tables[i].tls.push(route.clone());
            }
        }
    }
    let mut udp: Vec<Option<Arc<UdpService>>> = udp_entry_points.iter().map(|_| None).collect();
    for (name, info) in config.l4.udp_routers.iter_mut() {
        if info.status == Status::Disabled {
            continue;
        }
        let Some(service) = config.l4.udp_services.get(&info.service).filter(|s| s.status != Status::Disabled) else {
            continue;
        };
        let targets: Vec<&String> = if info.entry_points.is_empty() {
            udp_entry_points.iter().collect()
        } else {
            info.entry_points.iter().collect()
        };
        let mut served = false;
        for ep in targets {
            match udp_entry_points.iter().position(|u| u == ep) {
                Some(i) if udp[i].is_none() => {
                    let weights: Vec<u32> = service.servers.iter().map(|(_, w)| *w).collect();
                    udp[i] = Some(Arc::new(UdpService {
                        name: service.name.as_str().into(),
                        servers: service.servers.iter().map(|(a, _)| a.as_str().into()).collect(),
                        balancer: SmoothWeighted::new(&weights),
                        stats: udp_stats.router(name),
                    }));
                    served = true;
                }
                Some(_) => warn_in(
                    &mut info.status,
                    &mut info.errors,
                    format!("UDP entrypoint `{ep}` is taken by another UDP router (one router per UDP entrypoint)"),
                ),
                None => warn_in(
                    &mut info.status,
                    &mut info.errors,
                    format!("`{ep}` is not a UDP entrypoint (write its address as \":53/udp\")"),
                ),
            }
        }
        if !served {
            disable_in(
                &mut info.status,
                &mut info.errors,
                format!("UDP router `{name}` is served on no UDP entrypoint"),
            );
        }
    }
    let mut services: Vec<Arc<TcpService>> = services.into_values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    TcpTables {
        entry_points: tables,
        udp,
        services,
    }
}

/// Every TCP servers transport, built (`None`: refused; its services stay off).
fn transports(config: &mut RuntimeConfig) -> HashMap<String, Option<TcpTransport>> {
    let mut out = HashMap::new();
    for (name, info) in config.l4.servers_transports.iter_mut() {
        if info.status == Status::Disabled {
            out.insert(name.clone(), None);
            continue;
        }
        let t = &info.transport;
        let duration = |d: Option<drover_providers::duration::ConfigDuration>, default: Duration| d.map_or(default, |d| d.0);
        let defaults = TcpTransport::default();
        let mut built = TcpTransport {
            dial_timeout: duration(t.dial_timeout, defaults.dial_timeout),
            keep_alive: Some(duration(t.dial_keep_alive, Duration::from_secs(15))).filter(|d| !d.is_zero()),
            termination_delay: Some(duration(t.termination_delay, Duration::from_millis(100))),
            proxy_protocol: t.proxy_protocol.map(|p| p.version.unwrap_or(2)),
            tls: None,
        };
        if let Some(tls) = &t.tls {
            let settings = crate::upstream::tls::TlsSettings {
                server_name: tls.server_name.as_deref(),
                insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
                root_cas: tls.root_cas.as_deref().unwrap_or_default(),
                certificates: tls.certificates.as_deref().unwrap_or_default(),
                ..Default::default()
            };
            match crate::upstream::tls::build(&settings, &format!("tcp.serversTransports.{name}.tls")) {
                Ok(b) => built.tls = Some(Arc::new(b.client)),
                Err(e) => {
                    disable_in(&mut info.status, &mut info.errors, e);
                    out.insert(name.clone(), None);
                    continue;
                }
            }
        }
        out.insert(name.clone(), Some(built));
    }
    // Services whose transport was refused here say so.
    let refused: Vec<String> = out.iter().filter(|(_, t)| t.is_none()).map(|(n, _)| n.clone()).collect();
    for service in config.l4.services.values_mut() {
        if service.servers_transport.as_ref().is_some_and(|t| refused.contains(t)) && service.status != Status::Disabled {
            let t = service.servers_transport.clone().unwrap_or_default();
            disable_in(
                &mut service.status,
                &mut service.errors,
                format!("the TCP servers transport `{t}` is refused"),
            );
        }
    }
    out
}
