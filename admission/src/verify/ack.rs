//! The force-ack part of a chain: was one needed, does it approve this plan and admission, is
//! its signature sound and trusted, and was it used once.
//!
//! - `force_ack.required`: a force-ack is needed iff the plan is destructive or the admission
//!   said so (`force_ack_required`); it fails when one is needed and the chain names none.
//! - `force_ack.binding`: its `plan_hash` and `admission_hash` are the chain's.
//! - `force_ack.signature`: the SSHSIG in namespace `mechanism-force-ack` verifies over the
//!   canonical bytes of the force-ack without `signature`, by the key embedded in it. This
//!   needs no trust anchor, so it is always made: it shows the object was not changed after
//!   signing, not who signed it.
//! - `force_ack.trust`: the signing key is trusted for `approver` by `allowed_signers`. The
//!   complete [`force_ack::verify`] runs, as of one second before `expires_at`: when the
//!   force-ack was used is in no hashed artifact (the provenance sidecar's time is not
//!   hashed), and the server accepted it only while `now < expires_at`, so the last instant it
//!   could have been valid is what can be checked offline. A key whose `valid-before` in
//!   `allowed_signers` falls earlier fails here even if it was valid at use. `max_ttl` was
//!   policy at use and is not re-checked. Without `allowed_signers` this check is skipped
//!   (ok, `skipped`): a report then says the signature holds but not whose it is.
//! - `force_ack.nonce`: the server claimed the nonce, for this plan, in the store's
//!   `nonces/` before applying anything; a missing claim or a claim for another plan fails.

use protocol::artifact::kinds::{AdmissionWitness, ForceAck, Plan};
use protocol::canonical;
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::force_ack::ssh_key::{HashAlg, PublicKey, SshSig};
use protocol::force_ack::{self, Expected, NAMESPACE};
use protocol::store::{Store, StoreError};
use protocol::{Digest, ErrorCode};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::Check;

/// What the chain says about its force-ack, and what it is checked against.
pub(super) struct Linked<'a> {
    /// Whether an artifact that would name a force-ack (witness, run record) was read.
    pub known: bool,
    /// The force-ack named, if any.
    pub digest: Option<Digest>,
    /// It, as read: the raw value (signed bytes) and its typed view.
    pub read: Option<(&'a Value, &'a ForceAck)>,
    /// The plan, if read.
    pub plan: Option<&'a Plan>,
    /// The admission witness, if read.
    pub admission: Option<&'a AdmissionWitness>,
    /// The chain's plan digest.
    pub plan_hash: Option<Digest>,
    /// The chain's admission digest.
    pub admission_hash: Option<Digest>,
}

/// Every `force_ack.*` check; see the module docs.
pub(super) fn checks(
    store: &Store,
    signers: Option<&AllowedSigners>,
    linked: &Linked<'_>,
    checks: &mut Vec<Check>,
) {
    checks.push(required(linked));
    let Some((value, ack)) = linked.read else {
        return;
    };
    checks.push(binding(ack, linked));
    checks.push(signature(value));
    checks.push(trust(value, ack, signers));
    if let Some(plan_hash) = linked.plan_hash {
        checks.push(nonce(store, ack, &plan_hash));
    }
}

fn required(linked: &Linked<'_>) -> Check {
    const NAME: &str = "force_ack.required";
    let destructive = linked.plan.map(|p| p.destructive);
    let asked = linked.admission.map(|a| a.force_ack_required);
    let why = match (destructive, asked) {
        (Some(true), _) => Some("the plan is destructive"),
        (_, Some(true)) => Some("the admission requires one"),
        _ => None,
    };
    match (why, linked.digest) {
        (Some(why), Some(digest)) => Check::pass(NAME, format!("{why}, and {digest} was given")),
        (None, Some(digest)) => Check::pass(
            NAME,
            format!("not required, but {digest} was given; it is checked all the same"),
        ),
        (Some(why), None) if linked.known => Check::fail(
            NAME,
            ErrorCode::ForceAckRequired,
            format!("{why}, but the chain names no force-ack"),
        ),
        (Some(why), None) => Check::fail(
            NAME,
            ErrorCode::ForceAckRequired,
            format!("{why}; only the witness names its force-ack, and it was not found"),
        ),
        (None, None) if destructive.is_none() && asked.is_none() => Check::skip(
            NAME,
            "cannot tell: neither the plan nor the admission could be read",
        ),
        (None, None) => Check::pass(
            NAME,
            "not required: the plan is not destructive and the admission asks for none",
        ),
    }
}

fn binding(ack: &ForceAck, linked: &Linked<'_>) -> Check {
    let mut problems = Vec::new();
    if let Some(plan) = linked.plan_hash.filter(|p| *p != ack.plan_hash) {
        problems.push(format!(
            "it approves plan {}, not the executed plan {plan}",
            ack.plan_hash
        ));
    }
    if let Some(admission) = linked.admission_hash.filter(|a| *a != ack.admission_hash) {
        problems.push(format!(
            "it approves admission {}, not {admission}",
            ack.admission_hash
        ));
    }
    Check::holds(
        "force_ack.binding",
        problems.is_empty(),
        ErrorCode::ForceAckInvalid,
        format!(
            "approves plan {} and admission {}",
            ack.plan_hash, ack.admission_hash
        ),
        problems.join("; "),
    )
}

/// `force_ack.signature`: the embedded key's signature over the canonical unsigned bytes.
fn signature(value: &Value) -> Check {
    const NAME: &str = "force_ack.signature";
    match signed_by(value) {
        Ok(fingerprint) => Check::pass(
            NAME,
            format!("verifies over the canonical bytes, by key {fingerprint}"),
        ),
        Err(why) => Check::fail(NAME, ErrorCode::ForceAckInvalid, why),
    }
}

/// The fingerprint of the key whose signature covers the force-ack, or why none does.
fn signed_by(value: &Value) -> Result<String, String> {
    let mut unsigned = value
        .as_object()
        .cloned()
        .ok_or("the force-ack is not a JSON object")?;
    let armored = match unsigned.remove("signature") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("its \"signature\" is not a string".to_owned()),
        None => return Err("it carries no signature".to_owned()),
    };
    let signature = SshSig::from_pem(armored.as_bytes())
        .map_err(|e| format!("its signature is not an armored SSH signature: {e}"))?;
    if signature.namespace() != NAMESPACE {
        return Err(format!(
            "it is signed in namespace {:?}, not {NAMESPACE:?}",
            signature.namespace()
        ));
    }
    // The signed bytes are rebuilt from the object, as the server's verifier does, so a
    // field changed after signing cannot pass.
    let message = canonical::to_vec(&Value::Object(unsigned)).map_err(|e| e.to_string())?;
    let key = PublicKey::from(signature.public_key().clone());
    key.verify(NAMESPACE, &message, &signature).map_err(|e| {
        format!(
            "the signature does not verify over the canonical bytes of the force-ack without \
             \"signature\" ({e}): a field was changed after signing"
        )
    })?;
    Ok(key.fingerprint(HashAlg::Sha256).to_string())
}

/// `force_ack.trust`: the full verifier, as of the last second the force-ack was valid.
fn trust(value: &Value, ack: &ForceAck, signers: Option<&AllowedSigners>) -> Check {
    const NAME: &str = "force_ack.trust";
    let Some(signers) = signers else {
        return Check::skip(
            NAME,
            format!(
                "not checked: no --allowed-signers given, so whether the key may sign as {:?} is unknown",
                ack.approver
            ),
        );
    };
    let expires_at = match OffsetDateTime::parse(&ack.expires_at, &Rfc3339) {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                NAME,
                ErrorCode::ForceAckInvalid,
                format!(
                    "expires_at {:?} is not an RFC 3339 time: {e}",
                    ack.expires_at
                ),
            )
        }
    };
    let as_of = expires_at
        .checked_sub(Duration::SECOND)
        .unwrap_or(expires_at);
    // The binding to the chain is `force_ack.binding`'s to report; here the force-ack is
    // held only to what it names itself, so each problem is reported once.
    let expected = Expected {
        plan_hash: ack.plan_hash,
        admission_hash: ack.admission_hash,
    };
    // Duration::MAX: no lifetime bound, since `max_ttl` was the policy at the time of use.
    match force_ack::verify(value, expected, signers, as_of, Duration::MAX) {
        Ok(verified) => Check::pass(
            NAME,
            format!(
                "{} is trusted for key {} by allowed_signers, as of {} (one second before it expired)",
                verified.approver,
                verified.signer_fingerprint,
                as_of.format(&Rfc3339).unwrap_or_else(|_| as_of.to_string())
            ),
        ),
        Err(e) => Check::fail(NAME, e.code(), e.to_string()),
    }
}

/// `force_ack.nonce`: the server's one-time claim of the nonce names this plan.
fn nonce(store: &Store, ack: &ForceAck, plan_hash: &Digest) -> Check {
    const NAME: &str = "force_ack.nonce";
    let path = match store.nonce_path(&ack.nonce) {
        Ok(path) => path,
        Err(e) => return Check::fail(NAME, ErrorCode::ForceAckInvalid, e.to_string()),
    };
    match store.nonce_claim(&ack.nonce) {
        Ok(Some(claimed)) => Check::holds(
            NAME,
            claimed == *plan_hash,
            ErrorCode::ForceAckReplayed,
            format!("claimed once, for this plan ({})", path.display()),
            format!(
                "nonce {} was claimed for plan {claimed}, not {plan_hash}",
                ack.nonce
            ),
        ),
        Ok(None) => Check::fail(
            NAME,
            ErrorCode::ForceAckInvalid,
            format!(
                "no claim of nonce {} in {}: the server claims it there before applying anything, so this force-ack was not used against this store",
                ack.nonce,
                path.display()
            ),
        ),
        Err(e @ StoreError::BadNonceClaim { .. }) => {
            Check::fail(NAME, ErrorCode::ForceAckInvalid, e.to_string())
        }
        Err(e) => Check::fail(
            NAME,
            ErrorCode::InternalError,
            format!("cannot read the claim: {e}"),
        ),
    }
}
