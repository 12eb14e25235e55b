//! Automatic certificates (ACME, RFC 8555): resolvers from the static configuration order
//! certificates for the routers that name them, answer the CA's challenges (HTTP-01, TLS-ALPN-01,
//! DNS-01 by RFC 2136), store them in Traefik's `acme.json` and renew them, while the routers
//! keep serving (the default certificate until the first one lands).
//!
//! # Data flow
//!
//! The TLS compilation lists what each resolver must provide ([`Wanted`], per router: its
//! `tls.domains`, else the hosts of its `Host` rules) into the snapshot, and serves the
//! certificates the resolvers hold ([`Book`]). Each resolver's loop ([`manager`]) watches the
//! configuration in force and its clock, orders what is missing or due ([`order`]), writes it to
//! storage ([`store`]) and asks for a recompilation: the new certificate is in force for the next
//! handshake, with no reload and no dropped connection. Challenges in flight are answered by the
//! data path from [`Challenges`].
//!
//! # Several instances, one storage file
//!
//! Instances sharing the storage file (a Swarm volume, NFS) take a lock file per name set before
//! ordering; the others wait and pick the certificate up from the file. See [`store`].

pub mod challenge;
pub mod config;
pub mod dns01;
pub mod manager;
pub mod order;
pub mod store;

pub use challenge::Challenges;
pub use manager::{Acme, Book, Entry, State, Wanted};
