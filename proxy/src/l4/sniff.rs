//! What a new connection opens with, learnt by peeking (nothing is consumed).
//!
//! A ClientHello usually arrives in one segment, but may be split over several TCP segments or
//! TLS records. `peek` cannot wait for *more* bytes than it has already seen (the socket stays
//! readable while unread bytes are queued), so while a ClientHello is incomplete the peek is
//! repeated after a short pause that doubles up to [`MAX_PAUSE`], until the deadline. Only
//! split hellos pay this; a whole one is parsed on the first peek.
//!
//! The ClientHello is parsed by rustls itself (an `Acceptor` fed the peeked bytes), so what
//! routing reads is exactly what the TLS stack would read.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// The first byte of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;
/// A Postgres `SSLRequest`: length 8, code 80877103.
pub const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// The most bytes looked at: a ClientHello larger than this is left to the TLS stack.
const MAX_PEEK: usize = 16 * 1024 + 5;
/// The longest pause between two peeks of an incomplete ClientHello.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// What the ClientHello says, for routing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The server name, lower-case.
    pub sni: Option<String>,
    /// The offered ALPN protocols, in order.
    pub alpn: Vec<Vec<u8>>,
}

/// What a connection opens with.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello (`None`: it could not be read here; the TLS stack will say why).
    Tls(Option<Hello>),
    /// A Postgres `SSLRequest`: the client asks to start TLS.
    PostgresTls,
    /// Anything else (HTTP, a plain protocol).
    Other,
    /// The client closed without sending anything.
    Closed,
    /// Nothing (or not enough) arrived before the deadline.
    Silent,
}

/// Peeks at `stream` until its opening is known or `deadline` passes.
pub async fn opening(stream: &TcpStream, deadline: Instant) -> io::Result<Opening> {
    let mut buf = vec![0u8; MAX_PEEK];
    let mut pause = Duration::from_millis(1);
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Ok(Opening::Silent),
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(Opening::Closed);
        }
        match classify(&buf[..n]) {
            Some(opening) => return Ok(opening),
            None if n == MAX_PEEK => return Ok(Opening::Tls(None)),
            None => {}
        }
        if n == seen {
            // Nothing new since the last look: wait a little (see the module notes).
            if Instant::now() + pause >= deadline {
                return Ok(Opening::Silent);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        seen = n;
    }
}

/// What `bytes` open with, or `None` when more are needed to tell.
pub fn classify(bytes: &[u8]) -> Option<Opening> {
    if bytes[0] == HANDSHAKE {
        return client_hello(bytes).map(Opening::Tls);
    }
    let pg = bytes.len().min(PG_SSL_REQUEST.len());
    if bytes[..pg] == PG_SSL_REQUEST[..pg] {
        return (pg == PG_SSL_REQUEST.len()).then_some(Opening::PostgresTls);
    }
    Some(Opening::Other)
}

/// Parses a ClientHello from the start of `bytes`: `None` when incomplete, `Some(None)` when it
/// is not a ClientHello rustls would accept.
pub fn client_hello(bytes: &[u8]) -> Option<Option<Hello>> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Some(None),
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                return Some(Some(Hello {
                    sni: hello.server_name().map(|s| s.trim_end_matches('.').to_ascii_lowercase()),
                    alpn: hello
                        .alpn()
                        .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                        .unwrap_or_default(),
                }));
            }
            Ok(None) => {}
            Err(_) => return Some(None),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello, written by rustls's client.
    fn hello_bytes(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider::shared())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn a_client_hello_is_read_whole_and_only_whole() {
        let bytes = hello_bytes("DB.Example", &[b"postgresql", b"h2"]);
        let want = Hello {
            sni: Some("db.example".into()),
            alpn: vec![b"postgresql".to_vec(), b"h2".to_vec()],
        };
        assert_eq!(classify(&bytes), Some(Opening::Tls(Some(want))));
        for cut in [1, 5, 6, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(classify(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_hello_split_over_two_records_is_read() {
        let bytes = hello_bytes("split.test", &[]);
        // Re-frame the handshake message into two TLS records.
        let body = &bytes[5..];
        let (a, b) = body.split_at(40);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(classify(&split[..50]), None);
        match classify(&split) {
            Some(Opening::Tls(Some(h))) => assert_eq!(h.sni.as_deref(), Some("split.test")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_openings() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Opening::Other));
        assert_eq!(classify(&PG_SSL_REQUEST), Some(Opening::PostgresTls));
        assert_eq!(classify(&PG_SSL_REQUEST[..4]), None);
        // A Postgres startup message (protocol 3.0) is not a request for TLS.
        assert_eq!(classify(&[0, 0, 0, 41, 0, 3, 0, 0]), Some(Opening::Other));
        // A complete handshake record that is not a ClientHello.
        assert_eq!(
            classify(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
            Some(Opening::Tls(None))
        );
    }
}
