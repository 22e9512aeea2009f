//! The protocol's verbs: method names, and the params and result of each.
//!
//! Artifacts travel in results as plain JSON values (`plan`, `result`, `witness`, ...) so
//! the receiver hashes exactly what was sent; read typed views from them through
//! [`Artifact`](crate::artifact::Artifact).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::kinds::{Determinism, Grant, MechanismRef};
use crate::digest::Digest;
use crate::framing::DEFAULT_MAX_MESSAGE_BYTES;
use crate::jsonrpc::MAX_BATCH_ENTRIES;

/// Method: what the mechanism is and can do.
pub const DESCRIBE: &str = "describe";
/// Method: compute a plan.
pub const PLAN: &str = "plan";
/// Method: declare a plan's costs.
pub const DECLARE_COST: &str = "declare_cost";
/// Method: execute an admitted plan by hash.
pub const EXECUTE: &str = "execute";
/// Method: where a plan's execution stands.
pub const STATUS: &str = "status";
/// Notification, server to client: progress of a running execute.
pub const PROGRESS: &str = "progress";

/// The protocol version this crate speaks: `mechanism/<major>`. Only an incompatible change
/// bumps it; compatible additions ride on unknown fields being allowed.
pub const PROTOCOL_VERSION: &str = "mechanism/0";

/// The largest payload that may travel inline in a request; anything bigger goes into the
/// store and travels by digest.
pub const MAX_INLINE_BYTES: usize = 32 * 1024;

/// The version to speak, given the client's offer (most preferred first): the first offered
/// version this crate speaks; with no offer, [`PROTOCOL_VERSION`]; `None` when nothing
/// matches (answer `UNSUPPORTED_VERSION`).
pub fn choose_version(offered: Option<&[String]>) -> Option<&'static str> {
    match offered {
        None => Some(PROTOCOL_VERSION),
        Some(versions) => versions
            .iter()
            .any(|v| v == PROTOCOL_VERSION)
            .then_some(PROTOCOL_VERSION),
    }
}

/// `describe` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeParams {
    /// The versions the client speaks, most preferred first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_versions: Option<Vec<String>>,
}

/// Whether an operation's plans can be destructive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destructiveness {
    /// Its plans are never destructive.
    Never,
    /// Each plan decides.
    Maybe,
    /// Its plans are always destructive.
    Always,
}

/// Valid params for an operation, for conformance tests and documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The params.
    pub params: Value,
    /// Each input blob's content as UTF-8 text, by name: the client stores it as a blob and
    /// plans with its digest (a digest alone would name a blob the client may not have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, String>>,
}

/// One operation a mechanism offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Its name, e.g. `apply`.
    pub name: String,
    /// What it does, for people.
    pub description: String,
    /// A JSON Schema (draft 2020-12) for its params.
    pub params_schema: Value,
    /// The names of the blob inputs it requires.
    pub inputs: Vec<String>,
    /// The effect types its plans may contain.
    pub effect_types: Vec<String>,
    /// Whether its plans can be destructive.
    pub destructive: Destructiveness,
    /// How deterministic it is.
    pub determinism: Determinism,
    /// At least one example of valid params.
    pub examples: Vec<Example>,
}

/// Bounds the server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The largest message accepted, in bytes.
    pub max_message_bytes: u64,
    /// The largest payload accepted inline, in bytes.
    pub max_inline_bytes: u64,
    /// The most entries a batch may hold, when the server declares a bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_entries: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        // usize -> u64 cannot lose anything on the platforms Rust supports.
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES as u64,
            max_inline_bytes: MAX_INLINE_BYTES as u64,
            max_batch_entries: Some(MAX_BATCH_ENTRIES as u64),
        }
    }
}

/// `describe` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeResult {
    /// The protocol version chosen.
    pub protocol_version: String,
    /// The mechanism's id and version.
    pub mechanism: MechanismRef,
    /// Its operations.
    pub operations: Vec<Operation>,
    /// Everything it may ever touch, as capability + resource globs.
    pub capability_scope: Vec<Grant>,
    /// Its bounds.
    pub limits: Limits,
}

/// `plan` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanParams {
    /// The operation.
    pub operation: String,
    /// Its params.
    pub params: Value,
    /// Named input blobs, by digest (put into the store first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Digest>,
}

/// `plan` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanResult {
    /// The digest of `plan`.
    pub plan_hash: Digest,
    /// The PlanArtifact, exactly as hashed.
    pub plan: Value,
    /// A preview for people (a diff for git); not part of the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// `declare_cost` params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclareCostParams {
    /// The plan to cost.
    pub plan_hash: Digest,
}

/// `declare_cost` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclareCostResult {
    /// The CostWitness artifact.
    pub cost_witness: Value,
    /// Its digest.
    pub cost_witness_hash: Digest,
}

/// `execute` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteParams {
    /// The plan to execute.
    pub plan_hash: Digest,
    /// The digest of the AdmissionWitness that admitted it, in the store.
    pub admission: Digest,
    /// The signed force-ack artifact, inline; required for a destructive plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_ack: Option<Value>,
    /// How long the client waits, in milliseconds from receipt: the server refuses with
    /// `DEADLINE_EXCEEDED` before its point of no return when it cannot finish in time, and
    /// past that point finishes and records whatever the clock says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// `execute` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteResult {
    /// The ResultArtifact.
    pub result: Value,
    /// Its digest.
    pub result_hash: Digest,
    /// The ResultWitness.
    pub witness: Value,
    /// Its digest.
    pub witness_hash: Digest,
}

/// `status` params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusParams {
    /// The plan asked about.
    pub plan_hash: Digest,
}

/// Where a plan's execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanState {
    /// Known, not executed.
    Planned,
    /// Executing now.
    Running,
    /// Executed successfully; `result_hash` names the result.
    Succeeded,
    /// The last execution failed.
    Failed,
}

/// Progress of a running execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What is happening, for people.
    pub message: String,
}

/// `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    /// The state.
    pub state: PlanState,
    /// The last result, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_hash: Option<Digest>,
    /// Progress, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// `progress` notification params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressParams {
    /// The plan being executed.
    pub plan_hash: Digest,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What is happening, for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_picks_ours_or_refuses() {
        assert_eq!(choose_version(None), Some(PROTOCOL_VERSION));
        let offer = vec!["mechanism/9".to_owned(), PROTOCOL_VERSION.to_owned()];
        assert_eq!(choose_version(Some(&offer)), Some(PROTOCOL_VERSION));
        assert_eq!(choose_version(Some(&["mechanism/9".to_owned()])), None);
        assert_eq!(choose_version(Some(&[])), None);
    }

    #[test]
    fn optional_fields_stay_out_of_the_json() {
        let params = PlanParams {
            operation: "apply".into(),
            params: serde_json::json!({}),
            inputs: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            serde_json::json!({"operation": "apply", "params": {}})
        );
        let status = StatusResult {
            state: PlanState::Planned,
            result_hash: None,
            progress: None,
        };
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!({"state": "planned"})
        );
    }
}
