//! `execute`: run a plan by hash, only if it is still exactly what was admitted.
//!
//! Order matters: nothing is claimed or applied before every check has passed, and the
//! force-ack nonce is claimed (durably) before the first effect.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use jsonrpsee::types::ErrorObjectOwned;
use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, ErrorInfo, Plan, ResultArtifact, ResultPredicate,
    ResultStatus, ResultWitness, Subject,
};
use protocol::artifact::Artifact;
use protocol::force_ack::{self, Expected};
use protocol::store::{Provenance, StoreError};
use protocol::verbs::{ExecuteParams, ExecuteResult, Progress, PROGRESS};
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::connection::RequestScope;
use super::handlers::{load_plan, store_error, to_value};
use super::records::Record;
use super::{rpc_error, State};
use crate::mechanism::{ExecContext, Executed, PlanRequest, Planned};

type RpcResult = Result<Value, ErrorObjectOwned>;

/// Executes `params.plan_hash` after every check; see the module docs.
pub(super) fn execute(
    state: &State,
    params: ExecuteParams,
    scope: Option<RequestScope>,
) -> RpcResult {
    let plan_hash = params.plan_hash;
    let plan = load_plan(state, &plan_hash)?;
    let _running = RunningGuard::enter(state, plan_hash)?;

    // Executing again while the recorded effects still hold applies nothing.
    if let Some(record) = state.records.get(&plan_hash).filter(|r| r.succeeded) {
        if state.mechanism.still_applied(&state.env, &plan)? {
            tracing::info!(%plan_hash, "effects already in place; returning the recorded result");
            return recorded(state, &record);
        }
    }

    let planned = replan(state, &plan, &plan_hash)?;
    let admission = check_admission(state, &plan_hash, &params.admission)?;
    let force_ack_hash = if plan.destructive {
        Some(check_force_ack(
            state,
            &plan_hash,
            &params.admission,
            params.force_ack.as_ref(),
        )?)
    } else {
        None
    };

    let ctx = exec_context(state, plan_hash, scope);
    let outcome = state.mechanism.execute(&state.env, &planned, &ctx);
    let (result, executed) = match outcome {
        Ok(executed) => (
            ResultArtifact {
                plan_hash,
                status: ResultStatus::Success,
                effects_applied: executed.effects_applied.clone(),
                evidence: executed.evidence.clone(),
                error: None,
            },
            Some(executed),
        ),
        // Cancelled, late or raced before the point of no return: nothing was applied,
        // so there is no result to record, only the refusal.
        Err(err) if is_refusal(err.code) => return Err(err.into()),
        Err(err) => (
            ResultArtifact {
                plan_hash,
                status: ResultStatus::Failure,
                effects_applied: Vec::new(),
                evidence: json!({}),
                error: Some(ErrorInfo {
                    code: err.code,
                    message: err.message.clone(),
                }),
            },
            None,
        ),
    };
    let succeeded = executed.is_some();
    let executed = executed.unwrap_or_else(|| Executed {
        effects_applied: Vec::new(),
        evidence: json!({}),
        subjects: Vec::new(),
        state_before: plan.state.clone(),
        state_after: plan.state.clone(),
    });
    let reply = record(
        state,
        &plan,
        plan_hash,
        admission,
        force_ack_hash,
        &result,
        &executed,
    )?;
    if succeeded {
        Ok(reply)
    } else {
        let error = result.error.unwrap_or(ErrorInfo {
            code: ErrorCode::ExecutionFailed,
            message: "execution failed".to_owned(),
        });
        Err(ErrorObjectOwned::owned(
            error.code.number(),
            error.message,
            Some(json!({ "code": error.code.as_str(), "result": reply })),
        ))
    }
}

fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Cancelled | ErrorCode::DeadlineExceeded | ErrorCode::StalePlan | ErrorCode::Busy
    )
}

/// Marks a plan as running for as long as it lives; a second entry gets `BUSY`.
struct RunningGuard<'a> {
    state: &'a State,
    plan_hash: Digest,
}

impl<'a> RunningGuard<'a> {
    fn enter(state: &'a State, plan_hash: Digest) -> Result<Self, ErrorObjectOwned> {
        let mut running = state
            .running
            .lock()
            .map_err(|_| rpc_error(ErrorCode::InternalError, "running-plan table poisoned"))?;
        if running.contains_key(&plan_hash) {
            return Err(rpc_error(
                ErrorCode::Busy,
                format!("plan {plan_hash} is executing already"),
            ));
        }
        running.insert(plan_hash, None);
        Ok(Self { state, plan_hash })
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.state.running.lock() {
            running.remove(&self.plan_hash);
        }
    }
}

fn recorded(state: &State, record: &Record) -> RpcResult {
    let load = |digest: &Digest, what: &str| {
        state
            .env
            .store
            .get_artifact(digest)
            .map_err(|e| store_error(&format!("recorded {what}"), &e))
    };
    let result = load(&record.result, "result")?;
    let witness = load(&record.witness, "witness")?;
    to_value(&ExecuteResult {
        result: result.into_value(),
        result_hash: record.result,
        witness: witness.into_value(),
        witness_hash: record.witness,
    })
}

/// Recomputes the plan against the world as it is now; any difference is `STALE_PLAN`.
fn replan(state: &State, plan: &Plan, plan_hash: &Digest) -> Result<Planned, ErrorObjectOwned> {
    let request = PlanRequest {
        operation: plan.operation.clone(),
        params: plan.params.clone(),
        inputs: plan.inputs.clone(),
        preview: false,
    };
    let planned = state
        .mechanism
        .plan(&state.env, &request)
        .map_err(|e| match e.code {
            ErrorCode::InvalidParams | ErrorCode::PathRefused => rpc_error(
                ErrorCode::StalePlan,
                format!("the plan no longer holds: {}", e.message),
            ),
            _ => e.into(),
        })?;
    super::handlers::refuse_store_changes(state, &planned.plan)?;
    let fresh = Artifact::from_typed(&planned.plan)
        .map_err(|e| rpc_error(ErrorCode::InternalError, e.to_string()))?;
    if fresh.digest() != *plan_hash {
        return Err(rpc_error(
            ErrorCode::StalePlan,
            format!(
                "the world changed since planning: the plan is now {}, not {plan_hash}; plan again",
                fresh.digest()
            ),
        ));
    }
    Ok(planned)
}

fn check_admission(
    state: &State,
    plan_hash: &Digest,
    admission: &Digest,
) -> Result<Digest, ErrorObjectOwned> {
    let required = |why: String| rpc_error(ErrorCode::AdmissionRequired, why);
    let artifact = state
        .env
        .store
        .get_artifact(admission)
        .map_err(|e| match e {
            StoreError::NotFound(_) => {
                required(format!("no admission witness {admission} in the store"))
            }
            StoreError::Artifact { .. } | StoreError::NotCanonical(_) => {
                required(format!("{admission} is not an admission witness: {e}"))
            }
            other => store_error("loading the admission witness", &other),
        })?;
    let witness: AdmissionWitness = artifact
        .view()
        .map_err(|e| required(format!("{admission} is not an admission witness: {e}")))?;
    if witness.plan_hash != *plan_hash {
        return Err(required(format!(
            "admission {admission} is for plan {}, not {plan_hash}",
            witness.plan_hash
        )));
    }
    if witness.decision != AdmissionDecision::Admit {
        return Err(required(format!("admission {admission} denied this plan")));
    }
    Ok(*admission)
}

fn check_force_ack(
    state: &State,
    plan_hash: &Digest,
    admission: &Digest,
    force_ack: Option<&Value>,
) -> Result<Digest, ErrorObjectOwned> {
    let Some(force_ack) = force_ack else {
        return Err(rpc_error(
            ErrorCode::ForceAckRequired,
            format!("plan {plan_hash} is destructive: it needs an operator's signed force-ack"),
        ));
    };
    let Some(signers) = state.signers.as_ref() else {
        return Err(rpc_error(
            ErrorCode::ForceAckInvalid,
            "this server trusts no force-ack signers (--force-ack-signers), so destructive plans cannot run",
        ));
    };
    let max_ttl = time::Duration::try_from(state.max_ttl)
        .map_err(|e| rpc_error(ErrorCode::InternalError, e.to_string()))?;
    let expected = Expected {
        plan_hash: *plan_hash,
        admission_hash: *admission,
    };
    let verified = force_ack::verify(
        force_ack,
        expected,
        signers,
        OffsetDateTime::now_utc(),
        max_ttl,
    )
    .map_err(|e| rpc_error(e.code(), e.to_string()))?;
    let artifact = Artifact::from_value(force_ack.clone())
        .map_err(|e| rpc_error(ErrorCode::ForceAckInvalid, e.to_string()))?;
    let digest = state
        .env
        .store
        .put_artifact(
            &artifact,
            &Provenance::new(format!("force-ack by {}", verified.approver))
                .with_derived_from([*plan_hash, *admission]),
        )
        .map_err(|e| store_error("storing the force-ack", &e))?;
    force_ack::claim_nonce(state.env.store.root(), &verified.nonce, plan_hash)
        .map_err(|e| rpc_error(e.code(), e.to_string()))?;
    Ok(digest)
}

fn exec_context(state: &State, plan_hash: Digest, scope: Option<RequestScope>) -> ExecContext {
    let cancelled = scope.as_ref().map_or_else(
        || Arc::new(AtomicBool::new(false)),
        |s| Arc::clone(&s.cancelled),
    );
    let notify = scope.map(|s| s.notify);
    let running = Arc::clone(&state.running);
    ExecContext::new(
        plan_hash,
        None,
        cancelled,
        Arc::new(move |progress| {
            if let Ok(mut table) = running.lock() {
                if let Some(slot) = table.get_mut(&progress.plan_hash) {
                    *slot = Some(Progress {
                        done: progress.done,
                        total: progress.total,
                        message: progress.message.clone(),
                    });
                }
            }
            if let Some(notify) = notify.as_ref() {
                if let Ok(params) = serde_json::to_value(&progress) {
                    notify.send(PROGRESS, params);
                }
            }
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn record(
    state: &State,
    plan: &Plan,
    plan_hash: Digest,
    admission_hash: Digest,
    force_ack_hash: Option<Digest>,
    result: &ResultArtifact,
    executed: &Executed,
) -> RpcResult {
    let internal = |e: &dyn std::fmt::Display| rpc_error(ErrorCode::InternalError, e.to_string());
    let producer = format!("mechanism-server {}", state.mechanism.id());
    let result_artifact = Artifact::from_typed(result).map_err(|e| internal(&e))?;
    let mut derived = vec![plan_hash, admission_hash];
    derived.extend(force_ack_hash);
    let result_hash = state
        .env
        .store
        .put_artifact(
            &result_artifact,
            &Provenance::new(&producer).with_derived_from(derived.clone()),
        )
        .map_err(|e| store_error("storing the result", &e))?;
    let subjects = executed
        .subjects
        .iter()
        .map(|(name, digest)| Subject {
            name: name.clone(),
            digest: digest.clone(),
        })
        .collect();
    let witness = ResultWitness::new(
        subjects,
        ResultPredicate {
            plan_hash,
            admission_hash,
            force_ack_hash,
            result_hash,
            mechanism: plan.mechanism.clone(),
            state_before: executed.state_before.clone(),
            state_after: executed.state_after.clone(),
        },
    );
    let witness_artifact = Artifact::from_typed(&witness).map_err(|e| internal(&e))?;
    derived.push(result_hash);
    let witness_hash = state
        .env
        .store
        .put_artifact(
            &witness_artifact,
            &Provenance::new(&producer).with_derived_from(derived),
        )
        .map_err(|e| store_error("storing the witness", &e))?;
    state
        .records
        .put(
            &plan_hash,
            &Record {
                result: result_hash,
                witness: witness_hash,
                succeeded: result.status == ResultStatus::Success,
            },
        )
        .map_err(|e| internal(&e))?;
    to_value(&ExecuteResult {
        result: result_artifact.into_value(),
        result_hash,
        witness: witness_artifact.into_value(),
        witness_hash,
    })
}
