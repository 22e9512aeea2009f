//! From params, patch and repository state to a [`Prediction`]: the base, the new blobs,
//! tree and commit, the effects, touches, destructiveness and the preview.
//!
//! All objects are written to an in-memory backend, so computing a prediction writes
//! nothing; `execute` then copies exactly the new objects to disk with [`persist`].

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::Path;

use git2::{Commit, FileMode, ObjectType, Oid, Repository, RepositoryOpenFlags, Signature, Tree};
use protocol::artifact::effect::{Access, Effect, Touch, FS_DELETE, FS_MODE, FS_WRITE, GIT_COMMIT};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::error::ApplyError;
use super::intent::PathChange;
use super::patch::{self, Change, FilePatch, MODE_EXEC, MODE_FILE};
use super::paths::{self, RepoLocation};
use super::{hunks, worktree, ApplyParams, FileState, Prediction};
use mechanism_server::failpoint;

/// The repository, branch and base commit a plan applies to.
pub(crate) struct Target {
    /// Where the repository is.
    pub location: RepoLocation,
    /// The open repository; objects written through it stay in memory.
    pub repo: Repository,
    /// The branch's full ref name.
    pub ref_name: String,
    /// The commit the branch points to.
    pub base: Oid,
    /// Whether the branch is checked out in this (non-bare) repository.
    pub checked_out: bool,
}

/// A tree entry of the base tree: blob id and normalised mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The blob id (zero until the new blob is written).
    pub id: Oid,
    /// `100644` or `100755`.
    pub mode: u32,
}

/// What the patch does to one file, resolved against the base tree.
#[derive(Debug, Clone)]
pub(crate) struct FileOutcome {
    /// The path read from the base tree and its entry (modified, deleted, renamed from).
    pub old: Option<(String, Entry)>,
    /// The path written, its new content and entry (created, modified, renamed to).
    pub new: Option<(String, Vec<u8>, Entry)>,
    /// Whether `old` and `new` are a rename's two ends.
    pub renamed: bool,
    /// An explicit mode change, old to new.
    pub mode_change: Option<(u32, u32)>,
}

impl FileOutcome {
    /// The path removed from the tree: a deletion or a rename's source.
    pub fn removed(&self) -> Option<&str> {
        match (&self.old, &self.new) {
            (Some((path, _)), None) => Some(path),
            (Some((path, _)), Some(_)) if self.renamed => Some(path),
            _ => None,
        }
    }
}

/// Every path the outcomes touch, before and after, in patch order: what an intent records.
pub(crate) fn changes(files: &[FileOutcome]) -> Vec<PathChange> {
    let state = |entry: &Entry| FileState {
        blob: entry.id.to_string(),
        mode: format!("{:o}", entry.mode),
    };
    let mut changes = Vec::new();
    for file in files {
        if let Some(path) = file.removed() {
            changes.push(PathChange {
                path: path.to_owned(),
                before: file.old.as_ref().map(|(_, e)| state(e)),
                after: None,
            });
        }
        if let Some((path, _, entry)) = &file.new {
            let before = match &file.old {
                Some((_, old)) if !file.renamed => Some(state(old)),
                _ => None,
            };
            changes.push(PathChange {
                path: path.clone(),
                before,
                after: Some(state(entry)),
            });
        }
    }
    changes
}

/// The blob and mode at `path` in `tree`, or `None` when no file is there.
pub(crate) fn tree_state(tree: &Tree<'_>, path: &str) -> Result<Option<FileState>, ApplyError> {
    match tree.get_path(Path::new(path)) {
        Ok(entry) if entry.kind() == Some(ObjectType::Blob) => Ok(Some(FileState {
            blob: entry.id().to_string(),
            mode: format!("{:o}", entry.filemode()),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A prediction and the file outcomes execute needs to update the work tree.
pub(crate) struct Built {
    /// The prediction.
    pub prediction: Prediction,
    /// Each file's outcome, in patch order.
    pub files: Vec<FileOutcome>,
}

/// Opens the repository `repo` names, inside the root, without searching parent
/// directories; its git directory and work tree must lie inside the root too.
pub(crate) fn open_repository(
    root: &Path,
    repo: &str,
) -> Result<(RepoLocation, Repository), ApplyError> {
    let location = paths::resolve_repo(root, repo)?;
    let repository = Repository::open_ext(
        &location.dir,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        ApplyError::InvalidParams(format!(
            "repo {repo:?} is not a git repository: {}",
            e.message()
        ))
    })?;
    // A `.git` file, `core.worktree` or a linked worktree may point anywhere.
    paths::require_inside(&location.root, repository.path(), "git directory")?;
    paths::require_inside(
        &location.root,
        repository.commondir(),
        "common git directory",
    )?;
    if let Some(workdir) = repository.workdir() {
        paths::require_inside(&location.root, workdir, "work tree")?;
        if workdir.canonicalize().ok().as_deref() != Some(location.dir.as_path()) {
            return Err(ApplyError::InvalidParams(format!(
                "repo {repo:?} is not the top of a work tree; name the directory that holds `.git`"
            )));
        }
    }
    Ok((location, repository))
}

impl Target {
    /// Opens the repository and resolves the branch and its base commit.
    pub fn open(root: &Path, params: &ApplyParams) -> Result<Self, ApplyError> {
        let (location, repo) = open_repository(root, &params.repo)?;
        let head = head_branch(&repo)?;
        let ref_name = match &params.branch {
            Some(branch) => {
                let full = if branch.starts_with("refs/heads/") {
                    branch.clone()
                } else {
                    format!("refs/heads/{branch}")
                };
                if !git2::Reference::is_valid_name(&full) {
                    return Err(ApplyError::InvalidParams(format!(
                        "branch {branch:?} is not a valid branch name"
                    )));
                }
                full
            }
            None => match &head {
                Some(name) if name.starts_with("refs/heads/") => name.clone(),
                Some(name) => {
                    return Err(ApplyError::InvalidParams(format!(
                        "HEAD points to {name}, not a branch; name a branch"
                    )))
                }
                None => {
                    return Err(ApplyError::InvalidParams(
                        "HEAD is detached; name a branch".to_owned(),
                    ))
                }
            },
        };
        let reference = match repo.find_reference(&ref_name) {
            Ok(reference) => reference.target(),
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(ApplyError::InvalidParams(format!(
                    "branch {ref_name} does not exist or has no commits yet"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let base = reference.ok_or_else(|| {
            ApplyError::InvalidParams(format!("{ref_name} is a symbolic ref, not a branch"))
        })?;
        repo.find_commit(base).map_err(|_| {
            ApplyError::InvalidParams(format!("{ref_name} does not point to a commit"))
        })?;
        let checked_out = checked_out(&repo, &ref_name)?;
        // The repository keeps the backend once added: our handles to it can go.
        repo.odb()?.add_new_mempack_backend(MEMPACK_PRIORITY)?;
        Ok(Self {
            location,
            repo,
            ref_name,
            base,
            checked_out,
        })
    }
}

/// Whether the branch `ref_name` is the one checked out (`HEAD` names it) in a repository
/// with a work tree.
pub(crate) fn checked_out(repo: &Repository, ref_name: &str) -> Result<bool, ApplyError> {
    Ok(!repo.is_bare() && head_branch(repo)?.as_deref() == Some(ref_name))
}

/// The ref `HEAD` names, unless it is detached or missing.
fn head_branch(repo: &Repository) -> Result<Option<String>, ApplyError> {
    match repo.find_reference("HEAD") {
        Ok(head) => Ok(head.symbolic_target()?.map(str::to_owned)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The trees of one repository read so far, each read (inflated, hashed, parsed) once:
/// touched paths share their directories, and libgit2 keeps no tree over 4 KiB in its own
/// cache, so a large directory would otherwise be read again for every path through it.
pub(crate) struct Trees<'r> {
    repo: &'r Repository,
    read: RefCell<HashMap<Oid, Tree<'r>>>,
}

impl<'r> Trees<'r> {
    /// No tree read yet.
    pub fn new(repo: &'r Repository) -> Self {
        Self {
            repo,
            read: RefCell::new(HashMap::new()),
        }
    }

    /// The tree `id`.
    pub fn find(&self, id: Oid) -> Result<Tree<'r>, git2::Error> {
        if let Some(tree) = self.read.borrow().get(&id) {
            return Ok(tree.clone());
        }
        let tree = self.repo.find_tree(id)?;
        self.read.borrow_mut().insert(id, tree.clone());
        Ok(tree)
    }
}

/// Higher than every on-disk backend, so object writes land in memory.
const MEMPACK_PRIORITY: i32 = 1000;

/// Computes the prediction; new objects stay in memory.
pub(crate) fn build(
    target: &Target,
    params: &ApplyParams,
    patch_bytes: &[u8],
    with_preview: bool,
) -> Result<Built, ApplyError> {
    let repo = &target.repo;
    let base_commit = repo.find_commit(target.base)?;
    let (when, time) = commit_time(params.time.as_deref(), &base_commit)?;
    let signature = Signature::new(&params.author.name, &params.author.email, &when)
        .map_err(|e| ApplyError::InvalidParams(format!("author: {}", e.message())))?;
    let message = git2::message_prettify(params.message.as_str(), None)
        .map_err(|e| ApplyError::InvalidParams(format!("message: {}", e.message())))?;
    if message.is_empty() {
        return Err(ApplyError::InvalidParams(
            "the commit message is empty".to_owned(),
        ));
    }

    let strip = params.strip.unwrap_or(super::DEFAULT_STRIP) as usize;
    let patch = patch::parse(patch_bytes, strip)?;
    let base_tree = base_commit.tree()?;
    // The mails of an mbox apply in turn, each to the tree the ones before it made; what
    // the plan records is their sum, each path from the base tree to the last tree.
    let trees = Trees::new(repo);
    let mut new_tree = base_tree.clone();
    let mut mails = Vec::new();
    for mail in patch.files.chunk_by(|a, b| a.mail == b.mail) {
        let (outcomes, tree) = apply_mail(&trees, &new_tree, mail)?;
        mails.push(outcomes);
        new_tree = tree;
    }
    let files = match <[_; 1]>::try_from(mails) {
        Ok([only]) => only,
        Err(mails) => sum(mails),
    };
    let new_tree_id = new_tree.id();
    check_collisions(&trees, &new_tree, &files)?;

    let buffer =
        repo.commit_create_buffer(&signature, &signature, &message, &new_tree, &[&base_commit])?;
    let new_commit = repo.odb()?.write(ObjectType::Commit, &buffer)?;

    let repo_name = target.location.name.as_str();
    let worktree = if target.checked_out {
        worktree::facts(repo, &target.location.dir, &files)?
    } else {
        Vec::new()
    };
    let mut destructive_reasons = file_reasons(&files);
    destructive_reasons.extend(worktree::reasons(&worktree));
    let mut effects = file_effects(repo_name, &files);
    effects.push(
        Effect::new(GIT_COMMIT, repo_name)
            .with("ref", target.ref_name.as_str())
            .with("from", target.base.to_string())
            .with("to", new_commit.to_string())
            .with("tree", new_tree_id.to_string()),
    );
    // The preview is for people and not part of the plan; a recomputation to compare or to
    // execute skips it (it is a third of the work of a plan).
    let preview = if with_preview {
        preview(repo, &files)?
    } else {
        String::new()
    };

    let prediction = Prediction {
        repo: repo_name.to_owned(),
        ref_name: target.ref_name.clone(),
        base_commit: target.base.to_string(),
        base_tree: base_tree.id().to_string(),
        new_tree: new_tree_id.to_string(),
        new_commit: new_commit.to_string(),
        author: params.author.clone(),
        time,
        message,
        checked_out: target.checked_out,
        effects,
        touches: touches(repo_name, &files),
        destructive: !destructive_reasons.is_empty(),
        destructive_reasons,
        worktree,
        preview,
    };
    failpoint::hit("git:predicted");
    Ok(Built { prediction, files })
}

/// Applies the file patches of one diff to `tree`: their outcomes, the new blobs written,
/// and the tree they make.
fn apply_mail<'r>(
    trees: &Trees<'r>,
    tree: &Tree<'r>,
    patches: &[FilePatch],
) -> Result<(Vec<FileOutcome>, Tree<'r>), ApplyError> {
    let repo = trees.repo;
    check_paths(trees, tree, patches)?;
    let mut files = patches
        .iter()
        .map(|file| resolve(trees, tree, file))
        .collect::<Result<Vec<_>, _>>()?;

    // Blobs are stored only once every file applied: a patch that does not apply costs
    // no compression.
    let mut updates = git2::build::TreeUpdateBuilder::new();
    for file in &mut files {
        if let Some(path) = file.removed() {
            updates.remove(path);
        }
        if let Some((path, content, entry)) = &mut file.new {
            entry.id = repo.blob(content)?;
            updates.upsert(path.as_str(), entry.id, file_mode(entry.mode));
        }
    }
    let id = updates.create_updated(repo, tree)?;
    Ok((files, trees.find(id)?))
}

/// The outcomes of mails applied in turn, summed into one outcome per path changed from the
/// base tree to the last tree, in the order paths were first touched: a path created then
/// deleted, or edited back, is no outcome; a rename (through any edits and further renames)
/// stays one as said below.
fn sum(mails: Vec<Vec<FileOutcome>>) -> Vec<FileOutcome> {
    let mut order: Vec<String> = Vec::new();
    let mut base: HashMap<String, Option<Entry>> = HashMap::new();
    let mut last: HashMap<String, Option<(Vec<u8>, Entry)>> = HashMap::new();
    // The base path a path's content was renamed from.
    let mut origin: HashMap<String, String> = HashMap::new();
    for file in mails.into_iter().flatten() {
        let mut touch = |path: &str, entry: Option<Entry>| {
            if !base.contains_key(path) {
                order.push(path.to_owned());
                base.insert(path.to_owned(), entry);
            }
        };
        if let Some((path, entry)) = &file.old {
            touch(path, Some(*entry));
        }
        if let Some((path, _, _)) = &file.new {
            touch(path, None);
        }
        let mut source = None;
        if let Some(path) = file.removed() {
            last.insert(path.to_owned(), None);
            source = origin
                .remove(path)
                .or_else(|| matches!(base.get(path), Some(Some(_))).then(|| path.to_owned()));
        }
        if let Some((path, content, entry)) = file.new {
            if file.renamed {
                match source {
                    Some(from) => origin.insert(path.clone(), from),
                    None => origin.remove(&path),
                };
            } else if file.old.is_none() {
                origin.remove(&path);
            }
            last.insert(path, Some((content, entry)));
        }
    }
    // A rename stays one when its source is gone at the end and its target was not in the
    // base tree; otherwise each end is summed as a path of its own.
    let renames: HashMap<&str, &str> = origin
        .iter()
        .filter(|(to, from)| {
            to != from
                && matches!(last.get(from.as_str()), Some(None))
                && matches!(base.get(to.as_str()), Some(None))
        })
        .map(|(to, from)| (from.as_str(), to.as_str()))
        .collect();
    let renamed_to: HashSet<&str> = renames.values().copied().collect();
    let mut files = Vec::new();
    for path in &order {
        if renamed_to.contains(path.as_str()) {
            continue;
        }
        let old = base.get(path).copied().flatten();
        let (new_path, renamed) = match renames.get(path.as_str()) {
            Some(to) => (*to, true),
            None => (path.as_str(), false),
        };
        let new = last.get(new_path).cloned().flatten();
        let unchanged = match (&old, &new) {
            (Some(old), Some((_, new))) => !renamed && old == new,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            continue;
        }
        let mode_change = match (&old, &new) {
            (Some(old), Some((_, new))) if old.mode != new.mode => Some((old.mode, new.mode)),
            _ => None,
        };
        files.push(FileOutcome {
            old: old.map(|entry| (path.clone(), entry)),
            new: new.map(|(content, entry)| (new_path.to_owned(), content, entry)),
            renamed,
            mode_change,
        });
    }
    files
}

/// The first second a commit cannot hold: libgit2 writes a commit's time as an unsigned
/// 32-bit number of seconds since 1970, so later times (and earlier ones) would wrap.
const TIME_END: i64 = 1 << 32;

/// The given RFC 3339 time, or one second after the base commit's committer time in its
/// offset: never the clock, so the same inputs give the same commit. Either must lie in
/// what a commit can hold, 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z.
fn commit_time(given: Option<&str>, base: &Commit<'_>) -> Result<(git2::Time, String), ApplyError> {
    let invalid = |why: String| ApplyError::InvalidParams(format!("time: {why}"));
    let (seconds, offset_seconds) = match given {
        Some(text) => {
            let parsed = OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|e| invalid(format!("{text:?} is not RFC 3339: {e}")))?;
            if parsed.nanosecond() != 0 {
                return Err(invalid(format!(
                    "{text:?} has a fraction of a second; git keeps whole seconds"
                )));
            }
            (parsed.unix_timestamp(), parsed.offset().whole_seconds())
        }
        None => {
            let when = base.committer().when();
            (when.seconds().saturating_add(1), when.offset_minutes() * 60)
        }
    };
    if !(0..TIME_END).contains(&seconds) {
        let what = match given {
            Some(text) => format!("{text:?} is"),
            None => "one second after the base commit's time is".to_owned(),
        };
        return Err(invalid(format!(
            "{what} outside what a git commit holds, 1970-01-01T00:00:00Z to \
             2106-02-07T06:28:15Z; give a time in that range"
        )));
    }
    if offset_seconds % 60 != 0 {
        return Err(invalid(
            "the offset is not a whole number of minutes".to_owned(),
        ));
    }
    let offset = UtcOffset::from_whole_seconds(offset_seconds)
        .map_err(|e| invalid(format!("offset: {e}")))?;
    let text = OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| invalid(e.to_string()))?
        .to_offset(offset)
        .format(&Rfc3339)
        .map_err(|e| invalid(e.to_string()))?;
    Ok((git2::Time::new(seconds, offset_seconds / 60), text))
}

/// No path is or passes through a symlink or submodule of the base tree, each file is
/// patched once, and no new path is both a file and the directory of another. Safety comes
/// first, so that an unsafe path is refused as such whatever else is wrong: a rename of a
/// symlink then a write under its new name is a symlink, not a malformed patch. (The
/// names themselves were checked as they were parsed.)
fn check_paths(trees: &Trees<'_>, base: &Tree<'_>, files: &[FilePatch]) -> Result<(), ApplyError> {
    for file in files {
        for name in [file.old_path(), file.new_path()].into_iter().flatten() {
            lookup(trees, base, name)?;
        }
    }
    let mut seen = HashSet::new();
    let mut written = BTreeSet::new();
    for file in files {
        let names: BTreeSet<&str> = [file.old_path(), file.new_path()]
            .into_iter()
            .flatten()
            .collect();
        for name in names {
            if !seen.insert(name) {
                return Err(ApplyError::InvalidParams(format!(
                    "patch line {}: {name:?} is patched more than once",
                    file.line
                )));
            }
        }
        written.extend(file.new_path());
    }
    for path in &written {
        let mut prefix = *path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if written.contains(parent) {
                return Err(ApplyError::InvalidParams(format!(
                    "the patch writes both {parent:?} and {path:?}"
                )));
            }
            prefix = parent;
        }
    }
    Ok(())
}

/// Applies one file patch to the base tree in memory (the new blob id is set later).
fn resolve(
    trees: &Trees<'_>,
    base: &Tree<'_>,
    file: &FilePatch,
) -> Result<FileOutcome, ApplyError> {
    let repo = trees.repo;
    let not_apply = |path: &str, why: String| {
        ApplyError::InvalidParams(format!(
            "the patch does not apply: {path:?} (patch line {}): {why}",
            file.line
        ))
    };
    let existing = |path: &str| -> Result<Entry, ApplyError> {
        base_entry(trees, base, path)?
            .ok_or_else(|| not_apply(path, "it does not exist in the base tree".to_owned()))
    };
    let absent = |path: &str| -> Result<(), ApplyError> {
        match base_entry(trees, base, path)? {
            Some(_) => Err(not_apply(
                path,
                "it already exists in the base tree".to_owned(),
            )),
            None => Ok(()),
        }
    };
    let patched = |path: &str, content: &[u8]| {
        hunks::apply(content, &file.hunks).map_err(|why| not_apply(path, why))
    };
    let (old_path, new_path, renamed) = match &file.change {
        Change::Create { path, .. } => (None, Some(path), false),
        Change::Delete { path } => (Some(path), None, false),
        Change::Modify { path } => (Some(path), Some(path), false),
        Change::Rename { from, to } => (Some(from), Some(to), true),
    };
    let old = match old_path {
        Some(path) => Some((path.clone(), existing(path)?)),
        None => None,
    };
    if renamed {
        if let Some(path) = new_path {
            absent(path)?;
        }
    }
    let content = match &old {
        Some((_, entry)) => repo.find_blob(entry.id)?.content().to_vec(),
        None => Vec::new(),
    };
    let new = match (new_path, &file.change) {
        (None, _) => {
            let path = old_path.map(String::as_str).unwrap_or_default();
            if !patched(path, &content)?.is_empty() {
                return Err(not_apply(
                    path,
                    "the deletion does not remove every line of the file".to_owned(),
                ));
            }
            None
        }
        (Some(path), Change::Create { mode, .. }) => {
            absent(path)?;
            let content = patched(path, &content)?;
            Some((
                path.clone(),
                content,
                Entry {
                    id: Oid::ZERO_SHA1,
                    mode: *mode,
                },
            ))
        }
        (Some(path), _) => {
            let mut mode = old.as_ref().map(|(_, e)| e.mode).unwrap_or(MODE_FILE);
            if let Some((from, to)) = file.mode_change {
                if from != mode {
                    return Err(not_apply(
                        path,
                        format!("its mode is {mode:o}, the patch expects {from:o}"),
                    ));
                }
                mode = to;
            }
            let content = if file.hunks.is_empty() {
                content
            } else {
                patched(path, &content)?
            };
            Some((
                path.clone(),
                content,
                Entry {
                    id: Oid::ZERO_SHA1,
                    mode,
                },
            ))
        }
    };
    Ok(FileOutcome {
        old,
        new,
        renamed,
        mode_change: file.mode_change,
    })
}

/// The base tree's entry at `path`: a file, or nothing. A symlink or submodule on the way
/// or at the end is refused; a file on the way or a directory at the end means the patch
/// does not apply.
fn base_entry(trees: &Trees<'_>, base: &Tree<'_>, path: &str) -> Result<Option<Entry>, ApplyError> {
    match lookup(trees, base, path)? {
        Found::Nothing => Ok(None),
        Found::File(entry) => Ok(Some(entry)),
        Found::Directory => Err(ApplyError::InvalidParams(format!(
            "the patch does not apply: {path:?} is a directory in the base tree"
        ))),
        Found::UnderFile(at) => Err(ApplyError::InvalidParams(format!(
            "the patch does not apply: {at:?} is a file in the base tree, so {path:?} \
             cannot be in it (replacing a file by a directory is not supported)"
        ))),
    }
}

/// What the base tree holds at a path.
enum Found {
    /// Nothing there.
    Nothing,
    /// A regular or executable file.
    File(Entry),
    /// A directory.
    Directory,
    /// A file (named) on the way to the path.
    UnderFile(String),
}

/// Walks the base tree to `path` one component at a time; a symlink or submodule on the
/// way or at the end is refused.
fn lookup(trees: &Trees<'_>, base: &Tree<'_>, path: &str) -> Result<Found, ApplyError> {
    let components: Vec<&str> = path.split('/').collect();
    let mut tree = base.clone();
    for (i, name) in components.iter().enumerate() {
        let at = components[..=i].join("/");
        let last = i + 1 == components.len();
        let (id, mode) = match tree.get_name(name) {
            Some(entry) => (entry.id(), entry.filemode() as u32),
            None => return Ok(Found::Nothing),
        };
        match mode {
            0o040000 if !last => tree = trees.find(id)?,
            0o040000 => return Ok(Found::Directory),
            0o120000 => {
                return Err(ApplyError::PathRefused(if last {
                    format!("path {path:?} refused: it is a symbolic link in the base tree")
                } else {
                    format!("path {path:?} refused: it passes through the symbolic link {at:?}")
                }))
            }
            0o160000 => {
                return Err(ApplyError::PathRefused(format!(
                    "path {path:?} refused: {at:?} is a submodule"
                )))
            }
            _ if last => {
                let mode = if mode == MODE_EXEC {
                    MODE_EXEC
                } else {
                    MODE_FILE
                };
                return Ok(Found::File(Entry { id, mode }));
            }
            _ => return Ok(Found::UnderFile(at)),
        }
    }
    Ok(Found::Nothing)
}

fn file_mode(mode: u32) -> FileMode {
    if mode == MODE_EXEC {
        FileMode::BlobExecutable
    } else {
        FileMode::Blob
    }
}

/// Refuses a written path whose name, or the name of a directory on its way, equals a
/// sibling's in the new tree up to case or Unicode normal form. Only the directories on
/// the written paths are read, each once.
fn check_collisions(
    trees: &Trees<'_>,
    new_tree: &Tree<'_>,
    files: &[FileOutcome],
) -> Result<(), ApplyError> {
    let mut checked: HashSet<(Oid, String)> = HashSet::new();
    for (path, _, _) in files.iter().filter_map(|f| f.new.as_ref()) {
        let mut tree = new_tree.clone();
        let components: Vec<&str> = path.split('/').collect();
        for (i, name) in components.iter().enumerate() {
            if checked.insert((tree.id(), (*name).to_owned())) {
                let key = paths::collision_key(name);
                for sibling in tree.iter() {
                    // A name that is not UTF-8 cannot equal a UTF-8 one under normalisation.
                    let Ok(other) = sibling.name() else { continue };
                    if other != *name && paths::collision_key(other) == key {
                        let dir = components[..i].join("/");
                        let join = |n: &str| {
                            if dir.is_empty() {
                                n.to_owned()
                            } else {
                                format!("{dir}/{n}")
                            }
                        };
                        return Err(ApplyError::PathRefused(format!(
                            "path {path:?} refused: {:?} and {:?} differ only in case or \
                             Unicode normal form",
                            join(name),
                            join(other)
                        )));
                    }
                }
            }
            if i + 1 < components.len() {
                let id = tree.get_name(name).map(|e| e.id()).ok_or_else(|| {
                    ApplyError::Internal(format!("{path:?} is missing from the new tree"))
                })?;
                tree = trees.find(id)?;
            }
        }
    }
    Ok(())
}

fn mode_text(mode: u32) -> String {
    format!("{mode:o}")
}

/// `fs.delete`, `fs.write` and `fs.mode` effects, in patch order.
fn file_effects(repo: &str, files: &[FileOutcome]) -> Vec<Effect> {
    let mut effects = Vec::new();
    for file in files {
        if let Some(path) = file.removed() {
            let entry = file.old.as_ref().map(|(_, e)| *e);
            effects.push(
                Effect::new(FS_DELETE, paths::resource(repo, path))
                    .with("path", path)
                    .with("before", entry.map(|e| e.id.to_string()))
                    .with("mode", entry.map(|e| mode_text(e.mode))),
            );
        }
        if let Some((path, content, entry)) = &file.new {
            let before = match &file.old {
                Some((_, old)) if !file.renamed => Some(*old),
                _ => None,
            };
            if before.map(|b| b.id) != Some(entry.id) {
                let mut effect = Effect::new(FS_WRITE, paths::resource(repo, path))
                    .with("path", path.as_str())
                    .with("before", before.map(|b| b.id.to_string()))
                    .with("after", entry.id.to_string())
                    .with("mode", mode_text(entry.mode))
                    .with("size", content.len());
                if file.renamed {
                    if let Some((from, _)) = &file.old {
                        effect = effect.with("renamed_from", from.as_str());
                    }
                }
                effects.push(effect);
            }
            if let Some((from, to)) = file.mode_change {
                effects.push(
                    Effect::new(FS_MODE, paths::resource(repo, path))
                        .with("path", path.as_str())
                        .with("from", mode_text(from))
                        .with("to", mode_text(to)),
                );
            }
        }
    }
    effects
}

/// Every path read, written or deleted, and the repository (its ref) written; sorted.
fn touches(repo: &str, files: &[FileOutcome]) -> Vec<Touch> {
    let mut touches = BTreeSet::new();
    let mut touch = |path: &str, access| {
        touches.insert(Touch {
            resource: paths::resource(repo, path),
            access,
        });
    };
    for file in files {
        if let Some((path, _)) = &file.old {
            touch(path, Access::Read);
        }
        if let Some(path) = file.removed() {
            touch(path, Access::Delete);
        }
        if let Some((path, _, _)) = &file.new {
            touch(path, Access::Write);
        }
    }
    touches.insert(Touch {
        resource: repo.to_owned(),
        access: Access::Write,
    });
    touches.into_iter().collect()
}

/// Deletions and mode changes, one reason each.
fn file_reasons(files: &[FileOutcome]) -> Vec<String> {
    let mut reasons = Vec::new();
    for file in files {
        if let (Some((path, _)), None) = (&file.old, &file.new) {
            reasons.push(format!("deletes {path}"));
        }
        if let (Some((from, to)), Some((path, _, _))) = (file.mode_change, &file.new) {
            reasons.push(format!(
                "changes the mode of {path} from {from:o} to {to:o}"
            ));
        }
    }
    reasons
}

/// A patch-format diff of the base tree against the new tree for the touched paths:
/// git's diff (renames detected) of two small trees holding only the touched entries, as
/// a diff of the full trees would walk every directory when the paths share no prefix.
/// It runs on the bare object database, so neither the index nor `.gitattributes` in the
/// work tree is read: the preview depends on the objects alone.
fn preview(target: &Repository, files: &[FileOutcome]) -> Result<String, ApplyError> {
    let objects = Repository::from_odb(target.odb()?)?;
    let repo = &objects;
    let empty = repo.find_tree(repo.treebuilder(None)?.write()?)?;
    let mut before = git2::build::TreeUpdateBuilder::new();
    let mut after = git2::build::TreeUpdateBuilder::new();
    for file in files {
        if let Some((path, entry)) = &file.old {
            before.upsert(path.as_str(), entry.id, file_mode(entry.mode));
        }
        if let Some((path, _, entry)) = &file.new {
            after.upsert(path.as_str(), entry.id, file_mode(entry.mode));
        }
    }
    let before = repo.find_tree(before.create_updated(repo, &empty)?)?;
    let after = repo.find_tree(after.create_updated(repo, &empty)?)?;
    let mut diff = repo.diff_tree_to_tree(Some(&before), Some(&after), None)?;
    diff.find_similar(Some(git2::DiffFindOptions::new().renames(true)))?;
    let mut text = Vec::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            text.push(line.origin() as u8);
        }
        text.extend_from_slice(line.content());
        true
    })?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Copies the objects a build made (new blobs, the new trees along the touched paths,
/// children first, then the commit) from memory to the object database of `disk`, the
/// repository opened on disk (without the in-memory backend), and returns it.
///
/// Each object is written into a scratch repository at `staging` (in our own directory,
/// which recovery empties) and renamed into the object database whole: libgit2 writes an
/// object through a temporary file beside the objects, which a kill would leave there.
pub(crate) fn persist(
    target: &Target,
    built: &Built,
    disk: Repository,
    staging: &Path,
) -> Result<Repository, ApplyError> {
    let mut ids: Vec<Oid> = built
        .files
        .iter()
        .filter_map(|f| f.new.as_ref().map(|(_, _, entry)| entry.id))
        .collect();
    let new_tree = target
        .repo
        .find_tree(Oid::from_str(&built.prediction.new_tree)?)?;
    let read = Trees::new(&target.repo);
    let mut trees: Vec<(usize, Oid)> = vec![(0, new_tree.id())];
    for path in built.files.iter().flat_map(|f| {
        [
            f.old.as_ref().map(|o| o.0.as_str()),
            f.new.as_ref().map(|n| n.0.as_str()),
        ]
    }) {
        let Some(path) = path else { continue };
        let mut tree = new_tree.clone();
        let directories = path.split('/').count() - 1;
        for (depth, name) in path.split('/').take(directories).enumerate() {
            let Some(id) = tree.get_name(name).map(|e| e.id()) else {
                break;
            };
            trees.push((depth + 1, id));
            tree = read.find(id)?;
        }
    }
    trees.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    trees.dedup();
    ids.extend(trees.into_iter().map(|(_, id)| id));
    ids.push(Oid::from_str(&built.prediction.new_commit)?);
    {
        let memory = target.repo.odb()?;
        let disk_odb = disk.odb()?;
        let objects = disk.commondir().join("objects");
        let mut scratch = None;
        for id in ids {
            // Writing an object already there would only touch its file's mtime.
            if disk_odb.exists(id) {
                continue;
            }
            let scratch = match &mut scratch {
                Some(scratch) => scratch,
                // Without git's template directory: its sample hooks are a dozen files
                // written, and removed again, for nothing.
                None => scratch.insert(Repository::init_opts(
                    staging,
                    git2::RepositoryInitOptions::new()
                        .bare(true)
                        .external_template(false),
                )?),
            };
            let object = memory.read(id)?;
            let written = scratch.odb()?.write(object.kind(), object.data())?;
            if written != id {
                return Err(ApplyError::Internal(format!(
                    "object {id} was written as {written}"
                )));
            }
            failpoint::hit("git:object-staged");
            let hex = id.to_string();
            let (fan_out, name) = hex.split_at(2);
            let moved = fs::create_dir_all(objects.join(fan_out)).and_then(|()| {
                fs::rename(
                    staging.join("objects").join(fan_out).join(name),
                    objects.join(fan_out).join(name),
                )
            });
            moved.map_err(|e| {
                ApplyError::ExecutionFailed(format!("moving object {id} into place: {e}"))
            })?;
        }
        if scratch.is_some() {
            // Left behind, it is removed by the next execute's recovery.
            if let Err(error) = fs::remove_dir_all(staging) {
                tracing::warn!(staging = %staging.display(), %error, "removing the scratch repository");
            }
        }
    }
    Ok(disk)
}
