//! What observability costs per request: recording into the metrics shard, and handing an
//! entry to the access log. Compare with drover's time per request at full load
//! (1 / requests-per-second per worker, from `load_compare`): the target is under 3%.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use drover::access_log::{AccessLog, AccessLogConfig, Entry, Format, Memo, RequestText};
use drover::metrics::{method_index, Metrics, RequestKey};
use http::{HeaderValue, Method, Version};

fn record(c: &mut Criterion) {
    let metrics = Metrics::default();
    metrics.set_entry_points(&["web".to_string()]);
    let key = RequestKey {
        entry_point: 0,
        router: metrics.id("r@file"),
        service: metrics.id("s@file"),
        code: 200,
        method: method_index(&Method::GET),
        protocol: 0,
    };
    c.bench_function("metrics_record", |b| {
        b.iter(|| metrics.record(black_box(key), Duration::from_micros(250), 0, 120))
    });
    c.bench_function("clock_now_and_elapsed", |b| b.iter(|| black_box(Instant::now()).elapsed()));

    let dir = tempfile::tempdir().expect("temp dir");
    let log = AccessLog::start(&AccessLogConfig {
        file_path: Some(dir.path().join("access.log")),
        format: Some("json".into()),
        buffering_size: Some(1 << 20),
    })
    .expect("access log starts");
    // What a request does: take an entry (one the writer handed back, once it has), fill it in
    // place, queue it.
    let (client, entry_point): (HeaderValue, std::sync::Arc<str>) = (HeaderValue::from_static("127.0.0.1"), "web".into());
    let router: std::sync::Arc<str> = "r@file".into();
    c.bench_function("access_log_enqueue", |b| {
        b.iter(|| {
            let mut e = log.entry(Instant::now(), &client, &entry_point);
            e.request.fill(b"/index.html", Some(b"shop.local"), None, Some(b"wrk"));
            e.router = Some(router.clone());
            e.status = 200;
            log.send(e)
        })
    });
    let one = Entry {
        client: HeaderValue::from_static("127.0.0.1"),
        began: Instant::now(),
        start: Duration::from_secs(1_796_000_000),
        method: Method::GET,
        version: Version::HTTP_11,
        request: RequestText::new("/index.html", Some("shop.local"), None, Some("wrk")),
        status: 200,
        size: 120,
        request_size: 0,
        router: Some("r@file".into()),
        service: Some("s@file".into()),
        server: Some("http://127.0.0.1:9000".into()),
        entry_point: "web".into(),
        duration: Duration::from_micros(250),
        retries: 0,
        forwarded_for: Vec::new(),
    };
    // The writer thread's share: formatting one line (the write itself is batched, 64 KiB at a time).
    let mut clock = Memo::default();
    let mut out = Vec::with_capacity(1024);
    for (name, format) in [
        ("access_log_format_json", Format::Json),
        ("access_log_format_common", Format::Common),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                format.write(black_box(&one), 1, &mut clock, &mut out);
            })
        });
    }
}

criterion_group!(benches, record);
criterion_main!(benches);
