//! A Consul agent stand-in for tests: the catalog and health endpoints drover uses, answering as
//! Consul's API documentation says (shared/specs/providers.md §2 and §5).
//!
//! It holds a mutable catalog (nodes, service instances, checks including `serfHealth` and the
//! maintenance checks) behind one raft-like index, and keeps Consul's per-table indexes: the
//! services table (`/v1/catalog/services`), the checks table (`/v1/health/state/*`) and one index
//! per service (`/v1/health/service/<name>`). Blocking is real: a request with `?index=N` waits
//! until its index passes `N`, or until `wait` (default 5 min, at most 10 min) plus a random
//! jitter of up to `wait/16` has passed, then answers with the data *at that moment* — an expired
//! wait returns the unchanged body and index, as Consul does.
//!
//! Faults, each as documented: the index going backwards (a snapshot restore: blocked queries are
//! released at once with the lower index), an index stuck at 0, a 403 `ACL not found` for a wrong
//! `X-Consul-Token`, ACL-filtered lists with `X-Consul-Results-Filtered-By-ACLs`, any 5xx, and
//! being down (the listener closed and every open connection dropped, as a killed agent).
//! Every request is counted, so tests can prove the absence of a busy loop.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Consul's default `wait`.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Consul's largest `wait`.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// The agent's own node, which also hosts the `consul` service (as on a real server).
pub const SERVER_NODE: &str = "consul-server";

#[derive(Clone, Debug)]
struct NodeRec {
    id: String,
    name: String,
    address: String,
    create: u64,
    modify: u64,
}

#[derive(Clone, Debug)]
struct InstanceRec {
    node: String,
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    port: u16,
    create: u64,
    modify: u64,
}

#[derive(Clone, Debug)]
struct CheckRec {
    node: String,
    id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    service_id: String,
    service_name: String,
    create: u64,
    modify: u64,
}

#[derive(Debug)]
struct State {
    index: u64,
    services_index: u64,
    checks_index: u64,
    service_index: BTreeMap<String, u64>,
    nodes: BTreeMap<String, NodeRec>,
    instances: Vec<InstanceRec>,
    checks: Vec<CheckRec>,
    /// Bumped by a restore: blocked queries give up waiting and answer.
    epoch: u64,
    zero_index: bool,
    failure: Option<(u16, String)>,
    token: Option<String>,
    hidden: BTreeSet<String>,
}

struct Shared {
    state: Mutex<State>,
    wake: watch::Sender<u64>,
    requests: AtomicU64,
    by_path: Mutex<BTreeMap<String, u64>>,
    /// Blocking queries that ran out their `wait`: path and how long they blocked.
    expired: Mutex<Vec<(String, Duration)>>,
    blocked: AtomicI64,
    rng: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn woke(&self) {
        self.wake.send_modify(|v| *v += 1);
    }

    fn random(&self) -> u64 {
        // xorshift64*: plenty for jitter.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// One service instance to register.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Node name (created on first use, with a passing `serfHealth`).
    pub node: String,
    /// Node address.
    pub node_address: String,
    /// Service id (unique per node).
    pub id: String,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Service address ("" = the node's).
    pub address: String,
    /// Port (0 = none).
    pub port: u16,
}

impl Registration {
    /// An instance of `name` with id `id` on `node` (address 127.0.0.1), reachable at `addr`.
    pub fn new(node: &str, id: &str, name: &str, addr: SocketAddr, tags: &[&str]) -> Self {
        Self {
            node: node.into(),
            node_address: "127.0.0.1".into(),
            id: id.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            address: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

/// The running stand-in.
pub struct ConsulServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl ConsulServer {
    /// Starts on 127.0.0.1 on a free port, with the server node and the `consul` service.
    pub async fn start() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
            | 1;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                index: 10,
                services_index: 10,
                checks_index: 10,
                service_index: BTreeMap::new(),
                nodes: BTreeMap::new(),
                instances: Vec::new(),
                checks: Vec::new(),
                epoch: 0,
                zero_index: false,
                failure: None,
                token: None,
                hidden: BTreeSet::new(),
            }),
            wake: watch::channel(0).0,
            requests: AtomicU64::new(0),
            by_path: Mutex::new(BTreeMap::new()),
            expired: Mutex::new(Vec::new()),
            blocked: AtomicI64::new(0),
            rng: AtomicU64::new(seed),
        });
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared,
            accept: Mutex::new(None),
        };
        let mut registration = Registration::new(SERVER_NODE, "consul", "consul", SocketAddr::from(([127, 0, 0, 1], 8300)), &[]);
        registration.address = String::new();
        server.register(registration);
        server.addr = server.listen(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        server
    }

    /// `host:port` of the agent.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `[providers.consulCatalog]` static configuration pointing at this agent, with `extra` lines
    /// in the provider's table and `endpoint_extra` lines in its `endpoint` table.
    pub fn provider_toml(&self, extra: &str, endpoint_extra: &str) -> String {
        format!(
            "[providers.consulCatalog]\n{extra}\n[providers.consulCatalog.endpoint]\naddress = \"{}\"\n{endpoint_extra}\n",
            self.addr
        )
    }

    async fn listen(&self, addr: SocketAddr) -> SocketAddr {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(addr).expect("bind the Consul stand-in");
        let listener = socket.listen(1024).expect("listen");
        let local = listener.local_addr().expect("local addr");
        let shared = self.shared.clone();
        let task = super::serve::accept_loop(listener, None, move |stream| {
            let shared = shared.clone();
            async move {
                let service = service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
        *self.accept.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        local
    }

    /// Takes the agent down: the listener closes and every open connection (blocked queries
    /// included) is dropped, as when the agent is killed.
    pub async fn stop(&self) {
        let task = self.accept.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Brings the agent back on the same address, with the catalog as it is now.
    pub async fn restart(&self) {
        self.stop().await;
        self.listen(self.addr).await;
    }

    // ----- catalog writes -----

    fn write(&self, f: impl FnOnce(&mut State) -> Touched) {
        let mut st = self.shared.state();
        let touched = f(&mut st);
        st.index += 1;
        let index = st.index;
        if touched.services_table {
            st.services_index = index;
        }
        if touched.checks_table {
            st.checks_index = index;
        }
        for s in touched.services {
            st.service_index.insert(s, index);
        }
        drop(st);
        self.shared.woke();
    }

    /// Registers (or replaces) an instance; a new node gets a passing `serfHealth`.
    pub fn register(&self, r: Registration) {
        self.write(|st| {
            let index = st.index + 1;
            let mut touched = Touched {
                services_table: true,
                checks_table: false,
                services: vec![r.name.clone()],
            };
            if !st.nodes.contains_key(&r.node) {
                st.nodes.insert(
                    r.node.clone(),
                    NodeRec {
                        id: node_id(&r.node),
                        name: r.node.clone(),
                        address: r.node_address.clone(),
                        create: index,
                        modify: index,
                    },
                );
                st.checks.push(CheckRec {
                    node: r.node.clone(),
                    id: "serfHealth".into(),
                    name: "Serf Health Status".into(),
                    status: "passing".into(),
                    notes: String::new(),
                    output: "Agent alive and reachable".into(),
                    service_id: String::new(),
                    service_name: String::new(),
                    create: index,
                    modify: index,
                });
                touched.checks_table = true;
            }
            let create = match st.instances.iter().position(|i| i.node == r.node && i.id == r.id) {
                Some(pos) => {
                    let old = st.instances.remove(pos);
                    touched.services.push(old.name);
                    old.create
                }
                None => index,
            };
            st.instances.push(InstanceRec {
                node: r.node,
                id: r.id,
                name: r.name,
                tags: r.tags,
                address: r.address,
                port: r.port,
                create,
                modify: index,
            });
            touched
        });
    }

    /// Deregisters an instance and its checks.
    pub fn deregister(&self, node: &str, id: &str) {
        self.write(|st| {
            let mut touched = Touched {
                services_table: true,
                checks_table: false,
                services: Vec::new(),
            };
            st.instances.retain(|i| {
                let gone = i.node == node && i.id == id;
                if gone {
                    touched.services.push(i.name.clone());
                }
                !gone
            });
            let before = st.checks.len();
            st.checks.retain(|c| !(c.node == node && c.service_id == id));
            touched.checks_table = st.checks.len() != before;
            touched
        });
    }

    /// Adds or updates a check: a service check when `service_id` is given, else a node check.
    pub fn set_check(&self, node: &str, check_id: &str, service_id: Option<&str>, status: &str) {
        self.set_check_full(node, check_id, service_id, status, "", "");
    }

    fn set_check_full(&self, node: &str, check_id: &str, service_id: Option<&str>, status: &str, name: &str, notes: &str) {
        self.write(|st| {
            let index = st.index + 1;
            let service_name = service_id
                .and_then(|sid| st.instances.iter().find(|i| i.node == node && i.id == sid))
                .map(|i| i.name.clone())
                .unwrap_or_default();
            let touched_services = if service_id.is_some() {
                vec![service_name.clone()]
            } else {
                services_on(st, node)
            };
            match st.checks.iter_mut().find(|c| c.node == node && c.id == check_id) {
                Some(c) => {
                    c.status = status.into();
                    c.output = format!("status set to {status} by the test");
                    c.modify = index;
                }
                None => st.checks.push(CheckRec {
                    node: node.into(),
                    id: check_id.into(),
                    name: if name.is_empty() { check_id.to_string() } else { name.to_string() },
                    status: status.into(),
                    notes: notes.into(),
                    output: format!("status set to {status} by the test"),
                    service_id: service_id.unwrap_or_default().into(),
                    service_name,
                    create: index,
                    modify: index,
                }),
            }
            Touched {
                services_table: false,
                checks_table: true,
                services: touched_services,
            }
        });
    }

    /// Removes a check.
    pub fn remove_check(&self, node: &str, check_id: &str) {
        self.write(|st| {
            let mut services = Vec::new();
            st.checks.retain(|c| {
                let gone = c.node == node && c.id == check_id;
                if gone && !c.service_name.is_empty() {
                    services.push(c.service_name.clone());
                }
                !gone
            });
            if services.is_empty() {
                services = services_on(st, node);
            }
            Touched {
                services_table: false,
                checks_table: true,
                services,
            }
        });
    }

    /// Sets the node's `serfHealth` (critical = the node failed).
    pub fn set_serf(&self, node: &str, status: &str) {
        self.set_check(node, "serfHealth", None, status);
    }

    /// Service maintenance mode on or off (`_service_maintenance:<id>`, critical, as the agent does).
    pub fn service_maintenance(&self, node: &str, id: &str, on: bool, reason: &str) {
        let check = format!("_service_maintenance:{id}");
        if on {
            self.set_check_full(node, &check, Some(id), "critical", "Service Maintenance Mode", reason);
        } else {
            self.remove_check(node, &check);
        }
    }

    /// Node maintenance mode on or off (`_node_maintenance`).
    pub fn node_maintenance(&self, node: &str, on: bool, reason: &str) {
        if on {
            self.set_check_full(node, "_node_maintenance", None, "critical", "Node Maintenance Mode", reason);
        } else {
            self.remove_check(node, "_node_maintenance");
        }
    }

    /// A write that changes nothing but moves the services table's index (an instance of a
    /// service no one routes, re-registered elsewhere).
    pub fn touch_services(&self) {
        self.write(|_| Touched {
            services_table: true,
            checks_table: false,
            services: Vec::new(),
        });
    }

    // ----- faults -----

    /// A snapshot restore: every index drops to `to` (lower than anything answered before) and
    /// blocked queries are released at once with it.
    pub fn index_goes_backwards(&self, to: u64) {
        let mut st = self.shared.state();
        st.index = to;
        st.services_index = to;
        st.checks_index = to;
        for v in st.service_index.values_mut() {
            *v = to;
        }
        st.epoch += 1;
        drop(st);
        self.shared.woke();
    }

    /// While on, every endpoint reports `X-Consul-Index: 0` and a query blocking on any index
    /// waits for its whole `wait` (the table looks empty to the blocking machinery).
    pub fn set_zero_index(&self, on: bool) {
        self.shared.state().zero_index = on;
        self.shared.woke();
    }

    /// Every request (and every blocked query, when it wakes) is answered with this status.
    pub fn set_failure(&self, failure: Option<(u16, &str)>) {
        self.shared.state().failure = failure.map(|(s, b)| (s, b.to_string()));
        self.shared.woke();
    }

    /// Requires `X-Consul-Token` (or `Authorization: Bearer`) to equal `token`; others get 403.
    pub fn require_token(&self, token: Option<&str>) {
        self.shared.state().token = token.map(str::to_string);
        self.shared.woke();
    }

    /// Services the token may not read: left out of lists, with the ACL-filtered header.
    pub fn hide_from_token(&self, service: &str) {
        self.shared.state().hidden.insert(service.to_string());
        self.shared.woke();
    }

    // ----- counters -----

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests received so far on paths starting with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> u64 {
        self.shared
            .by_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| *n)
            .sum()
    }

    /// How long each blocking query on a path starting with `prefix` blocked before its `wait`
    /// ran out (answered unchanged), oldest first.
    pub fn expired_on(&self, prefix: &str) -> Vec<Duration> {
        let expired = self.shared.expired.lock().unwrap_or_else(PoisonError::into_inner);
        expired.iter().filter(|(p, _)| p.starts_with(prefix)).map(|(_, d)| *d).collect()
    }

    /// Queries blocked right now.
    pub fn blocked(&self) -> i64 {
        self.shared.blocked.load(Ordering::SeqCst)
    }

    /// The current raft index.
    pub fn index(&self) -> u64 {
        self.shared.state().index
    }
}

impl Drop for ConsulServer {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

struct Touched {
    services_table: bool,
    checks_table: bool,
    services: Vec<String>,
}

fn services_on(st: &State, node: &str) -> Vec<String> {
    st.instances.iter().filter(|i| i.node == node).map(|i| i.name.clone()).collect()
}

fn node_id(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        (h >> 48) & 0xffff,
        h & 0xffff_ffff_ffff
    )
}

// ----- the HTTP side -----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint<'a> {
    CatalogServices,
    CatalogService(&'a str),
    HealthService(&'a str),
    HealthChecks(&'a str),
    HealthState(&'a str),
}

fn endpoint_index(st: &State, endpoint: Endpoint) -> u64 {
    if st.zero_index {
        return 0;
    }
    match endpoint {
        Endpoint::CatalogServices => st.services_index,
        Endpoint::HealthState(_) => st.checks_index,
        Endpoint::CatalogService(name) | Endpoint::HealthService(name) | Endpoint::HealthChecks(name) => {
            st.service_index.get(name).copied().unwrap_or(st.services_index)
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let path = percent_decode(req.uri().path());
    *shared
        .by_path
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.clone())
        .or_default() += 1;
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let presented = req
        .headers()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        });
    {
        let st = shared.state();
        if let Some(required) = &st.token {
            if presented.as_deref() != Some(required.as_str()) {
                return text(StatusCode::FORBIDDEN, "ACL not found");
            }
        }
        if let Some((status, body)) = &st.failure {
            return text(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body);
        }
    }
    let endpoint = if path == "/v1/catalog/services" {
        Endpoint::CatalogServices
    } else if let Some(name) = path.strip_prefix("/v1/catalog/service/") {
        Endpoint::CatalogService(name)
    } else if let Some(name) = path.strip_prefix("/v1/health/service/") {
        Endpoint::HealthService(name)
    } else if let Some(name) = path.strip_prefix("/v1/health/checks/") {
        Endpoint::HealthChecks(name)
    } else if let Some(state) = path.strip_prefix("/v1/health/state/") {
        if !matches!(state, "any" | "passing" | "warning" | "critical") {
            return text(StatusCode::BAD_REQUEST, "Bad state");
        }
        Endpoint::HealthState(state)
    } else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let min_index: u64 = match param("index").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(i)) => i,
        Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "Invalid index"),
    };
    if min_index > 0 {
        let wait = match param("wait") {
            None => DEFAULT_WAIT,
            Some(w) => match parse_go_duration(w) {
                Some(d) => d.min(MAX_WAIT),
                None => return text(StatusCode::BAD_REQUEST, "Invalid wait time"),
            },
        };
        let jitter_range = (wait / 16).as_nanos() as u64;
        let jitter = if jitter_range == 0 { 0 } else { shared.random() % jitter_range };
        let blocked_at = Instant::now();
        let deadline = blocked_at + wait + Duration::from_nanos(jitter);
        let mut wake = shared.wake.subscribe();
        let epoch = shared.state().epoch;
        shared.blocked.fetch_add(1, Ordering::SeqCst);
        loop {
            {
                let st = shared.state();
                if st.failure.is_some() || st.epoch != epoch || endpoint_index(&st, endpoint) > min_index {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, wake.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => break,
                Err(_) => {
                    let mut expired = shared.expired.lock().unwrap_or_else(PoisonError::into_inner);
                    expired.push((path.clone(), blocked_at.elapsed()));
                    break;
                }
            }
        }
        shared.blocked.fetch_sub(1, Ordering::SeqCst);
        if let Some((status, body)) = &shared.state().failure {
            return text(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body);
        }
    }
    let st = shared.state();
    let dc = param("dc").unwrap_or("dc1").to_string();
    let passing = param("passing").is_some_and(|v| !matches!(v, "false" | "0"));
    let tags: Vec<&str> = query.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.as_str()).collect();
    let visible = |name: &str| presented.is_none() || !st.hidden.contains(name);
    let mut filtered = false;
    let body: Value = match endpoint {
        Endpoint::CatalogServices => {
            let mut map: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for i in &st.instances {
                if !visible(&i.name) {
                    filtered = true;
                    continue;
                }
                map.entry(&i.name).or_default().extend(i.tags.iter().map(String::as_str));
            }
            json!(map)
        }
        Endpoint::HealthService(name) => {
            let entries: Vec<Value> = instances_of(&st, name, &tags)
                .filter(|i| visible(&i.name))
                .filter_map(|i| {
                    let node = st.nodes.get(&i.node)?;
                    let checks: Vec<&CheckRec> = st
                        .checks
                        .iter()
                        .filter(|c| c.node == i.node && (c.service_id.is_empty() || c.service_id == i.id))
                        .collect();
                    if passing && checks.iter().any(|c| c.status != "passing") {
                        return None;
                    }
                    Some(json!({
                        "Node": node_json(node, &dc),
                        "Service": {
                            "ID": i.id, "Service": i.name, "Tags": i.tags, "Address": i.address,
                            "TaggedAddresses": if i.address.is_empty() { json!({}) } else {
                                json!({"lan_ipv4": {"Address": i.address, "Port": i.port}})
                            },
                            "Meta": {}, "Port": i.port, "Weights": {"Passing": 1, "Warning": 1},
                            "EnableTagOverride": false, "CreateIndex": i.create, "ModifyIndex": i.modify,
                        },
                        "Checks": checks.iter().map(|c| check_json(c, &st)).collect::<Vec<_>>(),
                    }))
                })
                .collect();
            json!(entries)
        }
        Endpoint::CatalogService(name) => {
            let entries: Vec<Value> = instances_of(&st, name, &tags)
                .filter(|i| visible(&i.name))
                .filter_map(|i| {
                    let node = st.nodes.get(&i.node)?;
                    Some(json!({
                        "ID": node.id, "Node": node.name, "Address": node.address, "Datacenter": dc,
                        "ServiceID": i.id, "ServiceName": i.name, "ServiceTags": i.tags,
                        "ServiceAddress": i.address, "ServicePort": i.port,
                        "CreateIndex": i.create, "ModifyIndex": i.modify,
                    }))
                })
                .collect();
            json!(entries)
        }
        Endpoint::HealthChecks(name) => {
            let checks: Vec<Value> = st
                .checks
                .iter()
                .filter(|c| c.service_name == name && visible(&c.service_name))
                .map(|c| check_json(c, &st))
                .collect();
            json!(checks)
        }
        Endpoint::HealthState(state) => {
            let checks: Vec<Value> = st
                .checks
                .iter()
                .filter(|c| state == "any" || c.status == state)
                .filter(|c| c.service_name.is_empty() || visible(&c.service_name))
                .map(|c| check_json(c, &st))
                .collect();
            json!(checks)
        }
    };
    let index = endpoint_index(&st, endpoint);
    drop(st);
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    let h = r.headers_mut();
    h.insert("content-type", http::HeaderValue::from_static("application/json"));
    h.insert("x-consul-index", http::HeaderValue::from(index));
    h.insert("x-consul-knownleader", http::HeaderValue::from_static("true"));
    h.insert("x-consul-lastcontact", http::HeaderValue::from_static("0"));
    h.insert("x-consul-effective-consistency", http::HeaderValue::from_static("leader"));
    h.insert("x-consul-default-acl-policy", http::HeaderValue::from_static("allow"));
    if filtered {
        h.insert("x-consul-results-filtered-by-acls", http::HeaderValue::from_static("true"));
    }
    r
}

fn instances_of<'a>(st: &'a State, name: &'a str, tags: &'a [&'a str]) -> impl Iterator<Item = &'a InstanceRec> + 'a {
    st.instances
        .iter()
        .filter(move |i| i.name == name && tags.iter().all(|t| i.tags.iter().any(|it| it == t)))
}

fn node_json(node: &NodeRec, dc: &str) -> Value {
    json!({
        "ID": node.id, "Node": node.name, "Address": node.address, "Datacenter": dc,
        "TaggedAddresses": {"lan": node.address, "lan_ipv4": node.address},
        "Meta": {"consul-network-segment": ""}, "CreateIndex": node.create, "ModifyIndex": node.modify,
    })
}

fn check_json(c: &CheckRec, st: &State) -> Value {
    let tags: Vec<String> = st
        .instances
        .iter()
        .find(|i| i.node == c.node && i.id == c.service_id)
        .map(|i| i.tags.clone())
        .unwrap_or_default();
    json!({
        "Node": c.node, "CheckID": c.id, "Name": c.name, "Status": c.status, "Notes": c.notes,
        "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name, "ServiceTags": tags,
        "Type": if c.service_id.is_empty() { "" } else { "ttl" }, "Interval": "", "Timeout": "",
        "ExposedPort": 0, "Definition": {}, "CreateIndex": c.create, "ModifyIndex": c.modify,
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `time.ParseDuration` for what clients send: `55s`, `1500ms`, `1m30s`, `0.5s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}
