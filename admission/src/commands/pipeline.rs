//! `describe`, `plan`, `execute` and `run`: the pipeline's commands and how they read.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::Path;

use protocol::artifact::kinds::{GateDecision, NextAction, Plan};
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::store::Store;
use protocol::verbs::ProgressParams;
use protocol::{canonical, ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use crate::cli::{Cli, Output};
use crate::exit::{self, CommandError};
use crate::journal::Journal;
use crate::locate;
use crate::pipeline::{self, Invocation, Mode, Report, Setup, WorkorderSource};
use crate::registry::{LaunchPaths, Registry};
use crate::session::Session;
use crate::text::count;
use crate::text::spelled;

/// Largest force-ack file read: a few kilobytes at most.
const MAX_FORCE_ACK_BYTES: u64 = 64 * 1024;

/// The trusted signers `--allowed-signers` names, if it is given.
pub fn read_signers(cli: &Cli) -> Result<Option<AllowedSigners>, CommandError> {
    cli.allowed_signers
        .as_deref()
        .map(|path| {
            AllowedSigners::read(path).map_err(|e| {
                CommandError::bad_input(
                    ErrorCode::InvalidParams,
                    format!("--allowed-signers {}: {e}", path.display()),
                )
            })
        })
        .transpose()
}

/// The store `--store` names, which must exist: reading commands never create one.
pub fn existing_store(cli: &Cli) -> Result<Store, CommandError> {
    existing_store_at(&cli.store)
}

/// The store at `dir`, which must exist.
pub fn existing_store_at(dir: &Path) -> Result<Store, CommandError> {
    if !dir.is_dir() {
        return Err(CommandError::bad_input(
            ErrorCode::UnknownArtifact,
            no_store(dir),
        ));
    }
    Store::open(dir).map_err(|e| CommandError::new(exit::INTERNAL, e))
}

/// Why a command that reads the store cannot run: there is none, and how to name one.
pub fn no_store(dir: &Path) -> String {
    format!(
        "there is no store at {} (none was found here or above); run from the workspace, or \
         name the store with --store DIR or ADMISSION_STORE",
        std::path::absolute(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
    )
}

/// Opens the store, journal, registry and signers the global flags name.
pub fn setup(cli: &Cli) -> Result<Setup, CommandError> {
    let created = !cli.store.is_dir();
    let store = Store::open(&cli.store).map_err(|e| CommandError::new(exit::INTERNAL, e))?;
    if created {
        match locate::exclude_from_git(&cli.store) {
            Ok(Some(exclude)) => tracing::info!(
                "the new store {} is listed in {}, out of git status",
                cli.store.display(),
                exclude.display()
            ),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "the new store could not be kept out of git status")
            }
        }
    }
    let journal = Journal::open(&cli.store)
        .map_err(|e| CommandError::internal(ErrorCode::InternalError, format!("journal: {e}")))?;
    let registry = Registry::load(cli.registry.as_deref())
        .map_err(|e| CommandError::bad_input(ErrorCode::InvalidParams, e.to_string()))?;
    let signers = read_signers(cli)?;
    workspace_dir(cli)?;
    Ok(Setup {
        store_dir: cli.store.clone(),
        store,
        journal,
        workspace: cli.workspace.clone(),
        registry,
        signers_path: cli.allowed_signers.clone(),
        signers,
        max_ttl: protocol::force_ack::DEFAULT_MAX_TTL,
        cancel: tokio_util::sync::CancellationToken::new(),
    })
}

/// Fails unless the workspace is a directory.
fn workspace_dir(cli: &Cli) -> Result<(), CommandError> {
    if cli.workspace.is_dir() {
        return Ok(());
    }
    Err(CommandError::bad_input(
        ErrorCode::InvalidParams,
        format!(
            "the workspace {} is not a directory",
            cli.workspace.display()
        ),
    ))
}

/// The store a mechanism started only to be described is given.
pub(crate) enum DescribeStore<'a> {
    /// The store in use, which exists.
    Existing(&'a Path),
    /// A throw-away one, where there is no store: describing reads nothing stored, and must
    /// not leave an empty `.mechanism` behind.
    ThrowAway(tempfile::TempDir),
}

impl DescribeStore<'_> {
    /// Its directory.
    pub(crate) fn path(&self) -> &Path {
        match self {
            DescribeStore::Existing(path) => path,
            DescribeStore::ThrowAway(dir) => dir.path(),
        }
    }
}

/// The store to describe mechanisms with: the one `--store` names if it exists, else a
/// throw-away one.
pub(crate) fn describe_store(cli: &Cli) -> Result<DescribeStore<'_>, CommandError> {
    if cli.store.is_dir() {
        return Ok(DescribeStore::Existing(&cli.store));
    }
    tempfile::tempdir()
        .map(DescribeStore::ThrowAway)
        .map_err(|e| {
            CommandError::internal(
                ErrorCode::InternalError,
                format!("cannot make a temporary store: {e}"),
            )
        })
}

/// `admission describe MECHANISM`.
pub fn describe(cli: &Cli, out: Output, mechanism: &str) -> Result<u8, CommandError> {
    let registry = Registry::load(cli.registry.as_deref())
        .map_err(|e| CommandError::bad_input(ErrorCode::InvalidParams, e.to_string()))?;
    let entry = registry
        .entry(mechanism)
        .map_err(|e| CommandError::bad_input(ErrorCode::InvalidParams, e.to_string()))?;
    workspace_dir(cli)?;
    let store = describe_store(cli)?;
    let session = Session::start(
        entry,
        &LaunchPaths {
            workspace: &cli.workspace,
            store: store.path(),
            allowed_signers: cli.allowed_signers.as_deref(),
        },
    )
    .map_err(|e| {
        CommandError::from(ErrorInfo::new(
            e.code().unwrap_or(ErrorCode::InternalError),
            e.to_string(),
        ))
    })?;
    let d = &session.described;
    let mut text = format!(
        "{} {} (protocol {})\n",
        d.mechanism.id, d.mechanism.version, d.protocol_version
    );
    for op in &d.operations {
        let _ = writeln!(
            text,
            "\noperation {}: {}\n  inputs: {}\n  effects: {}\n  destructive: {}, determinism: {}",
            op.name,
            op.description,
            op.inputs.join(", "),
            op.effect_types.join(", "),
            spelled(&op.destructive),
            spelled(&op.determinism)
        );
        text.push_str(&params_text(&op.params_schema));
    }
    let _ = write!(text, "\nscope:");
    for grant in &d.capability_scope {
        let _ = write!(
            text,
            "\n  {} {}",
            grant.capability,
            grant.resources.join(" ")
        );
    }
    out.result(&text, session.describe.clone());
    Ok(0)
}

/// An operation's params as its JSON Schema describes them: one line each, with its type,
/// whether it is required, and its description.
fn params_text(schema: &Value) -> String {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let width = properties.keys().map(String::len).max().unwrap_or(0);
    let mut t = String::from("  params:\n");
    for (name, property) in properties {
        let kind = type_text(property);
        let need = if required.contains(&name.as_str()) {
            "required"
        } else {
            "optional"
        };
        let description = property
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let _ = writeln!(t, "    {name:<width$}  {kind}, {need}{description}");
    }
    t
}

/// A schema's type in a few words: `string`, `integer`, `object {name, email}`, `"a" | "b"`.
fn type_text(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return values.join(" | ");
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    match schema.get("properties").and_then(Value::as_object) {
        Some(members) if kind == "object" => {
            let names: Vec<&str> = members.keys().map(String::as_str).collect();
            format!("object {{{}}}", names.join(", "))
        }
        _ => kind,
    }
}

/// `admission plan WORKORDER` and `admission run WORKORDER [--force-ack FILE]`.
pub fn run(
    cli: &Cli,
    out: Output,
    workorder: &Path,
    force_ack: Option<&Path>,
    execute: bool,
) -> Result<u8, CommandError> {
    let setup = setup(cli)?;
    let mode = if execute {
        Mode::Run {
            force_ack: force_ack.map(read_force_ack).transpose()?,
        }
    } else {
        Mode::Plan
    };
    let invocation = invocation(cli, Some(workorder));
    let mut progress = progress_printer(out);
    let report = pipeline::run_workorder(
        &setup,
        WorkorderSource::File(workorder),
        &mode,
        &invocation,
        &mut progress,
    )?;
    print_report(out, &report, execute, &setup.store_dir);
    Ok(report.exit)
}

/// `admission execute PLAN_HASH [--force-ack FILE]`.
pub fn execute(
    cli: &Cli,
    out: Output,
    plan_hash: &str,
    force_ack: Option<&Path>,
) -> Result<u8, CommandError> {
    let plan_hash = super::digest_arg(&cli.store, plan_hash)?;
    // Executing reads a plan gated earlier: a store that is not there is not created.
    existing_store(cli)?;
    let force_ack = force_ack.map(read_force_ack).transpose()?;
    let setup = setup(cli)?;
    let invocation = invocation(cli, None);
    let mut progress = progress_printer(out);
    let report = pipeline::execute_plan(&setup, &plan_hash, force_ack, &invocation, &mut progress)?;
    // A ticket's paused run, resumed, completes its cycle.
    let ticket = super::tickets::after_execute(&setup, &invocation, &report);
    print_report_with(out, &report, true, &setup.store_dir, ticket);
    Ok(report.exit)
}

/// Reads a force-ack file strictly (no duplicate keys, I-JSON only); one that cannot be read
/// is refused like any invalid force-ack (exit 3).
fn read_force_ack(path: &Path) -> Result<Value, CommandError> {
    let bad = |reason: String| {
        CommandError::from(ErrorInfo::new(
            ErrorCode::ForceAckInvalid,
            format!("force-ack {}: {reason}", path.display()),
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_FORCE_ACK_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_FORCE_ACK_BYTES {
        return Err(bad(format!("larger than {MAX_FORCE_ACK_BYTES} bytes")));
    }
    canonical::parse(&bytes).map_err(|e| bad(e.to_string()))
}

/// The global flags to repeat in next actions, so they paste as they are.
pub(super) fn invocation(cli: &Cli, workorder: Option<&Path>) -> Invocation {
    let mut flags = Vec::new();
    // Given by flag or environment; a store found by searching is found again.
    if let Some(store) = &cli.store_arg {
        flags.push(format!("--store {}", quote(store)));
    }
    if let Some(workspace) = &cli.workspace_arg {
        flags.push(format!("--workspace {}", quote(workspace)));
    }
    if let Some(signers) = &cli.allowed_signers {
        flags.push(format!("--allowed-signers {}", quote(signers)));
    }
    if let Some(registry) = &cli.registry {
        flags.push(format!("--registry {}", quote(registry)));
    }
    Invocation {
        global_flags: flags.join(" "),
        workorder: workorder.map(quote),
        signers_given: cli.allowed_signers.is_some(),
    }
}

/// A path as a shell word.
pub(crate) fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Progress on a terminal, overwriting one line of stderr; nothing otherwise.
pub(super) fn progress_printer(out: Output) -> impl FnMut(&ProgressParams) {
    let show = !out.is_json() && std::io::stderr().is_terminal();
    move |p: &ProgressParams| {
        if show {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K[{}/{}] {}", p.done, p.total, p.message);
            if p.done >= p.total {
                let _ = writeln!(err);
            }
        }
    }
}

/// The report as JSON.
pub fn report_json(report: &Report) -> Value {
    json!({
        "run_uid": report.uid,
        "parent": report.parent,
        "outcome": report.outcome,
        "exit": report.exit,
        "work_order_id": report.work_order_id,
        "mechanism": report.mechanism,
        "plan_hash": report.plan_hash,
        "admission_hash": report.admission_hash,
        "force_ack_hash": report.force_ack_hash,
        "result_hash": report.result_hash,
        "witness_hash": report.witness_hash,
        "run_record": report.run_record,
        "output_id": report.output_id,
        "workorder": report.workorder,
        "ticket_id": report.ticket_id,
        "destructive": report.plan.as_ref().map(|p| p.destructive),
        "gates": report.gates,
        "evidence": report.evidence,
        "error": report.error,
        "next_actions": report.next_actions,
    })
}

/// Prints the report; its next actions name `store`, the store they refer to.
fn print_report(out: Output, report: &Report, with_preview_only_if_planned: bool, store: &Path) {
    print_report_with(out, report, with_preview_only_if_planned, store, None);
}

/// Prints the report, and the ticket cycle it ended (text and JSON) when there is one.
fn print_report_with(
    out: Output,
    report: &Report,
    with_preview_only_if_planned: bool,
    store: &Path,
    ticket: Option<(String, Value)>,
) {
    // Absolute, so the store is unmistakable wherever the commands are pasted.
    let store = std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf());
    let mut value = report_json(report);
    value["store"] = json!(store.display().to_string());
    let mut text = render(report, with_preview_only_if_planned, &store);
    if let Some((ticket_text, ticket_value)) = ticket {
        text.push_str(
            "

",
        );
        text.push_str(&ticket_text);
        value["ticket"] = ticket_value;
    }
    out.result(&text, value);
}

/// The report for people: the plan, its preview, the gate table, what happened, what next.
pub fn render(report: &Report, executing: bool, store: &Path) -> String {
    let mut t = String::new();
    if let (Some(hash), Some(plan)) = (&report.plan_hash, &report.plan) {
        let _ = writeln!(t, "plan       {hash}");
        let _ = writeln!(
            t,
            "           {} {} · {} · {}",
            plan.mechanism.id,
            plan.operation,
            count(plan.intended_effects.len(), "effect", "effects"),
            if plan.destructive {
                "DESTRUCTIVE"
            } else {
                "not destructive"
            }
        );
        for reason in &plan.destructive_reasons {
            let _ = writeln!(t, "           ! {reason}");
        }
        for effect in &plan.intended_effects {
            let _ = writeln!(
                t,
                "           {:<10} {}",
                effect.effect_type, effect.resource
            );
        }
    }
    if !executing || report.result_hash.is_none() {
        if let Some(preview) = &report.preview {
            let _ = writeln!(t, "\n{}", crate::text::diff(preview.trim_end()));
            t.push('\n');
        }
    }
    if !report.gates.is_empty() {
        let _ = writeln!(t, "gates");
        for gate in &report.gates {
            let gate_name = serde_json::to_value(gate.gate).ok();
            let name = gate_name.as_ref().and_then(Value::as_str).unwrap_or("?");
            let mark = match gate.decision {
                GateDecision::Pass => "PASS",
                GateDecision::Fail => "FAIL",
            };
            let code = gate.code.map(|c| format!(" {c}")).unwrap_or_default();
            let mark = crate::text::decision(mark);
            let _ = writeln!(t, "  {mark} {name:<13}{code} {}", gate.reason);
        }
    }
    for (label, digest) in [
        ("admission", report.admission_hash),
        ("force-ack", report.force_ack_hash),
        ("result", report.result_hash),
        ("witness", report.witness_hash),
        ("run record", report.run_record),
    ] {
        if let Some(digest) = digest {
            let _ = writeln!(t, "{label:<10} {digest}");
        }
    }
    if let Some(commit) = report
        .evidence
        .as_ref()
        .and_then(|e| e.get("commit"))
        .and_then(Value::as_str)
    {
        let _ = writeln!(t, "commit     {commit}");
    } else if let Some(commit) = report.plan.as_ref().and_then(predicted_commit) {
        let _ = writeln!(t, "commit     {commit} (predicted)");
    }
    let outcome = report
        .outcome
        .and_then(|o| serde_json::to_value(o).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "error".to_owned());
    let _ = writeln!(t, "\noutcome    {outcome} (run {})", report.uid);
    if let Some(error) = &report.error {
        let _ = writeln!(t, "error      {}: {}", error.code, error.message);
    }
    if !report.next_actions.is_empty() {
        let _ = writeln!(t, "\nnext (store {})", store.display());
        t.push_str(&actions_text(&report.next_actions));
    }
    t.trim_end().to_owned()
}

/// Next actions for people: numbered, each with why as a comment, so each line pastes.
pub(super) fn actions_text(actions: &[NextAction]) -> String {
    let mut t = String::new();
    for (n, action) in actions.iter().enumerate() {
        let _ = writeln!(t, "  {}. {}\n     # {}", n + 1, action.command, action.why);
    }
    t
}

/// The commit a plan's `git.commit` effect predicts (its `to`), if it has one.
fn predicted_commit(plan: &Plan) -> Option<&str> {
    plan.intended_effects
        .iter()
        .find(|e| e.effect_type == "git.commit")
        .and_then(|e| e.detail.get("to"))
        .and_then(Value::as_str)
}
