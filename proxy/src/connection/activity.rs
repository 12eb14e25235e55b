//! What a client connection is doing, for its client timeouts (`headerReadTimeout` and
//! `idleTimeout`), kept with a few relaxed atomics so the request path only stamps changes.
//!
//! A connection is in one of three states:
//! * **reading a head**: from accept, or from the first bytes that arrive while nothing is in
//!   flight, until the request head is complete; bounded by `headerReadTimeout` (slow-loris
//!   clients are cut off);
//! * **busy**: at least one request in flight ([`InFlight`]); no client timeout applies (the
//!   server side has its own deadlines);
//! * **idle**: keep-alive, nothing in flight and no bytes since the last response ended;
//!   bounded by `idleTimeout`.
//!
//! An HTTP/2 connection (recognised by its preface) is "reading a head" from accept until its
//! first request is complete: preface, SETTINGS and the first header block must arrive within
//! `headerReadTimeout`, as an HTTP/1 head must. After that its streams are counted as requests
//! and only `idleTimeout` applies between them (a frame between streams cannot be told from a
//! PING without parsing HTTP/2, so it does not start a head deadline). The watchdog that acts on
//! the verdicts is the runtime's (`server::timeouts`).
//!
//! While an HTTP/1 head is read, the connection also remembers whether its request line has
//! ended (a `\n` arrived). hyper answers a head that outgrows its buffer with 431 whatever part
//! overflowed; with this bit, the stream that writes the answer can say 414 when it was the
//! request line (see `server::timeouts`). Pipelined heads read while a request is in flight are
//! not followed, and keep hyper's 431.
//!
//! Whatever the state, a client that stops reading is noticed: a write to it that cannot go on
//! (the socket's send buffer is full) stamps the moment, the next write that goes through clears
//! it, and a connection whose writes have been stuck for `bodyIdleTimeout` is closed (a slow
//! reader would otherwise hold its connection and a server's for ever). Flushes count as writes:
//! HTTP/2 frames and small HTTP/1 writes are kept and leave on a flush (`io`). The watchdog looks
//! once per its shortest limit, so the close comes between one and two of them after the stall.
//! Only stalls of the socket are seen: an HTTP/2 client that keeps its flow-control window shut
//! stalls h2's streams, not the socket.
//!
//! **Parking.** An idle HTTP/1 connection may drop hyper's state (its buffers, its dispatcher)
//! and keep only its socket until the client's next bytes (`server::timeouts`), but only when
//! hyper holds no byte of the client's that it has not used: otherwise a pipelined head begun
//! there would be lost. That is known here without looking into hyper: the last request had no
//! body, the read that completed its head ended with that head (`\r\n\r\n`), and no byte
//! arrived after it. Anything else (a body, bytes read while a request was in flight, a head
//! whose end came in a read of its own) keeps the connection unparked until its next request;
//! HTTP/2 connections never park.
//!
//! **Content-Length beside Transfer-Encoding.** hyper reads such a request as chunked and drops
//! the length before drover sees the head (RFC 9112 §6.1 allows that; nginx answers 400, which
//! is what drover does). So the head's bytes are looked at here as they are read: whether one of
//! its lines is a `Content-Length` field ([`HeadScan`]). Only a head known to start at the first
//! byte read is followed: the first of a connection, or one after a request that left hyper
//! nothing unused (the same condition as parking). A head read another way (pipelined behind a
//! request or a body) is not followed; hyper's reading of it stands (chunked, the length dropped,
//! the connection closed after the answer), which is safe, only not refused.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Connection;

/// The HTTP/2 connection preface starts with this.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The deadlines of an entrypoint's client connections; `None` disables one.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From the first byte of a request head (or the accept) to the whole head.
    pub header_read: Option<Duration>,
    /// Between the end of a response and the first byte of the next request.
    pub idle: Option<Duration>,
    /// How long writes to the client may stay stuck (`bodyIdleTimeout`).
    pub write_stall: Option<Duration>,
}

impl Limits {
    /// Limits from the configured values, where zero means "none".
    pub fn new(header_read: Duration, idle: Duration) -> Self {
        Self {
            header_read: Some(header_read).filter(|d| !d.is_zero()),
            idle: Some(idle).filter(|d| !d.is_zero()),
            write_stall: None,
        }
    }

    /// Also closes connections whose writes have been stuck for `limit` (zero: never).
    pub fn with_write_stall(mut self, limit: Option<Duration>) -> Self {
        self.write_stall = limit.filter(|d| !d.is_zero());
        self
    }

    /// How often to look again while a request is in flight.
    pub(crate) fn recheck(&self) -> Option<Duration> {
        [self.header_read, self.idle, self.write_stall].into_iter().flatten().min()
    }
}

/// What a client connection is doing, for its timeouts.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds from `epoch` to the start of the current wait (reading a head, or idle).
    since_ms: AtomicU64,
    reading_head: AtomicBool,
    /// Set once: the client spoke the HTTP/2 preface.
    http2: AtomicBool,
    /// Set once the first bytes were seen (the preface check is done).
    started: AtomicBool,
    /// The HTTP/1 head being read has not finished its request line yet.
    request_line_open: AtomicBool,
    /// Milliseconds from `epoch` plus one to the moment a write to the client got stuck; 0
    /// while writes go through.
    write_stuck_ms: AtomicU64,
    /// How many bytes of a head's end (`\r\n\r\n`) the bytes read so far end with, across
    /// reads: 4 when the last read ended exactly at the end of a head ([`head_end_after`]).
    head_end: AtomicU8,
    /// Nothing of the client's is left unused since the last request's head (see the module).
    parkable: AtomicBool,
    /// The head being read, followed for a Content-Length line ([`HeadScan`]).
    head_scan: AtomicU32,
    /// The head of the latest request had a Content-Length line (known only for followed heads).
    head_had_length: AtomicBool,
}

/// How many bytes of `\r\n\r\n` the stream ends with after `bytes`, when it ended with
/// `matched` of them before. A head's end may be split across reads (hyper-util reads the first
/// 24 bytes of a connection alone, to tell HTTP/2's preface; TCP splits where it likes): only
/// the last four bytes matter, and a shorter read continues the match.
fn head_end_after(matched: u8, bytes: &[u8]) -> u8 {
    let tail = &bytes[bytes.len().saturating_sub(4)..];
    let start = if tail.len() == 4 { 0 } else { matched };
    tail.iter().fold(start, |m, &b| match (m, b) {
        (0 | 2, b'\r') => m + 1,
        (_, b'\r') => 1,
        (1 | 3, b'\n') => m + 1,
        _ => 0,
    })
}

/// What the watchdog found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The deadline passed: close the connection.
    Expired(&'static str),
    /// Look again after this long (`None`: no deadline applies now or later).
    Recheck(Option<Duration>),
}

impl Activity {
    /// A connection accepted now: it is reading its first request head.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            since_ms: AtomicU64::new(0),
            reading_head: AtomicBool::new(true),
            http2: AtomicBool::new(false),
            started: AtomicBool::new(false),
            request_line_open: AtomicBool::new(true),
            write_stuck_ms: AtomicU64::new(0),
            head_end: AtomicU8::new(0),
            parkable: AtomicBool::new(false),
            head_scan: AtomicU32::new(HeadScan::START.0),
            head_had_length: AtomicBool::new(false),
        }
    }

    /// A parked HTTP/1 connection served again: like a new one, known not to be HTTP/2.
    pub fn resumed() -> Self {
        let activity = Self::new();
        activity.started.store(true, Ordering::Relaxed);
        activity
    }

    /// How long an idle connection may stay idle from now (`idleTimeout` less what it has
    /// waited); `None` when there is no idle limit.
    pub(crate) fn idle_left(&self, limits: &Limits, now_ms: u64) -> Option<Duration> {
        let waited = Duration::from_millis(now_ms.saturating_sub(self.since_ms.load(Ordering::Relaxed)));
        limits.idle.map(|idle| idle.saturating_sub(waited))
    }

    /// A write to the client could not go on: it is stuck from now, unless it already was.
    pub(crate) fn write_stuck(&self) {
        if self.write_stuck_ms.load(Ordering::Relaxed) == 0 {
            self.write_stuck_ms.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// A write to the client went through.
    pub(crate) fn write_moved(&self) {
        if self.write_stuck_ms.load(Ordering::Relaxed) != 0 {
            self.write_stuck_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Milliseconds since the connection was accepted.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A request's head is complete; `bodyless`: it has no body to read.
    fn request_started(&self, bodyless: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.reading_head.store(false, Ordering::Relaxed);
        let parkable = bodyless && self.head_end.load(Ordering::Relaxed) == 4 && !self.http2.load(Ordering::Relaxed);
        self.parkable.store(parkable, Ordering::Relaxed);
        // This request's head is whatever the scan followed last; the next head is followed
        // only if it is known to start afresh (`bytes_read`).
        let scan = HeadScan(self.head_scan.swap(HeadScan::OFF.0, Ordering::Relaxed));
        self.head_had_length.store(scan.found_length(), Ordering::Relaxed);
    }

    /// Whether the head of the request just started had a `Content-Length` line, as far as it
    /// was followed (see the module): `false` when it was not.
    pub(crate) fn head_had_length(&self) -> bool {
        self.head_had_length.load(Ordering::Relaxed)
    }

    fn request_ended(&self, now: Instant) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let since = now.saturating_duration_since(self.epoch).as_millis() as u64;
            self.since_ms.store(since, Ordering::Relaxed);
        }
    }

    /// Bytes arrived from the client: the first ones of a new request head if nothing is in flight.
    pub(crate) fn bytes_read(&self, bytes: &[u8]) {
        let head_end = head_end_after(self.head_end.load(Ordering::Relaxed), bytes);
        self.head_end.store(head_end, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) != 0 {
            // A body, or a pipelined head hyper may keep unused: not parkable after this request.
            self.parkable.store(false, Ordering::Relaxed);
        }
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
            // A first read too short to tell (under 4 bytes) counts as HTTP/1.
            let n = bytes.len().min(H2_PREFACE.len());
            if n >= 4 && bytes[..n] == H2_PREFACE[..n] {
                // Still reading its first head, since the accept.
                self.http2.store(true, Ordering::Relaxed);
                return;
            }
        }
        if self.in_flight.load(Ordering::Relaxed) != 0 || self.http2.load(Ordering::Relaxed) {
            return;
        }
        if !self.reading_head.load(Ordering::Relaxed) {
            self.reading_head.store(true, Ordering::Relaxed);
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.request_line_open.store(true, Ordering::Relaxed);
            // These bytes begin the next head only if the last request left hyper nothing.
            let scan = if self.parkable.load(Ordering::Relaxed) {
                HeadScan::START
            } else {
                HeadScan::OFF
            };
            self.head_scan.store(scan.0, Ordering::Relaxed);
        }
        if self.request_line_open.load(Ordering::Relaxed) && memchr::memchr(b'\n', bytes).is_some() {
            self.request_line_open.store(false, Ordering::Relaxed);
        }
        let scan = HeadScan(self.head_scan.load(Ordering::Relaxed));
        if scan.following() {
            self.head_scan.store(scan.read(bytes).0, Ordering::Relaxed);
        }
    }

    /// The HTTP/1 head being read has not finished its request line: a head too large for the
    /// buffer is a URI too long.
    pub(crate) fn request_line_open(&self) -> bool {
        self.reading_head.load(Ordering::Relaxed) && self.request_line_open.load(Ordering::Relaxed)
    }

    /// Whether hyper's state may be dropped now, the connection having been idle for at least
    /// `after` (see the module): nothing in flight or being read, nothing unused, no write stuck.
    pub(crate) fn may_park(&self, now_ms: u64, after: Duration) -> bool {
        self.could_park()
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.reading_head.load(Ordering::Relaxed)
            && self.write_stuck_ms.load(Ordering::Relaxed) == 0
            && now_ms.saturating_sub(self.since_ms.load(Ordering::Relaxed)) >= after.as_millis() as u64
    }

    /// Whether the connection may park once it is idle: its last request left nothing unused.
    pub(crate) fn could_park(&self) -> bool {
        self.parkable.load(Ordering::Relaxed)
    }

    /// Whether the connection may ever park: an HTTP/2 connection never does.
    pub(crate) fn may_park_later(&self) -> bool {
        !self.http2.load(Ordering::Relaxed)
    }

    /// What the watchdog should do now.
    pub(crate) fn verdict(&self, limits: &Limits, now_ms: u64) -> Verdict {
        let stuck = self.write_stuck_ms.load(Ordering::Relaxed);
        if let (Some(limit), true) = (limits.write_stall, stuck != 0) {
            let waited = Duration::from_millis(now_ms.saturating_sub(stuck - 1));
            if waited >= limit {
                return Verdict::Expired("the client read nothing of its response for bodyIdleTimeout");
            }
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Recheck(limits.recheck());
        }
        let (limit, what) = if self.reading_head.load(Ordering::Relaxed) {
            (limits.header_read, "the request head did not arrive within headerReadTimeout")
        } else {
            (limits.idle, "the connection was idle for idleTimeout")
        };
        let Some(limit) = limit else {
            // This state has no deadline, but the next one may.
            return Verdict::Recheck(limits.recheck());
        };
        let waited = Duration::from_millis(now_ms.saturating_sub(self.since_ms.load(Ordering::Relaxed)));
        if waited >= limit {
            Verdict::Expired(what)
        } else {
            Verdict::Recheck(Some(limit - waited))
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a scan of an HTTP/1 head for a `Content-Length` line stands, in one word so that it
/// lives in an atomic: the position in the current line (how much of `content-length:` it has
/// matched, or "skip to the next line"), a carriage return at the line's start, and whether the
/// head is being followed, has ended, and had the line. Case as hyper accepts it: any; no space
/// before the colon (httparse refuses one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeadScan(u32);

impl HeadScan {
    const FIELD: &'static [u8; 15] = b"content-length:";
    /// The position that skips the rest of the line.
    const SKIP: u32 = 31;
    /// The bits that hold the position (0 to 15, or `SKIP`).
    const POSITION: u32 = 31;
    const CR: u32 = 1 << 5;
    const FOLLOWING: u32 = 1 << 6;
    const ENDED: u32 = 1 << 7;
    const LENGTH: u32 = 1 << 8;
    /// Not following anything.
    const OFF: Self = Self(0);
    /// At the start of a head: its request line is skipped.
    const START: Self = Self(Self::FOLLOWING | Self::SKIP);

    fn following(self) -> bool {
        self.0 & Self::FOLLOWING != 0
    }

    /// The head was followed to its end and had a `Content-Length` line.
    fn found_length(self) -> bool {
        self.0 & (Self::ENDED | Self::LENGTH) == Self::ENDED | Self::LENGTH
    }

    /// The scan after `bytes`, the next ones of the head. It stops following at the empty line
    /// that ends the head: what follows is a body or another head. One pass finds the line
    /// feeds; each line's first bytes are then compared (most lines differ at the first byte).
    fn read(self, bytes: &[u8]) -> Self {
        let mut length = self.0 & Self::LENGTH != 0;
        let position = self.0 & Self::POSITION;
        if position != Self::SKIP {
            // The line in progress when the last read ended.
            match Self::line(bytes, position, self.0 & Self::CR != 0) {
                Line::End => return Self::ended(length),
                Line::Length => length = true,
                Line::Skip => {}
                Line::Partial(state) => return Self(state.0 | if length { Self::LENGTH } else { 0 }),
            }
        }
        // Each line feed ends a line the matching above or below has decided (a decided line is
        // never read past its own line feed), so the next line starts after it.
        for feed in memchr::memchr_iter(b'\n', bytes) {
            match Self::line(&bytes[feed + 1..], 0, false) {
                Line::End => return Self::ended(length),
                Line::Length => length = true,
                Line::Skip => {}
                Line::Partial(state) => return Self(state.0 | if length { Self::LENGTH } else { 0 }),
            }
        }
        Self(Self::FOLLOWING | Self::SKIP | if length { Self::LENGTH } else { 0 })
    }

    fn ended(length: bool) -> Self {
        Self(Self::ENDED | if length { Self::LENGTH } else { 0 })
    }

    /// Reads the start of a line, `position` bytes of `content-length:` already matched (`cr`: a
    /// carriage return began it), until it is decided; `bytes` may end first.
    #[inline]
    fn line(bytes: &[u8], mut position: u32, mut cr: bool) -> Line {
        for &byte in bytes {
            if cr {
                // "\r\n" is the empty line; a carriage return alone is no field hyper reads.
                return if byte == b'\n' { Line::End } else { Line::Skip };
            }
            if position == 0 {
                match byte {
                    b'\n' => return Line::End,
                    b'\r' => {
                        cr = true;
                        continue;
                    }
                    _ => {}
                }
            }
            if byte.to_ascii_lowercase() != Self::FIELD[position as usize] {
                return Line::Skip;
            }
            position += 1;
            if position as usize == Self::FIELD.len() {
                return Line::Length;
            }
        }
        Line::Partial(Self(Self::FOLLOWING | position | if cr { Self::CR } else { 0 }))
    }
}

/// How the start of a line was decided ([`HeadScan::line`]).
enum Line {
    /// It was empty: the head ended.
    End,
    /// It is a `Content-Length` field.
    Length,
    /// It is something else: skip to the next line.
    Skip,
    /// The bytes ended first; the scan to go on with (without its `LENGTH` bit).
    Partial(HeadScan),
}

/// One request of a connection, from its complete head until its response has ended or was
/// abandoned (dropped): the connection is busy while any of these lives.
#[derive(Debug)]
pub struct InFlight(Arc<Connection>, Option<Instant>);

impl InFlight {
    /// The request `conn` has just read is being served; `bodyless`: it has no body.
    pub fn start(conn: Arc<Connection>, bodyless: bool) -> Self {
        conn.activity.request_started(bodyless);
        Self(conn, None)
    }

    /// The request ends at `now` (read by the caller already), when this is dropped.
    pub fn ends_at(&mut self, now: Instant) {
        self.1 = Some(now);
    }
}

impl std::ops::Deref for InFlight {
    type Target = Arc<Connection>;

    fn deref(&self) -> &Arc<Connection> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.request_ended(self.1.unwrap_or_else(Instant::now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::new(Duration::from_secs(30), Duration::from_secs(180))
    }

    #[test]
    fn a_new_connection_must_send_a_head_in_time() {
        let a = Activity::new();
        assert_eq!(a.verdict(&limits(), 10_000), Verdict::Recheck(Some(Duration::from_secs(20))));
        assert!(matches!(a.verdict(&limits(), 30_000), Verdict::Expired(w) if w.contains("headerReadTimeout")));
    }

    #[test]
    fn busy_connections_never_expire_and_idle_ones_get_the_idle_limit() {
        let a = Activity::new();
        a.bytes_read(b"GET / HTTP/1.1\r\n");
        a.request_started(true);
        assert_eq!(a.verdict(&limits(), 1_000_000), Verdict::Recheck(Some(Duration::from_secs(30))));
        a.since_ms.store(0, Ordering::Relaxed);
        a.in_flight.store(1, Ordering::Relaxed);
        a.request_ended(Instant::now());
        let since = a.since_ms.load(Ordering::Relaxed);
        assert_eq!(
            a.verdict(&limits(), since + 60_000),
            Verdict::Recheck(Some(Duration::from_secs(120)))
        );
        assert!(matches!(a.verdict(&limits(), since + 180_000), Verdict::Expired(w) if w.contains("idleTimeout")));
        // Bytes of the next head switch back to the head deadline, counted from their arrival.
        a.bytes_read(b"GE");
        let since = a.since_ms.load(Ordering::Relaxed);
        assert!(matches!(a.verdict(&limits(), since + 30_000), Verdict::Expired(w) if w.contains("headerReadTimeout")));
    }

    #[test]
    fn http2_connections_must_send_a_first_request_in_time_then_only_have_the_idle_limit() {
        let a = Activity::new();
        a.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(
            matches!(a.verdict(&limits(), 30_000), Verdict::Expired(w) if w.contains("headerReadTimeout")),
            "preface, SETTINGS and a first request within headerReadTimeout of the accept"
        );
        a.request_started(true);
        a.request_ended(Instant::now());
        let since = a.since_ms.load(Ordering::Relaxed);
        assert_eq!(
            a.verdict(&limits(), since + 100_000),
            Verdict::Recheck(Some(Duration::from_secs(80)))
        );
        a.bytes_read(b"ping frame");
        assert_eq!(
            a.verdict(&limits(), since + 100_000),
            Verdict::Recheck(Some(Duration::from_secs(80)))
        );
    }

    #[test]
    fn a_client_that_stops_reading_is_closed_after_the_write_stall_limit() {
        let stall = limits().with_write_stall(Some(Duration::from_secs(60)));
        let a = Activity::new();
        a.bytes_read(b"GET / HTTP/1.1\r\n");
        a.request_started(true);
        assert_eq!(a.verdict(&stall, 1_000_000), Verdict::Recheck(Some(Duration::from_secs(30))));
        a.write_stuck_ms.store(1_000_001, Ordering::Relaxed);
        a.write_stuck(); // already stuck: the first moment counts
        assert_eq!(a.verdict(&stall, 1_059_999), Verdict::Recheck(Some(Duration::from_secs(30))));
        assert!(matches!(a.verdict(&stall, 1_060_000), Verdict::Expired(w) if w.contains("read nothing")));
        a.write_moved();
        assert_eq!(a.verdict(&stall, 2_000_000), Verdict::Recheck(Some(Duration::from_secs(30))));
        assert!(
            !matches!(a.verdict(&limits(), 1_060_000), Verdict::Expired(_)),
            "no limit, no close"
        );
    }

    #[test]
    fn the_request_line_is_open_until_its_line_feed_in_each_head() {
        let a = Activity::new();
        assert!(a.request_line_open());
        a.bytes_read(b"GET /aaaa");
        a.bytes_read(b"aaaa");
        assert!(a.request_line_open());
        a.bytes_read(b"a HTTP/1.1\r\nHost: x\r\n");
        assert!(!a.request_line_open(), "now the headers are being read");
        a.request_started(true);
        a.bytes_read(b"body bytes without a line feed");
        assert!(!a.request_line_open(), "not while a request is in flight");
        a.request_ended(Instant::now());
        a.bytes_read(b"GET /next");
        assert!(a.request_line_open(), "a new head, a new request line");
    }

    #[test]
    fn short_first_reads_count_as_http1() {
        let a = Activity::new();
        a.bytes_read(b"PR");
        assert!(!a.http2.load(Ordering::Relaxed));
        let b = Activity::new();
        b.bytes_read(b"PRI * HT");
        assert!(b.http2.load(Ordering::Relaxed));
        let c = Activity::new();
        c.bytes_read(b"POST / HTTP/1.1\r\n");
        assert!(!c.http2.load(Ordering::Relaxed));
    }

    #[test]
    fn only_a_bodyless_request_whose_head_ended_its_read_lets_the_connection_park() {
        let park = Duration::from_secs(1);
        let a = Activity::new();
        a.bytes_read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        a.request_started(true);
        assert!(!a.may_park(1_000_000, park), "not while the request is in flight");
        a.request_ended(Instant::now());
        let since = a.since_ms.load(Ordering::Relaxed);
        assert!(!a.may_park(since + 999, park), "not before the delay");
        assert!(a.may_park(since + 1_000, park));
        a.bytes_read(b"GE");
        assert!(!a.may_park(since + 5_000, park), "not while a head is being read");

        let pipelined = Activity::new();
        pipelined.bytes_read(b"GET / HTTP/1.1\r\n\r\nGET /2 HT");
        pipelined.request_started(true);
        pipelined.request_ended(Instant::now());
        assert!(!pipelined.may_park(1_000_000, park), "hyper holds the start of the next head");

        let late = Activity::new();
        late.bytes_read(b"GET / HTTP/1.1\r\n\r\n");
        late.request_started(true);
        late.bytes_read(b"GET /2 HT");
        late.request_ended(Instant::now());
        assert!(!late.may_park(1_000_000, park), "bytes read while a request was in flight");

        let body = Activity::new();
        body.bytes_read(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n");
        body.request_started(false);
        body.request_ended(Instant::now());
        assert!(!body.may_park(1_000_000, park), "a request with a body");

        let h2 = Activity::new();
        h2.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.bytes_read(b"\r\n\r\n");
        h2.request_started(true);
        h2.request_ended(Instant::now());
        assert!(!h2.may_park(1_000_000, park), "HTTP/2 never parks");

        let stuck = Activity::new();
        stuck.bytes_read(b"GET / HTTP/1.1\r\n\r\n");
        stuck.request_started(true);
        stuck.write_stuck();
        stuck.request_ended(Instant::now());
        assert!(!stuck.may_park(1_000_000, park), "a write is stuck");
    }

    #[test]
    fn a_head_end_split_across_reads_lets_the_connection_park() {
        let head: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        // Every split into two reads, and byte per byte (hyper-util reads 24 bytes first: this
        // 27-byte head then ends with a read of "\n\r\n").
        for at in 1..head.len() {
            let a = Activity::new();
            a.bytes_read(&head[..at]);
            a.bytes_read(&head[at..]);
            a.request_started(true);
            a.request_ended(Instant::now());
            assert!(a.may_park(1_000_000, Duration::from_secs(1)), "split at {at}");
        }
        let a = Activity::new();
        for byte in head {
            a.bytes_read(std::slice::from_ref(byte));
        }
        a.request_started(true);
        a.request_ended(Instant::now());
        assert!(a.may_park(1_000_000, Duration::from_secs(1)), "byte per byte");
        // Look-alikes do not end a head.
        for ends in [&b"\r\n\r\r"[..], b"\n\r\n", b"\r\r\n\n", b"x\r\n"] {
            assert_ne!(head_end_after(0, ends), 4, "{ends:?}");
        }
        assert_eq!(head_end_after(2, b"\r\n"), 4);
        assert_eq!(head_end_after(3, b"\r"), 1);
        assert_eq!(head_end_after(4, b"\r\n"), 2);
    }

    /// What the scan concludes for `head` read in the given pieces.
    fn scanned(pieces: &[&[u8]]) -> HeadScan {
        pieces.iter().fold(
            HeadScan::START,
            |scan, piece| if scan.following() { scan.read(piece) } else { scan },
        )
    }

    #[test]
    fn a_content_length_line_is_found_in_any_case_and_any_split() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\ncOnTeNt-LeNgTh: 4\r\n\r\n4\r\nabcd";
        assert!(scanned(&[head]).found_length());
        // Every split into two reads, and one byte per read.
        for at in 0..head.len() {
            assert!(scanned(&[&head[..at], &head[at..]]).found_length(), "split at {at}");
        }
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert!(scanned(&bytes).found_length());
        // Bare line feeds end lines as hyper accepts them.
        assert!(scanned(&[b"POST / HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n\n"]).found_length());
    }

    #[test]
    fn only_a_field_named_content_length_in_the_head_counts() {
        for head in [
            &b"GET /content-length: HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nContent-Lengthy: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nReferer: /x\r\ncontent-length 4\r\n\r\n",
            // In the body, after the head ended.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11\r\nContent-Length: 4\r\n\r\n",
        ] {
            let scan = scanned(&[head]);
            assert!(!scan.found_length(), "{}", String::from_utf8_lossy(head));
        }
        assert!(
            !scanned(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\n"]).found_length(),
            "not before the head ended"
        );
    }

    #[test]
    fn the_next_head_is_followed_only_after_a_request_that_left_nothing_unused() {
        let cl_te = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let first = Activity::new();
        first.bytes_read(cl_te);
        first.request_started(false);
        assert!(first.head_had_length(), "the first head of a connection");

        let after_get = Activity::new();
        after_get.bytes_read(b"GET / HTTP/1.1\r\n\r\n");
        after_get.request_started(true);
        assert!(!after_get.head_had_length());
        after_get.request_ended(Instant::now());
        after_get.bytes_read(cl_te);
        after_get.request_started(false);
        assert!(after_get.head_had_length(), "a keep-alive head after a bodyless request");

        let after_body = Activity::new();
        after_body.bytes_read(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n");
        after_body.request_started(false);
        after_body.bytes_read(b"abcd");
        after_body.request_ended(Instant::now());
        after_body.bytes_read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        after_body.request_started(false);
        assert!(
            !after_body.head_had_length(),
            "not followed; the earlier head's length is not this one's"
        );

        let pipelined = Activity::new();
        pipelined.bytes_read(b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 4\r\n");
        pipelined.request_started(true);
        pipelined.request_ended(Instant::now());
        pipelined.bytes_read(b"Transfer-Encoding: chunked\r\n\r\n");
        pipelined.request_started(false);
        assert!(!pipelined.head_had_length(), "a head begun behind another is not followed");
    }

    #[test]
    fn zero_disables_a_limit() {
        let a = Activity::new();
        let none = Limits::new(Duration::ZERO, Duration::from_secs(5));
        assert_eq!(a.verdict(&none, 1_000_000), Verdict::Recheck(Some(Duration::from_secs(5))));
        assert_eq!(Limits::new(Duration::ZERO, Duration::ZERO).recheck(), None);
    }
}
