//! The ticket lifecycle above mechanisms: a ticket, the event that schedules it, the context
//! snapshot its work runs against, the output bundle of the run, and the pause state every
//! cycle ends in.
//!
//! Every artifact here is immutable once stored. A mutable thing (a ticket's status, an
//! event's processing) is a new version naming the one before it (`previous`), and a store
//! reference names the current version. Links between artifacts of one cycle are digests, so
//! a link can neither dangle onto another artifact nor be rewritten: a content-addressed
//! artifact cannot hold its own digest, which is why each also has a readable `*_id`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::Budget;
use super::records::NextAction;
use crate::artifact::Kind;
use crate::digest::Digest;
use crate::error::ErrorInfo;

/// Where a ticket is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TicketStatus {
    /// Filed, not yet triaged.
    New,
    /// Triaged, to be done.
    Todo,
    /// Ready to be executed: a `TICKET_READY` event runs it.
    Ready,
    /// Its work is under way, or paused for an operator's force-ack.
    Running,
    /// Its work ran and passed; the commit or state is linked.
    Done,
    /// Its work was refused or failed; the reason is kept.
    Failed,
    /// It waits on blockers.
    Blocked,
}

impl TicketStatus {
    /// Whether a `TICKET_READY` event may run a ticket in this status (a blocked one has its
    /// blockers checked again).
    pub fn executable(self) -> bool {
        matches!(self, Self::Todo | Self::Ready | Self::Blocked)
    }

    /// The status as the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Todo => "TODO",
            Self::Ready => "READY",
            Self::Running => "RUNNING",
            Self::Done => "DONE",
            Self::Failed => "FAILED",
            Self::Blocked => "BLOCKED",
        }
    }
}

impl std::fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a ticket waits on: another ticket (resolved once it is `DONE`) and/or a reason (a
/// reason alone is never resolved by the admission: the ticket must be filed again).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Blocker {
    /// The ticket waited on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The change a ticket asks for, as a workorder would name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketWork {
    /// The registry id of the mechanism that runs it (the runner).
    pub mechanism: String,
    /// The operation.
    pub operation: String,
    /// The operation's params.
    pub params: Value,
    /// Named inputs, each the digest of a stored blob (paths are stored when the ticket is).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// The resource budget of each run.
    pub budget: Budget,
    /// The wall-clock budget of the whole cycle, snapshot to verified result, in ms;
    /// default: `budget.wall_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<u64>,
    /// The branch the change lands on (passed as the operation's `branch` param when its
    /// params have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// How a ticket's last run ended, on the ticket version that records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketResolution {
    /// The run record (none when the run could not even start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_record: Option<Digest>,
    /// The commit (or other state id) produced, on `DONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Why it failed, on `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// One version of a ticket: one objective, its acceptance criteria, its status and its work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket's id, stable across its versions.
    pub ticket_id: String,
    /// What it is for, in one sentence.
    pub objective: String,
    /// How to tell it is done: at least one criterion.
    pub acceptance: Vec<String>,
    /// Its status in this version.
    pub status: TicketStatus,
    /// What it waits on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_on: Vec<Blocker>,
    /// The change it asks for.
    pub work: TicketWork,
    /// The version this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    /// The event that made this version, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The outcome of its last run, on `DONE` and `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<TicketResolution>,
    /// When this version was written (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Ticket {
    /// Every member a ticket file may have, `kind` included; its schema allows no other.
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "ticket_id",
        "objective",
        "acceptance",
        "status",
        "blocked_on",
        "work",
        "previous",
        "event_id",
        "resolution",
        "updated_at",
    ];
}

impl Kind for Ticket {
    const KIND: &'static str = "mechanism.ticket/v0";
}

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The ticket is ready to be executed.
    TicketReady,
}

/// The one terminal outcome of processing an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventOutcome {
    /// The ticket's work ran (or paused for a force-ack): `run_record` says how it ended.
    Scheduled,
    /// No ticket has that id.
    MissingTicket,
    /// The ticket's status does not allow a run (e.g. it is already `DONE`).
    NonExecutableStatus,
    /// A blocker of the ticket is not resolved.
    Blocked,
}

/// What processing an event found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventResolution {
    /// The terminal outcome.
    pub outcome: EventOutcome,
    /// Why, for people.
    pub reason: String,
    /// The run, when scheduled and its workorder ran: its journal uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_uid: Option<String>,
    /// The run record, with `run_uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_record: Option<Digest>,
    /// The ticket version the processing wrote last (or found, if it wrote none), unless
    /// `MISSING_TICKET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Digest>,
    /// The pause state the processing ended in, unless `MISSING_TICKET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_state: Option<Digest>,
    /// The unresolved blockers, when blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// When it was processed (RFC 3339, UTC).
    pub processed_at: String,
}

/// An event about a ticket, from the admission (`ticket ready`) or an outside system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's id: processing the same id twice does nothing the second time.
    pub event_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The ticket it is about.
    pub ticket_id: String,
    /// Whether it has been processed.
    pub processed: bool,
    /// Its terminal outcome, once processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<EventResolution>,
    /// Who sent it (e.g. `admission ticket ready`, a tracker's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The pending version this processed one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
}

impl Event {
    /// Every member an event file may have, `kind` included; its schema allows no other.
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "event_id",
        "type",
        "ticket_id",
        "processed",
        "resolution",
        "source",
        "previous",
    ];
}

impl Kind for Event {
    const KIND: &'static str = "mechanism.event/v0";
}

/// The state a ticket's work will run against, fixed before its workorder is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSnapshot {
    /// The snapshot's readable id.
    pub snapshot_id: String,
    /// The ticket's id.
    pub ticket_id: String,
    /// The ticket version it was made from.
    pub ticket: Digest,
    /// The mechanism that planned it.
    pub mechanism: String,
    /// The operation.
    pub operation: String,
    /// The operation's params, as the workorder gives them.
    pub params: Value,
    /// The input blobs, by name.
    pub inputs: BTreeMap<String, Digest>,
    /// The plan made against the state, when the mechanism could plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<Digest>,
    /// The plan's `state` (for git: repository, branch, base commit and tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// Why the mechanism could not plan, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
}

impl Kind for ContextSnapshot {
    const KIND: &'static str = "mechanism.context-snapshot/v0";
}

/// What one run produced, by digest: everything needed to prove it afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputBundle {
    /// The bundle's readable id.
    pub output_id: String,
    /// The run's journal uid.
    pub run_uid: String,
    /// The workorder's id.
    pub work_order_id: String,
    /// The PlanArtifact, when one was made.
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
    /// The commit produced (git), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The state after the effect, as the result states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// The mechanism's evidence of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Value>,
}

impl Kind for OutputBundle {
    const KIND: &'static str = "mechanism.output-bundle/v0";
}

/// Where a ticket's cycle stopped, and the one to three commands that take it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseState {
    /// The ticket's id.
    pub ticket_id: String,
    /// The ticket version when it paused.
    pub ticket: Digest,
    /// Its status then.
    pub status: TicketStatus,
    /// Why it stopped here, for people.
    pub reason: String,
    /// The event being processed, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The last run: its journal uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_uid: Option<String>,
    /// The last run's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_record: Option<Digest>,
    /// One to three commands to paste, most urgent first.
    pub actions: Vec<NextAction>,
    /// When it paused (RFC 3339, UTC).
    pub paused_at: String,
}

impl Kind for PauseState {
    const KIND: &'static str = "mechanism.pause-state/v0";
}
