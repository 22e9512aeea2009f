//! The admission journal: every admission command is an execution document, snapshotted whole
//! at start, at each step and at the end, plus a lean append-only index of status changes.
//!
//! Layout under the store root:
//!
//! - `exec/<uid>/<NNN>-<label>.json`: the whole [`ExecutionDocument`] after each change,
//!   numbered so that `ls` order is history order (`000-created.json`, `001-<step>.json`, ...,
//!   then `NNN-completed.json`, `NNN-failed.json` or `NNN-paused.json`);
//! - `exec/log.jsonl`: one [`LogEntry`] line per status change, appended under a lock on
//!   `exec/log.lock`.
//!
//! An execution goes created -> running -> completed | failed | paused. Its first
//! [`ExecHandle::step`] makes it running; it can fail before that (bad input), but it cannot
//! complete or pause without having run a step. Completed, failed and paused are final: a run
//! paused for a force-ack is resumed by a new execution whose parent is the paused one, found
//! again with [`Journal::children`].
//!
//! A snapshot is written before its log line, so every log line names a snapshot on disk.

mod index;
mod snapshot;
mod uid;

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use protocol::artifact::kinds::ErrorInfo;
use protocol::artifact::ArtifactError;
use protocol::schema::SchemaError;
use protocol::verbs::PROTOCOL_VERSION;
use protocol::ErrorCode;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub use index::LogEntry;
pub use protocol::artifact::kinds::{ExecStatus, ExecStep, ExecutionDocument};
pub use uid::Uid;

/// The journal's directory under the store root.
pub const EXEC_DIR: &str = "exec";
/// The index file in [`EXEC_DIR`].
pub const LOG_FILE: &str = "log.jsonl";
/// The lock file serialising appends to [`LOG_FILE`].
pub const LOCK_FILE: &str = "log.lock";

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The text is not an execution uid.
    #[error("{0:?} is not an execution uid: expected a lowercase hyphenated UUID (version 4 or 7), like 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")]
    BadUid(String),
    /// The text cannot be a step label.
    #[error("{0:?} is not a step label: use 1 to 128 ASCII letters, digits, '_' or '-', starting with a letter or digit")]
    BadLabel(String),
    /// No execution with this uid is in the journal.
    #[error("no execution {uid} in the journal at {} (`admission log` lists them)", dir.display())]
    NotFound {
        /// The uid asked for.
        uid: Uid,
        /// The journal directory searched.
        dir: PathBuf,
    },
    /// The execution's directory exists but holds no snapshot: it was interrupted as it began.
    #[error("execution {0} has no snapshot: it was interrupted as it started")]
    NoSnapshot(Uid),
    /// The status change is not one the lifecycle allows.
    #[error("execution {uid} cannot go from {} to {}: an execution goes created -> running (its first step) -> completed, failed or paused, and a paused one is resumed by a child execution", status_name(from), status_name(to))]
    IllegalTransition {
        /// The execution.
        uid: Uid,
        /// Its status.
        from: ExecStatus,
        /// The status asked for.
        to: ExecStatus,
    },
    /// The document holds something that is not I-JSON (e.g. an integer beyond 2^53).
    #[error("execution {uid}: the document is not I-JSON: {source}")]
    NotIJson {
        /// The execution.
        uid: Uid,
        /// Why.
        source: ArtifactError,
    },
    /// The document does not match the execution schema (e.g. `config` is not an object).
    #[error("execution {uid}: the document does not match the execution schema: {source}")]
    Invalid {
        /// The execution.
        uid: Uid,
        /// The violations.
        source: SchemaError,
    },
    /// A document or log line could not be encoded.
    #[error("encoding the {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// serde's description.
        source: serde_json::Error,
    },
    /// A snapshot on disk cannot be read as one.
    #[error("{}: not a readable execution snapshot: {reason}", path.display())]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system clock is outside what RFC 3339 can write.
    #[error("the current time cannot be written as RFC 3339: {0}")]
    Clock(#[from] time::error::Format),
    /// A journal file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// Shorthand for results of journal operations.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// The journal of one store.
#[derive(Debug, Clone)]
pub struct Journal {
    root: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    lock: PathBuf,
}

impl Journal {
    /// Opens the journal of the store at `store_root`, creating its directory if missing.
    pub fn open(store_root: impl AsRef<Path>) -> Result<Self> {
        let root = store_root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(io_at(&root))?;
        let dir = root.join(EXEC_DIR);
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(&root)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_at(&dir)(e)),
        }
        Ok(Self {
            log: dir.join(LOG_FILE),
            lock: dir.join(LOCK_FILE),
            dir,
            root,
        })
    }

    /// The journal directory, `<store>/exec`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the execution of admission command `command` (e.g. `run`): writes its
    /// `000-created.json` snapshot and its first log line.
    ///
    /// `parent` is the execution this one resumes (a run paused for a force-ack); it must be
    /// in the journal. `config` must be a JSON object.
    pub fn start(
        &self,
        command: &str,
        config: Value,
        input: Value,
        parent: Option<Uid>,
    ) -> Result<ExecHandle> {
        if let Some(parent) = &parent {
            self.existing_dir(parent)?;
        }
        let uid = Uid::generate();
        let time = now()?;
        let doc = ExecutionDocument {
            uid: uid.to_string(),
            protocol: PROTOCOL_VERSION.to_owned(),
            context: context(command, &self.root),
            parent: parent.as_ref().map(Uid::to_string),
            status: ExecStatus::Created,
            config,
            input,
            result: None,
            steps: Vec::new(),
            started_at: Some(time.clone()),
            updated_at: Some(time.clone()),
        };
        // Refuse a bad document before anything is created on disk.
        let bytes = snapshot::encode(&doc, &uid)?;
        let dir = self.dir.join(uid.as_str());
        // `create_dir`, not `create_dir_all`: a uid is used once, never joined.
        fs::create_dir(&dir).map_err(io_at(&dir))?;
        sync_dir(&self.dir)?;
        snapshot::write(&dir, &snapshot::file_name(0, "created"), &bytes)?;
        let handle = ExecHandle {
            journal: self.clone(),
            uid,
            parent,
            command: command.to_owned(),
            doc,
            next_seq: 1,
        };
        handle.append_log(ExecStatus::Created, time)?;
        Ok(handle)
    }

    /// Every log entry, oldest first; torn or corrupt lines are skipped with a warning.
    pub fn log(&self) -> Result<Vec<LogEntry>> {
        index::read(&self.log, &self.lock)
    }

    /// The latest snapshot of execution `uid`.
    pub fn load(&self, uid: &Uid) -> Result<ExecutionDocument> {
        let dir = self.existing_dir(uid)?;
        let (seq, label) = snapshot::list(&dir)?
            .pop()
            .ok_or_else(|| JournalError::NoSnapshot(uid.clone()))?;
        snapshot::read(&dir.join(snapshot::file_name(seq, &label)), uid)
    }

    /// Every snapshot of execution `uid`, oldest first, with its label.
    pub fn history(&self, uid: &Uid) -> Result<Vec<(String, ExecutionDocument)>> {
        let dir = self.existing_dir(uid)?;
        let found = snapshot::list(&dir)?;
        if found.is_empty() {
            return Err(JournalError::NoSnapshot(uid.clone()));
        }
        found
            .into_iter()
            .map(|(seq, label)| {
                let doc = snapshot::read(&dir.join(snapshot::file_name(seq, &label)), uid)?;
                Ok((label, doc))
            })
            .collect()
    }

    /// The executions whose parent is `uid` (those resuming it), in the order they started.
    pub fn children(&self, uid: &Uid) -> Result<Vec<Uid>> {
        self.existing_dir(uid)?;
        let mut children: Vec<Uid> = Vec::new();
        for entry in self.log()? {
            if entry.parent.as_ref() == Some(uid) && !children.contains(&entry.uid) {
                children.push(entry.uid);
            }
        }
        Ok(children)
    }

    fn existing_dir(&self, uid: &Uid) -> Result<PathBuf> {
        let dir = self.dir.join(uid.as_str());
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(JournalError::NotFound {
                uid: uid.clone(),
                dir: self.dir.clone(),
            })
        }
    }
}

/// A started execution, recording its steps and its end.
///
/// Dropped before it ended (an early return, a panic), it records itself as failed, so no
/// execution is left "running" by a command that has finished.
#[derive(Debug)]
pub struct ExecHandle {
    journal: Journal,
    uid: Uid,
    parent: Option<Uid>,
    command: String,
    doc: ExecutionDocument,
    next_seq: u32,
}

impl ExecHandle {
    /// The execution's uid.
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// Its current status.
    pub fn status(&self) -> ExecStatus {
        self.doc.status
    }

    /// Its document as last written.
    pub fn document(&self) -> &ExecutionDocument {
        &self.doc
    }

    /// Records a step that has happened, as snapshot `NNN-<label>.json`; the first step
    /// makes the execution running.
    pub fn step(&mut self, label: &str, detail: Value) -> Result<()> {
        snapshot::check_label(label)?;
        let from = self.doc.status;
        self.check_transition(ExecStatus::Running)?;
        let time = now()?;
        let mut doc = self.doc.clone();
        doc.status = ExecStatus::Running;
        doc.steps.push(ExecStep {
            label: label.to_owned(),
            status: ExecStatus::Completed,
            detail,
            at: Some(time.clone()),
        });
        self.save(doc, label, &time)?;
        if from != ExecStatus::Running {
            self.append_log(ExecStatus::Running, time)?;
        }
        Ok(())
    }

    /// Ends the execution waiting for a force-ack; a later execution resumes it as its child.
    pub fn pause(&mut self, result: Value) -> Result<()> {
        self.finish(ExecStatus::Paused, result)
    }

    /// Ends the execution successfully.
    pub fn complete(&mut self, result: Value) -> Result<()> {
        self.finish(ExecStatus::Completed, result)
    }

    /// Ends the execution as failed.
    pub fn fail(&mut self, result: Value) -> Result<()> {
        self.finish(ExecStatus::Failed, result)
    }

    fn finish(&mut self, to: ExecStatus, result: Value) -> Result<()> {
        self.check_transition(to)?;
        let time = now()?;
        let mut doc = self.doc.clone();
        doc.status = to;
        doc.result = Some(result);
        self.save(doc, status_name(&to), &time)?;
        self.append_log(to, time)
    }

    fn check_transition(&self, to: ExecStatus) -> Result<()> {
        use ExecStatus::{Completed, Created, Failed, Paused, Running};
        let from = self.doc.status;
        let allowed = matches!(
            (from, to),
            (Created, Running | Failed) | (Running, Running | Completed | Failed | Paused)
        );
        if allowed {
            Ok(())
        } else {
            Err(JournalError::IllegalTransition {
                uid: self.uid.clone(),
                from,
                to,
            })
        }
    }

    /// Writes `doc` as the next snapshot and makes it the current document.
    fn save(&mut self, mut doc: ExecutionDocument, label: &str, time: &str) -> Result<()> {
        doc.updated_at = Some(time.to_owned());
        let bytes = snapshot::encode(&doc, &self.uid)?;
        let dir = self.journal.dir.join(self.uid.as_str());
        snapshot::write(&dir, &snapshot::file_name(self.next_seq, label), &bytes)?;
        // Only once the snapshot is on disk does the handle move on, so a failed write can
        // be retried under the same number.
        self.doc = doc;
        self.next_seq += 1;
        Ok(())
    }

    fn append_log(&self, status: ExecStatus, time: String) -> Result<()> {
        let entry = LogEntry {
            uid: self.uid.clone(),
            parent: self.parent.clone(),
            status,
            time,
            command: self.command.clone(),
        };
        index::append(&self.journal.log, &self.journal.lock, &entry)
    }
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        if !matches!(self.doc.status, ExecStatus::Created | ExecStatus::Running) {
            return;
        }
        let error = ErrorInfo::new(
            ErrorCode::InternalError,
            format!(
                "the `{}` command ended without recording an outcome",
                self.command
            ),
        );
        tracing::warn!("execution {}: {}", self.uid, error.message);
        if let Err(e) = self.fail(json!({ "error": error })) {
            tracing::warn!("execution {}: could not record it as failed: {e}", self.uid);
        }
    }
}

/// The lowercase name of a status, as it is written in documents and file names.
fn status_name(status: &ExecStatus) -> &'static str {
    match status {
        ExecStatus::Created => "created",
        ExecStatus::Running => "running",
        ExecStatus::Completed => "completed",
        ExecStatus::Failed => "failed",
        ExecStatus::Paused => "paused",
    }
}

/// Where and by whom the command runs; only what is cheap to find out.
fn context(command: &str, store: &Path) -> Value {
    let mut context = Map::new();
    context.insert("command".into(), command.into());
    let argv: Vec<Value> = env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned().into())
        .collect();
    context.insert("argv".into(), argv.into());
    if let Ok(cwd) = env::current_dir() {
        context.insert("cwd".into(), cwd.display().to_string().into());
    }
    context.insert("store".into(), store.display().to_string().into());
    if let Some(user) = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| env::var(name).ok().filter(|v| !v.is_empty()))
    {
        context.insert("user".into(), user.into());
    }
    if let Some(host) = host() {
        context.insert("host".into(), host.into());
    }
    context.insert("pid".into(), std::process::id().into());
    Value::Object(context)
}

/// The host name from the environment or `/etc/hostname`, without a system call library.
fn host() -> Option<String> {
    env::var("HOSTNAME")
        .ok()
        .or_else(|| fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// The current time in RFC 3339, UTC, to the millisecond (finer is noise to a reader).
fn now() -> Result<String> {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    Ok(now.format(&Rfc3339)?)
}

/// Maps an I/O error to [`JournalError::Io`] at `path`.
fn io_at(path: &Path) -> impl Fn(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Flushes directory `dir`, making creations and renames in it durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Other platforms cannot open a directory to flush it; their renames are what they are.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests;
