//! Backends behind drover that speak TLS or cleartext HTTP/2: a private CA made in the test
//! (rcgen), certificates it signs, and a hyper server (HTTP/1.1 and HTTP/2) that says what it
//! saw: the protocol, the SNI name, whether the client presented a certificate, and the request
//! trailers (echoed back as response trailers). The same words go in an `x-seen` response
//! header (for a forwardAuth server, whose body the client never sees), and a path starting
//! with `/deny` is answered 401.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// A certificate authority made for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), CN `cn`, signed by this CA.
    pub fn issue(&self, cn: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/file` and returns its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }
}

impl Leaf {
    /// Writes the certificate and key to `dir/<stem>.pem` and `dir/<stem>-key.pem`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert).expect("write certificate");
        std::fs::write(&key, &self.key).expect("write key");
        (cert, key)
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert.as_bytes())
            .collect::<Result<_, _>>()
            .expect("leaf PEM")
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key.as_bytes()).expect("key PEM")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a TLS backend is set up.
pub struct TlsBackend<'a> {
    /// Its certificate.
    pub leaf: &'a Leaf,
    /// Offer HTTP/2 by ALPN (besides HTTP/1.1).
    pub http2: bool,
    /// Require a client certificate signed by this CA.
    pub client_ca: Option<&'a Ca>,
}

/// Starts a TLS backend on 127.0.0.1; see the module docs for what it answers.
pub async fn start_tls(backend: TlsBackend<'_>) -> SocketAddr {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match backend.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                roots.add(cert.expect("CA PEM")).expect("CA added");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(backend.leaf.chain(), backend.leaf.private_key())
        .expect("server certificate");
    config.alpn_protocols = if backend.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate (or has none to give) just goes away.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let (_, session) = tls.get_ref();
                let seen = format!(
                    "sni={} client-cert={}",
                    session.server_name().unwrap_or("-"),
                    if session.peer_certificates().is_some_and(|c| !c.is_empty()) {
                        "yes"
                    } else {
                        "no"
                    },
                );
                serve(TokioIo::new(tls), seen).await;
            });
        }
    });
    addr
}

/// Starts a cleartext HTTP/2 (prior knowledge) backend on 127.0.0.1.
pub async fn start_h2c() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            tokio::spawn(serve(TokioIo::new(tcp), "sni=- client-cert=no".to_string()));
        }
    });
    addr
}

async fn serve<T>(io: TokioIo<T>, seen: String)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let seen = Arc::new(seen);
    let service = service_fn(move |req: Request<Incoming>| answer(req, seen.clone()));
    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(io, service).await;
}

/// `proto=<version> <seen> path=<path>`, and the request's trailers echoed as response trailers
/// (`x-echo-<name>`) with `grpc-status: 0` added, as a gRPC server ends its responses.
async fn answer(req: Request<Incoming>, seen: Arc<String>) -> Result<Response<BoxBody>, Infallible> {
    let version = req.version();
    let path = req.uri().path().to_string();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let collected = match req.into_body().collect().await {
        Ok(collected) => collected,
        Err(e) => return Ok(Response::builder().status(400).body(full(format!("body: {e}"))).expect("response")),
    };
    let request_trailers = collected.trailers().cloned();
    let body_len = collected.to_bytes().len();
    let text = format!("proto={version:?} {seen} path={path} authority={authority} body={body_len}\n");
    let Some(trailers) = request_trailers else {
        let status = if path.starts_with("/deny") { 401 } else { 200 };
        let response = Response::builder()
            .status(status)
            .header("x-seen", text.trim_end())
            .body(full(text.clone()))
            .expect("response");
        return Ok(response);
    };
    let mut echoed = HeaderMap::new();
    for (name, value) in &trailers {
        if let Ok(name) = http::HeaderName::from_bytes(format!("x-echo-{name}").as_bytes()) {
            echoed.insert(name, value.clone());
        }
    }
    echoed.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from(text))), Ok(Frame::trailers(echoed))];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    Ok(Response::new(BodyExt::boxed(body)))
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(text: String) -> BoxBody {
    BodyExt::boxed(Full::new(Bytes::from(text)))
}
