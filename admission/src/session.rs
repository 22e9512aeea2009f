//! A session with one mechanism subprocess: started from its registry entry, version
//! negotiated with `describe`, then `plan` and `execute` as blocking calls.
//!
//! The commands are synchronous; the session owns a small tokio runtime for the client and
//! blocks on it, so nothing else in the admission needs to be async.

use std::time::Duration;

use protocol::artifact::kinds::RegistryEntry;
use protocol::verbs::{
    DescribeParams, DescribeResult, ExecuteParams, PlanParams, ProgressParams, PROGRESS,
    PROTOCOL_VERSION,
};
use protocol::ErrorCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, SpawnSpec};
use crate::registry::{self, LaunchPaths};

/// The hidden `admission` subcommand that serves the built-in mechanisms.
pub const SERVE: &str = "serve";

/// The program the registry names for the built-in mechanisms.
const BUILTIN_SERVER: &str = "mechanism-server";

/// How long `describe` may take: it only lists what the mechanism offers.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `plan` may take.
const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
/// Extra time past the deadline for the mechanism's answer. The mechanism gets the deadline
/// and refuses at it when it has not passed its point of no return; past that point it
/// finishes and records whatever the clock says, and this is how long we wait for that
/// before giving up (and, at shutdown, killing it).
const ANSWER_GRACE: Duration = Duration::from_secs(30);

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The mechanism could not be located or its command built.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The exchange with the mechanism failed.
    #[error("{}", client_message(.0))]
    Client(#[from] ClientError),
    /// The mechanism answered, but not with what the protocol promises.
    #[error("the mechanism answered {method} with something unexpected: {reason}")]
    Unexpected {
        /// The verb.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The runtime for the client could not start.
    #[error("cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
}

/// A client failure in words; a refusal with a stable code leaves the code out, since every
/// report of a session's failure shows [`SessionError::code`] beside its message.
fn client_message(error: &ClientError) -> String {
    match error {
        ClientError::Rpc {
            code: Some(_),
            message,
            ..
        } => format!("the mechanism refused: {message}"),
        other => other.to_string(),
    }
}

impl SessionError {
    /// The protocol error code, when the failure has one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SessionError::Registry(registry::RegistryError::UnknownMechanism { .. }) => {
                Some(ErrorCode::InvalidParams)
            }
            SessionError::Registry(_) => None,
            SessionError::Client(e) => e.code(),
            SessionError::Unexpected { .. } => Some(ErrorCode::InternalError),
            SessionError::Runtime(_) => Some(ErrorCode::InternalError),
        }
    }
}

/// A running mechanism, described. Dropping it ends the mechanism: stdin closed, its exit
/// awaited (killed after a grace period), so no way out of a command leaves it running.
pub struct Session {
    // Before the runtime: fields drop in order, and the client's tasks live on the runtime.
    client: Client,
    runtime: tokio::runtime::Runtime,
    /// The `describe` result as received.
    pub describe: Value,
    /// The same, parsed.
    pub described: DescribeResult,
}

impl Session {
    /// Starts the mechanism of `entry` and describes it, offering our protocol version.
    pub fn start(entry: &RegistryEntry, paths: &LaunchPaths<'_>) -> Result<Self, SessionError> {
        let spec = spawn_spec(entry, paths)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SessionError::Runtime)?;
        let client = {
            let _guard = runtime.enter();
            Client::spawn(&spec)?
        };
        let params = serde_json::to_value(DescribeParams {
            protocol_versions: Some(vec![PROTOCOL_VERSION.to_owned()]),
        })
        .map_err(|e| unexpected("describe", e.to_string()))?;
        let describe = runtime.block_on(client.call("describe", params, DESCRIBE_TIMEOUT))?;
        let described: DescribeResult = serde_json::from_value(describe.clone())
            .map_err(|e| unexpected("describe", e.to_string()))?;
        if described.protocol_version != PROTOCOL_VERSION {
            return Err(SessionError::Client(ClientError::Rpc {
                code: Some(ErrorCode::UnsupportedVersion),
                number: i64::from(ErrorCode::UnsupportedVersion.number()),
                message: format!(
                    "the mechanism chose protocol {:?}; we speak only {PROTOCOL_VERSION}",
                    described.protocol_version
                ),
                data: Value::Null,
            }));
        }
        Ok(Self {
            client,
            runtime,
            describe,
            described,
        })
    }

    /// Calls `plan`; returns the response as received.
    pub fn plan(&self, params: &PlanParams) -> Result<Value, SessionError> {
        let params = serde_json::to_value(params).map_err(|e| unexpected("plan", e.to_string()))?;
        Ok(self
            .runtime
            .block_on(self.client.call("plan", params, PLAN_TIMEOUT))?)
    }

    /// Calls `plan` twice at once, both requests in flight together, so that the mechanism
    /// plans them concurrently; returns both responses as received.
    pub fn plan_twice(
        &self,
        params: &PlanParams,
    ) -> (Result<Value, SessionError>, Result<Value, SessionError>) {
        let params = match serde_json::to_value(params) {
            Ok(params) => params,
            Err(e) => {
                let error = || Err(unexpected("plan", e.to_string()));
                return (error(), error());
            }
        };
        let first = self.client.call("plan", params.clone(), PLAN_TIMEOUT);
        let second = self.client.call("plan", params, PLAN_TIMEOUT);
        let (first, second) = self.runtime.block_on(async { tokio::join!(first, second) });
        (
            first.map_err(SessionError::from),
            second.map_err(SessionError::from),
        )
    }

    /// Calls `execute`, giving up (and cancelling) `ANSWER_GRACE` after `deadline`; each
    /// `progress` notification is passed to `on_progress` while it runs. Once `cancel`
    /// fires, the mechanism is asked to cancel (`$/cancelRequest`) and its answer awaited.
    pub fn execute(
        &self,
        params: &ExecuteParams,
        deadline: Duration,
        cancel: &CancellationToken,
        mut on_progress: impl FnMut(&ProgressParams),
    ) -> Result<Value, SessionError> {
        let params =
            serde_json::to_value(params).map_err(|e| unexpected("execute", e.to_string()))?;
        let mut notifications = self.client.notifications();
        let call = self.client.call_cancellable(
            "execute",
            params,
            deadline.saturating_add(ANSWER_GRACE),
            Some(cancel),
        );
        self.runtime.block_on(async {
            tokio::pin!(call);
            loop {
                tokio::select! {
                    outcome = &mut call => return outcome.map_err(SessionError::from),
                    Some(note) = notifications.recv() => {
                        if note.method == PROGRESS {
                            if let Ok(progress) = serde_json::from_value(note.params) {
                                on_progress(&progress);
                            }
                        }
                    }
                }
            }
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Unwinding already: blocking could panic again, and the client kills it when dropped.
        if std::thread::panicking() {
            return;
        }
        if let Err(error) = self.runtime.block_on(self.client.stop()) {
            tracing::warn!(%error, "the mechanism did not shut down cleanly");
        }
    }
}

/// How to start the entry's mechanism: its program as the registry resolves it, or, for the
/// built-in server when none is installed, this very executable's `serve` subcommand.
fn spawn_spec(entry: &RegistryEntry, paths: &LaunchPaths<'_>) -> Result<SpawnSpec, SessionError> {
    let args = registry::command_args(entry, paths)?
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    let program = match registry::resolve_program(&entry.command.program) {
        Ok(program) => program,
        Err(registry::RegistryError::ProgramNotFound { .. })
            if entry.command.program == BUILTIN_SERVER =>
        {
            let me = std::env::current_exe().map_err(|source| registry::RegistryError::Io {
                path: "the admission executable".into(),
                source,
            })?;
            tracing::debug!(
                "no {BUILTIN_SERVER} installed; serving the built-in mechanism from {}",
                me.display()
            );
            return Ok(SpawnSpec {
                program: me,
                args: std::iter::once(SERVE.to_owned()).chain(args).collect(),
                cwd: None,
                env: Vec::new(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(SpawnSpec {
        program,
        args,
        cwd: None,
        env: Vec::new(),
    })
}

fn unexpected(method: &'static str, reason: String) -> SessionError {
    SessionError::Unexpected { method, reason }
}
