//! TCP and UDP routers end to end, against real peers: TLS passthrough to an nginx with its own
//! certificate beside a router drover terminates and an HTTP router on the same entrypoint; a
//! ClientHello split over three segments; a silent connection closed at the peek deadline;
//! half-close; connect retries; PROXY protocol out (v1, v2) and in (trusted peers only);
//! redis-benchmark with a Redis killed mid-run; pgbench through a plain router and a Postgres
//! client reaching its server by SNI through the STARTTLS preamble; `dig` over UDP to BIND.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::pki::{Ca, Client};
use support::{get, wait_until, TestDrover};

/// A TCP echo server: every byte comes back; the write half closes after the read half ends.
async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// A server that records the first `n` bytes of each connection it gets, then echoes the rest.
async fn recorder(n: usize) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
    let addr = listener.local_addr().expect("recorder address");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; n];
                if stream.read_exact(&mut head).await.is_ok() {
                    let _ = tx.send(head);
                    let (mut r, mut w) = stream.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    (addr, rx)
}

fn tcp_router(name: &str, rule: &str, service: &str, tls: &str) -> String {
    format!("[tcp.routers.{name}]\nrule = \"{rule}\"\nservice = \"{service}\"\n{tls}")
}

fn tcp_service(name: &str, servers: &[SocketAddr]) -> String {
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("[[tcp.services.{name}.loadBalancer.servers]]\naddress = \"{s}\"\n"));
    }
    out
}

async fn api(drover: &TestDrover, path: &str) -> serde_json::Value {
    let body = get(&support::client(), &format!("http://{}{path}", drover.drover.api())).await.body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// A ClientHello for `sni`, as rustls's client writes it.
fn client_hello(sni: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Both of rustls's providers are compiled in (drover's aws-lc-rs, the tests' ring): name one.
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("hello");
    out
}

fn program(name: &str) -> std::path::PathBuf {
    support::bind::require(name)
}

/// nginx serving HTTPS with `leaf` on a free port; killed on drop. One process (no master):
/// killing a master leaves its worker running, orphaned.
struct Nginx {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(leaf: &support::pki::Leaf, body: &str) -> Self {
        let nginx = program("nginx");
        let dir = tempfile::tempdir().expect("nginx dir");
        let addr = support::free_port();
        let p = dir.path().display();
        let conf = format!(
            "master_process off;\nerror_log {p}/error.log;\npid {p}/nginx.pid;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  server {{\n    listen {addr} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"{body}\"; }}\n  }}\n}}\n",
            leaf.cert_file.display(),
            leaf.key_file.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let this = Self { addr, child, _dir: dir };
        if wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(addr).is_ok())
            .await
            .is_none()
        {
            let log = std::fs::read_to_string(this._dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx did not start listening on {addr}; its log:\n{log}");
        }
        this
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_termination_and_http_share_one_entrypoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let drover_ca = Ca::new("drover CA");
    let nginx_ca = Ca::new("nginx CA");
    let drover_leaf = drover_ca.leaf(dir.path(), "term", &["term.test"]);
    let nginx_leaf = nginx_ca.leaf(dir.path(), "pass", &["pass.test"]);
    let nginx = Nginx::start(&nginx_leaf, "from nginx").await;
    let (echo_addr, _echo) = echo().await;
    let (web, _whoami) = support::whoami::spawn("web").await;
    let routes = [
        tcp_router("pass", "HostSNI(`pass.test`)", "nginx", "[tcp.routers.pass.tls]\npassthrough = true\n"),
        tcp_router("term", "HostSNI(`term.test`)", "echo", "[tcp.routers.term.tls]\n"),
        tcp_service("nginx", &[nginx.addr]),
        tcp_service("echo", &[echo_addr]),
        format!("[http.routers.web]\nrule = \"Host(`web.test`)\"\nservice = \"web\"\n[[http.services.web.loadBalancer.servers]]\nurl = \"http://{web}\"\n"),
        "[http.routers.websecure]\nrule = \"Host(`web.test`)\"\nservice = \"web\"\ntls = {}\n".to_string(),
        drover_leaf.toml(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let client = Client::new(&["http/1.1"], None);

    // Passthrough: the client sees nginx's certificate and nginx's answer.
    let presented = client.presented(drover.web(), "pass.test").await.expect("passthrough handshake");
    assert_eq!(presented, nginx_leaf.der, "passthrough must present the server's own certificate");
    let (status, body, _) = client
        .get(drover.web(), "pass.test", "pass.test", "/")
        .await
        .expect("GET through passthrough");
    assert_eq!((status, body.as_str()), (200, "from nginx"));

    // Terminated: drover's certificate, then plain bytes to the echo server.
    let presented = client.presented(drover.web(), "term.test").await.expect("terminated handshake");
    assert_eq!(presented, drover_leaf.der);
    let mut tls = client.connect(drover.web(), "term.test").await.expect("connect");
    tls.write_all(b"ping over TLS").await.expect("write");
    let mut buf = [0u8; 13];
    tls.read_exact(&mut buf).await.expect("echo");
    assert_eq!(&buf, b"ping over TLS");

    // HTTP on the same entrypoint, plain and over TLS (no TCP router takes web.test).
    let answer = support::send(&support::client(), "GET", &drover.url("/"), &[("host", "web.test")])
        .await
        .expect("plain GET");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (status, _, _) = client.get(drover.web(), "web.test", "web.test", "/").await.expect("HTTPS GET");
    assert_eq!(status, 200);

    // The API shows the routers in Traefik's shape, with their counters.
    let routers = api(&drover, "/api/tcp/routers").await;
    let pass = routers
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pass@file")
        .expect("pass router listed");
    assert_eq!(pass["status"], "enabled");
    assert_eq!(pass["mode"], "passthrough");
    let ok = wait_until(Duration::from_secs(5), || {
        drover
            .drover
            .metrics_text()
            .contains("drover_tcp_router_connections_total{router=\"pass@file\"} 2")
    })
    .await;
    assert!(ok.is_some(), "{}", drover.drover.metrics_text());
    let service = api(&drover, "/api/tcp/services/echo@file").await;
    assert_eq!(service["serverStatus"][echo_addr.to_string()], "UP", "{service}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_split_over_three_segments_is_routed_and_a_silent_connection_is_closed_at_the_deadline() {
    let (a, mut a_got) = recorder(1).await;
    let (b, mut b_got) = recorder(1).await;
    let routes = [
        tcp_router("a", "HostSNI(`a.test`)", "a", "[tcp.routers.a.tls]\npassthrough = true\n"),
        tcp_router("b", "HostSNI(`b.test`)", "b", "[tcp.routers.b.tls]\npassthrough = true\n"),
        tcp_service("a", &[a]),
        tcp_service("b", &[b]),
    ]
    .concat();
    let drover = TestDrover::start_with(
        &routes,
        "[entryPoints.web.transport.respondingTimeouts]\nheaderReadTimeout = \"700ms\"\n",
    )
    .await;

    let hello = client_hello("b.test");
    let mut stream = TcpStream::connect(drover.web()).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let third = hello.len() / 3;
    for part in [&hello[..third], &hello[third..2 * third], &hello[2 * third..]] {
        stream.write_all(part).await.expect("write part");
        tokio::time::sleep(Duration::from_millis(100)).await; // pacing: three separate segments
    }
    // The server for b.test got the hello's first byte, untouched; a got nothing.
    let first = tokio::time::timeout(Duration::from_secs(5), b_got.recv())
        .await
        .expect("b reached")
        .expect("b's bytes");
    assert_eq!(first, [0x16]);
    assert!(a_got.try_recv().is_err());
    let mut rest = vec![0u8; hello.len() - 1];
    stream
        .read_exact(&mut rest)
        .await
        .expect("the rest of the hello comes back from b's echo");
    assert_eq!(rest, hello[1..]);

    // A connection that sends nothing is closed at the peek deadline.
    let mut silent = TcpStream::connect(drover.web()).await.expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed before 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_keeps_the_answer_and_a_refused_connect_goes_to_the_next_server() {
    let (echo_addr, _echo) = echo().await;
    let dead = support::free_port();
    let routes = [
        tcp_router("all", "HostSNI(`*`)", "s", ""),
        format!("[[tcp.services.s.loadBalancer.servers]]\naddress = \"{dead}\"\nweight = 3\n"),
        tcp_service("s", &[echo_addr]),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(drover.web()).await.expect("connect");
        let (mut r, mut w) = stream.split();
        let writing = async {
            w.write_all(&payload).await.expect("write");
            w.shutdown().await.expect("half-close");
        };
        let mut got = Vec::new();
        let reading = r.read_to_end(&mut got);
        let ((), read) = tokio::join!(writing, reading);
        read.expect("read to the end");
        assert_eq!(got.len(), payload.len(), "the whole echo after the client's half-close");
        assert!(got == payload);
    }
    // The dead server was tried (and failed) without costing a client its connection.
    let service = api(&drover, "/api/tcp/services/s@file").await;
    let dead_health = service["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == dead.to_string())
        .expect("dead server listed");
    assert!(
        dead_health["health"]["localFailuresTotal"].as_u64().unwrap_or(0) >= 1 || service["serverStatus"][dead.to_string()] == "DOWN",
        "{service}"
    );
}

/// A server that reads a PROXY header, then answers with the client address it carried.
async fn proxy_protocol_checker() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 512];
                let mut n = 0;
                loop {
                    let m = stream.read(&mut buf[n..]).await.unwrap_or(0);
                    if m == 0 {
                        return;
                    }
                    n += m;
                    if let Ok(h) = ppp::HeaderResult::parse(&buf[..n]).into_owned_client() {
                        let _ = stream.write_all(h.as_bytes()).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

trait ClientOf {
    fn into_owned_client(self) -> Result<String, ()>;
}

impl ClientOf for ppp::HeaderResult<'_> {
    fn into_owned_client(self) -> Result<String, ()> {
        match self {
            ppp::HeaderResult::V1(Ok(h)) => match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Ok(format!("v1 {}:{}", a.source_address, a.source_port)),
                ppp::v1::Addresses::Tcp6(a) => Ok(format!("v1 [{}]:{}", a.source_address, a.source_port)),
                ppp::v1::Addresses::Unknown => Ok("v1 unknown".into()),
            },
            ppp::HeaderResult::V2(Ok(h)) => match h.addresses {
                ppp::v2::Addresses::IPv4(a) => Ok(format!("v2 {}:{}", a.source_address, a.source_port)),
                ppp::v2::Addresses::IPv6(a) => Ok(format!("v2 [{}]:{}", a.source_address, a.source_port)),
                _ => Ok("v2 other".into()),
            },
            _ => Err(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_goes_out_in_both_versions_and_comes_in_only_from_trusted_peers() {
    let checker = proxy_protocol_checker().await;
    let (web, _whoami) = support::whoami::spawn("web").await;
    let (echoer, _echo) = echo().await;
    let routes = [
        tcp_router("relay", "HostSNI(`*`)", "relay", "entryPoints = [\"tcpdistrusting\"]\n"),
        tcp_service("relay", &[echoer]),
        tcp_router("v1", "HostSNI(`*`)", "v1", "entryPoints = [\"pp1\"]\n"),
        tcp_router("v2", "HostSNI(`*`)", "v2", "entryPoints = [\"pp2\"]\n"),
        format!("[[tcp.services.v1.loadBalancer.servers]]\naddress = \"{checker}\"\n[tcp.services.v1.loadBalancer]\nserversTransport = \"one\"\n"),
        format!("[[tcp.services.v2.loadBalancer.servers]]\naddress = \"{checker}\"\n[tcp.services.v2.loadBalancer]\nserversTransport = \"two\"\n"),
        "[tcp.serversTransports.one.proxyProtocol]\nversion = 1\n[tcp.serversTransports.two.proxyProtocol]\nversion = 2\n".to_string(),
        format!("[http.routers.web]\nrule = \"PathPrefix(`/`)\"\nentryPoints = [\"trusting\", \"distrusting\"]\nservice = \"web\"\n[[http.services.web.loadBalancer.servers]]\nurl = \"http://{web}\"\n"),
    ]
    .concat();
    let extra = "[entryPoints.pp1]\naddress = \"127.0.0.1:0\"\n[entryPoints.pp2]\naddress = \"127.0.0.1:0\"\n\
                 [entryPoints.trusting]\naddress = \"127.0.0.1:0\"\n[entryPoints.trusting.proxyProtocol]\ntrustedIPs = [\"127.0.0.1\"]\n\
                 [entryPoints.distrusting]\naddress = \"127.0.0.1:0\"\n[entryPoints.distrusting.proxyProtocol]\ntrustedIPs = [\"127.0.0.2\"]\n\
                 [entryPoints.tcpdistrusting]\naddress = \"127.0.0.1:0\"\n[entryPoints.tcpdistrusting.proxyProtocol]\ntrustedIPs = [\"127.0.0.2\"]\n";
    let drover = TestDrover::start_with(&routes, extra).await;

    for (ep, version) in [("pp1", "v1"), ("pp2", "v2")] {
        let mut stream = TcpStream::connect(drover.drover.entry_point(ep).unwrap()).await.expect("connect");
        let local = stream.local_addr().expect("local");
        stream.write_all(b"hello").await.expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert_eq!(answer, format!("{version} {local}"), "the header carries the real client address");
    }

    // In: from a trusted peer, the header's address is the client's (X-Forwarded-For, access
    // log, ClientIP); from another peer a header is refused, not taken as data.
    let trusting = drover.drover.entry_point("trusting").unwrap();
    let mut stream = TcpStream::connect(trusting).await.expect("connect");
    let local = stream.local_addr().unwrap();
    stream
        .write_all(
            format!(
                "PROXY TCP4 192.0.2.9 {} 40000 {}\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                local.ip(),
                trusting.port()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-forwarded-for: 192.0.2.9"), "{answer}");

    let distrusting = drover.drover.entry_point("distrusting").unwrap();
    let mut stream = TcpStream::connect(distrusting).await.expect("connect");
    stream
        .write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(
        answer.is_empty(),
        "a PROXY header from an untrusted peer must be refused: {}",
        String::from_utf8_lossy(&answer)
    );
    // Without a header, that entrypoint serves its HTTP as usual.
    let answer = support::send(&support::client(), "GET", &format!("http://{distrusting}/"), &[])
        .await
        .expect("GET");
    assert_eq!(answer.status, 200);

    // The same on an entrypoint whose only router is a plain TCP one (dispatched at once): an
    // untrusted peer's header is refused, its ordinary bytes are relayed.
    let relay = drover.drover.entry_point("tcpdistrusting").unwrap();
    let mut stream = TcpStream::connect(relay).await.expect("connect");
    stream
        .write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 80\r\nhello\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "relayed: {}", String::from_utf8_lossy(&answer));
    let mut stream = TcpStream::connect(relay).await.expect("connect");
    stream.write_all(b"hello\n").await.expect("write");
    let mut echoed = [0u8; 6];
    stream.read_exact(&mut echoed).await.expect("echoed");
    assert_eq!(&echoed, b"hello\n");
}

/// redis-server on a free port; killed on drop.
struct Redis {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("redis dir");
        let addr = support::free_port();
        let child = Command::new(program("redis-server"))
            .args([
                "--port",
                &addr.port().to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let this = Self { addr, child, _dir: dir };
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(addr).is_ok())
            .await
            .expect("redis listening");
        this
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_benchmark(addr: SocketAddr, requests: u32) -> std::process::Output {
    Command::new(program("redis-benchmark"))
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-n",
            &requests.to_string(),
            "-c",
            "20",
            "-t",
            "set,get",
            "-q",
        ])
        .output()
        .expect("redis-benchmark runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_runs_through_and_a_killed_redis_is_ejected() {
    let first = Redis::start().await;
    let mut second = Redis::start().await;
    let routes = [
        tcp_router("redis", "HostSNI(`*`)", "redis", ""),
        tcp_service("redis", &[first.addr, second.addr]),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;

    let out = redis_benchmark(drover.web(), 20_000);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("SET:") && text.contains("GET:"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kill the second: its connects fail, it is ejected, and every new connection reaches the first.
    let _ = second.child.kill();
    let _ = second.child.wait();
    let out = redis_benchmark(drover.web(), 20_000);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("GET:"),
        "after the kill: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = api(&drover, "/api/tcp/services/redis@file").await;
    assert_eq!(service["serverStatus"][second.addr.to_string()], "DOWN", "{service}");
    assert_eq!(service["serverStatus"][first.addr.to_string()], "UP", "{service}");
    let router = api(&drover, "/api/tcp/routers/redis@file").await;
    assert_eq!(
        router["connections"]["connectFailures"], 0,
        "no client lost its connection to the dead server: {router}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_udp_reaches_bind_and_each_client_gets_its_own_answers() {
    let bind = support::bind::Bind::start(&[support::bind::ZoneSpec {
        origin: "l4.test.",
        ttl: 60,
        negative_ttl: 60,
        records: "a IN A 192.0.2.1\nb IN A 192.0.2.2\n",
    }])
    .await;
    let routes = format!(
        "[udp.routers.dns]\nentryPoints = [\"dns\"]\nservice = \"bind\"\n[[udp.services.bind.loadBalancer.servers]]\naddress = \"{}\"\n",
        bind.addr
    );
    let drover = TestDrover::start_with(&routes, "[entryPoints.dns]\naddress = \"127.0.0.1:0/udp\"\n").await;
    let dns = drover.drover.udp_entry_point("dns").expect("UDP entrypoint");
    let dig = move |name: &'static str| {
        let out = Command::new(program("dig"))
            .args([
                "+short",
                "+tries=1",
                "+time=3",
                "-p",
                &dns.port().to_string(),
                "@127.0.0.1",
                name,
                "A",
            ])
            .output()
            .expect("dig runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(move || (0..5).map(|_| dig("a.l4.test")).collect::<Vec<_>>()),
        tokio::task::spawn_blocking(move || (0..5).map(|_| dig("b.l4.test")).collect::<Vec<_>>()),
    );
    assert_eq!(a.unwrap(), vec!["192.0.2.1"; 5]);
    assert_eq!(b.unwrap(), vec!["192.0.2.2"; 5]);
    let routers = api(&drover, "/api/udp/routers").await;
    assert_eq!(routers[0]["name"], "dns@file");
    assert_eq!(routers[0]["status"], "enabled", "{routers}");
    // Each dig is a new process with its own source port: ten sessions, bytes both ways (an
    // answer's bytes are counted just after it is sent: wait for the last one).
    let count = |metrics: &str, name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name));
        line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let counted = wait_until(Duration::from_secs(5), || {
        let metrics = drover.drover.metrics_text();
        count(&metrics, "drover_udp_router_sessions_total{router=\"dns@file\"}") == 10
            && count(&metrics, "drover_udp_router_bytes_in_total{router=\"dns@file\"}") >= 10 * 20
            && count(&metrics, "drover_udp_router_bytes_out_total{router=\"dns@file\"}") >= 10 * 40
            && metrics.contains("drover_udp_router_open_sessions{router=\"dns@file\"}")
    })
    .await;
    assert!(counted.is_some(), "{}", drover.drover.metrics_text());
    let router = api(&drover, "/api/udp/routers/dns@file").await;
    assert_eq!(router["sessions"]["total"], 10, "{router}");
    assert_eq!(router["sessions"]["sessionFailures"], 0, "{router}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tcp_configuration_is_reported_and_the_rest_serves() {
    let (echo_addr, _echo) = echo().await;
    let routes = [
        tcp_router("good", "HostSNI(`*`)", "s", ""),
        tcp_router("nosni", "HostSNI(`x.test`)", "s", ""),
        tcp_router("typo", "HostSni(`x.test`)", "s", "[tcp.routers.typo.tls]\n"),
        tcp_router("acme", "ALPN(`acme-tls/1`)", "s", "[tcp.routers.acme.tls]\n"),
        tcp_service("s", &[echo_addr]),
        "[[tcp.services.bad.loadBalancer.servers]]\naddress = \"no-port\"\n".to_string(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let router = |name: &'static str| {
        let drover = &drover;
        async move { api(drover, &format!("/api/tcp/routers/{name}@file")).await }
    };
    let nosni = router("nosni").await;
    assert_eq!(nosni["status"], "disabled");
    assert!(nosni["error"][0].as_str().unwrap().contains("may only use HostSNI(`*`)"), "{nosni}");
    let typo = router("typo").await;
    assert!(typo["error"][0].as_str().unwrap().contains("did you mean `HostSNI`"), "{typo}");
    let acme = router("acme").await;
    assert!(acme["error"][0].as_str().unwrap().contains("reserved"), "{acme}");
    let bad = api(&drover, "/api/tcp/services/bad@file").await;
    assert!(
        bad["error"][0]
            .as_str()
            .unwrap()
            .contains("servers[0].address: `no-port` has no port"),
        "{bad}"
    );
    // The good router serves.
    let mut stream = TcpStream::connect(drover.web()).await.expect("connect");
    stream.write_all(b"still here").await.expect("write");
    let mut buf = [0u8; 10];
    stream.read_exact(&mut buf).await.expect("echo");
    assert_eq!(&buf, b"still here");
}

/// A PostgreSQL cluster of its own in a temporary directory (run as the `postgres` user when
/// the tests run as root), listening on 127.0.0.1, with TLS on.
struct Postgres {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    pg_ctl: std::path::PathBuf,
}

fn pg_bin(name: &str) -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("PostgreSQL's `{name}` is not installed; run tests/setup.sh (Debian: postgresql)"))
}

fn as_postgres(program: &Path) -> Command {
    // SAFETY of intent: postgres refuses to run as root, so root runs it as `postgres`.
    if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

impl Postgres {
    async fn start(leaf: &support::pki::Leaf) -> Self {
        let dir = tempfile::tempdir().expect("pg dir");
        let data = dir.path().join("data");
        if nix_is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
        }
        let init = as_postgres(&pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let (cert, key) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&cert, &leaf.cert_pem).expect("cert");
        std::fs::write(&key, &leaf.key_pem).expect("key");
        if nix_is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cert)
                .arg(&key)
                .status()
                .expect("chown");
        }
        Command::new("chmod").arg("600").arg(&key).status().expect("chmod");
        let addr = support::free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c ssl=on -c unix_socket_directories={}",
            addr.port(),
            dir.path().display()
        );
        let pg_ctl = pg_bin("pg_ctl");
        let start = as_postgres(&pg_ctl)
            .args(["-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            start.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Self { addr, dir, pg_ctl }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.pg_ctl)
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_a_plain_router_and_postgres_tls_by_sni_through_starttls() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let ca = Ca::new("pg CA");
    let server_leaf = ca.leaf(dir.path(), "pg", &["pg.internal"]);
    let drover_leaf = ca.leaf(dir.path(), "db", &["db.test"]);
    let pg = Postgres::start(&server_leaf).await;
    let routes = [
        tcp_router("plain", "HostSNI(`*`)", "pg", "entryPoints = [\"web\"]\n"),
        tcp_router(
            "bysni",
            "HostSNI(`db.test`)",
            "pg",
            "entryPoints = [\"pgtls\"]\n[tcp.routers.bysni.tls]\n",
        ),
        tcp_service("pg", &[pg.addr]),
        drover_leaf.toml(),
    ]
    .concat();
    let drover = TestDrover::start_with(&routes, "[entryPoints.pgtls]\naddress = \"127.0.0.1:0\"\n").await;
    let web = drover.web();
    let pgbench = |args: &[&str]| {
        Command::new(pg_bin("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &web.port().to_string(), "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .expect("pgbench runs")
    };
    let init = pgbench(&["-i", "-s", "1", "-q"]);
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    let run = pgbench(&["-c", "8", "-j", "2", "-t", "200", "-S"]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && text.contains("number of failed transactions: 0"),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // STARTTLS: psql asks for TLS (SSLRequest), drover answers and terminates with db.test's
    // certificate (verified against the CA), then routes by SNI to the server.
    let ca_file = ca.write(dir.path(), "ca.pem");
    let pgtls = drover.drover.entry_point("pgtls").unwrap();
    let conn = format!(
        "host=db.test hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={} sslsni=1",
        pgtls.port(),
        ca_file.display()
    );
    let out = Command::new(pg_bin("psql"))
        .args([&conn, "-tAc", "select 40 + 2"])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql over TLS: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

/// A line server named `name`: answers every line with `PONG <name>` while `healthy`, else with
/// `BUSY <name>`.
async fn line_server(name: &'static str, healthy: std::sync::Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(r));
                while let Ok(Some(_)) = lines.next_line().await {
                    let word = if healthy.load(std::sync::atomic::Ordering::SeqCst) {
                        "PONG"
                    } else {
                        "BUSY"
                    };
                    if w.write_all(format!("{word} {name}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One line through drover at `addr`: the answer.
async fn exchange(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"hi\n").await.expect("send");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer[..n]).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_tcp_check_takes_a_server_out_by_its_answer_and_back_when_it_recovers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let b_healthy = Arc::new(AtomicBool::new(false));
    let a = line_server("a", Arc::new(AtomicBool::new(true))).await;
    let b = line_server("b", b_healthy.clone()).await;
    let routes = [
        tcp_router("lines", "HostSNI(`*`)", "lines", ""),
        tcp_service("lines", &[a, b]),
        "[tcp.services.lines.loadBalancer.healthCheck]\nsend = \"PING\\n\"\nexpect = \"PONG\"\ninterval = \"50ms\"\ntimeout = \"1s\"\n"
            .into(),
    ]
    .concat();
    let drover = TestDrover::start(&routes).await;
    let service = api(&drover, "/api/tcp/services/lines@file").await;
    assert!(service["error"].is_null(), "the check is accepted: {service}");

    // b answers BUSY to the check: out, so every connection reaches a.
    let mut streak = 0;
    let started = Instant::now();
    while streak < 20 {
        streak = if exchange(drover.web()).await == "PONG a" { streak + 1 } else { 0 };
        assert!(started.elapsed() < Duration::from_secs(10), "b was never taken out");
    }
    // b recovers: the next check brings it back.
    b_healthy.store(true, Ordering::SeqCst);
    let started = Instant::now();
    loop {
        if exchange(drover.web()).await == "PONG b" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "b never came back");
    }
}
