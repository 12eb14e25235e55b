//! drover: a self-configuring L4/L7 edge proxy.
//!
//! The data path ([`forward`]) reads one immutable [`snapshot::Snapshot`] per request; the control
//! plane (providers, aggregation, compilation) builds new snapshots and swaps them in whole.
//!
//! # The rooms, and which way imports go
//!
//! ```text
//! server ──► forward ──► connection ──► snapshot, health, metrics, access_log
//!   │           └──────► routing, balance, upstream
//!   ├──► compile ──► snapshot, routing, balance, health, upstream
//!   └──► admin ──► connection, snapshot, health, metrics
//! ```
//!
//! * [`server`]: the runtime. Binds listeners (or takes them over from a running drover:
//!   [`server::upgrade`]), runs the worker threads (one single-threaded runtime each) and the
//!   control thread (providers, aggregator, reload loop, admin side), and owns client-connection
//!   deadlines ([`server::timeouts`]).
//! * [`connection`]: what client connections share ([`connection::Shared`]: the snapshot, health,
//!   metrics, access log) and what each one carries ([`connection::Connection`]).
//! * [`forward`]: one request, from route to response body; header hygiene.
//! * [`compile`]: the providers' fragments → a [`snapshot::Snapshot`], reusing what outlives one.
//! * [`snapshot`]: the immutable routing state and a service's server choice.
//! * [`routing`] (rules → matchers, per-entrypoint tables), [`balance`] (smooth weighted round
//!   robin), [`health`] (passive ejection, active checks, retry budgets), [`upstream`] (pooled
//!   connections to servers).
//! * [`l4`]: TCP routers (sorted before HTTP sees a connection: PROXY header, ClientHello,
//!   passthrough, termination, splice) and UDP sessions.
//! * [`admin`]: the API, dashboard and `/metrics`, on their own listener; [`metrics`] and
//!   [`access_log`] record what the data path did.
//!
//! # A request, by module
//!
//! 1. A worker accepts on an entrypoint's socket (`server::worker`), wraps the stream so its reads
//!    stamp the connection's [`connection::Activity`] (`server::timeouts`), builds a
//!    [`connection::Connection`] (peer, entrypoint, [`connection::Forwarded`] values) and hands it
//!    to hyper.
//! 2. For each request hyper calls [`forward::handle`]. It marks the connection busy
//!    ([`connection::InFlight`]), loads the snapshot once and finds the route in the entrypoint's
//!    [`routing`] table (host index first, then rules by priority).
//! 3. Holding the route's `Arc<snapshot::Service>` (the snapshot guard is already released), it
//!    cleans the headers ([`forward::headers`]), adds the forwarded ones, and asks the service
//!    for a server ([`snapshot::Service::pick`]: failover tier, smooth weighted round robin,
//!    passive-health admission from [`health`]).
//! 4. The server's [`upstream::Upstream`] sends the request on a pooled connection of this
//!    worker's lane; failures are classified ([`error`]), recorded against the server's health,
//!    and retried elsewhere when that is safe.
//! 5. The response body streams back as [`forward::ProxyBody`]; when it ends, its completion
//!    records metrics and the access-log line and the connection becomes idle again.
//!
//! # A provider event, by module
//!
//! 1. A provider task (e.g. Docker's, in `drover_providers::docker`) sees a container start, and
//!    publishes its whole new fragment through its `ProviderHandle` into its mailbox (the newest
//!    fragment wins).
//! 2. The `Aggregator` (`drover_providers::aggregate`) wakes, waits out the throttle window,
//!    reads every mailbox, updates the provider statuses the admin side shows, and publishes the
//!    set of fragments.
//! 3. The reload loop (`server::reload`) hands them to a blocking thread where the
//!    [`compile::Compiler`] merges them (validation, `name@provider`, rules parsed through its one
//!    rule cache) and compiles a [`snapshot::Snapshot`], looking up pools and health state.
//! 4. The loop reconciles active health checks, stores the snapshot in
//!    [`connection::Shared`]'s `ArcSwap`, and the next request on any worker routes by it;
//!    requests in flight finish on the one they started with.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod balance;
pub mod build_info;
pub mod check;
mod civil;
pub mod compile;
pub mod config;
pub mod connection;
pub mod error;
pub mod forward;
pub mod health;
pub mod io;
pub mod l4;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod middleware;
pub mod routing;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod tls;
pub mod upstream;

pub use server::Drover;
