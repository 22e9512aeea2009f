//! `admission verify DIGEST`: the whole chain checked offline, every check listed.

use std::fmt::Write as _;

use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::store::Store;
use protocol::{Digest, ErrorCode};

use crate::cli::{Cli, Output};
use crate::exit::{self, CommandError};
use crate::verify;

/// Runs every check from `digest`; exit 0 only when all hold, 5 when any fails.
pub fn run(cli: &Cli, out: Output, digest: &str) -> Result<u8, CommandError> {
    let digest: Digest = digest.parse().map_err(|e| {
        CommandError::bad_input(Some(ErrorCode::InvalidParams), format!("{digest:?}: {e}"))
    })?;
    if !cli.store.is_dir() {
        return Err(CommandError::bad_input(
            Some(ErrorCode::UnknownArtifact),
            format!("there is no store at {}", cli.store.display()),
        ));
    }
    let store = Store::open(&cli.store)
        .map_err(|e| CommandError::internal(Some(e.code()), e.to_string()))?;
    let signers = match &cli.allowed_signers {
        Some(path) => Some(AllowedSigners::read(path).map_err(|e| {
            CommandError::bad_input(
                Some(ErrorCode::InvalidParams),
                format!("--allowed-signers {}: {e}", path.display()),
            )
        })?),
        None => None,
    };
    let report = verify::verify(&store, &cli.workspace, signers.as_ref(), &digest)
        .map_err(|e| CommandError::from_code(e.code(), e.to_string()))?;
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
    let mut value =
        serde_json::to_value(&report).map_err(|e| CommandError::internal(None, e.to_string()))?;
    value["verified"] = verified.into();
    out.result(&text, value);
    Ok(if verified { 0 } else { exit::EXECUTION_FAILED })
}
