#!/usr/bin/env python3
"""Turns the raw results of bench/run.sh into tables, summary.md, results.json
and gnuplot charts. Standard library only.

  report.py report DIR
      DIR holds runs.csv, meta.env and timeline.csv (bench/run.sh writes them).
      Prints the tables, writes DIR/summary.md, DIR/results.json and, when
      gnuplot is installed, one PNG and one SVG chart per workload family.
      latency rows get a table of percentiles (p50, p99, p99.9, max, mean of
      malloc, free and all calls, from the result line's extra words kept in
      runs.csv's detail column) and chart-latency; the cross-thread families
      (xthread, requests, prodcons, larson) run at two thread counts or more
      get a scaling table of ns per malloc/free call (the workloads' counted
      ops over wall time) per thread count, and chart-scaling.
  report.py micro-rows JSON ALLOCATOR RUN
      Prints the runs.csv rows of one Google Benchmark JSON output.

Ratios: each allocator's median over the median of the best allocator of the
row, so 1.00 is the best and larger is worse; for throughput, where more is
better, the best's over this one's. An allocator's summary is the geometric
mean of its ratios. An allocator with a failed run on a row is FAILED there
and left out of that row's best and of its geometric means.
"""
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from collections import OrderedDict

HIGHER_IS_BETTER = {"ops_per_s"}
METRIC_TITLE = {
    "time_s": "wall time (s)",
    "cpu_s": "CPU time, user+sys (s)",
    "rss_kb": "peak RSS (MiB)",
    "idle_rss_kb": "RSS after 1 s idle (MiB)",
    "ops_per_s": "throughput (requests/s)",
    "ns_per_op": "time per iteration (ns)",
    "ir_per_pair": "instructions per malloc+free",
}
# What each family's rows compare, in table order.
KIND_METRICS = {
    "workload": ["time_s", "cpu_s", "rss_kb"],
    "micro": ["ns_per_op"],
    "server": ["ops_per_s", "rss_kb"],
    "timeline": ["rss_kb"],
    "callgrind": ["ir_per_pair"],
}
FAMILY_EXTRA_METRICS = {"burst": ["idle_rss_kb"]}
FAMILY_WHAT = OrderedDict([
    ("churn", "small-object churn (16..128 B), each thread on its own working set"),
    ("xthread", "blocks (16..512 B) passed around a ring of threads, every free remote"),
    ("requests", "request handling: temporaries per request, random slots of a shared table "
                 "replaced, objects handed between threads"),
    ("prodcons", "producer threads allocate (16 B..4 KiB), consumer threads free"),
    ("falseshare", "threads writing small objects (Hoard's cache-scratch): false sharing"),
    ("mixed", "mixed sizes (16 B..64 KiB) and lifetimes, realloc growth"),
    ("threadchurn", "short-lived threads freeing what exited threads left"),
    ("burst", "64 MiB live + 1 GiB burst of small objects, 1/64 kept, 256 MiB of large blocks, "
              "1 s idle"),
    ("large", "large blocks 64 KiB..64 MiB, every page touched"),
    ("larson", "larson server: threads replace random slots of 2000-block arrays (16..1024 B), "
               "the arrays rotate between threads every round"),
    ("batchfree", "one thread: 16384 blocks of 64 B malloc'ed, then all freed in allocation order"),
    ("batchfree-random", "the same, freed in a random order"),
    ("heapreq", "requests of 20..200 objects (16..2048 B): a private heap per request where the "
                "allocator has one (hm_heap, mi_heap), else malloc/free"),
    ("heapreq-malloc", "the same requests with malloc/free under every allocator"),
    ("micro", "Google Benchmark: malloc+free per size, batches, calloc, realloc, aligned, "
              "producer/consumer"),
    ("redis", "Debian's redis-server driven by redis-benchmark on loopback"),
    ("timeline", "RSS over time: 64 MiB live, 1 GiB burst, burst freed, 3 s idle"),
    ("callgrind", "instructions per malloc(32)+free on the fast path, and per malloc+free "
                  "pair of batchfree (callgrind)"),
])
KB_METRICS = {"rss_kb", "idle_rss_kb"}

# latency: per call kind, the percentiles of the time of one call (the
# workload's result line; runs.csv keeps them in the detail column).
LATENCY_KINDS = OrderedDict([("malloc", "malloc"), ("free", "free"), ("all", "all calls")])
LATENCY_STATS = OrderedDict([("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"),
                             ("mean", "mean")])
LATENCY_METRICS = ["%s_%s_ns" % (k, q) for k in LATENCY_KINDS for q in LATENCY_STATS]
for _kind, _kind_title in LATENCY_KINDS.items():
    for _stat, _stat_title in LATENCY_STATS.items():
        METRIC_TITLE["%s_%s_ns" % (_kind, _stat)] = "%s %s (ns)" % (_kind_title, _stat_title)
FAMILY_EXTRA_METRICS["latency"] = LATENCY_METRICS
FAMILY_WHAT["latency"] = ("time of each malloc and free (rdtsc), threads churning a working set "
                          "with periodic bursts (16 B..512 KiB) and idle pauses")
FAMILY_WHAT.move_to_end("latency", last=False)
for _family in ("larson", "prodcons", "requests", "xthread"):
    FAMILY_WHAT.move_to_end(_family, last=False)
FAMILY_WHAT.move_to_end("churn", last=False)
# The cross-thread families: time per malloc/free call against thread count.
SCALING_FAMILIES = ["xthread", "requests", "prodcons", "larson"]
for _family in SCALING_FAMILIES:
    FAMILY_EXTRA_METRICS[_family] = ["ns_per_op"]
# Extra key=value words of a result line kept as metrics (from the detail).
DETAIL_METRICS = set(LATENCY_METRICS)


# --- micro-rows --------------------------------------------------------------

def micro_rows(path, allocator, run):
    """One runs.csv row per benchmark of a Google Benchmark JSON file."""
    with open(path) as f:
        data = json.load(f)
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    out = csv.writer(sys.stdout, lineterminator="\n")
    for bench in data["benchmarks"]:
        if bench.get("run_type", "iteration") != "iteration":
            continue
        name = bench["name"]
        # Multi-threaded benchmarks are timed in real time, the others in CPU
        # time (steadier on a shared machine).
        field = "real_time" if "/real_time" in name else "cpu_time"
        ns = bench[field] * scale[bench.get("time_unit", "ns")]
        parts = [p for p in name.split("/") if p != "real_time" and not p.startswith("threads:")]
        label = "/".join(parts)[3:] if parts[0].startswith("BM_") else "/".join(parts)
        family = "micro-malloc_free" if label.startswith("malloc_free/") else "micro-other"
        out.writerow(["micro", family, label, bench.get("threads", 1), allocator, run, "ok",
                      "", "", "", "", "", "%.3f" % ns, "", ""])


# --- Reading -----------------------------------------------------------------

def read_meta(directory):
    meta = OrderedDict()
    path = os.path.join(directory, "meta.env")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                meta[key] = value
    return meta


def read_runs(directory):
    with open(os.path.join(directory, "runs.csv")) as f:
        return list(csv.DictReader(f))


def read_timeline(directory):
    path = os.path.join(directory, "timeline.csv")
    series = OrderedDict()
    if os.path.exists(path):
        with open(path) as f:
            for row in csv.DictReader(f):
                series.setdefault(row["allocator"], []).append(
                    (float(row["t_s"]), float(row["rss_kb"]) / 1024, row["phase"]))
    return series


# --- Aggregating -------------------------------------------------------------

class Row:
    """One workload variant (or micro benchmark, or redis test): medians per
    allocator and metric, ratios to the best."""

    def __init__(self, kind, family, workload, threads):
        self.kind, self.family, self.workload, self.threads = kind, family, workload, threads
        self.values = OrderedDict()  # allocator -> metric -> [values]
        self.failed = OrderedDict()  # allocator -> detail
        self.medians = {}
        self.ratios = {}
        self.spread = {}
        self.timer_values = OrderedDict()  # allocator -> [timer_ns] (latency)
        self.timer_floor = OrderedDict()   # allocator -> median timer_ns

    def metrics(self):
        kind = "server" if self.kind == "server" else self.kind
        metrics = list(KIND_METRICS[kind]) + FAMILY_EXTRA_METRICS.get(self.family, [])
        if self.family == "redis-tests":
            metrics = ["ops_per_s"]
        return metrics

    def finish(self, allocators):
        for allocator, values in self.timer_values.items():
            self.timer_floor[allocator] = statistics.median(values)
        for metric in self.metrics():
            medians = {}
            for allocator in allocators:
                if allocator in self.failed:
                    continue
                values = self.values.get(allocator, {}).get(metric, [])
                if values:
                    medians[allocator] = statistics.median(values)
                    self.spread[(allocator, metric)] = (min(values), max(values))
            self.medians[metric] = medians
            if not medians:
                continue
            higher = metric in HIGHER_IS_BETTER
            best = max(medians.values()) if higher else min(medians.values())
            ratios = {}
            for allocator, value in medians.items():
                if higher:
                    ratios[allocator] = best / value if value > 0 else float("inf")
                else:
                    ratios[allocator] = value / best if best > 0 else (1.0 if value == 0 else float("inf"))
            self.ratios[metric] = ratios


def aggregate(runs, allocators):
    rows = OrderedDict()
    for run in runs:
        key = (run["kind"], run["family"], run["workload"])
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(run["kind"], run["family"], run["workload"], run["threads"])
        allocator = run["allocator"]
        if run["status"] != "ok":
            row.failed.setdefault(allocator, run["detail"])
            continue
        for metric, text in run.items():
            if metric in METRIC_TITLE and text not in ("", None):
                row.values.setdefault(allocator, {}).setdefault(metric, []).append(float(text))
        for word in (run.get("detail") or "").split():
            metric, _, text = word.partition("=")
            if metric in DETAIL_METRICS and text:
                row.values.setdefault(allocator, {}).setdefault(metric, []).append(float(text))
            elif metric == "timer_ns" and text:
                row.timer_values.setdefault(allocator, []).append(float(text))
    # A micro or redis failure is recorded on the whole family's row only:
    # carry it to the family's rows.
    for (kind, family, workload), row in rows.items():
        if kind == "micro" and workload != "micro":
            whole = rows.get(("micro", "micro", "micro"))
            if whole:
                row.failed.update(whole.failed)
    for row in rows.values():
        row.finish(allocators)
    # The whole-micro row only shows failures (its benchmarks have rows).
    return [r for r in rows.values()
            if not (r.kind == "micro" and r.workload == "micro" and not r.failed)]


def geomean(values):
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(rows, allocators):
    """allocator -> column -> (geomean ratio, count)."""
    columns = OrderedDict([
        ("time_s", ("workload", "time_s", "workloads: wall time")),
        ("cpu_s", ("workload", "cpu_s", "workloads: CPU time")),
        ("rss_kb", ("workload", "rss_kb", "workloads: peak RSS")),
        ("idle_rss_kb", ("workload", "idle_rss_kb", "burst: RSS after idle")),
        ("ns_per_op", ("micro", "ns_per_op", "micro: time")),
        ("ops_per_s", ("server-all", "ops_per_s", "redis: throughput")),
        ("server_rss", ("server-all", "rss_kb", "redis: peak RSS")),
        ("ir_per_pair", ("callgrind", "ir_per_pair", "Ir per malloc+free")),
    ])
    result = OrderedDict()
    for allocator in allocators:
        result[allocator] = OrderedDict()
        for name, (kind, metric, _) in columns.items():
            if kind == "server-all":
                selected = [r for r in rows if r.kind == "server" and r.family == "redis"]
            else:
                selected = [r for r in rows if r.kind == kind]
            ratios = [r.ratios[metric][allocator] for r in selected
                      if metric in r.ratios and allocator in r.ratios[metric]]
            result[allocator][name] = (geomean(ratios), len(ratios))
        result[allocator]["failed"] = sum(1 for r in rows if allocator in r.failed)
    titles = OrderedDict((name, title) for name, (_, _, title) in columns.items())
    return result, titles


# --- Text --------------------------------------------------------------------

def show(metric, value):
    if value is None:
        return "-"
    if metric in KB_METRICS:
        return "%.1f MiB" % (value / 1024)
    if metric == "ops_per_s":
        return "%.0f" % value
    if metric == "ns_per_op":
        return "%.1f ns" % value if value < 1e4 else "%.1f us" % (value / 1e3)
    if metric == "ir_per_pair":
        return "%.1f" % value
    if metric in DETAIL_METRICS:
        return nanoseconds(value)
    return "%.3f s" % value


def nanoseconds(value):
    if value < 1e3:
        return "%.0f ns" % value
    if value < 1e6:
        return "%.1f us" % (value / 1e3)
    return "%.1f ms" % (value / 1e6)


def cell(row, metric, allocator):
    if allocator in row.failed:
        return "FAILED"
    value = row.medians.get(metric, {}).get(allocator)
    if value is None:
        return "-"
    ratio = row.ratios[metric][allocator]
    text = "%s (%.2f)" % (show(metric, value), ratio)
    return "**%s**" % text if ratio == 1.0 else text


def table(rows, metric, allocators, label="workload"):
    lines = ["| %s | %s |" % (label, " | ".join(allocators)),
             "|---|%s" % ("---|" * len(allocators))]
    for row in rows:
        lines.append("| %s | %s |" % (row.workload, " | ".join(cell(row, metric, a) for a in allocators)))
    return "\n".join(lines)


def failures(rows):
    lines = []
    for row in rows:
        for allocator, detail in row.failed.items():
            lines.append("- %s under %s: %s" % (row.workload, allocator, detail))
    return lines


def noisy_rows(rows, allocators, limit=0.3):
    """(row, metric, spread, allocator) where (max - min) / median > limit."""
    found = []
    for row in rows:
        if row.kind not in ("workload", "server") or row.family == "redis-tests":
            continue
        for metric in ("time_s", "cpu_s", "ops_per_s"):
            widest = None
            for allocator in allocators:
                span = row.spread.get((allocator, metric))
                median = row.medians.get(metric, {}).get(allocator)
                if span and median:
                    spread = (span[1] - span[0]) / median
                    if widest is None or spread > widest[0]:
                        widest = (spread, allocator)
            if widest and widest[0] > limit:
                found.append((row, metric, widest[0], widest[1]))
    return found


def not_best(rows, allocator):
    """Rows where `allocator` is not the best, per metric: (row, metric, ratio, best)."""
    found = []
    for row in rows:
        for metric, ratios in row.ratios.items():
            if metric == "ns_per_op" and row.kind == "workload":
                continue  # the wall time's ratio again
            if allocator in ratios and ratios[allocator] > 1.0:
                best = [a for a, r in ratios.items() if r == 1.0]
                found.append((row, metric, ratios[allocator], best[0] if best else "?"))
    return found


def latency_table(row, allocators):
    """One latency variant: a row per call kind and percentile."""
    lines = ["%s, %s threads:\n" % (row.workload, row.threads),
             "| call | %s |" % " | ".join(allocators), "|---|%s" % ("---|" * len(allocators))]
    for kind, kind_title in LATENCY_KINDS.items():
        for stat, stat_title in LATENCY_STATS.items():
            metric = "%s_%s_ns" % (kind, stat)
            lines.append("| %s %s | %s |" % (kind_title, stat_title,
                                             " | ".join(cell(row, metric, a) for a in allocators)))
    floors = ["%s %s" % (a, nanoseconds(v)) for a, v in row.timer_floor.items()]
    if floors:
        lines.append("\nTimer floor (an empty timed region, the least of 10000): %s." % ", ".join(floors))
    return "\n".join(lines)


def scaling_rows(rows):
    """family -> its rows sorted by thread count, for the scaling families run
    at two thread counts or more with ops counted."""
    found = OrderedDict()
    for family in SCALING_FAMILIES:
        family_rows = sorted((r for r in rows if r.family == family and r.medians.get("ns_per_op")),
                             key=lambda r: int(r.threads))
        if len(family_rows) >= 2:
            found[family] = family_rows
    return found


def scaling_table(rows, allocators):
    lines = ["| threads | %s |" % " | ".join(allocators), "|---|%s" % ("---|" * len(allocators))]
    for row in rows:
        cells = []
        for allocator in allocators:
            if allocator in row.failed:
                cells.append("FAILED")
                continue
            value = row.medians["ns_per_op"].get(allocator)
            if value is None:
                cells.append("-")
                continue
            ratio = row.ratios["ns_per_op"][allocator]
            text = "%.1f ns (%.2f)" % (value, ratio)
            cells.append("**%s**" % text if ratio == 1.0 else text)
        lines.append("| %s | %s |" % (row.threads, " | ".join(cells)))
    return "\n".join(lines)


def markdown(meta, rows, allocators, charts, timeline_chart):
    out = []
    add = out.append
    add("# hmalloc benchmarks\n")
    add("Measured %s on %s (%s), by `%s`." % (meta.get("date", "?"), meta.get("machine", "?"),
                                               meta.get("kernel", "?"), meta.get("command", "?")))
    add("Load average at start %s, at end %s (the machine is shared: medians of %s "
        "interleaved runs; CPU time, user+sys, is steadier than wall time)." % (
            meta.get("load_average_start", "?"), meta.get("load_average_end", "?"),
            meta.get("runs", "?")))
    versions = ["hmalloc %s" % meta.get("hmalloc", "?")]
    versions += [v for k, v in meta.items() if k.startswith("version_")]
    add("\nVersions: %s.\n" % "; ".join(versions))
    add("Ratios in parentheses: to the best allocator of the row (1.00, in bold); larger is worse; "
        "for throughput, the best's over this one's. Summary: geometric mean of the ratios.\n")

    add("Reproduce: `bench/run.sh` (the representative subset, 3 runs, about 5 minutes on 2 "
        "cores; as root it installs what is missing), `bench/run.sh --full` (everything, 5 runs), "
        "`bench/run.sh --quick` (under 3 minutes), `bench/run.sh --scaling` (the cross-thread "
        "workloads at 1 to 64 threads), `bench/run.sh --help` for the options.\n")
    present = OrderedDict.fromkeys(r.family if r.kind == "workload" else
                                   {"micro": "micro", "server": "redis", "timeline": "timeline",
                                    "callgrind": "callgrind"}[r.kind] for r in rows)
    add("What runs:\n")
    for family, what in FAMILY_WHAT.items():
        if family in present:
            threads = sorted({int(r.threads) for r in rows if r.family == family and r.kind == "workload"})
            suffix = " (threads: %s)" % ", ".join(map(str, threads)) if len(threads) > 1 or (
                threads and threads[0] > 1) else ""
            add("- **%s**: %s%s" % (family, what, suffix))
    add("")

    result, titles = summary(rows, allocators)
    add("## Summary\n")
    add("| allocator | %s | failed rows |" % " | ".join(titles.values()))
    add("|---|%s---|" % ("---|" * len(titles)))
    for allocator in allocators:
        cells = []
        for name in titles:
            value, count = result[allocator][name]
            cells.append("-" if value is None else "%.2f" % value)
        add("| %s | %s | %d |" % (allocator, " | ".join(cells), result[allocator]["failed"]))
    add("")

    workload_rows = [r for r in rows if r.kind == "workload"]
    if workload_rows:
        add("## Workloads\n")
        for metric in ("time_s", "cpu_s", "rss_kb"):
            add("### %s\n" % METRIC_TITLE[metric])
            add(table(workload_rows, metric, allocators))
            add("")
        burst = [r for r in workload_rows if r.family == "burst"]
        if burst:
            add("### %s\n" % METRIC_TITLE["idle_rss_kb"])
            add(table(burst, "idle_rss_kb", allocators))
            add("")
    latency = [r for r in workload_rows if r.family == "latency"]
    if latency:
        add("## Tail latency (latency)\n")
        add("The time of each malloc and free, timed one by one with rdtsc (fenced; ticks "
            "calibrated against CLOCK_MONOTONIC over the run): threads churning a working set "
            "of 4096 blocks, every 32768 replacements a burst of 8192 blocks malloc'ed and "
            "freed, then 20 ms idle; sizes 16 B..1 KiB (85%), ..32 KiB (14%), 64..512 KiB (1%). "
            "Nearest-rank percentiles over every call of every thread, median over the runs; "
            "ratio to the best of the row. Each sample includes the timer's own cost "
            "(timer floor below); max is one call, so it is the noisiest (preemption on a "
            "shared machine lands there).\n")
        for row in latency:
            add(latency_table(row, allocators))
            add("")
    scaling = scaling_rows(workload_rows)
    if scaling:
        add("## Scaling: time per malloc/free against threads\n")
        add("Cross-thread workloads at several thread counts on the same total work: wall "
            "time over the malloc and free calls the workload counted (all threads together; "
            "ns per call, median over the runs; ratio to the best of the row). On this "
            "machine's 2 cores, counts above 2 are oversubscription: a flat column is an "
            "allocator whose cost per call does not grow with it.\n")
        for family, family_rows in scaling.items():
            add("### %s: %s\n" % (family, FAMILY_WHAT.get(family, "")))
            add(scaling_table(family_rows, allocators))
            add("")
    micro = [r for r in rows if r.kind == "micro"]
    if micro:
        add("## Micro-benchmarks (Google Benchmark)\n")
        add("Time per iteration, CPU time (real time for producer_consumer, 2 threads). "
            "batch_*: 1000 blocks malloc'ed then freed in that order; realloc_growth: a buffer "
            "grown by 50% steps from 16 B to the size; calloc and aligned_alloc: with free.\n")
        add(table(micro, "ns_per_op", allocators, "benchmark"))
        add("")
    server = [r for r in rows if r.kind == "server"]
    if server:
        add("## redis-server (redis-benchmark, loopback)\n")
        add("Requests per second per test, and over all the passes; peak RSS is the server's "
            "VmHWM. Which library served the server's `malloc` was checked with "
            "`LD_DEBUG=bindings`, and hmalloc's stats line at exit (server-check.txt).\n")
        overall = [r for r in server if r.family == "redis"]
        add(table([r for r in server if r.family != "redis"] + overall, "ops_per_s", allocators, "test"))
        add("")
        add(table(overall, "rss_kb", allocators, "server"))
        add("")
    callgrind = [r for r in rows if r.kind == "callgrind"]
    if callgrind:
        add("## Fast path (callgrind)\n")
        add("Instructions per malloc+free pair: fastpath, malloc(32) and free in a loop; "
            "batchfree, 16384 blocks of 64 B malloc'ed then freed in allocation order "
            "(its fill and check of each block included).\n")
        add(table(callgrind, "ir_per_pair", allocators, "program"))
        add("")
    if charts or timeline_chart:
        add("## Charts\n")
        for name in charts + ([timeline_chart] if timeline_chart else []):
            add("![%s](%s.png) ([SVG](%s.svg))\n" % (name, name, name))
    noisy = noisy_rows(rows, allocators)
    if noisy:
        add("## Run-to-run spread\n")
        add("Rows where some allocator's runs spread (max - min) over more than 30% of their "
            "median: differences smaller than the spread there are not significant.\n")
        add("| row | metric | widest spread | allocator |")
        add("|---|---|---|---|")
        for row, metric, spread, allocator in noisy:
            add("| %s | %s | %.0f%% | %s |" % (row.workload, METRIC_TITLE[metric], spread * 100, allocator))
        add("")
    lines = failures(rows)
    if lines:
        add("## Failures\n")
        out.extend(lines)
        add("")
    if "hmalloc" in allocators:
        found = not_best(rows, "hmalloc")
        add("## Where hmalloc is not the best\n")
        for row, metric, ratio, best in found:
            add("- %s, %s: %.2f (best: %s)" % (row.workload, METRIC_TITLE[metric], ratio, best))
        add("")
    return "\n".join(out) + "\n"


# --- Charts ------------------------------------------------------------------

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def gnuplot(directory, name, body):
    """Renders one chart as PNG and SVG; body draws it (after the terminal)."""
    if not shutil.which("gnuplot"):
        return False
    for terminal, extension in (("pngcairo noenhanced size 1400,500 font 'sans,10'", "png"),
                                ("svg noenhanced size 1400,500 dynamic font 'sans,10'", "svg")):
        script = "set terminal %s\nset output '%s.%s'\n%s\nunset output\n" % (
            terminal, name, extension, body)
        result = subprocess.run(["gnuplot"], input=script, text=True, cwd=directory,
                                capture_output=True)
        if result.returncode != 0:
            print("report.py: gnuplot failed on %s: %s" % (name, result.stderr.strip()), file=sys.stderr)
            return False
    return True


def quoted(text):
    """A gnuplot single-quoted string."""
    return "'%s'" % text.replace("'", "''")


def histogram_panel(datafile, title, ylabel, allocators, first_column=2, logscale=False):
    plots = ", ".join(
        "'%s' using %d:xtic(1) title '%s' lc rgb '%s'" % (datafile, first_column + i, a,
                                                          COLORS[i % len(COLORS)])
        for i, a in enumerate(allocators))
    return ("set title %s\nset ylabel %s\n%s\nplot %s\n" % (
        quoted(title), quoted(ylabel),
        "set logscale y\nset yrange [*:*]" if logscale else "unset logscale y\nset yrange [0:*]", plots))


HISTOGRAM_STYLE = ("set style data histograms\nset style histogram clustered gap 1\n"
                   "set style fill solid 0.9 border -1\nset boxwidth 0.9\nset grid ytics\n"
                   "set key below\nset xtics nomirror rotate by -30\n")


def write_data(path, rows, metric, allocators, scale=1.0, label=None):
    with open(path, "w") as f:
        f.write("# label %s\n" % " ".join(allocators))
        for row in rows:
            values = []
            for allocator in allocators:
                value = row.medians.get(metric, {}).get(allocator)
                values.append("NaN" if value is None else "%g" % (value * scale))
            f.write('"%s" %s\n' % (label(row) if label else row.workload, " ".join(values)))


def family_chart(directory, family, rows, allocators):
    if not any(row.medians.get("time_s") for row in rows):
        return False  # every run failed: nothing to draw
    # ns per call of the cross-thread families: the scaling chart.
    metrics = ["time_s", "cpu_s", "rss_kb"] + [
        m for m in FAMILY_EXTRA_METRICS.get(family, []) if m != "ns_per_op"]
    panels = []
    for metric in metrics:
        datafile = "%s-%s.dat" % (family, metric)
        write_data(os.path.join(directory, datafile), rows, metric, allocators,
                   1 / 1024 if metric in KB_METRICS else 1.0,
                   label=lambda r: "%s threads" % r.threads if r.workload != family else family)
        panels.append(histogram_panel(datafile, METRIC_TITLE[metric], METRIC_TITLE[metric], allocators))
    title = "%s: %s (median; lower is better)" % (family, FAMILY_WHAT.get(family, ""))
    body = (HISTOGRAM_STYLE + "set multiplot layout 1,%d title %s\n" % (len(panels), quoted(title))
            + "".join(panels) + "unset multiplot\n")
    return gnuplot(directory, "chart-" + family, body)


def micro_charts(directory, rows, allocators):
    made = []
    sizes = sorted((r for r in rows if r.family == "micro-malloc_free"),
                   key=lambda r: int(r.workload.split("/")[1]))
    if sizes:
        path = os.path.join(directory, "micro-malloc_free.dat")
        with open(path, "w") as f:
            for row in sizes:
                f.write("%s %s\n" % (row.workload.split("/")[1], " ".join(
                    "%g" % row.medians["ns_per_op"].get(a, float("nan")) for a in allocators)))
        plots = ", ".join("'micro-malloc_free.dat' using 1:%d title '%s' with linespoints lw 2 lc rgb '%s'"
                          % (2 + i, a, COLORS[i % len(COLORS)]) for i, a in enumerate(allocators))
        body = ("set title 'malloc(size) + free, Google Benchmark (CPU time per pair; lower is better)'\n"
                "set logscale xy 2\nset xlabel 'size (bytes)'\nset ylabel 'ns per pair'\n"
                "set grid\nset key top left\nset format x '%%.0b %%BB'\nplot %s\n" % plots)
        if gnuplot(directory, "chart-micro-malloc_free", body):
            made.append("chart-micro-malloc_free")
    other = [r for r in rows if r.family == "micro-other"]
    if other:
        path = os.path.join(directory, "micro-other.dat")
        write_data(path, other, "ns_per_op", allocators)
        # Ratios to the best, so benchmarks of different scales share an axis.
        with open(path, "w") as f:
            for row in other:
                f.write('"%s" %s\n' % (row.workload, " ".join(
                    "%g" % row.ratios["ns_per_op"].get(a, float("nan")) for a in allocators)))
        body = HISTOGRAM_STYLE + histogram_panel(
            "micro-other.dat", "Micro-benchmarks: time relative to the best allocator (1 = best)",
            "ratio to the best", allocators)
        if gnuplot(directory, "chart-micro-other", body):
            made.append("chart-micro-other")
    return made


def server_chart(directory, rows, allocators):
    tests = [r for r in rows if r.kind == "server" and r.family != "redis"]
    overall = [r for r in rows if r.kind == "server" and r.family == "redis"]
    if not tests or not overall:
        return False
    write_data(os.path.join(directory, "redis-ops.dat"), tests + overall, "ops_per_s", allocators,
               label=lambda r: "all" if r.family == "redis" else r.workload.replace("redis:", ""))
    write_data(os.path.join(directory, "redis-rss.dat"), overall, "rss_kb", allocators, 1 / 1024)
    body = (HISTOGRAM_STYLE + "set multiplot\nset size 0.75,1\nset origin 0,0\n"
            + histogram_panel("redis-ops.dat", "redis-server under redis-benchmark: throughput "
                              "(median requests/s; higher is better; all: over all the passes)",
                              "requests/s", allocators)
            + "set size 0.25,1\nset origin 0.75,0\n"
            + histogram_panel("redis-rss.dat", "server peak RSS, VmHWM (MiB; lower is better)",
                              "MiB", allocators)
            + "unset multiplot\n")
    return gnuplot(directory, "chart-redis", body)


def timeline_chart(directory, series):
    if not series:
        return None
    with open(os.path.join(directory, "timeline.dat"), "w") as f:
        for allocator, samples in series.items():
            f.write("# %s\n" % allocator)
            for t, mib, phase in samples:
                f.write("%g %g %s\n" % (t, mib, phase))
            f.write("\n\n")
    plots = ", ".join("'timeline.dat' index %d using 1:2 title '%s' with lines lw 2 lc rgb '%s'"
                      % (i, a, COLORS[i % len(COLORS)]) for i, a in enumerate(series))
    # Each allocator reaches the phases at its own pace: a dot on its line
    # marks the first sample of each phase after the first.
    with open(os.path.join(directory, "timeline-phases.dat"), "w") as f:
        for allocator, samples in series.items():
            f.write("# %s\n" % allocator)
            for (t, mib, phase), previous in zip(samples[1:], samples):
                if phase != previous[2]:
                    f.write("%g %g %s\n" % (t, mib, phase))
            f.write("\n\n")
    plots += ", " + ", ".join(
        "'timeline-phases.dat' index %d using 1:2 notitle with points pt 7 ps 1.2 lc rgb '%s'"
        % (i, COLORS[i % len(COLORS)]) for i in range(len(series)))
    body = ("set title 'RSS over time: 64 MiB live, 1 GiB burst of 16..256 B objects, burst freed, "
            "3 s idle (sampled every 50 ms; dots: start of the burst, of the free, of the idle)'\n"
            "set xlabel 'time (s)'\nset ylabel 'RSS (MiB)'\nset grid\nset key top right\n"
            "plot %s\n" % plots)
    return "chart-timeline" if gnuplot(directory, "chart-timeline", body) else None


def latency_chart(directory, rows, allocators):
    """Per latency variant: the percentiles of malloc, free and all calls, log scale."""
    made = []
    for row in rows:
        if not any(row.medians.get(m) for m in LATENCY_METRICS):
            continue
        name = "latency-%s" % row.threads
        with open(os.path.join(directory, name + ".dat"), "w") as f:
            for kind, kind_title in LATENCY_KINDS.items():
                for stat, stat_title in LATENCY_STATS.items():
                    if stat == "mean":
                        continue
                    metric = "%s_%s_ns" % (kind, stat)
                    f.write('"%s %s" %s\n' % (kind_title, stat_title, " ".join(
                        "%g" % row.medians.get(metric, {}).get(a, float("nan")) for a in allocators)))
        body = HISTOGRAM_STYLE + histogram_panel(
            name + ".dat", "%s: time of one call, percentiles over every call (median of the runs; "
            "log scale; lower is better)" % row.workload, "ns", allocators, logscale=True)
        chart = "chart-latency" + ("" if len(rows) == 1 else "-t%s" % row.threads)
        if gnuplot(directory, chart, body):
            made.append(chart)
    return made


def scaling_chart(directory, scaling, allocators):
    """ns per call against threads, a panel per cross-thread family."""
    if not scaling:
        return None
    panels = []
    for family, rows in scaling.items():
        datafile = "scaling-%s.dat" % family
        with open(os.path.join(directory, datafile), "w") as f:
            for row in rows:
                f.write("%s %s\n" % (row.threads, " ".join(
                    "%g" % row.medians["ns_per_op"].get(a, float("nan")) for a in allocators)))
        plots = ", ".join("'%s' using 1:%d title '%s' with linespoints lw 2 pt 7 lc rgb '%s'"
                          % (datafile, 2 + i, a, COLORS[i % len(COLORS)])
                          for i, a in enumerate(allocators))
        panels.append("set title %s\nplot %s\n" % (quoted(family), plots))
    body = ("set logscale x 2\nset xlabel 'threads (2 cores)'\nset ylabel 'ns per malloc/free'\n"
            "set yrange [0:*]\nset grid\nset key below\n"
            "set multiplot layout 1,%d title %s\n" % (
                len(panels), quoted("Scaling: wall time per malloc/free call, all threads together "
                                    "(median; lower is better)"))
            + "".join(panels) + "unset multiplot\n")
    return "chart-scaling" if gnuplot(directory, "chart-scaling", body) else None


def charts(directory, rows, allocators):
    made = []
    for family in FAMILY_WHAT:
        family_rows = [r for r in rows if r.kind == "workload" and r.family == family]
        if family == "latency":
            made += latency_chart(directory, family_rows, allocators)
            continue
        if family_rows and family_chart(directory, family, family_rows, allocators):
            made.append("chart-" + family)
    scaling = scaling_chart(directory, scaling_rows([r for r in rows if r.kind == "workload"]),
                            allocators)
    if scaling:
        made.append(scaling)
    made += micro_charts(directory, [r for r in rows if r.kind == "micro"], allocators)
    if server_chart(directory, rows, allocators):
        made.append("chart-redis")
    for name in os.listdir(directory):
        if name.endswith(".dat"):
            os.remove(os.path.join(directory, name))
    return made


# --- report ------------------------------------------------------------------

def report(directory):
    meta = read_meta(directory)
    runs = read_runs(directory)
    allocators = meta.get("allocators", "").split() or list(OrderedDict.fromkeys(r["allocator"] for r in runs))
    rows = aggregate(runs, allocators)
    series = read_timeline(directory)
    made = charts(directory, rows, allocators)
    timeline = timeline_chart(directory, series)
    for name in os.listdir(directory):
        if name.endswith(".dat"):
            os.remove(os.path.join(directory, name))
    text = markdown(meta, rows, allocators, made, timeline)
    with open(os.path.join(directory, "summary.md"), "w") as f:
        f.write(text)
    result, _ = summary(rows, allocators)
    document = OrderedDict([
        ("meta", meta),
        ("summary", {a: {k: (v[0] if isinstance(v, tuple) else v) for k, v in cols.items()}
                     for a, cols in result.items()}),
        ("rows", [OrderedDict([("kind", r.kind), ("family", r.family), ("workload", r.workload),
                               ("threads", r.threads), ("medians", r.medians), ("ratios", r.ratios),
                               ("failed", r.failed)]) for r in rows]),
        ("runs", runs),
        ("timeline", {a: [[t, m, p] for t, m, p in s] for a, s in series.items()}),
    ])
    with open(os.path.join(directory, "results.json"), "w") as f:
        json.dump(document, f, indent=1)
    print()
    print(text)
    return 1 if failures(rows) else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "report":
        return report(argv[2])
    if len(argv) == 5 and argv[1] == "micro-rows":
        micro_rows(argv[2], argv[3], argv[4])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
