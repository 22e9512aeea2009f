//! Which result belongs to which plan: a small mutable index beside the immutable store.
//!
//! The store is content-addressed, so "the last result of plan P" needs a name of its own:
//! the store reference `results/<plan hex>` ([`protocol::store::refs::ResultRecord`], which
//! admissions read too), replaced atomically.

use std::path::Path;

use protocol::store::refs::ResultRecord;
use protocol::store::{Store, StoreError};
use protocol::Digest;

/// The digests recorded for one execution of a plan.
pub type Record = ResultRecord;

/// The result index of one store.
#[derive(Debug, Clone)]
pub struct Records {
    store: Store,
}

impl Records {
    /// The index of the store at `store_root`, created when missing.
    pub fn open(store_root: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            store: Store::open(store_root)?,
        })
    }

    /// The last recorded execution of `plan`, if any. A record that cannot be read is
    /// treated as absent: the plan is then re-checked against the world, never trusted.
    pub fn get(&self, plan: &Digest) -> Option<Record> {
        match self.store.result_record(plan) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%plan, %error, "ignoring an unreadable result record");
                None
            }
        }
    }

    /// Records an execution of `plan`, replacing any earlier record.
    pub fn put(&self, plan: &Digest, record: &Record) -> Result<(), StoreError> {
        self.store.set_result_record(plan, record)
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
        let path = records
            .store
            .ref_path(protocol::store::refs::RESULTS, &plan.hex())
            .unwrap();
        std::fs::write(path, b"{\"result\":").unwrap();
        assert_eq!(records.get(&plan), None);
    }
}
