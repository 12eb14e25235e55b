//! `inFlightReq`: at most `amount` requests in flight per source; the next gets 429.
//! <https://doc.traefik.io/traefik/middlewares/http/inflightreq/>
//!
//! A request holds its slot until its response body has ended (or the client went away), not
//! just until the response head: a slow download is still in flight. Counts live outside the
//! snapshot, by middleware, so a reload neither resets nor leaks them; a source whose count
//! returns to zero is forgotten, so memory follows the requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use drover_providers::model::middleware as model;
use http::{Response, StatusCode};

use super::source::{Key, Source};
use super::{answer, BuildError, Req};

/// Requests in flight per source, for one middleware.
#[derive(Debug, Default)]
pub struct Counts(Mutex<HashMap<Key, u64>>);

/// One request's slot; released when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Counts>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A compiled `inFlightReq`.
#[derive(Debug)]
pub struct InFlightReq {
    amount: u64,
    source: Source,
    counts: Arc<Counts>,
}

impl InFlightReq {
    /// Compiles the model, counting in `counts` (kept across reloads).
    pub fn build(m: &model::InFlightReq, counts: Arc<Counts>) -> Result<Self, BuildError> {
        Ok(Self {
            amount: m.amount,
            source: Source::build(m.source_criterion.as_ref())?,
            counts,
        })
    }

    /// Takes a slot, or answers 429.
    pub fn request(&self, req: &mut Req<'_>) -> Result<Slot, Box<Response<bytes::Bytes>>> {
        let Some(key) = self.source.key(req) else {
            return Err(Box::new(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: no source for inFlightReq\n",
            )));
        };
        let mut counts = self.counts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= self.amount {
            return Err(Box::new(answer(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")));
        }
        *n += 1;
        drop(counts);
        Ok(Slot {
            counts: self.counts.clone(),
            key,
        })
    }
}
