//! `forwardAuth`: ask an authentication server about each request first.
//! <https://doc.traefik.io/traefik/middlewares/http/forwardauth/>
//!
//! drover sends the server the request's headers (all, or `authRequestHeaders`) with `GET` (or
//! the request's method with `preserveRequestMethod`), plus `X-Forwarded-Method`, `-Proto`,
//! `-Host`, `-Uri` and `-For` describing the original request. A 2xx answer lets the request
//! through; anything else is returned to the client as the server wrote it (a relative
//! `Location` made absolute on the server's origin unless `preserveLocationHeader`). A server
//! that cannot be asked (refused, timed out, a failed TLS handshake) is a 500, as in Traefik:
//! the request fails closed and is never forwarded.
//!
//! With `forwardBody` the request body goes to the server too: it is read once, at this step
//! (in memory up to 1 MiB, then a temporary file), sent to the server, then sent on to the
//! service from what was kept. A body longer than `maxBodySize` (-1 by default: no limit) is
//! answered 401, as Traefik does, and goes nowhere.
//!
//! An `https://` server is verified against the `tls` block's `ca` (else the bundled Mozilla
//! roots, as for servers) and is shown the `cert`/`key` client certificate if it asks for one;
//! the TLS client is the one servers transports build ([`crate::upstream::tls`]), with the
//! keys spelled as Traefik's `ClientTLS` spells them. Its files are read when the middleware is
//! compiled: a bad one disables the middleware and its routers, naming the key.
//!
//! Header injection: a client could send `X-Forwarded-Uri: /public` to have a protected path
//! judged as a public one, or `X-Auth-User: admin` hoping the backend takes it for the server's
//! word. So `X-Forwarded-Method` and `-Uri` are always drover's own unless `trustForwardHeader`
//! is set *and* the peer is in `trustedIPs` (the other forwarded headers were already rebuilt
//! from the socket for untrusted peers), and every `authResponseHeaders` name is removed from
//! the request before the server's values, if any, are copied in.

use std::time::Duration;

use bytes::Bytes;
use drover_providers::model::middleware as model;
use drover_providers::model::ClientCertificate;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use regex::Regex;

use super::client_body::ReadFailure;
use super::spool::SpoolBody;
use super::{answer, BuildError, Req};
use crate::connection::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO};
use crate::upstream::tls::{self, Spelling, TlsSettings};

/// The body of a question: none, or the request's (`forwardBody`).
type QuestionBody = Either<Empty<Bytes>, SpoolBody>;

/// `X-Forwarded-Method`: the original request's method.
pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Forwarded-Uri`: the original request's path and query.
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// How long the server has to answer (Traefik's client timeout).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest refusal body passed to the client.
const MAX_BODY: usize = 1 << 20;

/// Request headers never sent to the server: hop-by-hop ones and the body's framing (a body,
/// with `forwardBody`, is framed for the question itself).
const NOT_SENT: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::HOST,
    header::PROXY_AUTHORIZATION,
];

/// A compiled `forwardAuth`.
pub struct ForwardAuth {
    address: Uri,
    origin: String,
    /// Speaks TLS to an `https://` address (the `tls` block's CA and client certificate, else
    /// the bundled Mozilla roots), plain HTTP/1.1 to an `http://` one.
    client: Client<HttpsConnector<HttpConnector>, QuestionBody>,
    trust_forward_header: bool,
    response_headers: Vec<HeaderName>,
    response_regex: Option<Regex>,
    request_headers: Vec<HeaderName>,
    cookies: Vec<String>,
    preserve_location: bool,
    preserve_method: bool,
    /// `forwardBody`: the request body is sent too.
    forward_body: bool,
    /// `maxBodySize` (`None`: -1, no limit).
    max_body: Option<u64>,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn names(list: &[String]) -> Result<Vec<HeaderName>, BuildError> {
    list.iter()
        .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(|_| BuildError(format!("`{n}` is not a header name"))))
        .collect()
}

impl ForwardAuth {
    /// Compiles the model of the middleware whose keys start with `at`
    /// (`http.middlewares.<name>`); TLS files are read here, and a bad one is an error naming
    /// its key.
    pub fn build(m: &model::ForwardAuth, at: &str) -> Result<Self, BuildError> {
        let address: Uri = m.address.parse().map_err(|_| BuildError(format!("`{}` is not a URL", m.address)))?;
        let authority = address
            .authority()
            .ok_or_else(|| BuildError(format!("`{}` has no host", m.address)))?;
        let origin = format!("{}://{authority}", address.scheme_str().unwrap_or("http"));
        let mut tls = match &m.tls {
            None => tls::default_client().http1_config().as_ref().clone(),
            Some(t) => {
                let root_cas: Vec<String> = t.ca.iter().cloned().collect();
                let certificates: Vec<ClientCertificate> = match (&t.cert, &t.key) {
                    (Some(cert), Some(key)) => vec![ClientCertificate {
                        cert_file: cert.clone(),
                        key_file: key.clone(),
                    }],
                    _ => Vec::new(),
                };
                let settings = TlsSettings {
                    insecure_skip_verify: t.insecure_skip_verify,
                    root_cas: &root_cas,
                    certificates: &certificates,
                    spelling: Spelling::ClientTls,
                    ..TlsSettings::default()
                };
                let built = tls::build(&settings, &format!("{at}.forwardAuth.tls")).map_err(BuildError)?;
                built.client.http1_config().as_ref().clone()
            }
        };
        // hyper-rustls sets ALPN itself (HTTP/1.1 here) and refuses a configuration that has it.
        tls.alpn_protocols.clear();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Self {
            origin,
            address,
            client: Client::builder(TokioExecutor::new()).build(connector),
            trust_forward_header: m.trust_forward_header,
            response_headers: names(&m.auth_response_headers)?,
            response_regex: match &m.auth_response_headers_regex {
                Some(r) if !r.is_empty() => Some(Regex::new(r).map_err(|e| BuildError(format!("`{r}`: {e}")))?),
                _ => None,
            },
            request_headers: names(&m.auth_request_headers)?,
            cookies: m.add_auth_cookies_to_response.clone(),
            preserve_location: m.preserve_location_header,
            preserve_method: m.preserve_request_method,
            forward_body: m.forward_body,
            max_body: m.max_body_size.and_then(|n| u64::try_from(n).ok()),
        })
    }

    fn question(&self, req: &Req<'_>, body: QuestionBody) -> Request<QuestionBody> {
        let original = &req.parts.headers;
        let mut headers = HeaderMap::with_capacity(original.len() + 6);
        if self.request_headers.is_empty() {
            for (name, value) in original {
                if !NOT_SENT.contains(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        } else {
            for name in &self.request_headers {
                for value in original.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        // drover's forwarded headers (rebuilt from the socket unless the peer is trusted).
        for name in [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST, &X_FORWARDED_PORT] {
            headers.remove(name);
            for value in original.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let trusted = self.trust_forward_header && req.trusted;
        let keep = |name: &HeaderName| trusted && original.contains_key(name);
        if !keep(&X_FORWARDED_METHOD) {
            if let Ok(v) = HeaderValue::from_str(req.parts.method.as_str()) {
                headers.insert(X_FORWARDED_METHOD.clone(), v);
            }
        }
        if !keep(&X_FORWARDED_URI) {
            let uri = req.parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            if let Ok(v) = HeaderValue::from_str(uri) {
                headers.insert(X_FORWARDED_URI.clone(), v);
            }
        }
        let mut question = Request::new(body);
        *question.uri_mut() = self.address.clone();
        *question.method_mut() = if self.preserve_method {
            req.parts.method.clone()
        } else {
            Method::GET
        };
        *question.headers_mut() = headers;
        question
    }

    /// Whether it sends the request body (`forwardBody`).
    pub fn forwards_body(&self) -> bool {
        self.forward_body
    }

    /// What the question carries: the request's body with `forwardBody` (read once, and sent
    /// on to the service afterwards), else nothing.
    async fn body(&self, req: &mut Req<'_>) -> Result<QuestionBody, Response<Bytes>> {
        let Some(slot) = req.body.as_deref_mut().filter(|_| self.forward_body) else {
            return Ok(Either::Left(Empty::new()));
        };
        match slot.read(self.max_body).await {
            Ok(Some(spool)) => Ok(Either::Right(spool.body())),
            Ok(None) => Ok(Either::Left(Empty::new())),
            // Traefik's answer to a body past maxBodySize.
            Err(ReadFailure::TooLarge) => Err(answer(
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized: the request body is larger than the authentication accepts (forwardAuth.maxBodySize)\n",
            )),
            Err(ReadFailure::Broken) => Err(answer(StatusCode::BAD_REQUEST, "400 Bad Request: the request body broke off\n")),
            Err(ReadFailure::Stalled) => Err(answer(
                StatusCode::REQUEST_TIMEOUT,
                "408 Request Timeout: the request body stalled, or was not read within readTimeout\n",
            )),
            Err(ReadFailure::File(e)) => {
                tracing::warn!("forwardAuth: cannot keep a request body in a temporary file: {e}");
                Err(answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the request body could not be buffered\n",
                ))
            }
        }
    }

    /// Asks the server. `Ok` carries the cookies to add to the client's response; `Err` the
    /// answer the client gets instead of the service's.
    pub async fn request(&self, req: &mut Req<'_>) -> Result<Vec<HeaderValue>, Box<Response<Bytes>>> {
        let unreachable = || {
            Box::new(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the authentication server could not be asked\n",
            ))
        };
        let body = match self.body(req).await {
            Ok(body) => body,
            Err(answer) => return Err(Box::new(answer)),
        };
        let response = match tokio::time::timeout(TIMEOUT, self.client.request(self.question(req, body))).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                tracing::warn!(address = %self.address, "forwardAuth: {e}");
                return Err(unreachable());
            }
            Err(_) => {
                tracing::warn!(address = %self.address, "forwardAuth: no answer within {TIMEOUT:?}");
                return Err(unreachable());
            }
        };
        let (parts, body) = response.into_parts();
        let body = match tokio::time::timeout(TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => return Err(unreachable()),
        };
        if !parts.status.is_success() {
            let mut refusal = Response::new(body);
            *refusal.status_mut() = parts.status;
            let headers = refusal.headers_mut();
            for (name, value) in &parts.headers {
                if !NOT_SENT.contains(name) && name.as_str() != "keep-alive" {
                    headers.append(name.clone(), value.clone());
                }
            }
            if !self.preserve_location {
                if let Some(location) = headers.get(header::LOCATION).and_then(|l| l.to_str().ok()) {
                    if location.starts_with('/') && !location.starts_with("//") {
                        if let Ok(absolute) = HeaderValue::from_str(&format!("{}{location}", self.origin)) {
                            headers.insert(header::LOCATION, absolute);
                        }
                    }
                }
            }
            return Err(Box::new(refusal));
        }
        let headers = &mut req.parts.headers;
        for name in &self.response_headers {
            headers.remove(name);
            for value in parts.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(regex) = &self.response_regex {
            let matching: Vec<HeaderName> = headers.keys().filter(|n| regex.is_match(n.as_str())).cloned().collect();
            for name in matching {
                headers.remove(&name);
            }
            for (name, value) in &parts.headers {
                if regex.is_match(name.as_str()) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        let cookies = if self.cookies.is_empty() {
            Vec::new()
        } else {
            parts
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .filter(|c| {
                    let name = c.to_str().ok().and_then(|t| t.split('=').next()).unwrap_or("").trim();
                    self.cookies.iter().any(|wanted| wanted == name)
                })
                .cloned()
                .collect()
        };
        Ok(cookies)
    }
}
