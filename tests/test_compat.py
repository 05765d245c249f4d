"""atomicjson.compat against the legacy helpers (tests/legacy.py): byte-identical files, equal
results, and failures that legacy call sites still catch (``except IOError``)."""

from __future__ import annotations

import datetime
import inspect
import itertools
import json
import math
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atomicjson
import legacy
from atomicjson import compat
from conftest import temp_files
from strategies import (Color, Fold, Level, Point, beyond_legacy_values, json_values,
                        legacy_documents)

SETTINGS = settings(deadline=None, max_examples=80,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

PREFIX = "Failed to write locked JSON to {}: "
_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch():
    d = tempfile.mkdtemp(prefix="atomicjson-compat-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _pair(directory: Path, name: str = "metadata.json"):
    n = next(_counter)
    ours, theirs = directory / f"ours{n}" / name, directory / f"legacy{n}" / name
    return ours, theirs


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as e:
        return None, e


def same_py(a, b) -> bool:
    """Equality of sanitizer results: exact types, NaN-aware, order-aware, identity for the
    objects a pass leaves unchanged."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_py(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_py(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
            a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (str, int, bool, type(None))):
        return bool(a == b)
    try:
        return bool(a == b)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# Byte-identical writers
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(doc=legacy_documents())
def test_write_atomic_json_with_lock_is_byte_identical(scratch, doc):
    ours, theirs = _pair(scratch)
    legacy.write_atomic_json_with_lock(theirs, doc)
    compat.write_atomic_json_with_lock(ours, doc)
    assert ours.read_bytes() == theirs.read_bytes()
    compat._write_atomic_json_with_lock(str(ours), doc, lock_timeout=5)
    assert ours.read_bytes() == theirs.read_bytes()
    assert temp_files(ours.parent) == []
    assert ours.with_suffix(".lock").exists()


@SETTINGS
@given(doc=legacy_documents())
def test_write_atomic_json_is_second_pass_only(scratch, doc):
    ours, theirs = _pair(scratch, "diff_prev.json")
    _, legacy_err = _run(legacy.write_atomic_json, theirs, doc)
    _, err = _run(compat.write_atomic_json, ours, doc)
    if legacy_err is None:
        assert err is None, f"legacy wrote it, compat raised {err!r}"
        assert ours.read_bytes() == theirs.read_bytes()
        assert ours.read_bytes() == legacy._dump_sanitized(legacy.artifact_sanitize(doc))
        compat._write_atomic_json(ours, doc, default=str)  # default accepted and ignored
        assert ours.read_bytes() == theirs.read_bytes()
    elif err is not None:
        # Where the legacy failed (natural sort of mixed set elements in the second pass),
        # atomicjson may write; if it fails, it fails as an IOError.
        assert isinstance(err, atomicjson.AtomicJsonError)
    assert temp_files(ours.parent) == [] if ours.parent.exists() else True
    # no lock file: the shared utility never locked
    assert not ours.with_suffix(".lock").exists()


@SETTINGS
@given(doc=st.one_of(legacy_documents(max_leaves=15), json_values(unsupported=True),
                     json_values(surrogates=False, unsupported=False)))
def test_write_json_dump_with_lock_is_byte_identical(scratch, doc):
    ours, theirs = _pair(scratch, "training_snapshot.json")
    _, legacy_err = _run(legacy.write_json_dump_with_lock, theirs, doc)
    _, err = _run(compat.write_json_dump_with_lock, ours, doc)
    if legacy_err is None:
        assert err is None, f"legacy wrote it, compat raised {err!r}"
        assert ours.read_bytes() == theirs.read_bytes()
        assert ours.read_bytes() == legacy.json_dump_bytes(doc)
    else:
        assert err is not None, f"legacy raised {legacy_err!r}, compat wrote {ours.read_bytes()!r}"
        assert isinstance(err, atomicjson.AtomicJsonError)
        assert isinstance(err, IOError)
        assert str(err).startswith(PREFIX.format(ours)), str(err)
        assert not ours.exists()
    if ours.parent.exists():
        assert temp_files(ours.parent) == []


def test_write_json_dump_with_lock_details(tmp_path):
    doc = {"z": 1, "a": [1.5, float("nan")], "\u00e9": "\u2028", "when": pd.Timestamp("2024-01-02"),
           "p": Path("/x/y"), "s": {3}, 1: None, "c": Color.RED, "l": Level.HIGH,
           "pt": Point(1.0, 2.0), "np": np.float32(0.5), "i": np.int64(3)}
    ours, theirs = tmp_path / "a" / "s.json", tmp_path / "b" / "s.json"
    compat.write_json_dump_with_lock(ours, doc)
    legacy.write_json_dump_with_lock(theirs, doc)
    assert ours.read_bytes() == theirs.read_bytes() == legacy.json_dump_bytes(doc)
    assert not ours.read_bytes().endswith(b"\n")
    assert ours.read_bytes().isascii()


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(doc=legacy_documents())
def test_sanitize_for_json_is_the_first_pass(doc):
    expected = legacy.telemetry_sanitize(doc)
    for fn in (compat.sanitize_for_json, compat._sanitize_for_json):
        got = fn(doc)
        assert same_py(got, expected), (got, expected)


def test_sanitize_for_json_orders_keys_by_raw_value():
    # The first pass sorts items by the raw key (sorted(d.items(), key=lambda kv: kv[0])) and
    # only then applies str(): 9 < 10 < 100, whatever their strings.
    for doc in ({10: 1, 9: 2, 100: 3}, {2.5: "a", -1: "b", 10: "c"},
                {Level.HIGH: 1, Level.LOW: 2, 2: 3}, {"b": {10: 0, 9: 0}, "a": 1}):
        expected = legacy.telemetry_sanitize(doc)
        got = compat.sanitize_for_json(doc)
        assert same_py(got, expected), (list(got), list(expected))


def test_sanitize_for_json_leaves_other_objects_alone():
    fs = frozenset({1, 2})
    pt = Point(1.0, 2.0)
    arr = np.arange(3)
    doc = {"b": (fs, pt), "a": {2, 10}, "n": arr, "c": Color.BLUE,
           "t": pd.Timestamp("2024-01-02 03:04:05")}
    got = compat.sanitize_for_json(doc)
    assert list(got) == ["a", "b", "c", "n", "t"]
    assert got["b"][0] is fs and got["b"][1] is pt and got["n"] is arr
    assert got["a"] == [10, 2]  # sorted by str
    assert got["c"] == Color.BLUE.value and got["t"] == "2024-01-02T03:04:05"
    assert same_py(got, legacy.telemetry_sanitize(doc))


@SETTINGS
@given(doc=legacy_documents())
def test_canonical_json_matches_legacy(doc):
    for indent in (None, 2):
        expected, legacy_err = _run(legacy.canonical_json, doc, indent=indent)
        got, err = _run(compat.canonical_json, doc, indent=indent)
        if legacy_err is None:
            assert err is None, repr(err)
            assert got == expected
            assert not got.endswith("\n")
        elif err is not None:
            assert isinstance(err, atomicjson.AtomicJsonError)


def test_canonical_json_layout():
    doc = {"b": [1, {"y": 2, "x": None}], "a": "\u00e9"}
    assert compat.canonical_json(doc) == '{"a":"\u00e9","b":[1,{"x":null,"y":2}]}'
    assert compat.canonical_json(doc, indent=2) == legacy.canonical_json(doc, indent=2)
    assert compat.canonical_json(doc, indent=4) == legacy.canonical_json(doc, indent=4)
    assert compat.canonical_json(doc, indent=None) == legacy.canonical_json(doc)


@SETTINGS
@given(doc=legacy_documents(max_leaves=15), mode=st.sampled_from(["ok", "truncated", "garbage"]))
def test_read_atomic_json_matches_legacy(scratch, doc, mode):
    path = scratch / f"r{next(_counter)}.json"
    data = legacy.canonical_dump(doc)
    if mode == "truncated":
        data = data[: len(data) // 2]
    elif mode == "garbage":
        data = data.replace(b":", b"=", 1) + b"\xff"
    path.write_bytes(data)
    expected = legacy.read_atomic_json(path)
    got = compat.read_atomic_json(path)
    assert same_py(got, expected)
    if mode != "ok":
        # A cut can leave valid JSON ("0\n" -> "0"); only what json rejects must read as None.
        try:
            json.loads(data)
        except ValueError:
            assert got is None


def test_read_atomic_json_missing_invalid_unreadable(tmp_path):
    assert compat.read_atomic_json(tmp_path / "missing.json") is None
    assert compat.read_atomic_json(tmp_path / "no" / "such" / "dir.json") is None
    assert compat.read_atomic_json(tmp_path) is None  # a directory
    for data in (b"", b"{", b"[1,]", b"\xff\xfe\xfd", b"nul", b'{"a": 1} x'):
        p = tmp_path / "bad.json"
        p.write_bytes(data)
        assert compat.read_atomic_json(p) is None
        assert legacy.read_atomic_json(p) is None
    p = tmp_path / "ok.json"
    p.write_bytes(b'{"a": [NaN, 1e400, 123456789012345678901234567890]}')
    got = compat.read_atomic_json(str(p))
    assert math.isnan(got["a"][0]) and got["a"][1] == math.inf
    assert got["a"][2] == 123456789012345678901234567890


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf{\"a\": 1}",                   # UTF-8 BOM: legacy json.load(str) refuses
    '{"a": 1}'.encode("utf-16"),                 # UTF-16: legacy utf-8 text read fails
    '{"a": 1}'.encode("utf-32-le"),
], ids=["utf8-bom", "utf16", "utf32le"])
def test_read_atomic_json_encodings_like_legacy(tmp_path, data):
    # The legacy opened the file as UTF-8 text: anything else was "invalid" and gave None.
    p = tmp_path / "enc.json"
    p.write_bytes(data)
    assert legacy.read_atomic_json(p) is None
    assert compat.read_atomic_json(p) == legacy.read_atomic_json(p)


# ---------------------------------------------------------------------------------------------
# Names, signatures, aliases
# ---------------------------------------------------------------------------------------------
def test_names_and_signatures():
    assert compat._write_atomic_json_with_lock is compat.write_atomic_json_with_lock
    assert compat._write_atomic_json is compat.write_atomic_json
    assert compat._sanitize_for_json is compat.sanitize_for_json

    def params(fn):
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert params(compat.write_atomic_json_with_lock) == [
        ("file_path", inspect.Parameter.empty), ("data", inspect.Parameter.empty),
        ("lock_timeout", 30.0)]
    assert params(compat.write_json_dump_with_lock) == params(compat.write_atomic_json_with_lock)
    assert params(compat.write_atomic_json) == [
        ("file_path", inspect.Parameter.empty), ("data", inspect.Parameter.empty),
        ("default", None)]
    assert [p.name for p in inspect.signature(compat.sanitize_for_json).parameters.values()] == ["obj"]
    sig = inspect.signature(compat.canonical_json)
    assert sig.parameters["indent"].default is None
    assert [p.name for p in inspect.signature(compat.read_atomic_json).parameters.values()] == [
        "file_path"]
    # called the way legacy call sites call them
    assert compat.canonical_json({"a": 1}, indent=2) == legacy.canonical_json({"a": 1}, indent=2)


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------
class Opaque:
    pass


def _circular():
    d: Dict[str, Any] = {"a": []}
    d["a"].append(d)
    return d


LOCKED_WRITERS = [compat.write_atomic_json_with_lock, compat._write_atomic_json_with_lock,
                  compat.write_json_dump_with_lock]


@pytest.mark.parametrize("writer", LOCKED_WRITERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("make_path", [str, Path], ids=["str", "Path"])
def test_locked_writer_bad_data(tmp_path, writer, make_path):
    target = make_path(tmp_path / "m.json")
    Path(target).write_bytes(b"old")
    bad = [_circular()]
    if writer is not compat.write_json_dump_with_lock:  # default=str there writes anything
        bad += [{"a": [1, Opaque()]}, {1: "a", "1": "b"}]
    for data in bad:
        try:
            writer(target, data)
        except IOError as e:  # the legacy call sites' handler
            err = e
        else:
            pytest.fail(f"{writer.__name__} wrote {data!r}")
        assert isinstance(err, atomicjson.AtomicJsonError)
        assert str(err).startswith(PREFIX.format(target)), str(err)
        assert isinstance(err, (TypeError, ValueError))
        assert Path(target).read_bytes() == b"old"
        assert temp_files(tmp_path) == []


@pytest.mark.parametrize("writer", LOCKED_WRITERS, ids=lambda f: f.__name__)
def test_locked_writer_lock_timeout(tmp_path, hold_lock, writer):
    target = tmp_path / "metrics.json"
    with hold_lock(legacy.lock_path_for(target)):
        with pytest.raises(IOError) as info:
            writer(target, {"a": 1}, lock_timeout=0.3)
    err = info.value
    assert isinstance(err, atomicjson.AtomicJsonError)
    assert isinstance(err, TimeoutError)
    assert str(err).startswith(PREFIX.format(target)), str(err)
    assert not target.exists()
    writer(target, {"a": 1}, lock_timeout=0.3)  # released: works again
    assert json.loads(target.read_bytes()) == {"a": 1}


@pytest.mark.parametrize("writer", LOCKED_WRITERS, ids=lambda f: f.__name__)
def test_locked_writer_os_error(tmp_path, writer):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "sub" / "m.json"  # parent "directory" is a file
    with pytest.raises(IOError) as info:
        writer(target, {"a": 1})
    err = info.value
    assert isinstance(err, atomicjson.AtomicJsonError)
    assert str(err).startswith(PREFIX.format(target)), str(err)
    assert err.errno is not None


def test_write_atomic_json_failures_are_ioerrors(tmp_path):
    target = tmp_path / "d.json"
    for data in ({"a": Opaque()}, _circular(), {"x": {1: "a", "1": "b"}}):
        with pytest.raises(IOError) as info:
            compat.write_atomic_json(target, data, default=str)  # default still ignored
        assert isinstance(info.value, atomicjson.AtomicJsonError)
        assert isinstance(info.value, (TypeError, ValueError))
    assert not target.exists()
    assert temp_files(tmp_path) == []


def test_write_atomic_json_takes_no_lock(tmp_path, hold_lock):
    target = tmp_path / "diff_baseline.json"
    with hold_lock(legacy.lock_path_for(target)):
        compat.write_atomic_json(target, {"delta": 1.5})
    assert target.read_bytes() == legacy._dump_sanitized({"delta": 1.5})


# ---------------------------------------------------------------------------------------------
# What the legacy failed on, compat writes
# ---------------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=60)
@given(value=beyond_legacy_values())
def test_beyond_legacy_values(value):
    expected_leaf = (None if value is pd.NaT else str(value) if isinstance(value, PurePosixPath)
                     else value.isoformat())
    expected = compat.canonical_json({"v": [expected_leaf]}, indent=2)
    assert compat.canonical_json({"v": [value]}, indent=2) == expected
    assert atomicjson.canonical_bytes({"v": [value]}) == legacy.canonical_dump({"v": [expected_leaf]})


def test_beyond_legacy_documents(tmp_path):
    target = tmp_path / "metadata.json"
    doc = {1: "one", "b": 2, None: 3, "fs": frozenset({1, "a", 2.5}),
           "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
           "d": datetime.date(2024, 1, 2), "t": datetime.time(1, 2, 3), "nat": pd.NaT,
           "p": PurePosixPath("/a/b"), "fold": Fold(1, [0.5], {})}
    compat.write_atomic_json_with_lock(target, doc)
    got = json.loads(target.read_bytes())
    assert list(got) == sorted(got)
    assert got["1"] == "one" and got["None"] == 3 and got["nat"] is None
    assert got["when"] == "2024-05-06T07:08:09+00:00" and got["d"] == "2024-01-02"
    assert got["t"] == "01:02:03" and got["p"] == "/a/b"
    assert got["fs"] == sorted([1, "a", 2.5], key=str)
    deep: List[Any] = []
    for _ in range(1000):  # the legacy recursion fails near 500 levels, json.dumps near 1000
        deep = [deep]
    compat.write_atomic_json_with_lock(target, {"deep": deep})
    assert target.read_bytes().count(b"[") == 1001
    node, depth = atomicjson.read_json(target)["deep"], 0
    while node:
        node, depth = node[0], depth + 1
    assert depth == 1000
