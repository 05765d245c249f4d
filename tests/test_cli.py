"""The command line, driven as a user drives it: `python -m atomicjson ...` in a subprocess, with
real files, real stdin and real lock-holding processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Union

import pytest

import atomicjson

REPO = Path(__file__).resolve().parents[1]
HAVE_PROC_LOCKS = os.path.exists("/proc/locks")
COMMANDS = ["write", "update", "cat", "locks", "clean", "check", "demo", "bench"]


Arg = Union[str, "os.PathLike[str]"]
HoldLock = Callable[[Arg], ContextManager[Any]]


def cli(*args: Arg, input: Optional[str] = None, cwd: Optional[Path] = None,
        timeout: float = 30) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "atomicjson", *map(str, args)], input=input,
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def assert_one_line_error(result: "subprocess.CompletedProcess[str]", code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("atomicjson: error: "), result.stderr
    return lines[0]


def snapshot(directory: Path) -> Dict[str, bytes]:
    """Every file under `directory` with its bytes: to show that nothing changed."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ general


def test_help_for_every_command() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
    for command in COMMANDS:
        result = cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: atomicjson {command}" in result.stdout
        assert "example:" in result.stdout and f"atomicjson {command}" in result.stdout


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"atomicjson {atomicjson.__version__}"


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["write"],
    ["write", "x.json", "--timeout", "soon"],
    ["write", "x.json", "--timeout", "-1"],
    ["update", "x.json"],
    ["update", "x.json", "--set", "a=not json"],
    ["update", "x.json", "--set", "novalue"],
    ["update", "x.json", "--set", "a..b=1"],
    ["clean", ".", "--older-than", "soon"],
    ["demo", "--processes", "0"],
])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: List[str]) -> None:
    result = cli(*args, cwd=tmp_path, input="{}")
    assert_one_line_error(result, code=2)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------- write


def test_write_canonical_from_stdin(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "7" / "metrics.json"  # parent directories are created
    text = '{"loss": 0.25, "epoch": 3, "tags": ["a", "é"], "big": 123456789012345678901234}'
    result = cli("write", target, input=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert target.read_bytes() == atomicjson.canonical_bytes(json.loads(text))
    assert json.loads(target.read_text("utf-8"))["big"] == 123456789012345678901234


def test_write_plain_keeps_the_input_bytes(tmp_path: Path) -> None:
    target = tmp_path / "plain.json"
    text = '{"z": 1,   "a": [1,2],\n "nan": NaN}\n'
    result = cli("write", "--plain", "--no-fsync", "--timeout", "5", target, input=text)
    assert result.returncode == 0, result.stderr
    assert target.read_text("utf-8") == text


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text('{"old": true}')
    assert cli("write", target, input='{"new": 1}').returncode == 0
    assert json.loads(target.read_text()) == {"new": 1}


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("text", ['{"a": 1,', "", "{'single': 1}", '{"a": 1} trailing'])
def test_write_invalid_json_leaves_target_untouched(tmp_path: Path, plain: bool,
                                                    text: str) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b'{"keep": "me"}\n')
    before = snapshot(tmp_path)
    result = cli("write", *(["--plain"] if plain else []), target, input=text)
    line = assert_one_line_error(result)
    assert "not valid JSON" in line and re.search(r"line \d+ column \d+", line), line
    assert snapshot(tmp_path) == before  # no change, no temp file, no lock file


def test_write_lock_timeout_names_the_holder(tmp_path: Path, hold_lock: HoldLock) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b'{"keep": "me"}\n')
    with hold_lock(tmp_path / "a.lock") as holder:
        before = snapshot(tmp_path)
        start = time.monotonic()
        result = cli("write", "--timeout", "0.2", target, input='{"new": 1}', timeout=20)
        elapsed = time.monotonic() - start
        line = assert_one_line_error(result)
        assert snapshot(tmp_path) == before
    assert elapsed < 10
    assert "a.lock" in line
    if HAVE_PROC_LOCKS:
        assert re.search(rf"\b{holder.pid}\b", line), line
    # Once the holder is gone the same command succeeds.
    assert cli("write", "--timeout", "0.2", target, input='{"new": 1}').returncode == 0
    assert json.loads(target.read_text()) == {"new": 1}


# ------------------------------------------------------------------------------------- update


def test_update_set_and_delete(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text(json.dumps({"runs": {"41": {"status": "failed"}, "40": {}},
                                  "folds": [1, 2, 3], "name": "x"}))
    result = cli("update", target,
                 "--set", 'runs.42.status="done"',   # creates runs.42
                 "--set", "runs.42.metrics={\"auc\": 0.9}",
                 "--set", "new.deeply.nested=[1, null]",  # creates new and new.deeply
                 "--set", "folds.1=20",                     # list index
                 "--set", "folds.3=4",                      # the length appends
                 "--set", "folds.-1=40",                    # negative index
                 "--delete", "runs.41",
                 "--delete", "folds.0",
                 "--set", "dotted\\.key=true",              # a literal dot in a key
                 "--delete", "name")
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text()) == {
        "runs": {"40": {}, "42": {"status": "done", "metrics": {"auc": 0.9}}},
        "new": {"deeply": {"nested": [1, None]}},
        "folds": [20, 3, 40],
        "dotted.key": True,
    }
    assert target.read_bytes() == atomicjson.canonical_bytes(json.loads(target.read_text()))


def test_update_creates_a_missing_file_and_prints(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "new.json"
    result = cli("update", target, "--set", "a.b=1", "--set", "c=\"x\"", "--print")
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text()) == {"a": {"b": 1}, "c": "x"}
    assert json.loads(result.stdout) == {"a": {"b": 1}, "c": "x"}


def test_update_operations_apply_in_order(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    result = cli("update", target, "--set", "a=1", "--delete", "a", "--set", "b=2")
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text()) == {"b": 2}


@pytest.mark.parametrize("ops", [
    ["--delete", "missing"],
    ["--delete", "runs.missing.x"],
    ["--set", "name.sub=1"],           # cannot descend into a string
    ["--set", "folds.9=1"],            # index out of range
    ["--set", "folds.x=1"],            # not an index
    ["--set", "ok=1", "--delete", "nope"],  # a later failure undoes the earlier change
])
def test_update_failures_change_nothing(tmp_path: Path, ops: List[str]) -> None:
    target = tmp_path / "a.json"
    target.write_text('{"runs": {}, "folds": [1], "name": "x"}')
    before = snapshot(tmp_path)
    result = cli("update", target, *ops)
    assert_one_line_error(result)
    after = snapshot(tmp_path)
    after.pop("a.lock", None)  # the sidecar lock file may have been created; never the target
    assert after == before


def test_update_refuses_a_malformed_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text('{"a": 1,\n  "b": }')
    result = cli("update", target, "--set", "c=1")
    line = assert_one_line_error(result)
    assert "line 2 column" in line, line
    assert target.read_text() == '{"a": 1,\n  "b": }'


# ---------------------------------------------------------------------------------------- cat


def test_cat_pretty_and_compact(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text('{"b": [1, 2], "a": {"é": null}}')
    pretty = cli("cat", target)
    assert pretty.returncode == 0, pretty.stderr
    assert pretty.stdout.encode("utf-8") == atomicjson.canonical_bytes(
        {"b": [1, 2], "a": {"é": None}})
    compact = cli("cat", "--compact", target)
    assert compact.returncode == 0
    assert compact.stdout == '{"a":{"é":null},"b":[1,2]}\n'
    from_stdin = cli("cat", "-", input='[1,  {"x": 2}]')
    assert from_stdin.stdout == "[\n  1,\n  {\n    \"x\": 2\n  }\n]\n"


def test_cat_errors(tmp_path: Path) -> None:
    line = assert_one_line_error(cli("cat", tmp_path / "missing.json"))
    assert "missing.json" in line
    bad = tmp_path / "bad.json"
    bad.write_text('[1, 2,\n  3,, 4]')
    line = assert_one_line_error(cli("cat", bad))
    assert "bad.json" in line and "line 2 column 5" in line, line


# -------------------------------------------------------------------------------------- locks


def test_locks_shows_the_holder(tmp_path: Path, hold_lock: HoldLock) -> None:
    (tmp_path / "runs").mkdir()
    lock_file = tmp_path / "runs" / "metrics.lock"
    (tmp_path / "free.lock").touch()
    with hold_lock(lock_file) as holder:
        result = cli("locks", tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(lock_file) in result.stdout
    assert "free.lock" not in result.stdout
    assert "held" in result.stdout
    if HAVE_PROC_LOCKS:
        assert re.search(rf"pid {holder.pid}\b", result.stdout), result.stdout
        assert "up " in result.stdout and "/proc/<pid>/stat" in result.stdout


def test_locks_with_nothing_held(tmp_path: Path) -> None:
    (tmp_path / "a.lock").touch()
    result = cli("locks", tmp_path)
    assert result.returncode == 0
    assert "no held locks" in result.stdout
    everything = cli("locks", "--all", tmp_path)
    assert "a.lock: free" in everything.stdout
    assert_one_line_error(cli("locks", tmp_path / "nope"))


# -------------------------------------------------------------------------------------- clean


def make_temp_files(directory: Path) -> Dict[str, Path]:
    old = time.time() - 2 * 3600
    files = {
        "old": directory / ".metrics.json.0123456789abcdef.tmp",
        "old_nested": directory / "sub" / ".index.json.fedcba9876543210.tmp",
        "new": directory / ".metrics.json.00000000deadbeef.tmp",
        "unrelated_old": directory / "notes.tmp",
        "not_ours_old": directory / ".metrics.json.NOTHEX.tmp",
        "target": directory / "metrics.json",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    for key in ("old", "old_nested", "unrelated_old", "not_ours_old"):
        os.utime(files[key], (old, old))
    return files


def test_clean_dry_run_lists_but_keeps(tmp_path: Path) -> None:
    files = make_temp_files(tmp_path)
    before = snapshot(tmp_path)
    result = cli("clean", tmp_path, "--older-than", "1h", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert str(files["old"]) in result.stdout
    assert str(files["old_nested"]) in result.stdout
    assert str(files["new"]) not in result.stdout
    assert "notes.tmp" not in result.stdout and "NOTHEX" not in result.stdout
    assert snapshot(tmp_path) == before
    later = cli("clean", tmp_path, "--older-than", "3h", "--dry-run")
    assert ".tmp" not in later.stdout.replace("temp file", "")
    assert "0 temp file(s)" in later.stdout


def test_clean_removes_old_orphans_only(tmp_path: Path, hold_lock: HoldLock) -> None:
    files = make_temp_files(tmp_path)
    # A writer still busy with its temp file holds an flock on it: the file must survive.
    live = tmp_path / ".slow.json.abcdefabcdef0123.tmp"
    live.write_text("{")
    old = time.time() - 2 * 3600
    os.utime(live, (old, old))
    with hold_lock(live):
        result = cli("clean", tmp_path, "--older-than", "30m")
    assert result.returncode == 0, result.stderr
    assert not files["old"].exists() and not files["old_nested"].exists()
    for key in ("new", "unrelated_old", "not_ours_old", "target"):
        assert files[key].exists(), key
    assert live.exists()
    assert "removed 2 temp file(s)" in result.stdout


def test_clean_missing_directory() -> None:
    assert_one_line_error(cli("clean", "/nonexistent/atomicjson-test", "--dry-run"))


# -------------------------------------------------------------------------------------- check


def test_check_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"a": 1}')
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "b.json").write_text("[NaN, Infinity]")
    (tmp_path / "not-json.txt").write_text("{{{")
    good = cli("check", tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "all 2 JSON file(s)" in good.stdout

    (tmp_path / "deep" / "truncated.json").write_text('{"a": [1,\n  2')
    (tmp_path / "empty.json").write_text("")
    bad = cli("check", tmp_path)
    assert bad.returncode == 1
    out = bad.stdout
    assert re.search(r"truncated\.json: line 2 column \d+: ", out), out
    assert "empty.json: line 1 column 1: " in out
    assert "a.json:" not in out and "b.json" not in out
    assert "2 of 4 JSON file(s)" in out

    assert cli("check", tmp_path / "a.json").returncode == 0
    assert_one_line_error(cli("check", tmp_path / "nope"))


# --------------------------------------------------------------------------------------- demo


def test_demo_reports_no_lost_updates_for_atomicjson() -> None:
    result = cli("demo", "--processes", "4", "--seconds", "2", "--json", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    a = report["atomicjson"]
    assert a["ok"] and a["lost_updates"] == 0 and a["updates"] > 0
    assert a["final_count"] == a["updates"] and a["tallies_match"]
    assert a["reader_invalid"] == 0 and a["reader_reads"] > 0 and a["final_valid"]
    assert a["throughput"] > 0
    naive = report["naive"]
    assert naive["updates"] >= 0 and naive["reader_reads"] > 0


def test_demo_human_report_with_rounds(tmp_path: Path) -> None:
    result = cli("demo", "--processes", "2", "--rounds", "25", "--dir", tmp_path, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^updates done\s+50\s", out, re.M), out
    assert re.search(r"^lost updates\s+0\s", out, re.M), out
    assert re.search(r"^atomicjson: +OK", out, re.M), out
    assert json.loads((tmp_path / "counter_atomicjson.json").read_text())["count"] == 50


# -------------------------------------------------------------------------------------- bench


def test_bench(tmp_path: Path) -> None:
    if (REPO / "benches" / "quick.py").exists():
        # The real table takes its time: its --smoke mode (passed through) runs in seconds. Run
        # from the checkout, as a user would: an installed (non-editable) package finds the
        # script through the working directory.
        result = cli("bench", "--smoke", cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "benchmark" in result.stdout.lower() and "|" in result.stdout, result.stdout
        return
    missing = cli("bench", cwd=tmp_path)
    line = assert_one_line_error(missing)
    assert "python benches/quick.py" in line
    (tmp_path / "benches").mkdir()
    (tmp_path / "benches" / "quick.py").write_text(
        "import sys\nprint('quick bench', sys.argv[1:])\nsys.exit(3 if '--fail' in sys.argv else 0)\n")
    ran = cli("bench", "--", "--rows", "2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "quick bench ['--rows', '2']"
    assert cli("bench", "--fail", cwd=tmp_path).returncode == 3
