#!/usr/bin/env python3
"""Turns the results of bench/run.sh into BENCHMARKS.md and latency.png.

The part of BENCHMARKS.md above the KEEP marker is rewritten on every run; what
follows the marker (the hand-written notes on what each change bought) is kept.
Missed targets are printed; they never make this script fail.
"""

import argparse
import json
import os
import sys

KEEP = "<!-- Everything above is written by bench/report.py; everything below is kept as it is. -->"
MIB = 1024.0


def load(res, name):
    with open(os.path.join(res, name + ".json")) as f:
        return json.load(f)


def fmt_us(us):
    return "%.0f µs" % us if us < 1000 else "%.2f ms" % (us / 1000.0)


def fmt_rps(r):
    return "{:,.0f} req/s".format(r)


def verdict(ok):
    return "yes" if ok else "**no**"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    res = a.results
    meta = load(res, "meta")
    startup = load(res, "startup")
    herd = load(res, "herd")
    conns = [1, 64, 1024]
    pts = {}
    for c in conns:
        for kind in ("ecs", "imds", "nginx"):
            pts[(kind, c)] = load(res, "%s-%d" % (kind, c))
    refresh = load(res, "refresh-64")
    norefresh = load(res, "norefresh-64")

    def pct(kind, c, q):
        return pts[(kind, c)]["percentiles_us"][q]

    rows = []  # (figure, proxy, nginx, ratio, target, holds)
    missed = []

    def row(figure, proxy, nginx, ratio, target, ok):
        rows.append((figure, proxy, nginx, ratio, target, verdict(ok) if ok is not None else "—"))
        if ok is False:
            missed.append("%s: %s (target %s)" % (figure, proxy, target))

    ng_rps = pts[("nginx", 64)]["rps"]
    ng_p99 = pct("nginx", 64, "99")
    for kind, label in (("ecs", "`GET /v1/credentials`"), ("imds", "IMDSv2 credentials GET")):
        r = pts[(kind, 64)]["rps"]
        row("throughput, 64 conns, %s" % label, fmt_rps(r), fmt_rps(ng_rps),
            "%.2f×" % (r / ng_rps), "≥ 1.0×", r / ng_rps >= 1.0)
    for kind, label in (("ecs", "`GET /v1/credentials`"), ("imds", "IMDSv2 credentials GET")):
        v = pct(kind, 64, "99")
        row("p99, 64 conns, %s" % label, fmt_us(v), fmt_us(ng_p99), "%.2f×" % (v / ng_p99),
            "≤ 1.2× nginx and ≤ 1 ms", v <= 1.2 * ng_p99 and v <= 1000)
    idle = meta["idle_rss_kib"] / MIB
    peak = meta["peak_rss_kib"] / MIB
    ng_idle = meta["nginx_idle_rss_kib"] / MIB
    ng_peak = meta["nginx_peak_rss_kib"] / MIB
    row("idle RSS after first credentials", "%.1f MiB" % idle, "%.1f MiB (master + worker)" % ng_idle,
        "%.2f×" % (idle / ng_idle), "≤ 8 MiB", idle <= 8)
    row("peak RSS, 1024 conns", "%.1f MiB" % peak, "%.1f MiB (master + worker)" % ng_peak,
        "%.2f×" % (peak / ng_peak), "≤ 24 MiB", peak <= 24)
    row("start to ready, median of %d" % startup["runs"],
        "%.1f ms (min %.1f, max %.1f)" % (startup["median_ms"], startup["min_ms"], startup["max_ms"]),
        "—", "—", "≤ 50 ms", startup["median_ms"] <= 50)
    ok200 = herd["statuses"].get("200", 0)
    row("cold-start herd of %d: STS calls" % herd["requests"],
        "%d (proxy metric %d; %d of %d answered 200)" % (
            meta["herd_sts_calls"], meta["herd_metric_calls"], ok200, herd["requests"]),
        "—", "—", "exactly 1", meta["herd_sts_calls"] == 1 and ok200 == herd["requests"])
    size = meta["binary_bytes"] / MIB / MIB
    row("stripped release binary", "%.2f MiB" % size, "—", "—", "≤ 12 MiB", size <= 12)
    rp, np_ = refresh["percentiles_us"]["99"], norefresh["percentiles_us"]["99"]
    row("p99 with a refresh every ~%.1f s, 64 conns" % (meta["refresh_duration_s"] / max(meta["refreshes"], 1)),
        "%s (%s without; %d refreshes, %d errors)" % (
            fmt_us(rp), fmt_us(np_), meta["refreshes"], sum(refresh["errors"].values())),
        "—", "%.2f× of without" % (rp / np_), "≤ 2× without",
        rp <= 2 * np_ and sum(refresh["errors"].values()) == 0)

    lines = []
    lines.append("# Benchmarks")
    lines.append("")
    lines.append("Written by `bench/run.sh`%s from one run; see `bench/README.md` for the method. "
                 "The server under test (proxy or nginx) runs on core %s, wrk on the other." %
                 (" --quick" if meta["quick"] else "", "0"))
    lines.append("")
    lines.append("| machine | |")
    lines.append("| --- | --- |")
    for k, v in (
        ("cores", meta["cores"]),
        ("CPU", meta["cpu_model"]),
        ("kernel", meta["kernel"]),
        ("date (UTC)", meta["date"]),
        ("git commit", "`%s`" % meta["commit"]),
        ("load average at start (1, 5, 15 min)", meta["load_start"]),
        ("load average at end", meta["load_end"]),
        ("STS", "bench/fake_sts.py" if meta["sts"] == "fake" else "irsa-proxy sts-emulator"),
        ("nginx, wrk", "%s, wrk %s" % (meta["nginx"], meta["wrk"])),
        ("compiler", meta["rustc"]),
        ("seconds per load point", meta["duration_s"]),
    ):
        lines.append("| %s | %s |" % (k, v))
    lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| figure | proxy | nginx | proxy / nginx | target | holds? |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lines.append("| %s |" % " | ".join(r))
    lines.append("")
    lines.append("## Every load point")
    lines.append("")
    lines.append("Keep-alive connections, one wrk thread. Latency percentiles from wrk's histogram.")
    lines.append("")
    lines.append("| server | conns | req/s | vs nginx | p50 | p99 | p99.9 | max | errors |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    names = {"ecs": "proxy `/v1/credentials`", "imds": "proxy IMDSv2 credentials", "nginx": "nginx static file"}
    for c in conns:
        for kind in ("ecs", "imds", "nginx"):
            r = pts[(kind, c)]
            ratio = r["rps"] / pts[("nginx", c)]["rps"]
            lines.append("| %s | %d | %s | %.2f× | %s | %s | %s | %s | %d |" % (
                names[kind], c, "{:,.0f}".format(r["rps"]), ratio,
                fmt_us(r["percentiles_us"]["50"]), fmt_us(r["percentiles_us"]["99"]),
                fmt_us(r["percentiles_us"]["99.9"]), fmt_us(r["max_us"]), sum(r["errors"].values())))
    for name, r in (("proxy, no refresh", norefresh), ("proxy, refresh ~1/s", refresh)):
        lines.append("| %s | 64 | %s | — | %s | %s | %s | %s | %d |" % (
            name, "{:,.0f}".format(r["rps"]), fmt_us(r["percentiles_us"]["50"]),
            fmt_us(r["percentiles_us"]["99"]), fmt_us(r["percentiles_us"]["99.9"]),
            fmt_us(r["max_us"]), sum(r["errors"].values())))
    lines.append("")
    lines.append("![latency distributions, proxy vs nginx](bench/latency.png)")
    lines.append("")
    lines.append("Start to ready, every run (ms): %s" % ", ".join("%.1f" % t for t in startup["all_ms"]))
    lines.append("")
    lines.append(KEEP)

    os.makedirs(a.out, exist_ok=True)
    md = os.path.join(a.out, "BENCHMARKS.md")
    kept = ""
    if os.path.exists(md):
        with open(md) as f:
            old = f.read()
        if KEEP in old:
            kept = old.split(KEEP, 1)[1]
    with open(md, "w") as f:
        f.write("\n".join(lines) + (kept if kept else "\n"))

    png_dir = os.path.join(a.out, "bench") if os.path.isdir(os.path.join(a.out, "bench")) else a.out
    png = os.path.join(png_dir, "latency.png")
    plot(pts, conns, meta, png)

    print("\n".join("| %s |" % " | ".join(r) for r in rows))
    print("wrote %s and %s" % (md, png))
    if missed:
        print("targets missed (reported, not failed):")
        for m in missed:
            print("  - " + m)
    return 0


def plot(pts, conns, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = ["50", "75", "90", "95", "99", "99.5", "99.9", "99.95", "99.99"]
    xs = [1.0 / (1.0 - float(q) / 100.0) for q in qs]
    fig, axes = plt.subplots(1, len(conns), figsize=(15, 4.8), sharey=False)
    style = {
        "ecs": ("proxy GET /v1/credentials", "tab:blue", "o"),
        "imds": ("proxy IMDSv2 credentials", "tab:green", "s"),
        "nginx": ("nginx static file", "tab:red", "^"),
    }
    for ax, c in zip(axes, conns):
        for kind in ("ecs", "imds", "nginx"):
            label, color, marker = style[kind]
            ys = [pts[(kind, c)]["percentiles_us"][q] for q in qs]
            ax.plot(xs, ys, label=label, color=color, marker=marker, markersize=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(["p" + q for q in qs], rotation=45, fontsize=8)
        ax.minorticks_off()
        ax.set_title("%d connection%s" % (c, "" if c == 1 else "s"))
        ax.set_ylabel("latency (µs)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Latency by percentile, keep-alive, server on one core — %s, %s, load %s" % (
        meta["commit"], meta["date"][:10], meta["load_start"].split()[0]))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
