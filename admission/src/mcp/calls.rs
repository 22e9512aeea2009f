//! What each tool does: the admission's own pipeline, store and checks, called as the
//! command line calls them. Each call ends in an [`Outcome`]: the text an operator would
//! read, the structured content an agent reads, and the error when it was refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::artifact::kinds::{GateDecision, RunOutcome};
use protocol::store::{Provenance, Store};
use protocol::verbs::ProgressParams;
use protocol::{Digest, ErrorCode, ErrorInfo};
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::tools;
use crate::cli::{Cli, Rendered};
use crate::commands::pipeline::{describe_store, existing_store, quote, render, setup};
use crate::commands::{journal, tickets, verify};
use crate::pipeline::{self, Invocation, Mode, Report, WorkorderSource};
use crate::registry::{LaunchPaths, Registry};
use crate::session::Session;

/// The largest input given as text: a patch, not a repository. Well inside the 16 MiB an MCP
/// message may have on rmcp's stdio transport (which drops a longer one unanswered), so that an
/// input too large is refused here, with a way forward, rather than lost.
const MAX_TEXT_INPUT_BYTES: usize = 8 * 1024 * 1024;

/// The wall-clock budget of a plan that names none.
const DEFAULT_WALL_MS: u64 = 120_000;

/// How a tool call came out.
pub(super) struct Outcome {
    text: String,
    value: Value,
    error: Option<ErrorInfo>,
}

impl Outcome {
    fn ok(rendered: Rendered) -> Self {
        Self {
            text: rendered.text,
            value: rendered.value,
            error: None,
        }
    }

    fn refused(error: ErrorInfo) -> Self {
        Self {
            text: String::new(),
            value: json!({}),
            error: Some(error),
        }
    }

    /// The MCP result: the text for people first, then the structured content as JSON text
    /// (for clients that read only text); `isError` and the error's code on a refusal.
    pub(super) fn into_result(self) -> CallToolResult {
        let Outcome {
            mut text,
            mut value,
            error,
        } = self;
        if let Some(error) = &error {
            let head = format!("{}: {}", error.code, error.message);
            text = if text.is_empty() {
                head
            } else {
                format!("{head}\n\n{text}")
            };
            if let Value::Object(members) = &mut value {
                members.insert("error".to_owned(), json!(error));
            }
        }
        strip_nulls(&mut value);
        // The text is the command line's, whose styles are for terminals.
        let text = anstream::adapter::strip_str(&text).to_string();
        let content = vec![
            ContentBlock::text(text),
            ContentBlock::text(value.to_string()),
        ];
        let mut result = match error {
            Some(_) => CallToolResult::error(content),
            None => CallToolResult::success(content),
        };
        result.structured_content = Some(value);
        result
    }
}

/// Runs the tool `name` (one of [`tools::all`]) with `arguments`.
pub(super) fn call(
    cli: &Cli,
    name: &str,
    arguments: Value,
    cancel: CancellationToken,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Outcome {
    let outcome = match name {
        tools::LIST_MECHANISMS => args::<NoArgs>(arguments).and_then(|_| list_mechanisms(cli)),
        tools::PLAN => args(arguments).and_then(|a| plan(cli, a)),
        tools::EXECUTE => args(arguments).and_then(|a| execute(cli, a, cancel, progress)),
        tools::SHOW => args::<ShowArgs>(arguments)
            .and_then(|a| journal::shown(cli, &a.id).map_err(|e| e.error))
            .map(Outcome::ok),
        tools::VERIFY => args(arguments).and_then(|a| verify(cli, a)),
        _ => Err(ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("unknown tool {name:?}"),
        )),
    };
    outcome.unwrap_or_else(Outcome::refused)
}

/// The arguments of a tool, read strictly: an unknown member is refused, not ignored.
fn args<T: serde::de::DeserializeOwned>(arguments: Value) -> Result<T, ErrorInfo> {
    serde_json::from_value(arguments)
        .map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, format!("arguments: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyArgs {
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteArgs {
    plan_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanArgs {
    mechanism: String,
    operation: String,
    params: Map<String, Value>,
    #[serde(default)]
    inputs: Map<String, Value>,
    work_order_id: Option<String>,
    wall_ms: Option<u64>,
}

/// `list_mechanisms`: every registry entry, started and described.
fn list_mechanisms(cli: &Cli) -> Result<Outcome, ErrorInfo> {
    let registry = Registry::load(cli.registry.as_deref())
        .map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, e.to_string()))?;
    let store = describe_store(cli).map_err(|e| e.error)?;
    let paths = LaunchPaths {
        workspace: &cli.workspace,
        store: store.path(),
        allowed_signers: cli.allowed_signers.as_deref(),
    };
    let mut text = String::new();
    let mut mechanisms = Vec::new();
    for entry in registry.mechanisms() {
        let grants = json!(entry.grants);
        match Session::start(entry, &paths) {
            Ok(session) => {
                let d = &session.described;
                let names: Vec<&str> = d.operations.iter().map(|o| o.name.as_str()).collect();
                text.push_str(&format!(
                    "{} {}: {}\n",
                    d.mechanism.id,
                    d.mechanism.version,
                    names.join(", ")
                ));
                mechanisms.push(json!({
                    "id": d.mechanism.id,
                    "version": d.mechanism.version,
                    "operations": d.operations,
                    "grants": grants,
                }));
            }
            Err(e) => {
                let error =
                    ErrorInfo::new(e.code().unwrap_or(ErrorCode::InternalError), e.to_string());
                text.push_str(&format!("{}: cannot start: {error}\n", entry.id));
                mechanisms.push(json!({"id": entry.id, "grants": grants, "error": error}));
            }
        }
    }
    Ok(Outcome::ok(Rendered::new(
        text.trim_end(),
        json!({ "mechanisms": mechanisms }),
    )))
}

/// `plan`: the inputs stored, a workorder made of the arguments, planned and gated.
fn plan(cli: &Cli, args: PlanArgs) -> Result<Outcome, ErrorInfo> {
    let setup = setup(cli).map_err(|e| e.error)?;
    let work_order_id = match args.work_order_id {
        Some(id) => id,
        None => format!("mcp-{}", uuid::Uuid::now_v7()),
    };
    let inputs = store_inputs(&setup.store, &args.inputs, &work_order_id)?;
    let workorder = json!({
        "kind": "mechanism.workorder/v0",
        "work_order_id": work_order_id,
        "mechanism": args.mechanism,
        "operation": args.operation,
        "params": args.params,
        "inputs": inputs,
        "budget": {"wall_ms": args.wall_ms.unwrap_or(DEFAULT_WALL_MS)},
    });
    let invocation = invocation(cli);
    let report = pipeline::run_workorder(
        &setup,
        WorkorderSource::Made {
            value: &workorder,
            origin: "admission mcp: plan",
        },
        &Mode::Plan,
        &invocation,
        &mut |_| {},
    )
    .map_err(|e| e.error)?;
    let mut value = run_value(&report, cli);
    let plan = report.plan.as_ref();
    let admitted = matches!(
        report.outcome,
        Some(RunOutcome::Admitted | RunOutcome::AwaitingForceAck)
    );
    extend(
        &mut value,
        json!({
            "decision": report.admission_hash.map(|_| if admitted { "ADMIT" } else { "DENY" }),
            "force_ack_required": report.outcome == Some(RunOutcome::AwaitingForceAck),
            "destructive_reasons": plan.map(|p| &p.destructive_reasons),
            "effects": plan.map(|p| &p.intended_effects),
            "preview": report.preview,
            "inputs": plan.map(|p| &p.inputs),
        }),
    );
    let error = if admitted {
        None
    } else {
        Some(failure(&report))
    };
    Ok(Outcome {
        text: render(&report, false, &absolute(&cli.store)),
        value,
        error,
    })
}

/// Stores each input given as text, checks each given as a digest, and returns them all by
/// digest. A path is refused: this server reads no file an agent names.
fn store_inputs(
    store: &Store,
    inputs: &Map<String, Value>,
    work_order_id: &str,
) -> Result<BTreeMap<String, String>, ErrorInfo> {
    let mut stored = BTreeMap::new();
    for (name, given) in inputs {
        let bad = |why: String| {
            ErrorInfo::new(ErrorCode::InvalidParams, format!("input {name:?}: {why}"))
        };
        let digest = match given {
            Value::String(text) => {
                let digest: Digest = text.parse().map_err(|_| {
                    bad(format!(
                        "{text:?} is not a digest (sha256:<64 hex>); give the content itself as \
                         {{\"text\": \"...\"}}: this server reads no files"
                    ))
                })?;
                store
                    .verify(&digest)
                    .map_err(|e| ErrorInfo::new(e.code(), format!("input {name:?}: {e}")))?;
                digest
            }
            Value::Object(members) => {
                let text = match (members.get("text"), members.len()) {
                    (Some(Value::String(text)), 1) => text,
                    _ => return Err(bad("give {\"text\": \"...\"} or a digest".to_owned())),
                };
                if text.len() > MAX_TEXT_INPUT_BYTES {
                    return Err(ErrorInfo::new(
                        ErrorCode::MessageTooLarge,
                        format!(
                            "input {name:?}: {} bytes of text, more than the \
                             {MAX_TEXT_INPUT_BYTES} an input given as text may have; store \
                             it with `admission --store {} put FILE` and give its digest",
                            text.len(),
                            store.root().display()
                        ),
                    ));
                }
                let provenance =
                    Provenance::new(format!("admission mcp: input {name} of {work_order_id}"));
                store
                    .put_blob_bytes(text.as_bytes(), &provenance)
                    .map_err(|e| ErrorInfo::new(e.code(), format!("input {name:?}: {e}")))?
            }
            _ => return Err(bad("give {\"text\": \"...\"} or a digest".to_owned())),
        };
        stored.insert(name.clone(), digest.to_string());
    }
    Ok(stored)
}

/// `execute`: the plan gated earlier, by its hash, with the approval an operator recorded.
fn execute(
    cli: &Cli,
    args: ExecuteArgs,
    cancel: CancellationToken,
    progress: &mut dyn FnMut(&ProgressParams),
) -> Result<Outcome, ErrorInfo> {
    let plan_hash: Digest = args.plan_hash.parse().map_err(|e| {
        ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("plan_hash {:?}: {e}", args.plan_hash),
        )
    })?;
    // Executing reads a plan gated earlier: a store that is not there is not created.
    existing_store(cli).map_err(|e| e.error)?;
    let mut setup = setup(cli).map_err(|e| e.error)?;
    setup.cancel = cancel;
    let invocation = invocation(cli);
    let report = pipeline::execute_plan(&setup, &plan_hash, None, &invocation, progress)
        .map_err(|e| e.error)?;
    // A ticket's paused run, resumed, completes its cycle, as from the command line.
    let ticket = tickets::after_execute(&setup, &invocation, &report);
    let mut value = run_value(&report, cli);
    let record = report
        .run_record
        .and_then(|digest| setup.store.get_artifact(&digest).ok())
        .map(|artifact| artifact.value().clone());
    let commit = report
        .evidence
        .as_ref()
        .and_then(|e| e.get("commit"))
        .cloned();
    extend(
        &mut value,
        json!({
            "result_hash": report.result_hash,
            "witness_hash": report.witness_hash,
            "force_ack_hash": report.force_ack_hash,
            "commit": commit,
            "evidence": report.evidence,
            "run_record_hash": report.run_record,
            "run_record": record,
            "ticket": ticket.as_ref().map(|(_, value)| value),
        }),
    );
    let error = match report.outcome {
        Some(RunOutcome::Succeeded) => None,
        _ => Some(failure(&report)),
    };
    let mut text = render(&report, true, &absolute(&cli.store));
    if let Some((ticket_text, _)) = ticket {
        text.push_str("\n\n");
        text.push_str(&ticket_text);
    }
    Ok(Outcome { text, value, error })
}

/// `verify`: every check, an error result when one fails.
fn verify(cli: &Cli, args: VerifyArgs) -> Result<Outcome, ErrorInfo> {
    let (rendered, failure) = verify::verified(cli, &args.digest).map_err(|e| e.error)?;
    let mut outcome = Outcome::ok(rendered);
    outcome.error = failure;
    Ok(outcome)
}

/// What every run reports, plan and execute alike; members with no value are left out.
fn run_value(report: &Report, cli: &Cli) -> Value {
    let outcome = report.outcome.unwrap_or(RunOutcome::Error);
    let mut value = json!({
        "run_uid": report.uid,
        "outcome": outcome,
        "work_order_id": report.work_order_id,
        "mechanism": report.mechanism,
        "operation": report.operation,
        "plan_hash": report.plan_hash,
        "admission_hash": report.admission_hash,
        "destructive": report.plan.as_ref().map(|p| p.destructive),
        "gates": report.gates,
        "next_actions": report.next_actions,
    });
    let needs_approval = outcome == RunOutcome::AwaitingForceAck || report.force_ack_refused();
    if let (true, Some(plan)) = (needs_approval, report.plan_hash) {
        extend(
            &mut value,
            json!({"approve_command": approve_command(cli, &plan)}),
        );
    }
    value
}

/// Why a run did not end as asked: its error, with the failed gates' reasons for a denial,
/// or FORCE_ACK_REQUIRED with the command an operator runs for a plan awaiting approval.
fn failure(report: &Report) -> ErrorInfo {
    if report.outcome == Some(RunOutcome::AwaitingForceAck) {
        let plan = report
            .plan_hash
            .map_or_else(|| "the plan".to_owned(), |p| p.to_string());
        let reasons = report
            .plan
            .as_ref()
            .map(|p| p.destructive_reasons.join("; "))
            .unwrap_or_default();
        return ErrorInfo::new(
            ErrorCode::ForceAckRequired,
            format!(
                "{plan} is destructive ({reasons}) and runs only once an operator approves it; \
                 ask an operator to run approve_command, then call execute again"
            ),
        );
    }
    let mut error = report.error.clone().unwrap_or_else(|| {
        ErrorInfo::new(
            ErrorCode::InternalError,
            "the run ended without saying why; show its run uid",
        )
    });
    let failed: Vec<String> = report
        .gates
        .iter()
        .filter(|g| g.decision == GateDecision::Fail)
        .map(|g| g.reason.clone())
        .collect();
    if report.outcome == Some(RunOutcome::Denied) && !failed.is_empty() {
        error.message = format!("{}: {}", error.message, failed.join("; "));
    }
    error
}

/// The `admission approve` an operator runs for `plan`, against this server's store and
/// trusted signers, with their key and principal to fill in.
fn approve_command(cli: &Cli, plan: &Digest) -> String {
    let mut command = format!("admission --store {}", quote(&absolute(&cli.store)));
    if let Some(signers) = &cli.allowed_signers {
        command.push_str(&format!(" --allowed-signers {}", quote(&absolute(signers))));
    }
    command.push_str(&format!(
        " approve {plan} --key ~/.ssh/id_ed25519 --approver YOU@EXAMPLE.COM"
    ));
    command
}

/// Next actions name this server's store and workspace by absolute path, so that they paste
/// in any terminal, not only in the directory the agent's client started the server in.
fn invocation(cli: &Cli) -> Invocation {
    let mut flags = vec![
        format!("--store {}", quote(&absolute(&cli.store))),
        format!("--workspace {}", quote(&absolute(&cli.workspace))),
    ];
    if let Some(signers) = &cli.allowed_signers {
        flags.push(format!("--allowed-signers {}", quote(&absolute(signers))));
    }
    if let Some(registry) = &cli.registry {
        flags.push(format!("--registry {}", quote(&absolute(registry))));
    }
    Invocation {
        global_flags: flags.join(" "),
        workorder: None,
        signers_given: cli.allowed_signers.is_some(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Adds the members of `extra` to the object `value`.
fn extend(value: &mut Value, extra: Value) {
    if let (Value::Object(members), Value::Object(extra)) = (value, extra) {
        members.extend(extra);
    }
}

/// Leaves out the members of an object that are `null`: a member absent means "none", and a
/// member present has the type the output schema says.
fn strip_nulls(value: &mut Value) {
    if let Value::Object(members) = value {
        members.retain(|_, v| !v.is_null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_an_error_result_leading_with_its_code() {
        let outcome = Outcome {
            text: "\u{1b}[1mplan\u{1b}[0m sha256:...".to_owned(),
            value: json!({"plan_hash": "sha256:...", "commit": null}),
            error: Some(ErrorInfo::new(ErrorCode::StalePlan, "the world moved")),
        };
        let result = outcome.into_result();
        assert_eq!(result.is_error, Some(true));
        let content = result.structured_content.expect("structured content");
        assert_eq!(content["error"]["code"], "STALE_PLAN");
        assert_eq!(content["error"]["message"], "the world moved");
        assert!(content.get("commit").is_none(), "a null member is left out");
        let text = serde_json::to_value(&result.content[0]).expect("content");
        assert_eq!(
            text["text"], "STALE_PLAN: the world moved\n\nplan sha256:...",
            "the text leads with the code, without terminal styles"
        );
    }

    #[test]
    fn every_run_outcome_is_one_the_output_schema_lists() {
        let listed = tools::all()
            .into_iter()
            .find(|t| t.name == tools::PLAN)
            .and_then(|t| t.output_schema)
            .map(|s| s["properties"]["outcome"]["enum"].clone())
            .expect("plan's outcome enum");
        for outcome in [
            RunOutcome::Admitted,
            RunOutcome::AwaitingForceAck,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Stale,
            RunOutcome::Denied,
            RunOutcome::Error,
        ] {
            let spelled = json!(outcome);
            assert!(
                listed.as_array().is_some_and(|l| l.contains(&spelled)),
                "{spelled} is not in {listed}"
            );
        }
    }

    #[test]
    fn an_input_is_text_or_a_stored_digest_never_a_path() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("store");
        let inputs = |value: Value| match value {
            Value::Object(members) => members,
            _ => Map::new(),
        };
        let stored = store_inputs(&store, &inputs(json!({"patch": {"text": "abc"}})), "w")
            .expect("text is stored");
        let digest: Digest = stored["patch"].parse().expect("a digest");
        assert_eq!(store.read_blob(&digest, 16).expect("stored"), b"abc");
        let again = store_inputs(&store, &inputs(json!({"patch": digest.to_string()})), "w")
            .expect("a stored digest is taken");
        assert_eq!(again["patch"], digest.to_string());
        for (bad, code) in [
            (json!({"patch": "patch.diff"}), ErrorCode::InvalidParams),
            (
                json!({"patch": {"text": "a", "path": "b"}}),
                ErrorCode::InvalidParams,
            ),
            (json!({"patch": 7}), ErrorCode::InvalidParams),
            (
                json!({"patch": Digest::of_bytes(b"absent").to_string()}),
                ErrorCode::UnknownArtifact,
            ),
        ] {
            let error = store_inputs(&store, &inputs(bad.clone()), "w").expect_err("refused");
            assert_eq!(error.code, code, "{bad}: {error}");
        }
    }
}
