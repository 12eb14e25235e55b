//! Watching certificate files, so a renewed certificate is in force without a reload (Traefik
//! #3083, #5495: its certificate files are read once), and `basicAuth.usersFile` files, so a
//! changed password list is too.
//!
//! The directories holding the files are watched, not the files: certbot and cert-manager
//! replace a file by renaming another over it (or by swapping a `..data` symlink, in a
//! Kubernetes secret volume), which a watch on the file itself would not survive. Any change
//! to a watched file, or to a `..`-prefixed entry beside it, bumps a counter the reload loop
//! waits on; it then recompiles the configuration in force, which rereads the pairs and keeps
//! the last good one of any pair now broken.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

/// Watches the directories of the certificate files in use.
pub struct CertWatcher {
    watcher: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: Arc<Mutex<HashSet<PathBuf>>>,
}

impl std::fmt::Debug for CertWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertWatcher").field("dirs", &self.dirs).finish()
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl CertWatcher {
    /// A watcher that bumps `changed` when a followed file changes.
    pub fn new(changed: watch::Sender<u64>) -> notify::Result<Self> {
        let files: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        let followed = files.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let relevant = {
                let Ok(files) = followed.lock() else { return };
                event
                    .paths
                    .iter()
                    .any(|p| files.contains(p) || p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("..")))
            };
            if relevant {
                changed.send_modify(|n| *n += 1);
            }
        })?;
        Ok(Self {
            watcher,
            dirs: HashSet::new(),
            files,
        })
    }

    /// Follows exactly `files` from now on.
    pub fn follow(&mut self, files: Vec<PathBuf>) {
        let files: HashSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        let dirs: HashSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {} for certificate changes: {e}", new.display());
            }
        }
        self.dirs = dirs;
        if let Ok(mut followed) = self.files.lock() {
            *followed = files;
        }
    }
}
