//! Recorded approvals: `admission approve` stores the force-ack it made and names it under
//! `approvals/<plan hex>`, so that `execute PLAN` (from the CLI or any other client of the
//! pipeline) finds it without the force-ack file being passed around.

use protocol::artifact::Artifact;
use protocol::store::{Provenance, Store};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use super::{journal_step, ApprovalRecord, Flow, Report, APPROVALS};
use crate::journal::ExecHandle;

/// Stores a signed force-ack and records it as the latest approval of its plan, replacing
/// any earlier one; returns the force-ack's digest.
pub fn record_approval(store: &Store, force_ack: &Value) -> Result<Digest, ErrorInfo> {
    let text = |name: &str| {
        force_ack.get(name).and_then(Value::as_str).ok_or_else(|| {
            ErrorInfo::new(
                ErrorCode::ForceAckInvalid,
                format!("the force-ack has no {name:?} to record it by"),
            )
        })
    };
    let digest = |name: &str| {
        text(name)?.parse::<Digest>().map_err(|e| {
            ErrorInfo::new(
                ErrorCode::ForceAckInvalid,
                format!("the force-ack's {name:?}: {e}"),
            )
        })
    };
    let plan = digest("plan_hash")?;
    let admission = digest("admission_hash")?;
    let approver = text("approver")?.to_owned();
    let expires_at = text("expires_at")?.to_owned();
    let artifact = Artifact::from_value(force_ack.clone())
        .map_err(|e| ErrorInfo::new(ErrorCode::ForceAckInvalid, e.to_string()))?;
    let provenance = Provenance::new("admission approve").with_derived_from([plan]);
    let stored = store
        .put_artifact(&artifact, &provenance)
        .map_err(ErrorInfo::from)?;
    let record = ApprovalRecord {
        force_ack: stored,
        approver,
        expires_at,
        admission,
    };
    store
        .set_ref(APPROVALS, &plan.hex(), &record)
        .map_err(ErrorInfo::from)?;
    Ok(stored)
}

impl Flow<'_> {
    /// The force-ack recorded for `plan`, read and checked against its digest, or `None` when
    /// no approval was recorded. Its use is journaled; every check of a force-ack still
    /// applies to it, as to one given.
    pub(super) fn recorded_approval(
        &self,
        plan: &Digest,
        report: &mut Report,
        exec: &mut ExecHandle,
    ) -> Result<Option<Value>, ErrorInfo> {
        let reference = format!("{APPROVALS}/{}", plan.hex());
        let record: Option<ApprovalRecord> = self
            .setup
            .store
            .get_ref(APPROVALS, &plan.hex())
            .map_err(|e| {
                ErrorInfo::from(e).context(format!("the recorded approval {reference}"))
            })?;
        let Some(record) = record else {
            return Ok(None);
        };
        let force_ack = self
            .setup
            .store
            .get_artifact(&record.force_ack)
            .map_err(|e| {
                ErrorInfo::from(e).context(format!(
                    "the force-ack {} of the recorded approval {reference}; approve the plan \
                     again",
                    record.force_ack
                ))
            })?;
        report.approval_recorded = true;
        let _ = journal_step(
            exec,
            "approval",
            json!({
                "ref": reference,
                "force_ack": record.force_ack,
                "approver": record.approver,
                "expires_at": record.expires_at,
            }),
        );
        Ok(Some(force_ack.into_value()))
    }
}
