//! `GET /api/events`: server-sent events that tell the dashboard when to refresh.
//!
//! Routing changes arrive as new snapshots and provider statuses change through a watch
//! channel, but health changes (an ejection, a probation, a readmission) are recorded by the
//! data path without notifying anyone, and must not start to: the request path stays free of
//! admin work. So each stream looks every 200 ms at a cheap fingerprint of what the dashboard
//! shows (configuration generation, provider statuses, every server's state and ejection count)
//! and sends an `update` event when it changed, plus one every 5 s so that counters move. An
//! ejection is on screen a fraction of a second after it happens.
//!
//! The event's data is a small JSON object (`generation`, `reason`); the dashboard fetches what
//! it shows from the API. Streams end when drover shuts down.

use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::extract::State as Extract;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::time::{Instant, MissedTickBehavior};

use super::State;

/// How often the fingerprint is taken.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// An update is sent at least this often.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// What the dashboard shows, reduced to three numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    generation: u64,
    providers: u64,
    health: u64,
}

fn fingerprint(state: &State) -> Fingerprint {
    let snapshot = state.shared.snapshot.load();
    let now = Instant::now();
    let mut health = DefaultHasher::new();
    let mut names: Vec<&String> = snapshot.services.keys().collect();
    names.sort();
    for name in names {
        name.hash(&mut health);
        if let Some(service) = snapshot.services.get(name) {
            for server in service.servers.iter() {
                let r = server.health.report(now);
                (server.url.as_ref(), r.state as u8, r.total_ejections, r.active_down).hash(&mut health);
            }
        }
    }
    let mut providers = DefaultHasher::new();
    for p in state.statuses.borrow().iter() {
        (&p.name, p.state as u8, p.syncs, &p.last_error, p.items.len()).hash(&mut providers);
    }
    Fingerprint {
        generation: snapshot.config.generation,
        providers: providers.finish(),
        health: health.finish(),
    }
}

fn event(reason: &str, fp: Fingerprint) -> Event {
    Event::default()
        .event("update")
        .data(serde_json::json!({ "generation": fp.generation, "reason": reason }).to_string())
}

/// The event stream.
pub(super) async fn events(Extract(state): Extract<State>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let first = fingerprint(&state);
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let start = (state, ticks, first, Instant::now(), true);
    let updates = stream::unfold(start, |(state, mut ticks, last, mut sent_at, first_event)| async move {
        if first_event {
            let e = event("hello", last);
            return Some((Ok(e), (state, ticks, last, sent_at, false)));
        }
        let mut shutdown = state.shutdown.clone();
        loop {
            let stopping = async {
                match shutdown.as_mut() {
                    Some(rx) => {
                        let _ = rx.wait_for(|stop| *stop).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping => return None,
            }
            let now = fingerprint(&state);
            let reason = if now.generation != last.generation {
                Some("configuration")
            } else if now.health != last.health {
                Some("health")
            } else if now.providers != last.providers {
                Some("providers")
            } else if sent_at.elapsed() >= REFRESH_EVERY {
                Some("refresh")
            } else {
                None
            };
            if let Some(reason) = reason {
                sent_at = Instant::now();
                return Some((Ok(event(reason, now)), (state, ticks, now, sent_at, false)));
            }
        }
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}
