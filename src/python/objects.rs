//! Builds Python objects from a parsed document (GIL held), as `json.loads` would.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::text::wtf8_to_str;
use crate::format;
use crate::read::Json;

/// Keys repeat across the objects of a document (records of one shape); `json.loads` shares one
/// str per distinct key too. Short keys only, so the memo stays small.
const MEMO_KEY_LEN: usize = 64;
/// Distinct keys memoized per document: bounds the work a file crafted for hash collisions
/// can cause (the hash is not keyed).
const MEMO_ENTRIES: usize = 2048;

/// The memo's keys borrow from the parsed document (no copy) and hash with a multiply-rotate
/// step per 8 bytes: SipHash and the key copies were ~10% of reading a 25 KB file.
pub struct Builder<'py, 'a> {
    py: Python<'py>,
    keys: HashMap<&'a [u8], Bound<'py, PyAny>, BuildHasherDefault<KeyHasher>>,
}

/// A fast non-cryptographic hash for short keys (a crafted file can make lookups slower,
/// never wrong; `MEMO_ENTRIES` bounds how much).
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56)
            .wrapping_mul(K);
        self.0 = h;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl<'py, 'a> Builder<'py, 'a> {
    pub fn new(py: Python<'py>) -> Self {
        Builder {
            py,
            keys: HashMap::default(),
        }
    }

    pub fn build(&mut self, value: &'a Json) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        // SAFETY: each constructor returns a new reference or NULL with an exception set.
        unsafe {
            let ptr = match value {
                Json::Null => return Ok(py.None().into_bound(py)),
                Json::Bool(b) => {
                    return Ok(pyo3::types::PyBool::new(py, *b).to_owned().into_any());
                }
                Json::Int(v) => ffi::PyLong_FromLongLong(*v),
                Json::BigInt(digits) => {
                    let c = std::ffi::CString::new(digits.as_bytes()).expect("digits have no NUL");
                    ffi::PyLong_FromString(c.as_ptr(), std::ptr::null_mut(), 10)
                }
                Json::Float(v) => ffi::PyFloat_FromDouble(*v),
                Json::Str(bytes) => return self.string(bytes),
                Json::Array(items) => {
                    let list = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
                    if list.is_null() {
                        return Err(PyErr::fetch(py));
                    }
                    let list = Bound::from_owned_ptr(py, list);
                    for (i, item) in items.iter().enumerate() {
                        let built = self.build(item)?;
                        // PyList_SetItem steals the reference.
                        ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, built.into_ptr());
                    }
                    return Ok(list);
                }
                Json::Object(pairs) => {
                    let dict = pyo3::types::PyDict::new(py);
                    for (key, item) in pairs.iter() {
                        let key = self.key(key)?;
                        let built = self.build(item)?;
                        // Later duplicates replace earlier ones, as in json.loads.
                        if ffi::PyDict_SetItem(dict.as_ptr(), key.as_ptr(), built.as_ptr()) != 0 {
                            return Err(PyErr::fetch(py));
                        }
                    }
                    return Ok(dict.into_any());
                }
            };
            Bound::from_owned_ptr_or_err(py, ptr)
        }
    }

    fn string(&self, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if format::has_surrogates(bytes) {
            return wtf8_to_str(self.py, bytes);
        }
        // SAFETY: the parser produced valid UTF-8 when it holds no surrogate.
        Ok(PyString::new(self.py, unsafe { std::str::from_utf8_unchecked(bytes) }).into_any())
    }

    fn key(&mut self, bytes: &'a [u8]) -> PyResult<Bound<'py, PyAny>> {
        if bytes.len() > MEMO_KEY_LEN {
            return self.string(bytes);
        }
        if let Some(k) = self.keys.get(bytes) {
            return Ok(k.clone());
        }
        let k = self.string(bytes)?;
        if self.keys.len() < MEMO_ENTRIES {
            self.keys.insert(bytes, k.clone());
        }
        Ok(k)
    }
}
