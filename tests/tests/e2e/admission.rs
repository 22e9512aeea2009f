//! The `admission` CLI end to end, over the real binaries: every command and every exit code,
//! each gate's denial, each way a force-ack is refused, a stale plan, and mechanisms that break
//! the protocol, die in the middle of `execute`, or report a success the state does not bear out.
//!
//! Each test has its own scratch directory holding a real git repository (`ws/repo`, under the
//! workspace `ws`), an operator key made by `ssh-keygen` (`keys/`), and the store (`store`).
//! Every assertion on an exit code goes through assert_cmd, which prints the command, its
//! stdout and its stderr when the code is not the expected one.

use std::fs;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use protocol::force_ack;
use protocol::{canonical, Digest};
use serde_json::{json, Value};
use tests::fixtures::{Operator, APPROVER};
use tests::output::{exits, json_of, stderr, stdout, string};
use tests::repo::{self, git, rev};
use tests::{Scratch, World};
use time::{Duration, OffsetDateTime};

/// The shipped registry, which the tests edit into the registries they pass with --registry.
const REGISTRY: &str = include_str!("../../../registry/mechanisms.json");

/// The fake mechanism that plans correctly and then misbehaves.
const MISBEHAVING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/misbehaving_mechanism.py"
);

/// The proxy that wraps our mechanism and breaks it in one way (as in the conformance tests).
const BROKEN_PROXY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/broken_proxy.py");

/// The `admission` CLI run in a test's world: `--store store --workspace ws`, trusting the
/// operator's key.
pub(crate) trait Cli {
    /// The world the command runs in.
    fn world(&self) -> &World;

    /// `admission --store store --workspace ws --allowed-signers keys/allowed_signers`, run in
    /// the scratch directory.
    fn admission(&self) -> Command {
        let mut cmd = self.admission_without_signers();
        cmd.arg("--allowed-signers")
            .arg(&self.world().operator.allowed_signers);
        cmd
    }

    /// The same, trusting no force-ack signer.
    fn admission_without_signers(&self) -> Command {
        let mut cmd = self.world().s.admission();
        cmd.args(["--store", "store", "--workspace", "ws"]);
        cmd
    }

    /// `admission --json ARGS`: asserts the exit code and returns stdout as JSON.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut cmd = self.admission();
        cmd.arg("--json").args(args);
        json_of(&exits(&mut cmd, code))
    }

    /// `admission ARGS` for people: asserts the exit code and returns the output.
    fn text(&self, args: &[&str], code: i32) -> Output {
        let mut cmd = self.admission();
        cmd.args(args);
        exits(&mut cmd, code)
    }

    /// Writes `NAME.diff`, the patch of what `edit` does to the repository (which is left as
    /// it was), and the workorder `NAME.json` that applies it; returns the workorder's name.
    fn workorder(&self, name: &str, edit: impl FnOnce(&Path)) -> String {
        let patch = repo::patch_from_edits(&self.world().repo(), edit);
        assert!(!patch.is_empty(), "the edit for {name} made no patch");
        self.workorder_for_patch(name, &patch)
    }

    /// Writes `NAME.diff` holding `patch` and the workorder `NAME.json` applying it.
    fn workorder_for_patch(&self, name: &str, patch: &str) -> String {
        self.world().s.write(&format!("{name}.diff"), patch);
        self.write_json(
            &format!("{name}.json"),
            &git_workorder(name, &format!("{name}.diff")),
        )
    }

    /// Writes `value` as JSON to `name` in the scratch directory and returns `name`.
    fn write_json(&self, name: &str, value: &Value) -> String {
        self.world()
            .s
            .write(name, serde_json::to_vec_pretty(value).expect("JSON"));
        name.to_owned()
    }

    /// A registry file: the shipped one with `edit` applied to its git_apply_patch entry.
    fn registry(&self, name: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut registry: Value = serde_json::from_str(REGISTRY).expect("shipped registry");
        edit(&mut registry["mechanisms"][0]);
        self.write_json(name, &registry)
    }

    /// A registry whose only mechanism is the misbehaving fake in `mode`, started by its
    /// absolute path, and a workorder for it with `params`; returns (registry, workorder).
    fn fake(&self, mode: &str, params: Value) -> (String, String) {
        let program = self.world().s.path("fake/misbehaving_mechanism.py");
        fs::create_dir_all(program.parent().unwrap()).unwrap();
        fs::copy(MISBEHAVING, &program).expect("copy the fake mechanism");
        set_mode(&program, 0o755);
        let registry = self.write_json(
            "fake-registry.json",
            &json!({
                "kind": "mechanism.registry/v0",
                "mechanisms": [{
                    "id": "fake_writer",
                    "version": "1.0.0",
                    "command": {
                        "program": program.to_str().unwrap(),
                        "args": [mode, "--root", "{workspace}", "--store", "{store}"],
                    },
                    "grants": [{"capability": "fs.write", "resources": ["**"]}],
                    "budgets": {"wall_ms": 60000},
                    "determinism_ceiling": {"write": "D0"},
                }],
            }),
        );
        let workorder = self.write_json(
            "fake.json",
            &json!({
                "kind": "mechanism.workorder/v0",
                "work_order_id": format!("fake-{mode}"),
                "mechanism": "fake_writer",
                "operation": "write",
                "params": params,
                "inputs": {},
                // Short, so a client that missed the failure would time out quickly.
                "budget": {"wall_ms": 5000},
            }),
        );
        (registry, workorder)
    }

    /// Plans a destructive workorder deleting `path`: `plan` exits 4. Returns the plan and
    /// admission hashes.
    fn destructive_plan(&self, name: &str, path: &str) -> (String, String) {
        let workorder = self.workorder(name, |dir| {
            git(dir, &["rm", "-q", path]);
        });
        let report = self.json(&["plan", &workorder], 4);
        assert_eq!(report["outcome"], "awaiting_force_ack", "{report:#}");
        assert_eq!(report["destructive"], true, "{report:#}");
        (
            string(&report["plan_hash"]),
            string(&report["admission_hash"]),
        )
    }

    /// `admission approve PLAN --key KEY --approver alice@example.com -o FILE` (exit 0).
    fn approve(&self, plan: &str, key: &Path, file: &str, extra: &[&str]) -> String {
        let mut cmd = self.admission();
        cmd.args(["approve", plan, "--approver", APPROVER, "--key"])
            .arg(key)
            .args(["-o", file])
            .args(extra);
        exits(&mut cmd, 0);
        file.to_owned()
    }

    /// `admission approve --payload PLAN -o payload.json`, then `ssh-keygen -Y sign` of it in
    /// `namespace` with the operator's key, which leaves `payload.json.sig`; returns the
    /// signature.
    fn payload_signed_by_ssh_keygen(&self, plan: &str, namespace: &str) -> String {
        let mut cmd = self.admission();
        cmd.args(["approve", "--payload", plan, "--approver", APPROVER])
            .args(["-o", "payload.json"]);
        exits(&mut cmd, 0);
        let payload = self.world().s.path("payload.json");
        self.world().operator.ssh_keygen_sign(&payload, namespace)
    }

    /// Writes a force-ack made of `unsigned`'s canonical bytes signed by the real `ssh-keygen`
    /// in `namespace` with the operator's key, bypassing `admission approve`'s checks.
    fn force_ack_by_ssh_keygen(&self, name: &str, unsigned: &Value, namespace: &str) -> String {
        let payload = self.world().s.write(
            &format!("{name}.payload"),
            canonical::to_vec(unsigned).unwrap(),
        );
        let signature = self.world().operator.ssh_keygen_sign(&payload, namespace);
        let mut signed = unsigned.clone();
        signed["signature"] = Value::String(signature);
        self.write_json(&format!("{name}.json"), &signed)
    }

    /// The run `uid` (or digest) as `show` prints it, exit 0.
    fn show(&self, id: &str) -> String {
        stdout(&self.text(&["show", id], 0))
    }

    /// The stored run record a report names.
    fn run_record(&self, report: &Value) -> Value {
        let shown = self.json(&["show", &string(&report["run_record"])], 0);
        assert_eq!(shown["kind"], "mechanism.run-record/v0", "{shown:#}");
        shown["artifact"].clone()
    }
}

impl Cli for World {
    fn world(&self) -> &World {
        self
    }
}

/// A workorder applying the patch file `patch` to `repo` in the workspace.
fn git_workorder(id: &str, patch: &str) -> Value {
    json!({
        "kind": "mechanism.workorder/v0",
        "work_order_id": id,
        "mechanism": "git_apply_patch",
        "operation": "apply",
        "params": {
            "repo": "repo",
            "message": format!("apply {id}"),
            "author": {"name": "Agent", "email": "agent@example.com"},
        },
        "inputs": {"patch": patch},
        "budget": {"wall_ms": 60000},
        "ticket_id": "OPS-9",
    })
}

/// `(gate, code)` of every failed gate in a report.
fn failed_gates(report: &Value) -> Vec<(String, String)> {
    report["gates"]
        .as_array()
        .unwrap_or_else(|| panic!("no gates in {report:#}"))
        .iter()
        .filter(|g| g["decision"] == "FAIL")
        .map(|g| (string(&g["gate"]), string(&g["code"])))
        .collect()
}

/// Whether some next action's command contains `needle`.
fn suggests(report: &Value, needle: &str) -> bool {
    report["next_actions"].as_array().is_some_and(|actions| {
        actions
            .iter()
            .any(|a| a["command"].as_str().is_some_and(|c| c.contains(needle)))
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn edit_readme_and_add_file(dir: &Path) {
    repo::write(
        dir,
        "README.md",
        "# fixture\n\nA repository for tests, edited.\n",
    );
    repo::write(dir, "src/new.rs", &repo::numbered("new", 4));
}

/// A force-ack refusal: exit 3 with `code`, the branch where it was, nothing deleted, and a
/// run record that says so.
pub(crate) fn assert_force_ack_refused(
    w: &World,
    report: &Value,
    code: &str,
    needle: &str,
    head: &str,
) {
    assert_eq!(report["outcome"], "denied", "{report:#}");
    assert_eq!(report["exit"], 3, "{report:#}");
    assert_eq!(report["error"]["code"], code, "{report:#}");
    let message = string(&report["error"]["message"]);
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    assert_eq!(w.head(), head, "the branch moved");
    assert!(w.repo().join("src/old.rs").exists(), "the file was deleted");
    let record = w.run_record(report);
    assert_eq!(record["outcome"], "denied", "{record:#}");
    assert_eq!(record["error"]["code"], code, "{record:#}");
    // The way through is a fresh approval, not a changed workorder.
    let plan = string(&report["plan_hash"]);
    assert!(
        suggests(report, &format!("approve {plan} --key")),
        "{report:#}"
    );
    // ... recorded in the store, so execute needs no force-ack file.
    assert!(suggests(report, &format!("execute {plan}")), "{report:#}");
    assert!(!suggests(report, "--force-ack"), "{report:#}");
    assert!(!suggests(report, " -o "), "{report:#}");
    assert!(!suggests(report, "run "), "{report:#}");
}

/// A gate denial: exit 3, exactly `gate` failed with `code`, the branch unmoved, the DENY
/// witness stored and readable, a run record saying so, and the plan not executable. Failures
/// name `case`.
fn assert_denied_by(case: &str, w: &World, report: &Value, gate: &str, code: &str, head: &str) {
    assert_eq!(report["outcome"], "denied", "{case}: {report:#}");
    assert_eq!(report["exit"], 3, "{case}: {report:#}");
    assert_eq!(
        failed_gates(report),
        [(gate.to_owned(), code.to_owned())],
        "{case}: {report:#}"
    );
    assert_eq!(
        report["gates"].as_array().unwrap().len(),
        6,
        "{case}: {report:#}"
    );
    assert_eq!(report["error"]["code"], code, "{case}: {report:#}");
    assert_eq!(w.head(), head, "{case}: the branch moved");
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "", "{case}");

    let admission = string(&report["admission_hash"]);
    let shown = w.show(&admission);
    assert!(shown.contains("DENY"), "{case}: {shown}");
    assert!(shown.contains(&format!("FAIL {gate}")), "{case}: {shown}");
    let witness = w.json(&["show", &admission], 0);
    assert_eq!(
        witness["artifact"]["decision"], "DENY",
        "{case}: {witness:#}"
    );

    let record = w.run_record(report);
    assert_eq!(record["outcome"], "denied", "{case}: {record:#}");
    assert_eq!(record["decision"], "FAIL", "{case}: {record:#}");
    assert!(
        suggests(report, &format!("show {admission}")),
        "{case}: {report:#}"
    );

    // A denied plan has no admission to execute under.
    let plan = string(&report["plan_hash"]);
    let refused = w.json(&["execute", &plan], 3);
    assert_eq!(
        refused["error"]["code"], "ADMISSION_REQUIRED",
        "{case}: {refused:#}"
    );
    assert_eq!(w.head(), head, "{case}: the branch moved");
}

// 1. A non-destructive run, start to finish.

#[test]
fn a_non_destructive_run_commits_verifies_and_is_recorded() {
    let w = World::new();
    let base = w.head();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["run", &workorder], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(report["exit"], 0, "{report:#}");
    assert_eq!(report["destructive"], false, "{report:#}");
    assert_eq!(report["parent"], Value::Null, "{report:#}");
    for field in [
        "plan_hash",
        "admission_hash",
        "result_hash",
        "witness_hash",
        "run_record",
    ] {
        let digest = string(&report[field]);
        assert!(digest.parse::<Digest>().is_ok(), "{field}: {digest}");
    }
    assert_eq!(report["force_ack_hash"], Value::Null, "{report:#}");
    assert!(failed_gates(&report).is_empty(), "{report:#}");
    assert_eq!(report["gates"].as_array().unwrap().len(), 6);

    // The branch moved to the commit the evidence names, one commit on the base, with the edit.
    let commit = string(&report["evidence"]["commit"]);
    assert_eq!(w.head(), commit);
    assert_eq!(rev(&w.repo(), "refs/heads/main~1"), base);
    assert!(w.repo().join("src/new.rs").exists());
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");

    // The chain verifies offline, from the witness and from the run record.
    let witness = string(&report["witness_hash"]);
    assert!(
        suggests(&report, &format!("verify {witness}")),
        "{report:#}"
    );
    let verified = w.json(&["verify", &witness], 0);
    assert_eq!(verified["verified"], true, "{verified:#}");
    let out = w.text(&["verify", &string(&report["run_record"])], 0);
    assert!(stdout(&out).contains(&commit), "{}", stdout(&out));

    // The run and its plan can be read back.
    let uid = string(&report["run_uid"]);
    let shown = w.show(&uid);
    assert!(shown.contains("succeeded"), "{shown}");
    assert!(shown.contains(&string(&report["plan_hash"])), "{shown}");
    let plan = w.show(&string(&report["plan_hash"]));
    assert!(plan.contains("mechanism.plan/v0"), "{plan}");
    assert!(plan.contains("src/new.rs"), "{plan}");
    assert!(
        plan.contains(&commit),
        "the plan predicted the commit: {plan}"
    );
    // ... and what became of the plan: its admission and its result.
    assert!(
        plan.contains(&string(&report["admission_hash"]))
            && plan.contains(&format!("{} (succeeded)", string(&report["result_hash"]))),
        "{plan}"
    );
    let record = w.run_record(&report);
    assert_eq!(record["outcome"], "succeeded");
    assert_eq!(record["decision"], "PASS");
    assert_eq!(record["witness_hash"], report["witness_hash"]);

    // The journal lists the run, completed.
    let log = w.json(&["log"], 0);
    let entries = log["entries"].as_array().expect("log entries");
    assert!(
        entries.iter().any(|e| e["uid"] == uid.as_str()
            && e["command"] == "run"
            && e["status"] == "completed"),
        "{log:#}"
    );
    let text = stdout(&w.text(&["log"], 0));
    assert!(text.contains(&uid), "{text}");
}

/// The id the demo prints for a digest: its first 12 hex digits, after `sha256:`.
fn short(digest: &str) -> &str {
    &digest[..7 + 12]
}

#[test]
fn digest_arguments_take_a_unique_prefix_with_or_without_the_algorithm() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let planned = w.json(&["plan", &workorder], 0);
    let plan = string(&planned["plan_hash"]);
    // `execute` by the 12-hex id the demo prints; `show` and `verify` by bare hex, 8 digits.
    let executed = w.json(&["execute", short(&plan)], 0);
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert_eq!(executed["plan_hash"], planned["plan_hash"], "{executed:#}");
    let witness = string(&executed["witness_hash"]);
    let verified = w.json(&["verify", &witness[7..15]], 0);
    assert_eq!(verified["verified"], true, "{verified:#}");
    let shown = w.json(&["show", &plan[7..15]], 0);
    assert_eq!(shown["kind"], "mechanism.plan/v0", "{shown:#}");
    let by_full_hex = w.json(&["show", &plan[7..]], 0);
    assert_eq!(by_full_hex, shown);

    // Too short, or naming nothing stored: bad input, saying which.
    let short_one = w.json(&["show", &plan[..7 + 7]], 2);
    assert_eq!(
        short_one["error"]["code"], "INVALID_PARAMS",
        "{short_one:#}"
    );
    let unknown = w.json(&["verify", "sha256:00000000"], 2);
    assert_eq!(unknown["error"]["code"], "UNKNOWN_ARTIFACT", "{unknown:#}");
}

// 2. Plan, then execute by hash.

#[test]
fn plan_then_execute_by_hash_runs_as_a_child_of_the_planning_run() {
    let w = World::new();
    let base = w.head();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let planned = w.json(&["plan", &workorder], 0);
    assert_eq!(planned["outcome"], "admitted", "{planned:#}");
    assert_eq!(planned["result_hash"], Value::Null, "{planned:#}");
    assert_eq!(w.head(), base, "planning moved the branch");
    let plan = string(&planned["plan_hash"]);
    assert!(
        suggests(&planned, &format!("execute {plan}")),
        "{planned:#}"
    );

    let executed = w.json(&["execute", &plan], 0);
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert_eq!(executed["parent"], planned["run_uid"], "{executed:#}");
    assert_eq!(executed["plan_hash"], planned["plan_hash"]);
    assert_eq!(executed["admission_hash"], planned["admission_hash"]);
    assert_eq!(w.head(), string(&executed["evidence"]["commit"]));

    // The journal links the two runs both ways.
    let parent = w.json(&["show", &string(&planned["run_uid"])], 0);
    assert_eq!(
        parent["children"],
        json!([executed["run_uid"]]),
        "{parent:#}"
    );
    let child = w.json(&["show", &string(&executed["run_uid"])], 0);
    assert_eq!(
        child["execution"]["parent"], planned["run_uid"],
        "{child:#}"
    );
    let log = stdout(&w.text(&["log"], 0));
    assert!(
        log.contains(&format!("(resumes {})", string(&planned["run_uid"]))),
        "{log}"
    );

    // Executing it again returns the recorded result and applies nothing twice.
    let head = w.head();
    let again = w.json(&["execute", &plan], 0);
    assert_eq!(again["result_hash"], executed["result_hash"], "{again:#}");
    assert_eq!(w.head(), head);
    assert_eq!(rev(&w.repo(), "refs/heads/main~1"), base);
}

/// `git format-patch` mails and a `diff -u` without prefixes (param `strip` 0) run through
/// admission; `strip` is part of the plan, so of its hash.
#[test]
fn format_patch_mails_and_prefix_less_diffs_with_strip_run() {
    let w = World::new();
    let base = w.head();
    let repo = w.repo();
    edit_readme_and_add_file(&repo);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    repo::write(&repo, "src/lib.rs", "changed\n");
    git(&repo, &["commit", "-q", "-am", "two"]);
    let mbox = git(
        &repo,
        &["format-patch", "--stdout", &format!("{base}..main")],
    );
    let no_prefix = git(&repo, &["diff", "--no-prefix", &format!("{base}..main")]);
    git(&repo, &["reset", "-q", "--hard", &base]);

    let mails = w.workorder_for_patch("mails", &mbox);
    // `strip` is in the plan: given as its default, the effects are the same, the hash not.
    let mut order: Value = serde_json::from_slice(&fs::read(w.s.path(&mails)).unwrap()).unwrap();
    order["params"]["strip"] = json!(1);
    let explicit = w.write_json("mails-strip-1.json", &order);
    let planned = w.json(&["plan", &explicit], 0);
    let report = w.json(&["run", &mails], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_ne!(planned["plan_hash"], report["plan_hash"]);
    let effects = |report: &Value| {
        w.json(&["show", &string(&report["plan_hash"])], 0)["intended_effects"].clone()
    };
    assert_eq!(effects(&planned), effects(&report));
    assert_eq!(rev(&repo, "refs/heads/main~1"), base);
    git(&repo, &["reset", "-q", "--hard", &base]);

    let bare = w.workorder_for_patch("bare", &no_prefix);
    let out = w.text(&["plan", &bare], 2);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("set the param `strip` to 0"), "{text}");
    let mut order: Value = serde_json::from_slice(&fs::read(w.s.path(&bare)).unwrap()).unwrap();
    order["params"]["strip"] = json!(0);
    let workorder = w.write_json("bare-strip-0.json", &order);
    let report = w.json(&["run", &workorder], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(rev(&repo, "refs/heads/main~1"), base);
}

// 3. A destructive plan: pause, approve, execute once.

#[test]
fn a_destructive_run_waits_for_a_force_ack_and_executes_once_with_it() {
    let w = World::new();
    let base = w.head();
    let workorder = w.workorder("drop", |dir| {
        git(dir, &["rm", "-q", "src/old.rs"]);
    });
    // For people, `plan` says what is destructive and why, and which store its next actions
    // refer to.
    let text = stdout(&w.text(&["plan", &workorder], 4));
    assert!(
        text.contains("DESTRUCTIVE") && text.contains("deletes src/old.rs"),
        "{text}"
    );
    let store = w.s.root().canonicalize().unwrap().join("store");
    assert!(
        text.contains(&format!("next (store {})", store.display())),
        "{text}"
    );
    let paused = w.json(&["run", &workorder], 4);
    assert_eq!(paused["outcome"], "awaiting_force_ack", "{paused:#}");
    assert_eq!(paused["destructive"], true, "{paused:#}");
    assert_eq!(paused["result_hash"], Value::Null, "{paused:#}");
    assert_eq!(w.head(), base, "the branch moved without a force-ack");
    assert!(w.repo().join("src/old.rs").exists());
    let plan = string(&paused["plan_hash"]);
    assert!(suggests(&paused, &format!("approve {plan}")), "{paused:#}");
    // `approve` records the approval, so the execute suggested needs no force-ack file.
    assert!(suggests(&paused, &format!("execute {plan}")), "{paused:#}");
    assert!(!suggests(&paused, "--force-ack"), "{paused:#}");

    // Executing it by hash without a force-ack waits too.
    let waiting = w.json(&["execute", &plan], 4);
    assert_eq!(waiting["outcome"], "awaiting_force_ack", "{waiting:#}");
    assert_eq!(w.head(), base, "the branch moved without a force-ack");

    // Approved by the short id the demo prints.
    let ack = w.approve(short(&plan), &w.operator.key, "ack.json", &[]);
    let executed = w.json(&["execute", &plan, "--force-ack", &ack], 0);
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert_eq!(executed["parent"], paused["run_uid"], "{executed:#}");
    assert!(
        string(&executed["force_ack_hash"])
            .parse::<Digest>()
            .is_ok(),
        "{executed:#}"
    );
    let commit = string(&executed["evidence"]["commit"]);
    assert_eq!(w.head(), commit);
    assert!(
        !w.repo().join("src/old.rs").exists(),
        "the file is still there"
    );
    let verified = w.json(&["verify", &string(&executed["witness_hash"])], 0);
    assert_eq!(verified["verified"], true, "{verified:#}");
    assert_eq!(verified["force_ack_hash"], executed["force_ack_hash"]);

    // While its effect holds, executing it again returns the recorded result, applies
    // nothing, and does not count as a second use of the force-ack.
    let again = w.json(&["execute", &plan, "--force-ack", &ack], 0);
    assert_eq!(again["result_hash"], executed["result_hash"], "{again:#}");
    assert_eq!(w.head(), commit, "a second execute moved the branch");

    // Back at the base, the same force-ack is spent: a second application needs a fresh one.
    git(&w.repo(), &["reset", "-q", "--hard", &base]);
    let replayed = w.json(&["execute", &plan, "--force-ack", &ack], 3);
    assert_force_ack_refused(&w, &replayed, "FORCE_ACK_REPLAYED", "already used", &base);

    // A fresh approval runs it again, through `run --force-ack` this time.
    let fresh = w.approve(&plan, &w.operator.key, "fresh.json", &[]);
    let rerun = w.json(&["run", &workorder, "--force-ack", &fresh], 0);
    assert_eq!(rerun["outcome"], "succeeded", "{rerun:#}");
    assert_eq!(w.head(), commit, "the same plan makes the same commit");
    assert!(!w.repo().join("src/old.rs").exists());
}

// 4. Force-acks that are refused.

#[test]
fn an_expired_or_too_long_force_ack_is_refused() {
    let w = World::new();
    let base = w.head();
    let (plan, admission) = w.destructive_plan("drop", "src/old.rs");

    // Signed correctly by the trusted key, with ssh-keygen, but expired a minute ago.
    let nonce = force_ack::random_nonce().unwrap();
    let unsigned = force_ack::new_unsigned(
        &plan.parse().unwrap(),
        &admission.parse().unwrap(),
        APPROVER,
        OffsetDateTime::now_utc() - Duration::minutes(1),
        &nonce,
    );
    let expired = w.force_ack_by_ssh_keygen("expired", &unsigned, force_ack::NAMESPACE);
    let report = w.json(&["execute", &plan, "--force-ack", &expired], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_EXPIRED", "expired", &base);

    // Valid for longer than the one hour policy allows (which `approve` refuses to sign).
    let unsigned = force_ack::new_unsigned(
        &plan.parse().unwrap(),
        &admission.parse().unwrap(),
        APPROVER,
        OffsetDateTime::now_utc() + Duration::hours(2),
        &force_ack::random_nonce().unwrap(),
    );
    let long = w.force_ack_by_ssh_keygen("long", &unsigned, force_ack::NAMESPACE);
    let report = w.json(&["execute", &plan, "--force-ack", &long], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_EXPIRED", "more than", &base);

    // Made the same way with a fresh expiry, it is accepted: the expiry was all that was wrong.
    let unsigned = force_ack::new_unsigned(
        &plan.parse().unwrap(),
        &admission.parse().unwrap(),
        APPROVER,
        OffsetDateTime::now_utc() + Duration::minutes(5),
        &force_ack::random_nonce().unwrap(),
    );
    let fresh = w.force_ack_by_ssh_keygen("fresh", &unsigned, force_ack::NAMESPACE);
    let report = w.json(&["execute", &plan, "--force-ack", &fresh], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert!(!w.repo().join("src/old.rs").exists());
}

#[test]
fn a_force_ack_for_another_plan_or_admission_is_refused() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    let (other_plan, other_admission) = w.destructive_plan("drop-guide", "docs/guide.txt");
    assert_ne!(plan, other_plan);

    let other = w.approve(&other_plan, &w.operator.key, "other.json", &[]);
    let report = w.json(&["execute", &plan, "--force-ack", &other], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_INVALID", &other_plan, &base);

    // The right plan, but approved as admitted by another admission.
    let crossed = w.approve(
        &plan,
        &w.operator.key,
        "crossed.json",
        &["--admission", &other_admission],
    );
    let report = w.json(&["execute", &plan, "--force-ack", &crossed], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_INVALID", &other_admission, &base);
    assert!(w.repo().join("docs/guide.txt").exists());
}

#[test]
fn a_force_ack_signed_by_an_untrusted_key_is_refused() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    // Mallory's key claims to be the trusted approver; allowed_signers does not list it, so
    // `approve` told the trusted signers refuses to sign; without them it signs.
    let mallory = Operator::new(&w.s.path("mallory"));
    let mut cmd = w.admission();
    cmd.args(["approve", &plan, "--approver", APPROVER, "--key"])
        .arg(&mallory.key)
        .args(["-o", "mallory.json"]);
    let out = exits(&mut cmd, 3);
    assert!(stderr(&out).contains("not trusted"), "{}", stderr(&out));
    let mut cmd = w.admission_without_signers();
    cmd.args(["approve", &plan, "--approver", APPROVER, "--key"])
        .arg(&mallory.key)
        .args(["-o", "mallory.json"]);
    exits(&mut cmd, 0);
    let report = w.json(&["execute", &plan, "--force-ack", "mallory.json"], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_INVALID", "not trusted", &base);
}

#[test]
fn a_force_ack_signed_in_another_namespace_is_refused() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    let signature = w.payload_signed_by_ssh_keygen(&plan, "something-else");
    let payload = w.s.path("payload.json");

    // `approve --attach` refuses it at once ...
    let mut cmd = w.admission();
    cmd.args(["approve", "--attach", "payload.json.sig"]).args([
        "--payload-file",
        "payload.json",
        "-o",
        "ack.json",
    ]);
    let out = exits(&mut cmd, 3);
    assert!(stderr(&out).contains("something-else"), "{}", stderr(&out));

    // ... and put together by hand, execute refuses it too.
    let mut ack = canonical::parse(&fs::read(&payload).unwrap()).unwrap();
    ack["signature"] = Value::String(signature);
    let ack = w.write_json("ack.json", &ack);
    let report = w.json(&["execute", &plan, "--force-ack", &ack], 3);
    assert_force_ack_refused(&w, &report, "FORCE_ACK_INVALID", "something-else", &base);

    // The same payload signed in the force-ack namespace, as the README shows, is accepted.
    fs::rename(&payload, w.s.path("good.json")).unwrap();
    w.operator
        .ssh_keygen_sign(&w.s.path("good.json"), force_ack::NAMESPACE);
    let mut cmd = w.admission();
    cmd.args(["approve", "--attach", "good.json.sig"]).args([
        "--payload-file",
        "good.json",
        "-o",
        "good-ack.json",
    ]);
    exits(&mut cmd, 0);
    let report = w.json(&["execute", &plan, "--force-ack", "good-ack.json"], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert!(!w.repo().join("src/old.rs").exists());
}

#[test]
fn without_allowed_signers_no_destructive_plan_runs() {
    let w = World::new();
    let base = w.head();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    let ack = w.approve(&plan, &w.operator.key, "ack.json", &[]);
    let mut cmd = w.admission_without_signers();
    cmd.args(["--json", "execute", &plan, "--force-ack", &ack]);
    let report = json_of(&exits(&mut cmd, 3));
    assert_force_ack_refused(&w, &report, "FORCE_ACK_INVALID", "--allowed-signers", &base);
    assert!(
        suggests(
            &report,
            &format!("execute {plan} --allowed-signers ALLOWED_SIGNERS")
        ),
        "{report:#}"
    );

    // The refusal spent nothing: with the signers trusted, the same force-ack runs.
    let report = w.json(&["execute", &plan, "--force-ack", &ack], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert!(!w.repo().join("src/old.rs").exists());
}

// 5. Gate denials, and the mechanism's own refusals.

/// One gate denial over the CLI: `prepares` writes what the case needs into the world and
/// returns the arguments of the `admission --json` run that `gate` then denies, alone, with
/// `code`, its reason saying `says`.
struct Denial {
    name: &'static str,
    prepares: fn(&World) -> Vec<String>,
    gate: &'static str,
    code: &'static str,
    says: Option<&'static str>,
}

/// `--registry REGISTRY run WORKORDER`.
fn run_with_registry(registry: String, workorder: String) -> Vec<String> {
    vec!["--registry".into(), registry, "run".into(), workorder]
}

const DENIALS: &[Denial] = &[
    Denial {
        name: "G-CAP: effects outside the registry grant",
        prepares: |w| {
            let registry = w.registry("cap.json", |entry| {
                for grant in entry["grants"].as_array_mut().unwrap() {
                    grant["resources"] = json!(["other/**"]);
                }
            });
            run_with_registry(registry, w.workorder("edit", edit_readme_and_add_file))
        },
        gate: "G-CAP",
        code: "CAPABILITY_DENIED",
        says: None,
    },
    Denial {
        name: "G-BUDGET: a plan estimated over the workorder budget",
        prepares: |w| {
            let workorder = w.workorder("edit", edit_readme_and_add_file);
            // git_apply_patch estimates 500 ms plus 5 per file.
            let mut order: Value =
                serde_json::from_slice(&fs::read(w.s.path(&workorder)).unwrap()).unwrap();
            order["budget"]["wall_ms"] = json!(100);
            vec!["run".into(), w.write_json("tight.json", &order)]
        },
        gate: "G-BUDGET",
        code: "BUDGET_EXCEEDED",
        says: Some("budget of 100"),
    },
    Denial {
        name: "G-INTEGRITY: a mechanism at another version than the pin",
        prepares: |w| {
            let registry = w.registry("pin.json", |entry| entry["version"] = json!("9.9.9"));
            run_with_registry(registry, w.workorder("edit", edit_readme_and_add_file))
        },
        gate: "G-INTEGRITY",
        code: "UNSUPPORTED_VERSION",
        says: Some("9.9.9"),
    },
    Denial {
        name: "G-DET: an operation the registry sets no ceiling for",
        prepares: |w| {
            let registry = w.registry("det.json", |entry| {
                entry["determinism_ceiling"] = json!({});
            });
            run_with_registry(registry, w.workorder("edit", edit_readme_and_add_file))
        },
        gate: "G-DET",
        code: "CAPABILITY_DENIED",
        says: None,
    },
    Denial {
        name: "G-DET: a D0 plan that does not reproduce",
        prepares: |w| {
            let (registry, workorder) = w.fake("unstable-plan", json!({"text": "hello"}));
            run_with_registry(registry, workorder)
        },
        gate: "G-DET",
        code: "STALE_PLAN",
        says: Some("does not reproduce"),
    },
    Denial {
        name: "G-SCHEMA: params the operation schema does not allow",
        prepares: |w| {
            // The fake plans whatever it is given, so the gate is what catches the unknown
            // param.
            let (registry, workorder) = w.fake("crash", json!({"text": "hello", "colour": "red"}));
            run_with_registry(registry, workorder)
        },
        gate: "G-SCHEMA",
        code: "INVALID_PARAMS",
        says: Some("colour"),
    },
    Denial {
        name: "G-PROVENANCE: an input stored without provenance",
        prepares: |w| {
            let patch = repo::patch_from_edits(&w.repo(), edit_readme_and_add_file);
            w.s.write("edit.diff", &patch);
            let out = w.text(&["put", "edit.diff"], 0);
            let digest: Digest = stdout(&out).trim().parse().expect("put prints a digest");
            // The blob stays; the record of where it came from goes.
            let hex = digest.hex();
            let sidecar = w.s.path(&format!(
                "store/objects/sha256/{}/{}.prov.json",
                &hex[..2],
                &hex[2..]
            ));
            assert!(sidecar.exists(), "no sidecar at {}", sidecar.display());
            fs::remove_file(&sidecar).unwrap();
            let orphan = git_workorder("orphan", &digest.to_string());
            vec!["run".into(), w.write_json("orphan.json", &orphan)]
        },
        gate: "G-PROVENANCE",
        code: "UNKNOWN_ARTIFACT",
        says: None,
    },
];

#[test]
fn each_gate_denies_a_run_that_breaks_it() {
    for case in DENIALS {
        let w = World::new();
        let base = w.head();
        let args = (case.prepares)(&w);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = w.json(&args, 3);
        assert_denied_by(case.name, &w, &report, case.gate, case.code, &base);
        if let Some(says) = case.says {
            let reason = failed_gate_reason(&report);
            assert!(
                reason.contains(says),
                "{}: {says:?} not in {reason}",
                case.name
            );
        }
    }
}

#[test]
fn git_apply_patch_itself_refuses_unknown_params_as_bad_input() {
    let w = World::new();
    let base = w.head();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let mut order: Value =
        serde_json::from_slice(&fs::read(w.s.path(&workorder)).unwrap()).unwrap();
    order["params"]["colour"] = json!("red");
    let workorder = w.write_json("colour.json", &order);
    // The mechanism refuses to plan (INVALID_PARAMS), so there is no plan to gate: exit 2.
    let report = w.json(&["run", &workorder], 2);
    assert_eq!(report["outcome"], "error", "{report:#}");
    assert_eq!(report["error"]["code"], "INVALID_PARAMS", "{report:#}");
    assert!(
        string(&report["error"]["message"]).contains("colour"),
        "{report:#}"
    );
    assert_eq!(report["plan_hash"], Value::Null, "{report:#}");
    assert_eq!(report["admission_hash"], Value::Null, "{report:#}");
    assert_eq!(w.run_record(&report)["outcome"], "error");
    assert_eq!(w.head(), base);
}

#[test]
fn the_mechanism_refuses_paths_into_git_or_outside_the_repository() {
    let w = World::new();
    let base = w.head();
    let config = fs::read(w.repo().join(".git/config")).unwrap();
    let into_git = w.workorder_for_patch(
        "into-git",
        "diff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n\
         @@ -1,1 +1,2 @@\n [core]\n+\thooksPath = /tmp/evil\n",
    );
    let outside = w.workorder_for_patch(
        "outside",
        "diff --git a/../outside.txt b/../outside.txt\nnew file mode 100644\n\
         --- /dev/null\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+escaped\n",
    );
    for (workorder, path) in [(into_git, ".git/config"), (outside, "../outside.txt")] {
        let report = w.json(&["run", &workorder], 3);
        assert_eq!(report["outcome"], "denied", "{report:#}");
        assert_eq!(report["error"]["code"], "PATH_REFUSED", "{report:#}");
        assert!(
            string(&report["error"]["message"]).contains(path),
            "{report:#}"
        );
        assert_eq!(w.run_record(&report)["outcome"], "denied");
    }
    // A repository outside the workspace is out of the mechanism's reach.
    w.workorder("edit", edit_readme_and_add_file);
    let mut order = git_workorder("climb", "edit.diff");
    order["params"]["repo"] = json!("../..");
    let workorder = w.write_json("climb.json", &order);
    let report = w.json(&["run", &workorder], 3);
    assert_eq!(report["error"]["code"], "CAPABILITY_DENIED", "{report:#}");

    // Nothing was written anywhere.
    assert_eq!(w.head(), base);
    assert_eq!(fs::read(w.repo().join(".git/config")).unwrap(), config);
    assert!(!w.s.path("ws/outside.txt").exists());
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
}

fn failed_gate_reason(report: &Value) -> String {
    report["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["decision"] == "FAIL")
        .map(|g| string(&g["reason"]))
        .unwrap_or_else(|| panic!("no failed gate in {report:#}"))
}

// 6. A stale plan.

#[test]
fn a_plan_whose_branch_moved_is_stale_and_not_executed() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let planned = w.json(&["plan", &workorder], 0);
    let plan = string(&planned["plan_hash"]);

    repo::write(&w.repo(), "docs/other.txt", "someone else's change\n");
    git(&w.repo(), &["add", "-A"]);
    git(&w.repo(), &["commit", "-q", "-m", "meanwhile"]);
    let moved = w.head();

    let report = w.json(&["execute", &plan], 6);
    assert_eq!(report["outcome"], "stale", "{report:#}");
    assert_eq!(report["error"]["code"], "STALE_PLAN", "{report:#}");
    assert_eq!(report["parent"], planned["run_uid"], "{report:#}");
    assert_eq!(report["result_hash"], Value::Null, "{report:#}");
    assert!(
        suggests(&report, &format!(" run {workorder}")),
        "the next action names the workorder the plan came from: {report:#}"
    );
    assert_eq!(w.head(), moved, "a stale plan moved the branch");
    assert!(!w.repo().join("src/new.rs").exists());
    assert_eq!(w.run_record(&report)["outcome"], "stale");

    // Planning again against the new state works.
    let rerun = w.json(&["run", &workorder], 0);
    assert_ne!(rerun["plan_hash"], planned["plan_hash"]);
    assert_eq!(rev(&w.repo(), "refs/heads/main~1"), moved);
}

// 7. Bad input.

#[test]
fn bad_input_exits_2_with_the_problem_named() {
    let w = World::new();
    let base = w.head();
    w.s.write(
        "dup.json",
        r#"{"kind":"mechanism.workorder/v0","kind":"x"}"#,
    );
    let mut wrong_kind = git_workorder("kind", "edit.diff");
    wrong_kind["kind"] = json!("mechanism.plan/v0");
    w.write_json("kind.json", &wrong_kind);
    w.write_json("missing.json", &git_workorder("missing", "no-such.diff"));
    // An unknown member is refused, and a misspelt one is named with the member meant.
    let mut misspelt_optional = git_workorder("ticketid", "edit.diff");
    misspelt_optional["ticketid"] = json!("OPS-9");
    w.write_json("ticketid.json", &misspelt_optional);
    let mut misspelt_required = git_workorder("budgets", "edit.diff");
    let budget = misspelt_required["budget"].take();
    misspelt_required.as_object_mut().unwrap().remove("budget");
    misspelt_required["budgte"] = budget;
    w.write_json("budgte.json", &misspelt_required);
    let unknown_uid = "01a20553-1017-712a-a3e3-d56d39f9eeff";
    let absent = Digest::of_bytes(b"not in the store").to_string();
    for (args, needle) in [
        (
            vec!["run", "no-such-workorder.json"],
            "no-such-workorder.json",
        ),
        (vec!["plan", "dup.json"], "duplicate key \"kind\""),
        (vec!["run", "kind.json"], "mechanism.workorder/v0"),
        (vec!["run", "missing.json"], "no-such.diff"),
        (
            vec!["run", "ticketid.json"],
            r#"unknown field "ticketid"; did you mean "ticket_id"?"#,
        ),
        (
            vec!["plan", "budgte.json"],
            r#"unknown field "budgte"; did you mean "budget"?"#,
        ),
        (vec!["execute", "sha256:abc"], "64 hex digits"),
        (vec!["show", unknown_uid], unknown_uid),
        (vec!["show", "nonsense"], "nonsense"),
        (vec!["verify", absent.as_str()], absent.as_str()),
        (vec!["describe", "no_such_mechanism"], "no_such_mechanism"),
        (vec!["no-such-command"], "no-such-command"),
    ] {
        let out = w.text(&args, 2);
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", stdout(&out));
    }
    // With --json the error is one object on stdout.
    for workorder in ["missing.json", "ticketid.json"] {
        let report = w.json(&["run", workorder], 2);
        assert_eq!(report["error"]["code"], "INVALID_PARAMS", "{report:#}");
        assert_eq!(report["error"]["exit"], 2, "{report:#}");
    }
    assert_eq!(w.head(), base);
}

#[test]
fn a_store_that_cannot_be_opened_is_an_internal_error() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    w.s.write("not-a-store", "a file where the store should be\n");
    let base = w.head();
    let mut cmd = w.s.admission();
    cmd.args([
        "--store",
        "not-a-store",
        "--workspace",
        "ws",
        "run",
        &workorder,
    ]);
    let out = exits(&mut cmd, 1);
    assert!(stderr(&out).contains("not-a-store"), "{}", stderr(&out));
    let mut cmd = w.s.admission();
    cmd.args([
        "--json",
        "--store",
        "not-a-store",
        "--workspace",
        "ws",
        "run",
        &workorder,
    ]);
    let report = json_of(&exits(&mut cmd, 1));
    assert_eq!(report["error"]["exit"], 1, "{report:#}");
    assert_eq!(w.head(), base);
}

// 8. Mechanisms that break the protocol or die mid-execute.

#[test]
fn a_mechanism_that_prints_to_stdout_during_execute_fails_the_run() {
    let w = World::new();
    let (registry, workorder) = w.fake("stdout-garbage", json!({"text": "hello"}));
    let mut cmd = w.admission();
    cmd.args(["--json", "--registry", &registry, "run", &workorder]);
    let out = exits(&mut cmd, 5);
    let report = json_of(&out);
    assert!(
        failed_gates(&report).is_empty(),
        "the fake must pass the gates: {report:#}"
    );
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(report["error"]["code"], "EXECUTION_FAILED", "{report:#}");
    let message = string(&report["error"]["message"]);
    assert!(message.contains("broke the protocol"), "{message}");
    assert!(message.contains("INFO fake_writer"), "{message}");
    assert!(
        !stderr(&out).contains('\x1b'),
        "escape codes in stderr that is not a terminal: {:?}",
        stderr(&out)
    );
    let record = w.run_record(&report);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert_eq!(record["error"]["code"], "EXECUTION_FAILED", "{record:#}");
    let run = w.json(&["show", &string(&report["run_uid"])], 0);
    assert_eq!(run["execution"]["status"], "failed", "{run:#}");
}

#[test]
fn a_mechanism_that_dies_in_the_middle_of_execute_fails_the_run() {
    let w = World::new();
    let (registry, workorder) = w.fake("crash", json!({"text": "hello"}));
    let report = w.json(&["--registry", &registry, "run", &workorder], 5);
    assert!(
        failed_gates(&report).is_empty(),
        "the fake must pass the gates: {report:#}"
    );
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(report["error"]["code"], "EXECUTION_FAILED", "{report:#}");
    let message = string(&report["error"]["message"]);
    assert!(message.contains("died"), "{message}");
    assert!(message.contains("exit status 1"), "{message}");
    assert!(
        message.contains("crashing in the middle of execute"),
        "the mechanism's last stderr line: {message}"
    );
    let record = w.run_record(&report);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    let text = w.show(&string(&report["run_uid"]));
    assert!(text.contains("failed"), "{text}");

    // Text mode says the same to a person.
    let mut cmd = w.admission();
    cmd.args(["--registry", &registry, "run", &workorder]);
    let out = exits(&mut cmd, 5);
    let text = stdout(&out);
    assert!(
        text.contains("EXECUTION_FAILED") && text.contains("died"),
        "{text}"
    );
}

#[test]
fn a_run_killed_in_the_middle_of_execute_is_finished_by_the_next_execute_and_verifies() {
    let w = World::new();
    let base = w.head();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    // The mechanism the run starts aborts itself after its first work-tree write, as if
    // killed: the branch has moved, the work tree and index have not all followed.
    let mut cmd = w.admission();
    cmd.env("MECHANISM_FAILPOINT", "git:worktree@1")
        .args(["--json", "run", &workorder]);
    let report = json_of(&exits(&mut cmd, 5));
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_ne!(
        git(&w.repo(), &["status", "--porcelain"]),
        "",
        "half applied"
    );
    let plan = string(&report["plan_hash"]);
    assert!(suggests(&report, &format!("execute {plan}")), "{report:#}");

    // Executing the plan again finishes it: one commit, clean, recorded and verifiable.
    let executed = w.json(&["execute", &plan], 0);
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert_eq!(w.head(), string(&executed["evidence"]["commit"]));
    assert_eq!(rev(&w.repo(), "refs/heads/main~1"), base);
    assert_eq!(
        git(
            &w.repo(),
            &["status", "--porcelain", "--untracked-files=all"]
        ),
        ""
    );
    git(&w.repo(), &["fsck", "--no-dangling"]);
    let verified = w.json(&["verify", &string(&executed["witness_hash"])], 0);
    assert_eq!(verified["verified"], true, "{verified:#}");
    w.json(&["verify", &string(&executed["run_record"])], 0);

    // The journal holds both runs, readable: the killed one failed, the second completed.
    let log = w.json(&["log"], 0);
    let entries = log["entries"].as_array().expect("log entries");
    for (uid, status) in [
        (&report["run_uid"], "failed"),
        (&executed["run_uid"], "completed"),
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["uid"] == *uid && e["status"] == status),
            "{uid} {status}: {log:#}"
        );
    }
    let shown = w.show(&string(&report["run_uid"]));
    assert!(shown.contains("failed"), "{shown}");
}

#[test]
fn a_run_waits_past_its_deadline_for_an_execute_past_its_point_of_no_return() {
    let w = World::new();
    let patch = repo::patch_from_edits(&w.repo(), edit_readme_and_add_file);
    w.s.write("slow.diff", &patch);
    let mut workorder = git_workorder("slow", "slow.diff");
    // Enough for the plan's estimate, not for the pause below.
    workorder["budget"]["wall_ms"] = json!(1500);
    let workorder = w.write_json("slow.json", &workorder);
    // The mechanism pauses right after its point of no return, well past the deadline and
    // past the few seconds a client used to wait: it must be waited for, not killed.
    let mut cmd = w.admission();
    cmd.env("MECHANISM_FAILPOINT", "execute:committed")
        .env("MECHANISM_FAILPOINT_SLEEP_MS", "7500")
        .args(["--json", "run", &workorder]);
    let started = std::time::Instant::now();
    let report = json_of(&exits(&mut cmd, 0));
    assert!(started.elapsed() > std::time::Duration::from_millis(7500));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(w.head(), string(&report["evidence"]["commit"]));
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
}

// 9. describe and demo.

#[test]
fn describe_lists_what_a_mechanism_offers() {
    let w = World::new();
    let text = stdout(&w.text(&["describe", "git_apply_patch"], 0));
    assert!(text.contains("git_apply_patch"), "{text}");
    assert!(text.contains("operation apply"), "{text}");
    let described = w.json(&["describe", "git_apply_patch"], 0);
    assert_eq!(
        described["mechanism"]["id"], "git_apply_patch",
        "{described:#}"
    );
    assert_eq!(described["operations"][0]["name"], "apply", "{described:#}");
}

#[test]
fn the_demo_runs_and_verifies() {
    let s = Scratch::new();
    let out = s.admission().arg("demo").assert().code(0);
    let text = stdout(out.get_output());
    assert!(text.contains("checks hold"), "{text}");
    assert!(!text.contains("NOT verified"), "{text}");
    assert!(text.contains("proven"), "{text}");
    assert!(text.contains("ticket DEMO-3 DONE at"), "{text}");
    assert!(
        text.contains("8. `admission verify`, offline:"),
        "no Terraform chapter (it needs terraform on PATH): {text}"
    );
}

#[test]
fn the_demo_without_terraform_skips_its_chapter_and_succeeds() {
    let s = Scratch::new();
    let empty = s.path("empty-path");
    fs::create_dir_all(&empty).unwrap();
    let out = s
        .admission()
        .arg("demo")
        .env("PATH", &empty)
        .env_remove("MECHANISM_TERRAFORM")
        .assert()
        .code(0);
    let text = stdout(out.get_output());
    let skipped: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Terraform chapter was skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(skipped[0].contains("terraform is not on PATH"), "{text}");
    assert!(text.contains("proven"), "{text}");
}

#[test]
fn the_demo_kept_prints_commands_that_run_in_its_directory() {
    let s = Scratch::new();
    let empty = s.path("empty-path");
    fs::create_dir_all(&empty).unwrap();
    // Kept under the scratch directory, so it goes with it.
    let tmp = s.path("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let out = s
        .admission()
        .args(["demo", "--keep"])
        .env("PATH", &empty)
        .env("TMPDIR", &tmp)
        .env_remove("MECHANISM_TERRAFORM")
        .assert()
        .code(0);
    let text = stdout(out.get_output());
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("kept in "))
        .skip(1)
        .map(str::trim)
        .collect();
    let dir = commands
        .first()
        .and_then(|c| c.strip_prefix("cd "))
        .unwrap_or_else(|| panic!("no `cd DIR` after `kept in`: {text}"));
    assert!(Path::new(dir).starts_with(&tmp), "{text}");
    assert!(commands.contains(&"admission log"), "{text}");
    // Each pastes and runs there as printed, with no flag or variable beyond those it shows.
    for command in &commands[1..] {
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(args[0], "admission", "{text}");
        let mut cmd = s.admission();
        cmd.current_dir(dir).args(&args[1..]);
        let out = exits(&mut cmd, 0);
        assert!(!stdout(&out).is_empty(), "{command} printed nothing");
    }
}

// 10. verify of a chain that no longer holds.

#[test]
fn verify_fails_when_the_branch_no_longer_holds_the_commit() {
    let w = World::new();
    let base = w.head();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["run", &workorder], 0);
    let witness = string(&report["witness_hash"]);
    git(&w.repo(), &["reset", "-q", "--hard", &base]);
    let verified = w.json(&["verify", &witness], 5);
    assert_eq!(verified["verified"], false, "{verified:#}");
    let failed: Vec<&Value> = verified["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false && c["skipped"] == false)
        .collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|c| string(&c["name"]).starts_with("state.")),
        "only the state checks fail: {verified:#}"
    );
    let text = stdout(&w.text(&["verify", &witness], 5));
    assert!(text.contains("NOT verified"), "{text}");
}

#[test]
fn verify_fails_when_a_stored_artifact_was_tampered_with() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["run", &workorder], 0);
    let witness = string(&report["witness_hash"]);
    let result: Digest = string(&report["result_hash"]).parse().unwrap();
    let hex = result.hex();
    let object =
        w.s.path(&format!("store/objects/sha256/{}/{}", &hex[..2], &hex[2..]));
    let mut bytes = fs::read(&object).expect("the result is stored");
    let at = bytes
        .windows(7)
        .position(|b| b == b"success")
        .expect("the result says success");
    bytes[at] = b'S';
    // Objects are stored read-only.
    set_mode(&object, 0o644);
    fs::write(&object, &bytes).unwrap();

    let verified = w.json(&["verify", &witness], 5);
    assert_eq!(verified["verified"], false, "{verified:#}");
    let checks = verified["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["ok"] == false
            && c["code"] == "INTEGRITY_MISMATCH"
            && string(&c["detail"]).contains(&result.to_string())),
        "{verified:#}"
    );
}

#[test]
fn verify_fails_when_an_input_blob_changed_or_is_gone() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["run", &workorder], 0);
    let witness = string(&report["witness_hash"]);
    let patch = Digest::of_bytes(&fs::read(w.s.path("edit.diff")).unwrap());
    let hex = patch.hex();
    let object =
        w.s.path(&format!("store/objects/sha256/{}/{}", &hex[..2], &hex[2..]));
    let input_failure = |verified: &Value, code: &str| {
        assert_eq!(verified["verified"], false, "{verified:#}");
        let failed: Vec<&Value> = verified["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .collect();
        assert!(
            failed.len() == 1
                && failed[0]["name"] == "artifact.input"
                && failed[0]["code"] == code
                && string(&failed[0]["detail"]).contains(&patch.to_string()),
            "only the patch input fails, with {code}: {verified:#}"
        );
    };

    // One flipped byte in the stored patch.
    let mut bytes = fs::read(&object).expect("the patch is stored");
    bytes[0] ^= 0x20;
    set_mode(&object, 0o644);
    fs::write(&object, &bytes).unwrap();
    input_failure(&w.json(&["verify", &witness], 5), "INTEGRITY_MISMATCH");

    // The patch deleted from the store.
    fs::remove_file(&object).unwrap();
    input_failure(&w.json(&["verify", &witness], 5), "UNKNOWN_ARTIFACT");
    let text = stdout(&w.text(&["verify", &witness], 5));
    assert!(
        text.contains("FAIL artifact.input") && text.contains("NOT verified"),
        "{text}"
    );
}

#[test]
fn a_mechanism_refusing_parallel_plans_as_busy_is_planned_twice_in_turn() {
    let w = World::new();
    // Our mechanism, behind a proxy that answers a plan arriving while another is being made
    // with BUSY: G-DET's two plans, sent at once, then have to be made one after the other.
    let server = tests::bin_path("mechanism-server");
    let registry = w.registry("busy.json", |entry| {
        entry["command"] = json!({
            "program": "python3",
            "args": [
                BROKEN_PROXY,
                "busy-parallel-plans",
                server.to_str().unwrap(),
                "git_apply_patch",
                "--root",
                "{workspace}",
                "--store",
                "{store}",
            ],
        });
    });
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["--registry", &registry, "run", &workorder], 0);
    assert!(failed_gates(&report).is_empty(), "{report:#}");
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    let det = report["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "G-DET")
        .unwrap_or_else(|| panic!("no G-DET in {report:#}"));
    assert!(
        string(&det["reason"]).contains("planned twice, same hash"),
        "{det:#}"
    );
}

#[test]
fn a_run_whose_commit_left_its_branch_after_execute_does_not_succeed() {
    let w = World::new();
    let base = w.head();
    // Our mechanism, behind a proxy that moves the branch back to where it was once execute
    // has succeeded, and only then passes the success on.
    let server = tests::bin_path("mechanism-server");
    let registry = w.registry("moved.json", |entry| {
        entry["command"] = json!({
            "program": "python3",
            "args": [
                BROKEN_PROXY,
                "resets-branch-after-execute",
                server.to_str().unwrap(),
                "git_apply_patch",
                "--root",
                "{workspace}",
                "--store",
                "{store}",
            ],
        });
    });
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["--registry", &registry, "run", &workorder], 5);
    assert!(failed_gates(&report).is_empty(), "{report:#}");
    // The mechanism did commit, and its store records a success ...
    let commit = string(&report["evidence"]["commit"]);
    assert_eq!(
        git(&w.repo(), &["cat-file", "-t", &commit]).trim(),
        "commit"
    );
    assert_eq!(w.head(), base, "the proxy moved the branch back");
    let plan: Digest = string(&report["plan_hash"]).parse().unwrap();
    let recorded: Value = serde_json::from_slice(
        &fs::read(w.s.path(&format!("store/refs/results/{}.json", plan.hex()))).unwrap(),
    )
    .unwrap();
    assert_eq!(recorded["succeeded"], true, "{recorded:#}");
    // ... but the run is not a success: the state check verify makes failed.
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(report["error"]["code"], "EXECUTION_FAILED", "{report:#}");
    let message = string(&report["error"]["message"]);
    assert!(
        message.contains("FAIL state.ref") && message.contains("refs/heads/main"),
        "{message}"
    );
    assert!(suggests(&report, "show"), "{report:#}");
    let record = w.run_record(&report);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    // verify agrees, on the same check.
    let verified = w.json(&["verify", &string(&report["witness_hash"])], 5);
    let failed: Vec<String> = verified["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| string(&c["name"]))
        .collect();
    assert_eq!(failed, ["state.ref"], "{verified:#}");

    // Text mode names the failed check to a person. The moved branch left the commit's files
    // in the work tree; without them the same plan runs again.
    git(&w.repo(), &["reset", "-q", "--hard"]);
    let mut cmd = w.admission();
    cmd.args(["--registry", &registry, "run", &workorder]);
    let text = stdout(&exits(&mut cmd, 5));
    assert!(text.contains("FAIL state.ref"), "{text}");
}

#[test]
fn a_force_ack_file_that_cannot_be_read_is_refused_with_exit_3() {
    let w = World::new();
    let (plan, _) = w.destructive_plan("drop", "src/old.rs");
    w.s.write("garbage.json", "not json");
    for file in ["missing.json", "garbage.json"] {
        let reply = w.json(&["execute", &plan, "--force-ack", file], 3);
        assert_eq!(reply["error"]["code"], "FORCE_ACK_INVALID", "{reply:#}");
        assert_eq!(reply["error"]["exit"], 3, "{reply:#}");
        assert!(
            string(&reply["error"]["message"]).contains(file),
            "{reply:#}"
        );
    }
}

#[test]
fn a_tampered_witness_is_a_verification_failure_in_every_command() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["run", &workorder], 0);
    let witness: Digest = string(&report["witness_hash"]).parse().unwrap();
    let hex = witness.hex();
    let object =
        w.s.path(&format!("store/objects/sha256/{}/{}", &hex[..2], &hex[2..]));
    let mut bytes = fs::read(&object).expect("the witness is stored");
    bytes[1] ^= 0x20;
    set_mode(&object, 0o644);
    fs::write(&object, &bytes).unwrap();

    let witness = witness.to_string();
    for command in ["verify", "show", "cat"] {
        let reply = w.json(&[command, &witness], 5);
        assert_eq!(
            reply["error"]["code"], "INTEGRITY_MISMATCH",
            "{command}: {reply:#}"
        );
        assert_eq!(reply["error"]["exit"], 5, "{command}: {reply:#}");
        let out = w.text(&[command, &witness], 5);
        assert!(stderr(&out).contains("INTEGRITY_MISMATCH"), "{command}");
    }
}

#[test]
fn a_tampered_stored_workorder_is_a_verification_failure_at_execute() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let report = w.json(&["plan", &workorder], 0);
    let plan = string(&report["plan_hash"]);
    let plan_hex = plan.trim_start_matches("sha256:");
    let gated: Value = serde_json::from_slice(
        &fs::read(w.s.path(&format!("store/refs/admissions/{plan_hex}.json")))
            .expect("the plan's admission is recorded"),
    )
    .unwrap();
    let hex = string(&gated["workorder"]);
    let hex = hex.trim_start_matches("sha256:");
    let object =
        w.s.path(&format!("store/objects/sha256/{}/{}", &hex[..2], &hex[2..]));
    let mut bytes = fs::read(&object).expect("the workorder is stored");
    bytes[1] ^= 0x20;
    set_mode(&object, 0o644);
    fs::write(&object, &bytes).unwrap();

    let reply = w.json(&["execute", &plan], 5);
    assert_eq!(reply["error"]["code"], "INTEGRITY_MISMATCH", "{reply:#}");
    assert!(
        string(&reply["error"]["message"]).contains("the workorder"),
        "{reply:#}"
    );
    assert!(!w.repo().join("src/new.rs").exists(), "nothing was applied");
}

#[test]
fn usage_errors_under_json_are_error_objects_on_stdout() {
    let w = World::new();
    for args in [
        &["--json", "execute"][..],
        &["--json", "no-such-command"],
        &["show", "--no-such-flag", "x", "--json"],
    ] {
        let mut cmd = w.admission();
        cmd.args(args);
        let out = exits(&mut cmd, 2);
        let reply = json_of(&out);
        assert_eq!(
            reply["error"]["code"], "INVALID_PARAMS",
            "{args:?}: {reply:#}"
        );
        assert_eq!(reply["error"]["exit"], 2, "{args:?}");
        assert!(!string(&reply["error"]["message"]).is_empty(), "{args:?}");
    }
    // Without --json, clap's own text on stderr, as before.
    let mut cmd = w.admission();
    cmd.arg("execute");
    let out = exits(&mut cmd, 2);
    assert!(stdout(&out).is_empty() && stderr(&out).contains("Usage"));
}

/// The numbers of the next steps a text report lists.
fn step_numbers(text: &str) -> Vec<usize> {
    text.lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(". admission "))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

#[test]
fn text_output_counts_numbers_and_predicts_for_people() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);

    // `plan` prints the commit it predicts, which is the one `execute` makes.
    let out = w.text(&["plan", &workorder], 0);
    let text = stdout(&out);
    let predicted = text
        .lines()
        .find_map(|l| l.strip_prefix("commit     ")?.strip_suffix(" (predicted)"))
        .unwrap_or_else(|| panic!("no predicted commit: {text}"))
        .to_owned();
    assert!(text.contains("· 3 effects ·"), "{text}");
    assert!(text.contains("3 effects and"), "{text}");
    assert_eq!(step_numbers(&text), [1, 2], "{text}");
    let plan = w.json(&["plan", &workorder], 0);
    w.json(&["execute", &string(&plan["plan_hash"])], 0);
    assert_eq!(w.head(), predicted);

    // A refusal names its code once, and its next steps count 1, 2.
    let out = w.text(&["run", &workorder], 2);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(text.matches("INVALID_PARAMS").count(), 1, "{text}");
    assert!(!text.contains("-32602"), "{text}");
    assert_eq!(step_numbers(&text), [1, 2], "{text}");

    // `log`: one aligned line per run, with its outcome and workorder.
    let log = w.json(&["log"], 0);
    let mut uids: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["uid"].as_str())
        .collect();
    uids.dedup();
    let text = stdout(&w.text(&["log"], 0));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), uids.len(), "{text}");
    for (line, outcome) in lines
        .iter()
        .zip(["admitted", "admitted", "succeeded", "error"])
    {
        assert!(line.contains(outcome) && line.contains(" edit"), "{text}");
    }
    let time_width = lines[0].find("  ").unwrap();
    assert_eq!(time_width, "2026-01-01T00:00:00.000Z".len(), "{text}");
    let column = |l: &str| l.find(" edit").unwrap();
    assert!(
        lines.iter().all(|l| column(l) == column(lines[0])),
        "{text}"
    );

    // `describe` lists each operation's params with types and descriptions.
    let text = stdout(&w.text(&["describe", "git_apply_patch"], 0));
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("strip") && l.contains("integer, optional: ")),
        "{text}"
    );
    assert!(text.contains("object {email, name}, required"), "{text}");
    // Spelled as the protocol spells them.
    assert!(
        text.contains("destructive: maybe, determinism: D0"),
        "{text}"
    );
}

#[test]
fn shell_completions_and_the_man_page_come_from_the_cli_definition() {
    let s = Scratch::new();
    let subcommands = ["approve", "execute", "verify", "completions", "man"];
    for shell in ["bash", "zsh", "fish"] {
        let out = exits(s.admission().args(["completions", shell]), 0);
        let script = stdout(&out);
        for name in subcommands {
            assert!(script.contains(name), "{shell}: no {name}");
        }
        assert!(script.contains("allowed-signers"), "{shell}");
    }
    let out = exits(s.admission().args(["completions", "bash"]), 0);
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &stdout(&out)])
        .status()
        .unwrap();
    assert!(check.success(), "the bash script does not parse");
    exits(s.admission().args(["completions", "tcsh"]), 2);

    let page = stdout(&exits(s.admission().arg("man"), 0));
    assert!(page.contains(".TH admission 1"), "{page}");
    for name in subcommands {
        assert!(page.contains(name), "no {name} in the man page");
    }
}

#[test]
fn a_subcommands_help_lists_only_the_global_flags_it_reads() {
    let s = Scratch::new();
    let globals = [
        "--json",
        "--store",
        "--workspace",
        "--allowed-signers",
        "--registry",
        "--color",
    ];
    for (subcommand, shown) in [
        ("cat", &["--json", "--store"][..]),
        ("approve", &["--json", "--store", "--allowed-signers"]),
        (
            "verify",
            &["--json", "--store", "--workspace", "--allowed-signers"],
        ),
        ("plan", &globals),
        ("completions", &[]),
    ] {
        let help = stdout(&exits(s.admission().args([subcommand, "--help"]), 0));
        for flag in globals {
            assert_eq!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                shown.contains(&flag),
                "{subcommand} --help and {flag}: {help}"
            );
        }
    }
    // Hidden is still accepted, wherever it is written.
    let out = exits(s.admission().args(["log", "--workspace", "w"]), 2);
    assert!(stderr(&out).contains("no store"), "{}", stderr(&out));
    // The top level lists them all.
    let help = stdout(&exits(s.admission().arg("--help"), 0));
    assert!(globals.iter().all(|flag| help.contains(flag)), "{help}");
}

#[test]
fn the_diff_and_the_gate_table_are_coloured_when_asked_and_never_after_no_color() {
    let w = World::new();
    let workorder = w.workorder("edit", edit_readme_and_add_file);
    let plan = |env: &[(&str, &str)], flags: &[&str]| {
        let mut cmd = w.admission();
        cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (name, value) in env {
            cmd.env(name, value);
        }
        cmd.args(flags).args(["plan", &workorder]);
        stdout(&exits(&mut cmd, 0))
    };
    let coloured = plan(&[], &["--color", "always"]);
    assert!(coloured.contains("\x1b[32m+"), "{coloured:?}");
    assert!(coloured.contains("PASS\x1b[0m"), "{coloured:?}");
    let forced = plan(&[("CLICOLOR_FORCE", "1")], &[]);
    assert!(forced.contains("\x1b["), "{forced:?}");
    for plain in [
        plan(&[], &[]),
        plan(&[], &["--color", "never"]),
        plan(
            &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
            &["--color", "auto"],
        ),
    ] {
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("PASS G-SCHEMA"), "{plain}");
    }
}

/// A ticket's cycle rebuilt from the store alone, with the journal deleted: every artifact and
/// every link; a tampered workorder then fails `trace.workorder`, exit 5.
#[test]
fn rehydrate_rebuilds_a_tickets_cycle_without_the_journal() {
    let w = World::new();
    let patch = repo::patch_from_edits(&w.repo(), edit_readme_and_add_file);
    w.s.write("edit.diff", &patch);
    let work = git_workorder("edit", "edit.diff");
    let ticket = json!({
        "ticket_id": "OPS-1",
        "objective": "Edit the readme and add a file",
        "acceptance": ["the readme is edited"],
        "status": "TODO",
        "work": {
            "mechanism": work["mechanism"],
            "operation": work["operation"],
            "params": work["params"],
            "inputs": work["inputs"],
            "budget": work["budget"],
        },
    });
    w.write_json("OPS-1.json", &ticket);
    w.json(&["ticket", "new", "OPS-1.json"], 0);
    w.json(&["ticket", "ready", "OPS-1"], 0);
    w.json(&["events", "process"], 0);
    fs::remove_dir_all(w.s.path("store/exec")).unwrap();

    let cycle = w.json(&["rehydrate", "OPS-1"], 0);
    assert_eq!(cycle["ticket"]["artifact"]["status"], "DONE", "{cycle:#}");
    assert_eq!(
        cycle["history"].as_array().map(Vec::len),
        Some(4),
        "{cycle:#}"
    );
    assert_eq!(
        cycle["events"].as_array().map(Vec::len),
        Some(1),
        "{cycle:#}"
    );
    for part in [
        "context_snapshot",
        "workorder",
        "output_bundle",
        "run_record",
        "pause_state",
    ] {
        assert!(cycle[part]["digest"].is_string(), "{part}: {cycle:#}");
    }
    assert!(cycle["commit"].is_string(), "{cycle:#}");
    assert_eq!(
        cycle["commit"], cycle["output_bundle"]["artifact"]["commit"],
        "{cycle:#}"
    );
    let checks: Vec<(String, String)> = cycle["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (string(&c["name"]), string(&c["outcome"])))
        .collect();
    let names = ["workorder", "snapshot", "ticket", "output", "pause"];
    let expected: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("trace.{n}"), "PASS".to_owned()))
        .collect();
    assert_eq!(checks, expected, "{cycle:#}");

    // The same cycle from its run's uid and from its record's digest.
    let uid = string(&cycle["run_record"]["artifact"]["run_uid"]);
    let record = string(&cycle["run_record"]["digest"]);
    for id in [uid.as_str(), record.as_str()] {
        let again = w.json(&["rehydrate", id], 0);
        assert_eq!(again["pause_state"], cycle["pause_state"], "{again:#}");
        assert_eq!(again["history"], cycle["history"], "{again:#}");
    }
    let unknown = w.json(&["rehydrate", "OPS-404"], 2);
    assert!(
        string(&unknown["error"]["message"]).contains("store"),
        "{unknown:#}"
    );

    let workorder = string(&cycle["workorder"]["digest"]);
    let hex = workorder.parse::<Digest>().unwrap().hex();
    let object =
        w.s.path(&format!("store/objects/sha256/{}/{}", &hex[..2], &hex[2..]));
    set_mode(&object, 0o644);
    let mut bytes = fs::read(&object).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&object, bytes).unwrap();
    let broken = w.json(&["rehydrate", "OPS-1"], 5);
    assert_eq!(broken["workorder"], Value::Null, "{broken:#}");
    let failed: Vec<&Value> = broken["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "FAIL")
        .collect();
    assert_eq!(failed.len(), 1, "{broken:#}");
    assert_eq!(failed[0]["name"], "trace.workorder", "{broken:#}");
    assert_eq!(failed[0]["code"], "INTEGRITY_MISMATCH", "{broken:#}");
}
