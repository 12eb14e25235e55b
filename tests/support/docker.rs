//! Docker helpers for the end-to-end tests and the Docker bench: is an engine there, the test
//! images (built `FROM scratch` from binaries this build produced, no pull), and a scope that
//! names and removes every container and network a test creates, also when it panics.
//!
//! Images (rebuilt only when a binary changed; the hash is an image label):
//! * `drover-test:latest`: `/drover` (entrypoint, `--config /etc/drover/drover.toml`).
//! * `whoami-test:latest`: `/whoami --bind 0.0.0.0 --port 80` (append `--name <n>`), plus
//!   `/drover`, used only as a health probe (`drover --check --config f` exits 0 only when the
//!   file `f` exists): a scratch image has no shell for a HEALTHCHECK.
//!
//! The binaries are linked statically (`-C target-feature=+crt-static` for
//! x86_64-unknown-linux-gnu, into `target/x86_64-unknown-linux-gnu/debug/`), so the images need
//! no libc. Static glibc cannot resolve host names through NSS; drover in these images only
//! connects to IP addresses and the Docker socket.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The image with drover.
pub const DROVER_IMAGE: &str = "drover-test:latest";
/// The image with whoami.
pub const WHOAMI_IMAGE: &str = "whoami-test:latest";
const TARGET: &str = "x86_64-unknown-linux-gnu";
const HASH_LABEL: &str = "org.drover.test.binaries";

/// Serialises Docker tests within one test binary: they share one engine, and load tests must
/// not compete with each other for two cores.
pub static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `docker args…`; stdout on success, stderr (with the command) on failure.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    text(out, args)
}

fn text(out: Output, args: &[&str]) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Like [`docker`], panicking with the error: for steps a test cannot go on without.
pub fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a Docker engine answers. When none does: panics if `DROVER_REQUIRE_DOCKER=1` (CI),
/// otherwise prints a loud SKIP line and returns false.
pub fn engine_or_skip(test: &str) -> bool {
    let answer = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output();
    let problem = match answer {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => format!("cannot run the docker CLI: {e}"),
    };
    if std::env::var("DROVER_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: DROVER_REQUIRE_DOCKER=1 but no Docker engine answers: {problem}");
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: no Docker engine ({problem}); set DROVER_REQUIRE_DOCKER=1 to make this a failure !!!!!!!!\n");
    false
}

fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("target dir above target/<profile>/deps")
        .to_path_buf()
}

/// Builds the static `drover` binary and `whoami` example for the images; returns their paths.
/// This is the same command a user runs (see the README).
pub fn build_static_binaries() -> (PathBuf, PathBuf) {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--target",
            TARGET,
            "-p",
            "drover",
            "--bin",
            "drover",
            "-p",
            "drover-e2e",
            "--example",
            "whoami",
        ])
        .env(
            format!("CARGO_TARGET_{}_RUSTFLAGS", TARGET.to_uppercase().replace('-', "_")),
            "-C target-feature=+crt-static",
        )
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the static binaries failed");
    let dir = target_dir().join(TARGET).join("debug");
    (dir.join("drover"), dir.join("examples").join("whoami"))
}

fn file_hash(paths: &[&Path]) -> String {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in paths {
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        h.write(&bytes);
    }
    format!("{:016x}", h.finish())
}

/// Builds `tag` from `dockerfile` with `files` in its context, unless an image with the same
/// binaries hash exists.
fn build_image(tag: &str, dockerfile: &str, files: &[(&Path, &str)], hash: &str) {
    let current = docker(&[
        "image",
        "inspect",
        "-f",
        &format!("{{{{ index .Config.Labels \"{HASH_LABEL}\" }}}}"),
        tag,
    ]);
    if current.as_deref() == Ok(hash) {
        return;
    }
    let dir = tempfile::tempdir().expect("build context");
    for (src, name) in files {
        let dst = dir.path().join(name);
        // Debug symbols only make the image big.
        let stripped = !name.ends_with(".toml")
            && Command::new("strip")
                .arg("-o")
                .arg(&dst)
                .arg(src)
                .status()
                .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    build_tagged(tag, dir.path(), &["--label", &format!("{HASH_LABEL}={hash}")]);
}

/// `docker build -t tag context`, removing the image the tag pointed to before (it would be left
/// dangling).
fn build_tagged(tag: &str, context: &Path, extra: &[&str]) {
    let previous = docker(&["image", "inspect", "-f", "{{ .Id }}", tag]).ok();
    let context = context.display().to_string();
    let mut args = vec!["build", "-q"];
    args.extend_from_slice(extra);
    args.extend(["-t", tag, &context]);
    let built = must(&args);
    if let Some(previous) = previous.filter(|p| *p != built) {
        let _ = docker(&["rmi", &previous]);
    }
}

/// The Dockerfile of the drover test image (the same as the repository's `Dockerfile` final
/// stage, with the binary built here).
pub const DROVER_DOCKERFILE: &str = "FROM scratch\nCOPY drover /drover\nCOPY drover.toml /etc/drover/drover.toml\nEXPOSE 8080\nENTRYPOINT [\"/drover\"]\nCMD [\"--config\", \"/etc/drover/drover.toml\"]\n";
const WHOAMI_DOCKERFILE: &str = "FROM scratch\nCOPY whoami /whoami\nCOPY drover /drover\nEXPOSE 80\nENTRYPOINT [\"/whoami\", \"--bind\", \"0.0.0.0\", \"--port\", \"80\"]\n";

/// Builds (or finds up to date) both test images, once per process.
pub fn images() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let (drover, whoami) = build_static_binaries();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/overlay-stack/drover.toml");
        let hash = file_hash(&[&drover, &whoami, &config]);
        build_image(
            DROVER_IMAGE,
            DROVER_DOCKERFILE,
            &[(&drover, "drover"), (&config, "drover.toml")],
            &hash,
        );
        build_image(WHOAMI_IMAGE, WHOAMI_DOCKERFILE, &[(&whoami, "whoami"), (&drover, "drover")], &hash);
    });
}

/// A derived image `FROM base` with extra Dockerfile lines (no context), built if missing.
pub fn derived_image(tag: &str, base: &str, lines: &str) {
    let dir = tempfile::tempdir().expect("build context");
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\n{lines}\n")).expect("Dockerfile");
    build_tagged(tag, dir.path(), &[]);
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Names and removes what a test creates (containers first, then networks), on drop.
pub struct Scope {
    /// Prefix of every name: `drv-<pid>-<n>`.
    pub prefix: String,
    containers: std::sync::Mutex<Vec<String>>,
    networks: std::sync::Mutex<Vec<String>>,
}

impl Scope {
    /// A fresh scope.
    pub fn new() -> Self {
        Self {
            prefix: format!("drv-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
            containers: Default::default(),
            networks: Default::default(),
        }
    }

    /// `<prefix>-<name>`.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Creates a bridge network; returns its full name.
    pub fn network(&self, name: &str, extra: &[&str]) -> String {
        let full = self.name(name);
        let mut args = vec!["network", "create"];
        args.extend_from_slice(extra);
        args.push(&full);
        must(&args);
        self.networks.lock().expect("scope lock").push(full.clone());
        full
    }

    /// Records a network created some other way, so it is removed.
    pub fn adopt_network(&self, full: &str) {
        self.networks.lock().expect("scope lock").push(full.to_string());
    }

    /// `docker run -d --name <prefix>-<name> <args…>`; returns the full name.
    pub fn run(&self, name: &str, args: &[&str]) -> String {
        let full = self.name(name);
        self.containers.lock().expect("scope lock").push(full.clone());
        let mut all = vec!["run", "-d", "--name", &full];
        all.extend_from_slice(args);
        must(&all);
        full
    }

    /// `docker create --name <prefix>-<name> <args…>`; returns the full name.
    pub fn create(&self, name: &str, args: &[&str]) -> String {
        let full = self.name(name);
        self.containers.lock().expect("scope lock").push(full.clone());
        let mut all = vec!["create", "--name", &full];
        all.extend_from_slice(args);
        must(&all);
        full
    }

    /// A whoami container `<prefix>-<name>` on `network`, answering with that name, with
    /// `labels` (`key=value`).
    pub fn whoami(&self, name: &str, network: &str, labels: &[String], extra: &[&str]) -> String {
        let mut args: Vec<String> = vec!["--network".into(), network.into()];
        for l in labels {
            args.push("--label".into());
            args.push(l.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(WHOAMI_IMAGE.into());
        args.push("--name".into());
        args.push(self.name(name));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(name, &args)
    }

    /// Removes everything now (also done on drop).
    pub fn cleanup(&self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap_or_else(|e| e.into_inner()));
        for chunk in containers.chunks(50) {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(chunk.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let networks = std::mem::take(&mut *self.networks.lock().unwrap_or_else(|e| e.into_inner()));
        for n in networks.iter().rev() {
            let _ = docker(&["network", "rm", n]);
        }
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `docker inspect -f <format> <name>`.
pub fn inspect(name: &str, format: &str) -> String {
    must(&["inspect", "-f", format, name])
}

/// The container's IP on `network`.
pub fn ip(name: &str, network: &str) -> String {
    inspect(
        name,
        &format!("{{{{ (index .NetworkSettings.Networks \"{network}\").IPAddress }}}}"),
    )
}

/// The host address a container's `port` is published on.
pub fn published(name: &str, port: &str) -> std::net::SocketAddr {
    let text = must(&["port", name, port]);
    text.lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no published address for {name} {port}: {text}"))
}

/// Runs the drover image on `networks` (the first must not be `--internal`: it carries the
/// published port) with `config` (static TOML) and the Docker socket mounted, publishing only
/// the entrypoint `:8080` on 127.0.0.1; returns its name and the host address.
pub fn run_drover_container(scope: &Scope, name: &str, networks: &[&str], config: &str, dir: &Path) -> (String, std::net::SocketAddr) {
    let network = networks.first().copied().unwrap_or("bridge");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write drover config");
    let mount = format!("{}:/etc/drover/drover.toml:ro", path.display());
    let full = scope.run(
        name,
        &[
            "--network",
            network,
            "-p",
            "127.0.0.1::8080",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &mount,
            DROVER_IMAGE,
        ],
    );
    for other in networks.iter().skip(1) {
        must(&["network", "connect", other, &full]);
    }
    let addr = published(&full, "8080/tcp");
    (full, addr)
}

/// The logs of a container (stdout and stderr), for failure messages.
pub fn logs(name: &str) -> String {
    Command::new("docker")
        .args(["logs", "--tail", "60", name])
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default()
}

/// Polls `probe` until it returns `Some` or `limit` passes.
pub async fn eventually<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
