//! Python exceptions for everything the core reports.
//!
//! The exception classes live in `atomicjson/_errors.py` (multiple inheritance from OSError,
//! TypeError, ValueError and json.JSONDecodeError is plain there); this module builds them
//! through that file's `_make` factory.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

use crate::errors::Error;
use crate::lock::Holders;
use crate::read::DecodeError;

/// Why a value could not be serialized.
pub enum SerErrorKind {
    UnsupportedType(String),
    InvalidKey(String),
    /// `sort_keys` met keys that do not compare (Python's message).
    IncomparableKeys(String),
    KeyCollision(String),
    Circular,
    TooDeep,
    LoneSurrogate,
    OutOfRangeFloat,
    /// An int with more digits than Python converts to text (its message).
    IntTooLong(String),
    /// An exception raised by the data's own code (`__str__`, `isoformat`, `default`, ...).
    Python(PyErr),
}

enum Seg {
    Index(usize),
    Key(String),
}

/// A serialization error and where in the document it happened.
pub struct SerError {
    pub kind: SerErrorKind,
    /// Innermost first, filled in while the walk unwinds.
    segments: Vec<Seg>,
}

impl From<SerErrorKind> for SerError {
    fn from(kind: SerErrorKind) -> SerError {
        SerError {
            kind,
            segments: Vec::new(),
        }
    }
}

impl From<PyErr> for SerError {
    fn from(err: PyErr) -> SerError {
        SerErrorKind::Python(err).into()
    }
}

impl From<pyo3::CastError<'_, '_>> for SerError {
    fn from(err: pyo3::CastError<'_, '_>) -> SerError {
        PyErr::from(err).into()
    }
}

impl SerError {
    #[cold]
    pub fn at_index(mut self, index: usize) -> SerError {
        self.segments.push(Seg::Index(index));
        self
    }

    #[cold]
    pub fn at_key(mut self, key: &[u8]) -> SerError {
        self.segments
            .push(Seg::Key(String::from_utf8_lossy(key).into_owned()));
        self
    }

    /// `$.folds[3].scores`: keys that are identifiers after a dot, others quoted in brackets.
    pub fn location(&self) -> String {
        // A path thousands of levels deep says no more than its two ends.
        const SHOWN: usize = 12;
        let n = self.segments.len();
        let mut out = String::from("$");
        for (i, seg) in self.segments.iter().rev().enumerate() {
            if n > 2 * SHOWN && i >= SHOWN && i < n - SHOWN {
                if i == SHOWN {
                    out.push_str(&format!("...({} levels)...", n - 2 * SHOWN));
                }
                continue;
            }
            match seg {
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => {
                    let plain = !k.is_empty()
                        && !k.starts_with(|c: char| c.is_ascii_digit())
                        && k.chars().all(|c| c.is_alphanumeric() || c == '_');
                    if plain {
                        out.push('.');
                        out.push_str(k);
                    } else {
                        out.push_str(&format!("[{k:?}]"));
                    }
                }
            }
        }
        out
    }

    /// The Python exception. `file` names the file being written, if any. Exceptions raised by
    /// the data's own code pass through unchanged when `passthrough` (as `json.dumps` does),
    /// else they become the cause of a SerializationError.
    pub fn into_pyerr(self, py: Python<'_>, file: Option<&Path>, passthrough: bool) -> PyErr {
        let location = self.location();
        let (kind, text, cause) = match self.kind {
            SerErrorKind::UnsupportedType(t) => (
                "unsupported_type",
                format!("Object of type {t} is not JSON serializable"),
                None,
            ),
            SerErrorKind::InvalidKey(t) => (
                "invalid_key",
                format!("keys must be str, int, float, bool or None, not {t}"),
                None,
            ),
            SerErrorKind::IncomparableKeys(m) => ("unsupported_type", m, None),
            SerErrorKind::KeyCollision(k) => (
                "key_collision",
                format!("two keys of one dict become the same string {k:?}"),
                None,
            ),
            SerErrorKind::Circular => ("circular", "Circular reference detected".to_owned(), None),
            SerErrorKind::TooDeep => (
                "too_deep",
                format!(
                    "nesting deeper than {} levels (or a circular reference)",
                    super::encode::MAX_DEPTH
                ),
                None,
            ),
            SerErrorKind::LoneSurrogate => (
                "unencodable",
                "string with a lone surrogate cannot be encoded as UTF-8".to_owned(),
                None,
            ),
            SerErrorKind::OutOfRangeFloat => (
                "out_of_range",
                "Out of range float values are not JSON compliant".to_owned(),
                None,
            ),
            SerErrorKind::IntTooLong(m) => ("out_of_range", m, None),
            SerErrorKind::Python(err) => {
                if passthrough {
                    return err;
                }
                (
                    "serialization",
                    err.value(py)
                        .repr()
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    Some(err),
                )
            }
        };
        let mut message = text;
        if location != "$" {
            message.push_str(&format!(" (at {location})"));
        }
        if let Some(file) = file {
            message = format!("cannot serialize data for {}: {message}", file.display());
        }
        let attrs = PyDict::new(py);
        let _ = attrs.set_item("location", &location);
        make(py, kind, &message, None, file, &attrs, cause)
    }
}

static MAKE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Build an exception through `atomicjson._errors._make(kind, message, errno, filename, attrs)`.
fn make(
    py: Python<'_>,
    kind: &str,
    message: &str,
    errno: Option<i32>,
    filename: Option<&Path>,
    attrs: &Bound<'_, PyDict>,
    cause: Option<PyErr>,
) -> PyErr {
    let built = MAKE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("atomicjson._errors")?.getattr("_make")?.unbind())
        })
        .and_then(|make| make.bind(py).call1((kind, message, errno, filename, attrs)));
    match built {
        Ok(exc) => {
            let err = PyErr::from_value(exc);
            if let Some(cause) = cause {
                err.set_cause(py, Some(cause));
            }
            err
        }
        Err(err) => err,
    }
}

/// A core error as the matching AtomicJsonError subclass.
pub fn core_error(py: Python<'_>, err: Error) -> PyErr {
    let attrs = PyDict::new(py);
    match &err {
        Error::Io { step, path, source } => {
            let _ = attrs.set_item("step", step.id());
            make(
                py,
                "os",
                &err.to_string(),
                source.raw_os_error(),
                Some(path),
                &attrs,
                None,
            )
        }
        Error::LockTimeout {
            lock_path,
            timeout,
            holders,
        } => {
            let _ = attrs.set_item("lock_path", lock_path);
            let _ = attrs.set_item("timeout", timeout.as_secs_f64());
            let _ = attrs.set_item("holders", holders_to_py(py, holders));
            let recorded = match holders {
                Holders::Recorded { record, .. } => Some(record.to_string()),
                _ => None,
            };
            let _ = attrs.set_item("recorded_holder", recorded);
            make(
                py,
                "lock_timeout",
                &err.to_string(),
                None,
                Some(lock_path),
                &attrs,
                None,
            )
        }
        Error::InvalidPath { path, .. } => make(
            py,
            "invalid_path",
            &err.to_string(),
            None,
            Some(path),
            &attrs,
            None,
        ),
    }
}

/// The pids of the holders, or None where they cannot be known.
pub fn holders_to_py<'py>(py: Python<'py>, holders: &Holders) -> Option<Bound<'py, PyList>> {
    match holders {
        Holders::Known(list) => PyList::new(py, list.iter().map(|h| h.pid)).ok(),
        Holders::Unknown(_) | Holders::Recorded { .. } => None,
    }
}

/// A malformed document, as a JSONDecodeError that is also an AtomicJsonError.
pub fn decode_error(py: Python<'_>, err: &DecodeError, file: Option<&Path>) -> PyErr {
    let attrs = PyDict::new(py);
    let _ = attrs.set_item("msg", err.msg);
    let _ = attrs.set_item("pos", err.pos);
    let _ = attrs.set_item("lineno", err.lineno);
    let _ = attrs.set_item("colno", err.colno);
    let mut message = err.to_string();
    if let Some(file) = file {
        message = format!("{message} in {}", file.display());
    }
    make(py, "decode", &message, None, file, &attrs, None)
}

/// An integer too long for Python's int/str conversion limit, as `json.loads` raises it (a
/// `ValueError`), made an AtomicJsonError that names the file.
pub fn int_too_long_error(py: Python<'_>, err: PyErr, file: Option<&Path>) -> PyErr {
    if !err.is_instance_of::<pyo3::exceptions::PyValueError>(py) {
        return err;
    }
    let mut message = err.value(py).to_string();
    if let Some(file) = file {
        message = format!("{message} in {}", file.display());
    }
    make(
        py,
        "out_of_range",
        &message,
        None,
        file,
        &PyDict::new(py),
        Some(err),
    )
}
