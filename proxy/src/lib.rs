//! drover: a self-configuring L4/L7 edge proxy.
//!
//! The data path (`forward`) reads one immutable [`snapshot::Snapshot`] per request; the control
//! plane (providers, aggregation, compilation) builds new snapshots and swaps them in whole.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod balance;
mod civil;
pub mod config;
pub mod error;
pub mod forward;
pub mod health;
pub mod io;
pub mod metrics;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod upstream;

pub use server::Drover;
