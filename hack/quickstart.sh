#!/usr/bin/env bash
# The main job, on a fresh machine: build the toolkit, bring up a local control plane and source
# servers (hack/testenv.sh), start the five controllers as local processes, create an example
# fleet repository on the local git server (examples/fleet), run `driftless bootstrap git`
# against it, show the result with `driftless get all -A` and `driftless tree`, then commit a
# change and show it applied.
#
#   hack/quickstart.sh        (or: hack/quickstart.sh up)
#   hack/quickstart.sh down   stop the controllers and the test environment
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
Q=$root/target/quickstart
CONTROLLERS="source-controller kustomize-controller helm-controller notification-controller image-reflector-controller image-automation-controller"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

down() {
  for c in $CONTROLLERS; do
    p=$(cat "$Q/$c.pid" 2>/dev/null || true)
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
    rm -f "$Q/$c.pid"
  done
  hack/testenv.sh down
}

if [ "${1:-up}" = down ]; then
  down
  exit 0
fi

say "Building the toolkit (cargo build)"
cargo build --workspace --bins --locked
driftless() { "$root/target/debug/driftless" "$@"; }

say "Starting the local control plane and source servers"
hack/testenv.sh up
# shellcheck source=/dev/null
. target/testenv/env.sh
driftless check --pre

# The controllers run on this machine (the Deployments that bootstrap installs run on kwok's
# fake nodes and only report Available). They start before bootstrap, so the CRDs go first.
say "Starting the controllers as local processes (leader election on)"
$KUBECTL apply --server-side --field-manager=driftless -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null
mkdir -p "$Q"
port=0
for c in $CONTROLLERS; do
  port=$((port + 1))
  p=$(cat "$Q/$c.pid" 2>/dev/null || true)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    continue
  fi
  extra=()
  if [ "$c" = source-controller ]; then
    extra=(--storage-path="$Q/storage" --storage-addr=127.0.0.1:19090 --storage-adv-addr=127.0.0.1:19090)
  fi
  if [ "$c" = image-reflector-controller ]; then
    extra=(--storage-path="$Q/image-tags")
  fi
  if [ "$c" = notification-controller ]; then
    extra=(--events-addr=127.0.0.1:19190 --receiverAddr=127.0.0.1:19292)
  fi
  RUNTIME_NAMESPACE=flux-system setsid nohup "target/debug/$c" \
    --enable-leader-election --metrics-addr="127.0.0.1:1818$port" --health-addr="127.0.0.1:1954$port" \
    --log-encoding=console "${extra[@]}" >"$Q/$c.log" 2>&1 </dev/null &
  echo $! >"$Q/$c.pid"
done
port=0
for c in $CONTROLLERS; do
  port=$((port + 1))
  for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:1954$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$(cat "$Q/$c.pid")" 2>/dev/null || { cat "$Q/$c.log"; echo "$c exited; log: $Q/$c.log"; exit 1; }
    sleep 0.5
  done
  printf '  %-28s ready   (probes :1954%s, metrics :1818%s, log %s)\n' "$c" "$port" "$port" "$Q/$c.log"
done

say "Creating the fleet repository on the local git server (examples/fleet)"
work=$Q/fleet-work
rm -rf "$work" "$GIT_REPOS_DIR/fleet.git"
git init -q --bare -b main "$GIT_REPOS_DIR/fleet.git"
cp -r examples/fleet "$work"
gitq() { git -C "$work" -c user.name=quickstart -c user.email=quickstart@example.com "$@"; }
auth_url=${GIT_HTTP_BASE/http:\/\//http://$GIT_HTTP_USER:$GIT_HTTP_PASSWORD@}/fleet.git
# The Helm repository the fleet's HelmRelease pulls podinfo from.
mkdir -p "$HELM_REPO_DIR/quickstart"
"$HELM_BIN" package ../shared/testdata/charts/podinfo --destination "$HELM_REPO_DIR/quickstart" >/dev/null
"$HELM_BIN" repo index "$HELM_REPO_DIR/quickstart"
sed -i "s|http://127.0.0.1:18081|$HELM_REPO_URL|" "$work/apps/podinfo-helm/repository.yaml"
gitq init -q -b main
gitq add -A
gitq commit -q -m "Fleet as of $(date -u +%FT%TZ)"
gitq push -q "$auth_url" HEAD:main
echo "  $GIT_HTTP_BASE/fleet.git:"
gitq ls-files | sed 's/^/    /'

say "driftless bootstrap git (HTTP basic auth, path clusters/quickstart)"
driftless bootstrap git --url "$GIT_HTTP_BASE/fleet.git" --username "$GIT_HTTP_USER" \
  --password "$GIT_HTTP_PASSWORD" --allow-insecure-http --branch main --path clusters/quickstart \
  --interval 1m --silent

# The fleet's own Kustomizations come from clusters/quickstart; wait for the apps.
$KUBECTL -n flux-system wait --for=condition=Ready kustomization/infrastructure \
  kustomization/podinfo-staging kustomization/podinfo-production kustomization/podinfo-helm \
  --timeout=240s >/dev/null

say "helm list -n podinfo-helm (the HelmRelease's release, as Helm itself sees it)"
"$HELM_BIN" list -n podinfo-helm

say "driftless get all -A"
driftless get all -A

say "driftless tree kustomization flux-system"
driftless tree kustomization flux-system

say "driftless create receiver (a GitHub-shaped webhook that makes flux-system fetch at once)"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
$KUBECTL -n flux-system create secret generic webhook-token --from-literal=token="$token" \
  --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
driftless create receiver flux-system --type github --event push \
  --resource GitRepository/flux-system --secret-ref webhook-token
hook=$($KUBECTL -n flux-system get receiver flux-system -o jsonpath='{.status.webhookPath}')

say "Committing a change (production scales to 3 replicas); the push webhook gets it applied"
gitq pull -q --rebase "$auth_url" main
sed -i 's/count: 2/count: 3/' "$work/apps/podinfo/production/kustomization.yaml"
gitq commit -q -am "Scale podinfo in production to 3"
gitq push -q "$auth_url" HEAD:main
commit=$(gitq rev-parse HEAD)
# What GitHub sends on a push: the event name and the body's HMAC-SHA256 with the token.
body="{\"ref\": \"refs/heads/main\", \"after\": \"$commit\"}"
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$token" | sed 's/^.* //')
curl -fsS -X POST "http://127.0.0.1:19292$hook" -H "X-GitHub-Event: push" \
  -H "X-Hub-Signature-256: sha256=$signature" -H "Content-Type: application/json" -d "$body"
echo
for _ in $(seq 1 120); do
  applied=$($KUBECTL -n flux-system get kustomization podinfo-production -o jsonpath='{.status.lastAppliedRevision}')
  [ "$applied" = "main@sha1:$commit" ] && break
  sleep 1
done
[ "$applied" = "main@sha1:$commit" ] || { echo "the change was not applied in 2 minutes"; exit 1; }
echo "  podinfo-production applied main@sha1:$commit"
$KUBECTL -n podinfo-production get deployment podinfo
driftless get kustomizations

say "Image automation: a new podinfo release is pushed; staging follows it through a commit"
# The local registry stands in for ghcr.io: its podinfo repository gets the tags.
for tag in 6.7.0 6.7.1; do
  mkdir -p "$Q/image" && echo "$tag" >"$Q/image/version"
  driftless push artifact "oci://$OCI_REGISTRY/podinfo:$tag" --path "$Q/image" --source quickstart \
    --revision "$tag" --insecure-registry >/dev/null
done
driftless create image repository podinfo --image "$OCI_REGISTRY/podinfo" --insecure --interval 10s
driftless create image policy podinfo --image-ref podinfo --select-semver '>=6.0.0'
driftless create image update flux-system --git-repo-ref flux-system --git-repo-path ./apps \
  --checkout-branch main --push-branch main --author-name "Image Automation" \
  --author-email automation@example.com --interval 10s \
  --commit-template 'Roll staging to the newest podinfo ({{ .AutomationObject }})'
for _ in $(seq 1 120); do
  pushed=$($KUBECTL -n flux-system get imageupdateautomation flux-system -o jsonpath='{.status.lastPushCommit}')
  [ -n "$pushed" ] && break
  sleep 1
done
[ -n "$pushed" ] || { echo "image automation pushed nothing in 2 minutes"; exit 1; }
echo "  image-automation-controller pushed $pushed:"
git --git-dir "$GIT_REPOS_DIR/fleet.git" log -1 --format='    %an: %s' "$pushed"
driftless reconcile source git flux-system >/dev/null
for _ in $(seq 1 120); do
  image=$($KUBECTL -n podinfo-staging get deployment podinfo -o jsonpath='{.spec.template.spec.containers[0].image}')
  [ "$image" = ghcr.io/stefanprodan/podinfo:6.7.1 ] && break
  sleep 1
done
[ "$image" = ghcr.io/stefanprodan/podinfo:6.7.1 ] || { echo "staging did not roll to 6.7.1 in 2 minutes"; exit 1; }
echo "  podinfo-staging runs $image"
driftless get images all

cat <<EOF2

Try more (after: . target/testenv/env.sh; the CLI is target/debug/driftless):
  driftless get sources git        driftless events --for Kustomization/podinfo-production
  driftless suspend kustomization podinfo-staging     driftless resume kustomization podinfo-staging
  driftless diff kustomization podinfo-production --path $work/apps/podinfo/production

Source servers for your own experiments:
  git over HTTP  $GIT_HTTP_BASE/<repo>.git   (user $GIT_HTTP_USER, password in \$GIT_HTTP_PASSWORD)
  git over SSH   $GIT_SSH_BASE/<repo>.git    (key \$GIT_SSH_KEY)
  OCI registry   $OCI_REGISTRY
  Helm repo      $HELM_REPO_URL  (files in \$HELM_REPO_DIR)

Stop everything:  hack/quickstart.sh down
EOF2
