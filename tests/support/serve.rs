//! The accept loop the stand-in servers (Consul, Marathon) share. Its own file because
//! `benches/consul.rs` and `benches/marathon.rs` include those servers without the rest of
//! `tests/support`.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// A connection a stand-in server speaks over: plain TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The accept loop of the stand-in servers (Consul, Marathon): accepts on `listener`, does the TLS
/// handshake when `tls` is given (a client that refuses the certificate simply goes away), and
/// serves each connection with `serve`. The connections live in the returned task, so aborting it
/// closes the listener and drops them all, as when the server process is killed.
pub fn accept_loop<F, Fut>(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, serve: F) -> JoinHandle<()>
where
    F: Fn(Box<dyn Stream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let serve = serve.clone();
                    match &tls {
                        None => { connections.spawn(async move { serve(Box::new(stream)).await }); }
                        Some(acceptor) => {
                            let handshake = acceptor.accept(stream);
                            connections.spawn(async move {
                                if let Ok(stream) = handshake.await {
                                    serve(Box::new(stream)).await;
                                }
                            });
                        }
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}
