"""The lock itself: holders, fork, threads, close-on-exec, Ctrl-C, asyncio."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import atomicjson
import atomicjson.aio
from conftest import run_python, temp_files, wait_until_blocked


def test_lock_holders_names_the_holding_process(tmp_path: Path, hold_lock) -> None:
    target = tmp_path / "a.json"
    assert atomicjson.lock_holders(target) in ([], None)
    with hold_lock(tmp_path / "a.lock") as holder:
        holders = atomicjson.lock_holders(target)
        if holders is None:
            pytest.skip("/proc/locks is not available")
        assert [pid for pid, _ in holders] == [holder.pid]
        assert "fcntl" in (holders[0][1] or "")


def test_lock_is_reentrant_in_one_thread_and_exclusive_between_threads(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    got_it = threading.Event()
    with atomicjson.lock(target):
        with atomicjson.lock(target, timeout=0):  # same thread: re-entrant
            atomicjson.write_json(target, {"x": 1})
        assert atomicjson.read_json(target) == {"x": 1}

        def other() -> None:
            with atomicjson.lock(target, timeout=5):
                got_it.set()

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        assert not got_it.is_set()  # another thread waits like another process
    t.join(5)
    assert got_it.is_set()


def test_lock_descriptor_is_not_inherited_by_exec(tmp_path: Path) -> None:
    target = tmp_path / "e.json"
    with atomicjson.lock(target):
        # A child started while the lock is held must not keep it after the parent releases.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        with atomicjson.lock(target, timeout=0):
            pass
    finally:
        child.kill()
        child.wait()


def test_forked_child_does_not_keep_the_parents_lock(tmp_path: Path) -> None:
    code = """
        import os, sys, time, atomicjson
        target = sys.argv[1]
        held = atomicjson.lock(target)
        held.acquire()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            # The child may take the lock itself once the parent lets go.
            os.write(w, b"forked")
            with atomicjson.lock(target, timeout=10):
                os.write(w, b" child-locked")
            os._exit(0)
        os.close(w)
        assert os.read(r, 6) == b"forked"
        time.sleep(0.2)
        held.release()          # the child's inherited copy must not keep the lock alive
        data = b""
        while True:
            chunk = os.read(r, 100)
            if not chunk:
                break
            data += chunk
        os.waitpid(pid, 0)
        # And the parent can lock again while the (exited) child is gone.
        with atomicjson.lock(target, timeout=0):
            pass
        print(data.decode().strip())
    """
    proc = run_python(code, str(tmp_path / "f.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "child-locked"


def test_forked_child_releasing_does_not_unlock_the_parent(tmp_path: Path) -> None:
    code = """
        import os, sys, atomicjson
        target = sys.argv[1]
        with atomicjson.lock(target):
            pid = os.fork()
            if pid == 0:
                os._exit(0)          # exits holding an inherited copy of the descriptor
            os.waitpid(pid, 0)
            import subprocess
            other = subprocess.run([sys.executable, "-c",
                "import sys, atomicjson\\n"
                "try:\\n"
                "    atomicjson.write_json(sys.argv[1], 1, lock_timeout=0)\\n"
                "    print('got it')\\n"
                "except atomicjson.LockTimeoutError:\\n"
                "    print('excluded')", target], capture_output=True, text=True)
            print(other.stdout.strip())
    """
    proc = run_python(code, str(tmp_path / "g.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "excluded"


def test_ctrl_c_interrupts_a_waiting_call_and_leaves_no_lock(tmp_path: Path, hold_lock) -> None:
    code = """
        import sys, time, atomicjson
        print("waiting", flush=True)
        try:
            atomicjson.write_json(sys.argv[1], {"x": 1}, lock_timeout=None)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        # No lock of ours is left behind: the holder still has it, we can time out cleanly.
        try:
            atomicjson.write_json(sys.argv[1], {"x": 1}, lock_timeout=0)
        except atomicjson.LockTimeoutError:
            print("still excluded", flush=True)
    """
    with hold_lock(tmp_path / "c.lock"):
        env = dict(os.environ)
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "c.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        wait_until_blocked(tmp_path / "c.lock", proc.pid)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - sent
    assert out.split() == ["interrupted", "still", "excluded"], err
    assert elapsed < 5
    assert not (tmp_path / "c.json").exists()
    assert temp_files(tmp_path) == []


def test_aio_tasks_exclude_each_other_and_do_not_block_the_loop(tmp_path: Path) -> None:
    target = tmp_path / "aio.json"

    async def main() -> None:
        inside = 0
        overlaps = 0
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        async def worker(i: int) -> None:
            nonlocal inside, overlaps
            for _ in range(10):
                async with atomicjson.aio.lock(target, timeout=30):
                    inside += 1
                    overlaps += inside > 1
                    await asyncio.sleep(0.002)  # other tasks run meanwhile
                    inside -= 1
                await atomicjson.aio.update_json(
                    target, lambda d: {**d, "n": d.get("n", 0) + 1}, default={})

        tick = asyncio.ensure_future(ticker())
        await asyncio.gather(*(worker(i) for i in range(6)))
        tick.cancel()
        assert overlaps == 0
        assert ticks > 20  # the loop kept running while tasks waited for the lock
        assert (await atomicjson.aio.read_json(target)) == {"n": 60}

    asyncio.run(main())


def test_aio_cancelled_waiter_leaves_no_lock_and_no_temp(tmp_path: Path, hold_lock) -> None:
    target = tmp_path / "cancel.json"

    async def main() -> None:
        task = asyncio.ensure_future(atomicjson.aio.write_json(target, {"x": 1}, lock_timeout=None))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with hold_lock(tmp_path / "cancel.lock"):
        asyncio.run(main())
    # Released while the cancelled worker may still be waiting (it checks every 50 ms) and
    # after its event loop has closed: whatever it gets, it lets go of.
    with atomicjson.lock(target, timeout=10):
        pass
    with atomicjson.lock(target, timeout=0):
        pass
    assert not target.exists()
    assert temp_files(tmp_path) == []


def test_aio_two_loops_in_two_threads_exclude_each_other(tmp_path: Path) -> None:
    target = tmp_path / "loops.json"
    atomicjson.write_json(target, {"n": 0})

    def run_loop() -> None:
        async def body() -> None:
            for _ in range(25):
                await atomicjson.aio.update_json(target, lambda d: {"n": d["n"] + 1})
        asyncio.run(body())

    threads = [threading.Thread(target=run_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert json.loads(target.read_text()) == {"n": 50}


def test_long_wait_logs_one_warning_naming_the_holder(tmp_path: Path, hold_lock, caplog) -> None:
    atomicjson.set_lock_wait_warning(0.2)
    try:
        with hold_lock(tmp_path / "slow.lock") as holder, caplog.at_level("WARNING", "atomicjson"):
            with pytest.raises(atomicjson.LockTimeoutError):
                atomicjson.write_json(tmp_path / "slow.json", {}, lock_timeout=0.6)
    finally:
        atomicjson.set_lock_wait_warning(5.0)
    warnings = [r for r in caplog.records if r.name == "atomicjson"]
    assert len(warnings) == 1
    assert "slow.lock" in warnings[0].getMessage()
    if atomicjson.lock_holders(tmp_path / "slow.json") is not None:
        assert str(holder.pid) in warnings[0].getMessage()


def test_holder_leaves_a_record_in_the_lock_file(tmp_path: Path) -> None:
    target = tmp_path / "rec.json"
    atomicjson.write_json(target, {"a": 1})
    record = json.loads((tmp_path / "rec.lock").read_text())
    assert record["pid"] == os.getpid()
    assert record["host"] == os.uname().nodename
    assert isinstance(record["argv"], list) and record["acquired"].endswith("Z")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0
                    or subprocess.run(["which", "unshare"], capture_output=True).returncode != 0,
                    reason="needs root and unshare to hide /proc/locks")
def test_record_names_the_holder_where_proc_locks_cannot(tmp_path: Path) -> None:
    """A waiter that cannot read /proc/locks (as on another machine of a shared file system)
    still learns who holds the lock, from the record, marked as such."""
    target = tmp_path / "remote.json"
    code = (
        "import subprocess, sys, atomicjson\n"
        "subprocess.run(['mount', '-t', 'tmpfs', 'none', '/proc'], check=True)\n"
        "print(atomicjson.lock_holders(sys.argv[1]))\n"
        "try:\n"
        "    atomicjson.write_json(sys.argv[1], 1, lock_timeout=0)\n"
        "except atomicjson.LockTimeoutError as e:\n"
        "    print(e.holders, '|', e.recorded_holder)\n"
    )
    with atomicjson.lock(target):
        env = dict(os.environ)
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                               code, str(target)], capture_output=True, text=True, env=env,
                              timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed, timeout_line = proc.stdout.strip().splitlines()
    assert f"({os.getpid()}, " in listed and "recorded by the holder" in listed
    holders, recorded = timeout_line.split(" | ")
    assert holders == "None"
    assert f"pid {os.getpid()}" in recorded and "recorded by the holder" in recorded


def test_remove_lock_file_keeps_exclusion_and_leaves_no_lock_file(tmp_path: Path) -> None:
    """Many processes take the lock with remove_lock_file=True: critical sections never
    overlap (an O_EXCL marker proves it) and no lock file remains at the end."""
    code = """
        import os, sys, atomicjson
        target, rounds = sys.argv[1], int(sys.argv[2])
        marker = target + ".inside"
        for i in range(rounds):
            with atomicjson.lock(target, timeout=60, remove_lock_file=True):
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.close(fd)
                n = atomicjson.read_json(target)["n"] if os.path.exists(target) else 0
                atomicjson.write_json(target, {"n": n + 1}, remove_lock_file=True)
                os.unlink(marker)
        print("ok")
    """
    target = tmp_path / "removable.json"
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(target), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    assert json.loads(target.read_text()) == {"n": 320}
    assert not (tmp_path / "removable.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["removable.json"]
