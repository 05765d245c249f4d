"""Read-modify-write without lost updates: update_json, locked_json, re-entrant locks, threads,
real processes (also mixed with the legacy fcntl.flock protocol), and a pipeline-shaped run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Dict, List

import pytest

import atomicjson
import legacy
from conftest import child_env, run_python, temp_files


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def start_workers(code: str, argv_list):
    """Start one interpreter per argv (all at once) running `code`."""
    return [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, argv)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env())
            for argv in argv_list]


def wait_all(procs, timeout=90):
    deadline = time.monotonic() + timeout
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rc, out, err in outputs:
        assert rc == 0, f"worker failed ({rc}):\n{out}\n{err}"
    return outputs


# ---------------------------------------------------------------------------------------------
# update_json
# ---------------------------------------------------------------------------------------------
def test_update_json_default_is_a_deep_copy(tmp_path):
    target = tmp_path / "index.json"
    default = {"runs": [], "meta": {"n": 0}}
    pristine = copy.deepcopy(default)
    seen = []

    def fn(current):
        seen.append(current)
        assert current == pristine
        assert current is not default and current["runs"] is not default["runs"]
        current["runs"].append("r1")
        current["meta"]["n"] += 1
        return current

    result = atomicjson.update_json(target, fn, default=default)
    assert default == pristine  # the caller's default object is untouched
    assert result == {"runs": ["r1"], "meta": {"n": 1}}
    assert target.read_bytes() == atomicjson.canonical_bytes(result)
    # a second call reads the file, not the default
    result = atomicjson.update_json(target, lambda d: {**d, "runs": d["runs"] + ["r2"]},
                                    default=default)
    assert atomicjson.read_json(target) == {"runs": ["r1", "r2"], "meta": {"n": 1}} == result
    assert default == pristine and len(seen) == 1
    assert legacy.lock_is_free(target)


def test_update_json_default_none_and_canonical_form(tmp_path):
    import pandas as pd

    target = tmp_path / "x.json"
    got: List[Any] = []
    atomicjson.update_json(target, lambda d: got.append(d) or {  # type: ignore[func-returns-value]
"b": {2, 1},
                                                                   "a": pd.Timestamp("2024-01-02")})
    assert got == [None]
    assert target.read_bytes() == atomicjson.canonical_bytes({"a": "2024-01-02T00:00:00",
                                                              "b": [1, 2]})
    assert atomicjson.read_json(target) == {"a": "2024-01-02T00:00:00", "b": [1, 2]}


def test_update_json_reads_existing_file(tmp_path):
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"n": 41, "nested": {"x": [1, 2]}})
    assert atomicjson.update_json(target, lambda d: {**d, "n": d["n"] + 1}, default={"n": 0}) \
        == {"n": 42, "nested": {"x": [1, 2]}}
    assert atomicjson.read_json(target)["n"] == 42


class Boom(Exception):
    pass


def test_update_json_fn_raises_nothing_written_lock_released(tmp_path):
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"n": 1})
    before = target.read_bytes()
    inode = target.stat().st_ino

    def fn(doc):
        doc["n"] = 999
        raise Boom("no")

    with pytest.raises(Boom):
        atomicjson.update_json(target, fn, default={})
    assert target.read_bytes() == before and target.stat().st_ino == inode
    assert temp_files(tmp_path) == []
    assert legacy.lock_is_free(target)
    # and with a missing file: nothing created
    missing = tmp_path / "missing.json"
    with pytest.raises(KeyError):
        atomicjson.update_json(missing, lambda d: d["absent"], default={})
    assert not missing.exists() and legacy.lock_is_free(missing)
    # the lock really is free for the next caller, in another process too
    res = run_python("import atomicjson, sys; atomicjson.write_json(sys.argv[1], 1, lock_timeout=0)",
                     str(target))
    assert res.returncode == 0, res.stderr


def test_update_json_unserializable_result_writes_nothing(tmp_path):
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"n": 1})
    before = target.read_bytes()
    with pytest.raises(atomicjson.SerializationError):
        atomicjson.update_json(target, lambda d: {"bad": object()})
    assert target.read_bytes() == before and legacy.lock_is_free(target)
    assert temp_files(tmp_path) == []


def test_update_json_lock_timeout(tmp_path, hold_lock):
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"n": 1})
    calls: List[Any] = []
    with hold_lock(legacy.lock_path_for(target)):
        t0 = time.monotonic()
        with pytest.raises(atomicjson.LockTimeoutError):
            atomicjson.update_json(target, calls.append, lock_timeout=0.3)
        assert time.monotonic() - t0 < 5
    assert calls == []  # fn never ran without the lock
    assert atomicjson.read_json(target) == {"n": 1}


# ---------------------------------------------------------------------------------------------
# locked_json
# ---------------------------------------------------------------------------------------------
def test_locked_json_mutate_and_write(tmp_path):
    target = tmp_path / "metrics.json"
    default = {"runs": 0, "seen": []}
    with atomicjson.locked_json(target, default=default) as doc:
        assert doc == default and doc is not default and doc["seen"] is not default["seen"]
        assert not legacy.lock_is_free(target)  # held for the whole block
        doc["runs"] += 1
        doc["seen"].append("a")
        assert not target.exists()  # written on exit, not before
    assert default == {"runs": 0, "seen": []}
    assert target.read_bytes() == atomicjson.canonical_bytes({"runs": 1, "seen": ["a"]})
    assert legacy.lock_is_free(target)
    with atomicjson.locked_json(target, default=default) as doc:
        doc["runs"] += 1
    assert atomicjson.read_json(target) == {"runs": 2, "seen": ["a"]}


def test_locked_json_replace_via_data(tmp_path):
    target = tmp_path / "index.json"
    atomicjson.write_json(target, [{"k": 1, "keep": True}, {"k": 2, "keep": False}])
    cm = atomicjson.locked_json(target, default=[])
    with cm as entries:
        assert cm.data is entries
        cm.data = [e for e in entries if e["keep"]]
    assert atomicjson.read_json(target) == [{"k": 1, "keep": True}]
    # replacing a missing document's default by a scalar
    other = tmp_path / "scalar.json"
    cm = atomicjson.locked_json(other)
    with cm as doc:
        assert doc is None
        cm.data = 7
    assert other.read_bytes() == b"7\n"


def test_locked_json_exception_writes_nothing(tmp_path):
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"n": 1})
    before = target.read_bytes()
    with pytest.raises(Boom):
        with atomicjson.locked_json(target, default={}) as doc:
            doc["n"] = 2
            raise Boom()
    assert target.read_bytes() == before and legacy.lock_is_free(target)
    missing = tmp_path / "new.json"
    with pytest.raises(Boom):
        with atomicjson.locked_json(missing, default={}) as doc:
            doc["x"] = 1
            raise Boom()
    assert not missing.exists() and legacy.lock_is_free(missing)
    assert temp_files(tmp_path) == []


def test_locked_json_unserializable_on_exit(tmp_path):
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"n": 1})
    with pytest.raises(atomicjson.SerializationError):
        with atomicjson.locked_json(target) as doc:
            doc["bad"] = object()
    assert atomicjson.read_json(target) == {"n": 1} and legacy.lock_is_free(target)


# ---------------------------------------------------------------------------------------------
# Re-entrancy (in a child process: a deadlock shows up as a timeout, not a hung test run)
# ---------------------------------------------------------------------------------------------
REENTRANT = """
import json, sys
import atomicjson, legacy
target = sys.argv[1]

def free():
    return legacy.lock_is_free(target)

with atomicjson.lock(target, timeout=5):
    atomicjson.write_json(target, {"n": 1}, lock_timeout=5)
    assert not free(), "write_json released the outer lock"
    assert atomicjson.read_json(target) == {"n": 1}
    new = atomicjson.update_json(target, lambda d: {"n": d["n"] + 1}, lock_timeout=5)
    assert new == {"n": 2} and not free(), "update_json released the outer lock"
    with atomicjson.locked_json(target, lock_timeout=5) as doc:
        doc["n"] += 1
    assert not free(), "locked_json released the outer lock"
    with atomicjson.lock(target, timeout=5):
        atomicjson.write_bytes(target, b'{"n": 10}\\n', lock_timeout=5)
    assert not free(), "the inner lock() released the outer one"
    atomicjson.write_dumps(target, {"n": 11}, lock_timeout=5)
    assert not free()
    assert json.load(open(target)) == {"n": 11}
assert free(), "lock still held after the outer block"
with atomicjson.lock(target, timeout=0):
    pass
print("ok")
"""


def test_reentrant_lock_in_one_thread(tmp_path):
    res = run_python(REENTRANT, str(tmp_path / "r.json"), timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_reentrant_through_compat(tmp_path):
    code = """
import sys, atomicjson
from atomicjson import compat
t = sys.argv[1]
with atomicjson.lock(t, timeout=5):
    compat.write_atomic_json_with_lock(t, {"a": 1}, lock_timeout=5)
    compat.write_json_dump_with_lock(t, {"a": 2}, lock_timeout=5)
    assert compat.read_atomic_json(t) == {"a": 2}
print("ok")
"""
    res = run_python(code, str(tmp_path / "c.json"), timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_other_thread_waits_for_the_holder(tmp_path):
    target = tmp_path / "t.json"
    atomicjson.write_json(target, {"n": 0})
    order = []
    with atomicjson.lock(target):
        th = threading.Thread(target=lambda: order.append(
            atomicjson.update_json(target, lambda d: {"n": d["n"] + 1})))
        th.start()
        time.sleep(0.3)
        assert th.is_alive(), "another thread got into a lock this thread holds"
        atomicjson.write_json(target, {"n": 10})  # re-entrant in this thread
        order.append("holder")
    th.join(10)
    assert not th.is_alive()
    assert order == ["holder", {"n": 11}]
    assert atomicjson.read_json(target) == {"n": 11}


def test_other_thread_times_out_while_held(tmp_path):
    target = tmp_path / "t.json"
    errors = []
    with atomicjson.lock(target):
        th = threading.Thread(target=lambda: errors.append(
            _catch(lambda: atomicjson.write_json(target, 1, lock_timeout=0.2))))
        th.start()
        th.join(10)
    assert len(errors) == 1 and isinstance(errors[0], atomicjson.LockTimeoutError)
    assert not target.exists()


def _catch(fn):
    try:
        fn()
    except Exception as e:
        return e
    return None


# ---------------------------------------------------------------------------------------------
# Threads of one process
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["update_json", "locked_json"])
def test_threads_lose_no_update(tmp_path, api):
    target = tmp_path / "counter.json"
    n_threads, rounds = 8, 60
    barrier = threading.Barrier(n_threads)
    errors = []

    def work(tid):
        try:
            barrier.wait()
            for i in range(rounds):
                if api == "update_json":
                    atomicjson.update_json(
                        target, lambda d: {"n": d["n"] + 1, "by": {**d["by"], str(tid): i + 1}},
                        default={"n": 0, "by": {}}, durable=False)
                else:
                    with atomicjson.locked_json(target, default={"n": 0, "by": {}},
                                                durable=False) as d:
                        d["n"] += 1
                        d["by"][str(tid)] = i + 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    assert errors == []
    doc = atomicjson.read_json(target)
    assert doc["n"] == n_threads * rounds
    assert doc["by"] == {str(t): rounds for t in range(n_threads)}
    assert legacy.lock_is_free(target)


# ---------------------------------------------------------------------------------------------
# Real processes: 8 x 200 increments, also mixed with the legacy protocol
# ---------------------------------------------------------------------------------------------
COUNTER_WORKER = """
import json, os, sys, time
import atomicjson, legacy

target, mode, rounds, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# The legacy protocol (open(lock, "w") + flock(LOCK_EX | LOCK_NB) polled until a timeout), with a
# shorter poll so that the test does not spend minutes sleeping: same lock, same exclusion.
legacy.LOCK_POLL_INTERVAL = 0.002
lock_path = legacy.lock_path_for(target)
while not os.path.exists(go):
    time.sleep(0.001)

def bump(doc):
    return {"n": doc["n"] + 1, "last": sys.argv[5]}

for _ in range(rounds):
    if mode == "atomicjson":
        atomicjson.update_json(target, bump, default={"n": 0}, lock_timeout=120)
    else:
        with legacy.legacy_lock(lock_path, timeout=120):
            with open(target, "rb") as f:
                doc = json.loads(f.read())  # raises on a torn file
            legacy.write_atomic_json(target, bump(doc))
print("done")
"""


@pytest.mark.parametrize("legacy_share", [0, 4], ids=["all-atomicjson", "half-legacy"])
def test_processes_lose_no_update(tmp_path, legacy_share):
    target = tmp_path / "counter.json"
    go = tmp_path / "go"
    n_procs, rounds = 8, 200
    modes = ["legacy"] * legacy_share + ["atomicjson"] * (n_procs - legacy_share)
    if legacy_share:
        legacy.write_atomic_json(target, {"n": 0})  # legacy readers need the file to exist
    procs = start_workers(COUNTER_WORKER,
                          [(target, mode, rounds, go, i) for i, mode in enumerate(modes)])
    time.sleep(0.3)
    go.touch()
    wait_all(procs, timeout=120)
    doc = atomicjson.read_json(target)
    assert doc["n"] == n_procs * rounds == 1600
    assert target.read_bytes() == legacy.canonical_dump(doc)
    assert temp_files(tmp_path) == []
    assert legacy.lock_is_free(target)


# ---------------------------------------------------------------------------------------------
# A pipeline-shaped run
# ---------------------------------------------------------------------------------------------
COHORT_SRC = """
import datetime, decimal, pathlib
import numpy as np
import pandas as pd
from strategies import Color, Fold, Level, Point, Status


def cohort_data(cid, rnd):
    rng = np.random.default_rng(1000 * cid + rnd)
    scores = rng.normal(size=5)
    created = pd.Timestamp("2024-03-01 12:00:00.123456789", tz="UTC") + pd.Timedelta(minutes=cid, seconds=rnd)
    metadata = {
        "cohort": cid, "round": rnd, "created": created, "status": Status.OK,
        "level": Level.HIGH, "color": Color.BLUE, "name": f"c\\u00f6hort-{cid}\\u2028\\U0001f600",
        "paths": {"root": pathlib.Path(f"/data/cohort{cid}"), "out": pathlib.Path("out/x.tar.gz")},
        "tags": {f"t{cid % 3}", "base", "zeta", 10, 9},
        "frozen": frozenset({3, 1, 2}), "price": decimal.Decimal("1.10"),
        "fold": Fold(cid, [float(x) for x in scores[:2]], {"k": np.int64(cid)}),
        "by_size": {10: "ten", 9: "nine", 100: "hundred"},
        "params": {"lr": np.float32(0.001), "layers": (64, 32), "dropout": None, "flag": np.bool_(True)},
    }
    metrics = {
        "auc": np.float64(scores.mean()), "scores": scores, "nan": float("nan"),
        "inf": float("inf"), "counts": np.arange(cid + 2, dtype=np.int32),
        "point": Point(0.5, float(cid)), "big": 2**70 + cid, "neg_zero": -0.0,
        "per_fold": [{"fold": i, "score": np.float64(s)} for i, s in enumerate(scores)],
    }
    snapshot = {  # json.dump(indent=2, default=str): insertion order, str() of the rest
        "round": rnd, "features": [f"f{i}" for i in range(cid + 3)], "created": created,
        "weights": {"b": 1.5, "a": [1, 2], "\\u00e9": "\\u2028"}, "ratio": float(scores[0]),
        "path": pathlib.Path("/models") / f"c{cid}.pt", "level": Level.LOW, "color": Color.RED,
        "fold": Fold(1, [0.5], {}),
    }
    metric_deltas = {"auc": float(scores[1] - scores[0]), "when": created, "n": np.int16(rnd)}
    diff_prev = {"changed": sorted({f"f{i}" for i in range(cid)}), "delta": {"auc": scores[2]},
                 "set": frozenset({"a", "b"})}
    diff_baseline = {"baseline": None, "delta": [np.float64(x) for x in scores[:3]],
                     "path": pathlib.Path("baseline.json")}
    index_entry = {"cohort": cid, "round": rnd, "auc": np.float64(scores.mean()), "written": created,
                   "files": [pathlib.Path(f"cohorts/c{cid}") / n for n in ("metadata.json", "metrics.json")],
                   "status": Status.OK}
    latest = {"cohort": cid, "round": rnd, "metadata": metadata}
    return {"metadata": metadata, "metrics": metrics, "snapshot": snapshot,
            "metric_deltas": metric_deltas, "diff_prev": diff_prev,
            "diff_baseline": diff_baseline, "index_entry": index_entry, "latest": latest}
"""

PIPELINE_WORKER = COHORT_SRC + """
import os, sys, time
from pathlib import Path
import atomicjson
from atomicjson import compat

root, cohorts, rounds, go = Path(sys.argv[1]), [int(c) for c in sys.argv[2].split(",")], int(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):
    time.sleep(0.001)
for rnd in range(rounds):
    for cid in cohorts:
        d = cohort_data(cid, rnd)
        base = root / "cohorts" / f"c{cid}"
        compat.write_atomic_json_with_lock(base / "metadata.json", d["metadata"])
        compat._write_atomic_json_with_lock(str(base / "metrics.json"), d["metrics"])
        compat.write_json_dump_with_lock(base / "snapshot.json", d["snapshot"])
        compat.write_atomic_json(base / "metric_deltas.json", d["metric_deltas"])
        compat._write_atomic_json(base / "diff_prev.json", d["diff_prev"], default=str)
        compat.write_atomic_json(base / "diff_baseline.json", d["diff_baseline"])
        compat.write_atomic_json_with_lock(root / "latest.json", d["latest"])
        key = f"c{cid}/r{rnd}"
        atomicjson.update_json(root / "snapshot_index.json",
                               lambda index: {**index, key: d["index_entry"]}, default={})
print("done")
"""

CALLS = [  # file name, data key, legacy writer
    ("metadata.json", "metadata", legacy.write_atomic_json_with_lock),
    ("metrics.json", "metrics", legacy.write_atomic_json_with_lock),
    ("snapshot.json", "snapshot", legacy.write_json_dump_with_lock),
    ("metric_deltas.json", "metric_deltas", legacy.write_atomic_json),
    ("diff_prev.json", "diff_prev", legacy.write_atomic_json),
    ("diff_baseline.json", "diff_baseline", legacy.write_atomic_json),
]


def test_pipeline_shaped_run(tmp_path):
    root, expected_root, go = tmp_path / "run", tmp_path / "expected", tmp_path / "go"
    n_procs, per_proc, rounds = 4, 2, 3
    groups = [list(range(p * per_proc, (p + 1) * per_proc)) for p in range(n_procs)]
    procs = start_workers(PIPELINE_WORKER, [(root, ",".join(map(str, g)), rounds, go)
                                            for g in groups])
    # Meanwhile, what the legacy helpers write for the same data.
    ns: Dict[str, Any] = {}
    exec(COHORT_SRC, ns)
    cohort_data = ns["cohort_data"]
    index, latest_candidates = {}, set()
    for cid in range(n_procs * per_proc):
        for rnd in range(rounds):
            d = cohort_data(cid, rnd)
            index[f"c{cid}/r{rnd}"] = d["index_entry"]
            latest_candidates.add(legacy.canonical_dump(d["latest"]))
        for name, key, writer in CALLS:  # the last round is what stays on disk
            writer(expected_root / "cohorts" / f"c{cid}" / name, d[key])
    time.sleep(0.2)
    go.touch()
    wait_all(procs, timeout=90)

    # every file parses
    written = sorted(p for p in root.rglob("*.json"))
    for p in written:
        json.loads(p.read_bytes())
        assert atomicjson.read_json(p) is not None
    # no file differs from what the legacy writes for the same data
    for cid in range(n_procs * per_proc):
        for name, _, _ in CALLS:
            ours = root / "cohorts" / f"c{cid}" / name
            theirs = expected_root / "cohorts" / f"c{cid}" / name
            assert ours.read_bytes() == theirs.read_bytes(), f"{ours} differs from the legacy"
    assert (root / "latest.json").read_bytes() in latest_candidates
    # no index entry missing, and the index is the legacy's canonical dump of all entries
    got_index = atomicjson.read_json(root / "snapshot_index.json")
    assert sorted(got_index) == sorted(index)
    assert (root / "snapshot_index.json").read_bytes() == legacy.canonical_dump(index)
    for directory in {p.parent for p in written}:
        assert temp_files(directory) == []
    assert legacy.lock_is_free(root / "snapshot_index.json")
