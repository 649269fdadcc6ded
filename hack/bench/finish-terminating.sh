#!/usr/bin/env bash
# Finishes the deletion of toolkit objects that tests left behind: once their controllers are
# gone, their finalizers keep their namespaces Terminating, and kube-controller-manager and the
# apiserver busy retrying, which a benchmark would measure. One list per toolkit kind.
# Needs KUBECTL (target/testenv/env.sh).
set -euo pipefail
for k in $($KUBECTL api-resources --namespaced -o name | grep -E '(fluxcd\.io|driftless\.dev)$'); do
  $KUBECTL get "$k" -A -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.namespace} {.metadata.name}{"\n"}{end}' |
    while read -r ns name; do
      $KUBECTL patch "$k" "$name" -n "$ns" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
done
