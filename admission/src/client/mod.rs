//! The client to a mechanism subprocess: JSON-RPC 2.0 over its stdin and stdout.
//!
//! [`Client::spawn`] starts the mechanism with piped stdio, drains its stderr into `tracing`
//! (target `mechanism`), and runs a jsonrpsee client over our own line-framed transport on its
//! pipes. That transport guards jsonrpsee from everything but answers to its own requests (see
//! `transport`), so server notifications arrive on [`Client::notifications`] and a mechanism
//! that writes garbage, hangs or dies gives a clear [`ClientError`] rather than a hang.
//!
//! Everything here needs a Tokio runtime with I/O and time enabled.

mod error;
mod process;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonrpsee::core::client::async_client::RpcService;
use jsonrpsee::core::client::{Client as RpcClient, ClientBuilder, ClientT, Error as RpcError};
use jsonrpsee::core::middleware::RpcServiceBuilder;
use protocol::framing::DEFAULT_MAX_MESSAGE_BYTES;
use protocol::jsonrpc;
use serde_json::{json, Map, Value};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::ClientError;

use process::StderrLog;
use transport::{Failure, IdTracker, LineReceiver, LineSender, Link, Writer, REQUEST_ID};

/// jsonrpsee's own limit on every request. Each [`Client::call`] has its own, shorter limit;
/// this one only has to stay out of its way.
const REQUEST_BACKSTOP: Duration = Duration::from_secs(24 * 60 * 60);

/// How long [`Client::shutdown`] lets the mechanism finish its work after stdin closes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a call that saw the mechanism's stdout close waits for it to exit.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long a call that saw the mechanism die waits for the rest of its stderr.
const STDERR_WAIT: Duration = Duration::from_secs(1);

/// How long [`Client::notify`] may wait to hand its message over.
const NOTIFY_LIMIT: Duration = Duration::from_secs(5);

/// How to start a mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory; ours when `None`.
    pub cwd: Option<PathBuf>,
    /// Variables added to the environment it inherits.
    pub env: Vec<(String, String)>,
}

impl SpawnSpec {
    /// The name logs give the mechanism: its program's file name.
    fn name(&self) -> String {
        self.program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }
}

/// A notification the mechanism sent, such as `progress`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its method.
    pub method: String,
    /// Its params; `null` when it had none.
    pub params: Value,
}

/// A connection to one running mechanism; dropping it kills the mechanism.
pub struct Client {
    rpc: RpcClient<IdTracker<RpcService>>,
    link: Arc<Link>,
    writer: Writer,
    stderr: StderrLog,
    // Behind a lock because any failing call may need to wait for the exit status.
    child: tokio::sync::Mutex<Child>,
    name: String,
    pid: Option<u32>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("mechanism", &self.name)
            .field("pid", &self.pid)
            .field("failure", &self.link.failure())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the mechanism described by `spec` and connects to it.
    pub fn spawn(spec: &SpawnSpec) -> Result<Client, ClientError> {
        let spawned = process::spawn(spec)?;
        let name = spec.name();
        let pid = spawned.child.id();
        tracing::debug!(mechanism = %name, pid, "started");
        let stderr = StderrLog::drain(spawned.stderr, name.clone(), pid);
        let link = Arc::new(Link::new(name.clone()));
        let writer = Writer::new(spawned.stdin, Arc::clone(&link));
        let receiver = LineReceiver::new(
            spawned.stdout,
            DEFAULT_MAX_MESSAGE_BYTES,
            writer.clone(),
            Arc::clone(&link),
        );
        let tracker_link = Arc::clone(&link);
        let middleware = RpcServiceBuilder::new()
            .layer_fn(move |service| IdTracker::new(service, Arc::clone(&tracker_link)));
        let rpc = ClientBuilder::default()
            .request_timeout(REQUEST_BACKSTOP)
            .set_rpc_middleware(middleware)
            .build_with_tokio(LineSender(writer.clone()), receiver);
        Ok(Client {
            rpc,
            link,
            writer,
            stderr,
            child: tokio::sync::Mutex::new(spawned.child),
            name,
            pid,
        })
    }

    /// The mechanism's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// A receiver of the mechanism's notifications from now on. Each call replaces the
    /// previous receiver, and notifications that arrive while there is none are dropped.
    pub fn notifications(&self) -> mpsc::UnboundedReceiver<Notification> {
        self.link.subscribe_notifications()
    }

    /// Calls `method` with `params` (an object, or `null` for none) and waits at most
    /// `timeout` for its result; on timeout the request is cancelled with `$/cancelRequest`.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.call_cancellable(method, params, timeout, None).await
    }

    /// [`Client::call`] that `cancel` can withdraw: once it fires, the request is cancelled
    /// with `$/cancelRequest` and its answer is still awaited, since the mechanism decides
    /// (a `CANCELLED` refusal before its point of no return, its result past it).
    pub async fn call_cancellable(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        cancel: Option<&CancellationToken>,
    ) -> Result<Value, ClientError> {
        let params = object_params(method, params)?;
        if let Some(failure) = self.link.failure() {
            return Err(self.report(failure).await);
        }
        let id = Arc::new(OnceLock::new());
        let request = REQUEST_ID.scope(
            Arc::clone(&id),
            self.rpc.request::<Value, _>(method, params),
        );
        let answer = async {
            tokio::pin!(request);
            let mut withdrawn = cancel.is_none();
            loop {
                tokio::select! {
                    outcome = &mut request => return outcome,
                    () = wait_cancelled(cancel), if !withdrawn => {
                        withdrawn = true;
                        tracing::debug!(mechanism = %self.name, method, "cancelling the request");
                        self.cancel(id.get()).await;
                    }
                }
            }
        };
        // Biased so an answer that came in just before the mechanism died still counts.
        let outcome = tokio::select! {
            biased;
            outcome = tokio::time::timeout(timeout, answer) => outcome,
            failure = self.link.failed() => return Err(self.report(failure).await),
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(RpcError::Call(error))) => Err(rpc_error(
                error.code(),
                error.message(),
                error.data().map(|raw| raw.get()),
            )),
            Ok(Err(RpcError::RequestTimeout)) | Err(_) => {
                self.cancel(id.get()).await;
                Err(ClientError::Timeout {
                    method: method.to_owned(),
                    after: timeout,
                })
            }
            Ok(Err(error)) => Err(self.explain(error).await),
        }
    }

    /// Sends the notification `method` with `params` (an object, or `null` for none).
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), ClientError> {
        let params = object_params(method, params)?;
        if let Some(failure) = self.link.failure() {
            return Err(self.report(failure).await);
        }
        match tokio::time::timeout(NOTIFY_LIMIT, self.rpc.notification(method, params)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.explain(error).await),
            Err(_) => Err(ClientError::Timeout {
                method: method.to_owned(),
                after: NOTIFY_LIMIT,
            }),
        }
    }

    /// Closes the mechanism's stdin and waits for it to finish and exit; kills it if it has
    /// not exited after a grace period. Returns how it exited.
    pub async fn shutdown(mut self) -> Result<ExitStatus, ClientError> {
        self.stop().await
    }

    /// [`Client::shutdown`] in place, for an owner that ends it when dropped. The client (its
    /// reader draining stdout among the rest) stays alive to the end, so a mechanism writing
    /// its last answers is not blocked on a full pipe while we wait.
    pub(crate) async fn stop(&mut self) -> Result<ExitStatus, ClientError> {
        let Client {
            writer,
            child,
            name,
            ..
        } = self;
        let child = child.get_mut();
        let exited = tokio::time::timeout(SHUTDOWN_GRACE, async {
            writer.close().await;
            child.wait().await
        })
        .await;
        let waited = match exited {
            Ok(waited) => waited,
            Err(_) => {
                tracing::warn!(mechanism = %name, "did not exit within {SHUTDOWN_GRACE:?} of EOF; killing it");
                child.kill().await.map_err(|source| ClientError::Process {
                    action: "kill",
                    source,
                })?;
                child.wait().await
            }
        };
        waited.map_err(|source| ClientError::Process {
            action: "wait for",
            source,
        })
    }

    /// Asks the mechanism to stop working on the request with this id, if it is known.
    async fn cancel(&self, id: Option<&Value>) {
        let Some(id) = id else {
            return;
        };
        if let Err(e) = self
            .notify(jsonrpc::CANCEL_REQUEST, json!({ "id": id }))
            .await
        {
            tracing::debug!(mechanism = %self.name, "could not cancel request {id}: {e}");
        }
    }

    /// The error for a jsonrpsee failure other than an answer or a timeout.
    async fn explain(&self, error: RpcError) -> ClientError {
        // jsonrpsee fails this way once our transport has given up, and the transport records
        // why before it does; that reason is the useful one.
        match self.link.failure() {
            Some(failure) => self.report(failure).await,
            None => ClientError::Transport(error.to_string()),
        }
    }

    /// The error for a broken connection.
    async fn report(&self, failure: Failure) -> ClientError {
        match failure {
            Failure::Violation { reason, excerpt } => {
                ClientError::ProtocolViolation { reason, excerpt }
            }
            Failure::Unsendable(detail) => ClientError::Transport(detail),
            Failure::Broken(_) => {
                let status = {
                    let mut child = self.child.lock().await;
                    match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
                        Ok(Ok(status)) => status.code(),
                        Ok(Err(_)) | Err(_) => None,
                    }
                };
                let stderr_tail = self.stderr.tail_after(STDERR_WAIT).await;
                ClientError::Died {
                    status,
                    stderr_tail,
                }
            }
        }
    }
}

/// The params as the JSON object the protocol sends.
fn object_params(method: &str, params: Value) -> Result<Map<String, Value>, ClientError> {
    match params {
        Value::Object(params) => Ok(params),
        Value::Null => Ok(Map::new()),
        _ => Err(ClientError::ParamsNotObject {
            method: method.to_owned(),
        }),
    }
}

/// A JSON-RPC error response as a [`ClientError::Rpc`]; `data` is its raw `error.data`.
fn rpc_error(number: i32, message: &str, data: Option<&str>) -> ClientError {
    // The transport only passes on data that parsed as JSON, so this cannot fall back.
    let data = data
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or(Value::Null);
    let code = data
        .get("code")
        .and_then(Value::as_str)
        .and_then(|code| code.parse().ok());
    ClientError::Rpc {
        code,
        number: i64::from(number),
        message: message.to_owned(),
        data,
    }
}

/// Resolves once `cancel` fires; never without one.
async fn wait_cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(cancel) => cancel.cancelled().await,
        None => std::future::pending().await,
    }
}
