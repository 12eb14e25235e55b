//! A burst larger than the backend takes (issue #25, item 2): `CLIENTS` (5,000) clients each
//! open a connection, then all send one GET at once, through drover, nginx and HAProxy in turn,
//! to a backend that accepts at most `BACKEND_CONNECTIONS` (4,096) connections at a time. Printed:
//! how many got a 200, another status, or no answer at all, and what the backend saw.
//!
//! ```text
//! cargo bench --bench burst                # each hold, each target, once
//! ROUNDS=3 HOLDS=0,100 cargo bench --bench burst
//! ```
//!
//! Environment: `CLIENTS` (5000), `BACKEND_CONNECTIONS` (4096), `HOLDS` (`0,100`: how long the
//! backend holds each answer, in ms; 0 is the issue's setting, 100 makes the burst really
//! overlap at the backend), `ROUNDS` (1), `DROVER_BIN=/path`. Needs nginx and HAProxy
//! (`apt-get install -y nginx-light haproxy`) and util-linux's `taskset` and `setpriv`.
//!
//! The backend is this process's own (a thread, pinned with the clients to CPU 0): it counts the
//! connections it holds open and closes at once any it accepts beyond its limit, as nginx does
//! when it is out of `worker_connections`, so a proxy that opens more connections than that gets
//! them closed unanswered. The proxies run one worker each on CPU 1, as configured out of the
//! box but for nginx's `worker_connections`, raised so that nginx itself can hold the clients:
//!
//! * `drover`: the defaults (`maxConnsPerHost = 1024`, a queue of 10,000 waiting up to 30 s);
//! * `drover-nolimit`: `maxConnsPerHost = 0`, drover without the limit (as before it had one);
//! * `nginx`: upstream keep-alive 64, no `max_conns` (nginx has no queue outside nginx Plus);
//! * `haproxy`: no `maxconn` on the server; `haproxy-maxconn`: `maxconn 1024` on it (HAProxy
//!   then queues the rest in the backend, its `timeout queue` defaulting to `timeout connect`).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

#[path = "load_compare/lab.rs"]
mod lab;

use lab::{Health, Lab, Result, Tools, Variant, LOOPBACK};

const TARGETS: [&str; 5] = ["drover", "drover-nolimit", "nginx", "haproxy", "haproxy-maxconn"];

/// How long a client waits for its answer (drover's queue waits up to 30 s by default).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    if let Err(e) = run() {
        eprintln!("burst: {e}");
        std::process::exit(1);
    }
}

/// What the clients of one burst got, and what the backend saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Answers by status code.
    statuses: BTreeMap<u16, usize>,
    /// No answer, by what happened instead.
    errors: BTreeMap<&'static str, usize>,
    /// The most connections the backend held open at once.
    backend_peak: usize,
    /// Connections the backend closed unanswered, being at its limit.
    backend_refused: usize,
    /// From the moment the GETs went out to the last answer.
    elapsed: Duration,
}

impl Outcome {
    fn ok(&self) -> usize {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    fn others(&self) -> String {
        let statuses = self.statuses.iter().filter(|(s, _)| **s != 200).map(|(s, n)| format!("{n}×{s}"));
        let errors = self.errors.iter().map(|(e, n)| format!("{n}×{e}"));
        let all: Vec<String> = statuses.chain(errors).collect();
        if all.is_empty() {
            "none".into()
        } else {
            all.join(", ")
        }
    }
}

fn run() -> Result<()> {
    let clients = lab::env_count("CLIENTS", 5000)? as usize;
    let backend_limit = lab::env_count("BACKEND_CONNECTIONS", 4096)? as usize;
    let rounds = lab::env_count("ROUNDS", 1)? as usize;
    let holds = holds()?;
    let nofile = raise_nofile()?;
    println!("descriptors: {nofile} (RLIMIT_NOFILE raised to its hard limit; the proxies inherit it)");
    let needed = clients + backend_limit + 64;
    if (nofile as usize) < needed {
        return Err(format!(
            "{clients} clients and a backend of {backend_limit} connections need ~{needed} descriptors in this process; the hard limit is {nofile} (raise it: ulimit -Hn, LimitNOFILE)"
        ));
    }
    let drover = lab::drover_binary()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut lab = Lab::new(Tools::find(false)?, dir.path(), 1);
    // nginx holds every client and, without a limit, as many upstream connections.
    lab.nginx_connections = u32::try_from(2 * clients + 256).unwrap_or(u32::MAX);
    lab.pin_to_loadgen_cpus(std::process::id())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let mut table: Vec<(u64, &str, Outcome)> = Vec::new();
    for &hold in &holds {
        println!("\nbackend holds each answer {hold} ms, accepts at most {backend_limit} connections; {clients} clients");
        for round in 1..=rounds {
            for i in lab::round_order(TARGETS.len(), round) {
                let target = TARGETS[i];
                let outcome = runtime.block_on(once(&lab, &drover, target, clients, backend_limit, hold))?;
                println!(
                    "round {round} {target:>15}: {:>5} × 200, others: {}; backend peak {} connections, {} closed unanswered; {:.2} s",
                    outcome.ok(),
                    outcome.others(),
                    outcome.backend_peak,
                    outcome.backend_refused,
                    outcome.elapsed.as_secs_f64()
                );
                table.push((hold, target, outcome));
            }
        }
    }

    println!("\n{clients} clients, one GET each at once; backend accepting ≤ {backend_limit} connections; one proxy worker on CPU 1; {rounds} round(s)");
    println!(
        "{:>8} | {:>15} | {:>6} | {:>28} | {:>12} | {:>14} | {:>7}",
        "hold", "target", "200", "other answers / no answer", "backend peak", "closed by it", "seconds"
    );
    for (hold, target, o) in &table {
        println!(
            "{:>5} ms | {target:>15} | {:>6} | {:>28} | {:>12} | {:>14} | {:>7.2}",
            hold,
            o.ok(),
            o.others(),
            o.backend_peak,
            o.backend_refused,
            o.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// `HOLDS`: the backend's hold times to run, in ms.
fn holds() -> Result<Vec<u64>> {
    let text = std::env::var("HOLDS").unwrap_or_else(|_| "0,100".into());
    text.split(',')
        .map(|h| {
            h.trim()
                .parse::<u64>()
                .map_err(|_| format!("HOLDS={text:?}: {h:?} is not a whole number of ms"))
        })
        .collect()
}

/// Raises this process's descriptor limit to its hard limit; returns it.
fn raise_nofile() -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if set != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(limit.rlim_cur)
}

/// One burst through `target` to a fresh backend.
async fn once(lab: &Lab, drover: &std::path::Path, target: &str, clients: usize, backend_limit: usize, hold: u64) -> Result<Outcome> {
    let backend = Backend::start(backend_limit, Duration::from_millis(hold)).await?;
    let [port, admin] = lab::free_ports::<2>()?;
    let b = [backend.addr.port()];
    // Starting a server blocks (it polls for readiness): nothing else runs on this runtime
    // meanwhile, and the backend has its own thread.
    let proxy = match target {
        "drover" | "drover-nolimit" => {
            let variant = Variant {
                name: if target == "drover" { "drover" } else { "drover-nolimit" },
                routes: "",
                static_config: if target == "drover" {
                    ""
                } else {
                    "[serversTransport]\nmaxConnsPerHost = 0\n"
                },
            };
            lab.start_drover(drover, port, admin, &b, &variant)?
        }
        "nginx" => lab.start_nginx_proxy("nginx", port, &b, &Health::default(), true)?,
        "haproxy" => lab.start_haproxy("haproxy", port, &b, &Health::default(), true)?,
        "haproxy-maxconn" => {
            let health = Health {
                server: " maxconn 1024",
                block: "",
            };
            lab.start_haproxy("haproxy-maxconn", port, &b, &health, true)?
        }
        other => return Err(format!("unknown target {other}")),
    };
    // The readiness check went through to the backend: count from here.
    backend.reset();
    let mut outcome = burst(SocketAddr::from((LOOPBACK, port)), clients).await?;
    outcome.backend_peak = backend.peak.load(Ordering::SeqCst);
    outcome.backend_refused = backend.refused.load(Ordering::SeqCst);
    drop(proxy);
    Ok(outcome)
}

/// `CLIENTS` connections to `addr`, then one GET on each at once; counts the answers.
async fn burst(addr: SocketAddr, clients: usize) -> Result<Outcome> {
    let (go, ready) = watch::channel(false);
    let connected = Arc::new(AtomicUsize::new(0));
    // Connects a few hundred at a time, so the proxies' listen backlogs never overflow.
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (mut ready, connected, connecting) = (ready.clone(), connected.clone(), connecting.clone());
        tasks.spawn(async move {
            let stream = {
                let _permit = connecting.acquire().await;
                TcpStream::connect(addr).await
            };
            connected.fetch_add(1, Ordering::SeqCst);
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(_) => return Err("connect failed"),
            };
            let _ = ready.wait_for(|go| *go).await;
            match tokio::time::timeout(ANSWER_TIMEOUT, exchange(&mut stream)).await {
                Ok(answer) => answer,
                Err(_) => Err("no answer within 60 s"),
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::SeqCst) < clients {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {clients} clients connected within 60 s",
                connected.load(Ordering::SeqCst)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the proxies take the last connections off their backlogs before the GETs go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    go.send_replace(true);
    let mut outcome = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| e.to_string())? {
            Ok(status) => *outcome.statuses.entry(status).or_default() += 1,
            Err(what) => *outcome.errors.entry(what).or_default() += 1,
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Sends one GET on `stream` and reads the answer's head and body; the status, or what went wrong.
async fn exchange(stream: &mut TcpStream) -> std::result::Result<u16, &'static str> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: burst.bench\r\n\r\n")
        .await
        .map_err(|_| "send failed")?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("closed unanswered"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err("reset unanswered"),
            Err(_) => return Err("read failed"),
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "bad head")?;
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err("body cut"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(status)
}

/// The backend: HTTP/1.1 keep-alive, `200` with a 1-byte body after `hold`; holds at most
/// `limit` connections open and closes any further one as soon as it is accepted.
struct Backend {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    async fn start(limit: usize, hold: Duration) -> Result<Self> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
        socket.set_reuse_address(true).map_err(|e| e.to_string())?;
        socket
            .bind(&SocketAddr::from((LOOPBACK, 0)).into())
            .map_err(|e| format!("backend bind: {e}"))?;
        // As deep as the kernel allows (somaxconn), as nginx's would be asked for.
        socket.listen(4096).map_err(|e| format!("backend listen: {e}"))?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let std_listener: std::net::TcpListener = socket.into();
        let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
        let (open, peak, refused) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn({
            let (open, peak, refused) = (open.clone(), peak.clone(), refused.clone());
            move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                let serving = runtime.spawn(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        if open.load(Ordering::SeqCst) >= limit {
                            refused.fetch_add(1, Ordering::SeqCst);
                            drop(stream);
                            continue;
                        }
                        peak.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        let open = open.clone();
                        tokio::spawn(async move {
                            serve(stream, hold).await;
                            open.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                });
                // Runs until told to stop; dropping the runtime closes every connection.
                runtime.block_on(async {
                    let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
                });
                serving.abort();
            }
        });
        Ok(Self {
            addr,
            open,
            peak,
            refused,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Counts anew from the connections open now.
    fn reset(&self) {
        self.peak.store(self.open.load(Ordering::SeqCst), Ordering::SeqCst);
        self.refused.store(0, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers requests on `stream` (GETs without bodies) until the peer closes it.
async fn serve(mut stream: TcpStream, hold: Duration) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Type: text/plain\r\n\r\n1")
                .await
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
