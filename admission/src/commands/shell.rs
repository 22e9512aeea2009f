//! `completions SHELL` and `man`: generated from the CLI definition, so they never drift.

use std::io::{self, Write};

use protocol::ErrorCode;

use crate::cli;
use crate::exit::CommandError;

/// `admission completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), CommandError> {
    let mut command = cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "admission", &mut script);
    write_stdout(&script)
}

/// `admission man`: the manual page, in roff, on stdout.
pub fn man() -> Result<(), CommandError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cli::command())
        .render(&mut page)
        .map_err(|e| internal(&e))?;
    write_stdout(&page)
}

fn write_stdout(bytes: &[u8]) -> Result<(), CommandError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| internal(&e))
}

fn internal(error: &io::Error) -> CommandError {
    CommandError::internal(
        ErrorCode::InternalError,
        format!("writing to stdout: {error}"),
    )
}
