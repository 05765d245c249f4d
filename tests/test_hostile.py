"""Hostile input through the public API: circular and absurdly deep data, lone surrogates,
colliding keys, unsupported types deep inside, objects whose own methods raise, data mutated by
another thread during the walk, and documents of tens to hundreds of MB.

Each case must end in a clear exception or a correct file: never a crash, a hang, a torn file or
a silently dropped value; when a write fails, the previous file is byte-identical and no temp
file is left. ``ATOMICJSON_STRESS=N`` scales the rounds (and the big document to 300 MB)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atomicjson
from conftest import run_python, temp_files

STRESS = int(os.environ.get("ATOMICJSON_STRESS", "0") or 0)

WRITERS: Dict[str, Callable[[Path, Any], Any]] = {
    "write_json": lambda path, data: atomicjson.write_json(path, data, durable=False),
    "update_json": lambda path, data: atomicjson.update_json(path, lambda _: data,
                                                             durable=False),
    "canonical_bytes": lambda path, data: atomicjson.canonical_bytes(data),
    "sanitize": lambda path, data: atomicjson.sanitize(data),
}

PREVIOUS = {"previous": "version", "n": [1, 2, 3]}


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    """A file holding a previous version; after the test it must still hold exactly that."""
    path = tmp_path / "doc.json"
    atomicjson.write_json(path, PREVIOUS)
    before = path.read_bytes()
    yield path
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


def fails_with(exc: Any, target: Path, data: Any, writers: Any = WRITERS) -> None:
    """Every writer raises `exc` for `data` (and the fixture checks the file afterwards)."""
    for name, write in writers.items():
        with pytest.raises(exc) as info:
            write(target, data)
        assert isinstance(info.value, atomicjson.AtomicJsonError), name
        if name in ("write_json", "update_json"):
            assert str(target) in str(info.value), name


# ---------------------------------------------------------------------------------------------
# Circular references
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Node:
    name: str
    children: List[Any] = dataclasses.field(default_factory=list)


def circular_documents() -> Dict[str, Any]:
    through_dict: Dict[str, Any] = {"a": 1}
    through_dict["self"] = through_dict
    through_list: List[Any] = [1, 2]
    through_list.append({"back": through_list})
    node = Node("root")
    node.children.append({"parent": node})
    deep_cycle: Dict[str, Any] = {"x": []}
    inner = deep_cycle
    for i in range(50):
        inner = {"level": i, "next": [inner]}
    deep_cycle["x"].append(inner)
    return {"dict": {"doc": through_dict}, "list": [through_list], "dataclass": {"n": node},
            "long_cycle": deep_cycle}


@pytest.mark.parametrize("kind", sorted(circular_documents()))
def test_circular_references_raise(target: Path, kind: str) -> None:
    fails_with(atomicjson.CircularReferenceError, target, circular_documents()[kind])
    with pytest.raises(ValueError):  # json.dumps raises ValueError("Circular reference ...")
        atomicjson.dumps(circular_documents()[kind], default=vars)


def test_shared_but_acyclic_references_are_not_circular(tmp_path: Path) -> None:
    shared = {"k": [1, 2]}
    doc = {"a": shared, "b": [shared, shared], "c": Node("n", [shared])}
    atomicjson.write_json(tmp_path / "x.json", doc)
    assert atomicjson.read_json(tmp_path / "x.json") == atomicjson.sanitize(doc)


# ---------------------------------------------------------------------------------------------
# Nesting 200,000 deep
# ---------------------------------------------------------------------------------------------
def nested(depth: int, kind: str) -> Any:
    doc: Any = "leaf"
    for _ in range(depth):
        doc = [doc] if kind == "list" else {"k": doc}
    return doc


@pytest.mark.parametrize("kind", ["list", "dict", "dataclass"])
def test_nesting_200000_deep_raises(target: Path, kind: str) -> None:
    if kind == "dataclass":
        doc: Any = "leaf"
        for _ in range(200_000):
            doc = Node("n", [doc])
    else:
        doc = nested(200_000, kind)
    fails_with(atomicjson.NestingTooDeepError, target, doc)
    with pytest.raises(RecursionError):
        atomicjson.dumps(doc, default=lambda o: o.children)


def test_nesting_limit_is_exact(tmp_path: Path) -> None:
    limit = atomicjson.MAX_DEPTH
    path = tmp_path / "ok.json"
    for kind in ("list", "dict"):
        atomicjson.write_json(path, nested(limit, kind))
        # Compared as bytes: Python's own == recurses and would hit its recursion limit.
        assert path.read_bytes() == atomicjson.canonical_bytes(nested(limit, kind))
        assert atomicjson.canonical_bytes(atomicjson.read_json(path)) == path.read_bytes()
        with pytest.raises(atomicjson.NestingTooDeepError):
            atomicjson.canonical_bytes(nested(limit + 1, kind))


def test_nesting_in_a_thread_with_a_small_stack(tmp_path: Path) -> None:
    """The walk stops on the stack left, not only on the depth: a 256 KiB thread stack."""
    results: List[Any] = []

    def run() -> None:
        try:
            atomicjson.canonical_bytes(nested(atomicjson.MAX_DEPTH, "dict"))
            results.append("ok")
        except atomicjson.NestingTooDeepError as err:
            results.append(err)

    old = threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    assert len(results) == 1


@pytest.mark.parametrize("opening,closing,inner", [("[", "]", ""), ('{"a":', "}", "1")])
def test_read_json_of_a_file_nested_200000_deep_raises(tmp_path: Path, opening: str,
                                                        closing: str, inner: str) -> None:
    path = tmp_path / "deep.json"
    path.write_text(opening * 200_000 + inner + closing * 200_000)
    for read in (lambda: atomicjson.read_json(path), lambda: atomicjson.loads(path.read_text())):
        with pytest.raises(atomicjson.JSONDecodeError, match="Maximum nesting depth"):
            read()
    # update_json reads under the lock: the error comes out, fn is not called, nothing written.
    called: List[Any] = []
    with pytest.raises(atomicjson.JSONDecodeError):
        atomicjson.update_json(path, called.append)
    assert called == []
    assert path.read_text().startswith(opening * 1000)
    assert temp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Lone surrogates
# ---------------------------------------------------------------------------------------------
SURROGATES = ["\ud800", "\udfff", "a\udbffb", "\ude00\ud83d", "x" * 100 + "\udc80"]


@pytest.mark.parametrize("text", SURROGATES)
@pytest.mark.parametrize("where", ["value", "key", "nested key"])
def test_lone_surrogates_cannot_be_written_as_utf8(target: Path, text: str, where: str) -> None:
    doc = {"value": {"v": text}, "key": {text: 1}, "nested key": [{"a": {text: [1]}}]}[where]
    # The canonical form is UTF-8 (ensure_ascii=False): the legacy's json.dumps succeeded and
    # then writing the str to a UTF-8 file raised UnicodeEncodeError, a ValueError.
    legacy_text = json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False)
    with pytest.raises(UnicodeEncodeError):
        legacy_text.encode("utf-8")
    fails_with(atomicjson.InvalidDataError, target, doc,
               {k: v for k, v in WRITERS.items() if k != "sanitize"})
    with pytest.raises(ValueError, match="lone surrogate"):
        atomicjson.canonical_bytes(doc)
    # sanitize returns Python values, where a lone surrogate is fine: unchanged.
    assert atomicjson.sanitize(doc) == doc


@pytest.mark.parametrize("text", SURROGATES)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_lone_surrogates_in_dumps_match_json(tmp_path: Path, text: str,
                                             ensure_ascii: bool) -> None:
    doc = {text: [text, {"k": text}]}
    expected = json.dumps(doc, ensure_ascii=ensure_ascii)
    assert atomicjson.dumps(doc, ensure_ascii=ensure_ascii) == expected
    path = tmp_path / "s.json"
    if ensure_ascii:
        # Escaped as \udXXX: pure ASCII, and it reads back to the same str.
        atomicjson.write_dumps(path, doc)
        assert path.read_bytes() == expected.encode("ascii")
        assert atomicjson.read_json(path) == doc == json.loads(expected)
    else:
        with pytest.raises(atomicjson.InvalidDataError):
            atomicjson.write_dumps(path, doc, ensure_ascii=False)
        assert not path.exists()
    assert temp_files(tmp_path) == []


def test_surrogate_pairs_and_escaped_surrogates_in_files_read_like_json(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    for raw in ('["\\ud800"]', '["\\ud83d\\ude00"]', '{"\\udfff": "\\ud800x"}'):
        path.write_text(raw)
        assert atomicjson.read_json(path) == json.loads(raw)
    # A surrogate encoded raw: json.loads(bytes) decodes with surrogatepass, and so do we.
    path.write_bytes(b'["\xed\xa0\x80"]')
    assert atomicjson.read_json(path) == json.loads(path.read_bytes()) == ["\ud800"]
    path.write_bytes(b'["\xff"]')  # not UTF-8 at all
    with pytest.raises(atomicjson.JSONDecodeError, match="Invalid UTF-8"):
        atomicjson.read_json(path)


# ---------------------------------------------------------------------------------------------
# Keys colliding after str()
# ---------------------------------------------------------------------------------------------
class StrKey:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __lt__(self, other: Any) -> bool:
        return str(self) < str(other)


class Color(enum.Enum):
    RED = "r"


COLLISIONS = {
    "int and str": {1: "a", "1": "b"},
    "bool and str": {True: "a", "True": "b"},
    "None and str": {None: "a", "None": "b"},
    "float and str": {1.5: "a", "1.5": "b"},
    "object and str": {StrKey("x"): "a", "x": "b"},
    "two objects": {StrKey("x"): "a", StrKey("x"): "b"},
    "enum and str": {Color.RED: "a", "Color.RED": "b"},
    "nested": {"outer": [{"ok": 1}, {"in": {2: "a", "2": "b"}}]},
    "in a dataclass": {"n": Node("n", [{0: 1, "0": 2}])},
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_keys_colliding_after_str_raise(target: Path, case: str) -> None:
    fails_with(atomicjson.KeyCollisionError, target, COLLISIONS[case])


def test_distinct_keys_with_distinct_strings_are_all_kept(tmp_path: Path) -> None:
    doc = {1: "a", "2": "b", 3.5: "c", None: "d", False: "e", StrKey("f"): "f"}
    atomicjson.write_json(tmp_path / "k.json", doc)
    assert atomicjson.read_json(tmp_path / "k.json") == {
        "1": "a", "2": "b", "3.5": "c", "None": "d", "False": "e", "f": "f"}


# ---------------------------------------------------------------------------------------------
# Unsupported types deep inside
# ---------------------------------------------------------------------------------------------
UNSUPPORTED = [object(), b"bytes", bytearray(b"x"), complex(1, 2), range(3), iter([1]),
               threading.Lock(), type, len, memoryview(b"m")]


@pytest.mark.parametrize("value", UNSUPPORTED, ids=lambda v: type(v).__name__)
def test_unsupported_types_deep_inside_raise_with_their_location(target: Path,
                                                                 value: Any) -> None:
    doc = {"runs": [{"ok": 1}, {"folds": [0, {"scores": [1.5, value]}]}]}
    fails_with(atomicjson.UnsupportedTypeError, target, doc,
               {k: v for k, v in WRITERS.items() if k != "sanitize"})
    with pytest.raises(atomicjson.UnsupportedTypeError) as info:
        atomicjson.canonical_bytes(doc)
    assert info.value.location == "$.runs[1].folds[1].scores[1]"
    assert type(value).__name__ in str(info.value)
    with pytest.raises(TypeError):
        atomicjson.dumps(doc)


# ---------------------------------------------------------------------------------------------
# Objects whose own methods raise
# ---------------------------------------------------------------------------------------------
class Boom(Exception):
    pass


class BadStrKey:
    def __str__(self) -> str:
        raise Boom("__str__")

    def __lt__(self, other: Any) -> bool:
        return False


class BadIsoformat(datetime.datetime):
    def isoformat(self, *args: Any, **kwargs: Any) -> str:
        raise Boom("isoformat")


class FakeNumpyArray:
    """Looks like a numpy array to the legacy rules (module numpy.*, ndim > 0)."""

    __module__ = "numpy.fake"
    ndim = 1

    def tolist(self) -> Any:
        raise Boom("tolist")


class FakeNumpyScalar:
    __module__ = "numpy.fake"
    ndim = 0

    def item(self) -> Any:
        raise Boom("item")


class BadLt(int):
    """An int whose ordering raises."""

    __hash__ = int.__hash__

    def __lt__(self, other: Any) -> bool:
        raise Boom("__lt__")

    def __gt__(self, other: Any) -> bool:
        raise Boom("__gt__")


class BadEq:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: Any) -> bool:
        raise Boom("__eq__")

    def __lt__(self, other: Any) -> bool:
        raise Boom("__lt__")


class BadHash:
    def __hash__(self) -> int:
        raise Boom("__hash__")


class Decimal(decimal.Decimal):
    """A Decimal (by name, as the legacy rule tests) whose str() raises."""

    def __str__(self) -> str:
        raise Boom("Decimal.__str__")


class BadEnum(enum.Enum):
    A = 1

    @property
    def value(self) -> Any:
        raise Boom("Enum.value")


class BadPath(os.PathLike):  # type: ignore[type-arg]
    def __fspath__(self) -> str:
        raise Boom("__fspath__")


@dataclasses.dataclass
class BadField:
    x: int = 1

    def __getattribute__(self, name: str) -> Any:
        if name == "x":
            raise Boom("field x")
        return object.__getattribute__(self, name)


RAISING = {
    "__str__ of a key": {"a": {BadStrKey(): 1}},
    "isoformat": {"a": [BadIsoformat(2024, 1, 1)]},
    "tolist": {"a": FakeNumpyArray()},
    "item": {"a": [FakeNumpyScalar()]},
    "Decimal.__str__": {"a": Decimal("1.5")},
    "Enum.value": {"a": BadEnum.A},
    "__fspath__": {"a": BadPath()},
    "dataclass field": {"a": BadField()},
}


@pytest.mark.parametrize("case", sorted(RAISING))
def test_exceptions_from_the_datas_own_methods_are_wrapped_clearly(target: Path,
                                                                   case: str) -> None:
    for name, write in WRITERS.items():
        with pytest.raises(atomicjson.SerializationError) as info:
            write(target, RAISING[case])
        err = info.value
        # The original exception is kept as the cause, and named in the message.
        assert isinstance(err.__cause__, Boom), (name, repr(err.__cause__))
        assert "Boom" in str(err), name
        assert err.location.startswith("$.a"), (name, err.location)


def test_exceptions_from_hash_and_eq_propagate_where_python_raises_them(target: Path) -> None:
    # A set or dict with such elements cannot even be built: Python raises before we run.
    with pytest.raises(Boom):
        {BadHash()}  # noqa: B018
    with pytest.raises(Boom):
        {BadEq(), BadEq()}  # noqa: B018
    # Keys are ordered by their str(), never compared themselves: no __eq__/__lt__ call.
    key = BadEq()
    assert atomicjson.sanitize({"k": {key: 1, "z": 2}}) == {"k": {str(key): 1, "z": 2}}
    assert json.loads(atomicjson.canonical_bytes({key: 1, "z": 2})) == {str(key): 1, "z": 2}
    # Set elements that are numbers are ordered by value without calling their __lt__.
    assert atomicjson.canonical_bytes({"s": {BadLt(2), BadLt(1)}}) == \
        atomicjson.canonical_bytes({"s": [1, 2]})


def test_exception_from_default_passes_through_dumps_unchanged() -> None:
    def default(obj: Any) -> Any:
        raise Boom("default")

    with pytest.raises(Boom):
        atomicjson.dumps({"a": [object()]}, default=default)


# ---------------------------------------------------------------------------------------------
# Data mutated by another thread while it is being serialized
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Point:
    """Sanitized with Python code (dataclasses.fields), so the GIL can switch mid-walk."""

    x: int
    y: int


def test_data_mutated_by_another_thread_gives_a_valid_file_or_a_clear_error(
        tmp_path: Path) -> None:
    rounds = 40 * max(1, STRESS)
    items: List[Any] = [Point(i, -i) for i in range(2000)] + list(range(2000))
    table: Dict[str, Any] = {f"k{i}": [i, Point(i, i)] for i in range(2000)}
    doc = {"items": items, "table": table}
    stop = threading.Event()
    mutations = [0]

    def mutate() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            items.append(Point(i, i))
            items.insert(0, i)
            if len(items) > 5000:
                del items[1000:3000]
            table[f"new{i}"] = [i]
            table.pop(f"new{i - 50}", None)
            if i % 500 == 0:
                table.clear()
                table.update({f"k{j}": [j] for j in range(100)})
            mutations[0] += 1

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=mutate, daemon=True)
    thread.start()
    outcomes: Dict[str, int] = {}
    try:
        path = tmp_path / "m.json"
        for _ in range(rounds):
            for name in ("write_json", "canonical_bytes", "dumps"):
                seen = mutations[0]
                try:
                    if name == "write_json":
                        atomicjson.write_json(path, doc, durable=False)
                        text = path.read_bytes()
                    elif name == "canonical_bytes":
                        text = atomicjson.canonical_bytes(doc)
                    else:
                        text = atomicjson.dumps(doc, default=dataclasses.asdict).encode()
                except atomicjson.AtomicJsonError as err:
                    # The only acceptable failure: a clear error about the change.
                    assert "changed size during iteration" in str(err), repr(err)
                    outcomes["error"] = outcomes.get("error", 0) + 1
                    continue
                if mutations[0] != seen:
                    outcomes["mutated meanwhile"] = outcomes.get("mutated meanwhile", 0) + 1
                parsed = json.loads(text)
                # A complete document: both parts, every list element whole.
                assert set(parsed) == {"items", "table"}
                assert all(isinstance(v, int) or set(v) == {"x", "y"} for v in parsed["items"])
                assert all(isinstance(v, list) for v in parsed["table"].values())
                if name != "dumps":
                    assert text == atomicjson.canonical_bytes(parsed)
                outcomes["ok"] = outcomes.get("ok", 0) + 1
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    assert mutations[0] > 0
    assert outcomes.get("ok", 0) > 0, outcomes
    assert outcomes.get("mutated meanwhile", 0) > 0, outcomes  # the race was really run
    print(f"{rounds * 3} serializations, {mutations[0]} mutations: {outcomes}")  # -s shows it
    assert temp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# A document of tens (CI) to hundreds (ATOMICJSON_STRESS) of MB
# ---------------------------------------------------------------------------------------------
_BIG = r"""
import json, os, resource, sys
import atomicjson

target_mb = int(sys.argv[2])
row = lambda i: {"id": i, "name": f"row-{i}-é€", "score": i / 7, "tags": ["a", "b", str(i)],
                 "nested": {"flag": i % 2 == 0, "none": None, "big": 10 ** 20 + i}}
n = target_mb * 1024 * 1024 // 287  # about 287 bytes per row in the canonical form
doc = {"rows": [row(i) for i in range(n)], "meta": {"rows": n}}

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

before = peak()
atomicjson.write_json(sys.argv[1], doc)
after_write = peak()
size = os.path.getsize(sys.argv[1])
back = atomicjson.read_json(sys.argv[1])
after_read = peak()
same = back == doc
del back
print(json.dumps({"size": size, "write_added": after_write - before,
                  "read_added": after_read - after_write, "same": same}))
"""


def test_big_document_written_and_read_back(tmp_path: Path) -> None:
    megabytes = 300 if STRESS else 50
    path = tmp_path / "big.json"
    atomicjson.write_json(path, PREVIOUS)
    proc = run_python(_BIG, str(path), str(megabytes), timeout=900)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    print(result)  # -s shows the sizes
    assert result["same"]
    assert result["size"] > megabytes * 1024 * 1024 * 0.8
    # One output buffer, then the write: the added peak is about the output size.
    assert result["write_added"] <= 2.5 * result["size"], result
    assert temp_files(tmp_path) == []
    with open(path, "rb") as f:
        f.seek(-2, os.SEEK_END)
        assert f.read() == b"}\n"


# ---------------------------------------------------------------------------------------------
# Fuzzing the sanitizing walk: ordinary documents with hostile ingredients at random places
# ---------------------------------------------------------------------------------------------
class Hostile:
    """A marker in a generated tree, replaced by a hostile ingredient of this kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"Hostile({self.kind!r})"


# What each ingredient does to a write: the exception class it must raise.
INGREDIENTS: Dict[str, Any] = {
    "surrogate value": atomicjson.InvalidDataError,
    "surrogate key": atomicjson.InvalidDataError,
    "colliding keys": atomicjson.KeyCollisionError,
    "unsupported": atomicjson.UnsupportedTypeError,
    "raising __str__ key": atomicjson.SerializationError,
    "raising isoformat": atomicjson.SerializationError,
    "raising tolist": atomicjson.SerializationError,
    "cycle": atomicjson.CircularReferenceError,
    "too deep": atomicjson.NestingTooDeepError,
}


def realize(node: Any, ancestors: List[Any], found: List[str]) -> Any:
    """The document for a generated tree, with each marker replaced (and its kind recorded)."""
    if isinstance(node, Hostile):
        found.append(node.kind)
        if node.kind == "cycle":
            if ancestors:
                return ancestors[len(ancestors) // 2]
            loop: List[Any] = []
            loop.append(loop)
            return loop
        return {
            "surrogate value": lambda: "text \ud800",
            "surrogate key": lambda: {"ok": 1, "\udfff": 2},
            "colliding keys": lambda: {1: "a", "1": "b"},
            "unsupported": object,
            "raising __str__ key": lambda: {BadStrKey(): 1},
            "raising isoformat": lambda: BadIsoformat(2024, 1, 1),
            "raising tolist": FakeNumpyArray,
            "too deep": lambda: nested(atomicjson.MAX_DEPTH + 100, "list"),
        }[node.kind]()
    if isinstance(node, list):
        out: List[Any] = []
        for item in node:
            out.append(realize(item, ancestors + [out], found))
        return out
    if isinstance(node, dict):
        table: Dict[str, Any] = {}
        for key, value in node.items():
            table[key] = realize(value, ancestors + [table], found)
        return table
    return node


def hostile_trees() -> Any:
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.sampled_from(sorted(INGREDIENTS)).map(Hostile),
    )
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=5)),
        max_leaves=25)


def test_fuzz_hostile_ingredients_give_their_error_or_a_correct_file(tmp_path: Path) -> None:
    counts: Dict[str, int] = {}
    target = tmp_path / "fuzz.json"
    atomicjson.write_json(target, PREVIOUS)

    @settings(max_examples=300 * max(1, STRESS), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_trees())
    def check(tree: Any) -> None:
        found: List[str] = []
        doc = realize(tree, [], found)
        before = target.read_bytes()
        try:
            atomicjson.write_json(target, doc, durable=False)
        except atomicjson.SerializationError as err:
            # Only hostile documents fail, and with the class of one of their ingredients.
            assert found, repr(err)
            assert any(isinstance(err, INGREDIENTS[kind]) for kind in found), (found, err)
            assert target.read_bytes() == before
            counts["failed as expected"] = counts.get("failed as expected", 0) + 1
        else:
            assert not found, f"{found} written without an error"
            text = target.read_bytes()
            assert text == atomicjson.canonical_bytes(doc)
            assert json.loads(text) == atomicjson.sanitize(doc)
            counts["written"] = counts.get("written", 0) + 1
        assert temp_files(tmp_path) == []

    check()
    print(f"fuzzed documents: {counts}")  # -s shows it
    assert counts.get("written", 0) > 0 and counts.get("failed as expected", 0) > 0
