//! From files to one fragment: the syntax a file's extension names, a directory's files merged,
//! and errors that name the file, line and column.
//!
//! The extension tells the syntax, as in Traefik: `.yaml` and `.yml` are YAML, `.toml` is TOML,
//! whatever the letter case. A single `filename` with another extension is read as TOML, as it
//! was before drover read YAML; a `directory` reads only files with those three extensions and
//! may mix them. Both syntaxes fill the same model, so a file and its translation configure
//! exactly the same routes, and both report errors the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Source;
use crate::error::ProviderError;
use crate::model::DynamicConfig;
use crate::{toml_error, yaml_error};

/// Reads `source` once: a file that cannot be read is [`ProviderError::is_unreachable`], one that
/// does not parse (or a directory that defines a name twice) [`ProviderError::is_bad_answer`].
pub fn load(source: &Source) -> Result<DynamicConfig, ProviderError> {
    match source {
        Source::File(path) => load_file(path, Syntax::of(path).unwrap_or(Syntax::Toml)),
        Source::Directory(dir) => load_directory(dir),
    }
}

/// The syntax of a dynamic-configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl Syntax {
    /// The syntax `path`'s extension names, if it names one drover reads.
    pub fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?;
        if extension.eq_ignore_ascii_case("toml") {
            Some(Self::Toml)
        } else if extension.eq_ignore_ascii_case("yaml") || extension.eq_ignore_ascii_case("yml") {
            Some(Self::Yaml)
        } else {
            None
        }
    }
}

fn load_file(path: &Path, syntax: Syntax) -> Result<DynamicConfig, ProviderError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProviderError::unreachable(format!("{}: cannot read: {e}", path.display())))?;
    parse(path, &text, syntax)
}

/// Parses the text of one dynamic-configuration file; `path` only names it in the error
/// ([`ProviderError::is_bad_answer`], with the line and column).
pub fn parse(path: &Path, text: &str, syntax: Syntax) -> Result<DynamicConfig, ProviderError> {
    match syntax {
        Syntax::Toml => DynamicConfig::from_toml(text).map_err(|e| toml_error::describe(path, text, &e)),
        Syntax::Yaml => DynamicConfig::from_yaml(text).map_err(|e| yaml_error::describe(path, &e)),
    }
    .map_err(ProviderError::bad_answer)
}

fn load_directory(dir: &Path) -> Result<DynamicConfig, ProviderError> {
    let mut parsed = Vec::new();
    for (file, syntax) in files(&Source::Directory(dir.to_path_buf()))? {
        let config = load_file(&file, syntax)?;
        parsed.push((file, config));
    }
    merge(parsed)
}

/// The files `source` names, in the order they are merged, with their syntax: the one file, or
/// a directory's `*.toml`, `*.yaml` and `*.yml` files by name. `drover check` reads exactly these.
pub fn files(source: &Source) -> Result<Vec<(PathBuf, Syntax)>, ProviderError> {
    let dir = match source {
        Source::File(path) => return Ok(vec![(path.clone(), Syntax::of(path).unwrap_or(Syntax::Toml))]),
        Source::Directory(dir) => dir,
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| ProviderError::unreachable(format!("{}: cannot read directory: {e}", dir.display())))?;
    let mut files: Vec<(PathBuf, Syntax)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| Syntax::of(&p).map(|syntax| (p, syntax)))
        .filter(|(p, _)| p.is_file())
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Merges parsed files (in [`files`] order) into one fragment, as a directory is read: a router
/// or service defined in two files is an error naming both.
pub fn merge(parsed: Vec<(PathBuf, DynamicConfig)>) -> Result<DynamicConfig, ProviderError> {
    let mut merged = DynamicConfig::default();
    let mut router_origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut service_origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut options_origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut store_origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, config) in parsed {
        for (name, router) in config.http.routers {
            if let Some(first) = router_origin.insert(name.clone(), file.clone()) {
                return Err(ProviderError::bad_answer(format!(
                    "{}: router `{name}` is already defined in {}",
                    file.display(),
                    first.display()
                )));
            }
            merged.http.routers.insert(name, router);
        }
        for (name, service) in config.http.services {
            if let Some(first) = service_origin.insert(name.clone(), file.clone()) {
                return Err(ProviderError::bad_answer(format!(
                    "{}: service `{name}` is already defined in {}",
                    file.display(),
                    first.display()
                )));
            }
            merged.http.services.insert(name, service);
        }
        merged.http.middlewares.extend(config.http.middlewares);
        merged.http.servers_transports.extend(config.http.servers_transports);
        for (kind, twice) in [
            (
                "TCP router",
                config.tcp.routers.keys().find(|n| merged.tcp.routers.contains_key(*n)),
            ),
            (
                "TCP service",
                config.tcp.services.keys().find(|n| merged.tcp.services.contains_key(*n)),
            ),
            (
                "UDP router",
                config.udp.routers.keys().find(|n| merged.udp.routers.contains_key(*n)),
            ),
            (
                "UDP service",
                config.udp.services.keys().find(|n| merged.udp.services.contains_key(*n)),
            ),
        ] {
            if let Some(name) = twice {
                return Err(ProviderError::bad_answer(format!(
                    "{}: {kind} `{name}` is already defined in another file of the directory",
                    file.display()
                )));
            }
        }
        merged.tcp.routers.extend(config.tcp.routers);
        merged.tcp.services.extend(config.tcp.services);
        merged.tcp.servers_transports.extend(config.tcp.servers_transports);
        merged.udp.routers.extend(config.udp.routers);
        merged.udp.services.extend(config.udp.services);
        merged.tls.certificates.extend(config.tls.certificates);
        for (name, options) in config.tls.options {
            if let Some(first) = options_origin.insert(name.clone(), file.clone()) {
                return Err(ProviderError::bad_answer(format!(
                    "{}: TLS options `{name}` are already defined in {}",
                    file.display(),
                    first.display()
                )));
            }
            merged.tls.options.insert(name, options);
        }
        for (name, store) in config.tls.stores {
            if let Some(first) = store_origin.insert(name.clone(), file.clone()) {
                return Err(ProviderError::bad_answer(format!(
                    "{}: TLS store `{name}` is already defined in {}",
                    file.display(),
                    first.display()
                )));
            }
            merged.tls.stores.insert(name, store);
        }
    }
    Ok(merged)
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::super::FileProvider;
    use super::*;

    pub(crate) const GOOD: &str =
        "[http.routers.r]\nrule = \"Path(`/`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:1\"\n";

    /// A realistic Traefik v3 dynamic file, and below the same in YAML.
    const SHOP_TOML: &str = r#"
[http.routers.shop-api]
rule = "Host(`shop.example`) && PathPrefix(`/api`)"
service = "api"
entryPoints = ["web", "websecure"]
priority = 20
middlewares = ["strip-api", "auth@docker"]

[http.routers.shop-web]
rule = "Host(`shop.example`)"
service = "web@docker"
ruleSyntax = "v3"

[http.middlewares.strip-api.stripPrefix]
prefixes = ["/api"]

[http.services.api.loadBalancer]
passHostHeader = false
strategy = "wrr"

[[http.services.api.loadBalancer.servers]]
url = "http://10.0.0.11:8080"
weight = 2

[[http.services.api.loadBalancer.servers]]
url = "http://10.0.0.12:8080"
tier = 1

[http.services.api.loadBalancer.healthCheck]
path = "/health"
scheme = "http"
port = 8081
hostname = "api.internal"
interval = "10s"
timeout = "3s"
headers = { X-Probe = "drover" }

[http.services.api.loadBalancer.passiveHealthCheck]
maxFailedAttempts = 5
failureWindow = "30s"
failureRate = { threshold = 50, window = "1m" }

[http.services.api.loadBalancer.retry]
attempts = 1

[http.services.api.loadBalancer.sticky.cookie]
name = "shop"
"#;

    const SHOP_YAML: &str = r#"
# The same routes as SHOP_TOML, written as Traefik's documentation writes YAML.
http:
  routers:
    shop-api:
      rule: "Host(`shop.example`) && PathPrefix(`/api`)"
      service: api
      entryPoints:
        - web
        - websecure
      priority: 20
      middlewares:
        - strip-api
        - auth@docker
    shop-web:
      rule: Host(`shop.example`)
      service: web@docker
      ruleSyntax: v3
  middlewares:
    strip-api:
      stripPrefix:
        prefixes: ["/api"]
  services:
    api:
      loadBalancer:
        passHostHeader: false
        strategy: wrr
        servers:
          - url: http://10.0.0.11:8080
            weight: 2
          - url: http://10.0.0.12:8080
            tier: 1
        healthCheck:
          path: /health
          scheme: http
          port: 8081
          hostname: api.internal
          interval: 10s
          timeout: 3s
          headers:
            X-Probe: drover
        passiveHealthCheck:
          maxFailedAttempts: 5
          failureWindow: 30s
          failureRate: {threshold: 50, window: 1m}
        retry:
          attempts: 1
        sticky:
          cookie:
            name: shop
"#;

    fn load_one(dir: &Path, name: &str, text: &str) -> Result<DynamicConfig, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        FileProvider::from_source(Source::File(path), false)
            .load()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_file_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, "[http.routers.r]\nrule = \"Path(`/`)\"\nservice = 5\n").unwrap();
        let err = FileProvider::from_source(Source::File(path.clone()), false)
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}:3:", path.display())), "{err}");
    }

    #[test]
    fn a_directory_merges_and_rejects_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "[http.routers.x]\nrule = \"Path(`/x`)\"\nservice = \"s\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "not toml").unwrap();
        let provider = FileProvider::from_source(Source::Directory(dir.path().to_path_buf()), false);
        let config = provider.load().unwrap();
        assert_eq!(config.http.routers.len(), 2);
        std::fs::write(
            dir.path().join("c.toml"),
            "[http.routers.x]\nrule = \"Path(`/y`)\"\nservice = \"s\"\n",
        )
        .unwrap();
        let err = provider.load().unwrap_err().to_string();
        assert!(err.contains("router `x` is already defined in"), "{err}");
    }

    #[test]
    fn the_same_routes_in_toml_and_yaml_give_the_same_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let from_toml = load_one(dir.path(), "shop.toml", SHOP_TOML).unwrap();
        let from_yaml = load_one(dir.path(), "shop.yaml", SHOP_YAML).unwrap();
        assert_eq!(from_yaml, from_toml);
        assert_eq!(from_yaml.unsupported(), from_toml.unsupported());
        // Equal, and not because both came out empty.
        let api = &from_yaml.http.routers["shop-api"];
        assert_eq!(api.rule, "Host(`shop.example`) && PathPrefix(`/api`)");
        assert_eq!(api.entry_points, ["web", "websecure"]);
        assert_eq!(api.priority, 20);
        assert_eq!(api.middlewares, ["strip-api", "auth@docker"]);
        assert_eq!(from_yaml.http.routers["shop-web"].service, "web@docker");
        let lb = from_yaml.http.services["api"].load_balancer.as_ref().unwrap();
        assert_eq!(lb.pass_host_header, Some(false));
        assert_eq!(lb.servers.len(), 2);
        assert_eq!((lb.servers[0].weight, lb.servers[1].weight), (Some(2), None));
        assert_eq!(lb.servers[1].tier, Some(1));
        let check = lb.health_check.as_ref().unwrap();
        assert_eq!(check.interval.unwrap().0, Duration::from_secs(10));
        assert_eq!(check.headers["X-Probe"], "drover");
        let passive = lb.passive_health_check.as_ref().unwrap();
        assert_eq!(passive.failure_window.unwrap().0, Duration::from_secs(30));
        assert_eq!(passive.failure_rate.as_ref().unwrap().window.unwrap().0, Duration::from_secs(60));
        assert_eq!(lb.retry.as_ref().unwrap().attempts, Some(1));
        assert_eq!(from_yaml.unsupported(), ["http.routers.shop-web.ruleSyntax",]);
    }

    #[test]
    fn a_bad_yaml_file_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.yml");
        std::fs::write(&path, "http:\n  routers:\n    r:\n     rule: x\n      service: s\n").unwrap();
        let err = FileProvider::from_source(Source::File(path.clone()), false)
            .load()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("{}:5:14: mapping values are not allowed in this context", path.display())
        );

        let path = dir.path().join("routes.yaml");
        let text = SHOP_YAML.replace("weight: 2", "weight: abc");
        std::fs::write(&path, &text).unwrap();
        let (line, column) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find("abc").map(|at| (i + 1, at + 1)))
            .unwrap();
        let err = FileProvider::from_source(Source::File(path.clone()), false)
            .load()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}:{line}:{column}: http.services.api.loadBalancer.servers[0].weight: invalid type: string \"abc\", expected u32",
                path.display()
            )
        );
    }

    #[test]
    fn an_unknown_yaml_key_is_an_error_as_in_toml() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_one(dir.path(), "r.yaml", "http:\n  routers:\n    r:\n      rule: x\n      servise: s\n").unwrap_err();
        assert!(err.contains("r.yaml:5:7: http.routers.r: unknown field `servise`"), "{err}");
    }

    #[test]
    fn empty_files_are_empty_configurations() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("a.toml", ""),
            ("b.yaml", ""),
            ("c.yml", "# routes come later\n"),
            ("d.yaml", "---\n"),
        ] {
            assert_eq!(load_one(dir.path(), name, text), Ok(DynamicConfig::default()), "{name}");
        }
    }

    #[test]
    fn a_single_file_of_another_extension_is_read_as_toml() {
        let dir = tempfile::tempdir().unwrap();
        let config = load_one(dir.path(), "routes.conf", GOOD).unwrap();
        assert_eq!(config.http.routers["r"].rule, "Path(`/`)");
        let err = load_one(dir.path(), "routes", SHOP_YAML).unwrap_err();
        assert!(err.contains("routes:3:"), "read as TOML, so YAML fails there: {err}");
    }

    #[test]
    fn a_directory_merges_toml_and_yaml_and_rejects_duplicates_across_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "http:\n  routers:\n    x:\n      rule: Path(`/x`)\n      service: s\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "http: [not read]").unwrap();
        let provider = FileProvider::from_source(Source::Directory(dir.path().to_path_buf()), false);
        let config = provider.load().unwrap();
        assert_eq!(config.http.routers.keys().collect::<Vec<_>>(), ["r", "x"]);
        assert_eq!(config.http.routers["x"].rule, "Path(`/x`)");
        assert_eq!(
            config.http.services["s"].load_balancer.as_ref().unwrap().servers[0].url,
            "http://127.0.0.1:1"
        );
        std::fs::write(
            dir.path().join("c.YAML"),
            "http:\n  routers:\n    x:\n      rule: Path(`/y`)\n      service: s\n",
        )
        .unwrap();
        let err = provider.load().unwrap_err().to_string();
        assert!(err.contains("c.YAML: router `x` is already defined in"), "{err}");
        assert!(err.ends_with("b.yml"), "{err}");
    }
}
