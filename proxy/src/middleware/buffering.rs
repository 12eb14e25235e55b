//! `buffering`: <https://doc.traefik.io/traefik/middlewares/http/buffering/>.
//!
//! The request body is read whole before it is sent (so a slow client never holds a server's
//! connection, and the server gets a `Content-Length`), and the response body is read whole
//! before it goes to the client. Each is kept in memory up to its `mem…BodyBytes` (1 MiB by
//! default) and in an anonymous temporary file past that ([`super::spool`]). A request body
//! past `maxRequestBodyBytes` is answered 413, a response past `maxResponseBodyBytes` 500
//! (Traefik's answers); 0 means no maximum. `retryExpression` is accepted and ignored (the
//! merge reports it): drover's `retry` middleware does that job.
//!
//! The request body is read by the forwarding code once every step before the sending has let
//! the request through (see [`super::BodyPlan`]).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::spool::{Spool, SpoolError};
use crate::forward::page::text;
use crate::forward::ProxyBody;

const MIB: u64 = 1024 * 1024;

/// A compiled `buffering` middleware.
#[derive(Debug)]
pub struct Buffering {
    /// `maxRequestBodyBytes` (`None`: no maximum).
    pub max_request: Option<u64>,
    /// `memRequestBodyBytes`.
    pub memory_request: u64,
    max_response: Option<u64>,
    memory_response: u64,
}

fn positive(n: i64) -> Option<u64> {
    u64::try_from(n).ok().filter(|n| *n > 0)
}

impl Buffering {
    /// Compiles a validated `buffering`.
    pub fn build(m: &drover_providers::model::middleware::Buffering) -> Self {
        Self {
            max_request: positive(m.max_request_body_bytes),
            memory_request: m.mem_request_body_bytes.and_then(|n| u64::try_from(n).ok()).unwrap_or(MIB),
            max_response: positive(m.max_response_body_bytes),
            memory_response: m.mem_response_body_bytes.and_then(|n| u64::try_from(n).ok()).unwrap_or(MIB),
        }
    }

    /// The response side: reads the body whole (500 past the maximum).
    pub async fn response(&self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        use http_body::Body as _;
        if response.body().is_end_stream() {
            // HEAD, 204, 304, an empty body: nothing to read, and the head stays as it is (a
            // HEAD's Content-Length describes the body it did not carry).
            return response;
        }
        let (mut parts, body) = response.into_parts();
        match Spool::read(body, self.max_response, Some(self.memory_response)).await {
            Ok(spool) => {
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(spool.len()));
                let body = match spool.single() {
                    Some(bytes) => ProxyBody::local(bytes),
                    None => ProxyBody::transformed(Box::pin(http_body_util::BodyExt::map_err(
                        spool.body(),
                        crate::error::Error::response_body,
                    ))),
                };
                Response::from_parts(parts, body)
            }
            Err(SpoolError::TooLarge) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the response body is larger than buffering.maxResponseBodyBytes\n",
            ),
            Err(SpoolError::Body(e)) => {
                tracing::debug!("buffering: the response body failed: {e}");
                text(StatusCode::BAD_GATEWAY, "502 Bad Gateway: the server's response body broke off\n")
            }
            Err(SpoolError::File(e)) => {
                tracing::warn!("buffering: cannot keep a response body in a temporary file: {e}");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the response could not be buffered\n",
                )
            }
        }
    }

    /// What it does (the explain API).
    pub fn explain(&self) -> String {
        let max = |m: Option<u64>| m.map_or("no maximum".to_string(), |m| format!("at most {m} bytes"));
        format!(
            "reads the request body whole ({}; {} in memory, then a temporary file) and the response body ({})",
            max(self.max_request),
            self.memory_request,
            max(self.max_response)
        )
    }
}
