//! G-BUDGET: the plan's estimated costs fit both the workorder's budget and the registry's.
//!
//! Each cost field (`wall_ms`, `bytes_written`, `files_touched`) is compared wherever both
//! the estimate and a bound give it; an estimate the mechanism leaves out is unknown and
//! not compared. The wall-clock bound is enforced anyway: the execute deadline is
//! [`deadline_ms`], the smaller of the two `wall_ms` budgets. Code: `BUDGET_EXCEEDED`.

use protocol::artifact::kinds::{Costs, Gate, GateRecord};
use protocol::ErrorCode;

use super::{decide, Context, GateInput, Problem};

/// The execute deadline in milliseconds: `min(workorder wall_ms, registry wall_ms)`.
pub(super) fn deadline_ms(input: &GateInput<'_>) -> u64 {
    input
        .workorder
        .budget
        .wall_ms
        .min(input.entry.budgets.wall_ms)
}

/// Runs G-BUDGET.
pub(super) fn check(ctx: &Context<'_>) -> GateRecord {
    let input = ctx.input;
    let mut problems = Vec::new();
    let Some(plan) = ctx.plan(&mut problems) else {
        return decide(Gate::Budget, problems, String::new);
    };
    let costs = plan.estimated_costs;
    for (whose, budget) in [
        ("workorder", &input.workorder.budget),
        ("registry", &input.entry.budgets),
    ] {
        let fields = [
            ("wall_ms", costs.wall_ms, Some(budget.wall_ms)),
            ("bytes_written", costs.bytes_written, budget.bytes_written),
            ("files_touched", costs.files_touched, budget.files_touched),
        ];
        for (field, estimate, bound) in fields {
            if let (Some(estimate), Some(bound)) = (estimate, bound) {
                if estimate > bound {
                    problems.push(Problem::new(
                        ErrorCode::BudgetExceeded,
                        format!(
                            "estimated {field} {estimate} exceeds the {whose} budget of {bound}"
                        ),
                    ));
                }
            }
        }
    }
    decide(Gate::Budget, problems, || {
        format!(
            "estimated costs ({}) fit the workorder and registry budgets; execute deadline {} ms",
            describe_costs(&costs),
            deadline_ms(input)
        )
    })
}

/// The estimate for people, e.g. `wall_ms 5, files_touched 2`.
fn describe_costs(costs: &Costs) -> String {
    let listed: Vec<String> = [
        ("wall_ms", costs.wall_ms),
        ("bytes_written", costs.bytes_written),
        ("files_touched", costs.files_touched),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
    .collect();
    if listed.is_empty() {
        "none given".to_owned()
    } else {
        listed.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_listed_for_people() {
        assert_eq!(describe_costs(&Costs::default()), "none given");
        let costs = Costs {
            wall_ms: Some(5),
            bytes_written: None,
            files_touched: Some(2),
        };
        assert_eq!(describe_costs(&costs), "wall_ms 5, files_touched 2");
    }
}
