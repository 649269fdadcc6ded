#!/usr/bin/env bash
# Runs the real flux CLI (built from Go modules, cached per version by hack/build-testbins.sh)
# against the Driftless controllers the quickstart leaves running, and reports which commands
# work. Optional: not part of .ci/run (the flux build takes minutes cold).
#
#   hack/compat-flux-cli.sh          (starts hack/quickstart.sh first when it is not running)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=hack/versions.sh
. hack/versions.sh
hack/build-testbins.sh flux
FLUX=$TESTBINS_CACHE/flux-v$FLUX_VERSION/flux

if ! { [ -f target/testenv/env.sh ] && . target/testenv/env.sh && \
       $KUBECTL -n flux-system get kustomization podinfo-staging >/dev/null 2>&1; }; then
  hack/quickstart.sh >target/compat-quickstart.log 2>&1 || { tail -30 target/compat-quickstart.log; exit 1; }
  . target/testenv/env.sh
fi

pass=0 fail=0
report=()
# check NAME EXPECTED-OUTPUT-REGEX CMD...: runs a flux command, which must succeed and print
# the expected text.
check() {
  local name=$1 want=$2; shift 2
  local out
  printf '\n\033[1m$ flux %s\033[0m\n' "$*"
  if out=$("$FLUX" "$@" 2>&1) && grep -Eq -- "$want" <<<"$out"; then
    printf '%s\n' "$out"
    pass=$((pass + 1)); report+=("| \`flux $*\` | works |")
  else
    printf '%s\n' "$out"
    echo "^^^ FAILED: $name (expected /$want/)"
    fail=$((fail + 1)); report+=("| \`flux $*\` | **fails**: $(head -c 200 <<<"$out" | tr '\n|' ' /') |")
  fi
}

check "version" "flux: v$FLUX_VERSION" version --client
check "check --pre" "prerequisites checks passed" check --pre
check "check" "all checks passed" check
check "get all -A" "kustomization/podinfo-staging" get all -A
check "get sources git" "flux-system" get sources git
check "get kustomizations" "podinfo-production" get kustomizations
check "reconcile with source" "applied revision" reconcile kustomization podinfo-staging --with-source
check "reconcile source" "fetched revision" reconcile source git flux-system
check "suspend" "suspended" suspend kustomization podinfo-staging
check "get shows suspended" "podinfo-staging.*True" get kustomization podinfo-staging
check "resume" "applied revision|reconciliation completed" resume kustomization podinfo-staging
check "tree" "Deployment/podinfo-staging/podinfo" tree kustomization flux-system
check "export" "kind: Kustomization" export kustomization podinfo-production
check "events" "Kustomization/podinfo" events --for Kustomization/podinfo-production
check "trace" "podinfo-production" trace deployment podinfo -n podinfo-production

echo
echo "flux v$FLUX_VERSION against driftless: $pass passed, $fail failed"
{
  echo "| command | result |"
  echo "|---|---|"
  printf '%s\n' "${report[@]}"
} >target/compat-flux-cli.md
echo "table: target/compat-flux-cli.md"
[ "$fail" -eq 0 ]
