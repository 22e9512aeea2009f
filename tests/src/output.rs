//! Reading what a command printed, with failures that show it.

use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// Runs `cmd`, asserting its exit code; assert_cmd prints the command, stdout and stderr when
/// the code differs.
pub fn exits(cmd: &mut Command, code: i32) -> Output {
    cmd.assert().code(code).get_output().clone()
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout as one JSON object; on failure, says what was printed instead.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e})\n--- stdout\n{}\n--- stderr\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

/// A JSON string's text; panics naming the value when it is not a string.
pub fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}
