//! Query strings, read exactly as the OpenAPI document describes them.
//!
//! The fuzzer run in CI checks both directions: every value the document allows must be
//! accepted, and every value it forbids must get a 400. So the limits and patterns below are
//! the ones [`super::openapi`] publishes, taken from the same constants, and a value matching a
//! pattern is tested with the same regular expression on both sides. One quirk is kept on
//! purpose: JSON Schema tools written in Python let `$` match before one final newline, so a
//! value is also accepted when it matches once that newline is removed (and then used without it).

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_providers::runtime::Status;
use regex::Regex;

/// `page`: 1-based.
pub const PAGE_MAX: u64 = 1_000_000;
/// `per_page` default, as Traefik.
pub const PER_PAGE_DEFAULT: u64 = 100;
/// `per_page` upper bound.
pub const PER_PAGE_MAX: u64 = 10_000;
/// `header` values in an explain request, at most.
pub const HEADERS_MAX: usize = 32;

/// `url` of an explain request: an absolute `http(s)://host[:port]/path?query` or a path.
pub const URL_PATTERN: &str =
    r"^(https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,4})?)?/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,2000}(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,2000})?$";
/// `method` of an explain request.
pub const METHOD_PATTERN: &str = r"^[A-Z]{1,16}$";
/// One `header` of an explain request: `Name: value`.
pub const HEADER_PATTERN: &str = r"^[A-Za-z0-9-]{1,64}:[ -~]{0,1000}$";
/// `clientIp` of an explain request: an IPv4 or IPv6 address (no zone).
pub const IP_PATTERN: &str = concat!(
    r"^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    r"|([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
    r"|([0-9a-fA-F]{1,4}:){1,7}:",
    r"|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    r"|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}",
    r"|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    r"|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}",
    r"|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    r"|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}",
    r"|:(:[0-9a-fA-F]{1,4}){1,7}",
    r"|::",
    r")$"
);

/// A request the admin side refuses, with the reason (400 unless said otherwise).
#[derive(Debug)]
pub struct BadRequest {
    /// The status to answer with.
    pub status: StatusCode,
    /// What was wrong, naming the parameter.
    pub message: String,
}

impl BadRequest {
    /// A 400 naming what is wrong.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 404 naming what does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        super::error(self.status, self.message)
    }
}

/// The decoded `key=value` pairs of a query string, in order.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space).
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// An integer in `1..=max`, or `default` when absent.
    pub fn integer(&self, key: &str, default: u64, max: u64) -> Result<u64, BadRequest> {
        let Some(text) = self.get(key) else { return Ok(default) };
        let bad = || BadRequest::new(format!("{key}: `{text}` is not a whole number from 1 to {max}"));
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match text.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad()),
        }
    }
}

/// `value` if it matches `pattern` (see the module documentation about a final newline).
pub fn matching<'v>(pattern: &'static str, value: &'v str) -> Option<&'v str> {
    let re = compiled(pattern)?;
    if re.is_match(value) {
        return Some(value);
    }
    value.strip_suffix('\n').filter(|v| re.is_match(v))
}

fn compiled(pattern: &'static str) -> Option<&'static Regex> {
    static CACHE: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        [URL_PATTERN, METHOD_PATTERN, HEADER_PATTERN, IP_PATTERN]
            .into_iter()
            .filter_map(|p| match Regex::new(p) {
                Ok(re) => Some((p, re)),
                Err(e) => {
                    tracing::error!("admin parameter pattern does not compile: {e}");
                    None
                }
            })
            .collect()
    });
    all.iter().find(|(p, _)| *p == pattern).map(|(_, re)| re)
}

/// Traefik's list parameters: `search`, `status`, `serviceName`, `middlewareName`, `page`,
/// `per_page`.
#[derive(Debug)]
pub struct ListQuery {
    /// Case-insensitive substring of the name (or, for routers, of the rule).
    pub search: Option<String>,
    /// Only objects with this status.
    pub status: Option<Status>,
    /// Routers: only those using this service.
    pub service_name: Option<String>,
    /// Routers: only those using this middleware.
    pub middleware_name: Option<String>,
    /// 1-based page.
    pub page: u64,
    /// Items per page.
    pub per_page: u64,
}

impl ListQuery {
    /// Reads and checks the list parameters.
    pub fn parse(query: Option<&str>) -> Result<Self, BadRequest> {
        let params = Params::parse(query);
        let status = match params.get("status") {
            None => None,
            Some("enabled") => Some(Status::Enabled),
            Some("disabled") => Some(Status::Disabled),
            Some("warning") => Some(Status::Warning),
            Some(other) => {
                return Err(BadRequest::new(format!(
                    "status: `{other}` is not one of enabled, disabled, warning"
                )))
            }
        };
        Ok(Self {
            search: params.get("search").filter(|s| !s.is_empty()).map(str::to_lowercase),
            status,
            service_name: params.get("serviceName").filter(|s| !s.is_empty()).map(str::to_string),
            middleware_name: params.get("middlewareName").filter(|s| !s.is_empty()).map(str::to_string),
            page: params.integer("page", 1, PAGE_MAX)?,
            per_page: params.integer("per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX)?,
        })
    }

    /// Whether any of `texts` contains the search term (always, without one).
    pub fn found_in<'t>(&self, texts: impl IntoIterator<Item = &'t str>) -> bool {
        match &self.search {
            None => true,
            Some(needle) => texts.into_iter().any(|t| lowercase(t).contains(needle.as_str())),
        }
    }

    /// Cuts one page out of `items`: the page and the value of `X-Next-Page` (the next page,
    /// or 1 on the last page, as Traefik). A page past the end is a 404.
    pub fn page<T>(&self, items: Vec<T>) -> Result<(Vec<T>, u64), BadRequest> {
        let total = items.len() as u64;
        let start = (self.page - 1).saturating_mul(self.per_page);
        if start != 0 && start >= total {
            return Err(BadRequest::not_found(format!(
                "page {} does not exist: {total} items at {} per page",
                self.page, self.per_page
            )));
        }
        let next = if self.page.saturating_mul(self.per_page) < total {
            self.page + 1
        } else {
            1
        };
        let page = items.into_iter().skip(start as usize).take(self.per_page as usize).collect();
        Ok((page, next))
    }
}

fn lowercase(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_uppercase) {
        Cow::Owned(text.to_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        let p = Params::parse(Some("page=2&per_page=0&x=+1&y=1.5&z=99999999999999999999999"));
        assert_eq!(p.integer("page", 1, 10).unwrap(), 2);
        assert!(p.integer("per_page", 1, 10).is_err());
        assert!(p.integer("x", 1, 10).is_err(), "`+1` is a space then 1 once decoded");
        assert!(p.integer("y", 1, 10).is_err());
        assert!(p.integer("z", 1, 10).is_err());
        assert_eq!(p.integer("absent", 7, 10).unwrap(), 7);
    }

    #[test]
    fn pages_like_traefik() {
        let q = ListQuery::parse(Some("per_page=2")).unwrap();
        assert_eq!(q.page(vec![1, 2, 3]).unwrap(), (vec![1, 2], 2));
        let q = ListQuery::parse(Some("per_page=2&page=2")).unwrap();
        assert_eq!(q.page(vec![1, 2, 3]).unwrap(), (vec![3], 1));
        let q = ListQuery::parse(Some("per_page=2&page=3")).unwrap();
        assert_eq!(q.page(vec![1, 2, 3]).unwrap_err().status, StatusCode::NOT_FOUND);
        let q = ListQuery::parse(None).unwrap();
        assert_eq!(q.page(Vec::<u8>::new()).unwrap(), (vec![], 1), "page 1 of nothing is empty");
        assert!(ListQuery::parse(Some("status=sick")).is_err());
    }

    #[test]
    fn patterns_compile_and_match() {
        for ok in ["/", "/a/b?c=d", "http://a.example/x", "https://a:8443/"] {
            assert!(matching(URL_PATTERN, ok).is_some(), "{ok}");
        }
        assert_eq!(matching(URL_PATTERN, "/x\n"), Some("/x"));
        for bad in ["", "a", "ftp://x/", "http://a", "/a b", "http://a:99999/"] {
            assert!(matching(URL_PATTERN, bad).is_none(), "{bad}");
        }
        for ip in ["127.0.0.1", "::1", "::", "2001:db8::1", "fe80::1:2:3:4"] {
            let m = matching(IP_PATTERN, ip).unwrap();
            assert!(m.parse::<std::net::IpAddr>().is_ok(), "{ip}");
        }
        for bad in ["256.0.0.1", "1.2.3", "01.2.3.4", ":::", "x"] {
            assert!(matching(IP_PATTERN, bad).is_none(), "{bad}");
        }
        assert!(matching(HEADER_PATTERN, "X-Env: prod").is_some());
        assert!(matching(HEADER_PATTERN, "no colon").is_none());
        assert!(matching(METHOD_PATTERN, "GET").is_some() && matching(METHOD_PATTERN, "get").is_none());
    }
}
