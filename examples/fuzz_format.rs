//! A deterministic fuzz loop for the formatting and parsing code (no extra dependencies).
//!
//! ```text
//! cargo run --release --example fuzz_format -- [ITERATIONS] [SEED]
//! ```
//!
//! `ITERATIONS` defaults to 200,000 (0 runs until killed, printing the counts every 10 s);
//! `SEED` defaults to 1. Each iteration checks, on freshly generated random input:
//!
//! * `write_str` then `parse` gives back the string, with and without `ensure_ascii`, for UTF-8
//!   and for WTF-8 holding lone surrogates (no surrogate pairs: Python's `json` joins an escaped
//!   pair on reading too); with `ensure_ascii` the output is pure printable ASCII;
//! * `has_surrogates` agrees with a plain scan;
//! * `write_float` output parses back to the same `f64` (bit for bit, NaN as NaN), for random
//!   bit patterns and for "nice" decimals, and has Python's layout (a `.` or an `e`, two exponent
//!   digits at least);
//! * a random document written with these primitives parses back to the same tree;
//! * `parse` and `parse_decoded` never panic on arbitrary bytes, nor on mutations of valid
//!   documents (bit flips, insertions, deletions, truncations, encodings as UTF-16/32).
//!
//! Failures are printed with the seed and iteration and counted; the exit code is 1 if any.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use atomicjson::format::{has_surrogates, write_float, write_str};
use atomicjson::read::{parse, parse_decoded, Json};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{push_wtf8, same_float, same_tree, write_tree};

/// SplitMix64: small, fast, good enough to drive a fuzzer, and reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

#[derive(Default)]
struct Counts {
    strings: u64,
    floats: u64,
    documents: u64,
    parsed_arbitrary: u64,
    arbitrary_ok: u64,
    failures: u64,
}

/// A code point of a random class, as WTF-8 bytes appended to `out`. `prev_high` tells whether
/// the previous char was a lone high surrogate (a low one must not follow it).
fn push_char(rng: &mut Rng, out: &mut Vec<u8>, surrogates: bool, prev_high: &mut bool) {
    let cp: u32 = match rng.below(10) {
        0 => rng.below(0x20) as u32,                                  // controls
        1 => [b'"', b'\\', b'/', 0x7F][rng.below(4) as usize] as u32, // specials
        2 | 3 => 0x20 + rng.below(0x5F) as u32,                       // printable ASCII
        4 => 0x80 + rng.below(0x780) as u32,                          // 2-byte
        5 => 0x800 + rng.below(0xD000 - 0x800) as u32,                // 3-byte below surrogates
        6 => 0xE000 + rng.below(0x2000) as u32,                       // 3-byte above surrogates
        7 => [0x2028, 0x2029, 0xFEFF, 0xFFFF, 0xFFFD][rng.below(5) as usize],
        8 => 0x1_0000 + rng.below(0x10_0000) as u32, // astral
        _ if surrogates => {
            if *prev_high {
                0xD800 + rng.below(0x400) as u32 // another high one: still no pair
            } else {
                0xD800 + rng.below(0x800) as u32
            }
        }
        _ => 0x41,
    };
    *prev_high = (0xD800..0xDC00).contains(&cp);
    push_wtf8(out, cp);
}

fn random_text(rng: &mut Rng, surrogates: bool) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(4),
        1 => rng.below(20),
        2 => rng.below(100),
        _ => rng.below(600),
    };
    let mut out = Vec::new();
    let mut prev_high = false;
    // Long plain runs now and then, to exercise the 8/16-byte scanner paths.
    for _ in 0..len {
        if rng.chance(8) {
            let run = 1 + rng.below(40) as usize;
            out.extend(std::iter::repeat_n(b'a' + rng.below(26) as u8, run));
            prev_high = false;
        } else {
            push_char(rng, &mut out, surrogates, &mut prev_high);
        }
    }
    out
}

fn scan_surrogates(text: &[u8]) -> bool {
    text.windows(2).any(|w| w[0] == 0xED && w[1] >= 0xA0)
}

fn random_float(rng: &mut Rng) -> f64 {
    match rng.below(6) {
        0 | 1 => f64::from_bits(rng.next()),
        2 => (rng.next() as i64 as f64) / 10f64.powi(rng.below(30) as i32),
        3 => {
            // Around the layout boundaries 1e-5, 1e-4, 1e16, 1e17.
            let e = [-6, -5, -4, -3, 15, 16, 17][rng.below(7) as usize];
            (1.0 + rng.below(1000) as f64 / 1000.0) * 10f64.powi(e)
        }
        4 => f64::from_bits(rng.below(1 << 20)), // subnormals
        _ => [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            2f64.powi(-25),
            1e16,
            1e-5,
        ][rng.below(11) as usize],
    }
}

/// Python's float repr layout: "NaN"/"Infinity"/"-Infinity", or digits with a '.', or an
/// exponent "e+XX"/"e-XX" with at least two digits and no '.' needed.
fn python_layout(s: &str) -> bool {
    if matches!(s, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    match s.split_once('e') {
        Some((_, exp)) => {
            (exp.starts_with('+') || exp.starts_with('-'))
                && exp.len() >= 3
                && exp[1..].bytes().all(|c| c.is_ascii_digit())
        }
        None => s.contains('.'),
    }
}

fn random_tree(rng: &mut Rng, depth: u32) -> Json {
    let kind = if depth > 6 {
        rng.below(6)
    } else {
        rng.below(8)
    };
    match kind {
        0 => Json::Null,
        1 => Json::Bool(rng.chance(2)),
        2 => Json::Int(rng.next() as i64 >> rng.below(64)),
        3 => {
            let f = random_float(rng);
            Json::Float(f)
        }
        4 | 5 => Json::Str(random_text(rng, true).into_boxed_slice()),
        6 => Json::Array(
            (0..rng.below(6))
                .map(|_| random_tree(rng, depth + 1))
                .collect(),
        ),
        _ => Json::Object(
            (0..rng.below(6))
                .map(|_| {
                    (
                        random_text(rng, true).into_boxed_slice(),
                        random_tree(rng, depth + 1),
                    )
                })
                .collect(),
        ),
    }
}

/// The first differing pair of subtrees, shown briefly.
fn first_difference(a: &Json, b: &Json) -> (String, String) {
    match (a, b) {
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            if let Some((p, q)) = x.iter().zip(y).find(|(p, q)| !same_tree(p, q)) {
                return first_difference(p, q);
            }
        }
        (Json::Object(x), Json::Object(y)) if x.len() == y.len() => {
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                if ka != kb {
                    return ("key".to_owned(), first_byte_difference(ka, kb));
                }
                if !same_tree(va, vb) {
                    return first_difference(va, vb);
                }
            }
        }
        _ => {}
    }
    let show = |v: &Json| match v {
        Json::Str(s) => format!("Str({})", lossy(s)),
        other => lossy(format!("{other:?}").as_bytes()),
    };
    if let (Json::Str(x), Json::Str(y)) = (a, b) {
        return ("Str".to_owned(), first_byte_difference(x, y));
    }
    (show(a), show(b))
}

/// At most 300 bytes, escaped.
fn lossy(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(300)];
    format!(
        "{:?}{}",
        cut.escape_ascii().to_string(),
        if bytes.len() > 300 { "..." } else { "" }
    )
}

/// Where two byte strings first differ, with a little context from each.
fn first_byte_difference(a: &[u8], b: &[u8]) -> String {
    let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let from = at.saturating_sub(8);
    format!(
        "first difference at byte {at} of {}/{}: {} vs {}",
        a.len(),
        b.len(),
        lossy(&a[from..a.len().min(at + 16)]),
        lossy(&b[from..b.len().min(at + 16)])
    )
}

fn mutate(rng: &mut Rng, doc: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let n = doc.len();
        match rng.below(7) {
            0 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                doc[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(n as u64 + 1) as usize;
                let b = *b"{}[]\",:\\u0123456789.eE+-tfnNI \xed\xa0\x80\xff\x00"
                    .get(rng.below(34) as usize)
                    .unwrap_or(&b'x');
                doc.insert(i, b);
            }
            2 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                doc.remove(i);
            }
            3 => doc.truncate(rng.below(n as u64 + 1) as usize),
            4 if n > 1 => {
                // Duplicate a slice (unbalanced nesting, repeated keys).
                let a = rng.below(n as u64) as usize;
                let b = a + rng.below((n - a) as u64) as usize;
                let piece = doc[a..b].to_vec();
                let at = rng.below(n as u64) as usize;
                doc.splice(at..at, piece);
            }
            5 => {
                // Re-encode as UTF-16/32 (the parser detects encodings like json.loads).
                let text = String::from_utf8_lossy(doc).into_owned();
                let mut enc = Vec::new();
                match rng.below(4) {
                    0 => text
                        .encode_utf16()
                        .for_each(|u| enc.extend(u.to_le_bytes())),
                    1 => text
                        .encode_utf16()
                        .for_each(|u| enc.extend(u.to_be_bytes())),
                    2 => text
                        .chars()
                        .for_each(|c| enc.extend((c as u32).to_le_bytes())),
                    _ => text
                        .chars()
                        .for_each(|c| enc.extend((c as u32).to_be_bytes())),
                }
                *doc = enc;
            }
            _ => {
                let i = rng.below(n as u64 + 1) as usize;
                doc.splice(i..i, std::iter::repeat_n(b'[', rng.below(50) as usize));
            }
        }
    }
}

fn arbitrary_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(200) as usize;
    let alphabet: &[u8] = b"{}[]\",:\\u0123456789.eE+- truefalsnNaIity\t\n";
    (0..len)
        .map(|_| {
            if rng.chance(3) {
                rng.next() as u8
            } else {
                alphabet[rng.below(alphabet.len() as u64) as usize]
            }
        })
        .collect()
}

/// Runs `f`, counting a panic as a failure (printed with what was being parsed).
fn no_panic(counts: &mut Counts, what: &str, input: &[u8], f: impl FnOnce() -> bool) {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(ok) => {
            counts.parsed_arbitrary += 1;
            counts.arbitrary_ok += ok as u64;
        }
        Err(_) => {
            counts.failures += 1;
            eprintln!("PANIC in {what} on {}", lossy(input));
        }
    }
}

fn fail(counts: &mut Counts, seed: u64, iteration: u64, message: String) {
    counts.failures += 1;
    if counts.failures <= 20 {
        eprintln!("FAIL seed={seed} iteration={iteration}: {message}");
    }
}

fn one_iteration(rng: &mut Rng, counts: &mut Counts, seed: u64, iteration: u64) {
    // Strings.
    let surrogates = rng.chance(2);
    let text = random_text(rng, surrogates);
    if has_surrogates(&text) != scan_surrogates(&text) {
        fail(
            counts,
            seed,
            iteration,
            format!("has_surrogates({})", lossy(&text)),
        );
    }
    for ascii in [false, true] {
        let mut out = Vec::new();
        write_str(&mut out, &text, ascii);
        if ascii && !out.iter().all(|&c| (0x20..0x7F).contains(&c)) {
            fail(
                counts,
                seed,
                iteration,
                format!("non-ASCII output {}", lossy(&out)),
            );
        }
        match parse(&out) {
            Ok(Json::Str(s)) if *s == *text => {}
            other => fail(
                counts,
                seed,
                iteration,
                format!(
                    "string {} ascii={ascii}: wrote {}, parsed {}",
                    lossy(&text),
                    lossy(&out),
                    match &other {
                        Ok(Json::Str(s)) => first_byte_difference(&text, s),
                        other => format!("{other:?}"),
                    }
                ),
            ),
        }
        counts.strings += 1;
    }

    // Floats.
    for _ in 0..4 {
        let f = random_float(rng);
        let mut out = Vec::new();
        write_float(&mut out, f);
        let s = String::from_utf8_lossy(&out).into_owned();
        let back = match parse(&out) {
            Ok(Json::Float(g)) => Some(g),
            _ => None,
        };
        if !python_layout(&s) || !back.is_some_and(|g| same_float(f, g)) {
            fail(
                counts,
                seed,
                iteration,
                format!("float {f:e} wrote {s}, parsed {back:?}"),
            );
        }
        counts.floats += 1;
    }

    // Documents.
    let tree = random_tree(rng, 0);
    let ascii = rng.chance(2);
    let indent = if rng.chance(2) { Some(2) } else { None };
    let mut doc = Vec::new();
    write_tree(&mut doc, &tree, ascii, indent, 0);
    match parse(&doc) {
        Ok(back) if same_tree(&tree, &back) => {}
        Ok(back) => {
            let (a, b) = first_difference(&tree, &back);
            fail(
                counts,
                seed,
                iteration,
                format!("document {}: wrote {a}, parsed {b}", lossy(&doc)),
            )
        }
        Err(err) => fail(
            counts,
            seed,
            iteration,
            format!("document {}: {err}", lossy(&doc)),
        ),
    }
    counts.documents += 1;

    // Arbitrary and mutated input: must not panic.
    let mut bad = doc;
    mutate(rng, &mut bad);
    no_panic(counts, "parse(mutated)", &bad, || parse(&bad).is_ok());
    no_panic(counts, "parse_decoded(mutated)", &bad, || {
        parse_decoded(&bad).is_ok()
    });
    let junk = arbitrary_bytes(rng);
    no_panic(counts, "parse(arbitrary)", &junk, || parse(&junk).is_ok());
    no_panic(counts, "write_str(arbitrary)", &junk, || {
        let mut out = Vec::new();
        write_str(&mut out, &junk, true);
        write_str(&mut out, &junk, false);
        has_surrogates(&junk);
        true
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations: u64 = args
        .get(1)
        .map_or(200_000, |a| a.parse().expect("ITERATIONS"));
    let seed: u64 = args.get(2).map_or(1, |a| a.parse().expect("SEED"));
    // Panics are caught and counted; keep the default hook quiet.
    panic::set_hook(Box::new(|_| {}));

    let mut rng = Rng(seed);
    let mut counts = Counts::default();
    let start = Instant::now();
    let mut report = start + Duration::from_secs(10);
    let mut i = 0u64;
    while iterations == 0 || i < iterations {
        one_iteration(&mut rng, &mut counts, seed, i);
        i += 1;
        if Instant::now() >= report {
            print_counts(&counts, i, start);
            report += Duration::from_secs(10);
        }
    }
    print_counts(&counts, i, start);
    if counts.failures > 0 {
        std::process::exit(1);
    }
}

fn print_counts(c: &Counts, iterations: u64, start: Instant) {
    println!(
        "{:.0} s: {iterations} iterations, {} strings, {} floats, {} documents round-tripped; \
         {} arbitrary/mutated inputs parsed without panic ({} valid); {} failures",
        start.elapsed().as_secs_f64(),
        c.strings,
        c.floats,
        c.documents,
        c.parsed_arbitrary,
        c.arbitrary_ok,
        c.failures
    );
}
