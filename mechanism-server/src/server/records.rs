//! Which result belongs to which plan: a small mutable index beside the immutable store.
//!
//! The store is content-addressed, so "the last result of plan P" needs a name of its own:
//! `<store>/results/<plan hex>.json` holding the result and witness digests, replaced
//! atomically (temporary file, flush, rename, directory flush).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use protocol::Digest;
use serde::{Deserialize, Serialize};

/// The digests recorded for one execution of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The ResultArtifact.
    pub result: Digest,
    /// The ResultWitness.
    pub witness: Digest,
    /// Whether the result says success.
    pub succeeded: bool,
}

/// The result index of one store.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The index under `store_root/results`, created when missing.
    pub fn open(store_root: &Path) -> std::io::Result<Self> {
        let dir = store_root.join("results");
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, plan: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", plan.hex()))
    }

    /// The last recorded execution of `plan`, if any. A record that cannot be read is
    /// treated as absent: the plan is then re-checked against the world, never trusted.
    pub fn get(&self, plan: &Digest) -> Option<Record> {
        let bytes = fs::read(self.path(plan)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(%plan, %error, "ignoring an unreadable result record");
                None
            }
        }
    }

    /// Records an execution of `plan`, replacing any earlier record.
    pub fn put(&self, plan: &Digest, record: &Record) -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(plan)).map_err(|e| e.error)?;
        fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_replaced_whole_and_a_torn_one_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        let plan = Digest::of_bytes(b"plan");
        assert_eq!(records.get(&plan), None);
        let first = Record {
            result: Digest::of_bytes(b"r1"),
            witness: Digest::of_bytes(b"w1"),
            succeeded: false,
        };
        records.put(&plan, &first).unwrap();
        assert_eq!(records.get(&plan), Some(first));
        let second = Record {
            succeeded: true,
            ..first
        };
        records.put(&plan, &second).unwrap();
        assert_eq!(records.get(&plan), Some(second));
        fs::write(records.path(&plan), b"{\"result\":").unwrap();
        assert_eq!(records.get(&plan), None);
    }
}
