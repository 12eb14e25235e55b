//! ACME end to end against Debian's pebble (Let's Encrypt's test CA) on loopback: drover runs as
//! its binary (restarts and several instances are part of the story), pebble validates HTTP-01
//! and TLS-ALPN-01 on the ports drover's entrypoints listen on, and the certificates it issues
//! are checked by `openssl s_client` against pebble's root.
//!
//! pebble is installed by `tests/setup.sh`; a missing one fails the test naming that command.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pebble::Pebble;
use support::{client, drover_binary, free_port, send, whoami};

/// One drover process with entrypoints `web` (plain) and `websecure` (TLS) on given ports.
struct Instance {
    child: std::process::Child,
    api: SocketAddr,
    websecure: SocketAddr,
    log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    /// Starts drover with `resolvers` (static) and the routes file `routes`, and waits until
    /// its first configuration is in force.
    async fn start(dir: &Path, tag: &str, web: u16, websecure: u16, resolvers: &str, routes: &Path) -> Self {
        let api = free_port();
        let config = dir.join(format!("{tag}.toml"));
        std::fs::write(
            &config,
            format!(
                "[entryPoints.web]\naddress = \"127.0.0.1:{web}\"\n[entryPoints.websecure]\naddress = \"127.0.0.1:{websecure}\"\n[api]\naddress = \"{api}\"\n[log]\nlevel = \"info\"\n[providers.file]\nfilename = \"{}\"\nwatch = true\n{resolvers}",
                routes.display()
            ),
        )
        .expect("write static config");
        let log = dir.join(format!("{tag}.log"));
        let child = std::process::Command::new(drover_binary())
            .arg("--config")
            .arg(&config)
            .arg("--workers")
            .arg("1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("drover starts");
        let this = Self {
            child,
            api,
            websecure: format!("127.0.0.1:{websecure}").parse().expect("address"),
            log,
        };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(a) = send(&c, "GET", &format!("http://{api}/api/rawdata"), &[]).await {
                if a.body.contains("\"generation\":") && !a.body.contains("\"generation\":0") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "drover did not start; log:\n{}", this.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        this
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/tls/certificates`.
    async fn certificates(&self) -> Vec<Value> {
        let a = send(&client(), "GET", &format!("http://{}/api/tls/certificates", self.api), &[])
            .await
            .expect("API answers");
        serde_json::from_str(&a.body).expect("JSON")
    }

    /// The ACME entry for `main`, once `done` holds for it (or a panic after `limit`).
    async fn acme_entry(&self, main: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(entry) = self.certificates().await.into_iter().find(|c| c["acme"]["domains"][0] == main) {
                if done(&entry) {
                    return entry;
                }
                last = entry;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{main}: not there within {limit:?}; last: {last}\nlog:\n{}", self.log());
    }
}

/// What most tests stand on: a backend, a private directory, the routes file in it.
struct Stage {
    backend: SocketAddr,
    _whoami: whoami::WhoamiHandle,
    dir: tempfile::TempDir,
    routes: PathBuf,
}

impl Stage {
    async fn new() -> Self {
        let (backend, whoami) = whoami::spawn("app").await;
        let dir = tempfile::tempdir().expect("temp dir");
        let routes = dir.path().join("routes.toml");
        Self {
            backend,
            _whoami: whoami,
            dir,
            routes,
        }
    }
}

/// pebble's root, written into `dir` for `openssl -CAfile`.
async fn root_file(pebble: &Pebble, dir: &Path) -> PathBuf {
    let root = dir.join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem().await).expect("root");
    root
}

fn valid(entry: &Value) -> bool {
    entry["acme"]["state"] == "valid"
}

/// A routes file with one TLS router per host, resolved by `resolver`, to `backend`.
fn routes(hosts: &[&str], resolver: &str, backend: SocketAddr) -> String {
    let mut text = format!("[http.services.app.loadBalancer]\nservers = [{{ url = \"http://{backend}\" }}]\n");
    for (i, host) in hosts.iter().enumerate() {
        text.push_str(&format!(
            "[http.routers.r{i}]\nrule = \"Host(`{host}`)\"\nentryPoints = [\"websecure\"]\nservice = \"app\"\ntls = {{ certResolver = \"{resolver}\" }}\n"
        ));
    }
    text
}

/// What `openssl s_client` sees at `addr` for `sni`, verifying against `root` (a file): the
/// issuer line and whether verification passed.
async fn openssl_sees(addr: SocketAddr, sni: &str, root: &Path) -> (String, bool) {
    let output = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            sni,
            "-verify_hostname",
            sni,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let issuer = text
        .lines()
        .find(|l| l.trim_start().starts_with("i:") || l.starts_with("issuer="))
        .unwrap_or("")
        .to_string();
    (issuer, text.contains("Verify return code: 0 (ok)"))
}

fn private_storage(dir: &Path) -> PathBuf {
    dir.join("acme.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_pebble_signs_and_a_restart_reuses_it() {
    let pebble = Pebble::start().await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    let storage = private_storage(dir);
    std::fs::write(routes_file, routes(&["a.test"], "le", backend)).expect("routes");
    // web redirects every plain request to websecure: the HTTP-01 answer still comes first.
    let resolvers = pebble.resolver("le", &storage, "httpChallenge = { entryPoint = \"web\" }", "")
        + "[entryPoints.web.http.redirections.entryPoint]\nto = \"websecure\"\n";
    let root = root_file(&pebble, dir).await;

    {
        let drover = Instance::start(dir, "first", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;
        let entry = drover.acme_entry("a.test", Duration::from_secs(30), valid).await;
        assert!(entry["issuer"].as_str().unwrap_or("").contains("Pebble Intermediate CA"), "{entry}");
        let (issuer, verified) = openssl_sees(drover.websecure, "a.test", &root).await;
        assert!(verified && issuer.contains("Pebble Intermediate CA"), "openssl: {issuer}");
        let tls = support::pki::Client::new(&["http/1.1"], None);
        let (status, body, _) = tls.get(drover.websecure, "a.test", "a.test", "/").await.expect("HTTPS");
        assert_eq!(status, 200, "{body}");
        assert_eq!(pebble.orders(), 1, "one order");
        let metrics = send(&client(), "GET", &format!("http://{}/metrics", drover.api), &[])
            .await
            .expect("metrics")
            .body;
        for series in [
            "drover_acme_orders_total{resolver=\"le\",domain=\"a.test\"} 1",
            "drover_acme_certificate_state{resolver=\"le\",domain=\"a.test\",state=\"valid\"} 1",
            "drover_acme_failures{resolver=\"le\",domain=\"a.test\"} 0",
            "drover_tls_certs_not_after{cn=\"a.test\",serial=",
        ] {
            assert!(metrics.contains(series), "{series} missing:\n{metrics}");
        }
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&storage).expect("stored").permissions());
    assert_eq!(mode & 0o777, 0o600, "acme.json is private");

    let drover = Instance::start(dir, "second", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;
    let entry = drover.acme_entry("a.test", Duration::from_secs(10), valid).await;
    assert_eq!(entry["acme"]["orders"], 0, "{entry}");
    let (issuer, verified) = openssl_sees(drover.websecure, "a.test", &root).await;
    assert!(verified && issuer.contains("Pebble Intermediate CA"), "after a restart: {issuer}");
    assert_eq!(pebble.orders(), 1, "a restart orders nothing still valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_certificate_for_a_router_added_live() {
    let pebble = Pebble::start().await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    std::fs::write(routes_file, routes(&[], "le", backend)).expect("routes");
    let resolvers = pebble.resolver("le", &private_storage(dir), "tlsChallenge = {}", "");
    let drover = Instance::start(dir, "alpn", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;

    let temporary = dir.join("routes.tmp");
    std::fs::write(&temporary, routes(&["b.test", "c.test"], "le", backend)).expect("routes");
    std::fs::rename(&temporary, routes_file).expect("swap routes");
    drover.acme_entry("b.test", Duration::from_secs(30), valid).await;
    drover.acme_entry("c.test", Duration::from_secs(30), valid).await;
    let root = root_file(&pebble, dir).await;
    for host in ["b.test", "c.test"] {
        let (issuer, verified) = openssl_sees(drover.websecure, host, &root).await;
        assert!(verified && issuer.contains("Pebble Intermediate CA"), "{host}: {issuer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ca_leaves_the_default_certificate_serving_and_retries_back_off() {
    // pebble validates HTTP-01 on a port nothing listens on: every order fails.
    let pebble = Pebble::start().await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    std::fs::write(routes_file, routes(&["d.test"], "le", backend)).expect("routes");
    let resolvers = pebble.resolver(
        "le",
        &private_storage(dir),
        "httpChallenge = { entryPoint = \"web\" }",
        "retryMin = \"1s\"\nretryMax = \"2s\"",
    );
    let unused = free_port().port();
    let drover = Instance::start(dir, "failing", unused, pebble.tls_port, &resolvers, routes_file).await;
    let started = Instant::now();
    let failed = drover
        .acme_entry("d.test", Duration::from_secs(30), |e| e["acme"]["state"] == "failed")
        .await;
    assert!(failed["acme"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");
    assert!(failed["acme"]["nextTry"].is_string(), "{failed}");

    let tls = support::pki::Client::new(&["http/1.1"], None);
    let (status, _, _) = tls
        .get(drover.websecure, "d.test", "d.test", "/")
        .await
        .expect("HTTPS with the default certificate");
    assert_eq!(status, 200);
    let presented = tls.presented(drover.websecure, "d.test").await.expect("handshake");
    let (_, cert) = x509_parser::parse_x509_certificate(&presented).expect("certificate");
    assert!(
        cert.subject().to_string().to_lowercase().contains("drover"),
        "the default certificate: {}",
        cert.subject()
    );

    // Waits 1, then ~2 s (jitter ±25 %): within 6 s of the first failure at most ~5 orders.
    let deadline = started + Duration::from_secs(8);
    tokio::time::sleep_until(deadline.into()).await;
    let orders = pebble.orders();
    assert!(
        (2..=6).contains(&orders),
        "{orders} orders in 8 s with retries backing off from 1 s to 2 s"
    );
    let entry = drover.acme_entry("d.test", Duration::from_secs(1), |_| true).await;
    assert!(entry["acme"]["failures"].as_u64().unwrap_or(0) >= 2, "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_file_others_can_read_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = private_storage(dir.path());
    std::fs::write(&storage, "{}").expect("write");
    std::fs::set_permissions(&storage, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let config = dir.path().join("static.toml");
    std::fs::write(
        &config,
        format!(
            "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[certificatesResolvers.le.acme]\nstorage = \"{}\"\nhttpChallenge = {{ entryPoint = \"web\" }}\n",
            storage.display()
        ),
    )
    .expect("config");
    let output = std::process::Command::new(drover_binary())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("drover runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "drover must refuse to start: {stderr}");
    assert!(
        stderr.contains("certificatesResolvers.le.acme.storage") && stderr.contains("mode 0644") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_storage_file_order_each_name_once_and_both_serve_it() {
    let pebble = Pebble::start().await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    let storage = private_storage(dir);
    let hosts = ["e.test", "f.test", "g.test"];
    std::fs::write(routes_file, routes(&hosts, "le", backend)).expect("routes");
    let resolvers = pebble.resolver("le", &storage, "httpChallenge = { entryPoint = \"web\" }", "");
    // Only the first instance is where pebble validates; whichever instance orders, the
    // answer is shared through the storage directory.
    let first = Instance::start(dir, "one", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;
    let second = Instance::start(dir, "two", free_port().port(), free_port().port(), &resolvers, routes_file).await;
    let root = root_file(&pebble, dir).await;
    for host in hosts {
        first.acme_entry(host, Duration::from_secs(40), valid).await;
        second.acme_entry(host, Duration::from_secs(40), valid).await;
        for instance in [&first, &second] {
            let (issuer, verified) = openssl_sees(instance.websecure, host, &root).await;
            assert!(verified && issuer.contains("Pebble Intermediate CA"), "{host}: {issuer}");
        }
    }
    assert_eq!(
        pebble.orders(),
        hosts.len(),
        "one order per name across both instances\n{}",
        pebble.log()
    );
    let mut placed = 0;
    for instance in [&first, &second] {
        for entry in instance.certificates().await {
            placed += entry["acme"]["orders"].as_u64().unwrap_or(0);
        }
    }
    assert_eq!(placed, hosts.len() as u64, "the instances' own counts agree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_swaps_the_certificate_with_no_failed_request() {
    let pebble = Pebble::start().await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    std::fs::write(routes_file, routes(&["h.test"], "le", backend)).expect("routes");
    // A renewal window longer than pebble's 5-year certificates: every check renews.
    let resolvers = pebble.resolver(
        "le",
        &private_storage(dir),
        "httpChallenge = { entryPoint = \"web\" }",
        "renewBefore = \"50000h\"\ncheckInterval = \"1s\"",
    );
    let drover = Instance::start(dir, "renew", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;
    let first = drover.acme_entry("h.test", Duration::from_secs(30), valid).await;
    let serial = first["serial"].as_str().expect("serial").to_string();

    // Requests over new connections and over one kept-alive connection while it renews.
    let tls = support::pki::Client::new(&["http/1.1"], None);
    let addr = drover.websecure;
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            match tls.get(addr, "h.test", "h.test", "/").await {
                Ok((200, _, _)) => ok += 1,
                Ok((status, body, _)) => failed.push(format!("{status} {body}")),
                Err(e) => failed.push(e),
            }
        }
        (ok, failed)
    });
    let renewed = drover
        .acme_entry("h.test", Duration::from_secs(30), |e| {
            valid(e) && e["serial"].as_str() != Some(&serial)
        })
        .await;
    let (ok, failed) = load.await.expect("load");
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 10, "{ok} requests");
    assert_ne!(renewed["serial"], first["serial"]);
    assert!(pebble.orders() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_bind_issues_a_wildcard_and_removes_its_records() {
    use support::bind::{Bind, TsigKeySpec, ZoneSpec};
    let key = TsigKeySpec {
        name: "drover-key",
        algorithm: "hmac-sha256",
        secret: "ZHJvdmVyLWFjbWUtZG5zMDEtdGVzdC1zZWNyZXQtMzI=",
    };
    let bind = Bind::start_with_key(
        &[ZoneSpec {
            origin: "w.test.",
            ttl: 60,
            negative_ttl: 1,
            records: "",
        }],
        &key,
    )
    .await;
    // pebble asks BIND for the challenge records: nothing else answers for w.test.
    let pebble = Pebble::start_with(support::pebble::Dns::At(bind.addr), &[]).await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    std::fs::write(
        routes_file,
        format!(
            "[http.services.app.loadBalancer]\nservers = [{{ url = \"http://{backend}\" }}]\n[http.routers.wild]\nrule = \"HostRegexp(`^[a-z]+\\\\.w\\\\.test$`)\"\nentryPoints = [\"websecure\"]\nservice = \"app\"\n[http.routers.wild.tls]\ncertResolver = \"le\"\ndomains = [{{ main = \"w.test\", sans = [\"*.w.test\"] }}]\n"
        ),
    )
    .expect("routes");
    let challenge = format!(
        "dnsChallenge = {{ provider = \"rfc2136\", rfc2136 = {{ nameserver = \"{}\", tsigKey = \"{}\", tsigSecret = \"{}\", tsigAlgorithm = \"hmac-sha256.\", pollingInterval = \"50ms\", propagationTimeout = \"10s\" }} }}",
        bind.addr, key.name, key.secret
    );
    let resolvers = pebble.resolver("le", &private_storage(dir), &challenge, "");
    let drover = Instance::start(dir, "dns", free_port().port(), free_port().port(), &resolvers, routes_file).await;
    let entry = drover.acme_entry("w.test", Duration::from_secs(40), valid).await;
    assert!(entry["sans"].to_string().contains("*.w.test"), "{entry}");
    let root = root_file(&pebble, dir).await;
    for sni in ["w.test", "any.w.test"] {
        let (issuer, verified) = openssl_sees(drover.websecure, sni, &root).await;
        assert!(verified && issuer.contains("Pebble Intermediate CA"), "{sni}: {issuer}");
    }
    assert!(
        bind.txt("_acme-challenge.w.test.").await.is_empty(),
        "the challenge records are removed once the order is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_router_that_terminates_tls_gets_its_certificate_through_tls_alpn01() {
    let pebble = Pebble::start().await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    // Only a TCP router on websecure: the CA's acme-tls/1 handshake meets the TCP dispatch.
    std::fs::write(
        routes_file,
        format!(
            "[tcp.services.db.loadBalancer]\nservers = [{{ address = \"{backend}\" }}]\n[tcp.routers.db]\nrule = \"HostSNI(`db.test`)\"\nentryPoints = [\"websecure\"]\nservice = \"db\"\ntls = {{ certResolver = \"le\" }}\n"
        ),
    )
    .expect("routes");
    let resolvers = pebble.resolver("le", &private_storage(dir), "tlsChallenge = {}", "");
    let drover = Instance::start(dir, "tcp", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;
    let entry = drover.acme_entry("db.test", Duration::from_secs(30), valid).await;
    assert!(entry["usedBy"].is_array(), "{entry}");
    let root = root_file(&pebble, dir).await;
    let (issuer, verified) = openssl_sees(drover.websecure, "db.test", &root).await;
    assert!(verified && issuer.contains("Pebble Intermediate CA"), "{issuer}");
    // Terminated, then relayed as plain TCP to the (HTTP) server behind.
    let tls = support::pki::Client::new(&["http/1.1"], None);
    let (status, body, _) = tls
        .get(drover.websecure, "db.test", "db.test", "/")
        .await
        .expect("through the TCP router");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_sent_when_configured_and_its_absence_is_reported() {
    const KID: &str = "kid-1";
    const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start_requiring_eab(KID, HMAC).await;
    let stage = Stage::new().await;
    let (backend, dir, routes_file) = (stage.backend, stage.dir.path(), stage.routes.as_path());
    let mut text = routes(&["eab.test"], "bound", backend);
    text.push_str("[http.routers.other]\nrule = \"Host(`noeab.test`)\"\nentryPoints = [\"websecure\"]\nservice = \"app\"\ntls = { certResolver = \"unbound\" }\n");
    std::fs::write(routes_file, text).expect("routes");
    // Both resolvers share one storage file, each with its own entry.
    let http = "httpChallenge = { entryPoint = \"web\" }";
    let resolvers = pebble.resolver(
        "bound",
        &private_storage(dir),
        http,
        &format!("eab = {{ kid = \"{KID}\", hmacEncoded = \"{HMAC}\" }}"),
    ) + &pebble.resolver("unbound", &private_storage(dir), http, "retryMin = \"1h\"");
    let drover = Instance::start(dir, "eab", pebble.http_port, pebble.tls_port, &resolvers, routes_file).await;
    drover.acme_entry("eab.test", Duration::from_secs(30), valid).await;
    let refused = drover
        .acme_entry("noeab.test", Duration::from_secs(30), |e| e["acme"]["state"] == "failed")
        .await;
    let why = refused["acme"]["error"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(why.contains("externalaccountbinding"), "{refused}");
}
