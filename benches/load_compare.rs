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
//! `QUICK=1` (as `--quick`), `DROVER_BIN=/path` (use this binary instead of building one),
//! `PGO=1` (build drover with profile-guided optimisation by `.ci/pgo-build`, as
//! `PGO=1 examples/overlay-stack/build-images.sh` does for the image, and measure the ordinary
//! build beside it as `drover-nopgo`; `DROVER_PLAIN_BIN` names that one), `VARIANTS=1` (drover also without passive health and with a JSON access log),
//! `BARE_PEERS=1` (nginx and HAProxy also without the forwarding headers, as `nginx-bare` and
//! `haproxy-bare`), `CEILING=1` (HAProxy as a plain TCP relay, `tcp-relay`: the same system
//! calls with no HTTP work, the most any proxy can reach on the machine),
//! `CHAIN=1` (drover with #23's typical middleware chain as `drover+chain`, and nginx doing the
//! same as `nginx+chain`; prints both ratios, the goal being the chained one ≥ the plain one − 3%),
//! `TARGETS=drover,drover+accesslog` (measure only these), `LATENCY=0` (skip the open-loop pass).
//! Needs `apt-get install -y nginx-light haproxy wrk`, and `nghttp2-client` for the latency pass.
//!
//! Why it is shaped like this: the machines are shared and noisy, so one run of one proxy says
//! little. The targets are measured in interleaved rounds (direct, nginx, haproxy, drover, and
//! again) so that a noisy minute hurts all of them alike, and each is reported as the median of
//! its rounds next to the spread and the error count. Closed-loop `wrk` finds the maximum
//! throughput; latency is then measured open-loop with `h2load --rps` at a fixed fraction of the
//! slowest peer's maximum, because latency at saturation only measures the length of a queue.
//! The load generator is pinned to CPU 0 and the proxies to the other CPUs, so the generator
//! never competes with what it measures; the backend floats (see `Lab::start_backend`).
//! Every proxy does the same job: nginx and HAProxy are told to add the forwarding headers
//! drover always adds (`X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `X-Real-Ip`; see
//! `FORWARDING_NGINX` in `lab.rs`) and to pass the client's Host on, as drover does.
//! nginx's habit of closing a keep-alive connection after 1,000 requests is lifted
//! (`keepalive_requests`): HAProxy and drover have no such limit, and h2load's open-loop clients
//! stop for good when their connection closes.
//!
//! Every server listens on 127.0.0.1 on a free port, runs from a temporary directory, and is
//! stopped when its guard drops (end of run, error or panic) or, through `setpriv --pdeathsig`,
//! when this process dies without unwinding. This file runs the rounds and prints the tables;
//! `load_compare/lab.rs` starts the servers, `load_compare/parse.rs` reads the generators' output.
//!
//! Beside the throughput it prints the CPU each round cost per request: the proxy's user-space
//! and kernel time (every thread of it and of its child processes, from `/proc`), the backend's
//! and wrk's (the shell's `times`). With both CPUs full, throughput follows their sum.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

#[path = "load_compare/lab.rs"]
mod lab;
#[path = "load_compare/parse.rs"]
mod parse;

use lab::{
    drover_binary, env_count, free_ports, pgo_requested, plain_drover_binary, round_order, CpuTime, Health, Lab, Result, Server, Tools,
    CHAIN, NO_PGO, PLAIN, VARIANTS,
};
use parse::{fmt_count, median, self_test, OpenLoopResult, WrkResult};

/// wrk's connection count (`-c`), as in the measured baselines.
const CONNECTIONS: u32 = 64;
/// h2load's client count (`-c`) for the open-loop latency pass.
const OPEN_LOOP_CLIENTS: u32 = 32;
/// The open-loop rate as a fraction of the slowest peer's median maximum.
const OPEN_LOOP_FRACTION: f64 = 0.5;
/// The unrecorded wrk run each target gets before the first round (fills pools and caches).
const WARMUP_SECS: u32 = 1;
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
        check_round_order().map_err(Exit::Failed)?;
        return self_test().map_err(Exit::Failed);
    }
    let tools = Tools::find(true).map_err(Exit::MissingTools)?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let lab = Lab::new(tools, tmp.path(), opts.workers);
    let [backend_port, nginx_port, haproxy_port, drover_port, admin_port] = free_ports()?;

    // The backend outlives every target (locals drop in reverse order); without it, nothing
    // can be measured.
    let mut backend = lab.start_backend(backend_port)?;
    let backends = [backend_port];
    let defaults = Health::default();
    let mut targets = vec![
        Target::new("direct", backend_port, None),
        Target::start("nginx", nginx_port, || {
            lab.start_nginx_proxy("nginx", nginx_port, &backends, &defaults, true)
        }),
        Target::start("haproxy", haproxy_port, || {
            lab.start_haproxy("haproxy", haproxy_port, &backends, &defaults, true)
        }),
        Target::start("drover", drover_port, || {
            let bin = drover_binary()?;
            lab.start_drover(&bin, drover_port, admin_port, &backends, &PLAIN)
        }),
    ];
    // PGO=1: "drover" is the PGO build; the ordinary release build runs beside it.
    if pgo_requested() {
        let [port, admin] = free_ports()?;
        targets.push(Target::start(NO_PGO.name, port, || {
            let bin = plain_drover_binary()?;
            lab.start_drover(&bin, port, admin, &backends, &NO_PGO)
        }));
    }
    // BARE_PEERS=1: nginx and HAProxy again without the forwarding headers, to show what that
    // part of the job costs them.
    if std::env::var_os("BARE_PEERS").is_some_and(|v| v == "1") {
        let [nginx, haproxy] = free_ports()?;
        targets.push(Target::start("nginx-bare", nginx, || {
            lab.start_nginx_proxy("nginx-bare", nginx, &backends, &defaults, false)
        }));
        targets.push(Target::start("haproxy-bare", haproxy, || {
            lab.start_haproxy("haproxy-bare", haproxy, &backends, &defaults, false)
        }));
    }
    // CEILING=1: HAProxy as a TCP relay, which does no HTTP work: the most any proxy can reach
    // here, where wrk and the backend share a CPU.
    if std::env::var_os("CEILING").is_some_and(|v| v == "1") {
        let [port] = free_ports()?;
        targets.push(Target::start("tcp-relay", port, || {
            lab.start_haproxy_tcp("tcp-relay", port, &backends)
        }));
    }
    // CHAIN=1: the typical middleware chain in drover and the same work in nginx (issue #23).
    if std::env::var_os("CHAIN").is_some_and(|v| v == "1") {
        let [nginx, port, admin] = free_ports()?;
        targets.push(Target::start("nginx+chain", nginx, || {
            lab.start_nginx_chain("nginx+chain", nginx, &backends)
        }));
        targets.push(Target::start(CHAIN.name, port, || {
            let bin = drover_binary()?;
            lab.start_drover(&bin, port, admin, &backends, &CHAIN)
        }));
    }
    // VARIANTS=1: drover again with passive health off, and with a JSON access log to a file,
    // to show what each costs (issues 3 and 5).
    if std::env::var_os("VARIANTS").is_some_and(|v| v == "1") {
        for variant in VARIANTS {
            let [port, admin] = free_ports()?;
            targets.push(Target::start(variant.name, port, || {
                let bin = drover_binary()?;
                lab.start_drover(&bin, port, admin, &backends, &variant)
            }));
        }
    }

    println!(
        "\nload_compare: {} round(s) × {} s of wrk -t1 -c{CONNECTIONS} on CPU {}, proxies on CPU {}, \
         {} worker(s) each; backend nginx `return 200 \"1\"`, not pinned",
        opts.rounds,
        opts.duration_secs,
        lab.loadgen_cpus,
        lab.server_cpus.as_deref().unwrap_or("any (not pinned)"),
        opts.workers,
    );
    // TARGETS=a,b: measure only these (an A/B run of two variants, say); the others stop now.
    if let Ok(only) = std::env::var("TARGETS") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        targets.retain(|t| only.contains(&t.name));
        if targets.is_empty() {
            return Err(Exit::Failed(format!("TARGETS={only:?} names no target")));
        }
    }
    for target in targets.iter_mut() {
        target.measure_max(&lab, WARMUP_SECS, &backend);
        target.max.clear();
        target.cpu.clear();
    }
    for round in 1..=opts.rounds {
        let mut line = format!("round {round}/{}:", opts.rounds);
        for i in round_order(targets.len(), round) {
            let target = &mut targets[i];
            let name = target.name;
            if let Some(result) = target.measure_max(&lab, opts.duration_secs, &backend) {
                let _ = write!(line, "  {name} {:.0}/s", result.requests_per_sec);
            }
        }
        println!("{line}");
        ensure_running(&mut backend)?;
    }
    print_max_table(&targets, opts.rounds);
    print_cpu_table(&targets, opts.rounds);

    if std::env::var_os("LATENCY").is_some_and(|v| v == "0") {
        return Ok(());
    }
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
        ensure_running(&mut backend)?;
    }
    print_latency_table(&targets, opts.rounds);
    Ok(())
}

/// `--self-test`: every round measures every target once, and each target comes first in some
/// round.
fn check_round_order() -> Result<(), String> {
    for n in 1..=7 {
        let mut first = vec![false; n];
        for round in 1..=2 * n {
            let mut order = round_order(n, round);
            first[order[0]] = true;
            order.sort_unstable();
            if order != (0..n).collect::<Vec<_>>() {
                return Err(format!("round_order({n}, {round}) is not a permutation: {order:?}"));
            }
        }
        if first.contains(&false) {
            return Err(format!("round_order({n}, _) never starts with some target: {first:?}"));
        }
    }
    let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1 0 0";
    let times = lab::parse_times("1m2.500000s 0m0.250000s");
    if times != Some(CpuTime { user: 62.5, system: 0.25 }) || lab::parse_times("0m1s").is_some() {
        return Err(format!("parse_times: {times:?}"));
    }
    if lab::stat_ticks(stat) != Some((250, 75)) {
        return Err(format!("stat_ticks({stat:?}) = {:?}, not (250, 75)", lab::stat_ticks(stat)));
    }
    println!("load_compare self-test: round order and /proc parsing ok");
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

fn ensure_running(backend: &mut Server) -> Result<()> {
    match backend.exited() {
        None => Ok(()),
        Some(status) => Err(format!("the backend exited ({status}){}", backend.log_tail())),
    }
}

/// One thing the load generator is pointed at, and what was measured there.
struct Target {
    name: &'static str,
    port: u16,
    /// The proxy, stopped when the target is skipped; None for the backend itself.
    server: Option<Server>,
    /// Why this target is no longer measured.
    skipped: Option<String>,
    max: Vec<WrkResult>,
    /// CPU per request in each measured round, beside `max`.
    cpu: Vec<CpuPerRequest>,
    latency: Vec<OpenLoopResult>,
}

/// CPU time per request in one closed-loop round, in seconds: the proxy's (none for the backend
/// served directly), split into user space and kernel, the backend's and the load generator's.
#[derive(Debug, Clone, Copy)]
struct CpuPerRequest {
    proxy: Option<CpuTime>,
    backend: f64,
    wrk: f64,
}

impl Target {
    fn new(name: &'static str, port: u16, server: Option<Server>) -> Self {
        Target {
            name,
            port,
            server,
            skipped: None,
            max: vec![],
            cpu: vec![],
            latency: vec![],
        }
    }

    fn start(name: &'static str, port: u16, start: impl FnOnce() -> Result<Server>) -> Self {
        match start() {
            Ok(server) => Target::new(name, port, Some(server)),
            Err(reason) => {
                println!("{name}: skipped: {reason}");
                Target {
                    name,
                    port,
                    server: None,
                    skipped: Some(reason),
                    max: vec![],
                    cpu: vec![],
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

    /// Skips the target if its proxy has died; true while it is alive (or has none).
    fn check_alive(&mut self) -> bool {
        let Some(server) = self.server.as_mut() else {
            return true;
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

    /// One closed-loop round, with the CPU the proxy and `backend` used for it.
    fn measure_max(&mut self, lab: &Lab, secs: u32, backend: &Server) -> Option<&WrkResult> {
        if self.skipped.is_some() {
            return None;
        }
        let cpu_before = self.cpu_times(backend);
        let result = lab
            .run_wrk_timed(self.port, secs, CONNECTIONS, &[])
            .and_then(|(out, wrk)| Ok((WrkResult::parse(&out)?, wrk)));
        let cpu_after = self.cpu_times(backend);
        if !self.check_alive() {
            return None;
        }
        match result {
            Ok((result, wrk)) => {
                if let (Ok((proxy0, backend0)), Ok((proxy1, backend1))) = (cpu_before, cpu_after) {
                    let per_request = |t: CpuTime| CpuTime {
                        user: t.user / result.requests.max(1) as f64,
                        system: t.system / result.requests.max(1) as f64,
                    };
                    self.cpu.push(CpuPerRequest {
                        proxy: proxy0.zip(proxy1).map(|(p0, p1)| per_request(p1.since(p0))),
                        backend: per_request(backend1.since(backend0)).total(),
                        wrk: per_request(wrk).total(),
                    });
                }
                self.max.push(result);
                self.max.last()
            }
            Err(e) => {
                self.skip(e);
                None
            }
        }
    }

    /// CPU used so far by the proxy (None when there is none) and by `backend`.
    fn cpu_times(&self, backend: &Server) -> Result<(Option<CpuTime>, CpuTime)> {
        let proxy = self.server.as_ref().map(Server::cpu_time).transpose()?;
        Ok((proxy, backend.cpu_time()?))
    }

    fn measure_latency(&mut self, lab: &Lab, h2load: &Path, rate: f64, secs: u32, round: usize) {
        if self.skipped.is_some() {
            return;
        }
        let result = lab
            .run_h2load(h2load, self.port, rate, secs, OPEN_LOOP_CLIENTS)
            .and_then(|(out, log)| OpenLoopResult::parse(&out, &log));
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

/// Where each target's requests spent CPU: the proxy's user-space and kernel time, the
/// backend's and wrk's, per request, and all of it together. With every CPU busy (wrk, the
/// backend and the proxy fill both), throughput follows what everyone together spends per
/// request, not the proxy's share alone; the proxy's kernel time is mostly loopback TCP, the
/// same four system calls for every proxy.
fn print_cpu_table(targets: &[Target], rounds: usize) {
    println!(
        "\nCPU per request under maximum load (µs, median of {rounds} round(s); /proc/<pid>/task/*/stat, sh `times`)\n\
         {:<12} {:>10} {:>12} {:>11} {:>9} {:>8} {:>9}",
        "target", "proxy user", "proxy kernel", "proxy total", "backend", "wrk", "everyone"
    );
    let us = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.2}", v * 1e6));
    for t in targets.iter().filter(|t| !t.cpu.is_empty()) {
        let proxy = |f: fn(CpuTime) -> f64| median(t.cpu.iter().filter_map(|c| c.proxy.map(f)));
        println!(
            "{:<12} {:>10} {:>12} {:>11} {:>9} {:>8} {:>9}",
            t.name,
            us(proxy(|c| c.user)),
            us(proxy(|c| c.system)),
            us(proxy(CpuTime::total)),
            us(median(t.cpu.iter().map(|c| c.backend))),
            us(median(t.cpu.iter().map(|c| c.wrk))),
            us(median(
                t.cpu.iter().map(|c| c.backend + c.wrk + c.proxy.map_or(0.0, CpuTime::total))
            )),
        );
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
    print_variant_ratios(targets);
}

fn print_variant_ratios(targets: &[Target]) {
    let find = |name: &str| targets.iter().find(|t| t.name == name).and_then(Target::median_max);
    if let (Some(plain), Some(chained)) = (
        find("drover").zip(find("nginx")).map(|(d, n)| d / n),
        find(CHAIN.name).zip(find("nginx+chain")).map(|(d, n)| d / n),
    ) {
        println!(
            "middleware chain: drover/nginx {plain:.3}× without, {chained:.3}× with ({:+.1}%; goal ≥ −3%)",
            (chained / plain - 1.0) * 100.0
        );
    }
    let Some(drover) = find("drover") else { return };
    for variant in [NO_PGO].iter().chain(&VARIANTS) {
        if let Some(v) = find(variant.name) {
            println!("{}/drover {:.3}× ({:+.1}%)", variant.name, v / drover, (v / drover - 1.0) * 100.0);
        }
    }
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
    if let Some(relay) = find("tcp-relay") {
        let ceiling: Vec<_> = PEERS
            .iter()
            .filter_map(|peer| Some(format!("tcp-relay/{peer} {:.2}×", relay / find(peer)?)))
            .collect();
        println!(
            "ceiling (a TCP relay, no HTTP work): {}   drover/tcp-relay {:.2}×",
            ceiling.join("   "),
            drover / relay
        );
    }
}

fn print_latency_table(targets: &[Target], rounds: usize) {
    println!(
        "\nopen-loop latency (h2load; median of {rounds} round(s), errors summed)\n\
         {:<8} {:>10} {:>10} {:>10} {:>8}",
        "target", "achieved/s", "p50", "p99", "errors"
    );
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

fn median_duration(values: impl Iterator<Item = Duration>) -> Duration {
    median(values.map(|d| d.as_secs_f64())).map_or(Duration::ZERO, Duration::from_secs_f64)
}

/// `123456.7` → `"123,457"`.
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
