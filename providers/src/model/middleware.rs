//! `[http.middlewares.<name>.<type>]`: Traefik v3's HTTP middlewares, with its keys and defaults.
//!
//! One struct per middleware type, all filled by the same serde derive from TOML, YAML and labels
//! (every camelCase key has an all-lowercase alias, as labels are read lower-cased). A
//! [`Middleware`] holds exactly one type; which one is checked when the configuration is merged
//! (see [`Middleware::kind`]). Types Traefik has and drover does not yet are accepted here and
//! reported by the merge, so a router that relies on one is disabled rather than run without it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::Ignored;
use crate::duration::ConfigDuration;

/// One named middleware: exactly one of its fields is set.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Middleware {
    /// `addPrefix`.
    #[serde(default, alias = "addprefix", skip_serializing_if = "Option::is_none")]
    pub add_prefix: Option<AddPrefix>,
    /// `stripPrefix`.
    #[serde(default, alias = "stripprefix", skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<StripPrefix>,
    /// `stripPrefixRegex`.
    #[serde(default, alias = "stripprefixregex", skip_serializing_if = "Option::is_none")]
    pub strip_prefix_regex: Option<StripPrefixRegex>,
    /// `replacePath`.
    #[serde(default, alias = "replacepath", skip_serializing_if = "Option::is_none")]
    pub replace_path: Option<ReplacePath>,
    /// `replacePathRegex`.
    #[serde(default, alias = "replacepathregex", skip_serializing_if = "Option::is_none")]
    pub replace_path_regex: Option<ReplacePathRegex>,
    /// `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// `redirectScheme`.
    #[serde(default, alias = "redirectscheme", skip_serializing_if = "Option::is_none")]
    pub redirect_scheme: Option<RedirectScheme>,
    /// `redirectRegex`.
    #[serde(default, alias = "redirectregex", skip_serializing_if = "Option::is_none")]
    pub redirect_regex: Option<RedirectRegex>,
    /// `basicAuth`.
    #[serde(default, alias = "basicauth", skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `ipAllowList` (`ipWhiteList` is Traefik's deprecated name for it).
    #[serde(
        default,
        rename = "ipAllowList",
        alias = "ipallowlist",
        alias = "ipWhiteList",
        alias = "ipwhitelist",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_allow_list: Option<IpAllowList>,
    /// `rateLimit`.
    #[serde(default, alias = "ratelimit", skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `inFlightReq`.
    #[serde(default, alias = "inflightreq", skip_serializing_if = "Option::is_none")]
    pub in_flight_req: Option<InFlightReq>,
    /// `chain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
    /// `buffering`.
    #[serde(default, deserialize_with = "flag_or_map", skip_serializing_if = "Option::is_none")]
    pub buffering: Option<Buffering>,
    /// `circuitBreaker`.
    #[serde(default, alias = "circuitbreaker", skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// `compress` (`compress=true` as a label: every default).
    #[serde(default, deserialize_with = "flag_or_map", skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// `contentType` (not implemented yet).
    #[serde(default, alias = "contenttype", skip_serializing)]
    pub content_type: Option<Ignored>,
    /// `digestAuth` (not implemented yet).
    #[serde(default, alias = "digestauth", skip_serializing)]
    pub digest_auth: Option<Ignored>,
    /// `errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Errors>,
    /// `forwardAuth`.
    #[serde(default, alias = "forwardauth", skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<ForwardAuth>,
    /// `grpcWeb` (not implemented yet).
    #[serde(default, alias = "grpcweb", skip_serializing)]
    pub grpc_web: Option<Ignored>,
    /// `passTLSClientCert` (not implemented yet).
    #[serde(default, rename = "passTLSClientCert", alias = "passtlsclientcert", skip_serializing)]
    pub pass_tls_client_cert: Option<Ignored>,
    /// `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// `plugin` (drover has no plugins).
    #[serde(default, skip_serializing)]
    pub plugin: Option<Ignored>,
}

/// Which type a [`Middleware`] is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind<'a> {
    /// `addPrefix`.
    AddPrefix(&'a AddPrefix),
    /// `stripPrefix`.
    StripPrefix(&'a StripPrefix),
    /// `stripPrefixRegex`.
    StripPrefixRegex(&'a StripPrefixRegex),
    /// `replacePath`.
    ReplacePath(&'a ReplacePath),
    /// `replacePathRegex`.
    ReplacePathRegex(&'a ReplacePathRegex),
    /// `headers`.
    Headers(&'a Headers),
    /// `redirectScheme`.
    RedirectScheme(&'a RedirectScheme),
    /// `redirectRegex`.
    RedirectRegex(&'a RedirectRegex),
    /// `basicAuth`.
    BasicAuth(&'a BasicAuth),
    /// `ipAllowList`.
    IpAllowList(&'a IpAllowList),
    /// `rateLimit`.
    RateLimit(&'a RateLimit),
    /// `inFlightReq`.
    InFlightReq(&'a InFlightReq),
    /// `chain`.
    Chain(&'a Chain),
    /// `forwardAuth`.
    ForwardAuth(&'a ForwardAuth),
    /// `circuitBreaker`.
    CircuitBreaker(&'a CircuitBreaker),
    /// `compress`.
    Compress(&'a Compress),
    /// `retry`.
    Retry(&'a Retry),
    /// `errors`.
    Errors(&'a Errors),
    /// `buffering`.
    Buffering(&'a Buffering),
    /// A Traefik type drover does not implement yet (its Traefik name).
    Unsupported(&'static str),
}

impl Kind<'_> {
    /// The type's name as Traefik's API writes it (lower case).
    pub fn api_name(&self) -> &'static str {
        match self {
            Kind::AddPrefix(_) => "addprefix",
            Kind::StripPrefix(_) => "stripprefix",
            Kind::StripPrefixRegex(_) => "stripprefixregex",
            Kind::ReplacePath(_) => "replacepath",
            Kind::ReplacePathRegex(_) => "replacepathregex",
            Kind::Headers(_) => "headers",
            Kind::RedirectScheme(_) => "redirectscheme",
            Kind::RedirectRegex(_) => "redirectregex",
            Kind::BasicAuth(_) => "basicauth",
            Kind::IpAllowList(_) => "ipallowlist",
            Kind::RateLimit(_) => "ratelimit",
            Kind::InFlightReq(_) => "inflightreq",
            Kind::Chain(_) => "chain",
            Kind::ForwardAuth(_) => "forwardauth",
            Kind::CircuitBreaker(_) => "circuitbreaker",
            Kind::Compress(_) => "compress",
            Kind::Retry(_) => "retry",
            Kind::Errors(_) => "errors",
            Kind::Buffering(_) => "buffering",
            Kind::Unsupported(name) => name,
        }
    }
}

impl Middleware {
    /// The Traefik names of the types present that drover does not implement yet.
    pub fn unsupported(&self) -> Vec<&'static str> {
        [
            (self.content_type.is_some(), "contentType"),
            (self.digest_auth.is_some(), "digestAuth"),
            (self.grpc_web.is_some(), "grpcWeb"),
            (self.pass_tls_client_cert.is_some(), "passTLSClientCert"),
            (self.plugin.is_some(), "plugin"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }

    /// The one type this middleware is, or why it is not exactly one.
    pub fn kind(&self) -> Result<Kind<'_>, String> {
        let mut found: Vec<Kind<'_>> = Vec::new();
        macro_rules! take {
            ($($field:ident => $variant:ident),*) => {$(
                if let Some(m) = &self.$field {
                    found.push(Kind::$variant(m));
                }
            )*};
        }
        take!(
            add_prefix => AddPrefix,
            strip_prefix => StripPrefix,
            strip_prefix_regex => StripPrefixRegex,
            replace_path => ReplacePath,
            replace_path_regex => ReplacePathRegex,
            headers => Headers,
            redirect_scheme => RedirectScheme,
            redirect_regex => RedirectRegex,
            basic_auth => BasicAuth,
            ip_allow_list => IpAllowList,
            rate_limit => RateLimit,
            in_flight_req => InFlightReq,
            chain => Chain,
            forward_auth => ForwardAuth,
            circuit_breaker => CircuitBreaker,
            compress => Compress,
            retry => Retry,
            errors => Errors,
            buffering => Buffering
        );
        found.extend(self.unsupported().into_iter().map(Kind::Unsupported));
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err("no middleware type is set (e.g. `stripPrefix`, `headers`)".into()),
            many => Err(format!(
                "one middleware has one type, found {}",
                many.iter().map(Kind::api_name).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// `addPrefix`: <https://doc.traefik.io/traefik/middlewares/http/addprefix/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddPrefix {
    /// Prepended to the path; starts with `/`.
    #[serde(default)]
    pub prefix: String,
}

/// `stripPrefix`: <https://doc.traefik.io/traefik/middlewares/http/stripprefix/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StripPrefix {
    /// Prefixes tried in order; the first that matches is removed.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Deprecated in Traefik v2 and without effect in v3 (accepted).
    #[serde(default, alias = "forceslash", skip_serializing_if = "Option::is_none")]
    pub force_slash: Option<bool>,
}

/// `stripPrefixRegex`: <https://doc.traefik.io/traefik/middlewares/http/stripprefixregex/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StripPrefixRegex {
    /// Regular expressions matched at the start of the path; the first match is removed.
    #[serde(default)]
    pub regex: Vec<String>,
}

/// `replacePath`: <https://doc.traefik.io/traefik/middlewares/http/replacepath/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplacePath {
    /// The new path.
    #[serde(default)]
    pub path: String,
}

/// `replacePathRegex`: <https://doc.traefik.io/traefik/middlewares/http/replacepathregex/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplacePathRegex {
    /// Matched against the path.
    #[serde(default)]
    pub regex: String,
    /// The new path, with `$1` / `${name}` groups.
    #[serde(default)]
    pub replacement: String,
}

/// `redirectScheme`: <https://doc.traefik.io/traefik/middlewares/http/redirectscheme/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedirectScheme {
    /// The scheme to redirect to (required).
    #[serde(default)]
    pub scheme: String,
    /// The port (a string in Traefik; a number is accepted too).
    #[serde(default, deserialize_with = "string_or_number", skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// 301/308 rather than 302/307.
    #[serde(default)]
    pub permanent: bool,
}

/// `redirectRegex`: <https://doc.traefik.io/traefik/middlewares/http/redirectregex/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedirectRegex {
    /// Matched against the full request URL (`http://host/path?query`).
    #[serde(default)]
    pub regex: String,
    /// The location, with `${1}` groups.
    #[serde(default)]
    pub replacement: String,
    /// 301/308 rather than 302/307.
    #[serde(default)]
    pub permanent: bool,
}

/// `basicAuth`: <https://doc.traefik.io/traefik/middlewares/http/basicauth/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    /// `user:hash` entries (htpasswd lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// A file of htpasswd lines, read when the configuration is merged.
    #[serde(default, alias = "usersfile", skip_serializing_if = "Option::is_none")]
    pub users_file: Option<String>,
    /// The realm of the challenge (default `traefik`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Forward the authenticated user name in this header.
    #[serde(default, alias = "headerfield", skip_serializing_if = "Option::is_none")]
    pub header_field: Option<String>,
    /// Remove `Authorization` before forwarding.
    #[serde(default, alias = "removeheader")]
    pub remove_header: bool,
}

/// `ipStrategy`: which address of the request is the client's.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpStrategy {
    /// Take the address `depth` entries from the right of `X-Forwarded-For` (0: the peer).
    #[serde(default)]
    pub depth: u32,
    /// Skip these addresses walking `X-Forwarded-For` from the right (ignored with `depth`).
    #[serde(default, rename = "excludedIPs", alias = "excludedips", skip_serializing_if = "Vec::is_empty")]
    pub excluded_ips: Vec<String>,
    /// `ipv6Subnet`: group IPv6 clients by this prefix length.
    #[serde(default, alias = "ipv6subnet", skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<u8>,
}

/// `ipAllowList`: <https://doc.traefik.io/traefik/middlewares/http/ipallowlist/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpAllowList {
    /// Allowed addresses and CIDR ranges.
    #[serde(default, alias = "sourcerange")]
    pub source_range: Vec<String>,
    /// How the client address is found.
    #[serde(default, alias = "ipstrategy", skip_serializing_if = "Option::is_none")]
    pub ip_strategy: Option<IpStrategy>,
    /// The status of a refusal (default 403).
    #[serde(default, alias = "rejectstatuscode", skip_serializing_if = "Option::is_none")]
    pub reject_status_code: Option<u16>,
}

/// `sourceCriterion`: what requests are counted together.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceCriterion {
    /// The client address, found this way.
    #[serde(default, alias = "ipstrategy", skip_serializing_if = "Option::is_none")]
    pub ip_strategy: Option<IpStrategy>,
    /// The value of this request header.
    #[serde(default, alias = "requestheadername", skip_serializing_if = "Option::is_none")]
    pub request_header_name: Option<String>,
    /// The request's host.
    #[serde(default, alias = "requesthost")]
    pub request_host: bool,
}

/// `rateLimit`: <https://doc.traefik.io/traefik/middlewares/http/ratelimit/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests per `period` on average; 0 (the default) does not limit.
    #[serde(default)]
    pub average: u64,
    /// The period of `average` (default 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<ConfigDuration>,
    /// Requests allowed at once above the average (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// What is limited together (default: the client address).
    #[serde(default, alias = "sourcecriterion", skip_serializing_if = "Option::is_none")]
    pub source_criterion: Option<SourceCriterion>,
}

/// `inFlightReq`: <https://doc.traefik.io/traefik/middlewares/http/inflightreq/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InFlightReq {
    /// Requests in flight allowed per source.
    #[serde(default)]
    pub amount: u64,
    /// What is counted together (default: the client address).
    #[serde(default, alias = "sourcecriterion", skip_serializing_if = "Option::is_none")]
    pub source_criterion: Option<SourceCriterion>,
}

/// `forwardAuth`: <https://doc.traefik.io/traefik/middlewares/http/forwardauth/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardAuth {
    /// The authentication server's URL (`http://auth:9000/verify`).
    #[serde(default)]
    pub address: String,
    /// TLS to an `https://` authentication server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Keep the `X-Forwarded-*` headers a trusted peer sent (`forwardedHeaders.trustedIPs`)
    /// instead of drover's own.
    #[serde(default, alias = "trustforwardheader")]
    pub trust_forward_header: bool,
    /// Headers copied from the server's answer into the forwarded request (replacing the
    /// client's own of the same name).
    #[serde(default, alias = "authresponseheaders", skip_serializing_if = "Vec::is_empty")]
    pub auth_response_headers: Vec<String>,
    /// Headers matching this regex are copied likewise.
    #[serde(default, alias = "authresponseheadersregex", skip_serializing_if = "Option::is_none")]
    pub auth_response_headers_regex: Option<String>,
    /// Only these request headers are sent to the server (empty: all).
    #[serde(default, alias = "authrequestheaders", skip_serializing_if = "Vec::is_empty")]
    pub auth_request_headers: Vec<String>,
    /// Cookies (by name) set by the server that are added to the client's response.
    #[serde(default, alias = "addauthcookiestoresponse", skip_serializing_if = "Vec::is_empty")]
    pub add_auth_cookies_to_response: Vec<String>,
    /// Traefik's `headerField` (the user for its access log; accepted, not used).
    #[serde(default, alias = "headerfield", skip_serializing_if = "Option::is_none")]
    pub header_field: Option<String>,
    /// Send the request body to the server too (it is read whole first, then sent on).
    #[serde(default, alias = "forwardbody")]
    pub forward_body: bool,
    /// With `forwardBody`: a longer body is refused with 401 (-1, the default: no limit).
    #[serde(default, alias = "maxbodysize", skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<i64>,
    /// Pass a relative `Location` of a refusal as it is, rather than on the server's origin.
    #[serde(default, alias = "preservelocationheader")]
    pub preserve_location_header: bool,
    /// Ask with the request's method rather than GET.
    #[serde(default, alias = "preserverequestmethod")]
    pub preserve_request_method: bool,
}

/// Traefik's `ClientTLS` (forwardAuth's `tls`): how drover verifies the server and which
/// certificate it presents.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTls {
    /// CA certificates the server is verified against (a PEM file or inline PEM) instead of the
    /// bundled Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// A client certificate (chain, leaf first) for servers that ask for one; needs `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The client certificate's private key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::transport::redact_inline_option"
    )]
    pub key: Option<String>,
    /// Do not verify the server's certificate.
    #[serde(default, alias = "insecureskipverify")]
    pub insecure_skip_verify: bool,
    /// Deprecated in Traefik (a server-side setting): accepted and ignored, with a warning.
    #[serde(default, alias = "caoptional", skip_serializing_if = "Option::is_none")]
    pub ca_optional: Option<bool>,
}

/// `circuitBreaker`: <https://doc.traefik.io/traefik/middlewares/http/circuitbreaker/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// When to trip: `NetworkErrorRatio() > 0.5`, `ResponseCodeRatio(500, 600, 0, 600) > 0.25`,
    /// `LatencyAtQuantileMS(50.0) > 100`, combined with `&&` and `||`.
    #[serde(default)]
    pub expression: String,
    /// How often the expression is checked (default 100 ms).
    #[serde(default, alias = "checkperiod", skip_serializing_if = "Option::is_none")]
    pub check_period: Option<ConfigDuration>,
    /// How long it stays open once tripped (default 10 s).
    #[serde(default, alias = "fallbackduration", skip_serializing_if = "Option::is_none")]
    pub fallback_duration: Option<ConfigDuration>,
    /// How long traffic ramps back up after that (default 10 s).
    #[serde(default, alias = "recoveryduration", skip_serializing_if = "Option::is_none")]
    pub recovery_duration: Option<ConfigDuration>,
    /// The status answered while open (default 503).
    #[serde(default, alias = "responsecode", skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
}

/// `compress`: <https://doc.traefik.io/traefik/middlewares/http/compress/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Compress {
    /// Responses of these media types are not compressed (exclusive with `includedContentTypes`).
    #[serde(default, alias = "excludedcontenttypes", skip_serializing_if = "Vec::is_empty")]
    pub excluded_content_types: Vec<String>,
    /// Only responses of these media types are compressed.
    #[serde(default, alias = "includedcontenttypes", skip_serializing_if = "Vec::is_empty")]
    pub included_content_types: Vec<String>,
    /// Responses whose `Content-Length` is below this are sent as they are (default 1024); a
    /// body of unknown length is compressed whatever its size, as in Traefik.
    #[serde(default, alias = "minresponsebodybytes", skip_serializing_if = "Option::is_none")]
    pub min_response_body_bytes: Option<u64>,
    /// The encoding used when the request has no `Accept-Encoding` or accepts `*`.
    #[serde(default, alias = "defaultencoding", skip_serializing_if = "Option::is_none")]
    pub default_encoding: Option<String>,
    /// Encodings offered, most preferred first (default `gzip, br, zstd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encodings: Vec<String>,
}

/// `retry`: <https://doc.traefik.io/traefik/middlewares/http/retry/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// How many times the request is tried in all (required).
    #[serde(default)]
    pub attempts: u32,
    /// The first wait of the exponential backoff (default 0: no wait); waits grow to twice it.
    #[serde(default, alias = "initialinterval", skip_serializing_if = "Option::is_none")]
    pub initial_interval: Option<ConfigDuration>,
    /// How long the middleware may keep retrying, from the request's start (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ConfigDuration>,
    /// The largest request body kept to be sent again (default 2 MB; -1: no limit); a larger
    /// body is refused with 413.
    #[serde(default, alias = "maxrequestbodybytes", skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<i64>,
    /// Response statuses that are retried too (`"500-599"`, `"503"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<String>,
    /// Do not retry when no response came from a server (then `status` is required).
    #[serde(default, alias = "disableretryonnetworkerror")]
    pub disable_retry_on_network_error: bool,
    /// Retry `POST`, `PATCH`, `LOCK` too.
    #[serde(default, alias = "retrynonidempotentmethod")]
    pub retry_non_idempotent_method: bool,
}

/// `errors`: <https://doc.traefik.io/traefik/middlewares/http/errorpages/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Errors {
    /// Statuses that are answered with the error page (`"500-599"`, `"404"`).
    #[serde(default)]
    pub status: Vec<String>,
    /// The HTTP service that serves the pages (`name` or `name@provider`).
    #[serde(default)]
    pub service: String,
    /// The page's path and query; `{status}`, `{originalStatus}` and `{url}` are replaced
    /// (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Statuses (or ranges) answered with another status (`"418" = 404`).
    #[serde(default, alias = "statusrewrites", skip_serializing_if = "BTreeMap::is_empty")]
    pub status_rewrites: BTreeMap<String, u16>,
}

/// `buffering`: <https://doc.traefik.io/traefik/middlewares/http/buffering/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Buffering {
    /// A request body larger than this is refused with 413 (0: no limit).
    #[serde(default, alias = "maxrequestbodybytes")]
    pub max_request_body_bytes: i64,
    /// Request bytes kept in memory; the rest goes to a temporary file (default 1 MiB).
    #[serde(default, alias = "memrequestbodybytes", skip_serializing_if = "Option::is_none")]
    pub mem_request_body_bytes: Option<i64>,
    /// A response body larger than this is answered 500 instead (0: no limit).
    #[serde(default, alias = "maxresponsebodybytes")]
    pub max_response_body_bytes: i64,
    /// Response bytes kept in memory; the rest goes to a temporary file (default 1 MiB).
    #[serde(default, alias = "memresponsebodybytes", skip_serializing_if = "Option::is_none")]
    pub mem_response_body_bytes: Option<i64>,
    /// Traefik's retry condition (accepted, ignored: use `retry`).
    #[serde(default, alias = "retryexpression", skip_serializing_if = "Option::is_none")]
    pub retry_expression: Option<String>,
}

/// `chain`: <https://doc.traefik.io/traefik/middlewares/http/chain/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Chain {
    /// Middleware names, in order (qualified with the chain's provider unless they name one).
    #[serde(default)]
    pub middlewares: Vec<String>,
}

/// `headers`: <https://doc.traefik.io/traefik/middlewares/http/headers/>.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Headers {
    /// Set on the request; an empty value removes the header.
    #[serde(default, alias = "customrequestheaders", skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_request_headers: BTreeMap<String, String>,
    /// Set on the response; an empty value removes the header.
    #[serde(default, alias = "customresponseheaders", skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_response_headers: BTreeMap<String, String>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default, alias = "accesscontrolallowcredentials")]
    pub access_control_allow_credentials: bool,
    /// `Access-Control-Allow-Headers` (preflight).
    #[serde(default, alias = "accesscontrolallowheaders", skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_headers: Vec<String>,
    /// `Access-Control-Allow-Methods` (preflight).
    #[serde(default, alias = "accesscontrolallowmethods", skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_methods: Vec<String>,
    /// Origins allowed (`*` for any).
    #[serde(default, alias = "accesscontrolalloworiginlist", skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_origin_list: Vec<String>,
    /// Origins allowed, as regular expressions.
    #[serde(default, alias = "accesscontrolalloworiginlistregex", skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_origin_list_regex: Vec<String>,
    /// `Access-Control-Expose-Headers`.
    #[serde(default, alias = "accesscontrolexposeheaders", skip_serializing_if = "Vec::is_empty")]
    pub access_control_expose_headers: Vec<String>,
    /// `Access-Control-Max-Age` in seconds (preflight).
    #[serde(default, alias = "accesscontrolmaxage")]
    pub access_control_max_age: i64,
    /// Add `Vary: Origin` when the allowed origin is not `*`.
    #[serde(default, alias = "addvaryheader")]
    pub add_vary_header: bool,
    /// Hosts allowed (empty: any); others get 400.
    #[serde(default, alias = "allowedhosts", skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Headers that may carry the original host (checked against `allowedHosts`).
    #[serde(default, alias = "hostsproxyheaders", skip_serializing_if = "Vec::is_empty")]
    pub hosts_proxy_headers: Vec<String>,
    /// Header/value pairs that mean the request came over TLS (for `Strict-Transport-Security`).
    #[serde(default, alias = "sslproxyheaders", skip_serializing_if = "BTreeMap::is_empty")]
    pub ssl_proxy_headers: BTreeMap<String, String>,
    /// `Strict-Transport-Security` max-age (0: not sent).
    #[serde(default, alias = "stsseconds")]
    pub sts_seconds: u64,
    /// `includeSubDomains` in STS.
    #[serde(default, alias = "stsincludesubdomains")]
    pub sts_include_subdomains: bool,
    /// `preload` in STS.
    #[serde(default, alias = "stspreload")]
    pub sts_preload: bool,
    /// Send STS over plain HTTP too.
    #[serde(default, rename = "forceSTSHeader", alias = "forcestsheader")]
    pub force_sts_header: bool,
    /// `X-Frame-Options: DENY`.
    #[serde(default, alias = "framedeny")]
    pub frame_deny: bool,
    /// `X-Frame-Options` value (overrides `frameDeny`).
    #[serde(default, alias = "customframeoptionsvalue", skip_serializing_if = "String::is_empty")]
    pub custom_frame_options_value: String,
    /// `X-Content-Type-Options: nosniff`.
    #[serde(default, alias = "contenttypenosniff")]
    pub content_type_nosniff: bool,
    /// `X-XSS-Protection: 1; mode=block`.
    #[serde(default, alias = "browserxssfilter")]
    pub browser_xss_filter: bool,
    /// `X-XSS-Protection` value (overrides `browserXssFilter`).
    #[serde(default, alias = "custombrowserxssvalue", skip_serializing_if = "String::is_empty")]
    pub custom_browser_xss_value: String,
    /// `Content-Security-Policy`.
    #[serde(default, alias = "contentsecuritypolicy", skip_serializing_if = "String::is_empty")]
    pub content_security_policy: String,
    /// `Content-Security-Policy-Report-Only`.
    #[serde(default, alias = "contentsecuritypolicyreportonly", skip_serializing_if = "String::is_empty")]
    pub content_security_policy_report_only: String,
    /// `Public-Key-Pins` (obsolete, passed as given).
    #[serde(default, alias = "publickey", skip_serializing_if = "String::is_empty")]
    pub public_key: String,
    /// `Referrer-Policy`.
    #[serde(default, alias = "referrerpolicy", skip_serializing_if = "String::is_empty")]
    pub referrer_policy: String,
    /// `Permissions-Policy`.
    #[serde(default, alias = "permissionspolicy", skip_serializing_if = "String::is_empty")]
    pub permissions_policy: String,
    /// Development mode: `allowedHosts`, STS and the SSL checks are not applied.
    #[serde(default, alias = "isdevelopment")]
    pub is_development: bool,
    /// `sslRedirect` (deprecated: use `redirectScheme`; ignored).
    #[serde(default, alias = "sslredirect", skip_serializing)]
    pub ssl_redirect: Option<Ignored>,
    /// `sslTemporaryRedirect` (deprecated; ignored).
    #[serde(default, alias = "ssltemporaryredirect", skip_serializing)]
    pub ssl_temporary_redirect: Option<Ignored>,
    /// `sslHost` (deprecated; ignored).
    #[serde(default, alias = "sslhost", skip_serializing)]
    pub ssl_host: Option<Ignored>,
    /// `sslForceHost` (deprecated; ignored).
    #[serde(default, alias = "sslforcehost", skip_serializing)]
    pub ssl_force_host: Option<Ignored>,
    /// `featurePolicy` (deprecated: use `permissionsPolicy`; ignored).
    #[serde(default, alias = "featurepolicy", skip_serializing)]
    pub feature_policy: Option<Ignored>,
}

impl Headers {
    /// The deprecated keys present (accepted and ignored).
    pub fn deprecated(&self) -> Vec<&'static str> {
        [
            (self.ssl_redirect.is_some(), "sslRedirect"),
            (self.ssl_temporary_redirect.is_some(), "sslTemporaryRedirect"),
            (self.ssl_host.is_some(), "sslHost"),
            (self.ssl_force_host.is_some(), "sslForceHost"),
            (self.feature_policy.is_some(), "featurePolicy"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

/// A middleware type given as a flag (`compress=true` in labels, `compress = true` in a file)
/// or as its table of options.
fn flag_or_map<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    use serde::de::{self, MapAccess, Visitor};
    struct Flag<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for Flag<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("`true` or a table of options")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.then(T::default))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim() {
                t if t.eq_ignore_ascii_case("true") || t.is_empty() => Ok(Some(T::default())),
                t if t.eq_ignore_ascii_case("false") => Ok(None),
                t => Err(E::custom(format!("expected `true` or options, found `{t}`"))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Some(T::default()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Some(T::default()))
        }
        fn visit_some<D2: Deserializer<'de>>(self, de: D2) -> Result<Self::Value, D2::Error> {
            de.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    de.deserialize_any(Flag(std::marker::PhantomData))
}

/// A string that may be written as a number (`port = 443` as well as `port = "443"`).
fn string_or_number<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    Ok(Some(match Raw::deserialize(de)? {
        Raw::Number(n) => n.to_string(),
        Raw::Text(text) => text,
    }))
}

#[cfg(test)]
mod tests {
    use crate::model::DynamicConfig;

    #[test]
    fn toml_and_yaml_fill_the_same_middlewares() {
        let toml = DynamicConfig::from_toml(
            r#"
            [http.middlewares.strip.stripPrefix]
            prefixes = ["/api"]
            [http.middlewares.limit.rateLimit]
            average = 100
            period = "1m"
            burst = 20
            [http.middlewares.limit.rateLimit.sourceCriterion.ipStrategy]
            depth = 2
            [http.middlewares.secure.headers]
            stsSeconds = 31536000
            forceSTSHeader = true
            [http.middlewares.secure.headers.customRequestHeaders]
            X-Script-Name = "test"
            [http.middlewares.https.redirectScheme]
            scheme = "https"
            port = 443
            "#,
        )
        .unwrap();
        let yaml = DynamicConfig::from_yaml(
            r#"
http:
  middlewares:
    strip:
      stripPrefix:
        prefixes: ["/api"]
    limit:
      rateLimit:
        average: 100
        period: 1m
        burst: 20
        sourceCriterion:
          ipStrategy:
            depth: 2
    secure:
      headers:
        stsSeconds: 31536000
        forceSTSHeader: true
        customRequestHeaders:
          X-Script-Name: test
    https:
      redirectScheme:
        scheme: https
        port: "443"
"#,
        )
        .unwrap();
        assert_eq!(toml, yaml);
        let https = toml.http.middlewares["https"].redirect_scheme.as_ref().unwrap();
        assert_eq!(https.port.as_deref(), Some("443"));
        let limit = toml.http.middlewares["limit"].rate_limit.as_ref().unwrap();
        assert_eq!(limit.period.unwrap().0.as_secs(), 60);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = DynamicConfig::from_toml("[http.middlewares.s.stripPrefix]\nprefixs = [\"/a\"]\n").unwrap_err();
        assert!(e.to_string().contains("prefixs"), "{e}");
        let e = DynamicConfig::from_toml("[http.middlewares.s.stripPrefx]\nprefixes = [\"/a\"]\n").unwrap_err();
        assert!(e.to_string().contains("stripPrefx"), "{e}");
        let e = DynamicConfig::from_toml("[http.middlewares.h.headers]\nstsSecond = 1\n").unwrap_err();
        assert!(e.to_string().contains("stsSecond"), "{e}");
    }

    #[test]
    fn a_middleware_has_exactly_one_type() {
        let c = DynamicConfig::from_toml(
            "[http.middlewares.two.stripPrefix]\nprefixes = [\"/a\"]\n[http.middlewares.two.addPrefix]\nprefix = \"/b\"\n[http.middlewares.none]\n[http.middlewares.later.grpcWeb]\n",
        )
        .unwrap();
        assert!(c.http.middlewares["two"].kind().unwrap_err().contains("addprefix, stripprefix"));
        assert!(c.http.middlewares["none"].kind().is_err());
        assert_eq!(c.http.middlewares["later"].kind().unwrap().api_name(), "grpcWeb");
    }

    #[test]
    fn compress_retry_errors_and_buffering_fill_from_toml_and_yaml() {
        let toml = DynamicConfig::from_toml(
            r#"
            [http.middlewares.zip.compress]
            excludedContentTypes = ["text/event-stream"]
            minResponseBodyBytes = 200
            encodings = ["br", "gzip"]
            [http.middlewares.flag]
            compress = true
            [http.middlewares.again.retry]
            attempts = 3
            initialInterval = "100ms"
            [http.middlewares.oops.errors]
            status = ["500-599", "404"]
            service = "pages@file"
            query = "/{status}.html"
            [http.middlewares.oops.errors.statusRewrites]
            "418" = 404
            [http.middlewares.buf.buffering]
            maxRequestBodyBytes = 2000000
            retryExpression = "IsNetworkError() && Attempts() < 2"
            "#,
        )
        .unwrap();
        let yaml = DynamicConfig::from_yaml(
            r#"
http:
  middlewares:
    zip:
      compress:
        excludedContentTypes: ["text/event-stream"]
        minResponseBodyBytes: 200
        encodings: [br, gzip]
    flag:
      compress: {}
    again:
      retry:
        attempts: 3
        initialInterval: 100ms
    oops:
      errors:
        status: ["500-599", "404"]
        service: pages@file
        query: "/{status}.html"
        statusRewrites:
          "418": 404
    buf:
      buffering:
        maxRequestBodyBytes: 2000000
        retryExpression: "IsNetworkError() && Attempts() < 2"
"#,
        )
        .unwrap();
        assert_eq!(toml, yaml);
        let m = &toml.http.middlewares;
        assert_eq!(m["flag"].kind().unwrap().api_name(), "compress");
        assert_eq!(m["zip"].compress.as_ref().unwrap().encodings, ["br", "gzip"]);
        assert_eq!(m["again"].retry.as_ref().unwrap().initial_interval.unwrap().0.as_millis(), 100);
        assert_eq!(m["oops"].errors.as_ref().unwrap().status_rewrites["418"], 404);
        assert_eq!(m["buf"].kind().unwrap().api_name(), "buffering");
        let e = DynamicConfig::from_toml("[http.middlewares.z.compress]\nminBodyBytes = 1\n").unwrap_err();
        assert!(e.to_string().contains("minBodyBytes"), "{e}");
    }
}
