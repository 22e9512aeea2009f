//! What the runtime fills in for a mechanism, and what the trait's defaults do: the plan
//! artifact made from a proposal, the default capability scope, and the default recovery of
//! an effect that is one atomic step, including an execution stopped past its point of no
//! return before it applied anything, which is executed again without a fresh force-ack.
//!
//! `put` writes `<name>.txt` under the root; overwriting a file is destructive. Its execute
//! can be told to fail once, right after its point of no return (before or after writing),
//! as a kill at that instant would leave it; the in-process harness serves it.

use std::sync::{Arc, Mutex};

use mechanism_server::protocol::artifact::effect::{Access, Effect, Touch, FS_WRITE};
use mechanism_server::protocol::artifact::kinds::{Determinism, Plan, ResultWitness};
use mechanism_server::protocol::artifact::Artifact;
use mechanism_server::protocol::force_ack::ssh_key::rand_core::OsRng;
use mechanism_server::protocol::force_ack::ssh_key::{Algorithm, PrivateKey};
use mechanism_server::protocol::force_ack::{self, NAMESPACE};
use mechanism_server::protocol::schema;
use mechanism_server::protocol::verbs::{Destructiveness, Example, Operation};
use mechanism_server::protocol::{Digest, ErrorCode};
use mechanism_server::testing::Harness;
use mechanism_server::{
    parse_params, Env, ErrorInfo, ExecContext, Executed, Mechanism, PlanRequest, Proposal,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// How the next execute fails, once.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    /// Past the point of no return, before writing.
    BeforeWriting,
    /// Past the point of no return, after writing.
    AfterWriting,
}

#[derive(Default)]
struct Put {
    fail_once: Arc<Mutex<Option<Failure>>>,
    executions: Arc<Mutex<usize>>,
    /// A proposal whose state is this instead of an object, when set.
    bad_state: Option<Value>,
    /// The params schema instead of the real one, when set.
    params_schema: Option<Value>,
}

#[derive(Deserialize)]
struct Params {
    name: String,
    text: String,
}

impl Params {
    fn path(&self) -> String {
        format!("{}.txt", self.name)
    }
}

impl Mechanism for Put {
    type Prepared = Params;

    fn id(&self) -> &str {
        "put"
    }

    fn version(&self) -> &str {
        "1.2.3"
    }

    fn operations(&self) -> Vec<Operation> {
        vec![Operation {
            name: "put".to_owned(),
            description: "Write <name>.txt.".to_owned(),
            params_schema: self.params_schema.clone().unwrap_or_else(|| {
                json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "text"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]{1,16}$"},
                        "text": {"type": "string"}
                    }
                })
            }),
            inputs: Vec::new(),
            effect_types: vec![FS_WRITE.to_owned()],
            destructive: Destructiveness::Maybe,
            determinism: Determinism::D1,
            examples: vec![Example {
                params: json!({"name": "a", "text": "a"}),
                inputs: None,
            }],
        }]
    }

    fn plan(&self, env: &Env, request: &PlanRequest) -> Result<Proposal<Params>, ErrorInfo> {
        let params: Params = parse_params(&request.params)?;
        let path = params.path();
        let before = std::fs::read(env.root.join(&path))
            .ok()
            .map(|bytes| Digest::of_bytes(&bytes).to_string());
        let state = self
            .bad_state
            .clone()
            .unwrap_or_else(|| json!({ "path": path, "before": before }));
        let mut proposal = Proposal::new(state, params);
        proposal.intended_effects.push(
            Effect::new(FS_WRITE, path.as_str())
                .with("before", before.clone())
                .with(
                    "after",
                    Digest::of_bytes(proposal.prepared.text.as_bytes()).to_string(),
                ),
        );
        proposal.touches.push(Touch {
            resource: path.clone(),
            access: Access::Write,
        });
        if before.is_some() {
            proposal
                .destructive_reasons
                .push(format!("overwrites {path}"));
        }
        proposal.preview = request
            .preview
            .then(|| format!("+{}", proposal.prepared.text));
        Ok(proposal)
    }

    fn execute(
        &self,
        env: &Env,
        plan: &Plan,
        params: Params,
        ctx: &ExecContext,
    ) -> Result<Executed, ErrorInfo> {
        *self.executions.lock().unwrap() += 1;
        ctx.point_of_no_return()?;
        let failure = self.fail_once.lock().unwrap().take();
        let crashed = |when: &str| {
            Err(ErrorInfo::new(
                ErrorCode::ExecutionFailed,
                format!("stopped {when}, as a kill would"),
            ))
        };
        if failure == Some(Failure::BeforeWriting) {
            return crashed("before writing");
        }
        std::fs::write(env.root.join(params.path()), &params.text)
            .map_err(|e| ErrorInfo::new(ErrorCode::ExecutionFailed, e.to_string()))?;
        if failure == Some(Failure::AfterWriting) {
            return crashed("after writing");
        }
        self.executed(plan)
    }

    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool, ErrorInfo> {
        let params: Params = parse_params(&plan.params)?;
        Ok(std::fs::read(env.root.join(params.path())).is_ok_and(|b| b == params.text.as_bytes()))
    }
}

/// An operator key, and the allowed_signers file that trusts it, in a directory of its own.
struct Operator {
    key: PrivateKey,
    dir: tempfile::TempDir,
}

impl Operator {
    fn new() -> Self {
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let line = format!(
            "ops@example.com namespaces=\"{NAMESPACE}\" {}",
            key.public_key().to_openssh().unwrap()
        );
        std::fs::write(dir.path().join("allowed_signers"), line).unwrap();
        Self { key, dir }
    }

    fn serve(&self, mechanism: Put) -> Harness {
        let signers = self.dir.path().join("allowed_signers");
        Harness::start_with(mechanism, |options| {
            options.force_ack_signers = Some(signers);
        })
        .unwrap()
    }

    fn force_ack(&self, plan: &Digest, admission: &Digest) -> Value {
        let nonce = force_ack::random_nonce().unwrap();
        let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
        let mut ack = force_ack::new_unsigned(plan, admission, "ops@example.com", expires, &nonce);
        ack["signature"] = json!(force_ack::sign(&ack, &self.key).unwrap());
        ack
    }
}

fn plan_put(harness: &mut Harness, name: &str, text: &str) -> (Digest, Value) {
    let planned = harness
        .call(
            "plan",
            json!({"operation": "put", "params": {"name": name, "text": text}}),
        )
        .unwrap();
    let hash = planned["plan_hash"].as_str().unwrap().parse().unwrap();
    (hash, planned)
}

#[test]
fn the_runtime_makes_the_plan_artifact_from_the_proposal() {
    let mut harness = Harness::start(Put::default()).unwrap();
    let described = harness.call("describe", json!({})).unwrap();
    // The default scope: every effect type an operation declares, anywhere under the root.
    assert_eq!(
        described["capability_scope"],
        json!([{"capability": "fs.write", "resources": ["**"]}])
    );

    let (hash, planned) = plan_put(&mut harness, "a", "first");
    let artifact = Artifact::from_value(planned["plan"].clone()).unwrap();
    schema::validate_artifact(&artifact).unwrap();
    assert_eq!(artifact.digest(), hash);
    let plan: Plan = artifact.view().unwrap();
    assert_eq!(
        (plan.mechanism.id.as_str(), plan.mechanism.version.as_str()),
        ("put", "1.2.3")
    );
    assert_eq!(plan.operation, "put");
    assert_eq!(plan.params, json!({"name": "a", "text": "first"}));
    assert!(plan.inputs.is_empty());
    assert_eq!(plan.state, json!({"path": "a.txt", "before": null}));
    assert_eq!(plan.determinism, Determinism::D1, "the operation's level");
    assert!(!plan.destructive && plan.destructive_reasons.is_empty());
    assert_eq!(planned["preview"], "+first");

    let admission = harness.admit(&hash).unwrap();
    harness
        .call(
            "execute",
            json!({"plan_hash": hash, "admission": admission}),
        )
        .unwrap();
    let (_, planned) = plan_put(&mut harness, "a", "second");
    let plan: Plan = Artifact::from_value(planned["plan"].clone())
        .unwrap()
        .view()
        .unwrap();
    assert!(plan.destructive, "a reason makes the plan destructive");
    assert_eq!(plan.destructive_reasons, ["overwrites a.txt"]);
    harness.finish().unwrap();
}

#[test]
fn a_proposal_whose_state_is_not_an_object_is_refused_and_nothing_stored() {
    let mechanism = Put {
        bad_state: Some(json!(["not", "an", "object"])),
        ..Put::default()
    };
    let mut harness = Harness::start(mechanism).unwrap();
    let error = harness
        .call(
            "plan",
            json!({"operation": "put", "params": {"name": "a", "text": "x"}}),
        )
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InternalError), "{error}");
    let objects = harness.store().join("objects");
    let stored = walk_files(&objects);
    assert!(stored.is_empty(), "stored {stored:?}");
    harness.finish().unwrap();
}

#[test]
fn a_params_schema_that_does_not_compile_fails_plan_and_declare_cost_not_describe() {
    let mut good = Harness::start(Put::default()).unwrap();
    let planned = good
        .call(
            "plan",
            json!({"operation": "put", "params": {"name": "a", "text": "x"}}),
        )
        .unwrap();
    let broken = Put {
        params_schema: Some(json!({"type": "nonsense"})),
        ..Put::default()
    };
    let (root, store) = (good.root(), good.store());
    let mut harness = Harness::start_with(broken, |options| {
        options.root = root;
        options.store = store;
    })
    .unwrap();
    let described = harness.call("describe", json!({})).unwrap();
    assert_eq!(
        described["operations"][0]["params_schema"],
        json!({"type": "nonsense"})
    );
    let error = harness
        .call(
            "plan",
            json!({"operation": "put", "params": {"name": "a", "text": "x"}}),
        )
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InternalError), "{error}");
    assert!(
        error
            .to_string()
            .contains("params schema of operation \"put\""),
        "{error}"
    );
    let error = harness
        .call("declare_cost", json!({"plan_hash": planned["plan_hash"]}))
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InternalError), "{error}");
    // The failure is kept: a second call answers the same.
    let again = harness
        .call("declare_cost", json!({"plan_hash": planned["plan_hash"]}))
        .unwrap_err();
    assert_eq!(again.to_string(), error.to_string());
    harness.finish().unwrap();
    good.finish().unwrap();
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_files(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A destructive plan whose execute passed its point of no return (the force-ack's nonce
/// claimed) and stopped before writing is executed again by the next execute, without a
/// fresh force-ack, and recorded with the one it was approved with.
#[test]
fn an_execute_stopped_past_its_point_of_no_return_before_its_effect_is_executed_again() {
    let operator = Operator::new();
    let mechanism = Put::default();
    let fail_once = Arc::clone(&mechanism.fail_once);
    let executions = Arc::clone(&mechanism.executions);
    let mut harness = operator.serve(mechanism);
    let file = harness.root().join("a.txt");
    std::fs::write(&file, "old").unwrap();
    let (hash, _) = plan_put(&mut harness, "a", "new");
    let admission = harness.admit(&hash).unwrap();
    let ack = operator.force_ack(&hash, &admission);

    *fail_once.lock().unwrap() = Some(Failure::BeforeWriting);
    let execute = json!({"plan_hash": hash, "admission": admission, "force_ack": ack});
    let error = harness.call("execute", execute.clone()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ExecutionFailed), "{error}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old");

    // The approval is spent and nothing was applied: the execution is rolled forward,
    // whether or not the force-ack comes again.
    let result = harness
        .call(
            "execute",
            json!({"plan_hash": hash, "admission": admission}),
        )
        .unwrap();
    assert_eq!(result["result"]["status"], "success", "{result}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
    assert_eq!(*executions.lock().unwrap(), 2);
    let witness = witness_of(&result);
    let ack_digest = Artifact::from_value(ack).unwrap().digest();
    assert_eq!(witness.predicate.force_ack_hash, Some(ack_digest));
    assert_eq!(witness.predicate.admission_hash, admission);

    // Done: the same request returns the recorded result and applies nothing.
    let again = harness.call("execute", execute).unwrap();
    assert_eq!(again["result_hash"], result["result_hash"]);
    assert_eq!(*executions.lock().unwrap(), 2);
    harness.finish().unwrap();
}

/// An execute stopped past its point of no return once its one atomic step was done is
/// finished by the default recovery (the effect still holds): the next execute records
/// the result without executing again.
#[test]
fn an_execute_stopped_after_its_effect_is_finished_by_the_default_recovery() {
    let mechanism = Put::default();
    let fail_once = Arc::clone(&mechanism.fail_once);
    let executions = Arc::clone(&mechanism.executions);
    let mut harness = Harness::start(mechanism).unwrap();
    let (hash, _) = plan_put(&mut harness, "b", "text");
    let admission = harness.admit(&hash).unwrap();
    let execute = json!({"plan_hash": hash, "admission": admission});

    *fail_once.lock().unwrap() = Some(Failure::AfterWriting);
    let error = harness.call("execute", execute.clone()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ExecutionFailed), "{error}");
    let status = harness.call("status", json!({"plan_hash": hash})).unwrap();
    assert_eq!(status["state"], "failed", "{status}");

    let result = harness.call("execute", execute).unwrap();
    assert_eq!(result["result"]["status"], "success", "{result}");
    assert_eq!(
        *executions.lock().unwrap(),
        1,
        "recovered, not executed again"
    );
    let status = harness.call("status", json!({"plan_hash": hash})).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["result_hash"], result["result_hash"]);
    harness.finish().unwrap();
}

fn witness_of(result: &Value) -> ResultWitness {
    Artifact::from_value(result["witness"].clone())
        .unwrap()
        .view()
        .unwrap()
}
