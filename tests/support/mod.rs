//! Helpers for drover's end-to-end tests: real listeners on 127.0.0.1, a real drover (in-process
//! or as its binary), real whoami backends.
#![allow(dead_code)]

pub mod bind;
pub mod consul;
pub mod docker;
pub mod load;
pub mod marathon;
pub mod pebble;
pub mod pki;
pub mod recording;
pub mod scripted;
pub mod serve;
pub mod tls_backend;
#[path = "../../examples/whoami/server.rs"]
pub mod whoami;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use drover::config::StaticConfig;
use drover::Drover;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The command that installs every program the tests talk to (the README's test command runs it).
pub const SETUP: &str = "tests/setup.sh";

/// A drover started in-process on 127.0.0.1:0 with a watched routes file.
pub struct TestDrover {
    pub drover: Drover,
    pub dir: tempfile::TempDir,
    pub routes: PathBuf,
}

impl TestDrover {
    /// Starts drover with `routes` as its dynamic file and waits until it is in force.
    pub async fn start(routes: &str) -> Self {
        Self::start_with(routes, "").await
    }

    /// Like [`TestDrover::start`], with extra static configuration appended.
    pub async fn start_with(routes: &str, extra_static: &str) -> Self {
        Self::start_with_file("routes.toml", routes, extra_static).await
    }

    /// Like [`TestDrover::start_with`], with the routes in a file named `file_name` (its
    /// extension tells drover the syntax).
    pub async fn start_with_file(file_name: &str, routes: &str, extra_static: &str) -> Self {
        Self::launch(file_name, routes, "", extra_static, 2).await
    }

    /// Like [`TestDrover::start`], with one worker: each worker walks the smooth weighted
    /// sequence with its own cursor, so only then is the whole sequence of picks predictable.
    pub async fn start_one_worker(routes: &str) -> Self {
        Self::launch("routes.toml", routes, "", "", 1).await
    }

    /// Like [`TestDrover::start_with`], with `api_keys` in the `[api]` table (TOML cannot reopen
    /// it in `extra_static`) and one worker, so which server is picked next is predictable.
    pub async fn start_with_api(routes: &str, api_keys: &str, extra_static: &str) -> Self {
        Self::launch("routes.toml", routes, api_keys, extra_static, 1).await
    }

    async fn launch(file_name: &str, routes: &str, api_keys: &str, extra_static: &str, workers: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes_path = dir.path().join(file_name);
        std::fs::write(&routes_path, routes).expect("write routes");
        let text = format!(
            "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[api]\naddress = \"127.0.0.1:0\"\n{api_keys}[log]\nlevel = \"warn\"\n[providers.file]\nfilename = \"{}\"\nwatch = true\n{extra_static}",
            routes_path.display()
        );
        let resolved = StaticConfig::parse(Path::new("test.toml"), &text).expect("test static config");
        let drover = Drover::start(resolved, workers).expect("drover starts");
        let this = Self {
            drover,
            dir,
            routes: routes_path,
        };
        this.wait_for_generation(1).await;
        this
    }

    pub fn web(&self) -> SocketAddr {
        self.drover.entry_point("web").expect("entrypoint web")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.web(), path)
    }

    /// Waits (up to 5 s) until the configuration generation reaches `generation`.
    pub async fn wait_for_generation(&self, generation: u64) {
        wait_until(Duration::from_secs(5), || self.drover.generation() >= generation)
            .await
            .unwrap_or_else(|| panic!("configuration generation {generation} not reached; at {}", self.drover.generation()));
    }

    /// Replaces the routes file atomically (write, then rename), as deploy tools do.
    /// The web entrypoint's open-connections gauge, if drover shows one.
    pub fn open_connections(&self) -> Option<i64> {
        self.drover
            .metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix("drover_open_connections{entrypoint=\"web\",protocol=\"TCP\"} "))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn write_routes(&self, routes: &str) {
        let tmp = self.dir.path().join(".routes.toml.tmp");
        std::fs::write(&tmp, routes).expect("write routes");
        std::fs::rename(&tmp, &self.routes).expect("rename routes");
    }
}

/// Polls `done` every 5 ms until it holds or `limit` passes; `None` on timeout.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `read` every 10 ms until `done` accepts its value or `limit` passes; returns the last
/// value (the caller's assertions then say what was missing).
pub async fn wait_for_text(limit: Duration, mut read: impl FnMut() -> String, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = read();
        if done(&text) || start.elapsed() > limit {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A keep-alive HTTP/1.1 client.
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a test needs from a response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `x-whoami-name` header (which backend answered).
    pub fn backend(&self) -> &str {
        self.headers.get("x-whoami-name").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// A header the backend received, from whoami's echo (`name: value` lines, lowercase names).
    pub fn received(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        self.body
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with(&prefix).then(|| &l[prefix.len()..]))
    }
}

/// Sends a request with the given method, URL and headers.
pub async fn send(client: &HttpClient, method: &str, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub async fn get(client: &HttpClient, url: &str) -> Answer {
    send(client, "GET", url, &[]).await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The server URLs of `service` (`name@provider`) in the configuration in force, from
/// `/api/rawdata` (empty if it does not exist).
pub async fn servers_in_force(c: &HttpClient, drover: &TestDrover, service: &str) -> std::collections::BTreeSet<String> {
    let raw = get(c, &format!("http://{}/api/rawdata", drover.drover.api())).await.body;
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    raw["services"][service]["loadBalancer"]["servers"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["url"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Routes TOML for one service `name` over `servers` (url, weight) behind `rule`.
pub fn service_toml(router: &str, rule: &str, service: &str, servers: &[(SocketAddr, u32)]) -> String {
    let mut out = format!(
        "[http.routers.{router}]\nrule = \"{}\"\nservice = \"{service}\"\n",
        rule.replace('"', "\\\"")
    );
    out.push_str(&servers_toml(service, servers));
    out
}

pub fn servers_toml(service: &str, servers: &[(SocketAddr, u32)]) -> String {
    let mut out = String::new();
    for (addr, weight) in servers {
        out.push_str(&format!(
            "[[http.services.{service}.loadBalancer.servers]]\nurl = \"http://{addr}\"\nweight = {weight}\n"
        ));
    }
    out
}

/// The drover command, built by `cargo test` itself (the root package's `drover-e2e` bin is
/// `proxy/src/main.rs`).
pub fn drover_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover-e2e"))
}

/// Resident set size of a process, in bytes (Linux).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

/// A drover process started from its binary; killed on drop.
pub struct DroverProcess {
    pub child: std::process::Child,
    pub web: SocketAddr,
    pub api: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl DroverProcess {
    /// Starts the binary with `routes`, on free loopback ports, and waits until it routes.
    pub async fn start(routes: &str, workers: usize) -> Self {
        Self::start_with(routes, workers, "", |_| {}).await
    }

    /// Like [`DroverProcess::start`], with `extra_static` appended to the static configuration
    /// and `configure` applied to the command before it is spawned (resource limits…).
    pub async fn start_with(routes: &str, workers: usize, extra_static: &str, configure: impl FnOnce(&mut std::process::Command)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes_path = dir.path().join("routes.toml");
        std::fs::write(&routes_path, routes).expect("write routes");
        let web = free_port();
        let api = free_port();
        let config = dir.path().join("static.toml");
        std::fs::write(
            &config,
            format!("[entryPoints.web]\naddress = \"{web}\"\n[api]\naddress = \"{api}\"\n[log]\nlevel = \"info\"\n[providers.file]\nfilename = \"{}\"\n{extra_static}", routes_path.display()),
        )
        .expect("write static config");
        let mut command = std::process::Command::new(drover_binary());
        command
            .arg("--config")
            .arg(&config)
            .arg("--workers")
            .arg(workers.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("drover.log")).expect("log file"));
        configure(&mut command);
        let child = command.spawn().expect("drover starts");
        let this = Self { child, web, api, dir };
        let c = client();
        let ping = format!("http://{api}/api/rawdata");
        let ready = async {
            for _ in 0..500 {
                if let Ok(a) = send(&c, "GET", &ping, &[]).await {
                    if a.body.contains("\"generation\":1") {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        assert!(ready.await, "drover process did not become ready; log:\n{}", this.log());
        this
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("drover.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.web, path)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY-free: libc::kill on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for DroverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP/1.1 response that has a Content-Length from `stream`, within `limit`: `None`
/// when none came in time (or the connection closed first), else its text.
pub async fn read_response(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let reading = async {
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end].lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse().ok())
                })?;
                if seen.len() >= end + 4 + length {
                    return Some(text.into_owned());
                }
            }
        }
    };
    tokio::time::timeout(limit, reading).await.ok().flatten()
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}
