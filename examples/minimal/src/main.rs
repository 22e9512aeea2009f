//! `minimal-mechanism --root DIR --store DIR [--force-ack-signers FILE]`: the whole program.

fn main() -> std::process::ExitCode {
    mechanism_server::serve_stdio(minimal_mechanism::Minimal)
}
