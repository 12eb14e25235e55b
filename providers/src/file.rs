//! The file provider: a TOML file (or a directory of them) in Traefik's dynamic-file schema,
//! optionally watched.
//!
//! The parent directory is watched rather than the file itself, so editors that save by writing a
//! temporary file and renaming it over the original (vim, most tools, `mv`) are followed. Events
//! are debounced (a short quiet period, capped) so a file being written in several steps is read
//! once it is complete. A file that fails to parse is reported with file, line and column, and the
//! last good configuration stays in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::model::DynamicConfig;
use crate::provider::ProviderHandle;
use crate::toml_error;

/// Where the provider reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// One file.
    File(PathBuf),
    /// Every `*.toml` file directly in a directory, merged.
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
    pub fn new(source: Source, watch: bool) -> Self {
        Self {
            source,
            watch,
            quiet: Duration::from_millis(25),
            max_delay: Duration::from_millis(100),
        }
    }

    /// Reads the source once.
    pub fn load(&self) -> Result<DynamicConfig, String> {
        match &self.source {
            Source::File(path) => load_file(path),
            Source::Directory(dir) => load_directory(dir),
        }
    }

    /// Sends the current configuration, then (when watching) a new one after every change, until
    /// the aggregator goes away.
    pub async fn run(self, handle: ProviderHandle) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        // Kept alive for as long as this task runs: dropping the watcher stops the events.
        let _watcher = if self.watch {
            match self.watch_source(tx) {
                Ok(w) => Some(w),
                Err(e) => {
                    handle.report_error(format!(
                        "cannot watch {}: {e}; changes will not be picked up",
                        self.watched_dir().display()
                    ));
                    None
                }
            }
        } else {
            None
        };
        if !self.send(&handle) {
            return;
        }
        if _watcher.is_none() {
            // Nothing more will come; stay alive so the provider's status remains meaningful.
            return;
        }
        while rx.recv().await.is_some() {
            let first = Instant::now();
            loop {
                let deadline = (Instant::now() + self.quiet).min(first + self.max_delay);
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if !self.send(&handle) {
                return;
            }
        }
    }

    fn send(&self, handle: &ProviderHandle) -> bool {
        match self.load() {
            Ok(config) => handle.send_config(config),
            Err(e) => handle.report_error(format!("{e}; keeping the last good configuration")),
        }
    }

    fn watched_dir(&self) -> PathBuf {
        match &self.source {
            Source::Directory(dir) => dir.clone(),
            Source::File(file) => match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }

    fn watch_source(&self, tx: mpsc::UnboundedSender<()>) -> notify::Result<notify::RecommendedWatcher> {
        let source = self.source.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let relevant = event.paths.iter().any(|p| match &source {
                Source::File(file) => p.file_name() == file.file_name(),
                Source::Directory(_) => is_toml(p),
            });
            if relevant {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&self.watched_dir(), RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}

fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

fn load_file(path: &Path) -> Result<DynamicConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    DynamicConfig::from_toml(&text).map_err(|e| toml_error::describe(path, &text, &e))
}

fn load_directory(dir: &Path) -> Result<DynamicConfig, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read directory: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_toml(p) && p.is_file())
        .collect();
    files.sort();
    let mut merged = DynamicConfig::default();
    let mut router_origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut service_origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let config = load_file(&file)?;
        for (name, router) in config.http.routers {
            if let Some(first) = router_origin.insert(name.clone(), file.clone()) {
                return Err(format!(
                    "{}: router `{name}` is already defined in {}",
                    file.display(),
                    first.display()
                ));
            }
            merged.http.routers.insert(name, router);
        }
        for (name, service) in config.http.services {
            if let Some(first) = service_origin.insert(name.clone(), file.clone()) {
                return Err(format!(
                    "{}: service `{name}` is already defined in {}",
                    file.display(),
                    first.display()
                ));
            }
            merged.http.services.insert(name, service);
        }
        merged.http.middlewares.extend(config.http.middlewares);
        merged.http.servers_transports.extend(config.http.servers_transports);
        merged.tcp = merged.tcp.or(config.tcp);
        merged.udp = merged.udp.or(config.udp);
        merged.tls = merged.tls.or(config.tls);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Update;

    const GOOD: &str =
        "[http.routers.r]\nrule = \"Path(`/`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:1\"\n";

    #[test]
    fn a_bad_file_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, "[http.routers.r]\nrule = \"Path(`/`)\"\nservice = 5\n").unwrap();
        let err = FileProvider::new(Source::File(path.clone()), false).load().unwrap_err();
        assert!(err.starts_with(&format!("{}:3:", path.display())), "{err}");
    }

    #[test]
    fn a_directory_merges_and_rejects_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "[http.routers.x]\nrule = \"Path(`/x`)\"\nservice = \"s\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "not toml").unwrap();
        let provider = FileProvider::new(Source::Directory(dir.path().to_path_buf()), false);
        let config = provider.load().unwrap();
        assert_eq!(config.http.routers.len(), 2);
        std::fs::write(
            dir.path().join("c.toml"),
            "[http.routers.x]\nrule = \"Path(`/y`)\"\nservice = \"s\"\n",
        )
        .unwrap();
        let err = provider.load().unwrap_err();
        assert!(err.contains("router `x` is already defined in"), "{err}");
    }

    #[tokio::test]
    async fn watching_follows_renames_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, GOOD).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(FileProvider::new(Source::File(path.clone()), true).run(ProviderHandle::new("file", tx)));
        async fn next(rx: &mut mpsc::UnboundedReceiver<Update>) -> Update {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an update within 5 s")
                .expect("channel open")
        }
        assert!(matches!(next(&mut rx).await, Update::Config { .. }));
        std::fs::write(&path, "[http.routers.r\n").unwrap();
        match next(&mut rx).await {
            Update::Error { error, .. } => assert!(error.contains("routes.toml:1:"), "{error}"),
            other => panic!("expected an error, got {other:?}"),
        }
        let tmp = dir.path().join(".routes.toml.tmp");
        std::fs::write(&tmp, GOOD.replace("Path(`/`)", "Path(`/new`)")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        match next(&mut rx).await {
            Update::Config { config, .. } => assert_eq!(config.http.routers["r"].rule, "Path(`/new`)"),
            other => panic!("expected the renamed file's config, got {other:?}"),
        }
    }
}
