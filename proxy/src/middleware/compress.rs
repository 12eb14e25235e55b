//! `compress`: <https://doc.traefik.io/traefik/middlewares/http/compress/>.
//!
//! The encoding is chosen from the request's `Accept-Encoding` (q-values honoured, ties broken
//! by the order of `encodings`), the decision to compress from the response head alone, so the
//! body is never held back: it streams through the encoder chunk by chunk. The one exception is
//! a response without a `Content-Type`: as Traefik does, its type is guessed from its first
//! bytes ([`super::sniff`], Go's `http.DetectContentType`), set as its `Content-Type`, and judged
//! like a declared one; beyond Traefik, a sniffed format whose bytes are compressed already
//! (gzip, zip, images) is not compressed again. Only the first data frame is waited for and
//! held, and only to look at it.
//!
//! A *declared* type is compressed whatever it is unless `excludedContentTypes` names it (or
//! `includedContentTypes` does not), `image/png` and `application/zip` included: Traefik v3
//! does the same (its gzip handler replaces gzhttp's `DefaultContentTypeFilter` with
//! `ExceptContentTypes`, and its brotli and zstd handlers only read the lists), and a
//! configuration must mean under drover what it meant under Traefik.
//!
//! # Why the encoder is flushed whenever the server pauses
//!
//! An encoder keeps input until it has enough to compress well. A server that sends a little
//! and waits (server-sent events, long polling, a slow report) would then see its bytes held in
//! drover indefinitely. So whenever the server's body has nothing more to give right now, what
//! the encoder holds is flushed to the client (gzip's sync flush, brotli's and zstd's flush): a
//! few bytes of overhead per pause, and a streamed response stays a stream. While the server
//! keeps sending, output goes out in chunks of [`CHUNK`] bytes.
//!
//! # When a response is left as it is
//!
//! As in Traefik: the request did not accept any configured encoding, the response already has a
//! `Content-Encoding`, its media type is excluded (or not included), or its `Content-Length` is
//! below `minResponseBodyBytes` (a body of unknown length is compressed whatever its size, so a
//! stream is never held back to measure it). `application/grpc` is never compressed. Beyond
//! Traefik, and for the same reasons nginx gives: nothing on a `HEAD`, a body-less status, a
//! `Range` request or a `206` (compressing a range breaks it, and ranges make BREACH-style
//! length oracles cheaper), or a response marked `Cache-Control: no-transform`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body::{Body, Frame};
use tokio::io::AsyncWrite;

use super::{sniff, BuildError, Req};
use crate::error::Error;
use crate::forward::ProxyBody;

/// Output is handed to the client once the encoder has this much, while input keeps coming.
const CHUNK: usize = 16 * 1024;

/// A content coding drover can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            n if n.eq_ignore_ascii_case("gzip") => Some(Self::Gzip),
            n if n.eq_ignore_ascii_case("br") => Some(Self::Brotli),
            n if n.eq_ignore_ascii_case("zstd") => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The coding's name in `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }
}

/// A compiled `compress` middleware.
#[derive(Debug)]
pub struct Compress {
    /// Lower-case media types (`text/html`) not compressed.
    excluded: Vec<String>,
    /// If not empty, only these are compressed.
    included: Vec<String>,
    min_bytes: u64,
    default_encoding: Option<Encoding>,
    /// Offered encodings, most preferred first.
    encodings: Vec<Encoding>,
}

/// What the request side noted for the response side.
#[derive(Debug, Default)]
pub struct Asked {
    /// The request's `Accept-Encoding`, if it had one.
    accept: Option<HeaderValue>,
    /// `HEAD` or a `Range` request: never compressed.
    never: bool,
}

impl Asked {
    /// Notes what the response side needs from `req`.
    pub fn of(req: &Req<'_>) -> Self {
        let headers = &req.parts.headers;
        Self {
            accept: headers.get(header::ACCEPT_ENCODING).cloned(),
            never: req.parts.method == Method::HEAD || headers.contains_key(header::RANGE),
        }
    }
}

fn media_type(text: &str) -> String {
    let essence = text.split(';').next().unwrap_or("");
    essence
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

impl Compress {
    /// Compiles a validated `compress`.
    pub fn build(m: &drover_providers::model::middleware::Compress) -> Result<Self, BuildError> {
        let encoding = |name: &str, key: &str| {
            Encoding::parse(name).ok_or_else(|| BuildError(format!("compress.{key}: `{name}` is not one of gzip, br, zstd")))
        };
        let mut encodings = Vec::new();
        for name in &m.encodings {
            let e = encoding(name, "encodings")?;
            if !encodings.contains(&e) {
                encodings.push(e);
            }
        }
        if encodings.is_empty() {
            encodings = vec![Encoding::Gzip, Encoding::Brotli, Encoding::Zstd];
        }
        Ok(Self {
            excluded: m.excluded_content_types.iter().map(|t| media_type(t)).collect(),
            included: m.included_content_types.iter().map(|t| media_type(t)).collect(),
            min_bytes: m.min_response_body_bytes.unwrap_or(1024),
            default_encoding: m.default_encoding.as_deref().map(|d| encoding(d, "defaultEncoding")).transpose()?,
            encodings,
        })
    }

    /// The encoding for a request that sent `accept` (`None`: no `Accept-Encoding` at all).
    pub fn negotiate(&self, accept: Option<&HeaderValue>) -> Option<Encoding> {
        let Some(accept) = accept else {
            return self.default_encoding;
        };
        let text = accept.to_str().ok()?;
        // The q-value of each offered encoding, and of `*`, in thousandths.
        let mut q: [Option<u16>; 3] = [None; 3];
        let mut any = None;
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .map(parse_q)
                .next()
                .unwrap_or(Some(1000));
            let Some(weight) = weight else { continue };
            if name == "*" {
                any = Some(weight);
            } else if let Some(e) = Encoding::parse(name) {
                q[e as usize] = Some(weight);
            }
        }
        let mut best: Option<(Encoding, u16, bool)> = None;
        for &e in &self.encodings {
            let (weight, wild) = match (q[e as usize], any) {
                (Some(w), _) => (w, false),
                (None, Some(w)) => (w, true),
                (None, None) => continue,
            };
            if weight > 0 && best.is_none_or(|(_, w, _)| weight > w) {
                best = Some((e, weight, wild));
            }
        }
        match best {
            // Only `*` made it acceptable: Traefik's `defaultEncoding` applies, if offered.
            Some((e, _, true)) => match self.default_encoding {
                Some(d) if q[d as usize].is_none() && self.encodings.contains(&d) => Some(d),
                _ => Some(e),
            },
            best => best.map(|(e, _, _)| e),
        }
    }

    /// Whether the media type `kind` (lower-case, no parameters) may be compressed.
    fn kind_allowed(&self, kind: &str) -> bool {
        if kind.starts_with("application/grpc") {
            return false;
        }
        if !self.included.is_empty() {
            return self.included.iter().any(|t| t == kind);
        }
        !self.excluded.iter().any(|t| t == kind)
    }

    /// Whether a response with these headers may be compressed for its type; `None` when it
    /// has no `Content-Type` (its first bytes decide, see [`sniff`]).
    fn type_allowed(&self, headers: &HeaderMap) -> Option<bool> {
        let value = headers.get(header::CONTENT_TYPE)?;
        // A type that is not text is not one the lists can name: treated as an unnamed type.
        let kind = value.to_str().map(media_type).unwrap_or_default();
        Some(self.kind_allowed(&kind))
    }

    /// Whether this response could be compressed at all (and so varies with `Accept-Encoding`),
    /// its type aside.
    fn eligible(&self, asked: &Asked, status: StatusCode, headers: &HeaderMap) -> bool {
        if asked.never
            || status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
            )
            || headers.contains_key(header::CONTENT_RANGE)
        {
            return false;
        }
        if headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return false;
        }
        !headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform")))
    }

    /// The response side: compresses `response` if it should, editing its head. A response
    /// without a `Content-Type` that would otherwise be compressed waits for its first data
    /// frame, whose first bytes name its type (see [`sniff`]).
    pub async fn response(&self, asked: &Asked, mut response: http::Response<ProxyBody>) -> http::Response<ProxyBody> {
        let (status, headers) = (response.status(), response.headers());
        if !self.eligible(asked, status, headers) || self.type_allowed(headers) == Some(false) {
            return response;
        }
        // A body whose size is known without a header (drover's own short answers) counts as
        // its length: only a body of unknown length is compressed whatever its size.
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or_else(|| http_body::Body::size_hint(response.body()).exact());
        let chosen = self.negotiate(asked.accept.as_ref());
        add_vary(response.headers_mut());
        let Some(encoding) = chosen else { return response };
        if length.is_some_and(|l| l < self.min_bytes || l == 0) {
            return response;
        }
        let mut first = None;
        if !response.headers().contains_key(header::CONTENT_TYPE) {
            let (data, rest) = first_data(std::mem::replace(response.body_mut(), ProxyBody::empty())).await;
            *response.body_mut() = rest;
            let Some(data) = data else {
                // No data at all (or a failure, which the client gets as it is): nothing to
                // compress, nothing to name.
                return response;
            };
            let sniffed = sniff::sniff(&data);
            // As Traefik (gzhttp) does: the guess becomes the response's type.
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(sniffed.mime));
            if sniffed.compressed || !self.kind_allowed(&media_type(sniffed.mime)) {
                let rest = std::mem::replace(response.body_mut(), ProxyBody::empty());
                *response.body_mut() = Primed::body(Ok(Frame::data(data)), rest);
                return response;
            }
            first = Some(data);
        }
        let headers = response.headers_mut();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.name()));
        // The compressed bytes are another representation: a strong validator no longer holds.
        if let Some(tag) = headers.get(header::ETAG).filter(|t| t.as_bytes().starts_with(b"\"")) {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(tag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(header::ETAG, weak);
            }
        }
        let body = std::mem::replace(response.body_mut(), ProxyBody::empty());
        *response.body_mut() = ProxyBody::transformed(Box::pin(Compressed::new(body, first, encoding)));
        response
    }

    /// What this middleware would do for a request with these headers (the explain API).
    pub fn explain(&self, req: &Req<'_>) -> String {
        let asked = Asked::of(req);
        if asked.never {
            return "never compresses this request (HEAD or Range)".into();
        }
        match self.negotiate(asked.accept.as_ref()) {
            Some(e) => format!("{} if the response qualifies", e.name()),
            None => "no offered encoding is accepted: responses go as they are".into(),
        }
    }
}

/// A q-value (`0.8`) in thousandths; `None` if it is not one.
fn parse_q(text: &str) -> Option<u16> {
    let q: f32 = text.trim().parse().ok()?;
    (0.0..=1.0).contains(&q).then(|| (q * 1000.0).round() as u16)
}

fn add_vary(headers: &mut HeaderMap) {
    let varies = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// One of the encoders, writing into memory.
enum Writer {
    Gzip(GzipEncoder<Vec<u8>>),
    /// Boxed: brotli's state is some 5 KB, the others' a few hundred bytes.
    Brotli(Box<BrotliEncoder<Vec<u8>>>),
    Zstd(ZstdEncoder<Vec<u8>>),
}

macro_rules! each {
    ($writer:expr, $w:ident => $body:expr) => {
        match $writer {
            Writer::Gzip($w) => $body,
            Writer::Brotli($w) => $body,
            Writer::Zstd($w) => $body,
        }
    };
}

/// Polls an encoder over a `Vec`, which never waits: anything but `Ready` is a broken invariant.
fn ready<T>(polled: Poll<io::Result<T>>) -> io::Result<T> {
    match polled {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::Error::other("an encoder writing to memory waited")),
    }
}

impl Writer {
    fn new(encoding: Encoding) -> Self {
        let out = Vec::with_capacity(CHUNK);
        match encoding {
            Encoding::Gzip => Self::Gzip(GzipEncoder::new(out)),
            // Quality 4: brotli's default (11) is meant for static files, far too slow inline.
            Encoding::Brotli => Self::Brotli(Box::new(BrotliEncoder::with_quality(out, Level::Precise(4)))),
            Encoding::Zstd => Self::Zstd(ZstdEncoder::new(out)),
        }
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        while !data.is_empty() {
            let n = each!(self, w => ready(Pin::new(w).poll_write(&mut cx, data)))?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        each!(self, w => ready(Pin::new(w).poll_flush(&mut cx)))
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        each!(self, w => ready(Pin::new(w).poll_shutdown(&mut cx)))
    }

    fn buffered(&mut self) -> usize {
        each!(self, w => w.get_ref().len())
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(each!(self, w => std::mem::replace(w.get_mut(), Vec::with_capacity(CHUNK))))
    }
}

/// Takes the first data of `body`: the data (`None` if the body ended, failed or sent trailers
/// first) and the body to send on, which still yields anything taken but the data.
async fn first_data(mut body: ProxyBody) -> (Option<Bytes>, ProxyBody) {
    use http_body_util::BodyExt as _;
    loop {
        let frame = match body.frame().await {
            None => return (None, body),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return (None, Primed::body(Err(e), body)),
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => continue,
            Ok(data) => return (Some(data), body),
            Err(frame) => return (None, Primed::body(Ok(frame), body)),
        }
    }
}

/// A body whose first frame was taken out to look at, put back in front.
struct Primed {
    first: Option<Result<Frame<Bytes>, Error>>,
    rest: ProxyBody,
}

impl Primed {
    fn body(first: Result<Frame<Bytes>, Error>, rest: ProxyBody) -> ProxyBody {
        ProxyBody::transformed(Box::pin(Self { first: Some(first), rest }))
    }
}

impl Body for Primed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let first = match &self.first {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        let rest = self.rest.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// A response body compressed as it streams.
struct Compressed {
    inner: ProxyBody,
    writer: Writer,
    /// Data taken from `inner` before it was wrapped (to sniff its type), not encoded yet.
    first: Option<Bytes>,
    /// Input went in since the last flush.
    unflushed: bool,
    /// The inner body ended (its trailers, if any, are kept here until the data is out).
    ended: bool,
    trailers: Option<HeaderMap>,
}

impl Compressed {
    /// Compresses `first` (data already taken from `inner`), then the rest of `inner`.
    fn new(inner: ProxyBody, first: Option<Bytes>, encoding: Encoding) -> Self {
        Self {
            inner,
            writer: Writer::new(encoding),
            first,
            unflushed: false,
            ended: false,
            trailers: None,
        }
    }

    fn out(&mut self) -> Option<Result<Frame<Bytes>, Error>> {
        let bytes = self.writer.take();
        (!bytes.is_empty()).then(|| Ok(Frame::data(bytes)))
    }

    fn end(&mut self) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.ended = true;
        if let Err(e) = self.writer.finish() {
            return Poll::Ready(Some(Err(Error::response_body(e))));
        }
        match self.out() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }
}

impl Body for Compressed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if let Some(first) = this.first.take() {
            if let Err(e) = this.writer.write(&first) {
                return Poll::Ready(Some(Err(Error::response_body(e))));
            }
            this.unflushed = true;
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(e) = this.writer.write(&data) {
                            return Poll::Ready(Some(Err(Error::response_body(e))));
                        }
                        this.unflushed = true;
                        if this.writer.buffered() >= CHUNK {
                            if let Some(frame) = this.out() {
                                return Poll::Ready(Some(frame));
                            }
                        }
                    }
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        return this.end();
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return this.end(),
                Poll::Pending => {
                    if std::mem::take(&mut this.unflushed) {
                        if let Err(e) = this.writer.flush() {
                            return Poll::Ready(Some(Err(Error::response_body(e))));
                        }
                        if let Some(frame) = this.out() {
                            return Poll::Ready(Some(frame));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_providers::model::middleware::Compress as Config;

    fn compress(config: Config) -> Compress {
        Compress::build(&config).expect("valid")
    }

    fn pick(c: &Compress, accept: Option<&'static str>) -> Option<&'static str> {
        c.negotiate(accept.map(HeaderValue::from_static).as_ref()).map(Encoding::name)
    }

    #[test]
    fn accept_encoding_is_negotiated_with_q_values_and_the_configured_order() {
        let c = compress(Config::default());
        assert_eq!(
            pick(&c, Some("gzip, deflate, br, zstd")),
            Some("gzip"),
            "ties go to the first offered"
        );
        assert_eq!(pick(&c, Some("gzip;q=0.5, br")), Some("br"));
        assert_eq!(pick(&c, Some("br;q=0.2, zstd;q=0.9, gzip;q=0")), Some("zstd"));
        assert_eq!(pick(&c, Some("gzip;q=0")), None, "q=0 refuses");
        assert_eq!(pick(&c, Some("deflate, identity")), None);
        assert_eq!(pick(&c, Some("")), None, "an empty header turns compression off");
        assert_eq!(pick(&c, None), None, "no header and no defaultEncoding: nothing");
        assert_eq!(pick(&c, Some("*")), Some("gzip"));
        assert_eq!(pick(&c, Some("*, gzip;q=0")), Some("br"));
        let c = compress(Config {
            encodings: vec!["zstd".into(), "br".into()],
            default_encoding: Some("br".into()),
            ..Config::default()
        });
        assert_eq!(pick(&c, Some("gzip, br, zstd")), Some("zstd"));
        assert_eq!(pick(&c, Some("gzip")), None, "gzip is not offered");
        assert_eq!(pick(&c, None), Some("br"), "defaultEncoding without the header");
        assert_eq!(pick(&c, Some("*")), Some("br"), "defaultEncoding for a wildcard");
    }

    #[test]
    fn content_types_are_compared_without_case_parameters_or_spaces() {
        let c = compress(Config {
            excluded_content_types: vec![" Text/Event-Stream ".into()],
            ..Config::default()
        });
        let with = |t: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            h
        };
        assert_eq!(c.type_allowed(&with("text/event-stream; charset=utf-8")), Some(false));
        assert_eq!(c.type_allowed(&with("text/html")), Some(true));
        assert_eq!(
            c.type_allowed(&with("application/grpc+proto")),
            Some(false),
            "gRPC is never compressed"
        );
        let c = compress(Config {
            included_content_types: vec!["application/json".into()],
            ..Config::default()
        });
        assert_eq!(c.type_allowed(&with("application/json;charset=utf-8")), Some(true));
        assert_eq!(c.type_allowed(&with("text/html")), Some(false));
        assert_eq!(c.type_allowed(&HeaderMap::new()), None, "no type: the first bytes decide");
        assert!(c.kind_allowed("application/json") && !c.kind_allowed("text/plain"));
    }

    /// Traefik v3 compresses a declared type whatever it is, unless a list names it: its gzip
    /// handler passes `gzhttp.ExceptContentTypes(["application/grpc", …excluded])`, which
    /// replaces gzhttp's `DefaultContentTypeFilter` (the one that skips video/, audio/, zip…),
    /// and its brotli and zstd handlers only read the lists. drover does the same, so a
    /// configuration behaves as it did under Traefik; users list such types in
    /// `excludedContentTypes`.
    #[test]
    fn declared_compressed_types_are_compressed_unless_listed_as_in_traefik() {
        let with = |t: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            h
        };
        let c = compress(Config::default());
        for t in [
            "application/gzip",
            "application/zip",
            "image/png",
            "video/mp4",
            "audio/mpeg",
            "font/woff2",
        ] {
            assert_eq!(c.type_allowed(&with(t)), Some(true), "{t}");
        }
        let c = compress(Config {
            excluded_content_types: vec!["image/png".into(), "video/mp4".into()],
            ..Config::default()
        });
        assert_eq!(c.type_allowed(&with("image/png")), Some(false));
        assert_eq!(c.type_allowed(&with("video/mp4")), Some(false));
        assert_eq!(c.type_allowed(&with("application/zip")), Some(true), "only what is listed");
    }
}
