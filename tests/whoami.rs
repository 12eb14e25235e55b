//! The whoami test backend does what drover's tests rely on it to do.

#[path = "../examples/whoami/server.rs"]
mod whoami;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, SinkExt as _, StreamExt as _};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Bound on waiting for something that should happen at once; never a speed assertion.
const PATIENCE: Duration = Duration::from_secs(10);

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn name(&self) -> &str {
        self.headers.get("x-whoami-name").and_then(|v| v.to_str().ok()).unwrap_or("<none>")
    }

    fn lines(&self) -> Vec<&str> {
        self.body.lines().collect()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(addr: SocketAddr, method: Method, path: &str, body: impl Into<Bytes>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(body.into()))
        .unwrap();
    let response = client().request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, Method::GET, path, Bytes::new()).await
}

/// A single HTTP/1.1 connection, for tests that care which connection a request used.
async fn connect<B>(addr: SocketAddr) -> (http1::SendRequest<B>, JoinHandle<Result<(), hyper::Error>>)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    (sender, tokio::spawn(conn))
}

fn request(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", addr.to_string()).body(Full::default()).unwrap()
}

#[tokio::test]
async fn describes_the_request_and_names_the_backend() {
    let (alpha, _alpha) = whoami::spawn("alpha").await;
    let (beta, _beta) = whoami::spawn("beta").await;

    let req = Request::get(format!("http://{alpha}/a?b=1"))
        .header("x-test", "yes")
        .body(Full::default())
        .unwrap();
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["x-whoami-name"], "alpha");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "Name: alpha");
    assert!(lines[1].starts_with("RemoteAddr: 127.0.0.1:"), "{body}");
    assert_eq!(lines[2], "GET /a?b=1 HTTP/1.1");
    assert!(lines.contains(&format!("host: {alpha}").as_str()), "{body}");
    assert!(lines.contains(&"x-test: yes"), "{body}");
    assert!(!body.contains("Body-Length"), "a GET has no body: {body}");

    assert_eq!(get(beta, "/").await.name(), "beta");
}

#[tokio::test]
async fn speaks_h2c_with_prior_knowledge() {
    let (addr, _backend) = whoami::spawn("h2").await;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let response = client.request(request(addr, &format!("http://{addr}/h2"))).await.unwrap();
    assert_eq!(response.headers()["x-whoami-name"], "h2");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("GET /h2 HTTP/2.0\n"), "{body}");
}

#[tokio::test]
async fn status_path_answers_with_that_status() {
    let (addr, _backend) = whoami::spawn("teapot").await;
    let answer = get(addr, "/status/418").await;
    assert_eq!(answer.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(answer.lines()[0], "Name: teapot");
    assert_eq!(get(addr, "/status/503").await.status, 503);
    for bad in ["/status/abc", "/status/99", "/status/1000"] {
        let answer = get(addr, bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(answer.body.contains(bad), "error names the path: {}", answer.body);
    }
}

#[tokio::test]
async fn counts_uploads_without_keeping_them() {
    let (addr, _backend) = whoami::spawn("upload").await;
    let answer = send(addr, Method::POST, "/up", vec![7u8; 1 << 20]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.lines().last(), Some(&"Body-Length: 1048576"));
    assert!(answer.body.contains("content-length: 1048576\n"));

    // Chunked, in frames, as a proxy streaming an upload would send it.
    let frames = stream::iter(0..16).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![1u8; 65536]))));
    let (mut sender, _conn) = connect(addr).await;
    let req = Request::post("/chunked")
        .header("host", addr.to_string())
        .body(StreamBody::new(frames))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("transfer-encoding: chunked\n"), "{body}");
    assert!(body.ends_with("Body-Length: 1048576\n"), "{body}");

    // A declared empty body is still reported.
    let (mut sender, _conn) = connect(addr).await;
    let req = Request::post("/empty")
        .header("host", addr.to_string())
        .header("content-length", "0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"Body-Length: 0\n"), "{body:?}");
}

#[tokio::test]
async fn data_streams_the_requested_size() {
    let (addr, _backend) = whoami::spawn("data").await;

    let answer = get(addr, "/data?size=1000000&chunk=4096").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), 1_000_000);
    assert!(answer.headers.get("content-length").is_none());
    assert_eq!(answer.name(), "data");

    let answer = get(addr, "/data?size=70000&length=1").await;
    assert_eq!(answer.headers["content-length"], "70000");
    assert_eq!(answer.body.len(), 70_000);

    // Chunks larger than the built-in pattern, and a size suffix.
    let answer = get(addr, "/data?size=1m&chunk=300k").await;
    assert_eq!(answer.body.len(), 1 << 20);
    assert!(answer.body.starts_with("0123456789abcdef"));

    assert_eq!(get(addr, "/data?size=0").await.body.len(), 0);
    for bad in ["/data", "/data?size=lots", "/data?size=1&chunk=0", "/data?size=1&interval=soon"] {
        assert_eq!(get(addr, bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn data_interval_sends_each_chunk_before_the_next_pause() {
    let (addr, _backend) = whoami::spawn("slow").await;
    let (mut sender, _conn) = connect(addr).await;
    let start = Instant::now();
    let response = sender
        .send_request(request(addr, "/data?size=3&chunk=1&interval=1s"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut arrivals = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrivals.push((data.len(), start.elapsed().as_secs()));
        }
    }
    assert_eq!(arrivals, [(1, 0), (1, 1), (1, 2)]);
}

#[tokio::test(start_paused = true)]
async fn delay_holds_the_answer_back() {
    let (addr, _backend) = whoami::spawn("delay").await;
    for (path, wait) in [
        ("/?delay=2s", Duration::from_secs(2)),
        ("/status/503?delay=500ms", Duration::from_millis(500)),
        ("/?delay=250", Duration::from_millis(250)),
        ("/?delay=1.5s", Duration::from_millis(1500)),
    ] {
        let start = Instant::now();
        let answer = get(addr, path).await;
        assert!(answer.status == 200 || answer.status == 503, "{path}");
        assert!(start.elapsed() >= wait, "{path} answered after {:?}", start.elapsed());
        assert!(start.elapsed() < wait + Duration::from_millis(100), "{path}");
    }
    let answer = get(addr, "/?delay=soon").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("delay=soon"), "{}", answer.body);
}

#[tokio::test]
async fn echo_upgrades_to_websocket_and_echoes() {
    let (addr, _backend) = whoami::spawn("ws").await;
    let (mut socket, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-whoami-name"], "ws");

    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hello"));
    socket.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::binary(vec![0u8, 1, 2]));
    socket.close(None).await.unwrap();
    while let Some(Ok(message)) = socket.next().await {
        assert!(message.is_close(), "{message:?}");
    }

    assert_eq!(get(addr, "/echo").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_status_can_be_switched() {
    let (addr, _backend) = whoami::spawn("sick").await;
    let (other, _other) = whoami::spawn("well").await;
    let answer = get(addr, "/health").await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok"));

    assert_eq!(send(addr, Method::POST, "/health", "500").await.status, 200);
    assert_eq!(get(addr, "/health").await.status, 500);
    assert_eq!(get(other, "/health").await.status, 200, "health is per backend");

    assert_eq!(send(addr, Method::POST, "/health", "abc").await.status, 400);
    assert_eq!(send(addr, Method::POST, "/health", "x".repeat(100)).await.status, 400);
    assert_eq!(get(addr, "/health").await.status, 500, "bad input keeps the last status");

    assert_eq!(send(addr, Method::POST, "/health", "200\n").await.status, 200);
    assert_eq!(get(addr, "/health").await.status, 200);
}

#[tokio::test]
async fn bench_and_close() {
    let (addr, _backend) = whoami::spawn("fast").await;
    let answer = get(addr, "/bench").await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "1"));

    let (mut sender, conn) = connect(addr).await;
    let response = sender.send_request(request(addr, "/close")).await.unwrap();
    assert_eq!(response.headers()["connection"], "close");
    response.into_body().collect().await.unwrap();
    tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("server closes the connection after /close")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn dropping_the_handle_kills_the_backend() {
    let (addr, backend) = whoami::spawn("doomed").await;
    let (mut sender, conn) = connect(addr).await;
    let response = sender.send_request(request(addr, "/")).await.unwrap();
    response.into_body().collect().await.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await.unwrap();

    drop(backend);

    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connections are refused right after the drop"
    );
    tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("keep-alive connection is closed")
        .ok();
    let ended = tokio::time::timeout(PATIENCE, socket.next()).await.expect("websocket is closed");
    assert!(!matches!(ended, Some(Ok(Message::Text(_) | Message::Binary(_)))));
}

#[tokio::test]
async fn stop_waits_until_the_backend_is_gone() {
    let (addr, backend) = whoami::spawn("stopped").await;
    assert_eq!(get(addr, "/").await.status, 200);
    backend.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}
