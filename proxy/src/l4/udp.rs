//! UDP: every datagram of a UDP entrypoint goes to the service its router names. Datagrams
//! from one client address form a session: its first datagram picks a server (weighted round
//! robin), later ones go to the same server through the same socket, and that socket's answers
//! go back to that client. A session ends after the entrypoint's `udp.timeout` with no datagram
//! either way (Traefik's default: 3 s). Each router counts its sessions (open and in all), the
//! bytes each way and the sessions no server could be found for (`metrics`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::serve::L4Stats;
use crate::snapshot::Snapshot;

/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// One client's session.
#[derive(Clone)]
struct Session {
    upstream: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
    stats: Arc<L4Stats>,
}

/// Serves UDP entrypoint `index` on `socket` until `shutdown`.
pub async fn run(
    socket: UdpSocket,
    index: usize,
    shared: Arc<crate::connection::Shared>,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let sessions: Arc<Mutex<HashMap<SocketAddr, Session>>> = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors of earlier sends surface here on some systems; keep serving.
                    tracing::debug!("UDP receive failed: {e}");
                    continue;
                }
            },
        };
        let existing = sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&client).cloned();
        let session = match existing {
            Some(found) => found,
            None => match open(&shared.snapshot, index, client, &socket, &sessions, timeout).await {
                Some(opened) => opened,
                None => continue,
            },
        };
        *session.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        match session.upstream.send(&buf[..n]).await {
            Ok(sent) => {
                session.stats.bytes_in.fetch_add(sent as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%client, "UDP send to server failed: {e}"),
        }
    }
}

/// Opens a session for `client`: a server, a socket connected to it, and the task returning
/// its answers.
async fn open(
    snapshots: &ArcSwap<Snapshot>,
    index: usize,
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    sessions: &Arc<Mutex<HashMap<SocketAddr, Session>>>,
    timeout: Duration,
) -> Option<Session> {
    let service = snapshots.load().l4.udp.get(index).cloned().flatten()?;
    let stats = service.stats.clone();
    let failed = || {
        stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        None
    };
    let Some(i) = service.balancer.pick(|_| true) else {
        return failed();
    };
    let address = service.servers[i].clone();
    let target = match tokio::net::lookup_host(&*address).await.ok().and_then(|mut a| a.next()) {
        Some(target) => target,
        None => {
            tracing::warn!(service = %service.name, server = %address, "UDP server address does not resolve");
            return failed();
        }
    };
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("a valid wildcard address");
    let upstream = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot open a UDP socket: {e}");
            return failed();
        }
    };
    if let Err(e) = upstream.connect(target).await {
        tracing::warn!(server = %address, "cannot reach UDP server: {e}");
        return failed();
    }
    let session = Session {
        upstream: Arc::new(upstream),
        last: Arc::new(Mutex::new(Instant::now())),
        stats: stats.clone(),
    };
    sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(client, session.clone());
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.open.fetch_add(1, Ordering::Relaxed);
    let (answers, socket, sessions, session_last) = (session.upstream.clone(), socket.clone(), sessions.clone(), session.last.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let idle_until = *session_last.lock().unwrap_or_else(|p| p.into_inner()) + timeout;
            match tokio::time::timeout_at(idle_until, answers.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    *session_last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    match socket.send_to(&buf[..n], client).await {
                        Ok(sent) => {
                            stats.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!(%client, "UDP send to client failed: {e}"),
                    }
                }
                // A refused datagram (ICMP port unreachable) shows as an error: the session
                // goes on until it times out, as the server may come back.
                Ok(Err(_)) => {}
                Err(_) => {
                    if session_last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= timeout {
                        sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
                        stats.open.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    });
    Some(session)
}
