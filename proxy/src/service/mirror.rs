//! `mirroring` services: requests go to the main service; a share of them is copied to each
//! mirror, whose answers are read and thrown away.
//!
//! Nothing of a mirror reaches the client: copies are sent from tasks of their own after the
//! main request has its body on the way, so a mirror that hangs, refuses connections or answers
//! 500 changes neither the client's answer nor its latency. The main request's body is never held
//! back: it streams to the main service as it arrives, and a copy of it is kept beside it
//! ([`RequestBody::Tapped`]) up to `maxBodySize` (drover's default 64 KiB, where Traefik buffers
//! without limit). The copies leave when the body has ended; a body that outgrows the limit is
//! mirrored without it (and counted in [`MirrorStats::without_body`]), one that breaks off is not
//! mirrored at all.
//!
//! Which requests are copied is decided by a counter per mirror, not by chance: at 50 % exactly
//! every second request goes to the mirror. At most [`MAX_IN_FLIGHT`] copies are under way at
//! once across drover; beyond that copies are dropped and counted, so a hanging mirror cannot pile
//! up tasks and connections without bound. A copy takes a slot of its server's `maxConnsPerHost`
//! only if one is free at once: it never queues, and is dropped (counted as failed) otherwise.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{Avoid, Resolution};
use crate::balance::Affinity;
use crate::forward::body::UpstreamBody;
use crate::health::Outcome;
use crate::snapshot::{Picked, Service, Tried};
use crate::upstream::{BodyTap, RequestBody};

/// Copies under way at once, across drover; more are dropped.
pub const MAX_IN_FLIGHT: usize = 1024;

/// How long a copy may take, answer included, before it is abandoned.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(30);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts of one mirroring service's copies.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Copies sent.
    pub sent: AtomicU64,
    /// Copies sent without their body because it was larger than `maxBodySize` (or `mirrorBody`
    /// is false).
    pub without_body: AtomicU64,
    /// Copies dropped: too many under way, or the client's body broke off.
    pub dropped: AtomicU64,
    /// Copies that failed (no server, connection refused, timed out, 5xx).
    pub failed: AtomicU64,
}

/// One mirror of a mirroring service.
#[derive(Debug)]
pub struct Target {
    /// The mirror service.
    pub service: Arc<Service>,
    /// Its share of requests, percent.
    pub percent: u32,
    count: AtomicU64,
}

/// A compiled `mirroring` service.
#[derive(Debug)]
pub struct Mirroring {
    /// The main service, which answers.
    pub service: Arc<Service>,
    /// The mirrors.
    pub mirrors: Box<[Target]>,
    /// Largest body copied.
    pub max_body: u64,
    /// Copy bodies at all.
    pub mirror_body: bool,
    /// Its counts (kept across reloads by the compiler).
    pub stats: Arc<MirrorStats>,
}

impl MirrorStats {
    /// The counts as JSON (admin API).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent.load(Ordering::Relaxed),
            "withoutBody": self.without_body.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

impl Service {
    /// A mirroring service's copy counts as JSON; `None` for other services.
    pub fn mirror_stats(&self) -> Option<serde_json::Value> {
        match self.composite.as_deref() {
            Some(super::Composite::Mirroring(m)) => Some(m.stats.to_json()),
            _ => None,
        }
    }
}

/// One copy to make for one request.
#[derive(Debug)]
pub struct Copy {
    service: Arc<Service>,
    max_body: u64,
    mirror_body: bool,
    stats: Arc<MirrorStats>,
}

impl Mirroring {
    /// A mirroring service sending to `service` and copying to `mirrors` (service, percent).
    pub fn new(
        service: Arc<Service>,
        mirrors: Vec<(Arc<Service>, u32)>,
        max_body: u64,
        mirror_body: bool,
        stats: Arc<MirrorStats>,
    ) -> Self {
        Self {
            service,
            mirrors: mirrors
                .into_iter()
                .map(|(service, percent)| Target {
                    service,
                    percent: percent.min(100),
                    count: AtomicU64::new(0),
                })
                .collect(),
            max_body,
            mirror_body,
            stats,
        }
    }

    /// Adds the mirrors whose turn this request is to `out`.
    pub fn choose_mirrors(&self, out: &mut Resolution) {
        for target in self.mirrors.iter() {
            let n = target.count.fetch_add(1, Ordering::Relaxed);
            let p = u64::from(target.percent);
            if (n + 1) * p / 100 > n * p / 100 {
                if out.explain {
                    out.path.push((
                        target.service.name.clone(),
                        format!("mirror ({} %): this request is copied", target.percent),
                    ));
                }
                out.mirrors.push(Copy {
                    service: target.service.clone(),
                    max_body: self.max_body,
                    mirror_body: self.mirror_body,
                    stats: self.stats.clone(),
                });
            }
        }
    }
}

/// What every copy of one request shares: its head as forwarded.
#[derive(Debug)]
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

/// Starts the `copies` of the request whose head is `parts` and whose body is `body`: at once
/// when there is no body to copy, else when the body has streamed by. Returns the body to send
/// to the main service.
pub fn dispatch(parts: &http::request::Parts, body: RequestBody, copies: impl IntoIterator<Item = Copy>) -> RequestBody {
    let head = Arc::new(Head {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
    });
    let declared = body.size_hint().exact();
    let mut later = Vec::new();
    for copy in copies {
        if body.is_end_stream() {
            send(copy, head.clone(), None);
        } else if !copy.mirror_body || declared.is_some_and(|n| n > copy.max_body) {
            copy.stats.without_body.fetch_add(1, Ordering::Relaxed);
            send(copy, head.clone(), None);
        } else {
            later.push(copy);
        }
    }
    if later.is_empty() {
        return body;
    }
    let limit = later.iter().map(|c| c.max_body).min().unwrap_or(0);
    RequestBody::Tapped(
        Box::new(body),
        Box::new(Tap {
            head,
            copies: later,
            buffer: BytesMut::new(),
            limit,
            overflow: false,
        }),
    )
}

/// Keeps a copy of a streaming body for the mirrors, up to `limit`.
#[derive(Debug)]
struct Tap {
    head: Arc<Head>,
    copies: Vec<Copy>,
    buffer: BytesMut,
    limit: u64,
    overflow: bool,
}

impl BodyTap for Tap {
    fn data(&mut self, data: &Bytes) {
        if self.overflow {
            return;
        }
        if (self.buffer.len() + data.len()) as u64 > self.limit {
            self.overflow = true;
            self.buffer = BytesMut::new();
        } else {
            self.buffer.extend_from_slice(data);
        }
    }

    fn end(&mut self) {
        let body = (!self.overflow).then(|| std::mem::take(&mut self.buffer).freeze());
        for copy in self.copies.drain(..) {
            if body.is_none() {
                copy.stats.without_body.fetch_add(1, Ordering::Relaxed);
            }
            send(copy, self.head.clone(), body.clone());
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // The body never ended (the client broke off, or the main request failed before it
        // was read): what was seen is not the request, so nothing is mirrored.
        for copy in self.copies.drain(..) {
            copy.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends one copy from a task of its own.
fn send(copy: Copy, head: Arc<Head>, body: Option<Bytes>) {
    if IN_FLIGHT.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        copy.stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    copy.stats.sent.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let stats = copy.stats.clone();
        let ok = matches!(tokio::time::timeout(COPY_TIMEOUT, send_now(&copy, &head, body)).await, Ok(true));
        if !ok {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Sends one copy and reads its answer to the end; true when it was answered without a 5xx.
async fn send_now(copy: &Copy, head: &Head, body: Option<Bytes>) -> bool {
    let now = Instant::now();
    let client_ip = head.headers.get("x-real-ip").map_or(&b""[..], |v| v.as_bytes());
    let affinity = Affinity {
        headers: &head.headers,
        path: head.uri.path(),
        client_ip,
    };
    let mut nested = Resolution::default();
    let Some(leaf) = copy.service.resolve(&affinity, now, &Avoid::default(), true, &mut nested) else {
        return false;
    };
    let Picked::Server { index, server, probe } = leaf.choose(Tried::default(), now, &affinity) else {
        return false;
    };
    // A probation request abandoned (timed out) must give its slot back.
    let mut guard = ProbeRelease(probe.then_some(&server.health));
    let mut request = Request::new(match &body {
        Some(b) => RequestBody::Full(Some(b.clone())),
        None => RequestBody::Empty,
    });
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    headers.clone_from(&head.headers);
    headers.remove(TRANSFER_ENCODING);
    match &body {
        Some(b) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
    if !leaf.pass_host_header || !headers.contains_key(HOST) {
        headers.insert(HOST, server.upstream.host_header().clone());
    }
    // Copies are for watching, not load: one never waits for a full server.
    let Some(slot) = server.upstream.limiter().try_acquire() else {
        return false;
    };
    let sent = server.upstream.send(request, now).await;
    guard.0 = None;
    match sent {
        Ok((response, mut pooled)) => {
            pooled.hold(slot);
            let status = response.status();
            leaf.record(
                index,
                if status.is_server_error() {
                    Outcome::ServerError
                } else {
                    Outcome::Success
                },
                probe,
                Instant::now(),
            );
            let mut body = UpstreamBody::new(response.into_body(), pooled, None, None);
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return false;
                }
            }
            !status.is_server_error()
        }
        Err(_) => {
            leaf.record(index, Outcome::LocalFailure, probe, Instant::now());
            false
        }
    }
}

struct ProbeRelease<'a>(Option<&'a Arc<crate::health::ServerHealth>>);

impl Drop for ProbeRelease<'_> {
    fn drop(&mut self) {
        if let Some(health) = self.0 {
            health.release_probe();
        }
    }
}
