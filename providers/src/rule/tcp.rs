//! The Traefik v3 TCP rule language: ``HostSNI(`db.example`) && ClientIP(`10.0.0.0/8`)``.
//!
//! The same grammar as HTTP rules (see the parent module), with the matchers a connection can be
//! judged by before any byte is forwarded: the TLS ClientHello's server name and ALPN protocols,
//! and the client's address. What Traefik checks when it loads a router is checked here too,
//! except the rules that depend on the router's `tls` section (a router without TLS may only use
//! ``HostSNI(`*`)``), which the merge checks where it sees both.
//!
//! drover extension: ``HostSNI(`*.example.com`)`` matches one label under `example.com`, as a
//! one-label wildcard certificate would; Traefik spells that with `HostSNIRegexp`.

use std::fmt;

use super::display::quote;
use super::host::{parse_host_pattern, port_of};
use super::matcher::{client_ip_arg, edit_distance, regex_arg, render_call, Arg};
use super::parser::{Language, Parser};
use super::{Expr, HostPattern, Rule, RuleError};

/// A parsed TCP router rule.
pub type TcpRule = Rule<TcpMatcher>;

/// The ALPN protocol of the TLS-ALPN-01 challenge, which no router may claim.
pub const ACME_TLS_ALPN: &str = "acme-tls/1";

/// One TCP matcher with its validated, normalised argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpMatcher {
    /// ``HostSNI(`db.example`)``: the ClientHello's server name (lowercased, no trailing dot)
    /// equals the name, or is one label under a `*.` wildcard; ``HostSNI(`*`)`` matches every
    /// connection, TLS or not.
    HostSNI(HostPattern),
    /// ``HostSNIRegexp(`re`)``: an unanchored regular expression on the server name.
    HostSNIRegexp(String),
    /// ``ClientIP(`10.0.0.0/8`)``: the client's address is in the network.
    ClientIP(ipnet::IpNet),
    /// ``ALPN(`h2`)``: the client offers this protocol.
    Alpn(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpKind {
    HostSNI,
    HostSNIRegexp,
    ClientIP,
    Alpn,
}

const ALL: [TcpKind; 4] = [TcpKind::HostSNI, TcpKind::HostSNIRegexp, TcpKind::ClientIP, TcpKind::Alpn];

impl TcpKind {
    fn name(self) -> &'static str {
        match self {
            TcpKind::HostSNI => "HostSNI",
            TcpKind::HostSNIRegexp => "HostSNIRegexp",
            TcpKind::ClientIP => "ClientIP",
            TcpKind::Alpn => "ALPN",
        }
    }

    fn signature(self) -> &'static str {
        match self {
            TcpKind::HostSNI => "HostSNI(`db.example.com`) or HostSNI(`*`)",
            TcpKind::HostSNIRegexp => "HostSNIRegexp(`^.+\\.example\\.com$`)",
            TcpKind::ClientIP => "ClientIP(`10.0.0.0/8`)",
            TcpKind::Alpn => "ALPN(`h2`)",
        }
    }
}

impl Language for TcpMatcher {
    type Kind = TcpKind;
    const EXAMPLE: &'static str = "HostSNI(`db.example.com`)";

    fn kind(name: &str, column: usize) -> Result<TcpKind, RuleError> {
        if let Some(kind) = ALL.iter().copied().find(|k| k.name() == name) {
            return Ok(kind);
        }
        let message = match name {
            "Host" | "HostRegexp" | "Path" | "PathPrefix" | "PathRegexp" | "Method" | "Header" | "HeaderRegexp" | "Query"
            | "QueryRegexp" => format!(
                "`{name}` is an HTTP router matcher; a TCP router sees no HTTP request, only the TLS \
                 server name (HostSNI, HostSNIRegexp), ALPN and the client's address (ClientIP)"
            ),
            _ => {
                let closest = ALL
                    .iter()
                    .map(|k| (edit_distance(&name.to_ascii_lowercase(), &k.name().to_ascii_lowercase()), k))
                    .min_by_key(|(d, _)| *d)
                    .filter(|(d, k)| *d <= (k.name().len() / 3).max(1));
                match closest {
                    Some((_, kind)) => format!(
                        "unknown TCP matcher `{name}`; did you mean `{}`? (matcher names are case-sensitive)",
                        kind.name()
                    ),
                    None => format!(
                        "unknown TCP matcher `{name}`; valid matchers are {}",
                        ALL.map(TcpKind::name).join(", ")
                    ),
                }
            }
        };
        Err(RuleError::new(column, message))
    }

    fn build(kind: TcpKind, args: Vec<Arg>, open: usize) -> Result<Self, RuleError> {
        let name = kind.name();
        if args.is_empty() {
            return Err(RuleError::new(
                open + 1,
                format!("{name} needs an argument, found none; write {}", kind.signature()),
            ));
        }
        if args.len() > 1 {
            return Err(RuleError::new(
                args[1].column,
                format!(
                    "{name} takes a single value in Traefik v3; instead of {}, write {}",
                    render_call(name, args.iter().map(|a| a.value.as_str())),
                    args.iter()
                        .map(|a| render_call(name, [a.value.as_str()]))
                        .collect::<Vec<_>>()
                        .join(" || ")
                ),
            ));
        }
        let arg = args.into_iter().next().expect("one argument, checked above");
        Ok(match kind {
            TcpKind::HostSNI => TcpMatcher::HostSNI(sni_arg(&arg)?),
            TcpKind::HostSNIRegexp => TcpMatcher::HostSNIRegexp(regex_arg(name, arg)?),
            TcpKind::ClientIP => TcpMatcher::ClientIP(client_ip_arg(arg)?),
            TcpKind::Alpn => {
                if arg.value.is_empty() {
                    return Err(arg.error("ALPN needs a protocol name such as `h2`, found an empty string"));
                }
                if arg.value == ACME_TLS_ALPN {
                    return Err(arg.error(format!(
                        "ALPN `{ACME_TLS_ALPN}` is reserved for the TLS-ALPN-01 certificate challenge; \
                         no router may take it"
                    )));
                }
                TcpMatcher::Alpn(arg.value)
            }
        })
    }
}

fn sni_arg(arg: &Arg) -> Result<HostPattern, RuleError> {
    if port_of(&arg.value).is_some() {
        return Err(arg.error(format!("HostSNI takes a server name without a port, found {}", quote(&arg.value))));
    }
    parse_host_pattern(&arg.value).map_err(|m| arg.error(m.replacen("Host ", "HostSNI ", 1)))
}

/// Parses a Traefik v3 TCP rule.
pub fn parse_tcp(src: &str) -> Result<TcpRule, RuleError> {
    let expr = Parser::<TcpMatcher>::new(src).parse()?;
    Ok(Rule {
        expr,
        source: src.to_owned(),
    })
}

impl TcpRule {
    /// Whether the rule asks anything of the TLS ClientHello (a server name other than `*`, or
    /// ALPN): such a rule can only match TLS connections.
    pub fn needs_client_hello(&self) -> bool {
        needs_hello(&self.expr)
    }

    /// The server names one of which every connection this rule matches sends (`None`: any
    /// name can match), as [`super::Rule::required_hosts`] for HTTP.
    pub fn required_hosts(&self) -> Option<Vec<HostPattern>> {
        super::required_hosts(&self.expr, &|m| match m {
            TcpMatcher::HostSNI(pattern) => Some(pattern),
            _ => None,
        })
    }

    /// Whether this is exactly ``HostSNI(`*`)``, possibly narrowed by `ClientIP`: the only rules
    /// Traefik allows on a router without TLS.
    pub fn is_catch_all(&self) -> bool {
        !self.needs_client_hello()
    }
}

fn needs_hello(expr: &Expr<TcpMatcher>) -> bool {
    match expr {
        Expr::Matcher(TcpMatcher::HostSNI(HostPattern::Any) | TcpMatcher::ClientIP(_)) => false,
        Expr::Matcher(_) => true,
        Expr::Not(inner) => needs_hello(inner),
        Expr::And(a, b) | Expr::Or(a, b) => needs_hello(a) || needs_hello(b),
    }
}

impl fmt::Display for TcpMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpMatcher::HostSNI(h) => write!(f, "HostSNI({})", quote(&h.to_string())),
            TcpMatcher::HostSNIRegexp(re) => write!(f, "HostSNIRegexp({})", quote(re)),
            TcpMatcher::ClientIP(net) => write!(f, "ClientIP({})", quote(&net.to_string())),
            TcpMatcher::Alpn(p) => write!(f, "ALPN({})", quote(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> RuleError {
        parse_tcp(src).expect_err(src)
    }

    #[test]
    fn parses_every_matcher_with_operators() {
        let rule = parse_tcp("(HostSNI(`DB.Example.`) || HostSNIRegexp(`^.+\\.test$`)) && !ClientIP(`10.0.0.0/8`) && ALPN(`h2`)").unwrap();
        assert_eq!(
            rule.expr.to_string(),
            "(HostSNI(`db.example`) || HostSNIRegexp(`^.+\\.test$`)) && !ClientIP(`10.0.0.0/8`) && ALPN(`h2`)"
        );
        assert!(rule.needs_client_hello());
        assert!(parse_tcp("HostSNI(`*`)").unwrap().is_catch_all());
        assert!(parse_tcp("HostSNI(`*`) && ClientIP(`127.0.0.1`)").unwrap().is_catch_all());
        assert_eq!(
            parse_tcp("HostSNI(`*.example.com`)").unwrap().expr,
            Expr::Matcher(TcpMatcher::HostSNI(HostPattern::Wildcard("example.com".into())))
        );
    }

    #[test]
    fn bad_rules_say_what_and_where() {
        let e = err("Host(`a.test`)");
        assert_eq!(e.column, 1);
        assert!(e.message.contains("HTTP router matcher"), "{e}");
        assert!(err("HostSni(`a`)").message.contains("did you mean `HostSNI`"));
        let e = err("HostSNI(`a`, `b`)");
        assert!(e.message.contains("HostSNI(`a`) || HostSNI(`b`)"), "{e}");
        let e = err("ALPN(`acme-tls/1`)");
        assert_eq!(e.column, 6);
        assert!(e.message.contains("reserved"), "{e}");
        assert!(err("HostSNI(`a.test:5432`)").message.contains("without a port"));
        assert!(err("HostSNIRegexp(`(`)").message.contains("invalid regular expression"));
        assert!(err("").message.contains("HostSNI(`db.example.com`)"));
        assert!(err("HostSNI()").message.contains("needs an argument"));
    }
}
