//! An owned request for routing tests, lent out as a [`RequestView`].

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{normalize_host, RequestView};

pub(crate) struct Req {
    host: String,
    path: String,
    query: Option<String>,
    method: Method,
    headers: HeaderMap,
    ip: IpAddr,
}

impl Req {
    /// A GET for `host` (normalised here) and `target` (`/path?query`).
    pub(crate) fn get(host: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (target.to_owned(), None),
        };
        Req {
            host: normalize_host(host).into_owned(),
            path,
            query,
            method: Method::GET,
            headers: HeaderMap::new(),
            ip: IpAddr::from([127, 0, 0, 1]),
        }
    }

    pub(super) fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub(super) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        self
    }

    pub(super) fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.parse().expect("test IP literal is valid");
        self
    }

    pub(crate) fn view(&self) -> RequestView<'_> {
        RequestView {
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            method: &self.method,
            headers: &self.headers,
            client_ip: self.ip,
        }
    }
}
