//! The TLS part of a compilation: which routers are TLS routers on which entrypoints, which
//! options each host uses, the certificates, and what is wrong with any of it (written into the
//! runtime configuration the API shows, before it is frozen into the snapshot).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use drover_providers::model::{RouterTls, TlsOptions};
use drover_providers::rule::HostPattern;
use drover_providers::runtime::{RuntimeConfig, Status};

use super::certs::{AcmeInfo, CertCache, CertInfo, Loaded, PairSource};
use super::options::{self, Options, Resumption};
use super::resolver::CertIndex;
use super::TlsSnapshot;
use crate::acme::store::StoredDomain;
use crate::acme::{Acme, Wanted};

/// TLS state kept across compilations: the certificate cache (last good pairs, the generated
/// default) and session resumption keys.
#[derive(Debug, Default)]
pub struct TlsCompiler {
    /// Each entrypoint's `http.tls` defaults (index order; `None`: routers choose).
    pub entry_points: Vec<Option<RouterTls>>,
    certs: CertCache,
    resumption: Option<Resumption>,
    /// The resolvers, their certificates and states.
    pub acme: Option<Arc<Acme>>,
}

/// A router asking a resolver for names: whether it is a TCP router, its name, the resolver,
/// its `tls.domains` and the hosts its rule requires.
type Claim = (bool, String, String, Vec<drover_providers::model::Domain>, Option<Vec<HostPattern>>);

/// Per router: on which entrypoints (index order) it is a TLS router.
pub type TlsRouters = HashMap<String, Vec<bool>>;

fn disable(status: &mut Status, errors: &mut Vec<String>, why: String) {
    *status = Status::Disabled;
    errors.push(why);
}

fn warn(status: &mut Status, errors: &mut Vec<String>, why: String) {
    if *status == Status::Enabled {
        *status = Status::Warning;
    }
    errors.push(why);
}

/// A host key for the options map: `a.test`, or `*.test` for a wildcard.
fn host_key(pattern: &HostPattern) -> Option<String> {
    match pattern {
        HostPattern::Exact(h) => Some(h.clone()),
        HostPattern::Wildcard(base) => Some(format!("*.{base}")),
        HostPattern::Any => None,
    }
}

impl TlsCompiler {
    /// A compiler for entrypoints whose `http.tls` defaults are `entry_points`.
    pub fn new(entry_points: Vec<Option<RouterTls>>) -> Self {
        Self {
            entry_points,
            ..Self::default()
        }
    }

    /// The certificate files in use, for the watcher.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.certs.files()
    }

    /// The qualified options name a static `http.tls.options` refers to.
    fn static_options(config: &RuntimeConfig, name: &str) -> String {
        if name == "default" || config.tls.options.contains_key(name) || name.contains('@') {
            name.to_string()
        } else {
            format!("{name}@file")
        }
    }

    /// The name sets TLS routers want from resolvers: each router's `tls.domains`, else the
    /// hosts its rule requires (one certificate per router, as Traefik orders); TCP routers that
    /// terminate TLS too, by their `HostSNI` names. Routers naming an unknown resolver, or giving
    /// no names, are warned about.
    fn acme_wanted(&self, config: &mut RuntimeConfig, routers: &TlsRouters) -> Vec<Wanted> {
        let mut claims: Vec<Claim> = Vec::new();
        for (name, on) in routers {
            let info = &config.routers[name];
            let tls = info.tls.clone().unwrap_or_default();
            // The router's own resolver, else that of an entrypoint it is a TLS router on.
            let on_ep = || {
                on.iter()
                    .zip(&self.entry_points)
                    .filter(|(tls_here, _)| **tls_here)
                    .find_map(|(_, defaults)| defaults.as_ref()?.cert_resolver.clone())
            };
            if let Some(resolver) = tls.cert_resolver.clone().or_else(on_ep) {
                let hosts = info.parsed.as_ref().and_then(|r| r.required_hosts());
                claims.push((false, name.clone(), resolver, tls.domains, hosts));
            }
        }
        for (name, info) in &config.l4.routers {
            if info.status == Status::Disabled || info.mode != drover_providers::tcp::TcpMode::Terminate {
                continue;
            }
            if let Some(tls) = &info.tls {
                if let Some(resolver) = tls.cert_resolver.clone() {
                    let hosts = info.parsed.as_ref().and_then(|r| r.required_hosts());
                    claims.push((true, name.clone(), resolver, tls.domains.clone(), hosts));
                }
            }
        }
        let mut wanted: Vec<Wanted> = Vec::new();
        for (tcp, name, resolver, domains, hosts) in claims {
            let resolver_config = self.acme.as_ref().and_then(|a| a.resolvers.get(&resolver));
            let (status, errors) = match tcp {
                true => match config.l4.routers.get_mut(&name) {
                    Some(info) => (&mut info.status, &mut info.errors),
                    None => continue,
                },
                false => match config.routers.get_mut(&name) {
                    Some(info) => {
                        let info = Arc::make_mut(info);
                        (&mut info.status, &mut info.errors)
                    }
                    None => continue,
                },
            };
            let Some(resolver_config) = resolver_config else {
                let defined: Vec<String> = self.acme.iter().flat_map(|a| a.resolvers.keys().cloned()).collect();
                warn(
                    status,
                    errors,
                    format!(
                        "tls.certResolver `{resolver}` is not in the static configuration's certificatesResolvers (defined: {}); the configured certificates, or the default one, serve this router",
                        if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
                    ),
                );
                continue;
            };
            let mut sets: Vec<StoredDomain> = domains
                .iter()
                .map(|d| StoredDomain {
                    main: d.main.to_ascii_lowercase(),
                    sans: d.sans.iter().map(|s| s.to_ascii_lowercase()).collect(),
                })
                .filter(|d| !d.main.is_empty())
                .collect();
            if sets.is_empty() {
                let mut exact = hosts.unwrap_or_default().into_iter().filter_map(|p| match p {
                    HostPattern::Exact(h) => Some(h),
                    _ => None,
                });
                match exact.next() {
                    Some(main) => sets.push(StoredDomain {
                        main,
                        sans: exact.collect(),
                    }),
                    None => {
                        warn(
                            status,
                            errors,
                            format!("tls.certResolver `{resolver}`: nothing to order: the rule names no exact host (a regular expression or wildcard needs tls.domains) and tls.domains is empty"),
                        );
                        continue;
                    }
                }
            }
            for domain in sets {
                if domain.names().any(|n| n.starts_with("*.")) && resolver_config.dns_challenge.is_none() {
                    warn(
                        status,
                        errors,
                        format!("tls.domains `{}`: a wildcard can only be ordered through DNS-01, and resolver `{resolver}` has no dnsChallenge", domain.main),
                    );
                    continue;
                }
                let want = Wanted {
                    resolver: resolver.clone(),
                    domain,
                };
                if !wanted.contains(&want) {
                    wanted.push(want);
                }
            }
        }
        wanted.sort();
        wanted
    }

    /// Resolves TLS for `config` (disabling routers whose options are missing or invalid and
    /// warning about per-host conflicts), and builds what the snapshot holds.
    pub fn compile(&mut self, config: &mut RuntimeConfig, entry_point_names: &[String]) -> (TlsSnapshot, TlsRouters) {
        let resumption = match &self.resumption {
            Some(r) => r.clone(),
            None => match Resumption::new() {
                Ok(r) => {
                    self.resumption = Some(r.clone());
                    r
                }
                Err(e) => {
                    tracing::error!("TLS is off: {e}");
                    return (TlsSnapshot::empty(entry_point_names.len()), TlsRouters::new());
                }
            },
        };

        // 1. Which routers are TLS routers where, and with which options.
        let mut routers: TlsRouters = HashMap::new();
        let mut wanted: BTreeMap<String, String> = BTreeMap::new(); // router → options
        let ep_options: Vec<Option<String>> = self
            .entry_points
            .iter()
            .map(|tls| {
                tls.as_ref()
                    .map(|t| Self::static_options(config, t.options.as_deref().unwrap_or("default")))
            })
            .collect();
        for (name, info) in &config.routers {
            if info.status == Status::Disabled {
                continue;
            }
            // Allocated only for TLS routers: most routers of a large configuration are not.
            let mut on: Option<Vec<bool>> = None;
            let mut options = None;
            for (i, ep) in entry_point_names.iter().enumerate() {
                if !info.using.contains(ep) {
                    continue;
                }
                if let Some(tls) = &info.tls {
                    on.get_or_insert_with(|| vec![false; entry_point_names.len()])[i] = true;
                    options = Some(tls.options.clone().unwrap_or_else(|| "default".into()));
                } else if let Some(ep_opts) = &ep_options[i] {
                    on.get_or_insert_with(|| vec![false; entry_point_names.len()])[i] = true;
                    options.get_or_insert_with(|| ep_opts.clone());
                }
            }
            if let (Some(options), Some(on)) = (options, on) {
                wanted.insert(name.clone(), options);
                routers.insert(name.clone(), on);
            }
        }

        // Resolvers: which name sets each TLS router wants (checked against the resolvers).
        let acme_wanted = self.acme_wanted(config, &routers);

        // TCP routers that terminate TLS use their own options (`default` when they name none).
        let tcp_options: HashSet<String> = config
            .l4
            .routers
            .values()
            .filter(|r| r.status != Status::Disabled && r.mode == drover_providers::tcp::TcpMode::Terminate)
            .map(|r| r.tls.as_ref().and_then(|t| t.options.clone()).unwrap_or_else(|| "default".into()))
            .collect();

        // 2. Build every options set used, and `default`.
        let mut index = CertIndex::default();
        let mut infos: Vec<CertInfo> = Vec::new();
        let mut used_pairs: HashSet<PairSource> = HashSet::new();
        let mut loaded: Vec<(Arc<Loaded>, usize)> = Vec::new();
        for (provider, cert) in &config.tls.certificates {
            let source = (cert.cert_file.clone(), cert.key_file.clone());
            used_pairs.insert(source.clone());
            let (good, error) = self.certs.load(&source);
            match good {
                Some(good) => {
                    let mut info = good.info.clone();
                    info.provider = provider.clone();
                    info.errors.extend(error);
                    index.add(&good.names, &good.key);
                    loaded.push((good, infos.len()));
                    infos.push(info);
                }
                None => infos.push(CertInfo {
                    subject: String::new(),
                    sans: Vec::new(),
                    issuer: String::new(),
                    serial: String::new(),
                    not_after: String::new(),
                    not_after_unix: 0,
                    key_type: "",
                    source: if cert.cert_file.trim_start().starts_with("-----BEGIN") {
                        "inline PEM".into()
                    } else {
                        cert.cert_file.clone()
                    },
                    provider: provider.clone(),
                    default: false,
                    used_by: Vec::new(),
                    errors: error.into_iter().collect(),
                    acme: None,
                }),
            }
        }
        let configured_default = config.tls.default_certificate.clone().and_then(|(provider, cert)| {
            let source = (cert.cert_file.clone(), cert.key_file.clone());
            used_pairs.insert(source.clone());
            let (good, error) = self.certs.load(&source);
            if let Some(error) = &error {
                config
                    .tls
                    .errors
                    .push(format!("tls.stores.default.defaultCertificate from {provider}: {error}"));
            }
            good.map(|good| {
                let mut info = good.info.clone();
                info.provider = provider;
                info.default = true;
                info.errors.extend(error);
                (good, info)
            })
        });
        self.certs.retain(&used_pairs);
        // Certificates from resolvers; a name set a configured certificate already serves is
        // not ordered (as Traefik does).
        let acme_wanted: Vec<Wanted> = acme_wanted
            .into_iter()
            .filter(|w| !w.domain.names().all(|n| index.names(n)))
            .collect();
        if let Some(acme) = &self.acme {
            for entry in acme.book.entries() {
                let wanted = acme_wanted.iter().any(|w| w.resolver == entry.resolver && w.domain == entry.domain);
                if !wanted && entry.cert.is_none() {
                    continue;
                }
                let acme_info = AcmeInfo::of(&entry);
                match &entry.cert {
                    Some(cert) => {
                        index.add(&cert.names, &cert.key);
                        let mut info = cert.info.clone();
                        info.acme = Some(acme_info);
                        loaded.push((cert.clone(), infos.len()));
                        infos.push(info);
                    }
                    None => infos.push(CertInfo {
                        subject: String::new(),
                        sans: entry.domain.names().map(str::to_string).collect(),
                        issuer: String::new(),
                        serial: String::new(),
                        not_after: String::new(),
                        not_after_unix: 0,
                        key_type: "",
                        source: format!("acme (resolver {})", entry.resolver),
                        provider: "acme".into(),
                        default: false,
                        used_by: Vec::new(),
                        errors: Vec::new(),
                        acme: Some(acme_info),
                    }),
                }
            }
        }
        match configured_default {
            Some((good, info)) => {
                index.set_default(good.key.clone());
                infos.push(info);
            }
            // Generated only when something terminates TLS: a plain-HTTP setup logs no warning.
            None if routers.is_empty() && self.entry_points.iter().all(Option::is_none) && tcp_options.is_empty() => {}
            None => match self.certs.generated() {
                Ok(generated) => {
                    index.set_default(generated.key.clone());
                    infos.push(generated.info.clone());
                }
                Err(e) => tracing::error!("no default certificate: {e}"),
            },
        }
        index.finish();
        let index = Arc::new(index);

        let mut built: HashMap<String, Option<Arc<Options>>> = HashMap::new();
        let names: HashSet<String> = wanted
            .values()
            .cloned()
            .chain(tcp_options.iter().cloned())
            .chain(["default".to_string()])
            .collect();
        for name in names {
            let spec = match config.tls.options.get(&name) {
                Some(info) => info.options.clone(),
                None if name == "default" => TlsOptions::default(),
                None => {
                    built.insert(name, None);
                    continue;
                }
            };
            let (options, findings) = options::build(&name, &spec, &index, &resumption);
            if let Some(info) = config.tls.options.get_mut(&name) {
                info.errors.clear();
                info.status = Status::Enabled;
                for w in findings.warnings {
                    warn(&mut info.status, &mut info.errors, w);
                }
                for e in findings.errors {
                    disable(&mut info.status, &mut info.errors, e);
                }
                if info.status == Status::Disabled {
                    tracing::error!(options = %name, "TLS options are invalid, routers using them are disabled: {}", info.errors.join("; "));
                }
            }
            built.insert(name, options.map(Arc::new));
        }

        // 3. Routers whose options are missing or broken are disabled: never served with
        //    weaker settings than they asked for.
        for (name, options) in &wanted {
            let why = match built.get(options) {
                Some(Some(_)) => continue,
                Some(None) if config.tls.options.contains_key(options) => format!("the TLS options `{options}` are invalid"),
                _ => format!("the TLS options `{options}` do not exist"),
            };
            let Some(info) = config.routers.get_mut(name) else { continue };
            let info = Arc::make_mut(info);
            disable(&mut info.status, &mut info.errors, why);
            if info.status == Status::Disabled {
                routers.remove(name);
            }
        }

        // 4. Options per host: the higher-priority router's on a conflict, reported on both.
        let mut hosts: BTreeMap<String, Vec<(i64, String, String)>> = BTreeMap::new();
        for (name, options) in &wanted {
            if !routers.contains_key(name) {
                continue;
            }
            let info = &config.routers[name];
            match info.parsed.as_ref().and_then(|r| r.required_hosts()) {
                Some(patterns) => {
                    for key in patterns.iter().filter_map(host_key) {
                        hosts.entry(key).or_default().push((info.priority, name.clone(), options.clone()));
                    }
                }
                None if options != "default" => {
                    let why = format!(
                        "the TLS options `{options}` apply to the hosts a rule names, and this rule names none: its connections use the options of their SNI's host (`default` for unknown names)"
                    );
                    if let Some(info) = config.routers.get_mut(name) {
                        let info = Arc::make_mut(info);
                        warn(&mut info.status, &mut info.errors, why);
                    }
                }
                None => {}
            }
        }
        let mut snapshot = TlsSnapshot {
            default: built.get("default").cloned().flatten(),
            terminating: (0..entry_point_names.len())
                .map(|i| routers.values().any(|on| on[i]) || self.entry_points.get(i).is_some_and(Option::is_some))
                .collect(),
            ..TlsSnapshot::default()
        };
        for (host, mut claims) in hosts {
            claims.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let (_, winner, options) = claims[0].clone();
            let distinct: HashSet<&str> = claims.iter().map(|c| c.2.as_str()).collect();
            if distinct.len() > 1 {
                let who = claims
                    .iter()
                    .map(|(_, r, o)| format!("`{r}` (`{o}`)"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let why = format!(
                    "host `{host}`: routers {who} ask for different TLS options; `{options}`, those of the higher-priority router `{winner}`, apply to the host"
                );
                tracing::error!("{why}");
                for (_, router, _) in &claims {
                    if let Some(info) = config.routers.get_mut(router) {
                        let info = Arc::make_mut(info);
                        warn(&mut info.status, &mut info.errors, why.clone());
                    }
                }
            }
            if let Some(info) = config.tls.options.get_mut(&options) {
                for (_, router, o) in &claims {
                    if *o == options && !info.used_by.contains(router) {
                        info.used_by.push(router.clone());
                    }
                }
            }
            let Some(Some(compiled)) = built.get(&options) else { continue };
            match host.strip_prefix("*.") {
                Some(base) => snapshot.by_wildcard.insert(base.into(), compiled.clone()),
                None => snapshot.by_host.insert(host.as_str().into(), compiled.clone()),
            };
        }

        // 5. Which routers each certificate serves.
        for (name, on) in &routers {
            if !on.iter().any(|t| *t) {
                continue;
            }
            let hosts: Vec<String> = config.routers[name]
                .parsed
                .as_ref()
                .and_then(|r| r.required_hosts())
                .map(|p| p.iter().filter_map(host_key).collect())
                .unwrap_or_default();
            for (pair, at) in &loaded {
                let serves = hosts.iter().any(|h| {
                    pair.names
                        .iter()
                        .any(|n| n == h || (n.starts_with("*.") && h.split_once('.').is_some_and(|(_, rest)| n[2..] == *rest)))
                });
                if serves {
                    infos[*at].used_by.push(name.clone());
                }
            }
            if !hosts.iter().any(|h| index.names(h)) {
                if let Some(info) = infos.iter_mut().find(|i| i.default) {
                    info.used_by.push(name.clone());
                }
            }
        }
        for info in &mut infos {
            info.used_by.sort();
        }
        snapshot.certificates = infos;
        snapshot.acme_wanted = acme_wanted;
        snapshot.acme = self.acme.as_ref().map(|a| a.challenges.clone());
        snapshot.by_name = built
            .into_iter()
            .filter_map(|(name, options)| options.map(|o| (name.into_boxed_str(), o)))
            .collect();
        (snapshot, routers)
    }
}
