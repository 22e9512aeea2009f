//! The gate pipeline: six checks over one plan, each in its own module, whose decisions make
//! the AdmissionWitness.
//!
//! [`run`] always runs every gate, in [`Gate::ALL`] order, whatever an earlier gate decided:
//! the witness records every reason a plan is refused, not just the first. Gates do no
//! process I/O (the caller has already called `describe` and `plan`, twice for D0
//! operations); the only I/O is reading the object store, so each gate is unit-testable.
//! A gate that cannot check something (say, the plan does not parse) fails rather than
//! passes: admission is fail-closed.
//!
//! Each gate reports its first problem's code and lists up to [`MAX_LISTED`] reasons. The
//! codes each gate uses are documented in its module.

use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, Determinism, Gate, GateDecision, GateRecord, MechanismRef,
    Plan, RegistryEntry, Workorder,
};
use protocol::artifact::Artifact;
use protocol::store::{Store, StoreLocation};
use protocol::verbs::{DescribeResult, Operation};
use protocol::{Digest, ErrorCode};
use serde_json::Value;

mod budget;
pub mod capability;
mod determinism;
mod integrity;
mod provenance;
mod schema;

pub use capability::{GlobError, ResourceGlob};

/// At most this many reasons are listed in one gate record; the rest are counted.
pub const MAX_LISTED: usize = 8;

/// Everything the gates judge, already fetched by the caller.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// The registry's pin, grants, budgets and ceilings for the mechanism.
    pub entry: &'a RegistryEntry,
    /// The digest of the registry the entry comes from ([`crate::registry::Registry::policy_digest`]).
    pub policy_digest: Digest,
    /// The `describe` result as received.
    pub describe: &'a Value,
    /// The same result, parsed.
    pub described: &'a DescribeResult,
    /// The `plan` result as received: `{plan_hash, plan, preview}`.
    pub plan_response: &'a Value,
    /// The workorder that asked for the plan.
    pub workorder: &'a Workorder,
    /// The workorder artifact's digest.
    pub workorder_digest: Digest,
    /// The object store holding the plan's inputs.
    pub store: &'a Store,
    /// Where that store lies inside the workspace, if it does: G-CAP denies any change to it.
    pub store_location: Option<&'a StoreLocation>,
    /// The hash a second `plan` call gave, when the caller planned twice (required for D0;
    /// see [`requires_second_plan`]).
    pub second_plan_hash: Option<Digest>,
}

/// What the pipeline decided.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOutcome {
    /// Every gate's record, in pipeline order.
    pub records: Vec<GateRecord>,
    /// The witness to store; `None` only when the plan response names no plan at all (no
    /// valid `plan_hash` and no hashable `plan`), so there is nothing to witness.
    pub witness: Option<AdmissionWitness>,
    /// The execute deadline: the smaller of the workorder's and the registry's `wall_ms`.
    pub deadline_ms: u64,
}

impl GateOutcome {
    /// Whether every gate passed.
    pub fn admitted(&self) -> bool {
        self.records
            .iter()
            .all(|r| r.decision == GateDecision::Pass)
    }

    /// The records that failed.
    pub fn failures(&self) -> impl Iterator<Item = &GateRecord> {
        self.records
            .iter()
            .filter(|r| r.decision == GateDecision::Fail)
    }
}

/// Runs all six gates and builds the AdmissionWitness.
pub fn run(input: &GateInput<'_>) -> GateOutcome {
    let ctx = Context::new(input);
    let records: Vec<GateRecord> = Gate::ALL
        .iter()
        .map(|gate| match gate {
            Gate::Schema => schema::check(&ctx),
            Gate::Integrity => integrity::check(&ctx),
            Gate::Cap => capability::check(&ctx),
            Gate::Budget => budget::check(&ctx),
            Gate::Provenance => provenance::check(&ctx),
            Gate::Det => determinism::check(&ctx),
        })
        .collect();
    let admitted = records.iter().all(|r| r.decision == GateDecision::Pass);
    let witness = ctx.plan_hash().map(|plan_hash| AdmissionWitness {
        plan_hash,
        mechanism: MechanismRef {
            id: input.entry.id.clone(),
            version: input.entry.version.clone(),
        },
        policy_digest: input.policy_digest,
        gates: records.clone(),
        decision: if admitted {
            AdmissionDecision::Admit
        } else {
            AdmissionDecision::Deny
        },
        // An unreadable plan is denied anyway; saying a force-ack is needed errs safe.
        force_ack_required: ctx.plan.as_ref().map_or(true, |plan| plan.destructive),
        workorder: Some(input.workorder_digest),
    });
    GateOutcome {
        records,
        witness,
        deadline_ms: budget::deadline_ms(input),
    }
}

/// Whether the caller must plan a second time for G-DET: when the registry's ceiling for
/// the operation is D0, or the plan claims D0 (or says nothing readable about it).
pub fn requires_second_plan(entry: &RegistryEntry, operation: &str, plan: &Value) -> bool {
    let claimed = plan
        .get("determinism")
        .cloned()
        .and_then(|level| serde_json::from_value::<Determinism>(level).ok());
    entry.determinism_ceiling.get(operation) == Some(&Determinism::D0)
        || claimed.is_none_or(|level| level == Determinism::D0)
}

/// Whether G-DET will need a second plan whatever the first says: the registry's ceiling
/// for the operation is D0, or the mechanism describes the operation as D0. The caller can
/// then ask for both plans at once. When this is false, [`requires_second_plan`] on the
/// first plan still decides.
pub fn second_plan_foreseen(
    entry: &RegistryEntry,
    described: &DescribeResult,
    operation: &str,
) -> bool {
    entry.determinism_ceiling.get(operation) == Some(&Determinism::D0)
        || described
            .operations
            .iter()
            .any(|op| op.name == operation && op.determinism == Determinism::D0)
}

/// One thing a gate found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    code: ErrorCode,
    reason: String,
}

impl Problem {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// A gate's record: PASS with `passed()` as the reason when nothing was found, else FAIL
/// with the first problem's code and the reasons listed.
fn decide(gate: Gate, problems: Vec<Problem>, passed: impl FnOnce() -> String) -> GateRecord {
    let Some(first) = problems.first() else {
        return GateRecord {
            gate,
            decision: GateDecision::Pass,
            code: None,
            reason: passed(),
        };
    };
    let mut reason = problems
        .iter()
        .take(MAX_LISTED)
        .map(|p| p.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_LISTED {
        reason.push_str(&format!(" (and {} more)", problems.len() - MAX_LISTED));
    }
    GateRecord {
        gate,
        decision: GateDecision::Fail,
        code: Some(first.code),
        reason,
    }
}

/// The input, with the plan response read once for every gate.
struct Context<'a> {
    input: &'a GateInput<'a>,
    /// The `plan_hash` the mechanism sent.
    claimed: Result<Digest, String>,
    /// The `plan` as received, as an artifact (its digest computed by us).
    artifact: Result<Artifact, String>,
    /// Its typed view.
    plan: Result<Plan, String>,
}

impl<'a> Context<'a> {
    fn new(input: &'a GateInput<'a>) -> Self {
        let claimed = match input.plan_response.get("plan_hash") {
            Some(Value::String(text)) => text
                .parse::<Digest>()
                .map_err(|e| format!("plan_hash {text:?} is not a digest: {e}")),
            Some(_) => Err("plan_hash is not a string".to_owned()),
            None => Err("the plan response has no plan_hash".to_owned()),
        };
        let artifact = match input.plan_response.get("plan") {
            Some(value) => Artifact::from_value(value.clone())
                .map_err(|e| format!("the plan is not an artifact: {e}")),
            None => Err("the plan response has no plan".to_owned()),
        };
        let plan = match &artifact {
            Ok(artifact) => artifact
                .view::<Plan>()
                .map_err(|e| format!("the plan does not read as a plan: {e}")),
            Err(e) => Err(e.clone()),
        };
        Self {
            input,
            claimed,
            artifact,
            plan,
        }
    }

    /// The typed plan, or a problem saying there is none to check (G-SCHEMA says why).
    fn plan(&self, problems: &mut Vec<Problem>) -> Option<&Plan> {
        match &self.plan {
            Ok(plan) => Some(plan),
            Err(e) => {
                problems.push(Problem::new(
                    ErrorCode::InvalidParams,
                    format!("no plan to check: {e}"),
                ));
                None
            }
        }
    }

    /// The hash the plan is known by: the one the mechanism sent (execute goes by it), else
    /// the one we compute.
    fn plan_hash(&self) -> Option<Digest> {
        self.claimed
            .as_ref()
            .ok()
            .copied()
            .or_else(|| self.artifact.as_ref().ok().map(Artifact::digest))
    }

    /// The described operation the workorder asks for.
    fn operation(&self) -> Option<&'a Operation> {
        self.input
            .described
            .operations
            .iter()
            .find(|op| op.name == self.input.workorder.operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_lists_its_first_problems_and_reports_the_first_code() {
        let problems: Vec<Problem> = (0..MAX_LISTED + 3)
            .map(|i| {
                let code = if i == 0 {
                    ErrorCode::UnknownArtifact
                } else {
                    ErrorCode::IntegrityMismatch
                };
                Problem::new(code, format!("p{i}"))
            })
            .collect();
        let record = decide(Gate::Integrity, problems, || unreachable!());
        assert_eq!(record.decision, GateDecision::Fail);
        assert_eq!(record.code, Some(ErrorCode::UnknownArtifact));
        assert!(record.reason.starts_with("p0; p1"), "{}", record.reason);
        assert!(record.reason.ends_with("(and 3 more)"), "{}", record.reason);

        let record = decide(Gate::Det, Vec::new(), || "fine".into());
        assert_eq!(record.decision, GateDecision::Pass);
        assert_eq!(record.code, None);
        assert_eq!(record.reason, "fine");
    }
}
