//! Reading Marathon's event stream: SSE decoding, the idle-read timeout, a size cap.
//!
//! Decoding is the `sse-stream` crate's (CRLF, LF and CR line ends, events split across reads,
//! several events in one read). Two things it cannot know are added here:
//!
//! * **Liveness is measured in bytes, not events.** Marathon (Jetty) writes a bare CRLF about
//!   every 10 s. To a decoder that is an empty line that dispatches nothing, so a timeout on
//!   *events* would kill a healthy stream during any quiet minute. The byte stream is wrapped so
//!   every chunk read, heartbeat or not, refreshes the deadline; only a connection that delivers
//!   nothing at all for the idle timeout (a half-open TCP connection, a proxy that stopped
//!   forwarding) is declared dead.
//! * **Memory is bounded.** A peer that never ends an event (no blank line) would make any SSE
//!   decoder buffer without end; the stream fails once more than [`MAX_EVENT_BYTES`] arrive
//!   without completing an event.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sse_stream::SseByteStream;
use tokio::time::Instant;

/// Most bytes accepted between two complete events (an `api_post_event` carries a whole app
/// definition, so this is generous).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// A boxed stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// One event as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The SSE `event:` name (Marathon's `eventType`).
    pub event_type: String,
    /// The `data:` payload (single-line JSON).
    pub data: String,
}

/// Why the stream stopped.
#[derive(Debug)]
pub enum StreamError {
    /// Nothing, not even a heartbeat, arrived for the idle timeout.
    Idle(Duration),
    /// Reading or decoding failed (connection reset, bad UTF-8, size cap).
    Read(String),
}

impl From<StreamError> for crate::error::ProviderError {
    fn from(e: StreamError) -> Self {
        crate::error::ProviderError::unreachable(e)
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Idle(d) => write!(f, "the event stream was silent for {d:?} (no event, no heartbeat); reconnecting"),
            StreamError::Read(e) => write!(f, "reading the event stream failed: {e}"),
        }
    }
}

/// What the reading side and the byte-counting wrapper share.
#[derive(Debug)]
struct Activity {
    last_read: Instant,
    bytes_since_event: usize,
}

/// Counts bytes and records when the last chunk arrived.
struct Watched {
    inner: ByteStream,
    activity: Arc<Mutex<Activity>>,
}

impl Stream for Watched {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            let mut activity = self.activity.lock().unwrap_or_else(PoisonError::into_inner);
            activity.last_read = Instant::now();
            activity.bytes_since_event = activity.bytes_since_event.saturating_add(chunk.len());
            if activity.bytes_since_event > MAX_EVENT_BYTES {
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {MAX_EVENT_BYTES} bytes without a complete event"),
                ))));
            }
        }
        item
    }
}

/// Decoded events from a Marathon event stream, with an idle-read timeout.
pub struct EventStream {
    events: SseByteStream<Watched>,
    activity: Arc<Mutex<Activity>>,
    idle: Duration,
}

impl EventStream {
    /// Decodes `body`; fails when nothing arrives for `idle`.
    pub fn new(body: ByteStream, idle: Duration) -> Self {
        let activity = Arc::new(Mutex::new(Activity {
            last_read: Instant::now(),
            bytes_since_event: 0,
        }));
        let watched = Watched {
            inner: body,
            activity: activity.clone(),
        };
        Self {
            events: SseByteStream::new(watched),
            activity,
            idle,
        }
    }

    /// The next event; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, StreamError> {
        loop {
            let deadline = self.activity.lock().unwrap_or_else(PoisonError::into_inner).last_read + self.idle;
            // Biased: bytes already buffered (a burst read after a long list) count before the
            // deadline is looked at.
            let item = tokio::select! {
                biased;
                item = self.events.next() => item,
                _ = tokio::time::sleep_until(deadline) => {
                    let last = self.activity.lock().unwrap_or_else(PoisonError::into_inner).last_read;
                    if last + self.idle <= Instant::now() {
                        return Err(StreamError::Idle(self.idle));
                    }
                    continue;
                }
            };
            return match item {
                None => Ok(None),
                Some(Err(e)) => Err(StreamError::Read(e.to_string())),
                Some(Ok(sse)) => {
                    self.activity.lock().unwrap_or_else(PoisonError::into_inner).bytes_since_event = 0;
                    let data = sse.data.unwrap_or_default();
                    let event_type = match sse.event {
                        Some(name) if !name.is_empty() => name,
                        // A nameless event: Marathon's payload says what it is.
                        _ => serde_json::from_str::<serde_json::Value>(&data)
                            .ok()
                            .and_then(|v| v.get("eventType").and_then(|t| t.as_str()).map(str::to_string))
                            .unwrap_or_else(|| "message".to_string()),
                    };
                    Ok(Some(Event { event_type, data }))
                }
            };
        }
    }

    /// Takes the next event only if it is already buffered or readable without waiting, so a
    /// burst of events can be handled with one round of re-reads.
    pub fn try_next(&mut self) -> Option<Result<Option<Event>, StreamError>> {
        futures_util::FutureExt::now_or_never(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn channel_stream() -> (mpsc::UnboundedSender<Result<Bytes, io::Error>>, ByteStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        (tx, Box::pin(stream))
    }

    #[tokio::test]
    async fn crlf_framing_split_reads_and_heartbeats() {
        let (tx, body) = channel_stream();
        let mut events = EventStream::new(body, Duration::from_secs(30));
        let wire =
            "event: event_stream_attached\r\ndata: {\"remoteAddress\":\"10.0.0.9\",\"eventType\":\"event_stream_attached\"}\r\n\r\n\r\n\
                    event: status_update_event\r\ndata: {\"appId\":\"/shop/api\",\"taskStatus\":\"TASK_RUNNING\"}\r\n\r\n\
                    \r\n\r\ndata: {\"eventType\":\"app_terminated_event\",\"appId\":\"/x\"}\n\n";
        // Byte by byte: every line end and every event boundary falls between two reads.
        for b in wire.bytes() {
            tx.send(Ok(Bytes::copy_from_slice(&[b]))).unwrap();
        }
        drop(tx);
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first.event_type, "event_stream_attached");
        assert!(first.data.contains("10.0.0.9"));
        let second = events.next().await.unwrap().unwrap();
        assert_eq!(second.event_type, "status_update_event");
        assert_eq!(second.data, "{\"appId\":\"/shop/api\",\"taskStatus\":\"TASK_RUNNING\"}");
        let third = events.next().await.unwrap().unwrap();
        assert_eq!(third.event_type, "app_terminated_event", "named from the payload");
        assert!(events.next().await.unwrap().is_none(), "EOF ends the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_a_quiet_stream_alive_and_silence_kills_it() {
        let (tx, body) = channel_stream();
        let mut events = EventStream::new(body, Duration::from_secs(30));
        let feeder = tokio::spawn(async move {
            // Ten heartbeats 10 s apart (100 s with no event), then one event, then silence.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                tx.send(Ok(Bytes::from_static(b"\r\n"))).unwrap();
            }
            tx.send(Ok(Bytes::from_static(b"event: e\r\ndata: {}\r\n\r\n"))).unwrap();
            // Keep the sender (a connection that stays open but says nothing).
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let start = Instant::now();
        let event = events.next().await.unwrap().unwrap();
        assert_eq!(event.event_type, "e");
        assert_eq!(start.elapsed(), Duration::from_secs(100));
        let silent_from = Instant::now();
        match events.next().await {
            Err(StreamError::Idle(d)) => assert_eq!(d, Duration::from_secs(30)),
            other => panic!("expected the idle timeout, got {other:?}"),
        }
        assert_eq!(
            silent_from.elapsed(),
            Duration::from_secs(30),
            "declared dead exactly at the idle timeout"
        );
        feeder.abort();
    }

    #[tokio::test]
    async fn an_endless_event_is_cut_off_and_read_errors_surface() {
        let (tx, body) = channel_stream();
        let mut events = EventStream::new(body, Duration::from_secs(30));
        tx.send(Ok(Bytes::from_static(b"data: "))).unwrap();
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        for _ in 0..=(MAX_EVENT_BYTES / chunk.len()) {
            tx.send(Ok(chunk.clone())).unwrap();
        }
        match events.next().await {
            Err(StreamError::Read(e)) => assert!(e.contains("without a complete event"), "{e}"),
            other => panic!("expected the size cap, got {other:?}"),
        }
        let (tx, body) = channel_stream();
        let mut events = EventStream::new(body, Duration::from_secs(30));
        tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer")))
            .unwrap();
        assert!(matches!(events.next().await, Err(StreamError::Read(e)) if e.contains("reset by peer")));
    }

    #[tokio::test]
    async fn try_next_takes_only_what_is_ready() {
        let (tx, body) = channel_stream();
        let mut events = EventStream::new(body, Duration::from_secs(30));
        tx.send(Ok(Bytes::from_static(b"event: a\r\ndata: {}\r\n\r\nevent: b\r\ndata: {}\r\n\r\n")))
            .unwrap();
        assert_eq!(events.next().await.unwrap().unwrap().event_type, "a");
        assert_eq!(events.try_next().unwrap().unwrap().unwrap().event_type, "b");
        assert!(events.try_next().is_none());
    }
}
