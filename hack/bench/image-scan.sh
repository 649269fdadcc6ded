#!/usr/bin/env bash
# Image scanning and automation (issue 17, ../shared/docs/performance.md).
#
# Part 1, the scan: REPOS ImageRepositories of TAGS tags each on a registry of its own (Debian's
# docker-registry on loopback), one semver ImagePolicy each. Reported: wall time from applying
# the objects to every policy having its latest image, registry requests, the controller's peak
# RSS (the tag-memory goal: 200 x 10,000 tags under 50 MiB), and the requests a restart costs
# (none: tags are kept under --storage-path and each repository's last scan is in its status).
# The registry's storage is written directly: one directory of TAGS tag directories that every
# repository's `_manifests/tags` links to (the tag list is a directory listing for the
# registry), so 2 million tags cost 10,000 directories on disk.
#
# Part 2, push to rollout: PUSHES image pushes, each timed from the push to the Deployment in the
# cluster carrying the new tag, through image-reflector-controller, image-automation-controller
# (a commit to the fleet repository on the testenv git server), source-controller and
# kustomize-controller, all as they ship (profile dist). The ImageRepository and the
# GitRepository poll every INTERVAL; the figures are dominated by those intervals, so they are
# reported with them.
#
# Flux's image controllers cannot be built from the Go module proxy here (their replace
# directives need modules it does not serve), so the figures are absolute.
#
#   REPOS=200 TAGS=10000 PUSHES=10 INTERVAL=5s hack/bench/image-scan.sh
#   NO_BUILD=1 measures the dist binaries already built.
# Writes hack/bench/results/<date>-image-automation.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
REPOS=${REPOS:-200}
TAGS=${TAGS:-10000}
PUSHES=${PUSHES:-10}
INTERVAL=${INTERVAL:-5s}
B=$root/target/bench-images
PORT=15099
rm -rf "$B" && mkdir -p "$B" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
if [ -z "${NO_BUILD:-}" ]; then
  cargo build -q --profile dist -p image-reflector-controller -p image-automation-controller \
    -p source-controller -p kustomize-controller
fi
# The CLI only pushes the images (part 2); its build profile does not matter.
cargo build -q -p driftless-cli
BIN=$root/target/dist
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# The registry: TAGS tags, REPOS repositories sharing them.
repos=$B/registry/docker/registry/v2/repositories
python3 - "$repos" "$REPOS" "$TAGS" <<'PY'
import os, sys
repos, n, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shared = os.path.join(repos, "bench", "_shared", "_manifests", "tags")
os.makedirs(shared)
for i in range(tags):
    # Semver tags, with a cosign signature tag for one in twenty (excluded by default).
    tag = f"{i // 1000}.{(i // 10) % 100}.{i % 10}" if i % 20 else f"sha256-{i:064x}.sig"
    os.mkdir(os.path.join(shared, tag))
for r in range(n):
    d = os.path.join(repos, "bench", f"img-{r}", "_manifests")
    os.makedirs(d)
    os.symlink(shared, os.path.join(d, "tags"))
PY
cat >"$B/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $B/registry}
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$B/registry.yml" >"$B/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.25; done
tag_lists() { grep -c 'tags/list' "$B/registry.log" || true; }

ns=bench-images
$KUBECTL delete namespace "$ns" --wait=true >/dev/null 2>&1 || true
$KUBECTL create namespace "$ns" >/dev/null

start_reflector() {
  RUNTIME_NAMESPACE=$ns "$BIN/image-reflector-controller" --watch-all-namespaces=false \
    --storage-path="$B/tags" --metrics-addr=127.0.0.1:18490 --health-addr=127.0.0.1:19490 \
    >>"$B/reflector.log" 2>&1 &
  reflector=$!
  pids+=("$reflector")
  for _ in $(seq 1 60); do curl -fs http://127.0.0.1:19490/readyz >/dev/null 2>&1 && break; sleep 0.5; done
}
start_reflector
idle=$(awk '/VmRSS/ {print $2}' "/proc/$reflector/status")

for i in $(seq 0 $((REPOS - 1))); do
  printf -- '---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: img-%s, namespace: %s}\nspec: {image: "127.0.0.1:%s/bench/img-%s", interval: 1h, insecure: true}\n' \
    "$i" "$ns" "$PORT" "$i"
  printf -- '---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: img-%s, namespace: %s}\nspec: {imageRepositoryRef: {name: img-%s}, policy: {semver: {range: ">=1.0.0 <5.0.0"}}}\n' \
    "$i" "$ns" "$i"
done >"$B/objects.yaml"
t0=$(date +%s.%N)
$KUBECTL apply -f "$B/objects.yaml" >/dev/null
resolved=0
until [ "$resolved" -ge "$REPOS" ]; do
  sleep 0.5
  resolved=$($KUBECTL -n "$ns" get imagepolicies -o jsonpath='{range .items[*]}{.status.latestRef.tag}{"\n"}{end}' | grep -c . || true)
done
t1=$(date +%s.%N)
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
latest=$($KUBECTL -n "$ns" get imagepolicy img-0 -o jsonpath='{.status.latestRef.tag}')
count=$($KUBECTL -n "$ns" get imagerepository img-0 -o jsonpath='{.status.lastScanResult.tagCount}')
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$reflector/status")
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$reflector/stat")
requests=$(tag_lists)
disk=$(du -sk "$B/tags" | cut -f1)

# A restart: nothing is rescanned before the interval, and the policies keep their choice.
kill "$reflector"; wait "$reflector" 2>/dev/null || true
start_reflector
sleep 20
after_restart=$(( $(tag_lists) - requests ))
restart_rss=$(awk '/VmHWM/ {print $2}' "/proc/$reflector/status")
kill "$reflector"; wait "$reflector" 2>/dev/null || true
$KUBECTL delete namespace "$ns" --wait=false >/dev/null 2>&1 || true

# Part 2: push to rollout.
ns=bench-rollout
$KUBECTL delete namespace "$ns" --wait=true >/dev/null 2>&1 || true
$KUBECTL create namespace "$ns" >/dev/null
port=0
for c in source-controller kustomize-controller image-reflector-controller image-automation-controller; do
  port=$((port + 1))
  extra=()
  [ "$c" = source-controller ] && extra=(--storage-path="$B/artifacts" --storage-addr=127.0.0.1:19491 --storage-adv-addr=127.0.0.1:19491)
  [ "$c" = image-reflector-controller ] && extra=(--storage-path="$B/tags2")
  RUNTIME_NAMESPACE=$ns "$BIN/$c" --watch-all-namespaces=false --metrics-addr="127.0.0.1:1850$port" \
    --health-addr="127.0.0.1:1950$port" "${extra[@]}" >"$B/$c.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:1950$port/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
done
image=$OCI_REGISTRY/rollout-$RANDOM$RANDOM
push_tag() { # tag
  mkdir -p "$B/artifact" && echo "$1" >"$B/artifact/tag"
  target/debug/driftless push artifact "oci://$image:$1" --path "$B/artifact" --source bench \
    --revision "$1" --insecure-registry >/dev/null
}
push_tag 1.0.0
fleet=$GIT_REPOS_DIR/bench-rollout-fleet.git
rm -rf "$fleet" "$B/fleet" && git init -q --bare -b main "$fleet"
mkdir -p "$B/fleet"
cat >"$B/fleet/deployment.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: $ns}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - name: app
          image: $image:1.0.0 # {"\$imagepolicy": "$ns:app"}
EOF
git -C "$B/fleet" init -q -b main
git -C "$B/fleet" -c user.name=bench -c user.email=bench@example.com commit -q --allow-empty -m init
git -C "$B/fleet" add -A
git -C "$B/fleet" -c user.name=bench -c user.email=bench@example.com commit -q -m fleet
git -C "$B/fleet" push -q "$fleet" HEAD:main
$KUBECTL -n "$ns" create secret generic git-auth --from-literal=username="$GIT_HTTP_USER" \
  --from-literal=password="$GIT_HTTP_PASSWORD" >/dev/null
$KUBECTL apply -f - >/dev/null <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: fleet, namespace: $ns}
spec: {url: "$GIT_HTTP_BASE/bench-rollout-fleet.git", interval: $INTERVAL, ref: {branch: main}, secretRef: {name: git-auth}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: $ns}
spec: {interval: 1h, path: ./, prune: true, sourceRef: {kind: GitRepository, name: fleet}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {name: app, namespace: $ns}
spec: {image: "$image", interval: $INTERVAL, insecure: true}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: app, namespace: $ns}
spec: {imageRepositoryRef: {name: app}, policy: {semver: {range: ">=1.0.0"}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {name: app, namespace: $ns}
spec:
  interval: 1h
  sourceRef: {kind: GitRepository, name: fleet}
  git: {commit: {author: {name: bench, email: bench@example.com}}, checkout: {ref: {branch: main}}}
  update: {strategy: Setters}
EOF
deployed() { $KUBECTL -n "$ns" get deployment app -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true; }
until [ "$(deployed)" = "$image:1.0.0" ]; do sleep 0.5; done
: >"$B/latencies.txt"
for i in $(seq 1 "$PUSHES"); do
  tag=1.0.$i
  t0=$(date +%s.%N)
  push_tag "$tag"
  until [ "$(deployed)" = "$image:$tag" ]; do sleep 0.2; done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f\n", b - a}' >>"$B/latencies.txt"
done
read -r p50 p95 max < <(sort -n "$B/latencies.txt" | awk '{v[NR] = $1} END {
  i50 = int((NR + 1) * 0.5); i95 = int(NR * 0.95 + 0.999); if (i95 > NR) i95 = NR
  print v[i50], v[i95], v[NR]}')
commits=$(git --git-dir "$fleet" rev-list --count main)
$KUBECTL delete namespace "$ns" --wait=false >/dev/null 2>&1 || true

out=hack/bench/results/$(date +%F)-image-automation.md
cat >"$out" <<REPORT
# Image automation: $REPOS repositories x $TAGS tags, and push to rollout ($(date +%F), driftless $(git rev-parse --short HEAD))

Controllers built with profile dist, on this 2-core machine against the testenv control plane.
Flux's image controllers are not built here, so the figures are absolute (\`hack/bench/image-scan.sh\`).

## Scan: $REPOS ImageRepositories of $TAGS tags, one semver ImagePolicy each

A docker-registry of its own on loopback, every repository listing the same $TAGS tags
(semver, one in twenty a \`.sig\` signature tag); image-reflector-controller with its defaults
(\`--concurrent=4\`).

| measure | image-reflector-controller | goal |
|---|---|---|
| wall time, objects applied -> every policy resolved | $wall s | |
| tags per repository after exclusions (\`tagCount\`) | $count | |
| latest image of each policy | $latest | |
| registry requests (tag lists) | $requests | one per repository |
| peak RSS (VmHWM) | $((hwm / 1024)) MiB (idle $((idle / 1024)) MiB) | < 50 MiB |
| CPU seconds | $cpu s | |
| tags on disk (\`--storage-path\`) | $((disk / 1024)) MiB | |
| registry requests in the 20 s after a restart | $after_restart | 0 (no rescan before the interval) |
| peak RSS after the restart | $((restart_rss / 1024)) MiB | |

## Push to rollout: $PUSHES image pushes

Each push of a new tag is timed until the Deployment in the cluster carries it: ImageRepository
scan (interval $INTERVAL) -> ImagePolicy -> ImageUpdateAutomation commit and push to the git
server -> GitRepository (interval $INTERVAL) -> Kustomization apply. With both polls at
$INTERVAL, up to two intervals of waiting are part of each figure; a Receiver on the registry's
and the git server's webhooks removes them.

| measure | seconds |
|---|---|
| p50 | $p50 |
| p95 | $p95 |
| max | $max |
| commits made by the automation | $((commits - 2)) |
REPORT
cat "$out"
