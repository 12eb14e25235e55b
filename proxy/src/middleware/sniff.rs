//! The media type of a body that came without a `Content-Type`, guessed from its first bytes.
//!
//! Traefik's `compress` does this with Go's `http.DetectContentType` (the WHATWG MIME sniffing
//! algorithm, on the first 512 bytes) and then judges the guess as it would a declared type (its
//! gzip handler, gzhttp, does; its brotli and zstd handlers do not sniff). Skipping a guess that
//! is compressed already ([`Sniffed::compressed`]) is drover's own: Traefik would compress it.
//! This is the part of that table that changes what `compress` does: markup (HTML, XML), PDF
//! and PostScript, the image formats browsers show, the archive formats whose bytes are already
//! compressed, and text against `application/octet-stream`. The names are Go's, so a user's
//! `excludedContentTypes` written for Traefik match the same responses.

/// How many leading bytes are looked at (Go's `sniffLen`).
pub const SNIFF_LEN: usize = 512;

/// What the first bytes say the body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sniffed {
    /// The media type, as Go names it (`text/html; charset=utf-8`).
    pub mime: &'static str,
    /// The format is compressed already (images, archives): compressing it again only costs.
    pub compressed: bool,
}

const fn of(mime: &'static str) -> Sniffed {
    Sniffed { mime, compressed: false }
}

const fn packed(mime: &'static str) -> Sniffed {
    Sniffed { mime, compressed: true }
}

/// Markup recognised after leading whitespace, case-insensitively, when followed by a space or
/// `>` (Go's `htmlSig`).
const HTML: [&[u8]; 17] = [
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
];

/// Formats recognised by a fixed prefix.
const PREFIXES: [(&[u8], Sniffed); 12] = [
    (b"%PDF-", of("application/pdf")),
    (b"%!PS-Adobe-", of("application/postscript")),
    (b"\xFE\xFF", of("text/plain; charset=utf-16be")),
    (b"\xFF\xFE", of("text/plain; charset=utf-16le")),
    (b"\xEF\xBB\xBF", of("text/plain; charset=utf-8")),
    (b"GIF87a", packed("image/gif")),
    (b"GIF89a", packed("image/gif")),
    (b"\x89PNG\x0D\x0A\x1A\x0A", packed("image/png")),
    (b"\xFF\xD8\xFF", packed("image/jpeg")),
    (b"\x1F\x8B\x08", packed("application/x-gzip")),
    (b"PK\x03\x04", packed("application/zip")),
    (b"Rar!\x1A\x07", packed("application/x-rar-compressed")),
];

/// Guesses the media type of a body starting with `data` (only its first [`SNIFF_LEN`] bytes
/// are read).
pub fn sniff(data: &[u8]) -> Sniffed {
    let data = &data[..data.len().min(SNIFF_LEN)];
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' '))
        .unwrap_or(data.len());
    let text = &data[start..];
    for sig in HTML {
        if text.len() > sig.len() && text[..sig.len()].eq_ignore_ascii_case(sig) && matches!(text[sig.len()], b' ' | b'>') {
            return of("text/html; charset=utf-8");
        }
    }
    if text.starts_with(b"<?xml") {
        return of("text/xml; charset=utf-8");
    }
    for (prefix, sniffed) in PREFIXES {
        if data.starts_with(prefix) {
            return sniffed;
        }
    }
    if data.len() >= 14 && data.starts_with(b"RIFF") && &data[8..14] == b"WEBPVP" {
        return packed("image/webp");
    }
    // Go's text test: no byte that only binary data has.
    if data.iter().any(|&b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F)) {
        of("application/octet-stream")
    } else {
        of("text/plain; charset=utf-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_name_the_type_as_go_does() {
        let mime = |data: &[u8]| sniff(data).mime;
        assert_eq!(mime(b"\n  <!doctype html><p>hi"), "text/html; charset=utf-8");
        assert_eq!(mime(b"<html>"), "text/html; charset=utf-8");
        assert_eq!(mime(b"<p class=x>"), "text/html; charset=utf-8");
        assert_eq!(mime(b"<pre>"), "text/plain; charset=utf-8", "`<p` must end the tag name");
        assert_eq!(mime(b"<?xml version=\"1.0\"?><a/>"), "text/xml; charset=utf-8");
        assert_eq!(mime(b"%PDF-1.7"), "application/pdf");
        assert_eq!(mime(b"GIF89a\x01\x00"), "image/gif");
        assert_eq!(mime(b"\x89PNG\r\n\x1a\n\0\0"), "image/png");
        assert_eq!(mime(b"\xFF\xD8\xFF\xE0"), "image/jpeg");
        assert_eq!(mime(b"RIFF\x10\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(mime(b"PK\x03\x04\x14\0"), "application/zip");
        assert_eq!(mime(b"plain words, a line\r\n"), "text/plain; charset=utf-8");
        assert_eq!(mime(b"\x00\x01\x02binary"), "application/octet-stream");
        assert_eq!(mime(b""), "text/plain; charset=utf-8", "Go calls nothing text too");
    }

    #[test]
    fn archives_and_images_are_known_to_be_compressed_already() {
        assert!(sniff(b"\x1F\x8B\x08\0\0\0\0\0").compressed, "gzip");
        assert!(sniff(b"PK\x03\x04").compressed, "zip");
        assert!(sniff(b"\x89PNG\r\n\x1a\n").compressed, "png");
        assert!(!sniff(b"<html>").compressed);
        assert!(!sniff(b"%PDF-1.4").compressed);
        assert!(!sniff(b"\x00\x01").compressed, "octet-stream is not known to be");
    }

    #[test]
    fn only_the_first_512_bytes_are_read() {
        let mut data = vec![b'a'; SNIFF_LEN];
        data.push(0);
        assert_eq!(sniff(&data).mime, "text/plain; charset=utf-8");
    }
}
