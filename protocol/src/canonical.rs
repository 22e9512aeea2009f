//! Canonical JSON (RFC 8785, JCS) over strictly parsed I-JSON (RFC 7493).
//!
//! serde_jcs alone keeps the last of two duplicate keys and rounds big integers, so two
//! different documents could share one digest. Everything that is hashed passes through
//! [`parse`] (bytes from outside) or [`check`] (values built in memory) first.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufWriter};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::digest::{Digest, Hasher};

/// The largest integer magnitude I-JSON allows: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The deepest nesting of arrays and objects [`parse`] accepts (the outermost counts as 1).
///
/// Below serde_json's own limit of 127 levels, so depth is always refused here, as the typed
/// [`CanonError::TooDeep`], and the few levels a plan or a response wraps around a request's
/// params still parse in every reader that uses serde_json.
pub const MAX_NESTING_DEPTH: usize = 100;

/// Why a document cannot be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// The bytes are not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// An object has the same key twice.
    #[error("duplicate key {key:?} at {path} (line {line}, column {column})")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Where the object is, as `$.a.b[0]`.
        path: String,
        /// Line of the second occurrence.
        line: usize,
        /// Column of the second occurrence.
        column: usize,
    },
    /// An integer outside +-(2^53 - 1), which would not survive a round trip through a double.
    #[error("integer {value} at {path} is beyond +-(2^53 - 1){}", at(*.line, *.column))]
    IntegerOutOfRange {
        /// The number as written.
        value: String,
        /// Where it is.
        path: String,
        /// Line (0 when the value was built in memory).
        line: usize,
        /// Column (0 when the value was built in memory).
        column: usize,
    },
    /// A `\uD800`-`\uDFFF` escape without its partner.
    #[error("lone surrogate in string escape (line {line}, column {column})")]
    LoneSurrogate {
        /// Line of the escape.
        line: usize,
        /// Column of the escape.
        column: usize,
    },
    /// Arrays and objects nested deeper than [`MAX_NESTING_DEPTH`].
    #[error("nesting deeper than {limit} levels (line {line}, column {column})")]
    TooDeep {
        /// The limit, [`MAX_NESTING_DEPTH`].
        limit: usize,
        /// Line of the first array or object beyond the limit.
        line: usize,
        /// Column of the first array or object beyond the limit.
        column: usize,
    },
    /// Not JSON at all, or trailing data.
    #[error("invalid JSON: {message}")]
    Syntax {
        /// serde_json's description, with line and column.
        message: String,
    },
}

fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" (line {line}, column {column})")
    }
}

/// Parses bytes as strict I-JSON: UTF-8, no duplicate keys, safe integers, no lone surrogates,
/// nesting no deeper than [`MAX_NESTING_DEPTH`].
pub fn parse(bytes: &[u8]) -> Result<Value, CanonError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(CanonError::InvalidUtf8 {
            offset: e.valid_up_to(),
        });
    }
    let problem = RefCell::new(None);
    let huge = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node {
        path: &Path::Root,
        depth: 1,
        problem: &problem,
        huge: &huge,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    let huge = huge.into_inner();
    if parsed.is_ok() && !huge.is_empty() {
        // serde_json hands integer literals beyond u64 to us as doubles; only the text tells
        // `1e30` (a double, fine) from `1000000000000000000000000000000` (a rounded integer).
        let tokens = huge_number_tokens(bytes);
        for ((offset, literal), (path, value)) in tokens.into_iter().zip(huge) {
            if literal {
                let (line, column) = line_and_column(bytes, offset);
                return Err(CanonError::IntegerOutOfRange {
                    value,
                    path,
                    line,
                    column,
                });
            }
        }
    }
    parsed.map_err(|err| {
        let (line, column) = (err.line(), err.column());
        match problem.into_inner() {
            Some(Problem::Duplicate { key, path }) => CanonError::DuplicateKey {
                key,
                path,
                line,
                column,
            },
            Some(Problem::BigInteger { value, path }) => CanonError::IntegerOutOfRange {
                value,
                path,
                line,
                column,
            },
            Some(Problem::TooDeep) => CanonError::TooDeep {
                limit: MAX_NESTING_DEPTH,
                line,
                column,
            },
            None if is_lone_surrogate(bytes, &err) => CanonError::LoneSurrogate { line, column },
            None => CanonError::Syntax {
                message: err.to_string(),
            },
        }
    })
}

/// Checks a value built in memory: every integer must be within +-(2^53 - 1).
pub fn check(value: &Value) -> Result<(), CanonError> {
    fn walk(value: &Value, path: &Path<'_>) -> Result<(), CanonError> {
        match value {
            Value::Number(n) if !number_is_safe(n) => Err(CanonError::IntegerOutOfRange {
                value: n.to_string(),
                path: path.to_string(),
                line: 0,
                column: 0,
            }),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| walk(item, &Path::Index(path, i))),
            Value::Object(map) => map
                .iter()
                .try_for_each(|(k, v)| walk(v, &Path::Key(path, k))),
            _ => Ok(()),
        }
    }
    walk(value, &Path::Root)
}

/// The RFC 8785 canonical bytes of a value that passes [`check`].
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonError> {
    check(value)?;
    write_to_vec(value)
}

/// Parses strictly and returns the canonical bytes.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, CanonError> {
    write_to_vec(&parse(bytes)?)
}

/// SHA-256 over the canonical bytes of a value, streamed into the hasher.
pub fn digest(value: &Value) -> Result<Digest, CanonError> {
    check(value)?;
    // SHA-256 works in 64-byte blocks and pays per call; the writer emits many tiny slices.
    let mut buffered = BufWriter::with_capacity(DIGEST_BUFFER, Hasher::new());
    writer::write_value(&mut buffered, value).map_err(write_error)?;
    let hasher = buffered
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?;
    Ok(hasher.finish())
}

/// Bytes gathered before each hasher update in [`digest`].
const DIGEST_BUFFER: usize = 8 * 1024;

fn write_to_vec(value: &Value) -> Result<Vec<u8>, CanonError> {
    let mut out = Vec::new();
    writer::write_value(&mut out, value).map_err(write_error)?;
    Ok(out)
}

/// Writing can only fail on a number that is not a double, which `check` and `parse` exclude.
fn write_error(e: io::Error) -> CanonError {
    CanonError::Syntax {
        message: e.to_string(),
    }
}

fn number_is_safe(n: &Number) -> bool {
    if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        n.as_f64().is_some_and(float_is_safe)
    }
}

/// Below this magnitude JCS prints an integral double as a plain integer literal.
const EXPONENT_FORM: f64 = 1e21;

/// A double is refused when it is integral, beyond the safe range and below 1e21: JCS would
/// print it as an integer literal beyond +-(2^53 - 1), so the canonical form could not be
/// parsed back. From 1e21 on JCS uses exponent form (`1e+30`), which parses back exactly.
fn float_is_safe(f: f64) -> bool {
    f.is_finite()
        && (f.fract() != 0.0 || f.abs() <= MAX_SAFE_INTEGER as f64 || f.abs() >= EXPONENT_FORM)
}

/// Number tokens outside strings whose value is an integer of magnitude 1e21 or more, in
/// document order, with their byte offset and whether they were written as integer literals.
fn huge_number_tokens(bytes: &[u8]) -> Vec<(usize, bool)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &bytes[start..i];
                let value = std::str::from_utf8(token)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok());
                if value.is_some_and(|v| v.fract() == 0.0 && v.abs() >= EXPONENT_FORM) {
                    let literal = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                    found.push((start, literal));
                }
            }
            _ => i += 1,
        }
    }
    found
}

fn line_and_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, column)
}

/// serde_json reports a lone surrogate either by name or as the end of a hex escape that
/// follows a high surrogate; look at the text just before the error to tell which.
fn is_lone_surrogate(bytes: &[u8], err: &serde_json::Error) -> bool {
    let message = err.to_string();
    if message.contains("surrogate") {
        return true;
    }
    if !message.contains("hex escape") {
        return false;
    }
    let Some(offset) = byte_offset(bytes, err.line(), err.column()) else {
        return false;
    };
    let window = &bytes[offset.saturating_sub(12)..offset.min(bytes.len())];
    window.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    })
}

fn byte_offset(bytes: &[u8], line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)?
    };
    Some(line_start + column)
}

/// A location inside a document, built on the stack while descending.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, key) => {
                let plain = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{}]", Value::String((*key).to_owned()))
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// What the strict visitor found, kept aside because serde errors only carry text.
enum Problem {
    Duplicate { key: String, path: String },
    BigInteger { value: String, path: String },
    TooDeep,
}

#[derive(Clone, Copy)]
struct Node<'a> {
    path: &'a Path<'a>,
    /// How many arrays and objects hold this value, counting itself if it is one.
    depth: usize,
    problem: &'a RefCell<Option<Problem>>,
    /// Paths and values of integral doubles of 1e21 or more, checked against the text later.
    huge: &'a RefCell<Vec<(String, String)>>,
}

impl Node<'_> {
    fn refuse<E: de::Error>(&self, problem: Problem) -> E {
        let message = match &problem {
            Problem::Duplicate { key, .. } => format!("duplicate key {key:?}"),
            Problem::BigInteger { value, .. } => format!("integer {value} out of range"),
            Problem::TooDeep => format!("nesting deeper than {MAX_NESTING_DEPTH} levels"),
        };
        *self.problem.borrow_mut() = Some(problem);
        E::custom(message)
    }

    fn big<E: de::Error>(&self, value: String) -> E {
        self.refuse(Problem::BigInteger {
            value,
            path: self.path.to_string(),
        })
    }

    /// Refuses an array or object beyond [`MAX_NESTING_DEPTH`], before reading into it, so
    /// the recursion stops here and serde_json's own limit is never the one that fires.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > MAX_NESTING_DEPTH {
            return Err(self.refuse(Problem::TooDeep));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(self.big(v.to_string()));
        }
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(self.big(v.to_string()));
        }
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if !float_is_safe(v) {
            return Err(self.big(v.to_string()));
        }
        if v.fract() == 0.0 && v.abs() >= EXPONENT_FORM {
            self.huge
                .borrow_mut()
                .push((self.path.to_string(), format!("{v:e}")));
        }
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(Node {
            path: &Path::Index(self.path, items.len()),
            depth: self.depth + 1,
            problem: self.problem,
            huge: self.huge,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Occupied(entry) => {
                    return Err(self.refuse(Problem::Duplicate {
                        key: entry.key().clone(),
                        path: self.path.to_string(),
                    }))
                }
                Entry::Vacant(entry) => {
                    let child = Node {
                        path: &Path::Key(self.path, entry.key()),
                        depth: self.depth + 1,
                        problem: self.problem,
                        huge: self.huge,
                    };
                    let value = access.next_value_seed(child)?;
                    entry.insert(value);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

mod writer;

#[cfg(test)]
mod tests;
