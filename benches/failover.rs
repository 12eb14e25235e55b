//! Failover, side by side (issue 3): what clients see when one of three backends crashes and comes
//! back, behind drover, HAProxy and nginx, each configured as closely as it allows.
//!
//! ```text
//! cargo bench --bench failover                # 12 s per proxy: SIGKILL b1 at 3 s, restart it at 7 s
//! cargo bench --bench failover -- --quick     # 6 s per proxy: kill at 2 s, restart at 4 s
//! ```
//!
//! Environment: `DURATION` in seconds (12; the kill and the restart stay at ¼ and 7⁄12 of it),
//! `QUICK=1` (as `--quick`), `DROVER_BIN=/path`, `WHOAMI_BIN=/path` (use these binaries instead of
//! building them). Needs `apt-get install -y nginx-light haproxy util-linux`.
//!
//! The script, the same for every proxy, one proxy at a time: three fresh whoami backends b1..b3
//! and the proxy in front of them; [`CLIENTS`] clients send `GET /` over keep-alive connections in
//! a closed loop for the whole run; b1 is SIGKILLed (no goodbye to anyone, like a crash) and later
//! started again on the same port. Every request's start, end, status or error and the backend
//! that answered (`x-whoami-name`) are recorded, and the proxy's log is read as it is written.
//!
//! Why the ejection time comes from the proxies' logs: all three retry a refused connection on
//! another server, so a client may see no failure at all while the proxy still tries b1 now and
//! then. The moment b1 leaves the rotation is known only to the proxy, and each of them logs it
//! (drover `server ejected`, HAProxy `Server backend/b1 is DOWN`, nginx `upstream server
//! temporarily disabled`); the bench timestamps each line as it appears. Readmission is what
//! clients see: the first answer from the restarted b1. The slowest request around the kill is
//! shown too, since a retry that hides a failure still costs the client time.
//!
//! The servers come from `load_compare/lab.rs` (same configurations, keep-alive and logging rules
//! as the throughput comparison, plus the health settings below): every one listens on 127.0.0.1,
//! the proxy and the backends are pinned to the proxies' CPU and the clients to the load
//! generator's, and each is stopped when its guard drops or, through `setpriv --pdeathsig`, when
//! this process dies without unwinding. So every server is started from the main thread: the
//! parent-death signal follows the thread that started a process, not the process.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[path = "load_compare/lab.rs"]
mod lab;

use lab::{drover_binary, free_ports, whoami_binary, Health, Lab, Result, Server, Tools, Variant, LOOPBACK};

/// Concurrent clients, each with one keep-alive connection at a time.
const CLIENTS: usize = 8;
/// A request with no complete response after this long counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the proxy's log is read while the script runs.
const LOG_POLL: Duration = Duration::from_millis(10);
/// The backends' names, as whoami reports them in `x-whoami-name`; the first is the one killed.
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
/// The window after the kill in which the slowest request is looked for.
const KILL_WINDOW: Duration = Duration::from_secs(1);
/// Worker processes or threads, the same for every proxy.
const WORKERS: u32 = 1;

/// drover: passive health with short times, retries at their defaults.
const DROVER: Variant = Variant {
    name: "drover",
    routes: "[http.services.backend.loadBalancer.passiveHealthCheck]\n\
             baseEjectionTime = \"1s\"\nmaxEjectionTime = \"2s\"\nslowStart = \"1s\"\n",
    static_config: "",
};
/// HAProxy: passive observation of live traffic plus the active checks it requires.
const HAPROXY: Health = Health {
    server: " check observe layer7 error-limit 3 on-error mark-down inter 1s fall 3 rise 1",
    block: "option redispatch\nretries 2\nretry-on conn-failure empty-response response-timeout",
};
/// nginx OSS: passive only (it has no active checks).
const NGINX: Health = Health {
    server: " max_fails=3 fail_timeout=1s",
    block: "proxy_next_upstream error timeout http_502 http_503 http_504;\nproxy_next_upstream_tries 3;",
};

fn main() {
    let code = match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(Exit::Failed(msg)) => {
            eprintln!("failover: {msg}");
            1
        }
        Err(Exit::MissingTools(msg)) => {
            eprintln!("failover: {msg}");
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

/// Runs the script behind every proxy and prints the table; false if a proxy could not be measured.
fn run() -> Result<bool, Exit> {
    let script = Script::from_args()?;
    let tools = Tools::find(false).map_err(Exit::MissingTools)?;
    let binaries = Binaries {
        drover: drover_binary()?,
        whoami: whoami_binary()?,
    };
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let lab = Lab::new(tools, tmp.path(), WORKERS);
    // After the builds (which want every CPU), before the runtime's threads exist.
    lab.pin_to_loadgen_cpus(std::process::id())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the clients' runtime: {e}"))?;

    println!(
        "\nfailover: {CLIENTS} clients (keep-alive GET /, closed loop) for {} per proxy; SIGKILL b1 at {}, \
         restart it at {}; proxy ({WORKERS} worker) and backends b1..b3 on CPU {}, clients on CPU {}",
        secs(script.duration),
        secs(script.kill_at),
        secs(script.restart_at),
        lab.server_cpus.as_deref().unwrap_or("any (not pinned)"),
        lab.loadgen_cpus,
    );
    let mut rows = vec![];
    for proxy in Proxy::ALL {
        let row = match run_script(&lab, &runtime, &binaries, proxy, &script) {
            Ok(report) => {
                println!("{}: done, {} requests", proxy.name(), report.requests);
                Ok(report)
            }
            Err(reason) => {
                println!("{}: not measured: {reason}", proxy.name());
                Err(reason)
            }
        };
        rows.push((proxy, row));
    }
    print_table(&rows, &script);
    Ok(rows.iter().all(|(_, row)| row.is_ok()))
}

/// When things happen in one run, from the moment the clients start.
struct Script {
    duration: Duration,
    kill_at: Duration,
    restart_at: Duration,
}

impl Script {
    fn from_args() -> Result<Self> {
        let mut quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?} (known: --quick)")),
            }
        }
        if quick {
            return Ok(Script {
                duration: Duration::from_secs(6),
                kill_at: Duration::from_secs(2),
                restart_at: Duration::from_secs(4),
            });
        }
        let duration = match std::env::var("DURATION") {
            Err(_) => 12,
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(n) if n >= 6 => n,
                _ => return Err(format!("DURATION={v:?} is not a whole number of seconds, 6 or more")),
            },
        };
        let duration = Duration::from_secs(duration);
        Ok(Script {
            duration,
            kill_at: duration / 4,
            restart_at: duration * 7 / 12,
        })
    }
}

/// The release binaries the script runs.
struct Binaries {
    drover: PathBuf,
    whoami: PathBuf,
}

#[derive(Clone, Copy)]
enum Proxy {
    Drover,
    Haproxy,
    Nginx,
}

impl Proxy {
    const ALL: [Proxy; 3] = [Proxy::Drover, Proxy::Haproxy, Proxy::Nginx];

    fn name(self) -> &'static str {
        match self {
            Proxy::Drover => "drover",
            Proxy::Haproxy => "haproxy",
            Proxy::Nginx => "nginx",
        }
    }

    fn start(self, lab: &Lab, binaries: &Binaries, port: u16, backends: &[u16]) -> Result<Server> {
        match self {
            Proxy::Drover => {
                let [admin] = free_ports()?;
                lab.start_drover(&binaries.drover, port, admin, backends, &DROVER)
            }
            Proxy::Haproxy => lab.start_haproxy("haproxy", port, backends, &HAPROXY, true),
            Proxy::Nginx => lab.start_nginx_proxy("nginx", port, backends, &NGINX, true),
        }
    }

    /// Whether a line of the proxy's log says that b1, listening on `port`, left the rotation.
    fn logs_ejection(self, line: &str, port: u16) -> bool {
        match self {
            Proxy::Drover => line.contains("server ejected") && mentions_port(line, port),
            Proxy::Haproxy => line.contains("Server backend/b1 is DOWN"),
            Proxy::Nginx => line.contains("upstream server temporarily disabled") && mentions_port(line, port),
        }
    }

    /// The exact settings, as written into the proxy's configuration.
    fn settings(self) -> String {
        let joined = |text: &str, separator| text.lines().map(str::trim).collect::<Vec<_>>().join(separator);
        match self {
            Proxy::Drover => format!("routes file: {}", joined(DROVER.routes, " ")),
            Proxy::Haproxy => format!("backend: {}; every server:{}", joined(HAPROXY.block, "; "), HAPROXY.server),
            Proxy::Nginx => format!("every upstream server:{}; location: {}", NGINX.server, joined(NGINX.block, " ")),
        }
    }

    /// What those settings do, in the proxy's own terms.
    fn semantics(self) -> &'static str {
        match self {
            Proxy::Drover => {
                "retries at their defaults (attempts 2, budget 20% + 3/s), other keys too (maxFailedAttempts 3, \
                 consecutive5xx 5, maxEjectionPercent 50). 3 consecutive connection failures eject a server for \
                 1 s × the ejections in a row (at most 2 s, +≤10% jitter); then one live probation request is let \
                 through, and its success readmits the server with a 1 s slow start. A refused connection is retried \
                 at once on another server; a GET reset on a pooled connection is replayed within the budget."
            }
            Proxy::Haproxy => {
                "observe layer7 counts failed connections and bad or missing responses of live traffic; 3 in a row \
                 (error-limit) mark the server DOWN at once (on-error mark-down). `check` adds the active checks \
                 observe requires: a TCP connect every 1 s, 3 failures mark DOWN, 1 success marks UP again (the only \
                 way back). A failed connection is retried up to 2 times; with round robin and no persistence \
                 HAProxy 2.6 moves every retry to another server without its 1 s turn-around delay."
            }
            Proxy::Nginx => {
                "3 failed attempts within 1 s (fail_timeout) take a server out for 1 s; then live requests try it \
                 again (nginx compares whole seconds, `now - checked <= fail_timeout`, so out means 1–2 s). A failed attempt (error, timeout, 502/503/504) is passed to the next server, 3 tries in all. \
                 nginx OSS has no active checks; counters are per worker (1 worker here)."
            }
        }
    }
}

/// `127.0.0.1:<port>` appears in `line`, not followed by another digit.
fn mentions_port(line: &str, port: u16) -> bool {
    let needle = format!("{LOOPBACK}:{port}");
    line.match_indices(&needle)
        .any(|(at, _)| !line[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Starts the backends and the proxy, runs the script, and measures what happened.
fn run_script(lab: &Lab, runtime: &tokio::runtime::Runtime, binaries: &Binaries, proxy: Proxy, script: &Script) -> Result<Report> {
    let [b1_port, b2_port, b3_port, port] = free_ports()?;
    let ports = [b1_port, b2_port, b3_port];
    let mut backends = BACKENDS
        .iter()
        .zip(ports)
        .map(|(name, port)| lab.start_whoami(&binaries.whoami, name, port))
        .collect::<Result<Vec<_>>>()?;
    // Declared after the backends, so dropped (stopped) before them.
    let mut server = proxy.start(lab, binaries, port, &ports)?;
    let log = LogWatch::start(server.log_path());

    let t0 = Instant::now();
    let end = t0 + script.duration;
    let clients: Vec<_> = (0..CLIENTS).map(|_| runtime.spawn(client(port, t0, end))).collect();

    sleep_until(t0 + script.kill_at);
    let killed_at = Instant::now();
    backends[0].kill()?;
    sleep_until(t0 + script.restart_at);
    let restarted_at = Instant::now();
    let restart = lab.start_whoami(&binaries.whoami, BACKENDS[0], b1_port);
    let b1_ready_after = restarted_at.elapsed();
    let restart_error = match restart {
        Ok(b1) => {
            backends[0] = b1;
            None
        }
        Err(e) => Some(e),
    };

    let samples: Vec<Sample> = runtime.block_on(async {
        let mut all = vec![];
        for client in clients {
            all.extend(client.await.map_err(|e| format!("a client task failed: {e}"))?);
        }
        Ok::<_, String>(all)
    })?;
    let lines = log.stop();
    if let Some(status) = server.exited() {
        return Err(format!("{} exited during the run ({status}){}", proxy.name(), server.log_tail()));
    }
    let at = |instant: Instant| instant.duration_since(t0);
    let ejection = lines
        .iter()
        .find(|(seen, line)| *seen >= killed_at && proxy.logs_ejection(line, b1_port))
        .map(|(seen, line)| (seen.duration_since(killed_at), strip_ansi(line)));
    Ok(Report::new(
        &samples,
        Events {
            killed: at(killed_at),
            restarted: at(restarted_at),
            b1_ready_after,
            restart_error,
            ejection,
        },
    ))
}

fn sleep_until(deadline: Instant) {
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

/// One request as a client saw it; times from the start of the run.
struct Sample {
    start: Duration,
    end: Duration,
    answer: Answer,
}

enum Answer {
    /// A complete response; `backend` indexes [`BACKENDS`] (None: no or an unknown name).
    Response {
        status: u16,
        backend: Option<usize>,
    },
    Failed(Failure),
}

/// Why a request got no complete response.
#[derive(Clone, Copy)]
enum Failure {
    /// The TCP connection or the HTTP/1 handshake to the proxy failed.
    Connect,
    /// The connection broke before a response head arrived.
    NoResponse,
    /// The connection broke in the middle of the body.
    Body,
    /// Nothing complete within [`REQUEST_TIMEOUT`].
    Timeout,
}

impl Failure {
    fn describe(self) -> &'static str {
        match self {
            Failure::Connect => "connect failed",
            Failure::NoResponse => "closed before a response",
            Failure::Body => "body cut",
            Failure::Timeout => "timed out",
        }
    }
}

impl Sample {
    fn failed(&self) -> bool {
        match self.answer {
            Answer::Response { status, .. } => !(200..300).contains(&status),
            Answer::Failed(_) => true,
        }
    }

    fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    fn answered_by_b1(&self) -> bool {
        matches!(self.answer, Answer::Response { backend: Some(0), .. })
    }

    fn describe_failure(&self) -> Option<String> {
        match self.answer {
            Answer::Response { status, .. } if !(200..300).contains(&status) => Some(status.to_string()),
            Answer::Response { .. } => None,
            Answer::Failed(failure) => Some(failure.describe().to_string()),
        }
    }
}

/// One client: requests back to back until `end`, over one keep-alive connection at a time.
async fn client(port: u16, t0: Instant, end: Instant) -> Vec<Sample> {
    let host = HeaderValue::from_str(&format!("{LOOPBACK}:{port}")).expect("an address is a valid Host value");
    let mut connection = None;
    let mut samples = vec![];
    loop {
        let start = Instant::now();
        if start >= end {
            return samples;
        }
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, request(&mut connection, port, &host)).await {
            Ok(answer) => answer,
            Err(_) => {
                connection = None;
                Answer::Failed(Failure::Timeout)
            }
        };
        samples.push(Sample {
            start: start - t0,
            end: t0.elapsed(),
            answer,
        });
    }
}

/// `GET /` on the open connection, or on a new one if there is none or it was closed.
async fn request(connection: &mut Option<SendRequest<Empty<Bytes>>>, port: u16, host: &HeaderValue) -> Answer {
    let sender = match connection {
        Some(sender) if !sender.is_closed() => sender,
        _ => match connect(port).await {
            Ok(sender) => connection.insert(sender),
            Err(failure) => return Answer::Failed(failure),
        },
    };
    if sender.ready().await.is_err() {
        *connection = None;
        return Answer::Failed(Failure::NoResponse);
    }
    let mut request = Request::new(Empty::new());
    request.headers_mut().insert(HOST, host.clone());
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(_) => {
            *connection = None;
            return Answer::Failed(Failure::NoResponse);
        }
    };
    let status = response.status().as_u16();
    let backend = response
        .headers()
        .get("x-whoami-name")
        .and_then(|name| BACKENDS.iter().position(|b| b.as_bytes() == name.as_bytes()));
    match response.into_body().collect().await {
        Ok(_) => Answer::Response { status, backend },
        Err(_) => {
            *connection = None;
            Answer::Failed(Failure::Body)
        }
    }
}

async fn connect(port: u16) -> Result<SendRequest<Empty<Bytes>>, Failure> {
    let stream = TcpStream::connect((LOOPBACK, port)).await.map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| Failure::Connect)?;
    tokio::spawn(async move {
        // Ends when the proxy closes the connection or the sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A thread that reads a growing log file and timestamps each complete line as it appears.
struct LogWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Instant, String)>>,
}

impl LogWatch {
    fn start(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let path = path.to_path_buf();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut lines = vec![];
            let mut pending = Vec::new();
            let mut offset = 0;
            loop {
                let stopping = flag.load(Ordering::Acquire);
                if let Ok(mut file) = fs::File::open(&path) {
                    if file.seek(SeekFrom::Start(offset)).is_ok() {
                        let before = pending.len();
                        let _ = file.read_to_end(&mut pending);
                        offset += (pending.len() - before) as u64;
                    }
                }
                let now = Instant::now();
                while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=newline).collect();
                    lines.push((now, String::from_utf8_lossy(&line).trim_end().to_string()));
                }
                if stopping {
                    return lines;
                }
                std::thread::sleep(LOG_POLL);
            }
        });
        LogWatch { stop, thread }
    }

    /// Stops reading and returns every line seen, with when it was seen.
    fn stop(self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// drover's log may be coloured.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @–~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What the script did, besides the requests.
struct Events {
    killed: Duration,
    restarted: Duration,
    /// How long the restarted b1 took to answer a direct request.
    b1_ready_after: Duration,
    restart_error: Option<String>,
    /// Time from the kill to the proxy's ejection log line, and the line.
    ejection: Option<(Duration, String)>,
}

/// The measures of one run.
struct Report {
    requests: usize,
    failures: BTreeMap<String, usize>,
    /// End of the last failed request, from the kill (negative: before it).
    last_failure: Option<f64>,
    /// From the restart to the end of the first request answered by the new b1.
    readmit: Option<Duration>,
    /// Requests answered by b1 after the kill and before the restart: must be none.
    b1_while_dead: usize,
    /// Requests answered by b1, and in all, from its readmission to the end.
    b1_share_after: (usize, usize),
    /// The longest request in flight during [`KILL_WINDOW`] after the kill.
    slowest_at_kill: Duration,
    /// The longest request of the run, for scale: the machine is shared.
    slowest: Duration,
    events: Events,
}

impl Report {
    fn new(samples: &[Sample], events: Events) -> Self {
        let mut failures = BTreeMap::new();
        for failure in samples.iter().filter_map(Sample::describe_failure) {
            *failures.entry(failure).or_insert(0) += 1;
        }
        let last_failure = samples
            .iter()
            .filter(|s| s.failed())
            .map(|s| s.end.as_secs_f64() - events.killed.as_secs_f64())
            .max_by(f64::total_cmp);
        let after_kill = |s: &&Sample| s.start >= events.killed;
        let b1_while_dead = samples
            .iter()
            .filter(after_kill)
            .filter(|s| s.end < events.restarted && s.answered_by_b1())
            .count();
        let first_b1 = samples
            .iter()
            .filter(after_kill)
            .filter(|s| s.end >= events.restarted && s.answered_by_b1())
            .map(|s| s.end)
            .min();
        let readmit = first_b1.map(|end| end - events.restarted);
        let b1_share_after = match first_b1 {
            Some(first) => {
                let after: Vec<_> = samples.iter().filter(|s| s.start >= first).collect();
                (after.iter().filter(|s| s.answered_by_b1()).count(), after.len())
            }
            None => (0, 0),
        };
        Report {
            requests: samples.len(),
            failures,
            last_failure,
            readmit,
            b1_while_dead,
            b1_share_after,
            slowest_at_kill: samples
                .iter()
                .filter(|s| s.end >= events.killed && s.start <= events.killed + KILL_WINDOW)
                .map(Sample::latency)
                .max()
                .unwrap_or_default(),
            slowest: samples.iter().map(Sample::latency).max().unwrap_or_default(),
            events,
        }
    }

    fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

fn print_table(rows: &[(Proxy, Result<Report>)], script: &Script) {
    println!(
        "\n{:<8} {:>9} {:>7} {:>14} {:>16} {:>16}",
        "proxy", "requests", "failed", "time to eject", "time to readmit", "slowest at kill"
    );
    for (proxy, row) in rows {
        let Ok(r) = row else {
            println!("{:<8} not measured", proxy.name());
            continue;
        };
        println!(
            "{:<8} {:>9} {:>7} {:>14} {:>16} {:>16}",
            proxy.name(),
            r.requests,
            r.failed(),
            r.events.ejection.as_ref().map_or("not logged".to_string(), |(d, _)| secs(*d)),
            r.readmit.map_or("never".to_string(), secs),
            millis(r.slowest_at_kill),
        );
    }
    println!();
    for (proxy, row) in rows {
        match row {
            Ok(r) => print_details(*proxy, r),
            Err(reason) => println!("{}: not measured: {reason}", proxy.name()),
        }
    }
    println!(
        "\nfailed: responses other than 2xx, and requests with no complete response (refused or broken \
         connection, {} timeout), over the whole run of {}.\n\
         time to eject: from the SIGKILL of b1 to the moment the proxy logged taking it out of rotation \
         (drover `server ejected`, HAProxy `Server backend/b1 is DOWN`, nginx's first `upstream server \
         temporarily disabled` after the kill); the log is read every {} ms. Clients cannot see this moment \
         when retries hide the failed attempts.\n\
         time to readmit: from the restart of b1 (its process started) to the end of the first request b1 \
         answered.\n\
         slowest at kill: the longest request in flight at any time in the {} after the kill (a retry that \
         hides a failure still costs time); compare it with the slowest of the whole run, below each proxy.\n\
         Single runs on a shared, busy machine: treat the numbers as rough.\n\nsettings:",
        secs(REQUEST_TIMEOUT),
        secs(script.duration),
        LOG_POLL.as_millis(),
        secs(KILL_WINDOW),
    );
    for proxy in Proxy::ALL {
        println!("  {}: {}\n    {}", proxy.name(), proxy.settings(), proxy.semantics());
    }
}

fn print_details(proxy: Proxy, r: &Report) {
    let name = proxy.name();
    let failures = if r.failures.is_empty() {
        "none failed".to_string()
    } else {
        let kinds: Vec<_> = r.failures.iter().map(|(kind, n)| format!("{n} × {kind}")).collect();
        let last = r
            .last_failure
            .map_or(String::new(), |t| format!(", the last one ended {t:+.3} s from the kill"));
        format!("failed: {}{last}", kinds.join(", "))
    };
    println!("{name}: {failures}");
    match &r.events.ejection {
        Some((_, line)) => println!("  ejection logged: {}", shorten(line, 200)),
        None => println!("  no ejection logged after the kill"),
    }
    match &r.events.restart_error {
        Some(e) => println!("  b1 did not restart: {e}"),
        None => println!(
            "  b1 answered directly {} ms after its restart",
            r.events.b1_ready_after.as_millis()
        ),
    }
    println!("  slowest request of the whole run: {}", millis(r.slowest));
    let (b1, all) = r.b1_share_after;
    if all > 0 {
        println!(
            "  from its readmission to the end b1 answered {b1} of {all} requests ({:.0}%; an even share is {:.0}%)",
            100.0 * b1 as f64 / all as f64,
            100.0 / BACKENDS.len() as f64
        );
    }
    if r.b1_while_dead > 0 {
        println!(
            "  WARNING: {} requests were answered by b1 while it was dead: the script is broken",
            r.b1_while_dead
        );
    }
}

fn shorten(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
