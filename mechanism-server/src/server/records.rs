//! Which result belongs to which plan, which executions are under way, and who executes a
//! plan now: small mutable state beside the immutable store.
//!
//! The store is content-addressed, so "the last result of plan P" needs a name of its own:
//! the store reference `results/<plan hex>` ([`protocol::store::refs::ResultRecord`], which
//! admissions read too), replaced atomically. An execution under way is journalled under
//! `executions/<plan hex>` from before the mechanism is called until its result is
//! recorded, so one killed in between is found and finished (see [`Journal`]). And one
//! process at a time executes a plan: it holds an advisory lock on `locks/<plan hex>.lock`,
//! which the kernel drops when the process dies.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use protocol::store::refs::ResultRecord;
use protocol::store::{Store, StoreError};
use protocol::Digest;
use serde::{Deserialize, Serialize};

/// The digests recorded for one execution of a plan.
pub type Record = ResultRecord;

/// The store namespace of executions under way.
pub const EXECUTIONS: &str = "executions";

/// The store directory of the per-plan execution locks.
const LOCKS: &str = "locks";

/// An execution under way: what recording its result needs, should the process executing
/// it be killed and another finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// The AdmissionWitness the execution was admitted with.
    pub admission: Digest,
    /// The force-ack it was approved with, for a destructive plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_ack: Option<Digest>,
    /// That force-ack's nonce, claimed at the point of no return (or, when the execution
    /// was killed right before, by whoever finishes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// This process's exclusive right to execute one plan, until dropped.
#[derive(Debug)]
pub struct PlanLock {
    _file: File,
}

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

    /// Takes the right to execute `plan`; `Ok(None)` while another process holds it.
    pub fn lock(&self, plan: &Digest) -> io::Result<Option<PlanLock>> {
        let dir = self.store.root().join(LOCKS);
        fs::create_dir_all(&dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(format!("{}.lock", plan.hex())))?;
        Ok(crate::flock::lock_exclusive(&file)?.then_some(PlanLock { _file: file }))
    }

    /// Journals an execution of `plan` as under way, durably.
    pub fn begin(&self, plan: &Digest, journal: &Journal) -> Result<(), StoreError> {
        self.store.set_ref(EXECUTIONS, &plan.hex(), journal)
    }

    /// The execution of `plan` under way or interrupted, if any. One that cannot be read
    /// is reported and treated as absent: the mechanism still finishes its own half of an
    /// interrupted execution, only the result goes unrecorded until `plan` is executed again.
    pub fn journal(&self, plan: &Digest) -> Option<Journal> {
        match self.store.get_ref(EXECUTIONS, &plan.hex()) {
            Ok(journal) => journal,
            Err(error) => {
                tracing::warn!(%plan, %error, "ignoring an unreadable execution journal");
                None
            }
        }
    }

    /// Ends the journal of `plan`: its result is recorded, or nothing of it was applied.
    pub fn end(&self, plan: &Digest) -> Result<(), StoreError> {
        self.store.remove_ref(EXECUTIONS, &plan.hex())
    }

    /// The plans with an execution journalled, under way or interrupted.
    pub fn journalled(&self) -> Result<Vec<Digest>, StoreError> {
        Ok(self
            .store
            .ref_keys(EXECUTIONS)?
            .iter()
            .filter_map(|hex| format!("sha256:{hex}").parse().ok())
            .collect())
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
