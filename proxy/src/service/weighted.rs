//! `weighted` services: smooth weighted round robin over child services (canary releases).
//!
//! The rotation is the same [`SmoothWeighted`] schedule servers use, so 9:1 over 1,000 requests
//! is 900/100 exactly on one worker. A child with no available server (every server ejected, or
//! in panic mode) is stepped over and its share goes to the others; when no child is available
//! the request still goes to a reachable child, whose own panic mode or `AllEjected` rule
//! answers, rather than being refused here. An optional sticky cookie (Traefik's
//! `weighted.sticky.cookie`) pins a client to the child it was sent to.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Avoid, Resolution};
use crate::balance::{Affinity, SmoothWeighted, Sticky};
use crate::snapshot::Service;

/// A compiled `weighted` service.
#[derive(Debug)]
pub struct Weighted {
    /// The children, in configuration order.
    pub children: Box<[Arc<Service>]>,
    /// Their weights.
    pub weights: Box<[u32]>,
    /// The rotation over children.
    pub balancer: SmoothWeighted,
    /// The sticky cookie naming a child.
    pub sticky: Option<Sticky>,
}

impl Weighted {
    /// A weighted service over `children` with their `weights`.
    pub fn new(children: Vec<(Arc<Service>, u32)>, sticky: Option<Sticky>) -> Self {
        let weights: Box<[u32]> = children.iter().map(|(_, w)| *w).collect();
        Self {
            balancer: SmoothWeighted::new(&weights),
            children: children.into_iter().map(|(c, _)| c).collect(),
            weights,
            sticky,
        }
    }

    /// The child this request goes to (taking a turn of the rotation).
    pub fn child(&self, affinity: &Affinity<'_>, now: Instant, avoid: &Avoid, out: &mut Resolution) -> Option<Arc<Service>> {
        let pinned = self.sticky.as_ref().and_then(|s| s.pinned(affinity.headers));
        let (index, why) = match pinned.filter(|i| self.weights[*i] > 0 && self.children[*i].available(now, avoid)) {
            Some(i) => (i, "its sticky cookie names it"),
            None => match self.balancer.pick(|k| self.children[k].available(now, avoid)) {
                Some(i) => (i, "its turn in the weighted rotation"),
                None => (
                    self.balancer.pick(|k| self.children[k].reachable(avoid))?,
                    "no child has an available server; its turn among those left",
                ),
            },
        };
        if let Some(cookie) = self.sticky.as_ref().and_then(|s| s.set_cookie(index, affinity.headers)) {
            out.set_cookies.push(cookie);
        }
        let child = &self.children[index];
        if out.explain {
            out.path.push((
                child.name.clone(),
                format!("weighted child (weight {}): {why}", self.weights[index]),
            ));
        }
        Some(child.clone())
    }

    /// The child the next request would go to, without taking the turn (explain API).
    pub fn peek(&self, now: Instant) -> Option<&Arc<Service>> {
        let avoid = Avoid::default();
        self.balancer
            .peek(|k| self.children[k].available(now, &avoid))
            .map(|k| &self.children[k])
    }
}
