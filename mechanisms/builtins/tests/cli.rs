//! The `mechanism-server` executable's command line. As an integration test of this package it
//! also makes `cargo test --workspace` build the executable, which the end-to-end tests of the
//! `tests` package run (cargo builds a package's binaries only for its own integration tests).

use std::process::Command;

#[test]
fn an_unknown_mechanism_exits_2_naming_the_built_in_ones() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_mechanism-server"))
        .current_dir(dir.path())
        .args(["rm_rf", "--root", ".", "--store", "store"])
        .output()
        .expect("mechanism-server runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown mechanism \"rm_rf\"; built in: git_apply_patch"),
        "{stderr}"
    );
}
