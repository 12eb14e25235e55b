//! What drover's fuzz targets share: the steps every configuration source ends with, and a
//! runtime for the code that is async.
//!
//! Each target feeds one kind of untrusted input (a rule, labels, a configuration file, a
//! provider's JSON, an event stream, DNS answers, a request head) to the public function drover
//! reads it with. Whatever that yields is then taken as far as a request would take it: merged
//! and validated as a provider fragment, and compiled into the routing snapshot the proxy serves
//! from, so a value one stage lets through cannot crash the next.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use drover::compile::Compiler;
use drover::health::HealthRegistry;
use drover::metrics::Metrics;
use drover::routing::RequestView;
use drover::upstream::{Transport, Upstreams};
use drover_providers::{aggregate, DynamicConfig};

/// The entrypoints a fragment is merged and compiled for.
pub const ENTRY_POINTS: [&str; 2] = ["web", "websecure"];

/// Merges `config` as the fragment of `provider`, compiles the snapshot the proxy would serve
/// from, and routes a request through it.
pub fn route(provider: &str, config: &DynamicConfig) {
    let entry_points: Vec<String> = ENTRY_POINTS.iter().map(|s| s.to_string()).collect();
    let runtime = aggregate::merge([(provider, config)], &entry_points);
    // The admin API shows it.
    serde_json::to_vec(&runtime).expect("a runtime configuration serialises to JSON");
    let mut compiler = Compiler::new(entry_points, Upstreams::new(Transport::default()));
    let snapshot = compiler.compile(Arc::new(runtime), &HealthRegistry::default(), &Metrics::default());
    let headers = http::HeaderMap::new();
    let request = RequestView {
        host: "a.example",
        path: "/",
        query: None,
        method: &http::Method::GET,
        headers: &headers,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    for table in &snapshot.entry_points {
        let _ = table.find(&request);
    }
}

/// Runs `future` on this thread's single-threaded runtime, whose clock is paused: timers fire
/// as soon as nothing else can run, so a target never waits.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime can be built");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}
