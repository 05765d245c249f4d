"""canonical_bytes and sanitize against the legacy pipeline (the oracle in legacy.py)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import pathlib
from typing import Any, List

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atomicjson
import legacy
from strategies import beyond_legacy_values, legacy_documents, unicode_text

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def same(a, b) -> bool:
    """Structural equality with NaN equal to itself and exact types for leaves."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b) and not (isinstance(a, type(b)) or isinstance(b, type(a))):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@SETTINGS
@given(legacy_documents())
def test_canonical_bytes_equal_legacy(doc) -> None:
    assert atomicjson.canonical_bytes(doc) == legacy.canonical_dump(doc)


_SCALARS = st.one_of(
    st.integers(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
    st.booleans(), st.none(), unicode_text())


@SETTINGS
@given(st.lists(st.tuples(unicode_text(), _SCALARS), max_size=40), st.randoms(), st.integers(1, 4))
def test_maps_of_scalars_equal_legacy(pairs, rng, copies) -> None:
    # Dicts of str keys and scalar values (per-feature maps) are written from one read of the
    # dict; several dicts with the same key objects in the same order share one sort.
    first = dict(pairs)
    keys = list(first)
    rng.shuffle(keys)
    maps = [{k: first[k] for k in keys} for _ in range(copies)]
    doc = {"maps": maps, "mixed": {**first, "nested": [first]}, "first": first}
    assert atomicjson.canonical_bytes(doc) == legacy.canonical_dump(doc)


def test_large_map_of_floats_streams_like_canonical_bytes(tmp_path) -> None:
    # Big enough for the streamed write's parts (and their deferred floats) inside one map.
    names = [f"feature_{i:05d}_{'xyz'[i % 3]}" for i in range(40_000)]
    random_order = sorted(names, key=lambda n: hash(n) % 1009)
    doc = {"importance": {n: (i * 0.6180339887) % 1.0 for i, n in enumerate(random_order)},
           "rank": {n: i for i, n in enumerate(random_order)},
           "flags": {n: i % 2 == 0 for i, n in enumerate(random_order)}}
    path = tmp_path / "m.json"
    atomicjson.write_json(path, doc)
    assert path.read_bytes() == atomicjson.canonical_bytes(doc) == legacy.canonical_dump(doc)


@SETTINGS
@given(legacy_documents())
def test_sanitize_equals_legacy_passes(doc) -> None:
    ours = atomicjson.sanitize(doc)
    theirs = legacy.sanitize(doc)
    # The legacy builds dicts in raw-key order; ours are sorted by the final str key. JSON
    # output sorts anyway, so compare as sorted dicts.
    assert same(_sorted(ours), _sorted(theirs)), (ours, theirs)


def _sorted(x):
    if isinstance(x, dict):
        return {k: _sorted(x[k]) for k in sorted(x)}
    if isinstance(x, list):
        return [_sorted(v) for v in x]
    return x


@SETTINGS
@given(legacy_documents(max_leaves=10), st.sampled_from([None, 2]))
def test_artifact_only_encoding_equals_legacy_canonical_json(doc, indent) -> None:
    """compat.canonical_json's encoding: second pass only, compact or indented."""
    sanitized_once = legacy.telemetry_sanitize(doc)  # a doc the second pass alone accepts
    enc = atomicjson._core.Encoding(rules="artifact", indent=indent,
                                    separators=(",", ":") if indent is None else (",", ": "),
                                    ensure_ascii=False, sort_keys=True)
    assert enc.dumps(sanitized_once) == legacy.canonical_json(sanitized_once, indent=indent)


@SETTINGS
@given(st.dictionaries(unicode_text(), beyond_legacy_values(), max_size=4))
def test_values_the_legacy_rejected_are_written(doc) -> None:
    out = json.loads(atomicjson.canonical_bytes(doc))
    for key, value in doc.items():
        if value is pd.NaT:
            assert out[key] is None
        elif isinstance(value, pathlib.PurePath):
            assert out[key] == str(value)
        else:
            assert out[key] == value.isoformat()


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Fold:
    index: int
    scores: List[Any]


def test_known_document_byte_for_byte() -> None:
    doc = {
        "when": pd.Timestamp("2024-01-02 03:04:05.123456789", tz="Asia/Kolkata"),
        "color": Color.RED,
        "tags": {"b", "a", 10, 9},
        "frozen": frozenset({10, 9}),
        "path": pathlib.Path("/data/x.parquet"),
        "arr": np.array([[1, 2], [3, 4]], dtype=np.int32),
        "f32": np.float32(0.1),
        "fold": Fold(3, [0.5, float("nan")]),
        "price": decimal.Decimal("1.10"),
        "big": 2**80,
        "text": "é\n\u2028",
    }
    expected = legacy.canonical_dump(doc)
    assert atomicjson.canonical_bytes(doc) == expected
    assert expected.decode().startswith('{\n  "arr": [\n    [\n      1,')
    assert b'"tags": [\n    10,\n    9,\n    "a",\n    "b"\n  ]' in expected


def test_extensions_beyond_the_legacy() -> None:
    """What the legacy failed on: mixed-type keys, datetimes, NaT, incomparable frozensets."""
    out = json.loads(atomicjson.canonical_bytes({
        "mixed": {1: "int", "a": "str", None: "none", 2.5: "float"},
        "dt": datetime.datetime(2024, 5, 6, 7, 8, 9, 10),
        "d": datetime.date(2024, 5, 6),
        "t": datetime.time(1, 2, 3),
        "nat": pd.NaT,
        "pure": pathlib.PurePosixPath("a/b"),
        "fs": frozenset({1, "a", (2, 3)}),
    }))
    assert out["mixed"] == {"1": "int", "2.5": "float", "None": "none", "a": "str"}
    assert out["dt"] == "2024-05-06T07:08:09.000010"
    assert out["d"] == "2024-05-06" and out["t"] == "01:02:03"
    assert out["nat"] is None and out["pure"] == "a/b"
    # Elements that do not compare are ordered by str(): "(2, 3)" < "1" < "a".
    assert out["fs"] == [[2, 3], 1, "a"]


def test_data_changed_after_the_call_does_not_matter(tmp_path) -> None:
    doc = {"a": [1, 2, 3]}
    data = atomicjson.canonical_bytes(doc)
    doc["a"].append(4)
    assert json.loads(data) == {"a": [1, 2, 3]}


def test_raising_callbacks_give_serialization_errors() -> None:
    class BadStr:
        def __str__(self):
            raise RuntimeError("boom")

    class BadIso(datetime.datetime):
        def isoformat(self, *a, **k):
            raise RuntimeError("iso boom")

    with pytest.raises(atomicjson.SerializationError) as info:
        atomicjson.canonical_bytes({BadStr(): 1})
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(atomicjson.SerializationError) as info:
        atomicjson.canonical_bytes({"x": [BadIso(2024, 1, 1)]})
    assert info.value.location == "$.x[0]"


def test_unsupported_types_deep_inside_name_their_place() -> None:
    with pytest.raises(atomicjson.UnsupportedTypeError) as info:
        atomicjson.canonical_bytes({"runs": [{"cfg": {"bad key": [1, b"bytes"]}}]})
    assert info.value.location == '$.runs[0].cfg["bad key"][1]'
    assert "bytes" in str(info.value)
