//! The static configuration reader: `drover.toml` text → a checked configuration (entrypoint
//! addresses, trusted ranges, the admin side, every provider's settings).
#![no_main]

use std::path::Path;

use drover::config::StaticConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(resolved) = StaticConfig::parse(Path::new("drover.toml"), text) else {
        return;
    };
    for entry_point in resolved.config.entry_points.values() {
        let _ = entry_point.forwarded_headers.trusted();
        let _ = entry_point.http.path_policy();
        let _ = entry_point.observability.observe();
    }
});
