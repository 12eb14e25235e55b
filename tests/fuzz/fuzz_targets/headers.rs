//! The request header cleaning: an HTTP/1 request head → the checks of its target (one
//! authority, Transfer-Encoding, CONNECT), the normalised path, and the headers made fit to
//! forward.
//!
//! Checked besides not crashing: a normalised path is canonical (no empty, `.` or `..` segment)
//! and normalising it again changes nothing; after cleaning, no hop-by-hop header, no header
//! the `Connection` header named and no forged forwarding header is left, and every other
//! header is untouched.
#![no_main]

use drover::connection::{Encoded, PathPolicy};
use drover::forward::headers::{clean_request, strip_hop_by_hop};
use drover::forward::target::{authority, check_request, normalize_path};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use libfuzzer_sys::fuzz_target;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
const FORWARDING: [&str; 8] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "x-real-ip",
    "forwarded",
];

fn is_forwarding_spelling(name: &str) -> bool {
    let dashed = name.replace('_', "-");
    name.contains('_') && (dashed.starts_with("x-forwarded-") || dashed == "x-real-ip" || dashed == "forwarded")
}

/// The names the `Connection` headers list that a cleaning with `keep_upgrade` removes.
fn listed(headers: &HeaderMap, keep_upgrade: bool) -> Vec<HeaderName> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter(|t| !(keep_upgrade && t.eq_ignore_ascii_case("upgrade")))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// `trusted`: `None` for a response (forwarding headers are the request's business),
/// `Some(whether the peer is trusted)` for a request.
fn check_cleaned(before: &HeaderMap, after: &HeaderMap, keep_upgrade: bool, trusted: Option<bool>) {
    let request = trusted.is_some();
    let trusted = trusted.unwrap_or(true);
    for name in HOP_BY_HOP {
        let allowed = keep_upgrade && matches!(name, "connection" | "upgrade");
        // `TE: trailers` goes end to end (RFC 9110 §10.1.4), and only that value.
        if name == "te" && after.contains_key(name) {
            let values: Vec<_> = after.get_all(name).iter().collect();
            assert_eq!(
                values,
                [&HeaderValue::from_static("trailers")],
                "TE other than `trailers` is forwarded"
            );
            continue;
        }
        assert!(allowed || !after.contains_key(name), "hop-by-hop `{name}` is forwarded");
    }
    if keep_upgrade {
        let values: Vec<_> = after.get_all(http::header::CONNECTION).iter().collect();
        assert_eq!(
            values,
            [&HeaderValue::from_static("upgrade")],
            "an upgrade is forwarded with `Connection: upgrade` alone"
        );
    }
    let listed = listed(before, keep_upgrade);
    for name in &listed {
        let reinserted = (keep_upgrade && name == http::header::CONNECTION) || name == http::header::TE;
        assert!(
            reinserted || !after.contains_key(name),
            "`{name}`, listed in Connection, is forwarded"
        );
    }
    for name in after.keys() {
        assert!(!request || !is_forwarding_spelling(name.as_str()), "`{name}` is forwarded");
        assert!(
            trusted || !FORWARDING.contains(&name.as_str()),
            "`{name}` from an untrusted peer is forwarded"
        );
    }
    for name in before.keys() {
        let removed = HOP_BY_HOP.contains(&name.as_str())
            || (!trusted && FORWARDING.contains(&name.as_str()))
            || (request && is_forwarding_spelling(name.as_str()))
            || listed.contains(name);
        if !removed {
            let a: Vec<_> = before.get_all(name).iter().collect();
            let b: Vec<_> = after.get_all(name).iter().collect();
            assert_eq!(a, b, "`{name}` was changed");
        }
    }
}

fn check_path(path: &str, policy: PathPolicy) {
    let Ok(normalised) = normalize_path(path, policy) else { return };
    if !policy.sanitize {
        assert_eq!(normalised, path, "an unsanitised path is forwarded as it came");
        return;
    }
    if path.starts_with('/') {
        let segments: Vec<&str> = normalised.split('/').collect();
        assert!(segments[0].is_empty(), "{path:?} → {normalised:?} lost its leading `/`");
        let (last, inner) = segments[1..]
            .split_last()
            .expect("a path that starts with `/` has a segment after it");
        assert!(
            inner.iter().chain([last]).all(|s| *s != "." && *s != "..") && inner.iter().all(|s| !s.is_empty()),
            "{path:?} → {normalised:?} is not canonical"
        );
    }
    let again = normalize_path(&normalised, policy);
    assert_eq!(
        again.as_deref(),
        Ok(&*normalised),
        "{path:?} → {normalised:?} changes when normalised again"
    );
}

/// The request as hyper would hand it over, with a body that is not yet read (so that the
/// Transfer-Encoding check, which only requests with a body pay for, runs).
fn build(head: &httparse::Request, version: Version) -> Option<Request<String>> {
    let mut builder = Request::builder().method(head.method?).uri(head.path?).version(version);
    for h in head.headers.iter() {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value)) else {
            return None;
        };
        builder = builder.header(name, value);
    }
    builder.body(String::from("x")).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = head.parse(data) else {
        return;
    };
    let version = if head.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let Some(request) = build(&head, version) else { return };
    // What the connection's head scan reports for a head read whole: whether it had a length.
    let length = head.headers.iter().any(|h| h.name.eq_ignore_ascii_case("content-length"));
    let checked = check_request(&request, length);
    let chunked = head.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    assert!(!(length && chunked) || checked.is_err(), "a length beside Transfer-Encoding is refused");
    let _ = authority(&request);
    // The same request as HTTP/2 would bring it (`:authority` and a `host` header may differ).
    if let Some(h2) = build(&head, Version::HTTP_2) {
        let _ = authority(&h2);
    }
    for policy in [
        PathPolicy::default(),
        PathPolicy {
            sanitize: false,
            allowed: 0,
        },
        PathPolicy {
            sanitize: true,
            allowed: Encoded::SLASH
                | Encoded::BACKSLASH
                | Encoded::NUL
                | Encoded::SEMICOLON
                | Encoded::PERCENT
                | Encoded::QUESTION_MARK
                | Encoded::HASH,
        },
    ] {
        check_path(request.uri().path(), policy);
    }
    for keep_upgrade in [false, true] {
        for trusted in [false, true] {
            let mut cleaned = request.headers().clone();
            clean_request(&mut cleaned, keep_upgrade, trusted);
            check_cleaned(request.headers(), &cleaned, keep_upgrade, Some(trusted));
        }
        let mut response = request.headers().clone();
        strip_hop_by_hop(&mut response, keep_upgrade);
        check_cleaned(request.headers(), &response, keep_upgrade, None);
    }
});
