//! ACME timing against Debian's pebble (issue #24), printed: from a router appearing in the
//! watched routes file to the first HTTPS request that succeeds with the certificate pebble
//! issued for its name (verified against pebble's root and the name), p50/p99 over `NAMES`
//! names added one at a time, once with HTTP-01 and once with TLS-ALPN-01.
//!
//! ```text
//! cargo bench --bench acme              # NAMES=20
//! NAMES=50 cargo bench --bench acme
//! ```
//!
//! pebble runs with `PEBBLE_VA_NOSLEEP=1` (no artificial validation delay), so the figure is
//! drover's own path: the file watch and coalescing window (`providersThrottleDuration`,
//! 100 ms by default), the compilation that lists the new name, the order (account reuse, new
//! order, challenge answered, validation, key and CSR, certificate), storage, and the
//! recompilation that puts the certificate in force. drover runs in-process, one worker.

#[path = "../tests/support/pebble.rs"]
#[allow(dead_code)]
mod pebble;
#[path = "../tests/support/pki.rs"]
#[allow(dead_code)]
mod pki;
#[path = "../examples/whoami/server.rs"]
mod whoami;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drover::config::StaticConfig;
use drover::Drover;
use http_body_util::Empty;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// What `pebble` names as the command that installs it.
const SETUP: &str = "tests/setup.sh";

/// A loopback address with a port that was free a moment ago.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn main() {
    let names: usize = std::env::var("NAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let pebble = pebble::Pebble::start().await;
        let (backend, _whoami) = whoami::spawn("app").await;
        let root = pebble.root_pem().await;
        println!("acme: {names} names each, pebble {} with PEBBLE_VA_NOSLEEP=1", pebble.directory);
        for (label, challenge) in [
            ("HTTP-01", "httpChallenge = { entryPoint = \"web\" }"),
            ("TLS-ALPN-01", "tlsChallenge = {}"),
        ] {
            let mut times = series(&pebble, backend, &root, challenge, label, names).await;
            times.sort();
            let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
            println!(
                "  {label:<12} router in file → first verified HTTPS 200: p50 {:>6.0} ms   p99 {:>6.0} ms   max {:>6.0} ms",
                at(0.50).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
                times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            );
        }
    });
}

/// Adds `names` routers one at a time to a fresh drover; how long each took to serve HTTPS.
async fn series(pebble: &pebble::Pebble, backend: SocketAddr, root: &str, challenge: &str, label: &str, names: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let routes_file = dir.path().join("routes.toml");
    let service = format!("[http.services.app.loadBalancer]\nservers = [{{ url = \"http://{backend}\" }}]\n");
    std::fs::write(&routes_file, &service).expect("routes");
    let text = format!(
        "[entryPoints.web]\naddress = \"127.0.0.1:{}\"\n[entryPoints.websecure]\naddress = \"127.0.0.1:{}\"\n[api]\naddress = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[providers.file]\nfilename = \"{}\"\nwatch = true\n{}",
        pebble.http_port,
        pebble.tls_port,
        routes_file.display(),
        pebble.resolver("le", &dir.path().join("acme.json"), challenge, "")
    );
    let resolved = StaticConfig::parse(Path::new("acme-bench.toml"), &text).expect("static configuration");
    let drover = Drover::start(resolved, 1).expect("drover starts");
    let websecure = drover.entry_point("websecure").expect("websecure");
    let verifier = Verifying::new(root);
    let prefix = label.to_ascii_lowercase().replace('-', "");
    let mut routes = service;
    let mut times = Vec::with_capacity(names);
    for i in 0..names {
        let host = format!("{prefix}-{i}.bench.test");
        routes.push_str(&format!(
            "[http.routers.r{i}]\nrule = \"Host(`{host}`)\"\nentryPoints = [\"websecure\"]\nservice = \"app\"\ntls = {{ certResolver = \"le\" }}\n"
        ));
        let temporary = dir.path().join("routes.tmp");
        std::fs::write(&temporary, &routes).expect("routes");
        let started = Instant::now();
        std::fs::rename(&temporary, &routes_file).expect("swap routes");
        loop {
            if verifier.get(websecure, &host).await == Some(200) {
                times.push(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{host}: no verified HTTPS answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drover.shutdown();
    drover.wait();
    times
}

/// A TLS client that trusts only pebble's root and checks the name.
struct Verifying {
    config: Arc<rustls::ClientConfig>,
}

impl Verifying {
    fn new(root_pem: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots.add(cert.expect("root PEM")).expect("root");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { config: Arc::new(config) }
    }

    /// The status of `GET /` for `host`, or `None` when the handshake (or anything) fails.
    async fn get(&self, addr: SocketAddr, host: &str) -> Option<u16> {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from(host.to_string()).ok()?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(connection);
        let request = http::Request::get("/").header("host", host).body(Empty::<Bytes>::new()).ok()?;
        let response = sender.send_request(request).await.ok()?;
        Some(response.status().as_u16())
    }
}
