//! Choosing a server with a strategy other than plain round robin, or with a sticky cookie.
//!
//! A service without either has no [`Balancing`] and [`Service::choose`] is
//! [`Service::pick`]: one branch, no allocation, no lock. With one, the choice is made among the
//! usable servers of the most preferred tier that has any, then admitted through passive health
//! as `pick` does; when the strategy finds nothing (no key to hash on, every candidate refused)
//! or the service is in panic mode, `pick` decides, so ejection, panic and `AllEjected` behave
//! the same whatever the strategy.
//!
//! * `p2c`: two random usable servers, the one with fewer requests in flight per weight unit
//!   (linkerd's balancer; Mitzenmacher's power of two choices: nearly the best server's load at
//!   the cost of two reads, and no herd onto one server that looked idle).
//! * `leasttime`: the least average time to the response head × (1 + in flight) / weight;
//!   ties (identical servers) are broken by round robin, which Traefik's lacks (its #12306).
//! * `hrw`: rendezvous hashing on the client IP.
//! * `hash` (drover): ketama on a header, a cookie, the path or the client IP.

use std::sync::Arc;

use http::HeaderMap;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::hash::{rendezvous_score, Ring};
use super::load::ServerLoad;
use super::sticky::Sticky;
use crate::health::Admission;
use crate::snapshot::{Picked, Service, Tier, Tried};
use drover_providers::balancing::HashKey;

/// What of a request a choice may depend on.
#[derive(Clone, Copy, Debug)]
pub struct Affinity<'a> {
    /// The request's headers (cookies, the hash header).
    pub headers: &'a HeaderMap,
    /// The request path.
    pub path: &'a str,
    /// The client's address as text (as sent in `X-Forwarded-For`).
    pub client_ip: &'a [u8],
}

/// A strategy other than round robin.
#[derive(Debug)]
pub enum Strategy {
    /// Smooth weighted round robin (with a sticky cookie).
    Wrr,
    /// Least requests in flight of two random servers.
    P2c,
    /// Least average time to the response head.
    LeastTime,
    /// Rendezvous hashing on the client IP.
    Hrw,
    /// Ketama on a request key.
    Hash {
        /// What is hashed.
        key: HashKey,
        /// The ring.
        ring: Ring,
    },
}

/// How a service chooses, beyond round robin.
#[derive(Debug)]
pub struct Balancing {
    /// The strategy.
    pub strategy: Strategy,
    /// The sticky cookie, if any.
    pub sticky: Option<Sticky>,
    /// Each server's load (for `p2c` and `leasttime`), by server index.
    pub loads: Option<Box<[Arc<ServerLoad>]>>,
}

impl Affinity<'_> {
    /// The bytes `key` selects from the request, if it has them.
    pub fn key(&self, key: &HashKey) -> Option<&[u8]> {
        match key {
            HashKey::Header(name) => self.headers.get(name).map(|v| v.as_bytes()),
            HashKey::Cookie(name) => self
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
                .find_map(|pair| {
                    let eq = pair.iter().position(|b| *b == b'=')?;
                    (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
                }),
            HashKey::Path => Some(self.path.as_bytes()),
            HashKey::ClientIp => Some(self.client_ip),
        }
    }
}

impl Service {
    /// The next server for a request with `affinity`: [`Service::pick`] unless the service has
    /// a sticky cookie or another strategy (see the module docs).
    pub fn choose(&self, tried: Tried, now: Instant, affinity: &Affinity<'_>) -> Picked<'_> {
        let Some(balancing) = self.balancing.as_deref() else {
            return self.pick(tried, now);
        };
        if self.tiers.is_empty() || self.panicking() {
            return self.pick(tried, now);
        }
        if let Some(i) = balancing.sticky.as_ref().and_then(|s| s.pinned(affinity.headers)) {
            if let Some(picked) = self.admit(i, tried, now) {
                return picked;
            }
        }
        let chosen = match &balancing.strategy {
            Strategy::Wrr => None,
            Strategy::P2c => balancing
                .loads
                .as_deref()
                .and_then(|loads| self.least_loaded(tried, now, loads, false)),
            Strategy::LeastTime => balancing
                .loads
                .as_deref()
                .and_then(|loads| self.least_loaded(tried, now, loads, true)),
            Strategy::Hrw => self.rendezvous(tried, now, affinity.client_ip),
            Strategy::Hash { key, ring } => affinity.key(key).and_then(|bytes| {
                let tier = self.usable_tier(tried, now)?.number(self);
                let mut picked = None;
                ring.find(bytes, |i| {
                    if self.servers[i].tier != tier {
                        return false;
                    }
                    picked = self.admit(i, tried, now);
                    picked.is_some()
                });
                picked
            }),
        };
        chosen.unwrap_or_else(|| self.pick(tried, now))
    }

    /// The `Set-Cookie` header pinning server `index`, when the service is sticky and the request
    /// did not already name that server.
    pub fn sticky_cookie(&self, index: usize, headers: &HeaderMap) -> Option<http::HeaderValue> {
        self.balancing.as_deref()?.sticky.as_ref()?.set_cookie(index, headers)
    }

    /// Server `index`'s load, when the strategy counts it.
    pub fn load(&self, index: usize) -> Option<&Arc<ServerLoad>> {
        self.balancing.as_deref()?.loads.as_deref()?.get(index)
    }

    /// Server `i`, if it may take this request: untried, weighted, admitted by passive health.
    fn admit(&self, i: usize, tried: Tried, now: Instant) -> Option<Picked<'_>> {
        let server = self.servers.get(i)?;
        if tried.contains(i) || server.weight == 0 {
            return None;
        }
        let probe = match server.health.admit(&self.health.passive, now) {
            Admission::Admit => false,
            Admission::Probe => true,
            Admission::Refuse => return None,
        };
        Some(Picked::Server { index: i, server, probe })
    }

    fn usable(&self, i: usize, tried: Tried, now: Instant) -> bool {
        let s = &self.servers[i];
        !tried.contains(i) && s.weight > 0 && s.health.would_admit(now)
    }

    /// The most preferred tier with a usable server.
    fn usable_tier(&self, tried: Tried, now: Instant) -> Option<&Tier> {
        self.tiers
            .iter()
            .find(|t| t.members.iter().any(|i| self.usable(*i as usize, tried, now)))
    }

    fn candidates(&self, tried: Tried, now: Instant) -> SmallVec<[usize; 16]> {
        self.usable_tier(tried, now)
            .map(|t| {
                t.members
                    .iter()
                    .map(|i| *i as usize)
                    .filter(|i| self.usable(*i, tried, now))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `p2c` (two random candidates) or `leasttime` (all candidates, ties by round robin).
    fn least_loaded(&self, tried: Tried, now: Instant, loads: &[Arc<ServerLoad>], by_time: bool) -> Option<Picked<'_>> {
        let candidates = self.candidates(tried, now);
        let cost = |i: usize| -> f64 {
            let load = &loads[i];
            let weight = f64::from(self.servers[i].weight.max(1));
            let in_flight = f64::from(load.in_flight());
            if by_time {
                load.ttfb().as_secs_f64() * (1.0 + in_flight) / weight
            } else {
                in_flight / weight
            }
        };
        match candidates.len() {
            0 => None,
            1 => self.admit(candidates[0], tried, now),
            n if !by_time => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                let (first, second) = if cost(b) < cost(a) { (b, a) } else { (a, b) };
                self.admit(first, tried, now).or_else(|| self.admit(second, tried, now))
            }
            _ => {
                let best = candidates.iter().map(|i| cost(*i)).fold(f64::INFINITY, f64::min);
                let tier = self.usable_tier(tried, now)?;
                let mut picked = None;
                tier.balancer.pick(|k| {
                    let i = tier.members[k] as usize;
                    if !candidates.contains(&i) || cost(i) > best * (1.0 + 1e-9) {
                        return false;
                    }
                    picked = self.admit(i, tried, now);
                    picked.is_some()
                });
                picked
            }
        }
    }

    /// `hrw`: the candidate with the highest rendezvous score for `key`, else the next.
    fn rendezvous(&self, tried: Tried, now: Instant, key: &[u8]) -> Option<Picked<'_>> {
        let mut scored: SmallVec<[(f64, usize); 16]> = self
            .candidates(tried, now)
            .into_iter()
            .map(|i| (rendezvous_score(key, &self.servers[i].url, self.servers[i].weight), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().find_map(|(_, i)| self.admit(i, tried, now))
    }
}

impl Tier {
    /// This tier's number (that of its servers).
    fn number(&self, service: &Service) -> u32 {
        self.members.first().map_or(0, |i| service.servers[*i as usize].tier)
    }
}
