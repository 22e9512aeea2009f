//! git_apply_patch: apply a unified diff to a branch of a repository under a root and
//! commit it, predicted exactly at plan time and applied only as predicted.
//!
//! [`plan`] parses the patch itself, applies it in memory to the base tree's blobs, and
//! predicts the exact tree and commit ids; it writes nothing (new objects go to an
//! in-memory object backend). [`prepare`] does the same and keeps what it built, and
//! [`apply`] executes that without predicting again: it takes the repository's locks (ours
//! and git's own; `BUSY` when another holds one), checks under them that nothing the
//! prediction read has changed (branch, `HEAD`, the touched paths' index entries and
//! files), copies the new objects to disk, records a durable intent, then moves the branch
//! and, when the branch is checked out, rewrites only the touched work-tree paths and index
//! entries. Killed at any instant, it is finished by the next execute ([`recover`]; see
//! `transaction.rs`). Cost grows with the patch, not the repository, except that when the
//! branch is checked out the index is read whole (libgit2 cannot read part of it) and
//! `apply` writes it whole: O(index entries).
//!
//! The protocol side is [`GitApplyPatch`], the [`mechanism_server::Mechanism`] that maps a
//! [`Prediction`] into the plan artifact and [`ApplyError::code`] into protocol errors; the
//! rest of this crate knows nothing of JSON-RPC.

mod error;
mod hunks;
mod intent;
mod lock;
mod mechanism;
mod patch;
mod paths;
mod predict;
mod state;
mod transaction;
mod worktree;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use protocol::artifact::effect::{Effect, Touch};
use serde::{Deserialize, Serialize};

use intent::{Intent, PathChange};
use mechanism_server::failpoint;

pub use error::ApplyError;
pub use mechanism::{GitApplyPatch, APPLY, ID, MAX_PATCH_BYTES, PATCH_INPUT};

/// The params of operation `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    /// The repository: a path relative to the root, or absolute inside it.
    pub repo: String,
    /// The branch to commit on (`main` or `refs/heads/main`); default: the one HEAD names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit message (cleaned up as git does: trailing whitespace, final newline).
    pub message: String,
    /// Author and committer.
    pub author: Person,
    /// Author and committer time, RFC 3339 in whole seconds, offset kept, from
    /// 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z; default: one second after the base
    /// commit's committer time, in its offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// How many leading directories to strip from the patch's names, as `patch -p`;
    /// default [`DEFAULT_STRIP`] (git's `a/` and `b/`). 0 for a `diff -u` without prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip: Option<u32>,
}

/// The `strip` of params that give none: git's `a/` and `b/` prefixes.
pub const DEFAULT_STRIP: u32 = 1;

/// A name and an email, as in a git signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The name.
    pub name: String,
    /// The email address.
    pub email: String,
}

/// Everything a plan carries, computed from the params, the patch and the repository
/// state only: the same inputs on the same state give an equal prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The repository relative to the root, `/`-separated; `.` for the root itself.
    pub repo: String,
    /// The full ref name of the branch, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The commit the branch points to now (the parent of the new commit).
    pub base_commit: String,
    /// The tree of the base commit.
    pub base_tree: String,
    /// The tree the patch produces.
    pub new_tree: String,
    /// The commit execute will create.
    pub new_commit: String,
    /// The author, also used as committer.
    pub author: Person,
    /// The author and committer time, RFC 3339.
    pub time: String,
    /// The commit message as committed.
    pub message: String,
    /// Whether the branch is the one checked out, so execute updates the work tree.
    pub checked_out: bool,
    /// The intended effects: `fs.write`, `fs.delete`, `fs.mode`, then `git.commit`.
    pub effects: Vec<Effect>,
    /// Every resource read, written or deleted, sorted; the repository itself (for its
    /// ref) is written.
    pub touches: Vec<Touch>,
    /// Whether the plan deletes, changes modes, or overwrites uncommitted changes.
    pub destructive: bool,
    /// Why it is destructive, one reason per fact.
    pub destructive_reasons: Vec<String>,
    /// The work-tree and index state of every touched path (empty when the branch is not
    /// checked out), so that a local edit after planning changes the plan.
    pub worktree: Vec<WorktreeFact>,
    /// A readable diff of the base tree against the new tree, limited to touched paths.
    pub preview: String,
}

/// The local state of one touched path when the plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeFact {
    /// The path relative to the repository.
    pub path: String,
    /// The file in the work tree, or `None` when absent.
    pub worktree: Option<FileState>,
    /// The stage-0 index entry, or `None` when absent.
    pub index: Option<FileState>,
    /// Whether the index holds conflict stages for the path.
    pub conflicted: bool,
    /// Whether the work tree or the index differs from the base tree for this path.
    pub differs: bool,
}

/// A file's content and mode, as git sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// The blob id of the content.
    pub blob: String,
    /// The git mode, `100644` or `100755`.
    pub mode: String,
}

/// What an execute did: exactly what its prediction said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The commit created (equal to the predicted one).
    pub commit: String,
    /// The ref moved.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The commit the ref pointed to before.
    pub from: String,
    /// Whether the work tree and index were updated (the branch is checked out).
    pub worktree_updated: bool,
}

/// Where a predicted branch is now, relative to a prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchState {
    /// At the base commit: the plan has not been applied (or was undone).
    AtBase,
    /// At the predicted commit: the plan's effect holds.
    AtPredicted,
    /// At another commit.
    Elsewhere(String),
    /// The branch no longer exists.
    Missing,
}

/// Predicts what applying `patch` would do, writing nothing.
pub fn plan(root: &Path, params: &ApplyParams, patch: &[u8]) -> Result<Prediction, ApplyError> {
    Ok(prepare(root, params, patch, true)?.built.prediction)
}

/// A prediction with everything executing it needs, held in memory: the repository opened
/// on the base, the new objects written to memory, each touched file's new content.
pub struct Prepared {
    target: predict::Target,
    built: predict::Built,
}

impl Prepared {
    /// The prediction.
    pub fn prediction(&self) -> &Prediction {
        &self.built.prediction
    }

    fn prediction_mut(&mut self) -> &mut Prediction {
        &mut self.built.prediction
    }
}

/// [`plan`], keeping what [`apply`] needs; the preview is left empty unless `with_preview`.
/// `BUSY` while an execute in the repository is past its point of no return and unfinished:
/// its half-applied state is no base to plan on.
pub fn prepare(
    root: &Path,
    params: &ApplyParams,
    patch: &[u8],
    with_preview: bool,
) -> Result<Prepared, ApplyError> {
    let target = predict::Target::open(root, params)?;
    refuse_unfinished(&transaction::Paths::of(&target.repo))?;
    let built = predict::build(&target, params, patch, with_preview)?;
    Ok(Prepared { target, built })
}

/// Applies `patch` exactly as `expected` predicts: prepares it again and refuses with
/// `StalePlan` unless the prediction is the same, then [`apply`]. The intent record names
/// the execution by the predicted commit.
pub fn execute(
    root: &Path,
    params: &ApplyParams,
    patch: &[u8],
    expected: &Prediction,
) -> Result<Applied, ApplyError> {
    let prepared = prepare(root, params, patch, false).map_err(no_longer_holds)?;
    stale_unless_equal(prepared.prediction(), expected)?;
    let id = format!("commit {}", expected.new_commit);
    apply(root, prepared, &id, || Ok(()))
}

/// Applies a prepared prediction as a transaction that survives being killed at any instant
/// (see `transaction.rs`): takes the locks (`BUSY` when held), finishes any execute a killed
/// process left unfinished, checks under the locks that what can have changed since
/// `prepared` was made has not (the branch still at the base, the same branch checked out,
/// the index entries and work-tree files of the touched paths as planned: `StalePlan`
/// otherwise), writes the new objects, records the intent `id` names, calls `commit` at the
/// point of no return (an error there refuses, nothing changed), then moves the branch, work
/// tree and index. The prediction itself is not computed again.
pub fn apply(
    root: &Path,
    prepared: Prepared,
    id: &str,
    commit: impl FnOnce() -> Result<(), ApplyError>,
) -> Result<Applied, ApplyError> {
    let Prepared { target, built } = prepared;
    // Opened afresh: the prepared repository's view of refs, index and config is the one
    // it planned on.
    let (location, repository) = predict::open_repository(root, &target.location.name)?;
    if location.dir != target.location.dir {
        return Err(ApplyError::StalePlan(format!(
            "the repository {} is no longer where it was planned",
            target.location.name
        )));
    }
    let paths = transaction::Paths::of(&repository);
    let repo_lock = lock::RepoLock::try_acquire(&paths.git_dir)?;
    let _tidy = transaction::Tidy(&paths);
    if let Some(finished) = transaction::recover(&repository, &paths, &repo_lock)? {
        // Finishing this very execute is the whole job. (The runtime never gets here: it
        // re-plans first, and planning is `BUSY` while an intent is pending.)
        if finished.plan == id {
            return Ok(applied_of(&finished));
        }
    }

    let expected = &built.prediction;
    let held = transaction::Held::take(&paths, &expected.ref_name, expected.checked_out)?;
    failpoint::hit("git:locked");
    still_as_planned(&repository, &target, &built).map_err(no_longer_holds)?;
    let disk = predict::persist(&target, &built, repository, &paths.object_staging())?;
    failpoint::hit("git:objects");

    let intent = Intent {
        plan: id.to_owned(),
        ref_name: expected.ref_name.clone(),
        base: expected.base_commit.clone(),
        commit: expected.new_commit.clone(),
        checked_out: expected.checked_out,
        committer: expected.author.clone(),
        message: format!(
            "git_apply_patch: {}",
            expected.message.lines().next().unwrap_or_default()
        ),
        paths: predict::changes(&built.files),
    };
    let contents: HashMap<&str, &[u8]> = built
        .files
        .iter()
        .filter_map(|f| f.new.as_ref())
        .map(|(path, content, _)| (path.as_str(), content.as_slice()))
        .collect();
    let content = |change: &PathChange, _| {
        contents
            .get(change.path.as_str())
            .map(|bytes| Cow::Borrowed(*bytes))
            .ok_or_else(|| ApplyError::Internal(format!("no content for {}", change.path)))
    };
    transaction::apply(&disk, &paths, &intent, held, &content, commit)?;
    Ok(applied_of(&intent))
}

/// Refuses with `StalePlan` unless what the prediction read that can change has not: the
/// branch is at the base, the same branch is checked out (or none), and, when it is, every
/// touched path's index entries and work-tree file are as planned. Call with the locks
/// held. Costs the touched paths, plus one read of the index.
fn still_as_planned(
    repository: &git2::Repository,
    target: &predict::Target,
    built: &predict::Built,
) -> Result<(), ApplyError> {
    let expected = &built.prediction;
    let base = branch_target_in(repository, &expected.ref_name)?;
    if base.as_deref() != Some(expected.base_commit.as_str()) {
        return Err(ApplyError::StalePlan(format!(
            "{} moved from {} since planning",
            expected.ref_name, expected.base_commit
        )));
    }
    if predict::checked_out(repository, &expected.ref_name)? != expected.checked_out {
        return Err(ApplyError::StalePlan(format!(
            "{} was {} when planned and is {} now",
            expected.ref_name,
            checked_out_text(expected.checked_out),
            checked_out_text(!expected.checked_out)
        )));
    }
    if expected.checked_out
        && worktree::facts(repository, &target.location.dir, &built.files)? != expected.worktree
    {
        return Err(ApplyError::StalePlan(
            "the work tree or index changed at a touched path".to_owned(),
        ));
    }
    Ok(())
}

fn checked_out_text(checked_out: bool) -> &'static str {
    if checked_out {
        "checked out"
    } else {
        "not checked out"
    }
}

/// Finishes the execute a killed process left unfinished in the repository `repo`, if any,
/// and drops the locks a killed execute held; returns the id of the execution finished.
/// `BUSY` while another execute works on the repository.
pub fn recover(root: &Path, repo: &str) -> Result<Option<String>, ApplyError> {
    let (_, repository) = predict::open_repository(root, repo)?;
    let paths = transaction::Paths::of(&repository);
    let repo_lock = lock::RepoLock::try_acquire(&paths.git_dir)?;
    let _tidy = transaction::Tidy(&paths);
    Ok(transaction::recover(&repository, &paths, &repo_lock)?.map(|intent| intent.plan))
}

/// What an executed plan leaves in place, to check that it still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The repository relative to the root.
    pub repo: String,
    /// The full ref name of the branch.
    pub ref_name: String,
    /// The commit the branch must point to.
    pub commit: String,
    /// Whether the work tree and index were to be updated too.
    pub checked_out: bool,
    /// The touched paths, relative to the repository.
    pub paths: Vec<String>,
}

/// Whether `outcome` holds wholly: no execute unfinished, the branch at the commit and,
/// when it was checked out and still is, every touched path in the index and work tree as
/// in that commit. Cost: the touched paths, plus one read of the index.
pub fn holds(root: &Path, outcome: &Outcome) -> Result<bool, ApplyError> {
    let (_, repo) = predict::open_repository(root, &outcome.repo)?;
    if transaction::Paths::of(&repo).has_intent() {
        return Ok(false);
    }
    if branch_target_in(&repo, &outcome.ref_name)?.as_deref() != Some(outcome.commit.as_str()) {
        return Ok(false);
    }
    let head = match repo.find_reference("HEAD") {
        Ok(head) => head.symbolic_target().ok().flatten().map(str::to_owned),
        Err(_) => None,
    };
    if !outcome.checked_out || head.as_deref() != Some(outcome.ref_name.as_str()) {
        return Ok(true);
    }
    let tree = repo
        .find_commit(git2::Oid::from_str(&outcome.commit)?)?
        .tree()?;
    let changes = outcome
        .paths
        .iter()
        .map(|path| {
            Ok(PathChange {
                path: path.clone(),
                before: None,
                after: predict::tree_state(&tree, path)?,
            })
        })
        .collect::<Result<Vec<_>, ApplyError>>()?;
    worktree::matches(&repo, &changes)
}

/// `BUSY` when an execute in the repository is past its point of no return and unfinished.
fn refuse_unfinished(paths: &transaction::Paths) -> Result<(), ApplyError> {
    let Some(plan) = paths.pending_plan()? else {
        return Ok(());
    };
    Err(ApplyError::Busy(format!(
        "an execute of {plan} in this repository is in progress, or was interrupted past its \
         point of no return: executing that plan again (or starting a server on its store) \
         finishes it; plan after that"
    )))
}

/// The effect of a finished intent, as [`Applied`] reports it.
fn applied_of(intent: &Intent) -> Applied {
    Applied {
        commit: intent.commit.clone(),
        ref_name: intent.ref_name.clone(),
        from: intent.base.clone(),
        worktree_updated: intent.checked_out,
    }
}

/// Where the prediction's branch is now.
pub fn branch_state(root: &Path, prediction: &Prediction) -> Result<BranchState, ApplyError> {
    let target = branch_target(root, &prediction.repo, &prediction.ref_name)?;
    Ok(match target {
        None => BranchState::Missing,
        Some(id) if id == prediction.new_commit => BranchState::AtPredicted,
        Some(id) if id == prediction.base_commit => BranchState::AtBase,
        Some(id) => BranchState::Elsewhere(id),
    })
}

/// The commit a branch of the repository `repo` (under `root`) points to, if it exists.
pub fn branch_target(
    root: &Path,
    repo: &str,
    ref_name: &str,
) -> Result<Option<String>, ApplyError> {
    branch_target_in(&predict::open_repository(root, repo)?.1, ref_name)
}

/// The commit a branch of an open repository points to, if it exists.
fn branch_target_in(
    repository: &git2::Repository,
    ref_name: &str,
) -> Result<Option<String>, ApplyError> {
    let target = match repository.find_reference(ref_name) {
        Ok(reference) => reference.resolve()?.target(),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    Ok(target.map(|oid| oid.to_string()))
}

/// A plan that was valid when made but cannot be recomputed now is stale, not invalid.
fn no_longer_holds(error: ApplyError) -> ApplyError {
    match error {
        ApplyError::InvalidParams(m) | ApplyError::PathRefused(m) => {
            ApplyError::StalePlan(format!("the plan no longer holds: {m}"))
        }
        other => other,
    }
}

/// The recomputed prediction has no preview, which is not part of the plan.
fn stale_unless_equal(recomputed: &Prediction, expected: &Prediction) -> Result<(), ApplyError> {
    let same = Prediction {
        preview: String::new(),
        ..expected.clone()
    } == *recomputed;
    if same {
        return Ok(());
    }
    let what = if recomputed.base_commit != expected.base_commit {
        format!(
            "{} moved from {} to {}",
            expected.ref_name, expected.base_commit, recomputed.base_commit
        )
    } else if recomputed.worktree != expected.worktree {
        "the work tree or index changed at a touched path".to_owned()
    } else {
        "the plan recomputed now differs from the expected one".to_owned()
    };
    Err(ApplyError::StalePlan(what))
}
