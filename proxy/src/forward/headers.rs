//! Header hygiene between client and server: hop-by-hop headers removed both ways, and the
//! `X-Forwarded-*` family rebuilt from the socket.
//!
//! Order matters: hop-by-hop headers (including every header the `Connection` header names) are
//! removed first and drover's forwarded headers are set afterwards, so a client that lists
//! `X-Forwarded-For` in `Connection` cannot remove what drover adds. Incoming forwarded headers
//! are dropped (also their underscore spellings, which some servers treat as the same header):
//! drover does not trust any peer yet.

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

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `X-Real-Ip`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop headers, those named in `Connection` included. With `keep_upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair survives (a WebSocket handshake being forwarded).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(connection) = headers.get(header::CONNECTION) {
        if let Ok(listed) = connection.to_str() {
            // Rare: collect the names first, since the map cannot change while borrowed.
            let named: Vec<HeaderName> = listed
                .split(',')
                .map(str::trim)
                .filter(|t| !(t.is_empty() || (keep_upgrade && t.eq_ignore_ascii_case("upgrade"))))
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            for name in named {
                headers.remove(name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        if keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // `TE: trailers` is the one TE value allowed end to end; drover does not forward trailers
    // over HTTP/1 yet, so it is dropped with the rest.
}

/// Removes forwarding headers a client sent, in any spelling, so only drover's reach the server.
pub fn drop_client_forwarding(headers: &mut HeaderMap) {
    for name in [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_FORWARDED_PORT,
        &X_REAL_IP,
    ] {
        headers.remove(name);
    }
    headers.remove(header::FORWARDED);
    headers.remove("x-forwarded-server");
    headers.remove("x-forwarded-prefix");
    if headers.keys().any(|k| k.as_str().contains('_')) {
        let underscored: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                let k = k.as_str();
                k.contains('_') && {
                    let dashed = k.replace('_', "-");
                    dashed.starts_with("x-forwarded-") || dashed == "x-real-ip" || dashed == "forwarded"
                }
            })
            .cloned()
            .collect();
        for name in underscored {
            headers.remove(name);
        }
    }
}

/// Per-connection values for the forwarded headers, built once per client connection.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The client's IP address.
    pub client_ip: HeaderValue,
    /// `http` or `https`.
    pub proto: HeaderValue,
    /// The entrypoint's port (used when the Host header names none).
    pub port: HeaderValue,
}

impl Forwarded {
    /// Sets `X-Forwarded-For/Proto/Host/Port` and `X-Real-Ip`. `host` is the Host the client sent.
    pub fn apply(&self, headers: &mut HeaderMap, host: Option<&HeaderValue>) {
        headers.insert(X_FORWARDED_FOR.clone(), self.client_ip.clone());
        headers.insert(X_REAL_IP.clone(), self.client_ip.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), self.proto.clone());
        let mut port = &self.port;
        let explicit_port;
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
            if let Some(p) = host.to_str().ok().and_then(host_port) {
                if let Ok(v) = HeaderValue::from_str(p) {
                    explicit_port = v;
                    port = &explicit_port;
                }
            }
        }
        headers.insert(X_FORWARDED_PORT.clone(), port.clone());
    }
}

/// The port part of a Host header value, if it has one.
fn host_port(host: &str) -> Option<&str> {
    let after_bracket = match host.rfind(']') {
        Some(i) => &host[i + 1..],
        None => host,
    };
    let (_, port) = after_bracket.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("connection", "close, x-forwarded-for, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("x-keep", "y"),
        ]);
        strip_hop_by_hop(&mut h, false);
        drop_client_forwarding(&mut h);
        let fwd = Forwarded {
            client_ip: HeaderValue::from_static("10.1.1.1"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("80"),
        };
        fwd.apply(&mut h, Some(&HeaderValue::from_static("a.local:8443")));
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none() && h.get("keep-alive").is_none() && h.get("te").is_none());
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
        drop_client_forwarding(&mut h);
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
    fn ports_in_host_headers() {
        assert_eq!(host_port("a:80"), Some("80"));
        assert_eq!(host_port("a"), None);
        assert_eq!(host_port("[::1]:9"), Some("9"));
        assert_eq!(host_port("[::1]"), None);
    }
}
