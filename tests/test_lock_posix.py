"""lock_mode="posix": open-file-description record locks on the same `.lock` sidecar.

The same properties as the flock tests (tests/test_lock.py, tests/test_concurrency.py), with real
processes and real files: exclusion between processes, threads and asyncio tasks, timeouts that
name the holder, a killed holder releasing the lock, re-entrancy, fork, no lost update, the CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

import atomicjson
import atomicjson.aio
from conftest import LockHolder, run_python, temp_files, wait_until_blocked

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="OFD locks (F_OFD_SETLK) are Linux-only")

STRESS = int(os.environ.get("ATOMICJSON_STRESS", "1"))
HAVE_PROC_LOCKS = os.path.exists("/proc/locks")

# A child holding an OFD write lock on a lock file through plain fcntl (independent of
# atomicjson), says "locked" and holds it until its stdin closes or it reads a line.
_OFD_HOLDER = textwrap.dedent(
    """
    import fcntl, os, struct, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
    print("locked", flush=True)
    sys.stdin.readline()
    """
)

# The same, through atomicjson.lock(lock_mode="posix").
_AJ_HOLDER = textwrap.dedent(
    """
    import sys, atomicjson
    with atomicjson.lock(sys.argv[1], lock_mode="posix", timeout=30):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holders() -> Iterator[List[LockHolder]]:
    started: List[LockHolder] = []
    yield started
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()


def ofd_holder(lock_file: Path, started: List[LockHolder]) -> LockHolder:
    holder = LockHolder(lock_file, _OFD_HOLDER)
    started.append(holder)
    return holder


def aj_holder(target: Path, started: List[LockHolder]) -> LockHolder:
    holder = LockHolder(target, _AJ_HOLDER)
    started.append(holder)
    return holder


def try_once(target: Path, lock_mode: atomicjson.LockMode) -> bool:
    """Whether another process can take the lock of `target` at once."""
    proc = run_python(
        """
        import sys, atomicjson
        try:
            with atomicjson.lock(sys.argv[1], timeout=0, lock_mode=sys.argv[2]):
                print("free")
        except atomicjson.LockTimeoutError:
            print("held")
        """,
        str(target), lock_mode, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip() == "free"


# ---------------------------------------------------------------------------- between processes


def test_timeout_names_the_holding_process_found_in_fdinfo(tmp_path: Path, holders) -> None:
    target = tmp_path / "a.json"
    # Leaves a holder record naming this process, stale once the write returns: the holder
    # must be found by scanning fdinfo, not taken from the record.
    atomicjson.write_json(target, {"x": 0}, lock_mode="posix")
    holder = ofd_holder(tmp_path / "a.lock", holders)
    with pytest.raises(atomicjson.LockTimeoutError) as info:
        atomicjson.write_json(target, {"x": 1}, lock_timeout=0.2, lock_mode="posix")
    message = str(info.value)
    assert "a.lock" in message and "0.200 s" in message
    if HAVE_PROC_LOCKS:
        # /proc/locks shows OFD locks with pid -1; the pid comes from the holder's fdinfo and
        # the message says so.
        assert info.value.holders == [holder.pid], message
        assert f"pid {holder.pid} (" in message
        assert f"[found in /proc/{holder.pid}/fdinfo]" in message
        listed = atomicjson.lock_holders(target, lock_mode="posix")
        assert listed is not None and [pid for pid, _ in listed] == [holder.pid]
        assert "F_OFD_SETLKW" in (listed[0][1] or "")
    with pytest.raises(atomicjson.LockTimeoutError):
        atomicjson.write_json(target, {"x": 1}, lock_timeout=0, lock_mode="posix")
    assert atomicjson.read_json(target) == {"x": 0}
    assert temp_files(tmp_path) == []
    holder.release()
    atomicjson.write_json(target, {"x": 2}, lock_timeout=0, lock_mode="posix")
    assert atomicjson.read_json(target) == {"x": 2}
    assert atomicjson.lock_holders(target, lock_mode="posix") in ([], None)


def test_waiter_gets_the_lock_once_the_holder_releases(tmp_path: Path, holders) -> None:
    target = tmp_path / "w.json"
    holder = aj_holder(target, holders)
    done = threading.Event()
    errors: List[BaseException] = []

    def wait_and_write() -> None:
        try:
            atomicjson.write_json(target, {"after": True}, lock_timeout=30, lock_mode="posix")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        done.set()

    waiter = threading.Thread(target=wait_and_write)
    waiter.start()
    time.sleep(0.3)
    assert not done.is_set(), "wrote while another process held the lock"
    holder.release()
    waiter.join(30)
    assert done.is_set() and not errors, errors
    assert atomicjson.read_json(target) == {"after": True}


def test_killed_holder_releases_the_lock(tmp_path: Path, holders) -> None:
    target = tmp_path / "k.json"
    holder = aj_holder(target, holders)
    assert not try_once(target, "posix")
    waiter = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, atomicjson
            atomicjson.write_json(sys.argv[1], {"survivor": True}, lock_timeout=30,
                                  lock_mode="posix")
            print("wrote", flush=True)
        """), str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    assert waiter.poll() is None, waiter.communicate()
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(10)
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0 and out.strip() == "wrote", err
    assert atomicjson.read_json(target) == {"survivor": True}


def test_ctrl_c_interrupts_a_waiting_call_and_leaves_no_lock(tmp_path: Path, holders) -> None:
    code = """
        import sys, atomicjson
        print("waiting", flush=True)
        try:
            atomicjson.write_json(sys.argv[1], {"x": 1}, lock_timeout=None, lock_mode="posix")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        try:
            atomicjson.write_json(sys.argv[1], {"x": 1}, lock_timeout=0, lock_mode="posix")
        except atomicjson.LockTimeoutError:
            print("still excluded", flush=True)
    """
    target = tmp_path / "c.json"
    aj_holder(target, holders)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    wait_until_blocked(tmp_path / "c.lock", None)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert out.split() == ["interrupted", "still", "excluded"], err
    assert not target.exists()
    assert temp_files(tmp_path) == []


def test_aio_cancelled_waiter_leaves_no_lock_and_no_temp(tmp_path: Path, holders) -> None:
    target = tmp_path / "cancel.json"
    holder = aj_holder(target, holders)

    async def main() -> None:
        task = asyncio.ensure_future(
            atomicjson.aio.write_json(target, {"x": 1}, lock_timeout=None, lock_mode="posix"))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    holder.release()
    # The abandoned wait lets go of the lock once its helper gets it.
    with atomicjson.lock(target, timeout=10, lock_mode="posix"):
        pass
    assert try_once(target, "posix")
    assert not target.exists()
    assert temp_files(tmp_path) == []


def test_flock_and_posix_locks_do_not_exclude_each_other(tmp_path: Path, holders) -> None:
    """Why every writer of a shared file must use the same mode."""
    target = tmp_path / "mixed.json"
    aj_holder(target, holders)
    assert not try_once(target, "posix")
    assert try_once(target, "flock")
    with atomicjson.lock(target, lock_mode="flock", timeout=0):
        assert not try_once(target, "flock")


def test_posix_mode_excludes_classic_lockf_holders(tmp_path: Path, holders) -> None:
    """Classic fcntl record locks (fcntl.lockf) and OFD locks conflict: posix mode also
    guards against tools that use lockf; /proc/locks names those holders directly."""
    code = textwrap.dedent("""
        import fcntl, sys
        f = open(sys.argv[1], "a")
        fcntl.lockf(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    holder = LockHolder(tmp_path / "l.lock", code)
    holders.append(holder)
    with pytest.raises(atomicjson.LockTimeoutError) as info:
        atomicjson.write_json(tmp_path / "l.json", 1, lock_timeout=0.1, lock_mode="posix")
    if HAVE_PROC_LOCKS:
        assert info.value.holders == [holder.pid]
        assert "fdinfo" not in str(info.value)


def test_holder_record_is_written_in_posix_mode(tmp_path: Path) -> None:
    target = tmp_path / "rec.json"
    with atomicjson.lock(target, lock_mode="posix") as held:
        assert held.lock_mode == "posix"
        record = json.loads((tmp_path / "rec.lock").read_text())
    assert record["pid"] == os.getpid()
    assert record["host"] == os.uname().nodename


def test_remove_lock_file_in_posix_mode(tmp_path: Path, holders) -> None:
    target = tmp_path / "gone.json"
    with atomicjson.lock(target, lock_mode="posix", remove_lock_file=True):
        assert (tmp_path / "gone.lock").exists()
        assert not try_once(target, "posix")
    atomicjson.update_json(target, lambda d: {"n": 1}, lock_mode="posix", remove_lock_file=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone.json"]


def test_update_json_loses_no_update_across_processes(tmp_path: Path) -> None:
    """Processes increment a counter with update_json in posix mode; an O_EXCL marker proves
    no two are inside at once, and the final count proves no update was lost."""
    code = """
        import os, sys, atomicjson
        target, rounds = sys.argv[1], int(sys.argv[2])
        marker = target + ".inside"

        def bump(doc):
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            doc = {"n": doc["n"] + 1}
            os.unlink(marker)
            return doc

        for _ in range(rounds):
            atomicjson.update_json(target, bump, default={"n": 0}, lock_timeout=60,
                                   lock_mode="posix")
        with atomicjson.locked_json(target, lock_mode="posix", lock_timeout=60) as doc:
            doc["n"] += 1
        print("ok")
    """
    target = tmp_path / "counter.json"
    processes, rounds = 6, 25 * STRESS
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(target),
                               str(rounds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
             for _ in range(processes)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err
    assert atomicjson.read_json(target) == {"n": processes * (rounds + 1)}
    assert temp_files(tmp_path) == []


# ------------------------------------------------------------------------- inside one process


def test_reentrant_in_one_thread_and_exclusive_between_threads(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    got_it = threading.Event()
    with atomicjson.lock(target, lock_mode="posix"):
        with atomicjson.lock(target, timeout=0, lock_mode="posix"):  # same thread
            atomicjson.write_json(target, {"x": 1}, lock_mode="posix", lock_timeout=0)
            atomicjson.update_json(target, lambda d: {"x": d["x"] + 1}, lock_mode="posix",
                                   lock_timeout=0)
        assert atomicjson.read_json(target) == {"x": 2}
        assert not try_once(target, "posix")  # the inner exit did not release

        def other() -> None:
            with atomicjson.lock(target, timeout=10, lock_mode="posix"):
                got_it.set()

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        assert not got_it.is_set()  # another thread waits like another process
    t.join(10)
    assert got_it.is_set()


def test_threads_exclude_each_other(tmp_path: Path) -> None:
    target = tmp_path / "threads.json"
    inside = 0
    overlaps = 0
    errors: List[BaseException] = []
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, overlaps
        try:
            for _ in range(20 * STRESS):
                with atomicjson.lock(target, timeout=60, lock_mode="posix"):
                    with guard:
                        inside += 1
                        overlaps += inside > 1
                    time.sleep(0.0005)
                    with guard:
                        inside -= 1
                atomicjson.update_json(target, lambda d: {"n": d["n"] + 1},
                                       default={"n": 0}, lock_mode="posix", lock_timeout=60)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert overlaps == 0
    assert atomicjson.read_json(target) == {"n": 6 * 20 * STRESS}


def test_forked_child_does_not_keep_the_parents_lock(tmp_path: Path) -> None:
    code = """
        import os, sys, time, atomicjson
        target = sys.argv[1]
        held = atomicjson.lock(target, lock_mode="posix")
        held.acquire()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, b"forked")
            # The child waits like any other process, and gets the lock once the parent
            # releases it: its inherited descriptor was dropped at the fork.
            with atomicjson.lock(target, timeout=10, lock_mode="posix"):
                os.write(w, b" child-locked")
            os._exit(0)
        os.close(w)
        assert os.read(r, 6) == b"forked"
        time.sleep(0.2)
        held.release()
        data = b""
        while True:
            chunk = os.read(r, 100)
            if not chunk:
                break
            data += chunk
        os.waitpid(pid, 0)
        with atomicjson.lock(target, timeout=0, lock_mode="posix"):
            pass
        # A child that exits holding an inherited copy does not release the parent's lock.
        with atomicjson.lock(target, lock_mode="posix"):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            import subprocess
            other = subprocess.run([sys.executable, "-c",
                "import sys, atomicjson\\n"
                "try:\\n"
                "    atomicjson.write_json(sys.argv[1], 1, lock_timeout=0, lock_mode='posix')\\n"
                "    print('got it')\\n"
                "except atomicjson.LockTimeoutError:\\n"
                "    print('excluded')", target], capture_output=True, text=True)
        print(data.decode().strip(), other.stdout.strip())
    """
    proc = run_python(code, str(tmp_path / "f.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "child-locked excluded"


def test_aio_tasks_of_one_loop_exclude_each_other(tmp_path: Path) -> None:
    target = tmp_path / "aio.json"

    async def main() -> None:
        inside = 0
        overlaps = 0

        async def worker() -> None:
            nonlocal inside, overlaps
            for _ in range(8):
                async with atomicjson.aio.lock(target, timeout=30, lock_mode="posix") as held:
                    assert held.lock_mode == "posix"
                    inside += 1
                    overlaps += inside > 1
                    await asyncio.sleep(0.002)  # other tasks run meanwhile
                    inside -= 1
                await atomicjson.aio.update_json(
                    target, lambda d: {**d, "n": d.get("n", 0) + 1}, default={},
                    lock_mode="posix")

        await asyncio.gather(*(worker() for _ in range(5)))
        assert overlaps == 0
        assert (await atomicjson.aio.read_json(target)) == {"n": 40}

    asyncio.run(main())


def test_aio_task_exit_never_releases_another_tasks_lock(tmp_path: Path) -> None:
    target = tmp_path / "owner.json"

    async def main() -> None:
        held = asyncio.Event()
        done = asyncio.Event()

        async def holder() -> None:
            async with atomicjson.aio.lock(target, lock_mode="posix"):
                held.set()
                await done.wait()

        async def other() -> None:
            await held.wait()
            with pytest.raises(atomicjson.LockTimeoutError):
                async with atomicjson.aio.lock(target, timeout=0, lock_mode="posix"):
                    pass
            await atomicjson.aio.write_json(target, {"late": 1}, lock_timeout=0.05,
                                            lock_mode="posix")

        h = asyncio.ensure_future(holder())
        with pytest.raises(atomicjson.LockTimeoutError):
            await other()
        # The failed task is gone; the holder still holds.
        assert not await asyncio.get_running_loop().run_in_executor(
            None, try_once, target, "posix")
        done.set()
        await h
        await atomicjson.aio.write_json(target, {"late": 2}, lock_timeout=0, lock_mode="posix")

    asyncio.run(main())
    assert atomicjson.read_json(target) == {"late": 2}


def test_aio_two_loops_in_two_threads_exclude_each_other(tmp_path: Path) -> None:
    target = tmp_path / "loops.json"
    atomicjson.write_json(target, {"n": 0}, lock_mode="posix")

    def run_loop() -> None:
        async def body() -> None:
            for _ in range(20):
                await atomicjson.aio.update_json(target, lambda d: {"n": d["n"] + 1},
                                                 lock_mode="posix")
        asyncio.run(body())

    threads = [threading.Thread(target=run_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert json.loads(target.read_text()) == {"n": 40}


# ----------------------------------------------------------------------------- API and CLI


def test_every_api_refuses_an_unknown_lock_mode(tmp_path: Path) -> None:
    target = tmp_path / "bad.json"
    bad: Any = "fcntl"
    calls = [
        lambda: atomicjson.write_json(target, 1, lock_mode=bad),
        lambda: atomicjson.write_bytes(target, b"1", lock_mode=bad),
        lambda: atomicjson.write_dumps(target, 1, lock_mode=bad),
        lambda: atomicjson.update_json(target, lambda d: d, lock_mode=bad),
        lambda: atomicjson.locked_json(target, lock_mode=bad),
        lambda: atomicjson.lock(target, lock_mode=bad),
        lambda: atomicjson.lock_holders(target, lock_mode=bad),
        lambda: asyncio.run(atomicjson.aio.write_json(target, 1, lock_mode=bad)),
        lambda: asyncio.run(atomicjson.aio.update_json(target, lambda d: d, lock_mode=bad)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match='lock_mode must be "flock" or "posix"'):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_write_bytes_and_write_dumps_in_posix_mode(tmp_path: Path, holders) -> None:
    target = tmp_path / "b.json"
    atomicjson.write_bytes(target, b'{"raw": 1}', lock_mode="posix")
    atomicjson.write_dumps(tmp_path / "d.json", {"b": 1, "a": 2}, sort_keys=True,
                           lock_mode="posix")
    assert target.read_bytes() == b'{"raw": 1}'
    assert (tmp_path / "d.json").read_text() == '{"a": 2, "b": 1}'
    aj_holder(target, holders)
    for call in (lambda: atomicjson.write_bytes(target, b"2", lock_timeout=0, lock_mode="posix"),
                 lambda: atomicjson.write_dumps(target, 2, lock_timeout=0, lock_mode="posix")):
        with pytest.raises(atomicjson.LockTimeoutError):
            call()
    assert target.read_bytes() == b'{"raw": 1}'


def cli(*args: Any, input: str = "") -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "atomicjson", *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=60)


def test_cli_lock_mode(tmp_path: Path, holders) -> None:
    target = tmp_path / "c.json"
    ok = cli("write", target, "--lock-mode", "posix", input='{"a": 1}')
    assert ok.returncode == 0, ok.stderr
    ok = cli("update", target, "--lock-mode", "posix", "--set", "b=2")
    assert ok.returncode == 0, ok.stderr
    assert atomicjson.read_json(target) == {"a": 1, "b": 2}

    holder = aj_holder(target, holders)
    for args in (["write", target, "--lock-mode", "posix", "--timeout", "0.1"],
                 ["update", target, "--lock-mode", "posix", "--timeout", "0", "--set", "c=3"]):
        failed = cli(*args, input='{"x": 1}')
        assert failed.returncode == 1, failed.stderr
        assert failed.stderr.startswith("atomicjson: error: could not acquire lock")
        if HAVE_PROC_LOCKS:
            assert re.search(rf"pid {holder.pid}\b", failed.stderr), failed.stderr
    # The default flock mode does not see the OFD lock: the modes must match.
    assert cli("update", target, "--timeout", "0", "--set", "c=3").returncode == 0

    listed = cli("locks", "--lock-mode", "posix", tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "c.lock" in listed.stdout and "held" in listed.stdout
    if HAVE_PROC_LOCKS:
        assert re.search(rf"pid {holder.pid}\b", listed.stdout), listed.stdout
    assert "no held locks" in cli("locks", tmp_path).stdout  # nobody holds the flock

    bad = cli("write", target, "--lock-mode", "nfs", input="1")
    assert bad.returncode == 2 and "invalid choice: 'nfs'" in bad.stderr
    assert atomicjson.read_json(target) == {"a": 1, "b": 2, "c": 3}
