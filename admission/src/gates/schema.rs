//! G-SCHEMA: what the mechanism sent has the shapes `protocol/schemas/` defines, and the
//! workorder's params fit the operation's declared params schema.
//!
//! Checked: the `describe` result and the `plan` result as received (the plan result's
//! schema refers to the plan artifact's, so the artifact is validated there, once); that the
//! plan is a strict I-JSON artifact and reads as a `mechanism.plan/v0`, which a schema
//! cannot say; that the operation exists; that the params validate against its
//! `params_schema`; and that every input it requires is given.
//!
//! Codes: `UNKNOWN_OPERATION` when the mechanism does not describe the operation,
//! `ARTIFACT_REQUIRED` when a required input is missing, otherwise the schema error's own
//! code (`INVALID_PARAMS`; `INTERNAL_ERROR` only if this build's schemas do not compile).

use protocol::artifact::kinds::{Gate, GateRecord};
use protocol::schema::{self, SchemaName};
use protocol::ErrorCode;

use super::{decide, Context, Problem};

/// Runs G-SCHEMA.
pub(super) fn check(ctx: &Context<'_>) -> GateRecord {
    let input = ctx.input;
    let mut problems = Vec::new();
    if let Err(e) = schema::validate(SchemaName::DescribeResult, input.describe) {
        problems.push(Problem::new(e.code(), format!("describe result {e}")));
    }
    if let Err(e) = schema::validate(SchemaName::PlanResult, input.plan_response) {
        problems.push(Problem::new(e.code(), format!("plan result {e}")));
    }
    if let Err(e) = &ctx.plan {
        problems.push(Problem::new(ErrorCode::InvalidParams, e.clone()));
    }

    let operation = &input.workorder.operation;
    match ctx.operation() {
        None => {
            let offered: Vec<&str> = input
                .described
                .operations
                .iter()
                .map(|op| op.name.as_str())
                .collect();
            problems.push(Problem::new(
                ErrorCode::UnknownOperation,
                format!(
                    "mechanism {} has no operation {operation:?} (it offers: {})",
                    input.described.mechanism.id,
                    offered.join(", ")
                ),
            ));
        }
        Some(op) => {
            match schema::compile(&op.params_schema) {
                Ok(validator) => {
                    if let Err(e) = validator.validate(&input.workorder.params) {
                        problems.push(Problem::new(
                            e.code(),
                            format!("params of {operation}: {e}"),
                        ));
                    }
                }
                Err(e) => problems.push(Problem::new(
                    e.code(),
                    format!("the declared params schema of {operation}: {e}"),
                )),
            }
            for name in &op.inputs {
                if !input.workorder.inputs.contains_key(name) {
                    problems.push(Problem::new(
                        ErrorCode::ArtifactRequired,
                        format!("{operation} requires input {name:?}, which the workorder does not give"),
                    ));
                }
            }
        }
    }

    decide(Gate::Schema, problems, || {
        format!(
            "describe, the plan result, the plan artifact and the params of {operation} validate"
        )
    })
}
