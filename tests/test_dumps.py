"""atomicjson.dumps against json.dumps: same text for every input and keyword combination, or
the same built-in exception class (ours also an AtomicJsonError, except exceptions raised by the
caller's ``default``, which pass through unchanged as in json); and write_dumps writes exactly
``dumps(...).encode()``."""

from __future__ import annotations

import collections
import enum
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atomicjson
from conftest import temp_files
from strategies import FloatSub, IntSub, Level, Perm, Status, StrSub, dumps_kwargs, json_values

SETTINGS = settings(deadline=None, max_examples=250,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------
# The differential check
# ---------------------------------------------------------------------------------------------
def _tracked(default, raised):
    """Wrap `default` to remember the exceptions it raises (to tell them apart from ours)."""
    if default is None:
        return None

    def tracked(obj):
        try:
            return default(obj)
        except RecursionError:
            raise  # the interpreter's stack running out under default, not default's own error
        except BaseException as e:
            raised.append(e)
            raise

    return tracked


def _call(fn, obj, kwargs):
    raised: List[Any] = []
    kw = dict(kwargs)
    if "default" in kw:
        kw["default"] = _tracked(kw["default"], raised)
    try:
        return fn(obj, **kw), None, raised
    except Exception as e:  # RecursionError included
        return None, e, raised


def assert_same_as_json(obj, **kwargs):
    """dumps(obj, **kwargs) == json.dumps(obj, **kwargs), or both raise alike. Returns the text."""
    expected, exp_err, exp_raised = _call(json.dumps, obj, kwargs)
    got, got_err, got_raised = _call(atomicjson.dumps, obj, kwargs)
    if exp_err is None:
        assert got_err is None, f"json.dumps returned {expected!r}, atomicjson raised {got_err!r}"
        assert type(got) is str
        assert got == expected
        return got
    assert got_err is not None, f"json.dumps raised {exp_err!r}, atomicjson returned {got!r}"
    if exp_raised and exp_err is exp_raised[-1]:
        # json's error came from the caller's default: ours must be that function's exception,
        # passed through unchanged (not wrapped, not an AtomicJsonError).
        assert got_raised and got_err is got_raised[-1], (
            f"default raised {exp_err!r} under json.dumps; atomicjson raised {got_err!r}")
        assert type(got_err) is type(exp_err)
        assert str(got_err) == str(exp_err)
    else:
        assert not (got_raised and got_err is got_raised[-1]), (
            f"json.dumps raised {exp_err!r} itself, atomicjson let default's {got_err!r} out")
        assert isinstance(got_err, type(exp_err)), (
            f"json.dumps raised {type(exp_err).__name__} ({exp_err}), atomicjson raised "
            f"{type(got_err).__mro__} ({got_err})")
        assert isinstance(got_err, atomicjson.AtomicJsonError), repr(got_err)
    return None


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(json_values(), dumps_kwargs())
def test_dumps_matches_json_dumps(obj, kwargs):
    assert_same_as_json(obj, **kwargs)


@SETTINGS
@given(json_values(unsupported=True), dumps_kwargs())
def test_dumps_matches_json_dumps_with_unsupported_values_and_keys(obj, kwargs):
    assert_same_as_json(obj, **kwargs)


@settings(deadline=None, max_examples=150)
@given(json_values(max_leaves=10))
def test_dumps_default_keywords(obj):
    assert_same_as_json(obj)
    assert_same_as_json(obj, sort_keys=True, indent=2)


@pytest.fixture(scope="module")
def scratch():
    d = tempfile.mkdtemp(prefix="atomicjson-dumps-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@settings(deadline=None, max_examples=120,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(obj=json_values(max_leaves=15, unsupported=True), kwargs=dumps_kwargs(),
       name=st.sampled_from(["out.json", "sub/dir/out.json", "noext"]))
def test_write_dumps_writes_exactly_dumps_encoded(scratch, obj, kwargs, name):
    target = scratch / name
    if target.exists():
        target.unlink()
    try:
        text = atomicjson.dumps(obj, **kwargs)
        text_err = None
    except Exception as e:
        text, text_err = None, e
    payload = None
    if text is not None:
        try:
            payload = text.encode()
        except UnicodeEncodeError as e:  # a lone surrogate with ensure_ascii=False
            text_err = e
    try:
        atomicjson.write_dumps(target, obj, durable=False, **kwargs)
        err = None
    except Exception as e:
        err = e
    if payload is not None:
        assert err is None, repr(err)
        assert target.read_bytes() == payload
    else:
        assert err is not None, "write_dumps wrote what dumps could not produce"
        if isinstance(text_err, UnicodeEncodeError):
            assert isinstance(err, ValueError) and isinstance(err, atomicjson.AtomicJsonError)
        elif isinstance(text_err, atomicjson.AtomicJsonError):
            assert type(err) is type(text_err), (repr(err), repr(text_err))
        else:  # from default: passes through
            assert type(err) is type(text_err)
        assert not target.exists()
    if target.parent.exists():
        assert temp_files(target.parent) == []


def test_write_dumps_keywords_and_replace(tmp_path):
    target = tmp_path / "a.json"
    doc = {"b": [1, 2.5, None], "a": "\u00e9\u2028", 3: float("nan")}
    atomicjson.write_dumps(target, doc)
    assert target.read_bytes() == json.dumps(doc).encode()
    atomicjson.write_dumps(target, doc, indent=2, sort_keys=False, ensure_ascii=False,
                           separators=(",", ": "))
    assert target.read_bytes() == json.dumps(doc, indent=2, ensure_ascii=False,
                                             separators=(",", ": ")).encode()
    atomicjson.write_dumps(target, {1, 2}, default=sorted)
    assert target.read_bytes() == b"[1, 2]"
    # failure leaves the previous file in place
    with pytest.raises(ValueError):
        atomicjson.write_dumps(target, [math.inf], allow_nan=False)
    assert target.read_bytes() == b"[1, 2]"
    assert temp_files(tmp_path) == []


def test_write_dumps_lone_surrogate_cannot_be_utf8(tmp_path):
    target = tmp_path / "s.json"
    atomicjson.write_dumps(target, ["\ud800"])  # ensure_ascii: escaped, fine
    assert target.read_bytes() == b'["\\ud800"]'
    with pytest.raises(ValueError) as info:
        atomicjson.write_dumps(target, ["\ud800"], ensure_ascii=False)
    assert isinstance(info.value, atomicjson.AtomicJsonError)
    assert target.read_bytes() == b'["\\ud800"]'
    assert temp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Hand-written edge cases
# ---------------------------------------------------------------------------------------------
class LoudFloat(float):
    def __repr__(self):
        return "LOUD"

    def __str__(self):
        return "loud"

    def __format__(self, spec):
        return "fmt"


class LoudInt(int):
    def __repr__(self):
        return "LOUD"

    def __str__(self):
        return "loud"

    def __index__(self):
        return 0


class LoudStr(str):
    def __repr__(self):
        return "LOUD"

    def __str__(self):
        return "loud"

    def __iter__(self):
        return iter("nope")


class FloatEnum(float, enum.Enum):
    HALF = 0.5
    BIG = 1e300


class Plain(enum.Enum):
    A = 1


ALL_KWARGS = [
    {},
    {"sort_keys": True},
    {"indent": 2},
    {"indent": 0},
    {"indent": -3},
    {"indent": "\t"},
    {"indent": ""},
    {"indent": "ab", "sort_keys": True},
    {"indent": True},
    {"ensure_ascii": False},
    {"allow_nan": False},
    {"skipkeys": True},
    {"check_circular": False},
    {"separators": (";", "=")},
    {"separators": ("", "")},
    {"indent": 1, "separators": (" ,", " : ")},
    {"default": repr},
    {"default": str, "sort_keys": True, "indent": 3, "ensure_ascii": False},
]


SUBCLASS_CASES = [
    LoudFloat(1.5), LoudFloat("nan"), LoudFloat("-inf"), LoudFloat(-0.0), LoudFloat(1e16),
    LoudInt(7), LoudInt(-(2**100)), LoudStr("x\u00e9\n"), LoudStr(""),
    FloatSub(2.5), IntSub(3), StrSub("s"),
    Level.LOW, Level.HUGE, Perm.R | Perm.W, Perm(0), Status.OK, Status.FAILED,
    FloatEnum.HALF, FloatEnum.BIG, True, False,
    {LoudStr("k"): LoudInt(1), LoudInt(2): LoudFloat(0.25), LoudFloat(3.5): LoudStr("v")},
    {Level.HIGH: "h", Level.LOW: "l", 2: "two"},
    {FloatEnum.HALF: 1, Status.OK: 2},
    [Level.HIGH, Perm.X, Status.FAILED, FloatEnum.BIG],
    collections.OrderedDict([("z", 1), ("a", 2)]),
    collections.defaultdict(list, {"d": [1]}),
    (1, (2, (3,))),
]


@pytest.mark.parametrize("kwargs", ALL_KWARGS, ids=repr)
@pytest.mark.parametrize("obj", SUBCLASS_CASES, ids=lambda o: type(o).__name__)
def test_subclasses_are_written_through_the_base_type(obj, kwargs):
    assert_same_as_json(obj, **kwargs)
    assert_same_as_json([obj, {"k": obj}], **kwargs)


def test_subclass_repr_never_used():
    assert atomicjson.dumps([LoudFloat(1.5), LoudInt(7), LoudStr("s")]) == '[1.5, 7, "s"]'
    assert atomicjson.dumps({LoudInt(7): 1, LoudFloat(0.5): 2}) == '{"7": 1, "0.5": 2}'
    assert atomicjson.dumps(Level.HIGH) == "3"
    assert atomicjson.dumps({Level.HIGH: 1}) == '{"3": 1}'


SPECIAL_KEYS = {True: 1, False: 2, None: 3, 1.5: 4, -0.0: 5, 10**30: 6, -(2**70): 7,
                1e16: 8, 5e-324: 9, "s": 10}


@pytest.mark.parametrize("kwargs", ALL_KWARGS, ids=repr)
def test_bool_none_float_int_keys(kwargs):
    assert_same_as_json(SPECIAL_KEYS, **kwargs)
    assert_same_as_json({True: 1, False: 0}, **kwargs)
    assert_same_as_json({1.5: "a", 2: "b", True: "c"}, **kwargs)  # sortable mixed numbers
    assert_same_as_json({None: 1}, **kwargs)
    assert atomicjson.dumps({True: 1, None: 2, 1.5: 3}) == '{"true": 1, "null": 2, "1.5": 3}'


@pytest.mark.parametrize("allow_nan", [True, False])
@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -math.nan])
def test_nan_and_infinities_values_and_keys(allow_nan, indent, value):
    for obj in (value, [value], {"k": value}, {value: 1}, {"a": [1, {value: value}]},
                FloatSub(value), {FloatSub(value): 1}):
        text = assert_same_as_json(obj, allow_nan=allow_nan, indent=indent)
        if allow_nan:
            assert text is not None
        else:
            with pytest.raises(ValueError) as info:
                atomicjson.dumps(obj, allow_nan=False, indent=indent)
            assert isinstance(info.value, atomicjson.AtomicJsonError)


def test_nan_keys_with_sort_keys():
    nan1, nan2 = float("nan"), float("nan")
    for obj in ({nan1: 1, 1.0: 2, 0.5: 3}, {0.5: 1, nan1: 2, nan2: 3, -1.0: 4},
                {math.inf: 1, nan1: 2, -math.inf: 3}):
        for kw in ({"sort_keys": True}, {"sort_keys": True, "indent": 1}):
            assert_same_as_json(obj, **kw)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64, -(2**200), 10**4299,
                                   -(10**4299), IntSub(10**100), 10**4300, -(10**5000)],
                         ids=lambda v: f"int{v.bit_length()}bits")
@pytest.mark.parametrize("indent", [None, 2])
def test_big_ints(value, indent):
    # 10**4300 exceeds int's str() limit: json raises ValueError, so must we.
    assert_same_as_json(value, indent=indent)
    assert_same_as_json([value, {"k": value}], indent=indent)
    assert_same_as_json({value: 1}, indent=indent)
    assert_same_as_json({value: 1, 0: 2}, indent=indent, sort_keys=True)


@pytest.mark.parametrize("indent", [None, 0, 1, 4, -1, -8, "", "\t", "  ", "xy", "\u00e9",
                                    False, True])
@pytest.mark.parametrize("separators", [None, (",", ":"), (", ", ": "), ("\n,", ":\n")])
def test_indent_variants(indent, separators):
    obj = {"a": [1, [], {}, [[]], {"b": {}}, (), "x"], "c": {"d": [None, True]}, "e": []}
    assert_same_as_json(obj, indent=indent, separators=separators)
    assert_same_as_json([], indent=indent, separators=separators)
    assert_same_as_json({}, indent=indent, separators=separators)
    assert_same_as_json([[[1]]], indent=indent, separators=separators, sort_keys=True)


@pytest.mark.parametrize("indent", [None, 0, 2, "\t"])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_skipkeys(indent, sort_keys):
    skipped_only = {(1,): 1, (2, 3): 2}
    for obj in (skipped_only, {"a": skipped_only}, [skipped_only, {}],
                {(1,): 1, "k": 2, (3,): 3}, {"k": 1, (1,): 2}, {(1,): 1, "k": 2}):
        assert_same_as_json(obj, skipkeys=True, indent=indent, sort_keys=False)
        assert_same_as_json(obj, skipkeys=False, indent=indent)  # TypeError
    if sort_keys:
        # sort_keys with tuple keys next to str keys: TypeError from the sort, even with skipkeys
        assert_same_as_json({(1,): 1, "k": 2}, skipkeys=True, sort_keys=True, indent=indent)
        assert_same_as_json({(1,): 1, (0,): 2}, skipkeys=True, sort_keys=True, indent=indent)


@pytest.mark.parametrize("check_circular", [True, False])
@pytest.mark.parametrize("indent", [None, 2])
def test_circular_data(check_circular, indent):
    lst: List[Any] = [1]
    lst.append(lst)
    dct: Dict[str, Any] = {"a": 1}
    dct["self"] = dct
    nested: Dict[str, Any] = {"x": [{"y": None}]}
    nested["x"][0]["y"] = nested["x"]
    for obj in (lst, dct, nested, [dct], {"k": lst}):
        assert_same_as_json(obj, check_circular=check_circular, indent=indent)
        with pytest.raises(RecursionError if not check_circular else ValueError) as info:
            atomicjson.dumps(obj, check_circular=check_circular, indent=indent)
        assert isinstance(info.value, atomicjson.AtomicJsonError)


def test_same_object_twice_is_not_circular():
    shared = [1, {"a": 2}]
    obj = {"x": shared, "y": shared, "z": [shared, shared]}
    for kw in ({}, {"indent": 2}, {"check_circular": False}):
        assert assert_same_as_json(obj, **kw) is not None


class A:
    pass


class B:
    pass


class C:
    pass


def chained_default(obj):
    if isinstance(obj, A):
        return B()
    if isinstance(obj, B):
        return {"b": [C(), 1.5], "t": (C(),)}
    if isinstance(obj, C):
        return "c"
    raise TypeError(f"no {type(obj).__name__}")


def self_default(obj):
    return obj  # needs default again, forever


def box_default(obj):
    return [obj]  # a new container holding the same object, forever


def set_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise ValueError("not a set")  # a ValueError, not json's TypeError


@pytest.mark.parametrize("check_circular", [True, False])
@pytest.mark.parametrize("indent", [None, 2])
def test_default_results_are_encoded_in_turn(check_circular, indent):
    kw = {"check_circular": check_circular, "indent": indent}
    assert assert_same_as_json(A(), default=chained_default, **kw) is not None
    assert assert_same_as_json({"a": [A(), A()], "n": 1}, default=chained_default, **kw)
    assert_same_as_json({"a": object()}, default=chained_default, **kw)  # TypeError from default
    assert_same_as_json([{1, 3, 2}, frozenset({"b", "a"})], default=set_default, **kw)
    assert_same_as_json([{1}, 1j], default=set_default, **kw)  # ValueError from default
    assert_same_as_json(A(), default=self_default, **kw)  # ValueError / RecursionError
    assert_same_as_json(A(), default=box_default, **kw)
    # default is never called for supported values, nor for keys
    calls: List[Any] = []
    atomicjson.dumps({"a": [1, 2.5, "s", None, True, (1,)]}, default=calls.append, **kw)
    assert calls == []
    assert_same_as_json({A(): 1}, default=str, **kw)  # unsupported key: TypeError, no default


def test_exception_from_default_passes_through_unchanged():
    sentinel = KeyError("mine")

    def default(obj):
        raise sentinel

    with pytest.raises(KeyError) as info:
        atomicjson.dumps({"a": [object()]}, default=default)
    assert info.value is sentinel
    assert not isinstance(info.value, atomicjson.AtomicJsonError)

    class Boom(Exception):
        pass

    def boom(obj):
        raise Boom()

    with pytest.raises(Boom):
        atomicjson.dumps([1, A()], default=boom, indent=2)


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("indent", [None, 2])
def test_lone_surrogates(ensure_ascii, indent):
    for s in ("\ud800", "\udfff", "a\udbffb", "\ud83d\ude00", "\ud83d", "\ude00\ud83d",
              "\U0001f600", "\x00\x1f\x7f\u2028\u2029\"\\/"):
        for obj in (s, [s], {s: s}, StrSub(s), {StrSub(s): 1}):
            text = assert_same_as_json(obj, ensure_ascii=ensure_ascii, indent=indent)
            assert text is not None


@pytest.mark.parametrize("kwargs", [{}, {"indent": 2}, {"sort_keys": True}], ids=repr)
def test_unsupported_values_and_keys(kwargs):
    for obj in (object(), {1, 2}, b"x", 1j, Plain.A, A(), [1, {"a": {2}}],
                {"a": 1, (1, 2): 3}, {frozenset(): 1}, {b"k": 1}, {Plain.A: 1},
                {1: "a", "b": 2}, {None: 1, "a": 2}):
        assert_same_as_json(obj, **kwargs)


def test_unsupported_value_raises_type_error_and_atomicjson_error():
    with pytest.raises(TypeError) as info:
        atomicjson.dumps({"a": [object()]})
    assert isinstance(info.value, atomicjson.AtomicJsonError)
    with pytest.raises(TypeError) as info:
        atomicjson.dumps({1: 1, "a": 2}, sort_keys=True)
    assert isinstance(info.value, atomicjson.AtomicJsonError)


def test_mixed_keys_written_twice_without_sort():
    assert_same_as_json({1: "a", "1": "b"})
    assert atomicjson.dumps({1: "a", "1": "b"}) == '{"1": "a", "1": "b"}'


def test_float_formatting():
    values = [0.1, 1 / 3, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 5e-324,
              1.7976931348623157e308, 2.0**53, 123456789.125, -0.0, 0.0, 1e22, 1e21, 1e-7,
              float.fromhex("0x1.fffffffffffffp-1023")]
    assert_same_as_json(values)
    assert_same_as_json({v: v for v in values})


def _deepest_json_accepts() -> int:
    lo, hi = 1, 100_000
    while lo < hi:  # largest depth json.dumps accepts
        mid = (lo + hi + 1) // 2
        try:
            json.dumps(_nest(mid))
            lo = mid
        except RecursionError:
            hi = mid - 1
    return lo


def _nest(depth, leaf=1):
    obj = leaf
    for i in range(depth):
        obj = [obj] if i % 2 else {"k": obj}
    return obj


def test_nesting_as_deep_as_json_accepts():
    depth = _deepest_json_accepts()
    obj = _nest(depth)
    assert atomicjson.dumps(obj) == json.dumps(obj)
    assert atomicjson.dumps(obj, indent=1) == json.dumps(obj, indent=1)
    with pytest.raises(RecursionError) as info:
        atomicjson.dumps(_nest(200_000))
    assert isinstance(info.value, atomicjson.AtomicJsonError)


def test_no_fallback_arguments_validated_like_json():
    # A few argument types json accepts loosely.
    assert_same_as_json([1, {"a": 2}], separators=[",", ":"])
    assert_same_as_json({"a": 1}, indent=2, separators=None)


def test_dumps_on_plain_env_does_not_change_inputs():
    doc = {"b": [3, 1], "a": {"z": 1, "y": 2}}
    snapshot = json.dumps(doc)
    atomicjson.dumps(doc, sort_keys=True, indent=2)
    assert json.dumps(doc) == snapshot  # dict order untouched


if __name__ == "__main__":  # pragma: no cover
    pytest.main([os.path.abspath(__file__), "-q"])


@pytest.mark.parametrize("indent", [None, 2])
def test_errors_come_in_document_order(indent):
    # json encodes key, value, key, value...: an error in an earlier value wins over a bad key
    # that comes later in the same dict.
    nan = float("nan")
    cases = [
        ({"a": [nan], (1,): 2}, {"allow_nan": False}),      # ValueError, not the key's TypeError
        ({"a": {1}, nan: 2}, {"allow_nan": False}),          # TypeError, not the key's ValueError
        ({"a": {1}, (1,): 2}, {}),
        ({0: {"": None, 0: None}, math.inf: None}, {"sort_keys": True, "allow_nan": False}),
    ]
    for obj, kw in cases:
        assert_same_as_json(obj, indent=indent, **kw)
