#!/usr/bin/env bash
# W5b (kustomize build): the native engine (`driftless kustomize build`, release build) against
# `kubectl kustomize` on the same generated overlays. Not a test: it measures and writes
# hack/bench/results/<date>-kustomize.md.
#
# Workload per size N (objects rendered): a base of N/4 apps (Deployment, Service,
# ServiceAccount and a generated ConfigMap each); an overlay with namespace, namePrefix,
# commonLabels, commonAnnotations, images, a strategic-merge patch and a JSON 6902 patch that
# target every Deployment, and a configMapGenerator merging into 20 of the apps' ConfigMaps
# (merging into all of them makes kustomize quadratic: 317 s at 4,000 objects).
# Each tool runs RUNS times (default 3): median wall time, max peak RSS (VmHWM via time -v).
# Outputs are compared byte for byte before any timing counts.
# SIZES (default "1000 4000 10000") selects the sizes ("" for none).
# REAL_DIRS="DIR..." also measures real kustomization directories (read-only checkouts of public
# repositories kept outside the project, e.g. the largest ones hack/kustomize-differential.sh
# finds), in a second table with their output size; REAL_ROOT is cut from the front of their
# names in the table.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RUNS=${RUNS:-3}
SIZES=${SIZES-"1000 4000 10000"}
REAL_DIRS=${REAL_DIRS:-}
B=$root/target/bench/kustomize
mkdir -p "$B" hack/bench/results
cargo build -q --release -p driftless-cli
OURS=$root/target/release/driftless
KUBECTL=${KUBECTL_REFERENCE:-kubectl}

generate() {
  local n=$1 dir=$B/n$1
  [ -f "$dir/.done" ] && return 0
  rm -rf "$dir"
  python3 - "$n" "$dir" <<'PY'
import os, sys
n, out = int(sys.argv[1]), sys.argv[2]
apps = n // 4
base = os.path.join(out, "base")
os.makedirs(base)
with open(os.path.join(base, "apps.yaml"), "w") as f:
    for i in range(apps):
        f.write(f"""---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{i}
  labels: {{app: app{i}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app{i}}}
  template:
    metadata:
      labels: {{app: app{i}}}
    spec:
      serviceAccountName: app{i}
      containers:
      - name: app
        image: nginx:1.25
        ports: [{{containerPort: 80, name: http}}]
        envFrom: [{{configMapRef: {{name: app{i}-config}}}}]
        resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: app{i}
spec:
  selector: {{app: app{i}}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app{i}
""")
with open(os.path.join(base, "kustomization.yaml"), "w") as f:
    f.write("resources:\n- apps.yaml\nconfigMapGenerator:\n")
    for i in range(apps):
        f.write(f"- name: app{i}-config\n  literals: [APP=app{i}, MODE=base]\n")
overlay = os.path.join(out, "overlay")
os.makedirs(overlay)
with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
    f.write("""resources:
- ../base
namespace: bench
namePrefix: prod-
commonLabels:
  env: production
commonAnnotations:
  owner: platform
images:
- name: nginx
  newTag: "1.27"
patches:
- target:
    kind: Deployment
  patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: any
    spec:
      template:
        spec:
          containers:
          - name: app
            env:
            - name: REGION
              value: eu-west-1
- target:
    kind: Deployment
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 3
configMapGenerator:
""")
    for i in range(min(apps, 20)):
        f.write(f"- name: app{i}-config\n  behavior: merge\n  literals: [MODE=production]\n")
PY
  touch "$dir/.done"
}

# measure TOOL DIR → prints "seconds kilobytes" of one run, output to $B/out.<tool>
measure() {
  local tool=$1 dir=$2 out=$B/out.$1
  local cmd
  if [ "$tool" = ours ]; then cmd=("$OURS" kustomize build "$dir"); else cmd=("$KUBECTL" kustomize "$dir"); fi
  /usr/bin/time -f "%e %M" -o "$B/time.$tool" "${cmd[@]}" >"$out" 2>/dev/null
  cat "$B/time.$tool"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

kversion=$("$KUBECTL" version --client 2>/dev/null | awk '/Kustomize Version/ {print $3}')
result=hack/bench/results/$(date +%F)-kustomize.md
{
  echo "# W5b: kustomize build, driftless vs kubectl kustomize"
  echo
  echo "- date: $(date -u +%FT%TZ); machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
  echo "- reference: kubectl $("$KUBECTL" version --client 2>/dev/null | awk '/Client Version/ {print $3}') (kustomize $kversion)"
  echo "- driftless: $(git rev-parse --short HEAD), release build; RUNS=$RUNS (median time, max RSS)"
  echo
  echo "| objects | kubectl kustomize | driftless | time ratio | kubectl peak RSS | driftless peak RSS | RSS ratio | identical |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$result"
# row LABEL DIR → one measured table row (RUNS runs of each tool)
row() {
  local label=$1 dir=$2
  declare -a ot=() om=() kt=() km=()
  for _ in $(seq 1 "$RUNS"); do
    read -r t m < <(measure ours "$dir"); ot+=("$t"); om+=("$m")
    read -r t m < <(measure kubectl "$dir"); kt+=("$t"); km+=("$m")
  done
  identical=yes
  cmp -s "$B/out.ours" "$B/out.kubectl" || identical=NO
  objects=$(grep -c '^kind:' "$B/out.ours" || true)
  label="${label:+$label (}$objects objects${label:+, $(awk -v b="$(stat -c %s "$B/out.kubectl")" 'BEGIN {printf "%.1f MB", b/1e6}'))}"
  o=$(printf '%s\n' "${ot[@]}" | median); k=$(printf '%s\n' "${kt[@]}" | median)
  orss=$(printf '%s\n' "${om[@]}" | sort -n | tail -1); krss=$(printf '%s\n' "${km[@]}" | sort -n | tail -1)
  ratio=$(awk -v a="$o" -v b="$k" 'BEGIN {printf "%.3f", (a<0.005?0.005:a)/b}')
  rratio=$(awk -v a="$orss" -v b="$krss" 'BEGIN {printf "%.3f", a/b}')
  echo "| $label | ${k}s | ${o}s | $ratio | $((krss/1024)) MiB | $((orss/1024)) MiB | $rratio | $identical |" >>"$result"
  echo "$label kubectl=${k}s ours=${o}s ratio=$ratio rss=$((orss/1024))/$((krss/1024)) MiB identical=$identical"
}

for n in $SIZES; do
  generate "$n"
  row "" "$B/n$n/overlay"
done
if [ -n "$REAL_DIRS" ]; then
  {
    echo
    echo "Real directories (read-only checkouts of public repositories, outside the project):"
    echo
    echo "| directory (objects, output) | kubectl kustomize | driftless | time ratio | kubectl peak RSS | driftless peak RSS | RSS ratio | identical |"
    echo "|---|---|---|---|---|---|---|---|"
  } >>"$result"
  for dir in $REAL_DIRS; do
    row "${dir#"${REAL_ROOT:-}"}" "$dir"
  done
fi
echo "wrote $result"
