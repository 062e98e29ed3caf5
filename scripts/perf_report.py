#!/usr/bin/env python3
"""Turn sigreg-benchmarks JSON output into the Markdown tables of docs/PERFORMANCE.md.

    build/release/benchmarks/sigreg-benchmarks --benchmark_repetitions=5 \
        --benchmark_report_aggregates_only=true --benchmark_format=json > bench.json
    scripts/perf_report.py bench.json > table.md

Figures are medians of the repetitions (CPU time; with 2 threads, CPU time per
notify per thread). Ratios are computed from the same run, never typed by hand.

    scripts/perf_report.py --qt qt.json [more.json ...] > qt-table.md

renders the Qt facade's rows instead (BM_Notify_SigregQt, BM_CrossThread_*,
BM_NotifyAsync*_*, BM_NotifySequential_Sigreg). The tables come from the rows
of all files together (the first file's row wins where two hold the same
one), so the first file should be the run quoted; every file that holds the
target rows adds one column to the targets table. The CrossThread and
AsyncPending rows are wall-clock time (UseRealTime), the others CPU time.

    scripts/perf_report.py --qml qml.json [more.json ...] > qml-table.md

renders the QML module's rows (BM_Qml_*): notify through RegistryHandlers
against a QML signal with Connections, and the churn of both kinds of
objects. CPU time, medians. The tables come from the first file; every file
adds one column to the table of ratios.

    scripts/perf_report.py --bus bus.json [more.json ...] > bus-table.md

renders sigreg::Bus's rows (benchmarks/bus_benchmarks.cpp): BM_BusEmit_Handlers
against BM_Notify_Sigreg (the issue's target: at most 1.2x), BM_BusEmit_NoListener,
and BM_BusBroadcast_{Receivers,MutexDeque,MoodyCamel} per mode (threaded:0, CPU
time; threaded:1, wall-clock time), per event (time / the rows' `burst`
counter). Medians. The tables come from the first file, the run quoted; every
file adds one column to the table of ratios.
"""
import json
import os
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


def load(path, pattern=NAME):
    """Median rows of a Google Benchmark JSON file, by (name, argument, threads)."""
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        m = pattern.match(b["name"])
        if not m:
            continue
        key = (m["base"], int(m["arg"]), int(m["threads"] or 1))
        rows[key] = b
    return data.get("context", {}), rows


def ns(b, field="cpu_time"):
    unit = b.get("time_unit", "ns")
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]
    return b[field] * scale


def notify_cells(rows, bases, arg, thr):
    """Table cells (time, plus allocations if any) and times in ns for one configuration."""
    cells, times = [], {}
    for base in bases:
        b = rows.get((base, arg, thr))
        if b is None:
            cells.append("–")
            continue
        times[base] = ns(b)
        allocs = b.get("allocs_per_notify")
        cells.append(fmt_ns(times[base]) + (f" ({allocs:g} alloc)" if allocs else ""))
    return cells, times


def host_line(context):
    """The line naming the machine and the date of a run."""
    return (f"Host: {context.get('host_name', '?')}, {context.get('num_cpus', '?')} CPUs at "
            f"{context.get('mhz_per_cpu', '?')} MHz; run {context.get('date', '?')}.")


def fmt_ns(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.1f} ns"


def main(path):
    context, rows = load(path)
    out = []
    out.append(host_line(context))
    out.append("")
    out.append("### Notify: CPU time per notify (median), and Sigreg's ratio to each peer")
    out.append("")
    configs = sorted({(arg, thr) for (base, arg, thr) in rows if base == "BM_Notify_Sigreg"},
                     key=lambda c: (c[1], c[0]))
    header = "| handlers | threads | " + " | ".join(p for p, _ in PEERS) + " | Sigreg ÷ loop | peer ÷ Sigreg (Qt / Boost / sigc++) |"
    out.append(header)
    out.append("|" + "---:|" * (len(PEERS) + 4))
    for arg, thr in configs:
        cells, times = notify_cells(rows, [base for _, base in PEERS], arg, thr)
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


# --- The Qt facade -------------------------------------------------------------

# As NAME, and the "/real_time" that UseRealTime() rows carry.
QT_NAME = re.compile(r"^(?P<base>BM_\w+?)/(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?(?:/real_time)?_median$")

# registry-io (Rust, its own machine): its async join and its sequence, for 1 / 4 / 16 handlers.
REGISTRY_IO = {
    "async": {1: 177.0, 4: 353.0, 16: 1390.0},
    "sequential": {1: 53.0, 4: 185.0, 16: 694.0},
}


def load_qt(path):
    return load(path, QT_NAME)


def real_ns(b):
    return ns(b, "real_time")


def fmt_allocs(v):
    return "–" if v is None else f"{v:.3g}"


def qt_targets(rows):
    """The issue's targets, as (label, value, limit) with value None where a row is missing."""
    def cpu(base, arg, thr=1):
        b = rows.get((base, arg, thr))
        return ns(b) if b else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    out = []
    for h in (1, 4):
        out.append((f"facade inline ÷ core, {h} handler{'s' if h > 1 else ''}",
                    ratio(cpu("BM_Notify_SigregQt", h), cpu("BM_Notify_Sigreg", h)), 1.2, "×"))
    for h in (1, 4):
        out.append((f"facade inline ÷ Qt direct, {h} handler{'s' if h > 1 else ''}",
                    ratio(cpu("BM_Notify_SigregQt", h), cpu("BM_Notify_QtDirect", h)), 0.15, "×"))
    for n in (64, 1024):
        s, q = rows.get(("BM_CrossThread_Sigreg", n, 1)), rows.get(("BM_CrossThread_QtQueued", n, 1))
        out.append((f"CrossThread Sigreg ÷ QtQueued per event, burst {n}",
                    real_ns(s) / real_ns(q) if s and q else None, 0.5, "×"))
    for n in (64, 1024):
        s = rows.get(("BM_CrossThread_Sigreg", n, 1))
        out.append((f"CrossThread Sigreg allocs/event, burst {n}",
                    s.get("allocs_per_event") if s else None, 0.1, ""))
    out.append(("NotifyAsync ÷ HandWritten, 1 handler",
                ratio(cpu("BM_NotifyAsync_Sigreg", 1), cpu("BM_NotifyAsync_HandWritten", 1)), 1.1, "×"))
    return out


def qt_main(paths):
    runs = [(os.path.basename(p), *load_qt(p)) for p in paths]
    context = runs[0][1]
    rows = {}
    for _, _, r in reversed(runs):
        rows.update(r)
    out = []
    out.append(host_line(context))
    out.append("")

    out.append("### Inline notify through the facade: CPU time per notify (median)")
    out.append("")
    out.append("| handlers | threads | Sigreg core | QtRegistry (facade) | Qt direct signal "
               "| facade ÷ core | facade ÷ Qt direct |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    configs = sorted({(a, t) for (b, a, t) in rows if b == "BM_Notify_SigregQt"}, key=lambda c: (c[1], c[0]))
    for arg, thr in configs:
        cells, times = notify_cells(rows, ("BM_Notify_Sigreg", "BM_Notify_SigregQt", "BM_Notify_QtDirect"), arg, thr)
        f = times.get("BM_Notify_SigregQt")
        core, qt = times.get("BM_Notify_Sigreg"), times.get("BM_Notify_QtDirect")
        r1 = f"{f / core:.2f}×" if f and core else "–"
        r2 = f"{f / qt:.3f}×" if f and qt else "–"
        out.append(f"| {arg} | {thr} | " + " | ".join(cells) + f" | {r1} | {r2} |")
    out.append("")

    out.append("### Cross-thread delivery to a worker QThread: wall-clock time per event (median)")
    out.append("")
    out.append("| burst | Sigreg per event | Sigreg allocs/event | Qt queued per event | Qt allocs/event "
               "| Sigreg ÷ Qt |")
    out.append("|---:|---:|---:|---:|---:|---:|")
    for n in sorted({a for (b, a, t) in rows if b.startswith("BM_CrossThread_")}):
        s, q = rows.get(("BM_CrossThread_Sigreg", n, 1)), rows.get(("BM_CrossThread_QtQueued", n, 1))
        sv = real_ns(s) / n if s else None
        qv = real_ns(q) / n if q else None
        out.append(f"| {n} | {fmt_ns(sv) if s else '–'} | {fmt_allocs(s.get('allocs_per_event') if s else None)} "
                   f"| {fmt_ns(qv) if q else '–'} | {fmt_allocs(q.get('allocs_per_event') if q else None)} "
                   f"| {f'{sv / qv:.2f}×' if sv and qv else '–'} |")
    out.append("")

    out.append("### Async handlers, futures already finished: CPU time per notify + wait (median)")
    out.append("")
    out.append("| handlers | notifyAsync | hand-written whenAll | Sigreg ÷ hand-written | registry-io async "
               "| notifySequential | registry-io sequential |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    for h in sorted({a for (b, a, t) in rows if b in ("BM_NotifyAsync_Sigreg", "BM_NotifySequential_Sigreg")}):
        cells = []
        a, w, q = (rows.get((base, h, 1)) for base in
                   ("BM_NotifyAsync_Sigreg", "BM_NotifyAsync_HandWritten", "BM_NotifySequential_Sigreg"))
        for b in (a, w):
            cells.append(f"{fmt_ns(ns(b))} ({b.get('allocs_per_notify', 0):.3g} alloc)" if b else "–")
        cells.append(f"{ns(a) / ns(w):.2f}×" if a and w else "–")
        ref = REGISTRY_IO["async"].get(h)
        cells.append(fmt_ns(ref) if ref else "–")
        cells.append(f"{fmt_ns(ns(q))} ({q.get('allocs_per_notify', 0):.3g} alloc)" if q else "–")
        ref = REGISTRY_IO["sequential"].get(h)
        cells.append(fmt_ns(ref) if ref else "–")
        out.append(f"| {h} | " + " | ".join(cells) + " |")
    out.append("")

    pending = sorted({a for (b, a, t) in rows if b.startswith("BM_NotifyAsyncPending_")})
    if pending:
        out.append("### Async handlers, futures pending (finished by another thread): wall-clock time per notify + "
                   "wait (median)")
        out.append("")
        out.append("| handlers | notifyAsync | hand-written, each future waited in turn | Sigreg ÷ hand-written |")
        out.append("|---:|---:|---:|---:|")
        for h in pending:
            a, w = rows.get(("BM_NotifyAsyncPending_Sigreg", h, 1)), rows.get(("BM_NotifyAsyncPending_HandWritten", h, 1))
            cells = [f"{fmt_ns(real_ns(b))} ({b.get('allocs_per_notify', 0):.3g} alloc)" if b else "–" for b in (a, w)]
            cells.append(f"{real_ns(a) / real_ns(w):.2f}×" if a and w else "–")
            out.append(f"| {h} | " + " | ".join(cells) + " |")
        out.append("")

    target_runs = [(name, qt_targets(r)) for name, _, r in runs if ("BM_Notify_SigregQt", 1, 1) in r]
    if target_runs:
        out.append("### The targets, per run")
        out.append("")
        out.append("| target | limit | " + " | ".join(name for name, _ in target_runs) + " | range | met in |")
        out.append("|---|---:|" + "---:|" * len(target_runs) + "---:|---:|")
        for i, (label, _, limit, unit) in enumerate(target_runs[0][1]):
            values = [t[i][1] for _, t in target_runs]
            known = [v for v in values if v is not None]
            prec = 3  # 1.201× must not print as the 1.2× it misses
            cells = [f"{v:.{prec}f}{unit}" if v is not None else "–" for v in values]
            rng = f"{min(known):.{prec}f}–{max(known):.{prec}f}{unit}" if known else "–"
            met = sum(1 for v in known if v <= limit)
            out.append(f"| {label} | ≤ {limit:g}{unit} | " + " | ".join(cells) + f" | {rng} | {met} of {len(known)} |")
        out.append("")
    print("\n".join(out))


# --- The QML module ---------------------------------------------------------------

# The repetitions' coefficient of variation (Google Benchmark stores it as a fraction).
QML_CV = re.compile(r"^(?P<base>BM_Qml_\w+?)/(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?_cv$")


def qml_ratios(rows):
    """Sigreg's rows over QML's own, as (label, value) with None where a row is missing."""
    def ratio(a, b):
        return ns(a) / ns(b) if a and b else None

    out = []
    for h in (1, 16):
        out.append((f"RegistryHandler ÷ QML signal, notify, {h} handler{'s' if h > 1 else ''}",
                    ratio(rows.get(("BM_Qml_NotifyHandlers", h, 1)), rows.get(("BM_Qml_SignalHandlers", h, 1)))))
    for n in (100, 1000):
        out.append((f"RegistryHandler ÷ Connections, churn of {n}",
                    ratio(rows.get(("BM_Qml_HandlerChurn", n, 1)), rows.get(("BM_Qml_ConnectionsChurn", n, 1)))))
    return out


def qml_main(paths):
    path = paths[0]
    context, rows = load(path)
    _, cvs = load(path, QML_CV)
    out = []
    out.append(host_line(context))
    out.append("")

    def cell(b, counter, unit):
        if b is None:
            return "–"
        allocs = b.get(counter)
        return fmt_ns(ns(b)) + (f" ({allocs:.2f} {unit})" if allocs is not None else "")

    out.append("### Notify from C++, N handlers: CPU time per notify (median)")
    out.append("")
    out.append("| handlers | RegistryHandler, onNotified | RegistryHandler, handler function | Connections, QML signal "
               "| calls per notify (all three) | onNotified ÷ QML signal | per handler: onNotified / QML signal |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    for h in sorted({a for (b, a, t) in rows if b in ("BM_Qml_NotifyHandlers", "BM_Qml_SignalHandlers")}):
        r, f, q = (rows.get((base, h, 1)) for base in
                   ("BM_Qml_NotifyHandlers", "BM_Qml_NotifyHandlerFunctions", "BM_Qml_SignalHandlers"))
        calls = " / ".join(f"{b['calls_per_notify']:g}" if b and "calls_per_notify" in b else "–" for b in (r, f, q))
        ratio = f"{ns(r) / ns(q):.2f}×" if r and q else "–"
        per = f"{fmt_ns(ns(r) / h)} / {fmt_ns(ns(q) / h)}" if r and q else "–"
        out.append(f"| {h} | {cell(r, 'allocs_per_notify', 'alloc')} | {cell(f, 'allocs_per_notify', 'alloc')} "
                   f"| {cell(q, 'allocs_per_notify', 'alloc')} | {calls} | {ratio} | {per} |")
    out.append("")

    out.append("### Churn: create N objects, then delete them; CPU time per round (median)")
    out.append("")
    out.append("| objects | RegistryHandler | per object | Connections | per object | RegistryHandler ÷ Connections "
               "| difference per object |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted({a for (b, a, t) in rows if b in ("BM_Qml_HandlerChurn", "BM_Qml_ConnectionsChurn")}):
        r, c = rows.get(("BM_Qml_HandlerChurn", n, 1)), rows.get(("BM_Qml_ConnectionsChurn", n, 1))
        cells = []
        for b in (r, c):
            cells.append(fmt_ns(ns(b)) if b else "–")
            if b is None:
                cells.append("–")
            else:
                allocs = b.get("allocs_per_object")
                cells.append(fmt_ns(ns(b) / n) + (f" ({allocs:.2f} alloc)" if allocs is not None else ""))
        cells.append(f"{ns(r) / ns(c):.2f}×" if r and c else "–")
        cells.append(fmt_ns((ns(r) - ns(c)) / n) if r and c else "–")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out.append("")

    spread = [(b.get("cpu_time", 0.0) * 100, f"{base}/{arg}") for (base, arg, _), b in cvs.items()]
    if spread:
        worst = max(spread)
        out.append(f"Spread across the repetitions: coefficient of variation of CPU time at most "
                   f"{worst[0]:.1f} % ({worst[1]}).")
        out.append("")

    runs = [(os.path.basename(p), qml_ratios(load(p)[1])) for p in paths]
    out.append("### Ratios, per run (CPU time, medians)")
    out.append("")
    out.append("| ratio | " + " | ".join(name for name, _ in runs) + " | range |")
    out.append("|---|" + "---:|" * len(runs) + "---:|")
    for i, (label, _) in enumerate(runs[0][1]):
        values = [r[i][1] for _, r in runs]
        known = [v for v in values if v is not None]
        cells = [f"{v:.2f}×" if v is not None else "–" for v in values]
        rng = f"{min(known):.2f}–{max(known):.2f}×" if known else "–"
        out.append(f"| {label} | " + " | ".join(cells) + f" | {rng} |")
    out.append("")
    print("\n".join(out))


# --- sigreg::Bus -------------------------------------------------------------------

# As QT_NAME, and the "threaded:" that the broadcast rows' named argument carries.
BUS_NAME = re.compile(r"^(?P<base>BM_\w+?)/(?:threaded:)?(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?"
                      r"(?:/real_time)?_median$")
BUS_CV = re.compile(r"^(?P<base>BM_Bus\w+?)/(?:threaded:)?(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?"
                    r"(?:/real_time)?_cv$")
BUS_EMIT_TARGET = 1.2
BROADCAST = [
    ("Sigreg receivers", "BM_BusBroadcast_Receivers"),
    ("mutex + deque", "BM_BusBroadcast_MutexDeque"),
    ("moodycamel", "BM_BusBroadcast_MoodyCamel"),
]
BROADCAST_MODES = {0: "single thread (CPU time)", 1: "4 consumer threads (wall-clock time)"}


def row_ns(b):
    """A row's time in ns: wall-clock for UseRealTime() rows, CPU time otherwise."""
    return ns(b, "real_time" if "/real_time" in b["name"] else "cpu_time")


def per_event(b):
    return row_ns(b) / b.get("burst", 64)


def bus_ratios(rows):
    """The bus's ratios, as (label, value, limit) with value None where a row is missing."""
    out = []
    for thr in (1, 2):
        for h in (1, 4, 16):
            e, n = rows.get(("BM_BusEmit_Handlers", h, thr)), rows.get(("BM_Notify_Sigreg", h, thr))
            out.append((f"BusEmit ÷ Notify_Sigreg, {h} handler{'s' if h > 1 else ''}, {thr} thread{'s' if thr > 1 else ''}",
                        ns(e) / ns(n) if e and n else None, BUS_EMIT_TARGET))
    for thr in (1, 2):
        for h in (1, 4, 16):
            e, n = rows.get(("BM_BusEmit_Sender", h, thr)), rows.get(("BM_Notify_Sigreg", h, thr))
            out.append((f"Sender emit ÷ Notify_Sigreg, {h} handler{'s' if h > 1 else ''}, {thr} thread{'s' if thr > 1 else ''}",
                        ns(e) / ns(n) if e and n else None, None))
    for peer, base in BROADCAST[1:]:
        for mode in BROADCAST_MODES:
            s, p = rows.get(("BM_BusBroadcast_Receivers", mode, 1)), rows.get((base, mode, 1))
            out.append((f"Broadcast Sigreg ÷ {peer}, threaded:{mode}",
                        per_event(s) / per_event(p) if s and p else None, None))
    return out


def bus_main(paths):
    context, rows = load(paths[0], BUS_NAME)
    _, cvs = load(paths[0], BUS_CV)
    out = []
    out.append(host_line(context))
    out.append("")

    out.append("### Emit with N push handlers against the registry's notify: CPU time per emit (median)")
    out.append("")
    out.append("| handlers | threads | Registry notify (BM_Notify_Sigreg) | Bus emit (BM_BusEmit_Handlers) "
               "| Sender emit (BM_BusEmit_Sender) | BusEmit ÷ Notify | difference | Sender ÷ Notify |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    configs = sorted({(a, t) for (b, a, t) in rows if b == "BM_BusEmit_Handlers"}, key=lambda c: (c[1], c[0]))
    for arg, thr in configs:
        cells, times = notify_cells(rows, ("BM_Notify_Sigreg", "BM_BusEmit_Handlers", "BM_BusEmit_Sender"), arg, thr)
        n, e, snd = (times.get(k) for k in ("BM_Notify_Sigreg", "BM_BusEmit_Handlers", "BM_BusEmit_Sender"))
        ratio = f"{e / n:.2f}×" if e and n else "–"
        diff = f"{e - n:+.1f} ns" if e and n else "–"
        sratio = f"{snd / n:.2f}×" if snd and n else "–"
        out.append(f"| {arg} | {thr} | " + " | ".join(cells) + f" | {ratio} | {diff} | {sratio} |")
    out.append("")

    quiet = sorted(a for (b, a, t) in rows if b == "BM_BusEmit_NoListener")
    if quiet:
        out.append("### Emit of a type nobody listens to: CPU time per emit (median)")
        out.append("")
        out.append("| variant | CPU time | allocations per emit |")
        out.append("|---|---:|---:|")
        labels = {0: "0: the type never had a channel", 1: "1: it had a handler, removed since"}
        for a in quiet:
            b = rows[("BM_BusEmit_NoListener", a, 1)]
            out.append(f"| {labels.get(a, a)} | {fmt_ns(ns(b))} | {fmt_allocs(b.get('allocs_per_emit'))} |")
        out.append("")

    out.append("### Broadcast, 1 producer to 4 receivers, bursts of 64: time per event emitted (median)")
    out.append("")
    out.append("Per event: its four copies pushed and taken again by the four receivers. Allocations per event "
               "(all threads) in parentheses.")
    out.append("")
    out.append("| mode | " + " | ".join(p for p, _ in BROADCAST)
               + " | Sigreg ÷ mutex + deque | Sigreg ÷ moodycamel |")
    out.append("|---|" + "---:|" * (len(BROADCAST) + 2))
    for mode in sorted({a for (b, a, t) in rows if b.startswith("BM_BusBroadcast_")}):
        cells, times = [], {}
        for _, base in BROADCAST:
            b = rows.get((base, mode, 1))
            if b is None:
                cells.append("–")
                continue
            times[base] = per_event(b)
            allocs = b.get("allocs_per_event")
            cells.append(fmt_ns(times[base]) + (f" ({allocs:.3g} alloc)" if allocs is not None else ""))
        s = times.get("BM_BusBroadcast_Receivers")
        for _, base in BROADCAST[1:]:
            p = times.get(base)
            cells.append(f"{s / p:.2f}×" if s and p else "–")
        out.append(f"| {BROADCAST_MODES.get(mode, mode)} | " + " | ".join(cells) + " |")
    out.append("")

    spread = [(b.get("real_time" if "/real_time" in b["name"] else "cpu_time", 0.0) * 100, b["run_name"])
              for b in cvs.values()]
    if spread:
        worst = max(spread)
        out.append(f"Spread across the repetitions: coefficient of variation at most {worst[0]:.1f} % ({worst[1]}).")
        out.append("")

    runs = [(os.path.basename(p), bus_ratios(load(p, BUS_NAME)[1])) for p in paths]
    out.append("### Ratios, per run (medians)")
    out.append("")
    out.append("| ratio | target | " + " | ".join(name for name, _ in runs) + " | range | met in |")
    out.append("|---|---:|" + "---:|" * len(runs) + "---:|---:|")
    for i, (label, _, limit) in enumerate(runs[0][1]):
        values = [r[i][1] for _, r in runs]
        known = [v for v in values if v is not None]
        if not known:
            continue
        prec = 3 if limit is not None else 2  # 1.201× must not print as the 1.2× it misses
        cells = [f"{v:.{prec}f}×" if v is not None else "–" for v in values]
        rng = f"{min(known):.{prec}f}–{max(known):.{prec}f}×"
        target = f"≤ {limit:g}×" if limit is not None else ""
        met = f"{sum(1 for v in known if v <= limit)} of {len(known)}" if limit is not None else ""
        out.append(f"| {label} | {target} | " + " | ".join(cells) + f" | {rng} | {met} |")
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--bus":
        bus_main(sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "--qt":
        qt_main(sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "--qml":
        qml_main(sys.argv[2:])
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(__doc__)
