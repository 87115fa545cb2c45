#!/usr/bin/env bash
# lnet's whole check, as CI runs it: formatting, lints, every test (root tests run when this
# runs as root, each inside a network namespace it makes itself), then the benchmarks in a
# quick mode so they build and run. Run from anywhere: `sudo scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Tests run in a private mount namespace as a second line of defence: every test removes its
# own namespace bind mounts, and whatever a crashed test might leave vanishes with this one.
run_private() {
  if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    unshare --mount --propagation private "$@"
  else
    "$@"
  fi
}

step "cargo test (root tests $( [ "$(id -u)" = 0 ] && echo run || echo skipped: not root))"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
run_private cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One line for the whole run, summed over every test binary.
summary=$(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped", p, f, i }' "$log")
[ "$status" = 0 ] || { echo "tests: $summary"; exit "$status"; }

step "quickstarts: the daemon session, and the library example"
if [ "$(id -u)" = 0 ]; then
  scripts/quickstart.sh
  run_private cargo run --locked --quiet --example quickstart
else
  echo "skipped: the quickstarts need root"
fi

step "benchmarks (quick mode)"
LNET_BENCH_QUICK=1 run_private cargo bench --workspace --locked --benches

printf '\n==> all checks passed\ntests: %s\n' "$summary"
