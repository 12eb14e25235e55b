//! Middlewares in the merged configuration: each one validated on its own, chains flattened,
//! and routers resolved to the ordered list of middlewares they run.
//!
//! A middleware that cannot work as written (a bad regex, an unreadable users file, a hash format
//! drover cannot check, a chain that contains itself) is disabled with the key that is wrong, and
//! so is every router that uses it, and only those: running a router without the auth or
//! allow-list it asked for would expose what that middleware protects.
//!
//! Names are qualified the way Traefik qualifies them: a router's (or a chain's) `auth` means
//! `auth@<its provider>`, and `auth@docker` is taken as written. Entrypoint defaults
//! (`[entryPoints.web.http] middlewares = [...]`) run before the router's own and are qualified
//! with the router's provider too.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use crate::aggregate::qualify;
use crate::model::middleware::{IpStrategy, Kind, SourceCriterion};
use crate::model::{DynamicConfig, Middleware};
use crate::runtime::{RuntimeConfig, Status};

/// One middleware after validation, in Traefik's API shape.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MiddlewareInfo {
    /// Qualified name, `name@provider`.
    pub name: String,
    /// The provider it came from.
    pub provider: String,
    /// Its configuration as given, with basic-auth hashes replaced (its one set type, e.g.
    /// `"stripPrefix": {…}`).
    #[serde(flatten)]
    pub config: Middleware,
    /// The type, lower case as in Traefik's API (`stripprefix`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Enabled, warning or disabled.
    pub status: Status,
    /// What is wrong, or what was ignored.
    #[serde(rename = "error", skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Routers that run it (directly, through a chain or as an entrypoint default).
    pub used_by: Vec<String>,
    /// `basicAuth`: every user with its hash, from `users` and `usersFile` (never shown).
    #[serde(skip)]
    pub users: Vec<HtpasswdUser>,
}

/// One `user:hash` line of a basic-auth middleware.
#[derive(Clone, PartialEq, Eq)]
pub struct HtpasswdUser {
    /// The user name.
    pub name: String,
    /// The hash as written.
    pub hash: String,
    /// Its format.
    pub format: HashFormat,
}

impl std::fmt::Debug for HtpasswdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HtpasswdUser({}, {:?}, <hash>)", self.name, self.format)
    }
}

/// Hash formats of htpasswd files that drover checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFormat {
    /// `$2a$`, `$2b$`, `$2x$`, `$2y$` (`htpasswd -B`).
    Bcrypt,
    /// `$apr1$` (`htpasswd -m`, Apache's MD5-crypt) or `$1$` (MD5-crypt).
    Md5Crypt,
    /// `{SHA}` and base64 of SHA-1 (`htpasswd -s`).
    Sha1,
}

impl HashFormat {
    /// The format of `hash`, if drover can check it.
    pub fn of(hash: &str) -> Option<Self> {
        if ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            Some(Self::Bcrypt)
        } else if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
            Some(Self::Md5Crypt)
        } else if let Some(digest) = hash.strip_prefix("{SHA}") {
            base64::engine::general_purpose::STANDARD
                .decode(digest)
                .ok()
                .filter(|d| d.len() == 20)
                .map(|_| Self::Sha1)
        } else {
            None
        }
    }
}

/// Validates every provider's middlewares, then marks chains that cannot be flattened.
pub fn validate_all(fragments: &[(&str, &DynamicConfig)]) -> BTreeMap<String, MiddlewareInfo> {
    let mut out = BTreeMap::new();
    for (provider, config) in fragments {
        for (name, m) in &config.http.middlewares {
            let info = validate(name, provider, m);
            out.insert(info.name.clone(), info);
        }
    }
    // An `errors` middleware needs its service; a missing one disables it (and its routers).
    for info in out.values_mut() {
        let Some(e) = info.config.errors.as_ref().filter(|e| !e.service.is_empty()) else {
            continue;
        };
        let service = qualify(&e.service, &info.provider);
        let exists = fragments.iter().any(|(p, c)| {
            service
                .strip_suffix(&format!("@{p}"))
                .is_some_and(|n| c.http.services.contains_key(n))
        });
        if !exists {
            info.status = Status::Disabled;
            info.errors.push(format!(
                "http.middlewares.{}.errors.service: service `{service}` does not exist",
                local(&info.name)
            ));
        }
    }
    // A chain whose members cannot be resolved (missing, disabled, a cycle) is disabled itself,
    // with the reason; the routers that use it are disabled in turn.
    let chains: Vec<(String, Vec<String>, String)> = out
        .values()
        .filter(|i| i.status != Status::Disabled)
        .filter_map(|i| {
            i.config
                .chain
                .as_ref()
                .map(|c| (i.name.clone(), c.middlewares.clone(), i.provider.clone()))
        })
        .collect();
    let mut broken = Vec::new();
    for (name, members, provider) in chains {
        let mut stack = vec![name.clone()];
        if let Err(why) = expand(&out, &members, &provider, &mut stack, &mut Vec::new(), false) {
            broken.push((name, why));
        }
    }
    for (name, why) in broken {
        if let Some(info) = out.get_mut(&name) {
            info.status = Status::Disabled;
            info.errors.push(format!("http.middlewares.{}.chain: {why}", local(&name)));
        }
    }
    out
}

fn local(qualified: &str) -> &str {
    qualified.split('@').next().unwrap_or(qualified)
}

/// The middlewares `names` (written in `provider`'s configuration) run, in order, chains
/// expanded, or why they cannot run.
pub fn flatten(middlewares: &BTreeMap<String, MiddlewareInfo>, names: &[String], provider: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand(middlewares, names, provider, &mut Vec::new(), &mut out, true)?;
    Ok(out.into_iter().filter(|(_, chain)| !chain).map(|(name, _)| name).collect())
}

/// Every middleware a router with middlewares `names` (written in `provider`'s configuration)
/// is recorded as a user of, chains included, as [`resolve_routers`] records it; disabled ones
/// are listed too (what a router's removal must take its name from).
pub fn on_the_way(middlewares: &BTreeMap<String, MiddlewareInfo>, names: &[String], provider: &str) -> Vec<String> {
    let mut all = Vec::new();
    let _ = expand(middlewares, names, provider, &mut Vec::new(), &mut all, false);
    all.into_iter().map(|(name, _)| name).collect()
}

/// Expands `names` into `out`: every middleware met, each with whether it is a chain. `stack` holds the chains being expanded,
/// to find cycles; `check_status` refuses disabled middlewares (the chain pass only looks for
/// structure).
fn expand(
    middlewares: &BTreeMap<String, MiddlewareInfo>,
    names: &[String],
    provider: &str,
    stack: &mut Vec<String>,
    out: &mut Vec<(String, bool)>,
    check_status: bool,
) -> Result<(), String> {
    for name in names {
        let full = qualify(name, provider);
        let Some(info) = middlewares.get(&full) else {
            return Err(format!("middleware `{full}` does not exist"));
        };
        if stack.contains(&full) {
            let mut path: Vec<&str> = stack.iter().map(String::as_str).collect();
            path.push(&full);
            return Err(format!("the chain is a cycle: {}", path.join(" → ")));
        }
        if check_status && info.status == Status::Disabled {
            return Err(format!("middleware `{full}` is disabled: {}", info.errors.join("; ")));
        }
        match &info.config.chain {
            Some(chain) => {
                out.push((full.clone(), true));
                stack.push(full);
                expand(middlewares, &chain.middlewares, &info.provider, stack, out, check_status)?;
                stack.pop();
            }
            None => out.push((full, false)),
        }
    }
    Ok(())
}

/// Resolves every router's middlewares (as written) against `config.middlewares`: a router whose
/// list cannot run is disabled with the reason; the middlewares record who uses them.
pub fn resolve_routers(config: &mut RuntimeConfig) {
    let RuntimeConfig { routers, middlewares, .. } = config;
    for info in routers.values_mut() {
        if info.middlewares.is_empty() {
            continue;
        }
        match flatten(middlewares, &info.middlewares, &info.provider) {
            Ok(_) => mark_used(middlewares, &info.middlewares, &info.provider, &info.name),
            Err(why) => {
                tracing::warn!(router = %info.name, "router disabled: {why}");
                let info = std::sync::Arc::make_mut(info);
                info.status = Status::Disabled;
                info.errors.push(why);
            }
        }
    }
}

/// Applies entrypoint defaults: `defaults` maps an entrypoint to the middlewares its routers run
/// before their own. A router whose defaults cannot run (on any of its entrypoints) is disabled.
pub fn apply_entry_point_defaults(config: &mut RuntimeConfig, defaults: &BTreeMap<String, Vec<String>>) {
    if defaults.values().all(Vec::is_empty) {
        return;
    }
    let RuntimeConfig { routers, middlewares, .. } = config;
    for info in routers.values_mut() {
        if info.status == Status::Disabled {
            continue;
        }
        let mut failed = None;
        for ep in &info.using {
            let Some(names) = defaults.get(ep).filter(|n| !n.is_empty()) else {
                continue;
            };
            match flatten(middlewares, names, &info.provider) {
                Ok(_) => mark_used(middlewares, names, &info.provider, &info.name),
                Err(why) => {
                    failed = Some(format!("entryPoints.{ep}.http.middlewares: {why}"));
                    break;
                }
            }
        }
        if let Some(why) = failed {
            let info = std::sync::Arc::make_mut(info);
            info.status = Status::Disabled;
            info.errors.push(why);
        }
    }
}

fn mark_used(middlewares: &mut BTreeMap<String, MiddlewareInfo>, names: &[String], provider: &str, router: &str) {
    let mut all = Vec::new();
    // Every middleware on the way counts, chains included; the caller already resolved `names`.
    let _ = expand(middlewares, names, provider, &mut Vec::new(), &mut all, false);
    for (name, _) in all {
        if let Some(info) = middlewares.get_mut(&name) {
            if !info.used_by.iter().any(|r| r == router) {
                info.used_by.push(router.to_string());
            }
        }
    }
}

/// Validates one middleware.
pub fn validate(name: &str, provider: &str, m: &Middleware) -> MiddlewareInfo {
    let mut errors = Vec::new();
    let mut status = Status::Enabled;
    let mut users = Vec::new();
    let mut shown = m.clone();
    let key = |sub: &str| format!("http.middlewares.{name}.{sub}");
    if name.contains('@') {
        errors.push(format!("middleware name `{name}` must not contain `@`"));
    }
    let kind = match m.kind() {
        Ok(kind) => {
            check(kind, &key, &mut errors, &mut users);
            kind.api_name().to_string()
        }
        Err(why) => {
            errors.push(format!("http.middlewares.{name}: {why}"));
            String::new()
        }
    };
    if !errors.is_empty() {
        status = Status::Disabled;
    }
    if let Some(h) = &m.headers {
        for dep in h.deprecated() {
            errors.push(format!("`{}` is deprecated and ignored", key(&format!("headers.{dep}"))));
            if status == Status::Enabled {
                status = Status::Warning;
            }
        }
    }
    if let Some(auth) = &m.forward_auth {
        let mut ignored = Vec::new();
        if auth.tls.as_ref().is_some_and(|t| t.ca_optional.is_some()) {
            ignored.push(format!(
                "`{}` is deprecated in Traefik (client certificates are a server's setting) and ignored",
                key("forwardAuth.tls.caOptional")
            ));
        }
        for warning in ignored {
            errors.push(warning);
            if status == Status::Enabled {
                status = Status::Warning;
            }
        }
    }
    if m.buffering.as_ref().is_some_and(|b| b.retry_expression.is_some()) {
        errors.push(format!(
            "`{}` is ignored by drover (use a `retry` middleware)",
            key("buffering.retryExpression")
        ));
        if status == Status::Enabled {
            status = Status::Warning;
        }
    }
    if let Some(auth) = shown.basic_auth.as_mut() {
        // Hashes are secrets: the API shows who, never the hash.
        for line in &mut auth.users {
            let user = line.split(':').next().unwrap_or("").to_string();
            *line = format!("{user}:REDACTED");
        }
    }
    MiddlewareInfo {
        name: qualify(name, provider),
        provider: provider.to_string(),
        config: shown,
        kind,
        status,
        errors,
        used_by: Vec::new(),
        users,
    }
}

/// The encodings `compress` knows.
const ENCODINGS: [&str; 3] = ["gzip", "br", "zstd"];

/// A status or a range of them, as `errors.status` and `retry.status` write them.
pub fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let text = text.trim();
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let (from, to) = (from.trim().parse::<u16>().ok()?, to.trim().parse::<u16>().ok()?);
    ((100..=599).contains(&from) && (100..=599).contains(&to) && from <= to).then_some((from, to))
}

fn status_range_ok(text: &str, key: &str, errors: &mut Vec<String>) {
    if parse_status_range(text).is_none() {
        errors.push(format!("{key}: `{text}` is not a status or a range of them (`500-599`)"));
    }
}

fn regex_ok(pattern: &str, key: &str, errors: &mut Vec<String>) {
    if let Err(e) = regex::Regex::new(pattern) {
        errors.push(format!("{key}: `{pattern}` is not a valid regular expression: {e}"));
    }
}

fn range_ok(text: &str, key: &str, errors: &mut Vec<String>) {
    let text = text.trim();
    if text.parse::<ipnet::IpNet>().is_err() && text.parse::<std::net::IpAddr>().is_err() {
        errors.push(format!("{key}: `{text}` is not an IP address or CIDR range"));
    }
}

fn strategy_ok(s: &IpStrategy, key: &str, errors: &mut Vec<String>) {
    for ip in &s.excluded_ips {
        range_ok(ip, &format!("{key}.excludedIPs"), errors);
    }
    if let Some(bits) = s.ipv6_subnet {
        if bits > 128 {
            errors.push(format!("{key}.ipv6Subnet: {bits} is not a prefix length from 0 to 128"));
        }
    }
}

fn criterion_ok(c: &SourceCriterion, key: &str, errors: &mut Vec<String>) {
    let set = [c.ip_strategy.is_some(), c.request_header_name.is_some(), c.request_host]
        .iter()
        .filter(|s| **s)
        .count();
    if set > 1 {
        errors.push(format!("{key}: set one of ipStrategy, requestHeaderName, requestHost"));
    }
    if let Some(s) = &c.ip_strategy {
        strategy_ok(s, &format!("{key}.ipStrategy"), errors);
    }
    if let Some(h) = &c.request_header_name {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            errors.push(format!("{key}.requestHeaderName: `{h}` is not a header name"));
        }
    }
}

fn header_ok(name: &str, value: &str, key: &str, errors: &mut Vec<String>) {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        errors.push(format!("{key}: `{name}` is not a header name"));
    }
    if http::HeaderValue::from_str(value).is_err() {
        errors.push(format!("{key}.{name}: the value is not a valid header value"));
    }
}

fn check(kind: Kind<'_>, key: &dyn Fn(&str) -> String, errors: &mut Vec<String>, users: &mut Vec<HtpasswdUser>) {
    match kind {
        Kind::AddPrefix(m) => {
            if m.prefix.is_empty() {
                errors.push(format!("{}: the prefix is empty", key("addPrefix.prefix")));
            }
        }
        Kind::StripPrefix(m) => {
            if m.prefixes.is_empty() {
                errors.push(format!("{}: no prefix given", key("stripPrefix.prefixes")));
            }
        }
        Kind::StripPrefixRegex(m) => {
            if m.regex.is_empty() {
                errors.push(format!("{}: no regular expression given", key("stripPrefixRegex.regex")));
            }
            for r in &m.regex {
                regex_ok(r, &key("stripPrefixRegex.regex"), errors);
            }
        }
        Kind::ReplacePath(m) => {
            if m.path.is_empty() {
                errors.push(format!("{}: the path is empty", key("replacePath.path")));
            }
        }
        Kind::ReplacePathRegex(m) => regex_ok(&m.regex, &key("replacePathRegex.regex"), errors),
        Kind::RedirectRegex(m) => regex_ok(&m.regex, &key("redirectRegex.regex"), errors),
        Kind::RedirectScheme(m) => {
            if m.scheme.is_empty() {
                errors.push(format!("{}: a scheme is required", key("redirectScheme.scheme")));
            } else if !m.scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
                errors.push(format!("{}: `{}` is not a URL scheme", key("redirectScheme.scheme"), m.scheme));
            }
            if let Some(port) = m.port.as_deref().filter(|p| !p.is_empty()) {
                if port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
                    errors.push(format!("{}: `{port}` is not a port number", key("redirectScheme.port")));
                }
            }
        }
        Kind::Headers(h) => {
            for (name, value) in &h.custom_request_headers {
                header_ok(name, value, &key("headers.customRequestHeaders"), errors);
            }
            for (name, value) in &h.custom_response_headers {
                header_ok(name, value, &key("headers.customResponseHeaders"), errors);
            }
            for r in &h.access_control_allow_origin_list_regex {
                regex_ok(r, &key("headers.accessControlAllowOriginListRegex"), errors);
            }
            for (field, values) in [
                ("headers.contentSecurityPolicy", &h.content_security_policy),
                ("headers.contentSecurityPolicyReportOnly", &h.content_security_policy_report_only),
                ("headers.referrerPolicy", &h.referrer_policy),
                ("headers.permissionsPolicy", &h.permissions_policy),
                ("headers.customFrameOptionsValue", &h.custom_frame_options_value),
                ("headers.customBrowserXSSValue", &h.custom_browser_xss_value),
            ] {
                if http::HeaderValue::from_str(values).is_err() {
                    errors.push(format!("{}: not a valid header value", key(field)));
                }
            }
        }
        Kind::BasicAuth(m) => {
            let mut lines: Vec<(String, String)> = m
                .users
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("{}[{i}]", key("basicAuth.users")), l.clone()))
                .collect();
            if let Some(path) = &m.users_file {
                match std::fs::read_to_string(path) {
                    Ok(text) => lines.extend(
                        text.lines()
                            .enumerate()
                            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                            .map(|(n, l)| {
                                (
                                    format!("{} `{path}` line {}", key("basicAuth.usersFile"), n + 1),
                                    l.trim().to_string(),
                                )
                            }),
                    ),
                    Err(e) => errors.push(format!("{}: cannot read `{path}`: {e}", key("basicAuth.usersFile"))),
                }
            }
            for (where_, line) in lines {
                let Some((name, hash)) = line.split_once(':') else {
                    errors.push(format!("{where_}: expected `user:hash`"));
                    continue;
                };
                let hash = hash.trim();
                match HashFormat::of(hash) {
                    None => errors.push(format!(
                        "{where_}: the hash of user `{name}` is in a format drover cannot check (bcrypt `$2y$`, `$apr1$`, `$1$` and `{{SHA}}` are)"
                    )),
                    // Traefik: a user listed twice keeps its first entry.
                    Some(_) if users.iter().any(|u| u.name == name) => {}
                    Some(format) => users.push(HtpasswdUser {
                        name: name.to_string(),
                        hash: hash.to_string(),
                        format,
                    }),
                }
            }
            if users.is_empty() && errors.is_empty() {
                errors.push(format!("{}: no users (set users or usersFile)", key("basicAuth")));
            }
            if let Some(field) = &m.header_field {
                if http::HeaderName::from_bytes(field.as_bytes()).is_err() {
                    errors.push(format!("{}: `{field}` is not a header name", key("basicAuth.headerField")));
                }
            }
            if let Some(realm) = &m.realm {
                if realm.contains('"') || http::HeaderValue::from_str(realm).is_err() {
                    errors.push(format!(
                        "{}: the realm cannot contain `\"` or control characters",
                        key("basicAuth.realm")
                    ));
                }
            }
        }
        Kind::IpAllowList(m) => {
            if m.source_range.is_empty() {
                errors.push(format!("{}: no range given", key("ipAllowList.sourceRange")));
            }
            for r in &m.source_range {
                range_ok(r, &key("ipAllowList.sourceRange"), errors);
            }
            if let Some(s) = &m.ip_strategy {
                strategy_ok(s, &key("ipAllowList.ipStrategy"), errors);
            }
            if let Some(code) = m.reject_status_code {
                if !(100..=599).contains(&code) {
                    errors.push(format!("{}: {code} is not an HTTP status", key("ipAllowList.rejectStatusCode")));
                }
            }
        }
        Kind::RateLimit(m) => {
            if m.period.is_some_and(|p| p.0.is_zero()) {
                errors.push(format!("{}: the period must be longer than 0", key("rateLimit.period")));
            }
            if let Some(c) = &m.source_criterion {
                criterion_ok(c, &key("rateLimit.sourceCriterion"), errors);
            }
        }
        Kind::InFlightReq(m) => {
            if m.amount == 0 {
                errors.push(format!("{}: must be at least 1", key("inFlightReq.amount")));
            }
            if let Some(c) = &m.source_criterion {
                criterion_ok(c, &key("inFlightReq.sourceCriterion"), errors);
            }
        }
        Kind::Chain(m) => {
            if m.middlewares.is_empty() {
                errors.push(format!("{}: the chain is empty", key("chain.middlewares")));
            }
        }
        Kind::ForwardAuth(m) => {
            let address = key("forwardAuth.address");
            match m.address.parse::<http::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() => {}
                _ => errors.push(format!("{address}: `{}` is not an http:// or https:// URL", m.address)),
            }
            // The files themselves are read when the middleware is compiled (with the TLS
            // client that uses them); a bad one disables it there, naming its key.
            if let Some(tls) = &m.tls {
                if tls.cert.is_some() != tls.key.is_some() {
                    errors.push(format!("{}: cert and key go together; set both or neither", key("forwardAuth.tls")));
                }
            }
            if let Some(size) = m.max_body_size {
                if size < -1 {
                    errors.push(format!(
                        "{}: {size} is not a size (-1 means no limit)",
                        key("forwardAuth.maxBodySize")
                    ));
                }
            }
            if let Some(r) = &m.auth_response_headers_regex {
                regex_ok(r, &key("forwardAuth.authResponseHeadersRegex"), errors);
            }
            for (field, names) in [
                ("forwardAuth.authResponseHeaders", &m.auth_response_headers),
                ("forwardAuth.authRequestHeaders", &m.auth_request_headers),
            ] {
                for n in names {
                    if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                        errors.push(format!("{}: `{n}` is not a header name", key(field)));
                    }
                }
            }
        }
        Kind::CircuitBreaker(m) => {
            if let Err(e) = crate::breaker::parse(&m.expression) {
                errors.push(format!("{}: {e}", key("circuitBreaker.expression")));
            }
            if m.check_period.is_some_and(|p| p.0.is_zero()) {
                errors.push(format!("{}: must be longer than 0", key("circuitBreaker.checkPeriod")));
            }
            if let Some(code) = m.response_code {
                if !(100..=599).contains(&code) {
                    errors.push(format!("{}: {code} is not an HTTP status", key("circuitBreaker.responseCode")));
                }
            }
        }
        Kind::Compress(m) => {
            let key = |sub: &str| key(&format!("compress.{sub}"));
            if !m.excluded_content_types.is_empty() && !m.included_content_types.is_empty() {
                errors.push(format!(
                    "{}: excludedContentTypes and includedContentTypes cannot both be set",
                    key("includedContentTypes")
                ));
            }
            for (field, types) in [
                ("excludedContentTypes", &m.excluded_content_types),
                ("includedContentTypes", &m.included_content_types),
            ] {
                for t in types {
                    if !t.contains('/') {
                        errors.push(format!("{}: `{t}` is not a media type (`type/subtype`)", key(field)));
                    }
                }
            }
            for e in &m.encodings {
                if !ENCODINGS.contains(&e.trim()) {
                    errors.push(format!("{}: `{e}` is not one of gzip, br, zstd", key("encodings")));
                }
            }
            if let Some(e) = &m.default_encoding {
                if !ENCODINGS.contains(&e.trim()) {
                    errors.push(format!("{}: `{e}` is not one of gzip, br, zstd", key("defaultEncoding")));
                }
            }
        }
        Kind::Retry(m) => {
            if m.attempts == 0 {
                errors.push(format!("{}: must be at least 1", key("retry.attempts")));
            }
            for s in &m.status {
                status_range_ok(s, &key("retry.status"), errors);
            }
            if m.disable_retry_on_network_error && m.status.is_empty() {
                errors.push(format!(
                    "{}: with disableRetryOnNetworkError, set the statuses to retry on",
                    key("retry.status")
                ));
            }
            if m.max_request_body_bytes.is_some_and(|b| b < -1) {
                errors.push(format!("{}: must be -1 (no limit) or more", key("retry.maxRequestBodyBytes")));
            }
        }
        Kind::Errors(m) => {
            if m.status.is_empty() {
                errors.push(format!("{}: no status given", key("errors.status")));
            }
            for s in &m.status {
                status_range_ok(s, &key("errors.status"), errors);
            }
            if m.service.is_empty() {
                errors.push(format!("{}: a service is required", key("errors.service")));
            }
            if let Some(q) = &m.query {
                let probe = q
                    .replace("{status}", "500")
                    .replace("{originalStatus}", "500")
                    .replace("{url}", "x");
                if !probe.starts_with('/') || probe.parse::<http::uri::PathAndQuery>().is_err() {
                    errors.push(format!("{}: `{q}` is not a path (`/{{status}}.html`)", key("errors.query")));
                }
            }
            for (from, to) in &m.status_rewrites {
                status_range_ok(from, &key("errors.statusRewrites"), errors);
                if !(100..=599).contains(to) {
                    errors.push(format!("{}.{from}: {to} is not an HTTP status", key("errors.statusRewrites")));
                }
            }
        }
        Kind::Buffering(m) => {
            for (field, n) in [
                ("maxRequestBodyBytes", Some(m.max_request_body_bytes)),
                ("memRequestBodyBytes", m.mem_request_body_bytes),
                ("maxResponseBodyBytes", Some(m.max_response_body_bytes)),
                ("memResponseBodyBytes", m.mem_response_body_bytes),
            ] {
                if n.is_some_and(|n| n < 0) {
                    errors.push(format!("{}: must not be negative", key(&format!("buffering.{field}"))));
                }
            }
        }
        Kind::Unsupported(name) => errors.push(format!(
            "`{name}` middlewares are not supported by drover yet; routers using this one are disabled rather than run without it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::merge;

    fn config(text: &str) -> DynamicConfig {
        DynamicConfig::from_toml(text).expect("test config parses")
    }

    const BASE: &str = r#"
        [http.services.s.loadBalancer]
        [[http.services.s.loadBalancer.servers]]
        url = "http://127.0.0.1:1"
    "#;

    #[test]
    fn a_router_runs_its_chain_flattened_and_the_middlewares_know_who_uses_them() {
        let file = config(&format!(
            r#"
            [http.routers.r]
            rule = "Path(`/`)"
            service = "s"
            middlewares = ["outer", "last@file"]
            [http.middlewares.outer.chain]
            middlewares = ["a", "inner"]
            [http.middlewares.inner.chain]
            middlewares = ["b"]
            [http.middlewares.a.addPrefix]
            prefix = "/a"
            [http.middlewares.b.addPrefix]
            prefix = "/b"
            [http.middlewares.last.stripPrefix]
            prefixes = ["/x"]
            {BASE}"#
        ));
        let rc = merge([("file", &file)], &["web".to_string()]);
        assert_eq!(rc.routers["r@file"].status, Status::Enabled, "{:?}", rc.routers["r@file"].errors);
        let flat = flatten(&rc.middlewares, &rc.routers["r@file"].middlewares, "file").unwrap();
        assert_eq!(flat, ["a@file", "b@file", "last@file"]);
        for m in ["outer@file", "inner@file", "a@file", "b@file", "last@file"] {
            assert_eq!(rc.middlewares[m].used_by, ["r@file"], "{m}");
        }
        assert_eq!(rc.middlewares["outer@file"].kind, "chain");
    }

    #[test]
    fn missing_invalid_and_cyclic_middlewares_disable_only_their_routers() {
        let file = config(&format!(
            r#"
            [http.routers.missing]
            rule = "Path(`/1`)"
            service = "s"
            middlewares = ["nope"]
            [http.routers.invalid]
            rule = "Path(`/2`)"
            service = "s"
            middlewares = ["badregex"]
            [http.routers.cyclic]
            rule = "Path(`/3`)"
            service = "s"
            middlewares = ["c1"]
            [http.routers.fine]
            rule = "Path(`/4`)"
            service = "s"
            middlewares = ["ok"]
            [http.routers.later]
            rule = "Path(`/5`)"
            service = "s"
            middlewares = ["zip"]
            [http.middlewares.badregex.stripPrefixRegex]
            regex = ["/(unclosed"]
            [http.middlewares.c1.chain]
            middlewares = ["c2"]
            [http.middlewares.c2.chain]
            middlewares = ["c1"]
            [http.middlewares.ok.addPrefix]
            prefix = "/ok"
            [http.middlewares.zip.grpcWeb]
            {BASE}"#
        ));
        let rc = merge([("file", &file)], &["web".to_string()]);
        let why = |r: &str| rc.routers[r].errors.join("; ");
        assert_eq!(rc.routers["missing@file"].status, Status::Disabled);
        assert!(
            why("missing@file").contains("`nope@file` does not exist"),
            "{}",
            why("missing@file")
        );
        assert_eq!(rc.routers["invalid@file"].status, Status::Disabled);
        assert!(
            why("invalid@file").contains("http.middlewares.badregex.stripPrefixRegex.regex"),
            "{}",
            why("invalid@file")
        );
        assert_eq!(rc.routers["cyclic@file"].status, Status::Disabled);
        assert!(
            rc.middlewares["c1@file"].errors[0].contains("cycle: c1@file → c2@file → c1@file"),
            "{:?}",
            rc.middlewares["c1@file"].errors
        );
        assert_eq!(rc.routers["later@file"].status, Status::Disabled);
        assert!(
            why("later@file").contains("`grpcWeb` middlewares are not supported"),
            "{}",
            why("later@file")
        );
        assert_eq!(rc.routers["fine@file"].status, Status::Enabled);
    }

    #[test]
    fn basic_auth_checks_hash_formats_and_hides_the_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "# comment\nfile-user:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\n").unwrap();
        let file = config(&format!(
            r#"
            [http.middlewares.auth.basicAuth]
            users = ["bob:$2y$05$abcdefghijklmnopqrstuuVvhfZ0pHmIl8yZV4wB9iGLZ6nbFq.e6", "alice:$apr1$salt$hash"]
            usersFile = "{}"
            [http.middlewares.weird.basicAuth]
            users = ["eve:plaintext"]
            [http.middlewares.gone.basicAuth]
            usersFile = "/nonexistent/users"
            "#,
            path.display()
        ));
        let rc = merge([("file", &file)], &[]);
        let auth = &rc.middlewares["auth@file"];
        assert_eq!(auth.status, Status::Enabled, "{:?}", auth.errors);
        let names: Vec<&str> = auth.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["bob", "alice", "file-user"]);
        let shown = serde_json::to_string(auth).unwrap();
        assert!(!shown.contains("$2y$") && !shown.contains("$apr1$"), "{shown}");
        assert!(shown.contains("bob:REDACTED"), "{shown}");
        let weird = &rc.middlewares["weird@file"];
        assert_eq!(weird.status, Status::Disabled);
        assert!(
            weird.errors[0].contains("http.middlewares.weird.basicAuth.users[0]"),
            "{:?}",
            weird.errors
        );
        assert!(!weird.errors[0].contains("plaintext"), "the hash is never repeated");
        assert!(rc.middlewares["gone@file"].errors[0].contains("cannot read `/nonexistent/users`"));
    }

    #[test]
    fn forward_auth_takes_https_and_traefiks_tls_keys() {
        let file = config(
            r#"
            [http.middlewares.ok.forwardAuth]
            address = "https://auth.test/verify"
            forwardBody = true
            maxBodySize = 1024
            [http.middlewares.ok.forwardAuth.tls]
            ca = "/etc/auth/ca.pem"
            cert = "/etc/auth/client.pem"
            key = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----"
            [http.middlewares.old.forwardAuth]
            address = "https://auth.test/verify"
            [http.middlewares.old.forwardAuth.tls]
            caOptional = true
            [http.middlewares.half.forwardAuth]
            address = "https://auth.test/verify"
            maxBodySize = -2
            [http.middlewares.half.forwardAuth.tls]
            cert = "/etc/auth/client.pem"
            [http.middlewares.ftp.forwardAuth]
            address = "ftp://auth.test/"
            "#,
        );
        let rc = merge([("file", &file)], &[]);
        let ok = &rc.middlewares["ok@file"];
        assert_eq!(ok.status, Status::Enabled, "{:?}", ok.errors);
        let shown = serde_json::to_string(ok).unwrap();
        assert!(shown.contains("/etc/auth/ca.pem") && !shown.contains("secret"), "{shown}");
        let old = &rc.middlewares["old@file"];
        assert_eq!(old.status, Status::Warning);
        assert!(old.errors[0].contains("http.middlewares.old.forwardAuth.tls.caOptional"));
        let half = &rc.middlewares["half@file"];
        assert_eq!(half.status, Status::Disabled);
        assert!(half
            .errors
            .iter()
            .any(|e| e.starts_with("http.middlewares.half.forwardAuth.tls: cert and key go together")));
        assert!(half
            .errors
            .iter()
            .any(|e| e.starts_with("http.middlewares.half.forwardAuth.maxBodySize: -2")));
        assert!(rc.middlewares["ftp@file"].errors[0].contains("is not an http:// or https:// URL"));
    }

    #[test]
    fn entry_point_defaults_are_qualified_with_the_routers_provider() {
        let file = config(&format!(
            r#"
            [http.routers.r]
            rule = "Path(`/`)"
            service = "s"
            [http.middlewares.base.addPrefix]
            prefix = "/base"
            {BASE}"#
        ));
        let mut rc = merge([("file", &file)], &["web".to_string(), "other".to_string()]);
        let defaults = BTreeMap::from([("web".to_string(), vec!["base".to_string()])]);
        apply_entry_point_defaults(&mut rc, &defaults);
        assert_eq!(rc.routers["r@file"].status, Status::Enabled);
        assert_eq!(rc.middlewares["base@file"].used_by, ["r@file"]);
        let defaults = BTreeMap::from([("other".to_string(), vec!["missing@docker".to_string()])]);
        apply_entry_point_defaults(&mut rc, &defaults);
        assert_eq!(rc.routers["r@file"].status, Status::Disabled);
        assert!(rc.routers["r@file"].errors[0].contains("entryPoints.other.http.middlewares: middleware `missing@docker` does not exist"));
    }
}
