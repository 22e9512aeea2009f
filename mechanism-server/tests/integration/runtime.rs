//! The server runtime under concurrency, in process: `status` and `describe` answer while an
//! `execute` runs, `progress` notifications flow during an execute, `$/cancelRequest` stops
//! an execute before anything is applied, a second execute of a running plan is `BUSY`, and
//! at EOF the server finishes in-flight work, writes its replies, then returns `Ok`.
//!
//! A purpose-built mechanism, `slow`, blocks inside `execute` until the test releases it
//! (checking for cancellation all the while), so every "while it runs" is certain rather than
//! a race against a fast mechanism. The server runs in process through
//! `mechanism_server::testing::Harness`, over two pipes, spoken to in line-delimited JSON.
//! Every wait has a timeout that fails the test with a message; the mechanism gives up by
//! itself after [`MECHANISM_GIVES_UP`], so nothing can hang forever.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mechanism_server::protocol::artifact::effect::{Access, Effect, Touch, FS_WRITE};
use mechanism_server::protocol::artifact::kinds::{Costs, Determinism, Grant, Plan, RecipeStep};
use mechanism_server::protocol::artifact::Artifact;
use mechanism_server::protocol::schema::{self, SchemaName};
use mechanism_server::protocol::verbs::{Destructiveness, Example, Operation};
use mechanism_server::protocol::{Digest, ErrorCode};
use mechanism_server::testing::Harness;
use mechanism_server::{
    parse_params, Env, ErrorInfo, ExecContext, Executed, Mechanism, PlanRequest, Proposal,
};
use serde_json::{json, Value};

/// How long the test mechanism waits for its release before failing on its own; longer
/// than the harness's timeout, so a stuck test fails on the test's message, not the
/// mechanism's.
const MECHANISM_GIVES_UP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The test mechanism
// ---------------------------------------------------------------------------------------

/// What the test controls and observes of the `slow` mechanism.
#[derive(Default)]
struct Controls {
    /// Set by the test: the execution may go past its wait and apply.
    release: AtomicBool,
    /// Set by the mechanism once its effect is applied.
    completed: AtomicBool,
    /// How many times the runtime called `execute` on the mechanism.
    executions: AtomicUsize,
}

/// Writes `out/<label>.txt`, but only once the test releases it.
struct Slow {
    controls: Arc<Controls>,
}

const SLOW_ID: &str = "slow";
const WAIT: &str = "wait";

impl Slow {
    fn path(label: &str) -> String {
        format!("out/{label}.txt")
    }

    fn content(label: &str) -> String {
        format!("{label}\n")
    }

    fn label(params: &Value) -> Result<String, ErrorInfo> {
        #[derive(serde::Deserialize)]
        struct Params {
            label: String,
        }
        Ok(parse_params::<Params>(params)?.label)
    }
}

impl Mechanism for Slow {
    type Prepared = String;

    fn id(&self) -> &str {
        SLOW_ID
    }

    fn version(&self) -> &str {
        "0.1.0"
    }

    fn operations(&self) -> Vec<Operation> {
        vec![Operation {
            name: WAIT.to_owned(),
            description: "Wait until released, then write out/<label>.txt.".to_owned(),
            params_schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "additionalProperties": false,
                "required": ["label"],
                "properties": {
                    "label": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}
                }
            }),
            inputs: Vec::new(),
            effect_types: vec![FS_WRITE.to_owned()],
            destructive: Destructiveness::Never,
            determinism: Determinism::D0,
            examples: vec![Example {
                params: json!({"label": "example"}),
                inputs: None,
            }],
        }]
    }

    fn capability_scope(&self) -> Vec<Grant> {
        vec![Grant {
            capability: FS_WRITE.to_owned(),
            resources: vec!["out/**".to_owned()],
        }]
    }

    fn plan(&self, _env: &Env, request: &PlanRequest) -> Result<Proposal<String>, ErrorInfo> {
        let label = Self::label(&request.params)?;
        let path = Self::path(&label);
        let content = Self::content(&label);
        let size = content.len() as u64;
        let mut proposal = Proposal::new(json!({ "path": path }), label);
        proposal.intended_effects = vec![Effect::new(FS_WRITE, path.clone())
            .with("after", Digest::of_bytes(content.as_bytes()).to_string())
            .with("size", size)];
        proposal.touches = vec![Touch {
            resource: path.clone(),
            access: Access::Write,
        }];
        proposal.estimated_costs = Costs {
            wall_ms: Some(60_000),
            bytes_written: Some(size),
            files_touched: Some(1),
        };
        proposal.exec_recipe = vec![
            RecipeStep {
                op: "slow.wait_for_release".to_owned(),
                args: json!({}),
            },
            RecipeStep {
                op: "fs.write".to_owned(),
                args: json!({ "path": path, "content": content }),
            },
        ];
        Ok(proposal)
    }

    fn execute(
        &self,
        env: &Env,
        plan: &Plan,
        label: String,
        ctx: &ExecContext,
    ) -> Result<Executed, ErrorInfo> {
        self.controls.executions.fetch_add(1, Ordering::SeqCst);
        ctx.progress(0, 3, "waiting for the release");
        let gives_up = Instant::now() + MECHANISM_GIVES_UP;
        while !self.controls.release.load(Ordering::SeqCst) {
            ctx.checkpoint()?;
            if Instant::now() >= gives_up {
                return Err(ErrorInfo::new(
                    ErrorCode::ExecutionFailed,
                    "the test never released the slow mechanism",
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        // The last moment to stop: after this the file is written.
        ctx.point_of_no_return()?;
        let path = Self::path(&label);
        let content = Self::content(&label);
        let file = env.root.join(&path);
        let fail = |e: std::io::Error| ErrorInfo::new(ErrorCode::ExecutionFailed, e.to_string());
        std::fs::create_dir_all(env.root.join("out")).map_err(fail)?;
        std::fs::write(&file, &content).map_err(fail)?;
        self.controls.completed.store(true, Ordering::SeqCst);
        ctx.progress(3, 3, "written");
        self.executed(plan)
    }

    /// What executing `plan` did: its one file written.
    fn executed(&self, plan: &Plan) -> Result<Executed, ErrorInfo> {
        let label = Self::label(&plan.params)?;
        let path = Self::path(&label);
        let digest = Digest::of_bytes(Self::content(&label).as_bytes());
        Ok(Executed {
            effects_applied: plan.intended_effects.clone(),
            evidence: json!({ "path": path, "digest": digest.to_string() }),
            subjects: vec![(
                path.clone(),
                BTreeMap::from([("sha256".to_owned(), digest.hex())]),
            )],
            state_before: plan.state.clone(),
            state_after: json!({ "path": path, "written": true }),
        })
    }

    fn still_applied(&self, env: &Env, plan: &Plan) -> Result<bool, ErrorInfo> {
        let label = Self::label(&plan.params)?;
        Ok(std::fs::read(env.root.join(Self::path(&label)))
            .is_ok_and(|bytes| bytes == Self::content(&label).as_bytes()))
    }
}

// ---------------------------------------------------------------------------------------
// The server, in process, and the test's hold on the mechanism
// ---------------------------------------------------------------------------------------

/// The `slow` mechanism served in process, with the controls the test holds.
struct Server {
    harness: Harness,
    controls: Releaser,
}

impl Deref for Server {
    type Target = Harness;

    fn deref(&self) -> &Harness {
        &self.harness
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.harness
    }
}

impl Server {
    fn start() -> Self {
        let controls = Arc::new(Controls::default());
        let mechanism = Slow {
            controls: Arc::clone(&controls),
        };
        let harness = Harness::start(mechanism).expect("the server starts");
        Self {
            harness,
            controls: Releaser(controls),
        }
    }

    fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) {
        self.harness
            .request(id, method, params)
            .expect("write to the server");
    }

    fn cancel(&mut self, id: impl Into<Value>) {
        self.harness.cancel(id).expect("write to the server");
    }

    /// The next response and the notifications before it; fails the test on a timeout.
    fn next_response(&self, waiting_for: &str) -> (Value, Vec<Value>) {
        self.harness
            .next_response(waiting_for)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends a request and returns its response, which must be the next one written.
    fn call(&mut self, id: &str, method: &str, params: Value) -> Value {
        self.request(id, method, params);
        let (response, _) = self.next_response(&format!("the reply to {method} ({id})"));
        assert_eq!(
            response["id"],
            json!(id),
            "replies out of order: {response}"
        );
        response
    }

    /// The next message, which must be a notification; skips nothing.
    fn next_notification(&self, waiting_for: &str) -> Value {
        let message = self
            .harness
            .next(waiting_for)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            message.get("id").is_none(),
            "expected a notification ({waiting_for}), got {message}"
        );
        message
    }

    /// Plans `wait` for `label`, checks the plan against its schema, and admits it.
    fn plan_and_admit(&mut self, label: &str) -> (Digest, Digest) {
        let response = self.call(
            &format!("plan-{label}"),
            "plan",
            json!({"operation": WAIT, "params": {"label": label}}),
        );
        let result = result_of(&response);
        let plan = Artifact::from_value(result["plan"].clone()).expect("the plan is an artifact");
        schema::validate_artifact(&plan).expect("the test plan is a valid PlanArtifact");
        let plan_hash: Digest =
            serde_json::from_value(result["plan_hash"].clone()).expect("plan_hash");
        assert_eq!(plan.digest(), plan_hash);
        let admission = self.harness.admit(&plan_hash).expect("admit the plan");
        (plan_hash, admission)
    }

    fn release(&self) {
        self.controls.0.release.store(true, Ordering::SeqCst);
    }

    fn completed(&self) -> bool {
        self.controls.0.completed.load(Ordering::SeqCst)
    }

    fn executions(&self) -> usize {
        self.controls.0.executions.load(Ordering::SeqCst)
    }

    /// Closes the input, reads what is left until the output closes, and checks that the
    /// server returned `Ok`. Returns the messages read.
    fn finish(self) -> Vec<Value> {
        self.harness.finish().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Releases the mechanism when dropped: on a failing test, the mechanism and the server
/// wind down without waiting (dropping the harness closes the server's input).
struct Releaser(Arc<Controls>);

impl Drop for Releaser {
    fn drop(&mut self) {
        self.0.release.store(true, Ordering::SeqCst);
    }
}

fn execute_params(plan_hash: &Digest, admission: &Digest) -> Value {
    json!({"plan_hash": plan_hash, "admission": admission})
}

fn result_of(response: &Value) -> &Value {
    response
        .get("result")
        .unwrap_or_else(|| panic!("expected a success, got {response}"))
}

fn error_code_of(response: &Value) -> &str {
    response["error"]["data"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with data.code, got {response}"))
}

/// Checks a `progress` notification for `plan_hash` and returns its params.
fn progress_of<'a>(message: &'a Value, plan_hash: &Digest) -> &'a Value {
    assert_eq!(message["jsonrpc"], "2.0", "{message}");
    assert_eq!(
        message["method"], "progress",
        "not a progress notification: {message}"
    );
    let params = &message["params"];
    schema::validate(SchemaName::ProgressParams, params).expect("progress params are valid");
    assert_eq!(params["plan_hash"], json!(plan_hash), "{message}");
    params
}

/// Sends `execute` and waits until the mechanism reports it is running (its first progress).
fn start_execute(
    server: &mut Server,
    id: impl Into<Value>,
    plan_hash: &Digest,
    admission: &Digest,
) {
    server.request(id, "execute", execute_params(plan_hash, admission));
    let first = server.next_notification("the first progress notification of execute");
    let params = progress_of(&first, plan_hash);
    assert_eq!(
        (params["done"].as_u64(), params["total"].as_u64()),
        (Some(0), Some(3))
    );
}

/// Reads up to the reply to `id`, which must be a success, with a `progress` 3/3 before it.
fn expect_execute_success(server: &Server, id: &Value, plan_hash: &Digest) -> Value {
    let (reply, notifications) = server.next_response("the execute reply");
    assert_eq!(&reply["id"], id, "expected the execute reply, got {reply}");
    let result = result_of(&reply).clone();
    schema::validate(SchemaName::ExecuteResult, &result).expect("execute result is valid");
    assert_eq!(result["result"]["status"], "success", "{result}");
    assert_eq!(result["result"]["plan_hash"], json!(plan_hash), "{result}");
    let last = notifications
        .last()
        .unwrap_or_else(|| panic!("no progress notification before the execute reply"));
    let last = progress_of(last, plan_hash);
    assert_eq!(
        (last["done"].as_u64(), last["total"].as_u64()),
        (Some(3), Some(3))
    );
    result
}

fn status(server: &mut Server, id: &str, plan_hash: &Digest) -> Value {
    let reply = server.call(id, "status", json!({"plan_hash": plan_hash}));
    let result = result_of(&reply).clone();
    schema::validate(SchemaName::StatusResult, &result).expect("status result is valid");
    result
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// `status` is answered while `execute` runs, says `running` with the latest progress, and
/// its reply comes before the execute's; the execute then succeeds and `status` says so.
#[test]
fn status_answers_while_execute_runs() {
    let mut server = Server::start();
    let (plan_hash, admission) = server.plan_and_admit("status");
    assert_eq!(
        status(&mut server, "status-before", &plan_hash)["state"],
        "planned"
    );

    start_execute(&mut server, 1, &plan_hash, &admission);
    server.request(2, "status", json!({"plan_hash": plan_hash}));
    let (reply, notifications) = server.next_response("the status reply during execute");
    assert!(notifications.is_empty(), "unexpected {notifications:?}");
    assert_eq!(reply["id"], 2, "the status reply must come first: {reply}");
    let running = result_of(&reply);
    schema::validate(SchemaName::StatusResult, running).expect("status result is valid");
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(
        running["progress"],
        json!({"done": 0, "total": 3, "message": "waiting for the release"}),
        "{running}"
    );
    assert!(running.get("result_hash").is_none(), "{running}");
    assert!(!server.completed(), "the mechanism ran before its release");

    server.release();
    let result = expect_execute_success(&server, &json!(1), &plan_hash);
    assert!(server.completed());
    assert_eq!(
        std::fs::read_to_string(server.root().join("out/status.txt")).expect("the file"),
        "status\n"
    );
    for (artifact, hash) in [("result", "result_hash"), ("witness", "witness_hash")] {
        let artifact = Artifact::from_value(result[artifact].clone()).expect("artifact");
        schema::validate_artifact(&artifact).expect("a valid artifact");
        assert_eq!(json!(artifact.digest()), result[hash]);
    }

    let after = status(&mut server, "status-after", &plan_hash);
    assert_eq!(after["state"], "succeeded", "{after}");
    assert_eq!(after["result_hash"], result["result_hash"], "{after}");
    assert!(after.get("progress").is_none(), "{after}");

    let rest = server.finish();
    assert!(rest.is_empty(), "unexpected messages at EOF: {rest:?}");
}

/// `$/cancelRequest` naming the execute's id stops it before its effect: the reply is a
/// `CANCELLED` error, nothing is applied or recorded, and the plan is merely `planned`.
#[test]
fn cancel_request_stops_a_running_execute() {
    let mut server = Server::start();
    let (plan_hash, admission) = server.plan_and_admit("cancel");

    // A string id, to show the match is by the JSON-RPC id itself, whatever its type.
    start_execute(&mut server, "exec-1", &plan_hash, &admission);
    server.cancel("exec-1");
    let (reply, notifications) = server.next_response("the reply to the cancelled execute");
    assert!(notifications.is_empty(), "unexpected {notifications:?}");
    assert_eq!(reply["id"], "exec-1", "{reply}");
    assert_eq!(error_code_of(&reply), "CANCELLED", "{reply}");
    assert_eq!(
        reply["error"]["code"],
        json!(ErrorCode::Cancelled.number()),
        "{reply}"
    );
    assert!(reply.get("result").is_none(), "{reply}");

    assert!(
        !server.completed(),
        "a cancelled execute applied its effect"
    );
    assert!(
        !server.root().join("out/cancel.txt").exists(),
        "a cancelled execute wrote its file"
    );
    let after = status(&mut server, "status-after", &plan_hash);
    assert_eq!(after["state"], "planned", "{after}");
    assert!(after.get("result_hash").is_none(), "{after}");

    assert_eq!(server.executions(), 1);

    let rest = server.finish();
    assert!(rest.is_empty(), "unexpected messages at EOF: {rest:?}");
}

/// At EOF the server keeps serving an execute it has read: it neither returns nor closes
/// its output until the execute is done, writes the execute reply, then returns `Ok`.
#[test]
fn eof_waits_for_the_execute_in_flight() {
    let mut server = Server::start();
    let (plan_hash, admission) = server.plan_and_admit("eof");

    server.request(3, "execute", execute_params(&plan_hash, &admission));
    server.close_input();
    // The request was read before EOF, so it is served: it reports progress and blocks.
    let first = server.next_notification("the first progress notification after EOF");
    progress_of(&first, &plan_hash);

    thread::sleep(Duration::from_millis(200));
    assert!(
        server.serving(),
        "serve returned while an execute was in flight"
    );
    match server.try_next() {
        Ok(None) => {}
        Err(e) => panic!("while an execute was in flight: {e}"),
        Ok(Some(message)) => panic!("unexpected message before the release: {message}"),
    }
    assert!(!server.completed());

    server.release();
    expect_execute_success(&server, &json!(3), &plan_hash);
    assert!(server.completed());
    let rest = server.drain().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rest.is_empty(),
        "unexpected messages after the execute reply: {rest:?}"
    );
    server.served().unwrap_or_else(|e| panic!("{e}"));
}

/// Two requests in flight are answered as each finishes, matched by id: a `describe` sent
/// after a blocked execute is answered first.
#[test]
fn requests_in_flight_are_answered_out_of_order() {
    let mut server = Server::start();
    let (plan_hash, admission) = server.plan_and_admit("order");

    start_execute(&mut server, 1, &plan_hash, &admission);
    server.request(2, "describe", json!({}));
    let (reply, notifications) = server.next_response("the describe reply");
    assert!(notifications.is_empty(), "unexpected {notifications:?}");
    assert_eq!(reply["id"], 2, "describe must be answered first: {reply}");
    let described = result_of(&reply);
    schema::validate(SchemaName::DescribeResult, described).expect("describe result is valid");
    assert_eq!(described["mechanism"]["id"], SLOW_ID, "{described}");

    server.release();
    expect_execute_success(&server, &json!(1), &plan_hash);

    let rest = server.finish();
    assert!(rest.is_empty(), "unexpected messages at EOF: {rest:?}");
}

/// One execution per plan at a time: a second execute of a running plan is refused with
/// `BUSY` without reaching the mechanism, and the first one is unaffected.
#[test]
fn second_execute_of_a_running_plan_is_busy() {
    let mut server = Server::start();
    let (plan_hash, admission) = server.plan_and_admit("busy");

    start_execute(&mut server, 1, &plan_hash, &admission);
    server.request(2, "execute", execute_params(&plan_hash, &admission));
    let (reply, notifications) = server.next_response("the reply to the second execute");
    assert!(notifications.is_empty(), "unexpected {notifications:?}");
    assert_eq!(reply["id"], 2, "{reply}");
    assert_eq!(error_code_of(&reply), "BUSY", "{reply}");
    assert_eq!(
        server.executions(),
        1,
        "the second execute reached the mechanism"
    );

    server.release();
    expect_execute_success(&server, &json!(1), &plan_hash);
    assert_eq!(server.executions(), 1);

    let rest = server.finish();
    assert!(rest.is_empty(), "unexpected messages at EOF: {rest:?}");
}

/// A `$/cancelRequest` written right after its request, before the server could have started
/// it, still cancels it: requests are registered in the order they are read. (Repeated,
/// because the loss this guards against was a race between the two messages.)
#[test]
fn cancel_written_right_after_the_request_is_honoured() {
    for round in 0..20 {
        let mut server = Server::start();
        let (plan_hash, admission) = server.plan_and_admit("early");
        server.request(round, "execute", execute_params(&plan_hash, &admission));
        server.cancel(round);
        // Never released: if the cancel were lost, the execute would block and this wait
        // would fail on its timeout.
        let (reply, _) = server.next_response("the reply to an execute cancelled at once");
        assert_eq!(reply["id"], round, "{reply}");
        assert_eq!(error_code_of(&reply), "CANCELLED", "round {round}: {reply}");
        assert!(
            !server.completed(),
            "round {round}: a cancelled execute applied its effect"
        );
        let rest = server.finish();
        assert!(rest.is_empty(), "unexpected messages at EOF: {rest:?}");
    }
}
