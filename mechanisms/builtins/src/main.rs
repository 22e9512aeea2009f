//! `mechanism-server`: serves one built-in mechanism over JSON-RPC 2.0 on stdio; see
//! [`mechanism_builtins::main_from`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mechanism_builtins::main_from(std::env::args_os())
}
