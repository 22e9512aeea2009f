//! The admission side's own documents: workorders, the registry, run records, next actions
//! and journal execution documents. Records may carry times; plans never do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::admission::Gate;
use super::common::{Budget, Determinism, GateDecision, Grant, MechanismRef};
use crate::artifact::Kind;
use crate::digest::Digest;
use crate::error::ErrorInfo;

/// A request to run one operation of one registered mechanism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workorder {
    /// The requester's id for this work.
    pub work_order_id: String,
    /// The registry id of the mechanism (the registry pins its version).
    pub mechanism: String,
    /// The operation to run.
    pub operation: String,
    /// The operation's params.
    pub params: Value,
    /// Named inputs: a path relative to the workorder file (stored as a blob first) or the
    /// `sha256:...` digest of a stored blob.
    pub inputs: BTreeMap<String, String>,
    /// The budget; `wall_ms` becomes the execute deadline.
    pub budget: Budget,
    /// The ticket this work belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// The context snapshot the work runs against (a ticket's workorder has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_snapshot_id: Option<Digest>,
    /// The wall-clock budget of the whole run, in ms: execution may not start after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<u64>,
    /// The branch the change lands on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The mechanism that runs it, at the version the registry pinned when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<MechanismRef>,
}

impl Workorder {
    /// Every member a workorder may have, `kind` included; its schema allows no other.
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "work_order_id",
        "mechanism",
        "operation",
        "params",
        "inputs",
        "budget",
        "ticket_id",
        "context_snapshot_id",
        "budget_ms",
        "branch",
        "runner",
    ];
}

impl Kind for Workorder {
    const KIND: &'static str = "mechanism.workorder/v0";
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Planned and admitted, not executed.
    Admitted,
    /// Admitted, paused until a force-ack is given.
    AwaitingForceAck,
    /// Executed and verified.
    Succeeded,
    /// Execution failed.
    Failed,
    /// The plan no longer matched the world.
    Stale,
    /// A gate failed.
    Denied,
    /// Bad input or an internal fault before a decision.
    Error,
}

/// A run's next actions: the digest of a [`NextActions`] artifact, or the actions inline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NextActionsRef {
    /// A stored NextActions artifact.
    Digest(Digest),
    /// One to three actions.
    Inline(Vec<NextAction>),
}

/// The outcome of one admission run of a workorder, linking everything it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The workorder's id.
    pub work_order_id: String,
    /// The journal uid of the run's execution document.
    pub run_uid: String,
    /// The registry id of the mechanism.
    pub mechanism: String,
    /// The operation.
    pub operation: String,
    /// PASS when admitted, FAIL otherwise.
    pub decision: GateDecision,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// The stored workorder the run was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workorder: Option<Digest>,
    /// The ticket the workorder belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// The first gate that failed, on a FAIL by a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_gate: Option<Gate>,
    /// The OutputBundle of what the run produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_id: Option<Digest>,
    /// The plan, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<Digest>,
    /// The AdmissionWitness, when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_hash: Option<Digest>,
    /// The force-ack used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_ack_hash: Option<Digest>,
    /// The ResultArtifact, after an execute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_hash: Option<Digest>,
    /// The ResultWitness, after an execute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_hash: Option<Digest>,
    /// What went wrong, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// What the operator can do next.
    pub next_actions: NextActionsRef,
    /// When the run started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl Kind for RunRecord {
    const KIND: &'static str = "mechanism.run-record/v0";
}

/// One command the operator can paste.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NextAction {
    /// 1 is most urgent, 3 least.
    pub priority: u8,
    /// The command line.
    pub command: String,
    /// Why it is worth running.
    pub why: String,
}

/// One to three prioritised next actions, ending every run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NextActions {
    /// The actions, most urgent first.
    pub actions: Vec<NextAction>,
}

impl Kind for NextActions {
    const KIND: &'static str = "mechanism.next-actions/v0";
}

/// How to start a mechanism: a program and its arguments, never a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// The program, by name (looked up next to the admission binary, then on PATH) or path.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// One pinned mechanism in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The mechanism id.
    pub id: String,
    /// The pinned version; `describe` must report exactly this.
    pub version: String,
    /// How to start it.
    pub command: Command,
    /// What it may do, as capability + resource globs relative to the workspace.
    pub grants: Vec<Grant>,
    /// Its budgets.
    pub budgets: Budget,
    /// Operation -> the least deterministic level admitted; unlisted operations are not.
    pub determinism_ceiling: BTreeMap<String, Determinism>,
}

/// The static registry of mechanisms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The pinned mechanisms.
    pub mechanisms: Vec<RegistryEntry>,
}

impl Kind for Registry {
    const KIND: &'static str = "mechanism.registry/v0";
}

/// The status of an execution document or of one of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecStatus {
    /// Written, not started.
    Created,
    /// In progress.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with a failure.
    Failed,
    /// Waiting (for a force-ack); resumed as a child execution.
    Paused,
}

/// One step of an execution document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecStep {
    /// The step's label, also its snapshot's file name.
    pub label: String,
    /// Its status.
    pub status: ExecStatus,
    /// What it did or found.
    pub detail: Value,
    /// When it was recorded (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// One admission command as a journal execution document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDocument {
    /// The execution's uid, also its journal directory name.
    pub uid: String,
    /// The protocol version spoken.
    pub protocol: String,
    /// Where it ran: working directory, store, trace id and the like.
    pub context: Value,
    /// The execution this one resumes, e.g. a run paused for a force-ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its status.
    pub status: ExecStatus,
    /// The configuration it ran with.
    pub config: Value,
    /// Its input (the command and its arguments, the workorder).
    pub input: Value,
    /// Its result, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The steps so far.
    pub steps: Vec<ExecStep>,
    /// When it started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When this snapshot was written (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Kind for ExecutionDocument {
    const KIND: &'static str = "mechanism.execution/v0";
}
