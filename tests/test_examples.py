"""Every example in examples/ runs to completion and verifies its own results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(cmd: List[str], tmp_path: Path, **env: str) -> "subprocess.CompletedProcess[str]":
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**os.environ, **env})
    assert result.returncode == 0, f"{cmd}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.mark.parametrize("name", ["pipeline.py", "async_service.py"])
def test_python_example(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    result = run([sys.executable, str(EXAMPLES / name), str(out)], tmp_path)
    assert "verified:" in result.stdout
    assert not list(out.rglob("*.tmp"))  # no temp file left behind


@pytest.mark.skipif(shutil.which("flock") is None or shutil.which("bash") is None,
                    reason="needs bash and flock(1)")
def test_shell_flock_example(tmp_path: Path) -> None:
    result = run(["bash", str(EXAMPLES / "shell_flock.sh"), str(tmp_path / "out")], tmp_path,
                 PYTHON=sys.executable)
    assert "6. verified:" in result.stdout
    assert "refused" in result.stdout
