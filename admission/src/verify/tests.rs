//! Real chains in a temporary store, over a real repository made with `git`, then tampered
//! with one part at a time. Each test asserts exactly which checks fail, so a tamper that also
//! broke an unrelated check would show.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use protocol::artifact::effect::{Effect, FS_WRITE, GIT_COMMIT};
use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, Costs, Determinism, ErrorInfo, Gate, GateDecision,
    GateRecord, MechanismRef, NextActionsRef, OutputBundle, Plan, ResultArtifact, ResultPredicate,
    ResultStatus, ResultWitness, RunOutcome, RunRecord, Subject,
};
use protocol::artifact::{Artifact, Kind};
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::force_ack::ssh_key::rand_core::OsRng;
use protocol::force_ack::ssh_key::{Algorithm, PrivateKey};
use protocol::force_ack::{self, NAMESPACE};
use protocol::store::{Provenance, Store};
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use time::macros::datetime;

use super::{verify, Report, VerifyError};
use crate::outcome::Outcome;
use crate::pipeline::{RunRef, RUNS};

const ALICE: &str = "alice@example.com";
const MAIN: &str = "refs/heads/main";

/// Runs `git` in `dir` with no user or system configuration, returning trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Verify Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A workspace holding `repo` with two commits on main (`from`, then `to`), and a store.
struct World {
    dir: TempDir,
    store: Store,
    key: PrivateKey,
    from: String,
    to: String,
    tree: String,
    blob: String,
    /// a.txt at the base commit.
    base_blob: String,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("ws/repo");
        fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        fs::write(repo.join("a.txt"), "one\n").unwrap();
        git(&repo, &["add", "a.txt"]);
        git(&repo, &["commit", "-q", "-m", "base"]);
        let from = git(&repo, &["rev-parse", "HEAD"]);
        let base_blob = git(&repo, &["rev-parse", "HEAD:a.txt"]);
        fs::write(repo.join("a.txt"), "two\n").unwrap();
        git(&repo, &["commit", "-q", "-a", "-m", "apply a patch"]);
        let store = Store::open(dir.path().join("store")).unwrap();
        Self {
            to: git(&repo, &["rev-parse", "HEAD"]),
            tree: git(&repo, &["rev-parse", "HEAD^{tree}"]),
            blob: git(&repo, &["rev-parse", "HEAD:a.txt"]),
            base_blob,
            from,
            store,
            key: PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap(),
            dir,
        }
    }

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    fn repo(&self) -> PathBuf {
        self.workspace().join("repo")
    }

    fn signers(&self) -> AllowedSigners {
        signers_for(&self.key)
    }

    fn put<T: Kind>(&self, typed: &T) -> Digest {
        let artifact = Artifact::from_typed(typed).unwrap();
        self.put_value(artifact.into_value())
    }

    fn put_value(&self, value: Value) -> Digest {
        let artifact = Artifact::from_value(value).unwrap();
        self.store
            .put_artifact(&artifact, &Provenance::new("verify tests"))
            .unwrap()
    }

    fn verify(&self, start: &Digest) -> Report {
        verify(&self.store, &self.workspace(), Some(&self.signers()), start).unwrap()
    }

    /// Flips one bit of a stored object, leaving it filed under its old name.
    fn corrupt(&self, digest: &Digest) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.store.path_of(digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0x01;
        fs::write(&path, bytes).unwrap();
    }
}

fn signers_for(key: &PrivateKey) -> AllowedSigners {
    let line = format!(
        "{ALICE} namespaces=\"{NAMESPACE}\" {}",
        key.public_key().to_openssh().unwrap()
    );
    AllowedSigners::parse(&line).unwrap()
}

fn other() -> Digest {
    Digest::of_bytes(b"something else")
}

type Edit<T> = Option<Box<dyn Fn(&mut T)>>;

/// How to build a chain: each field tampers with one part; the default is a sound chain.
#[derive(Default)]
struct Knobs {
    destructive: bool,
    plan: Edit<Plan>,
    admission: Edit<AdmissionWitness>,
    omit_force_ack: bool,
    /// Edits the force-ack before it is signed.
    ack_unsigned: Edit<Value>,
    /// Edits the force-ack after it is signed.
    ack_signed: Edit<Value>,
    /// The plan the nonce is claimed for; the chain's plan by default.
    claim_for: Option<Digest>,
    skip_claim: bool,
    result: Edit<ResultArtifact>,
    witness: Edit<ResultWitness>,
    /// Edits the witness as stored JSON, for shapes its typed view cannot be built into.
    witness_json: Edit<Value>,
    skip_results_ref: bool,
    record: Edit<RunRecord>,
}

/// The digests of a built chain.
struct Built {
    /// The patch blob the plan names as its input.
    input: Digest,
    plan: Digest,
    admission: Digest,
    force_ack: Option<Digest>,
    result: Digest,
    witness: Digest,
    record: Digest,
}

fn apply<T>(edit: &Edit<T>, value: &mut T) {
    if let Some(edit) = edit {
        edit(value);
    }
}

fn build(w: &World, k: Knobs) -> Built {
    let input = w
        .store
        .put_blob_bytes(
            b"--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+two\n",
            &Provenance::new("verify tests"),
        )
        .unwrap();
    let mechanism = MechanismRef {
        id: "git_apply_patch".to_owned(),
        version: "0.1.0".to_owned(),
    };
    let mut plan = Plan {
        mechanism: mechanism.clone(),
        operation: "apply".to_owned(),
        params: json!({"repo": "repo", "message": "apply a patch"}),
        inputs: [("patch".to_owned(), input)].into(),
        state: json!({"repo": "repo", "ref": MAIN, "base": w.from}),
        intended_effects: vec![
            Effect::new(FS_WRITE, "repo/a.txt")
                .with("path", "a.txt")
                .with("before", w.base_blob.as_str())
                .with("after", w.blob.as_str())
                .with("mode", "100644"),
            Effect::new(GIT_COMMIT, "repo")
                .with("ref", MAIN)
                .with("from", w.from.as_str())
                .with("to", w.to.as_str())
                .with("tree", w.tree.as_str()),
        ],
        touches: Vec::new(),
        destructive: k.destructive,
        destructive_reasons: if k.destructive {
            vec!["overwrites a local change".to_owned()]
        } else {
            Vec::new()
        },
        determinism: Determinism::D0,
        estimated_costs: Costs::default(),
        exec_recipe: Vec::new(),
    };
    apply(&k.plan, &mut plan);
    let plan_hash = w.put(&plan);

    let mut admission = AdmissionWitness {
        plan_hash,
        mechanism: plan.mechanism.clone(),
        policy_digest: Digest::of_bytes(b"policy"),
        gates: Gate::ALL
            .into_iter()
            .map(|gate| GateRecord {
                gate,
                decision: GateDecision::Pass,
                code: None,
                reason: "holds".to_owned(),
            })
            .collect(),
        decision: AdmissionDecision::Admit,
        force_ack_required: plan.destructive,
        workorder: None,
    };
    apply(&k.admission, &mut admission);
    let admission_hash = w.put(&admission);
    let record = crate::pipeline::AdmissionRecord {
        admission: admission_hash,
        admitted: true,
        force_ack_required: plan.destructive,
        mechanism: "git_apply_patch".to_owned(),
        workorder: Digest::of_bytes(b"the workorder"),
        run_uid: "01a2054f-b568-7408-a700-b3261992ece7".to_owned(),
        deadline_ms: 60_000,
    };
    w.store
        .set_ref(crate::pipeline::ADMISSIONS, &plan_hash.hex(), &record)
        .unwrap();

    let force_ack_hash = (plan.destructive && !k.omit_force_ack).then(|| {
        let nonce = force_ack::random_nonce().unwrap();
        let mut ack = force_ack::new_unsigned(
            &plan_hash,
            &admission_hash,
            ALICE,
            datetime!(2026-11-22 18:15 UTC),
            &nonce,
        );
        apply(&k.ack_unsigned, &mut ack);
        ack["signature"] = json!(force_ack::sign(&ack, &w.key).unwrap());
        apply(&k.ack_signed, &mut ack);
        if !k.skip_claim {
            let claim_for = k.claim_for.unwrap_or(plan_hash);
            force_ack::claim_nonce(&w.store, &nonce, &claim_for).unwrap();
        }
        w.put_value(ack)
    });

    let mut result = ResultArtifact {
        plan_hash,
        status: ResultStatus::Success,
        effects_applied: plan.intended_effects.clone(),
        evidence: json!({"commit": w.to}),
        error: None,
    };
    apply(&k.result, &mut result);
    let result_hash = w.put(&result);

    // The subject is the commit the (possibly edited) plan predicts, as the server writes it.
    let commit = plan
        .intended_effects
        .iter()
        .find(|e| e.effect_type == GIT_COMMIT)
        .and_then(|e| e.detail["to"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mut witness = ResultWitness::new(
        vec![Subject {
            name: format!("repo@{MAIN}"),
            digest: [("gitCommit".to_owned(), commit.clone())].into(),
        }],
        ResultPredicate {
            plan_hash,
            admission_hash,
            force_ack_hash,
            result_hash,
            mechanism: plan.mechanism.clone(),
            state_before: plan.state.clone(),
            state_after: json!({"repo": "repo", "ref": MAIN, "commit": commit}),
        },
    );
    apply(&k.witness, &mut witness);
    let mut witness = Artifact::from_typed(&witness).unwrap().into_value();
    apply(&k.witness_json, &mut witness);
    let witness_hash = w.put_value(witness);
    if !k.skip_results_ref {
        w.store
            .set_ref(
                "results",
                &plan_hash.hex(),
                &json!({"result": result_hash, "witness": witness_hash, "succeeded": true}),
            )
            .unwrap();
    }

    let mut record = RunRecord {
        work_order_id: "wo-1".to_owned(),
        run_uid: "run-1".to_owned(),
        mechanism: mechanism.id,
        operation: "apply".to_owned(),
        decision: GateDecision::Pass,
        outcome: RunOutcome::Succeeded,
        workorder: None,
        ticket_id: None,
        failed_gate: None,
        output_id: None,
        plan_hash: Some(plan_hash),
        admission_hash: Some(admission_hash),
        force_ack_hash,
        result_hash: Some(result_hash),
        witness_hash: Some(witness_hash),
        error: None,
        next_actions: NextActionsRef::Inline(Vec::new()),
        started_at: None,
        finished_at: None,
    };
    apply(&k.record, &mut record);
    let record_hash = w.put(&record);
    Built {
        input,
        plan: plan_hash,
        admission: admission_hash,
        force_ack: force_ack_hash,
        result: result_hash,
        witness: witness_hash,
        record: record_hash,
    }
}

fn show(report: &Report) -> String {
    report.checks.iter().map(|c| format!("  {c}\n")).collect()
}

/// Asserts that exactly the checks `names` failed.
fn assert_failures(report: &Report, names: &[&str]) {
    let failed: BTreeSet<&str> = report.failures().map(|c| c.name.as_str()).collect();
    let expected: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(failed, expected, "\n{}", show(report));
    assert_eq!(report.verified(), names.is_empty(), "\n{}", show(report));
}

/// The failed check `name`, asserting its code.
fn failure<'a>(report: &'a Report, name: &'a str, code: ErrorCode) -> &'a super::Check {
    let check = report
        .named(name)
        .find(|c| !c.held())
        .unwrap_or_else(|| panic!("{name} did not fail:\n{}", show(report)));
    assert_eq!(check.code, Some(code), "{check}");
    check
}

fn passed<'a>(report: &'a Report, name: &'a str) -> &'a super::Check {
    let check = report
        .named(name)
        .next()
        .unwrap_or_else(|| panic!("no check {name}:\n{}", show(report)));
    assert_eq!(check.outcome, Outcome::Pass, "{check}");
    check
}

#[test]
fn a_sound_chain_verifies_from_the_run_record_the_witness_and_the_result() {
    let w = World::new();
    let b = build(&w, Knobs::default());
    for start in [b.record, b.witness, b.result] {
        let report = w.verify(&start);
        assert_failures(&report, &[]);
        assert_eq!(report.start, start);
        assert_eq!(report.plan_hash, Some(b.plan));
        assert_eq!(report.admission_hash, Some(b.admission));
        assert_eq!(report.result_hash, Some(b.result));
        assert_eq!(report.witness_hash, Some(b.witness));
        assert_eq!(report.force_ack_hash, None);
        for name in [
            "artifact.witness",
            "artifact.result",
            "artifact.plan",
            "artifact.input",
            "artifact.admission",
            "links.plan",
            "links.admission",
            "links.force_ack",
            "links.result",
            "witness.statement",
            "witness.mechanism",
            "witness.subject",
            "admission.plan",
            "admission.decision",
            "admission.mechanism",
            "force_ack.required",
            "result.status",
            "result.effects",
            "state.repository",
            "state.commit",
            "state.tree",
            "state.parent",
            "state.ref",
        ] {
            passed(&report, name);
        }
        assert!(passed(&report, "state.ref").detail.contains("points to"));
        // The fs.write effect is checked against the commit's diff, so nothing is left over.
        assert!(passed(&report, "state.files")
            .detail
            .contains("exactly the 1 planned"));
        assert!(report.named("state.other").next().is_none());
    }
    let report = w.verify(&b.record);
    assert_eq!(report.kind, RunRecord::KIND);
    assert_eq!(report.run_record_hash, Some(b.record));
    passed(&report, "artifact.run_record");
    passed(&report, "run_record.outcome");
    assert!(passed(&report, "links.plan").detail.contains("the result"));
    assert!(passed(&report, "artifact.witness")
        .detail
        .contains("named by the run record"));
    let from_result = w.verify(&b.result);
    assert!(passed(&from_result, "artifact.witness")
        .detail
        .contains("recorded by the server"));
}

/// The state checks are the plan's mechanism's: a mechanism that is not built in has none,
/// so every effect it planned, a `git.commit` included, is named by a skipped `state.other`
/// and no repository is read.
#[test]
fn the_state_of_a_mechanism_that_is_not_built_in_is_not_checked_and_says_so() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            plan: Some(Box::new(|plan: &mut Plan| {
                plan.mechanism.id = "fs_write".to_owned();
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.witness);
    assert_failures(&report, &[]);
    let state: Vec<&super::Check> = report
        .checks
        .iter()
        .filter(|c| c.name.starts_with("state."))
        .collect();
    assert_eq!(state.len(), 1, "\n{}", show(&report));
    assert_eq!(state[0].name, "state.other");
    assert_eq!(state[0].outcome, Outcome::Skip, "{}", state[0]);
    assert_eq!(
        state[0].detail,
        "no offline state check for 1 fs.write, 1 git.commit"
    );
}

#[test]
fn a_sound_destructive_chain_verifies_and_trust_is_skipped_without_allowed_signers() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &[]);
    assert_eq!(report.force_ack_hash, b.force_ack);
    for name in [
        "artifact.force_ack",
        "force_ack.required",
        "force_ack.binding",
        "force_ack.signature",
        "force_ack.trust",
        "force_ack.nonce",
    ] {
        passed(&report, name);
    }
    assert!(passed(&report, "force_ack.trust").detail.contains(ALICE));

    let unchecked = verify(&w.store, &w.workspace(), None, &b.witness).unwrap();
    assert_failures(&unchecked, &[]);
    let trust = unchecked.named("force_ack.trust").next().unwrap();
    assert_eq!(trust.outcome, Outcome::Skip, "{trust}");
    assert!(trust.held());
    assert!(trust.detail.contains("not checked"), "{trust}");
    passed(&unchecked, "force_ack.signature");
}

#[test]
fn later_commits_on_the_branch_are_fine() {
    let w = World::new();
    let b = build(&w, Knobs::default());
    fs::write(w.repo().join("b.txt"), "later\n").unwrap();
    git(&w.repo(), &["add", "b.txt"]);
    git(&w.repo(), &["commit", "-q", "-m", "later"]);
    let report = w.verify(&b.record);
    assert_failures(&report, &[]);
    assert!(
        passed(&report, "state.ref")
            .detail
            .contains("1 commit(s) on top"),
        "{}",
        show(&report)
    );
}

#[test]
fn a_repository_at_the_workspace_root_is_resource_dot() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            plan: Some(Box::new(|plan| {
                for effect in &mut plan.intended_effects {
                    effect.resource = if effect.effect_type == GIT_COMMIT {
                        ".".to_owned()
                    } else {
                        "a.txt".to_owned()
                    };
                }
            })),
            ..Knobs::default()
        },
    );
    let report = verify(&w.store, &w.repo(), None, &b.record).unwrap();
    assert_failures(&report, &[]);
    passed(&report, "state.repository");
}

#[test]
fn a_flipped_byte_fails_that_artifact_and_every_other_check_still_runs() {
    type Pick = fn(&Built) -> Digest;
    let roles: [(&str, Pick); 5] = [
        ("plan", |b| b.plan),
        ("admission", |b| b.admission),
        ("force_ack", |b| b.force_ack.unwrap()),
        ("result", |b| b.result),
        ("witness", |b| b.witness),
    ];
    for (role, pick) in roles {
        let w = World::new();
        let b = build(
            &w,
            Knobs {
                destructive: true,
                ..Knobs::default()
            },
        );
        w.corrupt(&pick(&b));
        let report = w.verify(&b.record);
        let name = format!("artifact.{role}");
        assert_failures(&report, &[name.as_str()]);
        let check = failure(&report, &name, ErrorCode::IntegrityMismatch);
        assert!(check.detail.contains("corrupt"), "{check}");
        // The digests followed are reported, readable or not.
        assert_eq!(report.witness_hash, Some(b.witness));
        assert_eq!(report.result_hash, Some(b.result));
        assert_eq!(report.plan_hash, Some(b.plan));
        assert_eq!(report.admission_hash, Some(b.admission));
        assert_eq!(report.force_ack_hash, b.force_ack);
        // Checks that do not need the corrupt artifact are still made.
        passed(&report, "run_record.outcome");
        passed(&report, "links.plan");
        if role != "admission" {
            passed(&report, "admission.decision");
        }
        if role != "result" {
            passed(&report, "result.status");
        }
        if role != "plan" {
            passed(&report, "state.commit");
        }
    }
}

#[test]
fn a_start_that_cannot_be_read_or_does_not_start_a_chain_is_an_error() {
    let w = World::new();
    let b = build(&w, Knobs::default());
    let err = verify(&w.store, &w.workspace(), None, &other()).unwrap_err();
    assert!(matches!(err, VerifyError::NotFound(_)), "{err}");
    assert_eq!(err.code(), ErrorCode::UnknownArtifact);

    let err = verify(&w.store, &w.workspace(), None, &b.plan).unwrap_err();
    assert!(matches!(err, VerifyError::Unsupported { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::InvalidParams);
    assert!(err.to_string().contains(Plan::KIND), "{err}");

    let blob = w
        .store
        .put_blob_bytes(b"not an artifact", &Provenance::new("test"))
        .unwrap();
    let err = verify(&w.store, &w.workspace(), None, &blob).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidParams, "{err}");

    w.corrupt(&b.record);
    let err = verify(&w.store, &w.workspace(), None, &b.record).unwrap_err();
    assert!(matches!(err, VerifyError::Unreadable { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::IntegrityMismatch);
}

#[test]
fn a_witness_naming_another_result_breaks_the_link() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            witness: Some(Box::new(|witness| {
                witness.predicate.result_hash = other();
            })),
            ..Knobs::default()
        },
    );
    // From the result: the server's record leads to the witness, which names another result.
    let report = w.verify(&b.result);
    assert_failures(&report, &["links.result"]);
    let check = failure(&report, "links.result", ErrorCode::IntegrityMismatch);
    assert!(check.detail.contains(&other().to_string()), "{check}");
    // From the run record: the witness is trusted first, and its result is not in the store.
    let report = w.verify(&b.record);
    assert_failures(&report, &["links.result", "artifact.result"]);
    failure(&report, "artifact.result", ErrorCode::UnknownArtifact);
}

#[test]
fn a_run_record_that_disagrees_or_did_not_succeed_fails() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            record: Some(Box::new(|record| {
                record.plan_hash = Some(other());
                record.outcome = RunOutcome::Failed;
                record.error = Some(ErrorInfo::new(
                    ErrorCode::DeadlineExceeded,
                    "too slow".to_owned(),
                ));
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["links.plan", "run_record.outcome"]);
    failure(&report, "links.plan", ErrorCode::IntegrityMismatch);
    failure(&report, "run_record.outcome", ErrorCode::DeadlineExceeded);
}

#[test]
fn a_result_without_its_witness_verifies_the_rest_and_fails_the_witness() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            skip_results_ref: true,
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.result);
    assert_failures(&report, &["artifact.witness"]);
    let check = failure(&report, "artifact.witness", ErrorCode::UnknownArtifact);
    assert!(check.detail.contains("not given"), "{check}");
    // The admission comes from what `admission plan` recorded.
    assert_eq!(report.admission_hash, Some(b.admission));
    assert!(passed(&report, "artifact.admission")
        .detail
        .contains("admissions/"));
    passed(&report, "admission.decision");
    passed(&report, "state.ref");

    // A destructive plan's force-ack is named only by the witness.
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            skip_results_ref: true,
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.result);
    assert_failures(&report, &["artifact.witness", "force_ack.required"]);
    failure(&report, "force_ack.required", ErrorCode::ForceAckRequired);
}

#[test]
fn a_denied_admission_fails_the_decision() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            admission: Some(Box::new(|admission| {
                admission.decision = AdmissionDecision::Deny;
                admission.gates[2].decision = GateDecision::Fail;
                admission.gates[2].code = Some(ErrorCode::CapabilityDenied);
                admission.gates[2].reason = "repo/a.txt is not granted".to_owned();
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["admission.decision"]);
    let check = failure(&report, "admission.decision", ErrorCode::AdmissionRequired);
    assert!(check.detail.contains("DENY"), "{check}");
    assert!(
        check.detail.contains("G-CAP FAILed with CAPABILITY_DENIED"),
        "{check}"
    );
}

#[test]
fn an_admission_of_another_plan_or_mechanism_fails() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            admission: Some(Box::new(|admission| {
                admission.plan_hash = other();
                admission.mechanism.version = "9.9.9".to_owned();
                admission.gates.pop();
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.witness);
    assert_failures(
        &report,
        &[
            "admission.plan",
            "admission.mechanism",
            "admission.decision",
        ],
    );
    let check = failure(&report, "admission.decision", ErrorCode::AdmissionRequired);
    assert!(check.detail.contains("G-DET is missing"), "{check}");
}

#[test]
fn a_destructive_plan_without_a_force_ack_fails() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            omit_force_ack: true,
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["force_ack.required"]);
    failure(&report, "force_ack.required", ErrorCode::ForceAckRequired);

    // The admission's word is enough to require one, even for a plan not marked destructive.
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            admission: Some(Box::new(|admission| admission.force_ack_required = true)),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.witness);
    assert_failures(&report, &["force_ack.required"]);
}

#[test]
fn a_force_ack_for_another_plan_fails_its_binding_only() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            ack_unsigned: Some(Box::new(|ack| {
                ack["plan_hash"] = json!(other());
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["force_ack.binding"]);
    let check = failure(&report, "force_ack.binding", ErrorCode::ForceAckInvalid);
    assert!(check.detail.contains(&other().to_string()), "{check}");
    passed(&report, "force_ack.signature");
}

#[test]
fn a_force_ack_changed_after_signing_fails_its_signature() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            ack_signed: Some(Box::new(|ack| {
                ack["approver"] = json!("mallory@example.com");
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["force_ack.signature", "force_ack.trust"]);
    failure(&report, "force_ack.signature", ErrorCode::ForceAckInvalid);
    // Without allowed_signers the signature is still checked.
    let report = verify(&w.store, &w.workspace(), None, &b.record).unwrap();
    assert_failures(&report, &["force_ack.signature"]);
}

#[test]
fn a_force_ack_by_an_untrusted_key_fails_trust() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            ..Knobs::default()
        },
    );
    let stranger = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let report = verify(
        &w.store,
        &w.workspace(),
        Some(&signers_for(&stranger)),
        &b.record,
    )
    .unwrap();
    assert_failures(&report, &["force_ack.trust"]);
    failure(&report, "force_ack.trust", ErrorCode::ForceAckInvalid);
    passed(&report, "force_ack.signature");
}

#[test]
fn a_force_ack_whose_nonce_was_not_claimed_for_this_plan_fails() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            skip_claim: true,
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["force_ack.nonce"]);
    failure(&report, "force_ack.nonce", ErrorCode::ForceAckInvalid);

    let w = World::new();
    let b = build(
        &w,
        Knobs {
            destructive: true,
            claim_for: Some(other()),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["force_ack.nonce"]);
    failure(&report, "force_ack.nonce", ErrorCode::ForceAckReplayed);
}

#[test]
fn a_failed_result_or_other_effects_fail_the_result_checks() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            result: Some(Box::new(|result| {
                result.status = ResultStatus::Failure;
                result.effects_applied.clear();
                result.error = Some(ErrorInfo::new(
                    ErrorCode::ExecutionFailed,
                    "the ref moved".to_owned(),
                ));
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["result.status", "result.effects"]);
    failure(&report, "result.status", ErrorCode::ExecutionFailed);
    let check = failure(&report, "result.effects", ErrorCode::ExecutionFailed);
    assert!(check.detail.contains("intended but not applied"), "{check}");

    let w = World::new();
    let b = build(
        &w,
        Knobs {
            result: Some(Box::new(|result| {
                result.effects_applied.reverse();
                result
                    .effects_applied
                    .push(Effect::new(FS_WRITE, "repo/extra.txt"));
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["result.effects"]);
    let check = failure(&report, "result.effects", ErrorCode::ExecutionFailed);
    assert!(check.detail.contains("applied but not intended"), "{check}");
    assert!(check.detail.contains("repo/extra.txt"), "{check}");
    assert!(
        !check.detail.contains("intended but not applied"),
        "{check}"
    );

    // The same effects in another order are one to one.
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            result: Some(Box::new(|result| result.effects_applied.reverse())),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &[]);
    assert!(passed(&report, "result.effects")
        .detail
        .contains("another order"));
}

#[test]
fn a_witness_with_the_wrong_subject_type_or_mechanism_fails() {
    let w = World::new();
    let from = w.from.clone();
    let b = build(
        &w,
        Knobs {
            witness: Some(Box::new(move |witness| {
                witness.subject[0]
                    .digest
                    .insert("gitCommit".to_owned(), from.clone());
                witness.predicate.mechanism.id = "impostor".to_owned();
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.witness);
    assert_failures(&report, &["witness.subject", "witness.mechanism"]);
    failure(&report, "witness.subject", ErrorCode::IntegrityMismatch);
}

#[test]
fn an_input_blob_that_changed_or_is_gone_fails() {
    let w = World::new();
    let b = build(&w, Knobs::default());
    assert!(passed(&w.verify(&b.witness), "artifact.input")
        .detail
        .contains(&b.input.to_string()));

    w.corrupt(&b.input);
    for start in [b.record, b.witness, b.result] {
        let report = w.verify(&start);
        assert_failures(&report, &["artifact.input"]);
        let check = failure(&report, "artifact.input", ErrorCode::IntegrityMismatch);
        assert!(check.detail.contains("patch"), "{check}");
    }

    fs::remove_file(w.store.path_of(&b.input)).unwrap();
    let report = w.verify(&b.witness);
    assert_failures(&report, &["artifact.input"]);
    let check = failure(&report, "artifact.input", ErrorCode::UnknownArtifact);
    assert!(check.detail.contains(&b.input.to_string()), "{check}");
}

#[test]
fn a_statement_of_another_predicate_type_is_no_witness() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            witness_json: Some(Box::new(|witness| {
                witness["predicateType"] = json!("https://example.invalid/other");
            })),
            ..Knobs::default()
        },
    );
    // Named by the run record, it is not read as a witness.
    let report = w.verify(&b.record);
    assert_failures(&report, &["artifact.witness"]);
    let check = failure(&report, "artifact.witness", ErrorCode::InvalidParams);
    assert!(
        check.detail.contains("https://example.invalid/other"),
        "{check}"
    );
    // Given itself, it starts no chain.
    let err = verify(&w.store, &w.workspace(), None, &b.witness).unwrap_err();
    assert!(matches!(err, VerifyError::Unsupported { .. }), "{err}");
}

#[test]
fn an_object_naming_itself_a_witness_by_kind_but_no_in_toto_statement_fails() {
    let w = World::new();
    let b = build(
        &w,
        Knobs {
            witness_json: Some(Box::new(|witness| {
                witness["_type"] = json!("https://in-toto.io/Statement/v0.1");
                witness["kind"] = json!(ResultWitness::KIND);
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.witness);
    assert_failures(&report, &["witness.statement"]);
    failure(&report, "witness.statement", ErrorCode::InvalidParams);
}

/// Sets one detail of the plan's `git.commit` effect.
fn commit_detail(key: &'static str, value: String) -> Knobs {
    Knobs {
        plan: Some(Box::new(move |plan| {
            for effect in &mut plan.intended_effects {
                if effect.effect_type == GIT_COMMIT {
                    effect.detail.insert(key.to_owned(), json!(value));
                }
            }
        })),
        ..Knobs::default()
    }
}

#[test]
fn a_predicted_commit_that_does_not_exist_fails() {
    let w = World::new();
    let b = build(
        &w,
        commit_detail("to", "0123456789abcdef0123456789abcdef01234567".to_owned()),
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.commit", "state.ref"]);
    let check = failure(&report, "state.commit", ErrorCode::ExecutionFailed);
    assert!(check.detail.contains("0123456789abcdef"), "{check}");
    failure(&report, "state.ref", ErrorCode::ExecutionFailed);

    // An abbreviated id is refused rather than read as a zero-padded prefix.
    let w = World::new();
    let short = w.to[..12].to_owned();
    let b = build(&w, commit_detail("to", short));
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.commit"]);
    failure(&report, "state.commit", ErrorCode::InvalidParams);
}

#[test]
fn a_tree_or_parent_other_than_predicted_fails() {
    let w = World::new();
    let base_tree = git(&w.repo(), &["rev-parse", "HEAD~1^{tree}"]);
    let b = build(&w, commit_detail("tree", base_tree.clone()));
    let report = w.verify(&b.record);
    // The files are checked against the commit as it is, so only the prediction fails.
    assert_failures(&report, &["state.tree"]);
    let check = failure(&report, "state.tree", ErrorCode::IntegrityMismatch);
    assert!(check.detail.contains(&base_tree), "{check}");

    let w = World::new();
    let to = w.to.clone();
    let b = build(&w, commit_detail("from", to));
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.parent", "state.files"]);
    failure(&report, "state.parent", ErrorCode::IntegrityMismatch);
}

#[test]
fn a_branch_reset_before_the_commit_fails_the_ref_check() {
    let w = World::new();
    let b = build(&w, Knobs::default());
    git(&w.repo(), &["reset", "-q", "--hard", &w.from]);
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.ref"]);
    let check = failure(&report, "state.ref", ErrorCode::ExecutionFailed);
    assert!(
        check
            .detail
            .contains("the commit is no longer on refs/heads/main"),
        "{check}"
    );
    // The commit itself is still in the object database.
    passed(&report, "state.commit");

    git(&w.repo(), &["checkout", "-q", "-b", "other"]);
    git(&w.repo(), &["branch", "-q", "-D", "main"]);
    let report = w.verify(&b.record);
    let check = failure(&report, "state.ref", ErrorCode::ExecutionFailed);
    assert!(check.detail.contains("does not exist"), "{check}");
}

#[test]
fn repositories_outside_the_workspace_are_refused() {
    let w = World::new();
    let outside = w.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    git(&outside, &["init", "-q", "-b", "main"]);
    // A symlink out of the workspace, and a `.git` file pointing out of it.
    std::os::unix::fs::symlink(&outside, w.workspace().join("link")).unwrap();
    let gitfile = w.workspace().join("gitfile");
    fs::create_dir_all(&gitfile).unwrap();
    fs::write(
        gitfile.join(".git"),
        format!("gitdir: {}\n", outside.join(".git").display()),
    )
    .unwrap();
    for resource in ["../outside", "/etc", "link", "gitfile", "repo/../repo"] {
        let b = build(
            &w,
            Knobs {
                plan: Some(Box::new(move |plan| {
                    for effect in &mut plan.intended_effects {
                        if effect.effect_type == GIT_COMMIT {
                            effect.resource = resource.to_owned();
                        }
                    }
                })),
                ..Knobs::default()
            },
        );
        let report = w.verify(&b.record);
        assert_failures(&report, &["state.repository"]);
        let check = failure(&report, "state.repository", ErrorCode::PathRefused);
        assert!(check.detail.contains(resource), "{check}");
    }

    // A directory inside a repository is not opened as that repository.
    fs::create_dir_all(w.repo().join("sub")).unwrap();
    let b = build(
        &w,
        Knobs {
            plan: Some(Box::new(|plan| {
                for effect in &mut plan.intended_effects {
                    if effect.effect_type == GIT_COMMIT {
                        effect.resource = "repo/sub".to_owned();
                    }
                }
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.repository"]);
    failure(&report, "state.repository", ErrorCode::ExecutionFailed);
}

#[test]
fn checks_print_their_verdict_name_and_code() {
    let pass = super::Check::pass("a.b", "fine");
    assert_eq!(pass.to_string(), "ok a.b: fine");
    let fail = super::Check::fail("a.b", ErrorCode::StalePlan, "moved");
    assert_eq!(fail.to_string(), "FAIL a.b [STALE_PLAN]: moved");
    let skip = super::Check::skip("a.b", "not checked");
    assert_eq!(skip.to_string(), "SKIP a.b: not checked");
    assert!(skip.held());
    // `--json` keeps `ok` and `skipped` beside the outcome.
    assert_eq!(
        serde_json::to_value(&skip).unwrap(),
        json!({"name": "a.b", "outcome": "SKIP", "ok": true, "skipped": true, "detail": "not checked"})
    );
    assert_eq!(
        serde_json::to_value(&fail).unwrap(),
        json!({"name": "a.b", "outcome": "FAIL", "ok": false, "skipped": false, "code": "STALE_PLAN", "detail": "moved"})
    );
}

#[test]
fn a_commit_that_changes_files_the_plan_did_not_state_fails() {
    let w = World::new();
    // The approved plan says nothing about a.txt: the commit did something unapproved.
    let b = build(
        &w,
        Knobs {
            plan: Some(Box::new(|plan| {
                plan.intended_effects
                    .retain(|e| e.effect_type == GIT_COMMIT);
            })),
            result: Some(Box::new(|result| {
                result
                    .effects_applied
                    .retain(|e| e.effect_type == GIT_COMMIT);
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.files"]);
    let check = failure(&report, "state.files", ErrorCode::IntegrityMismatch);
    assert!(
        check
            .detail
            .contains("committed but not planned: fs.write a.txt"),
        "{check}"
    );
}

#[test]
fn a_plan_stating_other_blob_ids_than_the_commit_fails() {
    let w = World::new();
    let wrong = "0123456789abcdef0123456789abcdef01234567";
    let b = build(
        &w,
        Knobs {
            plan: Some(Box::new(move |plan| {
                for effect in &mut plan.intended_effects {
                    if effect.effect_type == FS_WRITE {
                        effect.detail.insert("after".to_owned(), wrong.into());
                    }
                }
            })),
            result: Some(Box::new(move |result| {
                for effect in &mut result.effects_applied {
                    if effect.effect_type == FS_WRITE {
                        effect.detail.insert("after".to_owned(), wrong.into());
                    }
                }
            })),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["state.files"]);
    let check = failure(&report, "state.files", ErrorCode::IntegrityMismatch);
    assert!(
        check.detail.contains("planned but not committed"),
        "{check}"
    );
    assert!(
        check.detail.contains("committed but not planned"),
        "{check}"
    );
}

#[test]
fn a_run_record_is_traced_and_a_broken_trace_fails_verify() {
    let w = World::new();
    // A run outside tickets: the trace checks are made, and skipped.
    let b = build(&w, Knobs::default());
    let report = w.verify(&b.record);
    assert_failures(&report, &[]);
    for name in [
        "trace.workorder",
        "trace.snapshot",
        "trace.ticket",
        "trace.output",
        "trace.pause",
    ] {
        let check = report.named(name).next().unwrap();
        assert_eq!(check.outcome, Outcome::Skip, "{check}");
    }
    // A record naming the output bundle of another run.
    let bundle = w.put(&OutputBundle {
        output_id: "out-run-other".to_owned(),
        run_uid: "run-other".to_owned(),
        work_order_id: "wo-1".to_owned(),
        plan_hash: None,
        admission_hash: None,
        force_ack_hash: None,
        result_hash: None,
        witness_hash: None,
        commit: None,
        state: None,
        evidence: None,
    });
    let b = build(
        &w,
        Knobs {
            record: Some(Box::new(move |record| record.output_id = Some(bundle))),
            ..Knobs::default()
        },
    );
    let report = w.verify(&b.record);
    assert_failures(&report, &["trace.output"]);
    let check = failure(&report, "trace.output", ErrorCode::IntegrityMismatch);
    assert!(check.detail.contains("run-other"), "{check}");
    // From the witness or the result, the run record is found only under `runs/<uid>`.
    let report = w.verify(&b.result);
    assert_eq!(report.named("trace.output").count(), 0);
    let entry = RunRef {
        run_record: b.record,
        ticket_id: None,
    };
    w.store.set_ref(RUNS, "run-1", &entry).unwrap();
    for start in [b.witness, b.result] {
        let report = w.verify(&start);
        assert_failures(&report, &["trace.output"]);
    }
}
