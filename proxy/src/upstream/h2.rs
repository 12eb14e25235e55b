//! HTTP/2 to servers: TLS servers that chose `h2` by ALPN, and `h2c://` servers (cleartext,
//! prior knowledge: gRPC).
//!
//! An HTTP/2 connection carries many requests at once, so unlike an HTTP/1.1 connection it is
//! not lent to one request: each lane (worker) keeps one connection, whose I/O runs in a task of
//! its own on that worker, and every request of the lane opens a stream on it. A connection that
//! closed (the server's GOAWAY, a reset, idle longer than `idleConnTimeout`) is replaced by the
//! next request that finds it so.
//!
//! Request and response trailers are HTTP/2 frames like any other: hyper sends the client's
//! request trailers on and hands the server's (`grpc-status`) to the response body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Uri, Version};
use hyper::client::conn::http2;
use hyper::rt::{Read, Write};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::{RequestBody, Transport};

/// A handle on an HTTP/2 connection: what requests are sent on, and why the connection ended
/// if TLS ended it (a request whose connection closed under it is only told "closed").
#[derive(Clone)]
pub(super) struct Sender {
    pub(super) requests: http2::SendRequest<RequestBody>,
    pub(super) tls_failure: Arc<OnceLock<&'static str>>,
    /// Set once a response came on the connection.
    pub(super) answered: Arc<AtomicBool>,
}

/// Each lane's HTTP/2 connection, if it has one.
pub(super) struct Multiplexed {
    lanes: Box<[Mutex<Option<Shared>>]>,
}

struct Shared {
    sender: Sender,
    last_used: Instant,
}

impl Multiplexed {
    /// No connection yet, `lanes` lanes.
    pub(super) fn new(lanes: usize) -> Self {
        Self {
            lanes: (0..lanes).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// A handle on `lane`'s connection if it is open and was used within `idle` of `now`.
    pub(super) fn ready(&self, lane: usize, now: Instant, idle: Duration) -> Option<Sender> {
        let mut slot = self.lanes[lane].lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_mut() {
            Some(shared) if !shared.sender.requests.is_closed() && now.saturating_duration_since(shared.last_used) < idle => {
                shared.last_used = now;
                Some(shared.sender.clone())
            }
            Some(_) => {
                // Dropping the last handle lets an idle connection close.
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// Keeps `sender` as `lane`'s connection.
    pub(super) fn keep(&self, lane: usize, sender: Sender) {
        let mut slot = self.lanes[lane].lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Shared {
            sender,
            last_used: Instant::now(),
        });
    }

    /// Forgets `lane`'s connection (it failed a request before sending it).
    pub(super) fn forget(&self, lane: usize) {
        *self.lanes[lane].lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Open connections (for tests and the API).
    pub(super) fn open(&self) -> usize {
        self.lanes
            .iter()
            .filter(|slot| {
                slot.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_some_and(|s| !s.sender.requests.is_closed())
            })
            .count()
    }
}

/// Starts HTTP/2 on `io` and runs the connection in a task of the calling worker;
/// `client_cert_asked`: its TLS server asked for a client certificate.
pub(super) async fn handshake<T>(io: T, transport: &Transport, client_cert_asked: bool) -> Result<Sender, hyper::Error>
where
    T: Read + Write + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some(interval) = transport.http2.read_idle_timeout {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(transport.http2.ping_timeout)
            .keep_alive_while_idle(true);
    }
    let (requests, conn) = builder.handshake(io).await?;
    let tls_failure = Arc::new(OnceLock::new());
    let answered = Arc::new(AtomicBool::new(false));
    let (failure, done) = (tls_failure.clone(), answered.clone());
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream HTTP/2 connection ended: {e}");
            let reason = match super::tls::failure_in(&e) {
                Some(reason) => Some(reason),
                None if client_cert_asked && !done.load(Ordering::Relaxed) => Some(super::tls::CLIENT_CERT_REFUSED),
                None => None,
            };
            if let Some(reason) = reason {
                let _ = failure.set(reason);
            }
        }
    });
    Ok(Sender {
        requests,
        tls_failure,
        answered,
    })
}

/// Makes `req` (as forwarded to an HTTP/1.1 server: origin-form, a `Host` header) an HTTP/2
/// request to a `scheme` server: the authority moves from `Host` to `:authority`.
pub(super) fn prepare(req: &mut Request<RequestBody>, scheme: Scheme) {
    *req.version_mut() = Version::HTTP_2;
    let authority = req
        .headers_mut()
        .remove(header::HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok());
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(scheme);
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        // Without an authority: keep the path alone (h2 then sends no `:authority`).
        Err(_) => *req.uri_mut() = Uri::from_static("/"),
    }
}

/// Undoes [`prepare`] on a request that came back unsent, so it can go to an HTTP/1.1 server.
pub(super) fn unprepare(req: &mut Request<RequestBody>) {
    *req.version_mut() = Version::HTTP_11;
    let uri = std::mem::take(req.uri_mut());
    if let Some(authority) = uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    *req.uri_mut() = match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_becomes_the_authority_and_back() {
        let mut req = Request::builder()
            .uri("/svc.Greeter/Hello?x=1")
            .header(header::HOST, "api.example:50051")
            .body(RequestBody::Empty)
            .unwrap();
        prepare(&mut req, Scheme::HTTP);
        assert_eq!(req.uri().to_string(), "http://api.example:50051/svc.Greeter/Hello?x=1");
        assert!(req.headers().get(header::HOST).is_none());
        assert_eq!(req.version(), Version::HTTP_2);
        unprepare(&mut req);
        assert_eq!(req.uri().to_string(), "/svc.Greeter/Hello?x=1");
        assert_eq!(req.headers()[header::HOST], "api.example:50051");
    }
}
