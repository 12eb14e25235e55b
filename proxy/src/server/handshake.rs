//! What a new client connection is: plain HTTP, or a TLS handshake to terminate.
//!
//! Only entrypoints whose snapshot has TLS routers look (see [`crate::tls`]); others hand the
//! socket to hyper untouched. Looking is one `peek` of the first byte: `0x16` opens a TLS
//! handshake record. The ClientHello is then read before any options are chosen, so the
//! options (versions, suites, client certificates, ALPN) are those of the SNI's host. The whole
//! handshake shares one deadline, the entrypoint's `headerReadTimeout`: a client that opens a
//! connection and stalls mid-handshake holds it no longer than one that stalls mid-head.

use arc_swap::ArcSwap;
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::io::BatchedStream;
use crate::snapshot::Snapshot;
use crate::tls::TlsSession;

/// The first byte of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;

/// A new connection, sorted.
pub enum Accepted {
    /// Plain HTTP (or whatever the client speaks that is not TLS).
    Plain(TcpStream),
    /// A completed TLS handshake.
    Tls(Box<TlsStream<BatchedStream>>, TlsSession),
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake did not finish in time")
}

/// Sorts `stream`, accepted by entrypoint `index`, terminating TLS when it opens with a
/// handshake and the snapshot has TLS routers there. `Ok(None)`: the client left first.
pub async fn accept(stream: TcpStream, snapshots: &ArcSwap<Snapshot>, index: usize, deadline: Duration) -> io::Result<Option<Accepted>> {
    // A plain entrypoint pays one guarded load; only a TLS one keeps the snapshot (its options
    // and certificates) for the handshake.
    if !snapshots.load().tls.terminates(index) {
        return Ok(Some(Accepted::Plain(stream)));
    }
    // Boxed: the handshake's state (rustls's connection among it) would otherwise stay in the
    // task of every connection for its whole life, idle or not, TLS or plain.
    Box::pin(accept_tls(stream, snapshots, deadline)).await
}

/// [`accept`] on an entrypoint that terminates TLS.
async fn accept_tls(stream: TcpStream, snapshots: &ArcSwap<Snapshot>, deadline: Duration) -> io::Result<Option<Accepted>> {
    let snapshot = snapshots.load_full();
    let deadline = tokio::time::Instant::now() + deadline;
    let mut first = [0u8; 1];
    match timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
    }
    if first[0] != HANDSHAKE {
        return Ok(Some(Accepted::Plain(stream)));
    }
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), BatchedStream::new(stream));
    let start = timeout_at(deadline, acceptor).await.map_err(|_| timed_out())??;
    let hello = start.client_hello();
    let sni: Option<Box<str>> = hello.server_name().map(|s| s.to_ascii_lowercase().into_boxed_str());
    if let Some(challenges) = &snapshot.tls.acme {
        if hello
            .alpn()
            .is_some_and(|mut alpn| alpn.any(|p| p == crate::acme::challenge::ACME_TLS))
        {
            // A CA validating TLS-ALPN-01 (RFC 8737): the challenge certificate, then close.
            let Some(config) = sni.as_deref().and_then(|name| challenges.tls_alpn01(name)) else {
                return Err(io::Error::other("an acme-tls/1 handshake for a name with no challenge in flight"));
            };
            answer_acme(start, config, deadline).await?;
            return Ok(None);
        }
    }
    let Some(options) = snapshot.tls.options_for(sni.as_deref()) else {
        return Err(io::Error::other("TLS is not configured yet"));
    };
    let session = TlsSession {
        options: options.name.clone(),
        sni,
    };
    let config = options.config.clone();
    let tls = timeout_at(deadline, start.into_stream(config)).await.map_err(|_| timed_out())??;
    Ok(Some(Accepted::Tls(Box::new(tls), session)))
}

/// Completes a CA's TLS-ALPN-01 validation handshake with the challenge `config`, then closes.
async fn answer_acme(
    start: tokio_rustls::StartHandshake<BatchedStream>,
    config: std::sync::Arc<rustls::ServerConfig>,
    deadline: tokio::time::Instant,
) -> io::Result<()> {
    let mut tls = timeout_at(deadline, start.into_stream(config)).await.map_err(|_| timed_out())??;
    let _ = timeout_at(deadline, tokio::io::AsyncWriteExt::shutdown(&mut tls)).await;
    Ok(())
}

/// Answers a TLS-ALPN-01 validation that arrived on an entrypoint's TCP side (`stream` was only
/// peeked): the ClientHello is read again and the challenge certificate presented.
pub async fn answer_acme_tls(
    stream: TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
    deadline: tokio::time::Instant,
) -> io::Result<()> {
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), BatchedStream::new(stream));
    let start = timeout_at(deadline, acceptor).await.map_err(|_| timed_out())??;
    answer_acme(start, config, deadline).await
}
