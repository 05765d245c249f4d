"""The quick benchmark table (``python -m atomicjson bench`` runs this file), ~20-40 s.

Compares, in one run and on the same documents (``benches/documents.py``):

* ``canonical_bytes`` against the legacy pure-Python ``canonical_dump`` (``tests/legacy.py``)
  and orjson with ``OPT_INDENT_2 | OPT_SORT_KEYS | OPT_NON_STR_KEYS | OPT_SERIALIZE_NUMPY``
  and a ``default`` for the rest (orjson does not write the same bytes: it is the speed
  reference a user would otherwise pick);
* ``dumps`` against ``json.dumps`` with the same keywords, on the plain-JSON documents;
* ``read_json`` against ``json.loads`` of the same file (read included on both sides), and
  ``loads`` against ``json.loads`` of the same bytes;
* a durable ``write_json`` of the 3 KB document against the floor (``benches/floor.c``).

Prints a markdown table of medians, ratios and the PASS/FAIL of each bar of issue 6.
Every figure is measured in this run; nothing is hard-coded.

Options: ``--smoke`` (a few seconds, tiny repeat counts: checks that everything runs, the
figures mean nothing), ``--dir DIR`` (where the write benchmarks put their files; default a
temporary directory).  ``benches/run_all.py`` is the full suite.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a spinning worker thread per core at import; on a small shared machine
# they steal CPU from the code being measured. The benchmarks need no BLAS: one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import enum
import gc
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import atomicjson  # noqa: E402
import documents  # noqa: E402
import legacy  # noqa: E402

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is optional: its rows say "not installed"
    orjson = None

ORJSON_OPTIONS = 0
if orjson is not None:
    ORJSON_OPTIONS = (orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
                      | orjson.OPT_SERIALIZE_NUMPY)


def orjson_default(obj: Any) -> Any:
    """What a user adds to orjson for the pipeline's types it does not take natively."""
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, enum.Enum):
        return obj.value
    if hasattr(obj, "isoformat"):  # pandas Timestamp (a datetime subclass orjson refuses)
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy values orjson does not take natively
        return obj.tolist()
    raise TypeError(f"unsupported type {type(obj).__name__}")


def orjson_canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=ORJSON_OPTIONS, default=orjson_default)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
class Measured:
    """Per-call samples (seconds) of one function, or the error it raised."""

    def __init__(self) -> None:
        self.samples: List[float] = []
        self.error: Optional[str] = None

    @property
    def median(self) -> Optional[float]:
        if self.error is not None or not self.samples:
            return None
        return statistics.median(self.samples)

    def describe(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        return fmt_time(self.median)


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 70 else text[:67] + "..."


def measure(funcs: Dict[str, Callable[[], Any]], *, repeats: int = 7,
            sample_time: float = 0.05) -> Dict[str, Measured]:
    """Median per-call time of each function.

    Each function is called once (warm-up, and errors are caught there), calibrated to run
    about ``sample_time`` per sample, then the functions are sampled round-robin ``repeats``
    times so that drifts of a shared machine hit all of them alike.  The garbage collector is
    off inside a sample, as in ``timeit``.
    """
    results: Dict[str, Measured] = {name: Measured() for name in funcs}
    loops: Dict[str, int] = {}
    for name, fn in funcs.items():
        try:
            t0 = time.perf_counter()
            fn()
            once = time.perf_counter() - t0
            t0 = time.perf_counter()
            fn()
            once = min(once, time.perf_counter() - t0)
        except Exception as exc:  # a broken implementation is reported, not fatal
            results[name].error = short_error(exc)
            continue
        loops[name] = max(1, int(sample_time / max(once, 1e-7)))
    for _ in range(repeats):
        for name, fn in funcs.items():
            if name not in loops:
                continue
            n = loops[name]
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                dt = time.perf_counter() - t0
            except Exception as exc:
                results[name].error = short_error(exc)
                del loops[name]
                continue
            finally:
                if gc_was_enabled:
                    gc.enable()
            results[name].samples.append(dt / n)
    return results


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_ratio(x: Optional[float]) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


# --------------------------------------------------------------------------------------------
# rows and the table
# --------------------------------------------------------------------------------------------
class Row:
    """One comparison: ``subject`` against ``reference`` on a document.

    ``kind`` says how the ratio reads: ``"speedup"`` (reference time / subject time, higher
    is better: "atomicjson is N x faster") or ``"of_floor"`` / ``"of_ref"`` (subject / reference,
    lower is better: "N x the floor").  ``bar`` is ``(op, threshold, text)`` with op ``>=`` or
    ``<=`` applied to the ratio, or None for an informational row.
    """

    def __init__(self, section: str, doc: str, subject: str, subject_m: Measured,
                 reference: str, reference_m: Optional[Measured], kind: str = "speedup",
                 bar: Optional[Tuple[str, float, str]] = None, note: str = "") -> None:
        self.section, self.doc = section, doc
        self.subject, self.subject_m = subject, subject_m
        self.reference, self.reference_m = reference, reference_m
        self.kind, self.bar, self.note = kind, bar, note

    @property
    def ratio(self) -> Optional[float]:
        if self.reference_m is None:
            return None
        s, r = self.subject_m.median, self.reference_m.median
        if s is None or r is None or s <= 0 or r <= 0:
            return None
        return r / s if self.kind == "speedup" else s / r

    def ratio_text(self) -> str:
        r = self.ratio
        if r is None:
            return "n/a"
        if self.kind == "speedup":
            return f"{fmt_ratio(r)} faster" if r >= 1 else f"{fmt_ratio(1 / r)} slower"
        return f"{fmt_ratio(r)} of it"

    @property
    def verdict(self) -> str:
        if self.bar is None:
            return ""
        r = self.ratio
        if r is None:
            return "n/a"
        op, threshold, _ = self.bar
        ok = r >= threshold if op == ">=" else r <= threshold
        return "PASS" if ok else "FAIL"

    def cells(self) -> List[str]:
        ref_time = self.reference_m.describe() if self.reference_m is not None else ""
        bar = f"{self.bar[2]}: **{self.verdict}**" if self.bar is not None else ""
        return [self.section, self.doc, self.subject, self.subject_m.describe(),
                self.reference, ref_time, self.ratio_text(), bar + self.note]


HEADERS = ["measurement", "document", "subject", "median", "against", "median", "ratio",
           "bar (issue 6)"]


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row.cells()) + " |")
    return "\n".join(lines)


def error_measured(message: str) -> Measured:
    m = Measured()
    m.error = message
    return m


# --------------------------------------------------------------------------------------------
# the machine and the build
# --------------------------------------------------------------------------------------------
def _filesystem_of(path: Path) -> str:
    best, fstype = "", "?"
    try:
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and (real == parts[1] or real.startswith(
                        parts[1].rstrip("/") + "/")) and len(parts[1]) >= len(best):
                    best, fstype = parts[1], f"{parts[2]} ({parts[0]} on {parts[1]})"
    except OSError:
        pass
    return fstype


def build_profile() -> str:
    """"release" or "debug": of the extension this process loaded.

    It is the build in ``target/<profile>/`` when it is a copy of one; otherwise a Rust debug
    build is recognised by its overflow-check panic messages (release builds have none).
    """
    so = Path(atomicjson._core.__file__)
    try:
        data = so.read_bytes()
    except OSError:
        return "unknown"
    for profile in ("release", "debug"):
        cand = ROOT / "target" / profile / "libatomicjson.so"
        try:
            if cand.stat().st_size == len(data) and cand.read_bytes() == data:
                return profile
        except OSError:
            continue
    return "debug" if b"attempt to add with overflow" in data else "release"


def machine_description(write_dir: Optional[Path] = None) -> List[str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    lines = [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: {cpu}, {os.cpu_count()} CPUs, {mem} RAM, "
        f"{platform.system()} {platform.release()}",
        f"python: {platform.python_implementation()} {platform.python_version()}; "
        f"atomicjson {atomicjson.__version__} ({build_profile()} build, "
        f"{Path(atomicjson._core.__file__).parent}); "
        f"orjson {getattr(orjson, '__version__', 'not installed')}",
    ]
    if write_dir is not None:
        lines.append(f"write directory: {write_dir} on {_filesystem_of(write_dir)}")
    return lines


# --------------------------------------------------------------------------------------------
# the floor
# --------------------------------------------------------------------------------------------
_FLOOR_BINARY: Optional[str] = None


def floor_binary(quiet: bool = False) -> Optional[str]:
    """Compile benches/floor.c once (``cc -O2``) into a temp dir; None if no compiler."""
    global _FLOOR_BINARY
    if _FLOOR_BINARY is not None:
        return _FLOOR_BINARY or None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    out = os.path.join(tempfile.mkdtemp(prefix="atomicjson-floor-"), "floor")
    if cc:
        proc = subprocess.run([cc, "-O2", "-o", out, str(HERE / "floor.c")],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            _FLOOR_BINARY = out
            return out
        msg = proc.stderr.strip().splitlines()[-1:] or [""]
        if not quiet:
            print(f"note: cannot compile benches/floor.c ({msg[0]}); the floor is measured "
                  "with a Python os.* sequence instead (slower: the ratios flatter atomicjson)",
                  file=sys.stderr)
    elif not quiet:
        print("note: no C compiler; the floor is measured with a Python os.* sequence instead "
              "(slower: the ratios flatter atomicjson)", file=sys.stderr)
    _FLOOR_BINARY = ""
    return None


def _python_floor(target: str, size: int, iterations: int, durable: bool) -> List[float]:
    """The fallback floor: the same system calls through ``os.*``."""
    d = os.path.dirname(target) or "."
    base = os.path.basename(target)
    lock_path = str(Path(target).with_suffix(".lock"))
    buf = b"x" * size
    out = []
    import fcntl

    for i in range(iterations):
        t0 = time.perf_counter()
        lfd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        fcntl.flock(lfd, fcntl.LOCK_EX)
        tmp = os.path.join(d, f".{base}.{os.getpid()}{i}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        view = memoryview(buf)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
        os.close(fd)
        os.rename(tmp, target)
        if durable:
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)
        fcntl.flock(lfd, fcntl.LOCK_UN)
        os.close(lfd)
        out.append(time.perf_counter() - t0)
    return out


def floor_samples(target: str, size: int, iterations: int, durable: bool) -> List[float]:
    """Per-write durations (seconds) of the floor writing ``size`` bytes to ``target``."""
    binary = floor_binary()
    if binary is None:
        return _python_floor(target, size, iterations, durable)
    proc = subprocess.run([binary, target, str(size), str(iterations), "1" if durable else "0",
                           "--all"], capture_output=True, text=True, check=True)
    return [int(x) / 1e9 for x in proc.stdout.split()]


def floor_name() -> str:
    return "floor (C syscalls)" if floor_binary(quiet=True) else "floor (Python os.*)"


def measure_writes(writers: Dict[str, Callable[[], Any]], target_floor: str, size: int, *,
                   durable: bool, rounds: int, per_round: int
                   ) -> Tuple[Dict[str, Measured], Measured]:
    """Interleave rounds of each writer and of the floor (``per_round`` writes each), pooling
    the per-write durations, so all see the same disk and the same neighbours."""
    results = {name: Measured() for name in writers}
    floor = Measured()
    for name, write in writers.items():
        try:
            write()  # warm-up (creates the file and its lock file)
        except Exception as exc:
            results[name].error = short_error(exc)
    try:
        floor_samples(target_floor, size, 1, durable)
    except Exception as exc:
        floor.error = short_error(exc)
    for _ in range(rounds):
        if floor.error is None:
            try:
                floor.samples.extend(floor_samples(target_floor, size, per_round, durable))
            except Exception as exc:
                floor.error = short_error(exc)
        for name, write in writers.items():
            m = results[name]
            if m.error is not None:
                continue
            for _ in range(per_round):
                t0 = time.perf_counter()
                try:
                    write()
                except Exception as exc:
                    m.error = short_error(exc)
                    break
                m.samples.append(time.perf_counter() - t0)
    return results, floor


# --------------------------------------------------------------------------------------------
# the sections, shared with run_all.py
# --------------------------------------------------------------------------------------------
def serialization_rows(names: Sequence[str], repeats: int, sample_time: float) -> List[Row]:
    rows: List[Row] = []
    for name in names:
        doc = documents.document(name)
        label = documents.LABELS[name]
        funcs: Dict[str, Callable[[], Any]] = {
            "aj": lambda doc=doc: atomicjson.canonical_bytes(doc),
            "legacy": lambda doc=doc: legacy.canonical_dump(doc),
        }
        if orjson is not None:
            funcs["orjson"] = lambda doc=doc: orjson_canonical(doc)
        m = measure(funcs, repeats=repeats, sample_time=sample_time)
        bar_legacy = (">=", 25.0, ">=25x") if name == "large" else None
        rows.append(Row("canonical_bytes", label, "canonical_bytes", m["aj"],
                        "legacy canonical_dump", m["legacy"], bar=bar_legacy))
        bar_orjson = (">=", 1.0, "no slower") if name in ("medium", "large") else None
        rows.append(Row("canonical_bytes", label, "canonical_bytes", m["aj"], "orjson",
                        m.get("orjson", error_measured("orjson not installed")),
                        bar=bar_orjson))
    return rows


DUMPS_KEYWORDS: List[Tuple[str, Dict[str, Any]]] = [
    ("defaults", {}),
    ("indent=2, sort_keys", {"indent": 2, "sort_keys": True}),
]


def dumps_rows(names: Sequence[str], repeats: int, sample_time: float) -> List[Row]:
    rows: List[Row] = []
    for name in names:
        data = documents.plain(name)
        label = documents.LABELS[name]
        for kw_label, kw in DUMPS_KEYWORDS:
            funcs: Dict[str, Callable[[], Any]] = {
                "aj": lambda kw=kw: atomicjson.dumps(data, **kw),
                "json": lambda kw=kw: json.dumps(data, **kw),
            }
            if orjson is not None:
                opt = (orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) if kw else 0
                funcs["orjson"] = lambda opt=opt: orjson.dumps(data, option=opt).decode()
            m = measure(funcs, repeats=repeats, sample_time=sample_time)
            section = f"dumps ({kw_label})"
            rows.append(Row(section, label, "dumps", m["aj"], "json.dumps", m["json"],
                            bar=(">=", 10.0, ">=10x")))
            rows.append(Row(section, label, "dumps", m["aj"], "orjson.dumps(...).decode()",
                            m.get("orjson", error_measured("orjson not installed"))))
    return rows


def parse_rows(names: Sequence[str], repeats: int, sample_time: float,
               work_dir: Path) -> List[Row]:
    rows: List[Row] = []
    for name in names:
        label = documents.LABELS[name]
        payload = atomicjson.canonical_bytes(documents.document(name))
        path = work_dir / f"parse-{name}.json"
        path.write_bytes(payload)
        p = str(path)

        def json_file(p: str = p) -> Any:
            with open(p, "rb") as f:
                return json.loads(f.read())

        funcs: Dict[str, Callable[[], Any]] = {
            "read_json": lambda p=p: atomicjson.read_json(p),
            "json_file": json_file,
            "loads": lambda: atomicjson.loads(payload),
            "json.loads": lambda: json.loads(payload),
        }
        if orjson is not None:
            # orjson refuses NaN/Infinity (the documents have them): it reads its own output
            # of the same document (NaN written as null), as an orjson user would.
            opath = work_dir / f"parse-{name}-orjson.json"
            opath.write_bytes(orjson_canonical(documents.document(name)))

            def orjson_file(p: str = str(opath)) -> Any:
                with open(p, "rb") as f:
                    return orjson.loads(f.read())

            funcs["orjson_file"] = orjson_file
        m = measure(funcs, repeats=repeats, sample_time=sample_time)
        rows.append(Row("read_json (file)", label, "read_json", m["read_json"],
                        "json.loads(file bytes)", m["json_file"], bar=(">=", 2.0, ">=2x")))
        rows.append(Row("read_json (file)", label, "read_json", m["read_json"],
                        "orjson.loads(file bytes)¹",
                        m.get("orjson_file", error_measured("orjson not installed"))))
        rows.append(Row("loads (bytes)", label, "loads", m["loads"], "json.loads",
                        m["json.loads"]))
    return rows


def orjson_filelock_writer(target: str, doc: Any, durable: bool = True
                           ) -> Optional[Callable[[], None]]:
    """What a user would pick instead: orjson bytes, ``filelock.FileLock`` on the same
    ``.lock`` sidecar, then the same temp/write/fsync/replace/fsync-dir sequence as the legacy
    helper (or no fsyncs when not durable).  None when orjson or filelock is missing."""
    if orjson is None:
        return None
    try:
        import filelock
    except ImportError:
        return None
    lock = filelock.FileLock(str(legacy.lock_path_for(target)), timeout=30.0)

    def write() -> None:
        payload = orjson_canonical(doc)
        with lock:
            if durable:
                legacy._atomic_write_bytes(target, payload)
            else:
                _atomic_write_no_fsync(target, payload)

    return write


def _atomic_write_no_fsync(target: str, payload: bytes) -> None:
    d = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def legacy_writer(target: str, doc: Any, durable: bool = True) -> Optional[Callable[[], None]]:
    """The legacy helper (durable only: it has no non-durable mode)."""
    if not durable:
        return None
    return lambda: legacy.write_atomic_json_with_lock(target, doc)


def write_floor_rows(names: Sequence[str], work_dir: Path, *, durable_modes: Sequence[bool],
                     rounds: int, per_round: Dict[str, int],
                     others: bool = False) -> List[Row]:
    """``write_json`` (and with ``others`` the legacy helper and orjson+filelock) against the
    floor writing the same number of bytes."""
    rows: List[Row] = []
    for name in names:
        doc = documents.document(name)
        label = documents.LABELS[name]
        size = len(atomicjson.canonical_bytes(doc))
        for durable in durable_modes:
            tag = "durable" if durable else "non-durable"
            target = str(work_dir / f"write-{name}-{tag}.json")
            writers: Dict[str, Callable[[], Any]] = {
                "write_json": lambda target=target, durable=durable: atomicjson.write_json(
                    target, doc, durable=durable)}
            if others:
                for wname, make in (("legacy helper", legacy_writer),
                                    ("orjson+filelock", orjson_filelock_writer)):
                    w = make(str(work_dir / f"write-{name}-{tag}-{wname[:6]}.json"), doc,
                             durable)
                    if w is not None:
                        writers[wname] = w
            floor_target = str(work_dir / f"floor-{name}-{tag}.json")
            results, floor = measure_writes(writers, floor_target, size, durable=durable,
                                            rounds=rounds, per_round=per_round[name])
            for wname, m in results.items():
                bar = None
                if wname == "write_json" and durable and name == "small":
                    bar = ("<=", 1.15, "<=1.15x")
                elif wname == "write_json" and durable and name == "large":
                    bar = ("<=", 1.5, "<=1.5x")
                rows.append(Row(f"whole write ({tag})", label, wname, m, floor_name(), floor,
                                kind="of_floor", bar=bar))
    return rows


FOOTNOTES = ("¹ orjson refuses `NaN`/`Infinity`, which the documents contain: it parses its "
             "own output of the same document (NaN written as null). orjson's serialized "
             "bytes are not the canonical ones (float layout, NaN as null): it is the speed "
             "reference, not a drop-in.")


# --------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="benches/quick.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds: check that everything runs (figures meaningless)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="directory for the write benchmarks (default: a temp dir)")
    args = ap.parse_args(argv)

    work_dir = Path(tempfile.mkdtemp(prefix="atomicjson-bench-", dir=args.dir))
    try:
        if args.smoke:
            names, big, repeats, sample_time = ["small"], ["small"], 1, 0.002
            rounds, per_round = 1, {"small": 2}
        else:
            names, big, repeats, sample_time = ["small", "medium", "large"], \
                ["medium", "large"], 7, 0.05
            rounds, per_round = 6, {"small": 40}
        print("# atomicjson quick benchmark" + (" (smoke: figures meaningless)"
                                                  if args.smoke else ""))
        if build_profile() == "debug" and not args.smoke:
            print("\n**warning: a debug build of the extension: its figures mean nothing; "
                  "build with `maturin develop --release`**")
        print()
        for line in machine_description(work_dir):
            print(f"- {line}")
        sizes = ", ".join(
            f"{documents.LABELS[n]} = {len(atomicjson.canonical_bytes(documents.document(n))):,} B"
            for n in names)
        print(f"- documents (canonical size): {sizes}")
        print()
        t0 = time.perf_counter()
        rows: List[Row] = []
        rows += serialization_rows(names, repeats, sample_time)
        # The 3 KB document too: the fixed per-call cost weighs most there.
        rows += dumps_rows(names, repeats, sample_time)
        rows += parse_rows(names, repeats, sample_time, work_dir)
        rows += write_floor_rows(["small"], work_dir, durable_modes=[True], rounds=rounds,
                                 per_round=per_round)
        print(markdown_table(rows))
        print()
        print(FOOTNOTES)
        print()
        bars = [r for r in rows if r.bar is not None]
        passed = sum(r.verdict == "PASS" for r in bars)
        print(f"{passed}/{len(bars)} bars pass; medians of {repeats} samples each "
              f"(round-robin); ratios from this run only; {time.perf_counter() - t0:.1f} s. "
              "Full suite: python benches/run_all.py")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
