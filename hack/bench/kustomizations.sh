#!/usr/bin/env bash
# Side by side, the whole stack: our source- and kustomize-controller against Flux's
# (source-controller v$FLUX_SOURCE_CONTROLLER_VERSION built with github.com/fluxcd/pkg/artifact
# v$FLUX_PKG_ARTIFACT_PIN, kustomize-controller v$FLUX_KUSTOMIZE_CONTROLLER_VERSION, built from Go
# modules by hack/build-testbins.sh flux-controllers), one stack at a time against the same
# testenv, with the same settings, and the floor the control plane sets (hack/bench/floor.py: the
# same 4N objects by a bare client, one server-side apply each at the same concurrency, then
# the same readiness). Workloads (../shared/docs/performance.md):
#
#   W0  idle: RSS after start-up with no objects, and after N objects are reconciled
#   W1  fan-out, the flux-benchmark shape: N Kustomizations, each with its own OCIRepository,
#       each applying 4 objects (a Deployment scaled to zero, a ServiceAccount, a Service and an
#       Ingress), `wait: true`, `timeout: 1m`, `interval: 60m`. Time until all are Ready, per-
#       object latency p50/p95 (creation → Ready), peak RSS (VmHWM), CPU seconds
#   W3  no-op storm: requestedAt on all N, until all handled; apiserver requests per object
#   W11 restart with N up-to-date Kustomizations: time from process start until each was
#       reconciled once, requests per object, peak RSS of the re-list
#   W1p W1 with the sources and Kustomizations created before the controllers start: timed
#       from the controllers' start, so object creation by the harness is not part of it
#   W1 at DEFAULT_SIZES again with each implementation's default --concurrent
#   W4  commit-to-applied latency for one Kustomization: a new artifact is pushed and the
#       OCIRepository's reconcile requested; until the Kustomization's status says the new
#       origin revision is applied, seen by a watch (hack/bench/w4.py); 20 trials, p50/p95
#
# Each stack publishes its own artifacts. Before a timing counts, both must have applied the
# same objects (4N, with the same ownership labels). Requests are read off the apiserver's
# metrics by verb and resource (one stack runs at a time, so the difference is its own, plus the
# kube-controller-manager's work on the same Deployments and the harness's polling, which the
# floor's row shows), and per client from the testenv's audit log: each controller (and the
# floor's client) runs as its own bench identity, the only users the audit log records.
#
#   SIZES="100 500 1000" IMPLS="driftless flux" hack/bench/kustomizations.sh
# (PRECREATED_SIZES: the sizes of W1p, default SIZES; DEFAULT_SIZES: those at default
# concurrency, default 500; TRIALS: W4's, default 20)
# Writes hack/bench/results/<date>-full-stack<REPORT_SUFFIX>.md and .svg (time to Ready against
# N for both stacks and the floor).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
SIZES=${SIZES:-"100 500 1000"}
IMPLS=${IMPLS:-"driftless flux"}
TRIALS=${TRIALS:-20}
CONCURRENT=${CONCURRENT:-20}
DEFAULT_SIZES=${DEFAULT_SIZES-500}
# The sizes W1p runs at (the created-before-start variant): all of SIZES unless said.
PRECREATED_SIZES=${PRECREATED_SIZES-$SIZES}
B=$root/target/bench/kustomizations
# Artifacts are pushed once per run (the registry may have been reset since the last one).
# KEEP=1 continues a run: artifacts and measurements so far are kept.
if [ "${KEEP:-}" != 1 ]; then
  rm -rf "$B/apps" "$B"/pushed-* "$B/raw.tsv" "$B/requests.tsv" "$B/requests-by-client.tsv"
fi
mkdir -p "$B" hack/bench/results

# shellcheck source=hack/versions.sh
. hack/versions.sh
hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
# The controllers as they ship (profile dist).
# The CLI (it only pushes artifacts) with the same profile: one build of the dependencies.
# NO_BUILD=1 takes target/dist as it is; BUILT_FROM then names the commit it was built from.
[ "${NO_BUILD:-}" = 1 ] || cargo build -q --profile dist -p source-controller -p kustomize-controller -p driftless-cli
BIN=$root/target/dist
FLUX_KC=$TESTBINS_CACHE/flux-ctrl/kustomize-controller-v$FLUX_KUSTOMIZE_CONTROLLER_VERSION
FLUX_SC=$TESTBINS_CACHE/flux-ctrl/source-controller-v$FLUX_SOURCE_CONTROLLER_VERSION
if [[ " $IMPLS " == *" flux "* ]] && { [ ! -x "$FLUX_KC" ] || [ ! -x "$FLUX_SC" ]; }; then
  hack/build-testbins.sh flux-controllers
fi
$KUBECTL apply --server-side --force-conflicts --field-manager=bench -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null
# Deletes a bench namespace. The controllers are stopped by then, so the toolkit objects lose
# their finalizers first (else the namespace would wait for a controller forever).
drop_namespace() { # drop_namespace NAMESPACE [--wait=true|false]
  local k
  for k in kustomizations ocirepositories; do
    # (objects may vanish meanwhile: errors are expected and ignored)
    $KUBECTL get "$k" -n "$1" -o name 2>/dev/null |
      xargs -r -P 8 -I{} $KUBECTL patch {} -n "$1" --type=merge -p '{"metadata":{"finalizers":null}}' \
        >/dev/null 2>&1 || true
  done
  $KUBECTL delete namespace "$1" --ignore-not-found "${2:---wait=true}" >/dev/null
}

# Leftovers of an interrupted run would be reconciled too (and hold Service IPs). Namespaces
# that tests left terminating (their toolkit objects keep finalizers once the controllers are
# gone) keep kube-controller-manager and the apiserver busy retrying: they are finished too, one
# list per kind of objects being deleted.
for ns in $($KUBECTL get namespaces -o name | sed -n 's#^namespace/\(bench-.*\)#\1#p'); do
  drop_namespace "$ns"
done
hack/bench/finish-terminating.sh
$KUBECTL create namespace flux-system --dry-run=client -o yaml | $KUBECTL apply --server-side -f - >/dev/null

# The objects carry no namespace: the Kustomizations set targetNamespace, so one set of
# artifacts per N serves both implementations.
app_yaml() { # app_yaml I TAG
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: app$1, annotations: {bench/tag: "$2"}}
spec:
  replicas: 0
  selector: {matchLabels: {app: app$1}}
  template:
    metadata: {labels: {app: app$1}}
    spec:
      serviceAccountName: app$1
      containers: [{name: app, image: "ghcr.io/stefanprodan/podinfo:6.7.0", ports: [{containerPort: 9898}]}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app$1}
---
apiVersion: v1
kind: Service
metadata: {name: app$1}
spec:
  selector: {app: app$1}
  ports: [{port: 80, targetPort: 9898}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app$1}
spec:
  rules:
  - host: app$1.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: app$1, port: {number: 80}}}}]
EOF
}

push_app() { # push_app I SET TAG: artifact oci://…/bench/SET/appI:v1
  local d=$B/apps/$2/app$1
  mkdir -p "$d"
  app_yaml "$1" "$3" >"$d/app.yaml"
  "$BIN/driftless" push artifact "oci://$OCI_REGISTRY/bench/$2/app$1:v1" --path "$d" --source bench \
    --revision "v1@sha1:$(printf '%040d' "$3")" --insecure-registry >/dev/null
}
export -f push_app app_yaml
export B BIN OCI_REGISTRY

push_set() { # push_set N: the N artifacts of set nN, once (4 pushes at a time)
  [ -f "$B/pushed-n$1" ] && return 0
  echo "pushing $1 artifacts"
  seq 1 "$1" | xargs -P 4 -I{} bash -c 'push_app {} n'"$1"' 1'
  touch "$B/pushed-n$1"
}

pairs_yaml() { # pairs_yaml FIRST LAST NAMESPACE SET
  for i in $(seq "$1" "$2"); do
    cat <<EOF
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: app$i, namespace: $3}
spec: {url: "oci://$OCI_REGISTRY/bench/$4/app$i", insecure: true, interval: 60m, ref: {tag: v1}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: app$i, namespace: $3}
spec:
  interval: 60m
  timeout: 1m
  wait: true
  prune: true
  targetNamespace: $3
  sourceRef: {kind: OCIRepository, name: app$i}
EOF
  done
}

ready_count() {
  $KUBECTL get kustomizations -n "$1" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
}

handled_count() { # handled_count NAMESPACE TOKEN
  $KUBECTL get kustomizations -n "$1" -o jsonpath='{range .items[*]}{.status.lastHandledReconcileAt}{"\n"}{end}' | grep -c "^$2\$" || true
}

# Seconds from creation to the Ready transition of every Kustomization: "p50 p95".
latencies() {
  $KUBECTL get kustomizations -n "$1" -o json | python3 -c '
import json, sys, datetime
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
xs = sorted(t(c["lastTransitionTime"]) - t(k["metadata"]["creationTimestamp"])
            for k in json.load(sys.stdin)["items"] for c in k["status"]["conditions"] if c["type"] == "Ready")
q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"{q(0.5):.0f} {q(0.95):.0f}")'
}

# What was applied, for the same-state check: objects carrying the ownership labels.
applied_state() {
  for k in deployments serviceaccounts services ingresses; do
    $KUBECTL get "$k" -n "$1" -l kustomize.toolkit.fluxcd.io/namespace="$1" -o name | wc -l
  done | awk '{s += $1} END {print s}'
}

# apiserver requests so far by verb and resource: "verb resource[/subresource] count" lines.
requests_by() {
  $KUBECTL get --raw /metrics | awk '/^apiserver_request_total\{/ {
    match($0, /resource="[^"]*"/); r = substr($0, RSTART + 10, RLENGTH - 11)
    match($0, /subresource="[^"]*"/); sr = substr($0, RSTART + 13, RLENGTH - 14)
    match($0, /verb="[^"]*"/); v = substr($0, RSTART + 6, RLENGTH - 7)
    if (r == "") next
    c[v " " r (sr == "" ? "" : "/" sr)] += $NF } END {for (k in c) print k, c[k]}'
}
# record_requests IMPL N BEFORE_FILE: the requests since BEFORE_FILE per Kustomization (per
# object set for the floor), by verb and resource, into requests.tsv.
record_requests() {
  requests_by >"$B/after.txt"
  awk -v impl="$1" -v n="$2" 'NR == FNR {b[$1 " " $2] = $3; next}
    {d = $3 - b[$1 " " $2]; if (d > 0) printf "%s\t%s\t%s\t%s\t%.2f\n", impl, n, $1, $2, d / n}' \
    "$3" "$B/after.txt" >>"$B/requests.tsv"
}
# The audit log's size now: where a measurement starts reading it.
audit_log=$TESTENV_DIR/logs/audit.log
audit_offset() { stat -c %s "$audit_log" 2>/dev/null || echo 0; }
# record_clients IMPL N START_OFFSET: each client's requests (and bytes sent) per Kustomization
# since START_OFFSET, by verb and resource, into requests-by-client.tsv.
record_clients() {
  python3 hack/bench/audit.py "$audit_log" "$3" "$(audit_offset)" "$1" "$2" >>"$B/requests-by-client.tsv"
}

api_requests() {
  $KUBECTL get --raw /metrics | awk '/^apiserver_request_total/ {s += $NF} END {printf "%d", s}'
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# Kustomization reconciles the controller on 127.0.0.1:18192 completed since it started.
reconciles() {
  curl -fs http://127.0.0.1:18192/metrics | awk '
    /^gotk_reconcile_duration_seconds_count\{.*kind="Kustomization"/ {g += $NF}
    /^controller_runtime_reconcile_total\{.*controller="kustomization"/ {c += $NF}
    END {printf "%d", (g > 0 ? g : c)}' || echo 0
}
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# ready_then_echo, start_source, stop
# shellcheck source=hack/bench/source-controllers.sh
. hack/bench/source-controllers.sh

start_kustomize() { # start_kustomize IMPL → pid
  case "$1" in
    driftless)
      KUBECONFIG=$TESTENV_DIR/bench-kustomize-controller.kubeconfig "$BIN/kustomize-controller" ${CONCURRENT:+--concurrent=$CONCURRENT} --metrics-addr=127.0.0.1:18192 \
        --health-addr=127.0.0.1:19192 >"$B/kc-$1.log" 2>&1 & ;;
    flux)
      # As Flux ships it: GOMEMLIMIT from the 1Gi limit.
      KUBECONFIG=$TESTENV_DIR/bench-kustomize-controller.kubeconfig GOMEMLIMIT=1GiB RUNTIME_NAMESPACE=flux-system "$FLUX_KC" ${CONCURRENT:+--concurrent=$CONCURRENT} \
        --metrics-addr=127.0.0.1:18192 --health-addr=127.0.0.1:19192 --watch-all-namespaces \
        --log-level=info >"$B/kc-$1.log" 2>&1 & ;;
  esac
  ready_then_echo $! 19192
}

version_of() {
  case "$1" in
    driftless) echo "driftless ${BUILT_FROM:-$(git rev-parse --short HEAD)}" ;;
    flux) echo "Flux source-controller v$FLUX_SOURCE_CONTROLLER_VERSION (pkg/artifact v$FLUX_PKG_ARTIFACT_PIN) + kustomize-controller v$FLUX_KUSTOMIZE_CONTROLLER_VERSION" ;;
  esac
}

raw=$B/raw.tsv
touch "$raw"
# The version measured is the one built now (the tree may move on while the run lasts).
ours_version=$(version_of driftless)
# record IMPL METRIC N VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$raw"; }

# W1 for IMPL at N Kustomizations with CONC workers ("" = the implementation's default),
# recorded with SUFFIX; the main run (SUFFIX empty) adds W0 steady RSS, W3 and W11. The
# namespace is deleted and waited for at the end: deleting 4N objects loads the apiserver, and
# the next measurement must not share it with that clean-up.
fan_out() { # fan_out IMPL N CONC SUFFIX
  local impl=$1 n=$2 conc=$3 suffix=$4
  local ns=bench-$impl-$n${suffix//_/-} sc kc apiserver etcd w1_requests w1_cpu start deadline elapsed
  local state p50 p95 control_before source_before before after token audit_start
  drop_namespace "$ns"
  $KUBECTL create namespace "$ns" >/dev/null
  push_set "$n"
  sc=$(start_source "$impl")
  kc=$(CONCURRENT=$conc start_kustomize "$impl")
  pairs_yaml 1 "$n" "$ns" "n$n" >"$B/pairs.yaml"
  # Where the time goes: the apiserver's and etcd's CPU and the requests served during W1.
  apiserver=$(pgrep -f "$KUBE_BIN_DIR/kube-apiserver" | head -1)
  etcd=$(pgrep -f "/etcd --name" | head -1)
  w1_requests=$(api_requests)
  [ -n "$suffix" ] || requests_by >"$B/before.txt"
  audit_start=$(audit_offset)
  w1_cpu=$(awk -v a="$(cpu_s "$apiserver")" -v e="$(cpu_s "$etcd")" -v s="$(cpu_s "$sc")" 'BEGIN {print a + e, s}')
  start=$(date +%s.%N)
  $KUBECTL apply --server-side --field-manager=bench -f "$B/pairs.yaml" >/dev/null
  # How long creating the 2N objects took while the controllers already worked on them: at
  # large N this, not the controller, can set the time to all Ready.
  record "$impl" "create_s$suffix" "$n" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')"
  deadline=$(( $(date +%s) + 1800 ))
  while [ "$(ready_count "$ns")" -lt "$n" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$impl N=$n: not all Ready in 30 min" >&2; break; }
    sleep 1
  done
  elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
  state=$(applied_state "$ns")
  [ "$state" -eq $((4 * n)) ] || echo "$impl N=$n: WARNING: $state objects applied, expected $((4 * n))" >&2
  read -r p50 p95 < <(latencies "$ns")
  record "$impl" "ready_s$suffix" "$n" "$elapsed"
  read -r control_before source_before <<<"$w1_cpu"
  record "$impl" "w1_requests_per_kustomization$suffix" "$n" "$(awk -v a="$(api_requests)" -v b="$w1_requests" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n}')"
  [ -n "$suffix" ] || { record_requests "$impl" "$n" "$B/before.txt"; record_clients "$impl" "$n" "$audit_start"; }
  record "$impl" "peak_rss_source$suffix" "$n" "$(( $(hwm_kib "$sc") / 1024 ))"
  record "$impl" "w1_apiserver_etcd_cpu_s$suffix" "$n" "$(awk -v a="$(cpu_s "$apiserver")" -v e="$(cpu_s "$etcd")" -v b="$control_before" 'BEGIN {printf "%.1f", a + e - b}')"
  record "$impl" "w1_source_cpu_s$suffix" "$n" "$(awk -v s="$(cpu_s "$sc")" -v b="$source_before" 'BEGIN {printf "%.1f", s - b}')"
  record "$impl" "latency_p50$suffix" "$n" "$p50"
  record "$impl" "latency_p95$suffix" "$n" "$p95"
  record "$impl" "peak_rss$suffix" "$n" "$(( $(hwm_kib "$kc") / 1024 ))"
  record "$impl" "cpu_s$suffix" "$n" "$(cpu_s "$kc")"
  record "$impl" "applied$suffix" "$n" "$state"
  if [ -n "$suffix" ]; then
    echo "$impl N=$n ($suffix): Ready in ${elapsed}s, peak $(( $(hwm_kib "$kc") / 1024 )) MiB"
    stop "$kc" "$sc"
    drop_namespace "$ns"
    return
  fi
  echo "$impl N=$n: Ready in ${elapsed}s (p50 ${p50}s, p95 ${p95}s), peak $(( $(hwm_kib "$kc") / 1024 )) MiB"
  sleep 10
  record "$impl" steady_rss "$n" "$(( $(rss_kib "$kc") / 1024 ))"

  # W3: a no-op storm.
  before=$(api_requests)
  audit_start=$(audit_offset)
  token="storm-$(date +%s%N)"
  $KUBECTL annotate kustomizations -n "$ns" --all --overwrite "reconcile.fluxcd.io/requestedAt=$token" >/dev/null
  while [ "$(handled_count "$ns" "$token")" -lt "$n" ]; do sleep 1; done
  after=$(api_requests)
  # The annotate itself is 1 + N requests, and the polling a few more; both are subtracted.
  record "$impl" noop_requests_per_object "$n" "$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.2f", (a - b - n - 1) / n / 4}')"
  # The controllers' own share (audit log): what other clients did meanwhile is not in it.
  record "$impl" noop_controller_requests_per_object "$n" \
    "$(python3 hack/bench/audit.py "$audit_log" "$audit_start" "$(audit_offset)" "$impl" "$((4 * n))" --total)"

  # W11: a restart with N up-to-date Kustomizations: from process start until each was
  # reconciled once, the requests that took, and the peak RSS of the re-list.
  stop "$kc"
  before=$(api_requests)
  audit_start=$(audit_offset)
  start=$(date +%s.%N)
  kc=$(CONCURRENT=$conc start_kustomize "$impl")
  deadline=$(( $(date +%s) + 900 ))
  while [ "$(reconciles)" -lt "$n" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  record "$impl" restart_s "$n" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')"
  record "$impl" restart_requests_per_object "$n" "$(awk -v a="$(api_requests)" -v b="$before" -v n="$n" 'BEGIN {printf "%.2f", (a - b) / n / 4}')"
  # (the watches the restarted controllers keep open are not in it until they end)
  record "$impl" restart_controller_requests_per_object "$n" \
    "$(python3 hack/bench/audit.py "$audit_log" "$audit_start" "$(audit_offset)" "$impl" "$((4 * n))" --total)"
  record "$impl" restart_peak_rss "$n" "$(( $(hwm_kib "$kc") / 1024 ))"
  stop "$kc" "$sc"
  drop_namespace "$ns"
}

# W1p for IMPL at N: every source and Kustomization exists before the controllers start; from
# their start until all are Ready.
precreated() { # precreated IMPL N
  local impl=$1 n=$2 ns=bench-$1-$2-pre sc kc start elapsed
  drop_namespace "$ns"
  $KUBECTL create namespace "$ns" >/dev/null
  push_set "$n"
  pairs_yaml 1 "$n" "$ns" "n$n" | $KUBECTL apply --server-side --field-manager=bench -f - >/dev/null
  start=$(date +%s.%N)
  sc=$(start_source "$impl")
  kc=$(CONCURRENT=$CONCURRENT start_kustomize "$impl")
  deadline=$(( $(date +%s) + 1800 ))
  while [ "$(ready_count "$ns")" -lt "$n" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$impl N=$n (created before start): not all Ready in 30 min" >&2; break; }
    sleep 1
  done
  elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
  record "$impl" ready_s_precreated "$n" "$elapsed"
  record "$impl" applied_precreated "$n" "$(applied_state "$ns")"
  echo "$impl N=$n (created before start): Ready in ${elapsed}s"
  stop "$kc" "$sc"
  drop_namespace "$ns"
}

# The floor at N: the 4N objects by a bare client at the same concurrency, then the same readiness.
floor() { # floor N
  local n=$1 ns=bench-floor-$1 out audit_start
  drop_namespace "$ns"
  $KUBECTL create namespace "$ns" >/dev/null
  requests_by >"$B/before.txt"
  audit_start=$(audit_offset)
  out=$(KUBECONFIG=$TESTENV_DIR/bench-floor.kubeconfig python3 hack/bench/floor.py "$n" "$ns" "$CONCURRENT")
  record_requests floor "$n" "$B/before.txt"
  record_clients floor "$n" "$audit_start"
  record floor ready_s "$n" "${out%% *}"
  record floor ready_s_precreated "$n" "${out%% *}"
  echo "floor N=$n: ${out%% *}s (${out##* } server-side applies)"
  drop_namespace "$ns"
}

for n in $SIZES; do
  floor "$n"
done

for impl in $IMPLS; do
  # W0 with no objects: start-up, then 10 s idle.
  sc=$(start_source "$impl")
  kc=$(start_kustomize "$impl")
  sleep 10
  record "$impl" idle_rss 0 "$(( $(rss_kib "$kc") / 1024 ))"
  record "$impl" idle_rss_source 0 "$(( $(rss_kib "$sc") / 1024 ))"
  stop "$kc" "$sc"

  for n in $SIZES; do
    fan_out "$impl" "$n" "$CONCURRENT" ""
    [[ " $PRECREATED_SIZES " != *" $n "* ]] || precreated "$impl" "$n"
  done
  # Each implementation at its own default concurrency (4 for both kustomize-controllers).
  for n in $DEFAULT_SIZES; do
    fan_out "$impl" "$n" "" _default
  done

  # W4: commit-to-applied latency of one Kustomization, TRIALS times (TRIALS=0 skips it).
  [ "$TRIALS" -gt 0 ] || continue
  ns=bench-$impl-w4
  drop_namespace "$ns"
  $KUBECTL create namespace "$ns" >/dev/null
  push_app 1 "w4-$impl" 1
  sc=$(start_source "$impl")
  kc=$(start_kustomize "$impl")
  pairs_yaml 1 1 "$ns" "w4-$impl" | $KUBECTL apply --server-side --field-manager=bench -f - >/dev/null
  while [ "$(ready_count "$ns")" -lt 1 ]; do sleep 0.2; done
  : >"$B/w4-$impl.txt"
  for t in $(seq 2 $((TRIALS + 1))); do
    push_app 1 "w4-$impl" "$t"
    # The artifact's revision is v1@sha256:<digest>; the commit is its origin revision. The
    # request and the watch for the result are w4.py's (as the floor's client).
    KUBECONFIG=$TESTENV_DIR/bench-floor.kubeconfig python3 hack/bench/w4.py "$ns" app1 \
      "v1@sha1:$(printf '%040d' "$t")" "w4-$t" >>"$B/w4-$impl.txt"
  done
  stop "$kc" "$sc"
  # Dropped now, not at the next run's start: the next stack watches all namespaces and would
  # reconcile this one's Kustomization too (until 2026-12-04 it did, beside its own W1 and W4).
  drop_namespace "$ns"
  # Nearest-rank percentiles (the ⌈p·n⌉-th smallest: the 10th and 19th of 20; until 2026-12-04
  # the 11th and the 20th, the maximum, were reported as p50 and p95), and the maximum.
  read -r w4p50 w4p95 w4max < <(sort -n "$B/w4-$impl.txt" | awk '{a[NR] = $1}
    function rank(p) {r = int(NR * p); if (r < NR * p) r++; return r < 1 ? 1 : r}
    END {printf "%s %s %s\n", a[rank(0.5)], a[rank(0.95)], a[NR]}')
  record "$impl" w4_p50 1 "$w4p50"
  record "$impl" w4_p95 1 "$w4p95"
  record "$impl" w4_max 1 "$w4max"
  echo "$impl W4: p50 ${w4p50}s p95 ${w4p95}s max ${w4max}s"
  drop_namespace "$ns" --wait=false
done

date=$(date +%F)
report=hack/bench/results/$date-full-stack${REPORT_SUFFIX:-}
python3 hack/bench/report.py "$raw" "$report.md" "$report.svg" \
  "$ours_version" "$(version_of flux)" "$K8S_VERSION" "$CONCURRENT" "$B/requests.tsv" "$B/requests-by-client.tsv"
echo "wrote $report.md"
