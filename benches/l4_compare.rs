//! L4 side by side (issue #22): bytes relayed by drover's TCP routers (with splice(2), and with
//! a buffered copy), by HAProxy `mode tcp` (with and without `option splice-request` and `splice-response`), and with no
//! proxy at all, in one run, in interleaved rounds, medians printed.
//!
//! ```text
//! cargo bench --bench l4_compare                 # 3 rounds
//! cargo bench --bench l4_compare -- --quick      # 1 round, smaller transfers
//! ```
//!
//! Environment: `ROUNDS` (3), `BULK_MIB` (1024: bytes per bulk transfer), `EXCHANGE_SECS` (3),
//! `QUICK=1`, `DROVER_BIN=/path`. Needs `apt-get install -y haproxy` (and util-linux's
//! `taskset`). Every listener is on 127.0.0.1.
//!
//! What is measured, for each target:
//! * `bulk ×1`, `bulk ×16`: a server sends `BULK_MIB` MiB in all (split over 1 or 16
//!   connections) through the target to a client that reads and drops it: GiB/s over the wall
//!   time, and the proxy's CPU seconds (user, kernel) per GiB from `/proc`. User-space CPU per
//!   GiB is the figure that tells whether bytes went through user space.
//! * `exchanges`: 16 client threads each repeat connect, send 100 B, read the 100 B echo,
//!   close: exchanges per second.
//! * `pgbench -S`: a PostgreSQL started for the bench (Debian's `postgresql`; as the `postgres`
//!   user when run as root), scale 10, read-only transactions from 16 clients over 2 threads for
//!   `PG_SECS` (5) seconds through the target: transactions per second. Skipped, with a message,
//!   when PostgreSQL is not installed or `PGBENCH=0`.
//!
//! The proxies run one worker (drover `--workers 1`, HAProxy `nbthread 1`) pinned to CPU 1; the
//! bench's clients and servers are pinned to CPU 0. "direct" is the client and the server with
//! no proxy between them (the ceiling).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "load_compare/lab.rs"]
mod lab;

use lab::{CpuTime, Result};

const TARGETS: [&str; 5] = ["direct", "drover-splice", "drover-copy", "haproxy", "haproxy-splice"];

fn main() {
    if let Err(e) = run() {
        eprintln!("l4_compare: {e}");
        std::process::exit(1);
    }
}

/// A target's figures in one round.
#[derive(Clone, Copy, Default)]
struct Figures {
    bulk1_gibps: f64,
    bulk1_user: f64,
    bulk1_sys: f64,
    bulk16_gibps: f64,
    bulk16_user: f64,
    bulk16_sys: f64,
    exchanges: f64,
    pgbench_tps: f64,
}

fn run() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("QUICK").is_some_and(|v| v == "1");
    let rounds = if quick { 1 } else { lab::env_count("ROUNDS", 3)? as usize };
    let bulk_mib = u64::from(lab::env_count("BULK_MIB", if quick { 256 } else { 1024 })?);
    let exchange_secs = u64::from(lab::env_count("EXCHANGE_SECS", if quick { 2 } else { 3 })?);
    let haproxy = lab::find_on_path("haproxy").ok_or("haproxy is missing; install with: apt-get install -y haproxy")?;
    let taskset = lab::find_on_path("taskset").ok_or("taskset is missing; install with: apt-get install -y util-linux")?;
    let drover = lab::drover_binary()?;
    pin_self(&taskset)?;

    let sink = Sink::start(bulk_mib)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pg_secs = lab::env_count("PG_SECS", if quick { 2 } else { 5 })?;
    let postgres = match std::env::var("PGBENCH").as_deref() {
        Ok("0") => None,
        _ => match Postgres::start() {
            Ok(pg) => Some(pg),
            Err(e) => {
                println!("pgbench: skipped: {e}");
                None
            }
        },
    };
    let pg_addr = postgres.as_ref().map(|p| p.addr);
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); TARGETS.len()];
    for round in 1..=rounds {
        for i in lab::round_order(TARGETS.len(), round) {
            let target = TARGETS[i];
            let proxy = start(target, &drover, &haproxy, &taskset, dir.path(), &sink, pg_addr)?;
            let addr = proxy.as_ref().map_or(sink.addr, |p| p.addr);
            let pid = proxy.as_ref().map(|p| p.child.id());
            let mut f = Figures::default();
            (f.bulk1_gibps, f.bulk1_user, f.bulk1_sys) = bulk(addr, &sink, 1, bulk_mib, pid)?;
            (f.bulk16_gibps, f.bulk16_user, f.bulk16_sys) = bulk(addr, &sink, 16, bulk_mib, pid)?;
            let echo = proxy.as_ref().map_or(sink.echo, |p| p.echo);
            f.exchanges = exchanges(echo, Duration::from_secs(exchange_secs))?;
            if let Some(pg) = &postgres {
                let port = proxy.as_ref().map_or(pg.addr, |p| p.pg).port();
                f.pgbench_tps = pg.bench(port, pg_secs)?;
            }
            println!(
                "round {round} {target:>15}: bulk×1 {:.2} GiB/s, bulk×16 {:.2} GiB/s, {:.0} exchanges/s, pgbench -S {:.0} tps",
                f.bulk1_gibps, f.bulk16_gibps, f.exchanges, f.pgbench_tps
            );
            results[i].push(f);
            drop(proxy);
        }
    }
    let med = |i: usize, get: fn(&Figures) -> f64| median(results[i].iter().map(get).collect());
    println!("\nmedians of {rounds} interleaved round(s); bulk = {bulk_mib} MiB per transfer; one proxy worker on CPU 1");
    println!(
        "{:>15} | {:>9} {:>11} {:>11} | {:>9} {:>11} {:>11} | {:>11} | {:>11}",
        "target", "bulk×1", "user s/GiB", "sys s/GiB", "bulk×16", "user s/GiB", "sys s/GiB", "exchanges/s", "pgbench tps"
    );
    for (i, target) in TARGETS.iter().enumerate() {
        println!(
            "{target:>15} | {:>6.2}GiB/s {:>11.3} {:>11.3} | {:>6.2}GiB/s {:>11.3} {:>11.3} | {:>11.0} | {:>11.0}",
            med(i, |f| f.bulk1_gibps),
            med(i, |f| f.bulk1_user),
            med(i, |f| f.bulk1_sys),
            med(i, |f| f.bulk16_gibps),
            med(i, |f| f.bulk16_user),
            med(i, |f| f.bulk16_sys),
            med(i, |f| f.exchanges),
            med(i, |f| f.pgbench_tps),
        );
    }
    let ratio = |a: usize, b: usize, get: fn(&Figures) -> f64| med(a, get) / med(b, get);
    println!("\nratios (medians):");
    for (name, get) in [
        ("bulk×1", (|f: &Figures| f.bulk1_gibps) as fn(&Figures) -> f64),
        ("bulk×16", |f: &Figures| f.bulk16_gibps),
        ("exchanges", |f: &Figures| f.exchanges),
        ("pgbench", |f: &Figures| f.pgbench_tps),
    ] {
        println!(
            "  {name:>9}: drover-splice/direct {:.2}, drover-splice/haproxy {:.2}, drover-splice/haproxy-splice {:.2}, drover-copy/haproxy {:.2}",
            ratio(1, 0, get),
            ratio(1, 3, get),
            ratio(1, 4, get),
            ratio(2, 3, get)
        );
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Pins this process (the clients and the sink) to CPU 0.
fn pin_self(taskset: &Path) -> Result<()> {
    let status = Command::new(taskset)
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| "taskset failed".to_string())
}

/// The server side: a bulk sender and an echo, on two ports.
struct Sink {
    /// Sends its share of bytes on each connection, then closes. The client says how many
    /// bytes it wants in its first 8 bytes.
    addr: SocketAddr,
    /// Echoes 100 bytes and closes.
    echo: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn start(_bulk_mib: u64) -> Result<Self> {
        let bulk = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let echo = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let this = Sink {
            addr: bulk.local_addr().map_err(|e| e.to_string())?,
            echo: echo.local_addr().map_err(|e| e.to_string())?,
            stop: Arc::new(AtomicBool::new(false)),
        };
        std::thread::spawn(move || {
            for stream in bulk.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut want = [0u8; 8];
                    if stream.read_exact(&mut want).is_err() {
                        return;
                    }
                    let mut left = u64::from_be_bytes(want);
                    let chunk = vec![0x5au8; 256 * 1024];
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        if stream.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                    let mut rest = [0u8; 16];
                    let _ = stream.read(&mut rest);
                });
            }
        });
        std::thread::spawn(move || {
            for stream in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 100];
                    if stream.read_exact(&mut buf).is_ok() {
                        let _ = stream.write_all(&buf);
                    }
                });
            }
        });
        Ok(this)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A running proxy: its client-facing address for bulk (and `echo` for exchanges).
struct Proxy {
    addr: SocketAddr,
    echo: SocketAddr,
    /// Towards PostgreSQL (unused when the bench has none).
    pg: SocketAddr,
    child: Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())
}

fn start(
    target: &str,
    drover: &Path,
    haproxy: &Path,
    taskset: &Path,
    dir: &Path,
    sink: &Sink,
    postgres: Option<SocketAddr>,
) -> Result<Option<Proxy>> {
    if target == "direct" {
        return Ok(None);
    }
    let (addr, echo, pg) = (free_port()?, free_port()?, free_port()?);
    // With no PostgreSQL the pg path leads to the echo server (never used).
    let pg_server = postgres.unwrap_or(sink.echo);
    let mut cmd = Command::new(taskset);
    cmd.args(["-c", "1"]);
    if target.starts_with("drover") {
        let routes = dir.join(format!("{target}-routes.toml"));
        let config = dir.join(format!("{target}.toml"));
        std::fs::write(
            &routes,
            format!(
                "[tcp.routers.bulk]\nrule = \"HostSNI(`*`)\"\nentryPoints = [\"bulk\"]\nservice = \"bulk\"\n[[tcp.services.bulk.loadBalancer.servers]]\naddress = \"{}\"\n\
                 [tcp.routers.echo]\nrule = \"HostSNI(`*`)\"\nentryPoints = [\"echo\"]\nservice = \"echo\"\n[[tcp.services.echo.loadBalancer.servers]]\naddress = \"{}\"\n\
                 [tcp.routers.pg]\nrule = \"HostSNI(`*`)\"\nentryPoints = [\"pg\"]\nservice = \"pg\"\n[[tcp.services.pg.loadBalancer.servers]]\naddress = \"{pg_server}\"\n",
                sink.addr, sink.echo
            ),
        )
        .map_err(|e| e.to_string())?;
        let splice = target == "drover-splice";
        std::fs::write(
            &config,
            format!(
                "[entryPoints.bulk]\naddress = \"{addr}\"\n[entryPoints.bulk.tcp]\nsplice = {splice}\n[entryPoints.echo]\naddress = \"{echo}\"\n[entryPoints.echo.tcp]\nsplice = {splice}\n\
                 [entryPoints.pg]\naddress = \"{pg}\"\n[entryPoints.pg.tcp]\nsplice = {splice}\n\
                 [api]\naddress = \"{}\"\n[log]\nlevel = \"error\"\n[providers.file]\nfilename = {:?}\nwatch = false\n",
                free_port()?,
                routes.display().to_string()
            ),
        )
        .map_err(|e| e.to_string())?;
        cmd.arg(drover).arg("--config").arg(&config).args(["--workers", "1"]);
    } else {
        let config = dir.join(format!("{target}.cfg"));
        let splice = if target == "haproxy-splice" {
            "    option splice-request\n    option splice-response\n"
        } else {
            ""
        };
        std::fs::write(
            &config,
            format!(
                "global\n    nbthread 1\n    maxconn 4000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n{splice}\
                 frontend bulk\n    bind {addr}\n    default_backend bulk\nbackend bulk\n    server b {}\n\
                 frontend echo\n    bind {echo}\n    default_backend echo\nbackend echo\n    server e {}\n\
                 frontend pg\n    bind {pg}\n    default_backend pg\nbackend pg\n    server p {pg_server}\n",
                sink.addr, sink.echo
            ),
        )
        .map_err(|e| e.to_string())?;
        cmd.arg(haproxy).arg("-db").arg("-f").arg(&config);
    }
    let log = std::fs::File::create(dir.join(format!("{target}.log"))).map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let child = cmd.spawn().map_err(|e| format!("cannot start {target}: {e}"))?;
    let proxy = Proxy { addr, echo, pg, child };
    // Ready when an exchange goes through (drover routes once its configuration is in force).
    let deadline = Instant::now() + Duration::from_secs(15);
    while exchange(proxy.echo).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join(format!("{target}.log"))).unwrap_or_default();
            return Err(format!("{target} did not relay within 15 s; its log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(proxy))
}

/// `mib` MiB from the sink through `addr`, over `connections` connections at once: GiB/s, and
/// the proxy's user and kernel CPU seconds per GiB.
fn bulk(addr: SocketAddr, _sink: &Sink, connections: u64, mib: u64, proxy: Option<u32>) -> Result<(f64, f64, f64)> {
    let total = mib * 1024 * 1024;
    let each = total / connections;
    let before = proxy.map(CpuTime::of_tree).transpose()?;
    let started = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let received = received.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut stream = TcpStream::connect(addr)?;
                stream.write_all(&each.to_be_bytes())?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a client thread panicked")?.map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    if got != each * connections {
        return Err(format!("received {got} bytes of {}", each * connections));
    }
    let gib = got as f64 / (1u64 << 30) as f64;
    let (user, sys) = match (proxy, before) {
        (Some(pid), Some(before)) => {
            let used = CpuTime::of_tree(pid)?.since(before);
            (used.user / gib, used.system / gib)
        }
        _ => (0.0, 0.0),
    };
    Ok((gib / secs, user, sys))
}

/// One connect, 100 B each way, close.
fn exchange(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.write_all(&[7u8; 100])?;
    let mut buf = [0u8; 100];
    stream.read_exact(&mut buf)?;
    Ok(())
}

/// Exchanges per second through `echo`, 16 client threads, for `secs`.
fn exchanges(echo: SocketAddr, secs: Duration) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match exchange(echo) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(secs); // the measurement's duration, not a wait for a condition
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "a client thread panicked")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  ({failed} exchanges failed)");
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// A PostgreSQL server for `pgbench`, in a temporary directory; stopped on drop.
struct Postgres {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    pg_ctl: std::path::PathBuf,
    pgbench: std::path::PathBuf,
}

/// PostgreSQL's `name` program (the newest installed major version).
fn pg_program(name: &str) -> Result<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed (apt-get install -y postgresql)".to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| format!("PostgreSQL's `{name}` is not installed"))
}

/// `program`, run as `postgres` when this process is root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn checked(what: &str, output: std::io::Result<std::process::Output>) -> Result<String> {
    let output = output.map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Postgres {
    fn start() -> Result<Self> {
        let (initdb, pg_ctl, pgbench) = (pg_program("initdb")?, pg_program("pg_ctl")?, pg_program("pgbench")?);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).output();
        let data = dir.path().join("data");
        checked(
            "initdb",
            as_postgres(&initdb)
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data)
                .output(),
        )?;
        let addr = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=100 -c fsync=off",
            addr.port(),
            dir.path().display()
        );
        checked(
            "pg_ctl start",
            as_postgres(&pg_ctl)
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.path().join("log"))
                .args(["-w", "start"])
                .output(),
        )?;
        let this = Self {
            addr,
            dir,
            pg_ctl,
            pgbench,
        };
        checked(
            "pgbench -i",
            Command::new(&this.pgbench)
                .args([
                    "-i",
                    "-q",
                    "-s",
                    "10",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &addr.port().to_string(),
                    "-U",
                    "postgres",
                    "postgres",
                ])
                .output(),
        )?;
        Ok(this)
    }

    /// `pgbench -S` for `secs` seconds against `port`: transactions per second.
    fn bench(&self, port: u16, secs: u32) -> Result<f64> {
        let out = checked(
            "pgbench -S",
            Command::new(&self.pgbench)
                .args(["-S", "-n", "-c", "16", "-j", "2", "-T", &secs.to_string()])
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "postgres"])
                .output(),
        )?;
        out.lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("pgbench printed no tps: {out}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.pg_ctl)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
