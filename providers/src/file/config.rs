//! `[providers.file]`: one file or one directory, and whether to follow it.

use std::path::PathBuf;

use serde::Deserialize;

/// `[providers.file]`: exactly one of `filename` and `directory`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// One file.
    pub filename: Option<PathBuf>,
    /// A directory of `*.toml`, `*.yaml` and `*.yml` files.
    pub directory: Option<PathBuf>,
    /// Re-read on change (default true).
    #[serde(default = "watch_by_default")]
    pub watch: bool,
}

fn watch_by_default() -> bool {
    true
}
