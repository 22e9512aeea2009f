//! `admission conformance -- COMMAND`: every check of a mechanism, one row each.

use protocol::ErrorCode;

use crate::cli::{ConformanceArgs, Output};
use crate::conformance::{self, Options, Target};
use crate::exit::{self, CommandError};

/// Runs the harness; exit 0 when no check fails, 5 when any does.
pub fn run(out: Output, args: &ConformanceArgs) -> Result<u8, CommandError> {
    let (program, rest) = args.command.split_first().ok_or_else(|| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            "give the mechanism's command after --",
        )
    })?;
    let target = Target {
        program: program.clone(),
        args: rest.to_vec(),
    };
    let options = Options {
        seed: args.seed.clone(),
        timeout: args.timeout,
        kill_seed: args.kill_seed,
    };
    let report = conformance::check(&target, &options)
        .map_err(|e| CommandError::bad_input(ErrorCode::InvalidParams, e.to_string()))?;
    let passed = report.failures().next().is_none();
    let mut value = serde_json::to_value(&report)
        .map_err(|e| CommandError::internal(ErrorCode::InternalError, e.to_string()))?;
    value["conformant"] = passed.into();
    out.result(&report.to_text(), value);
    Ok(if passed { 0 } else { exit::EXECUTION_FAILED })
}
