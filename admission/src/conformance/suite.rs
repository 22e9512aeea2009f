//! The checks, in the order they run. Each records one row; a check that cannot run because
//! an earlier one failed is not repeated as a second failure.
//!
//! Three processes of the mechanism are started in one world: the main one (newline
//! framing), one spoken to in `Content-Length` framing, and one that only plans, to show a
//! plan is the same across processes (`execute.killed` starts, and kills, more). Every
//! operation's examples then run in order, in describe order, each executed before the next
//! is planned, so a later example may depend on an earlier one's effect (a write, then an
//! overwrite: a destructive plan).
//!
//! The checks, by id (those with an example's name in brackets run once per example):
//! - `framing.lines`, `framing.content-length`: describe answered in the framing spoken, and
//!   a malformed `Content-Length` body recovered from;
//! - `describe.schema`, `describe.versions`: the result validates, params schemas compile,
//!   examples validate; a version is chosen from an offer, an unspeakable offer refused;
//! - `jsonrpc.*`: parse errors (also for nesting far too deep and for a lone surrogate
//!   escape), invalid requests, unknown methods, invalid params (ill-typed, positional,
//!   unknown fields), notifications unanswered, batches and their declared cap, the size limit;
//! - `execute.unknown-plan`, `status.unknown-plan`: hashes it never issued;
//! - `plan.schema`, `plan.hash`, `plan.matches-request`, `plan.i-json`, `plan.stored`,
//!   `plan.repeatable`, `plan.cross-process`, `status.planned`, `cost.declared`;
//! - `execute.forged-plan`, `execute.admission-required`, `execute.force-ack`: refusals
//!   that change nothing in the workspace;
//! - `execute.applies`, `execute.idempotent`, `execute.replay`, `status.succeeded`,
//!   `plan.after-execute`: the execution, and what must hold after it;
//! - `execute.killed`: on the first example of each operation (and the first destructive and
//!   non-destructive ones), executes killed with SIGKILL at seeded instants, each finished by
//!   the next execute in a fresh process as if never interrupted (see `suite/killed.rs`);
//! - `stdout.protocol-only`, `process.exit`: over every process, to the end (and
//!   `process.spawn` when one could not even start).

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::artifact::effect::Effect;
use protocol::artifact::kinds::{
    AdmissionDecision, CostWitness, MechanismRef, Plan, ResultStatus, ResultWitness,
};
use protocol::artifact::Artifact;
use protocol::canonical;
use protocol::framing::Framing;
use protocol::schema::{self, SchemaName};
use protocol::verbs::{self, DescribeResult, Destructiveness, Example, Operation, PlanState};
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::peer::{excerpt, Launch, NoReply, Peer, Reply};
use super::report::Report;
use super::world::{Saved, Snapshot, World};
use crate::outcome::Outcome;
use killed::Kills;

mod killed;

/// The largest `max_message_bytes` the harness will exceed on purpose to check the limit.
const MAX_OVERSIZE_PROBE: u64 = 64 * 1024 * 1024;

/// A protocol version no mechanism speaks.
const UNSPEAKABLE_VERSION: &str = "mechanism/999999";

/// How deep the harness nests arrays to check the nesting bound: beyond any parser's bound
/// (serde_json's is 127 levels, Python's recursion limit 1000), and small enough to send.
const DEEP_NESTING: usize = 10_000;

/// The largest batch the harness sends to check a declared `max_batch_entries`, in bytes.
const MAX_BATCH_PROBE: u64 = 64 * 1024 * 1024;

/// What a check concluded: a detail for PASS, a reason for FAIL.
type Check = Result<String, String>;

/// Runs every check against the mechanism `launch` starts in `world`; `kill_seed` seeds the
/// instants at which `execute.killed` kills it.
pub fn run(world: &World, launch: &Launch, timeout: Duration, kill_seed: u64) -> Report {
    let mut suite = Suite {
        world,
        launch,
        timeout,
        kills: Kills::new(kill_seed),
        report: Report::default(),
        violations: Vec::new(),
        exits: Vec::new(),
    };
    suite.run_all();
    suite.report
}

struct Suite<'a> {
    world: &'a World,
    launch: &'a Launch,
    timeout: Duration,
    /// Which examples `execute.killed` runs on, and when it kills.
    kills: Kills,
    report: Report,
    /// stdout violations of every process, with the process's name.
    violations: Vec<(String, String)>,
    /// How each process ended at EOF: its name, and a failure if it did not exit 0.
    exits: Vec<(String, Option<String>)>,
}

/// What an executed example left for the next checks.
struct Executed {
    result_hash: Digest,
    witness_hash: Digest,
}

impl Suite<'_> {
    fn run_all(&mut self) {
        let mut main = match self.spawn("main", Framing::Lines) {
            Some(peer) => peer,
            None => return,
        };
        let describe = self.describe(&mut main);
        if let Some(described) = &describe {
            self.versions(&mut main, described);
            self.content_length();
            self.json_rpc_errors(&mut main, described);
            self.unknown_plan(&mut main);
            self.examples(&mut main, described);
        }
        self.end("main", main);
        self.stdout_and_exit();
    }

    fn spawn(&mut self, name: &str, framing: Framing) -> Option<Peer> {
        match Peer::spawn(self.launch, framing, self.timeout) {
            Ok(peer) => Some(peer),
            Err(e) => {
                self.report.push(
                    "process.spawn",
                    Some(name),
                    Outcome::Fail,
                    format!("could not start {}: {e}", self.launch.program.display()),
                );
                None
            }
        }
    }

    fn end(&mut self, name: &str, peer: Peer) {
        let ending = peer.finish();
        for violation in &ending.violations {
            self.violations.push((name.to_owned(), violation.clone()));
        }
        for notification in &ending.notifications {
            if let Some(problem) = notification_problem(notification) {
                self.violations.push((name.to_owned(), problem));
            }
        }
        let problem = match ending.status {
            Some(status) if status.success() => None,
            Some(status) => Some(format!(
                "exited with {status} at EOF on stdin{}",
                tail(&ending.stderr_tail)
            )),
            None => Some(format!(
                "still running {} after stdin closed; killed{}",
                humantime::format_duration(self.timeout),
                tail(&ending.stderr_tail)
            )),
        };
        self.exits.push((name.to_owned(), problem));
    }

    fn describe(&mut self, main: &mut Peer) -> Option<DescribeResult> {
        let reply = main.call(verbs::DESCRIBE, json!({}));
        let framed = match &reply {
            Ok(_) => Ok("describe answered in newline-delimited framing".to_owned()),
            Err(no) => Err(format!("describe: {no}{}", tail(&main.stderr_tail()))),
        };
        self.report.record("framing.lines", None, framed);
        let result = match reply {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => {
                self.report.push(
                    "describe.schema",
                    None,
                    Outcome::Fail,
                    format!("describe failed: {}", error.describe()),
                );
                return None;
            }
            Err(_) => return None,
        };
        match check_describe(&result) {
            Ok(described) => {
                let ops = described.operations.len();
                let examples: usize = described.operations.iter().map(|o| o.examples.len()).sum();
                self.report.push(
                    "describe.schema",
                    None,
                    Outcome::Pass,
                    format!(
                        "{} {}: {ops} operation(s), {examples} example(s); params schemas compile and every example validates",
                        described.mechanism.id, described.mechanism.version
                    ),
                );
                Some(described)
            }
            Err(reason) => {
                self.report
                    .push("describe.schema", None, Outcome::Fail, reason);
                None
            }
        }
    }

    fn versions(&mut self, main: &mut Peer, described: &DescribeResult) {
        let chosen = &described.protocol_version;
        let check = (|| {
            let offered = main
                .call(
                    verbs::DESCRIBE,
                    json!({"protocol_versions": [UNSPEAKABLE_VERSION, chosen]}),
                )
                .map_err(|no| no.to_string())?
                .map_err(|e| {
                    format!(
                        "offering [{UNSPEAKABLE_VERSION}, {chosen}]: {}",
                        e.describe()
                    )
                })?;
            if offered["protocol_version"] != json!(chosen) {
                return Err(format!(
                    "offered [{UNSPEAKABLE_VERSION}, {chosen}], it chose {}",
                    offered["protocol_version"]
                ));
            }
            expect_error(
                main.call(
                    verbs::DESCRIBE,
                    json!({"protocol_versions": [UNSPEAKABLE_VERSION]}),
                ),
                ErrorCode::UnsupportedVersion,
            )
            .map_err(|e| format!("offering only {UNSPEAKABLE_VERSION}: {e}"))?;
            expect_error(
                main.call(verbs::DESCRIBE, json!({"protocol_versions": []})),
                ErrorCode::InvalidParams,
            )
            .map_err(|e| format!("offering nothing: {e}"))?;
            Ok(format!(
                "chooses {chosen} from an offer; refuses an offer it cannot speak with UNSUPPORTED_VERSION and an empty one with INVALID_PARAMS"
            ))
        })();
        self.report.record("describe.versions", None, check);
    }

    fn content_length(&mut self) {
        let Some(mut peer) = self.spawn("content-length", Framing::ContentLength) else {
            return;
        };
        let check = match peer.call(verbs::DESCRIBE, json!({})) {
            Ok(Ok(_)) => (|| {
                let reply = peer
                    .exchange(br#"{"jsonrpc": "2.0", "id": 1, "#)
                    .map_err(|no| format!("a malformed body: {no}"))?;
                expect_error_response(&reply, ErrorCode::ParseError, &Value::Null)
                    .map_err(|e| format!("a malformed body: {e}"))?;
                match peer.call(verbs::DESCRIBE, json!({})) {
                    Ok(Ok(_)) => Ok("describe answered in Content-Length framing; a malformed body gets PARSE_ERROR and the next message is read".to_owned()),
                    Ok(Err(e)) => Err(format!("describe after a malformed body failed: {}", e.describe())),
                    Err(no) => Err(format!("after a malformed body: {no}")),
                }
            })(),
            Ok(Err(e)) => Err(format!("describe failed: {}", e.describe())),
            Err(no) => {
                let seen = peer.violations();
                Err(match seen.first() {
                    Some(first) => format!("{no}; on stdout instead: {first}"),
                    None => format!("{no}{}", tail(&peer.stderr_tail())),
                })
            }
        };
        self.report.record("framing.content-length", None, check);
        self.end("content-length", peer);
    }

    fn json_rpc_errors(&mut self, main: &mut Peer, described: &DescribeResult) {
        let parse = (|| {
            let reply = main
                .exchange(br#"{"jsonrpc": "2.0", "id": 1, "method": "describe""#)
                .map_err(|no| no.to_string())?;
            expect_error_response(&reply, ErrorCode::ParseError, &Value::Null)?;
            alive(main, "malformed JSON")?;
            Ok(
                "malformed JSON gets PARSE_ERROR (-32700) with id null; the connection goes on"
                    .to_owned(),
            )
        })();
        self.report.record("jsonrpc.parse-error", None, parse);

        let invalid = (|| {
            for (payload, id) in [
                (
                    r#"{"jsonrpc":"2.0","id":"no-method","params":{}}"#,
                    "no-method",
                ),
                (
                    r#"{"jsonrpc":"1.0","id":"old-version","method":"describe"}"#,
                    "old-version",
                ),
            ] {
                let reply = main
                    .exchange(payload.as_bytes())
                    .map_err(|no| no.to_string())?;
                expect_error_response(&reply, ErrorCode::InvalidRequest, &json!(id))
                    .map_err(|e| format!("{payload}: {e}"))?;
            }
            Ok("a request without a method, or not JSON-RPC 2.0, gets INVALID_REQUEST (-32600) with its id".to_owned())
        })();
        self.report.record("jsonrpc.invalid-request", None, invalid);

        let unknown = expect_error(
            main.call("conformance/no_such_method", json!({})),
            ErrorCode::MethodNotFound,
        )
        .map(|_| "an unknown method gets METHOD_NOT_FOUND (-32601)".to_owned());
        self.report
            .record("jsonrpc.method-not-found", None, unknown);

        let params = (|| {
            for (method, params) in [
                (verbs::PLAN, json!({"operation": 42, "params": {}})),
                (verbs::STATUS, json!({"plan_hash": "sha256:not-a-digest"})),
                (verbs::PLAN, json!([1, 2])),
                (
                    verbs::STATUS,
                    json!({"plan_hash": Digest::of_bytes(b"conformance"), "unexpected": true}),
                ),
            ] {
                expect_error(main.call(method, params.clone()), ErrorCode::InvalidParams)
                    .map_err(|e| format!("{method} {params}: {e}"))?;
            }
            Ok("ill-typed, positional or unknown params get INVALID_PARAMS (-32602)".to_owned())
        })();
        self.report.record("jsonrpc.invalid-params", None, params);

        let notification = (|| {
            main.send_raw(br#"{"jsonrpc":"2.0","method":"describe"}"#)
                .map_err(|e| e.to_string())?;
            main.send_raw(
                br#"{"jsonrpc":"2.0","method":"status","params":{"plan_hash":"sha256:bad"}}"#,
            )
            .map_err(|e| e.to_string())?;
            alive(main, "notifications")?;
            let strays = main.take_strays();
            match strays.first() {
                None => Ok("notifications, valid or not, get no response".to_owned()),
                Some(stray) => Err(format!(
                    "a notification was answered: {}",
                    excerpt(stray.to_string().as_bytes())
                )),
            }
        })();
        self.report
            .record("jsonrpc.notification", None, notification);

        let batch = (|| {
            let payload = br#"[{"jsonrpc":"2.0","id":"batch-a","method":"describe"},{"jsonrpc":"2.0","method":"describe"},{"jsonrpc":"2.0","id":"batch-b","method":"conformance/no_such_method"}]"#;
            let reply = main.exchange(payload).map_err(|no| no.to_string())?;
            let items = reply.as_array().ok_or_else(|| {
                format!(
                    "a batch was answered with a non-array: {}",
                    excerpt(reply.to_string().as_bytes())
                )
            })?;
            let by_id: BTreeMap<String, &Value> = items
                .iter()
                .map(|item| (item["id"].to_string(), item))
                .collect();
            if items.len() != 2 || by_id.len() != 2 {
                return Err(format!(
                    "a batch of two requests and a notification got {} responses (ids {:?})",
                    items.len(),
                    by_id.keys().collect::<Vec<_>>()
                ));
            }
            let a = by_id
                .get("\"batch-a\"")
                .ok_or("no response for id \"batch-a\"")?;
            if a.get("result").is_none() {
                return Err(format!("describe in a batch failed: {a}"));
            }
            let b = by_id
                .get("\"batch-b\"")
                .ok_or("no response for id \"batch-b\"")?;
            expect_error_response(b, ErrorCode::MethodNotFound, &json!("batch-b"))?;
            let empty = main.exchange(b"[]").map_err(|no| no.to_string())?;
            expect_error_response(&empty, ErrorCode::InvalidRequest, &Value::Null)
                .map_err(|e| format!("an empty batch: {e}"))?;
            Ok("a batch gets one array of responses, none for its notification; an empty batch gets INVALID_REQUEST".to_owned())
        })();
        self.report.record("jsonrpc.batch", None, batch);

        let limit = described.limits.max_message_bytes;
        self.deep_nesting(main, limit);
        let surrogate = (|| {
            let reply = main
                .exchange(br#"{"jsonrpc":"2.0","id":"lone-surrogate","method":"describe","params":{"protocol_versions":["\ud800"]}}"#)
                .map_err(|no| no.to_string())?;
            expect_error_response(&reply, ErrorCode::ParseError, &Value::Null)?;
            alive(main, "a lone surrogate")?;
            Ok("a lone surrogate escape (\\ud800) gets PARSE_ERROR (-32700) with id null; the connection goes on".to_owned())
        })();
        self.report
            .record("jsonrpc.lone-surrogate", None, surrogate);
        self.batch_cap(main, &described.limits);

        if limit > MAX_OVERSIZE_PROBE {
            self.report.push(
                "jsonrpc.too-large",
                None,
                Outcome::Skip,
                format!("max_message_bytes is {limit}; the harness sends at most {MAX_OVERSIZE_PROBE} bytes"),
            );
            return;
        }
        let too_large = (|| {
            let payload = oversized_request(limit);
            let reply = main.exchange(&payload).map_err(|no| no.to_string())?;
            let id = reply.get("id").cloned().unwrap_or(Value::Null);
            if id != Value::Null && id != json!("too-large") {
                return Err(format!("answered with id {id}"));
            }
            expect_error_response(&reply, ErrorCode::MessageTooLarge, &id)?;
            alive(main, "an oversized message")?;
            Ok(format!(
                "a message of {} bytes (max_message_bytes + 1) gets MESSAGE_TOO_LARGE; the connection goes on",
                payload.len()
            ))
        })();
        self.report.record("jsonrpc.too-large", None, too_large);
    }

    /// Arrays nested [`DEEP_NESTING`] levels deep, closed and not: invalid JSON either way
    /// (a parser's depth bound is an error while parsing), so `PARSE_ERROR` with id null.
    fn deep_nesting(&mut self, main: &mut Peer, limit: u64) {
        let unclosed = "[".repeat(DEEP_NESTING);
        let closed = format!("{unclosed}{}", "]".repeat(DEEP_NESTING));
        if closed.len() as u64 > limit {
            self.report.push(
                "jsonrpc.deep-nesting",
                None,
                Outcome::Skip,
                format!("max_message_bytes is {limit}; {DEEP_NESTING} nested arrays do not fit"),
            );
            return;
        }
        let check = (|| {
            for (what, payload) in [("never closed", &unclosed), ("closed", &closed)] {
                let reply = main
                    .exchange(payload.as_bytes())
                    .map_err(|no| format!("{DEEP_NESTING} nested arrays, {what}: {no}"))?;
                expect_error_response(&reply, ErrorCode::ParseError, &Value::Null)
                    .map_err(|e| format!("{DEEP_NESTING} nested arrays, {what}: {e}"))?;
            }
            alive(main, "deeply nested arrays")?;
            Ok(format!("{DEEP_NESTING} nested arrays, closed or not, get PARSE_ERROR (-32700) with id null; the connection goes on"))
        })();
        self.report.record("jsonrpc.deep-nesting", None, check);
    }

    /// A declared `max_batch_entries`: a batch of exactly that many is served, one more entry
    /// gets one `INVALID_REQUEST` (not an array) and none of it is served.
    fn batch_cap(&mut self, main: &mut Peer, limits: &verbs::Limits) {
        let Some(cap) = limits.max_batch_entries else {
            self.report.push(
                "jsonrpc.batch-cap",
                None,
                Outcome::Skip,
                "describe declares no max_batch_entries".to_owned(),
            );
            return;
        };
        // Notifications of a method nobody has, which cost nothing to ignore, then one request
        // whose answer shows whether the batch was served.
        let batch = |entries: u64| {
            let mut batch = b"[".to_vec();
            for _ in 1..entries {
                batch.extend_from_slice(
                    br#"{"jsonrpc":"2.0","method":"conformance/no_such_method"},"#,
                );
            }
            batch.extend_from_slice(
                br#"{"jsonrpc":"2.0","id":"batch-cap","method":"conformance/no_such_method"}]"#,
            );
            batch
        };
        let entry_bytes = batch(2).len() as u64 - batch(1).len() as u64;
        let probe = batch(1).len() as u64 + cap.saturating_mul(entry_bytes);
        if probe > limits.max_message_bytes.min(MAX_BATCH_PROBE) {
            self.report.push(
                "jsonrpc.batch-cap",
                None,
                Outcome::Skip,
                format!(
                    "a batch of {} entries takes {probe} bytes: more than max_message_bytes ({}) or the harness sends ({MAX_BATCH_PROBE})",
                    cap.saturating_add(1),
                    limits.max_message_bytes
                ),
            );
            return;
        }
        let check = (|| {
            let reply = main
                .exchange(&batch(cap))
                .map_err(|no| format!("a batch of {cap} entries: {no}"))?;
            match reply.as_array().map(Vec::as_slice) {
                Some([one]) => {
                    expect_error_response(one, ErrorCode::MethodNotFound, &json!("batch-cap"))
                        .map_err(|e| format!("a batch of {cap} entries: {e}"))?;
                }
                _ => {
                    return Err(format!(
                    "a batch of {cap} entries (the declared cap), one of them a request, got {}",
                    excerpt(reply.to_string().as_bytes())
                ))
                }
            }
            let over = cap + 1;
            let reply = main
                .exchange(&batch(over))
                .map_err(|no| format!("a batch of {over} entries: {no}"))?;
            if reply.is_array() {
                return Err(format!(
                    "a batch of {over} entries, over the declared cap of {cap}, was served: {}",
                    excerpt(reply.to_string().as_bytes())
                ));
            }
            expect_error_response(&reply, ErrorCode::InvalidRequest, &Value::Null)
                .map_err(|e| format!("a batch of {over} entries: {e}"))?;
            alive(main, "a batch over the cap")?;
            Ok(format!("a batch of {cap} entries (max_batch_entries) is served; one of {over} gets one INVALID_REQUEST with id null, none of it served; the connection goes on"))
        })();
        self.report.record("jsonrpc.batch-cap", None, check);
    }

    fn unknown_plan(&mut self, main: &mut Peer) {
        let world = self.world;
        let nowhere = Digest::of_bytes(b"admission conformance: a plan nobody issued");
        let blob = match world.put_blob(b"admission conformance: a stored object, not a plan") {
            Ok(digest) => digest,
            Err(e) => {
                self.report.push(
                    "execute.unknown-plan",
                    None,
                    Outcome::Fail,
                    format!("the harness could not store a blob: {e}"),
                );
                return;
            }
        };
        let cases = [
            ("a hash nobody issued", nowhere),
            ("a stored blob that is not a plan", blob),
        ];
        let execute = (|| {
            let before = world.snapshot()?;
            for (what, digest) in &cases {
                expect_error(
                    main.call(
                        verbs::EXECUTE,
                        json!({"plan_hash": digest, "admission": digest}),
                    ),
                    ErrorCode::UnknownPlan,
                )
                .map_err(|e| format!("{what}: {e}"))?;
            }
            unchanged(world, &before)?;
            Ok("execute of a hash nobody issued, or of a stored object that is not a plan, gets UNKNOWN_PLAN and changes nothing".to_owned())
        })();
        self.report.record("execute.unknown-plan", None, execute);
        let status = (|| {
            for (what, digest) in &cases {
                expect_error(
                    main.call(verbs::STATUS, json!({"plan_hash": digest})),
                    ErrorCode::UnknownPlan,
                )
                .map_err(|e| format!("{what}: {e}"))?;
            }
            Ok("status of a hash nobody issued, or of a stored object that is not a plan, gets UNKNOWN_PLAN".to_owned())
        })();
        self.report.record("status.unknown-plan", None, status);
    }

    fn examples(&mut self, main: &mut Peer, described: &DescribeResult) {
        let Some(mut second) = self.spawn("second", Framing::Lines) else {
            return;
        };
        let mut destructive_seen = false;
        let mut first = true;
        for operation in &described.operations {
            for (i, example) in operation.examples.iter().enumerate() {
                let subject = format!("{}#{}", operation.name, i + 1);
                let mut run = ExampleRun {
                    suite: self,
                    main,
                    second: &mut second,
                    mechanism: &described.mechanism,
                    operation,
                    subject: &subject,
                    first: std::mem::take(&mut first),
                };
                if run.run(example) == Some(true) {
                    destructive_seen = true;
                }
            }
        }
        self.end("second", second);
        if !destructive_seen {
            let may = described
                .operations
                .iter()
                .filter(|o| o.destructive != Destructiveness::Never)
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>();
            if may.is_empty() {
                self.report.push(
                    "execute.force-ack",
                    None,
                    Outcome::Skip,
                    "no operation is ever destructive",
                );
            } else {
                self.report.push(
                    "execute.force-ack",
                    None,
                    Outcome::Fail,
                    format!(
                        "{} may be destructive, but no example planned a destructive plan, so force-ack handling is unchecked; add one (examples run in order, each after the previous executed)",
                        may.join(", ")
                    ),
                );
            }
        }
    }

    fn stdout_and_exit(&mut self) {
        let stdout = match self.violations.first() {
            None => Ok("every byte on stdout, in every process, was a JSON-RPC 2.0 response or a valid progress notification".to_owned()),
            Some((process, first)) => Err(format!(
                "{} thing(s) on stdout were not protocol messages; first, in the {process} process: {first}",
                self.violations.len()
            )),
        };
        self.report.record("stdout.protocol-only", None, stdout);
        let failed: Vec<String> = self
            .exits
            .iter()
            .filter_map(|(name, problem)| problem.as_ref().map(|p| format!("{name}: {p}")))
            .collect();
        let exit = if failed.is_empty() {
            Ok(format!(
                "{} process(es) exited 0 at EOF on stdin",
                self.exits.len()
            ))
        } else {
            Err(failed.join("; "))
        };
        self.report.record("process.exit", None, exit);
    }
}

/// One example, from plan to the plan after execute.
struct ExampleRun<'s, 'w> {
    suite: &'s mut Suite<'w>,
    main: &'s mut Peer,
    second: &'s mut Peer,
    mechanism: &'s MechanismRef,
    operation: &'s Operation,
    subject: &'s str,
    /// Whether this is the first example of all: checks of the request format run once.
    first: bool,
}

impl ExampleRun<'_, '_> {
    /// Runs the example's checks; `Some(destructive)` once its plan was issued.
    fn run(&mut self, example: &Example) -> Option<bool> {
        let request = match self.request(example) {
            Ok(request) => request,
            Err(reason) => {
                self.record("plan.schema", Err(reason));
                return None;
            }
        };
        let (plan_hash, plan) = self.plan(&request)?;
        if self.first {
            self.duplicate_key(&request);
        }
        let world = self.suite.world;
        let forged = self.forged(&plan, &plan_hash);
        self.admission_required(&plan_hash, forged.as_ref().map(|f| &f.0));

        let admission = match world.admission(
            plan_hash,
            plan.mechanism.clone(),
            plan.destructive,
            AdmissionDecision::Admit,
        ) {
            Ok(digest) => digest,
            Err(e) => {
                self.record(
                    "execute.applies",
                    Err(format!("the harness could not store an admission: {e}")),
                );
                return Some(plan.destructive);
            }
        };
        if plan.destructive {
            self.force_ack_refusals(&plan_hash, &admission, forged.as_ref());
        }
        let force_ack = if plan.destructive {
            match world.force_ack(
                &plan_hash,
                &admission,
                OffsetDateTime::now_utc() + time::Duration::minutes(10),
                true,
            ) {
                Ok(ack) => Some(ack),
                Err(e) => {
                    self.record(
                        "execute.applies",
                        Err(format!("the harness could not sign a force-ack: {e}")),
                    );
                    return Some(true);
                }
            }
        } else {
            None
        };
        let mut params = json!({"plan_hash": plan_hash, "admission": admission});
        if let Some(ack) = &force_ack {
            params["force_ack"] = ack.clone();
        }
        // The world before the plan, to reset it to: to try a spent force-ack, and to kill
        // executes of the plan.
        let base = match world.save() {
            Ok(saved) => Some(saved),
            Err(e) => {
                let check = if plan.destructive {
                    "execute.replay"
                } else {
                    "execute.killed"
                };
                self.record(check, Err(e));
                None
            }
        };
        let executed = self.execute(&params, &plan_hash, &plan, &admission, force_ack.is_some());
        if let Some(executed) = executed {
            // What an uninterrupted execute makes of the base: nothing may change it now, and
            // a killed execute, once finished, must leave the same.
            match world.snapshot() {
                Ok(applied) => {
                    self.idempotent(&params, &executed, &applied);
                    if let (true, Some(base)) = (plan.destructive, &base) {
                        self.replay(&params, base);
                    }
                    self.status_after(&plan_hash, &executed);
                    if let Some(base) = &base {
                        if self
                            .suite
                            .kills
                            .wanted(&self.operation.name, plan.destructive)
                        {
                            self.killed(&plan_hash, &plan, base, &applied);
                        }
                    }
                }
                Err(e) => self.record("execute.idempotent", Err(e)),
            }
        }
        self.plan_after(&request, &plan_hash);
        Some(plan.destructive)
    }

    fn record(&mut self, check: &'static str, result: Check) {
        self.suite.report.record(check, Some(self.subject), result);
    }

    /// The plan request: the example's params, and its input texts stored as blobs.
    fn request(&self, example: &Example) -> Result<Value, String> {
        let mut inputs = serde_json::Map::new();
        for (name, text) in example.inputs.iter().flatten() {
            let digest = self
                .suite
                .world
                .put_blob(text.as_bytes())
                .map_err(|e| format!("storing input {name:?}: {e}"))?;
            inputs.insert(name.clone(), json!(digest));
        }
        Ok(json!({
            "operation": self.operation.name,
            "params": example.params,
            "inputs": inputs,
        }))
    }

    fn plan(&mut self, request: &Value) -> Option<(Digest, Plan)> {
        let reply = self.main.call(verbs::PLAN, request.clone());
        let (plan_hash, plan_value, plan) = match check_plan_reply(reply) {
            Ok(found) => {
                self.record(
                    "plan.schema",
                    Ok("the plan response and the plan artifact validate".to_owned()),
                );
                found
            }
            Err(reason) => {
                self.record("plan.schema", Err(reason));
                return None;
            }
        };
        let hash = match canonical::digest(&plan_value) {
            Ok(digest) if digest == plan_hash => Ok(format!(
                "plan_hash {plan_hash} is the digest of the artifact"
            )),
            Ok(digest) => Err(format!(
                "plan_hash is {plan_hash}, but the artifact's digest is {digest}"
            )),
            Err(e) => Err(format!("the artifact has no digest: {e}")),
        };
        let hash_ok = hash.is_ok();
        self.record("plan.hash", hash);
        if !hash_ok {
            return None;
        }
        let matches = self.matches_request(request, &plan);
        self.record("plan.matches-request", matches);
        let stored = self
            .suite
            .world
            .holds(&plan_hash, &plan_value, "plan")
            .map(|()| "the plan is in the store under its hash".to_owned());
        self.record("plan.stored", stored);
        let again = same_plan(self.main.call(verbs::PLAN, request.clone()), &plan_hash)
            .map(|()| "planning the same request again gives the same hash".to_owned());
        self.record("plan.repeatable", again);
        let across = same_plan(self.second.call(verbs::PLAN, request.clone()), &plan_hash)
            .map(|()| "a second process plans the same hash".to_owned());
        self.record("plan.cross-process", across);
        let status = match self
            .main
            .call(verbs::STATUS, json!({"plan_hash": plan_hash}))
        {
            Ok(Ok(result)) if result["state"] == json!(PlanState::Planned) => {
                Ok("status of an issued, unexecuted plan is planned".to_owned())
            }
            Ok(Ok(result)) => Err(format!("status before execute is {}", result["state"])),
            Ok(Err(e)) => Err(format!("status: {}", e.describe())),
            Err(no) => Err(format!("status: {no}")),
        };
        self.record("status.planned", status);
        self.declare_cost(&plan_hash);
        Some((plan_hash, plan))
    }

    /// `declare_cost` is optional; when offered, its witness must be for this plan, hashed
    /// right and stored.
    fn declare_cost(&mut self, plan_hash: &Digest) {
        let reply = self
            .main
            .call(verbs::DECLARE_COST, json!({"plan_hash": plan_hash}));
        if let Ok(Err(e)) = &reply {
            if e.code.as_deref() == Some(ErrorCode::MethodNotFound.as_str()) {
                self.suite.report.push(
                    "cost.declared",
                    Some(self.subject),
                    Outcome::Skip,
                    "declare_cost is optional and not offered",
                );
                return;
            }
        }
        let world = self.suite.world;
        let check = (|| {
            let result = reply
                .map_err(|no| format!("declare_cost: {no}"))?
                .map_err(|e| format!("declare_cost failed: {}", e.describe()))?;
            schema::validate(SchemaName::DeclareCostResult, &result)
                .map_err(|e| format!("the declare_cost response: {e}"))?;
            let witness = Artifact::from_value(result["cost_witness"].clone())
                .map_err(|e| format!("the cost witness: {e}"))?;
            if json!(witness.digest()) != result["cost_witness_hash"] {
                return Err(format!(
                    "cost_witness_hash is {}, but the witness's digest is {}",
                    result["cost_witness_hash"],
                    witness.digest()
                ));
            }
            let costed: CostWitness = witness.view().map_err(|e| e.to_string())?;
            if costed.plan_hash != *plan_hash {
                return Err(format!("the cost witness is for plan {}", costed.plan_hash));
            }
            world.holds(&witness.digest(), witness.value(), "cost witness")?;
            Ok(format!(
                "a cost witness for the plan, stored under its hash: {}",
                json!(costed.costs)
            ))
        })();
        self.record("cost.declared", check);
    }

    /// Plans the request again with a duplicate of its first params key (same value, so a
    /// parser that keeps either copy would plan it): it must be refused, not resolved.
    fn duplicate_key(&mut self, request: &Value) {
        let Some((key, value)) = request["params"].as_object().and_then(|p| p.iter().next()) else {
            self.suite.report.push(
                "plan.i-json",
                Some(self.subject),
                Outcome::Skip,
                "the example has no params to repeat a key of",
            );
            return;
        };
        let params = request["params"].to_string();
        let duplicated = format!("{{{}:{value},{}", json!(key), &params[1..]);
        let id = json!("duplicate-key");
        let payload = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"plan","params":{{"operation":{},"params":{duplicated},"inputs":{}}}}}"#,
            json!(self.operation.name),
            request["inputs"]
        );
        let check = expect_error(
            self.main.call_raw(payload.as_bytes(), &id),
            ErrorCode::InvalidParams,
        )
        .map(|_| format!("params with the key {key:?} twice get INVALID_PARAMS: two documents must never share one digest"))
        .map_err(|e| format!("params with the key {key:?} twice: {e}"));
        self.record("plan.i-json", check);
    }

    fn matches_request(&self, request: &Value, plan: &Plan) -> Check {
        if plan.operation != self.operation.name {
            return Err(format!("the plan's operation is {:?}", plan.operation));
        }
        if plan.params != request["params"] {
            return Err(format!(
                "the plan's params are {}, not the ones asked for",
                plan.params
            ));
        }
        for (name, digest) in request["inputs"].as_object().into_iter().flatten() {
            if plan.inputs.get(name).map(|d| json!(d)) != Some(digest.clone()) {
                return Err(format!(
                    "the plan's inputs do not name input {name:?} as {digest}"
                ));
            }
        }
        if &plan.mechanism != self.mechanism {
            return Err(format!(
                "the plan names mechanism {} {}, describe named {} {}",
                plan.mechanism.id,
                plan.mechanism.version,
                self.mechanism.id,
                self.mechanism.version
            ));
        }
        match (self.operation.destructive, plan.destructive) {
            (Destructiveness::Never, true) => Err(
                "a destructive plan from an operation described as never destructive".to_owned(),
            ),
            (Destructiveness::Always, false) => Err(
                "a non-destructive plan from an operation described as always destructive"
                    .to_owned(),
            ),
            _ => Ok(format!(
                "operation, params, inputs and mechanism as asked; destructive: {}",
                plan.destructive
            )),
        }
    }

    /// Stores a plan the mechanism did not issue (this one, claiming to be harmless and
    /// cheaper) under its own digest, admits it, and checks execute refuses it.
    fn forged(&mut self, plan: &Plan, plan_hash: &Digest) -> Option<(Digest, Digest)> {
        let world = self.suite.world;
        let mut forged = plan.clone();
        forged.destructive = false;
        forged.destructive_reasons.clear();
        forged.estimated_costs.wall_ms = Some(forged.estimated_costs.wall_ms.unwrap_or(0) + 1);
        let prepared = (|| {
            let value = Artifact::from_typed(&forged)
                .map_err(|e| e.to_string())?
                .into_value();
            let hash = world.put(value)?;
            let admission = world.admission(
                hash,
                plan.mechanism.clone(),
                false,
                AdmissionDecision::Admit,
            )?;
            Ok::<_, String>((hash, admission))
        })();
        let (forged_hash, forged_admission) = match prepared {
            Ok(pair) => pair,
            Err(e) => {
                self.record(
                    "execute.forged-plan",
                    Err(format!("the harness could not store a forged plan: {e}")),
                );
                return None;
            }
        };
        let check = (|| {
            let before = world.snapshot()?;
            expect_error(
                self.main.call(
                    verbs::EXECUTE,
                    json!({"plan_hash": forged_hash, "admission": forged_admission}),
                ),
                ErrorCode::StalePlan,
            )?;
            unchanged(world, &before)?;
            Ok(format!(
                "a plan it did not issue ({forged_hash}, a copy of {} claiming no destruction), admitted and stored under its own digest, gets STALE_PLAN and changes nothing",
                plan_hash.hex().get(..12).unwrap_or_default()
            ))
        })();
        self.record("execute.forged-plan", check);
        Some((forged_hash, forged_admission))
    }

    fn admission_required(&mut self, plan_hash: &Digest, other_plan: Option<&Digest>) {
        let world = self.suite.world;
        let mechanism = self.mechanism.clone();
        let check = (|| {
            let before = world.snapshot()?;
            let missing = Digest::of_bytes(b"admission conformance: no such admission");
            let denied = world.admission(
                *plan_hash,
                mechanism.clone(),
                false,
                AdmissionDecision::Deny,
            )?;
            let blob = world.put_blob(b"admission conformance: not an admission witness")?;
            // No admission at all is ADMISSION_REQUIRED; one the store lacks is an unknown
            // artifact, like any digest that resolves to nothing.
            let without = json!({"plan_hash": plan_hash});
            expect_error(
                self.main.call(verbs::EXECUTE, without),
                ErrorCode::AdmissionRequired,
            )
            .map_err(|e| format!("without an admission: {e}"))?;
            expect_error(
                self.main.call(
                    verbs::EXECUTE,
                    json!({"plan_hash": plan_hash, "admission": missing}),
                ),
                ErrorCode::UnknownArtifact,
            )
            .map_err(|e| format!("with an admission that is not in the store: {e}"))?;
            let mut cases = vec![
                ("a stored object that is not an admission witness", blob),
                ("a DENY admission", denied),
            ];
            let foreign;
            if let Some(other) = other_plan {
                foreign =
                    world.admission(*other, mechanism.clone(), false, AdmissionDecision::Admit)?;
                cases.push(("an admission of another plan", foreign));
            }
            for (what, admission) in &cases {
                let mut params = json!({"plan_hash": plan_hash, "admission": admission});
                // A force-ack must not stand in for the admission.
                params["force_ack"] = world.force_ack(
                    plan_hash,
                    admission,
                    OffsetDateTime::now_utc() + time::Duration::minutes(10),
                    true,
                )?;
                expect_error(
                    self.main.call(verbs::EXECUTE, params),
                    ErrorCode::AdmissionRequired,
                )
                .map_err(|e| format!("with {what}: {e}"))?;
            }
            unchanged(world, &before)?;
            Ok(format!(
                "execute without an admission, or with {}, gets ADMISSION_REQUIRED, with one \
                 not in the store UNKNOWN_ARTIFACT, and changes nothing",
                cases
                    .iter()
                    .map(|(what, _)| *what)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })();
        self.record("execute.admission-required", check);
    }

    fn force_ack_refusals(
        &mut self,
        plan_hash: &Digest,
        admission: &Digest,
        forged: Option<&(Digest, Digest)>,
    ) {
        let world = self.suite.world;
        let check = (|| {
            let before = world.snapshot()?;
            let soon = OffsetDateTime::now_utc() + time::Duration::minutes(10);
            let base = json!({"plan_hash": plan_hash, "admission": admission});
            expect_error(
                self.main.call(verbs::EXECUTE, base.clone()),
                ErrorCode::ForceAckRequired,
            )
            .map_err(|e| format!("without a force-ack: {e}"))?;
            let mut cases = vec![
                (
                    "signed by a key it does not trust",
                    world.force_ack(plan_hash, admission, soon, false)?,
                    ErrorCode::ForceAckInvalid,
                ),
                (
                    "that expired a minute ago",
                    world.force_ack(
                        plan_hash,
                        admission,
                        OffsetDateTime::now_utc() - time::Duration::minutes(1),
                        true,
                    )?,
                    ErrorCode::ForceAckExpired,
                ),
            ];
            if let Some((other_plan, other_admission)) = forged {
                cases.push((
                    "for another plan",
                    world.force_ack(other_plan, other_admission, soon, true)?,
                    ErrorCode::ForceAckInvalid,
                ));
            }
            let mut tampered = world.force_ack(plan_hash, admission, soon, true)?;
            tampered["approver"] = json!("someone-else@admission.invalid");
            cases.push((
                "whose signed fields were altered",
                tampered,
                ErrorCode::ForceAckInvalid,
            ));
            for (what, ack, code) in &cases {
                let mut params = base.clone();
                params["force_ack"] = ack.clone();
                expect_error(self.main.call(verbs::EXECUTE, params), *code)
                    .map_err(|e| format!("with a force-ack {what}: {e}"))?;
            }
            unchanged(world, &before)?;
            Ok(format!(
                "refused without a force-ack (FORCE_ACK_REQUIRED) and with one {}; nothing changed",
                cases
                    .iter()
                    .map(|(what, _, code)| format!("{what} ({code})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })();
        self.record("execute.force-ack", check);
    }

    fn execute(
        &mut self,
        params: &Value,
        plan_hash: &Digest,
        plan: &Plan,
        admission: &Digest,
        with_force_ack: bool,
    ) -> Option<Executed> {
        let world = self.suite.world;
        let reply = self.main.call(verbs::EXECUTE, params.clone());
        let check = reply
            .map_err(|no| no.to_string())
            .and_then(|reply| reply.map_err(|e| format!("execute failed: {}", e.describe())))
            .and_then(|result| {
                check_executed(world, &result, plan_hash, plan, admission, with_force_ack)
            });
        match check {
            Ok(executed) => {
                self.record(
                    "execute.applies",
                    Ok(format!(
                        "result {} and witness {} validate, are stored, link plan, admission{} and result, and applied exactly the intended effects",
                        short(&executed.result_hash),
                        short(&executed.witness_hash),
                        if with_force_ack { ", force-ack" } else { "" }
                    )),
                );
                Some(executed)
            }
            Err(reason) => {
                self.record("execute.applies", Err(reason));
                None
            }
        }
    }

    fn idempotent(&mut self, params: &Value, first: &Executed, before: &Snapshot) {
        let world = self.suite.world;
        let check = (|| {
            let again = self
                .main
                .call(verbs::EXECUTE, params.clone())
                .map_err(|no| no.to_string())?
                .map_err(|e| format!("executing again failed: {}", e.describe()))?;
            if again["result_hash"] != json!(first.result_hash) {
                return Err(format!(
                    "executing again gave result {}, not the recorded {}",
                    again["result_hash"], first.result_hash
                ));
            }
            unchanged(world, before)?;
            Ok("executing again returns the recorded result and changes nothing".to_owned())
        })();
        self.record("execute.idempotent", check);
    }

    /// Resets the workspace to the plan's base and executes again with the same force-ack:
    /// that would be a second application, so the spent nonce must be refused. The executed
    /// state is put back afterwards for the examples that follow.
    fn replay(&mut self, params: &Value, base: &Saved) {
        let world = self.suite.world;
        let after = match world.save() {
            Ok(saved) => saved,
            Err(e) => return self.record("execute.replay", Err(e)),
        };
        let check = (|| {
            world.restore(base)?;
            let reset = world.snapshot()?;
            expect_error(
                self.main.call(verbs::EXECUTE, params.clone()),
                ErrorCode::ForceAckReplayed,
            )
            .map_err(|e| format!("after the workspace was reset to the plan's base: {e}"))?;
            unchanged(world, &reset)?;
            Ok("with the workspace reset to the plan's base, the spent force-ack gets FORCE_ACK_REPLAYED and nothing is applied a second time".to_owned())
        })();
        let put_back = world.restore(&after);
        self.record("execute.replay", check.and_then(|ok| put_back.map(|()| ok)));
    }

    fn status_after(&mut self, plan_hash: &Digest, first: &Executed) {
        let check = match self
            .main
            .call(verbs::STATUS, json!({"plan_hash": plan_hash}))
        {
            Ok(Ok(result)) => {
                if result["state"] != json!(PlanState::Succeeded) {
                    Err(format!("status after execute is {}", result["state"]))
                } else if result["result_hash"] != json!(first.result_hash) {
                    Err(format!(
                        "status names result {}, execute returned {}",
                        result["result_hash"], first.result_hash
                    ))
                } else {
                    Ok("status after execute is succeeded, with the result's digest".to_owned())
                }
            }
            Ok(Err(e)) => Err(format!("status: {}", e.describe())),
            Err(no) => Err(format!("status: {no}")),
        };
        self.record("status.succeeded", check);
    }

    fn plan_after(&mut self, request: &Value, plan_hash: &Digest) {
        let check = match self.main.call(verbs::PLAN, request.clone()) {
            Ok(Ok(result)) if result["plan_hash"] == json!(plan_hash) => Err(
                "planning the same request after execute gives the same plan: the plan does not record the state its effect changed".to_owned(),
            ),
            Ok(Ok(_)) => Ok("planning again after execute gives a new plan".to_owned()),
            Ok(Err(e)) => Ok(format!("planning again after execute is refused: {}", e.describe())),
            Err(no) => Err(format!("plan: {no}")),
        };
        self.record("plan.after-execute", check);
    }
}

/// Checks an execute's successful `result`: it validates, its result and witness are stored
/// under their digests, the result is a success for `plan_hash` that applied exactly the
/// intended effects, and the witness links the plan, `admission`, the result and, exactly
/// when the plan is destructive, a force-ack.
fn check_executed(
    world: &World,
    result: &Value,
    plan_hash: &Digest,
    plan: &Plan,
    admission: &Digest,
    with_force_ack: bool,
) -> Result<Executed, String> {
    schema::validate(SchemaName::ExecuteResult, result)
        .map_err(|e| format!("the execute response: {e}"))?;
    let artifact = |field: &str, hash_field: &str| -> Result<(Artifact, Digest), String> {
        let artifact =
            Artifact::from_value(result[field].clone()).map_err(|e| format!("{field}: {e}"))?;
        schema::validate_artifact(&artifact).map_err(|e| format!("{field}: {e}"))?;
        let claimed: Digest = serde_json::from_value(result[hash_field].clone())
            .map_err(|e| format!("{hash_field}: {e}"))?;
        if artifact.digest() != claimed {
            return Err(format!(
                "{hash_field} is {claimed}, but the {field}'s digest is {}",
                artifact.digest()
            ));
        }
        world.holds(&claimed, artifact.value(), field)?;
        Ok((artifact, claimed))
    };
    let (result_artifact, result_hash) = artifact("result", "result_hash")?;
    let (witness_artifact, witness_hash) = artifact("witness", "witness_hash")?;
    let outcome: protocol::artifact::kinds::ResultArtifact =
        result_artifact.view().map_err(|e| e.to_string())?;
    if outcome.plan_hash != *plan_hash {
        return Err(format!("the result is for plan {}", outcome.plan_hash));
    }
    if outcome.status != ResultStatus::Success {
        return Err(format!(
            "the result says {:?}: {:?}",
            outcome.status, outcome.error
        ));
    }
    if !same_effects(&outcome.effects_applied, &plan.intended_effects) {
        return Err(format!(
            "effects_applied {} differ from intended_effects {}",
            json!(outcome.effects_applied),
            json!(plan.intended_effects)
        ));
    }
    let witness: ResultWitness = witness_artifact.view().map_err(|e| e.to_string())?;
    let p = &witness.predicate;
    if p.plan_hash != *plan_hash || p.result_hash != result_hash {
        return Err("the witness does not link this plan, admission and result".to_owned());
    }
    if p.admission_hash != *admission {
        return Err(format!(
            "the witness names admission {}, not this execute's {admission}: a result recorded by another execute, of a world since reset to the plan's base?",
            p.admission_hash
        ));
    }
    if p.force_ack_hash.is_some() != with_force_ack {
        return Err(format!(
            "the witness {} a force-ack, but the plan {} destructive",
            if p.force_ack_hash.is_some() {
                "names"
            } else {
                "does not name"
            },
            if with_force_ack { "is" } else { "is not" }
        ));
    }
    Ok(Executed {
        result_hash,
        witness_hash,
    })
}

/// Validates a describe result and reads it: schemas, params schemas, examples.
fn check_describe(result: &Value) -> Result<DescribeResult, String> {
    schema::validate(SchemaName::DescribeResult, result).map_err(|e| e.to_string())?;
    let described: DescribeResult =
        serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
    for operation in &described.operations {
        let validator = schema::compile(&operation.params_schema)
            .map_err(|e| format!("operation {}: params_schema: {e}", operation.name))?;
        for (i, example) in operation.examples.iter().enumerate() {
            validator.validate(&example.params).map_err(|e| {
                format!(
                    "{}#{}: the example's params fail its params_schema: {e}",
                    operation.name,
                    i + 1
                )
            })?;
            let given: Vec<&String> = example
                .inputs
                .iter()
                .flatten()
                .map(|(name, _)| name)
                .collect();
            if let Some(missing) = operation.inputs.iter().find(|name| !given.contains(name)) {
                return Err(format!(
                    "{}#{}: the example lacks input {missing:?}",
                    operation.name,
                    i + 1
                ));
            }
            if let Some(extra) = given.iter().find(|name| !operation.inputs.contains(name)) {
                return Err(format!(
                    "{}#{}: the example gives undeclared input {extra:?}",
                    operation.name,
                    i + 1
                ));
            }
        }
    }
    Ok(described)
}

/// The plan hash, the artifact and its typed view of a valid plan reply.
fn check_plan_reply(reply: Result<Reply, NoReply>) -> Result<(Digest, Value, Plan), String> {
    let result = reply
        .map_err(|no| format!("plan: {no}"))?
        .map_err(|e| format!("plan failed: {}", e.describe()))?;
    schema::validate(SchemaName::PlanResult, &result)
        .map_err(|e| format!("the plan response: {e}"))?;
    let plan_hash: Digest =
        serde_json::from_value(result["plan_hash"].clone()).map_err(|e| e.to_string())?;
    let artifact =
        Artifact::from_value(result["plan"].clone()).map_err(|e| format!("the plan: {e}"))?;
    schema::validate_artifact(&artifact).map_err(|e| format!("the plan: {e}"))?;
    let plan: Plan = artifact.view().map_err(|e| format!("the plan: {e}"))?;
    Ok((plan_hash, artifact.into_value(), plan))
}

fn same_plan(reply: Result<Reply, NoReply>, plan_hash: &Digest) -> Result<(), String> {
    let result = reply
        .map_err(|no| no.to_string())?
        .map_err(|e| format!("plan failed: {}", e.describe()))?;
    if result["plan_hash"] == json!(plan_hash) {
        Ok(())
    } else {
        Err(format!(
            "gave {} where the first plan was {plan_hash}",
            result["plan_hash"]
        ))
    }
}

/// Why a notification is not one the protocol defines (`progress`, valid against its schema).
fn notification_problem(notification: &Value) -> Option<String> {
    let shown = || excerpt(notification.to_string().as_bytes());
    if notification["method"] != verbs::PROGRESS {
        return Some(format!(
            "a notification the protocol does not define: {}",
            shown()
        ));
    }
    schema::validate(SchemaName::ProgressParams, &notification["params"])
        .err()
        .map(|e| format!("a progress notification with bad params ({e}): {}", shown()))
}

/// Whether two effect lists hold the same effects, in any order.
fn same_effects(a: &[Effect], b: &[Effect]) -> bool {
    let key = |effects: &[Effect]| {
        let mut keys: Vec<String> = effects.iter().map(|e| json!(e).to_string()).collect();
        keys.sort();
        keys
    };
    key(a) == key(b)
}

/// Requires a describe call after `what` to succeed: the connection survived it.
fn alive(main: &mut Peer, what: &str) -> Result<(), String> {
    match main.call(verbs::DESCRIBE, json!({})) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("describe after {what} failed: {}", e.describe())),
        Err(no) => Err(format!("the connection did not survive {what}: {no}")),
    }
}

/// Requires `reply` to be the error `code`, with its number and stable string.
fn expect_error(reply: Result<Reply, NoReply>, code: ErrorCode) -> Result<String, String> {
    match reply {
        Err(no) => Err(no.to_string()),
        Ok(Ok(result)) => Err(format!(
            "succeeded where {code} was required: {}",
            excerpt(result.to_string().as_bytes())
        )),
        Ok(Err(error)) => {
            if error.code.as_deref() == Some(code.as_str())
                && error.number == i64::from(code.number())
            {
                Ok(code.to_string())
            } else {
                Err(format!(
                    "expected {code} ({}), got {}",
                    code.number(),
                    error.describe()
                ))
            }
        }
    }
}

/// Requires a response object to be the error `code` with id `id`.
fn expect_error_response(response: &Value, code: ErrorCode, id: &Value) -> Result<(), String> {
    if response.get("id") != Some(id) {
        return Err(format!(
            "expected a response with id {id}, got {}",
            excerpt(response.to_string().as_bytes())
        ));
    }
    expect_error(Ok(super::peer::reply_of(response)), code).map(|_| ())
}

/// A describe request of exactly `limit + 1` bytes.
fn oversized_request(limit: u64) -> Vec<u8> {
    let frame = |pad: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"too-large","method":"describe","params":{{"pad":"{}"}}}}"#,
            "x".repeat(pad)
        )
    };
    let overhead = frame(0).len() as u64;
    let pad = (limit + 1).saturating_sub(overhead);
    frame(usize::try_from(pad).unwrap_or(usize::MAX)).into_bytes()
}

fn unchanged(world: &World, before: &Snapshot) -> Result<(), String> {
    let after = world.snapshot()?;
    match before.first_difference(&after) {
        None => Ok(()),
        Some(difference) => Err(format!("but the workspace changed: {difference}")),
    }
}

fn short(digest: &Digest) -> String {
    format!("sha256:{}", digest.hex().get(..12).unwrap_or_default())
}

fn tail(stderr: &str) -> String {
    match stderr.lines().last() {
        Some(last) => format!("; its stderr ends: {last}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(params_schema: Value) -> Value {
        json!({
            "protocol_version": verbs::PROTOCOL_VERSION,
            "mechanism": {"id": "m", "version": "1.0.0"},
            "operations": [{
                "name": "put",
                "description": "Write a file.",
                "params_schema": params_schema,
                "inputs": [],
                "effect_types": ["fs.write"],
                "destructive": "never",
                "determinism": "D0",
                "examples": [{"params": {}}]
            }],
            "capability_scope": [],
            "limits": {"max_message_bytes": 1048576, "max_inline_bytes": 32768}
        })
    }

    #[test]
    fn describe_fails_on_a_params_schema_that_does_not_compile_naming_the_operation() {
        let good = check_describe(&described(json!({"type": "object"})));
        assert!(good.is_ok(), "{good:?}");
        let reason = check_describe(&described(json!({"type": "nonsense"}))).unwrap_err();
        assert!(
            reason.starts_with("operation put: params_schema: "),
            "{reason}"
        );
    }
}
