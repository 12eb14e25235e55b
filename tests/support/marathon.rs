//! A Marathon contract-test server: a leader and a standby sharing one cluster state, speaking
//! the wire behaviour documented in `shared/specs/providers.md` §3 and §5.
//!
//! It is a small hand-written HTTP/1.1 server on 127.0.0.1, not hyper's: Marathon's event stream
//! is `Connection: close` with a close-delimited body (no chunking), and hyper's server always
//! chunks an unknown-length HTTP/1.1 body. What it reproduces:
//!
//! * `GET /v2/apps` with the `embed` parameters honoured (no `apps.tasks`, no tasks), and
//!   `GET /v2/apps/{id}` (`app.*` or `apps.*` embeds) with Marathon's 404 for unknown apps;
//! * `GET /v2/events`: 405 unless an `Accept` value is exactly `text/event-stream`; then 200,
//!   `Content-Type: text/event-stream;charset=UTF-8`, `Connection: close`, CRLF framing,
//!   `event_stream_attached` first, a bare-CRLF heartbeat every [`Marathon::set_heartbeat`], and
//!   the `event_type` filter;
//! * a standby that answers API calls itself (as if proxied, with `X-Marathon-Leader`) and
//!   answers `/v2/events` with a 302 to the leader, query kept; 502 when there is no leader;
//! * 401 with `WWW-Authenticate: Basic realm="Mesosphere"` for bad credentials; `Authorization:
//!   token=…` accepted when a DC/OS token is set;
//! * optionally TLS ([`Marathon::start_tls`]) with the test certificate in
//!   `providers/testdata/tls` (CA `ca.pem`, leaf for 127.0.0.1);
//! * controls: change apps and tasks (each helper emits the event Marathon would), change them
//!   silently, drop every stream, kill the leader and promote the standby.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A timestamp for events and tasks (Marathon's format).
pub const TIMESTAMP: &str = "2025-07-20T10:00:00.000Z";

/// One request the cluster saw.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `leader` or `standby`.
    pub instance: &'static str,
    /// Request target (path and query).
    pub target: String,
    /// Status answered.
    pub status: u16,
}

struct Subscriber {
    filter: Vec<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

struct Inner {
    apps: BTreeMap<String, Value>,
    subscribers: Vec<Subscriber>,
    credentials: Option<(String, String)>,
    token: Option<String>,
    heartbeat: Duration,
    heartbeats: u64,
    log: Vec<Logged>,
}

struct Shared {
    inner: Mutex<Inner>,
    leader_url: Mutex<Option<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn leader_url(&self) -> Option<String> {
        self.leader_url.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// One Marathon instance (its own listener).
struct Instance {
    name: &'static str,
    addr: SocketAddr,
    https: bool,
    leader: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Instance {
    async fn start(name: &'static str, leader: bool, shared: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let https = tls.is_some();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("marathon: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("marathon: local address");
        let is_leader = Arc::new(AtomicBool::new(leader));
        let flag = is_leader.clone();
        let task = super::serve::accept_loop(listener, tls, move |stream| {
            serve_connection(stream, name, flag.clone(), shared.clone())
        });
        Self {
            name,
            addr,
            https,
            leader: is_leader,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.addr)
    }

    fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A leader and a standby over one cluster state.
pub struct Marathon {
    shared: Arc<Shared>,
    leader: Instance,
    standby: Instance,
}

impl Marathon {
    /// Starts a leader and a standby on free loopback ports, with no apps and no auth.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`Marathon::start`] over TLS: both instances serve `https://` with the test leaf
    /// certificate (signed by [`TEST_CA`]).
    pub async fn start_tls() -> Self {
        Self::start_with(Some(tls_acceptor())).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                apps: BTreeMap::new(),
                subscribers: Vec::new(),
                credentials: None,
                token: None,
                heartbeat: Duration::from_secs(10),
                heartbeats: 0,
                log: Vec::new(),
            }),
            leader_url: Mutex::new(None),
        });
        let leader = Instance::start("leader", true, shared.clone(), tls.clone()).await;
        let standby = Instance::start("standby", false, shared.clone(), tls).await;
        *shared.leader_url.lock().unwrap_or_else(PoisonError::into_inner) = Some(leader.url());
        Self { shared, leader, standby }
    }

    /// `http://127.0.0.1:<port>` (or `https://`) of the leader.
    pub fn leader_url(&self) -> String {
        self.leader.url()
    }

    /// `http://127.0.0.1:<port>` of the standby.
    pub fn standby_url(&self) -> String {
        self.standby.url()
    }

    /// Requires basic auth with these credentials from now on.
    pub fn require_basic(&self, user: &str, password: &str) {
        self.shared.lock().credentials = Some((user.into(), password.into()));
    }

    /// Requires `Authorization: token=<token>` from now on.
    pub fn require_token(&self, token: &str) {
        self.shared.lock().token = Some(token.into());
    }

    /// Heartbeats written to event streams so far.
    pub fn heartbeats(&self) -> u64 {
        self.shared.lock().heartbeats
    }

    /// Sets the heartbeat period for streams opened from now on.
    pub fn set_heartbeat(&self, period: Duration) {
        self.shared.lock().heartbeat = period;
    }

    /// Every request seen so far.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.lock().log.clone()
    }

    /// How many requests had a target starting with `prefix` (any instance).
    pub fn count(&self, prefix: &str) -> usize {
        self.shared.lock().log.iter().filter(|l| l.target.starts_with(prefix)).count()
    }

    /// Open event streams.
    pub fn streams(&self) -> usize {
        let mut inner = self.shared.lock();
        inner.subscribers.retain(|s| !s.tx.is_closed());
        inner.subscribers.len()
    }

    /// Closes every open event stream (as a leader does when it loses leadership).
    pub fn drop_streams(&self) {
        self.shared.lock().subscribers.clear();
    }

    /// Kills the leader (listener and connections gone). Until [`Marathon::promote_standby`],
    /// the standby answers 502 "Could not determine the current leader".
    pub fn kill_leader(&mut self) {
        self.leader.kill();
        self.shared.lock().subscribers.clear();
        *self.shared.leader_url.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Makes the standby the leader.
    pub fn promote_standby(&self) {
        self.standby.leader.store(true, Ordering::SeqCst);
        *self.shared.leader_url.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.standby.url());
    }

    /// Kills the leader and makes the standby the leader.
    pub fn fail_over(&mut self) {
        self.kill_leader();
        self.promote_standby();
    }

    /// Changes the apps without any event (as if the change happened while nobody listened).
    pub fn mutate_silently(&self, change: impl FnOnce(&mut BTreeMap<String, Value>)) {
        change(&mut self.shared.lock().apps);
    }

    /// Sends an event to every matching stream.
    pub fn emit(&self, event_type: &str, mut data: Value) {
        if let Some(map) = data.as_object_mut() {
            map.insert("eventType".into(), event_type.into());
            map.entry("timestamp").or_insert(TIMESTAMP.into());
        }
        let frame = Bytes::from(format!("event: {event_type}\r\ndata: {data}\r\n\r\n"));
        let mut inner = self.shared.lock();
        inner.subscribers.retain(|s| !s.tx.is_closed());
        for s in &inner.subscribers {
            if s.filter.is_empty() || s.filter.iter().any(|f| f == event_type) {
                let _ = s.tx.send(frame.clone());
            }
        }
    }

    /// Creates or replaces an app (with its `tasks`), then emits `api_post_event`.
    pub fn put_app(&self, app: Value) {
        let id = app["id"].as_str().expect("fixture app has an id").to_string();
        let mut definition = app.clone();
        if let Some(map) = definition.as_object_mut() {
            map.remove("tasks");
        }
        self.shared.lock().apps.insert(id, app);
        self.emit(
            "api_post_event",
            json!({"clientIp": "127.0.0.1", "uri": "/v2/apps", "appDefinition": definition}),
        );
    }

    /// Removes an app, then emits `app_terminated_event`.
    pub fn remove_app(&self, id: &str) {
        self.shared.lock().apps.remove(id);
        self.emit("app_terminated_event", json!({"appId": id}));
    }

    /// Adds a task to an app, then emits its `status_update_event`.
    pub fn add_task(&self, app_id: &str, task: Value) {
        let update = status_update(app_id, &task, task["state"].as_str().unwrap_or("TASK_RUNNING"));
        {
            let mut inner = self.shared.lock();
            let app = inner.apps.get_mut(app_id).expect("add_task: the app exists");
            app["tasks"].as_array_mut().expect("fixture app has tasks").push(task);
        }
        self.emit("status_update_event", update);
    }

    /// Sets a task's state, then emits `status_update_event`. Terminal states remove the task from
    /// the app, as Marathon does.
    pub fn set_task_state(&self, app_id: &str, task_id: &str, state: &str) {
        let update = {
            let mut inner = self.shared.lock();
            let tasks = inner
                .apps
                .get_mut(app_id)
                .and_then(|a| a["tasks"].as_array_mut())
                .expect("the app has tasks");
            let index = tasks
                .iter()
                .position(|t| t["id"] == task_id)
                .expect("set_task_state: the task exists");
            tasks[index]["state"] = state.into();
            let update = status_update(app_id, &tasks[index], state);
            if matches!(
                state,
                "TASK_KILLED" | "TASK_FINISHED" | "TASK_FAILED" | "TASK_ERROR" | "TASK_GONE" | "TASK_DROPPED"
            ) {
                tasks.remove(index);
            }
            update
        };
        self.emit("status_update_event", update);
    }

    /// Sets a task's single health check result, then emits `health_status_changed_event`.
    pub fn set_health(&self, app_id: &str, task_id: &str, alive: bool) {
        {
            let mut inner = self.shared.lock();
            let tasks = inner
                .apps
                .get_mut(app_id)
                .and_then(|a| a["tasks"].as_array_mut())
                .expect("the app has tasks");
            let task = tasks.iter_mut().find(|t| t["id"] == task_id).expect("set_health: the task exists");
            task["healthCheckResults"] = json!([{
                "alive": alive, "consecutiveFailures": if alive { 0 } else { 3 },
                "firstSuccess": TIMESTAMP, "lastSuccess": TIMESTAMP, "lastFailure": if alive { Value::Null } else { TIMESTAMP.into() },
                "lastFailureCause": if alive { Value::Null } else { "ConnectionAttemptFailedException".into() },
                "instanceId": task_id.replace("._app.1", "")
            }]);
        }
        self.emit(
            "health_status_changed_event",
            json!({"appId": app_id, "instanceId": task_id, "version": TIMESTAMP, "alive": alive}),
        );
    }
}

fn status_update(app_id: &str, task: &Value, state: &str) -> Value {
    json!({
        "slaveId": "S1", "taskId": task["id"], "taskStatus": state, "message": "", "appId": app_id,
        "host": task["host"], "ipAddresses": task["ipAddresses"], "ports": task["ports"], "version": TIMESTAMP,
    })
}

/// A host-networked app with the given labels and tasks.
pub fn app(id: &str, labels: Value, tasks: Vec<Value>) -> Value {
    json!({
        "id": id, "instances": tasks.len(), "labels": labels, "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 10000, "protocol": "tcp", "name": "http", "labels": {}}], "requirePorts": false,
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 300, "intervalSeconds": 10,
                          "timeoutSeconds": 5, "maxConsecutiveFailures": 3, "ignoreHttp1xx": false}],
        "readinessChecks": [], "version": TIMESTAMP, "deployments": [], "tasks": tasks,
    })
}

/// A running task of `app_id` on `addr` (host = its IP, ports = its port).
pub fn task(app_id: &str, n: usize, addr: SocketAddr) -> Value {
    let base = app_id.trim_start_matches('/').replace('/', "_");
    json!({
        "id": format!("{base}.instance-{n:04x}._app.1"), "appId": app_id, "host": addr.ip().to_string(), "ports": [addr.port()],
        "servicePorts": [10000], "ipAddresses": [{"ipAddress": addr.ip().to_string(), "protocol": "IPv4"}], "slaveId": "S1",
        "state": "TASK_RUNNING", "stagedAt": TIMESTAMP, "startedAt": TIMESTAMP, "version": TIMESTAMP, "role": "*",
    })
}

/// The spec's M1 sample (three apps: host with a failing health check, bridge with a staging
/// task, container mid-deployment with readiness results).
pub const M1_APPS: &str = r#"{"apps":[
 {"id":"/shop/web","instances":2,"labels":{"traefik.enable":"true","traefik.http.routers.web.rule":"Host(`shop.example.com`)"},
  "networks":[{"mode":"host"}],"portDefinitions":[{"port":10001,"protocol":"tcp","name":"http","labels":{}}],"requirePorts":false,
  "healthChecks":[{"protocol":"HTTP","path":"/health","portIndex":0,"gracePeriodSeconds":300,"intervalSeconds":10,"timeoutSeconds":5,"maxConsecutiveFailures":3,"ignoreHttp1xx":false}],
  "readinessChecks":[],"version":"2025-07-01T09:00:00.000Z","tasksStaged":0,"tasksRunning":2,"tasksHealthy":1,"tasksUnhealthy":1,"deployments":[],
  "tasks":[
   {"id":"shop_web.instance-1b2c._app.1","appId":"/shop/web","host":"agent-1.example.internal","ports":[31001],"servicePorts":[10001],
    "ipAddresses":[{"ipAddress":"10.0.5.11","protocol":"IPv4"}],"slaveId":"S1","state":"TASK_RUNNING","stagedAt":"2025-07-01T09:00:02.000Z","startedAt":"2025-07-01T09:00:05.000Z",
    "version":"2025-07-01T09:00:00.000Z","role":"*",
    "healthCheckResults":[{"alive":true,"consecutiveFailures":0,"firstSuccess":"2025-07-01T09:00:15.000Z","lastSuccess":"2025-07-20T10:00:00.000Z","lastFailure":null,"lastFailureCause":null,"instanceId":"shop_web.marathon-1b2c"}]},
   {"id":"shop_web.instance-3d4e._app.1","appId":"/shop/web","host":"agent-2.example.internal","ports":[31007],"servicePorts":[10001],
    "ipAddresses":[{"ipAddress":"10.0.5.12","protocol":"IPv4"}],"slaveId":"S2","state":"TASK_RUNNING","stagedAt":"2025-07-01T09:00:02.000Z","startedAt":"2025-07-01T09:00:06.000Z",
    "version":"2025-07-01T09:00:00.000Z","role":"*",
    "healthCheckResults":[{"alive":false,"consecutiveFailures":2,"firstSuccess":"2025-07-01T09:00:16.000Z","lastSuccess":"2025-07-20T09:59:40.000Z","lastFailure":"2025-07-20T10:00:00.000Z","lastFailureCause":"ConnectionAttemptFailedException","instanceId":"shop_web.marathon-3d4e"}]}]},
 {"id":"/shop/api","instances":2,"labels":{"traefik.enable":"true","traefik.http.services.api.loadbalancer.server.port":"index:0"},
  "container":{"type":"DOCKER","docker":{"image":"shop/api:2.4","forcePullImage":false,"privileged":false,"parameters":[]},
               "portMappings":[{"containerPort":8080,"hostPort":0,"servicePort":10002,"protocol":"tcp","name":"http","labels":{}}],"volumes":[]},
  "networks":[{"mode":"container/bridge"}],"healthChecks":[{"protocol":"MESOS_HTTP","path":"/ping","portIndex":0}],"deployments":[],
  "tasks":[
   {"id":"shop_api.instance-5f6a._app.1","appId":"/shop/api","host":"agent-3.example.internal","ports":[31045],"servicePorts":[10002],"state":"TASK_RUNNING",
    "stagedAt":"2025-07-20T10:00:00.000Z","startedAt":"2025-07-20T10:00:04.000Z","version":"2025-07-20T09:59:58.000Z","role":"*",
    "healthCheckResults":[{"alive":true,"consecutiveFailures":0,"firstSuccess":"2025-07-20T10:00:14.000Z","lastSuccess":"2025-07-20T10:01:00.000Z","lastFailure":null,"lastFailureCause":null,"instanceId":"shop_api.marathon-5f6a"}]},
   {"id":"shop_api.instance-7b8c._app.1","appId":"/shop/api","host":"agent-1.example.internal","ports":[31046],"servicePorts":[10002],"state":"TASK_STAGING",
    "stagedAt":"2025-07-20T10:01:00.000Z","version":"2025-07-20T09:59:58.000Z","role":"*"}]},
 {"id":"/shop/search","instances":1,"labels":{"traefik.enable":"true","traefik.http.services.search.loadbalancer.server.port":"9200"},
  "container":{"type":"MESOS","docker":{"image":"search:7"},"portMappings":[{"containerPort":9200,"servicePort":10003,"protocol":"tcp","name":"http"}]},
  "networks":[{"mode":"container","name":"dcos"}],
  "readinessChecks":[{"name":"readiness","protocol":"HTTP","path":"/_ready","portName":"http","intervalSeconds":5,"timeoutSeconds":3,"httpStatusCodesForReady":[200],"preserveLastResponse":true}],
  "deployments":[{"id":"5a1c0d8e-7d9e-4c55-9e3b-2f6e1f0a9b11"}],
  "readinessCheckResults":[{"name":"readiness","taskId":"shop_search.instance-9d0e._app.1","ready":false,"lastResponse":{"status":503,"contentType":"text/plain","body":"warming"}}],
  "tasks":[{"id":"shop_search.instance-9d0e._app.1","appId":"/shop/search","host":"agent-2.example.internal","ports":[],"servicePorts":[10003],
            "ipAddresses":[{"ipAddress":"9.0.3.7","protocol":"IPv4"}],"state":"TASK_RUNNING","stagedAt":"2025-07-20T10:02:00.000Z","startedAt":"2025-07-20T10:02:03.000Z",
            "version":"2025-07-20T10:01:59.000Z","role":"*"}]}
]}"#;

/// A Marathon 1.4-era app: `container.docker.network` and `container.docker.portMappings`, no
/// `networks`, health results keyed by `taskId`.
pub const LEGACY_1_4_APP: &str = r#"{"id":"/legacy/web","instances":1,"labels":{"traefik.enable":"true"},
  "container":{"type":"DOCKER","docker":{"image":"web:1","network":"BRIDGE","portMappings":[{"containerPort":80,"hostPort":0,"servicePort":10010,"protocol":"tcp","name":"http"}]}},
  "ports":[10010],"healthChecks":[],"deployments":[],
  "tasks":[{"id":"legacy_web.1a2b3c","appId":"/legacy/web","host":"agent-7.example.internal","ports":[31777],"servicePorts":[10010],"state":"TASK_RUNNING",
            "stagedAt":"2017-03-01T09:00:00.000Z","startedAt":"2017-03-01T09:00:04.000Z","version":"2017-03-01T08:59:00.000Z",
            "healthCheckResults":[{"alive":true,"consecutiveFailures":0,"taskId":"legacy_web.1a2b3c"}]}]}"#;

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        let name = name.to_string();
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, key: &str) -> Vec<String> {
        let Some((_, query)) = self.target.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .collect()
    }
}

/// The CA that signed the test server certificate (a PEM file path).
pub const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/providers/testdata/tls/ca.pem");
/// A CA that did not.
pub const OTHER_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/providers/testdata/tls/other-ca.pem");

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/providers/testdata/tls");
    let chain = CertificateDer::pem_file_iter(format!("{dir}/leaf.pem"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .expect("marathon: test certificate");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/leaf-key.pem")).expect("marathon: test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .expect("marathon: TLS server configuration");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Reads one request head (GET requests have no body); `None` at EOF or on garbage.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = text.split("\r\n");
            let mut request_line = lines.next()?.split(' ');
            let (method, target) = (request_line.next()?.to_string(), request_line.next()?.to_string());
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            return Some(Head { method, target, headers });
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes a complete response with a body; false when the connection should close.
async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: &str, headers: &[(&str, String)], body: &str, close: bool) -> bool {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: Jetty(9.3.z-SNAPSHOT)\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes()).await.is_ok() && !close
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.trim_end_matches('=').bytes().collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

fn authorized(head: &Head, inner: &Inner) -> bool {
    let given = head.header("authorization").unwrap_or("");
    if inner.credentials.is_none() && inner.token.is_none() {
        return true;
    }
    if let (Some(token), Some(sent)) = (&inner.token, given.strip_prefix("token=")) {
        if sent == token {
            return true;
        }
    }
    if let (Some((user, password)), Some(b64)) = (&inner.credentials, given.strip_prefix("Basic ")) {
        if base64_decode(b64.trim()).is_some_and(|d| d == format!("{user}:{password}").as_bytes()) {
            return true;
        }
    }
    false
}

/// The app as `embed` asks: tasks only with `*.tasks`, deployments with `*.tasks` or
/// `*.deployments`, readiness results only with `*.readiness`.
fn embedded(app: &Value, embed: &[String]) -> Value {
    let has = |what: &str| embed.iter().any(|e| e == &format!("apps.{what}") || e == &format!("app.{what}"));
    let mut app = app.clone();
    if let Some(map) = app.as_object_mut() {
        if !has("tasks") {
            map.remove("tasks");
        }
        if !has("tasks") && !has("deployments") {
            map.remove("deployments");
        }
        if !has("readiness") {
            map.remove("readinessCheckResults");
        }
    }
    app
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    instance: &'static str,
    leader: Arc<AtomicBool>,
    shared: Arc<Shared>,
) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        let close = head.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let is_leader = leader.load(Ordering::SeqCst);
        let leader_url = shared.leader_url();
        let record = |status: u16| {
            shared.lock().log.push(Logged {
                instance,
                target: head.target.clone(),
                status,
            })
        };
        if !authorized(&head, &shared.lock()) {
            record(401);
            let headers = [("WWW-Authenticate", "Basic realm=\"Mesosphere\"".to_string())];
            if !respond(&mut stream, "401 Unauthorized", &headers, "", close).await {
                return;
            }
            continue;
        }
        if head.method != "GET" {
            record(405);
            if !respond(&mut stream, "405 Method Not Allowed", &[], "", close).await {
                return;
            }
            continue;
        }
        let path = head.path().to_string();
        if !is_leader && leader_url.is_none() && path != "/ping" {
            record(502);
            if !respond(&mut stream, "502 Bad Gateway", &[], "Could not determine the current leader", close).await {
                return;
            }
            continue;
        }
        if path == "/v2/events" {
            if let (false, Some(leader_url)) = (is_leader, &leader_url) {
                record(302);
                let location = format!("{leader_url}{}", head.target);
                let _ = respond(&mut stream, "302 Found", &[("Location", location)], "", true).await;
                return;
            }
            if !head.all("accept").any(|a| a == "text/event-stream") {
                record(405);
                let html = "<html><body><h2>HTTP ERROR 405</h2><p>HTTP method GET is not supported by this URL</p></body></html>";
                let headers = [("Content-Type", "text/html;charset=ISO-8859-1".to_string())];
                if !respond(&mut stream, "405 Method Not Allowed", &headers, html, close).await {
                    return;
                }
                continue;
            }
            record(200);
            stream_events(stream, &head, &shared).await;
            return;
        }
        let (status, body) = if path == "/ping" {
            ("200 OK", "pong".to_string())
        } else if path == "/v2/apps" {
            let embed = head.query("embed");
            let apps: Vec<Value> = shared.lock().apps.values().map(|a| embedded(a, &embed)).collect();
            ("200 OK", json!({ "apps": apps }).to_string())
        } else if let Some(id) = path.strip_prefix("/v2/apps/") {
            let id = format!("/{}", id.trim_end_matches('/'));
            let embed = head.query("embed");
            match shared.lock().apps.get(&id) {
                Some(app) => ("200 OK", json!({ "app": embedded(app, &embed) }).to_string()),
                None => (
                    "404 Not Found",
                    json!({ "message": format!("App '{id}' does not exist") }).to_string(),
                ),
            }
        } else {
            ("404 Not Found", json!({ "message": "not found" }).to_string())
        };
        record(status[..3].parse().unwrap_or(0));
        let mut headers = vec![("Content-Type", "application/json; qs=2".to_string())];
        if let Some(url) = leader_url {
            headers.push(("X-Marathon-Leader", url));
        }
        if !respond(&mut stream, status, &headers, &body, close).await {
            return;
        }
    }
}

/// Serves one event stream until it is dropped (by the cluster) or the client goes away.
async fn stream_events<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, head: &Head, shared: &Shared) {
    let filter = head.query("event_type");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let heartbeat = {
        let mut inner = shared.lock();
        inner.subscribers.push(Subscriber {
            filter: filter.clone(),
            tx,
        });
        inner.heartbeat
    };
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nServer: Jetty(9.3.z-SNAPSHOT)\r\nContent-Type: text/event-stream;charset=UTF-8\r\nConnection: close\r\n\r\n",
    );
    if filter.is_empty() || filter.iter().any(|f| f == "event_stream_attached") {
        let data = json!({"remoteAddress": "127.0.0.1", "eventType": "event_stream_attached", "timestamp": TIMESTAMP});
        out.push_str(&format!("event: event_stream_attached\r\ndata: {data}\r\n\r\n"));
    }
    if stream.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut scratch = [0u8; 256];
    loop {
        let written = tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => stream.write_all(&frame).await,
                None => return, // dropped by the cluster: close the connection
            },
            _ = ticks.tick() => {
                let written = stream.write_all(b"\r\n").await;
                shared.lock().heartbeats += u64::from(written.is_ok());
                written
            }
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return, // the client went away
                Ok(_) => continue,
            },
        };
        if written.is_err() {
            return;
        }
    }
}
