//! `git_apply_patch` over a real spawned server: plan, execute by hash, and every refusal
//! on the way, against real repositories compared with the real `git`.

use std::path::Path;
use std::time::Duration;

use protocol::store::Store;
use protocol::Digest;
use serde_json::{json, Value};
use tests::fixtures::put_patch;
use tests::repo::{self, git, rev};
use tests::server::Server;
use tests::world::plan_hash;
use tests::World;

fn apply_params(patch: &Digest) -> Value {
    json!({
        "operation": "apply",
        "params": {
            "repo": "repo",
            "message": "apply a patch",
            "author": {"name": "Mechanism Test", "email": "test@example.com"},
        },
        "inputs": {"patch": patch},
    })
}

fn commit_effect(plan: &Value) -> Value {
    plan["plan"]["intended_effects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "git.commit")
        .cloned()
        .expect("a git.commit effect")
}

fn edit_non_destructive(dir: &Path) {
    repo::write(dir, "src/new.rs", &repo::numbered("new", 5));
    repo::write(
        dir,
        "README.md",
        "# fixture\n\nA repository for tests, edited.\n",
    );
    git(dir, &["mv", "docs/guide.txt", "docs/manual.txt"]);
}

fn execute(srv: &mut Server, plan: &Value, admission: &Digest, force_ack: Option<Value>) -> Value {
    let mut params = json!({"plan_hash": plan["plan_hash"], "admission": admission});
    if let Some(ack) = force_ack {
        params["force_ack"] = ack;
    }
    srv.call("execute", params)
}

#[test]
fn execute_makes_the_predicted_commit_with_the_tree_git_apply_makes() {
    let w = World::new();
    let text = repo::patch_from_edits(&w.repo(), edit_non_destructive);
    let patch = put_patch(&w.store(), &text);
    let mut srv = w.server();
    let plan = srv.result("plan", apply_params(&patch));
    assert_eq!(plan["plan"]["destructive"], false, "{plan}");
    let predicted = commit_effect(&plan);
    assert!(plan["preview"].as_str().unwrap().contains("src/new.rs"));

    // The reference: git apply --index then git write-tree, in a clone.
    let clone = w.s.path("clone");
    git(
        w.s.root(),
        &["clone", "-q", w.repo().to_str().unwrap(), "clone"],
    );
    w.s.write("p.diff", &text);
    git(
        &clone,
        &["apply", "--index", w.s.path("p.diff").to_str().unwrap()],
    );
    let reference_tree = git(&clone, &["write-tree"]).trim().to_owned();
    assert_eq!(predicted["tree"], reference_tree);

    let admission = w.admit(&plan);
    let response = execute(&mut srv, &plan, &admission, None);
    let result = &response["result"];
    assert_eq!(result["result"]["status"], "success", "{response}");
    let head = rev(&w.repo(), "refs/heads/main");
    assert_eq!(predicted["to"], head);
    assert_eq!(rev(&w.repo(), "HEAD^{tree}"), reference_tree);
    // The work tree has the touched paths and git sees nothing left to commit.
    assert!(w.repo().join("src/new.rs").exists());
    assert!(w.repo().join("docs/manual.txt").exists());
    assert!(!w.repo().join("docs/guide.txt").exists());
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
    // The witness names the commit.
    let witness = &result["witness"];
    assert_eq!(witness["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(witness["subject"][0]["digest"]["gitCommit"], head);
    assert_eq!(witness["predicate"]["plan_hash"], plan["plan_hash"]);

    // Status says succeeded; planning the same patch again says it no longer applies.
    let status = srv.result("status", json!({"plan_hash": plan["plan_hash"]}));
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["result_hash"], result["result_hash"]);
    let again = srv.call("plan", apply_params(&patch));
    assert!(
        again.get("error").is_some(),
        "a second plan of an applied patch: {again}"
    );
    assert!(srv.close().success());
}

#[test]
fn two_server_processes_give_the_same_plan_hash() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let first = w.server().result("plan", apply_params(&patch));
    let second = w.server().result("plan", apply_params(&patch));
    assert_eq!(first["plan_hash"], second["plan_hash"]);
    assert_eq!(first["plan"], second["plan"]);
    let cost = w
        .server()
        .result("declare_cost", json!({"plan_hash": first["plan_hash"]}));
    assert_eq!(cost["cost_witness"]["plan_hash"], first["plan_hash"]);
}

#[test]
fn refusals_before_any_effect() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let mut srv = w.server();
    let before = rev(&w.repo(), "main");
    let unknown = Digest::of_bytes(b"no such plan");
    let code = srv.error_code(
        "execute",
        json!({"plan_hash": unknown, "admission": unknown}),
    );
    assert_eq!(code, "UNKNOWN_PLAN");
    let plan = srv.result("plan", apply_params(&patch));
    let code = srv.error_code(
        "execute",
        json!({"plan_hash": plan["plan_hash"], "admission": unknown}),
    );
    assert_eq!(code, "UNKNOWN_ARTIFACT");
    let code = srv.error_code("execute", json!({"plan_hash": plan["plan_hash"]}));
    assert_eq!(code, "ADMISSION_REQUIRED");
    let code = srv.error_code("plan", json!({"operation": "explode", "params": {}}));
    assert_eq!(code, "UNKNOWN_OPERATION");
    let code = srv.error_code(
        "plan",
        json!({"operation": "apply", "params": {"repo": 5}, "inputs": {"patch": patch}}),
    );
    assert_eq!(code, "INVALID_PARAMS");
    let mut outside = apply_params(&patch);
    outside["params"]["repo"] = json!("../../etc");
    let code = srv.error_code("plan", outside);
    assert_eq!(code, "CAPABILITY_DENIED");
    assert_eq!(rev(&w.repo(), "main"), before);
}

#[test]
fn no_plan_may_change_a_store_that_lies_inside_the_root() {
    let w = World::new();
    // The store inside the repository's work tree, as `--workspace . --store .mechanism`
    // gives when the workspace is the repository.
    let store = w.repo().join(".mechanism");
    let mut srv = Server::spawn(&w.workspace(), &store, None);
    let before = rev(&w.repo(), "main");
    // A forged claim would spend someone's force-ack; a removed one would free a spent one.
    let nonce_file = Store::open(&store)
        .unwrap()
        .nonce_path("0123456789abcdef0123456789abcdef")
        .unwrap();
    let nonce_target = nonce_file.strip_prefix(w.repo()).unwrap().to_str().unwrap();
    for target in [nonce_target, ".MECHANISM/refs/results/x.json"] {
        let patch = format!(
            "diff --git a/{target} b/{target}\nnew file mode 100644\n--- /dev/null\n+++ b/{target}\n@@ -0,0 +1 @@\n+forged\n"
        );
        let digest = put_patch(&store, &patch);
        let response = srv.call("plan", apply_params(&digest));
        assert_eq!(
            response["error"]["data"]["code"], "PATH_REFUSED",
            "{target}: {response}"
        );
        assert!(
            response["error"]["message"]
                .as_str()
                .unwrap()
                .contains("object store"),
            "{response}"
        );
    }
    // Everything else in the repository is planned as usual (git itself ignores the store).
    std::fs::write(w.repo().join(".git/info/exclude"), ".mechanism/\n").unwrap();
    let text = repo::patch_from_edits(&w.repo(), edit_non_destructive);
    let digest = put_patch(&store, &text);
    srv.result("plan", apply_params(&digest));
    assert_eq!(rev(&w.repo(), "main"), before);
    assert!(!nonce_file.exists());
}

#[test]
fn stored_objects_that_are_not_plans_or_admissions_are_refused_as_such() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let mut srv = w.server();
    let before = rev(&w.repo(), "main");
    // The patch blob is in the store, but it is neither a plan nor an admission witness.
    let code = srv.error_code("execute", json!({"plan_hash": patch, "admission": patch}));
    assert_eq!(code, "UNKNOWN_PLAN");
    let code = srv.error_code("status", json!({"plan_hash": patch}));
    assert_eq!(code, "UNKNOWN_PLAN");
    let plan = srv.result("plan", apply_params(&patch));
    let code = srv.error_code(
        "execute",
        json!({"plan_hash": plan["plan_hash"], "admission": patch}),
    );
    assert_eq!(code, "ADMISSION_REQUIRED");
    assert_eq!(
        srv.result("status", json!({"plan_hash": plan["plan_hash"]}))["state"],
        "planned"
    );
    assert_eq!(rev(&w.repo(), "main"), before);
}

#[test]
fn a_plan_goes_stale_when_the_branch_moves_or_a_touched_file_is_edited() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let mut srv = w.server();
    let plan = srv.result("plan", apply_params(&patch));
    let admission = w.admit(&plan);

    // An edit of a touched file in the work tree.
    repo::write(
        &w.repo(),
        "README.md",
        "# fixture\n\nA repository for tests.\nlocal edit\n",
    );
    let response = execute(&mut srv, &plan, &admission, None);
    assert_eq!(
        response["error"]["data"]["code"], "STALE_PLAN",
        "{response}"
    );
    git(&w.repo(), &["checkout", "-q", "--", "README.md"]);

    // The branch moves.
    repo::write(&w.repo(), "other.txt", "unrelated\n");
    git(&w.repo(), &["add", "other.txt"]);
    git(&w.repo(), &["commit", "-q", "-m", "moved on"]);
    let head = rev(&w.repo(), "main");
    let response = execute(&mut srv, &plan, &admission, None);
    assert_eq!(
        response["error"]["data"]["code"], "STALE_PLAN",
        "{response}"
    );
    assert_eq!(rev(&w.repo(), "main"), head, "nothing was applied");
}

#[test]
fn re_executing_an_applied_plan_returns_the_recorded_result_and_applies_nothing() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let mut srv = w.server();
    let plan = srv.result("plan", apply_params(&patch));
    let admission = w.admit(&plan);
    let first = execute(&mut srv, &plan, &admission, None);
    let head = rev(&w.repo(), "main");
    let second = execute(&mut srv, &plan, &admission, None);
    assert_eq!(
        first["result"]["result_hash"], second["result"]["result_hash"],
        "{second}"
    );
    assert_eq!(rev(&w.repo(), "main"), head);
    // A fresh server process knows it too (records live in the store).
    let third = execute(&mut w.server(), &plan, &admission, None);
    assert_eq!(
        first["result"]["result_hash"], third["result"]["result_hash"],
        "{third}"
    );
}

#[test]
fn destructive_plans_need_a_fresh_force_ack_for_every_application() {
    let w = World::new();
    let patch = w.patch(|dir| {
        std::fs::remove_file(dir.join("src/old.rs")).unwrap();
    });
    let mut srv = w.server();
    let plan = srv.result("plan", apply_params(&patch));
    assert_eq!(plan["plan"]["destructive"], true, "{plan}");
    let hash = plan_hash(&plan);
    let admission = w.admit(&plan);
    let base = rev(&w.repo(), "main");

    let response = execute(&mut srv, &plan, &admission, None);
    assert_eq!(
        response["error"]["data"]["code"], "FORCE_ACK_REQUIRED",
        "{response}"
    );
    let other_plan = Digest::of_bytes(b"another plan");
    let cross = w.operator.force_ack(&other_plan, &admission);
    let response = execute(&mut srv, &plan, &admission, Some(cross));
    assert_eq!(
        response["error"]["data"]["code"], "FORCE_ACK_INVALID",
        "{response}"
    );
    assert_eq!(rev(&w.repo(), "main"), base);

    let ack = w.operator.force_ack(&hash, &admission);
    let response = execute(&mut srv, &plan, &admission, Some(ack.clone()));
    assert_eq!(
        response["result"]["result"]["status"], "success",
        "{response}"
    );
    assert!(!w.repo().join("src/old.rs").exists());

    // Put the world back to the plan's base: a new execute is a second application.
    git(&w.repo(), &["reset", "-q", "--hard", &base]);
    let response = execute(&mut srv, &plan, &admission, Some(ack));
    assert_eq!(
        response["error"]["data"]["code"], "FORCE_ACK_REPLAYED",
        "{response}"
    );
    assert_eq!(rev(&w.repo(), "main"), base);
    let fresh = w.operator.force_ack(&hash, &admission);
    let response = execute(&mut srv, &plan, &admission, Some(fresh));
    assert_eq!(
        response["result"]["result"]["status"], "success",
        "{response}"
    );
}

#[test]
fn without_trusted_signers_destructive_plans_never_run() {
    let w = World::new();
    let patch = w.patch(|dir| std::fs::remove_file(dir.join("src/old.rs")).unwrap());
    let mut srv = Server::spawn(&w.workspace(), &w.store(), None);
    let plan = srv.result("plan", apply_params(&patch));
    let hash = plan_hash(&plan);
    let admission = w.admit(&plan);
    let ack = w.operator.force_ack(&hash, &admission);
    let response = execute(&mut srv, &plan, &admission, Some(ack));
    assert_eq!(
        response["error"]["data"]["code"], "FORCE_ACK_INVALID",
        "{response}"
    );
    assert!(w.repo().join("src/old.rs").exists());
}

#[test]
fn concurrent_executes_of_one_plan_apply_it_once_and_the_others_are_busy_or_recorded() {
    for processes in [2, 4, 8] {
        let w = World::new();
        let patch = w.patch(edit_non_destructive);
        let mut servers: Vec<Server> = (0..processes).map(|_| w.server()).collect();
        let plan = servers[0].result("plan", apply_params(&patch));
        let admission = w.admit(&plan);
        let base = rev(&w.repo(), "main");
        for server in &mut servers {
            server.result("describe", json!({}));
        }
        // Two requests back to back in the first process, one in each of the others.
        let request = |id: u64| {
            json!({"jsonrpc": "2.0", "id": id, "method": "execute",
                   "params": {"plan_hash": plan["plan_hash"], "admission": admission}})
        };
        servers[0].send(&request(100));
        for (i, server) in servers.iter_mut().enumerate() {
            server.send(&request(i as u64));
        }
        let mut outcomes = Vec::new();
        for (i, server) in servers.iter_mut().enumerate() {
            for _ in 0..if i == 0 { 2 } else { 1 } {
                outcomes.push(server.recv_response().0);
            }
        }
        let successes: Vec<&Value> = outcomes
            .iter()
            .filter(|r| r.get("result").is_some())
            .collect();
        assert!(!successes.is_empty(), "{processes}: {outcomes:?}");
        for r in &successes {
            assert_eq!(
                r["result"]["result_hash"],
                successes[0]["result"]["result_hash"]
            );
        }
        for r in outcomes.iter().filter(|r| r.get("error").is_some()) {
            assert_eq!(r["error"]["data"]["code"], "BUSY", "{processes}: {r}");
        }
        // Applied exactly once: main is one commit ahead of the base, and a later execute
        // answers the recorded result.
        assert_eq!(rev(&w.repo(), "main~1"), base, "{processes}");
        assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
        let again = execute(&mut servers[1], &plan, &admission, None);
        assert_eq!(
            again["result"]["result_hash"], successes[0]["result"]["result_hash"],
            "{processes}: {again}"
        );
        assert_eq!(servers[0].try_recv(Duration::from_millis(100)), None);
    }
}

#[test]
fn a_lock_held_by_another_program_is_busy_and_changes_nothing() {
    for lock in [".git/index.lock", ".git/refs/heads/main.lock"] {
        let w = World::new();
        let patch = w.patch(edit_non_destructive);
        let mut srv = w.server();
        let plan = srv.result("plan", apply_params(&patch));
        let admission = w.admit(&plan);
        let base = rev(&w.repo(), "main");
        // As a `git commit` in progress holds it.
        std::fs::write(w.repo().join(lock), "theirs").unwrap();
        let response = execute(&mut srv, &plan, &admission, None);
        assert_eq!(
            response["error"]["data"]["code"], "BUSY",
            "{lock}: {response}"
        );
        assert!(
            response["error"]["message"]
                .as_str()
                .unwrap()
                .contains("retry"),
            "{response}"
        );
        assert_eq!(rev(&w.repo(), "main"), base, "{lock}");
        assert_eq!(
            std::fs::read_to_string(w.repo().join(lock)).unwrap(),
            "theirs",
            "{lock}: their lock is left alone"
        );
        assert!(!w.repo().join("src/new.rs").exists(), "{lock}");
        assert!(!w.repo().join(".git/git_apply_patch").exists(), "{lock}");
        let status = srv.result("status", json!({"plan_hash": plan["plan_hash"]}));
        assert_eq!(status["state"], "planned", "{lock}: nothing recorded");

        // Once they are done, the same request succeeds.
        std::fs::remove_file(w.repo().join(lock)).unwrap();
        let response = execute(&mut srv, &plan, &admission, None);
        assert_eq!(
            response["result"]["result"]["status"], "success",
            "{lock}: {response}"
        );
        assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
    }
}

#[test]
fn another_execute_working_on_the_repository_makes_an_execute_busy() {
    let w = World::new();
    let first = w.patch(|d| repo::write(d, "first.txt", "first\n"));
    let second = w.patch(|d| repo::write(d, "second.txt", "second\n"));
    let mut planner = w.server();
    let plan_a = planner.result("plan", apply_params(&first));
    let plan_b = planner.result("plan", apply_params(&second));
    let admission_a = w.admit(&plan_a);
    let admission_b = w.admit(&plan_b);
    // The first execute is held past its point of no return, its locks taken.
    let mut slow = w.server_env(&[
        ("MECHANISM_FAILPOINT", "git:ref"),
        ("MECHANISM_FAILPOINT_SLEEP_MS", "1500"),
    ]);
    slow.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "execute",
                      "params": {"plan_hash": plan_a["plan_hash"], "admission": admission_a}}));
    // Its intent is written before the branch moves: then it holds every lock.
    let intent = w.repo().join(".git/git_apply_patch/intent.json");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !intent.exists() {
        assert!(
            std::time::Instant::now() < until,
            "the first execute never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let busy = execute(&mut planner, &plan_b, &admission_b, None);
    assert_eq!(busy["error"]["data"]["code"], "BUSY", "{busy}");
    let (first_answer, _) = slow.recv_response();
    assert_eq!(
        first_answer["result"]["result"]["status"], "success",
        "{first_answer}"
    );
    // The second plan was made on the old base: now it is stale, and says so.
    let stale = execute(&mut planner, &plan_b, &admission_b, None);
    assert_eq!(stale["error"]["data"]["code"], "STALE_PLAN", "{stale}");
}

#[test]
fn a_deadline_the_plan_cannot_meet_is_refused_before_anything_changes() {
    let w = World::new();
    let patch = w.patch(|d| {
        edit_non_destructive(d);
        git(d, &["rm", "-q", "src/old.rs"]);
    });
    let mut srv = w.server();
    let plan = srv.result("plan", apply_params(&patch));
    assert_eq!(plan["plan"]["destructive"], true);
    let admission = w.admit(&plan);
    let ack = w.operator.force_ack(&plan_hash(&plan), &admission);
    let base = rev(&w.repo(), "main");
    let params = |deadline_ms: Option<u64>| {
        let mut params = json!({"plan_hash": plan["plan_hash"], "admission": admission,
                                "force_ack": ack});
        if let Some(ms) = deadline_ms {
            params["deadline_ms"] = json!(ms);
        }
        params
    };
    // The plan estimates over 500 ms; 50 ms cannot do.
    let refused = srv.call("execute", params(Some(50)));
    assert_eq!(
        refused["error"]["data"]["code"], "DEADLINE_EXCEEDED",
        "{refused}"
    );
    assert_eq!(rev(&w.repo(), "main"), base);
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
    let journalled = w.store().join("refs/executions");
    assert!(
        !journalled.exists() || std::fs::read_dir(&journalled).unwrap().count() == 0,
        "a refused execution is not left journalled"
    );
    // The refusal spent nothing: the same force-ack runs it with time enough.
    let done = srv.call("execute", params(Some(60_000)));
    assert_eq!(done["result"]["result"]["status"], "success", "{done}");
}

#[test]
fn past_its_point_of_no_return_an_execute_finishes_and_records_whatever_the_deadline() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let mut srv = w.server();
    let plan = srv.result("plan", apply_params(&patch));
    let admission = w.admit(&plan);
    let estimate = plan["plan"]["estimated_costs"]["wall_ms"].as_u64().unwrap();
    let mut slow = w.server_env(&[
        ("MECHANISM_FAILPOINT", "git:ref"),
        (
            "MECHANISM_FAILPOINT_SLEEP_MS",
            &(estimate + 1000).to_string(),
        ),
    ]);
    let started = std::time::Instant::now();
    let deadline_ms = estimate + 200;
    let answer = slow.call(
        "execute",
        json!({"plan_hash": plan["plan_hash"], "admission": admission,
               "deadline_ms": deadline_ms}),
    );
    assert!(started.elapsed() > Duration::from_millis(deadline_ms));
    assert_eq!(answer["result"]["result"]["status"], "success", "{answer}");
    assert_eq!(rev(&w.repo(), "main"), commit_effect(&plan)["to"]);
    assert_eq!(git(&w.repo(), &["status", "--porcelain"]), "");
    let status = srv.result("status", json!({"plan_hash": plan["plan_hash"]}));
    assert_eq!(status["state"], "succeeded");
}

/// An execute predicts once, in the runtime's re-plan, and applies what that prepared: a
/// server that aborts at its second prediction executes all the same, making the commit
/// predicted at plan time.
#[test]
fn execute_predicts_once_and_applies_what_the_re_plan_prepared() {
    let w = World::new();
    let patch = w.patch(edit_non_destructive);
    let plan = w.server().result("plan", apply_params(&patch));
    let hash = plan_hash(&plan);
    let admission = w.admit(&plan);
    let mut once = w.server_env(&[("MECHANISM_FAILPOINT", "git:predicted@2")]);
    let result = once.result(
        "execute",
        json!({"plan_hash": hash, "admission": admission}),
    );
    assert_eq!(result["result"]["status"], "success", "{result}");
    assert_eq!(
        json!(rev(&w.repo(), "main")),
        commit_effect(&plan)["to"],
        "the predicted commit"
    );
    let (status, _) = once.finish();
    assert!(status.success(), "the server exited with {status}");
}

/// What the re-plan of an execute read can change before the mechanism takes the
/// repository's locks; execute does not predict again under them, it checks exactly these.
enum Change {
    /// A touched file edited in the work tree.
    WorkTree,
    /// A touched file's change staged in the index, the work tree put back.
    Index,
    /// The branch moved on.
    Branch,
    /// Another branch checked out.
    Head,
}

/// A change made between the runtime's re-plan and the mechanism's locks (the execute held
/// right after its journal, before the mechanism starts) is refused with `STALE_PLAN`, with
/// nothing applied and the journal ended: execute re-checks under the locks what the
/// prepared prediction read, rather than predicting it again.
#[test]
fn a_change_after_the_re_plan_and_before_the_locks_is_stale_and_applies_nothing() {
    for change in [
        Change::WorkTree,
        Change::Index,
        Change::Branch,
        Change::Head,
    ] {
        let w = World::new();
        let patch = w.patch(edit_non_destructive);
        let mut planner = w.server();
        let plan = planner.result("plan", apply_params(&patch));
        let hash = plan_hash(&plan);
        let admission = w.admit(&plan);
        drop(planner);
        let base = rev(&w.repo(), "main");
        let mut held = w.server_env(&[
            ("MECHANISM_FAILPOINT", "execute:journal"),
            ("MECHANISM_FAILPOINT_SLEEP_MS", "1500"),
        ]);
        held.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "execute",
                          "params": {"plan_hash": hash, "admission": admission}}));
        let journal = w
            .store()
            .join("refs/executions")
            .join(format!("{}.json", hash.hex()));
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while !journal.exists() {
            assert!(
                std::time::Instant::now() < until,
                "the execute never re-planned"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let edited = "# fixture\n\nA repository for tests.\nlocal edit\n";
        match change {
            Change::WorkTree => repo::write(&w.repo(), "README.md", edited),
            Change::Index => {
                let original = std::fs::read_to_string(w.repo().join("README.md")).unwrap();
                repo::write(&w.repo(), "README.md", edited);
                git(&w.repo(), &["add", "README.md"]);
                repo::write(&w.repo(), "README.md", &original);
            }
            Change::Branch => {
                repo::write(&w.repo(), "other.txt", "unrelated\n");
                git(&w.repo(), &["add", "other.txt"]);
                git(&w.repo(), &["commit", "-q", "-m", "moved on"]);
            }
            Change::Head => {
                git(&w.repo(), &["checkout", "-q", "-b", "elsewhere"]);
            }
        }
        let before = files(&w.repo());
        let (answer, _) = held.recv_response();
        assert_eq!(answer["error"]["data"]["code"], "STALE_PLAN", "{answer}");
        assert_eq!(
            files(&w.repo()),
            before,
            "the refused execute changed the repository"
        );
        if !matches!(change, Change::Branch) {
            assert_eq!(rev(&w.repo(), "main"), base, "nothing was applied");
        }
        assert!(
            !journal.exists(),
            "the journal of a refused execute was left"
        );
    }
}

/// Every file under `dir` with its content: the work tree and the git directory.
fn files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                found.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    found
}
