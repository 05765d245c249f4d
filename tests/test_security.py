"""Planted files and links, and file modes: the lock file is opened without truncation and
without following a symlink, the temp file is created exclusively and not through a symlink, a
symlink as target is replaced like ``os.replace`` does, and modes follow the umask or are kept.

Flags are checked on the real system calls with strace where it is available (skipped
otherwise); everything else runs anywhere."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import atomicjson
from conftest import child_env, run_python, temp_files

UMASKS = [0o000, 0o002, 0o022, 0o027, 0o077]
STRESS = int(os.environ.get("ATOMICJSON_STRESS", "0") or 0)


def snapshot(path: Path) -> Dict[str, object]:
    st = os.stat(path)
    return {"bytes": path.read_bytes(), "mode": st.st_mode, "mtime": st.st_mtime_ns,
            "ino": st.st_ino}


# ---------------------------------------------------------------------------------------------
# The lock file
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["write_json", "update_json", "lock", "write_bytes"])
def test_lock_file_symlinked_to_another_file_is_refused(tmp_path: Path, how: str) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    before = snapshot(victim)
    (tmp_path / "doc.lock").symlink_to(victim)
    target = tmp_path / "doc.json"
    actions = {
        "write_json": lambda: atomicjson.write_json(target, {"a": 1}),
        "update_json": lambda: atomicjson.update_json(target, lambda d: {"a": 1}),
        "lock": lambda: atomicjson.lock(target).__enter__(),
        "write_bytes": lambda: atomicjson.write_bytes(target, b"{}\n"),
    }
    with pytest.raises(atomicjson.AtomicJsonError) as info:
        actions[how]()
    assert info.value.errno == errno.ELOOP
    assert "doc.lock" in str(info.value) and "symbolic link" in str(info.value)
    assert snapshot(victim) == before
    assert not target.exists()
    assert temp_files(tmp_path) == []


def test_dangling_lock_symlink_creates_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "doc.lock").symlink_to(elsewhere / "created-by-attacker")
    with pytest.raises(atomicjson.AtomicJsonError) as info:
        atomicjson.write_json(tmp_path / "doc.json", [1])
    assert info.value.errno == errno.ELOOP
    assert list(elsewhere.iterdir()) == []


def test_lock_file_hard_linked_to_another_file_is_not_written(tmp_path: Path) -> None:
    """O_NOFOLLOW cannot see a hard link: the holder record must not be written into it."""
    victim = tmp_path / "precious.txt"
    victim.write_text("")  # even an empty file stays empty
    other = tmp_path / "other.txt"
    other.write_text("other data\n")
    for linked, name in ((victim, "a"), (other, "b")):
        before = snapshot(linked)
        os.link(linked, tmp_path / f"{name}.lock")
        atomicjson.write_json(tmp_path / f"{name}.json", {"n": name})
        with atomicjson.lock(tmp_path / f"{name}.json"):
            pass
        after = snapshot(linked)
        assert after["bytes"] == before["bytes"] and after["mode"] == before["mode"]
        assert atomicjson.read_json(tmp_path / f"{name}.json") == {"n": name}


def test_existing_lock_file_content_is_never_truncated_or_replaced(tmp_path: Path) -> None:
    """Legacy helpers open the lock with 'w' (truncating); here a lock file that holds anything
    but an earlier holder record keeps its bytes, through writes, locks and updates."""
    lock_file = tmp_path / "doc.lock"
    content = b"written by another tool: do not touch\n" * 10
    lock_file.write_bytes(content)
    target = tmp_path / "doc.json"
    atomicjson.write_json(target, {"a": 1})
    atomicjson.update_json(target, lambda d: {**d, "b": 2})
    with atomicjson.locked_json(target) as doc:
        doc["c"] = 3
    assert lock_file.read_bytes() == content
    assert atomicjson.read_json(target) == {"a": 1, "b": 2, "c": 3}


def test_empty_lock_file_gets_the_holder_record_while_held(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    with atomicjson.lock(target):
        record = json.loads((tmp_path / "doc.lock").read_text())
    assert record["pid"] == os.getpid()


# ---------------------------------------------------------------------------------------------
# The temp file
# ---------------------------------------------------------------------------------------------
def test_planted_temp_like_symlinks_do_not_redirect_the_write(tmp_path: Path) -> None:
    """Temp names carry 64 random bits (`.doc.json.<16 hex>.tmp`), so no name can be planted in
    advance; and even a planted name that matched would be skipped (O_EXCL, see the Rust test
    `planted_symlink_at_the_temp_name_is_skipped`). Symlinks planted at likely names, with
    the counter and pid patterns an attacker would guess, change nothing."""
    victim = tmp_path / "victim.txt"
    victim.write_text("victim\n")
    before = snapshot(victim)
    for guess in [f"{0:016x}", f"{1:016x}", f"{os.getpid():016x}", "f" * 16]:
        (tmp_path / f".doc.json.{guess}.tmp").symlink_to(victim)
    target = tmp_path / "doc.json"
    rounds = 50 * max(1, STRESS)
    for i in range(rounds):
        atomicjson.write_json(target, {"i": i}, durable=False)
    assert snapshot(victim) == before
    assert target.is_file() and not target.is_symlink()
    assert atomicjson.read_json(target) == {"i": rounds - 1}


def strace_available() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"],
                           capture_output=True)
    return probe.returncode == 0


needs_strace = pytest.mark.skipif(not strace_available(),
                                  reason="needs strace with ptrace permitted")

_STRACED = """
import sys, atomicjson
target = sys.argv[1]
for i in range(int(sys.argv[2])):
    atomicjson.write_json(target, {"i": i}, durable=False)
with atomicjson.lock(target):
    pass
"""


def traced_opens(tmp_path: Path, rounds: int) -> List[str]:
    log = tmp_path / "strace.log"
    target = tmp_path / "doc.json"
    python = sys.executable  # the virtualenv's, which finds atomicjson
    env = child_env()
    proc = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", "trace=open,openat",
                           python, "-c", _STRACED, str(target), str(rounds)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [line for line in log.read_text().splitlines() if str(tmp_path) in line]


@needs_strace
def test_open_flags_of_lock_and_temp_files(tmp_path: Path) -> None:
    rounds = 20 * max(1, STRESS)
    opens = traced_opens(tmp_path, rounds)
    lock_opens = [line for line in opens if '/doc.lock"' in line]
    temp_opens = [line for line in opens if re.search(r'/\.doc\.json\.[0-9a-f]{16}\.tmp"', line)]
    assert len(lock_opens) == rounds + 1, opens
    assert len(temp_opens) == rounds, opens
    for line in lock_opens:
        assert "O_NOFOLLOW" in line and "O_CREAT" in line and "O_CLOEXEC" in line, line
        assert "O_TRUNC" not in line, line
    for line in temp_opens:
        for flag in ("O_CREAT", "O_EXCL", "O_NOFOLLOW", "O_CLOEXEC"):
            assert flag in line, line
        assert "O_TRUNC" not in line, line
    # Fresh random names every time.
    names = {re.search(r"\.doc\.json\.([0-9a-f]{16})\.tmp", line).group(1)  # type: ignore
             for line in temp_opens}
    assert len(names) == rounds
    # Nothing is opened with O_TRUNC anywhere under the directory (the target is replaced by
    # rename, never rewritten in place).
    assert not [line for line in opens if "O_TRUNC" in line]


# ---------------------------------------------------------------------------------------------
# A symlink as target
# ---------------------------------------------------------------------------------------------
def test_symlink_target_is_replaced_by_a_regular_file_like_os_replace(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text('{"real": true}\n')
    os.chmod(real, 0o640)
    before = snapshot(real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomicjson.write_json(link, {"via": "link"})
    # Like the legacy's os.replace: the link becomes a regular file with the new document and
    # the mode of the file it pointed to; that file is not touched.
    assert not link.is_symlink() and link.is_file()
    assert atomicjson.read_json(link) == {"via": "link"}
    assert stat.S_IMODE(link.stat().st_mode) == 0o640
    assert snapshot(real) == before
    # The lock is named after the link, not after what it pointed to.
    assert (tmp_path / "link.lock").exists() and not (tmp_path / "real.lock").exists()
    assert temp_files(tmp_path) == []


def test_dangling_symlink_target_creates_nothing_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(elsewhere / "new.json")
    atomicjson.write_json(link, [1])
    assert link.is_file() and not link.is_symlink()
    assert list(elsewhere.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------
_MODES = """
import json, os, stat, sys
import atomicjson
os.umask(int(sys.argv[2], 8))
base = sys.argv[1]
target = os.path.join(base, "sub", "doc.json")
atomicjson.write_json(target, {"a": 1})
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
print(json.dumps({"target": mode(target), "lock": mode(os.path.join(base, "sub", "doc.lock")),
                  "dir": mode(os.path.join(base, "sub"))}))
"""


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_new_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    proc = run_python(_MODES, str(tmp_path), oct(umask))
    assert proc.returncode == 0, proc.stderr
    modes = json.loads(proc.stdout)
    assert modes == {"target": 0o666 & ~umask, "lock": 0o666 & ~umask,
                     "dir": 0o777 & ~umask}
    world_writable = bool(modes["lock"] & stat.S_IWOTH)
    assert world_writable == (umask & 0o002 == 0)


_REPLACE = """
import json, os, stat, sys
import atomicjson
os.umask(int(sys.argv[2], 8))
target = sys.argv[1]
atomicjson.write_json(target, {"b": 2})
atomicjson.update_json(target, lambda d: {**d, "c": 3})
print(stat.S_IMODE(os.stat(target).st_mode))
"""


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o604, 0o666, 0o400])
def test_replaced_files_keep_their_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    for umask in (0o000, 0o077):
        target = tmp_path / f"doc-{umask:o}.json"
        atomicjson.write_json(target, {"a": 1})
        os.chmod(target, mode)
        lock_file = tmp_path / f"doc-{umask:o}.lock"
        os.chmod(lock_file, 0o600)
        proc = run_python(_REPLACE, str(target), oct(umask))
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout) == mode
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600  # never chmodded
        assert atomicjson.read_json(target) == {"b": 2, "c": 3}
