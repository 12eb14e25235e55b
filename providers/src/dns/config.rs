//! `[providers.dns]`: which names to watch, where to ask, how fresh to keep the answers.
//!
//! ```toml
//! [providers.dns]
//! nameservers = ["10.0.0.2:53"]          # default: the system resolver (/etc/resolv.conf)
//! minTtl = "1s"                          # TTLs are clamped to [minTtl, maxTtl]
//! maxTtl = "300s"
//! timeout = "2s"                         # one query attempt
//!
//! [[providers.dns.services]]
//! name = "web"                           # -> service (and router) `web@dns`
//! srv = "_http._tcp.web.example."
//! rule = "Host(`web.example`)"           # optional router
//! entryPoints = ["web"]
//!
//! [[providers.dns.services]]
//! name = "tasks"
//! a = "tasks.web"                        # A and AAAA records of the name ...
//! port = 8080                            # ... with this port
//! ```
//!
//! Everything that can be checked before the first query is checked by [`DnsConfig::validate`],
//! so a typo stops drover at start with the key that is wrong instead of surfacing as an empty
//! service at run time.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::proto::rr::Name;
use serde::Deserialize;

use crate::duration::ConfigDuration;

/// The DNS provider's static configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsConfig {
    /// Nameservers to ask (`10.0.0.2`, `10.0.0.2:5353`, `[fd00::2]:53`); empty means the system
    /// resolver's (`/etc/resolv.conf`, with its search domains).
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Shortest time an answer is trusted: a TTL below it (Consul's 0) counts as this. Default 1 s.
    #[serde(default = "defaults::min_ttl", alias = "minttl")]
    pub min_ttl: ConfigDuration,
    /// Longest time an answer is trusted: a TTL above it counts as this. Default 300 s. Docker's
    /// embedded DNS answers `tasks.<service>` with TTL 600 s whatever changes; set a few seconds
    /// there, or a task that is gone stays a server until the next query.
    #[serde(default = "defaults::max_ttl", alias = "maxttl")]
    pub max_ttl: ConfigDuration,
    /// How long one query attempt may take before it is retried (twice) or counted as failed.
    /// Default 2 s.
    #[serde(default = "defaults::timeout")]
    pub timeout: ConfigDuration,
    /// The services to discover.
    #[serde(default)]
    pub services: Vec<DnsService>,
}

/// One discovered service: `srv = "<name>"`, or `a = "<name>"` with `port`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsService {
    /// Service name; it appears as `<name>@dns` (and so does its router, if any).
    pub name: String,
    /// An RFC 2782 SRV name, e.g. `_http._tcp.web.example.`.
    #[serde(default)]
    pub srv: Option<String>,
    /// A host name whose A and AAAA records are the servers (Docker's `tasks.<service>`).
    #[serde(default)]
    pub a: Option<String>,
    /// The servers' port with `a`; SRV records carry their own.
    #[serde(default)]
    pub port: Option<u16>,
    /// Scheme spoken to the servers; only `http` (the default) exists so far.
    #[serde(default)]
    pub scheme: Option<String>,
    /// A router rule (Traefik v3 syntax); without it the service is only usable from other
    /// providers' routers (`service = "<name>@dns"`).
    #[serde(default)]
    pub rule: Option<String>,
    /// The router's entrypoints; empty means all.
    #[serde(default, alias = "entrypoints")]
    pub entry_points: Vec<String>,
    /// The router's middlewares, in order.
    #[serde(default)]
    pub middlewares: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            min_ttl: defaults::min_ttl(),
            max_ttl: defaults::max_ttl(),
            timeout: defaults::timeout(),
            services: Vec::new(),
        }
    }
}

mod defaults {
    use super::*;

    pub fn min_ttl() -> ConfigDuration {
        Duration::from_secs(1).into()
    }
    pub fn max_ttl() -> ConfigDuration {
        Duration::from_secs(300).into()
    }
    pub fn timeout() -> ConfigDuration {
        Duration::from_secs(2).into()
    }
}

/// What a service looks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// SRV records of this name; ports, priorities and weights come from the records.
    Srv(String),
    /// A and AAAA records of this name, all with `port`.
    Address {
        /// The host name as configured.
        name: String,
        /// The servers' port.
        port: u16,
    },
}

impl Lookup {
    /// `SRV _http._tcp.web.example.` / `A+AAAA tasks.web`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Lookup::Srv(name) => format!("SRV {name}"),
            Lookup::Address { name, .. } => format!("A/AAAA {name}"),
        }
    }
}

/// A service after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Local name (`web`).
    pub name: String,
    /// What to look up.
    pub lookup: Lookup,
    /// `http`.
    pub scheme: String,
    /// The router, if one was configured: rule, entrypoints, middlewares.
    pub router: Option<(String, Vec<String>, Vec<String>)>,
}

/// A configuration ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// Nameservers; empty means the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// TTL clamp, lower bound.
    pub min_ttl: Duration,
    /// TTL clamp, upper bound.
    pub max_ttl: Duration,
    /// One query attempt.
    pub timeout: Duration,
    /// The services, in configuration order.
    pub services: Vec<ServiceSpec>,
}

impl DnsConfig {
    /// Checks everything that can be checked without asking DNS; the error names the key
    /// (`providers.dns.services[1].port`) and what is wrong with it.
    pub fn validate(&self) -> Result<Validated, String> {
        let nameservers = self
            .nameservers
            .iter()
            .enumerate()
            .map(|(i, text)| parse_nameserver(text).map_err(|why| format!("providers.dns.nameservers[{i}]: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        let (min_ttl, max_ttl, timeout) = (self.min_ttl.0, self.max_ttl.0, self.timeout.0);
        if min_ttl.is_zero() {
            return Err("providers.dns.minTtl must be more than 0 (a TTL of 0 would re-query without pause)".into());
        }
        if max_ttl < min_ttl {
            return Err(format!(
                "providers.dns.maxTtl ({}) is shorter than minTtl ({})",
                humantime::format_duration(max_ttl),
                humantime::format_duration(min_ttl)
            ));
        }
        if timeout.is_zero() {
            return Err("providers.dns.timeout must be more than 0".into());
        }
        if self.services.is_empty() {
            return Err("providers.dns has no services: add [[providers.dns.services]] with a name and `srv` (or `a` and `port`)".into());
        }
        let mut names = BTreeSet::new();
        let mut services = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |key: &str, why: String| {
                let key = if key.is_empty() { String::new() } else { format!(".{key}") };
                if s.name.is_empty() {
                    format!("providers.dns.services[{i}]{key}: {why}")
                } else {
                    format!("providers.dns.services[{i}]{key} (`{}`): {why}", s.name)
                }
            };
            if s.name.is_empty() {
                return Err(at("name", "missing".into()));
            }
            if !s.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(at("name", "use letters, digits, `-` and `_` only".into()));
            }
            if !names.insert(s.name.as_str()) {
                return Err(at("name", "another service has this name".into()));
            }
            let lookup = match (&s.srv, &s.a) {
                (Some(srv), None) => {
                    if s.port.is_some() {
                        return Err(at("port", "not used with `srv`: the SRV records carry the ports".into()));
                    }
                    check_name(srv).map_err(|why| at("srv", why))?;
                    Lookup::Srv(srv.clone())
                }
                (None, Some(a)) => {
                    check_name(a).map_err(|why| at("a", why))?;
                    let port = match s.port {
                        Some(p) if p != 0 => p,
                        Some(_) => return Err(at("port", "must be from 1 to 65535".into())),
                        None => return Err(at("port", "missing: `a` records carry no port".into())),
                    };
                    Lookup::Address { name: a.clone(), port }
                }
                (Some(_), Some(_)) => return Err(at("", "set either `srv` or `a`, not both".into())),
                (None, None) => return Err(at("", "set `srv = \"_http._tcp.<name>.\"` or `a = \"<host>\"` with `port`".into())),
            };
            let scheme = s.scheme.clone().unwrap_or_else(|| "http".into());
            if scheme != "http" {
                return Err(at(
                    "scheme",
                    format!("`{scheme}` is not supported: drover speaks only plain `http` to servers so far"),
                ));
            }
            let router = match &s.rule {
                Some(rule) => {
                    crate::rule::parse(rule).map_err(|e| at("rule", e.to_string()))?;
                    Some((rule.clone(), s.entry_points.clone(), s.middlewares.clone()))
                }
                None if !s.entry_points.is_empty() || !s.middlewares.is_empty() => {
                    return Err(at(
                        "rule",
                        "missing: entryPoints/middlewares describe a router, and a router needs a rule".into(),
                    ))
                }
                None => None,
            };
            services.push(ServiceSpec {
                name: s.name.clone(),
                lookup,
                scheme,
                router,
            });
        }
        Ok(Validated {
            nameservers,
            min_ttl,
            max_ttl,
            timeout,
            services,
        })
    }
}

/// `10.0.0.2`, `10.0.0.2:5353`, `fd00::2`, `[fd00::2]:5353`; port 53 when none is given.
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("`{text}`: the port must be from 1 to 65535"));
        }
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "`{text}` is not an address: write `10.0.0.2`, `10.0.0.2:5353` or `[fd00::2]:5353` (an IP, not a host name)"
    ))
}

fn check_name(text: &str) -> Result<(), String> {
    match Name::from_ascii(text) {
        Ok(name) if name.is_root() => Err("the root name `.` cannot be looked up".into()),
        Ok(name) if name.num_labels() == 0 => Err("empty name".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("`{text}` is not a DNS name: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Validated, String> {
        let config: DnsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()
    }

    #[test]
    fn defaults_and_both_kinds_of_service() {
        let v = parse(
            "nameservers = [\"127.0.0.1:5353\", \"10.0.0.2\", \"[::1]:53\"]\n\
             [[services]]\nname = \"web\"\nsrv = \"_http._tcp.web.example.\"\nrule = \"Host(`web`)\"\nentryPoints = [\"web\"]\n\
             [[services]]\nname = \"tasks\"\na = \"tasks.web\"\nport = 8080\n",
        )
        .unwrap();
        assert_eq!(v.min_ttl, Duration::from_secs(1));
        assert_eq!(v.max_ttl, Duration::from_secs(300));
        assert_eq!(v.nameservers[1], "10.0.0.2:53".parse().unwrap());
        assert_eq!(v.services[0].lookup, Lookup::Srv("_http._tcp.web.example.".into()));
        assert_eq!(v.services[0].router, Some(("Host(`web`)".into(), vec!["web".into()], vec![])));
        assert_eq!(
            v.services[1].lookup,
            Lookup::Address {
                name: "tasks.web".into(),
                port: 8080
            }
        );
        assert_eq!(v.services[1].scheme, "http");
    }

    #[test]
    fn mistakes_name_the_key() {
        for (text, expected) in [
            ("[[services]]\nname = \"w\"\n", "services[0] (`w`): set `srv"),
            ("[[services]]\nname = \"w\"\na = \"x\"\n", "services[0].port (`w`): missing"),
            (
                "[[services]]\nname = \"w\"\nsrv = \"_a._tcp.x.\"\nport = 1\n",
                "services[0].port (`w`): not used",
            ),
            ("[[services]]\nname = \"w\"\nsrv = \"_a._tcp.x.\"\na = \"x\"\n", "not both"),
            ("[[services]]\nname = \"w@x\"\nsrv = \"_a._tcp.x.\"\n", "services[0].name"),
            (
                "[[services]]\nname = \"w\"\nsrv = \"_a._tcp.x.\"\n[[services]]\nname = \"w\"\nsrv = \"_b._tcp.x.\"\n",
                "services[1].name (`w`): another service",
            ),
            (
                "[[services]]\nname = \"w\"\nsrv = \"_a._tcp.x.\"\nscheme = \"https\"\n",
                "services[0].scheme",
            ),
            (
                "[[services]]\nname = \"w\"\nsrv = \"_a._tcp.x.\"\nrule = \"Host(`x`) &&\"\n",
                "services[0].rule (`w`): column",
            ),
            (
                "[[services]]\nname = \"w\"\nsrv = \"_a._tcp.x.\"\nentryPoints = [\"web\"]\n",
                "services[0].rule (`w`): missing",
            ),
            (
                "[[services]]\nname = \"w\"\nsrv = \"a..b\"\n",
                "services[0].srv (`w`): `a..b` is not a DNS name",
            ),
            ("[[services]]\nname = \"w\"\nsrv = \".\"\n", "root name"),
            (
                "nameservers = [\"dns.example\"]\n[[services]]\nname = \"w\"\nsrv = \"x.\"\n",
                "nameservers[0]: `dns.example`",
            ),
            (
                "minTtl = 0\n[[services]]\nname = \"w\"\nsrv = \"x.\"\n",
                "minTtl must be more than 0",
            ),
            (
                "minTtl = \"10s\"\nmaxTtl = \"5s\"\n[[services]]\nname = \"w\"\nsrv = \"x.\"\n",
                "maxTtl (5s) is shorter",
            ),
            ("", "has no services"),
            ("[[services]]\nname = \"w\"\nsrvv = \"x.\"\n", "unknown field `srvv`"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
