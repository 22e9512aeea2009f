//! The plan and the cost witness: what a mechanism would do, and what it would cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{Costs, Determinism, MechanismRef};
use crate::artifact::effect::{Effect, Touch};
use crate::artifact::Kind;
use crate::digest::Digest;

/// A PlanArtifact: exactly what a mechanism would do. It must carry no time, randomness or
/// anything else that differs between two runs on the same inputs and state, so the same
/// request gives the same hash and execute can verify a plan by recomputing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The mechanism that issued it.
    pub mechanism: MechanismRef,
    /// The operation planned.
    pub operation: String,
    /// The operation's params, as requested.
    pub params: Value,
    /// Every blob the plan used, by name.
    pub inputs: BTreeMap<String, Digest>,
    /// The facts of the world the plan was computed against (for git: repository, ref,
    /// base commit); a changed world gives another plan, hence `STALE_PLAN`.
    pub state: Value,
    /// Typed effects, comparable one to one with the result's `effects_applied`.
    pub intended_effects: Vec<Effect>,
    /// Every resource reached, and how.
    pub touches: Vec<Touch>,
    /// Whether this plan needs a force-ack.
    pub destructive: bool,
    /// Why it is destructive, for the operator who approves it.
    pub destructive_reasons: Vec<String>,
    /// How deterministic the operation is.
    pub determinism: Determinism,
    /// What executing it should cost.
    pub estimated_costs: Costs,
    /// The structured steps execute will take.
    pub exec_recipe: Vec<RecipeStep>,
}

impl Kind for Plan {
    const KIND: &'static str = "mechanism.plan/v0";
}

/// One structured step of an execution recipe; never a shell string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeStep {
    /// The step's operation, e.g. `git.write_tree`.
    pub op: String,
    /// Its arguments, as a JSON object.
    pub args: Value,
}

/// A mechanism's declared costs for one plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostWitness {
    /// The plan costed.
    pub plan_hash: Digest,
    /// The costs.
    pub costs: Costs,
    /// How they were arrived at, for people.
    pub basis: String,
}

impl Kind for CostWitness {
    const KIND: &'static str = "mechanism.cost-witness/v0";
}
