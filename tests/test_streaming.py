"""Large writes: documents stream into the temp file while they are encoded, the lock covers
only the replacement, and a large replaced file is released off the caller's path.

Documents larger than one part (256 KiB) are handed to a background writer thread in parts;
these tests check, through the public API and with real files and processes, that the bytes
are exactly those of a one-shot encoding at every size around the part boundaries, that a
failure at any point leaves the target untouched and no temp file, and what the lock covers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import atomicjson
from conftest import temp_files, wait_until_blocked

PART = 256 << 10


def _rows(n_bytes: int, tag: str = "") -> Dict[str, Any]:
    """A plain document of about `n_bytes` canonical bytes (floats, strs, nesting)."""
    row = {"id": 0, "name": "feature_ä_" + tag, "score": 0.123456789012345, "ok": True,
           "tags": ["a", "b"], "none": None}
    per_row = len(atomicjson.canonical_bytes({"r": [row]})) - 10
    return {"rows": [dict(row, id=i, score=i / 7.0) for i in range(max(1, n_bytes // per_row))],
            "meta": {"tag": tag, "n": n_bytes}}


@pytest.mark.parametrize("size", [PART - 300, PART + 1, 2 * PART + 77, 5 * PART + 3, 3 << 20])
def test_streamed_bytes_are_the_one_shot_bytes(tmp_path: Path, size: int) -> None:
    doc = _rows(size, str(size))
    target = tmp_path / "m.json"
    target.write_bytes(b"old")
    for durable in (True, False):
        atomicjson.write_json(target, doc, durable=durable)
        assert target.read_bytes() == atomicjson.canonical_bytes(doc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.lock"]


def test_floats_formatted_by_the_writer_thread_are_the_canonical_text(tmp_path: Path) -> None:
    # After the first part, floats are formatted by the writer thread: every layout, numpy
    # arrays of each float width, and the non-finite values must come out as before.
    np = pytest.importorskip("numpy")
    special = [0.0, -0.0, 1e16, 9_999_999_999_999_998.0, 1e-5, 1e-4, 5e-324, 1.7976931348623157e308,
               0.1, -99_315_640_339_991.13, float("nan"), float("inf"), float("-inf"), 1 / 3]
    doc = _rows(PART + 1000, "floats")
    doc["tail"] = {
        "special": special * 50,
        "f16": np.linspace(-3, 3, 2000, dtype=np.float16),
        "f32": np.random.default_rng(7).random(20_000).astype(np.float32),
        "f64": np.random.default_rng(8).normal(size=(200, 100)),
        "scalars": [np.float32(0.1), np.float64(1e-7), np.float16(65504.0)],
    }
    target = tmp_path / "f.json"
    atomicjson.write_json(target, doc)
    assert target.read_bytes() == atomicjson.canonical_bytes(doc)
    plain = {"rows": doc["rows"], "special": special * 50}
    atomicjson.write_dumps(target, plain, indent=1)
    assert target.read_bytes() == json.dumps(plain, indent=1).encode()


def test_write_dumps_streams_json_dumps_text(tmp_path: Path) -> None:
    doc = _rows(3 << 20, "enc")
    kwargs_list: List[Dict[str, Any]] = [
        {}, {"indent": 2, "sort_keys": True}, {"separators": (",", ":"), "ensure_ascii": False}]
    for kwargs in kwargs_list:
        target = tmp_path / "e.json"
        atomicjson.write_dumps(target, doc, **kwargs)
        assert target.read_bytes() == json.dumps(doc, **kwargs).encode()


class Late:
    """Refused by the encoder (no default), placed after megabytes of output."""


@pytest.mark.parametrize("late", [Late(), float("nan")], ids=["type", "nan"])
def test_a_failure_late_in_a_large_document_leaves_nothing(tmp_path: Path, late: Any) -> None:
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"v": "old"})
    before = target.read_bytes()
    doc = _rows(3 << 20)
    doc["zz_last"] = late
    if isinstance(late, float):
        with pytest.raises(ValueError):
            atomicjson.write_dumps(target, doc, allow_nan=False)
    else:
        with pytest.raises(TypeError):
            atomicjson.write_json(target, doc)
    assert target.read_bytes() == before
    assert temp_files(tmp_path) == []
    assert atomicjson.lock_holders(target) == []


def test_a_lone_surrogate_late_in_a_large_document_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    doc = _rows(2 << 20)
    doc["zz_last"] = "\udc80"
    with pytest.raises(ValueError):
        atomicjson.write_dumps(target, doc, ensure_ascii=False)
    assert not target.exists()
    assert temp_files(tmp_path) == []


def test_the_data_is_written_before_the_lock_and_replaced_under_it(
        tmp_path: Path, hold_lock: Any) -> None:
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"v": "old"})
    old = target.read_bytes()
    doc = _rows(2 << 20, "new")
    errors: List[BaseException] = []

    def write() -> None:
        try:
            atomicjson.write_json(target, doc, lock_timeout=60)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    with hold_lock(tmp_path / "m.lock") as holder:
        writer = threading.Thread(target=write)
        writer.start()
        wait_until_blocked(tmp_path / "m.lock", None)
        # Waiting for the lock: the temp file is complete, the target untouched.
        [temp] = temp_files(tmp_path)
        assert (tmp_path / temp).read_bytes() == atomicjson.canonical_bytes(doc)
        time.sleep(0.2)
        assert target.read_bytes() == old
        assert writer.is_alive()
        holder.release()
        writer.join(60)
    assert not errors, errors
    assert target.read_bytes() == atomicjson.canonical_bytes(doc)
    assert temp_files(tmp_path) == []


def test_a_lock_timeout_removes_the_prepared_temp_file(tmp_path: Path, hold_lock: Any) -> None:
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"v": "old"})
    old = target.read_bytes()
    with hold_lock(tmp_path / "m.lock") as holder:
        for doc in ({"v": "small"}, _rows(2 << 20)):
            with pytest.raises(atomicjson.LockTimeoutError) as info:
                atomicjson.write_json(target, doc, lock_timeout=0.2)
            assert info.value.holders == [holder.pid]
            assert target.read_bytes() == old
            assert temp_files(tmp_path) == []


def _open_deleted(target: Path) -> List[str]:
    """This process's descriptors of deleted files that were `target`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link == f"{target} (deleted)":
            found.append(fd)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_large_replaced_file_is_closed_soon_after_the_write(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    big = _rows(2 << 20)
    for i in range(5):
        big["meta"]["n"] = i
        atomicjson.write_json(target, big)
        assert json.loads(target.read_bytes())["meta"]["n"] == i
    # Each replaced version was held open across its rename (on ext4, xfs, btrfs, f2fs) and is
    # closed by a background thread: none stays open for long.
    deadline = time.monotonic() + 10
    while _open_deleted(target) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_deleted(target) == []
    # A small file replacing a large one, and the other way round.
    atomicjson.write_json(target, {"small": True})
    atomicjson.write_json(target, big)
    assert target.read_bytes() == atomicjson.canonical_bytes(big)


def test_concurrent_large_writers_never_expose_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    docs = [_rows((1 << 20) + k * 300_000, f"w{k}") for k in range(3)]
    expected = {atomicjson.canonical_bytes(d) for d in docs}
    atomicjson.write_json(target, docs[0])
    stop = threading.Event()
    errors: List[BaseException] = []

    def writer(doc: Dict[str, Any]) -> None:
        try:
            for _ in range(6):
                atomicjson.write_json(target, doc, durable=False)
        except BaseException as e:
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            seen = target.read_bytes()
            if seen not in expected:
                errors.append(AssertionError(f"partial file of {len(seen)} bytes"))
                return

    threads = [threading.Thread(target=writer, args=(d,)) for d in docs]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    watcher.join(10)
    assert not errors, errors
    assert target.read_bytes() in expected
    assert temp_files(tmp_path) == []
