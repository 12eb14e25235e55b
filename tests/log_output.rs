//! Logs that fit where they go: a log redirected to a file has no terminal colour codes, and
//! `[log] format = "json"` with `filePath` writes one JSON object per line to that file, provider
//! and reload events with their fields.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{free_port, DroverProcess};

const ROUTES: &str = "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9\"\n\
                      [http.routers.broken]\nrule = \"Paht(`/x`)\"\nservice = \"s\"\n";

/// Starts the binary with `[log]` set to `log` and its standard error sent to `stderr.log`.
fn start(dir: tempfile::TempDir, log: &str) -> DroverProcess {
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, ROUTES).expect("write routes");
    let (web, api) = (free_port(), free_port());
    let config = dir.path().join("drover.toml");
    std::fs::write(
        &config,
        format!(
            "[entryPoints.web]\naddress = \"{web}\"\n[api]\naddress = \"{api}\"\n[log]\n{log}\n[providers.file]\nfilename = \"{}\"\n",
            routes.display()
        ),
    )
    .expect("write static config");
    let child = std::process::Command::new(support::drover_binary())
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file"))
        .spawn()
        .expect("drover starts");
    DroverProcess { child, web, api, dir }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Breaks the routes file (the provider reports an error) and repairs it with one router more
/// (a new configuration is in force), waiting on `log` for each.
async fn break_and_repair(drover: &DroverProcess, log: &Path, in_force: impl Fn(&str) -> usize) {
    let routes = drover.dir.path().join("routes.toml");
    std::fs::write(&routes, "[http.routers.r\n").expect("break routes");
    let text = support::wait_for_text(Duration::from_secs(10), || read(log), |t| t.contains("routes.toml:1:")).await;
    assert!(text.contains("routes.toml:1:"), "no provider error logged:\n{text}");
    let before = in_force(&text);
    std::fs::write(
        &routes,
        format!("{ROUTES}[http.routers.more]\nrule = \"Path(`/more`)\"\nservice = \"s\"\n"),
    )
    .expect("repair routes");
    let text = support::wait_for_text(Duration::from_secs(10), || read(log), |t| in_force(t) > before).await;
    assert!(in_force(&text) > before, "no new configuration logged:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_to_a_file_has_no_escape_sequences() {
    let drover = start(tempfile::tempdir().expect("temp dir"), "level = \"info\"");
    let log = drover.dir.path().join("stderr.log");
    let text = support::wait_for_text(Duration::from_secs(10), || read(&log), |t| t.contains("configuration in force")).await;
    assert!(
        text.contains("configuration in force"),
        "drover never applied its configuration:\n{text}"
    );
    break_and_repair(&drover, &log, |t| t.matches("configuration in force").count()).await;
    let bytes = std::fs::read(&log).expect("read log");
    let text = String::from_utf8_lossy(&bytes);
    // Levels that a terminal would show in colour were written, without the codes.
    assert!(text.contains(" WARN ") && text.contains(" ERROR "), "{text}");
    assert!(!bytes.contains(&0x1b), "escape sequences in a redirected log:\n{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_line_by_line_with_structured_fields() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("drover.json.log");
    let drover = start(
        dir,
        &format!("level = \"info\"\nformat = \"json\"\nfilePath = \"{}\"", log.display()),
    );
    let text = support::wait_for_text(Duration::from_secs(10), || read(&log), |t| t.contains("configuration in force")).await;
    assert!(
        text.contains("configuration in force"),
        "drover never applied its configuration:\n{text}"
    );
    break_and_repair(&drover, &log, |t| t.matches("configuration in force").count()).await;

    let text = read(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let find = |what: &dyn Fn(&serde_json::Value) -> bool| lines.iter().filter(|l| what(l)).cloned().collect::<Vec<_>>();
    for line in &lines {
        assert!(
            line["time"].is_string() && line["level"].is_string() && line["message"].is_string(),
            "{line}"
        );
    }
    // Reloads: the generation and the counts as numbers.
    let reloads = find(&|l| l["message"] == "configuration in force");
    assert!(reloads.len() >= 2, "{text}");
    let last = reloads.last().expect("a reload");
    assert!(last["generation"].as_u64().is_some_and(|g| g >= 2), "{last}");
    assert_eq!(last["routers"], 3, "{last}");
    // The provider's error and its changes name the provider in a field.
    let errors = find(&|l| l["level"] == "error" && l["provider"] == "file");
    assert!(
        errors
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains("routes.toml:1:"))),
        "{text}"
    );
    let changes = find(&|l| l["message"] == "provider configuration changed" && l["provider"] == "file");
    assert!(changes.iter().any(|l| l["routers"] == 3), "{text}");
    // The disabled router is a warning with its name in a field.
    assert!(
        !find(&|l| l["level"] == "warn" && l["router"] == "broken@file").is_empty(),
        "{text}"
    );
    // With filePath the log goes to the file only.
    let stderr = read(&drover.dir.path().join("stderr.log"));
    assert!(stderr.is_empty(), "standard error got: {stderr}");
}

/// Runs drover on a terminal (`script` gives it a pseudo-terminal, and copies what it shows to a
/// file) until its configuration is in force; returns what the terminal showed.
async fn on_a_terminal(log: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, ROUTES).expect("write routes");
    let config = dir.path().join("drover.toml");
    std::fs::write(
        &config,
        format!(
            "[entryPoints.web]\naddress = \"{}\"\n[api]\naddress = \"{}\"\n[log]\n{log}\n[providers.file]\nfilename = \"{}\"\n",
            free_port(),
            free_port(),
            routes.display()
        ),
    )
    .expect("write static config");
    let shown = dir.path().join("terminal.txt");
    let command = format!("'{}' --config '{}'", support::drover_binary().display(), config.display());
    let child = std::process::Command::new("script")
        .args(["-q", "-f", "-e", "-c", &command])
        .arg(&shown)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `script` (util-linux; `{}` installs it): {e}", support::SETUP));
    // Killing `script` closes the terminal, which hangs drover up.
    let running = DroverProcess {
        child,
        web: free_port(),
        api: free_port(),
        dir,
    };
    let text = support::wait_for_text(Duration::from_secs(10), || read(&shown), |t| t.contains("configuration in force")).await;
    drop(running);
    assert!(
        text.contains("configuration in force"),
        "drover never applied its configuration:\n{text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_colours_unless_no_color_is_set() {
    let coloured = on_a_terminal("level = \"info\"").await;
    assert!(coloured.contains("\u{1b}["), "no colour on a terminal:\n{coloured:?}");
    let plain = on_a_terminal("level = \"info\"\nnoColor = true").await;
    assert!(!plain.contains('\u{1b}'), "colour despite noColor:\n{plain:?}");
}
