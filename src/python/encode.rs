//! Writes a Python document as JSON text into one growing buffer, with the GIL held.
//!
//! The walk asks `sanitize::classify` what each object stands for and lays it out as
//! `json.dumps` would with the chosen keywords.

use pyo3::ffi;
use pyo3::prelude::*;

use super::errors::{SerError, SerErrorKind};
use super::sanitize::{big_int_repr, classify, json_key, small_int, Entry, Node, Profile, Rules};
use super::text::Text;
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

pub struct Encoder<'a, 'py> {
    pub out: Vec<u8>,
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
}

impl<'a, 'py> Encoder<'a, 'py> {
    pub fn new(
        style: &'a Style,
        profile: &'a Profile<'py>,
        strict_utf8: bool,
        check_circular: bool,
        capacity: usize,
    ) -> Self {
        Encoder {
            out: Vec::with_capacity(capacity),
            style,
            profile,
            strict_utf8,
            check_circular,
            newline_indent: vec![b'\n'],
            stack: Vec::new(),
            has_surrogates: false,
            stack_limit: crate::stack::limit(),
        }
    }

    pub fn encode(&mut self, obj: &Bound<'py, PyAny>, rules: Rules) -> Result<(), SerError> {
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
                format::write_float(&mut self.out, v);
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

    #[inline]
    fn enter(&mut self, obj: &Bound<'py, PyAny>) -> Result<(), SerError> {
        if self.stack.len() >= MAX_DEPTH || crate::stack::exhausted(self.stack_limit) {
            return Err(self.depth_error());
        }
        self.stack.push(obj.as_ptr());
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

    #[inline]
    fn separate(&mut self) {
        self.out.extend_from_slice(&self.style.item_separator);
        if self.style.indent.is_some() {
            self.out.extend_from_slice(&self.newline_indent);
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
                ffi::PyList_Size(p)
            } else {
                ffi::PyTuple_Size(p)
            }
        };
        if len(ptr) == 0 {
            self.out.extend_from_slice(b"[]");
            return Ok(());
        }
        self.open(b'[');
        let mut i = 0;
        while (i as ffi::Py_ssize_t) < len(ptr) {
            // SAFETY: index checked against the current length just above.
            let item = unsafe {
                let raw = if is_list {
                    ffi::PyList_GetItem(ptr, i as ffi::Py_ssize_t)
                } else {
                    ffi::PyTuple_GetItem(ptr, i as ffi::Py_ssize_t)
                };
                Bound::from_borrowed_ptr(seq.py(), raw)
            };
            if i > 0 {
                self.separate();
            }
            self.encode(&item, rules).map_err(|e| e.at_index(i))?;
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
            self.out.extend_from_slice(&self.style.key_separator);
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
        let mut written = 0;
        for (key, value) in items {
            let Some(text) = json_key(key, self.profile)? else {
                continue;
            };
            if written > 0 {
                self.separate();
            }
            self.write_text(&text).map_err(|e| e.at_key(text.bytes()))?;
            self.out.extend_from_slice(&self.style.key_separator);
            self.encode(value, Rules::Json)
                .map_err(|e| e.at_key(text.bytes()))?;
            written += 1;
        }
        self.close(b'}');
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
