#!/usr/bin/env python3
"""SVG plots from the k6 summaries and the limits harness, with the standard library only.

    benches/plot.py RESULTS_DIR [PLOTS_DIR]     (default PLOTS_DIR: docs/plots)

Reads RESULTS_DIR/k6/*.json (k6 handleSummary output, see k6/lib/common.js) and
RESULTS_DIR/limits.json (benches/limits.sh), and writes:

- k6-throughput.svg: requests/s per k6 scenario;
- k6-latency.svg: request-duration percentiles (p50, p90, p95, p99, max) per scenario;
- limits-throughput.svg: each sessiond throughput next to the machine limit it is compared to;
- limits-ratios.svg: each of those ratios next to its target;
- limits-latency.svg: sessiond latency percentiles of the wrk runs.

Each plot is titled with the run date and says when it comes from a quick validation run.
Nothing is drawn for a figure that was not measured.
"""
import glob
import json
import os
import sys
from html import escape

W, H = 820, 420
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 60, 90
COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"]


def nice_max(v):
    if v <= 0:
        return 1.0
    mag = 10 ** len(str(int(v))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if step * mag >= v:
            return step * mag
    return 10 * mag


def fmt(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2g}"


def bar_chart(path, title, subtitle, groups, series, unit):
    """groups: list of group labels; series: list of (name, [value or None per group])."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not values:
        return False
    top = nice_max(max(values))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16">{escape(title)}</text>',
        f'<text x="{W / 2}" y="40" text-anchor="middle" fill="#555">{escape(subtitle)}</text>',
    ]
    for i in range(6):
        v = top * i / 5
        y = TOP + plot_h - plot_h * i / 5
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{fmt(v)}</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2}" transform="rotate(-90 16 {TOP + plot_h / 2})" '
               f'text-anchor="middle">{escape(unit)}</text>')
    gw = plot_w / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        gx = LEFT + gi * gw + gw * 0.1
        for si, (name, vs) in enumerate(series):
            v = vs[gi]
            if v is None:
                continue
            h = plot_h * v / top
            x = gx + si * bw
            y = TOP + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.95:.1f}" height="{h:.1f}" '
                       f'fill="{COLOURS[si % len(COLOURS)]}"><title>{escape(name)} {escape(g)}: '
                       f'{fmt(v)} {escape(unit)}</title></rect>')
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                       f'font-size="10">{fmt(v)}</text>')
        out.append(f'<text x="{LEFT + gi * gw + gw / 2:.1f}" y="{TOP + plot_h + 16}" '
                   f'text-anchor="middle">{escape(g)}</text>')
    if len(series) > 1:
        lx = LEFT
        for si, (name, _) in enumerate(series):
            out.append(f'<rect x="{lx}" y="{H - 28}" width="12" height="12" fill="{COLOURS[si % len(COLOURS)]}"/>')
            out.append(f'<text x="{lx + 16}" y="{H - 18}">{escape(name)}</text>')
            lx += 20 + 7 * len(name) + 20
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return True


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main(results, plots):
    os.makedirs(plots, exist_ok=True)
    limits = load(os.path.join(results, "limits.json"))
    quick = bool(limits and limits.get("quick_validation_run"))
    k6 = {}
    for p in sorted(glob.glob(os.path.join(results, "k6", "*.json"))):
        d = load(p)
        if d and "metrics" in d:
            k6[os.path.basename(p)[:-5]] = d
    profiles = {d.get("sessiond", {}).get("profile") for d in k6.values()}
    if "smoke" in profiles:
        quick = True
    date = (limits or {}).get("date") or next(
        (d.get("sessiond", {}).get("finished_at") for d in k6.values()), "")
    note = f"{date}" + (" — VALIDATION RUN: numbers mean nothing" if quick else "")
    written = []

    if k6:
        names = list(k6)
        rps = [k6[n]["metrics"].get("http_reqs", {}).get("values", {}).get("rate") for n in names]
        if bar_chart(os.path.join(plots, "k6-throughput.svg"), "k6: requests per second by scenario",
                     note, names, [("requests/s", rps)], "requests/s"):
            written.append("k6-throughput.svg")
        stats = [("p50", "med"), ("p90", "p(90)"), ("p95", "p(95)"), ("p99", "p(99)"), ("max", "max")]
        series = []
        for label, key in stats:
            series.append((label, [k6[n]["metrics"].get("http_req_duration", {}).get("values", {}).get(key)
                                   for n in names]))
        if bar_chart(os.path.join(plots, "k6-latency.svg"), "k6: request duration percentiles by scenario",
                     note, names, series, "ms"):
            written.append("k6-latency.svg")

    if limits:
        lim, fig = limits["limits"], limits["figures"]
        groups = ["refresh vs pgbench", "GET /me vs hello world", "login vs argon2id"]
        series = [
            ("machine limit", [lim.get("pgbench_single_update_tps"), lim.get("hello_world_rps"),
                               lim.get("argon2id_hashes_per_s")]),
            ("sessiond", [fig.get("refreshes_per_s"), fig.get("me_per_s"), fig.get("logins_per_s")]),
        ]
        if bar_chart(os.path.join(plots, "limits-throughput.svg"),
                     "sessiond throughput against this machine's limits", note, groups, series, "per second"):
            written.append("limits-throughput.svg")
        ratios = limits.get("ratios", {})
        if bar_chart(os.path.join(plots, "limits-ratios.svg"),
                     "sessiond ÷ machine limit (bars) against the target", note, groups,
                     [("measured ratio", [ratios.get("refreshes_to_pgbench"), ratios.get("me_to_hello"),
                                          ratios.get("logins_to_argon2id")]),
                      ("target", [1.0, 0.5, 0.9])], "× limit"):
            written.append("limits-ratios.svg")
        groups, series = [], []
        for label, key in [("refresh", "refresh_latency_ms"), ("GET /me", "me_latency_ms"),
                           ("login", "login_latency_ms")]:
            if fig.get(key):
                groups.append(label)
        for stat in ["p50", "p90", "p99", "max"]:
            series.append((stat, [(fig.get(k) or {}).get(stat) for k in
                                  ["refresh_latency_ms", "me_latency_ms", "login_latency_ms"] if fig.get(k)]))
        if groups and bar_chart(os.path.join(plots, "limits-latency.svg"),
                                "sessiond latency at full load (wrk, closed loop)", note, groups, series, "ms"):
            written.append("limits-latency.svg")
    for w in written:
        print(os.path.join(plots, w))
    if not written:
        print("plot.py: nothing to plot", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "docs", "plots")))
