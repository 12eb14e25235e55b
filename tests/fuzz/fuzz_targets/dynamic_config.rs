//! The dynamic configuration reader: a file provider's text, read as TOML and as YAML → a
//! fragment → a routing snapshot. Errors must name a line and column without panicking.
#![no_main]

use std::path::Path;

use drover_providers::file::translate::{self, Syntax};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for (path, syntax) in [("dynamic.toml", Syntax::Toml), ("dynamic.yaml", Syntax::Yaml)] {
        if let Ok(config) = translate::parse(Path::new(path), text, syntax) {
            let _ = config.unsupported();
            drover_fuzz::route("file", &config);
        }
    }
});
