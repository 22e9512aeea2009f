//! Force-ack signing, verification and nonce claims, checked against the real `ssh-keygen`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};

use protocol::canonical;
use protocol::force_ack::allowed_signers::{AllowedSigners, Refusal};
use protocol::force_ack::ssh_key::{HashAlg, PrivateKey, PublicKey};
use protocol::force_ack::{self, Expected, ForceAckError, Verified, NAMESPACE};
use protocol::store::Store;
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const NOW: OffsetDateTime = datetime!(2026-11-22 18:00 UTC);
/// `NOW` in the form `ssh-keygen -O verify-time=` takes, so both verifiers see one clock.
const NOW_SSH: &str = "20261122180000Z";
const MAX_TTL: Duration = Duration::minutes(15);
const NONCE: &str = "0123456789abcdef0123456789abcdef";
const ALICE: &str = "alice@example.com";

/// A temporary directory holding keys, payloads and signatures.
struct Fixture {
    dir: TempDir,
}

/// An OpenSSH key pair made by `ssh-keygen`.
struct Key {
    path: PathBuf,
    /// The `.pub` line: `keytype base64 comment`.
    public: String,
}

impl Key {
    fn private(&self) -> PrivateKey {
        PrivateKey::read_openssh_file(&self.path).unwrap()
    }
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self, name: &str, kind: &[&str]) -> Key {
        let path = self.path(name);
        let status = Command::new(SSH_KEYGEN)
            .args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .args(kind)
            .status()
            .unwrap();
        assert!(status.success(), "ssh-keygen could not make {name}");
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        Key {
            path,
            public: public.trim_end().to_owned(),
        }
    }

    fn ed25519(&self, name: &str) -> Key {
        self.key(name, &["-t", "ed25519"])
    }

    /// `ssh-keygen -Y sign` over exactly `payload`.
    fn ssh_sign(&self, key: &Key, namespace: &str, payload: &[u8]) -> String {
        let file = tempfile::NamedTempFile::new_in(self.dir.path()).unwrap();
        std::fs::write(file.path(), payload).unwrap();
        let output = Command::new(SSH_KEYGEN)
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(&key.path)
            .arg(file.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let sig_path = PathBuf::from(format!("{}.sig", file.path().display()));
        let sig = std::fs::read_to_string(&sig_path).unwrap();
        std::fs::remove_file(sig_path).unwrap();
        sig
    }

    /// `ssh-keygen -Y verify` of `signature` over `payload`, at `NOW`.
    fn ssh_verify(
        &self,
        allowed: &str,
        principal: &str,
        signature: &str,
        payload: &[u8],
    ) -> Output {
        let allowed_path = self.path("allowed_signers.for-ssh-keygen");
        let sig_path = self.path("payload.sig");
        std::fs::write(&allowed_path, allowed).unwrap();
        std::fs::write(&sig_path, signature).unwrap();
        let payload_file = self.path("payload.json");
        std::fs::write(&payload_file, payload).unwrap();
        Command::new(SSH_KEYGEN)
            .args(["-Y", "verify", "-n", NAMESPACE, "-I", principal])
            .arg("-O")
            .arg(format!("verify-time={NOW_SSH}"))
            .arg("-f")
            .arg(&allowed_path)
            .arg("-s")
            .arg(&sig_path)
            .stdin(std::fs::File::open(&payload_file).unwrap())
            .output()
            .unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn plan() -> Digest {
    Digest::of_bytes(b"plan")
}

fn admission() -> Digest {
    Digest::of_bytes(b"admission")
}

fn expected() -> Expected {
    Expected {
        plan_hash: plan(),
        admission_hash: admission(),
    }
}

fn unsigned_for(approver: &str) -> Value {
    force_ack::new_unsigned(
        &plan(),
        &admission(),
        approver,
        NOW + Duration::minutes(10),
        NONCE,
    )
}

fn payload(unsigned: &Value) -> Vec<u8> {
    canonical::to_vec(unsigned).unwrap()
}

fn signed(mut unsigned: Value, signature: String) -> Value {
    unsigned["signature"] = Value::String(signature);
    unsigned
}

/// An unsigned force-ack signed by us.
fn sign_ours(unsigned: Value, key: &Key) -> Value {
    let signature = force_ack::sign(&unsigned, &key.private()).unwrap();
    signed(unsigned, signature)
}

fn trust(text: &str) -> AllowedSigners {
    AllowedSigners::parse(text).unwrap()
}

fn check(ack: &Value, signers: &AllowedSigners) -> Result<Verified, ForceAckError> {
    force_ack::verify(ack, expected(), signers, NOW, MAX_TTL)
}

/// Asserts a refusal with `code` whose message mentions `needle`; returns the error.
fn refused(
    result: Result<Verified, ForceAckError>,
    code: ErrorCode,
    needle: &str,
) -> ForceAckError {
    let error = result.expect_err("the force-ack was accepted");
    assert_eq!(error.code(), code, "{error}");
    let message = error.to_string();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    error
}

fn fingerprint_by_ssh_keygen(key: &Key) -> String {
    let output = Command::new(SSH_KEYGEN)
        .args(["-l", "-E", "sha256", "-f"])
        .arg(key.path.with_extension("pub"))
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn our_signature_verifies_with_ssh_keygen_and_with_us() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let allowed = format!("{ALICE} {}\n", alice.public);
    let unsigned = unsigned_for(ALICE);
    let signature = force_ack::sign(&unsigned, &alice.private()).unwrap();
    assert!(signature.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
    assert!(signature.ends_with("-----END SSH SIGNATURE-----\n"));

    let output = fx.ssh_verify(&allowed, ALICE, &signature, &payload(&unsigned));
    assert!(
        output.status.success(),
        "ssh-keygen refused: {}",
        stderr(&output)
    );

    let ack = signed(unsigned, signature);
    let verified = check(&ack, &trust(&allowed)).unwrap();
    assert_eq!(verified.approver, ALICE);
    assert_eq!(verified.nonce, NONCE);
    assert_eq!(verified.expires_at, NOW + Duration::minutes(10));
    assert_eq!(
        verified.signer_fingerprint.to_string(),
        fingerprint_by_ssh_keygen(&alice)
    );
}

#[test]
fn ssh_keygen_signature_over_canonical_payload_is_accepted() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let unsigned = unsigned_for(ALICE);
    let signature = fx.ssh_sign(&alice, NAMESPACE, &payload(&unsigned));
    let ack = signed(unsigned, signature);
    let verified = check(&ack, &trust(&format!("{ALICE} {}\n", alice.public))).unwrap();
    assert_eq!(verified.approver, ALICE);
    assert_eq!(
        verified.signer_fingerprint,
        PublicKey::from_openssh(&alice.public)
            .unwrap()
            .fingerprint(HashAlg::Sha256)
    );
}

#[test]
fn ecdsa_works_both_ways_and_rsa_signed_by_ssh_keygen_verifies() {
    let fx = Fixture::new();
    let unsigned = unsigned_for(ALICE);

    let ecdsa = fx.key("ecdsa", &["-t", "ecdsa", "-b", "256"]);
    let allowed = format!("{ALICE} {}\n", ecdsa.public);
    let ours = force_ack::sign(&unsigned, &ecdsa.private()).unwrap();
    let output = fx.ssh_verify(&allowed, ALICE, &ours, &payload(&unsigned));
    assert!(output.status.success(), "{}", stderr(&output));
    check(&signed(unsigned.clone(), ours), &trust(&allowed)).unwrap();
    let theirs = fx.ssh_sign(&ecdsa, NAMESPACE, &payload(&unsigned));
    check(&signed(unsigned.clone(), theirs), &trust(&allowed)).unwrap();

    let rsa = fx.key("rsa", &["-t", "rsa", "-b", "3072"]);
    let allowed = format!("{ALICE} {}\n", rsa.public);
    let theirs = fx.ssh_sign(&rsa, NAMESPACE, &payload(&unsigned));
    check(&signed(unsigned.clone(), theirs), &trust(&allowed)).unwrap();
    let error = force_ack::sign(&unsigned, &rsa.private()).unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidParams);
    assert!(error.to_string().contains("ssh-keygen -Y sign"), "{error}");
}

#[test]
fn wrong_namespace_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let unsigned = unsigned_for(ALICE);
    let signature = fx.ssh_sign(&alice, "file", &payload(&unsigned));
    let ack = signed(unsigned, signature);
    let error = refused(
        check(&ack, &trust(&format!("{ALICE} {}\n", alice.public))),
        ErrorCode::ForceAckInvalid,
        "-n mechanism-force-ack",
    );
    assert!(matches!(error, ForceAckError::WrongNamespace { found } if found == "file"));
}

#[test]
fn untrusted_key_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let mallory = fx.ed25519("mallory");
    let ack = sign_ours(unsigned_for(ALICE), &mallory);
    let error = refused(
        check(&ack, &trust(&format!("{ALICE} {}\n", alice.public))),
        ErrorCode::ForceAckInvalid,
        "not listed in allowed_signers",
    );
    assert!(matches!(
        error,
        ForceAckError::Untrusted { refusal, .. } if matches!(*refusal, Refusal::UnknownKey)
    ));
}

#[test]
fn empty_allowed_signers_trusts_nobody() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let ack = sign_ours(unsigned_for(ALICE), &alice);
    refused(
        check(&ack, &trust("# nobody yet\n")),
        ErrorCode::ForceAckInvalid,
        "lists no keys",
    );
}

#[test]
fn principal_must_match_approver() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let ack = sign_ours(unsigned_for(ALICE), &alice);

    let error = refused(
        check(&ack, &trust(&format!("bob@example.com {}\n", alice.public))),
        ErrorCode::ForceAckInvalid,
        "do not match \"alice@example.com\"",
    );
    assert!(matches!(
        error,
        ForceAckError::Untrusted { refusal, .. } if matches!(*refusal, Refusal::Principal { line: 1, .. })
    ));

    // Alice's key may not approve as Bob, even when Bob is trusted with another key.
    let bob = fx.ed25519("bob");
    let as_bob = sign_ours(unsigned_for("bob@example.com"), &alice);
    let both = format!("{ALICE} {}\nbob@example.com {}\n", alice.public, bob.public);
    refused(
        check(&as_bob, &trust(&both)),
        ErrorCode::ForceAckInvalid,
        "line 1",
    );

    check(&ack, &trust(&format!("*@example.com {}\n", alice.public))).unwrap();
    refused(
        check(
            &ack,
            &trust(&format!("\"!alice@*,*@example.com\" {}\n", alice.public)),
        ),
        ErrorCode::ForceAckInvalid,
        "do not match",
    );
}

#[test]
fn tampered_field_after_signing_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!(
        "{ALICE} {}\nbob@example.com {}\n",
        alice.public, alice.public
    ));
    let ack = sign_ours(unsigned_for(ALICE), &alice);
    check(&ack, &signers).unwrap();
    for (field, value) in [
        (
            "plan_hash",
            json!(Digest::of_bytes(b"other plan").to_string()),
        ),
        (
            "admission_hash",
            json!(Digest::of_bytes(b"other").to_string()),
        ),
        ("approver", json!("bob@example.com")),
        ("expires_at", json!("2026-11-22T18:14:00Z")),
        ("nonce", json!("ffffffffffffffffffffffffffffffff")),
        ("kind", json!("mechanism.force-ack/v0")),
    ] {
        let mut tampered = ack.clone();
        tampered[field] = value;
        if field == "kind" {
            // Unchanged: the control case, proving the loop's other refusals are real.
            check(&tampered, &signers).unwrap();
            continue;
        }
        let error = refused(
            check(&tampered, &signers),
            ErrorCode::ForceAckInvalid,
            "changed after signing",
        );
        assert!(
            matches!(error, ForceAckError::BadSignature { .. }),
            "{field}: {error}"
        );
    }
}

#[test]
fn extra_or_missing_field_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!("{ALICE} {}\n", alice.public));

    // Signed with the extra field inside, so only the strict field set can refuse it.
    let mut unsigned = unsigned_for(ALICE);
    unsigned["comment"] = json!("looks fine to me");
    let signature = fx.ssh_sign(&alice, NAMESPACE, &payload(&unsigned));
    refused(
        check(&signed(unsigned, signature), &signers),
        ErrorCode::ForceAckInvalid,
        "unexpected field \"comment\"",
    );

    let ack = sign_ours(unsigned_for(ALICE), &alice);
    for field in [
        "kind",
        "plan_hash",
        "admission_hash",
        "approver",
        "expires_at",
        "nonce",
        "signature",
    ] {
        let mut missing = ack.clone();
        missing.as_object_mut().unwrap().remove(field);
        refused(
            check(&missing, &signers),
            ErrorCode::ForceAckInvalid,
            &format!("missing field \"{field}\""),
        );
        let mut wrong_type = ack.clone();
        wrong_type[field] = json!(42);
        refused(
            check(&wrong_type, &signers),
            ErrorCode::ForceAckInvalid,
            "must be a string",
        );
    }

    let mut other_kind = unsigned_for(ALICE);
    other_kind["kind"] = json!("mechanism.force-ack/v1");
    let signature = fx.ssh_sign(&alice, NAMESPACE, &payload(&other_kind));
    refused(
        check(&signed(other_kind, signature), &signers),
        ErrorCode::ForceAckInvalid,
        "expected \"mechanism.force-ack/v0\"",
    );
    refused(
        check(&json!([ack]), &signers),
        ErrorCode::ForceAckInvalid,
        "must be a JSON object",
    );
}

#[test]
fn non_canonical_signed_bytes_are_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let unsigned = unsigned_for(ALICE);
    let pretty = serde_json::to_vec_pretty(&unsigned).unwrap();
    assert_ne!(pretty, payload(&unsigned));
    let signature = fx.ssh_sign(&alice, NAMESPACE, &pretty);
    let error = refused(
        check(
            &signed(unsigned, signature),
            &trust(&format!("{ALICE} {}\n", alice.public)),
        ),
        ErrorCode::ForceAckInvalid,
        "canonical form",
    );
    assert!(matches!(error, ForceAckError::BadSignature { .. }));
}

#[test]
fn unreadable_signature_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!("{ALICE} {}\n", alice.public));
    let mut ack = sign_ours(unsigned_for(ALICE), &alice);
    ack["signature"] = json!("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n");
    let error = refused(check(&ack, &signers), ErrorCode::ForceAckInvalid, "armored");
    assert!(matches!(error, ForceAckError::UnreadableSignature { .. }));
}

#[test]
fn expired_force_ack_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!("{ALICE} {}\n", alice.public));
    for expires_at in [NOW, NOW - Duration::seconds(1), NOW - Duration::days(30)] {
        let unsigned = force_ack::new_unsigned(&plan(), &admission(), ALICE, expires_at, NONCE);
        let error = refused(
            check(&sign_ours(unsigned, &alice), &signers),
            ErrorCode::ForceAckExpired,
            "expired at",
        );
        assert!(matches!(error, ForceAckError::Expired { .. }));
    }
    let unsigned = force_ack::new_unsigned(
        &plan(),
        &admission(),
        ALICE,
        NOW + Duration::seconds(1),
        NONCE,
    );
    check(&sign_ours(unsigned, &alice), &signers).unwrap();
}

#[test]
fn expiry_beyond_max_ttl_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!("{ALICE} {}\n", alice.public));
    let at_limit = force_ack::new_unsigned(&plan(), &admission(), ALICE, NOW + MAX_TTL, NONCE);
    check(&sign_ours(at_limit, &alice), &signers).unwrap();

    let beyond = force_ack::new_unsigned(
        &plan(),
        &admission(),
        ALICE,
        NOW + MAX_TTL + Duration::seconds(1),
        NONCE,
    );
    let error = refused(
        check(&sign_ours(beyond, &alice), &signers),
        ErrorCode::ForceAckExpired,
        "shorter lifetime",
    );
    assert!(matches!(error, ForceAckError::TooLong { .. }));
}

#[test]
fn other_plan_or_admission_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!("{ALICE} {}\n", alice.public));
    let ack = sign_ours(unsigned_for(ALICE), &alice);

    let other_plan = Expected {
        plan_hash: Digest::of_bytes(b"another plan"),
        admission_hash: admission(),
    };
    let error = refused(
        force_ack::verify(&ack, other_plan, &signers, NOW, MAX_TTL),
        ErrorCode::ForceAckInvalid,
        "is being executed",
    );
    assert!(matches!(error, ForceAckError::WrongPlan { found, .. } if found == plan()));

    let other_admission = Expected {
        plan_hash: plan(),
        admission_hash: Digest::of_bytes(b"another admission"),
    };
    let error = refused(
        force_ack::verify(&ack, other_admission, &signers, NOW, MAX_TTL),
        ErrorCode::ForceAckInvalid,
        "approve the current admission",
    );
    assert!(matches!(error, ForceAckError::WrongAdmission { .. }));
}

#[test]
fn bad_formats_are_refused_even_when_signed() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let signers = trust(&format!("{ALICE} {}\n", alice.public));
    for (field, value, needle) in [
        (
            "nonce",
            "0123456789ABCDEF0123456789ABCDEF",
            "32 lowercase hex",
        ),
        ("nonce", "0123456789abcdef", "32 lowercase hex"),
        (
            "nonce",
            "0123456789abcdef0123456789abcdeg",
            "32 lowercase hex",
        ),
        ("expires_at", "2026-11-22T18:10:00+00:00", "must be in UTC"),
        ("expires_at", "2026-11-22T19:10:00+01:00", "must be in UTC"),
        ("expires_at", "tomorrow", "not an RFC 3339 time"),
        ("plan_hash", "sha256:abc", "plan_hash"),
        ("admission_hash", "md5:0", "admission_hash"),
        ("approver", "", "approver is empty"),
    ] {
        let mut unsigned = unsigned_for(ALICE);
        unsigned[field] = json!(value);
        let signature = fx.ssh_sign(&alice, NAMESPACE, &payload(&unsigned));
        let error = refused(
            check(&signed(unsigned.clone(), signature), &signers),
            ErrorCode::ForceAckInvalid,
            needle,
        );
        assert!(matches!(error, ForceAckError::Malformed { .. }), "{field}");
        // We never sign such an object in the first place.
        let error = force_ack::sign(&unsigned, &alice.private()).unwrap_err();
        assert!(matches!(error, ForceAckError::Malformed { .. }), "{field}");
    }
}

#[test]
fn namespaces_restriction_excluding_ours_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let unsigned = unsigned_for(ALICE);
    let signature = force_ack::sign(&unsigned, &alice.private()).unwrap();
    let ack = signed(unsigned.clone(), signature.clone());

    let only_git = format!("{ALICE} namespaces=\"git,file\" {}\n", alice.public);
    let error = refused(
        check(&ack, &trust(&only_git)),
        ErrorCode::ForceAckInvalid,
        "restricts the key to namespaces git,file",
    );
    assert!(matches!(
        error,
        ForceAckError::Untrusted { refusal, .. } if matches!(*refusal, Refusal::Namespace { line: 1, .. })
    ));
    let output = fx.ssh_verify(&only_git, ALICE, &signature, &payload(&unsigned));
    assert!(!output.status.success(), "ssh-keygen accepted it too");

    let ours = format!("{ALICE} namespaces=\"git,mechanism-*\" {}\n", alice.public);
    check(&ack, &trust(&ours)).unwrap();
    let output = fx.ssh_verify(&ours, ALICE, &signature, &payload(&unsigned));
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn key_outside_its_validity_interval_is_refused() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let unsigned = unsigned_for(ALICE);
    let signature = force_ack::sign(&unsigned, &alice.private()).unwrap();
    let ack = signed(unsigned.clone(), signature.clone());

    for (options, ok) in [
        ("valid-before=\"20261122175959Z\"", false),
        ("valid-after=\"20261122180001Z\"", false),
        (
            "valid-after=\"20260101Z\",valid-before=\"20261122Z\"",
            false,
        ),
        (
            "valid-after=\"20260101Z\",valid-before=\"20261122180000Z\"",
            true,
        ),
        ("valid-after=\"20261122180000Z\"", true),
    ] {
        let allowed = format!("{ALICE} {options} {}\n", alice.public);
        let ssh_keygen = fx.ssh_verify(&allowed, ALICE, &signature, &payload(&unsigned));
        assert_eq!(
            ssh_keygen.status.success(),
            ok,
            "ssh-keygen disagrees on {options}"
        );
        let result = check(&ack, &trust(&allowed));
        if ok {
            result.unwrap();
        } else {
            let error = refused(result, ErrorCode::ForceAckInvalid, "trusts the key only");
            assert!(matches!(
                error,
                ForceAckError::Untrusted { refusal, .. } if matches!(*refusal, Refusal::Validity { .. })
            ));
        }
    }
}

#[test]
fn sign_refuses_signed_objects_and_encrypted_keys() {
    let fx = Fixture::new();
    let alice = fx.ed25519("alice");
    let ack = sign_ours(unsigned_for(ALICE), &alice);
    let error = force_ack::sign(&ack, &alice.private()).unwrap_err();
    assert!(
        error.to_string().contains("already has a \"signature\""),
        "{error}"
    );

    let path = fx.path("locked");
    let status = Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let locked = PrivateKey::read_openssh_file(&path).unwrap();
    let error = force_ack::sign(&unsigned_for(ALICE), &locked).unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidParams);
    assert!(error.to_string().contains("ssh-keygen -Y sign"), "{error}");
}

fn store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

#[test]
fn second_claim_of_a_nonce_is_replayed() {
    let (_dir, store) = store();
    force_ack::claim_nonce(&store, NONCE, &plan()).unwrap();
    assert_eq!(
        std::fs::read_to_string(store.nonce_path(NONCE).unwrap()).unwrap(),
        format!("{}\n", plan())
    );
    let error = force_ack::claim_nonce(&store, NONCE, &plan()).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ForceAckReplayed);
    assert!(error.to_string().contains("already used"), "{error}");
    assert!(matches!(error, ForceAckError::Replayed { nonce } if nonce == NONCE));
    assert!(force_ack::nonce_claimed(&store, NONCE).unwrap());

    let other = force_ack::random_nonce().unwrap();
    assert!(!force_ack::nonce_claimed(&store, &other).unwrap());
    force_ack::claim_nonce(&store, &other, &plan()).unwrap();
}

#[test]
fn concurrent_claims_succeed_exactly_once() {
    let (_dir, store) = store();
    for _ in 0..20 {
        let nonce = force_ack::random_nonce().unwrap();
        let threads = 2;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                // Each opens the store itself, as separate processes would.
                let (root, nonce, barrier) =
                    (store.root().to_owned(), nonce.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let store = Store::open(root).unwrap();
                    barrier.wait();
                    force_ack::claim_nonce(&store, &nonce, &plan())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, ForceAckError::Replayed { .. })));
    }
}

#[test]
fn claim_refuses_nonces_that_are_not_hex() {
    let (_dir, store) = store();
    let before = entries(store.root());
    for bad in [
        "../../../../../../../../../x",
        "",
        "0123456789ABCDEF0123456789ABCDEF",
    ] {
        let error = force_ack::claim_nonce(&store, bad, &plan()).unwrap_err();
        assert_eq!(error.code(), ErrorCode::ForceAckInvalid, "{bad}");
        let error = force_ack::nonce_claimed(&store, bad).unwrap_err();
        assert_eq!(error.code(), ErrorCode::ForceAckInvalid, "{bad}");
    }
    assert_eq!(
        entries(store.root()),
        before,
        "a refused claim created something"
    );
}

/// The names directly under `dir`, sorted.
fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}
