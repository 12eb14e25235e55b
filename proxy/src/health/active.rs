//! Active health checks: a task per (service, server) that requests the check path (HTTP
//! services) or connects and optionally sends and expects bytes (TCP services), first
//! immediately (not one interval later, unlike Traefik) and then every interval, and feeds the
//! verdicts (with rise/fall thresholds for HTTP; one verdict for TCP, as Traefik's) into the
//! server's [`ServerHealth`].
//!
//! Checks use their own short-lived connections, never the request pool, so a check cannot take
//! a pooled connection from traffic or be fooled by one.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use drover_providers::policy::{ActivePolicy, PassivePolicy};
use drover_providers::tcp::TcpCheckPolicy;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ServerHealth;
use crate::snapshot::Snapshot;

/// What one check task needs.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    authority: String,
    probe: Probe,
    passive: PassivePolicy,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq)]
enum Probe {
    /// An HTTP request.
    Http(ActivePolicy),
    /// A connect, then `send`/`expect`.
    Tcp(TcpCheckPolicy),
}

impl Probe {
    /// (interval while up, interval while down, passes to come back, failures to go out).
    fn cadence(&self) -> (Duration, Duration, u32, u32) {
        match self {
            Self::Http(p) => (p.interval, p.unhealthy_interval, p.passes, p.fails),
            Self::Tcp(p) => (p.interval, p.unhealthy_interval, 1, 1),
        }
    }
}

/// The running check tasks, reconciled with each new snapshot.
#[derive(Debug, Default)]
pub struct ActiveChecks {
    running: HashMap<(String, String), (Target, JoinHandle<()>)>,
}

impl ActiveChecks {
    /// Starts checks for servers that gained one, restarts those whose settings changed, stops
    /// those that are gone. Must run inside a tokio runtime.
    pub fn reconcile(&mut self, snapshot: &Snapshot) {
        let mut wanted: HashMap<(String, String), (Target, Arc<ServerHealth>)> = HashMap::new();
        for service in snapshot.services.values() {
            let Some(active) = &service.health.active else { continue };
            for server in service.servers.iter() {
                let target = Target {
                    authority: server.upstream.authority().to_string(),
                    probe: Probe::Http(active.clone()),
                    passive: service.health.passive.clone(),
                };
                wanted.insert(
                    (service.name.to_string(), target.authority.clone()),
                    (target, server.health.clone()),
                );
            }
        }
        for service in &snapshot.l4.services {
            let Some(check) = &service.check else { continue };
            for server in service.servers.iter() {
                let target = Target {
                    authority: server.address.to_string(),
                    probe: Probe::Tcp(check.clone()),
                    passive: service.policy.clone(),
                };
                // `tcp/`: an HTTP and a TCP service may share a name.
                wanted.insert(
                    (format!("tcp/{}", service.name), target.authority.clone()),
                    (target, server.health.clone()),
                );
            }
        }
        self.running.retain(|key, (target, task)| {
            let keep = wanted.get(key).is_some_and(|(t, _)| t == target);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, (target, health)) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(run(target.clone(), health));
            self.running.insert(key, (target, task));
        }
    }
}

impl Drop for ActiveChecks {
    fn drop(&mut self) {
        for (_, task) in self.running.values() {
            task.abort();
        }
    }
}

async fn run(target: Target, health: Arc<ServerHealth>) {
    let (interval, unhealthy_interval, passes, fails) = target.probe.cadence();
    loop {
        let passed = match &target.probe {
            Probe::Http(policy) => check_http(&target.authority, policy).await,
            Probe::Tcp(policy) => check_tcp(&target.authority, policy).await,
        };
        if let Err(why) = &passed {
            tracing::debug!(server = %target.authority, "active check failed: {why}");
        }
        health.active_result(passed.is_ok(), passes, fails, &target.passive, Instant::now());
        tokio::time::sleep(if health.is_out() { unhealthy_interval } else { interval }).await;
    }
}

/// `authority` with its port replaced by `port`, when one is given.
fn with_port(authority: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => match authority.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{port}"),
            None => format!("{authority}:{port}"),
        },
        None => authority.to_string(),
    }
}

/// One TCP check: connect, send `send`, read until the answer contains `expect` (or the server
/// closes, or the deadline). `Err` says why it failed.
async fn check_tcp(authority: &str, policy: &TcpCheckPolicy) -> Result<(), String> {
    let authority = with_port(authority, policy.port);
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if let Some(send) = &policy.send {
            stream.write_all(send.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
        }
        let Some(expect) = &policy.expect else { return Ok(()) };
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while answer.len() < 64 * 1024 {
            let n = stream.read(&mut buffer).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if memchr::memmem::find(&answer, expect.as_bytes()).is_some() {
                return Ok(());
            }
        }
        Err(format!(
            "the answer does not contain {expect:?}: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        ))
    };
    tokio::time::timeout(policy.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", policy.timeout))?
}

/// One HTTP check: connect, send, read the status. `Err` says why it failed.
async fn check_http(authority: &str, policy: &ActivePolicy) -> Result<(), String> {
    let authority = with_port(authority, policy.port);
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(policy.method.as_str())
            .uri(policy.path.as_str())
            .header(http::header::HOST, policy.hostname.as_deref().unwrap_or(&authority))
            .header(http::header::USER_AGENT, "drover-health-check")
            .header(http::header::CONNECTION, "close");
        for (name, value) in &policy.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Empty::new()).map_err(|e| format!("request: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        Ok::<StatusCode, String>(response.status())
    };
    let status = tokio::time::timeout(policy.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", policy.timeout))??;
    let ok = match policy.status {
        Some(expected) => status.as_u16() == expected,
        None => (200..400).contains(&status.as_u16()),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}
