#!/usr/bin/env bash
# The main job, on a fresh machine: build the toolkit, bring up a local control plane and source
# servers (hack/testenv.sh), install the CRDs, start the five controllers as local processes
# with leader election, and show what the cluster now serves.
#
#   hack/quickstart.sh        (or: hack/quickstart.sh up)
#   hack/quickstart.sh down   stop the controllers and the test environment
#
# The Git-driven flow (an example fleet repo, `driftless bootstrap git`, a commit applied) comes
# with the CLI (issue 6) on top of the same steps.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
Q=$root/target/quickstart
CONTROLLERS="source-controller kustomize-controller helm-controller notification-controller image-automation-controller"

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

say "Starting the local control plane and source servers"
hack/testenv.sh up
# shellcheck source=/dev/null
. target/testenv/env.sh

say "Installing the toolkit CRDs (generated from the Rust API types)"
$KUBECTL apply --server-side --field-manager=driftless -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null
$KUBECTL create namespace flux-system --dry-run=client -o yaml | $KUBECTL apply --server-side -f - >/dev/null

say "Starting the controllers as local processes (leader election on)"
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
  RUNTIME_NAMESPACE=flux-system setsid nohup "target/debug/$c" \
    --enable-leader-election --metrics-addr="127.0.0.1:1808$port" --health-addr="127.0.0.1:1944$port" \
    --log-encoding=console "${extra[@]}" >"$Q/$c.log" 2>&1 </dev/null &
  echo $! >"$Q/$c.pid"
done
port=0
for c in $CONTROLLERS; do
  port=$((port + 1))
  for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:1944$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$(cat "$Q/$c.pid")" 2>/dev/null || { cat "$Q/$c.log"; echo "$c exited; log: $Q/$c.log"; exit 1; }
    sleep 0.5
  done
  printf '  %-28s ready   (probes :1944%s, metrics :1808%s, log %s)\n' "$c" "$port" "$port" "$Q/$c.log"
done
for _ in $(seq 1 40); do
  [ "$($KUBECTL get leases -n flux-system -o name | wc -l)" -ge 5 ] && break
  sleep 0.5
done

say "Kubernetes $($KUBECTL version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') on loopback, with fake nodes (kwok)"
$KUBECTL get nodes

say "Toolkit kinds served (kubectl api-resources --categories=fluxcd)"
$KUBECTL api-resources --categories=fluxcd

say "Leader-election leases held by the controllers"
$KUBECTL get leases -n flux-system

say "Pushing examples/fleet to the local git server and OCI registry"
work=$Q/fleet-work
rm -rf "$work" && cp -r examples/fleet "$work"
[ -d "$GIT_REPOS_DIR/fleet.git" ] || git init -q --bare -b main "$GIT_REPOS_DIR/fleet.git"
gitq() { git -C "$work" -c user.name=quickstart -c user.email=quickstart@example.com "$@"; }
gitq init -q -b main
gitq add -A
gitq commit -q -m "Fleet as of $(date -u +%FT%TZ)"
gitq push -q --force "$GIT_REPOS_DIR/fleet.git" HEAD:main
commit=$(gitq rev-parse HEAD)
echo "  git:  $GIT_HTTP_BASE/fleet.git at main@sha1:$commit"
target/debug/driftless push artifact "oci://$OCI_REGISTRY/fleet:latest" --path "$work" \
  --source "$GIT_HTTP_BASE/fleet.git" --revision "main@sha1:$commit" --insecure-registry | sed 's/^/  oci:  /'

say "Creating a GitRepository (basic auth over HTTP) and an OCIRepository in flux-system"
$KUBECTL -n flux-system create secret generic fleet-auth --from-literal=username="$GIT_HTTP_USER" \
  --from-literal=password="$GIT_HTTP_PASSWORD" --dry-run=client -o yaml | $KUBECTL apply --server-side -f - >/dev/null
sed -e "s|@GIT_URL@|$GIT_HTTP_BASE/fleet.git|" -e "s|@OCI_URL@|oci://$OCI_REGISTRY/fleet|" <<'YAML' |
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: fleet, namespace: flux-system}
spec:
  url: @GIT_URL@
  interval: 1m
  ref: {branch: main}
  secretRef: {name: fleet-auth}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: fleet, namespace: flux-system}
spec:
  url: @OCI_URL@
  interval: 1m
  insecure: true
  ref: {tag: latest}
YAML
  $KUBECTL apply --server-side --field-manager=quickstart -f - >/dev/null
$KUBECTL -n flux-system annotate --overwrite gitrepository/fleet ocirepository/fleet \
  reconcile.fluxcd.io/requestedAt="$(date +%s)" >/dev/null
$KUBECTL -n flux-system wait --for=condition=Ready gitrepository/fleet ocirepository/fleet --timeout=120s >/dev/null
$KUBECTL -n flux-system get gitrepositories,ocirepositories
url=$($KUBECTL -n flux-system get gitrepository fleet -o jsonpath='{.status.artifact.url}')
digest=$($KUBECTL -n flux-system get gitrepository fleet -o jsonpath='{.status.artifact.digest}')
echo
echo "Artifact served by source-controller: $url"
echo "  $digest, containing:"
curl -fsS "$url" | tar -tzf - | sed 's/^/    /'

say "Applying the fleet with three Kustomizations (podinfo-* dependsOn infrastructure)"
cat <<'YAML' | $KUBECTL apply --server-side --field-manager=quickstart -f - >/dev/null
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: infrastructure, namespace: flux-system}
spec:
  interval: 10m
  prune: true
  path: ./infrastructure
  sourceRef: {kind: GitRepository, name: fleet}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: podinfo-staging, namespace: flux-system}
spec:
  interval: 10m
  prune: true
  wait: true
  timeout: 2m
  path: ./apps/podinfo/staging
  dependsOn: [{name: infrastructure}]
  sourceRef: {kind: GitRepository, name: fleet}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: podinfo-production, namespace: flux-system}
spec:
  interval: 10m
  prune: true
  wait: true
  timeout: 2m
  path: ./apps/podinfo/production
  dependsOn: [{name: infrastructure}]
  sourceRef: {kind: GitRepository, name: fleet}
YAML
$KUBECTL -n flux-system wait --for=condition=Ready kustomizations --all --timeout=180s >/dev/null
$KUBECTL -n flux-system get kustomizations
echo
$KUBECTL get deployments,services,configmaps -n podinfo-production -l environment=production
echo
echo "Inventory of podinfo-production:"
$KUBECTL -n flux-system get kustomization podinfo-production -o jsonpath='{range .status.inventory.entries[*]}{"  "}{.id}{"\n"}{end}'

say "Committing a change (production scales to 3 replicas) and waiting for it to be applied"
sed -i 's/count: 2/count: 3/' "$work/apps/podinfo/production/kustomization.yaml"
gitq commit -q -am "Scale podinfo in production to 3"
gitq push -q --force "$GIT_REPOS_DIR/fleet.git" HEAD:main
commit=$(gitq rev-parse HEAD)
$KUBECTL -n flux-system annotate --overwrite gitrepository/fleet reconcile.fluxcd.io/requestedAt="$(date +%s)" >/dev/null
for _ in $(seq 1 120); do
  applied=$($KUBECTL -n flux-system get kustomization podinfo-production -o jsonpath='{.status.lastAppliedRevision}')
  [ "$applied" = "main@sha1:$commit" ] && break
  sleep 1
done
[ "$applied" = "main@sha1:$commit" ] || { echo "the change was not applied in 2 minutes"; exit 1; }
echo "  applied main@sha1:$commit"
$KUBECTL -n podinfo-production get deployment podinfo

cat <<EOF2

Source servers for your own experiments (after: . target/testenv/env.sh):
  git over HTTP  $GIT_HTTP_BASE/<repo>.git   (user $GIT_HTTP_USER, password in \$GIT_HTTP_PASSWORD)
  git over SSH   $GIT_SSH_BASE/<repo>.git    (key \$GIT_SSH_KEY)
  OCI registry   $OCI_REGISTRY
  Helm repo      $HELM_REPO_URL  (files in \$HELM_REPO_DIR)

Stop everything:  hack/quickstart.sh down
EOF2
