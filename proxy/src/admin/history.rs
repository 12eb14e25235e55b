//! `GET /api/history`: the dashboard's charts ([`crate::metrics::history`]), and the task that
//! samples them every 3 s on the control thread, off the data path.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State as Extract;
use axum::Json;
use serde_json::Value;
use tokio::sync::watch;

use super::State;
use crate::connection::Shared;
use crate::metrics::history::{History, INTERVAL};

/// The history the admin side shows, shared with its sampler.
pub type Charts = Arc<Mutex<History>>;

/// `GET /api/history`.
pub(super) async fn history(Extract(state): Extract<State>) -> Json<Value> {
    let history = state.history.lock().unwrap_or_else(|p| p.into_inner());
    Json(history.to_json(&state.shared.metrics))
}

/// Samples `shared`'s counters and servers into `history` every [`INTERVAL`] until `shutdown`.
pub(super) async fn sample(shared: Arc<Shared>, history: Charts, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let snapshot = shared.snapshot.load_full();
        history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sample(&shared.metrics, &snapshot, now_ms, tokio::time::Instant::now());
    }
}
