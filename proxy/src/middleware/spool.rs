//! A body read whole, kept in memory up to a size and in an anonymous temporary file past it
//! (`buffering`, `forwardAuth`'s `forwardBody`), and read back as often as needed (`retry` sends
//! it once per attempt, `forwardAuth` to its server and then to the service).
//!
//! The file is created unlinked (`tempfile::tempfile`), so it disappears with its last handle
//! even if drover is killed. It is read back with positional reads on the blocking pool, so
//! several readers (one per attempt, one after another) never share a file offset.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

/// How much a read of the file gives at once.
const READ: usize = 64 * 1024;

/// Why a body could not be kept.
#[derive(Debug)]
pub enum SpoolError<E> {
    /// It is longer than the maximum.
    TooLarge,
    /// The body itself failed.
    Body(E),
    /// The temporary file failed.
    File(io::Error),
}

/// A body read whole.
#[derive(Clone, Debug, Default)]
pub struct Spool {
    memory: Vec<Bytes>,
    file: Option<Arc<std::fs::File>>,
    /// Bytes in the file.
    in_file: u64,
    len: u64,
}

impl Spool {
    /// Reads `body` whole: refused past `max` bytes, and past `memory` bytes the rest goes to a
    /// temporary file (`None`: everything stays in memory).
    pub async fn read<B>(body: B, max: Option<u64>, memory: Option<u64>) -> Result<Self, SpoolError<B::Error>>
    where
        B: Body<Data = Bytes>,
    {
        let mut body = std::pin::pin!(body);
        let mut spool = Spool::default();
        if let Some(declared) = body.size_hint().exact() {
            if max.is_some_and(|max| declared > max) {
                return Err(SpoolError::TooLarge);
            }
        }
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(SpoolError::Body)?.into_data() else {
                continue;
            };
            spool.len += data.len() as u64;
            if max.is_some_and(|max| spool.len > max) {
                return Err(SpoolError::TooLarge);
            }
            if spool.file.is_none() && memory.is_none_or(|m| spool.len <= m) {
                spool.memory.push(data);
                continue;
            }
            let file = match &spool.file {
                Some(file) => file.clone(),
                None => {
                    let file = tokio::task::spawn_blocking(tempfile::tempfile)
                        .await
                        .map_err(|e| SpoolError::File(io::Error::other(e)))?
                        .map_err(SpoolError::File)?;
                    let file = Arc::new(file);
                    spool.file = Some(file.clone());
                    file
                }
            };
            let offset = spool.in_file;
            spool.in_file += data.len() as u64;
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&data, offset)
            })
            .await
            .map_err(|e| SpoolError::File(io::Error::other(e)))?
            .map_err(SpoolError::File)?;
        }
        Ok(spool)
    }

    /// The body's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Part of it is in a file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// The whole body in memory, if it is there and in one piece.
    pub fn single(&self) -> Option<Bytes> {
        match (self.memory.as_slice(), &self.file) {
            ([], None) => Some(Bytes::new()),
            ([one], None) => Some(one.clone()),
            _ => None,
        }
    }

    /// A body that reads it from the start.
    pub fn body(&self) -> SpoolBody {
        SpoolBody {
            memory: self.memory.clone().into_iter(),
            file: self.file.clone(),
            offset: 0,
            in_file: self.in_file,
            reading: None,
            left: self.len,
        }
    }
}

/// A [`Spool`] read back.
pub struct SpoolBody {
    memory: std::vec::IntoIter<Bytes>,
    file: Option<Arc<std::fs::File>>,
    offset: u64,
    in_file: u64,
    reading: Option<JoinHandle<io::Result<Vec<u8>>>>,
    left: u64,
}

impl std::fmt::Debug for SpoolBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpoolBody({} bytes left)", self.left)
    }
}

impl Body for SpoolBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.memory.next() {
            this.left -= data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(file) = this.file.clone().filter(|_| this.offset < this.in_file) else {
            return Poll::Ready(None);
        };
        let reading = this.reading.get_or_insert_with(|| {
            let (offset, want) = (this.offset, (this.in_file - this.offset).min(READ as u64) as usize);
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0; want];
                file.read_exact_at(&mut buf, offset)?;
                Ok(buf)
            })
        });
        let read = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(read) => read,
        };
        this.reading = None;
        match read.map_err(io::Error::other).and_then(|r| r) {
            Ok(buf) => {
                this.offset += buf.len() as u64;
                this.left -= buf.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
            Err(e) => {
                this.offset = this.in_file;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>;

    fn chunks(parts: &[&'static [u8]]) -> StreamBody<Frames> {
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p)))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn memory_then_file_reads_back_the_same_bytes_every_time() {
        let spool = Spool::read(chunks(&[b"hello ", b"big ", b"world"]), Some(100), Some(8))
            .await
            .unwrap();
        assert!(spool.on_disk(), "past 8 bytes the rest is in a file");
        assert_eq!(spool.len(), 15);
        for _ in 0..2 {
            let back = spool.body().collect().await.unwrap().to_bytes();
            assert_eq!(&back[..], b"hello big world");
        }
        let small = Spool::read(chunks(&[b"abc"]), None, Some(8)).await.unwrap();
        assert!(!small.on_disk());
        assert_eq!(small.single().as_deref(), Some(&b"abc"[..]));
    }

    #[tokio::test]
    async fn a_body_past_the_maximum_is_refused() {
        let e = Spool::read(chunks(&[b"0123456789", b"x"]), Some(10), None).await.unwrap_err();
        assert!(matches!(e, SpoolError::TooLarge));
    }
}
