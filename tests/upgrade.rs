//! Zero-downtime upgrade: new drover processes take the listening sockets over from the running
//! one (`--takeover`) under real load (`wrk`) without a failed request, and a successor that
//! dies before it is ready leaves the running drover serving as if nothing happened.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{client, drover_binary, free_port, send, service_toml, wait_for_text, whoami, HttpClient};

/// A host where drover runs: one static configuration (fixed loopback ports, an upgrade
/// socket, a file provider), and the drover processes started on it, each with its own log.
struct Host {
    dir: tempfile::TempDir,
    web: SocketAddr,
    api: SocketAddr,
    socket: PathBuf,
    /// Stands in for systemd's notification socket (`$NOTIFY_SOCKET`).
    systemd: std::os::unix::net::UnixDatagram,
}

impl Host {
    fn new(routes: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("routes.toml"), routes).expect("write routes");
        let socket = dir.path().join("upgrade.sock");
        let systemd = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify.sock")).expect("bind the notify socket");
        systemd.set_nonblocking(true).expect("non-blocking");
        Self {
            web: free_port(),
            api: free_port(),
            socket,
            systemd,
            dir,
        }
    }

    /// Writes static configuration `name` (the host's, plus `extra`) and returns its path.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "[entryPoints.web]\naddress = \"{}\"\n[api]\naddress = \"{}\"\n[log]\nlevel = \"info\"\n[providers.file]\nfilename = \"{}\"\n[upgrade]\nsocket = \"{}\"\n{extra}",
            self.web,
            self.api,
            self.dir.path().join("routes.toml").display(),
            self.socket.display()
        );
        std::fs::write(&path, text).expect("write static config");
        path
    }

    /// Starts a drover named `name` (its log is `name.log`), taking over or not.
    fn start(&self, name: &str, takeover: bool, extra_static: &str) -> Drover {
        let mut command = Command::new(drover_binary());
        command
            .arg("--config")
            .arg(self.config(name, extra_static))
            .args(["--workers", "2"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log_path(name)).expect("log file"));
        if takeover {
            command.arg("--takeover");
        }
        command.env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"));
        Drover(command.spawn().expect("drover starts"))
    }

    /// The notifications sent to systemd so far.
    fn notifications(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.systemd.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web)
    }

    /// Requests answered on the web entrypoint by the drover that now holds the admin socket,
    /// from its `/metrics` (0 when no drover answers).
    async fn requests_served(&self, c: &HttpClient) -> u64 {
        let Ok(answer) = send(c, "GET", &format!("http://{}/metrics", self.api), &[]).await else {
            return 0;
        };
        answer
            .body
            .lines()
            .filter(|l| l.starts_with("drover_entrypoint_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits (up to 10 s) until the drover holding the admin socket has served `count` requests.
    async fn wait_served(&self, c: &HttpClient, count: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.requests_served(c).await < count {
            assert!(Instant::now() < deadline, "{what}: fewer than {count} requests served in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until the first configuration of the drover on this host is in force.
    async fn wait_in_force(&self, c: &HttpClient, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(a) = send(c, "GET", &format!("http://{}/api/rawdata", self.api), &[]).await {
                if a.body.contains("\"generation\":1") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{name} did not start; log:\n{}", self.log(name));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A drover process, killed on drop so that a failing test leaves none behind.
struct Drover(Child);

impl std::ops::Deref for Drover {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Drover {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to `limit`) for `child` to exit.
async fn exited(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a drover") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What wrk reported.
#[derive(Debug)]
struct WrkReport {
    requests: u64,
    /// connect, read, write, timeout.
    socket_errors: [u64; 4],
    non_2xx_3xx: u64,
}

/// Parses wrk's summary (`N requests in …`, and, only when there were some, `Socket errors:
/// connect A, read B, write C, timeout D` and `Non-2xx or 3xx responses: N`).
fn parse_wrk(out: &str) -> Option<WrkReport> {
    let requests = out.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(' ')?;
        rest.starts_with("requests in").then(|| n.parse().ok()).flatten()
    })?;
    let mut socket_errors = [0; 4];
    if let Some(line) = out.lines().find_map(|l| l.trim().strip_prefix("Socket errors:")) {
        for (i, part) in line.split(',').enumerate().take(4) {
            socket_errors[i] = part.split_whitespace().nth(1)?.parse().ok()?;
        }
    }
    let non_2xx_3xx = match out.lines().find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:")) {
        Some(n) => n.trim().parse().ok()?,
        None => 0,
    };
    Some(WrkReport {
        requests,
        socket_errors,
        non_2xx_3xx,
    })
}

#[test]
fn wrk_summaries_are_read_with_and_without_errors() {
    let clean = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 8 connections\n  14728 requests in 4.01s, 4.55MB read\nRequests/sec:   3676.03\n";
    let r = parse_wrk(clean).expect("parsed");
    assert_eq!((r.requests, r.socket_errors, r.non_2xx_3xx), (14728, [0; 4], 0));
    let broken =
        "  14015 requests in 4.02s, 4.33MB read\n  Socket errors: connect 1, read 6, write 2, timeout 3\n  Non-2xx or 3xx responses: 17\n";
    let r = parse_wrk(broken).expect("parsed");
    assert_eq!((r.requests, r.socket_errors, r.non_2xx_3xx), (14015, [1, 6, 2, 3], 17));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_takeovers_under_wrk_load_fail_no_request_and_the_old_drovers_exit() {
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not installed: run tests/setup.sh"
    );
    let (backend, _whoami) = whoami::spawn("a").await;
    let host = Host::new(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]));
    let c = client();
    let first = host.start("first", false, "");
    host.wait_in_force(&c, "first").await;

    // Load for longer than both takeovers take; keep-alive connections, as wrk's are.
    let load = tokio::process::Command::new("wrk")
        .args(["-t1", "-c8", "-d5s", &host.url("/")])
        .kill_on_drop(true)
        .output();
    let load = tokio::spawn(load);
    host.wait_served(&c, 200, "the first drover under load").await;

    // Two takeovers, each by a fresh process, while the load runs: the old drover exits once
    // the new one is ready, and the new one serves (its own counters show it).
    let mut pids = vec![first.id()];
    let mut old = first;
    let mut old_name = "first";
    for name in ["second", "third"] {
        let mut new = host.start(name, true, "");
        pids.push(new.id());
        let status = exited(&mut old, Duration::from_secs(15)).await.unwrap_or_else(|| {
            panic!(
                "{old_name} did not exit after {name} took over; its log:\n{}\n{name}'s log:\n{}",
                host.log(old_name),
                host.log(name)
            )
        });
        assert!(status.success(), "{old_name} exited with {status}; log:\n{}", host.log(old_name));
        assert!(
            host.log(old_name).contains(&format!("handed over to pid {}", new.id())),
            "{old_name}'s log:\n{}",
            host.log(old_name)
        );
        assert_eq!(new.try_wait().expect("wait"), None, "{name} is running; log:\n{}", host.log(name));
        host.wait_served(&c, 200, name).await;
        old = new;
        old_name = name;
    }
    assert!(
        !load.is_finished(),
        "the takeovers took longer than the load: nothing was shown (make wrk's -d longer)"
    );
    let out = load.await.expect("the wrk task").expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let report = parse_wrk(&text).unwrap_or_else(|| panic!("wrk's output does not parse:\n{text}"));
    eprintln!("wrk across two takeovers: {report:?}");
    assert!(report.requests >= 1000, "too little load to show anything: {report:?}\n{text}");
    assert_eq!(report.socket_errors, [0; 4], "connect, read, write, timeout errors:\n{text}");
    assert_eq!(report.non_2xx_3xx, 0, "{text}");

    // The last one serves on, and the upgrade socket is its own (the others did not remove it).
    let answer = send(&c, "GET", &host.url("/after"), &[]).await.expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(host.socket.exists(), "the upgrade socket is gone");
    // systemd was told, by each in turn, that it was ready and the service's main process.
    let notifications = host.notifications();
    let ready: Vec<&String> = notifications.iter().filter(|n| n.contains("READY=1")).collect();
    let expected: Vec<String> = pids.iter().map(|pid| format!("READY=1\nMAINPID={pid}")).collect();
    assert_eq!(ready, expected.iter().collect::<Vec<_>>(), "{notifications:?}");
    assert_eq!(
        notifications.iter().filter(|n| *n == "STOPPING=1").count(),
        2,
        "the two old drovers said they were stopping: {notifications:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_dies_before_it_is_ready_leaves_the_running_drover_serving() {
    let (backend, _whoami) = whoami::spawn("a").await;
    let host = Host::new(&service_toml("r", "PathPrefix(`/`)", "s", &[(backend, 1)]));
    let c = client();
    // --takeover with no drover at the upgrade socket starts fresh (one command for all).
    let mut running = host.start("running", true, "");
    host.wait_in_force(&c, "running").await;
    assert!(host.log("running").contains("starting fresh"), "log:\n{}", host.log("running"));
    let serves = |what: &'static str| {
        let c = c.clone();
        let url = host.url("/");
        async move {
            for i in 0..20 {
                let answer = send(&c, "GET", &url, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{what}: request {i}: {e}"));
                assert_eq!(answer.status, 200, "{what}: request {i}: {}", answer.body);
            }
        }
    };

    // A successor whose configuration cannot be served (an address in use): it receives the
    // sockets, then exits with an error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let extra = format!("[entryPoints.other]\naddress = \"{}\"\n", taken.local_addr().expect("address"));
    let mut broken = host.start("broken", true, &extra);
    let status = exited(&mut broken, Duration::from_secs(10))
        .await
        .expect("the broken successor exits");
    assert_eq!(status.code(), Some(1), "log:\n{}", host.log("broken"));
    assert!(host.log("broken").contains("cannot listen"), "log:\n{}", host.log("broken"));
    let log = wait_for_text(
        Duration::from_secs(5),
        || host.log("running"),
        |l| l.contains("went away before it was ready"),
    )
    .await;
    assert!(
        log.contains(&format!("pid {} went away before it was ready", broken.id())),
        "log:\n{log}"
    );
    serves("after a successor failed to start").await;

    // A successor killed while it waits for its first configuration (its Consul agent never
    // answers), holding the sockets: the running drover serves throughout.
    let silent_consul = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let extra = format!(
        "[providers.consulCatalog.endpoint]\naddress = \"{}\"\n",
        silent_consul.local_addr().expect("address")
    );
    let mut stuck = host.start("stuck", true, &extra);
    let handed = format!("handed the listening sockets to pid {}", stuck.id());
    let log = wait_for_text(Duration::from_secs(10), || host.log("running"), |l| l.contains(&handed)).await;
    assert!(log.contains(&handed), "log:\n{log}\nstuck's log:\n{}", host.log("stuck"));
    serves("while a successor holds the sockets, not ready").await;
    assert!(
        !host.log("running").contains(&format!("pid {} is ready", stuck.id())),
        "the successor became ready: it was meant to wait for Consul; its log:\n{}",
        host.log("stuck")
    );
    stuck.kill().expect("kill the successor");
    let _ = stuck.wait();
    let gone = format!("pid {} went away before it was ready", stuck.id());
    let log = wait_for_text(Duration::from_secs(5), || host.log("running"), |l| l.contains(&gone)).await;
    assert!(log.contains(&gone), "log:\n{log}");
    serves("after the successor was killed").await;
    assert_eq!(running.try_wait().expect("wait"), None, "log:\n{}", host.log("running"));

    // The running drover still owns the upgrade socket: a good successor takes over.
    let mut good = host.start("good", true, "");
    let status = exited(&mut running, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("the running drover did not hand over; log:\n{}", host.log("running")));
    assert!(status.success(), "{status}");
    serves("after a takeover").await;
    assert_eq!(good.try_wait().expect("wait"), None, "log:\n{}", host.log("good"));
}
