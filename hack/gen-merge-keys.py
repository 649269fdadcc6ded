#!/usr/bin/env python3
"""Extracts the strategic-merge-patch metadata of the built-in kinds from an apiserver's
OpenAPI v2 document into shared/kustomize/src/merge_keys.json.

Usage: kubectl get --raw /openapi/v2 | hack/gen-merge-keys.py > shared/kustomize/src/merge_keys.json

Only what a strategic merge needs is kept: for each definition, the properties that lead to a
list with a patch strategy, with the strategy and merge keys of those lists."""
import json
import sys

doc = json.load(sys.stdin)
defs = doc["definitions"]


def ref_name(prop):
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    return ref.split("/")[-1] if ref else None


def props(name):
    return defs.get(name, {}).get("properties", {})


useful = set()
changed = True
while changed:
    changed = False
    for name in defs:
        if name in useful:
            continue
        for prop in props(name).values():
            if "x-kubernetes-patch-strategy" in prop or ref_name(prop) in useful:
                useful.add(name)
                changed = True
                break

out_defs = {}
for name in sorted(useful):
    fields = {}
    for field, prop in sorted(props(name).items()):
        ref = ref_name(prop)
        strategy = prop.get("x-kubernetes-patch-strategy")
        if not strategy and ref not in useful:
            continue
        entry = {}
        if ref in useful:
            entry["ref"] = ref
        if prop.get("type") == "array":
            entry["list"] = True
        if strategy:
            entry["strategy"] = strategy
            keys = prop.get("x-kubernetes-list-map-keys")
            if keys:
                entry["keys"] = keys
            elif "x-kubernetes-patch-merge-key" in prop:
                entry["keys"] = [prop["x-kubernetes-patch-merge-key"]]
        fields[field] = entry
    out_defs[name] = fields

kinds = {}
for name, definition in defs.items():
    if name not in useful:
        continue
    for gvk in definition.get("x-kubernetes-group-version-kind", []):
        api_version = gvk["version"] if not gvk["group"] else gvk["group"] + "/" + gvk["version"]
        kinds[api_version + "/" + gvk["kind"]] = name

json.dump({"kinds": dict(sorted(kinds.items())), "definitions": out_defs}, sys.stdout, indent=0, sort_keys=True)
sys.stdout.write("\n")
