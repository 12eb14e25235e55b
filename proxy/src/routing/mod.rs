//! Choosing a router for a request: compiled rules and a host-indexed route table.
//!
//! Rules arrive parsed and validated ([`drover_providers::rule::Rule`]); [`CompiledRule`] turns
//! one into a tree that evaluates against a [`RequestView`] without allocating, with regexes
//! compiled once. [`RouteTable`] holds every router of an entrypoint in a fixed order and finds
//! the first one whose rule matches.
//!
//! # Order
//!
//! Routers are tried by **priority, highest first; equal priorities by router name, ascending**
//! (byte order). Traefik's default priority is the length of the rule text, so two routers with
//! rules of the same length used to be ordered by whatever order the provider produced them in;
//! breaking the tie by name makes the choice the same on every reload and every instance.
//!
//! # Why an index
//!
//! Traefik tries routers one after another, so a request for the last of 10,000 virtual hosts
//! evaluates 10,000 rules. Almost every real rule pins the host (``Host(`a`) && …``), and
//! [`Rule::required_hosts`](drover_providers::rule::Rule::required_hosts) says which hosts a
//! rule can possibly match. The table files each router under those hosts: exact hosts in one
//! map, `*.parent` wildcards in another keyed by the parent domain, and routers without a host
//! requirement in a list of their own. A request looks up its host, then its host minus the
//! first label, and merges the (at most three) candidate lists, each already in global order,
//! so the first match is exactly the router a linear scan would have found. The index is only
//! a filter: every candidate's full rule is still evaluated, host matchers included.
//!
//! The invariant that makes this correct is that a router is filed under specific hosts only
//! when *every* request its rule matches has one of them; `required_hosts` is conservative
//! (`None` for anything under `!`, for `||` with a host-less side, for ``Host(`*`)``), and the
//! host strings on both sides go through the same [`normalize_host`].

mod matcher;
mod query;
mod table;
#[cfg(test)]
pub(crate) mod testing;

use std::net::IpAddr;

pub use drover_providers::rule::normalize_host;
pub use drover_providers::rule::HostPattern;
pub use matcher::CompiledRule;
pub use table::{RouteEntry, RouteTable};

/// The parts of a request that rules look at, borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// The host, already passed through [`normalize_host`]; `""` when the request has none.
    pub host: &'a str,
    /// The path, as matched by `Path`, `PathPrefix` and `PathRegexp`.
    pub path: &'a str,
    /// The raw query string without the `?`, if the request has one.
    pub query: Option<&'a str>,
    /// The request method.
    pub method: &'a http::Method,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The socket peer address (never taken from `X-Forwarded-For`).
    pub client_ip: IpAddr,
}
