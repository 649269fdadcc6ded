#!/usr/bin/env python3
"""Turns the raw measurements of hack/bench/kustomizations.sh into the results file (a table
per metric with the ratio driftless / flux, and for times to Ready the floor and the ratio of
the times above it; the requests by verb and resource) and an SVG plot of time-to-Ready against
N for both stacks and the floor."""
import collections
import datetime
import os
import sys

raw, md_path, svg_path, ours, theirs, k8s, concurrent = sys.argv[1:8]
requests_path = sys.argv[8] if len(sys.argv) > 8 else None
clients_path = sys.argv[9] if len(sys.argv) > 9 else None
data = collections.defaultdict(dict)  # (metric, n) -> {impl: value}
for line in open(raw):
    impl, metric, n, value = line.rstrip("\n").split("\t")
    try:
        data[(metric, int(n))][impl] = float(value)
    except ValueError:
        pass

METRICS = [
    ("idle_rss", "W0 idle RSS after start-up, kustomize-controller, MiB", "≤ 0.2"),
    ("idle_rss_source", "W0 idle RSS after start-up, source-controller, MiB", "≤ 0.2"),
    ("ready_s", "W1 time until all N are Ready, s", "≤ 0.25 of Flux's time above the floor at N = 1000"),
    ("ready_s_precreated", "W1p objects created before the controllers start: start → all Ready, s", ""),
    ("create_s", "W1 time the harness's `kubectl apply` of the 2N objects took (the controllers already at work), s", ""),
    ("latency_p50", "W1 per-Kustomization latency p50 (creation → Ready), s", ""),
    ("latency_p95", "W1 per-Kustomization latency p95, s", ""),
    ("peak_rss", "W1 peak RSS (VmHWM), kustomize-controller, MiB", "≤ 0.25 at N = 1000"),
    ("peak_rss_source", "W1 peak RSS (VmHWM), source-controller, MiB", ""),
    ("steady_rss", "W0 RSS with N reconciled objects, idle, MiB", "≤ 0.2"),
    ("cpu_s", "W1 CPU seconds (user + system)", ""),
    ("w1_requests_per_kustomization", "W1 apiserver requests per Kustomization (all clients, polling included)", ""),
    ("w1_apiserver_etcd_cpu_s", "W1 CPU seconds of kube-apiserver + etcd", ""),
    ("w1_source_cpu_s", "W1 CPU seconds of the stack's source-controller", ""),
    ("noop_requests_per_object", "W3 no-op storm: apiserver requests per applied object (all clients)", ""),
    ("noop_controller_requests_per_object", "W3 no-op storm: the controllers' requests per applied object (audit log)", "≤ 2 (absolute)"),
    ("restart_s", "W11 restart: process start until every Kustomization was reconciled once, s", ""),
    ("restart_requests_per_object", "W11 restart: apiserver requests per applied object (all clients)", ""),
    ("restart_controller_requests_per_object", "W11 restart: the controllers' requests per applied object (audit log)", ""),
    ("restart_peak_rss", "W11 restart: peak RSS of the re-list, MiB", ""),
    ("ready_s_default", "W1 at each implementation's default --concurrent (4): time until all N are Ready, s", ""),
    ("latency_p95_default", "W1 at default --concurrent: per-Kustomization latency p95, s", ""),
    ("peak_rss_default", "W1 at default --concurrent: peak RSS, MiB", ""),
    ("cpu_s_default", "W1 at default --concurrent: CPU seconds", ""),
    ("applied_default", "W1 at default --concurrent: objects applied (4N for both)", "equal"),
    ("w4_p50", "W4 commit-to-applied latency p50, s", ""),
    ("w4_p95", "W4 commit-to-applied latency p95, s", "≤ 0.25"),
    ("w4_max", "W4 commit-to-applied latency, slowest trial, s", ""),
    ("applied", "objects applied (same-state check: 4N for both)", "equal"),
    ("applied_precreated", "W1p objects applied (4N for both)", "equal"),
]

out = []
out.append("# Driftless vs Flux: the whole stack side by side, and the floor\n")
out.append(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ}; machine: "
           f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB")
out.append(f"- {ours} (cargo profile `dist`: fat LTO, opt-level s, as the image ships) vs {theirs} (built from Go modules, GOMEMLIMIT=1GiB as Flux ships it)")
out.append(f"- kustomize-controllers with `--concurrent={concurrent}` (except the rows at default concurrency), source-controllers with "
           f"`--concurrent=10`, every other flag at its default; each stack publishes its own artifacts; Kubernetes {k8s} (testenv, kwok nodes)")
out.append("- floor: the same 4N objects applied by a bare client (`hack/bench/floor.py`: one server-side apply each, "
           f"{concurrent} at a time), then the same readiness: the time the control plane alone needs here")
out.append("- script: `hack/bench/kustomizations.sh`; ratio = driftless ÷ flux; above floor = (driftless − floor) ÷ (flux − floor) (lower is better)\n")
out.append("| metric | N | driftless | flux | floor | ratio | above floor | goal |")
out.append("|---|---|---|---|---|---|---|---|")
for metric, title, goal in METRICS:
    for (m, n), values in sorted(data.items()):
        if m != metric:
            continue
        d, f = values.get("driftless"), values.get("flux")
        ratio = f"{d / f:.2f}" if d is not None and f else "n/a"
        fmt = lambda v: "n/a" if v is None else (f"{v:.0f}" if v >= 100 or float(v).is_integer() else f"{v:.2f}")
        fl = values.get("floor")
        above = f"{(d - fl) / (f - fl):.2f}" if None not in (d, f, fl) and f > fl else ""
        floor_cell = fmt(fl) if fl is not None else ""
        out.append(f"| {title} | {n if n else '-'} | {fmt(d)} | {fmt(f)} | {floor_cell} | {ratio} | {above} | {goal} |")
if requests_path and os.path.exists(requests_path):
    # impl, n, verb, resource, requests per Kustomization (per object set for the floor)
    reqs = collections.defaultdict(dict)
    for line in open(requests_path):
        impl, n, verb, resource, per = line.rstrip("\n").split("\t")
        reqs[(int(n), verb, resource)][impl] = float(per)
    out.append("\n## W1 apiserver requests per Kustomization, by verb and resource\n")
    out.append("All clients while one stack (or the floor) ran: the controllers, kube-controller-manager's "
               "work on the Deployments, and the harness's polling of Kustomizations (the same for both stacks).\n")
    out.append("| N | verb | resource | driftless | flux | floor |")
    out.append("|---|---|---|---|---|---|")
    totals = collections.defaultdict(lambda: collections.defaultdict(float))
    for (n, verb, resource), values in sorted(reqs.items()):
        cells = [f"{values[i]:.2f}" if i in values else "" for i in ("driftless", "flux", "floor")]
        for i, v in values.items():
            totals[n][i] += v
        out.append(f"| {n} | {verb} | {resource} | {' | '.join(cells)} |")
    for n, t in sorted(totals.items()):
        cells = [f"{t[i]:.2f}" if i in t else "" for i in ("driftless", "flux", "floor")]
        out.append(f"| {n} | **all** | | {' | '.join(cells)} |")
if clients_path and os.path.exists(clients_path):
    # impl, n, client, verb, resource, requests per Kustomization, request bytes per Kustomization
    per = collections.defaultdict(dict)
    for line in open(clients_path):
        impl, n, client, verb, resource, count, sent = line.rstrip("\n").split("\t")
        per[(int(n), client, verb, resource)][impl] = (float(count), float(sent))
    out.append("\n## W1 requests each client sent per Kustomization (audit log)\n")
    out.append("Each controller runs as its own identity, the only users the testenv's audit log records "
               "(`hack/bench/audit.py`); bytes are the request bodies sent. From the moment the 2N objects are "
               "created until all are Ready: start-up lists and watches are not in it, nor watches still open. "
               "The floor's client is `floor.py` (one server-side apply per object, then its readiness polling).\n")
    out.append("| N | client | verb | resource | driftless | flux | floor | driftless bytes | flux bytes |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    controllers = collections.defaultdict(lambda: collections.defaultdict(lambda: [0.0, 0.0]))
    for (n, client, verb, resource), values in sorted(per.items()):
        cell = lambda i, k: f"{values[i][k]:.{2 if k == 0 else 0}f}" if i in values else ""
        out.append(f"| {n} | {client} | {verb} | {resource} | {cell('driftless', 0)} | {cell('flux', 0)} | "
                   f"{cell('floor', 0)} | {cell('driftless', 1)} | {cell('flux', 1)} |")
        if client == "floor":
            continue
        for impl, (c, b) in values.items():
            # Leader election is a deployment choice (both renew a Lease while they run): its
            # requests are shown above and left out of the comparison.
            if resource != "leases":
                controllers[n][impl][0] += c
                controllers[n][impl][1] += b
    out.append("\n| N | controllers' requests per Kustomization (leases aside) | driftless | flux | ratio | goal |")
    out.append("|---|---|---|---|---|---|")
    for n, t in sorted(controllers.items()):
        d, f = t.get("driftless"), t.get("flux")
        for k, what in ((0, "requests"), (1, "bytes sent")):
            ratio = f"{d[k] / f[k]:.2f}" if d and f and f[k] else "n/a"
            cells = [f"{v[k]:.{2 if k == 0 else 0}f}" if v else "n/a" for v in (d, f)]
            out.append(f"| {n} | {what} | {cells[0]} | {cells[1]} | {ratio} | {'≤ 0.5' if k == 0 else ''} |")
open(md_path, "w").write("\n".join(out) + "\n")

# time to Ready against N
series = {impl: sorted((n, v[impl]) for (m, n), v in data.items() if m == "ready_s" and impl in v)
          for impl in ("driftless", "flux", "floor")}
points = [p for s in series.values() for p in s]
if points:
    W, H, M = 560, 360, 50
    max_n = max(n for n, _ in points)
    max_t = max(t for _, t in points) * 1.1 or 1
    x = lambda n: M + (W - 2 * M) * n / max_n
    y = lambda t: H - M - (H - 2 * M) * t / max_t
    colors = {"driftless": "#d9480f", "flux": "#1971c2", "floor": "#868e96"}
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
