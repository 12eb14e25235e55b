//! `drover check`: what a start would make of a configuration, without starting.
//!
//! nginx has `nginx -t` and HAProxy `haproxy -c`: a configuration is checked before a deploy, not
//! discovered broken by the proxy that had to reload it. A check reads the static configuration
//! and every file the file provider would read ([`translate::files`], the provider's own list),
//! then merges and compiles them with the functions a start uses ([`Compiler::reload`]: the same
//! validation, the same rule parser, the same `name@provider` references). It binds no socket and
//! contacts no provider: Docker, Swarm, Consul, Marathon and DNS routes exist only at run time,
//! so the check names those providers as not contacted.
//!
//! Every problem is one line, `file:line:column: what is wrong`, which editors and terminals jump
//! to. Syntax errors and unknown keys carry the parser's position; problems the merge finds in the
//! parsed model (a rule that does not parse, a service that does not exist) are placed by finding
//! the key they are about in the file's text ([`locate`]), and a rule's own column is added to
//! its value's. A disabled router or service is an error; a warning (an ignored key, a skipped
//! server) is printed but does not fail the check.

pub mod locate;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drover_providers::aggregate::Fragments;
use drover_providers::file::translate::{self, Syntax};
use drover_providers::file::{FileProvider, Source};
use drover_providers::runtime::Status;
use drover_providers::toml_error::line_column;
use drover_providers::{DynamicConfig, Provider};

use crate::compile::Compiler;
use crate::config::{Resolved, StaticConfig};
use crate::health::HealthRegistry;
use crate::metrics::Metrics;
use crate::upstream::{Transport, Upstreams};
use locate::Step;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A start would refuse the configuration, or disable a router or service.
    Error,
    /// A start would run, ignoring or skipping something.
    Warning,
}

/// One problem, ready to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:column`, or `file` when no position is known.
    pub location: String,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.location, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.location, self.message),
        }
    }
}

/// What a check found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every problem, static configuration first, then file by file.
    pub problems: Vec<Problem>,
    /// Routers the configuration defines (enabled or not).
    pub routers: usize,
    /// Services the configuration defines (enabled or not).
    pub services: usize,
    /// Providers whose routes only exist at run time (`docker`, `consulCatalog`, …).
    pub not_contacted: Vec<&'static str>,
}

impl Report {
    /// Problems that fail the check.
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }

    /// Problems that do not.
    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }

    /// `3 routers, 2 services, 0 errors` (and the warnings, when there are some).
    pub fn summary(&self) -> String {
        let plural = |n: usize, one: &str| if n == 1 { format!("{n} {one}") } else { format!("{n} {one}s") };
        let mut line = format!(
            "{}, {}, {}",
            plural(self.routers, "router"),
            plural(self.services, "service"),
            plural(self.errors(), "error")
        );
        if self.warnings() > 0 {
            line.push_str(&format!(", {}", plural(self.warnings(), "warning")));
        }
        line
    }
}

/// Checks the static configuration at `path` (the embedded default when `None`) and what its
/// file provider would read.
pub fn check(path: Option<&Path>) -> Report {
    let mut report = Report::default();
    let resolved = match path {
        Some(path) => match StaticConfig::load(path) {
            Ok(resolved) => resolved,
            Err(e) => {
                let mut problem = raw(&e.0, path);
                if problem.location == path.display().to_string() {
                    if let Some((line, column)) = place_static(path, &problem.message) {
                        problem.location = format!("{}:{line}:{column}", path.display());
                    }
                }
                report.problems.push(problem);
                return report;
            }
        },
        None => StaticConfig::embedded(),
    };
    let providers = &resolved.config.providers;
    report.not_contacted = [
        (providers.dns.is_some(), "dns"),
        (providers.docker.is_some(), "docker"),
        (providers.swarm.is_some(), "swarm"),
        (providers.marathon.is_some(), "marathon"),
        (providers.consul_catalog.is_some(), "consulCatalog"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let Some(file_config) = &providers.file else {
        compile(&resolved, None, &[], &mut report);
        return report;
    };
    let provider = match FileProvider::new(file_config) {
        Ok(p) => p,
        Err(e) => {
            report
                .problems
                .push(raw(&e.to_string(), path.unwrap_or(Path::new("<embedded default>"))));
            return report;
        }
    };
    // A file or directory that cannot be read is the static configuration's mistake (often a
    // path relative to another working directory): it is placed at the key that names it.
    let source_key = match &provider.source {
        Source::File(_) => "providers.file.filename",
        Source::Directory(_) => "providers.file.directory",
    };
    let unreadable = |message: String| {
        problem(
            path.unwrap_or(Path::new("<embedded default>")),
            path.and_then(|p| place_static(p, source_key)),
            format!("{source_key}: {message} (paths are relative to the directory drover runs in)"),
            Severity::Error,
        )
    };
    let listed = match translate::files(&provider.source) {
        Ok(listed) => listed,
        Err(e) => {
            report.problems.push(unreadable(e.to_string()));
            return report;
        }
    };
    let mut files = Vec::new();
    let mut parsed = Vec::new();
    for (file, syntax) in listed {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                report.problems.push(unreadable(format!("{}: cannot read: {e}", file.display())));
                continue;
            }
        };
        match translate::parse(&file, &text, syntax) {
            Ok(config) => parsed.push((file.clone(), config)),
            Err(e) => report.problems.push(raw(&e.to_string(), &file)),
        }
        files.push(Text { path: file, text, syntax });
    }
    // A file that does not parse makes the provider publish nothing at all; checking the rest
    // would report references into the broken file as missing.
    if report.errors() > 0 {
        return report;
    }
    let origins: Vec<Origin> = parsed.iter().map(|(_, config)| Origin::of(config)).collect();
    let fragment = match &provider.source {
        Source::File(_) if parsed.len() == 1 => parsed.pop().map(|(_, config)| config),
        _ => match translate::merge(parsed) {
            Ok(config) => Some(config),
            Err(e) => {
                report.problems.push(duplicate(&e.to_string(), &files));
                return report;
            }
        },
    };
    compile(&resolved, fragment, &files.iter().zip(origins).collect::<Vec<_>>(), &mut report);
    report
}

/// A dynamic file's text, kept to place the problems found in it.
struct Text {
    path: PathBuf,
    text: String,
    syntax: Syntax,
}

/// Which routers and services a file defines.
struct Origin {
    routers: HashSet<String>,
    services: HashSet<String>,
}

impl Origin {
    fn of(config: &DynamicConfig) -> Self {
        Self {
            routers: config.http.routers.keys().cloned().collect(),
            services: config.http.services.keys().cloned().collect(),
        }
    }
}

/// Merges and compiles as a start does, and reports what the merge said about each router and
/// service at its place in `files`.
fn compile(resolved: &Resolved, fragment: Option<DynamicConfig>, files: &[(&Text, Origin)], report: &mut Report) {
    let names: Vec<String> = resolved.entry_points.iter().map(|(n, _)| n.clone()).collect();
    let fragments = Fragments {
        generation: 1,
        fragments: fragment.map(|f| ("file".into(), Arc::new(f))).into_iter().collect(),
    };
    let mut compiler = Compiler::new(names, Upstreams::new(Transport::default()));
    let snapshot = compiler.reload(&fragments, &HealthRegistry::default(), &Metrics::default());
    let config = &snapshot.config;
    report.routers = config.routers.len();
    report.services = config.services.len();
    let objects = config
        .routers
        .values()
        .map(|r| ("routers", &r.name, r.status, &r.errors))
        .chain(config.services.values().map(|s| ("services", &s.name, s.status, &s.errors)));
    let documents: Vec<locate::Document<'_>> = files
        .iter()
        .map(|(text, _)| locate::Document::parse(&text.text, text.syntax))
        .collect();
    for (table, name, status, errors) in objects {
        if errors.is_empty() {
            continue;
        }
        let local = name.strip_suffix("@file").unwrap_or(name);
        let severity = if status == Status::Disabled {
            Severity::Error
        } else {
            Severity::Warning
        };
        let file = files.iter().zip(&documents).find(|((_, origin), _)| {
            let names = if table == "routers" { &origin.routers } else { &origin.services };
            names.contains(local)
        });
        for message in errors {
            let (path, rule_column) = key_path(table, local, message);
            let message = if message.starts_with("http.") {
                message.clone()
            } else {
                format!("{} `{local}`: {message}", &table[..table.len() - 1])
            };
            let Some(((text, _), document)) = file else {
                report.problems.push(Problem {
                    location: "<file provider>".into(),
                    message,
                    severity,
                });
                continue;
            };
            let position = place(text, document, &path, rule_column);
            // The rule's column is now part of the position: said once.
            let message = match rule_column {
                Some(column) => message.replacen(&format!(": column {column}: "), ": ", 1),
                None => message,
            };
            report.problems.push(problem(&text.path, position, message, severity));
        }
    }
}

/// The key a merge message is about, as a path from the file's root, and the column a rule
/// error names inside the rule.
fn key_path(table: &str, local: &str, message: &str) -> (Vec<Step>, Option<usize>) {
    let mut path = vec![Step::Key("http".into()), Step::Key(table.into()), Step::Key(local.into())];
    let object = format!("http.{table}.{local}");
    // A message that names its key: it starts with it, or quotes it.
    let quoted = message.split('`').skip(1).step_by(2);
    for candidate in std::iter::once(message).chain(quoted) {
        let Some(rest) = candidate.strip_prefix(&object) else { continue };
        if !(rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')) {
            continue;
        }
        let key = rest.split([':', ' ', ';', '`']).next().unwrap_or("");
        path.extend(locate::steps(key));
        let column = message
            .strip_prefix(&format!("{object}.rule: column "))
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok());
        return (path, column);
    }
    let lower = message.to_ascii_lowercase();
    let key: &[&str] = if table == "routers" {
        if lower.contains("the service `") {
            &["service"]
        } else if lower.contains("entrypoint") {
            &["entryPoints"]
        } else if lower.contains("middleware") {
            &["middlewares"]
        } else {
            &[]
        }
    } else if lower.contains("strategy") {
        &["loadBalancer", "strategy"]
    } else if let Some(kind) = ["weighted", "mirroring", "failover"]
        .iter()
        .find(|k| lower.contains(&format!("`{k}`")))
    {
        std::slice::from_ref(kind)
    } else {
        &[]
    };
    path.extend(key.iter().map(|k| Step::Key(k.to_string())));
    (path, None)
}

/// The line and column of `path` in `file`; with `rule_column`, of that character of the rule.
fn place(file: &Text, document: &locate::Document<'_>, path: &[Step], rule_column: Option<usize>) -> Option<(usize, usize)> {
    let found = document.find(path)?;
    if let (Some(column), Some(value), true) = (rule_column, found.value, found.complete) {
        let rest = &file.text[value..];
        let quoted = rest.starts_with('"') || rest.starts_with('\'');
        let multiline = rest.starts_with("\"\"\"") || rest.starts_with("'''") || rest.starts_with('|') || rest.starts_with('>');
        if !multiline {
            let (line, start) = line_column(&file.text, value);
            return Some((line, start + usize::from(quoted) + column - 1));
        }
    }
    Some(line_column(&file.text, found.key))
}

fn problem(file: &Path, position: Option<(usize, usize)>, message: String, severity: Severity) -> Problem {
    let location = match position {
        Some((line, column)) => format!("{}:{line}:{column}", file.display()),
        None => file.display().to_string(),
    };
    Problem {
        location,
        message,
        severity,
    }
}

/// An error that already reads `file[:line:column]: message`: split at the position, if it has
/// one, so it prints the same way as the others.
fn raw(text: &str, file: &Path) -> Problem {
    let prefix = format!("{}:", file.display());
    if let Some(rest) = text.strip_prefix(&prefix) {
        let mut parts = rest.splitn(3, ':');
        if let (Some(line), Some(column), Some(message)) = (parts.next(), parts.next(), parts.next()) {
            if line.parse::<usize>().is_ok() && column.parse::<usize>().is_ok() {
                return Problem {
                    location: format!("{}:{line}:{column}", file.display()),
                    message: message.trim_start().to_string(),
                    severity: Severity::Error,
                };
            }
        }
        return problem(file, None, rest.trim_start().to_string(), Severity::Error);
    }
    let message = text.to_string();
    Problem {
        location: if file.as_os_str().is_empty() {
            "<file provider>".into()
        } else {
            file.display().to_string()
        },
        message,
        severity: Severity::Error,
    }
}

/// A static-configuration error the parser gave no position (a rule across keys, a value out of
/// range), placed at the key it names: `[providers.file] …`, `log.level …`, `entrypoint `web` …`.
fn place_static(path: &Path, message: &str) -> Option<(usize, usize)> {
    let key = if let Some(rest) = message.strip_prefix('[') {
        rest.split(']').next()?.to_string()
    } else if let Some(name) = message.strip_prefix("entrypoint `").and_then(|r| r.split('`').next()) {
        format!("entryPoints.{name}.address")
    } else {
        let first = message.split([' ', ':']).next()?;
        if !first.contains('.') {
            return None;
        }
        first.to_string()
    };
    let text = std::fs::read_to_string(path).ok()?;
    let found = locate::find(&text, Syntax::Toml, &locate::steps(&key))?;
    Some(line_column(&text, found.key))
}

/// A directory's merge error (a router or service defined in two files), placed at the second
/// definition.
fn duplicate(text: &str, files: &[Text]) -> Problem {
    for file in files {
        let prefix = format!("{}: ", file.path.display());
        let Some(message) = text.strip_prefix(&prefix) else { continue };
        let named = message.split('`').nth(1).unwrap_or("");
        let table = if message.starts_with("router") { "routers" } else { "services" };
        let path = [Step::Key("http".into()), Step::Key(table.into()), Step::Key(named.into())];
        let position = locate::find(&file.text, file.syntax, &path).map(|f| line_column(&file.text, f.key));
        return problem(&file.path, position, message.to_string(), Severity::Error);
    }
    raw(text, Path::new(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    fn static_with(dir: &Path, provider: &str) -> PathBuf {
        write(
            dir,
            "drover.toml",
            &format!("[entryPoints.web]\naddress = \":8080\"\n[api]\naddress = \"127.0.0.1:8081\"\n{provider}"),
        )
    }

    #[test]
    fn a_clean_configuration_counts_routers_and_services() {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes = write(
            dir.path(),
            "routes.toml",
            "[http.routers.a]\nrule = \"Path(`/a`)\"\nservice = \"s\"\n[http.routers.b]\nrule = \"Path(`/b`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9\"\n",
        );
        let config = static_with(dir.path(), &format!("[providers.file]\nfilename = \"{}\"\n", routes.display()));
        let report = check(Some(&config));
        assert_eq!(report.problems, []);
        assert_eq!(report.summary(), "2 routers, 1 service, 0 errors");
    }

    #[test]
    fn semantic_errors_are_placed_at_their_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes = write(
            dir.path(),
            "routes.yaml",
            "http:\n  routers:\n    bad-rule:\n      rule: Path(`/a`) && Hots(`x`)\n      service: s\n    lost:\n      rule: Path(`/b`)\n      service: nowhere\n  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: http://127.0.0.1:9\n          - url: \"ftp://x\"\n",
        );
        let config = static_with(dir.path(), &format!("[providers.file]\nfilename = \"{}\"\n", routes.display()));
        let report = check(Some(&config));
        let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        let file = routes.display();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:4:27: http.routers.bad-rule.rule: unknown matcher `Hots`"))),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:8:7: router `lost`: the service `nowhere@file` does not exist"))),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:14:11: warning: http.services.s.loadBalancer.servers[1]"))),
            "{lines:#?}"
        );
        assert_eq!(report.summary(), "2 routers, 1 service, 2 errors, 1 warning");
    }

    #[test]
    fn syntax_errors_stop_before_the_merge_and_keep_the_parsers_position() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).expect("mkdir");
        write(
            &conf,
            "a.toml",
            "[http.routers.a]\nrule = \"Path(`/`)\"\nservice = \"s\"\nservise = \"t\"\n",
        );
        write(&conf, "b.toml", "[http.routers.b]\nrule = \"Path(`/b`)\"\nservice = \"s\"\n");
        let config = static_with(dir.path(), &format!("[providers.file]\ndirectory = \"{}\"\n", conf.display()));
        let report = check(Some(&config));
        assert_eq!(report.errors(), 1, "{:#?}", report.problems);
        assert_eq!(report.problems[0].location, format!("{}:4:1", conf.join("a.toml").display()));
        assert!(report.problems[0].message.contains("servise"), "{}", report.problems[0]);
    }

    #[test]
    fn a_router_defined_twice_in_a_directory_names_both_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).expect("mkdir");
        let router = "[http.routers.a]\nrule = \"Path(`/`)\"\nservice = \"s\"\n";
        write(&conf, "a.toml", router);
        write(&conf, "b.toml", &format!("# the same again\n{router}"));
        let config = static_with(dir.path(), &format!("[providers.file]\ndirectory = \"{}\"\n", conf.display()));
        let report = check(Some(&config));
        assert_eq!(report.errors(), 1, "{:#?}", report.problems);
        assert_eq!(report.problems[0].location, format!("{}:2:15", conf.join("b.toml").display()));
        assert!(report.problems[0].message.contains("a.toml"), "{}", report.problems[0]);
    }

    #[test]
    fn a_static_error_without_a_parser_position_is_placed_at_its_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write(
            dir.path(),
            "drover.toml",
            "[entryPoints.web]\naddress = \":80\"\n\n[log]\nformat = \"logfmt\"\n",
        );
        let report = check(Some(&config));
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert_eq!(report.problems[0].location, format!("{}:5:1", config.display()));
        assert!(report.problems[0].message.contains("`common` or `json`"), "{}", report.problems[0]);
        let config = write(
            dir.path(),
            "drover.toml",
            "[entryPoints.web]\naddress = \":80\"\n[providers.file]\nwatch = true\n",
        );
        let report = check(Some(&config));
        assert_eq!(
            report.problems[0].location,
            format!("{}:3:12", config.display()),
            "{}",
            report.problems[0]
        );
    }

    #[test]
    fn a_dynamic_file_that_cannot_be_read_is_placed_at_the_key_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = static_with(dir.path(), "[providers.file]\nfilename = \"no/such/routes.toml\"\n");
        let report = check(Some(&config));
        assert_eq!(report.errors(), 1, "{:#?}", report.problems);
        assert_eq!(report.problems[0].location, format!("{}:6:1", config.display()));
        assert!(
            report.problems[0]
                .message
                .starts_with("providers.file.filename: no/such/routes.toml: cannot read"),
            "{}",
            report.problems[0]
        );
    }

    #[test]
    fn a_static_error_keeps_its_position() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write(
            dir.path(),
            "drover.toml",
            "[entryPoints.web]\naddress = \":80\"\n[log]\nlevle = \"x\"\n",
        );
        let report = check(Some(&config));
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].location, format!("{}:4:1", config.display()));
        assert_eq!(report.summary(), "0 routers, 0 services, 1 error");
    }
}
