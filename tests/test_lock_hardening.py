"""Lock failures from the field, in both lock modes: lock files owned by another user in a
sticky world-writable directory (run as `nobody` with setpriv), and file systems that answer
the lock call with ENOSYS / ENOLCK / EOPNOTSUPP (strace fault injection)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Iterator, List

import pytest

import atomicjson
from conftest import NOBODY, nobody_can_import_atomicjson

MODES: List[atomicjson.LockMode] = ["flock", "posix"]
PROTECTED_REGULAR = Path("/proc/sys/fs/protected_regular")

# ------------------------------------------------------------------ lock files of another user


needs_nobody = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not PROTECTED_REGULAR.exists()
    or not nobody_can_import_atomicjson(),
    reason="needs root, setpriv, a 'nobody' user who can import atomicjson, and "
           "/proc/sys/fs/protected_regular")


@pytest.fixture
def sticky_dir() -> Iterator[Path]:
    """A /tmp-style directory (mode 1777) owned by a third user, with fs.protected_regular=1:
    nobody may not open a root-owned file in it with O_CREAT. Restores the sysctl."""
    before = PROTECTED_REGULAR.read_text().strip()
    directory = Path(tempfile.mkdtemp(prefix="atomicjson-sticky-", dir="/tmp"))
    try:
        os.chmod(directory, 0o1777)
        os.chown(directory, 4242, 4242)  # neither root (the lock files) nor nobody
        PROTECTED_REGULAR.write_text("1")
        yield directory
    finally:
        PROTECTED_REGULAR.write_text(before)
        shutil.rmtree(directory, ignore_errors=True)


def root_lock_file(directory: Path, name: str, mode: int) -> Path:
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # whatever the umask
    os.close(fd)
    return path


def as_nobody(code: str, *args: str) -> List[str]:
    proc = subprocess.run([*NOBODY, sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@needs_nobody
def test_root_owned_writable_lock_file_is_usable_by_nobody(sticky_dir: Path) -> None:
    lock_file = root_lock_file(sticky_dir, "shared.lock", 0o666)
    code = """
        import json, os, sys, atomicjson
        lock_file, target = sys.argv[1], sys.argv[2]
        try:
            os.close(os.open(lock_file, os.O_RDWR | os.O_CREAT))
            print("O_CREAT allowed")
        except PermissionError:
            print("O_CREAT refused")  # fs.protected_regular is in force
        for mode in ("flock", "posix"):
            with atomicjson.lock(target, lock_mode=mode, timeout=5):
                atomicjson.write_json(target, {"mode": mode}, lock_mode=mode)
                record = json.loads(open(lock_file).read())
            print(mode, atomicjson.read_json(target)["mode"], record["pid"] == os.getpid())
    """
    out = as_nobody(code, str(lock_file), str(sticky_dir / "shared.json"))
    # The retry without O_CREAT opens it read-write, so even the holder record is written.
    assert out == ["O_CREAT refused", "flock flock True", "posix posix True"]
    assert lock_file.stat().st_uid == 0


@needs_nobody
def test_root_owned_lock_file_excludes_nobody_and_names_the_holder(sticky_dir: Path) -> None:
    root_lock_file(sticky_dir, "held.lock", 0o666)
    target = sticky_dir / "held.json"
    code = """
        import sys, atomicjson
        try:
            atomicjson.write_json(sys.argv[1], 1, lock_timeout=0.2, lock_mode=sys.argv[2])
            print("wrote")
        except atomicjson.LockTimeoutError as e:
            print("excluded", e)
    """
    for mode in MODES:
        with atomicjson.lock(target, lock_mode=mode):
            [line] = as_nobody(code, str(target), mode)
        assert line.startswith("excluded"), line
        assert f"pid {os.getpid()}" in line, line
        if mode == "posix":
            # nobody cannot read root's fdinfo: the answer comes from the holder's record.
            assert "cannot read" in line and "recorded by the holder" in line, line
    assert not target.exists()


@needs_nobody
def test_root_owned_read_only_lock_file(sticky_dir: Path) -> None:
    """flock works on a read-only descriptor; an OFD write lock needs a writable one, so
    posix mode fails at once with a PermissionError instead of waiting for the timeout."""
    lock_file = root_lock_file(sticky_dir, "ro.lock", 0o644)
    code = """
        import sys, time, atomicjson
        target = sys.argv[1]
        with atomicjson.lock(target, lock_mode="flock", timeout=5):
            print("flock held")
        start = time.monotonic()
        try:
            with atomicjson.lock(target, lock_mode="posix", timeout=60):
                print("posix held")
        except PermissionError as e:
            assert isinstance(e, atomicjson.AtomicJsonError)
            print("posix", e.errno, e.step, time.monotonic() - start < 30, e)
    """
    out = as_nobody(code, str(sticky_dir / "ro.json"))
    assert out[0] == "flock held"
    assert out[1].startswith(f"posix {errno.EACCES} open_lock True cannot open lock file "
                             f"{lock_file}"), out
    assert lock_file.read_bytes() == b""  # the read-only holder left no record


@needs_nobody
def test_unreadable_lock_file_is_a_permission_error_at_once(sticky_dir: Path) -> None:
    lock_file = root_lock_file(sticky_dir, "private.lock", 0o600)
    code = """
        import sys, time, atomicjson
        for mode in ("flock", "posix"):
            start = time.monotonic()
            try:
                atomicjson.write_json(sys.argv[1], 1, lock_timeout=60, lock_mode=mode)
                print(mode, "wrote")
            except PermissionError as e:
                assert isinstance(e, atomicjson.AtomicJsonError)
                print(mode, e.errno, e.step, time.monotonic() - start < 30)
    """
    out = as_nobody(code, str(sticky_dir / "private.json"))
    assert out == [f"flock {errno.EACCES} open_lock True", f"posix {errno.EACCES} open_lock True"]
    assert not (sticky_dir / "private.json").exists()
    assert lock_file.stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------- lock calls that are unsupported


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=flock",
                            "-e", "inject=flock:error=ENOLCK", sys.executable, "-c", "pass"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


needs_strace = pytest.mark.skipif(not sys.platform.startswith("linux") or not _strace_works(),
                                  reason="needs strace with fault injection (and ptrace)")

# The system call each mode locks with; both are injected only on the lock file (-P).
LOCK_CALL = {"flock": "flock", "posix": "fcntl"}

_UNSUPPORTED = """
    import sys, time, atomicjson
    start = time.monotonic()
    try:
        atomicjson.write_json(sys.argv[1], {"x": 1}, lock_timeout=60, lock_mode=sys.argv[2])
        print("wrote")
    except atomicjson.LockUnsupportedError as e:
        print(e.errno, e.step, time.monotonic() - start < 30, e)
"""


def run_injected(tmp_path: Path, mode: atomicjson.LockMode, error: str) -> str:
    lock_file = tmp_path / "fs.lock"
    lock_file.touch()  # -P follows a path that exists
    call = LOCK_CALL[mode]
    inject = f"inject={call}:error={error}"
    proc = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={call}",
                           "-P", str(lock_file), "-e", inject, sys.executable, "-c",
                           textwrap.dedent(_UNSUPPORTED), str(tmp_path / "fs.json"), mode],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@needs_strace
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", ["ENOLCK", "ENOSYS", "EOPNOTSUPP"])
def test_unsupported_lock_raises_at_once_naming_errno_and_path(
        tmp_path: Path, mode: atomicjson.LockMode, error: str) -> None:
    out = run_injected(tmp_path, mode, error)
    code = getattr(errno, error)
    assert out.startswith(f"{code} lock True cannot lock {tmp_path / 'fs.lock'}: "
                          f"{os.strerror(code)}"), out
    assert not (tmp_path / "fs.json").exists()
