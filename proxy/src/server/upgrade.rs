//! Zero-downtime upgrade: a new drover binary takes over the listening sockets of the running
//! one (`drover --takeover`), so a restart for a new version refuses and loses no connection.
//!
//! Both sides run the same code, in this order:
//!
//! * **Taking over** (the new one, before it starts anything): it connects to the configured
//!   upgrade socket and receives the running drover's listening sockets (`server::handover`). The
//!   server keeps each one whose name and address it is configured with and binds the others.
//! * **Its own upgrade socket** is bound at once, on a temporary path next to the configured
//!   one, where nobody looks for it yet.
//! * **Ready** (the task `run`): once the first configuration is in force, workers start
//!   accepting (they wait for the same moment; connections queue in the backlog meanwhile), and
//!   this task tells the old drover `ready`, then renames its socket over the configured path.
//!   From then on the next upgrade finds the new one. The old one stops accepting, drains and
//!   exits; it must not unlink the path, which is no longer its socket's.
//! * **Serving upgrades**: one successor at a time. If one goes away before it is ready (it
//!   crashed, its configuration was bad, it was killed), nothing changed here: this drover
//!   never stopped accepting, and it waits for the next successor.
//!
//! A fresh start (no takeover) goes through the same steps without a predecessor: its socket
//! replaces whatever stale file a crashed drover left at the path. One drover per path, then:
//! a second drover started fresh with the same path takes the path over from the first.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::handover::{self, Described};

/// How long a successor waits for the running drover's sockets.
const RECEIVE_LIMIT: Duration = Duration::from_secs(10);

/// A successor's link to the running drover: the sockets it received, and the connection to
/// say `ready` on.
#[derive(Debug)]
pub struct Takeover {
    stream: std::os::unix::net::UnixStream,
    received: handover::Received,
}

impl Takeover {
    /// Connects to the running drover's upgrade socket at `path` and receives its listening
    /// sockets; `None` when no drover listens there (no socket file, or nobody accepting on
    /// it), so that the same command starts the first drover and its successors. If another
    /// drover holds the ports without serving upgrades there, binding them says so.
    pub fn connect(path: &Path) -> io::Result<Option<Self>> {
        let stream = match std::os::unix::net::UnixStream::connect(path) {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot reach the drover at {}: {e}", path.display()),
                ))
            }
        };
        let received = handover::receive(&stream, RECEIVE_LIMIT).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the drover at {} did not hand over its sockets: {e}", path.display()),
            )
        })?;
        Ok(Some(Self { stream, received }))
    }

    /// The running drover's process id.
    pub fn pid(&self) -> u32 {
        self.received.pid
    }

    /// Takes the inherited socket for `role`/`name` if it is bound where `wanted` says.
    pub(crate) fn take(&mut self, role: handover::Role, name: &str, wanted: std::net::SocketAddr) -> Option<std::net::TcpListener> {
        let at =
            self.received.sockets.iter().position(|s| {
                s.described.role == role && s.described.name == name && handover::same_address(wanted, s.described.address)
            })?;
        Some(self.received.sockets.swap_remove(at).listener)
    }

    /// What is left after [`Takeover::take`]: sockets this configuration has no use for.
    pub(crate) fn unused(&self) -> impl Iterator<Item = &Described> {
        self.received.sockets.iter().map(|s| &s.described)
    }

    /// The connection to the running drover, for [`run`].
    pub(crate) fn into_stream(self) -> std::os::unix::net::UnixStream {
        self.stream
    }
}

/// This drover's upgrade socket: bound on a temporary path until it is ready, then renamed over
/// the configured path.
#[derive(Debug)]
pub struct UpgradeSocket {
    path: PathBuf,
    temporary: PathBuf,
    listener: UnixListener,
    /// The inode of the socket file once it is at `path` (0 before), so that it is only removed
    /// at exit while it is still this drover's.
    installed: Arc<AtomicU64>,
}

impl UpgradeSocket {
    /// Binds the upgrade socket on a temporary path beside `path`, readable by this user only.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for upgrades at {}: {e}", temporary.display())))?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            path: path.to_path_buf(),
            temporary,
            listener,
            installed: Arc::default(),
        })
    }

    /// What [`Drover::wait`](super::Drover::wait) needs to clean up after it.
    pub(crate) fn cleanup(&self) -> Cleanup {
        Cleanup {
            path: self.path.clone(),
            temporary: self.temporary.clone(),
            installed: self.installed.clone(),
        }
    }
}

/// Removes this drover's socket file at exit, unless it is no longer this drover's.
#[derive(Debug)]
pub(crate) struct Cleanup {
    path: PathBuf,
    temporary: PathBuf,
    installed: Arc<AtomicU64>,
}

impl Cleanup {
    /// At exit: after a handover the path is the successor's and stays; otherwise the file
    /// goes if it is still the one this drover put there.
    pub(crate) fn finish(&self, handed_over: bool) {
        let installed = self.installed.load(Ordering::Acquire);
        if installed == 0 {
            let _ = std::fs::remove_file(&self.temporary);
            return;
        }
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == installed);
        if !handed_over && ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The sockets offered to a successor: the entrypoints' and the admin side's.
pub(crate) type Offer = Vec<(Described, std::net::TcpListener)>;

/// The upgrade task, on the control runtime: waits for the first configuration, says `ready`
/// to the predecessor if there is one, installs the socket at its path, then hands the
/// sockets to the first successor that becomes ready, and reports its pid in `handed_over`.
pub(crate) async fn run(
    socket: UpgradeSocket,
    predecessor: Option<std::os::unix::net::UnixStream>,
    offer: Offer,
    mut in_force: watch::Receiver<u64>,
    handed_over: watch::Sender<Option<u32>>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = in_force.wait_for(|generation| *generation >= 1) => {}
        _ = shutdown.wait_for(|stop| *stop) => return,
    }
    if let Some(stream) = predecessor {
        let told = async {
            stream.set_nonblocking(true)?;
            let mut stream = tokio::net::UnixStream::from_std(stream)?;
            handover::say_ready(&mut stream).await
        };
        match told.await {
            Ok(()) => tracing::info!("ready: the previous drover stops accepting and drains"),
            Err(e) => tracing::warn!("could not tell the previous drover this one is ready ({e}); serving anyway"),
        }
    }
    let listener = match tokio::net::UnixListener::from_std(socket.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot serve upgrades at {}: {e}", socket.path.display());
            return;
        }
    };
    if let Err(e) = std::fs::rename(&socket.temporary, &socket.path) {
        tracing::error!(
            "cannot put the upgrade socket at {} ({e}): a later --takeover will not find this drover",
            socket.path.display()
        );
        return;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&socket.path) {
        socket.installed.store(meta.ino(), Ordering::Release);
    }
    tracing::debug!(path = %socket.path.display(), "serving upgrades");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("upgrade socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pid = match peer(&stream) {
            Ok(pid) => pid,
            Err(why) => {
                tracing::warn!("upgrade socket: refused a peer: {why}");
                continue;
            }
        };
        let offered: Vec<_> = offer.iter().map(|(d, l)| (d.clone(), l.as_fd())).collect();
        if let Err(e) = handover::offer(&mut stream, &offered).await {
            tracing::warn!("could not hand the listening sockets to pid {pid}: {e}; still serving");
            continue;
        }
        tracing::info!("handed the listening sockets to pid {pid}; serving until it is ready");
        let ready = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            ready = handover::ready(&mut stream) => ready,
        };
        match ready {
            Ok(true) => {
                tracing::info!("pid {pid} is ready: no more accepting here; draining");
                handed_over.send_replace(Some(pid));
                return;
            }
            Ok(false) | Err(_) => {
                tracing::warn!("pid {pid} went away before it was ready; this drover keeps serving");
            }
        }
    }
}

/// The successor's pid, if it runs as this drover's user (or as root).
fn peer(stream: &tokio::net::UnixStream) -> Result<u32, String> {
    let cred = rustix::net::sockopt::socket_peercred(stream).map_err(|e| format!("no credentials: {e}"))?;
    let ours = rustix::process::geteuid();
    if cred.uid != ours && !cred.uid.is_root() {
        return Err(format!(
            "pid {} runs as uid {}, not {}",
            cred.pid.as_raw_nonzero(),
            cred.uid.as_raw(),
            ours.as_raw()
        ));
    }
    Ok(cred.pid.as_raw_nonzero().get() as u32)
}
