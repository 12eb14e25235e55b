//! `redirectScheme` and `redirectRegex`: answer with a redirect instead of forwarding.
//! <https://doc.traefik.io/traefik/middlewares/http/redirectscheme/>,
//! <https://doc.traefik.io/traefik/middlewares/http/redirectregex/>
//!
//! Both build the request's full URL (`scheme://host[:port]/path?query`, the scheme the client
//! used or a trusted proxy's `X-Forwarded-Proto`) and redirect to the rewritten one; a request
//! whose URL would not change is passed on (so `redirectScheme` to `https` lets HTTPS requests
//! through). As in Traefik, `GET` gets 302 (301 when `permanent`), other methods 307 (308), so
//! their method and body are kept.

use drover_providers::model::middleware as model;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use regex::Regex;

use super::{answer, BuildError, Req, Step};
use crate::connection::X_FORWARDED_PROTO;

/// A compiled `redirectScheme`.
#[derive(Debug)]
pub struct RedirectScheme {
    scheme: String,
    port: Option<String>,
    permanent: bool,
}

/// A compiled `redirectRegex`.
#[derive(Debug)]
pub struct RedirectRegex {
    regex: Regex,
    replacement: String,
    permanent: bool,
}

/// The scheme, host (with port) and path-and-query of the request as the client addressed it.
fn current(req: &Req<'_>) -> (String, String, String) {
    let scheme = req
        .parts
        .headers
        .get(&X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(req.scheme)
        .to_ascii_lowercase();
    let host = req.host.and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let target = req.parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string();
    (scheme, host, target)
}

fn redirect(location: &str, method: &Method, permanent: bool) -> Step {
    let Ok(location) = HeaderValue::from_str(location) else {
        return Step::Answer(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error: the redirect location is not a valid header value\n",
        ));
    };
    let status = match (permanent, *method == Method::GET) {
        (true, true) => StatusCode::MOVED_PERMANENTLY,
        (true, false) => StatusCode::PERMANENT_REDIRECT,
        (false, true) => StatusCode::FOUND,
        (false, false) => StatusCode::TEMPORARY_REDIRECT,
    };
    let mut response = Response::new(bytes::Bytes::from(status.canonical_reason().unwrap_or("Redirect")));
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Step::Answer(response)
}

/// `host` without its port (IPv6 brackets kept).
fn host_only(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

impl RedirectScheme {
    /// Compiles the model.
    pub fn build(m: &model::RedirectScheme) -> Self {
        Self {
            scheme: m.scheme.to_ascii_lowercase(),
            port: m.port.clone().filter(|p| !p.is_empty()),
            permanent: m.permanent,
        }
    }

    /// Redirects unless the request already uses the scheme (and port).
    pub fn request(&self, req: &mut Req<'_>) -> Step {
        let (scheme, host, target) = current(req);
        let default_port = match self.scheme.as_str() {
            "http" => Some("80"),
            "https" => Some("443"),
            _ => None,
        };
        let port = match &self.port {
            Some(p) if Some(p.as_str()) != default_port => format!(":{p}"),
            _ => String::new(),
        };
        let new_host = format!("{}{port}", host_only(&host));
        if scheme == self.scheme && (self.port.is_none() || new_host.eq_ignore_ascii_case(&host)) {
            return Step::Next;
        }
        redirect(&format!("{}://{new_host}{target}", self.scheme), &req.parts.method, self.permanent)
    }
}

impl RedirectRegex {
    /// Compiles the model.
    pub fn build(m: &model::RedirectRegex) -> Result<Self, BuildError> {
        Ok(Self {
            regex: Regex::new(&m.regex).map_err(|e| BuildError(format!("`{}`: {e}", m.regex)))?,
            replacement: m.replacement.clone(),
            permanent: m.permanent,
        })
    }

    /// Redirects when the regex matches the full URL and the replacement changes it.
    pub fn request(&self, req: &mut Req<'_>) -> Step {
        let (scheme, host, target) = current(req);
        let url = format!("{scheme}://{host}{target}");
        if !self.regex.is_match(&url) {
            return Step::Next;
        }
        let location = self.regex.replace_all(&url, self.replacement.as_str());
        if location == url {
            return Step::Next;
        }
        redirect(&location, &req.parts.method, self.permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_only("a.test:8080"), "a.test");
        assert_eq!(host_only("[::1]:80"), "[::1]");
        assert_eq!(host_only("a.test"), "a.test");
    }
}
