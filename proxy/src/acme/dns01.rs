//! DNS-01 through RFC 2136 (placeholder until the dns01 branch lands).

use serde::Deserialize;

/// `dnsChallenge`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsChallengeConfig {
    /// Only `rfc2136`.
    pub provider: String,
}

/// A DNS-01 solver.
#[derive(Debug)]
pub struct Dns01;

impl Dns01 {
    /// Not yet.
    pub fn new(_config: &DnsChallengeConfig, _env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        Err("dnsChallenge: not built yet".into())
    }
    /// Not yet.
    pub async fn present(&self, _domain: &str, _value: &str) -> Result<(), String> {
        Err("not built".into())
    }
    /// Not yet.
    pub async fn wait_propagated(&self, _domain: &str, _value: &str) -> Result<(), String> {
        Err("not built".into())
    }
    /// Not yet.
    pub async fn cleanup(&self, _domain: &str, _value: &str) -> Result<(), String> {
        Err("not built".into())
    }
}
