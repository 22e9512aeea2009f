//! The command line of `mechanism-server MECHANISM --root DIR --store DIR
//! [--force-ack-signers FILE]`: serves one built-in mechanism over stdin/stdout. stdout
//! carries protocol messages only; logs go to stderr (`RUST_LOG`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mechanism_server::server::{self, Config};

/// Serve a built-in mechanism over JSON-RPC 2.0 on stdio.
#[derive(Debug, Parser)]
#[command(name = "mechanism-server", version, about)]
struct Args {
    /// The mechanism to serve (built in: git_apply_patch).
    mechanism: String,
    /// Every path the mechanism may touch lies under this directory.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// The object store shared with the admission.
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// OpenSSH allowed_signers file trusted for force-acks; without it, destructive plans
    /// never execute.
    #[arg(long, value_name = "FILE")]
    force_ack_signers: Option<PathBuf>,
    /// The longest a force-ack may live, e.g. 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    force_ack_max_ttl: Duration,
    /// Largest message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = protocol::framing::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
}

/// Parses `args` (the program name first) and serves until stdin closes; returns the exit code.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Already installed when embedded in a program that set up its own logging. Colours only
    // on a terminal: the admission shows a dead mechanism's last stderr lines in its errors.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    let Some(mechanism) = crate::builtin(&args.mechanism) else {
        eprintln!(
            "error: unknown mechanism {:?}; built in: {}",
            args.mechanism,
            crate::BUILTIN.join(", ")
        );
        return ExitCode::from(2);
    };
    let config = Config {
        root: args.root,
        store: args.store,
        force_ack_signers: args.force_ack_signers,
        force_ack_max_ttl: args.force_ack_max_ttl,
        max_message_bytes: args.max_message_bytes,
    };
    match server::serve_stdio(mechanism, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
