//! The lean append-only index `exec/log.jsonl`: one JSON line per status change.
//!
//! Appenders, in any number of threads and processes, take an exclusive lock on
//! `exec/log.lock` and write each line with one `write_all` followed by `sync_data`, so lines
//! never interleave and a line that was reported written survives a crash. A crash in the
//! middle of an append can still leave a torn last line; readers skip any line that does not
//! parse, with a warning, and the next appender first ends the torn line with a newline, so
//! its own line is intact and on its own.
//!
//! The lock lives on a separate file so the log itself is only ever opened for appending or
//! reading, never held open as a lock by someone who is not writing it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use protocol::artifact::kinds::ExecStatus;
use serde::{Deserialize, Serialize};

use super::{io_at, sync_dir, JournalError, Result, Uid};

/// One line of `exec/log.jsonl`: an execution changed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The execution.
    pub uid: Uid,
    /// The execution it resumes, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uid>,
    /// The status it entered.
    pub status: ExecStatus,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The admission command it runs, e.g. `run`.
    pub command: String,
}

/// Appends one entry as one line, under the exclusive lock.
pub(super) fn append(log: &Path, lock: &Path, entry: &LogEntry) -> Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(|e| JournalError::Encode {
        what: "log entry",
        source: e,
    })?;
    line.push(b'\n');

    let lock_file = open_lock(lock)?;
    lock_file.lock().map_err(io_at(lock))?;
    // The lock is released when `lock_file` is closed at the end of this function, on every
    // path, including errors.
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(log)
        .map_err(io_at(log))?;
    let len = file.metadata().map_err(io_at(log))?.len();
    let mut bytes = Vec::with_capacity(line.len() + 1);
    if len > 0 && !ends_with_newline(&mut file).map_err(io_at(log))? {
        // A previous appender died mid-line: end its torn line so ours stands alone.
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(&line);
    file.write_all(&bytes).map_err(io_at(log))?;
    file.sync_data().map_err(io_at(log))?;
    if len == 0 {
        // The log may have just been created: make its directory entry durable too.
        if let Some(dir) = log.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Reads every entry, oldest first, skipping (with a warning) lines that do not parse.
pub(super) fn read(log: &Path, lock: &Path) -> Result<Vec<LogEntry>> {
    let lock_file = open_lock(lock)?;
    // Shared: readers never see an append in progress, so the only torn lines they meet are
    // those a crash left behind.
    lock_file.lock_shared().map_err(io_at(lock))?;
    let mut bytes = Vec::new();
    match File::open(log) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes).map_err(io_at(log))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(log)(e)),
    }
    drop(lock_file);

    let mut entries = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LogEntry>(line) {
            Ok(entry) => entries.push(entry),
            // A torn line is expected after a crash; anything else unreadable is reported the
            // same way rather than hiding every entry after it.
            Err(e) => tracing::warn!(
                "{}: skipping line {} (torn by a crash, or corrupt): {e}",
                log.display(),
                index + 1
            ),
        }
    }
    Ok(entries)
}

fn open_lock(lock: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
        .map_err(io_at(lock))
}

fn ends_with_newline(file: &mut File) -> std::io::Result<bool> {
    // In append mode a seek moves only where reads start; writes still go to the end.
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}
