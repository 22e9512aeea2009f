//! A streaming RFC 8785 (JCS) writer for `serde_json::Value`.
//!
//! serde_jcs buffers every nested object into its own `Vec` and copies it into its parent,
//! which made digests ~12x slower than plain serialisation. This writer emits the canonical
//! bytes straight into any [`io::Write`] and needs no buffer per object.
//!
//! Integers are written as plain decimal, which equals JCS's double formatting only for
//! magnitudes up to 2^53 - 1: callers pass values that went through `check` or `parse`.

use std::cmp::Ordering;
use std::io::{self, Write};

use serde_json::{Map, Number, Value};

/// Writes the canonical form of `value` into `out`.
pub(crate) fn write_value<W: Write>(out: &mut W, value: &Value) -> io::Result<()> {
    match value {
        Value::Null => out.write_all(b"null"),
        Value::Bool(true) => out.write_all(b"true"),
        Value::Bool(false) => out.write_all(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_value(out, item)?;
            }
            out.write_all(b"]")
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// Writes an object with its members in UTF-16 code unit order of their keys (RFC 8785 3.2.3).
fn write_object<W: Write>(out: &mut W, map: &Map<String, Value>) -> io::Result<()> {
    out.write_all(b"{")?;
    // `Map` is a BTreeMap (serde_json's `preserve_order` is off; a test pins this), so it
    // iterates in UTF-8 byte order, which is code point order. That equals UTF-16 order
    // unless a key holds a character of U+E000 or above: U+E000..U+FFFF is one code unit
    // above the surrogates that encode U+10000 and up. Such keys are rare, so only then
    // pay for sorting.
    if map.keys().any(|key| needs_utf16_order(key)) {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_unstable_by(|(a, _), (b, _)| utf16_cmp(a, b));
        write_members(out, members)?;
    } else {
        write_members(out, map)?;
    }
    out.write_all(b"}")
}

/// Writes `"key":value` pairs separated by commas, in the order given.
fn write_members<'a, W: Write>(
    out: &mut W,
    members: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> io::Result<()> {
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_string(out, key)?;
        out.write_all(b":")?;
        write_value(out, value)?;
    }
    Ok(())
}

/// Whether `key` holds a character of U+E000 or above, whose UTF-8 lead byte is 0xEE or more.
fn needs_utf16_order(key: &str) -> bool {
    // `is_ascii` checks a word at a time; most keys stop there.
    !key.is_ascii() && key.bytes().any(|b| b >= 0xEE)
}

/// Compares two strings by their UTF-16 code units without allocating.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Writes a number: integers in plain decimal, other doubles as ECMAScript prints them.
fn write_number<W: Write>(out: &mut W, n: &Number) -> io::Result<()> {
    if let Some(u) = n.as_u64() {
        write_decimal(out, false, u)
    } else if let Some(i) = n.as_i64() {
        write_decimal(out, i < 0, i.unsigned_abs())
    } else {
        let f = n
            .as_f64()
            .ok_or_else(|| io::Error::other(format!("number {n} is not a double")))?;
        // `Number` never holds NaN or infinities, the only inputs `format_finite` misprints.
        out.write_all(ryu_js::Buffer::new().format_finite(f).as_bytes())
    }
}

/// Writes `u` in decimal, after a minus sign when `negative`.
fn write_decimal<W: Write>(out: &mut W, negative: bool, mut u: u64) -> io::Result<()> {
    // u64::MAX has 20 digits, plus one byte for the sign.
    let mut buf = [0u8; 21];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if negative {
        start -= 1;
        buf[start] = b'-';
    }
    out.write_all(&buf[start..])
}

/// Writes a string with JCS escaping: `"`, `\` and U+0000..U+001F only; all else literally.
fn write_string<W: Write>(out: &mut W, s: &str) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.write_all(b"\"")?;
    let bytes = s.as_bytes();
    // Copy runs of plain bytes in one call; escapes only ever replace a single ASCII byte,
    // so every run boundary is also a UTF-8 character boundary.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let unicode;
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0C => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1F => {
                unicode = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0x0F)],
                ];
                &unicode
            }
            _ => continue,
        };
        out.write_all(&bytes[run..i])?;
        out.write_all(escape)?;
        run = i + 1;
    }
    out.write_all(&bytes[run..])?;
    out.write_all(b"\"")
}
