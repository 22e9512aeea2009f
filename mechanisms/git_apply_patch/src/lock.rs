//! Locks around an execute: ours across our processes, and git's own lock files.
//!
//! [`RepoLock`] is an advisory `flock` on the git directory itself: at most one of our
//! processes works on a repository at a time, and the kernel drops the lock when its holder
//! dies, so a held lock always means a live holder (and no lock file is ever left behind).
//!
//! [`GitLock`] takes one of git's lock files (`index.lock`, `refs/heads/main.lock`) the way
//! git does (create it, or fail if it exists) but by hard-linking an owner file of ours to
//! it. A lock file left behind by a killed execute is then told apart from another
//! program's: ours is the same file as our owner file. Only a holder of the [`RepoLock`] may
//! take a leftover over, since only then is its owner known to be dead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::ApplyError;

/// Our exclusive lock on one repository, held until dropped or the process dies.
#[derive(Debug)]
pub(crate) struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Locks the git directory `git_dir`; `BUSY` while another process holds it.
    pub fn try_acquire(git_dir: &Path) -> Result<Self, ApplyError> {
        let file = File::open(git_dir).map_err(|e| io_error(git_dir, e))?;
        if mechanism_server::flock::lock_exclusive(&file).map_err(|e| io_error(git_dir, e))? {
            Ok(Self { _file: file })
        } else {
            Err(ApplyError::Busy(
                "another execute is working on this repository; retry when it is done".to_owned(),
            ))
        }
    }
}

/// One of git's lock files, `<target>.lock`, held through our owner file.
#[derive(Debug)]
pub(crate) struct GitLock {
    target: PathBuf,
    lock: PathBuf,
    owner: PathBuf,
    /// Where the target's next version is staged, when it is too big to copy: the lock
    /// becomes that file, which keeps this second name as proof that the lock is ours.
    staged: Option<PathBuf>,
    /// Whether dropping the lock releases it: true until the point of no return, after
    /// which a failure leaves the lock held, for recovery to take over.
    release_on_drop: bool,
    /// Whether the lock was a leftover of ours, taken over rather than taken.
    reclaimed: bool,
}

impl GitLock {
    /// Takes `<target>.lock` with `owner` as our owner file (and `staged` as the name of a
    /// staged next version, if any). `BUSY` when another program holds it. A leftover of
    /// ours (the same file as `owner` or `staged`) is taken over, which is why the caller
    /// must hold the [`RepoLock`].
    pub fn acquire(target: &Path, owner: &Path, staged: Option<&Path>) -> Result<Self, ApplyError> {
        let lock = lock_path(target);
        let mut held = Self {
            target: target.to_path_buf(),
            lock: lock.clone(),
            owner: owner.to_path_buf(),
            staged: staged.map(Path::to_path_buf),
            release_on_drop: true,
            reclaimed: false,
        };
        if held.is_ours()? {
            held.reclaimed = true;
            return Ok(held);
        }
        // Not linked to the lock: a leftover of an execute that never took it.
        held.remove_owned_names()?;
        for dir in [owner.parent(), lock.parent()].into_iter().flatten() {
            fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        File::create_new(owner).map_err(|e| io_error(owner, e))?;
        match fs::hard_link(owner, &lock) {
            Ok(()) => Ok(held),
            Err(e) => {
                // Not ours: dropping must not touch it.
                held.release_on_drop = false;
                held.remove_owned_names()?;
                Err(if e.kind() == io::ErrorKind::AlreadyExists {
                    ApplyError::Busy(format!(
                        "{} is held by another program; retry when it is done (if no git \
                         command is running, a crashed one left it behind: remove it)",
                        lock.display()
                    ))
                } else {
                    io_error(&lock, e)
                })
            }
        }
    }

    /// The lock a killed execute may have left on `target`, to [`GitLock::release`]: only
    /// what is ours is removed. Call with the [`RepoLock`] held.
    pub fn leftover(target: &Path, owner: &Path, staged: Option<&Path>) -> Self {
        Self {
            target: target.to_path_buf(),
            lock: lock_path(target),
            owner: owner.to_path_buf(),
            staged: staged.map(Path::to_path_buf),
            release_on_drop: false,
            reclaimed: true,
        }
    }

    /// Whether the lock was a leftover of ours, taken over rather than taken afresh.
    pub fn reclaimed(&self) -> bool {
        self.reclaimed
    }

    /// From now on a failure leaves the lock held, for recovery to take over.
    pub fn keep_on_failure(&mut self) {
        self.release_on_drop = false;
    }

    /// Replaces the lock file's content with `bytes`, flushed: the target's next version.
    pub fn write(&self, bytes: &[u8]) -> Result<(), ApplyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.owner)
            .map_err(|e| io_error(&self.lock, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&self.lock, e))
    }

    /// Where the target's next version is to be staged, if this lock stages one.
    pub fn staged(&self) -> Option<&Path> {
        self.staged.as_deref()
    }

    /// Makes the staged file the lock's content, without copying it: a second link to it
    /// is renamed over the lock, so the lock stays recognisably ours throughout.
    pub fn take_staged(&self) -> Result<(), ApplyError> {
        let staged = self.staged.as_deref().ok_or_else(|| {
            ApplyError::Internal(format!("{} has no staged version", self.lock.display()))
        })?;
        let link = with_suffix(staged, ".link");
        remove_if_present(&link)?;
        fs::hard_link(staged, &link).map_err(|e| io_error(&link, e))?;
        fs::rename(&link, &self.lock).map_err(|e| io_error(&self.lock, e))
    }

    /// Renames the lock over its target (its content takes effect) and drops our names.
    pub fn commit(mut self) -> Result<(), ApplyError> {
        fs::rename(&self.lock, &self.target).map_err(|e| io_error(&self.target, e))?;
        self.release_on_drop = false;
        self.remove_owned_names()
    }

    /// Releases the lock without changing its target.
    pub fn release(mut self) -> Result<(), ApplyError> {
        self.release_on_drop = false;
        self.remove()
    }

    /// Whether the lock file exists and is ours.
    fn is_ours(&self) -> Result<bool, ApplyError> {
        let linked = |name: &Path| same_file(&self.lock, name).map_err(|e| io_error(&self.lock, e));
        Ok(linked(&self.owner)? || self.staged.as_deref().map_or(Ok(false), linked)?)
    }

    fn remove(&self) -> Result<(), ApplyError> {
        if self.is_ours()? {
            remove_if_present(&self.lock)?;
        }
        self.remove_owned_names()
    }

    /// Removes the owner file and the staged version's names.
    fn remove_owned_names(&self) -> Result<(), ApplyError> {
        remove_if_present(&self.owner)?;
        if let Some(staged) = &self.staged {
            for name in [
                staged.clone(),
                lock_path(staged),
                with_suffix(staged, ".link"),
            ] {
                remove_if_present(&name)?;
            }
        }
        Ok(())
    }
}

impl Drop for GitLock {
    fn drop(&mut self) {
        if self.release_on_drop {
            if let Err(error) = self.remove() {
                tracing::warn!(%error, "releasing a git lock failed");
            }
        }
    }
}

/// `<target>.lock`, git's lock file for `target`.
pub(crate) fn lock_path(target: &Path) -> PathBuf {
    with_suffix(target, ".lock")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a file if it is there.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), ApplyError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Whether both paths exist and name the same file.
#[cfg(unix)]
pub(crate) fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let stat = |p: &Path| match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    Ok(match (stat(a)?, stat(b)?) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    })
}

/// Without inode numbers a leftover lock is never recognised as ours.
#[cfg(not(unix))]
pub(crate) fn same_file(_: &Path, _: &Path) -> io::Result<bool> {
    Ok(false)
}

fn io_error(path: &Path, error: io::Error) -> ApplyError {
    ApplyError::ExecutionFailed(format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_by_another_program_is_busy_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("index");
        fs::write(&target, b"old").unwrap();
        fs::write(dir.path().join("index.lock"), b"theirs").unwrap();
        let owner = dir.path().join("owner");
        let err = GitLock::acquire(&target, &owner, None).unwrap_err();
        assert!(matches!(err, ApplyError::Busy(_)), "{err:?}");
        assert_eq!(fs::read(dir.path().join("index.lock")).unwrap(), b"theirs");
        assert!(!owner.exists());
    }

    #[test]
    fn a_leftover_of_ours_is_taken_over_and_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("main");
        fs::write(&target, b"old\n").unwrap();
        let owner = dir.path().join("owner");
        let first = GitLock::acquire(&target, &owner, None).unwrap();
        first.write(b"half").unwrap();
        // As if the process died here: the lock and its owner file stay behind.
        std::mem::forget(first);
        let again = GitLock::acquire(&target, &owner, None).unwrap();
        again.write(b"new\n").unwrap();
        again.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new\n");
        assert!(!lock_path(&target).exists());
        assert!(!owner.exists());
    }

    #[test]
    fn a_staged_version_becomes_the_lock_without_a_copy_and_stays_ours() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("index");
        fs::write(&target, b"old").unwrap();
        let owner = dir.path().join("owner");
        let staged = dir.path().join("staged");
        let lock = GitLock::acquire(&target, &owner, Some(&staged)).unwrap();
        fs::write(&staged, b"new").unwrap();
        lock.take_staged().unwrap();
        assert!(same_file(&lock_path(&target), &staged).unwrap());
        // Killed here, the lock is still recognised as ours, through the staged name.
        std::mem::forget(lock);
        let again = GitLock::acquire(&target, &owner, Some(&staged)).unwrap();
        assert_eq!(fs::read(lock_path(&target)).unwrap(), b"new");
        again.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["index"]);
    }

    #[test]
    fn dropping_before_the_point_of_no_return_releases_and_after_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("main");
        let owner = dir.path().join("owner");
        drop(GitLock::acquire(&target, &owner, None).unwrap());
        assert!(!lock_path(&target).exists() && !owner.exists());
        let mut kept = GitLock::acquire(&target, &owner, None).unwrap();
        kept.keep_on_failure();
        drop(kept);
        assert!(same_file(&lock_path(&target), &owner).unwrap());
    }

    #[test]
    fn our_repository_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = RepoLock::try_acquire(dir.path()).unwrap();
        assert!(matches!(
            RepoLock::try_acquire(dir.path()),
            Err(ApplyError::Busy(_))
        ));
        drop(held);
        RepoLock::try_acquire(dir.path()).unwrap();
    }
}
