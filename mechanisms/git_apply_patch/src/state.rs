//! The state a plan's effects left, read from the repositories under the root (the
//! admission's workspace): what `admission verify` checks for a plan of this mechanism
//! ([`mechanism_server::CheckState`]).
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
//! - `state.files`: the files the commit changes, read from the diff of its parent's tree
//!   and its own, are exactly the plan's `fs.write`, `fs.delete` and `fs.mode` effects on that
//!   repository, blob ids and modes included. The admission approved those effects, not a
//!   tree id; this is what proves the commit did nothing else.
//!
//! A commit id pins its tree and parents, so `state.tree` and `state.parent` fail only when
//! the plan's own prediction does not hold together; they are cheap and say which part.
//!
//! Effect types other than `git.commit` and the `fs.*` effects inside a committed repository
//! have no offline state check yet; `state.other` (skipped) names them.
//!
//! Everything here only reads. Object ids must be full 40-digit lowercase SHA-1 hex, because
//! `git2` reads shorter hex as a prefix padded with zeros.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, RepositoryOpenFlags};
use protocol::artifact::effect::{
    unsafe_resource, Effect, FS_DELETE, FS_MODE, FS_WRITE, GIT_COMMIT,
};
use protocol::ErrorCode;
use serde_json::Value;

use mechanism_server::StateCheck as Check;

/// Every `state.*` check for `effects`, each `git.commit` effect in turn.
pub(crate) fn checks(workspace: &Path, effects: &[Effect], checks: &mut Vec<Check>) {
    let commits: Vec<&Effect> = effects
        .iter()
        .filter(|e| e.effect_type == GIT_COMMIT)
        .collect();
    for effect in &commits {
        git_commit(workspace, effect, effects, checks);
    }
    let other = effects.iter().filter(|effect| {
        let committed = FILE_EFFECTS.contains(&effect.effect_type.as_str())
            && commits
                .iter()
                .any(|c| file_path(&c.resource, effect).is_some());
        effect.effect_type != GIT_COMMIT && !committed
    });
    checks.extend(Check::unchecked(other));
}

/// The effect types a commit's tree diff shows.
const FILE_EFFECTS: [&str; 3] = [FS_WRITE, FS_DELETE, FS_MODE];

/// The path, relative to the repository at `repo`, of a file effect inside it.
fn file_path<'e>(repo: &str, effect: &'e Effect) -> Option<&'e str> {
    let path = effect.detail.get("path")?.as_str()?;
    let expected = if repo == "." {
        path.to_owned()
    } else {
        format!("{repo}/{path}")
    };
    (effect.resource == expected).then_some(path)
}

/// One file change, as the plan states it and as the diff shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    /// Content written: path, blob before (none when created), blob after, mode after.
    Write(String, Option<String>, String, String),
    /// Deleted: path, blob before.
    Delete(String, String),
    /// Mode changed: path, from, to.
    Mode(String, String, String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |id: &str| id.get(..12).unwrap_or(id).to_owned();
        match self {
            Change::Write(path, before, after, mode) => write!(
                f,
                "fs.write {path} {} -> {} ({mode})",
                before.as_deref().map_or_else(|| "new".to_owned(), short),
                short(after)
            ),
            Change::Delete(path, before) => write!(f, "fs.delete {path} {}", short(before)),
            Change::Mode(path, from, to) => write!(f, "fs.mode {path} {from} -> {to}"),
        }
    }
}

/// The plan's file effects inside the repository at `repo`, as changes.
fn planned_changes(repo: &str, effects: &[Effect]) -> Vec<Change> {
    let text = |e: &Effect, key: &str| e.detail.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut changes = Vec::new();
    for effect in effects {
        let Some(path) = file_path(repo, effect) else {
            continue;
        };
        let path = path.to_owned();
        let change = match effect.effect_type.as_str() {
            FS_WRITE => Change::Write(
                path,
                text(effect, "before"),
                text(effect, "after").unwrap_or_default(),
                text(effect, "mode").unwrap_or_default(),
            ),
            FS_DELETE => Change::Delete(path, text(effect, "before").unwrap_or_default()),
            FS_MODE => Change::Mode(
                path,
                text(effect, "from").unwrap_or_default(),
                text(effect, "to").unwrap_or_default(),
            ),
            _ => continue,
        };
        changes.push(change);
    }
    changes.sort();
    changes
}

/// The changes from `from`'s tree to `to`'s, file by file (renames as a delete and a write).
fn committed_changes(
    repo: &Repository,
    from: &git2::Tree<'_>,
    to: &git2::Tree<'_>,
    planned: &[Change],
) -> Result<Vec<Change>, git2::Error> {
    let diff = repo.diff_tree_to_tree(Some(from), Some(to), None)?;
    let mut changes = Vec::new();
    for delta in diff.deltas() {
        let (old, new) = (delta.old_file(), delta.new_file());
        let path = new
            .path()
            .or_else(|| old.path())
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let mode = |m: git2::FileMode| format!("{:o}", u32::from(m));
        match delta.status() {
            git2::Delta::Added => {
                let after = mode(new.mode());
                changes.push(Change::Write(
                    path.clone(),
                    None,
                    new.id().to_string(),
                    after.clone(),
                ));
                // A renamed file whose mode also changed states the mode change on its new
                // path; the diff shows only the file appearing with its new mode.
                changes.extend(
                    planned
                        .iter()
                        .filter(
                            |c| matches!(c, Change::Mode(p, _, to) if *p == path && *to == after),
                        )
                        .cloned(),
                );
            }
            git2::Delta::Deleted => {
                changes.push(Change::Delete(path, old.id().to_string()));
            }
            _ => {
                if old.id() != new.id() {
                    changes.push(Change::Write(
                        path.clone(),
                        Some(old.id().to_string()),
                        new.id().to_string(),
                        mode(new.mode()),
                    ));
                }
                if old.mode() != new.mode() {
                    changes.push(Change::Mode(path, mode(old.mode()), mode(new.mode())));
                }
            }
        }
    }
    changes.sort();
    Ok(changes)
}

/// `state.files`: the commit changed exactly the files the plan said, and nothing else.
fn files_check(
    repo: &Repository,
    at: &str,
    commit: &git2::Commit<'_>,
    from: Oid,
    effects: &[Effect],
) -> Check {
    const NAME: &str = "state.files";
    let planned = planned_changes(at, effects);
    let trees = repo
        .find_commit(from)
        .and_then(|parent| Ok((parent.tree()?, commit.tree()?)));
    let committed = match trees
        .and_then(|(before, after)| committed_changes(repo, &before, &after, &planned))
    {
        Ok(changes) => changes,
        Err(e) => {
            return Check::fail(
                NAME,
                ErrorCode::ExecutionFailed,
                format!(
                    "{at}: cannot diff {from} and {}: {}",
                    commit.id(),
                    e.message()
                ),
            )
        }
    };
    if committed == planned {
        return Check::pass(
            NAME,
            format!(
                "{at}: the commit changes exactly the {} planned file change(s)",
                planned.len()
            ),
        );
    }
    let list = |changes: Vec<&Change>| {
        changes
            .iter()
            .take(8)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let unplanned: Vec<&Change> = committed.iter().filter(|c| !planned.contains(c)).collect();
    let missing: Vec<&Change> = planned.iter().filter(|c| !committed.contains(c)).collect();
    let mut why = Vec::new();
    if !unplanned.is_empty() {
        why.push(format!("committed but not planned: {}", list(unplanned)));
    }
    if !missing.is_empty() {
        why.push(format!("planned but not committed: {}", list(missing)));
    }
    Check::fail(
        NAME,
        ErrorCode::IntegrityMismatch,
        format!("{at}: {}", why.join("; ")),
    )
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

/// The `state.*` checks of one `git.commit` effect; `effects` are all the plan's.
fn git_commit(workspace: &Path, effect: &Effect, effects: &[Effect], checks: &mut Vec<Check>) {
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
            checks.push(files_check(&repo, at, &commit, predicted.from, effects));
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
