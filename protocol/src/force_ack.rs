//! Force-acks: an operator's signed consent to execute one destructive plan, once.
//!
//! A force-ack is a JSON object with exactly `kind` ([`KIND`]), `plan_hash`,
//! `admission_hash`, `approver`, `expires_at` (RFC 3339, UTC, `Z`), `nonce` (32 lowercase
//! hex) and `signature`. The signature is an OpenSSH SSHSIG in the namespace [`NAMESPACE`]
//! over the RFC 8785 canonical bytes of the object without `signature`, so an operator can
//! sign with `ssh-keygen -Y sign -n mechanism-force-ack` and check ours with
//! `ssh-keygen -Y verify`. Trust is an OpenSSH `allowed_signers` file ([`allowed_signers`]).
//!
//! [`verify`] reads no clock: the caller passes `now`, so tests and replays of a journal are
//! deterministic. After a successful [`verify`] and before any effect, the caller claims the
//! nonce with [`claim_nonce`], which refuses the second use.
//!
//! The `ssh-key` features in Cargo.toml, and why each is there:
//! - `std`: reading key files and `std::error::Error` on its errors;
//! - `ed25519`: the key type `ssh-keygen` makes by default and most operators hold;
//! - `p256`: `ecdsa-sha2-nistp256` keys, common on hardware tokens and secure enclaves, and
//!   `sk-ecdsa-sha2-nistp256@openssh.com` (FIDO) signatures, which only need verifying;
//! - `rsa`: verifying force-acks that holders of the many existing RSA keys sign with
//!   `ssh-keygen` (`rsa-sha2-256/512`; SHA-1 `ssh-rsa` is refused, as OpenSSH refuses it for
//!   SSHSIG). [`sign`] refuses RSA keys: ssh-key 0.6.7's RSA signing is broken upstream;
//! - `getrandom`: the OS random source for [`random_nonce`]; it adds no crate, `getrandom`
//!   is already in the tree through `rand_core`.
//!
//! Not enabled: `encryption` (passphrase-protected private keys; such operators sign with
//! `ssh-keygen -Y sign`, which can use their agent), `p384`/`p521`, `dsa`.

use std::io;

use serde_json::{json, Map, Value};
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Fingerprint, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::canonical;
use crate::digest::Digest;
use crate::error::ErrorCode;
use crate::store::{check_nonce, NonceClaim, Store, StoreError};

pub mod allowed_signers;

/// The `ssh-key` crate, so callers load keys with the very version used here.
pub use ssh_key;

use allowed_signers::{AllowedSigners, Refusal};

/// The versioned `kind` of a force-ack.
pub const KIND: &str = "mechanism.force-ack/v0";

/// The SSHSIG namespace force-acks are signed in, so no other SSH signature can pass as one.
pub const NAMESPACE: &str = "mechanism-force-ack";

/// The longest a force-ack may live unless the runtime is told otherwise
/// (`--force-ack-max-ttl`): the admission applies it at execute, and `approve` refuses longer.
pub const DEFAULT_MAX_TTL: Duration = Duration::hours(1);

/// Longest `approver` accepted; principals are `user@domain` identities, not prose.
const MAX_APPROVER_LEN: usize = 256;

/// What the force-ack must approve: the plan being executed and its admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Hash of the plan about to be executed.
    pub plan_hash: Digest,
    /// Digest of the AdmissionWitness that admitted it.
    pub admission_hash: Digest,
}

/// What a valid force-ack established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principal who approved, matched against `allowed_signers`.
    pub approver: String,
    /// The one-time nonce, to pass to [`claim_nonce`].
    pub nonce: String,
    /// When the approval lapses.
    pub expires_at: OffsetDateTime,
    /// SHA-256 fingerprint of the signing key, as `ssh-keygen -l` prints it.
    pub signer_fingerprint: Fingerprint,
}

/// Why a force-ack was refused, or could not be made or claimed.
#[derive(Debug, thiserror::Error)]
pub enum ForceAckError {
    /// Not a force-ack: wrong shape, field set, type or format.
    #[error("force-ack is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// `signature` is not an armored SSH signature.
    #[error("force-ack signature is not an armored SSH signature (-----BEGIN SSH SIGNATURE-----): {reason}")]
    UnreadableSignature {
        /// The decoder's description.
        reason: String,
    },
    /// Signed in another namespace, i.e. meant for something else.
    #[error("force-ack is signed in namespace {found:?}, not {NAMESPACE:?}; sign with `ssh-keygen -Y sign -n {NAMESPACE}`")]
    WrongNamespace {
        /// The namespace in the signature.
        found: String,
    },
    /// The signature does not verify over the canonical bytes of the object.
    #[error("force-ack signature does not verify ({reason}): a field was changed after signing, or the signed bytes were not the canonical form of the object without \"signature\" (`admission canon` prints them)")]
    BadSignature {
        /// The verifier's description.
        reason: String,
    },
    /// The signing key is not trusted for this approver, namespace and time.
    #[error("force-ack signer {fingerprint} is not trusted for approver {approver:?}: {refusal}")]
    Untrusted {
        /// Fingerprint of the signing key.
        fingerprint: Fingerprint,
        /// The `approver` field.
        approver: String,
        /// Which `allowed_signers` check failed (boxed: it is large and errors travel far).
        refusal: Box<Refusal>,
    },
    /// Approves another plan.
    #[error("force-ack approves plan {found}, but plan {expected} is being executed")]
    WrongPlan {
        /// The plan being executed.
        expected: Digest,
        /// The plan the force-ack names.
        found: Digest,
    },
    /// Approves another admission of the plan.
    #[error("force-ack approves admission {found}, but the plan was admitted by {expected}; approve the current admission")]
    WrongAdmission {
        /// The admission in force.
        expected: Digest,
        /// The admission the force-ack names.
        found: Digest,
    },
    /// Its time is up.
    #[error("force-ack expired at {} (now {}); ask the approver for a fresh one", show_time(*.expires_at), show_time(*.now))]
    Expired {
        /// The `expires_at` field.
        expires_at: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
    },
    /// It would stay valid for longer than policy allows.
    #[error("force-ack expires at {}, more than {max_ttl} after now ({}); approve again with a shorter lifetime", show_time(*.expires_at), show_time(*.now))]
    TooLong {
        /// The `expires_at` field.
        expires_at: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
        /// The longest lifetime allowed.
        max_ttl: Duration,
    },
    /// The nonce was claimed before: this force-ack was already used.
    #[error("force-ack nonce {nonce} was already used; a force-ack is good for one execution, ask the approver for a fresh one")]
    Replayed {
        /// The nonce.
        nonce: String,
    },
    /// The private key cannot sign.
    #[error("cannot sign the force-ack: {reason}")]
    Signing {
        /// What is wrong with the key.
        reason: String,
    },
    /// The store could not record or read the nonce's claim.
    #[error("the store cannot record or read the force-ack nonce: {0}")]
    Store(#[from] StoreError),
}

impl ForceAckError {
    /// The protocol error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed { .. }
            | Self::UnreadableSignature { .. }
            | Self::WrongNamespace { .. }
            | Self::BadSignature { .. }
            | Self::Untrusted { .. }
            | Self::WrongPlan { .. }
            | Self::WrongAdmission { .. } => ErrorCode::ForceAckInvalid,
            Self::Expired { .. } | Self::TooLong { .. } => ErrorCode::ForceAckExpired,
            Self::Replayed { .. } => ErrorCode::ForceAckReplayed,
            Self::Signing { .. } => ErrorCode::InvalidParams,
            Self::Store(_) => ErrorCode::InternalError,
        }
    }
}

fn malformed(reason: impl Into<String>) -> ForceAckError {
    ForceAckError::Malformed {
        reason: reason.into(),
    }
}

/// A time as RFC 3339 for messages, falling back to `time`'s own form for odd years.
pub(crate) fn show_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A fresh nonce: 16 bytes from the OS random source, as 32 lowercase hex digits.
pub fn random_nonce() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    OsRng.try_fill_bytes(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The force-ack object without `signature`, ready for [`sign`].
///
/// `expires_at` is written in UTC to the whole second, rounded down so the approval never
/// outlives what the approver chose.
pub fn new_unsigned(
    plan_hash: &Digest,
    admission_hash: &Digest,
    approver: &str,
    expires_at: OffsetDateTime,
    nonce: &str,
) -> Value {
    let t = expires_at.to_offset(UtcOffset::UTC);
    let expires_at = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    json!({
        "kind": KIND,
        "plan_hash": plan_hash.to_string(),
        "admission_hash": admission_hash.to_string(),
        "approver": approver,
        "expires_at": expires_at,
        "nonce": nonce,
    })
}

/// Signs an unsigned force-ack (checked first) and returns the armored SSH signature, to be
/// stored as its `signature` field.
pub fn sign(unsigned: &Value, private_key: &PrivateKey) -> Result<String, ForceAckError> {
    let object = unsigned
        .as_object()
        .ok_or_else(|| malformed("a force-ack must be a JSON object"))?;
    if object.contains_key("signature") {
        return Err(malformed(
            "the object to sign already has a \"signature\"; sign the object without it",
        ));
    }
    Fields::parse(object)?;
    if private_key.is_encrypted() {
        return Err(ForceAckError::Signing {
            reason: "the private key is protected by a passphrase, which is not supported here; \
                     sign the canonical payload with `ssh-keygen -Y sign -n mechanism-force-ack` \
                     (it can use ssh-agent) instead"
                .to_owned(),
        });
    }
    if private_key.algorithm().is_rsa() {
        // ssh-key 0.6.7 builds the RSA private key from the wrong primes and every RSA
        // signature fails (RustCrypto/SSH#387, fixed only in 0.7 pre-releases). Verifying
        // RSA signatures is unaffected.
        return Err(ForceAckError::Signing {
            reason: "RSA keys cannot sign here yet (a bug in the ssh-key crate); sign the \
                     canonical payload with `ssh-keygen -Y sign -n mechanism-force-ack`, whose \
                     RSA signatures verify normally, or use an ed25519 or ECDSA key"
                .to_owned(),
        });
    }
    let message = canonical::to_vec(unsigned).map_err(|e| malformed(e.to_string()))?;
    let signature = private_key
        .sign(NAMESPACE, HashAlg::Sha512, &message)
        .map_err(|e| ForceAckError::Signing {
            reason: format!("{} key: {e}", private_key.algorithm()),
        })?;
    signature
        .to_pem(LineEnding::LF)
        .map_err(|e| ForceAckError::Signing {
            reason: e.to_string(),
        })
}

/// Checks a force-ack completely against the plan being executed, the trusted signers and
/// the time `now`; `max_ttl` bounds how far ahead `expires_at` may lie.
///
/// Pass the value as parsed by [`crate::canonical::parse`] (or an `Artifact`), so that
/// duplicate keys were already refused. The nonce is not claimed here: see [`claim_nonce`].
pub fn verify(
    force_ack: &Value,
    expected: Expected,
    signers: &AllowedSigners,
    now: OffsetDateTime,
    max_ttl: Duration,
) -> Result<Verified, ForceAckError> {
    let object = force_ack
        .as_object()
        .ok_or_else(|| malformed("a force-ack must be a JSON object"))?;
    let mut unsigned = object.clone();
    let armored = match unsigned.remove("signature") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(malformed("field \"signature\" must be a string")),
        None => return Err(malformed("missing field \"signature\"")),
    };
    let fields = Fields::parse(&unsigned)?;

    let signature =
        SshSig::from_pem(armored.as_bytes()).map_err(|e| ForceAckError::UnreadableSignature {
            reason: e.to_string(),
        })?;
    if signature.namespace() != NAMESPACE {
        return Err(ForceAckError::WrongNamespace {
            found: signature.namespace().to_owned(),
        });
    }
    // The signed message is rebuilt from the parsed fields, never taken from the sender, so
    // only one byte string per force-ack can ever verify.
    let message =
        canonical::to_vec(&Value::Object(unsigned)).map_err(|e| malformed(e.to_string()))?;
    let signer = PublicKey::from(signature.public_key().clone());
    signer
        .verify(NAMESPACE, &message, &signature)
        .map_err(|e| ForceAckError::BadSignature {
            reason: e.to_string(),
        })?;
    let fingerprint = signer.fingerprint(HashAlg::Sha256);

    signers
        .authorize(signer.key_data(), &fields.approver, NAMESPACE, now)
        .map_err(|refusal| ForceAckError::Untrusted {
            fingerprint,
            approver: fields.approver.clone(),
            refusal: Box::new(refusal),
        })?;

    if fields.plan_hash != expected.plan_hash {
        return Err(ForceAckError::WrongPlan {
            expected: expected.plan_hash,
            found: fields.plan_hash,
        });
    }
    if fields.admission_hash != expected.admission_hash {
        return Err(ForceAckError::WrongAdmission {
            expected: expected.admission_hash,
            found: fields.admission_hash,
        });
    }

    if fields.expires_at <= now {
        return Err(ForceAckError::Expired {
            expires_at: fields.expires_at,
            now,
        });
    }
    // An unrepresentable `now + max_ttl` lies beyond every `expires_at`, so no bound applies.
    if now
        .checked_add(max_ttl)
        .is_some_and(|latest| fields.expires_at > latest)
    {
        return Err(ForceAckError::TooLong {
            expires_at: fields.expires_at,
            now,
            max_ttl,
        });
    }

    Ok(Verified {
        approver: fields.approver,
        nonce: fields.nonce,
        expires_at: fields.expires_at,
        signer_fingerprint: fingerprint,
    })
}

/// Records `nonce` as used, for `plan_hash`, in the store ([`Store::claim_nonce`]).
///
/// Of any number of concurrent claims (threads or processes) exactly one succeeds, and a
/// claim survives a crash. Call it after [`verify`] and before applying any effect.
pub fn claim_nonce(store: &Store, nonce: &str, plan_hash: &Digest) -> Result<(), ForceAckError> {
    // Checked here too, so a malformed nonce is the force-ack's fault, not the store's.
    check_nonce(nonce).map_err(malformed)?;
    match store.claim_nonce(nonce, plan_hash)? {
        NonceClaim::Claimed => Ok(()),
        NonceClaim::Spent => Err(ForceAckError::Replayed {
            nonce: nonce.to_owned(),
        }),
    }
}

/// Whether `nonce` was claimed already, so that a force-ack carrying it is spent. Only an
/// early answer: [`claim_nonce`] alone decides, atomically.
pub fn nonce_claimed(store: &Store, nonce: &str) -> Result<bool, ForceAckError> {
    check_nonce(nonce).map_err(malformed)?;
    Ok(store.nonce_spent(nonce)?)
}

/// The fields of a force-ack without `signature`, checked.
struct Fields {
    plan_hash: Digest,
    admission_hash: Digest,
    approver: String,
    expires_at: OffsetDateTime,
    nonce: String,
}

impl Fields {
    const NAMES: [&'static str; 6] = [
        "kind",
        "plan_hash",
        "admission_hash",
        "approver",
        "expires_at",
        "nonce",
    ];

    /// Exactly the six fields, each a string of the right form.
    fn parse(object: &Map<String, Value>) -> Result<Self, ForceAckError> {
        if let Some(extra) = object.keys().find(|k| !Self::NAMES.contains(&k.as_str())) {
            return Err(malformed(format!(
                "unexpected field {extra:?}; a force-ack has exactly kind, plan_hash, \
                 admission_hash, approver, expires_at, nonce and signature"
            )));
        }
        let text = |name: &str| -> Result<&str, ForceAckError> {
            match object.get(name) {
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(malformed(format!("field {name:?} must be a string"))),
                None => Err(malformed(format!("missing field {name:?}"))),
            }
        };
        let kind = text("kind")?;
        if kind != KIND {
            return Err(malformed(format!("kind is {kind:?}, expected {KIND:?}")));
        }
        let digest = |name: &str| -> Result<Digest, ForceAckError> {
            text(name)?
                .parse()
                .map_err(|e| malformed(format!("{name}: {e}")))
        };
        let plan_hash = digest("plan_hash")?;
        let admission_hash = digest("admission_hash")?;
        let approver = text("approver")?;
        check_approver(approver).map_err(malformed)?;
        let expires_at = parse_expires_at(text("expires_at")?).map_err(malformed)?;
        let nonce = text("nonce")?;
        check_nonce(nonce).map_err(malformed)?;
        Ok(Self {
            plan_hash,
            admission_hash,
            approver: approver.to_owned(),
            expires_at,
            nonce: nonce.to_owned(),
        })
    }
}

fn check_approver(approver: &str) -> Result<(), String> {
    if approver.is_empty() {
        return Err(
            "approver is empty; it must be the signer's principal, e.g. alice@example.com".into(),
        );
    }
    if approver.len() > MAX_APPROVER_LEN {
        return Err(format!("approver is longer than {MAX_APPROVER_LEN} bytes"));
    }
    if approver.chars().any(char::is_control) {
        return Err("approver contains a control character".into());
    }
    Ok(())
}

/// RFC 3339 in UTC, spelled with upper-case `T` and `Z`, as in `2026-11-22T19:00:00Z`.
fn parse_expires_at(text: &str) -> Result<OffsetDateTime, String> {
    let utc_spelling = text.as_bytes().get(10) == Some(&b'T') && text.ends_with('Z');
    let parsed = OffsetDateTime::parse(text, &Rfc3339);
    match parsed {
        Ok(t) if utc_spelling && t.offset() == UtcOffset::UTC => Ok(t),
        Ok(_) => Err(format!(
            "expires_at {text:?} must be in UTC, written with T and Z, as 2026-11-22T19:00:00Z"
        )),
        Err(e) => Err(format!(
            "expires_at {text:?} is not an RFC 3339 time ({e}); write it as 2026-11-22T19:00:00Z"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expires_at_must_be_rfc3339_utc_with_z() {
        assert_eq!(
            parse_expires_at("2026-11-22T19:00:00Z").unwrap(),
            datetime!(2026-11-22 19:00 UTC)
        );
        assert_eq!(
            parse_expires_at("2026-11-22T19:00:00.25Z").unwrap(),
            datetime!(2026-11-22 19:00:00.25 UTC)
        );
        for bad in [
            "2026-11-22T19:00:00+00:00",
            "2026-11-22T19:00:00-00:00",
            "2026-11-22T20:00:00+01:00",
            "2026-11-22t19:00:00Z",
            "2026-11-22T19:00:00z",
            "2026-11-22 19:00:00Z",
            "2026-11-22T19:00Z",
            "2026-11-22",
            "",
        ] {
            assert!(parse_expires_at(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn new_unsigned_writes_utc_whole_seconds() {
        let d = Digest::of_bytes(b"p");
        let t = datetime!(2026-11-22 20:00:00.9 +01:00);
        let v = new_unsigned(&d, &d, "a@b", t, "00112233445566778899aabbccddeeff");
        assert_eq!(v["expires_at"], "2026-11-22T19:00:00Z");
        assert_eq!(v["kind"], KIND);
        let object = v.as_object().unwrap();
        assert!(Fields::parse(object).is_ok());
    }

    #[test]
    fn approver_and_nonce_formats() {
        assert!(check_approver("alice@example.com").is_ok());
        assert!(check_approver("").is_err());
        assert!(check_approver("a\nb").is_err());
        assert!(check_approver(&"a".repeat(257)).is_err());
        assert!(check_nonce("00112233445566778899aabbccddeeff").is_ok());
        for bad in [
            "00112233445566778899AABBCCDDEEFF",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "0011223344556677889_aabbccddeeff",
            "../../../../../../../../etc/pass",
        ] {
            assert!(check_nonce(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn random_nonces_are_well_formed_and_differ() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert!(check_nonce(&a).is_ok(), "{a}");
        assert_ne!(a, b);
    }
}
