#!/usr/bin/env python3
"""One W8 trial against a running source-controller, timed by a watch opened before the action:

    w8.py NAMESPACE NAME fetch URL SECRET   creates GitRepository NAME (branch main) and prints the
                                            seconds until it is Ready with an artifact
    w8.py NAMESPACE NAME poll TOKEN         asks NAME to reconcile (reconcile.fluxcd.io/requestedAt
                                            = TOKEN) and prints the seconds until its status says
                                            TOKEN was handled and it is Ready

(KUBECONFIG: one hack/testenv.sh wrote)"""
import json
import sys
import time
import urllib.parse

from kube import open_url, request

namespace, name, mode = sys.argv[1:4]
collection = f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{namespace}/gitrepositories"
listed = request("GET", f"{collection}?fieldSelector=metadata.name%3D{name}")
query = urllib.parse.urlencode({"watch": "1", "fieldSelector": f"metadata.name={name}",
                                "resourceVersion": listed["metadata"]["resourceVersion"], "timeoutSeconds": "900"})


def ready(status):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


with open_url("GET", f"{collection}?{query}", timeout=900) as watch:
    started = time.monotonic()
    if mode == "fetch":
        url, secret = sys.argv[4:6]
        repository = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                      "metadata": {"name": name, "namespace": namespace},
                      "spec": {"url": url, "secretRef": {"name": secret}, "interval": "1h",
                               "timeout": "10m", "ref": {"branch": "main"}}}
        request("POST", collection, json.dumps(repository).encode())
        done = lambda s: ready(s) and s.get("artifact")  # noqa: E731
    else:
        token = sys.argv[4]
        patch = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}
        request("PATCH", f"{collection}/{name}", json.dumps(patch).encode(), "application/merge-patch+json")
        done = lambda s: ready(s) and s.get("lastHandledReconcileAt") == token  # noqa: E731
    for line in watch:
        event = json.loads(line)
        if event["type"] == "ERROR":
            sys.exit(f"{namespace}/{name}: the watch failed: {event['object'].get('message')}")
        status = event["object"].get("status", {})
        if done(status):
            print(f"{time.monotonic() - started:.3f}")
            break
    else:
        sys.exit(f"{namespace}/{name}: the watch ended before the {mode} was done")
