//! Executing an admitted plan: the force-ack checked as the server will check it, the
//! `execute` call, and the checks of what came back before success is reported.

use std::time::Duration;

use protocol::artifact::kinds::{ErrorInfo, RunOutcome};
use protocol::force_ack::{self, Expected};
use protocol::verbs::{ExecuteParams, ExecuteResult, ProgressParams};
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{journal_step, session_error, Admitted, Ending, Flow, Report};
use crate::journal::ExecHandle;
use crate::result_checks;
use crate::session::{Session, SessionError};

impl Flow<'_> {
    /// The one way an admitted plan is executed, for `run` and `execute` alike: it pauses
    /// while a force-ack it needs is missing, else executes with the session `session` gives.
    /// The session ends here, so the mechanism has exited before the run record is written.
    pub(super) fn execute_admitted(
        &self,
        session: impl FnOnce() -> Result<Session, ErrorInfo>,
        admitted: &Admitted,
        force_ack: Option<&Value>,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Ending {
        if admitted.force_ack_required && force_ack.is_none() {
            return Ending::ok(RunOutcome::AwaitingForceAck);
        }
        let admitted = &match self.within_budget(admitted) {
            Ok(admitted) => admitted,
            Err(e) => return Ending::denied(e),
        };
        let session = match session() {
            Ok(session) => session,
            Err(e) => return Ending::error(e),
        };
        match self.execute(&session, admitted, force_ack, report, exec, progress) {
            Ok(()) => Ending::ok(RunOutcome::Succeeded),
            Err(e) => Ending::failed(e),
        }
    }

    /// The admitted plan with its execute deadline cut to what the workorder's `budget_ms`
    /// leaves; BUDGET_EXCEEDED once nothing is left, before any effect.
    fn within_budget(&self, admitted: &Admitted) -> Result<Admitted, ErrorInfo> {
        let mut bounded = admitted.clone();
        let Some((budget_ms, deadline)) = self.budget else {
            return Ok(bounded);
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ErrorInfo::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "the workorder's budget_ms of {budget_ms} ms was spent before execution \
                     could start; nothing was executed"
                ),
            ));
        }
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        bounded.deadline_ms = bounded.deadline_ms.min(left_ms);
        Ok(bounded)
    }

    /// Checks the force-ack as the server will, executes, and verifies what came back.
    fn execute(
        &self,
        session: &Session,
        admitted: &Admitted,
        force_ack: Option<&Value>,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Result<(), ErrorInfo> {
        let plan = match &report.plan {
            Some(plan) => plan.clone(),
            None => self.load_plan(&admitted.plan_hash)?,
        };
        if admitted.force_ack_required || plan.destructive {
            let Some(ack) = force_ack else {
                return Err(ErrorInfo::new(
                    ErrorCode::ForceAckRequired,
                    "the plan is destructive and needs a force-ack",
                ));
            };
            self.check_force_ack(ack, admitted)?;
            let hash = self.store_value(ack, "admission force-ack", &[admitted.plan_hash])?;
            report.force_ack_hash = Some(hash);
        }
        let _ = journal_step(exec, "executing", json!({"plan_hash": admitted.plan_hash}));
        let params = ExecuteParams {
            plan_hash: admitted.plan_hash,
            admission: admitted.admission_hash,
            force_ack: if admitted.force_ack_required || plan.destructive {
                force_ack.cloned()
            } else {
                None
            },
            deadline_ms: Some(admitted.deadline_ms),
        };
        let deadline = Duration::from_millis(admitted.deadline_ms);
        if self.setup.cancel.is_cancelled() {
            return Err(ErrorInfo::new(
                ErrorCode::Cancelled,
                "the request was cancelled before execution started; nothing was executed",
            ));
        }
        let answer = session.execute(&params, deadline, &self.setup.cancel, |p| progress(p));
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                // A failed execution still has a recorded result, carried in `error.data`.
                if let SessionError::Client(crate::client::ClientError::Rpc { data, .. }) = &e {
                    if let Ok(result) =
                        serde_json::from_value::<ExecuteResult>(data["result"].clone())
                    {
                        report.result_hash = Some(result.result_hash);
                        report.witness_hash = Some(result.witness_hash);
                    }
                }
                return Err(session_error(&e, ErrorCode::ExecutionFailed));
            }
        };
        let result: ExecuteResult = serde_json::from_value(answer).map_err(|e| {
            ErrorInfo::new(
                ErrorCode::InternalError,
                format!("the execute result is malformed: {e}"),
            )
        })?;
        report.result_hash = Some(result.result_hash);
        report.witness_hash = Some(result.witness_hash);
        let artifact = result_checks::check_returned(
            &self.setup.store,
            &result,
            &admitted.plan_hash,
            &admitted.admission_hash,
            &plan,
        )?;
        report.evidence = Some(artifact.evidence.clone());
        result_checks::check_state(&self.setup.workspace, &plan, &artifact)?;
        let _ = journal_step(
            exec,
            "executed",
            json!({"result": result.result_hash, "witness": result.witness_hash}),
        );
        Ok(())
    }

    /// Every check the server makes on a force-ack, made before asking it to execute.
    fn check_force_ack(&self, ack: &Value, admitted: &Admitted) -> Result<(), ErrorInfo> {
        let Some(signers) = &self.setup.signers else {
            return Err(ErrorInfo::new(
                ErrorCode::ForceAckInvalid,
                "no trusted signers are configured (--allowed-signers FILE), so no \
                 destructive plan can run",
            ));
        };
        let expected = Expected {
            plan_hash: admitted.plan_hash,
            admission_hash: admitted.admission_hash,
        };
        let verified = force_ack::verify(
            ack,
            expected,
            signers,
            OffsetDateTime::now_utc(),
            self.setup.max_ttl,
        )?;
        let used = force_ack::nonce_claimed(&self.setup.store, &verified.nonce)?;
        // A plan whose recorded result may still hold is the server's to judge: it returns
        // that result and applies nothing, or refuses the replay if the world was reset.
        if used && !self.has_succeeded(&admitted.plan_hash) {
            return Err(ErrorInfo::new(
                ErrorCode::ForceAckReplayed,
                format!(
                    "force-ack nonce {} was already used; approve the plan again",
                    verified.nonce
                ),
            ));
        }
        Ok(())
    }

    /// Whether the mechanism recorded a successful execution of the plan.
    fn has_succeeded(&self, plan_hash: &Digest) -> bool {
        matches!(
            self.setup.store.result_record(plan_hash),
            Ok(Some(record)) if record.succeeded
        )
    }
}
