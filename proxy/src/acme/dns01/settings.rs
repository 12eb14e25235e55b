//! `dnsChallenge` as configured → the settings a [`Dns01`](super::Dns01) runs with.
//!
//! Each rfc2136 value comes from its TOML key when set, else from lego's environment variable
//! (`RFC2136_NAMESERVER`, ...), as Traefik reads them, else from lego's default. An error names
//! where the bad value came from: the TOML key (`dnsChallenge.rfc2136.tsigSecret`) or the
//! variable (`RFC2136_TSIG_SECRET`), since that is what the operator has to edit.

use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use drover_providers::duration::ConfigDuration;
use hickory_proto::rr::Name;

use super::exchange::Server;
use super::tsig::{Algorithm, TsigKey};
use super::DnsChallengeConfig;

/// lego's default TTL for the challenge record (`dns01.DefaultTTL`).
const DEFAULT_TTL: u32 = 120;
/// lego's defaults for the propagation check.
const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(2);

/// Standard base64 as `tsig-keygen` writes it, padding optional (a secret pasted without its
/// `=` is still the same key).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Everything a DNS-01 solver needs, validated.
#[derive(Debug)]
pub(super) struct Settings {
    /// Where updates go (the zone's primary), and where zones are looked up.
    pub nameserver: Server,
    /// Who must serve the record before validation is asked for; the nameserver when empty.
    pub resolvers: Vec<Server>,
    /// Signs updates; `None` sends them unsigned (lego: no key and no secret configured).
    pub key: Option<TsigKey>,
    /// TTL of the challenge record.
    pub ttl: u32,
    /// How long to wait for every resolver to serve the record.
    pub propagation_timeout: Duration,
    /// How long between two rounds of the propagation check.
    pub polling_interval: Duration,
    /// How long to wait before the first round (Traefik's `delayBeforeCheck`).
    pub delay_before_check: Duration,
}

/// One value and where it came from, for error messages.
struct Sourced {
    value: String,
    origin: String,
}

impl Sourced {
    /// `"<origin>: <why>"`, the form of every construction error.
    fn error(&self, why: impl std::fmt::Display) -> String {
        format!("{}: {why}", self.origin)
    }
}

/// Reads the rfc2136 values: the TOML key `key` when set, else the environment variable `var`.
/// Empty strings count as unset (lego treats an empty variable so).
struct Lookup<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Lookup<'_> {
    fn get(&self, toml: Option<&str>, key: &str, var: &str) -> Option<Sourced> {
        if let Some(value) = toml.map(str::trim).filter(|v| !v.is_empty()) {
            return Some(Sourced {
                value: value.to_string(),
                origin: format!("dnsChallenge.rfc2136.{key}"),
            });
        }
        self.var(var)
    }

    /// The environment variable `var` alone (for keys whose TOML value is not a string).
    fn var(&self, var: &str) -> Option<Sourced> {
        let value = (self.env)(var)?;
        let value = value.trim();
        (!value.is_empty()).then(|| Sourced {
            value: value.to_string(),
            origin: var.to_string(),
        })
    }

    /// A duration: the TOML key's, else the variable's (seconds, or `"90s"`), else `default`.
    fn duration(&self, toml: Option<ConfigDuration>, var: &str, default: Duration) -> Result<Duration, String> {
        if let Some(ConfigDuration(d)) = toml {
            return Ok(d);
        }
        match self.var(var) {
            Some(raw) => ConfigDuration::parse(&raw.value).map(|d| d.0).map_err(|e| raw.error(e)),
            None => Ok(default),
        }
    }
}

impl Settings {
    /// Validates `config`, filling what it leaves out from `env` (lego's variables).
    pub fn new(config: &DnsChallengeConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        check_provider(&config.provider)?;
        let lookup = Lookup { env };
        let rfc = &config.rfc2136;
        let nameserver = lookup.get(rfc.nameserver.as_deref(), "nameserver", "RFC2136_NAMESERVER").ok_or(
            "dnsChallenge.rfc2136.nameserver: missing; set it (or RFC2136_NAMESERVER) to the zone's primary, e.g. \"ns1.example.com:53\"",
        )?;
        let nameserver = Server::parse(&nameserver.value).map_err(|e| nameserver.error(e))?;
        let resolvers = config
            .resolvers
            .iter()
            .enumerate()
            .map(|(i, text)| Server::parse(text).map_err(|e| format!("dnsChallenge.resolvers[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let ttl = match (rfc.ttl, lookup.var("RFC2136_TTL")) {
            (Some(ttl), _) => ttl,
            (None, Some(raw)) => raw
                .value
                .parse()
                .map_err(|_| raw.error(format_args!("`{}` is not a TTL in seconds", raw.value)))?,
            (None, None) => DEFAULT_TTL,
        };
        let polling_interval = lookup.duration(rfc.polling_interval, "RFC2136_POLLING_INTERVAL", DEFAULT_POLLING_INTERVAL)?;
        if polling_interval.is_zero() {
            return Err("dnsChallenge.rfc2136.pollingInterval (or RFC2136_POLLING_INTERVAL): must be more than 0".into());
        }
        Ok(Self {
            nameserver,
            resolvers,
            key: tsig_key(&lookup, config)?,
            ttl,
            propagation_timeout: lookup.duration(rfc.propagation_timeout, "RFC2136_PROPAGATION_TIMEOUT", DEFAULT_PROPAGATION_TIMEOUT)?,
            polling_interval,
            delay_before_check: config.delay_before_check.map_or(Duration::ZERO, |d| d.0),
        })
    }
}

/// Only `rfc2136` is built in; other lego providers are named as unsupported.
fn check_provider(provider: &str) -> Result<(), String> {
    match provider.trim() {
        p if p.eq_ignore_ascii_case("rfc2136") => Ok(()),
        "" => Err("dnsChallenge.provider: missing; drover solves DNS-01 through \"rfc2136\" (RFC 2136 dynamic updates)".into()),
        other => Err(format!(
            "dnsChallenge.provider: `{other}` is not supported; drover solves DNS-01 only through \"rfc2136\" \
             (RFC 2136 dynamic updates, which BIND, Knot, PowerDNS and others accept)"
        )),
    }
}

/// The TSIG key: both name and secret, or neither (unsigned updates, as lego allows).
fn tsig_key(lookup: &Lookup<'_>, config: &DnsChallengeConfig) -> Result<Option<TsigKey>, String> {
    let rfc = &config.rfc2136;
    let name = lookup.get(rfc.tsig_key.as_deref(), "tsigKey", "RFC2136_TSIG_KEY");
    let secret = lookup.get(rfc.tsig_secret.as_deref(), "tsigSecret", "RFC2136_TSIG_SECRET");
    let algorithm = lookup.get(rfc.tsig_algorithm.as_deref(), "tsigAlgorithm", "RFC2136_TSIG_ALGORITHM");
    let (name, secret) = match (name, secret) {
        (Some(name), Some(secret)) => (name, secret),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err("dnsChallenge.rfc2136.tsigSecret: missing while tsigKey is set (set both, or neither for unsigned updates)".into())
        }
        (None, Some(_)) => {
            return Err("dnsChallenge.rfc2136.tsigKey: missing while tsigSecret is set (set both, or neither for unsigned updates)".into())
        }
    };
    let mut key_name = Name::from_ascii(&name.value)
        .map(|n| n.to_lowercase())
        .map_err(|e| name.error(format_args!("`{}` is not a valid key name ({e})", name.value)))?;
    key_name.set_fqdn(true);
    let bytes = SECRET_BASE64
        .decode(secret.value.as_bytes())
        .map_err(|e| secret.error(format_args!("not valid base64 ({e})")))?;
    if bytes.is_empty() {
        return Err(secret.error("empty"));
    }
    let algorithm = match algorithm {
        Some(raw) => Algorithm::parse(&raw.value).map_err(|e| raw.error(e))?,
        None => Algorithm::DEFAULT,
    };
    Ok(Some(TsigKey::new(key_name, algorithm, &bytes)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// `toml` (a `[dnsChallenge]` table's body) read as configuration.
    fn config(toml: &str) -> DnsChallengeConfig {
        toml::from_str(toml).unwrap_or_else(|e| panic!("{toml}: {e}"))
    }

    /// Settings from `toml` and the variables in `vars`.
    fn settings(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::new(&config(toml), &|k| vars.get(k).cloned())
    }

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0ISE=";

    #[test]
    fn toml_keys_and_defaults() {
        let s = settings(
            &format!(
                "provider = \"rfc2136\"\nresolvers = [\"10.0.0.1\", \"[::1]:5353\"]\ndelayBeforeCheck = \"3s\"\n\
                 [rfc2136]\nnameserver = \"127.0.0.1:5300\"\ntsigKey = \"Drover-Key\"\n\
                 tsigSecret = \"{SECRET}\"\ntsigAlgorithm = \"HMAC-SHA512.\"\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(s.nameserver.to_string(), "127.0.0.1:5300");
        let resolvers: Vec<String> = s.resolvers.iter().map(ToString::to_string).collect();
        assert_eq!(resolvers, ["10.0.0.1:53", "[::1]:5353"]);
        let key = s.key.unwrap();
        assert_eq!(key.name().to_string(), "drover-key.");
        assert_eq!(key.algorithm(), Algorithm::HmacSha512);
        assert_eq!(s.ttl, 120);
        assert_eq!(s.propagation_timeout, Duration::from_secs(60));
        assert_eq!(s.polling_interval, Duration::from_secs(2));
        assert_eq!(s.delay_before_check, Duration::from_secs(3));
    }

    #[test]
    fn environment_fills_what_toml_leaves_out_and_toml_wins() {
        let vars = [
            ("RFC2136_NAMESERVER", "ns.example.test"),
            ("RFC2136_TSIG_KEY", "env-key"),
            ("RFC2136_TSIG_SECRET", SECRET),
            ("RFC2136_TSIG_ALGORITHM", "hmac-sha256."),
            ("RFC2136_TTL", "30"),
            ("RFC2136_PROPAGATION_TIMEOUT", "90"),
            ("RFC2136_POLLING_INTERVAL", "500ms"),
        ];
        let s = settings("provider = \"rfc2136\"", &vars).unwrap();
        assert_eq!(s.nameserver.to_string(), "ns.example.test:53");
        let key = s.key.as_ref().unwrap();
        assert_eq!(
            (key.name().to_string(), key.algorithm()),
            ("env-key.".into(), Algorithm::HmacSha256)
        );
        assert_eq!(s.ttl, 30);
        assert_eq!(s.propagation_timeout, Duration::from_secs(90));
        assert_eq!(s.polling_interval, Duration::from_millis(500));

        let s = settings(
            "provider = \"rfc2136\"\n[rfc2136]\nnameserver = \"192.0.2.7\"\ntsigKey = \"toml-key\"\n\
             ttl = 60\npropagationTimeout = \"5s\"\n",
            &vars,
        )
        .unwrap();
        assert_eq!(s.nameserver.to_string(), "192.0.2.7:53");
        assert_eq!(s.key.unwrap().name().to_string(), "toml-key.");
        assert_eq!((s.ttl, s.propagation_timeout), (60, Duration::from_secs(5)));
    }

    #[test]
    fn lego_default_algorithm_is_hmac_sha1() {
        let s = settings(
            &format!("provider = \"rfc2136\"\n[rfc2136]\nnameserver = \"127.0.0.1\"\ntsigKey = \"k\"\ntsigSecret = \"{SECRET}\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(s.key.unwrap().algorithm(), Algorithm::HmacSha1);
    }

    #[test]
    fn no_key_and_no_secret_means_unsigned_updates() {
        let s = settings("provider = \"rfc2136\"\n[rfc2136]\nnameserver = \"127.0.0.1\"\n", &[]).unwrap();
        assert!(s.key.is_none());
    }

    #[test]
    fn errors_name_the_key_or_variable_that_is_wrong() {
        let base = "provider = \"rfc2136\"\n[rfc2136]\nnameserver = \"127.0.0.1\"\ntsigKey = \"k\"\n";
        /// A `[dnsChallenge]` body, the variables set, and how the error starts.
        type Case<'a> = (String, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "provider = \"cloudflare\"".into(),
                &[],
                "dnsChallenge.provider: `cloudflare` is not supported",
            ),
            ("provider = \"rfc2136\"".into(), &[], "dnsChallenge.rfc2136.nameserver: missing"),
            (
                format!("{base}tsigSecret = \"not base64!\"\n"),
                &[],
                "dnsChallenge.rfc2136.tsigSecret: not valid base64",
            ),
            (
                base.into(),
                &[("RFC2136_TSIG_SECRET", "%%%")],
                "RFC2136_TSIG_SECRET: not valid base64",
            ),
            (base.into(), &[], "dnsChallenge.rfc2136.tsigSecret: missing while tsigKey is set"),
            (
                format!("{base}tsigSecret = \"{SECRET}\"\ntsigAlgorithm = \"hmac-foo\"\n"),
                &[],
                "dnsChallenge.rfc2136.tsigAlgorithm: `hmac-foo` is not a TSIG algorithm",
            ),
            (
                format!("{base}tsigSecret = \"{SECRET}\"\n"),
                &[("RFC2136_TSIG_ALGORITHM", "hmac-md5.sig-alg.reg.int.")],
                "RFC2136_TSIG_ALGORITHM: hmac-md5 is not supported",
            ),
            (
                "provider = \"rfc2136\"\n[rfc2136]\nnameserver = \"127.0.0.1:99999\"\n".into(),
                &[],
                "dnsChallenge.rfc2136.nameserver: `127.0.0.1:99999`",
            ),
            (
                "provider = \"rfc2136\"\nresolvers = [\"127.0.0.1\", \"a b\"]\n[rfc2136]\nnameserver = \"127.0.0.1\"\n".into(),
                &[],
                "dnsChallenge.resolvers[1]: `a b`",
            ),
            (
                "provider = \"rfc2136\"".into(),
                &[("RFC2136_NAMESERVER", "h"), ("RFC2136_TTL", "soon")],
                "RFC2136_TTL: `soon`",
            ),
            (
                "provider = \"rfc2136\"".into(),
                &[("RFC2136_NAMESERVER", "h"), ("RFC2136_PROPAGATION_TIMEOUT", "ages")],
                "RFC2136_PROPAGATION_TIMEOUT: `ages`",
            ),
            (
                "provider = \"rfc2136\"\n[rfc2136]\nnameserver = \"h\"\npollingInterval = 0\n".into(),
                &[],
                "dnsChallenge.rfc2136.pollingInterval (or RFC2136_POLLING_INTERVAL): must be more than 0",
            ),
        ];
        for (toml, vars, expected) in cases {
            let err = settings(toml, vars).map(|_| ()).unwrap_err();
            assert!(err.starts_with(expected), "{toml} {vars:?}\n  got: {err}\n  expected: {expected}…");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = toml::from_str::<DnsChallengeConfig>("provider = \"rfc2136\"\n[rfc2136]\nnameServer = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nameServer"), "{err}");
    }
}
