//! Socket writes: small messages leave at the end of the worker's batch, with one `send(2)`.
//!
//! **Batching.** A worker serves many connections in one pass over its ready tasks. Written at
//! once, each request drover forwards (and each response it returns) reaches its peer on its own,
//! and a peer that had gone to sleep between two of them is woken for each: wake-ups cost the
//! sender's CPU (`sock_def_readable`) and the peer's. A [`BatchedStream`] instead keeps a small
//! write and hands it to its worker's [`run_flusher`] task, which runs once the tasks already
//! queued have been polled and sends every kept write in one go: the peer is woken once for the
//! batch. Writes larger than [`GATHER_LIMIT`], and every write on a thread with no flusher,
//! go out at once (after whatever is still kept, so the order holds). A write the flusher
//! cannot finish (the socket buffer is full) goes back to its stream, which sends the rest
//! itself, waiting for the socket like any write; an error the flusher meets is reported by the
//! stream's next write or flush.
//!
//! **`send` over `writev`.** hyper hands a message to the socket as a vector of buffers (head,
//! then body chunks) so that large bodies are never copied. For a socket, `writev` goes through
//! the VFS (descriptor position lookup, copying and checking the iovec array) before it reaches
//! the same `sock_sendmsg` that `send` reaches directly; under load that path was ~1.7% of
//! drover's CPU samples, where HAProxy, which calls `send`, had none. Small messages (the
//! common case: a head and a short body) are therefore gathered into one buffer and sent with
//! `send`; large ones still go out with `writev`, uncopied.
//!
//! **A shared socket.** The stream reads and writes through an `Arc` of the socket, so that
//! whoever built it may keep the socket when the stream is dropped: an idle client connection
//! drops hyper's whole state, its buffers and this stream with it, and keeps the bare socket
//! (see `server::timeouts`). A stream made with [`BatchedStream::new`] owns its socket alone and
//! shuts its write side down when dropped, as tokio's write half does.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Messages up to this size are gathered and sent with one `send`, and may be batched.
pub const GATHER_LIMIT: usize = 16 * 1024;

/// A stream's kept buffer is given back to the allocator after a flush when it grew beyond
/// this: idle connections then hold little memory.
const KEPT_CAPACITY: usize = 4 * 1024;

thread_local! {
    /// Where small messages are gathered: one per thread, reused.
    static GATHER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(GATHER_LIMIT));

    /// This thread's flusher, while one runs.
    static FLUSHER: RefCell<Option<Flusher>> = const { RefCell::new(None) };
}

/// Writes `bufs` to `stream`: a single non-empty buffer with `send`, several small ones
/// gathered into one and sent with `send`, anything larger with `writev`.
fn poll_write_gathered(stream: &TcpStream, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
    let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
    match (non_empty.next(), non_empty.next()) {
        (None, _) => Poll::Ready(Ok(0)),
        (Some(only), None) => poll_write_socket(stream, cx, only),
        _ => {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if total > GATHER_LIMIT {
                return poll_write_socket_vectored(stream, cx, bufs);
            }
            GATHER.with(|gather| {
                let mut gather = gather.borrow_mut();
                gather.clear();
                for b in bufs {
                    gather.extend_from_slice(b);
                }
                // What was not sent stays in hyper's buffers: a partial write reports its count.
                poll_write_socket(stream, cx, &gather)
            })
        }
    }
}

/// The streams with kept writes, and the flusher task's waker.
struct Flusher {
    queued: Vec<Arc<Shared>>,
    waker: Option<Waker>,
    woken: bool,
}

/// Sends, on this thread, the writes [`BatchedStream`]s kept, each time the tasks queued before
/// them have run. Runs for as long as the worker does; while it runs, this thread's streams
/// batch their small writes.
pub async fn run_flusher() {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            // No more batching on this thread; send what is kept now, as far as the sockets take it.
            let flusher = FLUSHER.with(|f| f.borrow_mut().take());
            for shared in flusher.into_iter().flat_map(|f| f.queued) {
                shared.flush();
            }
        }
    }
    FLUSHER.with(|f| {
        *f.borrow_mut() = Some(Flusher {
            queued: Vec::new(),
            waker: None,
            woken: false,
        })
    });
    let _stop = Stop;
    let mut batch = Vec::new();
    std::future::poll_fn(|cx| -> Poll<()> {
        FLUSHER.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                std::mem::swap(&mut f.queued, &mut batch);
                f.woken = false;
                if !f.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    f.waker = Some(cx.waker().clone());
                }
            }
        });
        for shared in batch.drain(..) {
            shared.flush();
        }
        Poll::Pending
    })
    .await
}

/// Hands `shared` to this thread's flusher; false when the thread has none.
fn enqueue(shared: &Arc<Shared>) -> bool {
    FLUSHER.with(|f| {
        let mut f = f.borrow_mut();
        let Some(f) = f.as_mut() else { return false };
        f.queued.push(shared.clone());
        if !std::mem::replace(&mut f.woken, true) {
            if let Some(waker) = &f.waker {
                waker.wake_by_ref();
            }
        }
        true
    })
}

/// A stream's write side, shared with the flusher.
#[derive(Debug)]
struct Shared {
    out: Mutex<Out>,
}

#[derive(Debug)]
struct Out {
    write: Arc<TcpStream>,
    /// Bytes written to the stream and not yet sent.
    kept: Vec<u8>,
    /// `kept` is with the flusher. Kept bytes that are not were left by a flush that could not
    /// finish: the stream sends them itself before anything else.
    queued: bool,
    /// What the flusher met, for the stream's next write or flush to report.
    error: Option<io::Error>,
    /// The task that last wrote, woken when the flusher leaves it bytes or an error.
    writer: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the kept bytes (the flusher's side).
    fn flush(&self) {
        let writer = self.send_kept();
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// Sends the kept bytes; returns the writer to wake when some are left to it (or an error).
    fn send_kept(&self) -> Option<Waker> {
        let mut out = self.lock();
        out.queued = false;
        let out = &mut *out;
        while !out.kept.is_empty() {
            match out.write.try_write(&out.kept) {
                Ok(n) if n == out.kept.len() => {
                    out.kept.clear();
                    if out.kept.capacity() > KEPT_CAPACITY {
                        out.kept = Vec::new();
                    }
                    return None;
                }
                Ok(n) => {
                    out.kept.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        out.kept = Vec::new();
                        out.error = Some(e);
                    }
                    // The socket is full (or failed): the stream takes over.
                    return out.writer.take();
                }
            }
        }
        None
    }
}

impl Out {
    /// Sends kept bytes the flusher does not have, waiting for the socket as needed.
    fn poll_send_kept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        while !self.queued && !self.kept.is_empty() {
            match poll_write_socket(&self.write, cx, &self.kept) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.kept.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A TCP stream whose small writes are batched (see the module above) and whose vectored writes
/// go out with one `send`. Used for the connections to clients and to servers.
#[derive(Debug)]
pub struct BatchedStream {
    read: Arc<TcpStream>,
    shared: Arc<Shared>,
    /// Shut the write side down when dropped (the stream owns its socket).
    shutdown_on_drop: bool,
}

impl BatchedStream {
    /// Wraps `stream`, which it owns: its write side is shut down when this is dropped.
    pub fn new(stream: TcpStream) -> Self {
        Self::with(Arc::new(stream), true)
    }

    /// Reads and writes `socket`, which others may hold too: dropping this leaves it open.
    pub fn shared(socket: Arc<TcpStream>) -> Self {
        Self::with(socket, false)
    }

    fn with(socket: Arc<TcpStream>, shutdown_on_drop: bool) -> Self {
        Self {
            read: socket.clone(),
            shutdown_on_drop,
            shared: Arc::new(Shared {
                out: Mutex::new(Out {
                    write: socket,
                    kept: Vec::new(),
                    queued: false,
                    error: None,
                    writer: None,
                }),
            }),
        }
    }
}

impl Drop for BatchedStream {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = socket2::SockRef::from(&*self.read).shutdown(std::net::Shutdown::Write);
        }
    }
}

/// Runs `transfer` (a read or a write of at most `len` bytes) on `socket` once it is ready for
/// `interest`, as tokio's own `poll_read` and `poll_write` do: a transfer shorter than `len` also
/// clears the readiness (the socket is drained, or full), so that the next call waits for the
/// reactor instead of making a system call that would only find `EAGAIN`.
fn poll_transfer(
    socket: &TcpStream,
    interest: Interest,
    cx: &mut Context<'_>,
    len: usize,
    mut transfer: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        let ready = if interest == Interest::READABLE {
            socket.poll_read_ready(cx)
        } else {
            socket.poll_write_ready(cx)
        };
        std::task::ready!(ready)?;
        let mut short = None;
        // `try_io` clears the readiness it saw before `transfer` ran when told `WouldBlock`.
        let done = socket.try_io(interest, || {
            let n = transfer()?;
            if n > 0 && n < len {
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match done {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(n) = short {
                    return Poll::Ready(Ok(n));
                }
                // The readiness was stale (and is now cleared): wait again.
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Reads from `socket` what it has, waiting for it.
fn poll_read_socket(socket: &TcpStream, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    let len = buf.remaining();
    poll_transfer(socket, Interest::READABLE, cx, len, || socket.try_read_buf(buf)).map_ok(drop)
}

/// Writes `buf` to `socket`, waiting for room.
fn poll_write_socket(socket: &TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    poll_transfer(socket, Interest::WRITABLE, cx, buf.len(), || socket.try_write(buf))
}

/// Writes `bufs` to `socket` with one `writev`, waiting for room.
fn poll_write_socket_vectored(socket: &TcpStream, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
    let len = bufs.iter().map(|b| b.len()).sum();
    poll_transfer(socket, Interest::WRITABLE, cx, len, || socket.try_write_vectored(bufs))
}

impl AsyncRead for BatchedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read_socket(&self.read, cx, buf)
    }
}

impl AsyncWrite for BatchedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut out = this.shared.lock();
        std::task::ready!(out.poll_send_kept(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if out.kept.len() + total <= GATHER_LIMIT && (out.queued || enqueue(&this.shared)) {
            out.queued = true;
            for b in bufs {
                out.kept.extend_from_slice(b);
            }
            if !out.writer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                out.writer = Some(cx.waker().clone());
            }
            return Poll::Ready(Ok(total));
        }
        if out.queued && !out.kept.is_empty() {
            // Too large to keep: what is kept goes first.
            out.queued = false;
            std::task::ready!(out.poll_send_kept(cx))?;
        }
        poll_write_gathered(&out.write, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Kept bytes the flusher has are as good as flushed: it runs before this task can.
        self.shared.lock().poll_send_kept(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.shared.lock();
        out.queued = false;
        std::task::ready!(out.poll_send_kept(cx))?;
        Poll::Ready(socket2::SockRef::from(&*out.write).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A connected pair: drover's side (batched) and the peer's.
    async fn pair() -> (BatchedStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (BatchedStream::new(client.unwrap()), accepted.unwrap().0)
    }

    /// Starts this thread's flusher and lets it register.
    async fn start_flusher() -> tokio::task::JoinHandle<()> {
        let flusher = tokio::spawn(run_flusher());
        tokio::task::yield_now().await;
        assert!(FLUSHER.with(|f| f.borrow().is_some()), "the flusher runs");
        flusher
    }

    async fn write_all_vectored(writer: &mut BatchedStream, message: &[&[u8]]) {
        let mut slices: Vec<IoSlice<'_>> = message.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while rest.iter().any(|b| !b.is_empty()) {
            let n = std::future::poll_fn(|cx| Pin::new(&mut *writer).poll_write_vectored(cx, rest))
                .await
                .unwrap();
            assert!(n > 0, "a write made progress");
            IoSlice::advance_slices(&mut rest, n);
        }
    }

    /// Every shape of message arrives whole and in order: empty buffers, one buffer, several
    /// small ones (gathered), and more than the gathering limit (`writev`), which must wait for
    /// the small ones kept before it.
    async fn messages_arrive_whole_and_in_order() {
        let (mut writer, mut reader) = pair().await;
        let big = vec![b'b'; GATHER_LIMIT];
        let messages: Vec<Vec<&[u8]>> = vec![
            vec![b"", b"head\r\n", b"", b"body"],
            vec![b"only one"],
            vec![b"", b""],
            vec![b"a", b"b", b"c"],
            vec![b"more than the limit:", &big],
            vec![b"small again"],
        ];
        let mut expected = Vec::new();
        for message in &messages {
            expected.extend(message.iter().flat_map(|b| b.iter().copied()));
            write_all_vectored(&mut writer, message).await;
        }
        writer.shutdown().await.unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn messages_arrive_whole_and_in_order_without_a_flusher() {
        messages_arrive_whole_and_in_order().await;
    }

    #[tokio::test]
    async fn messages_arrive_whole_and_in_order_with_a_flusher() {
        let _flusher = start_flusher().await;
        messages_arrive_whole_and_in_order().await;
    }

    /// Small writes stay with the stream until the flusher runs, then leave together.
    #[tokio::test]
    async fn small_writes_leave_when_the_flusher_runs() {
        let _flusher = start_flusher().await;
        let (mut writer, reader) = pair().await;
        writer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        writer.write_all(b"GET /2 HTTP/1.1\r\n\r\n").await.unwrap();
        writer.flush().await.unwrap();
        let mut buf = [0; 64];
        let early = reader.try_read(&mut buf);
        assert!(
            matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "nothing was sent before the flusher ran: {early:?}"
        );
        let mut reader = reader;
        let mut got = vec![0; 37];
        tokio::time::timeout(Duration::from_secs(5), reader.read_exact(&mut got))
            .await
            .expect("the flusher sent the writes")
            .unwrap();
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// When the socket's buffers are full the flusher leaves the rest to the stream and wakes its
    /// writer; the stream then sends it as the peer reads: nothing is lost or reordered.
    #[tokio::test]
    async fn a_full_socket_leaves_the_rest_to_the_stream() {
        let (mut writer, mut reader) = pair().await;
        let total = 4 << 20;
        let pattern = |i: usize| (i % 251) as u8;
        socket2::SockRef::from(writer.read.as_ref())
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        socket2::SockRef::from(&reader).set_recv_buffer_size(16 * 1024).unwrap();
        let woken = Arc::new(Flag(false.into()));
        {
            let mut out = writer.shared.lock();
            out.kept = (0..total).map(pattern).collect();
            out.queued = true;
            out.writer = Some(Waker::from(woken.clone()));
        }
        writer.shared.flush();
        {
            let out = writer.shared.lock();
            assert!(!out.kept.is_empty() && !out.queued, "the socket took part, the stream has the rest");
        }
        assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst), "the writer was woken");
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.map(|_| got)
        });
        tokio::time::timeout(Duration::from_secs(30), async {
            writer.flush().await.unwrap();
            writer.shutdown().await.unwrap();
        })
        .await
        .expect("the stream sent the rest");
        let got = reading.await.unwrap().unwrap();
        assert_eq!(got.len(), total);
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)), "in order");
    }

    /// An error the flusher meets (the peer reset the connection) is reported by the stream's
    /// next write.
    #[tokio::test]
    async fn the_flushers_error_reaches_the_next_write() {
        let _flusher = start_flusher().await;
        let (mut writer, reader) = pair().await;
        let reader = reader.into_std().unwrap();
        socket2::SockRef::from(&reader).set_linger(Some(Duration::ZERO)).unwrap();
        drop(reader);
        let mut result = Ok(());
        for _ in 0..100 {
            result = writer.write_all(b"x").await;
            if result.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let e = result.expect_err("a write failed");
        assert!(
            matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
            "{e}"
        );
    }
}
