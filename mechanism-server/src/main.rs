//! `mechanism-server`: serves one built-in mechanism over JSON-RPC 2.0 on stdio; see
//! [`mechanism_server::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mechanism_server::cli::main_from(std::env::args_os())
}
