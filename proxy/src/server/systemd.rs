//! Telling systemd what drover is doing, for units of `Type=notify`: `READY=1` with `MAINPID=`
//! once the first configuration is in force, `STOPPING=1` when it starts draining.
//!
//! `MAINPID=` is what lets an upgrade work under systemd. The successor is started by
//! `ExecReload=` (examples/upgrade.md), not by systemd as the service's main process; when it
//! is ready it names itself the main process (`NotifyAccess=all` lets a process other than the
//! main one do so), and systemd then follows it instead of taking the old drover's exit for the
//! end of the service. It says so before it tells the old drover to stop, so that systemd has
//! the message before the old process exits.
//!
//! The protocol is one datagram to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name written with a leading `@`). Without that variable (not under systemd)
//! nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (`KEY=value` lines) to systemd, if drover runs under it.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let address = match target.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&target)?,
        };
        socket.send_to_addr(state.as_bytes(), &address)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd {state:?} at {}: {e}", target.to_string_lossy());
    }
}

/// The first configuration is in force: this process serves, and is the service's main one.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}

/// Draining has begun.
pub fn stopping() {
    notify("STOPPING=1");
}
