//! The access log: one line per request, in Traefik's `common` format or as JSON, written off
//! the request path.
//!
//! A request fills in an entry the writer handed back (so it neither allocates one nor reads
//! the wall clock: the writer turns its monotonic start into wall-clock time) and hands it to
//! a bounded lock-free queue (`bufferingSize` entries) without ever waiting. A dedicated thread
//! drains the queue in batches, formats each line by hand into one buffer and writes the batch
//! with a few large writes. The writer wakes on its own every [`FLUSH_INTERVAL`], or when a
//! sender finds `WAKE_AT` lines waiting, so one request in a few hundred pays for waking it
//! (a syscall and a context switch), the entries in flight stay few enough to stay in cache, and
//! a line reaches the sink within about 25 ms. When the sink is slower than the traffic (a full
//! disk, a pipe nobody reads) the queue fills and further lines are dropped and counted
//! (`drover_access_log_dropped_total`) rather than slowing requests down. Only the client
//! address, request line, host, status, sizes, `Referer` and `User-Agent` are logged: never
//! `Authorization`, cookies or any other header.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;

use http::{HeaderValue, Method, Version};
use serde::Deserialize;

use crate::civil::civil;
use smallvec::SmallVec;

/// `[accessLog]` in the static configuration. Absent = off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLogConfig {
    /// Where to write; absent = standard output.
    #[serde(default, alias = "filepath")]
    pub file_path: Option<PathBuf>,
    /// `common` (default) or `json`.
    #[serde(default)]
    pub format: Option<String>,
    /// Lines queued before new ones are dropped (default 16,384).
    #[serde(default, alias = "bufferingsize")]
    pub buffering_size: Option<usize>,
}

/// Line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Traefik's extended Common Log Format.
    Common,
    /// One JSON object per line, Traefik's field names.
    Json,
}

/// One finished request.
#[derive(Debug)]
pub struct Entry {
    /// Client IP.
    pub client: HeaderValue,
    /// When the request arrived, on the monotonic clock: the worker reads no wall clock.
    pub began: Instant,
    /// When the request arrived, on the wall clock (since the Unix epoch): set by the writer
    /// from `began`.
    pub start: Duration,
    /// Method.
    pub method: Method,
    /// Protocol version.
    pub version: Version,
    /// Path and query, Host, `Referer` and `User-Agent`, copied out of the request.
    pub request: RequestText,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent.
    pub size: u64,
    /// Request body bytes received.
    pub request_size: u64,
    /// Router that matched.
    pub router: Option<Arc<str>>,
    /// Service it went to.
    pub service: Option<Arc<str>>,
    /// Server URL that answered.
    pub server: Option<Arc<str>>,
    /// Entrypoint name.
    pub entry_point: Arc<str>,
    /// Time to the end of the response.
    pub duration: Duration,
    /// Retries spent.
    pub retries: u32,
    /// What a trusted proxy said the client was (its `X-Forwarded-For`, as received); empty
    /// when the peer is not trusted or sent none. `client` stays the socket's address.
    pub forwarded_for: Vec<u8>,
}

/// The request's own text an access-log line shows, copied into one small buffer (inline up to
/// 256 bytes). Copying matters: the request's header values are slices of the connection's read
/// buffer, and holding them until the line is written would keep every such buffer alive and
/// free it on the writer's thread.
#[derive(Debug, Default)]
pub struct RequestText {
    bytes: SmallVec<[u8; 256]>,
    /// End offsets of the target, Host, `Referer` and `User-Agent` in `bytes`.
    ends: [u32; 4],
    /// Which of Host, `Referer` and `User-Agent` the request had (bits 1, 2, 3).
    present: u8,
}

impl RequestText {
    /// The text of a request for `target` (its path and query) with these header values.
    pub fn new(target: &str, host: Option<&str>, referer: Option<&str>, user_agent: Option<&str>) -> Self {
        Self::from_bytes(
            target.as_bytes(),
            host.map(str::as_bytes),
            referer.map(str::as_bytes),
            user_agent.map(str::as_bytes),
        )
    }

    /// [`RequestText::new`] from raw header values, which need not be UTF-8 (the line shows
    /// what is not as U+FFFD).
    pub fn from_bytes(target: &[u8], host: Option<&[u8]>, referer: Option<&[u8]>, user_agent: Option<&[u8]>) -> Self {
        let mut text = RequestText::default();
        text.fill(target, host, referer, user_agent);
        text
    }

    /// Replaces the text with that of another request, in place.
    pub fn fill(&mut self, target: &[u8], host: Option<&[u8]>, referer: Option<&[u8]>, user_agent: Option<&[u8]>) {
        let parts = [Some(target), host, referer, user_agent];
        // Sized once, then each part copied into place: SmallVec's appends each pay for a
        // general insert (a capacity check and a move of the bytes after the insertion point).
        self.bytes.clear();
        self.bytes.resize(parts.iter().flatten().map(|p| p.len()).sum(), 0);
        self.present = 0;
        let mut at = 0;
        for (i, part) in parts.into_iter().enumerate() {
            if let Some(part) = part {
                self.bytes[at..at + part.len()].copy_from_slice(part);
                at += part.len();
                if i > 0 {
                    self.present |= 1 << i;
                }
            }
            self.ends[i] = at as u32;
        }
    }

    /// A part as bytes (UTF-8 unless a header value was not; [`escaped`] sees to that).
    fn part(&self, i: usize) -> Option<&[u8]> {
        if i > 0 && self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.bytes[start..self.ends[i] as usize])
    }

    /// Path and query (`/` when the request had none).
    pub fn target(&self) -> &[u8] {
        self.part(0).filter(|t| !t.is_empty()).unwrap_or(b"/")
    }

    /// The Host header.
    pub fn host(&self) -> Option<&[u8]> {
        self.part(1)
    }

    /// The `Referer` header.
    pub fn referer(&self) -> Option<&[u8]> {
        self.part(2)
    }

    /// The `User-Agent` header.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.part(3)
    }
}

/// How long the writer sleeps when nobody wakes it: the most a line waits before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(25);

/// A sender wakes the writer when this many lines wait (or the queue is half full, if smaller):
/// lines are then written while their entries are still in cache. An entry is ~450 bytes, and a
/// busy worker queued ~1,400 of them (~600 KB, most of a core's L2) between the writer's own
/// wake-ups; a wake-up per 256 lines costs a few microseconds.
const WAKE_AT: usize = 256;

/// A batch is written out when it reaches this size (and at the end of every drain).
const BATCH_BYTES: usize = 64 * 1024;

/// The sending side; cheap to share.
#[derive(Debug)]
pub struct AccessLog {
    /// Boxed entries: the ring stays small (a pointer per slot) and a line is read while still
    /// warm in cache; entries stored inline made every push and pop copy ~450 bytes to or from
    /// a ring several megabytes long, cold by the time a slot came round again.
    queue: Arc<ArrayQueue<Box<Entry>>>,
    /// Entries the writer is done with, handed back to be filled again: a request then neither
    /// allocates an entry nor frees one on another thread, and fills it in place rather than
    /// building ~450 bytes on its stack and copying them to the heap.
    spare: Arc<ArrayQueue<Box<Entry>>>,
    /// A sender wakes the writer early when this many lines wait.
    wake_at: usize,
    /// True while the writer sleeps.
    asleep: Arc<AtomicBool>,
    writer: Thread,
    stop: Arc<AtomicBool>,
    /// Disconnected when the writer has written its last line and ended.
    finished: Mutex<mpsc::Receiver<()>>,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.writer.unpark();
    }
}

impl AccessLog {
    /// Opens the sink and starts the writer thread.
    pub fn start(config: &AccessLogConfig) -> io::Result<Self> {
        let format = match config.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("common") => Format::Common,
            Some("json") => Format::Json,
            Some(other) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("accessLog.format `{other}` must be `common` or `json`"),
                ))
            }
        };
        let sink: Box<dyn Write + Send> = match &config.file_path {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("accessLog.filePath {}: {e}", path.display())))?,
            ),
            None => Box::new(io::stdout()),
        };
        let capacity = config.buffering_size.unwrap_or(16_384).max(1);
        let queue = Arc::new(ArrayQueue::new(capacity));
        let spare = Arc::new(ArrayQueue::new(capacity.min(MAX_SPARE)));
        let asleep = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = mpsc::channel();
        let writer = {
            let (queue, spare, asleep, stop) = (queue.clone(), spare.clone(), asleep.clone(), stop.clone());
            std::thread::Builder::new().name("drover-access-log".into()).spawn(move || {
                write_loop(&queue, &spare, &asleep, &stop, sink, format);
                drop(done);
            })?
        };
        Ok(Self {
            queue,
            spare,
            wake_at: capacity.div_ceil(2).min(WAKE_AT),
            asleep,
            writer: writer.thread().clone(),
            stop,
            finished: Mutex::new(finished),
        })
    }

    /// Writes out every queued line and stops the writer; waits at most `limit` (a sink that
    /// blocks, such as a pipe nobody reads, must not hold up shutdown). Lines sent afterwards
    /// are dropped.
    pub fn finish(&self, limit: Duration) {
        self.stop.store(true, Ordering::Release);
        self.writer.unpark();
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
            tracing::warn!("the access log's last lines could not be written within {limit:?}");
        }
    }

    /// An entry for a request that `began` then, from `client` on `entry_point`, to be filled in
    /// and [sent](Self::send): a spare one when the writer has handed one back.
    pub fn entry(&self, began: Instant, client: &HeaderValue, entry_point: &Arc<str>) -> Box<Entry> {
        match self.spare.pop() {
            Some(mut entry) => {
                entry.began = began;
                entry.client.clone_from(client);
                entry.forwarded_for.clear();
                if !Arc::ptr_eq(&entry.entry_point, entry_point) {
                    entry.entry_point = entry_point.clone();
                }
                entry
            }
            None => Box::new(Entry {
                client: client.clone(),
                began,
                start: Duration::ZERO,
                method: Method::GET,
                version: Version::HTTP_11,
                request: RequestText::default(),
                status: 0,
                size: 0,
                request_size: 0,
                router: None,
                service: None,
                server: None,
                entry_point: entry_point.clone(),
                duration: Duration::ZERO,
                retries: 0,
                forwarded_for: Vec::new(),
            }),
        }
    }

    /// Queues an entry; false when the queue was full and the line was dropped.
    pub fn send(&self, entry: Box<Entry>) -> bool {
        if self.queue.push(entry).is_err() {
            return false;
        }
        if self.asleep.load(Ordering::Relaxed) && self.queue.len() >= self.wake_at && self.asleep.swap(false, Ordering::AcqRel) {
            self.writer.unpark();
        }
        true
    }
}

/// At most this many used entries wait to be filled again (~450 bytes each); more are freed.
const MAX_SPARE: usize = 4096;

fn write_loop(
    queue: &ArrayQueue<Box<Entry>>,
    spare: &ArrayQueue<Box<Entry>>,
    asleep: &AtomicBool,
    stop: &AtomicBool,
    mut sink: Box<dyn Write + Send>,
    format: Format,
) {
    let mut batch = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut memo = Memo::default();
    let mut count: u64 = 0;
    let mut broken = false;
    loop {
        // Read before draining: after a stop, one more drain takes whatever was queued before it.
        let stopping = stop.load(Ordering::Acquire);
        let clocks = Clocks::now();
        while let Some(mut entry) = queue.pop() {
            if !broken {
                count += 1;
                entry.start = clocks.wall(entry.began);
                format.write(&entry, count, &mut memo, &mut batch);
            }
            // Names are let go of here, not when the entry is next used: a reload frees them.
            entry.router = None;
            entry.service = None;
            entry.server = None;
            // A full spare queue frees the entry.
            let _ = spare.push(entry);
            if broken {
                continue;
            }
            if batch.len() >= BATCH_BYTES {
                broken = !write_batch(&mut sink, &mut batch);
            }
        }
        if !batch.is_empty() && !broken {
            broken = !write_batch(&mut sink, &mut batch);
        }
        batch.clear();
        if stopping {
            return;
        }
        asleep.store(true, Ordering::Release);
        std::thread::park_timeout(FLUSH_INTERVAL);
        asleep.store(false, Ordering::Release);
    }
}

/// The wall clock and the monotonic clock read together, to turn a request's monotonic start
/// into wall-clock time without reading the wall clock per request.
struct Clocks {
    /// Since the Unix epoch.
    wall: Duration,
    monotonic: Instant,
}

impl Clocks {
    fn now() -> Self {
        Self {
            wall: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
            monotonic: Instant::now(),
        }
    }

    /// The wall-clock time at monotonic `t`, since the Unix epoch.
    fn wall(&self, t: Instant) -> Duration {
        // Tested this way round because entries almost always began before the clocks were
        // read: one subtraction then, where the other order costs three.
        match self.monotonic.checked_duration_since(t) {
            Some(before) => self.wall.saturating_sub(before),
            None => self.wall + t.duration_since(self.monotonic),
        }
    }
}

/// Writes and empties `batch`; false (said once in the log) when the sink is broken, after which
/// the writer keeps draining the queue so it never stays full.
fn write_batch(sink: &mut Box<dyn Write + Send>, batch: &mut Vec<u8>) -> bool {
    let written = sink.write_all(batch).and_then(|()| sink.flush());
    batch.clear();
    if let Err(e) = written {
        tracing::error!("the access log cannot be written ({e}); lines are discarded");
        return false;
    }
    true
}

impl Format {
    /// Appends `entry` as one line (with its newline) to `out`; `count` is its request number.
    pub fn write(self, entry: &Entry, count: u64, memo: &mut Memo, out: &mut Vec<u8>) {
        match self {
            Format::Common => common(entry, count, memo, out),
            Format::Json => json(entry, count, memo, out),
        }
    }
}

/// What a writer keeps from line to line, so that what most lines share with the line before
/// is formatted once: the time to the second, and the names (router, service, server,
/// entrypoint).
#[derive(Debug, Default)]
pub struct Memo {
    clock: Clock,
    names: Names,
}

/// The last line's names, as the format renders them.
#[derive(Debug, Default)]
struct Names {
    /// The names `text` shows. Held, not just their addresses: an `Arc` held here cannot be
    /// freed and its address reused by different text, so the same address means the same name.
    of: Option<[Option<Arc<str>>; 4]>,
    text: Vec<u8>,
}

impl Names {
    /// `e`'s names as `render` writes them: rendered again only when they differ from the last
    /// line's (a reload, another router).
    fn get(&mut self, e: &Entry, render: fn(&Entry, &mut Vec<u8>)) -> &[u8] {
        fn same(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        let hit = self.of.as_ref().is_some_and(|[router, service, server, entry_point]| {
            same(router, &e.router)
                && same(service, &e.service)
                && same(server, &e.server)
                && entry_point.as_ref().is_some_and(|ep| Arc::ptr_eq(ep, &e.entry_point))
        });
        if !hit {
            self.text.clear();
            render(e, &mut self.text);
            self.of = Some([e.router.clone(), e.service.clone(), e.server.clone(), Some(e.entry_point.clone())]);
        }
        &self.text
    }
}

/// Formats request start times, once per second rather than once per line.
#[derive(Debug, Default)]
struct Clock {
    second: Option<u64>,
    /// `21/Nov/2026:23:32:07 +0000`.
    clf: String,
    /// `2026-11-21T23:32:07`, completed with the fraction per line.
    iso: String,
    /// `1795390327`: the seconds of `StartUnixNano`, completed with the nanoseconds per line.
    unix: String,
}

impl Clock {
    /// The times `since` the Unix epoch as text to the second.
    fn at(&mut self, since: Duration) -> (&str, &str, &str, Duration) {
        let second = since.as_secs();
        if self.second != Some(second) {
            let c = civil(second);
            self.clf = format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                c.day,
                MONTHS[(c.month - 1) as usize],
                c.year,
                c.hour,
                c.minute,
                c.second
            );
            self.unix = second.to_string();
            self.iso = format!(
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
            self.second = Some(second);
        }
        (&self.clf, &self.iso, &self.unix, since)
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `bytes` escaped for the inside of a JSON string (also used for the quoted fields of
/// the common format, so a value can never end its field early or break the line). Bytes that
/// are not UTF-8 (a header value may hold any) become U+FFFD, so a line is always valid JSON.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if !needs_care(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let lossy = String::from_utf8_lossy(bytes);
    let bytes = lossy.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// True when `bytes` holds a byte that must be escaped (a control character, a quote, a
/// backslash or DEL) or that is not ASCII (and so must be checked for UTF-8).
///
/// Almost no value does, so this is the hot part of formatting a line. It tests eight bytes at
/// a time with the classic word tricks: `x - 0x01…01 & !x & 0x80…80` is non-zero exactly when
/// some byte of `x` is zero, and with `0x20…20` in place of `0x01…01`, when some byte is below
/// 0x20 (bytes of 0x80 and above never match that, so they are tested by their top bit).
fn needs_care(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    fn word_needs_escape(w: u64) -> bool {
        let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        (control | (w & HIGH) | zero_in(w ^ (ONES * u64::from(b'"'))) | zero_in(w ^ (ONES * u64::from(b'\\'))) | zero_in(w ^ (ONES * 0x7f)))
            != 0
    }
    let (words, rest) = bytes.as_chunks::<8>();
    if words.iter().any(|w| word_needs_escape(u64::from_le_bytes(*w))) {
        return true;
    }
    // The tail, padded with a byte that never needs escaping.
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    word_needs_escape(u64::from_le_bytes(last))
}

/// `client - - [time] "METHOD target PROTO" status size "referer" "ua" count "router" "server" Nms`
fn common(e: &Entry, count: u64, memo: &mut Memo, out: &mut Vec<u8>) {
    let (clf, _, _, _) = memo.clock.at(e.start);
    out.extend_from_slice(e.client.as_bytes());
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(clf.as_bytes());
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(e.method.as_str().as_bytes());
    out.push(b' ');
    escaped(out, e.request.target());
    out.push(b' ');
    out.extend_from_slice(version(e.version).as_bytes());
    out.extend_from_slice(b"\" ");
    number(out, e.status);
    out.push(b' ');
    number(out, e.size);
    out.extend_from_slice(b" \"");
    escaped(out, e.request.referer().unwrap_or(b"-"));
    out.extend_from_slice(b"\" \"");
    escaped(out, e.request.user_agent().unwrap_or(b"-"));
    out.extend_from_slice(b"\" ");
    number(out, count);
    out.extend_from_slice(memo.names.get(e, |e, out| {
        out.extend_from_slice(b" \"");
        escaped(out, e.router.as_deref().unwrap_or("-").as_bytes());
        out.extend_from_slice(b"\" \"");
        escaped(out, e.server.as_deref().unwrap_or("-").as_bytes());
        out.extend_from_slice(b"\" ");
    }));
    number(out, e.duration.as_millis());
    out.extend_from_slice(b"ms\n");
}

/// One JSON object, Traefik's field names, in a fixed order. Every key with its punctuation is
/// one literal, so each is a fixed-size copy rather than a call; values drover produced itself
/// (method, protocol, client address, numbers) need no escaping.
fn json(e: &Entry, count: u64, memo: &mut Memo, out: &mut Vec<u8>) {
    fn optional(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            Some(v) => {
                out.push(b'"');
                escaped(out, v);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
    }
    let (_, iso, unix, since) = memo.clock.at(e.start);
    let mut nanos = itoa::Buffer::new();
    let nanos = nanos.format(since.subsec_nanos()).as_bytes();
    // The nanoseconds as 9 digits: `StartUnixNano` is the seconds' digits followed by them.
    let pad = &b"000000000"[..9 - nanos.len()];
    out.reserve(640 + e.request.bytes.len());
    out.extend_from_slice(b"{\"ClientHost\":\"");
    out.extend_from_slice(e.client.as_bytes());
    out.extend_from_slice(b"\",\"StartUnixNano\":");
    if since.as_secs() > 0 {
        out.extend_from_slice(unix.as_bytes());
        out.extend_from_slice(pad);
    }
    out.extend_from_slice(nanos);
    out.extend_from_slice(b",\"StartUTC\":\"");
    out.extend_from_slice(iso.as_bytes());
    out.push(b'.');
    out.extend_from_slice(pad);
    out.extend_from_slice(nanos);
    out.extend_from_slice(b"Z\",\"Duration\":");
    number(out, e.duration.as_nanos() as u64);
    out.extend_from_slice(b",\"RequestMethod\":\"");
    out.extend_from_slice(e.method.as_str().as_bytes());
    out.extend_from_slice(b"\",\"RequestPath\":\"");
    escaped(out, e.request.target());
    out.extend_from_slice(b"\",\"RequestProtocol\":\"");
    out.extend_from_slice(version(e.version).as_bytes());
    out.extend_from_slice(b"\",\"RequestHost\":\"");
    escaped(out, e.request.host().unwrap_or(b"-"));
    out.extend_from_slice(b"\",\"RequestContentSize\":");
    number(out, e.request_size);
    out.extend_from_slice(b",\"DownstreamStatus\":");
    number(out, e.status);
    out.extend_from_slice(b",\"DownstreamContentSize\":");
    number(out, e.size);
    out.extend_from_slice(memo.names.get(e, |e, out| {
        out.extend_from_slice(b",\"RouterName\":");
        optional(out, e.router.as_deref().map(str::as_bytes));
        out.extend_from_slice(b",\"ServiceName\":");
        optional(out, e.service.as_deref().map(str::as_bytes));
        out.extend_from_slice(b",\"ServiceURL\":");
        optional(out, e.server.as_deref().map(str::as_bytes));
        out.extend_from_slice(b",\"EntryPointName\":\"");
        escaped(out, e.entry_point.as_bytes());
    }));
    out.extend_from_slice(b"\",\"RetryAttempts\":");
    number(out, e.retries);
    out.extend_from_slice(b",\"RequestCount\":");
    number(out, count);
    out.extend_from_slice(b",\"request_Referer\":");
    optional(out, e.request.referer());
    out.extend_from_slice(b",\"request_User-Agent\":");
    optional(out, e.request.user_agent());
    out.extend_from_slice(b",\"request_X-Forwarded-For\":");
    optional(out, Some(&e.forwarded_for[..]).filter(|f| !f.is_empty()));
    out.extend_from_slice(b"}\n");
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            client: HeaderValue::from_static("10.0.0.9"),
            began: Instant::now(),
            start: Duration::from_secs(1_795_390_327),
            method: Method::GET,
            version: Version::HTTP_11,
            request: RequestText::new("/a?b=1", Some("shop.local"), None, Some("curl/8")),
            status: 200,
            size: 42,
            request_size: 0,
            router: Some("web@file".into()),
            service: Some("web@file".into()),
            server: Some("http://10.0.0.2:80".into()),
            entry_point: "web".into(),
            duration: Duration::from_millis(7),
            retries: 0,
            forwarded_for: Vec::new(),
        }
    }

    fn line(format: Format, e: &Entry, count: u64) -> String {
        let mut out = Vec::new();
        format.write(e, count, &mut Memo::default(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn common_format() {
        assert_eq!(
            line(Format::Common, &entry(), 3),
            "10.0.0.9 - - [22/Nov/2026:23:32:07 +0000] \"GET /a?b=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\" 3 \"web@file\" \"http://10.0.0.2:80\" 7ms\n"
        );
    }

    #[test]
    fn json_format() {
        let text = line(Format::Json, &entry(), 1);
        assert!(text.ends_with("}\n") && text.lines().count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["DownstreamStatus"].as_u64(), v["RouterName"].as_str()),
            (Some(200), Some("web@file"))
        );
        assert_eq!(v["Duration"], 7_000_000);
        assert_eq!(v["StartUnixNano"], 1_795_390_327_000_000_000_u64);
        assert_eq!(v["StartUTC"], "2026-11-22T23:32:07.000000000Z");
        assert_eq!(v["RequestPath"], "/a?b=1");
        assert_eq!(v["request_Referer"], serde_json::Value::Null);
        assert_eq!(v["request_User-Agent"], "curl/8");
        assert_eq!(v["RequestCount"], 1);
    }

    #[test]
    fn each_line_shows_its_own_names_when_they_change() {
        for format in [Format::Json, Format::Common] {
            let mut memo = Memo::default();
            let mut out = Vec::new();
            let mut e = entry();
            format.write(&e, 1, &mut memo, &mut out);
            e.router = Some("other@docker".into());
            format.write(&e, 2, &mut memo, &mut out);
            e.router = None;
            e.server = None;
            format.write(&e, 3, &mut memo, &mut out);
            e = entry();
            e.entry_point = "websecure".into();
            format.write(&e, 4, &mut memo, &mut out);
            format.write(&e, 5, &mut memo, &mut out);
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let want: [(&str, &str); 5] = [
                ("web@file", "web"),
                ("other@docker", "web"),
                ("-", "web"),
                ("web@file", "websecure"),
                ("web@file", "websecure"),
            ];
            for (line, (router, entry_point)) in lines.iter().zip(want) {
                match format {
                    Format::Json => {
                        let v: serde_json::Value = serde_json::from_str(line).unwrap();
                        assert_eq!(v["RouterName"].as_str().unwrap_or("-"), router, "{line}");
                        assert_eq!(v["EntryPointName"], entry_point, "{line}");
                        assert_eq!(v["ServiceURL"].is_null(), router == "-", "{line}");
                    }
                    Format::Common => {
                        let server = if router == "-" { "-" } else { "http://10.0.0.2:80" };
                        assert!(line.ends_with(&format!("\"{router}\" \"{server}\" 7ms")), "{line}");
                    }
                }
            }
            assert_eq!(lines.len(), 5);
        }
    }

    #[test]
    fn hostile_values_stay_inside_their_fields() {
        let mut e = entry();
        e.request = RequestText::new("/", None, Some("x\" \"y"), Some("a\"b\\c\td"));
        e.start += Duration::from_nanos(1_234);
        let v: serde_json::Value = serde_json::from_str(&line(Format::Json, &e, 1)).unwrap();
        assert_eq!(v["request_User-Agent"], "a\"b\\c\td");
        assert_eq!(v["request_Referer"], "x\" \"y");
        assert_eq!(v["StartUTC"], "2026-11-22T23:32:07.000001234Z");
        assert_eq!(v["StartUnixNano"], 1_795_390_327_000_001_234_u64);
        e.start = Duration::from_nanos(5);
        let v: serde_json::Value = serde_json::from_str(&line(Format::Json, &e, 1)).unwrap();
        assert_eq!(v["StartUnixNano"], 5);
        let common = line(Format::Common, &e, 1);
        assert!(common.contains(r#""x\" \"y" "a\"b\\c\td""#), "{common}");
    }

    #[test]
    fn request_text_keeps_absent_and_empty_apart() {
        let long = format!("/{}", "x".repeat(400));
        let t = RequestText::new(&long, Some(""), None, Some("café"));
        assert_eq!(
            (t.target(), t.host(), t.referer(), t.user_agent()),
            (long.as_bytes(), Some(&b""[..]), None, Some("café".as_bytes()))
        );
        let t = RequestText::new("", None, Some("r"), None);
        assert_eq!(
            (t.target(), t.host(), t.referer(), t.user_agent()),
            (&b"/"[..], None, Some(&b"r"[..]), None)
        );
    }

    #[test]
    fn the_word_test_agrees_with_the_byte_test() {
        let by_byte = |bytes: &[u8]| bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f);
        for len in [1, 7, 8, 9, 16, 19] {
            for position in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'x'; len];
                    bytes[position] = b;
                    assert_eq!(needs_care(&bytes), by_byte(&bytes), "byte {b:#04x} at {position} of {len}");
                }
            }
        }
        assert!(!needs_care(b""));
        assert!(!needs_care(b"plain ascii, 32 bytes long ~!#$%"));
    }

    #[test]
    fn header_bytes_that_are_not_utf8_become_replacement_characters() {
        let mut e = entry();
        e.request = RequestText::from_bytes(b"/", Some(b"h\xff"), None, Some("caf\u{e9} \u{1f600}".as_bytes()));
        let v: serde_json::Value = serde_json::from_str(&line(Format::Json, &e, 1)).unwrap();
        assert_eq!(v["RequestHost"], "h\u{fffd}");
        assert_eq!(v["request_User-Agent"], "caf\u{e9} \u{1f600}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        escaped(&mut out, "a\u{1}b\u{7f}\n".as_bytes());
        assert_eq!(out, b"a\\u0001b\\u007f\\n");
    }

    #[test]
    fn monotonic_starts_become_wall_clock_times_before_and_after_the_reading() {
        let clocks = Clocks::now();
        let later = clocks.monotonic + Duration::from_millis(1_500);
        assert_eq!(clocks.wall(later), clocks.wall + Duration::from_millis(1_500));
        if let Some(earlier) = clocks.monotonic.checked_sub(Duration::from_micros(250)) {
            assert_eq!(clocks.wall(earlier), clocks.wall - Duration::from_micros(250));
        }
        assert_eq!(clocks.wall(clocks.monotonic), clocks.wall);
    }

    #[test]
    fn a_written_entry_comes_back_without_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let config = AccessLogConfig {
            file_path: Some(dir.path().join("access.log")),
            format: Some("json".into()),
            buffering_size: None,
        };
        let log = AccessLog::start(&config).unwrap();
        let (client, entry_point): (HeaderValue, Arc<str>) = (HeaderValue::from_static("10.1.1.1"), "web".into());
        let mut e = log.entry(Instant::now(), &client, &entry_point);
        e.router = Some("r@file".into());
        e.service = Some("s@file".into());
        e.server = Some("http://10.0.0.2".into());
        assert!(log.send(e));
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.spare.is_empty() {
            assert!(Instant::now() < deadline, "the writer never handed the entry back");
            std::thread::sleep(Duration::from_millis(1));
        }
        let began = Instant::now();
        let (client, entry_point): (HeaderValue, Arc<str>) = (HeaderValue::from_static("10.2.2.2"), "websecure".into());
        let again = log.entry(began, &client, &entry_point);
        assert!(log.spare.is_empty(), "the spare entry was not used");
        assert_eq!(
            (again.router.as_deref(), again.service.as_deref(), again.server.as_deref()),
            (None, None, None)
        );
        assert_eq!(
            (again.began, again.client.as_bytes(), &*again.entry_point),
            (began, &b"10.2.2.2"[..], "websecure")
        );
        log.finish(Duration::from_secs(5));
        let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(
            (v["RouterName"].as_str(), v["ClientHost"].as_str()),
            (Some("r@file"), Some("10.1.1.1"))
        );
    }

    #[test]
    fn the_clock_follows_the_seconds() {
        let mut clock = Clock::default();
        let t = Duration::from_secs(1_795_390_327);
        assert_eq!(clock.at(t).0, "22/Nov/2026:23:32:07 +0000");
        assert_eq!(clock.at(t + Duration::from_millis(999)).0, "22/Nov/2026:23:32:07 +0000");
        assert_eq!(clock.at(t + Duration::from_secs(1)).1, "2026-11-22T23:32:08");
        assert_eq!(clock.at(Duration::from_secs(951_782_400)).1, "2000-02-29T00:00:00");
    }
}
