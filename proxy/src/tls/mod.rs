//! TLS termination: certificates, options and the per-host choice between them, all part of the
//! snapshot so that a new certificate and the routes that need it swap together.
//!
//! # How a connection meets TLS
//!
//! An entrypoint whose snapshot has TLS routers peeks at each new connection's first byte
//! (`server::handshake`): a TLS handshake record (`0x16`) is terminated, anything else is plain
//! HTTP, as Traefik does on a shared entrypoint. The ClientHello is read first
//! (`LazyConfigAcceptor`) so the **options** can be chosen by its SNI ([`TlsSnapshot::options_for`]);
//! the options' rustls config then chooses the **certificate** by SNI ([`resolver`]): exact
//! name, one-label wildcard, default. Routers with a `tls` section (or on an entrypoint with
//! `http.tls`) are matched only on TLS connections, the others only on plain ones.
//!
//! # Options are per host, never silently the default
//!
//! Options belong to hosts (the SNI), not routers: the handshake happens before any request.
//! When routers for one host ask for different options, the higher-priority router's options
//! apply to the host (ties: the router name that sorts first), both routers keep serving, and
//! both report the conflict (Traefik falls back to `default` there, which can silently drop
//! mTLS). A request whose Host maps to other options than the ones its connection negotiated
//! gets 421 Misdirected Request, so a client cannot present one SNI to skip another host's
//! client-certificate check.
//!
//! # Files
//!
//! Certificate files are watched ([`watch`]); a change recompiles the snapshot within the
//! coalescing window. A broken replacement keeps the last good pair serving ([`certs`]).

pub mod certs;
mod compile;
pub mod options;
pub mod provider;
pub mod resolver;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

pub use compile::TlsCompiler;
pub use options::Options;

use self::certs::CertInfo;
use self::resolver::parent;

/// What the data path needs of TLS in one snapshot.
#[derive(Debug, Default)]
pub struct TlsSnapshot {
    /// The options for hosts no router maps elsewhere; `None` only before the first
    /// compilation (nothing terminates TLS then).
    pub default: Option<Arc<Options>>,
    by_host: HashMap<Box<str>, Arc<Options>>,
    /// `*.example.com` under `example.com`.
    by_wildcard: HashMap<Box<str>, Arc<Options>>,
    /// Per entrypoint (index order): whether any router there is served on TLS, so that its
    /// connections are peeked for a handshake.
    pub terminating: Vec<bool>,
    /// Every certificate, for the API and metrics.
    pub certificates: Vec<CertInfo>,
    /// Options by qualified name, for TCP routers that terminate TLS with their own.
    pub by_name: HashMap<Box<str>, Arc<Options>>,
    /// The name sets routers want from ACME resolvers.
    pub acme_wanted: Vec<crate::acme::Wanted>,
    /// TLS-ALPN-01 answers, when resolvers are configured.
    pub acme: Option<Arc<crate::acme::Challenges>>,
}

impl TlsSnapshot {
    /// Nothing terminates TLS (the snapshot before the first configuration).
    pub fn empty(entry_points: usize) -> Self {
        Self {
            terminating: vec![false; entry_points],
            ..Self::default()
        }
    }

    /// The options a connection for `host` (its SNI, or a request's Host) uses: the host's own,
    /// its one-label wildcard's, or the default.
    pub fn options_for(&self, host: Option<&str>) -> Option<&Arc<Options>> {
        if let Some(host) = host {
            if let Some(options) = self.by_host.get(host) {
                return Some(options);
            }
            if let Some(options) = parent(host).and_then(|p| self.by_wildcard.get(p)) {
                return Some(options);
            }
        }
        self.default.as_ref()
    }

    /// Whether entrypoint `index` terminates TLS.
    pub fn terminates(&self, index: usize) -> bool {
        self.terminating.get(index).copied().unwrap_or(false)
    }
}

/// What a TLS client connection negotiated, kept on its [`crate::connection::Connection`].
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// The options its handshake used (compared with each request's host: 421 on a mismatch).
    pub options: Arc<str>,
    /// The SNI it sent, lower-case.
    pub sni: Option<Box<str>>,
}
