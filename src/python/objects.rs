//! Builds Python objects from a parsed document (GIL held), as `json.loads` would.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::read::{Document, TextKind, Value};

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

/// An open container while building: the object, how many items are still to come, the next
/// list index, and for a dict the key of the value being built (a new reference, or null).
struct Open {
    obj: *mut ffi::PyObject,
    left: usize,
    index: ffi::Py_ssize_t,
    key: *mut ffi::PyObject,
    dict: bool,
}

impl<'py, 'a> Builder<'py, 'a> {
    pub fn new(py: Python<'py>) -> Self {
        Builder {
            py,
            keys: HashMap::default(),
        }
    }

    /// The Python objects of a whole document. Iterative (the explicit stack holds the open
    /// containers), so the nesting depth costs no native stack.
    pub fn build(&mut self, doc: &'a Document<'_>) -> PyResult<Bound<'py, PyAny>> {
        let mut stack: Vec<Open> = Vec::new();
        // SAFETY: `run` keeps every object in `stack` owned by its frame (or by its parent once
        // attached); on an error the frames still hold their references, released here.
        unsafe {
            let result = self.run(doc, &mut stack);
            for open in stack.iter().rev() {
                ffi::Py_DecRef(open.obj);
                if !open.key.is_null() {
                    ffi::Py_DecRef(open.key);
                }
            }
            result.map(|ptr| Bound::from_owned_ptr(self.py, ptr))
        }
    }

    /// Build the nodes in order; returns a new reference to the top-level value.
    unsafe fn run(
        &mut self,
        doc: &'a Document<'_>,
        stack: &mut Vec<Open>,
    ) -> PyResult<*mut ffi::PyObject> {
        let py = self.py;
        let mut i = 0;
        loop {
            let mut obj = match doc.value(i) {
                Value::Null => new_ref(ffi::Py_None()),
                Value::Bool(b) => new_ref(if b { ffi::Py_True() } else { ffi::Py_False() }),
                Value::Int(v) => ffi::PyLong_FromLongLong(v),
                Value::BigInt(digits) => {
                    let c = std::ffi::CString::new(digits).expect("digits have no NUL");
                    ffi::PyLong_FromString(c.as_ptr(), std::ptr::null_mut(), 10)
                }
                Value::Float(v) => ffi::PyFloat_FromDouble(v),
                Value::Str(bytes, kind) => new_str(bytes, kind),
                Value::Array(n) => {
                    let list = ffi::PyList_New(n as ffi::Py_ssize_t);
                    if !list.is_null() && n > 0 {
                        stack.push(Open {
                            obj: list,
                            left: n,
                            index: 0,
                            key: std::ptr::null_mut(),
                            dict: false,
                        });
                        i += 1;
                        continue;
                    }
                    list
                }
                Value::Object(n) => {
                    let dict = ffi::PyDict_New();
                    if !dict.is_null() && n > 0 {
                        stack.push(Open {
                            obj: dict,
                            left: n,
                            index: 0,
                            key: std::ptr::null_mut(),
                            dict: true,
                        });
                        let key = self.key(doc, i + 1)?;
                        stack.last_mut().expect("just pushed").key = key;
                        i += 2;
                        continue;
                    }
                    dict
                }
            };
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            i += 1;
            // Attach the finished value to its container; close containers as they fill up.
            while let Some(top) = stack.last_mut() {
                if top.dict {
                    // Later duplicates replace earlier ones, as in json.loads.
                    let status = ffi::PyDict_SetItem(top.obj, top.key, obj);
                    ffi::Py_DecRef(obj);
                    ffi::Py_DecRef(top.key);
                    top.key = std::ptr::null_mut();
                    if status != 0 {
                        return Err(PyErr::fetch(py));
                    }
                } else {
                    // Steals the reference; the index is in range (the list has `n` slots).
                    ffi::PyList_SetItem(top.obj, top.index, obj);
                    top.index += 1;
                }
                top.left -= 1;
                if top.left > 0 {
                    if top.dict {
                        top.key = self.key(doc, i)?;
                        i += 1;
                    }
                    break;
                }
                obj = top.obj;
                stack.pop();
            }
            if stack.is_empty() {
                return Ok(obj);
            }
        }
    }

    /// The key at node `i` (a new reference), shared with its earlier occurrences.
    unsafe fn key(&mut self, doc: &'a Document<'_>, i: usize) -> PyResult<*mut ffi::PyObject> {
        let Value::Str(bytes, kind) = doc.value(i) else {
            unreachable!("object keys are strings");
        };
        if bytes.len() <= MEMO_KEY_LEN {
            if let Some(k) = self.keys.get(bytes) {
                return Ok(k.clone().into_ptr());
            }
        }
        let k = Bound::from_owned_ptr_or_err(self.py, new_str(bytes, kind))?;
        if bytes.len() <= MEMO_KEY_LEN && self.keys.len() < MEMO_ENTRIES {
            self.keys.insert(bytes, k.clone());
        }
        Ok(k.into_ptr())
    }
}

/// A new reference to an immortal-in-practice singleton.
#[inline]
unsafe fn new_ref(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    ffi::Py_IncRef(obj);
    obj
}

/// A new str (or NULL with an exception set) from the text of a string node.
#[inline]
unsafe fn new_str(bytes: &[u8], kind: TextKind) -> *mut ffi::PyObject {
    let errors = match kind {
        TextKind::Ascii | TextKind::Utf8 => std::ptr::null(),
        TextKind::Wtf8 => c"surrogatepass".as_ptr(),
    };
    ffi::PyUnicode_DecodeUTF8(
        bytes.as_ptr().cast(),
        bytes.len() as ffi::Py_ssize_t,
        errors,
    )
}
