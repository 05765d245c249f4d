//! Text primitives of the encoder: numbers and string literals written byte for byte as
//! Python's `json.dumps` writes them. Pure Rust (no pyo3); floats through `shortest`.
//!
//! Strings arrive as WTF-8: UTF-8 that may also hold lone surrogates U+D800..U+DFFF encoded as
//! 3-byte sequences (`ED A0 80` .. `ED BF BF`), which is what Python's `surrogatepass` yields.
//! The scanners look at 8 bytes at a time (SWAR) and copy each run of bytes that needs no
//! escaping with one `extend_from_slice`.

use crate::shortest;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `v` that is zero. Borrows only run upwards from a zero byte,
/// so the lowest flagged byte is always a true zero (which is all the scanners rely on).
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// High bit set in each byte of `w` that must be escaped: `"`, `\`, below 0x20 and, with
/// `ASCII`, 0x7F and above. Only the lowest flagged byte is exact.
#[inline(always)]
fn special_mask<const ASCII: bool>(w: u64) -> u64 {
    let quote = zero_bytes(w ^ (LO * b'"' as u64));
    let backslash = zero_bytes(w ^ (LO * b'\\' as u64));
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    let mut m = quote | backslash | control;
    if ASCII {
        m |= (w & HI) | zero_bytes(w ^ (LO * 0x7F));
    }
    m
}

#[inline(always)]
fn load(text: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&text[i..i + 8]);
    u64::from_le_bytes(word)
}

#[inline(always)]
fn lowest(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Index of the first byte at or after `i` that must be escaped.
#[inline(always)]
fn find_special<const ASCII: bool>(text: &[u8], mut i: usize) -> Option<usize> {
    let n = text.len();
    while i + 16 <= n {
        let a = special_mask::<ASCII>(load(text, i));
        let b = special_mask::<ASCII>(load(text, i + 8));
        if a | b != 0 {
            return Some(if a != 0 {
                i + lowest(a)
            } else {
                i + 8 + lowest(b)
            });
        }
        i += 16;
    }
    if i + 8 <= n {
        let a = special_mask::<ASCII>(load(text, i));
        if a != 0 {
            return Some(i + lowest(a));
        }
        i += 8;
    }
    if i < n {
        // Pad the tail with spaces, which never need escaping.
        let mut word = [b' '; 8];
        word[..n - i].copy_from_slice(&text[i..]);
        let a = special_mask::<ASCII>(u64::from_le_bytes(word));
        if a != 0 {
            return Some(i + lowest(a));
        }
    }
    None
}

/// For each ASCII byte: 0 = written raw, `u` = written as `\u00XX`, else the letter after `\`.
static ESCAPES: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[0x7F] = b'u';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline(always)]
fn u_escape(unit: u32) -> [u8; 6] {
    [
        b'\\',
        b'u',
        HEX[((unit >> 12) & 15) as usize],
        HEX[((unit >> 8) & 15) as usize],
        HEX[((unit >> 4) & 15) as usize],
        HEX[(unit & 15) as usize],
    ]
}

/// Decodes the WTF-8 sequence at `pos` (which starts with a byte >= 0x80): (code point, length).
/// Malformed input never panics: a byte that does not start a complete sequence decodes as
/// itself (U+0080..U+00FF), length 1.
#[inline]
fn decode(text: &[u8], pos: usize) -> (u32, usize) {
    let b0 = text[pos] as u32;
    let cont = |k: usize| match text.get(pos + k) {
        Some(&c) if c & 0xC0 == 0x80 => Some((c & 0x3F) as u32),
        _ => None,
    };
    match b0 {
        0xC0..=0xDF => {
            if let Some(c1) = cont(1) {
                return (((b0 & 0x1F) << 6) | c1, 2);
            }
        }
        0xE0..=0xEF => {
            if let (Some(c1), Some(c2)) = (cont(1), cont(2)) {
                return (((b0 & 0x0F) << 12) | (c1 << 6) | c2, 3);
            }
        }
        0xF0..=0xF4 => {
            if let (Some(c1), Some(c2), Some(c3)) = (cont(1), cont(2), cont(3)) {
                return (((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3, 4);
            }
        }
        _ => {}
    }
    (b0, 1)
}

/// Writes the escape for the character at `pos` (a byte `find_special` flagged) and returns
/// the index after that character.
#[inline]
fn write_escape<const ASCII: bool>(out: &mut Vec<u8>, text: &[u8], pos: usize) -> usize {
    let b = text[pos];
    if b < 0x80 {
        match ESCAPES[b as usize] {
            b'u' => out.extend_from_slice(&u_escape(b as u32)),
            c => out.extend_from_slice(&[b'\\', c]),
        }
        return pos + 1;
    }
    // Only reached with ASCII (without it bytes >= 0x80 are never flagged).
    let (cp, len) = decode(text, pos);
    if cp >= 0x1_0000 {
        let v = cp - 0x1_0000;
        let hi = u_escape(0xD800 + (v >> 10));
        let lo = u_escape(0xDC00 + (v & 0x3FF));
        let mut pair = [0u8; 12];
        pair[..6].copy_from_slice(&hi);
        pair[6..].copy_from_slice(&lo);
        out.extend_from_slice(&pair);
    } else {
        out.extend_from_slice(&u_escape(cp));
    }
    pos + len
}

fn escape_into<const ASCII: bool>(out: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    while let Some(pos) = find_special::<ASCII>(text, start) {
        append(out, &text[start..pos]);
        start = write_escape::<ASCII>(out, text, pos);
        if ASCII {
            // Runs of non-ASCII characters (CJK, Cyrillic) are escaped without rescanning.
            while start < text.len() && text[start] >= 0x80 {
                start = write_escape::<ASCII>(out, text, start);
            }
        }
    }
    append(out, &text[start..]);
}

/// Appends `bytes`. Most pieces of a document (keys, numbers, short strings) are under 32
/// bytes: they are copied with two overlapping fixed-size moves instead of a `memcpy` call,
/// which cost more than the copy itself (~10% of `dumps`).
#[inline(always)]
pub fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 32 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(n);
    // SAFETY: `n` bytes are reserved past the length; every move below reads within `bytes`
    // and writes within those `n` bytes (the two moves of a pair overlap when `n` is not a
    // multiple of their size).
    unsafe {
        let src = bytes.as_ptr();
        let dst = out.as_mut_ptr().add(out.len());
        if n >= 16 {
            let a = std::ptr::read_unaligned(src.cast::<u128>());
            let b = std::ptr::read_unaligned(src.add(n - 16).cast::<u128>());
            std::ptr::write_unaligned(dst.cast::<u128>(), a);
            std::ptr::write_unaligned(dst.add(n - 16).cast::<u128>(), b);
        } else if n >= 8 {
            let a = std::ptr::read_unaligned(src.cast::<u64>());
            let b = std::ptr::read_unaligned(src.add(n - 8).cast::<u64>());
            std::ptr::write_unaligned(dst.cast::<u64>(), a);
            std::ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let a = std::ptr::read_unaligned(src.cast::<u32>());
            let b = std::ptr::read_unaligned(src.add(n - 4).cast::<u32>());
            std::ptr::write_unaligned(dst.cast::<u32>(), a);
            std::ptr::write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            // 1 to 3 bytes: the first, middle and last cover them all.
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        out.set_len(out.len() + n);
    }
}

/// Appends a JSON string literal (with the quotes) exactly as `json.dumps` writes it.
///
/// `text` is WTF-8 (UTF-8 plus lone surrogates as 3-byte sequences, see the module doc).
/// With `ensure_ascii == false` only `"`, `\` and bytes below 0x20 are escaped (`\n \r \t \b
/// \f`, others `\u00XX`); everything else, U+007F, U+2028/9 and surrogates included, is copied
/// raw. With `ensure_ascii == true` every code point outside 0x20..=0x7E is also written as
/// `\uXXXX` (lowercase hex), astral ones as a surrogate pair, lone surrogates as `\udXXX`.
/// Malformed input does not panic: a stray byte >= 0x80 is then escaped as `\u00XX`.
#[inline]
pub fn write_str(out: &mut Vec<u8>, text: &[u8], ensure_ascii: bool) {
    if ensure_ascii {
        copy_str::<true>(out, text);
    } else {
        copy_str::<false>(out, text);
    }
}

/// True if any byte of the 16 bytes `lo` (first 8) and `hi` (last 8) must be escaped.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn any_special<const ASCII: bool>(lo: u64, hi: u64) -> bool {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86_64; these intrinsics only compute on registers.
    unsafe {
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // v <= 0x1F (unsigned) exactly when max(v, 0x1F) == 0x1F.
        let low = _mm_set1_epi8(0x1F);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
        let mut m = _mm_or_si128(_mm_or_si128(quote, backslash), control);
        if ASCII {
            // v >= 0x7F exactly when max(v, 0x7F) == v.
            m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x7F)), v));
        }
        _mm_movemask_epi8(m) != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn any_special<const ASCII: bool>(lo: u64, hi: u64) -> bool {
    special_mask::<ASCII>(lo) | special_mask::<ASCII>(hi) != 0
}

#[inline(always)]
fn load_u32(text: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([text[i], text[i + 1], text[i + 2], text[i + 3]])
}

#[inline(always)]
fn load_u16(text: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([text[i], text[i + 1]])
}

/// `write_str` in one pass over clean text (nearly all strings): the text is read in words
/// that are checked and stored at once, the last (or only) ones overlapping the previous ones
/// instead of a byte loop or a `memcpy` call. Text with a byte to escape is written again by
/// `escape_into`.
#[inline(always)]
fn copy_str<const ASCII: bool>(out: &mut Vec<u8>, text: &[u8]) {
    const SPACES: u64 = LO * b' ' as u64;
    let n = text.len();
    out.reserve(n + 2);
    let start = out.len();
    // SAFETY: n + 2 bytes are reserved past `start`; every store below writes within
    // dst[0..n] (words at offsets <= n - width), and the length covers only what was written.
    unsafe {
        let dst = out.as_mut_ptr().add(start + 1);
        *dst.sub(1) = b'"';
        let clean = if n >= 16 {
            let mut i = 0;
            let mut clean = true;
            while i + 16 <= n {
                let (lo, hi) = (load(text, i), load(text, i + 8));
                std::ptr::write_unaligned(dst.add(i).cast::<u64>(), lo.to_le());
                std::ptr::write_unaligned(dst.add(i + 8).cast::<u64>(), hi.to_le());
                if any_special::<ASCII>(lo, hi) {
                    clean = false;
                    break;
                }
                i += 16;
            }
            if clean && i < n {
                // The last 16 bytes, overlapping bytes already checked.
                let (lo, hi) = (load(text, n - 16), load(text, n - 8));
                std::ptr::write_unaligned(dst.add(n - 16).cast::<u64>(), lo.to_le());
                std::ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), hi.to_le());
                clean = !any_special::<ASCII>(lo, hi);
            }
            clean
        } else if n >= 8 {
            let (lo, hi) = (load(text, 0), load(text, n - 8));
            std::ptr::write_unaligned(dst.cast::<u64>(), lo.to_le());
            std::ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), hi.to_le());
            !any_special::<ASCII>(lo, hi)
        } else if n >= 4 {
            let (lo, hi) = (load_u32(text, 0), load_u32(text, n - 4));
            std::ptr::write_unaligned(dst.cast::<u32>(), lo.to_le());
            std::ptr::write_unaligned(dst.add(n - 4).cast::<u32>(), hi.to_le());
            special_mask::<ASCII>(lo as u64 | (hi as u64) << 32) == 0
        } else if n >= 2 {
            let (lo, hi) = (load_u16(text, 0), load_u16(text, n - 2));
            std::ptr::write_unaligned(dst.cast::<u16>(), lo.to_le());
            std::ptr::write_unaligned(dst.add(n - 2).cast::<u16>(), hi.to_le());
            special_mask::<ASCII>(lo as u64 | (hi as u64) << 16 | SPACES << 32) == 0
        } else if n == 1 {
            *dst = text[0];
            special_mask::<ASCII>(text[0] as u64 | SPACES << 8) == 0
        } else {
            true
        };
        if clean {
            *dst.add(n) = b'"';
            out.set_len(start + n + 2);
        } else {
            out.set_len(start + 1);
            escape_into::<ASCII>(out, text);
            out.push(b'"');
        }
    }
}

/// True if `text` contains an encoded surrogate code point (`ED` followed by `A0..=BF`), in
/// which case it is not valid UTF-8.
pub fn has_surrogates(text: &[u8]) -> bool {
    const ED: u64 = LO * 0xED;
    let n = text.len();
    let mut i = 0;
    while i + 8 <= n {
        let w = load(text, i);
        // All-ASCII words are skipped with one test; others search for 0xED bytes.
        if w & HI != 0 {
            let mut m = zero_bytes(w ^ ED);
            while m != 0 {
                // Flags above the lowest may be false (an 0xEC right after an 0xED): recheck.
                let p = i + lowest(m);
                if text[p] == 0xED && text.get(p + 1).is_some_and(|&c| c >= 0xA0) {
                    return true;
                }
                m &= m - 1;
            }
        }
        i += 8;
    }
    while i < n {
        if text[i] == 0xED && text.get(i + 1).is_some_and(|&c| c >= 0xA0) {
            return true;
        }
        i += 1;
    }
    false
}

/// Appends a decimal `i64`.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    out.reserve(24);
    // SAFETY: 24 bytes reserved; `write_digits` stores at most 20 past the sign.
    unsafe {
        let start = out.as_mut_ptr().add(out.len());
        *start = b'-';
        let negative = (value < 0) as usize;
        let len = write_digits(start.add(negative), value.unsigned_abs());
        out.set_len(out.len() + negative + len);
    }
}

/// Appends a decimal `u64`.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    out.reserve(24);
    // SAFETY: as in `write_i64`.
    unsafe {
        let start = out.as_mut_ptr().add(out.len());
        let len = write_digits(start, value);
        out.set_len(out.len() + len);
    }
}

/// Stores the decimal digits of `value` at `dst` (from registers, like the floats); returns
/// their count. Stores at most 20 bytes.
#[inline(always)]
unsafe fn write_digits(dst: *mut u8, value: u64) -> usize {
    // Most ints in documents are one or two digits: no digit count, no lanes.
    if value < 10 {
        *dst = b'0' + value as u8;
        return 1;
    }
    if value < 100 {
        let tens = (value * 103) >> 10;
        store(
            dst,
            u16::from_le_bytes([b'0' + tens as u8, b'0' + (value - tens * 10) as u8]),
        );
        return 2;
    }
    let n = value.ilog10() as usize + 1;
    if n <= 8 {
        store(dst, ascii8(value) >> (8 * (8 - n)));
        n
    } else if n <= 16 {
        store(dst, ascii16(value) >> (8 * (16 - n)));
        n
    } else {
        let high = value / E16; // at most 1844
        let high_len = n - 16;
        store(dst, ascii8(high) >> (8 * (8 - high_len)));
        store(dst.add(high_len), ascii16(value - high * E16));
        n
    }
}

/// Marks a float whose text is written later, by [`expand_deferred_floats`]: followed by the
/// value's 8 bytes (native order). UTF-8 (and WTF-8) text never holds this byte, so a writer
/// can hand formatting off to a thread that does not hold the GIL.
pub const DEFERRED_FLOAT: u8 = 0xFF;

/// Appends `value` as a deferred float: 9 bytes, a few instructions against ~170 for its text.
#[inline]
pub fn write_float_deferred(out: &mut Vec<u8>, value: f64) {
    let mut record = [DEFERRED_FLOAT; 9];
    record[1..].copy_from_slice(&value.to_ne_bytes());
    append(out, &record);
}

/// Appends `text` to `out` with each deferred float (`write_float_deferred`) written as
/// [`write_float`] writes it.
///
/// Text and records are dense (a float every ~50 bytes of a numeric document), so rather than
/// a search call and a copy call per float, 16 bytes at a time are copied and searched for
/// the marker in one pass; a chunk's bytes past a marker are overwritten by the float's text.
/// This pass is most of the writer thread's work on a large document.
pub fn expand_deferred_floats(text: &[u8], out: &mut Vec<u8>) {
    // Room for every byte, a float's text for each of its 9 bytes (at most 24), and the
    // overrun of a chunk or a float's word stores.
    out.reserve(text.len() * 3 + FLOAT_ROOM);
    // SAFETY: `src` stays within `text`: chunks are read only while 16 bytes are left, and a
    // marker's 8 bytes only once they are known to be there; `dst` stays within
    // the reserve: each byte read adds at most 3 bytes written, plus an overrun of at most
    // FLOAT_ROOM past the text written; `set_len` covers only the text written.
    unsafe {
        let mut src = text.as_ptr();
        let end = src.add(text.len());
        let start = out.as_mut_ptr().add(out.len());
        let mut dst = start;
        loop {
            let at = if end.offset_from(src) >= 16 {
                let chunk: [u8; 16] = std::ptr::read_unaligned(src.cast());
                store(dst, chunk);
                match marker_in(chunk) {
                    Some(at) => at,
                    None => {
                        src = src.add(16);
                        dst = dst.add(16);
                        continue;
                    }
                }
            } else {
                let left = end.offset_from(src) as usize;
                let tail = std::slice::from_raw_parts(src, left);
                match tail.iter().position(|&b| b == DEFERRED_FLOAT) {
                    Some(at) => {
                        std::ptr::copy_nonoverlapping(src, dst, at);
                        at
                    }
                    None => {
                        std::ptr::copy_nonoverlapping(src, dst, left);
                        dst = dst.add(left);
                        break;
                    }
                }
            };
            src = src.add(at);
            dst = dst.add(at);
            assert!(end.offset_from(src) >= 9, "a deferred float is 8 bytes");
            let value = f64::from_ne_bytes(std::ptr::read_unaligned(src.add(1).cast()));
            src = src.add(9);
            if value.is_finite() {
                dst = dst.add(write_finite_float(dst, value));
            } else {
                let text = non_finite_text(value);
                std::ptr::copy_nonoverlapping(text.as_ptr(), dst, text.len());
                dst = dst.add(text.len());
            }
        }
        out.set_len(out.len() + dst.offset_from(start) as usize);
    }
}

/// The position of the first `DEFERRED_FLOAT` in `chunk`.
#[inline(always)]
fn marker_in(chunk: [u8; 16]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86_64; the load reads the 16 bytes of `chunk`.
        let mask = unsafe {
            let bytes = _mm_loadu_si128(chunk.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(DEFERRED_FLOAT as i8)))
        };
        (mask != 0).then(|| mask.trailing_zeros() as usize)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        chunk.iter().position(|&b| b == DEFERRED_FLOAT)
    }
}

/// 10^16: the numbers below it are 16 digits for `ascii16`.
const E16: u64 = 10_000_000_000_000_000;

/// Sixteen ASCII '0's.
const ASCII_ZEROS: u128 = u128::from_le_bytes([b'0'; 16]);

/// Stores `value`'s bytes at `dst` (unaligned).
#[inline(always)]
unsafe fn store<T>(dst: *mut u8, value: T) {
    std::ptr::write_unaligned(dst.cast::<T>(), value);
}

/// The 8 decimal digits of `x < 10^8` as ASCII, the first digit in the lowest byte: split
/// into 4 + 4, 2 + 2 and 1 + 1 digits in parallel lanes of one integer (multiply-shift
/// division by 10^4, 100 and 10, exact in these ranges: checked by the tests).
#[inline(always)]
fn ascii8(x: u64) -> u64 {
    let high = (x * 109_951_163) >> 40; // x / 10^4
    let v = high | ((x - high * 10_000) << 32);
    let hundreds = ((v * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let v = hundreds | ((v - hundreds * 100) << 16);
    let tens = ((v * 103) >> 10) & 0x000F_000F_000F_000F;
    let v = tens | ((v - tens * 10) << 8);
    v | 0x3030_3030_3030_3030
}

/// The 16 decimal digits of `x < 10^16` (with leading zeros) as ASCII, the first digit in the
/// lowest byte. (An SSE2 version splitting both halves in one register measured 2-3% slower
/// inside `dumps`.)
#[inline(always)]
fn ascii16(x: u64) -> u128 {
    let high = x / 100_000_000;
    ascii8(high) as u128 | (ascii8(x - high * 100_000_000) as u128) << 64
}

/// Writes "e+XX" / "e-XX" / "e+XXX" (at least two exponent digits, as Python) at `dst`
/// (8 bytes stored); returns the length.
#[inline(always)]
unsafe fn write_exponent(dst: *mut u8, exp: i32) -> usize {
    let sign = if exp < 0 { b'-' } else { b'+' };
    let e = exp.unsigned_abs();
    let (text, len) = if e < 100 {
        (
            [b'e', sign, b'0' + (e / 10) as u8, b'0' + (e % 10) as u8, 0],
            4,
        )
    } else {
        let (h, r) = (e / 100, e % 100);
        (
            [
                b'e',
                sign,
                b'0' + h as u8,
                b'0' + (r / 10) as u8,
                b'0' + (r % 10) as u8,
            ],
            5,
        )
    };
    let mut word = [0u8; 8];
    word[..5].copy_from_slice(&text);
    store(dst, u64::from_le_bytes(word));
    len
}

/// "NaN", "Infinity", "-Infinity": what `json.dumps` writes with `allow_nan`.
#[cold]
fn write_non_finite(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(non_finite_text(value));
}

fn non_finite_text(value: f64) -> &'static [u8] {
    if value.is_nan() {
        b"NaN"
    } else if value > 0.0 {
        b"Infinity"
    } else {
        b"-Infinity"
    }
}

/// Appends the exact text of Python's `float.__repr__` (as `json.dumps` writes floats): the
/// shortest round-trip digits, the closest to the value among them (`shortest`); fixed
/// notation when the decimal exponent is in [-4, 16) (always with a fraction, "100.0"), else
/// "d.ddde+XX" / "d.ddde-XX" with at least two exponent digits ("1e+16", "1e-05", "5e-324");
/// "-0.0"; "NaN", "Infinity", "-Infinity".
///
/// The text is assembled in registers and stored straight into `out` (a few overlapping
/// stores, no call, nothing read back: see `shortest` for why).
#[inline]
pub fn write_float(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        write_non_finite(out, value);
        return;
    }
    out.reserve(FLOAT_ROOM);
    // SAFETY: FLOAT_ROOM bytes are reserved past the length; `set_len` covers the bytes
    // written.
    unsafe {
        let len = write_finite_float(out.as_mut_ptr().add(out.len()), value);
        out.set_len(out.len() + len);
    }
}

/// The bytes `write_finite_float` may store to (whole words; its text is at most 24).
const FLOAT_ROOM: usize = 48;

/// Writes the text of the finite `value` at `start` (as `write_float`); its length.
///
/// # Safety
/// `start` is valid for writes of `FLOAT_ROOM` bytes.
#[inline(always)]
unsafe fn write_finite_float(start: *mut u8, value: f64) -> usize {
    let bits = value.to_bits();
    let exp_bits = ((bits >> 52) & 0x7FF) as u32;
    let fraction = bits & ((1 << 52) - 1);
    // The stores reach at most 34 bytes in (the sign, then `write_decimal`'s 33), past the
    // longest text ("-0.000" and 17 digits): whole words are stored and the rest overwritten.
    let negative = (bits >> 63) as usize;
    *start = b'-';
    let dst = start.add(negative);
    let len = if exp_bits == 0 && fraction == 0 {
        store(dst, u32::from_le_bytes(*b"0.0\0"));
        3
    } else if let Some(int) = small_integer(exp_bits, fraction) {
        // An integer below 2^53 (< 10^16): all its digits and ".0". (`write_digits`
        // inlined here made `dumps` 3-5% slower.)
        let n = int.ilog10() as usize + 1;
        store(dst, ascii16(int) >> (8 * (16 - n)));
        store(dst.add(n), u16::from_le_bytes(*b".0"));
        n + 2
    } else {
        let (digits, exp10) = shortest::shortest(exp_bits, fraction);
        write_decimal(dst, digits, exp10)
    };
    negative + len
}

/// `Some(v)` when the double is an integer in [1, 2^53): its value, all of whose digits
/// Python prints (no shortest-digits search needed).
#[inline(always)]
fn small_integer(exp_bits: u32, fraction: u64) -> Option<u64> {
    // v = c * 2^(exp_bits - 1075): an integer below 2^53 when 0 <= 1075 - exp_bits < 53
    // and the shifted-out bits are zero.
    let shift = 1075u32.wrapping_sub(exp_bits);
    if shift >= 53 {
        return None;
    }
    let c = fraction | 1 << 52;
    let int = c >> shift;
    (int << shift == c).then_some(int)
}

/// Writes `digits * 10^exp10` (`0 < digits < 10^17`) in Python's layout at `dst`; returns the
/// length. Stores at most 33 bytes past `dst` (the digit run stored again one byte on, after
/// 16 integer digits and the point); the caller reserves them.
#[inline(always)]
unsafe fn write_decimal(dst: *mut u8, digits: u64, exp10: i32) -> usize {
    // Scaled to exactly 17 digits: `lead` the first, `rest` the 16 after it as ASCII (the
    // next at the lowest byte). A normal double's digits have 16 or 17, as good as at random,
    // so the one step is a select rather than a branch; only subnormals need more.
    let (mut digits, mut exp10) = (digits, exp10);
    let short = digits < E16;
    digits = if short { digits * 10 } else { digits };
    exp10 -= short as i32;
    if digits < E16 {
        let scale = E16.ilog10() - digits.ilog10();
        digits *= 10u64.pow(scale);
        exp10 -= scale as i32;
    }
    let lead = digits / E16;
    let first = b'0' + lead as u8;
    let rest = ascii16(digits - lead * E16);
    // Digits without the trailing zeros (the highest bytes of `rest` that are '0').
    let n = 17 - ((rest ^ ASCII_ZEROS).leading_zeros() / 8) as usize;
    let point = exp10 + 16; // the decimal exponent of the first digit
    if !(-4..16).contains(&point) {
        // "d.ddde+XX": the first digit, the point (when more digits follow), the exponent.
        *dst = first;
        let mut len = 1;
        if n > 1 {
            *dst.add(1) = b'.';
            store(dst.add(2), rest);
            len = n + 1;
        }
        return len + write_exponent(dst.add(len), point);
    }
    if point < 0 {
        // "0.000ddd": point -1..=-4 puts 0 to 3 zeros after "0.".
        store(dst, u64::from_le_bytes(*b"0.000000"));
        let first_at = dst.add((1 - point) as usize);
        *first_at = first;
        store(first_at.add(1), rest);
        return (1 - point) as usize + n;
    }
    // point 0..=15: the digits, then the point after the first `point + 1` of them.
    *dst = first;
    store(dst.add(1), rest);
    let int_len = point as usize + 1;
    if int_len >= n {
        // All digits before the point: zeros up to it, then ".0" (at most 16 bytes in all).
        store(dst.add(n), ASCII_ZEROS);
        store(dst.add(int_len), u16::from_le_bytes(*b".0"));
        return int_len + 2;
    }
    // Move the digits after the point one place on: the shifted run, stored again.
    store(dst.add(int_len + 1), rest >> (8 * (int_len - 1)));
    *dst.add(int_len) = b'.';
    n + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "a deferred float is 8 bytes")]
    fn a_cut_deferred_float_is_refused() {
        let mut text = vec![b' '; 20];
        write_float_deferred(&mut text, 0.5);
        text.truncate(text.len() - 1);
        expand_deferred_floats(&text, &mut Vec::new());
    }

    #[test]
    fn append_every_short_length() {
        let src: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for prefix in 0..3 {
            for n in 0..=src.len() {
                let mut out = vec![b'#'; prefix];
                append(&mut out, &src[..n]);
                let mut want = vec![b'#'; prefix];
                want.extend_from_slice(&src[..n]);
                assert_eq!(out, want, "prefix {prefix}, length {n}");
            }
        }
    }

    fn float(value: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    fn string(text: &[u8], ensure_ascii: bool) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text, ensure_ascii);
        String::from_utf8(out).unwrap()
    }

    /// WTF-8 of a code point, surrogates included.
    fn wtf8(cp: u32) -> Vec<u8> {
        match cp {
            0..=0x7F => vec![cp as u8],
            0x80..=0x7FF => vec![0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8],
            0x800..=0xFFFF => vec![
                0xE0 | (cp >> 12) as u8,
                0x80 | ((cp >> 6) & 0x3F) as u8,
                0x80 | (cp & 0x3F) as u8,
            ],
            _ => vec![
                0xF0 | (cp >> 18) as u8,
                0x80 | ((cp >> 12) & 0x3F) as u8,
                0x80 | ((cp >> 6) & 0x3F) as u8,
                0x80 | (cp & 0x3F) as u8,
            ],
        }
    }

    #[test]
    fn ascii_digits_of_every_lane_value() {
        // Each split step, over its whole range: the 4 + 4 split of every 8-digit half is
        // checked on a stride and at every boundary of 10^4; the 2 + 2 and 1 + 1 steps see
        // every value they can: `ascii8` alone, and `ascii16` with each value in either half.
        let halves: Vec<u64> = (0..100_000_000u64)
            .step_by(9_973)
            .chain((1..10_000).map(|i| i * 10_000 - 1))
            .chain(0..10_000)
            .chain((0..10_000).map(|y| y * 10_000))
            .collect();
        for (i, &x) in halves.iter().enumerate() {
            let text = String::from_utf8(ascii8(x).to_le_bytes().to_vec()).unwrap();
            assert_eq!(text, format!("{x:08}"));
            let other = halves[halves.len() - 1 - i];
            for wide in [x, x * 100_000_000 + other] {
                let bytes = ascii16(wide).to_le_bytes();
                assert_eq!(std::str::from_utf8(&bytes).unwrap(), format!("{wide:016}"));
            }
        }
    }

    #[test]
    fn float_table() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (100.0, "100.0"),
            (1e16, "1e+16"),
            (-1e16, "-1e+16"),
            (1e15, "1000000000000000.0"),
            // Exact ties between two shortest candidates go to the even digit (Python), where
            // Rust's own formatting rounds up.
            (813459244780372.0 + 0.25, "813459244780372.2"),
            (237218167200838.0 + 0.625, "237218167200838.62"),
            // 16 and 17 digits; subnormals with few digits, scaled up to 17 before layout.
            (2.0 / 3.0, "0.6666666666666666"),
            (0.1 + 0.2, "0.30000000000000004"),
            (6.09954e-319, "6.09954e-319"),
            (1.1125369292536007e-308, "1.1125369292536007e-308"),
            // Both edges of the fixed range.
            (0.0001_f64.next_down(), "9.999999999999999e-05"),
            (-0.0001_f64.next_down(), "-9.999999999999999e-05"),
            (0.0001_f64.next_up(), "0.00010000000000000002"),
            (1e16_f64.next_down(), "9999999999999998.0"),
            (1e16_f64.next_up(), "1.0000000000000002e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.2345e-5, "1.2345e-05"),
            (-1.5e-5, "-1.5e-05"),
            (9.5e-5, "9.5e-05"),
            (-0.0001, "-0.0001"),
            (-1e-7, "-1e-07"),
            (-5e-324, "-5e-324"),
            (1e-100, "1e-100"),
            (1e22, "1e+22"),
            (1e23, "1e+23"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1.7976931348623157e308, "-1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (2f64.powi(-25), "2.9802322387695312e-08"),
            (0.1, "0.1"),
            (0.5, "0.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2.0 / 3.0, "0.6666666666666666"),
            (123456789.0, "123456789.0"),
            (123.456, "123.456"),
            (1.5e300, "1.5e+300"),
            (1.5e-300, "1.5e-300"),
            (1e100, "1e+100"),
            (1.25e-7, "1.25e-07"),
            (12345678901234567890.0, "1.2345678901234567e+19"),
            (1234567890123456.7, "1234567890123456.8"),
            (0.30000000000000004, "0.30000000000000004"),
            (4.35, "4.35"),
            // 17 digits in each layout; a digit run with inner zeros; an integer-valued double
            // above 2^53 in the fixed range; the smallest subnormals.
            (0.34498246212675937, "0.34498246212675937"),
            (0.0034498246212675936, "0.0034498246212675936"),
            (3.4498246212675934, "3.4498246212675934"),
            (3449.8246212675936, "3449.8246212675936"),
            (3.4498246212675935e-200, "3.4498246212675935e-200"),
            (1.0000000000000002, "1.0000000000000002"),
            (100.00000000000001, "100.00000000000001"),
            (9007199254740994.0, "9007199254740994.0"),
            (4e-323, "4e-323"),
            (5e-323, "5e-323"),
            (1e-323, "1e-323"),
            (f64::NAN, "NaN"),
            (-f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for &(value, expected) in cases {
            assert_eq!(float(value), expected, "{value:?}");
        }
    }

    /// Maps Python's layout to one Rust parses ("1e+16" parses as is; nothing to map) and checks
    /// the layout rules.
    fn check_float(value: f64) {
        let text = float(value);
        let parsed: f64 = text.parse().unwrap();
        assert_eq!(parsed.to_bits(), value.to_bits(), "{value:e} -> {text}");
        let unsigned = text.strip_prefix('-').unwrap_or(&text);
        assert_eq!(text.starts_with('-'), value.is_sign_negative(), "{text}");
        match unsigned.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = exponent.split_at(1);
                assert!(sign == "+" || sign == "-", "{text}");
                assert!(digits.len() >= 2 && digits.bytes().all(|c| c.is_ascii_digit()));
                assert!(digits.len() == 2 || !digits.starts_with('0'), "{text}");
                let e: i32 = exponent.parse().unwrap();
                assert!(!(-4..16).contains(&e), "{text}");
                let mut chars = mantissa.bytes();
                assert!(matches!(chars.next(), Some(b'1'..=b'9')), "{text}");
                if let Some(frac) = mantissa.get(1..).filter(|f| !f.is_empty()) {
                    let frac = frac.strip_prefix('.').expect("point after first digit");
                    assert!(!frac.is_empty() && !frac.ends_with('0'), "{text}");
                }
                assert!(mantissa.len() <= 18, "{text}");
            }
            None => {
                let (int_part, frac) = unsigned
                    .split_once('.')
                    .unwrap_or_else(|| panic!("no point: {text}"));
                assert!(!frac.is_empty(), "{text}");
                assert!(frac == "0" || !frac.ends_with('0'), "{text}");
                assert!(int_part == "0" || !int_part.starts_with('0'), "{text}");
                let magnitude = value.abs();
                if magnitude != 0.0 {
                    // Decimal exponent from the text: position of the first nonzero digit.
                    let e = if int_part != "0" {
                        int_part.len() as i32 - 1
                    } else {
                        -(frac.bytes().take_while(|&c| c == b'0').count() as i32) - 1
                    };
                    assert!((-4..16).contains(&e), "{text}");
                }
            }
        }
    }

    #[test]
    fn float_round_trip_pseudo_random() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let bits = next();
            let value = f64::from_bits(bits);
            if value.is_finite() {
                check_float(value);
            }
            // Scaled integers and values near the fixed/exponent boundaries.
            let int = (next() % 100_000_000) as f64;
            let scale = 10f64.powi((next() % 40) as i32 - 20);
            check_float(int * scale);
            check_float(-int / scale);
        }
        for k in -1074..=1023 {
            check_float(2f64.powi(k));
            check_float(-(2f64.powi(k)));
        }
        for k in -325..=308 {
            check_float(format!("1e{k}").parse().unwrap());
            let near: f64 = format!("9.999999999999999e{k}").parse().unwrap();
            if near.is_finite() {
                check_float(near);
            }
        }
        check_float(f64::MAX);
        check_float(f64::MIN_POSITIVE);
    }

    #[test]
    fn ints_of_every_length() {
        for digits in 1..=20u32 {
            for value in [
                10u64.pow(digits - 1),
                10u64.saturating_pow(digits) - 1,
                u64::MAX / 10u64.pow(20 - digits),
            ] {
                let mut out = vec![b'#'];
                write_u64(&mut out, value);
                assert_eq!(out, format!("#{value}").into_bytes());
                let mut out = Vec::new();
                write_i64(&mut out, -(value.min(i64::MAX as u64) as i64));
                assert_eq!(out, format!("-{}", value.min(i64::MAX as u64)).into_bytes());
            }
        }
    }

    #[test]
    fn int_table() {
        let mut out = Vec::new();
        write_i64(&mut out, i64::MIN);
        out.push(b' ');
        write_i64(&mut out, i64::MAX);
        out.push(b' ');
        write_i64(&mut out, 0);
        out.push(b' ');
        write_i64(&mut out, -7);
        out.push(b' ');
        write_u64(&mut out, u64::MAX);
        out.push(b' ');
        write_u64(&mut out, 0);
        assert_eq!(
            out,
            b"-9223372036854775808 9223372036854775807 0 -7 18446744073709551615 0"
        );
    }

    #[test]
    fn control_characters() {
        for c in 0u8..0x20 {
            let expected = match c {
                0x08 => "\"\\b\"".to_string(),
                0x09 => "\"\\t\"".to_string(),
                0x0A => "\"\\n\"".to_string(),
                0x0C => "\"\\f\"".to_string(),
                0x0D => "\"\\r\"".to_string(),
                _ => format!("\"\\u{c:04x}\""),
            };
            assert_eq!(string(&[c], false), expected);
            assert_eq!(string(&[c], true), expected);
        }
    }

    #[test]
    fn string_table() {
        let cases: &[(&[u8], &str, &str)] = &[
            (b"", "\"\"", "\"\""),
            (b"plain", "\"plain\"", "\"plain\""),
            (b"a\"b\\c", r#""a\"b\\c""#, r#""a\"b\\c""#),
            (b"/", "\"/\"", "\"/\""),
            (b"\x7f", "\"\x7f\"", r#""\u007f""#),
            (b"\x1f\x20~", "\"\\u001f ~\"", "\"\\u001f ~\""),
            ("é".as_bytes(), "\"é\"", r#""\u00e9""#),
            (
                "\u{2028}\u{2029}".as_bytes(),
                "\"\u{2028}\u{2029}\"",
                r#""\u2028\u2029""#,
            ),
            (
                "€ ☃ 中".as_bytes(),
                "\"€ ☃ 中\"",
                r#""\u20ac \u2603 \u4e2d""#,
            ),
            ("😀".as_bytes(), "\"😀\"", r#""\ud83d\ude00""#),
            (
                "\u{10FFFF}".as_bytes(),
                "\"\u{10FFFF}\"",
                r#""\udbff\udfff""#,
            ),
            (
                "\u{10000}x".as_bytes(),
                "\"\u{10000}x\"",
                r#""\ud800\udc00x""#,
            ),
            ("\u{FFFF}".as_bytes(), "\"\u{FFFF}\"", r#""\uffff""#),
            ("\u{D7FF}".as_bytes(), "\"\u{D7FF}\"", r#""\ud7ff""#),
        ];
        for &(text, plain, ascii) in cases {
            assert_eq!(string(text, false), plain, "{text:?}");
            assert_eq!(string(text, true), ascii, "{text:?}");
        }
    }

    #[test]
    fn special_byte_at_every_position() {
        // Crosses the 16-byte, 8-byte and padded-tail paths of the scanner.
        for len in 1..40 {
            for pos in 0..len {
                for (byte, escaped) in [
                    (b'"', r#"\""#),
                    (b'\\', r"\\"),
                    (0x01, "\\u0001"),
                    (b'\n', "\\n"),
                    (0x7F, "\\u007f"),
                ] {
                    let mut text = vec![b'a'; len];
                    text[pos] = byte;
                    let expected = format!(
                        "\"{}{escaped}{}\"",
                        "a".repeat(pos),
                        "a".repeat(len - pos - 1)
                    );
                    let mut out = b"[1,".to_vec();
                    write_str(&mut out, &text, true);
                    assert_eq!(&out[..3], b"[1,");
                    assert_eq!(std::str::from_utf8(&out[3..]).unwrap(), expected);
                    if byte != 0x7F {
                        assert_eq!(string(&text, false), expected);
                    } else {
                        assert_eq!(string(&text, false).as_bytes()[pos + 1], 0x7F);
                    }
                }
            }
        }
    }

    #[test]
    fn lone_surrogates() {
        // High, low, and a high+low pair encoded separately (as surrogatepass does for two
        // separate code points): copied raw, or escaped one by one.
        let high = wtf8(0xD83D);
        let low = wtf8(0xDE00);
        assert_eq!(high, [0xED, 0xA0, 0xBD]);
        for (text, ascii) in [
            (high.clone(), r#""\ud83d""#),
            (low.clone(), r#""\ude00""#),
            ([&high[..], &low[..]].concat(), r#""\ud83d\ude00""#),
            ([b"ab", &low[..], b"cd"].concat(), r#""ab\ude00cd""#),
            (wtf8(0xD800), r#""\ud800""#),
            (wtf8(0xDFFF), r#""\udfff""#),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, &text, false);
            assert_eq!(out, [b"\"", &text[..], b"\""].concat());
            assert_eq!(string(&text, true), ascii);
            assert!(has_surrogates(&text));
        }
    }

    #[test]
    fn has_surrogates_cases() {
        assert!(!has_surrogates(b""));
        assert!(!has_surrogates(b"plain ascii text, long enough for words"));
        assert!(!has_surrogates(
            "\u{D7FF}\u{E000}\u{FFFF}😀 한국어".as_bytes()
        ));
        // A surrogate at every offset of a long ASCII string, and a truncated ED at the end.
        for k in 0..40 {
            let mut text = vec![b'x'; 40];
            text.splice(k..k, wtf8(0xDC00 + k as u32));
            assert!(has_surrogates(&text), "{k}");
            let mut hangul = vec![b'x'; 40];
            hangul.splice(k..k, wtf8(0xD55C)); // ED 95 9C
            assert!(!has_surrogates(&hangul), "{k}");
            // Malformed: ED EC before a real surrogate in the same word.
            let mut tricky = vec![b'x'; 40];
            tricky.splice(k..k, [0xED, 0xEC, 0xED, 0xA0, 0x80]);
            assert!(has_surrogates(&tricky), "{k}");
            let mut cut = vec![b'x'; k];
            cut.push(0xED);
            assert!(!has_surrogates(&cut), "{k}");
        }
    }

    /// Code point by code point reference of json.dumps.
    fn reference(cps: &[u32], ensure_ascii: bool) -> String {
        let mut s = String::from("\"");
        for &cp in cps {
            match cp {
                0x22 => s.push_str("\\\""),
                0x5C => s.push_str("\\\\"),
                0x08 => s.push_str("\\b"),
                0x09 => s.push_str("\\t"),
                0x0A => s.push_str("\\n"),
                0x0C => s.push_str("\\f"),
                0x0D => s.push_str("\\r"),
                0..=0x1F => s.push_str(&format!("\\u{cp:04x}")),
                0x20..=0x7E => s.push(cp as u8 as char),
                _ if !ensure_ascii => {
                    let bytes = wtf8(cp);
                    // Surrogates are not chars; mark them for comparison on bytes instead.
                    s.push_str(&String::from_utf8(bytes).unwrap_or_else(|e| {
                        e.into_bytes()
                            .iter()
                            .map(|b| format!("<{b:02x}>"))
                            .collect()
                    }));
                }
                0x1_0000.. => {
                    let v = cp - 0x1_0000;
                    s.push_str(&format!(
                        "\\u{:04x}\\u{:04x}",
                        0xD800 + (v >> 10),
                        0xDC00 + (v & 0x3FF)
                    ));
                }
                _ => s.push_str(&format!("\\u{cp:04x}")),
            }
        }
        s.push('"');
        s
    }

    #[test]
    fn strings_pseudo_random() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let mut cps = Vec::with_capacity(len);
            for _ in 0..len {
                let r = next();
                let cp = match r % 16 {
                    0 => (r >> 8) as u32 % 0x20,
                    1 => [0x22, 0x5C, 0x7F, 0x7E, 0x20][(r >> 8) as usize % 5],
                    2 => 0x80 + (r >> 8) as u32 % 0x780,
                    3 => 0x800 + (r >> 8) as u32 % 0xF800, // surrogates included
                    4 => 0xD800 + (r >> 8) as u32 % 0x800,
                    5 => 0x1_0000 + (r >> 8) as u32 % 0x10_0000,
                    _ => 0x20 + (r >> 8) as u32 % 0x5F,
                };
                cps.push(cp);
            }
            let text: Vec<u8> = cps.iter().flat_map(|&cp| wtf8(cp)).collect();
            for ensure_ascii in [false, true] {
                let mut out = Vec::new();
                write_str(&mut out, &text, ensure_ascii);
                let got = String::from_utf8(out.clone()).unwrap_or_else(|e| {
                    // Mark non-UTF-8 (surrogate) sequences the way `reference` does.
                    let bytes = e.into_bytes();
                    let mut s = String::new();
                    let mut i = 0;
                    while i < bytes.len() {
                        if bytes[i] == 0xED && bytes[i + 1] >= 0xA0 {
                            for b in &bytes[i..i + 3] {
                                s.push_str(&format!("<{b:02x}>"));
                            }
                            i += 3;
                        } else {
                            let w = match bytes[i] {
                                0..=0x7F => 1,
                                0xC0..=0xDF => 2,
                                0xE0..=0xEF => 3,
                                _ => 4,
                            };
                            s.push_str(std::str::from_utf8(&bytes[i..i + w]).unwrap());
                            i += w;
                        }
                    }
                    s
                });
                assert_eq!(got, reference(&cps, ensure_ascii), "{cps:x?}");
                if ensure_ascii {
                    assert!(out.iter().all(|&b| (0x20..0x7F).contains(&b)));
                    // And it is JSON that parses back to the same code points (when valid).
                    if !cps.iter().any(|cp| (0xD800..0xE000).contains(cp)) {
                        let back: String = serde_json::from_slice(&out).unwrap();
                        assert_eq!(back.as_bytes(), &text[..]);
                    }
                }
            }
            assert_eq!(
                has_surrogates(&text),
                cps.iter().any(|cp| (0xD800..0xE000).contains(cp)),
                "{cps:x?}"
            );
        }
    }

    #[test]
    fn malformed_input_does_not_panic() {
        for text in [
            &[0xFFu8][..],
            &[0xE2, 0x82],
            &[0xF0, 0x9F, 0x98],
            &[0x80, b'a'],
            &[0xC3],
            &[0xED],
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text, true);
            assert!(out.iter().all(|&b| (0x20..0x7F).contains(&b)));
            write_str(&mut out, text, false);
            has_surrogates(text);
        }
    }
}
