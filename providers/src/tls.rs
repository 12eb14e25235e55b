//! TLS to a provider's API (Consul's `endpoint.tls`, Marathon's and Docker's `tls`), in
//! Traefik's shape: a CA bundle, an optional client certificate and key (for servers that verify
//! clients), and `insecureSkipVerify`.
//!
//! The client that uses this configuration is the providers' one HTTP client (`http_client`).
//!
//! drover has no system root store wired in, so a CA bundle is required unless verification is
//! switched off; a clear error says so at start rather than failing every handshake later.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

/// The TLS options of a provider's client, in Traefik's shape (`ClientTLS`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsOptions {
    /// CA bundle path.
    #[serde(default)]
    pub ca: Option<String>,
    /// Client certificate path.
    #[serde(default)]
    pub cert: Option<String>,
    /// Client key path.
    #[serde(default)]
    pub key: Option<String>,
    /// Skip server certificate verification.
    #[serde(default, alias = "insecureskipverify")]
    pub insecure_skip_verify: bool,
}

/// The rustls client configuration for `options`, set at `key` (`providers.marathon.tls`…) and
/// used to reach `peer` (`Consul`, `Marathon`, `the Docker daemon`, for messages); errors name the
/// key and the file.
pub fn client_config(options: &TlsOptions, key: &str, peer: &str) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{key}: {e}"))?;
    let read = |path: &str, field: &str| std::fs::read(path).map_err(|e| format!("{key}.{field}: cannot read {path}: {e}"));
    let builder = match (&options.ca, options.insecure_skip_verify) {
        (_, true) => {
            tracing::warn!("{key}.insecureSkipVerify is set: {peer}'s certificate is not verified");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        }
        (Some(ca), false) => {
            let pem = read(ca, "ca")?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{key}.ca: {ca}: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{key}.ca: {ca} holds no usable CA certificate"));
            }
            builder.with_root_certificates(roots)
        }
        (None, false) => {
            return Err(format!(
                "{key}.ca is required: drover has no system root store, so it must be told which CA signed {peer}'s certificate \
                 (or set insecureSkipVerify = true, which does not verify it)"
            ))
        }
    };
    match (&options.cert, &options.key) {
        (Some(cert), Some(key_path)) => {
            let pem = read(cert, "cert")?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{key}.cert: {cert}: {e}"))?;
            let key_pem = read(key_path, "key")?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{key}.key: {key_path}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("{key}.cert/key: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(format!("{key}: cert and key go together; set both or neither")),
    }
}

/// The verifier of `insecureSkipVerify`, for any client configuration that offers the switch
/// (the servers transports too): accepts any certificate, still checks handshake signatures.
pub fn no_verification(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(NoVerification(provider))
}

/// `insecureSkipVerify`: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Test TLS material (`providers/testdata/tls`, see its README) and a server that uses it.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// The folder with `ca.pem`, `leaf.pem` (127.0.0.1 and localhost), `leaf-key.pem` and
    /// `other-ca.pem`.
    pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/tls");

    /// A blocking rustls server on 127.0.0.1 with the test leaf certificate: reads each
    /// connection's request head and answers it with `response`, then closes.
    pub fn server(response: &'static [u8]) -> SocketAddr {
        let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(format!("{DIR}/leaf.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{DIR}/leaf-key.pem")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), stream);
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(response);
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        addr
    }
}
