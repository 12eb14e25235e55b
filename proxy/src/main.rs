//! The `drover` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drover::config::StaticConfig;
use drover::server::upgrade::Takeover;
use drover::Drover;

// A proxy allocates small, short-lived buffers per request on every worker thread; mimalloc's
// per-thread free lists serve that better than the system allocator (measured: see README).
// `--features system-allocator` builds with the system's instead, for heap profilers that
// follow `malloc` (heaptrack, valgrind's massif): benches/README.md "Idle connections".
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands the calling thread's free memory back to the system: a worker calls it once a burst
/// is over (`drover::memory`). `force` also frees the pages mimalloc would keep for a while.
#[cfg(not(feature = "system-allocator"))]
fn trim() {
    // SAFETY: `mi_collect` takes no pointers; it only releases memory that is free.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// drover: a self-configuring edge proxy.
#[derive(Parser, Debug)]
#[command(name = "drover", version = drover::build_info::LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Static configuration file (TOML). Without one, drover listens on :8080 (traffic) and
    /// 127.0.0.1:8081 (admin) with no provider.
    #[arg(short, long, env = "DROVER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Worker threads serving traffic (default: the number of cores).
    #[arg(short, long, env = "DROVER_WORKERS")]
    workers: Option<usize>,
    /// The same as `drover check` (kept for scripts and health probes that use it).
    #[arg(long, hide = true)]
    check: bool,
    /// Unix socket to serve upgrades on and to take over from (overrides `[upgrade] socket`).
    #[arg(long, env = "DROVER_UPGRADE_SOCKET")]
    upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets over from the drover running at the upgrade socket; it stops
    /// accepting, drains and exits once this one's configuration is in force.
    /// With no drover there, start fresh.
    #[arg(long)]
    takeover: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the static configuration and the files the file provider would read, as a start
    /// would (binds nothing, contacts no provider): one `file:line:column: problem` line each and
    /// a summary; exit status 0 when clean, 2 otherwise.
    Check,
}

fn main() -> ExitCode {
    #[cfg(not(feature = "system-allocator"))]
    drover::memory::set_trim(trim);
    let cli = Cli::parse();
    if cli.check || matches!(cli.command, Some(Command::Check)) {
        return check(cli.config.as_deref());
    }
    let mut resolved = match &cli.config {
        Some(path) => match StaticConfig::load(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("drover: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        },
        None => StaticConfig::embedded(),
    };
    if let Err(e) = drover::logging::init(&resolved.config.log) {
        eprintln!("drover: {e}");
        return ExitCode::from(1);
    }
    if let Some(path) = &cli.upgrade_socket {
        resolved.config.upgrade.socket = Some(path.clone());
    }
    if cli.takeover && resolved.config.upgrade.socket.is_none() {
        eprintln!("drover: --takeover needs the running drover's upgrade socket: --upgrade-socket or [upgrade] socket");
        return ExitCode::from(2);
    }
    if cli.config.is_none() {
        tracing::info!("no --config given: using the embedded default (web on :8080, admin on 127.0.0.1:8081, no provider)");
    }
    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let takeover = match (&resolved.config.upgrade.socket, cli.takeover) {
        (Some(path), true) => match Takeover::connect(path) {
            Ok(Some(t)) => {
                tracing::info!("taking over from the drover at {} (pid {})", path.display(), t.pid());
                Some(t)
            }
            Ok(None) => {
                tracing::info!("no drover serves upgrades at {}: starting fresh", path.display());
                None
            }
            Err(e) => {
                tracing::error!("cannot take over: {e}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };
    let drover = match Drover::start_with(resolved, workers, takeover) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match signals {
        Ok(rt) => rt.block_on(async {
            tokio::select! {
                () = wait_for_signal() => tracing::info!("shutting down: no new connections; waiting for in-flight requests"),
                pid = drover.handed_over() => tracing::info!("handed over to pid {pid}: no new connections; waiting for in-flight requests"),
            }
        }),
        Err(e) => tracing::error!("cannot wait for signals: {e}"),
    }
    drover::server::systemd::stopping();
    drover.shutdown();
    drover.wait();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn check(config: Option<&std::path::Path>) -> ExitCode {
    let report = drover::check::check(config);
    for problem in &report.problems {
        println!("{problem}");
    }
    for provider in &report.not_contacted {
        println!("note: providers.{provider} was not contacted: its routes exist only while drover runs");
    }
    println!("{}", report.summary());
    if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
