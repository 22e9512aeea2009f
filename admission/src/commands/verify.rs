//! `admission verify DIGEST`: the whole chain checked offline, every check listed.

use std::fmt::Write as _;

use protocol::{ErrorCode, ErrorInfo};

use crate::cli::{Cli, Output, Rendered};
use crate::exit::{self, CommandError};
use crate::verify;

/// Runs every check from `digest`; exit 0 only when all hold, 5 when any fails.
pub fn run(cli: &Cli, out: Output, digest: &str) -> Result<u8, CommandError> {
    let (rendered, failure) = verified(cli, digest)?;
    out.result(&rendered.text, rendered.value);
    Ok(if failure.is_none() {
        0
    } else {
        exit::EXECUTION_FAILED
    })
}

/// What `admission verify DIGEST` prints, rendered but not printed, and the first check that
/// failed, as an error with its code (`None` when every check holds).
pub(crate) fn verified(
    cli: &Cli,
    digest: &str,
) -> Result<(Rendered, Option<ErrorInfo>), CommandError> {
    let digest = super::digest_arg(&cli.store, digest)?;
    let store = super::pipeline::existing_store(cli)?;
    let signers = super::pipeline::read_signers(cli)?;
    let report = verify::verify(&store, &cli.workspace, signers.as_ref(), &digest)
        .map_err(ErrorInfo::from)?;
    let mut text = format!("{} {}\n", report.kind, report.start);
    for check in &report.checks {
        let _ = writeln!(text, "  {check}");
    }
    let verified = report.verified();
    let _ = write!(
        text,
        "\n{}",
        if verified {
            "verified: every check holds"
        } else {
            "NOT verified: see the failed checks above"
        }
    );
    let mut value = serde_json::to_value(&report)
        .map_err(|e| CommandError::internal(ErrorCode::InternalError, e.to_string()))?;
    value["verified"] = verified.into();
    let failure = (!verified).then(|| match report.failures().next() {
        Some(check) => ErrorInfo::new(
            check.code.unwrap_or(ErrorCode::IntegrityMismatch),
            format!("{}: {}", check.name, check.detail),
        ),
        None => ErrorInfo::new(ErrorCode::IntegrityMismatch, "nothing could be checked"),
    });
    Ok((Rendered::new(text, value), failure))
}
