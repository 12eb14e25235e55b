//! Merging only the routers that changed.
//!
//! Providers send full fragments, so a reload's input is the whole configuration even when one
//! router changed; merging all of it again costs time in proportion to the number of routers
//! (tens of milliseconds at 10,000). When the new fragments differ from the previous ones in
//! their HTTP routers only, and in few of them, [`patch_routers`] applies the difference to the
//! previous merged configuration instead: each changed router is validated as [`merge_cached`]
//! would, removed from or added to the routers map, and its name taken from or put into its
//! service's and its middlewares' `used_by` lists at the place a full merge would put it.
//!
//! The result must be the configuration a full merge would give, so anything the patch cannot
//! reproduce exactly declines it (`None`) and the caller merges in full: a router whose name has
//! an `@` (it could collide with another provider's) or a `.` (unsupported keys are filed by name
//! prefix), a service disabled (the compile step may have disabled it, with its routers), a
//! middleware list that does not resolve, or a middleware that gains its first user or loses its
//! last one (which changes what the compile step builds).
//!
//! The configuration patched is the one the compile step finished (its findings included); the
//! caller decides what the compile step would have changed for these routers (see
//! `drover::compile`).
//!
//! [`merge_cached`]: crate::aggregate::merge_cached

use std::sync::Arc;

use crate::aggregate::{disable, RuleCache};
use crate::model::{DynamicConfig, Router};
use crate::runtime::{RouterInfo, RuntimeConfig, Status};

/// The most routers a patch takes on; beyond it a full merge is as cheap and simpler.
pub const MOST_CHANGES: usize = 64;

/// One router that differs between two sets of fragments.
#[derive(Debug)]
pub struct Change<'a> {
    /// The index of its provider in the fragments.
    pub provider: usize,
    /// Its name in its provider's fragment.
    pub name: &'a str,
    /// As it was; `None`: added.
    pub old: Option<&'a Router>,
    /// As it is; `None`: removed.
    pub new: Option<&'a Router>,
}

/// What a patch did to the routers map.
#[derive(Debug, Default)]
pub struct Patched {
    /// The records taken out (as they were in the previous configuration).
    pub removed: Vec<Arc<RouterInfo>>,
    /// The records put in (as they are in the patched configuration).
    pub added: Vec<Arc<RouterInfo>>,
}

/// The HTTP routers that differ between fragments `old` and `new` (provider name → fragment),
/// or `None` when something else differs: the providers, or anything but their HTTP routers.
/// Fragments shared by `Arc` are not compared.
pub fn changed_routers<'a>(
    old: &'a [(Arc<str>, Arc<DynamicConfig>)],
    new: &'a [(Arc<str>, Arc<DynamicConfig>)],
) -> Option<Vec<Change<'a>>> {
    if old.len() != new.len() {
        return None;
    }
    let mut changes = Vec::new();
    for (provider, ((old_name, old), (new_name, new))) in old.iter().zip(new).enumerate() {
        if old_name != new_name {
            return None;
        }
        if Arc::ptr_eq(old, new) {
            continue;
        }
        if !old.same_but_http_routers(new) {
            return None;
        }
        // Both maps are sorted by name: one walk through both.
        let (mut a, mut b) = (old.http.routers.iter().peekable(), new.http.routers.iter().peekable());
        loop {
            let change = match (a.peek().copied(), b.peek().copied()) {
                (None, None) => break,
                (Some((name, r)), None) => {
                    a.next();
                    (name.as_str(), Some(r), None)
                }
                (None, Some((name, r))) => {
                    b.next();
                    (name.as_str(), None, Some(r))
                }
                (Some((x, r)), Some((y, s))) => match x.cmp(y) {
                    std::cmp::Ordering::Less => {
                        a.next();
                        (x.as_str(), Some(r), None)
                    }
                    std::cmp::Ordering::Greater => {
                        b.next();
                        (y.as_str(), None, Some(s))
                    }
                    std::cmp::Ordering::Equal => {
                        a.next();
                        b.next();
                        if r == s {
                            continue;
                        }
                        (x.as_str(), Some(r), Some(s))
                    }
                },
            };
            changes.push(Change {
                provider,
                name: change.0,
                old: change.1,
                new: change.2,
            });
            if changes.len() > MOST_CHANGES {
                return None;
            }
        }
    }
    Some(changes)
}

/// `previous` (the configuration merged and compiled from the fragments before `fragments`) with
/// the routers `changes` patched in, as [`crate::aggregate::merge_cached`] would merge them from
/// `fragments`; `None` when a full merge is needed (see the module's documentation). The
/// generation is left as it was.
pub fn patch_routers<C>(
    previous: &RuntimeConfig,
    fragments: &[(Arc<str>, Arc<DynamicConfig>)],
    changes: &[Change<'_>],
    entry_points: &[String],
    cache: &mut RuleCache<C>,
) -> Option<(RuntimeConfig, Patched)> {
    let mut patched = Patched::default();
    for change in changes {
        if change.name.contains(['@', '.']) {
            return None;
        }
        let provider = &*fragments[change.provider].0;
        let qualified = format!("{}@{provider}", change.name);
        match (change.old, previous.routers.get(&qualified)) {
            (Some(_), Some(info)) if info.provider == provider => patched.removed.push(info.clone()),
            (None, None) => {}
            // Another provider's router has this name (or the previous configuration is not the
            // one these fragments made).
            _ => return None,
        }
        let Some(router) = change.new else { continue };
        // The keys the router's validation reports, without walking every router for them.
        let unsupported = fragments[change.provider].1.unsupported_under_router(change.name);
        let mut info = cache.router(provider, change.name, router, entry_points, &unsupported);
        // The checks `merge_cached` makes against other objects, in its order.
        match previous.services.get(&info.service) {
            None => {
                let info = Arc::make_mut(&mut info);
                let why = format!("the service `{}` does not exist", info.service);
                disable(&mut info.status, &mut info.errors, why);
            }
            // Disabled by the merge or by the compile step, which disabled its routers then.
            Some(service) if service.status == Status::Disabled => return None,
            Some(_) => {}
        }
        if !info.middlewares.is_empty() {
            crate::middlewares::flatten(&previous.middlewares, &info.middlewares, &info.provider).ok()?;
        }
        patched.added.push(info);
    }

    let mut config = previous.clone();
    let providers: Vec<&str> = fragments.iter().map(|(name, _)| &**name).collect();
    let mut touched: Vec<String> = Vec::new();
    for info in &patched.removed {
        config.routers.remove(&info.name);
        if let Some(service) = config.services.get_mut(&info.service) {
            let at = service.used_by.iter().position(|r| *r == info.name)?;
            service.used_by.remove(at);
        }
        for name in crate::middlewares::on_the_way(&previous.middlewares, &info.middlewares, &info.provider) {
            let Some(m) = config.middlewares.get_mut(&name) else { continue };
            // Routers are recorded in name order (`resolve_routers` walks the routers map).
            if let Ok(at) = m.used_by.binary_search(&info.name) {
                m.used_by.remove(at);
            }
            touched.push(name);
        }
    }
    for info in &patched.added {
        if let Some(service) = config.services.get_mut(&info.service) {
            // Routers are recorded in the fragments' order: by provider, then by name.
            let mine = used_by_key(&providers, &info.name)?;
            let mut keys = Vec::with_capacity(service.used_by.len());
            for name in &service.used_by {
                keys.push(used_by_key(&providers, name)?);
            }
            let at = keys.partition_point(|k| *k < mine);
            service.used_by.insert(at, info.name.clone());
        }
        if !info.middlewares.is_empty() {
            for name in crate::middlewares::on_the_way(&previous.middlewares, &info.middlewares, &info.provider) {
                let Some(m) = config.middlewares.get_mut(&name) else { continue };
                if let Err(at) = m.used_by.binary_search(&info.name) {
                    m.used_by.insert(at, info.name.clone());
                }
                touched.push(name);
            }
        }
        if info.status == Status::Disabled {
            tracing::warn!(router = %info.name, "router disabled: {}", info.errors.join("; "));
        }
        config.routers.insert(info.name.clone(), info.clone());
    }
    // What the compile step builds depends on which middlewares have users.
    for name in &touched {
        let before = previous.middlewares.get(name).is_some_and(|m| m.used_by.is_empty());
        let after = config.middlewares.get(name).is_some_and(|m| m.used_by.is_empty());
        if before != after {
            return None;
        }
    }

    // What the cache keeps for routers and rules nobody has any more.
    for change in changes.iter().filter(|c| c.new.is_none()) {
        cache.forget_router(&fragments[change.provider].0, change.name);
    }
    for info in &patched.removed {
        if !config.routers.values().any(|r| r.rule == info.rule) {
            cache.forget_rule(&info.rule);
        }
    }
    Some((config, patched))
}

/// Where router `name` (qualified) stands in a service's `used_by`: its provider's index, then its
/// own name; `None` for a name that does not split into the two unambiguously.
fn used_by_key<'n>(providers: &[&str], name: &'n str) -> Option<(usize, &'n str)> {
    let (local, provider) = name.split_once('@')?;
    if local.contains('.') || provider.contains('@') {
        return None;
    }
    Some((providers.iter().position(|p| *p == provider)?, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routers_unsupported_keys_are_those_a_full_walk_files_under_its_name() {
        let mut text = String::new();
        for name in ["a", "a b", "a-b", "a.b", "a.c", "a/b", "ab", "b", "b.a"] {
            text.push_str(&format!(
                "[http.routers.\"{name}\"]\nrule = \"Path(`/`)\"\nservice = \"s\"\nruleSyntax = \"v2\"\n"
            ));
        }
        let config = DynamicConfig::from_toml(&text).expect("parses");
        for name in ["a", "a.b", "b", "c", "a b"] {
            let prefix = format!("http.routers.{name}.");
            let all: Vec<String> = config.unsupported().into_iter().filter(|k| k.starts_with(&prefix)).collect();
            assert_eq!(config.unsupported_under_router(name), all, "{name}");
        }
        assert_eq!(config.unsupported_under_router("a").len(), 3, "a, a.b and a.c");
    }

    #[test]
    fn only_a_change_to_http_routers_is_listed_and_shared_fragments_are_skipped() {
        let parse = |text: &str| Arc::new(DynamicConfig::from_toml(text).expect("parses"));
        let base = "[http.routers.a]\nrule = \"Path(`/a`)\"\nservice = \"s\"\n[http.routers.b]\nrule = \"Path(`/b`)\"\nservice = \"s\"\n";
        let old = vec![(Arc::from("file"), parse(base))];
        let same = vec![(Arc::from("file"), old[0].1.clone())];
        assert!(changed_routers(&old, &same).expect("routers only").is_empty());
        let changed = base.replace("/b", "/c").replace("[http.routers.a]", "[http.routers.z]");
        let new = vec![(Arc::from("file"), parse(&changed))];
        let changes = changed_routers(&old, &new).expect("routers only");
        let names: Vec<(&str, bool, bool)> = changes.iter().map(|c| (c.name, c.old.is_some(), c.new.is_some())).collect();
        assert_eq!(names, [("a", true, false), ("b", true, true), ("z", false, true)]);
        let service = format!("{base}[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:1\"\n");
        assert!(
            changed_routers(&old, &[(Arc::from("file"), parse(&service))]).is_none(),
            "a service changed"
        );
        assert!(
            changed_routers(&old, &[(Arc::from("docker"), parse(base))]).is_none(),
            "another provider"
        );
    }
}
