#!/usr/bin/env bash
# The test command (README, .ci/run): format, lints, unit tests with the generated-CRD drift
# check, then integration tests against a real control plane and real source servers on
# loopback (hack/testenv.sh, brought up here; built from Go modules on first use).
#
# Environment:
#   SKIP_INTEGRATION=1   stop after the unit tests
#   CI=true              stop the test environment at the end (developers keep it warm)
set -euo pipefail
cd "$(dirname "$0")/.."

# A run builds everything once: incremental caches would only double the disk it takes (the CI
# machine ran out of space with them), never speed it up.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

results=$(mktemp)
trap 'rm -f "$results"' EXIT

# cargo_test ARGS...: cargo test, with its summary lines kept for the closing total.
cargo_test() {
  cargo test "$@" 2>&1 | tee -a "$results"
  return "${PIPESTATUS[0]}"
}

# The closing line CI reads: the totals of every cargo test run above.
summary() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "total: %d passed, %d failed\n", p, f }' "$results"
}

step() {
  local name=$1; shift
  printf '\n==> %s\n' "$name"
  local started=$SECONDS
  if ! "$@"; then
    printf '==> FAILED: %s (after %ss)\n' "$name" "$((SECONDS - started))" >&2
    exit 1
  fi
  printf '==> ok: %s (%ss)\n' "$name" "$((SECONDS - started))"
}

step "cargo fmt --check" cargo fmt --all -- --check
step "crate dependency rules" hack/check-crate-rules.sh
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# Includes the golden test that fails when manifests/crds is stale (hack/gen-crds.sh fixes it).
step "unit tests and CRD drift check" cargo_test --workspace --all-features --locked
step "generated files are committed" git diff --exit-code --stat -- manifests

if [ "${SKIP_INTEGRATION:-}" = 1 ]; then
  echo "SKIP_INTEGRATION=1: integration tests skipped"
  summary
  exit 0
fi

if [ "${CI:-}" = true ]; then
  trap 'hack/testenv.sh down || true; rm -f "$results"' EXIT
fi
step "test environment up" hack/testenv.sh up
# shellcheck source=/dev/null
. target/testenv/env.sh
step "integration tests against the control plane" \
  cargo_test --workspace --all-features --locked -- --ignored --test-threads=4
summary
