//! How a load balancer chooses a server, validated: the strategy (`wrr`, `p2c`, `hrw`,
//! `leasttime`, or drover's consistent `hash` on a request key) and the sticky cookie.
//!
//! Bad values never take a service down: each is reported with its key and the default is used,
//! as for health settings.

use serde::Serialize;

use crate::model::{self, StickyCookie};

/// The balancing strategy of one load balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Smooth weighted round robin (the default).
    #[default]
    Wrr,
    /// Least outstanding requests between two random servers (power of two choices).
    P2c,
    /// Rendezvous (highest random weight) hashing on the client IP.
    Hrw,
    /// Least average time to the response head, scaled by outstanding requests and weight.
    LeastTime,
    /// drover: consistent hashing (ketama) on a request key.
    Hash(HashKey),
}

/// What a consistent hash is computed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value (`header:X-User`).
    Header(http::HeaderName),
    /// A cookie's value (`cookie:sid`).
    Cookie(String),
    /// The request path.
    Path,
    /// The client's IP address.
    ClientIp,
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
            HashKey::Path => f.write_str("path"),
            HashKey::ClientIp => f.write_str("clientip"),
        }
    }
}

impl Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl HashKey {
    /// Parses `header:<Name>`, `cookie:<name>`, `path` or `clientip`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((kind, arg)) = text.split_once(':') {
            let arg = arg.trim();
            if arg.is_empty() {
                return Err(format!("`{text}` names no {kind}"));
            }
            return match kind.trim().to_ascii_lowercase().as_str() {
                "header" => http::HeaderName::from_bytes(arg.as_bytes())
                    .map(HashKey::Header)
                    .map_err(|_| format!("`{arg}` is not a header name")),
                "cookie" if arg.bytes().all(is_token) => Ok(HashKey::Cookie(arg.to_string())),
                "cookie" => Err(format!("`{arg}` is not a cookie name")),
                other => Err(format!("unknown key kind `{other}` (known: header:, cookie:, path, clientip)")),
            };
        }
        match text.to_ascii_lowercase().as_str() {
            "path" => Ok(HashKey::Path),
            "clientip" => Ok(HashKey::ClientIp),
            _ => Err(format!(
                "unknown key `{text}` (known: header:<Name>, cookie:<name>, path, clientip)"
            )),
        }
    }
}

/// `SameSite` attribute values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SameSite {
    /// `SameSite=None`.
    None,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
}

/// A sticky cookie, validated, with its defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CookieSpec {
    /// The cookie's name.
    pub name: String,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`, when set.
    pub same_site: Option<SameSite>,
    /// `Max-Age` in seconds; 0 is a session cookie.
    pub max_age: i64,
    /// `Path`.
    pub path: String,
    /// `Domain`, when set.
    pub domain: Option<String>,
}

/// RFC 6265 token characters (cookie names).
fn is_token(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// FNV-1a, 64 bits: a stable hash (the same in every drover version and on every host), used
/// for default cookie names and cookie values.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl CookieSpec {
    /// Validates `cookie` of service `service` (qualified), configured at `at` (a key path).
    /// Problems go to `errors` and the default is used instead.
    pub fn resolve(cookie: &StickyCookie, service: &str, at: &str, errors: &mut Vec<String>) -> Self {
        let default_name = format!("_{:05x}", fnv1a(&[service.as_bytes()]) & 0xf_ffff);
        let name = match cookie.name.as_deref().map(str::trim) {
            None | Some("") => default_name,
            Some(name) if name.bytes().all(is_token) => name.to_string(),
            Some(name) => {
                errors.push(format!("{at}.name: `{name}` is not a valid cookie name; `{default_name}` is used"));
                default_name
            }
        };
        let same_site = match cookie.same_site.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
            None => None,
            Some(s) if s.is_empty() || s == "default" => None,
            Some(s) if s == "none" => Some(SameSite::None),
            Some(s) if s == "lax" => Some(SameSite::Lax),
            Some(s) if s == "strict" => Some(SameSite::Strict),
            Some(s) => {
                errors.push(format!(
                    "{at}.sameSite: `{s}` is not none, lax or strict; the attribute is left out"
                ));
                None
            }
        };
        let path = match cookie.path.as_deref() {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic() && b != b';') => p.to_string(),
            Some(p) => {
                errors.push(format!("{at}.path: `{p}` is not a path; `/` is used"));
                "/".to_string()
            }
        };
        let domain = match cookie.domain.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) if d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') => Some(d.to_string()),
            Some(d) => {
                errors.push(format!("{at}.domain: `{d}` is not a domain; the attribute is left out"));
                None
            }
        };
        Self {
            name,
            secure: cookie.secure.unwrap_or(false),
            http_only: cookie.http_only.unwrap_or(false),
            same_site,
            max_age: cookie.max_age.unwrap_or(0),
            path,
            domain,
        }
    }

    /// The `Set-Cookie` value that pins `value`.
    pub fn set_cookie(&self, value: &str) -> String {
        let mut out = format!("{}={value}; Path={}", self.name, self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.max_age > 0 {
            out.push_str(&format!("; Max-Age={}", self.max_age));
        } else if self.max_age < 0 {
            // Traefik: a negative maxAge deletes the cookie.
            out.push_str("; Max-Age=0");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        match self.same_site {
            Some(SameSite::None) => out.push_str("; SameSite=None"),
            Some(SameSite::Lax) => out.push_str("; SameSite=Lax"),
            Some(SameSite::Strict) => out.push_str("; SameSite=Strict"),
            None => {}
        }
        out
    }
}

/// The choice settings of one load balancer, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    /// The strategy.
    pub strategy: Strategy,
    /// The sticky cookie, if any.
    pub sticky: Option<CookieSpec>,
}

impl Choice {
    /// Validates `lb`'s `strategy`, `hash` and `sticky` for service `service` (qualified), whose
    /// key path is `at` (`http.services.s.loadBalancer`). Problems go to `errors`.
    pub fn resolve(lb: &model::LoadBalancer, service: &str, at: &str, errors: &mut Vec<String>) -> Self {
        let mut strategy = match lb.strategy.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
            None => Strategy::Wrr,
            Some(s) => match s.as_str() {
                "" | "wrr" => Strategy::Wrr,
                "p2c" => Strategy::P2c,
                "hrw" => Strategy::Hrw,
                "leasttime" => Strategy::LeastTime,
                other => {
                    errors.push(format!(
                        "{at}.strategy: `{other}` is not wrr, p2c, hrw or leasttime; smooth weighted round robin (wrr) is used"
                    ));
                    Strategy::Wrr
                }
            },
        };
        if let Some(hash) = &lb.hash {
            match HashKey::parse(&hash.key) {
                Ok(key) => strategy = Strategy::Hash(key),
                Err(e) => errors.push(format!("{at}.hash.key: {e}; the strategy is used instead")),
            }
        }
        let sticky = lb
            .sticky
            .as_ref()
            .and_then(|s| s.cookie.as_ref())
            .map(|c| CookieSpec::resolve(c, service, &format!("{at}.sticky.cookie"), errors));
        Self { strategy, sticky }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_parse_and_bad_ones_say_why() {
        assert_eq!(
            HashKey::parse("header:X-User"),
            Ok(HashKey::Header(http::HeaderName::from_static("x-user")))
        );
        assert_eq!(HashKey::parse("cookie:sid"), Ok(HashKey::Cookie("sid".into())));
        assert_eq!(HashKey::parse("Path"), Ok(HashKey::Path));
        assert_eq!(HashKey::parse("clientip"), Ok(HashKey::ClientIp));
        assert!(HashKey::parse("header:").unwrap_err().contains("names no header"));
        assert!(HashKey::parse("query:x").unwrap_err().contains("unknown key kind `query`"));
        assert!(HashKey::parse("host").unwrap_err().contains("unknown key `host`"));
    }

    #[test]
    fn strategies_resolve_and_unknown_ones_fall_back_to_wrr_with_the_key_named() {
        let mut errors = Vec::new();
        let lb = |s: &str| model::LoadBalancer {
            strategy: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(Choice::resolve(&lb("P2C"), "s@file", "k", &mut errors).strategy, Strategy::P2c);
        assert_eq!(
            Choice::resolve(&lb("leasttime"), "s@file", "k", &mut errors).strategy,
            Strategy::LeastTime
        );
        assert!(errors.is_empty());
        assert_eq!(
            Choice::resolve(&lb("drr"), "s@file", "http.services.s.loadBalancer", &mut errors).strategy,
            Strategy::Wrr
        );
        assert!(errors[0].starts_with("http.services.s.loadBalancer.strategy: `drr`"), "{errors:?}");
    }

    #[test]
    fn cookies_get_defaults_and_render_their_attributes() {
        let mut errors = Vec::new();
        let spec = CookieSpec::resolve(&StickyCookie::default(), "s@file", "k", &mut errors);
        assert!(spec.name.starts_with('_') && spec.name.len() == 6, "{}", spec.name);
        assert_eq!(spec.set_cookie("v"), format!("{}=v; Path=/", spec.name));
        let full = StickyCookie {
            name: Some("sid".into()),
            secure: Some(true),
            http_only: Some(true),
            same_site: Some("Strict".into()),
            max_age: Some(60),
            path: Some("/app".into()),
            domain: Some("example.com".into()),
        };
        let spec = CookieSpec::resolve(&full, "s@file", "k", &mut errors);
        assert_eq!(
            spec.set_cookie("abc"),
            "sid=abc; Path=/app; Domain=example.com; Max-Age=60; HttpOnly; Secure; SameSite=Strict"
        );
        assert!(errors.is_empty());
        let bad = StickyCookie {
            name: Some("a b".into()),
            same_site: Some("sometimes".into()),
            ..Default::default()
        };
        CookieSpec::resolve(&bad, "s@file", "http.services.s.loadBalancer.sticky.cookie", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("http.services.s.loadBalancer.sticky.cookie.name: `a b`"));
    }
}
