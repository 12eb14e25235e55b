//! The file provider: Traefik's dynamic-file schema in TOML or YAML, one file or a directory of
//! them, optionally watched.
//!
//! A file is the one source drover does not discover: what it says is what the operator wrote.
//! So the provider's whole job is to read it faithfully in either syntax ([`translate`]), to follow
//! edits the way editors really save ([`watch`]), and to keep the last good configuration, with
//! the file, line and column of the mistake, when an edit does not parse.
//!
//! Rooms, as in every provider: [`config`] (`[providers.file]`), [`translate`] (files → one
//! fragment), [`watch`] (the provider's task: follows changes, debounced).

pub mod config;
pub mod translate;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

pub use config::FileConfig;

use crate::error::ProviderError;
use crate::model::DynamicConfig;
use crate::provider::{Provider, ProviderHandle};

/// Where the provider reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// One file: YAML if it ends in `.yaml` or `.yml`, TOML otherwise.
    File(PathBuf),
    /// Every `*.toml`, `*.yaml` and `*.yml` file directly in a directory, merged.
    Directory(PathBuf),
}

/// The file provider's settings.
#[derive(Clone, Debug)]
pub struct FileProvider {
    /// What to read.
    pub source: Source,
    /// Re-read on change.
    pub watch: bool,
    /// Quiet period after the last change event before the file is read.
    pub quiet: Duration,
    /// Longest a stream of events may postpone a read.
    pub max_delay: Duration,
}
impl FileProvider {
    /// A provider for `source` with default debouncing (25 ms quiet, at most 100 ms).
    pub fn from_source(source: Source, watch: bool) -> Self {
        Self {
            source,
            watch,
            quiet: Duration::from_millis(25),
            max_delay: Duration::from_millis(100),
        }
    }

    /// Reads the source once.
    pub fn load(&self) -> Result<DynamicConfig, ProviderError> {
        translate::load(&self.source)
    }
}

impl Provider for FileProvider {
    const NAME: &'static str = "file";
    type Config = FileConfig;

    fn new(config: &FileConfig) -> Result<Self, ProviderError> {
        let source = match (&config.filename, &config.directory) {
            (Some(file), None) => Source::File(file.clone()),
            (None, Some(dir)) => Source::Directory(dir.clone()),
            _ => return Err(Self::refuse("needs exactly one of `filename` or `directory`")),
        };
        Ok(Self::from_source(source, config.watch))
    }

    fn run(self, handle: ProviderHandle) -> impl std::future::Future<Output = ()> + Send {
        self.follow(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_filename_and_directory() {
        let config = |text: &str| -> FileConfig { toml::from_str(text).unwrap() };
        let file = FileProvider::new(&config("filename = \"routes.toml\"")).unwrap();
        assert_eq!(file.source, Source::File("routes.toml".into()));
        assert!(file.watch, "watched by default");
        let dir = FileProvider::new(&config("directory = \"conf.d\"\nwatch = false")).unwrap();
        assert_eq!((dir.source, dir.watch), (Source::Directory("conf.d".into()), false));
        for wrong in ["", "filename = \"a.toml\"\ndirectory = \"conf.d\""] {
            let err = FileProvider::new(&config(wrong)).expect_err("refused");
            assert!(err.is_config(), "{err}");
            assert_eq!(err.to_string(), "[providers.file] needs exactly one of `filename` or `directory`");
        }
    }
}
