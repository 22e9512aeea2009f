//! A reader over a stored object that checks the digest when it reaches the end.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};

use super::{StoreError, BUF_SIZE};
use crate::digest::{Digest, Hasher};

/// Reads a stored object, hashing as it goes; at EOF a mismatch is an `InvalidData` error.
///
/// The error wraps [`StoreError::IntegrityMismatch`] (reach it with
/// `io::Error::get_ref` and `downcast_ref`). Until a read returns `Ok(0)` the bytes handed
/// out are unverified, so a consumer must be able to discard them.
pub struct VerifiedReader {
    inner: BufReader<File>,
    expected: Digest,
    state: State,
}

enum State {
    Reading(Hasher),
    Verified,
    Mismatch(Digest),
}

impl fmt::Debug for VerifiedReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Reading(_) => "reading",
            State::Verified => "verified",
            State::Mismatch(_) => "mismatch",
        };
        f.debug_struct("VerifiedReader")
            .field("expected", &self.expected)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl VerifiedReader {
    /// Wraps an open object expected to hash to `expected`.
    pub(super) fn new(file: File, expected: Digest) -> Self {
        Self {
            inner: BufReader::with_capacity(BUF_SIZE, file),
            expected,
            state: State::Reading(Hasher::new()),
        }
    }
}

/// The io error a reader returns when the object hashed to `actual` instead of `digest`.
fn mismatch(digest: Digest, actual: Digest) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        StoreError::IntegrityMismatch { digest, actual },
    )
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let hasher = match &mut self.state {
            State::Reading(hasher) => hasher,
            // Once checked, the object is done: bytes appended later were never verified.
            State::Verified => return Ok(0),
            State::Mismatch(actual) => return Err(mismatch(self.expected, *actual)),
        };
        // An empty buffer reads 0 bytes without meaning EOF.
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            hasher.update(&buf[..n]);
            return Ok(n);
        }
        let actual = std::mem::take(hasher).finish();
        if actual == self.expected {
            self.state = State::Verified;
            Ok(0)
        } else {
            self.state = State::Mismatch(actual);
            Err(mismatch(self.expected, actual))
        }
    }
}
