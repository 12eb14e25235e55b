//! The Traefik v3 HTTP rule language: ``Host(`a.example`) && PathPrefix(`/api`)``.
//!
//! A router's rule is parsed once, when configuration arrives, into a [`Rule`]: an [`Expr`] tree
//! of `&&`, `||`, `!` and [`Matcher`] leaves, plus the source text it came from. Everything that
//! can be checked without a request is checked here, so that a bad rule is rejected with a
//! [`RuleError`] naming the column and the reason, and the proxy keeps serving the last good
//! configuration instead of discovering the problem on a request:
//!
//! * matcher names are case-sensitive, as in Traefik (`Host`, never `host`), and a misspelling
//!   gets a "did you mean" hint; Traefik v2 names (`Headers`, `HostHeader`) say what replaced them;
//! * arity is checked, and the v2 multi-value forms (``Host(`a`, `b`)``) are rejected with the v3
//!   spelling (``Host(`a`) || Host(`b`)``) in the message;
//! * host values are normalised exactly as request hosts are (see [`normalize_host`]), so the
//!   proxy can index routers by host with plain string equality;
//! * regular expressions are compiled once here to validate them, with the error pointing at the
//!   argument; the proxy compiles them again into its own matcher (unanchored, like Go's).
//!
//! The grammar, lowest precedence first:
//!
//! ```text
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" or ")" | NAME "(" STRING ( "," STRING )* ")"
//! STRING  := `raw, no escapes` | "double quoted, with \" and \\ escapes"
//! ```
//!
//! `&&` and `||` are left-associative. Nesting (parentheses and `!`) and the number of operators
//! are bounded so that a hostile rule cannot overflow the stack of the code walking the tree.

mod display;
mod host;
mod lexer;
mod matcher;
mod parser;
mod tcp;

use std::fmt;

pub use tcp::{parse_tcp, TcpMatcher, TcpRule};

pub use host::normalize_host;

/// A parsed router rule together with the text it was parsed from: an HTTP rule by default,
/// a TCP one ([`TcpRule`]) with [`TcpMatcher`] leaves.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule<M = Matcher> {
    /// The expression tree.
    pub expr: Expr<M>,
    /// The rule exactly as written in the configuration.
    pub source: String,
}

/// A boolean expression over request (or, for TCP, connection) matchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr<M = Matcher> {
    /// Both sides must match (`a && b`).
    And(Box<Expr<M>>, Box<Expr<M>>),
    /// Either side must match (`a || b`).
    Or(Box<Expr<M>>, Box<Expr<M>>),
    /// The inner expression must not match (`!a`).
    Not(Box<Expr<M>>),
    /// A single matcher such as ``Host(`example.com`)``.
    Matcher(M),
}

/// One Traefik v3 HTTP matcher with its validated, normalised arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// ``Host(`example.com`)``: the request host equals, or fits the wildcard of, the pattern.
    Host(HostPattern),
    /// ``HostRegexp(`re`)``: an unanchored regular expression on the normalised host.
    HostRegexp(Pattern),
    /// ``Path(`/p`)``: the path equals the value.
    Path(String),
    /// ``PathPrefix(`/p`)``: the path starts with the value (a plain string prefix).
    PathPrefix(String),
    /// ``PathRegexp(`re`)``: an unanchored regular expression on the path.
    PathRegexp(Pattern),
    /// ``Method(`GET`)``: the request method, stored uppercased.
    Method(String),
    /// ``Header(`k`, `v`)``: some value of header `k` (stored lowercased) equals `v`.
    Header(String, String),
    /// ``HeaderRegexp(`k`, `re`)``: some value of header `k` (stored lowercased) matches `re`.
    HeaderRegexp(String, String),
    /// ``Query(`k`, `v`)``: some value of query parameter `k` equals `v`; with one argument, `k`
    /// is present with an empty or no value.
    Query(String, Option<String>),
    /// ``QueryRegexp(`k`, `re`)``: some value of query parameter `k` matches `re`.
    QueryRegexp(String, String),
    /// ``ClientIP(`10.0.0.0/8`)``: the socket peer address is in the network (a bare address is
    /// stored as a /32 or /128).
    ClientIP(ipnet::IpNet),
}

/// A regular expression of a rule: its text, and the regex that validated it.
///
/// Validating a regex means compiling it, which is most of the cost of parsing a rule; the data
/// path shares this compiled regex rather than compiling the text a second time. Two patterns
/// are equal when their texts are.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    compiled: std::sync::Arc<regex::Regex>,
}

impl Pattern {
    /// Compiles `source` (unanchored, the regex crate's defaults).
    pub fn new(source: String) -> Result<Self, regex::Error> {
        let compiled = std::sync::Arc::new(regex::Regex::new(&source)?);
        Ok(Self { source, compiled })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled expression.
    pub fn regex(&self) -> &std::sync::Arc<regex::Regex> {
        &self.compiled
    }
}

impl std::ops::Deref for Pattern {
    type Target = str;

    fn deref(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.source, f)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// The value of a `Host` matcher, already normalised (lowercase, no port, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// `*.example.com`, stored as `example.com`: the host is exactly one label under it.
    Wildcard(String),
    /// ``Host(`*`)``: every request, including one without a host.
    Any,
}

/// Why a rule was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct RuleError {
    /// 1-based column, counted in characters, where the problem starts.
    pub column: usize,
    /// What is wrong, written for the person who wrote the rule.
    pub message: String,
}

impl RuleError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        RuleError {
            column,
            message: message.into(),
        }
    }
}

/// Parses a Traefik v3 HTTP rule.
pub fn parse(src: &str) -> Result<Rule, RuleError> {
    let expr = parser::Parser::<Matcher>::new(src).parse()?;
    Ok(Rule {
        expr,
        source: src.to_owned(),
    })
}

impl Rule {
    /// The hosts one of which every request matching this rule must have, if there is such a list.
    ///
    /// The proxy uses it to index routers by host. `None` means the rule can match requests for
    /// any host (no `Host` requirement, a `Host` under `!`, or ``Host(`*`)``).
    pub fn required_hosts(&self) -> Option<Vec<HostPattern>> {
        required_hosts(&self.expr, &|m| match m {
            Matcher::Host(pattern) => Some(pattern),
            _ => None,
        })
    }

    /// Traefik's default priority for this rule: the length of its source in bytes.
    pub fn default_priority(&self) -> i64 {
        i64::try_from(self.source.len()).unwrap_or(i64::MAX)
    }
}

/// The hosts one of which everything `expr` matches has, where `host` reads a matcher's host
/// pattern (`Host` for HTTP, `HostSNI` for TCP).
pub(crate) fn required_hosts<M>(expr: &Expr<M>, host: &dyn Fn(&M) -> Option<&HostPattern>) -> Option<Vec<HostPattern>> {
    match expr {
        Expr::Matcher(m) => match host(m) {
            None | Some(HostPattern::Any) => None,
            Some(pattern) => Some(vec![pattern.clone()]),
        },
        Expr::Not(_) => None,
        Expr::And(a, b) => match (required_hosts(a, host), required_hosts(b, host)) {
            (Some(a), Some(b)) => Some(if b.len() < a.len() { b } else { a }),
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => None,
        },
        Expr::Or(a, b) => {
            let mut hosts = required_hosts(a, host)?;
            for pattern in required_hosts(b, host)? {
                if !hosts.contains(&pattern) {
                    hosts.push(pattern);
                }
            }
            Some(hosts)
        }
    }
}

impl<M> fmt::Display for Rule<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
