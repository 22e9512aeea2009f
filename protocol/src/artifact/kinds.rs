//! Typed views of every artifact kind.
//!
//! Each view is a plain struct implementing [`Kind`]; its `kind` string is not a field:
//! [`Artifact::from_typed`](crate::artifact::Artifact::from_typed) inserts it and
//! [`Artifact::view`](crate::artifact::Artifact::view) checks it. The exception is an in-toto
//! statement (the ResultWitness), which names its kind by `predicateType`: see
//! [`PREDICATE_KINDS`]. The views deliberately accept unknown fields, so a newer producer's
//! artifact still reads; the JSON Schemas in this crate's `schemas/` decide what is required
//! and how strict each field is.

use crate::artifact::Kind;

mod admission;
mod common;
mod plan;
mod records;
mod result;
mod tickets;

pub use crate::artifact::IN_TOTO_STATEMENT_V1;
pub use crate::error::ErrorInfo;
pub use admission::{AdmissionDecision, AdmissionWitness, ForceAck, Gate, GateRecord};
pub use common::{Budget, Costs, Determinism, GateDecision, Grant, MechanismRef};
pub use plan::{CostWitness, Plan, RecipeStep};
pub use records::{
    Command, ExecStatus, ExecStep, ExecutionDocument, NextAction, NextActions, NextActionsRef,
    Registry, RegistryEntry, RunOutcome, RunRecord, Workorder,
};
pub use result::{
    ResultArtifact, ResultPredicate, ResultStatus, ResultWitness, Subject, RESULT_WITNESS_PREDICATE,
};
pub use tickets::{
    Blocker, ContextSnapshot, Event, EventOutcome, EventResolution, EventType, OutputBundle,
    PauseState, Ticket, TicketResolution, TicketStatus, TicketWork,
};

/// Every artifact kind this version of the protocol defines.
pub const ALL_KINDS: &[&str] = &[
    Plan::KIND,
    CostWitness::KIND,
    AdmissionWitness::KIND,
    ForceAck::KIND,
    ResultArtifact::KIND,
    ResultWitness::KIND,
    Workorder::KIND,
    RunRecord::KIND,
    NextActions::KIND,
    Registry::KIND,
    ExecutionDocument::KIND,
    Ticket::KIND,
    Event::KIND,
    ContextSnapshot::KIND,
    OutputBundle::KIND,
    PauseState::KIND,
];

/// The in-toto predicate types this version defines, each with the kind a Statement v1 of that
/// `predicateType` is: such artifacts carry no `kind` field.
pub const PREDICATE_KINDS: &[(&str, &str)] = &[(RESULT_WITNESS_PREDICATE, ResultWitness::KIND)];
