//! The Consul translation: a `GET /v1/health/service/<name>` body (instances with their tags and
//! checks) → one decision per instance → the provider's fragment → a routing snapshot.
#![no_main]

use std::collections::BTreeMap;

use drover_providers::consul::catalog::{self, ServiceEntry};
use drover_providers::consul::{changes, translate, ConsulCatalogConfig};
use drover_providers::labels::DefaultRule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = catalog::parse_entries("web", data) else { return };
    // The catalog as Consul lists it: every service with the union of its instances' tags.
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut instances: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
    for entry in entries {
        let name = entry.service.service.clone();
        services.entry(name.clone()).or_default().extend(entry.service.tags.iter().cloned());
        instances.entry(name).or_default().push(entry);
    }
    let checks: Vec<_> = instances.values().flatten().flat_map(|e| e.checks.iter().cloned()).collect();
    let _ = changes::touched_by_checks(&instances, &checks);
    let config: ConsulCatalogConfig = serde_json::from_str("{}").expect("every Consul setting has a default");
    let settings = translate::Settings {
        prefix: config.prefix.clone(),
        exposed_by_default: config.exposed_by_default,
        default_rule: DefaultRule::default(),
        admitted: config.admitted().expect("the default strictChecks are valid"),
        provider: "consulcatalog".into(),
    };
    let built = translate::build(&services, &instances, &settings);
    drover_fuzz::route("consulcatalog", &built.config);
});
