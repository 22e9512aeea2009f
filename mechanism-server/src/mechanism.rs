//! The `Mechanism` trait: what one kind of effect must provide; the runtime does the rest.
//!
//! A mechanism only predicts and applies. Building the plan artifact from its proposal,
//! storing plans, recomputing them on execute, checking admissions and force-acks,
//! recording results and witnesses, idempotence, concurrency and finishing interrupted
//! executions are the runtime's job, so every mechanism gets them the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use protocol::artifact::effect::{Access, Effect, Touch};
use protocol::artifact::kinds::{Costs, Determinism, Grant, MechanismRef, Plan, RecipeStep};
use protocol::store::Store;
use protocol::verbs::{Operation, ProgressParams};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// A mechanism: one kind of effect, planned exactly and applied only as planned.
///
/// Five methods are required: [`id`](Mechanism::id), [`version`](Mechanism::version),
/// [`operations`](Mechanism::operations), [`plan`](Mechanism::plan) and
/// [`execute`](Mechanism::execute). Implement [`still_applied`](Mechanism::still_applied)
/// too: without it a second execute of a plan, or one after a kill, cannot tell that the
/// effect is already in place.
pub trait Mechanism: Send + Sync + 'static {
    /// What [`plan`](Mechanism::plan) computed that [`execute`](Mechanism::execute) needs
    /// (parsed params, objects built in memory), carried from the runtime's re-plan to
    /// execute so that nothing is computed twice; `()` when there is nothing.
    type Prepared: Send + 'static;

    /// The mechanism's id, e.g. `git_apply_patch`.
    fn id(&self) -> &str;

    /// Its version, pinned by registries.
    fn version(&self) -> &str;

    /// Its operations: params schema, effect types, destructiveness, determinism, examples.
    /// Each params schema is compiled on the operation's first `plan` or `declare_cost`, so
    /// `describe` stays cheap; one that does not compile fails those with `INTERNAL_ERROR`
    /// (`admission conformance` compiles them all).
    fn operations(&self) -> Vec<Operation>;

    /// Everything it may ever touch, as capability + resource globs relative to its root.
    /// By default: every effect type an operation declares, on every resource (`**`).
    fn capability_scope(&self) -> Vec<Grant> {
        let types: BTreeSet<String> = self
            .operations()
            .into_iter()
            .flat_map(|op| op.effect_types)
            .collect();
        types
            .into_iter()
            .map(|capability| Grant {
                capability,
                resources: vec!["**".to_owned()],
            })
            .collect()
    }

    /// Proposes what `request` would do against the current state; the runtime makes the
    /// plan artifact of it (adding the mechanism, operation, params and inputs). The same
    /// request on the same state must give the same proposal: no clock, no randomness.
    ///
    /// The runtime calls it for `plan`, and again on `execute` (with `preview` false) to
    /// check that the world still gives the admitted plan; that second proposal's
    /// [`Proposal::prepared`] goes to [`execute`](Mechanism::execute).
    fn plan(&self, env: &Env, request: &PlanRequest) -> Result<Proposal<Self::Prepared>>;

    /// Applies `plan`, which the runtime has just re-planned (giving `prepared`) and found
    /// identical to the admitted one. Before its first change it durably records what
    /// [`recover`](Mechanism::recover) needs to finish the job, then calls
    /// [`ExecContext::point_of_no_return`] once; if that fails it discards the record and
    /// changes nothing. Past it, the mechanism finishes, or (killed, or failing) leaves its
    /// record for `recover`. An effect that is one atomic step (a rename) needs no record:
    /// once the point of no return is passed, a plan found not applied is executed again.
    fn execute(
        &self,
        env: &Env,
        plan: &Plan,
        prepared: Self::Prepared,
        ctx: &ExecContext,
    ) -> Result<Executed>;

    /// What executing `plan` did, once its effects are in place, from the plan alone. By
    /// default: the intended effects applied, the plan's state before, no state after and
    /// no subjects; override it to name what the execution produced.
    fn executed(&self, plan: &Plan) -> Result<Executed> {
        Ok(Executed {
            effects_applied: plan.intended_effects.clone(),
            evidence: json!({}),
            subjects: Vec::new(),
            state_before: plan.state.clone(),
            state_after: json!({}),
        })
    }

    /// Whether the effects of an executed plan still hold, wholly (for git: the branch at
    /// the predicted commit and every touched path as planned), so that executing it again
    /// returns the recorded result. By default `false`: executing again re-plans, which
    /// then finds the world changed.
    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool> {
        let _ = (env, plan);
        Ok(false)
    }

    /// Finishes an execution of `plan` that was interrupted (the process killed, the
    /// machine stopped) after it was journalled. Returns what was executed once the effects
    /// are wholly in place, or `None` when nothing of the plan was applied. `BUSY` when
    /// another execution holds the resources; never a half-applied success.
    ///
    /// By default, for an effect that is one atomic step: what
    /// [`executed`](Mechanism::executed) says when [`still_applied`](Mechanism::still_applied),
    /// otherwise `None`.
    fn recover(&self, env: &Env, plan: &Plan) -> Result<Option<Executed>> {
        if self.still_applied(env, plan)? {
            self.executed(plan).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Where a mechanism may act: its root, which bounds every path, and the object store.
#[derive(Debug, Clone)]
pub struct Env {
    /// Every path the mechanism touches lies under this directory (canonical).
    pub root: PathBuf,
    /// The shared object store (inputs in, plans and results out).
    pub store: Store,
}

/// What to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// The operation name, one of the mechanism's.
    pub operation: String,
    /// Its params, already valid against the operation's schema.
    pub params: Value,
    /// Named input blobs, by digest, each verified present in the store.
    pub inputs: BTreeMap<String, Digest>,
    /// Whether a preview for people is wanted: false when the runtime re-plans to compare
    /// the plan with the admitted one and execute it.
    pub preview: bool,
}

/// Parses params (a request's or a plan's) into `T`; `INVALID_PARAMS` when they do not fit.
pub fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T> {
    T::deserialize(params).map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, e.to_string()))
}

/// What a plan would do, as the mechanism decides it; the runtime adds what every plan
/// repeats (mechanism, operation, params, inputs) and makes the plan artifact.
#[derive(Debug, Clone)]
pub struct Proposal<P> {
    /// The facts of the world the plan depends on, a JSON object: once the plan is
    /// executed, planning the same request again must give another plan.
    pub state: Value,
    /// The typed effects, in the order they happen.
    pub intended_effects: Vec<Effect>,
    /// Every resource read, written or deleted.
    pub touches: Vec<Touch>,
    /// Why the plan is destructive, one reason per fact; none: it is not destructive.
    pub destructive_reasons: Vec<String>,
    /// How deterministic this plan is; `None`: the operation's level.
    pub determinism: Option<Determinism>,
    /// What executing it is expected to cost.
    pub estimated_costs: Costs,
    /// Structured steps of the execution, for people and auditors.
    pub exec_recipe: Vec<RecipeStep>,
    /// A readable preview (a diff for git); not part of the plan or its hash.
    pub preview: Option<String>,
    /// What execute will need, kept in memory (see [`Mechanism::Prepared`]).
    pub prepared: P,
}

impl<P> Proposal<P> {
    /// A proposal on `state` with no effects yet, carrying `prepared`.
    pub fn new(state: Value, prepared: P) -> Self {
        Self {
            state,
            intended_effects: Vec::new(),
            touches: Vec::new(),
            destructive_reasons: Vec::new(),
            determinism: None,
            estimated_costs: Costs::default(),
            exec_recipe: Vec::new(),
            preview: None,
            prepared,
        }
    }

    /// Adds `effect` to the intended effects, and its resource, reached with `access`, to
    /// the touches.
    pub fn intend(&mut self, effect: Effect, access: Access) {
        self.touches.push(Touch {
            resource: effect.resource.clone(),
            access,
        });
        self.intended_effects.push(effect);
    }

    /// The plan artifact the runtime makes of this proposal for `request` of `mechanism`:
    /// mechanism, operation, params and inputs added, destructive when there is a reason,
    /// `determinism` unless the proposal says otherwise. Also returns the preview and what
    /// the mechanism prepared.
    pub fn into_plan(
        self,
        mechanism: MechanismRef,
        request: &PlanRequest,
        determinism: Determinism,
    ) -> (Plan, Option<String>, P) {
        let plan = Plan {
            mechanism,
            operation: request.operation.clone(),
            params: request.params.clone(),
            inputs: request.inputs.clone(),
            state: self.state,
            intended_effects: self.intended_effects,
            touches: self.touches,
            destructive: !self.destructive_reasons.is_empty(),
            destructive_reasons: self.destructive_reasons,
            determinism: self.determinism.unwrap_or(determinism),
            estimated_costs: self.estimated_costs,
            exec_recipe: self.exec_recipe,
        };
        (plan, self.preview, self.prepared)
    }
}

/// What an execution did.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The effects applied, comparable one to one with the plan's intended effects.
    pub effects_applied: Vec<Effect>,
    /// Structured evidence, a JSON object: ids, hashes.
    pub evidence: Value,
    /// What the execution produced, as in-toto subjects: name and digest map.
    pub subjects: Vec<(String, BTreeMap<String, String>)>,
    /// The state before, as facts (a JSON object).
    pub state_before: Value,
    /// The state after, as facts (a JSON object).
    pub state_after: Value,
}

/// The `data` member under which a failed execution names the effects that landed.
const EFFECTS_APPLIED: &str = "effects_applied";

/// A failure past the point of no return that left `effects` in place (a system that cannot
/// roll back, such as terraform): the runtime records them as the failed result's
/// `effects_applied`, so the record says what changed.
pub fn partly_applied(error: ErrorInfo, effects: Vec<Effect>) -> ErrorInfo {
    match serde_json::to_value(effects) {
        Ok(effects) => error.with_data(EFFECTS_APPLIED, effects),
        Err(_) => error,
    }
}

/// The effects a failed execution reported in place, as [`partly_applied`] put them.
pub(crate) fn effects_in_place(error: &ErrorInfo) -> Vec<Effect> {
    error
        .data
        .as_ref()
        .and_then(|data| data.get(EFFECTS_APPLIED))
        .and_then(|effects| serde_json::from_value(effects.clone()).ok())
        .unwrap_or_default()
}

/// The result of a mechanism's method.
pub type Result<T, E = ErrorInfo> = std::result::Result<T, E>;

/// What the runtime does at an execution's point of no return (claim the force-ack's
/// nonce); an error refuses the execution, with nothing applied.
pub(crate) type CommitHook = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// Reports progress to the client.
pub(crate) type ProgressSink = Arc<dyn Fn(ProgressParams) + Send + Sync>;

/// Per-execution controls: deadline, cancellation, progress and the point of no return.
#[derive(Clone)]
pub struct ExecContext {
    deadline: Option<Instant>,
    cancelled: Arc<AtomicBool>,
    progress: ProgressSink,
    plan_hash: Digest,
    commit: CommitHook,
    committed: Arc<AtomicBool>,
    /// An execution whose point of no return an interrupted one already passed: it cannot
    /// be stopped any more, and nothing is claimed again.
    resumed: bool,
}

impl ExecContext {
    /// A context for one execution of `plan_hash`; `commit` runs at its point of no return.
    pub(crate) fn new(
        plan_hash: Digest,
        deadline: Option<Instant>,
        cancelled: Arc<AtomicBool>,
        progress: ProgressSink,
        commit: CommitHook,
    ) -> Self {
        Self {
            deadline,
            cancelled,
            progress,
            plan_hash,
            commit,
            committed: Arc::new(AtomicBool::new(false)),
            resumed: false,
        }
    }

    /// The same context for an execution that resumes one interrupted past its point of no
    /// return: already committed, never stopped.
    pub(crate) fn resumed(mut self) -> Self {
        self.resumed = true;
        self.committed.store(true, Ordering::SeqCst);
        self
    }

    /// The plan being executed.
    pub fn plan_hash(&self) -> Digest {
        self.plan_hash
    }

    /// The last moment to stop: checks cancellation and the deadline, then lets the runtime
    /// claim the force-ack. Call it once the mechanism has recorded what recovery needs and
    /// before its first change. After `Ok` the mechanism finishes, whatever the clock says;
    /// after `Err` it discards its record and changes nothing.
    pub fn point_of_no_return(&self) -> Result<()> {
        if self.resumed {
            return Ok(());
        }
        self.checkpoint()?;
        if self.committed.swap(true, Ordering::SeqCst) {
            return Err(ErrorInfo::new(
                ErrorCode::InternalError,
                "the point of no return was passed twice",
            ));
        }
        (self.commit)().inspect_err(|_| self.committed.store(false, Ordering::SeqCst))
    }

    /// Whether [`ExecContext::point_of_no_return`] was passed.
    pub fn committed(&self) -> bool {
        self.committed.load(Ordering::SeqCst)
    }

    /// The deadline, if one was set.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Fails with `CANCELLED` or `DEADLINE_EXCEEDED` when the work must stop now. Call it
    /// before the point of no return, never after.
    pub fn checkpoint(&self) -> Result<()> {
        if self.resumed {
            return Ok(());
        }
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(ErrorInfo::new(
                ErrorCode::Cancelled,
                "cancelled by the client",
            ));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ErrorInfo::new(
                ErrorCode::DeadlineExceeded,
                "the execute deadline passed before the effect was applied",
            ));
        }
        Ok(())
    }

    /// Reports progress to the client as a `progress` notification.
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        (self.progress)(ProgressParams {
            plan_hash: self.plan_hash,
            done,
            total,
            message: message.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effects_a_failure_left_in_place_travel_in_its_data() {
        let landed = vec![Effect::new("fs.write", "a.txt").with("bytes", 3)];
        let error = partly_applied(
            ErrorInfo::new(ErrorCode::ExecutionFailed, "half"),
            landed.clone(),
        );
        assert_eq!(effects_in_place(&error), landed);
        assert_eq!(error.code, ErrorCode::ExecutionFailed);
        assert!(effects_in_place(&ErrorInfo::new(ErrorCode::ExecutionFailed, "none")).is_empty());
    }
}
