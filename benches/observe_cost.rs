//! What the access log and the metrics cost per request, measured inside one drover process.
//!
//! ```text
//! cargo bench --bench observe_cost                  # 20 rounds × 3 s per arm
//! cargo bench --bench observe_cost -- --quick       # 2 rounds × 2 s, to check that it works
//! PGO=1 cargo bench --bench observe_cost            # the production (PGO) build
//! ```
//!
//! Environment: `ROUNDS` (20), `DURATION` in seconds (3), `WORKERS` (1), `DROVER_BIN=/path`,
//! `PGO=1`, as for `load_compare`. Needs `apt-get install -y nginx-light wrk`.
//!
//! Why one process: two drover processes started from the same binary differ in throughput by
//! up to ~10% on this kind of machine (where the kernel placed their memory, which CPU cache
//! lines their hot data share), which drowns a cost of a few percent. Here one drover, with the
//! JSON access log on (to a file), serves three routers that differ only in their
//! `observability` switches, and wrk picks one by its Host header:
//!
//! * `logged`: access-log line and metrics (drover's default with `[accessLog]` on);
//! * `nolog`: metrics only (`accessLogs = false`);
//! * `bare`: neither (`accessLogs = false`, `metrics = false`).
//!
//! The arms are measured in rotating, alternating order in every round, and each round yields
//! one cost per feature from its own arms: access log = 1 − logged/nolog, metrics =
//! 1 − nolog/bare, from closed-loop maximum throughput (wrk, pinned apart from the proxy, as
//! in `load_compare`). The target is a cost under 3% for each. (The proxy's CPU time per
//! request was tried as a second measure and dropped: saturated, it is just 1/throughput;
//! at half load it swung 2–5× between runs of the same arm, with how many requests each
//! wake-up happened to find.)

#[path = "load_compare/lab.rs"]
mod lab;
#[path = "load_compare/parse.rs"]
mod parse;

use lab::{drover_binary, env_count, free_ports, round_order, Lab, Result, Server, Tools, Variant};
use parse::WrkResult;

/// wrk's connection count, as in `load_compare`.
const CONNECTIONS: u32 = 64;
/// The cost each feature must stay under.
const TARGET: f64 = 0.03;

/// The three routers, by the Host that selects them, with their `observability` switches.
const ROUTES: &str = "
[http.routers.logged]
rule = \"Host(`logged.bench`)\"
service = \"backend\"

[http.routers.nolog]
rule = \"Host(`nolog.bench`)\"
service = \"backend\"
[http.routers.nolog.observability]
accessLogs = false

[http.routers.bare]
rule = \"Host(`bare.bench`)\"
service = \"backend\"
[http.routers.bare.observability]
accessLogs = false
metrics = false
";

const ARMS: [&str; 3] = ["logged", "nolog", "bare"];

fn main() {
    if let Err(msg) = run() {
        eprintln!("observe_cost: {msg}");
        std::process::exit(1);
    }
}

/// One arm's measurements, a round at a time.
#[derive(Default)]
struct Arm {
    rps: Vec<f64>,
    errors: u64,
}

fn run() -> Result<()> {
    let quick = std::env::args().skip(1).any(|a| a == "--quick") || std::env::var("QUICK").is_ok_and(|v| v == "1");
    let (rounds, secs) = if quick {
        (2, 2)
    } else {
        (env_count("ROUNDS", 20)? as usize, env_count("DURATION", 3)?)
    };
    let workers = env_count("WORKERS", 1)?;
    let tools = Tools::find(true)?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let lab = Lab::new(tools, tmp.path(), workers);
    let [backend_port, port, admin] = free_ports()?;
    let _backend = lab.start_backend(backend_port)?;
    let bin = drover_binary()?;
    let variant = Variant {
        name: "drover-observe",
        routes: ROUTES,
        static_config: "[accessLog]\nfilePath = \"{home}/access.log\"\nformat = \"json\"\n",
    };
    let mut drover = lab.start_drover(&bin, port, admin, &[backend_port], &variant)?;
    let access_log = tmp.path().join(variant.name).join("access.log");

    println!(
        "\nobserve_cost: {rounds} round(s) × {secs} s of wrk -t1 -c{CONNECTIONS} per arm on CPU {}, drover ({}) on CPU {}, \
         {workers} worker(s); JSON access log to {}",
        lab.loadgen_cpus,
        bin.display(),
        lab.server_cpus.as_deref().unwrap_or("any (not pinned)"),
        access_log.display(),
    );
    let mut arms: Vec<Arm> = ARMS.iter().map(|_| Arm::default()).collect();
    let mut logged_bytes = 0;
    let host = |arm: usize| format!("Host: {}.bench", ARMS[arm]);
    // Warm-up: fills the pool, the caches and the access log's buffers.
    for arm in 0..ARMS.len() {
        lab.run_wrk_with(port, 1, CONNECTIONS, &[&host(arm)])?;
    }
    for round in 1..=rounds {
        let mut line = format!("round {round}/{rounds}:");
        for arm in round_order(ARMS.len(), round) {
            let result = WrkResult::parse(&lab.run_wrk_with(port, secs, CONNECTIONS, &[&host(arm)])?)?;
            line.push_str(&format!("  {} {:.0}/s", ARMS[arm], result.requests_per_sec));
            arms[arm].rps.push(result.requests_per_sec);
            arms[arm].errors += result.errors.total();
        }
        println!("{line}");
        alive(&mut drover)?;
        // The log grows by ~30 MB a second: empty it (the writer appends, so it carries on at
        // the new end) to bound the disk this takes.
        logged_bytes += truncate(&access_log)?;
    }

    println!(
        "\nper arm (median of {rounds} rounds)\n{:<8} {:>10} {:>8}",
        "arm", "req/s", "errors"
    );
    for (name, arm) in ARMS.iter().zip(&arms) {
        println!("{:<8} {:>10.0} {:>8}", name, quantile(&arm.rps, 0.5), arm.errors);
    }
    let [logged, nolog, bare] = [&arms[0], &arms[1], &arms[2]];
    println!("\ncost per feature in throughput (per-round pairs: median, and the middle half of the rounds)");
    let mut met = true;
    for (feature, with, without) in [("access log", logged, nolog), ("metrics", nolog, bare)] {
        let cost: Vec<f64> = with.rps.iter().zip(&without.rps).map(|(w, wo)| 1.0 - w / wo).collect();
        let ok = quantile(&cost, 0.5) < TARGET;
        met &= ok;
        println!(
            "{:<12} {:>24}  target < {:.0}%: {}",
            feature,
            spread(&cost),
            TARGET * 100.0,
            if ok { "met" } else { "NOT met" }
        );
    }
    println!(
        "\naccess log: {:.0} MB written; {}",
        logged_bytes as f64 / 1e6,
        if met { "both costs under target" } else { "a cost is over target" }
    );
    Ok(())
}

/// Empties the file at `path`; returns how long it was.
fn truncate(path: &std::path::Path) -> Result<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    file.set_len(0).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(len)
}

/// Fails when drover has exited.
fn alive(drover: &mut Server) -> Result<()> {
    match drover.exited() {
        Some(status) => Err(format!("drover exited ({status}){}", drover.log_tail())),
        None => Ok(()),
    }
}

/// `+1.2% (−0.4…+2.9%)`: the median and the interquartile range.
fn spread(values: &[f64]) -> String {
    let q = |p: f64| quantile(values, p) * 100.0;
    format!("{:+.1}% ({:+.1}…{:+.1}%)", q(0.5), q(0.25), q(0.75))
}

/// Linear-interpolated quantile; 0 for no values.
fn quantile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}
