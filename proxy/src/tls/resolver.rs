//! Choosing the certificate for a handshake: by SNI, exact name first, then a one-label
//! wildcard, then the default; among the certificates for a name (an ECDSA and an RSA one), the
//! first the client's signature schemes accept.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by the names they serve, built once per snapshot.
#[derive(Debug, Default)]
pub struct CertIndex {
    exact: HashMap<Box<str>, Vec<Arc<CertifiedKey>>>,
    /// `*.example.com` stored under `example.com`.
    wildcard: HashMap<Box<str>, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

/// The name under which `host` finds a wildcard certificate (`a.example.com` → `example.com`).
pub fn parent(host: &str) -> Option<&str> {
    host.split_once('.').map(|(_, rest)| rest).filter(|rest| !rest.is_empty())
}

impl CertIndex {
    /// Adds `key` for each of `names` (`*.x` names are wildcards).
    pub fn add(&mut self, names: &[String], key: &Arc<CertifiedKey>) {
        for name in names {
            let (map, name) = match name.strip_prefix("*.") {
                Some(base) => (&mut self.wildcard, base),
                None => (&mut self.exact, name.as_str()),
            };
            let keys = map.entry(name.into()).or_default();
            if !keys.iter().any(|k| Arc::ptr_eq(k, key)) {
                keys.push(key.clone());
            }
        }
    }

    /// Sets the default certificate(s).
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = vec![key];
    }

    /// Puts ECDSA certificates before RSA ones for each name: when a client accepts both, the
    /// cheaper signature wins.
    pub fn finish(&mut self) {
        let rank = |k: &Arc<CertifiedKey>| match k.key.algorithm() {
            rustls::SignatureAlgorithm::ECDSA => 0,
            rustls::SignatureAlgorithm::ED25519 => 1,
            _ => 2,
        };
        for keys in self.exact.values_mut().chain(self.wildcard.values_mut()) {
            keys.sort_by_key(rank);
        }
    }

    /// Whether a certificate other than the default names `host`.
    pub fn names(&self, host: &str) -> bool {
        self.exact.contains_key(host) || parent(host).is_some_and(|p| self.wildcard.contains_key(p))
    }

    /// The certificates for `sni`: exact, then wildcard, then (unless `strict`) the default.
    fn candidates(&self, sni: Option<&str>, strict: bool) -> &[Arc<CertifiedKey>] {
        if let Some(sni) = sni {
            if let Some(keys) = self.exact.get(sni) {
                return keys;
            }
            if let Some(keys) = parent(sni).and_then(|p| self.wildcard.get(p)) {
                return keys;
            }
        }
        if strict {
            &[]
        } else {
            &self.default
        }
    }
}

/// rustls's certificate choice for one set of TLS options.
#[derive(Debug)]
pub struct SniResolver {
    /// The snapshot's certificates.
    pub index: Arc<CertIndex>,
    /// `sniStrict`: no default certificate for an unknown or missing SNI.
    pub strict: bool,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let candidates = self.index.candidates(hello.server_name(), self.strict);
        let schemes = hello.signature_schemes();
        candidates
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| candidates.first())
            .cloned()
    }
}
