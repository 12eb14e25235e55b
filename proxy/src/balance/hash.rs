//! Hashing a request onto a server: consistent hashing (ketama, drover's `hash.key`) and
//! rendezvous hashing on the client IP (Traefik's `hrw`).
//!
//! Both keep a key on its server while the server set stays the same, and when one server is
//! removed only the keys it owned move. Ketama (pingora-ketama, nginx's and memcached's ring)
//! places 160 points per weight unit on a ring; a key goes to the first point at or after its
//! hash, and when that server is out, to the next distinct server along the ring. The ring is
//! built once per snapshot; a lookup is a CRC32 and a binary search.
//!
//! pingora-ketama names nodes by socket address. drover's servers are URLs (host names too), so
//! each gets a stand-in IPv6 address made from a hash of its URL: the ring then depends only on
//! which servers there are, never on their order or on DNS.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};

use drover_providers::balancing::fnv1a;
use pingora_ketama::{Bucket, Continuum};

/// A ketama ring over a service's servers.
pub struct Ring {
    continuum: Continuum,
    /// Stand-in address → server index.
    index: HashMap<SocketAddr, u32>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("servers", &self.index.len()).finish()
    }
}

/// The stand-in address of the server `url`.
fn stand_in(url: &str) -> SocketAddr {
    let hi = fnv1a(&[b"ketama-hi", url.as_bytes()]);
    let lo = fnv1a(&[b"ketama-lo", url.as_bytes()]);
    SocketAddr::new(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)).into(), 0)
}

impl Ring {
    /// A ring over `servers` (URL, weight); weight-0 servers get no point.
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let mut buckets = Vec::new();
        let mut index = HashMap::new();
        for (i, (url, weight)) in servers.into_iter().enumerate() {
            if weight == 0 {
                continue;
            }
            let addr = stand_in(url);
            index.insert(addr, i as u32);
            // Weights beyond 100 would only make the ring large; the shares stay close.
            buckets.push(Bucket::new(addr, weight.min(100)));
        }
        Self {
            continuum: Continuum::new(&buckets),
            index,
        }
    }

    /// The point `key` lands on (the "bucket" the explain API shows).
    pub fn point(&self, key: &[u8]) -> usize {
        self.continuum.node_idx(key)
    }

    /// Servers in ring order from `key`'s point, each once, until `take` accepts one; at most
    /// one trip around the ring. Returns the accepted server.
    pub fn find(&self, key: &[u8], mut take: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut seen: u64 = 0;
        let mut distinct = 0;
        let mut idx = self.continuum.node_idx(key);
        // The ring has at most 160 × 100 points per server; one trip is enough to meet each.
        let points = self.index.len() * 160 * 100;
        for _ in 0..points {
            let addr = self.continuum.get_addr(&mut idx)?;
            let Some(&i) = self.index.get(addr) else { continue };
            let i = i as usize;
            if i < 64 {
                if seen & (1 << i) != 0 {
                    continue;
                }
                seen |= 1 << i;
            }
            distinct += 1;
            if take(i) {
                return Some(i);
            }
            if distinct >= self.index.len() && self.index.len() <= 64 {
                return None;
            }
        }
        None
    }
}

/// Rendezvous (highest random weight) hashing: `key`'s score for each server, highest first
/// wins. Weighted as in "Weighted distributed hash tables" (Schindelhauer, Schomaker):
/// `-weight / ln(u)` with `u` in (0, 1) drawn from the hash of key and server.
pub fn rendezvous_score(key: &[u8], server: &str, weight: u32) -> f64 {
    let h = fnv1a(&[key, server.as_bytes()]);
    // Mix (the low bits of FNV are weak), then map to (0, 1).
    let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let h = h ^ (h >> 33);
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:8080")).collect()
    }

    fn owners(ring: &Ring, keys: usize) -> Vec<usize> {
        (0..keys)
            .map(|k| ring.find(format!("user-{k}").as_bytes(), |_| true).expect("a server"))
            .collect()
    }

    #[test]
    fn removing_one_of_ten_servers_moves_only_its_keys() {
        let all = urls(10);
        let ring = Ring::new(all.iter().map(|u| (u.as_str(), 1)));
        let before = owners(&ring, 10_000);
        let mut counts = [0usize; 10];
        for o in &before {
            counts[*o] += 1;
        }
        assert!(counts.iter().all(|c| (600..=1_500).contains(c)), "roughly even: {counts:?}");

        // Server 3 goes; the others keep their URLs (and so their points) but change index.
        let rest: Vec<&String> = all.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, u)| u).collect();
        let smaller = Ring::new(rest.iter().map(|u| (u.as_str(), 1)));
        let after: Vec<&str> = owners(&smaller, 10_000).into_iter().map(|i| rest[i].as_str()).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| all[**b] != **a).count();
        let owned_by_3 = counts[3];
        assert_eq!(moved, owned_by_3, "exactly the removed server's keys move");
        assert!(moved <= 1_200, "≤ 12 % of 10,000 keys moved: {moved}");
    }

    #[test]
    fn an_unusable_server_hands_its_keys_to_the_next_on_the_ring_and_only_those() {
        let all = urls(5);
        let ring = Ring::new(all.iter().map(|u| (u.as_str(), 1)));
        let before = owners(&ring, 2_000);
        for (k, owner) in before.iter().enumerate() {
            let now = ring.find(format!("user-{k}").as_bytes(), |i| i != 2).unwrap();
            if *owner == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, *owner, "keys of usable servers stay");
            }
        }
        assert_eq!(ring.find(b"x", |_| false), None, "nobody usable: none, after one trip");
        assert_eq!(Ring::new(std::iter::empty()).find(b"x", |_| true), None);
    }

    #[test]
    fn rendezvous_scores_follow_weights_and_keys_stick() {
        let servers = ["http://a:1", "http://b:1", "http://c:1"];
        let weights = [1, 1, 2];
        let mut wins = [0; 3];
        for k in 0..8_000 {
            let key = format!("10.1.{}.{}", k / 256, k % 256);
            let best = (0..3)
                .max_by(|a, b| {
                    rendezvous_score(key.as_bytes(), servers[*a], weights[*a]).total_cmp(&rendezvous_score(
                        key.as_bytes(),
                        servers[*b],
                        weights[*b],
                    ))
                })
                .unwrap();
            wins[best] += 1;
        }
        assert!((1_600..=2_400).contains(&wins[0]) && (3_600..=4_400).contains(&wins[2]), "{wins:?}");
    }
}
