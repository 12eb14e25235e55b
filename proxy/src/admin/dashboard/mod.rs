//! The dashboard: one page, one script, one style sheet, embedded in the binary (no CDN, no
//! build step, no network access beyond the admin API it is served from).
//!
//! The page reads the same JSON API anyone can read and follows `/api/events` for live updates,
//! falling back to polling every 1.5 s when the stream is down. It builds its DOM with
//! `textContent` only (no HTML from data), and its Content-Security-Policy allows nothing but
//! its own script, style and API.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const CHARTS: &str = include_str!("charts.js");
const STYLE: &str = include_str!("style.css");

/// What the page may load: itself, its script and style, the API; nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /` and `GET /dashboard`.
pub(super) async fn to_dashboard() -> Redirect {
    Redirect::to("/dashboard/")
}

/// `GET /dashboard/`.
pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard/app.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /dashboard/style.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// `GET /dashboard/charts.js`: the traffic charts and server timelines.
pub(super) async fn charts() -> Response {
    asset(CHARTS, "text/javascript; charset=utf-8")
}
