//! The journal through its public API: concurrent appenders (threads and processes), torn
//! log lines, child executions and hostile uids. Test names start with `journal_` so that
//! `cargo test -p admission journal` selects them along with the unit tests.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use admission::journal::{ExecStatus, Journal, JournalError, Uid, LOG_FILE};
use serde_json::{json, Value};

/// Set in a re-executed copy of this test binary to make it an appender process.
const ROLE_VAR: &str = "ADMISSION_JOURNAL_TEST_ROLE";
/// The store an appender process writes to.
const STORE_VAR: &str = "ADMISSION_JOURNAL_TEST_STORE";

const PROCESSES: usize = 4;
const THREADS: usize = 4;
const RUNS_PER_THREAD: usize = 5;
/// created, running, completed.
const LINES_PER_RUN: usize = 3;

/// Each of `THREADS` threads runs `RUNS_PER_THREAD` whole executions against `store`.
fn append_from_threads(store: &Path) {
    let journal = Journal::open(store).unwrap();
    thread::scope(|scope| {
        for thread in 0..THREADS {
            let journal = journal.clone();
            scope.spawn(move || {
                for run in 0..RUNS_PER_THREAD {
                    let input = json!({"pid": std::process::id(), "thread": thread, "run": run});
                    let mut exec = journal.start("run", json!({}), input, None).unwrap();
                    exec.step("plan", json!({})).unwrap();
                    exec.complete(json!({"ok": true})).unwrap();
                }
            });
        }
    });
}

#[test]
fn journal_concurrent_appends_from_threads_and_processes_lose_no_line() {
    if std::env::var_os(ROLE_VAR).is_some_and(|role| role == "appender") {
        let store = std::env::var_os(STORE_VAR).unwrap();
        append_from_threads(Path::new(&store));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    // The test's path in the `integration` test executable.
                    "journal::journal_concurrent_appends_from_threads_and_processes_lose_no_line",
                    "--test-threads=1",
                ])
                .env(ROLE_VAR, "appender")
                .env(STORE_VAR, &store)
                // Captured: the children's own "test result" lines would be miscounted as ours.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // This process appends too, at the same time as its children.
    append_from_threads(&store);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "appender process failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let runs = (PROCESSES + 1) * THREADS * RUNS_PER_THREAD;
    let raw = fs::read_to_string(store.join("exec").join(LOG_FILE)).unwrap();
    assert!(raw.ends_with('\n'));
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines.len(), runs * LINES_PER_RUN);
    let mut by_uid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        by_uid
            .entry(entry["uid"].as_str().unwrap().to_owned())
            .or_default()
            .push(entry["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(by_uid.len(), runs);
    for (uid, statuses) in &by_uid {
        assert_eq!(statuses, &["created", "running", "completed"], "{uid}");
    }

    let journal = Journal::open(&store).unwrap();
    assert_eq!(journal.log().unwrap().len(), lines.len());
    let processes: std::collections::BTreeSet<u64> = by_uid
        .keys()
        .map(|uid| {
            let doc = journal.load(&uid.parse().unwrap()).unwrap();
            assert_eq!(doc.status, ExecStatus::Completed);
            doc.input["pid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(processes.len(), PROCESSES + 1);
}

#[test]
fn journal_a_torn_last_line_is_skipped_and_the_next_append_stands_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path()).unwrap();
    let mut first = journal.start("run", json!({}), json!(null), None).unwrap();
    first.step("plan", json!({})).unwrap();
    first.complete(json!({})).unwrap();
    let log_path = journal.dir().join(LOG_FILE);

    // A crash in the middle of an append leaves half a line and no newline.
    let whole = fs::read_to_string(&log_path).unwrap();
    let last = whole.lines().last().unwrap();
    let torn = &last[..last.len() / 2];
    OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(torn.as_bytes())
        .unwrap();
    let entries = journal.log().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| &e.uid == first.uid()));

    let mut second = journal.start("log", json!({}), json!(null), None).unwrap();
    second.fail(json!({"error": "after the crash"})).unwrap();

    let raw = fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[3], torn, "the torn fragment keeps a line of its own");
    for line in lines[4..].iter() {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["uid"], second.uid().as_str());
    }
    let statuses: Vec<ExecStatus> = journal.log().unwrap().iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            ExecStatus::Created,
            ExecStatus::Running,
            ExecStatus::Completed,
            ExecStatus::Created,
            ExecStatus::Failed,
        ]
    );
}

#[test]
fn journal_a_run_resumed_after_a_pause_is_a_child_of_the_paused_run() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path()).unwrap();
    let mut run = journal
        .start("run", json!({}), json!({"workorder": "wo.json"}), None)
        .unwrap();
    run.step(
        "gates",
        json!({"decision": "ADMIT", "force_ack_required": true}),
    )
    .unwrap();
    run.pause(json!({"waiting_for": "force-ack"})).unwrap();
    let paused = run.uid().clone();
    assert_eq!(journal.load(&paused).unwrap().status, ExecStatus::Paused);
    assert!(journal.children(&paused).unwrap().is_empty());

    let mut resume = journal
        .start(
            "execute",
            json!({}),
            json!({"force_ack": "ack.json"}),
            Some(paused.clone()),
        )
        .unwrap();
    resume.step("execute", json!({})).unwrap();
    resume
        .complete(json!({"result_hash": "sha256:00"}))
        .unwrap();
    let child = resume.uid().clone();

    assert_eq!(
        journal.children(&paused).unwrap(),
        std::slice::from_ref(&child)
    );
    assert!(journal.children(&child).unwrap().is_empty());
    assert_eq!(
        journal.load(&child).unwrap().parent.as_deref(),
        Some(paused.as_str())
    );
    for entry in journal.log().unwrap() {
        let expected = (entry.uid == child).then_some(&paused);
        assert_eq!(entry.parent.as_ref(), expected, "{entry:?}");
    }
    // The paused run itself is untouched by its resumption.
    assert_eq!(journal.load(&paused).unwrap().status, ExecStatus::Paused);
}

#[test]
fn journal_hostile_uids_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path().join("store")).unwrap();
    for hostile in ["../x", "..", "/etc", "x/../../y", "exec", "log.jsonl"] {
        let err = hostile.parse::<Uid>().unwrap_err();
        assert!(matches!(err, JournalError::BadUid(_)), "{hostile:?}");
        assert!(err.to_string().contains("not an execution uid"), "{err}");
    }

    // A log line naming a hostile uid is not an entry: readers skip it.
    let mut run = journal.start("run", json!({}), json!(null), None).unwrap();
    run.fail(json!({})).unwrap();
    let hostile_line = json!({
        "uid": "../x", "status": "created", "time": "2026-01-01T00:00:00Z", "command": "run"
    });
    let log_path = journal.dir().join(LOG_FILE);
    OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(format!("{hostile_line}\n").as_bytes())
        .unwrap();
    let entries = journal.log().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| &e.uid == run.uid()));
    assert!(!tmp.path().join("x").exists());
}
