//! `admission mcp`: the admission served to agents over MCP (see [`crate::mcp`]).

use crate::cli::Cli;
use crate::exit::CommandError;

/// Serves MCP on stdin and stdout until the client closes stdin.
pub fn run(cli: &Cli) -> Result<u8, CommandError> {
    crate::mcp::serve(cli.clone())?;
    Ok(0)
}
