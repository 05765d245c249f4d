"""Shared fixtures: real child processes that hold locks, and helpers to run Python code."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator, List

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
    """A separate process holding the flock on a lock file."""

    def __init__(self, lock_path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(lock_path)],
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


def run_python(code: str, *args: str, timeout: float = 120, **kwargs: Any) -> "subprocess.CompletedProcess[str]":
    """Run `code` in a fresh interpreter with the tests directory importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def temp_files(directory: Path) -> List[str]:
    """Leftover temporary files of atomic writes in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


is_root = hasattr(os, "geteuid") and os.geteuid() == 0
