//! Records how this drover was built, for `drover --version`: the git commit it was built from
//! (when built in a git checkout) and whether it was built with profile-guided optimisation.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    // Rebuild when HEAD moves (a commit, a checkout); the paths work in worktrees too.
    if let Some(path) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b.starts_with("refs/")) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=DROVER_BUILD_COMMIT");
    let commit = std::env::var("DROVER_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // `.ci/pgo-build` passes `-Cprofile-use=…` (and `-Cprofile-generate` for the training build).
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let pgo = if flags.contains("profile-use") {
        "PGO"
    } else if flags.contains("profile-generate") {
        "PGO-instrumented"
    } else {
        "no PGO"
    };
    println!("cargo:rustc-env=DROVER_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=DROVER_BUILD_PGO={pgo}");
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=DROVER_BUILD_PROFILE={profile}");
}
