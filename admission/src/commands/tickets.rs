//! `ticket new|show|list|ready` and `events add|process`: the ticket lifecycle's commands.

use std::fmt::Write as _;
use std::path::Path;

use protocol::artifact::kinds::{Event, EventType, Ticket, TicketStatus};
use protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use super::pipeline::{actions_text, existing_store, invocation, progress_printer, setup};
use crate::cli::{Cli, Output};
use crate::exit::{self, CommandError};
use crate::pipeline::{self, Setup};
use crate::text::spelled;
use crate::tickets::file;
use crate::tickets::ledger::{Added, Ledger, Stored};
use crate::tickets::process::{self, blocker_text};

/// `admission ticket new FILE`.
pub fn new(cli: &Cli, out: Output, path: &Path) -> Result<u8, CommandError> {
    let mut ticket = file::read_ticket(path).map_err(bad_input)?;
    let setup = setup(cli)?;
    check_work(&setup, &ticket)?;
    // Only a ticket that will be kept has its inputs stored.
    file::store_inputs(&mut ticket, path, &setup.store).map_err(bad_input)?;
    let _lock = process::lock(&setup, true)?;
    let ledger = Ledger::new(&setup.store);
    let (digest, created) = match ledger.ticket(&ticket.ticket_id)? {
        Some(current) => {
            let first = ledger.history(current.digest)?.pop().map(|s| Ticket {
                updated_at: None,
                ..s.value
            });
            if first.as_ref() != Some(&ticket) {
                return Err(CommandError::bad_input(
                    ErrorCode::InvalidParams,
                    format!(
                        "ticket {} already exists (status {}, {}) with other content; a \
                         ticket id names one ticket",
                        ticket.ticket_id, current.value.status, current.digest
                    ),
                ));
            }
            (current.digest, false)
        }
        None => {
            ticket.updated_at = Some(pipeline::now());
            (ledger.put_ticket(&ticket, "admission ticket new")?, true)
        }
    };
    let g = flags(cli);
    let next = format!("admission{g} ticket ready {}", ticket.ticket_id);
    let text = format!(
        "ticket {} {} ({})\n  objective  {}\n  work       {} {}\n  version    {digest}\n\nnext\n  {next}",
        ticket.ticket_id,
        ticket.status,
        if created { "filed" } else { "already filed, unchanged" },
        ticket.objective,
        ticket.work.mechanism,
        ticket.work.operation,
    );
    out.result(
        &text,
        json!({
            "ticket_id": ticket.ticket_id,
            "ticket": digest,
            "status": ticket.status,
            "created": created,
            "next": next,
        }),
    );
    Ok(0)
}

/// The work must name a registered mechanism that has the operation (asked by `describe`).
fn check_work(setup: &Setup, ticket: &Ticket) -> Result<(), CommandError> {
    let work = &ticket.work;
    let session = pipeline::start_session(setup, &work.mechanism).map_err(|e| {
        CommandError::bad_input(
            e.code,
            format!(
                "the ticket's work cannot start its mechanism: {}",
                e.message
            ),
        )
    })?;
    let operations: Vec<&str> = session
        .described
        .operations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    if !operations.contains(&work.operation.as_str()) {
        return Err(CommandError::bad_input(
            ErrorCode::UnknownOperation,
            format!(
                "mechanism {} has no operation {:?}; it has {}",
                work.mechanism,
                work.operation,
                operations.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `admission ticket show ID`.
pub fn show(cli: &Cli, out: Output, ticket_id: &str) -> Result<u8, CommandError> {
    let store = existing_store(cli)?;
    let ledger = Ledger::new(&store);
    let current = find(&ledger, cli, ticket_id)?;
    let history = ledger.history(current.digest)?;
    let pause = ledger.pause(ticket_id)?;
    let events: Vec<(String, Stored<Event>)> = ledger
        .events()?
        .into_iter()
        .filter(|(_, e)| e.value.ticket_id == ticket_id)
        .collect();
    let t = &current.value;
    let mut text = format!("ticket {}  {}\n", t.ticket_id, t.status);
    let _ = writeln!(text, "  objective   {}", t.objective);
    let _ = writeln!(text, "  acceptance");
    for criterion in &t.acceptance {
        let _ = writeln!(text, "    - {criterion}");
    }
    let _ = writeln!(
        text,
        "  work        {} {} (budget {} ms{})",
        t.work.mechanism,
        t.work.operation,
        t.work.budget_ms.unwrap_or(t.work.budget.wall_ms),
        t.work
            .branch
            .as_ref()
            .map(|b| format!(", branch {b}"))
            .unwrap_or_default()
    );
    for blocker in &t.blocked_on {
        let _ = writeln!(text, "  blocked on  {}", blocker_text(blocker));
    }
    if let Some(resolution) = &t.resolution {
        if let Some(commit) = &resolution.commit {
            let _ = writeln!(text, "  commit      {commit}");
        }
        if let Some(error) = &resolution.error {
            let _ = writeln!(text, "  failed      {}: {}", error.code, error.message);
        }
        if let Some(record) = &resolution.run_record {
            let _ = writeln!(text, "  run record  {record}");
        }
    }
    let _ = writeln!(
        text,
        "  version     {} ({})",
        current.digest,
        crate::text::count(history.len(), "version", "versions")
    );
    if let Some(pause) = &pause {
        let p = &pause.value;
        let _ = writeln!(text, "\npaused      {} ({})", p.reason, pause.digest);
        text.push_str(&actions_text(&p.actions));
    }
    if !events.is_empty() {
        let _ = writeln!(text, "\nevents");
        for (_, e) in &events {
            let outcome = e
                .value
                .resolution
                .as_ref()
                .map_or("pending".to_owned(), |r| spelled(&r.outcome));
            let _ = writeln!(text, "  {:<24} {outcome}", e.value.event_id);
        }
    }
    let value = json!({
        "ticket_id": t.ticket_id,
        "digest": current.digest,
        "ticket": t,
        "history": history.iter().map(|s| s.digest).collect::<Vec<_>>(),
        "pause_state": pause.as_ref().map(|p| json!({"digest": p.digest, "pause_state": p.value})),
        "events": events.iter().map(|(_, e)| json!({
            "event_id": e.value.event_id,
            "digest": e.digest,
            "processed": e.value.processed,
            "outcome": e.value.resolution.as_ref().map(|r| r.outcome),
        })).collect::<Vec<_>>(),
    });
    out.result(text.trim_end(), value);
    Ok(0)
}

/// `admission ticket list`.
pub fn list(cli: &Cli, out: Output) -> Result<u8, CommandError> {
    let store = existing_store(cli)?;
    let tickets = Ledger::new(&store).tickets()?;
    let width = tickets
        .iter()
        .map(|t| t.value.ticket_id.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for t in &tickets {
        let _ = writeln!(
            text,
            "{:<width$}  {:<7}  {}",
            t.value.ticket_id, t.value.status, t.value.objective
        );
    }
    if tickets.is_empty() {
        text.push_str("no tickets");
    }
    let value = json!({"tickets": tickets.iter().map(|t| json!({
        "ticket_id": t.value.ticket_id,
        "status": t.value.status,
        "objective": t.value.objective,
        "digest": t.digest,
    })).collect::<Vec<_>>()});
    out.result(text.trim_end(), value);
    Ok(0)
}

/// `admission ticket ready ID`: READY and a TICKET_READY event, or why not.
pub fn ready(cli: &Cli, out: Output, ticket_id: &str) -> Result<u8, CommandError> {
    existing_store(cli)?;
    let setup = setup(cli)?;
    let _lock = process::lock(&setup, true)?;
    let ledger = Ledger::new(&setup.store);
    let current = find(&ledger, cli, ticket_id)?;
    let t = &current.value;
    let not_ready = |why: String| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!("ticket {ticket_id} is not ready: {why}"),
        )
    };
    match t.status {
        TicketStatus::Done => {
            return Err(not_ready(
                "it is DONE: its work ran and passed".to_owned(),
            ))
        }
        TicketStatus::Running => {
            return Err(not_ready(format!(
                "it is RUNNING: its run is under way or paused (see `admission ticket show {ticket_id}`)"
            )))
        }
        _ => {}
    }
    let mut open = Vec::new();
    for blocker in &t.blocked_on {
        let resolved = match &blocker.ticket_id {
            Some(id) => ledger
                .ticket(id)?
                .is_some_and(|b| b.value.status == TicketStatus::Done),
            None => false,
        };
        if !resolved {
            open.push(blocker_text(blocker));
        }
    }
    if !open.is_empty() {
        return Err(not_ready(format!("it waits on {}", open.join("; "))));
    }
    setup
        .registry
        .entry(&t.work.mechanism)
        .map_err(|e| not_ready(format!("its work cannot run: {e}")))?;
    let ticket = if t.status == TicketStatus::Ready {
        current.digest
    } else {
        let ready = Ticket {
            status: TicketStatus::Ready,
            previous: Some(current.digest),
            event_id: None,
            resolution: None,
            updated_at: Some(pipeline::now()),
            ..t.clone()
        };
        ledger.put_ticket(&ready, "admission ticket ready")?
    };
    let event = Event {
        event_id: format!("ready-{}", uuid::Uuid::now_v7().hyphenated()),
        event_type: EventType::TicketReady,
        ticket_id: ticket_id.to_owned(),
        processed: false,
        resolution: None,
        source: Some("admission ticket ready".to_owned()),
        previous: None,
    };
    let digest = match ledger.add_event(&event, "admission ticket ready")? {
        Added::New(_, digest) | Added::Again(_, digest) => digest,
    };
    let next = format!("admission{} events process", flags(cli));
    let text = format!(
        "ticket {ticket_id} READY\n  event      {} (TICKET_READY, {digest})\n  version    {ticket}\n\nnext\n  {next}",
        event.event_id
    );
    out.result(
        &text,
        json!({
            "ticket_id": ticket_id,
            "event_id": event.event_id,
            "event": digest,
            "ticket": ticket,
            "status": TicketStatus::Ready,
            "next": next,
        }),
    );
    Ok(0)
}

/// `admission events add FILE`.
pub fn add(cli: &Cli, out: Output, path: &Path) -> Result<u8, CommandError> {
    let event = file::read_event(path).map_err(bad_input)?;
    let setup = setup(cli)?;
    let ledger = Ledger::new(&setup.store);
    let (seq, digest, added) = match ledger.add_event(&event, "admission events add")? {
        Added::New(seq, digest) => (seq, digest, true),
        Added::Again(seq, digest) => (seq, digest, false),
    };
    let text = format!(
        "event {} for ticket {} {}\n  digest     {digest}",
        event.event_id,
        event.ticket_id,
        if added {
            "added, pending"
        } else {
            "was added before: nothing written"
        }
    );
    out.result(
        &text,
        json!({"event_id": event.event_id, "event": digest, "seq": seq, "added": added}),
    );
    Ok(0)
}

/// `admission events process`.
pub fn process(cli: &Cli, out: Output) -> Result<u8, CommandError> {
    existing_store(cli)?;
    let setup = setup(cli)?;
    let invocation = invocation(cli, None);
    let mut progress = progress_printer(out);
    let processed = process::process_pending(&setup, &invocation, &mut progress)?;
    let mut text = String::new();
    if processed.is_empty() {
        text.push_str("no pending events");
    }
    for p in &processed {
        let _ = writeln!(
            text,
            "event {} (ticket {})  {}",
            p.event_id,
            p.ticket_id,
            spelled(&p.outcome)
        );
        let _ = writeln!(text, "  {}", p.reason);
        if let (Some(status), Some(ticket)) = (p.ticket_status, p.ticket) {
            let _ = writeln!(text, "  ticket     {status} {ticket}");
        }
        if let Some(record) = p.run_record {
            let _ = writeln!(text, "  run record {record}");
        }
        if let Some(pause) = p.pause_state {
            let _ = writeln!(text, "  paused     {pause}");
        }
        text.push_str(&actions_text(&p.actions));
        text.push('\n');
    }
    out.result(text.trim_end(), json!({"processed": processed}));
    Ok(0)
}

/// The ticket's part of an `execute` report: how the resumed run ended its cycle.
pub fn after_execute(
    setup: &Setup,
    invocation: &pipeline::Invocation,
    report: &pipeline::Report,
) -> Option<(String, Value)> {
    match process::after_execute(setup, invocation, report) {
        Ok(Some((ticket_id, end))) => {
            let mut text = format!(
                "ticket     {ticket_id} {} {}\npaused     {}",
                end.status, end.ticket, end.pause_state
            );
            text.push('\n');
            text.push_str(&actions_text(&end.actions));
            Some((
                text.trim_end().to_owned(),
                json!({
                    "ticket_id": ticket_id,
                    "status": end.status,
                    "ticket": end.ticket,
                    "pause_state": end.pause_state,
                    "actions": end.actions,
                }),
            ))
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "the ticket of this run could not be brought up to date");
            None
        }
    }
}

fn find<'s>(
    ledger: &Ledger<'s>,
    cli: &Cli,
    ticket_id: &str,
) -> Result<Stored<Ticket>, CommandError> {
    ledger.ticket(ticket_id)?.ok_or_else(|| {
        CommandError::bad_input(
            ErrorCode::UnknownArtifact,
            format!(
                "no ticket {ticket_id} in the store {}",
                std::path::absolute(&cli.store)
                    .unwrap_or_else(|_| cli.store.clone())
                    .display()
            ),
        )
    })
}

/// The global flags given, as ` --store DIR ...`, for commands to paste.
fn flags(cli: &Cli) -> String {
    let flags = invocation(cli, None).global_flags;
    if flags.is_empty() {
        flags
    } else {
        format!(" {flags}")
    }
}

fn bad_input(error: ErrorInfo) -> CommandError {
    CommandError::new(exit::BAD_INPUT, error)
}
