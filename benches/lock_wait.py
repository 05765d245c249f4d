"""How well the lock waits (issue 4): wake-up latency, timeout accuracy, CPU of a waiter, and
fairness under contention, for atomicjson against the legacy 100 ms poll and filelock.

    python benches/lock_wait.py            # ~1 minute
    python benches/lock_wait.py --smoke    # a few seconds; checks that everything runs

1. ``wake``: a holder process takes the lock, a waiter (another process) blocks on it, the
   holder notes the time and releases; the waiter notes when it got the lock. Both read
   ``CLOCK_MONOTONIC``, which is system-wide. Median, p90 and max over the rounds.
2. ``timeout``: how late a ``timeout=0.2`` wait on a held lock gives up.
3. ``cpu``: CPU time a process uses while it waits 2 s for a held lock.
4. ``fairness``: 16 processes, 16 threads of one process, and 4 processes x 4 threads, all
   writing the same file (``write_json`` of a small document, non-durable, so the lock is what
   is measured) for a fixed time: latency per write (p50, p99, max, max/p50) and the fewest
   writes any worker completed against the median worker. A starving waiter shows as a huge
   max/p50 or a worker with almost no writes.

Every figure is measured in this run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
LEGACY_POLL = 0.1  # the legacy helper's sleep between two LOCK_NB attempts

# The three ways of taking the sidecar lock, as code a child process runs: `acquire(path)`
# returns something to pass to `release`.
IMPLS: Dict[str, str] = {
    "atomicjson": textwrap.dedent("""
        import atomicjson
        def acquire(path, timeout=30.0):
            cm = atomicjson.lock(path, timeout=timeout)
            cm.__enter__()
            return cm
        def release(cm):
            cm.__exit__(None, None, None)
        def write(path, doc):
            atomicjson.write_json(path, doc, durable=False)
    """),
    "legacy (100 ms poll)": textwrap.dedent(f"""
        import fcntl, os, time, json
        from pathlib import Path
        def acquire(path, timeout=30.0):
            f = open(Path(path).with_suffix('.lock'), 'w')
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return f
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        f.close()
                        raise IOError('Could not acquire lock')
                    time.sleep({LEGACY_POLL})
        def release(f):
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        def write(path, doc):
            f = acquire(path)
            try:
                tmp = str(path) + '.tmp%d' % os.getpid()
                with open(tmp, 'w') as out:
                    json.dump(doc, out, sort_keys=True, indent=2)
                os.replace(tmp, path)
            finally:
                release(f)
    """),
    "filelock": textwrap.dedent("""
        import json, os
        from pathlib import Path
        from filelock import FileLock
        def acquire(path, timeout=30.0):
            lock = FileLock(str(Path(path).with_suffix('.lock')), timeout=timeout)
            lock.acquire()
            return lock
        def release(lock):
            lock.release()
        def write(path, doc):
            lock = acquire(path)
            try:
                tmp = str(path) + '.tmp%d' % os.getpid()
                with open(tmp, 'w') as out:
                    json.dump(doc, out, sort_keys=True, indent=2)
                os.replace(tmp, path)
            finally:
                release(lock)
    """),
}


def available_impls() -> List[str]:
    names = ["atomicjson", "legacy (100 ms poll)"]
    try:
        import filelock  # noqa: F401
        names.append("filelock")
    except ImportError:
        pass
    return names


def _child(impl: str, body: str, *args: str) -> "subprocess.Popen[str]":
    code = IMPLS[impl] + "\nimport sys, time, json, os\n" + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc: "subprocess.Popen[str]") -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(proc.stderr.read() if proc.stderr else "child died")
    return line.strip()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# ----------------------------------------------------------------------------------- 1. wake
HOLDER = """
    path = sys.argv[1]
    held = acquire(path)
    print('held', flush=True)
    sys.stdin.readline()          # the waiter is blocked now
    released = time.monotonic()
    release(held)
    print(released, flush=True)
"""
WAITER = """
    path = sys.argv[1]
    print('waiting', flush=True)
    got = acquire(path)
    print(time.monotonic(), flush=True)
    release(got)
"""


def measure_wake(impl: str, directory: Path, rounds: int) -> List[float]:
    path = str(directory / "wake.json")
    latencies = []
    for _ in range(rounds):
        holder = subprocess.Popen(
            [sys.executable, "-c", IMPLS[impl] + "\nimport sys, time\n" + textwrap.dedent(HOLDER),
             path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        _wait_for_line(holder)
        waiter = _child(impl, WAITER, path)
        _wait_for_line(waiter)
        time.sleep(0.25)  # let the waiter block (or settle into its poll)
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        released = float(_wait_for_line(holder))
        acquired = float(_wait_for_line(waiter))
        holder.wait()
        waiter.wait()
        latencies.append(acquired - released)
    return latencies


# -------------------------------------------------------------------------------- 2. timeout
TIMEOUT_WAITER = """
    path, timeout = sys.argv[1], float(sys.argv[2])
    lates = []
    for _ in range(int(sys.argv[3])):
        start = time.monotonic()
        try:
            release(acquire(path, timeout=timeout))
            raise SystemExit('acquired a held lock')
        except Exception:  # each library's own timeout exception
            pass
        lates.append(time.monotonic() - start - timeout)
    print(json.dumps(lates), flush=True)
"""


def measure_timeout(impl: str, directory: Path, rounds: int, timeout: float = 0.2) -> List[float]:
    path = directory / "timeout.json"
    lock_file = open(path.with_suffix(".lock"), "a")
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        waiter = _child(impl, TIMEOUT_WAITER, str(path), str(timeout), str(rounds))
        out, err = waiter.communicate(timeout=60 + rounds * (timeout + 0.2))
        if waiter.returncode != 0:
            raise RuntimeError(err)
        return [float(x) for x in json.loads(out)]
    finally:
        lock_file.close()


# ------------------------------------------------------------------------------------ 3. cpu
CPU_WAITER = """
    path, seconds = sys.argv[1], float(sys.argv[2])
    before = os.times()
    try:
        release(acquire(path, timeout=seconds))
    except Exception:  # each library's own timeout exception
        pass
    after = os.times()
    print((after.user - before.user) + (after.system - before.system), flush=True)
"""


def measure_cpu(impl: str, directory: Path, seconds: float) -> float:
    path = directory / "cpu.json"
    lock_file = open(path.with_suffix(".lock"), "a")
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        waiter = _child(impl, CPU_WAITER, str(path), str(seconds))
        out, err = waiter.communicate(timeout=seconds + 60)
        if waiter.returncode != 0:
            raise RuntimeError(err)
        return float(out)
    finally:
        lock_file.close()


# ------------------------------------------------------------------------------- 4. fairness
FAIR_WORKER = """
    import threading
    path, threads, start_at, stop_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    doc = {"run": os.getpid(), "metrics": {f"m{i}": i / 7 for i in range(40)}}
    results = []
    def work():
        lat = []
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while True:
            t0 = time.monotonic()
            # At least one write each: a worker that starts late (a loaded machine) still counts.
            if t0 >= stop_at and lat:
                break
            write(path, doc)
            lat.append(time.monotonic() - t0)
        results.append(lat)
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool: t.start()
    for t in pool: t.join()
    print(json.dumps(results), flush=True)
"""


def measure_fairness(impl: str, directory: Path, processes: int, threads: int,
                     duration: float) -> Dict[str, Any]:
    path = directory / f"fair_{processes}x{threads}.json"
    start_at = time.monotonic() + 1.0 + 0.05 * processes
    stop_at = start_at + duration
    procs = [_child(impl, FAIR_WORKER, str(path), str(threads), str(start_at), str(stop_at))
             for _ in range(processes)]
    per_worker: List[List[float]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration + 120)
        if proc.returncode != 0:
            raise RuntimeError(err)
        per_worker.extend(json.loads(out))
    latencies = [x for worker in per_worker for x in worker]
    counts = sorted(len(worker) for worker in per_worker)
    p50 = statistics.median(latencies)
    return {"writes": len(latencies), "p50": p50, "p99": percentile(latencies, 0.99),
            "max": max(latencies), "max/p50": max(latencies) / p50,
            "fewest": counts[0], "median worker": statistics.median(counts)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks it runs")
    args = parser.parse_args(argv)
    rounds, timeout_rounds, cpu_wait, duration = (2, 2, 0.3, 0.5) if args.smoke else (15, 10, 2.0, 4.0)
    impls = available_impls()
    print(f"# lock waiting benchmark ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})\n")
    with tempfile.TemporaryDirectory(prefix="atomicjson-lockbench-") as tmp:
        directory = Path(tmp)
        print("| implementation | wake p50 | wake p90 | wake max | timeout late p50 | "
              "timeout late max | CPU while waiting "
              f"{cpu_wait:g} s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for impl in impls:
            wake = measure_wake(impl, directory, rounds)
            late = measure_timeout(impl, directory, timeout_rounds)
            cpu = measure_cpu(impl, directory, cpu_wait)
            print(f"| {impl} | {ms(statistics.median(wake))} | {ms(percentile(wake, 0.9))} | "
                  f"{ms(max(wake))} | {ms(statistics.median(late))} | {ms(max(late))} | "
                  f"{cpu * 1000:.1f} ms |")
        print(f"\nContention: every worker writes one file for {duration:g} s "
              "(latency per write call, lock wait included).\n")
        print("| implementation | workers | writes | p50 | p99 | max | max/p50 | "
              "fewest writes by a worker | median worker |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for impl in impls:
            for processes, threads in ((16, 1), (1, 16), (4, 4)):
                r = measure_fairness(impl, directory, processes, threads, duration)
                print(f"| {impl} | {processes} proc x {threads} thr | {r['writes']} | "
                      f"{ms(r['p50'])} | {ms(r['p99'])} | {ms(r['max'])} | "
                      f"{r['max/p50']:.1f} | {r['fewest']} | {r['median worker']:g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
