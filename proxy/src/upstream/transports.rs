//! Servers transports: the static `[serversTransport]`, and each dynamic
//! `[http.serversTransports.<name>]` laid over it (a key the dynamic one leaves unset keeps the
//! static value).
//!
//! Resolving reads the transport's files (CA bundles, client certificates) when a snapshot is
//! compiled, so a transport that cannot be built is known before any request needs it: it is
//! disabled with an error naming the key and the file, and so are the services that use it (and
//! their routers), since sending their traffic through another transport could skip the
//! verification or the client certificate it asks for. Everything else keeps serving.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use drover_providers::model::{ClientCertificate, ServersTransport};
use drover_providers::runtime::{RuntimeConfig, Status};

use super::tls::{self, TlsSettings};
use super::{Http2, Limits, Transport};
use crate::config;

/// The static transport's TLS keys, which dynamic transports inherit.
#[derive(Clone, Debug, Default)]
pub struct TlsDefaults {
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
    /// `rootCAs`.
    pub root_cas: Vec<String>,
    /// `certificates`.
    pub certificates: Vec<ClientCertificate>,
}

/// The static `[serversTransport]` for `workers` workers, with the TLS keys dynamic transports
/// inherit; an error names the key and the file.
pub fn from_static(st: &config::ServersTransport, workers: usize) -> Result<(Transport, TlsDefaults), String> {
    let timeouts = &st.forwarding_timeouts;
    let defaults = TlsDefaults {
        insecure_skip_verify: st.insecure_skip_verify,
        root_cas: st.root_cas.clone(),
        certificates: st.certificates.clone(),
    };
    let mut hasher = DefaultHasher::new();
    let tls = if st.insecure_skip_verify || !st.root_cas.is_empty() || !st.certificates.is_empty() {
        let settings = TlsSettings {
            insecure_skip_verify: st.insecure_skip_verify,
            root_cas: &st.root_cas,
            certificates: &st.certificates,
            ..TlsSettings::default()
        };
        let built = tls::build(&settings, "serversTransport")?;
        for warning in &built.warnings {
            tracing::warn!("{warning}");
        }
        built.files.hash(&mut hasher);
        Some(Arc::new(built.client))
    } else {
        None
    };
    let transport = Transport {
        dial_timeout: timeouts.dial_timeout.0,
        idle_timeout: timeouts.idle_conn_timeout.0,
        max_idle: st.max_idle_conns_per_host,
        workers,
        name: None,
        tls,
        http2: Http2 {
            enabled: !st.disable_http2,
            read_idle_timeout: Some(timeouts.read_idle_timeout.0).filter(|d| !d.is_zero()),
            ping_timeout: timeouts.ping_timeout.0,
        },
        response_header_timeout: None,
        limits: Limits {
            max_conns: st.max_conns_per_host,
            queue_timeout: st.queue_timeout.0,
            max_queued: st.max_queued,
        },
        fingerprint: hasher.finish(),
    };
    Ok((transport, defaults))
}

/// `transport` (named `name`, `name@provider`) laid over `base`, or why it cannot be used; the
/// warnings name what is accepted but not in force.
pub fn resolve(
    name: &str,
    transport: &ServersTransport,
    base: &Transport,
    defaults: &TlsDefaults,
) -> Result<(Transport, Vec<String>), String> {
    let local = name.split('@').next().unwrap_or(name);
    let key = format!("http.serversTransports.{local}");
    if transport.peer_cert_uri.is_some() {
        return Err(format!(
            "{key}.peerCertURI is not supported by drover; the transport is refused rather than used without the check"
        ));
    }
    if transport.spiffe.is_some() {
        return Err(format!("{key}.spiffe is not supported by drover; the transport is refused"));
    }
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    // The limits are put in force on the servers' limiters: changing them alone keeps the
    // upstreams and their pooled connections.
    let connections = ServersTransport {
        max_conns_per_host: None,
        queue_timeout: None,
        max_queued: None,
        ..transport.clone()
    };
    format!("{connections:?}").hash(&mut hasher);
    base.fingerprint.hash(&mut hasher);
    let sets_tls = transport.server_name.is_some()
        || transport.insecure_skip_verify.is_some()
        || transport.root_cas.is_some()
        || transport.certificates.is_some()
        || transport.cipher_suites.is_some()
        || transport.min_version.is_some()
        || transport.max_version.is_some();
    let mut warnings = Vec::new();
    let tls = if sets_tls {
        let settings = TlsSettings {
            server_name: transport.server_name.as_deref(),
            insecure_skip_verify: transport.insecure_skip_verify.unwrap_or(defaults.insecure_skip_verify),
            root_cas: transport.root_cas.as_deref().unwrap_or(&defaults.root_cas),
            certificates: transport.certificates.as_deref().unwrap_or(&defaults.certificates),
            cipher_suites: transport.cipher_suites.as_deref(),
            min_version: transport.min_version.as_deref(),
            max_version: transport.max_version.as_deref(),
            ..TlsSettings::default()
        };
        let built = tls::build(&settings, &key)?;
        built.files.hash(&mut hasher);
        warnings = built.warnings;
        Some(Arc::new(built.client))
    } else {
        base.tls.clone()
    };
    let timeouts = transport.forwarding_timeouts.unwrap_or_default();
    let nonzero = |d: Duration| Some(d).filter(|d| !d.is_zero());
    let max_idle = match transport.max_idle_conns_per_host {
        Some(n) if n < 0 => 0,
        Some(0) | None => base.max_idle,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let resolved = Transport {
        dial_timeout: timeouts.dial_timeout.map_or(base.dial_timeout, |d| d.0),
        idle_timeout: timeouts.idle_conn_timeout.map_or(base.idle_timeout, |d| d.0),
        max_idle,
        workers: base.workers,
        name: Some(name.into()),
        tls,
        http2: Http2 {
            enabled: !transport.disable_http2.unwrap_or(!base.http2.enabled),
            read_idle_timeout: timeouts.read_idle_timeout.map_or(base.http2.read_idle_timeout, |d| nonzero(d.0)),
            ping_timeout: timeouts.ping_timeout.map_or(base.http2.ping_timeout, |d| d.0),
        },
        response_header_timeout: timeouts.response_header_timeout.map(|d| nonzero(d.0)),
        limits: Limits {
            max_conns: transport.max_conns_per_host.map_or(base.limits.max_conns, |n| n as usize),
            queue_timeout: transport.queue_timeout.map_or(base.limits.queue_timeout, |d| d.0),
            max_queued: transport.max_queued.map_or(base.limits.max_queued, |n| n as usize),
        },
        fingerprint: hasher.finish(),
    };
    Ok((resolved, warnings))
}

/// Resolves every servers transport of `config` over `base`. One that cannot be built is
/// disabled in `config`, with the services that use it and their routers; `config` is copied
/// only when something is written to it.
pub fn resolve_all(config: &mut Arc<RuntimeConfig>, base: &Transport, defaults: &TlsDefaults) -> HashMap<String, Arc<Transport>> {
    let mut resolved = HashMap::new();
    let mut verdicts = Vec::new();
    for (name, info) in &config.servers_transports {
        match resolve(name, &info.transport, base, defaults) {
            Ok((transport, warnings)) => {
                resolved.insert(name.clone(), Arc::new(transport));
                if !warnings.is_empty() {
                    verdicts.push((name.clone(), Ok(warnings)));
                }
            }
            Err(why) => verdicts.push((name.clone(), Err(why))),
        }
    }
    if verdicts.is_empty() {
        return resolved;
    }
    let config = Arc::make_mut(config);
    for (name, verdict) in verdicts {
        match verdict {
            Ok(warnings) => {
                if let Some(info) = config.servers_transports.get_mut(&name) {
                    for warning in warnings {
                        tracing::warn!(transport = %name, "{warning}");
                        if info.status == Status::Enabled {
                            info.status = Status::Warning;
                        }
                        info.errors.push(warning);
                    }
                }
            }
            Err(why) => disable(config, &name, why),
        }
    }
    resolved
}

/// Disables transport `name` for `why`, and the services that use it and their routers.
fn disable(config: &mut RuntimeConfig, name: &str, why: String) {
    let Some(info) = config.servers_transports.get_mut(name) else {
        return;
    };
    tracing::warn!(transport = %name, services = %info.used_by.join(", "), "servers transport disabled: {why}");
    info.status = Status::Disabled;
    info.errors.push(why.clone());
    for service in info.used_by.clone() {
        let Some(s) = config.services.get_mut(&service) else { continue };
        s.status = Status::Disabled;
        s.errors.push(format!("the servers transport `{name}` is disabled: {why}"));
        for router in s.used_by.clone() {
            if let Some(r) = config.routers.get_mut(&router) {
                if r.status != Status::Disabled {
                    let r = Arc::make_mut(r);
                    r.status = Status::Disabled;
                    r.errors.push(format!("the service `{service}` is disabled"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use drover_providers::model::TransportTimeouts;

    use super::*;
    use crate::config::StaticConfig;

    fn static_transport(extra: &str) -> config::ServersTransport {
        let text = format!("[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[serversTransport]\n{extra}");
        StaticConfig::parse(Path::new("s.toml"), &text)
            .expect("static config")
            .config
            .servers_transport
    }

    #[test]
    fn an_unreadable_static_ca_is_an_error_naming_key_and_file() {
        let st = static_transport("rootCAs = [\"/nonexistent/ca.pem\"]\n");
        let err = from_static(&st, 1).unwrap_err();
        assert!(
            err.contains("serversTransport.rootCAs[0]") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn what_a_dynamic_transport_leaves_unset_comes_from_the_static_one() {
        let st = static_transport("insecureSkipVerify = true\ndisableHTTP2 = true\nmaxIdleConnsPerHost = 9\nmaxConnsPerHost = 50\nqueueTimeout = \"4s\"\n[serversTransport.forwardingTimeouts]\nidleConnTimeout = \"7s\"\n");
        let (base, defaults) = from_static(&st, 2).expect("static transport");
        assert!(base.tls.is_some() && !base.http2.enabled);
        let dynamic = ServersTransport {
            forwarding_timeouts: Some(TransportTimeouts {
                dial_timeout: Some(Duration::from_secs(3).into()),
                response_header_timeout: Some(Duration::ZERO.into()),
                ..TransportTimeouts::default()
            }),
            ..ServersTransport::default()
        };
        let (t, warnings) = resolve("t@file", &dynamic, &base, &defaults).expect("resolves");
        assert!(warnings.is_empty());
        assert_eq!(
            (t.dial_timeout, t.idle_timeout, t.max_idle),
            (Duration::from_secs(3), Duration::from_secs(7), 9)
        );
        assert_eq!(
            t.response_header_timeout,
            Some(None),
            "0 turns the static deadline off for this transport"
        );
        assert!(!t.http2.enabled);
        assert_eq!(
            t.limits,
            Limits {
                max_conns: 50,
                queue_timeout: Duration::from_secs(4),
                max_queued: 10_000
            },
            "the static limits, maxQueued at its default"
        );
        let (Some(ours), Some(static_tls)) = (&t.tls, &base.tls) else {
            panic!("TLS clients")
        };
        assert!(
            Arc::ptr_eq(ours, static_tls),
            "no TLS key set: the static client, insecureSkipVerify included"
        );

        let negative = ServersTransport {
            max_idle_conns_per_host: Some(-1),
            disable_http2: Some(false),
            max_conns_per_host: Some(0),
            ..ServersTransport::default()
        };
        let (t, _) = resolve("n@file", &negative, &base, &defaults).expect("resolves");
        assert_eq!(t.max_idle, 0, "negative: no connection is kept");
        assert!(t.http2.enabled);
        assert_eq!(t.limits.max_conns, 0, "0: no limit");

        let limited = ServersTransport {
            max_conns_per_host: Some(8),
            ..negative.clone()
        };
        let (l, _) = resolve("n@file", &limited, &base, &defaults).expect("resolves");
        assert_eq!(
            l.fingerprint, t.fingerprint,
            "a change of limits alone keeps the upstreams (and their connections)"
        );
    }

    #[test]
    fn a_transport_asking_for_checks_drover_lacks_is_refused() {
        let (base, defaults) = from_static(&static_transport(""), 1).expect("static transport");
        let pinned = ServersTransport {
            peer_cert_uri: Some("spiffe://example/backend".into()),
            ..ServersTransport::default()
        };
        let err = resolve("p@docker", &pinned, &base, &defaults).unwrap_err();
        assert!(err.starts_with("http.serversTransports.p.peerCertURI"), "{err}");
    }
}
