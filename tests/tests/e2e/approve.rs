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
use tests::output::{exits, json_of, stderr, stdout, string};
use tests::repo::git;
use tests::{Scratch, World};
use time::{Duration, OffsetDateTime};

use crate::admission::{assert_force_ack_refused, Cli};

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
    // One line for the force-ack, one saying it is recorded and how execute uses it.
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.contains("recorded") && stderr.contains(&format!("admission execute {}", plan())),
        "{stderr}"
    );

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

    // The latest approval replaces the first as the plan's recorded one.
    let store = Store::open(s.path(".mechanism")).unwrap();
    let recorded: Digest = reply["recorded"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        store.get_artifact(&recorded).unwrap().value(),
        &reply["force_ack"]
    );
    let record: Value = store.get_ref("approvals", &plan().hex()).unwrap().unwrap();
    assert_eq!(record["force_ack"], recorded.to_string());
    assert_eq!(record["admission"], admission().to_string());
    assert_eq!(record["approver"], APPROVER);
    assert_eq!(record["expires_at"], reply["force_ack"]["expires_at"]);
    let provenance = store.provenance(&recorded).unwrap().unwrap();
    assert_eq!(provenance.producer, "admission approve");
    assert_eq!(provenance.derived_from, [plan()]);
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
    let out = s
        .admission()
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
    // There is no store here: approve made none, and said it recorded nothing.
    let stderr = stderr_of(out.get_output());
    assert!(
        stderr.contains("not recorded") && stderr.contains("--force-ack"),
        "{stderr}"
    );
    assert!(!s.path(".mechanism").exists());

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

// Recorded approvals: `approve` records the force-ack, `execute PLAN` uses it.

/// `admission --json approve PLAN --key KEY` in the world, with `extra` arguments: the reply,
/// whose `recorded` is the digest of the force-ack recorded in the store.
fn approve_recorded(w: &World, plan: &str, extra: &[&str]) -> (Value, Digest) {
    let mut cmd = w.admission();
    cmd.args(["--json", "approve", plan, "--approver", APPROVER, "--key"])
        .arg(&w.operator.key)
        .args(extra);
    let reply = json_of(&exits(&mut cmd, 0));
    let recorded = string(&reply["recorded"]).parse().unwrap();
    (reply, recorded)
}

/// Every journal step label of the run `uid`, in order.
fn journal_labels(w: &World, uid: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(w.store().join("exec").join(uid))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_approval_recorded_by_approve_is_what_execute_uses_without_a_force_ack() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    // Nothing approved yet: execute pauses for a force-ack.
    let report = w.json(&["execute", &plan], 4);
    assert_eq!(report["outcome"], "awaiting_force_ack", "{report:#}");
    assert_eq!(w.head(), base);

    // Approved twice, in text then JSON: the latest approval is the one used.
    let out = w.text(
        &[
            "approve",
            &plan,
            "--approver",
            APPROVER,
            "--key",
            w.operator.key.to_str().unwrap(),
        ],
        0,
    );
    let said = stderr(&out);
    assert!(
        said.contains("recorded") && said.contains(&format!("`admission execute {plan}`")),
        "{said}"
    );
    let first = read_json_str(&stdout(&out));
    let (reply, recorded) = approve_recorded(&w, &plan, &[]);
    assert_ne!(reply["force_ack"]["nonce"], first["nonce"]);

    let report = w.json(&["execute", &plan], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(report["force_ack_hash"], recorded.to_string(), "{report:#}");
    assert_ne!(w.head(), base, "the commit landed");
    assert!(!w.repo().join("src/old.rs").exists());
    let record = w.run_record(&report);
    assert_eq!(record["force_ack_hash"], recorded.to_string(), "{record:#}");
    // The journal says which recorded approval the execution used.
    let labels = journal_labels(&w, &string(&report["run_uid"]));
    assert!(
        labels.iter().any(|l| l.ends_with("-approval.json")),
        "{labels:?}"
    );

    // Back at the base, the recorded force-ack is spent like any other.
    git(&w.repo(), &["reset", "-q", "--hard", &base]);
    let report = w.json(&["execute", &plan], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_REPLAYED", "already used", &base);
}

#[test]
fn an_approval_assembled_with_attach_is_recorded_and_used() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    w.payload_signed_by_ssh_keygen(&plan, force_ack::NAMESPACE);
    let mut cmd = w.admission();
    cmd.args(["--json", "approve", "--attach", "payload.json.sig"])
        .args(["--payload-file", "payload.json"]);
    let reply = json_of(&exits(&mut cmd, 0));
    let recorded = string(&reply["recorded"]);
    assert!(recorded.starts_with("sha256:"), "{reply:#}");

    let report = w.json(&["execute", &plan], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(report["force_ack_hash"], recorded, "{report:#}");
    assert_ne!(w.head(), base);
}

#[test]
fn an_expired_recorded_approval_is_refused_and_a_force_ack_given_wins_over_it() {
    let w = World::new();
    let base = w.head();
    let (plan, admission) = w.destructive_plan("drop", "src/old.rs");
    let (_, expired) = approve_recorded(&w, &plan, &["--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let report = w.json(&["execute", &plan], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_EXPIRED", "expired", &base);

    // A fresh force-ack kept out of the store (approve names none there) and given to
    // execute is used instead of the recorded one.
    let mut cmd = w.s.admission();
    cmd.args([
        "--store",
        "nowhere",
        "approve",
        &plan,
        "--approver",
        APPROVER,
    ])
    .args(["--admission", &admission, "-o", "fresh.json", "--key"])
    .arg(&w.operator.key);
    exits(&mut cmd, 0);
    assert!(!w.s.path("nowhere").exists());
    let report = w.json(&["execute", &plan, "--force-ack", "fresh.json"], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_ne!(report["force_ack_hash"], expired.to_string(), "{report:#}");
    assert!(!w.repo().join("src/old.rs").exists());
}

#[test]
fn an_approval_recorded_for_one_plan_is_not_used_for_another() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    let (other, other_admission) = w.destructive_plan("drop-guide", "docs/guide.txt");

    // Recorded for the plan, but approving the other plan's admission: refused.
    approve_recorded(&w, &plan, &["--admission", &other_admission]);
    let report = w.json(&["execute", &plan], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_INVALID", &other_admission, &base);

    approve_recorded(&w, &plan, &[]);

    let report = w.json(&["execute", &other], 4);
    assert_eq!(report["outcome"], "awaiting_force_ack", "{report:#}");
    assert_eq!(report["force_ack_hash"], Value::Null, "{report:#}");
    assert_eq!(w.head(), base);
    assert!(w.repo().join("docs/guide.txt").exists());

    let report = w.json(&["execute", &plan], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert!(w.repo().join("docs/guide.txt").exists());
}

#[test]
fn a_recorded_force_ack_tampered_in_the_store_fails_its_digest_and_nothing_runs() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    let (_, recorded) = approve_recorded(&w, &plan, &[]);
    let store = Store::open(w.store()).unwrap();
    let object = store.path_of(&recorded);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    set_writable(&object);
    std::fs::write(&object, &bytes).unwrap();

    let report = w.json(&["execute", &plan], 5);
    assert_eq!(report["error"]["code"], "INTEGRITY_MISMATCH", "{report:#}");
    let message = string(&report["error"]["message"]);
    assert!(message.contains("recorded approval"), "{message}");
    assert_eq!(report["force_ack_hash"], Value::Null, "{report:#}");
    assert_eq!(w.head(), base, "the branch moved");
    assert!(w.repo().join("src/old.rs").exists(), "the file was deleted");
}

#[test]
fn approving_with_an_admission_and_no_store_records_nothing_and_makes_no_store() {
    let s = Scratch::new();
    let operator = Operator::new(&s.path("keys"));
    let approve = |json: bool| {
        let mut cmd = s.admission();
        if json {
            cmd.arg("--json");
        }
        cmd.args(["approve", &plan().to_string(), "--approver", APPROVER])
            .args(["--admission", &admission().to_string(), "--key"])
            .arg(&operator.key)
            .args(["-o", "force-ack.json"]);
        cmd.assert().success()
    };
    let out = approve(false);
    let stderr = stderr_of(out.get_output());
    assert!(
        stderr.contains("not recorded")
            && stderr.contains("no store")
            && stderr.contains("--force-ack force-ack.json"),
        "{stderr}"
    );
    verify(&operator, &read_json(&s.path("force-ack.json")));
    assert!(!s.path(".mechanism").exists());

    let out = approve(true);
    let reply: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reply["recorded"], Value::Null, "{reply:#}");
    assert_eq!(read_json(&s.path("force-ack.json")), reply["force_ack"]);
    assert!(!s.path(".mechanism").exists());
}

fn read_json_str(text: &str) -> Value {
    canonical::parse(text.as_bytes()).unwrap()
}

fn set_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}
