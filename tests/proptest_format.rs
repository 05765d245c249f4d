//! Property tests of the formatting and parsing primitives, against independent references:
//! serde_json (another JSON parser), Rust's own shortest float formatting, and a plain
//! per-character model of `json.dumps`'s string escaping.
//!
//! Case counts stay small for CI (`PROPTEST_CASES`, default 256 per property, scales them:
//! `PROPTEST_CASES=1000000 cargo test --release --test proptest_format`).

use atomicjson::format::{
    expand_deferred_floats, has_surrogates, write_float, write_float_deferred, write_i64, write_str,
};
use atomicjson::read::{parse, parse_decoded, Json};
use proptest::prelude::*;

mod common;
use common::{push_wtf8, same_float, same_tree, write_tree};

/// One Python code point: a Unicode scalar value or a lone surrogate.
fn code_point() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => any::<char>().prop_map(|c| c as u32),
        2 => 0u32..0x80,
        1 => prop::sample::select(vec![0x22, 0x5C, 0x2F, 0x7F, 0x2028, 0x2029, 0xFEFF, 0xFFFF]),
        1 => 0xD800u32..0xE000,
    ]
}

/// WTF-8 as Python's `str.encode('utf-8', 'surrogatepass')` gives it. A high surrogate directly
/// followed by a low one is left out: `json` writes both as escapes and joins them on reading,
/// so such a string does not come back as two code points (Python behaves the same).
fn wtf8() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(code_point(), 0..64).prop_map(|cps| {
        let mut out = Vec::new();
        let mut prev_high = false;
        for cp in cps {
            let low = (0xDC00..0xE000).contains(&cp);
            if prev_high && low {
                continue;
            }
            prev_high = (0xD800..0xDC00).contains(&cp);
            push_wtf8(&mut out, cp);
        }
        out
    })
}

/// The code points of WTF-8 text (input built by `push_wtf8`, so well formed).
fn code_points(text: &[u8]) -> Vec<u32> {
    let mut cps = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let b = text[i] as u32;
        let (len, init) = match b {
            0..=0x7F => (1, b),
            0xC0..=0xDF => (2, b & 0x1F),
            0xE0..=0xEF => (3, b & 0x0F),
            _ => (4, b & 0x07),
        };
        let cp = text[i + 1..i + len]
            .iter()
            .fold(init, |acc, &c| (acc << 6) | (c as u32 & 0x3F));
        cps.push(cp);
        i += len;
    }
    cps
}

/// `json.dumps`'s escaping, one code point at a time (Python's `py_encode_basestring` and
/// `py_encode_basestring_ascii`).
fn model_escape(text: &[u8], ensure_ascii: bool) -> Vec<u8> {
    let mut out = vec![b'"'];
    let unit = |out: &mut Vec<u8>, u: u32| out.extend(format!("\\u{u:04x}").bytes());
    for cp in code_points(text) {
        match cp {
            0x22 => out.extend(b"\\\""),
            0x5C => out.extend(b"\\\\"),
            0x0A => out.extend(b"\\n"),
            0x0D => out.extend(b"\\r"),
            0x09 => out.extend(b"\\t"),
            0x08 => out.extend(b"\\b"),
            0x0C => out.extend(b"\\f"),
            0..=0x1F => unit(&mut out, cp),
            0x20..=0x7E => out.push(cp as u8),
            _ if !ensure_ascii => push_wtf8(&mut out, cp),
            0x1_0000.. => {
                let v = cp - 0x1_0000;
                unit(&mut out, 0xD800 | (v >> 10));
                unit(&mut out, 0xDC00 | (v & 0x3FF));
            }
            _ => unit(&mut out, cp),
        }
    }
    out.push(b'"');
    out
}

/// Python's `float.__repr__`, built from Rust's shortest round-trip digits (`{:e}`), which
/// share nothing with the Schubfach code under test (`shortest`).
fn model_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // The shortest digit count that round-trips, then the nearest decimal with that many digits
    // (ties to even, like Python's repr: `{:e}` alone rounds a tie up, 99315640339991.125).
    let shortest = format!("{:e}", f.abs());
    let count = shortest.split_once('e').unwrap().0.replace('.', "").len();
    let sci = format!("{:.*e}", count - 1, f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if digits.len() as i32 <= point {
            format!(
                "{digits}{}.0",
                "0".repeat((point - digits.len() as i32) as usize)
            )
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        1 => (0u64..1 << 52).prop_map(f64::from_bits), // subnormals
        2 => (any::<i32>(), -30i32..30).prop_map(|(m, e)| m as f64 * 10f64.powi(e)),
        // Layout boundaries, extremes, and a tie between two shortest candidates (exactly
        // ...991.125: Python writes ...991.12).
        1 => prop::sample::select(vec![0.0, -0.0, 1e16, 1e-5, 1e-4, 9_999_999_999_999_998.0,
                                       5e-324, f64::MAX, f64::MIN_POSITIVE, 0.1,
                                       -99_315_640_339_991.13]),
    ]
}

/// A JSON tree; `finite_utf8` keeps to what every JSON parser accepts (no NaN or infinities,
/// no lone surrogates).
fn tree(finite_utf8: bool) -> impl Strategy<Value = Json> {
    let text = move || -> BoxedStrategy<Box<[u8]>> {
        if finite_utf8 {
            any::<String>().prop_map(|s| s.into_bytes().into()).boxed()
        } else {
            wtf8().prop_map(Vec::into_boxed_slice).boxed()
        }
    };
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Int),
        float()
            .prop_filter("finite", move |f| !finite_utf8 || f.is_finite())
            .prop_map(Json::Float),
        text().prop_map(Json::Str),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::vec((text(), inner), 0..8).prop_map(Json::Object),
        ]
    })
}

/// The same tree as serde_json reads it (object keys in document order, duplicates kept by
/// comparing pair lists instead of maps).
fn same_as_serde(a: &Json, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(x), Value::Bool(y)) => x == y,
        (Json::Int(x), Value::Number(y)) => y.as_i64() == Some(*x),
        // serde_json's default float parsing can be off in the last place (exact round trips
        // are checked against Rust's parser above): expect what serde makes of our text.
        (Json::Float(x), Value::Number(y)) => {
            let mut text = Vec::new();
            write_float(&mut text, *x);
            let serde_value: Option<f64> = serde_json::from_slice(&text).ok();
            y.as_f64()
                .is_some_and(|y| serde_value.is_some_and(|s| same_float(s, y)))
        }
        (Json::Str(x), Value::String(y)) => **x == *y.as_bytes(),
        (Json::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_as_serde(a, b))
        }
        // serde_json keeps the last of duplicate keys: compare against that view.
        (Json::Object(x), Value::Object(y)) => {
            let mut last: Vec<(&[u8], &Json)> = Vec::new();
            for (k, v) in x {
                match last.iter_mut().find(|(lk, _)| *lk == &**k) {
                    Some(slot) => slot.1 = v,
                    None => last.push((k, v)),
                }
            }
            last.len() == y.len()
                && last.iter().all(|(k, v)| {
                    std::str::from_utf8(k)
                        .ok()
                        .and_then(|k| y.get(k))
                        .is_some_and(|w| same_as_serde(v, w))
                })
        }
        _ => false,
    }
}

proptest! {
    #[test]
    fn strings_round_trip_and_match_the_escaping_model(text in wtf8(), ascii in any::<bool>()) {
        let mut out = Vec::new();
        write_str(&mut out, &text, ascii);
        prop_assert_eq!(&out, &model_escape(&text, ascii));
        if ascii {
            prop_assert!(out.iter().all(|&c| (0x20..0x7F).contains(&c)));
        }
        match parse(&out) {
            Ok(Json::Str(back)) => prop_assert_eq!(&*back, &text[..]),
            other => prop_assert!(false, "parsed {:?}", other),
        }
        let scanned = text.windows(2).any(|w| w[0] == 0xED && w[1] >= 0xA0);
        prop_assert_eq!(has_surrogates(&text), scanned);
    }

    #[test]
    fn utf8_strings_are_valid_json_for_serde(text in any::<String>(), ascii in any::<bool>()) {
        let mut out = Vec::new();
        write_str(&mut out, text.as_bytes(), ascii);
        let back: String = serde_json::from_slice(&out).map_err(|e| {
            TestCaseError::fail(format!("serde_json rejected {:?}: {e}", out.escape_ascii().to_string()))
        })?;
        prop_assert_eq!(back, text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_string_writer(junk in prop::collection::vec(any::<u8>(), 0..128)) {
        for ascii in [false, true] {
            let mut out = Vec::new();
            write_str(&mut out, &junk, ascii);
            prop_assert!(out.starts_with(b"\"") && out.ends_with(b"\""));
        }
    }

    #[test]
    fn floats_round_trip_with_pythons_repr(f in float()) {
        let mut out = Vec::new();
        write_float(&mut out, f);
        let text = String::from_utf8(out.clone()).unwrap();
        prop_assert_eq!(&text, &model_float_repr(f));
        match parse(&out) {
            Ok(Json::Float(back)) => prop_assert!(same_float(f, back), "{} -> {}", f, back),
            other => prop_assert!(false, "{} parsed as {:?}", text, other),
        }
        if f.is_finite() {
            // Rust's own parser as a second, exact reader.
            let back: f64 = text.parse().unwrap();
            prop_assert!(same_float(f, back));
        }
    }

    #[test]
    fn deferred_floats_expand_to_the_direct_text(
        pieces in prop::collection::vec((wtf8(), float()), 0..24),
        ascii in any::<bool>(),
    ) {
        // Strings written (WTF-8 or escaped) between floats, as the encoder interleaves them.
        let (mut direct, mut deferred) = (Vec::new(), Vec::new());
        for (text, f) in &pieces {
            write_str(&mut direct, text, ascii);
            write_str(&mut deferred, text, ascii);
            write_float(&mut direct, *f);
            write_float_deferred(&mut deferred, *f);
        }
        let mut expanded = b"kept".to_vec();
        expand_deferred_floats(&deferred, &mut expanded);
        prop_assert_eq!(&expanded[..4], b"kept");
        prop_assert_eq!(&expanded[4..], &direct[..]);
    }

    #[test]
    fn deferred_floats_expand_at_any_distance(
        pieces in prop::collection::vec((0usize..40, float()), 0..40),
        tail in 0usize..40,
    ) {
        // Runs of text of every length around the 16-byte chunks, floats back to back.
        let (mut direct, mut deferred) = (Vec::new(), Vec::new());
        for (i, (gap, f)) in pieces.iter().enumerate() {
            let run: Vec<u8> = (0..*gap).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            direct.extend_from_slice(&run);
            deferred.extend_from_slice(&run);
            write_float(&mut direct, *f);
            write_float_deferred(&mut deferred, *f);
        }
        direct.extend(std::iter::repeat_n(b'z', tail));
        deferred.extend(std::iter::repeat_n(b'z', tail));
        let mut expanded = Vec::new();
        expand_deferred_floats(&deferred, &mut expanded);
        prop_assert_eq!(expanded, direct);
    }

    #[test]
    fn ints_round_trip(i in any::<i64>()) {
        let mut out = Vec::new();
        write_i64(&mut out, i);
        let expected = i.to_string();
        prop_assert_eq!(&out, expected.as_bytes());
        prop_assert_eq!(parse(&out), Ok(Json::Int(i)));
    }

    #[test]
    fn documents_round_trip(doc in tree(false), ascii in any::<bool>(), indent in any::<bool>()) {
        let mut out = Vec::new();
        write_tree(&mut out, &doc, ascii, indent.then_some(2), 0);
        match parse(&out) {
            Ok(back) => prop_assert!(same_tree(&doc, &back), "{}", out.escape_ascii().to_string()),
            Err(err) => prop_assert!(false, "{}: {}", err, out.escape_ascii().to_string()),
        }
    }

    #[test]
    fn documents_are_json_that_serde_reads_the_same(
        doc in tree(true), ascii in any::<bool>(), indent in any::<bool>()
    ) {
        let mut out = Vec::new();
        write_tree(&mut out, &doc, ascii, indent.then_some(2), 0);
        let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            TestCaseError::fail(format!("serde_json rejected {:?}: {e}", out.escape_ascii().to_string()))
        })?;
        prop_assert!(same_as_serde(&doc, &value), "{}", out.escape_ascii().to_string());
    }

    #[test]
    fn mutated_documents_never_panic_the_parser(
        doc in tree(false),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = Vec::new();
        write_tree(&mut bytes, &doc, false, None, 0);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        // Either outcome is fine; a panic fails the test.
        let _ = parse(&bytes);
        let _ = parse_decoded(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(junk in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&junk);
        let _ = parse_decoded(&junk);
    }
}
