//! A JSON parser that accepts exactly what Python's `json.loads(bytes)` accepts and reports
//! errors the way `json.JSONDecodeError` does (same message, character position, line, column).
//!
//! Pure Rust, std only: it runs without the GIL. It produces a [`Document`] (a flat list of
//! nodes whose strings point into the input, a fixed number of allocations per parse), which a
//! binding later turns into Python objects; [`parse`] gives a [`Json`] tree instead.
//!
//! Rules followed (CPython 3.11, C scanner in `Modules/_json.c`, `Lib/json/__init__.py`):
//! * the input encoding is detected like `json.detect_encoding` (UTF-8, UTF-8 with BOM,
//!   UTF-16/32 with or without BOM) and decoded with `surrogatepass`, so encoded lone surrogates
//!   are accepted; undecodable input is an error ("Invalid UTF-8" / "Invalid UTF-16" /
//!   "Invalid UTF-32", checked before any JSON error, like the `UnicodeDecodeError` Python raises
//!   before it parses);
//! * `NaN`, `Infinity`, `-Infinity` are accepted, numbers follow the C scanner's grammar (with
//!   its backtracking: `1.` and `1e` parse `1` and leave the rest as "Extra data");
//! * strings are strict (no raw control characters), `\uXXXX` surrogate pairs are joined, lone
//!   surrogates are kept;
//! * objects keep every pair in document order (duplicates included).
//!
//! The parser is not recursive; nesting deeper than [`MAX_DEPTH`] is an error.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Deepest nesting of arrays/objects accepted. The parser, [`Document::to_json`] and the Python
/// builder use no recursion (a 10,000-deep document parses on a 128 KiB stack); the limit
/// bounds the depth of a [`Json`] tree for its recursive consumers: the derived `Drop` of a `MAX_DEPTH`-deep tree needs under 1 MiB of stack
/// in release builds (about 3 MiB in debug builds), a recursive conversion needs its own frame
/// size times `MAX_DEPTH`.
pub const MAX_DEPTH: usize = 10_000;

const MSG_DEPTH: &str = "Maximum nesting depth (10000) exceeded";
const MSG_BOM: &str = "Unexpected UTF-8 BOM (decode using utf-8-sig)";
const MSG_UTF8: &str = "Invalid UTF-8";
const MSG_UTF16: &str = "Invalid UTF-16";
const MSG_UTF32: &str = "Invalid UTF-32";
const MSG_VALUE: &str = "Expecting value";
const MSG_EXTRA: &str = "Extra data";
const MSG_COMMA: &str = "Expecting ',' delimiter";
const MSG_COLON: &str = "Expecting ':' delimiter";
const MSG_NAME: &str = "Expecting property name enclosed in double quotes";
const MSG_UNTERMINATED: &str = "Unterminated string starting at";
const MSG_CONTROL: &str = "Invalid control character at";
const MSG_ESCAPE: &str = "Invalid \\escape";
const MSG_UESCAPE: &str = "Invalid \\uXXXX escape";

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Decimal digits (with a leading `-` if negative) of an integer outside `i64`.
    BigInt(Box<str>),
    /// Also `NaN`, `Infinity`, `-Infinity`; out-of-range literals become ±inf like `float()`.
    Float(f64),
    /// UTF-8, except that lone surrogates (from `\uD800`..`\uDFFF` escapes, or encoded in the
    /// input) appear as their 3-byte generalized-UTF-8 sequences: decode with `surrogatepass`.
    Str(Box<[u8]>),
    Array(Vec<Json>),
    /// All pairs in document order, duplicate keys kept.
    Object(Vec<(Box<[u8]>, Json)>),
}

/// The equivalent of `json.JSONDecodeError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub msg: &'static str,
    /// Character (code point) index into the decoded text.
    pub pos: usize,
    /// 1-based line number.
    pub lineno: usize,
    /// 1-based column number (in characters).
    pub colno: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: line {} column {} (char {})",
            self.msg, self.lineno, self.colno, self.pos
        )
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------------
// The parsed document

/// A parsed document as a flat list of nodes in document order: a container comes before its
/// items, each object key right before its value. Strings are spans of the text, or of one side
/// buffer for those with escapes, so parsing makes a fixed number of allocations whatever the
/// number of values (one per value was ~25% of reading a 25 KB file), and taking the document
/// apart needs no recursion.
pub struct Document<'a> {
    /// The input, or the decoded text for UTF-16/32 input.
    buf: Cow<'a, [u8]>,
    /// Where the text starts in `buf` (past a UTF-8 BOM).
    skip: usize,
    /// The unescaped text of the strings with escapes, one after another.
    side: Vec<u8>,
    nodes: Vec<Node>,
    /// Number of object keys (all objects).
    keys: usize,
}

/// Buffers a parse can reuse: taking them from the previous document of a thread means the
/// next read writes to memory that is already mapped (page faults on fresh buffers were ~25%
/// of reading a 4 MB file on the development VM).
#[derive(Default)]
pub struct Spare {
    text: Vec<u8>,
    nodes: Vec<Node>,
    side: Vec<u8>,
}

impl Spare {
    /// Bytes of memory held.
    pub fn capacity(&self) -> usize {
        self.text.capacity() + self.nodes.capacity() * size_of::<Node>() + self.side.capacity()
    }

    /// The buffer to read the next file into (empty, with the capacity of the last one).
    pub fn take_text(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.text)
    }
}

/// One value: `head` holds the tag, the kind of text of a string and a length (bytes of a
/// string or big integer, items of an array, pairs of an object); `data` an offset or a number.
#[derive(Clone, Copy)]
struct Node {
    head: u64,
    data: u64,
}

const T_NULL: u64 = 0;
const T_FALSE: u64 = 1;
const T_TRUE: u64 = 2;
const T_INT: u64 = 3;
const T_FLOAT: u64 = 4;
/// Digits in the text.
const T_BIGINT: u64 = 5;
/// A string without escapes: a span of the text.
const T_STR: u64 = 6;
/// A string with escapes: a span of the side buffer.
const T_SIDE: u64 = 7;
const T_ARRAY: u64 = 8;
const T_OBJECT: u64 = 9;
const TAG_MASK: u64 = 0xF;
/// Flags of a string (bits 4 and 5 of `head`): a byte >= 0x80, an encoded surrogate.
const F_NON_ASCII: u8 = 1;
const F_SURROGATE: u8 = 2;
const LEN_SHIFT: u32 = 8;

impl Node {
    #[inline(always)]
    fn new(tag: u64, len: usize, data: u64) -> Node {
        Node {
            head: tag | (len as u64) << LEN_SHIFT,
            data,
        }
    }

    #[inline(always)]
    fn string(tag: u64, flags: u8, start: usize, len: usize) -> Node {
        Node {
            head: tag | (flags as u64) << 4 | (len as u64) << LEN_SHIFT,
            data: start as u64,
        }
    }
}

/// What a string's bytes hold, so a consumer can pick the cheapest conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    Ascii,
    /// Valid UTF-8 with some non-ASCII character.
    Utf8,
    /// Holds lone surrogates as 3-byte sequences: decode with `surrogatepass`.
    Wtf8,
}

/// A node of a [`Document`], read with [`Document::value`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'d> {
    Null,
    Bool(bool),
    Int(i64),
    /// Decimal digits (with a leading `-` if negative) of an integer outside `i64`.
    BigInt(&'d str),
    Float(f64),
    Str(&'d [u8], TextKind),
    /// An array of this many items; they follow (each with its own items).
    Array(usize),
    /// An object of this many pairs; key (a `Str`), value, key, value ... follow.
    Object(usize),
}

impl<'a> Document<'a> {
    /// Parse a JSON document given as bytes, like Python's `json.loads(bytes)`.
    pub fn parse(bytes: &'a [u8]) -> Result<Document<'a>, DecodeError> {
        Document::parse_in(bytes, &mut Spare::default())
    }

    /// [`Document::parse`] with the buffers of `spare`.
    pub fn parse_in(bytes: &'a [u8], spare: &mut Spare) -> Result<Document<'a>, DecodeError> {
        Document::parse_buf(Cow::Borrowed(bytes), spare)
    }

    /// Parse text that is already decoded, like Python's `json.loads(str)`: `text` is the
    /// str's `encode("utf-8", "surrogatepass")`. No encoding detection and no BOM skipping: a
    /// leading U+FEFF is the error `json.loads(str)` raises.
    pub fn parse_decoded(text: &'a [u8]) -> Result<Document<'a>, DecodeError> {
        Document::parse_decoded_in(text, &mut Spare::default())
    }

    /// [`Document::parse_decoded`] with the buffers of `spare`.
    pub fn parse_decoded_in(
        text: &'a [u8],
        spare: &mut Spare,
    ) -> Result<Document<'a>, DecodeError> {
        if text.starts_with(b"\xef\xbb\xbf") {
            return Err(make_error(text, MSG_BOM, 0));
        }
        let (nodes, side, keys) = parse_text(text, spare)?;
        Ok(Document {
            buf: Cow::Borrowed(text),
            skip: 0,
            side,
            nodes,
            keys,
        })
    }

    fn parse_buf(buf: Cow<'a, [u8]>, spare: &mut Spare) -> Result<Document<'a>, DecodeError> {
        let (decoded, skip) = decode(&buf)?;
        let (nodes, side, keys) = parse_text(decoded.as_deref().unwrap_or(&buf[skip..]), spare)?;
        Ok(Document {
            buf: decoded.map_or(buf, Cow::Owned),
            skip,
            side,
            nodes,
            keys,
        })
    }

    /// Number of nodes (values and keys); node 0 is the top-level value.
    #[inline]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Number of object keys in the whole document (with repeats).
    #[inline]
    pub fn key_count(&self) -> usize {
        self.keys
    }

    /// Always false: a document holds at least its top-level value.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    #[inline]
    fn text(&self) -> &[u8] {
        &self.buf[self.skip..]
    }

    /// Node `i`; panics if `i >= self.len()`.
    #[inline(always)]
    pub fn value(&self, i: usize) -> Value<'_> {
        let n = self.nodes[i];
        let len = (n.head >> LEN_SHIFT) as usize;
        let start = n.data as usize;
        let kind = || match (n.head >> 4) as u8 & (F_NON_ASCII | F_SURROGATE) {
            0 => TextKind::Ascii,
            F_NON_ASCII => TextKind::Utf8,
            _ => TextKind::Wtf8,
        };
        match n.head & TAG_MASK {
            T_NULL => Value::Null,
            T_FALSE => Value::Bool(false),
            T_TRUE => Value::Bool(true),
            T_INT => Value::Int(n.data as i64),
            T_FLOAT => Value::Float(f64::from_bits(n.data)),
            T_BIGINT => {
                let digits = &self.text()[start..start + len];
                // SAFETY: the number scanner admitted only ASCII digits and a sign.
                Value::BigInt(unsafe { std::str::from_utf8_unchecked(digits) })
            }
            T_STR => Value::Str(&self.text()[start..start + len], kind()),
            T_SIDE => Value::Str(&self.side[start..start + len], kind()),
            T_ARRAY => Value::Array(len),
            _ => Value::Object(len),
        }
    }

    /// Give the document's buffers (emptied) to `spare` for the next parse.
    pub fn recycle(self, spare: &mut Spare) {
        let Document {
            buf,
            mut side,
            mut nodes,
            ..
        } = self;
        if let Cow::Owned(mut text) = buf {
            text.clear();
            spare.text = text;
        }
        nodes.clear();
        side.clear();
        spare.nodes = nodes;
        spare.side = side;
    }

    /// The document as a tree (built without recursion).
    pub fn to_json(&self) -> Json {
        enum Open {
            Array(Vec<Json>, usize),
            Object(Vec<(Box<[u8]>, Json)>, usize, Box<[u8]>),
        }
        let key = |i: usize| match self.value(i) {
            Value::Str(bytes, _) => Box::from(bytes),
            _ => unreachable!("object keys are strings"),
        };
        let mut stack: Vec<Open> = Vec::new();
        let mut i = 0;
        loop {
            let mut v = match self.value(i) {
                Value::Null => Json::Null,
                Value::Bool(b) => Json::Bool(b),
                Value::Int(n) => Json::Int(n),
                Value::BigInt(digits) => Json::BigInt(digits.into()),
                Value::Float(f) => Json::Float(f),
                Value::Str(bytes, _) => Json::Str(bytes.into()),
                Value::Array(0) => Json::Array(Vec::new()),
                Value::Object(0) => Json::Object(Vec::new()),
                Value::Array(n) => {
                    stack.push(Open::Array(Vec::with_capacity(n), n));
                    i += 1;
                    continue;
                }
                Value::Object(n) => {
                    stack.push(Open::Object(Vec::with_capacity(n), n, key(i + 1)));
                    i += 2;
                    continue;
                }
            };
            i += 1;
            loop {
                match stack.last_mut() {
                    None => return v,
                    Some(Open::Array(items, n)) => {
                        items.push(v);
                        if items.len() < *n {
                            break;
                        }
                        v = Json::Array(std::mem::take(items));
                    }
                    Some(Open::Object(pairs, n, k)) => {
                        pairs.push((std::mem::take(k), v));
                        if pairs.len() < *n {
                            *k = key(i);
                            i += 1;
                            break;
                        }
                        v = Json::Object(std::mem::take(pairs));
                    }
                }
                stack.pop();
            }
        }
    }
}

impl Document<'static> {
    /// [`Document::parse`] of a buffer the document keeps (as `read_json` reads it).
    pub fn parse_vec(bytes: Vec<u8>) -> Result<Document<'static>, DecodeError> {
        Document::parse_vec_in(bytes, &mut Spare::default())
    }

    /// [`Document::parse_vec`] with the buffers of `spare`.
    pub fn parse_vec_in(
        bytes: Vec<u8>,
        spare: &mut Spare,
    ) -> Result<Document<'static>, DecodeError> {
        Document::parse_buf(Cow::Owned(bytes), spare)
    }
}

/// Parse a JSON document given as bytes, like Python's `json.loads(bytes)`, into a tree.
pub fn parse(bytes: &[u8]) -> Result<Json, DecodeError> {
    Ok(Document::parse(bytes)?.to_json())
}

/// Parse text that is already decoded, like Python's `json.loads(str)`, into a tree (see
/// [`Document::parse_decoded`]).
pub fn parse_decoded(text: &[u8]) -> Result<Json, DecodeError> {
    Ok(Document::parse_decoded(text)?.to_json())
}

/// The whole content of the file at `path`: open, `fstat`, `read` into a buffer of the size
/// `fstat` gave plus one byte, close. A read that stops short exactly at that size is taken as
/// the end of the file (the file as it was at the `fstat`), which saves the `read` returning 0
/// that `std::fs::read` makes to confirm it: each system call costs ~2 µs on a VM, ~7% of
/// reading a 3 KB file. Otherwise it reads on until a `read` returns 0. `buf` (emptied first)
/// lends its capacity.
pub fn read_file(path: &Path, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    buf.clear();
    buf.try_reserve_exact(
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    )?;
    loop {
        if buf.len() == buf.capacity() {
            buf.try_reserve(buf.capacity().max(1 << 16))?;
        }
        let spare = buf.spare_capacity_mut();
        // SAFETY: `read` writes at most `spare.len()` bytes into the spare capacity.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let short = (n as usize) < spare.len();
        if n == 0 {
            return Ok(buf);
        }
        // SAFETY: the kernel initialized these `n` bytes.
        unsafe { buf.set_len(buf.len() + n as usize) };
        if short && buf.len() as u64 == size {
            return Ok(buf);
        }
    }
}

/// The encoding detection of `json.detect_encoding`: the text decoded to generalized UTF-8 if
/// the input is UTF-16/32, and how many bytes of UTF-8 BOM to skip otherwise.
fn decode(bytes: &[u8]) -> Result<(Option<Vec<u8>>, usize), DecodeError> {
    const BOM32_LE: &[u8] = b"\xff\xfe\x00\x00";
    const BOM32_BE: &[u8] = b"\x00\x00\xfe\xff";
    let text = |v| Ok((Some(v), 0));
    if bytes.starts_with(BOM32_LE) {
        return text(decode_utf32(&bytes[4..], false)?);
    }
    if bytes.starts_with(BOM32_BE) {
        return text(decode_utf32(&bytes[4..], true)?);
    }
    if bytes.starts_with(b"\xff\xfe") {
        return text(decode_utf16(&bytes[2..], false)?);
    }
    if bytes.starts_with(b"\xfe\xff") {
        return text(decode_utf16(&bytes[2..], true)?);
    }
    if bytes.starts_with(b"\xef\xbb\xbf") {
        return Ok((None, 3));
    }
    if bytes.len() >= 4 {
        if bytes[0] == 0 {
            return text(if bytes[1] != 0 {
                decode_utf16(bytes, true)?
            } else {
                decode_utf32(bytes, true)?
            });
        }
        if bytes[1] == 0 {
            return text(if bytes[2] != 0 || bytes[3] != 0 {
                decode_utf16(bytes, false)?
            } else {
                decode_utf32(bytes, false)?
            });
        }
    } else if bytes.len() == 2 {
        if bytes[0] == 0 {
            return text(decode_utf16(bytes, true)?);
        }
        if bytes[1] == 0 {
            return text(decode_utf16(bytes, false)?);
        }
    }
    Ok((None, 0))
}

// ---------------------------------------------------------------------------------------------
// Encodings

/// Append a code point (surrogates included) as generalized UTF-8.
#[inline]
fn push_cp(out: &mut Vec<u8>, cp: u32) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else if cp < 0x1_0000 {
        out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    }
}

/// Decode UTF-16 (BOM already removed) with `surrogatepass` into generalized UTF-8.
fn decode_utf16(b: &[u8], be: bool) -> Result<Vec<u8>, DecodeError> {
    let unit = |k: usize| {
        let pair = [b[2 * k], b[2 * k + 1]];
        if be {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    };
    let n = b.len() / 2;
    let mut out = Vec::with_capacity(n + n / 2);
    let mut k = 0;
    while k < n {
        let u = unit(k) as u32;
        k += 1;
        if (0xD800..0xDC00).contains(&u) && k < n {
            let u2 = unit(k) as u32;
            if (0xDC00..0xE000).contains(&u2) {
                push_cp(&mut out, 0x1_0000 + ((u - 0xD800) << 10) + (u2 - 0xDC00));
                k += 1;
                continue;
            }
        }
        push_cp(&mut out, u);
    }
    if !b.len().is_multiple_of(2) {
        return Err(make_error(&out, MSG_UTF16, out.len()));
    }
    Ok(out)
}

/// Decode UTF-32 (BOM already removed) with `surrogatepass` into generalized UTF-8.
fn decode_utf32(b: &[u8], be: bool) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(b.len() / 4);
    for c in b.chunks(4) {
        let cp = match <[u8; 4]>::try_from(c) {
            Ok(q) if be => u32::from_be_bytes(q),
            Ok(q) => u32::from_le_bytes(q),
            Err(_) => return Err(make_error(&out, MSG_UTF32, out.len())),
        };
        if cp > 0x10_FFFF {
            return Err(make_error(&out, MSG_UTF32, out.len()));
        }
        push_cp(&mut out, cp);
    }
    Ok(out)
}

/// Validate generalized UTF-8 (UTF-8 plus encoded surrogates, as Python's `surrogatepass`
/// decoder accepts). On failure, the byte offset of the first undecodable byte.
fn check_utf8(mut s: &[u8]) -> Result<(), usize> {
    let mut off = 0;
    loop {
        match std::str::from_utf8(s) {
            Ok(_) => return Ok(()),
            Err(e) => {
                let k = e.valid_up_to();
                let r = &s[k..];
                if r.len() >= 3
                    && r[0] == 0xED
                    && (0xA0..=0xBF).contains(&r[1])
                    && r[2] & 0xC0 == 0x80
                {
                    s = &r[3..];
                    off += k + 3;
                } else {
                    return Err(off + k);
                }
            }
        }
    }
}

/// Number of code points in a (generalized) UTF-8 prefix.
fn count_chars(s: &[u8]) -> usize {
    s.iter().filter(|&&c| (c as i8) >= -0x40).count()
}

/// Build the Python-style error for byte offset `at` of the decoded `text`.
fn make_error(text: &[u8], msg: &'static str, at: usize) -> DecodeError {
    let prefix = &text[..at];
    let pos = count_chars(prefix);
    let lineno = prefix.iter().filter(|&&c| c == b'\n').count() + 1;
    let colno = match prefix.iter().rposition(|&c| c == b'\n') {
        Some(nl) => pos - count_chars(&prefix[..nl]),
        None => pos + 1,
    };
    DecodeError {
        msg,
        pos,
        lineno,
        colno,
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

/// An error at a byte offset; converted to a [`DecodeError`] once, at the top.
struct PErr {
    msg: &'static str,
    at: usize,
}

#[inline]
fn perr<T>(msg: &'static str, at: usize) -> Result<T, PErr> {
    Err(PErr { msg, at })
}

/// Parse decoded text (generalized UTF-8, not yet validated) into nodes and side buffer.
#[allow(clippy::type_complexity)]
fn parse_text(text: &[u8], spare: &mut Spare) -> Result<(Vec<Node>, Vec<u8>, usize), DecodeError> {
    let mut nodes = std::mem::take(&mut spare.nodes);
    let mut side = std::mem::take(&mut spare.side);
    nodes.clear();
    side.clear();
    // About one value per 16 bytes in typical documents: few regrowths, little waste.
    nodes.reserve(text.len() / 16 + 4);
    let mut p = Parser {
        b: text,
        i: 0,
        nodes,
        side,
        keys: 0,
    };
    match p.parse_document() {
        Ok(()) => Ok((p.nodes, p.side, p.keys)),
        Err(e) => {
            // Python decodes the whole input before parsing: an undecodable byte anywhere wins.
            if let Err(bad) = check_utf8(text) {
                return Err(make_error(text, MSG_UTF8, bad));
            }
            Err(make_error(text, e.msg, e.at))
        }
    }
}

/// The powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// An open container: its node, how many items (pairs) it has so far, and its kind.
struct Open {
    node: usize,
    count: u64,
    object: bool,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    nodes: Vec<Node>,
    side: Vec<u8>,
    keys: usize,
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    // ' ', '\t', '\n', '\r'
    c <= b' ' && (1u64 << c) & ((1 << b' ') | (1 << b'\t') | (1 << b'\n') | (1 << b'\r')) != 0
}

#[inline(always)]
fn hex_val(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u32),
        b'a'..=b'f' => Some((c - b'a' + 10) as u32),
        b'A'..=b'F' => Some((c - b'A' + 10) as u32),
        _ => None,
    }
}

#[inline]
fn hex4(s: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &c in s {
        v = (v << 4) | hex_val(c)?;
    }
    Some(v)
}

/// Length of the (generalized) UTF-8 character starting with the non-ASCII byte `s[0]`, or
/// `None` if it is not decodable. Encoded surrogates (`ED A0..BF ..`) are accepted, as Python's
/// `surrogatepass` does; everything else follows UTF-8 (no overlongs, nothing above U+10FFFF).
#[inline]
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let cont = |k: usize| s.get(k).is_some_and(|&c| c & 0xC0 == 0x80);
    let range = |k: usize, lo: u8, hi: u8| s.get(k).is_some_and(|&c| (lo..=hi).contains(&c));
    match s[0] {
        0xC2..=0xDF if cont(1) => Some(2),
        0xE0 if range(1, 0xA0, 0xBF) && cont(2) => Some(3),
        0xE1..=0xEF if cont(1) && cont(2) => Some(3),
        0xF0 if range(1, 0x90, 0xBF) && cont(2) && cont(3) => Some(4),
        0xF1..=0xF3 if cont(1) && cont(2) && cont(3) => Some(4),
        0xF4 if range(1, 0x80, 0x8F) && cont(2) && cont(3) => Some(4),
        _ => None,
    }
}

/// Index of the first `"`, `\` or control character (< 0x20) at or after `p`, or `b.len()`;
/// validates the UTF-8 passed over (`Err`: offset of an undecodable byte) and adds to `flags`
/// what it met (`F_NON_ASCII`, `F_SURROGATE`).
#[inline(always)]
fn scan_string(b: &[u8], mut p: usize, flags: &mut u8) -> Result<usize, usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    loop {
        // 8 bytes at a time while they are plain ASCII.
        while let Some(chunk) = b.get(p..p + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap());
            let q = w ^ (LO * b'"' as u64);
            let s = w ^ (LO * b'\\' as u64);
            // The classic "has zero byte" / "has byte less than n" tests, plus non-ASCII bytes.
            // Only the lowest flagged byte is used, and it is always a true match.
            let m = ((q.wrapping_sub(LO) & !q)
                | (s.wrapping_sub(LO) & !s)
                | (w.wrapping_sub(LO * 0x20) & !w)
                | w)
                & HI;
            if m != 0 {
                p += (m.trailing_zeros() / 8) as usize;
                break;
            }
            p += 8;
        }
        // One byte or one multi-byte character.
        let Some(&c) = b.get(p) else {
            return Ok(p);
        };
        if c < 0x80 {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return Ok(p);
            }
            p += 1;
        } else {
            let n = utf8_char_len(&b[p..]).ok_or(p)?;
            *flags |= F_NON_ASCII;
            if c == 0xED && b[p + 1] >= 0xA0 {
                *flags |= F_SURROGATE;
            }
            p += n;
        }
    }
}

/// Skip the decimal digits at `p` (returns the index after them), appending them to `mant`
/// (wrapping: exact up to 19 digits in all). Eight at a time while there are eight.
#[inline(always)]
fn digits(b: &[u8], mut p: usize, mant: &mut u64) -> usize {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    while let Some(chunk) = b.get(p..p + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap());
        // Every byte 0x30..=0x39: high nibble 3, before and after adding 6.
        if w & HIGH != ZEROS || w.wrapping_add(0x0606_0606_0606_0606) & HIGH != ZEROS {
            break;
        }
        // Digit values (first digit in the low byte), combined pairwise: 2, 4, then 8 digits.
        let v = w - ZEROS;
        let v = v.wrapping_mul(10).wrapping_add(v >> 8);
        let v = (v & 0x0000_00FF_0000_00FF)
            .wrapping_mul(100 + (1_000_000 << 32))
            .wrapping_add(((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
            >> 32;
        *mant = mant.wrapping_mul(100_000_000).wrapping_add(v);
        p += 8;
    }
    while let Some(&c) = b.get(p) {
        if !c.is_ascii_digit() {
            break;
        }
        *mant = mant.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        p += 1;
    }
    p
}

impl Parser<'_> {
    /// The byte at the cursor, or 0 at the end (0 is never valid outside strings, and an error
    /// there is reported at the same offset as the end would be).
    #[inline(always)]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        const SPACES: u64 = 0x2020_2020_2020_2020;
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' {
                // Indentation comes in runs of spaces: 8 at a time.
                if let Some(chunk) = self.b.get(self.i..self.i + 8) {
                    let other = u64::from_le_bytes(chunk.try_into().unwrap()) ^ SPACES;
                    self.i += if other == 0 {
                        8
                    } else {
                        (other.trailing_zeros() / 8) as usize
                    };
                    continue;
                }
            } else if !is_ws(c) {
                break;
            }
            self.i += 1;
        }
    }

    fn parse_document(&mut self) -> Result<(), PErr> {
        self.skip_ws();
        self.parse_value()?;
        self.skip_ws();
        if self.i != self.b.len() {
            return perr(MSG_EXTRA, self.i);
        }
        Ok(())
    }

    #[inline(always)]
    fn push(&mut self, tag: u64, len: usize, data: u64) {
        self.nodes.push(Node::new(tag, len, data));
    }

    /// Parse one value (of any nesting) starting at the cursor. Iterative: open containers live
    /// on `open`; a container's node gets its item count when it closes.
    fn parse_value(&mut self) -> Result<(), PErr> {
        let mut open: Vec<Open> = Vec::new();
        'value: loop {
            match self.peek() {
                b'"' => self.parse_string()?,
                c @ (b'[' | b'{') => {
                    if open.len() >= MAX_DEPTH {
                        return perr(MSG_DEPTH, self.i);
                    }
                    let object = c == b'{';
                    self.push(if object { T_OBJECT } else { T_ARRAY }, 0, 0);
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == c + 2 {
                        // `]` and `}` follow `[` and `{` by 2 in ASCII.
                        self.i += 1;
                    } else {
                        open.push(Open {
                            node: self.nodes.len() - 1,
                            count: 0,
                            object,
                        });
                        if object {
                            self.parse_key()?;
                        }
                        continue 'value;
                    }
                }
                b'n' if self.b[self.i..].starts_with(b"null") => {
                    self.i += 4;
                    self.push(T_NULL, 0, 0);
                }
                b't' if self.b[self.i..].starts_with(b"true") => {
                    self.i += 4;
                    self.push(T_TRUE, 0, 0);
                }
                b'f' if self.b[self.i..].starts_with(b"false") => {
                    self.i += 5;
                    self.push(T_FALSE, 0, 0);
                }
                b'N' if self.b[self.i..].starts_with(b"NaN") => {
                    self.i += 3;
                    self.push(T_FLOAT, 0, f64::NAN.to_bits());
                }
                b'I' if self.b[self.i..].starts_with(b"Infinity") => {
                    self.i += 8;
                    self.push(T_FLOAT, 0, f64::INFINITY.to_bits());
                }
                b'-' if self.b[self.i..].starts_with(b"-Infinity") => {
                    self.i += 9;
                    self.push(T_FLOAT, 0, f64::NEG_INFINITY.to_bits());
                }
                _ => self.parse_number()?,
            }
            // The value is complete: count it; close the containers that end here.
            while let Some(top) = open.last_mut() {
                top.count += 1;
                self.skip_ws();
                match self.peek() {
                    b',' => {
                        self.i += 1;
                        self.skip_ws();
                        if top.object {
                            self.parse_key()?;
                        }
                        continue 'value;
                    }
                    c if c == if top.object { b'}' } else { b']' } => {
                        self.i += 1;
                        self.nodes[top.node].head |= top.count << LEN_SHIFT;
                        open.pop();
                    }
                    _ => return perr(MSG_COMMA, self.i),
                }
            }
            return Ok(());
        }
    }

    /// A key, the `:` after it and the whitespace around it.
    #[inline]
    fn parse_key(&mut self) -> Result<(), PErr> {
        if self.peek() != b'"' {
            return perr(MSG_NAME, self.i);
        }
        self.parse_string()?;
        self.keys += 1;
        self.skip_ws();
        if self.peek() != b':' {
            return perr(MSG_COLON, self.i);
        }
        self.i += 1;
        self.skip_ws();
        Ok(())
    }

    /// A string; the cursor is on the opening quote.
    fn parse_string(&mut self) -> Result<(), PErr> {
        let b = self.b;
        let begin = self.i;
        let start = begin + 1;
        let mut flags = 0;
        let mut p = scan_string(b, start, &mut flags).or_else(|bad| perr(MSG_UTF8, bad))?;
        if b.get(p) == Some(&b'"') {
            // No escapes: a span of the text.
            self.i = p + 1;
            self.nodes
                .push(Node::string(T_STR, flags, start, p - start));
            return Ok(());
        }
        let out = &mut self.side;
        let out_start = out.len();
        let mut chunk = start;
        loop {
            // `p` is on a quote, backslash or control character, or at the end.
            let Some(&c) = b.get(p) else {
                return perr(MSG_UNTERMINATED, begin);
            };
            if c == b'"' {
                break;
            }
            if c != b'\\' {
                return perr(MSG_CONTROL, p);
            }
            out.extend_from_slice(&b[chunk..p]);
            let Some(&e) = b.get(p + 1) else {
                return perr(MSG_UNTERMINATED, begin);
            };
            let simple = match e {
                b'"' | b'\\' | b'/' => e,
                b'b' => 0x08,
                b'f' => 0x0C,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => 0,
                _ => return perr(MSG_ESCAPE, p),
            };
            if e != b'u' {
                out.push(simple);
                p += 2;
            } else {
                // Like _json.c: the 4 digits must be followed by at least one more character,
                // and a pair is only tried if the second escape is too.
                let u = p + 1;
                let end = u + 5;
                if end >= b.len() {
                    return perr(MSG_UESCAPE, u);
                }
                let Some(mut cp) = hex4(&b[u + 1..end]) else {
                    return perr(MSG_UESCAPE, u);
                };
                p = end;
                if (0xD800..0xDC00).contains(&cp)
                    && end + 6 < b.len()
                    && b[end] == b'\\'
                    && b[end + 1] == b'u'
                {
                    let Some(lo) = hex4(&b[end + 2..end + 6]) else {
                        return perr(MSG_UESCAPE, end + 1);
                    };
                    if (0xDC00..0xE000).contains(&lo) {
                        cp = 0x1_0000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p = end + 6;
                    }
                }
                if cp >= 0x80 {
                    flags |= F_NON_ASCII;
                }
                if (0xD800..0xE000).contains(&cp) {
                    flags |= F_SURROGATE;
                }
                push_cp(out, cp);
            }
            chunk = p;
            p = scan_string(b, p, &mut flags).or_else(|bad| perr(MSG_UTF8, bad))?;
        }
        out.extend_from_slice(&b[chunk..p]);
        self.i = p + 1;
        let len = out.len() - out_start;
        self.nodes.push(Node::string(T_SIDE, flags, out_start, len));
        Ok(())
    }

    /// A number (the cursor is on its first byte) or, if none is there, "Expecting value".
    fn parse_number(&mut self) -> Result<(), PErr> {
        let b = self.b;
        let at = |k: usize| b.get(k).copied().unwrap_or(0);
        let start = self.i;
        let mut p = start;
        let neg = at(p) == b'-';
        if neg {
            p += 1;
        }
        let mut mant: u64 = 0;
        match at(p) {
            b'0' => p += 1,
            b'1'..=b'9' => p = digits(b, p, &mut mant),
            _ => return perr(MSG_VALUE, start),
        }
        let int_end = p;
        let mut is_float = false;
        // Digits after the point, also gathered into `mant`.
        let mut frac = 0;
        if at(p) == b'.' && at(p + 1).is_ascii_digit() {
            p = digits(b, p + 1, &mut mant);
            frac = p - int_end - 1;
            is_float = true;
        }
        let mut exp: i64 = 0;
        if (at(p) | 0x20) == b'e' {
            let mut q = p + 1;
            let exp_neg = at(q) == b'-';
            if at(q) == b'+' || exp_neg {
                q += 1;
            }
            if at(q).is_ascii_digit() {
                while let Some(&c) = b.get(q) {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    // Saturates far beyond any exponent the fast path takes.
                    exp = (exp * 10 + (c - b'0') as i64).min(1 << 32);
                    q += 1;
                }
                if exp_neg {
                    exp = -exp;
                }
                p = q;
                is_float = true;
            }
        }
        self.i = p;
        let ndigits = int_end - start - neg as usize + frac;
        if !is_float {
            // Up to 19 digits, `mant` is exact (< 10^19 < 2^64).
            if ndigits <= 19 {
                if !neg && mant <= i64::MAX as u64 {
                    self.push(T_INT, 0, mant);
                    return Ok(());
                }
                if neg && mant <= 1 << 63 {
                    self.push(T_INT, 0, mant.wrapping_neg());
                    return Ok(());
                }
            }
            self.push(T_BIGINT, p - start, start as u64);
            return Ok(());
        }
        // Clinger's fast path: a mantissa and a power of ten both exact as doubles give the
        // correctly rounded value with one multiplication or division (most floats of typical
        // documents; Rust's parser, used otherwise, was ~10% of reading the 4 MB benchmark).
        let exp10 = exp - frac as i64;
        if ndigits <= 19 && mant <= 1 << 53 && (-22..=22).contains(&exp10) {
            let m = mant as f64;
            let f = if exp10 >= 0 {
                m * POW10[exp10 as usize]
            } else {
                m / POW10[-exp10 as usize]
            };
            self.push(T_FLOAT, 0, if neg { -f } else { f }.to_bits());
            return Ok(());
        }
        // Rust's parser is correctly rounded and gives ±inf on overflow, like float().
        // SAFETY: the bytes are only ASCII digits, signs, '.' and 'e'/'E' (scanned above);
        // checking them again was ~3% of reading a 25 KB file.
        let text = unsafe { std::str::from_utf8_unchecked(&b[start..p]) };
        let f: f64 = text.parse().unwrap_or(f64::NAN);
        self.push(T_FLOAT, 0, f.to_bits());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Json {
        Json::Str(x.as_bytes().into())
    }
    fn raw(x: &[u8]) -> Json {
        Json::Str(x.into())
    }
    fn key(x: &str) -> Box<[u8]> {
        x.as_bytes().into()
    }
    fn ok(doc: &[u8]) -> Json {
        match parse(doc) {
            Ok(v) => v,
            Err(e) => panic!("{:?}: unexpected error {e}", String::from_utf8_lossy(doc)),
        }
    }
    /// Expected (msg, pos, lineno, colno), values taken from Python 3.11's json.loads.
    fn err(doc: &[u8], msg: &str, pos: usize, lineno: usize, colno: usize) {
        match parse(doc) {
            Ok(v) => panic!(
                "{:?}: expected error, got {v:?}",
                String::from_utf8_lossy(doc)
            ),
            Err(e) => assert_eq!(
                (e.msg, e.pos, e.lineno, e.colno),
                (msg, pos, lineno, colno),
                "{:?}",
                String::from_utf8_lossy(doc)
            ),
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(ok(b"null"), Json::Null);
        assert_eq!(ok(b"true"), Json::Bool(true));
        assert_eq!(ok(b"false"), Json::Bool(false));
        assert_eq!(ok(b" \t\r\n 0 \n"), Json::Int(0));
        assert_eq!(ok(b"-0"), Json::Int(0));
        assert_eq!(ok(b"\"\""), s(""));
        assert_eq!(ok(b"\"abc\""), s("abc"));
    }

    #[test]
    fn numbers() {
        assert_eq!(ok(b"123"), Json::Int(123));
        assert_eq!(ok(b"-123"), Json::Int(-123));
        assert_eq!(
            ok(b"999999999999999999"),
            Json::Int(999_999_999_999_999_999)
        );
        assert_eq!(ok(b"9223372036854775807"), Json::Int(i64::MAX));
        assert_eq!(ok(b"-9223372036854775808"), Json::Int(i64::MIN));
        assert_eq!(
            ok(b"9223372036854775808"),
            Json::BigInt("9223372036854775808".into())
        );
        assert_eq!(
            ok(b"-9223372036854775809"),
            Json::BigInt("-9223372036854775809".into())
        );
        let big = "1234567890".repeat(30);
        assert_eq!(ok(big.as_bytes()), Json::BigInt(big.as_str().into()));
        assert_eq!(ok(b"1.5"), Json::Float(1.5));
        assert_eq!(ok(b"-0.0"), Json::Float(-0.0));
        assert!(matches!(ok(b"-0.0"), Json::Float(f) if f.is_sign_negative()));
        assert_eq!(ok(b"1e3"), Json::Float(1000.0));
        assert_eq!(ok(b"1E+3"), Json::Float(1000.0));
        assert_eq!(ok(b"25e-1"), Json::Float(2.5));
        assert_eq!(ok(b"0.1"), Json::Float(0.1));
        assert_eq!(ok(b"1.7976931348623157e308"), Json::Float(f64::MAX));
        assert_eq!(ok(b"1e400"), Json::Float(f64::INFINITY));
        assert_eq!(ok(b"-1e400"), Json::Float(f64::NEG_INFINITY));
        assert_eq!(ok(b"1e-400"), Json::Float(0.0));
        assert_eq!(ok(b"Infinity"), Json::Float(f64::INFINITY));
        assert_eq!(ok(b"-Infinity"), Json::Float(f64::NEG_INFINITY));
        assert!(matches!(ok(b"NaN"), Json::Float(f) if f.is_nan()));
        assert_eq!(
            ok(b"[1,-2.5,3e1]"),
            Json::Array(vec![Json::Int(1), Json::Float(-2.5), Json::Float(30.0)])
        );
    }

    #[test]
    fn floats_match_rusts_parser() {
        // The fast path (short mantissa, small exponent) and the fallback, bit for bit.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let r = next();
            let digits = (r % 20 + 1) as u32;
            let mant = next() % 10u64.pow(digits.min(19));
            let point = (r >> 8) as usize % (digits as usize + 1);
            let exp = ((r >> 16) % 60) as i64 - 30;
            let sign = if r >> 40 & 1 == 1 { "-" } else { "" };
            let all = format!("{mant:0width$}", width = digits as usize);
            let (int, frac) = all.split_at(point);
            let int = match int.trim_start_matches('0') {
                "" => "0",
                int => int,
            };
            let mut text = if frac.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{frac}")
            };
            if r >> 41 & 1 == 1 || frac.is_empty() {
                text = format!("{text}e{exp}");
            }
            let text = format!("{sign}{text}");
            let want: f64 = text.parse().unwrap();
            match ok(text.as_bytes()) {
                Json::Float(f) => assert_eq!(f.to_bits(), want.to_bits(), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            "0.1",
            "-0.0",
            "0e0",
            "9007199254740992e22",
            "9007199254740993e-22",
            "1e23",
        ] {
            let want: f64 = text.parse().unwrap();
            assert_eq!(ok(text.as_bytes()), Json::Float(want), "{text}");
        }
    }

    #[test]
    fn number_errors() {
        err(b"-", "Expecting value", 0, 1, 1);
        err(b"01", "Extra data", 1, 1, 2);
        err(b"1.", "Extra data", 1, 1, 2);
        err(b".5", "Expecting value", 0, 1, 1);
        err(b"1e", "Extra data", 1, 1, 2);
        err(b"1e+", "Extra data", 1, 1, 2);
        err(b"nan", "Expecting value", 0, 1, 1);
        err(b"inf", "Expecting value", 0, 1, 1);
        err(b"-Inf", "Expecting value", 0, 1, 1);
        err(b"nul", "Expecting value", 0, 1, 1);
        err(b"truex", "Extra data", 4, 1, 5);
        err(b"-a", "Expecting value", 0, 1, 1);
        err(b"+1", "Expecting value", 0, 1, 1);
        err(b"[1.e5]", "Expecting ',' delimiter", 2, 1, 3);
    }

    #[test]
    fn document_errors() {
        err(b"", "Expecting value", 0, 1, 1);
        err(b"  \n ", "Expecting value", 4, 2, 2);
        err(b"1 2", "Extra data", 2, 1, 3);
        err(b"[] x", "Extra data", 3, 1, 4);
        err(b"\x0c1", "Expecting value", 0, 1, 1);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            ok(br#""\" \\ \/ \b \f \n \r \t""#),
            s("\" \\ / \u{8} \u{c} \n \r \t")
        );
        assert_eq!(ok(br#""\u00e9\u00E9\u0041\u0000""#), s("\u{e9}\u{e9}A\0"));
        assert_eq!(
            ok("\"h\u{e9}\u{20ac}\u{1f600}\"".as_bytes()),
            s("h\u{e9}\u{20ac}\u{1f600}")
        );
        assert_eq!(ok(b"\"\x7f\""), s("\x7f"));
        assert_eq!(ok(br#""\ud83d\ude00""#), s("\u{1f600}"));
        assert_eq!(ok(br#""\uD83D\uDE00x""#), s("\u{1f600}x"));
        // Lone surrogates kept as 3-byte sequences.
        assert_eq!(ok(br#""\ud800""#), raw(b"\xed\xa0\x80"));
        assert_eq!(ok(br#""\udc00\ud800""#), raw(b"\xed\xb0\x80\xed\xa0\x80"));
        assert_eq!(ok(br#""\ud83d\n""#), raw(b"\xed\xa0\xbd\n"));
        assert_eq!(ok(br#""\ud83d\u0041""#), raw(b"\xed\xa0\xbdA"));
        // Encoded surrogates in the input are accepted (surrogatepass) and kept apart.
        assert_eq!(ok(b"\"\xed\xa0\x80\""), raw(b"\xed\xa0\x80"));
        assert_eq!(
            ok(b"\"\\ud800\xed\xb0\x80\""),
            raw(b"\xed\xa0\x80\xed\xb0\x80")
        );
        // Long strings through the word-at-a-time scanner.
        let long = "abcdefgh\u{e9}".repeat(50);
        assert_eq!(ok(format!("\"{long}\"").as_bytes()), s(&long));
        assert_eq!(
            ok(format!("\"{long}\\n{long}\"").as_bytes()),
            s(&format!("{long}\n{long}"))
        );
    }

    #[test]
    fn string_errors() {
        err(b"\"abc", "Unterminated string starting at", 0, 1, 1);
        err(b"[\"abc", "Unterminated string starting at", 1, 1, 2);
        err(b"\"\\\"", "Unterminated string starting at", 0, 1, 1);
        err(b"\"\\", "Unterminated string starting at", 0, 1, 1);
        err(b"\"a\x01\"", "Invalid control character at", 2, 1, 3);
        err(b"\"a\x01", "Invalid control character at", 2, 1, 3);
        err(b"\"a\nb\"", "Invalid control character at", 2, 1, 3);
        err(
            b"\"abcdefghijklmno\tp\"",
            "Invalid control character at",
            16,
            1,
            17,
        );
        err(b"\"\\x\"", "Invalid \\escape", 1, 1, 2);
        err(b"\"\\\x01\"", "Invalid \\escape", 1, 1, 2);
        err(b"\"\\u12\"", "Invalid \\uXXXX escape", 2, 1, 3);
        err(b"\"\\u1234", "Invalid \\uXXXX escape", 2, 1, 3);
        err(b"\"\\u12", "Invalid \\uXXXX escape", 2, 1, 3);
        err(b"\"\\u12g4\"", "Invalid \\uXXXX escape", 2, 1, 3);
        err(b"\"\\ud83d\\ude00", "Invalid \\uXXXX escape", 8, 1, 9);
        err(b"\"\\ud83d\\ude0\"", "Invalid \\uXXXX escape", 8, 1, 9);
        err(b"\"\\ud83d\\uzzzz\"", "Invalid \\uXXXX escape", 8, 1, 9);
        err(b"[\"\\ud83d\\", "Unterminated string starting at", 1, 1, 2);
        err(b"[\"\\ud83d\\u", "Invalid \\uXXXX escape", 9, 1, 10);
        err(
            b"\"\\ud83d\\ude00 ",
            "Unterminated string starting at",
            0,
            1,
            1,
        );
        err(
            "[\"\u{e9}\u{1f600}\\q\"]".as_bytes(),
            "Invalid \\escape",
            4,
            1,
            5,
        );
    }

    #[test]
    fn scanner_at_every_offset() {
        for k in 0..40 {
            let body = "x".repeat(40);
            let (a, b) = body.split_at(k);
            err(
                format!("\"{a}\x01{b}\"").as_bytes(),
                MSG_CONTROL,
                k + 1,
                1,
                k + 2,
            );
            err(
                format!("\"{a}\"{b}\"").as_bytes(),
                MSG_EXTRA,
                k + 2,
                1,
                k + 3,
            );
            assert_eq!(
                ok(format!("\"{a}\\n{b}\"").as_bytes()),
                s(&format!("{a}\n{b}"))
            );
            assert_eq!(
                ok(format!("\"{a}\u{e9}{b}\"").as_bytes()),
                s(&format!("{a}\u{e9}{b}"))
            );
            assert_eq!(
                ok(format!("\"{a}\u{1f600}{b}\"").as_bytes()),
                s(&format!("{a}\u{1f600}{b}"))
            );
            err(
                &[b"\"", a.as_bytes(), b"\xff", b.as_bytes(), b"\""].concat(),
                MSG_UTF8,
                k + 1,
                1,
                k + 2,
            );
            err(
                &[b"\"", a.as_bytes(), b"\xe2\x82"].concat(),
                MSG_UTF8,
                k + 1,
                1,
                k + 2,
            );
            err(format!("\"{a}").as_bytes(), MSG_UNTERMINATED, 0, 1, 1);
        }
    }

    #[test]
    fn utf8_scanner_agrees_with_validator() {
        let walk = |s: &[u8]| {
            let mut p = 0;
            while p < s.len() {
                if s[p] < 0x80 {
                    p += 1;
                } else {
                    p += utf8_char_len(&s[p..]).ok_or(p)?;
                }
            }
            Ok(())
        };
        let tails = [0x41, 0x80, 0x8F, 0x90, 0xA0, 0xBF, 0xC0];
        for a in 0x80..=0xFF_u8 {
            for b in 0..=0xFF_u8 {
                for c in tails {
                    for d in tails {
                        let s = [a, b, c, d];
                        assert_eq!(walk(&s), check_utf8(&s), "{s:x?}");
                        assert_eq!(walk(&s[..3]), check_utf8(&s[..3]), "{s:x?}");
                    }
                }
                assert_eq!(walk(&[a, b]), check_utf8(&[a, b]), "{a:x} {b:x}");
            }
        }
    }

    #[test]
    fn containers() {
        assert_eq!(ok(b"[]"), Json::Array(vec![]));
        assert_eq!(ok(b"[ \n ]"), Json::Array(vec![]));
        assert_eq!(ok(b"{}"), Json::Object(vec![]));
        assert_eq!(ok(b"{ \t }"), Json::Object(vec![]));
        assert_eq!(
            ok(br#" { "a" : [1, {"b": null}, []], "c": {} } "#),
            Json::Object(vec![
                (
                    key("a"),
                    Json::Array(vec![
                        Json::Int(1),
                        Json::Object(vec![(key("b"), Json::Null)]),
                        Json::Array(vec![])
                    ])
                ),
                (key("c"), Json::Object(vec![])),
            ])
        );
        // Duplicate keys are all kept, in order.
        assert_eq!(
            ok(br#"{"a":1, "b":2, "a":3}"#),
            Json::Object(vec![
                (key("a"), Json::Int(1)),
                (key("b"), Json::Int(2)),
                (key("a"), Json::Int(3))
            ])
        );
        assert_eq!(
            ok(br#"{"\u00e9\n":"x"}"#),
            Json::Object(vec![(key("\u{e9}\n"), s("x"))])
        );
    }

    #[test]
    fn container_errors() {
        err(b"[", "Expecting value", 1, 1, 2);
        err(b"[1", "Expecting ',' delimiter", 2, 1, 3);
        err(b"[1,", "Expecting value", 3, 1, 4);
        err(b"[1,]", "Expecting value", 3, 1, 4);
        err(b"[,]", "Expecting value", 1, 1, 2);
        err(b"[1 2]", "Expecting ',' delimiter", 3, 1, 4);
        err(b"[1}", "Expecting ',' delimiter", 2, 1, 3);
        err(b"]", "Expecting value", 0, 1, 1);
        err(
            b"{",
            "Expecting property name enclosed in double quotes",
            1,
            1,
            2,
        );
        err(
            b"{ ",
            "Expecting property name enclosed in double quotes",
            2,
            1,
            3,
        );
        err(
            b"{\"a\":1,}",
            "Expecting property name enclosed in double quotes",
            7,
            1,
            8,
        );
        err(
            b"{'a':1}",
            "Expecting property name enclosed in double quotes",
            1,
            1,
            2,
        );
        err(
            b"{a:1}",
            "Expecting property name enclosed in double quotes",
            1,
            1,
            2,
        );
        err(b"{\"a\" 1}", "Expecting ':' delimiter", 5, 1, 6);
        err(b"{\"a\"", "Expecting ':' delimiter", 4, 1, 5);
        err(b"{\"a\":}", "Expecting value", 5, 1, 6);
        err(b"{\"a\":", "Expecting value", 5, 1, 6);
        err(b"{\"a\":1", "Expecting ',' delimiter", 6, 1, 7);
        err(b"{\"a\":1 \"b\":2}", "Expecting ',' delimiter", 7, 1, 8);
        err(b"{\"a\":1]", "Expecting ',' delimiter", 6, 1, 7);
        err(b"[\n1,\n2 x]", "Expecting ',' delimiter", 7, 3, 3);
        err(
            "{\"\u{e9}\u{1f600}\": [1,\n  \"\u{e9}\"\n  x".as_bytes(),
            "Expecting ',' delimiter",
            19,
            3,
            3,
        );
    }

    #[test]
    fn encodings() {
        // UTF-8 BOM skipped; a second one is a character.
        assert_eq!(ok(b"\xef\xbb\xbf[1]"), Json::Array(vec![Json::Int(1)]));
        err(b"\xef\xbb\xbf\xef\xbb\xbf[1]", "Expecting value", 0, 1, 1);
        err(b"\xef\xbb\xbf[1,]", "Expecting value", 3, 1, 4);
        let want = Json::Array(vec![Json::Int(1), s("\u{e9}\u{1f600}")]);
        let text = "[1, \"\u{e9}\u{1f600}\"]";
        let utf16le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let utf32le: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        let utf32be: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_be_bytes())
            .collect();
        assert_eq!(ok(&[&b"\xff\xfe"[..], &utf16le].concat()), want);
        assert_eq!(ok(&[&b"\xfe\xff"[..], &utf16be].concat()), want);
        assert_eq!(ok(&utf16le), want);
        assert_eq!(ok(&utf16be), want);
        assert_eq!(ok(&[&b"\xff\xfe\x00\x00"[..], &utf32le].concat()), want);
        assert_eq!(ok(&[&b"\x00\x00\xfe\xff"[..], &utf32be].concat()), want);
        assert_eq!(ok(&utf32le), want);
        assert_eq!(ok(&utf32be), want);
        // Short inputs (json.detect_encoding rules).
        assert_eq!(ok(b"\x00\x00\x001"), Json::Int(1));
        assert_eq!(ok(b"1\x00\x00\x00"), Json::Int(1));
        assert_eq!(ok(b"\x001"), Json::Int(1));
        assert_eq!(ok(b"1\x00"), Json::Int(1));
        err(b"1\x00\x00", "Extra data", 1, 1, 2);
        err(b"\x00", "Expecting value", 0, 1, 1);
        err(b"\xff\xfe\x00\x00", "Expecting value", 0, 1, 1);
        err(b"\xfe\xff\xfe\xff\x00[\x00]", "Expecting value", 0, 1, 1);
        // Lone surrogates in UTF-16/32 (surrogatepass).
        assert_eq!(
            ok(b"\xff\xfe\"\x00\x00\xdc\x00\xd8a\x00\"\x00"),
            raw(b"\xed\xb0\x80\xed\xa0\x80a")
        );
        assert_eq!(
            ok(b"\xff\xfe\x00\x00\"\x00\x00\x00\x00\xd8\x00\x00\"\x00\x00\x00"),
            raw(b"\xed\xa0\x80")
        );
        err(
            b"\xff\xfe\"\x00\x00\xd8",
            "Unterminated string starting at",
            0,
            1,
            1,
        );
        // Errors in UTF-16 are reported in characters.
        let bad: Vec<u8> = "[\"\u{1f600}\",\n x]"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        err(&bad, "Expecting value", 7, 2, 2);
        // Undecodable input.
        err(b"\xff\xfe1\x00\x00", "Invalid UTF-16", 1, 1, 2);
        err(
            b"\xff\xfe\x00\x00\"\x00\x00\x00\x00\x00\x11\x00\"\x00\x00\x00",
            "Invalid UTF-32",
            1,
            1,
            2,
        );
        err(
            b"\xff\xfe\x00\x00\"\x00\x00\x00\x00",
            "Invalid UTF-32",
            1,
            1,
            2,
        );
    }

    #[test]
    fn decoded_text() {
        // json.loads(str): no detection of UTF-16/32, a BOM is an error.
        assert_eq!(
            ok("\u{feff}[1]".as_bytes()),
            Json::Array(vec![Json::Int(1)])
        );
        assert_eq!(
            parse_decoded("\u{feff}[1]".as_bytes()),
            Err(DecodeError {
                msg: MSG_BOM,
                pos: 0,
                lineno: 1,
                colno: 1
            })
        );
        assert_eq!(
            parse_decoded(b"\x00[").err().map(|e| (e.msg, e.pos)),
            Some((MSG_VALUE, 0))
        );
        assert_eq!(
            parse_decoded(b" \xef\xbb\xbf")
                .err()
                .map(|e| (e.msg, e.pos)),
            Some((MSG_VALUE, 1))
        );
        assert_eq!(parse_decoded(b"[1]"), Ok(Json::Array(vec![Json::Int(1)])));
        assert_eq!(
            parse_decoded(b"\"\xed\xa0\xbd\xed\xb8\x80\""),
            Ok(raw(b"\xed\xa0\xbd\xed\xb8\x80"))
        );
    }

    #[test]
    fn invalid_utf8() {
        err(b"\"\xff\"", "Invalid UTF-8", 1, 1, 2);
        err(b"\"\xed\xa0\"", "Invalid UTF-8", 1, 1, 2);
        err(b"\"\xc0\x80\"", "Invalid UTF-8", 1, 1, 2);
        err(b"\"\xf4\x90\x80\x80\"", "Invalid UTF-8", 1, 1, 2);
        err(b"[1, 2 \xff", "Invalid UTF-8", 6, 1, 7);
        // The decoding error wins even when it comes after a JSON error.
        err(b"[1,, \"\xc3\xa9\n\xff\"]", "Invalid UTF-8", 8, 2, 1);
        err(b"[\"a\x01\xff\"]", "Invalid UTF-8", 4, 1, 5);
        err(b"\xef\xbb\xbf\"\xe9\"", "Invalid UTF-8", 1, 1, 2);
    }

    #[test]
    fn display() {
        let e = parse(b"[\n1,\n2 x]").err().unwrap();
        assert_eq!(
            e.to_string(),
            "Expecting ',' delimiter: line 3 column 3 (char 7)"
        );
        let e = parse(b"\"\\x\"").err().unwrap();
        assert_eq!(e.to_string(), "Invalid \\escape: line 1 column 2 (char 1)");
    }

    /// Run `f` on a thread with a stack of `kib` KiB.
    fn on_stack(kib: usize, f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(kib << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    /// Take a tree apart without recursion (the derived `Drop` recurses once per level).
    fn dismantle(v: Json) {
        let mut todo = vec![v];
        while let Some(mut v) = todo.pop() {
            match &mut v {
                Json::Array(items) => todo.append(items),
                Json::Object(pairs) => todo.extend(pairs.drain(..).map(|(_, v)| v)),
                _ => {}
            }
        }
    }

    fn deep_docs(n: usize) -> (Vec<u8>, Vec<u8>) {
        let arrays = [b"[".repeat(n), b"]".repeat(n)].concat();
        let objects = [b"{\"a\":".repeat(n - 1), b"{}".to_vec(), b"}".repeat(n - 1)].concat();
        (arrays, objects)
    }

    #[test]
    fn depth_parser_is_not_recursive() {
        // The parser itself needs almost no stack, whatever the nesting.
        on_stack(128, || {
            let n = MAX_DEPTH;
            let (arrays, objects) = deep_docs(n);
            dismantle(parse(&arrays).ok().unwrap());
            dismantle(parse(&objects).ok().unwrap());
            let doc = [b"[".repeat(n), b"{}".to_vec(), b"]".repeat(n)].concat();
            err(&doc, MSG_DEPTH, n, 1, n + 1);
            let doc = [b"[".repeat(n + 1), b"]".repeat(n + 1)].concat();
            err(&doc, MSG_DEPTH, n, 1, n + 1);
            err(&b"[".repeat(200_000), MSG_DEPTH, n, 1, n + 1);
            err(&b"{\"\":".repeat(200_000), MSG_DEPTH, 4 * n, 1, 4 * n + 1);
            err(&b"[".repeat(n), "Expecting value", n, 1, n + 1);
            err(
                &b"[{\"\":".repeat(n / 2),
                "Expecting value",
                5 * (n / 2),
                1,
                5 * (n / 2) + 1,
            );
        });
    }

    #[test]
    fn depth_tree_drops_on_8mib_stack() {
        // The derived, recursive Drop of a MAX_DEPTH-deep tree (debug build) fits in 8 MiB.
        assert!(MSG_DEPTH.contains(&MAX_DEPTH.to_string()));
        on_stack(8 << 10, || {
            let (arrays, objects) = deep_docs(MAX_DEPTH);
            drop(parse(&arrays).ok().unwrap());
            drop(parse(&objects).ok().unwrap());
        });
    }
}
