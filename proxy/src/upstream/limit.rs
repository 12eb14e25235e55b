//! Per-server request limits (`maxConnsPerHost`) and the queue in front of them: HAProxy's
//! `maxconn` idea, so that a burst larger than a server accepts waits in drover instead of
//! failing at the server.
//!
//! **What is counted.** A [`Limiter`] counts the requests in flight to one server, from the moment
//! one is admitted until its response has been read to the end (or cut, or its connection lost).
//! Over HTTP/1.1 that is the number of connections in use, since a connection carries one request
//! at a time; over HTTP/2 (`h2`, `h2c`) it is the number of concurrent streams on the server's
//! connections. Idle pooled connections hold no slot (HAProxy counts the same way): a server sees
//! at most `maxConnsPerHost` busy connections, and the pool closes an idle one of another worker
//! before opening one past the limit (see `Upstream::make_room`). A WebSocket or other upgrade holds a
//! slot until the server's `101`, not for the tunnel's life: long-lived tunnels would otherwise
//! starve a server's ordinary traffic. Active health checks use connections of their own and are
//! neither counted nor queued.
//!
//! **One counter for all workers.** The count is one atomic per server, shared by every worker,
//! so the limit holds for the whole process. Under the limit (and with no limit) a request pays
//! one atomic increment when admitted and one decrement when done, plus a load of the waiter
//! count each time: no lock, no allocation.
//!
//! **The queue.** A request over the limit waits for a slot in a FIFO queue: a freed slot goes
//! to the oldest waiter, never to a newcomer while someone waits. The wait is bounded by
//! `queueTimeout` and the queue's length by `maxQueued`; past either the request is refused
//! ([`Refused`], a 503 naming the server and the limit). A queued request was never sent, so a
//! full server is not a failing one: nothing counts against its passive health or retry budget.
//!
//! Why not tokio's `Semaphore`: it is fair and cancel-safe, but every release takes its waiters'
//! lock, which would put a lock on every request; it also cannot say how many wait, and its
//! permits cannot shrink when a reload lowers the limit. Here the lock is taken only while
//! someone waits.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

/// A server's limit and its queue's bounds, as a servers transport sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// `maxConnsPerHost`: requests in flight to one server; 0 for no limit.
    pub max_conns: usize,
    /// `queueTimeout`: how long a request over the limit waits for a slot.
    pub queue_timeout: Duration,
    /// `maxQueued`: requests that may wait for one server at once.
    pub max_queued: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_conns: 1024,
            queue_timeout: Duration::from_secs(30),
            max_queued: 10_000,
        }
    }
}

/// Why a request over the limit was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `maxQueued` requests were waiting already.
    QueueFull {
        /// The limit in force.
        max_conns: usize,
        /// The queue's bound in force.
        max_queued: usize,
    },
    /// No slot freed within `queueTimeout`.
    TimedOut {
        /// The limit in force.
        max_conns: usize,
        /// The wait in force.
        queue_timeout: Duration,
    },
}

impl Refused {
    /// Says why `server` (`host:port`) refused, for a 503's body.
    pub fn explain(&self, server: &str) -> String {
        match *self {
            Refused::QueueFull { max_conns, max_queued } => format!(
                "503 Service Unavailable: server {server} is at its maxConnsPerHost ({max_conns}) and its queue is full (maxQueued {max_queued})\n"
            ),
            Refused::TimedOut { max_conns, queue_timeout } => format!(
                "503 Service Unavailable: server {server} is at its maxConnsPerHost ({max_conns}) and no slot freed within its queueTimeout ({})\n",
                humantime::format_duration(queue_timeout)
            ),
        }
    }
}

/// One server's count of requests in flight, its limit, and the requests waiting for a slot.
#[derive(Debug)]
pub struct Limiter {
    /// Slots held: requests admitted and not yet done. Counted with or without a limit.
    in_flight: AtomicUsize,
    /// Requests waiting (queued and not yet granted nor gone).
    waiting: AtomicUsize,
    /// `maxConnsPerHost`; 0 for none.
    max_conns: AtomicUsize,
    /// `maxQueued`.
    max_queued: AtomicUsize,
    /// `queueTimeout`, in nanoseconds.
    queue_timeout: AtomicU64,
    /// Requests refused so far (queue full or timed out).
    refused: AtomicU64,
    /// The waiters, oldest first. Granting a slot sends on a waiter's channel; a waiter that
    /// gave up leaves a closed channel behind, skipped (or swept) later.
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
}

/// A slot held: dropping it frees it (and hands it to the oldest waiter, if any).
#[derive(Debug)]
#[must_use = "dropping a slot frees it at once"]
pub struct Slot<'a> {
    limiter: &'a Limiter,
}

impl Slot<'_> {
    /// Keeps the slot held past this guard: whoever calls this frees it later with
    /// [`Limiter::release`] (the pooled connection that carries the request does).
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// The limiter the slot belongs to.
    pub fn limiter(&self) -> &Limiter {
        self.limiter
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

impl Limiter {
    /// No request in flight, `limits` in force.
    pub fn new(limits: Limits) -> Self {
        let limiter = Self {
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_conns: AtomicUsize::new(0),
            max_queued: AtomicUsize::new(0),
            queue_timeout: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
        };
        limiter.configure(limits);
        limiter
    }

    /// Puts `limits` in force (a reload): slots already held stay held; waiters are admitted at
    /// once if the new limit leaves room.
    pub fn configure(&self, limits: Limits) {
        self.max_conns.store(limits.max_conns, SeqCst);
        self.max_queued.store(limits.max_queued, SeqCst);
        let nanos = u64::try_from(limits.queue_timeout.as_nanos()).unwrap_or(u64::MAX);
        self.queue_timeout.store(nanos, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.grant(&mut self.lock());
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        Limits {
            max_conns: self.max_conns.load(SeqCst),
            queue_timeout: Duration::from_nanos(self.queue_timeout.load(SeqCst)),
            max_queued: self.max_queued.load(SeqCst),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.load(SeqCst)
    }

    /// Requests refused so far because the queue was full or the wait too long.
    pub fn refused(&self) -> u64 {
        self.refused.load(SeqCst)
    }

    /// A slot at once if one is free and nobody waits for one: the fast path, an atomic
    /// increment (and a load) with no lock.
    #[inline]
    pub fn try_acquire(&self) -> Option<Slot<'_>> {
        if self.waiting.load(SeqCst) != 0 {
            return None;
        }
        let before = self.in_flight.fetch_add(1, SeqCst);
        let max = self.max_conns.load(SeqCst);
        if max == 0 || before < max {
            return Some(Slot { limiter: self });
        }
        // Over the limit: give the increment back (which hands it on if someone queued since).
        self.release();
        None
    }

    /// A slot, waiting in the queue for one if the server is at its limit; refused when the
    /// queue is full or the wait reaches `queueTimeout`. Call [`Self::try_acquire`] first: this
    /// is the slow path (a lock and an allocation).
    pub async fn acquire(&self) -> Result<Slot<'_>, Refused> {
        let limits = self.limits();
        let mut ticket = {
            let mut queue = self.lock();
            let (grant, granted) = oneshot::channel();
            self.waiting.fetch_add(1, SeqCst);
            self.sweep(&mut queue);
            queue.push_back(grant);
            // A slot may have freed since the fast path looked: the oldest waiters get it,
            // maybe this one.
            self.grant(&mut queue);
            Ticket {
                limiter: self,
                granted: Some(granted),
            }
        };
        if ticket.try_take() {
            return Ok(Slot { limiter: self });
        }
        if self.waiting.load(SeqCst) > limits.max_queued {
            // Dropping the ticket leaves the queue (or frees the slot granted meanwhile).
            self.refused.fetch_add(1, SeqCst);
            return Err(Refused::QueueFull {
                max_conns: limits.max_conns,
                max_queued: limits.max_queued,
            });
        }
        match tokio::time::timeout(limits.queue_timeout, &mut ticket).await {
            Ok(()) => Ok(Slot { limiter: self }),
            // Granted just as the wait ran out: the slot is taken rather than wasted.
            Err(_) if ticket.try_take() => Ok(Slot { limiter: self }),
            Err(_) => {
                self.refused.fetch_add(1, SeqCst);
                Err(Refused::TimedOut {
                    max_conns: limits.max_conns,
                    queue_timeout: limits.queue_timeout,
                })
            }
        }
    }

    /// Frees a slot: the oldest waiter gets it, if any waits.
    #[inline]
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, SeqCst);
        // SeqCst on both sides: either this load sees a waiter that queued meanwhile, or that
        // waiter (which counts itself before it looks) sees the slot free and takes it.
        if self.waiting.load(SeqCst) != 0 {
            self.grant(&mut self.lock());
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<oneshot::Sender<()>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot if one is free (never past the limit).
    fn take_free(&self) -> bool {
        let max = self.max_conns.load(SeqCst);
        let mut current = self.in_flight.load(SeqCst);
        loop {
            if max != 0 && current >= max {
                return false;
            }
            match self.in_flight.compare_exchange_weak(current, current + 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Hands free slots to the oldest waiters still there, while there are both.
    fn grant(&self, queue: &mut VecDeque<oneshot::Sender<()>>) {
        while self.waiting.load(SeqCst) != 0 && self.take_free() {
            loop {
                let Some(waiter) = queue.pop_front() else {
                    // Nobody left (they gave up and are still counting themselves out).
                    self.in_flight.fetch_sub(1, SeqCst);
                    return;
                };
                if waiter.send(()).is_ok() {
                    self.waiting.fetch_sub(1, SeqCst);
                    break;
                }
            }
        }
    }

    /// Drops the channels of waiters that gave up once they outnumber the live ones, so a
    /// queue that is never granted (a stuck server) does not grow with every timeout.
    fn sweep(&self, queue: &mut VecDeque<oneshot::Sender<()>>) {
        if queue.len() > 2 * self.waiting.load(SeqCst) + 64 {
            queue.retain(|waiter| !waiter.is_closed());
        }
    }
}

/// A place in the queue: resolves when a slot is granted. Dropped before that, it leaves the
/// queue, and frees the slot if one was granted in the meantime.
struct Ticket<'a> {
    limiter: &'a Limiter,
    /// `None` once the granted slot was taken.
    granted: Option<oneshot::Receiver<()>>,
}

impl Ticket<'_> {
    /// True if a slot was granted already (it is then the caller's).
    fn try_take(&mut self) -> bool {
        let taken = self.granted.as_mut().is_some_and(|granted| granted.try_recv().is_ok());
        if taken {
            self.granted = None;
        }
        taken
    }
}

impl Future for Ticket<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(granted) = self.granted.as_mut() else {
            return Poll::Ready(());
        };
        match Pin::new(granted).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.granted = None;
                Poll::Ready(())
            }
            // Invariant: the sender lives in the queue until it sends, and the queue lives as
            // long as the limiter this ticket borrows; a sweep drops only closed senders.
            Poll::Ready(Err(_)) => unreachable!("a queued waiter's channel is never dropped unsent"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let Some(mut granted) = self.granted.take() else { return };
        // After `close` no slot can be granted to this ticket any more; one granted before it
        // is still there to read, and is freed.
        granted.close();
        match granted.try_recv() {
            Ok(()) => self.limiter.release(),
            Err(_) => {
                self.limiter.waiting.fetch_sub(1, SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limiter(max_conns: usize, queue_timeout: Duration, max_queued: usize) -> Arc<Limiter> {
        Arc::new(Limiter::new(Limits {
            max_conns,
            queue_timeout,
            max_queued,
        }))
    }

    /// Takes a slot (fast path, else the queue) for the task `name`, reports it on `admitted`,
    /// and holds it until `hold` says so.
    fn waiter(
        limiter: &Arc<Limiter>,
        name: usize,
        admitted: tokio::sync::mpsc::UnboundedSender<(usize, Result<(), Refused>)>,
    ) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
        let limiter = limiter.clone();
        let (hold, held) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let slot = match limiter.try_acquire() {
                Some(slot) => Ok(slot),
                None => limiter.acquire().await,
            };
            let _ = admitted.send((name, slot.as_ref().map(|_| ()).map_err(|r| *r)));
            if let Ok(slot) = slot {
                let _ = held.await;
                drop(slot);
            }
        });
        (task, hold)
    }

    /// Lets every ready task run (time is paused: nothing else moves).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_to_waiters_in_arrival_order() {
        let limiter = limiter(2, Duration::from_secs(30), 100);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut holds = Vec::new();
        for name in 0..6 {
            holds.push(waiter(&limiter, name, tx.clone()));
            settle().await;
        }
        let admitted: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(n, r)| {
                assert_eq!(r, Ok(()));
                n
            })
            .collect();
        assert_eq!(admitted, [0, 1], "two slots, the first two arrivals");
        assert_eq!((limiter.in_flight(), limiter.queued()), (2, 4));

        // A newcomer does not overtake the queue even when it arrives as a slot frees.
        let (_, hold0) = holds.remove(0);
        hold0.send(()).unwrap();
        holds.push(waiter(&limiter, 6, tx.clone()));
        settle().await;
        let next: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok()).map(|(n, _)| n).collect();
        assert_eq!(next, [2], "the oldest waiter got the freed slot");

        for (_, hold) in holds.drain(..) {
            let _ = hold.send(());
            settle().await;
        }
        let rest: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok()).map(|(n, _)| n).collect();
        assert_eq!(rest, [3, 4, 5, 6], "then in arrival order");
        settle().await;
        assert_eq!((limiter.in_flight(), limiter.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_queue_timeout_is_refused_and_leaves_no_trace() {
        let limiter = limiter(1, Duration::from_secs(30), 100);
        let held = limiter.try_acquire().expect("a free slot");
        let waited = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await.map(|_| ()) }
        });
        settle().await;
        assert_eq!(limiter.queued(), 1);
        tokio::time::advance(Duration::from_secs(29)).await;
        settle().await;
        assert!(!waited.is_finished(), "still waiting within queueTimeout");
        tokio::time::advance(Duration::from_secs(1)).await;
        let refused = waited.await.unwrap();
        assert_eq!(
            refused,
            Err(Refused::TimedOut {
                max_conns: 1,
                queue_timeout: Duration::from_secs(30)
            })
        );
        assert_eq!((limiter.in_flight(), limiter.queued()), (1, 0));
        drop(held);
        assert_eq!(limiter.in_flight(), 0, "the freed slot went to nobody");
        assert!(limiter.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn past_max_queued_a_request_is_refused_at_once() {
        let limiter = limiter(1, Duration::from_secs(30), 2);
        let _held = limiter.try_acquire().expect("a free slot");
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await.is_ok() })
            })
            .collect();
        settle().await;
        assert_eq!(limiter.queued(), 2);
        let refused = limiter.acquire().await.map(|_| ());
        assert_eq!(
            refused,
            Err(Refused::QueueFull {
                max_conns: 1,
                max_queued: 2
            }),
            "refused without waiting (time is paused and did not move)"
        );
        assert_eq!(limiter.queued(), 2, "the refused request left the queue");
        assert!(queued.iter().all(|t| !t.is_finished()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_goes_away_frees_its_place_and_any_slot_granted_to_it() {
        let limiter = limiter(1, Duration::from_secs(30), 100);
        let held = limiter.try_acquire().expect("a free slot");
        let gone = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await.map(|_| ()) }
        });
        settle().await;
        gone.abort();
        settle().await;
        assert_eq!(limiter.queued(), 0, "the client went away: its place is gone");
        drop(held);
        assert_eq!(limiter.in_flight(), 0);

        // Granted but dropped before it ran: the slot comes back.
        let held = limiter.try_acquire().expect("a free slot");
        let mut ticket = Box::pin(limiter.acquire());
        assert!(futures_poll(&mut ticket).is_none(), "queued");
        drop(held);
        assert_eq!(limiter.in_flight(), 1, "granted to the queued request");
        drop(ticket);
        assert_eq!((limiter.in_flight(), limiter.queued()), (0, 0), "freed by the ticket's drop");
    }

    #[tokio::test(start_paused = true)]
    async fn raising_the_limit_on_a_reload_admits_waiters_and_no_limit_still_counts() {
        let limiter = limiter(1, Duration::from_secs(30), 100);
        let held = limiter.try_acquire().expect("a free slot");
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await.map(Slot::keep) }
        });
        settle().await;
        limiter.configure(Limits {
            max_conns: 0,
            ..Limits::default()
        });
        assert_eq!(waiting.await.unwrap(), Ok(()), "admitted once the limit is lifted");
        let many: Vec<_> = (0..5).map(|_| limiter.try_acquire().expect("no limit")).collect();
        assert_eq!(limiter.in_flight(), 7, "counted with no limit too, for the metrics");
        drop((many, held));
        limiter.release();
        assert_eq!(limiter.in_flight(), 0);
    }

    /// Polls `future` once; `Some` if it finished.
    fn futures_poll<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        match Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }

    /// Two threads taking and freeing slots as fast as they can never hold more than the limit
    /// together, and leave the count at zero.
    #[test]
    fn the_count_holds_across_threads() {
        let limiter = limiter(3, Duration::from_secs(30), 10_000);
        // Holders counted apart from the limiter, whose own count briefly includes a fast-path
        // increment that is given back.
        let (holders, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (limiter, holders, peak) = (limiter.clone(), holders.clone(), peak.clone());
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        for _ in 0..2_000 {
                            let slot = match limiter.try_acquire() {
                                Some(slot) => slot,
                                None => limiter.acquire().await.expect("admitted within 30 s"),
                            };
                            peak.fetch_max(holders.fetch_add(1, SeqCst) + 1, SeqCst);
                            tokio::task::yield_now().await;
                            holders.fetch_sub(1, SeqCst);
                            drop(slot);
                        }
                    });
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!((limiter.in_flight(), limiter.queued()), (0, 0));
        assert!(peak.load(SeqCst) <= 3, "never more than the limit at once: {peak:?}");
    }
}
