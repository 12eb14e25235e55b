//! Header hygiene between client and server: hop-by-hop headers removed both ways, and the
//! forwarding headers a client may have forged dropped (drover's own are set from the
//! connection, see [`crate::connection::Forwarded`]).
//!
//! Order matters: hop-by-hop headers (including every header the `Connection` header names) are
//! removed first and drover's forwarded headers are set afterwards, so a client that lists
//! `X-Forwarded-For` in `Connection` cannot remove what drover adds. Incoming forwarded headers
//! are dropped (also their underscore spellings, which some servers treat as the same header),
//! except from a peer the entrypoint trusts (`forwardedHeaders.trustedIPs`), whose canonical
//! ones are kept and appended to (see [`crate::connection::Forwarded`]).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that only mean something for one connection (RFC 9110 §7.6.1, plus legacy ones).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
/// Bits of [`HOP_BY_HOP`] that survive when an upgrade is being forwarded.
const UPGRADE_PAIR: u8 = 1 << 0 | 1 << 7;
/// The bit of `TE` in [`HOP_BY_HOP`].
const TE_BIT: u8 = 1 << 4;

/// Where a header name stands for the hygiene rules. Requests and responses are checked with
/// one pass over their names, so the common case (nothing to remove) costs no hashing at all.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Hop-by-hop: the bit of its index in [`HOP_BY_HOP`].
    HopByHop(u8),
    /// A forwarding header a client may have forged.
    Forwarding,
    /// Contains `_`: maybe a forwarding header in an underscore spelling.
    Underscored,
    /// Anything else.
    Other,
}

fn kind(name: &HeaderName) -> Kind {
    match name.as_str() {
        "connection" => Kind::HopByHop(1 << 0),
        "keep-alive" => Kind::HopByHop(1 << 1),
        "proxy-connection" => Kind::HopByHop(1 << 2),
        "proxy-authenticate" => Kind::HopByHop(1 << 3),
        "te" => Kind::HopByHop(TE_BIT),
        "trailer" => Kind::HopByHop(1 << 5),
        "transfer-encoding" => Kind::HopByHop(1 << 6),
        "upgrade" => Kind::HopByHop(1 << 7),
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-forwarded-port" | "x-real-ip" | "forwarded"
        | "x-forwarded-server" | "x-forwarded-prefix" => Kind::Forwarding,
        other if other.bytes().any(|b| b == b'_') => Kind::Underscored,
        _ => Kind::Other,
    }
}

/// What one pass over a header map found.
#[derive(Default)]
struct Scan {
    /// Bits of the [`HOP_BY_HOP`] headers present.
    hop_by_hop: u8,
    /// A forwarding header, or a name with `_` that may be one.
    forwarding: bool,
}

fn scan(headers: &HeaderMap) -> Scan {
    let mut found = Scan::default();
    for name in headers.keys() {
        match kind(name) {
            Kind::HopByHop(bit) => found.hop_by_hop |= bit,
            Kind::Forwarding | Kind::Underscored => found.forwarding = true,
            Kind::Other => {}
        }
    }
    found
}

/// Removes hop-by-hop headers, those named in `Connection` included. With `keep_upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair survives (a WebSocket handshake being forwarded).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let found = scan(headers);
    remove_hop_by_hop(headers, found.hop_by_hop, keep_upgrade);
}

/// A client's request headers made fit to forward: hop-by-hop headers removed (see
/// [`strip_hop_by_hop`]) and so are forwarding headers the client sent (in any spelling; from a
/// `trusted` peer only the underscore spellings), with one pass over the names.
pub fn clean_request(headers: &mut HeaderMap, keep_upgrade: bool, trusted: bool) {
    let found = scan(headers);
    remove_hop_by_hop(headers, found.hop_by_hop, keep_upgrade);
    if found.forwarding {
        remove_forwarding(headers, trusted);
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap, mut present: u8, keep_upgrade: bool) {
    // `trailers` is the one TE value that goes end to end (RFC 9110 §10.1.4): it tells the
    // server the client takes trailers (gRPC needs it), which drover passes through. Read
    // before `Connection` is applied: a client that sends TE also lists it there, as it must.
    let trailers = present & TE_BIT != 0 && accepts_trailers(headers);
    if present & 1 != 0 {
        remove_listed(headers, keep_upgrade);
    }
    if keep_upgrade {
        present &= !UPGRADE_PAIR;
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Some `TE` value lists `trailers`.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")))
        })
    })
}

/// Removes the headers every `Connection` value lists (the fixed hop-by-hop set is removed by
/// the caller).
fn remove_listed(headers: &mut HeaderMap, keep_upgrade: bool) {
    // The values are cheap to clone (shared bytes) and must be, since the map changes below.
    let mut values = headers.get_all(header::CONNECTION).iter();
    let first = values.next().cloned();
    let rest: Vec<HeaderValue> = values.cloned().collect();
    for value in first.iter().chain(&rest) {
        let Ok(listed) = value.to_str() else { continue };
        for token in listed.split(',').map(str::trim) {
            let skip = token.is_empty()
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close")
                || (keep_upgrade && token.eq_ignore_ascii_case("upgrade"));
            if !skip {
                // A token that is no valid header name removes nothing.
                headers.remove(token);
            }
        }
    }
}

/// Removes forwarding headers a client sent, in any spelling (with `keep_canonical`, only the
/// underscore spellings), so only drover's, or a trusted proxy's, reach the server.
fn remove_forwarding(headers: &mut HeaderMap, keep_canonical: bool) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| match kind(name) {
            Kind::Forwarding => !keep_canonical,
            Kind::Underscored => {
                let dashed = name.as_str().replace('_', "-");
                dashed.starts_with("x-forwarded-") || dashed == "x-real-ip" || dashed == "forwarded"
            }
            Kind::HopByHop(_) | Kind::Other => false,
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Forwarded;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn connection_listed_headers_are_removed_but_cannot_remove_ours() {
        let mut h = map(&[
            ("connection", "close, x-forwarded-for, x-secret, te"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("x-keep", "y"),
        ]);
        clean_request(&mut h, false, false);
        let fwd = Forwarded {
            client_ip: HeaderValue::from_static("10.1.1.1"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("80"),
            port_number: 80,
            trusted: false,
        };
        fwd.apply(&mut h, Some(&HeaderValue::from_static("a.local:8443")));
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none() && h.get("keep-alive").is_none());
        assert_eq!(h["te"], "trailers", "the one TE value that goes end to end");
        assert_eq!(h["x-keep"], "y");
        assert_eq!(h["x-forwarded-for"], "10.1.1.1");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-forwarded-host"], "a.local:8443");
    }

    #[test]
    fn spoofed_forwarding_headers_are_dropped_in_every_spelling() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("X_Forwarded_For", "1.2.3.4"),
            ("x_real_ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x_other", "kept"),
        ]);
        clean_request(&mut h, false, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x_other"], "kept");
    }

    #[test]
    fn upgrade_survives_only_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("upgrade").is_none());
    }

    #[test]
    fn the_hop_by_hop_bits_follow_the_table() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert!(kind(name) == Kind::HopByHop(1 << i), "{name}");
        }
        assert!(UPGRADE_PAIR == (1 << 0 | 1 << 7) && HOP_BY_HOP[0] == header::CONNECTION && HOP_BY_HOP[7] == header::UPGRADE);
    }

    #[test]
    fn a_clean_request_keeps_everything_and_a_keep_alive_response_loses_only_that() {
        let mut h = map(&[("host", "a"), ("user-agent", "x"), ("accept", "*/*")]);
        clean_request(&mut h, false, false);
        assert_eq!(h.len(), 3);
        let mut h = map(&[("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("content-length", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["content-length"], "1");
        // Every Connection value counts, not just the first.
        let mut h = map(&[("connection", "keep-alive"), ("connection", "x-a"), ("x-a", "1"), ("x-b", "2")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-b"], "2");
    }

    #[test]
    fn a_trusted_peers_forwarding_headers_are_kept_but_not_their_underscore_spellings() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-real-ip", "1.2.3.4"),
        ]);
        clean_request(&mut h, false, true);
        assert_eq!(h.len(), 2);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4");
        assert!(h.get("x_forwarded_for").is_none());
    }
}
