"""asyncio versions of the atomicjson calls: they never block the event loop.

Lock waits and file I/O run in worker threads (the GIL is released there); the event loop only
serializes the document, so the bytes written are the document as it was at the call.

Each task is its own lock owner: two tasks of one loop (or of loops in two threads) that lock
the same path exclude each other, and one task's exit never releases another task's lock.
Cancelling a task that waits for a lock leaves no lock held and no temp file behind; a write
already under way completes before the lock is released.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import itertools
import os
import weakref
from typing import Any, Callable, Optional, Union

from . import LockMode, _core
from . import _current_or_default

__all__ = ["lock", "write_json", "write_bytes", "read_json", "update_json"]

PathArg = Union[str, "os.PathLike[str]"]

# Lock waits get their own threads: a waiter may block for its whole timeout, and must never
# occupy the threads that the lock's holder needs to finish its write.
_WAITERS = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="atomicjson-wait")
_IO = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="atomicjson-io")

# Owner tokens of tasks, kept apart from thread ids (which the synchronous API uses).
_TOKEN_BASE = 1 << 62
_tokens: "weakref.WeakKeyDictionary[asyncio.Task[Any], int]" = weakref.WeakKeyDictionary()
_counter = itertools.count(1)


def _task_owner() -> int:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("atomicjson.aio must be used from inside an asyncio task")
    token = _tokens.get(task)
    if token is None:
        token = _tokens[task] = _TOKEN_BASE + next(_counter)
    return token


class lock:
    """``async with atomicjson.aio.lock(path):`` holds the sidecar lock of ``path`` for the
    current task. ``timeout=None`` waits forever, ``0`` tries once; ``lock_mode`` as for
    :func:`atomicjson.lock`."""

    def __init__(self, path: PathArg, *, timeout: Optional[float] = 30.0,
                 remove_lock_file: bool = False, lock_mode: LockMode = "flock") -> None:
        self._path = path
        self._timeout = timeout
        self._remove_lock_file = remove_lock_file
        self._lock_mode = lock_mode
        self._lock: Optional[_core.FileLock] = None
        self._pending: Optional[concurrent.futures.Future[Any]] = None

    @property
    def owner(self) -> int:
        assert self._lock is not None, "not entered"
        return self._lock.owner

    @property
    def lock_mode(self) -> LockMode:
        return self._lock_mode

    async def __aenter__(self) -> "lock":
        self._lock = file_lock = _core.FileLock(self._path, timeout=self._timeout,
                                                remove_lock_file=self._remove_lock_file,
                                                owner=_task_owner(),
                                                lock_mode=self._lock_mode)
        attempt = _WAITERS.submit(file_lock.acquire)
        try:
            await asyncio.shield(asyncio.wrap_future(attempt))
        except asyncio.CancelledError:
            # The worker may still get the lock: make it give up, and release whatever it got.
            # The callback is the worker's (or runs here if it is done), not the event loop's:
            # it must run even when the loop has closed meanwhile.
            file_lock.cancel()
            attempt.add_done_callback(lambda _: file_lock.release())
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        file_lock = self._lock
        assert file_lock is not None
        pending = self._pending
        if pending is not None:
            # A write may still run in its thread (its task was cancelled): release after it
            # (at once if it is done), from that thread, whether or not the loop still runs.
            pending.add_done_callback(lambda _: file_lock.release())
        else:
            file_lock.release()

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking I/O under this lock; cancellation does not cut the I/O short."""
        self._pending = work = _IO.submit(functools.partial(fn, *args, **kwargs))
        return await asyncio.shield(asyncio.wrap_future(work))


async def _locked_write(path: PathArg, payload: bytes, lock_timeout: Optional[float],
                        durable: bool, lock_mode: LockMode) -> None:
    async with lock(path, timeout=lock_timeout, lock_mode=lock_mode) as held:
        await held._run(_core.write_bytes, path, payload, lock_timeout=lock_timeout,
                        durable=durable, owner=held.owner, lock_mode=lock_mode)


async def write_json(path: PathArg, data: Any, *, lock_timeout: Optional[float] = 30.0,
                     durable: bool = True, lock_mode: LockMode = "flock") -> None:
    """:func:`atomicjson.write_json` for asyncio."""
    await _locked_write(path, _core.canonical_bytes(data), lock_timeout, durable, lock_mode)


async def write_bytes(path: PathArg, payload: Union[bytes, bytearray], *,
                      lock_timeout: Optional[float] = 30.0, durable: bool = True,
                      lock_mode: LockMode = "flock") -> None:
    """:func:`atomicjson.write_bytes` for asyncio."""
    await _locked_write(path, bytes(payload), lock_timeout, durable, lock_mode)


async def read_json(path: PathArg) -> Any:
    """:func:`atomicjson.read_json` for asyncio."""
    return await asyncio.get_running_loop().run_in_executor(_IO, _core.read_json, path)


async def update_json(path: PathArg, fn: Callable[[Any], Any], *, default: Any = None,
                      lock_timeout: Optional[float] = 30.0, durable: bool = True,
                      lock_mode: LockMode = "flock") -> Any:
    """:func:`atomicjson.update_json` for asyncio; ``fn`` may be a plain or an async function."""
    async with lock(path, timeout=lock_timeout, lock_mode=lock_mode) as held:
        current = await held._run(_current_or_default, path, default)
        new = fn(current)
        if inspect.isawaitable(new):
            new = await new
        payload = _core.canonical_bytes(new)
        await held._run(_core.write_bytes, path, payload, lock_timeout=lock_timeout,
                        durable=durable, owner=held.owner, lock_mode=lock_mode)
        return new
