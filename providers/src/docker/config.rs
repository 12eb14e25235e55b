//! Static configuration of the Docker and Swarm providers (`[providers.docker]`,
//! `[providers.swarm]`), with Traefik v3's key names so a `traefik.toml` carries over.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::ConfigDuration;
use crate::labels::DefaultRule;

/// The Docker daemon's default endpoint.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// `[providers.docker]`: plain containers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockerConfig {
    /// `unix:///path/docker.sock` (default `unix:///var/run/docker.sock`) or `tcp://host:port`
    /// (`https://` and `http://` are accepted as well; TLS needs `[providers.docker.tls]`).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Route containers that have no `<prefix>.enable` label. Default **false**: a production edge
    /// must not expose everything it can see (Traefik's default is true).
    #[serde(default, alias = "exposedbydefault")]
    pub exposed_by_default: bool,
    /// The rule of a router that has none (Traefik template notation).
    #[serde(default = "default_rule", alias = "defaultrule")]
    pub default_rule: String,
    /// The network whose address is used when a container names none (`<prefix>.docker.network`).
    #[serde(default)]
    pub network: Option<String>,
    /// drover's label prefix (`drover`); `traefik` reads a Traefik-labelled stack unchanged.
    #[serde(default = "default_prefix", alias = "labelprefix")]
    pub label_prefix: String,
    /// Follow the events stream (default true); false reads the containers once.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Timeout for one API call's response head (the events stream is not cut by it). Default 30 s.
    #[serde(default = "default_timeout", alias = "httpclienttimeout")]
    pub http_client_timeout: ConfigDuration,
    /// TLS to a `tcp://` endpoint.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[providers.swarm]`: Swarm services (labels on the service, one server per running task).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SwarmConfig {
    /// As for Docker; must reach a manager node.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// As for Docker (default false).
    #[serde(default, alias = "exposedbydefault")]
    pub exposed_by_default: bool,
    /// As for Docker.
    #[serde(default = "default_rule", alias = "defaultrule")]
    pub default_rule: String,
    /// The overlay network whose task addresses are used (`<prefix>.swarm.network`).
    #[serde(default)]
    pub network: Option<String>,
    /// As for Docker.
    #[serde(default = "default_prefix", alias = "labelprefix")]
    pub label_prefix: String,
    /// Refresh on service and task-container events (default true); the poll runs regardless.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Poll period (default 5 s; Traefik polls every 15 s).
    #[serde(default = "default_refresh", alias = "refreshseconds")]
    pub refresh_seconds: ConfigDuration,
    /// As for Docker.
    #[serde(default = "default_timeout", alias = "httpclienttimeout")]
    pub http_client_timeout: ConfigDuration,
    /// As for Docker.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// TLS client settings for a `tcp://` Docker endpoint (Docker's `ca.pem`, `cert.pem`, `key.pem`),
/// in Traefik's shape: `ca`, `cert`, `key`, `insecureSkipVerify`. The CA is required unless
/// verification is off: the daemon's CA is almost always private and there is no system root
/// store.
pub type TlsConfig = crate::tls::TlsOptions;

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_string()
}
fn default_rule() -> String {
    "Host(`{{ normalize .Name }}`)".to_string()
}
fn default_prefix() -> String {
    "drover".to_string()
}
fn default_timeout() -> ConfigDuration {
    Duration::from_secs(30).into()
}
fn default_refresh() -> ConfigDuration {
    Duration::from_secs(5).into()
}
fn yes() -> bool {
    true
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            endpoint: default_endpoint(),
            exposed_by_default: false,
            default_rule: default_rule(),
            network: None,
            label_prefix: default_prefix(),
            watch: true,
            http_client_timeout: default_timeout(),
            tls: None,
        }
    }
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            endpoint: default_endpoint(),
            exposed_by_default: false,
            default_rule: default_rule(),
            network: None,
            label_prefix: default_prefix(),
            watch: true,
            refresh_seconds: default_refresh(),
            http_client_timeout: default_timeout(),
            tls: None,
        }
    }
}

/// Settings both providers share, checked.
#[derive(Clone, Debug)]
pub struct Common {
    /// Where the daemon is.
    pub endpoint: Endpoint,
    /// Route unlabelled items.
    pub exposed_by_default: bool,
    /// The parsed `defaultRule`.
    pub default_rule: DefaultRule,
    /// Provider-wide network choice.
    pub network: Option<String>,
    /// Label prefix, without the dot.
    pub label_prefix: String,
    /// Response-head timeout of one API call.
    pub timeout: Duration,
}

/// A parsed Docker endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over plain TCP.
    Tcp(String),
    /// `host:port` over TLS.
    Tls {
        /// `host:port`.
        authority: String,
        /// Certificates.
        tls: TlsConfig,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Tls { authority, .. } => write!(f, "tcp://{authority} (TLS)"),
        }
    }
}

/// Parses `endpoint` (with `tls`), or says what is wrong with it.
pub fn parse_endpoint(endpoint: &str, tls: Option<&TlsConfig>) -> Result<Endpoint, String> {
    let bad = |why: &str| format!("endpoint `{endpoint}`: {why}");
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if tls.is_some() {
            return Err(bad("`tls` applies to tcp:// endpoints only"));
        }
        if !path.starts_with('/') {
            return Err(bad("expected an absolute socket path, as in unix:///var/run/docker.sock"));
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let (rest, scheme_tls) = if let Some(rest) = endpoint.strip_prefix("tcp://") {
        (rest, None)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (rest, Some(false))
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        (rest, Some(true))
    } else {
        return Err(bad(
            "expected unix:///path, tcp://host:port, http://host:port or https://host:port (ssh:// is not supported)",
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return Err(bad("expected host:port after the scheme"));
    }
    let use_tls = match (scheme_tls, tls) {
        (Some(false), Some(_)) => return Err(bad("http:// with `tls`: use tcp:// or https://")),
        (Some(true), None) => return Err(bad("https:// needs [tls] with `ca` (or insecureSkipVerify)")),
        (_, t) => t.is_some(),
    };
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !host.ends_with(':') && port.parse::<u16>().is_ok(),
        None => false,
    };
    let authority = if has_port && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:{}", if use_tls { 2376 } else { 2375 })
    };
    match tls {
        Some(tls) => {
            if tls.cert.is_some() != tls.key.is_some() {
                return Err("tls: `cert` and `key` go together".into());
            }
            if tls.ca.is_none() && !tls.insecure_skip_verify {
                return Err("tls.ca is required: the CA that signed the daemon's certificate (or insecureSkipVerify = true, which does not verify it)".into());
            }
            Ok(Endpoint::Tls {
                authority,
                tls: tls.clone(),
            })
        }
        None => Ok(Endpoint::Tcp(authority)),
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!(
            "labelPrefix `{prefix}`: use letters, digits, `-` or `_` (e.g. `drover` or `traefik`)"
        ));
    }
    Ok(())
}

fn common(
    endpoint: &str,
    tls: Option<&TlsConfig>,
    exposed_by_default: bool,
    default_rule: &str,
    network: &Option<String>,
    label_prefix: &str,
    timeout: ConfigDuration,
) -> Result<Common, String> {
    check_prefix(label_prefix)?;
    let default_rule = DefaultRule::parse(default_rule)?;
    if timeout.0.is_zero() {
        return Err("httpClientTimeout must be more than 0".into());
    }
    Ok(Common {
        endpoint: parse_endpoint(endpoint, tls)?,
        exposed_by_default,
        default_rule,
        network: network.clone().filter(|n| !n.is_empty()),
        label_prefix: label_prefix.to_string(),
        timeout: timeout.0,
    })
}

impl DockerConfig {
    /// Checks the settings; the error names the key and what is wrong.
    pub fn check(&self) -> Result<Common, String> {
        common(
            &self.endpoint,
            self.tls.as_ref(),
            self.exposed_by_default,
            &self.default_rule,
            &self.network,
            &self.label_prefix,
            self.http_client_timeout,
        )
    }
}

impl SwarmConfig {
    /// Checks the settings; the error names the key and what is wrong.
    pub fn check(&self) -> Result<Common, String> {
        if self.refresh_seconds.0 < Duration::from_millis(100) {
            return Err("refreshSeconds must be at least 100ms".into());
        }
        common(
            &self.endpoint,
            self.tls.as_ref(),
            self.exposed_by_default,
            &self.default_rule,
            &self.network,
            &self.label_prefix,
            self.http_client_timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("unix:///var/run/docker.sock", None).unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            parse_endpoint("tcp://10.0.0.1", None).unwrap(),
            Endpoint::Tcp("10.0.0.1:2375".into())
        );
        assert_eq!(
            parse_endpoint("tcp://proxy:2375/", None).unwrap(),
            Endpoint::Tcp("proxy:2375".into())
        );
        assert_eq!(parse_endpoint("http://[::1]", None).unwrap(), Endpoint::Tcp("[::1]:2375".into()));
        let tls = TlsConfig {
            ca: Some("/c/ca.pem".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(
            parse_endpoint("tcp://d", Some(&tls)).unwrap(),
            Endpoint::Tls { authority, .. } if authority == "d:2376"
        ));
        for bad in ["ssh://x", "unix://rel", "tcp://", "npipe:////./pipe/docker", "https://x"] {
            assert!(parse_endpoint(bad, None).is_err(), "{bad}");
        }
        assert!(parse_endpoint("unix:///s", Some(&tls)).is_err());
        let no_ca = TlsConfig::default();
        assert!(parse_endpoint("tcp://d", Some(&no_ca)).unwrap_err().contains("tls.ca is required"));
        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        };
        assert!(parse_endpoint("tcp://d", Some(&insecure)).is_ok());
    }

    #[test]
    fn traefik_keys_and_checks() {
        let c: DockerConfig = toml::from_str(
            "endpoint = \"tcp://127.0.0.1:2375\"\nexposedByDefault = true\nnetwork = \"front\"\nlabelPrefix = \"traefik\"\nwatch = false\n",
        )
        .unwrap();
        let common = c.check().unwrap();
        assert!(common.exposed_by_default);
        assert_eq!(common.label_prefix, "traefik");
        assert!(toml::from_str::<DockerConfig>("constraints = \"x\"\n").is_err());
        let c: DockerConfig = toml::from_str("defaultRule = \"Host(`{{ .Nope }}`)\"\n").unwrap();
        assert!(c.check().unwrap_err().contains("not supported"));
        let c: DockerConfig = toml::from_str("labelPrefix = \"a.b\"\n").unwrap();
        assert!(c.check().is_err());
        assert!(!DockerConfig::default().exposed_by_default);
        let s: SwarmConfig = toml::from_str("refreshSeconds = 2\n").unwrap();
        assert_eq!(s.refresh_seconds.0, Duration::from_secs(2));
    }
}
