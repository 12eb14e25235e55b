//! `[certificatesResolvers.<name>.acme]`: Traefik's keys, plus drover's for renewal timing and
//! the lock that lets several instances share one storage file.

use std::path::PathBuf;
use std::time::Duration;

use drover_providers::duration::ConfigDuration;
use serde::Deserialize;

/// Let's Encrypt's production directory, Traefik's default `caServer`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[certificatesResolvers.<name>]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// The only kind of resolver there is.
    pub acme: AcmeConfig,
}

/// `[certificatesResolvers.<name>.acme]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AcmeConfig {
    /// The account's contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// Traefik's `acme.json` (mode 0600); several resolvers, and several drovers, may share it.
    #[serde(default = "storage")]
    pub storage: PathBuf,
    /// The ACME directory URL.
    #[serde(default = "ca_server", alias = "caserver")]
    pub ca_server: String,
    /// PEM files trusted for the ACME server's own HTTPS certificate (besides Mozilla's roots).
    #[serde(default, alias = "cacertificates")]
    pub ca_certificates: Vec<PathBuf>,
    /// The certificates' key type: `EC256`, `EC384`, `RSA2048`, `RSA4096` (Traefik's default),
    /// `RSA8192`.
    #[serde(default, alias = "keytype")]
    pub key_type: KeyType,
    /// Traefik's hint of the certificates' lifetime in hours; drover reads the real lifetime
    /// from each certificate and accepts the key for compatibility.
    #[serde(default, alias = "certificatesduration")]
    pub certificates_duration: Option<u64>,
    /// Traefik's `preferredChain`: accepted, not used (the server's default chain is served).
    #[serde(default, alias = "preferredchain")]
    pub preferred_chain: Option<String>,
    /// External account binding.
    #[serde(default)]
    pub eab: Option<Eab>,
    /// Answer HTTP-01 challenges on this entrypoint.
    #[serde(default, alias = "httpchallenge")]
    pub http_challenge: Option<HttpChallenge>,
    /// Answer TLS-ALPN-01 challenges (on the entrypoints serving the names).
    #[serde(default, alias = "tlschallenge")]
    pub tls_challenge: Option<TlsChallenge>,
    /// Answer DNS-01 challenges by RFC 2136 updates (the only way to wildcards).
    #[serde(default, alias = "dnschallenge")]
    pub dns_challenge: Option<super::dns01::DnsChallengeConfig>,
    /// drover: renew when this much validity is left; default a third of the certificate's
    /// lifetime (Traefik: 30 days for its 90-day certificates).
    #[serde(default, alias = "renewbefore")]
    pub renew_before: Option<ConfigDuration>,
    /// drover: how often certificates are checked for renewal (and failed orders retried when
    /// due); default 1 h.
    #[serde(default = "check_interval", alias = "checkinterval")]
    pub check_interval: ConfigDuration,
    /// drover: the first wait after a failed order; it doubles per failure (with jitter) up to
    /// `retryMax`. Default 1 min.
    #[serde(default = "retry_min", alias = "retrymin")]
    pub retry_min: ConfigDuration,
    /// drover: the longest wait between failed orders. Default 6 h.
    #[serde(default = "retry_max", alias = "retrymax")]
    pub retry_max: ConfigDuration,
    /// drover: a lock left by an instance that stopped refreshing it this long ago is stale.
    /// Default 2 min.
    #[serde(default = "lock_timeout", alias = "locktimeout")]
    pub lock_timeout: ConfigDuration,
}

/// `eab`: external account binding (ZeroSSL, Google, …).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Eab {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The HMAC key, base64url as the CA gives it.
    #[serde(alias = "hmacencoded")]
    pub hmac_encoded: String,
}

/// `httpChallenge`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpChallenge {
    /// The entrypoint the CA reaches on port 80.
    #[serde(alias = "entrypoint")]
    pub entry_point: String,
    /// Traefik's `delay` before telling the CA (accepted; drover answers at once).
    #[serde(default)]
    pub delay: Option<ConfigDuration>,
}

/// `tlsChallenge = {}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsChallenge {}

/// A certificate key type, as Traefik writes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    /// ECDSA P-256.
    #[serde(rename = "EC256")]
    Ec256,
    /// ECDSA P-384.
    #[serde(rename = "EC384")]
    Ec384,
    /// RSA 2048.
    #[serde(rename = "RSA2048", alias = "2048")]
    Rsa2048,
    /// RSA 4096 (Traefik's default).
    #[default]
    #[serde(rename = "RSA4096", alias = "4096")]
    Rsa4096,
    /// RSA 8192.
    #[serde(rename = "RSA8192", alias = "8192")]
    Rsa8192,
}

impl KeyType {
    /// Traefik's name for it in `acme.json` (`KeyType`).
    pub fn stored(self) -> &'static str {
        match self {
            Self::Ec256 => "P256",
            Self::Ec384 => "P384",
            Self::Rsa2048 => "2048",
            Self::Rsa4096 => "4096",
            Self::Rsa8192 => "8192",
        }
    }
}

fn storage() -> PathBuf {
    PathBuf::from("acme.json")
}

fn ca_server() -> String {
    LETS_ENCRYPT.to_string()
}

fn check_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(3600))
}

fn retry_min() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}

fn retry_max() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(6 * 3600))
}

fn lock_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(120))
}

impl AcmeConfig {
    /// Checks what serde cannot: a challenge is chosen, its entrypoint exists, the durations
    /// make sense. `entry_points` are the static configuration's names.
    pub fn check(&self, name: &str, entry_points: &[&str]) -> Result<(), String> {
        let at = format!("certificatesResolvers.{name}.acme");
        if self.http_challenge.is_none() && self.tls_challenge.is_none() && self.dns_challenge.is_none() {
            return Err(format!(
                "{at}: no challenge: add httpChallenge.entryPoint, tlsChallenge = {{}} or dnsChallenge"
            ));
        }
        if let Some(http) = &self.http_challenge {
            if !entry_points.contains(&http.entry_point.as_str()) {
                return Err(format!(
                    "{at}.httpChallenge.entryPoint: `{}` is not an entrypoint (known: {})",
                    http.entry_point,
                    entry_points.join(", ")
                ));
            }
        }
        if let Some(dns) = &self.dns_challenge {
            super::dns01::Dns01::new(dns, &|key| std::env::var(key).ok()).map_err(|why| format!("{at}.{why}"))?;
        }
        if !self.ca_server.starts_with("https://") && !self.ca_server.starts_with("http://") {
            return Err(format!("{at}.caServer: `{}` is not an http(s) URL", self.ca_server));
        }
        for (i, file) in self.ca_certificates.iter().enumerate() {
            std::fs::metadata(file).map_err(|e| format!("{at}.caCertificates[{i}]: cannot read {}: {e}", file.display()))?;
        }
        if self.retry_min.0.is_zero() || self.retry_max.0 < self.retry_min.0 {
            return Err(format!("{at}: retryMin must be above zero and at most retryMax"));
        }
        if self.check_interval.0.is_zero() {
            return Err(format!("{at}.checkInterval: must be above zero"));
        }
        if let Some(eab) = &self.eab {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(eab.hmac_encoded.trim_end_matches('='))
                .map_err(|e| format!("{at}.eab.hmacEncoded: not base64url ({e})"))?;
        }
        Ok(())
    }
}
