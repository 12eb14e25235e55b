//! The parking lot: where a worker keeps its idle HTTP/1 connections, as bare sockets in a table.
//!
//! Until its client speaks again, an idle keep-alive connection needs its socket, its client's
//! address, its place under `maxConnections` and its idle deadline: nothing else. A task per
//! idle connection, waiting on its socket, costs several hundred bytes more (the task with its
//! future, the connection's context, the runtime's registration of the socket), which is most
//! of what an idle connection cost drover where nginx and HAProxy keep about one kilobyte. So
//! once the watchdog parks a connection (see `server::timeouts`), its task hands the socket to
//! its entrypoint's lot in this worker and ends.
//!
//! A lot keeps the sockets in a table and watches them with an epoll set of its own, one-shot
//! and level-triggered (bytes that arrived before a socket was added are reported at once). One
//! task per lot waits for that set to be readable, for the earliest idle deadline, or for the
//! worker's shutdown ([`CloseParked`]). A socket that becomes readable (bytes, or its client
//! closing) leaves the lot and is served by a new connection task; one whose deadline passes is
//! closed. Deadlines sit in a heap; those of sockets that left are dropped lazily, and the heap
//! is rebuilt from the table when they outnumber the parked sockets, so it stays proportional
//! to what is parked however often connections come and go.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::event::epoll;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

/// Events read from the epoll set at a time.
const BATCH: usize = 256;

/// An idle connection waiting for its client: all it holds.
#[derive(Debug)]
pub struct Parked {
    /// The bare socket, taken out of the runtime's reactor.
    pub socket: std::net::TcpStream,
    /// The client's address (from the PROXY header, if the entrypoint takes one).
    pub peer: SocketAddr,
    /// Its place under the entrypoint's `maxConnections`.
    pub slot: Option<Arc<OwnedSemaphorePermit>>,
}

/// Tells a worker's parking lots to close what they hold, and to refuse what comes later (the
/// worker's graceful shutdown).
#[derive(Debug, Default)]
pub struct CloseParked {
    closing: AtomicBool,
    notify: Notify,
}

impl CloseParked {
    /// Closes every parked connection, and any that parks from now on.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

/// One worker's parked connections of one entrypoint.
#[derive(Debug)]
pub struct ParkingLot {
    epoll: AsyncFd<OwnedFd>,
    table: Mutex<Table>,
    close: Arc<CloseParked>,
    /// Told when a connection parks with an earlier deadline than any before it.
    sooner: Notify,
}

#[derive(Debug, Default)]
struct Table {
    places: Vec<Place>,
    /// Indices of empty places.
    free: Vec<u32>,
    /// Idle deadlines with the place and generation they were set for (stale once it moved on).
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Connections parked since the lot was made (the worker trims memory when it stops rising,
    /// see `crate::memory`).
    parks: u64,
}

#[derive(Debug, Default)]
struct Place {
    /// Counts the connections the place has held: an event or deadline for an earlier one is
    /// recognised as stale.
    generation: u32,
    deadline: Option<Instant>,
    parked: Option<Parked>,
}

/// An epoll event's data: the place and its generation.
fn tag(index: u32, generation: u32) -> epoll::EventData {
    epoll::EventData::new_u64(u64::from(generation) << 32 | u64::from(index))
}

fn untag(data: epoll::EventData) -> (u32, u32) {
    let data = data.u64();
    (data as u32, (data >> 32) as u32)
}

impl Table {
    /// Takes the connection at `index` if it is still the one of `generation`.
    fn take(&mut self, index: u32, generation: u32) -> Option<Parked> {
        let place = self.places.get_mut(index as usize)?;
        if place.generation != generation {
            return None;
        }
        let parked = place.parked.take()?;
        place.deadline = None;
        place.generation = place.generation.wrapping_add(1);
        self.free.push(index);
        Some(parked)
    }

    /// How many connections are parked: every place that is not free holds one.
    fn parked(&self) -> usize {
        self.places.len() - self.free.len()
    }

    /// Drops the deadlines of connections that left, once they outnumber those parked.
    fn compact(&mut self) {
        if self.deadlines.len() <= 2 * self.parked() + 64 {
            return;
        }
        self.deadlines = self
            .places
            .iter()
            .enumerate()
            .filter(|(_, p)| p.parked.is_some())
            .filter_map(|(i, p)| p.deadline.map(|at| Reverse((at, i as u32, p.generation))))
            .collect();
    }
}

impl ParkingLot {
    /// An empty lot; closed by `close` with the worker's others.
    pub fn new(close: Arc<CloseParked>) -> io::Result<Self> {
        let set = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        // tokio deprecated the safe constructor (its replacement is `unsafe`, which this crate
        // forbids) because a registered descriptor closed or replaced behind its back would be
        // unsound; this `AsyncFd` owns the `OwnedFd`, and nothing else ever closes it.
        #[allow(deprecated)]
        let epoll = AsyncFd::with_interest(set, Interest::READABLE)?;
        Ok(Self {
            epoll,
            table: Mutex::default(),
            close,
            sooner: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Only this worker's thread touches the table; a panic while it held the lock left no
        // half-made change that matters (at worst a place is lost).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections are parked.
    pub fn parked(&self) -> usize {
        self.table().parked()
    }

    /// How many connections were parked here since the lot was made.
    pub fn parks_so_far(&self) -> u64 {
        self.table().parks
    }

    /// Keeps `parked` until its client speaks or `deadline` passes (`None`: no idle limit).
    /// Gives it back when the lot is closing or the socket cannot be watched: the caller closes it.
    pub fn park(&self, parked: Parked, deadline: Option<Instant>) -> Result<(), (Parked, io::Error)> {
        if self.close.is_closing() {
            return Err((parked, io::Error::other("the worker is shutting down")));
        }
        let mut table = self.table();
        let index = match table.free.pop() {
            Some(index) => index,
            None => {
                table.places.push(Place::default());
                (table.places.len() - 1) as u32
            }
        };
        let generation = table.places[index as usize].generation;
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        if let Err(e) = epoll::add(self.epoll.get_ref(), &parked.socket, tag(index, generation), flags) {
            table.free.push(index);
            return Err((parked, e.into()));
        }
        table.parks += 1;
        let place = &mut table.places[index as usize];
        place.parked = Some(parked);
        place.deadline = deadline;
        if let Some(at) = deadline {
            let earliest = table.deadlines.peek().is_none_or(|Reverse((first, _, _))| at < *first);
            table.deadlines.push(Reverse((at, index, generation)));
            table.compact();
            if earliest {
                self.sooner.notify_one();
            }
        }
        Ok(())
    }

    /// The places (and generations) of up to [`BATCH`] sockets that became readable.
    fn woken(&self) -> io::Result<Vec<(u32, u32)>> {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(BATCH);
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        match epoll::wait(self.epoll.get_ref(), rustix::buffer::spare_capacity(&mut events), Some(&zero)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(events.iter().map(|e| untag(e.data)).collect())
    }

    /// Runs the lot until the worker closes it: `resume` gets each connection whose client
    /// spoke (or closed), `closed` is called for each one the lot closes (its idle deadline
    /// passed, or the worker shuts down).
    pub async fn run(&self, mut resume: impl FnMut(Parked), mut closed: impl FnMut()) {
        loop {
            let closing = self.close.notify.notified();
            let mut closing = std::pin::pin!(closing);
            closing.as_mut().enable();
            if self.close.is_closing() {
                break;
            }
            let next = self.table().deadlines.peek().map(|Reverse((at, _, _))| *at);
            let sleep = tokio::time::sleep_until(next.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                () = &mut closing => break,
                ready = self.epoll.readable() => {
                    let mut ready = match ready {
                        Ok(ready) => ready,
                        Err(e) => {
                            tracing::error!("the parking lot's epoll set failed: {e}; closing its connections");
                            break;
                        }
                    };
                    let woken = match self.woken() {
                        Ok(woken) => woken,
                        Err(e) => {
                            tracing::error!("the parking lot's epoll set failed: {e}; closing its connections");
                            break;
                        }
                    };
                    if woken.len() < BATCH {
                        ready.clear_ready();
                    }
                    for (index, generation) in woken {
                        let Some(parked) = self.table().take(index, generation) else { continue };
                        // Out of this set before the runtime's reactor takes it.
                        let _ = epoll::delete(self.epoll.get_ref(), &parked.socket);
                        resume(parked);
                    }
                }
                () = sleep, if next.is_some() => {
                    let now = Instant::now();
                    loop {
                        let mut table = self.table();
                        let Some(&Reverse((at, index, generation))) = table.deadlines.peek() else { break };
                        if at > now {
                            break;
                        }
                        table.deadlines.pop();
                        let parked = table.take(index, generation);
                        drop(table);
                        if let Some(parked) = parked {
                            tracing::debug!(peer = %parked.peer, "client connection closed: the connection was idle for idleTimeout");
                            drop(parked);
                            closed();
                        }
                    }
                }
                () = self.sooner.notified() => {}
            }
        }
        let all = std::mem::take(&mut *self.table());
        for parked in all.places.into_iter().filter_map(|p| p.parked) {
            drop(parked);
            closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// A connected pair on 127.0.0.1: the client's end and drover's end as a parked connection.
    async fn pair() -> (tokio::net::TcpStream, Parked) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let parked = Parked {
            socket: server.into_std().unwrap(),
            peer,
            slot: None,
        };
        (client, parked)
    }

    /// A lot running in its own task, reporting what it resumed and how many it closed.
    fn running(close: &Arc<CloseParked>) -> (Arc<ParkingLot>, mpsc::UnboundedReceiver<Parked>, mpsc::UnboundedReceiver<()>) {
        let lot = Arc::new(ParkingLot::new(close.clone()).unwrap());
        let (resumed_tx, resumed) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let runner = lot.clone();
        tokio::spawn(async move {
            runner
                .run(move |p| resumed_tx.send(p).unwrap(), move || closed_tx.send(()).unwrap())
                .await;
        });
        (lot, resumed, closed)
    }

    #[tokio::test]
    async fn a_parked_socket_is_handed_back_when_its_client_speaks_even_if_it_spoke_before_parking() {
        let close = Arc::new(CloseParked::default());
        let (lot, mut resumed, _closed) = running(&close);
        let (mut early, parked) = pair().await;
        let early_peer = parked.peer;
        early.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        lot.park(parked, None).unwrap();
        let (mut later, parked) = pair().await;
        let later_peer = parked.peer;
        lot.park(parked, None).unwrap();
        let (_silent, parked) = pair().await;
        lot.park(parked, None).unwrap();

        let first = tokio::time::timeout(Duration::from_secs(5), resumed.recv()).await.unwrap().unwrap();
        assert_eq!(first.peer, early_peer, "bytes sent before parking wake the connection at once");
        later.write_all(b"GET").await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), resumed.recv()).await.unwrap().unwrap();
        assert_eq!(second.peer, later_peer);
        assert_eq!(lot.parked(), 1, "the silent one stays");

        // The bytes are still there for whoever serves the connection next.
        let socket = tokio::net::TcpStream::from_std(second.socket).unwrap();
        let mut buf = [0; 3];
        socket.readable().await.unwrap();
        assert_eq!(socket.try_read(&mut buf).unwrap(), 3);
        assert_eq!(&buf, b"GET");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadlines_close_in_order_and_a_resumed_connection_is_not_closed() {
        let close = Arc::new(CloseParked::default());
        let (lot, mut resumed, mut closed) = running(&close);
        let start = Instant::now();
        let (mut a, parked) = pair().await;
        lot.park(parked, Some(start + Duration::from_secs(30))).unwrap();
        let (mut b, parked) = pair().await;
        lot.park(parked, Some(start + Duration::from_secs(10))).unwrap();
        let (mut c, parked) = pair().await;
        lot.park(parked, Some(start + Duration::from_secs(20))).unwrap();
        c.write_all(b"x").await.unwrap();
        let back = resumed.recv().await.unwrap();

        closed.recv().await.unwrap();
        assert!(Instant::now() >= start + Duration::from_secs(10) && Instant::now() < start + Duration::from_secs(20));
        assert_eq!(b.read(&mut [0; 1]).await.unwrap(), 0, "b's deadline came first: closed");
        closed.recv().await.unwrap();
        assert!(
            Instant::now() >= start + Duration::from_secs(30),
            "c left the lot: its deadline was not kept"
        );
        assert_eq!(a.read(&mut [0; 1]).await.unwrap(), 0);
        assert_eq!(lot.parked(), 0);
        drop(back);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_of_connections_that_left_do_not_pile_up() {
        let close = Arc::new(CloseParked::default());
        let (lot, mut resumed, _closed) = running(&close);
        let (mut client, mut parked) = pair().await;
        for round in 0..1_000u64 {
            lot.park(parked, Some(Instant::now() + Duration::from_secs(3600 + round))).unwrap();
            client.write_all(b"x").await.unwrap();
            parked = resumed.recv().await.unwrap();
            let mut byte = [0; 1];
            assert_eq!(parked.socket.peek(&mut byte).unwrap(), 1);
            std::io::Read::read(&mut parked.socket, &mut byte).unwrap();
        }
        let kept = lot.table().deadlines.len();
        assert!(kept <= 64 + 2, "{kept} deadlines kept for no parked connection");
    }

    #[tokio::test]
    async fn closing_closes_every_parked_socket_and_refuses_later_ones() {
        let close = Arc::new(CloseParked::default());
        let (lot, _resumed, mut closed) = running(&close);
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, parked) = pair().await;
            lot.park(parked, None).unwrap();
            clients.push(client);
        }
        close.close_all();
        for client in &mut clients {
            closed.recv().await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut [0; 1]))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 0, "closed by the lot");
        }
        let (_client, parked) = pair().await;
        assert!(lot.park(parked, None).is_err(), "a closed lot takes nothing more");
    }
}
