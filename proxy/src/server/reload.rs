//! The reload loop: the aggregator's newest [`Fragments`] in, a swapped snapshot out.
//!
//! It runs on the control runtime but compiles on a blocking thread
//! ([`tokio::task::spawn_blocking`]), so a large reload stalls neither the providers' watches nor
//! the admin API, which share that runtime. Fragments arrive through a `watch` channel: when
//! several sets are published while one compiles, only the newest is compiled next. Active health
//! checks are reconciled here, after the compilation, because their tasks run on this runtime.

use std::sync::Arc;
use std::time::Instant;

use drover_providers::aggregate::Fragments;
use tokio::sync::watch;

use crate::compile::Compiler;
use crate::connection::Shared;
use crate::health::active::ActiveChecks;

/// Compiles and swaps in every new set of fragments until the aggregator is gone, telling
/// `in_force` the generation of each configuration once it is in force.
pub async fn run(mut fragments: watch::Receiver<Fragments>, mut compiler: Compiler, shared: Arc<Shared>, in_force: watch::Sender<u64>) {
    let mut checks = ActiveChecks::default();
    while fragments.changed().await.is_ok() {
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
        let (generation, routers, services) = (
            snapshot.config.generation,
            snapshot.config.routers.len(),
            snapshot.config.services.len(),
        );
        shared.snapshot.store(snapshot);
        shared.metrics.reloaded();
        in_force.send_replace(generation);
        tracing::info!(generation, routers, services, elapsed = ?started.elapsed(), "configuration in force");
    }
}
