//! The Python example mechanism (`examples/fs_write`) killed inside an execute, at a chosen
//! step: the real `fs_write.py`, run by a few lines of Python that turn one of its functions
//! into `kill -9` of its own process, so the intent it wrote is left exactly as a crash
//! leaves it. Planning is `BUSY` until the execute is finished, which the next execute of the
//! plan, or the next start of `fs_write.py`, does, spending the force-ack it carried.

use std::path::Path;
use std::process::Command;

use protocol::store::Store;
use protocol::Digest;
use serde_json::{json, Value};
use tests::fixtures::put_patch;
use tests::server::Server;
use tests::World;

/// The directory of `fs_write.py`.
const FS_WRITE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fs_write");

/// Runs `fs_write.main` with `function` (a dotted name in the module) replaced by a SIGKILL
/// of the process itself.
const KILLED_AT: &str = r#"
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import fs_write
cls, name = sys.argv[2].split(".")
setattr(getattr(fs_write, cls), name, lambda *args: os.kill(os.getpid(), signal.SIGKILL))
sys.exit(fs_write.main(sys.argv[3:]))
"#;

/// The command-line arguments of `fs_write.py` in `w`.
fn args(w: &World) -> Vec<std::ffi::OsString> {
    vec![
        "--root".into(),
        w.workspace().into(),
        "--store".into(),
        w.store().into(),
        "--force-ack-signers".into(),
        w.operator.allowed_signers.clone().into(),
    ]
}

/// `fs_write.py` as shipped.
fn fs_write(w: &World) -> Server {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(FS_WRITE_DIR).join("fs_write.py"))
        .args(args(w));
    Server::spawn_command(cmd)
}

/// `fs_write.py` that kills itself where `function` would run.
fn killed_at(w: &World, function: &str) -> Server {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", KILLED_AT, FS_WRITE_DIR, function])
        .args(args(w));
    Server::spawn_command(cmd)
}

/// Plans writing `content` to `path` and admits it; the execute params (with a force-ack
/// when the plan is destructive) and the plan request.
fn admitted(w: &World, planner: &mut Server, path: &str, content: &str) -> (Value, Value) {
    let request = json!({
        "operation": "write",
        "params": {"path": path},
        "inputs": {"content": put_patch(&w.store(), content)},
    });
    let planned = planner.result("plan", request.clone());
    (w.execute_params(&planned), request)
}

fn read(w: &World, path: &str) -> String {
    std::fs::read_to_string(w.workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Sends `params` to a process that dies where `function` would run.
fn execute_killed_at(w: &World, function: &str, params: &Value) {
    let mut doomed = killed_at(w, function);
    doomed.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "execute", "params": params}));
    let status = doomed.wait_exit();
    assert!(!status.success(), "{function} did not kill it: {status}");
}

#[test]
fn planning_is_busy_until_the_next_execute_finishes_an_execute_killed_past_its_intent() {
    let w = World::empty();
    // Started before the kill, so its own start finishes nothing.
    let mut planner = fs_write(&w);
    let (params, request) = admitted(&w, &mut planner, "notes/hello.txt", "hello\n");
    execute_killed_at(&w, "FsWrite.apply", &params);
    assert!(
        !w.workspace().join("notes").exists(),
        "the kill came before any change"
    );

    assert_eq!(planner.error_code("plan", request.clone()), "BUSY");
    let finished = planner.result("execute", params.clone());
    assert_eq!(finished["result"]["status"], "success", "{finished}");
    assert_eq!(read(&w, "notes/hello.txt"), "hello\n");
    let status = planner.result("status", json!({"plan_hash": params["plan_hash"]}));
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["result_hash"], finished["result_hash"]);
    // Finished: planning works again, and the plan now writes nothing.
    let again = planner.result("plan", request);
    assert_eq!(again["plan"]["intended_effects"], json!([]), "{again}");
    assert!(planner.close().success());
}

#[test]
fn a_start_finishes_an_execute_killed_before_it_claimed_the_force_ack_and_spends_it() {
    let w = World::empty();
    let mut srv = fs_write(&w);
    let (first, _) = admitted(&w, &mut srv, "hello.txt", "hello\n");
    srv.result("execute", first);
    let (params, _) = admitted(&w, &mut srv, "hello.txt", "hello, world\n");
    assert!(
        params.get("force_ack").is_some(),
        "an overwrite is destructive"
    );
    assert!(srv.close().success());

    execute_killed_at(&w, "Store.claim_nonce", &params);
    let nonce = params["force_ack"]["nonce"].as_str().unwrap();
    // The Python mechanism claims it where, and as, the protocol crate says a claim lives.
    let store = Store::open(w.store()).unwrap();
    let claimed = store.nonce_path(nonce).unwrap();
    assert!(!claimed.exists(), "killed before the nonce was claimed");
    assert_eq!(read(&w, "hello.txt"), "hello\n");

    // A fresh process finishes it as it starts, before any request.
    let mut srv = fs_write(&w);
    let status = srv.result("status", json!({"plan_hash": params["plan_hash"]}));
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(read(&w, "hello.txt"), "hello, world\n");
    assert!(
        claimed.exists(),
        "the approval the finished execute used is spent"
    );
    let plan_hash: Digest = params["plan_hash"].as_str().unwrap().parse().unwrap();
    assert_eq!(store.nonce_claim(nonce).unwrap(), Some(plan_hash));
    // The same execute, force-ack and all, returns what was recorded.
    let answer = srv.result("execute", params);
    assert_eq!(answer["result_hash"], status["result_hash"]);
    assert!(srv.close().success());
}

/// `deadline_ms`, which the admission sends with every execute, is accepted: too short for
/// the plan's estimate it is DEADLINE_EXCEEDED with nothing applied, long enough it runs;
/// anything but a positive integer is INVALID_PARAMS.
#[test]
fn execute_takes_a_deadline_and_refuses_one_it_cannot_meet() {
    let w = World::empty();
    let mut srv = fs_write(&w);
    let (params, _) = admitted(&w, &mut srv, "hello.txt", "hello\n");
    for bad in [json!(0), json!(true), json!("1000")] {
        let mut with = params.clone();
        with["deadline_ms"] = bad;
        assert_eq!(srv.error_code("execute", with), "INVALID_PARAMS");
    }
    let mut short = params.clone();
    short["deadline_ms"] = json!(1);
    assert_eq!(srv.error_code("execute", short), "DEADLINE_EXCEEDED");
    assert!(!w.workspace().join("hello.txt").exists());
    let mut long = params;
    long["deadline_ms"] = json!(60_000);
    let executed = srv.result("execute", long);
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    assert_eq!(read(&w, "hello.txt"), "hello\n");
    assert!(srv.close().success());
}
