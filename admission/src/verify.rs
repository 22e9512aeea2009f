//! `admission verify DIGEST`: an offline check of one execution's whole chain.
//!
//! Given a run record, a result witness or a result artifact, [`verify`] follows the links
//! result -> plan -> admission witness -> force-ack, checks that they agree with one another,
//! that the admission admitted exactly this plan, that a destructive plan carried a valid
//! force-ack, that the result applied exactly the intended effects, and that the state those
//! effects left is still there, as the plan's mechanism proves it offline
//! ([`mechanism_server::CheckState`], for the built-in mechanisms): for `git_apply_patch`,
//! that each commit exists with the predicted id, tree and parent, is still on its branch and
//! changes exactly the planned files (`mechanisms/git_apply_patch/src/state.rs`).
//!
//! Offline means no mechanism is started and nothing is recomputed: everything is read from
//! the object store, whose every read re-hashes the object, and from the workspace (the
//! mechanisms' root), read only: a predicted commit id is only a claim until a repository is
//! seen to hold it.
//!
//! Every check runs whatever an earlier one found, so one report lists every problem. A check
//! that needs an artifact which could not be read is left out, since the failed `artifact.*`
//! check already says why. Only a start that cannot be read at all, or is not one of the three
//! kinds, is a [`VerifyError`]: there is no chain to report on.
//!
//! How each part is found:
//! - a run record names every digest itself;
//! - a result witness names plan, admission, force-ack and result in its predicate;
//! - a result artifact names only its plan. Its witness is the one the mechanism server
//!   recorded under the store reference `results/<plan hex>`, when that record names this
//!   result (it keeps only the latest execution of a plan). Without a witness the admission is
//!   the one `admission plan` recorded under `admissions/<plan hex>`, the force-ack cannot be
//!   found, and `artifact.witness` fails: the chain is incomplete.
//!
//! The checks, by name (`state.*` are the mechanism's; git's repeat once per `git.commit`
//! effect):
//! - `artifact.run_record`, `artifact.witness`, `artifact.result`, `artifact.plan`,
//!   `artifact.admission`, `artifact.force_ack`: the linked artifact is in the store,
//!   re-hashes to its digest and reads as its kind;
//! - `artifact.input` (once per input the plan names): the input blob is in the store and
//!   re-hashes to its digest, so what the plan was computed from can still be shown;
//! - `run_record.outcome`: a run record says the run succeeded;
//! - `links.plan`, `links.admission`, `links.force_ack`, `links.result`: every artifact that
//!   names the plan (admission, force-ack, result) names the same one;
//! - `witness.statement`, `witness.mechanism`, `witness.subject`: an in-toto Statement v1 of
//!   our predicate type, by the plan's mechanism, whose subjects include each predicted commit;
//! - `admission.plan`, `admission.decision`, `admission.mechanism`: the admission witness is
//!   for this plan, ADMITs it with every gate PASS, and names the plan's mechanism;
//! - `force_ack.required`, `force_ack.binding`, `force_ack.signature`, `force_ack.trust`,
//!   `force_ack.nonce`: see `verify/ack.rs`;
//! - `result.status`, `result.effects`: success, and the effects applied are the intended
//!   ones, one to one;
//! - `state.repository`, `state.commit`, `state.tree`, `state.parent`, `state.ref`,
//!   `state.files`: see `mechanisms/git_apply_patch/src/state.rs`;
//! - `state.other` (skipped): the effects no state check covers, all of them for a mechanism
//!   that is not built in.
//! - `trace.workorder`, `trace.snapshot`, `trace.ticket`, `trace.output`, `trace.pause`, from
//!   the run record (given, or the one under `runs/<uid>` naming the chain's witness): its
//!   links to its workorder, context snapshot, ticket, output bundle and pause state; see
//!   `tickets/trace.rs`.

use std::fmt;
use std::path::Path;

use protocol::artifact::effect::GIT_COMMIT;
use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, ForceAck, Gate, GateDecision, Plan, ResultArtifact,
    ResultWitness, RunOutcome, RunRecord, IN_TOTO_STATEMENT_V1, RESULT_WITNESS_PREDICATE,
};
use protocol::artifact::{Artifact, ArtifactError, Kind};
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::store::{Store, StoreError};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde::Serialize;
use serde_json::Value;

use crate::outcome::Outcome;
use crate::pipeline::{AdmissionRecord, RunRef, ADMISSIONS, RUNS};
use crate::result_checks;
use crate::tickets::trace;
use protocol::store::refs::RESULTS;

mod ack;
#[cfg(test)]
mod tests;

/// One line of a verification report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `admission.decision`; the module docs list every name.
    pub name: String,
    /// Whether it held, failed, or could not be made (e.g. trust without `allowed_signers`).
    pub outcome: Outcome,
    /// The protocol error code of a failure.
    pub code: Option<ErrorCode>,
    /// What was found, for people.
    pub detail: String,
}

/// A check as `verify --json` prints it: `ok` (true unless it failed) and `skipped` beside
/// the outcome, as readers of earlier reports expect.
#[derive(Serialize)]
struct CheckJson<'a> {
    name: &'a str,
    outcome: Outcome,
    ok: bool,
    skipped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    detail: &'a str,
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CheckJson {
            name: &self.name,
            outcome: self.outcome,
            ok: self.outcome.held(),
            skipped: self.outcome == Outcome::Skip,
            code: self.code,
            detail: &self.detail,
        }
        .serialize(serializer)
    }
}

impl Check {
    fn new(name: &str, outcome: Outcome, code: Option<ErrorCode>, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            outcome,
            code,
            detail,
        }
    }

    /// A check that held.
    pub(crate) fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Pass, None, detail.into())
    }

    /// A check that failed, with the code a refusal of the same thing would carry.
    pub(crate) fn fail(name: &str, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Fail, Some(code), detail.into())
    }

    /// A check that could not be made.
    pub(crate) fn skip(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Skip, None, detail.into())
    }

    /// Whether nothing contradicts the chain here: it passed, or could not be made.
    pub fn held(&self) -> bool {
        self.outcome.held()
    }

    /// Passes with `ok` or fails with `code` and `failed`, as `held` says.
    fn holds(
        name: &str,
        held: bool,
        code: ErrorCode,
        ok: impl Into<String>,
        failed: impl Into<String>,
    ) -> Self {
        if held {
            Self::pass(name, ok)
        } else {
            Self::fail(name, code, failed)
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.outcome {
            Outcome::Pass => "ok",
            outcome => outcome.label(),
        };
        write!(f, "{verdict} {}", self.name)?;
        if let Some(code) = self.code {
            write!(f, " [{code}]")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What [`verify`] found: every check, and the digests of the chain as followed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The digest verification started from.
    pub start: Digest,
    /// Its kind.
    pub kind: String,
    /// Every check made, in order.
    pub checks: Vec<Check>,
    /// The run record, when the start was one.
    pub run_record_hash: Option<Digest>,
    /// The result witness, when one was found.
    pub witness_hash: Option<Digest>,
    /// The result artifact.
    pub result_hash: Option<Digest>,
    /// The plan.
    pub plan_hash: Option<Digest>,
    /// The admission witness.
    pub admission_hash: Option<Digest>,
    /// The force-ack, when the chain names one.
    pub force_ack_hash: Option<Digest>,
}

impl Report {
    /// True when every check held (skipped ones included).
    pub fn verified(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(Check::held)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.held())
    }

    /// The checks called `name`, in report order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Check> {
        self.checks.iter().filter(move |c| c.name == name)
    }
}

/// Why verification could not start.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Nothing is stored under the digest.
    #[error("no object {0} in the store; verify takes the digest of a run record, a result witness or a result")]
    NotFound(Digest),
    /// The object is there but unreadable: corrupt, too large, not an artifact.
    #[error("cannot read {digest}: {source}")]
    Unreadable {
        /// The digest given.
        digest: Digest,
        /// What the store said (boxed: errors travel far, and this one is large).
        source: Box<StoreError>,
    },
    /// An artifact of a kind that does not start a chain.
    #[error(
        "{digest} is a {kind} artifact; verify takes a run record ({}), a result witness ({}) or a result ({})",
        RunRecord::KIND,
        ResultWitness::KIND,
        ResultArtifact::KIND
    )]
    Unsupported {
        /// The digest given.
        digest: Digest,
        /// Its kind.
        kind: String,
    },
    /// An artifact of a supported kind that does not fit its type.
    #[error("{digest} does not fit its kind: {source}")]
    Malformed {
        /// The digest given.
        digest: Digest,
        /// Why (boxed, as above).
        source: Box<ArtifactError>,
    },
}

impl VerifyError {
    /// The protocol error code this is reported as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::UnknownArtifact,
            Self::Unreadable { source, .. } => source.code(),
            Self::Unsupported { .. } | Self::Malformed { .. } => ErrorCode::InvalidParams,
        }
    }
}

impl From<VerifyError> for ErrorInfo {
    fn from(error: VerifyError) -> Self {
        ErrorInfo::new(error.code(), error.to_string())
    }
}

/// Verifies the chain around `digest` (a run record, result witness or result artifact)
/// against `store` and the repositories under `workspace`; see the module docs.
///
/// Without `allowed_signers` a force-ack's signature is still checked, but not whom it
/// belongs to: `force_ack.trust` is then skipped.
pub fn verify(
    store: &Store,
    workspace: &Path,
    allowed_signers: Option<&AllowedSigners>,
    digest: &Digest,
) -> Result<Report, VerifyError> {
    let start = store.get_artifact(digest).map_err(|e| match e {
        StoreError::NotFound(d) => VerifyError::NotFound(d),
        source => VerifyError::Unreadable {
            digest: *digest,
            source: Box::new(source),
        },
    })?;
    let kind = start.kind().to_owned();
    fn view<T: Kind>(artifact: &Artifact) -> Result<(Digest, T), VerifyError> {
        let typed = artifact.view().map_err(|source| VerifyError::Malformed {
            digest: artifact.digest(),
            source: Box::new(source),
        })?;
        Ok((artifact.digest(), typed))
    }
    let mut chain = Chain::new(store);
    match kind.as_str() {
        RunRecord::KIND => chain.record = Some(view(&start)?),
        ResultWitness::KIND => chain.witness = Some(view(&start)?),
        ResultArtifact::KIND => chain.result = Some(view(&start)?),
        _ => {
            return Err(VerifyError::Unsupported {
                digest: *digest,
                kind,
            })
        }
    }
    chain.checks.push(Check::pass(
        role_check(&kind),
        format!("{digest} re-hashes and reads as {kind}"),
    ));
    chain.follow();
    chain.check_all(workspace, allowed_signers);
    let found = match (&chain.record, &chain.witness) {
        (None, Some((witness, _))) => record_of_witness(store, witness),
        _ => None,
    };
    if let Some((digest, record)) = chain.record.as_ref().or(found.as_ref()) {
        chain
            .checks
            .extend(trace::trace(store, digest, record).checks);
    }
    Ok(Report {
        start: *digest,
        kind,
        run_record_hash: chain.record.as_ref().map(|(d, _)| *d),
        witness_hash: (chain.witness.as_ref().map(|(d, _)| *d)).or(chain.witness_named),
        result_hash: (chain.result.as_ref().map(|(d, _)| *d))
            .or_else(|| chain.claims.result.first().map(|(_, d)| *d)),
        plan_hash: chain.plan_hash(),
        admission_hash: chain.admission_hash(),
        force_ack_hash: chain.force_ack_hash(),
        checks: chain.checks,
    })
}

/// The record of the run that executed `witness`, found through the references `runs/<uid>`
/// (newest first), so a chain verified from its witness or result is traced too.
fn record_of_witness(store: &Store, witness: &Digest) -> Option<(Digest, RunRecord)> {
    let uids = store.ref_keys(RUNS).ok()?;
    uids.iter().rev().find_map(|uid| {
        let entry = store.get_ref::<RunRef>(RUNS, uid).ok()??;
        let record: RunRecord = store.get_artifact(&entry.run_record).ok()?.view().ok()?;
        (record.witness_hash == Some(*witness)).then_some((entry.run_record, record))
    })
}

/// The `artifact.*` check of a start kind.
fn role_check(kind: &str) -> &'static str {
    match kind {
        RunRecord::KIND => "artifact.run_record",
        ResultWitness::KIND => "artifact.witness",
        _ => "artifact.result",
    }
}

/// Who says which digest a part of the chain has, first the one followed: the witness (the
/// server wrote it with the result, at execute), then the run record, then the result.
#[derive(Debug, Default)]
struct Claims {
    plan: Vec<(String, Digest)>,
    admission: Vec<(String, Digest)>,
    /// `None` claims "no force-ack was used".
    force_ack: Vec<(String, Option<Digest>)>,
    result: Vec<(String, Digest)>,
}

/// The chain as read so far, and the checks made.
struct Chain<'a> {
    store: &'a Store,
    checks: Vec<Check>,
    claims: Claims,
    record: Option<(Digest, RunRecord)>,
    witness: Option<(Digest, ResultWitness)>,
    result: Option<(Digest, ResultArtifact)>,
    plan: Option<Plan>,
    admission: Option<AdmissionWitness>,
    /// Where the admission came from when no witness or record named it.
    admission_fallback: Option<Digest>,
    /// The witness named, whether or not it could be read.
    witness_named: Option<Digest>,
    force_ack: Option<(Artifact, ForceAck)>,
}

impl<'a> Chain<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            checks: Vec::new(),
            claims: Claims::default(),
            record: None,
            witness: None,
            result: None,
            plan: None,
            admission: None,
            admission_fallback: None,
            witness_named: None,
            force_ack: None,
        }
    }

    /// Reads every linked artifact, recording an `artifact.*` check for each.
    fn follow(&mut self) {
        if self.witness.is_none() {
            self.find_witness();
        }
        if let Some((_, w)) = &self.witness {
            let p = &w.predicate;
            let by = "the witness".to_owned();
            self.claims.plan.push((by.clone(), p.plan_hash));
            self.claims.admission.push((by.clone(), p.admission_hash));
            self.claims.force_ack.push((by.clone(), p.force_ack_hash));
            self.claims.result.push((by, p.result_hash));
        }
        if let Some((_, r)) = &self.record {
            let by = "the run record".to_owned();
            self.claims
                .plan
                .extend(r.plan_hash.map(|d| (by.clone(), d)));
            self.claims
                .admission
                .extend(r.admission_hash.map(|d| (by.clone(), d)));
            self.claims.force_ack.push((by.clone(), r.force_ack_hash));
            self.claims.result.extend(r.result_hash.map(|d| (by, d)));
        }
        match &self.result {
            Some((digest, _)) => self
                .claims
                .result
                .push(("the result given".to_owned(), *digest)),
            None => self.load_result(),
        }
        if let Some((_, r)) = &self.result {
            self.claims
                .plan
                .push(("the result".to_owned(), r.plan_hash));
        }
        self.load_plan();
        self.check_inputs();
        self.load_admission();
        if let Some((by, Some(digest))) = self.claims.force_ack.first().cloned() {
            self.force_ack = self.load("force_ack", &digest, &format!("named by {by}"));
        }
    }

    /// The witness named by the run record, or recorded by the server for the given result.
    fn find_witness(&mut self) {
        const NAME: &str = "artifact.witness";
        let named = if let Some((_, record)) = &self.record {
            match record.witness_hash {
                Some(digest) => Some((digest, "named by the run record".to_owned())),
                None => {
                    let why = format!(
                        "the run record names no witness (the run's outcome: {})",
                        outcome_name(record.outcome)
                    );
                    self.checks
                        .push(Check::fail(NAME, ErrorCode::UnknownArtifact, why));
                    return;
                }
            }
        } else if let Some((digest, result)) = &self.result {
            match self.recorded_witness(&result.plan_hash, digest) {
                Ok(found) => Some(found),
                Err(why) => {
                    self.checks.push(Check::fail(
                        NAME,
                        ErrorCode::UnknownArtifact,
                        format!(
                            "not given, and {why}: the links to the admission and force-ack \
                             that only the witness holds cannot be checked; verify the \
                             witness or the run record instead"
                        ),
                    ));
                    return;
                }
            }
        } else {
            None
        };
        if let Some((digest, by)) = named {
            self.witness_named = Some(digest);
            if let Some((_, witness)) = self.load::<ResultWitness>("witness", &digest, &by) {
                self.witness = Some((digest, witness));
            }
        }
    }

    /// The witness the server recorded for `plan`, if its record names `result`.
    fn recorded_witness(&self, plan: &Digest, result: &Digest) -> Result<(Digest, String), String> {
        let where_ = format!("{RESULTS}/{}", plan.hex());
        match self.store.result_record(plan) {
            Ok(Some(r)) if r.result == *result => {
                Ok((r.witness, format!("recorded by the server in {where_}")))
            }
            Ok(Some(r)) => Err(format!(
                "the server's record {where_} names a later result {}",
                r.result
            )),
            Ok(None) => Err(format!("the store holds no server record {where_}")),
            Err(e) => Err(format!("the server's record {where_} is unreadable ({e})")),
        }
    }

    fn load_result(&mut self) {
        match self.claims.result.first().cloned() {
            Some((by, digest)) => {
                self.result = self
                    .load::<ResultArtifact>("result", &digest, &format!("named by {by}"))
                    .map(|(_, r)| (digest, r));
            }
            None if self.witness.is_some() || self.record.is_some() => {
                let why = match &self.record {
                    Some((_, r)) => format!(
                        "the run record names no result (the run's outcome: {})",
                        outcome_name(r.outcome)
                    ),
                    None => "nothing names the result".to_owned(),
                };
                self.checks.push(Check::fail(
                    "artifact.result",
                    ErrorCode::UnknownArtifact,
                    why,
                ));
            }
            // No witness and no record: the witness check already failed.
            None => {}
        }
    }

    fn load_plan(&mut self) {
        match self.claims.plan.first().cloned() {
            Some((by, digest)) => {
                let by = format!("named by {by}");
                self.plan = self.load::<Plan>("plan", &digest, &by).map(|(_, p)| p);
            }
            None => self.checks.push(Check::fail(
                "artifact.plan",
                ErrorCode::UnknownPlan,
                "nothing in the chain names the plan",
            )),
        }
    }

    /// `artifact.input`: every blob the plan names is still stored, byte for byte.
    fn check_inputs(&mut self) {
        let Some(plan) = &self.plan else { return };
        for (name, digest) in &plan.inputs {
            let check = match self.store.verify(digest) {
                Ok(()) => Check::pass(
                    "artifact.input",
                    format!("{name} {digest} (named by the plan) re-hashes"),
                ),
                Err(e) => Check::fail(
                    "artifact.input",
                    e.code(),
                    format!("{name} (named by the plan): {e}"),
                ),
            };
            self.checks.push(check);
        }
    }

    fn load_admission(&mut self) {
        let named = self
            .claims
            .admission
            .first()
            .map(|(by, d)| (format!("named by {by}"), *d));
        let named = named.or_else(|| {
            // Only the witness and the run record name the admission; without both, fall
            // back on what `admission plan` recorded for the plan.
            let plan = self.plan_hash()?;
            let digest = self
                .store
                .get_ref::<AdmissionRecord>(ADMISSIONS, &plan.hex())
                .ok()
                .flatten()?
                .admission;
            self.admission_fallback = Some(digest);
            Some((
                format!(
                    "recorded by `admission plan` in {ADMISSIONS}/{}, as no witness names it",
                    plan.hex()
                ),
                digest,
            ))
        });
        match named {
            Some((by, digest)) => {
                self.admission = self
                    .load::<AdmissionWitness>("admission", &digest, &by)
                    .map(|(_, a)| a);
            }
            None => self.checks.push(Check::fail(
                "artifact.admission",
                ErrorCode::AdmissionRequired,
                "nothing in the chain names the admission witness, and no admission is recorded for the plan",
            )),
        }
    }

    /// Reads `digest` as a `T`, recording `artifact.<role>`.
    fn load<T: Kind>(&mut self, role: &str, digest: &Digest, by: &str) -> Option<(Artifact, T)> {
        let name = format!("artifact.{role}");
        let artifact = match self.store.get_artifact(digest) {
            Ok(artifact) => artifact,
            Err(e) => {
                self.checks
                    .push(Check::fail(&name, e.code(), format!("{e} ({by})")));
                return None;
            }
        };
        match artifact.view::<T>() {
            Ok(typed) => {
                self.checks.push(Check::pass(
                    &name,
                    format!("{digest} ({by}) re-hashes and reads as {}", T::KIND),
                ));
                Some((artifact, typed))
            }
            Err(e) => {
                self.checks.push(Check::fail(
                    &name,
                    ErrorCode::InvalidParams,
                    format!("{digest} ({by}) is not a usable {}: {e}", T::KIND),
                ));
                None
            }
        }
    }

    fn plan_hash(&self) -> Option<Digest> {
        self.claims.plan.first().map(|(_, d)| *d)
    }

    fn admission_hash(&self) -> Option<Digest> {
        self.claims
            .admission
            .first()
            .map(|(_, d)| *d)
            .or(self.admission_fallback)
    }

    fn force_ack_hash(&self) -> Option<Digest> {
        self.claims.force_ack.first().and_then(|(_, d)| *d)
    }

    /// Every check on what was read.
    fn check_all(&mut self, workspace: &Path, signers: Option<&AllowedSigners>) {
        let mut checks = Vec::new();
        if let Some((_, record)) = &self.record {
            checks.push(run_outcome(record));
        }
        checks.extend(links("plan", &self.claims.plan));
        checks.extend(links("admission", &self.claims.admission));
        checks.extend(links("force_ack", &self.claims.force_ack));
        checks.extend(links("result", &self.claims.result));
        if let Some((_, witness)) = &self.witness {
            witness_checks(witness, self.plan.as_ref(), &mut checks);
        }
        if let (Some(admission), Some(plan_hash)) = (&self.admission, self.plan_hash()) {
            admission_checks(admission, &plan_hash, self.plan.as_ref(), &mut checks);
        }
        let force_ack = ack::Linked {
            // Only a witness or a run record can name a force-ack.
            known: self.witness.is_some() || self.record.is_some(),
            digest: self.force_ack_hash(),
            read: self.force_ack.as_ref().map(|(a, f)| (a.value(), f)),
            plan: self.plan.as_ref(),
            admission: self.admission.as_ref(),
            plan_hash: self.plan_hash(),
            admission_hash: self.admission_hash(),
        };
        ack::checks(self.store, signers, &force_ack, &mut checks);
        if let Some((_, result)) = &self.result {
            checks.push(result_checks::status(result));
            if let Some(plan) = &self.plan {
                checks.push(result_checks::effects(
                    &plan.intended_effects,
                    &result.effects_applied,
                ));
            }
        }
        if let Some(plan) = &self.plan {
            let result = self.result.as_ref().map(|(_, result)| result);
            checks.extend(result_checks::state_checks(workspace, plan, result));
        }
        self.checks.extend(checks);
    }
}

fn outcome_name(outcome: RunOutcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{outcome:?}"))
}

fn run_outcome(record: &RunRecord) -> Check {
    const NAME: &str = "run_record.outcome";
    if record.outcome == RunOutcome::Succeeded && record.decision == GateDecision::Pass {
        return Check::pass(NAME, "the run was admitted and succeeded");
    }
    let (code, why) = match &record.error {
        Some(e) => (e.code, format!(": {} {}", e.code, e.message)),
        None => (ErrorCode::ExecutionFailed, String::new()),
    };
    Check::fail(
        NAME,
        code,
        format!(
            "the run record says {} with decision {:?}{why}",
            outcome_name(record.outcome),
            record.decision
        ),
    )
}

/// `links.<role>`: everyone naming the part names the same digest. Nothing when no one does.
fn links<D: PartialEq + Show>(role: &str, claims: &[(String, D)]) -> Option<Check> {
    let name = format!("links.{role}");
    let (first_by, first) = claims.first()?;
    let disagree: Vec<String> = claims
        .iter()
        .filter(|(_, d)| d != first)
        .map(|(by, d)| format!("{by} names {}", d.show()))
        .collect();
    Some(if disagree.is_empty() {
        let who: Vec<&str> = claims.iter().map(|(by, _)| by.as_str()).collect();
        Check::pass(&name, format!("{} ({})", first.show(), who.join(", ")))
    } else {
        Check::fail(
            &name,
            ErrorCode::IntegrityMismatch,
            format!(
                "{first_by} names {}, but {}",
                first.show(),
                disagree.join(", ")
            ),
        )
    })
}

/// A digest, or the absence of one, as the link checks print it.
trait Show {
    fn show(&self) -> String;
}

impl Show for Digest {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for Option<Digest> {
    fn show(&self) -> String {
        self.map_or_else(|| "no force-ack".to_owned(), |d| d.to_string())
    }
}

fn witness_checks(witness: &ResultWitness, plan: Option<&Plan>, checks: &mut Vec<Check>) {
    checks.push(Check::holds(
        "witness.statement",
        witness.statement_type == IN_TOTO_STATEMENT_V1
            && witness.predicate_type == RESULT_WITNESS_PREDICATE,
        ErrorCode::InvalidParams,
        "an in-toto Statement v1 with the result-witness predicate",
        format!(
            "_type {:?} and predicateType {:?}; expected {IN_TOTO_STATEMENT_V1:?} and {RESULT_WITNESS_PREDICATE:?}",
            witness.statement_type, witness.predicate_type
        ),
    ));
    let Some(plan) = plan else { return };
    let by = &witness.predicate.mechanism;
    checks.push(Check::holds(
        "witness.mechanism",
        *by == plan.mechanism,
        ErrorCode::IntegrityMismatch,
        format!("executed by {} {}, the plan's mechanism", by.id, by.version),
        format!(
            "executed by {} {}, but the plan was issued by {} {}",
            by.id, by.version, plan.mechanism.id, plan.mechanism.version
        ),
    ));
    let commits: Vec<&str> = plan
        .intended_effects
        .iter()
        .filter(|e| e.effect_type == GIT_COMMIT)
        .filter_map(|e| e.detail.get("to").and_then(Value::as_str))
        .collect();
    if commits.is_empty() {
        checks.push(Check::pass(
            "witness.subject",
            format!(
                "{} subject(s); the plan predicts no commit to match",
                witness.subject.len()
            ),
        ));
        return;
    }
    let missing: Vec<&str> = commits
        .iter()
        .copied()
        .filter(|to| {
            !witness
                .subject
                .iter()
                .any(|s| s.digest.get("gitCommit").map(String::as_str) == Some(*to))
        })
        .collect();
    checks.push(Check::holds(
        "witness.subject",
        missing.is_empty(),
        ErrorCode::IntegrityMismatch,
        format!("names the predicted commit(s) {}", commits.join(", ")),
        format!(
            "names no subject with gitCommit {}, the commit(s) the plan predicts",
            missing.join(", ")
        ),
    ));
}

fn admission_checks(
    admission: &AdmissionWitness,
    plan_hash: &Digest,
    plan: Option<&Plan>,
    checks: &mut Vec<Check>,
) {
    checks.push(Check::holds(
        "admission.plan",
        admission.plan_hash == *plan_hash,
        ErrorCode::AdmissionRequired,
        format!("admits plan {plan_hash}"),
        format!(
            "is for plan {}, not the executed plan {plan_hash}",
            admission.plan_hash
        ),
    ));
    let mut problems = Vec::new();
    if admission.decision != AdmissionDecision::Admit {
        problems.push("its decision is DENY".to_owned());
    }
    for gate in Gate::ALL {
        let records: Vec<_> = admission.gates.iter().filter(|g| g.gate == gate).collect();
        match records.as_slice() {
            [] => problems.push(format!("{} is missing", gate.as_str())),
            [one] if one.decision == GateDecision::Fail => problems.push(format!(
                "{} FAILed{}: {}",
                gate.as_str(),
                one.code.map(|c| format!(" with {c}")).unwrap_or_default(),
                one.reason
            )),
            [_] => {}
            _ => problems.push(format!(
                "{} is recorded {} times",
                gate.as_str(),
                records.len()
            )),
        }
    }
    checks.push(Check::holds(
        "admission.decision",
        problems.is_empty(),
        ErrorCode::AdmissionRequired,
        "ADMIT, with every gate PASS",
        problems.join("; "),
    ));
    if let Some(plan) = plan {
        let (a, p) = (&admission.mechanism, &plan.mechanism);
        checks.push(Check::holds(
            "admission.mechanism",
            a == p,
            ErrorCode::AdmissionRequired,
            format!("{} {}, as the plan says", a.id, a.version),
            format!(
                "admits {} {}, but the plan was issued by {} {}",
                a.id, a.version, p.id, p.version
            ),
        ));
    }
}
