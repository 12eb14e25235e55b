#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails if any of them crashes.
#
#   tests/fuzz/run.sh [seconds-per-target]    (default 20: build + 10 targets in about 5 minutes
#                                              on 2 cores with a warm target directory)
#
# Needs only the stable toolchain: cargo-fuzz passes nightly flags (-Z…), which RUSTC_BOOTSTRAP
# lets a stable compiler accept. A crash leaves its input in tests/fuzz/artifacts/<target>/ and
# the command to reproduce it in the output. See tests/fuzz/README.md.
set -euo pipefail

seconds="${1:-20}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd "$root"
# --dev (opt-level 1, see Cargo.toml): after a change to drover, an incremental build takes
# seconds where a release build takes minutes; it has debug assertions and overflow checks.
# No AddressSanitizer: both drover crates forbid unsafe code, and the build is smaller and
# faster without it.
fuzz=(--fuzz-dir tests/fuzz --sanitizer none --dev)
cargo fuzz build "${fuzz[@]}"

failed=()
summary=()
for target in $(cargo fuzz list --fuzz-dir tests/fuzz); do
    log="$(mktemp)"
    echo "== $target: ${seconds}s"
    # The corpus directory collects what a run finds (ignored by git, except the seed-* files);
    # -timeout: an input that takes 10 s counts as a hang.
    status=0
    cargo fuzz run "${fuzz[@]}" "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        tail -n 60 "$log"
    fi
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    summary+=("$(printf '%-16s %10s inputs in %ss' "$target" "$runs" "$seconds")")
    rm -f "$log"
done

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs in tests/fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crash"
