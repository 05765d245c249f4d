"""A multi-process training pipeline writing its run files through atomicjson.

Several worker processes each train a few (simulated) runs. For every run a worker writes
``runs/<run_id>/metadata.json`` once and rewrites ``runs/<run_id>/metrics.json`` after every
epoch with :func:`atomicjson.write_json`, then merges an entry for the run into ONE shared
``snapshot_index.json`` with :func:`atomicjson.update_json`: the lock is held across read,
change and write, so no worker's entry is lost however the workers interleave. Meanwhile the
main process keeps reading the index: it is always a complete JSON document.

At the end the script verifies that every file parses, every run is in the index and every
file holds exactly the canonical bytes of its content.

    python examples/pipeline.py            # in a temporary directory
    python examples/pipeline.py OUT_DIR    # keep the files
"""

from __future__ import annotations

import datetime as dt
import enum
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import atomicjson

WORKERS = 4
RUNS_PER_WORKER = 3
EPOCHS = 5


class Stage(enum.Enum):
    TRAINING = "training"
    DONE = "done"


def add_run(index: Dict[str, Any], run_id: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    """The merge step: runs under ``update_json``, with the index locked."""
    index.setdefault("runs", {})[run_id] = entry
    index["updated"] = dt.datetime.now(dt.timezone.utc)  # written as an ISO string
    index["count"] = len(index["runs"])
    return index


def train(worker: int, root: str) -> None:
    rng = random.Random(worker)
    for n in range(RUNS_PER_WORKER):
        run_id = f"w{worker}-r{n}"
        run_dir = Path(root) / "runs" / run_id
        # Datetimes, enums, paths and sets are sanitized exactly as the legacy helpers did.
        atomicjson.write_json(run_dir / "metadata.json", {
            "run_id": run_id,
            "worker": worker,
            "pid": os.getpid(),
            "started": dt.datetime.now(dt.timezone.utc),
            "stage": Stage.TRAINING,
            "data": Path(root) / "data" / "train.parquet",
            "features": {"age", "income", "tenure"},
        })
        loss = 1.0
        history: List[Dict[str, Any]] = []
        for epoch in range(EPOCHS):
            loss *= 0.7 + 0.2 * rng.random()
            history.append({"epoch": epoch, "loss": round(loss, 6)})
            atomicjson.write_json(run_dir / "metrics.json",
                                  {"run_id": run_id, "history": history, "best": loss},
                                  durable=False)  # rewritten every epoch: atomic is enough
        atomicjson.update_json(Path(root) / "snapshot_index.json",
                               lambda index: add_run(index, run_id, {
                                   "stage": Stage.DONE,
                                   "metadata": f"runs/{run_id}/metadata.json",
                                   "metrics": f"runs/{run_id}/metrics.json",
                                   "final_loss": round(loss, 6),
                               }),
                               default={})


def verify(root: Path) -> List[str]:
    problems = []
    index = atomicjson.read_json(root / "snapshot_index.json")
    expected = {f"w{w}-r{n}" for w in range(WORKERS) for n in range(RUNS_PER_WORKER)}
    missing = expected - set(index["runs"])
    if missing:
        problems.append(f"index lost {len(missing)} run(s): {sorted(missing)}")
    if index["count"] != len(expected):
        problems.append(f"index count {index['count']} != {len(expected)}")
    files = sorted(root.rglob("*.json"))
    for path in files:
        doc = atomicjson.read_json(path)  # raises if any file is torn
        if path.read_bytes() != atomicjson.canonical_bytes(doc):
            problems.append(f"{path} is not in canonical form")
    for run_id, entry in index["runs"].items():
        metrics = atomicjson.read_json(root / entry["metrics"])
        if len(metrics["history"]) != EPOCHS or metrics["run_id"] != run_id:
            problems.append(f"{run_id}: incomplete metrics")
        if entry["stage"] != "done":
            problems.append(f"{run_id}: stage {entry['stage']!r}")
    return problems


def main(out: str) -> int:
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    index_path = root / "snapshot_index.json"
    ctx = multiprocessing.get_context("spawn")
    start = time.monotonic()
    workers = [ctx.Process(target=train, args=(w, str(root))) for w in range(WORKERS)]
    for p in workers:
        p.start()
    reads = 0
    while any(p.is_alive() for p in workers):  # a reader that never sees a torn index
        if index_path.exists():
            atomicjson.read_json(index_path)
            reads += 1
        time.sleep(0.002)
    for p in workers:
        p.join()
        if p.exitcode != 0:
            print(f"worker {p.name} failed with exit code {p.exitcode}", file=sys.stderr)
            return 1
    elapsed = time.monotonic() - start
    problems = verify(root)
    index = atomicjson.read_json(index_path)
    print(f"{WORKERS} workers x {RUNS_PER_WORKER} runs in {elapsed:.1f} s: "
          f"{index['count']} runs in {index_path.name}, "
          f"{len(list(root.rglob('*.json')))} JSON files, {reads} concurrent reads of the index")
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    print("verified: no lost index entries, every file complete and canonical"
          if not problems else "verification FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory(prefix="atomicjson-pipeline-") as tmp:
        sys.exit(main(tmp))
