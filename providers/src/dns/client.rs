//! Asking DNS: SRV and address lookups, with every outcome sorted into one of three kinds.
//!
//! The provider's whole freshness policy rests on telling apart an *authoritative empty* answer
//! from a *failure*: NXDOMAIN and NODATA mean "there is nothing here" and empty the service,
//! while SERVFAIL, REFUSED, a timeout or a refused connection say nothing about the service and
//! must keep the last good servers. [`LookupFailure`] carries that distinction; nothing above
//! this module looks at hickory's error types.
//!
//! Three hickory-resolver 0.26 habits are worked around here:
//! * its response cache would answer a re-query that comes at our TTL cap (Docker's 600 s TTL
//!   capped to 300 s) from memory, so the cache entry is dropped before every query: timing is
//!   the provider's job, and every query it makes must reach the nameserver;
//! * `srv_lookup` does not resolve targets; the Additional section is returned as glue and the
//!   caller asks for the rest ([`Dns::addresses`]);
//! * a NOERROR answer with no records and only an NS referral is reported as "no records"; from
//!   a nameserver that should know the name it is a misconfiguration, not an empty service.
//!
//! Names are handed around as lowercase strings with the trailing dot of the wire form, so the
//! mapping code and its tests need no hickory type.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SrvRecord {
    /// Lower is preferred.
    pub priority: u16,
    /// Share among the records of the same priority.
    pub weight: u16,
    /// The servers' port.
    pub port: u16,
    /// Lowercase, with the trailing dot; `.` means "not available".
    pub target: String,
    /// Seconds.
    pub ttl: u32,
}

/// One address record (A or AAAA).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressRecord {
    /// Owner name, lowercase, with the trailing dot.
    pub name: String,
    /// The address.
    pub ip: IpAddr,
    /// Seconds.
    pub ttl: u32,
}

/// A successful SRV lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SrvAnswer {
    /// The SRV records of the answer section.
    pub records: Vec<SrvRecord>,
    /// A and AAAA records of the Additional section.
    pub glue: Vec<AddressRecord>,
}

/// Why a lookup produced no records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupFailure {
    /// NXDOMAIN (`nx_domain`) or NODATA: the nameserver says there is nothing, which empties
    /// the service until the next query.
    NoRecords {
        /// NXDOMAIN rather than NODATA.
        nx_domain: bool,
        /// Negative-caching TTL from the SOA, when the answer carried one (seconds).
        negative_ttl: Option<u32>,
    },
    /// SERVFAIL, REFUSED, a timeout, an I/O error, a referral: says nothing about the service;
    /// the last good answer stays in force.
    Transient(String),
}

impl LookupFailure {
    /// `NXDOMAIN`, `NODATA` or the transient reason, for messages.
    pub fn describe(&self) -> String {
        match self {
            LookupFailure::NoRecords { nx_domain: true, .. } => "NXDOMAIN (the name does not exist)".into(),
            LookupFailure::NoRecords { nx_domain: false, .. } => "NODATA (the name has no such records)".into(),
            LookupFailure::Transient(why) => why.clone(),
        }
    }
}

/// The lookups the provider needs; [`DnsClient`] asks real nameservers, tests script answers.
pub trait Dns: Send + Sync + 'static {
    /// SRV records of `name`, with the Additional section's addresses.
    fn srv(&self, name: &str) -> impl Future<Output = Result<SrvAnswer, LookupFailure>> + Send;
    /// A and AAAA records of `name` (both asked in parallel). One family failing while the
    /// other answers still yields the answering family's addresses.
    fn addresses(&self, name: &str) -> impl Future<Output = Result<Vec<AddressRecord>, LookupFailure>> + Send;
}

/// A DNS client on hickory-resolver, asking either the configured nameservers (UDP, and TCP for
/// truncated answers) or the system's.
#[derive(Clone)]
pub struct DnsClient {
    resolver: TokioResolver,
}

impl std::fmt::Debug for DnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsClient")
    }
}

impl DnsClient {
    /// A client for `nameservers` (empty: the system resolver), with `timeout` per attempt.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<Self, String> {
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default());
            // The names asked are the operator's, for these servers: /etc/hosts must not answer.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 2;
        // Small: the cache is bypassed anyway (see the module documentation).
        options.cache_size = 64;
        let resolver = builder.build().map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Self { resolver })
    }

    async fn lookup(&self, name: &str, record_type: RecordType) -> Result<Vec<Record>, LookupFailure> {
        let query = Name::from_ascii(name).map_err(|e| LookupFailure::Transient(format!("`{name}` is not a DNS name: {e}")))?;
        self.resolver.clear_lookup_cache(query.clone(), record_type);
        match self.resolver.lookup(query, record_type).await {
            Ok(lookup) => {
                let mut records = lookup.answers().to_vec();
                if record_type == RecordType::SRV {
                    records.extend(lookup.additionals().iter().cloned());
                }
                Ok(records)
            }
            Err(e) => Err(classify(&e)),
        }
    }
}

impl Dns for DnsClient {
    async fn srv(&self, name: &str) -> Result<SrvAnswer, LookupFailure> {
        let records = self.lookup(name, RecordType::SRV).await?;
        let mut answer = SrvAnswer::default();
        for record in &records {
            match &record.data {
                RData::SRV(srv) => answer.records.push(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: fqdn(&srv.target),
                    ttl: record.ttl,
                }),
                _ => answer.glue.extend(address(record)),
            }
        }
        if answer.records.is_empty() {
            // A CNAME at the SRV name pointing at nothing SRV: there is no SRV record.
            return Err(LookupFailure::NoRecords {
                nx_domain: false,
                negative_ttl: None,
            });
        }
        Ok(answer)
    }

    async fn addresses(&self, name: &str) -> Result<Vec<AddressRecord>, LookupFailure> {
        let (v4, v6) = tokio::join!(self.lookup(name, RecordType::A), self.lookup(name, RecordType::AAAA));
        // A CNAME target is tolerated (RFC 2782 forbids it, but it is seen): every address of
        // the chain counts, under the name that was asked.
        let collect = |records: Vec<Record>| -> Vec<AddressRecord> {
            records
                .iter()
                .filter_map(address)
                .map(|a| AddressRecord {
                    name: normalize(name),
                    ..a
                })
                .collect()
        };
        match (v4, v6) {
            (Ok(a), Ok(b)) => Ok([collect(a), collect(b)].concat()),
            (Ok(a), Err(_)) | (Err(_), Ok(a)) => {
                let found = collect(a);
                if found.is_empty() {
                    Err(LookupFailure::NoRecords {
                        nx_domain: false,
                        negative_ttl: None,
                    })
                } else {
                    Ok(found)
                }
            }
            (Err(a @ LookupFailure::Transient(_)), _) | (_, Err(a @ LookupFailure::Transient(_))) => Err(a),
            (
                Err(LookupFailure::NoRecords {
                    nx_domain: nx_a,
                    negative_ttl: ttl_a,
                }),
                Err(LookupFailure::NoRecords {
                    nx_domain: nx_b,
                    negative_ttl: ttl_b,
                }),
            ) => Err(LookupFailure::NoRecords {
                nx_domain: nx_a || nx_b,
                negative_ttl: match (ttl_a, ttl_b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            }),
        }
    }
}

fn address(record: &Record) -> Option<AddressRecord> {
    let ip = match &record.data {
        RData::A(a) => IpAddr::V4(a.0),
        RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
        _ => return None,
    };
    Some(AddressRecord {
        name: fqdn(&record.name),
        ip,
        ttl: record.ttl,
    })
}

/// Lowercase with the trailing dot; the root is `.`.
fn fqdn(name: &Name) -> String {
    normalize(&name.to_ascii())
}

/// `Web.Example` → `web.example.`; `.` stays `.`.
pub fn normalize(name: &str) -> String {
    let mut out = name.to_ascii_lowercase();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// `web.example.` → `web.example` (for URLs, logs, the admin side); `.` stays `.`.
pub fn display(name: &str) -> &str {
    if name == "." {
        name
    } else {
        name.strip_suffix('.').unwrap_or(name)
    }
}

fn classify(e: &NetError) -> LookupFailure {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => {
            if none.soa.is_none() && none.ns.as_ref().is_some_and(|ns| !ns.is_empty()) {
                return LookupFailure::Transient(
                    "the nameserver answered with a referral instead of an answer (is it authoritative or recursive for this name?)".into(),
                );
            }
            LookupFailure::NoRecords {
                nx_domain: none.response_code == ResponseCode::NXDomain,
                negative_ttl: none.negative_ttl,
            }
        }
        NetError::Dns(DnsError::ResponseCode(code)) => LookupFailure::Transient(match code {
            ResponseCode::ServFail => "SERVFAIL (the nameserver could not answer)".to_string(),
            ResponseCode::Refused => "REFUSED (the nameserver refuses to answer this query)".to_string(),
            other => format!("error response {other}"),
        }),
        NetError::Timeout => LookupFailure::Transient("timed out (no answer from the nameserver)".into()),
        other => LookupFailure::Transient(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_displayed_without_the_dot() {
        assert_eq!(normalize("Web.Example"), "web.example.");
        assert_eq!(normalize("a.example."), "a.example.");
        assert_eq!(normalize("."), ".");
        assert_eq!(display("a.example."), "a.example");
        assert_eq!(display("."), ".");
        assert_eq!(fqdn(&Name::from_ascii("A.Example.").unwrap()), "a.example.");
        assert_eq!(fqdn(&Name::root()), ".");
    }
}
