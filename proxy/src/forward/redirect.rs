//! The entrypoint redirection (`http.redirections.entryPoint`): a plain-HTTP request is sent to
//! the same host and path on another entrypoint, usually HTTP → HTTPS.
//!
//! As Traefik: permanent redirects are 301 for `GET` and 308 otherwise (so a client repeats a
//! `POST` with its body), temporary ones 302 and 307. The path and query are kept as the client
//! sent them; the port is the target entrypoint's, left out when it is the scheme's default.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::connection::Redirect;
use crate::forward::body::ProxyBody;

/// The redirect for `req` (whose host, normalised, is `host`) to `redirect`'s entrypoint.
pub fn to_entry_point<B>(redirect: &Redirect, req: &Request<B>, host: &str) -> Response<ProxyBody> {
    let status = match (redirect.permanent, req.method() == Method::GET) {
        (true, true) => StatusCode::MOVED_PERMANENTLY,
        (true, false) => StatusCode::PERMANENT_REDIRECT,
        (false, true) => StatusCode::FOUND,
        (false, false) => StatusCode::TEMPORARY_REDIRECT,
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = match redirect.port {
        Some(port) => format!("{}://{host}:{port}{path}", redirect.scheme),
        None => format!("{}://{host}{path}", redirect.scheme),
    };
    let mut response = Response::new(ProxyBody::local(Bytes::new()));
    *response.status_mut() = status;
    match HeaderValue::try_from(location) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_permanence_and_method_and_the_path_is_kept() {
        let https = |port, permanent| Redirect {
            scheme: http::uri::Scheme::HTTPS,
            port,
            permanent,
        };
        let get = Request::get("/a/b?x=1").body(()).expect("request");
        let post = Request::post("/p").body(()).expect("request");
        let r = to_entry_point(&https(None, true), &get, "a.test");
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "https://a.test/a/b?x=1");
        assert_eq!(
            to_entry_point(&https(Some(8443), true), &post, "a.test").status(),
            StatusCode::PERMANENT_REDIRECT
        );
        let r = to_entry_point(&https(Some(8443), false), &post, "a.test");
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "https://a.test:8443/p");
        assert_eq!(to_entry_point(&https(None, false), &get, "a.test").status(), StatusCode::FOUND);
    }
}
