//! Pebble, Let's Encrypt's test ACME server (Debian's `pebble`), as a child process, with
//! `pebble-challtestsrv` as the DNS server it asks (every A query answers 127.0.0.1), or a DNS
//! server the test runs (BIND, for DNS-01).
//!
//! Each [`Pebble`] runs in a temporary directory with a generated configuration: its ACME and
//! management listeners on free loopback ports, its listener certificate issued by a test CA
//! (which drover trusts through `caCertificates`), and the ports it validates HTTP-01 and
//! TLS-ALPN-01 on (`httpPort`, `tlsPort`), where the test's drover listens. Validation sleeps
//! and nonce rejection are off and authorizations are never reused, so every order is validated
//! and runs at full speed. Its log is kept: [`Pebble::orders`] counts the orders it received.
//!
//! A missing `pebble` fails the test with the command that installs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::free_port;
use super::pki::Ca;

/// A running pebble (and its DNS server); killed on drop.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The CA file drover trusts for pebble's HTTPS (`caCertificates`).
    pub listener_ca: PathBuf,
    /// Where pebble validates HTTP-01.
    pub http_port: u16,
    /// Where pebble validates TLS-ALPN-01.
    pub tls_port: u16,
    /// The management interface (roots, intermediates).
    pub management: SocketAddr,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

/// What pebble asks for names.
pub enum Dns {
    /// `pebble-challtestsrv`: every A query answers 127.0.0.1.
    Loopback,
    /// A DNS server the test runs.
    At(SocketAddr),
}

impl Pebble {
    /// Starts pebble resolving every name to 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_with(Dns::Loopback, &[]).await
    }

    /// Starts pebble asking `dns`, with extra environment variables (`PEBBLE_*`).
    pub async fn start_with(dns: Dns, env: &[(&str, &str)]) -> Self {
        Self::launch(dns, env, None).await
    }

    /// Starts pebble requiring external account binding with the key `kid` (`hmac`, base64url).
    pub async fn start_requiring_eab(kid: &str, hmac: &str) -> Self {
        Self::launch(Dns::Loopback, &[], Some((kid, hmac))).await
    }

    /// Starts pebble, again on other ports when one it was given was taken meanwhile (the ports
    /// are found free, then released for pebble to bind: a test running beside may bind one first).
    async fn launch(dns: Dns, env: &[(&str, &str)], eab: Option<(&str, &str)>) -> Self {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::launch_once(&dns, env, eab).await {
                Ok(pebble) => return pebble,
                Err(log) if attempts < 3 && log.contains("address already in use") => continue,
                Err(log) => panic!("pebble did not listen within 20 s; log:\n{log}"),
            }
        }
    }

    async fn launch_once(dns: &Dns, env: &[(&str, &str)], eab: Option<(&str, &str)>) -> Result<Self, String> {
        let pebble = require_pebble("pebble");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new("pebble listener CA");
        let listener_ca = ca.write(dir.path(), "listener-ca.pem");
        let leaf = ca.leaf(dir.path(), "listener", &["localhost", "127.0.0.1"]);
        let acme = free_port();
        let management = free_port();
        let http_port = free_port().port();
        let tls_port = free_port().port();
        let mut children = Vec::new();
        let dns_server = match dns {
            Dns::At(addr) => *addr,
            Dns::Loopback => {
                let addr = free_udp_port();
                let challtest = require_pebble("pebble-challtestsrv");
                let child = Command::new(challtest)
                    .args(["-dns01", &addr.to_string(), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                    .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                    .args(["-management", &free_port().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("pebble-challtestsrv starts");
                children.push(child);
                addr
            }
        };
        let config = dir.path().join("pebble.json");
        let mut text = serde_json::json!({
            "pebble": {
                "listenAddress": acme.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": leaf.cert_file,
                "privateKey": leaf.key_file,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some((kid, hmac)) = eab {
            text["pebble"]["externalAccountBindingRequired"] = true.into();
            text["pebble"]["externalAccountMACKeys"] = serde_json::json!({ kid: hmac });
        }
        std::fs::write(&config, text.to_string()).expect("write pebble config");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("log file");
        let mut command = Command::new(pebble);
        command
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(dns_server.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        children.push(command.spawn().expect("pebble starts"));
        let this = Self {
            directory: format!("https://{acme}/dir"),
            listener_ca,
            http_port,
            tls_port,
            management,
            children,
            dir,
        };
        this.wait_ready(acme).await?;
        Ok(this)
    }

    /// Waits until pebble listens; `Err` with its log when it did not within 20 s or could not
    /// bind a port.
    async fn wait_ready(&self, acme: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(acme).await.is_ok() && tokio::net::TcpStream::connect(self.management).await.is_ok() {
                return Ok(());
            }
            let log = self.log();
            if log.contains("address already in use") {
                return Err(log);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(self.log())
    }

    /// Pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// How many orders pebble received.
    pub fn orders(&self) -> usize {
        self.log().lines().filter(|l| l.contains("POST /order-plz")).count()
    }

    /// The root that pebble's issued chains end at, PEM (from its management interface).
    pub async fn root_pem(&self) -> String {
        let output = Command::new("curl")
            .args(["-sSk", &format!("https://{}/roots/0", self.management)])
            .output()
            .await
            .expect("curl runs");
        let pem = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(pem.contains("BEGIN CERTIFICATE"), "pebble's root: {pem}");
        pem
    }

    /// Stops pebble (the CA is down from now on).
    pub async fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }

    /// The static configuration of resolver `name` trusting this pebble, with `challenge`
    /// (e.g. `httpChallenge = { entryPoint = "web" }`) and `extra` keys, storing in `storage`.
    pub fn resolver(&self, name: &str, storage: &std::path::Path, challenge: &str, extra: &str) -> String {
        format!(
            "[certificatesResolvers.{name}.acme]\nemail = \"ops@drover.test\"\nstorage = \"{}\"\ncaServer = \"{}\"\ncaCertificates = [\"{}\"]\nkeyType = \"EC256\"\n{challenge}\n{extra}\n",
            storage.display(),
            self.directory,
            self.listener_ca.display()
        )
    }
}

/// A loopback UDP port that was free a moment ago.
fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
}

fn require_pebble(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed; the ACME tests need Debian's pebble: run `{}`",
                super::SETUP
            )
        })
}
