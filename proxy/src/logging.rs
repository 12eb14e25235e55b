//! drover's own log (the access log is [`crate::access_log`]): where it goes, in which format, and
//! colour only where colour is read.
//!
//! Traefik's `[log]` keys: `level`, `format` (`common`, the default, or `json`), `filePath` (append
//! to a file instead of standard error) and `noColor`. A log that goes to a file, a pipe or
//! journald must open cleanly in `less` and be parsed by log shippers, so:
//! * colour codes are written only when the log goes to standard error and that is a terminal
//!   (and `noColor` is not set);
//! * `json` writes one object per line (`time`, `level`, `message`, then the event's own fields
//!   with their types: `"generation":3`, `"provider":"file"`), so provider and reload events
//!   can be filtered on their fields rather than grepped.
//!
//! The JSON writer is a small [`FormatEvent`] over `serde_json` rather than tracing-subscriber's
//! `json` feature, which would bring `tracing-serde` in for the same few lines.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::Log;

/// `log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (Traefik's `common`).
    Common,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Reads a `log.format` value (any letter case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "common" | "" => Ok(Self::Common),
            "json" => Ok(Self::Json),
            _ => Err(format!("log.format `{text}` must be `common` or `json`")),
        }
    }
}

/// Installs the process-wide logger `log` describes; `RUST_LOG` overrides its level. Fails when
/// `filePath` cannot be opened for appending.
pub fn init(log: &Log) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(log.level.to_ascii_lowercase()));
    let format = Format::parse(&log.format)?;
    let (writer, ansi) = match &log.file_path {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("log.filePath {}: cannot open for appending: {e}", path.display()))?;
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal() && !log.no_color,
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        Format::Common => builder.try_init(),
        Format::Json => builder.event_format(JsonLines).try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Events as JSON lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        writeln!(writer, "{}", json_line(event))
    }
}

/// The JSON object for `event` (without the newline).
pub fn json_line(event: &Event<'_>) -> String {
    let mut object = Map::new();
    object.insert("time".into(), Value::String(now_rfc3339()));
    object.insert(
        "level".into(),
        Value::String(event.metadata().level().as_str().to_ascii_lowercase()),
    );
    let mut fields = Fields(Map::new());
    event.record(&mut fields);
    let mut fields = fields.0;
    object.insert("message".into(), fields.remove("message").unwrap_or(Value::String(String::new())));
    object.extend(fields);
    Value::Object(object).to_string()
}

/// Collects an event's fields with their types.
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// `2026-12-06T20:01:02.123Z`.
fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let c = crate::civil::civil(now.as_secs());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_keep_field_types() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(generation = 3u64, routers = 2, provider = %"file", ok = true, "configuration in force");
            tracing::error!(provider = "docker", "a \"quoted\"\nmessage");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("utf-8");
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "configuration in force");
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["generation"], 3);
        assert_eq!(lines[0]["routers"], 2);
        assert_eq!(lines[0]["provider"], "file");
        assert_eq!(lines[0]["ok"], true);
        assert_eq!(lines[1]["message"], "a \"quoted\"\nmessage");
        assert!(
            lines[1]["time"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z')),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn formats_are_traefiks_names() {
        assert_eq!(Format::parse("JSON"), Ok(Format::Json));
        assert_eq!(Format::parse("common"), Ok(Format::Common));
        assert!(Format::parse("logfmt").is_err_and(|e| e.contains("`common` or `json`")));
    }
}
