"""write_json / write_bytes / lock: files, modes, lock sidecar, errors, through the public API."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atomicjson
from conftest import NOBODY, nobody_can_import_atomicjson, run_python, temp_files


def current_umask() -> int:
    # Read in a child: os.umask() in this process is not thread-safe.
    out = subprocess.run([sys.executable, "-c", "import os; m = os.umask(0); print(m)"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_write_json_writes_canonical_bytes_and_keeps_lock_file(tmp_path: Path) -> None:
    target = tmp_path / "run" / "metadata.json"  # parent created on demand
    doc = {"b": 1, "a": [1.5, None, True], "é": "ü"}
    atomicjson.write_json(target, doc)
    assert target.read_bytes() == atomicjson.canonical_bytes(doc)
    assert target.read_bytes() == (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False)
                                   + "\n").encode()
    assert (tmp_path / "run" / "metadata.lock").exists()
    assert temp_files(target.parent) == []


@pytest.mark.parametrize("make_path", [str, Path, lambda p: PathLikeOnly(str(p))])
def test_paths_may_be_str_or_pathlike(tmp_path: Path, make_path) -> None:
    target = tmp_path / "x.json"
    atomicjson.write_json(make_path(target), {"k": 1})
    atomicjson.write_bytes(make_path(tmp_path / "y.json"), b"{}\n")
    assert json.loads(target.read_text()) == {"k": 1}
    assert (tmp_path / "y.json").read_bytes() == b"{}\n"
    assert atomicjson.read_json(make_path(target)) == {"k": 1}


class PathLikeOnly:
    def __init__(self, path: str) -> None:
        self._path = path

    def __fspath__(self) -> str:
        return self._path


def test_new_file_mode_follows_umask_and_existing_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomicjson.write_json(target, {"a": 1})
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()
    os.chmod(target, 0o640)
    atomicjson.write_json(target, {"a": 2})
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert json.loads(target.read_text()) == {"a": 2}


def test_opening_the_lock_file_never_truncates_it(tmp_path: Path, hold_lock) -> None:
    """A waiter opens the sidecar while someone else holds it: the holder's bytes survive."""
    target = tmp_path / "t.json"
    lock_file = tmp_path / "t.lock"
    lock_file.write_text("holder's record\n")
    with hold_lock(lock_file):
        with pytest.raises(atomicjson.LockTimeoutError):
            atomicjson.write_json(target, [1], lock_timeout=0.05)
        assert lock_file.read_text() == "holder's record\n"
    atomicjson.write_json(target, [1])
    assert lock_file.exists()


def test_write_bytes_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "b.json"
    target.write_bytes(b"x" * 10000)
    atomicjson.write_bytes(target, b"short", durable=False)
    assert target.read_bytes() == b"short"
    atomicjson.write_bytes(target, bytearray(b"again"))
    assert target.read_bytes() == b"again"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab.-_ é")), min_size=1, max_size=8))
def test_lock_path_follows_pathlib_with_suffix(name: str) -> None:
    path = PurePosixPath("/data") / name
    if path.name in ("", ".", ".."):
        return
    try:
        expected = str(path.with_suffix(".lock"))
    except ValueError:
        with pytest.raises(atomicjson.AtomicJsonError):
            atomicjson.lock_path_for(str(path))
        return
    assert atomicjson.lock_path_for(str(path)) == expected


@pytest.mark.parametrize("name,lock", [("a.json", "a.lock"), ("a.tar.gz", "a.tar.lock"),
                                       ("noext", "noext.lock"), (".bashrc", ".bashrc.lock")])
def test_lock_path_examples(tmp_path: Path, name: str, lock: str) -> None:
    assert atomicjson.lock_path_for(tmp_path / name) == str(tmp_path / lock)


def test_timeout_names_holder_and_leaves_target_untouched(tmp_path: Path, hold_lock) -> None:
    target = tmp_path / "metrics.json"
    atomicjson.write_json(target, {"v": 1})
    before = target.read_bytes()
    with hold_lock(tmp_path / "metrics.lock") as holder:
        started = time.monotonic()
        with pytest.raises(atomicjson.LockTimeoutError) as info:
            atomicjson.write_json(target, {"v": 2}, lock_timeout=0.3)
        waited = time.monotonic() - started
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, IOError)
    assert 0.25 <= waited < 5
    assert err.lock_path == str(tmp_path / "metrics.lock")
    assert err.timeout == pytest.approx(0.3)
    if err.holders is not None:  # /proc/locks readable
        assert holder.pid in err.holders
        assert str(holder.pid) in str(err)
    assert target.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_timeout_zero_tries_once(tmp_path: Path, hold_lock) -> None:
    with hold_lock(tmp_path / "z.lock"):
        started = time.monotonic()
        with pytest.raises(atomicjson.LockTimeoutError):
            atomicjson.write_bytes(tmp_path / "z.json", b"1", lock_timeout=0)
        assert time.monotonic() - started < 1.0
    atomicjson.write_bytes(tmp_path / "z.json", b"1", lock_timeout=0)


def test_negative_timeout_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomicjson.write_json(tmp_path / "n.json", 1, lock_timeout=-1)


def test_waiter_gets_lock_soon_after_release_without_spinning(tmp_path: Path, hold_lock) -> None:
    """No 100 ms poll: the waiter takes the lock within a few ms of the release, and a
    waiting process uses almost no CPU."""
    target = tmp_path / "w.json"
    result: Dict[str, Any] = {}

    def waiter() -> None:
        cpu0 = time.thread_time()
        atomicjson.write_json(target, {"w": 1}, lock_timeout=None)
        result["done"] = time.monotonic()
        result["cpu"] = time.thread_time() - cpu0

    with hold_lock(tmp_path / "w.lock") as holder:
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(1.0)
        assert "done" not in result
        released = time.monotonic()
        holder.release()
        t.join(10)
    latency = result["done"] - released
    # Generous bounds: CI machines are noisy. A 100 ms poll would average 50 ms here.
    assert latency < 0.05, latency
    assert result["cpu"] < 0.25, result["cpu"]


def test_gil_is_released_while_waiting(tmp_path: Path, hold_lock) -> None:
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    with hold_lock(tmp_path / "g.lock"):
        t = threading.Thread(target=spin)
        t.start()
        try:
            with pytest.raises(atomicjson.LockTimeoutError):
                atomicjson.write_json(tmp_path / "g.json", {}, lock_timeout=0.5)
        finally:
            stop.set()
            t.join()
    # With the GIL held by the waiter, the spinning thread could not run at all.
    assert counter[0] > 10_000


def test_serialization_errors_leave_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "bad.json"
    atomicjson.write_json(target, {"ok": True})
    before = target.read_bytes()
    circular: List[Any] = []
    circular.append(circular)
    cases = [
        ({"folds": [0, 1, 2, {"scores": object()}]}, atomicjson.UnsupportedTypeError, TypeError,
         "$.folds[3].scores"),
        ({"a": circular}, atomicjson.CircularReferenceError, ValueError, "$.a"),
        ({1: "a", "1": "b"}, atomicjson.KeyCollisionError, ValueError, None),
        ({"s": "lone \ud800"}, atomicjson.InvalidDataError, ValueError, "$.s"),
    ]
    for data, cls, builtin, location in cases:
        with pytest.raises(cls) as info:
            atomicjson.write_json(target, data)
        err = info.value
        assert isinstance(err, builtin) and isinstance(err, atomicjson.SerializationError)
        assert isinstance(err, IOError)
        assert str(target) in str(err)
        if location:
            assert err.location.startswith(location)
        assert target.read_bytes() == before
        assert temp_files(tmp_path) == []


def test_nesting_limit(tmp_path: Path) -> None:
    ok: List[Any] = []
    for _ in range(1199):
        ok = [ok]
    # Deeper than Python's own json manages with its default recursion limit.
    with pytest.raises(RecursionError):
        json.dumps(ok, indent=2)
    assert atomicjson.canonical_bytes(ok).count(b"[") == 1200
    assert atomicjson.dumps(ok) == "[" * 1200 + "]" * 1200
    deep: List[Any] = []
    for _ in range(200_000):
        deep = [deep]
    with pytest.raises(atomicjson.NestingTooDeepError):
        atomicjson.write_json(tmp_path / "deep.json", deep)
    assert not (tmp_path / "deep.json").exists()
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(not nobody_can_import_atomicjson(),
                    reason="needs root, setpriv and a checkout `nobody` can import from")
def test_unwritable_directory_raises_permission_error(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(directory, 0o755)
    (directory / "x.json").write_text('{"old": 1}\n')
    (directory / "x.lock").touch()
    os.chmod(directory / "x.lock", 0o666)
    code = """
        import sys, atomicjson
        try:
            atomicjson.write_json(sys.argv[1], {"new": 1})
        except PermissionError as e:
            assert isinstance(e, atomicjson.AtomicJsonError), type(e)
            print("EACCES" if e.errno == 13 else e.errno, e)
    """
    import textwrap
    env = dict(os.environ)
    proc = subprocess.run(
        [*NOBODY, sys.executable, "-c",
         textwrap.dedent(code), str(directory / "x.json")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.stdout.startswith("EACCES"), (proc.stdout, proc.stderr)
    assert (directory / "x.json").read_text() == '{"old": 1}\n'
    assert temp_files(directory) == []


def test_os_errors_keep_errno(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(atomicjson.AtomicJsonError) as info:
        atomicjson.write_json(blocker / "sub" / "x.json", {})
    assert info.value.errno in (errno.ENOTDIR, errno.EEXIST)
    with pytest.raises(FileNotFoundError) as missing:
        atomicjson.read_json(tmp_path / "missing.json")
    assert isinstance(missing.value, atomicjson.AtomicJsonError)
    assert missing.value.errno == errno.ENOENT


def test_lock_context_manager_excludes_other_process(tmp_path: Path) -> None:
    target = tmp_path / "index.parquet"
    with atomicjson.lock(target) as held:
        assert held.held
        proc = run_python(
            """
            import sys, atomicjson
            try:
                atomicjson.write_json(sys.argv[1], {"x": 1}, lock_timeout=0.2)
                print("wrote")
            except atomicjson.LockTimeoutError:
                print("excluded")
            """,
            str(tmp_path / "index.json"),
        )
        # index.json and index.parquet share the sidecar index.lock.
        assert proc.stdout.strip() == "excluded", proc.stderr
    assert not held.held
