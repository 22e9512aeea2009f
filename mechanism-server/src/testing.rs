//! A mechanism served in process, for its tests: [`Harness`] connects a client to the
//! runtime serving it over in-process pipes, on a fresh temporary root and store, so a test
//! speaks the real protocol (framing, JSON-RPC, the runtime's checks and records) without
//! spawning a process.
//!
//! ```no_run
//! # fn test(mechanism: impl mechanism_server::Mechanism) -> Result<(), mechanism_server::testing::HarnessError> {
//! use mechanism_server::testing::Harness;
//! use serde_json::json;
//!
//! let mut harness = Harness::start(mechanism)?;
//! let planned = harness.call("plan", json!({"operation": "write", "params": {}}))?;
//! let plan_hash = planned["plan_hash"].as_str().unwrap_or_default().parse()?;
//! let admission = harness.admit(&plan_hash)?;
//! harness.call("execute", json!({"plan_hash": plan_hash, "admission": admission}))?;
//! harness.finish()?;
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, Gate, GateDecision, GateRecord, Plan,
};
use protocol::artifact::Artifact;
use protocol::store::{Provenance, Store, StoreError};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use crate::cli::Options;
use crate::mechanism::{ExecContext, Mechanism};
use crate::server;

/// How long the harness waits for any one message before it gives up.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Setting up the directories or pipes failed.
    #[error("harness: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing came within [`TIMEOUT`].
    #[error("no message from the server within {TIMEOUT:?} while waiting for {0}")]
    Timeout(String),
    /// The server closed its output.
    #[error("the server closed its output while waiting for {0}")]
    Closed(String),
    /// The server answered with an error object.
    #[error("the server answered {method} with error {error}")]
    Rpc {
        /// The method called.
        method: String,
        /// The error, read back from its JSON-RPC error object.
        error: ErrorInfo,
    },
    /// The server answered, but not with what the protocol promises.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The server did not start, or stopped with an error.
    #[error("the server stopped: {0}")]
    Server(String),
    /// The store refused a read or write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A digest in an answer did not parse.
    #[error(transparent)]
    Digest(#[from] protocol::digest::DigestParseError),
}

impl HarnessError {
    /// The stable error code of an error answer, e.g. `BUSY`.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            HarnessError::Rpc { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

/// A client connected to a mechanism served in process, on a temporary root and store.
///
/// Messages go as newline-delimited JSON. Every message the server writes (responses and
/// notifications) is read, in order, by [`Harness::next`] and the calls built on it.
pub struct Harness {
    /// The server's stdin; `None` once closed.
    input: Option<PipeWriter>,
    /// Every message the server wrote, in order; disconnected when its output closes.
    messages: mpsc::Receiver<Value>,
    /// What serving returned, once it returns.
    done: mpsc::Receiver<Result<(), String>>,
    /// What serving returned, once [`Harness::serving`] saw it.
    returned: RefCell<Option<Result<(), String>>>,
    next_id: u64,
    dir: tempfile::TempDir,
}

impl Harness {
    /// Serves `mechanism` with an empty root (`root/`) and store (`store/`) in a new
    /// temporary directory, removed when the harness is dropped.
    pub fn start<M: Mechanism>(mechanism: M) -> Result<Self, HarnessError> {
        Self::start_with(mechanism, |_| {})
    }

    /// [`Harness::start`], with the options (root and store already set) changed by
    /// `configure` first, e.g. to trust force-ack signers or to fill the root.
    pub fn start_with<M: Mechanism>(
        mechanism: M,
        configure: impl FnOnce(&mut Options),
    ) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&root)?;
        let mut options = Options::new(root, store);
        configure(&mut options);

        let (input_read, input) = std::io::pipe()?;
        let (output_read, output) = std::io::pipe()?;
        let (done_tx, done) = mpsc::channel();
        thread::Builder::new()
            .name("mechanism-server".into())
            .spawn(move || {
                let served = server::serve(mechanism, &options, BufReader::new(input_read), output)
                    .map_err(|e| e.to_string());
                let _ = done_tx.send(served);
            })?;
        let (messages_tx, messages) = mpsc::channel();
        thread::Builder::new()
            .name("harness-reader".into())
            .spawn(move || {
                for line in BufReader::new(output_read).lines() {
                    let Ok(line) = line else { break };
                    let message = serde_json::from_str(&line)
                        .unwrap_or_else(|e| json!({ "not_json": line, "error": e.to_string() }));
                    if messages_tx.send(message).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            input: Some(input),
            messages,
            done,
            returned: RefCell::new(None),
            next_id: 0,
            dir,
        })
    }

    /// The mechanism's root.
    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    /// The object store.
    pub fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    /// Writes one message, as one line.
    pub fn send(&mut self, message: &Value) -> Result<(), HarnessError> {
        let input = self
            .input
            .as_mut()
            .ok_or_else(|| HarnessError::Closed("sending: the input is closed".to_owned()))?;
        let mut line = message.to_string();
        line.push('\n');
        input.write_all(line.as_bytes())?;
        input.flush()?;
        Ok(())
    }

    /// Sends a request with the given id, without waiting for its answer.
    pub fn request(
        &mut self,
        id: impl Into<Value>,
        method: &str,
        params: Value,
    ) -> Result<(), HarnessError> {
        let id = id.into();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Value) -> Result<(), HarnessError> {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    /// Sends `$/cancelRequest` for the request `id`.
    pub fn cancel(&mut self, id: impl Into<Value>) -> Result<(), HarnessError> {
        self.notify("$/cancelRequest", json!({ "id": id.into() }))
    }

    /// Calls `method` and waits for its answer, which must be the next response: the
    /// result, or [`HarnessError::Rpc`] with the error object. Notifications before it are
    /// dropped.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, HarnessError> {
        self.next_id += 1;
        let id = format!("harness-{}", self.next_id);
        self.request(id.as_str(), method, params)?;
        let (response, _) = self.next_response(&format!("the answer to {method} ({id})"))?;
        if response["id"] != json!(id) {
            return Err(HarnessError::Unexpected(format!(
                "the next response is not {id}'s: {response}"
            )));
        }
        match (response.get("result"), response.get("error")) {
            (Some(result), None) => Ok(result.clone()),
            (None, Some(error)) => match ErrorInfo::from_json_rpc(error) {
                Some(error) => Err(HarnessError::Rpc {
                    method: method.to_owned(),
                    error,
                }),
                None => Err(HarnessError::Unexpected(format!(
                    "an error without a stable code: {error}"
                ))),
            },
            _ => Err(HarnessError::Unexpected(response.to_string())),
        }
    }

    /// The next message the server writes, waiting up to [`TIMEOUT`]; `waiting_for` says
    /// what for, in the error.
    pub fn next(&self, waiting_for: &str) -> Result<Value, HarnessError> {
        match self.messages.recv_timeout(TIMEOUT) {
            Ok(message) => Ok(message),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(HarnessError::Timeout(waiting_for.to_owned()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(HarnessError::Closed(waiting_for.to_owned()))
            }
        }
    }

    /// A message already written and not yet read, if any; never waits.
    pub fn try_next(&self) -> Result<Option<Value>, HarnessError> {
        match self.messages.try_recv() {
            Ok(message) => Ok(Some(message)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => {
                Err(HarnessError::Closed("a pending message".to_owned()))
            }
        }
    }

    /// The next response (a message with an `id`), and the notifications written before it.
    pub fn next_response(&self, waiting_for: &str) -> Result<(Value, Vec<Value>), HarnessError> {
        let mut notifications = Vec::new();
        loop {
            let message = self.next(waiting_for)?;
            if message.get("id").is_some() {
                return Ok((message, notifications));
            }
            notifications.push(message);
        }
    }

    /// Stores an AdmissionWitness that admits `plan_hash` (a plan in the store) with every
    /// gate passed, as an admission would, and returns its digest for `execute`.
    pub fn admit(&self, plan_hash: &Digest) -> Result<Digest, HarnessError> {
        let store = Store::open(self.store())?;
        let plan: Plan = store
            .get_artifact(plan_hash)?
            .view()
            .map_err(|e| HarnessError::Unexpected(format!("{plan_hash} is not a plan: {e}")))?;
        let witness = AdmissionWitness {
            plan_hash: *plan_hash,
            mechanism: plan.mechanism,
            policy_digest: Digest::of_bytes(b"mechanism_server::testing"),
            gates: Gate::ALL
                .iter()
                .map(|&gate| GateRecord {
                    gate,
                    decision: GateDecision::Pass,
                    code: None,
                    reason: "passed in a test".to_owned(),
                })
                .collect(),
            decision: AdmissionDecision::Admit,
            force_ack_required: plan.destructive,
            workorder: None,
        };
        let artifact =
            Artifact::from_typed(&witness).map_err(|e| HarnessError::Unexpected(e.to_string()))?;
        Ok(store.put_artifact(&artifact, &Provenance::new("mechanism_server::testing"))?)
    }

    /// Whether the server still serves: it returns only once its input is closed and the
    /// work in flight is done.
    pub fn serving(&self) -> bool {
        let mut returned = self.returned.borrow_mut();
        if returned.is_none() {
            *returned = self.done.try_recv().ok();
        }
        returned.is_none()
    }

    /// Closes the server's input: EOF.
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// Every message until the server closes its output, each within [`TIMEOUT`].
    pub fn drain(&self) -> Result<Vec<Value>, HarnessError> {
        let deadline = Instant::now() + TIMEOUT;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) => rest.push(message),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(rest),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(HarnessError::Timeout(format!(
                        "the output to close after EOF; read {rest:?}"
                    )))
                }
            }
        }
    }

    /// Waits up to [`TIMEOUT`] for the server to return, which must be without an error.
    pub fn served(&self) -> Result<(), HarnessError> {
        let returned = match self.returned.borrow_mut().take() {
            Some(returned) => returned,
            None => self
                .done
                .recv_timeout(TIMEOUT)
                .map_err(|_| HarnessError::Timeout("the server to return".to_owned()))?,
        };
        returned.map_err(HarnessError::Server)
    }

    /// Closes the input, reads what is left until the output closes, and checks that the
    /// server returned without an error. Returns the messages read.
    pub fn finish(mut self) -> Result<Vec<Value>, HarnessError> {
        self.close_input();
        let rest = self.drain()?;
        self.served()?;
        Ok(rest)
    }
}

/// A context for calling [`Mechanism::execute`] directly, outside the runtime (in a
/// benchmark): no deadline, never cancelled, progress dropped, and nothing to claim at the
/// point of no return.
pub fn exec_context(plan_hash: Digest) -> ExecContext {
    ExecContext::new(
        plan_hash,
        None,
        Arc::new(AtomicBool::new(false)),
        Arc::new(|_| {}),
        Arc::new(|| Ok(())),
    )
}
