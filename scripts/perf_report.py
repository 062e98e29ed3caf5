#!/usr/bin/env python3
"""Turn sigreg-benchmarks JSON output into the Markdown tables of docs/PERFORMANCE.md.

    build/release/benchmarks/sigreg-benchmarks --benchmark_repetitions=5 \
        --benchmark_report_aggregates_only=true --benchmark_format=json > bench.json
    scripts/perf_report.py bench.json > table.md

Figures are medians of the repetitions (CPU time; with 2 threads, CPU time per
notify per thread). Ratios are computed from the same run, never typed by hand.
"""
import json
import re
import sys

PEERS = [
    ("Sigreg", "BM_Notify_Sigreg"),
    ("std::function loop", "BM_Notify_FunctionLoop"),
    ("Qt direct signal", "BM_Notify_QtDirect"),
    ("Boost.Signals2", "BM_Notify_BoostSignals2"),
    ("libsigc++", "BM_Notify_Sigc"),
]
NAME = re.compile(r"^(?P<base>BM_\w+?)/(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?_median$")


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        m = NAME.match(b["name"])
        if not m:
            continue
        key = (m["base"], int(m["arg"]), int(m["threads"] or 1))
        rows[key] = b
    return data.get("context", {}), rows


def ns(b):
    unit = b.get("time_unit", "ns")
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]
    return b["cpu_time"] * scale


def fmt_ns(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.1f} ns"


def main(path):
    context, rows = load(path)
    out = []
    out.append(f"Host: {context.get('host_name', '?')}, {context.get('num_cpus', '?')} CPUs at "
               f"{context.get('mhz_per_cpu', '?')} MHz; run {context.get('date', '?')}.")
    out.append("")
    out.append("### Notify: CPU time per notify (median), and Sigreg's ratio to each peer")
    out.append("")
    configs = sorted({(arg, thr) for (base, arg, thr) in rows if base == "BM_Notify_Sigreg"},
                     key=lambda c: (c[1], c[0]))
    header = "| handlers | threads | " + " | ".join(p for p, _ in PEERS) + " | Sigreg ÷ loop | peer ÷ Sigreg (Qt / Boost / sigc++) |"
    out.append(header)
    out.append("|" + "---:|" * (len(PEERS) + 4))
    for arg, thr in configs:
        cells, times = [], {}
        for label, base in PEERS:
            b = rows.get((base, arg, thr))
            if b is None:
                cells.append("–")
                continue
            times[base] = ns(b)
            allocs = b.get("allocs_per_notify")
            extra = f" ({allocs:g} alloc)" if allocs else ""
            cells.append(fmt_ns(times[base]) + extra)
        s = times.get("BM_Notify_Sigreg")
        loop = times.get("BM_Notify_FunctionLoop")
        ratio = f"{s / loop:.2f}×" if s and loop else "–"
        peers = " / ".join(f"{times[b] / s:.1f}×" if b in times and s else "–"
                           for b in ("BM_Notify_QtDirect", "BM_Notify_BoostSignals2", "BM_Notify_Sigc"))
        out.append(f"| {arg} | {thr} | " + " | ".join(cells) + f" | {ratio} | {peers} |")
    out.append("")

    out.append("### Two threads notifying one registry: per-notify cost relative to one thread")
    out.append("")
    out.append("| handlers | Sigreg 1 thread | Sigreg 2 threads | ratio |")
    out.append("|---:|---:|---:|---:|")
    for arg in sorted({a for (b, a, t) in rows if b == "BM_Notify_Sigreg"}):
        one, two = rows.get(("BM_Notify_Sigreg", arg, 1)), rows.get(("BM_Notify_Sigreg", arg, 2))
        if one and two:
            out.append(f"| {arg} | {fmt_ns(ns(one))} | {fmt_ns(ns(two))} | {ns(two) / ns(one):.2f}× |")
    out.append("")

    out.append("### Registration")
    out.append("")
    out.append("| benchmark | argument | CPU time | allocations per op |")
    out.append("|---|---:|---:|---:|")
    for (base, arg, thr), b in sorted(rows.items()):
        if base.startswith(("BM_AddRemove", "BM_AddOneByOne", "BM_AddBatch")):
            allocs = b.get("allocs_per_op", b.get("allocs_per_add", ""))
            allocs = f"{allocs:.2f}" if isinstance(allocs, float) else allocs
            out.append(f"| {base} | {arg} | {fmt_ns(ns(b))} | {allocs} |")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
