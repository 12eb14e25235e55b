//! `failover` services: all traffic to the main service while it has an available server, to
//! the fallback otherwise, and back as soon as the main service has one again.
//!
//! "Available" is read on every request from the main service's passive (and active) health
//! (see the module above): no separate state to flip, so the move back happens with the first
//! request after the main service's first server is readmitted (its probation request). A
//! request that could not be sent to any server of the main service is resolved again with the
//! main service avoided, which lands here on the fallback: no request fails for the failover's
//! own sake.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Avoid, Resolution};
use crate::snapshot::Service;

/// A compiled `failover` service.
#[derive(Debug)]
pub struct Failover {
    /// The main service.
    pub service: Arc<Service>,
    /// The standby.
    pub fallback: Arc<Service>,
}

impl Failover {
    /// The child this request goes to.
    pub fn child(&self, now: Instant, avoid: &Avoid, out: &mut Resolution) -> Option<Arc<Service>> {
        let (child, why) = if self.service.available(now, avoid) {
            (&self.service, "the main service has an available server")
        } else if self.fallback.available(now, avoid) {
            (&self.fallback, "the main service has no available server")
        } else if self.service.reachable(avoid) {
            (&self.service, "neither has an available server; the main service decides")
        } else if self.fallback.reachable(avoid) {
            (&self.fallback, "the main service could not take the request")
        } else {
            return None;
        };
        if out.explain {
            out.path.push((child.name.clone(), format!("failover: {why}")));
        }
        Some(child.clone())
    }
}
