#!/usr/bin/env bash
# Commit to applied, with and without a webhook Receiver (issue 16): a commit pushed to the
# testenv's git server, then either a GitHub-shaped push webhook (signed with the Receiver's
# token) or nothing (the GitRepository's own poll, every INTERVAL), until kustomize-controller
# has applied the commit (`status.lastAppliedRevision`). Our source-, kustomize- and
# notification-controller, built with profile dist, as they ship.
#
# Flux's notification-controller is not built here (docs/benchmarks.md), so there is no Flux
# column: the number to read is how much of the interval the receiver takes away.
#
#   TRIALS=20 POLL_TRIALS=5 INTERVAL=1m hack/bench/receiver.sh
# Writes hack/bench/results/<date>-commit-to-applied.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
TRIALS=${TRIALS:-20}
POLL_TRIALS=${POLL_TRIALS:-5}
INTERVAL=${INTERVAL:-1m}
B=$root/target/bench/receiver
rm -rf "$B" && mkdir -p "$B" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
cargo build -q --profile dist -p source-controller -p kustomize-controller -p notification-controller
BIN=$root/target/dist
$KUBECTL apply --server-side --force-conflicts --field-manager=bench -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null

ns=bench-receiver
$KUBECTL delete namespace "$ns" --wait=true >/dev/null 2>&1 || true
$KUBECTL create namespace "$ns" >/dev/null

# The repository: one ConfigMap whose data changes with every commit.
repo=bench-receiver-$$
bare=$GIT_REPOS_DIR/$repo.git
git init -q --bare -b main "$bare"
git init -q -b main "$B/work"
git -C "$B/work" remote add origin "$bare"
commit() { # commit N → the new commit id
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  trial: "%s"\n' "$1" >"$B/work/app.yaml"
  git -C "$B/work" add -A
  git -C "$B/work" -c user.name=bench -c user.email=bench@example.com commit -q -m "trial $1"
  git -C "$B/work" push -q --force origin HEAD:main
  git -C "$B/work" rev-parse HEAD
}
commit 0 >/dev/null
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

$KUBECTL apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata: {name: git-auth}
stringData: {username: "$GIT_HTTP_USER", password: "$GIT_HTTP_PASSWORD"}
---
apiVersion: v1
kind: Secret
metadata: {name: webhook-token}
stringData: {token: "$token"}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: repo}
spec:
  url: $GIT_HTTP_BASE/$repo.git
  interval: $INTERVAL
  ref: {branch: main}
  secretRef: {name: git-auth}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: app}
spec:
  interval: 60m
  path: ./
  prune: true
  targetNamespace: $ns
  sourceRef: {kind: GitRepository, name: repo}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: github}
spec:
  type: github
  events: [push]
  secretRef: {name: webhook-token}
  resources: [{kind: GitRepository, name: repo}]
YAML

export RUNTIME_NAMESPACE=$ns
"$BIN/source-controller" --watch-all-namespaces=false --storage-path="$B/storage" \
  --storage-addr=127.0.0.1:19190 --storage-adv-addr=127.0.0.1:19190 \
  --metrics-addr=127.0.0.1:18191 --health-addr=127.0.0.1:19191 >"$B/source-controller.log" 2>&1 &
sc=$!
"$BIN/kustomize-controller" --watch-all-namespaces=false --metrics-addr=127.0.0.1:18192 \
  --health-addr=127.0.0.1:19192 >"$B/kustomize-controller.log" 2>&1 &
kc=$!
"$BIN/notification-controller" --watch-all-namespaces=false --events-addr=127.0.0.1:19480 \
  --receiverAddr=127.0.0.1:19482 --metrics-addr=127.0.0.1:18480 --health-addr=127.0.0.1:19483 \
  >"$B/notification-controller.log" 2>&1 &
nc=$!
trap 'kill $sc $kc $nc 2>/dev/null || true' EXIT

applied() { $KUBECTL get kustomization app -n "$ns" -o jsonpath='{.status.lastAppliedRevision}'; }
# wait_until DEADLINE_S COMMAND...: polls COMMAND until it succeeds; gives up (failing the run)
# after DEADLINE_S seconds.
wait_until() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "gave up waiting for: $*" >&2; exit 1; }
    sleep 0.05
  done
}
applied_is() { [ "$(applied)" = "$1" ]; }
applied_any() { [ -n "$(applied)" ]; }
wait_until 120 applied_any
$KUBECTL wait -n "$ns" receiver/github --for=condition=Ready --timeout=60s >/dev/null
hook=http://127.0.0.1:19482$($KUBECTL get receiver github -n "$ns" -o jsonpath='{.status.webhookPath}')

# trial MODE N: one commit, then the webhook (MODE receiver) or nothing (MODE poll); prints the
# seconds until kustomize-controller applied it.
trial() {
  local sha start body signature
  sha=$(commit "$2")
  start=$(date +%s.%N)
  if [ "$1" = receiver ]; then
    body=$(printf '{"ref": "refs/heads/main", "after": "%s"}' "$sha")
    signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$token" | awk '{print $NF}')
    curl -fs -o /dev/null -X POST "$hook" -H 'X-GitHub-Event: push' -H 'Content-Type: application/json' \
      -H "X-GitHub-Delivery: $sha" -H "X-Hub-Signature-256: sha256=$signature" -d "$body"
  fi
  # A poll comes within the interval; twice that is a failure.
  wait_until 300 applied_is "main@sha1:$sha"
  awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f\n", e - s}'
}

n=0
for _ in $(seq 1 "$TRIALS"); do n=$((n + 1)); trial receiver "$n" >>"$B/receiver.txt"; done
for _ in $(seq 1 "$POLL_TRIALS"); do n=$((n + 1)); trial poll "$n" >>"$B/poll.txt"; done

stats() { sort -n "$1" | awk '{a[NR] = $1} END {i = int(NR * 0.5) + 1; j = int(NR * 0.95) + 1;
  if (j > NR) j = NR; printf "%s | %s | %s", a[i], a[j], a[NR]}'; }
out=hack/bench/results/$(date +%F)-commit-to-applied.md
cat >"$out" <<REPORT
# Commit to applied, with and without a Receiver ($(date +%F), driftless $(git rev-parse --short HEAD))

Our source-, kustomize- and notification-controller (profile dist) on this 2-core machine
against the testenv control plane and git server (smart HTTP). Each trial pushes a commit
changing one ConfigMap, then either calls the github Receiver as GitHub calls it (a signed
\`push\`) or waits for the GitRepository's poll (\`interval: $INTERVAL\`), until the
Kustomization's \`lastAppliedRevision\` is the commit. Flux's notification-controller is not
built here, so there is no Flux column.

| path | trials | p50 s | p95 s | max s |
|---|---|---|---|---|
| push + webhook Receiver | $TRIALS | $(stats "$B/receiver.txt") |
| push, GitRepository poll every $INTERVAL | $POLL_TRIALS | $(stats "$B/poll.txt") |
REPORT
cat "$out"
kill $sc $kc $nc 2>/dev/null || true
$KUBECTL delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
rm -rf "$bare"
