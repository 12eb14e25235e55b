//! Certificates: a pair (chain and key, each a file or inline PEM) read, checked and kept.
//!
//! A pair is read again on every compilation (a few kilobytes) and parsed only when its bytes
//! changed. A pair that fails its checks — no certificate, no key, a key that does not match,
//! no SAN, expired — is reported, and the **last good** version of the same pair keeps serving:
//! a certificate replaced by a broken file never takes a working host down. Names come from the
//! certificate's SANs, never from its file name or common name.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use x509_parser::extensions::GeneralName;

/// A certificate as the API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// The leaf's subject.
    pub subject: String,
    /// Its DNS and IP SANs, lower-case.
    pub sans: Vec<String>,
    /// Its issuer.
    pub issuer: String,
    /// Its serial number, hex.
    pub serial: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
    /// `ECDSA`, `RSA` or `Ed25519`.
    pub key_type: &'static str,
    /// Where it came from: a file path, `inline`, or `generated`.
    pub source: String,
    /// The provider that named it (`file`), or `drover` for the generated one.
    pub provider: String,
    /// Whether it is the default certificate (served when no other matches).
    pub default: bool,
    /// TLS routers whose hosts it serves.
    pub used_by: Vec<String>,
    /// What is wrong with the current files (the last good version still serves).
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// For a certificate from an ACME resolver: its resolver, state and next try.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeInfo>,
}

/// What the API shows of an ACME certificate's life.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmeInfo {
    /// The resolver.
    pub resolver: String,
    /// The names ordered, `main` first.
    pub domains: Vec<String>,
    /// `ordering`, `valid`, `renewing`, `waiting` (another instance orders) or `failed`.
    pub state: crate::acme::State,
    /// Why the last order failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a failed order is tried again, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_try: Option<String>,
    /// When the certificate is due for renewal, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
    /// Failed orders in a row.
    pub failures: u32,
    /// Orders this instance attempted for these names since it started.
    pub orders: u64,
}

impl AcmeInfo {
    /// The API's view of `entry`.
    pub fn of(entry: &crate::acme::Entry) -> Self {
        Self {
            resolver: entry.resolver.clone(),
            domains: entry.domain.names().map(str::to_string).collect(),
            state: entry.state,
            error: entry.error.clone(),
            next_try: entry.next_try.map(rfc3339),
            renew_at: entry.renew_at.map(rfc3339),
            failures: entry.failures,
            orders: entry.orders,
        }
    }
}

/// A parsed, checked pair.
#[derive(Debug)]
pub struct Loaded {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// Names it serves (its SANs, lower-case; `*.example.com` for a wildcard).
    pub names: Vec<String>,
    /// What the API shows (without `used_by` and errors).
    pub info: CertInfo,
}

/// One pair as written: each side a path or PEM text.
pub type PairSource = (String, String);

struct Entry {
    bytes: (Vec<u8>, Vec<u8>),
    error: Option<String>,
    good: Option<Arc<Loaded>>,
}

/// Pairs read so far, with the last good version of each; kept across compilations.
#[derive(Default)]
pub struct CertCache {
    entries: HashMap<PairSource, Entry>,
    generated: Option<Arc<Loaded>>,
}

impl std::fmt::Debug for CertCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertCache").field("pairs", &self.entries.len()).finish()
    }
}

/// Whether `source` is PEM text rather than a path.
fn is_inline(source: &str) -> bool {
    source.trim_start().starts_with("-----BEGIN")
}

fn describe(source: &str) -> String {
    if is_inline(source) {
        "inline PEM".to_string()
    } else {
        source.to_string()
    }
}

fn read(source: &str, what: &str) -> Result<Vec<u8>, String> {
    if is_inline(source) {
        return Ok(source.as_bytes().to_vec());
    }
    std::fs::read(source).map_err(|e| format!("{what} {source}: cannot read: {e}"))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `secs` as RFC 3339 UTC.
pub fn rfc3339(secs: i64) -> String {
    let c = crate::civil::civil(secs.max(0) as u64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

impl CertCache {
    /// The pair `source` as it should serve now, and what is wrong with its files if anything.
    /// `None` to serve: it never loaded.
    pub fn load(&mut self, source: &PairSource) -> (Option<Arc<Loaded>>, Option<String>) {
        let bytes = match (read(&source.0, "certFile"), read(&source.1, "keyFile")) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                let entry = self.entries.get(source);
                return (entry.and_then(|e| e.good.clone()), Some(e));
            }
        };
        if let Some(entry) = self.entries.get(source) {
            if entry.bytes == bytes {
                return (entry.good.clone(), entry.error.clone());
            }
        }
        let parsed = parse(&bytes.0, &bytes.1, &describe(&source.0), now_unix());
        let entry = self.entries.entry(source.clone()).or_insert(Entry {
            bytes: (Vec::new(), Vec::new()),
            error: None,
            good: None,
        });
        entry.bytes = bytes;
        match parsed {
            Ok(loaded) => {
                entry.good = Some(Arc::new(loaded));
                entry.error = None;
            }
            Err(why) => {
                let file = describe(&source.0);
                let why = format!("{file}: {why}");
                if entry.good.is_some() {
                    tracing::error!("certificate {file} was replaced by a broken one ({why}); the previous one keeps serving");
                } else {
                    tracing::error!("certificate {why}");
                }
                entry.error = Some(why);
            }
        }
        (entry.good.clone(), entry.error.clone())
    }

    /// The self-signed default certificate, generated once per process.
    pub fn generated(&mut self) -> Result<Arc<Loaded>, String> {
        if let Some(generated) = &self.generated {
            return Ok(generated.clone());
        }
        let loaded = Arc::new(generate()?);
        tracing::warn!(
            "no default certificate is configured (tls.stores.default.defaultCertificate): serving a generated self-signed one (CN `DROVER DEFAULT CERT`) to clients whose SNI no certificate names"
        );
        self.generated = Some(loaded.clone());
        Ok(loaded)
    }

    /// Forgets pairs no configuration names any more.
    pub fn retain(&mut self, used: &HashSet<PairSource>) {
        self.entries.retain(|source, _| used.contains(source));
    }

    /// The files the pairs in use are read from, for the watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        self.entries
            .keys()
            .flat_map(|(c, k)| [c, k])
            .filter(|s| !is_inline(s))
            .map(PathBuf::from)
            .collect()
    }
}

/// Parses and checks one pair read at `now` (Unix seconds); `file` names it in messages.
pub fn parse(cert_pem: &[u8], key_pem: &[u8], file: &str, now: i64) -> Result<Loaded, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate file does not parse as PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("no certificate (expected a PEM `CERTIFICATE` block)".into());
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("no private key in the key file ({e})"))?;
    let provider = super::provider::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    let key_type = match signing.algorithm() {
        rustls::SignatureAlgorithm::ECDSA => "ECDSA",
        rustls::SignatureAlgorithm::RSA => "RSA",
        rustls::SignatureAlgorithm::ED25519 => "Ed25519",
        _ => "other",
    };
    let certified = CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err("the key does not match the certificate".into()),
        // Key types whose public key rustls cannot compare: nothing to check.
        Err(_) => {}
    }
    let (_, x509) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("the certificate does not parse: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.trim_end_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default()).to_string()),
                    16 => names.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        return Err("no SAN: drover takes a certificate's names from its subjectAltName extension, and this one has none".into());
    }
    let not_after = x509.validity().not_after.timestamp();
    if not_after < now {
        return Err(format!("expired on {}", rfc3339(not_after)));
    }
    Ok(Loaded {
        key: Arc::new(certified),
        info: CertInfo {
            subject: x509.subject().to_string(),
            sans: names.clone(),
            issuer: x509.issuer().to_string(),
            serial: x509.raw_serial_as_string().replace(':', ""),
            not_after: rfc3339(not_after),
            not_after_unix: not_after,
            key_type,
            source: file.to_string(),
            provider: String::new(),
            default: false,
            used_by: Vec::new(),
            errors: Vec::new(),
            acme: None,
        },
        names,
    })
}

/// A self-signed ECDSA P-256 certificate for `drover.default` (rcgen's validity: until 4096).
fn generate() -> Result<Loaded, String> {
    let key_pair = rcgen::KeyPair::generate().map_err(|e| format!("cannot generate the default certificate's key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec!["drover.default".to_string()])
        .map_err(|e| format!("cannot build the default certificate: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "DROVER DEFAULT CERT");
    let now = now_unix();
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| format!("cannot sign the default certificate: {e}"))?;
    let pem_cert = cert.pem();
    let pem_key = key_pair.serialize_pem();
    let mut loaded = parse(pem_cert.as_bytes(), pem_key.as_bytes(), "generated", now)?;
    loaded.info.provider = "drover".into();
    loaded.info.default = true;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_pair_names_its_sans() {
        let (cert, key) = pair(&["a.test", "*.b.test"]);
        let loaded = parse(cert.as_bytes(), key.as_bytes(), "x.pem", now_unix()).expect("loads");
        assert_eq!(loaded.names, vec!["a.test", "*.b.test"]);
        assert_eq!(loaded.info.key_type, "ECDSA");
    }

    #[test]
    fn broken_pairs_say_what_is_wrong() {
        let (cert, _) = pair(&["a.test"]);
        let (_, other_key) = pair(&["a.test"]);
        let err = parse(cert.as_bytes(), other_key.as_bytes(), "x.pem", now_unix()).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let err = parse(b"", other_key.as_bytes(), "x.pem", now_unix()).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let err = parse(cert.as_bytes(), b"nothing", "x.pem", now_unix()).unwrap_err();
        assert!(err.contains("no private key"), "{err}");
        let (cert, key) = pair(&["a.test"]);
        // rcgen certificates are valid until 4096: read them from after that.
        let err = parse(cert.as_bytes(), key.as_bytes(), "x.pem", 70_000_000_000).unwrap_err();
        assert!(err.starts_with("expired on "), "{err}");
    }

    #[test]
    fn inline_pem_loads_like_a_file_and_is_not_watched() {
        let (cert, key) = pair(&["inline.test"]);
        let mut cache = CertCache::default();
        let (loaded, error) = cache.load(&(cert, key));
        assert!(error.is_none(), "{error:?}");
        let loaded = loaded.expect("inline PEM loads");
        assert_eq!(loaded.names, vec!["inline.test"]);
        assert_eq!(loaded.info.source, "inline PEM");
        assert!(cache.files().is_empty(), "nothing to watch");
    }

    #[test]
    fn a_broken_replacement_keeps_the_last_good_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("c.key"));
        let (cert, key) = pair(&["a.test"]);
        std::fs::write(&cert_path, &cert).expect("write");
        std::fs::write(&key_path, &key).expect("write");
        let source = (cert_path.display().to_string(), key_path.display().to_string());
        let mut cache = CertCache::default();
        let (first, error) = cache.load(&source);
        assert!(first.is_some() && error.is_none());
        std::fs::write(&key_path, pair(&["a.test"]).1).expect("write");
        let (still, error) = cache.load(&source);
        assert!(Arc::ptr_eq(&first.expect("loaded").key, &still.expect("kept").key));
        assert!(error.expect("reported").contains("does not match"));
        assert_eq!(cache.files().len(), 2);
    }
}
