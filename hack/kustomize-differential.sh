#!/usr/bin/env bash
# The kustomize differential on whole repositories: every kustomization directory in each TREE
# (a read-only checkout kept outside the project, never committed) is built by
# `kubectl kustomize` and by our engine; counts per tree and the differences are printed.
#
#   hack/kustomize-differential.sh TREE...
#
# OURS=path uses another build of ours (any `kustomize build DIR`-shaped command); by default
# the engine's own example binary is built in release mode (seconds, where the CLI takes
# minutes), which is the library `driftless kustomize build` and kustomize-controller call.
# REPORT=file (default target/kustomize-differential/report.txt), JOBS, TIMEOUT, REFRESH=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || { sed -n '2,11p' "$0"; exit 2; }
if [ -z "${OURS:-}" ]; then
  (cd "$root" && cargo build -q --release -p driftless-kustomize --example kustomize-build)
  OURS=$root/target/release/examples/kustomize-build
fi
REPORT=${REPORT:-$root/target/kustomize-differential/report.txt}
mkdir -p "$(dirname "$REPORT")"
echo "reference: $(${KUBECTL_REFERENCE:-kubectl} version --client 2>/dev/null | grep -i kustomize || echo unknown)"
exec python3 "$root/hack/kustomize-differential.py" "$OURS" "$REPORT" "$@"
