//! A side request to a service of the snapshot (the `errors` middleware's pages): one server
//! chosen by the service's own balancer, its outcome recorded like any other request's, its
//! body streamed to the client like any other response's, and its server's `maxConnsPerHost`
//! (and queue) applied like any other request's.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, Version};
use tokio::time::Instant;

use super::body::{ProxyBody, UpstreamBody};
use super::deadline::wait_for_head;
use super::headers;
use crate::balance::Affinity;
use crate::connection::Connection;
use crate::health::Outcome;
use crate::service::{Avoid, Resolution};
use crate::snapshot::{Picked, Service, Tried};
use crate::upstream::RequestBody;

/// Sends the body-less `request` to `service` and returns its response, or `None` when no
/// server of it answered.
pub async fn fetch(conn: &Connection, service: &Arc<Service>, mut request: Request<()>) -> Option<Response<ProxyBody>> {
    let now = Instant::now();
    let client_ip = conn.forwarded.client_ip.as_bytes();
    let mut leaf = service.clone();
    if service.composite.is_some() {
        let affinity = Affinity {
            headers: request.headers(),
            path: request.uri().path(),
            client_ip,
        };
        leaf = service.resolve(&affinity, now, &Avoid::default(), true, &mut Resolution::default())?;
    }
    let affinity = Affinity {
        headers: request.headers(),
        path: request.uri().path(),
        client_ip,
    };
    let Picked::Server { index, server, probe } = leaf.choose(Tried::default(), now, &affinity) else {
        return None;
    };
    if !leaf.pass_host_header || !request.headers().contains_key(header::HOST) {
        request.headers_mut().insert(header::HOST, server.upstream.host_header().clone());
    }
    *request.version_mut() = Version::HTTP_11;
    let (parts, ()) = request.into_parts();
    let limiter = server.upstream.limiter();
    let (slot, now) = match limiter.try_acquire() {
        Some(slot) => (slot, now),
        None => match Box::pin(limiter.acquire()).await {
            Ok(slot) => (slot, Instant::now()),
            Err(refused) => {
                // Never sent: nothing against the server.
                if probe {
                    server.health.release_probe();
                }
                tracing::debug!(service = %leaf.name, server = %server.url, "error page not fetched: {refused:?}");
                return None;
            }
        },
    };
    let sent = std::pin::pin!(server.upstream.send(Request::from_parts(parts, RequestBody::Empty), now));
    let head = server.upstream.transport().response_header_timeout;
    match wait_for_head(sent, head, conn, None, now, now).await {
        Ok((response, mut pooled)) => {
            pooled.hold(slot);
            let outcome = if response.status().is_server_error() {
                Outcome::ServerError
            } else {
                Outcome::Success
            };
            leaf.record(index, outcome, probe, Instant::now());
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, false);
            parts.version = Version::HTTP_11;
            let body = UpstreamBody::new(body, pooled, conn.shared.body_idle_timeout, None);
            Some(Response::from_parts(parts, ProxyBody::upstream(body)))
        }
        Err(failed) => {
            if failed.error.is_client_gone() || failed.error.is_client_idle() {
                if probe {
                    server.health.release_probe();
                }
            } else {
                leaf.record(index, Outcome::LocalFailure, probe, Instant::now());
            }
            tracing::debug!(service = %leaf.name, server = %server.url, "error page request failed: {}", failed.error);
            None
        }
    }
}

/// A local answer with a body, for callers outside this module.
pub fn text(status: http::StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
