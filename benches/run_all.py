"""The full benchmark suite of issue 6; writes ``docs/benchmarks.md`` and ``docs/benchmarks.png``.

Sections (``--sections`` picks some; all by default):

1. ``serialization``: ``canonical_bytes`` vs the legacy ``canonical_dump`` and orjson;
   ``dumps`` vs ``json.dumps`` (same keywords) and orjson; ``read_json``/``loads`` vs
   ``json.loads`` and orjson, on the 3 KB, 25 KB and 4 MB documents;
2. ``writes``: a whole ``write_json``, durable and non-durable, 3 KB to 4 MB, against the floor
   (``benches/floor.c``: the same system calls from compiled code with a ready buffer), with
   the legacy helper and orjson+filelock alongside;
3. ``contention``: 1, 2, 4, 8 and 16 processes writing one file (durable, 3 KB document) for a
   fixed time: throughput, p50, p99 and max latency per write, for atomicjson, the legacy helper
   (``flock`` polled every 100 ms) and orjson+filelock (filelock polls every 50 ms);
4. ``gil``: the speed of another Python thread (a counting loop), relative to its speed alone,
   while this thread writes the 4 MB document, performs only the I/O and fsyncs of that write
   (``write_bytes`` of its bytes), or waits for a lock another process holds;
5. ``memory``: peak RSS added by writing the 4 MB and ~200 MB documents, relative to the size of
   the file written; each in a fresh process (peak reset through ``/proc/self/clear_refs``,
   read from ``VmHWM``).

Every ratio is measured in this run.  ``--quick`` finishes in about two minutes (fewer
repeats, shorter contention windows); ``--no-huge`` skips the ~200 MB document.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a spinning worker thread per core at import; on a small shared machine
# they steal CPU from the code being measured. The benchmarks need no BLAS: one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import atomicjson  # noqa: E402
import documents  # noqa: E402
import legacy  # noqa: E402
import quick  # noqa: E402
from quick import Row, fmt_ratio, fmt_time, markdown_table  # noqa: E402

IMPLEMENTATIONS = ["atomicjson", "legacy", "orjson+filelock"]
SECTIONS = ["serialization", "writes", "contention", "gil", "memory"]


class Bar:
    """One bar of issue 6 with the value measured for it."""

    def __init__(self, text: str, value: Optional[float], op: str, threshold: float,
                 shown: str) -> None:
        self.text, self.value, self.op, self.threshold, self.shown = (
            text, value, op, threshold, shown)

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        ok = self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold
        return "PASS" if ok else "FAIL"


def bars_from_rows(rows: Sequence[Row]) -> List[Bar]:
    out = []
    for r in rows:
        if r.bar is None:
            continue
        op, threshold, text = r.bar
        what = (f"{r.subject} {r.doc}" if r.section == r.subject else
                f"{r.section}: {r.subject} {r.doc}") + f" vs {r.reference}: {text}"
        out.append(Bar(what, r.ratio, op, threshold, r.ratio_text()))
    return out


# --------------------------------------------------------------------------------------------
# 3. contention
# --------------------------------------------------------------------------------------------
def _make_writer(impl: str, target: str, doc: Any) -> Callable[[], Any]:
    if impl == "atomicjson":
        return lambda: atomicjson.write_json(target, doc)
    if impl == "legacy":
        return lambda: legacy.write_atomic_json_with_lock(target, doc)
    if impl == "orjson+filelock":
        w = quick.orjson_filelock_writer(target, doc)
        if w is None:
            raise RuntimeError("orjson or filelock not installed")
        return w
    raise ValueError(impl)


def _contention_worker(impl: str, target: str, doc_name: str, start_at: float,
                       duration: float, queue: Any) -> None:
    try:
        write = _make_writer(impl, target, documents.document(doc_name))
        lat: List[float] = []
        first = last = 0.0
        while time.perf_counter() < start_at:
            time.sleep(0.001)
        first = time.perf_counter()
        end_at = start_at + duration
        while True:
            t0 = time.perf_counter()
            if t0 >= end_at:
                break
            write()
            last = time.perf_counter()
            lat.append(last - t0)
        queue.put({"lat": lat, "first": first, "last": last or first})
    except BaseException as exc:  # reported by the parent
        queue.put({"error": quick.short_error(exc)})


class ContentionResult:
    def __init__(self, impl: str, n: int) -> None:
        self.impl, self.n = impl, n
        self.lat: List[float] = []
        self.wall = 0.0
        self.error: Optional[str] = None

    @property
    def throughput(self) -> Optional[float]:
        if self.error or not self.lat or self.wall <= 0:
            return None
        return len(self.lat) / self.wall

    def pct(self, q: float) -> Optional[float]:
        if self.error or not self.lat:
            return None
        s = sorted(self.lat)
        return s[min(len(s) - 1, int(q * len(s)))]


def run_contention(work_dir: Path, counts: Sequence[int], duration: float,
                   doc_name: str = "small") -> Dict[Tuple[str, int], ContentionResult]:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    documents.document(doc_name)  # built once, inherited by the forked workers
    results: Dict[Tuple[str, int], ContentionResult] = {}
    for n in counts:
        for impl in IMPLEMENTATIONS:
            res = ContentionResult(impl, n)
            results[(impl, n)] = res
            target = str(work_dir / f"contention-{impl.replace('+', '_')}.json")
            queue = ctx.Queue()
            start_at = time.perf_counter() + 0.3 + 0.02 * n
            procs = [ctx.Process(target=_contention_worker,
                                 args=(impl, target, doc_name, start_at, duration, queue))
                     for _ in range(n)]
            for p in procs:
                p.start()
            outs = [queue.get(timeout=duration + 120) for _ in procs]
            for p in procs:
                p.join()
            errors = [o["error"] for o in outs if "error" in o]
            if errors:
                res.error = errors[0]
                continue
            for o in outs:
                res.lat.extend(o["lat"])
            res.wall = max(o["last"] for o in outs) - min(o["first"] for o in outs)
            print(f"  contention {impl:16s} {n:2d} writers: {len(res.lat):5d} writes, "
                  f"p99 {fmt_time(res.pct(0.99))}", file=sys.stderr)
    return results


def contention_table(results: Dict[Tuple[str, int], ContentionResult],
                     counts: Sequence[int]) -> str:
    lines = ["| writers | implementation | writes | throughput (writes/s) | p50 | p99 | max |",
             "|---|---|---|---|---|---|---|"]
    for n in counts:
        for impl in IMPLEMENTATIONS:
            r = results.get((impl, n))
            if r is None:
                continue
            if r.error:
                lines.append(f"| {n} | {impl} | error: {r.error} | | | | |")
                continue
            tp = r.throughput
            lines.append(f"| {n} | {impl} | {len(r.lat)} | {tp:.0f} | {fmt_time(r.pct(0.5))} | "
                         f"{fmt_time(r.pct(0.99))} | {fmt_time(max(r.lat))} |")
    return "\n".join(lines)


def contention_bars(results: Dict[Tuple[str, int], ContentionResult]) -> List[Bar]:
    aj, lg, oj = (results.get((i, 8)) for i in IMPLEMENTATIONS)
    bars = []
    p99 = None
    if aj and lg and aj.pct(0.99) and lg.pct(0.99):
        p99 = aj.pct(0.99) / lg.pct(0.99)
    bars.append(Bar("8 writers: atomicjson p99 / legacy p99 <= 0.1", p99, "<=", 0.1,
                    fmt_ratio(p99) if p99 is not None else "n/a"))
    tp = None
    if aj and oj and aj.throughput and oj.throughput:
        tp = aj.throughput / oj.throughput
    bars.append(Bar("8 writers: atomicjson throughput / orjson+filelock >= 1", tp, ">=", 1.0,
                    fmt_ratio(tp) if tp is not None else "n/a"))
    return bars


# --------------------------------------------------------------------------------------------
# 4. the GIL
# --------------------------------------------------------------------------------------------
class Spinner(threading.Thread):
    """A Python thread counting as fast as it can (pure bytecode, needs the GIL).

    It also adds up the time it could not run: any gap of more than 0.5 ms between two of
    its iterations (one takes a few microseconds), i.e. the GIL held by another thread (or
    the CPU taken by another process).
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self.stalled = 0.0
        self.stop = False

    def run(self) -> None:
        n = 0
        clock = time.perf_counter
        last = clock()
        while not self.stop:
            x = 0
            for i in range(200):
                x += i
            n += 1
            self.count = n
            t = clock()
            if t - last > 0.0005:
                self.stalled += t - last
            last = t


# Holds the lock for argv[2] seconds, then releases it and stays idle until its stdin closes
# (so that its exit does not compete for a CPU during the measurement).
_HOLDER = textwrap.dedent("""
    import fcntl, sys, time
    f = open(sys.argv[1], "a")
    fcntl.flock(f, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    fcntl.flock(f, fcntl.LOCK_UN)
    sys.stdin.read()
""")


def _rate_during(spinner: Spinner, action: Callable[[], Any]) -> Tuple[float, float]:
    """(iterations per second, fraction of the time stalled) of the spinner during action."""
    c0, s0, t0 = spinner.count, spinner.stalled, time.perf_counter()
    action()
    c1, s1, t1 = spinner.count, spinner.stalled, time.perf_counter()
    return (c1 - c0) / (t1 - t0), (s1 - s0) / (t1 - t0)


def _alone(spinner: Spinner, seconds: float) -> float:
    return _rate_during(spinner, lambda: time.sleep(seconds))[0]


#: An action measured by the GIL test: ``prepare()`` (not measured) returns the callable to
#: measure and a cleanup callable.
GilAction = Callable[[], Tuple[Callable[[], Any], Callable[[], Any]]]


GilResult = Tuple[str, Optional[float], Optional[float], str]


def run_gil(work_dir: Path, window: float, reps: int) -> List[GilResult]:
    """(condition, other thread's speed relative to alone, its stalled fraction, note) per
    condition: the median over ``reps`` repetitions of (rate during the action) / (mean rate
    alone just before and just after it), and of the fraction of the action's time in which
    the other thread could not run at all."""
    large = documents.document("large")
    small = documents.document("small")
    payload = atomicjson.canonical_bytes(large)

    def loop(fn: Callable[[], Any]) -> GilAction:
        def run() -> None:
            end = time.perf_counter() + window
            fn()
            while time.perf_counter() < end:
                fn()
        return lambda: (run, lambda: None)

    def wait_for_held_lock(write: Callable[[str, Any], Any], name: str) -> GilAction:
        target = str(work_dir / f"gil-wait-{name}.json")
        lock_path = str(legacy.lock_path_for(target))
        write(target, small)  # warm-up: the files exist

        def prepare() -> Tuple[Callable[[], Any], Callable[[], Any]]:
            holder = subprocess.Popen([sys.executable, "-c", _HOLDER, lock_path, str(window)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdin is not None
            holder.stdout.readline()  # "locked": the write below waits ~window seconds

            def cleanup() -> None:
                assert holder.stdin is not None
                holder.stdin.close()
                holder.wait()
            return (lambda: write(target, small)), cleanup
        return prepare

    t_large = str(work_dir / "gil-large.json")
    conditions: List[Tuple[str, GilAction, str]] = [
        ("atomicjson: write_json 4 MB, durable (whole call)",
         loop(lambda: atomicjson.write_json(t_large, large)),
         "includes serializing, which holds the GIL by design"),
        ("atomicjson: write_bytes of the 4 MB bytes, durable (lock, write, fsyncs)",
         loop(lambda: atomicjson.write_bytes(t_large, payload)), "bar: >= 90%"),
        ("atomicjson: write_json waiting for a lock another process holds",
         wait_for_held_lock(lambda t, d: atomicjson.write_json(t, d, lock_timeout=None),
                            "aj"), "bar: >= 90%"),
        ("legacy: write_atomic_json_with_lock 4 MB (whole call)",
         loop(lambda: legacy.write_atomic_json_with_lock(t_large, large)), ""),
        ("legacy: waiting for a held lock (100 ms poll)",
         wait_for_held_lock(lambda t, d: legacy.write_atomic_json_with_lock(t, d, 60.0),
                            "legacy"), ""),
    ]
    w = quick.orjson_filelock_writer(t_large, large)
    if w is not None:
        conditions.append(("orjson+filelock: write 4 MB, durable (whole call)", loop(w), ""))
        ws = quick.orjson_filelock_writer(str(work_dir / "gil-wait-oj.json"), small)
        conditions.append(("orjson+filelock: waiting for a held lock (50 ms poll)",
                           wait_for_held_lock(lambda t, d: ws(), "oj"), ""))

    out = []
    spinner = Spinner()
    spinner.start()
    try:
        time.sleep(0.2)
        for name, prepare, note in conditions:
            ratios, stalls = [], []
            try:
                for _ in range(reps):
                    # Dirty pages left by an earlier write (a non-durable one, or another
                    # process's) would be written back by kernel threads during the
                    # measurement, competing with the threads measured: flush them first.
                    os.sync()
                    before = _alone(spinner, window)
                    act, cleanup = prepare()  # e.g. start the lock holder: not measured
                    try:
                        during, stalled = _rate_during(spinner, act)
                        after = _alone(spinner, window)
                    finally:
                        cleanup()
                    ratios.append(during / ((before + after) / 2))
                    stalls.append(stalled)
            except Exception as exc:
                out.append((name, None, None, f"error: {quick.short_error(exc)}"))
                continue
            rel, stall = statistics.median(ratios), statistics.median(stalls)
            out.append((name, rel, stall, note))
            each = ", ".join(f"{100 * r:.0f}" for r in ratios)
            print(f"  gil: {name}: {100 * rel:.0f}% (of {each}); stalled {100 * stall:.1f}%",
                  file=sys.stderr)
    finally:
        spinner.stop = True
        spinner.join()
    return out


def gil_table(results: List[GilResult]) -> str:
    lines = ["| while this thread is ... | other thread's speed (vs alone) | "
             "time it could not run at all | note |", "|---|---|---|---|"]
    for name, rel, stall, note in results:
        rel_s = "n/a" if rel is None else f"{100 * rel:.0f}%"
        stall_s = "n/a" if stall is None else f"{100 * stall:.1f}%"
        lines.append(f"| {name} | {rel_s} | {stall_s} | {note} |")
    return "\n".join(lines)


def gil_bars(results: List[GilResult]) -> List[Bar]:
    bars = []
    for name, rel, _, note in results:
        if note.startswith("bar"):
            bars.append(Bar(f"other thread >= 90% while {name}", rel, ">=", 0.9,
                            "n/a" if rel is None else f"{100 * rel:.0f}%"))
    return bars


# --------------------------------------------------------------------------------------------
# 5. memory (each measurement in a fresh process)
# --------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(impl: str, doc_name: str, directory: str) -> None:
    """Runs in a fresh process: build the document, reset the RSS peak, write, report."""
    import resource

    doc = documents.document(doc_name)
    target = os.path.join(directory, f"mem-{impl.replace('+', '_')}-{doc_name}.json")
    write = _make_writer(impl, target, doc)
    _make_writer(impl, os.path.join(directory, "warm.json"), documents.document("small"))()
    gc.collect()
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        reset = False
    base = _status_kb("VmRSS") if reset else max(_status_kb("VmHWM"), _status_kb("VmRSS"))
    t0 = time.perf_counter()
    write()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"impl": impl, "doc": doc_name, "base_kb": base, "peak_kb": peak,
                      "maxrss_kb": maxrss, "output": os.path.getsize(target),
                      "seconds": seconds, "reset": reset}))


def run_memory(work_dir: Path, doc_names: Sequence[str]) -> List[Dict[str, Any]]:
    out = []
    for doc_name in doc_names:
        impls = IMPLEMENTATIONS if doc_name != "huge" else ["atomicjson", "orjson+filelock"]
        for impl in impls:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                   "--memory-child", impl, doc_name, str(work_dir)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                out.append({"impl": impl, "doc": doc_name, "error": err[:80]})
                continue
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec["added"] = max(0, rec["peak_kb"] - rec["base_kb"]) * 1024
            rec["ratio"] = rec["added"] / rec["output"] if rec["output"] else None
            out.append(rec)
            print(f"  memory {impl} {doc_name}: +{rec['added'] / 1e6:.1f} MB for "
                  f"{rec['output'] / 1e6:.1f} MB", file=sys.stderr)
            for f in work_dir.glob("mem-*"):
                f.unlink()
    return out


def memory_table(results: List[Dict[str, Any]]) -> str:
    lines = ["| document | implementation | output | peak RSS added | added / output | "
             "write time |", "|---|---|---|---|---|---|"]
    for r in results:
        label = documents.LABELS[r["doc"]]
        if "error" in r:
            lines.append(f"| {label} | {r['impl']} | error: {r['error']} | | | |")
            continue
        note = "" if r["reset"] else " (peak not resettable: upper bound)"
        lines.append(f"| {label} | {r['impl']} | {r['output'] / 1e6:.1f} MB | "
                     f"{r['added'] / 1e6:.1f} MB{note} | {r['ratio']:.2f}x | "
                     f"{fmt_time(r['seconds'])} |")
    return "\n".join(lines)


def memory_bars(results: List[Dict[str, Any]]) -> List[Bar]:
    return [Bar(f"atomicjson write_json {documents.LABELS[r['doc']]}: peak RSS added <= 1.5x "
                "output", r.get("ratio"), "<=", 1.5,
                "n/a" if r.get("ratio") is None else f"{r['ratio']:.2f}x")
            for r in results if r["impl"] == "atomicjson"]


# --------------------------------------------------------------------------------------------
# the chart
# --------------------------------------------------------------------------------------------
def draw_chart(path: Path, ser_rows: List[Row], write_rows: List[Row],
               contention: Dict[Tuple[str, int], ContentionResult], counts: Sequence[int],
               gil: List[GilResult],
               memory: List[Dict[str, Any]]) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("matplotlib is not importable: chart skipped "
                "(pip install matplotlib, then run again)")
    fig, axes = plt.subplots(2, 4, figsize=(22, 10))
    colors = {"atomicjson": "#1f77b4", "legacy": "#d62728", "orjson": "#2ca02c",
              "orjson+filelock": "#2ca02c", "floor": "#7f7f7f", "json": "#ff7f0e"}

    # serialization: canonical_bytes vs legacy vs orjson, per document (log scale)
    ax = axes[0][0]
    docs_ = []
    series: Dict[str, List[float]] = {"atomicjson": [], "legacy": [], "orjson": []}
    for r in ser_rows:
        if r.section != "canonical_bytes":
            continue
        if r.doc not in docs_:
            docs_.append(r.doc)
            series["atomicjson"].append(r.subject_m.median or 0)
        key = "legacy" if "legacy" in r.reference else "orjson"
        series[key].append((r.reference_m.median or 0) if r.reference_m else 0)
    _grouped_bars(ax, docs_, series, colors, log=True)
    ax.set_title("canonical serialization (median, lower is better)")
    ax.set_ylabel("seconds")

    # parse and dumps: speedup of atomicjson over json
    ax = axes[0][1]
    labels, vals = [], []
    for r in ser_rows:
        if r.reference in ("json.dumps", "json.loads(file bytes)", "json.loads"):
            labels.append(f"{r.subject}\n{r.section.split(' (')[-1].rstrip(')')}\n{r.doc}")
            vals.append(r.ratio or 0)
    ax.bar(range(len(vals)), vals, color=colors["atomicjson"])
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, fontsize=6, rotation=60, ha="right")
    ax.axhline(1, color="black", lw=0.8)
    ax.set_title("dumps / read_json / loads: x faster than json")

    # writes vs the floor
    ax = axes[0][2]
    labels, vals, cols = [], [], []
    for r in write_rows:
        labels.append(f"{r.subject}\n{r.doc} {r.section.split('(')[-1].rstrip(')')}")
        vals.append(r.ratio or 0)
        cols.append(colors["legacy"] if "legacy" in r.subject else colors["orjson"]
                    if "orjson" in r.subject else colors["atomicjson"])
    ax.bar(range(len(vals)), vals, color=cols)
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, fontsize=5.5, rotation=60, ha="right")
    ax.axhline(1, color="black", lw=0.8)
    _log_if_positive(ax, vals)
    ax.set_title("whole write: time / floor (1 = the bare syscalls)")

    # contention p99 and throughput
    for ax, what in ((axes[1][0], "p99"), (axes[1][1], "throughput")):
        for impl in IMPLEMENTATIONS:
            xs, ys = [], []
            for n in counts:
                r = contention.get((impl, n))
                if r is None or r.error:
                    continue
                v = r.pct(0.99) if what == "p99" else r.throughput
                if v:
                    xs.append(n)
                    ys.append(v)
            ax.plot(xs, ys, marker="o", label=impl, color=colors[impl])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("writer processes")
        if what == "p99":
            _log_if_positive(ax, [r.pct(0.99) or 0 for r in contention.values()])
            ax.set_title("contention: p99 latency per write (s, lower is better)")
        else:
            ax.set_title("contention: throughput (writes/s, higher is better)")
        ax.legend(fontsize=8)

    # the GIL
    ax = axes[0][3]
    labels, vals = [], []
    for name, rel, _, _ in gil:
        who, what = name.split(": ", 1)
        labels.append(f"{who}:\n{what[:40]}")
        vals.append(100 * (rel or 0))
    ax.barh(range(len(vals)), vals, color=[
        colors["atomicjson"] if lbl.startswith("atomicjson") else colors["legacy"]
        if lbl.startswith("legacy") else colors["orjson"] for lbl in labels])
    ax.set_yticks(range(len(vals)))
    ax.set_yticklabels(labels, fontsize=6)
    ax.axvline(90, color="black", lw=0.8, ls="--")
    ax.set_title("GIL: other thread's speed, % of alone (bar 90%)")

    # memory
    ax = axes[1][3]
    labels, vals = [], []
    for m in memory:
        if m.get("ratio") is not None:
            labels.append(f"{m['impl']}\n{documents.LABELS[m['doc']]}")
            vals.append(m["ratio"])
    ax.bar(range(len(vals)), vals, color=[
        colors["atomicjson"] if lbl.startswith("atomicjson") else colors["legacy"]
        if lbl.startswith("legacy") else colors["orjson"] for lbl in labels])
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.axhline(1.5, color="black", lw=0.8, ls="--")
    _log_if_positive(ax, vals)
    ax.set_title("peak RSS added / output size (bar 1.5x)")
    for ax, has_data in ((axes[0][0], bool(docs_)), (axes[0][1], bool(ser_rows)),
                         (axes[0][2], bool(write_rows)), (axes[1][0], bool(contention)),
                         (axes[1][1], bool(contention)), (axes[0][3], bool(gil)),
                         (axes[1][3], bool(memory))):
        if not has_data:
            title = ax.get_title()
            ax.clear()
            _empty(ax, title)
    axes[1][2].axis("off")  # unused
    fig.suptitle(f"atomicjson benchmarks, {time.strftime('%Y-%m-%d')} — ratios from one run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _log_if_positive(ax: Any, values: Sequence[float], axis: str = "y") -> None:
    if any(v > 0 for v in values):
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center",
            transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _grouped_bars(ax: Any, groups: List[str], series: Dict[str, List[float]],
                  colors: Dict[str, str], log: bool = False) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(vals))]
        ax.bar(xs, vals, width=width, label=name, color=colors.get(name))
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups)
    if log:
        _log_if_positive(ax, [v for vals in series.values() for v in vals])
    ax.legend(fontsize=8)


# --------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="benches/run_all.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about two minutes, fewer samples")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--no-huge", action="store_true", help="skip the ~200 MB memory case")
    ap.add_argument("--dir", type=Path, default=None,
                    help="directory for the files written (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs",
                    help="where benchmarks.md and benchmarks.png go (default: docs/)")
    ap.add_argument("--memory-child", nargs=3, metavar=("IMPL", "DOC", "DIR"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")

    if args.quick:
        repeats, sample_time, rounds = 5, 0.03, 3
        per_round = {"small": 15, "medium": 10, "large": 3}
        counts, duration, gil_window, gil_reps = [1, 2, 4, 8, 16], 1.0, 0.15, 5
    else:
        repeats, sample_time, rounds = 9, 0.08, 6
        per_round = {"small": 40, "medium": 25, "large": 5}
        counts, duration, gil_window, gil_reps = [1, 2, 4, 8, 16], 3.0, 0.2, 11
    names = ["small", "medium", "large"]

    work_dir = Path(tempfile.mkdtemp(prefix="atomicjson-bench-", dir=args.dir))
    started = time.perf_counter()
    machine = quick.machine_description(work_dir)
    ser_rows: List[Row] = []
    write_rows: List[Row] = []
    contention: Dict[Tuple[str, int], ContentionResult] = {}
    gil: List[GilResult] = []
    memory: List[Dict[str, Any]] = []
    try:
        if "serialization" in sections:
            print("serialization ...", file=sys.stderr)
            ser_rows += quick.serialization_rows(names, repeats, sample_time)
            ser_rows += quick.dumps_rows(names, repeats, sample_time)
            ser_rows += quick.parse_rows(names, repeats, sample_time, work_dir)
        if "writes" in sections:
            print("writes ...", file=sys.stderr)
            write_rows += quick.write_floor_rows(names, work_dir, durable_modes=[True, False],
                                                 rounds=rounds, per_round=per_round,
                                                 others=True)
        if "contention" in sections:
            print("contention ...", file=sys.stderr)
            contention = run_contention(work_dir, counts, duration)
        if "gil" in sections:
            print("gil ...", file=sys.stderr)
            gil = run_gil(work_dir, gil_window, gil_reps)
        if "memory" in sections:
            print("memory ...", file=sys.stderr)
            memory = run_memory(work_dir, ["large"] if args.no_huge else ["large", "huge"])
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started

    bars = bars_from_rows(ser_rows) + bars_from_rows(write_rows)
    if contention:
        bars += contention_bars(contention)
    bars += gil_bars(gil) + memory_bars(memory)

    sizes = ", ".join(f"{documents.LABELS[n]} = "
                      f"{len(atomicjson.canonical_bytes(documents.document(n))):,} B"
                      for n in names)
    md: List[str] = ["# atomicjson benchmarks", ""]
    md.append(f"Generated by `python benches/run_all.py{' --quick' if args.quick else ''}` "
              f"in {elapsed:.0f} s. Every figure and ratio below was measured in that one run "
              "on this machine; see `benches/README.md` for what each measurement does and how "
              "to read the ratios.")
    md.append("")
    md += [f"- {line}" for line in machine]
    if quick.build_profile() == "debug":
        md.append("- **warning: a debug build of the extension: these figures mean nothing; "
                  "build with `maturin develop --release`**")
    md.append(f"- documents (`benches/documents.py`, canonical size): {sizes}"
              + ("" if args.no_huge or "memory" not in sections else ", and ~200 MB for memory"))
    md.append("")
    md.append("## The bars of issue 6")
    md.append("")
    md.append("| bar | measured | result |")
    md.append("|---|---|---|")
    for b in bars:
        md.append(f"| {b.text} | {b.shown} | **{b.verdict}** |")
    md.append("")
    if ser_rows:
        md += ["## 1. Serialization and parsing", "",
               f"Median time per call ({repeats} samples, round-robin between the contenders; "
               "gc off during a sample). \"x faster\" = the other's median / atomicjson's.", "",
               markdown_table(ser_rows), "", quick.FOOTNOTES, ""]
    if write_rows:
        md += ["## 2. Whole writes against the floor", "",
               f"Median time per write ({rounds} interleaved rounds). The "
               f"{quick.floor_name()} issues open lock, flock, create temp, write, fsync, "
               "close, rename, directory fsync, unlock for a ready buffer of the same size; "
               "\"N x of it\" = the write's median / the floor's (1.00x = no overhead). "
               "The legacy helper has no non-durable mode.", "",
               markdown_table(write_rows), ""]
    if contention:
        md += ["## 3. Contention", "",
               f"N processes write the 3 KB document (durable) to one file for {duration:.0f} s "
               "each; latency is per write call including the lock wait; throughput = all "
               "writes / wall time.", "", contention_table(contention, counts), ""]
    if gil:
        md += ["## 4. The GIL", "",
               "Speed of another Python thread (a counting loop) while this thread does the "
               "action, relative to its speed alone (measured just before and after); median "
               f"of {gil_reps} repetitions of {gil_window:.1f} s windows.", "",
               gil_table(gil), ""]
    if memory:
        md += ["## 5. Memory", "",
               "Peak RSS added by one write, in a fresh process after the document is built "
               "(peak reset through `/proc/self/clear_refs`, read from `VmHWM`).", "",
               memory_table(memory), ""]

    args.out.mkdir(parents=True, exist_ok=True)
    chart_msg = None
    if ser_rows or write_rows or contention or gil or memory:
        try:
            chart_msg = draw_chart(args.out / "benchmarks.png", ser_rows, write_rows,
                                   contention, counts, gil, memory)
        except Exception as exc:  # the tables matter more than the picture
            chart_msg = f"chart failed: {quick.short_error(exc)}"
        if chart_msg is None:
            md += ["## Chart", "", "![benchmarks](benchmarks.png)", ""]
        else:
            print(f"note: {chart_msg}", file=sys.stderr)
    text = "\n".join(md)
    (args.out / "benchmarks.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nwritten: {args.out / 'benchmarks.md'}"
          + ("" if chart_msg else f", {args.out / 'benchmarks.png'}"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
