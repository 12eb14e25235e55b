//! TLS to servers (`https://` server URLs): the rustls client configuration a servers transport
//! asks for, and the handshake.
//!
//! Servers are verified against the bundled Mozilla roots (webpki-roots: drover's image has no
//! system store) unless a transport names `rootCAs`; the name checked and sent in SNI is the
//! server URL's host unless the transport sets `serverName`. ALPN offers `h2` then `http/1.1`
//! (only `http/1.1` with `disableHTTP2`, or for a request that upgrades), so a server that
//! speaks HTTP/2 gets it.
//!
//! Traefik's names are kept: `minVersion`/`maxVersion` (`VersionTLS12`, `VersionTLS13`) and
//! `cipherSuites` (IANA names, also Go's short spellings). What Traefik accepts but rustls does
//! not implement (TLS 1.0/1.1, CBC, RC4 and 3DES suites, RSA key exchange) is a warning naming
//! what is ignored; a name nobody knows is an error, so a typo cannot weaken a transport.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use drover_providers::model::ClientCertificate;

use crate::error::Error;

/// ALPN protocol ids.
const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

/// A transport's TLS client: one configuration offering HTTP/2, one offering only HTTP/1.1.
#[derive(Debug)]
pub struct TlsClient {
    offers_h2: Arc<ClientConfig>,
    http1_only: Arc<ClientConfig>,
    /// `serverName`, when the transport sets one.
    server_name: Option<ServerName<'static>>,
}

/// What a TLS client is built from: a servers transport's TLS keys, dynamic over static.
#[derive(Debug, Default)]
pub struct TlsSettings<'a> {
    /// `serverName`.
    pub server_name: Option<&'a str>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
    /// `rootCAs`: PEM files or inline PEM.
    pub root_cas: &'a [String],
    /// `certificates`: client certificates for servers that ask for one.
    pub certificates: &'a [ClientCertificate],
    /// `cipherSuites`.
    pub cipher_suites: Option<&'a [String]>,
    /// `minVersion`.
    pub min_version: Option<&'a str>,
    /// `maxVersion`.
    pub max_version: Option<&'a str>,
    /// How the keys are named where they were set, for messages.
    pub spelling: Spelling,
}

/// How the TLS keys are named where they were set: a servers transport and Traefik's
/// `ClientTLS` (forwardAuth's `tls`) spell the same settings differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spelling {
    /// `rootCAs[i]`, `certificates[0].certFile`, `certificates[0].keyFile`.
    #[default]
    ServersTransport,
    /// `ca`, `cert`, `key`.
    ClientTls,
}

impl Spelling {
    fn root_ca(self, key: &str, index: usize) -> String {
        match self {
            Self::ServersTransport => format!("{key}.rootCAs[{index}]"),
            Self::ClientTls => format!("{key}.ca"),
        }
    }

    fn certificate(self, key: &str) -> String {
        match self {
            Self::ServersTransport => format!("{key}.certificates[0]"),
            Self::ClientTls => format!("{key}.cert/key"),
        }
    }

    fn cert_file(self, key: &str) -> String {
        match self {
            Self::ServersTransport => format!("{key}.certificates[0].certFile"),
            Self::ClientTls => format!("{key}.cert"),
        }
    }

    fn key_file(self, key: &str) -> String {
        match self {
            Self::ServersTransport => format!("{key}.certificates[0].keyFile"),
            Self::ClientTls => format!("{key}.key"),
        }
    }
}

/// A built client, what was ignored building it, and the bytes of the files it read (so a
/// change in a file is a change of the transport).
#[derive(Debug)]
pub struct Built {
    /// The client.
    pub client: TlsClient,
    /// Settings accepted but not in force, each naming its key.
    pub warnings: Vec<String>,
    /// The contents of every file read.
    pub files: Vec<u8>,
}

fn provider() -> Arc<CryptoProvider> {
    crate::tls::provider::shared()
}

/// The client of a transport that sets nothing: Mozilla's roots, no client certificate.
pub fn default_client() -> &'static Arc<TlsClient> {
    static DEFAULT: OnceLock<Arc<TlsClient>> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        let built =
            build(&TlsSettings::default(), "serversTransport").expect("the default TLS client (bundled roots, no files) always builds");
        Arc::new(built.client)
    })
}

/// Reads `value` at `key`: inline PEM as it is, else the file it names. Errors name both.
fn pem(value: &str, key: &str, files: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let bytes = std::fs::read(value).map_err(|e| format!("{key}: cannot read `{value}`: {e}"))?;
    files.extend_from_slice(&bytes);
    Ok(bytes)
}

/// The label of `value` in messages: the file name, or `inline PEM`.
fn label(value: &str) -> &str {
    if value.trim_start().starts_with("-----BEGIN") {
        "inline PEM"
    } else {
        value
    }
}

/// Builds the TLS client for `settings`, set at `key` (`http.serversTransports.t`); errors name
/// the key and the file.
pub fn build(settings: &TlsSettings<'_>, key: &str) -> Result<Built, String> {
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    let mut provider = (*provider()).clone();
    if let Some(names) = settings.cipher_suites {
        provider.cipher_suites = cipher_suites(&provider, names, &format!("{key}.cipherSuites"), &mut warnings)?;
    }
    let provider = Arc::new(provider);
    let versions = versions(settings, key, &mut warnings)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{key}: {e}"))?;
    let builder = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(drover_providers::tls::no_verification(provider))
    } else {
        let mut roots = RootCertStore::empty();
        if settings.root_cas.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for (i, ca) in settings.root_cas.iter().enumerate() {
            let at = settings.spelling.root_ca(key, i);
            let bytes = pem(ca, &at, &mut files)?;
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{at}: `{}` is not PEM: {e}", label(ca)))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{at}: `{}` holds no usable CA certificate", label(ca)));
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match settings.certificates {
        [] => builder.with_no_client_auth(),
        [first, rest @ ..] => {
            if !rest.is_empty() {
                warnings.push(format!(
                    "{key}.certificates: only the first client certificate (`{}`) is presented; the others are ignored",
                    label(&first.cert_file)
                ));
            }
            let at = settings.spelling.certificate(key);
            let (cert_at, key_at) = (settings.spelling.cert_file(key), settings.spelling.key_file(key));
            let cert = pem(&first.cert_file, &cert_at, &mut files)?;
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{cert_at}: `{}` is not PEM: {e}", label(&first.cert_file)))?;
            if chain.is_empty() {
                return Err(format!("{cert_at}: `{}` holds no certificate", label(&first.cert_file)));
            }
            let key_bytes = pem(&first.key_file, &key_at, &mut files)?;
            let private = PrivateKeyDer::from_pem_slice(&key_bytes)
                .map_err(|e| format!("{key_at}: `{}` holds no private key: {e}", label(&first.key_file)))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("{at}: the key does not fit the certificate: {e}"))?
        }
    };
    let server_name = match settings.server_name {
        Some(name) => Some(
            ServerName::try_from(name.to_string()).map_err(|_| format!("{key}.serverName: `{name}` is not a DNS name or an IP address"))?,
        ),
        None => None,
    };
    config.alpn_protocols = vec![HTTP1.to_vec()];
    let http1_only = Arc::new(config.clone());
    config.alpn_protocols = vec![H2.to_vec(), HTTP1.to_vec()];
    Ok(Built {
        client: TlsClient {
            offers_h2: Arc::new(config),
            http1_only,
            server_name,
        },
        warnings,
        files,
    })
}

fn version(name: &str, at: &str, warnings: &mut Vec<String>) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "VersionTLS12" => Ok(&rustls::version::TLS12),
        "VersionTLS13" => Ok(&rustls::version::TLS13),
        "VersionTLS10" | "VersionTLS11" => {
            warnings.push(format!(
                "{at}: `{name}` is not supported (TLS 1.2 is the lowest drover speaks); TLS 1.2 is used"
            ));
            Ok(&rustls::version::TLS12)
        }
        other => Err(format!(
            "{at}: unknown TLS version `{other}` (expected VersionTLS12 or VersionTLS13)"
        )),
    }
}

fn versions(settings: &TlsSettings<'_>, key: &str, warnings: &mut Vec<String>) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |v: &SupportedProtocolVersion| u8::from(v.version == rustls::ProtocolVersion::TLSv1_3);
    let min = match settings.min_version {
        Some(name) => rank(version(name, &format!("{key}.minVersion"), warnings)?),
        None => 0,
    };
    let max = match settings.max_version {
        Some(name) => rank(version(name, &format!("{key}.maxVersion"), warnings)?),
        None => 1,
    };
    if min > max {
        return Err(format!("{key}: minVersion is above maxVersion"));
    }
    Ok([&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| (min..=max).contains(&rank(v)))
        .collect())
}

/// Suites Traefik (Go) knows that rustls does not implement: accepted with a warning (the list
/// entrypoint TLS options use too).
use crate::tls::options::UNIMPLEMENTED_SUITES as NOT_IMPLEMENTED;

/// The suites named in `names`, in the provider's order. As in Go, TLS 1.3's suites stay
/// enabled unless the list names some of them.
fn cipher_suites(
    provider: &CryptoProvider,
    names: &[String],
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let mut wanted = Vec::new();
    for name in names {
        // Go spells the ChaCha20 suites without their hash.
        let canonical = match name.as_str() {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => format!("{name}_SHA256"),
            _ => name.clone(),
        };
        match provider
            .cipher_suites
            .iter()
            .find(|s| s.suite().as_str() == Some(canonical.as_str()))
        {
            Some(suite) => wanted.push(suite.suite()),
            None if NOT_IMPLEMENTED.contains(&name.as_str()) => warnings.push(format!(
                "{at}: `{name}` is not implemented by drover (no forward secrecy or a CBC mode); ignored"
            )),
            None => return Err(format!("{at}: unknown cipher suite `{name}`")),
        }
    }
    let names_tls13 = wanted
        .iter()
        .any(|w| provider.cipher_suites.iter().any(|s| s.suite() == *w && s.tls13().is_some()));
    let chosen: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| wanted.contains(&s.suite()) || (!names_tls13 && s.tls13().is_some()))
        .copied()
        .collect();
    if chosen.is_empty() {
        return Err(format!("{at}: none of the named cipher suites is available"));
    }
    Ok(chosen)
}

impl TlsClient {
    /// The configuration that offers only HTTP/1.1 by ALPN (for clients other than the pool's,
    /// which do their own handshake: forwardAuth's).
    pub fn http1_config(&self) -> &Arc<ClientConfig> {
        &self.http1_only
    }

    /// The name to verify and send in SNI for a server whose URL host is `host` (IPv6 in
    /// brackets): `serverName` if set.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        ServerName::try_from(bare.to_string()).map_err(|_| format!("`{host}` is not a DNS name or an IP address"))
    }

    /// Runs the TLS handshake on `tcp` as `name`, offering HTTP/2 when `http2`.
    pub async fn handshake(&self, tcp: TcpStream, name: ServerName<'static>, http2: bool) -> Result<Handshake, Error> {
        let shared = if http2 { &self.offers_h2 } else { &self.http1_only };
        // A configuration of its own (sharing the session cache): its client-certificate
        // resolver notes whether this server asks for one.
        let asked = Arc::new(AtomicBool::new(false));
        let mut config = (**shared).clone();
        config.client_auth_cert_resolver = Arc::new(AskedFor {
            inner: shared.client_auth_cert_resolver.clone(),
            asked: asked.clone(),
        });
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| Error::tls(explain(&e), e))?;
        let http2 = stream.get_ref().1.alpn_protocol() == Some(H2);
        Ok(Handshake {
            stream,
            http2,
            client_cert_asked: asked.load(Ordering::Relaxed),
        })
    }
}

/// A finished TLS handshake.
pub struct Handshake {
    /// The connection.
    pub stream: TlsStream<TcpStream>,
    /// The server chose HTTP/2.
    pub http2: bool,
    /// The server asked for a client certificate. With TLS 1.3 it judges the one it got (or
    /// its absence) only after drover's side of the handshake is done: a refusal then shows as
    /// the connection closing on the first request.
    pub client_cert_asked: bool,
}

/// Said when a server that asked for a client certificate closed the connection before any
/// answer.
pub const CLIENT_CERT_REFUSED: &str =
    "the server asked for a client certificate, then closed the connection (see the servers transport's certificates)";

/// Notes that the server asked for a client certificate, and answers as `inner` does.
#[derive(Debug)]
struct AskedFor {
    inner: Arc<dyn ResolvesClientCert>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for AskedFor {
    fn resolve(&self, root_hint_subjects: &[&[u8]], sigschemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// The TLS failure somewhere in `error`'s chain of causes, explained: with TLS 1.3 a server
/// refuses a client certificate (or the lack of one) only after the client's side of the
/// handshake is done, so the refusal surfaces as the first read's error.
pub fn failure_in(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(tls));
        }
        if let Some(io) = e.downcast_ref::<h2::Error>().and_then(h2::Error::get_io) {
            if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Some(explain_rustls(tls));
            }
        }
        cause = e.source();
    }
    None
}

/// Why a handshake failed, in words a user can act on.
fn explain(error: &io::Error) -> &'static str {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => explain_rustls(tls),
        None => "the TLS handshake with the server broke off",
    }
}

fn explain_rustls(tls: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription, CertificateError};
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            "the server's TLS certificate is not signed by a trusted CA (set the servers transport's rootCAs)"
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            "the server's TLS certificate is not valid for the expected name (see the servers transport's serverName)"
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the server's TLS certificate has expired"
        }
        rustls::Error::InvalidCertificate(_) => "the server's TLS certificate was not accepted",
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::BadCertificate | AlertDescription::UnknownCA,
        ) => "the server refused drover's client certificate, or wanted one (see the servers transport's certificates)",
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion) => {
            "the server and drover share no TLS version or cipher suite"
        }
        _ => "the TLS handshake with the server failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_cipher_names_follow_traefik() {
        let names = [
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".to_string(),
            "TLS_RSA_WITH_AES_128_CBC_SHA".to_string(),
        ];
        let settings = TlsSettings {
            cipher_suites: Some(&names),
            min_version: Some("VersionTLS12"),
            max_version: Some("VersionTLS12"),
            ..TlsSettings::default()
        };
        let built = build(&settings, "http.serversTransports.t").expect("builds");
        assert_eq!(built.warnings.len(), 1, "{:?}", built.warnings);
        assert!(built.warnings[0].contains("TLS_RSA_WITH_AES_128_CBC_SHA"));
        let suites: Vec<_> = built
            .client
            .offers_h2
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert!(suites.contains(&rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256));
        assert!(!suites.contains(&rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));

        let typo = ["TLS_ECDHE_RSA_WITH_AES_128_GCM".to_string()];
        let err = build(
            &TlsSettings {
                cipher_suites: Some(&typo),
                ..TlsSettings::default()
            },
            "k",
        )
        .unwrap_err();
        assert!(
            err.contains("k.cipherSuites") && err.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM"),
            "{err}"
        );
        let err = build(
            &TlsSettings {
                min_version: Some("VersionTLS14"),
                ..TlsSettings::default()
            },
            "k",
        )
        .unwrap_err();
        assert!(err.contains("k.minVersion"), "{err}");
    }

    #[test]
    fn an_unreadable_ca_file_is_named_with_its_key() {
        let cas = ["/nonexistent/ca.pem".to_string()];
        let err = build(
            &TlsSettings {
                root_cas: &cas,
                ..TlsSettings::default()
            },
            "http.serversTransports.t",
        )
        .unwrap_err();
        assert!(
            err.starts_with("http.serversTransports.t.rootCAs[0]: cannot read `/nonexistent/ca.pem`"),
            "{err}"
        );
    }
}
