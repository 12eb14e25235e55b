//! Sticky sessions: a cookie that names the server (or, on a `weighted` service, the child
//! service) a client was sent to, so that its next requests go there too.
//!
//! The value is an opaque hash of the server's URL (of the child's name), not the URL itself:
//! it tells a client nothing about the network behind drover, and since it depends only on the
//! server's identity it stays valid across reloads and restarts. A cookie naming a server that
//! is ejected, removed or already tried by this request is ignored; the request is balanced as
//! usual and the answer carries a new cookie (re-pinning), as Traefik does.
//!
//! Everything a request needs is computed when the snapshot is compiled: each target's value
//! and its whole `Set-Cookie` header.

use drover_providers::balancing::{fnv1a, CookieSpec};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// A sticky cookie over a list of targets (servers or child services).
#[derive(Debug)]
pub struct Sticky {
    name: Box<str>,
    /// Each target's cookie value.
    values: Box<[Box<str>]>,
    /// Each target's `Set-Cookie` header.
    set_cookies: Box<[HeaderValue]>,
}

/// The cookie value for the target named `identity` (a server URL, a service name).
pub fn value_of(identity: &str) -> String {
    format!("{:016x}", fnv1a(&[identity.as_bytes()]))
}

impl Sticky {
    /// A cookie `spec` over targets named by `identities`, in index order.
    pub fn new<'a>(spec: &CookieSpec, identities: impl IntoIterator<Item = &'a str>) -> Self {
        let values: Box<[Box<str>]> = identities.into_iter().map(|id| value_of(id).into()).collect();
        let set_cookies = values
            .iter()
            .map(|v| {
                // Invariant: the name, path and domain were validated as header-safe tokens and the
                // value is hex, so the header is valid; an empty one would only lose the pin.
                HeaderValue::from_str(&spec.set_cookie(v)).unwrap_or_else(|_| HeaderValue::from_static(""))
            })
            .collect();
        Self {
            name: spec.name.as_str().into(),
            values,
            set_cookies,
        }
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The request's cookie value, if it sent this cookie.
    pub fn cookie<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name.trim() == &*self.name).then(|| value.trim().trim_matches('"'))
            })
    }

    /// The target the request's cookie names, if it names one of them.
    pub fn pinned(&self, headers: &HeaderMap) -> Option<usize> {
        let value = self.cookie(headers)?;
        self.values.iter().position(|v| &**v == value)
    }

    /// The `Set-Cookie` header pinning target `index`, unless the request already named it.
    pub fn set_cookie(&self, index: usize, headers: &HeaderMap) -> Option<HeaderValue> {
        if self.pinned(headers) == Some(index) {
            return None;
        }
        self.set_cookies.get(index).filter(|v| !v.is_empty()).cloned()
    }

    /// Target `index`'s cookie value (explain API).
    pub fn value(&self, index: usize) -> Option<&str> {
        self.values.get(index).map(|v| &**v)
    }
}

#[cfg(test)]
mod tests {
    use drover_providers::balancing::CookieSpec;
    use drover_providers::model::StickyCookie;

    use super::*;

    fn sticky() -> Sticky {
        let cookie = StickyCookie {
            name: Some("srv".into()),
            http_only: Some(true),
            ..Default::default()
        };
        let spec = CookieSpec::resolve(&cookie, "s@file", "k", &mut Vec::new());
        Sticky::new(&spec, ["http://10.0.0.1:80", "http://10.0.0.2:80"])
    }

    #[test]
    fn a_cookie_naming_a_server_pins_it_among_other_cookies() {
        let sticky = sticky();
        let mut headers = HeaderMap::new();
        assert_eq!(sticky.pinned(&headers), None);
        let value = value_of("http://10.0.0.2:80");
        assert!(!value.contains("10.0.0.2"), "opaque");
        headers.append(COOKIE, HeaderValue::from_str(&format!("a=1; srv={value}; b=2")).unwrap());
        assert_eq!(sticky.pinned(&headers), Some(1));
        assert_eq!(sticky.set_cookie(1, &headers), None, "already pinned: no new cookie");
        let set = sticky.set_cookie(0, &headers).unwrap();
        assert_eq!(
            set.to_str().unwrap(),
            format!("srv={}; Path=/; HttpOnly", value_of("http://10.0.0.1:80"))
        );
    }

    #[test]
    fn an_unknown_value_pins_nothing() {
        let sticky = sticky();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("srv=http://10.0.0.1:80"));
        assert_eq!(sticky.pinned(&headers), None, "the plain URL is not a value");
        assert!(sticky.set_cookie(0, &headers).is_some());
    }
}
