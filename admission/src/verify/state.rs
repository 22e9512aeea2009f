//! The state a plan's effects left, read from the repositories under the workspace.
//!
//! For each `git.commit` effect (`resource`: the repository relative to the workspace, `.`
//! for the workspace itself; detail `ref`, `from`, `to`, `tree`):
//! - `state.repository`: the repository opens at exactly `<workspace>/<resource>`, with no
//!   search of parent directories, and neither that directory nor its git directory lies
//!   outside the workspace (through `..`, a symlink, or a `.git` file pointing elsewhere);
//! - `state.commit`: the predicted commit `to` exists;
//! - `state.tree`: its tree is the predicted `tree`;
//! - `state.parent`: its one parent is `from`, where the branch was when planned;
//! - `state.ref`: the branch `ref` still holds it, pointing at it or at a descendant (later
//!   commits on top are fine); a branch reset or rewritten past it fails, since the commit is
//!   no longer on it.
//!
//! A commit id pins its tree and parents, so `state.tree` and `state.parent` fail only when
//! the plan's own prediction does not hold together; they are cheap and say which part.
//!
//! Other effect types have no offline state check yet; `state.other` (skipped) names them.
//! For `git_apply_patch`, the `fs.*` effects describe files of the predicted tree, whose id
//! `state.tree` compares.
//!
//! Everything here only reads. Object ids must be full 40-digit lowercase SHA-1 hex, because
//! `git2` reads shorter hex as a prefix padded with zeros.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, RepositoryOpenFlags};
use protocol::artifact::effect::{Effect, GIT_COMMIT};
use protocol::ErrorCode;
use serde_json::Value;

use super::Check;
use crate::gates::unsafe_resource;

/// Every `state.*` check for `effects`, each `git.commit` effect in turn.
pub(super) fn checks(workspace: &Path, effects: &[Effect], checks: &mut Vec<Check>) {
    let mut other: BTreeMap<&str, usize> = BTreeMap::new();
    let mut commits = 0;
    for effect in effects {
        if effect.effect_type == GIT_COMMIT {
            commits += 1;
            git_commit(workspace, effect, checks);
        } else {
            *other.entry(effect.effect_type.as_str()).or_default() += 1;
        }
    }
    if !other.is_empty() {
        let list: Vec<String> = other.iter().map(|(t, n)| format!("{n} {t}")).collect();
        let covered = if commits > 0 {
            "; the files a commit changes are pinned by its tree id"
        } else {
            ""
        };
        checks.push(Check::skip(
            "state.other",
            format!("no offline state check for {}{covered}", list.join(", ")),
        ));
    }
}

/// A `git.commit` effect's detail, parsed.
struct Predicted<'a> {
    ref_name: &'a str,
    from: Oid,
    to: Oid,
    tree: Oid,
}

impl<'a> Predicted<'a> {
    fn parse(effect: &'a Effect) -> Result<Self, String> {
        let text = |key: &str| {
            effect
                .detail
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("has no string {key:?}"))
        };
        let oid = |key: &str| {
            let hex = text(key)?;
            let full =
                hex.len() == 40 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !full {
                return Err(format!(
                    "has {key} {hex:?}, not a full 40-digit lowercase object id"
                ));
            }
            Oid::from_str(hex).map_err(|e| format!("has {key} {hex:?}: {}", e.message()))
        };
        Ok(Self {
            ref_name: text("ref")?,
            from: oid("from")?,
            to: oid("to")?,
            tree: oid("tree")?,
        })
    }
}

/// The `state.*` checks of one `git.commit` effect.
fn git_commit(workspace: &Path, effect: &Effect, checks: &mut Vec<Check>) {
    let at = &effect.resource;
    let predicted = match Predicted::parse(effect) {
        Ok(p) => p,
        Err(why) => {
            checks.push(Check::fail(
                "state.commit",
                ErrorCode::InvalidParams,
                format!("the git.commit effect on {at:?} {why}"),
            ));
            return;
        }
    };
    let repo = match open(workspace, at) {
        Ok((repo, dir)) => {
            checks.push(Check::pass(
                "state.repository",
                format!("{at:?} opens at {}", dir.display()),
            ));
            repo
        }
        Err((code, why)) => {
            checks.push(Check::fail("state.repository", code, why));
            return;
        }
    };
    let to = predicted.to;
    match repo.find_commit(to) {
        Ok(commit) => {
            checks.push(Check::pass(
                "state.commit",
                format!("{at}: the predicted commit {to} exists"),
            ));
            let tree = commit.tree_id();
            checks.push(Check::holds(
                "state.tree",
                tree == predicted.tree,
                ErrorCode::IntegrityMismatch,
                format!("{at}: commit {to} has the predicted tree {tree}"),
                format!(
                    "{at}: commit {to} has tree {tree}, not the predicted {}",
                    predicted.tree
                ),
            ));
            let parents: Vec<String> = commit.parent_ids().map(|p| p.to_string()).collect();
            checks.push(Check::holds(
                "state.parent",
                commit.parent_ids().eq([predicted.from]),
                ErrorCode::IntegrityMismatch,
                format!("{at}: commit {to} has the one parent {}", predicted.from),
                format!(
                    "{at}: commit {to} has parent(s) [{}], not just {}",
                    parents.join(", "),
                    predicted.from
                ),
            ));
        }
        Err(e) => checks.push(Check::fail(
            "state.commit",
            ErrorCode::ExecutionFailed,
            format!(
                "{at}: the predicted commit {to} is not in the repository ({})",
                e.message()
            ),
        )),
    }
    checks.push(on_branch(&repo, at, predicted.ref_name, to));
}

/// `state.ref`: the branch points at `to` or at a descendant of it.
fn on_branch(repo: &Repository, at: &str, ref_name: &str, to: Oid) -> Check {
    const NAME: &str = "state.ref";
    let gone = |why: String| {
        Check::fail(
            NAME,
            ErrorCode::ExecutionFailed,
            format!("{at}: the commit is no longer on {ref_name}: {why}"),
        )
    };
    let head = match repo
        .find_reference(ref_name)
        .and_then(|r| r.resolve())
        .map(|r| r.target())
    {
        Ok(Some(head)) => head,
        Ok(None) => return gone(format!("{ref_name} points at no commit")),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return gone(format!("{ref_name} does not exist"))
        }
        Err(e) => return gone(format!("{ref_name} cannot be read ({})", e.message())),
    };
    if head == to {
        return Check::pass(NAME, format!("{at}: {ref_name} points to {to}"));
    }
    match repo.graph_descendant_of(head, to) {
        Ok(true) => {
            let on_top = repo
                .graph_ahead_behind(head, to)
                .map_or_else(|_| "later".to_owned(), |(ahead, _)| ahead.to_string());
            Check::pass(
                NAME,
                format!("{at}: {ref_name} is at {head}, {on_top} commit(s) on top of {to}"),
            )
        }
        Ok(false) => gone(format!(
            "{ref_name} is at {head}, which does not contain it"
        )),
        Err(e) => gone(format!(
            "{ref_name} is at {head}, which cannot be compared with it ({})",
            e.message()
        )),
    }
}

/// Opens the repository at `<workspace>/<resource>`, refusing anything outside the workspace.
fn open(workspace: &Path, resource: &str) -> Result<(Repository, PathBuf), (ErrorCode, String)> {
    // "." is the workspace itself; every other resource must be a plain relative path.
    if resource != "." {
        if let Some(why) = unsafe_resource(resource) {
            return Err((
                ErrorCode::PathRefused,
                format!("the repository path {resource:?} {why}"),
            ));
        }
    }
    let root = workspace.canonicalize().map_err(|e| {
        (
            ErrorCode::ExecutionFailed,
            format!("the workspace {} is not usable: {e}", workspace.display()),
        )
    })?;
    let dir = root.join(resource).canonicalize().map_err(|e| {
        (
            ErrorCode::ExecutionFailed,
            format!(
                "the repository {resource:?} is not in the workspace {}: {e}",
                root.display()
            ),
        )
    })?;
    let outside = |what: &str, path: &Path| {
        (
            ErrorCode::PathRefused,
            format!(
                "the {what} of {resource:?} is {}, outside the workspace {}",
                path.display(),
                root.display()
            ),
        )
    };
    if !dir.starts_with(&root) {
        return Err(outside("directory", &dir));
    }
    // NO_SEARCH: a directory that is not itself a repository must not resolve to the
    // repository of some parent, possibly outside the workspace.
    let repo = Repository::open_ext(
        &dir,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&OsStr>(),
    )
    .map_err(|e| {
        (
            ErrorCode::ExecutionFailed,
            format!("{} is not a git repository: {}", dir.display(), e.message()),
        )
    })?;
    // A `.git` file or a linked worktree may point anywhere; what it points to is read.
    for (what, path) in [
        ("git directory", repo.path()),
        ("common git directory", repo.commondir()),
    ] {
        let canonical = path.canonicalize().map_err(|e| {
            (
                ErrorCode::ExecutionFailed,
                format!("the {what} {} is not usable: {e}", path.display()),
            )
        })?;
        if !canonical.starts_with(&root) {
            return Err(outside(what, &canonical));
        }
    }
    Ok((repo, dir))
}
