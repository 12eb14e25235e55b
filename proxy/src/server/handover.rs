//! The wire of a zero-downtime upgrade: how a running drover hands its listening sockets to
//! its successor over a Unix socket, and how the successor says it is ready.
//!
//! The *listening* sockets themselves change hands, as file descriptors passed with
//! `SCM_RIGHTS` (as HAProxy and Pingora do), rather than the successor binding the same ports
//! anew with `SO_REUSEPORT`. A listening socket owns its accept queue: handed over, the queue
//! goes with it, so a connection the kernel completed while the old drover was stopping is
//! accepted by the new one. With two `SO_REUSEPORT` sockets the kernel spreads connections over
//! both queues, and the ones still queued on the old socket when it closes are reset.
//!
//! The exchange, on one connection to the running drover's upgrade socket:
//!
//! 1. the running drover sends one frame, a 4-byte big-endian length then JSON
//!    (`{"pid":…,"sockets":[{"role":"entrypoint","name":"web","address":"0.0.0.0:80"},…]}`),
//!    with one descriptor per entry, in order, in the ancillary data of its first bytes;
//! 2. the successor keeps each socket whose role, name and address it is configured with,
//!    serves, and once its first configuration is in force writes `ready\n`;
//! 3. the running drover then stops accepting, drains and exits. A successor that goes away
//!    before `ready` changes nothing: the old one never stopped accepting on those sockets.
//!
//! Only a process of the same user (or root) is answered: the socket file is created `0600`
//! and the peer's credentials (`SO_PEERCRED`) are checked as well.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// At most this many sockets change hands (the kernel passes at most 253 descriptors in one
/// message).
pub const MAX_SOCKETS: usize = 250;

/// What the successor writes once its first configuration is in force.
const READY: &[u8] = b"ready\n";

/// What a handed-over socket was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A traffic entrypoint.
    EntryPoint,
    /// The admin side.
    Api,
}

/// One offered socket, as the frame describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    /// What it was for.
    pub role: Role,
    /// The entrypoint's name (`api` for the admin side).
    pub name: String,
    /// The address it is bound to.
    pub address: SocketAddr,
}

#[derive(Serialize, Deserialize)]
struct Frame {
    pid: u32,
    sockets: Vec<Described>,
}

/// A listening socket received from the running drover.
#[derive(Debug)]
pub struct Inherited {
    /// What it was for, there.
    pub described: Described,
    /// The socket, non-blocking.
    pub listener: TcpListener,
}

/// What the running drover handed over.
#[derive(Debug)]
pub struct Received {
    /// Its process id.
    pub pid: u32,
    /// Its listening sockets.
    pub sockets: Vec<Inherited>,
}

/// Sends the frame describing `sockets`, with their descriptors, to a successor on `stream`.
pub async fn offer(stream: &mut tokio::net::UnixStream, sockets: &[(Described, BorrowedFd<'_>)]) -> io::Result<()> {
    if sockets.len() > MAX_SOCKETS {
        return Err(io::Error::other(format!(
            "more than {MAX_SOCKETS} listening sockets cannot be handed over"
        )));
    }
    let frame = serde_json::to_vec(&Frame {
        pid: std::process::id(),
        sockets: sockets.iter().map(|(d, _)| d.clone()).collect(),
    })?;
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|(_, fd)| *fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let sent = stream
        .async_io(tokio::io::Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(io::Error::other("the descriptors do not fit the ancillary buffer"));
            }
            Ok(rustix::net::sendmsg(
                &*stream,
                &[IoSlice::new(&bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        })
        .await?;
    // The descriptors went with the first bytes; the rest of the frame follows plainly.
    stream.write_all(&bytes[sent..]).await
}

/// Waits for the successor on `stream` to say it is ready: `Ok(true)` when it did, `Ok(false)`
/// when it went away first.
pub async fn ready(stream: &mut tokio::net::UnixStream) -> io::Result<bool> {
    let mut line = Vec::new();
    tokio::io::BufReader::new(stream).read_until(b'\n', &mut line).await?;
    Ok(line == READY)
}

/// Tells the running drover on `stream` that this one is ready.
pub async fn say_ready(stream: &mut tokio::net::UnixStream) -> io::Result<()> {
    stream.write_all(READY).await
}

/// Receives the running drover's listening sockets on `stream` (blocking, for at most
/// `limit`).
pub fn receive(stream: &UnixStream, limit: Duration) -> io::Result<Received> {
    stream.set_read_timeout(Some(limit))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = vec![0u8; 64 * 1024];
    let got = rustix::net::recvmsg(stream, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC).map_err(|e| {
        match io::Error::from(e) {
            e if e.kind() == io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, "no answer"),
            e => e,
        }
    })?;
    // Take the descriptors first: whatever goes wrong next, they are owned and get closed.
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other("the descriptors were cut short (too many sockets)"));
    }
    if got.bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "it closed the connection without offering its sockets",
        ));
    }
    let mut bytes = buf[..got.bytes].to_vec();
    while bytes.len() < 4 {
        read_more(stream, &mut bytes)?;
    }
    let length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if length > 1 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes is not a drover's"),
        ));
    }
    while bytes.len() < 4 + length {
        read_more(stream, &mut bytes)?;
    }
    let frame: Frame = serde_json::from_slice(&bytes[4..4 + length])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("its frame does not parse: {e}")))?;
    if frame.sockets.len() != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it described {} sockets but passed {} descriptors", frame.sockets.len(), fds.len()),
        ));
    }
    let mut sockets = Vec::with_capacity(fds.len());
    for (described, fd) in frame.sockets.into_iter().zip(fds) {
        if !rustix::net::sockopt::socket_acceptconn(&fd)? {
            return Err(io::Error::other(format!("the socket for `{}` is not listening", described.name)));
        }
        let listener = TcpListener::from(fd);
        let actual = listener.local_addr()?;
        if actual != described.address {
            return Err(io::Error::other(format!(
                "the socket for `{}` is bound to {actual}, not {} as described",
                described.name, described.address
            )));
        }
        listener.set_nonblocking(true)?;
        sockets.push(Inherited { described, listener });
    }
    Ok(Received { pid: frame.pid, sockets })
}

fn read_more(mut stream: &UnixStream, bytes: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "it closed the connection mid-frame"));
    }
    bytes.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Whether a socket described as bound to `offered` serves an entrypoint configured with
/// `wanted`: the same address; a configured port 0 takes the offered port on the same IP (the
/// clients know that port now); and `[::]` takes `0.0.0.0`, which is what drover binds for it
/// where IPv6 is off.
pub fn same_address(wanted: SocketAddr, offered: SocketAddr) -> bool {
    let ip_matches = wanted.ip() == offered.ip()
        || (wanted.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            && offered.ip() == std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    ip_matches && (wanted.port() == offered.port() || wanted.port() == 0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    #[tokio::test]
    async fn listening_sockets_change_hands_with_their_accept_queue() {
        let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // A connection the kernel completed before the handover, still in the queue.
        let mut queued = std::net::TcpStream::connect(web.local_addr().unwrap()).unwrap();
        queued.write_all(b"hello").unwrap();
        let (mut old, new) = tokio::net::UnixStream::pair().unwrap();
        let described = |role, name: &str, l: &std::net::TcpListener| Described {
            role,
            name: name.into(),
            address: l.local_addr().unwrap(),
        };
        let offered = [
            (described(Role::EntryPoint, "web", &web), web.as_fd()),
            (described(Role::Api, "api", &api), api.as_fd()),
        ];
        offer(&mut old, &offered).await.unwrap();
        let new = new.into_std().unwrap();
        new.set_nonblocking(false).unwrap();
        let received = tokio::task::spawn_blocking(move || receive(&new, Duration::from_secs(5)).map(|r| (r, new)))
            .await
            .unwrap();
        let (received, new) = received.unwrap();
        assert_eq!(received.pid, std::process::id());
        assert_eq!(received.sockets.len(), 2);
        assert_eq!(received.sockets[0].described, offered[0].0);
        assert_eq!(received.sockets[1].described.role, Role::Api);
        // The old side closes its copy: the queued connection is the new side's to accept.
        drop(web);
        let inherited = &received.sockets[0].listener;
        inherited.set_nonblocking(false).unwrap();
        let (mut accepted, _) = inherited.accept().unwrap();
        let mut greeting = [0u8; 5];
        accepted.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"hello");

        // And the successor's word comes back.
        let mut new = tokio::net::UnixStream::from_std({
            new.set_nonblocking(true).unwrap();
            new
        })
        .unwrap();
        say_ready(&mut new).await.unwrap();
        assert!(ready(&mut old).await.unwrap());
        drop(new);
        assert!(!ready(&mut old).await.unwrap(), "a peer gone is not ready");
    }

    #[test]
    fn a_described_socket_fits_its_configured_address() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(same_address(at("127.0.0.1:8080"), at("127.0.0.1:8080")));
        assert!(!same_address(at("127.0.0.1:8080"), at("127.0.0.1:8081")));
        assert!(!same_address(at("127.0.0.2:8080"), at("127.0.0.1:8080")));
        assert!(same_address(at("127.0.0.1:0"), at("127.0.0.1:41234")));
        assert!(same_address(at("[::]:80"), at("0.0.0.0:80")));
        assert!(!same_address(at("0.0.0.0:80"), at("[::]:80")));
    }
}
