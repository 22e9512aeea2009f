//! The minimal mechanism, served in process by `mechanism_server::testing::Harness`: it
//! writes what it planned, its overwrite is destructive and needs a force-ack, and it
//! refuses a path that is not a regular file.

use mechanism_server::protocol::{Digest, ErrorCode};
use mechanism_server::testing::Harness;
use minimal_mechanism::Minimal;
use serde_json::{json, Value};

fn plan_write(harness: &mut Harness, name: &str, text: &str) -> (Digest, Value) {
    let planned = harness
        .call(
            "plan",
            json!({"operation": "write", "params": {"name": name, "text": text}}),
        )
        .unwrap();
    let hash = planned["plan_hash"].as_str().unwrap().parse().unwrap();
    (hash, planned["plan"].clone())
}

#[test]
fn it_writes_what_it_planned_and_an_overwrite_needs_a_force_ack() {
    let mut harness = Harness::start(Minimal).unwrap();
    let file = harness.root().join("hello.txt");

    let (hash, plan) = plan_write(&mut harness, "hello.txt", "Hello\n");
    assert_eq!(plan["destructive"], false, "{plan}");
    assert_eq!(plan["state"], json!({"name": "hello.txt", "before": null}));
    assert_eq!(
        plan["touches"],
        json!([{"resource": "hello.txt", "access": "write"}])
    );
    let admission = harness.admit(&hash).unwrap();
    let executed = harness
        .call(
            "execute",
            json!({"plan_hash": hash, "admission": admission}),
        )
        .unwrap();
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "Hello\n");
    let leftovers: Vec<_> = std::fs::read_dir(harness.root()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only hello.txt: {leftovers:?}");

    let (hash, plan) = plan_write(&mut harness, "hello.txt", "Goodbye\n");
    assert_eq!(plan["destructive"], true, "{plan}");
    assert_eq!(plan["destructive_reasons"], json!(["overwrites hello.txt"]));
    let admission = harness.admit(&hash).unwrap();
    let refused = harness
        .call(
            "execute",
            json!({"plan_hash": hash, "admission": admission}),
        )
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::ForceAckRequired),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "Hello\n");
    harness.finish().unwrap();
}

#[test]
fn a_name_that_is_not_a_regular_file_is_refused() {
    let mut harness = Harness::start(Minimal).unwrap();
    // Pointing outside the root: writing through it would escape the root.
    let outside = harness.store().join("outside.txt");
    std::os::unix::fs::symlink(&outside, harness.root().join("link.txt")).unwrap();
    let refused = harness
        .call(
            "plan",
            json!({"operation": "write", "params": {"name": "link.txt", "text": "x"}}),
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::PathRefused), "{refused}");
    let refused = harness
        .call(
            "plan",
            json!({"operation": "write", "params": {"name": "../up.txt", "text": "x"}}),
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidParams), "{refused}");
    assert!(!outside.exists());
    harness.finish().unwrap();
}
