//! The server runtime under concurrency, in process: `status` and `describe` answer while an
//! `execute` runs, `progress` notifications flow during an execute, `$/cancelRequest` stops
//! an execute before anything is applied, a second execute of a running plan is `BUSY`, and
//! at EOF the server finishes in-flight work, writes its replies, then returns `Ok`.
//!
//! A purpose-built mechanism, `slow`, blocks inside `execute` until the test releases it
//! (checking for cancellation all the while), so every "while it runs" is certain rather than
//! a race against a fast mechanism. The server is `connection::serve` over two pipes, on a
//! tokio runtime of its own, spoken to in line-delimited JSON. Every wait has a timeout that
//! fails the test with a message; the mechanism gives up by itself after
//! [`MECHANISM_GIVES_UP`], so nothing can hang forever.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use mechanism_server::mechanism::{
    Env, ExecContext, Executed, Mechanism, MechanismError, PlanRequest, Planned,
};
use mechanism_server::server::connection::{self, Limits};
use mechanism_server::server::{self, Config};
use protocol::artifact::effect::{Access, Effect, Touch, FS_WRITE};
use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, Costs, Determinism, Gate, GateDecision, GateRecord, Grant,
    MechanismRef, Plan, RecipeStep,
};
use protocol::artifact::Artifact;
use protocol::framing::DEFAULT_MAX_MESSAGE_BYTES;
use protocol::schema::{self, SchemaName};
use protocol::store::{Provenance, Store};
use protocol::verbs::{Destructiveness, Example, Operation};
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};

/// The longest any single wait for the server may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the test mechanism waits for its release before failing on its own; longer
/// than [`TIMEOUT`], so a stuck test fails on the test's message, not the mechanism's.
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

    fn label(params: &Value) -> Result<&str, MechanismError> {
        params["label"]
            .as_str()
            .ok_or_else(|| MechanismError::new(ErrorCode::InvalidParams, "label is required"))
    }
}

impl Mechanism for Slow {
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

    fn plan(&self, _env: &Env, request: &PlanRequest) -> Result<Planned, MechanismError> {
        if request.operation != WAIT {
            return Err(MechanismError::new(
                ErrorCode::UnknownOperation,
                format!("no operation {:?}", request.operation),
            ));
        }
        let label = Self::label(&request.params)?;
        let path = Self::path(label);
        let content = Self::content(label);
        let size = content.len() as u64;
        let plan = Plan {
            mechanism: MechanismRef {
                id: self.id().to_owned(),
                version: self.version().to_owned(),
            },
            operation: request.operation.clone(),
            params: request.params.clone(),
            inputs: request.inputs.clone(),
            state: json!({ "path": path }),
            intended_effects: vec![Effect::new(FS_WRITE, path.clone())
                .with("after", Digest::of_bytes(content.as_bytes()).to_string())
                .with("size", size)],
            touches: vec![Touch {
                resource: path.clone(),
                access: Access::Write,
            }],
            destructive: false,
            destructive_reasons: Vec::new(),
            determinism: Determinism::D0,
            estimated_costs: Costs {
                wall_ms: Some(60_000),
                bytes_written: Some(size),
                files_touched: Some(1),
            },
            exec_recipe: vec![
                RecipeStep {
                    op: "slow.wait_for_release".to_owned(),
                    args: json!({}),
                },
                RecipeStep {
                    op: "fs.write".to_owned(),
                    args: json!({ "path": path, "content": content }),
                },
            ],
        };
        Ok(Planned {
            plan,
            preview: None,
        })
    }

    fn execute(
        &self,
        env: &Env,
        planned: &Planned,
        ctx: &ExecContext,
    ) -> Result<Executed, MechanismError> {
        self.controls.executions.fetch_add(1, Ordering::SeqCst);
        let label = Self::label(&planned.plan.params)?;
        ctx.progress(0, 3, "waiting for the release");
        let gives_up = Instant::now() + MECHANISM_GIVES_UP;
        while !self.controls.release.load(Ordering::SeqCst) {
            ctx.checkpoint()?;
            if Instant::now() >= gives_up {
                return Err(MechanismError::new(
                    ErrorCode::ExecutionFailed,
                    "the test never released the slow mechanism",
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        // The last moment to stop: after this the file is written.
        ctx.point_of_no_return()?;
        let path = Self::path(label);
        let content = Self::content(label);
        let file = env.root.join(&path);
        let fail =
            |e: std::io::Error| MechanismError::new(ErrorCode::ExecutionFailed, e.to_string());
        std::fs::create_dir_all(file.parent().expect("out/ has a parent")).map_err(fail)?;
        std::fs::write(&file, &content).map_err(fail)?;
        self.controls.completed.store(true, Ordering::SeqCst);
        ctx.progress(3, 3, "written");
        Self::executed(&planned.plan)
    }

    fn still_applied(&self, _env: &Env, _plan: &Plan) -> Result<bool, MechanismError> {
        Ok(self.controls.completed.load(Ordering::SeqCst))
    }

    fn recover(&self, env: &Env, plan: &Plan) -> Result<Option<Executed>, MechanismError> {
        let label = Self::label(&plan.params)?;
        let written = std::fs::read(env.root.join(Self::path(label)))
            .is_ok_and(|bytes| bytes == Self::content(label).as_bytes());
        written.then(|| Self::executed(plan)).transpose()
    }
}

impl Slow {
    /// What executing `plan` did: its one file written.
    fn executed(plan: &Plan) -> Result<Executed, MechanismError> {
        let label = Self::label(&plan.params)?;
        let path = Self::path(label);
        let digest = Digest::of_bytes(Self::content(label).as_bytes());
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
}

// ---------------------------------------------------------------------------------------
// The harness: a server over two pipes, and a client that reads every line it writes
// ---------------------------------------------------------------------------------------

/// One server on its own runtime thread, and the client end of its pipes.
struct Server {
    /// The server's stdin; `None` once closed.
    input: Option<std::io::PipeWriter>,
    /// Every message the server wrote, in order; disconnected when its output closes.
    messages: mpsc::Receiver<Value>,
    /// What `serve` returned, once it returns.
    done: mpsc::Receiver<std::io::Result<()>>,
    controls: Arc<Controls>,
    root: PathBuf,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&root).expect("root");
        let controls = Arc::new(Controls::default());
        let mechanism = Arc::new(Slow {
            controls: Arc::clone(&controls),
        });
        let config = Config {
            root: root.clone(),
            store: store.clone(),
            force_ack_signers: None,
            force_ack_max_ttl: Duration::from_secs(600),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        };
        let module = server::module(mechanism, &config).expect("the server module builds");
        let limits = Limits {
            max_message_bytes: config.max_message_bytes,
        };

        let (input_read, input) = std::io::pipe().expect("input pipe");
        let (output_read, output) = std::io::pipe().expect("output pipe");

        // The runtime `serve_stdio` uses.
        let (done_tx, done) = mpsc::channel();
        thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let served = runtime.block_on(connection::serve(
                    Arc::new(module),
                    BufReader::new(input_read),
                    output,
                    limits,
                ));
                let _ = done_tx.send(served);
            })
            .expect("server thread");

        let (messages_tx, messages) = mpsc::channel();
        thread::Builder::new()
            .name("client-reader".into())
            .spawn(move || {
                for line in BufReader::new(output_read).lines() {
                    let Ok(line) = line else { break };
                    let message = serde_json::from_str(&line)
                        .unwrap_or_else(|e| json!({ "not_json": line, "error": e.to_string() }));
                    if messages_tx.send(message).is_err() {
                        break;
                    }
                }
            })
            .expect("reader thread");

        Self {
            input: Some(input),
            messages,
            done,
            controls,
            root,
            store,
            _dir: dir,
        }
    }

    /// Writes one message as one line.
    fn send(&mut self, message: &Value) {
        let input = self.input.as_mut().expect("the input is still open");
        let mut line = message.to_string();
        line.push('\n');
        input
            .write_all(line.as_bytes())
            .expect("write to the server");
        input.flush().expect("flush to the server");
    }

    fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) {
        let message =
            json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params});
        self.send(&message);
    }

    fn cancel(&mut self, id: impl Into<Value>) {
        self.send(&json!({
            "jsonrpc": "2.0",
            "method": "$/cancelRequest",
            "params": {"id": id.into()},
        }));
    }

    /// Closes the server's stdin: EOF.
    fn close_input(&mut self) {
        self.input = None;
    }

    /// The next message the server writes; fails the test after [`TIMEOUT`].
    fn next(&self, waiting_for: &str) -> Value {
        match self.messages.recv_timeout(TIMEOUT) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "no message from the server within {TIMEOUT:?} while waiting for {waiting_for}"
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the server closed its output while waiting for {waiting_for}")
            }
        }
    }

    /// The next response (a message with an `id`), and the notifications written before it.
    fn next_response(&self, waiting_for: &str) -> (Value, Vec<Value>) {
        let mut notifications = Vec::new();
        loop {
            let message = self.next(waiting_for);
            if message.get("id").is_some() {
                return (message, notifications);
            }
            notifications.push(message);
        }
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
        let message = self.next(waiting_for);
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
        let admission = admit(&self.store, &plan_hash);
        (plan_hash, admission)
    }

    fn release(&self) {
        self.controls.release.store(true, Ordering::SeqCst);
    }

    fn completed(&self) -> bool {
        self.controls.completed.load(Ordering::SeqCst)
    }

    fn executions(&self) -> usize {
        self.controls.executions.load(Ordering::SeqCst)
    }

    /// Closes the input, reads what is left until the output closes, and checks that
    /// `serve` returned `Ok`. Returns the messages read.
    fn finish(mut self) -> Vec<Value> {
        self.close_input();
        let rest = self.drain_until_closed();
        self.expect_served_ok();
        rest
    }

    /// Every message until the server closes its output.
    fn drain_until_closed(&self) -> Vec<Value> {
        let deadline = Instant::now() + TIMEOUT;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) => rest.push(message),
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the server did not close its output within {TIMEOUT:?} of EOF; read {rest:?}"
                ),
            }
        }
    }

    fn expect_served_ok(&self) {
        match self.done.recv_timeout(TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("serve returned an error at EOF: {e}"),
            Err(_) => panic!("serve did not return within {TIMEOUT:?} of EOF"),
        }
    }
}

impl Drop for Server {
    /// On a failing test, lets the mechanism and the server wind down without waiting.
    fn drop(&mut self) {
        self.release();
        self.input = None;
    }
}

/// Stores an AdmissionWitness that admits `plan_hash`, as the admission would.
fn admit(store: &Path, plan_hash: &Digest) -> Digest {
    let witness = AdmissionWitness {
        plan_hash: *plan_hash,
        mechanism: MechanismRef {
            id: SLOW_ID.to_owned(),
            version: "0.1.0".to_owned(),
        },
        policy_digest: Digest::of_bytes(b"test policy"),
        gates: Gate::ALL
            .iter()
            .map(|&gate| GateRecord {
                gate,
                decision: GateDecision::Pass,
                code: None,
                reason: "passed in a test".to_owned(),
            })
            .collect(),
        decision: AdmissionDecision::Admit,
        force_ack_required: false,
        workorder: None,
    };
    Store::open(store)
        .expect("store")
        .put_artifact(
            &Artifact::from_typed(&witness).expect("witness artifact"),
            &Provenance::new("test"),
        )
        .expect("store the admission witness")
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
        std::fs::read_to_string(server.root.join("out/status.txt")).expect("the file"),
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
        !server.root.join("out/cancel.txt").exists(),
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
        matches!(server.done.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "serve returned while an execute was in flight"
    );
    match server.messages.try_recv() {
        Err(mpsc::TryRecvError::Empty) => {}
        Err(mpsc::TryRecvError::Disconnected) => {
            panic!("the server closed its output while an execute was in flight")
        }
        Ok(message) => panic!("unexpected message before the release: {message}"),
    }
    assert!(!server.completed());

    server.release();
    expect_execute_success(&server, &json!(3), &plan_hash);
    assert!(server.completed());
    let rest = server.drain_until_closed();
    assert!(
        rest.is_empty(),
        "unexpected messages after the execute reply: {rest:?}"
    );
    server.expect_served_ok();
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
