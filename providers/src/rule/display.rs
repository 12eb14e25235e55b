//! Canonical rule text: `Display` for the AST, which parses back to the same tree.

use std::fmt;

use super::{Expr, HostPattern, Matcher};

/// Quotes a value with backticks, or with double quotes when it contains a backtick.
pub(crate) fn quote(value: &str) -> String {
    if value.contains('`') {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        format!("`{value}`")
    }
}

/// Binding strength: `||` < `&&` < `!` and matchers.
fn precedence<M>(expr: &Expr<M>) -> u8 {
    match expr {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        Expr::Not(_) | Expr::Matcher(_) => 3,
    }
}

fn write_operand<M: fmt::Display>(f: &mut fmt::Formatter<'_>, expr: &Expr<M>, min: u8) -> fmt::Result {
    if precedence(expr) < min {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

impl<M: fmt::Display> fmt::Display for Expr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                let (op, prec) = if matches!(self, Expr::And(..)) { ("&&", 2) } else { ("||", 1) };
                // Operators are left-associative: a right operand of equal strength needs
                // parentheses to keep the tree's shape.
                write_operand(f, a, prec)?;
                write!(f, " {op} ")?;
                write_operand(f, b, prec + 1)
            }
            Expr::Not(inner) => {
                f.write_str("!")?;
                write_operand(f, inner, 3)
            }
            Expr::Matcher(m) => write!(f, "{m}"),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Wildcard(parent) => write!(f, "*.{parent}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Host(h) => write!(f, "Host({})", quote(&h.to_string())),
            Matcher::HostRegexp(re) => write!(f, "HostRegexp({})", quote(re)),
            Matcher::Path(p) => write!(f, "Path({})", quote(p)),
            Matcher::PathPrefix(p) => write!(f, "PathPrefix({})", quote(p)),
            Matcher::PathRegexp(re) => write!(f, "PathRegexp({})", quote(re)),
            Matcher::Method(m) => write!(f, "Method({})", quote(m)),
            Matcher::Header(k, v) => write!(f, "Header({}, {})", quote(k), quote(v)),
            Matcher::HeaderRegexp(k, re) => write!(f, "HeaderRegexp({}, {})", quote(k), quote(re)),
            Matcher::Query(k, None) => write!(f, "Query({})", quote(k)),
            Matcher::Query(k, Some(v)) => write!(f, "Query({}, {})", quote(k), quote(v)),
            Matcher::QueryRegexp(k, re) => write!(f, "QueryRegexp({}, {})", quote(k), quote(re)),
            Matcher::ClientIP(net) => write!(f, "ClientIP({})", quote(&net.to_string())),
        }
    }
}
