"""Shared fixtures: real child processes that hold locks, and helpers to run Python code."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# A child that takes the legacy lock (fcntl.flock on the sidecar), says "locked", and holds it
# until its stdin closes or it reads a line.
_HOLDER = textwrap.dedent(
    """
    import fcntl, sys
    f = open(sys.argv[1], "a")
    fcntl.flock(f, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
    """
)


class LockHolder:
    """A separate process holding a lock: by default the legacy flock on `path`, else whatever
    `code` does with `path` (its argv[1]) before it prints "locked" and waits for a line."""

    def __init__(self, path: Path, code: str = _HOLDER) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.strip() == "locked", f"holder did not lock: {line!r}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def hold_lock() -> Iterator[Any]:
    holders = []

    @contextlib.contextmanager
    def _hold(lock_path: "os.PathLike[str]") -> Iterator[LockHolder]:
        holder = LockHolder(Path(lock_path))
        holders.append(holder)
        try:
            yield holder
        finally:
            holder.release()

    yield _hold
    for h in holders:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()


def child_env() -> Dict[str, str]:
    """This process's environment with the tests directory first on PYTHONPATH, for child
    interpreters that import the test helpers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def run_python(code: str, *args: str, timeout: float = 120, **kwargs: Any) -> "subprocess.CompletedProcess[str]":
    """Run `code` in a fresh interpreter with the tests directory importable."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        **kwargs,
    )


def wait_until_blocked(lock_path: Path, pid: Optional[int], timeout: float = 20.0) -> None:
    """Return once process `pid` (any process if None) waits in the kernel for `lock_path`.

    Linux lists a blocked waiter in /proc/locks as a "->" line with the waiter's pid (-1 for
    open-file-description locks) and the file's inode. A test that signals a waiter must not
    signal it before it waits; where there is no /proc/locks, give the child half a second.
    """
    if not os.path.exists("/proc/locks"):
        time.sleep(0.5)
        return
    ino = str(os.stat(lock_path).st_ino)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 6 and fields[1] == "->" and fields[6].endswith(":" + ino) \
                        and (pid is None or fields[5] == str(pid)):
                    return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never waited for {lock_path}")


def temp_files(directory: Path) -> List[str]:
    """Leftover temporary files of atomic writes in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


is_root = hasattr(os, "geteuid") and os.geteuid() == 0

#: Runs a command as the unprivileged `nobody` (root only).
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@functools.lru_cache(maxsize=None)
def nobody_can_import_atomicjson() -> bool:
    """True where root can run this interpreter as `nobody` and it imports atomicjson: not
    without root or setpriv, nor from a checkout in a directory only root may enter (a
    `mktemp -d` clone)."""
    if not is_root or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import atomicjson"],
                           capture_output=True, text=True, timeout=60)
    return probe.returncode == 0
