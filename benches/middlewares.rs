//! What each middleware costs a request (issue #23): its request side on a typical GET head and
//! its response side on a typical response head, in-process, beside a chain with no step (the
//! baseline every request with middlewares pays). A router with no middleware pays none of this
//! (`Route::middlewares` is `None`); `benches/callgrind.sh` measures that path whole.
//!
//! ```text
//! cargo bench --bench middlewares -- --quick
//! ```
//!
//! The middlewares come from a file provider's TOML, merged and compiled as drover does it.
//! `basicAuth` is measured with a `{SHA}` hash: bcrypt's cost (its own, by design) would hide
//! the middleware's.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use drover::middleware::{Chain, Middleware, Req, Stores};
use drover_providers::aggregate::merge;
use drover_providers::DynamicConfig;
use http::{HeaderMap, HeaderValue, Request, StatusCode};

const MIDDLEWARES: &str = r#"
[http.middlewares.headers.headers]
frameDeny = true
contentTypeNosniff = true
stsSeconds = 31536000
[http.middlewares.headers.headers.customRequestHeaders]
X-Script-Name = "drover"
[http.middlewares.headers.headers.customResponseHeaders]
X-Served-By = "drover"

[http.middlewares.stripPrefix.stripPrefix]
prefixes = ["/api"]

[http.middlewares.addPrefix.addPrefix]
prefix = "/v2"

[http.middlewares.replacePathRegex.replacePathRegex]
regex = "^/api/(.*)"
replacement = "/internal/$1"

[http.middlewares.redirectScheme.redirectScheme]
scheme = "https"

[http.middlewares.basicAuth.basicAuth]
users = ["user:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="]

[http.middlewares.ipAllowList.ipAllowList]
sourceRange = ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.1/32"]

[http.middlewares.rateLimit.rateLimit]
average = 100000000
burst = 100000000

[http.middlewares.inFlightReq.inFlightReq]
amount = 100000
"#;

/// The request every step sees: a browser-like GET under `/api`, with the basic-auth
/// credentials `user:password`.
fn request() -> http::request::Parts {
    let (parts, ()) = Request::get("/api/items/42?page=2")
        .header("host", "app.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0")
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-encoding", "gzip, br")
        .header("authorization", "Basic dXNlcjpwYXNzd29yZA==")
        .header("x-forwarded-for", "127.0.0.1")
        .body(())
        .expect("a valid request")
        .into_parts();
    parts
}

fn response_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert("content-length", HeaderValue::from_static("5120"));
    headers.insert("date", HeaderValue::from_static("Mon, 07 Dec 2026 07:00:00 GMT"));
    headers
}

fn middlewares(c: &mut Criterion) {
    let dynamic = DynamicConfig::from_toml(MIDDLEWARES).expect("bench middlewares parse");
    let merged = merge([("file", &dynamic)], &["web".to_string()]);
    let mut stores = Stores::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let host = HeaderValue::from_static("app.example.com");
    let template = request();
    let chains: Vec<(&str, Arc<Chain>)> = std::iter::once(("none", Arc::new(Chain::new(Vec::new(), Vec::new()))))
        .chain(merged.middlewares.values().map(|info| {
            let step = Middleware::build(info, &mut stores, &|name| Err(format!("no service `{name}` here")))
                .unwrap_or_else(|e| panic!("{}: {e:?}", info.name));
            let name = info.name.split('@').next().unwrap_or(&info.name);
            let name: &str = Box::leak(name.to_string().into_boxed_str());
            (name, Arc::new(Chain::new(vec![info.name.as_str().into()], vec![Arc::new(step)])))
        }))
        .collect();
    let mut group = c.benchmark_group("middleware");
    for (name, chain) in &chains {
        group.bench_function(*name, |b| {
            b.iter(|| {
                // The head is rebuilt each time, as a request brings its own: its copy is part of
                // every row, the baseline ("none") included.
                let mut parts = template.clone();
                let mut req = Req {
                    parts: &mut parts,
                    peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    host: Some(&host),
                    scheme: "http",
                    trusted: false,
                    body: None,
                };
                let (pending, answered) = runtime.block_on(chain.request(&mut req));
                if answered.is_none() {
                    let mut headers = response_headers();
                    pending.response(StatusCode::OK, &mut headers);
                    black_box(headers);
                }
                black_box(answered);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, middlewares);
criterion_main!(benches);
