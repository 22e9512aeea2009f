//! The five verbs, registered on a jsonrpsee `RpcModule`. Blocking work (git, the store)
//! runs on tokio's blocking pool so `status` keeps answering.

use std::sync::Arc;

use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use protocol::artifact::effect::Access;
use protocol::artifact::kinds::{CostWitness, Plan};
use protocol::artifact::Artifact;
use protocol::jsonrpc::MAX_BATCH_ENTRIES;
use protocol::schema::{self, SchemaName};
use protocol::store::{Provenance, StoreError};
use protocol::verbs::{
    self, DeclareCostParams, DeclareCostResult, DescribeParams, DescribeResult, ExecuteParams,
    Limits, PlanParams, PlanResult, PlanState, StatusParams, StatusResult, MAX_INLINE_BYTES,
};
use protocol::{ErrorCode, ErrorInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::connection::SCOPE;
use super::{execute, rpc_error, ServerError, State};
use crate::mechanism::{Mechanism, PlanRequest};

type RpcResult = Result<Value, ErrorInfo>;

/// Registers every verb.
pub(super) fn register<M: Mechanism>(state: State<M>) -> Result<RpcModule<State<M>>, ServerError> {
    let mut module = RpcModule::new(state);
    // The verbs answer `ErrorInfo`; it becomes a JSON-RPC error object here, and only here.
    let registered = [
        module
            .register_method(verbs::DESCRIBE, |params, state, _| {
                describe(&params, state).map_err(rpc_error)
            })
            .map(|_| ()),
        module
            .register_async_method(verbs::PLAN, |params, state, _| async move {
                blocking(state, params, plan).await.map_err(rpc_error)
            })
            .map(|_| ()),
        module
            .register_async_method(verbs::DECLARE_COST, |params, state, _| async move {
                blocking(state, params, declare_cost)
                    .await
                    .map_err(rpc_error)
            })
            .map(|_| ()),
        module
            .register_async_method(verbs::EXECUTE, |params, state, _| async move {
                execute(state, params).await.map_err(rpc_error)
            })
            .map(|_| ()),
        module
            .register_method(verbs::STATUS, |params, state, _| {
                status(&params, state).map_err(rpc_error)
            })
            .map(|_| ()),
    ];
    for result in registered {
        result.map_err(|e| ServerError::Config(e.to_string()))?;
    }
    Ok(module)
}

/// `execute`, on the blocking pool once its params hold.
async fn execute<M: Mechanism>(state: Arc<State<M>>, params: Params<'static>) -> RpcResult {
    let scope = SCOPE.try_with(Clone::clone).ok();
    require_admission(&params)?;
    let parsed = parse(&params)?;
    tokio::task::spawn_blocking(move || execute::execute(&state, parsed, scope))
        .await
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?
}

/// The params of a verb, with the schema they must satisfy.
pub(super) trait VerbParams: DeserializeOwned {
    /// `protocol/schemas/verbs/<verb>.params.json`.
    const SCHEMA: SchemaName;
}

impl VerbParams for DescribeParams {
    const SCHEMA: SchemaName = SchemaName::DescribeParams;
}
impl VerbParams for PlanParams {
    const SCHEMA: SchemaName = SchemaName::PlanParams;
}
impl VerbParams for DeclareCostParams {
    const SCHEMA: SchemaName = SchemaName::DeclareCostParams;
}
impl VerbParams for ExecuteParams {
    const SCHEMA: SchemaName = SchemaName::ExecuteParams;
}
impl VerbParams for StatusParams {
    const SCHEMA: SchemaName = SchemaName::StatusParams;
}

/// Parses params into `T`, answering `INVALID_PARAMS` with the reason.
///
/// By name and valid against the verb's schema, so an unknown field is an error rather than
/// ignored. I-JSON (no duplicate key, no unsafe integer) was already required of the whole
/// frame by the connection, which alone feeds this module, so it is not checked twice.
pub(super) fn parse<T: VerbParams>(params: &Params<'_>) -> Result<T, ErrorInfo> {
    let invalid = |reason: String| ErrorInfo::new(ErrorCode::InvalidParams, reason);
    let value = match params.as_str() {
        None => Value::Object(serde_json::Map::new()),
        Some(raw) => serde_json::from_str(raw).map_err(|e| invalid(format!("params: {e}")))?,
    };
    schema::validate(T::SCHEMA, &value).map_err(|e| invalid(e.to_string()))?;
    // By reference: taking the tree apart costs more than reading it.
    T::deserialize(&value).map_err(|e| invalid(e.to_string()))
}

/// `ADMISSION_REQUIRED` for an `execute` without an `admission`: nothing runs unadmitted,
/// and the answer says so rather than only that a param is missing.
fn require_admission(params: &Params<'_>) -> Result<(), ErrorInfo> {
    let missing = match params.as_str() {
        None => true,
        Some(raw) => serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v.as_object().map(|o| !o.contains_key("admission")))
            .unwrap_or(false),
    };
    if missing {
        return Err(ErrorInfo::new(
            ErrorCode::AdmissionRequired,
            "execute needs `admission`: the digest of the AdmissionWitness that admitted the plan",
        ));
    }
    Ok(())
}

pub(super) fn to_value<T: Serialize>(value: &T) -> RpcResult {
    serde_json::to_value(value).map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))
}

/// Runs a blocking verb on the blocking pool.
async fn blocking<M, P, F>(state: Arc<State<M>>, params: Params<'static>, verb: F) -> RpcResult
where
    M: Mechanism,
    P: VerbParams + Send + 'static,
    F: FnOnce(&State<M>, P) -> RpcResult + Send + 'static,
{
    let parsed: P = parse(&params)?;
    tokio::task::spawn_blocking(move || verb(&state, parsed))
        .await
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?
}

fn describe<M: Mechanism>(
    params: &Params<'_>,
    state: &State<M>,
) -> Result<Box<RawValue>, ErrorInfo> {
    let params: DescribeParams = parse(params)?;
    let Some(version) = verbs::choose_version(params.protocol_versions.as_deref()) else {
        return Err(ErrorInfo::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "this server speaks {}; offered {:?}",
                verbs::PROTOCOL_VERSION,
                params.protocol_versions.unwrap_or_default()
            ),
        ));
    };
    let mut described = state
        .described
        .lock()
        .map_err(|_| ErrorInfo::new(ErrorCode::InternalError, "describe's cache is poisoned"))?;
    if let Some((_, result)) = described.iter().find(|(v, _)| *v == version) {
        return Ok(result.clone());
    }
    let result = serde_json::value::to_raw_value(&DescribeResult {
        protocol_version: version.to_owned(),
        mechanism: state.mechanism_ref(),
        operations: state.operations.clone(),
        capability_scope: state.mechanism.capability_scope(),
        limits: Limits {
            max_message_bytes: state.max_message_bytes as u64,
            max_inline_bytes: MAX_INLINE_BYTES as u64,
            max_batch_entries: Some(MAX_BATCH_ENTRIES as u64),
        },
    })
    .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?;
    described.push((version, result.clone()));
    Ok(result)
}

/// Maps a store failure on an input or plan to its protocol code.
pub(super) fn store_error(what: &str, err: &StoreError) -> ErrorInfo {
    ErrorInfo::new(err.code(), format!("{what}: {err}"))
}

fn plan<M: Mechanism>(state: &State<M>, params: PlanParams) -> RpcResult {
    let Some(validator) = state.validator(&params.operation)? else {
        let known: Vec<&str> = state.operations.iter().map(|o| o.name.as_str()).collect();
        return Err(ErrorInfo::new(
            ErrorCode::UnknownOperation,
            format!(
                "no operation {:?}; this mechanism has {known:?}",
                params.operation
            ),
        ));
    };
    let inline = serde_json::to_vec(&params.params).map_or(usize::MAX, |v| v.len());
    if inline > MAX_INLINE_BYTES {
        return Err(ErrorInfo::new(
            ErrorCode::ArtifactRequired,
            format!("params are {inline} bytes; payloads over {MAX_INLINE_BYTES} bytes go into the store and travel by digest"),
        ));
    }
    validator
        .validate(&params.params)
        .map_err(|e| ErrorInfo::new(ErrorCode::InvalidParams, e.to_string()))?;
    for (name, digest) in &params.inputs {
        state
            .env
            .store
            .verify(digest)
            .map_err(|e| store_error(&format!("input {name:?}"), &e))?;
    }
    let request = PlanRequest {
        operation: params.operation,
        params: params.params,
        inputs: params.inputs,
        preview: true,
    };
    let (plan, preview, _) = propose(state, &request, ErrorInfo::from)?;
    let artifact = Artifact::from_typed(&plan)
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?;
    let provenance = Provenance::new(format!("mechanism-server {}", state.mechanism.id()))
        .with_derived_from(request.inputs.values().copied());
    let plan_hash = state
        .env
        .store
        .put_artifact(&artifact, &provenance)
        .map_err(|e| store_error("storing the plan", &e))?;
    to_value(&PlanResult {
        plan_hash,
        plan: artifact.into_value(),
        preview,
    })
}

/// The mechanism's proposal for `request`, made the plan artifact (`Proposal::into_plan`)
/// with the operation's determinism unless the proposal says otherwise. Returns the plan, its preview and what the mechanism
/// prepared for execute.
/// A refusal of the mechanism's is answered as `on_refusal` maps it.
pub(super) fn propose<M: Mechanism>(
    state: &State<M>,
    request: &PlanRequest,
    on_refusal: impl FnOnce(ErrorInfo) -> ErrorInfo,
) -> Result<(Plan, Option<String>, M::Prepared), ErrorInfo> {
    let proposal = state
        .mechanism
        .plan(&state.env, request)
        .map_err(on_refusal)?;
    if !proposal.state.is_object() {
        return Err(ErrorInfo::new(
            ErrorCode::InternalError,
            "the mechanism proposed a plan whose state is not a JSON object",
        ));
    }
    let operation_determinism = state
        .operations
        .iter()
        .find(|op| op.name == request.operation)
        .map(|op| op.determinism);
    let Some(determinism) = proposal.determinism.or(operation_determinism) else {
        return Err(ErrorInfo::new(
            ErrorCode::UnknownOperation,
            format!("no operation {:?}", request.operation),
        ));
    };
    let (plan, preview, prepared) = proposal.into_plan(state.mechanism_ref(), request, determinism);
    refuse_store_changes(state, &plan)?;
    Ok((plan, preview, prepared))
}

/// Refuses a plan that would change the object store, when the store lies inside the root:
/// a patch to `.mechanism/nonces/...` must not free a spent force-ack.
fn refuse_store_changes<M: Mechanism>(state: &State<M>, plan: &Plan) -> Result<(), ErrorInfo> {
    let Some(store) = &state.store_location else {
        return Ok(());
    };
    let changed = plan
        .intended_effects
        .iter()
        .map(|e| e.resource.as_str())
        .chain(
            plan.touches
                .iter()
                .filter(|t| t.access != Access::Read)
                .map(|t| t.resource.as_str()),
        );
    for resource in changed {
        if store.contains(resource) {
            return Err(ErrorInfo::new(
                ErrorCode::PathRefused,
                format!(
                    "{resource:?} lies in the object store ({:?} under the root), which no plan may change",
                    store.resource
                ),
            ));
        }
    }
    Ok(())
}

/// Loads a plan this mechanism issued, by hash.
pub(super) fn load_plan<M: Mechanism>(
    state: &State<M>,
    plan_hash: &protocol::Digest,
) -> Result<Plan, ErrorInfo> {
    let artifact = state
        .env
        .store
        .get_artifact_shared(plan_hash)
        .map_err(|e| match e {
            StoreError::NotFound(_) => ErrorInfo::new(
                ErrorCode::UnknownPlan,
                format!("no plan {plan_hash} in the store"),
            ),
            // An intact object that is not JSON (a patch blob): not a plan either.
            StoreError::Artifact { .. } | StoreError::NotCanonical(_) => ErrorInfo::new(
                ErrorCode::UnknownPlan,
                format!("{plan_hash} is not a plan: {e}"),
            ),
            other => store_error("loading the plan", &other),
        })?;
    let plan: Plan = artifact.view().map_err(|e| {
        ErrorInfo::new(
            ErrorCode::UnknownPlan,
            format!("{plan_hash} is not a plan: {e}"),
        )
    })?;
    if plan.mechanism != state.mechanism_ref() {
        return Err(ErrorInfo::new(
            ErrorCode::UnknownPlan,
            format!(
                "{plan_hash} is a plan of {} {}, not of this mechanism",
                plan.mechanism.id, plan.mechanism.version
            ),
        ));
    }
    Ok(plan)
}

fn declare_cost<M: Mechanism>(state: &State<M>, params: DeclareCostParams) -> RpcResult {
    let plan = load_plan(state, &params.plan_hash)?;
    // A plan of an operation whose params schema does not compile was never validated here.
    state.validator(&plan.operation)?;
    let witness = CostWitness {
        plan_hash: params.plan_hash,
        costs: plan.estimated_costs,
        basis: "the plan's own estimate, from the size of its effects".to_owned(),
    };
    let artifact = Artifact::from_typed(&witness)
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?;
    let provenance = Provenance::new(format!("mechanism-server {}", state.mechanism.id()))
        .with_derived_from([params.plan_hash]);
    let cost_witness_hash = state
        .env
        .store
        .put_artifact(&artifact, &provenance)
        .map_err(|e| store_error("storing the cost witness", &e))?;
    to_value(&DeclareCostResult {
        cost_witness: artifact.into_value(),
        cost_witness_hash,
    })
}

fn status<M: Mechanism>(params: &Params<'_>, state: &State<M>) -> RpcResult {
    let params: StatusParams = parse(params)?;
    if let Some(progress) = state
        .running
        .lock()
        .ok()
        .and_then(|running| running.get(&params.plan_hash).cloned())
    {
        return to_value(&StatusResult {
            state: PlanState::Running,
            result_hash: None,
            progress,
        });
    }
    if let Some(record) = state.records.get(&params.plan_hash) {
        return to_value(&StatusResult {
            state: if record.succeeded {
                PlanState::Succeeded
            } else {
                PlanState::Failed
            },
            result_hash: Some(record.result),
            progress: None,
        });
    }
    // Only a plan of this mechanism is "planned": any other object, or a corrupt one, is
    // answered as load_plan answers execute. A plan checked once stays one: it is immutable.
    if !state.known_plans.contains(&params.plan_hash) {
        load_plan(state, &params.plan_hash)?;
        state.known_plans.insert(params.plan_hash);
    }
    to_value(&StatusResult {
        state: PlanState::Planned,
        result_hash: None,
        progress: None,
    })
}
