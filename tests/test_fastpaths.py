"""The encoder's and parser's fast paths, each against what the general path (json, legacy)
gives for the same data: borrowed scalars, dicts written in their own order, sorted-key
detection, numpy arrays and scalars read in Rust, Timestamps formatted in Rust."""

from __future__ import annotations

import enum
import json
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import pytest

import atomicjson
import atomicjson.compat
import legacy


def same_as_json(obj: Any, **kw: Any) -> None:
    assert atomicjson.dumps(obj, **kw) == json.dumps(obj, **kw)


def same_as_legacy(obj: Any) -> None:
    assert atomicjson.canonical_bytes(obj) == legacy.canonical_dump(obj)


# -- dicts in their own order (json.dumps without sort_keys) -------------------------------

MIXED: Dict[Any, Any] = {
    "a": 1, "b": [1, 2.5, None], "c": "x", "d": {"e": True, "f": False}, "g": 2 ** 70,
    "h": -0.0, "i": float("inf"), "j": (1, "t"), "k": "caf\u00e9 \U0001f600", "l": None,
}


@pytest.mark.parametrize("kw", [{}, {"ensure_ascii": False}, {"indent": 2},
                                {"separators": (",", ":")}, {"sort_keys": True}])
def test_scalar_and_container_values_interleaved(kw: Dict[str, Any]) -> None:
    same_as_json(MIXED, **kw)
    same_as_json([MIXED, [MIXED], {"z": MIXED}], **kw)


@pytest.mark.parametrize("first", [0, 3, 9])
def test_non_str_key_switches_mid_dict(first: int) -> None:
    d: Dict[Any, Any] = {f"k{i}": i for i in range(10)}
    items = list(d.items())
    items.insert(first, (7, "seven"))
    items.insert(first + 1, (2.5, [1]))
    items.insert(first + 2, (None, {"x": 1}))
    items.insert(first + 3, (True, "t"))
    d = dict(items)
    same_as_json(d)
    same_as_json(d, indent=1)


def test_skipkeys_mid_dict() -> None:
    d: Dict[Any, Any] = {"a": 1, (1, 2): 2, "b": 3}
    same_as_json(d, skipkeys=True)
    assert atomicjson.dumps({(1, 2): 2}, skipkeys=True) == json.dumps({(1, 2): 2}, skipkeys=True)
    with pytest.raises(TypeError):
        atomicjson.dumps(d)


def test_scalars_the_general_path_owns() -> None:
    # Lone surrogates, ints beyond 64 bits, NaN refused: written or refused as json.dumps does.
    d = {"s": "a\ud800b", "\udc00": 1, "big": -(2 ** 64), "n": [float("nan")]}
    same_as_json(d)
    same_as_json(d, ensure_ascii=False)
    with pytest.raises(ValueError):
        atomicjson.dumps({"a": 1, "n": float("nan")}, allow_nan=False)
    with pytest.raises(ValueError):
        atomicjson.dumps([1, float("inf")], allow_nan=False)


def test_default_that_mutates_the_dict() -> None:
    # The rest of the dict is taken before the callback runs, as json.dumps takes its items.
    class Odd:
        pass

    def make() -> Dict[str, Any]:
        return {"a": 1, "odd": Odd(), "b": [2], "c": "three"}

    def default_for(d: Dict[str, Any]) -> Any:
        def default(o: Any) -> Any:
            d.clear()
            d["new"] = 1
            return "odd"
        return default

    d1, d2 = make(), make()
    assert atomicjson.dumps(d1, default=default_for(d1)) == json.dumps(d2, default=default_for(d2))


def test_list_mutated_by_default() -> None:
    class Odd:
        pass

    def run(dumps: Any) -> str:
        items: List[Any] = [1, Odd(), "x", [2], 3.5]

        def default(o: Any) -> Any:
            del items[3:]
            return "odd"
        return str(dumps(items, default=default))

    assert run(atomicjson.dumps) == run(json.dumps)


def test_circular_through_ordered_dict_path() -> None:
    d: Dict[str, Any] = {"a": 1}
    d["self"] = d
    with pytest.raises(ValueError):
        atomicjson.dumps(d)
    assert atomicjson.dumps({"e": {}, "l": []}) == json.dumps({"e": {}, "l": []})


# -- sorted keys (canonical and sort_keys) -------------------------------------------------

def _keys(n: int) -> List[str]:
    # Shared prefixes, within and beyond the 16 bytes compared as one integer: runs of keys
    # with equal 16-byte prefixes are then compared in full.
    return ([f"feature_{i:05d}" for i in range(n)] + [f"f{i}" for i in range(n)]
            + [f"feature_importance_gain_{i:04d}" for i in range(n)]
            + ["x" * 16, "x" * 16 + "a", "x" * 17, "x" * 15, "", "a", "\u00e9"])


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_key_orders(order: str) -> None:
    import random
    keys = sorted(_keys(50))
    if order == "reversed":
        keys.reverse()
    elif order == "shuffled":
        random.Random(6).shuffle(keys)
    d = {k: {k2: i for i, k2 in enumerate(keys[:5])} for k in keys}
    same_as_legacy(d)
    same_as_json(d, sort_keys=True)
    same_as_json(d, sort_keys=True, indent=2)


def test_sets_sort_by_text_and_keep_the_order_of_equal_texts() -> None:
    import random
    names = _keys(40)
    random.Random(7).shuffle(names)
    same_as_legacy({"s": set(names), "f": frozenset(names[:30])})
    # 1 and "1" have the same str(): they keep the set's own order, as in sorted(key=str).
    same_as_legacy({"mixed": {1, "1", 2, "2", "x" * 20, "x" * 20 + "1"}})


def test_key_orders_kept_between_calls_follow_the_key_objects() -> None:
    # A thread keeps the sorted orders of earlier dicts, found again by their key objects in
    # dict order: the same objects in another order, or other objects with the same texts,
    # must sort afresh.
    keys = [f"feature_{i:03d}_{'x' * (i % 7)}" for i in range(300)]
    import random
    random.Random(3).shuffle(keys)
    first = {k: i for i, k in enumerate(keys)}
    same_as_legacy(first)
    same_as_legacy({k: i for i, k in enumerate(reversed(keys))})
    same_as_legacy({"".join(list(k)): i for i, k in enumerate(keys)})  # equal texts, new strs
    # The same first keys, then others: only the first or only the last key differs.
    same_as_legacy({keys[0]: 0, **{k: i for i, k in enumerate(reversed(keys[1:]))}})
    same_as_legacy({**{k: i for i, k in enumerate(keys[:-1])}, "a_first": -1})
    same_as_legacy(first)
    same_as_json(first, sort_keys=True)
    # Sets of strs too: met again, then changed.
    names = set(keys)
    same_as_legacy({"s": names})
    same_as_legacy({"s": names})
    names.add("a_first")
    names.discard(keys[5])
    same_as_legacy({"s": names})


def test_key_orders_kept_between_calls_are_bounded() -> None:
    import sys
    key = "".join(["bounded_", "key_", "0000"])  # a str of its own, not interned
    shape = {**{f"other_{i:03d}": i for i in range(40)}, key: 0}  # not in key order
    before = sys.getrefcount(key)
    atomicjson.canonical_bytes(shape)
    assert sys.getrefcount(key) == before + 1  # its dict's order is kept, holding the key
    for n in range(40):  # dicts of other shapes push it out
        atomicjson.canonical_bytes({f"s{n}_{i:03d}": i for i in range(40, 0, -1)})
    assert sys.getrefcount(key) == before


def test_nearly_sorted_keys_and_collisions() -> None:
    d: Dict[Any, Any] = {"a": 1, "b": 2, "d": 3, "c": 4}
    same_as_legacy(d)
    same_as_legacy({1: "x", 2: "y", 10: "z"})  # int keys sort by their text: "1" < "10" < "2"
    with pytest.raises(atomicjson.AtomicJsonError):
        atomicjson.canonical_bytes({"1": "a", 1: "b"})
    with pytest.raises(atomicjson.AtomicJsonError):
        atomicjson.canonical_bytes({"a": 1, "b": 2, 1: 3, "1": 4})


def test_mixed_key_types_under_sort_keys() -> None:
    with pytest.raises(TypeError):
        atomicjson.dumps({"a": 1, 2: 3}, sort_keys=True)
    same_as_json({2: "b", 1: "a", 3.5: "c"}, sort_keys=True)


# -- numpy arrays and scalars (read in Rust; the legacy calls tolist()/item()) -------------


SPECIAL = [0.0, -0.0, 1.0, -1.5, 0.1, 1e-7, 1e16, 1e300, 5e-324, 65504.0, 6.1e-5, 3.0e-8,
           float("nan"), float("inf"), float("-inf"), 123456.789, 2.0 ** 60]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32",
                                   "int64", "uint8", "uint16", "uint32", "uint64", "bool"])
def test_array_dtypes(dtype: str) -> None:
    rng = np.random.default_rng(6)
    if dtype.startswith("float"):
        with np.errstate(over="ignore"):
            values = np.concatenate([np.array(SPECIAL), rng.normal(0, 1e3, 200),
                                     rng.random(50) * 1e-6]).astype(dtype)
    elif dtype == "bool":
        values = rng.random(30) > 0.5
    else:
        info = np.iinfo(dtype)
        values = np.concatenate([np.array([info.min, info.max, 0, 1], dtype=dtype),
                                 rng.integers(info.min, info.max, 200, dtype=dtype,
                                              endpoint=True)])
    same_as_legacy({"a": values, "m": values[: (values.size // 6) * 6].reshape(2, 3, -1)})
    # Scalars of the same dtype, and the json.dumps rules with atomicjson's extensions.
    same_as_legacy([values[0], values[-1], values[1:3], {"s": values[2]}])
    # Under an Enum the artifact pass leaves the value to json.dumps rules with atomicjson's
    # extensions: the same conversions apply there.
    members = enum.Enum("Members", {"ARR": values[:7], "ONE": values[3]})  # type: ignore[misc]
    doc = {"a": members.ARR, "o": members.ONE}
    plain = {"a": values[:7].tolist(), "o": values[3].item()}
    assert atomicjson.compat.canonical_json(doc) == legacy.canonical_json(plain)


@pytest.mark.parametrize("make", [
    lambda: np.arange(12.0).reshape(3, 4).T,                 # Fortran order
    lambda: np.arange(24).reshape(2, 3, 4)[:, ::2, 1:],      # non-contiguous view
    lambda: np.asfortranarray(np.arange(6, dtype="int32").reshape(2, 3)),
    lambda: np.array(3.5),                                   # 0-d: item()
    lambda: np.array(7, dtype="uint64"),
    lambda: np.zeros((0,)), lambda: np.zeros((2, 0)), lambda: np.zeros((0, 3), dtype="int8"),
    lambda: np.arange(6, dtype=">i4"),                       # non-native byte order
    lambda: np.arange(6, dtype=">f8").reshape(2, 3),
    lambda: np.array(["a", "b"]), lambda: np.array([1, "x", None], dtype=object),
    lambda: np.ones((1, 1, 1, 1, 1), dtype=bool),
])
def test_array_layouts(make: Any) -> None:
    arr = make()
    same_as_legacy({"x": arr, "l": [arr, arr]})
    for indent in (None, 2):
        assert atomicjson.compat.canonical_json({"x": arr}, indent=indent) == \
            legacy.canonical_json({"x": arr}, indent=indent)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # the kind of failure is the outcome
        return type(exc)


@pytest.mark.parametrize("make", [
    lambda: np.array(["2024-01-01", "2024-06-01T12:00"], dtype="datetime64[s]"),
    lambda: np.array([1, 2], dtype="timedelta64[D]"), lambda: np.array([1, 2], dtype="m8[ns]"),
    lambda: np.array([1 + 2j]), lambda: np.array([1.5], dtype="longdouble"),
    lambda: np.zeros(2, dtype=[("x", "f8"), ("y", "i4")]),
    lambda: np.zeros(2, dtype=("f8", (2,))),
])
def test_arrays_left_to_tolist(make: Any) -> None:
    # dtypes the legacy cannot write either: the same outcome as the general path's.
    arr = make()
    assert outcome(atomicjson.canonical_bytes, {"x": arr}) == \
        outcome(atomicjson.canonical_bytes, {"x": arr.tolist()})


def test_numpy_scalar_types() -> None:
    values = [np.float16(0.1), np.float32(0.1), np.float64(0.1), np.float32("nan"),
              np.float16("-inf"), np.int8(-128), np.uint64(2 ** 64 - 1), np.int64(-(2 ** 63)),
              np.intc(5), np.longlong(-3), np.ulonglong(9), np.bool_(True), np.bool_(False),
              np.str_("s")]
    for v in values:
        same_as_legacy({"v": v, "l": [v]})
    for v in [np.datetime64("2024-01-01T00:00"), np.timedelta64(3, "s"), np.longdouble(0.5),
              np.complex128(1)]:
        assert outcome(atomicjson.canonical_bytes, [v]) == \
            outcome(atomicjson.canonical_bytes, [v.item()])


def test_refused_nan_in_arrays_and_scalars() -> None:
    for value in (np.array([1.0, np.nan]), np.float32("inf"), np.array([[np.inf]])):
        with pytest.raises(ValueError):
            atomicjson._core.Encoding(rules="both", allow_nan=False).encode({"x": value})


# -- pandas Timestamps (isoformat computed in Rust) ----------------------------------------

def _timestamps() -> List[Any]:
    import datetime
    import zoneinfo
    base = [pd.Timestamp("2024-01-01T09:30:00"), pd.Timestamp("2024-01-01T09:30:00.000001"),
            pd.Timestamp("2024-01-01T09:30:00.000000001"), pd.Timestamp("1999-12-31T23:59:59.123456789"),
            pd.Timestamp("2024-02-29T00:00:00.5"), pd.Timestamp(datetime.datetime(1, 1, 1)),
            pd.Timestamp(datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)),
            pd.Timestamp("1677-09-21T00:12:43.145224193"), pd.Timestamp("2262-04-11T23:47:16.854775807"),
            pd.Timestamp("0300-01-01").as_unit("s"), pd.Timestamp(0, unit="ms")]
    zones = [datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=-5)),
             datetime.timezone(datetime.timedelta(hours=5, minutes=30, seconds=7)),
             datetime.timezone(datetime.timedelta(seconds=-1, microseconds=5)),
             zoneinfo.ZoneInfo("Europe/Amsterdam"), zoneinfo.ZoneInfo("America/St_Johns"),
             "Asia/Kolkata", "UTC"]
    out = list(base)
    for ts in base[:5] + [pd.Timestamp("1900-01-01T00:00:00.000000042")]:
        for tz in zones:
            out.append(ts.tz_localize(tz))
    return out


def test_timestamps_match_isoformat() -> None:
    stamps = _timestamps()
    for ts in stamps:
        assert atomicjson.canonical_bytes(ts) == legacy.canonical_dump(ts), ts
    same_as_legacy({"t": stamps, "d": {str(i): t for i, t in enumerate(stamps)}})
    assert atomicjson.canonical_bytes([pd.NaT]) == b"[\n  null\n]\n"  # an extension


def test_timestamp_subclass() -> None:
    def isoformat(self: Any, *args: Any, **kwargs: Any) -> str:
        return "custom"

    # Built with type() so that mypy's view of pandas (stubs or none) does not matter here.
    stamp_type: Any = type("Stamp", (pd.Timestamp,), {"isoformat": isoformat})
    same_as_legacy({"t": stamp_type("2024-01-01")})


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_random_timestamps(unit: str) -> None:
    import datetime
    import random
    import zoneinfo
    rng = random.Random(unit)
    zones: List[Any] = [None, datetime.timezone.utc, zoneinfo.ZoneInfo("Europe/Amsterdam"),
                        zoneinfo.ZoneInfo("Australia/Lord_Howe"),
                        datetime.timezone(datetime.timedelta(hours=-9, minutes=-30))]
    stamps = []
    for _ in range(300):
        ns = rng.randrange(-(2 ** 63) + 2 * 86_400 * 10 ** 9, 2 ** 63 - 2 * 86_400 * 10 ** 9)
        if rng.random() < 0.3:
            ns -= ns % 10 ** rng.choice([3, 6, 9])
        ts = pd.Timestamp(ns, unit="ns").as_unit(unit)
        tz = rng.choice(zones)
        if tz is not None:
            ts = ts.tz_localize("UTC").tz_convert(tz)
        stamps.append(ts)
    assert atomicjson.canonical_bytes(stamps) == legacy.canonical_dump(stamps)


def test_float_repr_on_random_bit_patterns() -> None:
    # The shortest digits (src/shortest.rs), laid out as float.__repr__, for doubles of every
    # magnitude.
    import random
    import struct
    rng = random.Random(1)
    values = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(50_000)]
    values += [rng.random() * 10.0 ** rng.randint(-30, 30) for _ in range(50_000)]
    values += [float(f"1e{e}") for e in range(-324, 309)] + [float(f"9.5e{e}") for e in range(-20, 20)]
    values = [v for v in values if v == v]
    assert atomicjson.dumps(values) == json.dumps(values)
    assert atomicjson.dumps({repr(v): v for v in values[:1000]}, sort_keys=True) == \
        json.dumps({repr(v): v for v in values[:1000]}, sort_keys=True)


# -- read_json / loads: the key memo -------------------------------------------------------

def test_repeated_and_many_keys_read_back(tmp_path: Any) -> None:
    long_key = "k" * 70
    records = [{"id": i, "name": f"n{i}", long_key: i, "caf\u00e9": [i], 'a"b\\': None,
                "\ud800": 1, f"unique{i}": i} for i in range(3000)]
    text = json.dumps(records)
    # Duplicate keys in one object: the last one wins, in the first one's place.
    text = text.replace('{"id": 0,', '{"id": -1, "name": "x", "id": 0,', 1)
    assert atomicjson.loads(text.encode("utf-8", "surrogatepass")) == json.loads(text)
    path = tmp_path / "records.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    got = atomicjson.read_json(path)
    want = json.loads(text)
    assert got == want
    assert [list(d) for d in got] == [list(d) for d in want]


# -- Enum members read through `_value_` (when `value` is Enum's own property) -------------

class Plain(enum.Enum):
    A = "a"
    B = (1, 2)
    C = {"k": [1.5, None]}


class Number(enum.IntEnum):
    ONE = 1
    TWO = 2


class Bits(enum.Flag):
    R = 1
    W = 2
    X = 4


class Overridden(enum.Enum):
    A = "a"

    @property
    def value(self) -> Any:
        return "overridden:" + str(self._value_)


class CustomNew(enum.Enum):
    A = ("a", 1)
    B = ("b", 2)

    def __new__(cls, code: str, rank: int) -> "CustomNew":
        member = object.__new__(cls)
        member._value_ = code
        member.rank = rank  # type: ignore[attr-defined]
        return member


class ValueMixin:
    @property
    def value(self) -> str:
        return "from the mixin"


# Enum classes made with the functional API through Any: mypy's enum plugin does not model them.
ENUM: Any = enum.Enum
Mixed: Any = ENUM("Mixed", {"A": 1}, type=ValueMixin)


class Intercepted(enum.Enum):
    A = "a"

    def __getattribute__(self, name: str) -> Any:
        if name == "value":
            return "intercepted"
        return object.__getattribute__(self, name)


ENUM_CLASSES: List[Any] = [Plain, Number, Bits, Overridden, CustomNew, Mixed, Intercepted,
                           getattr(enum, "IntFlag")("Perm", {"R": 4, "W": 2, "X": 1}),
                           # A member named `value` puts its own descriptor in the class.
                           ENUM("Named", {"value": 1, "other": 2, "third": 3})]
if hasattr(enum, "StrEnum"):
    ENUM_CLASSES.append(getattr(enum, "StrEnum")("Text", {"X": "x", "Y": "y"}))


@pytest.mark.parametrize("cls", ENUM_CLASSES, ids=lambda c: c.__name__)
def test_enum_members_many_of_a_class(cls: Any) -> None:
    # Enough members of the class that the walk checks it and reads `_value_` where it may.
    members = list(cls) * 4
    if cls is Bits:
        members += [Bits.R | Bits.W, Bits(0), Bits.R | Bits.W | Bits.X]
    same_as_legacy(members)
    same_as_legacy({"m": members, "d": {str(i): m for i, m in enumerate(members)},
                    "t": tuple(members), "s": {m for m in members if m is not Plain.C}})
    assert atomicjson.sanitize(members) == legacy.sanitize(members)
    assert atomicjson.compat.sanitize_for_json(members) == legacy.sanitize_for_json(members)


def test_enum_class_changed_between_writes() -> None:
    cls = ENUM("Changing", {"A": "a", "B": "b"})
    members = list(cls) * 5
    assert atomicjson.canonical_bytes(members) == legacy.canonical_dump(members)
    cls.value = property(lambda self: "patched")  # each write looks at the class again
    assert b"patched" in atomicjson.canonical_bytes(members)
    assert atomicjson.canonical_bytes(members) == legacy.canonical_dump(members)


# -- dicts with the keys of an earlier dict (their sorted order is reused) -----------------

def test_records_with_shared_keys() -> None:
    keys = ["step", "at", "loss", "lr", "status", "b", "a"]
    records = [{k: i * 10 + j for j, k in enumerate(keys)} for i in range(30)]
    # The same keys in other orders, and equal keys that are other str objects.
    records += [{k: 1 for k in reversed(keys)}, {k: 2 for k in keys[1:] + keys[:1]}]
    records += [{"".join(list(k)): 3 for k in keys}]
    records += [dict(zip(keys, range(7)))] * 3
    same_as_legacy(records)
    assert atomicjson.sanitize(records) == legacy.sanitize(records)


def test_more_key_sets_than_remembered() -> None:
    import random
    rng = random.Random(3)
    sets = [[f"k{s}_{i}" for i in range(rng.randrange(2, 12))] for s in range(20)]
    for key_set in sets:
        rng.shuffle(key_set)
    docs = [{k: [s, n] for k in sets[s]} for n in range(5) for s in range(20)]
    rng.shuffle(docs)
    same_as_legacy(docs)


def test_feature_maps_over_one_feature_list() -> None:
    import random
    features = _keys(300)
    random.Random(5).shuffle(features)
    doc = {f"fold{i}": {"imp": {f: float(j) / 7 for j, f in enumerate(features)},
                        "rank": {f: j for j, f in enumerate(features)}} for i in range(4)}
    same_as_legacy(doc)


def test_dict_beyond_the_remembered_size() -> None:
    keys = [f"{i:x}" for i in range(70_000)]
    keys.reverse()
    doc = [dict.fromkeys(keys, 1), dict.fromkeys(keys, 2)]
    same_as_legacy(doc)


def test_collision_after_a_remembered_order() -> None:
    keys = ["b", "a", "c"]
    good = [dict.fromkeys(keys, 0)] * 3
    atomicjson.canonical_bytes(good)
    with pytest.raises(atomicjson.AtomicJsonError):
        atomicjson.canonical_bytes(good + [{"b": 1, "a": 2, 1: 3, "1": 4}])


# -- UTC offsets of tz-aware Timestamps (fixed for datetime.timezone, asked otherwise) -----

def test_fixed_offset_zones_many() -> None:
    import datetime
    zones = [datetime.timezone(datetime.timedelta(minutes=m)) for m in range(-720, 721, 15)]
    zones += [datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=3), "Named")]
    base = pd.Timestamp("2024-03-10T01:59:59.999999999")
    stamps = [base.tz_localize(z) for z in zones for _ in range(2)]
    same_as_legacy(stamps)


def test_zoneinfo_across_dst() -> None:
    import zoneinfo
    zone = zoneinfo.ZoneInfo("America/New_York")
    start = pd.Timestamp("2024-03-10T05:00:00", tz="UTC")
    stamps = [(start + pd.Timedelta(minutes=30 * i)).tz_convert(zone) for i in range(12)]
    autumn = pd.Timestamp("2024-11-03T04:00:00.000000500", tz="UTC")
    stamps += [(autumn + pd.Timedelta(minutes=30 * i)).tz_convert(zone) for i in range(12)]
    assert len({s.utcoffset() for s in stamps}) == 2
    same_as_legacy(stamps)


def test_pytz_zones() -> None:
    pytz = pytest.importorskip("pytz")
    zone = pytz.timezone("Europe/Berlin")
    stamps = [pd.Timestamp(f"2024-{m:02d}-15T12:00:00").tz_localize(zone) for m in range(1, 13)]
    stamps += [pd.Timestamp("2024-06-01", tz=pytz.utc),
               pd.Timestamp("2024-06-01", tz=pytz.FixedOffset(90))]
    same_as_legacy(stamps)


def test_tzinfo_subclass_with_varying_offset() -> None:
    import datetime

    class ByMinute(datetime.tzinfo):
        def utcoffset(self, dt: Any) -> datetime.timedelta:
            return datetime.timedelta(hours=dt.minute % 5 if dt is not None else 0)

        def dst(self, dt: Any) -> datetime.timedelta:
            return datetime.timedelta(0)

        def tzname(self, dt: Any) -> str:
            return "by-minute"

    zone = ByMinute()
    stamps = [pd.Timestamp(datetime.datetime(2024, 1, 1, 9, m, tzinfo=zone)) for m in range(10)]
    assert len({s.utcoffset() for s in stamps}) == 5
    same_as_legacy(stamps)


# -- pathlib paths (exact classes written as str(), like their __fspath__) -----------------

def test_pathlib_paths() -> None:
    import os
    import pathlib
    paths: List[Any] = [pathlib.Path("/data/x y/\u00e9"), pathlib.Path("rel"), pathlib.Path(),
                        pathlib.PurePosixPath("a//b/./c"), pathlib.PureWindowsPath("C:/x/y")]
    same_as_legacy({"p": paths[:3]})

    class Custom(type(pathlib.Path())):  # type: ignore[misc]
        def __fspath__(self) -> str:
            return "custom"

    paths.append(Custom("/ignored"))
    expected = json.dumps([os.fsdecode(os.fspath(p)) for p in paths], indent=2,
                          ensure_ascii=False) + "\n"
    assert atomicjson.canonical_bytes(paths) == expected.encode()
