//! BIND 9 (`named`) as a child process: a real authoritative DNS server for the DNS provider's
//! tests, changed live with `nsupdate` (RFC 2136), as operators register services with it.
//!
//! Each [`Bind`] runs in a temporary directory of its own with a generated `named.conf`: it
//! listens on one free port of 127.0.0.1 (UDP and TCP), answers only from its zones (no
//! recursion, no DNSSEC validation, no rndc control channel), puts glue in the Additional
//! section (`minimal-responses no`) and accepts dynamic updates from 127.0.0.1. It runs in the
//! foreground (`-g`) with its log captured, [`Bind::start`] waits until it answers (polling with
//! a deadline, never a fixed sleep), and dropping the value kills it. [`Bind::start_with_key`]
//! instead accepts updates only when signed with a TSIG key, as a production primary does.
//!
//! A missing `named` or `nsupdate` fails the test with the command that installs them: CI
//! installs them, so a silent skip would hide a broken setup.
// Tests and benches include this file each for some of it.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long `named` may take to load its zones and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A zone to serve: its origin (`example.`), default TTL, negative-caching TTL (the SOA minimum)
/// and records in zone-file syntax, relative to the origin or absolute.
pub struct ZoneSpec<'a> {
    pub origin: &'a str,
    pub ttl: u32,
    pub negative_ttl: u32,
    pub records: &'a str,
}

/// A TSIG key (`key "<name>" { algorithm <algorithm>; secret "<secret>"; };`) that `named`
/// requires on every update of its zones.
pub struct TsigKeySpec<'a> {
    pub name: &'a str,
    /// BIND's spelling: `hmac-sha256`, `hmac-sha1`...
    pub algorithm: &'a str,
    /// Base64, as `tsig-keygen` prints it.
    pub secret: &'a str,
}

/// A running `named`; killed on drop.
pub struct Bind {
    /// `127.0.0.1:<port>`, UDP and TCP.
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
    nsupdate: PathBuf,
    /// `nsupdate -y`'s `algorithm:name:secret` when updates need the key.
    key: Option<String>,
}

/// The absolute path of `program`, looked up in `PATH` and the sbin directories (which a CI
/// environment's `PATH` may lack), or a panic naming the packages to install.
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            // (A literal, not support::SETUP: benches/dns.rs includes this file on its own.)
            panic!(
                "`{program}` is not installed; the DNS tests need a real BIND 9: run `tests/setup.sh` (Debian: bind9, bind9-utils, bind9-dnsutils)"
            )
        })
}

impl Bind {
    /// Starts `named` serving `zones` (updatable from 127.0.0.1) and waits until it answers for
    /// the first one.
    pub async fn start(zones: &[ZoneSpec<'_>]) -> Self {
        Self::start_with(zones, None).await
    }

    /// Starts `named` serving `zones`, which accept updates only when signed with `key`.
    pub async fn start_with_key(zones: &[ZoneSpec<'_>], key: &TsigKeySpec<'_>) -> Self {
        Self::start_with(zones, Some(key)).await
    }

    async fn start_with(zones: &[ZoneSpec<'_>], key: Option<&TsigKeySpec<'_>>) -> Self {
        let named = require("named");
        let nsupdate = require("nsupdate");
        let mut last_log = String::new();
        // A port found free can be taken before named binds it: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for named");
            let port = free_udp_and_tcp_port();
            write_config(dir.path(), port, zones, key);
            let log = std::fs::File::create(dir.path().join("named.log")).expect("named log file");
            let child = Command::new(&named)
                .args(["-g", "-4", "-n", "1", "-c"])
                .arg(dir.path().join("named.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", named.display()));
            let mut bind = Self {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child: Some(child),
                dir,
                nsupdate: nsupdate.clone(),
                key: key.map(|k| format!("{}:{}:{}", k.algorithm, k.name, k.secret)),
            };
            if bind.wait_ready(zones.first().map_or(".", |z| z.origin)).await {
                return bind;
            }
            last_log = bind.log();
            bind.stop().await;
        }
        panic!("named did not start answering within {READY_TIMEOUT:?}; its log:\n{last_log}");
    }

    async fn wait_ready(&mut self, origin: &str) -> bool {
        let started = Instant::now();
        let probe = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind a UDP probe socket");
        let mut id: u16 = 0x4242;
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = &mut self.child {
                if let Ok(Some(_exited)) = child.try_wait() {
                    return false;
                }
            }
            id = id.wrapping_add(1);
            if probe.send_to(&soa_query(id, origin), self.addr).await.is_ok() {
                let mut buf = [0u8; 1500];
                let reply = tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buf)).await;
                // A NOERROR response to this id: the zone is loaded.
                if matches!(reply, Ok(Ok((n, _))) if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 && buf[3] & 0x0f == 0) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Applies `commands` (`update add ...`, `update delete ...` lines) to `zone` with
    /// `nsupdate`, as one transaction; panics with nsupdate's output if it is refused.
    pub async fn update(&self, zone: &str, commands: &str) {
        let script = format!("server {} {}\nzone {zone}\n{commands}\nsend\n", self.addr.ip(), self.addr.port());
        let mut command = Command::new(&self.nsupdate);
        command.args(["-t", "5"]);
        if let Some(key) = &self.key {
            command.arg("-y").arg(key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.nsupdate.display()));
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(script.as_bytes()).await.expect("write the nsupdate script");
        }
        let out = child.wait_with_output().await.expect("nsupdate runs");
        assert!(
            out.status.success(),
            "nsupdate failed ({}):\n{script}\nstdout: {}\nstderr: {}\nnamed log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The texts of the TXT records `named` serves at `name` now, sorted (asked with `dig`, a
    /// client independent of the code under test).
    pub async fn txt(&self, name: &str) -> Vec<String> {
        let out = Command::new(require("dig"))
            .arg(format!("@{}", self.addr.ip()))
            .args([
                "-p",
                &self.addr.port().to_string(),
                "+short",
                "+norecurse",
                "+time=2",
                "+tries=2",
                "TXT",
                name,
            ])
            .output()
            .await
            .expect("dig runs");
        assert!(
            out.status.success(),
            "dig TXT {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One line per record, its strings quoted: `"part one" "part two"`.
        let mut texts: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.split('"').skip(1).step_by(2).collect())
            .collect();
        texts.sort();
        texts
    }

    /// Kills `named` (as a crash would) and waits for it to be gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// What `named` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

fn write_config(dir: &Path, port: u16, zones: &[ZoneSpec<'_>], key: Option<&TsigKeySpec<'_>>) {
    let d = dir.display();
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  \
         managed-keys-directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
         recursion no;\n  dnssec-validation no;\n  notify no;\n  minimal-responses no;\n  allow-query {{ 127.0.0.1; }};\n}};\n\
         controls {{ }};\n"
    );
    let allow_update = match key {
        Some(key) => {
            conf.push_str(&format!(
                "key \"{}\" {{ algorithm {}; secret \"{}\"; }};\n",
                key.name, key.algorithm, key.secret
            ));
            format!("key \"{}\";", key.name)
        }
        None => "127.0.0.1;".to_string(),
    };
    for (i, zone) in zones.iter().enumerate() {
        let file = dir.join(format!("zone{i}.db"));
        let origin = zone.origin;
        let body = format!(
            "$ORIGIN {origin}\n$TTL {}\n@ IN SOA ns.{origin} admin.{origin} 1 60 60 600 {}\n@ IN NS ns.{origin}\nns IN A 127.0.0.1\n{}\n",
            zone.ttl, zone.negative_ttl, zone.records
        );
        std::fs::write(&file, body).expect("write a zone file");
        conf.push_str(&format!(
            "zone \"{origin}\" {{ type primary; file \"{}\"; allow-update {{ {allow_update} }}; }};\n",
            file.display()
        ));
    }
    std::fs::write(dir.join("named.conf"), conf).expect("write named.conf");
}

fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP on 127.0.0.1");
        let port = udp.local_addr().expect("UDP address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP after 50 tries");
}

/// A minimal DNS query (RFC 1035 §4.1) for the SOA of `origin`.
fn soa_query(id: u16, origin: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    for label in origin.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0x00, 0x06, 0x00, 0x01]);
    q
}
