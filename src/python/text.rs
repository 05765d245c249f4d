//! Text taken from Python str objects without copying where possible.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::errors::SerError;

// Returns the UTF-8 buffer that the str object caches, so reading a str costs no copy.
pub(crate) use ffi::PyUnicode_AsUTF8AndSize;

/// A piece of text to write: a dict key, a string value, the result of `str()`.
pub enum Text<'py> {
    /// The UTF-8 buffer cached inside a str object, valid while `owner` lives (strs are immutable).
    Borrowed {
        owner: Bound<'py, PyString>,
        ptr: *const u8,
        len: usize,
    },
    /// UTF-8 made here.
    Utf8(Vec<u8>),
    Static(&'static str),
    /// A str holding lone surrogates, as WTF-8 ("surrogatepass"). `json.dumps` accepts it, a
    /// UTF-8 file cannot hold it.
    Wtf8(Vec<u8>),
}

/// The UTF-8 text of a str (no copy): its characters for a compact ASCII str, else the UTF-8
/// buffer CPython caches in it. `None` (no error set) for a str holding lone surrogates.
///
/// # Safety
/// `ptr` is a live str (or subclass) object; the slice lives as long as the object.
#[inline(always)]
pub unsafe fn str_utf8<'s>(ptr: *mut ffi::PyObject) -> Option<&'s [u8]> {
    // The characters of a compact ASCII str follow its header, and ASCII is UTF-8: no call.
    // Only where pyo3 knows the header's bit fields (not 3.14's, not PyPy's or GraalPy's).
    #[cfg(not(any(Py_3_14, PyPy, GraalPy)))]
    if ffi::PyUnicode_IS_COMPACT_ASCII(ptr) != 0 {
        let data = ptr.cast::<ffi::PyASCIIObject>().add(1).cast::<u8>();
        return Some(std::slice::from_raw_parts(
            data,
            ffi::PyUnicode_GET_LENGTH(ptr) as usize,
        ));
    }
    let mut size: ffi::Py_ssize_t = 0;
    let utf8 = PyUnicode_AsUTF8AndSize(ptr, &mut size);
    if utf8.is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    Some(std::slice::from_raw_parts(utf8.cast::<u8>(), size as usize))
}

impl<'py> Text<'py> {
    pub fn from_str_object(s: &Bound<'py, PyString>) -> Result<Text<'py>, SerError> {
        // SAFETY: s is a live str (or subclass) object, kept alive by the value returned.
        if let Some(text) = unsafe { str_utf8(s.as_ptr()) } {
            return Ok(Text::Borrowed {
                owner: s.clone(),
                ptr: text.as_ptr(),
                len: text.len(),
            });
        }
        // Only lone surrogates make the UTF-8 conversion fail.
        let encoded =
            s.call_method1(pyo3::intern!(s.py(), "encode"), ("utf-8", "surrogatepass"))?;
        let bytes: Vec<u8> = encoded.extract()?;
        Ok(Text::Wtf8(bytes))
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the buffer belongs to `owner`, which this value keeps alive.
            Text::Borrowed { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Text::Utf8(v) | Text::Wtf8(v) => v,
            Text::Static(s) => s.as_bytes(),
        }
    }

    pub fn has_lone_surrogates(&self) -> bool {
        matches!(self, Text::Wtf8(_))
    }

    /// The text as a Python str, reusing the original object where there is one.
    pub fn to_py(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Text::Borrowed { owner, .. } => Ok(owner.clone().into_any()),
            Text::Wtf8(v) => wtf8_to_str(py, v),
            // SAFETY: built from UTF-8 by this crate.
            Text::Utf8(v) => {
                Ok(PyString::new(py, unsafe { std::str::from_utf8_unchecked(v) }).into_any())
            }
            Text::Static(s) => Ok(PyString::new(py, s).into_any()),
        }
    }
}

/// A new str (or NULL with an exception set) holding `bytes`, known to be ASCII: what json
/// makes for them, a compact ASCII str, made at its final size and filled with one copy (the
/// decoders scan the bytes again first). Used for `dumps`' `ensure_ascii` output and for the
/// ASCII strings `read_json` builds.
///
/// # Safety
/// `bytes` is ASCII; the GIL is held.
#[inline]
pub unsafe fn new_ascii_str(bytes: &[u8]) -> *mut ffi::PyObject {
    debug_assert!(bytes.is_ascii());
    let obj = ffi::PyUnicode_New(bytes.len() as ffi::Py_ssize_t, 127);
    if !obj.is_null() {
        // A compact ASCII str keeps its characters right after its header; nobody else has
        // seen it yet (for an empty one, the shared empty str, nothing is written).
        let data = obj.cast::<ffi::PyASCIIObject>().add(1).cast::<u8>();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
    }
    obj
}

/// `new_ascii_str` as an owned object (for text the encoder wrote with `ensure_ascii`).
pub fn ascii_to_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the GIL is held (`py`); the caller passes ASCII text (checked in debug builds).
    unsafe { Bound::from_owned_ptr_or_err(py, new_ascii_str(bytes)) }
}

/// Decode WTF-8 (UTF-8 that may hold lone surrogates) into a Python str.
pub fn wtf8_to_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a valid buffer and a NUL-terminated error handler name.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeUTF8(
            bytes.as_ptr().cast(),
            bytes.len() as ffi::Py_ssize_t,
            c"surrogatepass".as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, ptr)
    }
}
