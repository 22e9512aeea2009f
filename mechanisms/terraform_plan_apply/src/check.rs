//! The offline state check `verify` makes for an executed terraform plan: the state its
//! result recorded is the current state or an ancestor of it (same lineage, a serial no
//! greater), the very same state (same digest) when the serial is the same, and then holds
//! the planned resources and outputs. The local state file is read; terraform is not run.

use std::collections::BTreeSet;
use std::path::Path;

use mechanism_server::StateCheck;
use protocol::artifact::kinds::{Plan, ResultArtifact};
use protocol::{Digest, ErrorCode};
use serde_json::Value;

use crate::paths;
use crate::plan_json::Kind;

const LINEAGE: &str = "state.terraform.lineage";
const SERIAL: &str = "state.terraform.serial";
const DIGEST: &str = "state.terraform.digest";
const RESOURCES: &str = "state.terraform.resources";

/// The `state.terraform.*` checks of `plan`, executed under `root`, whose result recorded
/// the state it left.
pub fn checks(root: &Path, plan: &Plan, result: Option<&ResultArtifact>) -> Vec<StateCheck> {
    let skip_all = |why: &str| {
        [LINEAGE, SERIAL, DIGEST, RESOURCES]
            .iter()
            .map(|name| StateCheck::skip(name, why))
            .collect()
    };
    let Some(recorded) = result.map(|r| &r.evidence["state"]) else {
        return skip_all("no result records the state the execution left");
    };
    let dir = plan.state["dir"].as_str().unwrap_or_default();
    let workspace = plan.state["workspace"].as_str().unwrap_or("default");
    let module = match paths::resolve(root, if dir.is_empty() { "." } else { dir }) {
        Ok(module) => module,
        Err(e) => {
            return vec![StateCheck::fail(
                LINEAGE,
                ErrorCode::PathRefused,
                e.to_string(),
            )]
        }
    };
    let file = module.path.join(crate::mechanism::state_file(workspace));
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && recorded["digest"].is_null() => {
            return vec![StateCheck::pass(
                DIGEST,
                "no state, as the execution left it",
            )];
        }
        Err(e) => {
            return skip_all(&format!(
                "no local state to read at {} ({e}); another backend is not read offline",
                file.display()
            ))
        }
    };
    let current: Value = match serde_json::from_slice(&bytes) {
        Ok(state) => state,
        Err(e) => {
            return vec![StateCheck::fail(
                LINEAGE,
                ErrorCode::IntegrityMismatch,
                format!("{} is not a terraform state: {e}", file.display()),
            )]
        }
    };
    let mut checks = Vec::new();
    let (lineage, was) = (current["lineage"].as_str(), recorded["lineage"].as_str());
    let same_lineage = lineage.is_some() && lineage == was;
    checks.push(StateCheck::holds(
        LINEAGE,
        same_lineage,
        ErrorCode::IntegrityMismatch,
        format!("lineage {}", lineage.unwrap_or_default()),
        format!(
            "the state was replaced: lineage {} where the execution left {}",
            lineage.unwrap_or("none"),
            was.unwrap_or("none")
        ),
    ));
    if !same_lineage {
        return checks;
    }
    let (serial, at) = (current["serial"].as_u64(), recorded["serial"].as_u64());
    let (Some(serial), Some(at)) = (serial, at) else {
        checks.push(StateCheck::fail(
            SERIAL,
            ErrorCode::IntegrityMismatch,
            "the state or the result has no serial",
        ));
        return checks;
    };
    if serial < at {
        checks.push(StateCheck::fail(
            SERIAL,
            ErrorCode::IntegrityMismatch,
            format!("serial {serial} is older than the {at} the execution left"),
        ));
        return checks;
    }
    if serial > at {
        checks.push(StateCheck::pass(
            SERIAL,
            format!("serial {serial}: the state the execution left ({at}) is an ancestor"),
        ));
        let later =
            "the state was changed further since; the planned resources are not checked against it";
        checks.push(StateCheck::skip(DIGEST, later));
        checks.push(StateCheck::skip(RESOURCES, later));
        return checks;
    }
    checks.push(StateCheck::pass(
        SERIAL,
        format!("serial {serial}, as the execution left it"),
    ));
    // The recorded digest is of what `terraform state pull` printed: the file and a newline.
    let mut pulled = bytes.clone();
    pulled.push(b'\n');
    let digest = Digest::of_bytes(&pulled).to_string();
    let same = recorded["digest"].as_str() == Some(digest.as_str());
    checks.push(StateCheck::holds(
        DIGEST,
        same,
        ErrorCode::IntegrityMismatch,
        format!("{digest}, as the execution left it"),
        format!(
            "{digest} at the same serial, where the execution left {}",
            recorded["digest"].as_str().unwrap_or("none")
        ),
    ));
    if same {
        checks.push(resources(plan, &current));
    }
    checks
}

/// Whether the state holds each planned resource and output that is not deleted, and none
/// that is.
fn resources(plan: &Plan, state: &Value) -> StateCheck {
    let present = addresses(state);
    let mut wrong = Vec::new();
    for effect in &plan.intended_effects {
        let Some(address) = effect.detail.get("address").and_then(Value::as_str) else {
            continue;
        };
        let deleted = effect.effect_type == Kind::Delete.effect_type();
        if present.contains(address) == deleted {
            let should = if deleted { "still there" } else { "missing" };
            wrong.push(format!("{address} {should}"));
        }
    }
    StateCheck::holds(
        RESOURCES,
        wrong.is_empty(),
        ErrorCode::IntegrityMismatch,
        format!(
            "the state holds the planned after-state of {} change(s)",
            plan.intended_effects.len()
        ),
        wrong.join("; "),
    )
}

/// The addresses of a state's managed resource instances and outputs, as `show -json`
/// names them (`module.m.terraform_data.a[0]`, `output.o`).
fn addresses(state: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for resource in state["resources"].as_array().into_iter().flatten() {
        if resource["mode"] != "managed" {
            continue;
        }
        let module = resource["module"].as_str().map(|m| format!("{m}."));
        let base = format!(
            "{}{}.{}",
            module.unwrap_or_default(),
            resource["type"].as_str().unwrap_or_default(),
            resource["name"].as_str().unwrap_or_default()
        );
        for instance in resource["instances"].as_array().into_iter().flatten() {
            let address = match &instance["index_key"] {
                Value::Null => base.clone(),
                key => format!("{base}[{key}]"),
            };
            found.insert(address);
        }
    }
    for name in state["outputs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, _)| n)
    {
        found.insert(format!("output.{name}"));
    }
    found
}
