//! The first step of every connection on an entrypoint with TCP routers or a PROXY protocol
//! setting: read the PROXY header (from trusted peers only), then hand the connection to a TCP
//! router, or give it back for the HTTP side. See the module notes of [`super`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::serve::{self, Client, Job};
use super::sniff::{self, Opening};
use super::{ConnectionView, TcpRoute};
use crate::connection::{Shared, TrustedProxies};
use drover_providers::tcp::TcpMode;

/// What an entrypoint's connections take from it at this step.
#[derive(Debug, Clone, Default)]
pub struct L4Rules {
    /// `proxyProtocol`: peers whose PROXY header is read; `None`: the entrypoint takes none.
    pub proxy_protocol: Option<Arc<TrustedProxies>>,
    /// Idle timeout of relayed TCP connections.
    pub tcp_idle: Option<Duration>,
    /// Relay plain sockets with `splice(2)` (else through a buffer).
    pub splice: bool,
}

/// What the step decided.
pub enum Dispatched {
    /// Not for a TCP router: serve it as HTTP; `client` is the client's address.
    Http(TcpStream, SocketAddr),
    /// Served (or refused) here.
    Done,
}

/// Sorts one accepted connection (see the module notes).
pub async fn dispatch(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Arc<Shared>,
    index: usize,
    rules: &L4Rules,
    deadline: Duration,
) -> Dispatched {
    let deadline = Instant::now() + deadline;
    let mut client = peer;
    if let Some(trusted) = &rules.proxy_protocol {
        if trusted.trusts(peer.ip()) {
            match super::proxy_protocol::read(&mut stream, deadline).await {
                Ok(received) => client = received.client.unwrap_or(peer),
                Err(e) => {
                    tracing::warn!(%peer, "connection refused: {e}");
                    return Dispatched::Done;
                }
            }
        }
    }
    let snapshot = shared.snapshot.load();
    let Some(table) = snapshot.l4.table(index) else {
        drop(snapshot);
        if rules.proxy_protocol.as_ref().is_some_and(|t| !t.trusts(peer.ip())) && untrusted_header(&stream, deadline).await {
            tracing::warn!(%peer, "connection refused: a PROXY protocol header from a peer not in proxyProtocol.trustedIPs");
            return Dispatched::Done;
        }
        return Dispatched::Http(stream, client);
    };
    let job = |route: &Arc<TcpRoute>| Job {
        route: route.clone(),
        client,
        local,
        idle: rules.tcp_idle,
        splice: rules.splice,
    };
    if table.tls.is_empty() {
        // Only plain routers: hand over at once (the server may speak first).
        return match table.plain_for(client.ip()) {
            Some(route) => {
                let job = job(route);
                drop(snapshot);
                // An untrusted peer's PROXY header is refused, not relayed as data. A header is
                // sent right after connecting, so a short look finds it; a server-first
                // protocol waits that long once, and only from peers not in trustedIPs.
                let untrusted = rules.proxy_protocol.as_ref().is_some_and(|t| !t.trusts(peer.ip()));
                if untrusted && untrusted_header(&stream, Instant::now() + UNTRUSTED_LOOK).await {
                    tracing::warn!(%peer, "connection refused: a PROXY protocol header from a peer not in proxyProtocol.trustedIPs");
                    return Dispatched::Done;
                }
                serve::serve(Client::Plain(stream), job).await;
                Dispatched::Done
            }
            None => Dispatched::Http(stream, client),
        };
    }
    let opening = match sniff::opening(&stream, deadline).await {
        Ok(opening) => opening,
        Err(e) => {
            tracing::debug!(%peer, "connection failed before routing: {e}");
            return Dispatched::Done;
        }
    };
    if rules.proxy_protocol.is_some() && opening == Opening::Other {
        let mut first = [0u8; 16];
        if let Ok(n) = stream.peek(&mut first).await {
            if super::proxy_protocol::looks_like_header(&first[..n]) && n >= 6 {
                tracing::warn!(%peer, "connection refused: a PROXY protocol header from a peer not in proxyProtocol.trustedIPs");
                return Dispatched::Done;
            }
        }
    }
    match opening {
        Opening::Tls(Some(hello)) => {
            // A CA validating TLS-ALPN-01 for a name a TCP router serves: answered here, never
            // relayed (no router may claim `acme-tls/1`).
            let acme = snapshot
                .tls
                .acme
                .as_ref()
                .filter(|_| hello.alpn.iter().any(|p| p == crate::acme::challenge::ACME_TLS));
            if let Some(config) = acme.and_then(|c| hello.sni.as_deref().and_then(|sni| c.tls_alpn01(sni))) {
                drop(snapshot);
                if let Err(e) = crate::server::handshake::answer_acme_tls(stream, config, deadline).await {
                    tracing::debug!(%peer, "TLS-ALPN-01 validation handshake failed: {e}");
                }
                return Dispatched::Done;
            }
            let view = ConnectionView {
                sni: hello.sni.as_deref(),
                alpn: &hello.alpn,
                client: Some(client.ip()),
            };
            let Some(route) = table.tls_for(&view).cloned() else {
                return Dispatched::Http(stream, client);
            };
            drop(snapshot);
            let job = job(&route);
            match route.mode {
                TcpMode::Terminate => {
                    if let Some(tls) = terminate(stream, &route, deadline, peer).await {
                        serve::serve(Client::Tls(Box::new(tls)), job).await;
                    }
                }
                _ => serve::serve(Client::Plain(stream), job).await,
            }
            Dispatched::Done
        }
        Opening::PostgresTls => {
            // STARTTLS: answer `S`, then terminate the TLS that follows and route by its SNI.
            let mut request = [0u8; sniff::PG_SSL_REQUEST.len()];
            if stream.read_exact(&mut request).await.is_err() || stream.write_all(b"S").await.is_err() {
                return Dispatched::Done;
            }
            let hello = match sniff::opening(&stream, deadline).await {
                Ok(Opening::Tls(Some(hello))) => hello,
                _ => {
                    tracing::debug!(%peer, "Postgres client asked for TLS, then sent no ClientHello");
                    return Dispatched::Done;
                }
            };
            let view = ConnectionView {
                sni: hello.sni.as_deref(),
                alpn: &hello.alpn,
                client: Some(client.ip()),
            };
            let route = table
                .tls
                .iter()
                .find(|r| r.mode == TcpMode::Terminate && r.rule.matches(&view))
                .cloned();
            drop(snapshot);
            match route {
                Some(route) => {
                    let job = job(&route);
                    if let Some(tls) = terminate(stream, &route, deadline, peer).await {
                        serve::serve(Client::Tls(Box::new(tls)), job).await;
                    }
                }
                None => tracing::debug!(%peer, sni = ?hello.sni, "no TCP router terminates TLS for this Postgres client"),
            }
            Dispatched::Done
        }
        Opening::Other | Opening::Silent => match table.plain_for(client.ip()).cloned() {
            Some(route) => {
                drop(snapshot);
                serve::serve(Client::Plain(stream), job(&route)).await;
                Dispatched::Done
            }
            None if opening == Opening::Silent => {
                tracing::debug!(%peer, "connection closed: nothing arrived before the deadline");
                Dispatched::Done
            }
            None => Dispatched::Http(stream, client),
        },
        Opening::Tls(None) => Dispatched::Http(stream, client),
        Opening::Closed => Dispatched::Done,
    }
}

/// Terminates TLS for a `Terminate` route, within the deadline.
async fn terminate(
    stream: TcpStream,
    route: &TcpRoute,
    deadline: Instant,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let config = route.tls.clone()?;
    match tokio::time::timeout_at(deadline, tokio_rustls::TlsAcceptor::from(config).accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, router = %route.router, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, router = %route.router, "TLS handshake did not finish in time");
            None
        }
    }
}

/// Whether a connection from a peer that may not send one opens with a PROXY header.
/// How long a connection from a peer outside `proxyProtocol.trustedIPs` is looked at for a
/// PROXY header before a plain TCP router relays it.
const UNTRUSTED_LOOK: Duration = Duration::from_millis(50);

/// Whether the first bytes of `stream` (waited for until `deadline`) are a PROXY header.
async fn untrusted_header(stream: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; 16];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n >= 6 => super::proxy_protocol::looks_like_header(&first[..n]),
        _ => false,
    }
}
