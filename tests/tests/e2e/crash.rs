//! Crash consistency of `execute`, with the server killed for real: by a failpoint at every
//! step boundary (the debug build aborts itself where `MECHANISM_FAILPOINT` says) and by
//! SIGKILL at random instants. Whatever the instant, the next execute of the same plan
//! leaves the repository wholly applied, with one new commit, `git fsck` clean, no lock or
//! temporary file left (not even among git's objects), the result recorded, and
//! `admission verify` passing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::fixtures::put_patch;
use tests::repo::{self, git, rev};
use tests::World;

/// Every step boundary of an execute, in order: the runtime's and `git_apply_patch`'s.
const STEPS: &[&str] = &[
    "git:predicted",
    "execute:journal",
    "git:locked",
    "git:object-staged@2",
    "git:objects",
    "git:intent",
    "execute:committed",
    "git:worktree@1",
    "git:worktree@3",
    "git:index-staged",
    "git:index",
    "git:ref",
    "git:done",
    "execute:applied",
    "execute:stored",
    "execute:recorded",
];

/// Plans `edit` as a patch, admits it and, when destructive, approves it.
fn admit_edit(w: &World, edit: impl FnOnce(&Path)) -> Admitted {
    let patch = w.patch(edit);
    let mut srv = w.server();
    let planned = srv.result(
        "plan",
        json!({
            "operation": "apply",
            "params": {
                "repo": "repo",
                "message": "crash test",
                "author": {"name": "Crash Test", "email": "crash@example.com"},
            },
            "inputs": {"patch": patch},
        }),
    );
    assert!(srv.close().success());
    let params = w.execute_params(&planned);
    let predicted = planned["plan"]["intended_effects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "git.commit")
        .map(|e| e["to"].as_str().unwrap().to_owned())
        .unwrap();
    Admitted {
        base: w.head(),
        predicted,
        params,
    }
}

/// The repository holds the plan's whole effect, once, and nothing of ours is left.
fn assert_applied_once(w: &World, admitted: &Admitted, context: &str) {
    let repo = w.repo();
    assert_eq!(
        rev(&repo, "refs/heads/main"),
        admitted.predicted,
        "{context}: the branch"
    );
    let commits = git(
        &repo,
        &["rev-list", "--count", &format!("{}..main", admitted.base)],
    );
    assert_eq!(commits.trim(), "1", "{context}: new commits");
    assert_eq!(
        git(&repo, &["status", "--porcelain", "--untracked-files=all"]),
        "",
        "{context}: git status"
    );
    git(&repo, &["fsck", "--no-dangling"]);
    for leftover in [
        ".git/index.lock",
        ".git/refs/heads/main.lock",
        ".git/git_apply_patch",
    ] {
        assert!(
            !repo.join(leftover).exists(),
            "{context}: {leftover} was left behind"
        );
    }
    // Nor a temporary file among git's objects (libgit2 writes each object through one).
    let temporaries: Vec<String> = std::fs::read_dir(repo.join(".git/objects"))
        .expect("read .git/objects")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("tmp_"))
        .collect();
    assert_eq!(
        temporaries,
        Vec::<String>::new(),
        "{context}: temporary objects were left behind"
    );
    // One reflog entry for the update, however often it was finished.
    let reflog = git(&repo, &["reflog", "show", "--format=%H", "refs/heads/main"]);
    assert_eq!(
        reflog.lines().filter(|l| *l == admitted.predicted).count(),
        1,
        "{context}: reflog\n{reflog}"
    );
}

/// The recorded result is a success, no execution is left journalled, and the chain
/// from witness to repository verifies offline.
fn assert_recorded_and_verified(w: &World, admitted: &Admitted, answer: &Value, context: &str) {
    let result = answer
        .get("result")
        .unwrap_or_else(|| panic!("{context}: execute again failed: {answer}"));
    assert_eq!(result["result"]["status"], "success", "{context}");
    let executions = w.store().join("refs/executions");
    let journalled = std::fs::read_dir(&executions)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(journalled, 0, "{context}: executions left journalled");
    let mut srv = w.server_env(&[]);
    let status = srv.result("status", json!({"plan_hash": admitted.params["plan_hash"]}));
    assert_eq!(status["state"], "succeeded", "{context}");
    assert_eq!(status["result_hash"], result["result_hash"], "{context}");
    assert!(srv.close().success());
    let witness = result["witness_hash"].as_str().unwrap();
    w.s.admission()
        .args(["--store", w.store().to_str().unwrap()])
        .args(["--workspace", w.workspace().to_str().unwrap()])
        .args([
            "--allowed-signers",
            w.operator.allowed_signers.to_str().unwrap(),
        ])
        .args(["verify", witness])
        .assert()
        .success();
}

struct Admitted {
    base: String,
    predicted: String,
    params: Value,
}

/// Adds, edits and renames files: a plan that needs no force-ack.
fn edit(dir: &Path) {
    for i in 0..6 {
        repo::write(
            dir,
            &format!("src/new{i}.rs"),
            &repo::numbered("new", 5 + i),
        );
    }
    repo::write(dir, "README.md", "# fixture\n\nEdited by a crash test.\n");
    git(dir, &["mv", "docs/guide.txt", "docs/manual.txt"]);
}

/// Also deletes a file: a destructive plan, executed with a force-ack.
fn edit_destructive(dir: &Path) {
    edit(dir);
    git(dir, &["rm", "-q", "src/old.rs"]);
}

fn execute_request(params: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "execute", "params": params})
}

#[test]
fn killed_at_every_step_boundary_the_next_execute_finishes_it_once() {
    for destructive in [false, true] {
        for step in STEPS {
            let context = format!("killed at {step} (destructive: {destructive})");
            let w = World::new();
            let admitted = if destructive {
                admit_edit(&w, edit_destructive)
            } else {
                admit_edit(&w, edit)
            };
            let mut doomed = w.server_env(&[("MECHANISM_FAILPOINT", step)]);
            doomed.send(&execute_request(&admitted.params));
            let status = doomed.wait_exit();
            assert!(
                !status.success(),
                "{context}: the failpoint did not fire ({status})"
            );

            // The same request again, force-ack and all, in a fresh server.
            let mut again = w.server_env(&[]);
            let answer = again.call("execute", admitted.params.clone());
            assert!(again.close().success(), "{context}");
            assert_applied_once(&w, &admitted, &context);
            assert_recorded_and_verified(&w, &admitted, &answer, &context);
        }
    }
}

/// A small deterministic generator, so a failing instant can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// A patch that touches many files, so the kill lands inside the work.
fn edit_many(dir: &Path) {
    for i in 0..120 {
        repo::write(
            dir,
            &format!("many/d{}/f{i}.txt", i % 7),
            &repo::numbered("line", 30 + i),
        );
    }
    repo::write(dir, "src/lib.rs", &repo::numbered("fn h", 31));
}

#[test]
fn killed_at_random_instants_the_next_execute_finishes_it_once() {
    // How long a whole execute takes here, to spread the kills over it.
    let timing = World::new();
    let admitted = admit_edit(&timing, edit_many);
    let mut srv = timing.server_env(&[]);
    let started = Instant::now();
    let answer = srv.call("execute", admitted.params.clone());
    let span = started.elapsed();
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(srv.close().success());

    let seed = 0x9e37_79b9_7f4a_7c15;
    let mut random = XorShift(seed);
    for trial in 0..8 {
        let w = World::new();
        let admitted = admit_edit(&w, edit_many);
        let mut doomed = w.server_env(&[]);
        // Once it answers describe, the server is up: the kill lands in the execute.
        doomed.result("describe", json!({}));
        doomed.send(&execute_request(&admitted.params));
        let delay = Duration::from_micros(random.below(span.as_micros() as u64 * 6 / 5));
        std::thread::sleep(delay);
        doomed.kill();
        let context =
            format!("trial {trial} (seed {seed:#x}): killed {delay:?} into a {span:?} execute");

        let mut again = w.server_env(&[]);
        let answer = again.call("execute", admitted.params.clone());
        assert!(again.close().success(), "{context}");
        assert_applied_once(&w, &admitted, &context);
        assert_recorded_and_verified(&w, &admitted, &answer, &context);
    }
}

#[test]
fn a_server_start_finishes_an_interrupted_execute_before_anything_else() {
    let w = World::new();
    let admitted = admit_edit(&w, edit);
    let mut doomed = w.server_env(&[("MECHANISM_FAILPOINT", "git:worktree@2")]);
    doomed.send(&execute_request(&admitted.params));
    assert!(!doomed.wait_exit().success());
    // Half applied: some of the work tree written, the branch not moved yet.
    assert_eq!(rev(&w.repo(), "refs/heads/main"), admitted.base);
    assert_ne!(git(&w.repo(), &["status", "--porcelain"]), "");

    // A new server finishes it as it starts, before any request: status says succeeded.
    let mut srv = w.server_env(&[]);
    let status = srv.result("status", json!({"plan_hash": admitted.params["plan_hash"]}));
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(srv.close().success());
    assert_applied_once(&w, &admitted, "after a server start");
}

#[test]
fn planning_on_a_half_applied_repository_is_busy_until_it_is_finished() {
    let w = World::new();
    let admitted = admit_edit(&w, edit);
    let other = put_patch(
        &w.store(),
        &repo::patch_from_edits(&w.repo(), |d| repo::write(d, "other.txt", "other\n")),
    );
    let mut doomed = w.server_env(&[("MECHANISM_FAILPOINT", "git:ref")]);
    // The server that will plan starts first, so its start does not finish the execute.
    let mut planner = w.server_env(&[]);
    planner.result("describe", json!({}));
    doomed.send(&execute_request(&admitted.params));
    assert!(!doomed.wait_exit().success());

    let code = planner.error_code(
        "plan",
        json!({
            "operation": "apply",
            "params": {
                "repo": "repo",
                "message": "another change",
                "author": {"name": "Crash Test", "email": "crash@example.com"},
            },
            "inputs": {"patch": other},
        }),
    );
    assert_eq!(code, "BUSY");
    // Executing the interrupted plan finishes it; then planning works again.
    let answer = planner.call("execute", admitted.params.clone());
    assert_applied_once(&w, &admitted, "finished by the planner's server");
    assert_recorded_and_verified(&w, &admitted, &answer, "finished by the planner's server");
    assert!(planner.close().success());
}

#[test]
fn a_branch_moved_on_after_a_killed_execute_had_finished_is_left_as_it_is() {
    let w = World::new();
    let admitted = admit_edit(&w, edit);
    // Killed after the branch moved, the last step, with its intent still recorded.
    let mut doomed = w.server_env(&[("MECHANISM_FAILPOINT", "git:ref")]);
    doomed.send(&execute_request(&admitted.params));
    assert!(!doomed.wait_exit().success());
    assert_eq!(rev(&w.repo(), "refs/heads/main"), admitted.predicted);
    // Someone works on: a commit on top, touching a file the plan wrote.
    repo::write(&w.repo(), "README.md", "# fixture\n\nTheirs now.\n");
    git(&w.repo(), &["commit", "-q", "-am", "theirs"]);
    let theirs = rev(&w.repo(), "refs/heads/main");

    // Finishing the execute redoes nothing: their commit and their file stay.
    let mut srv = w.server_env(&[]);
    let answer = srv.call("execute", admitted.params.clone());
    assert_eq!(
        answer["error"]["data"]["code"], "STALE_PLAN",
        "the world moved on: {answer}"
    );
    assert!(srv.close().success());
    assert_eq!(rev(&w.repo(), "refs/heads/main"), theirs);
    assert_eq!(
        std::fs::read_to_string(w.repo().join("README.md")).unwrap(),
        "# fixture\n\nTheirs now.\n"
    );
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
    assert!(!w.repo().join(".git/git_apply_patch").exists());
    assert!(!w.repo().join(".git/index.lock").exists());
}
