#!/usr/bin/env bash
# Builds the Go binaries the test environment needs, from Go modules, cached per version outside the
# repository: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd, kwok, sops (SOPS test data) and cosign (signed OCI test artifacts). Recipe and pitfalls: ../shared/docs/testenv-recipe.md §1, §3, §4.
#
# Usage: hack/build-testbins.sh [all|k8s|etcd|kwok|sops|cosign|helm|versitygw|fake-gcs-server|azurite|nats-server|flux|flux-controllers|flux-controllers-all]
#        (default: all; flux and the Flux controllers are built on demand)
# Prints nothing but progress; each component logs to $TESTBINS_CACHE/logs/<component>.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -modcacherw"
mkdir -p "$TESTBINS_CACHE/logs" "$TESTBINS_WORK"

gojson() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# run_logged NAME CMD...: runs a build step with its output in the component's log; on failure
# names the component and the log.
run_logged() {
  local name=$1; shift
  local log="$TESTBINS_CACHE/logs/$name.log"
  if ! "$@" >>"$log" 2>&1; then
    echo "build of $name failed; see $log" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}

build_k8s() {
  local d="$TESTBINS_CACHE/k8s-v$K8S_VERSION" w="$TESTBINS_WORK/k8s-v$K8S_VERSION"
  if [ -x "$d/kubectl" ] && [ -x "$d/kube-apiserver" ] && [ -x "$d/kube-controller-manager" ] && [ -x "$d/kube-scheduler" ]; then
    return 0
  fi
  echo "building kubernetes v$K8S_VERSION (cold: ~20 min on 2 cores)"
  rm -rf "$w"; mkdir -p "$w" "$d"
  : >"$TESTBINS_CACHE/logs/k8s.log"
  (
    cd "$w"
    run_logged k8s go mod init local.test/k8s-testbins
    run_logged k8s go mod edit -go=1.26.0
    local staging="v0.${K8S_VERSION#1.}" kmod m
    kmod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | gojson GoMod)
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kmod"); do
      go mod edit "-replace=$m=$m@$staging"
    done
    run_logged k8s go get -tool \
      "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kubectl@v$K8S_VERSION"
    local minor ld p c
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
    done
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      run_logged k8s go build -trimpath -pgo=off -ldflags "$ld" -o "$d/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$d/$c.tmp" "$d/$c"
    done
  )
}

build_etcd() {
  local d="$TESTBINS_CACHE/etcd-v$ETCD_VERSION" w="$TESTBINS_WORK/etcd-v$ETCD_VERSION"
  [ -x "$d/etcd" ] && return 0
  echo "building etcd v$ETCD_VERSION"
  rm -rf "$w"; mkdir -p "$w" "$d"
  : >"$TESTBINS_CACHE/logs/etcd.log"
  (
    cd "$w"
    run_logged etcd go mod init local.test/etcd-bin
    run_logged etcd go mod edit -go=1.26.0
    run_logged etcd go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    run_logged etcd go build -trimpath -ldflags "-s -w" -o "$d/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$d/etcd.tmp" "$d/etcd"
  )
}

build_kwok() {
  local d="$TESTBINS_CACHE/kwok-v$KWOK_VERSION"
  [ -x "$d/kwok" ] && [ -d "$d/stages" ] && return 0
  echo "building kwok v$KWOK_VERSION"
  mkdir -p "$d"
  : >"$TESTBINS_CACHE/logs/kwok.log"
  run_logged kwok env GOBIN="$d" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  # The kwok binary ships no stages; copy the ones kwokctl uses out of the module.
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | gojson Dir)/kustomize/stage
  rm -rf "$d/stages.tmp"; mkdir -p "$d/stages.tmp"
  cp "$src/node/fast/node-initialize.yaml" "$src/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
     "$src/pod/fast/pod-ready.yaml" "$src/pod/fast/pod-complete.yaml" "$src/pod/fast/pod-delete.yaml" "$d/stages.tmp/"
  chmod -R u+w "$d/stages.tmp"
  rm -rf "$d/stages"; mv "$d/stages.tmp" "$d/stages"
}

build_helm() {
  local d="$TESTBINS_CACHE/helm-v$HELM_VERSION"
  [ -x "$d/helm" ] && return 0
  echo "building helm v$HELM_VERSION"
  mkdir -p "$d"
  : >"$TESTBINS_CACHE/logs/helm.log"
  run_logged helm env GOBIN="$d" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION" "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION"
}

# go_tool NAME VERSION MODULE_PATH: `go install MODULE_PATH@vVERSION` into
# $TESTBINS_CACHE/NAME-vVERSION, unless its binary NAME is there already.
go_tool() {
  local name=$1 version=$2 module=$3
  local d="$TESTBINS_CACHE/$name-v$version"
  [ -x "$d/$name" ] && return 0
  echo "building $name v$version"
  mkdir -p "$d"
  : >"$TESTBINS_CACHE/logs/$name.log"
  run_logged "$name" env GOBIN="$d" go install -trimpath -ldflags "-s -w" "$module@v$version"
}

build_sops() { go_tool sops "$SOPS_VERSION" github.com/getsops/sops/v3/cmd/sops; }
build_cosign() { go_tool cosign "$COSIGN_VERSION" github.com/sigstore/cosign/v2/cmd/cosign; }
build_versitygw() { go_tool versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw; }
build_fake_gcs() { go_tool fake-gcs-server "$FAKE_GCS_VERSION" github.com/fsouza/fake-gcs-server; }
build_nats() { go_tool nats-server "$NATS_SERVER_VERSION" github.com/nats-io/nats-server/v2; }

# Azurite is a Node.js package: installed from the npm registry, cached by version.
build_azurite() {
  local d="$TESTBINS_CACHE/azurite-v$AZURITE_VERSION"
  [ -x "$d/node_modules/.bin/azurite-blob" ] && return 0
  echo "installing azurite v$AZURITE_VERSION"
  mkdir -p "$d"
  : >"$TESTBINS_CACHE/logs/azurite.log"
  run_logged azurite npm install --prefix "$d" --no-audit --no-fund "azurite@$AZURITE_VERSION"
}

# The real flux CLI, for hack/compat-flux-cli.sh (optional; not part of `all`). The module zip lacks
# the embedded manifests directory (it is generated by the Makefile), so build inside a copy of the
# module with a placeholder (recipe §5.2).
build_flux() {
  local d="$TESTBINS_CACHE/flux-v$FLUX_VERSION" w="$TESTBINS_WORK/flux2-v$FLUX_VERSION" src
  [ -x "$d/flux" ] && return 0
  echo "building the flux CLI v$FLUX_VERSION (cold: ~5-8 min on 2 cores)"
  mkdir -p "$d"
  : >"$TESTBINS_CACHE/logs/flux.log"
  src=$(go mod download -json "github.com/fluxcd/flux2/v2@v$FLUX_VERSION" | gojson Dir)
  rm -rf "$w"; cp -r "$src" "$w"; chmod -R u+w "$w"
  mkdir -p "$w/cmd/flux/manifests"; : >"$w/cmd/flux/manifests/placeholder.yaml"
  (cd "$w" && run_logged flux go build -trimpath -ldflags "-s -w -X main.VERSION=$FLUX_VERSION" -o "$d/flux.tmp" ./cmd/flux)
  mv "$d/flux.tmp" "$d/flux"
}

# One Flux controller, for hack/bench (optional; not part of `all`). Built inside a copy of the
# module zip so its own replace directives apply; the nested ./api module is not in the zip, so
# that replace is dropped and the tagged api module is used (recipe §5.3).
# build_flux_controller NAME VERSION [MODULE=VERSION...]: Flux's controller from its Go module,
# its `./api` replace dropped (the published api module is used), and each MODULE pinned to
# VERSION by a replace (a dependency the module proxy serves only at another version).
build_flux_controller() {
  local name=$1 version=$2
  shift 2
  local d="$TESTBINS_CACHE/flux-ctrl" w="$TESTBINS_WORK/$name-v$version" src pin
  [ -x "$d/$name-v$version" ] && return 0
  echo "building Flux $name v$version (cold: ~5 min on 2 cores)"
  mkdir -p "$d"
  : >"$TESTBINS_CACHE/logs/$name.log"
  src=$(go mod download -json "github.com/fluxcd/$name@v$version" | gojson Dir)
  rm -rf "$w"; cp -r "$src" "$w"; chmod -R u+w "$w"
  (
    cd "$w"
    run_logged "$name" go mod edit -dropreplace="github.com/fluxcd/$name/api"
    for pin in "$@"; do
      run_logged "$name" go mod edit -replace="${pin%%=*}=${pin%%=*}@v${pin#*=}"
    done
    run_logged "$name" go build -mod=mod -trimpath -ldflags "-s -w" -o "$d/$name-v$version.tmp" .
  ) || return 1
  mv "$d/$name-v$version.tmp" "$d/$name-v$version"
}

what=${1:-all}
case "$what" in
  all) build_etcd; build_kwok; build_k8s; build_sops; build_cosign; build_helm; build_versitygw; build_fake_gcs; build_azurite; build_nats ;;
  k8s) build_k8s ;;
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  helm) build_helm ;;
  sops) build_sops ;;
  cosign) build_cosign ;;
  versitygw) build_versitygw ;;
  fake-gcs-server) build_fake_gcs ;;
  azurite) build_azurite ;;
  nats-server) build_nats ;;
  flux) build_flux ;;
  flux-controllers)
    build_flux_controller kustomize-controller "$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
    # source-controller v1.9.4 asks for github.com/fluxcd/pkg/artifact v0.18.2, which the module
    # proxy here refuses; v0.18.0 is served: the one patch-level difference of this build
    # (recorded in the benchmark results).
    build_flux_controller source-controller "$FLUX_SOURCE_CONTROLLER_VERSION" \
      "github.com/fluxcd/pkg/artifact=$FLUX_PKG_ARTIFACT_PIN" ;;
  # The other four, for hack/bench/idle-rss.sh (each with the pins versions.sh explains).
  flux-controllers-all)
    "$0" flux-controllers
    build_flux_controller notification-controller "$FLUX_NOTIFICATION_CONTROLLER_VERSION"
    build_flux_controller image-automation-controller "$FLUX_IMAGE_AUTOMATION_CONTROLLER_VERSION"
    build_flux_controller image-reflector-controller "$FLUX_IMAGE_REFLECTOR_CONTROLLER_VERSION" \
      "github.com/fluxcd/pkg/artifact=$FLUX_PKG_ARTIFACT_PIN"
    build_flux_controller helm-controller "$FLUX_HELM_CONTROLLER_VERSION" "helm.sh/helm/v4=$FLUX_HELM_PIN" ;;
  *) echo "usage: $0 [all|k8s|etcd|kwok|sops|cosign|helm|versitygw|fake-gcs-server|azurite|nats-server|flux|flux-controllers|flux-controllers-all]" >&2; exit 2 ;;
esac
