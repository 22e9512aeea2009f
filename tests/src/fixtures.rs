//! Artifacts a test puts in place of the admission: admitting witnesses, operator keys and
//! signed force-acks, made with the real `ssh-keygen` and our own signer.

use std::path::{Path, PathBuf};
use std::process::Command;

use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, Gate, GateDecision, GateRecord, MechanismRef,
};
use protocol::artifact::Artifact;
use protocol::force_ack::{self, ssh_key::PrivateKey};
use protocol::store::{Provenance, Store};
use protocol::Digest;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

/// The principal the test operator signs as.
pub const APPROVER: &str = "alice@example.com";

/// An operator: an ed25519 key made by `ssh-keygen` and an allowed_signers file trusting it.
pub struct Operator {
    /// The private key file.
    pub key: PathBuf,
    /// The allowed_signers file.
    pub allowed_signers: PathBuf,
}

impl Operator {
    /// Makes a key pair and an allowed_signers file in `dir`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("key dir");
        let key = dir.join("operator");
        keygen(&key, APPROVER, "");
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
        let allowed_signers = dir.join("allowed_signers");
        std::fs::write(&allowed_signers, format!("{APPROVER} {public}")).expect("allowed_signers");
        Self {
            key,
            allowed_signers,
        }
    }

    /// Signs the file `payload` with `ssh-keygen -Y sign` in `namespace` with the operator's
    /// key; returns the signature, which ssh-keygen also left in `PAYLOAD.sig`.
    pub fn ssh_keygen_sign(&self, payload: &Path, namespace: &str) -> String {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(&self.key)
            .arg(payload)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success(), "ssh-keygen -Y sign failed");
        let mut signature = payload.as_os_str().to_owned();
        signature.push(".sig");
        std::fs::read_to_string(signature).expect("ssh-keygen wrote the signature")
    }

    /// A signed force-ack for `plan` admitted by `admission`, valid for ten minutes.
    pub fn force_ack(&self, plan: &Digest, admission: &Digest) -> Value {
        let key = PrivateKey::read_openssh_file(&self.key).expect("read key");
        let nonce = force_ack::random_nonce().expect("nonce");
        let expires = OffsetDateTime::now_utc() + Duration::minutes(10);
        let mut unsigned = force_ack::new_unsigned(plan, admission, APPROVER, expires, &nonce);
        let signature = force_ack::sign(&unsigned, &key).expect("sign");
        unsigned["signature"] = Value::String(signature);
        unsigned
    }
}

/// Makes an ed25519 key pair with `ssh-keygen` at `key` (and `key.pub`), commented `comment`
/// and protected by `passphrase` unless it is empty.
pub fn keygen(key: &Path, comment: &str, passphrase: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f"])
        .arg(key)
        .status()
        .expect("ssh-keygen runs");
    assert!(
        status.success(),
        "ssh-keygen could not make {}",
        key.display()
    );
}

/// Stores an admitting AdmissionWitness for `plan` (as the admission would after all six
/// gates passed) and returns its digest.
pub fn admit(store: &Path, plan_hash: &Digest, plan: &Value) -> Digest {
    let store = Store::open(store).expect("store");
    let witness = AdmissionWitness {
        plan_hash: *plan_hash,
        mechanism: MechanismRef {
            id: plan["mechanism"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            version: plan["mechanism"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        policy_digest: Digest::of_bytes(b"test policy"),
        gates: Gate::ALL
            .iter()
            .map(|&gate| GateRecord {
                gate,
                decision: GateDecision::Pass,
                code: None,
                reason: "passed in a test fixture".to_owned(),
            })
            .collect(),
        decision: AdmissionDecision::Admit,
        force_ack_required: plan["destructive"].as_bool().unwrap_or(false),
        workorder: None,
    };
    let artifact = Artifact::from_typed(&witness).expect("witness artifact");
    store
        .put_artifact(&artifact, &Provenance::new("tests fixture"))
        .expect("store witness")
}

/// Puts a patch into the store and returns its digest.
pub fn put_patch(store: &Path, patch: &str) -> Digest {
    Store::open(store)
        .expect("store")
        .put_blob_bytes(patch.as_bytes(), &Provenance::new("tests fixture"))
        .expect("store patch")
}
