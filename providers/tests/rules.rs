//! The Traefik v3 HTTP rule language: a table of rules, valid and invalid, with what each parses
//! to or where and why it is rejected.

use drover_providers::rule::{parse, Expr, HostPattern, Matcher, RuleError};

/// What a rule should parse to.
enum Want {
    /// The AST in a compact S-expression form, see [`shape`].
    Shape(&'static str),
    /// The error column and a substring of its message.
    Error(usize, &'static str),
}
use Want::{Error as Err, Shape};

/// Renders an AST compactly: `(and A B)`, `(or A B)`, `(not A)`, `Name[arg|arg]`.
fn shape(expr: &Expr) -> String {
    match expr {
        Expr::And(a, b) => format!("(and {} {})", shape(a), shape(b)),
        Expr::Or(a, b) => format!("(or {} {})", shape(a), shape(b)),
        Expr::Not(a) => format!("(not {})", shape(a)),
        Expr::Matcher(m) => match m {
            Matcher::Host(HostPattern::Exact(h)) => format!("Host[{h}]"),
            Matcher::Host(HostPattern::Wildcard(p)) => format!("Host[*.{p}]"),
            Matcher::Host(HostPattern::Any) => "Host[*]".to_owned(),
            Matcher::HostRegexp(re) => format!("HostRegexp[{re}]"),
            Matcher::Path(p) => format!("Path[{p}]"),
            Matcher::PathPrefix(p) => format!("PathPrefix[{p}]"),
            Matcher::PathRegexp(re) => format!("PathRegexp[{re}]"),
            Matcher::Method(m) => format!("Method[{m}]"),
            Matcher::Header(k, v) => format!("Header[{k}|{v}]"),
            Matcher::HeaderRegexp(k, re) => format!("HeaderRegexp[{k}|{re}]"),
            Matcher::Query(k, None) => format!("Query[{k}]"),
            Matcher::Query(k, Some(v)) => format!("Query[{k}|{v}]"),
            Matcher::QueryRegexp(k, re) => format!("QueryRegexp[{k}|{re}]"),
            Matcher::ClientIP(net) => format!("ClientIP[{net}]"),
        },
    }
}

const CASES: &[(&str, Want)] = &[
    // --- Host and its normalisation ---
    ("Host(`example.com`)", Shape("Host[example.com]")),
    ("Host(`Example.COM`)", Shape("Host[example.com]")),
    ("Host(`example.com.`)", Shape("Host[example.com]")),
    ("Host(`example.com:8080`)", Shape("Host[example.com]")),
    ("Host(`*.example.com`)", Shape("Host[*.example.com]")),
    ("Host(`*.Example.com.`)", Shape("Host[*.example.com]")),
    ("Host(`*`)", Shape("Host[*]")),
    ("Host(`[::1]:8443`)", Shape("Host[[::1]]")),
    ("Host(`127.0.0.1:80`)", Shape("Host[127.0.0.1]")),
    ("Host(\"example.com\")", Shape("Host[example.com]")),
    // --- every other matcher ---
    (
        r"HostRegexp(`^[a-z]+\.example\.com$`)",
        Shape(r"HostRegexp[^[a-z]+\.example\.com$]"),
    ),
    ("Path(`/api`)", Shape("Path[/api]")),
    ("PathPrefix(`/`)", Shape("PathPrefix[/]")),
    ("PathRegexp(`^/users/[0-9]+$`)", Shape("PathRegexp[^/users/[0-9]+$]")),
    ("PathRegexp(`\\.(css|js)`)", Shape("PathRegexp[\\.(css|js)]")),
    ("Method(`get`)", Shape("Method[GET]")),
    ("Method(`PURGE`)", Shape("Method[PURGE]")),
    ("Header(`X-Env`, `prod`)", Shape("Header[x-env|prod]")),
    (
        "Header(`Content-Type`,`application/json; charset=utf-8`)",
        Shape("Header[content-type|application/json; charset=utf-8]"),
    ),
    ("HeaderRegexp(`User-Agent`, `(?i)curl`)", Shape("HeaderRegexp[user-agent|(?i)curl]")),
    ("Query(`debug`)", Shape("Query[debug]")),
    ("Query(`page`, `2`)", Shape("Query[page|2]")),
    ("Query(`flag`, ``)", Shape("Query[flag|]")),
    ("Query(`Mixed`, `Case`)", Shape("Query[Mixed|Case]")),
    ("QueryRegexp(`id`, `^[0-9]+$`)", Shape("QueryRegexp[id|^[0-9]+$]")),
    ("ClientIP(`10.0.0.0/8`)", Shape("ClientIP[10.0.0.0/8]")),
    ("ClientIP(`192.168.1.7`)", Shape("ClientIP[192.168.1.7/32]")),
    ("ClientIP(`2001:db8::/32`)", Shape("ClientIP[2001:db8::/32]")),
    ("ClientIP(`::1`)", Shape("ClientIP[::1/128]")),
    ("ClientIP(`10.1.2.3/8`)", Shape("ClientIP[10.0.0.0/8]")),
    // --- operators, precedence, nesting ---
    ("Host(`a`) && Path(`/b`)", Shape("(and Host[a] Path[/b])")),
    ("Host(`a`) || Host(`b`)", Shape("(or Host[a] Host[b])")),
    ("!Method(`POST`)", Shape("(not Method[POST])")),
    ("Host(`a`) || Host(`b`) && Path(`/c`)", Shape("(or Host[a] (and Host[b] Path[/c]))")),
    (
        "Host(`a`) && Path(`/b`) || Path(`/c`)",
        Shape("(or (and Host[a] Path[/b]) Path[/c])"),
    ),
    (
        "(Host(`a`) || Host(`b`)) && Path(`/c`)",
        Shape("(and (or Host[a] Host[b]) Path[/c])"),
    ),
    ("!Host(`a`) && Path(`/b`)", Shape("(and (not Host[a]) Path[/b])")),
    ("!(Host(`a`) && Path(`/b`))", Shape("(not (and Host[a] Path[/b]))")),
    ("!!Path(`/x`)", Shape("(not (not Path[/x]))")),
    (
        "Path(`/a`) && Path(`/b`) && Path(`/c`)",
        Shape("(and (and Path[/a] Path[/b]) Path[/c])"),
    ),
    (
        "Path(`/a`) || Path(`/b`) || Path(`/c`)",
        Shape("(or (or Path[/a] Path[/b]) Path[/c])"),
    ),
    (
        "Path(`/a`) || (Path(`/b`) || Path(`/c`))",
        Shape("(or Path[/a] (or Path[/b] Path[/c]))"),
    ),
    ("((((Path(`/deep`)))))", Shape("Path[/deep]")),
    (
        "Host(`a`)&&Path(`/b`)||!Query(`q`)",
        Shape("(or (and Host[a] Path[/b]) (not Query[q]))"),
    ),
    (
        "!Host(`a`) || !Host(`b`) && !Host(`c`)",
        Shape("(or (not Host[a]) (and (not Host[b]) (not Host[c])))"),
    ),
    (
        "Host(`a.example.com`) && Host(`*.example.com`)",
        Shape("(and Host[a.example.com] Host[*.example.com])"),
    ),
    // --- whitespace anywhere ---
    (
        "\n Header (\t`k` ,  `v` ) \n&&\n!\tPath(`/x`)  ",
        Shape("(and Header[k|v] (not Path[/x]))"),
    ),
    ("  ( Host(`a`) )  ", Shape("Host[a]")),
    // --- quotes and escapes ---
    (r#"Header(`X`, "say \"hi\"")"#, Shape(r#"Header[x|say "hi"]"#)),
    (r#"PathRegexp("^/a\\d+$")"#, Shape(r"PathRegexp[^/a\d+$]")),
    ("Header(`X-Quote`, \"`tick`\")", Shape("Header[x-quote|`tick`]")),
    (r"Path(`/a\b`)", Shape(r"Path[/a\b]")),
    ("Header(`X-Name`, `Zoë`)", Shape("Header[x-name|Zoë]")),
    ("Header(`X-Mixed`, \"it's `both`\")", Shape("Header[x-mixed|it's `both`]")),
    // --- empty rule, trailing garbage, unbalanced, dangling operators ---
    ("", Err(1, "empty rule")),
    ("   ", Err(1, "empty rule")),
    ("Host(`a`) Path(`/`)", Err(11, "expected `&&`, `||` or end of rule, found `Path`")),
    ("Host(`a`) AND Path(`/`)", Err(11, "found `AND`")),
    ("Host(`a`))", Err(10, "unmatched `)`")),
    (
        "(Host(`a`)",
        Err(11, "expected `)` to close the `(` at column 1, found end of rule"),
    ),
    ("Host(`a`) &&", Err(13, "after `&&`, found end of rule")),
    ("|| Host(`a`)", Err(1, "expected a matcher, `!` or `(`, found `||`")),
    ("!", Err(2, "after `!`, found end of rule")),
    ("()", Err(2, "after `(`, found `)`")),
    ("!(", Err(3, "after `(`, found end of rule")),
    ("Path(`/a`) && (Host(`a`) || )", Err(29, "after `||`, found `)`")),
    ("Host(`a`) & Path(`/`)", Err(11, "expected `&&`")),
    ("Host(`a`) | Path(`/`)", Err(11, "expected `||`")),
    ("Host(`a`) == Host(`b`)", Err(11, "`==` is not an operator")),
    ("Host(`a`) && @", Err(14, "unexpected character '@'")),
    ("`example.com`", Err(1, "found string `example.com`")),
    // --- matcher call syntax ---
    ("Host", Err(5, "expected `(` after matcher name `Host`, found end of rule")),
    ("Host(`a`", Err(9, "expected `)` after matcher arguments, found end of rule")),
    (
        "Host(`a` && Path(`/`))",
        Err(10, "expected `)` after matcher arguments, found `&&`"),
    ),
    ("Host(`a`,)", Err(10, "expected a quoted value")),
    (
        "Host(a.com)",
        Err(
            6,
            "expected a quoted value (`value` or \"value\") as an argument of Host, found `a`",
        ),
    ),
    // --- quotes ---
    ("Host('a')", Err(6, "single quotes are not allowed")),
    ("Host(`a)", Err(6, "unterminated string")),
    ("Host(\"a)", Err(6, "unterminated string")),
    (r#"Path("/a\d")"#, Err(9, "unsupported escape `\\d`")),
    // --- unknown names ---
    ("host(`a`)", Err(1, "did you mean `Host`?")),
    ("PathPrefx(`/`)", Err(1, "did you mean `PathPrefix`?")),
    ("Frobnicate(`x`)", Err(1, "valid matchers are Host, HostRegexp, Path, PathPrefix")),
    ("Path(`/`) && Headers(`k`, `v`)", Err(14, "renamed `Header`")),
    ("HostHeader(`a`)", Err(1, "removed in Traefik v3")),
    ("HostSNI(`a`)", Err(1, "TCP router matcher")),
    // --- arity and v2 multi-value forms ---
    ("Host(`a`, `b`)", Err(11, "write Host(`a`) || Host(`b`)")),
    ("Method(`GET`,`POST`)", Err(14, "Method(`GET`) || Method(`POST`)")),
    ("PathPrefix(`/a`, `/b`)", Err(18, "PathPrefix(`/a`) || PathPrefix(`/b`)")),
    (
        "ClientIP(`10.0.0.0/8`, `::1`)",
        Err(24, "ClientIP(`10.0.0.0/8`) || ClientIP(`::1`)"),
    ),
    ("Host()", Err(6, "Host needs arguments, found none")),
    ("Header(`k`)", Err(8, "Header takes 2 arguments, found 1")),
    ("Header(`k`,`v`,`w`)", Err(16, "Header takes 2 arguments, found 3")),
    ("Query(`a`,`b`,`c`)", Err(15, "Query takes 1 or 2 arguments, found 3")),
    ("Query(`a=1`)", Err(7, "write Query(`a`, `1`)")),
    ("Query(`a=1`, `b=2`)", Err(7, "write Query(`a`, `1`) && Query(`b`, `2`)")),
    // --- argument validation ---
    ("Host(``)", Err(6, "empty string")),
    ("Host(`:8080`)", Err(6, "is empty once its port")),
    ("Host(`a.*.com`)", Err(6, "only allowed as the whole host")),
    ("Host(`*example.com`)", Err(6, "only allowed as the whole host")),
    ("Host(`*.`)", Err(6, "invalid wildcard host")),
    ("Host(`exämple.com`)", Err(6, "punycode")),
    ("Host(`a.com:http`)", Err(6, "invalid port `http`")),
    ("Host(`a b`)", Err(6, "invalid character ' '")),
    ("Path(`api`)", Err(6, "must start with `/`")),
    ("PathPrefix(``)", Err(12, "must start with `/`")),
    ("Path(`/users/{id}`)", Err(6, "Traefik v2 path placeholder")),
    (
        "PathRegexp(`(unclosed`)",
        Err(12, "invalid regular expression in PathRegexp: unclosed group"),
    ),
    ("HostRegexp(`{sub:[a-z]+}.example.com`)", Err(12, "v2 named placeholder")),
    ("HeaderRegexp(`X`, `[z-a]`)", Err(19, "invalid regular expression in HeaderRegexp")),
    ("QueryRegexp(`q`, `*a`)", Err(18, "invalid regular expression in QueryRegexp")),
    ("HostRegexp(`(`)", Err(12, "invalid regular expression in HostRegexp")),
    ("ClientIP(`10.0.0.256`)", Err(10, "IP address or CIDR")),
    ("ClientIP(`10.0.0.0/33`)", Err(10, "IP address or CIDR")),
    ("Method(``)", Err(8, "invalid HTTP method")),
    ("Method(`GE T`)", Err(8, "invalid HTTP method")),
    ("Header(`X Y`, `v`)", Err(8, "invalid header name")),
    ("Query(``)", Err(7, "needs a parameter name")),
    // --- columns are characters, not bytes ---
    ("Header(`X`, `é`) && (", Err(22, "after `(`, found end of rule")),
    ("Header(`X`, `日本`) && Nope(`x`)", Err(22, "unknown matcher `Nope`")),
];

#[test]
fn rule_table() {
    assert!(CASES.len() >= 60, "the table should stay comprehensive");
    let mut failures = Vec::new();
    for (src, want) in CASES {
        let got = parse(src);
        let ok = match (want, &got) {
            (Shape(expected), Ok(rule)) => shape(&rule.expr) == *expected && rule.source == *src,
            (Err(column, needle), Result::Err(err)) => err.column == *column && err.message.contains(needle),
            _ => false,
        };
        if !ok {
            let expected = match want {
                Shape(s) => format!("Ok({s})"),
                Err(c, m) => format!("Err(column {c}, ~{m:?})"),
            };
            let got = match &got {
                Ok(rule) => format!("Ok({})", shape(&rule.expr)),
                Result::Err(e) => format!("Err({e})"),
            };
            failures.push(format!("{src:?}\n    want {expected}\n    got  {got}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn canonical_text_parses_back_to_the_same_tree() {
    for (src, want) in CASES {
        if let Shape(_) = want {
            let rule = parse(src).expect("table says this parses");
            let canonical = rule.expr.to_string();
            let again = parse(&canonical).unwrap_or_else(|e| panic!("{canonical:?} (from {src:?}) failed: {e}"));
            assert_eq!(again.expr, rule.expr, "{src:?} printed as {canonical:?}");
        }
    }
    let rule = parse("(Host(`A`) || Host(`b`)) && !Path(`/x`)").expect("valid");
    assert_eq!(rule.expr.to_string(), "(Host(`a`) || Host(`b`)) && !Path(`/x`)");
}

#[test]
fn error_display_names_the_column() {
    let err = parse("Host(`a` && Path(`/`))").expect_err("missing `)`");
    assert_eq!(err.to_string(), "column 10: expected `)` after matcher arguments, found `&&`");
    let as_std: &dyn std::error::Error = &err;
    assert!(as_std.source().is_none());
    assert_eq!(
        err,
        RuleError {
            column: 10,
            message: "expected `)` after matcher arguments, found `&&`".into()
        }
    );
}

#[test]
fn nesting_and_operator_counts_are_bounded() {
    let deep = format!("{}Path(`/`)", "!".repeat(200));
    let err = parse(&deep).expect_err("too deep");
    assert_eq!(err.column, 101);
    assert!(err.message.contains("more than 100 deep"), "{err}");

    let parens = format!("{}Path(`/`){}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&parens).is_ok());

    let long = vec!["Path(`/`)"; 1002].join(" || ");
    let err = parse(&long).expect_err("too many operators");
    assert!(err.message.contains("more than 1000"), "{err}");
    let fine = vec!["Path(`/`)"; 1001].join(" || ");
    assert!(parse(&fine).is_ok());
}

fn exact(h: &str) -> HostPattern {
    HostPattern::Exact(h.to_owned())
}

#[test]
fn required_hosts_follow_the_boolean_structure() {
    let wild = |p: &str| HostPattern::Wildcard(p.to_owned());
    let cases: Vec<(&str, Option<Vec<HostPattern>>)> = vec![
        ("Host(`a`)", Some(vec![exact("a")])),
        ("Host(`A:80`) && Path(`/`)", Some(vec![exact("a")])),
        ("Path(`/`) && Host(`a`)", Some(vec![exact("a")])),
        ("Host(`a`) || Host(`*.b.com`)", Some(vec![exact("a"), wild("b.com")])),
        ("Host(`a`) || Host(`a`)", Some(vec![exact("a")])),
        ("Host(`a`) || Path(`/`)", None),
        ("(Host(`a`) || Host(`b`)) && Host(`c`)", Some(vec![exact("c")])),
        ("Host(`c`) && (Host(`a`) || Host(`b`))", Some(vec![exact("c")])),
        (
            "(Host(`a`) && Method(`GET`)) || (Host(`b`) && Path(`/`))",
            Some(vec![exact("a"), exact("b")]),
        ),
        ("!Host(`a`)", None),
        ("!Host(`a`) && Host(`b`)", Some(vec![exact("b")])),
        ("Host(`*`)", None),
        ("Host(`*`) || Host(`a`)", None),
        ("Path(`/`)", None),
        ("HostRegexp(`a`)", None),
    ];
    for (src, want) in cases {
        let rule = parse(src).expect("valid rule");
        assert_eq!(rule.required_hosts(), want, "{src}");
    }
}

#[test]
fn default_priority_is_the_rule_length() {
    // The example from Traefik's documentation.
    let regexp = parse(r"HostRegexp(`[a-z]+\.traefik\.com`)").expect("valid");
    let host = parse("Host(`foobar.traefik.com`)").expect("valid");
    assert_eq!(regexp.default_priority(), 34);
    assert_eq!(host.default_priority(), 26);
}
