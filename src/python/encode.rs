//! Writes a Python document as JSON text into one growing buffer, with the GIL held.
//!
//! The walk asks `sanitize::classify` what each object stands for and lays it out as
//! `json.dumps` would with the chosen keywords.

use pyo3::ffi;
use pyo3::prelude::*;

use super::errors::{SerError, SerErrorKind};
use super::known::{self, Elem, Kind};
use super::sanitize::{
    big_int_repr, classify, json_key, key_less, small_int, str_key_order, Entry, Node, Profile,
    Rules,
};
use super::text::{str_utf8, Text};
use crate::format;

/// Nesting limit: deeper than Python's own `json` goes with its default recursion limit, and
/// shallow enough that the recursive walk stays far from the end of a thread's stack.
pub const MAX_DEPTH: usize = 2048;

/// The layout keywords of `json.dumps`.
#[derive(Clone, Debug)]
pub struct Style {
    /// `None` writes everything on one line; otherwise the text of one indentation level.
    pub indent: Option<Vec<u8>>,
    pub item_separator: Vec<u8>,
    pub key_separator: Vec<u8>,
    pub ensure_ascii: bool,
}

impl Style {
    /// `sort_keys=True, indent=2, separators=(',', ': '), ensure_ascii=False`: the legacy files.
    pub fn canonical() -> Style {
        Style {
            indent: Some(b"  ".to_vec()),
            item_separator: b",".to_vec(),
            key_separator: b": ".to_vec(),
            ensure_ascii: false,
        }
    }
}

/// An output buffer that goes back to its thread when dropped, so that the next encoding on
/// the thread writes into pages already mapped instead of growing a fresh buffer (regrowth
/// copies and page faults were ~10% of serializing a 4 MB document).
pub struct OutBuf(pub Vec<u8>);

/// Buffers above this capacity are freed rather than kept for the thread.
const KEEP_CAPACITY: usize = 16 << 20;
/// First capacity of a thread's buffer: most documents fit without regrowth.
const FIRST_CAPACITY: usize = 64 << 10;

thread_local! {
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl OutBuf {
    /// The thread's spare buffer, empty; a new one when it is in use (a nested call).
    pub fn take() -> Vec<u8> {
        let spare = SPARE.try_with(|s| s.take()).unwrap_or_default();
        if spare.capacity() == 0 {
            Vec::with_capacity(FIRST_CAPACITY)
        } else {
            spare
        }
    }
}

impl std::ops::Deref for OutBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for OutBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() <= KEEP_CAPACITY {
            buf.clear();
            // A thread being torn down keeps nothing.
            let _ = SPARE.try_with(|s| s.set(buf));
        }
    }
}

/// Takes an encoder's output while it is being written, whenever it reaches the part size:
/// swaps the full buffer for an empty one. Parts after the first may hold deferred floats,
/// which the sink turns into text (`format::expand_deferred_floats`).
pub trait Sink {
    fn take(&mut self, out: &mut Vec<u8>);
}

pub struct Encoder<'a, 'py> {
    pub out: Vec<u8>,
    /// Where `out` goes once it holds `part_size` bytes (checked between items, where the
    /// output is never looked at again); `part_size` is `usize::MAX` without a sink.
    sink: Option<&'a mut dyn Sink>,
    part_size: usize,
    /// Floats are written as `format::DEFERRED_FLOAT` records for the sink's writer thread to
    /// format without the GIL: set once a first part went to the sink.
    defer_floats: bool,
    style: &'a Style,
    profile: &'a Profile<'py>,
    /// Lone surrogates are an error (the output becomes a UTF-8 file) rather than passed on.
    strict_utf8: bool,
    check_circular: bool,
    /// "\n" followed by the indentation of the current level.
    newline_indent: Vec<u8>,
    /// The containers being written, outermost first: the depth, and at the depth limit the
    /// evidence of a cycle. Circular data always ends there, so the common case pays nothing.
    stack: Vec<*mut ffi::PyObject>,
    /// The output holds lone surrogates (only without `strict_utf8`).
    pub has_surrogates: bool,
    /// Where this thread's stack must stop growing.
    stack_limit: usize,
    /// `json.dumps` rules with no `default` and no extensions: nothing in the walk runs
    /// Python code, so dicts are written from `PyDict_Next` without a snapshot.
    no_callbacks: bool,
    /// Counts the steps of the walk that may allocate Python objects (and so start the
    /// garbage collector, which may run arbitrary code): entries of a dict fetched ahead
    /// are fetched again when this changed in the meantime.
    slow_steps: u64,
}

impl<'a, 'py> Encoder<'a, 'py> {
    pub fn new(
        style: &'a Style,
        profile: &'a Profile<'py>,
        strict_utf8: bool,
        check_circular: bool,
        out: Vec<u8>,
    ) -> Self {
        Encoder {
            out,
            sink: None,
            part_size: usize::MAX,
            defer_floats: false,
            style,
            profile,
            strict_utf8,
            check_circular,
            // Only indentation uses it: compact output allocates nothing here.
            newline_indent: if style.indent.is_some() {
                vec![b'\n']
            } else {
                Vec::new()
            },
            stack: Vec::with_capacity(32),
            has_surrogates: false,
            stack_limit: crate::stack::limit(),
            no_callbacks: profile.default.is_none() && !profile.extended,
            slow_steps: 0,
        }
    }

    /// Hands the output to `sink` in parts of about `part_size` bytes as it is written. The
    /// parts after the first may hold deferred floats; a document that fits in one part is
    /// plain text.
    pub fn stream_to(&mut self, sink: &'a mut dyn Sink, part_size: usize) {
        self.sink = Some(sink);
        self.part_size = part_size;
    }

    #[cold]
    #[inline(never)]
    fn hand_over(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            sink.take(&mut self.out);
            self.defer_floats = true;
        }
    }

    #[inline(always)]
    fn write_float(&mut self, v: f64) {
        if self.defer_floats {
            format::write_float_deferred(&mut self.out, v);
        } else {
            format::write_float(&mut self.out, v);
        }
    }

    pub fn encode(&mut self, obj: &Bound<'py, PyAny>, rules: Rules) -> Result<(), SerError> {
        if rules == Rules::Json && self.no_callbacks {
            // SAFETY: obj is live for the call.
            return unsafe { self.write_value(obj.as_ptr()) };
        }
        // SAFETY: obj is live for the call.
        if unsafe { self.write_scalar(obj.as_ptr()) } {
            return Ok(());
        }
        self.encode_general(obj, rules)
    }

    /// `encode` of anything but the scalars `write_scalar` takes.
    fn encode_general(&mut self, obj: &Bound<'py, PyAny>, rules: Rules) -> Result<(), SerError> {
        self.slow_steps += 1;
        // SAFETY: a type check on a live object.
        if rules == Rules::Json
            && !self.profile.sort_keys
            && unsafe { ffi::PyDict_CheckExact(obj.as_ptr()) } != 0
        {
            return self.write_dict_in_order(obj);
        }
        // SAFETY: a type check on a live object.
        if matches!(rules, Rules::Both | Rules::Artifact)
            && unsafe { ffi::PyDict_CheckExact(obj.as_ptr()) } != 0
            && self.write_plain_dict(obj)?
        {
            return Ok(());
        }
        // The legacy rules' conversions, which json.dumps rules get as extensions.
        if (matches!(rules, Rules::Both | Rules::Artifact)
            // SAFETY: a type check on a live object.
            || rules == Rules::Json
                && self.profile.extended
                // json.dumps rules write float subclasses (numpy.float64) as floats.
                && unsafe { ffi::PyFloat_Check(obj.as_ptr()) } == 0)
            && !is_container(obj.as_ptr())
            && self.write_known(obj)?
        {
            return Ok(());
        }
        match classify(obj, rules, self.profile)? {
            Node::Null => self.out.extend_from_slice(b"null"),
            Node::Bool(true) => self.out.extend_from_slice(b"true"),
            Node::Bool(false) => self.out.extend_from_slice(b"false"),
            Node::Int(int) => self.write_int(&int)?,
            Node::Float(float) => {
                // SAFETY: float is a float or float subclass; this reads its value.
                let v = unsafe { ffi::PyFloat_AsDouble(float.as_ptr()) };
                if !v.is_finite() && !self.profile.allow_nan {
                    return Err(SerErrorKind::OutOfRangeFloat.into());
                }
                self.write_float(v);
            }
            Node::Str(text) => self.write_text(&text)?,
            Node::Seq(seq, r) => {
                self.enter(obj)?;
                self.write_seq(&seq, r)?;
                self.stack.pop();
            }
            Node::Items(items, r) => {
                self.enter(obj)?;
                self.write_items(&items, r)?;
                self.stack.pop();
            }
            Node::Object {
                entries,
                rules: r,
                empty_source,
            } => {
                self.enter(obj)?;
                self.write_object(&entries, r, empty_source)?;
                self.stack.pop();
            }
            Node::JsonObject {
                items,
                empty_source,
            } => {
                self.enter(obj)?;
                self.write_json_object(&items, empty_source)?;
                self.stack.pop();
            }
            Node::Redirect(target, r) => {
                self.enter(obj)?;
                self.encode(&target, r)?;
                self.stack.pop();
            }
        }
        Ok(())
    }

    /// Writes an exact `str`, `int`, `float`, `bool` or `None` straight from a borrowed
    /// reference, running no Python code; false (nothing written) for anything else and for
    /// the rare scalars whose handling `classify` owns (lone surrogates, ints beyond 64 bits,
    /// refused NaN). Skipping `classify` here saves a reference count pair per value.
    ///
    /// # Safety
    /// `ptr` is a live object.
    #[inline(always)]
    unsafe fn write_scalar(&mut self, ptr: *mut ffi::PyObject) -> bool {
        match self.plain_scalar(ptr) {
            Some(plain) => {
                self.write_plain(plain);
                true
            }
            None => false,
        }
    }

    /// What `write_scalar` writes for `ptr`, read without writing; `None` for what it leaves
    /// to `classify`.
    ///
    /// # Safety
    /// `ptr` is a live object; a `Plain::Str` borrows its text.
    #[inline(always)]
    unsafe fn plain_scalar<'s>(&self, ptr: *mut ffi::PyObject) -> Option<Plain<'s>> {
        let ty = ffi::Py_TYPE(ptr);
        if std::ptr::eq(ty, &raw mut ffi::PyUnicode_Type) {
            return str_utf8(ptr).map(Plain::Str);
        }
        if std::ptr::eq(ty, &raw mut ffi::PyLong_Type) {
            if let Some(v) = compact_int(ptr) {
                return Some(Plain::Int(v));
            }
            let mut overflow = 0;
            let v = ffi::PyLong_AsLongLongAndOverflow(ptr, &mut overflow);
            // -1 with an error cannot happen for an exact int; overflow goes to classify.
            return (overflow == 0).then_some(Plain::Int(v));
        }
        if std::ptr::eq(ty, &raw mut ffi::PyFloat_Type) {
            let v = ffi::PyFloat_AS_DOUBLE(ptr);
            return (v.is_finite() || self.profile.allow_nan).then_some(Plain::Float(v));
        }
        if ptr == ffi::Py_True() {
            Some(Plain::Literal(b"true"))
        } else if ptr == ffi::Py_False() {
            Some(Plain::Literal(b"false"))
        } else if ptr == ffi::Py_None() {
            Some(Plain::Literal(b"null"))
        } else {
            None
        }
    }

    #[inline(always)]
    fn write_plain(&mut self, plain: Plain<'_>) {
        match plain {
            Plain::Str(text) => format::write_str(&mut self.out, text, self.style.ensure_ascii),
            Plain::Int(v) => format::write_i64(&mut self.out, v),
            Plain::Float(v) => self.write_float(v),
            Plain::Literal(text) => self.out.extend_from_slice(text),
        }
    }

    /// A dict of exact str keys and `plain_scalar` values under the legacy rules (per-feature
    /// maps, metric records): read once, then written in key order from what was read. No
    /// Python code runs from the first read to the last write (the sort is ours), so the texts
    /// borrowed from the dict's strs stay valid, and no entry, reference count or node is made
    /// per key. False (nothing written) for any other dict, which takes the general path.
    fn write_plain_dict(&mut self, dict: &Bound<'py, PyAny>) -> Result<bool, SerError> {
        let ptr = dict.as_ptr();
        let mut items: Vec<(*mut ffi::PyObject, &[u8], Plain<'_>)> = Vec::new();
        // SAFETY: ptr is an exact dict; dict_next yields borrowed references, and nothing runs
        // Python code before the last of them is used (see above).
        unsafe {
            items.reserve(ffi::PyDict_Size(ptr) as usize);
            let mut pos: ffi::Py_ssize_t = 0;
            let mut key: *mut ffi::PyObject = std::ptr::null_mut();
            let mut value: *mut ffi::PyObject = std::ptr::null_mut();
            while dict_next(ptr, &mut pos, &mut key, &mut value) {
                if ffi::PyUnicode_CheckExact(key) == 0 {
                    return Ok(false);
                }
                let (Some(text), Some(plain)) = (str_utf8(key), self.plain_scalar(value)) else {
                    return Ok(false);
                };
                items.push((key, text, plain));
            }
        }
        if items.is_empty() {
            return Ok(false); // `{}`: the general path tells it from a dict of skipped keys
        }
        let order = if items.windows(2).all(|w| key_less(w[0].1, w[1].1)) {
            None
        } else {
            // SAFETY: the keys are live exact strs (borrowed from the dict).
            let (py, n) = (dict.py(), items.len());
            Some(unsafe { str_key_order(py, n, |i| items[i].0, |i| items[i].1) })
        };
        self.enter(dict)?;
        self.open(b'{');
        for i in 0..items.len() {
            let (_, text, plain) = items[order.as_ref().map_or(i, |o| o[i])];
            if i > 0 {
                self.separate();
            }
            format::write_str(&mut self.out, text, self.style.ensure_ascii);
            format::append(&mut self.out, &self.style.key_separator);
            self.write_plain(plain);
        }
        self.close(b'}');
        self.stack.pop();
        Ok(true)
    }

    /// `encode` under `json.dumps` rules when no callback can run (`no_callbacks`).
    ///
    /// # Safety
    /// `ptr` is a live object that the caller keeps alive for the call.
    #[inline]
    unsafe fn write_value(&mut self, ptr: *mut ffi::PyObject) -> Result<(), SerError> {
        if self.write_scalar(ptr) {
            return Ok(());
        }
        let ty = ffi::Py_TYPE(ptr);
        if !self.profile.sort_keys && std::ptr::eq(ty, &raw mut ffi::PyDict_Type) {
            return self.write_dict_direct(ptr);
        }
        let py = Python::assume_attached();
        if std::ptr::eq(ty, &raw mut ffi::PyList_Type)
            || std::ptr::eq(ty, &raw mut ffi::PyTuple_Type)
        {
            // As `encode_general` writes them, without counting a slow step.
            self.enter_ptr(ptr)?;
            self.write_seq(Bound::ref_from_ptr(py, &ptr), Rules::Json)?;
            self.stack.pop();
            return Ok(());
        }
        self.encode_general(&Bound::from_borrowed_ptr(py, ptr), Rules::Json)
    }

    /// An exact dict in its own order when no callback can run: straight from `PyDict_Next`,
    /// no snapshot. Nested containers are still held by strong references while they are
    /// walked (with their keys, named in errors), so that even code run by the garbage
    /// collector cannot free them under the walk.
    ///
    /// # Safety
    /// `ptr` is a live exact dict that the caller keeps alive for the call.
    unsafe fn write_dict_direct(&mut self, ptr: *mut ffi::PyObject) -> Result<(), SerError> {
        self.enter_ptr(ptr)?;
        let size = ffi::PyDict_Size(ptr);
        if size == 0 {
            self.out.extend_from_slice(b"{}");
            self.stack.pop();
            return Ok(());
        }
        let py = Python::assume_attached();
        self.open(b'{');
        // In larger dicts the next entry is fetched, and its objects prefetched, before this
        // one is written: in a large document keys and values lie all over memory, and
        // waiting for each cache miss in turn was the larger part of the time. From 32
        // entries: below, the bookkeeping cost more than it saved (1-2% on the 3 KB document,
        // the 4 MB one unchanged).
        let ahead = size >= 32;
        let mut pos: ffi::Py_ssize_t = 0;
        let fetch = |pos: &mut ffi::Py_ssize_t| {
            let mut key: *mut ffi::PyObject = std::ptr::null_mut();
            let mut value: *mut ffi::PyObject = std::ptr::null_mut();
            if !dict_next(ptr, pos, &mut key, &mut value) {
                return None;
            }
            Some((key, value))
        };
        // The entry fetched ahead (borrowed), where to fetch it again, and `slow_steps` then.
        let mut next = None;
        let (mut next_from, mut next_seen) = (0, 0);
        let mut written = 0;
        while let Some((key, value)) = match next.take() {
            Some(entry) if next_seen == self.slow_steps => Some(entry),
            Some(_) => {
                pos = next_from;
                fetch(&mut pos)
            }
            None => fetch(&mut pos),
        } {
            if ahead {
                next_from = pos;
                next = fetch(&mut pos);
                next_seen = self.slow_steps;
                if let Some((k, v)) = next {
                    prefetch(k);
                    prefetch(v);
                }
            }
            let utf8 = if ffi::PyUnicode_CheckExact(key) != 0 {
                str_utf8(key)
            } else {
                None
            };
            // Other keys (and str keys with lone surrogates) as json.dumps converts them.
            let converted = match utf8 {
                Some(_) => None,
                None => {
                    self.slow_steps += 1;
                    match json_key(Bound::ref_from_ptr(py, &key), self.profile)? {
                        Some(text) => Some(text),
                        None => continue,
                    }
                }
            };
            if written > 0 {
                self.separate();
            }
            let key_text = match (&converted, utf8) {
                (Some(text), _) => {
                    self.write_text(text).map_err(|e| e.at_key(text.bytes()))?;
                    text.bytes()
                }
                (None, Some(text)) => {
                    format::write_str(&mut self.out, text, self.style.ensure_ascii);
                    text
                }
                (None, None) => unreachable!("a key is either borrowed or converted"),
            };
            format::append(&mut self.out, &self.style.key_separator);
            if !self.write_scalar(value) {
                let _key = Bound::from_borrowed_ptr(py, key);
                let value = Bound::from_borrowed_ptr(py, value);
                self.write_value(value.as_ptr())
                    .map_err(|e| e.at_key(key_text))?;
            }
            written += 1;
        }
        self.close(b'}');
        self.stack.pop();
        Ok(())
    }

    /// An exact dict under `json.dumps` rules without `sort_keys`, in its own order. Entries
    /// with a str key and a scalar value are written from borrowed references: nothing runs
    /// Python code while they are written, so the dict cannot change under the iteration. At
    /// the first other entry the rest are taken as strong references, before any callback
    /// runs, exactly as the snapshot `classify` takes.
    fn write_dict_in_order(&mut self, dict: &Bound<'py, PyAny>) -> Result<(), SerError> {
        let ptr = dict.as_ptr();
        // SAFETY: ptr is an exact dict; PyDict_Next yields borrowed references, used before
        // any Python code runs or turned into owned ones.
        unsafe {
            self.enter(dict)?;
            if ffi::PyDict_Size(ptr) == 0 {
                self.out.extend_from_slice(b"{}");
                self.stack.pop();
                return Ok(());
            }
            self.open(b'{');
            let mut pos: ffi::Py_ssize_t = 0;
            let mut key: *mut ffi::PyObject = std::ptr::null_mut();
            let mut value: *mut ffi::PyObject = std::ptr::null_mut();
            let mut written = 0;
            loop {
                let at = pos;
                if ffi::PyDict_Next(ptr, &mut pos, &mut key, &mut value) == 0 {
                    break;
                }
                let key_text = if ffi::PyUnicode_CheckExact(key) != 0 && is_scalar(value) {
                    str_utf8(key)
                } else {
                    None
                };
                let Some(key_text) = key_text else {
                    let py = dict.py();
                    let mut rest = Vec::new();
                    pos = at;
                    while ffi::PyDict_Next(ptr, &mut pos, &mut key, &mut value) != 0 {
                        rest.push((
                            Bound::from_borrowed_ptr(py, key),
                            Bound::from_borrowed_ptr(py, value),
                        ));
                    }
                    self.write_json_entries(&rest, written)?;
                    break;
                };
                if written > 0 {
                    self.separate();
                }
                format::write_str(&mut self.out, key_text, self.style.ensure_ascii);
                format::append(&mut self.out, &self.style.key_separator);
                if !self.write_scalar(value) {
                    // Scalars classify handles run no Python code either.
                    let value = Bound::from_borrowed_ptr(dict.py(), value);
                    self.encode(&value, Rules::Json)
                        .map_err(|e| e.at_key(key_text))?;
                }
                written += 1;
            }
            self.close(b'}');
            self.stack.pop();
        }
        Ok(())
    }

    /// numpy scalars and arrays and pandas Timestamps, written from their values with the
    /// text the legacy rules give them; false (nothing written) to leave them to `classify`.
    fn write_known(&mut self, obj: &Bound<'py, PyAny>) -> Result<bool, SerError> {
        match known::kind_of(obj)? {
            Kind::Other => return Ok(false),
            // As `item()` then the value: the scalar counts one level, like its redirect.
            Kind::Float => {
                let v = known::float_value(obj)?;
                if !v.is_finite() && !self.profile.allow_nan {
                    return Ok(false);
                }
                self.enter(obj)?;
                self.write_float(v);
            }
            Kind::Int => {
                let int = known::int_value(obj)?;
                self.enter(obj)?;
                self.write_int(&int)?;
            }
            Kind::Bool => {
                let truth = obj.is_truthy()?;
                self.enter(obj)?;
                self.out
                    .extend_from_slice(if truth { b"true" } else { b"false" });
            }
            Kind::Timestamp => {
                let mut text = Vec::with_capacity(48);
                if !known::write_isoformat(obj, &mut text)? {
                    return Ok(false);
                }
                format::write_str(&mut self.out, &text, self.style.ensure_ascii);
                return Ok(true);
            }
            Kind::Array => {
                let Some(array) = known::read_array(obj)? else {
                    return Ok(false);
                };
                // `tolist()` nests one list per dimension below the array's own level; at the
                // depth limit, or with NaN refused, the general path raises what it raises.
                if self.stack.len() + array.shape.len() >= MAX_DEPTH
                    || array.elem.is_float() && !self.profile.allow_nan
                {
                    return Ok(false);
                }
                self.enter(obj)?;
                let mut at = 0;
                self.write_array(array.bytes.as_bytes(), &array.shape, array.elem, &mut at);
            }
        }
        self.stack.pop();
        Ok(true)
    }

    /// One dimension of an array as nested lists, elements read from `data` at `at`.
    fn write_array(&mut self, data: &[u8], shape: &[usize], elem: Elem, at: &mut usize) {
        let (len, inner) = (shape[0], &shape[1..]);
        if len == 0 {
            self.out.extend_from_slice(b"[]");
            return;
        }
        self.open(b'[');
        for i in 0..len {
            if i > 0 {
                self.separate();
            }
            if inner.is_empty() {
                self.write_element(&data[*at..*at + elem.size()], elem);
                *at += elem.size();
            } else {
                self.write_array(data, inner, elem, at);
            }
        }
        self.close(b']');
    }

    #[inline]
    fn write_element(&mut self, b: &[u8], elem: Elem) {
        let out = &mut self.out;
        match elem {
            Elem::F16 => self.write_float(known::f16_to_f64(u16::from_ne_bytes([b[0], b[1]]))),
            Elem::F32 => self.write_float(f64::from(f32::from_ne_bytes(array(b)))),
            Elem::F64 => self.write_float(f64::from_ne_bytes(array(b))),
            Elem::I8 => format::write_i64(out, i64::from(b[0] as i8)),
            Elem::I16 => format::write_i64(out, i64::from(i16::from_ne_bytes([b[0], b[1]]))),
            Elem::I32 => format::write_i64(out, i64::from(i32::from_ne_bytes(array(b)))),
            Elem::I64 => format::write_i64(out, i64::from_ne_bytes(array(b))),
            Elem::U8 => format::write_u64(out, u64::from(b[0])),
            Elem::U16 => format::write_u64(out, u64::from(u16::from_ne_bytes([b[0], b[1]]))),
            Elem::U32 => format::write_u64(out, u64::from(u32::from_ne_bytes(array(b)))),
            Elem::U64 => format::write_u64(out, u64::from_ne_bytes(array(b))),
            Elem::Bool => out.extend_from_slice(if b[0] != 0 { b"true" } else { b"false" }),
        }
    }

    #[inline]
    fn enter(&mut self, obj: &Bound<'py, PyAny>) -> Result<(), SerError> {
        self.enter_ptr(obj.as_ptr())
    }

    #[inline]
    fn enter_ptr(&mut self, ptr: *mut ffi::PyObject) -> Result<(), SerError> {
        if self.stack.len() >= MAX_DEPTH || crate::stack::exhausted(self.stack_limit) {
            return Err(self.depth_error());
        }
        self.stack.push(ptr);
        Ok(())
    }

    #[cold]
    fn depth_error(&self) -> SerError {
        depth_error(&self.stack, self.check_circular)
    }

    fn write_int(&mut self, int: &Bound<'py, PyAny>) -> Result<(), SerError> {
        match small_int(int) {
            Some(v) => format::write_i64(&mut self.out, v),
            None => {
                let repr = big_int_repr(int)?;
                let text = Text::from_str_object(repr.cast::<pyo3::types::PyString>()?)?;
                self.out.extend_from_slice(text.bytes());
            }
        }
        Ok(())
    }

    #[inline]
    fn write_text(&mut self, text: &Text<'py>) -> Result<(), SerError> {
        if text.has_lone_surrogates() {
            if self.strict_utf8 && !self.style.ensure_ascii {
                return Err(SerErrorKind::LoneSurrogate.into());
            }
            self.has_surrogates |= !self.style.ensure_ascii;
        }
        format::write_str(&mut self.out, text.bytes(), self.style.ensure_ascii);
        Ok(())
    }

    /// Opens a container: `[` or `{`, then with indentation a newline one level deeper.
    #[inline]
    fn open(&mut self, bracket: u8) {
        self.out.push(bracket);
        if let Some(indent) = &self.style.indent {
            self.newline_indent.extend_from_slice(indent);
            self.out.extend_from_slice(&self.newline_indent);
        }
    }

    #[inline(always)]
    fn separate(&mut self) {
        if self.out.len() >= self.part_size {
            self.hand_over();
        }
        format::append(&mut self.out, &self.style.item_separator);
        if self.style.indent.is_some() {
            format::append(&mut self.out, &self.newline_indent);
        }
    }

    #[inline]
    fn close(&mut self, bracket: u8) {
        if let Some(indent) = &self.style.indent {
            let level = self.newline_indent.len() - indent.len();
            self.newline_indent.truncate(level);
            self.out.extend_from_slice(&self.newline_indent);
        }
        self.out.push(bracket);
    }

    fn write_seq(&mut self, seq: &Bound<'py, PyAny>, rules: Rules) -> Result<(), SerError> {
        // Items are fetched one at a time with the length read again each time: a callback
        // run while writing an item may change a list.
        let ptr = seq.as_ptr();
        // SAFETY: seq is a list or tuple (or subclass); items are turned into owned references.
        let is_list = unsafe { ffi::PyList_Check(ptr) } != 0;
        let len = |p| unsafe {
            if is_list {
                ffi::PyList_GET_SIZE(p)
            } else {
                ffi::PyTuple_GET_SIZE(p)
            }
        };
        if len(ptr) == 0 {
            self.out.extend_from_slice(b"[]");
            return Ok(());
        }
        self.open(b'[');
        let mut i = 0;
        while (i as ffi::Py_ssize_t) < len(ptr) {
            // SAFETY: index checked against the current length just above. Scalars are
            // written from the borrowed reference (no Python code runs meanwhile); anything
            // else is held by an owned one, as a callback may remove it from a list.
            unsafe {
                let raw = if is_list {
                    ffi::PyList_GET_ITEM(ptr, i as ffi::Py_ssize_t)
                } else {
                    ffi::PyTuple_GET_ITEM(ptr, i as ffi::Py_ssize_t)
                };
                if i > 0 {
                    self.separate();
                }
                if !self.write_scalar(raw) {
                    let item = Bound::from_borrowed_ptr(seq.py(), raw);
                    self.encode(&item, rules).map_err(|e| e.at_index(i))?;
                }
            }
            i += 1;
        }
        self.close(b']');
        Ok(())
    }

    fn write_items(&mut self, items: &[Bound<'py, PyAny>], rules: Rules) -> Result<(), SerError> {
        if items.is_empty() {
            self.out.extend_from_slice(b"[]");
            return Ok(());
        }
        self.open(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.separate();
            }
            self.encode(item, rules).map_err(|e| e.at_index(i))?;
        }
        self.close(b']');
        Ok(())
    }

    fn write_object(
        &mut self,
        entries: &[Entry<'py>],
        rules: Rules,
        empty_source: bool,
    ) -> Result<(), SerError> {
        if empty_source {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        }
        self.open(b'{');
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                self.separate();
            }
            self.write_text(&entry.key)
                .map_err(|e| e.at_key(entry.key.bytes()))?;
            format::append(&mut self.out, &self.style.key_separator);
            self.encode(&entry.value, rules)
                .map_err(|e| e.at_key(entry.key.bytes()))?;
        }
        self.close(b'}');
        Ok(())
    }

    /// A dict under `json.dumps` rules: each key converted (or skipped) right before its value.
    fn write_json_object(
        &mut self,
        items: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
        empty_source: bool,
    ) -> Result<(), SerError> {
        if empty_source {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        }
        self.open(b'{');
        self.write_json_entries(items, 0)?;
        self.close(b'}');
        Ok(())
    }

    /// Entries of a dict under `json.dumps` rules, after `written` entries already written.
    fn write_json_entries(
        &mut self,
        items: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
        mut written: usize,
    ) -> Result<(), SerError> {
        for (key, value) in items {
            let Some(text) = json_key(key, self.profile)? else {
                continue;
            };
            if written > 0 {
                self.separate();
            }
            self.write_text(&text).map_err(|e| e.at_key(text.bytes()))?;
            format::append(&mut self.out, &self.style.key_separator);
            self.encode(value, Rules::Json)
                .map_err(|e| e.at_key(text.bytes()))?;
            written += 1;
        }
        Ok(())
    }
}

/// The error for a walk that reached the depth or stack limit with the containers of `stack`
/// open: circular if one of them is open twice (and the caller checks for cycles), else too deep.
#[cold]
pub fn depth_error(stack: &[*mut ffi::PyObject], check_circular: bool) -> SerError {
    if check_circular {
        let mut seen = stack.to_vec();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return SerErrorKind::Circular.into();
        }
    }
    SerErrorKind::TooDeep.into()
}

/// Asks the CPU to start loading the start of an object (never faults, whatever the address).
#[inline(always)]
fn prefetch(ptr: *mut ffi::PyObject) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing observable and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// `PyDict_Next` (same positions, same results) with the combined table of 3.11 read in
/// place: the call and its checks were ~60 instructions an entry, a fifth of a small document.
/// Split tables (instance `__dict__`s) go through the call.
///
/// # Safety
/// `dict` is a live exact dict; the references returned are borrowed from it.
#[cfg(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy))))]
#[inline(always)]
pub(crate) unsafe fn dict_next(
    dict: *mut ffi::PyObject,
    pos: &mut ffi::Py_ssize_t,
    key: &mut *mut ffi::PyObject,
    value: &mut *mut ffi::PyObject,
) -> bool {
    // CPython 3.11's PyDictObject and the header of its keys object (Include/cpython/
    // dictobject.h, Include/internal/pycore_dict.h); the hash index follows the header, then
    // the entries: (hash, key, value) for a general table, (key, value) for str keys only.
    #[repr(C)]
    struct Dict {
        ob_base: ffi::PyObject,
        ma_used: ffi::Py_ssize_t,
        ma_version_tag: u64,
        ma_keys: *mut Keys,
        ma_values: *mut std::ffi::c_void,
    }
    #[repr(C)]
    struct Keys {
        dk_refcnt: ffi::Py_ssize_t,
        dk_log2_size: u8,
        dk_log2_index_bytes: u8,
        dk_kind: u8,
        dk_version: u32,
        dk_usable: ffi::Py_ssize_t,
        dk_nentries: ffi::Py_ssize_t,
    }
    const GENERAL: u8 = 0;
    let d = dict.cast::<Dict>();
    if !(*d).ma_values.is_null() {
        return ffi::PyDict_Next(dict, pos, key, value) != 0;
    }
    let keys = (*d).ma_keys;
    let n = (*keys).dk_nentries;
    let entries = keys
        .cast::<u8>()
        .add(std::mem::size_of::<Keys>() + (1usize << (*keys).dk_log2_index_bytes));
    let (stride, key_at) = if (*keys).dk_kind == GENERAL {
        (3, 1)
    } else {
        (2, 0)
    };
    let mut i = *pos;
    if i < 0 {
        return false;
    }
    while i < n {
        let entry = entries
            .cast::<*mut ffi::PyObject>()
            .add(i as usize * stride + key_at);
        let v = *entry.add(1);
        if !v.is_null() {
            *key = *entry;
            *value = v;
            *pos = i + 1;
            return true;
        }
        i += 1;
    }
    false
}

/// `PyDict_Next` where the table layout is not read here.
///
/// # Safety
/// `dict` is a live exact dict; the references returned are borrowed from it.
#[cfg(not(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy)))))]
#[inline(always)]
pub(crate) unsafe fn dict_next(
    dict: *mut ffi::PyObject,
    pos: &mut ffi::Py_ssize_t,
    key: &mut *mut ffi::PyObject,
    value: &mut *mut ffi::PyObject,
) -> bool {
    ffi::PyDict_Next(dict, pos, key, value) != 0
}

/// CPython stores ints in 30-bit digits (32-bit words) unless built with
/// `--enable-big-digits=15`; `compact_int` reads digits only when `sys.int_info` said 30.
static THIRTY_BIT_DIGITS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads `sys.int_info.bits_per_digit` (at import).
pub fn detect_int_layout(py: Python<'_>) -> PyResult<()> {
    let bits: u32 = py
        .import("sys")?
        .getattr("int_info")?
        .getattr("bits_per_digit")?
        .extract()?;
    THIRTY_BIT_DIGITS.store(bits == 30, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The value of an int of at most one digit, read from the object (no call); `None` for
/// larger ones and with 15-bit digits. The digits follow the variable-size header (refcount,
/// type, then the size or tag).
/// 3.9-3.11: `ob_size` is the signed digit count (0 has no digit at all).
///
/// # Safety
/// `ptr` is a live exact int.
#[cfg(all(target_pointer_width = "64", not(any(Py_3_12, PyPy, GraalPy))))]
#[inline(always)]
unsafe fn compact_int(ptr: *mut ffi::PyObject) -> Option<i64> {
    if !THIRTY_BIT_DIGITS.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let digit0 = || i64::from(*ptr.cast::<u8>().add(24).cast::<u32>());
    match (*ptr.cast::<ffi::PyVarObject>()).ob_size {
        0 => Some(0),
        1 => Some(digit0()),
        -1 => Some(-digit0()),
        _ => None,
    }
}

/// As above; 3.12-3.13: `lv_tag` is the digit count << 3 | the sign (0 positive, 1 zero, 2
/// negative), and a compact value (at most one digit) keeps digit 0, which is 0 for zero.
///
/// # Safety
/// `ptr` is a live exact int.
#[cfg(all(target_pointer_width = "64", Py_3_12, not(any(Py_3_14, PyPy, GraalPy))))]
#[inline(always)]
unsafe fn compact_int(ptr: *mut ffi::PyObject) -> Option<i64> {
    if !THIRTY_BIT_DIGITS.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let tag = *ptr.cast::<u8>().add(16).cast::<usize>();
    if tag >= 2 << 3 {
        return None;
    }
    let digit0 = i64::from(*ptr.cast::<u8>().add(24).cast::<u32>());
    Some((1 - (tag & 3) as i64) * digit0)
}

/// Where the int layout is not known here (3.14 on, PyPy, GraalPy, 32-bit): always the call.
///
/// # Safety
/// Nothing is read.
#[cfg(not(all(target_pointer_width = "64", not(any(Py_3_14, PyPy, GraalPy)))))]
#[inline(always)]
unsafe fn compact_int(_ptr: *mut ffi::PyObject) -> Option<i64> {
    None
}

/// An exact `str`, `int`, `float`, `bool` or `None`: written without running Python code.
///
/// # Safety
/// `ptr` is a live object.
#[inline(always)]
unsafe fn is_scalar(ptr: *mut ffi::PyObject) -> bool {
    let ty = ffi::Py_TYPE(ptr);
    std::ptr::eq(ty, &raw mut ffi::PyUnicode_Type)
        || std::ptr::eq(ty, &raw mut ffi::PyLong_Type)
        || std::ptr::eq(ty, &raw mut ffi::PyFloat_Type)
        || ptr == ffi::Py_True()
        || ptr == ffi::Py_False()
        || ptr == ffi::Py_None()
}

/// A scalar as `write_scalar` writes it.
#[derive(Clone, Copy)]
enum Plain<'s> {
    Str(&'s [u8]),
    Int(i64),
    Float(f64),
    Literal(&'static [u8]),
}

/// An exact dict, list or tuple: never one of the types `write_known` handles.
#[inline(always)]
fn is_container(ptr: *mut ffi::PyObject) -> bool {
    // SAFETY: ptr is a live object.
    let ty = unsafe { ffi::Py_TYPE(ptr) };
    std::ptr::eq(ty, &raw mut ffi::PyDict_Type)
        || std::ptr::eq(ty, &raw mut ffi::PyList_Type)
        || std::ptr::eq(ty, &raw mut ffi::PyTuple_Type)
}

/// The first N bytes of an element as an array (the caller passes exactly N).
#[inline(always)]
fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}
