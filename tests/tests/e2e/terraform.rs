//! `admission` over `terraform_plan_apply` and the real terraform CLI, end to end: a create
//! that runs straight through and verifies, a destroy and a replace that wait for a signed
//! force-ack, an apply out of band between plan and execute, the conformance harness, and a
//! run killed while `terraform apply` runs. Modules use only the built-in `terraform_data`
//! resource and local state: nothing is downloaded.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::fixtures::APPROVER;
use tests::output::{exits, json_of, string};
use tests::{bin_path, World};

/// Two resources: `b` is replaced when its trigger changes, `a` updated when its input does.
const TWO: &str = r#"
resource "terraform_data" "a" {
  input = "alpha"
}
resource "terraform_data" "b" {
  input            = "beta"
  triggers_replace = ["one"]
}
"#;

/// The terraform on PATH, which the mechanism runs; fails the test, naming it, when absent.
fn terraform() -> PathBuf {
    let runs = Command::new("terraform").arg("version").output();
    assert!(
        runs.is_ok_and(|o| o.status.success()),
        "this test needs terraform on PATH (/usr/local/bin/terraform), and it does not run"
    );
    PathBuf::from("terraform")
}

/// A world whose workspace holds the module `ws/infra` with `main.tf`.
fn world(main_tf: &str) -> World {
    terraform();
    let w = World::empty();
    write_module(&w, main_tf);
    w
}

fn write_module(w: &World, main_tf: &str) {
    w.s.write("ws/infra/main.tf", main_tf);
}

/// `admission --store store --workspace ws --allowed-signers ... --json ARGS`, asserting the
/// exit code; returns stdout as JSON.
fn admission(w: &World, args: &[&str], code: i32) -> Value {
    json_of(&exits(&mut cli(w, args), code))
}

fn cli(w: &World, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = w.s.admission();
    cmd.args(["--store", "store", "--workspace", "ws", "--allowed-signers"])
        .arg(&w.operator.allowed_signers)
        .arg("--json")
        .args(args);
    cmd
}

/// Writes the workorder `NAME.json` running `operation` on `infra`; returns its name.
fn workorder(w: &World, name: &str, operation: &str) -> String {
    let file = format!("{name}.json");
    let value = json!({
        "kind": "mechanism.workorder/v0",
        "work_order_id": name,
        "mechanism": "terraform_plan_apply",
        "operation": operation,
        "params": {"dir": "infra"},
        "inputs": {},
        "budget": {"wall_ms": 120000},
        "ticket_id": "OPS-11",
    });
    w.s.write(&file, serde_json::to_vec_pretty(&value).unwrap());
    file
}

/// The module's state file, raw.
fn state_bytes(w: &World) -> Vec<u8> {
    fs::read(w.s.path("ws/infra/terraform.tfstate")).unwrap_or_default()
}

/// The addresses of the resources in the module's state, sorted.
fn resources(w: &World) -> Vec<String> {
    let bytes = state_bytes(w);
    if bytes.is_empty() {
        return Vec::new();
    }
    let state: Value = serde_json::from_slice(&bytes).expect("the state is JSON");
    let mut names: Vec<String> = state["resources"]
        .as_array()
        .expect("resources in the state")
        .iter()
        .map(|r| format!("{}.{}", string(&r["type"]), string(&r["name"])))
        .collect();
    names.sort();
    names
}

fn verified(w: &World, id: &str) {
    let report = admission(w, &["verify", id], 0);
    assert_eq!(report["verified"], true, "{report:#}");
}

/// `admission approve PLAN` with the operator's ssh-keygen key, then
/// `admission execute PLAN --force-ack FILE`, which must succeed.
fn approve_and_execute(w: &World, plan: &str, name: &str) -> Value {
    let file = format!("{name}.ack.json");
    let mut cmd = cli(w, &["approve", plan, "--approver", APPROVER, "-o", &file]);
    cmd.arg("--key").arg(&w.operator.key);
    exits(&mut cmd, 0);
    let executed = admission(w, &["execute", plan, "--force-ack", &file], 0);
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    executed
}

fn create(w: &World) -> Value {
    let report = admission(w, &["run", &workorder(w, "create", "apply")], 0);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    report
}

#[test]
fn a_create_runs_verifies_and_a_destroy_waits_for_its_force_ack() {
    let w = world(TWO);
    let report = create(&w);
    assert_eq!(report["destructive"], false, "{report:#}");
    assert_eq!(resources(&w), ["terraform_data.a", "terraform_data.b"]);
    verified(&w, &string(&report["run_record"]));
    verified(&w, &string(&report["witness_hash"]));

    let state = state_bytes(&w);
    let paused = admission(&w, &["run", &workorder(&w, "destroy", "destroy")], 4);
    assert_eq!(paused["outcome"], "awaiting_force_ack", "{paused:#}");
    assert_eq!(paused["destructive"], true, "{paused:#}");
    assert_eq!(
        state_bytes(&w),
        state,
        "the state changed without a force-ack"
    );

    let executed = approve_and_execute(&w, &string(&paused["plan_hash"]), "destroy");
    assert_eq!(resources(&w), Vec::<String>::new());
    verified(&w, &string(&executed["witness_hash"]));
}

#[test]
fn a_replace_is_destructive_and_an_input_change_is_not() {
    let w = world(TWO);
    create(&w);

    write_module(&w, &TWO.replace("\"alpha\"", "\"alpha2\""));
    let updated = admission(&w, &["run", &workorder(&w, "update", "apply")], 0);
    assert_eq!(updated["destructive"], false, "{updated:#}");
    assert_eq!(updated["outcome"], "succeeded", "{updated:#}");

    let state = state_bytes(&w);
    write_module(&w, &TWO.replace("\"one\"", "\"two\""));
    let paused = admission(&w, &["run", &workorder(&w, "replace", "apply")], 4);
    assert_eq!(paused["outcome"], "awaiting_force_ack", "{paused:#}");
    assert_eq!(paused["destructive"], true, "{paused:#}");
    assert_eq!(
        state_bytes(&w),
        state,
        "the state changed without a force-ack"
    );
    let executed = approve_and_execute(&w, &string(&paused["plan_hash"]), "replace");
    verified(&w, &string(&executed["witness_hash"]));
}

#[test]
fn an_apply_out_of_band_between_plan_and_execute_is_a_stale_plan() {
    let w = world(TWO);
    create(&w);
    write_module(&w, &TWO.replace("\"alpha\"", "\"alpha2\""));
    let planned = admission(&w, &["plan", &workorder(&w, "update", "apply")], 0);
    assert_eq!(planned["outcome"], "admitted", "{planned:#}");

    // Someone applies the same change by hand, with terraform's own files beside ours.
    let module = w.s.path("ws/infra");
    let config = w.s.write("by-hand.tfrc", "");
    let data = w.s.path("by-hand-data");
    for args in [
        &["init", "-input=false"][..],
        &["apply", "-input=false", "-auto-approve"],
    ] {
        let out = Command::new(terraform())
            .args(args)
            .arg("-no-color")
            .current_dir(&module)
            .env("TF_CLI_CONFIG_FILE", &config)
            .env("TF_DATA_DIR", &data)
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("terraform runs");
        assert!(
            out.status.success(),
            "terraform {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let state = state_bytes(&w);

    let refused = admission(&w, &["execute", &string(&planned["plan_hash"])], 6);
    assert_eq!(refused["error"]["code"], "STALE_PLAN", "{refused:#}");
    assert_eq!(state_bytes(&w), state, "a stale plan changed the state");
}

#[test]
fn terraform_plan_apply_passes_the_conformance_harness() {
    terraform();
    let w = World::empty();
    let seed = w.s.write("seed/main.tf", TWO);
    let seed = seed.parent().expect("the seed directory");
    let server = bin_path("mechanism-server").display().to_string();
    let out =
        w.s.admission()
            .args(["--json", "conformance", "--timeout", "120s", "--seed"])
            .arg(seed)
            .args([
                "--",
                &server,
                "terraform_plan_apply",
                "--root",
                "{workspace}",
                "--store",
                "{store}",
            ])
            .output()
            .expect("admission runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["conformant"], true, "{report:#}");
    let destructive_ack = report["rows"].as_array().into_iter().flatten().any(|row| {
        row["check"] == "execute.force-ack"
            && row["outcome"] == "PASS"
            && row["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("destroy"))
    });
    assert!(
        destructive_ack,
        "the destroy example was not run: {report:#}"
    );
    let seed_files: Vec<_> = fs::read_dir(seed)
        .expect("read the seed")
        .map(|e| e.expect("a seed entry").file_name())
        .collect();
    assert_eq!(seed_files, ["main.tf"], "the seed itself was modified");
}

/// A third resource whose creation takes seconds, after the other two.
const SLOW: &str = r#"
resource "terraform_data" "slow" {
  depends_on = [terraform_data.a, terraform_data.b]
  provisioner "local-exec" {
    command = "sleep 5"
  }
}
"#;

#[test]
fn a_run_killed_during_terraform_apply_converges_when_run_again() {
    let w = world(&format!("{TWO}{SLOW}"));
    let name = workorder(&w, "create", "apply");

    // `admission run` in a process group of its own, which its mechanism and terraform join:
    // all of them are killed at once while terraform runs the slow provisioner.
    let mut child = Command::new(bin_path("admission"))
        .current_dir(w.s.root())
        .args([
            "--store",
            "store",
            "--workspace",
            "ws",
            "--json",
            "run",
            &name,
        ])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("admission starts");
    let group = child.id();
    let until = Instant::now() + Duration::from_secs(120);
    while !group_runs(group, "sleep") {
        assert!(
            child.try_wait().expect("poll admission").is_none(),
            "admission ended before terraform apply reached the slow resource"
        );
        assert!(
            Instant::now() < until,
            "terraform apply never reached the slow resource"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "kill -9 of the process group failed");
    let status = child.wait().expect("reap admission");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(
        !resources(&w).contains(&"terraform_data.slow".to_owned()),
        "the slow resource was created before the kill"
    );

    // The same workorder again: fully applied, then nothing left to do.
    let mut again = cli(&w, &["run", &name]);
    again.timeout(Duration::from_secs(180));
    let report = json_of(&exits(&mut again, 0));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(
        resources(&w),
        [
            "terraform_data.a",
            "terraform_data.b",
            "terraform_data.slow"
        ]
    );
    verified(&w, &string(&report["witness_hash"]));
    let noop = admission(&w, &["plan", &workorder(&w, "after", "apply")], 0);
    let plan = admission(&w, &["show", &string(&noop["plan_hash"])], 0);
    assert_eq!(plan["artifact"]["intended_effects"], json!([]), "{plan:#}");
}

/// Whether a process of the process group `group` runs a program named `name`.
fn group_runs(group: u32, name: &str) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let dir = entry.path();
        let Ok(stat) = fs::read_to_string(dir.join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`: comm may hold spaces, so split after its `)`.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let pgrp = rest.split_whitespace().nth(2);
        comm == name && pgrp == Some(group.to_string().as_str())
    })
}
