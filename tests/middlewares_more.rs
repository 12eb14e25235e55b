//! `compress`, `retry`, `errors` and `buffering` through a real drover on real sockets: what the
//! client got (decoded), what the backends received, and how often.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use support::wire::{self, request_end};
use support::{client, get, send, Answer, HttpClient, TestDrover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A router `name` on `rule` to a service of one server at `backend`, running `middlewares`.
fn router(name: &str, rule: &str, backend: SocketAddr, middlewares: &[&str]) -> String {
    let list: Vec<String> = middlewares.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[http.routers.{name}]\nrule = \"{}\"\nservice = \"{name}\"\nmiddlewares = [{}]\n[[http.services.{name}.loadBalancer.servers]]\nurl = \"http://{backend}\"\n",
        rule.replace('"', "\\\""),
        list.join(", ")
    )
}

async fn api(c: &HttpClient, drover: &TestDrover, path: &str) -> Value {
    let body = get(c, &format!("http://{}{path}", drover.drover.api())).await.body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// A raw response: status, head (lower-case) and body bytes.
struct Raw {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn fetch(c: &HttpClient, drover: &TestDrover, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = http::Request::builder().method(method).uri(drover.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = c
        .request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Raw { status, headers, body }
}

/// Decodes `data` compressed with `encoding` (what a browser would do).
async fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            let mut d = GzipDecoder::new(&mut out);
            d.write_all(data).await.unwrap();
            d.shutdown().await.unwrap();
        }
        "br" => {
            let mut d = BrotliDecoder::new(&mut out);
            d.write_all(data).await.unwrap();
            d.shutdown().await.unwrap();
        }
        "zstd" => {
            let mut d = ZstdDecoder::new(&mut out);
            d.write_all(data).await.unwrap();
            d.shutdown().await.unwrap();
        }
        other => panic!("unexpected encoding {other}"),
    }
    out
}

fn header<'a>(r: &'a Raw, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A page of `n` bytes of text that compresses well.
fn page(n: usize) -> String {
    "drover compresses this line. ".repeat(n / 29 + 1)[..n].to_string()
}

/// A backend answering by path: `/big` a 4 KB text page, `/small` 100 bytes, `/encoded` an
/// already gzip-labelled body, `/events` an excluded type, any `Range` request a 206.
async fn pages() -> wire::Wire {
    wire::Wire::spawn(|request| {
        let head = request.to_ascii_lowercase();
        let path = request.split(' ').nth(1).unwrap_or("/").to_string();
        let (status, extra, body) = if head.contains("\r\nrange:") {
            (
                "206 Partial Content",
                "content-range: bytes 0-9/4096\r\ncontent-type: text/html\r\n",
                page(10),
            )
        } else if path == "/small" {
            ("200 OK", "content-type: text/html\r\n", page(100))
        } else if path == "/encoded" {
            (
                "200 OK",
                "content-type: text/html\r\ncontent-encoding: gzip\r\n",
                "not really gzip".into(),
            )
        } else if path == "/events" {
            ("200 OK", "content-type: text/event-stream\r\n", page(4096))
        } else {
            ("200 OK", "content-type: text/html; charset=utf-8\r\netag: \"v1\"\r\n", page(4096))
        };
        let head_only = request.starts_with("HEAD ");
        let mut out = format!("HTTP/1.1 {status}\r\n{extra}content-length: {}\r\n\r\n", body.len()).into_bytes();
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        Some(out)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_negotiates_each_encoding_and_leaves_what_it_must_alone() {
    let backend = pages().await;
    let routes = format!(
        "{}{}[http.middlewares.zip.compress]\nexcludedContentTypes = [\"text/event-stream\"]\n[http.middlewares.deny.ipAllowList]\nsourceRange = [\"10.0.0.0/8\"]\n",
        router("r", "PathPrefix(`/`)", backend.addr, &["zip"]),
        router("denied", "PathPrefix(`/denied`)", backend.addr, &["zip", "deny"])
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let original = page(4096);

    for (accept, expected) in [
        ("gzip, deflate, br, zstd", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip;q=0.4, br;q=0.9, zstd;q=0.5", "br"),
        ("*, gzip;q=0", "br"),
    ] {
        let r = fetch(&c, &drover, "GET", "/big", &[("accept-encoding", accept)]).await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "content-encoding"), Some(expected), "Accept-Encoding: {accept}");
        assert_eq!(header(&r, "vary"), Some("Accept-Encoding"));
        assert_eq!(header(&r, "content-length"), None, "the length changed: no Content-Length");
        assert_eq!(header(&r, "etag"), Some("W/\"v1\""), "a strong ETag becomes weak");
        assert!(r.body.len() < 1000, "{expected}: {} bytes is not compressed", r.body.len());
        assert_eq!(
            decode(expected, &r.body).await,
            original.as_bytes(),
            "{expected} decodes to the page"
        );
    }

    // Left as they are: no acceptable encoding, too small, already encoded, excluded, a range,
    // a HEAD.
    let plain = fetch(&c, &drover, "GET", "/big", &[("accept-encoding", "gzip;q=0, identity")]).await;
    assert_eq!((header(&plain, "content-encoding"), plain.body.len()), (None, 4096));
    assert_eq!(header(&plain, "vary"), Some("Accept-Encoding"), "it still varies with the header");
    let none = fetch(&c, &drover, "GET", "/big", &[]).await;
    assert_eq!(header(&none, "content-encoding"), None, "no Accept-Encoding, no defaultEncoding");
    let small = fetch(&c, &drover, "GET", "/small", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (header(&small, "content-encoding"), small.body.len()),
        (None, 100),
        "below minResponseBodyBytes"
    );
    let encoded = fetch(&c, &drover, "GET", "/encoded", &[("accept-encoding", "br")]).await;
    assert_eq!(header(&encoded, "content-encoding"), Some("gzip"));
    assert_eq!(&encoded.body[..], b"not really gzip", "never encoded twice");
    let events = fetch(&c, &drover, "GET", "/events", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (header(&events, "content-encoding"), events.body.len()),
        (None, 4096),
        "excluded type"
    );
    let range = fetch(&c, &drover, "GET", "/big", &[("accept-encoding", "gzip"), ("range", "bytes=0-9")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(
        (header(&range, "content-encoding"), range.body.len()),
        (None, 10),
        "a range is never compressed"
    );
    let refused = fetch(&c, &drover, "GET", "/denied", &[("accept-encoding", "gzip")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        header(&refused, "content-encoding"),
        None,
        "drover's own short answer is below the minimum"
    );
    let head = fetch(&c, &drover, "HEAD", "/big", &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&head, "content-encoding"), None);
    assert_eq!(header(&head, "content-length"), Some("4096"));

    let shown = api(&c, &drover, "/api/http/middlewares/zip@file").await;
    assert_eq!(shown["type"], "compress");
    assert_eq!(shown["compress"]["excludedContentTypes"], serde_json::json!(["text/event-stream"]));
    let explain = api(
        &c,
        &drover,
        "/api/explain?url=http://any.test/big&header=Accept-Encoding:%20zstd;q=0.5,%20br",
    )
    .await;
    assert_eq!(explain["middlewares"], serde_json::json!(["zip@file"]));
    assert_eq!(
        explain["middlewareDecisions"][0]["decision"], "br if the response qualifies",
        "{explain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_streams_a_body_the_server_sends_in_pieces() {
    // A server that sends one event, then waits until the test has seen it through drover.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let first = "data: first event\n\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = released.await;
        let last = "data: last event\n\n";
        let _ = s.write_all(format!("{:x}\r\n{last}\r\n0\r\n\r\n", last.len()).as_bytes()).await;
    });
    let routes = format!(
        "{}[http.middlewares.zip.compress]\n",
        router("r", "PathPrefix(`/`)", backend, &["zip"])
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let req = http::Request::get(drover.url("/stream"))
        .header("accept-encoding", "gzip")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = c.request(req).await.expect("response head");
    assert_eq!(
        response.headers()["content-encoding"],
        "gzip",
        "unknown length: compressed whatever its size"
    );
    let mut body = response.into_body();
    let mut decoder = async_compression::tokio::write::GzipDecoder::new(Vec::new());
    let seen_first = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                decoder.write_all(&data).await.unwrap();
                decoder.flush().await.unwrap();
                if String::from_utf8_lossy(decoder.get_ref()).contains("first event") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        seen_first,
        Ok(true),
        "the first event reached the client while the server still held the rest"
    );
    release.send(()).unwrap();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            decoder.write_all(&data).await.unwrap();
        }
    }
    decoder.shutdown().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(decoder.get_ref()),
        "data: first event\n\ndata: last event\n\n"
    );
}

/// A backend that closes each of its first `drops` connections as soon as it has read a whole
/// request, without answering; later ones get 200 with the body length they received.
async fn dropping(drops: usize) -> (SocketAddr, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (counted, kept) = (count.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (counted, kept) = (counted.clone(), kept.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let Some(end) = request_end(&got) else { continue };
                    let request: Vec<u8> = got.drain(..end).collect();
                    kept.lock().unwrap().push(String::from_utf8_lossy(&request).into_owned());
                    if counted.fetch_add(1, Ordering::SeqCst) < drops {
                        return;
                    }
                    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let body = format!("received {} bytes", request.len() - head_end);
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, count, seen)
}

/// Sends `method path` with `body` (Content-Length) on a new connection: status and body.
async fn with_body(drover: &TestDrover, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nhost: any.test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    wire::exchange(drover.web(), &raw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_sends_a_request_again_with_its_body_when_no_server_answered() {
    let (put_backend, puts, put_seen) = dropping(2).await;
    let (post_backend, posts, _) = dropping(2).await;
    let (plain_backend, plains, _) = dropping(1).await;
    let routes = format!(
        r#"{}{}{}
[http.middlewares.again.retry]
attempts = 3
initialInterval = "10ms"
"#,
        router("put", "PathPrefix(`/put`)", put_backend, &["again"]),
        router("post", "PathPrefix(`/post`)", post_backend, &["again"]),
        router("plain", "PathPrefix(`/plain`)", plain_backend, &[]),
    );
    let drover = TestDrover::start(&routes).await;

    let body = page(3000);
    let (status, answer) = with_body(&drover, "PUT", "/put", body.as_bytes()).await;
    assert_eq!(
        (status, answer.as_str()),
        (200, "received 3000 bytes"),
        "the third attempt got the whole body"
    );
    assert_eq!(puts.load(Ordering::SeqCst), 3);
    let seen = put_seen.lock().unwrap().clone();
    assert!(seen.iter().all(|r| r.ends_with(&body)), "every attempt carried the same body");

    let (status, _) = with_body(&drover, "POST", "/post", b"order=1").await;
    assert_eq!(status, 502, "POST is not idempotent: not retried");
    assert_eq!(posts.load(Ordering::SeqCst), 1, "the POST reached the server once");

    let c = client();
    let explain = api(&c, &drover, "/api/explain?url=http://any.test/post&method=POST").await;
    assert_eq!(explain["middlewares"], serde_json::json!(["again@file"]));
    assert!(
        explain["middlewareDecisions"][0]["decision"]
            .as_str()
            .unwrap()
            .contains("sent once"),
        "{explain}"
    );

    let (status, _) = with_body(&drover, "PUT", "/plain", b"x").await;
    assert_eq!(status, 502, "without the middleware a request with a body is not sent again");
    assert_eq!(plains.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_listed_statuses_and_refuses_bodies_past_its_maximum() {
    let (backend, count) = wire::busy_when(|n| n == 0).await;
    let routes = format!(
        r#"{}
[http.middlewares.again.retry]
attempts = 2
status = ["503"]
maxRequestBodyBytes = 100
"#,
        router("r", "PathPrefix(`/`)", backend.addr, &["again"]),
    );
    let drover = TestDrover::start(&routes).await;
    let (status, body) = with_body(&drover, "PUT", "/x", b"hello").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "the 503 was retried");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let (status, _) = with_body(&drover, "PUT", "/x", &[b'a'; 101]).await;
    assert_eq!(status, 413, "a body past maxRequestBodyBytes cannot be kept for attempts");
    assert_eq!(count.load(Ordering::SeqCst), 2, "and it never reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_replace_the_body_with_the_services_page_and_keep_the_status() {
    let app = wire::Wire::spawn(|request| {
        let path = request.split(' ').nth(1).unwrap_or("/");
        Some(match path {
            "/fail" => b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 11\r\n\r\ninternal!!!".to_vec(),
            "/missing" => b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnah".to_vec(),
            "/teapot" => b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 3\r\n\r\ntea".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfine!".to_vec(),
        })
    })
    .await;
    let pages = wire::Wire::spawn(|request| {
        let path = request.split(' ').nth(1).unwrap_or("/");
        let body = format!("error page {path}");
        Some(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    })
    .await;
    let routes = format!(
        r#"{}
[http.middlewares.oops.errors]
status = ["500-599", "404", "418"]
service = "pages"
query = "/{{status}}.html?from={{url}}"
[http.middlewares.oops.errors.statusRewrites]
"418" = 404
[[http.services.pages.loadBalancer.servers]]
url = "http://{}"
"#,
        router("r", "PathPrefix(`/`)", app.addr, &["oops"]),
        pages.addr
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    let a = send(&c, "GET", &drover.url("/fail"), &[("x-client", "kept")]).await.unwrap();
    assert_eq!(a.status, 502, "the status is kept");
    assert!(a.body.starts_with("error page /502.html?from=http"), "{}", a.body);
    assert!(a.body.contains("%2Ffail"), "{{url}} is the original URL, encoded: {}", a.body);
    assert_eq!(a.headers["content-type"], "text/html", "the page's own headers");
    assert!(
        pages.all_text().to_ascii_lowercase().contains("x-client: kept"),
        "the page is asked with the original request's headers"
    );
    let a: Answer = send(&c, "GET", &drover.url("/missing"), &[]).await.unwrap();
    assert_eq!((a.status, a.body.starts_with("error page /404.html")), (404, true), "{}", a.body);
    let a = send(&c, "GET", &drover.url("/teapot"), &[]).await.unwrap();
    assert_eq!(a.status, 404, "statusRewrites maps 418 to 404");
    assert!(a.body.starts_with("error page /404.html"), "{}", a.body);
    let a = send(&c, "GET", &drover.url("/ok"), &[]).await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, "fine!"), "other statuses pass untouched");
    assert_eq!(
        pages.connections().iter().map(|c| c.text().matches("GET /").count()).sum::<usize>(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_with_a_missing_service_disable_only_their_routers() {
    let app = wire::Wire::answering(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
    let routes = format!(
        r#"{}{}
[http.middlewares.oops.errors]
status = ["500-599"]
service = "nowhere"
"#,
        router("broken", "PathPrefix(`/broken`)", app.addr, &["oops"]),
        router("fine", "PathPrefix(`/fine`)", app.addr, &[]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();
    assert_eq!(send(&c, "GET", &drover.url("/broken"), &[]).await.unwrap().status, 404);
    assert_eq!(send(&c, "GET", &drover.url("/fine"), &[]).await.unwrap().status, 500);
    let m = api(&c, &drover, "/api/http/middlewares/oops@file").await;
    assert_eq!(m["status"], "disabled");
    assert!(
        m["error"][0].as_str().unwrap().contains("service `nowhere@file` does not exist"),
        "{m}"
    );
}

/// A middleware the merge accepts can still fail when drover compiles it: here `errors` sends to a
/// service whose servers transport names a CA file that is not there (read only when compiling).
/// The API must say so, for the middleware and for every router that runs it, and the fix must
/// bring them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_whose_service_fails_to_compile_is_shown_disabled_with_its_routers_until_fixed() {
    let app = wire::Wire::answering(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown").await;
    let pages = wire::Wire::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nsorry").await;
    let fine = wire::Wire::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = support::tls_backend::Ca::new("pages CA").write(dir.path(), "ca.pem");
    let missing = dir.path().join("not-deployed-yet.pem");
    let routes = |ca: &std::path::Path| {
        format!(
            r#"{}{}{}
[http.middlewares.guard.chain]
middlewares = ["pages"]
[http.middlewares.pages.errors]
status = ["500-599"]
service = "pages"
[http.services.pages.loadBalancer]
serversTransport = "pagesTransport"
[[http.services.pages.loadBalancer.servers]]
url = "http://{}"
[http.serversTransports.pagesTransport]
rootCAs = ["{}"]
"#,
            router("direct", "PathPrefix(`/direct`)", app.addr, &["pages"]),
            router("chained", "PathPrefix(`/chained`)", app.addr, &["guard"]),
            router("fine", "PathPrefix(`/fine`)", fine.addr, &[]),
            pages.addr,
            ca.display()
        )
    };
    let drover = TestDrover::start(&routes(&missing)).await;
    let c = client();

    let m = api(&c, &drover, "/api/http/middlewares/pages@file").await;
    assert_eq!(m["status"], "disabled", "{m}");
    let error = m["error"][0].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "http.middlewares.pages.errors.service: service `pages@file` is disabled: the servers transport `pagesTransport@file` is disabled: "
        ) && error.contains(&missing.display().to_string()),
        "{error}"
    );
    for router in ["direct", "chained"] {
        let r = api(&c, &drover, &format!("/api/http/routers/{router}@file")).await;
        assert_eq!(r["status"], "disabled", "{r}");
        let errors = r["error"].to_string();
        assert!(
            errors.contains("middleware `pages@file` is disabled: http.middlewares.pages.errors.service"),
            "{r}"
        );
        let a = send(&c, "GET", &drover.url(&format!("/{router}")), &[]).await.unwrap();
        assert_eq!(a.status, 404, "{router}: never served without its error pages");
    }
    let listed = api(&c, &drover, "/api/http/routers").await;
    let fine_router = listed.as_array().unwrap().iter().find(|r| r["name"] == "fine@file").unwrap();
    assert_eq!(fine_router["status"], "enabled");
    let a = send(&c, "GET", &drover.url("/fine"), &[]).await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, "fine"), "the other router keeps serving");

    let generation = drover.drover.generation();
    drover.write_routes(&routes(&ca));
    drover.wait_for_generation(generation + 1).await;
    assert_eq!(api(&c, &drover, "/api/http/middlewares/pages@file").await["status"], "enabled");
    for router in ["direct", "chained"] {
        assert_eq!(
            api(&c, &drover, &format!("/api/http/routers/{router}@file")).await["status"],
            "enabled"
        );
        let a = send(&c, "GET", &drover.url(&format!("/{router}")), &[]).await.unwrap();
        assert_eq!((a.status, a.body.as_str()), (503, "sorry"), "{router}: served, with its error page");
    }
    assert_eq!(send(&c, "GET", &drover.url("/fine"), &[]).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffering_sends_whole_bodies_and_refuses_those_past_the_maximum() {
    let backend = wire::Wire::spawn(|request| {
        let path = request.split(' ').nth(1).unwrap_or("/");
        Some(if path == "/huge" {
            let body = if request.starts_with("HEAD ") {
                String::new()
            } else {
                "z".repeat(5000)
            };
            format!("HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n{body}").into_bytes()
        } else {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n".to_vec()
        })
    })
    .await;
    let routes = format!(
        r#"{}
[http.middlewares.buf.buffering]
maxRequestBodyBytes = 1000
memRequestBodyBytes = 16
maxResponseBodyBytes = 4000
retryExpression = "IsNetworkError() && Attempts() < 2"
"#,
        router("r", "PathPrefix(`/`)", backend.addr, &["buf"]),
    );
    let drover = TestDrover::start(&routes).await;

    // A chunked upload (its length unknown up front), larger than the memory part.
    let body = page(700);
    let mut raw = b"POST /up HTTP/1.1\r\nhost: any.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for piece in body.as_bytes().chunks(100) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (status, answer) = wire::exchange(drover.web(), &raw).await;
    assert_eq!((status, answer.as_str()), (200, "abcdef"));
    let received = backend.all_text();
    let lower = received.to_ascii_lowercase();
    assert!(lower.contains("content-length: 700\r\n"), "the server gets the length: {lower}");
    assert!(!lower.contains("transfer-encoding"), "{lower}");
    assert!(received.ends_with(&body), "the whole body, intact (part of it went through a file)");

    let (status, _) = with_body(&drover, "POST", "/up", &[b'x'; 1001]).await;
    assert_eq!(status, 413, "past maxRequestBodyBytes");
    assert_eq!(backend.all_text().matches("POST /up").count(), 1, "the server never saw it");

    let (status, _) = with_body(&drover, "GET", "/huge", b"").await;
    assert_eq!(status, 500, "a response past maxResponseBodyBytes");

    let c = client();
    let head = fetch(&c, &drover, "HEAD", "/huge", &[]).await;
    assert_eq!(
        (head.status, header(&head, "content-length")),
        (200, Some("5000")),
        "a HEAD has no body to buffer: its head is passed as it is"
    );
    let m = api(&c, &drover, "/api/http/middlewares/buf@file").await;
    assert_eq!(m["type"], "buffering");
    assert_eq!(m["status"], "warning");
    assert!(m["error"][0].as_str().unwrap().contains("retryExpression"), "{m}");
}

/// The value of the one sample in the exposition `text` whose line starts with `name{` and has
/// all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "one sample of {name} with {labels:?} in:\n{text}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bytes_are_counted_once_when_a_middleware_holds_the_body() {
    // Its first answer is a 503 (retried), every later one a 200.
    let (backend, count) = wire::busy_when(|n| n == 0).await;
    let routes = format!(
        r#"{}{}{}
[http.middlewares.buf.buffering]
memRequestBodyBytes = 16
[http.middlewares.again.retry]
attempts = 2
status = ["503"]
"#,
        router("again", "PathPrefix(`/again`)", backend.addr, &["again"]),
        router("buf", "PathPrefix(`/buf`)", backend.addr, &["buf"]),
        router("plain", "PathPrefix(`/plain`)", backend.addr, &[]),
    );
    let drover = TestDrover::start(&routes).await;
    let (status, _) = with_body(&drover, "PUT", "/again", &[b'a'; 300]).await;
    assert_eq!(status, 200, "the 503 was retried");
    assert_eq!(count.load(Ordering::SeqCst), 2, "the server got the body twice");
    let (status, _) = with_body(&drover, "POST", "/buf", &[b'b'; 700]).await;
    assert_eq!(status, 200);
    let (status, _) = with_body(&drover, "POST", "/plain", &[b'c'; 50]).await;
    assert_eq!(status, 200);

    let c = client();
    let url = format!("http://{}/metrics", drover.drover.api());
    let mut text = String::new();
    // Completions are recorded as response bodies are dropped, just after the client got them.
    for _ in 0..50 {
        text = get(&c, &url).await.body;
        if text.contains("service=\"plain@file\"") && text.contains("service=\"buf@file\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service = |name: &str| metric(&text, "drover_service_requests_bytes_total", &[&format!("service=\"{name}@file\"")]);
    assert_eq!(service("again"), 300.0, "the client sent 300 bytes once, whatever the attempts");
    assert_eq!(service("buf"), 700.0, "a buffered body (partly in a file) is counted");
    assert_eq!(service("plain"), 50.0);
    assert_eq!(
        metric(&text, "drover_entrypoint_requests_bytes_total", &["entrypoint=\"web\""]),
        1050.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_names_an_untyped_body_by_its_first_bytes() {
    let html = format!("<!DOCTYPE html>\n<html><body>{}</body></html>", page(4000));
    let gzipped = {
        let mut encoder = async_compression::tokio::write::GzipEncoder::new(Vec::new());
        encoder.write_all(page(4000).as_bytes()).await.unwrap();
        encoder.shutdown().await.unwrap();
        encoder.into_inner()
    };
    assert!(gzipped.len() >= 20, "a gzip file of some size");
    let pdf = format!("%PDF-1.7\n{}", page(2000));
    let (served_html, served_gz) = (html.clone(), gzipped.clone());
    let backend = wire::Wire::spawn(move |request| {
        let path = request.split(' ').nth(1).unwrap_or("/");
        let body: Vec<u8> = match path {
            "/file.gz" => served_gz.clone(),
            "/doc" => pdf.clone().into_bytes(),
            "/stream" => {
                // Chunked, no length: the first chunk alone decides.
                let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                for piece in served_html.as_bytes().chunks(1000) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                return Some(out);
            }
            _ => served_html.clone().into_bytes(),
        };
        let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        Some(out)
    })
    .await;
    let routes = format!(
        r#"{}
[http.middlewares.zip.compress]
excludedContentTypes = ["application/pdf"]
minResponseBodyBytes = 16
"#,
        router("r", "PathPrefix(`/`)", backend.addr, &["zip"]),
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();

    let page_ = fetch(&c, &drover, "GET", "/page", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        header(&page_, "content-encoding"),
        Some("gzip"),
        "HTML without a type is compressed"
    );
    assert_eq!(
        header(&page_, "content-type"),
        Some("text/html; charset=utf-8"),
        "and named, as Traefik does"
    );
    assert_eq!(decode("gzip", &page_.body).await, html.as_bytes());

    let file = fetch(&c, &drover, "GET", "/file.gz", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(header(&file, "content-encoding"), None, "gzip bytes are not compressed again");
    assert_eq!(header(&file, "content-type"), Some("application/x-gzip"));
    assert_eq!(&file.body[..], &gzipped[..], "passed as they came");

    let doc = fetch(&c, &drover, "GET", "/doc", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (header(&doc, "content-encoding"), header(&doc, "content-type")),
        (None, Some("application/pdf")),
        "the sniffed type is judged by excludedContentTypes"
    );
    assert!(doc.body.starts_with(b"%PDF-1.7\n") && doc.body.len() == 2009);

    let stream = fetch(&c, &drover, "GET", "/stream", &[("accept-encoding", "zstd")]).await;
    assert_eq!(header(&stream, "content-encoding"), Some("zstd"));
    assert_eq!(decode("zstd", &stream.body).await, html.as_bytes());

    let plain = fetch(&c, &drover, "GET", "/page", &[]).await;
    assert_eq!(
        (header(&plain, "content-encoding"), header(&plain, "content-type")),
        (None, None),
        "nothing asked for compression: nothing sniffed, nothing added"
    );
}
