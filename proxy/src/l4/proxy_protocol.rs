//! The PROXY protocol (HAProxy's, versions 1 and 2): the client's address carried in front of
//! its bytes, read on entrypoints that accept it from trusted peers and written to TCP servers
//! whose transport asks for it. Parsing and building are the `ppp` crate's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 signature.
const V1_SIGNATURE: &[u8; 6] = b"PROXY ";
/// The longest header read: v2's fixed part and the addresses, TLVs, up to this.
const MAX_HEADER: usize = 16 + 2048;

/// Whether `bytes` (at least what has arrived) can be the start of a PROXY header.
pub fn looks_like_header(bytes: &[u8]) -> bool {
    let v1 = bytes.len().min(V1_SIGNATURE.len());
    let v2 = bytes.len().min(V2_SIGNATURE.len());
    !bytes.is_empty() && (bytes[..v1] == V1_SIGNATURE[..v1] || bytes[..v2] == V2_SIGNATURE[..v2])
}

/// The same address family for both ends (a v4 client on a dual-stack socket is v6-mapped).
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (s, d) = (canonical(source), canonical(destination));
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (v6(s), v6(d))
    }
}

/// The header telling a server that `client` connected to `local`.
pub fn header(version: u8, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(client, local);
    if version == 1 {
        return v1::Addresses::from((source, destination)).to_string().into_bytes();
    }
    v2::Builder::with_addresses(v2::Version::Two | v2::Command::Proxy, v2::Protocol::Stream, (source, destination))
        .build()
        .expect("a header of two socket addresses fits in memory")
}

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The client's address (`None`: `LOCAL` or `UNKNOWN`, the connection's own peer stands).
    pub client: Option<SocketAddr>,
    /// Bytes the header took.
    pub len: usize,
}

/// Parses a complete header at the start of `bytes`: `Ok(None)` when more bytes are needed.
pub fn parse(bytes: &[u8]) -> Result<Option<Received>, String> {
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => Ok(Some(Received {
            client: match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                v1::Addresses::Unknown => None,
            },
            len: h.header.len(),
        })),
        HeaderResult::V2(Ok(h)) => Ok(Some(Received {
            client: match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                _ => None,
            },
            len: h.len(),
        })),
        HeaderResult::V1(Err(e)) => Err(format!("invalid PROXY protocol v1 header: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("invalid PROXY protocol v2 header: {e}")),
    }
}

/// Reads a PROXY header off `stream` (consuming exactly its bytes) before `deadline`.
pub async fn read(stream: &mut TcpStream, deadline: Instant) -> io::Result<Received> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut seen = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no PROXY protocol header before the deadline",
                ))
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a PROXY protocol header",
            ));
        }
        if !looks_like_header(&buf[..n]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the connection does not start with a PROXY protocol header",
            ));
        }
        match parse(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            Some(received) => {
                stream.read_exact(&mut buf[..received.len]).await?;
                return Ok(received);
            }
            None if n == MAX_HEADER => return Err(io::Error::new(io::ErrorKind::InvalidData, "PROXY protocol header too long")),
            None => {}
        }
        // Incomplete: wait for more (see `super::sniff` on why peeking polls).
        if n == seen {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        seen = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_headers_parse_back() {
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let local: SocketAddr = "[::ffff:10.0.0.1]:443".parse().unwrap();
        let v1 = header(1, client, local);
        assert_eq!(v1, b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 443\r\n");
        let v2 = header(2, client, local);
        assert_eq!(&v2[..12], V2_SIGNATURE);
        for bytes in [v1, v2] {
            let mut with_data = bytes.clone();
            with_data.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let got = parse(&with_data).unwrap().unwrap();
            assert_eq!(
                got,
                Received {
                    client: Some(client),
                    len: bytes.len()
                }
            );
            assert_eq!(parse(&bytes[..bytes.len() - 1]).unwrap(), None);
        }
        let mixed = header(1, "[2001:db8::1]:5".parse().unwrap(), "10.0.0.1:80".parse().unwrap());
        assert_eq!(mixed, b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 5 80\r\n");
    }

    #[test]
    fn garbage_is_an_error_and_prefixes_are_recognised() {
        assert!(parse(b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n").is_err());
        assert!(looks_like_header(b"PRO"));
        assert!(looks_like_header(b"\r\n\r\n"));
        assert!(!looks_like_header(b"GET / HTTP/1.1"));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Some(Received { client: None, len: 15 }));
    }
}
