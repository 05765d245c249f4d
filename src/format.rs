// TEMPORARY placeholder until the real format module lands.
pub fn write_float(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() { out.extend_from_slice(b"NaN"); return; }
    if value.is_infinite() { out.extend_from_slice(if value > 0.0 { b"Infinity" } else { b"-Infinity" }); return; }
    let mut b = ryu::Buffer::new();
    out.extend_from_slice(b.format(value).as_bytes());
}
pub fn write_i64(out: &mut Vec<u8>, value: i64) { out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()); }
pub fn write_u64(out: &mut Vec<u8>, value: u64) { out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()); }
pub fn write_str(out: &mut Vec<u8>, text: &[u8], ensure_ascii: bool) {
    let _ = ensure_ascii;
    out.push(b'"');
    for &c in text { match c { b'"' => out.extend_from_slice(b"\\\""), b'\\' => out.extend_from_slice(b"\\\\"), b'\n' => out.extend_from_slice(b"\\n"), c if c < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c).as_bytes()), c => out.push(c) } }
    out.push(b'"');
}
pub fn has_surrogates(text: &[u8]) -> bool { text.windows(2).any(|w| w[0] == 0xED && w[1] >= 0xA0) }
