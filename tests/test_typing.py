"""The stubs are right: mypy --strict passes on the package, the examples and the tests' own
uses of the public API (test helpers may stay unannotated; their bodies are checked)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (pip install '.[test]')")


def _mypy(*args: str) -> None:
    # The repository's pyproject.toml holds the strict configuration.
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_and_examples_pass_mypy_strict() -> None:
    _mypy("python/atomicjson", *[str(p) for p in sorted((REPO / "examples").glob("*.py"))])


def test_tests_use_the_api_as_typed() -> None:
    relaxed: List[str] = ["--allow-untyped-defs", "--allow-incomplete-defs",
                          "--allow-untyped-calls", "--check-untyped-defs", "--warn-unused-ignores"]
    _mypy(*relaxed, "tests")


def test_stubs_cover_the_public_api() -> None:
    import atomicjson

    stub = (REPO / "python" / "atomicjson" / "_core.pyi").read_text()
    core_names = [name for name in dir(atomicjson._core) if not name.startswith("__")]
    missing = [name for name in core_names if f"def {name}(" not in stub
               and f"class {name}" not in stub and f"{name}:" not in stub]
    assert missing == [], f"_core.pyi lacks {missing}"
    for name in atomicjson.__all__:
        assert hasattr(atomicjson, name), name
