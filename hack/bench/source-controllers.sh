# Sourced by the benchmarks that run a source-controller, ours or Flux's, one at a time:
#   start_source IMPL   starts it (storage and log in $B, as the bench identity
#                       bench-source-controller), waits until it is ready, prints its pid
#   stop PID...         stops processes and waits until they are gone
#   ready_then_echo PID PORT
# Needs B, BIN (our dist binaries), FLUX_SC (Flux's binary) and TESTENV_DIR.

# ready_then_echo PID HEALTH_PORT: waits (up to 10 s) until the controller answers /readyz,
# then prints its pid.
ready_then_echo() {
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$1"
}

start_source() { # start_source IMPL → pid
  rm -rf "$B/storage" && mkdir -p "$B/storage"
  local flags=(--concurrent=10 --storage-path="$B/storage" --storage-addr=127.0.0.1:19190
    --storage-adv-addr=127.0.0.1:19190 --metrics-addr=127.0.0.1:18191 --health-addr=127.0.0.1:19191)
  case "$1" in
    driftless) KUBECONFIG=$TESTENV_DIR/bench-source-controller.kubeconfig "$BIN/source-controller" "${flags[@]}" \
      >"$B/sc-$1.log" 2>&1 & ;;
    # As Flux ships it: GOMEMLIMIT from the 1Gi limit.
    flux) KUBECONFIG=$TESTENV_DIR/bench-source-controller.kubeconfig GOMEMLIMIT=1GiB RUNTIME_NAMESPACE=flux-system "$FLUX_SC" "${flags[@]}" --watch-all-namespaces \
      --log-level=info >"$B/sc-$1.log" 2>&1 & ;;
    *) echo "unknown implementation: $1" >&2; exit 2 ;;
  esac
  ready_then_echo $! 19191
}

# Stops controllers and waits until they are gone (they are not children of this shell, and
# a controller still shutting down would hold the ports of the next one).
stop() {
  local p
  kill "$@" 2>/dev/null || true
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null; do sleep 0.2; done
  done
}
