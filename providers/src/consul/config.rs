//! `[providers.consulCatalog]`: the static settings of the Consul catalog provider.
//!
//! Key names follow Traefik v3 (`endpoint.address`, `endpoint.token`, `endpoint.httpAuth`,
//! `exposedByDefault`, `strictChecks`, …) so a Traefik static file needs few edits. drover adds
//! `connectTimeout`, `wait` and the watch rate limit (`watchBurst`, `watchRefill`). Traefik keys
//! drover does not need (`watch`, `refreshInterval`, `cache`: drover always watches with blocking
//! queries) are accepted and reported as ignored; Traefik keys whose absence would route more than
//! the user meant (`constraints`, Consul Connect, namespaces) are refused with a clear error.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::duration::ConfigDuration;
use crate::labels::DefaultRule;
use crate::model::Ignored;
pub use crate::tls::TlsOptions;

/// Where Consul's TLS options are set (for messages).
pub(crate) const TLS_KEY: &str = "providers.consulCatalog.endpoint.tls";

/// Consul's maximum blocking `wait`.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// `[providers.consulCatalog]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsulCatalogConfig {
    /// Where Consul is and how to authenticate.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Tag prefix (default `drover`; `traefik` reads a Traefik-tagged catalog unchanged).
    #[serde(default = "defaults::prefix")]
    pub prefix: String,
    /// Route instances that carry no `<prefix>.enable` tag (default false).
    #[serde(default, alias = "exposedbydefault")]
    pub exposed_by_default: bool,
    /// Rule of routers that have none, as a template (default ``Host(`{{ normalize .Name }}`)``).
    #[serde(default = "defaults::default_rule", alias = "defaultrule")]
    pub default_rule: String,
    /// Aggregate health states that are routed: `passing`, `warning`, `critical`, `maintenance`
    /// or `any` (default `["passing", "warning"]`, as Traefik).
    #[serde(default = "defaults::strict_checks", alias = "strictchecks")]
    pub strict_checks: Vec<String>,
    /// Connecting to Consul (default 5 s).
    #[serde(default = "defaults::connect_timeout", alias = "connecttimeout")]
    pub connect_timeout: ConfigDuration,
    /// How long one blocking query may wait for a change (default 55 s, at most 10 min). Traefik's
    /// `endpoint.endpointWaitTime` is the same setting.
    #[serde(default)]
    pub wait: Option<ConfigDuration>,
    /// Blocking queries each watch may issue back to back before the rate limit applies
    /// (token-bucket burst; default 2, as Consul's documentation recommends).
    #[serde(default = "defaults::watch_burst", alias = "watchburst")]
    pub watch_burst: u32,
    /// One more blocking query is allowed per this interval once the burst is spent (default 1 s).
    #[serde(default = "defaults::watch_refill", alias = "watchrefill")]
    pub watch_refill: ConfigDuration,
    /// Let any Consul server answer (`?stale`).
    #[serde(default)]
    pub stale: bool,
    /// Force a consistent read through the leader (`?consistent`).
    #[serde(default, alias = "requireconsistent")]
    pub require_consistent: bool,
    /// Traefik's `watch`: drover always watches (accepted, ignored).
    #[serde(default)]
    pub watch: Option<bool>,
    /// Traefik's polling interval: drover uses blocking queries instead (accepted, ignored).
    #[serde(default, alias = "refreshinterval")]
    pub refresh_interval: Option<ConfigDuration>,
    /// Traefik's agent-cache switch (accepted, ignored).
    #[serde(default)]
    pub cache: Option<bool>,
    /// Not supported: refused.
    #[serde(default)]
    pub constraints: Option<Ignored>,
    /// Not supported (Consul Connect): refused.
    #[serde(default, alias = "connectaware")]
    pub connect_aware: Option<Ignored>,
    /// Not supported (Consul Connect): refused.
    #[serde(default, alias = "connectbydefault")]
    pub connect_by_default: Option<Ignored>,
    /// Not supported (Consul Connect): refused.
    #[serde(default, alias = "servicename")]
    pub service_name: Option<Ignored>,
    /// Not supported (Consul Enterprise namespaces): refused.
    #[serde(default)]
    pub namespaces: Option<Ignored>,
}

/// `[providers.consulCatalog.endpoint]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    /// `host:port` of a Consul agent (default `127.0.0.1:8500`); `http://host:port` is accepted.
    #[serde(default = "defaults::address")]
    pub address: String,
    /// `http` (default) or `https` (then `tls` says how to verify Consul).
    #[serde(default = "defaults::scheme")]
    pub scheme: String,
    /// Datacenter to query (`dc=`); the agent's own when absent.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// ACL token, sent as `X-Consul-Token`. Never logged or shown.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Traefik's name for `wait`.
    #[serde(default, alias = "endpointwaittime")]
    pub endpoint_wait_time: Option<ConfigDuration>,
    /// TLS settings for `scheme = "https"`.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// HTTP basic authentication (for a proxy in front of Consul).
    #[serde(default, alias = "httpauth")]
    pub http_auth: Option<HttpAuth>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            address: defaults::address(),
            scheme: defaults::scheme(),
            datacenter: None,
            token: None,
            endpoint_wait_time: None,
            tls: None,
            http_auth: None,
        }
    }
}

/// `endpoint.httpAuth`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// User name.
    pub username: String,
    /// Password. Never logged or shown.
    pub password: Secret,
}

/// A credential from the configuration: its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de).map(Secret)
    }
}

/// A health state `strictChecks` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// One aggregate state.
    State(crate::consul::health::Status),
    /// Every state, including unknown ones.
    Any,
}

impl ConsulCatalogConfig {
    /// Checks everything that can be checked without Consul; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let key = |k: &str| format!("providers.consulCatalog.{k}");
        for (present, name, why) in [
            (
                self.constraints.is_some(),
                "constraints",
                "is not supported by drover yet; without it drover would route services the constraint excludes. Use tags (`<prefix>.enable`) and `exposedByDefault = false` instead",
            ),
            (self.connect_aware.is_some(), "connectAware", "Consul Connect is not supported by drover"),
            (self.connect_by_default.is_some(), "connectByDefault", "Consul Connect is not supported by drover"),
            (self.service_name.is_some(), "serviceName", "Consul Connect is not supported by drover"),
            (self.namespaces.is_some(), "namespaces", "Consul Enterprise namespaces are not supported by drover"),
        ] {
            if present {
                return Err(format!("{}: {why}", key(name)));
            }
        }
        if self.prefix.is_empty() || self.prefix.contains(['.', '=']) || self.prefix.contains(char::is_whitespace) {
            return Err(format!(
                "{}: `{}` must be a non-empty word without `.`, `=` or spaces",
                key("prefix"),
                self.prefix
            ));
        }
        DefaultRule::parse(&self.default_rule).map_err(|e| format!("{}: {e}", key("defaultRule")))?;
        self.admitted()?;
        if self.wait.is_some() && self.endpoint.endpoint_wait_time.is_some() {
            return Err(format!(
                "{} and {} are the same setting; set only one",
                key("wait"),
                key("endpoint.endpointWaitTime")
            ));
        }
        let wait = self.wait();
        if wait.is_zero() || wait > MAX_WAIT {
            return Err(format!(
                "{}: {:?} must be more than 0 and at most 10m (Consul's maximum)",
                key("wait"),
                wait
            ));
        }
        if self.connect_timeout.0.is_zero() {
            return Err(format!("{}: must be more than 0", key("connectTimeout")));
        }
        if self.watch_burst == 0 {
            return Err(format!("{}: must be at least 1", key("watchBurst")));
        }
        if self.require_consistent && self.stale {
            return Err(format!(
                "{} and {} contradict each other; set one",
                key("stale"),
                key("requireConsistent")
            ));
        }
        let scheme = self.endpoint.scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{}: `{}` must be http or https",
                key("endpoint.scheme"),
                self.endpoint.scheme
            ));
        }
        self.authority()?;
        if self.endpoint.address.to_ascii_lowercase().starts_with("http://") && self.endpoint.scheme.eq_ignore_ascii_case("https") {
            return Err(format!(
                "{}: an http:// address contradicts scheme = \"https\"",
                key("endpoint.address")
            ));
        }
        match (&self.endpoint.tls, self.uses_tls()) {
            (Some(_), false) => {
                return Err(format!(
                    "{}: TLS options are set but the scheme is http; set endpoint.scheme = \"https\"",
                    key("endpoint.tls")
                ))
            }
            (tls, true) => {
                crate::tls::client_config(&tls.clone().unwrap_or_default(), TLS_KEY, "Consul")?;
            }
            (None, false) => {}
        }
        if let Some(dc) = &self.endpoint.datacenter {
            if dc.is_empty() || !dc.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
                return Err(format!("{}: `{dc}` is not a datacenter name", key("endpoint.datacenter")));
            }
        }
        if let Some(token) = &self.endpoint.token {
            if token.0.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("{}: contains control characters", key("endpoint.token")));
            }
        }
        if let Some(auth) = &self.endpoint.http_auth {
            if auth.username.contains(':') || auth.username.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!(
                    "{}: must not contain `:` or control characters",
                    key("endpoint.httpAuth.username")
                ));
            }
        }
        Ok(())
    }

    /// The blocking-query wait in force.
    pub fn wait(&self) -> Duration {
        self.wait
            .or(self.endpoint.endpoint_wait_time)
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(55))
    }

    /// Whether drover talks TLS to Consul (`scheme = "https"` or an `https://` address).
    pub fn uses_tls(&self) -> bool {
        self.endpoint.scheme.eq_ignore_ascii_case("https") || self.endpoint.address.to_ascii_lowercase().starts_with("https://")
    }

    /// `host:port` of the agent, from `endpoint.address` (a scheme prefix is dropped; port 8500
    /// when none is given).
    pub fn authority(&self) -> Result<String, String> {
        let raw = self.endpoint.address.trim();
        let rest = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("https://"))
            .unwrap_or(raw)
            .trim_end_matches('/');
        let bad =
            || format!("providers.consulCatalog.endpoint.address: `{raw}` is not `host:port` (e.g. `127.0.0.1:8500` or `consul:8500`)");
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        let has_port = if let Some(v6) = rest.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(bad)?;
            match &v6[end + 1..] {
                "" => false,
                p => {
                    let port = p.strip_prefix(':').ok_or_else(bad)?;
                    port.parse::<u16>().map_err(|_| bad())?;
                    true
                }
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => {
                    if host.is_empty() || host.contains(':') || port.parse::<u16>().is_err() {
                        return Err(bad());
                    }
                    true
                }
                None => false,
            }
        };
        Ok(if has_port { rest.to_string() } else { format!("{rest}:8500") })
    }

    /// `strictChecks`, parsed.
    pub fn admitted(&self) -> Result<Vec<Admitted>, String> {
        use crate::consul::health::Status;
        if self.strict_checks.is_empty() {
            return Err(
                "providers.consulCatalog.strictChecks: empty; nothing would ever be routed (default is [\"passing\", \"warning\"])".into(),
            );
        }
        self.strict_checks
            .iter()
            .map(|s| match s.trim().to_ascii_lowercase().as_str() {
                "passing" => Ok(Admitted::State(Status::Passing)),
                "warning" => Ok(Admitted::State(Status::Warning)),
                "critical" => Ok(Admitted::State(Status::Critical)),
                "maintenance" => Ok(Admitted::State(Status::Maintenance)),
                "any" => Ok(Admitted::Any),
                other => Err(format!(
                    "providers.consulCatalog.strictChecks: `{other}` is not one of passing, warning, critical, maintenance, any"
                )),
            })
            .collect()
    }

    /// Keys that were accepted but have no effect, as dotted keys with why.
    pub fn ignored(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.watch.is_some() {
            out.push("providers.consulCatalog.watch: drover always watches Consul with blocking queries".to_string());
        }
        if self.refresh_interval.is_some() {
            out.push("providers.consulCatalog.refreshInterval: drover does not poll; it uses blocking queries".to_string());
        }
        if self.cache.is_some() {
            out.push("providers.consulCatalog.cache: agent caching is not used".to_string());
        }
        out
    }
}

mod defaults {
    use super::*;

    pub fn prefix() -> String {
        "drover".into()
    }
    pub fn default_rule() -> String {
        "Host(`{{ normalize .Name }}`)".into()
    }
    pub fn strict_checks() -> Vec<String> {
        vec!["passing".into(), "warning".into()]
    }
    pub fn connect_timeout() -> ConfigDuration {
        Duration::from_secs(5).into()
    }
    pub fn watch_burst() -> u32 {
        2
    }
    pub fn watch_refill() -> ConfigDuration {
        Duration::from_secs(1).into()
    }
    pub fn address() -> String {
        "127.0.0.1:8500".into()
    }
    pub fn scheme() -> String {
        "http".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConsulCatalogConfig, String> {
        let c: ConsulCatalogConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn defaults_follow_the_issue_and_traefik() {
        let c = parse("").unwrap();
        assert_eq!(c.prefix, "drover");
        assert!(!c.exposed_by_default);
        assert_eq!(c.wait(), Duration::from_secs(55));
        assert_eq!(c.authority().unwrap(), "127.0.0.1:8500");
        assert_eq!(
            c.admitted().unwrap(),
            vec![
                Admitted::State(crate::consul::health::Status::Passing),
                Admitted::State(crate::consul::health::Status::Warning)
            ]
        );
        assert!(!c.uses_tls());
    }

    #[test]
    fn traefik_keys_are_read() {
        let c = parse(
            "prefix = \"traefik\"\nexposedByDefault = true\nstrictChecks = [\"Passing\"]\nwatch = true\n\
             [endpoint]\naddress = \"http://consul:8501\"\ndatacenter = \"dc2\"\ntoken = \"s3cret\"\nendpointWaitTime = \"15s\"\n\
             [endpoint.httpAuth]\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        assert_eq!(c.authority().unwrap(), "consul:8501");
        assert_eq!(c.wait(), Duration::from_secs(15));
        assert_eq!(c.ignored().len(), 1);
        assert!(!format!("{c:?}").contains("s3cret"), "the token never shows in Debug");
        assert!(!format!("{c:?}").contains("password: \"p\""));
    }

    #[test]
    fn bad_settings_name_their_key() {
        for (text, needle) in [
            ("strictChecks = [\"healthy\"]", "strictChecks: `healthy`"),
            ("strictChecks = []", "strictChecks: empty"),
            ("wait = \"11m\"", "consulCatalog.wait"),
            ("wait = \"1s\"\n[endpoint]\nendpointWaitTime = \"2s\"", "set only one"),
            ("constraints = \"Tag(`a`)\"", "constraints: is not supported"),
            ("connectAware = true", "connectAware"),
            ("prefix = \"a.b\"", "prefix"),
            ("defaultRule = \"Host(`{{ .Nope }}`)\"", "defaultRule"),
            ("[endpoint]\naddress = \"consul:http\"", "endpoint.address"),
            ("[endpoint]\nscheme = \"ftp\"", "endpoint.scheme"),
            ("watchBurst = 0", "watchBurst"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?} → {err}");
        }
        let err = parse("[endpoint]\nadress = \"x\"").unwrap_err();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn tls_settings_are_checked_at_start() {
        let dir = crate::tls::testing::DIR;
        let c = parse(&format!("[endpoint]\nscheme = \"https\"\n[endpoint.tls]\nca = \"{dir}/ca.pem\"\n")).unwrap();
        assert!(c.uses_tls());
        let err = parse("[endpoint]\nscheme = \"https\"\n").unwrap_err();
        assert!(err.contains("endpoint.tls.ca is required"), "{err}");
        let err = parse("[endpoint.tls]\ninsecureSkipVerify = true\n").unwrap_err();
        assert!(err.contains("the scheme is http"), "{err}");
        let err = parse("[endpoint]\nscheme = \"https\"\n[endpoint.tls]\nca = \"/nonexistent/ca.pem\"\n").unwrap_err();
        assert!(err.contains("cannot read /nonexistent/ca.pem"), "{err}");
        let err = parse(&format!(
            "[endpoint]\nscheme = \"https\"\n[endpoint.tls]\nca = \"{dir}/ca.pem\"\ncert = \"{dir}/leaf.pem\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("cert and key go together"), "{err}");
        assert!(
            parse("[endpoint]\naddress = \"https://consul:8501\"\n[endpoint.tls]\ninsecureSkipVerify = true\n")
                .unwrap()
                .uses_tls()
        );
    }
}
