//! Traceability of a ticket's cycle, from its run record: back to the workorder, the context
//! snapshot and the ticket version the work was planned from, across to the output bundle,
//! and on to the ticket's latest pause state. Every link is a digest, read through
//! [`ledger::read`] (re-hashed and checked against its schema: anything else is
//! `INTEGRITY_MISMATCH`), and every check is a row of `admission verify`'s report.
//!
//! The checks, by name:
//! - `trace.workorder`: the record's workorder has the record's `work_order_id` and
//!   `ticket_id`;
//! - `trace.snapshot`: the workorder's context snapshot is of the run's ticket, and its plan
//!   is the record's (when both name one);
//! - `trace.ticket`: the snapshot's ticket version is of the run's ticket, and the ticket's
//!   current version descends from it (following `previous`);
//! - `trace.output`: the record's output bundle names the record's run and every digest the
//!   record names;
//! - `trace.pause`: the ticket's latest pause state is of the run's ticket, and names a version
//!   of it.
//!
//! A workorder filed by hand may name a ticket but no context snapshot: its run was not made
//! by the ticket lifecycle, so `trace.snapshot` and `trace.ticket` are skipped.
//!
//! "The run's ticket" is the record's `ticket_id`, which `trace.workorder` checks the workorder
//! agrees with: so a broken link fails the check of that link, not every check after it. A
//! record without a ticket skips the ticket checks; without an output bundle, `trace.output`.
//! A check that needs an artifact an earlier check could not read is skipped, since that
//! check's failure already says why.

use protocol::artifact::kinds::{ContextSnapshot, OutputBundle, RunRecord, Ticket, Workorder};
use protocol::artifact::Kind;
use protocol::store::Store;
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde::de::DeserializeOwned;

use super::ledger::{self, Ledger, Stored};
use crate::verify::Check;

/// Check name: the record's workorder.
pub const WORKORDER: &str = "trace.workorder";
/// Check name: the workorder's context snapshot.
pub const SNAPSHOT: &str = "trace.snapshot";
/// Check name: the snapshot's ticket version, and the ticket's current version.
pub const TICKET: &str = "trace.ticket";
/// Check name: the record's output bundle.
pub const OUTPUT: &str = "trace.output";
/// Check name: the ticket's latest pause state.
pub const PAUSE: &str = "trace.pause";

/// The artifacts of a run record's cycle that only the record leads to, as read (`None`
/// when named nowhere or unreadable), and the trace checks made.
#[derive(Debug, Default)]
pub struct Trace {
    /// The record's workorder.
    pub workorder: Option<Stored<Workorder>>,
    /// The workorder's context snapshot.
    pub snapshot: Option<Stored<ContextSnapshot>>,
    /// The record's output bundle.
    pub output: Option<Stored<OutputBundle>>,
    /// The checks, in the order the module docs list them.
    pub checks: Vec<Check>,
}

/// Follows every link of the run record `record` (stored as `digest`) through `store`,
/// checking each; see the module docs.
pub fn trace(store: &Store, digest: &Digest, record: &RunRecord) -> Trace {
    let mut trace = Trace::default();
    trace.check_workorder(store, digest, record);
    trace.check_snapshot(store, record);
    trace.check_ticket(store, record);
    trace.check_output(store, digest, record);
    trace.check_pause(store, record);
    trace
}

/// Reads `digest` as a `T`, through the ledger's checks.
fn read<T: Kind + DeserializeOwned>(store: &Store, digest: Digest) -> Result<Stored<T>, ErrorInfo> {
    ledger::read(store, &digest).map(|value| Stored { digest, value })
}

/// The failure of a link that could not be read.
fn unreadable(name: &str, error: &ErrorInfo, by: &str) -> Check {
    Check::fail(name, error.code, format!("{} ({by})", error.message))
}

/// Passes with `ok`, or fails with every problem found.
fn verdict(name: &str, problems: &[String], ok: String) -> Check {
    if problems.is_empty() {
        Check::pass(name, ok)
    } else {
        Check::fail(name, ErrorCode::IntegrityMismatch, problems.join("; "))
    }
}

/// `Some("x")` as `x`, `None` as `none`.
fn shown(value: Option<&str>) -> &str {
    value.unwrap_or("none")
}

impl Trace {
    fn check_workorder(&mut self, store: &Store, digest: &Digest, record: &RunRecord) {
        let Some(named) = record.workorder else {
            self.checks.push(match &record.ticket_id {
                Some(ticket_id) => Check::fail(
                    WORKORDER,
                    ErrorCode::IntegrityMismatch,
                    format!("the run record is for ticket {ticket_id} but names no workorder"),
                ),
                None => Check::skip(WORKORDER, "the run record names no workorder"),
            });
            return;
        };
        let workorder = match read::<Workorder>(store, named) {
            Ok(workorder) => workorder,
            Err(e) => {
                let by = format!("the workorder named by the run record {digest}");
                self.checks.push(unreadable(WORKORDER, &e, &by));
                return;
            }
        };
        let w = &workorder.value;
        let mut problems = Vec::new();
        if w.work_order_id != record.work_order_id {
            problems.push(format!(
                "workorder {named} is {}, the run record's is {}",
                w.work_order_id, record.work_order_id
            ));
        }
        if w.ticket_id != record.ticket_id {
            problems.push(format!(
                "workorder {named} is for ticket {}, the run record for ticket {}",
                shown(w.ticket_id.as_deref()),
                shown(record.ticket_id.as_deref())
            ));
        }
        let ok = format!(
            "{named} is workorder {} of ticket {}, as the run record says",
            w.work_order_id,
            shown(w.ticket_id.as_deref())
        );
        self.checks.push(verdict(WORKORDER, &problems, ok));
        self.workorder = Some(workorder);
    }

    fn check_snapshot(&mut self, store: &Store, record: &RunRecord) {
        let Some(ticket_id) = &record.ticket_id else {
            self.checks
                .push(Check::skip(SNAPSHOT, "the run record names no ticket"));
            return;
        };
        let Some(workorder) = &self.workorder else {
            self.checks.push(Check::skip(
                SNAPSHOT,
                format!("needs the workorder, which {WORKORDER} could not read"),
            ));
            return;
        };
        let Some(named) = workorder.value.context_snapshot_id else {
            // Only the ticket lifecycle snapshots; a workorder filed by hand may still name
            // a ticket, and its run has no cycle to trace.
            self.checks.push(Check::skip(
                SNAPSHOT,
                format!(
                    "workorder {} of ticket {ticket_id} names no context snapshot: it was not \
                     written by the ticket lifecycle",
                    workorder.digest
                ),
            ));
            return;
        };
        let snapshot = match read::<ContextSnapshot>(store, named) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let by = format!("the snapshot named by workorder {}", workorder.digest);
                self.checks.push(unreadable(SNAPSHOT, &e, &by));
                return;
            }
        };
        let s = &snapshot.value;
        let mut problems = Vec::new();
        if s.ticket_id != *ticket_id {
            problems.push(format!(
                "snapshot {named} is of ticket {}, the run's is {ticket_id}",
                s.ticket_id
            ));
        }
        if let (Some(planned), Some(ran)) = (s.plan_hash, record.plan_hash) {
            if planned != ran {
                problems.push(format!(
                    "snapshot {named} has plan {planned}, the run record plan {ran}"
                ));
            }
        }
        let ok = format!(
            "{named} is snapshot {} of ticket {ticket_id}{}",
            s.snapshot_id,
            match s.plan_hash {
                Some(plan) => format!(", plan {plan}"),
                None => ", which could not be planned".to_owned(),
            }
        );
        self.checks.push(verdict(SNAPSHOT, &problems, ok));
        self.snapshot = Some(snapshot);
    }

    fn check_ticket(&mut self, store: &Store, record: &RunRecord) {
        let Some(ticket_id) = &record.ticket_id else {
            self.checks
                .push(Check::skip(TICKET, "the run record names no ticket"));
            return;
        };
        let Some(snapshot) = &self.snapshot else {
            self.checks.push(Check::skip(
                TICKET,
                format!("needs the context snapshot, which {SNAPSHOT} did not read"),
            ));
            return;
        };
        let named = snapshot.value.ticket;
        let version = match read::<Ticket>(store, named) {
            Ok(version) => version.value,
            Err(e) => {
                let by = format!("the ticket version named by snapshot {}", snapshot.digest);
                self.checks.push(unreadable(TICKET, &e, &by));
                return;
            }
        };
        let mut problems = Vec::new();
        if version.ticket_id != *ticket_id {
            problems.push(format!(
                "the snapshot was made from {named}, a version of ticket {}, not {ticket_id}",
                version.ticket_id
            ));
        }
        let ledger = Ledger::new(store);
        let current = match ledger.ticket(ticket_id) {
            Ok(current) => current,
            Err(e) => {
                self.checks
                    .push(unreadable(TICKET, &e, "the ticket's current version"));
                return;
            }
        };
        match current {
            None => problems.push(format!("ticket {ticket_id} has no current version")),
            Some(current) => match ledger.history(current.digest) {
                Ok(history) if history.iter().any(|v| v.digest == named) => {}
                Ok(_) => problems.push(format!(
                    "the current version {} of ticket {ticket_id} does not descend from \
                     {named}, the version the snapshot was made from",
                    current.digest
                )),
                Err(e) => {
                    self.checks
                        .push(unreadable(TICKET, &e, "the ticket's history"));
                    return;
                }
            },
        }
        let ok = format!(
            "the snapshot was made from {named} ({} of ticket {ticket_id}), an ancestor of \
             its current version",
            version.status
        );
        self.checks.push(verdict(TICKET, &problems, ok));
    }

    fn check_output(&mut self, store: &Store, digest: &Digest, record: &RunRecord) {
        let Some(named) = record.output_id else {
            self.checks
                .push(Check::skip(OUTPUT, "the run record names no output bundle"));
            return;
        };
        let output = match read::<OutputBundle>(store, named) {
            Ok(output) => output,
            Err(e) => {
                let by = format!("the output bundle named by the run record {digest}");
                self.checks.push(unreadable(OUTPUT, &e, &by));
                return;
            }
        };
        let o = &output.value;
        let mut problems = Vec::new();
        if o.run_uid != record.run_uid {
            problems.push(format!(
                "it is of run {}, the record of run {}",
                o.run_uid, record.run_uid
            ));
        }
        if o.work_order_id != record.work_order_id {
            problems.push(format!(
                "it is of workorder {}, the record of workorder {}",
                o.work_order_id, record.work_order_id
            ));
        }
        let pairs = [
            ("plan_hash", o.plan_hash, record.plan_hash),
            ("admission_hash", o.admission_hash, record.admission_hash),
            ("force_ack_hash", o.force_ack_hash, record.force_ack_hash),
            ("result_hash", o.result_hash, record.result_hash),
            ("witness_hash", o.witness_hash, record.witness_hash),
        ];
        for (field, bundle, recorded) in pairs {
            if bundle != recorded {
                let show =
                    |d: Option<Digest>| d.map_or_else(|| "none".to_owned(), |d| d.to_string());
                problems.push(format!(
                    "its {field} is {}, the record's {}",
                    show(bundle),
                    show(recorded)
                ));
            }
        }
        let ok = format!(
            "{named} is output {} of run {}, with the record's digests",
            o.output_id, o.run_uid
        );
        self.checks.push(verdict(OUTPUT, &problems, ok));
        self.output = Some(output);
    }

    fn check_pause(&mut self, store: &Store, record: &RunRecord) {
        let Some(ticket_id) = &record.ticket_id else {
            self.checks
                .push(Check::skip(PAUSE, "the run record names no ticket"));
            return;
        };
        let pause = match Ledger::new(store).pause(ticket_id) {
            Ok(Some(pause)) => pause,
            Ok(None) => {
                self.checks.push(Check::skip(
                    PAUSE,
                    format!("no pause state is recorded for ticket {ticket_id}"),
                ));
                return;
            }
            Err(e) => {
                let by = format!("the latest pause state of ticket {ticket_id}");
                self.checks.push(unreadable(PAUSE, &e, &by));
                return;
            }
        };
        let p = &pause.value;
        let mut problems = Vec::new();
        if p.ticket_id != *ticket_id {
            problems.push(format!(
                "the latest pause state of ticket {ticket_id}, {}, is of ticket {}",
                pause.digest, p.ticket_id
            ));
        }
        match read::<Ticket>(store, p.ticket) {
            Ok(version) if version.value.ticket_id != *ticket_id => problems.push(format!(
                "pause state {} names {}, a version of ticket {}",
                pause.digest, p.ticket, version.value.ticket_id
            )),
            Ok(_) => {}
            Err(e) => {
                let by = format!("the ticket version named by pause state {}", pause.digest);
                self.checks.push(unreadable(PAUSE, &e, &by));
                return;
            }
        }
        let ok = format!(
            "{} pauses ticket {ticket_id} at {} ({}): {}",
            pause.digest, p.ticket, p.status, p.reason
        );
        self.checks.push(verdict(PAUSE, &problems, ok));
    }
}

#[cfg(test)]
mod tests;
