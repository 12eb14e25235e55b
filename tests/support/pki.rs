//! A test PKI (a CA issuing server and client certificates, written as PEM files) and a TLS
//! client that reports what the server presented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate authority that signs leaves.
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A leaf certificate and key, as PEM, and where they were written.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The leaf's DER (to compare with what a server presented).
    pub der: Vec<u8>,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `dir/<file>` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }

    /// A leaf for `names` (server and client use), written to `dir/<stem>.pem` and `.key`.
    pub fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        // Strict validators (sslyze's) require it.
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let leaf = Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file: dir.join(format!("{stem}.pem")),
            key_file: dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&leaf.cert_file, &leaf.cert_pem).expect("write leaf");
        std::fs::write(&leaf.key_file, &leaf.key_pem).expect("write key");
        leaf
    }
}

impl Leaf {
    /// `[[tls.certificates]]` for this pair.
    pub fn toml(&self) -> String {
        format!(
            "[[tls.certificates]]\ncertFile = \"{}\"\nkeyFile = \"{}\"\n",
            self.cert_file.display(),
            self.key_file.display()
        )
    }
}

/// How a test client connects.
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

/// Accepts any server certificate (the test reads which one it was instead).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>, bool);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        let all = self.0.signature_verification_algorithms.supported_schemes();
        if self.1 {
            // An RSA-only client: the ClientHello offers RSA signature schemes alone.
            all.into_iter().filter(|s| format!("{s:?}").starts_with("RSA")).collect()
        } else {
            all
        }
    }
}

impl Client {
    /// A client that accepts any server certificate, offers `alpn`, and presents `identity`.
    pub fn new(alpn: &[&str], identity: Option<&Leaf>) -> Self {
        Self::build(alpn, identity, false)
    }

    /// A client whose ClientHello offers only RSA signature schemes.
    pub fn rsa_only() -> Self {
        Self::build(&["http/1.1"], None, true)
    }

    fn build(alpn: &[&str], identity: Option<&Leaf>, rsa_only: bool) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider, rsa_only)));
        let mut config = match identity {
            Some(leaf) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("cert"),
                    PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key"),
                )
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Self { config: Arc::new(config) }
    }

    /// Connects to `addr` with `sni`; the TLS stream, or the handshake's error.
    pub async fn connect(&self, addr: SocketAddr, sni: &str) -> Result<TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        // With TLS 1.3 a refused client certificate shows only at the first read after this.
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())
    }

    /// The DER of the certificate `addr` presents for `sni`.
    pub async fn presented(&self, addr: SocketAddr, sni: &str) -> Result<Vec<u8>, String> {
        let tls = self.connect(addr, sni).await?;
        let (_, session) = tls.get_ref();
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| "no certificate presented".to_string())
    }

    /// `GET path` with `Host: host` over a new connection to `addr` with `sni`: the status and
    /// body, and the HTTP version spoken.
    pub async fn get(&self, addr: SocketAddr, sni: &str, host: &str, path: &str) -> Result<(u16, String, http::Version), String> {
        let tls = self.connect(addr, sni).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = hyper_util::rt::TokioIo::new(tls);
        let response = if h2 {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::get(format!("https://{host}{path}"))
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            sender.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::get(path)
                .header("host", host)
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            sender.send_request(req).await.map_err(|e| e.to_string())?
        };
        let status = response.status().as_u16();
        let version = response.version();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned(), version))
    }
}
