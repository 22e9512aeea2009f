//! Every artifact a whole demo leaves in the store (plans, witnesses, force-acks, results,
//! run records, workorders) validates against the schema of its kind, and every journal
//! snapshot against the execution schema.

use std::fs;
use std::path::{Path, PathBuf};

use protocol::artifact::Artifact;
use protocol::schema::{self, SchemaName};
use serde_json::Value;
use tests::Scratch;

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
