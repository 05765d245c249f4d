"""read_json / loads against json.loads: equal results for everything either writer produces,
and the same rejections (msg, pos, lineno, colno) for malformed and truncated input."""

from __future__ import annotations

import errno
import itertools
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import atomicjson
import legacy
from strategies import dumps_kwargs, json_values, legacy_documents, unicode_text

SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch():
    d = tempfile.mkdtemp(prefix="atomicjson-read-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _file(directory: Path, data: bytes) -> Path:
    p = directory / f"doc{next(_counter)}.json"
    p.write_bytes(data)
    return p


# ---------------------------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------------------------
def same(a, b) -> bool:
    """Structural identity of parsed JSON: exact types, NaN == NaN, the sign of zero, dict order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _json_loads(data):
    try:
        return json.loads(data), None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, ...
        return None, e


def _assert_decode_error_like(got_err, exp_err, where=None):
    assert isinstance(got_err, atomicjson.JSONDecodeError), repr(got_err)
    assert isinstance(got_err, json.JSONDecodeError)
    assert isinstance(got_err, ValueError)
    assert isinstance(got_err, atomicjson.AtomicJsonError)
    if isinstance(exp_err, json.JSONDecodeError):
        assert (got_err.msg, got_err.pos, got_err.lineno, got_err.colno) == (
            exp_err.msg, exp_err.pos, exp_err.lineno, exp_err.colno), (str(got_err), str(exp_err))
        assert f"line {exp_err.lineno} column {exp_err.colno}" in str(got_err)
    else:
        # json.loads fails to decode the bytes (UnicodeDecodeError) before parsing: we must
        # reject too, with a decode error.
        assert isinstance(exp_err, UnicodeDecodeError), repr(exp_err)
    if where is not None:
        assert str(where) in str(got_err), str(got_err)


def check_bytes(directory: Path, data: bytes):
    """read_json(file with `data`) and loads(data) agree with json.loads(data)."""
    expected, exp_err = _json_loads(data)
    path = _file(directory, data)
    for name, call, where in (("read_json", lambda: atomicjson.read_json(path), path),
                              ("loads(bytes)", lambda: atomicjson.loads(data), None),
                              ("loads(bytearray)", lambda: atomicjson.loads(bytearray(data)), None)):
        try:
            got, got_err = call(), None
        except Exception as e:
            got, got_err = None, e
        if exp_err is None:
            assert got_err is None, f"{name}: json.loads accepted {data!r}, got {got_err!r}"
            assert same(got, expected), f"{name}: {got!r} != {expected!r} for {data!r}"
        else:
            assert got_err is not None, (
                f"{name}: json.loads rejected {data!r} ({exp_err!r}), we returned {got!r}")
            _assert_decode_error_like(got_err, exp_err, where)
    path.unlink()
    return expected, exp_err


def check_text(text: str):
    """loads(str) agrees with json.loads(str)."""
    expected, exp_err = _json_loads(text)
    try:
        got, got_err = atomicjson.loads(text), None
    except Exception as e:
        got, got_err = None, e
    if exp_err is None:
        assert got_err is None, f"json.loads accepted {text!r}, got {got_err!r}"
        assert same(got, expected)
    else:
        assert got_err is not None, f"json.loads rejected {text!r}, we returned {got!r}"
        _assert_decode_error_like(got_err, exp_err)


# ---------------------------------------------------------------------------------------------
# What the writers produce
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(doc=legacy_documents())
def test_read_what_write_json_writes(scratch, doc):
    data = atomicjson.canonical_bytes(doc)
    assert data == legacy.canonical_dump(doc)
    expected, err = check_bytes(scratch, data)
    assert err is None
    check_text(data.decode())


@SETTINGS
@given(doc=legacy_documents(max_leaves=15))
def test_read_file_written_by_write_json(scratch, doc):
    path = scratch / f"w{next(_counter)}.json"
    atomicjson.write_json(path, doc, durable=False)
    assert same(atomicjson.read_json(path), json.loads(path.read_bytes()))


_ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
              "utf-32", "utf-32-le", "utf-32-be"]


@SETTINGS
@given(obj=json_values(), kwargs=dumps_kwargs(), encoding=st.sampled_from(_ENCODINGS))
def test_read_what_dumps_writes(scratch, obj, kwargs, encoding):
    try:
        text = atomicjson.dumps(obj, **kwargs)
    except Exception:
        assume(False)
    # Odd separators/indents may make invalid JSON: then both must reject alike.
    check_bytes(scratch, text.encode(encoding, "surrogatepass"))
    check_text(text)


@SETTINGS
@given(obj=json_values(max_leaves=10), encoding=st.sampled_from(_ENCODINGS))
def test_read_plain_json_dumps_output(scratch, obj, encoding):
    for kw in ({}, {"ensure_ascii": False}, {"indent": 2, "ensure_ascii": False}):
        try:
            text = json.dumps(obj, **kw)
        except (TypeError, ValueError):
            return
        check_bytes(scratch, text.encode(encoding, "surrogatepass"))


@SETTINGS
@given(text=unicode_text(max_size=40, surrogates=True))
def test_all_of_unicode_in_strings(scratch, text):
    for ensure_ascii in (True, False):
        doc = json.dumps({text: [text]}, ensure_ascii=ensure_ascii)
        check_bytes(scratch, doc.encode("utf-8", "surrogatepass"))
        check_text(doc)
    # raw text between quotes, unescaped (control characters must be rejected)
    check_bytes(scratch, b'"' + text.encode("utf-8", "surrogatepass") + b'"')
    check_text('"' + text + '"')


SPECIAL_DOCUMENTS = [
    b"NaN", b"Infinity", b"-Infinity", b"[NaN, Infinity, -Infinity]",
    b'{"NaN": NaN, "x": -Infinity}', b"nan", b"inf", b"-NaN", b"+1", b"Infinity1",
    b"-", b"--1", b"1e400", b"-1e400", b"1e-400", b"-0", b"-0.0", b"0.0", b"01", b"00",
    b"1.", b"1e", b"1e+", b".5", b"1.5e+10", b"1E5", b"2.5E-3", b"0.1000000000000000055511151231257827",
    b"123456789012345678901234567890", b"-" + b"9" * 4300, b"1" * 4300,
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
    b"-9223372036854775809", b"18446744073709551616", b"1.7976931348623157e308",
    b"4.9e-324", b"2.2250738585072014e-308", b"[1,2,]", b"[,1]", b"{,}", b'{"a":1,}',
    b'{"a" 1}', b'{"a":}', b"{1:2}", b"{'a':1}", b'["a" "b"]', b"[1 2]", b"[", b"]", b"{",
    b"", b" ", b"\n\n  ", b"\t[\r\n1 ]\n", b"\x0b1", b"\x0c1", b"1\x0c", b"\xc2\xa01",
    b"true", b"false", b"null", b"True", b"tru", b"nul", b"falsey", b"[true,false,null]",
    b'"\\u00e9\\ud83d\\ude00\\ud800\\udc00x"', b'"\\ud800"', b'"\\udc00\\ud800"',
    b'"\\u12"', b'"\\u12g4"', b'"\\x41"', b'"\\/\\b\\f\\n\\r\\t\\"\\\\"', b'"\\', b'"abc',
    b'"a\nb"', b'"a\tb"', b'"\x00"', b'"\x7f\xc3\xa9"', b'"\xe2\x80\xa8"', b'"\xf0\x9f\x98\x80"',
    b'"\xed\xa0\x80"', b'"\xff"', b'"\xc3"', b"\xef\xbb\xbf[1]", b"\xef\xbb\xbf\xef\xbb\xbf[1]",
    b"\xef\xbb\xbf", b'{"a":1,"a":2}', b'{"a":1,"b":2,"a":3}', b'{"":{"":{"":[]}}}',
    b'[1]\n', b'[1] x', b"1 2", b'{"a": [1, {"b": null}]} ', b'{"a":1}\x00',
    b"\x00\x00\x00[", b"[\x00", b"\x00[", b"[\x001\x00]\x00", b"\xff\xfe[\x00]\x00",
    b"\xfe\xff\x00[\x00]", b"\xff\xfe\x00\x00[\x00\x00\x00]\x00\x00\x00",
    b"\xff\xfe[", b"[\x00\x00", b"\x00\x00\x00[\x00\x00\x00]",
]


@pytest.mark.parametrize("data", SPECIAL_DOCUMENTS, ids=lambda d: repr(d)[:40])
def test_special_documents(scratch, data):
    check_bytes(scratch, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_text(text)


def test_nan_infinity_tokens_and_numbers(tmp_path):
    p = tmp_path / "n.json"
    p.write_bytes(b'[NaN, Infinity, -Infinity, -0.0, -0, 1e400, 1.5, 10, 1E2]')
    got = atomicjson.read_json(p)
    assert math.isnan(got[0]) and got[1] == math.inf and got[2] == -math.inf
    assert math.copysign(1, got[3]) == -1 and type(got[4]) is int and got[5] == math.inf
    assert type(got[7]) is int and type(got[8]) is float


def test_huge_ints(tmp_path):
    for digits in (19, 20, 39, 100, 1000, 4300):
        for sign in ("", "-"):
            text = sign + "7" * digits
            p = tmp_path / "i.json"
            p.write_text(f'{{"v": [{text}]}}')
            got = atomicjson.read_json(p)["v"][0]
            assert type(got) is int and got == int(text)


def test_ints_beyond_the_str_limit(tmp_path):
    # json.loads raises ValueError (int max str digits) here: we either do too (and it is an
    # AtomicJsonError), or return the exact value.
    text = "8" * 5000
    p = tmp_path / "big.json"
    p.write_text(text)
    try:
        got = atomicjson.read_json(p)
    except ValueError as e:
        assert isinstance(e, atomicjson.AtomicJsonError)
    else:
        old = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)
        try:
            assert got == int(text)
        finally:
            sys.set_int_max_str_digits(old)


def test_error_while_building_nested_values(tmp_path):
    # An int beyond the str-digits limit deep inside open lists and dicts: the objects built so
    # far are released, the error is json's ValueError (as an AtomicJsonError) or the value.
    text = "9" * 5000
    p = tmp_path / "nested.json"
    p.write_text('{"a": [1, "x", {"b": [2.5, {"c": ' + text + '}], "d": 3}], "e": {}}')
    old = sys.get_int_max_str_digits()
    for limit in (old, 0):
        sys.set_int_max_str_digits(limit)
        try:
            got = atomicjson.read_json(p)
        except ValueError as e:
            assert isinstance(e, atomicjson.AtomicJsonError) and limit != 0
            continue
        finally:
            sys.set_int_max_str_digits(old)
        assert got["a"][2]["b"][1]["c"] == 10**5000 - 1 and got["e"] == {}


def test_duplicate_keys_last_wins_in_first_position(scratch):
    data = b'{"b": 1, "a": 2, "b": 3, "c": {"x": 1, "x": [2]}, "a": 4}'
    expected, _ = check_bytes(scratch, data)
    assert list(expected) == ["b", "a", "c"] and expected == {"b": 3, "a": 4, "c": {"x": [2]}}


def test_equal_keys_share_one_str_object(scratch):
    # json.loads gives equal keys one str object (its memo); so does read_json: keys plain,
    # escaped, non-ASCII, with a lone surrogate, long, and enough of them to regrow the memo.
    keys = ["id", "\u00e9t\u00e9", "a\\nb \"q\"", "\ud800x", "k" * 300]
    keys += [f"feature_{i:05d}_importance" for i in range(1500)]
    data = json.dumps([{k: i for k in keys} for i in range(3)]).encode()
    expected, got = json.loads(data), atomicjson.read_json(_file(scratch, data))
    assert got == expected
    for doc in (expected, got):
        first, last = list(doc[0]), list(doc[2])
        assert all(a is b for a, b in zip(first, last))


def test_keys_kept_between_reads(scratch):
    # Key strs are kept from one read to the next (a bounded cache, a new key evicting the one
    # in its slot): documents that share some keys, read in turn with enough distinct keys to
    # churn the cache, and results kept from earlier reads, all still equal json.loads's.
    def doc(tag: str, n: int) -> bytes:
        keys = ["id", "name", "x" * 64, "y" * 65] + [f"{tag}_{i}" for i in range(n)]
        keys += [f"shared_{i}" for i in range(0, n, 3)]
        return json.dumps({"rows": [{k: [k, i] for k in keys} for i in range(2)]}).encode()

    kept = []
    for rnd in range(4):
        for tag, n in (("a", 50), ("b", 1500), ("a", 50), ("c", 700)):
            data = doc(f"{tag}{rnd % 2}", n)
            got = atomicjson.read_json(_file(scratch, data))
            assert got == json.loads(data)
            assert all(type(k) is str for k in got["rows"][0])
            first, second = (list(row) for row in got["rows"])
            assert all(a is b for a, b in zip(first, second))
            kept.append((data, got))
    for data, got in kept:
        assert got == json.loads(data)


def test_deep_nesting(scratch):
    for depth in (100, 900, 5000):
        data = b"[" * depth + b"]" * depth
        path = _file(scratch, data)
        try:
            expected = json.loads(data)
        except RecursionError:
            expected = None
        try:
            got = atomicjson.read_json(path)
        except ValueError as e:  # a too-deep document may be refused, as an AtomicJsonError
            assert isinstance(e, atomicjson.AtomicJsonError)
            assert expected is None, f"json.loads reads depth {depth}, read_json refused it"
        else:
            if expected is not None:
                assert got == expected
        with pytest.raises(json.JSONDecodeError):
            atomicjson.read_json(_file(scratch, b"[" * depth + b"]" * (depth - 1)))


# ---------------------------------------------------------------------------------------------
# Malformed and truncated files
# ---------------------------------------------------------------------------------------------
PREFIX_DOCS = [
    {"b": [1, 2.5, None, True, False], "a": "\u00e9\u2028\U0001f600 \"q\"\\", "c": {}},
    [float("nan"), float("inf"), -float("inf"), -0.0, 10**30, -1e-7, [], [[]], {"k": {"k": ""}}],
    {"run": "r\u00fcn-\u4e2d", "folds": [{"i": i, "s": [0.1 * i] * 2} for i in range(3)]},
]


@pytest.mark.parametrize("doc_index", range(len(PREFIX_DOCS)))
@pytest.mark.parametrize("style", ["canonical", "compact", "ascii"])
def test_every_prefix(scratch, doc_index, style):
    doc = PREFIX_DOCS[doc_index]
    if style == "canonical":
        data = atomicjson.canonical_bytes(doc)
    elif style == "compact":
        data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        data = json.dumps(doc, indent="\t").encode()
    rejected = 0
    for n in range(len(data) + 1):
        _, err = check_bytes(scratch, data[:n])
        rejected += err is not None
    assert rejected >= len(data) - 3  # almost every strict prefix is invalid


@settings(deadline=None, max_examples=300,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=legacy_documents(max_leaves=10), data=st.data())
def test_single_byte_mutations(scratch, doc, data):
    payload = bytearray(atomicjson.canonical_bytes(doc))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        i = data.draw(st.integers(0, len(payload) - 1), label="index")
        payload[i] = data.draw(
            st.one_of(st.integers(0, 255), st.sampled_from(list(b'{}[]",:\\ \n0-eE.+nN'))),
            label="byte")
    check_bytes(scratch, bytes(payload))


@settings(deadline=None, max_examples=150,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=json_values(max_leaves=10), data=st.data())
def test_insertions_and_deletions(scratch, doc, data):
    text = json.dumps(doc, indent=data.draw(st.sampled_from([None, 1])), ensure_ascii=False)
    payload = bytearray(text.encode("utf-8", "surrogatepass"))
    i = data.draw(st.integers(0, len(payload)), label="index")
    if data.draw(st.booleans(), label="insert") or not payload:
        payload[i:i] = data.draw(st.binary(min_size=1, max_size=3), label="inserted")
    else:
        del payload[i:i + data.draw(st.integers(1, 3), label="deleted")]
    check_bytes(scratch, bytes(payload))


def test_error_attributes_and_message(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n  "a": [1, 2,\n  "\u00e9\u00e9": x\n}\n', encoding="utf-8")
    with pytest.raises(atomicjson.JSONDecodeError) as info:
        atomicjson.read_json(p)
    err = info.value
    ref = None
    try:
        json.loads(p.read_bytes())
    except json.JSONDecodeError as e:
        ref = e
    assert ref is not None
    assert (err.msg, err.pos, err.lineno, err.colno) == (ref.msg, ref.pos, ref.lineno, ref.colno)
    assert str(p) in str(err)
    assert f"line {ref.lineno} column {ref.colno}" in str(err)
    # catchable in every legacy way
    for cls in (json.JSONDecodeError, ValueError, atomicjson.AtomicJsonError, OSError):
        assert isinstance(err, cls)


def test_truncated_file_names_file_line_column(tmp_path):
    p = tmp_path / "trunc.json"
    atomicjson.write_json(p, {"a": list(range(20)), "b": "x"})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(json.JSONDecodeError) as info:
        atomicjson.read_json(p)
    assert str(p) in str(info.value) and "line" in str(info.value)
    assert isinstance(info.value, atomicjson.AtomicJsonError)


def test_missing_file(tmp_path):
    p = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError) as info:
        atomicjson.read_json(p)
    assert isinstance(info.value, atomicjson.AtomicJsonError)
    assert info.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        atomicjson.read_json(str(p))


def test_directory_is_an_os_error(tmp_path):
    with pytest.raises(OSError) as info:
        atomicjson.read_json(tmp_path)
    assert isinstance(info.value, atomicjson.AtomicJsonError)
    assert not isinstance(info.value, json.JSONDecodeError)


def test_loads_rejects_other_types():
    with pytest.raises(TypeError):
        atomicjson.loads(123)  # type: ignore[arg-type]
