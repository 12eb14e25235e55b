//! What is recorded when a response ends: metrics and an access-log line, each unless the
//! router's (or its entrypoint's) `observability` turns it off.
//!
//! A [`Completion`] rides on the response body and records when the body is dropped — after its
//! last byte was handed to the client, or when the client went away — so durations and sizes
//! cover the whole response, not just its head.

use std::sync::Arc;
use std::time::Instant;

use crate::access_log::Entry;
use crate::connection::InFlight;
use crate::metrics::RequestKey;
use crate::upstream::BodyProgress;

/// One request's pending record.
pub struct Completion {
    /// The request's connection, busy until this is dropped.
    pub(super) request: InFlight,
    pub(super) key: RequestKey,
    pub(super) start: Instant,
    /// Request body bytes, counted as they are forwarded (absent for body-less requests).
    pub(super) bytes_in: Option<Arc<BodyProgress>>,
    pub(super) bytes_out: u64,
    /// Record the request in the metrics (its router's and entrypoint's `observability`).
    pub(super) metrics: bool,
    pub(super) access: Option<Box<Entry>>,
    /// What the router's middlewares hold until the response ends (in-flight slots).
    pub(super) held: Option<crate::middleware::Held>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        // In-flight slots are free from the moment the response is over.
        drop(self.held.take());
        let now = Instant::now();
        let duration = now.saturating_duration_since(self.start);
        self.request.ends_at(now);
        let bytes_in = self.bytes_in.as_ref().map_or(0, |b| b.bytes());
        let shared = &self.request.shared;
        if self.metrics {
            shared.metrics.record(self.key, duration, bytes_in, self.bytes_out);
        }
        if let (Some(mut entry), Some(log)) = (self.access.take(), shared.access_log.as_ref()) {
            entry.size = self.bytes_out;
            entry.request_size = bytes_in;
            entry.duration = duration;
            entry.status = self.key.code;
            if !log.send(entry) {
                shared.metrics.access_log_dropped();
            }
        }
    }
}
