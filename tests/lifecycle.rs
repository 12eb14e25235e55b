//! The drover process: start-up errors and graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{client, drover_binary, send, service_toml, DroverProcess};

#[test]
fn a_bad_static_config_exits_non_zero_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, "[entryPoints.web]\naddress = \":80x\"\n").unwrap();
    let out = std::process::Command::new(drover_binary())
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run drover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:11: entryPoints.web.address", path.display())),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "[entryPoints.web]\naddress = \":8080\"\n[providers.file]\nfilename = \"r.toml\"\nwatcg = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(drover_binary())
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run drover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":5:1:") && stderr.contains("watcg"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    // A backend that says when the request has reached it, then takes this long to answer.
    const ANSWER_AFTER: Duration = Duration::from_millis(1500);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (arrived, request_arrived) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "drover closed the connection before sending a whole request");
            head.extend_from_slice(&buf[..n]);
        }
        let _ = arrived.send(());
        tokio::time::sleep(ANSWER_AFTER).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nx-whoami-name: slow\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    let mut drover = DroverProcess::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]), 2).await;
    let url = drover.url("/slow");
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let c = client();
        send(&c, "GET", &url, &[]).await
    });
    tokio::time::timeout(Duration::from_secs(10), request_arrived)
        .await
        .expect("the request reaches the backend within 10 s")
        .expect("the backend task is alive");
    drover.signal(libc::SIGTERM);
    let answer = slow.await.expect("client task").expect("the in-flight request completes");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.backend(), "slow");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = drover.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "drover did not exit after SIGTERM; log:\n{}",
            drover.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}; log:\n{}", drover.log());
    assert!(started.elapsed() >= ANSWER_AFTER, "it waited for the request");
    // New connections are refused once it is gone.
    assert!(tokio::net::TcpStream::connect(drover.web).await.is_err());
    assert!(drover.log().contains("shutting down"), "{}", drover.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_answers_its_first_requests_from_its_first_configuration() {
    let (backend, _whoami) = support::whoami::spawn("first").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    // A request sent the moment drover has bound its port, before the file provider's first
    // fragment has been compiled: it must wait for the routes, not be answered 404.
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes_path = dir.path().join("routes.toml");
        std::fs::write(&routes_path, &routes).expect("write routes");
        let text = format!(
            "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[api]\naddress = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[providers.file]\nfilename = \"{}\"\n",
            routes_path.display()
        );
        let resolved = drover::config::StaticConfig::parse(std::path::Path::new("test.toml"), &text).expect("static config");
        let drover = drover::Drover::start(resolved, 1).expect("drover starts");
        let url = format!("http://{}/", drover.entry_point("web").expect("web"));
        let answer = send(&client(), "GET", &url, &[]).await.expect("an answer");
        assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
        assert_eq!(answer.backend(), "first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_answers_an_idle_keep_alive_connection_once_more_then_closes_it() {
    let (backend, _whoami) = support::whoami::spawn("a").await;
    let drover = support::TestDrover::start(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)])).await;
    let mut idle = tokio::net::TcpStream::connect(drover.web()).await.expect("connect");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t.local\r\n\r\n");
    idle.write_all(get("/first").as_bytes()).await.expect("send");
    let answer = support::read_response(&mut idle, Duration::from_secs(10)).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Draining begins; once no new connection is accepted, the idle one sends its next request
    // (as a keep-alive client does at any moment): it is answered, not reset.
    drover.drover.shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(drover.web()).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting 5 s after shutdown");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    idle.write_all(get("/second").as_bytes()).await.expect("send");
    let answer = support::read_response(&mut idle, Duration::from_secs(5))
        .await
        .expect("the request on the idle connection is answered while draining");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut rest))
        .await
        .expect("closed after that answer")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing follows the last answer");
}

/// A keep-alive connection idle long enough to be parked (hyper's state and its task dropped, the
/// bare socket kept in the worker's parking lot: `server::parking`) closes once draining stops
/// lingering, like any idle connection: not before (its client may be about to speak), and not
/// when the grace period runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_closes_a_parked_connection_after_the_linger_not_the_grace_period() {
    let (backend, _whoami) = support::whoami::spawn("a").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = support::TestDrover::start_with(&routes, "[entryPoints.web.transport.lifeCycle]\ngraceTimeOut = \"30s\"\n").await;
    let mut idle = tokio::net::TcpStream::connect(drover.web()).await.expect("connect");
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: t.local\r\n\r\n").await.expect("send");
    let answer = support::read_response(&mut idle, Duration::from_secs(10)).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Past the parking delay (1 s, looked at every second): parked by now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let draining = Instant::now();
    drover.drover.shutdown();
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut rest))
        .await
        .expect("the parked connection is closed within 10 s of the shutdown (grace period: 30 s)")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a word: {:?}", String::from_utf8_lossy(&rest[..n]));
    let after = draining.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed {after:?} after the shutdown began (linger: 1 s)"
    );
}
