//! Who a request comes from: Traefik's `ipStrategy` and `sourceCriterion`.
//!
//! The middlewares run after drover rebuilt the forwarding headers, so `X-Forwarded-For` is
//! the socket's address alone for an untrusted peer (whatever the client wrote was dropped), and
//! a trusted proxy's list with the socket's address appended otherwise. `depth` therefore counts
//! from drover's own view: depth 1 is the peer itself, depth 2 what a trusted proxy in front said.
//! A client that forges `X-Forwarded-For` moves nothing unless `depth` and `trustedIPs` both
//! trust the hop that could forge it.

use std::net::IpAddr;

use drover_providers::model::middleware::{IpStrategy, SourceCriterion};
use http::header::HeaderName;
use ipnet::IpNet;

use super::{BuildError, Req};
use crate::connection::X_FORWARDED_FOR;

/// `ipStrategy`, compiled.
#[derive(Debug, Clone, Default)]
pub struct Strategy {
    depth: usize,
    excluded: Vec<IpNet>,
    ipv6_subnet: Option<u8>,
}

/// Parses an address or CIDR range.
pub fn range(text: &str) -> Result<IpNet, BuildError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| BuildError(format!("`{text}` is not an IP address or CIDR range")))
}

impl Strategy {
    /// Compiles `ipStrategy` (absent: the socket peer).
    pub fn build(s: Option<&IpStrategy>) -> Result<Self, BuildError> {
        let Some(s) = s else { return Ok(Self::default()) };
        Ok(Self {
            depth: s.depth as usize,
            excluded: s.excluded_ips.iter().map(|t| range(t)).collect::<Result<_, _>>()?,
            ipv6_subnet: s.ipv6_subnet,
        })
    }

    /// The client address by this strategy; `None` when `X-Forwarded-For` has too few entries
    /// or every entry is excluded (Traefik refuses such requests).
    pub fn client(&self, req: &Req<'_>) -> Option<IpAddr> {
        let ip = if self.depth == 0 && self.excluded.is_empty() {
            req.peer
        } else {
            let mut entries: Vec<&str> = Vec::new();
            for value in req.parts.headers.get_all(&X_FORWARDED_FOR) {
                let text = value.to_str().ok()?;
                entries.extend(text.split(',').map(str::trim).filter(|e| !e.is_empty()));
            }
            let text = if self.depth > 0 {
                *entries.len().checked_sub(self.depth).and_then(|i| entries.get(i))?
            } else {
                entries
                    .iter()
                    .rev()
                    .find(|e| e.parse::<IpAddr>().is_ok_and(|ip| !self.excluded.iter().any(|n| n.contains(&ip))))?
            };
            text.parse::<IpAddr>().ok()?.to_canonical()
        };
        Some(self.masked(ip))
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match (ip, self.ipv6_subnet) {
            (IpAddr::V6(v6), Some(bits)) => IpNet::new(IpAddr::V6(v6), bits.min(128)).map_or(ip, |n| n.network()),
            _ => ip,
        }
    }
}

/// `sourceCriterion`, compiled: what requests are counted together.
#[derive(Debug, Clone)]
pub enum Source {
    /// The client address.
    Ip(Strategy),
    /// A request header's value (absent: one shared source).
    Header(HeaderName),
    /// The request's host.
    Host,
}

impl Source {
    /// Compiles `sourceCriterion` (absent: the socket peer).
    pub fn build(c: Option<&SourceCriterion>) -> Result<Self, BuildError> {
        let Some(c) = c else { return Ok(Self::Ip(Strategy::default())) };
        if let Some(name) = &c.request_header_name {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError(format!("`{name}` is not a header name")))?;
            return Ok(Self::Header(name));
        }
        if c.request_host {
            return Ok(Self::Host);
        }
        Ok(Self::Ip(Strategy::build(c.ip_strategy.as_ref())?))
    }

    /// The key of `req`'s source; `None` when the strategy cannot tell.
    pub fn key(&self, req: &Req<'_>) -> Option<Key> {
        match self {
            Self::Ip(s) => s.client(req).map(Key::Ip),
            Self::Header(name) => Some(Key::Text(
                req.parts.headers.get(name).map(|v| v.as_bytes().into()).unwrap_or_default(),
            )),
            Self::Host => Some(Key::Text(
                req.host.map(|h| h.as_bytes().to_ascii_lowercase().into()).unwrap_or_default(),
            )),
        }
    }
}

/// A source, as a map key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address.
    Ip(IpAddr),
    /// A header value or a host.
    Text(Box<[u8]>),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Ip(ip) => write!(f, "{ip}"),
            Key::Text(t) => f.write_str(&String::from_utf8_lossy(t)),
        }
    }
}
