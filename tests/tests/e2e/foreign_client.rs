//! A client written in another language, sharing none of our code, drives the real
//! `mechanism-server`: `tests/foreign-client/client.mjs`, JavaScript on vscode-jsonrpc (the
//! JSON-RPC library behind VS Code's language clients), speaking LSP `Content-Length` framing
//! over the child's real pipes. What it received is then judged with our own code: the plan
//! hash it was given must be the digest of the plan it was given, the one our admission gets,
//! and the one the plan is stored under.
//!
//! Needs Node.js (20 or later) and npm on `PATH`; the client's one dependency is installed
//! with `npm ci` from the committed lockfile on first use.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use protocol::store::Store;
use protocol::{canonical, Digest};
use serde_json::{json, Value};
use tests::fixtures::put_patch;
use tests::output::json_of;
use tests::repo;
use tests::{bin_path, Scratch};

/// The foreign client's npm package.
const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/foreign-client");

/// The one dependency, whose installed version must be the pinned one.
const DEPENDENCY: &str = "vscode-jsonrpc";

/// The params of the `apply` plan the client asks for.
fn apply_params() -> Value {
    json!({
        "repo": "repo",
        "message": "apply a patch from a foreign client",
        "author": {"name": "Foreign Client", "email": "foreign@example.com"},
    })
}

#[test]
fn a_vscode_jsonrpc_client_describes_plans_and_gets_status_from_the_real_server() {
    let s = Scratch::new();
    let repo_dir = repo::init(&s.path("ws/repo"));
    let store = s.path("store");
    let patch = repo::patch_from_edits(&repo_dir, |dir| {
        repo::write(
            dir,
            "README.md",
            "# fixture\n\nEdited by a foreign client.\n",
        );
        repo::write(dir, "src/new.rs", &repo::numbered("new", 4));
    });
    assert!(!patch.is_empty(), "the edit made no patch");
    let patch_digest = put_patch(&store, &patch);

    let mut client = foreign_client(&s, &patch_digest);
    let received = json_of(&succeeds(&mut client));

    // describe: the mechanism and the protocol version it chose from the one offered.
    let describe = &received["describe"];
    assert_eq!(describe["protocol_version"], "mechanism/0", "{describe:#}");
    assert_eq!(
        describe["mechanism"]["id"], "git_apply_patch",
        "{describe:#}"
    );
    assert!(
        describe["operations"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op["name"] == "apply")),
        "no apply operation: {describe:#}"
    );

    // plan: the hash the client was given is the SHA-256 of the RFC 8785 bytes of the plan it
    // was given, after a round trip through JavaScript's own JSON parser and serialiser.
    let plan = &received["plan"]["plan"];
    assert_eq!(plan["kind"], "mechanism.plan/v0", "{plan:#}");
    assert_eq!(
        plan["inputs"]["patch"],
        patch_digest.to_string(),
        "{plan:#}"
    );
    let plan_hash: Digest = received["plan"]["plan_hash"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no valid plan_hash in {:#}", received["plan"]));
    let canonical_bytes = canonical::to_vec(plan).expect("the received plan is I-JSON");
    assert_eq!(Digest::of_bytes(&canonical_bytes), plan_hash, "{plan:#}");

    // The plan is stored under that hash, and is exactly what the client received.
    let stored = Store::open(&store)
        .expect("store")
        .get_artifact(&plan_hash)
        .unwrap_or_else(|e| panic!("plan {plan_hash} is not stored: {e}"));
    assert_eq!(
        stored.value(),
        plan,
        "the stored plan differs from the received one"
    );

    // Our own client path, the admission CLI over jsonrpsee, gets the same hash.
    assert_eq!(
        admission_plan_hash(&s, &patch_digest),
        plan_hash,
        "our admission planned differently"
    );

    assert_eq!(
        received["status"]["state"], "planned",
        "{:#}",
        received["status"]
    );

    let error = &received["unknown_method_error"];
    assert_eq!(error["code"], -32601, "{error:#}");
    assert_eq!(error["data"]["code"], "METHOD_NOT_FOUND", "{error:#}");

    // Nothing arrived unasked (the `$/cancelRequest` notification got no reply) and EOF on
    // stdin ended the server cleanly; the client fails otherwise, this says what it saw.
    assert_eq!(received["unexpected"], json!([]), "{received:#}");
    assert_eq!(received["notifications"], json!([]), "{received:#}");
    assert_eq!(received["server_exit"]["code"], 0, "{received:#}");
}

/// `node client.mjs --patch DIGEST --params JSON -- mechanism-server git_apply_patch --root ws
/// --store store`, run in the scratch directory.
fn foreign_client(s: &Scratch, patch: &Digest) -> Command {
    tests::node::ensure_installed(Path::new(CLIENT_DIR), DEPENDENCY);
    let mut cmd = Command::new("node");
    cmd.current_dir(s.root())
        .env_remove("RUST_LOG")
        .arg(Path::new(CLIENT_DIR).join("client.mjs"))
        .arg("--patch")
        .arg(patch.to_string())
        .arg("--params")
        .arg(apply_params().to_string())
        .arg("--")
        .arg(bin_path("mechanism-server"))
        .args(["git_apply_patch", "--root"])
        .arg(s.path("ws"))
        .arg("--store")
        .arg(s.path("store"));
    cmd
}

/// The plan hash `admission plan` reports for the same patch and params on the same store.
fn admission_plan_hash(s: &Scratch, patch: &Digest) -> Digest {
    let workorder = s.write(
        "workorder.json",
        serde_json::to_vec_pretty(&json!({
            "kind": "mechanism.workorder/v0",
            "work_order_id": "foreign-client",
            "mechanism": "git_apply_patch",
            "operation": "apply",
            "params": apply_params(),
            "inputs": {"patch": patch.to_string()},
            "budget": {"wall_ms": 60000},
        }))
        .expect("JSON"),
    );
    let mut cmd = s.admission();
    cmd.args(["--json", "--store", "store", "--workspace", "ws", "plan"])
        .arg(workorder);
    let report = json_of(&succeeds(&mut cmd));
    assert_eq!(report["outcome"], "admitted", "{report:#}");
    report["plan_hash"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no valid plan_hash in {report:#}"))
}

/// Runs `cmd`, which must exit 0; assert_cmd prints the command, stdout and stderr if not.
fn succeeds(cmd: &mut Command) -> Output {
    cmd.assert().success().get_output().clone()
}
