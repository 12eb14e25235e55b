//! TLS options (`[tls.options.<name>]`, Traefik's keys) turned into a rustls `ServerConfig`.
//!
//! Names are Traefik's (Go's `crypto/tls` names). Three kinds of name:
//! * what rustls implements: applied;
//! * what Traefik accepts but rustls deliberately lacks (TLS 1.0/1.1, CBC and RC4 suites, RSA key
//!   exchange, `CurveP521`): a **warning** naming what is ignored — drover never speaks them;
//! * anything else: an **error** — a typo must not pass for a setting, and options with an error
//!   are not used at all (the routers that need them are disabled rather than served with
//!   weaker settings).

use std::sync::Arc;

use drover_providers::model::{ClientAuth, TlsOptions};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ProducesTickets, ServerConfig, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, NamedGroup, SignatureScheme, SupportedProtocolVersion};

use super::resolver::{CertIndex, SniResolver};

/// One compiled set of options.
#[derive(Debug)]
pub struct Options {
    /// Its qualified name (`default`, `modern@file`).
    pub name: Arc<str>,
    /// What a handshake with these options uses.
    pub config: Arc<ServerConfig>,
}

/// Session resumption state shared by every options set and kept across snapshots, so that a
/// reload does not force clients into full handshakes.
#[derive(Debug, Clone)]
pub struct Resumption {
    cache: Arc<ServerSessionMemoryCache>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl Resumption {
    /// A session cache of 10,240 entries and a ticketer whose keys rotate (rustls: every 6 h,
    /// the previous key still accepted).
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            cache: ServerSessionMemoryCache::new(10_240),
            ticketer: super::provider::ticketer().map_err(|e| format!("cannot make a session ticketer: {e}"))?,
        })
    }
}

/// TLS 1.2 suites rustls (ring) implements, by Traefik's (Go's) names.
const TLS12_SUITES: &[(&str, CipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites: always all enabled (Go and Traefik do not configure them either).
const TLS13_SUITES: &[&str] = &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

/// Suites Go knows and rustls does not implement: no forward secrecy, CBC, RC4, 3DES.
pub(crate) const UNIMPLEMENTED_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_FALLBACK_SCSV",
];

/// Key-exchange groups by Traefik's names.
const CURVES: &[(&str, NamedGroup)] = &[
    ("X25519", NamedGroup::X25519),
    ("CurveP256", NamedGroup::secp256r1),
    ("CurveP384", NamedGroup::secp384r1),
];

/// Groups Traefik accepts that the ring provider lacks.
const UNIMPLEMENTED_CURVES: &[&str] = &["CurveP521", "X25519MLKEM768", "X25519Kyber768Draft00"];

/// What building one options set found: the options, or the errors that keep them out; and
/// warnings either way.
#[derive(Debug, Default)]
pub struct Findings {
    /// Names ignored (Traefik accepts them; drover never speaks them).
    pub warnings: Vec<String>,
    /// Names nobody knows, unreadable CA files: the options are not used.
    pub errors: Vec<String>,
}

fn version(name: &str, key: &str, findings: &mut Findings) -> Option<u8> {
    match name {
        "VersionTLS10" | "VersionTLS11" => {
            findings.warnings.push(format!(
                "{key} = `{name}`: drover speaks TLS 1.2 and 1.3 only; TLS 1.2 is the lowest it offers"
            ));
            Some(12)
        }
        "VersionTLS12" => Some(12),
        "VersionTLS13" => Some(13),
        other => {
            findings.errors.push(format!(
                "{key} = `{other}` is not a TLS version (VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13)"
            ));
            None
        }
    }
}

/// The client-certificate verifier for `auth` (`None`: no client certificates asked for).
fn client_verifier(auth: &ClientAuth, provider: &Arc<CryptoProvider>, findings: &mut Findings) -> Option<Arc<dyn ClientCertVerifier>> {
    let kind = auth.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let mut roots = rustls::RootCertStore::empty();
    for source in &auth.ca_files {
        let pem = if source.trim_start().starts_with("-----BEGIN") {
            source.as_bytes().to_vec()
        } else {
            match std::fs::read(source) {
                Ok(pem) => pem,
                Err(e) => {
                    findings.errors.push(format!("clientAuth.caFiles: {source}: cannot read: {e}"));
                    continue;
                }
            }
        };
        let certs: Result<Vec<CertificateDer<'static>>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => {
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    findings
                        .errors
                        .push(format!("clientAuth.caFiles: {source}: no usable CA certificate"));
                }
            }
            Ok(_) => findings
                .errors
                .push(format!("clientAuth.caFiles: {source}: no PEM certificate in it")),
            Err(e) => findings
                .errors
                .push(format!("clientAuth.caFiles: {source}: does not parse as PEM: {e}")),
        }
    }
    let verified = |optional: bool, findings: &mut Findings| -> Option<Arc<dyn ClientCertVerifier>> {
        if roots.is_empty() {
            findings.errors.push(format!(
                "clientAuth.clientAuthType = `{kind}` needs clientAuth.caFiles to verify against"
            ));
            return None;
        }
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone());
        let builder = if optional { builder.allow_unauthenticated() } else { builder };
        match builder.build() {
            Ok(v) => Some(v),
            Err(e) => {
                findings.errors.push(format!("clientAuth: {e}"));
                None
            }
        }
    };
    match kind {
        "NoClientCert" => None,
        "RequestClientCert" => Some(Arc::new(AnyClientCert::new(false, provider))),
        "RequireAnyClientCert" => Some(Arc::new(AnyClientCert::new(true, provider))),
        "VerifyClientCertIfGiven" => verified(true, findings),
        "RequireAndVerifyClientCert" => verified(false, findings),
        other => {
            findings.errors.push(format!(
                "clientAuth.clientAuthType = `{other}` is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ));
            None
        }
    }
}

/// Builds the options `name` from `spec`, serving certificates from `index`.
pub fn build(name: &str, spec: &TlsOptions, index: &Arc<CertIndex>, resumption: &Resumption) -> (Option<Options>, Findings) {
    let mut findings = Findings::default();
    let mut provider = super::provider::provider();

    let min = spec
        .min_version
        .as_deref()
        .map_or(Some(12), |v| version(v, "minVersion", &mut findings));
    let max = spec
        .max_version
        .as_deref()
        .map_or(Some(13), |v| version(v, "maxVersion", &mut findings));
    let versions: Vec<&'static SupportedProtocolVersion> = match (min, max) {
        (Some(min), Some(max)) => [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, v)| v)
            .collect(),
        _ => Vec::new(),
    };
    if versions.is_empty() && min.is_some() && max.is_some() {
        findings
            .errors
            .push("minVersion is above maxVersion: no TLS version is left".to_string());
    }

    if !spec.cipher_suites.is_empty() {
        let mut chosen = Vec::new();
        for suite in &spec.cipher_suites {
            if let Some((_, id)) = TLS12_SUITES.iter().find(|(n, _)| n == suite) {
                chosen.push(*id);
            } else if TLS13_SUITES.contains(&suite.as_str()) {
                findings.warnings.push(format!(
                    "cipherSuites: `{suite}` is a TLS 1.3 suite; TLS 1.3 suites are not configurable (all three are on), as in Traefik"
                ));
            } else if UNIMPLEMENTED_SUITES.contains(&suite.as_str()) {
                findings.warnings.push(format!(
                    "cipherSuites: `{suite}` is ignored: rustls does not implement it (no forward secrecy, or CBC/RC4/3DES)"
                ));
            } else {
                findings
                    .errors
                    .push(format!("cipherSuites: `{suite}` is not a cipher suite name Traefik knows"));
            }
        }
        if chosen.is_empty() && findings.errors.is_empty() {
            findings
                .warnings
                .push("cipherSuites names no TLS 1.2 suite drover has; its default TLS 1.2 suites stay on".to_string());
        } else if !chosen.is_empty() {
            // The listed order is the server's preference; TLS 1.3 suites keep theirs, first.
            let all = std::mem::take(&mut provider.cipher_suites);
            provider.cipher_suites = all
                .iter()
                .filter(|s| s.tls13().is_some())
                .cloned()
                .chain(chosen.iter().filter_map(|id| all.iter().find(|s| s.suite() == *id).cloned()))
                .collect();
        }
    }

    if !spec.curve_preferences.is_empty() {
        let mut chosen = Vec::new();
        for curve in &spec.curve_preferences {
            if let Some((_, group)) = CURVES.iter().find(|(n, _)| n == curve) {
                chosen.push(*group);
            } else if UNIMPLEMENTED_CURVES.contains(&curve.as_str()) {
                findings.warnings.push(format!(
                    "curvePreferences: `{curve}` is ignored: drover's TLS library does not implement it"
                ));
            } else {
                findings.errors.push(format!(
                    "curvePreferences: `{curve}` is not a curve name Traefik knows (CurveP256, CurveP384, CurveP521, X25519)"
                ));
            }
        }
        if !chosen.is_empty() {
            let all = std::mem::take(&mut provider.kx_groups);
            provider.kx_groups = chosen.iter().filter_map(|g| all.iter().find(|k| k.name() == *g).copied()).collect();
        }
    }

    let mut alpn: Vec<Vec<u8>> = match &spec.alpn_protocols {
        Some(list) => list
            .iter()
            .filter(|p| {
                let acme = p.as_str() == "acme-tls/1";
                if acme {
                    findings
                        .warnings
                        .push("alpnProtocols: `acme-tls/1` is answered only while an ACME challenge runs".to_string());
                }
                !acme
            })
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    alpn.dedup();

    let provider = Arc::new(provider);
    let verifier = spec
        .client_auth
        .as_ref()
        .and_then(|auth| client_verifier(auth, &provider, &mut findings));
    if !findings.errors.is_empty() {
        return (None, findings);
    }
    let builder = match ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions) {
        Ok(b) => b,
        Err(e) => {
            findings.errors.push(format!("these settings leave nothing to negotiate: {e}"));
            return (None, findings);
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver {
        index: index.clone(),
        strict: spec.sni_strict,
    }));
    config.alpn_protocols = alpn;
    config.ignore_client_order = true;
    config.max_early_data_size = 0;
    config.session_storage = resumption.cache.clone();
    if !spec.disable_session_tickets {
        config.ticketer = resumption.ticketer.clone();
    }
    (
        Some(Options {
            name: name.into(),
            config: Arc::new(config),
        }),
        findings,
    )
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for (and, for the
/// second, required) but not verified against any CA; the client still proves it holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    fn new(mandatory: bool, provider: &CryptoProvider) -> Self {
        Self {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(spec: &str) -> (Option<Options>, Findings) {
        let spec: TlsOptions = toml::from_str(spec).expect("options parse");
        build("t", &spec, &Arc::new(CertIndex::default()), &Resumption::new().expect("ticketer"))
    }

    #[test]
    fn names_rustls_lacks_are_warnings_and_unknown_names_errors() {
        let (options, findings) = built(
            "minVersion = \"VersionTLS10\"\ncipherSuites = [\"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]\ncurvePreferences = [\"CurveP521\", \"X25519\"]",
        );
        assert!(options.is_some(), "{findings:?}");
        assert_eq!(findings.warnings.len(), 3, "{findings:?}");
        assert!(findings.errors.is_empty());
        let (options, findings) = built("cipherSuites = [\"TLS_NOPE\"]\nminVersion = \"TLS1.2\"");
        assert!(options.is_none());
        assert_eq!(findings.errors.len(), 2, "{findings:?}");
        assert!(findings.errors[0].contains("minVersion"), "{findings:?}");
    }

    #[test]
    fn verified_client_auth_needs_a_ca() {
        let (options, findings) = built("[clientAuth]\nclientAuthType = \"RequireAndVerifyClientCert\"");
        assert!(options.is_none());
        assert!(findings.errors[0].contains("needs clientAuth.caFiles"), "{findings:?}");
        let (options, findings) = built("[clientAuth]\ncaFiles = [\"/nonexistent/ca.pem\"]\nclientAuthType = \"VerifyClientCertIfGiven\"");
        assert!(options.is_none());
        assert!(findings.errors[0].contains("/nonexistent/ca.pem"), "{findings:?}");
    }

    #[test]
    fn tls13_only_offers_no_tls12() {
        let (options, _) = built("minVersion = \"VersionTLS13\"");
        let config = options.expect("builds").config;
        assert!(config.alpn_protocols.iter().any(|p| p == b"h2"));
    }
}
