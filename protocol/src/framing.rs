//! Message framing over byte streams: newline-delimited JSON and LSP-style `Content-Length`.
//!
//! The code is synchronous over [`std::io::BufRead`] and [`std::io::Write`]: the server runs
//! the reader on a thread of its own, so this crate needs no async runtime.
//!
//! # Line framing
//! One message per line, as MCP does. A message is its line without the line ending (`\n` or
//! `\r\n`). Whitespace before a message and lines holding only whitespace are skipped, so a
//! message always starts with a non-whitespace byte. A line is a message only once its `\n`
//! has arrived: bytes after the last `\n` at EOF are a partial frame,
//! [`FrameError::UnexpectedEof`], as a body cut short is in `Content-Length` framing. The
//! writer may have died mid-message, and nobody is left to read an answer.
//!
//! # `Content-Length` framing
//! `Content-Length: N\r\n`, optionally other headers (ignored), an empty line, then N bytes. Header
//! names are case-insensitive; a bare `\n` ends a header line as well as `\r\n` does. Whitespace
//! between frames is skipped.
//!
//! # Bounds and recovery
//! A message longer than the limit is never held whole in memory: a declared length is compared
//! with the limit before anything is allocated, a line is given up once it passes the limit,
//! and a header line once it passes [`MAX_HEADER_LINE_BYTES`]. The error is returned as soon as
//! it is known, and the stream goes on:
//!
//! - After a `Content-Length` beyond the limit ([`FrameError::TooLarge`]) the reader skips
//!   exactly the declared bytes, in buffer-sized chunks and never storing them, and reads the
//!   next frame after them. The length is known, so the stream stays in step; closing instead
//!   would drop the answers to requests still in flight, and a peer able to send a huge body
//!   could as well send as many bytes in frames within the limit.
//! - After an oversized line, the reader discards the rest of it, up to its `\n`.
//! - After a bad header, or a header line beyond [`MAX_HEADER_LINE_BYTES`]
//!   ([`FrameError::HeaderTooLong`]), the reader cannot know where the body ends, so it
//!   resynchronises at the next `Content-Length:` in the stream (LSP bodies run straight into
//!   the next header, so it is searched for anywhere, not only at the start of a line).
//!
//! The skipping happens at the start of the next [`FrameReader::read_frame`], so a peer gets its
//! answer without sending the whole body first. If the stream ends during that skip, the next
//! read reports a clean EOF: the bad frame was already reported.

use std::io::{self, BufRead, Write};
use std::ops::ControlFlow;

use crate::ErrorCode;

/// Default bound on one message's size in bytes (16 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Bound on one `Content-Length` header line in bytes, its `\r` included.
pub const MAX_HEADER_LINE_BYTES: usize = 8 * 1024;

/// The header the reader resynchronises at, lowercase for a case-insensitive search.
const CONTENT_LENGTH_PREFIX: &[u8] = b"content-length:";

/// How messages are delimited on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One message per line (newline-delimited JSON).
    Lines,
    /// LSP-style `Content-Length: N` headers, an empty line, then N bytes.
    ContentLength,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The message exceeds the size limit; it is skipped without ever being held whole.
    #[error("message{} exceeds the limit of {limit} bytes", declared_size(*.declared))]
    TooLarge {
        /// The limit in force, in bytes.
        limit: usize,
        /// The size the frame declared, when its framing declares one.
        declared: Option<u64>,
    },
    /// A `Content-Length` header block is malformed, or its length is missing or repeated.
    #[error("bad frame header: {0}")]
    BadHeader(String),
    /// A header line is longer than [`MAX_HEADER_LINE_BYTES`]; the reader resynchronises after it.
    #[error("a header line exceeds the limit of {limit} bytes")]
    HeaderTooLong {
        /// The limit in force, [`MAX_HEADER_LINE_BYTES`].
        limit: usize,
    },
    /// The writer was given a payload that one line cannot carry unchanged; nothing was written.
    #[error("payload cannot be sent as one line: {0}")]
    NotLineSafe(&'static str),
    /// The stream ended inside a header block, a body or a line: a partial frame.
    #[error("the stream ended in the middle of a message")]
    UnexpectedEof,
    /// The underlying reader or writer failed.
    #[error("frame I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the stream is still usable: the next read (or write) can succeed.
    pub fn is_recoverable(&self) -> bool {
        match self {
            FrameError::TooLarge { .. }
            | FrameError::HeaderTooLong { .. }
            | FrameError::BadHeader(_)
            | FrameError::NotLineSafe(_) => true,
            FrameError::UnexpectedEof | FrameError::Io(_) => false,
        }
    }

    /// The protocol error code to answer with.
    ///
    /// A bad header is `PARSE_ERROR`: no message could be extracted at all, which is further
    /// from a request than JSON that fails to parse, and `INVALID_REQUEST` promises the JSON
    /// itself was read. A payload refused by the writer is our own fault: `INTERNAL_ERROR`.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } | FrameError::HeaderTooLong { .. } => {
                ErrorCode::MessageTooLarge
            }
            FrameError::BadHeader(_) | FrameError::UnexpectedEof => ErrorCode::ParseError,
            FrameError::NotLineSafe(_) | FrameError::Io(_) => ErrorCode::InternalError,
        }
    }
}

/// Formats the optional declared size for [`FrameError::TooLarge`]'s message.
fn declared_size(declared: Option<u64>) -> String {
    declared.map_or_else(String::new, |n| format!(" of {n} bytes"))
}

/// Work left over from a bad frame, done at the start of the next read so the error is
/// reported before the skipping.
#[derive(Debug)]
enum Pending {
    /// Nothing to do.
    Nothing,
    /// Skip this many bytes of an oversized body.
    Skip(u64),
    /// Discard the rest of an oversized line, up to and including its `\n`.
    DiscardLine,
    /// Discard up to and including the next `Content-Length:`.
    Resync,
}

/// Reads one message at a time, detecting the framing from the first non-whitespace byte.
///
/// After a fatal error ([`FrameError::is_recoverable`] is false) the reader should not be used.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max_message_bytes: usize,
    framing: Option<Framing>,
    pending: Pending,
}

impl<R: BufRead> FrameReader<R> {
    /// A reader with the default size limit, [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub fn new(inner: R) -> Self {
        Self::with_max_size(inner, DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// A reader that refuses messages longer than `max_message_bytes`.
    pub fn with_max_size(inner: R, max_message_bytes: usize) -> Self {
        Self {
            inner,
            max_message_bytes,
            framing: None,
            pending: Pending::Nothing,
        }
    }

    /// The framing detected so far; `None` until the first non-whitespace byte is seen.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// The next message's bytes; `None` at a clean EOF.
    pub fn read_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let resynced = match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => false,
            Pending::Skip(n) => {
                if !self.skip(n)? {
                    return Ok(None);
                }
                false
            }
            Pending::DiscardLine => {
                if !self.discard_line()? {
                    return Ok(None);
                }
                false
            }
            Pending::Resync => {
                if !self.find_content_length()? {
                    return Ok(None);
                }
                true
            }
        };
        let framing = match self.framing {
            Some(framing) => framing,
            None => match self.skip_whitespace()? {
                None => return Ok(None),
                Some(b'C' | b'c') => *self.framing.insert(Framing::ContentLength),
                Some(_) => *self.framing.insert(Framing::Lines),
            },
        };
        match framing {
            Framing::Lines => self.read_line_frame(),
            Framing::ContentLength => self.read_content_length_frame(resynced),
        }
    }

    /// Reads one line message; the reader stands at the start of a line or before whitespace.
    fn read_line_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.skip_whitespace()?.is_none() {
            return Ok(None);
        }
        let max = self.max_message_bytes;
        // One byte more than the limit may be a `\r` that is stripped below.
        let cap = max.saturating_add(1);
        let mut line = Vec::new();
        let end = scan(&mut self.inner, |buf| {
            if buf.is_empty() {
                return (0, ControlFlow::Break(LineEnd::Eof));
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(p) if line.len() + p <= cap => {
                    line.extend_from_slice(&buf[..p]);
                    (p + 1, ControlFlow::Break(LineEnd::Newline))
                }
                // Too long, but the whole line is gone: nothing is left to discard.
                Some(p) => (p + 1, ControlFlow::Break(LineEnd::TooLong)),
                None if line.len() + buf.len() <= cap => {
                    line.extend_from_slice(buf);
                    (buf.len(), ControlFlow::Continue(()))
                }
                None => (buf.len(), ControlFlow::Break(LineEnd::TooLongUnterminated)),
            }
        })?;
        match end {
            LineEnd::Newline => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Err(self.too_large(None));
                }
                Ok(Some(line))
            }
            // Not empty: it starts with the byte `skip_whitespace` found.
            LineEnd::Eof => Err(FrameError::UnexpectedEof),
            LineEnd::TooLong => Err(self.too_large(None)),
            LineEnd::TooLongUnterminated => {
                self.pending = Pending::DiscardLine;
                Err(self.too_large(None))
            }
        }
    }

    /// Reads one `Content-Length` frame. `resynced`: the header name was already consumed.
    fn read_content_length_frame(&mut self, resynced: bool) -> Result<Option<Vec<u8>>, FrameError> {
        let mut line = Vec::new();
        if resynced {
            line.extend_from_slice(b"Content-Length:");
        } else if self.skip_whitespace()?.is_none() {
            return Ok(None);
        }
        let mut declared = None;
        loop {
            match self.read_header_line(&mut line)? {
                HeaderLine::Complete => {}
                HeaderLine::TooLong => {
                    self.pending = Pending::Resync;
                    return Err(FrameError::HeaderTooLong {
                        limit: MAX_HEADER_LINE_BYTES,
                    });
                }
                HeaderLine::Eof => return Err(FrameError::UnexpectedEof),
            }
            if line.is_empty() {
                break;
            }
            match parse_header(&line) {
                Ok(None) => {}
                Ok(Some(n)) if declared.is_none() => declared = Some(n),
                Ok(Some(_)) => return Err(self.bad_header("duplicate Content-Length".into())),
                Err(reason) => return Err(self.bad_header(reason)),
            }
            line.clear();
        }
        let Some(declared) = declared else {
            return Err(self.bad_header("missing Content-Length".into()));
        };
        let len = match usize::try_from(declared) {
            Ok(len) if len <= self.max_message_bytes => len,
            _ => {
                self.pending = Pending::Skip(declared);
                return Err(self.too_large(Some(declared)));
            }
        };
        // `len` is within the limit, so this allocation is bounded by it, not by the peer.
        let mut body = vec![0; len];
        match self.inner.read_exact(&mut body) {
            Ok(()) => Ok(Some(body)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FrameError::UnexpectedEof),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends one header line to `line`, without its `\r\n`, within [`MAX_HEADER_LINE_BYTES`].
    fn read_header_line(&mut self, line: &mut Vec<u8>) -> io::Result<HeaderLine> {
        let end = scan(&mut self.inner, |buf| {
            if buf.is_empty() {
                return (0, ControlFlow::Break(HeaderLine::Eof));
            }
            let room = MAX_HEADER_LINE_BYTES.saturating_sub(line.len());
            match buf.iter().position(|&b| b == b'\n') {
                Some(p) if p <= room => {
                    line.extend_from_slice(&buf[..p]);
                    (p + 1, ControlFlow::Break(HeaderLine::Complete))
                }
                None if buf.len() <= room => {
                    line.extend_from_slice(buf);
                    (buf.len(), ControlFlow::Continue(()))
                }
                // Consume no more than the bound: a good frame may follow in the same buffer,
                // and the resync search must still see it.
                _ => (room, ControlFlow::Break(HeaderLine::TooLong)),
            }
        })?;
        if end == HeaderLine::Complete && line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(end)
    }

    /// Skips whitespace; returns the next byte (not consumed), or `None` at EOF.
    fn skip_whitespace(&mut self) -> io::Result<Option<u8>> {
        scan(&mut self.inner, |buf| {
            match buf.iter().position(|&b| !is_whitespace(b)) {
                Some(i) => (i, ControlFlow::Break(Some(buf[i]))),
                None if buf.is_empty() => (0, ControlFlow::Break(None)),
                None => (buf.len(), ControlFlow::Continue(())),
            }
        })
    }

    /// Skips `n` bytes without copying them; false if the stream ended first.
    fn skip(&mut self, mut n: u64) -> io::Result<bool> {
        scan(&mut self.inner, |buf| {
            if n == 0 {
                return (0, ControlFlow::Break(true));
            }
            if buf.is_empty() {
                return (0, ControlFlow::Break(false));
            }
            // The lesser of a usize and a u64 fits both.
            let take = usize::try_from(n).map_or(buf.len(), |n| n.min(buf.len()));
            n -= take as u64;
            (take, ControlFlow::Continue(()))
        })
    }

    /// Discards up to and including the next `\n`; false if the stream ended first.
    fn discard_line(&mut self) -> io::Result<bool> {
        scan(&mut self.inner, |buf| {
            match buf.iter().position(|&b| b == b'\n') {
                Some(p) => (p + 1, ControlFlow::Break(true)),
                None if buf.is_empty() => (0, ControlFlow::Break(false)),
                None => (buf.len(), ControlFlow::Continue(())),
            }
        })
    }

    /// Discards up to and including the next `Content-Length:` (any case); false at EOF.
    fn find_content_length(&mut self) -> io::Result<bool> {
        // The match may straddle two buffers, so the matched length is carried across them.
        // Restarting at the mismatching byte is enough because `c` occurs only once in the
        // pattern: no match can begin inside a partial match.
        let mut matched = 0;
        scan(&mut self.inner, |buf| {
            if buf.is_empty() {
                return (0, ControlFlow::Break(false));
            }
            for (i, b) in buf.iter().map(u8::to_ascii_lowercase).enumerate() {
                if b == CONTENT_LENGTH_PREFIX[matched] {
                    matched += 1;
                    if matched == CONTENT_LENGTH_PREFIX.len() {
                        return (i + 1, ControlFlow::Break(true));
                    }
                } else {
                    matched = usize::from(b == CONTENT_LENGTH_PREFIX[0]);
                }
            }
            (buf.len(), ControlFlow::Continue(()))
        })
    }

    /// Records that the stream must be resynchronised and builds the error.
    fn bad_header(&mut self, reason: String) -> FrameError {
        self.pending = Pending::Resync;
        FrameError::BadHeader(reason)
    }

    /// Builds the size error for this reader's limit.
    fn too_large(&self, declared: Option<u64>) -> FrameError {
        FrameError::TooLarge {
            limit: self.max_message_bytes,
            declared,
        }
    }
}

/// How reading a line message ended.
enum LineEnd {
    /// At a `\n`, within the limit.
    Newline,
    /// At EOF before its `\n`, within the limit: a partial frame.
    Eof,
    /// Over the limit, and its `\n` was consumed.
    TooLong,
    /// Over the limit before its `\n` was seen.
    TooLongUnterminated,
}

/// How reading a header line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderLine {
    /// At its `\n`.
    Complete,
    /// Over [`MAX_HEADER_LINE_BYTES`] before its `\n`.
    TooLong,
    /// At EOF.
    Eof,
}

/// Feeds the reader's buffered bytes to `f` (an empty slice at EOF) until it breaks.
/// `f` returns how many bytes to consume. Interrupted reads are retried.
fn scan<R: BufRead, T>(
    reader: &mut R,
    mut f: impl FnMut(&[u8]) -> (usize, ControlFlow<T>),
) -> io::Result<T> {
    loop {
        let (used, flow) = match reader.fill_buf() {
            Ok(buf) => f(buf),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        reader.consume(used);
        if let ControlFlow::Break(out) = flow {
            return Ok(out);
        }
    }
}

/// JSON's whitespace, which is also what may separate frames.
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The `Content-Length` a header line declares, `None` for any other header, or why the line
/// is malformed. The line is `name: value` with the name an RFC 9110 token.
fn parse_header(line: &[u8]) -> Result<Option<u64>, String> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(format!("header line without a colon: {}", excerpt(line)));
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(format!("malformed header name: {}", excerpt(line)));
    }
    if !name.eq_ignore_ascii_case(b"content-length") {
        return Ok(None);
    }
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "Content-Length is not a number: {}",
            excerpt(value)
        ));
    }
    value
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .map(Some)
        .ok_or_else(|| format!("Content-Length does not fit in 64 bits: {}", excerpt(value)))
}

/// Whether `b` may appear in an RFC 9110 token (a header name).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A short, escaped rendering of peer bytes for an error message.
fn excerpt(bytes: &[u8]) -> String {
    const SHOWN: usize = 64;
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    let more = if bytes.len() > SHOWN { "..." } else { "" };
    format!("{shown:?}{more}")
}

/// Writes messages in a fixed framing: one flushed frame per [`FrameWriter::write_frame`], or
/// several queued with [`FrameWriter::queue_frame`] and sent by one [`FrameWriter::flush`].
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    framing: Framing,
}

impl<W: Write> FrameWriter<W> {
    /// A writer that frames every message with `framing`.
    pub fn new(inner: W, framing: Framing) -> Self {
        Self { inner, framing }
    }

    /// Writes `payload` as one frame with a single `write_all`, then flushes.
    ///
    /// The single write keeps frames whole when several writers share one locked stream. In
    /// line framing a payload the reader would not return unchanged (empty, a `\n` anywhere,
    /// leading whitespace, a leading `C` or `c` that reads as a `Content-Length` header, or a
    /// trailing `\r`) is refused with [`FrameError::NotLineSafe`] and nothing is written;
    /// compact JSON is always accepted.
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        let frame = match self.framing {
            Framing::Lines => {
                check_line_safe(payload)?;
                let mut frame = Vec::with_capacity(payload.len() + 1);
                frame.extend_from_slice(payload);
                frame.push(b'\n');
                frame
            }
            Framing::ContentLength => {
                let header = format!("Content-Length: {}\r\n\r\n", payload.len());
                let mut frame = Vec::with_capacity(header.len() + payload.len());
                frame.extend_from_slice(header.as_bytes());
                frame.extend_from_slice(payload);
                frame
            }
        };
        self.inner.write_all(&frame)?;
        self.flush()
    }

    /// Writes `payload` as one frame, refused as [`FrameWriter::write_frame`] refuses, without
    /// flushing and without copying it: meant for a buffered `inner` owned by one writer, so
    /// a burst of responses costs one write to the stream instead of one each.
    pub fn queue_frame(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        match self.framing {
            Framing::Lines => {
                check_line_safe(payload)?;
                self.inner.write_all(payload)?;
                self.inner.write_all(b"\n")?;
            }
            Framing::ContentLength => {
                write!(self.inner, "Content-Length: {}\r\n\r\n", payload.len())?;
                self.inner.write_all(payload)?;
            }
        }
        Ok(())
    }

    /// Sends every frame queued so far.
    pub fn flush(&mut self) -> Result<(), FrameError> {
        self.inner.flush()?;
        Ok(())
    }
}

/// Refuses a payload that would not come back unchanged from a line reader.
fn check_line_safe(payload: &[u8]) -> Result<(), FrameError> {
    match (payload.first(), payload.last()) {
        (None, _) => Err(FrameError::NotLineSafe("it is empty")),
        _ if payload.contains(&b'\n') => Err(FrameError::NotLineSafe("it contains a line feed")),
        (Some(&first), _) if is_whitespace(first) => {
            Err(FrameError::NotLineSafe("it starts with whitespace"))
        }
        // Refused whether or not it would open the stream, so the rule does not depend on
        // what was written before; no JSON text starts with either.
        (Some(b'C' | b'c'), _) => Err(FrameError::NotLineSafe(
            "it starts with `C` or `c`, which opens a Content-Length stream",
        )),
        (_, Some(b'\r')) => Err(FrameError::NotLineSafe("it ends with a carriage return")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{BufReader, Read};

    /// Reads every frame until EOF, panicking on any error.
    fn read_all<R: BufRead>(reader: &mut FrameReader<R>) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(frame) = reader.read_frame().unwrap() {
            frames.push(frame);
        }
        frames
    }

    /// Frames every payload with `framing` into one stream.
    fn write_all(framing: Framing, payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = FrameWriter::new(&mut out, framing);
        for payload in payloads {
            writer.write_frame(payload).unwrap();
        }
        out
    }

    fn cl(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    fn assert_too_large(result: Result<Option<Vec<u8>>, FrameError>, declared: Option<u64>) {
        match result {
            Err(FrameError::TooLarge { declared: d, .. }) => assert_eq!(d, declared),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    fn assert_bad_header(result: Result<Option<Vec<u8>>, FrameError>) {
        match result {
            Err(e @ FrameError::BadHeader(_)) => {
                assert!(e.is_recoverable());
                assert_eq!(e.code(), ErrorCode::ParseError);
            }
            other => panic!("expected BadHeader, got {other:?}"),
        }
    }

    static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

    /// A stream of `n` zero bytes served from a static buffer, so gigabytes cost no memory.
    struct Zeros(u64);

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.fill_buf()?.len().min(buf.len());
            buf[..n].fill(0);
            self.consume(n);
            Ok(n)
        }
    }

    impl BufRead for Zeros {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            let n = usize::try_from(self.0)
                .unwrap_or(usize::MAX)
                .min(ZEROS.len());
            Ok(&ZEROS[..n])
        }
        fn consume(&mut self, amt: usize) {
            self.0 -= amt as u64;
        }
    }

    #[test]
    fn detects_line_framing() {
        let mut reader = FrameReader::new(&b" \r\n\t\n{\"a\":1}\n[2]\r\n"[..]);
        assert_eq!(reader.framing(), None);
        assert_eq!(
            read_all(&mut reader),
            vec![b"{\"a\":1}".to_vec(), b"[2]".to_vec()]
        );
        assert_eq!(reader.framing(), Some(Framing::Lines));
    }

    #[test]
    fn detects_content_length_framing_in_either_case() {
        for header in ["Content-Length", "content-length", "CONTENT-LENGTH"] {
            let input = format!("\r\n  \n{header}: 2\r\n\r\n{{}}");
            let mut reader = FrameReader::new(input.as_bytes());
            assert_eq!(read_all(&mut reader), vec![b"{}".to_vec()], "{header}");
            assert_eq!(reader.framing(), Some(Framing::ContentLength));
        }
    }

    #[test]
    fn empty_or_blank_stream_is_clean_eof_without_framing() {
        for input in [&b""[..], b" \r\n\t\n"] {
            let mut reader = FrameReader::new(input);
            assert!(reader.read_frame().unwrap().is_none());
            assert_eq!(reader.framing(), None);
        }
    }

    #[test]
    fn other_headers_are_ignored_and_bare_newlines_accepted() {
        let input = "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\
                     content-LENGTH:  3 \n\nabc\r\nContent-Length:0\r\n\r\n";
        let mut reader = FrameReader::new(input.as_bytes());
        assert_eq!(read_all(&mut reader), vec![b"abc".to_vec(), Vec::new()]);
    }

    #[test]
    fn crlf_lines_lose_their_cr_and_keep_inner_ones() {
        let mut reader = FrameReader::new(&b"{\"a\":\"x\ry\"}\r\n\r\n[1] \r\n"[..]);
        assert_eq!(
            read_all(&mut reader),
            vec![b"{\"a\":\"x\ry\"}".to_vec(), b"[1] ".to_vec()]
        );
    }

    #[test]
    fn a_last_line_without_its_newline_is_a_partial_frame() {
        // Even one that happens to be complete JSON: only the `\n` ends a line message.
        for tail in ["{\"jsonrpc\":\"2.0\",\"id\":2,\"meth", "[1]", "[1]\r", "x"] {
            for capacity in [1 << 16, 3] {
                let input = format!("[0]\n \n{tail}");
                let mut reader =
                    FrameReader::new(BufReader::with_capacity(capacity, input.as_bytes()));
                assert_eq!(reader.read_frame().unwrap(), Some(b"[0]".to_vec()));
                let err = reader.read_frame().unwrap_err();
                assert!(
                    matches!(err, FrameError::UnexpectedEof),
                    "{tail:?}: {err:?}"
                );
                assert!(!err.is_recoverable());
            }
        }
        // Whitespace after the last `\n` is no frame at all.
        let mut reader = FrameReader::new(&b"[0]\n \r\n\t"[..]);
        assert_eq!(read_all(&mut reader), vec![b"[0]".to_vec()]);
    }

    #[test]
    fn ten_gib_content_length_fails_fast_then_recovers() {
        const TEN_GIB: u64 = 10 * 1024 * 1024 * 1024;
        let header = format!("Content-Length: {TEN_GIB}\r\n\r\n");
        let good = cl("{\"ok\":true}");
        let input = header
            .as_bytes()
            .chain(Zeros(TEN_GIB))
            .chain(good.as_bytes());
        let mut reader = FrameReader::new(input);
        let err = reader.read_frame().unwrap_err();
        assert!(err.is_recoverable());
        assert_eq!(err.code(), ErrorCode::MessageTooLarge);
        assert!(matches!(
            err,
            FrameError::TooLarge {
                limit: DEFAULT_MAX_MESSAGE_BYTES,
                declared: Some(TEN_GIB)
            }
        ));
        assert_eq!(
            reader.read_frame().unwrap(),
            Some(b"{\"ok\":true}".to_vec())
        );
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn ten_gib_content_length_then_eof_is_clean_eof() {
        let input = "Content-Length: 10737418240\r\n\r\n{\"partial\":";
        let mut reader = FrameReader::new(input.as_bytes());
        assert_too_large(reader.read_frame(), Some(10_737_418_240));
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn content_length_beyond_u64_is_a_bad_header() {
        let input = format!(
            "Content-Length: 99999999999999999999999\r\n\r\nxyz{}",
            cl("[]")
        );
        let mut reader = FrameReader::new(input.as_bytes());
        assert_bad_header(reader.read_frame());
        assert_eq!(reader.read_frame().unwrap(), Some(b"[]".to_vec()));
    }

    #[test]
    fn oversized_line_then_good_line() {
        let long = "x".repeat(100);
        // Terminated within one buffer, and spread over many small buffers.
        for capacity in [1 << 16, 7] {
            let input = format!("{long}\n{{\"ok\":1}}\n");
            let mut reader = FrameReader::with_max_size(
                BufReader::with_capacity(capacity, input.as_bytes()),
                16,
            );
            let err = reader.read_frame().unwrap_err();
            assert!(err.is_recoverable());
            assert_eq!(err.code(), ErrorCode::MessageTooLarge);
            assert_too_large(Err(err), None);
            assert_eq!(reader.read_frame().unwrap(), Some(b"{\"ok\":1}".to_vec()));
            assert_eq!(reader.read_frame().unwrap(), None);
        }
    }

    #[test]
    fn oversized_last_line_then_eof_is_clean_eof() {
        let input = format!("[1]\n{}", "y".repeat(1000));
        let mut reader =
            FrameReader::with_max_size(BufReader::with_capacity(8, input.as_bytes()), 16);
        assert_eq!(reader.read_frame().unwrap(), Some(b"[1]".to_vec()));
        assert_too_large(reader.read_frame(), None);
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn malformed_headers_then_good_frame() {
        let good = cl("{\"ok\":1}");
        let cases = [
            // Not a header line at all, e.g. a line-framed message on a Content-Length stream.
            format!("Content-Length: 5\r\n{{\"a\":1}}\n{good}"),
            format!("Content-Length: 5\r\nno colon here\r\n\r\nhello{good}"),
            format!("Content-Length: 5\r\nBad Name: x\r\n\r\nhello{good}"),
            format!("Content-Length: five\r\n\r\nhello{good}"),
            format!("Content-Length: -5\r\n\r\nhello{good}"),
            format!("Content-Length:\r\n\r\nhello{good}"),
            format!("Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello{good}"),
            format!("Content-Length: 5\r\ncontent-length: 6\r\n\r\nhello!{good}"),
            format!("Content-Type: text/json\r\n\r\nhello\r\n{good}"),
        ];
        for (i, input) in cases.iter().enumerate() {
            for capacity in [1 << 16, 5] {
                let mut reader =
                    FrameReader::new(BufReader::with_capacity(capacity, input.as_bytes()));
                assert_bad_header(reader.read_frame());
                assert_eq!(
                    reader.read_frame().unwrap(),
                    Some(b"{\"ok\":1}".to_vec()),
                    "case {i}, capacity {capacity}"
                );
                assert_eq!(reader.read_frame().unwrap(), None, "case {i}");
            }
        }
    }

    #[test]
    fn a_header_line_beyond_8_kib_is_too_large_then_the_stream_resynchronises() {
        let good = cl("{\"ok\":1}");
        // A header line of `len` bytes, its `\r` included.
        let line = |len: usize| format!("X-Pad: {}\r\n", "z".repeat(len - "X-Pad: \r".len()));
        let at_limit = format!("Content-Length: 2\r\n{}\r\n[]", line(MAX_HEADER_LINE_BYTES));
        let mut reader = FrameReader::new(at_limit.as_bytes());
        assert_eq!(read_all(&mut reader), vec![b"[]".to_vec()]);
        for (i, input) in [
            format!(
                "Content-Length: 5\r\n{}\r\nhello{good}",
                line(MAX_HEADER_LINE_BYTES + 1)
            ),
            format!(
                "Content-X: {}\r\n\r\n{good}",
                "z".repeat(3 * MAX_HEADER_LINE_BYTES)
            ),
            // The first line itself, with no line end in sight.
            format!(
                "Content-Length: 5{}{good}",
                " ".repeat(MAX_HEADER_LINE_BYTES)
            ),
        ]
        .iter()
        .enumerate()
        {
            for capacity in [1 << 16, 5] {
                let mut reader =
                    FrameReader::new(BufReader::with_capacity(capacity, input.as_bytes()));
                let err = reader.read_frame().unwrap_err();
                assert!(
                    matches!(
                        err,
                        FrameError::HeaderTooLong {
                            limit: MAX_HEADER_LINE_BYTES
                        }
                    ),
                    "case {i}: {err:?}"
                );
                assert!(err.is_recoverable());
                assert_eq!(err.code(), ErrorCode::MessageTooLarge);
                assert_eq!(
                    reader.read_frame().unwrap(),
                    Some(b"{\"ok\":1}".to_vec()),
                    "case {i}, capacity {capacity}"
                );
                assert_eq!(reader.read_frame().unwrap(), None, "case {i}");
            }
        }
    }

    #[test]
    fn garbage_before_a_header_is_skipped_after_one_error() {
        let input = format!("Content-Length: 2\r\n\r\n[]{{\"a\":1}}\n{}", cl("{}"));
        let mut reader = FrameReader::new(input.as_bytes());
        assert_eq!(reader.read_frame().unwrap(), Some(b"[]".to_vec()));
        assert_bad_header(reader.read_frame());
        assert_eq!(reader.read_frame().unwrap(), Some(b"{}".to_vec()));
    }

    #[test]
    fn eof_in_body_is_fatal() {
        let mut reader = FrameReader::new(&b"Content-Length: 10\r\n\r\n{\"a\":"[..]);
        let err = reader.read_frame().unwrap_err();
        assert!(matches!(err, FrameError::UnexpectedEof));
        assert!(!err.is_recoverable());
    }

    #[test]
    fn eof_in_header_is_fatal() {
        for input in ["Content-Length: 10", "Content-Length: 10\r\n", "Content-Le"] {
            let mut reader = FrameReader::new(input.as_bytes());
            assert!(
                matches!(reader.read_frame(), Err(FrameError::UnexpectedEof)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn io_errors_are_fatal_and_interruptions_retried() {
        struct Flaky(u32);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                match self.0 {
                    1 => Err(io::ErrorKind::Interrupted.into()),
                    2 => {
                        buf[..4].copy_from_slice(b"[1]\n");
                        Ok(4)
                    }
                    _ => Err(io::Error::other("broken")),
                }
            }
        }
        let mut reader = FrameReader::new(BufReader::new(Flaky(0)));
        assert_eq!(reader.read_frame().unwrap(), Some(b"[1]".to_vec()));
        let err = reader.read_frame().unwrap_err();
        assert!(matches!(err, FrameError::Io(_)));
        assert!(!err.is_recoverable());
        assert_eq!(err.code(), ErrorCode::InternalError);
    }

    #[test]
    fn many_messages_in_one_stream() {
        let payloads: Vec<Vec<u8>> = (0..10_000)
            .map(|i| {
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"status\"}}").into_bytes()
            })
            .collect();
        for framing in [Framing::Lines, Framing::ContentLength] {
            let stream = write_all(framing, &payloads);
            let mut reader = FrameReader::new(BufReader::with_capacity(37, &stream[..]));
            assert_eq!(read_all(&mut reader), payloads, "{framing:?}");
            assert_eq!(reader.framing(), Some(framing));
        }
    }

    #[test]
    fn message_exactly_at_limit_passes_and_one_byte_over_fails() {
        const LIMIT: usize = 32;
        let at = "a".repeat(LIMIT);
        let over = "b".repeat(LIMIT + 1);
        let lines = format!("{at}\n{at}\r\n{over}\n{over}\r\n[]\n");
        let mut reader = FrameReader::with_max_size(lines.as_bytes(), LIMIT);
        assert_eq!(reader.read_frame().unwrap(), Some(at.clone().into_bytes()));
        assert_eq!(reader.read_frame().unwrap(), Some(at.clone().into_bytes()));
        assert_too_large(reader.read_frame(), None);
        assert_too_large(reader.read_frame(), None);
        assert_eq!(reader.read_frame().unwrap(), Some(b"[]".to_vec()));

        let frames = format!("{}{}{}", cl(&at), cl(&over), cl("[]"));
        let mut reader = FrameReader::with_max_size(frames.as_bytes(), LIMIT);
        assert_eq!(reader.read_frame().unwrap(), Some(at.into_bytes()));
        assert_too_large(reader.read_frame(), Some(LIMIT as u64 + 1));
        assert_eq!(reader.read_frame().unwrap(), Some(b"[]".to_vec()));
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn default_limit_message_reads_whole_in_both_framings() {
        let mut at = vec![b'x'; DEFAULT_MAX_MESSAGE_BYTES];
        at[0] = b'"';
        for framing in [Framing::Lines, Framing::ContentLength] {
            let mut over = at.clone();
            over.push(b'y');
            let stream = write_all(framing, &[at.clone(), over, b"[]".to_vec()]);
            // The default buffer size: the message spans thousands of buffers.
            let mut reader = FrameReader::new(BufReader::new(&stream[..]));
            assert!(
                reader.read_frame().unwrap() == Some(at.clone()),
                "{framing:?}"
            );
            assert!(matches!(
                reader.read_frame(),
                Err(FrameError::TooLarge { .. })
            ));
            assert_eq!(reader.read_frame().unwrap(), Some(b"[]".to_vec()));
        }
    }

    #[test]
    fn writer_refuses_payloads_a_line_cannot_carry() {
        for payload in [
            &b""[..],
            b"{\"a\":\n1}",
            b" {}",
            b"\t[]",
            b"Content",
            b"c",
            b"{}\r",
        ] {
            let mut out = Vec::new();
            let err = FrameWriter::new(&mut out, Framing::Lines)
                .write_frame(payload)
                .unwrap_err();
            assert!(matches!(err, FrameError::NotLineSafe(_)), "{payload:?}");
            assert!(err.is_recoverable());
            assert!(out.is_empty(), "nothing may be written for {payload:?}");
        }
        // The same payloads are fine with a declared length.
        let mut out = Vec::new();
        FrameWriter::new(&mut out, Framing::ContentLength)
            .write_frame(b"{\"a\":\n1}")
            .unwrap();
        assert_eq!(out, b"Content-Length: 8\r\n\r\n{\"a\":\n1}");
    }

    #[test]
    fn writer_issues_one_write_per_frame_and_flushes() {
        #[derive(Default)]
        struct Recorder {
            writes: Vec<Vec<u8>>,
            flushes: usize,
        }
        impl Write for Recorder {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.writes.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.flushes += 1;
                Ok(())
            }
        }
        let mut rec = Recorder::default();
        let mut writer = FrameWriter::new(&mut rec, Framing::ContentLength);
        writer.write_frame(b"{}").unwrap();
        writer.write_frame(b"[1,2]").unwrap();
        assert_eq!(
            rec.writes,
            vec![
                b"Content-Length: 2\r\n\r\n{}".to_vec(),
                b"Content-Length: 5\r\n\r\n[1,2]".to_vec()
            ]
        );
        assert_eq!(rec.flushes, 2);

        let mut rec = Recorder::default();
        FrameWriter::new(&mut rec, Framing::Lines)
            .write_frame(b"{}")
            .unwrap();
        assert_eq!(rec.writes, vec![b"{}\n".to_vec()]);
        assert_eq!(rec.flushes, 1);
    }

    #[test]
    fn queued_frames_read_back_and_go_out_on_one_flush() {
        let payloads = [b"{}".to_vec(), b"[1,2]".to_vec(), br#"{"a":"b"}"#.to_vec()];
        for framing in [Framing::Lines, Framing::ContentLength] {
            let mut buffered = io::BufWriter::new(Vec::new());
            let mut writer = FrameWriter::new(&mut buffered, framing);
            for payload in &payloads {
                writer.queue_frame(payload).unwrap();
            }
            assert!(
                writer.inner.get_ref().is_empty(),
                "{framing:?}: nothing leaves before the flush"
            );
            // A refused payload leaves the queue as it was.
            if framing == Framing::Lines {
                let err = writer.queue_frame(b"{\"a\":\n1}").unwrap_err();
                assert!(matches!(err, FrameError::NotLineSafe(_)));
            }
            writer.flush().unwrap();
            let out = buffered.into_inner().unwrap();
            assert_eq!(out, write_all(framing, &payloads), "{framing:?}");
            assert_eq!(
                read_all(&mut FrameReader::new(&out[..])),
                payloads,
                "{framing:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = FrameError::TooLarge {
            limit: 16,
            declared: Some(99),
        };
        assert_eq!(
            err.to_string(),
            "message of 99 bytes exceeds the limit of 16 bytes"
        );
        let err = FrameError::TooLarge {
            limit: 16,
            declared: None,
        };
        assert_eq!(err.to_string(), "message exceeds the limit of 16 bytes");
        let mut reader = FrameReader::new(&b"Content-Length: 1x\r\n\r\n"[..]);
        let err = reader.read_frame().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad frame header: Content-Length is not a number: \"1x\""
        );
    }

    /// A payload a line can carry: not empty, no `\n`, no leading whitespace, `C` or `c`, and
    /// no trailing `\r`.
    fn line_payload() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..200).prop_map(|mut bytes| {
            for b in &mut bytes {
                if *b == b'\n' {
                    *b = b'n';
                }
            }
            if is_whitespace(bytes[0]) || matches!(bytes[0], b'C' | b'c') {
                bytes[0] = b'{';
            }
            if let Some(last @ b'\r') = bytes.last_mut() {
                *last = b'}';
            }
            bytes
        })
    }

    proptest! {
        #[test]
        fn line_framing_round_trips(
            payloads in prop::collection::vec(line_payload(), 0..20),
            capacity in 1usize..64,
        ) {
            let stream = write_all(Framing::Lines, &payloads);
            let mut reader = FrameReader::new(BufReader::with_capacity(capacity, &stream[..]));
            prop_assert_eq!(read_all(&mut reader), payloads.clone());
            let expected = (!payloads.is_empty()).then_some(Framing::Lines);
            prop_assert_eq!(reader.framing(), expected);
        }

        #[test]
        fn content_length_framing_round_trips(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20),
            capacity in 1usize..64,
        ) {
            let stream = write_all(Framing::ContentLength, &payloads);
            let mut reader = FrameReader::new(BufReader::with_capacity(capacity, &stream[..]));
            prop_assert_eq!(read_all(&mut reader), payloads.clone());
            let expected = (!payloads.is_empty()).then_some(Framing::ContentLength);
            prop_assert_eq!(reader.framing(), expected);
        }

        /// Arbitrary input, biased towards header syntax: no panic, every frame within the
        /// limit, and every call consumes input, so the reader always reaches its end.
        #[test]
        fn any_input_terminates_within_bounds(
            prefix in prop::bool::ANY,
            body in prop::collection::vec(
                prop::sample::select(b"Content-Length: 0123456789\r\n\r\n{}x".to_vec()),
                0..300,
            ),
            capacity in 1usize..32,
        ) {
            let mut input = if prefix { b"Content-Length: ".to_vec() } else { Vec::new() };
            input.extend_from_slice(&body);
            let mut reader =
                FrameReader::with_max_size(BufReader::with_capacity(capacity, &input[..]), 8);
            let mut calls = 0;
            loop {
                calls += 1;
                prop_assert!(calls <= input.len() + 2, "no progress");
                match reader.read_frame() {
                    Ok(None) => break,
                    Ok(Some(frame)) => prop_assert!(frame.len() <= 8),
                    Err(e) if e.is_recoverable() => {}
                    Err(_) => break,
                }
            }
        }
    }
}
