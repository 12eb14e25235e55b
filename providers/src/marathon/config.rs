//! `[providers.marathon]`: the static settings, with Traefik v2's key names, and their checking.
//!
//! What is read here is checked once, at start ([`MarathonConfig::validate`]), so a typo in an
//! endpoint or a credential that can never work is a configuration error naming the key, not a
//! provider that retries forever. Credentials are wrapped in [`Secret`], whose `Debug` hides them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::ConfigDuration;
use crate::labels::DefaultRule;
use crate::model::Ignored;
pub use crate::tls::TlsOptions;

/// `[providers.marathon]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MarathonConfig {
    /// One or more Marathon URLs, comma-separated (`http://m1:8080,http://m2:8080`). Default
    /// `http://127.0.0.1:8080`. A path is kept as a base (`http://master/service/marathon`).
    #[serde(default = "defaults::endpoint")]
    pub endpoint: String,
    /// HTTP basic authentication (`--http_credentials`).
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// A DC/OS authentication token, sent as `Authorization: token=<token>`.
    #[serde(default, alias = "dcostoken")]
    pub dcos_token: Option<Secret>,
    /// How `https://` endpoints are verified (a CA bundle, or `insecureSkipVerify`) and the
    /// client certificate, if Marathon asks for one.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// Route apps that have no `<prefix>.enable` label. Default false.
    #[serde(default, alias = "exposedbydefault")]
    pub exposed_by_default: bool,
    /// The rule of a router that has none (`.Name` is the app ID, `.ContainerName` the task ID).
    /// Default ``Host(`{{ normalize .Name }}`)``.
    #[serde(default, alias = "defaultrule")]
    pub default_rule: Option<String>,
    /// During a deployment, route only tasks whose readiness checks passed. Default false.
    #[serde(default, alias = "respectreadinesschecks")]
    pub respect_readiness_checks: bool,
    /// Always use the task's agent host name, even with container networking. Default false.
    #[serde(default, alias = "forcetaskhostname")]
    pub force_task_hostname: bool,
    /// Label prefix (`drover` by default; `traefik` reads a Traefik-labelled cluster as it is).
    #[serde(default = "defaults::prefix")]
    pub prefix: String,
    /// Follow the event stream (default true). When false, apps are read once.
    #[serde(default = "defaults::yes")]
    pub watch: bool,
    /// Connecting to Marathon. Default 5 s.
    #[serde(default = "defaults::dialer_timeout", alias = "dialertimeout")]
    pub dialer_timeout: ConfigDuration,
    /// From a request sent to its response head (and, for API calls, to the whole body).
    /// Default 60 s.
    #[serde(default = "defaults::response_header_timeout", alias = "responseheadertimeout")]
    pub response_header_timeout: ConfigDuration,
    /// TCP keep-alive period on connections to Marathon. Default 10 s.
    #[serde(default = "defaults::keep_alive", alias = "keepalive")]
    pub keep_alive: ConfigDuration,
    /// Accepted for Traefik compatibility; not applied on its own: the handshake is part of the
    /// request, which `responseHeaderTimeout` bounds.
    #[serde(default, alias = "tlshandshaketimeout")]
    pub tls_handshake_timeout: Option<ConfigDuration>,
    /// drover: an event stream that delivers no byte for this long is taken as dead and
    /// reconnected (Marathon sends a heartbeat about every 10 s). Default 30 s, at least 1 s.
    #[serde(default = "defaults::idle", alias = "eventstreamidletimeout")]
    pub event_stream_idle_timeout: ConfigDuration,
    /// Label constraints: not supported yet (an error, so nothing is exposed by surprise).
    #[serde(default)]
    pub constraints: Option<String>,
    /// Traefik's request tracing: accepted and ignored (use `log.level = "debug"`).
    #[serde(default)]
    pub trace: Option<Ignored>,
}

/// `[providers.marathon.basic]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name.
    #[serde(alias = "httpbasicauthuser")]
    pub http_basic_auth_user: String,
    /// Password.
    #[serde(alias = "httpbasicpassword")]
    pub http_basic_password: Secret,
}

/// A credential: deserialises from a string, never shows in `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

mod defaults {
    use super::*;

    pub fn endpoint() -> String {
        "http://127.0.0.1:8080".into()
    }
    pub fn prefix() -> String {
        "drover".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn dialer_timeout() -> ConfigDuration {
        Duration::from_secs(5).into()
    }
    pub fn response_header_timeout() -> ConfigDuration {
        Duration::from_secs(60).into()
    }
    pub fn keep_alive() -> ConfigDuration {
        Duration::from_secs(10).into()
    }
    pub fn idle() -> ConfigDuration {
        Duration::from_secs(30).into()
    }
}

impl Default for MarathonConfig {
    fn default() -> Self {
        Self {
            endpoint: defaults::endpoint(),
            basic: None,
            dcos_token: None,
            tls: None,
            exposed_by_default: false,
            default_rule: None,
            respect_readiness_checks: false,
            force_task_hostname: false,
            prefix: defaults::prefix(),
            watch: true,
            dialer_timeout: defaults::dialer_timeout(),
            response_header_timeout: defaults::response_header_timeout(),
            keep_alive: defaults::keep_alive(),
            tls_handshake_timeout: None,
            event_stream_idle_timeout: defaults::idle(),
            constraints: None,
            trace: None,
        }
    }
}

/// One Marathon instance: `http://host:port` plus an optional base path, no trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
}

impl Endpoint {
    /// Parses one endpoint of the `endpoint` list.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("http://") {
            ("http", rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            ("https", rest)
        } else {
            return Err(format!(
                "`{text}` is not an endpoint; write `http://host:port` or `https://host:port`"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains(['?', '#']) {
            return Err(format!(
                "`{text}`: expected `{scheme}://host:port` (no credentials in the URL; use `basic`)"
            ));
        }
        if path.contains(['?', '#']) {
            return Err(format!("`{text}`: an endpoint cannot have a query or fragment"));
        }
        let base = format!("{scheme}://{authority}{}", path.trim_end_matches('/'));
        base.parse::<http::Uri>().map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
        Ok(Self { base })
    }

    /// Whether the endpoint is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.base.starts_with("https://")
    }

    /// The URL of `path_and_query` (which starts with `/`) on this instance.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The endpoint as configured (for messages).
    pub fn as_str(&self) -> &str {
        &self.base
    }
}

/// The checked settings the provider runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Instances, in failover order.
    pub endpoints: Vec<Endpoint>,
    /// The `Authorization` header value, if any.
    pub authorization: Option<Secret>,
    /// The TLS client configuration, when an endpoint is `https://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// See [`MarathonConfig::exposed_by_default`].
    pub exposed_by_default: bool,
    /// The parsed `defaultRule`.
    pub default_rule: DefaultRule,
    /// See [`MarathonConfig::respect_readiness_checks`].
    pub respect_readiness_checks: bool,
    /// See [`MarathonConfig::force_task_hostname`].
    pub force_task_hostname: bool,
    /// Label prefix.
    pub prefix: String,
    /// Follow the event stream.
    pub watch: bool,
    /// Connect timeout.
    pub dial_timeout: Duration,
    /// Response head (and API body) timeout.
    pub response_timeout: Duration,
    /// TCP keep-alive.
    pub keep_alive: Duration,
    /// Event stream idle-read timeout.
    pub idle_timeout: Duration,
    /// Settings that were accepted but have no effect, for the log.
    pub warnings: Vec<String>,
}

impl MarathonConfig {
    /// Checks the settings; the error names the key (without the `providers.marathon.` prefix).
    pub fn validate(&self) -> Result<Settings, String> {
        let mut endpoints = Vec::new();
        for part in self.endpoint.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            endpoints.push(Endpoint::parse(part).map_err(|e| format!("endpoint: {e}"))?);
        }
        if endpoints.is_empty() {
            return Err("endpoint: no Marathon URL given".into());
        }
        let authorization = match (&self.basic, &self.dcos_token) {
            (Some(_), Some(_)) => return Err("`basic` and `dcosToken` cannot both be set".into()),
            (Some(basic), None) => {
                if basic.http_basic_auth_user.contains(':') {
                    return Err("basic.httpBasicAuthUser: a user name cannot contain `:`".into());
                }
                Some(Secret(crate::http_client::basic_auth(
                    &basic.http_basic_auth_user,
                    &basic.http_basic_password.0,
                )))
            }
            (None, Some(token)) => {
                if token.0.trim().is_empty() {
                    return Err("dcosToken is empty".into());
                }
                Some(Secret(format!("token={}", token.0.trim())))
            }
            (None, None) => None,
        };
        if let Some(auth) = &authorization {
            if http::HeaderValue::from_str(&auth.0).is_err() {
                return Err("the credentials contain characters that cannot be sent in an HTTP header".into());
            }
        }
        let default_rule = match &self.default_rule {
            Some(text) => DefaultRule::parse(text).map_err(|e| format!("defaultRule: {e}"))?,
            None => DefaultRule::default(),
        };
        if self.constraints.is_some() {
            return Err("constraints are not supported yet; use `exposedByDefault = false` and the enable label".into());
        }
        let prefix = self.prefix.trim().trim_end_matches('.').to_string();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
            return Err(format!("prefix `{}`: use letters, digits, `-` or `_`", self.prefix));
        }
        if self.event_stream_idle_timeout.0 < Duration::from_secs(1) {
            return Err("eventStreamIdleTimeout must be at least 1s (Marathon's heartbeat is about 10s)".into());
        }
        let mut warnings = Vec::new();
        let tls = if endpoints.iter().any(Endpoint::is_https) {
            let options = self.tls.clone().unwrap_or_default();
            Some(Arc::new(crate::tls::client_config(&options, "tls", "Marathon")?))
        } else {
            if self.tls.is_some() {
                warnings.push("providers.marathon.tls is not used: no endpoint is https://".to_string());
            }
            None
        };
        if self.tls_handshake_timeout.is_some() {
            warnings.push(
                "providers.marathon.tlsHandshakeTimeout is not applied on its own: responseHeaderTimeout bounds the handshake with the request"
                    .to_string(),
            );
        }
        if self.trace.is_some() {
            warnings.push("providers.marathon.trace is ignored; use log.level = \"debug\"".to_string());
        }
        Ok(Settings {
            endpoints,
            authorization,
            tls,
            exposed_by_default: self.exposed_by_default,
            default_rule,
            respect_readiness_checks: self.respect_readiness_checks,
            force_task_hostname: self.force_task_hostname,
            prefix,
            watch: self.watch,
            dial_timeout: self.dialer_timeout.0,
            response_timeout: self.response_header_timeout.0,
            keep_alive: self.keep_alive.0,
            idle_timeout: self.event_stream_idle_timeout.0,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MarathonConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn traefik_keys_and_defaults() {
        let c = parse(
            "endpoint = \"http://m1:8080, http://m2:8080/service/marathon/\"\nexposedByDefault = true\n[basic]\nhttpBasicAuthUser = \"u\"\nhttpBasicPassword = \"p\"\n",
        )
        .unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.endpoints[1].url("/v2/apps"), "http://m2:8080/service/marathon/v2/apps");
        assert_eq!(s.authorization.as_ref().unwrap().0, "Basic dTpw");
        assert!(s.exposed_by_default);
        assert_eq!(s.prefix, "drover");
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        let d = MarathonConfig::default().validate().unwrap();
        assert!(!d.exposed_by_default && d.watch);
        assert_eq!(d.endpoints[0].as_str(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err = |text: &str| parse(text).unwrap().validate().unwrap_err();
        assert!(err("endpoint = \"https://m:8443\"").starts_with("tls.ca is required"));
        assert!(err("endpoint = \"ftp://m:8080\"").starts_with("endpoint:"));
        assert!(err("endpoint = \"m:8080\"").starts_with("endpoint:"));
        assert!(err("endpoint = \" , \"").contains("no Marathon URL"));
        assert!(err("dcosToken = \"t\"\n[basic]\nhttpBasicAuthUser = \"u\"\nhttpBasicPassword = \"p\"").contains("cannot both"));
        assert!(err("defaultRule = \"Host(`{{ .Nope }}`)\"").starts_with("defaultRule:"));
        assert!(err("constraints = \"Label(`a`,`b`)\"").contains("not supported"));
        assert!(err("eventStreamIdleTimeout = \"10ms\"").contains("at least 1s"));
        assert!(parse("endpont = \"http://x\"").unwrap_err().to_string().contains("endpont"));
    }

    #[test]
    fn https_endpoints_need_a_way_to_verify_marathon() {
        let dir = crate::tls::testing::DIR;
        let ok = |text: &str| parse(text).unwrap().validate().unwrap();
        let err = |text: &str| parse(text).unwrap().validate().unwrap_err();
        let s = ok(&format!(
            "endpoint = \"https://m1:8443/marathon/, http://m2:8080\"\n[tls]\nca = \"{dir}/ca.pem\"\n"
        ));
        assert!(s.tls.is_some() && s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.endpoints[0].url("/v2/apps"), "https://m1:8443/marathon/v2/apps");
        assert!(s.endpoints[0].is_https() && !s.endpoints[1].is_https());
        assert!(ok("endpoint = \"https://m:8443\"\n[tls]\ninsecureSkipVerify = true\n")
            .tls
            .is_some());
        let e = err("endpoint = \"https://m:8443\"\n[tls]\nca = \"/nonexistent/ca.pem\"\n");
        assert!(e.starts_with("tls.ca: cannot read /nonexistent/ca.pem"), "{e}");
        let e = err(&format!(
            "endpoint = \"https://m:8443\"\n[tls]\nca = \"{dir}/ca.pem\"\nkey = \"{dir}/leaf-key.pem\"\n"
        ));
        assert!(e.contains("cert and key go together"), "{e}");
        let s = ok(&format!("[tls]\nca = \"{dir}/ca.pem\"\n"));
        assert!(
            s.tls.is_none() && s.warnings[0].contains("no endpoint is https://"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn token_auth_and_secrets_stay_hidden() {
        let c = parse("dcosToken = \"abc.def\"\n[tls]\ninsecureSkipVerify = true\n").unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.authorization.as_ref().unwrap().0, "token=abc.def");
        assert_eq!(s.warnings.len(), 1);
        assert!(!format!("{c:?} {s:?}").contains("abc.def"));
    }
}
