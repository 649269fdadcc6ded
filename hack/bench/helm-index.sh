#!/usr/bin/env bash
# What a large Helm repository index costs source-controller (issue 15: "a 50 MB index must not
# cost hundreds of MB; measure it"). A generated index of INDEX_MB megabytes (CHARTS charts with
# many versions each, entries shaped like real ones) is served by the testenv's Helm repository;
# source-controller (profile dist, as it ships) reconciles one HelmRepository, then CHART_COUNT
# HelmCharts that all read that index. Reported: index size, time to Ready, peak RSS (VmHWM)
# after the repository and after the charts, and steady RSS.
#
#   INDEX_MB=50 CHART_COUNT=20 hack/bench/helm-index.sh
# Writes hack/bench/results/<date>-helm-index.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
INDEX_MB=${INDEX_MB:-50}
CHART_COUNT=${CHART_COUNT:-20}
B=$root/target/bench-helm
rm -rf "$B" && mkdir -p "$B/storage" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
cargo build -q --profile dist -p source-controller
BIN=$root/target/dist

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# The repository: one real chart archive (podinfo, packaged by the real helm), which every
# version of every chart in the generated index points at.
repo=$HELM_REPO_DIR/bench-index
rm -rf "$repo" && mkdir -p "$repo"
"$HELM_BIN" package ../shared/testdata/charts/podinfo --destination "$repo" >/dev/null
archive=$(basename "$repo"/podinfo-*.tgz)
python3 - "$repo/index.yaml" "$INDEX_MB" "$archive" <<'PY'
import sys
path, megabytes, archive = sys.argv[1], int(sys.argv[2]), sys.argv[3]
target = megabytes * 1_000_000
charts = 400
out = ["apiVersion: v1", "entries:"]
size, version = 0, 0
blocks = {c: [] for c in range(charts)}
while size < target:
    for c in range(charts):
        v = f"{version // 100}.{version % 100}.{c % 7}"
        block = (
            f"  - apiVersion: v2\n    appVersion: {v}\n    created: \"2026-01-01T00:00:00Z\"\n"
            f"    description: A generated chart for the index benchmark, with a description about as long as real ones are.\n"
            f"    digest: {('%064x' % (c * 100003 + version))}\n"
            f"    home: https://example.com/chart-{c}\n    keywords:\n    - bench\n    - helm\n"
            f"    maintainers:\n    - email: team@example.com\n      name: team\n"
            f"    name: chart-{c}\n    sources:\n    - https://example.com/src/chart-{c}\n"
            f"    urls:\n    - {archive}\n    version: {v}\n"
        )
        blocks[c].append(block)
        size += len(block)
    version += 1
for c in range(charts):
    out.append(f"  chart-{c}:")
    out.append("".join(blocks[c]).rstrip("\n"))
out.append("generated: \"2026-12-02T00:00:00Z\"")
open(path, "w").write("\n".join(out) + "\n")
PY
index_bytes=$(stat -c %s "$repo/index.yaml")

ns=bench-helm-index
$KUBECTL delete namespace "$ns" --wait=true --ignore-not-found >/dev/null
$KUBECTL create namespace "$ns" >/dev/null
"$BIN/source-controller" --storage-path="$B/storage" --storage-addr=127.0.0.1:19290 \
  --storage-adv-addr=127.0.0.1:19290 --metrics-addr=127.0.0.1:18291 --health-addr=127.0.0.1:19291 \
  --helm-index-max-size=$((INDEX_MB * 2 * 1000 * 1000)) >"$B/source-controller.log" 2>&1 &
sc=$!
trap 'kill $sc 2>/dev/null || true' EXIT
sleep 2
idle=$(rss_kib "$sc")

ready_count() { # ready_count KIND → objects Ready=True
  $KUBECTL get "$1" -n "$ns" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}

start=$(date +%s.%N)
cat <<EOF | $KUBECTL apply -f - >/dev/null
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: big, namespace: $ns}
spec: {url: "$HELM_REPO_URL/bench-index", interval: 60m, timeout: 5m}
EOF
until [ "$(ready_count helmrepositories)" -ge 1 ]; do sleep 0.5; done
repo_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
repo_hwm=$(hwm_kib "$sc")

start=$(date +%s.%N)
for i in $(seq 1 "$CHART_COUNT"); do
  cat <<EOF
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata: {name: chart-$i, namespace: $ns}
spec: {chart: chart-$i, version: "*", interval: 60m, sourceRef: {kind: HelmRepository, name: big}}
EOF
done | $KUBECTL apply -f - >/dev/null
until [ "$(ready_count helmcharts)" -ge "$CHART_COUNT" ]; do sleep 0.5; done
charts_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
charts_hwm=$(hwm_kib "$sc")
sleep 5
steady=$(rss_kib "$sc")
$KUBECTL delete namespace "$ns" --wait=false >/dev/null

out=hack/bench/results/$(date +%F)-helm-index.md
cat >"$out" <<EOF
# Helm repository index: memory and time ($(date +%F), driftless $(git rev-parse --short HEAD))

source-controller built with profile dist, on this 2-core machine, against the testenv's Helm
repository (lighttpd). The index has $(grep -c '^    name: ' "$repo/index.yaml") chart versions of 400 charts.

| measure | value |
|---|---|
| index size | $((index_bytes / 1000 / 1000)) MB ($index_bytes bytes) |
| idle RSS before | $((idle / 1024)) MiB |
| HelmRepository Ready after | ${repo_s} s |
| peak RSS after the repository (VmHWM) | $((repo_hwm / 1024)) MiB |
| $CHART_COUNT HelmCharts Ready after | ${charts_s} s |
| peak RSS after the charts (VmHWM) | $((charts_hwm / 1024)) MiB |
| steady RSS after | $((steady / 1024)) MiB |
EOF
cat "$out"
