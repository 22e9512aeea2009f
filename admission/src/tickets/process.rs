//! `events process`: every pending event to exactly one terminal outcome, in arrival order,
//! and the cycle a scheduled ticket runs: RUNNING, context snapshot, workorder, the admission
//! pipeline, then DONE, FAILED, or RUNNING paused for a force-ack, always with a pause state.

use std::fs::File;

use mechanism_server::failpoint;
use protocol::artifact::kinds::{
    Blocker, ContextSnapshot, Event, EventOutcome, EventResolution, NextAction, NextActionsRef,
    OutputBundle, PauseState, RunOutcome, RunRecord, Ticket, TicketResolution, TicketStatus,
    Workorder,
};
use protocol::artifact::Kind;
use protocol::verbs::{PlanParams, PlanResult, ProgressParams};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde::Serialize;
use serde_json::{json, Value};

use super::ledger::{Ledger, Stored};
use crate::exit::CommandError;
use crate::journal::Uid;
use crate::pipeline::{self, Invocation, Mode, Report, Setup, WorkorderSource};

/// The lock file, in the store, that one `events process` at a time holds.
const LOCK_FILE: &str = "events.lock";

/// What processing one event found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    /// The event.
    pub event_id: String,
    /// Its ticket.
    pub ticket_id: String,
    /// Its terminal outcome.
    pub outcome: EventOutcome,
    /// Why, for people.
    pub reason: String,
    /// The processed version of the event.
    pub event: Digest,
    /// The run, when scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_uid: Option<String>,
    /// Its record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_record: Option<Digest>,
    /// How the run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_outcome: Option<RunOutcome>,
    /// The ticket's status after processing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_status: Option<TicketStatus>,
    /// The ticket's version after processing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Digest>,
    /// The pause state the processing ended in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_state: Option<Digest>,
    /// The commands it pauses on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<NextAction>,
    /// The unresolved blockers, when blocked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
}

/// How a cycle ended for its ticket: the version written last, its status, its pause state.
#[derive(Debug, Clone)]
pub struct CycleEnd {
    /// The ticket version.
    pub ticket: Digest,
    /// Its status.
    pub status: TicketStatus,
    /// The pause state.
    pub pause_state: Digest,
    /// The pause state's actions.
    pub actions: Vec<NextAction>,
}

/// Processes every pending event in arrival order; an event already processed is left as it
/// is, so processing twice does nothing the second time.
pub fn process_pending(
    setup: &Setup,
    invocation: &Invocation,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Result<Vec<Processed>, CommandError> {
    let _lock = lock(setup, false)?;
    let ledger = Ledger::new(&setup.store);
    let mut processed = Vec::new();
    for (seq, stored) in ledger.events().map_err(CommandError::from)? {
        if stored.value.processed {
            continue;
        }
        let cycle = Cycle {
            setup,
            ledger: &ledger,
            invocation,
        };
        processed.push(cycle.process(&seq, stored, progress)?);
    }
    Ok(processed)
}

/// Holds the store's ticket lock until dropped: two `events process` never run one ticket
/// twice, and a ticket changes by one writer at a time. `wait`: wait for it; otherwise a lock
/// held elsewhere is BUSY.
pub fn lock(setup: &Setup, wait: bool) -> Result<File, CommandError> {
    let path = setup.store_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            CommandError::internal(
                ErrorCode::InternalError,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
    if wait {
        return file.lock().map(|()| file).map_err(|e| {
            CommandError::internal(
                ErrorCode::InternalError,
                format!("cannot lock {}: {e}", path.display()),
            )
        });
    }
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CommandError::from(ErrorInfo::new(
            ErrorCode::Busy,
            format!(
                "another `admission events process` is running on the store {}",
                setup.store_dir.display()
            ),
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(CommandError::internal(
            ErrorCode::InternalError,
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

/// Completes the cycle of a ticket whose paused run an `execute` has just resumed: a report
/// of a workorder made against a context snapshot, whose ticket is still RUNNING.
pub fn after_execute(
    setup: &Setup,
    invocation: &Invocation,
    report: &Report,
) -> Result<Option<(String, CycleEnd)>, ErrorInfo> {
    let (Some(ticket_id), Some(workorder)) = (&report.ticket_id, report.workorder) else {
        return Ok(None);
    };
    let ledger = Ledger::new(&setup.store);
    let workorder: Workorder = ledger.read(&workorder)?;
    if workorder.context_snapshot_id.is_none() {
        return Ok(None);
    }
    let _lock = lock(setup, true).map_err(|e| e.error)?;
    let Some(ticket) = ledger.ticket(ticket_id)? else {
        return Ok(None);
    };
    if ticket.value.status != TicketStatus::Running {
        return Ok(None);
    }
    let cycle = Cycle {
        setup,
        ledger: &ledger,
        invocation,
    };
    let event_id = ticket.value.event_id.clone();
    cycle
        .end_run(&ticket, event_id.as_deref(), report)
        .map(|end| Some((ticket_id.clone(), end)))
}

/// One event's processing.
struct Cycle<'a> {
    setup: &'a Setup,
    ledger: &'a Ledger<'a>,
    invocation: &'a Invocation,
}

impl Cycle<'_> {
    /// Decides the event's outcome, acts on it, and stores the processed event.
    fn process(
        &self,
        seq: &str,
        pending: Stored<Event>,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Result<Processed, CommandError> {
        let event = &pending.value;
        let mut done = Processed {
            event_id: event.event_id.clone(),
            ticket_id: event.ticket_id.clone(),
            outcome: EventOutcome::MissingTicket,
            reason: String::new(),
            event: pending.digest,
            run_uid: None,
            run_record: None,
            run_outcome: None,
            ticket_status: None,
            ticket: None,
            pause_state: None,
            actions: Vec::new(),
            blockers: Vec::new(),
        };
        match self.ledger.ticket(&event.ticket_id)? {
            None => {
                done.reason = format!(
                    "no ticket {} in the store {}",
                    event.ticket_id,
                    self.store_text()
                );
            }
            // This very event's processing was cut short (the process died): take it up.
            Some(ticket)
                if ticket.value.status == TicketStatus::Running
                    && ticket.value.event_id.as_deref() == Some(event.event_id.as_str()) =>
            {
                done.outcome = EventOutcome::Scheduled;
                self.resume(ticket, &event.event_id, &mut done, progress)?;
            }
            Some(ticket) if !ticket.value.status.executable() => {
                done.outcome = EventOutcome::NonExecutableStatus;
                done.reason = format!(
                    "ticket {} is {}: only a TODO, READY or BLOCKED ticket runs",
                    event.ticket_id, ticket.value.status
                );
                let end = self.pause_unchanged(&ticket, &event.event_id, &done.reason)?;
                done.set_end(&end);
            }
            Some(ticket) => {
                let blockers = self.unresolved(&ticket.value)?;
                if blockers.is_empty() {
                    done.outcome = EventOutcome::Scheduled;
                    self.schedule(ticket, &event.event_id, &mut done, progress)?;
                } else {
                    done.outcome = EventOutcome::Blocked;
                    done.reason = format!(
                        "ticket {} waits on {}",
                        event.ticket_id,
                        blockers
                            .iter()
                            .map(blocker_text)
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                    let end = self.block(&ticket, &event.event_id, &blockers, &done.reason)?;
                    done.set_end(&end);
                    done.blockers = blockers;
                }
            }
        }
        let processed = Event {
            processed: true,
            previous: Some(pending.digest),
            resolution: Some(EventResolution {
                outcome: done.outcome,
                reason: done.reason.clone(),
                run_uid: done.run_uid.clone(),
                run_record: done.run_record,
                ticket: done.ticket,
                pause_state: done.pause_state,
                blockers: done.blockers.clone(),
                processed_at: pipeline::now(),
            }),
            ..event.clone()
        };
        done.event = self.ledger.put_processed(seq, &processed)?;
        Ok(done)
    }

    /// The blockers of `ticket` not resolved: a ticket not DONE (or not there), or a reason.
    fn unresolved(&self, ticket: &Ticket) -> Result<Vec<Blocker>, ErrorInfo> {
        let mut open = Vec::new();
        for blocker in &ticket.blocked_on {
            let resolved = match &blocker.ticket_id {
                Some(id) => self
                    .ledger
                    .ticket(id)?
                    .is_some_and(|t| t.value.status == TicketStatus::Done),
                None => false,
            };
            if !resolved {
                open.push(blocker.clone());
            }
        }
        Ok(open)
    }

    /// SCHEDULED: RUNNING, snapshot, workorder, run, and the ticket's end of the cycle.
    fn schedule(
        &self,
        ticket: Stored<Ticket>,
        event_id: &str,
        done: &mut Processed,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Result<(), CommandError> {
        let running = Ticket {
            status: TicketStatus::Running,
            previous: Some(ticket.digest),
            event_id: Some(event_id.to_owned()),
            resolution: None,
            updated_at: Some(pipeline::now()),
            ..ticket.value.clone()
        };
        let running = Stored {
            digest: self
                .ledger
                .put_ticket(&running, "admission events process")?,
            value: running,
        };
        failpoint::hit("ticket:running");
        self.run_cycle(running, event_id, done, progress)
    }

    /// The processing of `event_id` died with the ticket RUNNING: a run of its workorder on
    /// record ends the cycle as it ended; with none, the cycle runs again from a fresh
    /// snapshot (plans are made against the current state, so nothing is applied twice).
    fn resume(
        &self,
        running: Stored<Ticket>,
        event_id: &str,
        done: &mut Processed,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Result<(), CommandError> {
        let work_order_id = format!("{}@{event_id}", running.value.ticket_id);
        let Some(report) = self.recorded_run(&running.value.ticket_id, &work_order_id)? else {
            return self.run_cycle(running, event_id, done, progress);
        };
        self.ended(&running, event_id, &report, done)?;
        done.reason = format!("taken up after an interruption: {}", done.reason);
        Ok(())
    }

    /// The newest run on record of the workorder `work_order_id`, as a report.
    fn recorded_run(
        &self,
        ticket_id: &str,
        work_order_id: &str,
    ) -> Result<Option<Report>, ErrorInfo> {
        let store = self.ledger.store();
        for uid in store.ref_keys(pipeline::RUNS)?.into_iter().rev() {
            let Some(entry) = store.get_ref::<pipeline::RunRef>(pipeline::RUNS, &uid)? else {
                continue;
            };
            if entry.ticket_id.as_deref() != Some(ticket_id) {
                continue;
            }
            let record: RunRecord = self.ledger.read(&entry.run_record)?;
            if record.work_order_id != work_order_id {
                continue;
            }
            let evidence = match record.output_id {
                Some(output) => self.ledger.read::<OutputBundle>(&output)?.evidence,
                None => None,
            };
            return Ok(Some(Report {
                uid: record.run_uid,
                outcome: Some(record.outcome),
                work_order_id: record.work_order_id,
                mechanism: record.mechanism,
                operation: record.operation,
                ticket_id: record.ticket_id,
                workorder: record.workorder,
                plan_hash: record.plan_hash,
                admission_hash: record.admission_hash,
                force_ack_hash: record.force_ack_hash,
                result_hash: record.result_hash,
                witness_hash: record.witness_hash,
                evidence,
                error: record.error,
                next_actions: match record.next_actions {
                    NextActionsRef::Inline(actions) => actions,
                    NextActionsRef::Digest(_) => Vec::new(),
                },
                output_id: record.output_id,
                run_record: Some(entry.run_record),
                ..Report::default()
            }));
        }
        Ok(None)
    }

    /// From a RUNNING ticket: snapshot, workorder, run, and the ticket's end of the cycle.
    fn run_cycle(
        &self,
        running: Stored<Ticket>,
        event_id: &str,
        done: &mut Processed,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Result<(), CommandError> {
        let (snapshot, runner) = self.snapshot(&running)?;
        let work = &running.value.work;
        let workorder = json!({
            "kind": Workorder::KIND,
            "work_order_id": format!("{}@{event_id}", running.value.ticket_id),
            "mechanism": work.mechanism,
            "operation": work.operation,
            "params": snapshot.1.params,
            "inputs": work.inputs,
            "budget": work.budget,
            "ticket_id": running.value.ticket_id,
            "context_snapshot_id": snapshot.0,
            "budget_ms": work.budget_ms.unwrap_or(work.budget.wall_ms),
            "branch": work.branch,
            "runner": runner,
        });
        let workorder = strip_nulls(workorder);
        let origin = format!("ticket {} (event {event_id})", running.value.ticket_id);
        let run = pipeline::run_workorder(
            self.setup,
            WorkorderSource::Made {
                value: &workorder,
                origin: &origin,
            },
            &Mode::Run { force_ack: None },
            self.invocation,
            progress,
        );
        let report = match run {
            Ok(report) => report,
            Err(error) => {
                // The workorder never became a run: the ticket fails with the reason kept.
                let reason = format!("the workorder could not run: {}", error.error.message);
                let end = self.fail_without_run(&running, event_id, error.error, &reason)?;
                done.reason = reason;
                done.set_end(&end);
                return Ok(());
            }
        };
        failpoint::hit("ticket:ran");
        self.ended(&running, event_id, &report, done)
    }

    /// The ticket's end of the run `report`, told in `done`.
    fn ended(
        &self,
        running: &Stored<Ticket>,
        event_id: &str,
        report: &Report,
        done: &mut Processed,
    ) -> Result<(), CommandError> {
        done.run_uid = Some(report.uid.clone());
        done.run_record = report.run_record;
        done.run_outcome = report.outcome;
        let end = self.end_run(running, Some(event_id), report)?;
        done.reason = format!(
            "ran as {}: {} ({})",
            report.uid,
            outcome_text(report.outcome),
            match &report.error {
                Some(e) => format!("{}: {}", e.code, e.message),
                None => format!("ticket {}", end.status),
            }
        );
        done.set_end(&end);
        Ok(())
    }

    /// Plans the ticket's work to fix the state it will run against; a plan refused is kept
    /// as the snapshot's error (the run that follows fails the same way, on the record).
    fn snapshot(
        &self,
        running: &Stored<Ticket>,
    ) -> Result<((Digest, ContextSnapshot), Value), CommandError> {
        let work = &running.value.work;
        let mut params = work.params.clone();
        let session = pipeline::start_session(self.setup, &work.mechanism);
        let runner = self
            .setup
            .registry
            .entry(&work.mechanism)
            .map(|e| json!({"id": e.id, "version": e.version}))
            .unwrap_or(Value::Null);
        if let (Some(branch), Ok(session), Some(object)) =
            (&work.branch, &session, params.as_object_mut())
        {
            let takes_branch = session
                .described
                .operations
                .iter()
                .find(|op| op.name == work.operation)
                .and_then(|op| op.params_schema.get("properties"))
                .is_some_and(|p| p.get("branch").is_some());
            if takes_branch && !object.contains_key("branch") {
                object.insert("branch".to_owned(), Value::from(branch.clone()));
            }
        }
        let inputs: std::collections::BTreeMap<String, Digest> = work
            .inputs
            .iter()
            .filter_map(|(name, d)| Some((name.clone(), d.parse().ok()?)))
            .collect();
        let planned = session.and_then(|session| {
            let answer = session
                .plan(&PlanParams {
                    operation: work.operation.clone(),
                    params: params.clone(),
                    inputs: inputs.clone(),
                })
                .map_err(|e| {
                    ErrorInfo::new(
                        e.code().unwrap_or(ErrorCode::ExecutionFailed),
                        e.to_string(),
                    )
                })?;
            serde_json::from_value::<PlanResult>(answer)
                .map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, e.to_string()))
        });
        let (plan_hash, state, error) = match planned {
            Ok(plan) => (
                Some(plan.plan_hash),
                Some(plan.plan.get("state").cloned().unwrap_or_else(|| json!({}))),
                None,
            ),
            Err(error) => (None, None, Some(error)),
        };
        let snapshot = ContextSnapshot {
            snapshot_id: format!("snap-{}", Uid::generate().as_str()),
            ticket_id: running.value.ticket_id.clone(),
            ticket: running.digest,
            mechanism: work.mechanism.clone(),
            operation: work.operation.clone(),
            params,
            inputs,
            plan_hash,
            state: state.filter(Value::is_object),
            error,
            taken_at: pipeline::now(),
        };
        let derived: Vec<Digest> = std::iter::once(running.digest)
            .chain(snapshot.inputs.values().copied())
            .collect();
        let digest = self
            .ledger
            .write(&snapshot, "admission context snapshot", &derived)?;
        Ok(((digest, snapshot), runner))
    }

    /// The ticket's end of a run: DONE with the commit, FAILED with the reason, or still
    /// RUNNING while a force-ack is missing or refused; then its pause state.
    fn end_run(
        &self,
        running: &Stored<Ticket>,
        event_id: Option<&str>,
        report: &Report,
    ) -> Result<CycleEnd, ErrorInfo> {
        let waiting = matches!(report.outcome, Some(RunOutcome::AwaitingForceAck))
            || report.force_ack_refused();
        let (ticket, status) = if waiting {
            (running.digest, TicketStatus::Running)
        } else {
            let succeeded = report.outcome == Some(RunOutcome::Succeeded);
            let status = if succeeded {
                TicketStatus::Done
            } else {
                TicketStatus::Failed
            };
            let commit = report
                .evidence
                .as_ref()
                .and_then(|e| e.get("commit"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let ended = Ticket {
                status,
                previous: Some(running.digest),
                event_id: event_id.map(str::to_owned),
                resolution: Some(TicketResolution {
                    run_record: report.run_record,
                    commit: if succeeded { commit } else { None },
                    error: if succeeded {
                        None
                    } else {
                        report.error.clone()
                    },
                }),
                updated_at: Some(pipeline::now()),
                ..running.value.clone()
            };
            (
                self.ledger.put_ticket(&ended, "admission ticket cycle")?,
                status,
            )
        };
        let ticket_id = &running.value.ticket_id;
        let rehydrate = self.action(
            format!("rehydrate {ticket_id}"),
            "rebuild the ticket's whole cycle from the store",
        );
        let actions = match status {
            // The approve and execute commands of the paused run.
            TicketStatus::Running => report.next_actions.clone(),
            TicketStatus::Done => {
                let mut actions = report.next_actions.clone();
                actions.truncate(2);
                actions.push(rehydrate);
                actions
            }
            // A ticket is run again by making it ready, not by running its workorder.
            _ => vec![
                self.action(
                    format!("show {}", report.uid),
                    "read what happened, step by step",
                ),
                self.action(
                    format!("ticket ready {ticket_id}"),
                    "run the ticket again once the cause is fixed",
                ),
                rehydrate,
            ],
        };
        let mut actions = actions;
        renumber(&mut actions);
        let reason = match (status, &report.error) {
            (TicketStatus::Done, _) => format!("run {} succeeded", report.uid),
            (TicketStatus::Running, _) => format!(
                "run {} waits for an operator's force-ack for plan {}",
                report.uid,
                report
                    .plan_hash
                    .map_or_else(|| "?".to_owned(), |p| p.to_string())
            ),
            (_, Some(e)) => format!(
                "run {} ended {}: {}",
                report.uid,
                outcome_text(report.outcome),
                e.message
            ),
            (_, None) => format!("run {} ended {}", report.uid, outcome_text(report.outcome)),
        };
        let pause = PauseState {
            ticket_id: ticket_id.clone(),
            ticket,
            status,
            reason,
            event_id: event_id.map(str::to_owned),
            run_uid: Some(report.uid.clone()),
            run_record: report.run_record,
            actions: actions.clone(),
            paused_at: pipeline::now(),
        };
        let pause_state = self.ledger.put_pause(&pause)?;
        Ok(CycleEnd {
            ticket,
            status,
            pause_state,
            actions,
        })
    }

    /// FAILED before any run: the reason is kept on the ticket and in the pause state.
    fn fail_without_run(
        &self,
        running: &Stored<Ticket>,
        event_id: &str,
        error: ErrorInfo,
        reason: &str,
    ) -> Result<CycleEnd, ErrorInfo> {
        let failed = Ticket {
            status: TicketStatus::Failed,
            previous: Some(running.digest),
            event_id: Some(event_id.to_owned()),
            resolution: Some(TicketResolution {
                run_record: None,
                commit: None,
                error: Some(error),
            }),
            updated_at: Some(pipeline::now()),
            ..running.value.clone()
        };
        let digest = self.ledger.put_ticket(&failed, "admission ticket cycle")?;
        let id = &running.value.ticket_id;
        let actions = vec![
            self.action(
                format!("ticket show {id}"),
                "read the ticket and why it failed",
            ),
            self.action(
                format!("ticket ready {id}"),
                "run it again once the cause is fixed",
            ),
        ];
        self.pause(
            id,
            digest,
            TicketStatus::Failed,
            reason,
            event_id,
            None,
            actions,
        )
    }

    /// BLOCKED: the ticket records it (once) and pauses on its blockers.
    fn block(
        &self,
        ticket: &Stored<Ticket>,
        event_id: &str,
        blockers: &[Blocker],
        reason: &str,
    ) -> Result<CycleEnd, ErrorInfo> {
        let digest = if ticket.value.status == TicketStatus::Blocked {
            ticket.digest
        } else {
            let blocked = Ticket {
                status: TicketStatus::Blocked,
                previous: Some(ticket.digest),
                event_id: Some(event_id.to_owned()),
                resolution: None,
                updated_at: Some(pipeline::now()),
                ..ticket.value.clone()
            };
            self.ledger
                .put_ticket(&blocked, "admission events process")?
        };
        let id = &ticket.value.ticket_id;
        let mut actions = Vec::new();
        if let Some(first) = blockers.iter().find_map(|b| b.ticket_id.as_ref()) {
            actions.push(self.action(
                format!("ticket show {first}"),
                "see where the blocking ticket stands",
            ));
        }
        actions.push(self.action(
            format!("ticket ready {id}"),
            "make it ready again once its blockers are DONE",
        ));
        actions.push(self.action(
            format!("ticket show {id}"),
            "read the ticket and its blockers",
        ));
        self.pause(
            id,
            digest,
            TicketStatus::Blocked,
            reason,
            event_id,
            None,
            actions,
        )
    }

    /// NON_EXECUTABLE_STATUS: the ticket is left as it is; the pause state keeps its last run.
    fn pause_unchanged(
        &self,
        ticket: &Stored<Ticket>,
        event_id: &str,
        reason: &str,
    ) -> Result<CycleEnd, ErrorInfo> {
        let id = &ticket.value.ticket_id;
        let previous = self.ledger.pause(id)?;
        let run = previous
            .as_ref()
            .and_then(|p| p.value.run_uid.clone().zip(p.value.run_record));
        let actions = match (&previous, ticket.value.status) {
            // A paused run's commands (approve, execute) still stand.
            (Some(p), TicketStatus::Running) => p.value.actions.clone(),
            (_, TicketStatus::Done) => vec![
                self.action(
                    format!("rehydrate {id}"),
                    "rebuild the ticket's finished cycle",
                ),
                self.action(format!("ticket show {id}"), "read the ticket"),
            ],
            _ => vec![
                self.action(
                    format!("ticket ready {id}"),
                    "make the ticket ready, then process",
                ),
                self.action(format!("ticket show {id}"), "read the ticket"),
            ],
        };
        self.pause(
            id,
            ticket.digest,
            ticket.value.status,
            reason,
            event_id,
            run,
            actions,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn pause(
        &self,
        ticket_id: &str,
        ticket: Digest,
        status: TicketStatus,
        reason: &str,
        event_id: &str,
        run: Option<(String, Digest)>,
        mut actions: Vec<NextAction>,
    ) -> Result<CycleEnd, ErrorInfo> {
        actions.truncate(3);
        renumber(&mut actions);
        let (run_uid, run_record) = run.unzip();
        let pause = PauseState {
            ticket_id: ticket_id.to_owned(),
            ticket,
            status,
            reason: reason.to_owned(),
            event_id: Some(event_id.to_owned()),
            run_uid,
            run_record,
            actions: actions.clone(),
            paused_at: pipeline::now(),
        };
        let pause_state = self.ledger.put_pause(&pause)?;
        Ok(CycleEnd {
            ticket,
            status,
            pause_state,
            actions,
        })
    }

    /// An `admission` command with the global flags given, to paste.
    fn action(&self, rest: String, why: &str) -> NextAction {
        let flags = &self.invocation.global_flags;
        let command = if flags.is_empty() {
            format!("admission {rest}")
        } else {
            format!("admission {flags} {rest}")
        };
        NextAction {
            priority: 1,
            command,
            why: why.to_owned(),
        }
    }

    fn store_text(&self) -> String {
        std::path::absolute(&self.setup.store_dir)
            .unwrap_or_else(|_| self.setup.store_dir.clone())
            .display()
            .to_string()
    }
}

impl Processed {
    fn set_end(&mut self, end: &CycleEnd) {
        self.ticket = Some(end.ticket);
        self.ticket_status = Some(end.status);
        self.pause_state = Some(end.pause_state);
        self.actions = end.actions.clone();
    }
}

/// Priorities 1, 2, 3 in order.
fn renumber(actions: &mut [NextAction]) {
    for (n, action) in actions.iter_mut().enumerate() {
        action.priority = u8::try_from(n + 1).unwrap_or(3);
    }
}

/// A run's outcome as spelled; `error` when it never had one.
fn outcome_text(outcome: Option<RunOutcome>) -> String {
    outcome.map_or_else(|| "error".to_owned(), |o| crate::text::spelled(&o))
}

/// A blocker in words: the ticket and/or the reason.
pub fn blocker_text(blocker: &Blocker) -> String {
    match (&blocker.ticket_id, &blocker.reason) {
        (Some(id), Some(reason)) => format!("ticket {id} ({reason})"),
        (Some(id), None) => format!("ticket {id}"),
        (None, Some(reason)) => reason.clone(),
        (None, None) => "an unnamed blocker".to_owned(),
    }
}

/// Drops the null members a `json!` of optional fields leaves.
fn strip_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    value
}
