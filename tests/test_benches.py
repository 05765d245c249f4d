"""Smoke tests of the benchmarks in ``benches/`` (no timing assertions: figures are reported,
never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
if str(BENCHES) not in sys.path:
    sys.path.insert(0, str(BENCHES))

pytest.importorskip("numpy")
pytest.importorskip("pandas")

import atomicjson  # noqa: E402
import documents  # noqa: E402
import legacy  # noqa: E402


@pytest.mark.parametrize("name", ["small", "medium", "large"])
def test_documents_have_the_intended_size_and_both_writers_accept_them(name, tmp_path):
    doc = documents.document(name)
    ours = atomicjson.canonical_bytes(doc)
    theirs = legacy.canonical_dump(doc)
    assert ours == theirs
    target = documents.TARGET_BYTES[name]
    assert 0.8 * target <= len(ours) <= 1.25 * target, len(ours)
    # every type the issue names is in there
    text = ours.decode("utf-8")
    assert '"created_at": "2024-01-02T09:30:00.123456+00:00"' in text
    assert '"status": "completed"' in text
    assert "NaN" in text and "Infinity" in text
    # the plain variant is what sanitize() returns: plain JSON types only
    assert legacy._dump_sanitized(documents.plain(name)) == ours
    # and a whole write takes it
    path = tmp_path / "doc.json"
    atomicjson.write_json(path, doc, durable=False)
    assert path.read_bytes() == ours


def test_documents_are_deterministic():
    a = documents.make_document(**documents.PRESETS["small"])
    b = documents.make_document(**documents.PRESETS["small"])
    assert atomicjson.canonical_bytes(a) == atomicjson.canonical_bytes(b)


def test_huge_preset_is_only_built_on_request():
    info = documents.document.cache_info()
    assert "huge" in documents.PRESETS
    # importing the module and building the others never builds the ~200 MB one
    assert info.currsize <= 3


def test_quick_smoke_prints_a_table(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHES / "quick.py"), "--smoke", "--dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| measurement | document | subject |" in out
    for needle in ("canonical_bytes", "legacy canonical_dump", "dumps", "json.dumps",
                   "read_json", "write_json", "floor"):
        assert needle in out, needle
    assert "bars pass" in out
    # the temp directory it used is cleaned up
    assert list(tmp_path.iterdir()) == []


def test_floor_program_compiles_and_runs(tmp_path):
    import quick

    samples = quick.floor_samples(str(tmp_path / "f.json"), 100, 3, durable=False)
    assert len(samples) == 3 and all(s > 0 for s in samples)
    assert (tmp_path / "f.json").stat().st_size == 100
    assert (tmp_path / "f.lock").exists()


def test_lock_wait_smoke_prints_both_tables():
    proc = subprocess.run([sys.executable, str(BENCHES / "lock_wait.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| implementation | wake p50 |" in out and "| implementation | workers |" in out
    for needle in ("| atomicjson |", "| legacy (100 ms poll) |", "16 proc x 1 thr",
                   "1 proc x 16 thr", "4 proc x 4 thr"):
        assert needle in out, needle
