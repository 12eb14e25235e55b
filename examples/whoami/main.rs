//! `whoami --port <p> [--bind 127.0.0.1] [--name <n>]`: the test backend as a process.
//!
//! It prints exactly one line, `whoami <name> listening on <addr>`, once it accepts connections,
//! so a script can start it with `--port 0` and read the bound port. It runs as PID 1 in a
//! `FROM scratch` container: it reads no file it cannot do without, and it installs its own
//! SIGTERM/SIGINT handlers because the kernel gives PID 1 no default ones.
#![forbid(unsafe_code)]

mod server;

use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

/// The whoami test backend: answers every request with what it received.
#[derive(Parser)]
#[command(name = "whoami")]
struct Args {
    /// Port to listen on; 0 picks a free one (read it from the printed line).
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Name reported in every answer; defaults to the hostname.
    #[arg(long)]
    name: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whoami: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> io::Result<()> {
    let name = args.name.unwrap_or_else(hostname);
    // Checked before the ready line, which must not announce a backend that cannot start.
    server::name_header(&name)?;
    // Handlers first, so a signal sent right after the ready line is not lost.
    let shutdown = shutdown_signal()?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr()?;

    let mut stdout = io::stdout().lock();
    // Nobody reading stdout is not a reason to stop serving.
    let _ = writeln!(stdout, "whoami {name} listening on {bound}").and_then(|()| stdout.flush());
    drop(stdout);

    server::serve(listener, name, shutdown).await
}

/// `/etc/hostname`, else `$HOSTNAME`, else `whoami`: a scratch image may have neither.
fn hostname() -> String {
    let from_file = std::fs::read_to_string("/etc/hostname").ok();
    let from_env = std::env::var("HOSTNAME").ok();
    [from_file, from_env]
        .into_iter()
        .flatten()
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "whoami".to_owned())
}

/// Resolves on the first SIGTERM or SIGINT.
#[cfg(unix)]
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
