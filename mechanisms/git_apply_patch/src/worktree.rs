//! The work tree and index at the touched paths: their state as plan facts, their update
//! after execute moved the branch, and whether they are as planned. Only touched paths are ever looked at; every
//! leading component is checked with `lstat` first, since libgit2 (and `std::fs`) would
//! follow a symlink planted in the work tree and write outside the repository.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use git2::{IndexEntry, IndexTime, ObjectType, Oid, Repository};

use super::error::ApplyError;
use super::intent::PathChange;
use super::lock::{self, GitLock};
use super::patch::{MODE_EXEC, MODE_FILE};
use super::predict::{Entry, FileOutcome};
use super::transaction::Content;
use super::{FileState, WorktreeFact};
use mechanism_server::failpoint;

/// How the temporary files of work-tree writes start, so recovery finds its own leftovers.
const TEMPORARY_PREFIX: &str = ".git_apply_patch-";

/// The state of every touched path: work-tree file, index entry, and whether either
/// differs from the base tree.
/// `repo` is the repository with its work tree at `workdir`, read as it is now.
pub(crate) fn facts(
    repo: &Repository,
    workdir: &Path,
    files: &[FileOutcome],
) -> Result<Vec<WorktreeFact>, ApplyError> {
    let filemode = repo.config()?.get_bool("core.filemode").unwrap_or(true);
    let index = repo.index()?;
    let mut touched: Vec<(&str, Option<Entry>)> = Vec::new();
    for file in files {
        if let Some((path, entry)) = &file.old {
            touched.push((path, Some(*entry)));
        }
        if let Some((path, _, _)) = &file.new {
            if !touched.iter().any(|(p, _)| p == path) {
                touched.push((path, None));
            }
        }
    }
    touched.sort_by(|a, b| a.0.cmp(b.0));

    let mut facts = Vec::new();
    for (path, base) in touched {
        let on_disk = disk_state(workdir, path)?;
        let worktree = match on_disk {
            None => None,
            Some((blob, executable)) => {
                // Without core.filemode git ignores the executable bit; so do we.
                let mode = match (base, filemode) {
                    (_, true) if executable => MODE_EXEC,
                    (Some(b), false) => b.mode,
                    _ => MODE_FILE,
                };
                Some(state(blob, mode))
            }
        };
        let repo_path = Path::new(path);
        let index_state = index.get_path(repo_path, 0).map(|e| state(e.id, e.mode));
        let conflicted = (1..=3).any(|stage| index.get_path(repo_path, stage).is_some());
        let base = base.map(|b| state(b.id, b.mode));
        let differs = worktree != base || index_state != base || conflicted;
        facts.push(WorktreeFact {
            path: path.to_owned(),
            worktree,
            index: index_state,
            conflicted,
            differs,
        });
    }
    Ok(facts)
}

/// One reason per touched path whose local changes the apply would overwrite.
pub(crate) fn reasons(facts: &[WorktreeFact]) -> Vec<String> {
    facts
        .iter()
        .filter(|f| f.differs)
        .map(|f| {
            format!(
                "overwrites uncommitted changes to {} (work tree or index differs from the base)",
                f.path
            )
        })
        .collect()
}

/// Brings every touched path of the work tree to its state after: removals first (a
/// rename's source, then directories left empty), then writes through a temporary file and
/// a rename. Returns the metadata of each written file, aligned with `changes`, for its
/// index entry. Idempotent: run again after a kill, it finishes the job.
pub(crate) fn apply(
    workdir: &Path,
    changes: &[PathChange],
    content: &Content<'_>,
) -> Result<Vec<Option<fs::Metadata>>, ApplyError> {
    for change in changes.iter().filter(|c| c.after.is_none()) {
        remove(workdir, &change.path)?;
        failpoint::hit("git:worktree");
    }
    let mut written = vec![None; changes.len()];
    for (slot, change) in written.iter_mut().zip(changes) {
        let Some(after) = &change.after else {
            continue;
        };
        let (id, mode) = parse_state(after)?;
        let bytes = content(change, id)?;
        *slot = Some(write(workdir, &change.path, &bytes, mode)?);
        failpoint::hit("git:worktree");
    }
    Ok(written)
}

/// Stages the touched paths' new entries in the index, through `index_lock`: libgit2
/// writes the changed index to the lock's staging file (a hard link to the current index is
/// what it reads, so nothing is copied), the held `index.lock` becomes that file, and the
/// lock is renamed over the index. Costs O(index entries), as any index write does.
pub(crate) fn stage(
    index_path: &Path,
    index_lock: GitLock,
    changes: &[PathChange],
    written: &[Option<fs::Metadata>],
) -> Result<(), ApplyError> {
    let staged = index_lock
        .staged()
        .ok_or_else(|| ApplyError::Internal("the index lock has no staging file".to_owned()))?
        .to_path_buf();
    let staged = staged.as_path();
    lock::remove_if_present(staged)?;
    lock::remove_if_present(&lock::lock_path(staged))?;
    if let Some(dir) = staged.parent() {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    match fs::hard_link(index_path, staged) {
        Ok(()) => {}
        // No index yet: the staged one holds only the touched entries, as libgit2's would.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(index_path, e)),
    }
    let mut index = git2::Index::open(staged)?;
    for (change, metadata) in changes.iter().zip(written) {
        // Clears conflict stages too, so the path ends up resolved to the new content.
        index.remove_path(Path::new(&change.path))?;
        if let (Some(after), Some(metadata)) = (&change.after, metadata) {
            let (id, mode) = parse_state(after)?;
            index.add(&index_entry(&change.path, id, mode, metadata))?;
        }
    }
    // libgit2 writes through `<staged>.lock` and a rename: the index itself is untouched.
    index.write()?;
    index_lock.take_staged()?;
    failpoint::hit("git:index-staged");
    index_lock.commit()
}

/// Removes the temporary files a killed [`apply`] may have left beside the touched paths.
pub(crate) fn remove_temporaries(workdir: &Path, changes: &[PathChange]) -> Result<(), ApplyError> {
    let mut dirs: Vec<&str> = changes
        .iter()
        .map(|c| c.path.rsplit_once('/').map_or("", |(dir, _)| dir))
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    for dir in dirs {
        // `existing_parent` checks every component with lstat, as for any other write.
        let probe = if dir.is_empty() {
            TEMPORARY_PREFIX.to_owned()
        } else {
            format!("{dir}/{TEMPORARY_PREFIX}")
        };
        let Some(parent) = existing_parent(workdir, &probe)? else {
            continue;
        };
        let entries = fs::read_dir(&parent).map_err(|e| io_error(&parent, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&parent, e))?;
            let is_ours = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMPORARY_PREFIX));
            if is_ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                lock::remove_if_present(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// Whether every touched path is as planned after the execute, in the index (stage 0, no
/// conflicts) and in the work tree (content and, with `core.filemode`, the executable bit).
pub(crate) fn matches(repo: &Repository, changes: &[PathChange]) -> Result<bool, ApplyError> {
    let Some(workdir) = repo.workdir() else {
        return Ok(true);
    };
    let filemode = repo.config()?.get_bool("core.filemode").unwrap_or(true);
    let index = repo.index()?;
    for change in changes {
        let path = Path::new(&change.path);
        let expected = change.after.as_ref().map(parse_state).transpose()?;
        let staged = index.get_path(path, 0).map(|e| (e.id, e.mode));
        if staged != expected || (1..=3).any(|stage| index.get_path(path, stage).is_some()) {
            return Ok(false);
        }
        let on_disk = match disk_state(workdir, &change.path) {
            Ok(state) => state,
            Err(ApplyError::PathRefused(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let same = match (on_disk, expected) {
            (None, None) => true,
            (Some((blob, executable)), Some((id, mode))) => {
                blob == id && (!filemode || executable == (mode == MODE_EXEC))
            }
            _ => false,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The blob id and numeric mode of a file state.
fn parse_state(state: &FileState) -> Result<(Oid, u32), ApplyError> {
    let id = Oid::from_str(&state.blob)?;
    let mode = u32::from_str_radix(&state.mode, 8)
        .map_err(|e| ApplyError::Internal(format!("mode {:?}: {e}", state.mode)))?;
    Ok((id, mode))
}

fn state(blob: Oid, mode: u32) -> FileState {
    FileState {
        blob: blob.to_string(),
        mode: format!("{mode:o}"),
    }
}

/// The blob id and executable bit of the regular file at `path`, or `None` when nothing
/// is there. A symlink or non-directory on the way, or a leaf that is not a regular file,
/// is refused.
fn disk_state(workdir: &Path, path: &str) -> Result<Option<(Oid, bool)>, ApplyError> {
    let Some(parent) = existing_parent(workdir, path)? else {
        return Ok(None);
    };
    let leaf = parent.join(leaf_name(path));
    let metadata = match fs::symlink_metadata(&leaf) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&leaf, e)),
    };
    if !metadata.file_type().is_file() {
        return Err(not_regular(path, &metadata));
    }
    let blob = Oid::hash_file(ObjectType::Blob, &leaf)?;
    Ok(Some((blob, is_executable(&metadata))))
}

/// The parent directory of `path` in the work tree, checking each leading component with
/// `lstat`: `None` when one is missing; refused when one is a symlink or not a directory.
fn existing_parent(workdir: &Path, path: &str) -> Result<Option<PathBuf>, ApplyError> {
    let mut dir = workdir.to_path_buf();
    let components: Vec<&str> = path.split('/').collect();
    for (i, name) in components[..components.len() - 1].iter().enumerate() {
        dir.push(name);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) => {
                let at = components[..=i].join("/");
                return Err(ApplyError::PathRefused(if m.file_type().is_symlink() {
                    format!("path {path:?} refused: {at:?} is a symbolic link in the work tree")
                } else {
                    format!("path {path:?} refused: {at:?} is not a directory in the work tree")
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&dir, e)),
        }
    }
    Ok(Some(dir))
}

fn leaf_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Creates the missing leading directories of `path`, checking the existing ones.
fn make_parent(workdir: &Path, path: &str) -> Result<PathBuf, ApplyError> {
    let mut dir = workdir.to_path_buf();
    let components: Vec<&str> = path.split('/').collect();
    for name in &components[..components.len() - 1] {
        dir.push(name);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(ApplyError::PathRefused(format!(
                    "path {path:?} refused: {} is not a directory in the work tree",
                    dir.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(|e| io_error(&dir, e))?;
            }
            Err(e) => return Err(io_error(&dir, e)),
        }
    }
    Ok(dir)
}

/// Writes `content` at `path` through a temporary file in the same directory and a
/// rename, so the file is never half-written; returns the written file's metadata.
fn write(
    workdir: &Path,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<fs::Metadata, ApplyError> {
    let parent = make_parent(workdir, path)?;
    let leaf = parent.join(leaf_name(path));
    match fs::symlink_metadata(&leaf) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(m) => return Err(not_regular(path, &m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&leaf, e)),
    }
    let mut temporary = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(&parent)
        .map_err(|e| io_error(&parent, e))?;
    temporary
        .write_all(content)
        .map_err(|e| io_error(temporary.path(), e))?;
    set_mode(temporary.as_file(), mode).map_err(|e| io_error(&leaf, e))?;
    temporary
        .persist(&leaf)
        .map_err(|e| io_error(&leaf, e.error))?;
    fs::symlink_metadata(&leaf).map_err(|e| io_error(&leaf, e))
}

/// Removes the regular file at `path` (if present) and the directories it leaves empty.
fn remove(workdir: &Path, path: &str) -> Result<(), ApplyError> {
    let Some(parent) = existing_parent(workdir, path)? else {
        return Ok(());
    };
    let leaf = parent.join(leaf_name(path));
    match fs::symlink_metadata(&leaf) {
        Ok(m) if m.file_type().is_file() => {
            fs::remove_file(&leaf).map_err(|e| io_error(&leaf, e))?
        }
        Ok(m) => return Err(not_regular(path, &m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&leaf, e)),
    }
    let mut dir = parent;
    // `remove_dir` fails on a non-empty directory, which is where pruning stops.
    while dir != workdir && fs::remove_dir(&dir).is_ok() {
        if !dir.pop() {
            break;
        }
    }
    Ok(())
}

fn not_regular(path: &str, metadata: &fs::Metadata) -> ApplyError {
    let what = if metadata.file_type().is_symlink() {
        "a symbolic link"
    } else if metadata.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    ApplyError::PathRefused(format!(
        "path {path:?} refused: it is {what} in the work tree"
    ))
}

fn io_error(path: &Path, error: io::Error) -> ApplyError {
    ApplyError::ExecutionFailed(format!("{}: {error}", path.display()))
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn set_mode(file: &fs::File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bits = if mode == MODE_EXEC { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(bits))
}

#[cfg(not(unix))]
fn set_mode(_: &fs::File, _: u32) -> io::Result<()> {
    Ok(())
}

/// An index entry with the file's stat data, so git sees the file as clean without
/// rehashing it. The index stores 32-bit stat fields; they are truncated as git does.
#[cfg(unix)]
fn index_entry(path: &str, id: Oid, mode: u32, metadata: &fs::Metadata) -> IndexEntry {
    use std::os::unix::fs::MetadataExt;
    IndexEntry {
        ctime: IndexTime::new(metadata.ctime() as i32, metadata.ctime_nsec() as u32),
        mtime: IndexTime::new(metadata.mtime() as i32, metadata.mtime_nsec() as u32),
        dev: metadata.dev() as u32,
        ino: metadata.ino() as u32,
        mode,
        uid: metadata.uid(),
        gid: metadata.gid(),
        file_size: metadata.len() as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// An index entry without stat data (git rehashes the file once to confirm it).
#[cfg(not(unix))]
fn index_entry(path: &str, id: Oid, mode: u32, metadata: &fs::Metadata) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: metadata.len() as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}
