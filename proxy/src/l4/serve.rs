//! Serving one routed TCP connection: choose a server, connect (retrying another server when a
//! connect fails: nothing was sent yet), send a PROXY header if asked, then relay.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::relay::{self, Limits, Relayed};
use super::{TcpRoute, TcpService};
use crate::health::Outcome;
use crate::snapshot::Tried;

/// Counters of one TCP or UDP router, kept across reloads (see [`L4StatsRegistry`]). For UDP, a
/// "connection" is a session (one client address).
#[derive(Debug, Default)]
pub struct L4Stats {
    /// Connections (sessions) being relayed now.
    pub open: AtomicI64,
    /// Connections (sessions) taken, in all.
    pub connections: AtomicU64,
    /// Client → server bytes.
    pub bytes_in: AtomicU64,
    /// Server → client bytes.
    pub bytes_out: AtomicU64,
    /// Connections (sessions) refused because no server could be connected (reached).
    pub connect_failures: AtomicU64,
}

/// TCP or UDP counters by router name.
#[derive(Debug, Default)]
pub struct L4StatsRegistry {
    by_router: std::sync::Mutex<std::collections::BTreeMap<String, Arc<L4Stats>>>,
}

impl L4StatsRegistry {
    /// The counters of router `name` (created on first use; called when compiling).
    pub fn router(&self, name: &str) -> Arc<L4Stats> {
        let mut map = self.by_router.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }

    /// Every router's counters, by name.
    pub fn all(&self) -> Vec<(String, Arc<L4Stats>)> {
        let map = self.by_router.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The client's side of a routed connection.
pub enum Client {
    /// Bytes as they come (plain TCP, or TLS passed through).
    Plain(TcpStream),
    /// TLS terminated by drover.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Where and how a routed connection is served.
pub struct Job {
    /// The router.
    pub route: Arc<TcpRoute>,
    /// The client's address (from a PROXY header when one was accepted).
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// The entrypoint's idle timeout for TCP.
    pub idle: Option<Duration>,
    /// Relay plain sockets with `splice(2)`.
    pub splice: bool,
}

/// Serves `client` on `job.route` to the end. Errors are logged, not returned: a TCP client
/// learns of a failure by the connection closing.
pub async fn serve(client: Client, job: Job) {
    let stats = &job.route.stats;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.open.fetch_add(1, Ordering::Relaxed);
    let result = run(client, &job).await;
    stats.open.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(relayed) => {
            stats.bytes_in.fetch_add(relayed.up, Ordering::Relaxed);
            stats.bytes_out.fetch_add(relayed.down, Ordering::Relaxed);
            tracing::debug!(router = %job.route.router, client = %job.client, up = relayed.up, down = relayed.down, timed_out = relayed.timed_out, "TCP connection ended");
        }
        Err(e) => tracing::debug!(router = %job.route.router, client = %job.client, "TCP connection failed: {e}"),
    }
}

async fn run(client: Client, job: &Job) -> io::Result<Relayed> {
    let service = &job.route.service;
    let (index, mut server) = match connect(service).await {
        Ok(connected) => connected,
        Err(e) => {
            job.route.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(router = %job.route.router, service = %service.name, client = %job.client, "no server of the TCP service could be reached: {e}");
            return Err(e);
        }
    };
    let transport = &service.transport;
    if let Some(version) = transport.proxy_protocol {
        server
            .write_all(&super::proxy_protocol::header(version, job.client, job.local))
            .await?;
    }
    let limits = Limits {
        idle: job.idle,
        termination_delay: transport.termination_delay,
    };
    let target = &service.servers[index];
    if target.tls {
        let tls = transport
            .tls
            .clone()
            .unwrap_or_else(|| crate::upstream::tls::default_client().clone());
        let host = target.address.rsplit_once(':').map_or(&*target.address, |(h, _)| h);
        let name = tls.server_name(host).map_err(io::Error::other)?;
        let handshake = tls.handshake(server, name, false).await.map_err(io::Error::other)?;
        return match client {
            Client::Plain(c) => relay::copy_both(c, handshake.stream, limits).await,
            Client::Tls(c) => relay::copy_both(*c, handshake.stream, limits).await,
        };
    }
    match client {
        Client::Plain(c) if job.splice => relay::splice_both(&c, &server, limits).await,
        Client::Plain(c) => relay::copy_both(c, server, limits).await,
        Client::Tls(c) => relay::copy_both(*c, server, limits).await,
    }
}

/// Connects to a server of `service`, trying each usable one once; records each connect's
/// outcome in the server's passive health.
async fn connect(service: &TcpService) -> io::Result<(usize, TcpStream)> {
    let mut tried = Tried::default();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the service has no server with a positive weight");
    for _ in 0..service.servers.len() {
        let Some((index, probe)) = service.pick(tried, Instant::now()) else {
            break;
        };
        tried.add(index);
        let server = &service.servers[index];
        let attempt = tokio::time::timeout(service.transport.dial_timeout, TcpStream::connect(&*server.address)).await;
        let outcome = match attempt {
            Ok(Ok(stream)) => {
                service.record(index, Outcome::Success, probe, Instant::now());
                let _ = stream.set_nodelay(true);
                if let Some(every) = service.transport.keep_alive {
                    let keepalive = socket2::TcpKeepalive::new().with_time(every).with_interval(every);
                    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                }
                return Ok((index, stream));
            }
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {:?}", service.transport.dial_timeout),
            ),
        };
        service.record(index, Outcome::LocalFailure, probe, Instant::now());
        tracing::debug!(service = %service.name, server = %server.address, "TCP connect failed: {outcome}");
        last = io::Error::new(outcome.kind(), format!("{}: {outcome}", server.address));
    }
    Err(last)
}
