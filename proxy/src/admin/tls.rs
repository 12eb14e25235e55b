//! `/api/tls/certificates` and `/api/tls/options`: what TLS serves, from the snapshot in force.
//!
//! Certificates show their subject, SANs, issuer, expiry, source file, the routers whose hosts
//! they serve, and what is wrong with their files (a broken replacement is listed with its
//! error while the last good version keeps serving). Options show their status, errors
//! (unknown names) and warnings (names drover ignores), and the routers using them.

use axum::extract::State as Extract;
use axum::response::Response;
use serde_json::{json, Value};

use super::api::json;
use super::State;

/// `GET /api/tls/certificates`.
pub(super) async fn certificates(Extract(state): Extract<State>) -> Response {
    let snapshot = state.shared.snapshot.load();
    json(serde_json::to_value(&snapshot.tls.certificates).unwrap_or(Value::Array(Vec::new())))
}

/// `GET /api/tls/options`.
pub(super) async fn options(Extract(state): Extract<State>) -> Response {
    let snapshot = state.shared.snapshot.load();
    let options: Vec<Value> = snapshot
        .config
        .tls
        .options
        .values()
        .map(|o| serde_json::to_value(o).unwrap_or_default())
        .collect();
    json(json!({ "options": options, "error": snapshot.config.tls.errors }))
}
