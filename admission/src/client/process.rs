//! Starting the mechanism process and draining its stderr into our logs.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use super::transport::{read_line_bounded, LineEnd};
use super::{ClientError, SpawnSpec};

/// How many stderr lines are kept for [`ClientError::Died`].
const TAIL_LINES: usize = 20;

/// How much of one stderr line is kept in the tail; the log gets up to [`MAX_STDERR_LINE`].
const TAIL_LINE_CHARS: usize = 1000;

/// Longer stderr lines are logged cut at this many bytes, so a runaway line is not held whole.
const MAX_STDERR_LINE: usize = 64 * 1024;

/// A started mechanism and its three pipes.
#[derive(Debug)]
pub(super) struct Spawned {
    /// The process; killed when dropped.
    pub(super) child: Child,
    /// Its stdin.
    pub(super) stdin: ChildStdin,
    /// Its stdout.
    pub(super) stdout: ChildStdout,
    /// Its stderr.
    pub(super) stderr: ChildStderr,
}

/// Starts `spec` with all three pipes, to be killed when dropped.
pub(super) fn spawn(spec: &SpawnSpec) -> Result<Spawned, ClientError> {
    let failed = |source| ClientError::Spawn {
        program: spec.program.clone(),
        source,
    };
    // tokio panics when asked to spawn outside a runtime; this way it is an error instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(failed(io::Error::other(
            "the client must be started inside a Tokio runtime",
        )));
    }
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(failed)?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(failed(io::Error::other(
            "a pipe to the mechanism is missing",
        )));
    };
    Ok(Spawned {
        child,
        stdin,
        stdout,
        stderr,
    })
}

/// The mechanism's stderr: logged line by line as it comes, its last lines kept.
#[derive(Debug)]
pub(super) struct StderrLog {
    tail: Arc<Mutex<VecDeque<String>>>,
    ended: watch::Receiver<bool>,
}

impl StderrLog {
    /// Starts draining `stderr` in a task of its own, so a chatty mechanism never blocks on a
    /// full pipe; `name` and `pid` label the log events (target `mechanism`).
    pub(super) fn drain(stderr: ChildStderr, name: String, pid: Option<u32>) -> Self {
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let (ended_sender, ended) = watch::channel(false);
        let kept = Arc::clone(&tail);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            // Set while the rest of an over-long line is skipped.
            let mut skipping = false;
            loop {
                line.clear();
                let end = match read_line_bounded(&mut reader, &mut line, MAX_STDERR_LINE).await {
                    Ok(end) => end,
                    Err(e) => {
                        tracing::debug!(mechanism = %name, "reading its stderr failed: {e}");
                        break;
                    }
                };
                let nothing_left = end == LineEnd::Eof && line.is_empty();
                if !(skipping || nothing_left) {
                    let text = String::from_utf8_lossy(&line);
                    let cut = if end == LineEnd::TooLong {
                        " [cut]"
                    } else {
                        ""
                    };
                    tracing::info!(target: "mechanism", mechanism = %name, pid, "{text}{cut}");
                    let mut tail = kept.lock().unwrap_or_else(PoisonError::into_inner);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text.chars().take(TAIL_LINE_CHARS).collect());
                }
                skipping = end == LineEnd::TooLong;
                if end == LineEnd::Eof {
                    break;
                }
            }
            let _ = ended_sender.send(true);
        });
        Self { tail, ended }
    }

    /// The last lines, once stderr has ended or `limit` has passed: a dying mechanism's last
    /// words may still be in the pipe when its stdout closes. A grandchild holding stderr open
    /// is why the wait is bounded.
    pub(super) async fn tail_after(&self, limit: Duration) -> String {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(limit, ended.wait_for(|ended| *ended)).await;
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}
