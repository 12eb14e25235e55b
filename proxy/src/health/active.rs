//! Active health checks: a task per (service, server) that requests the check path, first
//! immediately (not one interval later, unlike Traefik) and then every interval, and feeds the
//! verdicts (with rise/fall thresholds) into the server's [`ServerHealth`].
//!
//! Checks use their own short-lived connections, never the request pool, so a check cannot take
//! a pooled connection from traffic or be fooled by one.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use drover_providers::policy::{ActivePolicy, PassivePolicy};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ServerHealth;
use crate::snapshot::Snapshot;

/// What one check task needs.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    authority: String,
    active: ActivePolicy,
    passive: PassivePolicy,
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
                    active: active.clone(),
                    passive: service.health.passive.clone(),
                };
                wanted.insert(
                    (service.name.to_string(), target.authority.clone()),
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
    loop {
        let passed = check(&target).await;
        if let Err(why) = &passed {
            tracing::debug!(server = %target.authority, path = %target.active.path, "active check failed: {why}");
        }
        health.active_result(
            passed.is_ok(),
            target.active.passes,
            target.active.fails,
            &target.passive,
            Instant::now(),
        );
        let interval = if health.is_out() {
            target.active.unhealthy_interval
        } else {
            target.active.interval
        };
        tokio::time::sleep(interval).await;
    }
}

/// One check: connect, send, read the status. `Err` says why it failed.
async fn check(target: &Target) -> Result<(), String> {
    let policy = &target.active;
    let authority = match policy.port {
        Some(port) => match target.authority.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{port}"),
            None => format!("{}:{port}", target.authority),
        },
        None => target.authority.clone(),
    };
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
