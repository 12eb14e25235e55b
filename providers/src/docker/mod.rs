//! The Docker and Swarm providers: containers (or Swarm services) carrying `drover.*` labels
//! become routers and services, live, as they start, stop, scale and fail health checks.
//!
//! How it differs from Traefik's provider, and why:
//! * **Incremental.** An event re-inspects only the container it names, and the fragment is
//!   rebuilt from the cache; containers that are not enabled are never inspected. Traefik
//!   re-lists and re-inspects everything on every event (traefik#13321).
//! * **Stopping containers leave first.** `kill` with the stop signal takes a container out of
//!   rotation before it exits; Traefik only reacts to `die` (traefik#11252).
//! * **Zero network labels in a stack.** When drover runs in a container, the network it shares
//!   with the target is used; the fallback is deterministic (sorted), never a random map entry.
//! * **Safe defaults.** `exposedByDefault` is false, names substituted into rules are normalised,
//!   and the client only ever sends `GET` (see [`client`]).
//! * **Health.** A container with a health check receives traffic only while `healthy`.
//!
//! Rooms, by role as in every provider: [`config`] (both providers' settings), [`client`]
//! (transport, version negotiation), [`translate`] (inspect data → decision → routers and
//! services), [`watch`] (the container provider's task); then what only Docker has: [`events`]
//! (the stream and what each event means), [`network`] (address and port choice, drover's own
//! container), and [`swarm`], split into the same `translate` and `watch` rooms.

pub mod client;
pub mod config;
pub mod events;
pub mod network;
pub mod swarm;
pub mod translate;
pub mod watch;

pub use config::{DockerConfig, SwarmConfig, TlsConfig};
pub use swarm::SwarmProvider;
pub use watch::DockerProvider;
