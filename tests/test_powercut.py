"""Power cuts: an ext4 file system in an image on a loop device is shut down with
``EXT4_IOC_SHUTDOWN`` (``EXT4_GOING_FLAGS_NOLOGFLUSH``: whatever the journal has not committed
is lost, as in a power cut) right after ``write_json`` returns, then unmounted and mounted again.

``durable=True``: the new document must be there, and no temp file. ``durable=False``: the old
or the new document, never an empty, torn or missing file (this relies on ext4's defaults,
``data=ordered`` with ``auto_da_alloc``, which flush a file replaced by a rename). Every second
non-durable round, a durable write of a neighbour file commits the journal before the cut, so
the rename is committed: then the new document must be complete.

Needs root, losetup, mkfs.ext4 and ext4; skipped otherwise. Rounds scale with
ATOMICJSON_STRESS (default 1: 24 rounds); ``pytest -s`` prints a one-line summary.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

import atomicjson
from conftest import is_root, run_python

STRESS = float(os.environ.get("ATOMICJSON_STRESS", "1"))
SEED = int(os.environ.get("ATOMICJSON_SEED", str(random.randrange(2**32))))
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")
TOOLS = ("losetup", "mkfs.ext4", "mount", "umount")

pytestmark = [
    pytest.mark.skipif(not is_root, reason="power cuts need root (loop device, mount)"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason=f"power cuts need {', '.join(TOOLS)}"),
]

# Write, then cut the power at once: the ioctl on the directory, in the same process, right
# after write_json returns (or after a durable write of a neighbour file, for durable=False).
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


def make_doc(version: int, size: int) -> Dict[str, Any]:
    """About `size` bytes of JSON, every line naming the version."""
    return {"version": version, "lines": [f"{version}-{i:07d}" for i in range(size // 20)]}


class Volume:
    """An ext4 image on a loop device, mounted at `mountpoint` while `mounted`."""

    def __init__(self, tmp_path: Path) -> None:
        self.image = tmp_path / "ext4.img"
        self.mountpoint = tmp_path / "mnt"
        self.mountpoint.mkdir()
        self.device: Optional[str] = None
        self.mounted = False

    def create(self) -> None:
        with open(self.image, "wb") as f:
            f.truncate(64 << 20)
        _run("mkfs.ext4", "-q", "-F", str(self.image))
        self.device = _run("losetup", "-f", "--show", str(self.image)).strip()

    def mount(self) -> None:
        assert self.device is not None
        _run("mount", "-t", "ext4", self.device, str(self.mountpoint))
        self.mounted = True

    def umount(self) -> None:
        _run("umount", str(self.mountpoint))
        self.mounted = False

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        if self.device is not None:
            subprocess.run(["losetup", "-d", self.device], capture_output=True)


def _run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Volume]:
    vol = Volume(tmp_path)
    try:
        vol.create()
        vol.mount()
    except RuntimeError as err:  # no loop devices or no ext4 here (a container, for instance)
        vol.close()
        pytest.skip(f"cannot set up an ext4 loop device: {err}")
    try:
        yield vol
    finally:
        vol.close()


def test_durable_writes_survive_a_power_cut_and_others_are_old_or_new(
        volume: Volume, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    target = volume.mountpoint / "state.json"
    rounds = max(2, int(24 * STRESS))
    old: Optional[bytes] = None
    seen = {"durable new": 0, "fast new": 0, "fast old": 0}
    temps_left = 0
    for version in range(rounds):
        durable = version % 2 == 0
        neighbour = version % 4 == 3
        size = rng.choice([1_000, 50_000, 1_000_000])
        doc = make_doc(version, size)
        new = atomicjson.canonical_bytes(doc)
        source = tmp_path / "next.json"  # the document to write, off the volume
        source.write_text(json.dumps(doc))
        child = run_python(WRITE_AND_CUT, str(target), str(source), str(int(durable)),
                           str(int(neighbour)))
        assert child.returncode == 0 and child.stdout.strip() == "cut", child.stderr
        volume.umount()
        volume.mount()

        data = target.read_bytes() if target.exists() else None
        temps = [p.name for p in volume.mountpoint.iterdir() if TEMP_NAME.match(p.name)]
        if durable:
            assert data == new, f"round {version}: durable write lost (seed {SEED})"
            assert temps == [], f"round {version}: temp file after a durable write"
            seen["durable new"] += 1
        else:
            assert data is not None or old is None, f"round {version}: file lost"
            assert data in (old, new), (
                f"round {version}: neither old nor new, {len(data or b'')} bytes (seed {SEED})")
            seen["fast new" if data == new else "fast old"] += 1
            if neighbour:  # its commit carried our rename, and ext4 flushed our data first
                assert data == new, f"round {version}: committed rename without data"
            # A temp file of a write whose rename was lost is an orphan: cleanup removes it.
            assert sorted(atomicjson.cleanup_temp_files(volume.mountpoint, older_than=0)) == \
                sorted(str(volume.mountpoint / name) for name in temps)
            temps_left += len(temps)
        old = data
    print(f"\npower cut: {rounds} cuts right after write_json (1 KB-1 MB documents, ext4 "
          f"NOLOGFLUSH shutdown); durable=True: {seen['durable new']}/{seen['durable new']} new; "
          f"durable=False: {seen['fast new']} new, {seen['fast old']} old, 0 empty or torn, "
          f"{temps_left} orphan temp files (ATOMICJSON_STRESS={STRESS:g}, seed {SEED})")
