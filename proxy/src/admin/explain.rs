//! `GET /api/explain`: which router a request would take, and why the others did not take it.
//!
//! The winner is found exactly as the data path finds it, by the entrypoint's route table. The
//! explanation walks every router of the entrypoint in the order the table tries them
//! (priority, highest first; ties by name) and evaluates its rule's AST one matcher at a time,
//! with the same compiled matchers the data path uses, so each "why not" names the matcher that
//! failed and the part of the request it looked at: ``Host(`a.example`) did not match host
//! `b.example` ``. Routers that are disabled, or not on this entrypoint, are listed as skipped
//! with their reasons, at the place their priority would put them. For the winner it shows the
//! middlewares, the service, its servers with their health, and the server the balancer would
//! pick next (without taking the turn).

use std::net::IpAddr;

use axum::extract::{RawQuery, State as Extract};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use drover_providers::rule::{Expr, Matcher, Rule};
use drover_providers::runtime::{RouterInfo, Status};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::api::{json, service_json};
use super::params::{self, BadRequest, Params};
use super::State;
use crate::routing::{normalize_host, CompiledRule, RequestView};
use crate::snapshot::Snapshot;

/// An explain request, checked and decoded.
#[derive(Debug)]
struct Question {
    entry_point: usize,
    /// `https://` URL: the request arrives over TLS (the entrypoint's TLS routers).
    tls: bool,
    entry_point_name: String,
    url: String,
    method: Method,
    host: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    header_lines: Vec<String>,
    client_ip: IpAddr,
}

impl Question {
    fn parse(query: Option<&str>, entry_points: &[String]) -> Result<Self, BadRequest> {
        let params = Params::parse(query);
        let raw_url = params
            .get("url")
            .ok_or_else(|| BadRequest::new("url: missing; give `url=http://host/path?query` or `url=/path`"))?;
        let url = params::matching(params::URL_PATTERN, raw_url).ok_or_else(|| {
            BadRequest::new(format!(
                "url: `{raw_url}` is not `http://host[:port]/path[?query]` or `/path[?query]` (spaces and other unsafe characters must be %-encoded)"
            ))
        })?;
        let uri: Uri = url.parse().map_err(|e| BadRequest::new(format!("url: `{url}`: {e}")))?;
        let method = match params.get("method") {
            None => Method::GET,
            Some(m) => {
                let m = params::matching(params::METHOD_PATTERN, m)
                    .ok_or_else(|| BadRequest::new(format!("method: `{m}` is not an upper-case HTTP method such as GET")))?;
                Method::from_bytes(m.as_bytes()).map_err(|e| BadRequest::new(format!("method: `{m}`: {e}")))?
            }
        };
        let mut headers = HeaderMap::new();
        let mut header_lines = Vec::new();
        for (i, line) in params.all("header").enumerate() {
            if i >= params::HEADERS_MAX {
                return Err(BadRequest::new(format!("header: at most {} headers", params::HEADERS_MAX)));
            }
            let line = params::matching(params::HEADER_PATTERN, line)
                .ok_or_else(|| BadRequest::new(format!("header: `{line}` is not `Name: value` (printable ASCII)")))?;
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| BadRequest::new(format!("header `{name}`: {e}")))?;
            let value = HeaderValue::from_str(value.trim()).map_err(|e| BadRequest::new(format!("header `{name}`: {e}")))?;
            header_lines.push(format!("{}: {}", name.as_str(), value.to_str().unwrap_or_default()));
            headers.append(name, value);
        }
        // The data path takes the host from an absolute URI first, then from `Host`; a client
        // sending an absolute URL sends that host in `Host` too.
        let raw_host = match uri.authority() {
            Some(authority) => {
                if !headers.contains_key(axum::http::header::HOST) {
                    if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                        headers.insert(axum::http::header::HOST, v);
                    }
                }
                authority.as_str().to_string()
            }
            None => headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string(),
        };
        let client_ip = match params.get("clientIp") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(ip) => params::matching(params::IP_PATTERN, ip)
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| BadRequest::new(format!("clientIp: `{ip}` is not an IPv4 or IPv6 address")))?,
        };
        let (entry_point, entry_point_name) = match params.get("entryPoint") {
            None => (0, entry_points.first().cloned().unwrap_or_default()),
            Some(name) => match entry_points.iter().position(|n| n == name) {
                Some(i) => (i, name.to_string()),
                None => {
                    return Err(BadRequest::not_found(format!(
                        "entryPoint: no entrypoint named `{name}` (known: {})",
                        entry_points.join(", ")
                    )))
                }
            },
        };
        Ok(Self {
            entry_point,
            tls: uri.scheme() == Some(&http::uri::Scheme::HTTPS),
            entry_point_name,
            url: url.to_string(),
            method,
            host: normalize_host(&raw_host).into_owned(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers,
            header_lines,
            client_ip,
        })
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            method: &self.method,
            headers: &self.headers,
            client_ip: self.client_ip,
        }
    }
}

/// `GET /api/explain?url=…&method=…&header=Name:%20value&clientIp=…&entryPoint=…`.
pub(super) async fn explain(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let names: Vec<String> = state.info.entry_points.iter().map(|e| e.name.clone()).collect();
    let question = match Question::parse(query.as_deref(), &names) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    json(answer(&snapshot, &question, Instant::now()))
}

/// One router's line in the answer.
struct Line<'a> {
    info: Option<&'a RouterInfo>,
    name: &'a str,
    priority: i64,
    result: &'static str,
    reasons: Vec<String>,
}

fn answer(snapshot: &Snapshot, q: &Question, now: Instant) -> Value {
    let view = q.view();
    let config = &snapshot.config;
    let Some(table) = snapshot.table(q.entry_point, q.tls) else {
        return json!({ "message": "no route table for this entrypoint" });
    };
    let winner = table.find(&view);
    let winner_name = winner.map(|r| r.router.to_string());
    let winner_priority = winner_name
        .as_deref()
        .and_then(|w| table.routes().find(|(n, _, _)| *n == w).map(|(_, p, _)| p));

    let mut lines: Vec<Line<'_>> = Vec::new();
    for (name, priority, _) in table.routes() {
        let info = config.routers.get(name);
        let verdict = match info.and_then(|i| i.parsed.as_ref()) {
            Some(rule) => evaluate(&rule.expr, &view),
            None => Verdict {
                matched: false,
                reasons: vec!["its rule is not available to explain".into()],
            },
        };
        let (result, reasons) = if Some(name) == winner_name.as_deref() {
            ("matched", Vec::new())
        } else if verdict.matched {
            let w = winner_name.as_deref().unwrap_or("?");
            let why = match winner_priority {
                Some(wp) if wp == priority => format!(
                    "it matches too, but `{w}` has the same priority ({priority}) and comes first by name (ties go to the name that sorts first)"
                ),
                Some(wp) => format!("it matches too, but `{w}` has a higher priority ({wp} > {priority})"),
                None => "it matches, but the route table did not choose it".to_string(),
            };
            ("also-matches", vec![why])
        } else {
            ("not-matched", verdict.reasons)
        };
        lines.push(Line {
            info: info.map(|i| &**i),
            name,
            priority,
            result,
            reasons,
        });
    }
    let ep = q.entry_point_name.as_str();
    for (name, info) in &config.routers {
        if lines.iter().any(|l| l.name == name.as_str()) {
            continue;
        }
        let reasons = if info.status == Status::Disabled {
            let mut r = vec!["the router is disabled".to_string()];
            r.extend(info.errors.iter().cloned());
            r
        } else if !info.using.iter().any(|u| u == ep) {
            vec![format!("it is not on entrypoint `{ep}` (it uses: {})", info.using.join(", "))]
        } else if snapshot
            .table(q.entry_point, !q.tls)
            .is_some_and(|t| t.routes().any(|(n, _, _)| n == name.as_str()))
        {
            vec![if q.tls {
                "it serves plain HTTP only (no `tls` section, and its entrypoint has no `http.tls`)".to_string()
            } else {
                "it serves TLS connections only (https://)".to_string()
            }]
        } else {
            vec![format!("its service `{}` is not available (disabled or missing)", info.service)]
        };
        lines.push(Line {
            info: Some(info),
            name,
            priority: info.priority,
            result: "skipped",
            reasons,
        });
    }
    lines.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(b.name)));

    let routers: Vec<Value> = lines
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "provider": l.info.map(|i| i.provider.as_str()),
                "rule": l.info.map(|i| i.rule.as_str()),
                "priority": l.priority,
                "status": l.info.map_or(Status::Disabled, |i| i.status),
                "result": l.result,
                "reasons": l.reasons,
            })
        })
        .collect();

    let request = json!({
        "entryPoint": q.entry_point_name,
        "url": q.url,
        "method": q.method.as_str(),
        "host": q.host,
        "path": q.path,
        "query": q.query,
        "requestHeaders": q.header_lines,
        "clientIp": q.client_ip.to_string(),
    });
    let Some(route) = winner else {
        let considered = lines.iter().filter(|l| l.result != "skipped").count();
        return json!({
            "request": request,
            "matched": false,
            "router": null,
            "summary": format!("no router on entrypoint `{ep}` matches ({considered} tried): drover answers 404"),
            "routers": routers,
            "middlewares": [],
            "service": null,
            "nextServer": null,
        });
    };
    let router = route.router.as_ref();
    let service = &route.service;
    let client_ip = q.client_ip.to_string();
    let affinity = crate::balance::Affinity {
        headers: &q.headers,
        path: &q.path,
        client_ip: client_ip.as_bytes(),
    };
    // Child services, sticky server, hash bucket: see `service::explain`.
    let choice = crate::service::explain::explain(service, &affinity, now);
    let next = choice.server.clone();
    let summary = match &next {
        Some(url) if !choice.path.is_empty() => format!(
            "router `{router}` → service `{}` → {} → next server {url}",
            service.name,
            choice
                .path
                .iter()
                .map(|s| format!("`{}`", s.service))
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        Some(url) => format!("router `{router}` → service `{}` → next server {url}", service.name),
        None if service.composite.is_some() => format!(
            "router `{router}` → service `{}`, none of whose children has an available server",
            service.name
        ),
        None if service.servers.iter().all(|s| s.weight == 0) => format!(
            "router `{router}` → service `{}`, which has no server with a positive weight: drover answers 503",
            service.name
        ),
        None => format!(
            "router `{router}` → service `{}`, whose servers are all ejected: onAllEjected ({:?}) decides",
            service.name, service.health.passive.on_all_ejected
        ),
    };
    let service_value = config
        .services
        .get(service.name.as_ref())
        .map(|s| service_json(snapshot, s, now))
        .unwrap_or(Value::Null);
    let (middlewares, decisions) = middleware_lines(route, q);
    json!({
        "request": request,
        "matched": true,
        "router": router,
        "summary": summary,
        "routers": routers,
        "middlewares": middlewares,
        "middlewareDecisions": decisions,
        "service": service_value,
        "nextServer": next,
        "choice": serde_json::to_value(&choice).unwrap_or_default(),
    })
}

/// The route's middlewares in the order a request passes them, and what those that decide from
/// the request alone would decide for this one.
fn middleware_lines(route: &crate::snapshot::Route, q: &Question) -> (Vec<String>, Vec<Value>) {
    let Some(chain) = &route.middlewares else {
        return (Vec::new(), Vec::new());
    };
    let mut parts = {
        let mut builder = http::Request::builder().method(q.method.clone());
        if let Some(h) = builder.headers_mut() {
            h.clone_from(&q.headers);
        }
        let target = match &q.query {
            Some(query) => format!("{}?{query}", q.path),
            None => q.path.clone(),
        };
        match builder.uri(target).body(()) {
            Ok(req) => req.into_parts().0,
            Err(_) => return (chain.names().iter().map(|n| n.to_string()).collect(), Vec::new()),
        }
    };
    let host = q.headers.get(http::header::HOST).cloned();
    let req = crate::middleware::Req {
        parts: &mut parts,
        peer: q.client_ip,
        host: host.as_ref(),
        scheme: "http",
        trusted: false,
        body: None,
    };
    let decisions = chain
        .steps()
        .filter_map(|(name, m)| m.explain(&req).map(|d| json!({ "name": name, "decision": d })))
        .collect();
    (chain.names().iter().map(|n| n.to_string()).collect(), decisions)
}

/// Whether an expression matched, and if not, why.
struct Verdict {
    matched: bool,
    reasons: Vec<String>,
}

fn evaluate(expr: &Expr, view: &RequestView<'_>) -> Verdict {
    match expr {
        Expr::Matcher(m) => {
            let matched = matcher_matches(m, view);
            Verdict {
                matched,
                reasons: if matched {
                    Vec::new()
                } else {
                    vec![format!("{m} did not match {}", subject(m, view))]
                },
            }
        }
        Expr::And(..) => {
            let mut operands = Vec::new();
            flatten(expr, true, &mut operands);
            let verdicts: Vec<Verdict> = operands.iter().map(|e| evaluate(e, view)).collect();
            Verdict {
                matched: verdicts.iter().all(|v| v.matched),
                reasons: verdicts.into_iter().filter(|v| !v.matched).flat_map(|v| v.reasons).collect(),
            }
        }
        Expr::Or(..) => {
            let mut operands = Vec::new();
            flatten(expr, false, &mut operands);
            let verdicts: Vec<Verdict> = operands.iter().map(|e| evaluate(e, view)).collect();
            let matched = verdicts.iter().any(|v| v.matched);
            let reasons = if matched {
                Vec::new()
            } else {
                let each: Vec<String> = verdicts.into_iter().map(|v| v.reasons.join(" and ")).collect();
                vec![format!("none of the {} alternatives matched: {}", each.len(), each.join("; "))]
            };
            Verdict { matched, reasons }
        }
        Expr::Not(inner) => {
            let verdict = evaluate(inner, view);
            let reasons = if verdict.matched {
                let because = match inner.as_ref() {
                    Expr::Matcher(m) => format!("{m} matched {}", subject(m, view)),
                    other => format!("{other} matched"),
                };
                vec![format!("{expr} excluded it: {because}")]
            } else {
                Vec::new()
            };
            Verdict {
                matched: !verdict.matched,
                reasons,
            }
        }
    }
}

/// The operands of a chain of `&&` (or of `||`), in the order written.
fn flatten<'e>(expr: &'e Expr, and: bool, out: &mut Vec<&'e Expr>) {
    match (expr, and) {
        (Expr::And(a, b), true) | (Expr::Or(a, b), false) => {
            flatten(a, and, out);
            flatten(b, and, out);
        }
        _ => out.push(expr),
    }
}

/// One matcher, evaluated with the data path's compiled matcher.
fn matcher_matches(m: &Matcher, view: &RequestView<'_>) -> bool {
    let rule = Rule {
        expr: Expr::Matcher(m.clone()),
        source: m.to_string(),
    };
    CompiledRule::compile(&rule).is_ok_and(|c| c.matches(view))
}

/// The part of the request a matcher looks at, for a sentence.
fn subject(m: &Matcher, view: &RequestView<'_>) -> String {
    match m {
        Matcher::Host(_) | Matcher::HostRegexp(_) => {
            if view.host.is_empty() {
                "a request without a host".into()
            } else {
                format!("host `{}`", view.host)
            }
        }
        Matcher::Path(_) | Matcher::PathPrefix(_) | Matcher::PathRegexp(_) => format!("path `{}`", view.path),
        Matcher::Method(_) => format!("method `{}`", view.method),
        Matcher::Header(name, _) | Matcher::HeaderRegexp(name, _) => {
            let values: Vec<String> = view
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            if values.is_empty() {
                format!("a request without a `{name}` header")
            } else {
                format!("header `{name}: {}`", values.join(", "))
            }
        }
        Matcher::Query(key, _) | Matcher::QueryRegexp(key, _) => match view.query {
            None => "a request without a query string".into(),
            Some(q) => {
                let present = form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == key.as_str());
                if present {
                    format!("query `{q}`")
                } else {
                    format!("query `{q}` (no parameter `{key}`)")
                }
            }
        },
        Matcher::ClientIP(_) => format!("client IP `{}`", view.client_ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(query: &str) -> Question {
        Question::parse(Some(query), &["web".to_string(), "admin".to_string()]).expect("valid question")
    }

    fn why(rule: &str, q: &Question) -> Verdict {
        evaluate(&drover_providers::rule::parse(rule).expect("test rule").expr, &q.view())
    }

    #[test]
    fn reasons_name_the_failing_matcher() {
        let q = question("url=http://b.example/web?x=1&header=X-Env:%20prod&method=POST&clientIp=10.1.2.3");
        assert_eq!(q.host, "b.example");
        assert_eq!(q.method, Method::POST);
        let v = why("Host(`a.example`) && PathPrefix(`/web`)", &q);
        assert!(!v.matched);
        assert_eq!(v.reasons, ["Host(`a.example`) did not match host `b.example`"]);
        let v = why("Header(`X-Env`, `dev`)", &q);
        assert!(v.reasons[0].contains("header `x-env: prod`"), "{:?}", v.reasons);
        let v = why("!PathPrefix(`/web`)", &q);
        assert!(
            !v.matched && v.reasons[0].contains("excluded it: PathPrefix(`/web`) matched path `/web`"),
            "{:?}",
            v.reasons
        );
        let v = why("Method(`GET`) || ClientIP(`192.168.0.0/16`)", &q);
        assert!(v.reasons[0].starts_with("none of the 2 alternatives matched"), "{:?}", v.reasons);
        assert!(v.reasons[0].contains("client IP `10.1.2.3`"), "{:?}", v.reasons);
        assert!(why("Query(`x`, `1`) && ClientIP(`10.0.0.0/8`)", &q).matched);
        assert!(why("Query(`y`)", &q).reasons[0].contains("no parameter `y`"));
    }

    #[test]
    fn bad_questions_are_refused() {
        let names = ["web".to_string()];
        for bad in [
            "",
            "url=nope",
            "url=/&method=get",
            "url=/&header=NoColon",
            "url=/&clientIp=1.2.3",
            "url=/&entryPoint=x",
        ] {
            assert!(Question::parse(Some(bad), &names).is_err(), "{bad}");
        }
        let q = question("url=/x&header=Host:%20Api.Example:8080");
        assert_eq!(q.host, "api.example");
    }
}
