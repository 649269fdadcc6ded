#!/usr/bin/env bash
# W0 for every controller: resident memory 10 s after start-up with nothing of its kinds to
# reconcile, ours (cargo profile `dist`, linked statically as the images ship) against Flux's
# counterpart (built from Go modules by `hack/build-testbins.sh flux-controllers-all`,
# GOMEMLIMIT=1GiB as Flux ships them), RUNS times each (issue 20: ours ≤ 0.2 of Flux's in three
# runs out of three). One process at a time against the testenv; each watches only flux-system
# (empty of its kinds).
#
# Linking: our images carry one static executable (musl, FROM scratch: manifests/Dockerfile), as
# Flux's carry static Go executables. The musl target's standard library cannot be installed on
# this machine (its registries serve crates, not Rust targets), so the bench links the gnu build
# statically instead (`crt-static`, position-dependent): no shared libc, libm, libz or dynamic
# loader mapped, as in the image; glibc's malloc stays, as in a dynamic build. DYNAMIC=1 also
# measures the dynamically linked `target/dist` build (`cargo build --profile dist`), whose
# shared libraries add ~2 MiB of file pages (libc's alone ~1.4 MiB) to each process.
#
#   RUNS=3 hack/bench/idle-rss.sh   (NO_BUILD=1 uses the binaries as they are; BUILT_FROM names
#                                    their commit)
# Writes hack/bench/results/<date>-idle-rss.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RUNS=${RUNS:-3}
CONTROLLERS="source-controller kustomize-controller helm-controller notification-controller image-reflector-controller image-automation-controller"
B=$root/target/bench/idle-rss
rm -rf "$B" && mkdir -p "$B" hack/bench/results
# shellcheck source=hack/versions.sh
. hack/versions.sh
hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
STATIC_TARGET=x86_64-unknown-linux-gnu
if [ "${NO_BUILD:-}" != 1 ]; then
  # With `--target`, RUSTFLAGS reach only the target's crates, not build scripts or proc-macros.
  # shellcheck disable=SC2046
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build -q --profile dist --target $STATIC_TARGET $(printf -- '-p %s ' $CONTROLLERS)
  # shellcheck disable=SC2046
  [ "${DYNAMIC:-}" != 1 ] || cargo build -q --profile dist $(printf -- '-p %s ' $CONTROLLERS)
fi
hack/build-testbins.sh flux-controllers-all
IMPLS="driftless flux"
[ "${DYNAMIC:-}" != 1 ] || IMPLS="driftless driftless-dynamic flux"
FLUX=$TESTBINS_CACHE/flux-ctrl
$KUBECTL apply --server-side --force-conflicts --field-manager=bench -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null
hack/bench/finish-terminating.sh
$KUBECTL create namespace flux-system --dry-run=client -o yaml | $KUBECTL apply --server-side -f - >/dev/null

flux_version() {
  case "$1" in
    source-controller) echo "$FLUX_SOURCE_CONTROLLER_VERSION (pkg/artifact v$FLUX_PKG_ARTIFACT_PIN)" ;;
    kustomize-controller) echo "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" ;;
    helm-controller) echo "$FLUX_HELM_CONTROLLER_VERSION (helm v$FLUX_HELM_PIN)" ;;
    notification-controller) echo "$FLUX_NOTIFICATION_CONTROLLER_VERSION" ;;
    image-reflector-controller) echo "$FLUX_IMAGE_REFLECTOR_CONTROLLER_VERSION (pkg/artifact v$FLUX_PKG_ARTIFACT_PIN)" ;;
    image-automation-controller) echo "$FLUX_IMAGE_AUTOMATION_CONTROLLER_VERSION" ;;
  esac
}
flux_binary() { echo "$FLUX/$1-v$(flux_version "$1" | cut -d' ' -f1)"; }

# The flags a controller needs besides addresses: storage for the two that keep some, the event
# and receiver listeners of notification-controller, helm for ours.
extra_flags() { # extra_flags IMPL CONTROLLER
  case "$2" in
    source-controller) echo "--storage-path=$B/storage --storage-addr=127.0.0.1:19590 --storage-adv-addr=127.0.0.1:19590" ;;
    image-reflector-controller) echo "--storage-path=$B/tags" ;;
    notification-controller) echo "--events-addr=127.0.0.1:19591 --receiverAddr=127.0.0.1:19592" ;;
    helm-controller) [ "$1" = flux ] || echo "--helm-path=$HELM_BIN" ;;
  esac
}

# idle_kib IMPL CONTROLLER: starts it, waits until it is ready, 10 s idle, prints VmRSS in KiB.
idle_kib() {
  local impl=$1 c=$2 bin pid rss flags
  rm -rf "$B/storage" "$B/tags"
  mkdir -p "$B/storage" "$B/tags"
  read -r -a flags <<<"$(extra_flags "$impl" "$c")"
  case "$impl" in
    flux) bin=$(flux_binary "$c") ;;
    driftless) bin=$root/target/$STATIC_TARGET/dist/$c ;;
    driftless-dynamic) bin=$root/target/dist/$c ;;
  esac
  # (Flux's controllers elect a leader by default, in RUNTIME_NAMESPACE; so do ours there.)
  # Both watch only flux-system, which holds none of their kinds: objects tests left in other
  # namespaces would otherwise be reconciled, and "idle" would include that work.
  GOMEMLIMIT=1GiB RUNTIME_NAMESPACE=flux-system "$bin" --metrics-addr=127.0.0.1:18593 \
    --health-addr=127.0.0.1:19593 --watch-all-namespaces=false "${flags[@]}" >"$B/$impl-$c.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs http://127.0.0.1:19593/readyz >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "$impl $c exited; see $B/$impl-$c.log" >&2; echo 0; return; }
    sleep 0.1
  done
  sleep 10
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  echo "$rss"
}

out=$B/rss.tsv
: >"$out"
for run in $(seq 1 "$RUNS"); do
  for c in $CONTROLLERS; do
    for impl in $IMPLS; do
      printf '%s\t%s\t%s\t%s\n' "$run" "$c" "$impl" "$(idle_kib "$impl" "$c")" >>"$out"
    done
  done
  echo "run $run done"
done

date=$(date +%F)
dyn_head="" dyn_rule=""
[ "${DYNAMIC:-}" != 1 ] || { dyn_head=" dynamic build MiB (runs), worst ratio |"; dyn_rule="---|"; }
{
  echo "# Idle memory of every controller: driftless against Flux (W0)"
  echo
  echo "- date: $(date -u +%FT%H:%MZ); machine: $(nproc) CPUs; Kubernetes $K8S_VERSION (testenv)"
  echo "- driftless ${BUILT_FROM:-$(git rev-parse --short HEAD)} (cargo profile \`dist\`, linked statically as the images ship: \`--target $STATIC_TARGET\`, \`crt-static\`, the musl target not being installable here); Flux's controllers of Flux v$FLUX_VERSION built from Go modules (\`hack/build-testbins.sh flux-controllers-all\`), GOMEMLIMIT=1GiB"
  echo "- VmRSS 10 s after /readyz answered, watching only flux-system, which holds none of its kinds (\`--watch-all-namespaces=false\`), other flags at their defaults, leader election in flux-system; $RUNS runs, one process at a time"
  echo "- script: \`hack/bench/idle-rss.sh\`; goal (issue 20): ours ≤ 0.2 of Flux's in every run"
  echo
  echo "| controller | Flux version | driftless MiB (runs) | Flux MiB (runs) | worst ratio | goal met |$dyn_head"
  echo "|---|---|---|---|---|---|$dyn_rule"
  for c in $CONTROLLERS; do
    awk -F'\t' -v c="$c" -v v="$(flux_version "$c")" -v runs="$RUNS" -v dynamic="${DYNAMIC:-}" '
      $2 == c {kib[$3, $1] = $4}
      function mib(impl,   r, s) {
        for (r = 1; r <= runs; r++) s = s (r > 1 ? ", " : "") sprintf("%.1f", kib[impl, r] / 1024)
        return s
      }
      function worst(impl,   r, q, w) {
        for (r = 1; r <= runs; r++) {
          if (kib["flux", r] == 0) return -1
          q = kib[impl, r] / kib["flux", r]; if (q > w) w = q
        }
        return w
      }
      END {
        w = worst("driftless")
        met = w < 0 ? "n/a" : (w <= 0.2 ? "yes" : "no")
        printf "| %s | v%s | %s | %s | %.2f | %s |", c, v, mib("driftless"), mib("flux"), w, met
        if (dynamic == 1) printf " %s, %.2f |", mib("driftless-dynamic"), worst("driftless-dynamic")
        printf "\n"
      }' "$out"
  done
} >"hack/bench/results/$date-idle-rss.md"
echo "wrote hack/bench/results/$date-idle-rss.md"
