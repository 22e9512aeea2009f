//! `mechanism-server`: serves one built-in mechanism over JSON-RPC 2.0 on stdio; see
//! [`mechanism_builtins::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mechanism_builtins::cli::main_from(std::env::args_os())
}
