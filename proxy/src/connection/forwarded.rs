//! What drover tells a server about the client: `X-Forwarded-For/Proto/Host/Port` and
//! `X-Real-Ip`, from the connection, never from what the client sent (those are dropped first,
//! see [`crate::forward::headers`]). The values that depend only on the connection are built once
//! when it is accepted, so a request pays for a few header insertions and nothing else.

use http::header::{HeaderMap, HeaderName, HeaderValue};

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

/// Per-connection values for the forwarded headers, built once per client connection.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The client's IP address.
    pub client_ip: HeaderValue,
    /// `http` or `https`.
    pub proto: HeaderValue,
    /// The entrypoint's port (used when the Host header names none).
    pub port: HeaderValue,
    /// The same port as a number, to reuse `port` when the Host header names it.
    pub port_number: u16,
    /// The peer is a proxy the entrypoint trusts (`forwardedHeaders.trustedIPs`, `insecure`):
    /// the `X-Forwarded-*` and `X-Real-Ip` it sent are kept, its `X-Forwarded-For` appended to.
    pub trusted: bool,
}

impl Forwarded {
    /// Sets `X-Forwarded-For/Proto/Host/Port` and `X-Real-Ip`. `host` is the Host the client sent.
    /// From a trusted peer, the ones it sent are kept and `X-Forwarded-For` is appended to.
    pub fn apply(&self, headers: &mut HeaderMap, host: Option<&HeaderValue>) {
        if self.trusted {
            return self.apply_trusted(headers, host);
        }
        headers.reserve(5);
        headers.insert(X_FORWARDED_FOR.clone(), self.client_ip.clone());
        headers.insert(X_REAL_IP.clone(), self.client_ip.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), self.proto.clone());
        let mut port = self.port.clone();
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
            if let Some(p) = host_port(host.as_bytes()) {
                if std::str::from_utf8(p).ok().and_then(|p| p.parse::<u16>().ok()) != Some(self.port_number) {
                    if let Ok(v) = HeaderValue::from_bytes(p) {
                        port = v;
                    }
                }
            }
        }
        headers.insert(X_FORWARDED_PORT.clone(), port);
    }
}

impl Forwarded {
    fn apply_trusted(&self, headers: &mut HeaderMap, host: Option<&HeaderValue>) {
        let chain: Vec<&[u8]> = headers.get_all(&X_FORWARDED_FOR).iter().map(HeaderValue::as_bytes).collect();
        let for_value = if chain.is_empty() {
            self.client_ip.clone()
        } else {
            let mut joined = chain.join(&b", "[..]);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(self.client_ip.as_bytes());
            // Joined header values and an IP address are still a valid header value.
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| self.client_ip.clone())
        };
        headers.insert(X_FORWARDED_FOR.clone(), for_value);
        let mut keep_or = |name: &HeaderName, value: HeaderValue| {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value);
            }
        };
        keep_or(&X_REAL_IP, self.client_ip.clone());
        keep_or(&X_FORWARDED_PROTO, self.proto.clone());
        if let Some(host) = host {
            keep_or(&X_FORWARDED_HOST, host.clone());
        }
        let port = host
            .and_then(|h| host_port(h.as_bytes()))
            .and_then(|p| HeaderValue::from_bytes(p).ok())
            .unwrap_or_else(|| self.port.clone());
        keep_or(&X_FORWARDED_PORT, port);
    }
}

/// The port part of a Host header value, if it has one: the digits after its last colon
/// (`[::1]:9` has one, `[::1]` has none).
fn host_port(host: &[u8]) -> Option<&[u8]> {
    let digits = host.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let colon = host.len().checked_sub(digits + 1)?;
    (digits > 0 && host[colon] == b':').then(|| &host[colon + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_port_is_the_host_headers_or_the_entrypoints() {
        let fwd = Forwarded {
            client_ip: HeaderValue::from_static("10.1.1.1"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("8080"),
            port_number: 8080,
            trusted: false,
        };
        for (host, port) in [(Some("a:8080"), "8080"), (Some("a:9"), "9"), (Some("a"), "8080"), (None, "8080")] {
            let mut h = HeaderMap::new();
            fwd.apply(&mut h, host.map(HeaderValue::from_static).as_ref());
            assert_eq!(h["x-forwarded-port"], port, "{host:?}");
            assert_eq!(h.get("x-forwarded-host").map(|v| v.to_str().unwrap()), host);
        }
    }

    #[test]
    fn ports_in_host_headers() {
        assert_eq!(host_port(b"a:80"), Some(&b"80"[..]));
        assert_eq!(host_port(b"a"), None);
        assert_eq!(host_port(b"a:"), None);
        assert_eq!(host_port(b"80"), None);
        assert_eq!(host_port(b"[::1]:9"), Some(&b"9"[..]));
        assert_eq!(host_port(b"[::1]"), None);
    }

    #[test]
    fn a_trusted_proxys_headers_are_kept_and_its_chain_appended_to() {
        let fwd = Forwarded {
            client_ip: HeaderValue::from_static("10.0.0.2"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("80"),
            port_number: 80,
            trusted: true,
        };
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("2.2.2.2"));
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
        h.insert(X_REAL_IP.clone(), HeaderValue::from_static("1.1.1.1"));
        fwd.apply(&mut h, Some(&HeaderValue::from_static("a.test")));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.2");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_REAL_IP], "1.1.1.1");
        assert_eq!(h[&X_FORWARDED_HOST], "a.test");
        assert_eq!(h[&X_FORWARDED_PORT], "80");
        let mut fresh = HeaderMap::new();
        fwd.apply(&mut fresh, None);
        assert_eq!(fresh[&X_FORWARDED_FOR], "10.0.0.2");
        assert_eq!(fresh[&X_REAL_IP], "10.0.0.2");
    }
}
