//! Handing the memory of a burst back to the system.
//!
//! A burst of requests (10,000 clients each sending a GET, then staying idle) makes ~20 KiB of
//! short-lived state per request on its worker's thread: hyper's buffers, the request's future,
//! the upstream exchange. All of it is freed a moment later, idle connections then costing a
//! table entry in the parking lot (`server::parking`), but the allocator keeps the freed pages
//! for reuse: mimalloc gives a page back only after a delay, and only when that thread calls it
//! again, which an idle worker does not. The process then holds the burst's memory until the
//! next burst.
//!
//! So a worker that accepted or parked connections and then, for a whole [`QUIET`] tick, did
//! neither, asks the allocator once to hand back what its thread holds free ([`trim`]). Under
//! steady traffic connections keep coming and parking and nothing is trimmed; a worker trims
//! once per burst, after its connections parked or left.
//!
//! The allocator is the binary's choice: it registers its trim with [`set_trim`] (this crate has
//! no `unsafe` code, and a build with the system allocator registers none).

use std::sync::OnceLock;
use std::time::Duration;

/// How long a worker must have accepted and parked no connection, after some, before it trims.
/// A lull mistaken for the end of a burst costs little: the trim after 10,000 connections made
/// ~110 `madvise` calls, 3 ms of system time as strace timed them (strace slows each call).
pub const QUIET: Duration = Duration::from_millis(500);

static TRIM: OnceLock<fn()> = OnceLock::new();

/// Registers what hands the calling thread's free memory back to the system (once per process;
/// later calls are ignored).
pub fn set_trim(trim: fn()) {
    let _ = TRIM.set(trim);
}

/// Whether a trim was registered.
pub fn can_trim() -> bool {
    TRIM.get().is_some()
}

/// Hands the calling thread's free memory back to the system, when a trim was registered.
pub fn trim() {
    if let Some(trim) = TRIM.get() {
        trim();
    }
}

/// Decides when a worker trims: told the count of connections it accepted and parked so far at
/// each [`QUIET`] tick, it says to trim at the first tick that saw no change, after ticks that did.
#[derive(Debug, Default)]
pub struct Quiet {
    seen: u64,
    busy: bool,
}

impl Quiet {
    /// True when the worker should trim now.
    pub fn tick(&mut self, so_far: u64) -> bool {
        if so_far != self.seen {
            self.seen = so_far;
            self.busy = true;
            return false;
        }
        std::mem::take(&mut self.busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_trims_once_after_parking_stops() {
        let mut quiet = Quiet::default();
        assert!(!quiet.tick(0), "nothing parked yet: nothing to trim");
        assert!(!quiet.tick(10), "still parking");
        assert!(!quiet.tick(500), "still parking");
        assert!(quiet.tick(500), "quiet after parking: trim");
        assert!(!quiet.tick(500), "once per burst");
        assert!(!quiet.tick(500));
        assert!(!quiet.tick(501), "parking again");
        assert!(quiet.tick(501));
    }
}
