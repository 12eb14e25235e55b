//! Per-server limits (`maxConnsPerHost`): a burst larger than a server takes waits in drover's
//! queue and completes; past `queueTimeout` or `maxQueued` drover answers 503 itself, and the
//! full server is not taken for a failing one. Over HTTP/2 the limit counts streams.
//!
//! The backend here answers each request's head at once and holds its body at a gate the test
//! opens, counting the exchanges it holds at once: what drover let through is read from the
//! server's side, not inferred from timing, and a slot is seen to last until the body's end.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use support::{client, get, service_toml, wait_until, TestDrover};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A backend (HTTP/1.1 and h2c) that sends each response's head at once and its body once its
/// gate opens, counting the exchanges it holds at once and the most it ever held.
struct GatedBackend {
    addr: SocketAddr,
    held: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl GatedBackend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the backend");
        let addr = listener.local_addr().expect("backend address");
        let (held, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (gate, _) = watch::channel(false);
        let accept = tokio::spawn({
            let (held, most, gate) = (held.clone(), most.clone(), gate.clone());
            async move {
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (held, most, gate) = (held.clone(), most.clone(), gate.clone());
                    connections.spawn(async move {
                        let service = service_fn(move |_req| {
                            let (held, most, mut open) = (held.clone(), most.clone(), gate.subscribe());
                            most.fetch_max(held.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                            let body = futures_util::stream::once(async move {
                                let _ = open.wait_for(|open| *open).await;
                                // A moment of work once open, so exchanges still overlap.
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                held.fetch_sub(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ok")))
                            });
                            let response = hyper::Response::new(StreamBody::new(body).boxed());
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            held,
            most,
            gate,
            accept,
        }
    }

    /// Exchanges held now.
    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// The most exchanges held at once so far.
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    /// Lets every held body, and every later one, end.
    fn open(&self) {
        self.gate.send_replace(true);
    }
}

impl Drop for GatedBackend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The value of the series of `name` (a gauge or counter) whose labels contain `label`.
fn metric(drover: &TestDrover, name: &str, label: &str) -> Option<f64> {
    drover
        .drover
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `GET /api/http/services/{name}`.
async fn service_view(drover: &TestDrover, name: &str) -> Value {
    let answer = get(&client(), &format!("http://{}/api/http/services/{name}", drover.drover.api())).await;
    serde_json::from_str(&answer.body).expect("the service as JSON")
}

/// Sends `n` GETs at once, each on its own connection (the client's pool opens one per request
/// in flight); returns them as they will finish.
fn burst(drover: &TestDrover, n: usize) -> JoinSet<support::Answer> {
    let client = client();
    let url = drover.url("/");
    let mut requests = JoinSet::new();
    for _ in 0..n {
        let (client, url) = (client.clone(), url.clone());
        requests.spawn(async move { get(&client, &url).await });
    }
    requests
}

/// Waits (up to 10 s) until `done` holds, or fails saying `what`.
async fn until(what: &str, done: impl FnMut() -> bool) {
    if wait_until(Duration::from_secs(10), done).await.is_none() {
        panic!("not within 10 s: {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_a_servers_limit_waits_in_drover_and_completes() {
    let backend = GatedBackend::start().await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend.addr, 1)]);
    // Two workers: the limit holds for both together.
    let drover = TestDrover::start_with(&routes, "[serversTransport]\nmaxConnsPerHost = 4\n").await;
    let mut requests = burst(&drover, 40);

    let queued = || metric(&drover, "drover_service_server_queued", "s@file");
    until("4 requests at the server and 36 queued in drover", || {
        backend.held() == 4 && queued() == Some(36.0)
    })
    .await;
    assert_eq!(backend.most(), 4, "the server never got more than maxConnsPerHost");
    let view = service_view(&drover, "s@file").await;
    let server = &view["servers"][0];
    assert_eq!(
        (&server["inFlight"], &server["queued"], &server["maxConns"]),
        (&Value::from(4), &Value::from(36), &Value::from(4)),
        "the API shows the server's load: {server}"
    );

    backend.open();
    let mut statuses = Vec::new();
    while let Some(answer) = requests.join_next().await {
        statuses.push(answer.expect("request task").status);
    }
    assert_eq!(statuses, vec![200; 40], "every queued request was served");
    assert_eq!(backend.most(), 4, "not even while the queue drained");
    until("no request in flight or queued", || {
        metric(&drover, "drover_service_server_in_flight", "s@file") == Some(0.0) && queued() == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_timeout_or_max_queued_drover_answers_503_and_the_server_stays_up() {
    let backend = GatedBackend::start().await;
    let url = format!("http://{}", backend.addr);
    // One failure would eject the server: if a refused request counted as one, it would show.
    let routes = format!(
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n\
         [http.services.s.loadBalancer]\nserversTransport = \"one\"\n\
         [http.services.s.loadBalancer.passiveHealthCheck]\nmaxFailedAttempts = 1\nconsecutive5xx = 1\n\
         [[http.services.s.loadBalancer.servers]]\nurl = \"{url}\"\n\
         [http.serversTransports.one]\nmaxConnsPerHost = 1\nqueueTimeout = \"300ms\"\nmaxQueued = 2\n"
    );
    let drover = TestDrover::start(&routes).await;
    let c = client();

    let mut first = burst(&drover, 1);
    until("the first request holds the server's one slot", || backend.held() == 1).await;
    let mut queued = burst(&drover, 2);
    until("two requests queued", || {
        metric(&drover, "drover_service_server_queued", "s@file") == Some(2.0)
    })
    .await;

    let overflow = get(&c, &drover.url("/")).await;
    assert_eq!(overflow.status, 503, "{}", overflow.body);
    assert_eq!(
        overflow.body,
        format!(
            "503 Service Unavailable: server {} is at its maxConnsPerHost (1) and its queue is full (maxQueued 2)\n",
            backend.addr
        )
    );

    for _ in 0..2 {
        let timed_out = queued.join_next().await.expect("a queued request").expect("request task");
        assert_eq!(timed_out.status, 503, "{}", timed_out.body);
        assert!(
            timed_out
                .body
                .contains("is at its maxConnsPerHost (1) and no slot freed within its queueTimeout (300ms)"),
            "{}",
            timed_out.body
        );
    }
    assert_eq!(backend.most(), 1, "nothing refused reached the server");
    assert_eq!(
        metric(&drover, "drover_upstream_queue_refused_total", &backend.addr.to_string()),
        Some(3.0)
    );

    // Full is not failing: the server is up, with no failure counted.
    let view = service_view(&drover, "s@file").await;
    assert_eq!(view["serverStatus"][&url], "UP", "{view}");
    let server = &view["servers"][0];
    assert_eq!(server["state"], "up", "{server}");
    assert_eq!(
        (
            &server["connectionFailures"],
            &server["consecutiveFailures"],
            &server["totalEjections"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(0)),
        "{server}"
    );

    backend.open();
    let held = first.join_next().await.expect("the first request").expect("request task");
    assert_eq!(held.status, 200);
    let again = get(&c, &drover.url("/")).await;
    assert_eq!((again.status, again.body.as_str()), (200, "ok"), "the server serves again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_the_limit_counts_streams() {
    let backend = GatedBackend::start().await;
    let routes = format!(
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n\
         [http.services.s.loadBalancer]\nserversTransport = \"two\"\n\
         [[http.services.s.loadBalancer.servers]]\nurl = \"h2c://{}\"\n\
         [http.serversTransports.two]\nmaxConnsPerHost = 2\n",
        backend.addr
    );
    let drover = TestDrover::start(&routes).await;
    let mut requests = burst(&drover, 12);
    // The two streams' heads have come back: their slots last until their bodies end.
    until("2 streams at the server and 10 queued", || {
        backend.held() == 2 && metric(&drover, "drover_service_server_queued", "s@file") == Some(10.0)
    })
    .await;
    backend.open();
    let mut statuses = Vec::new();
    while let Some(answer) = requests.join_next().await {
        statuses.push(answer.expect("request task").status);
    }
    assert_eq!(statuses, vec![200; 12]);
    assert_eq!(
        backend.most(),
        2,
        "at most two streams at once, over at most a connection per worker"
    );
}
