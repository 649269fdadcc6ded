#!/usr/bin/env python3
"""One W4 trial: asks the OCIRepository NAME to reconcile (reconcile.fluxcd.io/requestedAt) and
prints the seconds until the Kustomization NAME records the origin revision WANT as applied. The
Kustomization is watched (from before the request), so the time is when the apiserver sent the
change, not the next tick of a polling loop; the request's connection is open before the clock
starts.

    w4.py NAMESPACE NAME WANT TOKEN   (KUBECONFIG: one hack/testenv.sh wrote)"""
import json
import sys
import time
import urllib.parse

from kube import connect, open_url, request, request_on

namespace, name, want, token = sys.argv[1:5]
kustomization = f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{namespace}/kustomizations"
current = request("GET", f"{kustomization}/{name}")
query = urllib.parse.urlencode({"watch": "1", "fieldSelector": f"metadata.name={name}",
                                "resourceVersion": current["metadata"]["resourceVersion"], "timeoutSeconds": "300"})
# The request's connection is opened before the clock starts: the harness's own TCP and TLS
# handshake (several ms in Python) is no part of commit-to-applied.
requester = connect()
with open_url("GET", f"{kustomization}?{query}", timeout=300) as watch:
    started = time.monotonic()
    patch = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}
    request_on(requester, "PATCH",
               f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{namespace}/ocirepositories/{name}",
               json.dumps(patch).encode(), "application/merge-patch+json")
    for line in watch:
        event = json.loads(line)
        if event["object"].get("status", {}).get("lastAppliedOriginRevision") == want:
            print(f"{time.monotonic() - started:.3f}")
            break
    else:
        sys.exit(f"{namespace}/{name}: the watch ended before {want} was applied")
