#!/usr/bin/env bash
# The workspace's dependency rules, read from `cargo metadata` (all features, every kind of
# dependency): controllers talk only through Kubernetes objects, so
#   - no controller or CLI crate depends on a controller crate (normal, build or dev, any
#     feature), except through the dev-only test harness `driftless-testkit`;
#   - shared crates (shared/*) know no controller, no CLI and no test harness;
#   - only dev-dependencies may name `driftless-testkit`.
# Exits non-zero, naming each broken arrow.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --all-features --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
root = meta["workspace_root"]
packages = {p["name"]: p for p in meta["packages"]}
def where(p):
    return p["manifest_path"][len(root) + 1:].split("/")[0]
controllers = {n for n, p in packages.items() if where(p).endswith("-controller") or where(p) == "source-watcher"}
cli = {n for n, p in packages.items() if where(p) == "cli"}
shared = {n for n, p in packages.items() if where(p) == "shared"}
testkit = "driftless-testkit"
broken = []
for name, p in packages.items():
    for dep in p["dependencies"]:
        target, kind = dep["name"], dep["kind"] or "normal"
        if target not in packages:
            continue
        arrow = f"{name} -> {target} ({kind})"
        if name in controllers | cli and target in controllers:
            broken.append(f"{arrow}: a controller or the CLI depends on a controller")
        if name in shared and target in controllers | cli | {testkit}:
            broken.append(f"{arrow}: a shared crate depends on a controller, the CLI or the test harness")
        if target == testkit and kind != "dev":
            broken.append(f"{arrow}: only dev-dependencies may use the test harness")
if broken:
    print("crate dependency rules broken:", *broken, sep="\n  ")
    sys.exit(1)
print(f"crate dependency rules hold ({len(packages)} crates)")
'
