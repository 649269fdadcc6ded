#!/usr/bin/env python3
"""The floor of W1 (issue 20): the same 4N objects the benchmark's Kustomizations apply, applied
by a bare client — one server-side apply per object, CONCURRENCY at a time, no controller — then
waited for with the same readiness (every Deployment observed at its generation and Available).
It is the time the control plane alone needs on this machine.

    floor.py N NAMESPACE CONCURRENCY   (KUBECONFIG: one hack/testenv.sh wrote, a bearer token)
Prints the seconds from the first apply until all are ready, and the apply requests sent."""
import concurrent.futures
import json
import sys
import time

from kube import request

n, namespace, concurrency = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def objects(i):
    """The four objects of app i, as hack/bench/kustomizations.sh's app_yaml has them."""
    name = f"app{i}"
    yield f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"bench/tag": "1"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"serviceAccountName": name, "containers": [
                                  {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.7.0",
                                   "ports": [{"containerPort": 9898}]}]}}}}
    yield f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    yield f"/api/v1/namespaces/{namespace}/services/{name}", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 9898}]}}
    yield f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": namespace},
        "spec": {"rules": [{"host": f"{name}.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}}


def apply(item):
    path, body = item
    request("PATCH", path + "?fieldManager=floor&force=true", json.dumps(body).encode(),
            "application/apply-patch+yaml")


def ready(deployment):
    """kstatus's Current, as both stacks judge a Deployment: observed at its generation, the new
    ReplicaSet available (Progressing, NewReplicaSetAvailable) and the Deployment Available."""
    status = deployment.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    progressed = conditions.get("Progressing", {})
    return (status.get("observedGeneration") == deployment["metadata"]["generation"]
            and progressed.get("status") == "True" and progressed.get("reason") == "NewReplicaSetAvailable"
            and conditions.get("Available", {}).get("status") == "True")


started = time.monotonic()
items = [item for i in range(1, n + 1) for item in objects(i)]
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    list(pool.map(apply, items))
while True:
    listed = request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    if sum(1 for d in listed if ready(d)) >= n:
        break
    time.sleep(0.2)
print(f"{time.monotonic() - started:.1f} {len(items)}")
