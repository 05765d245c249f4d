"""The fast paths of ``dumps`` with json.dumps rules, each against json.dumps itself: dicts
written straight from the dict when no callback can run (and with the next entry prefetched in
dicts of 8 or more entries), the one-pass string copy (every length around its word sizes,
escapes at every position), floats at the edges of the fixed layout, ints at the 64-bit edges,
and the ASCII result string; the strs, one-digit ints and dict tables read in place, and the
keywords of the ``dumps`` function itself."""

from __future__ import annotations

import inspect
import json
import math
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atomicjson
from strategies import FloatSub, IntSub, StrSub, json_values
from test_dumps import assert_same_as_json

KEYWORDS: List[Dict[str, Any]] = [
    {},
    {"ensure_ascii": False},
    {"indent": 2},
    {"sort_keys": True},
    {"separators": (",", ":")},
    {"default": str},
    {"skipkeys": True},
]

# Around the 4-, 8- and 16-byte words of the string copy, and the 32-entry prefetch threshold.
LENGTHS = list(range(0, 35)) + [47, 48, 49, 63, 64, 65, 200]
SPECIALS = ['"', "\\", "\x00", "\n", "\x1f", "\x7f", "\x80", "\u00e9", "\u2028", "\uffff",
            "\U0001f600", "\ud800", "\udfff"]


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("special", SPECIALS, ids=ascii)
def test_strings_special_character_at_every_position(ensure_ascii, special):
    for n in LENGTHS:
        clean = "abcdefghijklmnopqrstuvwxyz0123456789" * (n // 36 + 1)
        texts = [clean[:n]] + [clean[:i] + special + clean[i:n - 1] for i in range(n)]
        # As values, as keys, and as keys of a dict large enough for the prefetching loop.
        for text in texts:
            assert_same_as_json(text, ensure_ascii=ensure_ascii)
        assert_same_as_json(texts, ensure_ascii=ensure_ascii)
        assert_same_as_json({t: t for t in texts}, ensure_ascii=ensure_ascii)


@pytest.mark.parametrize("kwargs", KEYWORDS, ids=repr)
@pytest.mark.parametrize("size", [0, 1, 7, 8, 31, 32, 33, 80])
def test_dicts_around_the_prefetch_threshold(kwargs, size):
    nested: Any = {"inner": [1, 2.5, {"deeper": None}], "s": "x"}
    plain = {f"k{i}": [i, i / 3, str(i), None, True, nested][i % 6] for i in range(size)}
    # Containers first, last, and after every entry, so that the entry fetched ahead is
    # fetched again after each nested walk.
    containers = {f"c{i}": ({"n": i} if i % 2 else [i]) for i in range(size)}
    mixed_keys: Dict[Any, Any] = {1: "int", 2.5: "float", True: "bool", None: "none",
                                  "s": {"x": 1}, -(2**70): "big", 1e300: [1]}
    mixed_keys.update({f"k{i}": i for i in range(size)})
    unsupported_keys: Dict[Any, Any] = dict(plain)
    unsupported_keys[(1, 2)] = "tuple key"  # dropped with skipkeys, else a TypeError
    for obj in (plain, containers, mixed_keys, unsupported_keys, [plain, containers],
                {"outer": plain, "again": plain}):
        assert_same_as_json(obj, **kwargs)


@pytest.mark.parametrize("size", [3, 8, 20, 40])
def test_default_that_mutates_the_dict_being_written(size):
    class Marker:
        pass

    def run(dumps):
        data: Dict[str, Any] = {f"k{i}": i for i in range(size)}
        data["m"] = Marker()
        data.update({f"z{i}": [i] for i in range(size)})

        def default(obj):
            # json.dumps wrote the dict's items as they were when it started the dict.
            data.clear()
            data["new"] = "added by default"
            return "marker"

        return dumps(data, default=default)

    assert run(atomicjson.dumps) == run(json.dumps)


@pytest.mark.parametrize("kwargs", KEYWORDS, ids=repr)
def test_subclasses_in_large_dicts(kwargs):
    obj: Dict[Any, Any] = {f"k{i}": v for i, v in enumerate(
        [StrSub("s"), IntSub(7), FloatSub(1.5), IntSub(-(2**80)), FloatSub(1e-7), True,
         StrSub("\u00e9\ud800"), 3, 4.0, "plain"])}
    obj.update({StrSub("subkey"): 1, IntSub(5): 2, FloatSub(0.25): 3})
    assert_same_as_json(obj, **kwargs)
    # Past the threshold from which entries are fetched ahead, subclasses in between.
    obj.update({f"pad{i}": [StrSub("p"), i][i % 2] for i in range(40)})
    assert_same_as_json(obj, **kwargs)


INTS = [0, 1, -1, 2**30 - 1, 2**30, -(2**30), 2**31, -(2**31) - 1, 2**32, 2**62, -(2**62),
        2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), 10**30, -(10**30)]


@pytest.mark.parametrize("kwargs", [{}, {"indent": 1}, {"sort_keys": True}], ids=repr)
def test_ints_at_the_64_bit_edges(kwargs):
    assert_same_as_json(INTS, **kwargs)
    assert_same_as_json({f"v{i}": v for i, v in enumerate(INTS)}, **kwargs)
    assert_same_as_json({v: i for i, v in enumerate(INTS)}, **kwargs)
    assert_same_as_json([IntSub(v) for v in INTS], **kwargs)


def _around(x: float) -> List[float]:
    return [math.nextafter(x, 0.0), x, math.nextafter(x, math.inf)]


FLOATS = ([0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1.5, 100.0]
          + _around(1e-4) + _around(1e-5) + _around(1e15) + _around(1e16) + _around(1e17)
          + _around(1e-7) + _around(123456789012345.6))


@pytest.mark.parametrize("allow_nan", [True, False])
def test_floats_at_the_edges_of_the_fixed_layout(allow_nan):
    values = FLOATS + [-v for v in FLOATS]
    assert_same_as_json(values, allow_nan=allow_nan)
    assert_same_as_json({f"f{i}": v for i, v in enumerate(values)}, allow_nan=allow_nan)
    assert_same_as_json({v: 0 for v in values}, allow_nan=allow_nan)
    for odd in (math.nan, math.inf, -math.inf):
        assert_same_as_json({f"f{i}": odd for i in range(10)}, allow_nan=allow_nan)


@pytest.mark.parametrize("kwargs", [
    {}, {"indent": "\u3000"}, {"separators": ("\u060c ", ": ")}, {"separators": (",", "\u2236")},
    {"ensure_ascii": False}, {"indent": 2, "ensure_ascii": False},
], ids=ascii)
def test_result_string(kwargs):
    obj = {"a": ["\u00e9", "\U0001f600", "\ud83d", 1, 2.5, None], "b": {"c": "d"}}
    text = assert_same_as_json(obj, **kwargs)
    assert text is not None
    # An ordinary str: hashing, comparing, slicing and encoding all see the same text.
    expected = json.dumps(obj, **kwargs)
    assert hash(text) == hash(expected)
    assert text[1:-1] == expected[1:-1]
    assert text.encode("utf-8", "surrogatepass") == expected.encode("utf-8", "surrogatepass")
    assert text.isascii() == expected.isascii()
    small: Any
    for small in ("", "x", 0, [], {}):
        assert atomicjson.dumps(small, **kwargs) == json.dumps(small, **kwargs)


@pytest.mark.parametrize("check_circular", [True, False])
def test_circular_large_dict(check_circular):
    data: Dict[str, Any] = {f"k{i}": i for i in range(40)}
    data["self"] = data
    assert_same_as_json(data, check_circular=check_circular)


@settings(deadline=None, max_examples=150,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.text(max_size=20), json_values(max_leaves=6), min_size=8,
                       max_size=48),
       st.sampled_from(KEYWORDS))
def test_large_dicts_match_json_dumps(obj, kwargs):
    assert_same_as_json(obj, **kwargs)


# One-digit ints are read from the object: around the 30-bit digit, and zero.
ONE_DIGIT_EDGES = [v + d for v in (0, 2**30, -(2**30), 2**60, -(2**60)) for d in (-2, -1, 0, 1, 2)]


def test_ints_around_one_digit():
    values = list(range(-300, 300)) + ONE_DIGIT_EDGES
    assert_same_as_json(values)
    assert_same_as_json({f"k{v}": v for v in values})
    assert_same_as_json([IntSub(v) for v in ONE_DIGIT_EDGES])


class _Slots:
    def __init__(self) -> None:
        self.a = 1
        self.b = "two"
        self.c = [3.0, {"d": None}]


def _with_holes(d: Dict[Any, Any], step: int) -> Dict[Any, Any]:
    for k in list(d)[::step]:
        del d[k]
    return d


def test_dict_tables():
    """Combined tables of str keys and of other keys, with deleted entries, with 1-, 2- and
    4-byte hash indices, and split tables (instance dicts)."""
    shared = _Slots().__dict__
    unshared: Dict[Any, Any] = _Slots().__dict__
    unshared[1] = "non-str key: the table is no longer split"
    cases: List[Any] = [
        shared, unshared, [shared, _Slots().__dict__],
        _with_holes({f"k{i}": i for i in range(40)}, 3),
        _with_holes({i: str(i) for i in range(40)}, 2),
        _with_holes({f"k{i}": i for i in range(5)}, 1),
        {f"k{i}": i for i in range(200)},
        {i: i for i in range(70_000)},
        {1: "a", "b": 2, 2.5: None, None: True, True: [], False: {}},
    ]
    for case in cases:
        assert_same_as_json(case)
        assert_same_as_json({"outer": case, "list": [case]})


def test_str_kinds():
    """Compact ASCII strs are read in place; other kinds through their UTF-8 text."""
    texts = ["", "a", "plain ascii " * 5, "caf\u00e9", "\u0100" * 20, "\U0001f600x", "\ud800",
             StrSub("sub"), "x" * 100 + "\u00ff"]
    for text in texts:
        assert_same_as_json([text, {text: text}])
        assert_same_as_json({text: [text]}, ensure_ascii=False)


@pytest.mark.parametrize("flag", ["skipkeys", "ensure_ascii", "check_circular", "allow_nan",
                                  "sort_keys"])
@pytest.mark.parametrize("value", [0, 1, None, "", "yes", [], [0]], ids=repr)
def test_keyword_flags_by_truth_value(flag, value):
    obj = {"b": "\u00e9", "a": [1.5, math.nan], (1, 2): 3}
    assert_same_as_json(obj, **{flag: value, "skipkeys": flag != "skipkeys" or value})


def test_dumps_signature():
    def keywords(fn: Any) -> List[Any]:
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()
                if p.name not in ("cls", "kw")]

    assert keywords(atomicjson.dumps) == keywords(json.dumps)
    positional: Any = ({}, 2)
    unknown: Any = {"nope": True}
    with pytest.raises(TypeError):
        atomicjson.dumps(*positional)
    with pytest.raises(TypeError):
        atomicjson.dumps({}, **unknown)
