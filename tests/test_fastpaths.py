"""The encoder's and parser's fast paths, each against what the general path (json, legacy)
gives for the same data: borrowed scalars, dicts written in their own order, sorted-key
detection, numpy arrays and scalars read in Rust, Timestamps formatted in Rust."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

import atomicjson
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
    # Long shared prefixes: the 8-byte prefix compare must fall back to the full compare.
    return [f"feature_{i:05d}" for i in range(n)] + [f"f{i}" for i in range(n)] + ["", "a", "\u00e9"]


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
