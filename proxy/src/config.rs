//! The static configuration: entrypoints, the admin side, providers, timeouts. Read once at start;
//! changing it needs a restart (dynamic routes come from providers).
//!
//! Keys follow Traefik's static configuration where Traefik has one, so a `traefik.toml` needs
//! few edits. Unknown keys are errors with file, line and column: a misspelt timeout must not
//! silently fall back to a default.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use drover_providers::duration::ConfigDuration;
use drover_providers::toml_error;
use serde::Deserialize;
use toml::Spanned;

/// The whole static configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticConfig {
    /// Listening addresses by name.
    #[serde(default, alias = "entrypoints")]
    pub entry_points: BTreeMap<String, EntryPoint>,
    /// The admin side (`/ping`, API, dashboard, metrics).
    #[serde(default)]
    pub api: Api,
    /// Providers of dynamic configuration.
    #[serde(default)]
    pub providers: Providers,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// How drover talks to servers.
    #[serde(default, alias = "serverstransport")]
    pub servers_transport: ServersTransport,
    /// The access log (off unless present).
    #[serde(default, alias = "accesslog")]
    pub access_log: Option<crate::access_log::AccessLogConfig>,
    /// Zero-downtime upgrades.
    #[serde(default)]
    pub upgrade: Upgrade,
    /// ACME resolvers by name (`[certificatesResolvers.le.acme]`).
    #[serde(default, alias = "certificatesresolvers")]
    pub certificates_resolvers: BTreeMap<String, crate::acme::config::ResolverConfig>,
}

/// `[upgrade]` (drover's own; Traefik has none): where a new drover started with `--takeover`
/// finds the running one to take its listening sockets over.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    /// The Unix socket the running drover listens on for its successor (e.g.
    /// `/run/drover/upgrade.sock`); none: no takeover possible.
    #[serde(default)]
    pub socket: Option<std::path::PathBuf>,
}

/// One entrypoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryPoint {
    /// `":8080"`, `"127.0.0.1:8080"`, `"[::1]:8080"`.
    pub address: Spanned<String>,
    /// Timeouts and shutdown behaviour.
    #[serde(default)]
    pub transport: EntryPointTransport,
    /// Access-log and metrics defaults for its routers.
    #[serde(default)]
    pub observability: EntryPointObservability,
    /// Request hygiene for its HTTP requests.
    #[serde(default)]
    pub http: EntryPointHttp,
    /// Peers whose forwarding headers are kept.
    #[serde(default, alias = "forwardedheaders")]
    pub forwarded_headers: ForwardedHeaders,
    /// `proxyProtocol`: read a PROXY protocol header (v1 or v2) from these peers.
    #[serde(default, alias = "proxyprotocol")]
    pub proxy_protocol: Option<ForwardedHeaders>,
    /// `udp`: settings of a UDP entrypoint (`address = ":53/udp"`).
    #[serde(default)]
    pub udp: EntryPointUdp,
    /// `tcp` (drover): settings of TCP routers' connections on this entrypoint.
    #[serde(default)]
    pub tcp: EntryPointTcp,
}

/// `entryPoints.<name>.udp`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryPointUdp {
    /// How long a client's session lives without a datagram either way (Traefik: 3 s).
    #[serde(default = "udp_timeout")]
    pub timeout: ConfigDuration,
}

fn udp_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(3))
}

impl Default for EntryPointUdp {
    fn default() -> Self {
        Self { timeout: udp_timeout() }
    }
}

/// `entryPoints.<name>.tcp` (drover).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryPointTcp {
    /// End a TCP router's connection when no byte moved either way for this long (0: never,
    /// the default).
    #[serde(default, alias = "idletimeout")]
    pub idle_timeout: ConfigDuration,
    /// Move bytes between plain sockets with `splice(2)` (default true); false copies them
    /// through a buffer (for kernels or sandboxes without splice, and for comparison).
    #[serde(default = "yes")]
    pub splice: bool,
}

fn yes() -> bool {
    true
}

impl Default for EntryPointTcp {
    fn default() -> Self {
        Self {
            idle_timeout: ConfigDuration::default(),
            splice: true,
        }
    }
}

/// `entryPoints.<name>.forwardedHeaders` (Traefik's keys): from these peers, incoming
/// `X-Forwarded-*` and `X-Real-Ip` are kept and `X-Forwarded-For` appended to; from anyone
/// else they are dropped and rebuilt from the socket. `ClientIP` rules always match the socket
/// address.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardedHeaders {
    /// Addresses or CIDR ranges (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
    #[serde(default, rename = "trustedIPs", alias = "trustedips")]
    pub trusted_ips: Vec<Spanned<String>>,
    /// Trust every peer (only behind something that sets the headers itself).
    #[serde(default)]
    pub insecure: bool,
}

impl ForwardedHeaders {
    /// `text` as a range: a CIDR range, or one address.
    fn range(text: &str) -> Result<ipnet::IpNet, String> {
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))
    }

    /// What the entrypoint's connections check their peer against (ranges were validated by
    /// [`StaticConfig::parse`]).
    pub fn trusted(&self) -> crate::connection::TrustedProxies {
        crate::connection::TrustedProxies {
            insecure: self.insecure,
            ranges: self.trusted_ips.iter().filter_map(|t| Self::range(t.get_ref()).ok()).collect(),
        }
    }
}

/// `entryPoints.<name>.http`: how requests are checked before routing (Traefik's keys).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryPointHttp {
    /// Normalise paths before routing: dot segments removed, `//` merged, encoded unreserved
    /// characters decoded. Default true.
    #[serde(default = "defaults::yes", alias = "sanitizepath")]
    pub sanitize_path: bool,
    /// Encoded characters allowed in paths (all refused with 400 by default).
    #[serde(default, alias = "encodedcharacters")]
    pub encoded_characters: EncodedCharacters,
    /// `tls` (`options`, `certResolver`, `domains`): every router on this entrypoint is served
    /// on TLS, with these defaults where the router sets none.
    #[serde(default)]
    pub tls: Option<drover_providers::model::RouterTls>,
    /// `redirections.entryPoint`: every plain-HTTP request here is redirected to another
    /// entrypoint (HTTP → HTTPS).
    #[serde(default)]
    pub redirections: Option<Redirections>,
    /// Middlewares every router on this entrypoint runs before its own (`auth@file`; a name
    /// without `@` means the router's own provider).
    #[serde(default)]
    pub middlewares: Vec<String>,
}

impl Default for EntryPointHttp {
    fn default() -> Self {
        Self {
            sanitize_path: true,
            encoded_characters: EncodedCharacters::default(),
            tls: None,
            redirections: None,
            middlewares: Vec::new(),
        }
    }
}

/// `entryPoints.<name>.http.redirections` (Traefik's keys).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Redirections {
    /// Redirect to another entrypoint.
    #[serde(default, alias = "entrypoint")]
    pub entry_point: Option<EntryPointRedirection>,
}

/// `redirections.entryPoint`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryPointRedirection {
    /// The target entrypoint's name (its port goes into the `Location`).
    pub to: Spanned<String>,
    /// The scheme of the `Location` (default `https`).
    #[serde(default = "defaults::https")]
    pub scheme: String,
    /// 301/308 (default) rather than 302/307.
    #[serde(default = "defaults::yes")]
    pub permanent: bool,
    /// Traefik's priority of the generated router; drover redirects before routing, so it is
    /// accepted and has no effect.
    #[serde(default)]
    pub priority: Option<i64>,
}

impl EntryPointHttp {
    /// The policy its connections carry.
    pub fn path_policy(&self) -> crate::connection::PathPolicy {
        use crate::connection::Encoded;
        let c = &self.encoded_characters;
        let allowed = [
            (c.allow_encoded_slash, Encoded::SLASH),
            (c.allow_encoded_back_slash, Encoded::BACKSLASH),
            (c.allow_encoded_null_character, Encoded::NUL),
            (c.allow_encoded_semicolon, Encoded::SEMICOLON),
            (c.allow_encoded_percent, Encoded::PERCENT),
            (c.allow_encoded_question_mark, Encoded::QUESTION_MARK),
            (c.allow_encoded_hash, Encoded::HASH),
        ]
        .into_iter()
        .filter(|(allow, _)| *allow)
        .fold(0, |bits, (_, bit)| bits | bit);
        crate::connection::PathPolicy {
            sanitize: self.sanitize_path,
            allowed,
        }
    }
}

/// `entryPoints.<name>.http.encodedCharacters` (Traefik's keys): which encoded characters a path
/// may carry. Each is refused with 400 unless allowed, because servers disagree on whether to
/// decode them before or after routing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EncodedCharacters {
    /// `%2F` (`/`).
    #[serde(default, alias = "allowencodedslash")]
    pub allow_encoded_slash: bool,
    /// `%5C` (`\`).
    #[serde(default, alias = "allowencodedbackslash")]
    pub allow_encoded_back_slash: bool,
    /// `%00`.
    #[serde(default, alias = "allowencodednullcharacter")]
    pub allow_encoded_null_character: bool,
    /// `%3B` (`;`).
    #[serde(default, alias = "allowencodedsemicolon")]
    pub allow_encoded_semicolon: bool,
    /// `%25` (`%`).
    #[serde(default, alias = "allowencodedpercent")]
    pub allow_encoded_percent: bool,
    /// `%3F` (`?`).
    #[serde(default, alias = "allowencodedquestionmark")]
    pub allow_encoded_question_mark: bool,
    /// `%23` (`#`).
    #[serde(default, alias = "allowencodedhash")]
    pub allow_encoded_hash: bool,
}

/// `entryPoints.<name>.observability` (as Traefik v3.1+): whether requests on this entrypoint
/// are logged and counted. A router's own `observability` overrides each switch it sets;
/// requests no router matched follow these.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryPointObservability {
    /// Access-log lines (when `[accessLog]` is on). Default true.
    #[serde(default = "defaults::yes", alias = "accesslogs")]
    pub access_logs: bool,
    /// Request metrics. Default true.
    #[serde(default = "defaults::yes")]
    pub metrics: bool,
    /// Accepted for Traefik compatibility; drover has no tracing.
    #[serde(default)]
    pub tracing: Option<bool>,
    /// Accepted for Traefik compatibility; drover has no tracing.
    #[serde(default, alias = "traceverbosity")]
    pub trace_verbosity: Option<String>,
}

impl EntryPointObservability {
    /// What the entrypoint records by default.
    pub fn observe(&self) -> crate::snapshot::Observe {
        crate::snapshot::Observe {
            access_log: self.access_logs,
            metrics: self.metrics,
        }
    }
}

impl Default for EntryPointObservability {
    fn default() -> Self {
        Self {
            access_logs: true,
            metrics: true,
            tracing: None,
            trace_verbosity: None,
        }
    }
}

/// `entryPoints.<name>.transport`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntryPointTransport {
    /// Client-side timeouts.
    #[serde(default, alias = "respondingtimeouts")]
    pub responding_timeouts: RespondingTimeouts,
    /// Graceful shutdown.
    #[serde(default, alias = "lifecycle")]
    pub life_cycle: LifeCycle,
    /// Client connections open at once, across every worker; beyond it new connections wait in
    /// the kernel's listen backlog. 0 (the default) is no limit.
    #[serde(default, alias = "maxconnections")]
    pub max_connections: usize,
}

/// `respondingTimeouts`: deadlines on the client side.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RespondingTimeouts {
    /// Time a client has to send a complete request head (slowloris guard). The wait for the
    /// next request on an idle keep-alive connection counts too. Default 30 s.
    #[serde(default = "defaults::header_read", alias = "headerreadtimeout")]
    pub header_read_timeout: ConfigDuration,
    /// Keep-alive idleness between requests, and silence on an upgraded connection. Default
    /// 180 s.
    #[serde(default = "defaults::idle", alias = "idletimeout")]
    pub idle_timeout: ConfigDuration,
    /// Traefik's cap on reading a whole request, body included (408). Default none (Traefik: 60 s),
    /// since a whole-request cap cuts every upload longer than it; `bodyIdleTimeout` bounds slow
    /// bodies instead.
    #[serde(default, alias = "readtimeout")]
    pub read_timeout: ConfigDuration,
    /// Traefik's cap on a whole response, from the request's start (504 before the head, cut
    /// after). Default none.
    #[serde(default, alias = "writetimeout")]
    pub write_timeout: ConfigDuration,
}

impl Default for RespondingTimeouts {
    fn default() -> Self {
        Self {
            header_read_timeout: defaults::header_read(),
            idle_timeout: defaults::idle(),
            read_timeout: ConfigDuration::default(),
            write_timeout: ConfigDuration::default(),
        }
    }
}

/// `lifeCycle`: graceful shutdown.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LifeCycle {
    /// How long in-flight requests may take to finish after SIGTERM. Default 10 s.
    #[serde(default = "defaults::grace", alias = "gracetimeout")]
    pub grace_time_out: ConfigDuration,
}

impl Default for LifeCycle {
    fn default() -> Self {
        Self {
            grace_time_out: defaults::grace(),
        }
    }
}

/// `[api]`: the admin entrypoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Api {
    /// Where the admin side listens. Default `127.0.0.1:8081`; never a traffic entrypoint.
    #[serde(default = "defaults::api_address")]
    pub address: Spanned<String>,
    /// Users allowed on the admin side, as `user:bcrypt-hash` (`htpasswd -nB user`). Empty: no
    /// basic auth.
    #[serde(default, alias = "basicauth")]
    pub basic_auth: Vec<Secret>,
    /// A token accepted as `Authorization: Bearer <token>` on the admin side.
    #[serde(default, alias = "bearertoken")]
    pub bearer_token: Option<Secret>,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            address: defaults::api_address(),
            basic_auth: Vec::new(),
            bearer_token: None,
        }
    }
}

/// A configuration value that must never be shown: `Debug` prints `<redacted>`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the code that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[providers]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Providers {
    /// Coalescing window for configuration changes. Default 100 ms.
    #[serde(default = "defaults::throttle", alias = "providersthrottleduration")]
    pub providers_throttle_duration: ConfigDuration,
    /// The file provider.
    #[serde(default)]
    pub file: Option<FileProviderConfig>,
    /// The Marathon provider (apps and tasks with `drover.*` labels).
    #[serde(default)]
    pub marathon: Option<drover_providers::marathon::MarathonConfig>,
    /// The DNS provider (SRV and A/AAAA discovery).
    #[serde(default)]
    pub dns: Option<drover_providers::dns::DnsConfig>,
    /// The Docker provider (containers with `drover.*` labels).
    #[serde(default)]
    pub docker: Option<drover_providers::docker::DockerConfig>,
    /// The Swarm provider (services with `drover.*` labels).
    #[serde(default)]
    pub swarm: Option<drover_providers::docker::SwarmConfig>,
    /// The Consul catalog provider (instances with `drover.*` tags).
    #[serde(default, rename = "consulCatalog", alias = "consulcatalog")]
    pub consul_catalog: Option<drover_providers::consul::ConsulCatalogConfig>,
}

impl Default for Providers {
    fn default() -> Self {
        Self {
            providers_throttle_duration: defaults::throttle(),
            file: None,
            marathon: None,
            dns: None,
            docker: None,
            swarm: None,
            consul_catalog: None,
        }
    }
}

/// `[providers.file]`: the file provider's own settings type.
pub use drover_providers::file::FileConfig as FileProviderConfig;

/// `[log]` (Traefik's keys; how they are written: [`crate::logging`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `error`, `warn`, `info` (default), `debug`, `trace`. `RUST_LOG` overrides it.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    /// `common` (default) or `json` (one object per line).
    #[serde(default = "defaults::log_format")]
    pub format: String,
    /// Append the log to this file instead of writing it to standard error.
    #[serde(default, rename = "filePath", alias = "filepath")]
    pub file_path: Option<std::path::PathBuf>,
    /// No colour even on a terminal (there is never colour elsewhere).
    #[serde(default, rename = "noColor", alias = "nocolor")]
    pub no_color: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: defaults::log_level(),
            format: defaults::log_format(),
            file_path: None,
            no_color: false,
        }
    }
}

/// `[serversTransport]`: how drover talks to servers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServersTransport {
    /// Idle keep-alive connections kept per server. Default 200 (as Traefik).
    #[serde(default = "defaults::max_idle", alias = "maxidleconnsperhost")]
    pub max_idle_conns_per_host: usize,
    /// drover (named after Go's `Transport.MaxConnsPerHost`; Traefik's transport has no such
    /// key): requests in flight to one server, across all workers (busy connections over
    /// HTTP/1.1, streams over HTTP/2); more wait in drover's queue. Default 1024; 0 for no limit.
    #[serde(default = "defaults::max_conns", alias = "maxconnsperhost")]
    pub max_conns_per_host: usize,
    /// drover: how long a request over `maxConnsPerHost` waits for a slot before a 503.
    /// Default 30 s; 0 answers 503 at once.
    #[serde(default = "defaults::queue_timeout", alias = "queuetimeout")]
    pub queue_timeout: ConfigDuration,
    /// drover: requests that may wait for one server at once; more get a 503 at once.
    /// Default 10000.
    #[serde(default = "defaults::max_queued", alias = "maxqueued")]
    pub max_queued: usize,
    /// Upstream deadlines.
    #[serde(default, alias = "forwardingtimeouts")]
    pub forwarding_timeouts: ForwardingTimeouts,
    /// Accept any certificate from `https://` servers (not verified).
    #[serde(default, alias = "insecureskipverify")]
    pub insecure_skip_verify: bool,
    /// CA certificates (PEM files) to verify `https://` servers with instead of the bundled
    /// Mozilla roots.
    #[serde(default, rename = "rootCAs", alias = "rootcas")]
    pub root_cas: Vec<String>,
    /// drover: client certificates for servers that ask for one (mTLS).
    #[serde(default)]
    pub certificates: Vec<drover_providers::model::ClientCertificate>,
    /// drover: never speak HTTP/2 to TLS servers.
    #[serde(default, rename = "disableHTTP2", alias = "disablehttp2")]
    pub disable_http2: bool,
}

impl Default for ServersTransport {
    fn default() -> Self {
        Self {
            max_idle_conns_per_host: defaults::max_idle(),
            max_conns_per_host: defaults::max_conns(),
            queue_timeout: defaults::queue_timeout(),
            max_queued: defaults::max_queued(),
            forwarding_timeouts: ForwardingTimeouts::default(),
            insecure_skip_verify: false,
            root_cas: Vec::new(),
            certificates: Vec::new(),
            disable_http2: false,
        }
    }
}

/// `serversTransport.forwardingTimeouts`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardingTimeouts {
    /// Connecting to a server. Default 5 s.
    #[serde(default = "defaults::dial", alias = "dialtimeout")]
    pub dial_timeout: ConfigDuration,
    /// From the end of the request body (a body-less request: from sending it) to the response
    /// head. Default 60 s; 0 disables.
    #[serde(default = "defaults::response_header", alias = "responseheadertimeout")]
    pub response_header_timeout: ConfigDuration,
    /// A request body that moves no byte for this long is cut (408), and so is a response body
    /// (the client's connection ends without the body's end). Default 60 s; 0 disables.
    #[serde(default = "defaults::body_idle", alias = "bodyidletimeout")]
    pub body_idle_timeout: ConfigDuration,
    /// An idle pooled connection older than this is closed. Default 90 s.
    #[serde(default = "defaults::idle_conn", alias = "idleconntimeout")]
    pub idle_conn_timeout: ConfigDuration,
    /// HTTP/2: ping a server connection that received no frame for this long. Default 0 (never).
    #[serde(default, alias = "readidletimeout")]
    pub read_idle_timeout: ConfigDuration,
    /// HTTP/2: a ping unanswered for this long closes the connection. Default 15 s.
    #[serde(default = "defaults::ping", alias = "pingtimeout")]
    pub ping_timeout: ConfigDuration,
}

impl Default for ForwardingTimeouts {
    fn default() -> Self {
        Self {
            dial_timeout: defaults::dial(),
            response_header_timeout: defaults::response_header(),
            body_idle_timeout: defaults::body_idle(),
            idle_conn_timeout: defaults::idle_conn(),
            read_idle_timeout: ConfigDuration::default(),
            ping_timeout: defaults::ping(),
        }
    }
}

mod defaults {
    use super::*;

    pub fn header_read() -> ConfigDuration {
        Duration::from_secs(30).into()
    }
    pub fn idle() -> ConfigDuration {
        Duration::from_secs(180).into()
    }
    pub fn grace() -> ConfigDuration {
        Duration::from_secs(10).into()
    }
    pub fn throttle() -> ConfigDuration {
        Duration::from_millis(100).into()
    }
    pub fn dial() -> ConfigDuration {
        Duration::from_secs(5).into()
    }
    pub fn response_header() -> ConfigDuration {
        Duration::from_secs(60).into()
    }
    pub fn body_idle() -> ConfigDuration {
        Duration::from_secs(60).into()
    }
    pub fn idle_conn() -> ConfigDuration {
        Duration::from_secs(90).into()
    }
    pub fn ping() -> ConfigDuration {
        Duration::from_secs(15).into()
    }
    pub fn max_idle() -> usize {
        200
    }
    pub fn max_conns() -> usize {
        crate::upstream::Limits::default().max_conns
    }
    pub fn queue_timeout() -> ConfigDuration {
        crate::upstream::Limits::default().queue_timeout.into()
    }
    pub fn max_queued() -> usize {
        crate::upstream::Limits::default().max_queued
    }
    pub fn yes() -> bool {
        true
    }
    pub fn https() -> String {
        "https".into()
    }
    pub fn log_level() -> String {
        "info".into()
    }
    pub fn log_format() -> String {
        "common".into()
    }
    pub fn api_address() -> Spanned<String> {
        Spanned::new(0..0, "127.0.0.1:8081".into())
    }
}

/// A static configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The configuration used when drover starts with none: entrypoint `web` on :8080, the admin side
/// on 127.0.0.1:8081, no provider.
pub const EMBEDDED_DEFAULT: &str = "[entryPoints.web]\naddress = \":8080\"\n\n[api]\naddress = \"127.0.0.1:8081\"\n";

/// A configuration ready to run: addresses resolved and checked.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The configuration as read.
    pub config: StaticConfig,
    /// TCP entrypoints in name order, with their socket addresses.
    pub entry_points: Vec<(String, SocketAddr)>,
    /// UDP entrypoints (`":53/udp"`) in name order.
    pub udp_entry_points: Vec<(String, SocketAddr)>,
    /// The admin address.
    pub api: SocketAddr,
}

impl StaticConfig {
    /// Reads and checks a static configuration file.
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(path, &text)
    }

    /// Parses and checks static configuration text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Resolved, ConfigError> {
        let config: StaticConfig = toml::from_str(text).map_err(|e| ConfigError(toml_error::describe(path, text, &e)))?;
        let at = |spanned: &Spanned<String>, key: &str, why: String| {
            let (line, column) = toml_error::line_column(text, spanned.span().start);
            ConfigError(format!("{}:{line}:{column}: {key}: {why}", path.display()))
        };
        if config.entry_points.is_empty() {
            return Err(ConfigError(format!(
                "{}: no entrypoint: add e.g. [entryPoints.web] address = \":8080\"",
                path.display()
            )));
        }
        let mut entry_points = Vec::new();
        let mut udp_entry_points = Vec::new();
        for (name, ep) in &config.entry_points {
            let text = ep.address.get_ref();
            let (text, udp) = match text.rsplit_once('/') {
                Some((addr, "udp")) => (addr, true),
                Some((addr, "tcp")) => (addr, false),
                Some((_, other)) => {
                    return Err(at(
                        &ep.address,
                        &format!("entryPoints.{name}.address"),
                        format!("unknown protocol `/{other}`; write `:53/udp` or `:80` (TCP)"),
                    ))
                }
                None => (text.as_str(), false),
            };
            let addr = parse_address(text).map_err(|why| at(&ep.address, &format!("entryPoints.{name}.address"), why))?;
            for (i, range) in ep.forwarded_headers.trusted_ips.iter().enumerate() {
                ForwardedHeaders::range(range.get_ref())
                    .map_err(|why| at(range, &format!("entryPoints.{name}.forwardedHeaders.trustedIPs[{i}]"), why))?;
            }
            for (i, range) in ep.proxy_protocol.iter().flat_map(|p| p.trusted_ips.iter()).enumerate() {
                ForwardedHeaders::range(range.get_ref())
                    .map_err(|why| at(range, &format!("entryPoints.{name}.proxyProtocol.trustedIPs[{i}]"), why))?;
            }
            if udp {
                udp_entry_points.push((name.clone(), addr));
            } else {
                entry_points.push((name.clone(), addr));
            }
        }
        for (name, ep) in &config.entry_points {
            if let Some(to) = ep.http.redirections.as_ref().and_then(|r| r.entry_point.as_ref()).map(|r| &r.to) {
                if !config.entry_points.contains_key(to.get_ref()) || to.get_ref() == name {
                    return Err(at(
                        to,
                        &format!("entryPoints.{name}.http.redirections.entryPoint.to"),
                        format!(
                            "`{}` is not another entrypoint (known: {})",
                            to.get_ref(),
                            config.entry_points.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        let api = parse_address(config.api.address.get_ref()).map_err(|why| at(&config.api.address, "api.address", why))?;
        crate::admin::auth::check(&config.api).map_err(|why| ConfigError(format!("{}: {why}", path.display())))?;
        for (i, (name, addr)) in entry_points.iter().enumerate() {
            let clash = |other: &SocketAddr| other == addr && addr.port() != 0;
            if clash(&api) || entry_points[..i].iter().any(|(_, other)| clash(other)) {
                return Err(ConfigError(format!(
                    "{}: entrypoint `{name}` ({addr}) shares its address with another listener",
                    path.display()
                )));
            }
        }
        if let Some(file) = &config.providers.file {
            if file.filename.is_some() == file.directory.is_some() {
                return Err(ConfigError(format!(
                    "{}: [providers.file] needs exactly one of `filename` or `directory`",
                    path.display()
                )));
            }
        }
        if let Some(docker) = &config.providers.docker {
            docker
                .check()
                .map_err(|why| ConfigError(format!("{}: [providers.docker] {why}", path.display())))?;
        }
        if let Some(swarm) = &config.providers.swarm {
            swarm
                .check()
                .map_err(|why| ConfigError(format!("{}: [providers.swarm] {why}", path.display())))?;
        }
        if let Some(dns) = &config.providers.dns {
            dns.validate().map_err(|why| ConfigError(format!("{}: {why}", path.display())))?;
        }
        if let Some(consul) = &config.providers.consul_catalog {
            consul.validate().map_err(|why| ConfigError(format!("{}: {why}", path.display())))?;
        }
        if let Some(marathon) = &config.providers.marathon {
            marathon
                .validate()
                .map_err(|why| ConfigError(format!("{}: [providers.marathon] {why}", path.display())))?;
        }
        if !matches!(
            config.log.level.to_ascii_lowercase().as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(ConfigError(format!(
                "{}: log.level `{}` must be one of error, warn, info, debug, trace",
                path.display(),
                config.log.level
            )));
        }
        let names: Vec<&str> = config.entry_points.keys().map(String::as_str).collect();
        for (name, resolver) in &config.certificates_resolvers {
            resolver
                .acme
                .check(name, &names)
                .map_err(|why| ConfigError(format!("{}: {why}", path.display())))?;
            crate::acme::store::Storage::new(resolver.acme.storage.clone())
                .check_mode()
                .map_err(|why| ConfigError(format!("{}: certificatesResolvers.{name}.acme.storage: {why}", path.display())))?;
        }
        crate::logging::Format::parse(&config.log.format).map_err(|why| ConfigError(format!("{}: {why}", path.display())))?;
        Ok(Resolved {
            config,
            entry_points,
            udp_entry_points,
            api,
        })
    }

    /// The embedded default configuration.
    pub fn embedded() -> Resolved {
        Self::parse(Path::new("<embedded default>"), EMBEDDED_DEFAULT).expect("the embedded default configuration is valid")
    }
}

/// `":8080"` (all interfaces), `"127.0.0.1:80"`, `"[::1]:80"`, `"localhost:80"`.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{text}`: the port must be a number from 0 to 65535"))?;
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{text}`: the port must be a number from 0 to 65535"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "`{text}` is not an address; write `:8080`, `127.0.0.1:8080` or `[::1]:8080`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoint_request_hygiene_and_trusted_proxies_are_read_and_checked() {
        let text = "[entryPoints.web]\naddress = \":80\"\n[entryPoints.web.http]\nsanitizePath = false\n[entryPoints.web.http.encodedCharacters]\nallowEncodedSlash = true\nallowEncodedHash = true\n[entryPoints.web.forwardedHeaders]\ntrustedIPs = [\"10.0.0.0/8\", \"192.0.2.7\"]\n";
        let r = StaticConfig::parse(Path::new("s.toml"), text).expect("valid");
        let ep = &r.config.entry_points["web"];
        let policy = ep.http.path_policy();
        assert!(!policy.sanitize);
        assert_eq!(policy.allowed, crate::connection::Encoded::SLASH | crate::connection::Encoded::HASH);
        let trusted = ep.forwarded_headers.trusted();
        assert!(trusted.trusts("10.1.2.3".parse().unwrap()));
        assert!(
            trusted.trusts("::ffff:192.0.2.7".parse().unwrap()),
            "IPv4-mapped peers match IPv4 ranges"
        );
        assert!(!trusted.trusts("192.0.2.8".parse().unwrap()));
        let bad = text.replace("192.0.2.7", "192.0.2.300");
        let err = StaticConfig::parse(Path::new("s.toml"), &bad).unwrap_err().to_string();
        assert!(
            err.contains("s.toml:9:29:") && err.contains("trustedIPs[1]") && err.contains("192.0.2.300"),
            "{err}"
        );
    }

    #[test]
    fn embedded_default_listens_on_8080_and_admin_on_loopback() {
        let r = StaticConfig::embedded();
        assert_eq!(r.entry_points[0].0, "web");
        assert_eq!(r.entry_points[0].1.port(), 8080);
        assert_eq!(r.api, "127.0.0.1:8081".parse().unwrap());
    }

    #[test]
    fn the_admin_side_may_not_share_an_entrypoints_address() {
        let err = StaticConfig::parse(
            Path::new("s.toml"),
            "[entryPoints.web]\naddress = \"127.0.0.1:8080\"\n[api]\naddress = \"127.0.0.1:8080\"\n",
        )
        .unwrap_err()
        .0;
        assert!(err.contains("`web`") && err.contains("127.0.0.1:8080"), "{err}");
        let err = StaticConfig::parse(
            Path::new("s.toml"),
            "[entryPoints.a]\naddress = \":9000\"\n[entryPoints.b]\naddress = \":9000\"\n",
        )
        .unwrap_err()
        .0;
        assert!(err.contains(":9000"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let err = StaticConfig::parse(Path::new("s.toml"), "[entryPoints.web]\naddress = \":80x\"\n")
            .unwrap_err()
            .0;
        assert!(err.starts_with("s.toml:2:11: entryPoints.web.address:"), "{err}");
        let err = StaticConfig::parse(Path::new("s.toml"), "[entryPoints.web]\naddress = \":80\"\n[log]\nlevle = \"x\"\n")
            .unwrap_err()
            .0;
        assert!(err.starts_with("s.toml:4:1:") && err.contains("levle"), "{err}");
        let err = StaticConfig::parse(
            Path::new("s.toml"),
            "[entryPoints.web]\naddress = \":80\"\n[providers.file]\nwatch = true\n",
        )
        .unwrap_err()
        .0;
        assert!(err.contains("exactly one of"), "{err}");
    }

    #[test]
    fn durations_and_traefik_keys() {
        let text = "[entryPoints.web]\naddress = \"127.0.0.1:0\"\n[entryPoints.web.transport.respondingTimeouts]\nidleTimeout = \"5s\"\n[serversTransport.forwardingTimeouts]\ndialTimeout = 2\n";
        let r = StaticConfig::parse(Path::new("s.toml"), text).unwrap();
        assert_eq!(
            r.config.entry_points["web"].transport.responding_timeouts.idle_timeout.0,
            Duration::from_secs(5)
        );
        assert_eq!(
            r.config.servers_transport.forwarding_timeouts.dial_timeout.0,
            Duration::from_secs(2)
        );
        assert_eq!(r.config.entry_points["web"].transport.max_connections, 0, "no limit unless set");
        let limited = StaticConfig::parse(
            Path::new("s.toml"),
            "[entryPoints.web]\naddress = \":80\"\n[entryPoints.web.transport]\nmaxConnections = 2\n",
        )
        .unwrap();
        assert_eq!(limited.config.entry_points["web"].transport.max_connections, 2);
    }
}
