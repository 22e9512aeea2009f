//! `show` and `log`: runs and artifacts rebuilt from the journal and the store alone.

use std::fmt::Write as _;

use protocol::artifact::kinds::{
    AdmissionWitness, ExecutionDocument, Plan, ResultArtifact, RunRecord,
};
use protocol::artifact::Artifact;
use protocol::store::{Store, StoreError};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use crate::cli::{Cli, Output, Rendered};
use crate::exit::CommandError;
use crate::journal::{Journal, JournalError, Uid};
use crate::pipeline::{self, AdmissionRecord};

/// `admission log`: one aligned line per run, oldest first: when it started, its uid,
/// command, status, outcome and workorder. `--json` lists every journal entry as well.
pub fn log(cli: &Cli, out: Output) -> Result<u8, CommandError> {
    let journal = open_journal(cli)?;
    let entries = journal.log().map_err(journal_error)?;
    // One row per run, where it first appears, with the status it entered last.
    let mut runs: Vec<LogRow> = Vec::new();
    for e in &entries {
        let status = serde_json::to_value(e.status).unwrap_or(Value::Null);
        let status = status.as_str().unwrap_or("?").to_owned();
        match runs.iter_mut().find(|r| r.uid == e.uid) {
            Some(row) => row.status = status,
            None => runs.push(LogRow {
                time: millis(&e.time),
                uid: e.uid.clone(),
                command: e.command.clone(),
                status,
                outcome: "-".to_owned(),
                workorder: "-".to_owned(),
                parent: e.parent.as_ref().map(ToString::to_string),
            }),
        }
    }
    let store = cli
        .store
        .is_dir()
        .then(|| Store::open(&cli.store).ok())
        .flatten();
    for row in &mut runs {
        if let Ok(doc) = journal.load(&row.uid) {
            fill_from(row, &doc, store.as_ref());
        }
    }
    let width = |f: fn(&LogRow) -> usize| runs.iter().map(f).max().unwrap_or(0);
    let (command_w, status_w, outcome_w) = (
        width(|r| r.command.len()),
        width(|r| r.status.len()),
        width(|r| r.outcome.len()),
    );
    let mut text = String::new();
    for r in &runs {
        let _ = writeln!(
            text,
            "{}  {}  {:<command_w$}  {:<status_w$}  {:<outcome_w$}  {}{}",
            r.time,
            r.uid,
            r.command,
            r.status,
            r.outcome,
            r.workorder,
            r.parent
                .as_ref()
                .map(|p| format!(" (resumes {p})"))
                .unwrap_or_default()
        );
    }
    if runs.is_empty() {
        text.push_str("the journal is empty");
    }
    let rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({"uid": r.uid.to_string(), "time": r.time, "command": r.command, "status": r.status,
                   "outcome": r.outcome, "workorder": r.workorder, "parent": r.parent})
        })
        .collect();
    out.result(text.trim_end(), json!({ "entries": entries, "runs": rows }));
    Ok(0)
}

/// One run as `admission log` prints it.
struct LogRow {
    time: String,
    uid: Uid,
    command: String,
    status: String,
    outcome: String,
    workorder: String,
    parent: Option<String>,
}

/// The run's outcome, and its workorder: the id its run record names, else the file it read.
fn fill_from(row: &mut LogRow, doc: &ExecutionDocument, store: Option<&Store>) {
    let result = doc.result.as_ref();
    if let Some(outcome) = result
        .and_then(|r| r.get("outcome"))
        .and_then(Value::as_str)
    {
        row.outcome = outcome.to_owned();
    }
    let recorded = result
        .and_then(|r| r.get("run_record"))
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<Digest>().ok())
        .zip(store)
        .and_then(|(digest, store)| store.get_artifact(&digest).ok())
        .and_then(|a| a.view::<RunRecord>().ok())
        .map(|r| r.work_order_id);
    let read = doc
        .input
        .get("workorder")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(workorder) = recorded.or(read) {
        row.workorder = workorder;
    }
}

/// A journal time with exactly three fractional digits, so the column lines up.
fn millis(time: &str) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(format).ok())
        .unwrap_or_else(|| time.to_owned())
}

/// `admission show ID`: a run uid or a digest.
pub fn show(cli: &Cli, out: Output, id: &str) -> Result<u8, CommandError> {
    let shown = shown(cli, id)?;
    out.result(&shown.text, shown.value);
    Ok(0)
}

/// What `admission show ID` prints, rendered but not printed.
pub(crate) fn shown(cli: &Cli, id: &str) -> Result<Rendered, CommandError> {
    // A run uid has dashes; a digest, whole or a prefix, is hex with or without `sha256:`.
    if id.starts_with(protocol::digest::PREFIX) || id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let digest = super::digest_arg(&cli.store, id)?;
        return show_artifact(cli, &digest);
    }
    let uid: Uid = id.parse().map_err(|e| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!("{id:?} is neither a digest (sha256:...) nor a run uid: {e}"),
        )
    })?;
    show_run(cli, &uid)
}

fn show_run(cli: &Cli, uid: &Uid) -> Result<Rendered, CommandError> {
    let journal = open_journal(cli)?;
    let history = journal.history(uid).map_err(journal_error)?;
    let children = journal.children(uid).map_err(journal_error)?;
    let Some((_, latest)) = history.last() else {
        return Err(CommandError::internal(
            ErrorCode::InternalError,
            format!("run {uid} has no snapshot"),
        ));
    };
    let store = super::pipeline::existing_store(cli)?;
    let record = run_record_of(&store, latest);
    let mut text = describe_run(latest, &history);
    if let Some((digest, record)) = &record {
        let _ = writeln!(text, "\nrun record {digest}");
        text.push_str(&describe_record(&store, record));
    }
    if let Some(parent) = &latest.parent {
        let _ = writeln!(text, "\nresumes    {parent}");
    }
    for child in &children {
        let _ = writeln!(text, "\nresumed by {child}");
    }
    let value = json!({
        "execution": latest,
        "steps": history.iter().map(|(label, doc)| json!({"label": label, "status": doc.status, "at": doc.updated_at})).collect::<Vec<_>>(),
        "run_record": record.as_ref().map(|(d, r)| json!({"digest": d, "record": r})),
        "children": children,
    });
    Ok(Rendered::new(text.trim_end(), value))
}

fn describe_run(doc: &ExecutionDocument, history: &[(String, ExecutionDocument)]) -> String {
    let mut t = String::new();
    let command = doc
        .context
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let status = serde_json::to_value(doc.status).unwrap_or(Value::Null);
    let _ = writeln!(
        t,
        "run        {} ({command}, {})",
        doc.uid,
        status.as_str().unwrap_or("?")
    );
    if let Some(started) = &doc.started_at {
        let _ = writeln!(t, "started    {started}");
    }
    let _ = writeln!(t, "input      {}", doc.input);
    let _ = writeln!(t, "steps");
    for (label, snapshot) in history {
        let _ = writeln!(
            t,
            "  {:<12} {}",
            label,
            snapshot.updated_at.as_deref().unwrap_or("")
        );
    }
    t
}

/// The run record an execution's result names, read back and re-hashed.
fn run_record_of(store: &Store, doc: &ExecutionDocument) -> Option<(Digest, RunRecord)> {
    let digest: Digest = doc
        .result
        .as_ref()?
        .get("run_record")?
        .as_str()?
        .parse()
        .ok()?;
    let record = store.get_artifact(&digest).ok()?.view().ok()?;
    Some((digest, record))
}

fn describe_record(store: &Store, record: &RunRecord) -> String {
    let mut t = String::new();
    let outcome = serde_json::to_value(record.outcome).unwrap_or(Value::Null);
    let _ = writeln!(
        t,
        "workorder  {} · {} {}",
        record.work_order_id, record.mechanism, record.operation
    );
    let _ = writeln!(t, "outcome    {}", outcome.as_str().unwrap_or("?"));
    for (label, digest) in [
        ("plan", record.plan_hash),
        ("admission", record.admission_hash),
        ("force-ack", record.force_ack_hash),
        ("result", record.result_hash),
        ("witness", record.witness_hash),
    ] {
        if let Some(digest) = digest {
            let present = if store.contains(&digest) {
                ""
            } else {
                "  (missing from the store)"
            };
            let _ = writeln!(t, "{label:<10} {digest}{present}");
        }
    }
    if let Some(admission) = record
        .admission_hash
        .and_then(|d| store.get_artifact(&d).ok())
        .and_then(|a| a.view::<AdmissionWitness>().ok())
    {
        t.push_str(&describe_admission(&admission));
    }
    if let Some(error) = &record.error {
        let _ = writeln!(t, "error      {}: {}", error.code, error.message);
    }
    if let protocol::artifact::kinds::NextActionsRef::Inline(actions) = &record.next_actions {
        let _ = writeln!(t, "next");
        for (n, a) in actions.iter().enumerate() {
            let _ = writeln!(t, "  {}. {}\n     # {}", n + 1, a.command, a.why);
        }
    }
    t
}

fn describe_admission(witness: &AdmissionWitness) -> String {
    let mut t = String::new();
    let decision = serde_json::to_value(witness.decision).unwrap_or(Value::Null);
    let _ = writeln!(
        t,
        "decision   {}{}",
        decision.as_str().unwrap_or("?"),
        if witness.force_ack_required {
            " (force-ack required)"
        } else {
            ""
        }
    );
    for gate in &witness.gates {
        let name = serde_json::to_value(gate.gate).unwrap_or(Value::Null);
        let mark = serde_json::to_value(gate.decision).unwrap_or(Value::Null);
        let code = gate.code.map(|c| format!(" {c}")).unwrap_or_default();
        let _ = writeln!(
            t,
            "  {} {:<13}{code} {}",
            crate::text::decision(mark.as_str().unwrap_or("?")),
            name.as_str().unwrap_or("?"),
            gate.reason
        );
    }
    t
}

fn show_artifact(cli: &Cli, digest: &Digest) -> Result<Rendered, CommandError> {
    let store = super::pipeline::existing_store(cli)?;
    let artifact = store.get_artifact(digest).map_err(|e| match e {
        StoreError::NotFound(_) => CommandError::bad_input(
            ErrorCode::UnknownArtifact,
            format!("{digest} is not in the store {}", cli.store.display()),
        ),
        // A blob is not JSON: say what it is rather than failing.
        StoreError::Artifact { .. } | StoreError::NotCanonical(_) => CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!("{digest} is a blob, not an artifact; print it with `admission cat {digest}`"),
        ),
        other => CommandError::from(ErrorInfo::new(other.code(), other.to_string())),
    })?;
    let provenance = store.provenance(digest).ok().flatten();
    let mut text = format!("{}  {}\n", artifact.kind(), digest);
    if let Some(p) = &provenance {
        let _ = writeln!(text, "made by {} at {}", p.producer, p.created_at);
    }
    text.push_str(&describe_artifact(&store, &artifact));
    Ok(Rendered::new(
        text.trim_end(),
        json!({"digest": digest, "kind": artifact.kind(), "artifact": artifact.value(), "provenance": provenance}),
    ))
}

fn describe_artifact(store: &Store, artifact: &Artifact) -> String {
    let mut t = String::new();
    if let Ok(plan) = artifact.view::<Plan>() {
        let _ = writeln!(
            t,
            "{} {} {} · {}",
            plan.mechanism.id,
            plan.mechanism.version,
            plan.operation,
            if plan.destructive {
                "DESTRUCTIVE"
            } else {
                "not destructive"
            }
        );
        for reason in &plan.destructive_reasons {
            let _ = writeln!(t, "  ! {reason}");
        }
        let _ = writeln!(t, "state      {}", plan.state);
        for e in &plan.intended_effects {
            let _ = writeln!(
                t,
                "  {:<10} {} {}",
                e.effect_type,
                e.resource,
                Value::Object(e.detail.clone())
            );
        }
        t.push_str(&plan_history(store, &artifact.digest()));
    } else if let Ok(witness) = artifact.view::<AdmissionWitness>() {
        let _ = writeln!(t, "plan       {}", witness.plan_hash);
        t.push_str(&describe_admission(&witness));
    } else if let Ok(record) = artifact.view::<RunRecord>() {
        t.push_str(&describe_record(store, &record));
    } else if let Ok(result) = artifact.view::<ResultArtifact>() {
        let status = serde_json::to_value(result.status).unwrap_or(Value::Null);
        let _ = writeln!(t, "plan       {}", result.plan_hash);
        let _ = writeln!(t, "status     {}", status.as_str().unwrap_or("?"));
        let _ = writeln!(t, "evidence   {}", result.evidence);
        if let Some(error) = &result.error {
            let _ = writeln!(t, "error      {}: {}", error.code, error.message);
        }
    } else {
        let pretty = serde_json::to_string_pretty(artifact.value()).unwrap_or_default();
        t.push_str(&pretty);
    }
    t
}

/// What became of a plan: its admission (and the run that gated it) and its last result.
fn plan_history(store: &Store, plan: &Digest) -> String {
    let mut t = String::new();
    match store.get_ref::<AdmissionRecord>(pipeline::ADMISSIONS, &plan.hex()) {
        Ok(Some(record)) => {
            let _ = writeln!(
                t,
                "admission  {} ({}, gated by run {})",
                record.admission,
                if record.admitted { "ADMIT" } else { "DENY" },
                record.run_uid
            );
        }
        _ => {
            let _ = writeln!(t, "admission  none recorded in this store");
        }
    }
    if let Ok(Some(r)) = store.result_record(plan) {
        let _ = writeln!(
            t,
            "result     {} ({})\nwitness    {}",
            r.result,
            if r.succeeded { "succeeded" } else { "failed" },
            r.witness
        );
    } else {
        let _ = writeln!(t, "result     not executed");
    }
    t
}

fn open_journal(cli: &Cli) -> Result<Journal, CommandError> {
    if !cli.store.is_dir() {
        return Err(CommandError::bad_input(
            ErrorCode::InvalidParams,
            super::pipeline::no_store(&cli.store),
        ));
    }
    Journal::open(&cli.store).map_err(journal_error)
}

fn journal_error(error: JournalError) -> CommandError {
    match error {
        JournalError::NotFound { .. } => {
            CommandError::bad_input(ErrorCode::InvalidParams, error.to_string())
        }
        other => CommandError::internal(ErrorCode::InternalError, format!("journal: {other}")),
    }
}
