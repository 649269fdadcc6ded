#!/usr/bin/env python3
"""Turns the raw measurements of hack/bench/kustomizations.sh into the results file (a table
per metric with the ratio driftless / flux) and an SVG plot of time-to-Ready against N."""
import collections
import datetime
import os
import sys

raw, md_path, svg_path, ours, theirs, k8s, concurrent = sys.argv[1:8]
data = collections.defaultdict(dict)  # (metric, n) -> {impl: value}
for line in open(raw):
    impl, metric, n, value = line.rstrip("\n").split("\t")
    try:
        data[(metric, int(n))][impl] = float(value)
    except ValueError:
        pass

METRICS = [
    ("idle_rss", "W0 idle RSS after start-up, MiB", "≤ 0.2"),
    ("ready_s", "W1 time until all N are Ready, s", "≤ 0.25 at N = 1000"),
    ("create_s", "W1 time the harness's `kubectl apply` of the 2N objects took (the controllers already at work), s", ""),
    ("latency_p50", "W1 per-Kustomization latency p50 (creation → Ready), s", ""),
    ("latency_p95", "W1 per-Kustomization latency p95, s", ""),
    ("peak_rss", "W1 peak RSS (VmHWM), MiB", "≤ 0.25 at N = 1000"),
    ("steady_rss", "W0 RSS with N reconciled objects, idle, MiB", "≤ 0.2"),
    ("cpu_s", "W1 CPU seconds (user + system)", ""),
    ("w1_requests_per_kustomization", "W1 apiserver requests per Kustomization (all clients, polling included)", ""),
    ("w1_apiserver_etcd_cpu_s", "W1 CPU seconds of kube-apiserver + etcd", ""),
    ("w1_source_cpu_s", "W1 CPU seconds of (our) source-controller", ""),
    ("noop_requests_per_object", "W3 no-op storm: apiserver requests per applied object", "≤ 2 (absolute)"),
    ("restart_s", "W11 restart: process start until every Kustomization was reconciled once, s", ""),
    ("restart_requests_per_object", "W11 restart: apiserver requests per applied object", ""),
    ("restart_peak_rss", "W11 restart: peak RSS of the re-list, MiB", ""),
    ("ready_s_default", "W1 at each implementation's default --concurrent (4): time until all N are Ready, s", ""),
    ("latency_p95_default", "W1 at default --concurrent: per-Kustomization latency p95, s", ""),
    ("peak_rss_default", "W1 at default --concurrent: peak RSS, MiB", ""),
    ("cpu_s_default", "W1 at default --concurrent: CPU seconds", ""),
    ("applied_default", "W1 at default --concurrent: objects applied (4N for both)", "equal"),
    ("w4_p50", "W4 commit-to-applied latency p50, s", ""),
    ("w4_p95", "W4 commit-to-applied latency p95, s", "≤ 0.25"),
    ("applied", "objects applied (same-state check: 4N for both)", "equal"),
]

out = []
out.append("# Driftless vs Flux: kustomize-controller side by side\n")
out.append(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ}; machine: "
           f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB")
out.append(f"- {ours} (cargo profile `dist`: fat LTO, opt-level s, as the image ships) vs {theirs} (built from Go modules, GOMEMLIMIT=1GiB as Flux ships it)")
out.append(f"- both with `--concurrent={concurrent}` (except the rows at default concurrency) and every other flag at its default; artifacts from our "
           f"source-controller (`--concurrent=10`) for both; Kubernetes {k8s} (testenv, kwok nodes)")
out.append("- script: `hack/bench/kustomizations.sh`; ratio = driftless ÷ flux (lower is better)\n")
out.append("| metric | N | driftless | flux | ratio | goal |")
out.append("|---|---|---|---|---|---|")
for metric, title, goal in METRICS:
    for (m, n), values in sorted(data.items()):
        if m != metric:
            continue
        d, f = values.get("driftless"), values.get("flux")
        ratio = f"{d / f:.2f}" if d is not None and f else "n/a"
        fmt = lambda v: "n/a" if v is None else (f"{v:.0f}" if v >= 100 or float(v).is_integer() else f"{v:.2f}")
        out.append(f"| {title} | {n if n else '-'} | {fmt(d)} | {fmt(f)} | {ratio} | {goal} |")
open(md_path, "w").write("\n".join(out) + "\n")

# time to Ready against N
series = {impl: sorted((n, v[impl]) for (m, n), v in data.items() if m == "ready_s" and impl in v)
          for impl in ("driftless", "flux")}
points = [p for s in series.values() for p in s]
if points:
    W, H, M = 560, 360, 50
    max_n = max(n for n, _ in points)
    max_t = max(t for _, t in points) * 1.1 or 1
    x = lambda n: M + (W - 2 * M) * n / max_n
    y = lambda t: H - M - (H - 2 * M) * t / max_t
    colors = {"driftless": "#d9480f", "flux": "#1971c2"}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle">W1: time until N Kustomizations are Ready</text>',
           f'<line x1="{M}" y1="{H - M}" x2="{W - M}" y2="{H - M}" stroke="black"/>',
           f'<line x1="{M}" y1="{M}" x2="{M}" y2="{H - M}" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">N</text>',
           f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">seconds</text>']
    for n in sorted({n for n, _ in points}):
        svg.append(f'<text x="{x(n)}" y="{H - M + 16}" text-anchor="middle">{n}</text>')
    for i in range(5):
        t = max_t * i / 4
        svg.append(f'<text x="{M - 6}" y="{y(t) + 4}" text-anchor="end">{t:.0f}</text>')
    for row, (impl, pts) in enumerate(series.items()):
        if not pts:
            continue
        path = " ".join(f"{x(n):.1f},{y(t):.1f}" for n, t in pts)
        svg.append(f'<polyline points="{path}" fill="none" stroke="{colors[impl]}" stroke-width="2"/>')
        for n, t in pts:
            svg.append(f'<circle cx="{x(n):.1f}" cy="{y(t):.1f}" r="3" fill="{colors[impl]}"/>')
        svg.append(f'<text x="{M + 10}" y="{M + 16 * row}" fill="{colors[impl]}">{impl}</text>')
    svg.append("</svg>")
    open(svg_path, "w").write("\n".join(svg) + "\n")
