//! The `admission` command line.

use std::process::ExitCode;

use admission::cli::Output;
use admission::session::SERVE;

fn main() -> ExitCode {
    // `admission serve MECHANISM ...` is `mechanism-server MECHANISM ...`, built in; it is
    // what the admission spawns when no `mechanism-server` executable is installed.
    let mut args = std::env::args_os();
    if std::env::args_os().nth(1).is_some_and(|a| a == SERVE) {
        let rest = args.by_ref().skip(2);
        return mechanism_builtins::main_from(
            std::iter::once("mechanism-server".into()).chain(rest),
        );
    }
    let cli = match admission::cli::parse() {
        Ok(cli) => cli,
        Err(err) => return admission::cli::usage_error(&err),
    };
    cli.color.apply();
    admission::logging::init();
    let output = Output::new(cli.json);
    match admission::commands::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            output.error(&err);
            ExitCode::from(err.exit_code())
        }
    }
}
