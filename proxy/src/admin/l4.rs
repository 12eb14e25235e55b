//! `/api/tcp/…` and `/api/udp/…`: TCP and UDP routers and services in Traefik's shapes (with
//! `status`, `error`, `usedBy`), each TCP service with its servers' health and each TCP or UDP
//! router with its counters.

use std::sync::atomic::Ordering;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State as Extract};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::params::{BadRequest, ListQuery};
use super::State;
use crate::snapshot::Snapshot;

fn value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// A list endpoint over `items` (name, status, searchable text, JSON).
fn listed(query: Option<String>, items: Vec<(drover_providers::runtime::Status, Vec<String>, Value)>) -> Response {
    let query = match ListQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let items = items
        .into_iter()
        .filter(|(status, _, _)| query.status.is_none_or(|s| s == *status))
        .filter(|(_, text, _)| query.found_in(text.iter().map(String::as_str)))
        .map(|(_, _, v)| v)
        .collect();
    match query.page(items) {
        Ok((page, next)) => {
            let mut response = super::api::json(Value::Array(page));
            response.headers_mut().insert("x-next-page", axum::http::HeaderValue::from(next));
            response
        }
        Err(e) => e.into_response(),
    }
}

fn one(path: Result<Path<String>, PathRejection>, what: &str, find: impl FnOnce(&str) -> Option<Value>) -> Response {
    let name = match path {
        Ok(Path(name)) => name,
        Err(_) => return BadRequest::not_found(format!("{what}: the name in the path is not valid UTF-8")).into_response(),
    };
    match find(&name) {
        Some(v) => super::api::json(v),
        None => BadRequest::not_found(format!("{what} `{name}` does not exist")).into_response(),
    }
}

fn tcp_router_json(snapshot: &Snapshot, state: &State, name: &str) -> Option<Value> {
    let info = snapshot.config.l4.routers.get(name)?;
    let mut v = value(info);
    if let Some(counters) = counters(&state.shared.metrics.tcp, name, "connectFailures") {
        v["connections"] = counters;
    }
    Some(v)
}

/// The counters of L4 router `name` (`failures`: what its failures are called), if it has any.
fn counters(registry: &crate::l4::serve::L4StatsRegistry, name: &str, failures: &str) -> Option<Value> {
    let stats = registry.all().into_iter().find(|(n, _)| n == name).map(|(_, s)| s)?;
    let mut v = json!({
        "open": stats.open.load(Ordering::Relaxed),
        "total": stats.connections.load(Ordering::Relaxed),
        "bytesIn": stats.bytes_in.load(Ordering::Relaxed),
        "bytesOut": stats.bytes_out.load(Ordering::Relaxed),
    });
    v[failures] = json!(stats.connect_failures.load(Ordering::Relaxed));
    Some(v)
}

fn udp_router_json(snapshot: &Snapshot, state: &State, name: &str) -> Option<Value> {
    let mut v = value(snapshot.config.l4.udp_routers.get(name)?);
    if let Some(counters) = counters(&state.shared.metrics.udp, name, "sessionFailures") {
        v["sessions"] = counters;
    }
    Some(v)
}

fn tcp_service_json(snapshot: &Snapshot, name: &str) -> Option<Value> {
    let info = snapshot.config.l4.services.get(name)?;
    let mut v = value(info);
    let compiled = snapshot
        .l4
        .entry_points
        .iter()
        .flat_map(|t| t.plain.iter().chain(t.tls.iter()))
        .map(|r| &r.service)
        .find(|s| &*s.name == name);
    if let Some(service) = compiled {
        let now = Instant::now();
        let mut status = serde_json::Map::new();
        let mut servers = Vec::new();
        for server in service.servers.iter() {
            let report = server.health.report(now);
            let up = !server.health.is_out();
            status.insert(server.address.to_string(), json!(if up { "UP" } else { "DOWN" }));
            servers.push(json!({ "address": &*server.address, "tls": server.tls, "weight": server.weight, "health": value(&report) }));
        }
        v["serverStatus"] = Value::Object(status);
        v["servers"] = Value::Array(servers);
    }
    Some(v)
}

/// `GET /api/tcp/routers`.
pub(super) async fn tcp_routers(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .l4
        .routers
        .values()
        .map(|r| {
            (
                r.status,
                vec![r.name.clone(), r.rule.clone()],
                tcp_router_json(&snapshot, &state, &r.name).unwrap_or_default(),
            )
        })
        .collect();
    listed(query, items)
}

/// `GET /api/tcp/routers/{name}`.
pub(super) async fn tcp_router(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let snapshot = state.shared.snapshot.load();
    one(path, "TCP router", |name| tcp_router_json(&snapshot, &state, name))
}

/// `GET /api/tcp/services`.
pub(super) async fn tcp_services(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .l4
        .services
        .values()
        .map(|s| {
            (
                s.status,
                vec![s.name.clone()],
                tcp_service_json(&snapshot, &s.name).unwrap_or_default(),
            )
        })
        .collect();
    listed(query, items)
}

/// `GET /api/tcp/services/{name}`.
pub(super) async fn tcp_service(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let snapshot = state.shared.snapshot.load();
    one(path, "TCP service", |name| tcp_service_json(&snapshot, name))
}

/// `GET /api/udp/routers`.
pub(super) async fn udp_routers(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .l4
        .udp_routers
        .values()
        .map(|r| {
            let v = udp_router_json(&snapshot, &state, &r.name).unwrap_or_default();
            (r.status, vec![r.name.clone()], v)
        })
        .collect();
    listed(query, items)
}

/// `GET /api/udp/routers/{name}`.
pub(super) async fn udp_router(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let snapshot = state.shared.snapshot.load();
    one(path, "UDP router", |name| udp_router_json(&snapshot, &state, name))
}

/// `GET /api/udp/services`.
pub(super) async fn udp_services(Extract(state): Extract<State>, RawQuery(query): RawQuery) -> Response {
    let snapshot = state.shared.snapshot.load();
    let items = snapshot
        .config
        .l4
        .udp_services
        .values()
        .map(|s| (s.status, vec![s.name.clone()], value(s)))
        .collect();
    listed(query, items)
}

/// `GET /api/udp/services/{name}`.
pub(super) async fn udp_service(Extract(state): Extract<State>, path: Result<Path<String>, PathRejection>) -> Response {
    let snapshot = state.shared.snapshot.load();
    one(path, "UDP service", |name| snapshot.config.l4.udp_services.get(name).map(value))
}
