//! Reloads in proportion to the change: a reload whose fragments differ from the last ones in a
//! few HTTP routers patches the last snapshot instead of merging and compiling everything.
//!
//! Providers send full fragments, so at 10,000 routers a full reload merges and compiles 10,000
//! routers whatever changed: tens of milliseconds, on every change of one container. The patch
//! compares each provider's fragment with the last one (a fragment shared by `Arc` is not even
//! compared), merges the routers that differ into the last configuration
//! ([`incremental::patch_routers`]), compiles their routes, and updates the route tables of the
//! entrypoints they use by removing and inserting in rank order; everything else (services,
//! middlewares, TLS, TCP and UDP, the other tables) is shared with the last snapshot.
//!
//! Its result must be the snapshot a full reload would make, so it declines whatever it cannot
//! reproduce exactly and the full reload runs: a change to anything but HTTP routers, TLS routers
//! (whose hosts decide certificates and options for others), entrypoint default middlewares, a
//! router the compile step would turn off, more than [`incremental::MOST_CHANGES`] routers. The
//! test below checks random sequences of changes against full reloads.

use std::collections::HashMap;
use std::sync::Arc;

use drover_providers::aggregate::Fragments;
use drover_providers::incremental;
use drover_providers::model::DynamicConfig;
use drover_providers::runtime::{RouterInfo, RuntimeConfig, Status};

use super::{Compiler, Timings};
use crate::metrics::Metrics;
use crate::routing::{RouteEntry, RouteTable};
use crate::snapshot::{Route, Service, Snapshot};

/// The last reload's fragments and what they compiled to, kept so that a reload that changes a
/// few routers patches them ([`Compiler::patch`]) instead of merging and compiling everything.
#[derive(Debug)]
pub(super) struct Last {
    generation: u64,
    fragments: Vec<(Arc<str>, Arc<DynamicConfig>)>,
    config: Arc<RuntimeConfig>,
    entry_points: Vec<Arc<RouteTable<Arc<Route>>>>,
    tls_entry_points: Vec<Arc<RouteTable<Arc<Route>>>>,
    tls: Arc<crate::tls::TlsSnapshot>,
    services: HashMap<String, Arc<Service>>,
    l4: Arc<crate::l4::TcpTables>,
}

impl Last {
    /// The last snapshot's service `name`.
    pub(super) fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.get(name)
    }

    pub(super) fn of(fragments: &Fragments, snapshot: &Snapshot) -> Self {
        Self {
            generation: fragments.generation,
            fragments: fragments.fragments.clone(),
            config: snapshot.config.clone(),
            entry_points: snapshot.entry_points.clone(),
            tls_entry_points: snapshot.tls_entry_points.clone(),
            tls: snapshot.tls.clone(),
            services: snapshot.services.clone(),
            l4: snapshot.l4.clone(),
        }
    }
}

impl Compiler {
    /// The reload of `fragments` as a patch of the last one, when it differs from it in a few
    /// HTTP routers (none of them TLS routers) and nothing else; `None` when it must be merged
    /// and compiled in full. The snapshot is the one a full reload would make: routers the patch
    /// cannot reproduce exactly decline it (see [`incremental`]), and so, here, does a router the
    /// compile step would turn off. Services, middlewares, TLS and L4 are shared with the last
    /// snapshot, and so are the route tables of entrypoints no changed router uses.
    pub(super) fn patch(&mut self, fragments: &Fragments, metrics: &Metrics, started: std::time::Instant) -> Option<Snapshot> {
        if std::mem::take(&mut self.full_next) {
            return None;
        }
        let last = Box::new(self.last.take()?);
        match self.patch_last(last, fragments, metrics, started) {
            Ok(snapshot) => Some(snapshot),
            // Kept for the full compile that follows, which continues the balancers' cursors.
            Err(last) => {
                self.last = Some(*last);
                None
            }
        }
    }

    /// [`Compiler::patch`] of `last`; `Err` gives `last` back when the reload is declined.
    fn patch_last(
        &mut self,
        last: Box<Last>,
        fragments: &Fragments,
        metrics: &Metrics,
        started: std::time::Instant,
    ) -> Result<Snapshot, Box<Last>> {
        // The same generation again is a recompilation for files read while compiling.
        if last.generation == fragments.generation || self.entry_point_middlewares.values().any(|m| !m.is_empty()) {
            return Err(last);
        }
        let Some(changes) = incremental::changed_routers(&last.fragments, &fragments.fragments) else {
            return Err(last);
        };
        if changes.iter().any(|c| c.old.into_iter().chain(c.new).any(|r| r.tls.is_some())) {
            return Err(last);
        }
        let Some((mut config, patched)) =
            incremental::patch_routers(&last.config, &fragments.fragments, &changes, &self.entry_points, &mut self.rules)
        else {
            return Err(last);
        };
        config.generation = fragments.generation;
        // Routers on an entrypoint with TLS defaults are TLS routers there.
        let on_tls = |info: &RouterInfo| {
            self.entry_points
                .iter()
                .zip(&self.tls.entry_points)
                .any(|(ep, tls)| tls.is_some() && info.using.contains(ep))
        };
        if patched.removed.iter().chain(&patched.added).any(|info| on_tls(info)) {
            return Err(last);
        }
        let merged = std::time::Instant::now();
        let mut built = std::mem::take(&mut self.built);
        let mut added: Vec<Vec<RouteEntry<Arc<Route>>>> = self.entry_points.iter().map(|_| Vec::new()).collect();
        for info in &patched.added {
            if info.status == Status::Disabled {
                continue;
            }
            let Some(rule) = &info.parsed else { continue };
            match self.routes_of(info, rule, &config, &last.services, &mut built, None, metrics) {
                Ok(entries) => {
                    for (i, _, entry) in entries {
                        added[i].push(entry);
                    }
                }
                Err(_) => {
                    self.built = built;
                    return Err(last);
                }
            }
        }
        self.built = built;
        let mut tables = last.entry_points.clone();
        for ((table, ep), added) in tables.iter_mut().zip(&self.entry_points).zip(added) {
            let removed: Vec<(i64, &str)> = patched
                .removed
                .iter()
                .filter(|info| info.using.contains(ep))
                .map(|info| (info.priority, info.name.as_str()))
                .collect();
            if !removed.is_empty() || !added.is_empty() {
                *table = Arc::new(table.patched(&removed, added));
            }
        }
        let config = Arc::new(config);
        let snapshot = Snapshot {
            config: config.clone(),
            entry_points: tables.clone(),
            tls_entry_points: last.tls_entry_points.clone(),
            tls: last.tls.clone(),
            services: last.services.clone(),
            l4: last.l4.clone(),
        };
        self.last = Some(Last {
            generation: fragments.generation,
            fragments: fragments.fragments.clone(),
            config,
            entry_points: tables,
            ..*last
        });
        self.timings = Timings {
            merge: merged - started,
            compile: merged.elapsed(),
            patched: true,
        };
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::health::HealthRegistry;
    use crate::routing::testing::Req;
    use crate::upstream::{Transport, Upstreams};

    /// A router as the test writes it into a fragment.
    #[derive(Clone, Debug)]
    struct Spec {
        rule: String,
        service: String,
        middlewares: Vec<&'static str>,
        entry_points: Vec<&'static str>,
        priority: i64,
        tls: bool,
        unsupported: bool,
    }

    const RULES: [&str; 7] = [
        "Host(`h{k}.test`)",
        "Host(`h{k}.test`) && PathPrefix(`/x`)",
        "PathPrefix(`/p{k}`)",
        "HostRegexp(`^r{k}\\.test$`)",
        "Host(`h{k}.test`, `w{k}.test`) || Path(`/o`)",
        "Host(`h{k}.test`",
        "HostSNI(`nope`)",
    ];
    const SERVICES: [&str; 6] = ["s0", "s1", "s2", "split", "missing", "s0@file"];
    const MIDDLEWARES: [&str; 6] = ["strip", "add", "both", "spare", "nope", "strip@file"];
    const ENTRY_POINTS: [&[&str]; 4] = [&[], &["web"], &["admin"], &["web", "admin"]];

    fn spec(rng: &mut fastrand::Rng) -> Spec {
        let k = rng.usize(0..12);
        let rule = RULES[if rng.u8(0..20) == 0 { rng.usize(5..7) } else { rng.usize(0..5) }].replace("{k}", &k.to_string());
        let mut middlewares = Vec::new();
        for _ in 0..rng.usize(0..3) {
            middlewares.push(MIDDLEWARES[if rng.u8(0..10) == 0 { rng.usize(3..6) } else { rng.usize(0..3) }]);
        }
        Spec {
            rule,
            service: SERVICES[if rng.u8(0..10) == 0 { rng.usize(3..6) } else { rng.usize(0..3) }].to_string(),
            middlewares,
            entry_points: ENTRY_POINTS[rng.usize(0..4)].to_vec(),
            priority: if rng.bool() { 0 } else { rng.i64(-2..3) },
            tls: rng.u8(0..15) == 0,
            unsupported: rng.u8(0..15) == 0,
        }
    }

    /// One provider's fragment: its routers, and the services and middlewares every fragment has
    /// (`extra` changes a server, which only a full reload takes).
    fn fragment(routers: &BTreeMap<String, Spec>, extra: u8) -> Arc<DynamicConfig> {
        let mut text = String::new();
        for (name, r) in routers {
            text.push_str(&format!(
                "[http.routers.\"{name}\"]\nrule = {:?}\nservice = {:?}\n",
                r.rule, r.service
            ));
            text.push_str(&format!("middlewares = {:?}\nentryPoints = {:?}\n", r.middlewares, r.entry_points));
            if r.priority != 0 {
                text.push_str(&format!("priority = {}\n", r.priority));
            }
            if r.unsupported {
                text.push_str("ruleSyntax = \"v2\"\n");
            }
            if r.tls {
                text.push_str("tls = {}\n");
            }
        }
        for s in 0..3 {
            text.push_str(&format!(
                "[[http.services.s{s}.loadBalancer.servers]]\nurl = \"http://127.0.0.1:{}\"\n",
                9000 + s
            ));
        }
        text.push_str(&format!(
            "[[http.services.s0.loadBalancer.servers]]\nurl = \"http://127.0.0.2:{}\"\n",
            9000 + extra as u16
        ));
        text.push_str(
            "[[http.services.split.weighted.services]]\nname = \"s1\"\n[[http.services.split.weighted.services]]\nname = \"s2\"\n",
        );
        text.push_str("[http.middlewares.strip.stripPrefix]\nprefixes = [\"/x\"]\n");
        text.push_str("[http.middlewares.add.addPrefix]\nprefix = \"/a\"\n");
        text.push_str("[http.middlewares.both.chain]\nmiddlewares = [\"strip\", \"add\"]\n");
        text.push_str("[http.middlewares.spare.addPrefix]\nprefix = \"/s\"\n");
        Arc::new(DynamicConfig::from_toml(&text).expect("the test's fragment parses"))
    }

    /// What a snapshot shows and routes: the configuration as the API shows it, every table's
    /// routes in order with their service and middlewares, and the candidates the host index
    /// gives for a few requests.
    fn observed(snapshot: &Snapshot) -> (serde_json::Value, Vec<Vec<String>>) {
        let config = serde_json::to_value(&*snapshot.config).expect("the configuration serializes");
        let mut tables = Vec::new();
        for table in snapshot.entry_points.iter().chain(&snapshot.tls_entry_points) {
            let mut seen: Vec<String> = table
                .routes()
                .map(|(name, priority, route)| {
                    let chain = route.middlewares.as_ref().map(|c| c.names().join(","));
                    format!("{name} {priority} {} {chain:?} {}", route.service.name, route.router)
                })
                .collect();
            for k in 0..12 {
                for (host, path) in [
                    (format!("h{k}.test"), "/x/y"),
                    (format!("w{k}.test"), "/o"),
                    (format!("r{k}.test"), "/p3"),
                ] {
                    let req = Req::get(&host, path);
                    let view = req.view();
                    let candidates: Vec<String> = table.iter_candidates(&view).map(|(name, _, hit)| format!("{name}:{hit}")).collect();
                    seen.push(format!("{host}{path} → {}", candidates.join(" ")));
                }
            }
            tables.push(seen);
        }
        (config, tables)
    }

    #[test]
    fn a_patched_reload_is_the_snapshot_a_full_reload_makes() {
        let entry_points: Vec<String> = vec!["web".into(), "admin".into()];
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        let mut patched_reloads = 0;
        let mut reloads = 0;
        for seed in 0..12u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut compiler = Compiler::new(entry_points.clone(), Upstreams::new(Transport::default()));
            let providers = ["docker", "file"];
            let mut routers: Vec<BTreeMap<String, Spec>> = providers
                .iter()
                .map(|_| (0..30).map(|i| (format!("r{i}"), spec(&mut rng))).collect())
                .collect();
            let mut extra = 0u8;
            let mut fragments: Vec<(Arc<str>, Arc<DynamicConfig>)> = providers
                .iter()
                .zip(&routers)
                .map(|(p, r)| (Arc::from(*p), fragment(r, extra)))
                .collect();
            for generation in 1..60u64 {
                // 1 to 3 changes in one provider; now and then in both, or to a service.
                let changed: Vec<usize> = match rng.u8(0..10) {
                    0 => vec![0, 1],
                    1 => vec![],
                    _ => vec![rng.usize(0..2)],
                };
                for &p in &changed {
                    for _ in 0..rng.usize(1..4) {
                        let routers = &mut routers[p];
                        let name = format!("r{}", rng.usize(0..40));
                        match rng.u8(0..6) {
                            0 => {
                                routers.remove(&name);
                            }
                            1 if rng.u8(0..10) == 0 => {
                                // A dotted name: its unsupported keys are filed under `r<n>`
                                // too, which the patch must reproduce for a change to `r<n>`.
                                routers.insert(format!("r{}.x", rng.usize(0..40)), spec(&mut rng));
                            }
                            _ => {
                                routers.insert(name, spec(&mut rng));
                            }
                        }
                    }
                    fragments[p].1 = fragment(&routers[p], extra);
                }
                if rng.u8(0..12) == 0 {
                    extra += 1;
                    let p = rng.usize(0..2);
                    fragments[p].1 = fragment(&routers[p], extra);
                }
                let fragments = Fragments {
                    generation,
                    fragments: fragments.clone(),
                };
                let snapshot = compiler.reload(&fragments, &health, &metrics);
                reloads += 1;
                patched_reloads += usize::from(compiler.timings().patched);
                let fresh = Compiler::new(entry_points.clone(), Upstreams::new(Transport::default())).reload(
                    &fragments,
                    &HealthRegistry::default(),
                    &Metrics::default(),
                );
                let (got, want) = (observed(&snapshot), observed(&fresh));
                assert_eq!(got.0, want.0, "seed {seed}, generation {generation}: the configuration");
                assert_eq!(got.1, want.1, "seed {seed}, generation {generation}: the route tables");
                let mut names: Vec<&String> = snapshot.services.keys().collect();
                let mut fresh_names: Vec<&String> = fresh.services.keys().collect();
                names.sort();
                fresh_names.sort();
                assert_eq!(names, fresh_names, "seed {seed}, generation {generation}: the services");
            }
        }
        // Most changes are a few plain routers: the test must exercise the patch, not only
        // the full reloads it falls back to.
        eprintln!("STATS {patched_reloads} of {reloads} reloads patched");
        assert!(patched_reloads * 3 > reloads, "{patched_reloads} of {reloads} reloads patched");
    }

    #[test]
    fn a_reload_of_the_same_generation_and_a_forgotten_last_are_full() {
        let text = "[http.routers.a]\nrule = \"Host(`a.test`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9001\"\n";
        let changed = text.replace("a.test", "b.test");
        let fragments = |generation, text: &str| Fragments {
            generation,
            fragments: vec![("file".into(), Arc::new(DynamicConfig::from_toml(text).expect("parses")))],
        };
        let mut compiler = Compiler::new(vec!["web".into()], Upstreams::new(Transport::default()));
        let (health, metrics) = (HealthRegistry::default(), Metrics::default());
        compiler.reload(&fragments(1, text), &health, &metrics);
        assert!(!compiler.timings().patched, "the first reload");
        let snapshot = compiler.reload(&fragments(2, &changed), &health, &metrics);
        assert!(compiler.timings().patched, "one router changed");
        let found = snapshot.entry_points[0].find(&Req::get("b.test", "/").view());
        assert_eq!(found.map(|r| &*r.router), Some("a@file"));
        assert!(snapshot.entry_points[0].find(&Req::get("a.test", "/").view()).is_none());
        compiler.reload(&fragments(2, &changed), &health, &metrics);
        assert!(!compiler.timings().patched, "the same generation is compiled again in full");
        compiler.forget_last();
        compiler.reload(&fragments(3, text), &health, &metrics);
        assert!(!compiler.timings().patched, "after forget_last");
    }
}
