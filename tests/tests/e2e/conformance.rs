//! `admission conformance` against real mechanisms: ours, the minimal Rust example and the
//! Python example pass every check; mechanisms broken in one way each (`tests/fixtures/broken_proxy.py` wraps ours and
//! breaks one thing) fail, for that reason.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tests::{bin_path, repo, Scratch};

/// Wraps a conforming mechanism and breaks it in one way (see the file's docstring).
const BROKEN_PROXY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/broken_proxy.py");

/// The Python mechanism shipped in `examples/`.
const FS_WRITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/fs_write/fs_write.py"
);

/// Checks every conforming run must report as passed, whatever the mechanism.
const CORE_CHECKS: &[&str] = &[
    "framing.lines",
    "framing.content-length",
    "describe.schema",
    "describe.versions",
    "jsonrpc.parse-error",
    "jsonrpc.invalid-request",
    "jsonrpc.method-not-found",
    "jsonrpc.invalid-params",
    "jsonrpc.notification",
    "jsonrpc.batch",
    "jsonrpc.deep-nesting",
    "jsonrpc.lone-surrogate",
    "jsonrpc.batch-cap",
    "jsonrpc.too-large",
    "execute.unknown-plan",
    "status.unknown-plan",
    "plan.schema",
    "plan.hash",
    "plan.matches-request",
    "plan.i-json",
    "plan.stored",
    "plan.repeatable",
    "plan.cross-process",
    "status.planned",
    "cost.declared",
    "execute.forged-plan",
    "execute.admission-required",
    "execute.force-ack",
    "execute.applies",
    "execute.idempotent",
    "execute.replay",
    "status.succeeded",
    "plan.after-execute",
    "execute.killed",
    "stdout.protocol-only",
    "process.exit",
];

/// What one harness run reported.
struct Run {
    exit: i32,
    report: Value,
    /// The rows by outcome, as `check [subject]` -> detail.
    rows: BTreeMap<String, BTreeMap<String, String>>,
}

impl Run {
    /// The failed rows, as `check [subject]`.
    fn failed(&self) -> Vec<&str> {
        self.rows
            .get("FAIL")
            .map(|rows| rows.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The detail of the failed row named `label`, or a panic showing the whole report.
    fn failure(&self, label: &str) -> &str {
        self.rows
            .get("FAIL")
            .and_then(|rows| rows.get(label))
            .unwrap_or_else(|| panic!("{label} did not fail: {:#}", self.report))
    }

    /// Every check id that ran with `outcome`.
    fn checks(&self, outcome: &str) -> Vec<String> {
        let mut checks: Vec<String> = self.report["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| row["outcome"] == outcome)
            .filter_map(|row| row["check"].as_str().map(str::to_owned))
            .collect();
        checks.dedup();
        checks
    }
}

/// Runs `admission --json conformance --seed SEED -- COMMAND...`.
fn conformance(s: &Scratch, seed: Option<&Path>, command: &[&str]) -> Run {
    let mut cmd = s.admission();
    cmd.args(["--json", "conformance", "--timeout", "20s"]);
    if let Some(seed) = seed {
        cmd.arg("--seed").arg(seed);
    }
    cmd.arg("--").args(command);
    let output = cmd.output().expect("admission runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?}: stdout is not one JSON report ({e})\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in report["rows"].as_array().expect("rows") {
        let label = match row["subject"].as_str() {
            Some(subject) => format!("{} [{subject}]", row["check"].as_str().unwrap()),
            None => row["check"].as_str().unwrap().to_owned(),
        };
        rows.entry(row["outcome"].as_str().unwrap().to_owned())
            .or_default()
            .insert(label, row["detail"].as_str().unwrap_or_default().to_owned());
    }
    Run {
        exit: output.status.code().unwrap_or(-1),
        report,
        rows,
    }
}

fn mechanism_server() -> String {
    bin_path("mechanism-server").display().to_string()
}

/// Our git mechanism, started through `wrapper` (e.g. the broken proxy) when given.
fn git_command(wrapper: &[&str]) -> Vec<String> {
    let mut command: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    command.extend(
        [
            &mechanism_server(),
            "git_apply_patch",
            "--root",
            "{workspace}",
            "--store",
            "{store}",
        ]
        .map(str::to_owned),
    );
    command
}

/// Runs the harness on our git mechanism (optionally wrapped) in a copy of a fixture repo.
fn check_git(wrapper: &[&str]) -> Run {
    let s = Scratch::new();
    let seed = repo::init(&s.path("seed"));
    let command = git_command(wrapper);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let run = conformance(&s, Some(&seed), &command);
    assert_eq!(
        repo::git(&seed, &["status", "--porcelain"]),
        "",
        "the seed itself was modified"
    );
    run
}

fn assert_conformant(run: &Run) {
    assert_eq!(run.exit, 0, "{:#}", run.report);
    assert_eq!(run.report["conformant"], true, "{:#}", run.report);
    assert!(run.failed().is_empty(), "{:#}", run.report);
    let passed = run.checks("PASS");
    for check in CORE_CHECKS {
        assert!(
            passed.iter().any(|p| p == check),
            "{check} did not pass: {:#}",
            run.report
        );
    }
}

fn assert_fails_only(run: &Run, expected: &[&str]) {
    assert_eq!(run.exit, 5, "{:#}", run.report);
    assert_eq!(run.report["conformant"], false, "{:#}", run.report);
    assert_eq!(run.failed(), expected, "{:#}", run.report);
}

#[test]
fn our_git_mechanism_passes_every_check() {
    let run = check_git(&[]);
    assert_conformant(&run);
    // Both examples ran, and the second (a deletion) exercised force-acks.
    assert!(run.rows["PASS"].contains_key("execute.force-ack [apply#2]"));
    assert!(run.rows["PASS"].contains_key("execute.idempotent [apply#1]"));
    // Killed executes are finished, of a plan that needs no force-ack and of one that does.
    for subject in ["apply#1", "apply#2"] {
        let detail = &run.rows["PASS"][&format!("execute.killed [{subject}]")];
        assert!(detail.starts_with("seed "), "{detail}");
    }
}

#[test]
fn the_python_example_mechanism_passes_every_check() {
    let s = Scratch::new();
    let run = conformance(
        &s,
        None,
        &[
            "python3",
            FS_WRITE,
            "--root",
            "{workspace}",
            "--store",
            "{store}",
        ],
    );
    assert_conformant(&run);
    assert_eq!(run.report["rows"][1]["outcome"], "PASS");
    let detail = run.rows["PASS"]["describe.schema"].as_str();
    assert!(detail.starts_with("fs_write "), "{detail}");
    // Each operation's first example, and the first destructive write.
    for subject in ["write#1", "write#2", "delete#1"] {
        assert!(
            run.rows["PASS"].contains_key(&format!("execute.killed [{subject}]")),
            "{:#}",
            run.report
        );
    }
}

/// The minimal Rust mechanism in `examples/minimal`, in an empty workspace: its second
/// example overwrites the first's file, so force-acks and a destructive kill are checked too.
#[test]
fn the_minimal_rust_example_mechanism_passes_every_check() {
    let s = Scratch::new();
    let empty = s.path("empty");
    std::fs::create_dir(&empty).expect("an empty seed");
    let minimal = bin_path("minimal-mechanism").display().to_string();
    let run = conformance(
        &s,
        Some(&empty),
        &[&minimal, "--root", "{workspace}", "--store", "{store}"],
    );
    assert_conformant(&run);
    assert!(run.rows["PASS"].contains_key("execute.force-ack [write#2]"));
    for subject in ["write#1", "write#2"] {
        assert!(
            run.rows["PASS"].contains_key(&format!("execute.killed [{subject}]")),
            "{:#}",
            run.report
        );
    }
    let skipped = run.checks("SKIP");
    assert!(skipped.is_empty(), "skipped {skipped:?}: {:#}", run.report);
}

/// Our git mechanism behind the broken proxy in one `mode`: exactly the checks `fails` fail,
/// each `(check, needle)` in `details` failing with a detail that says `needle`.
struct Broken {
    mode: &'static str,
    fails: &'static [&'static str],
    /// Checks that fail or pass by timing alone (where a kill lands), beside `fails`.
    may_fail: &'static [&'static str],
    details: &'static [(&'static str, &'static str)],
}

const BROKEN: &[Broken] = &[
    // A log line on stdout fails stdout hygiene and nothing else.
    Broken {
        mode: "stdout-log",
        fails: &["stdout.protocol-only"],
        may_fail: &[],
        details: &[("stdout.protocol-only", "INFO mechanism starting up")],
    },
    // ... caught too as the mechanism exits.
    Broken {
        mode: "stdout-at-exit",
        fails: &["stdout.protocol-only"],
        may_fail: &[],
        details: &[("stdout.protocol-only", "INFO mechanism shutting down")],
    },
    // A notification the protocol does not define fails stdout hygiene.
    Broken {
        mode: "log-notification",
        fails: &["stdout.protocol-only"],
        may_fail: &[],
        details: &[
            (
                "stdout.protocol-only",
                "a notification the protocol does not define",
            ),
            ("stdout.protocol-only", "window/logMessage"),
        ],
    },
    // Execute accepting an unknown hash fails. A fresh process of it has issued nothing, so
    // it fakes the execute of a real plan too: the kill check's uninterrupted execute gets no
    // valid result.
    Broken {
        mode: "accepts-unknown-hash",
        fails: &[
            "execute.forged-plan [apply#1]",
            "execute.forged-plan [apply#2]",
            "execute.killed [apply#1]",
            "execute.killed [apply#2]",
            "execute.unknown-plan",
        ],
        may_fail: &[],
        details: &[
            (
                "execute.killed [apply#1]",
                "an uninterrupted execute in a fresh process",
            ),
            (
                "execute.unknown-plan",
                "succeeded where UNKNOWN_PLAN was required",
            ),
            (
                "execute.forged-plan [apply#1]",
                "succeeded where STALE_PLAN was required",
            ),
        ],
    },
    // A spent force-ack that works again fails the replay check.
    Broken {
        mode: "forgets-nonces",
        fails: &["execute.replay [apply#2]"],
        may_fail: &[],
        details: &[(
            "execute.replay [apply#2]",
            "succeeded where FORCE_ACK_REPLAYED was required",
        )],
    },
    // An execute killed in flight that the next one cannot finish fails the kill check; the
    // seed is printed, to replay the instants with.
    Broken {
        mode: "stale-after-kill",
        fails: &["execute.killed [apply#1]"],
        // Its kills fall at instants of an execute timed earlier: on a loaded machine all of
        // them can land after that execute answered, and nothing is left to find stale.
        may_fail: &["execute.killed [apply#2]"],
        details: &[
            (
                "execute.killed [apply#1]",
                "the next execute of the plan, in a fresh process: failed: STALE_PLAN",
            ),
            ("execute.killed [apply#1]", "--kill-seed "),
        ],
    },
    // A wrong error code fails the check that saw it.
    Broken {
        mode: "wrong-error-code",
        fails: &["jsonrpc.method-not-found"],
        may_fail: &[],
        details: &[(
            "jsonrpc.method-not-found",
            "expected METHOD_NOT_FOUND (-32601), got INVALID_REQUEST (-32600)",
        )],
    },
    // Deep nesting or a lone surrogate answered other than as a parse error fails.
    Broken {
        mode: "old-json-errors",
        fails: &["jsonrpc.deep-nesting", "jsonrpc.lone-surrogate"],
        may_fail: &[],
        details: &[
            (
                "jsonrpc.deep-nesting",
                "expected PARSE_ERROR (-32700), got MESSAGE_TOO_LARGE (-32001)",
            ),
            (
                "jsonrpc.lone-surrogate",
                "expected PARSE_ERROR (-32700), got INVALID_REQUEST (-32600)",
            ),
        ],
    },
    // A batch over the declared cap that is served fails.
    Broken {
        mode: "small-batch-cap",
        fails: &["jsonrpc.batch-cap"],
        may_fail: &[],
        details: &[(
            "jsonrpc.batch-cap",
            "a batch of 9 entries, over the declared cap of 8, was served",
        )],
    },
];

#[test]
fn each_way_of_breaking_the_protocol_fails_exactly_the_checks_that_see_it() {
    for case in BROKEN {
        let run = check_git(&["python3", BROKEN_PROXY, case.mode]);
        assert_eq!(run.exit, 5, "{}: {:#}", case.mode, run.report);
        assert_eq!(
            run.report["conformant"], false,
            "{}: {:#}",
            case.mode, run.report
        );
        let failed = run.failed();
        let unexpected: Vec<_> = failed
            .iter()
            .filter(|check| !case.fails.contains(check) && !case.may_fail.contains(check))
            .collect();
        let missing: Vec<_> = case
            .fails
            .iter()
            .filter(|check| !failed.contains(check))
            .collect();
        assert!(
            unexpected.is_empty() && missing.is_empty(),
            "{}: failed {failed:?}, expected {:?} (and maybe {:?}): {:#}",
            case.mode,
            case.fails,
            case.may_fail,
            run.report
        );
        for (check, needle) in case.details {
            let detail = run.failure(check);
            assert!(
                detail.contains(needle),
                "{}: {check}: {needle:?} not in {detail}",
                case.mode
            );
        }
    }
}

#[test]
fn a_plan_that_differs_between_runs_fails_repeatability() {
    let run = check_git(&["python3", BROKEN_PROXY, "unstable-plan"]);
    assert_eq!(run.exit, 5, "{:#}", run.report);
    let detail = run.failure("plan.repeatable [apply#1]");
    assert!(detail.contains("where the first plan was"), "{detail}");
    // The hash still matches the (changed) artifact: the failure is the instability.
    assert!(run.rows["PASS"].contains_key("plan.hash [apply#1]"));
    assert!(run.rows["PASS"].contains_key("framing.lines"));
}

#[test]
fn a_program_that_cannot_start_is_a_failed_check_not_a_crash() {
    let s = Scratch::new();
    let run = conformance(&s, None, &["./no-such-mechanism", "--root", "{workspace}"]);
    assert_fails_only(&run, &["process.spawn [main]"]);
    assert!(run
        .failure("process.spawn [main]")
        .contains("could not start"));
}

#[test]
fn force_acks_left_unchecked_are_a_failure_when_an_operation_may_destroy() {
    // A seed where `hello.txt` already exists with other content: neither example applies
    // (the first adds it, the second deletes the first's content), so no destructive plan is
    // ever issued, and the harness says what it could not check instead of passing it.
    let s = Scratch::new();
    let seed = repo::init(&s.path("seed"));
    repo::write(&seed, "hello.txt", "something else\n");
    repo::git(&seed, &["add", "hello.txt"]);
    repo::git(&seed, &["commit", "-q", "-m", "hello exists"]);
    let command = git_command(&[]);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let run = conformance(&s, Some(&seed), &command);
    assert_eq!(run.exit, 5, "{:#}", run.report);
    let detail = run.failure("execute.force-ack");
    assert!(
        detail.contains("no example planned a destructive plan"),
        "{detail}"
    );
    assert!(run
        .failure("plan.schema [apply#1]")
        .contains("does not apply"));
}

#[test]
fn the_text_report_has_one_row_per_check_and_a_summary() {
    let s = Scratch::new();
    let seed = repo::init(&s.path("seed"));
    let command = git_command(&[]);
    let output = s
        .admission()
        .args(["conformance", "--seed"])
        .arg(&seed)
        .arg("--")
        .args(&command)
        .output()
        .expect("admission runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("PASS  framing.lines ")),
        "{text}"
    );
    assert!(text.trim_end().ends_with("0 failed, 0 skipped"), "{text}");
}
