//! Traefik's API shapes: `/api/overview`, `/api/version`, `/api/rawdata`, `/api/entrypoints`,
//! `/api/http/{routers,services,middlewares}` (and the empty TCP/UDP ones until drover routes
//! TCP), plus drover's `/api/providers`.
//!
//! List endpoints take Traefik's `search`, `status`, `serviceName`, `middlewareName`, `page` and
//! `per_page` and answer one page with `X-Next-Page` (1 on the last page). One difference: a
//! page past the end is a 404 rather than Traefik's 400, since the request is well formed and
//! only that page does not exist.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State as Extract};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_providers::runtime::{ServiceInfo, Status};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::params::{BadRequest, ListQuery};
use super::redact::scrub;
use super::{EntryPointInfo, State};
use crate::health::State as HealthState;
use crate::snapshot::Snapshot;

/// A JSON answer with secrets removed.
pub(super) fn json(mut value: Value) -> Response {
    scrub(&mut value);
    Json(value).into_response()
}

/// One page of a list, with `X-Next-Page`.
fn list(items: Vec<Value>, query: &ListQuery) -> Response {
    match query.page(items) {
        Ok((page, next)) => {
            let mut response = json(Value::Array(page));
            response.headers_mut().insert("x-next-page", HeaderValue::from(next));
            response
        }
        Err(e) => e.into_response(),
    }
}

/// The name from the path; an undecodable one cannot name anything.
fn name_of(path: Result<Path<String>, PathRejection>, what: &str) -> Result<String, BadRequest> {
    path.map(|Path(name)| name)
        .map_err(|_| BadRequest::not_found(format!("{what}: the name in the path is not valid UTF-8")))
}

fn not_found(what: &str, name: &str) -> Response {
    BadRequest::not_found(format!("{what} `{name}` does not exist")).into_response()
}

/// `GET /api/overview`: counts per kind, features, providers, and drover's server health counts.
pub(super) async fn overview(Extract(state): Extract<State>) -> Response {
    let snapshot = state.shared.snapshot.load();
    let config = &snapshot.config;
    let counts = |statuses: &mut dyn Iterator<Item = Status>| {
        let (mut total, mut warnings, mut errors) = (0u64, 0u64, 0u64);
        for s in statuses {
            total += 1;
            match s {
                Status::Warning => warnings += 1,
                Status::Disabled => errors += 1,
                Status::Enabled => {}
            }
        }
        json!({ "total": total, "warnings": warnings, "errors": errors })
    };
    let zero = json!({ "total": 0, "warnings": 0, "errors": 0 });
    let now = Instant::now();
    let (mut total, mut up, mut ejected, mut probation, mut slow_start) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for service in snapshot.services.values() {
        for server in service.servers.iter() {
            total += 1;
            match server.health.report(now).state {
                HealthState::Up => up += 1,
                HealthState::Ejected => ejected += 1,
                HealthState::Probation => probation += 1,
                HealthState::SlowStart => slow_start += 1,
            }
        }
    }
    let statuses = state.statuses.borrow().clone();
    let providers: Vec<&str> = statuses.iter().map(|p| p.name.as_str()).collect();
    let provider_errors = statuses
        .iter()
        .filter(|p| p.state == drover_providers::provider::ProviderState::Error)
        .count();
    json(json!({
        "http": {
            "routers": counts(&mut config.routers.values().map(|r| r.status)),
            "services": counts(&mut config.services.values().map(|s| s.status)),
            "middlewares": counts(&mut config.middlewares.values().map(|m| m.status)),
        },
        "tcp": {
            "routers": counts(&mut config.l4.routers.values().map(|r| r.status)),
            "services": counts(&mut config.l4.services.values().map(|s| s.status)),
            "middlewares": zero,
        },
        "udp": {
            "routers": counts(&mut config.l4.udp_routers.values().map(|r| r.status)),
            "services": counts(&mut config.l4.udp_services.values().map(|s| s.status)),
        },
        "features": { "tracing": "", "metrics": "prometheus", "accessLog": state.info.access_log },
        "providers": providers,
        "providerErrors": provider_errors,
        "servers": { "total": total, "up": up, "ejected": ejected, "probation": probation, "slowStart": slow_start },
        "entryPoints": state.info.entry_points.len(),
        "generation": config.generation,
    }))
}

/// `GET /api/version`.
pub(super) async fn version(Extract(state): Extract<State>) -> Response {
    json(json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Codename": "drover",
        "startDate": rfc3339(state.info.started),
    }))
}

/// `GET /api/rawdata`: the whole runtime configuration, services with `serverStatus`.
pub(super) async fn rawdata(Extract(state): Extract<State>) -> Response {
    let snapshot = state.shared.snapshot.load();
    let mut value = serde_json::to_value(&*snapshot.config).unwrap_or_default();
    if let Some(services) = value.get_mut("services").and_then(Value::as_object_mut) {
        for (name, service) in services.iter_mut() {
            if let Some(map) = service.as_object_mut() {
                map.insert("serverStatus".into(), server_status(&snapshot, name));
            }
        }
    }
    json(value)
}

fn entry_point_json(ep: &EntryPointInfo) -> Value {
    let duration = |d: std::time::Duration| humantime::format_duration(d).to_string();
    json!({
        "name": ep.name,
        "address": ep.address,
        "boundAddress": ep.bound.to_string(),
        "transport": {
            "respondingTimeouts": {
                "headerReadTimeout": duration(ep.header_read_timeout),
                "idleTimeout": duration(ep.idle_timeout),
            },
            "lifeCycle": { "graceTimeOut": duration(ep.grace_time_out) },
        },
        "observability": { "accessLogs": ep.observe.access_log, "metrics": ep.observe.metrics },
    })
}

/// `GET /api/entrypoints`.
pub(super) async fn entry_points(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let query = match ListQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let items = state
        .info
        .entry_points
        .iter()
        .filter(|ep| query.found_in([ep.name.as_str()]))
        .map(entry_point_json)
        .collect();
    list(items, &query)
}

/// `GET /api/entrypoints/{name}`.
pub(super) async fn entry_point(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let name = match name_of(path, "entrypoint") {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    match state.info.entry_points.iter().find(|ep| ep.name == name) {
        Some(ep) => json(entry_point_json(ep)),
        None => not_found("entrypoint", &name),
    }
}

/// `GET /api/http/routers`.
pub(super) async fn http_routers(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let query = match ListQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .routers
        .values()
        .filter(|r| query.status.is_none_or(|s| s == r.status))
        .filter(|r| query.service_name.as_ref().is_none_or(|s| *s == r.service))
        .filter(|r| {
            query.middleware_name.as_ref().is_none_or(|m| {
                r.middlewares
                    .iter()
                    .any(|x| x == m || drover_providers::aggregate::qualify(x, &r.provider) == *m)
            })
        })
        .filter(|r| query.found_in([r.name.as_str(), r.rule.as_str()]))
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    list(items, &query)
}

/// `GET /api/http/routers/{name}`.
pub(super) async fn http_router(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let name = match name_of(path, "router") {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    match snapshot.config.routers.get(&name) {
        Some(r) => json(serde_json::to_value(r).unwrap_or_default()),
        None => not_found("router", &name),
    }
}

/// `GET /api/http/middlewares`: Traefik's shape (`name`, `provider`, `type`, the one set type's
/// configuration, `status`, `usedBy`); basic-auth hashes never appear.
pub(super) async fn http_middlewares(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let query = match ListQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .middlewares
        .values()
        .filter(|m| query.status.is_none_or(|s| s == m.status))
        .filter(|m| query.found_in([m.name.as_str(), m.kind.as_str()]))
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .collect();
    list(items, &query)
}

/// `GET /api/http/middlewares/{name}`.
pub(super) async fn http_middleware(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let name = match name_of(path, "middleware") {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    match snapshot.config.middlewares.get(&name) {
        Some(m) => json(serde_json::to_value(m).unwrap_or_default()),
        None => not_found("middleware", &name),
    }
}

/// `GET /api/http/services`.
pub(super) async fn http_services(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let query = match ListQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    let now = Instant::now();
    let items = snapshot
        .config
        .services
        .values()
        .filter(|s| query.status.is_none_or(|st| st == s.status))
        .filter(|s| query.found_in([s.name.as_str()]))
        .map(|s| service_json(&snapshot, s, now))
        .collect();
    list(items, &query)
}

/// `GET /api/http/services/{name}`: the service as configured, Traefik's `serverStatus`
/// (`url → UP | DOWN`), and drover's per-server health.
pub(super) async fn http_service(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let name = match name_of(path, "service") {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    match snapshot.config.services.get(&name) {
        Some(info) => json(service_json(&snapshot, info, Instant::now())),
        None => not_found("service", &name),
    }
}

/// `GET /api/http/serversTransports`.
pub(super) async fn http_servers_transports(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let query = match ListQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .servers_transports
        .values()
        .filter(|t| query.status.is_none_or(|st| st == t.status))
        .filter(|t| query.found_in([t.name.as_str()]))
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .collect();
    list(items, &query)
}

/// `GET /api/http/serversTransports/{name}`.
pub(super) async fn http_servers_transport(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let name = match name_of(path, "servers transport") {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let snapshot = state.shared.snapshot.load();
    match snapshot.config.servers_transports.get(&name) {
        Some(t) => json(serde_json::to_value(t).unwrap_or_default()),
        None => not_found("servers transport", &name),
    }
}

/// Traefik's `serverStatus`: `url → UP | DOWN`.
fn server_status(snapshot: &Snapshot, name: &str) -> Value {
    let mut out = Map::new();
    if let Some(service) = snapshot.services.get(name) {
        for server in service.servers.iter() {
            let up = !server.health.is_out() && server.weight > 0;
            out.insert(server.url.to_string(), Value::from(if up { "UP" } else { "DOWN" }));
        }
    }
    Value::Object(out)
}

/// Each server of the service with its health (drover's `servers`).
pub(super) fn servers_json(snapshot: &Snapshot, name: &str, now: Instant) -> Vec<Value> {
    let Some(service) = snapshot.services.get(name) else {
        return Vec::new();
    };
    service
        .servers
        .iter()
        .map(|server| {
            let report = server.health.report(now);
            let mut entry = serde_json::to_value(&report).unwrap_or_default();
            if let Some(map) = entry.as_object_mut() {
                map.insert("url".into(), server.url.as_ref().into());
                map.insert("weight".into(), server.weight.into());
                map.insert("tier".into(), server.tier.into());
                map.insert("connectionFailures".into(), server.health.local_failures_total().into());
                let limiter = server.upstream.limiter();
                map.insert("inFlight".into(), limiter.in_flight().into());
                map.insert("queued".into(), limiter.queued().into());
                map.insert("maxConns".into(), limiter.limits().max_conns.into());
            }
            entry
        })
        .collect()
}

/// A service in Traefik's shape plus drover's `servers`, `health` and retry counters.
pub(super) fn service_json(snapshot: &Snapshot, info: &ServiceInfo, now: Instant) -> Value {
    let mut body = serde_json::to_value(info).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        let kind = match (&info.weighted, &info.failover, &info.mirroring) {
            (Some(_), _, _) => "weighted",
            (_, Some(_), _) => "failover",
            (_, _, Some(_)) => "mirroring",
            _ => "loadbalancer",
        };
        map.insert("type".into(), kind.into());
        map.insert("balancing".into(), serde_json::to_value(&info.choice).unwrap_or_default());
        if let Some(stats) = snapshot.services.get(&info.name).and_then(|s| s.mirror_stats()) {
            map.insert("mirrorCopies".into(), stats);
        }
        map.insert("serverStatus".into(), server_status(snapshot, &info.name));
        map.insert("servers".into(), servers_json(snapshot, &info.name, now).into());
        if let Some(service) = snapshot.services.get(&info.name) {
            map.insert("health".into(), serde_json::to_value(&service.health).unwrap_or_default());
            map.insert("retries".into(), service.budget.retries().into());
            map.insert("retriesRefused".into(), service.budget.refused().into());
        }
    }
    body
}

/// An empty list (middlewares, TCP and UDP objects, which drover does not have yet), with the
/// list parameters checked as for any list.
pub(super) async fn empty_list(RawQuery(query): RawQuery) -> Response {
    match ListQuery::parse(query.as_deref()) {
        Ok(q) => list(Vec::new(), &q),
        Err(e) => e.into_response(),
    }
}

/// The detail endpoint of a kind drover has none of yet.
pub(super) async fn no_such_object(path: Result<Path<String>, PathRejection>) -> Response {
    match name_of(path, "object") {
        Ok(name) => not_found("object", &name),
        Err(r) => r.into_response(),
    }
}

/// `GET /api/providers`: every provider's status and the items it saw.
pub(super) async fn providers(Extract(state): Extract<State>) -> Response {
    let statuses = state.statuses.borrow().clone();
    json(serde_json::to_value(statuses).unwrap_or_default())
}

/// `GET /api/providers/{name}`.
pub(super) async fn provider(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let name = match name_of(path, "provider") {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let found = state.statuses.borrow().iter().find(|s| s.name == name).cloned();
    match found {
        Some(status) => json(serde_json::to_value(status).unwrap_or_default()),
        None => BadRequest::not_found(format!("no provider named `{name}`")).into_response(),
    }
}

/// `2026-01-02T03:04:05Z`.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let c = crate::civil::civil(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_767_323_045)), "2026-01-02T03:04:05Z");
    }
}
