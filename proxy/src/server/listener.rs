//! Binding entrypoint sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a listening TCP socket. `[::]` is bound dual-stack; where IPv6 is unavailable it falls
/// back to `0.0.0.0` on the same port.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    match bind_exact(addr) {
        Err(e) if addr.ip() == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) && e.kind() != io::ErrorKind::AddrInUse => {
            bind_exact(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()))
        }
        other => other,
    }
}

fn bind_exact(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
