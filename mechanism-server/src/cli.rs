//! The standard command line of a mechanism, `--root DIR --store DIR [--force-ack-signers
//! FILE]` and the limits, and serving on stdio with it. stdout carries protocol messages
//! only; logs go to stderr (`RUST_LOG`, default `warn`).

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};

use crate::mechanism::Mechanism;
use crate::server;

/// How to serve a mechanism: the options every mechanism's command line has.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Every path the mechanism may touch lies under this directory.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The object store shared with the admission.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// OpenSSH allowed_signers file trusted for force-acks; without it, destructive plans
    /// never execute.
    #[arg(long, value_name = "FILE")]
    pub force_ack_signers: Option<PathBuf>,
    /// The longest a force-ack may live, e.g. 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub force_ack_max_ttl: Duration,
    /// Largest message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = protocol::framing::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
}

impl Options {
    /// The defaults, for a root and a store.
    pub fn new(root: impl Into<PathBuf>, store: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            store: store.into(),
            force_ack_signers: None,
            force_ack_max_ttl: Duration::from_secs(
                protocol::force_ack::DEFAULT_MAX_TTL
                    .whole_seconds()
                    .unsigned_abs(),
            ),
            max_message_bytes: protocol::framing::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// A mechanism's whole command line: the standard options and nothing else.
#[derive(Debug, Parser)]
#[command(about = "Serve a mechanism over JSON-RPC 2.0 on stdio.")]
struct Command {
    #[command(flatten)]
    options: Options,
}

/// The whole `main` of a mechanism's executable: parses the standard command line
/// ([`Options`]), logs to stderr, serves `mechanism` on stdin and stdout until stdin closes,
/// and returns the exit code: 0 at EOF, 2 for bad options, 1 when the connection failed.
pub fn serve_stdio<M: Mechanism>(mechanism: M) -> ExitCode {
    let command = Command::parse();
    serve(mechanism, &command.options)
}

/// [`serve_stdio`] with options parsed already, e.g. by a command line that names one of
/// several mechanisms.
pub fn serve<M: Mechanism>(mechanism: M, options: &Options) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Already installed when embedded in a program that set up its own logging. Colours only
    // on a terminal: the admission shows a dead mechanism's last stderr lines in its errors.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let stdin = BufReader::with_capacity(1 << 16, std::io::stdin());
    match server::serve(mechanism, options, stdin, std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line's default limit is the one the admission and `approve` apply.
    #[test]
    fn the_default_force_ack_lifetime_is_the_shared_one() {
        let parsed = Command::try_parse_from(["m", "--root", "r", "--store", "s"]);
        let options = parsed.map(|c| c.options).map_err(|e| e.to_string());
        assert_eq!(
            options.map(|o| o.force_ack_max_ttl),
            Ok(Options::new("r", "s").force_ack_max_ttl)
        );
        assert_eq!(
            time::Duration::try_from(Options::new("r", "s").force_ack_max_ttl),
            Ok(protocol::force_ack::DEFAULT_MAX_TTL)
        );
    }
}
