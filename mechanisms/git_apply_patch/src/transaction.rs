//! Execute as a transaction that survives `kill -9` at any instant.
//!
//! 1. Take our [`RepoLock`], then git's own locks on the branch and, when the branch is
//!    checked out, on the index ([`Held::take`]): `BUSY` while anyone else holds one.
//! 2. Check the branch is still at the base and the plan unchanged, write the new objects
//!    (each through a scratch repository in our directory, then renamed into place).
//! 3. Write the [`Intent`] durably, then pass the runtime's point of no return (deadline
//!    and cancellation checked a last time, the force-ack's nonce claimed); if that
//!    refuses, remove the intent. From here the effect is rolled forward, never back.
//! 4. [`roll_forward`]: rewrite the touched work-tree paths, stage the index in its lock
//!    file and rename it, then move the branch (its lock file renamed over it, reflog
//!    appended) last.
//! 5. Remove the intent.
//!
//! Every step of (4) is idempotent, so [`recover`] simply runs it again from the intent
//! (each "after" object is already in the object database) after removing the temporary
//! files a killed execute left. Without an intent there is nothing to finish: recovery only
//! drops the lock files our dead execute held, which it recognises as its own (see
//! [`super::lock`]).

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::error::ApplyError;
use super::intent::{self, Intent, IntentFile, PathChange};
use super::lock::{self, GitLock, RepoLock};
use super::worktree;
use mechanism_server::failpoint;

/// Under our directory, the owner files of the git locks we hold, named as the locks.
const OWNERS: &str = "owners";
/// The name of the index's lock among the owners.
const INDEX: &str = "index";
/// Under our directory, where the index's next version is staged.
const STAGED: &str = "staged";

/// Where the files of one repository's transactions live.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// Our directory in the git directory: the intent, the owner files of our git locks,
    /// the staged index.
    pub ours: PathBuf,
    /// The index file.
    pub index: PathBuf,
    /// The common git directory, where refs and their logs live.
    pub common: PathBuf,
    /// The (per-worktree) git directory, where `HEAD` and its log live.
    pub git_dir: PathBuf,
    /// The work tree, when the repository has one.
    pub workdir: Option<PathBuf>,
}

impl Paths {
    /// The transaction files of `repo`.
    pub fn of(repo: &Repository) -> Self {
        let git_dir = repo.path().to_path_buf();
        Self {
            ours: git_dir.join(intent::DIR),
            index: git_dir.join("index"),
            common: repo.commondir().to_path_buf(),
            workdir: repo.workdir().map(Path::to_path_buf),
            git_dir,
        }
    }

    fn intent(&self) -> IntentFile {
        IntentFile::in_dir(&self.ours)
    }

    /// The owner file of the lock on `name` (`index`, or a ref's full name): it mirrors the
    /// name, so a leftover says what it locked.
    fn owner(&self, name: &str) -> PathBuf {
        self.ours.join(OWNERS).join(name)
    }

    /// The file the lock named `name` protects.
    fn locked(&self, name: &str) -> PathBuf {
        if name == INDEX {
            self.index.clone()
        } else {
            self.common.join(name)
        }
    }

    /// Where the next version of the lock named `name` is staged, for the index only (a
    /// ref's few bytes are written into its lock).
    fn staged(&self, name: &str) -> Option<PathBuf> {
        (name == INDEX).then(|| self.ours.join(STAGED).join(INDEX))
    }

    /// Where the new objects are written before they are moved into the object database:
    /// a scratch repository among the staged files, which recovery removes.
    pub fn object_staging(&self) -> PathBuf {
        self.ours.join(STAGED).join("objects")
    }

    /// Whether an execute of some plan is past its point of no return and unfinished.
    pub fn has_intent(&self) -> bool {
        self.intent().exists()
    }

    /// The plan whose execute is past its point of no return and unfinished, if any.
    pub fn pending_plan(&self) -> Result<Option<String>, ApplyError> {
        Ok(self.intent().read()?.map(|intent| intent.plan))
    }
}

/// Git's locks an execute holds while it changes the repository.
pub(crate) struct Held {
    reference: GitLock,
    index: Option<GitLock>,
}

impl Held {
    /// Takes the branch's lock and, when `with_index`, the index's; `BUSY` when another
    /// program holds either. Call with the [`RepoLock`] held.
    pub fn take(paths: &Paths, ref_name: &str, with_index: bool) -> Result<Self, ApplyError> {
        let reference = GitLock::acquire(&paths.locked(ref_name), &paths.owner(ref_name), None)?;
        let index = if with_index {
            let staged = paths.staged(INDEX);
            Some(GitLock::acquire(
                &paths.index,
                &paths.owner(INDEX),
                staged.as_deref(),
            )?)
        } else {
            None
        };
        Ok(Self { reference, index })
    }

    /// Past the point of no return: a failure leaves the locks for recovery.
    pub fn keep_on_failure(&mut self) {
        self.reference.keep_on_failure();
        if let Some(index) = &mut self.index {
            index.keep_on_failure();
        }
    }
}

/// Removes our directory's empty subdirectories, and the directory itself when it is empty,
/// when dropped: an execute, refused or done, leaves no trace of its bookkeeping. Declare it
/// after the [`RepoLock`], so it runs while the lock is still held.
pub(crate) struct Tidy<'a>(pub &'a Paths);

impl Drop for Tidy<'_> {
    fn drop(&mut self) {
        remove_empty_dirs(&self.0.ours);
    }
}

/// Removes `dir` and its subdirectories, bottom up, as far as they are empty.
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    // Fails, harmlessly, on a directory that still holds something.
    let _ = fs::remove_dir(dir);
}

/// Supplies the content of a path's "after" blob.
pub(crate) type Content<'a> = dyn Fn(&PathChange, Oid) -> Result<Cow<'a, [u8]>, ApplyError> + 'a;

/// Writes the intent, passes the point of no return with `commit`, rolls the intent forward
/// and removes it: steps 3 to 5 of the module docs. When writing the intent or `commit`
/// fails, the intent is removed and the locks released: nothing changed.
pub(crate) fn apply(
    repo: &Repository,
    paths: &Paths,
    intent: &Intent,
    held: Held,
    content: &Content<'_>,
    commit: impl FnOnce() -> Result<(), ApplyError>,
) -> Result<(), ApplyError> {
    let committed = paths.intent().write(intent).and_then(|()| {
        failpoint::hit("git:intent");
        commit()
    });
    if let Err(error) = committed {
        paths.intent().remove()?;
        return Err(error);
    }
    finish(repo, paths, intent, held, content)
}

/// Rolls a recorded intent forward and removes it; a failure leaves both it and the locks
/// for recovery.
fn finish(
    repo: &Repository,
    paths: &Paths,
    intent: &Intent,
    mut held: Held,
    content: &Content<'_>,
) -> Result<(), ApplyError> {
    held.keep_on_failure();
    roll_forward(repo, paths, intent, held, content)?;
    paths.intent().remove()?;
    failpoint::hit("git:done");
    Ok(())
}

/// Finishes the execute a killed process left past its point of no return, if any, and
/// drops whatever locks and temporary files a killed execute left. Returns the intent it
/// finished. Call with the [`RepoLock`] held.
pub(crate) fn recover(
    repo: &Repository,
    paths: &Paths,
    _lock: &RepoLock,
) -> Result<Option<Intent>, ApplyError> {
    let file = paths.intent();
    let Some(intent) = file.read()? else {
        release_leftovers(paths)?;
        return Ok(None);
    };
    tracing::warn!(plan = %intent.plan, "finishing an execute that was interrupted");
    let held = Held::take(paths, &intent.ref_name, intent.checked_out)?;
    if let (true, Some(workdir)) = (intent.checked_out, &paths.workdir) {
        worktree::remove_temporaries(workdir, &intent.paths)?;
    }
    let odb = repo.odb()?;
    let content = |change: &PathChange, id: Oid| -> Result<Cow<'_, [u8]>, ApplyError> {
        let object = odb.read(id).map_err(|e| {
            ApplyError::ExecutionFailed(format!(
                "the new content of {} ({id}) is missing from the object database: {}",
                change.path,
                e.message()
            ))
        })?;
        Ok(Cow::Owned(object.data().to_vec()))
    };
    // Its point of no return was passed once the intent was written; the runtime makes
    // sure of its own half (the force-ack's nonce) when it records the result.
    finish(repo, paths, &intent, held, &content)?;
    Ok(Some(intent))
}

/// Drops the lock files a killed execute held before its point of no return (ours only),
/// and its temporary files.
fn release_leftovers(paths: &Paths) -> Result<(), ApplyError> {
    let owners = paths.ours.join(OWNERS);
    let mut found = Vec::new();
    collect_files(&owners, &owners, &mut found);
    for name in found {
        tracing::warn!(lock = %name, "releasing a lock a killed execute held");
        let staged = paths.staged(&name);
        GitLock::leftover(&paths.locked(&name), &paths.owner(&name), staged.as_deref())
            .release()?;
    }
    let staged = paths.ours.join(STAGED);
    let mut leftovers = Vec::new();
    collect_files(&staged, &staged, &mut leftovers);
    for name in leftovers {
        lock::remove_if_present(&staged.join(name))?;
    }
    Ok(())
}

/// The files under `dir`, as `/`-separated paths relative to `base`.
fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(base, &path, out),
            Ok(_) => {
                if let Some(name) = path.strip_prefix(base).ok().and_then(Path::to_str) {
                    out.push(name.replace(std::path::MAIN_SEPARATOR, "/"));
                }
            }
            Err(_) => {}
        }
    }
}

fn io_error(path: &Path, error: io::Error) -> ApplyError {
    ApplyError::ExecutionFailed(format!("{}: {error}", path.display()))
}

/// Brings the work tree, index and branch to the intent's "after", from whatever state an
/// earlier run of this same function was killed in. The branch moves last, with its lock
/// held until then: a branch at the new commit means everything is in place, and one
/// elsewhere than the base whose lock was free when recovery took it was moved on by
/// someone else after the execute had finished. Either way nothing is rewritten.
fn roll_forward(
    repo: &Repository,
    paths: &Paths,
    intent: &Intent,
    held: Held,
    content: &Content<'_>,
) -> Result<(), ApplyError> {
    let now = match repo.find_reference(&intent.ref_name) {
        Ok(reference) => reference.target().map(|id| id.to_string()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let at = now.as_deref().unwrap_or("nothing");
    if at != intent.base {
        if at != intent.commit && held.reference.reclaimed() {
            return Err(ApplyError::ExecutionFailed(format!(
                "{} is at {at} while an interrupted execute of plan {} held its lock; it was \
                 to move from {} to {}: someone removed the lock, and the execute cannot be \
                 finished",
                intent.ref_name, intent.plan, intent.base, intent.commit
            )));
        }
        if at != intent.commit {
            tracing::warn!(
                branch = %intent.ref_name,
                now = at,
                "the branch moved on after this execute had finished; nothing to redo"
            );
        }
        if let Some(index) = held.index {
            index.release()?;
        }
        return held.reference.release();
    }
    if let (Some(index), Some(workdir)) = (held.index, &paths.workdir) {
        let written = worktree::apply(workdir, &intent.paths, content)?;
        worktree::stage(&paths.index, index, &intent.paths, &written)?;
        failpoint::hit("git:index");
    }
    let lock = held.reference;
    lock.write(format!("{}\n", intent.commit).as_bytes())?;
    append_reflogs(repo, paths, intent)?;
    lock.commit()?;
    failpoint::hit("git:ref");
    Ok(())
}

/// Appends the update to the branch's reflog and, when the branch is checked out, to
/// `HEAD`'s, as git does; each at most once however often this runs.
fn append_reflogs(repo: &Repository, paths: &Paths, intent: &Intent) -> Result<(), ApplyError> {
    let log_all = repo
        .config()?
        .get_bool("core.logAllRefUpdates")
        .unwrap_or(!repo.is_bare());
    let mut logs = vec![paths.common.join("logs").join(&intent.ref_name)];
    if intent.checked_out {
        logs.push(paths.git_dir.join("logs").join("HEAD"));
    }
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = format!("{} {} ", intent.base, intent.commit);
    let suffix = format!("\t{}\n", intent.message);
    let line = format!(
        "{prefix}{} <{}> {seconds} +0000{suffix}",
        intent.committer.name, intent.committer.email
    );
    for log in logs {
        if !(log_all || log.exists()) {
            continue;
        }
        let on_log = |e: io::Error| io_error(&log, e);
        if last_line(&log)
            .map_err(on_log)?
            .is_some_and(|last| last.starts_with(&prefix) && last.ends_with(&suffix))
        {
            continue;
        }
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir).map_err(on_log)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(on_log)?;
    }
    Ok(())
}

/// The last line of a file (with its newline), reading only its tail.
fn last_line(path: &Path) -> io::Result<Option<String>> {
    const TAIL: u64 = 8192;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    Ok(body
        .rsplit('\n')
        .next()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n")))
}
