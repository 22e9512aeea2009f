//! G-PROVENANCE: every input the plan used has a recorded origin.
//!
//! An input passes when it is a stored object with a provenance sidecar (producer, time,
//! derived-from digests): a blob the admission put, or a snapshot a mechanism stored. The
//! hashed content says nothing about where it came from, so without the sidecar nobody can
//! tell later who supplied what was applied.
//!
//! Codes: `UNKNOWN_ARTIFACT` when the object is absent or has no sidecar (its origin is
//! unknown); otherwise the store's own code (an unreadable sidecar is `INTERNAL_ERROR`).

use protocol::artifact::kinds::{Gate, GateRecord};
use protocol::ErrorCode;

use super::{decide, Context, Problem};

/// Runs G-PROVENANCE.
pub(super) fn check(ctx: &Context<'_>) -> GateRecord {
    let mut problems = Vec::new();
    let Some(plan) = ctx.plan(&mut problems) else {
        return decide(Gate::Provenance, problems, String::new);
    };
    let mut origins = Vec::new();
    for (name, digest) in &plan.inputs {
        match ctx.input.store.provenance(digest) {
            Ok(Some(record)) => origins.push(format!(
                "{name}: {} from {} at {}",
                record.kind, record.producer, record.created_at
            )),
            Ok(None) => problems.push(Problem::new(
                ErrorCode::UnknownArtifact,
                format!("input {name} ({digest}) is stored without a provenance record: its origin is unknown"),
            )),
            Err(e) => problems.push(Problem::new(e.code(), format!("input {name}: {e}"))),
        }
    }
    decide(Gate::Provenance, problems, || {
        if origins.is_empty() {
            "the plan uses no inputs".to_owned()
        } else {
            format!("every input has an origin: {}", origins.join("; "))
        }
    })
}
