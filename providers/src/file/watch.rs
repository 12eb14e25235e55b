//! Following the source: the parent directory is watched, events are debounced, and every
//! settled change sends a new full fragment.
//!
//! The parent directory is watched rather than the file itself, so editors that save by writing a
//! temporary file and renaming it over the original (vim, most tools, `mv`) are followed. Events
//! are debounced (a short quiet period, capped) so a file being written in several steps is read
//! once it is complete. A file that fails to parse is reported with file, line and column, and the
//! last good configuration stays in force.

use std::path::PathBuf;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::translate::Syntax;
use super::{FileProvider, Source};
use crate::error::ProviderError;
use crate::provider::ProviderHandle;

impl FileProvider {
    /// Sends the current configuration, then (when watching) a new one after every change, until
    /// the aggregator goes away.
    pub(super) async fn follow(self, handle: ProviderHandle) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        // Kept alive for as long as this task runs: dropping the watcher stops the events.
        let _watcher = if self.watch {
            match self.watch_source(tx) {
                Ok(w) => Some(w),
                Err(e) => {
                    handle.report_error(&ProviderError::unreachable(format!(
                        "cannot watch {}: {e}; changes will not be picked up",
                        self.watched_dir().display()
                    )));
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
            Err(e) => handle.report_error(&e.note("keeping the last good configuration")),
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
                Source::Directory(_) => Syntax::of(p).is_some(),
            });
            if relevant {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&self.watched_dir(), RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::file::translate::tests::GOOD;
    use crate::provider::{Provider, Update};

    /// The first update `accept` takes within 5 s; others are skipped, since one save can raise
    /// several events and so several reads.
    async fn wait_for<T>(rx: &mut mpsc::UnboundedReceiver<Update>, mut accept: impl FnMut(&Update) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let update = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the awaited update within 5 s")
                .expect("channel open");
            if let Some(found) = accept(&update) {
                return found;
            }
        }
    }

    #[tokio::test]
    async fn watching_follows_renames_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, GOOD).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(FileProvider::from_source(Source::File(path.clone()), true).run(ProviderHandle::new("file", tx)));
        async fn next(rx: &mut mpsc::UnboundedReceiver<Update>) -> Update {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an update within 5 s")
                .expect("channel open")
        }
        assert!(matches!(next(&mut rx).await, Update::Config { .. }));
        std::fs::write(&path, "[http.routers.r\n").unwrap();
        match next(&mut rx).await {
            Update::Error { error, .. } => assert!(error.to_string().contains("routes.toml:1:"), "{error}"),
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

    #[tokio::test]
    async fn watching_a_directory_follows_yaml_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let provider = FileProvider::from_source(Source::Directory(dir.path().to_path_buf()), true);
        tokio::spawn(provider.run(ProviderHandle::new("file", tx)));
        let routers = |u: &Update| match u {
            Update::Config { config, .. } => Some(config.http.routers.clone()),
            Update::Error { .. } => None,
        };
        assert_eq!(wait_for(&mut rx, routers).await.len(), 1);

        let path = dir.path().join("b.yaml");
        std::fs::write(&path, "http:\n  routers:\n    x:\n      rule: Path(`/x`)\n      service: s\n").unwrap();
        let found = wait_for(&mut rx, |u| routers(u).filter(|r| r.contains_key("x"))).await;
        assert_eq!(found["x"].rule, "Path(`/x`)");

        std::fs::write(&path, "http:\n  routers:\n    x: [\n").unwrap();
        let error = wait_for(&mut rx, |u| match u {
            Update::Error { error, .. } => Some(error.to_string()),
            Update::Config { .. } => None,
        })
        .await;
        assert!(error.contains("b.yaml:3:"), "{error}");

        let tmp = dir.path().join(".b.yaml.tmp");
        std::fs::write(&tmp, "http:\n  routers:\n    x:\n      rule: Path(`/new`)\n      service: s\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let found = wait_for(&mut rx, |u| {
            routers(u).filter(|r| r.get("x").is_some_and(|x| x.rule == "Path(`/new`)"))
        })
        .await;
        assert_eq!(found.len(), 2, "a.toml's router is still there");
    }
}
