//! How a run ends: its outcome, the exit code it calls for, the run record stored and the
//! journal execution closed.

use protocol::artifact::kinds::{
    ErrorInfo, GateDecision, NextActionsRef, OutputBundle, ResultWitness, RunOutcome, RunRecord,
};
use protocol::Digest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::next_actions::next_actions;
use super::{journal_error, now, Flow, Report};
use crate::exit::{self, CommandError};
use crate::journal::ExecHandle;

/// How a run ends: its outcome and, unless it went as planned, why.
pub(super) struct Ending {
    outcome: RunOutcome,
    error: Option<ErrorInfo>,
}

impl Ending {
    /// An outcome that needs no explanation: admitted, paused, succeeded.
    pub(super) fn ok(outcome: RunOutcome) -> Self {
        Self {
            outcome,
            error: None,
        }
    }

    /// A failure whose outcome its code decides.
    pub(super) fn failed(error: ErrorInfo) -> Self {
        Self {
            outcome: outcome_of(&error),
            error: Some(error),
        }
    }

    /// A denial.
    pub(super) fn denied(error: ErrorInfo) -> Self {
        Self {
            outcome: RunOutcome::Denied,
            error: Some(error),
        }
    }

    /// A failure to get going (start the mechanism, read the plan), whatever its code.
    pub(super) fn error(error: ErrorInfo) -> Self {
        Self {
            outcome: RunOutcome::Error,
            error: Some(error),
        }
    }
}

impl Flow<'_> {
    /// Writes the run record, ends the journal execution and completes the report.
    pub(super) fn finish(
        &self,
        mut exec: ExecHandle,
        mut report: Report,
        ending: Ending,
    ) -> Result<Report, CommandError> {
        let Ending { outcome, error } = ending;
        report.outcome = Some(outcome);
        report.exit = match (&outcome, &error) {
            (RunOutcome::Admitted | RunOutcome::Succeeded, _) => 0,
            (RunOutcome::AwaitingForceAck, _) => exit::AWAITING_FORCE_ACK,
            (RunOutcome::Denied, _) => exit::DENIED,
            (RunOutcome::Stale, _) => exit::STALE,
            (RunOutcome::Failed, _) => exit::EXECUTION_FAILED,
            (RunOutcome::Error, Some(e)) => exit::exit_for(e.code),
            (RunOutcome::Error, None) => exit::INTERNAL,
        };
        report.error = error;
        report.next_actions = next_actions(&report, self.invocation);
        let output = self.store_output(&report);
        report.output_id = output.as_ref().ok().copied();
        let record = RunRecord {
            work_order_id: report.work_order_id.clone(),
            run_uid: report.uid.clone(),
            mechanism: report.mechanism.clone(),
            operation: report.operation.clone(),
            // A resumed execution was admitted by its parent run's gates.
            decision: if outcome == RunOutcome::Denied
                || report
                    .gates
                    .iter()
                    .any(|g| g.decision == GateDecision::Fail)
                || (report.gates.is_empty() && report.parent.is_none())
            {
                GateDecision::Fail
            } else {
                GateDecision::Pass
            },
            outcome,
            workorder: report.workorder,
            ticket_id: report.ticket_id.clone(),
            failed_gate: report
                .gates
                .iter()
                .find(|g| g.decision == GateDecision::Fail)
                .map(|g| g.gate),
            output_id: report.output_id,
            plan_hash: report.plan_hash,
            admission_hash: report.admission_hash,
            force_ack_hash: report.force_ack_hash,
            result_hash: report.result_hash,
            witness_hash: report.witness_hash,
            error: report.error.clone(),
            next_actions: NextActionsRef::Inline(report.next_actions.clone()),
            started_at: Some(self.started_at.clone()),
            finished_at: Some(now()),
        };
        let derived: Vec<Digest> = [report.workorder, report.output_id]
            .into_iter()
            .flatten()
            .chain(produced(&report))
            .collect();
        let stored = output.and_then(|_| self.store_typed(&record, "admission run", &derived));
        if let Ok(digest) = &stored {
            // The journal is not needed to find a run's record: the store names it by uid.
            let entry = RunRef {
                run_record: *digest,
                ticket_id: report.ticket_id.clone(),
            };
            if let Err(error) = self.setup.store.set_ref(RUNS, &report.uid, &entry) {
                tracing::warn!(%error, "could not record the run under its uid");
            }
        }
        let summary = json!({
            "outcome": outcome,
            "run_record": stored.as_ref().ok(),
            "plan_hash": report.plan_hash,
            "admission_hash": report.admission_hash,
            "force_ack_hash": report.force_ack_hash,
            "result_hash": report.result_hash,
            "witness_hash": report.witness_hash,
            "error": report.error,
        });
        let ended = match outcome {
            RunOutcome::Admitted | RunOutcome::Succeeded => exec.complete(summary),
            RunOutcome::AwaitingForceAck => exec.pause(summary),
            _ => exec.fail(summary),
        };
        ended.map_err(journal_error)?;
        report.run_record = Some(stored.map_err(|e| CommandError::new(exit::INTERNAL, e))?);
        Ok(report)
    }
}

impl Flow<'_> {
    /// Stores the OutputBundle of what the run produced, by digest, with the commit or state
    /// and the evidence the result gives.
    fn store_output(&self, report: &Report) -> Result<Digest, ErrorInfo> {
        let evidence = report.evidence.clone();
        let commit = evidence
            .as_ref()
            .and_then(|e| e.get("commit"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let state = report.witness_hash.and_then(|witness| {
            let artifact = self.setup.store.get_artifact(&witness).ok()?;
            let witness: ResultWitness = artifact.view().ok()?;
            Some(witness.predicate.state_after)
        });
        let bundle = OutputBundle {
            output_id: format!("out-{}", report.uid),
            run_uid: report.uid.clone(),
            work_order_id: report.work_order_id.clone(),
            plan_hash: report.plan_hash,
            admission_hash: report.admission_hash,
            force_ack_hash: report.force_ack_hash,
            result_hash: report.result_hash,
            witness_hash: report.witness_hash,
            commit,
            state: state.filter(Value::is_object),
            evidence: evidence.filter(Value::is_object),
        };
        let derived: Vec<Digest> = produced(report).collect();
        self.store_typed(&bundle, "admission output", &derived)
    }
}

/// The digests a run produced, as far as it got: plan, admission, force-ack, result, witness.
fn produced(report: &Report) -> impl Iterator<Item = Digest> {
    [
        report.plan_hash,
        report.admission_hash,
        report.force_ack_hash,
        report.result_hash,
        report.witness_hash,
    ]
    .into_iter()
    .flatten()
}

/// What the store reference `runs/<uid>` holds: the run's record, found without the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// The run record.
    pub run_record: Digest,
    /// The ticket of its workorder, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
}

/// The store reference namespace naming each run's record by its uid.
pub const RUNS: &str = "runs";

/// The outcome a failure stands for.
fn outcome_of(error: &ErrorInfo) -> RunOutcome {
    match exit::exit_for(error.code) {
        exit::DENIED => RunOutcome::Denied,
        exit::STALE => RunOutcome::Stale,
        exit::EXECUTION_FAILED => RunOutcome::Failed,
        exit::AWAITING_FORCE_ACK => RunOutcome::AwaitingForceAck,
        _ => RunOutcome::Error,
    }
}
