//! The admin side: `/ping` and the JSON API. It has its own listener (127.0.0.1:8081 by default)
//! and is never served on a traffic entrypoint.

use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use drover_providers::ProviderStatus;
use tokio::sync::watch;

use crate::forward::Shared;

/// What the admin handlers read.
#[derive(Clone)]
pub struct State {
    /// The data path's shared state (the snapshot).
    pub shared: Arc<Shared>,
    /// Every provider's status.
    pub statuses: watch::Receiver<Vec<ProviderStatus>>,
}

/// Serves the admin side on `listener` until `shutdown` turns true.
pub async fn serve(listener: std::net::TcpListener, state: State, mut shutdown: watch::Receiver<bool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("the admin side cannot use its socket: {e}");
            return;
        }
    };
    let terminating = shutdown.clone();
    let app = Router::new()
        .route(
            "/ping",
            get(move || {
                let terminating = *terminating.borrow();
                async move {
                    if terminating {
                        (StatusCode::SERVICE_UNAVAILABLE, "terminating")
                    } else {
                        (StatusCode::OK, "OK")
                    }
                }
            }),
        )
        .route("/api/rawdata", get(rawdata))
        .route("/api/http/services/{name}", get(http_service))
        .route("/api/providers", get(providers))
        .route("/api/providers/{name}", get(provider))
        .with_state(state);
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!("the admin side stopped: {e}");
    }
}

async fn rawdata(Extract(state): Extract<State>) -> impl IntoResponse {
    let snapshot = state.shared.snapshot.load();
    Json(snapshot.config.clone())
}

async fn providers(Extract(state): Extract<State>) -> impl IntoResponse {
    let statuses = state.statuses.borrow().clone();
    Json(statuses)
}

/// One provider's status, with every item it saw and the decision taken (404 if unknown).
async fn provider(Extract(state): Extract<State>, axum::extract::Path(name): axum::extract::Path<String>) -> axum::response::Response {
    let found = state.statuses.borrow().iter().find(|s| s.name == name).cloned();
    match found {
        Some(status) => Json(status).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no provider named `{name}`")).into_response(),
    }
}

/// `GET /api/http/services/{name}`: the service as configured, Traefik's `serverStatus`
/// (`url → UP | DOWN`), and drover's per-server health.
async fn http_service(Extract(state): Extract<State>, axum::extract::Path(name): axum::extract::Path<String>) -> axum::response::Response {
    let snapshot = state.shared.snapshot.load();
    let Some(info) = snapshot.config.services.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "message": format!("service `{name}` does not exist") })),
        )
            .into_response();
    };
    let now = tokio::time::Instant::now();
    let mut server_status = serde_json::Map::new();
    let mut servers = Vec::new();
    if let Some(service) = snapshot.services.get(&name) {
        for server in service.servers.iter() {
            let report = server.health.report(now);
            let up = !server.health.is_out() && server.weight > 0;
            server_status.insert(server.url.to_string(), serde_json::Value::from(if up { "UP" } else { "DOWN" }));
            let mut entry = serde_json::to_value(&report).unwrap_or_default();
            if let Some(map) = entry.as_object_mut() {
                map.insert("url".into(), server.url.as_ref().into());
                map.insert("weight".into(), server.weight.into());
                map.insert("tier".into(), server.tier.into());
                map.insert("connectionFailures".into(), server.health.local_failures_total().into());
            }
            servers.push(entry);
        }
    }
    let mut body = serde_json::to_value(info).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("type".into(), "loadbalancer".into());
        map.insert("serverStatus".into(), server_status.into());
        map.insert("servers".into(), servers.into());
        if let Some(service) = snapshot.services.get(&name) {
            map.insert("health".into(), serde_json::to_value(&service.health).unwrap_or_default());
            map.insert("retries".into(), service.budget.retries().into());
            map.insert("retriesRefused".into(), service.budget.refused().into());
        }
    }
    Json(body).into_response()
}
