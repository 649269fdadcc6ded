#!/usr/bin/env python3
"""One picture of the full-stack runs (issue 20): W1 time to all Ready against N for both stacks
and the floor, and W1 peak RSS of each stack's controllers against N, read from the result
tables hack/bench/kustomizations.sh wrote (a later file's value for the same N wins).

    plot-full-stack.py OUT.svg RESULT.md...
"""
import sys

out, files = sys.argv[1], sys.argv[2:]
ROWS = {
    "W1 time until all N are Ready, s": "time",
    "W1 peak RSS (VmHWM), kustomize-controller, MiB": "rss_kc",
    "W1 peak RSS (VmHWM), source-controller, MiB": "rss_sc",
}
data = {}  # (metric, series) -> {N: value}
for path in files:
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] not in ROWS or not cells[1].isdigit():
            continue
        metric, n = ROWS[cells[0]], int(cells[1])
        for series, value in zip(("driftless", "flux", "floor"), cells[2:5]):
            if value:
                data.setdefault((metric, series), {})[n] = float(value)


def panel(x0, title, unit, series):
    """One chart at x offset x0: lines of (label, color, {N: value})."""
    w, h, m = 420, 300, 50
    ns = sorted({n for _, _, points in series for n in points})
    top = max(v for _, _, points in series for v in points.values()) * 1.1
    x = lambda n: x0 + m + (w - 2 * m) * (ns.index(n) / max(len(ns) - 1, 1))  # noqa: E731
    y = lambda v: h - m + 20 - (h - 2 * m) * v / top  # noqa: E731
    parts = [f'<text x="{x0 + w / 2}" y="24" text-anchor="middle" font-weight="bold">{title}</text>',
             f'<line x1="{x0 + m}" y1="{y(0)}" x2="{x0 + w - m}" y2="{y(0)}" stroke="#888"/>',
             f'<text x="{x0 + w / 2}" y="{h + 8}" text-anchor="middle">N Kustomizations</text>',
             f'<text x="{x0 + 12}" y="{h / 2}" transform="rotate(-90 {x0 + 12} {h / 2})" text-anchor="middle">{unit}</text>']
    for n in ns:
        parts.append(f'<text x="{x(n)}" y="{y(0) + 16}" text-anchor="middle">{n}</text>')
    for i in range(5):
        v = top * i / 4
        parts.append(f'<text x="{x0 + m - 6}" y="{y(v) + 4}" text-anchor="end">{v:.0f}</text>')
    for k, (label, color, points) in enumerate(series):
        coords = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in sorted(points.items()))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for n, v in points.items():
            parts.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')
        parts.append(f'<text x="{x0 + m + 8}" y="{44 + 15 * k}" fill="{color}">{label}</text>')
    return parts


time = panel(0, "W1: time until all N are Ready", "seconds", [
    ("driftless", "#1f77b4", data.get(("time", "driftless"), {})),
    ("Flux", "#d62728", data.get(("time", "flux"), {})),
    ("floor (bare client)", "#555555", data.get(("time", "floor"), {})),
])
rss = panel(440, "W1: peak RSS of each controller", "MiB", [
    ("driftless kustomize-controller", "#1f77b4", data.get(("rss_kc", "driftless"), {})),
    ("driftless source-controller", "#6baed6", data.get(("rss_sc", "driftless"), {})),
    ("Flux kustomize-controller", "#d62728", data.get(("rss_kc", "flux"), {})),
    ("Flux source-controller", "#fc9272", data.get(("rss_sc", "flux"), {})),
])
with open(out, "w") as f:
    f.write('<svg xmlns="http://www.w3.org/2000/svg" width="880" height="320" font-family="sans-serif" font-size="12">\n')
    f.write('<rect width="880" height="320" fill="white"/>\n')
    f.write("\n".join(time + rss))
    f.write("\n</svg>\n")
