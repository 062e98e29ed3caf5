#!/usr/bin/env python3
"""Turn sigreg-benchmarks JSON output into docs/PERFORMANCE.md, its chart and the README's performance part.

The workflow: run the benchmarks, save their JSON in docs/perf/, name each file in
docs/perf/manifest.json with the command that made it (the "command" of every
run there is the one to repeat), then

    scripts/perf_report.py render docs/perf/manifest.json

writes docs/PERFORMANCE.md (from the template docs/perf/PERFORMANCE.md.in), the
chart docs/images/notify-vs-handlers.png (matplotlib, imported only for it;
--no-chart skips it), and the README's text between its perf:begin / perf:end
markers (from docs/perf/README.perf.md.in). Every number in them, tables and
prose, is computed here from the JSON; the templates hold placeholders
({{name}}, {{name|cap}}, and {{?name}}...{{/name}} / {{!name}}...{{/name}} for
text kept only where a computed condition holds or does not). The manifest
holds what a run cannot record about itself (its command, its commit, the CPU
model), the issues' targets, and the figures of registry-io, which is measured
elsewhere.

    scripts/perf_report.py check docs/perf/manifest.json

renders again in memory (plain python3, no matplotlib) and exits 1 where
docs/PERFORMANCE.md or the README's part differ from that, where the chart's
embedded data digest is not that of the data it should show, or where a run's
command in the manifest does not match the file (repetitions, filter, name).
Without a path, both use docs/perf/manifest.json.

The older modes print one section's tables for any JSON files, for a look at
a new run before it is named in the manifest:

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
import hashlib
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


def core_notify_table(rows):
    """Notify rows of every peer, with Sigreg's ratios, as Markdown lines."""
    out = []
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
    return out


def core_threads_table(rows):
    """Sigreg with two notifying threads against one, as Markdown lines."""
    out = ["| handlers | Sigreg 1 thread | Sigreg 2 threads | ratio |", "|---:|---:|---:|---:|"]
    for arg in sorted({a for (b, a, t) in rows if b == "BM_Notify_Sigreg"}):
        one, two = rows.get(("BM_Notify_Sigreg", arg, 1)), rows.get(("BM_Notify_Sigreg", arg, 2))
        if one and two:
            out.append(f"| {arg} | {fmt_ns(ns(one))} | {fmt_ns(ns(two))} | {ns(two) / ns(one):.2f}× |")
    return out


def registration_table(rows):
    """The registration rows, as Markdown lines."""
    out = ["| benchmark | argument | CPU time | allocations per op |", "|---|---:|---:|---:|"]
    for (base, arg, thr), b in sorted(rows.items()):
        if base.startswith(("BM_AddRemove", "BM_AddOneByOne", "BM_AddBatch")):
            allocs = b.get("allocs_per_op", b.get("allocs_per_add", ""))
            allocs = f"{allocs:.2f}" if isinstance(allocs, float) else allocs
            out.append(f"| {base} | {arg} | {fmt_ns(ns(b))} | {allocs} |")
    return out


def core_report(path):
    context, rows = load(path)
    out = [host_line(context), ""]
    out += ["### Notify: CPU time per notify (median), and Sigreg's ratio to each peer", ""]
    out += core_notify_table(rows) + [""]
    out += ["### Two threads notifying one registry: per-notify cost relative to one thread", ""]
    out += core_threads_table(rows) + [""]
    out += ["### Registration", ""]
    out += registration_table(rows)
    return "\n".join(out)


# --- The Qt facade -------------------------------------------------------------

# As NAME, and the "/real_time" that UseRealTime() rows carry.
QT_NAME = re.compile(r"^(?P<base>BM_\w+?)/(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?(?:/real_time)?_median$")



def registry_io(references, kind):
    """registry-io's figures (Rust, its own machine), by handler count, from the manifest's references."""
    return {int(h): v for h, v in references.get(f"registry_io_{kind}_ns", {}).items()}


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


def qt_inline_table(rows):
    """The facade's inline notify against the core and a direct Qt signal, as Markdown lines."""
    out = []
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
    return out


def qt_report(paths, references=None, pending_path=None):
    """The Qt tables from `paths` (the first run's rows win); the pending-futures rows from `pending_path`
    when given (their own run), else from `paths` like the others."""
    if references is None:
        references = default_manifest().get("references", {})
    runs = [(os.path.basename(p), *load_qt(p)) for p in paths]
    context = runs[0][1]
    rows = {}
    for _, _, r in reversed(runs):
        rows.update(r)
    if pending_path:
        rows = {k: b for k, b in rows.items() if not k[0].startswith("BM_NotifyAsyncPending_")}
        rows.update({k: b for k, b in load_qt(pending_path)[1].items() if k[0].startswith("BM_NotifyAsyncPending_")})
    out = []
    out.append(host_line(context))
    out.append("")

    out.append("### Inline notify through the facade: CPU time per notify (median)")
    out.append("")
    out += qt_inline_table(rows)
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
        ref = registry_io(references, "async").get(h)
        cells.append(fmt_ns(ref) if ref else "–")
        cells.append(f"{fmt_ns(ns(q))} ({q.get('allocs_per_notify', 0):.3g} alloc)" if q else "–")
        ref = registry_io(references, "sequential").get(h)
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
    return "\n".join(out)


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


def qml_report(paths):
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
    return "\n".join(out)


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


def bus_report(paths):
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
    return "\n".join(out)


# --- The document: manifest, values, template ---------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MANIFEST = os.path.join(REPO, "docs", "perf", "manifest.json")

# Every benchmark row: plain, "/threads:N", "/real_time", "/threaded:N" (bus), any aggregate.
ANY_NAME = re.compile(r"^(?P<base>BM_\w+?)/(?:threaded:)?(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?"
                      r"(?:/real_time)?_(?P<agg>median|mean|stddev|cv)$")

SAMPLE_NAME = re.compile(r"^(?P<base>BM_\w+?)/(?P<arg>\d+)(?:/threads:(?P<threads>\d+))?(?:/real_time)?$")

WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


def default_manifest():
    if os.path.exists(DEFAULT_MANIFEST):
        with open(DEFAULT_MANIFEST) as f:
            return json.load(f)
    return {}


class Run:
    """One saved run named in the manifest: its context and its rows by aggregate."""

    def __init__(self, key, entry, perf_dir):
        self.key, self.entry = key, entry
        self.file = entry["file"]
        self.path = os.path.join(perf_dir, self.file)
        with open(self.path) as f:
            data = json.load(f)
        self.context = data.get("context", {})
        self.benchmarks = data["benchmarks"]
        self.agg = {"median": {}, "mean": {}, "stddev": {}, "cv": {}}
        for b in self.benchmarks:
            m = ANY_NAME.match(b["name"])
            if m:
                self.agg[m["agg"]][(m["base"], int(m["arg"]), int(m["threads"] or 1))] = b
        self.rows = self.agg["median"]
        # The repetitions themselves, where the run kept them (no
        # --benchmark_report_aggregates_only): in ns, by row (wall-clock for
        # UseRealTime() rows, CPU time otherwise, as row_ns()).
        self.samples = {}
        for b in self.benchmarks:
            m = SAMPLE_NAME.match(b.get("run_name", "")) if b.get("run_type") == "iteration" else None
            if m:
                key = (m["base"], int(m["arg"]), int(m["threads"] or 1))
                self.samples.setdefault(key, []).append(row_ns(b))

    def get(self, base, arg, thr=1):
        return self.rows.get((base, arg, thr))

    def t(self, base, arg, thr=1):
        """A row's median in ns (wall-clock for UseRealTime() rows), or None."""
        b = self.get(base, arg, thr)
        return row_ns(b) if b else None

    def ratio(self, a, b, arg, thr=1, arg_b=None):
        x, y = self.t(a, arg, thr), self.t(b, arg if arg_b is None else arg_b, thr)
        return x / y if x is not None and y else None

    def cv(self, base, arg, thr=1):
        """Coefficient of variation of a row's repetitions, in per cent."""
        b = self.agg["cv"].get((base, arg, thr))
        return row_ns(b) * 100 if b else None

    def repetitions(self):
        return sorted({b.get("repetitions") for b in self.benchmarks})


# Formatting of prose values ------------------------------------------------------------

def known(values):
    return [v for v in values if v is not None]


def fx(v, prec=2):
    """A ratio: 1.24×."""
    return "–" if v is None else f"{v:.{prec}f}×"


def num(v, prec=2):
    return "–" if v is None else f"{v:.{prec}f}"


def span(values, prec=2, unit="×", sep="–"):
    """The range of some values: 0.54–1.39×, or one value when they round alike."""
    vals = known(values)
    if not vals:
        return "–"
    lo, hi = f"{min(vals):.{prec}f}", f"{max(vals):.{prec}f}"
    return f"{lo}{unit}" if lo == hi else f"{lo}{sep}{hi}{unit}"


def auto_prec(values):
    """One decimal below 10, none from 10 on (8.4, 14, 129)."""
    return 1 if max(known(values)) < 10 else 0


def span_auto(values, unit="×", sep=" to "):
    vals = known(values)
    lo, hi = min(vals), max(vals)
    return f"{lo:.{auto_prec([lo])}f}{sep}{hi:.{auto_prec([hi])}f}{unit}"


def span_ns(values):
    """A range of times in one unit where both ends share it: 3.6–4.8 ns, 651.5 ns–2.11 µs."""
    vals = known(values)
    if not vals:
        return "–"
    lo, hi = fmt_ns(min(vals)), fmt_ns(max(vals))
    if lo == hi:
        return lo
    (lv, lu), (_, hu) = lo.split(" "), hi.split(" ")
    return f"{lv}–{hi}" if lu == hu else f"{lo}–{hi}"


def span_in(values, scale, unit, prec=0):
    """A range of times in a fixed unit: 5–13 µs."""
    return span([v / scale for v in known(values)], prec, f" {unit}")


def word(n):
    return WORDS[n] if 0 <= n < len(WORDS) else str(n)


def times_word(n):
    n = round(n, 2)
    return {1: "once", 2: "twice"}.get(n, f"{n:g} times")


def join_and(items):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def slash(items):
    return " / ".join(items)


def met_count(values, limit):
    vals = known(values)
    return sum(1 for v in vals if v <= limit), len(vals)


def verdict(values, limit):
    """met / not met / met in k of n runs, from the values."""
    k, n = met_count(values, limit)
    if n == 0:
        return "no data"
    if k == n:
        return "met"
    if k == 0:
        return "not met"
    return f"met in {k} of {n} runs"


def in_runs(k, n):
    """in all three runs / in two of three runs."""
    if n == 1:
        return "in the one run" if k == 1 else "in no run"
    if k == n:
        return f"in all {word(n)} runs"
    if k == 0:
        return f"in none of the {word(n)} runs"
    return f"in {word(k)} of {word(n)} runs"


def median(values):
    vals = sorted(known(values))
    m = len(vals) // 2
    return vals[m] if len(vals) % 2 else (vals[m - 1] + vals[m]) / 2


def handlers(n):
    return f"{n} handler" + ("s" if n != 1 else "")


# Tables that only the document needs ---------------------------------------------------

def drop_empty_columns(lines):
    """Drop the columns of a Markdown table whose body cells are all '–' (or '– / – / –')."""
    table = [line.strip().strip("|").split(" | ") for line in lines]
    table = [[c.strip() for c in row] for row in table]
    table[1] = lines[1].strip().strip("|").split("|")
    body = table[2:]
    keep = [i for i in range(len(table[0]))
            if any(re.sub(r"[–/ ]", "", row[i]) for row in body)]
    return ["| " + " | ".join(row[i] for i in keep) + " |" for row in table[:1]] + \
           ["|" + "".join(table[1][i] + "|" for i in keep)] + \
           ["| " + " | ".join(row[i] for i in keep) + " |" for row in body]


def core_targets(runs, targets):
    """The core's targets per run, as (label, values, limit, unit, verdict) rows of cells."""
    def ratio_rows(arg, thr=1):
        return [r.ratio("BM_Notify_Sigreg", "BM_Notify_FunctionLoop", arg, thr) for r in runs]

    def threads_rows(base, arg):
        two_over_one = []
        for r in runs:
            one, two = r.t(base, arg, 1), r.t(base, arg, 2)
            two_over_one.append(two / one if one and two is not None else None)
        return two_over_one

    out = []
    lim = targets["core_1h_vs_loop"]
    out.append(("1 handler ≤ {}× the `std::function` loop".format(f"{lim:g}"), ratio_rows(1), lim, fx,
                "the loop itself read {} across runs".format(
                    span_ns([r.t("BM_Notify_FunctionLoop", 1) for r in runs]))))
    lim = targets["core_4h_vs_loop"]
    out.append((f"4 handlers ≤ {lim:g}× the loop", ratio_rows(4), lim, fx, None))
    out.append(("(16 handlers, for reference)", ratio_rows(16), None, fx, None))
    lim = targets["core_2threads_vs_1"]
    out.append((f"2 threads ≤ {lim:g}× one thread, 1 handler", threads_rows("BM_Notify_Sigreg", 1), lim, fx,
                "not demonstrable here, see below"))
    out.append(("same, 4 handlers", threads_rows("BM_Notify_Sigreg", 4), lim, fx, "not demonstrable here"))
    return out


def core_targets_table(runs, targets):
    """The targets table of the core's section, every cell computed from the runs."""
    first = runs[0]
    out = ["| target | " + " | ".join(f"`{r.file}`" for r in runs) + " | verdict |",
           "|---|" + "---:|" * len(runs) + "---|"]
    for label, values, limit, f, note in core_targets(runs, targets):
        cells = [f(v) if v is not None else "" for v in values]
        v = verdict(values, limit) if limit is not None else ""
        if note and limit is not None and v != "met":
            v += "; " + note
        out.append(f"| {label} | " + " | ".join(cells) + f" | {v} |")

    blank = [""] * (len(runs) - 1)
    lim = targets["add_remove_16_ns"]
    s16, q16 = first.t("BM_AddRemove_Sigreg", 16), first.t("BM_AddRemove_QtConnect", 16)
    if s16 is not None:
        v = verdict([s16], lim) + (f" (Qt connect + disconnect: {fmt_ns(q16)})" if q16 else "")
        out.append(f"| add + remove at 16 handlers ≤ {fmt_ns_limit(lim)} | {fmt_ns(s16)} | " + " | ".join(blank)
                   + f" | {v} |")
    lim = targets["single_adds_10000_ns"]
    # (single adds, the batch of the same priorities or None, priorities)
    for single, batched, what in (("BM_AddOneByOne_Sigreg", "BM_AddBatch_Sigreg", "equal priorities"),
                                  ("BM_AddOneByOne_SigregAscending", None, "rising priorities"),
                                  ("BM_AddOneByOne_SigregRandom", "BM_AddBatch_SigregRandom",
                                   "pseudo-random priorities")):
        one = [(a, b) for (base, a, _), b in first.rows.items() if base == single]
        batch = [(a, b) for (base, a, _), b in first.rows.items() if batched and base == batched]
        if one:
            n, b = one[0]
            t = ns(b)
            extra = f" (batch of {batch[0][0]:,}: {fmt_ns(ns(batch[0][1]))})" if batch else ""
            out.append(f"| {n:,} single adds ≤ {fmt_ns_limit(lim)}, {what} | {fmt_ns(t)} | " + " | ".join(blank)
                       + f" | {verdict([t], lim)}{extra} |")
    lim = targets["allocs_per_notify"]
    allocs = [max_allocs(r, "BM_Notify_Sigreg") for r in runs]
    threads = sorted({t for r in runs for (b, a, t) in r.rows if b == "BM_Notify_Sigreg"})
    out.append(f"| {lim:g} allocations per notify | " + " | ".join(f"{a:g}" for a in allocs)
               + f" | {verdict(allocs, lim)}, {join_and(str(t) for t in threads)} threads; also asserted by "
                 "`tst_allocations` |")
    return out


def fmt_ns_limit(v):
    """A time limit as the issues state it: 2 µs, 20 ms."""
    for scale, unit in ((1e6, "ms"), (1e3, "µs")):
        if v >= scale:
            return f"{v / scale:g} {unit}"
    return f"{v:g} ns"


def max_allocs(run, base, counter="allocs_per_notify"):
    vals = [b.get(counter, 0) for (b_, a, t), b in run.rows.items() if b_ == base]
    return max(vals) if vals else None


def fence(text):
    return "```sh\n" + text + "\n```"


def command_block(manifest, keys, extra=()):
    lines = [manifest["build"]]
    for k in keys:
        lines.append(wrap_command(manifest["runs"][k]["command"]))
    lines += list(extra)
    return fence("\n".join(lines))


def wrap_command(cmd, width=110):
    """Break a long command line at its options, with backslashes."""
    words, lines, line = cmd.split(" "), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width - 2:
            lines.append(line + " \\")
            line = "    " + w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    return "\n".join(lines)


# The values the templates name ------------------------------------------------------------

def pooled_quantile(runs, base, q, arg=1, thr=1):
    """The q-quantile (lower) of a row's repetitions pooled over several runs, in ns."""
    values = sorted(x for r in runs for x in r.samples.get((base, arg, thr), []))
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def modcopy_table(groups):
    """Before and after the per-module record pointer: the repetitions of each build's runs
    (which alternated), pooled; the 10th percentile, the first quartile, the median and the third quartile."""
    loop = "BM_Notify_FunctionLoop"
    rows = [(loop, "`Notify_FunctionLoop/1`"), ("BM_Notify_Sigreg", "`Notify_Sigreg/1`"),
            ("BM_Notify_SigregQt", "`Notify_SigregQt/1`"), ("BM_BusEmit_Handlers", "`BusEmit_Handlers/1`")]
    before, after = groups["modcopy_before"], groups["modcopy_after"]
    qs = (0.1, 0.25, 0.5, 0.75)
    head = (f"| row (ns; ÷ loop at the same quantile) | `{before[0].entry['commit']}`, before: P10 / Q1 / median / Q3 "
            f"| `{after[0].entry['commit']}`, after: P10 / Q1 / median / Q3 | after ÷ before: P10 / median |")
    lines = [head, "|---|---:|---:|---:|"]
    for base, label in rows:
        cells = []
        for runs in (before, after):
            t = [pooled_quantile(runs, base, q) for q in qs]
            cell = " / ".join(f"{x:.2f}" for x in t)
            if base != loop:
                lt = [pooled_quantile(runs, loop, q) for q in qs]
                cell += " (" + " / ".join(f"{x / y:.2f}×" for x, y in zip(t, lt)) + ")"
            cells.append(cell)
        change = [pooled_quantile(after, base, q) / pooled_quantile(before, base, q) for q in (0.1, 0.5)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {change[0]:.2f}× / {change[1]:.2f}× |")
    return "\n".join(lines)


def ab_table(without, with_, rows, head):
    """Two builds that ran alternating rounds: each build's repetitions pooled, medians in ns, each row also ÷ a
    reference row of the same build. `rows`: (benchmark, reference benchmark or None, argument, label)."""
    lines = [f"| {head[0]} | {head[1]}: median (÷ {head[3]}) | {head[2]}: median (÷ {head[3]}) | "
             f"{head[2]} ÷ {head[1]} |", "|---|---:|---:|---:|"]
    for base, ref, h, label in rows:
        cells, medians = [], []
        for runs in (without, with_):
            t = pooled_quantile(runs, base, 0.5, h)
            medians.append(t)
            if ref is None:
                cells.append(f"{t:.2f} ns")
            else:
                cells.append(f"{t:.2f} ns ({t / pooled_quantile(runs, ref, 0.5, h):.2f}×)")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {medians[1] / medians[0]:.2f}× |")
    return "\n".join(lines)


def pooled_ratio(runs, a, b, h):
    """Row `a` over row `b`, with `h` handlers: the medians of their repetitions pooled over `runs`."""
    return pooled_quantile(runs, a, 0.5, h) / pooled_quantile(runs, b, 0.5, h)


def pooled_change(before, after, base, h):
    """A row's pooled median in the runs `after` over that in the runs `before`."""
    return pooled_quantile(after, base, 0.5, h) / pooled_quantile(before, base, 0.5, h)


def control_drift(without, with_, rows):
    """The largest change, in per cent, of rows whose source is the same in both builds."""
    return max(abs(pooled_change(without, with_, b, h) - 1) * 100 for b, h in rows)


REGMIX_ROWS = (("BM_AddOneByOne_Sigreg", "10,000 single adds, equal priorities"),
               ("BM_AddOneByOne_SigregAscending", "10,000 single adds, rising priorities"),
               ("BM_AddOneByOne_SigregRandom", "10,000 single adds, pseudo-random priorities"),
               ("BM_AddBatch_Sigreg", "one batch of 10,000, equal priorities"),
               ("BM_AddBatch_SigregRandom", "one batch of 10,000, pseudo-random priorities"))


def regmix_table(groups, limit_ns):
    """Registering 10,000 handlers in three builds (before both changes, spares, spares + range): pooled medians."""
    builds = [groups["regmix_none"], groups["regmix_spares"], groups["regmix_range"]]
    lines = ["| row | before | spares | spares + range |", "|---|---:|---:|---:|"]
    for base, label in REGMIX_ROWS:
        cells = []
        for runs in builds:
            t = pooled_quantile(runs, base, 0.5, 10000)
            cell = fmt_ns(t) if t is not None else "–"
            if t is not None and base.startswith("BM_AddOneByOne") and t > limit_ns:
                cell += " (over)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ab_counts(v, name, without, with_=None, control=()):
    """`name`.rounds and `name`.samples of alternating rounds (each build's), and `name`.drift_pct: how far the
    `control` rows, built from the same source in both builds, moved."""
    v[f"{name}.rounds"] = word(len(without))
    v[f"{name}.samples"] = str(sum(r.repetitions()[0] for r in without))
    if with_ is not None and control:
        v[f"{name}.drift_pct"] = f"{control_drift(without, with_, list(control)):.0f} %"


def typeruns_table(groups):
    """The dropped experiment of calling runs of same-type handlers with one indirect call."""
    rows = [("BM_Notify_Sigreg", "BM_Notify_FunctionLoop", h, "1 handler" if h == 1 else f"{h} handlers of one type")
            for h in (1, 4, 16)]
    rows += [("BM_Notify_SigregMixed", "BM_Notify_FunctionLoopMixed", h, f"{h} handlers of four types in turn")
             for h in (4, 16)]
    rows += [("BM_Notify_FunctionLoop", None, h, f"(loop, {handlers_word(h)}: the same source in both)") for h in (1, 4, 16)]
    rows += [("BM_Notify_FunctionLoopMixed", None, h, f"(loop, {h} handlers of four types: the same source)") for h in (4, 16)]
    return ab_table(groups["typeruns_without"], groups["typeruns_with"], rows,
                    ("Sigreg, handlers", "without runs", "with runs", "loop"))


FLOOR_ROWS = (("BM_Notify_QtDirect", "Qt, direct connections"),
              ("BM_Notify_SigregQt", "Sigreg's facade (`QtRegistry`)"),
              ("BM_Notify_Sigreg", "Sigreg's core (`Registry`)"),
              ("BM_Notify_FunctionLoop", "`std::function` loop"),
              ("BM_Notify_DirectCalls", "direct calls to the body, no dispatch"))


def floor_table(runs):
    """Inline notify against Qt's direct emit, with the direct-calls floor: each row's median in each run (the
    range over the runs) and its ratio to Qt's direct emit in the same run."""
    qt = "BM_Notify_QtDirect"
    lines = ["| row (range over the runs; ÷ Qt direct in the same run) | 1 handler | 4 handlers | 16 handlers |",
             "|---|---:|---:|---:|"]
    for base, label in FLOOR_ROWS:
        cells = []
        for h in (1, 4, 16):
            cell = span([r.t(base, h) for r in runs], unit=" ns")
            if base != qt:
                cell += f" ({span([r.ratio(base, qt, h) for r in runs], 3)})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unroll_table(groups):
    """The dropped experiment of unrolling the walk by four."""
    rows = [("BM_Notify_Sigreg", "BM_Notify_FunctionLoop", h, f"core, {handlers_word(h)} (÷ loop)") for h in (1, 4, 16)]
    rows += [("BM_Notify_SigregMixed", "BM_Notify_FunctionLoopMixed", h,
              f"core, {h} handlers of four types in turn (÷ loop over the same)") for h in (4, 16)]
    rows += [("BM_Notify_SigregQt", "BM_Notify_QtDirect", h, f"facade, {handlers_word(h)} (÷ Qt direct)")
             for h in (1, 4, 16)]
    rows += [(b, None, h, f"({label}, {h_word(h)}: the same source in both)") for b, label, h_word, hs in UNROLL_CONTROLS
             for h in hs]
    return ab_table(groups["unroll_without"], groups["unroll_with"], rows,
                    ("row", "as committed", "unrolled", "reference"))


# (row, label, how its handler counts read, the counts): the rows whose source is the same in both builds.
UNROLL_CONTROLS = (("BM_Notify_FunctionLoop", "loop", lambda h: handlers_word(h), (1, 4, 16)),
                   ("BM_Notify_FunctionLoopMixed", "loop", lambda h: f"{h} handlers of four types", (4, 16)),
                   ("BM_Notify_DirectCalls", "direct calls", lambda h: handlers_word(h), (1, 4, 16)),
                   ("BM_Notify_QtDirect", "Qt direct", lambda h: handlers_word(h), (1, 4, 16)))


def loopalign_table(groups, prefix="loopalign", with_label="loop aligned", without_label="loops as placed"):
    """An alignment experiment (`prefix`: the walk's loop aligned from the header, or "alignloops": every loop
    aligned by the compiler): the facade's rows against the core's, and the core's against the loop's."""
    rows = [("BM_Notify_SigregQt", "BM_Notify_Sigreg", h, f"facade, {handlers_word(h)} (÷ core)") for h in (1, 4, 16)]
    rows += [("BM_Notify_Sigreg", "BM_Notify_FunctionLoop", h, f"core, {handlers_word(h)} (÷ loop)") for h in (1, 4, 16)]
    rows += [("BM_Notify_FunctionLoop", None, h, f"(loop, {handlers_word(h)}: the same source in both)") for h in (1, 4, 16)]
    return ab_table(groups[f"{prefix}_without"], groups[f"{prefix}_with"], rows,
                    ("row", without_label, with_label, "reference"))


ASYNC_ROWS = (("BM_NotifyAsyncPending_Sigreg", "BM_NotifyAsyncPending_HandWritten", "futures pending", (1, 4)),
              ("BM_NotifyAsync_Sigreg", "BM_NotifyAsync_HandWritten", "futures ready", (1, 4, 16)))


def counter_median(runs, base, h, name):
    """A counter of a row (from each run's median row), the median over `runs`."""
    vals = sorted(r.get(base, h)[name] for r in runs if r.get(base, h) and name in r.get(base, h))
    return vals[len(vals) // 2] if vals else None


def asyncbatch_table(groups, prefix="asyncbatch"):
    """Before and after a change of the async path (first: notifyAsync awaiting its walk's pending futures
    together): each build's repetitions pooled, the Sigreg rows ÷ the hand-written reference of the same build,
    with allocations per notify."""
    before, after = groups[f"{prefix}_before"], groups[f"{prefix}_after"]
    rows = [(s, ref, h, f"`{s[3:]}/{h}`, {what}") for s, ref, what, hs in ASYNC_ROWS for h in hs]
    rows += [("BM_NotifySequential_Sigreg", None, h, f"`NotifySequential_Sigreg/{h}`") for h in (1, 4, 16)]
    rows += [(ref, None, h, f"(`{ref[3:]}/{h}`: the same source in both)") for _, ref, _, hs in ASYNC_ROWS for h in hs]
    lines = ab_table(before, after, rows, ("row", "before", "after", "hand-written")).split("\n")
    lines[0] += " allocations per notify, before → after |"
    lines[1] += "---:|"
    for i, (base, _, h, _) in enumerate(rows):
        a, b = counter_median(before, base, h, "allocs_per_notify"), counter_median(after, base, h, "allocs_per_notify")
        lines[i + 2] += f" {a:.1f} → {b:.1f} |" if a is not None and b is not None else " |"
    return "\n".join(lines)


POOL_QUANTILES = ((0.1, "P10"), (0.25, "Q1"), (0.5, "the median"), (0.75, "Q3"))


def pooled_ratios(runs, num, den):
    """num ÷ den at each of POOL_QUANTILES, each row's repetitions pooled over `runs`; rows are
    (benchmark, argument, threads)."""
    (nb, na, nt), (db, da, dt) = num, den
    return [pooled_quantile(runs, nb, q, na, nt) / pooled_quantile(runs, db, q, da, dt) for q, _ in POOL_QUANTILES]


def quantiles_met(runs, num, den, target):
    """Where num ÷ den (pooled) is within `target`, in words."""
    met = [name for (_, name), x in zip(POOL_QUANTILES, pooled_ratios(runs, num, den)) if x <= target]
    if len(met) == len(POOL_QUANTILES):
        return "met at every quantile"
    if not met:
        return "missed at every quantile"
    return f"met at {join_and(met)} only"


POOL_TARGET_ROWS = (
    ("Sigreg ÷ loop, 1 handler", ("BM_Notify_Sigreg", 1, 1), ("BM_Notify_FunctionLoop", 1, 1), "core_1h_vs_loop"),
    ("Sigreg ÷ loop, 4 handlers", ("BM_Notify_Sigreg", 4, 1), ("BM_Notify_FunctionLoop", 4, 1), "core_4h_vs_loop"),
    ("Sigreg 2 threads ÷ 1 thread, 1 handler", ("BM_Notify_Sigreg", 1, 2), ("BM_Notify_Sigreg", 1, 1),
     "core_2threads_vs_1"),
    ("Sigreg 2 threads ÷ 1 thread, 4 handlers", ("BM_Notify_Sigreg", 4, 2), ("BM_Notify_Sigreg", 4, 1),
     "core_2threads_vs_1"),
    ("facade ÷ core, 1 handler", ("BM_Notify_SigregQt", 1, 1), ("BM_Notify_Sigreg", 1, 1), "facade_vs_core"),
    ("facade ÷ core, 4 handlers", ("BM_Notify_SigregQt", 4, 1), ("BM_Notify_Sigreg", 4, 1), "facade_vs_core"),
    ("facade ÷ Qt direct, 1 handler", ("BM_Notify_SigregQt", 1, 1), ("BM_Notify_QtDirect", 1, 1),
     "facade_vs_qt_direct"),
    ("facade ÷ Qt direct, 4 handlers", ("BM_Notify_SigregQt", 4, 1), ("BM_Notify_QtDirect", 4, 1),
     "facade_vs_qt_direct"),
)


def pool_table(runs, targets):
    """The issues' ratio targets over rounds of one command: each row's repetitions pooled over the rounds, the
    ratio taken at the same quantile of both rows (10th percentile, first quartile, median, third quartile).
    Rows in brackets put the plain loop through the same ratio, without a target."""
    loop, qt = "BM_Notify_FunctionLoop", "BM_Notify_QtDirect"
    alone = "BM_Notify_HandlersOnly" # the handlers' own work, no dispatch (only in later sets)
    slot = "BM_Notify_QtDirectSlot"  # Qt's member-slot form (from the fourth set on)
    rows = []
    for label, num, den, key in POOL_TARGET_ROWS:
        rows.append((label, num, den, targets[key]))
        h = num[1]
        if key == "core_2threads_vs_1":
            rows.append((f"(loop 2 threads ÷ 1 thread, {handlers_word(h)})", (loop, h, 2), (loop, h, 1), None))
        elif key == "facade_vs_qt_direct":
            rows.append((f"(loop ÷ Qt direct, {handlers_word(h)})", (loop, h, 1), (qt, h, 1), None))
            if all((alone, h, 1) in r.samples for r in runs):
                rows.append((f"(handlers alone ÷ Qt direct, {handlers_word(h)})", (alone, h, 1), (qt, h, 1), None))
            if all((slot, h, 1) in r.samples for r in runs):
                rows.append((f"(facade ÷ Qt direct to member slots, {handlers_word(h)})", num, (slot, h, 1), None))
    lines = ["| ratio | P10 | Q1 | median | Q3 | target | at the median |", "|---|---:|---:|---:|---:|---:|---|"]
    for label, num, den, target in rows:
        vals = pooled_ratios(runs, num, den)
        cells = " | ".join(f"{x:.2f}×" for x in vals)
        if target is None:
            lines.append(f"| {label} | {cells} | | |")
        else:
            verdict = "met" if vals[2] <= target else "missed"
            lines.append(f"| {label} | {cells} | ≤ {target:g}× | {verdict} |")
    return "\n".join(lines)


def pool_summary(groups, targets):
    """Every pooled set's median ratio per notify target, and the verdict over all sets."""
    names = sorted(g for g in groups if g == "pool" or g.startswith("pool_"))
    labels = {n: "first" if n == "pool" else {"pool_b": "second", "pool_c": "third", "pool_d": "fourth"}.get(n, n) for n in names}
    head = "| target | " + " | ".join(f"{labels[n]} set (`{groups[n][0].entry['commit']}`)" for n in names)
    lines = [head + " | over all sets |", "|---" + "|---:" * len(names) + "|---|"]
    for label, num, den, key in POOL_TARGET_ROWS:
        limit = targets[key]
        vals = [pooled_ratios(groups[n], num, den)[2] for n in names]
        missed = [labels[n] for n, x in zip(names, vals) if x > limit]
        if not missed:
            verdict = "met in every set"
        elif len(missed) == len(names):
            verdict = "missed in every set"
        else:
            verdict = f"missed in the {join_and(missed)} set{'s' if len(missed) > 1 else ''}"
        cells = " | ".join(f"{x:.2f}×" for x in vals)
        lines.append(f"| {label} ≤ {limit:g}× | {cells} | {verdict} |")
    return "\n".join(lines)


def slow_share(runs, base, h, limit):
    """The share of a row's 2-thread repetitions (pooled over `runs`) that took more than `limit` times its
    1-thread median, in per cent."""
    one = pooled_quantile(runs, base, 0.5, h, 1)
    two = [x for r in runs for x in r.samples.get((base, h, 2), [])]
    return 100 * sum(1 for x in two if x > limit * one) / len(two)


def handlers_word(h):
    return "1 handler" if h == 1 else f"{h} handlers"


def compute_values(manifest, perf_dir):
    runs = {k: Run(k, e, perf_dir) for k, e in manifest["runs"].items()}
    groups = {g: [runs[k] for k in ks] for g, ks in manifest["groups"].items()}
    targets, refs = manifest["targets"], manifest.get("references", {})
    v = {}

    for k, r in runs.items():
        v[f"runs.{k}.file"] = r.file
        v[f"runs.{k}.date"] = r.context.get("date", "?")
        v[f"runs.{k}.repetitions"] = "/".join(str(n) for n in r.repetitions())
        v[f"runs.{k}.command"] = fence(wrap_command(r.entry["command"]))
        if "commit" in r.entry:
            v[f"runs.{k}.commit"] = r.entry["commit"]
        if "build" in r.entry:
            v[f"runs.{k}.build"] = fence(wrap_command(r.entry["build"]))
    for g, rs in groups.items():
        v[f"groups.{g}.count"] = word(len(rs))
        v[f"groups.{g}.files"] = join_and(f"`{r.file}`" for r in rs)
        v[f"groups.{g}.commands"] = command_block(manifest, [r.key for r in rs])
    v["commands.full"] = command_block(manifest, ["full"])
    for k, c in manifest.get("commits", {}).items():
        v[f"commits.{k}"] = c
    for k, t in targets.items():
        v[f"targets.{k}"] = f"{t:g}"

    full = runs["full"]
    ctx = full.context
    v["host.cpus"] = str(ctx.get("num_cpus", "?"))
    v["host.ghz"] = f"{ctx.get('mhz_per_cpu', 0) / 1000:g}"
    v["host.mhz"] = str(ctx.get("mhz_per_cpu", "?"))
    v["host.name"] = ctx.get("host_name", "?")
    for k, t in manifest["host"].items():
        v[f"host.{k}"] = t
    v["manifest"] = os.path.relpath(manifest["_path"], REPO)
    cd = chart_data(manifest, perf_dir)
    v["chart.run"] = manifest["runs"][manifest["chart"]["run"]]["file"]
    v["chart.handlers"] = join_and(str(h) for h in sorted({a for s in cd["series"] for a, _ in s["points"]}))
    v["chart.threads"] = word(manifest["chart"].get("threads", 1))
    v["chart.has_64"] = any(a == 64 for s in cd["series"] for a, _ in s["points"])
    v["chart"] = os.path.relpath(os.path.join(REPO, manifest["chart"]["output"]), os.path.join(REPO, "docs"))

    # --- core, full run and its repetitions
    core = groups["core"]
    v["tables.full"] = core_report(full.path)
    v["tables.core_targets"] = "\n".join(core_targets_table(core, targets))
    zero, some = [], []
    short = {"BM_Notify_Sigreg": "Sigreg", "BM_Notify_FunctionLoop": "the plain loop", "BM_Notify_QtDirect": "Qt",
             "BM_Notify_BoostSignals2": "Boost.Signals2", "BM_Notify_Sigc": "libsigc++"}
    for _, base in PEERS:
        a = max_allocs(full, base)
        if a is None:
            continue
        (zero if a == 0 else some).append((short[base], a))
    sentence = f"{join_and(n for n, _ in zero)} allocate nothing per notify." if zero else ""
    for n, a in some:
        sentence += f" {n} allocates {times_word(a)} per emit."
    v["core.alloc_sentence"] = sentence.strip()

    def ratios(arg, thr=1, rs=core):
        return [r.ratio("BM_Notify_Sigreg", "BM_Notify_FunctionLoop", arg, thr) for r in rs]

    def loop_threads(arg):
        return [r.t("BM_Notify_FunctionLoop", arg, 2) / r.t("BM_Notify_FunctionLoop", arg, 1) for r in core]

    v["core.loop_threads_1h"] = join_and(fx(x) for x in loop_threads(1))
    v["core.loop_threads_4h"] = join_and(fx(x) for x in loop_threads(4))
    # How much each run's 1-handler rows spread over their repetitions (a disturbed run shows here).
    v["core.cv_1h"] = join_and(f"{r.cv('BM_Notify_Sigreg', 1):.1f} %" for r in core)
    v["core.loop_cv_1h"] = join_and(f"{r.cv('BM_Notify_FunctionLoop', 1):.1f} %" for r in core)
    v["core.ratio_4_16"] = span(ratios(4) + ratios(16))
    v["core.over_loop_1h"] = span_ns([r.t("BM_Notify_Sigreg", 1) - r.t("BM_Notify_FunctionLoop", 1) for r in core])
    for h in (1, 4, 16):
        v[f"readme.core_{h}h"] = span(ratios(h))

    # --- peers, the full run
    def peer_ratios(base, thr):
        hs = sorted({a for (b, a, t) in full.rows if b == base and t == thr})
        return [full.ratio(base, "BM_Notify_Sigreg", h, thr) for h in hs]

    for key, base in (("qt", "BM_Notify_QtDirect"), ("boost", "BM_Notify_BoostSignals2"), ("sigc", "BM_Notify_Sigc")):
        for thr in (1, 2):
            vals = peer_ratios(base, thr)
            if vals:
                v[f"peers.{key}_{thr}t"] = span_auto(vals, unit="")
                v[f"readme.{key}_{thr}t"] = span(vals, 0, "")
    v["peers.sigc_allocs"] = times_word(max_allocs(full, "BM_Notify_Sigc"))
    hs = sorted(int(h) for h in refs.get("registry_io_notify_ns", {}))
    v["peers.handlers"] = slash(str(h) for h in hs)
    v["peers.registry_io"] = slash(f"{refs['registry_io_notify_ns'][str(h)]:.1f}" for h in hs) + " ns"
    v["peers.sigreg"] = slash(f"{full.t('BM_Notify_Sigreg', h):.1f}" for h in hs) + " ns"

    # --- shared libraries
    sh = runs["notify_shared"]
    v["tables.shared_notify"] = "\n".join(drop_empty_columns(core_notify_table(sh.rows)))
    v["tables.shared_qt"] = "\n".join(drop_empty_columns(qt_inline_table(sh.rows)))
    r1 = sh.ratio("BM_Notify_Sigreg", "BM_Notify_FunctionLoop", 1)
    misses = r1 > targets["core_1h_vs_loop"]
    v["shared.core_1h"] = fx(r1)
    v["shared.core_verb"] = "misses" if misses else "meets"
    facade_less = sh.t("BM_Notify_SigregQt", 1) < sh.t("BM_Notify_Sigreg", 1)
    v["shared.facade_word"] = "less" if facade_less else "more"
    v["shared.puzzle"] = misses and facade_less

    # Sets of rounds of the pool command: "pool", and later sets "pool_b", ... (same variables, own prefix).
    for name in sorted(g for g in groups if g == "pool" or g.startswith("pool_")):
        pool = groups[name]
        v[f"tables.{name}"] = pool_table(pool, targets)
        v[f"{name}.rounds"] = word(len(pool))
        v[f"{name}.samples"] = str(sum(r.repetitions()[0] for r in pool))
        v[f"{name}.commit"] = pool[0].entry["commit"]
        v[f"{name}.loop_1h_ns"] = f"{pooled_quantile(pool, 'BM_Notify_FunctionLoop', 0.5):.2f} ns"
        for key, num, den, target in (
                ("core_1h", ("BM_Notify_Sigreg", 1, 1), ("BM_Notify_FunctionLoop", 1, 1), "core_1h_vs_loop"),
                ("facade_core_4h", ("BM_Notify_SigregQt", 4, 1), ("BM_Notify_Sigreg", 4, 1), "facade_vs_core"),
                ("loop_qt_4h", ("BM_Notify_FunctionLoop", 4, 1), ("BM_Notify_QtDirect", 4, 1),
                 "facade_vs_qt_direct"),
                ("core_2t_1h", ("BM_Notify_Sigreg", 1, 2), ("BM_Notify_Sigreg", 1, 1), "core_2threads_vs_1"),
                ("loop_2t_1h", ("BM_Notify_FunctionLoop", 1, 2), ("BM_Notify_FunctionLoop", 1, 1),
                 "core_2threads_vs_1"),
                ("core_2t_4h", ("BM_Notify_Sigreg", 4, 2), ("BM_Notify_Sigreg", 4, 1), "core_2threads_vs_1"),
                ("loop_2t_4h", ("BM_Notify_FunctionLoop", 4, 2), ("BM_Notify_FunctionLoop", 4, 1),
                 "core_2threads_vs_1")):
            v[f"{name}.{key}"] = quantiles_met(pool, num, den, targets[target])
        for key, num, den in (("core_1h_median", ("BM_Notify_Sigreg", 1, 1), ("BM_Notify_FunctionLoop", 1, 1)),
                              ("core_2t_1h_median", ("BM_Notify_Sigreg", 1, 2), ("BM_Notify_Sigreg", 1, 1)),
                              ("facade_qt_4h_median", ("BM_Notify_SigregQt", 4, 1), ("BM_Notify_QtDirect", 4, 1)),
                              ("loop_qt_4h_median", ("BM_Notify_FunctionLoop", 4, 1), ("BM_Notify_QtDirect", 4, 1)),
                              ("alone_qt_4h_median", ("BM_Notify_HandlersOnly", 4, 1), ("BM_Notify_QtDirect", 4, 1)),
                              ("core_4h_median", ("BM_Notify_Sigreg", 4, 1), ("BM_Notify_FunctionLoop", 4, 1)),
                              ("facade_core_4h_median", ("BM_Notify_SigregQt", 4, 1), ("BM_Notify_Sigreg", 4, 1)),
                              ("alone_4h_ns", ("BM_Notify_HandlersOnly", 4, 1), None),
                              ("loop_4h_ns", ("BM_Notify_FunctionLoop", 4, 1), None),
                              ("qt_4h_ns", ("BM_Notify_QtDirect", 4, 1), None),
                              ("core_2t_4h_median", ("BM_Notify_Sigreg", 4, 2), ("BM_Notify_Sigreg", 4, 1)),
                              ("loop_2t_1h_median", ("BM_Notify_FunctionLoop", 1, 2),
                               ("BM_Notify_FunctionLoop", 1, 1)),
                              ("loop_2t_4h_median", ("BM_Notify_FunctionLoop", 4, 2),
                               ("BM_Notify_FunctionLoop", 4, 1)),
                              ("slot_4h_ns", ("BM_Notify_QtDirectSlot", 4, 1), None),
                              ("slot_1h_ns", ("BM_Notify_QtDirectSlot", 1, 1), None),
                              ("qt_1h_ns", ("BM_Notify_QtDirect", 1, 1), None),
                              ("slot_vs_qt_4h_median", ("BM_Notify_QtDirectSlot", 4, 1), ("BM_Notify_QtDirect", 4, 1)),
                              ("facade_slot_1h_median", ("BM_Notify_SigregQt", 1, 1), ("BM_Notify_QtDirectSlot", 1, 1)),
                              ("facade_slot_4h_median", ("BM_Notify_SigregQt", 4, 1),
                               ("BM_Notify_QtDirectSlot", 4, 1))):
            if not all(num in r.samples and (den is None or den in r.samples) for r in pool):
                continue
            if den is None:
                v[f"{name}.{key}"] = f"{pooled_quantile(pool, num[0], 0.5, num[1], num[2]):.2f} ns"
            else:
                v[f"{name}.{key}"] = f"{pooled_ratios(pool, num, den)[2]:.2f}×"
        shares = [slow_share(pool, b, h, targets["core_2threads_vs_1"])
                  for b in ("BM_Notify_Sigreg", "BM_Notify_FunctionLoop") for h in (1, 4)]
        v[f"{name}.slow_2t_share"] = f"{min(shares):.0f}–{max(shares):.0f} %"
        if all(("BM_Notify_HandlersOnly", 4, 1) in r.samples for r in pool):
            # What 0.15× of Qt's 4-handler emit leaves for dispatching 4 calls, after the handlers' own work.
            qt4 = pooled_quantile(pool, "BM_Notify_QtDirect", 0.5, 4, 1)
            alone4 = pooled_quantile(pool, "BM_Notify_HandlersOnly", 0.5, 4, 1)
            budget = targets["facade_vs_qt_direct"] * qt4 - alone4
            v[f"{name}.dispatch_budget_4h"] = f"{budget:.2f} ns"
            v[f"{name}.dispatch_budget_per_call"] = f"{budget / 4:.2f} ns"
            v[f"{name}.qt_4h_target_ns"] = f"{targets['facade_vs_qt_direct'] * qt4:.2f} ns"
    v["tables.pool_summary"] = pool_summary(groups, targets)
    for prefix, with_label in (("alignloops", "every loop aligned"), ("loopalign", "walk's loop aligned")):
        if f"{prefix}_without" in groups and f"{prefix}_with" in groups:
            without, with_ = groups[f"{prefix}_without"], groups[f"{prefix}_with"]
            v[f"tables.{prefix}"] = loopalign_table(groups, prefix, with_label)
            ab_counts(v, prefix, without, with_, [("BM_Notify_FunctionLoop", h) for h in (1, 4, 16)])
    if all(f"regmix_{b}" in groups for b in ("none", "spares", "range")):
        v["tables.regmix"] = regmix_table(groups, targets["single_adds_10000_ns"])
        ab_counts(v, "regmix", groups["regmix_none"])
    if "range_without" in groups and "range_with" in groups:
        without, with_ = groups["range_without"], groups["range_with"]
        v["tables.range"] = loopalign_table(groups, "range", "with the range", "without")
        ab_counts(v, "range", without, with_, [("BM_Notify_FunctionLoop", h) for h in (1, 4, 16)])
        for tag, build in (("without", without), ("with", with_)):
            v[f"range.facade_4h_{tag}_ns"] = f"{pooled_quantile(build, 'BM_Notify_SigregQt', 0.5, 4):.2f} ns"
            v[f"range.facade_4h_{tag}_vs_core"] = fx(pooled_ratio(build, "BM_Notify_SigregQt", "BM_Notify_Sigreg", 4))
            for h in (1, 4):
                v[f"range.core_{h}h_{tag}_vs_loop"] = fx(pooled_ratio(build, "BM_Notify_Sigreg",
                                                                      "BM_Notify_FunctionLoop", h))
    if "busrange_without" in groups and "busrange_with" in groups:
        without, with_ = groups["busrange_without"], groups["busrange_with"]
        ab_counts(v, "busrange", without)
        for h in (1, 4, 16):
            for base, key in (("BM_BusEmit_Handlers", "emit"), ("BM_Notify_Sigreg", "notify")):
                v[f"busrange.{key}_{h}h_change"] = fx(pooled_change(without, with_, base, h))
    if "unroll_without" in groups and "unroll_with" in groups:
        without, with_ = groups["unroll_without"], groups["unroll_with"]
        qt, direct, loop = "BM_Notify_QtDirect", "BM_Notify_DirectCalls", "BM_Notify_FunctionLoop"
        core, facade = "BM_Notify_Sigreg", "BM_Notify_SigregQt"
        limit = targets["facade_vs_qt_direct"]
        # The floor: each run of the build as committed on its own (a range over the runs).
        v["tables.floor"] = floor_table(without)
        v["floor.commit"] = without[0].entry["commit"]
        v["floor.runs"] = word(len(without))
        per_run = lambda f, prec=2, unit="×": span([f(r) for r in without], prec, unit)
        misses = {}
        for base, key in ((direct, "direct"), (loop, "loop"), (core, "core"), (facade, "facade")):
            v[f"floor.{key}_qt_4h"] = per_run(lambda r: r.ratio(base, qt, 4), 3)
            misses[key] = all(r.ratio(base, qt, 4) > limit for r in without)
        v["floor.direct_misses_4h"] = misses["direct"]
        v["floor.facade_misses_4h"] = misses["facade"]
        v["floor.all_miss_4h"] = all(misses.values())
        v["floor.qt_4h_ns"] = per_run(lambda r: r.t(qt, 4), unit=" ns")
        v["floor.target_4h_ns"] = per_run(lambda r: limit * r.t(qt, 4), unit=" ns")
        v["floor.direct_4h_ns"] = per_run(lambda r: r.t(direct, 4), unit=" ns")
        v["floor.direct_per_call_ns"] = per_run(lambda r: (r.t(direct, 16) - r.t(direct, 4)) / 12, unit=" ns")
        v["floor.facade_over_direct_1h_ns"] = per_run(lambda r: r.t(facade, 1) - r.t(direct, 1), unit=" ns")
        for h in (1, 4, 16):
            v[f"floor.facade_direct_{h}h"] = per_run(lambda r: r.ratio(facade, direct, h))
        for h in (4, 16):
            v[f"floor.loop_direct_{h}h"] = per_run(lambda r: r.ratio(loop, direct, h))
        # The unrolling experiment: each build's rounds pooled.
        v["tables.unroll"] = unroll_table(groups)
        ab_counts(v, "unroll", without, with_, [(b, h) for b, _, _, hs in UNROLL_CONTROLS for h in hs])
        v["unroll.facade_1h_with_vs_core"] = fx(pooled_ratio(with_, facade, core, 1))
        for tag, build in (("without", without), ("with", with_)):
            v[f"unroll.core_1h_{tag}_vs_loop"] = fx(pooled_ratio(build, core, loop, 1))
            v[f"unroll.core_4h_{tag}_vs_qt"] = fx(pooled_ratio(build, core, qt, 4), 3)
            for h in (1, 4):
                v[f"unroll.facade_{h}h_{tag}_vs_qt"] = fx(pooled_ratio(build, facade, qt, h), 3)
            for h in (4, 16):
                v[f"unroll.mixed_{h}h_{tag}_vs_loop"] = fx(pooled_ratio(build, "BM_Notify_SigregMixed",
                                                                       "BM_Notify_FunctionLoopMixed", h))
    if "typeruns_without" in groups and "typeruns_with" in groups:
        w, with_ = groups["typeruns_without"], groups["typeruns_with"]
        v["tables.typeruns"] = typeruns_table(groups)
        ab_counts(v, "typeruns", w, with_, [("BM_Notify_FunctionLoop", h) for h in (1, 4, 16)]
                  + [("BM_Notify_FunctionLoopMixed", h) for h in (4, 16)])
        mixed = [pooled_ratio(w, "BM_Notify_SigregMixed", "BM_Notify_FunctionLoopMixed", h) for h in (4, 16)]
        same = [pooled_ratio(w, "BM_Notify_Sigreg", "BM_Notify_FunctionLoop", h) for h in (4, 16)]
        for base, key in (("BM_Notify_Sigreg", "same"), ("BM_Notify_SigregMixed", "mixed")):
            v[f"typeruns.{key}_4h_change"] = fx(pooled_change(w, with_, base, 4))
        v["typeruns.mixed_vs_same"] = (f"{mixed[0]:.2f}× and {mixed[1]:.2f}× the loop with 4 and 16 handlers of four "
                                       f"types, against {same[0]:.2f}× and {same[1]:.2f}× with one type")
    if "asyncbatch_before" in groups and "asyncbatch_after" in groups:
        before, after = groups["asyncbatch_before"], groups["asyncbatch_after"]
        v["tables.asyncbatch"] = asyncbatch_table(groups)
        ab_counts(v, "asyncbatch", before, after, [(ref, h) for _, ref, _, hs in ASYNC_ROWS for h in hs])
        for tag, build in (("before", before), ("after", after)):
            for h in (1, 4):
                sig = pooled_quantile(build, "BM_NotifyAsyncPending_Sigreg", 0.5, h)
                ref = pooled_quantile(build, "BM_NotifyAsyncPending_HandWritten", 0.5, h)
                v[f"asyncbatch.pending_{h}h_{tag}"] = f"{sig / ref:.2f}×"
                allocs = counter_median(build, "BM_NotifyAsyncPending_Sigreg", h, "allocs_per_notify")
                v[f"asyncbatch.pending_{h}h_{tag}_allocs"] = f"{allocs:.1f}"
    if "futalloc_before" in groups and "futalloc_after" in groups:
        before, after = groups["futalloc_before"], groups["futalloc_after"]
        v["tables.futalloc"] = asyncbatch_table(groups, "futalloc")
        ab_counts(v, "futalloc", before, after, [(ref, h) for _, ref, _, hs in ASYNC_ROWS for h in hs])
        for h in (1, 4):
            change = lambda row: pooled_change(before, after, row, h)
            v[f"futalloc.pending_{h}h_change"] = f"{change('BM_NotifyAsyncPending_Sigreg'):.2f}×"
            v[f"futalloc.pending_ref_{h}h_change_pct"] = f"{(change('BM_NotifyAsyncPending_HandWritten') - 1) * 100:+.0f} %".replace("-", "−")
        for tag, build in (("before", before), ("after", after)):
            for base, key in (("BM_NotifyAsync_Sigreg", "async"), ("BM_NotifySequential_Sigreg", "seq")):
                for h in (1, 4):
                    t = pooled_quantile(build, base, 0.5, h)
                    v[f"futalloc.{key}_{h}h_{tag}"] = f"{t:.0f} ns"
                    v[f"futalloc.{key}_{h}h_{tag}_allocs"] = f"{counter_median(build, base, h, 'allocs_per_notify'):.0f}"
            for h in (1, 4):
                sig = pooled_quantile(build, "BM_NotifyAsyncPending_Sigreg", 0.5, h)
                v[f"futalloc.pending_{h}h_{tag}"] = f"{sig / pooled_quantile(build, 'BM_NotifyAsyncPending_HandWritten', 0.5, h):.2f}×"
            ref = pooled_quantile(build, "BM_NotifyAsync_HandWritten", 0.5, 1)
            v[f"futalloc.async_1h_{tag}_vs_ref"] = f"{pooled_quantile(build, 'BM_NotifyAsync_Sigreg', 0.5, 1) / ref:.2f}×"
    if "modcopy_before" in groups and "modcopy_after" in groups:
        v["tables.modcopy"] = modcopy_table(groups)
        v["modcopy.rounds"] = word(len(groups["modcopy_before"]))
        v["modcopy.samples"] = str(sum(r.repetitions()[0] for r in groups["modcopy_before"]))

    # --- Qt facade
    qt, qtruns = runs["qt"], groups["qt"]
    v["tables.qt"] = qt_report([r.path for r in qtruns], refs, pending_path=runs["qt_pending"].path)
    per_run = [qt_targets(r.rows) for r in qtruns]
    met_all, missed = [], []
    flags = {}
    for i, (label, _, limit, unit) in enumerate(per_run[0]):
        vals = [t[i][1] for t in per_run]
        k, n = met_count(vals, limit)
        prec = 3
        rng = span(vals, prec, unit)
        if k == n:
            met_all.append(f"{label} (≤ {limit:g}{unit}: {rng})")
        else:
            missed.append(f"- **{label} ≤ {limit:g}{unit}:** {join_and(f'{x:.{prec}f}{unit}' for x in vals)}, "
                          f"met {in_runs(k, n)}.")
        flags[label] = k < n
    v["qt.met_all"] = "; ".join(met_all) if met_all else "none"
    v["qt.missed"] = "\n".join(missed)
    v["qt.any_missed"] = bool(missed)
    v["qt.miss_facade_1h"] = flags["facade inline ÷ core, 1 handler"]
    v["qt.miss_cross"] = any(flags[k] for k in flags if k.startswith("CrossThread Sigreg ÷"))
    v["qt.miss_facade_qt"] = any(flags[k] for k in flags if k.startswith("facade inline ÷ Qt direct"))
    # What a plain std::function loop over the same handlers costs against Qt, in the full run.
    v["qt.loop_qt"] = slash(fx(full.ratio("BM_Notify_FunctionLoop", "BM_Notify_QtDirect", h), 3) for h in (1, 4))
    v["qt.core_qt"] = slash(fx(full.ratio("BM_Notify_Sigreg", "BM_Notify_QtDirect", h), 3) for h in (1, 4))
    v["qt.facade_1h_diff"] = span_ns([r.t("BM_Notify_SigregQt", 1) - r.t("BM_Notify_Sigreg", 1) for r in qtruns])
    v["qt.notify_1h"] = span_ns([r.t(b, 1) for r in qtruns for b in ("BM_Notify_Sigreg", "BM_Notify_SigregQt")])
    cross = lambda r, n: r.ratio("BM_CrossThread_Sigreg", "BM_CrossThread_QtQueued", n)  # noqa: E731
    cvs = [r.cv(b, n) for r in qtruns for b in ("BM_CrossThread_Sigreg", "BM_CrossThread_QtQueued") for n in (64, 1024)]
    v["qt.cross_cv"] = span(cvs, 0, " %", " to ")
    c64 = [cross(r, 64) for r in qtruns]
    c1024 = [cross(r, 1024) for r in qtruns]
    v["qt.cross_64_factor"] = f"{max(c64) / min(c64):.0f}"
    v["qt.cross_64_median"] = fx(median(c64))
    v["qt.cross_1024_median"] = fx(median(c1024))
    cross_lim = 0.5
    v["qt.cross_64_median_word"] = "just over the target" if median(c64) > cross_lim else "within the target"
    v["qt.cross_64_unshown"] = median(c64) > cross_lim
    v["readme.qt_cross_1024"] = span(c1024)
    v["readme.qt_cross_64"] = span(c64)
    fc = [r.ratio("BM_Notify_SigregQt", "BM_Notify_Sigreg", h) for r in qtruns for h in (1, 4)]
    fq = [r.ratio("BM_Notify_SigregQt", "BM_Notify_QtDirect", h) for r in qtruns for h in (1, 4)]
    v["qt.facade_core"] = span(fc)
    v["qt.facade_qt"] = span(fq, 3)
    aw = [r.ratio("BM_NotifyAsync_Sigreg", "BM_NotifyAsync_HandWritten", 1) for r in qtruns]
    v["qt.async_whenall"] = span(aw)
    pend = runs["qt_pending"]
    for h in (1, 4):
        v[f"qt.pending_{h}h"] = fx(pend.ratio("BM_NotifyAsyncPending_Sigreg", "BM_NotifyAsyncPending_HandWritten", h), 1)
    v["qt.burst1"] = fx(cross(qt, 1))
    v["qt.qt_queued_allocs"] = word(round(qt.get("BM_CrossThread_QtQueued", 64).get("allocs_per_event", 0)))
    v["qt.qt_queued_allocs_n"] = f"{qt.get('BM_CrossThread_QtQueued', 64).get('allocs_per_event', 0):g}"
    a, w = qt.get("BM_NotifyAsync_Sigreg", 1), qt.get("BM_NotifyAsync_HandWritten", 1)
    v["qt.async_1h"] = fmt_ns(ns(a))
    v["qt.async_1h_allocs"] = f"{a.get('allocs_per_notify', 0):.3g}"
    v["qt.whenall_1h"] = fmt_ns(ns(w))
    v["qt.whenall_1h_allocs"] = f"{w.get('allocs_per_notify', 0):.3g}"
    for kind, base in (("async", "BM_NotifyAsync_Sigreg"), ("sequential", "BM_NotifySequential_Sigreg")):
        ref = registry_io(refs, kind)
        v[f"qt.registry_io_{kind}"] = span([qt.t(base, h) / ref[h] for h in sorted(ref) if qt.t(base, h)],
                                           1 if kind == "async" else 0)

    # --- layout sensitivity and the quiet run
    lazy = runs["notify_lazyapp"]
    for h in (1, 4):
        v[f"lazy.core_{h}h"] = fmt_ns(lazy.t("BM_Notify_Sigreg", h))
        v[f"lazy.facade_{h}h"] = fmt_ns(lazy.t("BM_Notify_SigregQt", h))
        v[f"lazy.loop_{h}h"] = fmt_ns(lazy.t("BM_Notify_FunctionLoop", h))
    quiet = runs["qt_quiet"]
    for n in (1, 64, 1024):
        v[f"quiet.cross_{n}"] = fx(cross(quiet, n))
    v["quiet.allocs"] = f"{max(quiet.get('BM_CrossThread_Sigreg', n).get('allocs_per_event', 0) for n in (1, 64, 1024)):.2g}"
    holds = all(cross(quiet, n) <= cross_lim for n in (64, 1024))
    v["quiet.verdict"] = "The burst targets hold there" if holds else "The burst targets are not met there either"

    # --- QML
    qml, qmlruns = runs["qml"], groups["qml"]
    v["tables.qml"] = qml_report([r.path for r in qmlruns])
    v["qml.load"] = span([r.context.get("load_avg", [None])[0] for r in qmlruns], 2, "")
    fn = qml.get("BM_Qml_NotifyHandlerFunctions", 16)
    v["qml.fn_allocs_per_call"] = word(round(fn.get("allocs_per_notify", 0) / 16))
    qr = lambda r, h: r.ratio("BM_Qml_NotifyHandlers", "BM_Qml_SignalHandlers", h)  # noqa: E731
    r16 = [qr(r, 16) for r in qmlruns]
    v["qml.r16"] = span(r16)
    v["qml.r16_faster"] = in_runs(sum(1 for x in r16 if x < 1), len(r16))
    r1 = [qr(r, 1) for r in qmlruns]
    v["qml.r1"] = span(r1)
    lo, hi = min(r1), max(r1)
    if lo < 1 < hi:
        v["qml.r1_words"] = f"between {(1 - lo) * 100:.0f} % faster than the QML signal and {(hi - 1) * 100:.0f} % slower"
    elif hi <= 1:
        v["qml.r1_words"] = f"{(1 - hi) * 100:.0f} to {(1 - lo) * 100:.0f} % faster than the QML signal"
    else:
        v["qml.r1_words"] = f"{(lo - 1) * 100:.0f} to {(hi - 1) * 100:.0f} % slower than the QML signal"
    fn1 = [r.t("BM_Qml_NotifyHandlerFunctions", 1) for r in qmlruns]
    on1 = [r.t("BM_Qml_NotifyHandlers", 1) for r in qmlruns]
    faster = sum(1 for a, b in zip(fn1, on1) if a < b)
    v["qml.fn_faster"] = "consistently faster" if faster == len(fn1) else (
        "not consistently faster" if faster else "faster in no run")
    v["qml.fn_1h"] = span_in(fn1, 1e3, "µs", 2)
    v["qml.on_1h"] = span_in(on1, 1e3, "µs", 2)
    churn = [r.ratio("BM_Qml_HandlerChurn", "BM_Qml_ConnectionsChurn", n) for r in qmlruns for n in (100, 1000)]
    v["qml.churn"] = span(churn)
    per_obj = [r.t(b, n) / n for r in qmlruns for b in ("BM_Qml_HandlerChurn", "BM_Qml_ConnectionsChurn")
               for n in (100, 1000)]
    v["qml.churn_per_object"] = span_in(per_obj, 1e3, "µs")
    allocs = {round(r.get(b, n).get("allocs_per_object", 0)) for r in qmlruns
              for b in ("BM_Qml_HandlerChurn", "BM_Qml_ConnectionsChurn") for n in (100, 1000)}
    v["qml.churn_allocs"] = "/".join(str(a) for a in sorted(allocs))
    v["qml.churn_directions"] = "in both directions" if min(churn) < 1 < max(churn) else (
        "always in the Registry's favour" if max(churn) < 1 else "always against the Registry")
    labels = {"BM_Qml_SignalHandlers": "the QML signal", "BM_Qml_NotifyHandlers": "`onNotified`",
              "BM_Qml_NotifyHandlerFunctions": "the `handler` function",
              "BM_Qml_HandlerChurn": "the churn of `RegistryHandler`s", "BM_Qml_ConnectionsChurn": "the churn of `Connections`"}
    spread = []
    for key in qml.rows:
        ts = [r.t(*key) for r in qmlruns]
        if None not in ts:
            spread.append((max(ts) / min(ts), key, ts))
    worst, key, ts = max(spread)
    base, arg, _ = key
    where = f"at {handlers(arg)}" if "Churn" not in base else f"of {arg}"
    v["qml.spread"] = fx(worst, 1)
    v["qml.spread_example"] = (f"{labels.get(base, base)} {where} read {fmt_ns(ts[0])} in the first run and "
                               f"{join_and(fmt_ns(t) for t in ts[1:])} in the others")
    v["qml.cv"] = f"{max(r.cv(*k) for r in qmlruns for k in r.agg['cv']):.0f}"
    on16, sig16 = qml.t("BM_Qml_NotifyHandlers", 16) / 16, qml.t("BM_Qml_SignalHandlers", 16) / 16
    v["qml.per_handler_16"] = f"{fmt_ns(on16)} and {fmt_ns(sig16)}"
    facade16 = qt.t("BM_Notify_SigregQt", 16) / 16
    v["qml.facade_per_handler"] = fmt_ns(facade16)
    v["qml.vs_facade"] = f"{min(on16, sig16) / facade16:.0f}"

    # --- bus
    bus, busruns = runs["bus"], groups["bus"]
    v["tables.bus"] = bus_report([r.path for r in busruns])
    full_bus = [r for r in busruns if r.get("BM_BusBroadcast_Receivers", 0)]
    v["bus.full_count"] = word(len(full_bus))
    bc = lambda r, peer, mode: (per_event(r.get("BM_BusBroadcast_Receivers", mode)) /  # noqa: E731
                                per_event(r.get(peer, mode)))
    st_dq = [bc(r, "BM_BusBroadcast_MutexDeque", 0) for r in full_bus]
    st_mc = [bc(r, "BM_BusBroadcast_MoodyCamel", 0) for r in full_bus]
    v["bus.st_deque"] = span(st_dq)
    v["bus.st_deque_runs"] = in_runs(sum(1 for x in st_dq if x < 1), len(st_dq))
    v["bus.st_moody"] = span(st_mc)
    v["bus.deque_allocs"] = f"{bus.get('BM_BusBroadcast_MutexDeque', 0).get('allocs_per_event', 0):.3g}"
    sig_allocs = max(r.get("BM_BusBroadcast_Receivers", m).get("allocs_per_event", 0) for r in full_bus for m in (0, 1))
    v["bus.sigreg_allocs"] = "nothing" if sig_allocs == 0 else f"{sig_allocs:.3g}"
    v["bus.mt_cv"] = f"{max(r.cv(b, 1) for r in full_bus for _, b in BROADCAST):.0f}"
    v["bus.mt_deque"] = span([bc(r, "BM_BusBroadcast_MutexDeque", 1) for r in full_bus])
    v["bus.mt_moody"] = span([bc(r, "BM_BusBroadcast_MoodyCamel", 1) for r in full_bus], 1)
    emit = lambda r, h, t: r.ratio("BM_BusEmit_Handlers", "BM_Notify_Sigreg", h, t)  # noqa: E731
    e1 = [emit(r, 1, t) for r in busruns for t in (1, 2)]
    e4 = [emit(r, 4, t) for r in busruns for t in (1, 2)]
    e16 = [emit(r, 16, 1) for r in busruns]
    k1, n1 = met_count(e1, BUS_EMIT_TARGET)
    k16, n16 = met_count(e16, BUS_EMIT_TARGET)
    k4, n4 = met_count(e4, BUS_EMIT_TARGET)
    v["bus.target"] = f"{BUS_EMIT_TARGET:g}"
    v["bus.emit_1h_verdict"] = ("is not met with one handler" if k1 == 0 else
                                "is met with one handler" if k1 == n1 else
                                f"is met with one handler in only {k1} of {n1} cases")
    v["bus.emit_1h"] = span(e1)
    v["bus.emit_16h"] = span(e16)
    v["bus.emit_16h_runs"] = in_runs(k16, n16)
    v["bus.emit_4h"] = span(e4)
    v["bus.emit_4h_words"] = "the runs disagree" if 0 < k4 < n4 else ("met in every case" if k4 == n4 else "not met")
    v["bus.sender_1h"] = span([r.ratio("BM_BusEmit_Sender", "BM_Notify_Sigreg", 1) for r in busruns])
    # The same emit rows at the commit before the direct slots, run right after bus_emit_only.
    before, after = runs["bus_before"], runs["bus_emit_only"]
    for h in (1, 4, 16):
        v[f"bus.before_{h}h"] = slash(fx(emit(before, h, t)) for t in (1, 2))
        v[f"bus.after_{h}h"] = slash(fx(emit(after, h, t)) for t in (1, 2))
    v["bus.before_sender_1h"] = fx(before.ratio("BM_BusEmit_Sender", "BM_Notify_Sigreg", 1))
    v["bus.after_sender_1h"] = fx(after.ratio("BM_BusEmit_Sender", "BM_Notify_Sigreg", 1))
    v["runs.bus_before.commit"] = before.entry["commit"]
    quiet_rows = [r for r in busruns if r.get("BM_BusEmit_NoListener", 0)]
    v["bus.noop_runs"] = word(len(quiet_rows))
    for a in (0, 1):
        v[f"bus.noop_{a}"] = span_ns([r.t("BM_BusEmit_NoListener", a) for r in quiet_rows])
    noop_allocs = max(r.get("BM_BusEmit_NoListener", a).get("allocs_per_emit", 0) for r in quiet_rows for a in (0, 1))
    v["bus.noop_allocs"] = "no allocation in any run" if noop_allocs == 0 else f"up to {noop_allocs:g} allocations"
    # "... holds with 16 handlers (...) but not with one (...)", and its variants.
    v["readme.bus_16h_word"] = ("holds" if k16 == n16 else f"holds {in_runs(k16, n16)}") if k16 else "does not hold"
    one = "" if k1 == 0 else ("" if k1 == n1 else f" {in_runs(k1, n1)}")
    v["readme.bus_1h_word"] = ("but not" if k1 == 0 else f"and{one}") if k16 else ("nor" if k1 == 0 else f"but{one}")
    return v


# Templates ------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-]+)(\|cap)?\s*\}\}")
BLOCK = re.compile(r"\{\{([?!])([\w.\-]+)\}\}(.*?)\{\{/\2\}\}", re.S)


def fill(template, values, where):
    """Substitute {{name}}; keep {{?name}}...{{/name}} where the value is true, {{!name}}... where false."""
    def block(m):
        if m[2] not in values:
            raise SystemExit(f"{where}: no value named {m[2]!r}")
        keep = bool(values[m[2]]) == (m[1] == "?")
        return m[3] if keep else ""

    prev = None
    while prev != template:
        prev, template = template, BLOCK.sub(block, template)

    def one(m):
        if m[1] not in values:
            raise SystemExit(f"{where}: no value named {m[1]!r}")
        text = str(values[m[1]])
        return text[:1].upper() + text[1:] if m[2] else text

    text = PLACEHOLDER.sub(one, template)
    # A block left out on a line of its own leaves an empty line: squeeze runs of them.
    return reflow(re.sub(r"\n{3,}", "\n\n", text))


WIDTH = 116
# A line must not start with what Markdown would read as a list item, a heading or a quote.
LINE_START = re.compile(r"^(?:[-+*>#]|\d+[.)])$")


def wrap(words, first, rest, width=WIDTH):
    lines, line, empty = [], first, True
    for w in words:
        if empty:
            line, empty = line + w, False
        elif len(line) + 1 + len(w) > width and not LINE_START.match(w):
            lines.append(line)
            line = rest + w
        else:
            line = f"{line} {w}"
    lines.append(line)
    return lines


def reflow(text):
    """Re-wrap the prose paragraphs and list items at WIDTH; tables, code, headings, comments stay."""
    out, para, fenced, comment = [], [], False, False

    def flush():
        if not para:
            return
        m = re.match(r"^(\s*(?:[-*] )?)", para[0])
        first = m[1]
        words = " ".join(p.strip() for p in para)[len(first.strip()):].split()
        out.extend(wrap(words, first, " " * len(first)))
        para.clear()

    for line in text.split("\n"):
        if fenced or comment:
            out.append(line)
            fenced = fenced and not line.startswith("```")
            comment = comment and "-->" not in line
            continue
        if line.startswith("```") or line.startswith("<!--") or line.startswith(("|", "#", "!")) or not line.strip():
            flush()
            out.append(line)
            fenced = line.startswith("```")
            comment = line.startswith("<!--") and "-->" not in line
            continue
        if re.match(r"^[-*] ", line):
            flush()
        para.append(line)
    flush()
    return "\n".join(out)


def render_texts(manifest_path):
    """What render writes: {path: text} for the document and the README, plus the chart's data."""
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["_path"] = os.path.abspath(manifest_path)
    perf_dir = os.path.dirname(os.path.abspath(manifest_path))
    values = compute_values(manifest, perf_dir)
    out = {}
    tpl = os.path.join(REPO, manifest["template"])
    with open(tpl) as f:
        out[os.path.join(REPO, manifest["output"])] = fill(f.read(), values, manifest["template"])
    rd = manifest.get("readme")
    if rd:
        with open(os.path.join(REPO, rd["template"])) as f:
            block = fill(f.read(), values, rd["template"]).strip("\n")
        path = os.path.join(REPO, rd["path"])
        with open(path) as f:
            readme = f.read()
        b, e = readme.find(rd["begin"]), readme.find(rd["end"])
        if b < 0 or e < b:
            raise SystemExit(f"{rd['path']}: the markers {rd['begin']!r} ... {rd['end']!r} are missing")
        out[path] = readme[:b] + rd["begin"] + "\n" + block + "\n" + readme[e:]
    return manifest, out, chart_data(manifest, perf_dir)


# The chart --------------------------------------------------------------------------------

def chart_data(manifest, perf_dir):
    """Everything the chart shows, as plain data (so that check can hash it without matplotlib)."""
    c = manifest["chart"]
    run = Run(c["run"], manifest["runs"][c["run"]], perf_dir)
    thr = c.get("threads", 1)
    series = []
    for label, base in PEERS:
        pts = sorted((a, round(row_ns(b), 3)) for (b_, a, t), b in run.rows.items() if b_ == base and t == thr)
        if pts:
            series.append({"label": label, "points": pts})
    return {
        "title": f"Sigreg and its peers: cost of one notify against handler count ({thr} notifying thread"
                 f"{'s' if thr > 1 else ''})",
        "caption": (f"{run.file}: {host_line(run.context)} Median CPU time per notify of "
                    f"{'/'.join(str(n) for n in run.repetitions())} repetitions."),
        "series": series,
        "output": os.path.join(REPO, c["output"]),
    }


def chart_digest(data):
    payload = json.dumps({k: data[k] for k in ("title", "caption", "series")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def draw_chart(data):
    import matplotlib  # only render needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=100)
    markers = ["o", "s", "^", "D", "v"]
    xs = sorted({a for s in data["series"] for a, _ in s["points"]})
    for i, s in enumerate(data["series"]):
        x, y = zip(*s["points"])
        ax.plot(x, y, marker=markers[i % len(markers)], linewidth=2.2 if s["label"] == "Sigreg" else 1.4,
                label=s["label"], zorder=3 if s["label"] == "Sigreg" else 2)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.minorticks_off()
    lo = min(y for s in data["series"] for _, y in s["points"])
    hi = max(y for s in data["series"] for _, y in s["points"])
    ticks = [m * 10 ** e for e in range(-1, 7) for m in (1, 2, 5) if lo / 1.5 <= m * 10 ** e <= hi * 1.5]
    ax.set_yticks(ticks)
    ax.set_yticklabels([fmt_ns(t).replace(".00", "").replace(".0 ", " ") for t in ticks])
    ax.set_xlabel("handlers registered")
    ax.set_ylabel("time per notify (median CPU time, log scale)")
    ax.set_title(data["title"])
    ax.grid(True, which="major", linestyle=":", linewidth=0.8)
    ax.legend(loc="upper left", frameon=True)
    fig.text(0.01, 0.01, data["caption"], fontsize=7.5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    os.makedirs(os.path.dirname(data["output"]), exist_ok=True)
    fig.savefig(data["output"], dpi=100,
                metadata={"Software": None, "Description": "data sha256 " + chart_digest(data)})
    plt.close(fig)


def png_description(path):
    """The Description text chunk of a PNG, read without any image library."""
    import struct
    import zlib
    with open(path, "rb") as f:
        blob = f.read()
    pos = 8
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(b"Description\0"):
            return body.split(b"\0", 1)[1].decode("latin-1")
        if kind == b"zTXt" and body.startswith(b"Description\0"):
            return zlib.decompress(body.split(b"\0", 1)[1][1:]).decode("latin-1")
        if kind == b"iTXt" and body.startswith(b"Description\0"):
            return body.split(b"\0", 4)[-1].decode("utf-8")
        pos += 12 + length
    return None


# The manifest against the runs ------------------------------------------------------------------

def check_manifest(manifest, perf_dir):
    """Problems with the manifest: a command that does not match the run it claims to have made."""
    problems = []
    for key, entry in manifest["runs"].items():
        run = Run(key, entry, perf_dir)
        cmd = entry["command"]
        m = re.search(r"--benchmark_repetitions=(\d+)", cmd)
        if m and run.repetitions() != [int(m[1])]:
            problems.append(f"{key}: the command asks for {m[1]} repetitions, {run.file} holds {run.repetitions()}")
        m = re.search(r"--benchmark_filter='([^']*)'", cmd)
        if m:
            names = {b["run_name"] for b in run.benchmarks}
            stray = sorted(n for n in names if not re.search(m[1], n))
            if stray:
                problems.append(f"{key}: {run.file} holds rows its command's filter does not match: {stray[:3]}")
        if run.file not in cmd:
            problems.append(f"{key}: the command does not write {run.file}")
    return problems


def render(manifest_path, chart=True):
    manifest, texts, data = render_texts(manifest_path)
    for path, text in texts.items():
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path, REPO)}")
    if chart:
        draw_chart(data)
        print(f"wrote {os.path.relpath(data['output'], REPO)}")
    problems = check_manifest(manifest, os.path.dirname(os.path.abspath(manifest_path)))
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)


def check(manifest_path):
    """Exit status 1 where a generated file is not what the saved runs render to now."""
    import difflib
    manifest, texts, data = render_texts(manifest_path)
    bad = check_manifest(manifest, os.path.dirname(os.path.abspath(manifest_path)))
    for path, text in texts.items():
        rel = os.path.relpath(path, REPO)
        old = open(path).read() if os.path.exists(path) else ""
        if old != text:
            diff = difflib.unified_diff(old.splitlines(), text.splitlines(), f"{rel} (in the tree)",
                                        f"{rel} (rendered)", lineterm="", n=1)
            bad.append(f"{rel} is not what the saved runs render to:\n" + "\n".join(list(diff)[:60]))
    rel = os.path.relpath(data["output"], REPO)
    want = "data sha256 " + chart_digest(data)
    have = png_description(data["output"]) if os.path.exists(data["output"]) else None
    if have != want:
        bad.append(f"{rel} was not drawn from the current data (its Description: {have!r})")
    for b in bad:
        print(f"perf_report check: {b}", file=sys.stderr)
    if bad:
        print(f"perf_report check: run `scripts/perf_report.py render {os.path.relpath(manifest_path)}` "
              "and commit the result", file=sys.stderr)
        return 1
    print(f"perf_report check: {', '.join(os.path.relpath(p, REPO) for p in texts)} and {rel} are up to date")
    return 0


def cli(argv):
    if argv and argv[0] in ("render", "check"):
        rest = [a for a in argv[1:] if not a.startswith("--")]
        if len(rest) > 1 or any(a not in ("--no-chart",) for a in argv[1:] if a.startswith("--")):
            sys.exit(__doc__)
        path = rest[0] if rest else DEFAULT_MANIFEST
        if argv[0] == "check":
            return check(path)
        render(path, chart="--no-chart" not in argv)
        return 0
    if len(argv) >= 2 and argv[0] == "--bus":
        print(bus_report(argv[1:]))
    elif len(argv) >= 2 and argv[0] == "--qt":
        print(qt_report(argv[1:]))
    elif len(argv) >= 2 and argv[0] == "--qml":
        print(qml_report(argv[1:]))
    elif len(argv) == 1 and argv[0].endswith(".json"):
        print(core_report(argv[0]))
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
