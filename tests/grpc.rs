//! gRPC through drover (#21): a real gRPC client and server (Python `grpcio`, installed by
//! `tests/setup.sh`), drover between them speaking `h2c://` to the server. Unary and
//! server-streaming calls succeed, and what travels in HTTP/2 trailers arrives: `grpc-status`
//! (OK, and NOT_FOUND with its message) and the server's trailing metadata.
//!
//! The client reaches drover over cleartext HTTP/2 with prior knowledge, and over TLS (ALPN h2)
//! to an entrypoint that terminates it with a router for the certificate's name.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use support::TestDrover;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc");

/// The Python gRPC server, killed when dropped.
struct Server {
    _child: Child,
    port: u16,
}

impl Server {
    async fn start() -> Self {
        let mut child = Command::new("python3")
            .arg(format!("{SCRIPTS}/echo_server.py"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 does not start ({e}); run {}", support::SETUP));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        let read = stdout.read_line(&mut line);
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(n)) if n > 0 => {}
            other => panic!(
                "the gRPC server printed no port ({other:?}); is grpcio installed? run {}",
                support::SETUP
            ),
        }
        let port = line.trim().parse().unwrap_or_else(|_| panic!("not a port: {line:?}"));
        Self { _child: child, port }
    }
}

/// How the client reaches drover.
struct Client<'a> {
    target: String,
    /// TLS from the client: the CA to trust and the name to expect.
    tls: Option<(&'a Path, &'a str)>,
}

impl Client<'_> {
    /// Runs every call (see `echo_client.py`) and returns what the client got.
    async fn run(&self) -> Value {
        let mut command = Command::new("python3");
        command.arg(format!("{SCRIPTS}/echo_client.py")).arg(&self.target);
        if let Some((ca, name)) = self.tls {
            command.arg("--ca").arg(ca).arg("--server-name").arg(name);
        }
        command.kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("the gRPC client finished within 60 s")
            .expect("the gRPC client runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the gRPC client failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// Asserts what a user of the client would check.
fn assert_calls_went_through(got: &Value) {
    assert_eq!(got["say"]["reply"], "hello drover", "{got}");
    assert_eq!(got["say"]["code"], "OK", "grpc-status 0 arrived in the trailers: {got}");
    assert_eq!(got["say"]["trailers"]["x-echo-trailer"], "said", "{got}");
    assert_eq!(got["count"]["items"], serde_json::json!(["0", "1", "2"]), "{got}");
    assert_eq!(got["count"]["code"], "OK", "{got}");
    assert_eq!(got["count"]["trailers"]["x-echo-trailer"], "counted", "{got}");
    assert_eq!(got["fail"]["code"], "NOT_FOUND", "{got}");
    assert_eq!(got["fail"]["details"], "no such thing", "{got}");
}

#[tokio::test]
async fn grpc_calls_pass_through_drover_to_an_h2c_server() {
    let server = Server::start().await;
    let routes = format!(
        "[http.routers.grpc]\nrule = \"PathPrefix(`/echo.Echo/`)\"\nservice = \"grpc\"\n\
         [[http.services.grpc.loadBalancer.servers]]\nurl = \"h2c://127.0.0.1:{}\"\n",
        server.port
    );
    let d = TestDrover::start(&routes).await;
    let client = Client {
        target: d.web().to_string(),
        tls: None,
    };
    assert_calls_went_through(&client.run().await);
    // Again on the connections drover keeps: the multiplexed one to the server is reused.
    assert_calls_went_through(&client.run().await);
}

#[tokio::test]
async fn grpc_calls_pass_through_drover_with_tls_from_the_client() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = support::pki::Ca::new("gRPC CA");
    let leaf = ca.leaf(dir.path(), "grpc", &["grpc.test"]);
    let ca_file = ca.write(dir.path(), "ca.pem");
    let routes = format!(
        "[http.routers.grpc]\nrule = \"Host(`grpc.test`) && PathPrefix(`/echo.Echo/`)\"\nservice = \"grpc\"\n\
         [http.routers.grpc.tls]\n\
         [[http.services.grpc.loadBalancer.servers]]\nurl = \"h2c://127.0.0.1:{}\"\n{}",
        server.port,
        leaf.toml()
    );
    let d = TestDrover::start(&routes).await;
    let client = Client {
        target: format!("localhost:{}", d.web().port()),
        tls: Some((&ca_file, "grpc.test")),
    };
    assert_calls_went_through(&client.run().await);
}
