//! Command-line definition and output conventions: readable by default, `--json` for machines.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::exit::CommandError;

/// Plan, gate, approve, execute and verify effects through mechanisms.
#[derive(Debug, Parser)]
#[command(name = "admission", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The object store directory.
    #[arg(long, global = true, default_value = ".mechanism", value_name = "DIR")]
    pub store: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the digest of a JSON artifact (SHA-256 of its RFC 8785 canonical bytes).
    Digest {
        /// The file to hash (`-` for stdin).
        file: PathBuf,
        /// Hash the raw bytes instead of the canonical JSON.
        #[arg(long)]
        raw: bool,
    },
    /// Write the RFC 8785 canonical bytes of a JSON artifact to stdout.
    Canon {
        /// The JSON file (`-` for stdin).
        file: PathBuf,
    },
    /// Store a file as a blob and print its digest.
    Put {
        /// The file to store (`-` for stdin).
        file: PathBuf,
    },
    /// Write a stored object to stdout, after checking it against its digest.
    Cat {
        /// The object's digest, `sha256:<64 hex>`.
        digest: String,
    },
}

/// Where results and errors are printed, in the chosen style.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Output in JSON when `json` is set, text otherwise.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether JSON was asked for.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a result: `text` for people, `value` for machines.
    pub fn result(&self, text: &str, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    /// Reports a failure: on stderr for people; as a JSON object on stdout for machines.
    pub fn error(&self, err: &CommandError) {
        let code = err.code.map(|c| c.as_str());
        if self.json {
            println!(
                "{}",
                json!({"error": {"code": code, "message": err.message, "exit": err.exit_code()}})
            );
        } else {
            match code {
                Some(code) => eprintln!("error: {code}: {}", err.message),
                None => eprintln!("error: {}", err.message),
            }
        }
    }
}
