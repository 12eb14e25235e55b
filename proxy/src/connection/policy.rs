//! What an entrypoint asks of the requests it accepts (`entryPoints.<name>.http`), carried by
//! each of its connections so a request reads it without a lookup.

/// Per-entrypoint request hygiene (`entryPoints.<name>.http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathPolicy {
    /// Normalise paths before routing (`sanitizePath`, default true).
    pub sanitize: bool,
    /// Encoded characters allowed in paths, as [`Encoded`] bits.
    pub allowed: u8,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            sanitize: true,
            allowed: 0,
        }
    }
}

/// Encoded characters whose meaning depends on who decodes them, as bits of
/// [`PathPolicy::allowed`].
pub struct Encoded;

impl Encoded {
    /// `%2F`: `/`.
    pub const SLASH: u8 = 1 << 0;
    /// `%5C`: `\`.
    pub const BACKSLASH: u8 = 1 << 1;
    /// `%00`.
    pub const NUL: u8 = 1 << 2;
    /// `%3B`: `;`.
    pub const SEMICOLON: u8 = 1 << 3;
    /// `%25`: `%`.
    pub const PERCENT: u8 = 1 << 4;
    /// `%3F`: `?`.
    pub const QUESTION_MARK: u8 = 1 << 5;
    /// `%23`: `#`.
    pub const HASH: u8 = 1 << 6;
}

/// Which peers may send forwarding headers that are kept (`forwardedHeaders`, Traefik's keys).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    /// Every peer (`insecure = true`).
    pub insecure: bool,
    /// Peers in these ranges (`trustedIPs`).
    pub ranges: Vec<ipnet::IpNet>,
}

impl TrustedProxies {
    /// Does the entrypoint trust forwarding headers from `peer`?
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.insecure || self.ranges.iter().any(|range| range.contains(&peer))
    }
}

/// `entryPoints.<name>.http.redirections.entryPoint`: every plain-HTTP request on the
/// entrypoint is answered with a redirect to another one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The `Location`'s scheme (`https`).
    pub scheme: http::uri::Scheme,
    /// The target entrypoint's port; `None` when it is the scheme's default (443 for https).
    pub port: Option<u16>,
    /// 301/308 rather than 302/307.
    pub permanent: bool,
}
