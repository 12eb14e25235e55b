//! `errors`: <https://doc.traefik.io/traefik/middlewares/http/errorpages/>.
//!
//! A response whose status is in `status` has its body replaced by a page from `service`, asked
//! with `GET` at `query` (`{status}` is the status sent to the client, `{originalStatus}` the
//! server's, `{url}` the original request URL, percent-encoded), with the original request's
//! headers. The client gets the page's body and headers under the original status (or the one
//! `statusRewrites` maps it to). If no server of the page's service answers, the client gets
//! the status with a short text instead.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri};

use super::{BuildError, Req};
use crate::connection::Connection;
use crate::forward::ProxyBody;
use crate::snapshot::Service;

/// A compiled `errors` middleware.
#[derive(Debug)]
pub struct Errors {
    status: Vec<(u16, u16)>,
    service: Arc<Service>,
    query: String,
    rewrites: Vec<((u16, u16), StatusCode)>,
}

/// What `errors` keeps of the request: the page is asked with its headers.
#[derive(Debug)]
pub struct Original {
    uri: Uri,
    host: Option<http::HeaderValue>,
    scheme: &'static str,
    headers: HeaderMap,
}

impl Original {
    /// Keeps what the page request needs from `req`.
    pub fn of(req: &Req<'_>) -> Self {
        Self {
            uri: req.parts.uri.clone(),
            host: req.host.cloned(),
            scheme: if req.scheme == "https" { "https" } else { "http" },
            headers: req.parts.headers.clone(),
        }
    }

    fn url(&self) -> String {
        let host = self.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let target = self.uri.path_and_query().map_or("/", |pq| pq.as_str());
        format!("{}://{host}{target}", self.scheme)
    }
}

fn ranges(list: &[String], key: &str) -> Result<Vec<(u16, u16)>, BuildError> {
    list.iter()
        .map(|s| {
            drover_providers::middlewares::parse_status_range(s)
                .ok_or_else(|| BuildError(format!("errors.{key}: `{s}` is not a status range")))
        })
        .collect()
}

impl Errors {
    /// Compiles a validated `errors` sending to `service`.
    pub fn build(m: &drover_providers::model::middleware::Errors, service: Arc<Service>) -> Result<Self, BuildError> {
        let mut rewrites = Vec::new();
        for (from, to) in &m.status_rewrites {
            let range = ranges(std::slice::from_ref(from), "statusRewrites")?[0];
            let to = StatusCode::from_u16(*to).map_err(|_| BuildError(format!("errors.statusRewrites.{from}: {to} is not a status")))?;
            rewrites.push((range, to));
        }
        Ok(Self {
            status: ranges(&m.status, "status")?,
            service,
            query: m.query.clone().filter(|q| !q.is_empty()).unwrap_or_else(|| "/".into()),
            rewrites,
        })
    }

    fn catches(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.status.iter().any(|(from, to)| (*from..=*to).contains(&code))
    }

    /// The response side: replaces the body of a caught response with the service's page.
    pub async fn response(&self, original: &Original, response: Response<ProxyBody>, conn: &Connection) -> Response<ProxyBody> {
        let status = response.status();
        if !self.catches(status) {
            return response;
        }
        let code = status.as_u16();
        let shown = self
            .rewrites
            .iter()
            .find(|((from, to), _)| (*from..=*to).contains(&code))
            .map_or(status, |(_, to)| *to);
        let target = self
            .query
            .replace("{status}", shown.as_str())
            .replace("{originalStatus}", status.as_str())
            .replace(
                "{url}",
                &form_urlencoded::byte_serialize(original.url().as_bytes()).collect::<String>(),
            );
        let Ok(uri) = target.parse::<Uri>() else {
            tracing::debug!(query = %target, "errors: the page's path is not a valid URI");
            return response;
        };
        let mut request = Request::new(());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.clone_from(&original.headers);
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::RANGE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
        ] {
            headers.remove(name);
        }
        if let Some(host) = &original.host {
            headers.insert(header::HOST, host.clone());
        }
        // The original body is dropped unread: its connection is not reused.
        drop(response);
        match crate::forward::page::fetch(conn, &self.service, request).await {
            Some(page) => {
                let (mut parts, body) = page.into_parts();
                parts.status = shown;
                Response::from_parts(parts, body)
            }
            None => {
                let mut answer = crate::forward::page::text(shown, "the error page could not be fetched\n");
                *answer.status_mut() = shown;
                answer
            }
        }
    }

    /// What it does (the explain API).
    pub fn explain(&self) -> String {
        let list: Vec<String> = self
            .status
            .iter()
            .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect();
        format!(
            "responses with status {} get their page from `{}` at `{}`",
            list.join(", "),
            self.service.name,
            self.query
        )
    }
}
