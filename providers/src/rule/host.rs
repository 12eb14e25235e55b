//! Host normalisation, shared by rule parsing and request routing so both sides agree.

use std::borrow::Cow;

use super::HostPattern;

/// Normalises a host as Traefik compares it: the `:port` removed (IPv6-aware, `[::1]:80` gives
/// `[::1]`), one trailing dot removed, ASCII-lowercased. Borrows when nothing changes.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = strip_trailing_dot(strip_port(raw));
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Removes a `:port` suffix; a bare IPv6 address (several colons, no brackets) is left alone.
fn strip_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        return match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        };
    }
    match raw.rfind(':') {
        Some(colon) if !raw[..colon].contains(':') => &raw[..colon],
        _ => raw,
    }
}

fn strip_trailing_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// The text after the port colon, if the value has one (`None` for bare IPv6 addresses).
pub(crate) fn port_of(raw: &str) -> Option<&str> {
    if raw.starts_with('[') {
        let end = raw.find(']')?;
        return raw[end + 1..].strip_prefix(':');
    }
    match raw.rfind(':') {
        Some(colon) if !raw[..colon].contains(':') => Some(&raw[colon + 1..]),
        _ => None,
    }
}

/// Validates and normalises the argument of a `Host` matcher.
pub(crate) fn parse_host_pattern(raw: &str) -> Result<HostPattern, String> {
    if raw.is_empty() {
        return Err("Host needs a host name, found an empty string".into());
    }
    if let Some(c) = raw.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "Host values must be ASCII; write the internationalised name `{raw}` in punycode \
             (found `{c}`)"
        ));
    }
    if let Some(c) = raw
        .chars()
        .find(|c| c.is_ascii_whitespace() || c.is_ascii_control() || "/?#@\\`\"'".contains(*c))
    {
        return Err(format!("invalid character {c:?} in host `{raw}`"));
    }
    if raw.starts_with('[') && !raw.contains(']') {
        return Err(format!("unclosed `[` in IPv6 host `{raw}`"));
    }
    if let Some(port) = port_of(raw) {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid port `{port}` in host `{raw}`"));
        }
    }
    let host = normalize_host(raw);
    if host.is_empty() {
        return Err(format!("host `{raw}` is empty once its port and trailing dot are removed"));
    }
    if host == "*" && !raw.starts_with("*.") {
        return Ok(HostPattern::Any);
    }
    if let Some(parent) = host.strip_prefix("*.").or((host == "*").then_some("")) {
        if parent.is_empty() || parent.starts_with('.') || parent.contains('*') {
            return Err(format!(
                "invalid wildcard host `{raw}`: write `*.` followed by a domain, as in \
                 `*.example.com`"
            ));
        }
        return Ok(HostPattern::Wildcard(parent.to_owned()));
    }
    if host.contains('*') {
        return Err(format!(
            "`*` in host `{raw}` is only allowed as the whole host (`*`) or as the first label \
             (`*.example.com`); use HostRegexp for other patterns"
        ));
    }
    // One trailing dot is the root (removed above); a second one is an empty label.
    if host.starts_with('.') || host.contains("..") || host.ends_with('.') {
        return Err(format!("host `{raw}` has an empty label"));
    }
    Ok(HostPattern::Exact(host.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_trailing_dots_are_an_empty_label_not_a_host_that_prints_differently() {
        // Found by tests/fuzz (rule): `Host("a..:80")` kept `a.`, whose text parses back to `a`.
        assert!(parse_host_pattern("a..:8079").is_err());
        assert!(parse_host_pattern("a..").is_err());
        assert_eq!(parse_host_pattern("a.:80"), Ok(HostPattern::Exact("a".into())));
    }

    #[test]
    fn normalizes_like_request_hosts() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host(""), "");
        assert!(matches!(normalize_host("a.example"), Cow::Borrowed(_)));
    }
}
