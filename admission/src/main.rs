//! The `admission` command line.

use std::process::ExitCode;

use clap::Parser;

use admission::cli::{Cli, Output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    admission::logging::init();
    let output = Output::new(cli.json);
    match admission::commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output.error(&err);
            ExitCode::from(err.exit_code())
        }
    }
}
