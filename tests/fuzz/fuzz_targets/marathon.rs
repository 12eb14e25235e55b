//! The Marathon translation: a `GET /v2/apps` body (apps, tasks, health results, deployments)
//! → one decision per task → the provider's fragment → a routing snapshot, and again when a
//! readiness grace it asked to be re-checked has run out.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use drover_providers::labels::DefaultRule;
use drover_providers::marathon::client::Apps;
use drover_providers::marathon::translate::Rules;
use drover_providers::marathon::watch::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = Apps::from_json(data) else { return };
    let default_rule = DefaultRule::default();
    let rules = Rules {
        prefix: "drover",
        exposed_by_default: false,
        default_rule: &default_rule,
        respect_readiness_checks: true,
        force_task_hostname: false,
        provider: "marathon",
    };
    // A fixed clock (2025-06-15), so a crash reproduces.
    let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let mut catalog = Catalog::default();
    catalog.replace_all(list, &rules, now);
    let (config, _items) = catalog.build();
    drover_fuzz::route("marathon", &config);
    if let Some(at) = catalog.next_recheck() {
        if catalog.recheck(&rules, at) {
            let (config, _items) = catalog.build();
            drover_fuzz::route("marathon", &config);
        }
    }
});
