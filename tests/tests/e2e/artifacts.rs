//! Every artifact a whole demo leaves in the store (plans, witnesses, force-acks, results,
//! run records, workorders) validates against the schema of its kind, and every journal
//! snapshot against the execution schema. The result witness of a real run is read by the
//! in-toto project's own bindings, which refuse any field a Statement does not define.

use std::fs;
use std::path::{Path, PathBuf};

use protocol::artifact::kinds::{ResultWitness, IN_TOTO_STATEMENT_V1, RESULT_WITNESS_PREDICATE};
use protocol::artifact::{Artifact, Kind};
use protocol::schema::{self, SchemaName};
use protocol::store::Store;
use protocol::Digest;
use serde_json::{json, Value};
use tests::repo::{self, rev};
use tests::{in_toto, Scratch};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_artifact_of_a_demo_validates_against_its_schema() {
    let s = Scratch::new();
    let output = s
        .admission()
        .args(["--json", "demo", "--keep"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "admission demo failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(&stdout).expect("demo --json prints one object");
    let store = PathBuf::from(summary["store"].as_str().expect("store path"));
    let kept = PathBuf::from(summary["kept"].as_str().expect("kept directory"));

    // The Terraform chapter ran (it needs terraform on PATH): created, destroyed after a
    // force-ack, both chains verified, and the state holds no resource.
    let terraform = &summary["terraform"];
    assert_eq!(
        terraform["ran"], true,
        "the Terraform chapter needs terraform on PATH: {terraform:#}"
    );
    let outcomes: Vec<&Value> = (0..3).map(|i| &terraform["runs"][i]["outcome"]).collect();
    assert_eq!(
        outcomes,
        ["succeeded", "awaiting_force_ack", "succeeded"],
        "{terraform:#}"
    );
    let verified = terraform["verified"]
        .as_array()
        .expect("verified witnesses");
    assert_eq!(verified.len(), 2, "{terraform:#}");
    assert!(
        verified.iter().all(|v| v["verified"] == true),
        "{terraform:#}"
    );
    let module = PathBuf::from(terraform["module"].as_str().expect("module path"));
    let state: Value =
        serde_json::from_slice(&fs::read(module.join("terraform.tfstate")).unwrap()).unwrap();
    assert_eq!(state["resources"], json!([]), "{state:#}");

    // The ticket chapter: its event scheduled, the ticket DONE at a commit.
    let ticket = &summary["ticket"];
    assert_eq!(ticket["processed"]["outcome"], "SCHEDULED", "{ticket:#}");
    assert_eq!(ticket["processed"]["ticket_status"], "DONE", "{ticket:#}");
    assert_eq!(ticket["commit"], summary["head"], "{ticket:#}");

    let mut objects = Vec::new();
    files_under(&store.join("objects"), &mut objects);
    let mut kinds = std::collections::BTreeSet::new();
    for path in objects
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".prov.json"))
    {
        let bytes = fs::read(path).unwrap();
        // Blobs (the patches) are not JSON artifacts; everything else must be one.
        let Ok(artifact) = Artifact::from_bytes(&bytes) else {
            continue;
        };
        schema::validate_artifact(&artifact)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", path.display(), artifact.kind()));
        kinds.insert(artifact.kind().to_owned());
    }
    for kind in [
        "mechanism.workorder/v0",
        "mechanism.plan/v0",
        "mechanism.admission-witness/v0",
        "mechanism.force-ack/v0",
        "mechanism.result/v0",
        "mechanism.result-witness/v0",
        "mechanism.run-record/v0",
        "mechanism.output-bundle/v0",
        "mechanism.ticket/v0",
        "mechanism.event/v0",
        "mechanism.context-snapshot/v0",
        "mechanism.pause-state/v0",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind} in the store; found {kinds:?}"
        );
    }

    let mut snapshots = Vec::new();
    files_under(&store.join("exec"), &mut snapshots);
    let mut checked = 0;
    for path in snapshots.iter().filter(|p| {
        p.extension().is_some_and(|e| e == "json") && p.parent() != Some(&store.join("exec"))
    }) {
        let value: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        schema::validate(SchemaName::Execution, &value)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} journal snapshots");
    fs::remove_dir_all(kept).unwrap();
}

#[test]
fn the_witness_of_a_real_run_reads_with_the_in_toto_bindings() {
    let s = Scratch::new();
    let repo_dir = repo::init(&s.path("ws/repo"));
    let patch = repo::patch_from_edits(&repo_dir, |dir| {
        repo::write(dir, "NOTES.md", "witnessed\n");
    });
    s.write("notes.diff", patch);
    let workorder = json!({
        "kind": "mechanism.workorder/v0",
        "work_order_id": "in-toto",
        "mechanism": "git_apply_patch",
        "operation": "apply",
        "params": {
            "repo": "repo",
            "message": "add notes",
            "author": {"name": "Agent", "email": "agent@example.com"},
        },
        "inputs": {"patch": "notes.diff"},
        "budget": {"wall_ms": 60000},
    });
    s.write("notes.json", serde_json::to_vec(&workorder).unwrap());
    let output = s
        .admission()
        .args([
            "--json",
            "--store",
            "store",
            "--workspace",
            "ws",
            "run",
            "notes.json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "admission run failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("run --json prints one object");
    let witness_hash: Digest = report["witness_hash"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no witness_hash in {report:#}"));
    let witness = Store::open(s.path("store"))
        .unwrap()
        .get_artifact(&witness_hash)
        .unwrap();
    assert_eq!(witness.kind(), ResultWitness::KIND);

    let read = in_toto::read_statement(witness.value()).unwrap_or_else(|why| {
        panic!(
            "the in-toto bindings refuse the witness: {why}\n{:#}",
            witness.value()
        )
    });
    assert_eq!(read["_type"], IN_TOTO_STATEMENT_V1, "{read:#}");
    assert_eq!(read["predicateType"], RESULT_WITNESS_PREDICATE, "{read:#}");
    let head = rev(&repo_dir, "refs/heads/main");
    assert_eq!(
        read["subject"],
        json!([{"name": "repo@refs/heads/main", "digest": {"gitCommit": head}}]),
        "{read:#}"
    );
    assert_eq!(read["predicate"], witness.value()["predicate"]);

    // The bindings are strict: our kind beside the Statement's fields is refused.
    let mut with_kind = witness.value().clone();
    with_kind["kind"] = json!(ResultWitness::KIND);
    let why = in_toto::read_statement(&with_kind).expect_err("a Statement with a kind field");
    assert!(why.contains("\"kind\""), "{why}");
}
