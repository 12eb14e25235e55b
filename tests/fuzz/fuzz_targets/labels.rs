//! The label grammar: an item's labels (`key=value` per line, as Docker labels or Consul tags
//! are written) → parsed labels → the item's routers and services → a routing snapshot.
#![no_main]

use std::collections::BTreeMap;

use drover_providers::labels::{self, DefaultRule, Target, TemplateVars};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let pairs: Vec<(&str, &str)> = text.lines().map(|line| line.split_once('=').unwrap_or((line, ""))).collect();
    let Ok(parsed) = labels::parse(pairs.iter().copied(), "drover") else {
        return;
    };
    let _ = parsed.enabled(false);
    let port = |label: Option<&str>| match label {
        None => Ok(8080),
        Some(text) => text.parse::<u16>().map_err(|e| format!("`{text}`: {e}")),
    };
    let target = Target {
        name: "web",
        host: "10.0.0.5",
        port: &port,
    };
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let vars = TemplateVars {
        name: "web",
        container_name: "web-1",
        labels: Some(&map),
    };
    let Ok(fragment) = parsed.fragment(&target, &DefaultRule::default(), &vars) else {
        return;
    };
    drover_fuzz::route("docker", &fragment.config);
});
