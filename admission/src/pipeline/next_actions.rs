//! The next actions of a run: one to three commands to paste, shaped by its outcome.

use protocol::artifact::kinds::{NextAction, RunOutcome};

use super::{Invocation, Report};

/// One to three commands to paste, most useful first.
pub(super) fn next_actions(report: &Report, inv: &Invocation) -> Vec<NextAction> {
    let g = if inv.global_flags.is_empty() {
        String::new()
    } else {
        format!(" {}", inv.global_flags)
    };
    let workorder = inv.workorder.as_deref().unwrap_or("WORKORDER");
    let action = |priority: u8, command: String, why: &str| NextAction {
        priority,
        command,
        why: why.to_owned(),
    };
    let mut actions = Vec::new();
    match report.outcome {
        Some(RunOutcome::Succeeded) => {
            if let Some(witness) = report.witness_hash {
                actions.push(action(
                    1,
                    format!("admission{g} verify {witness}"),
                    "check the whole chain offline, from the witness to the commit",
                ));
            }
            actions.push(action(
                2,
                format!("admission{g} show {}", report.uid),
                "read the run as recorded",
            ));
        }
        Some(RunOutcome::Admitted) => {
            if let Some(plan) = report.plan_hash {
                actions.push(action(
                    1,
                    format!("admission{g} execute {plan}"),
                    "execute the admitted plan by its hash",
                ));
            }
            actions.push(action(
                2,
                format!("admission{g} show {}", report.uid),
                "read the plan and the gate decisions",
            ));
        }
        Some(RunOutcome::AwaitingForceAck) => {
            if let Some(plan) = report.plan_hash {
                actions.push(action(
                    1,
                    approve(&g, &plan),
                    "an operator approves this exact destructive plan; the approval is recorded in the store",
                ));
                actions.push(action(
                    2,
                    execute_approved(&g, &plan, inv),
                    "execute it with the approval recorded in the store",
                ));
            }
            actions.push(action(
                3,
                format!("admission{g} show {}", report.uid),
                "read why it is destructive",
            ));
        }
        Some(RunOutcome::Denied) if report.force_ack_refused() => {
            if let Some(plan) = report.plan_hash {
                actions.push(action(
                    1,
                    approve(&g, &plan),
                    "the force-ack was refused (see the error): an operator approves the plan again; the approval is recorded in the store",
                ));
                actions.push(action(
                    2,
                    execute_approved(&g, &plan, inv),
                    "execute it with the fresh approval recorded in the store",
                ));
            }
            actions.push(action(
                3,
                format!("admission{g} show {}", report.uid),
                "read why it is destructive",
            ));
        }
        Some(RunOutcome::Denied) => {
            let what = report
                .admission_hash
                .map_or_else(|| report.uid.clone(), |a| a.to_string());
            actions.push(action(
                1,
                format!("admission{g} show {what}"),
                "read every gate's decision and reason",
            ));
            actions.push(action(
                2,
                format!("admission{g} run {workorder}"),
                "run again after fixing the workorder or the registry",
            ));
        }
        Some(RunOutcome::Stale) => {
            actions.push(action(
                1,
                format!("admission{g} run {workorder}"),
                "the world changed since planning: plan again",
            ));
            actions.push(action(
                2,
                format!("admission{g} show {}", report.uid),
                "read what was planned",
            ));
        }
        _ => {
            actions.push(action(
                1,
                format!("admission{g} show {}", report.uid),
                "read what happened, step by step",
            ));
            if let (Some(plan), Some(_)) = (report.plan_hash, report.admission_hash) {
                // A recorded approval is found again; a force-ack given as a file must be.
                let ack = if report.force_ack_hash.is_some() && !report.approval_recorded {
                    " --force-ack force-ack.json"
                } else {
                    ""
                };
                actions.push(action(
                    2,
                    format!("admission{g} execute {plan}{ack}"),
                    "execute the admitted plan again: an execution cut short is finished, not repeated",
                ));
            }
            if let Some(result) = report.result_hash {
                actions.push(action(
                    2,
                    format!("admission{g} verify {result}"),
                    "check what the failed execution left",
                ));
            }
            actions.push(action(
                3,
                format!("admission{g} run {workorder}"),
                "try again once the cause is fixed",
            ));
        }
    }
    actions.truncate(3);
    actions
}

/// `admission approve` of `plan`, with the key and principal to fill in; it records the
/// approval in the store.
fn approve(g: &str, plan: &protocol::Digest) -> String {
    format!("admission{g} approve {plan} --key ~/.ssh/id_ed25519 --approver YOU@EXAMPLE.COM")
}

/// `admission execute` of `plan`, which uses the approval `approve` recorded, naming the
/// trusted signers to fill in when none were given: without them no force-ack is accepted.
fn execute_approved(g: &str, plan: &protocol::Digest, inv: &Invocation) -> String {
    let signers = if inv.signers_given {
        ""
    } else {
        " --allowed-signers ALLOWED_SIGNERS"
    };
    format!("admission{g} execute {plan}{signers}")
}

#[cfg(test)]
mod tests {
    use protocol::artifact::kinds::RunOutcome;
    use protocol::Digest;

    use super::{next_actions, Invocation, Report};

    fn commands(report: &Report, signers_given: bool) -> Vec<String> {
        let inv = Invocation {
            signers_given,
            ..Invocation::default()
        };
        next_actions(report, &inv)
            .into_iter()
            .map(|a| a.command)
            .collect()
    }

    #[test]
    fn a_paused_plan_is_approved_into_the_store_then_executed_by_its_hash() {
        let plan = Digest::of_bytes(b"plan");
        let report = Report {
            outcome: Some(RunOutcome::AwaitingForceAck),
            plan_hash: Some(plan),
            ..Report::default()
        };
        let with = commands(&report, true);
        assert_eq!(
            with[..2],
            [
                format!(
                    "admission approve {plan} --key ~/.ssh/id_ed25519 --approver YOU@EXAMPLE.COM"
                ),
                format!("admission execute {plan}"),
            ]
        );
        let without = commands(&report, false);
        assert_eq!(
            without[1],
            format!("admission execute {plan} --allowed-signers ALLOWED_SIGNERS")
        );
    }

    #[test]
    fn a_failed_execution_is_retried_with_the_file_only_when_its_force_ack_was_one() {
        let plan = Digest::of_bytes(b"plan");
        let mut report = Report {
            outcome: Some(RunOutcome::Failed),
            plan_hash: Some(plan),
            admission_hash: Some(Digest::of_bytes(b"admission")),
            force_ack_hash: Some(Digest::of_bytes(b"force-ack")),
            ..Report::default()
        };
        let retry = |report: &Report| {
            commands(report, true)
                .into_iter()
                .find(|c| c.contains(" execute "))
        };
        assert_eq!(
            retry(&report),
            Some(format!(
                "admission execute {plan} --force-ack force-ack.json"
            ))
        );
        report.approval_recorded = true;
        assert_eq!(retry(&report), Some(format!("admission execute {plan}")));
    }
}
