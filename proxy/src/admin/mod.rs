//! The admin side: `/ping`, `/metrics`, the JSON API, the explain endpoint, the OpenAPI document
//! and the dashboard. It has its own listener (127.0.0.1:8081 by default) and is never served on
//! a traffic entrypoint.
//!
//! Paths and field names follow Traefik v3's API (`/api/overview`, `/api/http/routers`, `status`,
//! `error[]`, `usedBy`, `serverStatus`, `X-Next-Page`…) so its users find their way; drover's
//! additions (`/api/providers`, `/api/explain`, per-server health under `servers`) sit beside
//! them without changing Traefik's shapes.
//!
//! Everything here reads the same immutable snapshot the data path reads, plus the health
//! registry and the provider statuses; nothing on the admin side can change routing.
//!
//! Rooms: [`auth`] decides who may ask, [`params`] reads query strings exactly as the OpenAPI
//! document promises, [`api`] answers the Traefik-shaped list and detail endpoints,
//! [`explain`] answers "why did this request go there", [`events`] pushes changes to the
//! dashboard, [`history`] samples the charts' last 15 minutes, [`openapi`] describes all of it,
//! [`redact`] keeps secrets out of every answer, and [`dashboard`] holds the embedded page.

mod api;
pub mod auth;
mod dashboard;
mod events;
mod explain;
mod history;
mod l4;
mod openapi;
mod params;
mod redact;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State as Extract};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use drover_providers::ProviderStatus;
use tokio::sync::watch;

use crate::config::StaticConfig;
use crate::connection::Shared;

/// What the admin handlers read.
#[derive(Clone)]
pub struct State {
    /// The data path's shared state (the snapshot, health, metrics).
    pub shared: Arc<Shared>,
    /// Every provider's status.
    pub statuses: watch::Receiver<Vec<ProviderStatus>>,
    /// What does not change while drover runs: entrypoints, credentials, start time.
    pub info: Arc<Info>,
    /// The charts' last 15 minutes, sampled while [`serve`] runs.
    history: history::Charts,
    /// Turns true when drover shuts down (ends event streams); set by [`serve`].
    shutdown: Option<watch::Receiver<bool>>,
}

/// The static facts the admin side reports and enforces.
#[derive(Debug)]
pub struct Info {
    /// Entrypoints in the order of the snapshot's route tables.
    pub entry_points: Vec<EntryPointInfo>,
    /// Who may use the admin side.
    pub auth: auth::Auth,
    /// Whether the access log is on (`/api/overview` features).
    pub access_log: bool,
    /// When drover started.
    pub started: SystemTime,
}

/// One entrypoint as `/api/entrypoints` shows it.
#[derive(Clone, Debug)]
pub struct EntryPointInfo {
    /// Its name.
    pub name: String,
    /// The address as configured (`:8080`).
    pub address: String,
    /// The address it is bound to.
    pub bound: SocketAddr,
    /// `transport.respondingTimeouts.headerReadTimeout`.
    pub header_read_timeout: std::time::Duration,
    /// `transport.respondingTimeouts.idleTimeout`.
    pub idle_timeout: std::time::Duration,
    /// `transport.lifeCycle.graceTimeOut`.
    pub grace_time_out: std::time::Duration,
    /// `observability`: what its routers record by default.
    pub observe: crate::snapshot::Observe,
}

impl Info {
    /// The facts of a drover started from `config`, whose entrypoints are bound to `bound`
    /// (name and address, in route-table order).
    pub fn new(config: &StaticConfig, bound: &[(String, SocketAddr)]) -> Arc<Self> {
        let entry_points = bound
            .iter()
            .map(|(name, addr)| {
                let ep = config.entry_points.get(name);
                let transport = ep.map(|e| e.transport.clone()).unwrap_or_default();
                EntryPointInfo {
                    name: name.clone(),
                    address: ep.map_or_else(|| addr.to_string(), |e| e.address.get_ref().clone()),
                    bound: *addr,
                    header_read_timeout: transport.responding_timeouts.header_read_timeout.0,
                    idle_timeout: transport.responding_timeouts.idle_timeout.0,
                    grace_time_out: transport.life_cycle.grace_time_out.0,
                    observe: ep.map_or(crate::snapshot::Observe::ALL, |e| e.observability.observe()),
                }
            })
            .collect();
        Arc::new(Self {
            entry_points,
            auth: auth::Auth::from_config(&config.api),
            access_log: config.access_log.is_some(),
            started: SystemTime::now(),
        })
    }
}

impl State {
    /// The admin state over the data path's `shared` state and the providers' `statuses`.
    pub fn new(shared: Arc<Shared>, statuses: watch::Receiver<Vec<ProviderStatus>>, info: Arc<Info>) -> Self {
        Self {
            shared,
            statuses,
            info,
            history: Arc::default(),
            shutdown: None,
        }
    }
}

/// Serves the admin side on `listener` until `shutdown` turns true.
pub async fn serve(listener: std::net::TcpListener, mut state: State, mut shutdown: watch::Receiver<bool>) {
    state.shutdown = Some(shutdown.clone());
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("the admin side cannot use its socket: {e}");
            return;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        if !addr.ip().is_loopback() && !state.info.auth.is_enabled() {
            tracing::warn!(
                "the admin side listens on {addr} without authentication: keep it on 127.0.0.1 (or publish it on the \
                 host's loopback only), or set [api] basicAuth or bearerToken"
            );
        }
    }
    tokio::spawn(history::sample(state.shared.clone(), state.history.clone(), shutdown.clone()));
    let app = router(state, shutdown.clone());
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!("the admin side stopped: {e}");
    }
}

/// Every route of the admin side, behind the authentication layer.
fn router(state: State, terminating: watch::Receiver<bool>) -> Router {
    Router::new()
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
        .route("/metrics", get(metrics))
        .route("/api/overview", get(api::overview))
        .route("/api/version", get(api::version))
        .route("/api/rawdata", get(api::rawdata))
        .route("/api/entrypoints", get(api::entry_points))
        .route("/api/entrypoints/{name}", get(api::entry_point))
        .route("/api/http/routers", get(api::http_routers))
        .route("/api/http/routers/{name}", get(api::http_router))
        .route("/api/http/services", get(api::http_services))
        .route("/api/http/services/{name}", get(api::http_service))
        .route("/api/http/serversTransports", get(api::http_servers_transports))
        .route("/api/http/serversTransports/{name}", get(api::http_servers_transport))
        .route("/api/http/middlewares", get(api::http_middlewares))
        .route("/api/http/middlewares/{name}", get(api::http_middleware))
        .route("/api/tcp/routers", get(l4::tcp_routers))
        .route("/api/tcp/routers/{name}", get(l4::tcp_router))
        .route("/api/tcp/services", get(l4::tcp_services))
        .route("/api/tcp/services/{name}", get(l4::tcp_service))
        .route("/api/tcp/middlewares", get(api::empty_list))
        .route("/api/tcp/middlewares/{name}", get(api::no_such_object))
        .route("/api/udp/routers", get(l4::udp_routers))
        .route("/api/udp/routers/{name}", get(l4::udp_router))
        .route("/api/udp/services", get(l4::udp_services))
        .route("/api/udp/services/{name}", get(l4::udp_service))
        .route("/api/tls/certificates", get(tls::certificates))
        .route("/api/tls/options", get(tls::options))
        .route("/api/providers", get(api::providers))
        .route("/api/providers/{name}", get(api::provider))
        .route("/api/explain", get(explain::explain))
        .route("/api/events", get(events::events))
        .route("/api/history", get(history::history))
        .route("/api/openapi.json", get(openapi::document))
        .route("/", get(dashboard::to_dashboard))
        .route("/dashboard", get(dashboard::to_dashboard))
        .route("/dashboard/", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/charts.js", get(dashboard::charts))
        .route("/dashboard/style.css", get(dashboard::style))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Authentication, plus the headers every admin answer carries.
async fn guard(Extract(state): Extract<State>, req: Request, next: Next) -> Response {
    let auth = &state.info.auth;
    if auth.required_for(req.uri().path()) && !auth.allows(req.headers()).await {
        return auth.refusal();
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn metrics(Extract(state): Extract<State>) -> Response {
    let snapshot = state.shared.snapshot.load();
    let statuses = state.statuses.borrow().clone();
    let body = crate::metrics::encode(&state.shared.metrics, &snapshot, &statuses);
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such path on the admin side (see /api/openapi.json)")
}

/// A JSON error answer: `{"message": …}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "message": message.into() }))).into_response()
}
