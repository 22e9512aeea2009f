//! The admission pipeline: workorder -> plan -> gates -> (pause for a force-ack) -> execute
//! -> verify -> run record, every step journaled and every outcome recorded.
//!
//! Nothing here prints: each entry point returns a [`Report`] the commands render. Whatever
//! happens after the workorder is read (denial, pause, stale plan, failure) ends in a run
//! record and next actions; only input that never became a run is a plain error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::artifact::kinds::{
    ErrorInfo, GateDecision, GateRecord, NextAction, NextActionsRef, Plan, ResultArtifact,
    ResultStatus, ResultWitness, RunOutcome, RunRecord, Workorder,
};
use protocol::artifact::Artifact;
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::force_ack::{self, Expected};
use protocol::store::{Provenance, Store};
use protocol::verbs::{ExecuteParams, ExecuteResult, PlanParams, ProgressParams};
use protocol::{Digest, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::exit::{self, CommandError};
use crate::gates::{self, GateInput};
use crate::journal::{ExecHandle, Journal, Uid};
use crate::registry::{LaunchPaths, Registry};
use crate::session::{Session, SessionError};
use crate::verify;
use crate::workorder::{self, Loaded, WorkorderError};

/// The store reference namespace recording each gated plan (read by `approve`, `execute`).
pub const ADMISSIONS: &str = "admissions";

/// How far ahead a force-ack may expire (the mechanism server's default `--force-ack-max-ttl`).
pub const DEFAULT_MAX_TTL: time::Duration = time::Duration::hours(1);

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
    /// The run record.
    pub run_record: Option<Digest>,
    /// The process exit code this outcome calls for.
    pub exit: u8,
}

/// Options that shape the next-action commands (so they can be pasted as they are).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Global flags to repeat, e.g. `--store DIR --workspace DIR`.
    pub global_flags: String,
    /// The workorder path as given.
    pub workorder: Option<String>,
}

/// `plan` or `run` of a workorder file.
pub fn run_workorder(
    setup: &Setup,
    path: &Path,
    mode: &Mode,
    invocation: &Invocation,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Result<Report, CommandError> {
    let command = match mode {
        Mode::Plan => "plan",
        Mode::Run { .. } => "run",
    };
    let mut exec = setup
        .journal
        .start(
            command,
            config(setup),
            json!({"workorder": path.display().to_string()}),
            None,
        )
        .map_err(journal_error)?;
    let loaded = match workorder::load(path, &setup.store) {
        Ok(loaded) => loaded,
        Err(e) => {
            // Input that never became a run: no run record, but the journal says why.
            let _ = exec.fail(json!({"error": {"code": e.code(), "message": e.to_string()}}));
            return Err(match e {
                WorkorderError::Store(_) => CommandError::internal(Some(e.code()), e.to_string()),
                _ => CommandError::bad_input(Some(e.code()), e.to_string()),
            });
        }
    };
    let mut report = Report {
        uid: exec.uid().to_string(),
        work_order_id: loaded.workorder.work_order_id.clone(),
        mechanism: loaded.workorder.mechanism.clone(),
        operation: loaded.workorder.operation.clone(),
        ..Report::default()
    };
    step(
        &mut exec,
        "workorder",
        json!({"workorder": loaded.digest, "inputs": loaded.inputs}),
    )?;

    let flow = Flow {
        setup,
        invocation,
        started_at: now(),
    };
    let ending = flow.plan_and_run(&loaded, mode, &mut report, &mut exec, progress);
    flow.finish(exec, report, ending)
}

/// `execute PLAN_HASH`: executes a plan gated earlier, as a child of the run that gated it.
pub fn execute_plan(
    setup: &Setup,
    plan_hash: &Digest,
    force_ack: Option<Value>,
    invocation: &Invocation,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Result<Report, CommandError> {
    let record: AdmissionRecord = setup
        .store
        .get_ref(ADMISSIONS, &plan_hash.hex())
        .map_err(|e| CommandError::internal(Some(e.code()), e.to_string()))?
        .ok_or_else(|| {
            CommandError::new(
                exit::DENIED,
                Some(ErrorCode::AdmissionRequired),
                format!(
                    "plan {plan_hash} was never gated in this store; run `admission plan \
                     WORKORDER` or `admission run WORKORDER` first"
                ),
            )
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
    let workorder: Workorder = setup
        .store
        .get_artifact(&record.workorder)
        .map_err(|e| e.to_string())
        .and_then(|a| a.view().map_err(|e| e.to_string()))
        .map_err(|e| CommandError::internal(Some(ErrorCode::IntegrityMismatch), e.to_string()))?;
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
        mechanism: record.mechanism.clone(),
        plan_hash: Some(*plan_hash),
        admission_hash: Some(record.admission),
        ..Report::default()
    };
    let flow = Flow {
        setup,
        invocation: &invocation,
        started_at: now(),
    };
    let ending = flow.resume(
        plan_hash,
        &record,
        force_ack.as_ref(),
        &mut report,
        &mut exec,
        progress,
    );
    flow.finish(exec, report, ending)
}

/// A gated plan.
struct Admitted {
    plan_hash: Digest,
    admission_hash: Digest,
    admitted: bool,
    force_ack_required: bool,
    deadline_ms: u64,
}

/// How a run ends: its outcome and, unless it went as planned, why.
struct Ending {
    outcome: RunOutcome,
    error: Option<ErrorInfo>,
}

impl Ending {
    /// An outcome that needs no explanation: admitted, paused, succeeded.
    fn ok(outcome: RunOutcome) -> Self {
        Self {
            outcome,
            error: None,
        }
    }

    /// A failure whose outcome its code decides.
    fn failed(error: ErrorInfo) -> Self {
        Self {
            outcome: outcome_of(&error),
            error: Some(error),
        }
    }

    /// A denial.
    fn denied(error: ErrorInfo) -> Self {
        Self {
            outcome: RunOutcome::Denied,
            error: Some(error),
        }
    }

    /// A failure to get going (start the mechanism, read the plan), whatever its code.
    fn error(error: ErrorInfo) -> Self {
        Self {
            outcome: RunOutcome::Error,
            error: Some(error),
        }
    }
}

struct Flow<'a> {
    setup: &'a Setup,
    invocation: &'a Invocation,
    started_at: String,
}

impl Flow<'_> {
    /// `run_workorder` past reading the workorder: plans and gates with the mechanism, then
    /// pauses, or executes as `mode` says.
    fn plan_and_run(
        &self,
        loaded: &Loaded,
        mode: &Mode,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Ending {
        let session = match self.start_session(&loaded.workorder.mechanism) {
            Ok(session) => session,
            Err(e) => return Ending::error(e),
        };
        let admitted = match self.plan_and_gate(&session, loaded, report, exec) {
            Ok(admitted) => admitted,
            Err(e) => return Ending::failed(e),
        };
        if !admitted.admitted {
            let code = report
                .gates
                .iter()
                .find(|g| g.decision == GateDecision::Fail)
                .and_then(|g| g.code)
                .unwrap_or(ErrorCode::CapabilityDenied);
            return Ending::denied(error_info(code, "the gates denied the plan"));
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
    /// unless it was denied or still needs a force-ack.
    fn resume(
        &self,
        plan_hash: &Digest,
        record: &AdmissionRecord,
        force_ack: Option<&Value>,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Ending {
        match self.load_plan(plan_hash) {
            Ok(plan) => report.plan = Some(plan),
            Err(e) => return Ending::error(e),
        }
        if !record.admitted {
            return Ending::denied(error_info(
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
        let session = || self.start_session(&record.mechanism);
        self.execute_admitted(session, &admitted, force_ack, report, exec, progress)
    }

    /// The one way an admitted plan is executed, for `run` and `execute` alike: it pauses
    /// while a force-ack it needs is missing, else executes with the session `session` gives.
    /// The session ends here, so the mechanism has exited before the run record is written.
    fn execute_admitted(
        &self,
        session: impl FnOnce() -> Result<Session, ErrorInfo>,
        admitted: &Admitted,
        force_ack: Option<&Value>,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Ending {
        if admitted.force_ack_required && force_ack.is_none() {
            return Ending::ok(RunOutcome::AwaitingForceAck);
        }
        let session = match session() {
            Ok(session) => session,
            Err(e) => return Ending::error(e),
        };
        match self.execute(&session, admitted, force_ack, report, exec, progress) {
            Ok(()) => Ending::ok(RunOutcome::Succeeded),
            Err(e) => Ending::failed(e),
        }
    }

    fn start_session(&self, mechanism: &str) -> Result<Session, ErrorInfo> {
        let entry = self
            .setup
            .registry
            .entry(mechanism)
            .map_err(with_code(ErrorCode::InvalidParams))?;
        let paths = LaunchPaths {
            workspace: &self.setup.workspace,
            store: &self.setup.store_dir,
            allowed_signers: self.setup.signers_path.as_deref(),
        };
        Session::start(entry, &paths).map_err(|e| session_error(&e, ErrorCode::InternalError))
    }

    fn load_plan(&self, plan_hash: &Digest) -> Result<Plan, ErrorInfo> {
        self.setup
            .store
            .get_artifact(plan_hash)
            .map_err(|e| error_info(e.code(), format!("plan {plan_hash}: {e}")))?
            .view()
            .map_err(|e| error_info(ErrorCode::InvalidParams, format!("plan {plan_hash}: {e}")))
    }

    /// Plans (twice for D0), runs the gates, stores the witness and the admission record.
    fn plan_and_gate(
        &self,
        session: &Session,
        loaded: &Loaded,
        report: &mut Report,
        exec: &mut ExecHandle,
    ) -> Result<Admitted, ErrorInfo> {
        let entry = self
            .setup
            .registry
            .entry(&loaded.workorder.mechanism)
            .map_err(with_code(ErrorCode::InvalidParams))?;
        let params = PlanParams {
            operation: loaded.workorder.operation.clone(),
            params: loaded.workorder.params.clone(),
            inputs: loaded.inputs.clone(),
        };
        let response = session
            .plan(&params)
            .map_err(|e| session_error(&e, ErrorCode::ExecutionFailed))?;
        // Read in place (G-SCHEMA judges the shape): a plan of many effects is not copied.
        report.plan_hash = response
            .get("plan_hash")
            .and_then(|h| Digest::deserialize(h).ok());
        report.preview = response
            .get("preview")
            .and_then(Value::as_str)
            .map(str::to_owned);
        report.plan = response.get("plan").and_then(|p| Plan::deserialize(p).ok());
        let second_plan_hash = if gates::requires_second_plan(
            entry,
            &loaded.workorder.operation,
            response.get("plan").unwrap_or(&Value::Null),
        ) {
            let again = session
                .plan(&params)
                .map_err(|e| session_error(&e, ErrorCode::ExecutionFailed))?;
            again
                .get("plan_hash")
                .and_then(Value::as_str)
                .and_then(|h| h.parse().ok())
        } else {
            None
        };
        let _ = journal_step(exec, "planned", json!({"plan_hash": report.plan_hash}));
        // A workspace that cannot be resolved has failed to start the mechanism already.
        let store_location = self
            .setup
            .store
            .location_within(&self.setup.workspace)
            .ok()
            .flatten();
        let outcome = gates::run(&GateInput {
            entry,
            policy_digest: self.setup.registry.policy_digest(),
            describe: &session.describe,
            described: &session.described,
            plan_response: &response,
            workorder: &loaded.workorder,
            workorder_digest: loaded.digest,
            store: &self.setup.store,
            store_location: store_location.as_ref(),
            second_plan_hash,
        });
        report.gates = outcome.records.clone();
        let Some(witness) = outcome.witness.as_ref() else {
            return Err(error_info(
                ErrorCode::InvalidParams,
                "the mechanism's plan response names no plan",
            ));
        };
        let admission_hash = self.store_typed(witness, "admission gates", &[witness.plan_hash])?;
        report.admission_hash = Some(admission_hash);
        let admitted = outcome.admitted();
        let record = AdmissionRecord {
            admission: admission_hash,
            admitted,
            force_ack_required: witness.force_ack_required,
            mechanism: loaded.workorder.mechanism.clone(),
            workorder: loaded.digest,
            run_uid: report.uid.clone(),
            deadline_ms: outcome.deadline_ms,
        };
        // Only a plan the admission hashed itself gets a record: G-INTEGRITY fails otherwise.
        if admitted {
            self.setup
                .store
                .set_ref(ADMISSIONS, &witness.plan_hash.hex(), &record)
                .map_err(|e| error_info(e.code(), e.to_string()))?;
        }
        let _ = journal_step(
            exec,
            "gated",
            json!({"admission": admission_hash, "admitted": admitted, "gates": outcome.records}),
        );
        Ok(Admitted {
            plan_hash: witness.plan_hash,
            admission_hash,
            admitted,
            force_ack_required: witness.force_ack_required,
            deadline_ms: outcome.deadline_ms,
        })
    }

    /// Checks the force-ack as the server will, executes, and verifies what came back.
    fn execute(
        &self,
        session: &Session,
        admitted: &Admitted,
        force_ack: Option<&Value>,
        report: &mut Report,
        exec: &mut ExecHandle,
        progress: &mut dyn FnMut(&ProgressParams),
    ) -> Result<(), ErrorInfo> {
        let plan = match &report.plan {
            Some(plan) => plan.clone(),
            None => self.load_plan(&admitted.plan_hash)?,
        };
        if admitted.force_ack_required || plan.destructive {
            let Some(ack) = force_ack else {
                return Err(error_info(
                    ErrorCode::ForceAckRequired,
                    "the plan is destructive and needs a force-ack",
                ));
            };
            self.check_force_ack(ack, admitted)?;
            let hash = self.store_value(ack, "admission force-ack", &[admitted.plan_hash])?;
            report.force_ack_hash = Some(hash);
        }
        let _ = journal_step(exec, "executing", json!({"plan_hash": admitted.plan_hash}));
        let params = ExecuteParams {
            plan_hash: admitted.plan_hash,
            admission: admitted.admission_hash,
            force_ack: if admitted.force_ack_required || plan.destructive {
                force_ack.cloned()
            } else {
                None
            },
            deadline_ms: Some(admitted.deadline_ms),
        };
        let deadline = Duration::from_millis(admitted.deadline_ms);
        let answer = session.execute(&params, deadline, |p| progress(p));
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                // A failed execution still has a recorded result, carried in `error.data`.
                if let SessionError::Client(crate::client::ClientError::Rpc { data, .. }) = &e {
                    if let Ok(result) =
                        serde_json::from_value::<ExecuteResult>(data["result"].clone())
                    {
                        report.result_hash = Some(result.result_hash);
                        report.witness_hash = Some(result.witness_hash);
                    }
                }
                return Err(session_error(&e, ErrorCode::ExecutionFailed));
            }
        };
        let result: ExecuteResult = serde_json::from_value(answer).map_err(|e| {
            error_info(
                ErrorCode::InternalError,
                format!("the execute result is malformed: {e}"),
            )
        })?;
        report.result_hash = Some(result.result_hash);
        report.witness_hash = Some(result.witness_hash);
        let artifact = self.check_result(&result, admitted, &plan)?;
        report.evidence = Some(artifact.evidence.clone());
        self.check_state(&plan, &artifact)?;
        let _ = journal_step(
            exec,
            "executed",
            json!({"result": result.result_hash, "witness": result.witness_hash}),
        );
        Ok(())
    }

    /// Every check the server makes on a force-ack, made before asking it to execute.
    fn check_force_ack(&self, ack: &Value, admitted: &Admitted) -> Result<(), ErrorInfo> {
        let Some(signers) = &self.setup.signers else {
            return Err(error_info(
                ErrorCode::ForceAckInvalid,
                "no trusted signers are configured (--allowed-signers FILE), so no \
                 destructive plan can run",
            ));
        };
        let expected = Expected {
            plan_hash: admitted.plan_hash,
            admission_hash: admitted.admission_hash,
        };
        let verified = force_ack::verify(
            ack,
            expected,
            signers,
            OffsetDateTime::now_utc(),
            self.setup.max_ttl,
        )
        .map_err(|e| error_info(e.code(), e.to_string()))?;
        let used = force_ack::nonce_claimed(&self.setup.store, &verified.nonce)
            .map_err(|e| error_info(e.code(), e.to_string()))?;
        // A plan whose recorded result may still hold is the server's to judge: it returns
        // that result and applies nothing, or refuses the replay if the world was reset.
        if used && !self.has_succeeded(&admitted.plan_hash) {
            return Err(error_info(
                ErrorCode::ForceAckReplayed,
                format!(
                    "force-ack nonce {} was already used; approve the plan again",
                    verified.nonce
                ),
            ));
        }
        Ok(())
    }

    /// Whether the mechanism recorded a successful execution of the plan.
    fn has_succeeded(&self, plan_hash: &Digest) -> bool {
        matches!(
            self.setup.store.result_record(plan_hash),
            Ok(Some(record)) if record.succeeded
        )
    }

    /// The result and witness the mechanism stored must be the ones it returned, for this
    /// plan and admission, with exactly the planned effects.
    fn check_result(
        &self,
        result: &ExecuteResult,
        admitted: &Admitted,
        plan: &Plan,
    ) -> Result<ResultArtifact, ErrorInfo> {
        let bad = |message: String| ErrorInfo::new(ErrorCode::IntegrityMismatch, message);
        let stored = self
            .setup
            .store
            .get_artifact(&result.result_hash)
            .map_err(|e| bad(format!("result {}: {e}", result.result_hash)))?;
        if stored.value() != &result.result {
            return Err(bad(
                "the stored result differs from the one returned".to_owned()
            ));
        }
        let artifact: ResultArtifact = stored.view().map_err(|e| bad(e.to_string()))?;
        let witness: ResultWitness = self
            .setup
            .store
            .get_artifact(&result.witness_hash)
            .map_err(|e| e.to_string())
            .and_then(|a| a.view().map_err(|e| e.to_string()))
            .map_err(|e| bad(format!("witness {}: {e}", result.witness_hash)))?;
        let links = &witness.predicate;
        if artifact.plan_hash != admitted.plan_hash
            || links.plan_hash != admitted.plan_hash
            || links.result_hash != result.result_hash
            || links.admission_hash != admitted.admission_hash
        {
            return Err(bad(
                "the result or witness names another plan, result or admission".to_owned(),
            ));
        }
        if artifact.status != ResultStatus::Success {
            return Err(artifact.error.clone().unwrap_or(ErrorInfo::new(
                ErrorCode::ExecutionFailed,
                "the execution failed".to_owned(),
            )));
        }
        if artifact.effects_applied != plan.intended_effects {
            return Err(ErrorInfo::new(
                ErrorCode::ExecutionFailed,
                "the effects applied differ from the plan's intended effects".to_owned(),
            ));
        }
        Ok(artifact)
    }

    /// The state the plan's effects left must hold as `verify` checks it: each commit exists
    /// with its predicted id, is on its branch and changes exactly the planned files. The
    /// mechanism's word, or the store's, is not enough to report success.
    fn check_state(&self, plan: &Plan, result: &ResultArtifact) -> Result<(), ErrorInfo> {
        let failed: Vec<String> = verify::state_checks(&self.setup.workspace, plan, Some(result))
            .iter()
            .filter(|check| !check.ok)
            .map(ToString::to_string)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        // Whatever each check's own code, the run's outcome could not be confirmed.
        Err(ErrorInfo::new(
            ErrorCode::ExecutionFailed,
            format!(
                "the mechanism reported success, but the state it left does not hold: {}",
                failed.join("; ")
            ),
        ))
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
            .map_err(|e| error_info(e.code(), e.to_string()))
    }

    /// Writes the run record, ends the journal execution and completes the report.
    fn finish(
        &self,
        mut exec: ExecHandle,
        mut report: Report,
        ending: Ending,
    ) -> Result<Report, CommandError> {
        let Ending { outcome, error } = ending;
        report.outcome = Some(outcome);
        report.exit = match (&outcome, &error) {
            (RunOutcome::Admitted | RunOutcome::Succeeded, _) => 0,
            (RunOutcome::AwaitingForceAck, _) => exit::AWAITING_FORCE_ACK,
            (RunOutcome::Denied, _) => exit::DENIED,
            (RunOutcome::Stale, _) => exit::STALE,
            (RunOutcome::Failed, _) => exit::EXECUTION_FAILED,
            (RunOutcome::Error, Some(e)) => exit::exit_for(e.code),
            (RunOutcome::Error, None) => exit::INTERNAL,
        };
        report.error = error;
        report.next_actions = next_actions(&report, self.invocation);
        let record = RunRecord {
            work_order_id: report.work_order_id.clone(),
            run_uid: report.uid.clone(),
            mechanism: report.mechanism.clone(),
            operation: report.operation.clone(),
            // A resumed execution was admitted by its parent run's gates.
            decision: if outcome == RunOutcome::Denied
                || report
                    .gates
                    .iter()
                    .any(|g| g.decision == GateDecision::Fail)
                || (report.gates.is_empty() && report.parent.is_none())
            {
                GateDecision::Fail
            } else {
                GateDecision::Pass
            },
            outcome,
            plan_hash: report.plan_hash,
            admission_hash: report.admission_hash,
            force_ack_hash: report.force_ack_hash,
            result_hash: report.result_hash,
            witness_hash: report.witness_hash,
            error: report.error.clone(),
            next_actions: NextActionsRef::Inline(report.next_actions.clone()),
            started_at: Some(self.started_at.clone()),
            finished_at: Some(now()),
        };
        let derived: Vec<Digest> = [
            report.plan_hash,
            report.admission_hash,
            report.force_ack_hash,
            report.result_hash,
            report.witness_hash,
        ]
        .into_iter()
        .flatten()
        .collect();
        let stored = self.store_typed(&record, "admission run", &derived);
        let summary = json!({
            "outcome": outcome,
            "run_record": stored.as_ref().ok(),
            "plan_hash": report.plan_hash,
            "admission_hash": report.admission_hash,
            "force_ack_hash": report.force_ack_hash,
            "result_hash": report.result_hash,
            "witness_hash": report.witness_hash,
            "error": report.error,
        });
        let ended = match outcome {
            RunOutcome::Admitted | RunOutcome::Succeeded => exec.complete(summary),
            RunOutcome::AwaitingForceAck => exec.pause(summary),
            _ => exec.fail(summary),
        };
        ended.map_err(journal_error)?;
        report.run_record =
            Some(stored.map_err(|e| CommandError::internal(Some(e.code), e.message))?);
        Ok(report)
    }
}

/// The outcome a failure stands for.
fn outcome_of(error: &ErrorInfo) -> RunOutcome {
    match exit::exit_for(error.code) {
        exit::DENIED => RunOutcome::Denied,
        exit::STALE => RunOutcome::Stale,
        exit::EXECUTION_FAILED => RunOutcome::Failed,
        exit::AWAITING_FORCE_ACK => RunOutcome::AwaitingForceAck,
        _ => RunOutcome::Error,
    }
}

/// One to three commands to paste, most useful first.
fn next_actions(report: &Report, inv: &Invocation) -> Vec<NextAction> {
    let g = if inv.global_flags.is_empty() {
        String::new()
    } else {
        format!(" {}", inv.global_flags)
    };
    let workorder = inv.workorder.as_deref().unwrap_or("WORKORDER");
    let action = |priority: u8, command: String, why: &str| NextAction {
        priority,
        command,
        why: why.to_owned(),
    };
    let mut actions = Vec::new();
    match report.outcome {
        Some(RunOutcome::Succeeded) => {
            if let Some(witness) = report.witness_hash {
                actions.push(action(
                    1,
                    format!("admission{g} verify {witness}"),
                    "check the whole chain offline, from the witness to the commit",
                ));
            }
            actions.push(action(
                2,
                format!("admission{g} show {}", report.uid),
                "read the run as recorded",
            ));
        }
        Some(RunOutcome::Admitted) => {
            if let Some(plan) = report.plan_hash {
                actions.push(action(
                    1,
                    format!("admission{g} execute {plan}"),
                    "execute the admitted plan by its hash",
                ));
            }
            actions.push(action(
                2,
                format!("admission{g} show {}", report.uid),
                "read the plan and the gate decisions",
            ));
        }
        Some(RunOutcome::AwaitingForceAck) => {
            if let Some(plan) = report.plan_hash {
                actions.push(action(1, format!("admission{g} approve {plan} --key ~/.ssh/id_ed25519 --approver YOU@EXAMPLE.COM -o force-ack.json"), "an operator approves this exact destructive plan"));
                actions.push(action(
                    2,
                    format!("admission{g} execute {plan} --force-ack force-ack.json"),
                    "execute it with the approval",
                ));
            }
            actions.push(action(
                3,
                format!("admission{g} show {}", report.uid),
                "read why it is destructive",
            ));
        }
        Some(RunOutcome::Denied) => {
            let what = report
                .admission_hash
                .map_or_else(|| report.uid.clone(), |a| a.to_string());
            actions.push(action(
                1,
                format!("admission{g} show {what}"),
                "read every gate's decision and reason",
            ));
            actions.push(action(
                2,
                format!("admission{g} run {workorder}"),
                "run again after fixing the workorder or the registry",
            ));
        }
        Some(RunOutcome::Stale) => {
            actions.push(action(
                1,
                format!("admission{g} run {workorder}"),
                "the world changed since planning: plan again",
            ));
            actions.push(action(
                2,
                format!("admission{g} show {}", report.uid),
                "read what was planned",
            ));
        }
        _ => {
            actions.push(action(
                1,
                format!("admission{g} show {}", report.uid),
                "read what happened, step by step",
            ));
            if let (Some(plan), Some(_)) = (report.plan_hash, report.admission_hash) {
                let ack = if report.force_ack_hash.is_some() {
                    " --force-ack force-ack.json"
                } else {
                    ""
                };
                actions.push(action(
                    2,
                    format!("admission{g} execute {plan}{ack}"),
                    "execute the admitted plan again: an execution cut short is finished, not repeated",
                ));
            }
            if let Some(result) = report.result_hash {
                actions.push(action(
                    2,
                    format!("admission{g} verify {result}"),
                    "check what the failed execution left",
                ));
            }
            actions.push(action(
                3,
                format!("admission{g} run {workorder}"),
                "try again once the cause is fixed",
            ));
        }
    }
    actions.truncate(3);
    actions
}

/// An `ErrorInfo` of `code` saying `message`.
pub(crate) fn error_info(code: ErrorCode, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(code, message.into())
}

/// Makes an error of any kind an `ErrorInfo` of `code`, saying what it says.
fn with_code<E: std::fmt::Display>(code: ErrorCode) -> impl Fn(E) -> ErrorInfo {
    move |error| error_info(code, error.to_string())
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
    error_info(error.code().unwrap_or(otherwise), error.to_string())
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
    CommandError::internal(None, format!("journal: {error}"))
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
