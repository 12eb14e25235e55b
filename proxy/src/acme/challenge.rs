//! The answers to challenges in flight, read by the data path: HTTP-01 key authorizations by
//! token (served under `/.well-known/acme-challenge/` on the challenge entrypoint, ahead of
//! every router and redirect) and TLS-ALPN-01 certificates by name (served to `acme-tls/1`
//! handshakes, RFC 8737).
//!
//! Both maps are empty almost always; a request pays a path-prefix comparison on the challenge
//! entrypoint only, and a handshake an ALPN scan.
//!
//! # HTTP-01 across instances
//!
//! Behind a load balancer (or Swarm's routing mesh) the CA's validation request may reach any
//! instance, not the one that ordered. So an HTTP-01 answer is also written as a file beside the
//! storage file (`<storage>.http01/<token>`), and an instance that does not know a token looks
//! there: every instance sharing the storage answers every token in flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Where HTTP-01 answers live.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of TLS-ALPN-01.
pub const ACME_TLS: &[u8] = b"acme-tls/1";

/// Challenges being answered, shared by every resolver and the data path.
#[derive(Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, String>>,
    tls: RwLock<HashMap<String, Arc<ServerConfig>>>,
    /// Directories where instances sharing a storage file leave their HTTP-01 answers.
    shared: Vec<PathBuf>,
}

/// Where HTTP-01 answers for the resolvers using `storage` are shared.
pub fn shared_dir(storage: &Path) -> PathBuf {
    let mut name = storage.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".http01");
    storage.with_file_name(name)
}

/// Whether `token` is a token (base64url, RFC 8555 §8.1): nothing that walks a path.
fn is_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 256 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// Challenges whose HTTP-01 answers are also looked up in `shared` directories.
    pub fn new(shared: Vec<PathBuf>) -> Self {
        Self { shared, ..Self::default() }
    }

    /// The key authorization to answer for a request to `path`, if it is a token in flight
    /// here or at another instance sharing a storage file.
    pub fn http01(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        if let Some(answer) = self.http.read().ok()?.get(token) {
            return Some(answer.clone());
        }
        if !is_token(token) {
            return None;
        }
        self.shared
            .iter()
            .find_map(|dir| std::fs::read_to_string(dir.join(token)).ok())
            .map(|answer| answer.trim().to_string())
    }

    /// Answers `token` with `key_authorization` until [`Challenges::forget_http01`], here and
    /// (through a file in `shared`) at every instance sharing the storage.
    pub fn answer_http01(&self, token: &str, key_authorization: &str, shared: Option<&Path>) {
        if let Ok(mut http) = self.http.write() {
            http.insert(token.to_string(), key_authorization.to_string());
        }
        if let Some(dir) = shared.filter(|_| is_token(token)) {
            let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join(token), key_authorization));
            if let Err(e) = written {
                tracing::warn!(
                    "cannot share the HTTP-01 answer in {}: {e}; only this instance answers it",
                    dir.display()
                );
            }
        }
    }

    /// Stops answering `token`.
    pub fn forget_http01(&self, token: &str, shared: Option<&Path>) {
        if let Ok(mut http) = self.http.write() {
            http.remove(token);
        }
        if let Some(dir) = shared.filter(|_| is_token(token)) {
            let _ = std::fs::remove_file(dir.join(token));
        }
    }

    /// The TLS configuration answering an `acme-tls/1` handshake for `name`.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<ServerConfig>> {
        self.tls.read().ok()?.get(name).cloned()
    }

    /// Answers `acme-tls/1` handshakes for `name` with a certificate carrying `digest` (the
    /// SHA-256 of the key authorization) in its `acmeIdentifier` extension.
    pub fn answer_tls_alpn01(&self, name: &str, digest: &[u8]) -> Result<(), String> {
        let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make the TLS-ALPN-01 key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
            .map_err(|e| format!("cannot make the TLS-ALPN-01 certificate for {name}: {e}"))?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot make the TLS-ALPN-01 certificate for {name}: {e}"))?;
        let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = crate::tls::provider::shared();
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| format!("TLS-ALPN-01 key: {e}"))?;
        // Served as it is: rustls's own certificate check (`with_single_cert`) refuses the
        // critical `acmeIdentifier` extension that RFC 8737 requires.
        let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS-ALPN-01: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Only(certified)));
        config.alpn_protocols = vec![ACME_TLS.to_vec()];
        if let Ok(mut tls) = self.tls.write() {
            tls.insert(name.to_string(), Arc::new(config));
        }
        Ok(())
    }

    /// Stops answering `acme-tls/1` for `name`.
    pub fn forget_tls_alpn01(&self, name: &str) {
        if let Ok(mut tls) = self.tls.write() {
            tls.remove(name);
        }
    }
}

/// One certificate for every handshake.
#[derive(Debug)]
struct Only(Arc<CertifiedKey>);

impl ResolvesServerCert for Only {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_in_flight_under_the_prefix_are_answered() {
        let challenges = Challenges::default();
        challenges.answer_http01("tok", "tok.thumb", None);
        assert_eq!(challenges.http01("/.well-known/acme-challenge/tok").as_deref(), Some("tok.thumb"));
        assert_eq!(challenges.http01("/.well-known/acme-challenge/other"), None);
        assert_eq!(challenges.http01("/tok"), None);
        challenges.forget_http01("tok", None);
        assert_eq!(challenges.http01("/.well-known/acme-challenge/tok"), None);
    }

    #[test]
    fn another_instances_answers_are_read_from_the_shared_directory_and_no_path_escapes_it() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let shared = shared_dir(&dir.path().join("acme.json"));
        let orderer = Challenges::default();
        let other = Challenges::new(vec![shared.clone()]);
        orderer.answer_http01("tok-1_A", "tok-1_A.thumb", Some(&shared));
        assert_eq!(
            other.http01("/.well-known/acme-challenge/tok-1_A").as_deref(),
            Some("tok-1_A.thumb")
        );
        std::fs::write(dir.path().join("secret"), "no").expect("write");
        assert_eq!(other.http01("/.well-known/acme-challenge/../secret"), None);
        orderer.forget_http01("tok-1_A", Some(&shared));
        assert_eq!(other.http01("/.well-known/acme-challenge/tok-1_A"), None);
    }

    #[test]
    fn a_tls_alpn_certificate_offers_only_acme_tls() {
        let challenges = Challenges::default();
        challenges.answer_tls_alpn01("a.test", &[7; 32]).expect("builds");
        let config = challenges.tls_alpn01("a.test").expect("answered");
        assert_eq!(config.alpn_protocols, vec![ACME_TLS.to_vec()]);
        challenges.forget_tls_alpn01("a.test");
        assert!(challenges.tls_alpn01("a.test").is_none());
    }
}
