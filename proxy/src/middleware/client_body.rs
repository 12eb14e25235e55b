//! The client's request body as the steps see it: left alone, unless a step must read it
//! (`forwardAuth` with `forwardBody`), which reads it once, bounded, into a [`Spool`] that the
//! forwarding code then sends on instead of the client's stream.
//!
//! Why a slot handed to the steps rather than a [`super::BodyPlan`] item: the plan is read by
//! the forwarding code after every step has passed the request, but the authentication server
//! must see the body before its step can decide. Reading it at that step, and not before the
//! chain, keeps a request that an earlier step refuses (an IP list, a rate limit) from paying for
//! its upload.

use std::sync::Arc;

use hyper::body::Incoming;
use tokio::time::Instant;

use super::spool::{Spool, SpoolError};
use crate::upstream::{BodyProgress, RequestBody};

/// Bytes of a body read by a step kept in memory; the rest goes to a temporary file.
const MEMORY: u64 = 1024 * 1024;

/// Where the client's body is.
#[derive(Debug)]
pub enum ClientBody {
    /// Not read: the forwarding code streams it on (or reads it whole for `buffering` and
    /// `retry`).
    Unread(Incoming),
    /// Read whole by a step.
    Read(Spool),
    /// Gone: reading it failed, and the request was answered.
    Gone,
}

/// The client's body, and what reading it needs.
#[derive(Debug)]
pub struct BodySlot {
    /// The body.
    pub body: ClientBody,
    /// When the request began (the body's progress is timed from it).
    started: Instant,
    /// When the upload must be in (the entrypoint's `readTimeout`).
    deadline: Option<Instant>,
    /// Bytes read from the client, once a step read it.
    progress: Option<Arc<BodyProgress>>,
}

/// Why a step could not read the body.
#[derive(Debug)]
pub enum ReadFailure {
    /// It is longer than the step accepts.
    TooLarge,
    /// The client broke it off.
    Broken,
    /// It was not all in before the entrypoint's `readTimeout`.
    Stalled,
    /// The temporary file failed.
    File(std::io::Error),
}

impl BodySlot {
    /// The slot of a body the client is still sending; `deadline` is the entrypoint's
    /// `readTimeout` counted from `started`.
    pub fn new(body: Incoming, started: Instant, deadline: Option<Instant>) -> Self {
        Self {
            body: ClientBody::Unread(body),
            started,
            deadline,
            progress: None,
        }
    }

    /// A body already read whole (the steps after a `retry`, once per attempt).
    pub fn read_already(spool: Option<Spool>, started: Instant) -> Self {
        Self {
            body: spool.map_or(ClientBody::Gone, ClientBody::Read),
            started,
            deadline: None,
            progress: None,
        }
    }

    /// The bytes read from the client, if a step read them (counted once, whatever sends them
    /// on).
    pub fn take_progress(&mut self) -> Option<Arc<BodyProgress>> {
        self.progress.take()
    }

    /// Reads the body whole if it is not yet, refusing one longer than `max` bytes; `None` when
    /// the request has no body.
    pub async fn read(&mut self, max: Option<u64>) -> Result<Option<&Spool>, ReadFailure> {
        let unread = matches!(&self.body, ClientBody::Unread(b) if !http_body::Body::is_end_stream(b));
        let taken = if unread {
            std::mem::replace(&mut self.body, ClientBody::Gone)
        } else {
            ClientBody::Gone
        };
        if let ClientBody::Unread(incoming) = taken {
            let progress = Arc::new(BodyProgress::new(self.started));
            self.progress = Some(progress.clone());
            let read = Spool::read(RequestBody::Counted(incoming, progress), max, Some(MEMORY));
            let read = match self.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, read).await.map_err(|_| ReadFailure::Stalled)?,
                None => read.await,
            };
            self.body = ClientBody::Read(read.map_err(|e| match e {
                SpoolError::TooLarge => ReadFailure::TooLarge,
                SpoolError::Body(e) => {
                    tracing::debug!("reading a request body for a middleware failed: {e}");
                    ReadFailure::Broken
                }
                SpoolError::File(e) => ReadFailure::File(e),
            })?);
        }
        match &self.body {
            ClientBody::Read(spool) if max.is_some_and(|max| spool.len() > max) => Err(ReadFailure::TooLarge),
            ClientBody::Read(spool) => Ok(Some(spool)),
            ClientBody::Unread(_) | ClientBody::Gone => Ok(None),
        }
    }
}
