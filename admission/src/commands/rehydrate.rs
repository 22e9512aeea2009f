//! `admission rehydrate TICKET_ID|RUN_UID|RUN_RECORD_DIGEST`: a ticket's cycle rebuilt from
//! the object store alone, and its links checked.
//!
//! Only the store is read, never the journal (`<store>/exec`): a ticket is found by its
//! reference `tickets/<key>`, a run by `runs/<uid>`, and everything else by the digests the
//! artifacts name. A ticket's cycle is that of its latest run: the one its latest pause state
//! names, else the one its newest resolution names.

use std::fmt::Write as _;

use protocol::artifact::kinds::{
    ContextSnapshot, Event, OutputBundle, PauseState, RunRecord, Ticket, Workorder,
};
use protocol::artifact::{Artifact, Kind};
use protocol::store::{parse_digest_arg, Store, StoreError};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{Cli, Output};
use crate::exit::{self, CommandError};
use crate::pipeline::{RunRef, RUNS};
use crate::text::spelled;
use crate::tickets::ledger::{self, Ledger, Stored};
use crate::tickets::trace;
use crate::verify::Check;

/// Check name: an artifact the cycle names could not be read as its kind.
const ARTIFACT: &str = "artifact.cycle";

/// What the id given names.
enum Start {
    /// A ticket's current version (boxed: a ticket is large, a digest small).
    Ticket(Box<Stored<Ticket>>),
    /// A run record.
    Record(Digest),
}

/// Everything of one cycle that could be read, and the checks made.
#[derive(Default)]
struct Cycle {
    ticket_id: Option<String>,
    history: Vec<Stored<Ticket>>,
    events: Vec<(String, Stored<Event>)>,
    snapshot: Option<Stored<ContextSnapshot>>,
    workorder: Option<Stored<Workorder>>,
    output: Option<Stored<OutputBundle>>,
    record: Option<Stored<RunRecord>>,
    pause: Option<Stored<PauseState>>,
    checks: Vec<Check>,
}

/// Rebuilds the cycle `id` names; exit 0 when every check holds, 5 when one fails.
pub fn run(cli: &Cli, out: Output, id: &str) -> Result<u8, CommandError> {
    let store = super::pipeline::existing_store(cli)?;
    let ledger = Ledger::new(&store);
    let mut cycle = Cycle::default();
    let record = match resolve(cli, &store, &ledger, id)? {
        Start::Ticket(current) => {
            cycle.ticket_id = Some(current.value.ticket_id.clone());
            cycle.read_ticket(&ledger, *current);
            cycle
                .pause
                .as_ref()
                .and_then(|p| p.value.run_record)
                .or_else(|| {
                    cycle
                        .history
                        .iter()
                        .find_map(|v| v.value.resolution.as_ref().and_then(|r| r.run_record))
                })
        }
        Start::Record(digest) => Some(digest),
    };
    if let Some(digest) = record {
        cycle.read_run(&store, &ledger, digest);
    }
    let commit = cycle.commit();
    let verified = cycle.checks.iter().all(Check::held);
    out.result(
        &cycle.text(commit.as_deref(), verified),
        cycle.json(commit, verified)?,
    );
    Ok(if verified { 0 } else { exit::EXECUTION_FAILED })
}

/// A ticket id first, then a run uid, then a run record's digest (whole or a prefix).
fn resolve(cli: &Cli, store: &Store, ledger: &Ledger, id: &str) -> Result<Start, CommandError> {
    if let Some(current) = ledger.ticket(id)? {
        return Ok(Start::Ticket(Box::new(current)));
    }
    match store.get_ref::<RunRef>(RUNS, id) {
        Ok(Some(run)) => return Ok(Start::Record(run.run_record)),
        // Not a name a reference can have: it may still be a digest.
        Ok(None) | Err(StoreError::BadRefName { .. }) => {}
        Err(e) => return Err(ErrorInfo::from(e).into()),
    }
    let unknown = || {
        CommandError::bad_input(
            ErrorCode::UnknownArtifact,
            format!(
                "no ticket, run uid or run record {id:?} in the store at {}",
                std::path::absolute(store.root())
                    .unwrap_or_else(|_| store.root().to_path_buf())
                    .display()
            ),
        )
    };
    if parse_digest_arg(id).is_err() {
        return Err(unknown());
    }
    let digest = super::digest_arg(&cli.store, id)?;
    let artifact = match store.get_artifact(&digest) {
        Ok(artifact) => artifact,
        Err(StoreError::NotFound(_)) => return Err(unknown()),
        Err(e) => return Err(ErrorInfo::from(e).into()),
    };
    if artifact.kind() != RunRecord::KIND {
        return Err(CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!(
                "{digest} is a {} artifact; rehydrate takes a ticket id, a run uid or a run \
                 record ({})",
                artifact.kind(),
                RunRecord::KIND
            ),
        ));
    }
    Ok(Start::Record(digest))
}

impl Cycle {
    /// Keeps what `read` gave, or records why it could not be read.
    fn keep<T>(&mut self, what: &str, read: Result<T, ErrorInfo>) -> Option<T> {
        read.map_err(|e| {
            self.checks.push(Check::fail(
                ARTIFACT,
                e.code,
                format!("{what}: {}", e.message),
            ));
        })
        .ok()
    }

    /// The ticket's history from its current version, its events and latest pause state.
    fn read_ticket(&mut self, ledger: &Ledger, current: Stored<Ticket>) {
        let ticket_id = current.value.ticket_id.clone();
        let what = format!("the history of ticket {ticket_id}");
        self.history = self
            .keep(&what, ledger.history(current.digest))
            .unwrap_or_else(|| vec![current]);
        let what = format!("the events of ticket {ticket_id}");
        let events = self.keep(&what, ledger.events()).unwrap_or_default();
        self.events = events
            .into_iter()
            .filter(|(_, e)| e.value.ticket_id == ticket_id)
            .collect();
        let what = format!("the latest pause state of ticket {ticket_id}");
        self.pause = self.keep(&what, ledger.pause(&ticket_id)).flatten();
    }

    /// The run record `digest`, what it leads to, and the trace checks; then the ticket, if
    /// the cycle started from the run.
    fn read_run(&mut self, store: &Store, ledger: &Ledger, digest: Digest) {
        let what = format!("the run record {digest}");
        let Some(record) = self.keep(&what, ledger::read::<RunRecord>(store, &digest)) else {
            return;
        };
        let traced = trace::trace(store, &digest, &record);
        self.workorder = traced.workorder;
        self.snapshot = traced.snapshot;
        self.output = traced.output;
        self.checks.extend(traced.checks);
        if self.ticket_id.is_none() {
            if let Some(ticket_id) = &record.ticket_id {
                self.ticket_id = Some(ticket_id.clone());
                let what = format!("the current version of ticket {ticket_id}");
                if let Some(current) = self.keep(&what, ledger.ticket(ticket_id)).flatten() {
                    self.read_ticket(ledger, current);
                }
            }
        }
        self.record = Some(Stored {
            digest,
            value: record,
        });
    }

    /// The commit the cycle produced: the output bundle's, else the ticket's resolution's.
    fn commit(&self) -> Option<String> {
        let bundle = self.output.as_ref().and_then(|o| o.value.commit.clone());
        bundle.or_else(|| {
            let current = self.history.first()?;
            current.value.resolution.as_ref()?.commit.clone()
        })
    }

    fn json(&self, commit: Option<String>, verified: bool) -> Result<Value, CommandError> {
        let history: Vec<Value> = self.history.iter().map(entry).collect::<Result<_, _>>()?;
        let events = self
            .events
            .iter()
            .map(|(seq, e)| {
                let mut value = entry(e)?;
                value["seq"] = seq.as_str().into();
                Ok(value)
            })
            .collect::<Result<Vec<Value>, CommandError>>()?;
        Ok(json!({
            "ticket_id": self.ticket_id,
            "ticket": self.history.first().map(entry).transpose()?,
            "history": history,
            "events": events,
            "context_snapshot": self.snapshot.as_ref().map(entry).transpose()?,
            "workorder": self.workorder.as_ref().map(entry).transpose()?,
            "output_bundle": self.output.as_ref().map(entry).transpose()?,
            "run_record": self.record.as_ref().map(entry).transpose()?,
            "pause_state": self.pause.as_ref().map(entry).transpose()?,
            "commit": commit,
            "checks": self.checks,
            "verified": verified,
        }))
    }

    fn text(&self, commit: Option<&str>, verified: bool) -> String {
        let mut text = String::new();
        match self.history.first() {
            Some(current) => {
                let t = &current.value;
                let _ = writeln!(
                    text,
                    "ticket {}  {}  {}",
                    t.ticket_id, t.status, current.digest
                );
                let _ = writeln!(text, "  objective  {}", t.objective);
                let _ = writeln!(
                    text,
                    "  history    {}, newest first",
                    crate::text::count(self.history.len(), "version", "versions")
                );
                for version in &self.history {
                    let v = &version.value;
                    let at = v.updated_at.as_deref().unwrap_or("-");
                    let _ = writeln!(
                        text,
                        "    {}  {:<7}  {at}",
                        version.digest,
                        v.status.as_str()
                    );
                }
            }
            None => {
                let id = self.ticket_id.as_deref();
                let _ = writeln!(
                    text,
                    "ticket {}",
                    id.unwrap_or("none: the run names no ticket")
                );
            }
        }
        let _ = writeln!(text, "\nevents ({})", self.events.len());
        for (_, event) in &self.events {
            let e = &event.value;
            let state = match &e.resolution {
                Some(r) => format!("processed: {}, {}", spelled(&r.outcome), r.reason),
                None => "pending".to_owned(),
            };
            let _ = writeln!(text, "  {}  {}  {state}", e.event_id, event.digest);
        }
        let _ = writeln!(text, "\ncontext snapshot");
        if let Some(snapshot) = &self.snapshot {
            let s = &snapshot.value;
            let _ = writeln!(text, "  {}  {}", s.snapshot_id, snapshot.digest);
            let _ = writeln!(text, "  made from  {} at {}", s.ticket, s.taken_at);
            match (&s.plan_hash, &s.error) {
                (Some(plan), _) => {
                    let _ = writeln!(text, "  plan       {plan}");
                }
                (None, Some(e)) => {
                    let _ = writeln!(text, "  no plan    {}: {}", e.code, e.message);
                }
                (None, None) => {}
            }
        } else {
            text.push_str("  none\n");
        }
        let _ = writeln!(text, "\nworkorder");
        if let Some(workorder) = &self.workorder {
            let w = &workorder.value;
            let _ = writeln!(text, "  {}  {}", w.work_order_id, workorder.digest);
            let _ = writeln!(text, "  runs       {} {}", w.mechanism, w.operation);
        } else {
            text.push_str("  none\n");
        }
        let _ = writeln!(text, "\nrun record");
        if let Some(record) = &self.record {
            let r = &record.value;
            let _ = writeln!(text, "  {}", record.digest);
            let _ = writeln!(
                text,
                "  run        {}: {}, decision {}",
                r.run_uid,
                spelled(&r.outcome),
                spelled(&r.decision)
            );
            if let Some(gate) = &r.failed_gate {
                let _ = writeln!(text, "  failed     {}", gate.as_str());
            }
            if let Some(e) = &r.error {
                let _ = writeln!(text, "  error      {}: {}", e.code, e.message);
            }
        } else {
            text.push_str("  none\n");
        }
        let _ = writeln!(text, "\noutput bundle");
        if let Some(output) = &self.output {
            let _ = writeln!(text, "  {}  {}", output.value.output_id, output.digest);
        } else {
            text.push_str("  none\n");
        }
        let _ = writeln!(text, "\npause state");
        if let Some(pause) = &self.pause {
            let p = &pause.value;
            let _ = writeln!(text, "  {}", pause.digest);
            let _ = writeln!(text, "  {}: {}", p.status, p.reason);
            for action in &p.actions {
                let _ = writeln!(
                    text,
                    "  {}. {}\n     {}",
                    action.priority, action.command, action.why
                );
            }
        } else {
            text.push_str("  none\n");
        }
        let _ = writeln!(text, "\ncommit  {}", commit.unwrap_or("none"));
        let _ = writeln!(text, "\nchecks");
        if self.checks.is_empty() {
            text.push_str("  none: no run to trace\n");
        }
        for check in &self.checks {
            let _ = writeln!(text, "  {check}");
        }
        text.push_str(if verified {
            "\nconsistent: every check holds"
        } else {
            "\nNOT consistent: see the failed checks above"
        });
        text
    }
}

/// `{"digest", "artifact"}`, the artifact as stored (with its kind).
fn entry<T: Kind + Serialize>(stored: &Stored<T>) -> Result<Value, CommandError> {
    let artifact = Artifact::from_typed(&stored.value)
        .map_err(|e| CommandError::internal(ErrorCode::InternalError, e.to_string()))?;
    Ok(json!({"digest": stored.digest, "artifact": artifact.into_value()}))
}
