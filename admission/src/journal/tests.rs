use std::fs;

use protocol::artifact::Artifact;
use protocol::schema;
use serde_json::json;

use super::*;

fn journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path().join("store")).unwrap();
    (dir, journal)
}

fn snapshot_names(journal: &Journal, uid: &Uid) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(journal.dir().join(uid.as_str()))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn statuses(journal: &Journal, uid: &Uid) -> Vec<ExecStatus> {
    journal
        .log()
        .unwrap()
        .into_iter()
        .filter(|e| &e.uid == uid)
        .map(|e| e.status)
        .collect()
}

#[test]
fn full_lifecycle_writes_numbered_whole_snapshots_and_log_lines_in_order() {
    let (_tmp, journal) = journal();
    let mut run = journal
        .start(
            "run",
            json!({"registry": "embedded"}),
            json!({"workorder": "wo.json"}),
            None,
        )
        .unwrap();
    let uid = run.uid().clone();
    assert_eq!(run.status(), ExecStatus::Created);
    run.step("plan", json!({"plan_hash": "sha256:00"})).unwrap();
    assert_eq!(run.status(), ExecStatus::Running);
    run.step("gates", json!({"decision": "ADMIT"})).unwrap();
    run.complete(json!({"result_hash": "sha256:11"})).unwrap();

    assert_eq!(
        snapshot_names(&journal, &uid),
        [
            "000-created.json",
            "001-plan.json",
            "002-gates.json",
            "003-completed.json"
        ]
    );
    let history = journal.history(&uid).unwrap();
    let labels: Vec<&str> = history.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["created", "plan", "gates", "completed"]);
    // Whole snapshots: each holds everything so far, and each validates on its own.
    let step_counts: Vec<usize> = history.iter().map(|(_, d)| d.steps.len()).collect();
    assert_eq!(step_counts, [0, 1, 2, 2]);
    for (label, doc) in &history {
        assert_eq!(doc.uid, uid.as_str());
        assert_eq!(doc.protocol, PROTOCOL_VERSION);
        assert_eq!(doc.config, json!({"registry": "embedded"}), "{label}");
        assert_eq!(doc.input, json!({"workorder": "wo.json"}), "{label}");
        assert_eq!(doc.context["command"], "run");
        assert!(doc.started_at.is_some() && doc.updated_at.is_some());
        schema::validate_artifact(&Artifact::from_typed(doc).unwrap()).unwrap();
    }
    let last = journal.load(&uid).unwrap();
    assert_eq!(&last, history.last().map(|(_, d)| d).unwrap());
    assert_eq!(&last, run.document());
    assert_eq!(last.status, ExecStatus::Completed);
    assert_eq!(last.result, Some(json!({"result_hash": "sha256:11"})));
    assert_eq!(last.steps[1].label, "gates");
    assert_eq!(last.steps[1].detail, json!({"decision": "ADMIT"}));

    // One line per status change, not per step.
    assert_eq!(
        statuses(&journal, &uid),
        [
            ExecStatus::Created,
            ExecStatus::Running,
            ExecStatus::Completed
        ]
    );
    let log = journal.log().unwrap();
    assert!(log.iter().all(|e| e.command == "run" && e.parent.is_none()));
    assert!(log.iter().all(|e| e.time.ends_with('Z')), "{log:?}");
}

#[test]
fn illegal_transitions_are_refused_and_write_nothing() {
    let (_tmp, journal) = journal();

    let mut fresh = journal.start("log", json!({}), json!(null), None).unwrap();
    for refused in [
        fresh.complete(json!({})).unwrap_err(),
        fresh.pause(json!({})).unwrap_err(),
    ] {
        assert!(
            matches!(
                refused,
                JournalError::IllegalTransition {
                    from: ExecStatus::Created,
                    ..
                }
            ),
            "{refused}"
        );
    }
    fresh.step("read", json!({})).unwrap();
    fresh.complete(json!({})).unwrap();
    let uid = fresh.uid().clone();
    let before = snapshot_names(&journal, &uid);
    for refused in [
        fresh.step("again", json!({})).unwrap_err(),
        fresh.complete(json!({})).unwrap_err(),
        fresh.fail(json!({})).unwrap_err(),
        fresh.pause(json!({})).unwrap_err(),
    ] {
        assert!(
            matches!(
                refused,
                JournalError::IllegalTransition {
                    from: ExecStatus::Completed,
                    ..
                }
            ),
            "{refused}"
        );
    }
    let message = fresh.step("again", json!({})).unwrap_err().to_string();
    assert!(message.contains("from completed to running"), "{message}");
    assert_eq!(snapshot_names(&journal, &uid), before);
    assert_eq!(statuses(&journal, &uid).len(), 3);

    // Paused is final too: a resume is a child execution, not a transition.
    let mut paused = journal.start("run", json!({}), json!(null), None).unwrap();
    paused.step("plan", json!({})).unwrap();
    paused.pause(json!({"waiting_for": "force-ack"})).unwrap();
    let refused = paused.step("execute", json!({})).unwrap_err();
    assert!(
        matches!(
            refused,
            JournalError::IllegalTransition {
                from: ExecStatus::Paused,
                to: ExecStatus::Running,
                ..
            }
        ),
        "{refused}"
    );

    // Failing before running (bad input) is allowed.
    let mut bad_input = journal.start("run", json!({}), json!(null), None).unwrap();
    bad_input
        .fail(json!({"error": "unreadable workorder"}))
        .unwrap();
    assert_eq!(
        statuses(&journal, bad_input.uid()),
        [ExecStatus::Created, ExecStatus::Failed]
    );
}

#[test]
fn a_handle_dropped_before_its_end_records_a_failure() {
    let (_tmp, journal) = journal();
    let mut run = journal.start("run", json!({}), json!(null), None).unwrap();
    let uid = run.uid().clone();
    run.step("plan", json!({})).unwrap();
    drop(run);
    let doc = journal.load(&uid).unwrap();
    assert_eq!(doc.status, ExecStatus::Failed);
    assert_eq!(doc.result.unwrap()["error"]["code"], "INTERNAL_ERROR");
    assert_eq!(
        statuses(&journal, &uid),
        [ExecStatus::Created, ExecStatus::Running, ExecStatus::Failed]
    );
    assert_eq!(
        snapshot_names(&journal, &uid).last().unwrap(),
        "002-failed.json"
    );
}

#[test]
fn bad_labels_and_documents_are_refused_before_anything_is_written() {
    let (_tmp, journal) = journal();
    let mut run = journal.start("run", json!({}), json!(null), None).unwrap();
    for label in ["../x", "a/b", "", ".tmp"] {
        let err = run.step(label, json!({})).unwrap_err();
        assert!(matches!(err, JournalError::BadLabel(_)), "{label:?}: {err}");
    }
    assert_eq!(run.status(), ExecStatus::Created);
    assert_eq!(snapshot_names(&journal, run.uid()), ["000-created.json"]);
    run.fail(json!({})).unwrap();

    // `config` must be an object, and everything must be I-JSON.
    let entries_before = fs::read_dir(journal.dir()).unwrap().count();
    let err = journal
        .start("run", json!([1]), json!(null), None)
        .unwrap_err();
    assert!(matches!(err, JournalError::Invalid { .. }), "{err}");
    let err = journal
        .start("run", json!({}), json!(u64::MAX), None)
        .unwrap_err();
    assert!(matches!(err, JournalError::NotIJson { .. }), "{err}");
    assert_eq!(fs::read_dir(journal.dir()).unwrap().count(), entries_before);
}

#[test]
fn unknown_uids_and_parents_are_clear_errors() {
    let (_tmp, journal) = journal();
    let stranger: Uid = "1b4e28ba-2fa1-4d2e-883f-0016d3cca427".parse().unwrap();
    for err in [
        journal.load(&stranger).unwrap_err(),
        journal.history(&stranger).unwrap_err(),
        journal.children(&stranger).unwrap_err(),
        journal
            .start("execute", json!({}), json!(null), Some(stranger.clone()))
            .unwrap_err(),
    ] {
        assert!(matches!(err, JournalError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains(stranger.as_str()), "{err}");
    }

    // A directory without a snapshot (a crash as it started) is told apart from a stranger.
    fs::create_dir(journal.dir().join(stranger.as_str())).unwrap();
    let err = journal.load(&stranger).unwrap_err();
    assert!(matches!(err, JournalError::NoSnapshot(_)), "{err}");
}

#[test]
fn a_snapshot_filed_under_another_uid_is_corrupt() {
    let (_tmp, journal) = journal();
    let mut run = journal.start("run", json!({}), json!(null), None).unwrap();
    run.fail(json!({})).unwrap();
    let other: Uid = "1b4e28ba-2fa1-4d2e-883f-0016d3cca427".parse().unwrap();
    let other_dir = journal.dir().join(other.as_str());
    fs::create_dir(&other_dir).unwrap();
    fs::copy(
        journal
            .dir()
            .join(run.uid().as_str())
            .join("001-failed.json"),
        other_dir.join("000-created.json"),
    )
    .unwrap();
    let err = journal.load(&other).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}

#[test]
fn context_says_what_ran_where() {
    let (_tmp, journal) = journal();
    let mut run = journal
        .start("describe", json!({}), json!(null), None)
        .unwrap();
    let context = run.document().context.clone();
    run.fail(json!({})).unwrap();
    assert_eq!(context["command"], "describe");
    assert!(context["argv"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(context["cwd"].is_string());
    assert!(context["store"].as_str().unwrap().ends_with("store"));
    assert_eq!(context["pid"], std::process::id());
}
