//! Talking to one DNS server: a query over UDP (again over TCP when the answer is truncated),
//! an update over TCP (no truncation, and one connection carries the request and its answer).
//!
//! Every exchange is bounded by [`EXCHANGE_TIMEOUT`]; a UDP query is sent again every
//! [`RETRANSMIT`] within it, since a lost datagram is otherwise only noticed at the timeout.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one exchange with a server may take, connecting and retransmitting included.
pub(super) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a UDP query waits for its answer before it is sent again.
const RETRANSMIT: Duration = Duration::from_secs(1);
/// The EDNS payload size advertised (the DNS flag day 2020 value): large TXT sets still fit.
const EDNS_PAYLOAD: u16 = 1232;

/// A DNS server as configured: a host name or address, and a port (53 unless given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Server {
    host: String,
    port: u16,
}

impl Server {
    /// Reads `"host"`, `"host:port"`, `"192.0.2.1"`, `"2001:db8::1"` or `"[2001:db8::1]:53"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid = |why: &str| format!("`{text}` is not a DNS server address ({why}); write \"host\" or \"host:port\"");
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Self::with_port(addr.ip().to_string(), addr.port()).ok_or_else(|| invalid("port 0"));
        }
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self {
                host: ip.to_string(),
                port: 53,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>().map_err(|_| invalid("the port is not a number up to 65535"))?,
            ),
            None => (text, 53),
        };
        let valid_host = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid_host {
            return Err(invalid("not a host name or IP address"));
        }
        Self::with_port(host.to_string(), port).ok_or_else(|| invalid("port 0"))
    }

    fn with_port(host: String, port: u16) -> Option<Self> {
        (port != 0).then_some(Self { host, port })
    }

    /// The server's addresses (its name resolved by the system, or its address as written).
    async fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{} has no address", self.host));
        }
        Ok(addrs)
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Asks `server` for the `rtype` records at `name`, and returns its answer to that question.
pub(super) async fn query(server: &Server, name: &Name, rtype: RecordType) -> Result<Message, String> {
    let mut message = Message::query();
    // Harmless for an authoritative server, and lets a recursive one listed in `resolvers` answer.
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.set_edns(edns);
    let request = message.to_vec().map_err(|e| format!("cannot encode the query: {e}"))?;
    let (request, id) = (&request, message.metadata.id);
    let answer = on_each_addr(server, |addr| async move {
        let answer = parse_answer(&udp(addr, request).await?, id)?;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        parse_answer(&tcp(addr, request).await?, id)
    })
    .await?;
    match answer.queries.first() {
        Some(q) if q.name().eq_ignore_root_case(name) && q.query_type() == rtype => Ok(answer),
        _ => Err(format!("the answer is for another question than {} {rtype}", name.to_ascii())),
    }
}

/// Sends the encoded update `request` (id `id`) to `server` over TCP; returns the answer, as
/// bytes (which its TSIG covers) and parsed.
pub(super) async fn update(server: &Server, request: &[u8], id: u16) -> Result<(Vec<u8>, Message), String> {
    on_each_addr(server, |addr| async move {
        let bytes = tcp(addr, request).await?;
        let answer = parse_answer(&bytes, id)?;
        Ok((bytes, answer))
    })
    .await
}

/// Runs `exchange` on the server's addresses in turn until one succeeds; the last failure
/// otherwise.
async fn on_each_addr<T, F, Fut>(server: &Server, exchange: F) -> Result<T, String>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for addr in server.addrs().await? {
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(addr)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {}s", EXCHANGE_TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

/// `bytes` as a DNS response to the message with `id`.
fn parse_answer(bytes: &[u8], id: u16) -> Result<Message, String> {
    let answer = Message::from_vec(bytes).map_err(|e| format!("malformed answer ({e})"))?;
    if answer.id != id {
        return Err(format!("the answer's id {} is not the request's {id}", answer.id));
    }
    Ok(answer)
}

/// One UDP exchange with `addr`, sending again every [`RETRANSMIT`] until an answer with the
/// request's id arrives (the caller bounds the whole).
async fn udp(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("cannot reach {addr} over UDP: {e}"))?;
    let mut buf = vec![0u8; 65535];
    loop {
        socket.send(request).await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
        let wait = async {
            loop {
                let n = socket.recv(&mut buf).await.map_err(|e| format!("{addr} over UDP: {e}"))?;
                // A late answer to an earlier query (another id) is skipped, not an error.
                if n >= 2 && buf[..2] == request[..2] {
                    return Ok::<_, String>(n);
                }
            }
        };
        if let Ok(received) = tokio::time::timeout(RETRANSMIT, wait).await {
            let n = received?;
            return Ok(buf[..n].to_vec());
        }
    }
}

/// One TCP exchange with `addr`: the request and its answer, each with its two-byte length.
async fn tcp(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr} over TCP: {e}"))?;
    let len = u16::try_from(request.len()).map_err(|_| "the request is longer than a DNS message may be".to_string())?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    let io = |e: std::io::Error| format!("{addr} over TCP: {e}");
    stream.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_forms() {
        for (text, shown) in [
            ("127.0.0.1", "127.0.0.1:53"),
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("ns1.example.com", "ns1.example.com:53"),
            ("ns1.example.com:5300", "ns1.example.com:5300"),
            ("2001:db8::1", "[2001:db8::1]:53"),
            ("[2001:db8::1]", "[2001:db8::1]:53"),
            ("[2001:db8::1]:5300", "[2001:db8::1]:5300"),
        ] {
            assert_eq!(Server::parse(text).map(|s| s.to_string()), Ok(shown.to_string()), "{text}");
        }
        for bad in ["", "ns:", "ns:http", "ns:0", "a b", "127.0.0.1:70000", "[::1]:x"] {
            let err = Server::parse(bad).unwrap_err();
            assert!(err.starts_with(&format!("`{bad}` is not a DNS server address")), "{bad}: {err}");
        }
    }
}
