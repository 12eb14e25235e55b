//! drover's dynamic-configuration model and every source of it.
//!
//! Providers (the file, Docker, Consul, Marathon, DNS) each watch one source and send a *full*
//! [`DynamicConfig`] fragment for themselves through a [`ProviderHandle`]. The [`aggregate`]
//! module merges the fragments, namespaces every object as `name@provider`, validates references
//! and rules, and publishes one immutable [`RuntimeConfig`]. The proxy compiles that into its
//! routing snapshot; nothing in this crate knows about the data path.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod backoff;
pub mod balancing;
pub mod breaker;
pub mod composite;
pub mod consul;
pub mod dns;
pub mod docker;
pub mod duration;
pub mod error;
pub mod file;
mod http_client;
pub mod incremental;
pub mod labels;
pub mod marathon;
pub mod middlewares;
pub mod model;
pub mod policy;
pub mod provider;
pub mod rule;
pub mod runtime;
pub mod tcp;
pub mod tls;
pub mod toml_error;
mod yaml_error;

pub use error::ProviderError;
pub use model::DynamicConfig;
pub use provider::{Decision, ItemReport, Provider, ProviderHandle, ProviderStatus, Update};
pub use runtime::RuntimeConfig;
