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
        .route("/api/providers", get(providers))
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
