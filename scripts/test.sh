#!/usr/bin/env bash
# lnet's whole check, as CI runs it: installs what the checks need (scripts/deps.sh; as
# root), then formatting, lints, every test (root tests run when this runs as root, each
# inside a network namespace it makes itself), the quickstarts, then the benchmarks in a
# quick mode so they build and run. Run from anywhere, as root: `scripts/test.sh`.
#
# A test that cannot run here (not root, a tool missing) returns early, which cargo shows as
# `ok`; each such skip writes a line to $LNET_SKIP_LOG, and the closing line counts them as
# skipped, not passed. CI sets LNET_REQUIRE_ROOT=1 and LNET_REQUIRE_TOOLS=1, which make
# every such skip a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "scripts/deps.sh: what the checks need"
scripts/deps.sh

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

log=$(mktemp)
LNET_SKIP_LOG=$(mktemp)
export LNET_SKIP_LOG
trap 'rm -f "$log" "$LNET_SKIP_LOG"' EXIT
skips() { wc -l <"$LNET_SKIP_LOG"; }
# The same record as lnet_kernel::testing::skip, for a step of this script.
skip() {
  if [ "${LNET_REQUIRE_ROOT:-}" = 1 ]; then
    echo "$1 $2, and LNET_REQUIRE_ROOT=1 forbids skipping it: run this as root" >&2
    exit 1
  fi
  echo "SKIPPED $1: $2" | tee -a "$LNET_SKIP_LOG"
}

step "cargo test (root tests $( [ "$(id -u)" = 0 ] && echo run || echo skipped: not root))"
set +e
run_private cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Summed over every test binary. A skipped test is among cargo's `passed`; an ignored one
# (lnet has none) did not run either.
read -r passed failed ignored < <(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { print p + 0, f + 0, i + 0 }' "$log")
test_skips=$(skips)
passed=$((passed - test_skips))
summary() { echo "$passed passed, $failed failed, $((ignored + $(skips))) skipped"; }
[ "$status" = 0 ] || { printf 'tests: %s\n' "$(summary)"; exit "$status"; }

step "quickstarts: the daemon session, and the library example"
if [ "$(id -u)" = 0 ]; then
  scripts/quickstart.sh
  run_private cargo run --locked --quiet --example quickstart
else
  skip quickstarts "need root (network namespaces, links, nftables)"
fi

step "benchmarks (quick mode)"
LNET_BENCH_QUICK=1 run_private cargo bench --workspace --locked --benches

if [ "$(skips)" -gt 0 ]; then
  step "skipped (not run here, so not counted as passed)"
  sort "$LNET_SKIP_LOG"
fi
printf '\n==> all checks passed\ntests: %s\n' "$(summary)"
