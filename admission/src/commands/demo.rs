//! `admission demo`: the whole product on a throw-away repository, needing nothing else.
//!
//! It builds a repository with history, an operator key and `allowed_signers`, then runs a
//! non-destructive patch straight through, runs a destructive one that pauses, approves it
//! and executes it, and verifies both chains offline. Then, when terraform runs, the same
//! for a Terraform root module: two `terraform_data` resources created, then destroyed after
//! a force-ack; without terraform that chapter is skipped, saying why. The mechanisms are
//! real subprocesses speaking the protocol over stdio, exactly as in `admission run`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature, Time};
use protocol::artifact::kinds::{Event, EventOutcome, EventType, RunOutcome, TicketStatus};
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::force_ack::ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
use protocol::force_ack::{self, NAMESPACE};
use protocol::store::Store;
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};
use terraform_plan_apply::{ID as TERRAFORM_ID, TERRAFORM_ENV};
use time::OffsetDateTime;

use crate::cli::{Cli, Output};
use crate::exit::{self, CommandError};
use crate::journal::Journal;
use crate::locate::STORE_DIR;
use crate::pipeline::{self, Invocation, Mode, Report, Setup, WorkorderSource};
use crate::registry::Registry;
use crate::tickets::{self, ledger::Ledger};
use crate::verify;

/// The operator of the demo, as named in its `allowed_signers`.
const APPROVER: &str = "operator@demo.invalid";
/// The operator's directory (key and `allowed_signers`) in the demo directory.
const OPERATOR_DIR: &str = "operator";
/// The trusted signers file in it.
const ALLOWED_SIGNERS: &str = "allowed_signers";

/// `admission demo [--keep]`.
pub fn run(cli: &Cli, out: Output, keep: bool) -> Result<u8, CommandError> {
    let temp = tempfile::Builder::new()
        .prefix("mechanism-demo-")
        .tempdir()
        .map_err(|e| internal(format!("cannot make a temporary directory: {e}")))?;
    let outcome = demo(cli, temp.path());
    let dir = if keep {
        let kept = temp.keep();
        Some(kept)
    } else {
        None
    };
    let (story, summary, ok) = outcome?;
    let mut text = story;
    let mut value = summary;
    if let Some(dir) = &dir {
        let commands = kept_commands(dir, &value);
        let _ = writeln!(
            text,
            "\nkept in {}; its store is {STORE_DIR} there, found by every command run in it:",
            dir.display()
        );
        for command in &commands {
            let _ = writeln!(text, "  {command}");
        }
        value["commands"] = json!(commands);
    }
    value["kept"] = json!(dir.map(|d| d.display().to_string()));
    out.result(text.trim_end(), value);
    Ok(if ok { 0 } else { exit::INTERNAL })
}

/// Commands that explore a kept demo directory, as they paste: the first enters it, where the
/// store is found; verifying the approved chain names the trusted signers, checking its
/// force-ack's signature too.
fn kept_commands(dir: &Path, summary: &Value) -> Vec<String> {
    let mut commands = vec![
        format!("cd {}", super::pipeline::quote(dir)),
        "admission log".to_owned(),
    ];
    if let Some(uid) = summary["runs"][1]["run_uid"].as_str() {
        commands.push(format!("admission show {uid}"));
    }
    if let Some(witness) = summary["verified"][1]["witness"].as_str() {
        commands.push(format!(
            "admission --allowed-signers {OPERATOR_DIR}/{ALLOWED_SIGNERS} verify {witness}"
        ));
    }
    if let Some(ticket) = summary["ticket"]["ticket_id"].as_str() {
        commands.push(format!("admission ticket show {ticket}"));
    }
    commands
}

fn demo(cli: &Cli, dir: &Path) -> Result<(String, Value, bool), CommandError> {
    // The directory is the workspace, its store where commands run there find it.
    let workspace = dir.to_path_buf();
    let store_dir = dir.join(STORE_DIR);
    let repo_dir = workspace.join("lighthouse");
    let base = make_repository(&repo_dir)?;
    let (key, signers_path) = make_operator(&dir.join(OPERATOR_DIR))?;
    let signers = AllowedSigners::read(&signers_path)
        .map_err(|e| internal(format!("the demo's allowed_signers: {e}")))?;
    let setup = Setup {
        store: Store::open(&store_dir).map_err(|e| internal(e.to_string()))?,
        journal: Journal::open(&store_dir).map_err(|e| internal(e.to_string()))?,
        store_dir: store_dir.clone(),
        workspace: workspace.clone(),
        registry: Registry::load(cli.registry.as_deref())
            .map_err(|e| CommandError::bad_input(ErrorCode::InvalidParams, e.to_string()))?,
        signers_path: Some(signers_path.clone()),
        signers: Some(signers.clone()),
        max_ttl: protocol::force_ack::DEFAULT_MAX_TTL,
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    let invocation = Invocation {
        global_flags: format!(
            "--store {} --workspace {} --allowed-signers {}",
            store_dir.display(),
            workspace.display(),
            signers_path.display()
        ),
        workorder: None,
        signers_given: true,
    };
    let mut story = String::new();
    let _ = writeln!(
        story,
        "A throw-away repository `lighthouse` (3 commits, main at {}) and an operator key.\n",
        abbrev(&base)
    );

    // 1. A patch that only adds and edits: planned, gated and executed in one go.
    let first = write_workorder(dir, &ADD_KEEPER)?;
    let mut quiet = |_: &protocol::verbs::ProgressParams| {};
    let one = pipeline::run_workorder(
        &setup,
        WorkorderSource::File(&first),
        &Mode::Run { force_ack: None },
        &invocation,
        &mut quiet,
    )?;
    let _ = writeln!(
        story,
        "1. `admission run add-keeper.json`: adds src/keeper.rs and edits README.md."
    );
    tell_run(&mut story, &one);

    // 2. A patch that deletes a file: destructive, so it pauses for the operator.
    let second = write_workorder(dir, &DROP_NOTES)?;
    let two = pipeline::run_workorder(
        &setup,
        WorkorderSource::File(&second),
        &Mode::Run { force_ack: None },
        &invocation,
        &mut quiet,
    )?;
    let _ = writeln!(
        story,
        "\n2. `admission run drop-notes.json`: deletes docs/notes.md."
    );
    tell_run(&mut story, &two);

    // The operator approves that exact plan, with an SSH signature.
    let (three, ack_path) = match (two.plan_hash, two.admission_hash, two.outcome) {
        (Some(plan), Some(admission), Some(RunOutcome::AwaitingForceAck)) => {
            let (ack, ack_path) = approve(&key, &plan, &admission, &dir.join("force-ack.json"))?;
            let _ = writeln!(
                story,
                "   {APPROVER} approves plan {} with an SSH signature (namespace {NAMESPACE}, valid 15 minutes), as `admission approve --key` does.",
                short(&plan.to_string())
            );
            let three = pipeline::execute_plan(&setup, &plan, Some(ack), &invocation, &mut quiet)?;
            let _ = writeln!(
                story,
                "\n3. `admission execute {} --force-ack force-ack.json`:",
                short(&plan.to_string())
            );
            tell_run(&mut story, &three);
            (Some(three), Some(ack_path))
        }
        _ => (None, None),
    };

    // Both chains, checked offline from the artifacts and the repository alone.
    let _ = writeln!(story, "\n4. `admission verify`, offline:");
    let mut verified = Vec::new();
    for report in [Some(&one), three.as_ref()].into_iter().flatten() {
        let Some(witness) = report.witness_hash else {
            continue;
        };
        let ok = tell_verify(&mut story, &setup, &signers, &witness);
        verified.push((witness, ok));
    }
    let ok = one.outcome == Some(RunOutcome::Succeeded)
        && two.outcome == Some(RunOutcome::AwaitingForceAck)
        && three.as_ref().and_then(|r| r.outcome) == Some(RunOutcome::Succeeded)
        && verified.len() == 2
        && verified.iter().all(|(_, ok)| *ok);
    let (ticket, ticket_ok) = ticket_chapter(&setup, dir, &invocation, &mut story)?;
    let head = Repository::open(&repo_dir)
        .and_then(|r| {
            r.head()
                .and_then(|h| h.peel_to_commit())
                .map(|c| c.id().to_string())
        })
        .unwrap_or_default();
    let (terraform, terraform_ok) =
        terraform_chapter(&setup, dir, &key, &signers, &invocation, &mut story)?;
    let ok = ok && ticket_ok && terraform_ok;
    if ok {
        let _ = writeln!(
            story,
            "\nEvery effect was planned exactly, approved for that exact plan where destructive, \
             executed only as planned, and proven from the artifacts: main is now at {}.",
            abbrev(&head)
        );
    } else {
        let _ = writeln!(story, "\nThe demo did NOT go as it should; see above.");
    }
    let summary = json!({
        "ok": ok,
        "repository": repo_dir.display().to_string(),
        "store": store_dir.display().to_string(),
        "base": base,
        "head": head,
        "runs": [
            super::pipeline::report_json(&one),
            super::pipeline::report_json(&two),
            three.as_ref().map(super::pipeline::report_json),
        ],
        "force_ack": ack_path.map(|p| p.display().to_string()),
        "verified": verified.iter().map(|(w, ok)| json!({"witness": w, "verified": ok})).collect::<Vec<_>>(),
        "ticket": ticket,
        "terraform": terraform,
    });
    Ok((story, summary, ok))
}

/// The ticket chapter: a READY ticket filed, its TICKET_READY event processed, the ticket
/// DONE with its commit and pause state. Returns its JSON summary and whether it went so.
fn ticket_chapter(
    setup: &Setup,
    dir: &Path,
    invocation: &Invocation,
    story: &mut String,
) -> Result<(Value, bool), CommandError> {
    let path = write_workorder(dir, &LIGHT_DIM)?;
    let mut ticket = tickets::file::read_ticket(&path).map_err(|e| internal(e.message))?;
    tickets::file::store_inputs(&mut ticket, &path, &setup.store)
        .map_err(|e| internal(e.message))?;
    ticket.updated_at = Some(pipeline::now());
    let ledger = Ledger::new(&setup.store);
    ledger.put_ticket(&ticket, "admission demo")?;
    let event = Event {
        event_id: "demo-ready-1".to_owned(),
        event_type: EventType::TicketReady,
        ticket_id: ticket.ticket_id.clone(),
        processed: false,
        resolution: None,
        source: Some("admission demo".to_owned()),
        previous: None,
    };
    ledger.add_event(&event, "admission demo")?;
    let mut quiet = |_: &protocol::verbs::ProgressParams| {};
    let processed = tickets::process::process_pending(setup, invocation, &mut quiet)?;
    let _ = writeln!(
        story,
        "\nThen a ticket: {} READY (\"{}\"), its TICKET_READY event, then `admission events process`:",
        ticket.ticket_id, ticket.objective
    );
    let Some(done) = processed.first() else {
        let _ = writeln!(story, "   no event was processed  FAILED");
        return Ok((
            json!({"ticket_id": ticket.ticket_id, "processed": null}),
            false,
        ));
    };
    let ended = ledger.ticket(&ticket.ticket_id)?;
    let commit = ended
        .as_ref()
        .and_then(|t| t.value.resolution.as_ref())
        .and_then(|r| r.commit.clone());
    let _ = writeln!(
        story,
        "   {}: snapshot of main, workorder {}@{}, run {}",
        crate::text::spelled(&done.outcome),
        ticket.ticket_id,
        event.event_id,
        done.run_uid.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        story,
        "   ticket {} {}{}; its pause state holds {}, the first `{}`",
        ticket.ticket_id,
        done.ticket_status.map_or("?", |s| s.as_str()),
        commit
            .as_deref()
            .map(|c| format!(" at {}", abbrev(c)))
            .unwrap_or_default(),
        crate::text::count(done.actions.len(), "next command", "next commands"),
        done.actions.first().map_or("", |a| a.command.as_str())
    );
    let ok = done.outcome == EventOutcome::Scheduled
        && done.ticket_status == Some(TicketStatus::Done)
        && commit.is_some();
    Ok((
        json!({"ticket_id": ticket.ticket_id, "processed": done, "commit": commit}),
        ok,
    ))
}

/// Verifies the chain of `witness` offline and tells how it went; returns whether it holds.
fn tell_verify(
    story: &mut String,
    setup: &Setup,
    signers: &AllowedSigners,
    witness: &Digest,
) -> bool {
    let checked = verify::verify(&setup.store, &setup.workspace, Some(signers), witness);
    let (ok, line) = match &checked {
        Ok(r) => (
            r.verified(),
            format!(
                "{} of {} checks hold",
                r.checks.iter().filter(|c| c.held()).count(),
                r.checks.len()
            ),
        ),
        Err(e) => (false, e.to_string()),
    };
    let _ = writeln!(
        story,
        "   witness {}: {line}{}",
        short(&witness.to_string()),
        if ok { "" } else { "  FAILED" }
    );
    if let Ok(r) = &checked {
        for c in r.checks.iter().filter(|c| !c.held()) {
            let _ = writeln!(story, "     ✗ {}: {}", c.name, c.detail);
        }
    }
    ok
}

/// The operator's signed force-ack for `plan` admitted by `admission`, valid 15 minutes,
/// also written to `path` as `admission approve` would.
fn approve(
    key: &PrivateKey,
    plan: &Digest,
    admission: &Digest,
    path: &Path,
) -> Result<(Value, PathBuf), CommandError> {
    let nonce = force_ack::random_nonce().map_err(|e| internal(e.to_string()))?;
    let expires = OffsetDateTime::now_utc() + time::Duration::minutes(15);
    let mut ack = force_ack::new_unsigned(plan, admission, APPROVER, expires, &nonce);
    let signature = force_ack::sign(&ack, key).map_err(|e| internal(e.to_string()))?;
    ack["signature"] = Value::String(signature);
    fs::write(path, serde_json::to_vec_pretty(&ack).unwrap_or_default())
        .map_err(|e| internal(e.to_string()))?;
    Ok((ack, path.to_owned()))
}

/// The Terraform chapter, when terraform runs: two `terraform_data` resources created,
/// then destroyed after a force-ack, both chains verified. Returns its JSON summary and
/// whether it went as it should (a skipped chapter did).
fn terraform_chapter(
    setup: &Setup,
    dir: &Path,
    key: &PrivateKey,
    signers: &AllowedSigners,
    invocation: &Invocation,
    story: &mut String,
) -> Result<(Value, bool), CommandError> {
    let program = std::env::var_os(TERRAFORM_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("terraform"), PathBuf::from);
    let version = match Command::new(&program).arg("version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Ok(out) => {
            return Ok(skipped(
                story,
                format!("`{} version` failed ({})", program.display(), out.status),
            ))
        }
        Err(e) => {
            return Ok(skipped(
                story,
                format!("{} is not on PATH ({e})", program.display()),
            ))
        }
    };
    let module = setup.workspace.join(BEACONS_DIR);
    fs::create_dir_all(&module).map_err(|e| internal(e.to_string()))?;
    fs::write(module.join("main.tf"), BEACONS_TF).map_err(|e| internal(e.to_string()))?;
    let _ = writeln!(
        story,
        "\nTerraform ({version}): a root module `{BEACONS_DIR}` with two `terraform_data` resources and local state."
    );
    let mut quiet = |_: &protocol::verbs::ProgressParams| {};
    let run = |name: &str, text: &str, quiet: &mut dyn FnMut(&protocol::verbs::ProgressParams)| {
        let path = dir.join(format!("{name}.json"));
        fs::write(&path, text).map_err(|e| internal(e.to_string()))?;
        pipeline::run_workorder(
            setup,
            WorkorderSource::File(&path),
            &Mode::Run { force_ack: None },
            invocation,
            quiet,
        )
    };

    let created = run("beacons-create", BEACONS_CREATE, &mut quiet)?;
    let _ = writeln!(
        story,
        "\n5. `admission run beacons-create.json`: creates terraform_data.north and terraform_data.south."
    );
    tell_run(story, &created);

    let paused = run("beacons-destroy", BEACONS_DESTROY, &mut quiet)?;
    let _ = writeln!(
        story,
        "\n6. `admission run beacons-destroy.json`: destroys every resource of the module."
    );
    tell_run(story, &paused);
    let (destroyed, ack_path) = match (paused.plan_hash, paused.admission_hash, paused.outcome) {
        (Some(plan), Some(admission), Some(RunOutcome::AwaitingForceAck)) => {
            let (ack, ack_path) =
                approve(key, &plan, &admission, &dir.join("beacons-force-ack.json"))?;
            let _ = writeln!(
                story,
                "   {APPROVER} approves plan {} with an SSH signature, as `admission approve --key` does.",
                short(&plan.to_string())
            );
            let destroyed =
                pipeline::execute_plan(setup, &plan, Some(ack), invocation, &mut quiet)?;
            let _ = writeln!(
                story,
                "\n7. `admission execute {} --force-ack beacons-force-ack.json`:",
                short(&plan.to_string())
            );
            tell_run(story, &destroyed);
            (Some(destroyed), Some(ack_path))
        }
        _ => (None, None),
    };

    let _ = writeln!(story, "\n8. `admission verify`, offline:");
    let mut verified = Vec::new();
    for report in [Some(&created), destroyed.as_ref()].into_iter().flatten() {
        if let Some(witness) = report.witness_hash {
            let ok = tell_verify(story, setup, signers, &witness);
            verified.push((witness, ok));
        }
    }
    let left = state_resources(&module.join("terraform.tfstate"));
    let ok = created.outcome == Some(RunOutcome::Succeeded)
        && paused.outcome == Some(RunOutcome::AwaitingForceAck)
        && destroyed.as_ref().and_then(|r| r.outcome) == Some(RunOutcome::Succeeded)
        && verified.len() == 2
        && verified.iter().all(|(_, ok)| *ok)
        && left == Some(0);
    let summary = json!({
        "ran": true,
        "skipped": null,
        "terraform_version": version,
        "module": module.display().to_string(),
        "runs": [
            super::pipeline::report_json(&created),
            super::pipeline::report_json(&paused),
            destroyed.as_ref().map(super::pipeline::report_json),
        ],
        "force_ack": ack_path.map(|p| p.display().to_string()),
        "verified": verified.iter().map(|(w, ok)| json!({"witness": w, "verified": ok})).collect::<Vec<_>>(),
        "resources_left": left,
    });
    Ok((summary, ok))
}

/// Tells that the Terraform chapter was skipped and why; the demo still succeeds.
fn skipped(story: &mut String, why: String) -> (Value, bool) {
    let _ = writeln!(story, "\nThe Terraform chapter was skipped: {why}.");
    (json!({"ran": false, "skipped": why}), true)
}

/// How many resources the state file at `path` holds, if it can be read.
fn state_resources(path: &Path) -> Option<usize> {
    let state: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    state["resources"].as_array().map(Vec::len)
}

fn tell_run(story: &mut String, report: &Report) {
    if let Some(plan) = &report.plan {
        let _ = writeln!(
            story,
            "   plan {}: {}, {}",
            short(&report.plan_hash.map(|p| p.to_string()).unwrap_or_default()),
            crate::text::count(plan.intended_effects.len(), "effect", "effects"),
            if plan.destructive {
                format!("DESTRUCTIVE ({})", plan.destructive_reasons.join("; "))
            } else {
                "not destructive".to_owned()
            }
        );
    }
    if !report.gates.is_empty() {
        let passed = report
            .gates
            .iter()
            .filter(|g| g.decision == protocol::artifact::kinds::GateDecision::Pass)
            .count();
        let _ = writeln!(story, "   gates: {passed}/{} PASS", report.gates.len());
    }
    match report.outcome {
        Some(RunOutcome::Succeeded) if report.mechanism == TERRAFORM_ID => {
            let state = report.evidence.as_ref().map(|e| &e["state"]);
            let serial = state
                .and_then(|s| s["serial"].as_u64())
                .map_or_else(|| "?".to_owned(), |n| n.to_string());
            let digest = state.and_then(|s| s["digest"].as_str()).unwrap_or("?");
            let _ = writeln!(
                story,
                "   executed: terraform applied the saved plan; state serial {serial}, {}",
                short(digest)
            );
        }
        Some(RunOutcome::Succeeded) => {
            let commit = report
                .evidence
                .as_ref()
                .and_then(|e| e.get("commit"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            let _ = writeln!(
                story,
                "   executed: commit {} (the id predicted at plan time)",
                abbrev(commit)
            );
        }
        Some(RunOutcome::AwaitingForceAck) => {
            let _ = writeln!(
                story,
                "   paused: destructive plans need an operator's signed force-ack (exit 4)"
            );
        }
        other => {
            let _ = writeln!(
                story,
                "   unexpected outcome {other:?}: {}",
                report
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default()
            );
        }
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// A commit id as people write it; the id comes from a mechanism, so never slice blindly.
fn abbrev(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

const README: &str =
    "# Lighthouse\n\nA tiny project for the mechanism demo.\n\nRun `make` to build.\n";
const NOTES: &str = "# Old notes\n\nThese notes are out of date.\n";
const BEAM: &str = "pub fn beam() -> &'static str {\n    \"sweeping\"\n}\n";

/// The demo's workorders and patches, exactly as shipped in `examples/demo/`: the first
/// adds a file and edits another (not destructive), the second deletes a file (destructive).
const ADD_KEEPER: Example = Example {
    name: "add-keeper",
    workorder: include_str!("../../../examples/demo/add-keeper.json"),
    patch: include_str!("../../../examples/demo/add-keeper.diff"),
};
const LIGHT_DIM: Example = Example {
    name: "light-dim",
    workorder: include_str!("../../../examples/demo/light-dim.json"),
    patch: include_str!("../../../examples/demo/light-dim.diff"),
};
const DROP_NOTES: Example = Example {
    name: "drop-notes",
    workorder: include_str!("../../../examples/demo/drop-notes.json"),
    patch: include_str!("../../../examples/demo/drop-notes.diff"),
};

/// The Terraform chapter's module directory, in the workspace.
const BEACONS_DIR: &str = "beacons";
/// Its configuration and workorders, exactly as shipped in `examples/demo/`.
const BEACONS_TF: &str = include_str!("../../../examples/demo/beacons/main.tf");
const BEACONS_CREATE: &str = include_str!("../../../examples/demo/beacons-create.json");
const BEACONS_DESTROY: &str = include_str!("../../../examples/demo/beacons-destroy.json");

/// A workorder (naming its patch `<name>.diff`) and the patch.
struct Example {
    name: &'static str,
    workorder: &'static str,
    patch: &'static str,
}

/// A repository with three commits on `main`, checked out; returns the head commit id.
fn make_repository(dir: &Path) -> Result<String, CommandError> {
    let git = |e: git2::Error| internal(format!("making the demo repository: {e}"));
    let mut options = RepositoryInitOptions::new();
    options.initial_head("main");
    let repo = Repository::init_opts(dir, &options).map_err(git)?;
    let steps: [(&str, &[(&str, &str)]); 3] = [
        (
            "Start the lighthouse",
            &[("README.md", "# Lighthouse\n"), ("src/beam.rs", BEAM)],
        ),
        ("Write some notes", &[("docs/notes.md", NOTES)]),
        ("Describe the project", &[("README.md", README)]),
    ];
    let mut parent: Option<git2::Oid> = None;
    for (i, (message, files)) in steps.iter().enumerate() {
        for (path, content) in *files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| internal(e.to_string()))?;
            }
            fs::write(&path, content).map_err(|e| internal(e.to_string()))?;
        }
        let mut index = repo.index().map_err(git)?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .map_err(git)?;
        index.write().map_err(git)?;
        let tree = repo
            .find_tree(index.write_tree().map_err(git)?)
            .map_err(git)?;
        // Fixed times, so the demo's plans are the same on every machine.
        let when = Time::new(1_767_225_600 + 3600 * i as i64, 0);
        let who = Signature::new("Demo Author", "author@demo.invalid", &when).map_err(git)?;
        let parents = match parent {
            Some(id) => vec![repo.find_commit(id).map_err(git)?],
            None => Vec::new(),
        };
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &who, &who, message, &tree, &refs)
            .map_err(git)?;
        parent = Some(id);
    }
    parent
        .map(|id| id.to_string())
        .ok_or_else(|| internal("no commit was made".to_owned()))
}

/// An ed25519 operator key and the `allowed_signers` file that trusts it for force-acks.
fn make_operator(dir: &Path) -> Result<(PrivateKey, PathBuf), CommandError> {
    fs::create_dir_all(dir).map_err(|e| internal(e.to_string()))?;
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| internal(format!("generating the operator key: {e}")))?;
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| internal(e.to_string()))?;
    fs::write(dir.join("id_ed25519"), pem.as_bytes()).map_err(|e| internal(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| internal(e.to_string()))?;
    let signers = dir.join(ALLOWED_SIGNERS);
    fs::write(
        &signers,
        format!("{APPROVER} namespaces=\"{NAMESPACE}\" {public}\n"),
    )
    .map_err(|e| internal(e.to_string()))?;
    Ok((key, signers))
}

/// Writes the example's workorder and patch side by side; returns the workorder's path.
fn write_workorder(dir: &Path, example: &Example) -> Result<PathBuf, CommandError> {
    let write = |file: String, content: &str| {
        let path = dir.join(file);
        fs::write(&path, content).map_err(|e| internal(e.to_string()))?;
        Ok(path)
    };
    write(format!("{}.diff", example.name), example.patch)?;
    write(format!("{}.json", example.name), example.workorder)
}

fn internal(message: String) -> CommandError {
    CommandError::internal(ErrorCode::InternalError, format!("demo: {message}"))
}
