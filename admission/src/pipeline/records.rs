//! How a run ends: its outcome, the exit code it calls for, the run record stored and the
//! journal execution closed.

use protocol::artifact::kinds::{ErrorInfo, GateDecision, NextActionsRef, RunOutcome, RunRecord};
use protocol::Digest;
use serde_json::json;

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
        let derived: Vec<Digest> = [
            report.plan_hash,
            report.admission_hash,
            report.force_ack_hash,
            report.result_hash,
            report.witness_hash,
        ]
        .into_iter()
        .flatten()
        .collect();
        let stored = self.store_typed(&record, "admission run", &derived);
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
