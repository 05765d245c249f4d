//! Builds Python objects from a parsed document (GIL held), as `json.loads` would.

use std::sync::{Mutex, MutexGuard};

use pyo3::ffi;
use pyo3::prelude::*;

use super::text::new_ascii_str;
use crate::read::{Document, TextKind, Value};

/// Distinct keys memoized per document: bounds the table (and the work a file crafted for hash
/// collisions can cause: the hash is not keyed).
const MEMO_ENTRIES: usize = 2048;
/// Largest table (at most a quarter full then).
const MEMO_SLOTS: usize = 4 * MEMO_ENTRIES;
/// Slots looked at per key before growing the table, or at its largest size before giving up
/// on sharing that key (bounds the cost of collisions).
const MEMO_PROBES: usize = 16;

/// Builds the Python objects of a parsed document.
pub struct Builder<'py, 'a> {
    py: Python<'py>,
    keys: KeyMemo<'a>,
    /// The key strs kept between parses; None while another build holds them (a nested parse,
    /// from a finalizer the garbage collector ran, say).
    cache: Option<MutexGuard<'static, KeyCache>>,
}

/// Key strs kept from one parse to the next: the keys of the documents a program reads repeat
/// from file to file, and a kept str has its hash cached (SipHash of each new key was ~8% of a
/// 3 KB read) and costs no allocation and no deallocation. Direct-mapped, a new key replaces
/// the one in its slot; only ASCII keys of at most `CACHED_KEY_MAX` bytes, so at most
/// `KEY_CACHE_SLOTS` small strs stay alive. Equal keys of one document share one str through
/// the `KeyMemo` whatever this cache does, as in json.loads; across documents they may share
/// one too (strs are immutable).
pub struct KeyCache {
    slots: Vec<CachedKey>,
}

const KEY_CACHE_SLOTS: usize = 1024;
const CACHED_KEY_MAX: usize = 64;

#[derive(Clone, Copy)]
struct CachedKey {
    hash: u64,
    /// A compact ASCII str owned by the cache, or null.
    obj: *mut ffi::PyObject,
}

// SAFETY: the strs are only touched with the GIL held (by a Builder), and never released.
unsafe impl Send for CachedKey {}

static KEY_CACHE: Mutex<KeyCache> = Mutex::new(KeyCache { slots: Vec::new() });

impl KeyCache {
    /// A new reference to the cached str equal to the ASCII `key`, made and cached if needed.
    unsafe fn get(&mut self, key: &[u8], hash: u64) -> *mut ffi::PyObject {
        if key.len() > CACHED_KEY_MAX {
            return new_ascii_str(key);
        }
        if self.slots.is_empty() {
            self.slots = vec![
                CachedKey {
                    hash: 0,
                    obj: std::ptr::null_mut()
                };
                KEY_CACHE_SLOTS
            ];
        }
        let slot = &mut self.slots[hash as usize & (KEY_CACHE_SLOTS - 1)];
        if !slot.obj.is_null() && slot.hash == hash {
            let ascii = slot.obj.cast::<ffi::PyASCIIObject>();
            let len = (*ascii).length as usize;
            if std::slice::from_raw_parts(ascii.add(1).cast::<u8>(), len) == key {
                ffi::Py_INCREF(slot.obj);
                return slot.obj;
            }
        }
        let obj = new_ascii_str(key);
        if !obj.is_null() {
            ffi::Py_INCREF(obj);
            let old = std::mem::replace(slot, CachedKey { hash, obj });
            if !old.obj.is_null() {
                ffi::Py_DECREF(old.obj);
            }
        }
        obj
    }
}

/// Keys repeat across the objects of a document (records of one shape); `json.loads` gives
/// equal keys one shared str, and so does this memo. An open-addressing table whose keys
/// borrow from the document (no copy), hashed with a multiply-rotate step per 8 bytes (SipHash
/// and key copies were ~10% of reading a 25 KB file, a general `HashMap` ~10% after that).
struct KeyMemo<'a> {
    slots: Vec<Slot<'a>>,
    entries: usize,
}

#[derive(Clone, Copy)]
struct Slot<'a> {
    hash: u64,
    key: &'a [u8],
    /// A reference owned by the memo; null for an empty slot.
    obj: *mut ffi::PyObject,
}

const EMPTY: Slot<'static> = Slot {
    hash: 0,
    key: &[],
    obj: std::ptr::null_mut(),
};

#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A fast non-cryptographic hash (a crafted file can make lookups slower, never wrong; the
/// probe and entry limits bound how much). Keys longer than 64 bytes hash their first 56 and
/// last 8 bytes.
#[inline]
fn key_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let n = b.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n >= 8 {
        for k in 0..(n.min(64) - 1) / 8 {
            h = (h ^ word(b, 8 * k)).wrapping_mul(K).rotate_left(29);
        }
        h = (h ^ word(b, n - 8)).wrapping_mul(K);
    } else if n > 0 {
        let w = if n >= 4 {
            let half = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as u64;
            half(0) | half(n - 4) << 32
        } else {
            b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16
        };
        h = (h ^ w).wrapping_mul(K);
    }
    // A last multiply of the folded value: bytes that differ only in the top of a word (the
    // last digits of "k0000001", "b0_116") otherwise change only the top bits, and the memo
    // indexes by bits 32 and up (all such keys fell in one probe run and went unshared).
    let g = (h ^ h >> 32).wrapping_mul(K);
    g ^ g >> 32
}

impl<'a> KeyMemo<'a> {
    fn new(keys: usize) -> Self {
        // Room for the distinct keys of typical documents without regrowth.
        let size = (2 * keys).clamp(16, 256).next_power_of_two();
        KeyMemo {
            slots: vec![EMPTY; size],
            entries: 0,
        }
    }

    /// The shared str for `key` (a new reference), made by `make` (given the key's hash) the
    /// first time.
    #[inline]
    unsafe fn get(
        &mut self,
        key: &'a [u8],
        make: impl FnOnce(u64) -> *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        let hash = key_hash(key);
        loop {
            let mask = self.slots.len() - 1;
            let mut i = (hash >> 32) as usize & mask;
            for _ in 0..MEMO_PROBES {
                let slot = &mut self.slots[i];
                if slot.obj.is_null() {
                    if self.entries >= MEMO_ENTRIES {
                        return make(hash);
                    }
                    let obj = make(hash);
                    if !obj.is_null() {
                        ffi::Py_INCREF(obj);
                        *slot = Slot { hash, key, obj };
                        self.entries += 1;
                        if 2 * self.entries > self.slots.len() {
                            self.grow();
                        }
                    }
                    return obj;
                }
                if slot.hash == hash && slot.key == key {
                    ffi::Py_INCREF(slot.obj);
                    return slot.obj;
                }
                i = (i + 1) & mask;
            }
            // A run of collisions: a larger table spreads it, up to the size limit.
            if self.slots.len() >= MEMO_SLOTS {
                return make(hash);
            }
            self.grow();
        }
    }

    /// Double the table (the entries move with their stored hashes; one that finds no slot
    /// within the probe limit leaves the memo: later equal keys get their own str).
    unsafe fn grow(&mut self) {
        let size = 2 * self.slots.len();
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        let mask = self.slots.len() - 1;
        self.entries = 0;
        for slot in old.into_iter().filter(|s| !s.obj.is_null()) {
            let mut i = (slot.hash >> 32) as usize & mask;
            let mut placed = false;
            for _ in 0..MEMO_PROBES {
                if self.slots[i].obj.is_null() {
                    self.slots[i] = slot;
                    self.entries += 1;
                    placed = true;
                    break;
                }
                i = (i + 1) & mask;
            }
            if !placed {
                ffi::Py_DECREF(slot.obj);
            }
        }
    }
}

impl Drop for KeyMemo<'_> {
    fn drop(&mut self) {
        for slot in &self.slots {
            if !slot.obj.is_null() {
                // SAFETY: the memo owns this reference; a Builder only exists with the GIL.
                unsafe { ffi::Py_DECREF(slot.obj) };
            }
        }
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
    /// A builder for `keys` object keys (a hint to size the key memo).
    pub fn new(py: Python<'py>, keys: usize) -> Self {
        Builder {
            py,
            keys: KeyMemo::new(keys),
            cache: KEY_CACHE.try_lock().ok(),
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
                ffi::Py_DECREF(open.obj);
                if !open.key.is_null() {
                    ffi::Py_DECREF(open.key);
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
                    ffi::Py_DECREF(obj);
                    ffi::Py_DECREF(top.key);
                    top.key = std::ptr::null_mut();
                    if status != 0 {
                        return Err(PyErr::fetch(py));
                    }
                } else {
                    // Steals the reference; the index is in range (the list has `n` slots,
                    // still empty).
                    ffi::PyList_SET_ITEM(top.obj, top.index, obj);
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
    #[inline]
    unsafe fn key(&mut self, doc: &'a Document<'_>, i: usize) -> PyResult<*mut ffi::PyObject> {
        let Value::Str(bytes, kind) = doc.value(i) else {
            unreachable!("object keys are strings");
        };
        let cache = &mut self.cache;
        let obj = self.keys.get(bytes, |hash| match (kind, cache) {
            (TextKind::Ascii, Some(cache)) => cache.get(bytes, hash),
            _ => new_str(bytes, kind),
        });
        if obj.is_null() {
            return Err(PyErr::fetch(self.py));
        }
        Ok(obj)
    }
}

/// A new reference to an immortal-in-practice singleton.
#[inline]
unsafe fn new_ref(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    ffi::Py_INCREF(obj);
    obj
}

/// A new str (or NULL with an exception set) from the text of a string node.
#[inline]
unsafe fn new_str(bytes: &[u8], kind: TextKind) -> *mut ffi::PyObject {
    let (ptr, len) = (bytes.as_ptr().cast(), bytes.len() as ffi::Py_ssize_t);
    match kind {
        TextKind::Ascii => new_ascii_str(bytes),
        TextKind::Utf8 => ffi::PyUnicode_DecodeUTF8(ptr, len, std::ptr::null()),
        TextKind::Wtf8 => ffi::PyUnicode_DecodeUTF8(ptr, len, c"surrogatepass".as_ptr()),
    }
}
