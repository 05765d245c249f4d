"""The ``atomicjson`` command line (also ``python -m atomicjson``).

Commands: ``write``, ``update``, ``cat``, ``locks``, ``clean``, ``check``, ``demo``, ``bench``.
Run ``atomicjson COMMAND --help`` for each one; ``docs/cli.md`` is the reference.

Exit status: 0 on success, 1 when the command failed (one line on stderr, starting
``atomicjson: error:``; nothing changed on disk), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

import atomicjson
from atomicjson._errors import AtomicJsonError, JSONDecodeError, LockTimeoutError

PROG = "atomicjson"

#: The temp files of atomicjson's atomic writes, next to the target:
#: ``.{name}.{random}.tmp`` with 16 lowercase hex digits of randomness.
TEMP_FILE_RE = re.compile(r"^\.(?P<name>.+)\.(?P<random>[0-9a-f]{16})\.tmp$")


class CLIError(Exception):
    """A failure reported as one line on stderr, with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {_one_line(message)}\n")
    sys.stderr.flush()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog[len(PROG):].strip()
        where = f"{command}: " if command else ""
        hint = f"{self.prog} --help"
        _error(f"{where}{message} (see '{hint}')")
        sys.exit(2)


# --------------------------------------------------------------------------------------------
# Argument types


def _timeout(text: str) -> Optional[float]:
    """``--timeout``: seconds (>= 0); ``none`` or ``inf`` waits forever."""
    if text.strip().lower() in ("none", "inf", "forever"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: expected seconds")
    if not value >= 0:  # negative or NaN
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: must be >= 0")
    return None if value == float("inf") else value


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``1h``, ``2d``, ``1w``, ``1h30m`` or plain seconds -> seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?|\.\d+)([smhdw]?)", compact)
    if (not parts or "".join(n + u for n, u in parts) != compact
            or (len(parts) > 1 and any(u == "" for _, u in parts))):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: expected e.g. 30s, 10m, 1h, 2d or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """A short human duration: ``4.2s``, ``12m 5s``, ``3h 2m``, ``2d 4h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if seconds >= size:
            major, rest = divmod(seconds, size)
            minor = rest // subsize
            return f"{major}{unit} {minor}{sub}" if minor else f"{major}{unit}"
    return f"{seconds}s"  # pragma: no cover


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


# --------------------------------------------------------------------------------------------
# Processes: command lines, ages, /proc/locks


def _cmdline(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    return _short_command(" ".join(args)) if args else None


def _short_command(command: str, limit: int = 160) -> str:
    """A command line on one line, shortened to `limit` characters."""
    command = _one_line(command)
    return command if len(command) <= limit else command[:limit - 3] + "..."


def _describe_pid(pid: int) -> str:
    """The command line of `pid`, or why there is none."""
    cmd = _cmdline(pid)
    if cmd:
        return cmd
    if not os.path.exists(f"/proc/{pid}"):
        return "exited; the lock lives on in a descriptor it passed to another process"
    return "command line unknown"


def _process_age(pid: int) -> Optional[float]:
    """Seconds since process `pid` started, from /proc/<pid>/stat (field 22, starttime)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        fields = raw[raw.rindex(")") + 2:].split()
        start_ticks = int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _proc_locks_waiters(lock_file: str) -> List[int]:
    """Pids blocked in flock() on `lock_file` (the ``->`` lines of /proc/locks), best effort.
    (Waiters for OFD locks show pid -1 there, so posix mode lists none.)"""
    try:
        st = os.stat(lock_file)
        with open("/proc/locks") as f:
            lines = f.readlines()
    except OSError:
        return []
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    waiters = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 7 and fields[1] == "->" and fields[2] == "FLOCK" and fields[6] == ident:
            try:
                waiters.append(int(fields[5]))
            except ValueError:
                pass
    return waiters


def _probe_held(lock_file: str, lock_mode: str) -> Optional[bool]:
    """Whether someone holds the lock on `lock_file`, by trying it once (released at once), or
    for posix mode by asking F_OFD_GETLK (which works on a read-only descriptor). Used only
    where the system cannot say who holds a lock."""
    import fcntl
    import struct

    try:
        fd = os.open(lock_file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    if lock_mode == "posix":
        try:
            # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD requests).
            query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, query)
            kind: int = struct.unpack("hhqqi", answer)[0]
            return kind != fcntl.F_UNLCK
        except (OSError, AttributeError):
            return None
        finally:
            os.close(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _describe_lock_timeout(exc: LockTimeoutError, lock_mode: atomicjson.LockMode) -> str:
    """The library's message, plus the holders' pids and command lines when it omits them."""
    message = _one_line(str(exc))
    pids = getattr(exc, "holders", None)
    if pids is None:
        try:
            known = atomicjson.lock_holders(getattr(exc, "lock_path", None) or exc.filename,
                                            lock_mode=lock_mode)
        except Exception:
            known = None
        pids = [pid for pid, _ in known] if known else None
    if pids:
        missing = [pid for pid in pids if not re.search(rf"\b{pid}\b", message)]
        if missing:
            described = []
            for pid in missing:
                described.append(f"pid {pid} ({_describe_pid(pid)})")
            message += "; held by " + ", ".join(described)
    return message


# --------------------------------------------------------------------------------------------
# write


def _read_stdin_json() -> Tuple[bytes, Any]:
    payload = sys.stdin.buffer.read()
    try:
        return payload, atomicjson.loads(payload)
    except JSONDecodeError as e:
        raise CLIError(f"stdin is not valid JSON: {_decode_detail(e)}")
    except (ValueError, TypeError) as e:  # e.g. undecodable bytes
        raise CLIError(f"stdin is not valid JSON: {e}")


def _decode_detail(e: BaseException) -> str:
    msg = getattr(e, "msg", None)
    lineno, colno = getattr(e, "lineno", None), getattr(e, "colno", None)
    if msg is not None and lineno is not None and colno is not None:
        return f"line {lineno} column {colno}: {msg}"
    return _one_line(str(e))


def cmd_write(args: argparse.Namespace) -> int:
    payload, data = _read_stdin_json()
    durable = not args.no_fsync
    if args.plain:
        atomicjson.write_bytes(args.path, payload, lock_timeout=args.timeout, durable=durable,
                               lock_mode=args.lock_mode)
    else:
        atomicjson.write_json(args.path, data, lock_timeout=args.timeout, durable=durable,
                              lock_mode=args.lock_mode)
    return 0


# --------------------------------------------------------------------------------------------
# update


def _split_unescaped(text: str, sep: str, maxsplit: int = -1) -> List[str]:
    """Split `text` on `sep` except where escaped with a backslash; unescape ``\\.`` ``\\=``
    ``\\\\``."""
    parts: List[str] = []
    cur: List[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in ".=\\":
            cur.append(ch + text[i + 1] if sep == "=" else text[i + 1])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def parse_key_path(text: str) -> List[str]:
    """``a.b.0.c`` -> ``['a', 'b', '0', 'c']``; ``\\.`` is a literal dot in a key."""
    segments = _split_unescaped(text, ".")
    if not text or any(s == "" for s in segments):
        raise CLIError(f"invalid key path {text!r}: empty key (write a literal dot as '\\.')",
                       code=2)
    return segments


_JSON_TYPE = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
              int: "a number", float: "a number", type(None): "null"}


def _kind(value: Any) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _list_index(node: List[Any], segment: str, path: str, *, allow_append: bool = False) -> int:
    try:
        index = int(segment)
    except ValueError:
        raise CLIError(f"{path}: {segment!r} is not a list index (the value there is an array)")
    size = len(node)
    if allow_append and index == size:
        return index
    if not -size <= index < size:
        raise CLIError(f"{path}: index {index} out of range (the array has {size} items)")
    return index


def _walk_to_parent(doc: Any, segments: List[str], path: str, create: bool) -> Any:
    node = doc
    for depth, segment in enumerate(segments[:-1]):
        here = ".".join(segments[:depth]) or "the document"
        if isinstance(node, dict):
            if segment not in node:
                if not create:
                    raise CLIError(f"{path}: no key {segment!r} in {here}")
                node[segment] = {}
            node = node[segment]
        elif isinstance(node, list):
            node = node[_list_index(node, segment, path)]
        else:
            raise CLIError(f"{path}: cannot descend into {here}: it is {_kind(node)}")
    return node


def apply_set(doc: Any, segments: List[str], value: Any, path: str) -> None:
    parent = _walk_to_parent(doc, segments, path, create=True)
    last = segments[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        index = _list_index(parent, last, path, allow_append=True)
        if index == len(parent):
            parent.append(value)
        else:
            parent[index] = value
    else:
        where = ".".join(segments[:-1]) or "the document"
        raise CLIError(f"{path}: cannot set a key in {where}: it is {_kind(parent)}")


def apply_delete(doc: Any, segments: List[str], path: str) -> None:
    parent = _walk_to_parent(doc, segments, path, create=False)
    last = segments[-1]
    if isinstance(parent, dict):
        if last not in parent:
            where = ".".join(segments[:-1]) or "the document"
            raise CLIError(f"{path}: no key {last!r} in {where}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_list_index(parent, last, path)]
    else:
        where = ".".join(segments[:-1]) or "the document"
        raise CLIError(f"{path}: cannot delete from {where}: it is {_kind(parent)}")


class _OpAction(argparse.Action):
    """Collects --set and --delete into one list, in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((self.const, values))
        namespace.ops = ops


def _parse_ops(raw: Sequence[Tuple[str, str]]) -> List[Tuple[str, List[str], Any, str]]:
    ops = []
    for kind, text in raw:
        if kind == "set":
            pieces = _split_unescaped(text, "=", maxsplit=1)
            if len(pieces) != 2:
                raise CLIError(f"--set {text!r}: expected KEY.PATH=JSON", code=2)
            key_text, value_text = pieces
            key_text = key_text.replace("\\=", "=")
            try:
                value = atomicjson.loads(value_text)
            except (ValueError, TypeError) as e:
                raise CLIError(
                    f"--set {key_text}: the value is not valid JSON ({_decode_detail(e)}); "
                    f"quote strings, e.g. --set '{key_text}=\"text\"'", code=2)
            ops.append(("set", parse_key_path(key_text), value, key_text))
        else:
            key_text = text.replace("\\=", "=")
            ops.append(("delete", parse_key_path(text), None, key_text))
    return ops


def cmd_update(args: argparse.Namespace) -> int:
    raw = getattr(args, "ops", None) or []
    if not raw:
        raise CLIError("update: nothing to do: give at least one --set or --delete", code=2)
    ops = _parse_ops(raw)  # every value is validated before the file is touched

    def change(doc: Any) -> Any:
        for kind, segments, value, text in ops:
            if kind == "set":
                apply_set(doc, segments, value, text)
            else:
                apply_delete(doc, segments, text)
        return doc

    new = atomicjson.update_json(args.path, change, default={}, lock_timeout=args.timeout,
                                 durable=not args.no_fsync, lock_mode=args.lock_mode)
    if args.print:
        _write_document(new, compact=False)
    return 0


# --------------------------------------------------------------------------------------------
# cat


def _render(doc: Any, compact: bool) -> bytes:
    if not compact:
        try:
            return atomicjson.canonical_bytes(doc)
        except ValueError:  # a lone surrogate cannot be written as UTF-8: escape it
            return (atomicjson.dumps(doc, indent=2, separators=(",", ": "), sort_keys=True)
                    + "\n").encode("utf-8")
    try:
        text = atomicjson.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        return (text + "\n").encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return (atomicjson.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n").encode()


def _write_document(doc: Any, compact: bool) -> None:
    out = sys.stdout.buffer
    out.write(_render(doc, compact))
    out.flush()


def cmd_cat(args: argparse.Namespace) -> int:
    if args.path == "-":
        _, doc = _read_stdin_json()
    else:
        try:
            doc = atomicjson.read_json(args.path)
        except JSONDecodeError as e:
            raise CLIError(f"{args.path}: {_decode_detail(e)}")
    _write_document(doc, args.compact)
    return 0


# --------------------------------------------------------------------------------------------
# locks


def _require_dir(path: str) -> None:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise CLIError(f"{path}: not a directory")


def _walk_files(root: str, accept: Callable[[str], bool]) -> Iterator[str]:
    def onerror(err: OSError) -> None:
        _error(f"{err.filename}: {err.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in sorted(filenames):
            if accept(name):
                yield os.path.join(dirpath, name)


def _held_for(pid: int) -> str:
    age = _process_age(pid)
    return f"up {format_duration(age)}" if age is not None else "age unknown"


def cmd_locks(args: argparse.Namespace) -> int:
    _require_dir(args.dir)
    scanned = shown = 0
    unknown_owner = False
    for lock_file in _walk_files(args.dir, lambda n: n.endswith(".lock")):
        scanned += 1
        holders = atomicjson.lock_holders(lock_file, lock_mode=args.lock_mode)
        waiters = [(pid, _cmdline(pid)) for pid in _proc_locks_waiters(lock_file)
                   if args.lock_mode == "flock"]
        if holders is None:
            held = _probe_held(lock_file, args.lock_mode)
            if held:
                unknown_owner = True
        else:
            held = bool(holders)
        if not held and not waiters:
            if args.all:
                print(f"{lock_file}: free")
            continue
        shown += 1
        print(f"{lock_file}:")
        if holders:
            for pid, cmd in holders:
                cmd = _short_command(cmd) if cmd else _describe_pid(pid)
                print(f"  held by  pid {pid:<7} {_held_for(pid):<12} {cmd}")
        elif held:
            print("  held (this system does not report which process holds it)")
        for pid, cmd in waiters:
            print(f"  waiting  pid {pid:<7} {_held_for(pid):<12} {cmd or _describe_pid(pid)}")
    if shown == 0:
        print(f"no held locks under {args.dir} ({scanned} lock file(s) scanned)")
    else:
        print(f"{shown} of {scanned} lock file(s) held or waited for. 'up' is how long each "
              f"process has been running (start time from /proc/<pid>/stat): an upper bound on "
              f"how long it has held or waited for the lock.")
        if unknown_owner:
            print("Holders could not be identified (no usable /proc/locks); held locks were "
                  "found by trying each lock once without waiting.")
    return 0


# --------------------------------------------------------------------------------------------
# clean


def cmd_clean(args: argparse.Namespace) -> int:
    _require_dir(args.dir)
    threshold = args.older_than
    label = args.older_than_text
    if args.dry_run:
        now = time.time()
        found = 0
        for path in _walk_files(args.dir, lambda n: bool(TEMP_FILE_RE.match(n))):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            age = now - st.st_mtime
            if age > threshold:
                found += 1
                print(f"would remove {path} (modified {format_duration(age)} ago)")
        print(f"{found} temp file(s) older than {label} under {args.dir}; dry run, nothing "
              f"removed (a real run keeps any file a live writer still holds)")
        return 0
    removed: List[str] = []
    directories = [args.dir]
    for dirpath, dirnames, _ in os.walk(args.dir):
        dirnames.sort()
        directories.extend(os.path.join(dirpath, d) for d in dirnames)
    for directory in directories:
        removed.extend(atomicjson.cleanup_temp_files(directory, older_than=threshold))
    for path in removed:
        print(f"removed {path}")
    print(f"removed {len(removed)} temp file(s) older than {label} under {args.dir}")
    return 0


# --------------------------------------------------------------------------------------------
# check


def cmd_check(args: argparse.Namespace) -> int:
    if os.path.isfile(args.dir):
        files: Iterator[str] = iter([args.dir])
    else:
        _require_dir(args.dir)
        files = _walk_files(args.dir, lambda n: n.endswith(".json"))
    total = bad = 0
    for path in files:
        total += 1
        try:
            atomicjson.read_json(path)
        except JSONDecodeError as e:
            bad += 1
            print(f"{path}: {_decode_detail(e)}")
        except (OSError, ValueError) as e:
            bad += 1
            print(f"{path}: {_one_line(getattr(e, 'strerror', None) or str(e))}")
    if bad:
        print(f"{bad} of {total} JSON file(s) under {args.dir} are invalid")
        return 1
    if not args.quiet:
        print(f"all {total} JSON file(s) under {args.dir} are valid")
    return 0


# --------------------------------------------------------------------------------------------
# demo

_DEMO_START: Dict[str, Any] = {"count": 0, "writers": {}}


def _demo_bump(writer: str, doc: Any) -> Any:
    doc["count"] = doc.get("count", 0) + 1
    writers = doc.setdefault("writers", {})
    writers[writer] = writers.get(writer, 0) + 1
    return doc


def _demo_writer(kind: str, path: str, writer: int, ready: Any, go: Any, seconds: float,
                 rounds: Optional[int], durable: bool, results: Any) -> None:
    """One hammering process: `rounds` updates, or as many as fit in `seconds`."""
    done = torn = 0
    error = None
    name = str(writer)
    ready.release()
    go.wait()
    deadline = time.monotonic() + seconds
    attempts = 0
    try:
        while (attempts < rounds) if rounds is not None else (time.monotonic() < deadline):
            attempts += 1
            if kind == "atomicjson":
                atomicjson.update_json(path, lambda doc: _demo_bump(name, doc),
                                       default=_DEMO_START, durable=durable)
                done += 1
            else:
                # The naive helper: no lock, rewrites the file in place.
                try:
                    with open(path) as f:
                        doc = json.load(f)
                except ValueError:
                    torn += 1  # read a half-written file: this update is lost outright
                    continue
                with open(path, "w") as f:
                    json.dump(_demo_bump(name, doc), f)
                done += 1
    except Exception as e:  # reported by the parent
        error = f"{type(e).__name__}: {_one_line(str(e))}"
    results.put((writer, done, torn, error))


def _demo_reader(path: str, ready: Any, stop: Any, results: Any) -> None:
    """Reads the file continuously while the writers run; counts reads that are not JSON."""
    reads = invalid = 0
    example = None
    ready.release()
    while not stop.is_set():
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        reads += 1
        try:
            json.loads(data)
        except ValueError:
            invalid += 1
            if example is None:
                example = data[:60].decode("utf-8", "replace")
    results.put(("reader", reads, invalid, example))


def _demo_phase(ctx: Any, kind: str, path: str, args: argparse.Namespace) -> Dict[str, Any]:
    if kind == "atomicjson":
        atomicjson.write_json(path, _DEMO_START)
    else:
        with open(path, "w") as f:
            json.dump(_DEMO_START, f)
    ready, go, stop = ctx.Semaphore(0), ctx.Event(), ctx.Event()
    results, reader_results = ctx.Queue(), ctx.Queue()
    seconds = args.seconds if args.seconds is not None else 5.0
    writers = [ctx.Process(target=_demo_writer, name=f"demo-{kind}-{i}", daemon=True,
                           args=(kind, path, i, ready, go, seconds, args.rounds,
                                 not args.no_fsync, results))
               for i in range(args.processes)]
    reader = ctx.Process(target=_demo_reader, name=f"demo-{kind}-reader", daemon=True,
                         args=(path, ready, stop, reader_results))
    procs = writers + [reader]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=60):
                raise CLIError("demo: worker processes did not start within 60 s")
        t0 = time.monotonic()
        go.set()
        per_writer: Dict[int, Tuple[int, int]] = {}
        errors = []
        limit = (seconds if args.rounds is None else 600.0) + 60.0
        for _ in writers:
            writer, done, torn, error = results.get(timeout=limit)
            per_writer[writer] = (done, torn)
            if error:
                errors.append(f"writer {writer}: {error}")
        elapsed = time.monotonic() - t0
        stop.set()
        _, reads, invalid, example = reader_results.get(timeout=60)
        for p in procs:
            p.join(timeout=30)
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()

    expected = sum(done for done, _ in per_writer.values())
    torn = sum(t for _, t in per_writer.values())
    try:
        with open(path) as f:
            final = json.load(f)
        count = final.get("count") if isinstance(final, dict) else None
        tallies = final.get("writers", {}) if isinstance(final, dict) else {}
        final_valid = isinstance(count, int)
    except ValueError:
        count, tallies, final_valid = None, {}, False
    lost = expected - count if count is not None else expected
    tally_ok = final_valid and all(tallies.get(str(w), 0) == done
                                   for w, (done, _) in per_writer.items())
    ok = not errors and final_valid and lost == 0 and tally_ok and invalid == 0 and torn == 0
    return {
        "method": kind, "processes": args.processes, "seconds": round(elapsed, 3),
        "updates": expected, "throughput": round(expected / elapsed, 1) if elapsed else None,
        "final_count": count, "lost_updates": lost, "tallies_match": tally_ok,
        "torn_reads_by_writers": torn, "reader_reads": reads, "reader_invalid": invalid,
        "invalid_example": example, "final_valid": final_valid, "errors": errors, "ok": ok,
        "file": path,
    }


def _verdict(r: Dict[str, Any]) -> str:
    if r["ok"]:
        return "OK: every update kept, file always valid"
    problems = []
    if r["errors"]:
        problems.append(f"{len(r['errors'])} writer(s) failed")
    if not r["final_valid"]:
        problems.append("final file is not valid JSON")
    if r["lost_updates"]:
        pct = 100.0 * r["lost_updates"] / r["updates"] if r["updates"] else 0.0
        problems.append(f"lost {r['lost_updates']} updates ({pct:.0f}%)")
    elif not r["tallies_match"]:
        problems.append("per-writer tallies wrong")
    if r["reader_invalid"] or r["torn_reads_by_writers"]:
        problems.append("file seen half-written")
    return "BROKEN: " + ", ".join(problems)


def cmd_demo(args: argparse.Namespace) -> int:
    import multiprocessing
    import tempfile

    if args.seconds is not None and args.rounds is not None:
        raise CLIError("demo: give --seconds or --rounds, not both", code=2)
    ctx = multiprocessing.get_context("spawn")
    how = (f"{args.rounds} updates each" if args.rounds is not None
           else f"{args.seconds if args.seconds is not None else 5.0:g} s")
    if not args.json:
        print(f"{args.processes} processes hammer one JSON file ({how}) with read-modify-write "
              f"updates, while a reader process checks that the file stays valid JSON.")
        print("  atomicjson: atomicjson.update_json (locked read-modify-write, atomic replace"
              + (", no fsync)" if args.no_fsync else ", fsync)"))
        print("  naive:      open + json.load, then open('w') + json.dump, no lock")
        sys.stdout.flush()
    tmp = None
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        directory = args.dir
    else:
        tmp = tempfile.TemporaryDirectory(prefix="atomicjson-demo-")
        directory = tmp.name
    try:
        reports = [_demo_phase(ctx, kind, os.path.join(directory, f"counter_{kind}.json"), args)
                   for kind in ("atomicjson", "naive")]
    finally:
        if tmp is not None:
            tmp.cleanup()
    a, n = reports
    if args.json:
        print(json.dumps({"atomicjson": a, "naive": n}, indent=2))
    else:
        rows: List[Tuple[str, Callable[[Dict[str, Any]], str]]] = [
            ("updates done", lambda r: f"{r['updates']}"),
            ("throughput", lambda r: f"{r['throughput']:.0f} updates/s ({r['seconds']:.1f} s)"),
            ("final count", lambda r: "file not valid JSON" if r["final_count"] is None
             else f"{r['final_count']}"),
            ("lost updates", lambda r: f"{r['lost_updates']}" + (
                f" ({100.0 * r['lost_updates'] / r['updates']:.0f}%)"
                if r["lost_updates"] and r["updates"] else "")),
            ("torn reads (writers)", lambda r: f"{r['torn_reads_by_writers']}"),
            ("reader saw invalid", lambda r: f"{r['reader_invalid']} of {r['reader_reads']} reads"),
        ]
        print()
        print(f"{'':22}{'atomicjson':<40}naive")
        for label, fmt in rows:
            print(f"{label:<22}{fmt(a):<40}{fmt(n)}")
        print()
        for r in reports:
            print(f"{r['method'] + ':':<12}{_verdict(r)}")
        for r in reports:
            for err in r["errors"]:
                print(f"{r['method']}: {err}")
        if args.dir:
            print(f"files kept in {directory}")
    if not a["ok"]:
        _error("demo: atomicjson lost updates or showed an invalid file; see the report")
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# bench


def _find_quick_bench() -> Optional[Path]:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "benches" / "quick.py", Path.cwd() / "benches" / "quick.py"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = _find_quick_bench()
    if script is None:
        raise CLIError("bench: benches/quick.py not found (it ships with the source tree, not "
                       "the wheel); from a checkout of atomicjson run: python benches/quick.py")
    extra = list(args.args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *extra]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        _error(str(code))
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


# --------------------------------------------------------------------------------------------
# the parser


def _add_lock_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock-mode", choices=["flock", "posix"], default="flock",
                   help="the kind of lock on the .lock file: flock (default, what legacy "
                        "writers and flock(1) use) or posix (OFD record locks, for shared "
                        "file systems whose flock is node-local); all writers of a file "
                        "must use the same mode")


def _add_lock_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=_timeout, default=30.0, metavar="SECONDS",
                   help="how long to wait for the lock (default 30; 0 tries once; "
                        "'none' waits forever)")
    _add_lock_mode(p)
    p.add_argument("--no-fsync", action="store_true",
                   help="skip the fsyncs: still atomic, not guaranteed to survive a power cut")


def _command(sub: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary,
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Canonical JSON files written atomically under an exclusive lock.",
        epilog="Run 'atomicjson COMMAND --help' for a command's options and an example. "
               "Exit status: 0 success, 1 failure, 2 usage error.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {atomicjson.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = _command(sub, "write", "Read JSON from stdin and write it to PATH, locked and atomic.",
                 "echo '{\"epoch\": 3, \"loss\": 0.25}' | atomicjson write runs/7/metrics.json")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--plain", action="store_true",
                   help="keep the input's own bytes (validated as JSON) instead of the "
                        "canonical form")
    _add_lock_options(p)
    p.set_defaults(func=cmd_write)

    p = _command(sub, "update", "Change keys of the JSON file PATH in one locked "
                 "read-modify-write.",
                 "atomicjson update snapshot_index.json --set runs.42.status='\"done\"' "
                 "--set runs.42.folds=5 --delete runs.41")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--set", dest="ops", action=_OpAction, const="set", metavar="KEY.PATH=JSON",
                   help="set the value at a dotted key path (missing objects are created; "
                        "integer keys index arrays, the array's length appends); repeatable")
    p.add_argument("--delete", dest="ops", action=_OpAction, const="delete", metavar="KEY.PATH",
                   help="delete the key or array item at a dotted key path; repeatable")
    p.add_argument("--print", action="store_true", help="print the new document")
    _add_lock_options(p)
    p.set_defaults(func=cmd_update, ops=[])

    p = _command(sub, "cat", "Print the JSON file PATH (canonical, pretty) or '-' for stdin.",
                 "atomicjson cat --compact runs/7/metrics.json")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--compact", action="store_true", help="one line, no spaces")
    p.set_defaults(func=cmd_cat)

    p = _command(sub, "locks", "Show the lock files under DIR that are held or waited for, "
                 "with pids and command lines.",
                 "atomicjson locks /data/runs")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--all", action="store_true", help="also list the free lock files")
    _add_lock_mode(p)
    p.set_defaults(func=cmd_locks)

    p = _command(sub, "clean", "Remove atomicjson's orphaned temp files (.NAME.RANDOM.tmp, "
                 "RANDOM 16 hex digits) under DIR.",
                 "atomicjson clean /data/runs --older-than 1h --dry-run")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--older-than", dest="older_than_text", default="1h", metavar="AGE",
                   help="only files last modified longer ago than AGE: 30s, 10m, 1h, 2d, "
                        "1h30m (default 1h)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, "
                   "remove nothing")
    p.set_defaults(func=cmd_clean)

    p = _command(sub, "check", "Check that every *.json file under DIR parses; exit 1 if "
                 "one does not.",
                 "atomicjson check /data/runs && echo all good")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the failures")
    p.set_defaults(func=cmd_check)

    p = _command(sub, "demo", "Hammer one file from many processes through atomicjson and "
                 "through a naive read-modify-write; compare.",
                 "atomicjson demo --processes 8 --seconds 5")
    p.add_argument("--processes", type=_positive_int, default=8, metavar="N",
                   help="writer processes per method (default 8)")
    p.add_argument("--seconds", type=_positive_float, default=None, metavar="S",
                   help="how long each method runs (default 5)")
    p.add_argument("--rounds", type=_positive_int, default=None, metavar="R",
                   help="instead of --seconds: updates per writer process")
    p.add_argument("--dir", default=None, help="work in DIR and keep the files (default: a "
                   "temporary directory)")
    p.add_argument("--no-fsync", action="store_true", help="atomicjson without fsyncs")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "bench", "Run the quick benchmark table (benches/quick.py of the source "
                 "tree).", "atomicjson bench")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed on to benches/quick.py")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and argv[1:2] not in (["-h"], ["--help"]):
        # Everything after `bench` belongs to benches/quick.py, options included.
        args = argparse.Namespace(command="bench", func=cmd_bench, args=argv[1:])
    else:
        args = parser.parse_args(argv)
    if getattr(args, "older_than_text", None) is not None:
        try:
            args.older_than = parse_duration(args.older_than_text)
        except argparse.ArgumentTypeError as e:
            _error(f"{args.command}: argument --older-than: {e} (see '{PROG} {args.command} "
                   f"--help')")
            return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        _error(str(e))
        return e.code
    except LockTimeoutError as e:
        _error(_describe_lock_timeout(e, getattr(args, "lock_mode", "flock")))
        return 1
    except JSONDecodeError as e:
        _error(f"{e.filename or ''}: {_decode_detail(e)}" if e.filename else str(e))
        return 1
    except BrokenPipeError:  # e.g. `atomicjson cat big.json | head`: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (AtomicJsonError, OSError) as e:
        _error(str(e) or type(e).__name__)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
