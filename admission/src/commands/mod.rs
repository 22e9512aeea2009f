//! One module per group of subcommands.

mod approve;
mod conformance;
mod demo;
pub(crate) mod journal;
mod mcp;
mod objects;
pub(crate) mod pipeline;
mod rehydrate;
mod shell;
pub(crate) mod tickets;
pub(crate) mod verify;

use std::path::Path;

use protocol::store::{parse_digest_arg, DigestArg, PrefixError};
use protocol::{Digest, ErrorCode};

use crate::cli::{Cli, Command, EventsCommand, Output, TicketCommand};
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
        Command::Rehydrate { id } => rehydrate::run(cli, out, id),
        Command::Conformance(args) => conformance::run(out, args),
        Command::Demo { keep } => demo::run(cli, out, *keep),
        Command::Ticket { command } => match command {
            TicketCommand::New { file } => tickets::new(cli, out, file),
            TicketCommand::Show { id } => tickets::show(cli, out, id),
            TicketCommand::List => tickets::list(cli, out),
            TicketCommand::Ready { id } => tickets::ready(cli, out, id),
        },
        Command::Events { command } => match command {
            EventsCommand::Add { file } => tickets::add(cli, out, file),
            EventsCommand::Process => tickets::process(cli, out),
        },
        Command::Mcp => mcp::run(cli),
        Command::Completions { shell } => done(shell::completions(*shell)),
        Command::Man => done(shell::man()),
    }
}

/// The digest a command-line argument names: a full digest, or a unique prefix of at least
/// 8 hex digits (with or without `sha256:`) of an object in the store at `store_dir`, which
/// must exist for a prefix and is only read.
pub(crate) fn digest_arg(store_dir: &Path, text: &str) -> Result<Digest, CommandError> {
    let prefix_error = |e: PrefixError| match e {
        PrefixError::Io { .. } => CommandError::internal(ErrorCode::InternalError, e.to_string()),
        _ => CommandError::bad_input(e.code(), e.to_string()),
    };
    match parse_digest_arg(text).map_err(prefix_error)? {
        DigestArg::Full(digest) => Ok(digest),
        DigestArg::Prefix(_) => pipeline::existing_store_at(store_dir)?
            .resolve_prefix(text)
            .map_err(prefix_error),
    }
}
