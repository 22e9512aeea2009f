//! `terraform_plan_apply` as a [`Mechanism`]: `plan` runs `terraform plan` into a private
//! plan file and proposes its changes; `execute` applies that very file, which the
//! runtime's re-plan made and found to give the admitted plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mechanism_server::{
    parse_params, partly_applied, CheckState, Env, ErrorInfo, ExecContext, Executed, Mechanism,
    PlanRequest, Proposal, StateCheck,
};
use protocol::artifact::effect::{Access, Effect, Touch};
use protocol::artifact::kinds::{Costs, Determinism, Plan, RecipeStep, ResultArtifact};
use protocol::artifact::Artifact;
use protocol::verbs::{Destructiveness, Example, Operation};
use protocol::ErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::applied::ApplyLog;
use crate::cli::Terraform;
use crate::error::TerraformError;
use crate::opened::Opened;
use crate::paths::{self, ModuleDir};
use crate::plan_json::{Kind, PlanJson};
use crate::private::{PlanFile, Private};
use crate::state::StateFacts;

/// The mechanism id.
pub const ID: &str = "terraform_plan_apply";
/// The operation that converges the module's resources on its configuration.
pub const APPLY: &str = "apply";
/// The operation that destroys every resource of the module.
pub const DESTROY: &str = "destroy";

/// Plans a terraform root module and applies exactly that plan.
#[derive(Debug, Default, Clone)]
pub struct TerraformPlanApply {
    /// The terraform executable; `None`: [`crate::TERRAFORM_ENV`], else `terraform` on `PATH`.
    terraform: Option<PathBuf>,
    /// Where `init` finds providers that are not built in; `None`: nowhere (an empty
    /// directory of the private area).
    plugin_dir: Option<PathBuf>,
}

impl TerraformPlanApply {
    /// The mechanism running the terraform [`crate::TERRAFORM_ENV`] names, else `terraform` on
    /// `PATH`.
    pub const fn new() -> Self {
        Self {
            terraform: None,
            plugin_dir: None,
        }
    }

    /// The mechanism running the terraform executable at `program`.
    pub fn with_terraform(program: impl Into<PathBuf>) -> Self {
        Self {
            terraform: Some(program.into()),
            plugin_dir: None,
        }
    }

    /// The same mechanism, with `init` finding providers in `dir` (a filesystem mirror or
    /// plugin cache the operator keeps, laid out as `terraform init -plugin-dir` reads it);
    /// nothing is ever downloaded.
    pub fn with_plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dir = Some(dir.into());
        self
    }

    /// The private area, and the module `params` name, locked and initialised.
    fn open(&self, env: &Env, params: &Params) -> Result<(Private, Opened), TerraformError> {
        check_workspace(&params.terraform_workspace)?;
        let module = paths::resolve(&env.root, &params.dir)?;
        let private = Private::open(env.store.root())?;
        let terraform = Terraform::new(
            self.terraform.as_deref(),
            self.plugin_dir.as_deref(),
            &private,
            &module.path,
            &params.terraform_workspace,
        );
        let opened = Opened::open(&env.root, &private, module, terraform)?;
        Ok((private, opened))
    }
}

/// The params of both operations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    dir: String,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    #[serde(default = "default_workspace")]
    terraform_workspace: String,
}

fn default_workspace() -> String {
    "default".to_owned()
}

/// What the re-plan hands to execute: the module, locked until execute ends, and the plan
/// file.
pub struct Prepared {
    opened: Opened,
    plan_file: PlanFile,
    state_resource: String,
}

impl CheckState for TerraformPlanApply {
    fn check_state(
        &self,
        root: &Path,
        plan: &Plan,
        result: Option<&ResultArtifact>,
    ) -> Vec<StateCheck> {
        crate::check::checks(root, plan, result)
    }
}

impl Mechanism for TerraformPlanApply {
    type Prepared = Prepared;

    fn id(&self) -> &str {
        ID
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn operations(&self) -> Vec<Operation> {
        let operation = |name: &str, description: &str| Operation {
            name: name.to_owned(),
            description: description.to_owned(),
            params_schema: params_schema(),
            inputs: vec![],
            effect_types: Kind::ALL.map(|k| k.effect_type().to_owned()).to_vec(),
            destructive: Destructiveness::Maybe,
            // The plan reproduces; what apply makes (ids) differs from run to run.
            determinism: Determinism::D1,
            examples: vec![Example {
                params: json!({"dir": "."}),
                inputs: None,
            }],
        };
        vec![
            operation(
                APPLY,
                "Plan the terraform root module `dir` (relative to the root) and apply exactly \
                 that plan; only providers built into terraform, never a download.",
            ),
            operation(DESTROY, "Plan destroying every resource of the root module `dir` and apply exactly that plan."),
        ]
    }

    fn plan(&self, env: &Env, request: &PlanRequest) -> Result<Proposal<Prepared>, ErrorInfo> {
        let destroy = match request.operation.as_str() {
            APPLY => false,
            DESTROY => true,
            other => {
                return Err(ErrorInfo::new(
                    ErrorCode::UnknownOperation,
                    format!("unknown operation {other:?}"),
                ))
            }
        };
        let params: Params = parse_params(&request.params)?;
        let vars = var_args(&params.vars)?;
        let (private, mut opened) = self.open(env, &params)?;
        let plan_file = private.plan_file();
        let before = opened.retrying_init(&env.root, |terraform| {
            let before = StateFacts::read(&terraform.state_pull()?)?;
            terraform.plan(plan_file.path(), &vars, destroy)?;
            Ok(before)
        })?;
        let shown = PlanJson::read(&opened.terraform.show(plan_file.path())?)?;
        refuse_sensitive_params(&params.vars, &shown.sensitive_variables)?;

        let module = opened.module.clone();
        let state_resource = module.resource(&state_file(&params.terraform_workspace));
        let facts = json!({
            "dir": module.relative,
            "workspace": params.terraform_workspace,
            "terraform_version": shown.terraform_version,
            "configuration": opened.configuration.to_string(),
            "state": before.to_json(),
            // Their values come from TF_VAR_* in the mechanism's environment, never from
            // params, and appear nowhere in the plan.
            "sensitive_variables_from_environment": shown.sensitive_variables,
        });
        let prepared = Prepared {
            opened,
            plan_file,
            state_resource: state_resource.clone(),
        };
        let mut proposal = Proposal::new(facts, prepared);
        propose_changes(&mut proposal, &module, &shown);
        let access = if shown.changes.is_empty() {
            Access::Read
        } else {
            Access::Write
        };
        proposal.touches.push(Touch {
            resource: state_resource,
            access,
        });
        proposal.estimated_costs = Costs {
            wall_ms: Some(2000 + 500 * shown.changes.len() as u64),
            bytes_written: None,
            files_touched: Some(1),
        };
        proposal.exec_recipe = vec![RecipeStep {
            op: "terraform.apply".to_owned(),
            args: json!({"dir": module.relative, "workspace": params.terraform_workspace, "destroy": destroy}),
        }];
        proposal.preview = request.preview.then(|| preview(&shown));
        Ok(proposal)
    }

    fn execute(
        &self,
        _env: &Env,
        plan: &Plan,
        prepared: Prepared,
        ctx: &ExecContext,
    ) -> Result<Executed, ErrorInfo> {
        ctx.progress(0, 1, "terraform apply");
        // terraform apply is not atomic and cannot be undone: past this point it runs to
        // its end, and a failure is reported, never rolled back.
        ctx.point_of_no_return()?;
        let terraform = &prepared.opened.terraform;
        let (log, failed) = terraform.apply(prepared.plan_file.path())?;
        if failed {
            return Err(apply_failed(plan, &log));
        }
        let after = StateFacts::read(&terraform.state_pull()?)?;
        ctx.progress(1, 1, "applied");
        Ok(executed(plan, &after, &prepared.state_resource))
    }

    /// Whether the state is still the one the recorded execution of `plan` left.
    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool, ErrorInfo> {
        let Some(recorded) = recorded_state_digest(env, plan)? else {
            return Ok(false);
        };
        let params: Params = parse_params(&plan.params)?;
        let (_, mut opened) = self.open(env, &params)?;
        let now = opened.retrying_init(&env.root, |t| StateFacts::read(&t.state_pull()?))?;
        Ok(now.digest.map(|d| d.to_string()) == Some(recorded))
    }

    /// An interrupted apply: nothing applied while the state is the planned one; finished
    /// once the same request plans no change on the state it left; otherwise partly
    /// applied, which terraform cannot roll back, so it is reported, never recorded as done.
    fn recover(&self, env: &Env, plan: &Plan) -> Result<Option<Executed>, ErrorInfo> {
        let params: Params = parse_params(&plan.params)?;
        let (_, mut opened) = self.open(env, &params)?;
        let now = opened.retrying_init(&env.root, |t| StateFacts::read(&t.state_pull()?))?;
        if now.to_json() == plan.state["state"] {
            return Ok(None);
        }
        let module = opened.module.clone();
        // The plan below takes the module's lock itself.
        drop(opened);
        let request = PlanRequest {
            operation: plan.operation.clone(),
            params: plan.params.clone(),
            inputs: BTreeMap::new(),
            preview: false,
        };
        let again = self.plan(env, &request)?;
        let lineage = &plan.state["state"]["lineage"];
        let same_lineage = lineage.is_null() || *lineage == json!(now.lineage);
        if again.intended_effects.is_empty() && same_lineage {
            let resource = module.resource(&state_file(&params.terraform_workspace));
            return Ok(Some(executed(plan, &now, &resource)));
        }
        Err(TerraformError::ExecutionFailed(
            "an interrupted terraform apply left the state partly changed; terraform cannot \
             roll back, and the next plan converges from there"
                .to_owned(),
        )
        .into())
    }
}

/// What executing `plan` did, given the state `after` it left at `state_resource`.
fn executed(plan: &Plan, after: &StateFacts, state_resource: &str) -> Executed {
    let facts = json!({"state": after.to_json(), "outputs": after.outputs});
    let subjects = after
        .digest
        .iter()
        .map(|d| {
            let digest = BTreeMap::from([("sha256".to_owned(), d.hex())]);
            (state_resource.to_owned(), digest)
        })
        .collect();
    Executed {
        effects_applied: plan.intended_effects.clone(),
        evidence: facts.clone(),
        subjects,
        state_before: plan.state.clone(),
        state_after: facts,
    }
}

/// A failed apply: EXECUTION_FAILED naming what terraform said, carrying the planned changes
/// it completed (they stay: terraform cannot roll back) and naming any it left half done.
fn apply_failed(plan: &Plan, log: &ApplyLog) -> ErrorInfo {
    let actions = |effect: &Effect| -> Vec<String> {
        effect
            .detail
            .get("actions")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default()
    };
    let address = |effect: &Effect| {
        effect
            .detail
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let landed: Vec<Effect> = plan
        .intended_effects
        .iter()
        .filter(|e| log.landed(&address(e), &actions(e)))
        .cloned()
        .collect();
    let half: Vec<String> = plan
        .intended_effects
        .iter()
        .filter(|e| log.partly_landed(&address(e), &actions(e)))
        .map(address)
        .collect();
    let mut message = format!(
        "terraform apply failed and cannot roll back: {} of {} planned change(s) landed and \
         stay, recorded in the state; the next plan converges from there",
        landed.len(),
        plan.intended_effects.len()
    );
    if !half.is_empty() {
        message.push_str(&format!(
            "; half done (destroyed, not created again): {}",
            half.join(", ")
        ));
    }
    if !log.errors.is_empty() {
        message.push_str(&format!(": {}", log.errors.join("; ")));
    }
    partly_applied(ErrorInfo::new(ErrorCode::ExecutionFailed, message), landed)
}

/// The state digest the recorded successful execution of `plan` reported, if any.
fn recorded_state_digest(env: &Env, plan: &Plan) -> Result<Option<String>, ErrorInfo> {
    let internal = |e: String| ErrorInfo::new(ErrorCode::InternalError, e);
    let hash = Artifact::from_typed(plan)
        .map_err(|e| internal(e.to_string()))?
        .digest();
    let Some(record) = env
        .store
        .result_record(&hash)
        .map_err(|e| internal(e.to_string()))?
    else {
        return Ok(None);
    };
    let result: ResultArtifact = env
        .store
        .get_artifact(&record.result)
        .map_err(|e| internal(e.to_string()))?
        .view()
        .map_err(|e| internal(e.to_string()))?;
    Ok(result.evidence["state"]["digest"]
        .as_str()
        .map(str::to_owned))
}

/// Adds one effect per change, and a destructive reason per destroyed resource.
fn propose_changes(proposal: &mut Proposal<Prepared>, module: &ModuleDir, shown: &PlanJson) {
    for change in &shown.changes {
        let effect = Effect::new(change.kind.effect_type(), module.resource(&change.address))
            .with("address", change.address.clone())
            .with("actions", change.actions.clone())
            .with("resource_type", change.resource_type.clone())
            .with("provider", change.provider.clone())
            .with("action_reason", change.action_reason.clone())
            .with("before", change.before.clone())
            .with("after", change.after.clone());
        let resource = change.resource_type.is_some();
        let access = match change.kind {
            Kind::Delete | Kind::Replace => Access::Delete,
            Kind::Create | Kind::Update => Access::Write,
        };
        match change.kind {
            Kind::Delete if resource => {
                let reason = format!("destroys {}", change.address);
                proposal.destructive_reasons.push(reason);
            }
            Kind::Replace if resource => {
                let reason = format!(
                    "replaces {}: destroys it and creates it again",
                    change.address
                );
                proposal.destructive_reasons.push(reason);
            }
            _ => {}
        }
        proposal.intend(effect, access);
    }
}

/// terraform's summary: one line per change, then the counts.
fn preview(shown: &PlanJson) -> String {
    let mut text = String::new();
    for change in &shown.changes {
        text.push_str(&format!("{} {}\n", change.kind.sign(), change.address));
    }
    let resources = shown.changes.iter().filter(|c| c.resource_type.is_some());
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for c in resources {
        match c.kind {
            Kind::Create => add += 1,
            Kind::Update => change += 1,
            Kind::Delete => destroy += 1,
            Kind::Replace => {
                add += 1;
                destroy += 1;
            }
        }
    }
    if shown.changes.is_empty() {
        text.push_str("No changes.\n");
    } else {
        text.push_str(&format!(
            "{add} to add, {change} to change, {destroy} to destroy.\n"
        ));
    }
    text
}

/// The local state file of `workspace`, relative to the module.
pub fn state_file(workspace: &str) -> String {
    if workspace == "default" {
        "terraform.tfstate".to_owned()
    } else {
        format!("terraform.tfstate.d/{workspace}/terraform.tfstate")
    }
}

/// `NAME=VALUE` for each variable; names must be identifiers, values strings, numbers or
/// booleans.
fn var_args(vars: &BTreeMap<String, Value>) -> Result<Vec<String>, TerraformError> {
    let invalid = |why: String| TerraformError::InvalidParams(why);
    vars.iter()
        .map(|(name, value)| {
            if !is_identifier(name) {
                return Err(invalid(format!(
                    "variable name {name:?} is not an identifier"
                )));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(invalid(format!(
                        "variable {name}: only strings, numbers and booleans"
                    )))
                }
            };
            Ok(format!("{name}={text}"))
        })
        .collect()
}

/// Refuses a value for a sensitive variable in params: params are stored in the plan, in
/// clear, so a secret must come from `TF_VAR_<name>` in the mechanism's environment.
fn refuse_sensitive_params(
    vars: &BTreeMap<String, Value>,
    sensitive: &[String],
) -> Result<(), TerraformError> {
    match vars.keys().find(|name| sensitive.contains(name)) {
        Some(name) => Err(TerraformError::InvalidParams(format!(
            "variable {name:?} is sensitive: params are stored in the plan in clear, so its \
             value must come from TF_VAR_{name} in the mechanism's environment"
        ))),
        None => Ok(()),
    }
}

/// A terraform identifier: a letter or `_`, then letters, digits, `_` and `-`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A workspace name is one safe path component (it names a state directory).
fn check_workspace(name: &str) -> Result<(), TerraformError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TerraformError::InvalidParams(format!(
            "terraform_workspace {name:?}: letters, digits, `_` and `-` only, at most 64"
        )))
    }
}

/// The JSON Schema of [`Params`].
fn params_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["dir"],
        "properties": {
            "dir": {"type": "string", "minLength": 1, "description": "The root module, relative to the root."},
            "vars": {
                "type": "object",
                "description": "Input variables; sensitive ones come from TF_VAR_* in the environment instead.",
                "additionalProperties": {"type": ["string", "number", "boolean"]}
            },
            "terraform_workspace": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "The terraform workspace; default: default."}
        }
    })
}
