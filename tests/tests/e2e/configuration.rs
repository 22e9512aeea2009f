//! Where `admission` finds its store and workspace, over the real binary: the global flags'
//! environment variables, the store found from any subdirectory as git finds `.git`, a
//! repository patched from inside it (`"repo": "."`) with its store kept out of `git status`,
//! and reading commands that never leave an empty store behind.

use std::path::Path;

use assert_cmd::Command;
use serde_json::{json, Value};
use tests::fixtures::APPROVER;
use tests::output::{exits, json_of, stderr, stdout, string};
use tests::repo::{self, git};
use tests::{Scratch, World};

/// A workorder applying `patch` (a path relative to the workorder) to `repo`.
fn workorder(repo: &str, patch: &str) -> Value {
    json!({
        "kind": "mechanism.workorder/v0",
        "work_order_id": "config",
        "mechanism": "git_apply_patch",
        "operation": "apply",
        "params": {
            "repo": repo,
            "message": "apply config",
            "author": {"name": "Agent", "email": "agent@example.com"},
        },
        "inputs": {"patch": patch},
        "budget": {"wall_ms": 60000},
    })
}

/// `admission` run in `dir` (a directory of the scratch), with no global flag set anywhere.
fn admission_in(s: &Scratch, dir: &Path) -> Command {
    let mut cmd = s.admission();
    cmd.current_dir(dir);
    cmd
}

#[test]
fn a_repository_is_patched_from_inside_it_and_its_store_is_found_from_any_subdirectory() {
    let s = Scratch::new();
    let repo = repo::init(&s.path("project"));
    let patch = repo::patch_from_edits(&repo, |dir| {
        repo::write(dir, "README.md", "# fixture\n\nEdited from inside.\n");
    });
    s.write("fix.diff", patch);
    s.write(
        "fix.json",
        serde_json::to_vec(&workorder(".", "fix.diff")).unwrap(),
    );

    // `cd project; admission run ../fix.json`: the workspace is the repository itself.
    let mut cmd = admission_in(&s, &repo);
    cmd.args(["--json", "run", "../fix.json"]);
    let report = json_of(&exits(&mut cmd, 0));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    // The store made inside the work tree is not left untracked.
    assert!(repo.join(".mechanism").is_dir());
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");

    // From a subdirectory, the store (and its workspace, for verify) are found above.
    let sub = repo.join("src");
    let witness = string(&report["witness_hash"]);
    let mut cmd = admission_in(&s, &sub);
    cmd.args(["--json", "verify", &witness[..7 + 12]]);
    let verified = json_of(&exits(&mut cmd, 0));
    assert_eq!(verified["verified"], true, "{verified:#}");
    let mut cmd = admission_in(&s, &sub);
    cmd.arg("log");
    let log = stdout(&exits(&mut cmd, 0));
    assert!(log.contains(&string(&report["run_uid"])), "{log}");
    assert!(!sub.join(".mechanism").exists(), "a second store was made");
}

#[test]
fn reading_commands_where_there_is_no_store_make_none_and_say_where_they_looked() {
    let s = Scratch::new();
    let plan = format!("sha256:{}", "ab".repeat(32));
    for args in [
        vec!["execute", plan.as_str()],
        vec!["execute", "abababab"],
        vec!["show", plan.as_str()],
        vec!["verify", plan.as_str()],
        vec!["cat", plan.as_str()],
        vec!["log"],
    ] {
        let out = exits(s.admission().args(&args), 2);
        let err = stderr(&out);
        assert!(err.contains("there is no store at"), "{args:?}: {err}");
        assert!(
            err.contains(&s.root().canonicalize().unwrap().display().to_string()),
            "{args:?}: {err}"
        );
    }
    exits(s.admission().args(["describe", "git_apply_patch"]), 0);
    assert!(
        !s.path(".mechanism").exists(),
        "a reading command made an empty store"
    );
}

#[test]
fn executing_a_plan_gated_in_another_store_names_the_store_looked_in() {
    let w = World::new();
    let patch = repo::patch_from_edits(&w.repo(), |dir| {
        repo::write(dir, "README.md", "# fixture\n\nEdited.\n");
    });
    w.s.write("fix.diff", patch);
    w.s.write(
        "fix.json",
        serde_json::to_vec(&workorder("repo", "fix.diff")).unwrap(),
    );
    let mut cmd = w.s.admission();
    cmd.args([
        "--json",
        "--store",
        "store",
        "--workspace",
        "ws",
        "plan",
        "fix.json",
    ]);
    let plan = string(&json_of(&exits(&mut cmd, 0))["plan_hash"]);
    std::fs::create_dir(w.s.path("other")).unwrap();
    let mut cmd = w.s.admission();
    cmd.args([
        "--json",
        "--store",
        "other",
        "--workspace",
        "ws",
        "execute",
        &plan,
    ]);
    let refused = json_of(&exits(&mut cmd, 3));
    assert_eq!(
        refused["error"]["code"], "ADMISSION_REQUIRED",
        "{refused:#}"
    );
    let other = w.s.root().canonicalize().unwrap().join("other");
    let message = string(&refused["error"]["message"]);
    assert!(
        message.contains(&format!("never gated in the store {}", other.display())),
        "{message}"
    );
}

#[test]
fn environment_variables_stand_for_the_global_flags() {
    let w = World::new();
    let base = w.head();
    let patch = repo::patch_from_edits(&w.repo(), |dir| {
        git(dir, &["rm", "-q", "src/old.rs"]);
    });
    w.s.write("drop.diff", patch);
    w.s.write(
        "drop.json",
        serde_json::to_vec(&workorder("repo", "drop.diff")).unwrap(),
    );
    let env = |cmd: &mut Command| {
        cmd.env("ADMISSION_STORE", "store")
            .env("ADMISSION_WORKSPACE", "ws")
            .env("ADMISSION_ALLOWED_SIGNERS", &w.operator.allowed_signers);
    };
    let mut cmd = w.s.admission();
    env(&mut cmd);
    cmd.args(["--json", "plan", "drop.json"]);
    let paused = json_of(&exits(&mut cmd, 4));
    let plan = string(&paused["plan_hash"]);
    assert!(
        w.store().join("objects").is_dir(),
        "the store is not ADMISSION_STORE's"
    );
    assert!(!w.s.path(".mechanism").exists());

    let mut cmd = w.s.admission();
    env(&mut cmd);
    cmd.args(["approve", &plan, "--approver", APPROVER, "--key"])
        .arg(&w.operator.key)
        .args(["-o", "ack.json"]);
    exits(&mut cmd, 0);
    // The force-ack is checked against ADMISSION_ALLOWED_SIGNERS: without it, refused.
    let mut cmd = w.s.admission();
    env(&mut cmd);
    cmd.env_remove("ADMISSION_ALLOWED_SIGNERS").args([
        "--json",
        "execute",
        &plan,
        "--force-ack",
        "ack.json",
    ]);
    let refused = json_of(&exits(&mut cmd, 3));
    assert_eq!(refused["error"]["code"], "FORCE_ACK_INVALID", "{refused:#}");
    assert_eq!(w.head(), base);
    let mut cmd = w.s.admission();
    env(&mut cmd);
    cmd.args(["--json", "execute", &plan, "--force-ack", "ack.json"]);
    let executed = json_of(&exits(&mut cmd, 0));
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert!(!w.repo().join("src/old.rs").exists());

    // ADMISSION_REGISTRY: a registry whose budget no plan fits denies the next one.
    let mut registry: Value =
        serde_json::from_str(include_str!("../../../registry/mechanisms.json")).unwrap();
    registry["mechanisms"][0]["budgets"]["wall_ms"] = json!(1);
    w.s.write("tight.json", serde_json::to_vec(&registry).unwrap());
    let patch = repo::patch_from_edits(&w.repo(), |dir| {
        repo::write(dir, "README.md", "# fixture\n\nEdited.\n");
    });
    w.s.write("edit.diff", patch);
    w.s.write(
        "edit.json",
        serde_json::to_vec(&workorder("repo", "edit.diff")).unwrap(),
    );
    let mut cmd = w.s.admission();
    env(&mut cmd);
    cmd.env("ADMISSION_REGISTRY", "tight.json")
        .args(["--json", "plan", "edit.json"]);
    let denied = json_of(&exits(&mut cmd, 3));
    assert_eq!(denied["error"]["code"], "BUDGET_EXCEEDED", "{denied:#}");
    // A flag given overrides its variable.
    let mut cmd = w.s.admission();
    env(&mut cmd);
    cmd.env("ADMISSION_REGISTRY", "tight.json").args([
        "--json",
        "--registry",
        "no-such-registry.json",
        "plan",
        "edit.json",
    ]);
    let out = json_of(&exits(&mut cmd, 2));
    assert!(
        string(&out["error"]["message"]).contains("no-such-registry.json"),
        "{out:#}"
    );
}
