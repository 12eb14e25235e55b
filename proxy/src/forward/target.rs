//! What a request is for: one authority and one path, checked and normalised before routing, so
//! that what a router matched is exactly what the server receives.
//!
//! # One authority
//!
//! A request can name its host twice: in the target (`GET http://a.test/ HTTP/1.1`, or HTTP/2's
//! `:authority`) and in a `Host` header. If drover routed by one and forwarded the other, a
//! client could reach `a.test`'s server with `Host: b.test`, past anything that trusts the
//! router's choice. So exactly one authority is chosen, it routes the request, and it is the one
//! forwarded (`Host` with `passHostHeader`, `X-Forwarded-Host` always):
//! * HTTP/1 in absolute form: the target's authority; the `Host` header is ignored, as RFC 9112
//!   §3.2.2 tells a proxy to do.
//! * HTTP/2: `:authority`; a `host` header that differs makes the request malformed (RFC 9113
//!   §8.3.1): 400.
//! * Otherwise the `Host` header. An HTTP/1.1 request without one, any request with two (equal
//!   or not), and a value that is not a host with an optional port (spaces, control bytes, a
//!   port that is no number) are answered 400 (RFC 9112 §3.2).
//!
//! # One path
//!
//! As Traefik v3 does by default (`sanitizePath`), the path is normalised before routing:
//! percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`), `//` is merged
//! and dot segments are removed (RFC 3986 §5.2.4). Without it, `/api/../admin` and
//! `/api/%2e%2e/admin` match `PathPrefix(/api)` and a server that normalises serves `/admin` to a
//! request the `/admin` router (and its middlewares) never saw. The normalised path is the one
//! forwarded; the query is left as it came.
//!
//! Encoded characters that change a path's meaning depending on who decodes it (`%2F`, `%5C`,
//! `%00`, `%3B`, `%25`, `%3F`, `%23`) are refused with 400, each unless the entrypoint allows it
//! (`http.encodedCharacters.allowEncodedSlash`, …, Traefik's keys). They are kept encoded when
//! allowed.
//!
//! The common request (a clean path, one valid `Host`) costs one pass over the path's and the
//! host's bytes and allocates nothing.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};

use crate::connection::{Encoded, PathPolicy};

/// Why a request is answered locally instead of routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400, with the body text.
    BadRequest(&'static str),
    /// 405, with the body text.
    MethodNotAllowed(&'static str),
}

/// Checks what `req` asks for that no router may see: `CONNECT`, the asterisk form, and any
/// Transfer-Encoding but one `chunked` line (`chunked, chunked`, `,chunked`, two lines, `gzip,
/// chunked`, or any on HTTP/1.0: hyper reads some of these as chunked, a server behind drover may
/// not, which is how requests are smuggled; RFC 9112 §6.1, as nginx refuses them).
/// A Content-Length beside the Transfer-Encoding is refused too (as nginx does), when the
/// connection saw it in the head (`head_had_length`): hyper drops the length before the head
/// reaches drover (see `connection::activity`). Where it could not be seen, hyper's reading
/// stands: chunked, and only that framing is forwarded.
pub fn check_request<B: http_body::Body>(req: &Request<B>, head_had_length: bool) -> Result<(), Refusal> {
    // hyper reads a body wherever there is a Transfer-Encoding: only requests that carry one pay
    // the header lookup.
    if !req.body().is_end_stream() {
        let mut codings = req.headers().get_all(header::TRANSFER_ENCODING).iter();
        if let Some(first) = codings.next() {
            if codings.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked") || req.version() == Version::HTTP_10 {
                return Err(Refusal::BadRequest(
                    "400 Bad Request: Transfer-Encoding must be one `chunked` on HTTP/1.1\n",
                ));
            }
            if head_had_length {
                return Err(Refusal::BadRequest(
                    "400 Bad Request: Content-Length and Transfer-Encoding together (RFC 9112 §6.1)\n",
                ));
            }
        }
    }
    if req.method() == Method::CONNECT {
        return Err(Refusal::MethodNotAllowed(
            "405 Method Not Allowed: drover does not tunnel CONNECT requests\n",
        ));
    }
    if req.uri().path() == "*" && req.method() != Method::OPTIONS {
        return Err(Refusal::BadRequest("400 Bad Request: the asterisk form (*) is only for OPTIONS\n"));
    }
    Ok(())
}

/// The one authority of `req` (see the module docs): `None` only for an HTTP/1.0 request without
/// any.
pub fn authority<B>(req: &Request<B>) -> Result<Option<HeaderValue>, Refusal> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::BadRequest("400 Bad Request: more than one Host header\n"));
    }
    let chosen = match (req.uri().authority(), host) {
        (Some(target), host) => {
            if req.version() == Version::HTTP_2 && host.is_some_and(|h| h.as_bytes() != target.as_str().as_bytes()) {
                return Err(Refusal::BadRequest("400 Bad Request: the host header differs from :authority\n"));
            }
            match host.filter(|h| h.as_bytes() == target.as_str().as_bytes()) {
                Some(same) => same.clone(),
                None => HeaderValue::from_str(target.as_str())
                    .map_err(|_| Refusal::BadRequest("400 Bad Request: the request target's authority is invalid\n"))?,
            }
        }
        (None, Some(host)) => host.clone(),
        (None, None) if req.version() == Version::HTTP_11 => {
            return Err(Refusal::BadRequest("400 Bad Request: an HTTP/1.1 request needs a Host header\n"));
        }
        (None, None) => return Ok(None),
    };
    if !valid_authority(chosen.as_bytes()) {
        return Err(Refusal::BadRequest("400 Bad Request: the Host header is not a valid host[:port]\n"));
    }
    Ok(Some(chosen))
}

/// `host[:port]` with a registered name, an IPv4 address or a bracketed IPv6 address (RFC 3986
/// §3.2.2), and a port of at most five digits and 65535.
fn valid_authority(value: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &rest[..end];
        let ok = !inside.is_empty() && inside.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        match &rest[end + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (host, port) = match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        };
        let ok = !host.is_empty() && host.iter().all(|&b| reg_name_byte(b));
        (ok, port)
    };
    host_ok
        && port.is_none_or(|p| {
            p.len() <= 5 && p.iter().all(u8::is_ascii_digit) && p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
        })
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2).
fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
}

/// The [`Encoded`] bit of a decoded byte that must stay encoded, with the refusal's text.
fn encoded_bit(byte: u8) -> Option<(u8, &'static str)> {
    Some(match byte {
        b'/' => (
            Encoded::SLASH,
            "400 Bad Request: an encoded slash (%2F) in the path is not allowed here\n",
        ),
        b'\\' => (
            Encoded::BACKSLASH,
            "400 Bad Request: an encoded backslash (%5C) in the path is not allowed here\n",
        ),
        0 => (
            Encoded::NUL,
            "400 Bad Request: an encoded NUL (%00) in the path is not allowed here\n",
        ),
        b';' => (
            Encoded::SEMICOLON,
            "400 Bad Request: an encoded semicolon (%3B) in the path is not allowed here\n",
        ),
        b'%' => (
            Encoded::PERCENT,
            "400 Bad Request: an encoded percent sign (%25) in the path is not allowed here\n",
        ),
        b'?' => (
            Encoded::QUESTION_MARK,
            "400 Bad Request: an encoded question mark (%3F) in the path is not allowed here\n",
        ),
        b'#' => (
            Encoded::HASH,
            "400 Bad Request: an encoded hash (%23) in the path is not allowed here\n",
        ),
        _ => return None,
    })
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path to route and forward: `path` itself when nothing needs doing (the common case, no
/// allocation), else its normalised form (see the module docs).
pub fn normalize_path<'a>(path: &'a str, policy: PathPolicy) -> Result<Cow<'a, str>, Refusal> {
    let bytes = path.as_bytes();
    let mut needs_work = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) else {
                    return Err(Refusal::BadRequest("400 Bad Request: malformed percent-encoding in the path\n"));
                };
                let decoded = hi << 4 | lo;
                if let Some((bit, why)) = encoded_bit(decoded) {
                    if policy.allowed & bit == 0 {
                        return Err(Refusal::BadRequest(why));
                    }
                }
                needs_work |= policy.sanitize && unreserved(decoded);
            }
            // Servers on Windows read a raw `\` as `/`: a path drover routes as one segment
            // would be served as two. Refused unless the encoded form is allowed.
            b'\\' if policy.allowed & Encoded::BACKSLASH == 0 => {
                return Err(Refusal::BadRequest(
                    "400 Bad Request: a backslash in the path is not allowed here\n",
                ));
            }
            b'/' if policy.sanitize => {
                // `//`, `/.` at a segment start (dot segments), or a trailing `/.`.
                needs_work |= matches!(bytes.get(i + 1), Some(b'/' | b'.'));
            }
            _ => {}
        }
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    // Decode the unreserved characters, keep every other escape as it came.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = hi << 4 | lo;
                if unreserved(c) {
                    decoded.push(char::from(c));
                    i += 3;
                    continue;
                }
            }
            decoded.push_str(&path[i..i + 3]);
            i += 3;
        } else {
            let next = path[i..].find('%').map_or(bytes.len(), |n| i + n);
            decoded.push_str(&path[i..next]);
            i = next;
        }
    }
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// Merges empty segments and removes `.` and `..` segments (RFC 3986 §5.2.4); `..` never climbs
/// above the root. A path that ended in a directory (`/a/`, `/a/.`, `/a/..`) keeps its final `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().version(version).uri(target);
        for h in hosts {
            builder = builder.header("host", *h);
        }
        builder.body(()).expect("test request")
    }

    #[test]
    fn the_target_authority_wins_over_host_in_http1_and_must_agree_in_http2() {
        let absolute = request(Version::HTTP_11, "http://a.test/x", &["b.test"]);
        assert_eq!(authority(&absolute).unwrap().unwrap(), "a.test");
        let h2 = request(Version::HTTP_2, "https://a.test/x", &["b.test"]);
        assert!(matches!(authority(&h2), Err(Refusal::BadRequest(w)) if w.contains(":authority")));
        let h2_same = request(Version::HTTP_2, "https://a.test:8443/x", &["a.test:8443"]);
        assert_eq!(authority(&h2_same).unwrap().unwrap(), "a.test:8443");
        let h2_only = request(Version::HTTP_2, "https://a.test/x", &[]);
        assert_eq!(authority(&h2_only).unwrap().unwrap(), "a.test");
        let origin = request(Version::HTTP_11, "/x", &["Web.Test:8080"]);
        assert_eq!(authority(&origin).unwrap().unwrap(), "Web.Test:8080");
    }

    #[test]
    fn missing_repeated_and_invalid_hosts_are_refused() {
        assert!(authority(&request(Version::HTTP_11, "/", &[])).is_err());
        assert_eq!(authority(&request(Version::HTTP_10, "/", &[])).unwrap(), None);
        assert!(authority(&request(Version::HTTP_11, "/", &["a.test", "a.test"])).is_err());
        assert!(authority(&request(Version::HTTP_11, "/", &["a.test", "b.test"])).is_err());
        for bad in [
            "a b",
            "a.test:80x",
            "a.test:99999",
            "a.test:123456",
            "",
            ":80",
            "a:b:c",
            "[::1",
            "[::1]x",
            "[zz]",
            "a\tb",
            "a/b",
            "a@b",
        ] {
            let req = Request::builder()
                .uri("/")
                .header("host", HeaderValue::from_bytes(bad.as_bytes()).expect("a header value"))
                .body(())
                .unwrap();
            assert!(authority(&req).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "a.test",
            "a.test:8080",
            "a.test:",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "xn--bcher-kva.example",
            "a_b.test",
        ] {
            assert!(valid_authority(good.as_bytes()), "{good:?} should be accepted");
        }
    }

    #[test]
    fn connect_the_asterisk_form_and_odd_transfer_encodings_are_refused() {
        let empty = http_body_util::Empty::<bytes::Bytes>::new;
        let connect = Request::builder().method(Method::CONNECT).uri("a.test:443").body(empty()).unwrap();
        assert!(matches!(check_request(&connect, false), Err(Refusal::MethodNotAllowed(_))));
        let star = Request::builder().method(Method::GET).uri("*").body(empty()).unwrap();
        assert!(matches!(check_request(&star, false), Err(Refusal::BadRequest(_))));
        let options = Request::builder().method(Method::OPTIONS).uri("*").body(empty()).unwrap();
        assert!(check_request(&options, false).is_ok());
        let with_te = |te: &[&str], version| {
            let mut req = Request::builder().method(Method::POST).uri("/").version(version);
            for t in te {
                req = req.header("transfer-encoding", *t);
            }
            req.body(http_body_util::Full::new(bytes::Bytes::from_static(b"x"))).unwrap()
        };
        assert!(check_request(&with_te(&["chunked"], Version::HTTP_11), false).is_ok());
        assert!(
            matches!(check_request(&with_te(&["chunked"], Version::HTTP_11), true), Err(Refusal::BadRequest(why)) if why.contains("Content-Length")),
            "a length seen in the head beside chunked"
        );
        for (te, version) in [
            (&["chunked, chunked"][..], Version::HTTP_11),
            (&[",chunked"], Version::HTTP_11),
            (&["chunked", "chunked"], Version::HTTP_11),
            (&["gzip, chunked"], Version::HTTP_11),
            (&["chunked"], Version::HTTP_10),
        ] {
            assert!(
                matches!(check_request(&with_te(te, version), false), Err(Refusal::BadRequest(_))),
                "{te:?}"
            );
        }
    }

    fn norm(path: &str) -> Result<String, Refusal> {
        normalize_path(path, PathPolicy::default()).map(Cow::into_owned)
    }

    #[test]
    fn paths_are_normalised_as_rfc_3986_removes_dot_segments() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/users", "/api/users"),
            ("/api/../admin/x", "/admin/x"),
            ("/api/%2e%2e/admin/x", "/admin/x"),
            ("/api/%2E%2E/admin/x", "/admin/x"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%41%7e%2d", "/A~-"),
            ("/a/%20b", "/a/%20b"),
            ("/a.b/.c/..d", "/a.b/.c/..d"),
            ("//", "/"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
        assert!(matches!(normalize_path("/clean/path", PathPolicy::default()), Ok(Cow::Borrowed(_))));
        let off = PathPolicy {
            sanitize: false,
            allowed: 0,
        };
        assert_eq!(normalize_path("/a/../b", off).unwrap(), "/a/../b");
        assert!(
            normalize_path("/a%2Fb", off).is_err(),
            "encoded characters are checked without sanitizing too"
        );
    }

    #[test]
    fn ambiguous_encodings_are_refused_unless_allowed() {
        for (raw, bit) in [
            ("/a%2Fb", Encoded::SLASH),
            ("/a%2fb", Encoded::SLASH),
            ("/a%5Cb", Encoded::BACKSLASH),
            ("/a\\..\\b", Encoded::BACKSLASH),
            ("/a%00", Encoded::NUL),
            ("/a%3Bb", Encoded::SEMICOLON),
            ("/a%25b", Encoded::PERCENT),
            ("/a%3Fb", Encoded::QUESTION_MARK),
            ("/a%23b", Encoded::HASH),
        ] {
            assert!(norm(raw).is_err(), "{raw}");
            let allowed = normalize_path(
                raw,
                PathPolicy {
                    sanitize: true,
                    allowed: bit,
                },
            )
            .expect("allowed");
            assert_eq!(allowed, raw, "kept encoded");
        }
        for malformed in ["/a%", "/a%2", "/a%zz", "/a%2g"] {
            assert!(norm(malformed).is_err(), "{malformed}");
        }
    }
}
