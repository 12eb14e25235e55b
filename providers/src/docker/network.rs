//! Which address and port of a container drover sends traffic to, and which container drover
//! itself runs in.
//!
//! Traefik takes the first entry of a Go map when a container has several networks, which is
//! effectively random, and the overlay-stack case (drover on the stack's private network)
//! needs a `traefik.docker.network` label on every service. drover's order instead:
//! 1. the network named by the `<prefix>.docker.network` label, else by the provider's `network`
//!    option, when the container is attached to it (otherwise a warning, and on);
//! 2. when drover runs in a container: a network that container shares with the target, so a
//!    stack works with zero network labels; sharing none means the target cannot be reached;
//! 3. otherwise the first network by name that has an address, with a warning when there were
//!    several.
//!
//! Ports: the `server.port` label, else the only exposed port, else the lowest one, with a
//! warning.

use std::collections::{BTreeMap, HashMap};

use super::translate::Observed;

/// drover's own container, when it runs in one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfContainer {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// `HostConfig.NetworkMode`.
    pub network_mode: String,
    /// Network name → network id.
    pub networks: BTreeMap<String, String>,
    /// Network name → gateway (the host's address on that network).
    pub gateways: BTreeMap<String, String>,
}

impl SelfContainer {
    /// Builds it from an inspected container.
    pub fn from_observed(o: &Observed) -> Self {
        Self {
            id: o.id.clone(),
            name: o.name.clone(),
            network_mode: o.network_mode.clone(),
            networks: o.networks.iter().map(|(n, a)| (n.clone(), a.network_id.clone())).collect(),
            gateways: o
                .networks
                .iter()
                .filter(|(_, a)| !a.gateway.is_empty())
                .map(|(n, a)| (n.clone(), a.gateway.clone()))
                .collect(),
        }
    }

    /// drover shares the host's network stack (it can reach every bridge network directly).
    fn on_host_network(&self) -> bool {
        self.network_mode == "host"
    }
}

/// The address chosen for a container, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// IP (IPv6 without brackets).
    pub host: String,
    /// The network it is on, if any.
    pub network: Option<String>,
    /// Why this one (shown in diagnostics).
    pub why: String,
    /// Something the user should fix (also shown).
    pub warnings: Vec<String>,
}

/// Where the wanted network name came from, for messages.
pub struct Wanted<'a> {
    /// The network name.
    pub name: &'a str,
    /// `label drover.docker.network` or `provider option network`.
    pub source: String,
}

fn list(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Chooses the address of `o` (see the module docs for the order).
pub fn choose_address(
    o: &Observed,
    wanted: Option<&Wanted>,
    me: Option<&SelfContainer>,
    all: &HashMap<String, Observed>,
    depth: usize,
) -> Result<Address, String> {
    let mut warnings = Vec::new();
    if o.network_mode == "host" {
        return match me {
            Some(me) if !me.on_host_network() => match me.gateways.iter().next() {
                Some((net, gw)) => Ok(Address {
                    host: gw.clone(),
                    network: None,
                    why: format!("host network mode: reached through the host's address on drover's network `{net}`"),
                    warnings,
                }),
                None => Err("host network mode: drover's container has no gateway to the host".into()),
            },
            _ => Ok(Address {
                host: "127.0.0.1".into(),
                network: None,
                why: "host network mode: reached on the host's loopback".into(),
                warnings,
            }),
        };
    }
    if let Some(other) = o.network_mode.strip_prefix("container:") {
        let found = all
            .values()
            .find(|c| c.id == other || c.name == other || (other.len() >= 12 && c.id.starts_with(other)));
        return match found {
            Some(c) if depth < 3 && c.id != o.id => {
                let mut a = choose_address(c, wanted, me, all, depth + 1)?;
                a.why = format!("shares the network stack of container `{}`: {}", c.name, a.why);
                Ok(a)
            }
            _ => Err(format!(
                "network mode container:{other}: that container is not known or not running"
            )),
        };
    }
    let candidates: Vec<&String> = o.networks.iter().filter(|(_, a)| !a.ip().is_empty()).map(|(n, _)| n).collect();
    if candidates.is_empty() {
        let why = if o.network_mode == "none" {
            "network mode `none`: the container has no network".to_string()
        } else {
            "no IP address on any network yet".to_string()
        };
        return Err(why);
    }
    let pick = |name: &String, why: String, warnings: Vec<String>| -> Address {
        Address {
            host: o.networks[name].ip().to_string(),
            network: Some(name.clone()),
            why,
            warnings,
        }
    };
    if let Some(w) = wanted {
        if let Some(name) = candidates.iter().find(|n| n.as_str() == w.name) {
            return Ok(pick(name, format!("network `{}` named by {}", w.name, w.source), warnings));
        }
        warnings.push(format!(
            "network `{}` named by {} is not attached to this container (attached: {}; Compose prefixes network names with the project, e.g. `shop_front`); choosing another",
            w.name,
            w.source,
            list(&candidates)
        ));
    }
    if let Some(me) = me.filter(|me| !me.on_host_network()) {
        let shared: Vec<&String> = candidates
            .iter()
            .copied()
            .filter(|n| {
                let id = &o.networks[*n].network_id;
                (!id.is_empty() && me.networks.values().any(|mine| mine == id)) || me.networks.contains_key(*n)
            })
            .collect();
        return match shared.as_slice() {
            [] => Err(format!(
                "no reachable network: it shares no network with drover's container `{}` (drover: {}; this container: {}); attach it to one of drover's networks",
                me.name,
                me.networks.keys().cloned().collect::<Vec<_>>().join(", "),
                list(&candidates)
            )),
            [only] => Ok(pick(only, format!("network `{only}`: shared with drover's container"), warnings)),
            [first, ..] => {
                warnings.push(format!(
                    "several networks are shared with drover's container ({}); using `{first}`, the first by name; set the docker.network label to choose",
                    list(&shared)
                ));
                Ok(pick(first, format!("network `{first}`: shared with drover's container"), warnings))
            }
        };
    }
    let first = candidates[0];
    if candidates.len() > 1 {
        warnings.push(format!(
            "attached to several networks ({}); using `{first}`, the first by name; set the docker.network label to choose",
            list(&candidates)
        ));
        Ok(pick(first, format!("network `{first}`: first by name"), warnings))
    } else {
        Ok(pick(first, format!("network `{first}`: its only network"), warnings))
    }
}

/// The port for a service: its `server.port` label value, else the only exposed port, else the
/// lowest one (noting why in `notes`).
pub fn choose_port(label: Option<&str>, exposed: &[u16], notes: &mut Vec<String>) -> Result<u16, String> {
    if let Some(text) = label {
        return text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("label server.port: `{text}` is not a port number (1-65535)"));
    }
    match exposed {
        [] => Err("no port: the container exposes none; set the label http.services.<name>.loadbalancer.server.port".into()),
        [only] => {
            notes.push(format!("port {only}: the only exposed port"));
            Ok(*only)
        }
        [lowest, ..] => {
            notes.push(format!(
                "exposes several ports ({}); using {lowest}, the lowest; set the label http.services.<name>.loadbalancer.server.port to choose",
                exposed.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            ));
            Ok(*lowest)
        }
    }
}

/// Ids drover's own container may have, read from `/proc/self` (mount sources under
/// `/var/lib/docker/containers/<id>/`, then the cgroup path). Empty when not in a container.
pub fn own_container_candidates() -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/proc/self/mountinfo", "/proc/self/cgroup"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            for id in hex_ids(&text) {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    out
}

/// Every 64-hex-digit word following `containers/`, `docker/` or `docker-` in `text`.
fn hex_ids(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["/containers/", "/docker/", "docker-"] {
        let mut rest = text;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            if id.len() == 64 && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::translate::Attachment;

    fn container(nets: &[(&str, &str, &str)]) -> Observed {
        Observed {
            id: "c1".into(),
            name: "web-1".into(),
            state: "running".into(),
            network_mode: "bridge".into(),
            networks: nets
                .iter()
                .map(|(n, id, ip)| {
                    (
                        n.to_string(),
                        Attachment {
                            network_id: id.to_string(),
                            ipv4: if ip.contains(':') { String::new() } else { ip.to_string() },
                            ipv6: if ip.contains(':') { ip.to_string() } else { String::new() },
                            gateway: String::new(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn label_then_shared_then_first_by_name() {
        let all = HashMap::new();
        let c = container(&[("zeta", "z", "10.0.2.5"), ("alpha", "a", "10.0.1.5"), ("down", "d", "")]);
        let a = choose_address(&c, None, None, &all, 0).unwrap();
        assert_eq!((a.host.as_str(), a.warnings.len()), ("10.0.1.5", 1));
        let w = Wanted {
            name: "zeta",
            source: "label".into(),
        };
        assert_eq!(choose_address(&c, Some(&w), None, &all, 0).unwrap().host, "10.0.2.5");
        let w = Wanted {
            name: "front",
            source: "label".into(),
        };
        let a = choose_address(&c, Some(&w), None, &all, 0).unwrap();
        assert!(a.warnings[0].contains("not attached"), "{a:?}");
        let me = SelfContainer {
            id: "me".into(),
            name: "drover".into(),
            network_mode: "edge".into(),
            networks: BTreeMap::from([("stack_zeta".to_string(), "z".to_string()), ("edge".into(), "e".into())]),
            gateways: BTreeMap::new(),
        };
        let a = choose_address(&c, None, Some(&me), &all, 0).unwrap();
        assert_eq!(a.host, "10.0.2.5", "matched by network id");
        assert!(a.why.contains("shared with drover"));
        let lonely = container(&[("other", "o", "10.9.0.2")]);
        let err = choose_address(&lonely, None, Some(&me), &all, 0).unwrap_err();
        assert!(err.contains("no reachable network"), "{err}");
        let v6 = container(&[("v6", "6", "fd00::7")]);
        assert_eq!(choose_address(&v6, None, None, &all, 0).unwrap().host, "fd00::7");
    }

    #[test]
    fn host_none_and_container_modes() {
        let all = HashMap::new();
        let mut c = container(&[]);
        c.network_mode = "host".into();
        assert_eq!(choose_address(&c, None, None, &all, 0).unwrap().host, "127.0.0.1");
        c.network_mode = "none".into();
        assert!(choose_address(&c, None, None, &all, 0).unwrap_err().contains("none"));
        let main = container(&[("n", "n", "10.0.0.9")]);
        let mut all = HashMap::new();
        all.insert(main.id.clone(), main);
        let mut side = container(&[]);
        side.id = "c2".into();
        side.network_mode = "container:c1".into();
        assert_eq!(choose_address(&side, None, None, &all, 0).unwrap().host, "10.0.0.9");
    }

    #[test]
    fn ports() {
        let mut notes = Vec::new();
        assert_eq!(choose_port(Some("8080"), &[80], &mut notes), Ok(8080));
        assert!(choose_port(Some("http"), &[80], &mut notes)
            .unwrap_err()
            .contains("not a port number"));
        assert_eq!(choose_port(None, &[80], &mut notes), Ok(80));
        assert_eq!(choose_port(None, &[80, 443], &mut notes), Ok(80));
        assert!(notes.last().unwrap().contains("lowest"));
        assert!(choose_port(None, &[], &mut notes).unwrap_err().contains("no port"));
    }

    #[test]
    fn own_id_from_mountinfo() {
        let id = "a".repeat(64);
        let text = format!("1 2 0:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n");
        assert_eq!(hex_ids(&text), vec![id]);
        assert!(hex_ids("0::/user.slice\n").is_empty());
    }
}
