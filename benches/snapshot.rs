//! Reconfiguration cost: merging and validating a 10,000-router configuration (rules parsed),
//! then compiling it into a routing snapshot (`drover::compile`). Traefik's reload costs grow with configuration
//! size (its #13744: ~1.4 CPU-s per rebuild at 80 routes on v3.7); this prints drover's.

use std::sync::Arc;

use criterion::BatchSize;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use drover::compile::Compiler;
use drover::health::HealthRegistry;
use drover::metrics::Metrics;
use drover::upstream::{Transport, Upstreams};
use drover_providers::aggregate::{merge, Fragments};
use drover_providers::DynamicConfig;

/// The allocator the drover binary runs with (`proxy/src/main.rs`): glibc's malloc costs reloads
/// of this size about half again as much, which would misstate what drover pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config(routers: usize) -> DynamicConfig {
    let mut text = String::new();
    for i in 0..routers {
        let rule = match i % 4 {
            0 => format!("Host(`host{i}.example.com`)"),
            1 => format!("Host(`host{i}.example.com`) && PathPrefix(`/api/{i}`)"),
            2 => format!("PathPrefix(`/p{i}`) && Method(`GET`)"),
            _ => format!("HostRegexp(`^tenant{i}\\\\.example\\\\.(com|net)$`)"),
        };
        text.push_str(&format!("[http.routers.r{i}]\nrule = \"{rule}\"\nservice = \"s{}\"\n", i % 100));
    }
    for s in 0..100 {
        for k in 0..3 {
            text.push_str(&format!(
                "[[http.services.s{s}.loadBalancer.servers]]\nurl = \"http://10.0.{s}.{k}:8080\"\n"
            ));
        }
    }
    DynamicConfig::from_toml(&text).expect("bench config parses")
}

fn reload(c: &mut Criterion) {
    let entry_points = vec!["web".to_string()];
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    for routers in [1_000usize, 10_000] {
        let dynamic = config(routers);
        group.bench_with_input(BenchmarkId::new("merge_and_validate", routers), &dynamic, |b, dynamic| {
            b.iter(|| merge([("file", dynamic)], &entry_points))
        });
        let merged = Arc::new(merge([("file", &dynamic)], &entry_points));
        let health = HealthRegistry::default();
        let metrics = Metrics::default();
        // A full compile: nothing cached (a fresh compiler, as at start).
        group.bench_with_input(BenchmarkId::new("compile_snapshot", routers), &merged, |b, merged| {
            b.iter_batched(
                || Compiler::new(entry_points.clone(), Upstreams::new(Transport::default())),
                |mut compiler| compiler.compile(merged.clone(), &health, &metrics),
                BatchSize::PerIteration,
            )
        });
        // A reload where one router changed: everything else comes from the compiler's caches.
        // The returned snapshot is dropped inside the measurement, although drover drops replaced
        // snapshots off the control thread: the figure is an upper bound.
        let mut compiler = Compiler::new(entry_points.clone(), Upstreams::new(Transport::default()));
        let fragments = |generation, config: &DynamicConfig| Fragments {
            generation,
            fragments: vec![("file".into(), Arc::new(config.clone()))],
        };
        let (original, mut changed) = (fragments(1, &dynamic), dynamic.clone());
        changed.http.routers.get_mut("r7").expect("router r7").rule = "Path(`/changed`)".into();
        let changed = fragments(2, &changed);
        let _ = compiler.reload(&original, &health, &metrics);
        if std::env::var_os("DROVER_BENCH_SPLIT").is_some() {
            // The steps of a reload, and the drop of the snapshot it returns, which drover does
            // on a thread of its own (`drover::snapshot::Retirer`). Changed and back, as below:
            // the same fragments twice are no change (and the same generation is compiled in
            // full: it is how certificate changes are read).
            for i in 0..6 {
                let t = std::time::Instant::now();
                let snapshot = compiler.reload(if i % 2 == 0 { &changed } else { &original }, &health, &metrics);
                let reloaded = t.elapsed();
                let t = std::time::Instant::now();
                drop(snapshot);
                let steps = compiler.timings();
                eprintln!(
                    "{routers}: reload {reloaded:?} (merge {:?}, compile {:?}{}), drop {:?}",
                    steps.merge,
                    steps.compile,
                    if steps.patched { ", patched" } else { "" },
                    t.elapsed()
                );
            }
        }
        let mut flip = false;
        group.bench_function(BenchmarkId::new("reload_one_change_cached", routers), |b| {
            b.iter(|| {
                flip = !flip;
                compiler.reload(if flip { &changed } else { &original }, &health, &metrics)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
