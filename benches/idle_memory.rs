//! What an idle client connection costs in memory (issue #25, item 1): drover, nginx and HAProxy
//! side by side, each one worker proxying to the same nginx backend that answers a tiny 200.
//!
//! ```text
//! cargo bench --bench idle_memory                       # 3 rounds: 1,000 and 10,000 clients, HTTP/1.1 and h2c
//! ROUNDS=1 CLIENTS=1000 PROTOCOLS=h1 cargo bench --bench idle_memory
//! ```
//!
//! For each case a fresh proxy is started, then:
//! 1. warm-up: `WARMUP` (256) clients each send one GET and close (fills the upstream
//!    keep-alive pools, thread caches and lazily built state, as any running proxy has them);
//! 2. after `SETTLE` seconds (3) the proxy's resident anonymous memory is read ("before");
//! 3. `N` clients connect, each sends one GET (256 at a time), reads the answer and then stays
//!    open and idle: HTTP/1.1 keep-alive, or HTTP/2 with prior knowledge (h2c) with its one
//!    stream ended;
//! 4. after `SETTLE` seconds more the memory is read again ("after"); the clients close (with a
//!    reset, so that no TIME_WAIT fills the connection-tracking table) and the proxy stops.
//!
//! Printed per case: (after − before) / N, in KiB per idle connection, the median of the rounds
//! (the targets are interleaved as `load_compare` does). Memory is `RssAnon` from
//! `/proc/<pid>/status` summed over the proxy's process tree (nginx's master and worker): heap
//! and stacks, not the binary's pages nor the kernel's socket buffers, which are the same for all.
//!
//! Environment: `ROUNDS` (3), `CLIENTS` (`1000,10000`), `PROTOCOLS` (`h1,h2`), `WARMUP` (256),
//! `SETTLE` in seconds (3), `TARGETS` (`drover,nginx,haproxy`), `DROVER_BIN=/path`. Needs nginx
//! and HAProxy (`apt-get install -y nginx-light haproxy`) and util-linux's `taskset` and
//! `setpriv`. The descriptor limit is raised to 65,536 (as root, where allowed) or to the hard
//! limit (the proxies inherit it); 10,000 clients need ~10,600 here and in the proxy. HAProxy
//! reckons two descriptors per `maxconn` and would refuse to start below ~21,000: it is told
//! `no strict-limits`, and uses what it needs.
//!
//! The peers are configured to keep idle client connections for 300 s (HAProxy's
//! `timeout client`/`http-keep-alive`, nginx's `keepalive_timeout`/`http2_idle_timeout`);
//! drover's defaults keep them 180 s (`idleTimeout`). HTTP/2 goes to a second port on nginx
//! (`listen … http2`: h2c only) and HAProxy (`bind … proto h2`); drover tells HTTP/2 from
//! HTTP/1 by the preface on its one entrypoint.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[path = "load_compare/lab.rs"]
mod lab;

use lab::{Lab, Result, Server, Tools, Variant, LOOPBACK};

/// How long a client waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Clients connecting and asking at once.
const CONCURRENCY: usize = 256;
/// How long the peers keep an idle client connection.
const PEER_IDLE_SECS: u32 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Protocol {
    Http1,
    H2c,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::H2c => "HTTP/2 (h2c)",
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("idle_memory: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let rounds = lab::env_count("ROUNDS", 3)? as usize;
    let warmup = lab::env_count("WARMUP", 256)? as usize;
    let settle = Duration::from_secs(u64::from(lab::env_count("SETTLE", 3)?));
    let counts = list("CLIENTS", "1000,10000", |c| c.parse::<usize>().ok().filter(|&n| n > 0))?;
    let protocols = list("PROTOCOLS", "h1,h2", |p| match p {
        "h1" => Some(Protocol::Http1),
        "h2" => Some(Protocol::H2c),
        _ => None,
    })?;
    let targets = list("TARGETS", "drover,nginx,haproxy", |t| {
        ["drover", "nginx", "haproxy"].into_iter().find(|known| *known == t)
    })?;
    let most = counts.iter().copied().max().unwrap_or(0);
    let nofile = raise_nofile()?;
    println!("descriptors: {nofile} (RLIMIT_NOFILE raised; the proxies inherit it)");
    if (nofile as usize) < most + 600 {
        return Err(format!(
            "{most} clients need ~{} descriptors here and in the proxy; the limit is {nofile} (raise it: ulimit -Hn, LimitNOFILE)",
            most + 600
        ));
    }
    let drover = lab::drover_binary()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut lab = Lab::new(Tools::find(false)?, dir.path(), 1);
    // nginx holds every client and its upstream connections.
    lab.nginx_connections = u32::try_from(2 * most + 512).unwrap_or(u32::MAX);
    lab.pin_to_loadgen_cpus(std::process::id())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let [backend_port] = lab::free_ports::<1>()?;
    let _backend = lab.start_backend(backend_port)?;

    // (protocol, clients, target) → KiB per connection, one per round.
    let mut results: std::collections::BTreeMap<(Protocol, usize, &str), Vec<f64>> = Default::default();
    for round in 1..=rounds {
        for &protocol in &protocols {
            for &clients in &counts {
                for i in lab::round_order(targets.len(), round) {
                    let target = targets[i];
                    let case = Case {
                        protocol,
                        clients,
                        warmup,
                        settle,
                    };
                    let measured = runtime.block_on(once(&lab, &drover, target, backend_port, &case))?;
                    println!(
                        "round {round} {:>13} {clients:>6} clients {target:>8}: {:>8.0} KiB before, {:>8.0} KiB after: {:>6.2} KiB per idle connection",
                        protocol.label(),
                        measured.before_kib,
                        measured.after_kib,
                        measured.per_connection()
                    );
                    results
                        .entry((protocol, clients, target))
                        .or_default()
                        .push(measured.per_connection());
                }
            }
        }
    }

    println!(
        "\nresident anonymous memory per idle client connection, KiB (median of {rounds} round(s); one worker each, same nginx backend)"
    );
    print!("{:>13} | {:>8}", "protocol", "clients");
    for target in &targets {
        print!(" | {target:>8}");
    }
    println!();
    for &protocol in &protocols {
        for &clients in &counts {
            print!("{:>13} | {clients:>8}", protocol.label());
            for target in &targets {
                let mut values = results.get(&(protocol, clients, *target)).cloned().unwrap_or_default();
                print!(" | {:>8}", median(&mut values).map_or("n/a".into(), |m| format!("{m:.2}")));
            }
            println!();
        }
    }
    Ok(())
}

/// A comma-separated list from the environment (or `default`), each item checked by `parse`.
fn list<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.into());
    text.split(',')
        .map(|item| parse(item.trim()).ok_or_else(|| format!("{name}={text:?}: {:?} is not one of the accepted values", item.trim())))
        .collect()
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Descriptors asked for: room for 10,000 clients and their upstream connections in the proxy,
/// and for HAProxy's own reckoning (two per `maxconn`).
const NOFILE_WANTED: u64 = 65_536;

/// Raises this process's descriptor limit (the proxies inherit it): to [`NOFILE_WANTED`] when
/// allowed (root may raise the hard limit), else to the hard limit; returns it.
fn raise_nofile() -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_max < NOFILE_WANTED {
        let raised = libc::rlimit {
            rlim_cur: NOFILE_WANTED,
            rlim_max: NOFILE_WANTED,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(NOFILE_WANTED);
        }
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if set != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(limit.rlim_cur)
}

struct Case {
    protocol: Protocol,
    clients: usize,
    warmup: usize,
    settle: Duration,
}

struct Measured {
    clients: usize,
    before_kib: f64,
    after_kib: f64,
}

impl Measured {
    fn per_connection(&self) -> f64 {
        (self.after_kib - self.before_kib) / self.clients as f64
    }
}

/// One proxy, fresh: warm-up, memory before, `case.clients` idle clients, memory after.
async fn once(lab: &Lab, drover: &std::path::Path, target: &str, backend: u16, case: &Case) -> Result<Measured> {
    let [port, h2c_port, admin] = lab::free_ports::<3>()?;
    let b = [backend];
    let maxconn = u32::try_from(case.clients + case.warmup + 512).unwrap_or(u32::MAX);
    // drover takes both protocols on one port.
    let (proxy, h2_port): (Server, u16) = match target {
        "drover" => (
            lab.start_drover(
                drover,
                port,
                admin,
                &b,
                &Variant {
                    name: "drover",
                    routes: "",
                    static_config: "",
                },
            )?,
            port,
        ),
        "nginx" => (lab.start_nginx_proxy_h2c("nginx", port, h2c_port, &b, PEER_IDLE_SECS)?, h2c_port),
        "haproxy" => (
            lab.start_haproxy_h2c("haproxy", port, h2c_port, &b, PEER_IDLE_SECS, maxconn)?,
            h2c_port,
        ),
        other => return Err(format!("unknown target {other}")),
    };
    let addr = |protocol| {
        SocketAddr::from((
            LOOPBACK,
            match protocol {
                Protocol::Http1 => port,
                Protocol::H2c => h2_port,
            },
        ))
    };
    let warm = open_clients(addr(case.protocol), case.protocol, case.warmup).await?;
    close(warm);
    tokio::time::sleep(case.settle).await;
    let before_kib = rss_anon_kib(proxy.pid())?;
    let idle = open_clients(addr(case.protocol), case.protocol, case.clients).await?;
    tokio::time::sleep(case.settle).await;
    let after_kib = rss_anon_kib(proxy.pid())?;
    // Still open: none was closed by the proxy while idle.
    let closed = idle.iter().filter(|s| peer_closed(s)).count();
    close(idle);
    drop(proxy);
    if closed > 0 {
        return Err(format!(
            "{target} closed {closed} of the {} idle connections before the measurement",
            case.clients
        ));
    }
    Ok(Measured {
        clients: case.clients,
        before_kib,
        after_kib,
    })
}

/// Whether the peer has closed `stream` (a read would see the end, or an error).
fn peer_closed(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false, // unread bytes (an HTTP/2 PING or SETTINGS): open
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Closes every stream with a reset: no TIME_WAIT, and the connection-tracking entries go soon.
fn close(streams: Vec<TcpStream>) {
    for stream in streams {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        drop(stream);
    }
}

/// `RssAnon` of `pid` and its descendants, in KiB.
fn rss_anon_kib(pid: u32) -> Result<f64> {
    let mut total = 0u64;
    let mut pending = vec![pid];
    while let Some(pid) = pending.pop() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no RssAnon"))?;
        total += kib;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                    pending.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
                }
            }
        }
    }
    Ok(total as f64)
}

/// `n` clients to `addr`, each having sent one GET and read its answer; any failure is an error.
async fn open_clients(addr: SocketAddr, protocol: Protocol, n: usize) -> Result<Vec<TcpStream>> {
    let outcomes: Vec<std::result::Result<TcpStream, String>> = stream::iter(0..n)
        .map(|_| async move {
            let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let asked = async {
                match protocol {
                    Protocol::Http1 => exchange_http1(&mut stream).await,
                    Protocol::H2c => exchange_h2c(&mut stream).await,
                }
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, asked).await {
                Ok(Ok(200)) => Ok(stream),
                Ok(Ok(status)) => Err(format!("status {status}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut open = Vec::with_capacity(n);
    let mut failures: std::collections::BTreeMap<String, usize> = Default::default();
    for outcome in outcomes {
        match outcome {
            Ok(stream) => open.push(stream),
            Err(why) => *failures.entry(why).or_default() += 1,
        }
    }
    if failures.is_empty() {
        Ok(open)
    } else {
        close(open);
        let failed: usize = failures.values().sum();
        let list: Vec<String> = failures.iter().map(|(why, n)| format!("{n}× {why}")).collect();
        Err(format!("{failed} of {n} {} clients failed: {}", protocol.label(), list.join(", ")))
    }
}

/// One GET over HTTP/1.1 on `stream`, its answer read to the end; the status.
async fn exchange_http1(stream: &mut TcpStream) -> std::result::Result<u16, &'static str> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: idle.bench\r\n\r\n")
        .await
        .map_err(|_| "send failed")?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("closed unanswered"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
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
        .ok_or("no Content-Length")?;
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err("body cut"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(status)
}

/// HTTP/2 frame types and flags this client uses.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// One GET over HTTP/2 with prior knowledge on `stream` (stream 1), its answer read to the end;
/// the status (200 when the answer's header block starts with HPACK's indexed `:status: 200`).
async fn exchange_h2c(stream: &mut TcpStream) -> std::result::Result<u16, &'static str> {
    let mut hello = Vec::with_capacity(64);
    hello.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    hello.extend_from_slice(&frame_head(0, SETTINGS, 0, 0));
    // :method GET, :scheme http, :path / (static table 2, 6, 4), :authority idle.bench
    // (a literal without indexing, name from the static table's entry 1).
    let block: &[u8] = b"\x82\x86\x84\x01\x0aidle.bench";
    hello.extend_from_slice(&frame_head(block.len(), HEADERS, END_STREAM | 0x4, 1));
    hello.extend_from_slice(block);
    stream.write_all(&hello).await.map_err(|_| "send failed")?;
    let mut status = None;
    loop {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.map_err(|_| "closed unanswered")?;
        let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).await.map_err(|_| "frame cut")?;
        match kind {
            SETTINGS if flags & ACK == 0 => stream
                .write_all(&frame_head(0, SETTINGS, ACK, 0))
                .await
                .map_err(|_| "send failed")?,
            GOAWAY => return Err("GOAWAY"),
            RST_STREAM if id == 1 => return Err("stream reset"),
            HEADERS if id == 1 => {
                let mut skip = 0;
                if flags & PADDED != 0 {
                    skip += 1;
                }
                if flags & PRIORITY != 0 {
                    skip += 5;
                }
                if status.is_none() {
                    status = Some(if payload.get(skip) == Some(&0x88) { 200 } else { 0 });
                }
            }
            _ => {}
        }
        if id == 1 && (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
            return status.ok_or("no header block");
        }
    }
}

fn frame_head(length: usize, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
    let l = length.to_be_bytes();
    let s = stream.to_be_bytes();
    [l[5], l[6], l[7], kind, flags, s[0], s[1], s[2], s[3]]
}
