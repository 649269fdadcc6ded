#!/usr/bin/env python3
"""The kustomize differential on whole trees: every kustomization directory under each TREE is
built by `kubectl kustomize` (the reference) and by our engine, and the outputs compared byte
for byte. Run through hack/kustomize-differential.sh, which builds our binary.

    kustomize-differential.py OURS REPORT TREE...

A directory counts as:
  identical      both succeed with the same bytes
  different      both succeed, outputs differ
  ours-failed    the reference builds it, ours refuses
  both-failed    both fail (ours must say which file and why: the report lists both messages)
  ours-only      ours builds what the reference refuses
Reference outputs are cached under target/kustomize-differential (REFRESH=1 rebuilds them):
the trees are read-only copies, and kubectl takes minutes where ours takes seconds.
"""
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
TIMEOUT = int(os.environ.get("TIMEOUT", "120"))
KUBECTL = os.environ.get("KUBECTL_REFERENCE", "kubectl")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "target", "kustomize-differential")


def run(argv):
    try:
        p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace").strip()
    except subprocess.TimeoutExpired:
        return 124, b"", f"timed out after {TIMEOUT}s"


def reference(directory):
    key = hashlib.sha256(directory.encode()).hexdigest()[:32]
    path = os.path.join(CACHE, key + ".json")
    if os.environ.get("REFRESH") != "1" and os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        return cached["rc"], cached["out"].encode("latin-1"), cached["err"]
    rc, out, err = run([KUBECTL, "kustomize", directory])
    os.makedirs(CACHE, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"dir": directory, "rc": rc, "out": out.decode("latin-1"), "err": err}, f)
    return rc, out, err


def first_difference(expected, actual):
    e, a = expected.decode(errors="replace").splitlines(), actual.decode(errors="replace").splitlines()
    i = next((i for i, (x, y) in enumerate(zip(e, a)) if x != y), min(len(e), len(a)))
    lo = max(0, i - 3)
    return "\n".join(
        ["  reference:"] + ["    " + line for line in e[lo:i + 3]]
        + ["  ours:"] + ["    " + line for line in a[lo:i + 3]]
    )


def compare(ours, directory):
    ref_rc, ref_out, ref_err = reference(directory)
    our_rc, our_out, our_err = run([ours, directory])
    if ref_rc == 0 and our_rc == 0:
        if ref_out == our_out:
            return "identical", ""
        return "different", first_difference(ref_out, our_out)
    if ref_rc == 0:
        return "ours-failed", "  ours: " + our_err
    if our_rc == 0:
        return "ours-only", "  reference: " + ref_err
    return "both-failed", "  reference: " + ref_err + "\n  ours: " + our_err


def kustomization_dirs(tree):
    for directory, subdirs, files in os.walk(tree):
        subdirs[:] = sorted(d for d in subdirs if d != ".git")
        if any(name in files for name in KUSTOMIZATION_FILES):
            yield directory


def main():
    ours, report_path, trees = sys.argv[1], sys.argv[2], sys.argv[3:]
    classes = ["identical", "different", "ours-failed", "both-failed", "ours-only"]
    lines, totals = [], {c: 0 for c in classes}
    jobs = int(os.environ.get("JOBS", os.cpu_count() or 2))
    for tree in trees:
        tree = os.path.abspath(tree)
        dirs = list(kustomization_dirs(tree))
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(lambda d: compare(ours, d), dirs))
        counts = {c: 0 for c in classes}
        for directory, (outcome, detail) in zip(dirs, results):
            counts[outcome] += 1
            totals[outcome] += 1
            if outcome != "identical":
                lines.append(f"{outcome}: {os.path.relpath(directory, os.path.dirname(tree))}\n{detail}\n")
        summary = ", ".join(f"{counts[c]} {c}" for c in classes)
        print(f"{os.path.basename(tree)}: {len(dirs)} directories: {summary}")
    summary = ", ".join(f"{totals[c]} {c}" for c in classes)
    print(f"total: {sum(totals.values())} directories: {summary}")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    print(f"details: {report_path}")
    return 0 if totals["different"] + totals["ours-failed"] + totals["ours-only"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
