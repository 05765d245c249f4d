"""I/O faults at every step of a write: an AtomicJsonError with the errno and the step, the
target byte-identical to before (or complete and new when only the directory fsync failed, after
the rename), no temp file left, and the lock released so that the next write succeeds.

Injected faults: ``strace -f -p CHILD -e inject=SYSCALL:error=ERRNO:when=N`` attached to a
Python child once it has imported atomicjson and written the old document, so that counting
starts at the write under test; N is found in a trace of the same write without injection (it
reaches the Rust core, including fs4-style raw ``flock`` calls). Real faults: a tmpfs of 16 KiB
(ENOSPC) and one with 3 inodes, a read-only bind mount (EROFS), a directory the child may not
write, run as ``nobody`` (EACCES), EINTR on the lock wait (injected, and real signals).

Needs root (ptrace of a non-child, mount, setpriv) and strace; skipped otherwise.
``pytest -s`` prints a one-line summary.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

import atomicjson
from conftest import (HERE, NOBODY, LockHolder, child_env, is_root,
                      nobody_can_import_atomicjson, temp_files)

pytestmark = pytest.mark.skipif(not is_root, reason="fault injection needs root")
needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

OLD = {"version": "old", "rows": list(range(100))}
NEW = {"version": "new", "rows": [f"row {i}" for i in range(5000)]}
AGAIN = {"version": "again"}

# The child writes the old document, says "ready", and on each line of stdin writes the next
# document (NEW, then AGAIN), answering with the outcome as JSON.
CHILD = """
import json, os, sys
import atomicjson
directory, docs = sys.argv[1], json.loads(sys.argv[2])
atomicjson.write_json(os.path.join(directory, "warm", "w.json"), {"warm": 1})
target = os.path.join(directory, "a.json")
atomicjson.write_json(target, docs.pop(0))
# Bits the umask does not give a new file: each write copies them with an fchmod.
os.chmod(target, 0o604)
print("ready", flush=True)
for doc in docs:
    sys.stdin.readline()
    try:
        atomicjson.write_json(target, doc, lock_timeout=30)
        outcome = {"ok": True}
    except atomicjson.AtomicJsonError as e:
        outcome = {"error": type(e).__name__, "errno": e.errno, "step": getattr(e, "step", None),
                   "message": str(e)}
    print(json.dumps(outcome), flush=True)
"""


class Injection(NamedTuple):
    """A fault at one step: the syscall line it hits (in a trace with `{d}` for the directory),
    the errno injected, and the expected outcome (`step` None: the write succeeds)."""

    name: str
    line: str
    error: str
    step: Optional[str]
    target_after: str  # "old" or "new"


INJECTIONS = [
    Injection("open lock", r'openat\(.*"{d}/a\.lock", O_RDWR\|O_CREAT', "EMFILE", "open_lock",
              "old"),
    Injection("lock", r"flock\(\d+<{d}/a\.lock>, LOCK_EX\|LOCK_NB", "ENOLCK", "lock", "old"),
    Injection("stat target", r'(statx|newfstatat|lstat)\(.*"{d}/a\.json"', "EACCES", "stat",
              "old"),
    Injection("create temp", r'openat\(.*"{d}/\.a\.json\.[0-9a-f]{{16}}\.tmp", .*O_EXCL',
              "ENFILE", "create_temp", "old"),
    Injection("set mode", r"fchmod\(\d+<{d}/\.a\.json\.\w+\.tmp>", "EPERM", "set_permissions",
              "old"),
    Injection("write", r"write\(\d+<{d}/\.a\.json\.\w+\.tmp>", "ENOSPC", "write_temp", "old"),
    Injection("fsync", r"fsync\(\d+<{d}/\.a\.json\.\w+\.tmp>", "EIO", "fsync_temp", "old"),
    Injection("close", r"close\(\d+<{d}/\.a\.json\.\w+\.tmp>", "EDQUOT", "close_temp", "old"),
    Injection("rename", r'rename\w*\(.*"{d}/\.a\.json\.\w+\.tmp"', "EXDEV", "rename", "old"),
    Injection("open directory", r'openat\(.*"{d}", O_RDONLY\|O_CLOEXEC\|O_DIRECTORY', "EMFILE",
              "fsync_dir", "new"),
    Injection("fsync directory", r"fsync\(\d+<{d}>\)", "EIO", "fsync_dir", "new"),
    # Faults the write must absorb.
    Injection("temp name taken", r'openat\(.*"{d}/\.a\.json\.[0-9a-f]{{16}}\.tmp", .*O_EXCL',
              "EEXIST", None, "new"),
    Injection("lock interrupted", r"flock\(\d+<{d}/a\.lock>, LOCK_EX\|LOCK_NB", "EINTR", None,
              "new"),
    Injection("holder note", r"pwrite64\(\d+<{d}/a\.lock>", "EIO", None, "new"),
]


def _bytes(doc: Any) -> bytes:
    return atomicjson.canonical_bytes(doc)


class Child:
    """The CHILD script, optionally with strace attached once it is ready."""

    def __init__(self, directory: Path, docs: List[Any], strace: List[str]) -> None:
        env = child_env()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CHILD), str(directory),
             json.dumps(docs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        self.tracer: Optional["subprocess.Popen[str]"] = None
        assert self._line() == "ready", self.proc.stderr.read() if self.proc.stderr else ""
        if strace:
            self.tracer = subprocess.Popen(["strace", "-f", "-p", str(self.proc.pid), *strace],
                                           stderr=subprocess.PIPE, text=True)
            assert self.tracer.stderr is not None
            attached = self.tracer.stderr.readline()
            assert "attached" in attached, attached + self.tracer.stderr.read()

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def write_next(self) -> Dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self._line()
        assert line, self.proc.stderr.read() if self.proc.stderr else ""
        outcome: Dict[str, Any] = json.loads(line)
        return outcome

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        if self.tracer is not None:
            self.tracer.wait(timeout=30)


def _prepare(directory: Path) -> Path:
    directory.mkdir(parents=True)
    return directory


def _lock_free(target: Path) -> bool:
    holders = atomicjson.lock_holders(target)
    return holders == [] if holders is not None else True


@pytest.fixture(scope="module")
def dry_trace(tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, List[str]]:
    """The directory and the syscalls (decoded, `-y`) of one write without injection."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    directory = _prepare(tmp_path_factory.mktemp("dry") / "d")
    trace = directory.parent / "trace"
    child = Child(directory, [OLD, NEW, AGAIN], ["-y", "-o", str(trace)])
    try:
        assert child.write_next() == {"ok": True}
    finally:
        child.close()
    lines = [line.split(None, 1)[1] for line in trace.read_text().splitlines()
             if re.match(r"\d+\s+\w+\(", line)]  # "%-5d " pids
    return str(directory), lines


def _occurrence(dry: Tuple[str, List[str]], pattern: str) -> Tuple[str, int]:
    """The syscall the first line matching `pattern` makes, and which call of it that is."""
    directory, lines = dry
    regex = re.compile(pattern.format(d=re.escape(directory)))
    counts: Dict[str, int] = {}
    for line in lines:
        name = line.split("(", 1)[0]
        counts[name] = counts.get(name, 0) + 1
        if regex.match(line):
            return name, counts[name]
    raise AssertionError(f"no syscall matches {pattern}:\n" + "\n".join(lines))


@needs_strace
@pytest.mark.parametrize("fault", INJECTIONS, ids=[i.name for i in INJECTIONS])
def test_injected_fault_at_each_step(fault: Injection, dry_trace: Tuple[str, List[str]],
                                     tmp_path: Path) -> None:
    syscall, nth = _occurrence(dry_trace, fault.line)
    directory = _prepare(tmp_path / "d")
    target = directory / "a.json"
    log = tmp_path / "strace.log"
    when = f"{nth}..{nth + 1}" if fault.error == "EINTR" else str(nth)  # EINTR twice in a row
    child = Child(directory, [OLD, NEW, AGAIN],
                  ["-o", str(log), "-e", f"inject={syscall}:error={fault.error}:when={when}"])
    try:
        outcome = child.write_next()
        injected = [line for line in log.read_text().splitlines() if "(INJECTED)" in line]
        assert injected and all(line.split()[1].startswith(syscall + "(") for line in injected)

        if fault.step is None:
            assert outcome == {"ok": True}
        else:
            assert outcome["step"] == fault.step, outcome
            assert outcome["errno"] == getattr(errno, fault.error), outcome
            assert os.strerror(outcome["errno"]) in outcome["message"]
            named = directory / ("a.lock" if fault.step in ("open_lock", "lock") else "a.json")
            assert str(named) in outcome["message"]
        assert target.read_bytes() == _bytes(OLD if fault.target_after == "old" else NEW)
        assert temp_files(directory) == []
        assert _lock_free(target)
        # The next write, in the same process and with the same lock, succeeds.
        assert child.write_next() == {"ok": True}
        assert target.read_bytes() == _bytes(AGAIN)
    finally:
        child.close()
    print(f"\nfault {fault.name}: {syscall} call {nth} -> {fault.error}: "
          f"{outcome.get('step') or 'absorbed'}")


# The child writes a small document, says "ready", then on the first line of stdin writes a
# ~5 MB one, which streams into its temp file (parts written by a background thread), and
# reports with writev: the injected `write` faults must hit only the temp file's writes. The
# slow datetimes give the writer thread time to catch up, and so to sync early, between parts:
# writeback (`sync_file_range`) from the first part on, a flush (`fdatasync`) past 4 MiB.
STREAM_CHILD = """
import datetime, json, os, sys, time
import atomicjson

class Slow(datetime.datetime):
    def isoformat(self, *args, **kwargs):
        time.sleep(0.003)
        return super().isoformat(*args, **kwargs)

target = sys.argv[1]
doc = {"version": "large",
       "rows": [Slow(2024, 1, 1) if i % 2000 == 0 else f"row {i:08d} " + "x" * 100
                for i in range(40_000)]}
atomicjson.write_json(target, {"version": "old"})
print("ready", flush=True)
sys.stdin.readline()
try:
    atomicjson.write_json(target, doc)
    outcome = {"ok": True}
except atomicjson.AtomicJsonError as e:
    outcome = {"errno": e.errno, "step": getattr(e, "step", None)}
os.writev(1, [json.dumps(outcome).encode() + b"\\n"])
"""


@needs_strace
@pytest.mark.parametrize("syscall,error,step", [
    ("write", "ENOSPC", "write_temp"),
    ("sync_file_range", "EIO", "fsync_temp"),
    ("fdatasync", "EIO", "fsync_temp"),
    ("fsync", "EIO", "fsync_temp"),
])
def test_injected_fault_in_a_streamed_write(tmp_path: Path, syscall: str, error: str,
                                            step: str) -> None:
    # Counted per thread: call 1 is the writer (or syncing) thread's first (the main thread
    # makes no write or sync call before the writer thread has failed).
    target = tmp_path / "a.json"
    log = tmp_path / "strace.log"
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(STREAM_CHILD), str(target)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        tracer = subprocess.Popen(["strace", "-f", "-p", str(proc.pid), "-o", str(log), "-e",
                                   f"inject={syscall}:error={error}:when=1"],
                                  stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None and "attached" in tracer.stderr.readline()
        old = target.read_bytes()
        proc.stdin.write("\n")
        proc.stdin.flush()
        outcome = json.loads(proc.stdout.readline())
        tracer.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    injected = [line for line in log.read_text().splitlines() if "(INJECTED)" in line]
    assert injected and all(".tmp" not in line or syscall in line for line in injected)
    assert outcome == {"errno": getattr(errno, error), "step": step}, outcome
    assert target.read_bytes() == old
    assert temp_files(tmp_path) == []
    assert _lock_free(target)
    print(f"\nfault in a streamed write: {syscall} -> {error}: {step}")


@pytest.fixture
def mounts() -> Iterator[List[str]]:
    """Mount points to unmount at the end, whatever happens."""
    points: List[str] = []
    try:
        yield points
    finally:
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], capture_output=True)


def _mount(mounts: List[str], point: Path, *args: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(point)], check=True, capture_output=True)
    mounts.append(str(point))


def _expect_failure(target: Path, doc: Any, step: str, code: int) -> None:
    before = target.read_bytes() if target.exists() else None
    with pytest.raises(atomicjson.AtomicJsonError) as info:
        atomicjson.write_json(target, doc)
    assert (info.value.errno, getattr(info.value, "step", None)) == (code, step), info.value
    after = target.read_bytes() if target.exists() else None
    assert after == before
    assert temp_files(target.parent) == []
    assert _lock_free(target)


def test_full_file_system_enospc(tmp_path: Path, mounts: List[str]) -> None:
    small = tmp_path / "small"
    _mount(mounts, small, "-t", "tmpfs", "-o", "size=16k", "tmpfs")
    target = small / "a.json"
    atomicjson.write_json(target, OLD)
    _expect_failure(target, NEW, "write_temp", errno.ENOSPC)  # NEW is about 60 KB
    atomicjson.write_json(target, AGAIN)
    assert target.read_bytes() == _bytes(AGAIN)

    few = tmp_path / "few-inodes"  # the root, a.json and a.lock use all three
    _mount(mounts, few, "-t", "tmpfs", "-o", "size=1m,nr_inodes=3", "tmpfs")
    atomicjson.write_json(few / "a.json", OLD)
    _expect_failure(few / "a.json", NEW, "create_temp", errno.ENOSPC)

    # A document large enough to stream (parts written by a background thread) fills the disk
    # after its first parts: the writer thread's error comes out, nothing is left behind.
    mid = tmp_path / "one-mib"
    _mount(mounts, mid, "-t", "tmpfs", "-o", "size=1m", "tmpfs")
    atomicjson.write_json(mid / "a.json", OLD)
    large = {"rows": [f"row {i:08d} " + "x" * 100 for i in range(40_000)]}  # ~5 MB
    _expect_failure(mid / "a.json", large, "write_temp", errno.ENOSPC)
    atomicjson.write_json(mid / "a.json", AGAIN)
    assert (mid / "a.json").read_bytes() == _bytes(AGAIN)
    print(f"\nfault ENOSPC: {len(_bytes(NEW))} bytes on a 16 KiB tmpfs -> write_temp; "
          "no inode left -> create_temp; a streamed 5 MB document on 1 MiB -> write_temp")


def test_read_only_bind_mount_erofs(tmp_path: Path, mounts: List[str]) -> None:
    source = tmp_path / "rw"
    source.mkdir()
    atomicjson.write_json(source / "a.json", OLD)
    (source / "nolock.json").write_bytes(_bytes(OLD))
    ro = tmp_path / "ro"
    _mount(mounts, ro, "--bind", str(source))
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    # The temp file (created before the lock is taken) cannot be created, lock file or not.
    _expect_failure(ro / "a.json", NEW, "create_temp", errno.EROFS)
    _expect_failure(ro / "nolock.json", NEW, "create_temp", errno.EROFS)
    # A lock file that does not exist cannot be created; one that exists is opened read-only.
    with pytest.raises(atomicjson.AtomicJsonError) as info:
        atomicjson.FileLock(ro / "nolock.json").acquire()
    assert (info.value.errno, getattr(info.value, "step", None)) == (errno.EROFS, "open_lock")
    with atomicjson.FileLock(ro / "a.json"):
        pass
    atomicjson.write_json(source / "a.json", AGAIN)
    print("\nfault EROFS: read-only bind mount -> create_temp; a lock alone: open_lock when the "
          "lock file is missing, locked read-only when it exists")


@pytest.mark.skipif(not nobody_can_import_atomicjson(),
                    reason="needs a checkout `nobody` can import atomicjson from")
def test_directory_not_writable_eacces(mounts: List[str]) -> None:
    # Under /tmp rather than tmp_path, whose parents `nobody` may not enter.
    top = Path(tempfile.mkdtemp(prefix="atomicjson-eacces-"))
    try:
        top.chmod(0o755)
        locked, unlocked = top / "locked", top / "unlocked"
        locked.mkdir()
        unlocked.mkdir()
        atomicjson.write_json(locked / "a.json", OLD)
        (unlocked / "a.json").write_bytes(_bytes(OLD))
        code = textwrap.dedent("""
            import json, sys, atomicjson
            seen = []
            try:
                atomicjson.write_json(sys.argv[1], {"version": "new"})
            except atomicjson.AtomicJsonError as e:
                seen.append([e.errno, e.step])
            try:
                with atomicjson.FileLock(sys.argv[1]):
                    seen.append("locked")
            except atomicjson.AtomicJsonError as e:
                seen.append([e.errno, e.step])
            print(json.dumps(seen))
        """)
        results = {}
        for directory in (locked, unlocked):
            out = subprocess.run([*NOBODY, sys.executable, "-c", code,
                                  str(directory / "a.json")],
                                 capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "PYTHONPATH": str(HERE)})
            assert out.returncode == 0, out.stderr
            results[directory.name] = json.loads(out.stdout)
            assert (directory / "a.json").read_bytes() == _bytes(OLD)
            assert temp_files(directory) == []
        # The temp file (created before the lock is taken) is refused. A lock alone: a lock
        # file of root's is opened read-only and locked; a missing one cannot be created.
        assert results["locked"] == [[errno.EACCES, "create_temp"], "locked"]
        assert results["unlocked"] == [[errno.EACCES, "create_temp"],
                                       [errno.EACCES, "open_lock"]]
        print("\nfault EACCES: as nobody in root's directory -> create_temp; a lock alone: "
              "locked read-only (lock file there), open_lock (none)")
    finally:
        shutil.rmtree(top)


WAITER = """
import signal, sys, atomicjson
interrupted = []
signal.signal(signal.SIGUSR1, lambda *_: interrupted.append(1))
print("waiting", flush=True)
atomicjson.write_json(sys.argv[1], {"version": "waited"}, lock_timeout=60)
print(len(interrupted), flush=True)
"""


def _start_waiter(target: Path, strace: List[str]) -> "subprocess.Popen[str]":
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([*strace, sys.executable, "-c", WAITER, str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
    return proc


def _wait_for_waiter(target: Path) -> None:
    """Until /proc/locks shows a process blocked on the lock file."""
    st = os.stat(atomicjson.lock_path_for(target))
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open("/proc/locks") as f:
            if any("->" in line and inode in line for line in f):
                return
        time.sleep(0.01)
    raise AssertionError("the waiter never blocked on the lock")


@needs_strace
def test_eintr_on_the_lock_wait_is_retried(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomicjson.write_json(target, OLD)
    log = tmp_path / "strace.log"
    holder = LockHolder(Path(atomicjson.lock_path_for(target)))
    try:
        # strace counts per thread: the first three flock calls of the caller (the try, retried)
        # and of the helper thread blocked in the wait fail with EINTR; both must resume.
        waiter = _start_waiter(target, ["strace", "-f", "-qq", "-o", str(log), "-e",
                                        "inject=flock:error=EINTR:when=1..3"])
        _wait_for_waiter(target)
    finally:
        holder.release()
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert target.read_bytes() == _bytes({"version": "waited"})
    injected = [line for line in log.read_text().splitlines()
                if "flock(" in line and "(INJECTED)" in line]
    assert sum("LOCK_EX)" in line for line in injected) == 3, injected  # the blocking wait
    assert sum("LOCK_EX|LOCK_NB)" in line for line in injected) == 3, injected
    print("\nfault EINTR: 3 on the try, 3 on the blocked wait -> resumed, written")


def test_signals_to_a_waiter_do_not_end_the_wait(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomicjson.write_json(target, OLD)
    holder = LockHolder(Path(atomicjson.lock_path_for(target)))
    try:
        waiter = _start_waiter(target, [])
        _wait_for_waiter(target)
        for _ in range(20):  # each interrupts the blocked flock or the wait of the condvar
            os.kill(waiter.pid, signal.SIGUSR1)
            time.sleep(0.01)
        assert waiter.poll() is None, "the waiter gave up"
    finally:
        holder.release()
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    # The handler ran during the wait (signals arriving between two checks count once).
    assert 1 <= int(out) <= 20
    print(f"\nsignals: 20 SIGUSR1 to a waiter ({out.strip()} handler runs) -> resumed, written")
    assert target.read_bytes() == _bytes({"version": "waited"})
