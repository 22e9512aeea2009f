//! A minimal mechanism: `write` puts a text file in the root, atomically. The runtime
//! (`mechanism_server`) does the rest: the protocol, the plan artifact and store, execute by
//! recomputation, admission and force-ack checks, records, and finishing a killed execute.

use std::fs::{self, File};
use std::io::Write as _;

use mechanism_server::protocol::artifact::effect::{Access, Effect, FS_WRITE};
use mechanism_server::protocol::artifact::kinds::{Determinism, Plan};
use mechanism_server::protocol::verbs::{Destructiveness, Example, Operation};
use mechanism_server::protocol::{Digest, ErrorCode};
use mechanism_server::{parse_params, Env, ErrorInfo, ExecContext, Executed, Mechanism};
use mechanism_server::{PlanRequest, Proposal, Result};
use serde::Deserialize;
use serde_json::json;

/// The params of `write`: a file name in the root, and its text.
#[derive(Deserialize)]
pub struct Write {
    name: String,
    text: String,
}

/// The mechanism; it keeps no state of its own.
pub struct Minimal;

impl Mechanism for Minimal {
    /// The params, as the runtime's re-plan parsed them, for execute.
    type Prepared = Write;

    fn id(&self) -> &str {
        "minimal"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn operations(&self) -> Vec<Operation> {
        let example = |text: &str| Example {
            params: json!({"name": "hello.txt", "text": text}),
            inputs: None,
        };
        vec![Operation {
            name: "write".into(),
            description: "Write a text file in the root, atomically.".into(),
            // A plain name: no directory, no `..`, no dot file.
            params_schema: json!({"type": "object", "required": ["name", "text"],
                "additionalProperties": false, "properties": {"text": {"type": "string"},
                "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}\\.txt$"}}}),
            inputs: vec![],
            effect_types: vec![FS_WRITE.into()],
            destructive: Destructiveness::Maybe,
            determinism: Determinism::D0,
            // The second overwrites what the first wrote: a destructive plan.
            examples: vec![example("Hello\n"), example("Goodbye\n")],
        }]
    }

    fn plan(&self, env: &Env, request: &PlanRequest) -> Result<Proposal<Write>> {
        let write: Write = parse_params(&request.params)?;
        let path = env.root.join(&write.name);
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            let why = format!("{} is not a regular file", write.name);
            return Err(ErrorInfo::new(ErrorCode::PathRefused, why));
        }
        // The state the plan depends on: the file's content now.
        let before = fs::read(&path).ok().map(|b| Digest::of_bytes(&b));
        let after = Digest::of_bytes(write.text.as_bytes());
        let effect = Effect::new(FS_WRITE, &write.name).with("after", after.to_string());
        let effect = effect.with("before", before.map(|d| d.to_string()));
        let reason = before.map(|_| format!("overwrites {}", write.name));
        let mut proposal = Proposal::new(json!({"name": write.name, "before": before}), write);
        proposal.intend(effect, Access::Write);
        proposal.destructive_reasons.extend(reason);
        Ok(proposal)
    }

    fn execute(&self, env: &Env, plan: &Plan, write: Write, ctx: &ExecContext) -> Result<Executed> {
        // One atomic step (the rename) needs no record for recovery: past this point a plan
        // found not applied is executed again, and one found applied is recorded.
        ctx.point_of_no_return()?;
        let temp = env.root.join(format!(".{}.tmp", write.name));
        // A leftover of a killed execute, or a planted symlink, is removed, never followed.
        let _ = fs::remove_file(&temp);
        let written = File::create_new(&temp).and_then(|mut f| f.write_all(write.text.as_bytes()));
        let renamed = written.and_then(|()| fs::rename(&temp, env.root.join(&write.name)));
        renamed.map_err(|e| ErrorInfo::new(ErrorCode::ExecutionFailed, e.to_string()))?;
        self.executed(plan)
    }

    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool> {
        let write: Write = parse_params(&plan.params)?;
        Ok(fs::read(env.root.join(&write.name)).is_ok_and(|b| b == write.text.as_bytes()))
    }
}
