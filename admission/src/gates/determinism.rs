//! G-DET: the plan's determinism level is within the registry's ceiling for the operation,
//! and a D0 plan reproduces.
//!
//! An operation the registry lists no ceiling for is not admitted. A plan is planned twice
//! (by the caller; both at once when the ceiling or the described operation is D0, so the
//! second costs no wall time where a core is free) when the ceiling or the plan's level is
//! D0, and both hashes must be the plan's; a D0 plan that was planned only once is refused,
//! since nothing showed it reproduces.
//!
//! Codes: `CAPABILITY_DENIED` for a level above the ceiling or an operation without one: the
//! registry does not grant the operation at that level, and the remedy is a policy change,
//! not other params (which `INVALID_PARAMS` would suggest). `STALE_PLAN` when the second
//! hash differs or is missing: execute re-plans and compares hashes, so a plan that does not
//! reproduce would be refused as stale there; saying so here is the same verdict, earlier.

use protocol::artifact::kinds::{Determinism, Gate, GateRecord};
use protocol::ErrorCode;

use super::{decide, Context, Problem};

/// Runs G-DET.
pub(super) fn check(ctx: &Context<'_>) -> GateRecord {
    let input = ctx.input;
    let operation = &input.workorder.operation;
    let mut problems = Vec::new();
    let Some(plan) = ctx.plan(&mut problems) else {
        return decide(Gate::Det, problems, String::new);
    };
    let level = plan.determinism;
    let ceiling = input.entry.determinism_ceiling.get(operation).copied();
    match ceiling {
        None => problems.push(Problem::new(
            ErrorCode::CapabilityDenied,
            format!(
                "the registry sets no determinism ceiling for {}.{operation}, so it is not admitted",
                input.entry.id
            ),
        )),
        Some(ceiling) if level > ceiling => problems.push(Problem::new(
            ErrorCode::CapabilityDenied,
            format!("the plan is {level:?}, above the registry ceiling {ceiling:?} for {operation}"),
        )),
        Some(_) => {}
    }

    let must_reproduce = level == Determinism::D0 || ceiling == Some(Determinism::D0);
    if must_reproduce {
        match (ctx.plan_hash(), input.second_plan_hash) {
            (_, None) => problems.push(Problem::new(
                ErrorCode::StalePlan,
                "a D0 plan must be planned twice with the same hash; there is no second hash",
            )),
            (Some(first), Some(second)) if first == second => {}
            (first, Some(second)) => problems.push(Problem::new(
                ErrorCode::StalePlan,
                format!(
                    "planned twice, got {} then {second}: the plan does not reproduce",
                    first.map_or_else(|| "no hash".to_owned(), |d| d.to_string())
                ),
            )),
        }
    }

    decide(Gate::Det, problems, || {
        let ceiling = ceiling.map_or_else(String::new, |c| format!("{c:?}"));
        if must_reproduce {
            format!("{level:?} within ceiling {ceiling}; planned twice, same hash")
        } else {
            format!("{level:?} within ceiling {ceiling}")
        }
    })
}
