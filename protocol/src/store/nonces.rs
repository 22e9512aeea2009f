//! Spent force-ack nonces: `nonces/<nonce>` under the store root, one file per nonce.
//!
//! A force-ack is good for one execution. At the point of no return the server claims its
//! nonce by creating the nonce's file exclusively, so of any number of concurrent claims
//! (threads or processes) exactly one succeeds. The file holds the digest of the plan it was
//! claimed for and a newline, so a verifier can tell which execution spent it. File and
//! directory are flushed before a claim returns, so a claim survives a crash.
//!
//! This is the one definition of that layout in Rust; mechanisms in other languages (the
//! Python `fs_write`) spell the same `nonces/<nonce>`, as the specification does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use super::{create_dir_durable, io_at, sync_parent, Result, Store, StoreError};
use crate::digest::Digest;

/// Directory under the store root holding one file per spent nonce.
const NONCES_DIR: &str = "nonces";

/// A claim holds one digest and a newline; anything much longer is not one.
const MAX_CLAIM_BYTES: u64 = 1024;

/// What claiming a nonce found.
#[must_use = "a nonce spent before means its force-ack was already used"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceClaim {
    /// This call claimed it.
    Claimed,
    /// It was claimed before, by anyone, for any plan: the force-ack carrying it is spent.
    Spent,
}

/// Checks that `nonce` is a force-ack nonce: exactly 32 lowercase hex digits (16 random
/// bytes). A nonce becomes a file name here, so this is also what keeps it inside the store.
pub fn check_nonce(nonce: &str) -> std::result::Result<(), String> {
    if nonce.len() == 32
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(format!(
            "nonce {nonce:?} must be exactly 32 lowercase hex digits (16 random bytes)"
        ))
    }
}

impl Store {
    /// The file that records `nonce` as spent (whether or not it is there).
    pub fn nonce_path(&self, nonce: &str) -> Result<PathBuf> {
        check_nonce(nonce).map_err(|reason| StoreError::BadNonce {
            nonce: nonce.to_owned(),
            reason,
        })?;
        Ok(self.root.join(NONCES_DIR).join(nonce))
    }

    /// Claims `nonce` for `plan`, atomically and durably; [`NonceClaim::Spent`] if it was
    /// claimed before.
    pub fn claim_nonce(&self, nonce: &str, plan: &Digest) -> Result<NonceClaim> {
        let path = self.nonce_path(nonce)?;
        create_dir_durable(&self.root.join(NONCES_DIR))?;
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(NonceClaim::Spent),
            Err(e) => return Err(io_at(&path)(e)),
        };
        // From here on the nonce is taken even if a write fails: failing closed costs the
        // operator a fresh approval, failing open could run an effect twice.
        writeln!(file, "{plan}")
            .and_then(|()| file.sync_all())
            .map_err(io_at(&path))?;
        sync_parent(&path)?;
        Ok(NonceClaim::Claimed)
    }

    /// Whether `nonce` was claimed. Only an early answer: [`Store::claim_nonce`] alone
    /// decides, atomically.
    pub fn nonce_spent(&self, nonce: &str) -> Result<bool> {
        let path = self.nonce_path(nonce)?;
        path.try_exists().map_err(io_at(&path))
    }

    /// The plan `nonce` was claimed for; `None` if it was never claimed.
    pub fn nonce_claim(&self, nonce: &str) -> Result<Option<Digest>> {
        let path = self.nonce_path(nonce)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_CLAIM_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_at(&path))?;
        let bad = |reason: String| StoreError::BadNonceClaim {
            path: path.clone(),
            reason,
        };
        if bytes.len() as u64 > MAX_CLAIM_BYTES {
            return Err(bad(format!(
                "larger than the {MAX_CLAIM_BYTES} bytes a claim may hold"
            )));
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| bad(e.to_string()))?;
        text.trim()
            .parse::<Digest>()
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }
}
