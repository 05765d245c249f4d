"""Power cuts: an ext4 file system in an image on a loop device is shut down with
``EXT4_IOC_SHUTDOWN`` (``EXT4_GOING_FLAGS_NOLOGFLUSH``: whatever the journal has not committed
is lost, as in a power cut) right after ``write_json`` returns, then unmounted and mounted again.

``durable=True``: the new document must be there, and no temp file. ``durable=False``: the old
or the new document, never an empty, torn or missing file (this relies on ext4's defaults,
``data=ordered`` with ``auto_da_alloc``, which flush a file replaced by a rename). Every second
non-durable round, a durable write of a neighbour file commits the journal before the cut, so
the rename is committed: then the new document must be complete.

The mounts live in a private mount namespace (``unshare -m``): a mount in the shared namespace
is copied into any namespace another process creates meanwhile, which keeps the shut-down file
system alive there, and the next mount of the device would find it again.

Needs root, unshare, losetup, mkfs.ext4 and ext4; skipped otherwise. Rounds scale with
ATOMICJSON_STRESS (default 1: 24 rounds); ``pytest -s`` prints a one-line summary.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import child_env, is_root

STRESS = float(os.environ.get("ATOMICJSON_STRESS", "1"))
SEED = int(os.environ.get("ATOMICJSON_SEED", str(random.randrange(2**32))))
TOOLS = ("unshare", "losetup", "mkfs.ext4", "mount", "umount")

pytestmark = [
    pytest.mark.skipif(not is_root, reason="power cuts need root (loop device, mount)"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason=f"power cuts need {', '.join(TOOLS)}"),
]

# Write, then cut the power at once: the ioctl on the directory, in the same process, right
# after write_json returns (or after a durable write of a neighbour file).
WRITE_AND_CUT = """
import fcntl, json, os, struct, sys
import atomicjson
target, source, durable, neighbour = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with open(source) as f:
    doc = json.load(f)
atomicjson.write_json(target, doc, durable=durable == "1")
if neighbour == "1":
    # A durable write of another file commits the journal, with our rename in it.
    atomicjson.write_json(os.path.join(os.path.dirname(target), "neighbour.json"), [1])
fd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY)
EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2
fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
print("cut")
"""

# Runs in the private mount namespace: mounts the volume, then each round writes and cuts (in a
# child), mounts again and reports what the file holds, one JSON line per round.
DRIVER = """
import json, os, random, re, subprocess, sys
import atomicjson
device, mnt, work, rounds, seed, write_and_cut = sys.argv[1:7]
TEMP_NAME = re.compile(r"^\\..+\\.[0-9a-f]{16}\\.tmp$")

def run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)

def make_doc(version, size):  # about `size` bytes, every line naming the version
    return {"version": version, "lines": [f"{version}-{i:07d}" for i in range(size // 20)]}

rng = random.Random(int(seed))
target, source = os.path.join(mnt, "state.json"), os.path.join(work, "next.json")
run("mount", "-t", "ext4", device, mnt)
old = None
for version in range(int(rounds)):
    durable, neighbour = version % 2 == 0, version % 4 == 3
    doc = make_doc(version, rng.choice([1_000, 50_000, 1_000_000]))
    new = atomicjson.canonical_bytes(doc)
    with open(source, "w") as f:
        json.dump(doc, f)
    child = subprocess.run([sys.executable, "-c", write_and_cut, target, source,
                            str(int(durable)), str(int(neighbour))],
                           capture_output=True, text=True)
    if child.returncode != 0 or child.stdout.strip() != "cut":
        print(json.dumps({"round": version, "error": child.stderr}), flush=True)
        break
    run("umount", mnt)
    run("mount", "-t", "ext4", device, mnt)
    data = open(target, "rb").read() if os.path.exists(target) else None
    temps = sorted(name for name in os.listdir(mnt) if TEMP_NAME.match(name))
    removed = sorted(os.path.basename(p) for p in atomicjson.cleanup_temp_files(mnt, older_than=0))
    outcome = ("new" if data == new else "old" if data == old and old is not None
               else "missing" if data is None else "other")
    print(json.dumps({"round": version, "durable": durable, "neighbour": neighbour,
                      "size": len(new), "outcome": outcome, "bytes": len(data or b""),
                      "had_old": old is not None, "temps": temps, "removed": removed}),
          flush=True)
    old = data
run("umount", mnt)
"""


class LoopImage:
    """A fresh ext4 image attached to a loop device; detached by `close`."""

    def __init__(self, tmp_path: Path) -> None:
        self.image = tmp_path / "ext4.img"
        self.device = ""
        with open(self.image, "wb") as f:
            f.truncate(64 << 20)
        _run("mkfs.ext4", "-q", "-F", str(self.image))
        self.device = _run("losetup", "-f", "--show", str(self.image)).strip()

    def close(self) -> None:
        if self.device:
            subprocess.run(["losetup", "-d", self.device], capture_output=True)


def _run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def loop_image(tmp_path: Path) -> Iterator[LoopImage]:
    try:
        image = LoopImage(tmp_path)
    except RuntimeError as err:  # no loop devices here (a container, for instance)
        pytest.skip(f"cannot set up a loop device: {err}")
    try:
        yield image
    finally:
        # The mounts died with the driver's namespace, even if it was killed.
        image.close()


def test_durable_writes_survive_a_power_cut_and_others_are_old_or_new(
        loop_image: LoopImage, tmp_path: Path) -> None:
    rounds = max(2, int(24 * STRESS))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = child_env()
    driver = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", DRIVER,
         loop_image.device, str(mnt), str(tmp_path), str(rounds), str(SEED), WRITE_AND_CUT],
        capture_output=True, text=True, env=env, timeout=600)
    if "unknown filesystem type 'ext4'" in driver.stderr:
        pytest.skip("no ext4 in this kernel")
    reports: List[Dict[str, Any]] = [json.loads(line) for line in driver.stdout.splitlines()]
    assert driver.returncode == 0, driver.stderr
    assert len(reports) == rounds and "error" not in reports[-1], reports[-1:]

    seen = {"durable new": 0, "fast new": 0, "fast old": 0}
    temps_left = 0
    for r in reports:
        where = f"round {r['round']} (seed {SEED}): {r}"
        assert r["removed"] == r["temps"], where  # what is left is orphans, and cleanup takes them
        if r["durable"]:
            assert r["outcome"] == "new" and r["temps"] == [], where
            seen["durable new"] += 1
        else:
            assert r["outcome"] in ("new", "old") or (r["outcome"] == "missing"
                                                      and not r["had_old"]), where
            if r["neighbour"]:  # its commit carried our rename, and ext4 flushed our data first
                assert r["outcome"] == "new", where
            seen["fast new" if r["outcome"] == "new" else "fast old"] += 1
            temps_left += len(r["temps"])
    print(f"\npower cut: {rounds} cuts right after write_json (1 KB-1 MB documents, ext4 "
          f"NOLOGFLUSH shutdown); durable=True: {seen['durable new']}/{seen['durable new']} new; "
          f"durable=False: {seen['fast new']} new, {seen['fast old']} old, 0 empty or torn, "
          f"{temps_left} orphan temp files (ATOMICJSON_STRESS={STRESS:g}, seed {SEED})")
