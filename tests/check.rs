//! `drover check`: the quickstart passes; broken static and dynamic files fail with exit status 2
//! and one `file:line:column: problem` line each; nothing is bound while it runs. And
//! `drover --version` names the build.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn drover(args: &[&str]) -> Output {
    Command::new(support::drover_binary())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DROVER_CONFIG")
        .output()
        .expect("drover runs")
}

fn check(config: &Path) -> (i32, String) {
    let out = drover(&["check", "--config", config.to_str().expect("utf-8 path")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().expect("exited, not killed"), text)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

#[test]
fn the_quickstart_checks_clean() {
    let (code, out) = check(Path::new("examples/quickstart/drover.toml"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "2 routers, 2 services, 0 errors");
    // The Docker example: drover cannot know its routes without the engine, and says so.
    let (code, out) = check(Path::new("examples/overlay-stack/drover.toml"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("providers.docker was not contacted"), "{out}");
    assert!(out.trim_end().ends_with("0 routers, 0 services, 0 errors"), "{out}");
}

#[test]
fn a_broken_static_file_fails_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write(
        dir.path(),
        "drover.toml",
        "[entryPoints.web]\naddress = \":8080\"\n\n[log]\nlevel = \"info\"\nfromat = \"json\"\n",
    );
    let (code, out) = check(&config);
    assert_eq!(code, 2, "{out}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{}:6:1: ", config.display())) && first.contains("fromat"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("0 routers, 0 services, 1 error"), "{out}");
}

#[test]
fn broken_dynamic_files_fail_with_every_problem_at_its_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    let toml = write(
        &conf,
        "shop.toml",
        "[http.routers.shop]\nrule = \"Host(`shop.example`) && PathPrefx(`/`)\"\nservice = \"shop\"\n\n\
         [http.routers.admin]\nrule = \"Host(`admin.example`)\"\nservice = \"backoffice\"\n\n\
         [[http.services.shop.loadBalancer.servers]]\nurl = \"http://10.0.0.1:80\"\n",
    );
    let yaml = write(
        &conf,
        "api.yaml",
        "http:\n  routers:\n    api:\n      rule: PathPrefix(`/api`)\n      service: api\n      entryPoints: [websecure]\n  services:\n    api:\n      loadBalancer:\n        servers:\n          - url: http://10.0.0.2:80\n",
    );
    let config = write(
        dir.path(),
        "drover.toml",
        &format!(
            "[entryPoints.web]\naddress = \":8080\"\n[providers.file]\ndirectory = \"{}\"\n",
            conf.display()
        ),
    );
    let (code, out) = check(&config);
    assert_eq!(code, 2, "{out}");
    let expected = [
        // The rule's column inside the value: `PathPrefx` starts at character 33 of line 2.
        format!("{}:2:33: http.routers.shop.rule: unknown matcher `PathPrefx`", toml.display()),
        format!(
            "{}:7:1: router `admin`: the service `backoffice@file` does not exist",
            toml.display()
        ),
        format!("{}:6:7: router `api`: none of the router's entrypoints exists", yaml.display()),
    ];
    for line in &expected {
        assert!(out.lines().any(|l| l.starts_with(line.as_str())), "missing `{line}` in:\n{out}");
    }
    assert!(out.trim_end().ends_with("3 routers, 2 services, 4 errors"), "{out}");

    // A syntax error: the parser's position, and no merge (the provider would publish nothing).
    std::fs::write(
        &yaml,
        "http:\n  routers:\n    api:\n      rule: PathPrefix(`/api`)\n      sevice: api\n",
    )
    .expect("rewrite");
    let (code, out) = check(&config);
    assert_eq!(code, 2, "{out}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{}:5:7: ", yaml.display())) && first.contains("sevice"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("1 error"), "{out}");
}

#[test]
fn check_binds_nothing_a_start_would_bind() {
    // The test holds the configuration's ports: a start fails on them, a check does not.
    let web = TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = write(
        dir.path(),
        "routes.toml",
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://127.0.0.1:9\"\n",
    );
    let config = write(
        dir.path(),
        "drover.toml",
        &format!(
            "[entryPoints.web]\naddress = \"{}\"\n[api]\naddress = \"{}\"\n[providers.file]\nfilename = \"{}\"\n",
            web.local_addr().expect("addr"),
            api.local_addr().expect("addr"),
            routes.display()
        ),
    );
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "1 router, 1 service, 0 errors");

    let mut start = Command::new(support::drover_binary())
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = start.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = start.kill();
            panic!("drover started on ports the test holds");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "a start cannot bind the held ports");
}

#[test]
fn version_names_the_build() {
    let out = drover(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("drover {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("PGO"), "{text}");
    // Built from a git checkout, it names the commit (a commit made since would rebuild it).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(head) = head.ok().filter(|h| h.status.success()) {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(text.contains(&format!("(commit {}", head.trim())), "{text} (HEAD {head})");
    }
}
