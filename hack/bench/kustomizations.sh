#!/usr/bin/env bash
# W1 (fan-out) and W3 (no-op storm) for our source-controller and kustomize-controller, in the
# flux-benchmark shape: N Kustomizations, each with its own OCIRepository, each applying 4
# objects (a Deployment scaled to zero, a ServiceAccount, a Service and an Ingress), with
# `wait: true`, `timeout: 1m`, `interval: 60m`. Not a test: it measures and writes
# hack/bench/results/<date>-kustomizations.md. Flux's controllers join the table with issue 7.
#
# Per N (default "100 500 1000", set SIZES):
#   time to Ready   from applying the N pairs until every Kustomization is Ready
#   peak RSS        VmHWM of each controller process; CPU seconds (utime + stime)
#   no-op storm     requestedAt on all N, wait until all handled; apiserver requests / N
# Controllers run as release builds with Flux's defaults for the large profile's concurrency
# (source 10, kustomize 20).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
SIZES=${SIZES:-"100 500 1000"}
B=$root/target/bench/kustomizations
mkdir -p "$B" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
# shellcheck source=hack/versions.sh
. hack/versions.sh
cargo build -q --release -p source-controller -p kustomize-controller -p driftless-cli
BIN=$root/target/release
$KUBECTL apply --server-side --field-manager=bench -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null

app_yaml() { # app_yaml I NAMESPACE
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: app$1, namespace: $2}
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
metadata: {name: app$1, namespace: $2}
---
apiVersion: v1
kind: Service
metadata: {name: app$1, namespace: $2}
spec:
  selector: {app: app$1}
  ports: [{port: 80, targetPort: 9898}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app$1, namespace: $2}
spec:
  rules:
  - host: app$1.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: app$1, port: {number: 80}}}}]
EOF
}

pairs_yaml() { # pairs_yaml N NAMESPACE
  for i in $(seq 1 "$1"); do
    cat <<EOF
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: app$i, namespace: $2}
spec: {url: "oci://$OCI_REGISTRY/bench/app$i", insecure: true, interval: 60m, ref: {tag: v1}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: app$i, namespace: $2}
spec:
  interval: 60m
  timeout: 1m
  wait: true
  prune: true
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

api_requests() {
  $KUBECTL get --raw /metrics | awk '/^apiserver_request_total/ {s += $NF} END {printf "%d", s}'
}

proc_stats() { # proc_stats PID → "peak_kib cpu_seconds"
  local hwm ticks
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$1/status")
  ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
  echo "$hwm $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t/hz}')"
}

result=hack/bench/results/$(date +%F)-kustomizations.md
{
  echo "# W1/W3: N Kustomizations with their own OCIRepository (4 objects each)"
  echo
  echo "- date: $(date -u +%FT%TZ); machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "- driftless $(git rev-parse --short HEAD), release builds; source-controller --concurrent=10,"
  echo "  kustomize-controller --concurrent=20; Kubernetes $K8S_VERSION (testenv, kwok nodes)"
  echo
  echo "| N | time to all Ready | source peak RSS | kustomize peak RSS | source CPU s | kustomize CPU s | no-op storm: API requests per Kustomization | per applied object |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$result"

for n in $SIZES; do
  ns=bench-$n
  $KUBECTL delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  $KUBECTL create namespace "$ns" >/dev/null
  echo "N=$n: pushing $n artifacts"
  for i in $(seq 1 "$n"); do
    d=$B/apps/app$i
    mkdir -p "$d"
    app_yaml "$i" "$ns" >"$d/app.yaml"
    "$BIN/driftless" push artifact "oci://$OCI_REGISTRY/bench/app$i:v1" --path "$d" --source bench \
      --revision "v1@sha1:0000000000000000000000000000000000000001" --insecure-registry >/dev/null
  done
  rm -rf "$B/storage" && mkdir -p "$B/storage"
  "$BIN/source-controller" --concurrent=10 --storage-path="$B/storage" --storage-addr=127.0.0.1:19190 \
    --storage-adv-addr=127.0.0.1:19190 --metrics-addr=127.0.0.1:18191 --health-addr=127.0.0.1:19191 \
    --watch-all-namespaces >"$B/source-controller.log" 2>&1 &
  sc=$!
  "$BIN/kustomize-controller" --concurrent=20 --metrics-addr=127.0.0.1:18192 --health-addr=127.0.0.1:19192 \
    >"$B/kustomize-controller.log" 2>&1 &
  kc=$!
  sleep 2
  pairs_yaml "$n" "$ns" >"$B/pairs.yaml"
  start=$(date +%s.%N)
  $KUBECTL apply --server-side --field-manager=bench -f "$B/pairs.yaml" >/dev/null
  while [ "$(ready_count "$ns")" -lt "$n" ]; do sleep 1; done
  elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
  read -r s_rss s_cpu < <(proc_stats "$sc")
  read -r k_rss k_cpu < <(proc_stats "$kc")

  before=$(api_requests)
  token="storm-$(date +%s)"
  $KUBECTL annotate kustomizations -n "$ns" --all --overwrite "reconcile.fluxcd.io/requestedAt=$token" >/dev/null
  while [ "$(handled_count "$ns" "$token")" -lt "$n" ]; do sleep 1; done
  after=$(api_requests)
  # The annotate itself is 1 + N requests, and polling adds a few; both are subtracted.
  per=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.2f", (a - b - n - 1) / n}')
  per_object=$(awk -v p="$per" 'BEGIN {printf "%.2f", p / 4}')

  kill "$sc" "$kc"; wait "$sc" "$kc" 2>/dev/null || true
  echo "| $n | ${elapsed}s | $((s_rss / 1024)) MiB | $((k_rss / 1024)) MiB | $s_cpu | $k_cpu | $per | $per_object |" >>"$result"
  echo "N=$n ready in ${elapsed}s; RSS source $((s_rss / 1024)) MiB, kustomize $((k_rss / 1024)) MiB; no-op requests/object $per"
  $KUBECTL delete namespace "$ns" --wait=false >/dev/null
done
echo "wrote $result"
