"""Hypothesis strategies for the differential tests of atomicjson.

* ``legacy_documents()``: nested documents built only from inputs the legacy helpers accept,
  so ``legacy.canonical_dump(doc)`` succeeds, covering every type the legacy sanitizers know.
* ``json_values()`` and ``dumps_kwargs()``: plain values and keyword combinations for
  ``atomicjson.dumps`` against ``json.dumps`` (errors included: compare exception classes).
* ``beyond_legacy_values()``: values the legacy rejects but atomicjson must write
  (datetimes, ``pd.NaT``, pure paths).

What the legacy rejects, and therefore what ``legacy_documents`` avoids:

* Dicts whose raw keys do not compare (``{1: 'a', '1': 'b'}``, ``{None: 1, 'a': 2}``): both
  passes sort ``d.items()`` by the raw key.  Each generated dict uses one key family.
* Two keys with the same ``str()``: the legacy silently keeps one; the generators drop such
  keys so that no value is lost (atomicjson raises there).
* ``frozenset`` elements, and ``set`` elements inside dataclasses / Enum values / object
  arrays, are only seen by the second pass, which sorts them naturally after sanitizing: those
  come from families of mutually comparable values and never contain NaN (a NaN makes the
  order depend on the sorting algorithm).
* Lone surrogates (cannot be UTF-8 encoded), ints longer than 4300 digits (``str()`` limit),
  ``datetime``/``date``/``time``/``pd.NaT``/``PurePath`` (``json.dumps`` raises), numpy
  ``longdouble`` (``item()`` returns a ``longdouble`` again: infinite recursion), numpy
  ``datetime64``/``complex``/``bytes``, signaling-NaN ``Decimal`` in sets or keys (unhashable).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import pathlib
import sys
import typing

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "legacy_documents",
    "json_values",
    "dumps_kwargs",
    "beyond_legacy_values",
    "unicode_text",
    "any_floats",
    "big_ints",
    "timestamps",
    "enum_members",
    "paths",
    "decimals",
    "numpy_scalars",
    "numpy_arrays",
    # types used in generated documents (importable so pickling / subprocesses work)
    "Color",
    "Status",
    "Level",
    "Perm",
    "Mixed",
    "Point",
    "Fold",
    "Run",
    "FrozenTag",
    "FloatSub",
    "IntSub",
    "StrSub",
]


# ---------------------------------------------------------------------------------------------
# Types that appear in documents
# ---------------------------------------------------------------------------------------------
class Color(enum.Enum):  # plain Enum, str values; str(Color.RED) == "Color.RED"
    RED = "red"
    GREEN = "green"
    BLUE = "bl\u00fc\u2028e"


class Status(str, enum.Enum):  # str-valued mixin Enum; str() is still "Status.OK" in 3.11
    OK = "ok"
    FAILED = "failed \U0001f4a5"


class Level(enum.IntEnum):  # IntEnum; str(Level.HIGH) == "3" since 3.11
    LOW = 1
    HIGH = 3
    HUGE = 2**70


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


class Mixed(enum.Enum):  # plain Enum with JSON-native values of several types
    FLOAT = 1.5
    NEG_ZERO = -0.0
    BIG = 10**30
    NONE = None
    TRUE = True
    PAIR = (1, "two")
    TEXT = "x\ny"


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Fold:
    index: int
    scores: typing.List[typing.Any]
    meta: typing.Dict[typing.Any, typing.Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Run:
    name: str
    folds: typing.List[typing.Any]  # may hold Fold instances: asdict() recurses into lists
    best: typing.Any = None  # may hold another Run / Point / anything second-pass-safe
    tags: typing.Tuple[typing.Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class FrozenTag:  # hashable: may sit in a (top-level) set, sorted by its repr there
    key: str
    n: int


class FloatSub(float):
    def __repr__(self):  # json.dumps ignores this and uses float.__repr__
        return "FloatSub!"

    __str__ = __repr__


class IntSub(int):
    def __repr__(self):
        return "IntSub!"

    __str__ = __repr__


class StrSub(str):
    def __str__(self):
        return "StrSub!"


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------
_SPECIAL_CHARS = (
    [chr(c) for c in range(0x20)]
    + ['"', "\\", "/", "\x7f", "\x80", "\x9f", "\u00a0", "\u00e9", "\u0301", "\u2028", "\u2029"]
    + ["\ufeff", "\ufffd", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff", "\u4e2d"]
)


def unicode_text(max_size: int = 12, surrogates: bool = False) -> st.SearchStrategy[str]:
    """Strings with all kinds of unicode: control chars, DEL, U+2028, astral, quotes.

    No lone surrogates unless ``surrogates`` (``json.dumps`` accepts them, UTF-8 cannot).
    """
    chars = st.characters(codec="utf-8") if not surrogates else st.characters()
    tricky = st.sampled_from(_SPECIAL_CHARS)
    if surrogates:
        tricky = tricky | st.sampled_from(["\ud800", "\udfff", "\udbff"])
    return st.one_of(
        st.text(chars, max_size=max_size),
        st.text(tricky | st.characters(max_codepoint=0x7F), max_size=max_size),
    )


def any_floats() -> st.SearchStrategy[float]:
    """The whole double range: subnormals, huge, +-0.0, NaN, +-inf, and repr-layout edges."""
    edges = st.sampled_from(
        [
            0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
            1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 0.0001, 0.00001, 1.5e300, 100.0,
            0.1, 1 / 3, 2.0**-25, 2.0**53, 2.0**53 + 2, 123456789.125,
            math.inf, -math.inf, math.nan, -math.nan,
        ]
    )
    non_finite = st.sampled_from([math.inf, -math.inf, math.nan, -0.0])
    return st.one_of(st.floats(), edges, non_finite, st.floats(-1e6, 1e6))


def big_ints() -> st.SearchStrategy[int]:
    """Small ints, 64-bit edges and ints far beyond 64 bits (below the 4300-digit str limit)."""
    edges = st.sampled_from(
        [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**64) - 1]
    )
    return st.one_of(
        st.integers(-1000, 1000),
        edges,
        st.integers(-(2**128), 2**128),
        st.integers(-(10**400), 10**400),
    )


_ZONES = [
    "UTC",
    "Asia/Kolkata",  # +05:30 (and +05:53:28 LMT before 1880)
    "Asia/Kathmandu",  # +05:45
    "America/New_York",  # DST
    "Australia/Lord_Howe",  # +10:30 / +11:00
    "America/St_Johns",  # -03:30
    datetime.timezone.utc,
    datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
    datetime.timezone(datetime.timedelta(hours=-9, minutes=-15)),
]

_NS_MIN = pd.Timestamp.min.value
_NS_MAX = pd.Timestamp.max.value


def timestamps(tz: bool | None = None) -> st.SearchStrategy[pd.Timestamp]:
    """pandas Timestamps: naive or tz-aware (``tz`` None = either), with or without ns."""
    nanos = st.one_of(
        st.integers(_NS_MIN + 86_400 * 10**9, _NS_MAX - 86_400 * 10**9),
        # round values, so that isoformat drops the fraction or shows only microseconds
        st.integers(-(9 * 10**9), 9 * 10**9).map(lambda s: s * 10**9),
        st.integers(-(9 * 10**15), 9 * 10**15).map(lambda us: us * 1000),
    )
    naive = st.one_of(
        nanos.map(lambda v: pd.Timestamp(v, unit="ns")),
        # microsecond-unit Timestamps over the whole datetime range (years 1..9999)
        st.datetimes(
            min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)
        ).map(pd.Timestamp),
    )
    aware = st.builds(
        lambda v, zone: pd.Timestamp(v, unit="ns", tz="UTC").tz_convert(zone),
        nanos,
        st.sampled_from(_ZONES),
    )
    if tz is None:
        return naive | aware
    return aware if tz else naive


def enum_members() -> st.SearchStrategy[enum.Enum]:
    return st.sampled_from(
        list(Color) + list(Status) + list(Level) + list(Perm) + [Perm.R | Perm.W] + list(Mixed)
    )


def paths() -> st.SearchStrategy[pathlib.Path]:
    part = st.one_of(
        st.sampled_from(["a", "b.json", "runs", "x.tar.gz", ".hidden", "..", ".", "d\u00e9j\u00e0"]),
        st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=6),
    )
    return st.builds(
        lambda root, parts: pathlib.Path(root, *parts),
        st.sampled_from(["", "/", "/tmp", "~"]),
        st.lists(part, max_size=4),
    )


def decimals(hashable: bool = False, for_keys: bool = False) -> st.SearchStrategy[decimal.Decimal]:
    """Decimals of many shapes (``str()`` switches to exponent notation at times).

    ``hashable`` excludes signaling NaN (its hash raises); ``for_keys`` keeps only finite
    values with small exponents: Decimal comparisons (the legacy sorts keys) align the
    coefficients, and ``1E+999999999 < 1`` allocates gigabytes.
    """
    finite = st.builds(
        lambda sign, digits, exp: decimal.Decimal((sign, tuple(digits), exp)),
        st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=30),
        st.integers(-30, 30),
    )
    if for_keys:
        return finite
    special = [
        "NaN", "-NaN", "Infinity", "-Infinity", "-0", "0E-7", "1E+2", "1.50", "0.000001",
        "0.0000001", "123456789012345678901234567890.000", "1E+999999999", "-1E-999999999",
    ]
    if not hashable:
        special.append("sNaN")
    return st.one_of(finite, st.sampled_from(special).map(decimal.Decimal))


_FLOAT_DTYPES = [np.float64, np.float32, np.float16]
_INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def numpy_scalars(allow_nan: bool = True) -> st.SearchStrategy:
    """numpy scalars (module ``numpy``): ``item()`` gives the Python value."""
    floats = st.sampled_from(_FLOAT_DTYPES).flatmap(
        lambda dt: hnp.from_dtype(np.dtype(dt), allow_nan=allow_nan)
    )
    ints = st.sampled_from(_INT_DTYPES).flatmap(lambda dt: hnp.from_dtype(np.dtype(dt)))
    return st.one_of(
        floats,
        ints,
        st.booleans().map(np.bool_),
        unicode_text(max_size=6).map(np.str_),
        # 0-d arrays have ndim == 0, so the legacy calls item() on them too
        big_ints().filter(lambda i: -(2**63) <= i < 2**63).map(lambda i: np.array(i)),
    )


def numpy_arrays(allow_nan: bool = True) -> st.SearchStrategy[np.ndarray]:
    """1-d and 2-d arrays of various dtypes (``tolist()`` then recursed)."""
    dtypes = st.sampled_from(
        [np.dtype(t) for t in _FLOAT_DTYPES + _INT_DTYPES] + [np.dtype(np.bool_), np.dtype("<U4")]
    )
    numeric = dtypes.flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=4),
            elements=hnp.from_dtype(dt, allow_nan=allow_nan)
            if dt.kind == "f"
            else hnp.from_dtype(dt, alphabet=st.characters(codec="utf-8"))
            if dt.kind == "U"
            else None,
        )
    )
    objects = st.lists(
        st.one_of(st.none(), st.booleans(), st.integers(), unicode_text(4)), max_size=4
    ).map(lambda xs: np.array(xs + [None], dtype=object))  # a trailing None forces dtype=object
    return numeric | objects


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------
def _unique_by_str(pairs):
    """Build a dict, then drop keys whose ``str()`` collides with an earlier key's."""
    d = dict(pairs)
    seen = set()
    out = {}
    for k, v in d.items():
        s = str(k)
        if s not in seen:
            seen.add(s)
            out[k] = v
    return out


def _numeric_keys():
    # int / float / bool mix: they all compare.  NaN is fine as a key (it never raises and
    # the order of distinct str keys is decided by the final json.dumps sort anyway).
    return st.one_of(st.booleans(), big_ints(), any_floats())


def _homogeneous_key_families():
    """Key strategies whose members compare among themselves (one family per dict)."""
    return [
        unicode_text(),
        _numeric_keys(),
        timestamps(tz=False),  # str(ts): "2024-01-02 03:04:05.123456789" (space, not T)
        timestamps(tz=True),  # aware vs naive do not compare, so never mixed
        paths(),
        decimals(for_keys=True),  # NaN Decimal raises on <, huge exponents blow up
        st.tuples(st.integers(-5, 5), unicode_text(3)),
        st.sampled_from(list(Level)),  # IntEnum keys: str() is the int ("1")
    ]


def _single_keys(in_dataclass):
    """Keys that are fine alone in a dict (nothing to compare them with)."""
    keys = [
        st.none(),  # -> "None"
        enum_members(),  # plain Enum -> "Color.RED", Status -> "Status.OK", Level -> "3"
        numpy_scalars().filter(lambda x: not isinstance(x, np.ndarray)),  # 0-d: unhashable
    ]
    if not in_dataclass:
        # A dataclass key inside a dataclass breaks asdict(), which turns it into a dict
        # (unhashable): legacy TypeError.  Elsewhere str(key) is its repr.
        keys.append(st.builds(FrozenTag, unicode_text(3), st.integers()))
    return st.one_of(keys)


def _dicts(values, max_size=5, in_dataclass=False):
    families = _homogeneous_key_families()
    multi = st.one_of(
        [st.lists(st.tuples(k, values), max_size=max_size).map(_unique_by_str) for k in families]
    )
    single = st.builds(lambda k, v: {k: v}, _single_keys(in_dataclass), values)
    str_keyed = st.dictionaries(unicode_text(), values, max_size=max_size)
    # plain str keys most of the time (one_of picks its branches uniformly)
    return st.one_of(str_keyed, str_keyed, str_keyed, multi, single)


# ---------------------------------------------------------------------------------------------
# Sets
# ---------------------------------------------------------------------------------------------
def _comparable_families():
    """Families of hashable values that still compare after the second pass, NaN-free.

    Second pass maps: Timestamp/Path/Decimal/str-Enum -> str; numpy scalar -> Python number.
    """
    stringish = st.one_of(
        unicode_text(6),
        timestamps(),
        paths(),
        decimals(hashable=True),
        st.sampled_from(list(Color) + list(Status)),
    )
    numberish = st.one_of(
        st.booleans(),
        big_ints(),
        any_floats().filter(lambda f: not math.isnan(f)),
        st.sampled_from(list(Level) + list(Perm)),
        numpy_scalars(allow_nan=False).filter(lambda x: not isinstance(x, (np.str_, np.ndarray))),
    )
    int_tuples = st.tuples(st.integers(-3, 3), st.integers(-3, 3))
    return [stringish, numberish, int_tuples]


def _natural_sets(kind):
    """Sets / frozensets whose sanitized elements sort naturally."""
    return st.one_of(
        [st.frozensets(fam, max_size=5).map(kind) for fam in _comparable_families()]
    ) | st.just(kind({None}))


def _str_sorted_sets():
    """Top-level sets: sorted by str() of the raw elements, so any hashable mix is fine."""
    hashable = st.one_of(
        st.none(),
        st.booleans(),
        big_ints(),
        any_floats(),
        unicode_text(6),
        timestamps(),
        enum_members(),
        paths(),
        decimals(hashable=True),
        numpy_scalars().filter(lambda x: not isinstance(x, np.ndarray)),
        st.tuples(st.integers(-3, 3), unicode_text(3)),
        st.builds(FrozenTag, unicode_text(3), st.integers(-3, 3)),
        st.frozensets(st.integers(-50, 50), max_size=3),
    )
    return st.sets(hashable, max_size=6)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------
def _scalar_leaves(allow_nan_numpy=True):
    return st.one_of(
        st.none(),
        st.booleans(),
        big_ints(),
        any_floats(),
        unicode_text(),
        timestamps(),
        enum_members(),
        paths(),
        decimals(),
        numpy_scalars(allow_nan_numpy),
        numpy_arrays(allow_nan_numpy),
    )


def _dataclass_instances(children):
    folds = st.builds(
        Fold,
        st.integers(0, 20),
        st.lists(st.one_of(any_floats(), numpy_scalars()), max_size=4),
        _dicts(children, max_size=3, in_dataclass=True),
    )
    points = st.builds(Point, any_floats(), any_floats())
    runs = st.builds(
        Run,
        unicode_text(6),
        st.lists(folds | children, max_size=3),
        st.one_of(st.none(), points, children),
        st.lists(children, max_size=3).map(tuple),
    )
    return st.one_of(points, folds, runs)


def _second_pass_safe(max_leaves):
    """Values that are fine where only the second pass sees them (inside dataclasses)."""
    return st.recursive(
        _scalar_leaves() | _natural_sets(set) | _natural_sets(frozenset),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            _dicts(children, max_size=4, in_dataclass=True),
            _dataclass_instances(children),
        ),
        max_leaves=max_leaves,
    )


def legacy_documents(max_leaves: int = 30) -> st.SearchStrategy:
    """Nested documents for which ``legacy.canonical_dump`` succeeds, covering every type."""
    in_dataclass = _second_pass_safe(max(4, max_leaves // 4))
    leaves = st.one_of(
        _scalar_leaves(),
        _str_sorted_sets(),
        _natural_sets(frozenset),
        _dataclass_instances(in_dataclass),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=5).map(tuple),
            _dicts(children),
            _dataclass_instances(in_dataclass),
        ),
        max_leaves=max_leaves,
    )


# ---------------------------------------------------------------------------------------------
# json.dumps-compatible values and keywords
# ---------------------------------------------------------------------------------------------
class _Unsupported:
    """An object json.dumps cannot encode; its repr is stable."""

    def __init__(self, tag):
        self.tag = tag

    def __repr__(self):
        return f"<Unsupported {self.tag!r}>"


def json_values(
    max_leaves: int = 30,
    *,
    surrogates: bool = True,
    mixed_keys: bool = True,
    subclasses: bool = True,
    unsupported: bool = False,
) -> st.SearchStrategy:
    """Plain JSON-able values for ``atomicjson.dumps`` vs ``json.dumps``.

    dict (str keys, and int/float/bool/None keys) / list / tuple / str / int / float / bool /
    None.  Options:
    ``surrogates``: strings may hold lone surrogates (json.dumps accepts them).
    ``mixed_keys``: some dicts mix key types (``sort_keys=True`` then raises ``TypeError``,
    and ``{1: .., '1': ..}`` writes the key twice).
    ``subclasses``: IntEnum / IntFlag members, float/int/str subclasses with their own repr.
    ``unsupported``: also values json.dumps cannot encode without ``default`` (sets, Decimal,
    complex, bytes, plain Enum, custom objects), and unsupported (tuple) keys for ``skipkeys``.
    """
    text = unicode_text(surrogates=surrogates)
    scalars: typing.List[st.SearchStrategy[typing.Any]] = [st.none(), st.booleans(), big_ints(), any_floats(), text]
    basic_keys: typing.List[st.SearchStrategy[typing.Any]] = [text, big_ints(), any_floats(), st.booleans(), st.none()]
    if subclasses:
        scalars += [
            st.sampled_from(list(Level) + list(Perm)),
            any_floats().map(FloatSub),
            big_ints().map(IntSub),
            text.map(StrSub),
        ]
        basic_keys += [st.sampled_from(list(Level)), any_floats().map(FloatSub), big_ints().map(IntSub)]
    if unsupported:
        scalars += [
            st.frozensets(st.integers(-9, 9), max_size=3).map(set),
            decimals(hashable=True),
            st.complex_numbers(allow_nan=False, max_magnitude=1e6),
            st.binary(max_size=4),
            st.sampled_from(list(Color)),
            st.integers(0, 9).map(_Unsupported),
        ]
    key_strategies: typing.List[st.SearchStrategy[typing.Any]] = [text, st.one_of(big_ints(), any_floats(), st.booleans())]
    if mixed_keys:
        key_strategies.append(st.one_of(basic_keys))
    if unsupported:
        key_strategies.append(st.one_of(text, st.tuples(st.integers(0, 3))))

    def extend(children):
        dicts = st.one_of(
            [st.dictionaries(k, children, max_size=5) for k in key_strategies]
        )
        return st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=5).map(tuple),
            dicts,
        )

    return st.recursive(st.one_of(scalars), extend, max_leaves=max_leaves)


def _default_sorted_list(obj):
    """A ``default`` that returns another value to encode (sets -> sorted lists)."""
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    return repr(obj)


def _default_raises(obj):
    raise TypeError(f"custom default refuses {type(obj).__name__}")


DEFAULT_FUNCTIONS = [None, str, repr, _default_sorted_list, _default_raises]


def dumps_kwargs() -> st.SearchStrategy[typing.Dict[str, typing.Any]]:
    """Every combination of ``json.dumps`` keywords (pass with ``**``)."""
    indents = st.one_of(
        st.none(),
        st.integers(-2, 8),  # 0 and negative ints: newlines without indentation
        st.sampled_from(["", "\t", "  ", " \t", "--", "\u00a0"]),
    )
    separators = st.one_of(
        st.none(),
        st.sampled_from([(",", ":"), (",", ": "), (", ", ": "), (", ", ":"), (";", "=")]),
        st.tuples(st.text(" ,;\t\u00e9", max_size=3), st.text(" :=\n", max_size=3)),
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "skipkeys": st.booleans(),
            "ensure_ascii": st.booleans(),
            "check_circular": st.booleans(),
            "allow_nan": st.booleans(),
            "indent": indents,
            "separators": separators,
            "sort_keys": st.booleans(),
            "default": st.sampled_from(DEFAULT_FUNCTIONS),
        },
    )


# ---------------------------------------------------------------------------------------------
# Beyond the legacy
# ---------------------------------------------------------------------------------------------
def beyond_legacy_values() -> st.SearchStrategy:
    """Values the legacy fails on and atomicjson must write (as isoformat / null / str)."""
    return st.one_of(
        st.datetimes(),
        st.datetimes(timezones=st.sampled_from([datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=5, minutes=30))])),
        st.dates(),
        st.times(),
        st.just(pd.NaT),
        st.builds(pathlib.PurePosixPath, st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)),
    )


if __name__ == "__main__":  # quick look at a few documents
    import legacy

    for _ in range(5):
        doc = legacy_documents().example()
        sys.stdout.write(legacy.canonical_dump(doc).decode())
