//! The DNS-01 challenge through RFC 2136 dynamic updates: the `_acme-challenge` TXT record is
//! added to the zone's primary nameserver with a TSIG-signed update, the solver waits until the
//! servers the CA will ask serve it, and removes it afterwards.
//!
//! # Why it works this way
//!
//! * **The zone is asked of the nameserver.** An update names its zone, and only the primary
//!   knows which of its zones holds `_acme-challenge.a.b.example.com` (`example.com`, or a
//!   delegated `b.example.com`). So the solver asks the configured nameserver for the SOA of
//!   the record's name and of each parent in turn, rather than guessing from public suffixes or
//!   asking a recursive resolver that may see another view.
//! * **Add, never replace.** A certificate for `example.com` and `*.example.com` needs two TXT
//!   values at the same name at once, so `present` adds one value to the set (lego first
//!   deletes the whole set, which works only because it solves one name at a time), and
//!   `cleanup` deletes exactly that value (RFC 2136 §2.5.4, delete by RDATA): whatever else is
//!   at the name (another order's value, an operator's record) stays.
//! * **Updates over TCP.** No truncation, and the TSIG-signed answer arrives on the connection
//!   that carried the request. A NOERROR answer to a signed update must itself be signed with
//!   the key, or it is not believed.
//! * **The propagation check asks servers directly.** Each of `resolvers` (default: the
//!   nameserver) is asked for the TXT record itself, with no caching resolver in between that
//!   could keep an earlier "no such record" for the zone's negative TTL. List the zone's
//!   authoritative servers there when secondaries must have the record before the CA asks.
//! * **lego's names and defaults.** The `RFC2136_*` variables fill what the TOML leaves out,
//!   and the TSIG algorithm defaults to lego's `hmac-sha1`, so a Traefik setup works unchanged.
//!   Without a key and secret, updates go unsigned (for servers that trust the address).
//!
//! Not done (lego has them): following a CNAME at `_acme-challenge` to another zone,
//! `RFC2136_TSIG_FILE`, hmac-md5 and hmac-sha224 keys.
//!
//! # Configuration
//!
//! ```toml
//! [certificatesResolvers.le.acme.dnsChallenge]
//! provider = "rfc2136"
//! resolvers = ["ns1.example.com:53", "ns2.example.com:53"]   # default: the nameserver
//! delayBeforeCheck = "0s"
//!
//! [certificatesResolvers.le.acme.dnsChallenge.rfc2136]       # each key: or RFC2136_<KEY>
//! nameserver = "ns1.example.com:53"        # RFC2136_NAMESERVER
//! tsigKey = "drover-key"                   # RFC2136_TSIG_KEY
//! tsigSecret = "base64 from tsig-keygen"   # RFC2136_TSIG_SECRET
//! tsigAlgorithm = "hmac-sha256"            # RFC2136_TSIG_ALGORITHM, default hmac-sha1
//! ttl = 120                                # RFC2136_TTL
//! propagationTimeout = "60s"               # RFC2136_PROPAGATION_TIMEOUT
//! pollingInterval = "2s"                   # RFC2136_POLLING_INTERVAL
//! ```

mod exchange;
mod lookup;
mod settings;
mod tsig;

use std::time::Duration;

use drover_providers::duration::ConfigDuration;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::time::Instant;

use exchange::Server;
use settings::Settings;
use tsig::TsigKey;

/// `[certificatesResolvers.<name>.acme.dnsChallenge]`: Traefik's keys, plus drover's TOML keys
/// for the `rfc2136` provider (which Traefik reads only from `RFC2136_*` variables).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsChallengeConfig {
    /// The DNS provider; only `"rfc2136"` is supported.
    pub provider: String,
    /// Servers (`"host:port"`, port 53 if absent) that must serve the record before the CA is
    /// asked to validate; empty: the update nameserver.
    #[serde(default)]
    pub resolvers: Vec<String>,
    /// How long to wait before the first propagation check (Traefik's key).
    #[serde(default)]
    pub delay_before_check: Option<ConfigDuration>,
    /// The `rfc2136` provider's settings; unset ones come from `RFC2136_*` variables.
    #[serde(default)]
    pub rfc2136: Rfc2136Config,
}

/// `dnsChallenge.rfc2136`: what lego reads from `RFC2136_*` variables, as TOML keys (which win).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rfc2136Config {
    /// The zone's primary, `"host"` or `"host:port"` (`RFC2136_NAMESERVER`).
    pub nameserver: Option<String>,
    /// The TSIG key's name as the server knows it (`RFC2136_TSIG_KEY`).
    pub tsig_key: Option<String>,
    /// The TSIG secret, base64 as `tsig-keygen` prints it (`RFC2136_TSIG_SECRET`).
    pub tsig_secret: Option<String>,
    /// `hmac-sha1` (default, as lego), `hmac-sha256`, `hmac-sha384` or `hmac-sha512`, with or
    /// without lego's trailing dot (`RFC2136_TSIG_ALGORITHM`).
    pub tsig_algorithm: Option<String>,
    /// The challenge record's TTL in seconds, default 120 (`RFC2136_TTL`).
    pub ttl: Option<u32>,
    /// How long the propagation check waits, default 60 s (`RFC2136_PROPAGATION_TIMEOUT`).
    pub propagation_timeout: Option<ConfigDuration>,
    /// How often the propagation check asks, default 2 s (`RFC2136_POLLING_INTERVAL`).
    pub polling_interval: Option<ConfigDuration>,
}

/// Why a DNS-01 step failed; the text is meant to be shown as the reason an order failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Dns01Error {
    /// The domain has no challenge name (empty, or a wildcard anywhere but the first label).
    #[error("`{domain}` cannot be validated with DNS-01: {reason}")]
    Domain {
        /// The domain as given.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A DNS server did not answer, or not with DNS.
    #[error("DNS server {server} failed while {doing}: {reason}")]
    Unreachable {
        /// The server, `host:port`.
        server: String,
        /// What was being done, e.g. `looking up the zone of _acme-challenge.example.com.`.
        doing: String,
        /// What went wrong.
        reason: String,
    },
    /// The nameserver holds no zone that contains the challenge name.
    #[error("nameserver {server} holds no zone containing {name}: it gave no SOA for that name or any parent (last answer: {last})")]
    NoZone {
        /// The nameserver, `host:port`.
        server: String,
        /// The challenge name.
        name: String,
        /// The nameserver's answer for the root, e.g. `REFUSED for .`.
        last: String,
    },
    /// The nameserver answered the update with an error.
    #[error("nameserver {server} refused to {action} the TXT record at {name} in zone {zone}: {reason}")]
    UpdateRefused {
        /// The nameserver, `host:port`.
        server: String,
        /// The zone the update named.
        zone: String,
        /// The challenge name.
        name: String,
        /// `add` or `remove`.
        action: &'static str,
        /// The RCODE, with the TSIG error when there is one, and the likely cause:
        /// `NOTAUTH (TSIG BADSIG); the TSIG secret does not match the server's key ...`.
        reason: String,
    },
    /// The answer to a signed update is not signed with the key, so it proves nothing.
    #[error("nameserver {server}'s answer to the update of zone {zone} cannot be trusted: {reason}")]
    Unauthenticated {
        /// The nameserver, `host:port`.
        server: String,
        /// The zone the update named.
        zone: String,
        /// What is wrong with its signature.
        reason: String,
    },
    /// Not every server served the record within the propagation timeout.
    #[error("the TXT record at {name} was not served within {}s by {}", timeout.as_secs_f64(), pending.join(", "))]
    NotPropagated {
        /// The challenge name.
        name: String,
        /// The propagation timeout.
        timeout: Duration,
        /// The servers still without it, each with what it answered: `10.0.0.2:53 (NXDOMAIN)`.
        pending: Vec<String>,
    },
    /// The update could not be encoded (a value too long for a DNS message).
    #[error("cannot build the update for {name}: {reason}")]
    Encode {
        /// The challenge name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// A ready DNS-01 solver for one resolver's `dnsChallenge`.
#[derive(Debug)]
pub struct Dns01 {
    settings: Settings,
}

impl Dns01 {
    /// Validates `config`; TOML keys win, lego's `RFC2136_*` variables (looked up with `env`:
    /// production passes `std::env::var`, tests a closure) fill what it leaves out. The error
    /// names the key or variable at fault, e.g. `dnsChallenge.rfc2136.tsigSecret: not valid
    /// base64 (...)`.
    pub fn new(config: &DnsChallengeConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        Settings::new(config, env).map(|settings| Self { settings })
    }

    /// Adds the TXT record `value` at `_acme-challenge.<domain>.` (for `*.example.com`:
    /// `_acme-challenge.example.com.`) in the zone the nameserver holds it in, by a
    /// TSIG-signed update; other values at that name stay.
    pub async fn present(&self, domain: &str, value: &str) -> Result<(), Dns01Error> {
        let name = challenge_name(domain)?;
        let zone = lookup::find_zone(&self.settings.nameserver, &name).await?;
        let mut message = update_message(&zone);
        message.add_authority(Record::from_rdata(name.clone(), self.settings.ttl, RData::TXT(txt(value))));
        self.send_update(&zone, &name, "add", message).await?;
        let (name, zone) = (name.to_ascii(), zone.to_ascii());
        tracing::debug!(%name, %zone, nameserver = %self.settings.nameserver, "DNS-01: challenge record added");
        Ok(())
    }

    /// Waits until every server in `resolvers` (or the nameserver) serves the TXT record
    /// `value` at the challenge name, asking each directly every polling interval; fails
    /// after the propagation timeout naming the servers still without it.
    pub async fn wait_propagated(&self, domain: &str, value: &str) -> Result<(), Dns01Error> {
        let name = challenge_name(domain)?;
        let settings = &self.settings;
        tokio::time::sleep(settings.delay_before_check).await;
        let deadline = Instant::now() + settings.propagation_timeout;
        let mut pending: Vec<&Server> = self.check_servers().collect();
        loop {
            let seen = futures_util::future::join_all(pending.iter().map(|s| lookup::serves_txt(s, &name, value))).await;
            // The servers still without the value, each with what it answered instead.
            let without: Vec<(&Server, String)> = pending
                .iter()
                .zip(seen)
                .filter_map(|(server, seen)| seen.err().map(|instead| (*server, instead)))
                .collect();
            if without.is_empty() {
                tracing::debug!(name = %name.to_ascii(), "DNS-01: challenge record served everywhere");
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Dns01Error::NotPropagated {
                    name: name.to_ascii(),
                    timeout: settings.propagation_timeout,
                    pending: without.iter().map(|(s, instead)| format!("{s} ({instead})")).collect(),
                });
            }
            pending = without.into_iter().map(|(server, _)| server).collect();
            tokio::time::sleep(settings.polling_interval.min(deadline - now)).await;
        }
    }

    /// Removes exactly the TXT record `value` at the challenge name (delete by RDATA); other
    /// records at that name stay. Removing a value that is not there succeeds.
    pub async fn cleanup(&self, domain: &str, value: &str) -> Result<(), Dns01Error> {
        let name = challenge_name(domain)?;
        let zone = lookup::find_zone(&self.settings.nameserver, &name).await?;
        let mut message = update_message(&zone);
        // RFC 2136 §2.5.4: class NONE and TTL 0 delete the RR with this RDATA.
        let mut record = Record::from_rdata(name.clone(), 0, RData::TXT(txt(value)));
        record.dns_class = DNSClass::NONE;
        message.add_authority(record);
        self.send_update(&zone, &name, "remove", message).await?;
        let (name, zone) = (name.to_ascii(), zone.to_ascii());
        tracing::debug!(%name, %zone, nameserver = %self.settings.nameserver, "DNS-01: challenge record removed");
        Ok(())
    }

    /// The servers the propagation check asks.
    fn check_servers(&self) -> impl Iterator<Item = &Server> {
        let resolvers = &self.settings.resolvers;
        let fallback = resolvers.is_empty().then_some(&self.settings.nameserver);
        resolvers.iter().chain(fallback)
    }

    /// Signs `message` (when a key is set), sends it to the nameserver and checks the answer:
    /// NOERROR, and signed with the key.
    async fn send_update(&self, zone: &Name, name: &Name, action: &'static str, message: Message) -> Result<(), Dns01Error> {
        let nameserver = &self.settings.nameserver;
        let key = self.settings.key.as_ref();
        let id = message.metadata.id;
        let encode = |reason: String| Dns01Error::Encode {
            name: name.to_ascii(),
            reason,
        };
        let (request, request_mac) = match key {
            Some(key) => key.sign(message).map(|signed| (signed.bytes, Some(signed.mac))).map_err(encode)?,
            None => (message.to_vec().map_err(|e| encode(e.to_string()))?, None),
        };
        let (bytes, answer) = exchange::update(nameserver, &request, id)
            .await
            .map_err(|reason| Dns01Error::Unreachable {
                server: nameserver.to_string(),
                doing: format!("updating zone {}", zone.to_ascii()),
                reason,
            })?;
        if answer.response_code != ResponseCode::NoError {
            return Err(Dns01Error::UpdateRefused {
                server: nameserver.to_string(),
                zone: zone.to_ascii(),
                name: name.to_ascii(),
                action,
                reason: refusal(&answer, key),
            });
        }
        if let (Some(key), Some(mac)) = (key, request_mac) {
            key.verify(&bytes, &mac).map_err(|reason| Dns01Error::Unauthenticated {
                server: nameserver.to_string(),
                zone: zone.to_ascii(),
                reason,
            })?;
        }
        Ok(())
    }
}

/// `_acme-challenge.<domain>.`, the name the CA asks for `domain`; a wildcard `*.example.com`
/// is validated at `example.com` (RFC 8555 §8.4). Unicode names become their A-labels.
fn challenge_name(domain: &str) -> Result<Name, Dns01Error> {
    let invalid = |reason: &str| Dns01Error::Domain {
        domain: domain.to_string(),
        reason: reason.to_string(),
    };
    let base = domain.trim().trim_end_matches('.');
    let base = base.strip_prefix("*.").unwrap_or(base);
    if base.is_empty() {
        return Err(invalid("empty"));
    }
    if base.contains('*') {
        return Err(invalid("a wildcard may only be the first label"));
    }
    Name::from_str_relaxed(format!("_acme-challenge.{base}.")).map_err(|e| invalid(&e.to_string()))
}

/// An empty update of `zone` (RFC 2136 §2.3: the zone section is the zone's SOA question).
fn update_message(zone: &Name) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(zone.clone(), RecordType::SOA));
    message
}

/// `value` as TXT data: one string, or 255-byte pieces when longer (ACME's are 43 bytes).
fn txt(value: &str) -> TXT {
    TXT::from_bytes(value.as_bytes().chunks(255).collect())
}

/// The refused update's RCODE (with the TSIG error, if any) and its likely cause.
fn refusal(answer: &Message, key: Option<&TsigKey>) -> String {
    let code = lookup::rcode_name(answer.response_code);
    let tsig_error = answer.signature.as_ref().and_then(|tsig| tsig.data.error);
    let key_name = key.map_or_else(String::new, |k| k.name().to_string());
    let rcode = match tsig_error {
        Some(TsigError::BadSig) => format!("{code} (TSIG BADSIG)"),
        Some(TsigError::BadKey) => format!("{code} (TSIG BADKEY)"),
        Some(TsigError::BadTime) => format!("{code} (TSIG BADTIME)"),
        Some(other) => format!("{code} (TSIG error {})", u16::from(other)),
        None => code,
    };
    let hint = match (tsig_error, answer.response_code, key) {
        (Some(TsigError::BadSig), ..) => format!("the TSIG secret does not match the server's key `{key_name}`"),
        (Some(TsigError::BadKey), _, Some(key)) => {
            format!("the server knows no key `{key_name}` with algorithm {}", key.algorithm())
        }
        (Some(TsigError::BadTime), ..) => "this host's clock and the server's differ by more than 300 s".into(),
        (_, ResponseCode::Refused, Some(_)) => format!("the zone's update policy does not allow key `{key_name}` to change this name"),
        (_, ResponseCode::Refused, None) => {
            "the zone's update policy refuses unsigned updates from this host; set tsigKey and tsigSecret".into()
        }
        (_, ResponseCode::NotAuth, _) => "the nameserver is not authoritative for the zone (updates go to its primary)".into(),
        (_, ResponseCode::NotZone, _) => "the name is outside the zone".into(),
        _ => "the nameserver's log says why".into(),
    };
    format!("{rcode}; {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_names() {
        for (domain, expected) in [
            ("example.com", "_acme-challenge.example.com."),
            ("*.w.test", "_acme-challenge.w.test."),
            ("Sub.Example.COM.", "_acme-challenge.sub.example.com."),
            ("bücher.example", "_acme-challenge.xn--bcher-kva.example."),
        ] {
            assert_eq!(challenge_name(domain).unwrap().to_ascii(), expected, "{domain}");
        }
        for bad in ["", "*.", "a.*.example.com", "**.example.com"] {
            let err = challenge_name(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("`{bad}` cannot be validated with DNS-01")), "{err}");
        }
    }

    #[test]
    fn the_solver_and_its_futures_can_move_to_other_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let config = DnsChallengeConfig {
            provider: "rfc2136".into(),
            rfc2136: Rfc2136Config {
                nameserver: Some("127.0.0.1".into()),
                ..Rfc2136Config::default()
            },
            ..DnsChallengeConfig::default()
        };
        let solver = Dns01::new(&config, &|_| None).unwrap();
        send_sync(&solver);
        send(&solver.present("example.com", "v"));
        send(&solver.wait_propagated("example.com", "v"));
        send(&solver.cleanup("example.com", "v"));
    }

    #[test]
    fn long_values_are_split_into_txt_strings() {
        let value = "v".repeat(300);
        let data = txt(&value).txt_data;
        assert_eq!(data.iter().map(|s| s.len()).collect::<Vec<_>>(), [255, 45]);
        assert_eq!(txt("abc").txt_data.len(), 1);
    }
}
