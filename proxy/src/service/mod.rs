//! Services made of services: `weighted` (canary), `failover` and `mirroring`.
//!
//! A composite is compiled into the snapshot like a load balancer, as a [`Service`] with no
//! servers of its own and a [`Composite`] that holds its children's `Arc<Service>`s, so a route
//! pointing at it costs nothing more to find. Per request it is *resolved* to one leaf, a load
//! balancer, before anything is sent ([`Service::resolve`]); everything after that (retries,
//! passive health, sticky servers) is the leaf's ordinary path. A request that could not be sent
//! to any server of its leaf (every server refused the connection, or was ejected) is resolved
//! again with that leaf avoided: a failover goes on to its fallback, a weighted service to
//! another child.
//!
//! Availability is read, never cached: a leaf is available while it has a server passive health
//! would admit and is not in panic mode; a composite while one of its children is. So health
//! propagates upward on every request, which is what Traefik's `healthCheck: {}` on a composite
//! asks for.

pub mod explain;
pub mod failover;
pub mod mirror;
pub mod weighted;

use std::sync::Arc;

use http::HeaderValue;
use smallvec::SmallVec;
use tokio::time::Instant;

pub use failover::Failover;
pub use mirror::Mirroring;
pub use weighted::Weighted;

use crate::balance::Affinity;
use crate::snapshot::Service;

/// The kinds of service made of services.
#[derive(Debug)]
pub enum Composite {
    /// Smooth weighted round robin over children.
    Weighted(Weighted),
    /// A main service and its standby.
    Failover(Failover),
    /// A main service whose requests are copied to mirrors.
    Mirroring(Mirroring),
}

/// Leaves a request already failed to send to, by address (a request rarely has more than one).
#[derive(Debug, Default)]
pub struct Avoid(SmallVec<[usize; 2]>);

impl Avoid {
    /// Avoids `leaf` from now on.
    pub fn add(&mut self, leaf: &Arc<Service>) {
        self.0.push(Arc::as_ptr(leaf) as usize);
    }

    /// Is `service` avoided?
    pub fn contains(&self, service: &Arc<Service>) -> bool {
        self.0.contains(&(Arc::as_ptr(service) as usize))
    }
}

/// What resolving a request through composites decided besides its leaf.
#[derive(Debug, Default)]
pub struct Resolution {
    /// `Set-Cookie` headers of sticky `weighted` services on the way.
    pub set_cookies: SmallVec<[HeaderValue; 1]>,
    /// Mirrors that get a copy of the request.
    pub mirrors: SmallVec<[mirror::Copy; 1]>,
    /// The path taken, for the explain API: (service, why) per level.
    pub path: Vec<(Arc<str>, String)>,
    /// Record `path` (explain only; requests leave it off).
    pub explain: bool,
}

impl Service {
    /// Does this service have a server to send to now (without panic mode), other than in the
    /// `avoid`ed leaves?
    pub fn available(self: &Arc<Self>, now: Instant, avoid: &Avoid) -> bool {
        match self.composite.as_deref() {
            None => {
                !avoid.contains(self)
                    && !self.tiers.is_empty()
                    && !self.panicking()
                    && self.servers.iter().any(|s| s.weight > 0 && s.health.would_admit(now))
            }
            Some(Composite::Weighted(w)) => w.children.iter().any(|c| c.available(now, avoid)),
            Some(Composite::Failover(f)) => f.service.available(now, avoid) || f.fallback.available(now, avoid),
            Some(Composite::Mirroring(m)) => m.service.available(now, avoid),
        }
    }

    /// Could this service take a request at all, with its panic mode and `AllEjected` rules
    /// (a leaf not avoided)?
    pub fn reachable(self: &Arc<Self>, avoid: &Avoid) -> bool {
        match self.composite.as_deref() {
            None => !avoid.contains(self) && !self.tiers.is_empty(),
            Some(Composite::Weighted(w)) => w.children.iter().any(|c| c.reachable(avoid)),
            Some(Composite::Failover(f)) => f.service.reachable(avoid) || f.fallback.reachable(avoid),
            Some(Composite::Mirroring(m)) => m.service.reachable(avoid),
        }
    }

    /// The load balancer a request to this service goes to; `None` when every leaf is avoided.
    /// `first` is false when resolving again after a failed send (mirrors are chosen once).
    pub fn resolve(
        self: &Arc<Self>,
        affinity: &Affinity<'_>,
        now: Instant,
        avoid: &Avoid,
        first: bool,
        out: &mut Resolution,
    ) -> Option<Arc<Service>> {
        let Some(composite) = self.composite.as_deref() else {
            return (!avoid.contains(self)).then(|| self.clone());
        };
        let child = match composite {
            Composite::Weighted(w) => w.child(affinity, now, avoid, out)?,
            Composite::Failover(f) => f.child(now, avoid, out)?,
            Composite::Mirroring(m) => {
                if first {
                    m.choose_mirrors(out);
                }
                if out.explain {
                    out.path
                        .push((m.service.name.clone(), "the mirroring service's main service".into()));
                }
                m.service.clone()
            }
        };
        child.resolve(affinity, now, avoid, first, out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drover_providers::aggregate::Fragments;
    use drover_providers::DynamicConfig;
    use http::HeaderMap;

    use super::*;
    use crate::compile::Compiler;
    use crate::health::{HealthRegistry, Outcome};
    use crate::metrics::Metrics;
    use crate::snapshot::Snapshot;
    use crate::upstream::{Transport, Upstreams};

    fn snapshot(text: &str) -> Snapshot {
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
        let fragments = Fragments {
            generation: 1,
            fragments: vec![("file".into(), Arc::new(DynamicConfig::from_toml(text).expect("test config")))],
        };
        compiler.reload(&fragments, &HealthRegistry::default(), &Metrics::default())
    }

    fn leaf_name(service: &Arc<Service>, avoid: &Avoid) -> Option<String> {
        let headers = HeaderMap::new();
        let affinity = Affinity {
            headers: &headers,
            path: "/",
            client_ip: b"192.0.2.1",
        };
        service
            .resolve(&affinity, Instant::now(), avoid, true, &mut Resolution::default())
            .map(|leaf| leaf.name.to_string())
    }

    const FAILOVER: &str = r#"
        [http.services.app.failover]
        service = "main"
        fallback = "spare"
        [[http.services.main.loadBalancer.servers]]
        url = "http://127.0.0.1:9001"
        [http.services.main.loadBalancer.passiveHealthCheck]
        maxFailedAttempts = 1
        baseEjectionTime = "10s"
        slowStart = "0s"
        [[http.services.spare.loadBalancer.servers]]
        url = "http://127.0.0.1:9002"
    "#;

    #[tokio::test(start_paused = true)]
    async fn failover_follows_the_main_services_health_there_and_back() {
        let snapshot = snapshot(FAILOVER);
        let app = &snapshot.services["app@file"];
        let main = &snapshot.services["main@file"];
        let none = Avoid::default();
        assert_eq!(leaf_name(app, &none).as_deref(), Some("main@file"));

        main.record(0, Outcome::LocalFailure, false, Instant::now());
        assert!(main.servers[0].health.is_out(), "the test ejects main's only server");
        assert_eq!(leaf_name(app, &none).as_deref(), Some("spare@file"), "main has no available server");

        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(leaf_name(app, &none).as_deref(), Some("spare@file"), "still ejected");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            leaf_name(app, &none).as_deref(),
            Some("main@file"),
            "the ejection is over: the next request is main's probation request"
        );
    }

    #[test]
    fn a_leaf_that_could_not_take_the_request_is_avoided() {
        let snapshot = snapshot(FAILOVER);
        let app = &snapshot.services["app@file"];
        let mut avoid = Avoid::default();
        avoid.add(&snapshot.services["main@file"]);
        assert_eq!(leaf_name(app, &avoid).as_deref(), Some("spare@file"));
        avoid.add(&snapshot.services["spare@file"]);
        assert_eq!(leaf_name(app, &avoid), None, "nothing left: the caller answers");
    }

    #[test]
    fn weighted_children_rotate_smoothly_and_nest() {
        let snapshot = snapshot(
            r#"
            [http.services.outer.weighted]
            services = [{ name = "inner", weight = 1 }, { name = "c", weight = 1 }]
            [http.services.inner.weighted]
            services = [{ name = "a", weight = 3 }, { name = "b", weight = 1 }]
            [[http.services.a.loadBalancer.servers]]
            url = "http://127.0.0.1:9001"
            [[http.services.b.loadBalancer.servers]]
            url = "http://127.0.0.1:9002"
            [[http.services.c.loadBalancer.servers]]
            url = "http://127.0.0.1:9003"
            "#,
        );
        let outer = &snapshot.services["outer@file"];
        let picks: Vec<String> = (0..8).filter_map(|_| leaf_name(outer, &Avoid::default())).collect();
        // Outer 1:1 alternates; inner 3:1 goes a a b a (nginx's smooth order).
        assert_eq!(
            picks,
            ["a@file", "c@file", "a@file", "c@file", "b@file", "c@file", "a@file", "c@file"]
        );
    }
}
