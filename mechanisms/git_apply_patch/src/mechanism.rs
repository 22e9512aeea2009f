//! `git_apply_patch` as a [`Mechanism`]: the prediction becomes the plan's proposal, and
//! execute applies the prediction the runtime's re-plan prepared, once it is found to give
//! the admitted plan. And as a [`CheckState`], for `admission verify`.

use std::collections::BTreeMap;
use std::path::Path;

use mechanism_server::{
    CheckState, Env, ErrorInfo, ExecContext, Executed, Mechanism, PlanRequest, Proposal, StateCheck,
};
use protocol::artifact::effect::{Effect, FS_DELETE, FS_MODE, FS_WRITE, GIT_COMMIT};
use protocol::artifact::kinds::{Costs, Determinism, Grant, Plan, RecipeStep, ResultArtifact};
use protocol::verbs::{Destructiveness, Example, Operation};
use protocol::ErrorCode;
use serde_json::{json, Value};

use super::{ApplyError, ApplyParams, Prepared};

/// The mechanism id.
pub const ID: &str = "git_apply_patch";
/// Its only operation.
pub const APPLY: &str = "apply";
/// The name of the patch input.
pub const PATCH_INPUT: &str = "patch";
/// The largest patch read from the store; a bigger one is refused, never half-read.
pub const MAX_PATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Applies a unified diff to a branch and commits it, exactly as planned.
#[derive(Debug, Default, Clone, Copy)]
pub struct GitApplyPatch;

impl Mechanism for GitApplyPatch {
    type Prepared = Prepared;

    fn id(&self) -> &str {
        ID
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn operations(&self) -> Vec<Operation> {
        vec![Operation {
            name: APPLY.to_owned(),
            description: "Apply a unified diff or `git format-patch` mails (input `patch`) to \
                          a branch of a git repository under the root and commit it as one \
                          commit; the commit id is predicted at plan time."
                .to_owned(),
            params_schema: params_schema(),
            inputs: vec![PATCH_INPUT.to_owned()],
            effect_types: [FS_WRITE, FS_DELETE, FS_MODE, GIT_COMMIT]
                .map(str::to_owned)
                .to_vec(),
            destructive: Destructiveness::Maybe,
            determinism: Determinism::D0,
            // In order: the second deletes what the first adds, so it is destructive.
            examples: vec![
                example("Add hello.txt", EXAMPLE_ADD),
                example("Remove hello.txt", EXAMPLE_DELETE),
            ],
        }]
    }

    fn capability_scope(&self) -> Vec<Grant> {
        [FS_WRITE, FS_DELETE, FS_MODE, GIT_COMMIT]
            .map(|capability| Grant {
                capability: capability.to_owned(),
                resources: vec!["**".to_owned()],
            })
            .to_vec()
    }

    fn plan(&self, env: &Env, request: &PlanRequest) -> Result<Proposal<Prepared>, ErrorInfo> {
        let (params, patch) = read_request(env, request)?;
        let prepared =
            super::prepare(&env.root, &params, &patch, request.preview).map_err(ErrorInfo::from)?;
        Ok(proposal(prepared, request.preview))
    }

    /// Applies the prediction the runtime's re-plan prepared, without computing it again:
    /// [`super::apply`] checks under the repository's locks only what can have changed
    /// since.
    fn execute(
        &self,
        env: &Env,
        plan: &Plan,
        prepared: Prepared,
        ctx: &ExecContext,
    ) -> Result<Executed, ErrorInfo> {
        ctx.progress(0, 1, "applying the patch");
        let id = ctx.plan_hash().to_string();
        super::apply(&env.root, prepared, &id, || {
            ctx.point_of_no_return()
                .map_err(|stop| ApplyError::Stopped(stop.code, stop.message))
        })
        .map_err(ErrorInfo::from)?;
        ctx.progress(1, 1, "committed");
        self.executed(plan)
    }

    fn executed(&self, plan: &Plan) -> Result<Executed, ErrorInfo> {
        executed(plan)
    }

    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool, ErrorInfo> {
        let Some(outcome) = outcome(plan) else {
            return Ok(false);
        };
        super::holds(&env.root, &outcome).map_err(ErrorInfo::from)
    }

    fn recover(&self, env: &Env, plan: &Plan) -> Result<Option<Executed>, ErrorInfo> {
        let Some(outcome) = outcome(plan) else {
            return Ok(None);
        };
        if let Some(finished) = super::recover(&env.root, &outcome.repo).map_err(ErrorInfo::from)? {
            tracing::info!(execution = %finished, "finished an interrupted execute");
        }
        if super::holds(&env.root, &outcome).map_err(ErrorInfo::from)? {
            self.executed(plan).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// What `admission verify` proves from the repository alone: each commit exists with its
/// predicted id, tree and parent, is still on its branch, and changes exactly the planned
/// files (see `state.rs`).
impl CheckState for GitApplyPatch {
    fn check_state(
        &self,
        root: &Path,
        plan: &Plan,
        _result: Option<&ResultArtifact>,
    ) -> Vec<StateCheck> {
        let mut checks = Vec::new();
        super::state::checks(root, &plan.intended_effects, &mut checks);
        checks
    }
}

/// What a plan leaves in place once executed, read from the plan alone.
fn outcome(plan: &Plan) -> Option<super::Outcome> {
    let commit = commit_effect(plan)?;
    Some(super::Outcome {
        repo: plan.state["repo"].as_str()?.to_owned(),
        ref_name: plan.state["ref"].as_str()?.to_owned(),
        commit: commit.detail.get("to")?.as_str()?.to_owned(),
        checked_out: plan.state["checked_out"].as_bool()?,
        paths: effect_paths(plan).into_iter().map(str::to_owned).collect(),
    })
}

fn commit_effect(plan: &Plan) -> Option<&Effect> {
    plan.intended_effects
        .iter()
        .find(|e| e.effect_type == GIT_COMMIT)
}

/// The distinct repository paths the plan's file effects name, in effect order.
fn effect_paths(plan: &Plan) -> Vec<&str> {
    let mut paths: Vec<&str> = Vec::new();
    for path in plan
        .intended_effects
        .iter()
        .filter(|e| e.effect_type != GIT_COMMIT)
        .filter_map(|e| e.detail.get("path").and_then(Value::as_str))
    {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// What executing `plan` did once its effects are in place: exactly what it planned.
fn executed(plan: &Plan) -> Result<Executed, ErrorInfo> {
    let missing = || {
        ErrorInfo::new(
            ErrorCode::InternalError,
            "the plan has no git.commit effect with `to` and `tree`",
        )
    };
    let commit = commit_effect(plan).ok_or_else(missing)?;
    let to = commit
        .detail
        .get("to")
        .and_then(Value::as_str)
        .ok_or_else(missing)?;
    let tree = commit
        .detail
        .get("tree")
        .and_then(Value::as_str)
        .ok_or_else(missing)?;
    let repo = plan.state["repo"].as_str().unwrap_or(".");
    let ref_name = plan.state["ref"].as_str().unwrap_or_default();
    Ok(Executed {
        evidence: json!({
            "commit": to,
            "tree": tree,
            "ref": ref_name,
            "from": plan.state["base_commit"],
            "worktree_updated": plan.state["checked_out"],
        }),
        state_after: json!({
            "repo": repo,
            "ref": ref_name,
            "commit": to,
            "tree": tree,
        }),
        subjects: vec![(
            format!("{repo}@{ref_name}"),
            BTreeMap::from([("gitCommit".to_owned(), to.to_owned())]),
        )],
        effects_applied: plan.intended_effects.clone(),
        state_before: plan.state.clone(),
    })
}

/// An example on the repository at the root: `message` and the patch text.
fn example(message: &str, patch: &str) -> Example {
    Example {
        params: json!({
            "repo": ".",
            "message": message,
            "author": {"name": "Example Author", "email": "author@example.com"},
        }),
        inputs: Some(BTreeMap::from([(PATCH_INPUT.to_owned(), patch.to_owned())])),
    }
}

/// A patch that applies to any repository without a `hello.txt`.
const EXAMPLE_ADD: &str = "diff --git a/hello.txt b/hello.txt\n\
new file mode 100644\n\
--- /dev/null\n\
+++ b/hello.txt\n\
@@ -0,0 +1 @@\n\
+hello\n";

/// Deletes what [`EXAMPLE_ADD`] added: a destructive plan.
const EXAMPLE_DELETE: &str = "diff --git a/hello.txt b/hello.txt\n\
deleted file mode 100644\n\
--- a/hello.txt\n\
+++ /dev/null\n\
@@ -1 +0,0 @@\n\
-hello\n";

/// The JSON Schema of [`ApplyParams`].
fn params_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["repo", "message", "author"],
        "properties": {
            "repo": {"type": "string", "minLength": 1, "description": "The repository, relative to the root."},
            "branch": {"type": "string", "minLength": 1, "description": "The branch; default: the one HEAD names."},
            "message": {"type": "string", "minLength": 1, "description": "The commit message."},
            "author": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "email"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "email": {"type": "string", "minLength": 1}
                }
            },
            "time": {"type": "string", "format": "date-time", "description": "Author and committer time, RFC 3339, whole seconds, from 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z (what a commit holds); default: one second after the base commit."},
            "strip": {"type": "integer", "minimum": 0, "maximum": u32::MAX, "description": "How many leading directories to strip from the patch's names, as `patch -p`; default 1 (git's `a/` and `b/`); 0 for `diff -u` output without prefixes."}
        }
    })
}

/// The typed params and the patch bytes of a request.
fn read_request(env: &Env, request: &PlanRequest) -> Result<(ApplyParams, Vec<u8>), ErrorInfo> {
    let params: ApplyParams = serde_json::from_value(request.params.clone())
        .map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, e.to_string()))?;
    if let Some(extra) = request.inputs.keys().find(|name| *name != PATCH_INPUT) {
        return Err(ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("unknown input {extra:?}; `apply` takes only {PATCH_INPUT:?}"),
        ));
    }
    let digest = request.inputs.get(PATCH_INPUT).ok_or_else(|| {
        ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("input {PATCH_INPUT:?} is required: the digest of the patch in the store"),
        )
    })?;
    let patch = env
        .store
        .read_blob(digest, MAX_PATCH_BYTES)
        .map_err(|e| ErrorInfo::new(e.code(), format!("input {PATCH_INPUT:?}: {e}")))?;
    Ok((params, patch))
}

/// What the plan of a prepared prediction proposes, carrying it for execute; with its
/// preview when `preview`.
fn proposal(mut prepared: Prepared, preview: bool) -> Proposal<Prepared> {
    let preview = preview.then(|| std::mem::take(&mut prepared.prediction_mut().preview));
    let p = prepared.prediction();
    let files = p
        .effects
        .iter()
        .filter(|e| e.effect_type != GIT_COMMIT)
        .filter_map(|e| e.detail.get("path").and_then(Value::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let bytes: u64 = p
        .effects
        .iter()
        .filter_map(|e| e.detail.get("size")?.as_u64())
        .sum();
    let mut recipe = vec![
        RecipeStep {
            op: "git.write_objects".to_owned(),
            args: json!({"repo": p.repo, "tree": p.new_tree, "commit": p.new_commit}),
        },
        RecipeStep {
            op: "git.commit".to_owned(),
            args: json!({
                "repo": p.repo,
                "id": p.new_commit,
                "tree": p.new_tree,
                "parents": [p.base_commit],
                "author": p.author,
                "committer": p.author,
                "time": p.time,
                "message": p.message,
            }),
        },
        RecipeStep {
            op: "git.update_ref".to_owned(),
            args: json!({"repo": p.repo, "ref": p.ref_name, "from": p.base_commit, "to": p.new_commit}),
        },
    ];
    if p.checked_out {
        let paths: Vec<&str> = p
            .effects
            .iter()
            .filter(|e| e.effect_type != GIT_COMMIT)
            .filter_map(|e| e.detail.get("path").and_then(Value::as_str))
            .collect();
        recipe.push(RecipeStep {
            op: "git.update_worktree".to_owned(),
            args: json!({"repo": p.repo, "paths": paths}),
        });
    }
    let state = json!({
        "repo": p.repo,
        "ref": p.ref_name,
        "base_commit": p.base_commit,
        "base_tree": p.base_tree,
        "checked_out": p.checked_out,
        "worktree": p.worktree,
    });
    let intended_effects = p.effects.clone();
    let touches = p.touches.clone();
    let destructive_reasons = p.destructive_reasons.clone();
    let mut proposal = Proposal::new(state, prepared);
    proposal.intended_effects = intended_effects;
    proposal.touches = touches;
    proposal.destructive_reasons = destructive_reasons;
    proposal.estimated_costs = Costs {
        // A commit of a few files takes milliseconds; allow for a cold index read.
        wall_ms: Some(500 + 5 * files),
        bytes_written: Some(bytes),
        files_touched: Some(files),
    };
    proposal.exec_recipe = recipe;
    proposal.preview = preview;
    proposal
}
