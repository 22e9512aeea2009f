//! Command-line surface of the `admission` binary (its behaviour is tested end to end in
//! the workspace's `tests` package).

use assert_cmd::Command;

#[test]
fn usage_errors_exit_with_code_2() {
    Command::cargo_bin("admission")
        .unwrap()
        .arg("no-such-command")
        .assert()
        .code(2);
    Command::cargo_bin("admission")
        .unwrap()
        .args(["digest"])
        .assert()
        .code(2);
}

#[test]
fn a_missing_file_is_bad_input_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("admission")
        .unwrap()
        .current_dir(dir.path())
        .args(["digest", "nope.json"])
        .assert()
        .code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("nope.json"));
}
