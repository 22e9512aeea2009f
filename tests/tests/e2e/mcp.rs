//! `admission mcp` driven by an MCP client that is not ours: `tests/mcp-client/client.mjs`,
//! on the official TypeScript SDK `@modelcontextprotocol/sdk`, which starts the real server
//! with the SDK's own stdio transport and performs the requests the test sends it, one at a
//! time, so that the test can act as the operator between two calls. What came back is judged
//! here, against the repository, the store and the command line.
//!
//! Needs Node.js (20 or later) and npm on `PATH`; the client's one dependency is installed with
//! `npm ci` from the committed lockfile on first use.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use protocol::store::Store;
use protocol::Digest;
use serde_json::{json, Value};
use tests::fixtures::{Operator, APPROVER};
use tests::repo;
use tests::{bin_path, Scratch};

/// The MCP client's npm package.
const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp-client");

/// The SDK, the client's one dependency.
const SDK: &str = "@modelcontextprotocol/sdk";

/// How long one request may take before the test gives up on the client.
const ANSWER_LIMIT: Duration = Duration::from_secs(180);

/// The MCP client, running, with the server it started.
struct McpClient {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: mpsc::Receiver<String>,
    stderr: PathBuf,
    command: String,
}

impl McpClient {
    /// `node client.mjs -- admission mcp ARGS...`, with `env` set for it and its server.
    fn start(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Self {
        tests::node::ensure_installed(Path::new(CLIENT_DIR), SDK);
        let stderr = s.path(&format!("mcp-client-{}.stderr", uuid_ish()));
        let mut cmd = Command::new("node");
        cmd.current_dir(s.root())
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .arg(Path::new(CLIENT_DIR).join("client.mjs"))
            .arg("--")
            .arg(bin_path("admission"))
            .arg("mcp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"));
        for var in tests::scratch::ADMISSION_ENV {
            cmd.env_remove(var);
        }
        let command = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            answers,
            stderr,
            command,
        }
    }

    /// Sends one request and returns its answer.
    fn request(&mut self, request: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("the client is open");
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| self.fail(&format!("cannot send {request}: {e}")));
        match self.answers.recv_timeout(ANSWER_LIMIT) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| self.fail(&format!("answer {line:?} is not JSON: {e}"))),
            Err(e) => self.fail(&format!("no answer to {request} ({e})")),
        }
    }

    /// `tools/call` of `name` with `arguments`: the answer, whose `result` must be there.
    fn call(&mut self, name: &str, arguments: Value) -> Value {
        let answer = self.request(json!({"op": "call", "name": name, "arguments": arguments}));
        if answer.get("result").is_none() {
            self.fail(&format!("tools/call {name} got no result: {answer:#}"));
        }
        answer
    }

    /// The result of a call that must have succeeded: its structured content.
    fn ok(&mut self, name: &str, arguments: Value) -> Value {
        let answer = self.call(name, arguments);
        let result = &answer["result"];
        if result["isError"] == true {
            self.fail(&format!("tools/call {name} was refused: {result:#}"));
        }
        result["structuredContent"].clone()
    }

    /// The result of a call that must have been refused, as a tool error (never a transport
    /// error): its structured content, whose `error.code` is `code`.
    fn refused(&mut self, name: &str, arguments: Value, code: &str) -> Value {
        let answer = self.call(name, arguments);
        let result = &answer["result"];
        let content = &result["structuredContent"];
        if result["isError"] != true || content["error"]["code"] != code {
            self.fail(&format!(
                "tools/call {name} was not refused with {code}: {result:#}"
            ));
        }
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(code),
            "the text does not lead with the code: {text}"
        );
        content.clone()
    }

    /// Closes the client's stdin: it closes the connection and must exit 0.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for the client");
        if !status.success() {
            self.fail(&format!("the client exited with {status}"));
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        panic!(
            "{what}\ncommand: {}\nstderr of the client and the server:\n{stderr}",
            self.command
        );
    }
}

/// A name no other client of the same scratch directory has.
fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

/// The params of a git `apply` in the workspace's `repo`.
fn apply(repo: &str, message: &str) -> Value {
    json!({
        "repo": repo,
        "message": message,
        "author": {"name": "An Agent", "email": "agent@example.com"},
    })
}

/// The arguments of a `plan` of a git `apply` in the workspace's repository `repo`, with
/// `patch` as its one input.
fn plan_args(repo: &str, message: &str, patch: Value) -> Value {
    json!({
        "mechanism": "git_apply_patch",
        "operation": "apply",
        "params": apply(repo, message),
        "inputs": {"patch": patch},
    })
}

/// An input given as text.
fn text(content: &str) -> Value {
    json!({ "text": content })
}

/// `arguments` with one more member.
fn with(mut arguments: Value, name: &str, value: Value) -> Value {
    arguments[name] = value;
    arguments
}

/// A workspace with a repository `repo`, an operator whose key the server trusts, and the
/// server's arguments.
struct Setup {
    s: Scratch,
    repo: PathBuf,
    operator: Operator,
}

impl Setup {
    fn new() -> Self {
        let s = Scratch::new();
        let repo = repo::init(&s.path("ws/repo"));
        let operator = Operator::new(&s.path("keys"));
        Self { s, repo, operator }
    }

    fn server_args(&self) -> Vec<String> {
        vec![
            "--workspace".into(),
            self.s.path("ws").display().to_string(),
            "--store".into(),
            self.s.path("store").display().to_string(),
            "--allowed-signers".into(),
            self.operator.allowed_signers.display().to_string(),
        ]
    }

    fn client(&self, env: &[(&str, &str)]) -> McpClient {
        let args = self.server_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        McpClient::start(&self.s, &args, env)
    }

    /// A patch of the repository made by `edit`.
    fn patch(&self, edit: impl FnOnce(&Path)) -> String {
        let patch = repo::patch_from_edits(&self.repo, edit);
        assert!(!patch.is_empty(), "the edit made no patch");
        patch
    }

    fn head(&self) -> String {
        repo::rev(&self.repo, "HEAD")
    }
}

fn digest(value: &Value) -> Digest {
    value
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("not a digest: {value}"))
}

#[test]
fn an_mcp_client_plans_executes_is_refused_a_destructive_plan_until_approved_and_verifies() {
    let w = Setup::new();
    let mut client = w.client(&[]);

    // initialize: who the server is, and that it offers tools.
    let server = client.request(json!({"op": "server"}));
    assert_eq!(server["server"]["name"], "admission", "{server:#}");
    assert!(server["capabilities"]["tools"].is_object(), "{server:#}");

    // tools/list: five tools with schemas and honest annotations.
    let listed = client.request(json!({"op": "list_tools"}));
    let tools = listed["tools"].as_array().expect("tools");
    let tool = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no tool {name}: {listed:#}"))
    };
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        ["list_mechanisms", "plan", "execute", "show", "verify"]
    );
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t:#}");
        assert_eq!(t["outputSchema"]["type"], "object", "{t:#}");
    }
    let execute = tool("execute");
    assert_eq!(execute["annotations"]["destructiveHint"], true);
    assert_eq!(execute["annotations"]["idempotentHint"], true);
    assert_eq!(execute["annotations"]["readOnlyHint"], false);
    assert_eq!(execute["inputSchema"]["required"], json!(["plan_hash"]));
    for name in ["list_mechanisms", "plan", "show", "verify"] {
        assert_eq!(tool(name)["annotations"]["readOnlyHint"], true, "{name}");
    }
    // No tool signs, and none takes a key or a force-ack.
    let schemas = listed["tools"].to_string();
    assert!(
        !schemas.contains("\"force_ack\"") && !schemas.contains("\"key\""),
        "{schemas}"
    );

    // list_mechanisms: the registry's, described, with the operation's params schema.
    let mechanisms = client.ok("list_mechanisms", json!({}));
    let git = mechanisms["mechanisms"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == "git_apply_patch"))
        .unwrap_or_else(|| panic!("no git_apply_patch: {mechanisms:#}"));
    let apply_op = git["operations"]
        .as_array()
        .and_then(|ops| ops.iter().find(|op| op["name"] == "apply"))
        .unwrap_or_else(|| panic!("no apply: {git:#}"));
    assert_eq!(apply_op["params_schema"]["type"], "object", "{apply_op:#}");

    // plan, the patch given as text: admitted, not destructive, the diff as preview, and the
    // plan stored under its hash. Nothing changed.
    let base = w.head();
    let patch = w.patch(|dir| repo::write(dir, "README.md", "# fixture\n\nEdited by an agent.\n"));
    let planned = client.ok(
        "plan",
        with(
            plan_args("repo", "agent: edit the README", text(&patch)),
            "work_order_id",
            json!("agent-edit"),
        ),
    );
    assert_eq!(planned["decision"], "ADMIT", "{planned:#}");
    assert_eq!(planned["outcome"], "admitted", "{planned:#}");
    assert_eq!(planned["destructive"], false, "{planned:#}");
    assert_eq!(planned["work_order_id"], "agent-edit", "{planned:#}");
    assert!(
        planned["preview"]
            .as_str()
            .is_some_and(|p| p.contains("+Edited by an agent.")),
        "{planned:#}"
    );
    assert_eq!(
        planned["gates"].as_array().map(Vec::len),
        Some(6),
        "{planned:#}"
    );
    let plan_hash = digest(&planned["plan_hash"]);
    let store = Store::open(w.s.path("store")).expect("store");
    let plan = store.get_artifact(&plan_hash).expect("the plan is stored");
    assert_eq!(plan.value()["kind"], "mechanism.plan/v0");
    assert_eq!(
        store
            .read_blob(&digest(&planned["inputs"]["patch"]), 1 << 20)
            .expect("the patch is stored"),
        patch.as_bytes(),
        "the stored input is not the text given"
    );
    assert_eq!(w.head(), base, "planning changed the repository");

    // execute, by hash: progress notifications, then the commit, verified.
    let answer = client.call("execute", json!({"plan_hash": plan_hash.to_string()}));
    let executed = answer["result"]["structuredContent"].clone();
    assert_ne!(answer["result"]["isError"], true, "{answer:#}");
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert_eq!(executed["commit"], w.head().as_str(), "{executed:#}");
    assert_ne!(w.head(), base);
    assert_eq!(
        executed["run_record"]["kind"], "mechanism.run-record/v0",
        "{executed:#}"
    );
    let progress = answer["progress"].as_array().expect("progress");
    assert!(!progress.is_empty(), "no progress notification: {answer:#}");
    assert!(
        progress
            .windows(2)
            .all(|p| p[0]["progress"].as_f64() < p[1]["progress"].as_f64()),
        "progress must increase: {progress:?}"
    );

    // execute again: the recorded result, nothing applied twice.
    let head = w.head();
    let again = client.ok("execute", json!({"plan_hash": plan_hash.to_string()}));
    assert_eq!(again["result_hash"], executed["result_hash"], "{again:#}");
    assert_eq!(w.head(), head, "executing twice applied twice");

    // verify and show, read-only, as the command line.
    let verified = client.ok("verify", json!({"digest": executed["witness_hash"]}));
    assert_eq!(verified["verified"], true, "{verified:#}");
    let shown = client.ok("show", json!({"id": executed["run_uid"]}));
    assert_eq!(
        shown["run_record"]["digest"], executed["run_record_hash"],
        "{shown:#}"
    );

    // A destructive plan: admitted, but execute is refused until an operator approves it.
    let doomed = w.repo.join("src/old.rs");
    let delete = w.patch(|dir| std::fs::remove_file(dir.join("src/old.rs")).expect("rm"));
    let planned = client.ok(
        "plan",
        plan_args("repo", "agent: delete old.rs", text(&delete)),
    );
    assert_eq!(planned["destructive"], true, "{planned:#}");
    assert_eq!(planned["force_ack_required"], true, "{planned:#}");
    assert_eq!(planned["outcome"], "awaiting_force_ack", "{planned:#}");
    let doomed_plan = planned["plan_hash"].clone();
    let refused = client.refused(
        "execute",
        json!({"plan_hash": doomed_plan}),
        "FORCE_ACK_REQUIRED",
    );
    assert!(
        doomed.exists(),
        "a refused destructive plan deleted the file"
    );
    let approve = refused["approve_command"]
        .as_str()
        .unwrap_or_else(|| panic!("no approve_command: {refused:#}"));
    assert!(
        approve.contains(doomed_plan.as_str().unwrap_or("?")),
        "{approve}"
    );

    // The operator runs that command as it is, with their key and principal.
    operator_runs(&w, approve);
    let executed = client.ok("execute", json!({"plan_hash": doomed_plan}));
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert!(executed["force_ack_hash"].is_string(), "{executed:#}");
    assert!(
        !doomed.exists(),
        "the approved plan did not delete the file"
    );
    let verified = client.ok("verify", json!({"digest": executed["run_record_hash"]}));
    assert_eq!(verified["verified"], true, "{verified:#}");

    client.finish();
}

/// Runs the `approve_command` an execute refusal gave, with the operator's key and principal
/// in place of the placeholders, and `admission` found on `PATH` as an operator's would be.
fn operator_runs(w: &Setup, command: &str) {
    let command = command
        .replace("~/.ssh/id_ed25519", &w.operator.key.display().to_string())
        .replace("YOU@EXAMPLE.COM", APPROVER);
    let bin_dir = bin_path("admission")
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(w.s.path("keys"))
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "the operator's `{command}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_refusal_over_mcp_is_a_tool_error_with_the_protocols_code() {
    let w = Setup::new();
    let outside = repo::init(&w.s.path("outside"));
    let outside_head = repo::rev(&outside, "HEAD");
    let mut client = w.client(&[]);
    let patch = w.patch(|dir| repo::write(dir, "README.md", "changed\n"));

    // A repository outside the workspace, by `..` or by absolute path.
    for repo in ["../outside", outside.to_str().expect("UTF-8 path")] {
        let refused = client.refused(
            "plan",
            plan_args(repo, "agent: escape", text(&patch)),
            "CAPABILITY_DENIED",
        );
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("outside the root")),
            "{repo}: {refused:#}"
        );
    }
    assert_eq!(repo::rev(&outside, "HEAD"), outside_head);

    // An input named by path: the server reads no file an agent names.
    w.s.write("ws/patch.diff", &patch);
    let refused = client.refused(
        "plan",
        plan_args("repo", "agent: from a file", json!("patch.diff")),
        "INVALID_PARAMS",
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reads no files")),
        "{refused:#}"
    );

    // Text larger than an input given as text may be: refused, with the way forward.
    let huge = "x".repeat(9 * 1024 * 1024);
    let refused = client.refused(
        "plan",
        plan_args("repo", "agent: huge", text(&huge)),
        "MESSAGE_TOO_LARGE",
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("put FILE")),
        "{refused:#}"
    );

    // A digest that is not stored, an unknown member, an unknown plan hash, a malformed one.
    let absent = Digest::of_bytes(b"never stored");
    client.refused(
        "plan",
        plan_args("repo", "agent: absent input", json!(absent.to_string())),
        "UNKNOWN_ARTIFACT",
    );
    client.refused(
        "plan",
        json!({"mechanism": "git_apply_patch", "operation": "apply", "params": {}, "force": true}),
        "INVALID_PARAMS",
    );
    client.refused(
        "execute",
        json!({"plan_hash": absent.to_string()}),
        "ADMISSION_REQUIRED",
    );
    client.refused(
        "execute",
        json!({"plan_hash": "sha256:nothex"}),
        "INVALID_PARAMS",
    );
    client.refused(
        "verify",
        json!({"digest": absent.to_string()}),
        "UNKNOWN_ARTIFACT",
    );

    // A plan the mechanism cannot make (the patch does not apply): an error result too.
    let stale =
        "diff --git a/none.txt b/none.txt\n--- a/none.txt\n+++ b/none.txt\n@@ -1 +1 @@\n-a\n+b\n";
    let answer = client.call(
        "plan",
        plan_args("repo", "agent: does not apply", text(stale)),
    );
    assert_eq!(answer["result"]["isError"], true, "{answer:#}");

    // A gate that denies: a budget the plan's estimate does not fit. The decision and the
    // failed gate come with the refusal.
    let denied = client.refused(
        "plan",
        with(
            plan_args("repo", "agent: no time", text(&patch)),
            "wall_ms",
            json!(1),
        ),
        "BUDGET_EXCEEDED",
    );
    assert_eq!(denied["decision"], "DENY", "{denied:#}");
    assert_eq!(denied["outcome"], "denied", "{denied:#}");
    let failed: Vec<&Value> = denied["gates"]
        .as_array()
        .map(|g| g.iter().filter(|g| g["decision"] == "FAIL").collect())
        .unwrap_or_default();
    assert_eq!(failed.len(), 1, "{denied:#}");
    assert_eq!(failed[0]["gate"], "G-BUDGET", "{denied:#}");
    let denied_plan = denied["plan_hash"].clone();
    client.refused(
        "execute",
        json!({"plan_hash": denied_plan}),
        "ADMISSION_REQUIRED",
    );

    // A plan the world moved past: STALE_PLAN, and nothing applied.
    let planned = client.ok("plan", plan_args("repo", "agent: too late", text(&patch)));
    repo::write(&w.repo, "docs/guide.txt", "moved on\n");
    repo::git(&w.repo, &["commit", "-qam", "someone else"]);
    let moved = w.head();
    client.refused(
        "execute",
        json!({"plan_hash": planned["plan_hash"]}),
        "STALE_PLAN",
    );
    assert_eq!(w.head(), moved, "a stale plan was applied");

    // verify of something that is not a run record, witness or result.
    client.refused(
        "verify",
        json!({"digest": planned["plan_hash"]}),
        "INVALID_PARAMS",
    );

    // An unknown tool is the one protocol error.
    let answer = client.request(json!({"op": "call", "name": "approve", "arguments": {}}));
    assert_eq!(answer["error"]["code"], -32602, "{answer:#}");
    client.finish();
}

#[test]
fn an_mcp_cancellation_stops_an_execute_before_its_point_of_no_return() {
    let w = Setup::new();
    // Each mechanism holds its execute at `git:locked` (before the point of no return) for
    // long enough that the cancellation, sent on the first progress notification, arrives.
    let mut client = w.client(&[
        ("MECHANISM_FAILPOINT", "git:locked"),
        ("MECHANISM_FAILPOINT_SLEEP_MS", "2000"),
    ]);
    let base = w.head();
    let patch = w.patch(|dir| repo::write(dir, "README.md", "# fixture\n\ncancelled?\n"));
    let planned = client.ok("plan", plan_args("repo", "agent: cancelled", text(&patch)));
    let plan_hash = planned["plan_hash"].clone();
    let answer = client.request(json!({
        "op": "call",
        "name": "execute",
        "arguments": {"plan_hash": plan_hash},
        "cancel_on_progress": true,
    }));
    assert!(
        answer["error"].is_object(),
        "the call was not cancelled: {answer:#}"
    );
    assert_eq!(
        answer["progress"].as_array().map(Vec::len),
        Some(1),
        "{answer:#}"
    );

    // The cancelled execute ends CANCELLED with nothing applied, once the mechanism has
    // reached its point of no return and refused to pass it.
    let store = Store::open(w.s.path("store")).expect("store");
    let cancelled = || {
        std::fs::read_dir(w.s.path("store/refs/runs"))
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let bytes = std::fs::read(entry.ok()?.path()).ok()?;
                let reference: Value = serde_json::from_slice(&bytes).ok()?;
                let record = store.get_artifact(&digest(&reference["run_record"])).ok()?;
                Some(record.value()["error"]["code"] == "CANCELLED")
            })
            .any(|cancelled| cancelled)
    };
    let waited = std::time::Instant::now();
    while !cancelled() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no run ended CANCELLED"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.head(), base, "a cancelled execute applied the patch");

    // The server goes on serving, and the next execute applies the plan once.
    let executed = client.ok("execute", json!({"plan_hash": plan_hash}));
    assert_eq!(executed["outcome"], "succeeded", "{executed:#}");
    assert_eq!(repo::rev(&w.repo, "HEAD~1"), base, "applied more than once");
    client.finish();
}

#[test]
fn a_client_gone_mid_execute_leaves_a_recorded_run_and_nothing_half_applied() {
    let w = Setup::new();
    let base = w.head();
    let patch = w.patch(|dir| repo::write(dir, "README.md", "# fixture\n\nabandoned\n"));
    // A bare client over the server's own pipes, which closes its end while an execute is
    // held (before its point of no return) for longer than the server waits for answers.
    let mut server = Command::new(bin_path("admission"))
        .arg("mcp")
        .args(w.server_args())
        .env("MECHANISM_FAILPOINT", "git:locked")
        .env("MECHANISM_FAILPOINT_SLEEP_MS", "7000")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start admission mcp");
    let mut stdin = server.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").expect("send");
        stdin.flush().expect("flush");
    };
    let mut recv = || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bare", "version": "0"}}}),
    );
    assert_eq!(recv()["id"], 1);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "plan", "arguments": {
            "mechanism": "git_apply_patch", "operation": "apply",
            "params": apply("repo", "agent: abandoned"),
            "inputs": {"patch": {"text": patch}}}}}),
    );
    let planned = recv();
    let plan_hash = planned["result"]["structuredContent"]["plan_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no plan: {planned:#}"))
        .to_owned();
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "execute", "arguments": {"plan_hash": plan_hash}}}),
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);

    // The server exits only once the execute it was running is recorded: cancelled at its
    // point of no return, nothing applied.
    let status = server.wait().expect("wait for the server");
    assert!(status.success(), "admission mcp exited with {status}");
    assert_eq!(w.head(), base, "an abandoned execute applied the patch");
    let store = Store::open(w.s.path("store")).expect("store");
    let outcomes: Vec<(Value, Value)> = std::fs::read_dir(w.s.path("store/refs/runs"))
        .expect("refs/runs")
        .filter_map(|entry| {
            let bytes = std::fs::read(entry.ok()?.path()).ok()?;
            let reference: Value = serde_json::from_slice(&bytes).ok()?;
            let record = store.get_artifact(&digest(&reference["run_record"])).ok()?;
            let record = record.value();
            Some((record["outcome"].clone(), record["error"]["code"].clone()))
        })
        .collect();
    assert!(
        outcomes.contains(&(json!("failed"), json!("CANCELLED"))),
        "no recorded cancelled execute: {outcomes:?}"
    );

    // The plan is still good: the next execute applies it, once.
    let mut execute = w.s.admission();
    execute
        .args(["--json", "execute", &plan_hash])
        .args(w.server_args());
    let report = tests::output::json_of(&execute.assert().success().get_output().clone());
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(repo::rev(&w.repo, "HEAD~1"), base);
}

#[test]
fn a_bad_configuration_is_refused_before_serving() {
    let s = Scratch::new();
    let garbage = s.write("allowed_signers", "not a signers line\n");
    for (args, names) in [
        (
            vec![
                "--workspace".to_owned(),
                s.path("absent").display().to_string(),
            ],
            "is not a directory",
        ),
        (
            vec![
                "--workspace".to_owned(),
                s.root().display().to_string(),
                "--allowed-signers".to_owned(),
                garbage.display().to_string(),
            ],
            "--allowed-signers",
        ),
    ] {
        let mut cmd = s.admission();
        cmd.arg("mcp").args(&args).write_stdin("");
        let out = tests::output::exits(&mut cmd, 2);
        let stderr = tests::output::stderr(&out);
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "stdout is the protocol: {out:?}");
    }
}
