//! One module per group of subcommands.

mod approve;
mod conformance;
mod demo;
mod journal;
mod objects;
mod pipeline;
mod shell;
mod verify;

use crate::cli::{Cli, Command, Output};
use crate::exit::CommandError;

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> Result<u8, CommandError> {
    let out = Output::new(cli.json);
    let done = |r: Result<(), CommandError>| r.map(|()| 0);
    match &cli.command {
        Command::Digest { file, raw } => done(objects::digest(out, file, *raw)),
        Command::Canon { file } => done(objects::canon(file)),
        Command::Put { file } => done(objects::put(out, &cli.store, file)),
        Command::Cat { digest } => done(objects::cat(&cli.store, digest)),
        Command::Approve(args) => {
            let signers = pipeline::read_signers(cli)?;
            done(approve::run(out, &cli.store, signers.as_ref(), args))
        }
        Command::Describe { mechanism } => pipeline::describe(cli, out, mechanism),
        Command::Plan { workorder } => pipeline::run(cli, out, workorder, None, false),
        Command::Run {
            workorder,
            force_ack,
        } => pipeline::run(cli, out, workorder, force_ack.as_deref(), true),
        Command::Execute {
            plan_hash,
            force_ack,
        } => pipeline::execute(cli, out, plan_hash, force_ack.as_deref()),
        Command::Show { id } => journal::show(cli, out, id),
        Command::Log => journal::log(cli, out),
        Command::Verify { digest } => verify::run(cli, out, digest),
        Command::Conformance(args) => conformance::run(out, args),
        Command::Demo { keep } => demo::run(cli, out, *keep),
        Command::Completions { shell } => done(shell::completions(*shell)),
        Command::Man => done(shell::man()),
    }
}
