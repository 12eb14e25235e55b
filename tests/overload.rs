//! Overload: a drover out of file descriptors says so in a few lines instead of hundreds a
//! second and serves again once descriptors are free; `maxConnections` keeps connections over
//! the limit in the kernel's backlog until one of the open ones closes. The drover binary runs
//! as its own process, so its descriptor limit can be set without touching the test's.

mod support;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use support::{read_response, service_toml, wait_for_text, whoami, DroverProcess};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// drover's descriptor limit in the shortage test: what it needs to start (its listeners,
/// runtimes, log) with a few to spare, so that a burst of idle connections exhausts it.
const NOFILE: u64 = 64;

/// The accept-failure lines in `log` and the failures they report (a line without a count is
/// one failure).
fn accept_failures(log: &str) -> (usize, u64) {
    let log = without_colours(log);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("os error 24")).collect();
    let failures = lines
        .iter()
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("failures="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(1)
        })
        .sum();
    (lines.len(), failures)
}

/// `log` without its ANSI colour sequences (`ESC [ … m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

async fn get(stream: &mut TcpStream, path: &str) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t.local\r\n\r\n").as_bytes())
        .await
        .expect("send a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_shortage_logs_a_few_lines_and_serving_resumes_once_descriptors_are_free() {
    let (backend, _whoami) = whoami::spawn("a").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = DroverProcess::start_with(&routes, 2, "", |command| {
        // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: NOFILE,
                    rlim_max: NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    })
    .await;

    // A burst of idle connections, more than drover has descriptors for: it accepts what it
    // can and the rest wait in the backlog while every accept fails with EMFILE.
    let mut burst = Vec::new();
    for _ in 0..NOFILE {
        burst.push(TcpStream::connect(drover.web).await.expect("the kernel queues the connection"));
    }
    // Hundreds of failures (the accept loops retry every 10 ms)…
    let log = wait_for_text(Duration::from_secs(10), || drover.log(), |log| accept_failures(log).1 >= 150).await;
    let (lines, failures) = accept_failures(&log);
    assert!(failures >= 150, "the shortage did not happen ({failures} failures); log:\n{log}");
    // …told in a handful of lines: the first at once, then one a second with a count.
    assert!(lines <= 4, "{lines} lines for {failures} accept failures; log:\n{log}");
    assert!(log.contains("ulimit -n"), "the line says what to do; log:\n{log}");

    // The clients give up: drover's descriptors come back and it serves again, new
    // connections as well as those that waited in the backlog.
    drop(burst);
    let mut fresh = TcpStream::connect(drover.web).await.expect("connect");
    get(&mut fresh, "/after").await;
    let answer = read_response(&mut fresh, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no answer once descriptors were free; log:\n{}", drover.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = drover.log();
    let (lines, _) = accept_failures(&log);
    assert!(lines <= 6, "{lines} accept-failure lines in all; log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_a_connection_waits_until_an_open_one_closes() {
    let (backend, _whoami) = whoami::spawn("a").await;
    let routes = service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]);
    let drover = DroverProcess::start_with(&routes, 2, "[entryPoints.web.transport]\nmaxConnections = 2\n", |_| {}).await;

    let mut first = TcpStream::connect(drover.web).await.expect("connect");
    let mut second = TcpStream::connect(drover.web).await.expect("connect");
    for (stream, path) in [(&mut first, "/first"), (&mut second, "/second")] {
        get(stream, path).await;
        let answer = read_response(stream, Duration::from_secs(10)).await.expect("served");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Both stay open (keep-alive): a third connection is queued by the kernel, not served.
    let mut third = TcpStream::connect(drover.web).await.expect("the kernel queues it");
    get(&mut third, "/third").await;
    assert_eq!(
        read_response(&mut third, Duration::from_millis(700)).await,
        None,
        "a third connection is served while two are open"
    );
    // One of the two closes: the third is accepted and answered.
    drop(first);
    let answer = read_response(&mut third, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("the third connection was not served after one closed; log:\n{}", drover.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("GET /third"), "{answer}");
    // The limit is still two: the second connection keeps working.
    get(&mut second, "/again").await;
    let answer = read_response(&mut second, Duration::from_secs(10)).await.expect("served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
