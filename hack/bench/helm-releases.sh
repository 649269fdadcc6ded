#!/usr/bin/env bash
# W6 (issue 15, ../shared/docs/performance.md): RELEASES HelmReleases of podinfo, each in its own
# namespace, from one HelmRepository on the testenv's Helm server. source-controller and
# helm-controller run as they ship (profile dist; helm-controller with --concurrent=CONCURRENT
# and the testenv's helm). Reported: time until all are Ready, peak RSS of helm-controller
# alone (VmHWM) and with its `helm` children (sampled), CPU seconds of helm-controller and its
# children, and time per release, against a floor measured in the same run: the same releases
# by a plain `helm upgrade --install --wait=watcher` loop at the same concurrency.
#
# Flux's helm-controller cannot be built from the Go module proxy here (its replace directives
# need modules the proxy does not serve; ../shared/docs/performance.md), so there is no Flux
# column: the floor is the reference.
#
#   RELEASES=100 CONCURRENT=4 hack/bench/helm-releases.sh
# Writes hack/bench/results/<date>-helm-releases-<RELEASES>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
RELEASES=${RELEASES:-100}
CONCURRENT=${CONCURRENT:-4}
B=$root/target/bench-helm-releases
rm -rf "$B" && mkdir -p "$B/storage" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
# NO_BUILD=1 measures the dist binaries already built (their build time is reported).
if [ -z "${NO_BUILD:-}" ]; then
  cargo build -q --profile dist -p source-controller -p helm-controller
fi
BIN=$root/target/dist
built=$(date -u -r "$BIN/helm-controller" +%FT%TZ)

repo=$HELM_REPO_DIR/bench-w6
rm -rf "$repo" && mkdir -p "$repo"
"$HELM_BIN" package ../shared/testdata/charts/podinfo --destination "$repo" >/dev/null
"$HELM_BIN" repo index "$repo"
chart=$(ls "$repo"/podinfo-*.tgz)

# Namespaces of earlier runs go first (their finalizers are removed: no controller runs).
cleanup() {
  for ns in $($KUBECTL get ns -o name | grep -E '^namespace/bench-w6' | cut -d/ -f2); do
    for object in $($KUBECTL get helmreleases,helmcharts,helmrepositories -n "$ns" -o name 2>/dev/null); do
      $KUBECTL patch -n "$ns" "$object" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
    $KUBECTL delete ns "$ns" --wait=false >/dev/null 2>&1 || true
  done
}
cleanup
# (The list is read whole first: `grep -q` closing the pipe would fail it under pipefail.)
while namespaces=$($KUBECTL get ns -o name) && grep -q '^namespace/bench-w6' <<<"$namespaces"; do sleep 2; done

# The floor: helm itself, CONCURRENT at a time, into fresh namespaces.
for i in $(seq 1 "$RELEASES"); do echo "bench-w6-floor-$i"; done >"$B/floor-namespaces"
xargs -P 8 -I{} $KUBECTL create namespace {} <"$B/floor-namespaces" >/dev/null
start=$(date +%s.%N)
xargs -P "$CONCURRENT" -I{} "$HELM_BIN" upgrade --install podinfo "$chart" --namespace {} \
  --wait=watcher --timeout 5m <"$B/floor-namespaces" >"$B/floor.log" 2>&1
floor_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')

# The controllers.
$KUBECTL create namespace bench-w6 >/dev/null
"$BIN/source-controller" --storage-path="$B/storage" --storage-addr=127.0.0.1:19390 \
  --storage-adv-addr=127.0.0.1:19390 --metrics-addr=127.0.0.1:18391 --health-addr=127.0.0.1:19391 \
  >"$B/source-controller.log" 2>&1 &
sc=$!
"$BIN/helm-controller" --concurrent="$CONCURRENT" --helm-path="$HELM_BIN" \
  --metrics-addr=127.0.0.1:18392 --health-addr=127.0.0.1:19392 >"$B/helm-controller.log" 2>&1 &
hc=$!
trap 'kill $sc $hc 2>/dev/null || true' EXIT
sleep 2
idle=$(awk '/VmRSS/ {print $2}' "/proc/$hc/status")
cat <<EOF | $KUBECTL apply -f - >/dev/null
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: podinfo, namespace: bench-w6}
spec: {url: "$HELM_REPO_URL/bench-w6", interval: 60m}
EOF
for i in $(seq 1 "$RELEASES"); do echo "bench-w6-$i"; done >"$B/namespaces"
xargs -P 8 -I{} $KUBECTL create namespace {} <"$B/namespaces" >/dev/null

# RSS of helm-controller and of its children (the helm processes and their post-renderer).
rss_of() { # rss_of PID → VmRSS in KiB, 0 for a process gone or a zombie
  local v
  v=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || true)
  echo "${v:-0}"
}
family_rss_kib() {
  local total
  total=$(rss_of "$hc")
  for child in $(pgrep -P "$hc" || true); do
    total=$((total + $(rss_of "$child")))
    for grandchild in $(pgrep -P "$child" || true); do
      total=$((total + $(rss_of "$grandchild")))
    done
  done
  echo "$total"
}
ready_count() {
  $KUBECTL get helmreleases -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}

start=$(date +%s.%N)
for i in $(seq 1 "$RELEASES"); do
  cat <<EOF
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: bench-w6-$i}
spec:
  interval: 60m
  chart:
    spec:
      chart: podinfo
      sourceRef: {kind: HelmRepository, name: podinfo, namespace: bench-w6}
EOF
done | $KUBECTL apply -f - >/dev/null
# RSS is sampled from /proc (cheap); readiness is watched by one `kubectl wait`, so the
# controller phase carries no more polling load than the floor's.
(
  peak=0
  while kill -0 "$hc" 2>/dev/null; do
    rss=$(family_rss_kib)
    [ "$rss" -gt "$peak" ] && { peak=$rss; echo "$peak" >"$B/peak"; }
    sleep 0.5
  done
) &
sampler=$!
$KUBECTL wait --for=condition=Ready helmreleases --all -A --timeout=60m >/dev/null
controller_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
[ "$(ready_count)" -ge "$RELEASES" ] || { echo "not all HelmReleases are Ready"; exit 1; }
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$hc/status")
# utime stime cutime cstime (clock ticks): the controller and its reaped children.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15 + $16 + $17) / hz}' "/proc/$hc/stat")
sleep 5
steady=$(awk '/VmRSS/ {print $2}' "/proc/$hc/status")
kill $sc $hc 2>/dev/null || true
wait $hc 2>/dev/null || true
wait $sampler 2>/dev/null || true
peak=$(cat "$B/peak" 2>/dev/null || echo 0)
cleanup

per() { awk -v t="$1" -v n="$RELEASES" 'BEGIN {printf "%.2f", t / n}'; }
ratio=$(awk -v a="$controller_s" -v b="$floor_s" 'BEGIN {printf "%.2f", a / b}')
out=hack/bench/results/$(date +%F)-helm-releases-$RELEASES.md
cat >"$out" <<EOF
# W6: $RELEASES HelmReleases of podinfo ($(date +%F), driftless $(git rev-parse --short HEAD))

source-controller and helm-controller built with profile dist (binaries of $built), helm $("$HELM_BIN" version --short),
on this 2-core machine against the testenv control plane (kwok nodes). Each release in its own
namespace, concurrency $CONCURRENT for both the controller and the floor. The floor is
\`helm upgrade --install podinfo <chart> --wait=watcher\` run $CONCURRENT at a time (xargs -P).
Flux's helm-controller cannot be built from the Go module proxy here, so there is no Flux column.

| measure | helm-controller | floor (helm loop) |
|---|---|---|
| all $RELEASES Ready after | ${controller_s} s | ${floor_s} s |
| time per release | $(per "$controller_s") s | $(per "$floor_s") s |
| ratio to the floor | ${ratio}× (goal ≤ 1.5×) | 1× |
| peak RSS, controller alone (VmHWM) | $((hwm / 1024)) MiB (goal ≤ 50 MiB at 500) | |
| peak RSS, controller + helm children (sampled every 0.5 s) | $((peak / 1024)) MiB | |
| idle / steady RSS, controller | $((idle / 1024)) / $((steady / 1024)) MiB | |
| CPU seconds, controller + children | ${cpu} s | |
EOF
cat "$out"
