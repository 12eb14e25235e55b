//! Socket writes: one `send(2)` for a small write, where hyper asks for `writev(2)`.
//!
//! hyper hands a message to the socket as a vector of buffers (head, then body chunks) so that
//! large bodies are never copied. For a socket, `writev` goes through the VFS (descriptor
//! position lookup, copying and checking the iovec array) before it reaches the same
//! `sock_sendmsg` that `send` reaches directly; under load that path was ~1.7% of drover's CPU
//! samples, where HAProxy, which calls `send`, had none. Small messages (the common case: a
//! head and a short body) are therefore gathered into one buffer and sent with `send`; large
//! ones still go out with `writev`, uncopied.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Messages up to this size are gathered and sent with one `send`.
pub const GATHER_LIMIT: usize = 16 * 1024;

thread_local! {
    /// Where small messages are gathered: one per thread, reused.
    static GATHER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(GATHER_LIMIT));
}

/// Writes `bufs` to `stream`: a single non-empty buffer with `send`, several small ones
/// gathered into one and sent with `send`, anything larger with `writev`.
pub fn poll_write_gathered(stream: Pin<&mut TcpStream>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
    let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
    match (non_empty.next(), non_empty.next()) {
        (None, _) => Poll::Ready(Ok(0)),
        (Some(only), None) => stream.poll_write(cx, only),
        _ => {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if total > GATHER_LIMIT {
                return stream.poll_write_vectored(cx, bufs);
            }
            GATHER.with(|gather| {
                let mut gather = gather.borrow_mut();
                gather.clear();
                for b in bufs {
                    gather.extend_from_slice(b);
                }
                // What was not sent stays in hyper's buffers: a partial write reports its count.
                stream.poll_write(cx, &gather)
            })
        }
    }
}

/// A TCP stream whose vectored writes go through [`poll_write_gathered`] (used for the
/// connections to servers; client connections get the same from their `WatchedStream`).
#[derive(Debug)]
pub struct GatheringStream(pub TcpStream);

impl AsyncRead for GatheringStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatheringStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        poll_write_gathered(Pin::new(&mut self.0), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Every shape of message arrives whole and in order: empty buffers, one buffer, several
    /// small ones (gathered), and more than the gathering limit (`writev`).
    #[tokio::test]
    async fn vectored_writes_arrive_whole_and_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut writer = GatheringStream(client.unwrap());
        let (mut reader, _) = accepted.unwrap();
        let big = vec![b'b'; GATHER_LIMIT];
        let messages: Vec<Vec<&[u8]>> = vec![
            vec![b"", b"head\r\n", b"", b"body"],
            vec![b"only one"],
            vec![b"", b""],
            vec![b"a", b"b", b"c"],
            vec![b"more than the limit:", &big],
        ];
        let mut expected = Vec::new();
        for message in &messages {
            expected.extend(message.iter().flat_map(|b| b.iter().copied()));
            let mut slices: Vec<IoSlice<'_>> = message.iter().map(|b| IoSlice::new(b)).collect();
            let mut rest = &mut slices[..];
            while rest.iter().any(|b| !b.is_empty()) {
                let n = std::future::poll_fn(|cx| Pin::new(&mut writer).poll_write_vectored(cx, rest))
                    .await
                    .unwrap();
                assert!(n > 0, "a write made progress");
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        writer.shutdown().await.unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }
}
