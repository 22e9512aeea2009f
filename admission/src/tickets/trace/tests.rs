//! A whole cycle written by hand through the ledger into a real store, then broken one link
//! at a time. Each test asserts exactly which checks fail, so a break that also failed an
//! unrelated check would show.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use protocol::artifact::kinds::{
    Budget, ContextSnapshot, GateDecision, NextAction, NextActionsRef, OutputBundle, PauseState,
    RunOutcome, RunRecord, Ticket, TicketResolution, TicketStatus, TicketWork, Workorder,
};
use protocol::store::Store;
use protocol::{Digest, ErrorCode};
use serde_json::json;
use tempfile::TempDir;

use super::{trace, Trace, OUTPUT, PAUSE, SNAPSHOT, TICKET, WORKORDER};
use crate::outcome::Outcome;
use crate::tickets::ledger::{self, key, Ledger, PauseRef, PAUSES};

const T1: &str = "T-1";
const UID: &str = "run-1";
const AT: &str = "2026-01-02T03:04:05Z";

fn fake(what: &str) -> Digest {
    Digest::of_bytes(what.as_bytes())
}

fn ticket(id: &str, status: TicketStatus, previous: Option<Digest>) -> Ticket {
    Ticket {
        ticket_id: id.to_owned(),
        objective: "Add a greeting to the readme".to_owned(),
        acceptance: vec!["the readme greets".to_owned()],
        status,
        blocked_on: Vec::new(),
        work: TicketWork {
            mechanism: "git_apply_patch".to_owned(),
            operation: "apply".to_owned(),
            params: json!({}),
            inputs: BTreeMap::new(),
            budget: Budget {
                wall_ms: 1000,
                bytes_written: None,
                files_touched: None,
            },
            budget_ms: None,
            branch: None,
        },
        previous,
        event_id: None,
        resolution: None,
        updated_at: Some(AT.to_owned()),
    }
}

fn snapshot(ticket_id: &str, version: Digest) -> ContextSnapshot {
    ContextSnapshot {
        snapshot_id: format!("snap-{ticket_id}"),
        ticket_id: ticket_id.to_owned(),
        ticket: version,
        mechanism: "git_apply_patch".to_owned(),
        operation: "apply".to_owned(),
        params: json!({}),
        inputs: BTreeMap::new(),
        plan_hash: Some(fake("plan")),
        state: Some(json!({"repo": "repo"})),
        error: None,
        taken_at: AT.to_owned(),
    }
}

fn action() -> NextAction {
    NextAction {
        priority: 1,
        command: "admission ticket show T-1".to_owned(),
        why: "to see it".to_owned(),
    }
}

/// What a test may change before each part is written; the default is a sound cycle.
#[derive(Default)]
struct Breaks {
    workorder_ticket: Option<&'static str>,
    /// The snapshot is of this other ticket (and made from a version of it).
    snapshot_of: Option<&'static str>,
    bundle_witness: Option<Digest>,
    /// The pause ref of T-1 names a pause state of this other ticket.
    pause_of: Option<&'static str>,
    /// The record names no ticket, no workorder and no bundle (a run outside tickets).
    no_ticket: bool,
    /// The workorder names no context snapshot (a workorder filed by hand with a ticket id).
    no_snapshot: bool,
}

struct Cycle {
    dir: TempDir,
    record: Digest,
    workorder: Digest,
    output: Digest,
}

impl Cycle {
    fn new(breaks: Breaks) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let ledger = Ledger::new(&store);
        let ready = ledger
            .put_ticket(&ticket(T1, TicketStatus::Ready, None), "tests")
            .unwrap();
        let running = ledger
            .put_ticket(&ticket(T1, TicketStatus::Running, Some(ready)), "tests")
            .unwrap();
        let snap = match breaks.snapshot_of {
            Some(other) => {
                let version = ledger
                    .put_ticket(&ticket(other, TicketStatus::Running, None), "tests")
                    .unwrap();
                snapshot(other, version)
            }
            None => snapshot(T1, running),
        };
        let snap = ledger.write(&snap, "tests", &[]).unwrap();
        let workorder = Workorder {
            work_order_id: format!("{T1}@ev-1"),
            mechanism: "git_apply_patch".to_owned(),
            operation: "apply".to_owned(),
            params: json!({}),
            inputs: BTreeMap::new(),
            budget: Budget {
                wall_ms: 1000,
                bytes_written: None,
                files_touched: None,
            },
            ticket_id: Some(breaks.workorder_ticket.unwrap_or(T1).to_owned()),
            context_snapshot_id: (!breaks.no_snapshot).then_some(snap),
            budget_ms: Some(1000),
            branch: None,
            runner: None,
        };
        let workorder = ledger.write(&workorder, "tests", &[]).unwrap();
        let bundle = OutputBundle {
            output_id: format!("out-{UID}"),
            run_uid: UID.to_owned(),
            work_order_id: format!("{T1}@ev-1"),
            plan_hash: Some(fake("plan")),
            admission_hash: Some(fake("admission")),
            force_ack_hash: None,
            result_hash: Some(fake("result")),
            witness_hash: Some(breaks.bundle_witness.unwrap_or_else(|| fake("witness"))),
            commit: Some("0123abcd".to_owned()),
            state: None,
            evidence: None,
        };
        let output = ledger.write(&bundle, "tests", &[]).unwrap();
        let linked = !breaks.no_ticket;
        let record = RunRecord {
            work_order_id: format!("{T1}@ev-1"),
            run_uid: UID.to_owned(),
            mechanism: "git_apply_patch".to_owned(),
            operation: "apply".to_owned(),
            decision: GateDecision::Pass,
            outcome: RunOutcome::Succeeded,
            workorder: linked.then_some(workorder),
            ticket_id: linked.then(|| T1.to_owned()),
            failed_gate: None,
            output_id: linked.then_some(output),
            plan_hash: Some(fake("plan")),
            admission_hash: Some(fake("admission")),
            force_ack_hash: None,
            result_hash: Some(fake("result")),
            witness_hash: Some(fake("witness")),
            error: None,
            next_actions: NextActionsRef::Inline(vec![action()]),
            started_at: Some(AT.to_owned()),
            finished_at: Some(AT.to_owned()),
        };
        let record = ledger.write(&record, "tests", &[]).unwrap();
        let mut done = ticket(T1, TicketStatus::Done, Some(running));
        done.resolution = Some(TicketResolution {
            run_record: Some(record),
            commit: Some("0123abcd".to_owned()),
            error: None,
        });
        let current = ledger.put_ticket(&done, "tests").unwrap();
        let pause = |ticket_id: &str, version: Digest| PauseState {
            ticket_id: ticket_id.to_owned(),
            ticket: version,
            status: TicketStatus::Done,
            reason: "the run succeeded".to_owned(),
            event_id: Some("ev-1".to_owned()),
            run_uid: Some(UID.to_owned()),
            run_record: Some(record),
            actions: vec![action()],
            paused_at: AT.to_owned(),
        };
        ledger.put_pause(&pause(T1, current)).unwrap();
        if let Some(other) = breaks.pause_of {
            let version = ledger
                .put_ticket(&ticket(other, TicketStatus::Todo, None), "tests")
                .unwrap();
            let theirs = ledger.write(&pause(other, version), "tests", &[]).unwrap();
            let entry = PauseRef {
                ticket_id: T1.to_owned(),
                pause_state: theirs,
            };
            store.set_ref(PAUSES, &key(T1), &entry).unwrap();
        }
        Self {
            dir,
            record,
            workorder,
            output,
        }
    }

    /// A store opened afresh, so nothing read before is remembered.
    fn store(&self) -> Store {
        Store::open(self.dir.path().join("store")).unwrap()
    }

    fn trace(&self) -> Trace {
        let store = self.store();
        let record: RunRecord = ledger::read(&store, &self.record).unwrap();
        trace(&store, &self.record, &record)
    }

    /// Flips one bit of a stored object, leaving it filed under its old name.
    fn corrupt(&self, digest: &Digest) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.store().path_of(digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0x01;
        fs::write(&path, bytes).unwrap();
    }
}

fn show(trace: &Trace) -> String {
    trace.checks.iter().map(|c| format!("  {c}\n")).collect()
}

/// Asserts that the five checks were made, in order, and that exactly `names` failed.
fn assert_failures(trace: &Trace, names: &[&str]) {
    let made: Vec<&str> = trace.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(made, [WORKORDER, SNAPSHOT, TICKET, OUTPUT, PAUSE]);
    let failed: BTreeSet<&str> = trace
        .checks
        .iter()
        .filter(|c| !c.held())
        .map(|c| c.name.as_str())
        .collect();
    let expected: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(failed, expected, "checks:\n{}", show(trace));
}

fn named<'a>(trace: &'a Trace, name: &str) -> &'a crate::verify::Check {
    trace.checks.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn a_consistent_cycle_passes_every_check() {
    let cycle = Cycle::new(Breaks::default());
    let trace = cycle.trace();
    assert_failures(&trace, &[]);
    assert!(
        trace.checks.iter().all(|c| c.outcome == Outcome::Pass),
        "{}",
        show(&trace)
    );
    assert_eq!(trace.workorder.map(|w| w.digest), Some(cycle.workorder));
    assert_eq!(trace.output.map(|o| o.digest), Some(cycle.output));
    assert_eq!(
        trace.snapshot.map(|s| s.value.ticket_id),
        Some(T1.to_owned())
    );
}

#[test]
fn a_workorder_of_another_ticket_fails_trace_workorder() {
    let trace = Cycle::new(Breaks {
        workorder_ticket: Some("T-2"),
        ..Breaks::default()
    })
    .trace();
    assert_failures(&trace, &[WORKORDER]);
    let check = named(&trace, WORKORDER);
    assert_eq!(check.code, Some(ErrorCode::IntegrityMismatch));
    assert!(check.detail.contains("for ticket T-2"), "{check}");
}

#[test]
fn a_snapshot_of_another_ticket_fails_trace_snapshot_and_ticket() {
    let trace = Cycle::new(Breaks {
        snapshot_of: Some("T-2"),
        ..Breaks::default()
    })
    .trace();
    // The other ticket's snapshot was made from the other ticket's version: both links break.
    assert_failures(&trace, &[SNAPSHOT, TICKET]);
    assert!(named(&trace, SNAPSHOT).detail.contains("of ticket T-2"));
    let ticket = &named(&trace, TICKET).detail;
    assert!(ticket.contains("does not descend"), "{ticket}");
}

#[test]
fn a_bundle_whose_digests_differ_from_the_record_fails_trace_output() {
    let trace = Cycle::new(Breaks {
        bundle_witness: Some(fake("another witness")),
        ..Breaks::default()
    })
    .trace();
    assert_failures(&trace, &[OUTPUT]);
    let check = named(&trace, OUTPUT);
    assert!(check.detail.contains("witness_hash"), "{check}");
}

#[test]
fn a_pause_state_of_another_ticket_fails_trace_pause() {
    let trace = Cycle::new(Breaks {
        pause_of: Some("T-9"),
        ..Breaks::default()
    })
    .trace();
    assert_failures(&trace, &[PAUSE]);
    let check = named(&trace, PAUSE);
    assert!(check.detail.contains("ticket T-9"), "{check}");
}

#[test]
fn a_tampered_workorder_is_an_integrity_mismatch_and_its_dependents_are_skipped() {
    let cycle = Cycle::new(Breaks::default());
    cycle.corrupt(&cycle.workorder);
    let trace = cycle.trace();
    assert_failures(&trace, &[WORKORDER]);
    assert_eq!(
        named(&trace, WORKORDER).code,
        Some(ErrorCode::IntegrityMismatch)
    );
    assert_eq!(named(&trace, SNAPSHOT).outcome, Outcome::Skip);
    assert_eq!(named(&trace, TICKET).outcome, Outcome::Skip);
    assert!(trace.workorder.is_none());
}

#[test]
fn a_tampered_output_bundle_is_an_integrity_mismatch() {
    let cycle = Cycle::new(Breaks::default());
    cycle.corrupt(&cycle.output);
    let trace = cycle.trace();
    assert_failures(&trace, &[OUTPUT]);
    assert_eq!(
        named(&trace, OUTPUT).code,
        Some(ErrorCode::IntegrityMismatch)
    );
}

#[test]
fn a_current_version_that_does_not_descend_fails_trace_ticket() {
    let cycle = Cycle::new(Breaks::default());
    // A version filed afresh, not from the one the snapshot was made from.
    Ledger::new(&cycle.store())
        .put_ticket(&ticket(T1, TicketStatus::Todo, None), "tests")
        .unwrap();
    let trace = cycle.trace();
    assert_failures(&trace, &[TICKET]);
}

#[test]
fn a_run_outside_tickets_skips_every_check() {
    let trace = Cycle::new(Breaks {
        no_ticket: true,
        ..Breaks::default()
    })
    .trace();
    assert_failures(&trace, &[]);
    assert!(
        trace.checks.iter().all(|c| c.outcome == Outcome::Skip),
        "{}",
        show(&trace)
    );
}

#[test]
fn a_workorder_filed_by_hand_with_a_ticket_id_skips_the_snapshot_and_ticket_checks() {
    let trace = Cycle::new(Breaks {
        no_snapshot: true,
        ..Breaks::default()
    })
    .trace();
    assert_failures(&trace, &[]);
    let skipped: Vec<&str> = trace
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Skip)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(skipped, [SNAPSHOT, TICKET], "{}", show(&trace));
}
