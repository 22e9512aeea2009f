//! `admission approve` over the real binary, checked by the real `ssh-keygen` and by our
//! verifier: signing with a key file, and the `--payload` / `ssh-keygen -Y sign` / `--attach`
//! round trip.

use std::path::Path;
use std::process::Command;

use protocol::canonical;
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::force_ack::{self, Expected, Verified};
use protocol::store::Store;
use protocol::Digest;
use serde_json::{json, Value};
use tests::fixtures::{keygen, Operator, APPROVER};
use tests::output::stderr as stderr_of;
use tests::Scratch;
use time::{Duration, OffsetDateTime};

fn plan() -> Digest {
    Digest::of_bytes(b"a destructive plan")
}

fn admission() -> Digest {
    Digest::of_bytes(b"its admission witness")
}

/// Records the plan's admission in the store, as `admission plan` does.
fn record_admission(s: &Scratch) {
    let store = Store::open(s.path(".mechanism")).unwrap();
    store
        .set_ref(
            "admissions",
            &plan().hex(),
            &json!({
                "admission": admission(),
                "admitted": true,
                "force_ack_required": true,
                "mechanism": "git_apply_patch",
                "workorder": Digest::of_bytes(b"its workorder"),
                "run_uid": "01a2054f-b568-7408-a700-b3261992ece7",
                "deadline_ms": 60000,
            }),
        )
        .unwrap();
}

fn read_json(path: &Path) -> Value {
    canonical::parse(&std::fs::read(path).unwrap()).unwrap()
}

/// Our verifier, with the operator's allowed_signers, for the plan and admission above.
fn verify(operator: &Operator, force_ack: &Value) -> Verified {
    let signers = AllowedSigners::read(&operator.allowed_signers).unwrap();
    let expected = Expected {
        plan_hash: plan(),
        admission_hash: admission(),
    };
    force_ack::verify(
        force_ack,
        expected,
        &signers,
        OffsetDateTime::now_utc(),
        Duration::minutes(15),
    )
    .unwrap()
}

/// Whether `ssh-keygen -Y verify` accepts `signature` by the operator over `payload`.
fn ssh_keygen_verify(s: &Scratch, operator: &Operator, payload: &[u8], signature: &str) -> bool {
    let payload_file = s.write("check/payload", payload);
    let sig_file = s.write("check/payload.sig", signature);
    Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-n",
            "mechanism-force-ack",
            "-I",
            APPROVER,
            "-f",
        ])
        .arg(&operator.allowed_signers)
        .arg("-s")
        .arg(&sig_file)
        .stdin(std::fs::File::open(&payload_file).unwrap())
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_force_ack_signed_with_a_key_file_verifies_with_ssh_keygen_and_our_verifier() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    record_admission(&s);
    let before = OffsetDateTime::now_utc();
    let out = s
        .admission()
        .args([
            "approve",
            &plan().to_string(),
            "--approver",
            APPROVER,
            "--ttl",
            "10m",
        ])
        .arg("--key")
        .arg(&operator.key)
        .args(["-o", "force-ack.json"])
        .assert()
        .success();
    let after = OffsetDateTime::now_utc();
    let output = out.get_output();
    assert!(output.stdout.is_empty());
    let stderr = stderr_of(output);
    assert!(
        stderr.contains(APPROVER) && stderr.contains(&plan().to_string()),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let text = std::fs::read_to_string(s.path("force-ack.json")).unwrap();
    assert!(text.ends_with("}\n"), "{text}");
    let ack = read_json(&s.path("force-ack.json"));
    assert_eq!(ack["kind"], "mechanism.force-ack/v0");
    assert_eq!(ack["plan_hash"], plan().to_string());
    assert_eq!(
        ack["admission_hash"],
        admission().to_string(),
        "from the store's record"
    );
    let verified = verify(&operator, &ack);
    assert_eq!(verified.approver, APPROVER);
    // Ten minutes from the moment approve ran (between `before` and `after`), rounded down to
    // the second: measured from `before` it may exceed ten minutes by that rounding.
    assert!(
        verified.expires_at > before + Duration::minutes(9)
            && verified.expires_at <= after + Duration::minutes(10),
        "expires {} for approval between {before} and {after}",
        verified.expires_at
    );

    // ssh-keygen accepts our signature over the canonical bytes of the object without it.
    let mut unsigned = ack.clone();
    let signature = unsigned
        .as_object_mut()
        .unwrap()
        .remove("signature")
        .unwrap();
    let payload = canonical::to_vec(&unsigned).unwrap();
    let signature = signature.as_str().unwrap();
    assert!(ssh_keygen_verify(&s, &operator, &payload, signature));
    // ... and only over those bytes.
    let mut tampered = payload.clone();
    tampered.push(b'\n');
    assert!(!ssh_keygen_verify(&s, &operator, &tampered, signature));

    // --json: the force-ack on stdout, each one with a fresh nonce.
    let out = s
        .admission()
        .args([
            "--json",
            "approve",
            &plan().to_string(),
            "--approver",
            APPROVER,
        ])
        .args(["--admission", &admission().to_string(), "--key"])
        .arg(&operator.key)
        .assert()
        .success();
    let reply: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reply["path"], Value::Null);
    let second = verify(&operator, &reply["force_ack"]);
    assert_ne!(second.nonce, verified.nonce);
}

#[test]
fn a_payload_signed_with_ssh_keygen_and_attached_is_a_valid_force_ack() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    s.admission()
        .args([
            "approve",
            "--payload",
            &plan().to_string(),
            "--approver",
            APPROVER,
        ])
        .args([
            "--admission",
            &admission().to_string(),
            "-o",
            "payload.json",
        ])
        .assert()
        .success();
    // The file holds exactly the canonical bytes: nothing for an editor or shell to add.
    let payload = std::fs::read(s.path("payload.json")).unwrap();
    let unsigned = canonical::parse(&payload).unwrap();
    assert_eq!(canonical::to_vec(&unsigned).unwrap(), payload);
    assert!(unsigned.get("signature").is_none());

    // Without -o the same bytes go to stdout, newline-free.
    let out = s
        .admission()
        .args([
            "approve",
            "--payload",
            &plan().to_string(),
            "--approver",
            APPROVER,
        ])
        .args(["--admission", &admission().to_string()])
        .assert()
        .success();
    let printed = &out.get_output().stdout;
    assert_eq!(
        canonical::to_vec(&canonical::parse(printed).unwrap()).unwrap(),
        *printed
    );

    operator.ssh_keygen_sign(&s.path("payload.json"), "mechanism-force-ack");
    s.admission()
        .args([
            "approve",
            "--attach",
            "payload.json.sig",
            "--payload-file",
            "payload.json",
        ])
        .args(["-o", "force-ack.json"])
        .assert()
        .success();
    let ack = read_json(&s.path("force-ack.json"));
    assert_eq!(verify(&operator, &ack).nonce, unsigned["nonce"]);

    // A payload changed after signing, even by a final newline, is refused at once.
    let mut edited = payload.clone();
    edited.push(b'\n');
    s.write("edited.json", &edited);
    let out = s
        .admission()
        .args([
            "approve",
            "--attach",
            "payload.json.sig",
            "--payload-file",
            "edited.json",
        ])
        .assert()
        .code(3);
    let stderr = stderr_of(out.get_output());
    assert!(
        stderr.contains("FORCE_ACK_INVALID") && stderr.contains("canonical"),
        "{stderr}"
    );

    // So is a signature made in another namespace.
    s.write("other.json", &payload);
    operator.ssh_keygen_sign(&s.path("other.json"), "file");
    let out = s
        .admission()
        .args([
            "approve",
            "--attach",
            "other.json.sig",
            "--payload-file",
            "other.json",
        ])
        .assert()
        .code(3);
    let stderr = stderr_of(out.get_output());
    assert!(stderr.contains("namespace \"file\""), "{stderr}");
}

#[test]
fn approving_a_plan_with_no_recorded_admission_is_refused() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    let approve = |json: bool| {
        let mut cmd = s.admission();
        if json {
            cmd.arg("--json");
        }
        cmd.args([
            "approve",
            &plan().to_string(),
            "--approver",
            APPROVER,
            "--key",
        ])
        .arg(&operator.key);
        cmd
    };

    // No store at all: none is created just to find nothing in it.
    let out = approve(false).assert().code(2);
    let stderr = stderr_of(out.get_output());
    assert!(stderr.contains("ADMISSION_REQUIRED"), "{stderr}");
    assert!(stderr.contains("admission plan"), "{stderr}");
    assert!(out.get_output().stdout.is_empty());
    assert!(!s.path(".mechanism").exists());

    // A store without a record for this plan, and one whose record is torn.
    let store = Store::open(s.path(".mechanism")).unwrap();
    let out = approve(true).assert().code(2);
    let reply: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reply["error"]["code"], "ADMISSION_REQUIRED");
    assert_eq!(reply["error"]["exit"], 2);
    store
        .set_ref("admissions", &plan().hex(), &json!({}))
        .unwrap();
    std::fs::write(
        store.ref_path("admissions", &plan().hex()).unwrap(),
        b"{\"admission\":",
    )
    .unwrap();
    let out = approve(false).assert().code(2);
    assert!(stderr_of(out.get_output()).contains("ADMISSION_REQUIRED"));
}

#[test]
fn an_unusable_key_file_is_refused_with_a_way_forward() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    let encrypted = s.path("keys/encrypted");
    keygen(&encrypted, "encrypted", "a passphrase");
    let garbage = s.write("keys/garbage", "not a key\n");
    let public = operator.key.with_extension("pub");
    for (key, needle) in [
        (s.path("keys/missing"), "keys/missing"),
        (garbage, "not an OpenSSH private key"),
        (public, "not the .pub"),
        (encrypted, "ssh-keygen -Y sign -n mechanism-force-ack"),
    ] {
        let out = s
            .admission()
            .args(["approve", &plan().to_string(), "--approver", APPROVER])
            .args(["--admission", &admission().to_string(), "--key"])
            .arg(&key)
            .assert()
            .code(2);
        let stderr = stderr_of(out.get_output());
        assert!(stderr.contains(needle), "{}: {stderr}", key.display());
        assert!(out.get_output().stdout.is_empty());
    }
}

#[test]
fn a_ttl_that_is_not_a_usable_duration_is_refused() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    for ttl in ["5x", "", "15", "0s", "500ms", "-5m", "100000years"] {
        let out = s
            .admission()
            .args(["approve", &plan().to_string(), "--approver", APPROVER])
            .args(["--admission", &admission().to_string(), "--key"])
            .arg(&operator.key)
            .arg(format!("--ttl={ttl}"))
            .assert()
            .code(2);
        let stderr = stderr_of(out.get_output());
        assert!(stderr.contains("--ttl"), "{ttl:?}: {stderr}");
        assert!(out.get_output().stdout.is_empty(), "{ttl:?}");
    }
}

#[test]
fn an_approval_execute_would_refuse_is_refused_before_anything_is_written() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    let stranger = s.path("keys/stranger");
    keygen(&stranger, "stranger", "");
    let approve = |key: &Path, approver: &str, ttl: &str| {
        let mut cmd = s.admission();
        cmd.arg("--allowed-signers")
            .arg(&operator.allowed_signers)
            .args(["approve", &plan().to_string(), "--approver", approver])
            .args(["--admission", &admission().to_string(), "--ttl", ttl])
            .arg("--key")
            .arg(key)
            .args(["-o", "force-ack.json"]);
        cmd
    };

    // Longer than the runtime's limit: refused with or without the signers, as bad input.
    let out = approve(&operator.key, APPROVER, "2h").assert().code(2);
    let stderr = stderr_of(out.get_output());
    assert!(
        stderr.contains("--ttl") && stderr.contains("1h"),
        "{stderr}"
    );
    assert!(!s.path("force-ack.json").exists());

    // A key, or a principal, the trusted signers do not list: refused as execute would (3).
    for (key, approver, needle) in [
        (&stranger, APPROVER, "not listed"),
        (&operator.key, "mallory@example.com", "mallory@example.com"),
    ] {
        let out = approve(key, approver, "10m").assert().code(3);
        let stderr = stderr_of(out.get_output());
        assert!(
            stderr.contains("FORCE_ACK_INVALID") && stderr.contains(needle),
            "{stderr}"
        );
        assert!(!s.path("force-ack.json").exists());
    }

    // `--payload` knows no key yet, but an unlisted principal is refused before signing.
    let out = s
        .admission()
        .arg("--allowed-signers")
        .arg(&operator.allowed_signers)
        .args(["approve", "--payload", &plan().to_string()])
        .args(["--approver", "mallory@example.com"])
        .args([
            "--admission",
            &admission().to_string(),
            "-o",
            "payload.json",
        ])
        .assert()
        .code(3);
    assert!(stderr_of(out.get_output()).contains("mallory@example.com"));
    assert!(!s.path("payload.json").exists());

    // What the signers trust, up to the limit, is written.
    approve(&operator.key, APPROVER, "1h").assert().success();
    assert_eq!(read_json(&s.path("force-ack.json"))["approver"], APPROVER);
}
