//! The L4 half: TCP routers (by TLS server name, ALPN and client address) and UDP.
//!
//! A connection on an entrypoint with TCP routers is sorted before HTTP sees it
//! ([`dispatch`]): an entrypoint with only plain (``HostSNI(`*`)``) routers hands it over at
//! once, so protocols where the server speaks first work; otherwise its first bytes are peeked
//! ([`sniff`]) with a deadline: a Postgres `SSLRequest`, a TLS ClientHello (server name, ALPN),
//! or something else. Peeking consumes nothing, so a connection no TCP router takes goes on to
//! the HTTP side untouched, and a passed-through ClientHello reaches the server byte for byte.
//!
//! A routed connection is served by [`serve`]: a server is chosen by smooth weighted round
//! robin among the healthy ones (the same outlier state as HTTP, kept across reloads); a failed
//! connect is retried on another server, since nothing was sent; a PROXY protocol header goes
//! first if the transport asks for it; then the bytes are relayed ([`relay`]): with `splice(2)`
//! when both ends are plain sockets, with a copy through one reused buffer otherwise.
//!
//! The compiled tables live in the snapshot ([`TcpTables`]), so TCP routes and the certificates
//! they terminate with change in the same swap as everything else.

pub mod compile;
pub mod dispatch;
pub mod proxy_protocol;
pub mod relay;
pub mod serve;
pub mod sniff;
pub mod udp;

use std::sync::Arc;
use std::time::Duration;

use drover_providers::rule::{Expr, HostPattern, TcpMatcher, TcpRule};
use drover_providers::tcp::TcpMode;
use ipnet::IpNet;
use regex::Regex;

use crate::balance::SmoothWeighted;
use crate::health::{Admission, Outcome, ServerHealth};
use crate::snapshot::Tried;

/// What a TCP rule is judged on.
#[derive(Debug, Default)]
pub struct ConnectionView<'a> {
    /// The ClientHello's server name, lower-case (`None`: no TLS, or no SNI).
    pub sni: Option<&'a str>,
    /// The ALPN protocols the client offers.
    pub alpn: &'a [Vec<u8>],
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
}

/// A TCP rule compiled for the data path.
#[derive(Debug)]
pub enum TcpNode {
    /// All must match.
    All(Box<[TcpNode]>),
    /// One must match.
    Any(Box<[TcpNode]>),
    /// Must not match.
    Not(Box<TcpNode>),
    /// `HostSNI`.
    Sni(HostPattern),
    /// `HostSNIRegexp`.
    SniRegexp(Regex),
    /// `ClientIP`.
    ClientIp(IpNet),
    /// `ALPN`.
    Alpn(Box<[u8]>),
}

impl TcpNode {
    /// Compiles a parsed TCP rule (regexes unanchored, as for HTTP).
    pub fn compile(rule: &TcpRule) -> Result<Self, regex::Error> {
        compile(&rule.expr)
    }

    /// Whether the connection matches.
    pub fn matches(&self, c: &ConnectionView<'_>) -> bool {
        match self {
            TcpNode::All(nodes) => nodes.iter().all(|n| n.matches(c)),
            TcpNode::Any(nodes) => nodes.iter().any(|n| n.matches(c)),
            TcpNode::Not(n) => !n.matches(c),
            TcpNode::Sni(HostPattern::Any) => true,
            TcpNode::Sni(HostPattern::Exact(name)) => c.sni == Some(name.as_str()),
            TcpNode::Sni(HostPattern::Wildcard(parent)) => c.sni.is_some_and(|sni| {
                sni.strip_suffix(parent.as_str())
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            }),
            TcpNode::SniRegexp(re) => c.sni.is_some_and(|sni| re.is_match(sni)),
            TcpNode::ClientIp(net) => c.client.is_some_and(|ip| net.contains(&ip.to_canonical())),
            TcpNode::Alpn(p) => c.alpn.iter().any(|offered| offered.as_slice() == &**p),
        }
    }
}

fn compile(expr: &Expr<TcpMatcher>) -> Result<TcpNode, regex::Error> {
    Ok(match expr {
        Expr::And(a, b) => TcpNode::All(Box::new([compile(a)?, compile(b)?])),
        Expr::Or(a, b) => TcpNode::Any(Box::new([compile(a)?, compile(b)?])),
        Expr::Not(inner) => TcpNode::Not(Box::new(compile(inner)?)),
        Expr::Matcher(TcpMatcher::HostSNI(h)) => TcpNode::Sni(h.clone()),
        Expr::Matcher(TcpMatcher::HostSNIRegexp(re)) => TcpNode::SniRegexp(Regex::new(re)?),
        Expr::Matcher(TcpMatcher::ClientIP(net)) => TcpNode::ClientIp(*net),
        Expr::Matcher(TcpMatcher::Alpn(p)) => TcpNode::Alpn(p.as_bytes().into()),
    })
}

/// One TCP router, compiled.
#[derive(Debug)]
pub struct TcpRoute {
    /// Qualified router name.
    pub router: Arc<str>,
    /// Its rule.
    pub rule: TcpNode,
    /// Plain, passthrough or terminate.
    pub mode: TcpMode,
    /// Its service.
    pub service: Arc<TcpService>,
    /// For `Terminate`: the TLS configuration (its options, no ALPN).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Its counters (kept across reloads).
    pub stats: Arc<serve::L4Stats>,
}

/// The TCP routers of one entrypoint, highest priority first.
#[derive(Debug, Default)]
pub struct TcpTable {
    /// Routers that need no ClientHello (plain ``HostSNI(`*`)``).
    pub plain: Vec<Arc<TcpRoute>>,
    /// Routers for TLS connections (passthrough and terminate).
    pub tls: Vec<Arc<TcpRoute>>,
}

impl TcpTable {
    /// Whether the entrypoint has no TCP router.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.tls.is_empty()
    }

    /// The first plain router that takes a connection from `client`.
    pub fn plain_for(&self, client: std::net::IpAddr) -> Option<&Arc<TcpRoute>> {
        let view = ConnectionView {
            client: Some(client),
            ..ConnectionView::default()
        };
        self.plain.iter().find(|r| r.rule.matches(&view))
    }

    /// The first TLS router that takes this ClientHello.
    pub fn tls_for(&self, view: &ConnectionView<'_>) -> Option<&Arc<TcpRoute>> {
        self.tls.iter().find(|r| r.rule.matches(view))
    }
}

/// Every entrypoint's TCP routers (index order), and what UDP entrypoints serve.
#[derive(Debug, Default)]
pub struct TcpTables {
    /// Per TCP entrypoint.
    pub entry_points: Vec<TcpTable>,
    /// Per UDP entrypoint (index order of the UDP entrypoints): its service, if a router takes it.
    pub udp: Vec<Option<Arc<UdpService>>>,
    /// Every TCP service, by name (for active checks).
    pub services: Vec<Arc<TcpService>>,
}

impl TcpTables {
    /// The table of entrypoint `index`, if it has TCP routers.
    pub fn table(&self, index: usize) -> Option<&TcpTable> {
        self.entry_points.get(index).filter(|t| !t.is_empty())
    }
}

/// How a TCP service reaches its servers.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    /// Connect deadline.
    pub dial_timeout: Duration,
    /// TCP keep-alive on server sockets (`None`: off).
    pub keep_alive: Option<Duration>,
    /// How long one direction may go on silent after the other ended (`None`: no limit).
    pub termination_delay: Option<Duration>,
    /// PROXY protocol version to send (1 or 2), if any.
    pub proxy_protocol: Option<u8>,
    /// TLS to servers with `tls = true`.
    pub tls: Option<Arc<crate::upstream::tls::TlsClient>>,
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(15)),
            termination_delay: Some(Duration::from_millis(100)),
            proxy_protocol: None,
            tls: None,
        }
    }
}

/// One TCP server.
#[derive(Debug)]
pub struct TcpServer {
    /// `host:port` as configured.
    pub address: Arc<str>,
    /// TLS to it.
    pub tls: bool,
    /// Its weight.
    pub weight: u32,
    /// Its health (kept across reloads; the same registry as HTTP).
    pub health: Arc<ServerHealth>,
}

/// A TCP load balancer.
#[derive(Debug)]
pub struct TcpService {
    /// Qualified name.
    pub name: Arc<str>,
    /// Its servers.
    pub servers: Box<[TcpServer]>,
    /// Smooth weighted round robin over `servers`.
    pub balancer: SmoothWeighted,
    /// Passive-health settings.
    pub policy: drover_providers::policy::PassivePolicy,
    /// How servers are reached.
    pub transport: TcpTransport,
    /// Its active check, if any.
    pub check: Option<drover_providers::tcp::TcpCheckPolicy>,
}

impl TcpService {
    /// The next usable server not yet `tried`, and whether it is an ejected server's probe.
    /// When every server is out, any untried one (an ejection may be a false alarm).
    pub fn pick(&self, tried: Tried, now: tokio::time::Instant) -> Option<(usize, bool)> {
        let mut probe = false;
        let chosen = self.balancer.pick(|i| {
            if tried.contains(i) {
                return false;
            }
            match self.servers[i].health.admit(&self.policy, now) {
                Admission::Admit => true,
                Admission::Probe => {
                    probe = true;
                    true
                }
                Admission::Refuse => false,
            }
        });
        match chosen {
            Some(i) => Some((i, probe)),
            None => self.balancer.pick(|i| !tried.contains(i)).map(|i| (i, false)),
        }
    }

    /// Records a connect's outcome for server `i`.
    pub fn record(&self, i: usize, outcome: Outcome, probe: bool, now: tokio::time::Instant) {
        let Some(server) = self.servers.get(i) else { return };
        server.health.record(outcome, probe, &self.policy, now, || {
            let total = self.servers.len();
            let out = self.servers.iter().filter(|s| s.health.is_out()).count();
            out < (total * self.policy.max_ejection_percent as usize / 100).max(1)
        });
    }
}

/// A UDP load balancer: one server per client session.
#[derive(Debug)]
pub struct UdpService {
    /// Qualified name.
    pub name: Arc<str>,
    /// `host:port` of each server.
    pub servers: Box<[Arc<str>]>,
    /// Smooth weighted round robin over `servers`.
    pub balancer: SmoothWeighted,
    /// The counters of the router that uses it.
    pub stats: Arc<serve::L4Stats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(rule: &str, sni: Option<&str>, alpn: &[&str], client: &str) -> bool {
        let rule = drover_providers::rule::parse_tcp(rule).unwrap();
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        TcpNode::compile(&rule).unwrap().matches(&ConnectionView {
            sni,
            alpn: &alpn,
            client: Some(client.parse().unwrap()),
        })
    }

    #[test]
    fn rules_judge_server_name_alpn_and_client() {
        assert!(matches("HostSNI(`a.test`)", Some("a.test"), &[], "10.0.0.1"));
        assert!(!matches("HostSNI(`a.test`)", Some("b.test"), &[], "10.0.0.1"));
        assert!(!matches("HostSNI(`a.test`)", None, &[], "10.0.0.1"));
        assert!(matches("HostSNI(`*`)", None, &[], "10.0.0.1"));
        assert!(matches("HostSNI(`*.test`)", Some("x.test"), &[], "10.0.0.1"));
        assert!(!matches("HostSNI(`*.test`)", Some("y.x.test"), &[], "10.0.0.1"));
        assert!(!matches("HostSNI(`*.test`)", Some("test"), &[], "10.0.0.1"));
        assert!(matches("HostSNIRegexp(`^db-[0-9]+\\.test$`)", Some("db-12.test"), &[], "10.0.0.1"));
        assert!(matches(
            "HostSNI(`a.test`) && ALPN(`h2`)",
            Some("a.test"),
            &["http/1.1", "h2"],
            "10.0.0.1"
        ));
        assert!(!matches(
            "HostSNI(`a.test`) && ALPN(`h2`)",
            Some("a.test"),
            &["http/1.1"],
            "10.0.0.1"
        ));
        assert!(matches("HostSNI(`*`) && !ClientIP(`10.0.0.0/8`)", None, &[], "192.0.2.1"));
        assert!(!matches("HostSNI(`*`) && !ClientIP(`10.0.0.0/8`)", None, &[], "::ffff:10.1.1.1"));
    }
}
