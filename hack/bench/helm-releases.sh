#!/usr/bin/env bash
# W6 (issue 15, ../shared/docs/performance.md): RELEASES HelmReleases of podinfo, each in its own
# namespace, from one HelmRepository on the testenv's Helm server. Our source-controller serves
# the charts to each helm-controller in turn, which runs as it ships with --concurrent=CONCURRENT:
# ours (profile dist, the testenv's helm) and, with `flux` in IMPLS, Flux's v$FLUX_HELM_CONTROLLER_VERSION
# (built from Go modules by hack/build-testbins.sh; it embeds Helm, built here with upstream
# helm.sh/helm/v4 v$FLUX_HELM_PIN in place of Flux's fork, which the module proxy does not serve).
# Reported for each: time until all are Ready, peak RSS of helm-controller alone (VmHWM) and with
# its `helm` children (sampled), CPU seconds of helm-controller and its children, and time per
# release, against a floor measured in the same run: the same releases by a plain
# `helm upgrade --install --wait=watcher` loop at the same concurrency. Each phase starts on a
# control plane without the previous phase's releases.
#
#   RELEASES=100 CONCURRENT=4 IMPLS="driftless flux" hack/bench/helm-releases.sh
# Writes hack/bench/results/<date>-helm-releases-<RELEASES>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
RELEASES=${RELEASES:-100}
CONCURRENT=${CONCURRENT:-4}
IMPLS=${IMPLS:-"driftless flux"}
B=$root/target/bench-helm-releases
rm -rf "$B" && mkdir -p "$B/storage" hack/bench/results

# shellcheck source=hack/versions.sh
. hack/versions.sh
hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
# NO_BUILD=1 measures the dist binaries already built (their build time is reported).
if [ -z "${NO_BUILD:-}" ]; then
  cargo build -q --profile dist -p source-controller -p helm-controller
fi
BIN=$root/target/dist
built=$(date -u -r "$BIN/helm-controller" +%FT%TZ)
FLUX_HC=$TESTBINS_CACHE/flux-ctrl/helm-controller-v$FLUX_HELM_CONTROLLER_VERSION
if [[ " $IMPLS " == *" flux "* ]] && [ ! -x "$FLUX_HC" ]; then
  hack/build-testbins.sh flux-controllers-all
fi

repo=$HELM_REPO_DIR/bench-w6
rm -rf "$repo" && mkdir -p "$repo"
"$HELM_BIN" package ../shared/testdata/charts/podinfo --destination "$repo" >/dev/null
"$HELM_BIN" repo index "$repo"
chart=$(ls "$repo"/podinfo-*.tgz)

# Removes the namespaces named PREFIX* (finalizers first: no controller runs) and waits until
# they are gone, so the next phase starts on an unloaded control plane.
cleanup() {
  local prefix=$1 namespaces
  for ns in $($KUBECTL get ns -o name | grep -E "^namespace/$prefix" | cut -d/ -f2); do
    for object in $($KUBECTL get helmreleases,helmcharts,helmrepositories -n "$ns" -o name 2>/dev/null); do
      $KUBECTL patch -n "$ns" "$object" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
    $KUBECTL delete ns "$ns" --wait=false >/dev/null 2>&1 || true
  done
  # (The list is read whole first: `grep -q` closing the pipe would fail it under pipefail; a
  # failed list is asked again, not taken for "gone".)
  local deadline=$((SECONDS + 1800))
  until namespaces=$($KUBECTL get ns -o name) && ! grep -q "^namespace/$prefix" <<<"$namespaces"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "namespaces $prefix* still there after 30 min" >&2; exit 1; }
    sleep 2
  done
}
cleanup bench-w6
hack/bench/finish-terminating.sh
seconds_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}'; }

# The floor: helm itself, CONCURRENT at a time, into fresh namespaces.
for i in $(seq 1 "$RELEASES"); do echo "bench-w6-floor-$i"; done >"$B/floor-namespaces"
xargs -P 8 -I{} $KUBECTL create namespace {} <"$B/floor-namespaces" >/dev/null
start=$(date +%s.%N)
xargs -P "$CONCURRENT" -I{} "$HELM_BIN" upgrade --install podinfo "$chart" --namespace {} \
  --wait=watcher --timeout 5m <"$B/floor-namespaces" >"$B/floor.log" 2>&1
floor_s=$(seconds_since "$start")
cleanup bench-w6-floor

rss_of() { # rss_of PID → VmRSS in KiB, 0 for a process gone or a zombie
  local v
  v=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || true)
  echo "${v:-0}"
}
family_rss_kib() { # the controller with its children (helm) and theirs (the post-renderer)
  local total
  total=$(rss_of "$1")
  for child in $(pgrep -P "$1" || true); do
    total=$((total + $(rss_of "$child")))
    for grandchild in $(pgrep -P "$child" || true); do
      total=$((total + $(rss_of "$grandchild")))
    done
  done
  echo "$total"
}
ready_count() {
  $KUBECTL get helmreleases -A -l bench-w6="$1" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}

# One helm-controller with our source-controller: writes $B/IMPL.vars.
run_stack() {
  local impl=$1 prefix=bench-w6-$1 sc hc sampler start
  $KUBECTL create namespace "$prefix" >/dev/null
  "$BIN/source-controller" --storage-path="$B/storage" --storage-addr=127.0.0.1:19390 \
    --storage-adv-addr=127.0.0.1:19390 --metrics-addr=127.0.0.1:18391 --health-addr=127.0.0.1:19391 \
    >"$B/$impl-source-controller.log" 2>&1 &
  sc=$!
  case $impl in
    driftless) "$BIN/helm-controller" --concurrent="$CONCURRENT" --helm-path="$HELM_BIN" \
      --metrics-addr=127.0.0.1:18392 --health-addr=127.0.0.1:19392 >"$B/$impl-helm-controller.log" 2>&1 & ;;
    # As Flux's Deployment runs it: GOMEMLIMIT from the container's 1Gi memory limit.
    flux) GOMEMLIMIT=1GiB RUNTIME_NAMESPACE=flux-system "$FLUX_HC" --concurrent="$CONCURRENT" \
      --watch-all-namespaces --enable-leader-election=false --events-addr= \
      --metrics-addr=127.0.0.1:18392 --health-addr=127.0.0.1:19392 >"$B/$impl-helm-controller.log" 2>&1 & ;;
    *) echo "unknown implementation $impl (driftless or flux)" >&2; exit 2 ;;
  esac
  hc=$!
  # shellcheck disable=SC2064
  trap "kill $sc $hc 2>/dev/null || true" EXIT
  sleep 2
  local idle
  kill -0 "$hc" 2>/dev/null || { echo "$impl helm-controller exited; see $B/$impl-helm-controller.log" >&2; exit 1; }
  idle=$(awk '/VmRSS/ {print $2}' "/proc/$hc/status")
  cat <<EOF | $KUBECTL apply -f - >/dev/null
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: podinfo, namespace: $prefix}
spec: {url: "$HELM_REPO_URL/bench-w6", interval: 60m}
EOF
  for i in $(seq 1 "$RELEASES"); do echo "$prefix-$i"; done >"$B/$impl-namespaces"
  xargs -P 8 -I{} $KUBECTL create namespace {} <"$B/$impl-namespaces" >/dev/null
  rm -f "$B/$impl-peak"
  start=$(date +%s.%N)
  for i in $(seq 1 "$RELEASES"); do
    cat <<EOF
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: $prefix-$i, labels: {bench-w6: $impl}}
spec:
  interval: 60m
  chart:
    spec:
      chart: podinfo
      sourceRef: {kind: HelmRepository, name: podinfo, namespace: $prefix}
EOF
  done | $KUBECTL apply -f - >/dev/null
  # RSS is sampled from /proc (cheap); readiness is watched by one `kubectl wait`, so the
  # controller phase carries no more polling load than the floor's.
  (
    peak=0
    while kill -0 "$hc" 2>/dev/null; do
      rss=$(family_rss_kib "$hc")
      [ "$rss" -gt "$peak" ] && { peak=$rss; echo "$peak" >"$B/$impl-peak"; }
      sleep 0.5
    done
  ) &
  sampler=$!
  $KUBECTL wait --for=condition=Ready helmreleases -l bench-w6="$impl" -A --timeout=60m >/dev/null
  local controller_s hwm cpu steady peak
  controller_s=$(seconds_since "$start")
  [ "$(ready_count "$impl")" -ge "$RELEASES" ] || { echo "$impl: not all HelmReleases are Ready"; exit 1; }
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$hc/status")
  # utime stime cutime cstime (clock ticks): the controller and its reaped children.
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15 + $16 + $17) / hz}' "/proc/$hc/stat")
  sleep 5
  steady=$(awk '/VmRSS/ {print $2}' "/proc/$hc/status")
  kill "$sc" "$hc" 2>/dev/null || true
  # Both gone before the next phase binds the same ports.
  wait "$sc" "$hc" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  trap - EXIT
  peak=$(cat "$B/$impl-peak" 2>/dev/null || echo 0)
  cat >"$B/$impl.vars" <<EOF
controller_s=$controller_s
hwm=$hwm
cpu=$cpu
idle=$idle
steady=$steady
peak=$peak
EOF
  cleanup "$prefix"
}

for impl in $IMPLS; do run_stack "$impl"; done

per() { awk -v t="$1" -v n="$RELEASES" 'BEGIN {printf "%.2f", t / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mib() { echo $(($1 / 1024)); }
# One row: LABEL, a value per implementation from FORMAT applied to its vars, then FLOOR.
row() {
  local label=$1 format=$2 floor=$3 impl line="| $1 |"
  for impl in $IMPLS; do
    # shellcheck disable=SC1090
    . "$B/$impl.vars"
    line+=" $(eval "echo \"$format\"") |"
  done
  echo "$line $floor |"
}
header="| measure |" rule="|---|"
for impl in $IMPLS; do
  case $impl in
    driftless) header+=" driftless helm-controller |" ;;
    flux) header+=" Flux helm-controller v$FLUX_HELM_CONTROLLER_VERSION |" ;;
    *) echo "unknown implementation $impl" >&2; exit 2 ;;
  esac
  rule+="---|"
done
out=hack/bench/results/$(date +%F)-helm-releases-$RELEASES.md
{
  cat <<EOF
# W6: $RELEASES HelmReleases of podinfo ($(date +%F), driftless $(git rev-parse --short HEAD))

Our source-controller and helm-controller built with profile dist (binaries of $built), helm
$("$HELM_BIN" version --short), on this 2-core machine against the testenv control plane (kwok nodes).
Each release in its own namespace, concurrency $CONCURRENT for every helm-controller and the floor.
The floor is \`helm upgrade --install podinfo <chart> --wait=watcher\` run $CONCURRENT at a time
(xargs -P). Flux's helm-controller v$FLUX_HELM_CONTROLLER_VERSION is built from Go modules with upstream
helm.sh/helm/v4 v$FLUX_HELM_PIN in place of Flux's fork of Helm (not served by the module proxy), and
reads its charts from our source-controller. Each phase starts after the previous phase's
namespaces are gone. Goals (issue 15): within 1.5× the floor's time; controller RSS without
children ≤ 50 MiB at 500.

${header} floor (helm loop) |
${rule}---|
EOF
  row "all $RELEASES Ready after" '${controller_s} s' "${floor_s} s"
  row "time per release" '$(per "$controller_s") s' "$(per "$floor_s") s"
  row "ratio to the floor" '$(ratio "$controller_s" "$floor_s")×' "1×"
  row "peak RSS, controller alone (VmHWM)" '$(mib "$hwm") MiB' ""
  row "peak RSS, controller + helm children (sampled every 0.5 s)" '$(mib "$peak") MiB' ""
  row "idle / steady RSS, controller" '$(mib "$idle") / $(mib "$steady") MiB' ""
  row "CPU seconds, controller + children" '${cpu} s' ""
} >"$out"
cat "$out"
