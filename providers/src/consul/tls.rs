//! TLS to Consul (`endpoint.scheme = "https"` with `endpoint.tls`), in Traefik's shape: a CA
//! bundle, an optional client certificate and key (for agents that verify clients), and
//! `insecureSkipVerify`.
//!
//! drover has no system root store wired in, so a CA bundle is required unless verification is
//! switched off; a clear error says so rather than failing every handshake later.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::consul::config::TlsOptions;

const KEY: &str = "providers.consulCatalog.endpoint.tls";

/// The rustls client configuration for `options`; errors name the key and the file.
pub fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{KEY}: {e}"))?;
    let builder = match (&options.ca, options.insecure_skip_verify) {
        (_, true) => {
            tracing::warn!("{KEY}.insecureSkipVerify is set: Consul's certificate is not verified");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        }
        (Some(ca), false) => {
            let pem = read(ca, "ca")?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{KEY}.ca: {ca}: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{KEY}.ca: {ca} holds no usable CA certificate"));
            }
            builder.with_root_certificates(roots)
        }
        (None, false) => {
            return Err(format!(
                "{KEY}.ca is required: drover has no system root store, so it must be told which CA signed Consul's certificate \
                 (or set insecureSkipVerify = true, which does not verify it)"
            ))
        }
    };
    match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let pem = read(cert, "cert")?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{KEY}.cert: {cert}: {e}"))?;
            let key_pem = read(key, "key")?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{KEY}.key: {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("{KEY}.cert/key: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(format!("{KEY}: cert and key go together; set both or neither")),
    }
}

fn read(path: &str, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{KEY}.{key}: cannot read {path}: {e}"))
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
