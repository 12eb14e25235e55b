//! The HTTP client that talks to one Consul agent, and its one error type.
//!
//! HTTP/1.1 (plain, or TLS through rustls: [`crate::tls`]) over the providers' pooled client: every blocking query holds one connection for
//! its whole wait, and instance lists reuse a few pooled ones, so drover keeps a small, constant
//! number of connections open to the agent whatever the size of the catalog (see the module
//! documentation of [`crate::consul`] for why that matters). A blocking request's deadline is
//! `wait + wait/16` (the most Consul adds as jitter) plus a margin; any other request gets
//! [`REQUEST_TIMEOUT`].
//!
//! Errors are classified, never matched on text: the watch decides between "keep the last good
//! routes and back off" (unreachable, timeout, 5xx) and "tell the user the token is wrong" (403)
//! with [`ConsulError::is_forbidden`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};

use crate::consul::config::{ConsulCatalogConfig, TLS_KEY};
use crate::consul::health::truncate;
use crate::error::ProviderError;
use crate::http_client::{basic_auth, encode, error_chain, Pool, Transport};

/// Deadline of a request that does not block.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Added to a blocking request's longest legitimate duration before it counts as timed out.
const BLOCKING_MARGIN: Duration = Duration::from_secs(5);
/// Largest answer read (a `health/state/any` of a very large cluster stays well below).
const MAX_BODY: usize = 64 << 20;

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `X-Consul-Index` (0 when absent).
    pub index: u64,
    /// The body.
    pub body: Bytes,
    /// `X-Consul-Results-Filtered-By-ACLs: true`: the token may not read everything listed.
    pub filtered_by_acls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Timeout,
    Forbidden,
    Server,
    Status,
    BadResponse,
}

/// Why a request to Consul failed.
#[derive(Debug, Clone)]
pub struct ConsulError {
    kind: Kind,
    status: Option<u16>,
    message: String,
}

impl ConsulError {
    /// Consul refused the request (403): the ACL token is missing, unknown or lacks permission.
    pub fn is_forbidden(&self) -> bool {
        self.kind == Kind::Forbidden
    }

    /// Consul could not be reached or did not answer in time.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::Timeout)
    }

    /// Consul answered with a 5xx (no leader, overloaded, …).
    pub fn is_server_error(&self) -> bool {
        self.kind == Kind::Server
    }

    /// The HTTP status Consul answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// An answer drover could not use (unreadable JSON, too large).
    pub fn bad_response(message: String) -> Self {
        Self {
            kind: Kind::BadResponse,
            status: None,
            message,
        }
    }
}

impl fmt::Display for ConsulError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConsulError {}

impl From<ConsulError> for ProviderError {
    fn from(e: ConsulError) -> Self {
        match e.kind {
            Kind::Forbidden => ProviderError::refused(e.message),
            Kind::Connect | Kind::Timeout | Kind::Server => ProviderError::unreachable(e.message),
            Kind::Status | Kind::BadResponse => ProviderError::bad_answer(e.message),
        }
    }
}

/// A client of one Consul agent. Cheap to clone.
#[derive(Clone)]
pub struct ConsulClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    /// `http` or `https`.
    scheme: &'static str,
    authority: String,
    token: Option<HeaderValue>,
    basic: Option<HeaderValue>,
    /// `dc=…`, `stale`, `consistent`, joined with `&` (empty when none).
    common: String,
}

impl fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulClient")
            .field("authority", &self.inner.authority)
            .finish_non_exhaustive()
    }
}

impl ConsulClient {
    /// A client for the configured endpoint; fails when its TLS files cannot be used.
    pub fn new(config: &ConsulCatalogConfig) -> Result<Self, String> {
        let authority = config.authority()?;
        let pool = Pool {
            connect_timeout: Some(config.connect_timeout.0),
            keepalive: None,
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 8,
        };
        let (tls, scheme) = if config.uses_tls() {
            let options = config.endpoint.tls.clone().unwrap_or_default();
            (Some(crate::tls::client_config(&options, TLS_KEY, "Consul")?), "https")
        } else {
            (None, "http")
        };
        let transport = Transport::new(&pool, tls);
        let token = match &config.endpoint.token {
            Some(t) if !t.0.is_empty() => {
                let mut value = HeaderValue::from_str(&t.0)
                    .map_err(|_| "providers.consulCatalog.endpoint.token: not a valid header value".to_string())?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        let basic = match &config.endpoint.http_auth {
            Some(auth) => {
                let mut value = HeaderValue::from_str(&basic_auth(&auth.username, &auth.password.0))
                    .map_err(|_| "providers.consulCatalog.endpoint.httpAuth: not a valid header value".to_string())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut common = Vec::new();
        if let Some(dc) = &config.endpoint.datacenter {
            common.push(format!("dc={}", encode(dc)));
        }
        if config.stale {
            common.push("stale".to_string());
        }
        if config.require_consistent {
            common.push("consistent".to_string());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                scheme,
                authority,
                token,
                basic,
                common: common.join("&"),
            }),
        })
    }

    /// The agent's `host:port`.
    pub fn authority(&self) -> &str {
        &self.inner.authority
    }

    /// Whether an ACL token is configured.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// `GET <path>`; with `blocking = Some((index, wait))` a blocking query on `index`.
    pub async fn get(&self, path: &str, blocking: Option<(u64, Duration)>) -> Result<Answer, ConsulError> {
        let mut query = Vec::new();
        if !self.inner.common.is_empty() {
            query.push(self.inner.common.clone());
        }
        let mut deadline = REQUEST_TIMEOUT;
        if let Some((index, wait)) = blocking {
            query.push(format!("index={index}"));
            query.push(format!("wait={}ms", wait.as_millis().max(1)));
            deadline = wait + wait / 16 + BLOCKING_MARGIN;
        }
        let (scheme, authority) = (self.inner.scheme, &self.inner.authority);
        let uri = if query.is_empty() {
            format!("{scheme}://{authority}{path}")
        } else {
            format!("{scheme}://{authority}{path}?{}", query.join("&"))
        };
        let fail = |kind: Kind, status: Option<u16>, why: String| ConsulError {
            kind,
            status,
            message: format!("GET {path} on Consul at {}: {why}", self.inner.authority),
        };
        let mut request = Request::get(uri.as_str());
        if let Some(token) = &self.inner.token {
            request = request.header("x-consul-token", token.clone());
        }
        if let Some(basic) = &self.inner.basic {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(Kind::BadResponse, None, format!("cannot build the request ({e})")))?;
        let exchange = async {
            let response = self.inner.transport.request(request).await.map_err(|e| {
                // Refused, reset or closed mid-answer: all mean "not reachable right now".
                let why = if e.is_connect() {
                    "cannot connect"
                } else {
                    "the connection failed"
                };
                fail(Kind::Connect, None, format!("{why} ({})", error_chain(&e)))
            })?;
            let status = response.status();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let index = header("x-consul-index").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
            let filtered_by_acls = header("x-consul-results-filtered-by-acls").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(Kind::Connect, Some(status.as_u16()), format!("the answer broke off ({e})")))?
                .to_bytes();
            Ok::<_, ConsulError>((status, index, filtered_by_acls, body))
        };
        let (status, index, filtered_by_acls, body) = match tokio::time::timeout(deadline, exchange).await {
            Ok(result) => result?,
            Err(_) => return Err(fail(Kind::Timeout, None, format!("no answer within {deadline:?}"))),
        };
        if status.is_success() {
            return Ok(Answer {
                index,
                body,
                filtered_by_acls,
            });
        }
        let text = truncate(String::from_utf8_lossy(&body).trim(), 200);
        Err(match status {
            StatusCode::FORBIDDEN => {
                let token = if self.has_token() {
                    "the ACL token in providers.consulCatalog.endpoint.token is not accepted: it is unknown, expired, or lacks \
                     node:read and service:read"
                } else {
                    "no ACL token is configured (providers.consulCatalog.endpoint.token) and the agent's default token may not \
                     read the catalog"
                };
                fail(
                    Kind::Forbidden,
                    Some(403),
                    format!("403 Forbidden (`{text}`): {token}; give drover a token with read access to the catalog"),
                )
            }
            s if s.is_server_error() => fail(Kind::Server, Some(s.as_u16()), format!("Consul answered {s} (`{text}`)")),
            s => fail(Kind::Status, Some(s.as_u16()), format!("Consul answered {s} (`{text}`)")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot TLS server answering every connection with `X-Consul-Index: 7`.
    fn tls_agent() -> std::net::SocketAddr {
        crate::tls::testing::server(b"HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    }

    #[tokio::test]
    async fn tls_to_consul_verifies_the_agent_with_the_configured_ca() {
        let agent = tls_agent();
        let dir = crate::tls::testing::DIR;
        let config = |tls: &str| -> ConsulCatalogConfig {
            toml::from_str(&format!(
                "[endpoint]\naddress = \"{agent}\"\nscheme = \"https\"\n[endpoint.tls]\n{tls}\n"
            ))
            .unwrap()
        };
        let good = ConsulClient::new(&config(&format!("ca = \"{dir}/ca.pem\""))).unwrap();
        assert_eq!(good.get("/v1/catalog/services", None).await.unwrap().index, 7);
        let wrong = ConsulClient::new(&config(&format!("ca = \"{dir}/other-ca.pem\""))).unwrap();
        let err = wrong.get("/v1/catalog/services", None).await.unwrap_err();
        assert!(err.is_unreachable() && err.to_string().contains("certificate"), "{err}");
        let insecure = ConsulClient::new(&config("insecureSkipVerify = true")).unwrap();
        assert_eq!(insecure.get("/v1/catalog/services", None).await.unwrap().index, 7);
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_classified() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config: ConsulCatalogConfig = toml::from_str(&format!("[endpoint]\naddress = \"127.0.0.1:{port}\"\n")).unwrap();
        let client = ConsulClient::new(&config).unwrap();
        let err = client.get("/v1/catalog/services", None).await.unwrap_err();
        assert!(err.is_unreachable() && !err.is_forbidden(), "{err}");
        assert!(err.to_string().contains("/v1/catalog/services"), "{err}");
    }
}
