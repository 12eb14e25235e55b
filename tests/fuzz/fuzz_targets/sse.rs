//! The Marathon event stream: bytes of `text/event-stream` → events → the apps each event says
//! to re-read.
//!
//! The body is decoded twice, in one read and one byte per read, and both must give the same
//! events: Marathon's events reach drover split at whatever points TCP chose.
#![no_main]

use std::io;
use std::time::Duration;

use bytes::Bytes;
use drover_providers::marathon::api::{self, Affected};
use drover_providers::marathon::sse::{ByteStream, Event, EventStream};
use libfuzzer_sys::fuzz_target;

/// The events read before the stream ended, and whether it ended in an error.
fn decode(chunks: Vec<Bytes>) -> (Vec<Event>, bool) {
    let body: ByteStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok::<_, io::Error>)));
    drover_fuzz::block_on(async {
        let mut stream = EventStream::new(body, Duration::from_secs(30));
        let mut events = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return (events, false),
                Err(_) => return (events, true),
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(vec![Bytes::copy_from_slice(data)]);
    let split = decode(data.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect());
    assert_eq!(whole, split, "the events depend on where the reads split the stream");
    for event in &whole.0 {
        if let Affected::Apps(apps) = api::affected(&event.event_type, &event.data) {
            assert!(!apps.is_empty() && apps.iter().all(|id| api::is_valid_app_id(id)), "{apps:?}");
        }
    }
});
