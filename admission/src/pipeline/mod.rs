//! The admission pipeline: workorder -> plan -> gates -> (pause for a force-ack) -> execute
//! -> verify -> run record, every step journaled and every outcome recorded.
//!
//! Nothing here prints: each entry point returns a [`Report`] the commands render. Whatever
//! happens after the workorder is read (denial, pause, stale plan, failure) ends in a run
//! record and next actions; only input that never became a run is a plain error.
//!
//! Here, `run_workorder` and `execute_plan` read their input and hand the run on: `gate`
//! plans and gates, `execute` executes an admitted plan (the one way, for both), `records`
//! ends every run with its run record, `next_actions` says what to do after it. The checks of
//! what an execute returned are the crate's `result_checks`, shared with `verify`.

use std::path::{Path, PathBuf};

use protocol::artifact::kinds::{
    ContextSnapshot, ErrorInfo, GateDecision, GateRecord, NextAction, Plan, RunOutcome, Workorder,
};
use protocol::artifact::Artifact;
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::store::{Provenance, Store};
use protocol::verbs::ProgressParams;
use protocol::{Digest, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::exit::{self, CommandError};
use crate::journal::{ExecHandle, Journal, Uid};
use crate::registry::{LaunchPaths, Registry};
use crate::session::{Session, SessionError};
use crate::workorder::{self, Loaded, WorkorderError};

mod approvals;
mod execute;
mod gate;
mod next_actions;
mod records;

pub use approvals::record_approval;
use records::Ending;
pub use records::{RunRef, RUNS};

/// The store reference namespace recording each gated plan (read by `approve`, `execute`).
pub const ADMISSIONS: &str = "admissions";

/// The store reference namespace recording the latest approval of each plan (written by
/// `approve`, read by `execute`).
pub const APPROVALS: &str = "approvals";

/// What every command of the pipeline works with.
pub struct Setup {
    /// The store directory.
    pub store_dir: PathBuf,
    /// The store.
    pub store: Store,
    /// The journal beside it.
    pub journal: Journal,
    /// The workspace: the root the mechanisms act in.
    pub workspace: PathBuf,
    /// The registry in force.
    pub registry: Registry,
    /// The trusted force-ack signers file, passed on to the mechanism too.
    pub signers_path: Option<PathBuf>,
    /// The same, parsed.
    pub signers: Option<AllowedSigners>,
    /// How far ahead a force-ack may expire.
    pub max_ttl: time::Duration,
    /// Fired when whoever asked for the run withdraws it (an MCP client's cancellation): an
    /// execute not yet started does not start, one under way is cancelled at the mechanism.
    pub cancel: CancellationToken,
}

/// What `admission plan` recorded for a gated plan, under `admissions/<plan hex>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmissionRecord {
    /// The AdmissionWitness.
    pub admission: Digest,
    /// Its decision.
    pub admitted: bool,
    /// Whether a force-ack is required.
    pub force_ack_required: bool,
    /// The mechanism to execute it with.
    pub mechanism: String,
    /// The workorder it was planned for.
    pub workorder: Digest,
    /// The run that planned it; an `execute` resuming it is its child.
    pub run_uid: String,
    /// The execute deadline the gates set, in milliseconds.
    pub deadline_ms: u64,
}

/// What `admission approve` recorded for a plan, under `approvals/<plan hex>`: the latest
/// approval, which `execute` uses when no force-ack is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The signed force-ack, stored as an artifact.
    pub force_ack: Digest,
    /// Its approver.
    pub approver: String,
    /// When it expires, as the force-ack spells it.
    pub expires_at: String,
    /// The AdmissionWitness it approves.
    pub admission: Digest,
}

/// How far `run_workorder` goes.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Plan and gate only (`admission plan`).
    Plan,
    /// Plan, gate, then execute if allowed (`admission run`).
    Run {
        /// The force-ack for a destructive plan, as parsed.
        force_ack: Option<Value>,
    },
}

/// Everything a command reports about one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The journal uid of this execution.
    pub uid: String,
    /// The execution it resumed, if any.
    pub parent: Option<String>,
    /// The run's outcome; `None` only when it never got past reading its input.
    pub outcome: Option<RunOutcome>,
    /// The workorder's id.
    pub work_order_id: String,
    /// The mechanism.
    pub mechanism: String,
    /// The operation.
    pub operation: String,
    /// The ticket the workorder belongs to, if any.
    pub ticket_id: Option<String>,
    /// The stored workorder, once read.
    pub workorder: Option<Digest>,
    /// The plan hash, once planned.
    pub plan_hash: Option<Digest>,
    /// The plan, once planned.
    pub plan: Option<Plan>,
    /// The preview the mechanism gave.
    pub preview: Option<String>,
    /// Every gate's decision.
    pub gates: Vec<GateRecord>,
    /// The AdmissionWitness.
    pub admission_hash: Option<Digest>,
    /// The force-ack used.
    pub force_ack_hash: Option<Digest>,
    /// Whether that force-ack was the recorded approval (`approvals/<plan hex>`), not given.
    pub approval_recorded: bool,
    /// The ResultArtifact.
    pub result_hash: Option<Digest>,
    /// The ResultWitness.
    pub witness_hash: Option<Digest>,
    /// The evidence of the result.
    pub evidence: Option<Value>,
    /// What went wrong.
    pub error: Option<ErrorInfo>,
    /// What to do next.
    pub next_actions: Vec<NextAction>,
    /// The OutputBundle of what the run produced.
    pub output_id: Option<Digest>,
    /// The run record.
    pub run_record: Option<Digest>,
    /// The process exit code this outcome calls for.
    pub exit: u8,
}

impl Report {
    /// Whether the run was refused for its force-ack (missing, invalid, expired or replayed)
    /// rather than by a gate: a fresh approval, not a changed workorder, lets it through.
    pub fn force_ack_refused(&self) -> bool {
        self.error.as_ref().is_some_and(|e| {
            matches!(
                e.code,
                ErrorCode::ForceAckRequired
                    | ErrorCode::ForceAckInvalid
                    | ErrorCode::ForceAckExpired
                    | ErrorCode::ForceAckReplayed
            )
        })
    }
}

/// Options that shape the next-action commands (so they can be pasted as they are).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Global flags to repeat, e.g. `--store DIR --workspace DIR`.
    pub global_flags: String,
    /// The workorder path as given.
    pub workorder: Option<String>,
    /// Whether trusted force-ack signers were given (flag or environment).
    pub signers_given: bool,
}

/// Where a workorder comes from.
#[derive(Debug, Clone, Copy)]
pub enum WorkorderSource<'a> {
    /// A file, as `admission plan|run FILE` names it; its path inputs are relative to it.
    File(&'a Path),
    /// A workorder made by the admission itself (a ticket's), every input a digest.
    Made {
        /// The workorder.
        value: &'a Value,
        /// What made it, for the journal.
        origin: &'a str,
    },
}

/// `plan` or `run` of a workorder.
pub fn run_workorder(
    setup: &Setup,
    source: WorkorderSource<'_>,
    mode: &Mode,
    invocation: &Invocation,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Result<Report, CommandError> {
    let start = std::time::Instant::now();
    let command = match mode {
        Mode::Plan => "plan",
        Mode::Run { .. } => "run",
    };
    let (journaled, named) = match source {
        WorkorderSource::File(path) => {
            (path.display().to_string(), workorder::mechanism_named(path))
        }
        WorkorderSource::Made { value, origin } => (
            origin.to_owned(),
            value
                .get("mechanism")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
    };
    let mut exec = setup
        .journal
        .start(
            command,
            config(setup),
            json!({"workorder": journaled}),
            None,
        )
        .map_err(journal_error)?;
    // The mechanism the workorder names starts (spawn, describe) on another thread while the
    // workorder and its inputs are stored and journaled: its start-up is on the way of every
    // run. Should the workorder turn out to name another (or none), that one is stopped.
    std::thread::scope(|scope| {
        let starting = named.map(|name| {
            let handle = scope.spawn({
                let name = name.clone();
                move || start_session(setup, &name)
            });
            (name, handle)
        });
        let loaded = match source {
            WorkorderSource::File(path) => workorder::load(path, &setup.store),
            WorkorderSource::Made { value, .. } => {
                workorder::load_value(value.clone(), Path::new("."), &setup.store)
            }
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                // Input that never became a run: no run record, but the journal says why.
                let _ = exec.fail(json!({"error": {"code": e.code(), "message": e.to_string()}}));
                return Err(match e {
                    WorkorderError::Store(_) => CommandError::new(exit::INTERNAL, e),
                    _ => CommandError::new(exit::BAD_INPUT, e),
                });
            }
        };
        let mut report = Report {
            uid: exec.uid().to_string(),
            work_order_id: loaded.workorder.work_order_id.clone(),
            mechanism: loaded.workorder.mechanism.clone(),
            operation: loaded.workorder.operation.clone(),
            ticket_id: loaded.workorder.ticket_id.clone(),
            workorder: Some(loaded.digest),
            ..Report::default()
        };
        step(
            &mut exec,
            "workorder",
            json!({"workorder": loaded.digest, "inputs": loaded.inputs}),
        )?;

        let flow = Flow::new(setup, invocation, loaded.workorder.budget_ms, start);
        let session = match starting {
            Some((name, handle)) if name == loaded.workorder.mechanism => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            _ => start_session(setup, &loaded.workorder.mechanism),
        };
        let ending = flow.plan_and_run(session, &loaded, mode, &mut report, &mut exec, progress);
        flow.finish(exec, report, ending)
    })
}

/// `execute PLAN_HASH`: executes a plan gated earlier, as a child of the run that gated it.
pub fn execute_plan(
    setup: &Setup,
    plan_hash: &Digest,
    force_ack: Option<Value>,
    invocation: &Invocation,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Result<Report, CommandError> {
    let start = std::time::Instant::now();
    let record: AdmissionRecord = setup
        .store
        .get_ref(ADMISSIONS, &plan_hash.hex())
        .map_err(|e| CommandError::new(exit::INTERNAL, e))?
        .ok_or_else(|| {
            CommandError::from(ErrorInfo::new(
                ErrorCode::AdmissionRequired,
                format!(
                    "plan {plan_hash} was never gated in the store {}; run `admission plan \
                     WORKORDER` or `admission run WORKORDER` first, or name the store it was \
                     gated in with --store DIR",
                    std::path::absolute(&setup.store_dir)
                        .unwrap_or_else(|_| setup.store_dir.clone())
                        .display()
                ),
            ))
        })?;
    let parent: Option<Uid> = record.run_uid.parse().ok();
    // Next actions that plan again name the workorder the parent run was given.
    let mut invocation = invocation.clone();
    if invocation.workorder.is_none() {
        invocation.workorder = parent
            .as_ref()
            .and_then(|uid| setup.journal.history(uid).ok())
            .and_then(|history| history.into_iter().next())
            .and_then(|(_, doc)| doc.input.get("workorder")?.as_str().map(str::to_owned));
    }
    let mut exec = setup
        .journal
        .start(
            "execute",
            config(setup),
            json!({"plan_hash": plan_hash, "admission": record.admission}),
            parent,
        )
        .map_err(journal_error)?;
    // The workorder the plan was gated with failing its digest, or not being a workorder, is a
    // verification failure like any other (exit 5), not an internal error.
    let workorder: Workorder = setup
        .store
        .get_artifact(&record.workorder)
        .map_err(ErrorInfo::from)
        .and_then(|a| {
            a.view()
                .map_err(|e| ErrorInfo::new(ErrorCode::IntegrityMismatch, e.to_string()))
        })
        .map_err(|e| {
            CommandError::from(e.context(format!(
                "the workorder {} plan {plan_hash} was gated with",
                record.workorder
            )))
        })?;
    // The first step makes the execution running, which every ending (pausing too) needs.
    step(
        &mut exec,
        "resumed",
        json!({"plan_hash": plan_hash, "admission": record.admission, "workorder": record.workorder}),
    )?;
    let mut report = Report {
        uid: exec.uid().to_string(),
        parent: Some(record.run_uid.clone()),
        work_order_id: workorder.work_order_id,
        operation: workorder.operation,
        ticket_id: workorder.ticket_id,
        workorder: Some(record.workorder),
        mechanism: record.mechanism.clone(),
        plan_hash: Some(*plan_hash),
        admission_hash: Some(record.admission),
        ..Report::default()
    };
    let flow = Flow::new(setup, &invocation, workorder.budget_ms, start);
    let ending = flow.resume(
        plan_hash,
        &record,
        force_ack,
        &mut report,
        &mut exec,
        progress,
    );
    flow.finish(exec, report, ending)
}

/// A gated plan.
#[derive(Clone)]
struct Admitted {
    plan_hash: Digest,
    admission_hash: Digest,
    admitted: bool,
    force_ack_required: bool,
    deadline_ms: u64,
}

/// One run under way: what it works with, how its next actions are phrased, when it began.
struct Flow<'a> {
    setup: &'a Setup,
    invocation: &'a Invocation,
    started_at: String,
    /// The workorder's `budget_ms` and the instant it runs out, counted from the start.
    budget: Option<(u64, std::time::Instant)>,
}

impl<'a> Flow<'a> {
    fn new(
        setup: &'a Setup,
        invocation: &'a Invocation,
        budget_ms: Option<u64>,
        start: std::time::Instant,
    ) -> Self {
        Self {
            setup,
            invocation,
            started_at: now(),
            budget: budget_ms.map(|ms| (ms, start + std::time::Duration::from_millis(ms))),
        }
    }
}

impl Flow<'_> {
    /// `run_workorder` past reading the workorder: plans and gates with the mechanism, then
    /// pauses, or executes as `mode` says.
    fn plan_and_run(
        &self,
        session: Result<Session, ErrorInfo>,
        loaded: &Loaded,
        mode: &Mode,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Ending {
        let session = match session {
            Ok(session) => session,
            Err(e) => return Ending::error(e),
        };
        let admitted = match self.plan_and_gate(&session, loaded, report, exec) {
            Ok(admitted) => admitted,
            Err(e) => return Ending::failed(e),
        };
        if let Err(e) = self.matches_snapshot(loaded, &admitted.plan_hash) {
            return Ending::failed(e);
        }
        if !admitted.admitted {
            let code = report
                .gates
                .iter()
                .find(|g| g.decision == GateDecision::Fail)
                .and_then(|g| g.code)
                .unwrap_or(ErrorCode::CapabilityDenied);
            return Ending::denied(ErrorInfo::new(code, "the gates denied the plan"));
        }
        let force_ack = match mode {
            Mode::Plan if admitted.force_ack_required => {
                return Ending::ok(RunOutcome::AwaitingForceAck)
            }
            Mode::Plan => return Ending::ok(RunOutcome::Admitted),
            Mode::Run { force_ack } => force_ack.as_ref(),
        };
        self.execute_admitted(|| Ok(session), &admitted, force_ack, report, exec, progress)
    }

    /// `execute_plan` past reading the admission record: the plan gated earlier, executed
    /// unless it was denied or still needs a force-ack. Without `force_ack`, a plan that needs
    /// one uses the approval recorded for it, if any.
    fn resume(
        &self,
        plan_hash: &Digest,
        record: &AdmissionRecord,
        force_ack: Option<Value>,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Ending {
        let needs_ack = match self.load_plan(plan_hash) {
            Ok(plan) => {
                let needs_ack = record.force_ack_required || plan.destructive;
                report.plan = Some(plan);
                needs_ack
            }
            Err(e) => return Ending::error(e),
        };
        if !record.admitted {
            return Ending::denied(ErrorInfo::new(
                ErrorCode::AdmissionRequired,
                format!(
                    "the gates denied plan {plan_hash} (admission {})",
                    record.admission
                ),
            ));
        }
        let admitted = Admitted {
            plan_hash: *plan_hash,
            admission_hash: record.admission,
            admitted: true,
            force_ack_required: record.force_ack_required,
            deadline_ms: record.deadline_ms,
        };
        let force_ack = match force_ack {
            Some(given) => Some(given),
            None if needs_ack => match self.recorded_approval(plan_hash, report, exec) {
                Ok(recorded) => recorded,
                Err(e) => return Ending::failed(e),
            },
            None => None,
        };
        let session = || start_session(self.setup, &record.mechanism);
        self.execute_admitted(
            session,
            &admitted,
            force_ack.as_ref(),
            report,
            exec,
            progress,
        )
    }

    /// A workorder made against a context snapshot runs only against that state: its plan
    /// must be the one the snapshot recorded, else the world moved since (STALE_PLAN).
    fn matches_snapshot(&self, loaded: &Loaded, plan_hash: &Digest) -> Result<(), ErrorInfo> {
        let Some(snapshot_id) = loaded.workorder.context_snapshot_id else {
            return Ok(());
        };
        let snapshot: ContextSnapshot = self
            .setup
            .store
            .get_artifact(&snapshot_id)
            .map_err(ErrorInfo::from)
            .and_then(|a| {
                a.view()
                    .map_err(|e| ErrorInfo::new(ErrorCode::IntegrityMismatch, e.to_string()))
            })
            .map_err(|e| e.context(format!("the context snapshot {snapshot_id}")))?;
        match snapshot.plan_hash {
            Some(expected) if expected == *plan_hash => Ok(()),
            Some(expected) => Err(ErrorInfo::new(
                ErrorCode::StalePlan,
                format!(
                    "the plan {plan_hash} is not the one the context snapshot {snapshot_id} \
                     recorded ({expected}): the state changed since the snapshot was taken"
                ),
            )),
            None => Err(ErrorInfo::new(
                ErrorCode::StalePlan,
                format!(
                    "the context snapshot {snapshot_id} recorded no plan (the mechanism could \
                     not plan then), but it can now: the state changed since"
                ),
            )),
        }
    }

    fn load_plan(&self, plan_hash: &Digest) -> Result<Plan, ErrorInfo> {
        self.setup
            .store
            .get_artifact(plan_hash)
            .map_err(|e| ErrorInfo::new(e.code(), format!("plan {plan_hash}: {e}")))?
            .view()
            .map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, format!("plan {plan_hash}: {e}")))
    }

    fn store_typed<T: protocol::artifact::Kind>(
        &self,
        typed: &T,
        producer: &str,
        derived: &[Digest],
    ) -> Result<Digest, ErrorInfo> {
        let artifact = Artifact::from_typed(typed).map_err(with_code(ErrorCode::InternalError))?;
        self.put(&artifact, producer, derived)
    }

    fn store_value(
        &self,
        value: &Value,
        producer: &str,
        derived: &[Digest],
    ) -> Result<Digest, ErrorInfo> {
        let artifact =
            Artifact::from_value(value.clone()).map_err(with_code(ErrorCode::ForceAckInvalid))?;
        self.put(&artifact, producer, derived)
    }

    fn put(
        &self,
        artifact: &Artifact,
        producer: &str,
        derived: &[Digest],
    ) -> Result<Digest, ErrorInfo> {
        let provenance = Provenance::new(producer).with_derived_from(derived.iter().copied());
        self.setup
            .store
            .put_artifact(artifact, &provenance)
            .map_err(ErrorInfo::from)
    }
}

/// Starts the registry's `mechanism` and describes it.
pub(crate) fn start_session(setup: &Setup, mechanism: &str) -> Result<Session, ErrorInfo> {
    let entry = setup
        .registry
        .entry(mechanism)
        .map_err(with_code(ErrorCode::InvalidParams))?;
    let paths = LaunchPaths {
        workspace: &setup.workspace,
        store: &setup.store_dir,
        allowed_signers: setup.signers_path.as_deref(),
    };
    Session::start(entry, &paths).map_err(|e| session_error(&e, ErrorCode::InternalError))
}

/// Makes an error of any kind an `ErrorInfo` of `code`, saying what it says.
fn with_code<E: std::fmt::Display>(code: ErrorCode) -> impl Fn(E) -> ErrorInfo {
    move |error| ErrorInfo::new(code, error.to_string())
}

fn config(setup: &Setup) -> Value {
    json!({
        "store": setup.store_dir.display().to_string(),
        "workspace": setup.workspace.display().to_string(),
        "registry": setup.registry.origin().to_string(),
        "policy_digest": setup.registry.policy_digest(),
        "allowed_signers": setup.signers_path.as_ref().map(|p| p.display().to_string()),
    })
}

/// A session's failure, with `otherwise` as its code when it has none of its own.
fn session_error(error: &SessionError, otherwise: ErrorCode) -> ErrorInfo {
    ErrorInfo::new(error.code().unwrap_or(otherwise), error.to_string())
}

fn step(exec: &mut ExecHandle, label: &str, detail: Value) -> Result<(), CommandError> {
    exec.step(label, detail).map_err(journal_error)
}

/// A journal step that failed to write is logged, not fatal: the run record still follows.
fn journal_step(exec: &mut ExecHandle, label: &str, detail: Value) -> Result<(), ()> {
    exec.step(label, detail).map_err(|e| {
        tracing::warn!(error = %e, label, "could not journal a step");
    })
}

fn journal_error(error: crate::journal::JournalError) -> CommandError {
    CommandError::internal(ErrorCode::InternalError, format!("journal: {error}"))
}

pub(crate) fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
