"""atomicjson: canonical JSON files written atomically under an exclusive inter-process lock.

A drop-in for the pure-Python ``_write_atomic_json_with_lock`` family of helpers: the same
bytes on disk, the same ``.lock`` sidecar (``Path(path).with_suffix('.lock')`` with
``flock``), errors that ``except IOError`` still catches; with a Rust core that serializes
with the GIL held and releases it for the lock wait, the write, the fsyncs and the rename.

Guarantees of every write:

* atomic: a reader sees the old file or the new one, never a mix or a truncated file;
* exclusive: writers of one path (processes, threads, legacy helpers) never interleave;
* durable (``durable=True``, the default): once the call returns, the new file survives a
  power cut (the file and its directory are fsynced).
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, List, Literal, Optional, Tuple, Union

from . import _core
from ._errors import (
    AtomicJsonError,
    CircularReferenceError,
    InvalidDataError,
    JSONDecodeError,
    KeyCollisionError,
    LockTimeoutError,
    LockUnsupportedError,
    NestingTooDeepError,
    SerializationError,
    UnsupportedTypeError,
)

try:
    from importlib.metadata import version as _version

    __version__ = _version("atomicjson")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "MAX_DEPTH",
    "write_json",
    "write_bytes",
    "canonical_bytes",
    "sanitize",
    "lock",
    "FileLock",
    "lock_path_for",
    "set_lock_wait_warning",
    "lock_holders",
    "LockMode",
    "cleanup_temp_files",
    "read_json",
    "loads",
    "dumps",
    "write_dumps",
    "update_json",
    "locked_json",
    "AtomicJsonError",
    "LockTimeoutError",
    "LockUnsupportedError",
    "SerializationError",
    "UnsupportedTypeError",
    "InvalidDataError",
    "CircularReferenceError",
    "NestingTooDeepError",
    "KeyCollisionError",
    "JSONDecodeError",
]

PathArg = Union[str, "os.PathLike[str]"]

#: The kind of lock on the ``.lock`` file: ``"flock"`` (default) or ``"posix"`` (OFD locks).
LockMode = Literal["flock", "posix"]

#: Deepest nesting written; deeper documents raise NestingTooDeepError.
MAX_DEPTH: int = _core.MAX_DEPTH

FileLock = _core.FileLock


def write_json(path: PathArg, data: Any, *, lock_timeout: Optional[float] = 30.0,
               durable: bool = True, remove_lock_file: bool = False,
               lock_mode: LockMode = "flock") -> None:
    """Write ``data`` to ``path`` as canonical JSON, atomically, under the exclusive lock.

    The bytes are exactly what the legacy ``_write_atomic_json_with_lock`` wrote: both
    sanitizing passes (pandas Timestamps and datetimes to ISO strings, Enums to values, sets
    to sorted lists, numpy to Python, paths to str, dataclasses to dicts, Decimals to str),
    then ``json.dumps(sort_keys=True, indent=2, ensure_ascii=False)`` and a newline.

    The lock is ``flock`` on ``Path(path).with_suffix('.lock')``, the legacy protocol. The temp
    file is written (and fsynced) before the lock is taken; the lock is held for the rename
    over ``path``, so writers replace it in the order they get the lock and never while another
    holder has it. ``lock_timeout=None`` waits forever, ``0`` tries once; on timeout a
    :class:`LockTimeoutError` names the processes holding the lock.
    ``durable=False`` skips the fsyncs of the file and its directory: still atomic, not
    guaranteed to survive a power cut. Missing parent directories are created.

    Raises :class:`SerializationError` (a ``TypeError`` or ``ValueError`` too) for data that
    cannot be written, naming where it sits (``$.folds[3].scores``); the file is then untouched.

    ``remove_lock_file=True`` deletes the ``.lock`` file on release, safely for writers that
    all use atomicjson (see :func:`lock`); keep the default where legacy writers share the file.

    ``lock_mode="posix"`` locks the same ``.lock`` file with open-file-description record locks
    (``fcntl(F_OFD_SETLKW)``) instead of ``flock``, for shared file systems whose ``flock`` is
    node-local (see :func:`lock`). Every process writing the file must use the same mode.
    Any other value raises ``ValueError``.
    """
    _core.write_json(path, data, lock_timeout=lock_timeout, durable=durable,
                     remove_lock_file=remove_lock_file, lock_mode=lock_mode)


def write_bytes(path: PathArg, payload: Union[bytes, bytearray], *,
                lock_timeout: Optional[float] = 30.0, durable: bool = True,
                remove_lock_file: bool = False, lock_mode: LockMode = "flock") -> None:
    """Replace ``path`` with ``payload`` under the same lock and atomic write as
    :func:`write_json`, for bytes the caller already has."""
    _core.write_bytes(path, payload, lock_timeout=lock_timeout, durable=durable,
                      remove_lock_file=remove_lock_file, lock_mode=lock_mode)


def canonical_bytes(data: Any) -> bytes:
    """The exact bytes :func:`write_json` writes for ``data`` (UTF-8, trailing newline)."""
    return _core.canonical_bytes(data)


def sanitize(data: Any) -> Any:
    """The sanitized value of ``data`` (both legacy passes), for callers who hash or compare
    it: dicts with sorted ``str`` keys, lists, and str/int/float/bool/None leaves."""
    return _core.sanitize(data)


def lock(path: PathArg, *, timeout: Optional[float] = 30.0,
         remove_lock_file: bool = False, lock_mode: LockMode = "flock") -> FileLock:
    """A context manager holding the exclusive sidecar lock of ``path`` (the same ``.lock`` file
    the writers use), to guard other work with the same protocol::

        with atomicjson.lock("index.parquet"):
            ...  # read-modify-write the index

    Re-entrant within one thread: ``write_json`` on the same path inside the block does not
    deadlock. ``timeout=None`` waits forever, ``0`` tries once.

    Lock files are kept by default: deleting one naively lets a waiter lock the deleted file
    while a newcomer locks a new one. ``remove_lock_file=True`` deletes it safely on release:
    after acquiring, the locked file is compared (device, inode) with what the path names now,
    and the lock is taken again if the file was removed or replaced meanwhile; the file is
    unlinked while still held. Use it only where every process touching the file uses
    atomicjson (legacy helpers and ``flock(1)`` do not re-check), e.g. many short-lived output
    directories that should not fill with ``.lock`` files.

    ``lock_mode`` picks the kind of lock on the ``.lock`` file: ``"flock"`` (the default, the
    legacy protocol, what ``flock(1)`` uses) or ``"posix"``: an exclusive open-file-description
    record lock over the whole file (``fcntl(F_OFD_SETLK/F_OFD_SETLKW)``), which NFS servers and
    cluster file systems (GPFS, Lustre) arbitrate between machines where ``flock`` may be
    node-local. The two kinds do not exclude each other, so every process sharing a file must
    use the same mode. ``"posix"`` needs write access to the lock file and also excludes classic
    ``fcntl.lockf`` locks. Timeouts, re-entrancy, fork and asyncio behave the same in both
    modes. Any other value raises ``ValueError``.
    """
    return _core.FileLock(path, timeout=timeout, remove_lock_file=remove_lock_file,
                          lock_mode=lock_mode)


def set_lock_wait_warning(seconds: Optional[float]) -> None:
    """Log one warning on the ``atomicjson`` logger, naming the holders, when a lock wait lasts
    longer than ``seconds`` (5 by default; ``None`` turns it off), so that a stuck pipeline
    explains itself before its timeout."""
    _core.set_lock_wait_warning(seconds)


def lock_path_for(path: PathArg) -> str:
    """The lock file of ``path``: ``Path(path).with_suffix('.lock')``, as the legacy did."""
    return os.fspath(_core.lock_path_for(path))


def lock_holders(path: PathArg, *,
                 lock_mode: LockMode = "flock") -> Optional[List[Tuple[int, Optional[str]]]]:
    """The processes holding the lock of ``path`` now, as ``(pid, command line)`` pairs, or
    ``None`` where the system cannot tell (no ``/proc/locks``).

    ``lock_mode="posix"`` asks about the OFD lock instead of the ``flock``. ``/proc/locks``
    shows OFD locks without a pid, so their holders are found by the ``lock:`` lines of
    ``/proc/<pid>/fdinfo`` (other users' processes only as root); where ``/proc`` cannot
    answer, the holder's record in the lock file (pid, host, program, time) is returned, its
    "command" saying "recorded by the holder"."""
    holders, _ = _core.lock_holders(_core.lock_path_for(path), lock_mode)
    return holders


def cleanup_temp_files(directory: PathArg, *, older_than: float = 3600.0) -> List[str]:
    """Remove this library's temp files directly in ``directory`` (not in subdirectories;
    ``atomicjson clean`` walks them) that are older than ``older_than`` seconds and that no live
    writer owns, i.e. files left behind by writers killed mid-write. Temp files are named
    ``.{name}.{16 hex digits}.tmp``; a live writer holds an ``flock`` on its temp file, so a
    file whose lock can be taken is an orphan. Returns the removed paths."""
    return [os.fspath(p) for p in _core.cleanup_temp_files(directory, older_than)]


# In Rust with its keywords (``_core.dumps``): a Python wrapper's frame, with its eight
# keyword defaults, cost about as much as encoding a small document.
dumps = _core.dumps


def write_dumps(path: PathArg, obj: Any, *, lock_timeout: Optional[float] = 30.0,
                durable: bool = True, lock_mode: LockMode = "flock",
                skipkeys: bool = False, ensure_ascii: bool = True,
                check_circular: bool = True, allow_nan: bool = True,
                indent: Union[None, int, str] = None,
                separators: Optional[Tuple[str, str]] = None,
                default: Optional[Callable[[Any], Any]] = None, sort_keys: bool = False) -> None:
    """Write what :func:`dumps` returns for these keywords to ``path`` (UTF-8), with the lock
    and atomic replacement of :func:`write_json`, without building a Python string."""
    encoding = _core.Encoding(skipkeys=skipkeys, ensure_ascii=ensure_ascii,
                              check_circular=check_circular, allow_nan=allow_nan, indent=indent,
                              separators=separators, default=default, sort_keys=sort_keys)
    encoding.write(path, obj, lock_timeout=lock_timeout, durable=durable, lock_mode=lock_mode)


def read_json(path: PathArg) -> Any:
    """Read and parse the JSON file at ``path``, returning what ``json.loads`` returns.

    Raises :class:`JSONDecodeError` (also a ``json.JSONDecodeError``) naming the file, line and
    column for a malformed file, and a ``FileNotFoundError`` (an :class:`AtomicJsonError`) when
    it is missing. Parsing runs with the GIL released.
    """
    return _core.read_json(path)


def _current_or_default(path: PathArg, default: Any) -> Any:
    try:
        return _core.read_json(path)
    except FileNotFoundError:
        # A fresh copy, so that a caller mutating it never changes its own default object.
        return copy.deepcopy(default)


def update_json(path: PathArg, fn: Callable[[Any], Any], *, default: Any = None,
                lock_timeout: Optional[float] = 30.0, durable: bool = True,
                remove_lock_file: bool = False, lock_mode: LockMode = "flock") -> Any:
    """Read-modify-write without lost updates: hold the lock of ``path`` across reading the
    document, ``fn(current)`` and the atomic write of what ``fn`` returns (in canonical form).

    ``fn`` gets ``default`` (a deep copy of it) when the file does not exist. If ``fn`` raises,
    nothing is written, the lock is released and the exception propagates. Returns the value
    ``fn`` returned::

        atomicjson.update_json("snapshot_index.json",
                               lambda index: {**index, run_id: entry}, default={})

    ``lock_mode`` as for :func:`lock`.
    """
    with lock(path, timeout=lock_timeout, remove_lock_file=remove_lock_file,
              lock_mode=lock_mode):
        new = fn(_current_or_default(path, default))
        _core.write_json(path, new, lock_timeout=lock_timeout, durable=durable,
                         lock_mode=lock_mode)
        return new


class locked_json:
    """A context manager for read-modify-write: holds the lock of ``path``, yields the current
    document (a deep copy of ``default`` when the file does not exist) and, when the block
    ends normally, writes it back atomically; when the block raises, writes nothing.

    Mutate the yielded document, or replace it by assigning ``.data``::

        with atomicjson.locked_json("metrics.json", default={}) as doc:
            doc["runs"] = doc.get("runs", 0) + 1

        cm = atomicjson.locked_json("index.json", default=[])
        with cm as entries:
            cm.data = [e for e in entries if e["keep"]]

    ``lock_mode`` as for :func:`lock`.
    """

    def __init__(self, path: PathArg, *, default: Any = None,
                 lock_timeout: Optional[float] = 30.0, durable: bool = True,
                 remove_lock_file: bool = False, lock_mode: LockMode = "flock") -> None:
        self._path = path
        self._default = default
        self._lock = _core.FileLock(path, timeout=lock_timeout,
                                    remove_lock_file=remove_lock_file, lock_mode=lock_mode)
        self._lock_mode = lock_mode
        self._lock_timeout = lock_timeout
        self._durable = durable
        #: The document written back on exit; assign to replace it.
        self.data: Any = None

    def __enter__(self) -> Any:
        self._lock.acquire()
        try:
            self.data = _current_or_default(self._path, self._default)
        except BaseException:
            self._lock.release()
            raise
        return self.data

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                _core.write_json(self._path, self.data, lock_timeout=self._lock_timeout,
                                 durable=self._durable, lock_mode=self._lock_mode)
        finally:
            self._lock.release()


def loads(data: Union[str, bytes, bytearray]) -> Any:
    """Parse JSON text the way ``json.loads`` does (errors as :class:`JSONDecodeError`)."""
    return _core.loads(data)


if hasattr(os, "register_at_fork"):
    # A forked child shares the parent's lock descriptors (and so its flock and OFD locks):
    # drop the child's copies so the parent's release really releases.
    os.register_at_fork(after_in_child=_core._forget_locks_after_fork)
