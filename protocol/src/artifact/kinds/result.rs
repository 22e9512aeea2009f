//! What an execution did: the result artifact and its in-toto witness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::MechanismRef;
use crate::artifact::effect::Effect;
use crate::artifact::{Kind, IN_TOTO_STATEMENT_V1};
use crate::digest::Digest;
use crate::error::ErrorInfo;

/// The in-toto `predicateType` of a result witness.
pub const RESULT_WITNESS_PREDICATE: &str = "https://schemas.mechanism.invalid/v0/result-witness";

/// Whether an execution succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// Every intended effect was applied.
    Success,
    /// The execution failed; `error` says why.
    Failure,
}

/// A ResultArtifact: what executing a plan did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultArtifact {
    /// The plan executed.
    pub plan_hash: Digest,
    /// Success or failure.
    pub status: ResultStatus,
    /// The effects applied, comparable one to one with the plan's intended effects.
    pub effects_applied: Vec<Effect>,
    /// Structured evidence: ids, hashes, diffs.
    pub evidence: Value,
    /// Why it failed (present exactly when `status` is failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl Kind for ResultArtifact {
    const KIND: &'static str = "mechanism.result/v0";
}

/// An in-toto resource descriptor: a name and a digest set (algorithm -> lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// What the artifact is called, e.g. `refs/heads/main`.
    pub name: String,
    /// Its digests, e.g. `{"gitCommit": "<40 hex>"}`.
    pub digest: BTreeMap<String, String>,
}

/// The predicate of a result witness: the chain from plan to result, and the state around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultPredicate {
    /// The plan executed.
    pub plan_hash: Digest,
    /// The AdmissionWitness that admitted it.
    pub admission_hash: Digest,
    /// The force-ack that approved it, for a destructive plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_ack_hash: Option<Digest>,
    /// The ResultArtifact.
    pub result_hash: Digest,
    /// The mechanism that executed it.
    pub mechanism: MechanismRef,
    /// The state before, as facts.
    pub state_before: Value,
    /// The state after, as facts.
    pub state_after: Value,
}

/// A ResultWitness: an in-toto Statement v1 whose subject is what the execution produced.
/// It has exactly the Statement's four fields and no `kind`: in-toto's own parsers refuse
/// unknown fields, and it is recognised by `_type` and `predicateType` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultWitness {
    /// Always [`IN_TOTO_STATEMENT_V1`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the execution produced (for git, the commit under the key `gitCommit`).
    pub subject: Vec<Subject>,
    /// Always [`RESULT_WITNESS_PREDICATE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The links and states.
    pub predicate: ResultPredicate,
}

impl Kind for ResultWitness {
    const KIND: &'static str = "mechanism.result-witness/v0";
}

impl ResultWitness {
    /// A witness with the fixed statement and predicate types filled in.
    pub fn new(subject: Vec<Subject>, predicate: ResultPredicate) -> Self {
        Self {
            statement_type: IN_TOTO_STATEMENT_V1.to_owned(),
            subject,
            predicate_type: RESULT_WITNESS_PREDICATE.to_owned(),
            predicate,
        }
    }
}
