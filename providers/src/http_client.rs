//! The one HTTP/1.1 client of the providers that speak HTTP to their source: Consul, Marathon,
//! and Docker over TCP or TLS.
//!
//! Each of them wants the same thing: hyper-util's pooled client over a TCP connector, with TLS
//! through rustls ([`crate::tls`]) when it is configured, and only the pool's sizes and timeouts
//! told apart ([`Pool`]). Around it sit the small pieces every one of them needed and each had
//! written again: a basic-auth header, percent-encoding a path segment or query value, and the
//! cause chain of a client error (hyper-util's top level says only "client error").

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// How a provider's client connects and pools.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pool {
    /// Deadline of a TCP connect (`None`: the system's).
    pub connect_timeout: Option<Duration>,
    /// TCP keep-alive on pooled connections (`None`: off).
    pub keepalive: Option<Duration>,
    /// How long an idle connection stays in the pool.
    pub idle_timeout: Duration,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
}

/// A provider's HTTP/1.1 client: plain, or with TLS for `https://` URLs (`http://` URLs still
/// work through it).
pub(crate) enum Transport {
    Plain(Client<HttpConnector, Empty<Bytes>>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>),
}

impl Transport {
    /// A client pooling as `pool` says, speaking TLS with `tls` when given.
    pub(crate) fn new(pool: &Pool, tls: Option<rustls::ClientConfig>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(pool.connect_timeout);
        connector.set_keepalive(pool.keepalive);
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(pool.idle_timeout)
            .pool_max_idle_per_host(pool.max_idle_per_host);
        match tls {
            Some(tls) => {
                connector.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(connector);
                Self::Tls(builder.build(https))
            }
            None => Self::Plain(builder.build(connector)),
        }
    }

    /// Sends `request`.
    pub(crate) fn request(&self, request: Request<Empty<Bytes>>) -> ResponseFuture {
        match self {
            Self::Plain(c) => c.request(request),
            Self::Tls(c) => c.request(request),
        }
    }

    /// Whether `https://` URLs can be reached.
    pub(crate) fn has_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

/// `Basic <base64(user:password)>`, the value of a basic-auth `Authorization` header.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved bytes).
pub(crate) fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// The error and its sources, joined, each cause said once
/// (`client error (Connect): tcp connect error: Connection refused`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_and_percent_encoding() {
        assert_eq!(basic_auth("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_auth("f", "o"), "Basic Zjpv");
        assert_eq!(encode("web api/v1"), "web%20api%2Fv1");
        assert_eq!(encode("web-1.svc_x~"), "web-1.svc_x~");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("{\"type\":[\"container\"]}"), "%7B%22type%22%3A%5B%22container%22%5D%7D");
    }

    #[test]
    fn a_cause_repeated_by_its_wrapper_is_said_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "connect failed: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(error_chain(&Wrapper(refused)), "connect failed: Connection refused");
        let plain = std::io::Error::other("boom");
        assert_eq!(error_chain(&plain), "boom");
    }
}
