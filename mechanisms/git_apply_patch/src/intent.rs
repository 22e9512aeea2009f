//! The intent record: what an execute is about to do, written durably before its first
//! change and removed after its last, so that an execute killed in between is finished by
//! the next one (rolled forward: every object it needs is already in the object database).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ApplyError;
use super::{FileState, Person};

/// Our directory inside a repository's git directory: the lock, the intent and the owner
/// files of git lock files we hold.
pub(crate) const DIR: &str = "git_apply_patch";

/// The largest intent read back: a few hundred bytes per touched path.
const MAX_INTENT_BYTES: u64 = 256 * 1024 * 1024;

/// Everything an interrupted execute needs to be finished by another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Intent {
    /// The plan being executed, as the runtime names it (its digest).
    pub plan: String,
    /// The full name of the branch moved.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The commit the branch points to before.
    pub base: String,
    /// The commit it points to after (already in the object database).
    pub commit: String,
    /// Whether the branch is checked out, so the work tree and index change too.
    pub checked_out: bool,
    /// Who the reflog names for the update.
    pub committer: Person,
    /// The reflog message.
    pub message: String,
    /// Every touched path, before and after (`None`: absent).
    pub paths: Vec<PathChange>,
}

/// One touched path of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathChange {
    /// The path relative to the repository.
    pub path: String,
    /// The base tree's blob and mode.
    pub before: Option<FileState>,
    /// The new tree's blob and mode.
    pub after: Option<FileState>,
}

/// Where one repository's intent record lives.
#[derive(Debug, Clone)]
pub(crate) struct IntentFile {
    path: PathBuf,
}

impl IntentFile {
    /// The intent file in our directory `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("intent.json"),
        }
    }

    /// Whether a record is there.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The pending intent, if an execute was interrupted past its point of no return.
    pub fn read(&self) -> Result<Option<Intent>, ApplyError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_INTENT_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error(e))?;
        // Written whole by a rename, so a torn record is not ours: refuse, never guess.
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ApplyError::ExecutionFailed(format!(
                "{} is not an intent record this version can finish: {e}",
                self.path.display()
            ))
        })
    }

    /// Writes `intent` through a temporary file, flushed, renamed into place and the
    /// directory flushed: once this returns, the intent survives a crash of the machine.
    pub fn write(&self, intent: &Intent) -> Result<(), ApplyError> {
        let bytes = serde_json::to_vec(intent)
            .map_err(|e| ApplyError::Internal(format!("encoding the intent: {e}")))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temp = dir.join("intent.json.tmp");
        let mut file = File::create(&temp).map_err(|e| self.io_error(e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| self.io_error(e))?;
        fs::rename(&temp, &self.path).map_err(|e| self.io_error(e))?;
        sync_dir(dir).map_err(|e| self.io_error(e))
    }

    /// Removes the record once its effect is wholly in place, and a leftover temporary.
    pub fn remove(&self) -> Result<(), ApplyError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        super::lock::remove_if_present(&dir.join("intent.json.tmp"))?;
        super::lock::remove_if_present(&self.path)?;
        sync_dir(dir).map_err(|e| self.io_error(e))
    }

    fn io_error(&self, error: io::Error) -> ApplyError {
        ApplyError::ExecutionFailed(format!("{}: {error}", self.path.display()))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent() -> Intent {
        Intent {
            plan: "sha256:00".to_owned(),
            ref_name: "refs/heads/main".to_owned(),
            base: "a".repeat(40),
            commit: "b".repeat(40),
            checked_out: true,
            committer: Person {
                name: "A".to_owned(),
                email: "a@example.com".to_owned(),
            },
            message: "m".to_owned(),
            paths: vec![PathChange {
                path: "x".to_owned(),
                before: None,
                after: Some(FileState {
                    blob: "c".repeat(40),
                    mode: "100644".to_owned(),
                }),
            }],
        }
    }

    #[test]
    fn an_intent_is_written_read_and_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = IntentFile::in_dir(dir.path());
        assert_eq!(file.read().unwrap(), None);
        file.write(&intent()).unwrap();
        assert_eq!(file.read().unwrap(), Some(intent()));
        file.remove().unwrap();
        assert_eq!(file.read().unwrap(), None);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_record_that_is_not_an_intent_is_refused_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("intent.json"), b"{\"plan\":").unwrap();
        let err = IntentFile::in_dir(dir.path()).read().unwrap_err();
        assert!(matches!(err, ApplyError::ExecutionFailed(_)), "{err:?}");
    }
}
