//! Side-by-side load comparison: the backend direct, nginx, HAProxy and drover, measured the way
//! `shared/specs/performance.md` prescribes.
//!
//! ```text
//! cargo bench --bench load_compare                  # 3 rounds × 10 s
//! cargo bench --bench load_compare -- --quick       # 1 round × 3 s, to check that it works
//! cargo bench --bench load_compare -- --self-test   # checks the output parsers only
//! ```
//!
//! Environment: `ROUNDS` (3), `DURATION` in seconds (10), `WORKERS` (1, the same for every proxy),
//! `QUICK=1` (as `--quick`), `DROVER_BIN=/path` (use this binary instead of building one).
//! Needs `apt-get install -y nginx-light haproxy wrk`, and `nghttp2-client` for the latency pass.
//!
//! Why it is shaped like this: the machines are shared and noisy, so one run of one proxy says
//! little. The targets are measured in interleaved rounds (direct, nginx, haproxy, drover, and
//! again) so that a noisy minute hurts all of them alike, and each is reported as the median of
//! its rounds next to the spread and the error count. The load generator is pinned to CPU 0 and
//! the proxies to the other CPUs, so the generator never competes with what it measures; the
//! backend floats (see `Lab::start_backend`). nginx's habit of closing a keep-alive connection
//! after 1,000 requests is lifted (`keepalive_requests`): HAProxy and drover have no such limit,
//! and h2load's open-loop clients stop for good when their connection closes.
//! Closed-loop `wrk` finds the maximum throughput; latency is then measured open-loop with
//! `h2load --rps` at a fixed fraction of the slowest peer's maximum, because latency at
//! saturation only measures the length of a queue.
//!
//! Every server listens on 127.0.0.1 on a free port, runs from a temporary directory, and is
//! stopped when its guard drops (end of run, error or panic) or, through `setpriv --pdeathsig`,
//! when this process dies without unwinding.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

type Result<T, E = String> = std::result::Result<T, E>;

/// Every listener and every request of this bench uses this address, never another.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// wrk's connection count (`-c`), as in the measured baselines.
const CONNECTIONS: u32 = 64;
/// h2load's client count (`-c`) for the open-loop latency pass.
const OPEN_LOOP_CLIENTS: u32 = 32;
/// The open-loop rate as a fraction of the slowest peer's median maximum.
const OPEN_LOOP_FRACTION: f64 = 0.5;
/// How long a server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server gets to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// The unrecorded wrk run each target gets before the first round (fills pools and caches).
const WARMUP_SECS: u32 = 1;
/// drover's flag for its static configuration file.
const DROVER_CONFIG_FLAG: &str = "--config";
/// The peers drover is compared with.
const PEERS: [&str; 2] = ["haproxy", "nginx"];

fn main() {
    let code = match run() {
        Ok(()) => 0,
        Err(Exit::Failed(msg)) => {
            eprintln!("load_compare: {msg}");
            1
        }
        Err(Exit::MissingTools(msg)) => {
            eprintln!("load_compare: {msg}");
            2
        }
    };
    // run() has returned, so every server guard has dropped: exiting now leaves nothing behind.
    std::process::exit(code);
}

/// Why the bench stopped early.
enum Exit {
    Failed(String),
    MissingTools(String),
}

impl From<String> for Exit {
    fn from(msg: String) -> Self {
        Exit::Failed(msg)
    }
}

fn run() -> Result<(), Exit> {
    let opts = Options::parse()?;
    if opts.self_test {
        return self_test().map_err(Exit::Failed);
    }
    let tools = Tools::find().map_err(Exit::MissingTools)?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let lab = Lab::new(tools, tmp.path(), opts.workers);
    let [backend_port, nginx_port, haproxy_port, drover_port, admin_port] = free_ports()?;

    // The backend is the `direct` target; without it nothing can be measured.
    let backend = lab.start_backend(backend_port)?;
    let mut targets = vec![
        Target::running("direct", backend_port, backend),
        Target::start("nginx", nginx_port, || lab.start_nginx_proxy(nginx_port, backend_port)),
        Target::start("haproxy", haproxy_port, || lab.start_haproxy(haproxy_port, backend_port)),
        Target::start("drover", drover_port, || {
            let bin = drover_binary()?;
            lab.start_drover(&bin, drover_port, admin_port, backend_port)
        }),
    ];

    println!(
        "\nload_compare: {} round(s) × {} s of wrk -t1 -c{CONNECTIONS} on CPU {}, proxies on CPU {}, \
         {} worker(s) each; backend nginx `return 200 \"1\"`, not pinned",
        opts.rounds,
        opts.duration_secs,
        lab.loadgen_cpus,
        lab.server_cpus.as_deref().unwrap_or("any (not pinned)"),
        opts.workers,
    );
    for target in targets.iter_mut() {
        target.measure_max(&lab, WARMUP_SECS);
        target.max.clear();
    }
    for round in 1..=opts.rounds {
        let mut line = format!("round {round}/{}:", opts.rounds);
        for target in targets.iter_mut() {
            let name = target.name;
            if let Some(result) = target.measure_max(&lab, opts.duration_secs) {
                let _ = write!(line, "  {name} {:.0}/s", result.requests_per_sec);
            }
        }
        println!("{line}");
    }
    print_max_table(&targets, opts.rounds);

    let Some(h2load) = lab.tools.h2load.clone() else {
        println!("\nopen-loop latency: skipped, h2load not found (apt-get install -y nghttp2-client)");
        return Ok(());
    };
    let Some(rate) = open_loop_rate(&targets) else {
        println!("\nopen-loop latency: skipped, no peer ({}) has a maximum", PEERS.join(", "));
        return Ok(());
    };
    println!(
        "\nopen-loop latency: h2load --h1 -c{OPEN_LOOP_CLIENTS} -t1 at {rate:.0} req/s in total \
         ({:.0}% of the slowest peer's maximum), {} round(s) × {} s",
        OPEN_LOOP_FRACTION * 100.0,
        opts.rounds,
        opts.duration_secs,
    );
    for round in 1..=opts.rounds {
        for target in targets.iter_mut() {
            target.measure_latency(&lab, &h2load, rate, opts.duration_secs, round);
        }
    }
    print_latency_table(&targets);
    Ok(())
}

/// What to run, from the command line and the environment.
struct Options {
    rounds: usize,
    duration_secs: u32,
    workers: u32,
    self_test: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut self_test = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--self-test" => self_test = true,
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?} (known: --quick, --self-test)")),
            }
        }
        let (rounds, duration_secs) = if quick {
            (1, 3)
        } else {
            (env_count("ROUNDS", 3)? as usize, env_count("DURATION", 10)?)
        };
        let workers = env_count("WORKERS", 1)?;
        Ok(Options {
            rounds,
            duration_secs,
            workers,
            self_test,
        })
    }
}

/// A positive whole number from the environment, or `default` when unset.
fn env_count(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?} is not a positive whole number")),
        },
    }
}

/// The external programs, resolved to absolute paths.
struct Tools {
    nginx: PathBuf,
    haproxy: PathBuf,
    wrk: PathBuf,
    taskset: PathBuf,
    setpriv: PathBuf,
    /// Optional: only the open-loop latency pass needs it.
    h2load: Option<PathBuf>,
}

impl Tools {
    fn find() -> Result<Self> {
        let needed = [
            ("nginx", "nginx-light"),
            ("haproxy", "haproxy"),
            ("wrk", "wrk"),
            ("taskset", "util-linux"),
            ("setpriv", "util-linux"),
        ];
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
            wrk: next(),
            taskset: next(),
            setpriv: next(),
            h2load: find_on_path("h2load"),
        })
    }
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    // Debian puts nginx and haproxy in /usr/sbin, which is not on every user's PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Where and how the servers and the load generators run.
struct Lab {
    tools: Tools,
    dir: PathBuf,
    workers: u32,
    loadgen_cpus: &'static str,
    /// None on a single-CPU machine, where nothing can be kept apart.
    server_cpus: Option<String>,
}

impl Lab {
    fn new(tools: Tools, dir: &Path, workers: u32) -> Self {
        let server_cpus = match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            1 => {
                println!("load_compare: one CPU only, the servers share it with the load generator");
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
        }
    }

    /// A load generator's command, pinned to its own CPU.
    fn loadgen(&self, program: &Path) -> Command {
        let mut cmd = Command::new(&self.tools.taskset);
        cmd.args(["-c", self.loadgen_cpus]).arg(program);
        cmd.stdin(Stdio::null());
        cmd
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
    fn start_backend(&self, port: u16) -> Result<Server> {
        let http = format!(
            "    server {{\n        listen {LOOPBACK}:{port};\n        \
             location / {{ return 200 \"1\"; }}\n    }}"
        );
        self.start_nginx("backend", 1, port, false, &http)
    }

    fn start_nginx_proxy(&self, port: u16, backend: u16) -> Result<Server> {
        let http = format!(
            "    upstream backend {{
        server {LOOPBACK}:{backend};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {LOOPBACK}:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}"
        );
        self.start_nginx("nginx", self.workers, port, true, &http)
    }

    /// nginx in the foreground with everything under its own prefix: nothing in /etc or /var.
    fn start_nginx(&self, name: &'static str, workers: u32, port: u16, pinned: bool, http: &str) -> Result<Server> {
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
events {{ worker_connections 4096; }}
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
"
        );
        write_file(&prefix.join("tmp").join(".keep"), "")?;
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.nginx, pinned);
        cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf).args(["-e", "stderr"]);
        Server::spawn(name, cmd, &self.dir)?.wait_ready(&[(port, "/")])
    }

    fn start_haproxy(&self, port: u16, backend: u16) -> Result<Server> {
        let conf = self.dir.join("haproxy.cfg");
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
    default_backend backend

backend backend
    server backend {LOOPBACK}:{backend}
",
            workers = self.workers
        );
        write_file(&conf, &text)?;
        let mut cmd = self.server(&self.tools.haproxy, true);
        cmd.arg("-db").arg("-f").arg(&conf);
        Server::spawn("haproxy", cmd, &self.dir)?.wait_ready(&[(port, "/")])
    }

    fn start_drover(&self, bin: &Path, port: u16, admin: u16, backend: u16) -> Result<Server> {
        let home = self.dir.join("drover");
        let routes = home.join("routes.toml");
        let static_config = home.join("static.toml");
        write_file(
            &routes,
            &format!(
                "[http.routers.bench]
rule = \"PathPrefix(`/`)\"
service = \"backend\"

[[http.services.backend.loadBalancer.servers]]
url = \"http://{LOOPBACK}:{backend}\"
"
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
",
                routes = routes.display().to_string()
            ),
        )?;
        let mut cmd = self.server(bin, true);
        cmd.arg(DROVER_CONFIG_FLAG).arg(&static_config);
        cmd.args(["--workers", &self.workers.to_string()]);
        Server::spawn("drover", cmd, &self.dir)?.wait_ready(&[(admin, "/ping"), (port, "/")])
    }

    fn run_wrk(&self, port: u16, secs: u32) -> Result<WrkResult> {
        let output = self
            .loadgen(&self.tools.wrk)
            .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{secs}s"), "--latency"])
            .arg(url(port))
            .output()
            .map_err(|e| format!("cannot run wrk: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("wrk failed ({}): {}", output.status, stderr.trim()));
        }
        WrkResult::parse(&String::from_utf8_lossy(&output.stdout))
    }

    fn run_h2load(&self, h2load: &Path, port: u16, rate: f64, secs: u32) -> Result<OpenLoopResult> {
        let log = self.dir.join("h2load.log");
        let per_client = rate / f64::from(OPEN_LOOP_CLIENTS);
        let output = self
            .loadgen(h2load)
            .args(["--h1", "-t1", &format!("-c{OPEN_LOOP_CLIENTS}"), &format!("-D{secs}")])
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
        OpenLoopResult::parse(&String::from_utf8_lossy(&output.stdout), &log_text)
    }
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

/// Free loopback ports, all bound at once so that none is handed out twice.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
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

/// Builds drover's release binary (or takes `DROVER_BIN`) and returns its path.
fn drover_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("DROVER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building drover: cargo build --release -p drover");
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "drover", "--bin", "drover"])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("`cargo build --release -p drover` failed ({status})"));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
    let bin = target_dir.join("release").join("drover");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("the build succeeded but {} does not exist", bin.display()))
    }
}

/// A server process this bench started; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
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

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
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

    /// The end of the server's output, on lines of its own below an error message.
    fn log_tail(&self) -> String {
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

/// One thing the load generator is pointed at, and what was measured there.
struct Target {
    name: &'static str,
    port: u16,
    /// Dropped (so stopped) when the target is skipped.
    server: Option<Server>,
    /// Why this target is no longer measured.
    skipped: Option<String>,
    max: Vec<WrkResult>,
    latency: Vec<OpenLoopResult>,
}

impl Target {
    fn running(name: &'static str, port: u16, server: Server) -> Self {
        Target {
            name,
            port,
            server: Some(server),
            skipped: None,
            max: vec![],
            latency: vec![],
        }
    }

    fn start(name: &'static str, port: u16, start: impl FnOnce() -> Result<Server>) -> Self {
        match start() {
            Ok(server) => Target::running(name, port, server),
            Err(reason) => {
                println!("{name}: skipped: {reason}");
                Target {
                    name,
                    port,
                    server: None,
                    skipped: Some(reason),
                    max: vec![],
                    latency: vec![],
                }
            }
        }
    }

    fn skip(&mut self, reason: String) {
        println!("{}: skipped from now on: {reason}", self.name);
        self.skipped = Some(reason);
        self.server = None;
    }

    /// Skips the target if its server has died; true while it is alive.
    fn check_alive(&mut self) -> bool {
        let Some(server) = self.server.as_mut() else {
            return false;
        };
        match server.exited() {
            None => true,
            Some(status) => {
                let tail = server.log_tail();
                self.skip(format!("its server exited ({status}){tail}"));
                false
            }
        }
    }

    fn measure_max(&mut self, lab: &Lab, secs: u32) -> Option<&WrkResult> {
        if self.skipped.is_some() {
            return None;
        }
        let result = lab.run_wrk(self.port, secs);
        if !self.check_alive() {
            return None;
        }
        match result {
            Ok(result) => {
                self.max.push(result);
                self.max.last()
            }
            Err(e) => {
                self.skip(e);
                None
            }
        }
    }

    fn measure_latency(&mut self, lab: &Lab, h2load: &Path, rate: f64, secs: u32, round: usize) {
        if self.skipped.is_some() {
            return;
        }
        let result = lab.run_h2load(h2load, self.port, rate, secs);
        if !self.check_alive() {
            return;
        }
        match result {
            Ok(result) => {
                println!(
                    "latency round {round}: {} {:.0}/s p50 {} p99 {}",
                    self.name,
                    result.achieved_per_sec,
                    fmt_latency(result.p50),
                    fmt_latency(result.p99)
                );
                self.latency.push(result);
            }
            Err(e) => println!("latency round {round}: {}: {e}", self.name),
        }
    }

    fn median_max(&self) -> Option<f64> {
        median(self.max.iter().map(|r| r.requests_per_sec))
    }
}

/// Half the slowest peer's median maximum, or None if no peer was measured.
fn open_loop_rate(targets: &[Target]) -> Option<f64> {
    let peers = targets.iter().filter(|t| PEERS.contains(&t.name));
    let slowest = peers.filter_map(Target::median_max).min_by(f64::total_cmp)?;
    Some(slowest * OPEN_LOOP_FRACTION)
}

fn print_max_table(targets: &[Target], rounds: usize) {
    println!(
        "\nmaximum throughput (wrk, closed loop; median of {rounds} round(s), errors summed)\n\
         {:<8} {:>10} {:>19} {:>10} {:>10} {:>8}  {:>10}",
        "target", "req/s", "min–max", "p50", "p99", "errors", "requests"
    );
    for t in targets {
        let Some(rps) = t.median_max() else {
            println!("{:<8} skipped: {}", t.name, first_line(t.skipped.as_deref()));
            continue;
        };
        let lo = t.max.iter().map(|r| r.requests_per_sec).min_by(f64::total_cmp).unwrap_or(rps);
        let hi = t.max.iter().map(|r| r.requests_per_sec).max_by(f64::total_cmp).unwrap_or(rps);
        let p50 = median_duration(t.max.iter().map(|r| r.p50));
        let p99 = median_duration(t.max.iter().map(|r| r.p99));
        let errors: u64 = t.max.iter().map(|r| r.errors.total()).sum();
        let requests: u64 = t.max.iter().map(|r| r.requests).sum();
        println!(
            "{:<8} {:>10} {:>19} {:>10} {:>10} {:>8}  {:>10}",
            t.name,
            fmt_count(rps),
            format!("{}–{}", fmt_count(lo), fmt_count(hi)),
            fmt_latency(p50),
            fmt_latency(p99),
            errors,
            fmt_count(requests as f64),
        );
    }
    for t in targets {
        for (i, r) in t.max.iter().enumerate().filter(|(_, r)| r.errors.total() > 0) {
            println!("  {} round {}: {}", t.name, i + 1, r.errors);
        }
    }
    print_ratios(targets);
}

fn print_ratios(targets: &[Target]) {
    let find = |name| targets.iter().find(|t| t.name == name).and_then(Target::median_max);
    let Some(drover) = find("drover") else {
        println!("ratios: none, drover was not measured");
        return;
    };
    let ratios: Vec<_> = PEERS
        .iter()
        .filter_map(|peer| Some(format!("drover/{peer} {:.2}×", drover / find(peer)?)))
        .collect();
    println!("ratios (median req/s): {}", ratios.join("   "));
}

fn print_latency_table(targets: &[Target]) {
    println!("{:<8} {:>10} {:>10} {:>10} {:>8}", "target", "achieved/s", "p50", "p99", "errors");
    for t in targets.iter().filter(|t| !t.latency.is_empty()) {
        let achieved = median(t.latency.iter().map(|r| r.achieved_per_sec)).unwrap_or(0.0);
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>8}",
            t.name,
            fmt_count(achieved),
            fmt_latency(median_duration(t.latency.iter().map(|r| r.p50))),
            fmt_latency(median_duration(t.latency.iter().map(|r| r.p99))),
            t.latency.iter().map(|r| r.errors).sum::<u64>(),
        );
    }
}

fn first_line(text: Option<&str>) -> &str {
    text.and_then(|t| t.lines().next()).unwrap_or("not measured")
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

fn median_duration(values: impl Iterator<Item = Duration>) -> Duration {
    median(values.map(|d| d.as_secs_f64())).map_or(Duration::ZERO, Duration::from_secs_f64)
}

/// `123456.7` → `"123,457"`.
fn fmt_count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn fmt_latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// What one closed-loop wrk run measured.
#[derive(Debug, Clone, PartialEq)]
struct WrkResult {
    requests: u64,
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: WrkErrors,
}

/// The failures wrk counts: bad statuses and socket errors.
#[derive(Debug, Clone, Default, PartialEq)]
struct WrkErrors {
    non_2xx_3xx: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
}

impl WrkErrors {
    fn total(&self) -> u64 {
        self.non_2xx_3xx + self.connect + self.read + self.write + self.timeout
    }
}

impl std::fmt::Display for WrkErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "non-2xx/3xx {}, socket errors: connect {}, read {}, write {}, timeout {}",
            self.non_2xx_3xx, self.connect, self.read, self.write, self.timeout
        )
    }
}

impl WrkResult {
    /// Parses the output of `wrk --latency`.
    fn parse(output: &str) -> Result<Self> {
        let (mut requests, mut requests_per_sec, mut p50, mut p99) = (None, None, None, None);
        let mut errors = WrkErrors::default();
        for line in output.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("Requests/sec:") {
                requests_per_sec = v.trim().parse::<f64>().ok();
            } else if let Some(v) = line.strip_prefix("50%") {
                p50 = parse_wrk_time(v.trim());
            } else if let Some(v) = line.strip_prefix("99%") {
                p99 = parse_wrk_time(v.trim());
            } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
                errors.non_2xx_3xx = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("Socket errors:") {
                for part in v.split(',') {
                    let mut words = part.split_whitespace();
                    let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let n = n.parse().unwrap_or(0);
                    match kind {
                        "connect" => errors.connect = n,
                        "read" => errors.read = n,
                        "write" => errors.write = n,
                        "timeout" => errors.timeout = n,
                        _ => {}
                    }
                }
            } else if let Some((n, _)) = line.split_once(" requests in ") {
                requests = n.trim().parse().ok();
            }
        }
        match (requests, requests_per_sec, p50, p99) {
            (Some(requests), Some(requests_per_sec), Some(p50), Some(p99)) => Ok(WrkResult {
                requests,
                requests_per_sec,
                p50,
                p99,
                errors,
            }),
            _ => Err(format!("unexpected wrk output (was --latency given?):\n{output}")),
        }
    }
}

/// wrk's time format: `340.00us`, `1.46ms`, `2.00s`, `1.50m`.
fn parse_wrk_time(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let value = number.parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value * scale))
}

/// What one open-loop h2load run measured.
#[derive(Debug, Clone, PartialEq)]
struct OpenLoopResult {
    achieved_per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// h2load's `failed` count: non-2xx/3xx statuses, resets, timeouts.
    errors: u64,
}

impl OpenLoopResult {
    /// Parses h2load's summary (stdout) and its `--log-file` (start µs, status, duration µs).
    fn parse(summary: &str, log: &str) -> Result<Self> {
        let mut achieved = None;
        let mut errors = None;
        for line in summary.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                // "finished in 10.00s, 25000.00 req/s, 3.52MB/s"
                achieved = rest.split(", ").nth(1).and_then(|r| r.strip_suffix(" req/s"));
                achieved = achieved.filter(|r| r.parse::<f64>().is_ok());
            } else if let Some(rest) = line.strip_prefix("requests:") {
                // "requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, …"
                errors = rest
                    .split(',')
                    .find_map(|part| part.trim().strip_suffix(" failed")?.parse::<u64>().ok());
            }
        }
        let mut durations: Vec<u64> = log
            .lines()
            .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
            .collect();
        durations.sort_unstable();
        match (achieved, errors, durations.is_empty()) {
            (Some(achieved), Some(errors), false) => Ok(OpenLoopResult {
                achieved_per_sec: achieved.parse().unwrap_or(0.0),
                p50: Duration::from_micros(percentile(&durations, 0.50)),
                p99: Duration::from_micros(percentile(&durations, 0.99)),
                errors,
            }),
            _ => Err(format!(
                "unexpected h2load output ({} logged requests):\n{summary}",
                durations.len()
            )),
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `--self-test`: checks the parsers on real outputs (harness = false runs no #[test]).
fn self_test() -> Result<()> {
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut check = |name: &str, ok: bool| {
        if ok {
            passed += 1;
        } else {
            failed.push(name.to_string());
        }
    };

    let clean = WrkResult::parse(WRK_CLEAN);
    check("wrk clean: parses", clean.is_ok());
    if let Ok(r) = clean {
        check("wrk clean: req/s", r.requests_per_sec == 104649.84);
        check("wrk clean: requests", r.requests == 220137);
        check("wrk clean: p50", r.p50 == Duration::from_micros(340));
        check("wrk clean: p99", r.p99 == Duration::from_micros(1460));
        check("wrk clean: no errors", r.errors.total() == 0);
    }
    let failing = WrkResult::parse(WRK_ERRORS);
    check("wrk errors: parses", failing.is_ok());
    if let Ok(r) = failing {
        let expected = WrkErrors {
            non_2xx_3xx: 1203,
            connect: 1,
            read: 17,
            write: 2,
            timeout: 40,
        };
        check("wrk errors: counts", r.errors == expected);
        check("wrk errors: p99 in seconds", r.p99 == Duration::from_millis(1990));
    }
    check("wrk garbage: rejected", WrkResult::parse("Running 1s test\n").is_err());
    check("wrk time: minutes", parse_wrk_time("1.50m") == Some(Duration::from_secs(90)));
    check("wrk time: unknown unit", parse_wrk_time("3.00xs").is_none());

    let log: String = (1..=200).map(|i| format!("1795304230135588\t200\t{i}\n")).collect();
    let open = OpenLoopResult::parse(H2LOAD_SUMMARY, &log);
    check("h2load: parses", open.is_ok());
    if let Ok(r) = open {
        check("h2load: achieved", r.achieved_per_sec == 9968.0);
        check("h2load: failed", r.errors == 3);
        check("h2load: p50", r.p50 == Duration::from_micros(100));
        check("h2load: p99", r.p99 == Duration::from_micros(198));
    }
    check("h2load: empty log rejected", OpenLoopResult::parse(H2LOAD_SUMMARY, "").is_err());

    check("median: odd", median([3.0, 1.0, 2.0].into_iter()) == Some(2.0));
    check("median: even", median([4.0, 1.0, 2.0, 3.0].into_iter()) == Some(2.5));
    check("fmt_count", fmt_count(1234567.4) == "1,234,567" && fmt_count(999.0) == "999");

    for name in &failed {
        println!("self-test FAILED: {name}");
    }
    println!("load_compare self-test: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} self-test check(s) failed", failed.len()))
    }
}

const WRK_CLEAN: &str = "Running 2s test @ http://127.0.0.1:18080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   416.69us  329.18us   6.78ms   95.46%
    Req/Sec   105.33k    16.38k  123.05k    80.95%
  Latency Distribution
     50%  340.00us
     75%  500.00us
     90%  639.00us
     99%    1.46ms
  220137 requests in 2.10s, 31.07MB read
Requests/sec: 104649.84
Transfer/sec:     14.77MB
";

const WRK_ERRORS: &str = "Running 3s test @ http://127.0.0.1:18081/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms   80.10ms   1.99s    98.00%
    Req/Sec    20.01k     1.00k   22.00k    70.00%
  Latency Distribution
     50%    1.10ms
     75%    1.50ms
     90%    2.00ms
     99%    1.99s
  60000 requests in 3.00s, 8.00MB read
  Socket errors: connect 1, read 17, write 2, timeout 40
  Non-2xx or 3xx responses: 1203
Requests/sec:  20000.00
Transfer/sec:      2.67MB
";

const H2LOAD_SUMMARY: &str = "starting benchmark...
Application protocol: http/1.1

finished in 2.00s, 9968.00 req/s, 1.41MB/s
requests: 19936 total, 19968 started, 19936 done, 19933 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 19933 2xx, 0 3xx, 0 4xx, 3 5xx
traffic: 2.81MB (2950528) total, 2.05MB (2153088) headers (space savings 0.00%), 19.47KB (19936) data
";
