"""Reference implementation of the LEGACY pure-Python JSON helpers (the test oracle).

This module mirrors the helpers of the training pipeline that atomicjson replaces, exactly as
issue 2 ("The core") and issue 3 ("Drop-in for the whole legacy surface") describe them,
including their quirks.  It is deliberately plain Python built on the standard ``json`` module
so that differential tests and benchmarks can compare atomicjson against it byte for byte.

Do not "fix" anything here: the point is to reproduce what the legacy code does today, even
where that is surprising.  Some of the surprises (all checked in ``test_oracle.py``):

* The first pass sorts top-level ``set`` elements by ``str()`` (``{10, 9}`` -> ``[10, 9]``),
  but ``frozenset`` and any set inside a dataclass only reach the second pass, which sorts the
  sanitized elements naturally (``frozenset({10, 9})`` -> ``[9, 10]``) and raises ``TypeError``
  for elements that do not compare.
* Dict keys are sorted by their raw value (``TypeError`` for mixed key types such as
  ``{1: 'a', '1': 'b'}``) and then replaced by ``str(key)``: ``True`` -> ``"True"``,
  ``None`` -> ``"None"``, a ``Timestamp`` key -> ``"2024-01-02 03:04:05"`` (space, not ``T``),
  a plain ``Enum`` key -> ``"Color.RED"``.  Two distinct keys with the same ``str()`` collapse
  silently into one, the last in sorted order winning.
* ``Enum`` members become their ``.value`` without further recursion inside the pass that
  converts them; dataclasses are untouched by the first pass.

Public names follow the legacy ones (see issue 3, ``atomicjson.compat``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Any

try:  # the legacy helpers only know about Timestamps when pandas is importable
    import pandas as _pd
except ImportError:  # pragma: no cover - pandas is installed in the test environment
    _pd = None

__all__ = [
    "telemetry_sanitize",
    "artifact_sanitize",
    "sanitize",
    "sanitize_for_json",
    "_sanitize_for_json",
    "canonical_dump",
    "canonical_json",
    "lock_path_for",
    "legacy_lock",
    "lock_is_free",
    "write_atomic_json",
    "_write_atomic_json",
    "write_atomic_json_with_lock",
    "_write_atomic_json_with_lock",
    "write_json_dump_with_lock",
    "json_dump_bytes",
    "read_atomic_json",
    "LOCK_POLL_INTERVAL",
]

#: The legacy lock waiter sleeps this long between two ``flock(LOCK_EX | LOCK_NB)`` attempts.
LOCK_POLL_INTERVAL = 0.1


def _is_timestamp(obj) -> bool:
    return _pd is not None and isinstance(obj, _pd.Timestamp)


def _sorted_items(d: "dict[Any, Any]"):
    # Sorting by the raw key: mixed key types raise TypeError, as in the legacy code.
    return sorted(d.items(), key=lambda kv: kv[0])


# --------------------------------------------------------------------------------------------
# Step 1: the telemetry sanitizer (first pass)
# --------------------------------------------------------------------------------------------
def telemetry_sanitize(obj):
    """First pass, recursive; the rules are tried in this order."""
    if _is_timestamp(obj):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value  # not recursed further in this pass
    if isinstance(obj, dict):
        return {str(k): telemetry_sanitize(v) for k, v in _sorted_items(obj)}
    if isinstance(obj, (list, tuple)):
        return [telemetry_sanitize(v) for v in obj]
    if isinstance(obj, set):  # a frozenset is not a set: it falls through unchanged
        return [telemetry_sanitize(v) for v in sorted(obj, key=str)]
    return obj


# The legacy module exported the first pass under these names.
sanitize_for_json = telemetry_sanitize
_sanitize_for_json = telemetry_sanitize


# --------------------------------------------------------------------------------------------
# Step 2: the artifact sanitizer (second pass)
# --------------------------------------------------------------------------------------------
def artifact_sanitize(obj):
    """Second pass, recursive; the first matching rule wins."""
    if obj is None:
        return None
    if _is_timestamp(obj):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value  # not recursed
    if isinstance(obj, Path):
        return str(obj)
    if type(obj).__module__.startswith("numpy"):
        if getattr(obj, "ndim", 0) > 0:
            return artifact_sanitize(obj.tolist())
        return artifact_sanitize(obj.item())
    if isinstance(obj, dict):
        return {str(k): artifact_sanitize(v) for k, v in _sorted_items(obj)}
    if isinstance(obj, (list, tuple)):
        return [artifact_sanitize(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted([artifact_sanitize(v) for v in obj])
    if hasattr(obj, "__dataclass_fields__"):
        return artifact_sanitize(dataclasses.asdict(obj))
    if type(obj).__name__ == "Decimal":
        return str(obj)
    return obj


def sanitize(obj):
    """Both passes, as the locked writer applies them (what ``atomicjson.sanitize`` returns)."""
    return artifact_sanitize(telemetry_sanitize(obj))


# --------------------------------------------------------------------------------------------
# Step 3: the dump
# --------------------------------------------------------------------------------------------
def _dump_sanitized(sanitized) -> bytes:
    text = json.dumps(
        sanitized,
        sort_keys=True,
        separators=(",", ": "),
        ensure_ascii=False,
        indent=2,
    )
    return (text + "\n").encode("utf-8")


def canonical_dump(obj) -> bytes:
    """The bytes the locked writer puts on disk: both passes, canonical dump, trailing newline."""
    return _dump_sanitized(sanitize(obj))


def canonical_json(obj, indent=None) -> str:
    """Second pass only, compact (or indented) sorted JSON, no trailing newline."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(
        artifact_sanitize(obj),
        sort_keys=True,
        ensure_ascii=False,
        separators=separators,
        indent=indent,
    )


# --------------------------------------------------------------------------------------------
# Step 4: the lock
# --------------------------------------------------------------------------------------------
def lock_path_for(file_path) -> Path:
    """The sidecar lock file: pathlib's ``with_suffix('.lock')`` (``a.tar.gz`` -> ``a.tar.lock``)."""
    return Path(file_path).with_suffix(".lock")


def lock_is_free(file_path) -> bool:
    """Whether a legacy writer would get the sidecar flock of `file_path` at once (a new open
    file description conflicts with any holder, this process's own locks included)."""
    lock_path = lock_path_for(file_path)
    if not lock_path.exists():
        return True
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return True


@contextlib.contextmanager
def legacy_lock(lock_path, timeout=30.0):
    """Hold the legacy lock: ``flock(LOCK_EX | LOCK_NB)`` polled every 100 ms until ``timeout``.

    The lock file is opened with ``open(path, 'w')`` (created, truncated) and never deleted.
    On timeout an ``IOError`` is raised.
    """
    lock_file = open(lock_path, "w")
    try:
        start = time.time()
        while True:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.time() - start >= timeout:
                    raise IOError(
                        f"Could not acquire lock on {lock_path} within {timeout} seconds"
                    ) from None
                time.sleep(LOCK_POLL_INTERVAL)
        try:
            yield lock_file
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
    finally:
        lock_file.close()


# --------------------------------------------------------------------------------------------
# Step 5: the atomic write
# --------------------------------------------------------------------------------------------
def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_bytes(file_path, payload: bytes) -> None:
    """Temp file in the same directory, write, fsync, os.replace, fsync of the directory."""
    target = Path(file_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(target.parent)


def write_atomic_json(file_path, data, default=None) -> None:
    """The shared utility: second pass only, canonical dump, atomic durable write, no lock.

    ``default`` is accepted and ignored, as in the legacy helper.
    """
    payload = _dump_sanitized(artifact_sanitize(data))
    _atomic_write_bytes(file_path, payload)


_write_atomic_json = write_atomic_json


def write_atomic_json_with_lock(file_path, data, lock_timeout=30.0) -> None:
    """Both passes, canonical dump, sidecar lock, atomic write.

    Every failure (bad data, lock timeout, OS error) is re-raised as
    ``IOError(f"Failed to write locked JSON to {file_path}: {e}")``.
    """
    try:
        payload = canonical_dump(data)
        lock_path = lock_path_for(file_path)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with legacy_lock(lock_path, lock_timeout):
            _atomic_write_bytes(file_path, payload)
    except Exception as e:
        raise IOError(f"Failed to write locked JSON to {file_path}: {e}") from e


_write_atomic_json_with_lock = write_atomic_json_with_lock


def write_json_dump_with_lock(file_path, data, lock_timeout=30.0) -> None:
    """Training-snapshot style: no sanitizing, ``json.dump(data, f, indent=2, default=str)``.

    Insertion order, ASCII escapes, no trailing newline; same lock and atomic write.
    """
    try:
        lock_path = lock_path_for(file_path)
        target = Path(file_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with legacy_lock(lock_path, lock_timeout):
            fd, tmp_name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
            )
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=2, default=str)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp_name, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
                raise
            _fsync_directory(target.parent)
    except Exception as e:
        raise IOError(f"Failed to write locked JSON to {file_path}: {e}") from e


def json_dump_bytes(data) -> bytes:
    """The exact bytes ``write_json_dump_with_lock`` writes for ``data``."""
    return json.dumps(data, indent=2, default=str).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_atomic_json(file_path):
    """The parsed document, or ``None`` when the file is missing, unreadable or invalid."""
    try:
        with open(file_path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
