//! The rule parser: ``Host(`a`) && PathPrefix(`/x`)`` → a rule tree → the proxy's matcher.
//!
//! Besides not crashing, two promises are checked: the canonical text (`Display`) parses back
//! to the same tree, and the host index the route table builds from `required_hosts` finds the
//! router for every request the rule itself matches (requests are made from the rule's own
//! values, so they do match).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use drover::routing::{normalize_host, CompiledRule, RequestView, RouteEntry, RouteTable};
use drover_providers::rule::{self, Expr, HostPattern, Matcher};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

/// Values a matching request may need, collected from the rule's matchers.
#[derive(Default)]
struct Values {
    hosts: Vec<String>,
    paths: Vec<String>,
    methods: Vec<Method>,
    headers: HeaderMap,
    query: Vec<String>,
    ips: Vec<IpAddr>,
}

fn collect(expr: &Expr, out: &mut Values) {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect(a, out);
            collect(b, out);
        }
        Expr::Not(inner) => collect(inner, out),
        Expr::Matcher(m) => match m {
            Matcher::Host(HostPattern::Exact(h)) => out.hosts.push(h.clone()),
            Matcher::Host(HostPattern::Wildcard(parent)) => out.hosts.push(format!("x.{parent}")),
            Matcher::Host(HostPattern::Any) | Matcher::HostRegexp(_) | Matcher::PathRegexp(_) => {}
            Matcher::Path(p) | Matcher::PathPrefix(p) => out.paths.push(p.clone()),
            Matcher::Method(m) => out.methods.extend(Method::from_bytes(m.as_bytes())),
            Matcher::Header(name, value) => {
                if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                    out.headers.append(name, value);
                }
            }
            Matcher::HeaderRegexp(..) | Matcher::QueryRegexp(..) => {}
            Matcher::Query(key, value) => out.query.push(match value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            }),
            Matcher::ClientIP(net) => out.ips.push(net.addr()),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = rule::parse(source) else { return };
    let canonical = parsed.expr.to_string();
    match rule::parse(&canonical) {
        Ok(again) => assert_eq!(again.expr, parsed.expr, "{source:?} → {canonical:?} parses to another tree"),
        Err(e) => panic!("{source:?} → {canonical:?}, which does not parse: {e}"),
    }
    let _ = parsed.default_priority();
    let Ok(compiled) = CompiledRule::compile(&parsed) else { return };
    let table = RouteTable::build(vec![RouteEntry {
        name: "r".into(),
        priority: parsed.default_priority(),
        rule: compiled.clone(),
        hosts: parsed.required_hosts().map(Into::into),
        payload: (),
    }]);

    let mut values = Values::default();
    collect(&parsed.expr, &mut values);
    let mut hosts: Vec<String> = values.hosts.iter().take(4).map(|h| normalize_host(h).into_owned()).collect();
    hosts.push(String::new());
    let mut paths: Vec<&str> = values.paths.iter().take(4).map(String::as_str).collect();
    paths.push("/");
    let query = values.query.join("&");
    let method = values.methods.first().cloned().unwrap_or(Method::GET);
    let ip = values.ips.first().copied().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for host in &hosts {
        for path in &paths {
            let request = RequestView {
                host,
                path,
                query: Some(query.as_str()),
                method: &method,
                headers: &values.headers,
                client_ip: ip,
            };
            assert_eq!(
                table.find(&request).is_some(),
                compiled.matches(&request),
                "{source:?}: the host index disagrees with the rule for host {host:?}, path {path:?}"
            );
        }
    }
});
