//! A mechanism under test, spoken to byte for byte.
//!
//! The harness does not use the admission's JSON-RPC client: it must be able to send what no
//! well-behaved client would (broken JSON, empty batches, oversized messages) and to see
//! every byte the mechanism writes. A reader thread parses stdout strictly in the framing
//! the harness spoke; anything that is not a JSON-RPC 2.0 response or notification is
//! written down as a violation, never skipped silently. A writer thread feeds stdin, so a
//! mechanism that stops reading makes a check time out instead of hanging the harness.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use protocol::framing::Framing;
use serde_json::{json, Value};

/// The most stdout bytes read as one message; a mechanism's answer is far smaller.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// How much of the mechanism's stderr is kept, from the end, to explain a failure.
const STDERR_TAIL_BYTES: usize = 4096;

/// How long a dead or silent peer is given to show it said nothing more.
const QUIET_WINDOW: Duration = Duration::from_millis(150);

/// What to run: the program and its arguments, placeholders already filled in.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// An error object as the mechanism sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// `error.code`.
    pub number: i64,
    /// `error.message`.
    pub message: String,
    /// `error.data.code`, the stable string, when present.
    pub code: Option<String>,
    /// The whole error object, for reports.
    pub raw: Value,
}

impl RpcError {
    fn from_value(raw: &Value) -> Self {
        Self {
            number: raw["code"].as_i64().unwrap_or(i64::MIN),
            message: raw["message"].as_str().unwrap_or_default().to_owned(),
            code: raw["data"]["code"].as_str().map(str::to_owned),
            raw: raw.clone(),
        }
    }

    /// `CODE (number): message`, for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}): {}",
            self.code.as_deref().unwrap_or("no data.code"),
            self.number,
            self.message
        )
    }
}

/// Why no reply came.
#[derive(Debug, Clone, PartialEq)]
pub enum NoReply {
    /// Nothing within the timeout.
    Timeout(Duration),
    /// The mechanism closed stdout (usually: it exited).
    Closed,
}

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoReply::Timeout(t) => write!(f, "no reply within {}", humantime::format_duration(*t)),
            NoReply::Closed => f.write_str("the mechanism closed its stdout (did it exit?)"),
        }
    }
}

/// One reply to a request: its result or its error object.
pub type Reply = Result<Value, RpcError>;

/// How a peer's process ended.
#[derive(Debug, Clone)]
pub struct Ending {
    /// Its exit status; `None` when it had to be killed.
    pub status: Option<ExitStatus>,
    /// The last lines it wrote on stderr.
    pub stderr_tail: String,
    /// Everything it wrote on stdout that was not a protocol message, to the very end.
    pub violations: Vec<String>,
    /// The notifications it sent, in order.
    pub notifications: Vec<Value>,
}

/// A running mechanism process and the harness's end of its pipes.
pub struct Peer {
    child: Child,
    /// The writer thread's queue; dropping it closes the mechanism's stdin once written.
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    framing: Framing,
    incoming: Receiver<Option<Value>>,
    closed: bool,
    /// Messages that arrived while waiting for another: responses with other ids.
    strays: VecDeque<Value>,
    /// Notifications received so far (`progress`, or anything else the mechanism sent).
    notifications: Vec<Value>,
    violations: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    next_id: u64,
    timeout: Duration,
    /// Whether the process leads a process group of its own ([`Peer::spawn_killable`]).
    own_group: bool,
}

impl Peer {
    /// Starts the mechanism, to be spoken to in `framing`; replies wait at most `timeout`.
    pub fn spawn(launch: &Launch, framing: Framing, timeout: Duration) -> std::io::Result<Self> {
        Self::start(launch, framing, timeout, false)
    }

    /// Starts the mechanism in a process group of its own, so that [`Peer::kill`] ends it
    /// and every process it started (a wrapper's child, a helper) at the same instant.
    pub fn spawn_killable(
        launch: &Launch,
        framing: Framing,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        Self::start(launch, framing, timeout, true)
    }

    fn start(
        launch: &Launch,
        framing: Framing,
        timeout: Duration,
        own_group: bool,
    ) -> std::io::Result<Self> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if own_group {
            command.process_group(0);
        }
        let mut child = command.spawn()?;
        let stdin_pipe = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        let (stdin, queue) = mpsc::channel();
        thread::spawn(move || write_stdin(stdin_pipe, &queue));
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let stderr_pipe = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr pipe"))?;
        let violations = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, incoming) = mpsc::channel();
        {
            let violations = Arc::clone(&violations);
            thread::spawn(move || read_stdout(BufReader::new(stdout), framing, &tx, &violations));
        }
        {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || keep_tail(stderr_pipe, &stderr));
        }
        Ok(Self {
            child,
            stdin: Some(stdin),
            framing,
            incoming,
            closed: false,
            strays: VecDeque::new(),
            notifications: Vec::new(),
            violations,
            stderr,
            next_id: 0,
            timeout,
            own_group,
        })
    }

    /// Sends `payload` as one message in the peer's framing, exactly as given. It is queued
    /// for the writer thread; an error means stdin is closed (or writing to it failed).
    pub fn send_raw(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_ref()
            .ok_or_else(|| std::io::Error::other("stdin already closed"))?;
        let frame = match self.framing {
            Framing::Lines => [payload, b"\n"].concat(),
            Framing::ContentLength => [
                format!("Content-Length: {}\r\n\r\n", payload.len()).as_bytes(),
                payload,
            ]
            .concat(),
        };
        stdin
            .send(frame)
            .map_err(|_| std::io::Error::other("writing to the mechanism's stdin failed"))
    }

    /// A fresh request id.
    fn fresh_id(&mut self) -> Value {
        self.next_id += 1;
        json!(self.next_id)
    }

    /// Calls `method` and waits for its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Reply, NoReply> {
        let id = self.fresh_id();
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.call_raw(request.to_string().as_bytes(), &id)
    }

    /// Sends a request for `method` without waiting for its reply; returns its id.
    pub fn send(&mut self, method: &str, params: Value) -> std::io::Result<Value> {
        let id = self.fresh_id();
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(request.to_string().as_bytes())?;
        Ok(id)
    }

    /// Sends `payload` and waits for the response whose id is `id`.
    pub fn call_raw(&mut self, payload: &[u8], id: &Value) -> Result<Reply, NoReply> {
        if self.send_raw(payload).is_err() {
            return Err(NoReply::Closed);
        }
        let response = self.wait_for(|message| message.get("id") == Some(id))?;
        Ok(reply_of(&response))
    }

    /// Sends `payload` and returns the next message that is not a notification.
    pub fn exchange(&mut self, payload: &[u8]) -> Result<Value, NoReply> {
        if self.send_raw(payload).is_err() {
            return Err(NoReply::Closed);
        }
        self.wait_for(|_| true)
    }

    /// Takes the messages that arrived unasked (responses to nothing pending), after giving
    /// the peer a moment to send any.
    pub fn take_strays(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + QUIET_WINDOW;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.incoming.recv_timeout(left) {
                Ok(Some(message)) if is_notification(&message) => self.notifications.push(message),
                Ok(Some(message)) => self.strays.push_back(message),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    break;
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        self.strays.drain(..).collect()
    }

    /// Everything on stdout so far that was not a protocol message.
    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The last of what the mechanism wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        let bytes = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// Closes stdin and waits (up to the timeout) for the process to exit; kills it after.
    pub fn finish(mut self) -> Ending {
        drop(self.stdin.take());
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        // The reader threads end with the pipes; give them a moment to record the last bytes.
        let settle = Instant::now() + QUIET_WINDOW;
        while !self.closed && Instant::now() < settle {
            match self.incoming.recv_timeout(QUIET_WINDOW) {
                Ok(Some(message)) if is_notification(&message) => self.notifications.push(message),
                Ok(Some(_)) => {}
                _ => self.closed = true,
            }
        }
        Ending {
            status,
            stderr_tail: self.stderr_tail(),
            violations: self.violations(),
            notifications: std::mem::take(&mut self.notifications),
        }
    }

    /// Kills the process with SIGKILL, as a crash would, with every process of its group when
    /// it has one, and reaps it. Returns the responses it had sent and nobody took.
    pub fn kill(mut self) -> Vec<Value> {
        let pid = rustix::process::Pid::from_child(&self.child);
        let killed = if self.own_group {
            rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
                .map_err(std::io::Error::from)
        } else {
            self.child.kill()
        };
        if let Err(error) = killed {
            tracing::debug!(%error, "killing the mechanism (it may have exited already)");
        }
        let _ = self.child.wait();
        drop(self.stdin.take());
        while !self.closed {
            match self.incoming.recv_timeout(QUIET_WINDOW) {
                Ok(Some(message)) if is_notification(&message) => {}
                Ok(Some(message)) => self.strays.push_back(message),
                _ => self.closed = true,
            }
        }
        self.strays.drain(..).collect()
    }

    fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Result<Value, NoReply> {
        if let Some(at) = self.strays.iter().position(&wanted) {
            return Ok(self.strays.remove(at).unwrap_or(Value::Null));
        }
        if self.closed {
            return Err(NoReply::Closed);
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(NoReply::Timeout(self.timeout))?;
            match self.incoming.recv_timeout(left) {
                Ok(Some(message)) if is_notification(&message) => self.notifications.push(message),
                Ok(Some(message)) if wanted(&message) => return Ok(message),
                Ok(Some(message)) => self.strays.push_back(message),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    return Err(NoReply::Closed);
                }
                Err(RecvTimeoutError::Timeout) => return Err(NoReply::Timeout(self.timeout)),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes each queued frame to the mechanism's stdin, until the queue closes or a write
/// fails (the mechanism closed its stdin, or was killed); stdin is closed on return.
fn write_stdin(mut stdin: ChildStdin, queue: &Receiver<Vec<u8>>) {
    while let Ok(frame) = queue.recv() {
        if stdin
            .write_all(&frame)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return;
        }
    }
}

/// The result or error of a response object.
pub fn reply_of(response: &Value) -> Reply {
    match response.get("error") {
        Some(error) => Err(RpcError::from_value(error)),
        None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
    }
}

fn is_notification(message: &Value) -> bool {
    message.get("method").is_some() && message.get("id").is_none()
}

/// Reads stdout in `framing` until it closes, forwarding protocol messages and writing
/// down everything else; `None` on the channel means stdout closed.
fn read_stdout<R: BufRead>(
    mut reader: R,
    framing: Framing,
    tx: &mpsc::Sender<Option<Value>>,
    violations: &Mutex<Vec<String>>,
) {
    let note = |what: String| {
        if let Ok(mut v) = violations.lock() {
            v.push(what);
        }
    };
    loop {
        let frame = match framing {
            Framing::Lines => read_line(&mut reader),
            Framing::ContentLength => read_content_length(&mut reader),
        };
        match frame {
            Frame::Message(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => match envelope_problem(&value) {
                    None => {
                        if tx.send(Some(value)).is_err() {
                            return;
                        }
                    }
                    Some(problem) => note(format!("{problem}: {}", excerpt(&bytes))),
                },
                Err(_) => note(format!("not JSON: {}", excerpt(&bytes))),
            },
            Frame::Skip => {}
            Frame::Junk(what) => note(what),
            Frame::End => {
                let _ = tx.send(None);
                return;
            }
        }
    }
}

enum Frame {
    Message(Vec<u8>),
    /// Whitespace between messages.
    Skip,
    Junk(String),
    End,
}

fn read_line<R: BufRead>(reader: &mut R) -> Frame {
    let mut line = Vec::new();
    match reader
        .by_ref()
        .take(MAX_FRAME_BYTES as u64)
        .read_until(b'\n', &mut line)
    {
        Ok(0) | Err(_) => Frame::End,
        Ok(_) if line.iter().all(u8::is_ascii_whitespace) => Frame::Skip,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            Frame::Message(line)
        }
    }
}

fn read_content_length<R: BufRead>(reader: &mut R) -> Frame {
    let mut length = None;
    let mut saw_header = false;
    loop {
        let mut line = Vec::new();
        match reader.by_ref().take(8192).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) if !saw_header => return Frame::End,
            Ok(0) | Err(_) => return Frame::Junk("stdout ended inside a header block".to_owned()),
            Ok(_) => {}
        }
        if line == b"\r\n" {
            break;
        }
        if !saw_header && line.iter().all(u8::is_ascii_whitespace) {
            return Frame::Skip;
        }
        let text = String::from_utf8_lossy(&line);
        let Some(header) = text.strip_suffix("\r\n") else {
            return Frame::Junk(format!(
                "not a Content-Length header line (headers end in CRLF): {}",
                excerpt(&line)
            ));
        };
        let Some((name, value)) = header.split_once(':') else {
            return Frame::Junk(format!("not a header: {}", excerpt(&line)));
        };
        saw_header = true;
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let Some(length) = length.filter(|n| *n <= MAX_FRAME_BYTES) else {
        return Frame::Junk("a header block without a usable Content-Length".to_owned());
    };
    let mut body = vec![0; length];
    match reader.read_exact(&mut body) {
        Ok(()) => Frame::Message(body),
        Err(_) => Frame::Junk("stdout ended inside a message body".to_owned()),
    }
}

/// Why `value` is not a JSON-RPC 2.0 response, notification or batch of responses.
fn envelope_problem(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) if items.is_empty() => Some("an empty batch response".to_owned()),
        Value::Array(items) => items
            .iter()
            .find_map(|item| response_problem(item).map(|p| format!("in a batch: {p}"))),
        Value::Object(object) if object.contains_key("method") && !object.contains_key("id") => {
            (object.get("jsonrpc") != Some(&json!("2.0")))
                .then(|| "a notification without \"jsonrpc\": \"2.0\"".to_owned())
        }
        other => response_problem(other),
    }
}

fn response_problem(value: &Value) -> Option<String> {
    let Value::Object(object) = value else {
        return Some("not a JSON-RPC object".to_owned());
    };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Some("a response without \"jsonrpc\": \"2.0\"".to_owned());
    }
    match object.get("id") {
        Some(Value::String(_) | Value::Number(_) | Value::Null) => {}
        _ => return Some("a response without a valid \"id\"".to_owned()),
    }
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => None,
        (None, Some(Value::Object(error))) => {
            if !error.get("code").is_some_and(Value::is_i64) {
                Some("an error object without an integer \"code\"".to_owned())
            } else if !error.get("message").is_some_and(Value::is_string) {
                Some("an error object without a string \"message\"".to_owned())
            } else {
                None
            }
        }
        (None, Some(_)) => Some("an \"error\" that is not an object".to_owned()),
        _ => Some("a response with neither or both of \"result\" and \"error\"".to_owned()),
    }
}

/// The first bytes of `bytes`, escaped, for a report.
pub fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let mut shown = format!("{:?}", text.trim_end());
    if bytes.len() > MAX {
        shown.push_str(&format!(" ({} bytes)", bytes.len()));
    }
    shown
}

fn keep_tail<R: Read>(mut pipe: R, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Ok(mut tail) = tail.lock() {
            tail.extend_from_slice(&buf[..n]);
            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
            tail.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mechanism_that_never_reads_stdin_times_out_instead_of_blocking_the_harness() {
        const WAIT: Duration = Duration::from_millis(200);
        let launch = Launch {
            program: "sleep".into(),
            args: vec!["60".into()],
        };
        let (done_tx, done) = mpsc::channel();
        thread::spawn(move || {
            let mut peer = Peer::spawn(&launch, Framing::Lines, WAIT).expect("spawn `sleep`");
            // Far more than a pipe holds: a blocking write would never return.
            let sent = peer.send_raw(&vec![b'x'; 4 << 20]).is_ok();
            let reply = peer.call("describe", json!({}));
            let ending = peer.finish();
            let _ = done_tx.send((sent, reply, ending.status));
        });
        let (sent, reply, status) = done
            .recv_timeout(Duration::from_secs(20))
            .expect("the harness went on although the mechanism reads nothing");
        assert!(sent);
        assert_eq!(reply, Err(NoReply::Timeout(WAIT)));
        assert!(status.is_none(), "still running at the end, so killed");
    }
}
