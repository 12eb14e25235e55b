//! How this binary was built, for `drover --version` and bug reports: the version, the git commit
//! (set by `build.rs`, `unknown` outside a git checkout, or `DROVER_BUILD_COMMIT` when the
//! builder has no `.git`, as in a Docker build) and whether it was built with profile-guided
//! optimisation (`.ci/pgo-build`), which changes its speed but not its behaviour.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built (`unknown` when it could not be told).
pub const COMMIT: &str = env!("DROVER_BUILD_COMMIT");
/// `PGO`, `PGO-instrumented` or `no PGO`.
pub const PGO: &str = env!("DROVER_BUILD_PGO");
/// The cargo profile (`debug`, `release`).
pub const PROFILE: &str = env!("DROVER_BUILD_PROFILE");

/// `0.1.0 (commit 1a2b3c4d5e6f, release, PGO)`: what `--version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DROVER_BUILD_COMMIT"),
    ", ",
    env!("DROVER_BUILD_PROFILE"),
    ", ",
    env!("DROVER_BUILD_PGO"),
    ")"
);
