//! The parts of Consul's JSON that drover reads.
//!
//! Unknown fields are ignored (Consul adds fields between versions), and Go's `null` for an empty
//! slice, map or string is read as empty: a nil `Tags` slice is serialised as `null` by Consul, and
//! must not make a whole answer unreadable.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// One entry of `GET /v1/health/service/<name>`: an instance with its node and every check.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    /// The node the instance is registered on.
    #[serde(default, deserialize_with = "null_default")]
    pub node: Node,
    /// The instance.
    #[serde(default, deserialize_with = "null_default")]
    pub service: AgentService,
    /// The service's checks and the node's checks.
    #[serde(default, deserialize_with = "null_default")]
    pub checks: Vec<HealthCheck>,
}

/// A catalog node.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Node UUID (may be empty on old agents).
    #[serde(default, rename = "ID", deserialize_with = "null_default")]
    pub id: String,
    /// Node name.
    #[serde(default, deserialize_with = "null_default")]
    pub node: String,
    /// Node address: used when the service has none.
    #[serde(default, deserialize_with = "null_default")]
    pub address: String,
    /// Datacenter.
    #[serde(default, deserialize_with = "null_default")]
    pub datacenter: String,
}

/// A service instance.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    /// Instance id (unique per node, not across nodes).
    #[serde(default, rename = "ID", deserialize_with = "null_default")]
    pub id: String,
    /// Service name.
    #[serde(default, deserialize_with = "null_default")]
    pub service: String,
    /// Tags: `<prefix>.…=value` ones are drover's labels.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Address; empty means "the node's address".
    #[serde(default, deserialize_with = "null_default")]
    pub address: String,
    /// Port; 0 when registered without one.
    #[serde(default, deserialize_with = "null_default")]
    pub port: u32,
}

/// A health check, as in health entries and `GET /v1/health/state/<state>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    /// Node name.
    #[serde(default, deserialize_with = "null_default")]
    pub node: String,
    /// Check id (`serfHealth`, `service:web-1`, `_node_maintenance`, …).
    #[serde(default, rename = "CheckID", deserialize_with = "null_default")]
    pub check_id: String,
    /// Human name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `passing`, `warning` or `critical`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// Notes (maintenance reason).
    #[serde(default, deserialize_with = "null_default")]
    pub notes: String,
    /// The check's last output.
    #[serde(default, deserialize_with = "null_default")]
    pub output: String,
    /// Instance id; empty for a node-level check.
    #[serde(default, rename = "ServiceID", deserialize_with = "null_default")]
    pub service_id: String,
    /// Service name; empty for a node-level check.
    #[serde(default, deserialize_with = "null_default")]
    pub service_name: String,
}

fn null_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(de: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(de).map(Option::unwrap_or_default)
}

/// Reads `GET /v1/catalog/services`: service name → union of its instances' tags.
pub fn parse_services(body: &[u8]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let raw: Option<BTreeMap<String, Option<Vec<String>>>> =
        serde_json::from_slice(body).map_err(|e| format!("/v1/catalog/services: unreadable JSON ({e})"))?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(name, tags)| (name, tags.unwrap_or_default()))
        .collect())
}

/// Reads `GET /v1/health/service/<name>`.
pub fn parse_entries(name: &str, body: &[u8]) -> Result<Vec<ServiceEntry>, String> {
    let raw: Option<Vec<ServiceEntry>> =
        serde_json::from_slice(body).map_err(|e| format!("/v1/health/service/{name}: unreadable JSON ({e})"))?;
    Ok(raw.unwrap_or_default())
}

/// Reads `GET /v1/health/state/any`.
pub fn parse_checks(body: &[u8]) -> Result<Vec<HealthCheck>, String> {
    let raw: Option<Vec<HealthCheck>> = serde_json::from_slice(body).map_err(|e| format!("/v1/health/state/any: unreadable JSON ({e})"))?;
    Ok(raw.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sample C2 of the provider spec (health of `web`, three instances).
    pub const C2: &str = r#"[
 {"Node":{"ID":"5c3a","Node":"node-a","Address":"10.1.10.12","Datacenter":"dc1","TaggedAddresses":{"lan":"10.1.10.12","wan":"203.0.113.12"},"Meta":{"az":"a"},"CreateIndex":10,"ModifyIndex":10},
  "Service":{"ID":"web-1","Service":"web","Tags":["traefik.enable=true","v2"],"Address":"172.17.0.3","TaggedAddresses":{"lan_ipv4":{"Address":"172.17.0.3","Port":8080}},
             "Meta":{"version":"2.3"},"Port":8080,"Weights":{"Passing":10,"Warning":1},"EnableTagOverride":false,"CreateIndex":4000,"ModifyIndex":4000},
  "Checks":[{"Node":"node-a","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","Notes":"","Output":"Agent alive and reachable","ServiceID":"","ServiceName":"","ServiceTags":[]},
            {"Node":"node-a","CheckID":"service:web-1","Name":"HTTP /health","Status":"passing","Notes":"","Output":"HTTP GET http://172.17.0.3:8080/health: 200 OK","ServiceID":"web-1","ServiceName":"web","ServiceTags":["traefik.enable=true","v2"]}]},
 {"Node":{"ID":"8f24","Node":"node-b","Address":"10.1.10.13","Datacenter":"dc1","TaggedAddresses":{"lan":"10.1.10.13"},"Meta":{}},
  "Service":{"ID":"web-2","Service":"web","Tags":["traefik.enable=true"],"Address":"","Meta":{},"Port":8080,"Weights":{"Passing":1,"Warning":1}},
  "Checks":[{"Node":"node-b","CheckID":"serfHealth","Status":"passing","ServiceID":""},
            {"Node":"node-b","CheckID":"service:web-2","Status":"warning","Output":"HTTP 429","ServiceID":"web-2","ServiceName":"web"}]},
 {"Node":{"ID":"a9e0","Node":"node-c","Address":"10.1.10.14","Datacenter":"dc1"},
  "Service":{"ID":"web-3","Service":"web","Tags":["traefik.enable=true"],"Address":"10.1.10.14","Port":8080},
  "Checks":[{"Node":"node-c","CheckID":"serfHealth","Status":"passing","ServiceID":""},
            {"Node":"node-c","CheckID":"_service_maintenance:web-3","Name":"Service Maintenance Mode","Status":"critical","Notes":"deploy","ServiceID":"web-3","ServiceName":"web"}]}
]"#;

    #[test]
    fn reads_the_documented_shapes_and_go_nulls() {
        let entries = parse_entries("web", C2.as_bytes()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].service.address, "");
        assert_eq!(entries[1].node.address, "10.1.10.13");
        assert_eq!(entries[2].checks[1].check_id, "_service_maintenance:web-3");
        let services = parse_services(br#"{"consul":[],"web":["traefik.enable=true","v2"],"nil":null}"#).unwrap();
        assert_eq!(services["web"].len(), 2);
        assert!(services["nil"].is_empty());
        let odd = parse_entries(
            "x",
            br#"[{"Node":null,"Service":{"ID":"x","Tags":null,"Port":null},"Checks":null}]"#,
        )
        .unwrap();
        assert_eq!(odd[0].service.id, "x");
        assert!(parse_entries("x", b"null").unwrap().is_empty());
        assert!(parse_checks(b"{").unwrap_err().contains("/v1/health/state/any"));
    }
}
