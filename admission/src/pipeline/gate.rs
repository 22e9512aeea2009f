//! Planning and gating: the mechanism plans (twice for D0, both at once when that is foreseen),
//! the six gates judge the plan, and the admission witness and record are stored.

use protocol::artifact::kinds::{ErrorInfo, Plan};
use protocol::verbs::PlanParams;
use protocol::{Digest, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    journal_step, session_error, with_code, AdmissionRecord, Admitted, Flow, Report, ADMISSIONS,
};
use crate::gates::{self, GateInput};
use crate::journal::ExecHandle;
use crate::session::{Session, SessionError};
use crate::workorder::Loaded;

impl Flow<'_> {
    /// Plans (twice for D0), runs the gates, stores the witness and the admission record.
    pub(super) fn plan_and_gate(
        &self,
        session: &Session,
        loaded: &Loaded,
        report: &mut Report,
        exec: &mut ExecHandle,
    ) -> Result<Admitted, ErrorInfo> {
        let entry = self
            .setup
            .registry
            .entry(&loaded.workorder.mechanism)
            .map_err(with_code(ErrorCode::InvalidParams))?;
        let params = PlanParams {
            operation: loaded.workorder.operation.clone(),
            params: loaded.workorder.params.clone(),
            inputs: loaded.inputs.clone(),
        };
        let plan_error = |e| session_error(&e, ErrorCode::ExecutionFailed);
        // When G-DET will surely want a second plan, it is asked for with the first, and the
        // mechanism makes both at once.
        let both = gates::second_plan_foreseen(entry, &session.described, &params.operation)
            .then(|| session.plan_twice(&params));
        let (response, second) = match both {
            Some((Ok(first), Ok(second))) => (first, Some(second)),
            // A mechanism that plans one request at a time may refuse the other as BUSY:
            // then both are made one after the other, as when the second was not foreseen.
            Some((first, second)) if !is_busy(&first) && !is_busy(&second) => (
                first.map_err(plan_error)?,
                Some(second.map_err(plan_error)?),
            ),
            _ => (session.plan(&params).map_err(plan_error)?, None),
        };
        // Read in place (G-SCHEMA judges the shape): a plan of many effects is not copied.
        report.plan_hash = response
            .get("plan_hash")
            .and_then(|h| Digest::deserialize(h).ok());
        report.preview = response
            .get("preview")
            .and_then(Value::as_str)
            .map(str::to_owned);
        report.plan = response.get("plan").and_then(|p| Plan::deserialize(p).ok());
        let second = match second {
            Some(second) => Some(second),
            None if gates::requires_second_plan(
                entry,
                &loaded.workorder.operation,
                response.get("plan").unwrap_or(&Value::Null),
            ) =>
            {
                Some(session.plan(&params).map_err(plan_error)?)
            }
            None => None,
        };
        let second_plan_hash = second.as_ref().and_then(|again| {
            again
                .get("plan_hash")
                .and_then(Value::as_str)
                .and_then(|h| h.parse().ok())
        });
        let _ = journal_step(exec, "planned", json!({"plan_hash": report.plan_hash}));
        // A workspace that cannot be resolved has failed to start the mechanism already.
        let store_location = self
            .setup
            .store
            .location_within(&self.setup.workspace)
            .ok()
            .flatten();
        let outcome = gates::run(&GateInput {
            entry,
            policy_digest: self.setup.registry.policy_digest(),
            describe: &session.describe,
            described: &session.described,
            plan_response: &response,
            workorder: &loaded.workorder,
            workorder_digest: loaded.digest,
            store: &self.setup.store,
            store_location: store_location.as_ref(),
            second_plan_hash,
        });
        report.gates = outcome.records.clone();
        let Some(witness) = outcome.witness.as_ref() else {
            return Err(ErrorInfo::new(
                ErrorCode::InvalidParams,
                "the mechanism's plan response names no plan",
            ));
        };
        let admission_hash = self.store_typed(witness, "admission gates", &[witness.plan_hash])?;
        report.admission_hash = Some(admission_hash);
        let admitted = outcome.admitted();
        let record = AdmissionRecord {
            admission: admission_hash,
            admitted,
            force_ack_required: witness.force_ack_required,
            mechanism: loaded.workorder.mechanism.clone(),
            workorder: loaded.digest,
            run_uid: report.uid.clone(),
            deadline_ms: outcome.deadline_ms,
        };
        // Only a plan the admission hashed itself gets a record: G-INTEGRITY fails otherwise.
        if admitted {
            self.setup
                .store
                .set_ref(ADMISSIONS, &witness.plan_hash.hex(), &record)?;
        }
        let _ = journal_step(
            exec,
            "gated",
            json!({"admission": admission_hash, "admitted": admitted, "gates": outcome.records}),
        );
        Ok(Admitted {
            plan_hash: witness.plan_hash,
            admission_hash,
            admitted,
            force_ack_required: witness.force_ack_required,
            deadline_ms: outcome.deadline_ms,
        })
    }
}

/// Whether a `plan` call was refused as `BUSY`.
fn is_busy(outcome: &Result<Value, SessionError>) -> bool {
    matches!(outcome, Err(e) if e.code() == Some(ErrorCode::Busy))
}
