"""Real processes writing one file at once: never torn, always serialized, legacy-compatible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

from conftest import child_env, run_python, temp_files

# Each worker runs this: `rounds` times, take the lock (atomicjson's or the legacy polled
# fcntl.flock), prove nobody else is inside by creating a marker with O_EXCL, bump a counter
# with a read-modify-write, write a large document, remove the marker.
WORKER = """
import json, os, sys, time
import atomicjson, legacy

target, counter, mode, rounds, wid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
marker = target + ".inside"
lock_path = legacy.lock_path_for(target)

def critical(i):
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another is inside
    os.close(fd)
    try:
        with open(counter) as f:
            n = json.load(f)["n"]
        doc = {"writer": wid, "round": i, "payload": [wid * 50] * 2000}
        if mode == "legacy":
            legacy.write_atomic_json(counter, {"n": n + 1})
            legacy.write_atomic_json(target, doc)
        else:
            atomicjson.write_json(counter, {"n": n + 1})   # re-entrant: this thread holds it
            atomicjson.write_json(target, doc)
    finally:
        os.unlink(marker)

for i in range(rounds):
    if mode == "legacy":
        with legacy.legacy_lock(lock_path, timeout=60):
            critical(i)
    else:
        with atomicjson.lock(target, timeout=60):
            critical(i)
print("ok")
"""

READER = """
import json, sys, time
target, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
reads = 0
while time.monotonic() < end:
    try:
        with open(target, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        continue
    doc = json.loads(data)  # raises on a torn or partial file
    assert doc["payload"] == [doc["writer"] * 50] * 2000, "mixed document"
    reads += 1
print(reads)
"""


def _run_workers(tmp_path: Path, modes: List[str], rounds: int) -> None:
    import subprocess
    import sys

    target = tmp_path / "shared.json"  # lock: shared.lock, held around each round
    counter = tmp_path / "shared.count.json"  # its own lock: shared.count.lock
    counter.write_text(json.dumps({"n": 0}))
    env = child_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(target), str(counter), mode, str(rounds), str(i)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i, mode in enumerate(modes)
    ]
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert json.loads(counter.read_text()) == {"n": rounds * len(modes)}
    doc = json.loads(target.read_text())
    assert doc["payload"] == [doc["writer"] * 50] * 2000
    assert temp_files(tmp_path) == []


def test_eight_atomicjson_processes_serialize_and_never_tear(tmp_path: Path) -> None:
    # The marker proves the outer lock excludes; the count proves no update is lost.
    _run_workers(tmp_path, ["atomicjson"] * 8, rounds=30)


def test_atomicjson_and_legacy_processes_exclude_each_other(tmp_path: Path) -> None:
    _run_workers(tmp_path, ["atomicjson", "legacy"] * 4, rounds=20)


def test_plain_write_json_from_many_processes_is_never_torn(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    code = """
        import sys, atomicjson
        target, wid = sys.argv[1], sys.argv[2]
        for i in range(40):
            atomicjson.write_json(target, {"writer": wid, "round": i, "payload": [wid * 50] * 2000},
                                  durable=(i % 2 == 0))
    """
    import subprocess
    import sys
    import textwrap

    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(target), str(i)])
             for i in range(8)]
    reader = run_python(READER, str(target), "2")
    for p in procs:
        assert p.wait(timeout=300) == 0
    assert reader.returncode == 0, reader.stderr
    doc = json.loads(target.read_text())
    assert doc["payload"] == [doc["writer"] * 50] * 2000
    assert temp_files(tmp_path) == []
