//! `execute`: run a plan by hash, only if it is still exactly what was admitted, and
//! finish any execution of it that a killed process left half done.
//!
//! Order matters: nothing is claimed or applied before every check has passed. One process
//! at a time executes a plan (a lock in the store; `BUSY` otherwise). The execution is
//! journalled before the mechanism is called and the journal ended once the result is
//! recorded, so an execution killed in between is finished by the next execute of the plan,
//! or when a server starts ([`finish_interrupted`]). At the mechanism's point of no return
//! (once it has recorded what it needs to finish) the force-ack's nonce is claimed; past it
//! the execution finishes, deadline or not.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use super::handlers::{load_plan, propose, store_error, to_value};
use super::records::{Journal, Record};
use super::State;
use crate::failpoint;
use crate::mechanism::{ExecContext, Executed, Mechanism, PlanRequest};

type RpcResult = Result<Value, ErrorInfo>;

/// Executes `params.plan_hash` after every check; see the module docs.
pub(super) fn execute<M: Mechanism>(
    state: &State<M>,
    params: ExecuteParams,
    scope: Option<RequestScope>,
) -> RpcResult {
    let received = Instant::now();
    let plan_hash = params.plan_hash;
    let plan = load_plan(state, &plan_hash)?;
    let _running = RunningGuard::enter(state, plan_hash)?;
    let _plan_lock = lock_plan(state, &plan_hash)?;

    if let Some(journal) = state.records.journal(&plan_hash) {
        match finish(state, &plan, plan_hash, journal)? {
            Finished::Recorded(reply) => return Ok(reply),
            Finished::Resume(journal) => return resume(state, &plan, plan_hash, journal, scope),
            Finished::NothingApplied => {}
        }
    }
    // Executing again while the recorded effects still hold applies nothing.
    if let Some(record) = state.records.get(&plan_hash).filter(|r| r.succeeded) {
        if state.mechanism.still_applied(&state.env, &plan)? {
            tracing::info!(%plan_hash, "effects already in place; returning the recorded result");
            return recorded(state, &record);
        }
    }

    let prepared = replan(state, &plan, &plan_hash)?;
    let admission = check_admission(state, &plan_hash, &params.admission)?;
    let force_ack = if plan.destructive {
        Some(check_force_ack(
            state,
            &plan_hash,
            &params.admission,
            params.force_ack.as_ref(),
        )?)
    } else {
        None
    };
    // A deadline beyond what the clock can hold is no deadline.
    let deadline = params
        .deadline_ms
        .and_then(|ms| received.checked_add(Duration::from_millis(ms)));
    refuse_unless_in_time(&plan, deadline)?;

    let journal = Journal {
        admission,
        force_ack: force_ack.as_ref().map(|ack| ack.digest),
        nonce: force_ack.map(|ack| ack.nonce),
    };
    state
        .records
        .begin(&plan_hash, &journal)
        .map_err(|e| store_error("journalling the execution", &e))?;
    failpoint::hit("execute:journal");
    let ctx = exec_context(state, plan_hash, deadline, scope, journal.nonce.clone());
    let outcome = state.mechanism.execute(&state.env, &plan, prepared, &ctx);
    failpoint::hit("execute:applied");
    conclude(state, &plan, plan_hash, journal, &ctx, outcome)
}

/// Executes again a journalled plan whose interrupted execution passed its point of no
/// return (its force-ack's nonce is claimed) and applied nothing, as an effect that is one
/// atomic step leaves it: the approval is spent, so the execution is rolled forward under
/// the journal's admission and force-ack, never refused for want of a fresh one. Only a
/// world that no longer gives the plan ends it (`STALE_PLAN`, nothing applied).
fn resume<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: Digest,
    journal: Journal,
    scope: Option<RequestScope>,
) -> RpcResult {
    tracing::warn!(%plan_hash, "executing again a plan whose interrupted execution passed its point of no return and applied nothing");
    let prepared = match replan(state, plan, &plan_hash) {
        Ok(prepared) => prepared,
        Err(error) => {
            if error.code == ErrorCode::StalePlan {
                end(state, &plan_hash)?;
            }
            return Err(error);
        }
    };
    let ctx = exec_context(state, plan_hash, None, scope, None).resumed();
    let outcome = state.mechanism.execute(&state.env, plan, prepared, &ctx);
    failpoint::hit("execute:applied");
    conclude(state, plan, plan_hash, journal, &ctx, outcome)
}

/// Records what the mechanism's execute came to, and ends the journal unless the execution
/// stopped past its point of no return (then the next execute, or server start, finishes it).
fn conclude<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: Digest,
    journal: Journal,
    ctx: &ExecContext,
    outcome: Result<Executed, ErrorInfo>,
) -> RpcResult {
    let executed = match outcome {
        Ok(_) if !ctx.committed() => {
            end(state, &plan_hash)?;
            return Err(ErrorInfo::new(
                ErrorCode::InternalError,
                "the mechanism reported success without passing its point of no return",
            ));
        }
        Ok(executed) => executed,
        // Refused before the point of no return: nothing was applied, nothing to record.
        Err(err) if !ctx.committed() && is_refusal(err.code) => {
            end(state, &plan_hash)?;
            return Err(err);
        }
        Err(err) => {
            // Past the point of no return the journal stays: the next execute, or the next
            // server start, finishes what the mechanism left.
            if !ctx.committed() {
                end(state, &plan_hash)?;
            }
            let reply = record_failure(state, plan, plan_hash, journal, &err)?;
            return Err(err.with_data("result", reply));
        }
    };
    let reply = record_success(state, plan, plan_hash, journal, &executed)?;
    end(state, &plan_hash)?;
    Ok(reply)
}

/// Finishes the executions a killed process left journalled in the store, for plans of
/// this mechanism; run when a server starts. Failures are reported and left for the next
/// execute of the plan, and so is an execution to resume (it needs a request to run in).
pub(super) fn finish_interrupted<M: Mechanism>(state: &State<M>) {
    let plans = match state.records.journalled() {
        Ok(plans) => plans,
        Err(error) => {
            tracing::warn!(%error, "cannot list the executions under way");
            return;
        }
    };
    for plan_hash in plans {
        let Ok(plan) = load_plan(state, &plan_hash) else {
            continue;
        };
        let outcome = lock_plan(state, &plan_hash).and_then(|_lock| {
            let Some(journal) = state.records.journal(&plan_hash) else {
                return Ok(Finished::NothingApplied);
            };
            finish(state, &plan, plan_hash, journal)
        });
        match outcome {
            Ok(Finished::Recorded(_)) => {
                tracing::info!(%plan_hash, "finished an interrupted execution")
            }
            Ok(Finished::Resume(_)) => tracing::info!(
                %plan_hash,
                "an interrupted execution passed its point of no return and applied nothing; \
                 the next execute of the plan executes it"
            ),
            Ok(Finished::NothingApplied) => {}
            Err(error) => tracing::warn!(
                %plan_hash,
                error = %error,
                "an interrupted execution could not be finished now"
            ),
        }
    }
}

/// What finishing a journalled execution came to.
enum Finished {
    /// Its effects are in place and its result recorded: the reply.
    Recorded(Value),
    /// Nothing of it was applied, but it passed its point of no return: to execute again.
    Resume(Journal),
    /// Nothing of it was applied before its point of no return; the journal is ended.
    NothingApplied,
}

/// Finishes a journalled execution of `plan`: once the mechanism has its effects wholly in
/// place, records the result. When nothing of it was applied, an execution that claimed its
/// force-ack's nonce is to [`resume`]; any other ends its journal, so the caller goes on as
/// for a fresh execution.
fn finish<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: Digest,
    journal: Journal,
) -> Result<Finished, ErrorInfo> {
    match state.mechanism.recover(&state.env, plan)? {
        Some(executed) => {
            tracing::warn!(%plan_hash, "an interrupted execution of this plan is now finished");
            // Killed between recording its intent and claiming the nonce, the execution is
            // finished all the same: the approval it used is spent now.
            if let Some(nonce) = &journal.nonce {
                match force_ack::claim_nonce(&state.env.store, nonce, &plan_hash) {
                    Ok(()) | Err(force_ack::ForceAckError::Replayed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let reply = record_success(state, plan, plan_hash, journal, &executed)?;
            end(state, &plan_hash)?;
            Ok(Finished::Recorded(reply))
        }
        None => {
            // The nonce was checked unclaimed before the journal began, and force-acks
            // carry random nonces: claimed now, it was claimed by this execution's point of
            // no return.
            if let Some(nonce) = &journal.nonce {
                let claimed = force_ack::nonce_claimed(&state.env.store, nonce)?;
                if claimed {
                    return Ok(Finished::Resume(journal));
                }
            }
            end(state, &plan_hash)?;
            Ok(Finished::NothingApplied)
        }
    }
}

fn end<M: Mechanism>(state: &State<M>, plan_hash: &Digest) -> Result<(), ErrorInfo> {
    state
        .records
        .end(plan_hash)
        .map_err(|e| store_error("ending the execution journal", &e))
}

/// Takes the store's lock on executing `plan_hash`; `BUSY` while another process holds it.
fn lock_plan<M: Mechanism>(
    state: &State<M>,
    plan_hash: &Digest,
) -> Result<super::records::PlanLock, ErrorInfo> {
    match state.records.lock(plan_hash) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(ErrorInfo::new(
            ErrorCode::Busy,
            format!("plan {plan_hash} is being executed by another process; retry when it is done"),
        )),
        Err(e) => Err(ErrorInfo::new(
            ErrorCode::InternalError,
            format!("locking plan {plan_hash} in the store: {e}"),
        )),
    }
}

/// `DEADLINE_EXCEEDED` when the time left is less than the plan's own estimate: better
/// refused now, with nothing applied, than started and finished past the deadline.
fn refuse_unless_in_time(plan: &Plan, deadline: Option<Instant>) -> Result<(), ErrorInfo> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let needed = Duration::from_millis(plan.estimated_costs.wall_ms.unwrap_or(0));
    if left.is_zero() || left < needed {
        return Err(ErrorInfo::new(
            ErrorCode::DeadlineExceeded,
            format!(
                "{} ms are left before the deadline and the plan needs an estimated {} ms; \
                 nothing was applied",
                left.as_millis(),
                needed.as_millis()
            ),
        ));
    }
    Ok(())
}

/// Errors that refuse an execution before anything is applied: nothing to record. A
/// force-ack found spent when its nonce is claimed (a racing use) is one of them.
fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Cancelled
            | ErrorCode::DeadlineExceeded
            | ErrorCode::StalePlan
            | ErrorCode::Busy
            | ErrorCode::ForceAckReplayed
    )
}

/// Marks a plan as running for as long as it lives; a second entry gets `BUSY`.
struct RunningGuard<'a, M> {
    state: &'a State<M>,
    plan_hash: Digest,
}

impl<'a, M> RunningGuard<'a, M> {
    fn enter(state: &'a State<M>, plan_hash: Digest) -> Result<Self, ErrorInfo> {
        let mut running = state
            .running
            .lock()
            .map_err(|_| ErrorInfo::new(ErrorCode::InternalError, "running-plan table poisoned"))?;
        if running.contains_key(&plan_hash) {
            return Err(ErrorInfo::new(
                ErrorCode::Busy,
                format!("plan {plan_hash} is executing already"),
            ));
        }
        running.insert(plan_hash, None);
        Ok(Self { state, plan_hash })
    }
}

impl<M> Drop for RunningGuard<'_, M> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.state.running.lock() {
            running.remove(&self.plan_hash);
        }
    }
}

fn recorded<M: Mechanism>(state: &State<M>, record: &Record) -> RpcResult {
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
/// Returns what the mechanism prepared for execute.
fn replan<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: &Digest,
) -> Result<M::Prepared, ErrorInfo> {
    let request = PlanRequest {
        operation: plan.operation.clone(),
        params: plan.params.clone(),
        inputs: plan.inputs.clone(),
        preview: false,
    };
    let (fresh, _, prepared) = propose(state, &request, |e| match e.code {
        ErrorCode::InvalidParams | ErrorCode::PathRefused => ErrorInfo::new(
            ErrorCode::StalePlan,
            format!("the plan no longer holds: {}", e.message),
        ),
        _ => e,
    })?;
    let fresh = Artifact::from_typed(&fresh)
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?;
    if fresh.digest() != *plan_hash {
        return Err(ErrorInfo::new(
            ErrorCode::StalePlan,
            format!(
                "the world changed since planning: the plan is now {}, not {plan_hash}; plan again",
                fresh.digest()
            ),
        ));
    }
    Ok(prepared)
}

fn check_admission<M: Mechanism>(
    state: &State<M>,
    plan_hash: &Digest,
    admission: &Digest,
) -> Result<Digest, ErrorInfo> {
    let required = |why: String| ErrorInfo::new(ErrorCode::AdmissionRequired, why);
    let artifact = state
        .env
        .store
        .get_artifact(admission)
        .map_err(|e| match e {
            StoreError::NotFound(_) => ErrorInfo::new(
                ErrorCode::UnknownArtifact,
                format!("no admission witness {admission} in the store"),
            ),
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

/// A force-ack checked for this plan and stored; its nonce is claimed at the point of no
/// return, so a refusal before it does not spend the approval.
struct CheckedAck {
    digest: Digest,
    nonce: String,
}

fn check_force_ack<M: Mechanism>(
    state: &State<M>,
    plan_hash: &Digest,
    admission: &Digest,
    force_ack: Option<&Value>,
) -> Result<CheckedAck, ErrorInfo> {
    let Some(force_ack) = force_ack else {
        return Err(ErrorInfo::new(
            ErrorCode::ForceAckRequired,
            format!("plan {plan_hash} is destructive: it needs an operator's signed force-ack"),
        ));
    };
    let Some(signers) = state.signers.as_ref() else {
        return Err(ErrorInfo::new(
            ErrorCode::ForceAckInvalid,
            "this server trusts no force-ack signers (--force-ack-signers), so destructive plans cannot run",
        ));
    };
    let max_ttl = time::Duration::try_from(state.max_ttl)
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?;
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
    )?;
    if force_ack::nonce_claimed(&state.env.store, &verified.nonce)? {
        return Err(force_ack::ForceAckError::Replayed {
            nonce: verified.nonce,
        }
        .into());
    }
    let artifact = Artifact::from_value(force_ack.clone())
        .map_err(|e| ErrorInfo::new(ErrorCode::ForceAckInvalid, e.to_string()))?;
    let digest = state
        .env
        .store
        .put_artifact(
            &artifact,
            &Provenance::new(format!("force-ack by {}", verified.approver))
                .with_derived_from([*plan_hash, *admission]),
        )
        .map_err(|e| store_error("storing the force-ack", &e))?;
    Ok(CheckedAck {
        digest,
        nonce: verified.nonce,
    })
}

/// The context of one execution: its deadline, cancellation, progress, and the point of no
/// return, where the force-ack's nonce (if any) is claimed.
fn exec_context<M: Mechanism>(
    state: &State<M>,
    plan_hash: Digest,
    deadline: Option<Instant>,
    scope: Option<RequestScope>,
    nonce: Option<String>,
) -> ExecContext {
    let cancelled = scope.as_ref().map_or_else(
        || Arc::new(AtomicBool::new(false)),
        |s| Arc::clone(&s.cancelled),
    );
    let notify = scope.map(|s| s.notify);
    let running = Arc::clone(&state.running);
    let store = state.env.store.clone();
    ExecContext::new(
        plan_hash,
        deadline,
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
        Arc::new(move || {
            if let Some(nonce) = &nonce {
                force_ack::claim_nonce(&store, nonce, &plan_hash)?;
            }
            failpoint::hit("execute:committed");
            Ok(())
        }),
    )
}

/// Records a success: the result with every effect applied, and its witness.
fn record_success<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: Digest,
    journal: Journal,
    executed: &Executed,
) -> RpcResult {
    let result = ResultArtifact {
        plan_hash,
        status: ResultStatus::Success,
        effects_applied: executed.effects_applied.clone(),
        evidence: executed.evidence.clone(),
        error: None,
    };
    record(state, plan, plan_hash, journal, &result, executed)
}

/// Records a failure: the result with no effect applied and the error, and its witness.
fn record_failure<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: Digest,
    journal: Journal,
    error: &ErrorInfo,
) -> RpcResult {
    // Nothing landed, unless a mechanism that cannot roll back says what did.
    let landed = crate::mechanism::effects_in_place(error);
    let result = ResultArtifact {
        plan_hash,
        status: ResultStatus::Failure,
        effects_applied: landed.clone(),
        evidence: json!({}),
        error: Some(ErrorInfo::new(error.code, error.message.clone())),
    };
    let executed = Executed {
        effects_applied: landed,
        evidence: json!({}),
        subjects: Vec::new(),
        state_before: plan.state.clone(),
        state_after: plan.state.clone(),
    };
    record(state, plan, plan_hash, journal, &result, &executed)
}

/// Stores the result and its witness, then the record that links them to the plan.
fn record<M: Mechanism>(
    state: &State<M>,
    plan: &Plan,
    plan_hash: Digest,
    journal: Journal,
    result: &ResultArtifact,
    executed: &Executed,
) -> RpcResult {
    let Journal {
        admission: admission_hash,
        force_ack: force_ack_hash,
        ..
    } = journal;
    let internal =
        |e: &dyn std::fmt::Display| ErrorInfo::new(ErrorCode::InternalError, e.to_string());
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
    failpoint::hit("execute:stored");
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
    failpoint::hit("execute:recorded");
    to_value(&ExecuteResult {
        result: result_artifact.into_value(),
        result_hash,
        witness: witness_artifact.into_value(),
        witness_hash,
    })
}
