//! Helpers shared by the property tests (`tests/proptest_format.rs`) and the fuzz loop
//! (`examples/fuzz_format.rs`): a reference writer for JSON trees built from the crate's
//! primitives, and comparisons that treat floats bit for bit.

use atomicjson::format::{write_float, write_i64, write_str};
use atomicjson::read::Json;

/// Appends code point `cp` (a lone surrogate too) as WTF-8, the way Python's
/// `str.encode('utf-8', 'surrogatepass')` does.
pub fn push_wtf8(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend([0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend([
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        _ => out.extend([
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
    }
}

/// Float equality bit for bit, NaN equal to NaN.
pub fn same_float(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Writes `value` from the crate's primitives: `indent` spaces per level, or on one line when
/// None (separators `,` and `: ` either way).
pub fn write_tree(
    out: &mut Vec<u8>,
    value: &Json,
    ascii: bool,
    indent: Option<usize>,
    level: usize,
) {
    let newline = |out: &mut Vec<u8>, level: usize| {
        if let Some(n) = indent {
            out.push(b'\n');
            out.extend(std::iter::repeat_n(b' ', n * level));
        }
    };
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Json::Int(i) => write_i64(out, *i),
        Json::BigInt(s) => out.extend_from_slice(s.as_bytes()),
        Json::Float(f) => write_float(out, *f),
        Json::Str(s) => write_str(out, s, ascii),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, level + 1);
                write_tree(out, item, ascii, indent, level + 1);
            }
            if !items.is_empty() {
                newline(out, level);
            }
            out.push(b']');
        }
        Json::Object(pairs) => {
            out.push(b'{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, level + 1);
                write_str(out, k, ascii);
                out.extend_from_slice(b": ");
                write_tree(out, v, ascii, indent, level + 1);
            }
            if !pairs.is_empty() {
                newline(out, level);
            }
            out.push(b'}');
        }
    }
}

/// Structural equality with floats compared bit for bit (NaN equal to NaN).
pub fn same_tree(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Float(x), Json::Float(y)) => same_float(*x, *y),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_tree(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_tree(va, vb))
        }
        _ => a == b,
    }
}
