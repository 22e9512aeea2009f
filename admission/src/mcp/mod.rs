//! `admission mcp`: the admission as an MCP server over stdio, so that agents get its
//! guarantees through the protocol they already speak.
//!
//! An agent plans (and sees exactly what would happen), executes only by plan hash, and
//! cannot approve its own destructive plan: approvals are signed by an operator with
//! `admission approve` and recorded in the store, and this server neither signs nor reads a
//! private key. Each tool call runs the same pipeline as the command line, on a blocking
//! thread, with a fresh view of the store; a refusal (a denied gate, a stale plan, an
//! unknown hash) is a tool result with `isError` and the protocol's code, never a transport
//! error. Progress of an execute becomes MCP progress notifications, and an MCP cancellation
//! becomes the mechanism's `$/cancelRequest`.

mod calls;
pub mod tools;

use std::sync::Arc;

use protocol::verbs::ProgressParams;
use protocol::ErrorCode;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::cli::Cli;
use crate::exit::CommandError;

/// What the server tells a client about itself when it connects.
const INSTRUCTIONS: &str = "Cause real effects (a patch to a git repository, a Terraform \
change) safely: call `list_mechanisms` to see what can be done, `plan` to get the exact plan \
and the admission's decision (nothing changes), then `execute` with the plan hash. A \
destructive plan needs an operator's approval: `execute` then returns FORCE_ACK_REQUIRED and \
the command the operator runs; ask them, then call `execute` again. `verify` checks a result \
offline; `show` reads any run or artifact.";

/// Serves MCP on stdin and stdout until the client closes the connection.
pub fn serve(mut cli: Cli) -> Result<(), CommandError> {
    // An MCP client starts the server in a directory of its own choosing: the store is the
    // workspace's unless named, never one found above that directory, and both are absolute
    // so that every command the server hands out pastes anywhere.
    if let (None, Some(workspace)) = (&cli.store_arg, &cli.workspace_arg) {
        cli.store = workspace.join(crate::locate::STORE_DIR);
    }
    cli.store = std::path::absolute(&cli.store).unwrap_or(cli.store);
    cli.workspace = std::path::absolute(&cli.workspace).unwrap_or(cli.workspace);
    // Refuse a bad configuration now, on stderr, rather than in every tool call.
    crate::commands::pipeline::read_signers(&cli)?;
    crate::registry::Registry::load(cli.registry.as_deref())
        .map_err(|e| CommandError::bad_input(ErrorCode::InvalidParams, e.to_string()))?;
    if !cli.workspace.is_dir() {
        return Err(CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!(
                "the workspace {} is not a directory",
                cli.workspace.display()
            ),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CommandError::internal(ErrorCode::InternalError, e.to_string()))?;
    let server = Server {
        cli: Arc::new(cli),
        tools: Arc::new(tools::all()),
        running: Arc::new(tokio::sync::RwLock::new(())),
    };
    let running = Arc::clone(&server.running);
    runtime.block_on(async {
        let service = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| CommandError::internal(ErrorCode::InternalError, e.to_string()))?;
        let quit = service.waiting().await;
        // A client gone mid-call has had its calls cancelled; each still ends in a recorded
        // run (a cancelled execute is refused by the mechanism at its point of no return, or
        // completes past it), which the process must not exit before.
        let _idle = running.write().await;
        quit.map_err(|e| CommandError::internal(ErrorCode::InternalError, e.to_string()))?;
        Ok::<(), CommandError>(())
    })?;
    // stdin may still have a read pending, which nothing can cancel: do not wait for it.
    runtime.shutdown_background();
    Ok(())
}

/// The MCP server: the command line it was started with, its tools, and the calls running.
#[derive(Clone)]
struct Server {
    cli: Arc<Cli>,
    tools: Arc<Vec<Tool>>,
    /// Each call running holds a read guard; the server exits once it can take the write.
    running: Arc<tokio::sync::RwLock<()>>,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("admission", env!("CARGO_PKG_VERSION"))
                    .with_title("mechanism protocol admission"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        // An unknown tool is the one protocol error: the client asked for what is not there.
        if self.get_tool(&name).is_none() {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}; tools/list gives the tools"),
                None,
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel::<ProgressParams>();
        let token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        // Progress is sent as it comes, and only forwards: MCP asks that it always increase.
        let forward = async move {
            let mut last = None;
            while let Some(update) = updates.recv().await {
                let Some(token) = &token else { continue };
                let done = update.done as f64;
                if last.is_some_and(|last| done <= last) {
                    continue;
                }
                last = Some(done);
                let notification = ProgressNotificationParam::new(token.clone(), done)
                    .with_total(update.total as f64)
                    .with_message(update.message);
                if let Err(error) = peer.notify_progress(notification).await {
                    tracing::debug!(%error, "could not send a progress notification");
                }
            }
        };
        let cli = Arc::clone(&self.cli);
        let cancel = context.ct.clone();
        let running = Arc::clone(&self.running).read_owned().await;
        // The pipeline blocks (it drives each mechanism on a runtime of its own).
        let work = tokio::task::spawn_blocking(move || {
            let _running = running;
            calls::call(&cli, &name, arguments, cancel, &mut |update| {
                let _ = progress.send(update.clone());
            })
        });
        let (outcome, ()) = tokio::join!(work, forward);
        let outcome = outcome.map_err(|e| {
            ErrorData::internal_error(format!("the tool call did not finish: {e}"), None)
        })?;
        Ok(outcome.into_result().into())
    }
}
