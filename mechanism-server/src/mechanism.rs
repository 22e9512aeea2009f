//! The `Mechanism` trait: what one kind of effect must provide; the runtime does the rest.
//!
//! A mechanism only predicts and applies. Storing plans, recomputing them on execute,
//! checking admissions and force-acks, recording results and witnesses, idempotence and
//! concurrency are the runtime's job (see [`crate::server`]), so every mechanism gets them
//! the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use protocol::artifact::effect::Effect;
use protocol::artifact::kinds::{Grant, Plan};
use protocol::store::Store;
use protocol::verbs::{Operation, ProgressParams};
use protocol::{Digest, ErrorCode};
use serde_json::Value;

/// A mechanism: one kind of effect, planned exactly and applied only as planned.
pub trait Mechanism: Send + Sync + 'static {
    /// The mechanism's id, e.g. `git_apply_patch`.
    fn id(&self) -> &str;

    /// Its version, pinned by registries.
    fn version(&self) -> &str;

    /// Its operations: params schema, effect types, destructiveness, determinism, examples.
    fn operations(&self) -> Vec<Operation>;

    /// Everything it may ever touch, as capability + resource globs relative to its root.
    fn capability_scope(&self) -> Vec<Grant>;

    /// Computes the plan of `request` against the current state. The same request on the
    /// same state must give the same plan, byte for byte: no clock, no randomness.
    fn plan(&self, env: &Env, request: &PlanRequest) -> Result<Planned, MechanismError>;

    /// Applies a plan the runtime has just recomputed and found identical to the admitted
    /// one. Before its first change it durably records what [`Mechanism::recover`] needs to
    /// finish the job, then calls [`ExecContext::point_of_no_return`] once; if that fails it
    /// discards the record and changes nothing. Past it, the mechanism finishes, or (killed,
    /// or failing) leaves its record for `recover`.
    fn execute(
        &self,
        env: &Env,
        planned: &Planned,
        ctx: &ExecContext,
    ) -> Result<Executed, MechanismError>;

    /// Whether the effects of an executed plan still hold, wholly (for git: the branch at
    /// the predicted commit and every touched path as planned), so that executing it again
    /// returns the recorded result.
    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool, MechanismError>;

    /// Finishes an execution of `plan` that passed its point of no return and was then
    /// interrupted (the process killed, the machine stopped). Returns what was executed once
    /// the effects are wholly in place, or `None` when nothing of the plan was applied.
    /// `BUSY` when another execution holds the resources; never a half-applied success.
    fn recover(&self, env: &Env, plan: &Plan) -> Result<Option<Executed>, MechanismError>;
}

/// Where a mechanism may act: its root, which bounds every path, and the object store.
#[derive(Debug, Clone)]
pub struct Env {
    /// Every path the mechanism touches lies under this directory.
    pub root: PathBuf,
    /// The shared object store (inputs in, plans and results out).
    pub store: Store,
}

/// What to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// The operation name.
    pub operation: String,
    /// Its params, already validated against the operation's schema.
    pub params: Value,
    /// Named input blobs, by digest.
    pub inputs: BTreeMap<String, Digest>,
    /// Whether a preview for people is wanted: false when the runtime re-plans only to
    /// compare the plan with the admitted one.
    pub preview: bool,
}

/// A computed plan and its human preview.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan, as it will be hashed.
    pub plan: Plan,
    /// A readable preview (a diff for git); not part of the hash.
    pub preview: Option<String>,
}

/// What an execution did.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The effects applied, comparable one to one with the plan's intended effects.
    pub effects_applied: Vec<Effect>,
    /// Structured evidence: ids, hashes.
    pub evidence: Value,
    /// What the execution produced, as in-toto subjects: name and digest map.
    pub subjects: Vec<(String, BTreeMap<String, String>)>,
    /// The state before, as facts.
    pub state_before: Value,
    /// The state after, as facts.
    pub state_after: Value,
}

/// A mechanism's refusal or failure, with its stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MechanismError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl MechanismError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the runtime does at an execution's point of no return (claim the force-ack's
/// nonce); an error refuses the execution, with nothing applied.
pub type CommitHook = Arc<dyn Fn() -> Result<(), MechanismError> + Send + Sync>;

/// Per-execution controls: deadline, cancellation, progress and the point of no return.
#[derive(Clone)]
pub struct ExecContext {
    deadline: Option<Instant>,
    cancelled: Arc<AtomicBool>,
    progress: Arc<dyn Fn(ProgressParams) + Send + Sync>,
    plan_hash: Digest,
    commit: CommitHook,
    committed: Arc<AtomicBool>,
}

impl ExecContext {
    /// A context for one execution of `plan_hash`; `commit` runs at its point of no return.
    pub fn new(
        plan_hash: Digest,
        deadline: Option<Instant>,
        cancelled: Arc<AtomicBool>,
        progress: Arc<dyn Fn(ProgressParams) + Send + Sync>,
        commit: CommitHook,
    ) -> Self {
        Self {
            deadline,
            cancelled,
            progress,
            plan_hash,
            commit,
            committed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The plan being executed.
    pub fn plan_hash(&self) -> Digest {
        self.plan_hash
    }

    /// The last moment to stop: checks cancellation and the deadline, then lets the runtime
    /// claim the force-ack. Call it once the mechanism has recorded what recovery needs and
    /// before its first change. After `Ok` the mechanism finishes, whatever the clock says;
    /// after `Err` it discards its record and changes nothing.
    pub fn point_of_no_return(&self) -> Result<(), MechanismError> {
        self.checkpoint()?;
        if self.committed.swap(true, Ordering::SeqCst) {
            return Err(MechanismError::new(
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
    pub fn checkpoint(&self) -> Result<(), MechanismError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(MechanismError::new(
                ErrorCode::Cancelled,
                "cancelled by the client",
            ));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(MechanismError::new(
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
