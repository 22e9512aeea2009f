//! Command-line definition and output conventions: readable by default, `--json` for machines.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use protocol::ErrorInfo;

use crate::exit::{CommandError, BAD_INPUT};

/// Plan, gate, approve, execute and verify effects through mechanisms.
#[derive(Debug, Clone, Parser)]
#[command(name = "admission", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The object store directory [default: the nearest .mechanism here or above, else the
    /// workspace's .mechanism]
    #[arg(
        long = "store",
        id = "store",
        global = true,
        env = "ADMISSION_STORE",
        value_name = "DIR"
    )]
    pub store_arg: Option<PathBuf>,

    /// The workspace: the directory mechanisms act in (their root) [default: the directory
    /// holding the store found, else .]
    #[arg(
        long = "workspace",
        id = "workspace",
        global = true,
        env = "ADMISSION_WORKSPACE",
        value_name = "DIR"
    )]
    pub workspace_arg: Option<PathBuf>,

    /// The store in use: `--store`, or the one [`parse`] found.
    #[arg(skip)]
    pub store: PathBuf,

    /// The workspace in use: `--workspace`, or the one [`parse`] found.
    #[arg(skip)]
    pub workspace: PathBuf,

    /// Trusted force-ack signers (OpenSSH allowed_signers); without it no destructive plan runs.
    #[arg(
        long,
        global = true,
        env = "ADMISSION_ALLOWED_SIGNERS",
        value_name = "FILE"
    )]
    pub allowed_signers: Option<PathBuf>,

    /// A registry file instead of the one built in.
    #[arg(long, global = true, env = "ADMISSION_REGISTRY", value_name = "FILE")]
    pub registry: Option<PathBuf>,

    /// When to colour the diff and the gate table: auto (on a terminal, unless NO_COLOR is
    /// set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// Makes every later write through `anstream` follow this choice.
    pub fn apply(self) {
        let choice = match self {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
    }
}

/// The command line's definition, with each subcommand's `--help` (and completions) listing
/// only the global flags it reads; they are still accepted everywhere.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    // Global flags reach the subcommands only when the definition is built.
    command.build();
    command.mut_subcommands(|sub| {
        let name = sub.get_name().to_owned();
        sub.mut_args(|arg| {
            let hide = arg.is_global_set() && !reads(&name, arg.get_id().as_str());
            arg.hide(hide)
        })
    })
}

/// Parses the process's arguments (and the environment) with [`command`], then locates the
/// store and workspace.
pub fn parse() -> Result<Cli, clap::Error> {
    let mut matches = command().try_get_matches()?;
    let mut cli = Cli::from_arg_matches_mut(&mut matches)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let found = crate::locate::locate(cli.store_arg.as_deref(), cli.workspace_arg.as_deref(), &cwd);
    cli.store = found.store;
    cli.workspace = found.workspace;
    Ok(cli)
}

/// Whether `subcommand` reads the global flag `flag` (by its id).
fn reads(subcommand: &str, flag: &str) -> bool {
    let flags: &[&str] = match subcommand {
        "digest" | "canon" | "conformance" => &["json"],
        "put" | "cat" | "log" => &["json", "store"],
        "show" => &["json", "store", "color"],
        "approve" => &["json", "store", "allowed_signers"],
        "verify" => &["json", "store", "workspace", "allowed_signers"],
        "rehydrate" => &["json", "store"],
        "describe" => &["json", "store", "workspace", "allowed_signers", "registry"],
        "demo" => &["json", "registry"],
        "mcp" => &["store", "workspace", "allowed_signers", "registry"],
        "completions" | "man" => &[],
        _ => return true,
    };
    flags.contains(&flag)
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
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
    /// Approve a destructive plan: write a signed force-ack for it.
    ///
    /// Signs with an OpenSSH private key file (`--key`). To sign with `ssh-keygen` instead,
    /// print the payload with `--payload`, sign it with
    /// `ssh-keygen -Y sign -n mechanism-force-ack -f KEY PAYLOAD`, then assemble the force-ack
    /// with `--attach PAYLOAD.sig --payload-file PAYLOAD`. The signed force-ack is also
    /// recorded in the store, if there is one, and `execute PLAN` then uses it.
    Approve(ApproveArgs),
    /// Start a mechanism from the registry and print what it offers.
    Describe {
        /// The mechanism id, e.g. `git_apply_patch`.
        mechanism: String,
    },
    /// Plan a workorder and run the gates; execute nothing.
    ///
    /// Exit 0: admitted; 3: denied; 4: admitted, waiting for a force-ack.
    Plan {
        /// The workorder file.
        workorder: PathBuf,
    },
    /// Execute a plan gated earlier, by its hash.
    Execute {
        /// The plan hash, `sha256:<64 hex>`.
        plan_hash: String,
        /// The signed force-ack, for a destructive plan; default: the approval `approve`
        /// recorded for it.
        #[arg(long, value_name = "FILE")]
        force_ack: Option<PathBuf>,
    },
    /// Plan, gate, then execute (or pause for a force-ack), verify and record.
    Run {
        /// The workorder file.
        workorder: PathBuf,
        /// The signed force-ack, for a destructive plan.
        #[arg(long, value_name = "FILE")]
        force_ack: Option<PathBuf>,
    },
    /// Show a run (journal uid) or any artifact (digest), rebuilt from the store and journal.
    Show {
        /// A run uid or a digest.
        id: String,
    },
    /// The journal: every admission command, newest last.
    Log,
    /// Check a whole chain offline: result -> plan -> admission -> force-ack -> state.
    Verify {
        /// A run record, result witness or result digest.
        digest: String,
    },
    /// Rebuild a ticket's cycle from the object store alone (never the journal) and check
    /// its links.
    ///
    /// Exit 0: every check holds; 5: one fails; 2: nothing has that id.
    Rehydrate {
        /// A ticket id, a run uid or a run record digest.
        id: String,
    },
    /// Check a mechanism against the protocol: `admission conformance -- PROGRAM [ARGS...]`.
    ///
    /// Starts it in a throw-away workspace and store (`{workspace}` and `{store}` in ARGS are
    /// filled in; `--force-ack-signers FILE` is appended), prints one row per check and
    /// exits 5 when any check fails.
    Conformance(ConformanceArgs),
    /// Plan, gate, approve, execute and verify real patches on a throw-away repository.
    Demo {
        /// Keep the demo directory instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
    /// Tickets: one objective, acceptance criteria and the work that meets them.
    Ticket {
        /// What to do with tickets.
        #[command(subcommand)]
        command: TicketCommand,
    },
    /// Events that schedule tickets (TICKET_READY), and processing them.
    Events {
        /// What to do with events.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Serve MCP over stdio: agents list mechanisms, plan, execute, show and verify.
    ///
    /// Tools: `list_mechanisms`, `plan` (inputs as text or stored digests; records the plan
    /// and the gates' decision, changes nothing else), `execute` (by plan hash only; a
    /// destructive plan needs an approval an operator recorded with `admission approve`),
    /// `show` and `verify`. The server never signs and reads no private key. Logs go to
    /// stderr; stdout is the protocol.
    Mcp,
    /// Print a shell completion script, e.g. `admission completions bash > ~/.local/share/bash-completion/completions/admission`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `admission man > ~/.local/share/man/man1/admission.1`.
    Man,
}

/// `admission ticket ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TicketCommand {
    /// File a ticket: checks the objective, the acceptance criteria and that the work names a
    /// registered mechanism and operation; stores its inputs and the ticket.
    New {
        /// The ticket file (JSON).
        file: PathBuf,
    },
    /// Show a ticket: its current version, history, pause state and events.
    Show {
        /// The ticket id.
        id: String,
    },
    /// List the tickets and their status.
    List,
    /// Mark a ticket READY and emit its TICKET_READY event, or say why it is not ready.
    Ready {
        /// The ticket id.
        id: String,
    },
}

/// `admission events ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Add an event from an outside system (a tracker), pending.
    Add {
        /// The event file (JSON).
        file: PathBuf,
    },
    /// Process every pending event, in arrival order, each to one terminal outcome.
    ///
    /// A ready ticket's work runs through the pipeline (snapshot, workorder, plan, gates,
    /// execute, verify) and the ticket ends DONE, FAILED, or paused for a force-ack.
    Process,
}

/// Arguments of `admission approve`, in its three modes: sign, `--payload`, `--attach`.
#[derive(Debug, Clone, Args)]
pub struct ApproveArgs {
    /// The plan to approve, `sha256:<64 hex>`.
    #[arg(value_name = "PLAN_HASH", required_unless_present = "attach")]
    pub plan: Option<String>,
    /// OpenSSH private key file to sign with (unencrypted; ed25519 or ECDSA).
    #[arg(
        long,
        value_name = "KEYFILE",
        required_unless_present_any = ["payload", "attach"],
        conflicts_with_all = ["payload", "attach"]
    )]
    pub key: Option<PathBuf>,
    /// The approver's principal, as listed in the trusted allowed_signers file.
    #[arg(long, value_name = "PRINCIPAL", required_unless_present = "attach")]
    pub approver: Option<String>,
    /// How long the approval stays valid, e.g. `15m`, `1h 30m`.
    #[arg(long, default_value = "15m", conflicts_with = "attach")]
    pub ttl: String,
    /// The AdmissionWitness approved; default: the one `admission plan` recorded for the plan.
    #[arg(long, value_name = "DIGEST", conflicts_with = "attach")]
    pub admission: Option<String>,
    /// Print the canonical payload to sign with `ssh-keygen -Y sign` instead of signing.
    #[arg(long, conflicts_with = "attach")]
    pub payload: bool,
    /// Assemble the force-ack from this `ssh-keygen -Y sign` signature and `--payload-file`.
    #[arg(
        long,
        value_name = "SIGFILE",
        requires = "payload_file",
        conflicts_with_all = ["plan", "approver"]
    )]
    pub attach: Option<PathBuf>,
    /// The payload file the `--attach` signature was made over.
    #[arg(long, value_name = "PAYLOAD", requires = "attach")]
    pub payload_file: Option<PathBuf>,
    /// Write the force-ack (or the payload) to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Arguments of `admission conformance`.
#[derive(Debug, Clone, Args)]
pub struct ConformanceArgs {
    /// Start the workspace as a copy of this directory (which is never modified).
    #[arg(long, value_name = "DIR")]
    pub seed: Option<PathBuf>,
    /// How long to wait for any one reply, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Seed the instants at which `execute.killed` kills the mechanism (the check prints the
    /// seed it used, so a failure can be replayed); random by default.
    #[arg(long, value_name = "N")]
    pub kill_seed: Option<u64>,
    /// The mechanism's command line, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Reports a command line clap refused (or `--help`, `--version`) and returns the exit code:
/// under `--json`, a usage error is an error object on stdout like any other.
pub fn usage_error(err: &clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if informational || !json_asked(std::env::args_os().skip(1)) {
        let _ = err.print();
        return std::process::ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(BAD_INPUT));
    }
    let rendered = err.render().to_string();
    let message = rendered.trim().trim_start_matches("error: ");
    Output::new(true).error(&CommandError::bad_input(
        protocol::ErrorCode::InvalidParams,
        message,
    ));
    std::process::ExitCode::from(BAD_INPUT)
}

/// Whether `--json` is among the arguments (before a `--`, after which they are a program's).
fn json_asked(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|a| a != "--").any(|a| a == "--json")
}

/// A command's result before it is printed: text for people, JSON for machines.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// For people.
    pub text: String,
    /// For machines.
    pub value: Value,
}

impl Rendered {
    /// A result of `text` and `value`.
    pub fn new(text: impl Into<String>, value: Value) -> Self {
        Self {
            text: text.into(),
            value,
        }
    }
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

    /// Prints a result: `text` for people (its styles kept only where colour is wanted),
    /// `value` for machines.
    pub fn result(&self, text: &str, value: Value) {
        // A closed pipe (`admission log | head`) is the reader's choice, not an error.
        let _ = if self.json {
            writeln!(std::io::stdout().lock(), "{value}")
        } else {
            writeln!(anstream::stdout().lock(), "{text}")
        };
    }

    /// Reports a failure: on stderr for people; as a JSON object on stdout for machines.
    pub fn error(&self, err: &CommandError) {
        let ErrorInfo { code, message, .. } = &err.error;
        if self.json {
            println!(
                "{}",
                json!({"error": {"code": code, "message": message, "exit": err.exit_code()}})
            );
        } else {
            eprintln!("error: {code}: {message}");
        }
    }
}
