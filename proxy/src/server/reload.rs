//! The reload loop: the aggregator's newest [`Fragments`] in, a swapped snapshot out.
//!
//! It runs on the control runtime but compiles on a blocking thread
//! ([`tokio::task::spawn_blocking`]), so a large reload stalls neither the providers' watches nor
//! the admin API, which share that runtime. Fragments arrive through a `watch` channel: when
//! several sets are published while one compiles, only the newest is compiled next. Active health
//! checks are reconciled here, after the compilation, because their tasks run on this runtime.
//! The snapshot a swap replaces is dropped on a thread of its own ([`Retirer`]): freeing a large
//! one takes milliseconds this runtime must not spend.

use std::sync::Arc;
use std::time::Instant;

use drover_providers::aggregate::Fragments;
use tokio::sync::watch;

use crate::compile::Compiler;
use crate::connection::Shared;
use crate::health::active::ActiveChecks;
use crate::snapshot::Retirer;
use crate::tls::watch::CertWatcher;

/// How long after a certificate file changes it is read: writers replace a certificate and its
/// key one after the other.
const CERT_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Compiles and swaps in every new set of fragments until the aggregator is gone, telling
/// `in_force` the generation of each configuration once it is in force.
///
/// The certificate files the configuration names are watched: a change recompiles the
/// configuration in force (after [`CERT_SETTLE`], so a certificate and its key written one after
/// the other are read together).
///
/// `acme_changes` ticks when an ACME resolver has a new certificate or state to show: the
/// configuration in force is compiled again at once.
pub async fn run(
    mut fragments: watch::Receiver<Fragments>,
    mut compiler: Compiler,
    shared: Arc<Shared>,
    in_force: watch::Sender<u64>,
    mut acme_changes: watch::Receiver<u64>,
) {
    let mut checks = ActiveChecks::default();
    let retirer = match Retirer::start() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("no thread to drop replaced configurations on ({e}); they are dropped on the control thread");
            None
        }
    };
    let (cert_changed, mut cert_changes) = watch::channel(0u64);
    let mut watcher = match CertWatcher::new(cert_changed) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("certificate files cannot be watched ({e}); a changed certificate is read at the next configuration change");
            None
        }
    };
    loop {
        tokio::select! {
            changed = fragments.changed() => if changed.is_err() { break },
            changed = cert_changes.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::time::sleep(CERT_SETTLE).await;
                cert_changes.borrow_and_update();
                tracing::info!("watched files changed (certificates, basicAuth usersFile): reading them again");
                compiler.forget_last();
            }
            changed = acme_changes.changed() => {
                if changed.is_err() {
                    break;
                }
                acme_changes.borrow_and_update();
                compiler.forget_last();
            }
        }
        let latest = fragments.borrow_and_update().clone();
        let started = Instant::now();
        let registries = shared.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let snapshot = compiler.reload(&latest, &registries.health, &registries.metrics);
            (compiler, snapshot)
        })
        .await;
        let snapshot = match compiled {
            Ok((back, snapshot)) => {
                compiler = back;
                Arc::new(snapshot)
            }
            Err(e) => {
                // A bug: the configuration in force stays, and no later one can be compiled.
                tracing::error!("compiling a configuration failed, reloads stop: {e}");
                return;
            }
        };
        checks.reconcile(&snapshot);
        if let Some(watcher) = &mut watcher {
            let mut files = compiler.certificate_files();
            files.extend(users_files(&snapshot));
            watcher.follow(files);
        }
        let (generation, routers, services) = (
            snapshot.config.generation,
            snapshot.config.routers.len(),
            snapshot.config.services.len(),
        );
        let replaced = shared.snapshot.swap(snapshot);
        if let Some(retirer) = &retirer {
            retirer.retire(replaced);
        }
        shared.metrics.reloaded();
        in_force.send_replace(generation);
        let steps = compiler.timings();
        tracing::info!(
            generation,
            routers,
            services,
            elapsed = ?started.elapsed(),
            merge = ?steps.merge,
            compile = ?steps.compile,
            patched = steps.patched,
            "configuration in force"
        );
    }
}

/// The `basicAuth.usersFile` files the configuration in force read: a change to one is read at
/// once, as certificate files are (Traefik reads them at each configuration change only).
fn users_files(snapshot: &crate::snapshot::Snapshot) -> impl Iterator<Item = std::path::PathBuf> + '_ {
    snapshot
        .config
        .middlewares
        .values()
        .filter_map(|m| m.config.basic_auth.as_ref()?.users_file.as_deref())
        .map(std::path::PathBuf::from)
}
