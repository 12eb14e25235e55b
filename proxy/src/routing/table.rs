//! The route table: routers in priority order, indexed by the hosts their rules require.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{CompiledRule, HostPattern, RequestView};

/// One router as handed to [`RouteTable::build`]. Every part is shared, so that a reload builds
/// the entries of unchanged routers without allocating.
pub struct RouteEntry<T> {
    /// The router's name; breaks priority ties (ascending).
    pub name: Arc<str>,
    /// The router's priority; higher is tried first.
    pub priority: i64,
    /// The router's compiled rule.
    pub rule: CompiledRule,
    /// [`Rule::required_hosts`](drover_providers::rule::Rule::required_hosts) of the same rule.
    pub hosts: Option<Arc<[HostPattern]>>,
    /// What a match yields (the router's service, middlewares, …).
    pub payload: T,
}

struct Route<T> {
    name: Arc<str>,
    priority: i64,
    rule: CompiledRule,
    /// Kept for [`RouteTable::patched`], which files the routes again.
    hosts: Option<Arc<[HostPattern]>>,
    payload: T,
}

/// Whether a route of `priority` named `name` is tried before one of `other` named `other_name`.
fn rank(priority: i64, name: &str, other: i64, other_name: &str) -> std::cmp::Ordering {
    other.cmp(&priority).then_with(|| name.cmp(other_name))
}

/// Routers in the order they are tried, with a host index that keeps lookups independent of
/// the number of host-based routers.
pub struct RouteTable<T> {
    /// Every router, sorted by rank (priority descending, then name ascending).
    routes: Vec<Route<T>>,
    /// Ranks of routers that require an exact host, by host; each list ascending.
    exact: HashMap<Box<str>, Box<[usize]>>,
    /// Ranks of routers that accept `*.parent`, by parent domain; each list ascending.
    wildcard: HashMap<Box<str>, Box<[usize]>>,
    /// Ranks of routers with no host requirement, ascending.
    hostless: Box<[usize]>,
}

impl<T> RouteTable<T> {
    /// Sorts the routers and builds the host index.
    pub fn build(entries: Vec<RouteEntry<T>>) -> Self {
        // Sorted by index rather than in place: an entry is large, and moving each one a dozen
        // times was most of the cost of a 10,000-router table.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        if entries.is_sorted_by(|a, b| a.name < b.name) {
            // Already in name order (as the compiler hands them over): a stable sort by priority
            // alone keeps that order among equal priorities, without comparing names again.
            order.sort_by_key(|&i| std::cmp::Reverse(entries[i].priority));
        } else {
            order.sort_by(|&a, &b| {
                let (a, b) = (&entries[a], &entries[b]);
                b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name))
            });
        }
        let count = entries.len();
        let mut slots: Vec<Option<RouteEntry<T>>> = entries.into_iter().map(Some).collect();
        Self::ranked(order.into_iter().filter_map(|i| slots[i].take()), count)
    }

    /// The table of `entries` given in rank order (`count` of them), with its host index.
    fn ranked(entries: impl Iterator<Item = RouteEntry<T>>, count: usize) -> Self {
        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut hostless = Vec::new();
        let mut routes = Vec::with_capacity(count);
        for (rank, entry) in entries.enumerate() {
            // Ranks are pushed in increasing order, so every list stays sorted; a router naming
            // the same host twice is filed once.
            let file = |bucket: &mut Vec<usize>| {
                if bucket.last() != Some(&rank) {
                    bucket.push(rank);
                }
            };
            // A list that includes `Any` does not narrow anything down.
            match entry.hosts.as_deref().filter(|h| !h.contains(&HostPattern::Any)) {
                Some(hosts) => {
                    for host in hosts {
                        match host {
                            HostPattern::Exact(h) => file(exact.entry(h.as_str().into()).or_default()),
                            HostPattern::Wildcard(p) => file(wildcard.entry(p.as_str().into()).or_default()),
                            HostPattern::Any => {}
                        }
                    }
                }
                None => hostless.push(rank),
            }
            routes.push(Route {
                name: entry.name,
                priority: entry.priority,
                rule: entry.rule,
                hosts: entry.hosts,
                payload: entry.payload,
            });
        }
        let freeze = |map: HashMap<Box<str>, Vec<usize>>| map.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect();
        RouteTable {
            routes,
            exact: freeze(exact),
            wildcard: freeze(wildcard),
            hostless: hostless.into_boxed_slice(),
        }
    }

    /// This table without the routers `removed` (priority and name; absent ones are skipped) and
    /// with `added`: the same table [`Self::build`] makes of the routers that are left, with the
    /// unchanged routes shared rather than sorted again.
    pub fn patched(&self, removed: &[(i64, &str)], mut added: Vec<RouteEntry<T>>) -> Self
    where
        T: Clone,
    {
        let mut gone: Vec<usize> = removed
            .iter()
            .filter_map(|(priority, name)| self.routes.binary_search_by(|r| rank(r.priority, &r.name, *priority, name)).ok())
            .collect();
        gone.sort_unstable();
        gone.dedup();
        added.sort_by(|a, b| rank(a.priority, &a.name, b.priority, &b.name));
        let count = self.routes.len() - gone.len() + added.len();
        let mut gone = gone.into_iter().peekable();
        let mut added = added.into_iter().peekable();
        let mut entries = Vec::with_capacity(count);
        for (at, route) in self.routes.iter().enumerate() {
            while let Some(entry) = added.next_if(|e| rank(e.priority, &e.name, route.priority, &route.name).is_lt()) {
                entries.push(entry);
            }
            if gone.next_if_eq(&at).is_some() {
                continue;
            }
            entries.push(RouteEntry {
                name: route.name.clone(),
                priority: route.priority,
                rule: route.rule.clone(),
                hosts: route.hosts.clone(),
                payload: route.payload.clone(),
            });
        }
        entries.extend(added);
        let count = entries.len();
        Self::ranked(entries.into_iter(), count)
    }

    /// The payload of the highest-ranked router whose rule matches the request.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&T> {
        self.candidates(req)
            .map(|rank| &self.routes[rank])
            .find(|route| route.rule.matches(req))
            .map(|route| &route.payload)
    }

    /// Every router that could match the request, in the order `find` tries them, with whether
    /// it matches. Routers the host index rules out are not listed: their rules cannot match.
    pub fn iter_candidates<'s, 'r>(&'s self, req: &'s RequestView<'r>) -> impl Iterator<Item = (&'s str, &'s T, bool)> + use<'s, 'r, T> {
        self.candidates(req).map(move |rank| {
            let route = &self.routes[rank];
            (&*route.name, &route.payload, route.rule.matches(req))
        })
    }

    /// Every router in the order they are tried: name, priority and payload.
    pub fn routes(&self) -> impl Iterator<Item = (&str, i64, &T)> {
        self.routes.iter().map(|r| (&*r.name, r.priority, &r.payload))
    }

    /// The number of routers.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routers.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Ranks of the routers that can match a request for this host, in order.
    fn candidates(&self, req: &RequestView<'_>) -> Candidates<'_> {
        let host = req.host;
        let exact = self.exact.get(host).map_or(&[][..], |b| &b[..]);
        let wildcard = match host.split_once('.') {
            Some((label, parent)) if !label.is_empty() => self.wildcard.get(parent).map_or(&[][..], |b| &b[..]),
            _ => &[],
        };
        Candidates {
            lists: [exact, wildcard, &self.hostless],
        }
    }
}

/// A merge of the sorted candidate lists of one request: ascending ranks, each once.
#[derive(Clone, Debug)]
struct Candidates<'a> {
    lists: [&'a [usize]; 3],
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let next = self.lists.iter().filter_map(|l| l.first()).min().copied()?;
        for list in &mut self.lists {
            if list.first() == Some(&next) {
                *list = &list[1..];
            }
        }
        Some(next)
    }
}

impl<T: fmt::Debug> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes().collect::<Vec<_>>())
            .field("exact_hosts", &self.exact.len())
            .field("wildcard_parents", &self.wildcard.len())
            .field("hostless", &self.hostless.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Req;
    use super::*;

    fn entry(name: &str, priority: i64, src: &str) -> RouteEntry<String> {
        let rule = drover_providers::rule::parse(src).expect("test rule parses");
        RouteEntry {
            name: name.into(),
            priority,
            rule: CompiledRule::compile(&rule).expect("test rule compiles"),
            hosts: rule.required_hosts().map(Into::into),
            payload: name.to_owned(),
        }
    }

    /// Routers with Traefik's default priority, the rule length.
    fn table(routers: &[(&str, &str)]) -> RouteTable<String> {
        let entries = routers.iter().map(|(name, src)| entry(name, src.len() as i64, src)).collect();
        RouteTable::build(entries)
    }

    fn find<'t>(table: &'t RouteTable<String>, req: &Req) -> Option<&'t str> {
        table.find(&req.view()).map(String::as_str)
    }

    #[test]
    fn routes_by_host_wildcard_and_any() {
        let t = table(&[
            ("api", "Host(`api.example.com`)"),
            ("wild", "Host(`*.example.com`)"),
            ("www", "Host(`www.example.com`) || Host(`example.com`)"),
            ("fallback", "Host(`*`)"),
        ]);
        assert_eq!(find(&t, &Req::get("API.example.com:443", "/")), Some("api"));
        assert_eq!(find(&t, &Req::get("example.com.", "/")), Some("www"));
        assert_eq!(find(&t, &Req::get("www.example.com", "/")), Some("www"));
        assert_eq!(find(&t, &Req::get("shop.example.com", "/")), Some("wild"));
        assert_eq!(find(&t, &Req::get("a.shop.example.com", "/")), Some("fallback"));
        assert_eq!(find(&t, &Req::get("other.org", "/")), Some("fallback"));
        assert_eq!(find(&t, &Req::get("", "/")), Some("fallback"));
    }

    #[test]
    fn no_match_without_a_catch_all() {
        let t = table(&[("api", "Host(`api.example.com`) && PathPrefix(`/v1`)")]);
        assert_eq!(find(&t, &Req::get("api.example.com", "/v1/x")), Some("api"));
        assert_eq!(find(&t, &Req::get("api.example.com", "/v2/x")), None);
        assert_eq!(find(&t, &Req::get("web.example.com", "/v1/x")), None);
    }

    #[test]
    fn path_header_method_and_query_routing() {
        let t = table(&[
            ("api", "Host(`a.com`) && PathPrefix(`/api`)"),
            ("canary", "Host(`a.com`) && PathPrefix(`/api`) && Header(`X-Canary`, `1`)"),
            ("writes", "Host(`a.com`) && PathPrefix(`/api`) && !Method(`GET`) && !Method(`HEAD`)"),
            ("debug", "Host(`a.com`) && Query(`debug`) && PathPrefix(`/`)"),
            ("site", "Host(`a.com`)"),
        ]);
        assert_eq!(find(&t, &Req::get("a.com", "/api/x")), Some("api"));
        assert_eq!(find(&t, &Req::get("a.com", "/api/x").header("x-canary", "1")), Some("canary"));
        assert_eq!(find(&t, &Req::get("a.com", "/api/x").method(http::Method::POST)), Some("writes"));
        assert_eq!(find(&t, &Req::get("a.com", "/index?debug")), Some("debug"));
        assert_eq!(find(&t, &Req::get("a.com", "/index?debug=1")), Some("site"));
    }

    #[test]
    fn priority_then_name_decides() {
        let t = RouteTable::build(vec![
            entry("b-high", 10, "PathPrefix(`/`)"),
            entry("z-low", -5, "PathPrefix(`/`)"),
            entry("c-tie", 100, "PathPrefix(`/`)"),
            entry("a-tie", 100, "PathPrefix(`/`)"),
            entry("host", 50, "Host(`h.com`)"),
        ]);
        let order: Vec<&str> = t.routes().map(|(name, _, _)| name).collect();
        assert_eq!(order, ["a-tie", "c-tie", "host", "b-high", "z-low"]);
        assert_eq!(find(&t, &Req::get("h.com", "/")), Some("a-tie"));

        let req = Req::get("h.com", "/");
        let view = req.view();
        let tried: Vec<(&str, bool)> = t.iter_candidates(&view).map(|(name, _, matched)| (name, matched)).collect();
        assert_eq!(
            tried,
            [("a-tie", true), ("c-tie", true), ("host", true), ("b-high", true), ("z-low", true)]
        );
        // Reversed input gives the same order.
        let reversed = RouteTable::build(vec![entry("a-tie", 100, "PathPrefix(`/`)"), entry("c-tie", 100, "PathPrefix(`/`)")]);
        assert_eq!(find(&reversed, &Req::get("x", "/")), Some("a-tie"));
    }

    #[test]
    fn longer_rule_wins_by_default() {
        // Traefik's documented example: the longer HostRegexp rule outranks the Host rule.
        let t = table(&[
            ("host", "Host(`foobar.traefik.com`)"),
            ("regexp", r"HostRegexp(`[a-z]+\.traefik\.com`)"),
        ]);
        assert_eq!(find(&t, &Req::get("foobar.traefik.com", "/")), Some("regexp"));
    }

    #[test]
    fn index_merges_exact_wildcard_and_hostless_in_rank_order() {
        let t = RouteTable::build(vec![
            entry("exact", 1, "Host(`a.b.com`)"),
            entry("wild", 3, "Host(`*.b.com`)"),
            entry("any", 2, "PathPrefix(`/`)"),
            entry("both", 4, "(Host(`a.b.com`) || Host(`*.b.com`)) && Path(`/only`)"),
            entry("negated", 5, "!Host(`a.b.com`)"),
            entry("elsewhere", 9, "Host(`c.com`)"),
        ]);
        let req = Req::get("a.b.com", "/");
        let view = req.view();
        let tried: Vec<(&str, bool)> = t.iter_candidates(&view).map(|(name, _, matched)| (name, matched)).collect();
        assert_eq!(
            tried,
            [("negated", false), ("both", false), ("wild", true), ("any", true), ("exact", true)]
        );
        assert_eq!(find(&t, &req), Some("wild"));
        assert_eq!(find(&t, &Req::get("x.c.com", "/")), Some("negated"));
    }

    #[test]
    fn ten_thousand_host_routers_each_route_correctly() {
        let entries: Vec<RouteEntry<String>> = (0..10_000)
            .map(|i| {
                let src = format!("Host(`host{i}.example.com`) && PathPrefix(`/`)");
                entry(&format!("r{i}"), src.len() as i64, &src)
            })
            .chain([entry("wild", 1, "Host(`*.wild.example.com`)")])
            .collect();
        let t = RouteTable::build(entries);
        assert_eq!(t.len(), 10_001);
        for i in 0..10_000 {
            let req = Req::get(&format!("Host{i}.example.com"), "/x");
            assert_eq!(find(&t, &req).map(str::to_owned), Some(format!("r{i}")));
            // The index hands `find` exactly one candidate.
            assert_eq!(t.iter_candidates(&req.view()).count(), 1);
        }
        assert_eq!(find(&t, &Req::get("w.wild.example.com", "/")), Some("wild"));
        assert_eq!(find(&t, &Req::get("host10000.example.com", "/")), None);
        assert_eq!(t.iter_candidates(&Req::get("nope.org", "/").view()).count(), 0);
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t: RouteTable<String> = RouteTable::build(Vec::new());
        assert!(t.is_empty());
        assert_eq!(find(&t, &Req::get("a", "/")), None);
    }
}
