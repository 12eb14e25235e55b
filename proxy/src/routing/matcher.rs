//! A rule compiled for the data path: regexes built once, `&&`/`||` chains flattened, and cheap
//! matchers evaluated before expensive ones.
//!
//! Every part of a compiled rule is shared (`Arc`), so cloning one, as each reload does for every
//! router, copies pointers: no allocation, and a regex keeps the match caches it already has.
//! Matching goes through exactly as many pointers as with owned parts.

use std::sync::Arc;

use drover_providers::rule::{compile_regex, CompiledRegex, Expr, HostPattern, Matcher, Rule};
use http::HeaderName;
use ipnet::IpNet;

use super::{query, RequestView};

/// A rule ready to be evaluated against requests.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    root: Node,
}

#[derive(Clone, Debug)]
enum Node {
    All(Arc<[Node]>),
    Any(Arc<[Node]>),
    Not(Arc<Node>),
    /// ``Host(`a.example`)``, normalised.
    HostExact(Arc<str>),
    /// ``Host(`*.parent`)``: the parent domain.
    HostWildcard(Arc<str>),
    /// ``Host(`*`)``.
    HostAny,
    HostRegexp(Arc<CompiledRegex>),
    Path(Arc<str>),
    PathPrefix(Arc<str>),
    PathRegexp(Arc<CompiledRegex>),
    Method(Arc<str>),
    Header(HeaderName, Arc<[u8]>),
    HeaderRegexp(HeaderName, Arc<CompiledRegex>),
    /// A header matcher whose name `http` cannot represent: such a header is never present.
    NoSuchHeader,
    Query(Arc<str>, Arc<str>),
    QueryRegexp(Arc<str>, Arc<CompiledRegex>),
    ClientIp(IpNet),
}

impl CompiledRule {
    /// Compiles a parsed rule. Regexes are compiled unanchored, as Go's are in Traefik.
    pub fn compile(rule: &Rule) -> Result<Self, regex::Error> {
        Ok(CompiledRule {
            root: compile(&rule.expr)?,
        })
    }

    /// Whether the request matches the rule.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.root.matches(req)
    }
}

fn compile(expr: &Expr) -> Result<Node, regex::Error> {
    Ok(match expr {
        Expr::And(..) => Node::All(flatten(expr, true)?),
        Expr::Or(..) => Node::Any(flatten(expr, false)?),
        Expr::Not(inner) => Node::Not(Arc::new(compile(inner)?)),
        Expr::Matcher(m) => compile_matcher(m)?,
    })
}

/// Collects the operands of a chain of `&&` (or of `||`) into one list, cheapest first.
fn flatten(expr: &Expr, and: bool) -> Result<Arc<[Node]>, regex::Error> {
    fn collect(expr: &Expr, and: bool, out: &mut Vec<Node>) -> Result<(), regex::Error> {
        match (expr, and) {
            (Expr::And(a, b), true) | (Expr::Or(a, b), false) => {
                collect(a, and, out)?;
                collect(b, and, out)
            }
            _ => {
                out.push(compile(expr)?);
                Ok(())
            }
        }
    }
    let mut nodes = Vec::new();
    collect(expr, and, &mut nodes)?;
    // Matchers have no side effects, so the order of operands does not change the result.
    nodes.sort_by_key(Node::cost);
    Ok(nodes.into())
}

fn compile_matcher(m: &Matcher) -> Result<Node, regex::Error> {
    Ok(match m {
        Matcher::Host(HostPattern::Exact(host)) => Node::HostExact(host.as_str().into()),
        Matcher::Host(HostPattern::Wildcard(parent)) => Node::HostWildcard(parent.as_str().into()),
        Matcher::Host(HostPattern::Any) => Node::HostAny,
        // The regex the parser compiled to validate the rule, shared.
        Matcher::HostRegexp(re) => Node::HostRegexp(re.regex().clone()),
        Matcher::Path(p) => Node::Path(p.as_str().into()),
        Matcher::PathPrefix(p) => Node::PathPrefix(p.as_str().into()),
        Matcher::PathRegexp(re) => Node::PathRegexp(re.regex().clone()),
        Matcher::Method(m) => Node::Method(m.to_ascii_uppercase().into()),
        Matcher::Header(name, value) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Node::Header(name, value.as_bytes().into()),
            Err(_) => Node::NoSuchHeader,
        },
        Matcher::HeaderRegexp(name, re) => {
            let re = Arc::new(compile_regex(re, true)?);
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => Node::HeaderRegexp(name, re),
                Err(_) => Node::NoSuchHeader,
            }
        }
        Matcher::Query(key, value) => Node::Query(key.as_str().into(), value.as_deref().unwrap_or_default().into()),
        Matcher::QueryRegexp(key, re) => Node::QueryRegexp(key.as_str().into(), Arc::new(compile_regex(re, true)?)),
        Matcher::ClientIP(net) => Node::ClientIp(*net),
    })
}

impl Node {
    /// A rough evaluation cost, used to try cheap operands first.
    fn cost(&self) -> u8 {
        match self {
            Node::HostExact(_)
            | Node::HostWildcard(_)
            | Node::HostAny
            | Node::Path(_)
            | Node::PathPrefix(_)
            | Node::Method(_)
            | Node::ClientIp(_)
            | Node::NoSuchHeader => 0,
            Node::Header(..) => 1,
            Node::Query(..) => 2,
            Node::HostRegexp(_) | Node::PathRegexp(_) | Node::HeaderRegexp(..) | Node::QueryRegexp(..) => 3,
            Node::Not(inner) => inner.cost(),
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().map(Node::cost).max().unwrap_or(0),
        }
    }

    fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|n| n.matches(req)),
            Node::Any(nodes) => nodes.iter().any(|n| n.matches(req)),
            Node::Not(inner) => !inner.matches(req),
            Node::HostExact(expected) => req.host == &**expected,
            Node::HostWildcard(parent) => wildcard_matches(parent, req.host),
            Node::HostAny => true,
            Node::HostRegexp(re) => re.is_match(req.host),
            Node::Path(p) => req.path == &**p,
            Node::PathPrefix(p) => req.path.starts_with(&**p),
            Node::PathRegexp(re) => re.is_match(req.path),
            Node::Method(m) => req.method.as_str() == &**m,
            Node::Header(name, value) => req.headers.get_all(name).iter().any(|v| v.as_bytes() == &**value),
            Node::HeaderRegexp(name, re) => req.headers.get_all(name).iter().any(|v| re.is_match(v.as_bytes())),
            Node::NoSuchHeader => false,
            Node::Query(key, value) => req.query.is_some_and(|q| query::any_value(q, key, |v| v == value.as_bytes())),
            Node::QueryRegexp(key, re) => req.query.is_some_and(|q| query::any_value(q, key, |v| re.is_match(v))),
            Node::ClientIp(net) => net.contains(&req.client_ip) || net.contains(&req.client_ip.to_canonical()),
        }
    }
}

/// ``Host(`*.parent`)`` on an already normalised request host: one label, then `parent`.
fn wildcard_matches(parent: &str, host: &str) -> bool {
    match host.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == parent,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Req;
    use super::*;

    fn compiled(src: &str) -> CompiledRule {
        let rule = drover_providers::rule::parse(src).expect("test rule parses");
        CompiledRule::compile(&rule).expect("test rule compiles")
    }

    fn matches(src: &str, req: &Req) -> bool {
        compiled(src).matches(&req.view())
    }

    #[test]
    fn host_exact_wildcard_and_any() {
        let req = Req::get("api.example.com", "/");
        assert!(matches("Host(`API.example.com`)", &req));
        assert!(!matches("Host(`example.com`)", &req));
        assert!(matches("Host(`*.example.com`)", &req));
        assert!(!matches("Host(`*.example.com`)", &Req::get("a.api.example.com", "/")));
        assert!(!matches("Host(`*.example.com`)", &Req::get("example.com", "/")));
        assert!(matches("Host(`*`)", &req));
        assert!(matches("Host(`*`)", &Req::get("", "/")), "Any matches host-less requests");
        assert!(!matches("Host(`example.com`)", &Req::get("", "/")));
    }

    #[test]
    fn regexes_are_unanchored() {
        let req = Req::get("api.example.com", "/v1/users/42");
        assert!(matches("HostRegexp(`example`)", &req));
        assert!(matches("HostRegexp(`^[a-z]+\\.example\\.com$`)", &req));
        assert!(!matches("HostRegexp(`^example`)", &req));
        assert!(matches("PathRegexp(`/users/[0-9]+`)", &req));
        assert!(!matches("PathRegexp(`^/users`)", &req));
        assert!(matches("PathRegexp(`(?i)^/V1/`)", &req));
    }

    #[test]
    fn path_exact_and_prefix() {
        let req = Req::get("a", "/api/v1");
        assert!(matches("Path(`/api/v1`)", &req));
        assert!(!matches("Path(`/api`)", &req));
        assert!(matches("PathPrefix(`/api`)", &req));
        assert!(matches("PathPrefix(`/ap`)", &req), "a plain string prefix, as in Traefik");
        assert!(!matches("PathPrefix(`/api/v2`)", &req));
    }

    #[test]
    fn method_and_headers() {
        let req = Req::get("a", "/")
            .method(http::Method::DELETE)
            .header("x-env", "prod")
            .header("x-env", "canary")
            .header("user-agent", "curl/8.5");
        assert!(matches("Method(`delete`)", &req));
        assert!(!matches("Method(`GET`)", &req));
        assert!(matches("Header(`X-Env`, `canary`)", &req), "any value of the header");
        assert!(!matches("Header(`X-Env`, `Canary`)", &req), "values compare exactly");
        assert!(!matches("Header(`X-Other`, `prod`)", &req));
        assert!(matches("HeaderRegexp(`User-Agent`, `(?i)^CURL/`)", &req));
        assert!(!matches("HeaderRegexp(`User-Agent`, `wget`)", &req));
    }

    #[test]
    fn query_parameters() {
        let req = Req::get("a", "/search?q=hello+world&debug&page=2&page=3&empty=");
        assert!(matches("Query(`q`, `hello world`)", &req));
        assert!(matches("Query(`page`, `3`)", &req));
        assert!(!matches("Query(`page`, `4`)", &req));
        assert!(matches("Query(`debug`)", &req), "present without a value");
        assert!(matches("Query(`empty`)", &req), "present with an empty value");
        assert!(!matches("Query(`page`)", &req), "present but with values");
        assert!(!matches("Query(`missing`)", &req));
        assert!(matches("QueryRegexp(`page`, `^[0-9]$`)", &req));
        assert!(matches("QueryRegexp(`q`, `o w`)", &req));
        assert!(!matches("Query(`q`)", &Req::get("a", "/")), "no query string at all");
    }

    #[test]
    fn client_ip_including_mapped_v4() {
        let req = Req::get("a", "/").ip("10.1.2.3");
        assert!(matches("ClientIP(`10.0.0.0/8`)", &req));
        assert!(matches("ClientIP(`10.1.2.3`)", &req));
        assert!(!matches("ClientIP(`192.168.0.0/16`)", &req));
        let mapped = Req::get("a", "/").ip("::ffff:10.1.2.3");
        assert!(matches("ClientIP(`10.0.0.0/8`)", &mapped));
        let v6 = Req::get("a", "/").ip("2001:db8::1");
        assert!(matches("ClientIP(`2001:db8::/32`)", &v6));
        assert!(!matches("ClientIP(`10.0.0.0/8`)", &v6));
    }

    #[test]
    fn boolean_operators() {
        let req = Req::get("a.com", "/admin").method(http::Method::POST);
        assert!(matches("Host(`a.com`) && !Method(`GET`)", &req));
        assert!(!matches("Host(`a.com`) && !PathPrefix(`/admin`)", &req));
        assert!(matches("Host(`b.com`) || Path(`/admin`)", &req));
        assert!(!matches("Host(`b.com`) || Path(`/other`)", &req));
        assert!(matches("Host(`b.com`) || Host(`a.com`) && Method(`POST`)", &req));
        assert!(!matches("(Host(`b.com`) || Host(`a.com`)) && Method(`GET`)", &req));
        assert!(matches("!(Host(`b.com`) || Method(`GET`))", &req));
    }
}
