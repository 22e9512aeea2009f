//! The checks of what an execution returned and left, against its plan: one implementation
//! for `run` and `execute`, which make them before reporting success, and for `verify`,
//! which makes them offline on a stored chain.
//!
//! Both judge alike; each reports in its own terms. The pipeline stops at the first failure,
//! as the [`ErrorInfo`] of its run record; `verify` lists every one as a [`Check`].

use std::path::Path;

use mechanism_server::{StateCheck, Verdict};
use protocol::artifact::effect::Effect;
use protocol::artifact::kinds::{ErrorInfo, Plan, ResultArtifact, ResultStatus, ResultWitness};
use protocol::store::Store;
use protocol::verbs::ExecuteResult;
use protocol::{Digest, ErrorCode};

use crate::verify::Check;

/// The result and witness the mechanism stored must be the ones it returned, for this plan
/// and admission, with exactly the planned effects: the pipeline's checks of an execute's
/// answer. Returns the result as stored.
pub(crate) fn check_returned(
    store: &Store,
    returned: &ExecuteResult,
    plan_hash: &Digest,
    admission_hash: &Digest,
    plan: &Plan,
) -> Result<ResultArtifact, ErrorInfo> {
    let bad = |message: String| ErrorInfo::new(ErrorCode::IntegrityMismatch, message);
    let stored = store
        .get_artifact(&returned.result_hash)
        .map_err(|e| bad(format!("result {}: {e}", returned.result_hash)))?;
    if stored.value() != &returned.result {
        return Err(bad(
            "the stored result differs from the one returned".to_owned()
        ));
    }
    let artifact: ResultArtifact = stored.view().map_err(|e| bad(e.to_string()))?;
    let witness: ResultWitness = store
        .get_artifact(&returned.witness_hash)
        .map_err(|e| e.to_string())
        .and_then(|a| a.view().map_err(|e| e.to_string()))
        .map_err(|e| bad(format!("witness {}: {e}", returned.witness_hash)))?;
    let links = &witness.predicate;
    if artifact.plan_hash != *plan_hash
        || links.plan_hash != *plan_hash
        || links.result_hash != returned.result_hash
        || links.admission_hash != *admission_hash
    {
        return Err(bad(
            "the result or witness names another plan, result or admission".to_owned(),
        ));
    }
    succeeded(&artifact).map_err(|recorded| {
        recorded
            .cloned()
            .unwrap_or_else(|| ErrorInfo::new(ErrorCode::ExecutionFailed, "the execution failed"))
    })?;
    // In the plan's order, stricter than `verify`'s `result.effects`, as runs always were.
    if !matches!(
        compare_effects(&plan.intended_effects, &artifact.effects_applied),
        Applied::AsIntended
    ) {
        return Err(ErrorInfo::new(
            ErrorCode::ExecutionFailed,
            "the effects applied differ from the plan's intended effects",
        ));
    }
    Ok(artifact)
}

/// The state the plan's effects left must hold as `verify` checks it (its `state.*` checks):
/// for git, each commit exists with its predicted id, is on its branch and changes exactly
/// the planned files. The mechanism's word, or the store's, is not enough to report success.
pub(crate) fn check_state(
    workspace: &Path,
    plan: &Plan,
    result: &ResultArtifact,
) -> Result<(), ErrorInfo> {
    let failed: Vec<String> = state_checks(workspace, plan, Some(result))
        .iter()
        .filter(|check| !check.held())
        .map(ToString::to_string)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    // Whatever each check's own code, the run's outcome could not be confirmed.
    Err(ErrorInfo::new(
        ErrorCode::ExecutionFailed,
        format!(
            "the mechanism reported success, but the state it left does not hold: {}",
            failed.join("; ")
        ),
    ))
}

/// `result.status`: the result records a success.
pub(crate) fn status(result: &ResultArtifact) -> Check {
    const NAME: &str = "result.status";
    match succeeded(result) {
        Ok(()) => Check::pass(NAME, "success"),
        Err(Some(e)) => Check::fail(
            NAME,
            e.code,
            format!("the execution failed: {} {}", e.code, e.message),
        ),
        Err(None) => Check::fail(NAME, ErrorCode::ExecutionFailed, "the execution failed"),
    }
}

/// `result.effects`: the applied effects are the intended ones, one to one.
pub(crate) fn effects(intended: &[Effect], applied: &[Effect]) -> Check {
    const NAME: &str = "result.effects";
    let (missing, extra) = match compare_effects(intended, applied) {
        Applied::AsIntended => {
            return Check::pass(
                NAME,
                format!("all {} intended effects were applied", intended.len()),
            )
        }
        Applied::InAnotherOrder => {
            return Check::pass(
                NAME,
                format!(
                    "all {} intended effects were applied, in another order",
                    intended.len()
                ),
            )
        }
        Applied::Otherwise { missing, extra } => (missing, extra),
    };
    let list = |effects: &[&Effect]| {
        effects
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_else(|_| e.effect_type.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("intended but not applied: {}", list(&missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("applied but not intended: {}", list(&extra)));
    }
    Check::fail(NAME, ErrorCode::ExecutionFailed, parts.join("; "))
}

/// The `state.*` checks alone: whether the state `plan` predicts holds now under
/// `workspace`, as its mechanism checks it (a built-in one; for any other, one skipped
/// `state.other`).
pub(crate) fn state_checks(
    workspace: &Path,
    plan: &Plan,
    result: Option<&ResultArtifact>,
) -> Vec<Check> {
    match mechanism_builtins::state_checker(&plan.mechanism.id) {
        Some(checker) => checker
            .check_state(workspace, plan, result)
            .into_iter()
            .map(Check::from)
            .collect(),
        None => StateCheck::unchecked(&plan.intended_effects)
            .map(Check::from)
            .into_iter()
            .collect(),
    }
}

impl From<StateCheck> for Check {
    fn from(check: StateCheck) -> Self {
        let StateCheck {
            name,
            verdict,
            detail,
        } = check;
        match verdict {
            Verdict::Pass => Check::pass(&name, detail),
            Verdict::Fail(code) => Check::fail(&name, code, detail),
            Verdict::Skip => Check::skip(&name, detail),
        }
    }
}

/// Whether the result records a success; if not, the error it records (the schema requires
/// one, but a result may lack it).
fn succeeded(result: &ResultArtifact) -> Result<(), Option<&ErrorInfo>> {
    match result.status {
        ResultStatus::Success => Ok(()),
        ResultStatus::Failure => Err(result.error.as_ref()),
    }
}

/// How the applied effects compare with the intended ones.
enum Applied<'a> {
    /// The very same list.
    AsIntended,
    /// The same effects, one to one, in another order.
    InAnotherOrder,
    /// Not the same effects.
    Otherwise {
        /// Intended, but not applied.
        missing: Vec<&'a Effect>,
        /// Applied, but not intended.
        extra: Vec<&'a Effect>,
    },
}

fn compare_effects<'a>(intended: &'a [Effect], applied: &'a [Effect]) -> Applied<'a> {
    if intended == applied {
        return Applied::AsIntended;
    }
    // Pair them regardless of order, to name exactly what is missing and what is extra.
    let mut extra: Vec<&Effect> = applied.iter().collect();
    let mut missing = Vec::new();
    for effect in intended {
        match extra.iter().position(|a| *a == effect) {
            Some(i) => {
                extra.swap_remove(i);
            }
            None => missing.push(effect),
        }
    }
    if missing.is_empty() && extra.is_empty() {
        Applied::InAnotherOrder
    } else {
        Applied::Otherwise { missing, extra }
    }
}
