//! The access log: one line per request, in Traefik's `common` format or as JSON, written off
//! the request path.
//!
//! A request hands a finished entry to a bounded lock-free queue (`bufferingSize` entries)
//! without ever waiting; a dedicated thread formats and writes. The writer is woken (a syscall)
//! only when it went to sleep on an empty queue; under load it is busy and requests never pay
//! for a wake-up. When the sink is slower than the traffic
//! (a full disk, a pipe nobody reads) the queue fills and further lines are dropped and counted
//! (`drover_access_log_dropped_total`) rather than slowing requests down. Only the client
//! address, request line, host, status, sizes, `Referer` and `User-Agent` are logged: never
//! `Authorization`, cookies or any other header.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;

use http::{HeaderValue, Method, Version};
use serde::Deserialize;

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
    /// When the request arrived.
    pub start: SystemTime,
    /// Method.
    pub method: Method,
    /// Path and query as sent.
    pub target: String,
    /// Protocol version.
    pub version: Version,
    /// Host header.
    pub host: Option<HeaderValue>,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent.
    pub size: u64,
    /// Request body bytes received.
    pub request_size: u64,
    /// `Referer`.
    pub referer: Option<HeaderValue>,
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
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
}

/// The sending side; cheap to share.
#[derive(Debug)]
pub struct AccessLog {
    queue: Arc<ArrayQueue<Box<Entry>>>,
    /// True while the writer sleeps on an empty queue and must be woken.
    asleep: Arc<AtomicBool>,
    writer: Thread,
    stop: Arc<AtomicBool>,
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
        let queue = Arc::new(ArrayQueue::new(config.buffering_size.unwrap_or(16_384).max(1)));
        let asleep = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (queue, asleep, stop) = (queue.clone(), asleep.clone(), stop.clone());
            std::thread::Builder::new()
                .name("drover-access-log".into())
                .spawn(move || write_loop(&queue, &asleep, &stop, sink, format))?
        };
        Ok(Self {
            queue,
            asleep,
            writer: writer.thread().clone(),
            stop,
        })
    }

    /// Queues an entry; false when the queue was full and the line was dropped.
    pub fn send(&self, entry: Box<Entry>) -> bool {
        if self.queue.push(entry).is_err() {
            return false;
        }
        if self.asleep.load(Ordering::Acquire) && self.asleep.swap(false, Ordering::AcqRel) {
            self.writer.unpark();
        }
        true
    }
}

fn write_loop(queue: &ArrayQueue<Box<Entry>>, asleep: &AtomicBool, stop: &AtomicBool, sink: Box<dyn Write + Send>, format: Format) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, sink);
    let mut line = String::with_capacity(512);
    let mut count: u64 = 0;
    let mut broken = false;
    loop {
        while let Some(entry) = queue.pop() {
            if broken {
                continue;
            }
            count += 1;
            line.clear();
            match format {
                Format::Common => common(&entry, count, &mut line),
                Format::Json => json(&entry, count, &mut line),
            }
            if out.write_all(line.as_bytes()).is_err() {
                // The sink is broken: keep draining so the queue never stays full; say so once.
                tracing::error!("the access log cannot be written; lines are discarded");
                broken = true;
            }
        }
        // Nothing waiting: make what was written visible, then sleep until a sender wakes us
        // (re-checking the queue after announcing the sleep, so no entry is left behind).
        let _ = out.flush();
        if stop.load(Ordering::Acquire) {
            return;
        }
        asleep.store(true, Ordering::Release);
        if queue.is_empty() && !stop.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_secs(1));
        }
        asleep.store(false, Ordering::Release);
    }
}

fn text(v: &Option<HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-")
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

/// `client - - [time] "METHOD target PROTO" status size "referer" "ua" count "router" "server" Nms`
fn common(e: &Entry, count: u64, line: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        line,
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} \"{}\" \"{}\" {}ms",
        e.client.to_str().unwrap_or("-"),
        clf_time(e.start),
        e.method,
        e.target.escape_debug(),
        version(e.version),
        e.status,
        e.size,
        text(&e.referer).escape_debug(),
        text(&e.user_agent).escape_debug(),
        count,
        e.router.as_deref().unwrap_or("-"),
        e.server.as_deref().unwrap_or("-"),
        e.duration.as_millis()
    );
}

/// One JSON line, Traefik's field names, borrowed from the entry.
#[derive(serde::Serialize)]
#[allow(non_snake_case)]
struct JsonLine<'a> {
    ClientHost: &'a str,
    StartUnixNano: u64,
    StartUTC: String,
    Duration: u64,
    RequestMethod: &'a str,
    RequestPath: &'a str,
    RequestProtocol: &'static str,
    RequestHost: &'a str,
    RequestContentSize: u64,
    DownstreamStatus: u16,
    DownstreamContentSize: u64,
    RouterName: Option<&'a str>,
    ServiceName: Option<&'a str>,
    ServiceURL: Option<&'a str>,
    EntryPointName: &'a str,
    RetryAttempts: u32,
    RequestCount: u64,
    #[serde(rename = "request_Referer")]
    referer: Option<&'a str>,
    #[serde(rename = "request_User-Agent")]
    user_agent: Option<&'a str>,
}

fn json(e: &Entry, count: u64, line: &mut String) {
    let value = JsonLine {
        ClientHost: e.client.to_str().unwrap_or(""),
        StartUnixNano: e.start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        StartUTC: clf_time(e.start),
        Duration: e.duration.as_nanos() as u64,
        RequestMethod: e.method.as_str(),
        RequestPath: &e.target,
        RequestProtocol: version(e.version),
        RequestHost: text(&e.host),
        RequestContentSize: e.request_size,
        DownstreamStatus: e.status,
        DownstreamContentSize: e.size,
        RouterName: e.router.as_deref(),
        ServiceName: e.service.as_deref(),
        ServiceURL: e.server.as_deref(),
        EntryPointName: &e.entry_point,
        RetryAttempts: e.retries,
        RequestCount: count,
        referer: e.referer.as_ref().and_then(|v| v.to_str().ok()),
        user_agent: e.user_agent.as_ref().and_then(|v| v.to_str().ok()),
    };
    if let Ok(text) = serde_json::to_string(&value) {
        line.push_str(&text);
        line.push('\n');
    }
}

/// `21/Nov/2026:23:32:07 +0000`.
fn clf_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            client: HeaderValue::from_static("10.0.0.9"),
            start: UNIX_EPOCH + Duration::from_secs(1_795_390_327),
            method: Method::GET,
            target: "/a?b=1".into(),
            version: Version::HTTP_11,
            host: Some(HeaderValue::from_static("shop.local")),
            status: 200,
            size: 42,
            request_size: 0,
            referer: None,
            user_agent: Some(HeaderValue::from_static("curl/8")),
            router: Some("web@file".into()),
            service: Some("web@file".into()),
            server: Some("http://10.0.0.2:80".into()),
            entry_point: "web".into(),
            duration: Duration::from_millis(7),
            retries: 0,
        }
    }

    #[test]
    fn common_format() {
        let mut line = String::new();
        common(&entry(), 3, &mut line);
        assert_eq!(line, "10.0.0.9 - - [22/Nov/2026:23:32:07 +0000] \"GET /a?b=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\" 3 \"web@file\" \"http://10.0.0.2:80\" 7ms\n");
    }

    #[test]
    fn json_format() {
        let mut line = String::new();
        json(&entry(), 1, &mut line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["DownstreamStatus"].as_u64(), v["RouterName"].as_str()),
            (Some(200), Some("web@file"))
        );
        assert_eq!(v["Duration"], 7_000_000);
    }
}
