"""Drop-in replacements for the legacy pure-Python JSON helpers, by name and signature.

Change the import, keep the call sites::

    from atomicjson.compat import _write_atomic_json_with_lock, _sanitize_for_json

Every file comes out byte-identical to what the legacy helpers wrote for the inputs they
accepted; the lock is the same ``flock`` on ``Path(file_path).with_suffix('.lock')``, so
processes still running the legacy helpers and processes running these exclude each other.
Failures raise an :class:`atomicjson.AtomicJsonError` (an ``IOError``), whose message starts
``Failed to write locked JSON to {file_path}: `` for the locked writers, as before.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _core, _errors
from . import loads, write_json
from ._errors import AtomicJsonError

__all__ = [
    "write_atomic_json_with_lock",
    "_write_atomic_json_with_lock",
    "write_atomic_json",
    "_write_atomic_json",
    "sanitize_for_json",
    "_sanitize_for_json",
    "canonical_json",
    "read_atomic_json",
    "write_json_dump_with_lock",
]

# The shared utility's dump: second pass only, canonical layout, trailing newline.
_ARTIFACT_FILE = _core.Encoding(rules="artifact", indent=2, separators=(",", ": "),
                                ensure_ascii=False, sort_keys=True, trailing_newline=True)
# json.dump(data, f, indent=2, default=str): insertion order, ASCII escapes, no newline.
_SNAPSHOT_FILE = _core.Encoding(rules="json", indent=2, default=str)
_CANONICAL_TEXT: Dict[Optional[Any], Any] = {}


def _failed_locked_write(file_path: Any, exc: AtomicJsonError) -> AtomicJsonError:
    return _errors._with_prefix(exc, f"Failed to write locked JSON to {file_path}: ")


def write_atomic_json_with_lock(file_path: Any, data: Any, lock_timeout: float = 30.0) -> None:
    """Both sanitizing passes, canonical dump, sidecar lock, atomic durable write."""
    try:
        write_json(file_path, data, lock_timeout=lock_timeout)
    except AtomicJsonError as e:
        raise _failed_locked_write(file_path, e) from e


_write_atomic_json_with_lock = write_atomic_json_with_lock


def write_atomic_json(file_path: Any, data: Any, default: Any = None) -> None:
    """The shared utility: second sanitizing pass only, canonical dump with a trailing newline,
    atomic durable write, no lock. ``default`` is accepted and ignored, as it always was."""
    _ARTIFACT_FILE.write(file_path, data, locked=False)


_write_atomic_json = write_atomic_json


def sanitize_for_json(obj: Any) -> Any:
    """The first (telemetry) sanitizing pass alone, returning Python objects: Timestamps to ISO
    strings, Enums to values, dicts with sorted ``str`` keys, tuples to lists, sets to lists
    sorted by ``str``; everything else unchanged."""
    return _core.sanitize(obj, rules="telemetry")


_sanitize_for_json = sanitize_for_json


def canonical_json(obj: Any, *, indent: Optional[int] = None) -> str:
    """Second sanitizing pass, then ``json.dumps(sort_keys=True, ensure_ascii=False)`` with
    separators ``(',', ':')`` (or ``(',', ': ')`` with ``indent``); no trailing newline."""
    encoding = _CANONICAL_TEXT.get(indent)
    if encoding is None:
        separators = (",", ":") if indent is None else (",", ": ")
        encoding = _core.Encoding(rules="artifact", indent=indent, separators=separators,
                                  ensure_ascii=False, sort_keys=True)
        _CANONICAL_TEXT[indent] = encoding
    return encoding.dumps(obj)


def read_atomic_json(file_path: Any) -> Any:
    """The parsed document, or ``None`` when the file is missing, unreadable or malformed.

    Like the legacy helper, the file is read as UTF-8 text: a UTF-8 BOM or a UTF-16 file gives
    ``None`` (``read_json`` would detect those encodings and parse them)."""
    try:
        with open(file_path, "rb") as f:
            text = f.read().decode("utf-8")
        return loads(text)
    except (OSError, ValueError):
        return None


def write_json_dump_with_lock(file_path: Any, data: Any, lock_timeout: float = 30.0) -> None:
    """Training-snapshot style: no sanitizing, the bytes of ``json.dump(data, f, indent=2,
    default=str)`` (insertion order, ASCII escapes, no trailing newline), same lock and
    atomic write."""
    try:
        _SNAPSHOT_FILE.write(file_path, data, lock_timeout=lock_timeout)
    except AtomicJsonError as e:
        raise _failed_locked_write(file_path, e) from e
