//! `GET /api/openapi.json`: an OpenAPI 3.0 document describing the admin side.
//!
//! Written by hand with `serde_json::json!` rather than derived (utoipa and the like): the
//! answers are assembled as JSON from types that belong to the providers crate and to Traefik's
//! shapes, so derives would mean annotating other people's types and still hand-describing the
//! assembled parts; a macro-derived document also tends to describe the Rust types rather than
//! what goes over the wire. Instead the document is checked against the wire: CI runs a
//! property-based fuzzer (schemathesis) that validates every answer against it, and the
//! parameter limits and patterns come from the same constants [`super::params`] enforces.
//!
//! The document follows the configuration: with credentials configured, every protected
//! operation lists its security schemes and its 401.

use axum::extract::State as Extract;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::params::{HEADERS_MAX, HEADER_PATTERN, IP_PATTERN, METHOD_PATTERN, PAGE_MAX, PER_PAGE_DEFAULT, PER_PAGE_MAX, URL_PATTERN};
use super::State;

/// `GET /api/openapi.json`.
pub(super) async fn document(Extract(state): Extract<State>) -> Response {
    let auth = &state.info.auth;
    // Not passed through the secret scrubber: the document holds no secrets, and its URL
    // pattern would look like a URL with credentials to it.
    Json(build(auth.basic(), auth.bearer())).into_response()
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": json_content(schema_ref("Error")) })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn status_enum() -> Value {
    json!({ "type": "string", "enum": ["enabled", "disabled", "warning"] })
}

fn name_parameter(what: &str) -> Value {
    json!({ "name": "name", "in": "path", "required": true, "description": format!("The {what}'s name (`name@provider` for dynamic objects)."), "schema": { "type": "string" } })
}

fn list_parameters(routers: bool) -> Vec<Value> {
    let mut params = vec![
        json!({ "name": "search", "in": "query", "description": "Case-insensitive substring of the name (routers: or of the rule).", "schema": { "type": "string" } }),
        json!({ "name": "status", "in": "query", "description": "Only objects with this status.", "schema": status_enum() }),
    ];
    if routers {
        params.push(json!({ "name": "serviceName", "in": "query", "description": "Only routers using this service.", "schema": { "type": "string" } }));
        params.push(json!({ "name": "middlewareName", "in": "query", "description": "Only routers using this middleware.", "schema": { "type": "string" } }));
    }
    params.push(json!({ "name": "page", "in": "query", "description": "1-based page.", "schema": { "type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1 } }));
    params.push(json!({ "name": "per_page", "in": "query", "description": "Items per page.", "schema": { "type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX, "default": PER_PAGE_DEFAULT } }));
    params
}

/// A Traefik list endpoint.
fn list_operation(summary: &str, tag: &str, item: Value, routers: bool) -> Value {
    json!({ "get": {
        "summary": summary,
        "tags": [tag],
        "parameters": list_parameters(routers),
        "responses": {
            "200": {
                "description": "One page of the list.",
                "headers": { "X-Next-Page": { "description": "The next page, or 1 on the last page.", "required": true, "schema": { "type": "integer", "minimum": 1 } } },
                "content": json_content(json!({ "type": "array", "items": item })),
            },
            "400": error_response("A list parameter is invalid."),
            "404": error_response("The page is past the end of the list."),
        }
    }})
}

fn detail_operation(summary: &str, tag: &str, what: &str, item: Value) -> Value {
    json!({ "get": {
        "summary": summary,
        "tags": [tag],
        "parameters": [name_parameter(what)],
        "responses": {
            "200": { "description": format!("The {what}."), "content": json_content(item) },
            "404": error_response(&format!("No {what} has this name.")),
        }
    }})
}

fn plain_operation(summary: &str, tag: &str, schema: Value) -> Value {
    json!({ "get": { "summary": summary, "tags": [tag], "responses": { "200": { "description": summary, "content": json_content(schema) } } } })
}

fn paths() -> Map<String, Value> {
    let mut p = Map::new();
    p.insert(
        "/ping".into(),
        json!({ "get": {
            "summary": "Liveness: 200 while serving, 503 once shutting down.",
            "tags": ["health"],
            "responses": {
                "200": { "description": "Serving.", "content": { "text/plain": { "schema": { "type": "string" } } } },
                "503": { "description": "Shutting down.", "content": { "text/plain": { "schema": { "type": "string" } } } },
            }
        }}),
    );
    p.insert(
        "/metrics".into(),
        json!({ "get": {
            "summary": "Prometheus metrics (text exposition format 0.0.4).",
            "tags": ["health"],
            "responses": { "200": { "description": "The metrics.", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } } }
        }}),
    );
    p.insert(
        "/api/overview".into(),
        plain_operation(
            "Counts of routers, services and servers by state; features; providers.",
            "api",
            schema_ref("Overview"),
        ),
    );
    p.insert(
        "/api/version".into(),
        plain_operation("drover's version and start date (Traefik's shape).", "api", schema_ref("Version")),
    );
    p.insert(
        "/api/rawdata".into(),
        plain_operation("The whole runtime configuration.", "api", schema_ref("RawData")),
    );
    p.insert("/api/entrypoints".into(), {
        let mut op = list_operation("Entrypoints.", "entrypoints", schema_ref("EntryPoint"), false);
        // Entrypoints have no status.
        if let Some(params) = op.pointer_mut("/get/parameters").and_then(Value::as_array_mut) {
            params.retain(|p| p["name"] != "status");
        }
        op
    });
    p.insert(
        "/api/entrypoints/{name}".into(),
        detail_operation("One entrypoint.", "entrypoints", "entrypoint", schema_ref("EntryPoint")),
    );
    p.insert(
        "/api/http/routers".into(),
        list_operation("HTTP routers.", "http", schema_ref("Router"), true),
    );
    p.insert(
        "/api/http/routers/{name}".into(),
        detail_operation("One HTTP router.", "http", "router", schema_ref("Router")),
    );
    p.insert(
        "/api/http/services".into(),
        list_operation("HTTP services with their servers' health.", "http", schema_ref("Service"), false),
    );
    p.insert(
        "/api/http/services/{name}".into(),
        detail_operation(
            "One HTTP service with its servers' health.",
            "http",
            "service",
            schema_ref("Service"),
        ),
    );
    p.insert(
        "/api/http/serversTransports".into(),
        list_operation(
            "Servers transports: how services reach their servers (TLS, HTTP/2).",
            "http",
            schema_ref("ServersTransport"),
            false,
        ),
    );
    p.insert(
        "/api/http/serversTransports/{name}".into(),
        detail_operation(
            "One servers transport.",
            "http",
            "servers transport",
            schema_ref("ServersTransport"),
        ),
    );
    p.insert(
        "/api/http/middlewares".into(),
        list_operation("HTTP middlewares.", "http", schema_ref("Middleware"), false),
    );
    p.insert(
        "/api/http/middlewares/{name}".into(),
        detail_operation("One HTTP middleware.", "http", "middleware", schema_ref("Middleware")),
    );
    for (kind, tag) in [
        ("tcp/routers", "tcp"),
        ("tcp/services", "tcp"),
        ("tcp/middlewares", "tcp"),
        ("udp/routers", "udp"),
        ("udp/services", "udp"),
    ] {
        let object = json!({ "type": "object" });
        p.insert(
            format!("/api/{kind}"),
            list_operation(
                &if kind == "tcp/middlewares" {
                    "TCP middlewares (not implemented: always empty).".to_string()
                } else {
                    format!("{}, in Traefik's shape with status, errors and usedBy.", kind.replace('/', " "))
                },
                tag,
                object.clone(),
                false,
            ),
        );
        p.insert(
            format!("/api/{kind}/{{name}}"),
            detail_operation(&format!("One of {}.", kind.replace('/', " ")), tag, "object", object),
        );
    }
    p.insert(
        "/api/providers".into(),
        plain_operation(
            "Every provider's status and the items it saw, with its decision for each.",
            "providers",
            json!({ "type": "array", "items": schema_ref("ProviderStatus") }),
        ),
    );
    p.insert(
        "/api/providers/{name}".into(),
        detail_operation(
            "One provider's status and items.",
            "providers",
            "provider",
            schema_ref("ProviderStatus"),
        ),
    );
    p.insert(
        "/api/tls/certificates".into(),
        plain_operation(
            "Every certificate TLS serves: subject, SANs, issuer, expiry, source, the routers it serves, and errors of its files; for a certificate from an ACME resolver (`acme`), its resolver, names, state (ordering, valid, renewing, waiting, failed), renewal time, orders, failures in a row, last error and next try. Name sets still being ordered are listed too, with empty certificate fields.",
            "tls",
            json!({ "type": "array", "items": { "type": "object" } }),
        ),
    );
    p.insert(
        "/api/tls/options".into(),
        plain_operation(
            "Every set of TLS options with its status, errors, warnings and the routers using it.",
            "tls",
            json!({ "type": "object" }),
        ),
    );
    p.insert("/api/explain".into(), json!({ "get": {
        "summary": "Which router a request would take, why the others did not, and where it would go.",
        "tags": ["explain"],
        "parameters": [
            { "name": "url", "in": "query", "required": true, "description": "`http://host[:port]/path?query`, or `/path?query` with the host in a `Host` header.", "schema": { "type": "string", "pattern": URL_PATTERN } },
            { "name": "method", "in": "query", "description": "The request method.", "schema": { "type": "string", "pattern": METHOD_PATTERN, "default": "GET" } },
            { "name": "header", "in": "query", "description": "A request header, `Name: value`; repeat for several.", "style": "form", "explode": true,
              "schema": { "type": "array", "maxItems": HEADERS_MAX, "items": { "type": "string", "pattern": HEADER_PATTERN } } },
            { "name": "clientIp", "in": "query", "description": "The client's address, for `ClientIP` (default 127.0.0.1).", "schema": { "type": "string", "pattern": IP_PATTERN } },
            { "name": "entryPoint", "in": "query", "description": "The entrypoint the request arrives on (default: the first by name).", "schema": { "type": "string" } },
        ],
        "responses": {
            "200": { "description": "The explanation.", "content": json_content(schema_ref("Explain")) },
            "400": error_response("A parameter is invalid."),
            "404": error_response("No entrypoint has this name."),
        }
    }}));
    p.insert("/api/events".into(), json!({ "get": {
        "summary": "Server-sent events: `update` whenever the configuration, a provider or a server's health changes (and every 5 s).",
        "tags": ["dashboard"],
        "responses": { "200": { "description": "An endless event stream.", "content": { "text/event-stream": { "schema": { "type": "string" } } } } }
    }}));
    p.insert("/api/history".into(), json!({ "get": {
        "summary": "The last 15 minutes at 3 s resolution: requests per second, 5xx and local-error (404/502/503/504) shares and p50/p99 latency per entrypoint, busiest services and routers; each server's health states and their changes.",
        "tags": ["dashboard"],
        "responses": { "200": { "description": "Series, oldest point first, aligned on the newest.", "content": json_content(json!({ "type": "object" })) } }
    }}));
    p.insert(
        "/api/openapi.json".into(),
        json!({ "get": {
            "summary": "This document.",
            "tags": ["api"],
            "responses": { "200": { "description": "The OpenAPI document.", "content": json_content(json!({ "type": "object" })) } }
        }}),
    );
    p.insert(
        "/dashboard/".into(),
        json!({ "get": {
            "summary": "The dashboard (HTML; its script and style sheet are embedded in drover).",
            "tags": ["dashboard"],
            "responses": { "200": { "description": "The page.", "content": { "text/html": { "schema": { "type": "string" } } } } }
        }}),
    );
    p
}

fn counts() -> Value {
    json!({ "type": "object", "required": ["total", "warnings", "errors"], "properties": {
        "total": { "type": "integer", "minimum": 0 }, "warnings": { "type": "integer", "minimum": 0 }, "errors": { "type": "integer", "minimum": 0 } } })
}

fn schemas() -> Value {
    let c = counts();
    let count = |n: &str| (n.to_string(), json!({ "type": "integer", "minimum": 0 }));
    let server_counts: Map<String, Value> = ["total", "up", "ejected", "probation", "slowStart"]
        .into_iter()
        .map(count)
        .collect();
    json!({
        "Error": { "type": "object", "required": ["message"], "properties": { "message": { "type": "string" } } },
        "Overview": { "type": "object", "required": ["http", "tcp", "udp", "features", "providers", "servers", "generation"], "properties": {
            "http": { "type": "object", "required": ["routers", "services", "middlewares"], "properties": { "routers": c, "services": c, "middlewares": c } },
            "tcp": { "type": "object", "required": ["routers", "services", "middlewares"], "properties": { "routers": c, "services": c, "middlewares": c } },
            "udp": { "type": "object", "required": ["routers", "services"], "properties": { "routers": c, "services": c } },
            "features": { "type": "object", "properties": { "tracing": { "type": "string" }, "metrics": { "type": "string" }, "accessLog": { "type": "boolean" } } },
            "providers": strings(),
            "providerErrors": { "type": "integer", "minimum": 0 },
            "servers": { "type": "object", "required": ["total", "up", "ejected", "probation", "slowStart"], "properties": server_counts },
            "entryPoints": { "type": "integer", "minimum": 0 },
            "generation": { "type": "integer", "minimum": 0 },
        } },
        "Version": { "type": "object", "required": ["Version", "Codename", "startDate"], "properties": {
            "Version": { "type": "string" }, "Codename": { "type": "string" }, "startDate": { "type": "string", "format": "date-time" } } },
        "EntryPoint": { "type": "object", "required": ["name", "address", "boundAddress", "transport", "observability"], "properties": {
            "observability": schema_ref("Observability"),
            "name": { "type": "string" }, "address": { "type": "string" }, "boundAddress": { "type": "string" },
            "transport": { "type": "object", "properties": {
                "respondingTimeouts": { "type": "object", "properties": { "headerReadTimeout": { "type": "string" }, "idleTimeout": { "type": "string" } } },
                "lifeCycle": { "type": "object", "properties": { "graceTimeOut": { "type": "string" } } } } } } },
        "Router": { "type": "object", "required": ["name", "provider", "rule", "priority", "entryPoints", "using", "service", "middlewares", "status"], "properties": {
            "name": { "type": "string" }, "provider": { "type": "string" }, "rule": { "type": "string" },
            "priority": { "type": "integer" }, "entryPoints": strings(), "using": strings(),
            "service": { "type": "string" }, "middlewares": strings(), "status": status_enum(), "error": strings(),
            "observability": schema_ref("Observability") } },
        "Observability": { "type": "object", "additionalProperties": false, "description": "What is recorded for requests: access-log lines, metrics. A router's switches are shown as written (absent = the entrypoint's).", "properties": {
            "accessLogs": { "type": "boolean" }, "metrics": { "type": "boolean" } } },
        "ServerHealth": { "type": "object", "required": ["url", "weight", "tier", "state", "connectionFailures", "consecutiveFailures", "consecutive5xx", "totalEjections", "multiplier", "activeDown", "inFlight", "queued", "maxConns"], "properties": {
            "url": { "type": "string" }, "weight": { "type": "integer", "minimum": 0 }, "tier": { "type": "integer", "minimum": 0 },
            "state": { "type": "string", "enum": ["up", "ejected", "probation", "slow-start"] },
            "ejectedForMs": { "type": "integer", "minimum": 0 }, "reason": { "type": "string" },
            "connectionFailures": { "type": "integer", "minimum": 0 }, "consecutiveFailures": { "type": "integer", "minimum": 0 },
            "consecutive5xx": { "type": "integer", "minimum": 0 }, "totalEjections": { "type": "integer", "minimum": 0 },
            "multiplier": { "type": "integer", "minimum": 0 }, "activeDown": { "type": "boolean" },
            "inFlight": { "type": "integer", "minimum": 0, "description": "Requests in flight to the server's address (counted against maxConnsPerHost, shared by the services that use it through the same transport)." },
            "queued": { "type": "integer", "minimum": 0, "description": "Requests waiting for a slot of the server's maxConnsPerHost." },
            "maxConns": { "type": "integer", "minimum": 0, "description": "The maxConnsPerHost in force; 0: no limit." } } },
        "Service": { "type": "object", "required": ["name", "provider", "status", "usedBy", "type", "serverStatus", "servers"], "properties": {
            "name": { "type": "string" }, "provider": { "type": "string" },
            "loadBalancer": { "type": "object", "nullable": true, "description": "The service as the provider gave it (secrets redacted)." },
            "status": status_enum(), "error": strings(), "usedBy": strings(), "type": { "type": "string" },
            "serversTransport": { "type": "string", "description": "The servers transport its servers are reached through (absent: the static one)." },
            "serverStatus": { "type": "object", "additionalProperties": { "type": "string", "enum": ["UP", "DOWN"] } },
            "servers": { "type": "array", "items": schema_ref("ServerHealth") },
            "health": { "type": "object", "description": "Passive and active health and retry settings, resolved." },
            "retries": { "type": "integer", "minimum": 0 }, "retriesRefused": { "type": "integer", "minimum": 0 },
            "weighted": { "type": "object", "description": "A weighted service: children (qualified) with weights, optional sticky cookie." },
            "failover": { "type": "object", "description": "A failover service: `service` and `fallback` (qualified)." },
            "mirroring": { "type": "object", "description": "A mirroring service: `service`, `mirrors` with percentages, `maxBodySize`, `mirrorBody`." },
            "balancing": { "type": "object", "description": "How servers or children are chosen: strategy (wrr, p2c, hrw, leasttime, hash) and sticky cookie." },
            "mirrorCopies": { "type": "object", "description": "A mirroring service's copies: sent, withoutBody, dropped, failed." } } },
        "RawService": { "type": "object", "required": ["name", "provider", "status", "usedBy", "serverStatus"], "properties": {
            "name": { "type": "string" }, "provider": { "type": "string" },
            "loadBalancer": { "type": "object", "nullable": true },
            "weighted": { "type": "object" }, "failover": { "type": "object" }, "mirroring": { "type": "object" },
            "status": status_enum(), "error": strings(), "usedBy": strings(), "serversTransport": { "type": "string" },
            "serverStatus": { "type": "object", "additionalProperties": { "type": "string", "enum": ["UP", "DOWN"] } } } },
        "ServersTransport": { "type": "object", "required": ["name", "provider", "transport", "status", "usedBy"], "properties": {
            "name": { "type": "string" }, "provider": { "type": "string" },
            "transport": { "type": "object", "description": "The transport as the provider gave it (inline private keys redacted)." },
            "status": status_enum(), "error": strings(), "usedBy": strings() } },
        "Middleware": { "type": "object", "required": ["name", "provider", "status"], "properties": {
            "name": { "type": "string" }, "provider": { "type": "string" }, "type": { "type": "string" },
            "status": status_enum(), "error": strings(), "usedBy": strings() } },
        "RawData": { "type": "object", "required": ["routers", "services", "middlewares", "generation"], "properties": {
            "routers": { "type": "object", "additionalProperties": schema_ref("Router") },
            "services": { "type": "object", "additionalProperties": schema_ref("RawService") },
            "serversTransports": { "type": "object", "additionalProperties": schema_ref("ServersTransport") },
            "middlewares": { "type": "object" },
            "generation": { "type": "integer", "minimum": 0 } } },
        "ItemReport": { "type": "object", "required": ["kind", "name", "decision", "reasons"], "properties": {
            "kind": { "type": "string" }, "name": { "type": "string" }, "id": { "type": "string" },
            "decision": { "type": "string", "enum": ["routed", "skipped"] }, "reasons": strings(),
            "routers": strings(), "services": strings(), "addresses": strings() } },
        "ProviderStatus": { "type": "object", "required": ["name", "state"], "properties": {
            "name": { "type": "string" }, "state": { "type": "string", "enum": ["pending", "ok", "error"] },
            "lastSync": { "type": "integer", "minimum": 0, "description": "Unix milliseconds." },
            "lastError": { "type": "string" },
            "lastErrorAt": { "type": "integer", "minimum": 0, "description": "Unix milliseconds." },
            "syncs": { "type": "integer", "minimum": 0 }, "errors": { "type": "integer", "minimum": 0 },
            "routers": { "type": "integer", "minimum": 0 }, "services": { "type": "integer", "minimum": 0 },
            "items": { "type": "array", "items": schema_ref("ItemReport") } } },
        "ExplainRouter": { "type": "object", "required": ["name", "priority", "status", "result", "reasons"], "properties": {
            "name": { "type": "string" }, "provider": { "type": "string", "nullable": true }, "rule": { "type": "string", "nullable": true },
            "priority": { "type": "integer" }, "status": status_enum(),
            "result": { "type": "string", "enum": ["matched", "also-matches", "not-matched", "skipped"],
                        "description": "`matched`: the router the request takes; `also-matches`: its rule matches but a router tried earlier won; `skipped`: disabled, on another entrypoint, or without a usable service." },
            "reasons": { "description": "Why it did not match (which matcher failed, on what), or why it was skipped.", "type": "array", "items": { "type": "string" } } } },
        "Explain": { "type": "object", "required": ["request", "matched", "router", "summary", "routers", "middlewares", "service", "nextServer"], "properties": {
            "request": { "type": "object", "required": ["entryPoint", "url", "method", "host", "path", "requestHeaders", "clientIp"], "properties": {
                "entryPoint": { "type": "string" }, "url": { "type": "string" }, "method": { "type": "string" },
                "host": { "type": "string" }, "path": { "type": "string" }, "query": { "type": "string", "nullable": true },
                "requestHeaders": strings(), "clientIp": { "type": "string" } } },
            "matched": { "type": "boolean" },
            "router": { "type": "string", "nullable": true },
            "summary": { "type": "string" },
            "routers": { "type": "array", "items": schema_ref("ExplainRouter"), "description": "Every router, in the order they are tried." },
            "middlewares": { "type": "array", "items": { "type": "string" }, "description": "The middlewares the request passes through, in order (entrypoint defaults first, chains expanded)." },
            "middlewareDecisions": { "type": "array", "items": { "type": "object", "required": ["name", "decision"], "properties": {
                "name": { "type": "string" }, "decision": { "type": "string" } } },
                "description": "What ipAllowList, basicAuth (no secrets) and rateLimit would decide for this request." },
            "service": { "nullable": true, "allOf": [schema_ref("Service")] },
            "nextServer": { "type": "string", "nullable": true, "description": "The server the balancer would pick next (null when none is usable)." },
            "choice": { "type": "object", "description": "Below the router: the child services on the way (`path`: service and why each), the server (`server`) and why (`why`: sticky cookie, hash bucket, rotation)." } } },
    })
}

/// The document; `basic` and `bearer` say which credentials are configured.
pub(super) fn build(basic: bool, bearer: bool) -> Value {
    let mut paths = paths();
    let mut security_schemes = Map::new();
    let mut requirement = Vec::new();
    if basic {
        security_schemes.insert("basicAuth".into(), json!({ "type": "http", "scheme": "basic" }));
        requirement.push(json!({ "basicAuth": [] }));
    }
    if bearer {
        security_schemes.insert("bearerAuth".into(), json!({ "type": "http", "scheme": "bearer" }));
        requirement.push(json!({ "bearerAuth": [] }));
    }
    if !requirement.is_empty() {
        for (path, item) in paths.iter_mut() {
            let public = path == "/ping" || path == "/api/openapi.json" || (path.starts_with("/dashboard") && !basic);
            let Some(op) = item.get_mut("get").and_then(Value::as_object_mut) else {
                continue;
            };
            if public {
                op.insert("security".into(), json!([]));
            } else {
                op.insert("security".into(), Value::Array(requirement.clone()));
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    responses.insert("401".into(), error_response("Credentials are missing or wrong."));
                }
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "drover admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin side of drover, a self-configuring edge proxy. Paths and field names follow Traefik v3's API where Traefik has them; `/api/providers`, `/api/explain` and the per-server health under `servers` are drover's.",
        },
        "tags": [
            { "name": "api" }, { "name": "entrypoints" }, { "name": "http" }, { "name": "tcp" }, { "name": "udp" },
            { "name": "providers" }, { "name": "tls" }, { "name": "explain" }, { "name": "health" }, { "name": "dashboard" },
        ],
        "paths": paths,
        "components": { "schemas": schemas(), "securitySchemes": security_schemes },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_auth_is_described() {
        for (basic, bearer) in [(false, false), (true, true)] {
            let doc = build(basic, bearer);
            let text = doc.to_string();
            let mut rest = text.as_str();
            while let Some(i) = rest.find("#/components/schemas/") {
                rest = &rest[i + 21..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                assert!(doc["components"]["schemas"].get(&name).is_some(), "unresolved schema {name}");
            }
            let overview = &doc["paths"]["/api/overview"]["get"];
            assert_eq!(overview.get("security").is_some(), basic || bearer);
            assert_eq!(overview["responses"].get("401").is_some(), basic || bearer);
            assert_eq!(
                doc["paths"]["/ping"]["get"].get("security").map(|s| s == &json!([])),
                (basic || bearer).then_some(true)
            );
        }
    }
}
