//! G-INTEGRITY: the plan is the one its hash names, it is for the request that was made, by
//! the mechanism the registry pins, and every input it used is in the store, intact.
//!
//! Checked, with the code each failure reports:
//! - we hash the plan as received ourselves and compare with `plan_hash`:
//!   `INTEGRITY_MISMATCH`;
//! - the mechanism id in `describe`, in the plan and in the workorder equals the registry
//!   pin: `INTEGRITY_MISMATCH` (another mechanism answered, so nothing it says is about the
//!   pinned one); the version in `describe` and in the plan equals the pinned version:
//!   `UNSUPPORTED_VERSION` (the registry admits that version only);
//! - the plan's operation and params are the workorder's, every workorder input is among
//!   the plan's inputs, and one the workorder names by digest is that digest:
//!   `INTEGRITY_MISMATCH`;
//! - the plan's params, canonically encoded, are at most [`MAX_INLINE_BYTES`]:
//!   `ARTIFACT_REQUIRED` (a payload that big must travel as a stored blob);
//! - every input digest resolves in the store and re-hashes: the store's code,
//!   `UNKNOWN_ARTIFACT` when absent, `INTEGRITY_MISMATCH` when its bytes changed.

use protocol::artifact::kinds::{Gate, GateRecord, MechanismRef, RegistryEntry};
use protocol::canonical;
use protocol::verbs::MAX_INLINE_BYTES;
use protocol::{Digest, ErrorCode};

use super::{decide, Context, Problem};

/// Runs G-INTEGRITY.
pub(super) fn check(ctx: &Context<'_>) -> GateRecord {
    let input = ctx.input;
    let entry = input.entry;
    let mut problems = Vec::new();

    match (&ctx.claimed, &ctx.artifact) {
        (Ok(claimed), Ok(artifact)) if *claimed != artifact.digest() => {
            problems.push(mismatch(format!(
                "plan_hash is {claimed} but the plan as received hashes to {}",
                artifact.digest()
            )));
        }
        (Ok(_), Ok(_)) => {}
        (Err(e), _) | (_, Err(e)) => problems.push(mismatch(e.clone())),
    }

    pin(&mut problems, "describe", &input.described.mechanism, entry);
    if input.workorder.mechanism != entry.id {
        problems.push(mismatch(format!(
            "the workorder is for mechanism {:?}, the registry entry is {:?}",
            input.workorder.mechanism, entry.id
        )));
    }

    let Some(plan) = ctx.plan(&mut problems) else {
        return decide(Gate::Integrity, problems, String::new);
    };
    pin(&mut problems, "the plan", &plan.mechanism, entry);
    if plan.operation != input.workorder.operation {
        problems.push(mismatch(format!(
            "the plan is for operation {:?}, the workorder asks for {:?}",
            plan.operation, input.workorder.operation
        )));
    }
    if plan.params != input.workorder.params {
        problems.push(mismatch(
            "the plan's params differ from the workorder's".to_owned(),
        ));
    }
    // The plan may list more inputs than were given (snapshots the mechanism stored); those
    // are checked below and by G-PROVENANCE like any other.
    for (name, given) in &input.workorder.inputs {
        match (plan.inputs.get(name), given.parse::<Digest>()) {
            (None, _) => problems.push(mismatch(format!(
                "the workorder gives input {name:?}, the plan does not use it"
            ))),
            (Some(used), Ok(given)) if given != *used => problems.push(mismatch(format!(
                "input {name}: the workorder names {given}, the plan used {used}"
            ))),
            // A path input was stored by the caller; its digest is the one planned with.
            (Some(_), _) => {}
        }
    }

    match canonical::to_vec(&plan.params) {
        Ok(bytes) if bytes.len() > MAX_INLINE_BYTES => problems.push(Problem::new(
            ErrorCode::ArtifactRequired,
            format!(
                "the plan's params are {} bytes inline, more than {MAX_INLINE_BYTES}; put the payload in the store and pass its digest",
                bytes.len()
            ),
        )),
        Ok(_) => {}
        Err(e) => problems.push(Problem::new(
            ErrorCode::InvalidParams,
            format!("the plan's params are not I-JSON: {e}"),
        )),
    }

    for (name, digest) in &plan.inputs {
        if let Err(e) = input.store.verify(digest) {
            problems.push(Problem::new(e.code(), format!("input {name}: {e}")));
        }
    }

    decide(Gate::Integrity, problems, || {
        format!(
            "plan hash recomputed, {} resolved and re-hashed, pinned {} {}",
            crate::text::count(plan.inputs.len(), "input", "inputs"),
            entry.id,
            entry.version
        )
    })
}

/// Checks a reported mechanism against the registry pin.
fn pin(problems: &mut Vec<Problem>, whose: &str, reported: &MechanismRef, entry: &RegistryEntry) {
    if reported.id != entry.id {
        problems.push(mismatch(format!(
            "{whose} names mechanism {:?}, the registry pins {:?}",
            reported.id, entry.id
        )));
    } else if reported.version != entry.version {
        problems.push(Problem::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "{whose} reports {} version {}, the registry pins version {}",
                reported.id, reported.version, entry.version
            ),
        ));
    }
}

fn mismatch(reason: String) -> Problem {
    Problem::new(ErrorCode::IntegrityMismatch, reason)
}
