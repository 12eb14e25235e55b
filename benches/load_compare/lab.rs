//! The lab: the external tools, the servers the side-by-side benches start (an nginx backend,
//! whoami backends, nginx and HAProxy as proxies, drover) with their configurations, and the load
//! generators' commands.
//!
//! Shared through `#[path]` by `load_compare.rs`, `failover.rs` and `observe_cost.rs`, so it depends on none:
//! each includer uses part of it, and parses what the load generators print itself.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub type Result<T, E = String> = std::result::Result<T, E>;

/// Every listener and every request of these benches uses this address, never another.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// How long a server may take to answer its first request.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server gets to stop on SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// drover's flag for its static configuration file.
pub const DROVER_CONFIG_FLAG: &str = "--config";

/// The external programs, resolved to absolute paths.
pub struct Tools {
    nginx: PathBuf,
    haproxy: PathBuf,
    taskset: PathBuf,
    setpriv: PathBuf,
    /// Present when looked for (`Tools::find(true)`): only a bench that runs wrk needs it.
    wrk: Option<PathBuf>,
    /// Optional: only the open-loop latency pass needs it.
    pub h2load: Option<PathBuf>,
}

impl Tools {
    /// Finds the proxies and the process tools, and wrk too when `needs_wrk`; the error names
    /// the apt packages to install.
    pub fn find(needs_wrk: bool) -> Result<Self> {
        let mut needed = vec![
            ("nginx", "nginx-light"),
            ("haproxy", "haproxy"),
            ("taskset", "util-linux"),
            ("setpriv", "util-linux"),
        ];
        if needs_wrk {
            needed.push(("wrk", "wrk"));
        }
        let found: Vec<_> = needed.iter().map(|(tool, _)| find_on_path(tool)).collect();
        let missing: Vec<_> = needed.iter().zip(&found).filter(|(_, f)| f.is_none()).collect();
        if !missing.is_empty() {
            let tools: Vec<_> = missing.iter().map(|((tool, _), _)| *tool).collect();
            let mut packages: Vec<_> = missing.iter().map(|((_, package), _)| *package).collect();
            packages.dedup();
            return Err(format!(
                "missing {}; install with: apt-get install -y {}",
                tools.join(", "),
                packages.join(" ")
            ));
        }
        let mut found = found.into_iter().flatten();
        let mut next = || found.next().expect("one path per needed tool, all checked present");
        Ok(Tools {
            nginx: next(),
            haproxy: next(),
            taskset: next(),
            setpriv: next(),
            wrk: needs_wrk.then(next),
            h2load: find_on_path("h2load"),
        })
    }
}

pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    // Debian puts nginx and haproxy in /usr/sbin, which is not on every user's PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Where and how the servers and the load generators run.
pub struct Lab {
    pub tools: Tools,
    dir: PathBuf,
    workers: u32,
    pub loadgen_cpus: &'static str,
    /// None on a single-CPU machine, where nothing can be kept apart.
    pub server_cpus: Option<String>,
    /// nginx's `worker_connections` (clients and upstream connections together); 4096 unless a
    /// bench holds more connections at once.
    pub nginx_connections: u32,
}

/// What drover adds to every forwarded request, and so what the peers are told to add too: the
/// comparison is of the same job. drover sets `X-Forwarded-For` (from the socket, dropping the
/// client's), `X-Real-Ip`, `X-Forwarded-Proto`, `-Host` and `-Port`, and passes the client's
/// Host on; without this the peers forward ~150 bytes less per request, and the backend parses
/// less for them (HAProxy measured ~4% faster without it).
const FORWARDING_NGINX: &str = "            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Port $server_port;
";
/// [`FORWARDING_NGINX`] for HAProxy (which passes the Host on by itself).
const FORWARDING_HAPROXY: &str = "    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
";

impl Lab {
    pub fn new(tools: Tools, dir: &Path, workers: u32) -> Self {
        let server_cpus = match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            1 => {
                println!("one CPU only: the servers share it with the load generator");
                None
            }
            2 => Some("1".to_string()),
            n => Some(format!("1-{}", n - 1)),
        };
        Lab {
            tools,
            dir: dir.to_path_buf(),
            workers,
            loadgen_cpus: "0",
            server_cpus,
            nginx_connections: 4096,
        }
    }

    /// A load generator's command, pinned to its own CPU.
    fn loadgen(&self, program: &Path) -> Command {
        let mut cmd = Command::new(&self.tools.taskset);
        cmd.args(["-c", self.loadgen_cpus]).arg(program);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Pins a running process, every thread of it, to the load generator's CPU (a bench that
    /// generates load itself pins itself); does nothing on a single-CPU machine.
    pub fn pin_to_loadgen_cpus(&self, pid: u32) -> Result<()> {
        if self.server_cpus.is_none() {
            return Ok(());
        }
        let status = Command::new(&self.tools.taskset)
            .args(["-a", "-p", "-c", self.loadgen_cpus, &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run taskset: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("taskset -a -p -c {} {pid} failed ({status})", self.loadgen_cpus))
        }
    }

    /// A server's command, sent SIGTERM if this process dies without dropping the server's
    /// guard; a `pinned` one runs on the proxies' CPUs, away from the load generator.
    fn server(&self, program: &Path, pinned: bool) -> Command {
        let cpus = self.server_cpus.as_ref().filter(|_| pinned);
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut cmd = Command::new(&self.tools.taskset);
                cmd.args(["-c", cpus]).arg(&self.tools.setpriv);
                cmd
            }
            None => Command::new(&self.tools.setpriv),
        };
        cmd.args(["--pdeathsig", "TERM", "--"]).arg(program);
        cmd
    }

    /// The backend is left unpinned on purpose: it then fills whichever CPU has room. Pinned with
    /// the proxy it would blur the differences between proxies (each request pays for both on
    /// one CPU); pinned with wrk it would cap every proxy near that CPU's direct rate.
    pub fn start_backend(&self, port: u16) -> Result<Server> {
        let http = format!(
            "    server {{\n        listen {LOOPBACK}:{port};\n        \
             location / {{ return 200 \"1\"; }}\n    }}"
        );
        self.start_nginx("backend", 1, port, false, &http)
    }

    /// A whoami backend (`cargo build --release --example whoami`) named `name`, pinned with the
    /// proxies.
    pub fn start_whoami(&self, bin: &Path, name: &'static str, port: u16) -> Result<Server> {
        let mut cmd = self.server(bin, true);
        cmd.args(["--bind", &LOOPBACK.to_string(), "--port", &port.to_string(), "--name", name]);
        Server::spawn(name, cmd, &self.dir)?.wait_ready(&[(port, "/")])
    }

    /// nginx proxying round robin to `backends`, with `health` added.
    /// `forwarding`: add drover's forwarding headers ([`FORWARDING_NGINX`]); `name` tells two
    /// instances apart.
    pub fn start_nginx_proxy(&self, name: &'static str, port: u16, backends: &[u16], health: &Health, forwarding: bool) -> Result<Server> {
        let upstream = nginx_upstream(backends, health.server);
        let http = format!(
            "{upstream}
    server {{
        listen {LOOPBACK}:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
{forward}{block}        }}
    }}",
            block = indent(health.block, 12),
            forward = if forwarding { FORWARDING_NGINX } else { "" },
        );
        self.start_nginx(name, self.workers, port, true, &http)
    }

    /// nginx doing, besides the forwarding headers, what drover's typical middleware chain
    /// ([`CHAIN`]) does: the `headers` middleware's request header and three response headers
    /// (`add_header`), `stripPrefix` (`rewrite`) and a `rateLimit` far above the load
    /// (`limit_req` per client address).
    pub fn start_nginx_chain(&self, name: &'static str, port: u16, backends: &[u16]) -> Result<Server> {
        let upstream = nginx_upstream(backends, "");
        let http = format!(
            "    limit_req_zone $binary_remote_addr zone=bench:10m rate=100000000r/s;
{upstream}
    server {{
        listen {LOOPBACK}:{port};
        location / {{
            rewrite ^/(.*)$ /$1 break;
            limit_req zone=bench burst=100000000 nodelay;
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Script-Name drover;
            add_header X-Frame-Options DENY;
            add_header X-Content-Type-Options nosniff;
            add_header X-Served-By drover;
{FORWARDING_NGINX}        }}
    }}"
        );
        self.start_nginx(name, self.workers, port, true, &http)
    }

    /// nginx in the foreground with everything under its own prefix: nothing in /etc or /var.
    fn start_nginx(&self, name: &'static str, workers: u32, port: u16, pinned: bool, http: &str) -> Result<Server> {
        self.start_nginx_ready(name, workers, port, pinned, http, false)
    }

    /// [`Lab::start_nginx`]; `tls`: the port speaks TLS, so it is ready when it accepts.
    fn start_nginx_ready(&self, name: &'static str, workers: u32, port: u16, pinned: bool, http: &str, tls: bool) -> Result<Server> {
        let prefix = self.dir.join(name);
        let conf = prefix.join("nginx.conf");
        let p = prefix.display();
        let text = format!(
            "daemon off;
master_process on;
worker_processes {workers};
pid \"{p}/nginx.pid\";
lock_file \"{p}/nginx.lock\";
error_log stderr warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    default_type text/plain;
    client_body_temp_path \"{p}/tmp/body\";
    proxy_temp_path \"{p}/tmp/proxy\";
    fastcgi_temp_path \"{p}/tmp/fastcgi\";
    uwsgi_temp_path \"{p}/tmp/uwsgi\";
    scgi_temp_path \"{p}/tmp/scgi\";
{http}
}}
",
            connections = self.nginx_connections,
        );
        write_file(&prefix.join("tmp").join(".keep"), "")?;
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.nginx, pinned);
        cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf).args(["-e", "stderr"]);
        let server = Server::spawn(name, cmd, &self.dir)?;
        if tls {
            server.wait_listening(&[port])
        } else {
            server.wait_ready(&[(port, "/")])
        }
    }

    /// nginx terminating TLS (1.2 and 1.3, as drover and HAProxy offer; nginx 1.22's default
    /// leaves 1.3 out) with `cert`/`key`, HTTP/2 by ALPN, proxying to `backends` with upstream
    /// keep-alive and drover's forwarding headers. Session resumption stays at nginx's
    /// defaults (tickets on).
    pub fn start_nginx_tls(&self, name: &'static str, port: u16, backends: &[u16], cert: &Path, key: &Path) -> Result<Server> {
        let upstream = nginx_upstream(backends, "");
        let http = format!(
            "{upstream}
    server {{
        listen {LOOPBACK}:{port} ssl http2;
        ssl_certificate \"{cert}\";
        ssl_certificate_key \"{key}\";
        ssl_protocols TLSv1.2 TLSv1.3;
        http2_max_requests 1000000;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
{FORWARDING_NGINX}        }}
    }}",
            cert = cert.display(),
            key = key.display(),
        );
        self.start_nginx_ready(name, self.workers, port, true, &http, true)
    }

    /// HAProxy terminating TLS with `cert` and `key` (concatenated into one PEM, as HAProxy
    /// wants), ALPN h2 and http/1.1, TLS 1.2 and 1.3, proxying to `backends` with drover's
    /// forwarding headers (`X-Forwarded-Proto: https`).
    pub fn start_haproxy_tls(&self, name: &'static str, port: u16, backends: &[u16], cert: &Path, key: &Path) -> Result<Server> {
        let pem = self.dir.join(format!("{name}.pem"));
        let read = |p: &Path| fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        write_file(&pem, &format!("{}{}", read(cert)?, read(key)?))?;
        let conf = self.dir.join(format!("{name}.cfg"));
        let servers: String = (1..)
            .zip(backends)
            .map(|(i, backend)| format!("    server b{i} {LOOPBACK}:{backend}\n"))
            .collect();
        let text = format!(
            "global
    nbthread {workers}
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind {LOOPBACK}:{port} ssl crt {pem} alpn h2,http/1.1
{forward}    default_backend backend

backend backend
{servers}",
            workers = self.workers,
            pem = pem.display(),
            forward = FORWARDING_HAPROXY.replace("X-Forwarded-Proto http", "X-Forwarded-Proto https"),
        );
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.haproxy, true);
        cmd.arg("-db").arg("-f").arg(&conf);
        Server::spawn(name, cmd, &self.dir)?.wait_listening(&[port])
    }

    /// HAProxy balancing round robin over `backends` (servers `b1`, `b2`…), with `health` added.
    /// `forwarding` and `name` as for [`Lab::start_nginx_proxy`].
    pub fn start_haproxy(&self, name: &'static str, port: u16, backends: &[u16], health: &Health, forwarding: bool) -> Result<Server> {
        let conf = self.dir.join(format!("{name}.cfg"));
        let servers: String = (1..)
            .zip(backends)
            .map(|(i, backend)| format!("    server b{i} {LOOPBACK}:{backend}{}\n", health.server))
            .collect();
        let text = format!(
            "global
    nbthread {workers}

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind {LOOPBACK}:{port}
{forward}    default_backend backend

backend backend
{block}{servers}",
            workers = self.workers,
            block = indent(health.block, 4),
            forward = if forwarding { FORWARDING_HAPROXY } else { "" },
        );
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.haproxy, true);
        cmd.arg("-db").arg("-f").arg(&conf);
        Server::spawn(name, cmd, &self.dir)?.wait_ready(&[(port, "/")])
    }

    /// nginx proxying to `backends` with drover's forwarding headers, as [`Lab::start_nginx_proxy`]
    /// does, also listening for HTTP/2 with prior knowledge (h2c: `listen … http2` without
    /// `ssl`, which in nginx 1.22 takes HTTP/2 only) on `h2c_port`; idle client connections are
    /// kept for `idle_secs` (`keepalive_timeout`, `http2_idle_timeout`).
    pub fn start_nginx_proxy_h2c(&self, name: &'static str, port: u16, h2c_port: u16, backends: &[u16], idle_secs: u32) -> Result<Server> {
        let upstream = nginx_upstream(backends, "");
        let http = format!(
            "{upstream}
    server {{
        listen {LOOPBACK}:{port};
        listen {LOOPBACK}:{h2c_port} http2;
        keepalive_timeout {idle_secs}s;
        http2_idle_timeout {idle_secs}s;
        http2_max_requests 1000000;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
{FORWARDING_NGINX}        }}
    }}"
        );
        self.start_nginx(name, self.workers, port, true, &http)
    }

    /// HAProxy proxying to `backends` with drover's forwarding headers, as [`Lab::start_haproxy`]
    /// does, also taking HTTP/2 with prior knowledge (`bind … proto h2`) on `h2c_port`; idle
    /// client connections are kept for `idle_secs` (`timeout client`, `timeout http-keep-alive`)
    /// and up to `maxconn` of them at once (`no strict-limits`: it starts even where the
    /// descriptor limit is below its reckoning of two per connection).
    pub fn start_haproxy_h2c(
        &self,
        name: &'static str,
        port: u16,
        h2c_port: u16,
        backends: &[u16],
        idle_secs: u32,
        maxconn: u32,
    ) -> Result<Server> {
        let conf = self.dir.join(format!("{name}.cfg"));
        let servers: String = (1..)
            .zip(backends)
            .map(|(i, backend)| format!("    server b{i} {LOOPBACK}:{backend}\n"))
            .collect();
        let text = format!(
            "global
    nbthread {workers}
    maxconn {maxconn}
    no strict-limits

defaults
    mode http
    maxconn {maxconn}
    timeout connect 5s
    timeout client {idle_secs}s
    timeout http-keep-alive {idle_secs}s
    timeout server 30s

frontend web
    bind {LOOPBACK}:{port}
    bind {LOOPBACK}:{h2c_port} proto h2
{FORWARDING_HAPROXY}    default_backend backend

backend backend
{servers}",
            workers = self.workers,
        );
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.haproxy, true);
        cmd.arg("-db").arg("-f").arg(&conf);
        Server::spawn(name, cmd, &self.dir)?.wait_ready(&[(port, "/")])
    }

    /// HAProxy as a plain TCP relay (`mode tcp`) to the first of `backends`: each client
    /// connection gets its own server connection and every byte is passed on unread. It makes
    /// the same system calls per request as an HTTP proxy and does no HTTP work at all, so its
    /// throughput is the most any proxy can reach on this machine.
    pub fn start_haproxy_tcp(&self, name: &'static str, port: u16, backends: &[u16]) -> Result<Server> {
        let conf = self.dir.join(format!("{name}.cfg"));
        let backend = backends.first().ok_or("no backend")?;
        let text = format!(
            "global
    nbthread {workers}

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend relay
    bind {LOOPBACK}:{port}
    default_backend backend

backend backend
    server b1 {LOOPBACK}:{backend}
",
            workers = self.workers,
        );
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.haproxy, true);
        cmd.arg("-db").arg("-f").arg(&conf);
        Server::spawn(name, cmd, &self.dir)?.wait_ready(&[(port, "/")])
    }

    /// drover balancing over `backends`, configured as `variant` says.
    pub fn start_drover(&self, bin: &Path, port: u16, admin: u16, backends: &[u16], variant: &Variant) -> Result<Server> {
        self.start_drover_with(bin, port, admin, backends, variant, None)
    }

    /// [`Lab::start_drover`] with the router on TLS (`[http.routers.bench.tls]`), `cert_key`
    /// (certificate and key files) as the default certificate (the bench connects to
    /// 127.0.0.1, without SNI).
    pub fn start_drover_tls(
        &self,
        bin: &Path,
        port: u16,
        admin: u16,
        backends: &[u16],
        variant: &Variant,
        cert_key: (&Path, &Path),
    ) -> Result<Server> {
        self.start_drover_with(bin, port, admin, backends, variant, Some(cert_key))
    }

    fn start_drover_with(
        &self,
        bin: &Path,
        port: u16,
        admin: u16,
        backends: &[u16],
        variant: &Variant,
        tls: Option<(&Path, &Path)>,
    ) -> Result<Server> {
        let home = self.dir.join(variant.name);
        let tls_routes = tls.map_or_else(String::new, |(cert, key)| {
            format!(
                "[http.routers.bench.tls]\n[tls.stores.default.defaultCertificate]\ncertFile = {:?}\nkeyFile = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            )
        });
        let routes = home.join("routes.toml");
        let static_config = home.join("static.toml");
        let servers: String = backends
            .iter()
            .map(|backend| format!("\n[[http.services.backend.loadBalancer.servers]]\nurl = \"http://{LOOPBACK}:{backend}\"\n"))
            .collect();
        write_file(
            &routes,
            &format!(
                "[http.routers.bench]
rule = \"PathPrefix(`/`)\"
service = \"backend\"
{servers}
{extra}{tls_routes}",
                extra = variant.routes
            ),
        )?;
        write_file(
            &static_config,
            &format!(
                "[entryPoints.web]
address = \"{LOOPBACK}:{port}\"

[api]
address = \"{LOOPBACK}:{admin}\"

[log]
level = \"warn\"

[providers.file]
filename = {routes:?}
watch = false
{extra}",
                routes = routes.display().to_string(),
                extra = variant.static_config.replace("{home}", &home.display().to_string()),
            ),
        )?;
        let mut cmd = self.server(bin, true);
        cmd.arg(DROVER_CONFIG_FLAG).arg(&static_config);
        cmd.args(["--workers", &self.workers.to_string()]);
        let server = Server::spawn(variant.name, cmd, &self.dir)?;
        if tls.is_some() {
            server.wait_ready(&[(admin, "/ping")])?.wait_listening(&[port])
        } else {
            server.wait_ready(&[(admin, "/ping"), (port, "/")])
        }
    }

    /// Runs `wrk --latency` and returns what it printed.
    pub fn run_wrk(&self, port: u16, secs: u32, connections: u32) -> Result<String> {
        self.run_wrk_with(port, secs, connections, &[])
    }

    /// [`Lab::run_wrk`] with request headers added (`"Host: a.bench"`).
    pub fn run_wrk_with(&self, port: u16, secs: u32, connections: u32, headers: &[&str]) -> Result<String> {
        self.run_wrk_timed(port, secs, connections, headers).map(|(out, _)| out)
    }

    /// [`Lab::run_wrk_with`], also returning the CPU time wrk used (what the shell that starts
    /// it reports for its child with `times`).
    pub fn run_wrk_timed(&self, port: u16, secs: u32, connections: u32, headers: &[&str]) -> Result<(String, CpuTime)> {
        self.run_wrk_url_timed(&url(port), secs, connections, headers)
    }

    /// [`Lab::run_wrk_timed`] on any URL (`https://127.0.0.1:port/`).
    pub fn run_wrk_url_timed(&self, url: &str, secs: u32, connections: u32, headers: &[&str]) -> Result<(String, CpuTime)> {
        let wrk = self.tools.wrk.as_ref().ok_or("wrk was not looked for (Tools::find(false))")?;
        let mut args: Vec<String> = ["-t1", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency"]
            .map(String::from)
            .into();
        args.extend(headers.iter().flat_map(|h| ["-H".to_string(), h.to_string()]));
        args.push(url.to_string());
        self.run_loadgen_timed(wrk, &args)
    }

    /// Runs a load generator with `args`, pinned to its CPU, and returns what it printed and
    /// the CPU time it used (what the shell that starts it reports for its child with `times`).
    pub fn run_loadgen_timed(&self, program: &Path, args: &[String]) -> Result<(String, CpuTime)> {
        let name = program
            .file_name()
            .map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
        let output = Command::new("sh")
            .args(["-c", r#""$@"; status=$?; times >&2; exit $status"#, "sh"])
            .arg(&self.tools.taskset)
            .args(["-c", self.loadgen_cpus])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {name}: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("{name} failed ({}): {}", output.status, stderr.trim()));
        }
        let cpu = stderr
            .lines()
            .last()
            .and_then(parse_times)
            .ok_or_else(|| format!("no CPU times from the shell's `times`: {stderr:?}"))?;
        Ok((String::from_utf8_lossy(&output.stdout).into_owned(), cpu))
    }

    /// Runs h2load open-loop at `rate` requests/s in total and returns what it printed and its
    /// per-request log.
    pub fn run_h2load(&self, h2load: &Path, port: u16, rate: f64, secs: u32, clients: u32) -> Result<(String, String)> {
        let log = self.dir.join("h2load.log");
        let per_client = rate / f64::from(clients);
        let output = self
            .loadgen(h2load)
            .args(["--h1", "-t1", &format!("-c{clients}"), &format!("-D{secs}")])
            .arg(format!("--rps={per_client:.3}"))
            .arg(format!("--log-file={}", log.display()))
            .arg(url(port))
            .output()
            .map_err(|e| format!("cannot run h2load: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("h2load failed ({}): {}", output.status, stderr.trim()));
        }
        let log_text = fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        Ok((String::from_utf8_lossy(&output.stdout).into_owned(), log_text))
    }
}

/// Every line of `text` indented by `width` spaces and ended with a newline.
/// nginx's `upstream backend` block over `backends` (each `server` line ending in `suffix`), kept
/// alive as drover's and HAProxy's upstream connections are.
fn nginx_upstream(backends: &[u16], suffix: &str) -> String {
    let servers: String = backends
        .iter()
        .map(|backend| format!("        server {LOOPBACK}:{backend}{suffix};\n"))
        .collect();
    format!("    upstream backend {{\n{servers}        keepalive 64;\n        keepalive_requests 1000000;\n    }}")
}

fn indent(text: &str, width: usize) -> String {
    text.lines().map(|line| format!("{:width$}{line}\n", "")).collect()
}

fn url(port: u16) -> String {
    format!("http://{LOOPBACK}:{port}/")
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Health and retry settings in a peer's own syntax (nginx or HAProxy), added to the
/// configuration it is started with; empty strings keep that proxy's defaults. (drover's go in
/// its routes file, through [`Variant::routes`].)
#[derive(Clone, Copy, Debug, Default)]
pub struct Health {
    /// Appended to every `server` line.
    pub server: &'static str,
    /// Directives, one a line, for the block that proxies: nginx's `location`, HAProxy's
    /// `backend`.
    pub block: &'static str,
}

/// A drover configuration to measure: the plain one, or one with a feature switched.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// Target name in the tables.
    pub name: &'static str,
    /// Appended to the routes file.
    pub routes: &'static str,
    /// Appended to the static configuration (`{home}` is the variant's directory).
    pub static_config: &'static str,
}

/// drover as shipped: passive health and retries on, access log off.
pub const PLAIN: Variant = Variant {
    name: "drover",
    routes: "",
    static_config: "",
};

/// drover as shipped, built without PGO: measured beside the PGO build when `PGO=1`.
pub const NO_PGO: Variant = Variant {
    name: "drover-nopgo",
    routes: "",
    static_config: "",
};

/// Variants measured with `VARIANTS=1`.
pub const VARIANTS: [Variant; 2] = [
    Variant {
        name: "drover-nohealth",
        routes: "[http.services.backend.loadBalancer.passiveHealthCheck]\nenabled = false\n[http.services.backend.loadBalancer.retry]\nattempts = 0\n",
        static_config: "",
    },
    Variant { name: "drover+accesslog", routes: "", static_config: "[accessLog]\nfilePath = \"{home}/access.log\"\nformat = \"json\"\n" },
];

/// drover with #23's typical chain (`benches/middleware-chain.toml`: `headers`, `stripPrefix`,
/// `rateLimit` far above the load) as the entrypoint's middlewares, measured with `CHAIN=1`
/// beside nginx doing the same ([`Lab::start_nginx_chain`]).
pub const CHAIN: Variant = Variant {
    name: "drover+chain",
    routes: "[http.middlewares.secure.headers]
frameDeny = true
contentTypeNosniff = true
[http.middlewares.secure.headers.customRequestHeaders]
X-Script-Name = \"drover\"
[http.middlewares.secure.headers.customResponseHeaders]
X-Served-By = \"drover\"
[http.middlewares.strip.stripPrefix]
prefixes = [\"/\"]
[http.middlewares.limit.rateLimit]
average = 100000000
burst = 100000000
",
    static_config: "[entryPoints.web.http]\nmiddlewares = [\"secure@file\", \"strip@file\", \"limit@file\"]\n",
};

/// The order targets (or arms) are measured in, in round `round` (from 1): each round starts one target
/// further on, and every other round goes backwards from there, so no target keeps the first slot or the
/// same neighbour (a fixed order let slow drifts of the machine favour some positions: a
/// variant doing ~2% less work measured 5–10% faster, always right after the same target).
pub fn round_order(n: usize, round: usize) -> Vec<usize> {
    let start = (round - 1) % n.max(1);
    if round.is_multiple_of(2) {
        (0..n).map(|i| (start + n - i) % n).collect()
    } else {
        (0..n).map(|i| (start + i) % n).collect()
    }
}

/// A positive whole number from the environment, or `default` when unset.
pub fn env_count(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?} is not a positive whole number")),
        },
    }
}

/// Free loopback ports, all bound at once so that none is handed out twice.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((LOOPBACK, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot bind a free port on {LOOPBACK}: {e}"))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().map_err(|e| e.to_string())?.port();
    }
    Ok(ports)
}

/// Builds drover's release binary (or takes `DROVER_BIN`) and returns its path. With `PGO=1`
/// the binary is built with profile-guided optimisation by `.ci/pgo-build` (once per run).
pub fn drover_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let pgo = std::env::var_os("DROVER_BIN").is_none() && pgo_requested();
            let bin = if pgo {
                pgo_binary()
            } else {
                release_binary("DROVER_BIN", &["-p", "drover", "--bin", "drover"], "drover")
            }?;
            let kind = if pgo { "built with PGO" } else { "as built or given" };
            println!("drover binary: {} ({kind})", bin.display());
            Ok(bin)
        })
        .clone()
}

/// `PGO=1`: drover is built with profile-guided optimisation.
pub fn pgo_requested() -> bool {
    std::env::var_os("PGO").is_some_and(|v| v == "1")
}

/// The ordinary release build of drover (or `DROVER_PLAIN_BIN`), for comparison with PGO.
pub fn plain_drover_binary() -> Result<PathBuf> {
    release_binary("DROVER_PLAIN_BIN", &["-p", "drover", "--bin", "drover"], "drover")
}

/// Runs `.ci/pgo-build`, which prints the optimised binary's path on its last line.
fn pgo_binary() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pgo-build");
    println!(
        "building: {} (instrumented build, training load, optimised build)",
        script.display()
    );
    let output = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last().map(PathBuf::from) {
        Some(bin) if bin.is_file() => Ok(bin),
        _ => Err(format!("{} printed no binary path (stdout: {stdout:?})", script.display())),
    }
}

/// Builds the whoami example in release mode (or takes `WHOAMI_BIN`) and returns its path.
pub fn whoami_binary() -> Result<PathBuf> {
    release_binary("WHOAMI_BIN", &["--example", "whoami"], "examples/whoami")
}

/// `cargo build --release <args>` in this workspace, unless `env_override` names a binary
/// already; returns `<target>/release/<built>`.
fn release_binary(env_override: &str, args: &[&str], built: &str) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env_override) {
        return Ok(PathBuf::from(bin));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command = format!("cargo build --release {}", args.join(" "));
    println!("building: {command}");
    let status = Command::new(cargo)
        .current_dir(root)
        .arg("build")
        .arg("--release")
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("`{command}` failed ({status})"));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
    let bin = target_dir.join("release").join(built);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("the build succeeded but {} does not exist", bin.display()))
    }
}

/// A server process this bench started; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Server { name, child, log })
    }

    /// The server's process id (nginx's master; its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU time the server (every thread of it and of its child processes: nginx's
    /// workers) has used so far.
    pub fn cpu_time(&self) -> Result<CpuTime> {
        CpuTime::of_tree(self.child.id())
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL now, the way a crash stops a server: no goodbye to its clients.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().map_err(|e| format!("cannot kill {}: {e}", self.name))?;
        self.child.wait().map(drop).map_err(|e| format!("cannot reap {}: {e}", self.name))
    }

    /// The file the server's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until every `(port, path)` answers 200, or fails with the server's output.
    fn wait_ready(mut self, checks: &[(u16, &str)]) -> Result<Self> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for &(port, path) in checks {
            loop {
                if let Some(status) = self.exited() {
                    let tail = self.log_tail();
                    return Err(format!("{} exited ({status}) before it was ready{tail}", self.name));
                }
                let outcome = http_get(port, path);
                if matches!(outcome, Ok(200)) {
                    break;
                }
                if Instant::now() >= deadline {
                    let got = match outcome {
                        Ok(status) => format!("status {status}"),
                        Err(e) => e.to_string(),
                    };
                    return Err(format!(
                        "{}: GET {LOOPBACK}:{port}{path} gave no 200 within {READY_TIMEOUT:?} \
                         (last: {got}){}",
                        self.name,
                        self.log_tail()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(self)
    }

    /// Waits until every port accepts a TCP connection (a TLS port, where a plain GET cannot
    /// tell), or fails with the server's output.
    fn wait_listening(mut self, ports: &[u16]) -> Result<Self> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for &port in ports {
            loop {
                if let Some(status) = self.exited() {
                    let tail = self.log_tail();
                    return Err(format!("{} exited ({status}) before it was ready{tail}", self.name));
                }
                let addr = SocketAddr::from((LOOPBACK, port));
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!(
                            "{}: {addr} accepted no connection within {READY_TIMEOUT:?} ({e}){}",
                            self.name,
                            self.log_tail()
                        ))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        Ok(self)
    }

    /// The end of the server's output, on lines of its own below an error message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(15)..];
        if tail.is_empty() {
            return String::from("\n    (it printed nothing)");
        }
        tail.iter().fold(String::new(), |mut out, line| {
            let _ = write!(out, "\n    | {line}");
            out
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SIGTERM first, so that nginx's master stops its workers too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET path` on a fresh connection to `127.0.0.1:port`; returns the status code.
fn http_get(port: u16, path: &str) -> std::io::Result<u16> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((LOOPBACK, port)), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head)
        .ok()
        .filter(|h| h.starts_with("HTTP/1."))
        .and_then(|h| h[9..12].parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP/1 response: {head:?}")))
}

/// User and kernel CPU time, in seconds, as `/proc` counts it (in ticks of `USER_HZ`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    /// What `pid` and its descendants have used so far, every thread counted.
    pub fn of_tree(pid: u32) -> Result<Self> {
        let mut total = CpuTime::default();
        let mut pending = vec![pid];
        while let Some(pid) = pending.pop() {
            let tasks = fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("/proc/{pid}/task: {e}"))?;
            for task in tasks {
                let task = task.map_err(|e| format!("/proc/{pid}/task: {e}"))?.path();
                // A thread that ended between the listing and the read took its time with it.
                let Ok(stat) = fs::read_to_string(task.join("stat")) else {
                    continue;
                };
                let own = Self::parse_stat(&stat).ok_or_else(|| format!("{}: unexpected format", task.join("stat").display()))?;
                total.user += own.user;
                total.system += own.system;
                if let Ok(children) = fs::read_to_string(task.join("children")) {
                    pending.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
                }
            }
        }
        Ok(total)
    }

    /// utime and stime of a `/proc/<pid>/stat` line.
    pub fn parse_stat(stat: &str) -> Option<Self> {
        let (user, system) = stat_ticks(stat)?;
        let hz = clock_ticks_per_sec();
        Some(CpuTime {
            user: user as f64 / hz,
            system: system as f64 / hz,
        })
    }

    /// `self − earlier`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }

    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

/// utime and stime of a `/proc/<pid>/stat` line, in ticks (fields 14 and 15; the command name
/// before them, in parentheses, may itself hold spaces and parentheses).
pub fn stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// A line of the shell's `times`, `0m1.250000s 0m0.750000s`: user and system time.
pub fn parse_times(line: &str) -> Option<CpuTime> {
    let seconds = |field: &str| -> Option<f64> {
        let (minutes, rest) = field.split_once('m')?;
        Some(minutes.parse::<f64>().ok()? * 60.0 + rest.strip_suffix('s')?.parse::<f64>().ok()?)
    };
    let mut fields = line.split_whitespace();
    let (user, system) = (seconds(fields.next()?)?, seconds(fields.next()?)?);
    fields.next().is_none().then_some(CpuTime { user, system })
}

/// `USER_HZ`, the unit of `/proc`'s CPU times (`getconf CLK_TCK`; 100 where that fails).
fn clock_ticks_per_sec() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
