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
    compiled: std::sync::Arc<CompiledRegex>,
}

/// A rule's compiled regular expression: the engine behind `regex::Regex`, built by
/// [`compile_regex`].
pub type CompiledRegex = regex_automata::meta::Regex;

/// Compiles a rule's regular expression as `regex::Regex::new` (`bytes: false`) or
/// `regex::bytes::Regex::new` (`bytes: true`) would — unanchored, Unicode, case-sensitive unless
/// the pattern says `(?i)`, the same size limits and errors — except that no full DFA and no
/// one-pass DFA are built.
///
/// The regex crate builds a full DFA for every small pattern when regex-automata's `dfa-build`
/// feature is on, and `tracing-subscriber` turns it on for the whole build; and a one-pass DFA,
/// which only capture searches use, for any pattern it fits. Determinizing was
/// about a tenth of a full merge of 10,000 routers (`benches/snapshot.rs`); matching a rule goes
/// through the lazy DFA instead, which is as fast once its cache holds the few states a host or
/// path visits (`benches/rules.rs`).
pub fn compile_regex(source: &str, bytes: bool) -> Result<CompiledRegex, regex::Error> {
    use regex_automata::{meta, util::syntax, MatchKind};
    // regex 1.x's defaults (`regex/src/builders.rs`).
    let config = meta::Config::new()
        .nfa_size_limit(Some(10 * (1 << 20)))
        .hybrid_cache_capacity(2 * (1 << 20))
        .match_kind(MatchKind::LeftmostFirst)
        .utf8_empty(!bytes)
        .dfa(false)
        // Only capture searches use the one-pass DFA, and rules only ask whether a regex matches.
        .onepass(false);
    meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().utf8(!bytes))
        .build(source)
        .map_err(|err| match (err.size_limit(), err.syntax_error()) {
            // As the regex crate converts its engine's errors (`regex/src/error.rs`).
            (Some(limit), _) => regex::Error::CompiledTooBig(limit),
            (None, Some(syntax)) => regex::Error::Syntax(syntax.to_string()),
            (None, None) => regex::Error::Syntax(err.to_string()),
        })
}

impl Pattern {
    /// Compiles `source` (unanchored, the regex crate's defaults, see [`compile_regex`]).
    pub fn new(source: String) -> Result<Self, regex::Error> {
        let compiled = std::sync::Arc::new(compile_regex(&source, false)?);
        Ok(Self { source, compiled })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled expression.
    pub fn regex(&self) -> &std::sync::Arc<CompiledRegex> {
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

#[cfg(test)]
mod tests {
    use super::compile_regex;

    /// Rule regexes match exactly as the regex crate's do: unanchored, Unicode classes and case
    /// folding, `(?i)`, and for bytes regexes (headers, query values) haystacks that are not
    /// UTF-8; and a bad pattern gets the regex crate's error text.
    #[test]
    fn compile_regex_matches_as_the_regex_crate_does() {
        let patterns = [
            r"example",
            r"^[a-z]+\.example\.com$",
            r"(?i)^/V1/",
            r"^/users/\d+$",
            r"\w+\.test",
            r"(?i)straße",
            r"^$",
            r"",
            r"^.+[.]c[.]test$",
            r"a|b|c+",
            r"\bword\b",
        ];
        let haystacks = [
            "example.com",
            "www.example.com",
            "/v1/x",
            "/users/١٢",
            "/users/42",
            "ÉTÉ.test",
            "STRASSE",
            "STRAßE",
            "",
            "a word here",
            "ccc",
        ];
        for pattern in patterns {
            let ours = compile_regex(pattern, false).unwrap();
            let theirs = regex::Regex::new(pattern).unwrap();
            let ours_bytes = compile_regex(pattern, true).unwrap();
            let theirs_bytes = regex::bytes::Regex::new(pattern).unwrap();
            for hay in haystacks {
                assert_eq!(ours.is_match(hay), theirs.is_match(hay), "`{pattern}` on {hay:?}");
                assert_eq!(
                    ours.find(hay).map(|m| m.range()),
                    theirs.find(hay).map(|m| m.range()),
                    "`{pattern}` on {hay:?}"
                );
                assert_eq!(
                    ours_bytes.is_match(hay.as_bytes()),
                    theirs_bytes.is_match(hay.as_bytes()),
                    "`{pattern}` on {hay:?}"
                );
            }
            let latin1 = b"caf\xe9 word";
            assert_eq!(
                ours_bytes.is_match(&latin1[..]),
                theirs_bytes.is_match(latin1),
                "`{pattern}` on Latin-1"
            );
        }
        for bad in [r"(", r"[z-a]", r"\p{Nope}", r"a{1000}{1000}"] {
            let ours = compile_regex(bad, false).unwrap_err().to_string();
            let theirs = regex::Regex::new(bad).unwrap_err().to_string();
            assert_eq!(ours, theirs, "`{bad}`");
        }
    }
}
