//! RFC 2782 records mapped onto one load balancer: priorities become failover tiers, weights
//! become balancer weights.
//!
//! RFC 2782 describes a client that picks *one* target per connection: sort by priority, then
//! draw by weight within the lowest priority it can reach. A proxy spreads many requests over
//! all targets at once, so the same intent is expressed in the balancer instead:
//!
//! * **Priority → tier.** The SRV priority becomes the server's `tier` unchanged (10 stays 10, so
//!   the admin side shows what DNS said). The balancer sends traffic to the lowest tier that has
//!   a usable server; higher tiers take over only when every server of the lower ones is ejected
//!   or gone. A priority group whose targets have no address contributes no server, so the next
//!   group is active without further ado.
//! * **Weight → balancer weight**, within a priority group. The smooth weighted round robin then
//!   reproduces the SRV split exactly (60/40 gives 3:2) instead of approximating it by chance.
//!   When a target has several addresses (A and AAAA, or several A), its share is divided evenly
//!   among them, so a dual-stack target does not get twice the traffic of its peers: every
//!   weight of the group is multiplied by the least common multiple of the address counts and
//!   divided by the target's own count.
//! * **Weight 0.** A group whose weights are all 0 is spread equally (every target weight 1), as
//!   the RFC intends when "there is nothing to choose between". A weight-0 record *beside*
//!   positive weights is listed with balancer weight 0 and takes no traffic. The RFC gives such
//!   records "a very small chance"; for a balancer that chance is a trickle of real requests to
//!   a server the operator marked as least wanted, so drover deliberately gives it none. It stays
//!   visible on the admin side with the reason.
//! * **`.`** as the only target means the service is "decidedly not available": no server, so
//!   clients get 503. A `.` among other records is ignored (and reported).
//! * **Duplicates.** Identical records are merged. Two records reaching the same address and
//!   port at the same priority add their shares; at different priorities the lower (preferred)
//!   one keeps it. Port 0 cannot be connected to and is skipped.
//!
//! The output is ordered (tier, address, port), independent of the order records arrive in:
//! nameservers rotate answers on every query, and a reshuffled but equal answer must not look
//! like a change.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::provider::{Decision, ItemReport};

use super::client::{display, SrvRecord};

/// One server derived from DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// Failover tier (the SRV priority; 0 for address lookups).
    pub tier: u32,
    /// Balancer weight (0 takes no traffic).
    pub weight: u32,
}

impl Endpoint {
    /// `ip:port`, IPv6 bracketed.
    pub fn address(&self) -> String {
        SocketAddr::new(self.ip, self.port).to_string()
    }
}

/// What is known about a target's addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetAddresses {
    /// Its addresses (possibly kept from an earlier answer).
    pub ips: Vec<IpAddr>,
    /// Why there are none, or why they are old (`NXDOMAIN`, `kept after SERVFAIL`).
    pub note: Option<String>,
}

/// Records mapped to servers, with one report per record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The servers, ordered by tier, address, port.
    pub endpoints: Vec<Endpoint>,
    /// One report per record: what it contributed, or why nothing.
    pub records: Vec<ItemReport>,
    /// The answer was a single `.` target: the service is declared unavailable.
    pub unavailable: bool,
}

/// Above this, the least common multiple of address counts is not used exactly (weights would
/// overflow); shares are then rounded, never below 1.
const MAX_SCALE: u64 = 1 << 16;

/// Maps the SRV records of `owner` to servers, given what is known of each target's addresses
/// (targets missing from `targets` have none).
pub fn map_srv(owner: &str, records: &[SrvRecord], targets: &BTreeMap<String, TargetAddresses>) -> Mapping {
    let mut records = records.to_vec();
    records.sort_by(|a, b| (a.priority, &a.target, a.port, a.weight).cmp(&(b.priority, &b.target, b.port, b.weight)));
    let before = records.len();
    records.dedup_by(|a, b| (a.priority, a.weight, a.port, &a.target) == (b.priority, b.weight, b.port, &b.target));
    let merged = before - records.len();
    let mut out = Mapping::default();
    let name = |r: &SrvRecord| format!("{owner} SRV {} {} {} {}", r.priority, r.weight, r.port, r.target);
    let item = |r: &SrvRecord, decision: Decision, reasons: Vec<String>| ItemReport {
        kind: "srv".into(),
        name: name(r),
        decision,
        reasons,
        ..Default::default()
    };
    if records.len() == 1 && records[0].target == "." {
        out.unavailable = true;
        out.records.push(item(
            &records[0],
            Decision::Skipped,
            vec!["target `.`: the service is declared not available (RFC 2782); clients get 503".into()],
        ));
        return out;
    }
    let no_addresses = TargetAddresses::default();
    // (ip, port) → index in out.endpoints
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    let mut groups: BTreeMap<u16, Vec<&SrvRecord>> = BTreeMap::new();
    for r in &records {
        groups.entry(r.priority).or_default().push(r);
    }
    for (priority, group) in groups {
        let tier = u32::from(priority);
        let usable = |r: &&&SrvRecord| r.target != "." && r.port != 0;
        let all_zero = group.iter().filter(usable).all(|r| r.weight == 0);
        let addresses = |r: &SrvRecord| targets.get(&r.target).unwrap_or(&no_addresses);
        let scale = group
            .iter()
            .filter(usable)
            .map(|r| addresses(r).ips.len() as u64)
            .filter(|n| *n > 0)
            .try_fold(1u64, |acc, n| Some(lcm(acc, n)).filter(|l| *l <= MAX_SCALE));
        for r in group {
            if r.target == "." {
                out.records.push(item(
                    r,
                    Decision::Skipped,
                    vec!["target `.` beside other records: ignored (it only means \"not available\" when alone)".into()],
                ));
                continue;
            }
            if r.port == 0 {
                out.records
                    .push(item(r, Decision::Skipped, vec!["port 0: nothing can be reached there".into()]));
                continue;
            }
            let target = addresses(r);
            if target.ips.is_empty() {
                let why = target.note.clone().unwrap_or_else(|| "no A or AAAA record".into());
                out.records.push(item(
                    r,
                    Decision::Skipped,
                    vec![format!("target {} has no address: {why}", display(&r.target))],
                ));
                continue;
            }
            let n = target.ips.len() as u64;
            let share = if all_zero { 1 } else { u64::from(r.weight) };
            let per_address = match scale {
                Some(scale) => share * (scale / n),
                None if share == 0 => 0,
                None => (share * MAX_SCALE / n).max(1),
            };
            let per_address = u32::try_from(per_address).unwrap_or(u32::MAX);
            let mut reasons = vec![format!("priority {priority}: failover tier {tier}")];
            reasons.push(if all_zero {
                format!("every record at priority {priority} has weight 0: equal shares")
            } else if r.weight == 0 {
                format!("weight 0 beside positive weights at priority {priority}: listed with balancer weight 0, takes no traffic")
            } else if n > 1 {
                format!("weight {}: balancer weight {per_address} on each of its {n} addresses", r.weight)
            } else {
                format!("weight {}: balancer weight {per_address}", r.weight)
            });
            if let Some(note) = &target.note {
                reasons.push(format!("addresses of {}: {note}", display(&r.target)));
            }
            let mut contributed = Vec::new();
            for ip in &target.ips {
                let key = (*ip, r.port);
                let address = SocketAddr::new(*ip, r.port).to_string();
                match seen.get(&key) {
                    Some(i) if out.endpoints[*i].tier == tier => {
                        out.endpoints[*i].weight = out.endpoints[*i].weight.saturating_add(per_address);
                        reasons.push(format!(
                            "{address} is also reached by another record at this priority: shares added"
                        ));
                        contributed.push(address);
                    }
                    Some(i) => reasons.push(format!(
                        "{address} is already a server at priority {}, which is preferred",
                        out.endpoints[*i].tier
                    )),
                    None => {
                        seen.insert(key, out.endpoints.len());
                        out.endpoints.push(Endpoint {
                            ip: *ip,
                            port: r.port,
                            tier,
                            weight: per_address,
                        });
                        contributed.push(address);
                    }
                }
            }
            let decision = if contributed.is_empty() || per_address == 0 {
                Decision::Skipped
            } else {
                Decision::Routed
            };
            out.records.push(ItemReport {
                addresses: contributed,
                ..item(r, decision, reasons)
            });
        }
    }
    if merged > 0 {
        if let Some(first) = out.records.first_mut() {
            first.reasons.push(format!("{merged} duplicate record(s) merged"));
        }
    }
    out.endpoints.sort_by_key(|e| (e.tier, e.ip, e.port));
    out
}

/// Maps the addresses of `name` (an `a = ...` service) to servers on `port`, all in tier 0 with
/// equal weights.
pub fn map_addresses(name: &str, port: u16, ips: &[IpAddr]) -> Mapping {
    let mut ips = ips.to_vec();
    ips.sort();
    ips.dedup();
    let mut out = Mapping::default();
    for ip in ips {
        let endpoint = Endpoint {
            ip,
            port,
            tier: 0,
            weight: 1,
        };
        let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
        out.records.push(ItemReport {
            kind: kind.to_ascii_lowercase(),
            name: format!("{name} {kind} {ip}"),
            decision: Decision::Routed,
            reasons: vec![format!("port {port} from the configuration")],
            addresses: vec![endpoint.address()],
            ..Default::default()
        });
        out.endpoints.push(endpoint);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
            ttl: 60,
        }
    }

    fn targets(list: &[(&str, &[&str])]) -> BTreeMap<String, TargetAddresses> {
        list.iter()
            .map(|(name, ips)| {
                (
                    name.to_string(),
                    TargetAddresses {
                        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
                        note: None,
                    },
                )
            })
            .collect()
    }

    fn summary(m: &Mapping) -> Vec<(String, u32, u32)> {
        m.endpoints.iter().map(|e| (e.address(), e.tier, e.weight)).collect()
    }

    /// The spec's sample S1: a weighted group, a weight-0 record, a dual-stack target and a
    /// failover priority.
    #[test]
    fn weighted_group_with_a_dual_stack_target_and_a_failover_tier() {
        let records = [
            srv(10, 60, 8080, "web-a.shop.example."),
            srv(10, 40, 8080, "web-b.shop.example."),
            srv(10, 0, 8081, "web-c.shop.example."),
            srv(20, 0, 8080, "dr-web.shop.example."),
        ];
        let t = targets(&[
            ("web-a.shop.example.", &["10.0.0.11"]),
            ("web-b.shop.example.", &["10.0.0.12", "2001:db8::12"]),
            ("web-c.shop.example.", &["10.0.0.13"]),
            ("dr-web.shop.example.", &["10.0.0.20"]),
        ]);
        let m = map_srv("_http._tcp.shop.example.com.", &records, &t);
        assert_eq!(
            summary(&m),
            vec![
                ("10.0.0.11:8080".into(), 10, 120),
                ("10.0.0.12:8080".into(), 10, 40),
                ("10.0.0.13:8081".into(), 10, 0),
                ("[2001:db8::12]:8080".into(), 10, 40),
                ("10.0.0.20:8080".into(), 20, 1),
            ],
            "a:b = 120:(40+40) = 60:40; c gets nothing; the lone weight-0 backup gets an equal share of its tier"
        );
        assert!(!m.unavailable);
        let c = m.records.iter().find(|r| r.name.contains("web-c")).unwrap();
        assert_eq!(c.decision, Decision::Skipped);
        assert!(c.reasons.iter().any(|r| r.contains("balancer weight 0")), "{c:?}");
        let dr = m.records.iter().find(|r| r.name.contains("dr-web")).unwrap();
        assert_eq!(dr.decision, Decision::Routed);
        assert!(dr.reasons.iter().any(|r| r.contains("failover tier 20")), "{dr:?}");
    }

    #[test]
    fn all_zero_weights_are_equal_shares() {
        let m = map_srv(
            "s.",
            &[srv(1, 0, 80, "a."), srv(1, 0, 80, "b.")],
            &targets(&[("a.", &["10.0.0.1"]), ("b.", &["10.0.0.2"])]),
        );
        assert_eq!(summary(&m), vec![("10.0.0.1:80".into(), 1, 1), ("10.0.0.2:80".into(), 1, 1)]);
        assert!(m.records.iter().all(|r| r.decision == Decision::Routed));
    }

    #[test]
    fn a_lone_dot_target_means_unavailable_and_a_dot_among_others_is_ignored() {
        let m = map_srv("_ldap._tcp.example.com.", &[srv(0, 0, 0, ".")], &BTreeMap::new());
        assert!(m.unavailable);
        assert!(m.endpoints.is_empty());
        assert!(m.records[0].reasons[0].contains("not available"));

        let m = map_srv("s.", &[srv(0, 0, 0, "."), srv(5, 1, 80, "a.")], &targets(&[("a.", &["10.0.0.1"])]));
        assert!(!m.unavailable);
        assert_eq!(summary(&m), vec![("10.0.0.1:80".into(), 5, 1)]);
        assert!(m.records[0].reasons[0].contains("ignored"));
    }

    #[test]
    fn targets_without_addresses_and_port_zero_are_skipped_with_the_reason() {
        let mut t = targets(&[("a.", &["10.0.0.1"])]);
        t.insert(
            "gone.".into(),
            TargetAddresses {
                ips: vec![],
                note: Some("NXDOMAIN".into()),
            },
        );
        let m = map_srv(
            "s.",
            &[
                srv(1, 5, 80, "a."),
                srv(1, 5, 80, "gone."),
                srv(1, 5, 0, "a."),
                srv(1, 5, 81, "unknown."),
            ],
            &t,
        );
        assert_eq!(summary(&m), vec![("10.0.0.1:80".into(), 1, 5)]);
        let reasons: Vec<_> = m
            .records
            .iter()
            .filter(|r| r.decision == Decision::Skipped)
            .map(|r| r.reasons[0].clone())
            .collect();
        assert_eq!(reasons.len(), 3);
        assert!(reasons.iter().any(|r| r.contains("port 0")));
        assert!(reasons.iter().any(|r| r.contains("gone has no address: NXDOMAIN")));
        assert!(reasons.iter().any(|r| r.contains("unknown has no address: no A or AAAA record")));
    }

    #[test]
    fn duplicates_merge_and_the_lower_priority_keeps_a_shared_address() {
        let t = targets(&[("a.", &["10.0.0.1"]), ("alias.", &["10.0.0.1"]), ("b.", &["10.0.0.2"])]);
        let m = map_srv(
            "s.",
            &[
                srv(1, 3, 80, "a."),
                srv(1, 3, 80, "a."),
                srv(1, 2, 80, "alias."),
                srv(1, 5, 80, "b."),
                srv(2, 1, 80, "b."),
            ],
            &t,
        );
        assert_eq!(
            summary(&m),
            vec![("10.0.0.1:80".into(), 1, 5), ("10.0.0.2:80".into(), 1, 5)],
            "a's 3 and alias's 2 add up; b stays in tier 1"
        );
        assert!(m.records[0].reasons.iter().any(|r| r.contains("1 duplicate record(s) merged")));
        let b2 = m.records.iter().find(|r| r.name == "s. SRV 2 1 80 b.").unwrap();
        assert_eq!(b2.decision, Decision::Skipped);
    }

    #[test]
    fn the_answer_order_does_not_change_the_mapping() {
        let t = targets(&[("a.", &["10.0.0.1"]), ("b.", &["10.0.0.2", "10.0.0.3"])]);
        let one = map_srv("s.", &[srv(1, 1, 80, "a."), srv(1, 2, 80, "b.")], &t);
        let two = map_srv("s.", &[srv(1, 2, 80, "b."), srv(1, 1, 80, "a.")], &t);
        assert_eq!(one, two);
    }

    #[test]
    fn many_different_address_counts_round_instead_of_overflowing() {
        // lcm(1..=17) is far above 2^16.
        let mut t = BTreeMap::new();
        let mut records = Vec::new();
        for n in 1..=17u8 {
            let name = format!("t{n}.");
            t.insert(
                name.clone(),
                TargetAddresses {
                    ips: (0..n).map(|i| IpAddr::from([10, n, 0, i])).collect(),
                    note: None,
                },
            );
            records.push(srv(1, 65535, 80, &name));
        }
        let m = map_srv("s.", &records, &t);
        assert_eq!(m.endpoints.len(), (1..=17).sum::<usize>());
        assert!(m.endpoints.iter().all(|e| e.weight >= 1));
        let t1 = m.endpoints.iter().find(|e| e.ip == IpAddr::from([10, 1, 0, 0])).unwrap();
        let t2 = m.endpoints.iter().find(|e| e.ip == IpAddr::from([10, 2, 0, 0])).unwrap();
        assert_eq!(t1.weight, 2 * t2.weight, "a target's share is still divided among its addresses");
    }

    #[test]
    fn address_lookups_are_tier_zero_equal_weights_deduplicated() {
        let ips: Vec<IpAddr> = ["10.0.1.6", "10.0.1.5", "10.0.1.6", "fd00::5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let m = map_addresses("tasks.web", 8080, &ips);
        assert_eq!(
            summary(&m),
            vec![
                ("10.0.1.5:8080".into(), 0, 1),
                ("10.0.1.6:8080".into(), 0, 1),
                ("[fd00::5]:8080".into(), 0, 1)
            ]
        );
        assert_eq!(m.records[2].kind, "aaaa");
    }
}
