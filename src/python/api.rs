//! The functions and classes of `atomicjson._core`.
//!
//! Each call reads the Python objects with the GIL held, then releases it for the lock wait,
//! the write, the fsyncs and the rename.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyString};

use super::encode::{Encoder, OutBuf, Sink, Style};
use super::errors::{core_error, decode_error, int_too_long_error, SerError, SerErrorKind};
use super::objects::Builder;
use super::sanitize::{to_python, Profile, Rules};
use super::text::{ascii_to_str, wtf8_to_str};
use crate::atomic_write::{self, CompleteTemp};
use crate::background_write::{self, BackgroundWrite, PART_SIZE};
use crate::errors::{Error, Step};
use crate::lock::{self, LockGuard, LockMode};
use crate::read::{self, Document, Spare};

/// A failure inside a call that released the GIL: from the core, or Ctrl-C while waiting.
enum Failure {
    Core(Error),
    Py(PyErr),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure::Core(err)
    }
}

impl Failure {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Core(err) => core_error(py, err),
            Failure::Py(err) => err,
        }
    }
}

/// A wait longer than this (milliseconds) logs one warning naming the holders.
static WAIT_WARNING_MS: AtomicU64 = AtomicU64::new(5000);

/// Set after how many seconds a lock wait logs a warning on the `atomicjson` logger
/// (`None` or `inf` turns it off).
#[pyfunction]
#[pyo3(signature = (seconds))]
pub fn set_lock_wait_warning(seconds: Option<f64>) -> PyResult<()> {
    let ms = match seconds {
        None => u64::MAX,
        Some(s) if s.is_nan() || s < 0.0 => {
            return Err(PyValueError::new_err("the threshold must be >= 0 or None"))
        }
        Some(s) => (s * 1000.0).min(u64::MAX as f64) as u64,
    };
    WAIT_WARNING_MS.store(ms, Ordering::Relaxed);
    Ok(())
}

/// Called every few milliseconds while a lock wait goes on (GIL released): lets the wait
/// notice Ctrl-C, and once it has lasted long, explains itself on the `atomicjson` logger.
struct WaitWatch<'a> {
    lock_path: &'a Path,
    mode: LockMode,
    started: Instant,
    warned: bool,
}

impl<'a> WaitWatch<'a> {
    fn new(lock_path: &'a Path, mode: LockMode) -> Self {
        WaitWatch {
            lock_path,
            mode,
            started: Instant::now(),
            warned: false,
        }
    }

    fn check(&mut self) -> Result<(), Failure> {
        Python::attach(|py| py.check_signals()).map_err(Failure::Py)?;
        let threshold = WAIT_WARNING_MS.load(Ordering::Relaxed);
        if !self.warned && self.started.elapsed().as_millis() >= u128::from(threshold) {
            self.warned = true;
            let holders = lock::lock_holders(self.lock_path, self.mode);
            let message = format!(
                "waiting for lock {} for {:.1} s; {}",
                self.lock_path.display(),
                self.started.elapsed().as_secs_f64(),
                holders
            );
            // Logging must never break the wait.
            let _ = Python::attach(|py| -> PyResult<()> {
                py.import("logging")?
                    .call_method1("getLogger", ("atomicjson",))?
                    .call_method1("warning", (message,))?;
                Ok(())
            });
        }
        Ok(())
    }
}

fn timeout_from(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_nan() || s < 0.0 => Err(PyValueError::new_err(format!(
            "lock timeout must be None or a number >= 0, not {s}"
        ))),
        Some(s) => Ok(Some(
            Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX),
        )),
    }
}

/// `"flock"` or `"posix"`; anything else is a ValueError.
fn lock_mode_from(name: &str) -> PyResult<LockMode> {
    LockMode::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "lock_mode must be \"flock\" or \"posix\", not {name:?}"
        ))
    })
}

/// The logical owner of a lock: the OS thread, unless the caller names one (asyncio tasks).
fn owner_or_thread(owner: Option<u64>) -> u64 {
    owner.unwrap_or_else(lock::current_thread_owner)
}

/// How a document becomes bytes: which legacy passes apply and the `json.dumps` keywords.
#[pyclass(frozen, module = "atomicjson._core")]
pub struct Encoding {
    rules: Rules,
    style: Style,
    sort_keys: bool,
    skipkeys: bool,
    allow_nan: bool,
    check_circular: bool,
    extended: bool,
    default: Option<Py<PyAny>>,
    trailing_newline: bool,
    /// Lone surrogates are an error: the text is headed for a UTF-8 file.
    strict_utf8: bool,
    /// The text is all ASCII: `ensure_ascii`, with ASCII separators and indentation.
    ascii_output: bool,
}

impl Encoding {
    fn canonical() -> &'static Encoding {
        static CANONICAL: OnceLock<Encoding> = OnceLock::new();
        CANONICAL.get_or_init(|| Encoding {
            rules: Rules::Both,
            style: Style::canonical(),
            sort_keys: true,
            skipkeys: false,
            allow_nan: true,
            check_circular: true,
            extended: true,
            default: None,
            trailing_newline: true,
            strict_utf8: true,
            ascii_output: false,
        })
    }

    /// Serialize with the GIL held. `file` only names the file in error messages.
    fn encode_to_vec(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        file: Option<&Path>,
    ) -> PyResult<(OutBuf, bool)> {
        self.encode_streaming(py, data, file, None)
    }

    /// `encode_to_vec`, handing the output to `sink` in parts as it grows (what is left at
    /// the end is returned).
    fn encode_streaming(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        file: Option<&Path>,
        sink: Option<&mut dyn Sink>,
    ) -> PyResult<(OutBuf, bool)> {
        let profile = Profile {
            sort_keys: self.sort_keys,
            skipkeys: self.skipkeys,
            allow_nan: self.allow_nan,
            extended: self.extended,
            default: self.default.as_ref().map(|d| d.bind(py).clone()),
            memo: Default::default(),
        };
        let mut encoder = Encoder::new(
            &self.style,
            &profile,
            self.strict_utf8,
            self.check_circular,
            OutBuf::take(),
        );
        if let Some(sink) = sink {
            // The background writer formats deferred floats (without the GIL).
            encoder.stream_to(sink, PART_SIZE);
        }
        let result = encoder.encode(data, self.rules);
        let mut out = OutBuf(std::mem::take(&mut encoder.out));
        result.map_err(|e| e.into_pyerr(py, file, !self.extended))?;
        if self.trailing_newline {
            out.0.push(b'\n');
        }
        Ok((out, encoder.has_surrogates))
    }

    /// `json.dumps`' default keywords (what `dumps` uses when given none).
    fn json_defaults() -> &'static Encoding {
        static DEFAULTS: OnceLock<Encoding> = OnceLock::new();
        DEFAULTS.get_or_init(|| {
            Encoding::new(
                "json", None, None, true, true, false, false, true, None, false,
            )
            .expect("json.dumps' default keywords are valid")
        })
    }

    /// Encode and write atomically: large documents stream into the temp file while they are
    /// encoded (see `background_write`), then the lock is taken for the replacement.
    fn write_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        data: &Bound<'_, PyAny>,
        how: WriteOptions,
    ) -> PyResult<()> {
        let mut stream = StreamToTemp {
            target: &path,
            durable: how.durable,
            write: None,
        };
        let encoded = self.encode_streaming(py, data, Some(&path), Some(&mut stream));
        let started = stream.write;
        let refused = match encoded {
            Ok((_, true)) => Err(
                // Like `dumps(...).encode()`: the text is complete and valid, UTF-8 cannot
                // hold it.
                SerError::from(SerErrorKind::LoneSurrogate).into_pyerr(py, Some(&path), false),
            ),
            other => other,
        };
        let mut rest = match refused {
            Ok((rest, _)) => rest,
            Err(err) => {
                // The writer thread removes its temp file; it may be in an fsync.
                py.detach(|| drop(started));
                return Err(err);
            }
        };
        match started {
            None => write_locked(py, &path, Prepared::Bytes(&rest), how),
            Some(write) => {
                let rest = std::mem::take(&mut rest.0);
                write_locked(py, &path, Prepared::Streamed(write, rest), how)
            }
        }
    }
}

/// The encoder's sink on the write path: the first full part starts a background writer
/// (documents smaller than a part never start one), later parts follow it.
struct StreamToTemp<'p> {
    target: &'p Path,
    durable: bool,
    write: Option<Result<BackgroundWrite, Error>>,
}

impl Sink for StreamToTemp<'_> {
    fn take(&mut self, out: &mut Vec<u8>) {
        let (target, durable) = (self.target, self.durable);
        match self
            .write
            .get_or_insert_with(|| BackgroundWrite::start(target, durable))
        {
            Ok(write) => {
                let full = std::mem::take(out);
                *out = write.send(full);
            }
            // No writer thread: the error is reported once the encoding is done.
            Err(_) => out.clear(),
        }
    }
}

#[pymethods]
impl Encoding {
    #[new]
    #[pyo3(signature = (*, rules="json", indent=None, separators=None, ensure_ascii=true,
        allow_nan=true, sort_keys=false, skipkeys=false, check_circular=true, default=None,
        trailing_newline=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        rules: &str,
        indent: Option<&Bound<'_, PyAny>>,
        separators: Option<&Bound<'_, PyAny>>,
        ensure_ascii: bool,
        allow_nan: bool,
        sort_keys: bool,
        skipkeys: bool,
        check_circular: bool,
        default: Option<Py<PyAny>>,
        trailing_newline: bool,
    ) -> PyResult<Encoding> {
        let rules = match rules {
            "both" => Rules::Both,
            "artifact" => Rules::Artifact,
            "json" => Rules::Json,
            other => return Err(PyValueError::new_err(format!("unknown rules {other:?}"))),
        };
        let indent = match indent {
            None => None,
            Some(i) if i.is_none() => None,
            Some(i) => match i.cast::<PyString>() {
                Ok(s) => Some(s.to_cow()?.as_bytes().to_vec()),
                // json.dumps: ' ' * indent, so negative counts mean no spaces.
                Err(_) => Some(vec![b' '; i.extract::<i64>()?.max(0) as usize]),
            },
        };
        // Any two-item sequence, as json.dumps unpacks it.
        let separators = match separators {
            Some(seq) if !seq.is_none() => {
                let pair: Vec<String> = seq.extract()?;
                match <[String; 2]>::try_from(pair) {
                    Ok([item, key]) => Some((item, key)),
                    Err(pair) => {
                        return Err(PyValueError::new_err(format!(
                            "separators must be two strings, got {}",
                            pair.len()
                        )))
                    }
                }
            }
            _ => None,
        };
        let (item, key) = match separators {
            Some((item, key)) => (item.into_bytes(), key.into_bytes()),
            None if indent.is_some() => (b",".to_vec(), b": ".to_vec()),
            None => (b", ".to_vec(), b": ".to_vec()),
        };
        let ascii_output = ensure_ascii
            && item.is_ascii()
            && key.is_ascii()
            && indent.as_ref().is_none_or(|i| i.is_ascii());
        Ok(Encoding {
            rules,
            style: Style {
                indent,
                item_separator: item,
                key_separator: key,
                ensure_ascii,
            },
            // The legacy passes always sort; `sort_keys` only matters to json.dumps rules.
            sort_keys: sort_keys || rules != Rules::Json,
            skipkeys,
            allow_nan,
            check_circular,
            extended: rules != Rules::Json,
            default,
            trailing_newline,
            strict_utf8: false,
            ascii_output,
        })
    }

    /// The encoded document as UTF-8 bytes.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        obj: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (bytes, has_surrogates) = self.encode_to_vec(py, obj, None)?;
        if has_surrogates {
            return Err(PyValueError::new_err(
                "a string holds a lone surrogate, which UTF-8 cannot encode",
            ));
        }
        Ok(PyBytes::new(py, &bytes))
    }

    /// The encoded document as str, exactly as `json.dumps` returns it.
    fn dumps<'py>(&self, py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (bytes, _) = self.encode_to_vec(py, obj, None)?;
        if self.ascii_output {
            return ascii_to_str(py, &bytes);
        }
        wtf8_to_str(py, &bytes)
    }

    /// Encode, then write atomically (under the sidecar lock when `locked`).
    #[pyo3(signature = (path, obj, *, lock_timeout=Some(30.0), durable=true, locked=true,
        remove_lock_file=false, owner=None, lock_mode="flock"))]
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        py: Python<'_>,
        path: PathBuf,
        obj: &Bound<'_, PyAny>,
        lock_timeout: Option<f64>,
        durable: bool,
        locked: bool,
        remove_lock_file: bool,
        owner: Option<u64>,
        lock_mode: &str,
    ) -> PyResult<()> {
        let how = WriteOptions {
            timeout: timeout_from(lock_timeout)?,
            durable,
            locked,
            remove_lock_file,
            owner,
            mode: lock_mode_from(lock_mode)?,
        };
        self.write_file(py, path, obj, how)
    }
}

/// `lock::acquire`, creating the lock file's missing directory first like the legacy helper
/// did (the lock file is the first entry of a new run directory).
fn acquire_creating_dir(
    lock_path: &Path,
    owner: u64,
    mode: LockMode,
    timeout: Option<Duration>,
    remove_lock_file: bool,
    check: &mut dyn FnMut() -> Result<(), Failure>,
) -> Result<LockGuard, Failure> {
    let acquire = if remove_lock_file {
        lock::acquire_removable::<Failure>
    } else {
        lock::acquire::<Failure>
    };
    match acquire(lock_path, owner, mode, timeout, check) {
        Err(Failure::Core(Error::Io {
            step: Step::OpenLock,
            source,
            ..
        })) if source.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = lock_path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(Step::CreateDir, dir, e))?;
            }
            acquire(lock_path, owner, mode, timeout, check)
        }
        other => other,
    }
}

/// How a file is written: lock wait, fsyncs, and who owns the lock.
struct WriteOptions {
    timeout: Option<Duration>,
    durable: bool,
    /// Take the sidecar lock (`compat.write_atomic_json` writes without it, as the legacy did).
    locked: bool,
    /// Delete the lock file on release (opt-in, see `lock::acquire_removable`).
    remove_lock_file: bool,
    owner: Option<u64>,
    mode: LockMode,
}

/// The data of a write: bytes in full, or a temp file a background writer is filling (and
/// the part the encoder still held at the end).
enum Prepared<'b> {
    Bytes(&'b [u8]),
    Streamed(Result<BackgroundWrite, Error>, Vec<u8>),
}

/// Complete the temp file, then take the lock (unless not `locked`) and replace the target,
/// all with the GIL released. The lock covers only the replacement: the data is written and
/// fsynced before, so a writer holds the lock for the rename and the directory fsync.
fn write_locked(
    py: Python<'_>,
    path: &Path,
    data: Prepared<'_>,
    how: WriteOptions,
) -> PyResult<()> {
    let owner = owner_or_thread(how.owner);
    py.detach(|| -> Result<(), Failure> {
        let complete: CompleteTemp = match data {
            Prepared::Bytes(bytes) => atomic_write::prepare(path, bytes, how.durable)?,
            Prepared::Streamed(write, rest) => write?.finish(rest)?,
        };
        let guard = if how.locked {
            let lock_path = lock::lock_path_for(path)?;
            let mut watch = WaitWatch::new(&lock_path, how.mode);
            Some(acquire_creating_dir(
                &lock_path,
                owner,
                how.mode,
                how.timeout,
                how.remove_lock_file,
                &mut || watch.check(),
            )?)
        } else {
            None
        };
        let replaced = complete.replace_target()?;
        drop(guard);
        if let Some(file) = replaced {
            background_write::close_in_background(file);
        }
        Ok(())
    })
    .map_err(|f| f.into_pyerr(py))
}

/// A keyword flag read by truth value, as `json.dumps` reads its flags (`sort_keys=1`).
pub struct Truth(bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Truth {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        obj.is_truthy().map(Truth)
    }
}

/// Exactly what ``json.dumps`` returns for the same arguments, computed in Rust.
///
/// Raises where ``json.dumps`` raises, with an exception of the same built-in class that is
/// also an :class:`AtomicJsonError` (``TypeError`` for unsupported values and keys or keys
/// that do not sort, ``ValueError`` for circular data and NaN with ``allow_nan=False``,
/// ``RecursionError`` for nesting deeper than :data:`MAX_DEPTH`). Exceptions raised by
/// ``default`` pass through unchanged, as in ``json.dumps``.
// A function of its own rather than a Python wrapper around `Encoding`: a Python frame with
// eight keyword defaults cost about as much as encoding a small document.
#[pyfunction]
#[pyo3(signature = (obj, *, skipkeys=Truth(false), ensure_ascii=Truth(true),
    check_circular=Truth(true), allow_nan=Truth(true), indent=None, separators=None,
    default=None, sort_keys=Truth(false)),
    text_signature = "(obj, *, skipkeys=False, ensure_ascii=True, check_circular=True, \
        allow_nan=True, indent=None, separators=None, default=None, sort_keys=False)")]
#[allow(clippy::too_many_arguments)]
pub fn dumps<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    skipkeys: Truth,
    ensure_ascii: Truth,
    check_circular: Truth,
    allow_nan: Truth,
    indent: Option<&Bound<'py, PyAny>>,
    separators: Option<&Bound<'py, PyAny>>,
    default: Option<Py<PyAny>>,
    sort_keys: Truth,
) -> PyResult<Bound<'py, PyAny>> {
    if !skipkeys.0
        && ensure_ascii.0
        && check_circular.0
        && allow_nan.0
        && indent.is_none()
        && separators.is_none()
        && default.is_none()
        && !sort_keys.0
    {
        return Encoding::json_defaults().dumps(py, obj);
    }
    Encoding::new(
        "json",
        indent,
        separators,
        ensure_ascii.0,
        allow_nan.0,
        sort_keys.0,
        skipkeys.0,
        check_circular.0,
        default,
        false,
    )?
    .dumps(py, obj)
}

/// The exact bytes `write_json` writes for `data`: both legacy sanitizing passes, then
/// `json.dumps(sort_keys=True, indent=2, ensure_ascii=False)` and a newline, as UTF-8.
#[pyfunction]
pub fn canonical_bytes<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (bytes, _) = Encoding::canonical().encode_to_vec(py, data, None)?;
    Ok(PyBytes::new(py, &bytes))
}

/// The sanitized value of `data`: both legacy passes (what `write_json` serializes), or with
/// `rules="telemetry"` / `"artifact"` one of them alone.
#[pyfunction]
#[pyo3(signature = (data, *, rules="both"))]
pub fn sanitize<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    rules: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let rules = match rules {
        "both" => Rules::Both,
        "telemetry" => Rules::Telemetry,
        "artifact" => Rules::Artifact,
        other => return Err(PyValueError::new_err(format!("unknown rules {other:?}"))),
    };
    let profile = Profile {
        sort_keys: true,
        skipkeys: false,
        allow_nan: true,
        extended: true,
        default: None,
        memo: Default::default(),
    };
    to_python(data, rules, &profile).map_err(|e| e.into_pyerr(py, None, false))
}

/// Write `data` canonically to `path`, atomically, under the exclusive `.lock` sidecar.
#[pyfunction]
#[pyo3(signature = (path, data, *, lock_timeout=Some(30.0), durable=true, remove_lock_file=false,
    owner=None, lock_mode="flock"))]
#[allow(clippy::too_many_arguments)]
pub fn write_json(
    py: Python<'_>,
    path: PathBuf,
    data: &Bound<'_, PyAny>,
    lock_timeout: Option<f64>,
    durable: bool,
    remove_lock_file: bool,
    owner: Option<u64>,
    lock_mode: &str,
) -> PyResult<()> {
    let how = WriteOptions {
        timeout: timeout_from(lock_timeout)?,
        durable,
        locked: true,
        remove_lock_file,
        owner,
        mode: lock_mode_from(lock_mode)?,
    };
    Encoding::canonical().write_file(py, path, data, how)
}

/// Write `payload` to `path` with the same lock and atomic replacement as `write_json`.
#[pyfunction]
#[pyo3(signature = (path, payload, *, lock_timeout=Some(30.0), durable=true,
    remove_lock_file=false, owner=None, lock_mode="flock"))]
#[allow(clippy::too_many_arguments)]
pub fn write_bytes(
    py: Python<'_>,
    path: PathBuf,
    payload: PyBackedBytes,
    lock_timeout: Option<f64>,
    durable: bool,
    remove_lock_file: bool,
    owner: Option<u64>,
    lock_mode: &str,
) -> PyResult<()> {
    let how = WriteOptions {
        timeout: timeout_from(lock_timeout)?,
        durable,
        locked: true,
        remove_lock_file,
        owner,
        mode: lock_mode_from(lock_mode)?,
    };
    write_locked(py, &path, Prepared::Bytes(&payload), how)
}

/// Parse JSON text (bytes or str) the way `json.loads` does, errors included.
#[pyfunction]
pub fn loads<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // A str is already decoded text (json.loads(str) refuses a BOM); bytes go through the
    // encoding detection of json.loads(bytes).
    let (bytes, decoded): (PyBackedBytes, bool) = if let Ok(s) = data.cast::<PyString>() {
        let encoded = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
        (encoded.extract()?, true)
    } else {
        let bytes = data
            .extract()
            .map_err(|_| PyTypeError::new_err("loads() takes str, bytes or bytearray"))?;
        (bytes, false)
    };
    let mut spare = take_spare();
    let (parsed, mut spare) = py.detach(|| {
        let parsed = if decoded {
            Document::parse_decoded_in(&bytes, &mut spare)
        } else {
            Document::parse_in(&bytes, &mut spare)
        };
        (parsed, spare)
    });
    match parsed {
        Ok(doc) => {
            let built = Builder::new(py, doc.key_count()).build(&doc);
            doc.recycle(&mut spare);
            keep_spare(spare);
            built.map_err(|e| int_too_long_error(py, e, None))
        }
        Err(err) => Err(decode_error(py, &err, None)),
    }
}

thread_local! {
    /// The buffers of this thread's last parse (see `read::Spare`).
    static SPARE: Cell<Spare> = Cell::new(Spare::default());
}

/// Most memory a thread keeps between parses.
const SPARE_KEEP: usize = 16 << 20;

/// This thread's spare parse buffers (a nested parse, from a finalizer say, finds none).
fn take_spare() -> Spare {
    SPARE.with(Cell::take)
}

fn keep_spare(spare: Spare) {
    if spare.capacity() <= SPARE_KEEP {
        SPARE.with(|cell| cell.set(spare));
    }
}

/// Read and parse the JSON file at `path` (no lock: the atomic writes never show a torn file).
#[pyfunction]
pub fn read_json<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let mut spare = take_spare();
    let (parsed, mut spare) = py.detach(|| {
        let parsed = read::read_file(&path, spare.take_text())
            .map_err(|e| Error::io(Step::Read, &path, e))
            .map(|bytes| Document::parse_vec_in(bytes, &mut spare));
        (parsed, spare)
    });
    match parsed {
        Ok(Ok(doc)) => {
            let built = Builder::new(py, doc.key_count()).build(&doc);
            doc.recycle(&mut spare);
            keep_spare(spare);
            built.map_err(|e| int_too_long_error(py, e, Some(&path)))
        }
        Ok(Err(err)) => Err(decode_error(py, &err, Some(&path))),
        Err(err) => Err(core_error(py, err)),
    }
}

/// The sidecar lock of a file, as the legacy helpers named it: `Path(path).with_suffix('.lock')`.
#[pyfunction]
pub fn lock_path_for(py: Python<'_>, path: PathBuf) -> PyResult<PathBuf> {
    lock::lock_path_for(&path).map_err(|e| core_error(py, e))
}

/// Who holds the lock of kind `lock_mode` on the lock file `lock_path` now: a list of
/// `(pid, command line or None)`, or None where the system cannot tell; and the description.
#[pyfunction]
#[pyo3(signature = (lock_path, lock_mode="flock"))]
pub fn lock_holders<'py>(
    py: Python<'py>,
    lock_path: PathBuf,
    lock_mode: &str,
) -> PyResult<(Option<Bound<'py, PyList>>, String)> {
    let mode = lock_mode_from(lock_mode)?;
    let holders = py.detach(|| lock::lock_holders(&lock_path, mode));
    let detail = holders.to_string();
    let list = match &holders {
        lock::Holders::Known(list) => {
            let out = PyList::empty(py);
            for h in list {
                out.append((h.pid, h.command.clone()))?;
            }
            Some(out)
        }
        lock::Holders::Recorded { record, .. } => {
            let out = PyList::empty(py);
            out.append((record.pid, Some(record.to_string())))?;
            Some(out)
        }
        lock::Holders::Unknown(_) => None,
    };
    Ok((list, detail))
}

/// Remove this library's orphaned temp files directly in `directory` older than
/// `older_than` seconds; returns the removed paths.
#[pyfunction]
pub fn cleanup_temp_files(
    py: Python<'_>,
    directory: PathBuf,
    older_than: f64,
) -> PyResult<Vec<PathBuf>> {
    let age = Duration::try_from_secs_f64(older_than.max(0.0)).unwrap_or(Duration::MAX);
    py.detach(|| atomic_write::cleanup_temp_files(&directory, age))
        .map_err(|e| core_error(py, e))
}

/// Called in a forked child: drop the lock descriptors inherited from the parent without
/// unlocking them (the parent still holds those locks).
#[pyfunction]
pub fn _forget_locks_after_fork() {
    lock::forget_all_after_fork();
}

/// The exclusive sidecar lock of one file, held between `acquire()` and `release()`.
///
/// Methods may be called from any thread: asyncio waits for the lock in a worker thread and
/// cancels or releases it from the event loop.
#[pyclass(frozen, module = "atomicjson._core")]
pub struct FileLock {
    lock_path: PathBuf,
    timeout: Option<Duration>,
    owner: u64,
    mode: LockMode,
    remove_lock_file: bool,
    guard: Mutex<Option<LockGuard>>,
    cancelled: AtomicBool,
}

#[pymethods]
impl FileLock {
    #[new]
    #[pyo3(signature = (path, *, timeout=Some(30.0), remove_lock_file=false, owner=None,
        lock_mode="flock"))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        timeout: Option<f64>,
        remove_lock_file: bool,
        owner: Option<u64>,
        lock_mode: &str,
    ) -> PyResult<FileLock> {
        Ok(FileLock {
            lock_path: lock::lock_path_for(&path).map_err(|e| core_error(py, e))?,
            timeout: timeout_from(timeout)?,
            owner: owner_or_thread(owner),
            mode: lock_mode_from(lock_mode)?,
            remove_lock_file,
            guard: Mutex::new(None),
            cancelled: AtomicBool::new(false),
        })
    }

    /// Block (GIL released) until the lock is held, the timeout runs out, Ctrl-C, or `cancel()`.
    fn acquire(&self, py: Python<'_>) -> PyResult<()> {
        if self.guard.lock().map(|g| g.is_some()).unwrap_or(false) {
            return Err(PyRuntimeError::new_err("this FileLock is already held"));
        }
        let cancelled = &self.cancelled;
        let mut watch = WaitWatch::new(&self.lock_path, self.mode);
        let mut check = || {
            if cancelled.load(Ordering::Relaxed) {
                return Err(Failure::Py(PyRuntimeError::new_err("lock wait cancelled")));
            }
            watch.check()
        };
        let guard = py
            .detach(|| {
                acquire_creating_dir(
                    &self.lock_path,
                    self.owner,
                    self.mode,
                    self.timeout,
                    self.remove_lock_file,
                    &mut check,
                )
            })
            .map_err(|f: Failure| f.into_pyerr(py))?;
        // `cancel()` came while the lock was being granted: the caller no longer wants it.
        if self.cancelled.load(Ordering::SeqCst) {
            drop(guard);
            return Err(PyRuntimeError::new_err("lock wait cancelled"));
        }
        if let Ok(mut slot) = self.guard.lock() {
            *slot = Some(guard);
        }
        Ok(())
    }

    /// Make a waiting `acquire()` give up within a few milliseconds (from any thread).
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Release the lock (a no-op when not held).
    fn release(&self) {
        let guard = self.guard.lock().ok().and_then(|mut g| g.take());
        drop(guard);
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        slf.get().acquire(slf.py())?;
        Ok(slf.clone())
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.release();
        false
    }

    #[getter]
    fn held(&self) -> bool {
        self.guard.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    #[getter]
    fn lock_path(&self) -> PathBuf {
        self.lock_path.clone()
    }

    /// `"flock"` or `"posix"`.
    #[getter]
    fn lock_mode(&self) -> &'static str {
        self.mode.name()
    }

    /// The logical owner: re-entrant acquisitions by the same owner do not wait.
    #[getter]
    fn owner(&self) -> u64 {
        self.owner
    }

    fn __repr__(&self) -> String {
        format!(
            "FileLock({:?}, lock_mode={:?}, held={})",
            self.lock_path.display().to_string(),
            self.mode.name(),
            if self.held() { "True" } else { "False" }
        )
    }
}
