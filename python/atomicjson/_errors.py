"""The exceptions of atomicjson.

Every exception the package raises is an :class:`AtomicJsonError`, itself an ``OSError``
(``IOError``), so code written against the legacy helpers' ``except IOError`` keeps working.
Each one is also an instance of the built-in class a Python programmer would expect:
``TimeoutError`` for a lock timeout, ``TypeError``/``ValueError`` for bad data,
``json.JSONDecodeError`` for a malformed file, ``FileNotFoundError``/``PermissionError``/...
for OS errors, which keep their ``errno``.
"""

from __future__ import annotations

import errno as _errno
import json
import os
from typing import Any, Dict, List, Optional, Type

__all__ = [
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


class AtomicJsonError(OSError):
    """Base class of every exception atomicjson raises (an ``OSError``, so ``IOError`` too).

    ``errno``, ``strerror`` and ``filename`` are set where an OS call failed.
    """

    def __init__(self, message: str, errno: Optional[int] = None, filename: Any = None) -> None:
        super().__init__(message)
        if errno is not None:
            self.errno = errno
            self.strerror = os.strerror(errno)
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), str(self), self.errno, self.filename, self.__dict__.copy()))


def _rebuild(cls: Type[AtomicJsonError], message: str, errno: Optional[int], filename: Any,
             attrs: Dict[str, Any]) -> AtomicJsonError:
    exc = cls.__new__(cls, message)
    AtomicJsonError.__init__(exc, message, errno, filename)
    exc.__dict__.update(attrs)
    return exc


class LockTimeoutError(AtomicJsonError, TimeoutError):
    """The lock stayed held by someone else until the timeout ran out.

    Attributes: ``lock_path`` (the ``.lock`` file), ``timeout`` (seconds waited) and
    ``holders``: the pids holding the lock when the wait ended, or ``None`` where the system
    cannot tell (the message then says so).
    """

    lock_path: str
    timeout: float
    holders: Optional[List[int]]


class LockUnsupportedError(AtomicJsonError):
    """The file system does not support the lock: ``flock`` (or ``fcntl`` in posix lock mode)
    answered ``ENOSYS``, ``ENOLCK`` or ``EOPNOTSUPP``. Raised at once, never after a wait."""


class SerializationError(AtomicJsonError):
    """The data cannot be written as JSON. ``location`` says where, e.g. ``$.folds[3].scores``."""

    location: str


class UnsupportedTypeError(SerializationError, TypeError):
    """A value (or, without ``skipkeys``, a dict key) of a type JSON cannot represent."""


class InvalidDataError(SerializationError, ValueError):
    """A value JSON cannot represent: a lone surrogate, NaN with ``allow_nan=False``, ..."""


class CircularReferenceError(InvalidDataError):
    """The document contains itself."""


class NestingTooDeepError(InvalidDataError, RecursionError):
    """The document is nested deeper than ``atomicjson.MAX_DEPTH`` levels."""


class KeyCollisionError(InvalidDataError):
    """Two keys of one dict become the same string (``{1: 'a', '1': 'b'}``)."""


class JSONDecodeError(AtomicJsonError, json.JSONDecodeError):
    """A malformed or truncated JSON document; ``msg``, ``pos``, ``lineno`` and ``colno`` as
    in :class:`json.JSONDecodeError`, and ``filename`` when it came from a file."""

    def __init__(self, message: str, errno: Optional[int] = None, filename: Any = None) -> None:
        AtomicJsonError.__init__(self, message, errno, filename)


def _os_error_class(base: Type[OSError]) -> Type[AtomicJsonError]:
    cls = type(f"AtomicJson{base.__name__}", (AtomicJsonError, base), {
        "__doc__": f"An AtomicJsonError that is also a {base.__name__}.",
        "__module__": __name__,
    })
    return cls


_BY_ERRNO: Dict[int, Type[AtomicJsonError]] = {}
for _base, _codes in (
    (FileNotFoundError, (_errno.ENOENT,)),
    (PermissionError, (_errno.EACCES, _errno.EPERM)),
    (FileExistsError, (_errno.EEXIST,)),
    (IsADirectoryError, (_errno.EISDIR,)),
    (NotADirectoryError, (_errno.ENOTDIR,)),
    (InterruptedError, (_errno.EINTR,)),
):
    _cls = _os_error_class(_base)
    globals()[_cls.__name__] = _cls
    for _code in _codes:
        _BY_ERRNO[_code] = _cls

_UNSUPPORTED_LOCK = {_errno.ENOSYS, _errno.ENOLCK, _errno.EOPNOTSUPP}

_BY_KIND: Dict[str, Type[AtomicJsonError]] = {
    "lock_timeout": LockTimeoutError,
    "unsupported_type": UnsupportedTypeError,
    "invalid_key": UnsupportedTypeError,
    "key_collision": KeyCollisionError,
    "circular": CircularReferenceError,
    "too_deep": NestingTooDeepError,
    "unencodable": InvalidDataError,
    "out_of_range": InvalidDataError,
    "serialization": SerializationError,
    "decode": JSONDecodeError,
    "invalid_path": AtomicJsonError,
}


def _make(kind: str, message: str, errno: Optional[int], filename: Any,
          attrs: Dict[str, Any]) -> AtomicJsonError:
    """Build the exception for a failure reported by the Rust core."""
    if kind == "os":
        if errno in _UNSUPPORTED_LOCK and attrs.get("step") == "lock":
            cls: Type[AtomicJsonError] = LockUnsupportedError
        else:
            cls = _BY_ERRNO.get(errno, AtomicJsonError) if errno is not None else AtomicJsonError
    else:
        cls = _BY_KIND[kind]
    if filename is not None:
        filename = os.fspath(filename)
    exc = cls(message, errno, filename)
    for name, value in attrs.items():
        setattr(exc, name, os.fspath(value) if isinstance(value, os.PathLike) else value)
    if isinstance(exc, JSONDecodeError):
        exc.doc = None  # type: ignore[assignment]  # the text is not kept (it may be huge)
    return exc


def _with_prefix(exc: AtomicJsonError, prefix: str) -> AtomicJsonError:
    """The same exception (class, errno and attributes) with `prefix` before its message."""
    return _rebuild(type(exc), prefix + str(exc), exc.errno, exc.filename, exc.__dict__.copy())
