//! The Swarm provider: services labelled on their spec, one server per running task (or the
//! service's virtual IP with `<prefix>.swarm.lbswarm=true`).
//!
//! Swarm has no task events (moby#37403), which is why Traefik only polls, every 15 s, and
//! rolling updates send traffic to tasks that are gone (traefik#3035, #11252). drover polls
//! every 5 s by default and also refreshes at once on service events and on events of task
//! containers on this node; a task container sent its stop signal leaves the rotation before
//! it exits, as with plain containers.
//!
//! Services, tasks and networks are read with drover's own lenient types: bollard has no field for
//! a task's network attachments, and its enums reject values a newer daemon may send.
//!
//! Rooms, as for containers: [`translate`] (Swarm's JSON and the decision about every service
//! and task) and [`watch`] (the provider's task: polls, follows events, reports). The client,
//! the events and the address choice are the container provider's ([`super::client`],
//! [`super::events`], [`super::network`]).

pub mod translate;
pub mod watch;

pub use watch::SwarmProvider;
