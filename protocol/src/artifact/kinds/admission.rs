//! The admission's records about a plan: the gate decisions, and an operator's force-ack.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{GateDecision, MechanismRef};
use crate::artifact::Kind;
use crate::digest::Digest;
use crate::error::ErrorCode;

/// One admission gate, in the order the pipeline runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Gate {
    /// Describe, plan response, artifact and params validate against their schemas.
    #[serde(rename = "G-SCHEMA")]
    Schema,
    /// Hashes recompute, inputs resolve and re-hash, nothing oversized travels inline, the
    /// mechanism matches its registry pin.
    #[serde(rename = "G-INTEGRITY")]
    Integrity,
    /// Every touch and effect lies inside the grants and the declared scope.
    #[serde(rename = "G-CAP")]
    Cap,
    /// Estimated costs fit the workorder's and the registry's budgets.
    #[serde(rename = "G-BUDGET")]
    Budget,
    /// Every input has an origin.
    #[serde(rename = "G-PROVENANCE")]
    Provenance,
    /// The determinism level is within the registry ceiling; D0 plans reproduce.
    #[serde(rename = "G-DET")]
    Det,
}

impl Gate {
    /// Every gate, in pipeline order.
    pub const ALL: [Gate; 6] = [
        Gate::Schema,
        Gate::Integrity,
        Gate::Cap,
        Gate::Budget,
        Gate::Provenance,
        Gate::Det,
    ];

    /// The gate's name as written in witnesses, e.g. `G-SCHEMA`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Gate::Schema => "G-SCHEMA",
            Gate::Integrity => "G-INTEGRITY",
            Gate::Cap => "G-CAP",
            Gate::Budget => "G-BUDGET",
            Gate::Provenance => "G-PROVENANCE",
            Gate::Det => "G-DET",
        }
    }
}

/// One gate's decision on a plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GateRecord {
    /// Which gate.
    pub gate: Gate,
    /// PASS or FAIL.
    pub decision: GateDecision,
    /// The error code of a failure (required by the schema when FAIL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Why, for people.
    pub reason: String,
}

/// The overall admission decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AdmissionDecision {
    /// Every gate passed.
    Admit,
    /// At least one gate failed.
    Deny,
}

/// Every gate's decision on one plan, written down whether it admits or denies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmissionWitness {
    /// The plan judged.
    pub plan_hash: Digest,
    /// The mechanism that issued it, as pinned.
    pub mechanism: MechanismRef,
    /// The digest of the policy (registry entry, budgets, signers) the gates applied.
    pub policy_digest: Digest,
    /// Each gate's decision, every gate exactly once.
    pub gates: Vec<GateRecord>,
    /// ADMIT or DENY.
    pub decision: AdmissionDecision,
    /// Whether execute needs a force-ack (the plan is destructive).
    pub force_ack_required: bool,
    /// The workorder that asked for the plan, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workorder: Option<Digest>,
}

impl Kind for AdmissionWitness {
    const KIND: &'static str = "mechanism.admission-witness/v0";
}

/// An operator's consent to execute one destructive plan, once. Signing and verification
/// live in [`crate::force_ack`]; this is its shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForceAck {
    /// The plan approved.
    pub plan_hash: Digest,
    /// The AdmissionWitness that admitted it.
    pub admission_hash: Digest,
    /// The signer's principal, as in `allowed_signers`.
    pub approver: String,
    /// When the approval lapses: RFC 3339 in UTC, e.g. `2026-11-22T18:00:00Z`.
    pub expires_at: String,
    /// 32 lowercase hex digits, claimed once in the store.
    pub nonce: String,
    /// The armored SSH signature over [`ForceAck::signed_payload`]'s canonical bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Kind for ForceAck {
    const KIND: &'static str = "mechanism.force-ack/v0";
}

impl ForceAck {
    /// The object whose canonical bytes are signed: the force-ack as received, without
    /// `signature`. Works on the raw value so that no received field is dropped from what
    /// the signature must cover.
    pub fn signed_payload(force_ack: &Value) -> Value {
        let mut payload = force_ack.clone();
        if let Value::Object(map) = &mut payload {
            map.remove("signature");
        }
        payload
    }
}
