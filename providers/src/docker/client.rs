//! The Docker Engine API client: one HTTP/1.1 transport (unix socket, or TCP and TLS through the
//! providers' one HTTP client) shared by bollard and by the few calls drover reads with its own
//! types.
//!
//! Why our own transport under bollard:
//! * **Read-only by construction.** Every request, bollard's included, passes through
//!   [`Transport::send`], which refuses anything but `GET` and `HEAD`. Mounting the Docker socket
//!   hands out root on the host; drover at least cannot be tricked (by a bug or a crafted label)
//!   into creating, exec-ing into or deleting anything.
//! * **Versioned paths.** bollard 0.21.1 drops the `/v1.NN` prefix (deprecated, and it makes the
//!   daemon answer at *its* version). The transport adds the negotiated prefix itself.
//! * **One socket for everything.** bollard has no type for Swarm task network attachments and
//!   its generated enums reject values a newer daemon may send, so the events stream and the
//!   Swarm endpoints are read with drover's own lenient types over the same transport.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::config::{Endpoint, TlsConfig};
use crate::error::ProviderError;
use crate::http_client::{error_chain, Pool};

/// Lowest API version drover reads (Engine 1.12; health checks and the fields used exist since).
pub const MIN_API_MINOR: u32 = 24;
/// Highest API version drover asks for (what bollard's types were generated from).
pub const MAX_API_MINOR: u32 = 53;

/// An error talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Could not connect or the connection broke.
    #[error("cannot reach the Docker daemon at {endpoint}: {message}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The daemon answered with an error status.
    #[error("the Docker daemon answered {status} to GET {path}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The request path.
        path: String,
        /// The daemon's message.
        message: String,
    },
    /// The answer could not be read.
    #[error("cannot read the Docker daemon's answer to GET {path}: {message}")]
    Decode {
        /// The request path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// Something else (refused method, version too old, bad TLS files).
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    /// The daemon said the object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, .. })
    }

    /// The connection failed (as opposed to an answer drover did not like).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable { .. })
    }

    fn from_bollard(e: bollard::errors::Error, endpoint: &str, path: &str) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError { status_code, message } => ApiError::Status {
                status: status_code,
                path: path.to_string(),
                message,
            },
            B::JsonDataError { message, .. } => ApiError::Decode {
                path: path.to_string(),
                message,
            },
            B::JsonSerdeError { err } => ApiError::Decode {
                path: path.to_string(),
                message: err.to_string(),
            },
            B::IOError { err } => ApiError::Unreachable {
                endpoint: endpoint.to_string(),
                message: err.to_string(),
            },
            B::RequestTimeoutError => ApiError::Unreachable {
                endpoint: endpoint.to_string(),
                message: "timed out waiting for the answer".into(),
            },
            other => ApiError::Other(other.to_string()),
        }
    }
}

impl From<ApiError> for ProviderError {
    fn from(e: ApiError) -> Self {
        match &e {
            ApiError::Unreachable { .. } => ProviderError::unreachable(e),
            ApiError::Status { status: 401 | 403, .. } => ProviderError::refused(e),
            ApiError::Status { status, .. } if *status >= 500 => ProviderError::unreachable(e),
            ApiError::Status { .. } | ApiError::Decode { .. } | ApiError::Other(_) => ProviderError::bad_answer(e),
        }
    }
}

enum Inner {
    Unix(HttpClient<UnixConnector, Empty<Bytes>>),
    Tcp(crate::http_client::Transport),
}

/// How connections to the daemon are pooled (no connect deadline of its own: every call has
/// the provider's `httpClientTimeout`).
const POOL: Pool = Pool {
    connect_timeout: None,
    keepalive: None,
    idle_timeout: Duration::from_secs(30),
    max_idle_per_host: usize::MAX,
};

/// The HTTP transport under every API call: GET/HEAD only, versioned paths.
pub struct Transport {
    inner: Inner,
    base: String,
    endpoint: String,
    /// Negotiated minor version (`1.<minor>`); 0 until negotiated (unversioned paths).
    minor: AtomicU32,
}

impl Transport {
    fn new(endpoint: &Endpoint) -> Result<Self, ApiError> {
        let (inner, base) = match endpoint {
            Endpoint::Unix(path) => {
                let mut builder = HttpClient::builder(TokioExecutor::new());
                builder.pool_idle_timeout(POOL.idle_timeout);
                let connector = UnixConnector {
                    path: Arc::new(path.clone()),
                };
                // The host is a dummy (the socket is the address), as the Go client does.
                (Inner::Unix(builder.build(connector)), "http://api.moby.localhost".to_string())
            }
            Endpoint::Tcp(authority) => (
                Inner::Tcp(crate::http_client::Transport::new(&POOL, None)),
                format!("http://{authority}"),
            ),
            Endpoint::Tls { authority, tls } => (
                Inner::Tcp(crate::http_client::Transport::new(&POOL, Some(tls_config(tls)?))),
                format!("https://{authority}"),
            ),
        };
        Ok(Self {
            inner,
            base,
            endpoint: endpoint.to_string(),
            minor: AtomicU32::new(0),
        })
    }

    /// Sends one request. Only `GET` and `HEAD` leave this function.
    pub fn send(&self, method: &Method, path_and_query: &str) -> BoxFuture<'static, Result<Response<Incoming>, ApiError>> {
        if method != Method::GET && method != Method::HEAD {
            let refused = ApiError::Other(format!("drover only reads the Docker API: refused {method} {path_and_query}"));
            tracing::error!("{refused}");
            return Box::pin(async move { Err(refused) });
        }
        let minor = self.minor.load(Ordering::Relaxed);
        let path = if minor > 0 && !path_and_query.starts_with("/v1.") && path_and_query != "/_ping" {
            format!("/v1.{minor}{path_and_query}")
        } else {
            path_and_query.to_string()
        };
        let uri: Uri = match format!("{}{path}", self.base).parse() {
            Ok(u) => u,
            Err(e) => {
                let e = ApiError::Other(format!("bad request path {path}: {e}"));
                return Box::pin(async move { Err(e) });
            }
        };
        let request = match Request::builder().method(method.clone()).uri(uri).body(Empty::new()) {
            Ok(r) => r,
            Err(e) => {
                let e = ApiError::Other(format!("bad request {path}: {e}"));
                return Box::pin(async move { Err(e) });
            }
        };
        let endpoint = self.endpoint.clone();
        let unreachable = move |e: hyper_util::client::legacy::Error| ApiError::Unreachable {
            endpoint,
            message: error_chain(&e),
        };
        match &self.inner {
            Inner::Unix(c) => {
                let f = c.request(request);
                Box::pin(async move { f.await.map_err(unreachable) })
            }
            Inner::Tcp(t) => {
                let f = t.request(request);
                Box::pin(async move { f.await.map_err(unreachable) })
            }
        }
    }
}

fn tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, ApiError> {
    crate::tls::client_config(tls, "tls", "the Docker daemon").map_err(ApiError::Other)
}

/// Connects to a unix socket whatever the URI says.
#[derive(Clone)]
struct UnixConnector {
    path: Arc<std::path::PathBuf>,
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&*path)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// What `/_ping` told about the daemon.
#[derive(Clone, Debug)]
pub struct Ping {
    /// Negotiated API version, `1.<minor>`.
    pub minor: u32,
    /// The daemon's clock (the `Date` header), used to replay events missed around a reconnect.
    pub daemon_time: Option<SystemTime>,
    /// The `Swarm` header (`inactive`, `active/manager`, …), if sent.
    pub swarm: Option<String>,
}

/// A connected API client: bollard for containers, our own calls for the rest.
#[derive(Clone)]
pub struct Client {
    transport: Arc<Transport>,
    docker: Docker,
    timeout: Duration,
}

impl Client {
    /// A client for `endpoint`; nothing is sent until the first call.
    pub fn new(endpoint: &Endpoint, timeout: Duration) -> Result<Self, ApiError> {
        let transport = Arc::new(Transport::new(endpoint)?);
        let for_bollard = transport.clone();
        let endpoint_text = transport.endpoint.clone();
        let docker = Docker::connect_with_custom_transport(
            move |req: bollard::BollardRequest| {
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
                let endpoint = endpoint_text.clone();
                let sent = for_bollard.send(req.method(), &path);
                async move {
                    sent.await.map_err(|e| match e {
                        ApiError::Status { message, status, .. } => bollard::errors::Error::DockerResponseServerError {
                            status_code: status,
                            message,
                        },
                        other => bollard::errors::Error::IOError {
                            err: std::io::Error::other(format!("{endpoint}: {other}")),
                        },
                    })
                }
            },
            Some("http://api.moby.localhost"),
            timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| ApiError::Other(format!("docker client: {e}")))?;
        Ok(Self {
            transport,
            docker,
            timeout,
        })
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        &self.transport.endpoint
    }

    /// bollard, over the read-only transport.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// `GET /_ping`: checks the daemon and negotiates the API version (`min(ours, the daemon's)`).
    pub async fn ping(&self) -> Result<Ping, ApiError> {
        let response = tokio::time::timeout(self.timeout, self.transport.send(&Method::GET, "/_ping"))
            .await
            .map_err(|_| self.timed_out("/_ping"))??;
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let daemon_version = header("api-version");
        let daemon_time = header("date").and_then(|d| httpdate::parse_http_date(&d).ok());
        let swarm = header("swarm");
        drop(response);
        if !status.is_success() {
            return Err(ApiError::Status {
                status: status.as_u16(),
                path: "/_ping".into(),
                message: "the daemon is not ready".into(),
            });
        }
        let minor = match daemon_version
            .as_deref()
            .and_then(|v| v.strip_prefix("1."))
            .and_then(|m| m.parse::<u32>().ok())
        {
            Some(daemon) if daemon < MIN_API_MINOR => {
                return Err(ApiError::Other(format!(
                    "the Docker daemon at {} speaks API 1.{daemon}; drover needs 1.{MIN_API_MINOR} or later",
                    self.endpoint()
                )))
            }
            Some(daemon) => daemon.min(MAX_API_MINOR),
            // An old daemon or a proxy that strips the header: ask for the lowest we can read.
            None => MIN_API_MINOR,
        };
        self.transport.minor.store(minor, Ordering::Relaxed);
        Ok(Ping { minor, daemon_time, swarm })
    }

    fn timed_out(&self, path: &str) -> ApiError {
        ApiError::Unreachable {
            endpoint: self.endpoint().to_string(),
            message: format!("no answer to GET {path} within {:?}", self.timeout),
        }
    }

    /// `GET path` read into our own type (unknown fields ignored).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let response = tokio::time::timeout(self.timeout, self.transport.send(&Method::GET, path))
            .await
            .map_err(|_| self.timed_out(path))??;
        let status = response.status();
        let body = tokio::time::timeout(self.timeout, response.into_body().collect())
            .await
            .map_err(|_| self.timed_out(path))?
            .map_err(|e| ApiError::Unreachable {
                endpoint: self.endpoint().to_string(),
                message: error_chain(&e),
            })?
            .to_bytes();
        if !status.is_success() {
            #[derive(Deserialize)]
            struct Message {
                message: String,
            }
            let message = serde_json::from_slice::<Message>(&body)
                .map(|m| m.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(ApiError::Status {
                status: status.as_u16(),
                path: path.to_string(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// Opens `GET path` as a stream of newline-delimited JSON values (the events stream).
    /// Returns once the daemon has answered with its headers.
    pub async fn stream(&self, path: &str) -> Result<Incoming, ApiError> {
        let response = tokio::time::timeout(self.timeout, self.transport.send(&Method::GET, path))
            .await
            .map_err(|_| self.timed_out(path))??;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(ApiError::Status {
                status: status.as_u16(),
                path: path.to_string(),
                message: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(response.into_body())
    }

    /// Maps a bollard error for `path`.
    pub fn bollard_error(&self, e: bollard::errors::Error, path: &str) -> ApiError {
        ApiError::from_bollard(e, self.endpoint(), path)
    }
}

/// Splits a byte stream into lines (one JSON value each), tolerating RFC 7464 record separators.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no line end: a long line arriving in small pieces is
    /// scanned once, not once per piece.
    scanned: usize,
}

/// The longest line accepted (an event carries every label of its container).
const MAX_LINE: usize = 4 << 20;

impl LineSplitter {
    /// Feeds bytes; returns the complete lines, or an error if a line grows past 4 MiB.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.buf[self.scanned..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|at| self.scanned + at)
        {
            self.scanned = 0;
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            let line: Vec<u8> = line.into_iter().filter(|b| *b != 0x1e && *b != b'\r').collect();
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_LINE {
            return Err(format!("an event is longer than {MAX_LINE} bytes"));
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_pieces_and_capped() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"\x1e{\"a\"").unwrap().is_empty());
        assert!(s.push(b":1").unwrap().is_empty());
        assert_eq!(
            s.push(b"}\r\n\n{\"b\":2}\n{").unwrap(),
            [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(s.push(b"}\n").unwrap(), [b"{}".to_vec()]);
        let piece = vec![b'x'; 64 * 1024];
        let mut endless = LineSplitter::default();
        let failed = (0..100).find_map(|_| endless.push(&piece).err());
        assert!(failed.is_some_and(|e| e.contains("longer than")), "a line past 4 MiB is refused");
    }

    #[tokio::test]
    async fn a_tls_daemon_is_verified_with_the_configured_ca() {
        let daemon = crate::tls::testing::server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        let dir = crate::tls::testing::DIR;
        let endpoint = |ca: &str| Endpoint::Tls {
            authority: daemon.to_string(),
            tls: TlsConfig {
                ca: Some(format!("{dir}/{ca}")),
                ..TlsConfig::default()
            },
        };
        let good = Transport::new(&endpoint("ca.pem")).unwrap();
        assert_eq!(good.send(&Method::GET, "/_ping").await.unwrap().status(), 200);
        let wrong = Transport::new(&endpoint("other-ca.pem")).unwrap();
        let err = wrong.send(&Method::GET, "/_ping").await.unwrap_err().to_string();
        assert!(err.contains("invalid peer certificate"), "{err}");
        let missing = Transport::new(&endpoint("nonexistent.pem"))
            .err()
            .expect("a missing CA file is an error")
            .to_string();
        assert!(
            missing.contains("tls.ca: cannot read") && missing.contains("nonexistent.pem"),
            "{missing}"
        );
    }

    #[test]
    fn lines_are_split_across_chunks_and_separators_dropped() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":1}\n{\"b\"").unwrap().len() == 1);
        let lines = s.push(b":2}\n\x1e{\"c\":3}\n\n").unwrap();
        assert_eq!(lines, vec![b"{\"b\":2}".to_vec(), b"{\"c\":3}".to_vec()]);
    }

    #[tokio::test]
    async fn writes_are_refused_before_anything_is_sent() {
        let t = Transport::new(&Endpoint::Unix("/nonexistent/docker.sock".into())).unwrap();
        let err = t.send(&Method::POST, "/containers/x/kill").await.unwrap_err();
        assert!(err.to_string().contains("refused POST"), "{err}");
        let err = t.send(&Method::GET, "/_ping").await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
    }
}
