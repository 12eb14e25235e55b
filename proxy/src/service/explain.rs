//! Explaining where a request would go below its router: through which child services, to
//! which server, and why (sticky cookie, hash bucket, rotation, least load). For the explain
//! API: nothing here takes a turn of a rotation or counts a mirror copy.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Avoid, Composite, Resolution};
use crate::balance::{Affinity, Strategy};
use crate::snapshot::{Server, Service};

/// One step of the way: the service chosen at that level and why.
#[derive(Debug, serde::Serialize)]
pub struct Step {
    /// The service (qualified name).
    pub service: String,
    /// Why it was chosen.
    pub why: String,
}

/// Where a request would go.
#[derive(Debug, Default, serde::Serialize)]
pub struct Choice {
    /// The services on the way, the route's own first.
    pub path: Vec<Step>,
    /// The server it would most likely go to (`None`: none usable).
    pub server: Option<String>,
    /// Why that server.
    pub why: Option<String>,
}

/// Where a request with `affinity` to `service` would go now.
pub fn explain(service: &Arc<Service>, affinity: &Affinity<'_>, now: Instant) -> Choice {
    let mut choice = Choice::default();
    let mut out = Resolution {
        explain: true,
        ..Default::default()
    };
    let avoid = Avoid::default();
    let mut at = service.clone();
    // Walk down without taking turns: weighted children by peeking, failover as the data path.
    for _ in 0..64 {
        let next = match at.composite.as_deref() {
            None => break,
            Some(Composite::Weighted(w)) => {
                let pinned = w
                    .sticky
                    .as_ref()
                    .and_then(|s| s.pinned(affinity.headers).map(|i| (i, s.name().to_string())));
                match pinned.filter(|(i, _)| w.weights[*i] > 0 && w.children[*i].available(now, &avoid)) {
                    Some((i, cookie)) => {
                        out.path
                            .push((w.children[i].name.clone(), format!("the sticky cookie `{cookie}` names this child")));
                        w.children[i].clone()
                    }
                    None => match w.peek(now) {
                        Some(child) => {
                            let i = w.children.iter().position(|c| Arc::ptr_eq(c, child)).unwrap_or(0);
                            out.path.push((
                                child.name.clone(),
                                format!(
                                    "next in the weighted rotation (weight {} of {})",
                                    w.weights[i],
                                    w.weights.iter().sum::<u32>()
                                ),
                            ));
                            child.clone()
                        }
                        None => break,
                    },
                }
            }
            Some(Composite::Failover(f)) => match f.child(now, &avoid, &mut out) {
                Some(child) => child,
                None => break,
            },
            Some(Composite::Mirroring(m)) => {
                for mirror in m.mirrors.iter() {
                    out.path.push((
                        mirror.service.name.clone(),
                        format!("mirror: gets a copy of {} % of the requests", mirror.percent),
                    ));
                }
                out.path
                    .push((m.service.name.clone(), "the mirroring service's main service answers".into()));
                m.service.clone()
            }
        };
        at = next;
    }
    choice.path = out
        .path
        .into_iter()
        .map(|(service, why)| Step {
            service: service.to_string(),
            why,
        })
        .collect();
    if at.composite.is_none() {
        let (server, why) = leaf(&at, affinity, now);
        choice.server = server.map(|s| s.url.to_string());
        choice.why = why;
    }
    choice
}

/// The server of load balancer `service` a request would most likely go to, and why.
fn leaf<'a>(service: &'a Service, affinity: &Affinity<'_>, now: Instant) -> (Option<&'a Server>, Option<String>) {
    let usable = |i: usize| service.servers[i].weight > 0 && service.servers[i].health.would_admit(now);
    let Some(balancing) = service.balancing.as_deref() else {
        return (service.peek(now), Some("next in the smooth weighted round robin".into()));
    };
    if let Some(sticky) = &balancing.sticky {
        match sticky.pinned(affinity.headers) {
            Some(i) if usable(i) => {
                return (
                    Some(&service.servers[i]),
                    Some(format!("the sticky cookie `{}` names this server", sticky.name())),
                )
            }
            Some(_) => {
                return (
                    service.peek(now),
                    Some(format!(
                        "the sticky cookie `{}` names a server that cannot take requests now; balanced and re-pinned",
                        sticky.name()
                    )),
                )
            }
            None if sticky.cookie(affinity.headers).is_some() => {
                return (
                    service.peek(now),
                    Some(format!(
                        "the sticky cookie `{}` names no server of this service (removed?); balanced and re-pinned",
                        sticky.name()
                    )),
                )
            }
            None => {}
        }
    }
    match &balancing.strategy {
        Strategy::Hash { key, ring } => match affinity.key(key) {
            Some(bytes) => {
                let bucket = ring.point(bytes);
                let i = ring.find(bytes, usable);
                (
                    i.map(|i| &service.servers[i]),
                    Some(format!(
                        "consistent hash of {key}: ring point {bucket}, owned by the first usable server from there"
                    )),
                )
            }
            None => (
                service.peek(now),
                Some(format!("the request has no {key} to hash: smooth weighted round robin")),
            ),
        },
        Strategy::Hrw => {
            let best = (0..service.servers.len()).filter(|i| usable(*i)).max_by(|a, b| {
                let score = |i: usize| {
                    crate::balance::hash::rendezvous_score(affinity.client_ip, &service.servers[i].url, service.servers[i].weight)
                };
                score(*a).total_cmp(&score(*b))
            });
            (
                best.map(|i| &service.servers[i]),
                Some("rendezvous hashing on the client IP: the server with the highest score".into()),
            )
        }
        Strategy::P2c => (
            service.peek(now),
            Some("least requests in flight of two servers drawn at random (this one is only the round robin's next)".into()),
        ),
        Strategy::LeastTime => {
            let loads = balancing.loads.as_deref().unwrap_or(&[]);
            let best = (0..service.servers.len().min(loads.len())).filter(|i| usable(*i)).min_by(|a, b| {
                let cost = |i: usize| {
                    loads[i].ttfb().as_secs_f64() * (1.0 + f64::from(loads[i].in_flight())) / f64::from(service.servers[i].weight.max(1))
                };
                cost(*a).total_cmp(&cost(*b))
            });
            (
                best.map(|i| &service.servers[i]),
                Some("least average time to the response head × (1 + requests in flight) / weight".into()),
            )
        }
        Strategy::Wrr => (service.peek(now), Some("next in the smooth weighted round robin".into())),
    }
}
