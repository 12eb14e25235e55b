//! UDP: every datagram of a UDP entrypoint goes to the service its router names. Datagrams
//! from one client address form a session: its first datagram picks a server (weighted round
//! robin), later ones go to the same server through the same socket, and that socket's answers
//! go back to that client. A session ends after the entrypoint's `udp.timeout` with no datagram
//! either way (Traefik's default: 3 s).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::snapshot::Snapshot;

/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// One client's session.
struct Session {
    upstream: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
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
        let existing = sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .map(|s| (s.upstream.clone(), s.last.clone()));
        let (upstream, last) = match existing {
            Some(found) => found,
            None => match open(&shared.snapshot, index, client, &socket, &sessions, timeout).await {
                Some(opened) => opened,
                None => continue,
            },
        };
        *last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::debug!(%client, "UDP send to server failed: {e}");
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
) -> Option<(Arc<UdpSocket>, Arc<Mutex<Instant>>)> {
    let service = snapshots.load().l4.udp.get(index).cloned().flatten()?;
    let i = service.balancer.pick(|_| true)?;
    let address = service.servers[i].clone();
    let target = match tokio::net::lookup_host(&*address).await.ok().and_then(|mut a| a.next()) {
        Some(target) => target,
        None => {
            tracing::warn!(service = %service.name, server = %address, "UDP server address does not resolve");
            return None;
        }
    };
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("a valid wildcard address");
    let upstream = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot open a UDP socket: {e}");
            return None;
        }
    };
    if let Err(e) = upstream.connect(target).await {
        tracing::warn!(server = %address, "cannot reach UDP server: {e}");
        return None;
    }
    let upstream = Arc::new(upstream);
    let last = Arc::new(Mutex::new(Instant::now()));
    sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(
        client,
        Session {
            upstream: upstream.clone(),
            last: last.clone(),
        },
    );
    let (answers, socket, sessions, session_last) = (upstream.clone(), socket.clone(), sessions.clone(), last.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let idle_until = *session_last.lock().unwrap_or_else(|p| p.into_inner()) + timeout;
            match tokio::time::timeout_at(idle_until, answers.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    *session_last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    if let Err(e) = socket.send_to(&buf[..n], client).await {
                        tracing::debug!(%client, "UDP send to client failed: {e}");
                    }
                }
                // A refused datagram (ICMP port unreachable) shows as an error: the session
                // goes on until it times out, as the server may come back.
                Ok(Err(_)) => {}
                Err(_) => {
                    if session_last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= timeout {
                        sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
                        return;
                    }
                }
            }
        }
    });
    Some((upstream, last))
}
