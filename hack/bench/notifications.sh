#!/usr/bin/env bash
# Notifications (issue 16, ../shared/docs/performance.md): EVENTS events in one minute, POSTed
# in Flux's JSON to notification-controller's event server, routed by ALERTS Alerts (one
# GitRepository each, a generic Provider each) to a local sink on loopback. Reported: event ->
# delivery latency p50/p95/max (the sink's receive time minus the send time written in the
# message, one clock), deliveries, and the controller's peak RSS and CPU seconds under load.
# notification-controller is built with profile dist, as it ships.
#
# Flux's notification-controller is not built here (its Go module's replace directives need
# modules the proxy does not serve, as for Flux's other controllers in
# ../shared/docs/performance.md), so there is no Flux column; the goals are absolute
# (p95 < 100 ms, RSS < 30 MiB).
#
#   EVENTS=1000 ALERTS=50 hack/bench/notifications.sh
# Writes hack/bench/results/<date>-notifications-<EVENTS>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${EVENTS:-1000}
ALERTS=${ALERTS:-50}
B=$PWD/target/bench-notifications
rm -rf "$B" && mkdir -p "$B" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
cargo build -q --profile dist -p notification-controller
ns=bench-notify
$KUBECTL delete namespace "$ns" --wait=true >/dev/null 2>&1 || true
$KUBECTL create namespace "$ns" >/dev/null

sink_port=19481
for i in $(seq 1 "$ALERTS"); do
  printf -- '---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: sink-%s, namespace: %s}\nspec: {type: generic, address: "http://127.0.0.1:%s/p%s"}\n' \
    "$i" "$ns" "$sink_port" "$i"
  printf -- '---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: alert-%s, namespace: %s}\nspec:\n  providerRef: {name: sink-%s}\n  eventSources: [{kind: GitRepository, name: repo-%s}]\n' \
    "$i" "$ns" "$i" "$i"
done | $KUBECTL apply -f - >/dev/null

RUNTIME_NAMESPACE=$ns target/dist/notification-controller --watch-all-namespaces=false \
  --events-addr=127.0.0.1:19480 --receiverAddr=127.0.0.1:19482 \
  --metrics-addr=127.0.0.1:18480 --health-addr=127.0.0.1:19483 >"$B/controller.log" 2>&1 &
nc=$!
trap 'kill $nc 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -fs http://127.0.0.1:19483/readyz >/dev/null 2>&1 && break; sleep 0.5; done
idle=$(awk '/VmRSS/ {print $2}' "/proc/$nc/status")
cpu_before=$(awk '{print $14 + $15}' "/proc/$nc/stat")

python3 hack/bench/notifications-load.py "$EVENTS" "$ALERTS" "$ns" "$sink_port" >"$B/latency.txt"
read -r delivered p50 p95 max elapsed <"$B/latency.txt"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$nc/status")
cpu=$(awk -v b="$cpu_before" -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15 - b) / hz}' "/proc/$nc/stat")
kill $nc 2>/dev/null || true
$KUBECTL delete namespace "$ns" --wait=false >/dev/null 2>&1 || true

every=$(awk -v e="$EVENTS" 'BEGIN {printf "%.0f", 60000 / e}')
out=hack/bench/results/$(date +%F)-notifications-$EVENTS.md
cat >"$out" <<REPORT
# Notifications: $EVENTS events in a minute across $ALERTS Alerts ($(date +%F), driftless $(git rev-parse --short HEAD))

notification-controller built with profile dist, on this 2-core machine against the testenv
control plane. Events POSTed in Flux's JSON, one every $every ms, to the event server; each names
one of $ALERTS GitRepositories, each watched by its own Alert and generic Provider; a Python
sink on loopback records when each arrives (\`hack/bench/notifications-load.py\`). Flux's
notification-controller is not built here, so there is no Flux column: the goals are absolute.

| measure | notification-controller | goal |
|---|---|---|
| delivered | $delivered of $EVENTS | all |
| latency p50 (event sent -> received by the sink) | $p50 ms | |
| latency p95 | $p95 ms | < 100 ms |
| latency max | $max ms | |
| peak RSS (VmHWM) | $((hwm / 1024)) MiB (idle $((idle / 1024)) MiB) | < 30 MiB |
| CPU seconds over the run (${elapsed} s) | $cpu s | |
REPORT
cat "$out"
