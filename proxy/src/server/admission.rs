//! What an entrypoint lets in: at most `maxConnections` client connections at once, and what
//! its accept loops do when `accept` itself fails.
//!
//! * **A limit that pushes back into the kernel.** A connection over the limit is not accepted
//!   and then closed (a client sees a reset and retries at once, making the load worse); it is
//!   not accepted at all. It waits in the listen backlog, where the kernel holds it without a
//!   descriptor of ours, until a slot frees, and a client that gives up meanwhile costs nothing.
//!   The limit is one semaphore per entrypoint that every worker takes from, since the workers
//!   accept from the same socket. A worker takes a slot *before* it calls `accept`, so an
//!   accepted connection always has one, and the slot lives with the client's socket (an
//!   upgraded connection's tunnel keeps the socket, so it keeps the slot): it is given back when
//!   the socket closes.
//! * **Running out is loud once, not hundreds of times a second.** When `accept` fails for want
//!   of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), the connection stays
//!   queued and the next `accept` fails the same way until something closes: retrying at once
//!   spins, and logging each failure writes hundreds of lines a second that say one thing. The
//!   loop backs off [`BACKOFF`] instead, and an entrypoint's failures (all its workers') are
//!   reported at most once per [`REPORT_EVERY`], with how many there were since the last line.
//!   What is still untold when `accept` works again is told by the first successful `accept`
//!   that is at least [`REPORT_EVERY`] after the last line (a shortage that comes and goes with
//!   every closed connection must not turn each success into a line of its own).
//! * Errors that concern one queued connection only (ECONNABORTED: the client gave up while
//!   queued; EPERM: a firewall refused it) are counted the same way, but the loop goes straight
//!   on: the next connection may well be fine.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long an accept loop waits after a failure that the next `accept` would repeat.
pub const BACKOFF: Duration = Duration::from_millis(10);

/// At most one line about failing accepts per entrypoint per this long.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// One entrypoint's admission: its connection slots and its accept-failure report, shared by
/// every worker.
#[derive(Debug)]
pub struct Admission {
    entry_point: Arc<str>,
    slots: Option<Arc<Semaphore>>,
    failures: FailureReport,
}

impl Admission {
    /// Admission for `entry_point`, with at most `max_connections` open connections (0: no
    /// limit).
    pub fn new(entry_point: Arc<str>, max_connections: usize) -> Self {
        Self {
            entry_point,
            slots: (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)))),
            failures: FailureReport::new(REPORT_EVERY),
        }
    }

    /// Waits for a free connection slot; `None` when the entrypoint has no limit. Dropping the
    /// slot gives it back.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        // Invariant: the semaphore is never closed, so acquiring only waits.
        Some(slots.clone().acquire_owned().await.expect("connection slots are never closed"))
    }

    /// An `accept` worked: tells the failures not told yet, when one is due.
    pub fn accepted(&self) {
        if let Some(failures) = self.failures.recovered(Instant::now()) {
            tracing::warn!(
                entrypoint = %self.entry_point,
                failures,
                "accepting connections works again after {failures} more failures"
            );
        }
    }

    /// An `accept` failed with `error`: reports it when a line is due, and says how long the
    /// loop should wait before the next `accept`.
    pub fn accept_failed(&self, error: &io::Error) -> Duration {
        if let Some(failures) = self.failures.failed(Instant::now()) {
            let hint = match error.raw_os_error() {
                Some(errno::EMFILE) | Some(errno::ENFILE) => {
                    "; out of file descriptors: raise the limit (ulimit -n, LimitNOFILE) or set maxConnections"
                }
                _ => "",
            };
            tracing::warn!(
                entrypoint = %self.entry_point,
                failures,
                "accepting connections failed: {error}{hint} (at most one line per {REPORT_EVERY:?}; connections wait in the backlog)"
            );
        }
        if concerns_one_connection(error) {
            Duration::ZERO
        } else {
            BACKOFF
        }
    }
}

/// The errno values this module tells apart (Linux), without a libc dependency for four numbers.
mod errno {
    pub const EPERM: i32 = 1;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const EPROTO: i32 = 71;
    pub const ECONNABORTED: i32 = 103;
}

/// Whether `error` concerns one queued connection only, so that the next `accept` may work.
fn concerns_one_connection(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(errno::ECONNABORTED) | Some(errno::EPROTO) | Some(errno::EPERM)
    )
}

/// Counts failures and says when a line about them is due: at the first one, then at most once
/// per interval, each line with the failures since the previous one. Lock-free, as every worker
/// of the entrypoint reports into it; a successful `accept` pays one relaxed load.
#[derive(Debug)]
struct FailureReport {
    epoch: Instant,
    interval_ms: u64,
    /// Failures not in a line yet.
    untold: AtomicU64,
    /// When the last line was due, in milliseconds from `epoch` plus one; 0: never.
    last_line: AtomicU64,
}

impl FailureReport {
    fn new(interval: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            interval_ms: interval.as_millis().max(1) as u64,
            untold: AtomicU64::new(0),
            last_line: AtomicU64::new(0),
        }
    }

    /// A failure at `now`: `Some(count)` when a line is due, `count` including this one.
    fn failed(&self, now: Instant) -> Option<u64> {
        self.untold.fetch_add(1, Ordering::Relaxed);
        self.due(now)
    }

    /// An `accept` worked at `now`: `Some(count)` when failures are untold and a line is due.
    fn recovered(&self, now: Instant) -> Option<u64> {
        if self.untold.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.due(now)
    }

    /// Claims the line if one is due (one claimant wins among workers racing here) and takes
    /// the untold count with it.
    fn due(&self, now: Instant) -> Option<u64> {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        let last = self.last_line.load(Ordering::Relaxed);
        if last != 0 && now_ms < last + self.interval_ms {
            return None;
        }
        self.last_line
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.untold.swap(0, Ordering::Relaxed)).filter(|n| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor shortage as an accept loop meets it: a failure every 10 ms for 3 s, with a
    /// successful accept now and then (a connection closed somewhere freed one descriptor).
    #[tokio::test(start_paused = true)]
    async fn a_shortage_makes_one_line_per_interval_counting_every_failure() {
        let report = FailureReport::new(Duration::from_secs(1));
        let mut lines = Vec::new();
        let started = Instant::now();
        for i in 0..300u32 {
            if let Some(n) = report.failed(Instant::now()) {
                lines.push((Instant::now() - started, n));
            }
            if i % 50 == 49 {
                if let Some(n) = report.recovered(Instant::now()) {
                    lines.push((Instant::now() - started, n));
                }
            }
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(lines.first(), Some(&(Duration::ZERO, 1)), "the first failure is told at once");
        assert!(lines.len() <= 4, "one line per second of shortage at most: {lines:?}");
        for pair in lines.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= Duration::from_secs(1), "{lines:?}");
        }
        // The shortage ends: the next accept after the interval tells what is left.
        tokio::time::advance(Duration::from_secs(1)).await;
        if let Some(n) = report.recovered(Instant::now()) {
            lines.push((Instant::now() - started, n));
        }
        assert_eq!(
            lines.iter().map(|(_, n)| n).sum::<u64>(),
            300,
            "every failure is counted: {lines:?}"
        );
        assert_eq!(report.recovered(Instant::now()), None, "nothing is left to tell");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_within_the_interval_does_not_make_a_line() {
        let report = FailureReport::new(Duration::from_secs(1));
        assert_eq!(report.failed(Instant::now()), Some(1));
        assert_eq!(report.failed(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(report.recovered(Instant::now()), None, "too soon after the last line");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(report.recovered(Instant::now()), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_holds_a_slot_per_connection_across_workers() {
        let admission = Arc::new(Admission::new("web".into(), 2));
        let a = admission.slot().await;
        let b = admission.slot().await;
        assert!(a.is_some() && b.is_some());
        let third = tokio::spawn({
            let admission = admission.clone();
            async move { admission.slot().await.is_some() }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!third.is_finished(), "a third connection waits while two are open");
        drop(a);
        assert!(third.await.expect("the waiting task"), "a freed slot goes to the waiting accept");
        assert!(Admission::new("web".into(), 0).slot().await.is_none(), "0 is no limit");
    }

    #[test]
    fn only_errors_about_one_connection_skip_the_back_off() {
        let admission = Admission::new("web".into(), 0);
        assert_eq!(admission.accept_failed(&io::Error::from_raw_os_error(errno::EMFILE)), BACKOFF);
        assert_eq!(admission.accept_failed(&io::Error::from_raw_os_error(105)), BACKOFF, "ENOBUFS");
        assert_eq!(
            admission.accept_failed(&io::Error::from_raw_os_error(errno::ECONNABORTED)),
            Duration::ZERO
        );
    }
}
