//! One module per group of subcommands.

mod approve;
mod objects;

use crate::cli::{Cli, Command, Output};
use crate::exit::CommandError;

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> Result<(), CommandError> {
    let out = Output::new(cli.json);
    match &cli.command {
        Command::Digest { file, raw } => objects::digest(out, file, *raw),
        Command::Canon { file } => objects::canon(file),
        Command::Put { file } => objects::put(out, &cli.store, file),
        Command::Cat { digest } => objects::cat(&cli.store, digest),
        Command::Approve(args) => approve::run(out, &cli.store, args),
    }
}
