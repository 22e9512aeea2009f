//! The ticket lifecycle end to end, over the real binaries: `ticket new|ready|show|list`,
//! `events add|process`, and `execute` completing a paused ticket. Every event outcome
//! (SCHEDULED, MISSING_TICKET, NON_EXECUTABLE_STATUS, BLOCKED), every way a scheduled run ends
//! for its ticket (DONE, FAILED, RUNNING paused on a force-ack), idempotence, refused input, and
//! every artifact of a cycle checked against its schema and its links.
//!
//! Each test has its own world: a real git repository at `ws/repo`, an operator key made by
//! `ssh-keygen` (`keys/`), and the store (`store`). Exit codes are asserted through assert_cmd,
//! which prints the command, its stdout and its stderr when the code is not the expected one.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use protocol::schema::{self, SchemaName};
use serde_json::{json, Value};
use tests::fixtures::{Operator, APPROVER};
use tests::output::{exits, json_of, stderr, stdout, string};
use tests::repo::{self, git};
use tests::World;

/// A test's world and the `admission` commands run in it.
struct Tix {
    w: World,
}

/// What the store's object directory holds: objects and their provenance sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Objects {
    count: usize,
    bytes: u64,
    sidecars: usize,
    sidecar_bytes: u64,
}

impl Tix {
    fn new() -> Self {
        Self { w: World::new() }
    }

    /// `admission --store store --workspace ws`, run in the scratch directory.
    fn admission(&self) -> Command {
        let mut cmd = self.w.s.admission();
        cmd.args(["--store", "store", "--workspace", "ws"]);
        cmd
    }

    /// `admission --json ARGS`: asserts the exit code and returns stdout as JSON.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut cmd = self.admission();
        cmd.arg("--json").args(args);
        json_of(&exits(&mut cmd, code))
    }

    /// `admission --json ARGS` expected to fail with exit 2: the error's message.
    fn refused(&self, args: &[&str]) -> String {
        let reply = self.json(args, 2);
        assert_eq!(reply["error"]["exit"], 2, "{reply:#}");
        string(&reply["error"]["message"])
    }

    /// Writes `value` as JSON to `name` in the scratch directory and returns `name`.
    fn write_json(&self, name: &str, value: &Value) -> String {
        self.w
            .s
            .write(name, serde_json::to_vec_pretty(value).expect("JSON"));
        name.to_owned()
    }

    /// Writes `NAME.diff`, the patch of what `edit` does to the repository (left as it was);
    /// returns the file's name, relative to the ticket files.
    fn patch(&self, name: &str, edit: impl FnOnce(&Path)) -> String {
        let patch = repo::patch_from_edits(&self.w.repo(), edit);
        assert!(!patch.is_empty(), "the edit for {name} made no patch");
        let file = format!("{name}.diff");
        self.w.s.write(&file, patch);
        file
    }

    /// A patch appending a line to `README.md`.
    fn append_patch(&self, name: &str) -> String {
        self.patch(name, |dir| {
            repo::write(
                dir,
                "README.md",
                &format!("# fixture\n\nA repository for tests.\n{name}\n"),
            );
        })
    }

    /// The ticket file's content for `id` applying the patch file `patch` to `repo`.
    fn ticket(&self, id: &str, patch: &str) -> Value {
        json!({
            "ticket_id": id,
            "objective": format!("Apply the change of {id} to the fixture repository"),
            "acceptance": ["the repository's main branch holds the change"],
            "work": {
                "mechanism": "git_apply_patch",
                "operation": "apply",
                "params": {
                    "repo": "repo",
                    "message": format!("apply {id}"),
                    "author": {"name": "Agent", "email": "agent@example.com"},
                },
                "inputs": {"patch": patch},
                "budget": {"wall_ms": 60000},
            },
        })
    }

    /// `ticket new` of `ticket` (written to `ID.ticket.json`), exit 0; returns the reply.
    fn file_ticket(&self, ticket: &Value) -> Value {
        let file = self.write_json(
            &format!("{}.ticket.json", string(&ticket["ticket_id"])),
            ticket,
        );
        let reply = self.json(&["ticket", "new", &file], 0);
        assert_eq!(reply["ticket_id"], ticket["ticket_id"], "{reply:#}");
        assert_eq!(reply["created"], true, "{reply:#}");
        reply
    }

    /// `ticket ready ID`, exit 0; returns the reply.
    fn ready(&self, id: &str) -> Value {
        let reply = self.json(&["ticket", "ready", id], 0);
        assert_eq!(reply["status"], "READY", "{reply:#}");
        assert_eq!(reply["ticket_id"], id, "{reply:#}");
        reply
    }

    /// `events process`, exit 0: what it processed.
    fn process(&self) -> Vec<Value> {
        let reply = self.json(&["events", "process"], 0);
        reply["processed"]
            .as_array()
            .unwrap_or_else(|| panic!("no processed list in {reply:#}"))
            .clone()
    }

    /// `events process` of exactly one pending event: its entry.
    fn process_one(&self) -> Value {
        let processed = self.process();
        assert_eq!(processed.len(), 1, "{processed:#?}");
        processed[0].clone()
    }

    /// `events add` of `event` written to `name`, exit 0; returns the reply.
    fn add_event(&self, name: &str, event: &Value) -> Value {
        let file = self.write_json(name, event);
        self.json(&["events", "add", &file], 0)
    }

    /// `ticket show ID --json`.
    fn show(&self, id: &str) -> Value {
        let shown = self.json(&["ticket", "show", id], 0);
        assert_eq!(shown["ticket_id"], id, "{shown:#}");
        shown
    }

    /// The stored object `digest`, read back with `admission cat`.
    fn cat(&self, digest: &Value) -> Value {
        let digest = string(digest);
        let mut cmd = self.admission();
        cmd.args(["cat", &digest]);
        json_of(&exits(&mut cmd, 0))
    }

    /// The stored artifact `digest` of `kind`, valid against its schema.
    fn artifact(&self, digest: &Value, kind: &str) -> Value {
        let value = self.cat(digest);
        assert_eq!(value["kind"], kind, "{digest} is {value:#}");
        valid(&value);
        value
    }

    /// The ticket's latest pause state, as the artifact stored.
    fn pause_state(&self, id: &str) -> (Value, Value) {
        let shown = self.show(id);
        let digest = shown["pause_state"]["digest"].clone();
        assert!(digest.is_string(), "no pause state for {id}: {shown:#}");
        let pause = self.artifact(&digest, "mechanism.pause-state/v0");
        assert_eq!(pause["ticket_id"], id, "{pause:#}");
        (digest, pause)
    }

    /// Runs a pause state's action as pasted: its words, the first being `admission`.
    fn run_action(&self, command: &str, code: i32) -> Output {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"admission"), "{command}");
        let mut cmd = self.w.s.admission();
        cmd.args(&words[1..]);
        exits(&mut cmd, code)
    }

    /// Count and size of the files under the store's object directory.
    fn objects(&self) -> Objects {
        let mut objects = Objects {
            count: 0,
            bytes: 0,
            sidecars: 0,
            sidecar_bytes: 0,
        };
        walk(&self.w.store().join("objects"), &mut objects);
        objects
    }

    /// The ticket ids `ticket list` shows.
    fn listed(&self) -> Vec<String> {
        let list = self.json(&["ticket", "list"], 0);
        list["tickets"]
            .as_array()
            .unwrap_or_else(|| panic!("no tickets in {list:#}"))
            .iter()
            .map(|t| string(&t["ticket_id"]))
            .collect()
    }
}

fn walk(dir: &Path, objects: &mut Objects) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path: PathBuf = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, objects);
            continue;
        }
        let size = path.metadata().expect("object metadata").len();
        if path.to_string_lossy().ends_with(".prov.json") {
            objects.sidecars += 1;
            objects.sidecar_bytes += size;
        } else {
            objects.count += 1;
            objects.bytes += size;
        }
    }
}

/// Asserts that an artifact validates against the schema of its kind.
fn valid(value: &Value) {
    let kind = value["kind"].as_str().unwrap_or_default();
    let name = SchemaName::for_kind(kind).unwrap_or_else(|| panic!("no schema for {value:#}"));
    if let Err(e) = schema::validate(name, value) {
        panic!("{kind} does not validate: {e}\n{value:#}");
    }
}

/// The pending event `TICKET_READY` for `ticket_id`.
fn ready_event(event_id: &str, ticket_id: &str) -> Value {
    json!({"event_id": event_id, "type": "TICKET_READY", "ticket_id": ticket_id})
}

/// The commands of a list of actions.
fn commands(actions: &Value) -> Vec<String> {
    actions
        .as_array()
        .unwrap_or_else(|| panic!("no actions: {actions:#}"))
        .iter()
        .map(|a| string(&a["command"]))
        .collect()
}

/// A stored ticket, run record and pause state of a FAILED ticket, checked; returns
/// (the run record, the ticket).
fn failed_cycle(t: &Tix, id: &str, processed: &Value) -> (Value, Value) {
    assert_eq!(processed["outcome"], "SCHEDULED", "{processed:#}");
    assert_eq!(processed["ticket_status"], "FAILED", "{processed:#}");
    let record = t.artifact(&processed["run_record"], "mechanism.run-record/v0");
    assert_eq!(record["decision"], "FAIL", "{record:#}");
    assert_eq!(record["ticket_id"], id, "{record:#}");
    assert_eq!(record["run_uid"], processed["run_uid"], "{record:#}");
    let shown = t.show(id);
    let ticket = shown["ticket"].clone();
    assert_eq!(ticket["status"], "FAILED", "{shown:#}");
    assert_eq!(shown["digest"], processed["ticket"], "{shown:#}");
    assert_eq!(
        ticket["resolution"]["run_record"], processed["run_record"],
        "{shown:#}"
    );
    assert_eq!(
        ticket["resolution"]["error"], record["error"],
        "the ticket keeps the run's error: {shown:#}"
    );
    assert!(ticket["resolution"].get("commit").is_none(), "{shown:#}");
    let (digest, pause) = t.pause_state(id);
    assert_eq!(digest, processed["pause_state"]);
    assert_eq!(pause["status"], "FAILED", "{pause:#}");
    assert_eq!(pause["ticket"], shown["digest"], "{pause:#}");
    assert_eq!(pause["run_record"], processed["run_record"], "{pause:#}");
    assert!(
        commands(&pause["actions"])
            .iter()
            .any(|c| c.ends_with(&format!("ticket ready {id}"))),
        "a failed ticket is run again by making it ready: {pause:#}"
    );
    (record, ticket)
}

#[test]
fn a_ready_ticket_runs_to_done_with_its_commit_and_a_pause_state_whose_actions_run() {
    let t = Tix::new();
    let head = t.w.head();
    let patch = t.append_patch("happy");
    let before = t.objects();

    let filed = t.file_ticket(&t.ticket("OPS-1", &patch));
    assert_eq!(filed["status"], "NEW", "{filed:#}");
    let ready = t.ready("OPS-1");
    assert_ne!(ready["ticket"], filed["ticket"], "READY is a new version");
    let processed = t.process_one();
    let after = t.objects();
    eprintln!(
        "one happy cycle (ticket new, ready, process) adds {} objects ({} bytes) and {} \
         provenance sidecars ({} bytes); store total {} objects, {} bytes",
        after.count - before.count,
        after.bytes - before.bytes,
        after.sidecars - before.sidecars,
        after.sidecar_bytes - before.sidecar_bytes,
        after.count,
        after.bytes,
    );

    assert_eq!(processed["event_id"], ready["event_id"], "{processed:#}");
    assert_eq!(processed["ticket_id"], "OPS-1", "{processed:#}");
    assert_eq!(processed["outcome"], "SCHEDULED", "{processed:#}");
    assert_eq!(processed["run_outcome"], "succeeded", "{processed:#}");
    assert_eq!(processed["ticket_status"], "DONE", "{processed:#}");

    // The commit is the repository's new HEAD, made from the ticket's patch.
    let new_head = t.w.head();
    assert_ne!(new_head, head, "the run committed");
    assert_eq!(repo::rev(&t.w.repo(), "HEAD~1"), head);
    assert!(git(&t.w.repo(), &["show", "HEAD:README.md"]).contains("happy"));
    let shown = t.show("OPS-1");
    assert_eq!(shown["ticket"]["status"], "DONE", "{shown:#}");
    assert_eq!(shown["digest"], processed["ticket"], "{shown:#}");
    assert_eq!(
        shown["ticket"]["resolution"]["commit"], new_head,
        "{shown:#}"
    );
    assert_eq!(
        shown["ticket"]["resolution"]["run_record"], processed["run_record"],
        "{shown:#}"
    );
    // NEW, READY, RUNNING, DONE, newest first.
    let history = shown["history"].as_array().expect("history");
    assert_eq!(history.len(), 4, "{shown:#}");
    assert_eq!(history[0], shown["digest"]);
    assert_eq!(history[2], ready["ticket"]);
    assert_eq!(history[3], filed["ticket"]);
    assert_eq!(
        shown["events"],
        json!([{"event_id": ready["event_id"], "digest": processed["event"],
                "processed": true, "outcome": "SCHEDULED"}]),
        "{shown:#}"
    );
    let list = t.json(&["ticket", "list"], 0);
    assert_eq!(list["tickets"][0]["ticket_id"], "OPS-1", "{list:#}");
    assert_eq!(list["tickets"][0]["status"], "DONE", "{list:#}");
    assert_eq!(list["tickets"][0]["digest"], shown["digest"], "{list:#}");

    // The pause state names the DONE version and the run, and its first action runs as pasted.
    let (digest, pause) = t.pause_state("OPS-1");
    assert_eq!(digest, processed["pause_state"]);
    assert_eq!(pause["status"], "DONE", "{pause:#}");
    assert_eq!(pause["ticket"], shown["digest"], "{pause:#}");
    assert_eq!(pause["run_record"], processed["run_record"], "{pause:#}");
    assert_eq!(pause["run_uid"], processed["run_uid"], "{pause:#}");
    assert_eq!(pause["event_id"], ready["event_id"], "{pause:#}");
    assert_eq!(pause["actions"], processed["actions"], "{pause:#}");
    let first = commands(&pause["actions"])[0].clone();
    let out = t.run_action(&first, 0);
    assert!(
        stdout(&out).contains("verified"),
        "{first}\n{}{}",
        stdout(&out),
        stderr(&out)
    );

    // Processing again finds nothing pending and writes nothing.
    let settled = t.objects();
    assert!(t.process().is_empty());
    assert_eq!(t.objects(), settled, "a second process stores nothing");
    assert_eq!(t.w.head(), new_head);
    assert_eq!(t.show("OPS-1")["digest"], shown["digest"]);
}

#[test]
fn an_event_for_an_unknown_ticket_is_missing_and_one_for_a_done_ticket_leaves_it_unchanged() {
    let t = Tix::new();
    let patch = t.append_patch("done");
    t.file_ticket(&t.ticket("OPS-2", &patch));
    t.ready("OPS-2");
    assert_eq!(t.process_one()["ticket_status"], "DONE");
    let done = t.show("OPS-2");
    let head = t.w.head();

    let missing = t.add_event("missing.json", &ready_event("ev-missing", "NOPE-404"));
    assert_eq!(missing["added"], true, "{missing:#}");
    let again = t.add_event("again.json", &ready_event("ev-done", "OPS-2"));
    assert_eq!(again["added"], true, "{again:#}");
    let processed = t.process();
    assert_eq!(processed.len(), 2, "{processed:#?}");

    // In arrival order: the unknown ticket first, with no pause state (no ticket to pause).
    let m = &processed[0];
    assert_eq!(m["event_id"], "ev-missing", "{m:#}");
    assert_eq!(m["outcome"], "MISSING_TICKET", "{m:#}");
    assert!(string(&m["reason"]).contains("NOPE-404"), "{m:#}");
    assert!(m.get("pause_state").is_none(), "{m:#}");
    assert!(m.get("run_uid").is_none(), "{m:#}");
    assert!(!t.listed().contains(&"NOPE-404".to_owned()));
    let event = t.artifact(&m["event"], "mechanism.event/v0");
    assert_eq!(event["processed"], true, "{event:#}");
    assert_eq!(
        event["resolution"]["outcome"], "MISSING_TICKET",
        "{event:#}"
    );
    assert_eq!(event["previous"], missing["event"], "{event:#}");

    let n = &processed[1];
    assert_eq!(n["event_id"], "ev-done", "{n:#}");
    assert_eq!(n["outcome"], "NON_EXECUTABLE_STATUS", "{n:#}");
    assert_eq!(n["ticket_status"], "DONE", "{n:#}");
    assert!(string(&n["reason"]).contains("DONE"), "{n:#}");
    assert!(n.get("run_uid").is_none(), "nothing ran: {n:#}");
    let after = t.show("OPS-2");
    assert_eq!(after["digest"], done["digest"], "the ticket is unchanged");
    assert_eq!(after["history"], done["history"]);
    assert_eq!(t.w.head(), head, "nothing committed");
    let (digest, pause) = t.pause_state("OPS-2");
    assert_eq!(digest, n["pause_state"]);
    assert_eq!(pause["status"], "DONE", "{pause:#}");
    assert_eq!(pause["ticket"], done["digest"], "{pause:#}");
    assert_eq!(pause["event_id"], "ev-done", "{pause:#}");
}

#[test]
fn a_ticket_blocked_on_an_unfinished_ticket_pauses_then_runs_once_the_blocker_is_done() {
    let t = Tix::new();
    let first = t.append_patch("blocker");
    t.file_ticket(&t.ticket("OPS-3", &first));
    let second = t.patch("blocked", |dir| {
        repo::write(dir, "docs/new.txt", "a new page\n");
    });
    let mut blocked = t.ticket("OPS-4", &second);
    blocked["status"] = json!("TODO");
    blocked["blocked_on"] = json!([{"ticket_id": "OPS-3", "reason": "lands after OPS-3"}]);
    t.file_ticket(&blocked);
    let head = t.w.head();

    // `ticket ready` refuses it, saying on what it waits.
    let why = t.refused(&["ticket", "ready", "OPS-4"]);
    assert!(why.contains("OPS-3"), "{why}");

    t.add_event("blocked.json", &ready_event("ev-blocked", "OPS-4"));
    let b = t.process_one();
    assert_eq!(b["outcome"], "BLOCKED", "{b:#}");
    assert_eq!(b["ticket_status"], "BLOCKED", "{b:#}");
    assert_eq!(
        b["blockers"],
        json!([{"ticket_id": "OPS-3", "reason": "lands after OPS-3"}]),
        "{b:#}"
    );
    assert!(b.get("run_uid").is_none(), "nothing ran: {b:#}");
    assert_eq!(t.w.head(), head);
    let shown = t.show("OPS-4");
    assert_eq!(shown["ticket"]["status"], "BLOCKED", "{shown:#}");
    assert_eq!(shown["digest"], b["ticket"], "{shown:#}");
    let (digest, pause) = t.pause_state("OPS-4");
    assert_eq!(digest, b["pause_state"]);
    assert_eq!(pause["status"], "BLOCKED", "{pause:#}");
    assert_eq!(pause["ticket"], shown["digest"], "{pause:#}");
    assert!(string(&pause["reason"]).contains("OPS-3"), "{pause:#}");
    assert!(
        commands(&pause["actions"])
            .iter()
            .any(|c| c.ends_with("ticket ready OPS-4")),
        "{pause:#}"
    );
    let event = t.artifact(&b["event"], "mechanism.event/v0");
    assert_eq!(event["resolution"]["blockers"], b["blockers"], "{event:#}");

    // The blocker done, the blocked ticket is ready and runs.
    t.ready("OPS-3");
    assert_eq!(t.process_one()["ticket_status"], "DONE");
    t.ready("OPS-4");
    let run = t.process_one();
    assert_eq!(run["outcome"], "SCHEDULED", "{run:#}");
    assert_eq!(run["ticket_status"], "DONE", "{run:#}");
    let shown = t.show("OPS-4");
    assert_eq!(shown["ticket"]["resolution"]["commit"], t.w.head());
    assert!(t.w.repo().join("docs/new.txt").is_file());
}

#[test]
fn params_the_operation_refuses_fail_the_ticket_with_the_error_kept() {
    let t = Tix::new();
    let head = t.w.head();
    let patch = t.append_patch("bad-params");
    let mut ticket = t.ticket("OPS-5", &patch);
    ticket["work"]["params"]["colour"] = json!("blue");
    t.file_ticket(&ticket);
    t.ready("OPS-5");
    let processed = t.process_one();
    assert_eq!(processed["run_outcome"], "error", "{processed:#}");
    let (record, ticket) = failed_cycle(&t, "OPS-5", &processed);
    assert_eq!(record["error"]["code"], "INVALID_PARAMS", "{record:#}");
    assert!(
        string(&ticket["resolution"]["error"]["message"]).contains("colour"),
        "the error names the param: {ticket:#}"
    );
    assert_eq!(t.w.head(), head, "nothing committed");
}

#[test]
fn a_gate_denial_fails_the_ticket_naming_the_gate() {
    let t = Tix::new();
    let head = t.w.head();
    let patch = t.append_patch("denied");
    let mut ticket = t.ticket("OPS-6", &patch);
    ticket["work"]["budget"] = json!({"wall_ms": 60000, "files_touched": 0});
    t.file_ticket(&ticket);
    t.ready("OPS-6");
    let processed = t.process_one();
    assert_eq!(processed["run_outcome"], "denied", "{processed:#}");
    let (record, _) = failed_cycle(&t, "OPS-6", &processed);
    assert_eq!(record["failed_gate"], "G-BUDGET", "{record:#}");
    assert_eq!(record["error"]["code"], "BUDGET_EXCEEDED", "{record:#}");
    let admission = t.artifact(&record["admission_hash"], "mechanism.admission-witness/v0");
    assert_eq!(admission["decision"], "DENY", "{admission:#}");
    assert_eq!(t.w.head(), head, "nothing committed");
}

#[test]
fn an_expired_budget_fails_the_ticket_and_commits_nothing() {
    let t = Tix::new();
    let head = t.w.head();
    let patch = t.append_patch("expired");
    let mut ticket = t.ticket("OPS-7", &patch);
    ticket["work"]["budget_ms"] = json!(1);
    t.file_ticket(&ticket);
    t.ready("OPS-7");
    let processed = t.process_one();
    let (record, ticket) = failed_cycle(&t, "OPS-7", &processed);
    assert_eq!(record["error"]["code"], "BUDGET_EXCEEDED", "{record:#}");
    assert_eq!(
        ticket["resolution"]["error"]["code"], "BUDGET_EXCEEDED",
        "{ticket:#}"
    );
    assert!(record.get("witness_hash").is_none(), "{record:#}");
    let workorder = t.artifact(&record["workorder"], "mechanism.workorder/v0");
    assert_eq!(workorder["budget_ms"], 1, "{workorder:#}");
    assert_eq!(t.w.head(), head, "nothing committed");
    assert!(
        !git(&t.w.repo(), &["show", "HEAD:README.md"]).contains("expired"),
        "the patch was not applied"
    );
}

#[test]
fn a_destructive_ticket_pauses_running_until_approved_and_executed() {
    let t = Tix::new();
    let head = t.w.head();
    let patch = t.patch("delete", |dir| {
        git(dir, &["rm", "-q", "src/old.rs"]);
    });
    t.file_ticket(&t.ticket("OPS-8", &patch));
    t.ready("OPS-8");
    let processed = t.process_one();
    assert_eq!(processed["outcome"], "SCHEDULED", "{processed:#}");
    assert_eq!(
        processed["run_outcome"], "awaiting_force_ack",
        "{processed:#}"
    );
    assert_eq!(processed["ticket_status"], "RUNNING", "{processed:#}");
    assert_eq!(t.w.head(), head, "nothing committed without an approval");
    assert!(t.w.repo().join("src/old.rs").is_file());

    let running = t.show("OPS-8");
    assert_eq!(running["ticket"]["status"], "RUNNING", "{running:#}");
    let (paused_digest, pause) = t.pause_state("OPS-8");
    assert_eq!(paused_digest, processed["pause_state"]);
    assert_eq!(pause["status"], "RUNNING", "{pause:#}");
    assert_eq!(pause["ticket"], running["digest"], "{pause:#}");
    let record = t.artifact(&processed["run_record"], "mechanism.run-record/v0");
    let plan = string(&record["plan_hash"]);
    let actions = commands(&pause["actions"]);
    assert!(
        actions[0].contains(&format!(" approve {plan} ")),
        "first approve: {actions:#?}"
    );
    // ... which records the approval, so execute needs no force-ack file.
    assert!(
        actions[1].contains(&format!(" execute {plan}")) && !actions[1].contains("--force-ack"),
        "then execute: {actions:#?}"
    );

    // The operator pastes both, filling in the key, the name and the allowed signers.
    let operator = &t.w.operator;
    let approve = actions[0]
        .replace("~/.ssh/id_ed25519", &operator.key.to_string_lossy())
        .replace("YOU@EXAMPLE.COM", APPROVER);
    t.run_action(&approve, 0);
    let execute = format!(
        "admission --json {}",
        actions[1].trim_start_matches("admission ").replace(
            "ALLOWED_SIGNERS",
            &operator.allowed_signers.to_string_lossy()
        )
    );
    let report = json_of(&t.run_action(&execute, 0));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(report["ticket"]["ticket_id"], "OPS-8", "{report:#}");
    assert_eq!(report["ticket"]["status"], "DONE", "{report:#}");

    let new_head = t.w.head();
    assert_ne!(new_head, head);
    assert!(
        !t.w.repo().join("src/old.rs").exists(),
        "the file is deleted"
    );
    let done = t.show("OPS-8");
    assert_eq!(done["ticket"]["status"], "DONE", "{done:#}");
    assert_eq!(done["digest"], report["ticket"]["ticket"], "{done:#}");
    assert_eq!(done["ticket"]["resolution"]["commit"], new_head, "{done:#}");
    assert_eq!(
        done["ticket"]["resolution"]["run_record"], report["run_record"],
        "{done:#}"
    );
    let (digest, pause) = t.pause_state("OPS-8");
    assert_ne!(digest, paused_digest, "a new pause state");
    assert_eq!(digest, report["ticket"]["pause_state"]);
    assert_eq!(pause["status"], "DONE", "{pause:#}");
    assert_eq!(pause["ticket"], done["digest"], "{pause:#}");
    assert_eq!(pause["run_record"], report["run_record"], "{pause:#}");
}

#[test]
fn events_are_added_once_and_an_event_id_names_one_event() {
    let t = Tix::new();
    let patch = t.append_patch("events");
    t.file_ticket(&t.ticket("OPS-9", &patch));
    let first = t.add_event("ev.json", &ready_event("ev-1", "OPS-9"));
    assert_eq!(first["added"], true, "{first:#}");
    let objects = t.objects();
    let again = t.json(&["events", "add", "ev.json"], 0);
    assert_eq!(again["added"], false, "{again:#}");
    assert_eq!(again["event"], first["event"], "{again:#}");
    assert_eq!(again["seq"], first["seq"], "{again:#}");
    assert_eq!(t.objects(), objects, "nothing written");

    t.write_json("other.json", &ready_event("ev-1", "OPS-404"));
    let why = t.refused(&["events", "add", "other.json"]);
    assert!(why.contains("ev-1"), "{why}");
    assert_eq!(t.objects(), objects, "nothing written");
    // Only the one event is pending.
    let processed = t.process();
    assert_eq!(processed.len(), 1, "{processed:#?}");
    assert_eq!(processed[0]["ticket_id"], "OPS-9");
}

#[test]
fn ticket_files_that_are_unclear_or_name_work_that_cannot_run_are_refused() {
    let t = Tix::new();
    let patch = t.append_patch("refused");
    let filed = t.file_ticket(&t.ticket("OPS-10", &patch));
    let objects = t.objects();

    // The same ticket again is no change; other content under its id is refused.
    let again = t.json(&["ticket", "new", "OPS-10.ticket.json"], 0);
    assert_eq!(again["created"], false, "{again:#}");
    assert_eq!(again["ticket"], filed["ticket"], "{again:#}");
    let mut other = t.ticket("OPS-10", &patch);
    other["acceptance"] = json!(["something else entirely"]);
    t.write_json("OPS-10.other.json", &other);
    let why = t.refused(&["ticket", "new", "OPS-10.other.json"]);
    assert!(
        why.contains("OPS-10") && why.contains("already exists"),
        "{why}"
    );
    assert_eq!(t.objects(), objects, "nothing stored");

    let refused = |name: &str, edit: &dyn Fn(&mut Value)| -> String {
        let mut ticket = t.ticket(name, &patch);
        edit(&mut ticket);
        let file = t.write_json(&format!("{name}.json"), &ticket);
        let why = t.refused(&["ticket", "new", &file]);
        assert!(!t.listed().contains(&name.to_owned()), "{name} was filed");
        why
    };

    let why = refused("BAD-1", &|t| t["acceptence"] = json!(["typo"]));
    assert!(
        why.contains("\"acceptence\"") && why.contains("did you mean \"acceptance\""),
        "{why}"
    );
    assert_eq!(t.objects(), objects, "nothing stored");
    let why = refused("BAD-2", &|t| t["acceptance"] = json!([]));
    assert!(why.contains("acceptance"), "{why}");
    assert_eq!(t.objects(), objects, "nothing stored");
    let why = refused("BAD-3", &|t| t["objective"] = json!("TODO"));
    assert!(why.contains("TODO") && why.contains("placeholder"), "{why}");
    assert_eq!(t.objects(), objects, "nothing stored");
    let why = refused("BAD-4", &|t| {
        t["work"]["mechanism"] = json!("no_such_mechanism");
    });
    assert!(
        why.contains("no_such_mechanism") && why.contains("not in the registry"),
        "{why}"
    );
    let why = refused("BAD-5", &|t| t["work"]["operation"] = json!("frobnicate"));
    assert!(
        why.contains("frobnicate") && why.contains("git_apply_patch"),
        "{why}"
    );
    assert_eq!(t.listed(), vec!["OPS-10".to_owned()]);

    // A DONE ticket is not made ready again, and says why.
    t.ready("OPS-10");
    assert_eq!(t.process_one()["ticket_status"], "DONE");
    let done = t.show("OPS-10");
    let why = t.refused(&["ticket", "ready", "OPS-10"]);
    assert!(why.contains("OPS-10") && why.contains("DONE"), "{why}");
    assert_eq!(t.show("OPS-10")["digest"], done["digest"]);
    assert!(t.process().is_empty(), "no event was added");
}

#[test]
fn every_artifact_of_a_cycle_validates_and_links_to_the_others() {
    let t = Tix::new();
    let patch = t.append_patch("walk");
    t.file_ticket(&t.ticket("OPS-11", &patch));
    t.ready("OPS-11");
    let processed = t.process_one();
    assert_eq!(processed["ticket_status"], "DONE", "{processed:#}");
    let shown = t.show("OPS-11");

    // Every ticket version, newest first, each naming the one before it.
    let history = shown["history"].as_array().expect("history").clone();
    let mut versions = Vec::new();
    for (n, digest) in history.iter().enumerate() {
        let version = t.artifact(digest, "mechanism.ticket/v0");
        assert_eq!(version["ticket_id"], "OPS-11", "{version:#}");
        match history.get(n + 1) {
            Some(older) => assert_eq!(&version["previous"], older, "{version:#}"),
            None => assert!(version.get("previous").is_none(), "{version:#}"),
        }
        versions.push(version);
    }
    let statuses: Vec<&Value> = versions.iter().map(|v| &v["status"]).collect();
    assert_eq!(
        statuses,
        ["DONE", "RUNNING", "READY", "NEW"],
        "{history:#?}"
    );

    // The processed event and its pending version.
    let event = t.artifact(&processed["event"], "mechanism.event/v0");
    assert_eq!(event["processed"], true, "{event:#}");
    assert_eq!(event["ticket_id"], "OPS-11", "{event:#}");
    let resolution = &event["resolution"];
    assert_eq!(resolution["outcome"], "SCHEDULED", "{event:#}");
    assert_eq!(
        resolution["run_record"], processed["run_record"],
        "{event:#}"
    );
    assert_eq!(resolution["ticket"], shown["digest"], "{event:#}");
    assert_eq!(
        resolution["pause_state"], processed["pause_state"],
        "{event:#}"
    );
    let pending = t.artifact(&event["previous"], "mechanism.event/v0");
    assert_eq!(pending["processed"], false, "{pending:#}");
    assert_eq!(pending["event_id"], event["event_id"], "{pending:#}");

    // The run record, its workorder, the workorder's snapshot, the output bundle.
    let record = t.artifact(&processed["run_record"], "mechanism.run-record/v0");
    assert_eq!(record["ticket_id"], "OPS-11", "{record:#}");
    assert_eq!(record["run_uid"], processed["run_uid"], "{record:#}");
    let workorder = t.artifact(&record["workorder"], "mechanism.workorder/v0");
    assert_eq!(workorder["ticket_id"], "OPS-11", "{workorder:#}");
    assert_eq!(
        workorder["work_order_id"],
        format!("OPS-11@{}", string(&event["event_id"])),
        "{workorder:#}"
    );
    assert_eq!(workorder["work_order_id"], record["work_order_id"]);
    let snapshot = t.artifact(
        &workorder["context_snapshot_id"],
        "mechanism.context-snapshot/v0",
    );
    assert_eq!(snapshot["ticket_id"], "OPS-11", "{snapshot:#}");
    assert!(
        history.contains(&snapshot["ticket"]),
        "the snapshot is of a version of the ticket: {snapshot:#}"
    );
    assert_eq!(t.cat(&snapshot["ticket"])["status"], "RUNNING");
    assert_eq!(snapshot["plan_hash"], record["plan_hash"], "{snapshot:#}");
    let bundle = t.artifact(&record["output_id"], "mechanism.output-bundle/v0");
    assert_eq!(bundle["run_uid"], record["run_uid"], "{bundle:#}");
    assert_eq!(
        bundle["work_order_id"], record["work_order_id"],
        "{bundle:#}"
    );
    for digest in [
        "plan_hash",
        "admission_hash",
        "force_ack_hash",
        "result_hash",
        "witness_hash",
    ] {
        assert_eq!(
            bundle.get(digest),
            record.get(digest),
            "{digest}: {bundle:#}"
        );
    }
    assert!(record["witness_hash"].is_string(), "{record:#}");
    assert_eq!(bundle["commit"], t.w.head(), "{bundle:#}");
    assert_eq!(
        versions[0]["resolution"]["commit"], bundle["commit"],
        "{bundle:#}"
    );

    // The pause state names the DONE version and the run.
    let pause = t.artifact(&processed["pause_state"], "mechanism.pause-state/v0");
    assert_eq!(pause["ticket"], shown["digest"], "{pause:#}");
    assert_eq!(pause["run_record"], processed["run_record"], "{pause:#}");
}

#[test]
fn a_paused_ticket_stays_running_through_an_event_and_a_refused_force_ack_and_fails_when_stale() {
    let t = Tix::new();
    let patch = t.patch("delete", |dir| {
        git(dir, &["rm", "-q", "src/old.rs"]);
    });
    t.file_ticket(&t.ticket("OPS-12", &patch));
    t.ready("OPS-12");
    let paused = t.process_one();
    assert_eq!(paused["ticket_status"], "RUNNING", "{paused:#}");
    let running = t.show("OPS-12")["digest"].clone();

    // Another event finds it RUNNING: nothing runs, the approve and execute commands stand.
    t.add_event("again.json", &ready_event("ev-again", "OPS-12"));
    let again = t.process_one();
    assert_eq!(again["outcome"], "NON_EXECUTABLE_STATUS", "{again:#}");
    assert_eq!(again["ticket_status"], "RUNNING", "{again:#}");
    assert!(again.get("run_uid").is_none(), "{again:#}");
    assert_eq!(again["actions"], paused["actions"], "{again:#}");
    assert_eq!(
        t.show("OPS-12")["digest"],
        running,
        "the ticket is unchanged"
    );
    let ready = t.json(&["ticket", "ready", "OPS-12"], 2);
    assert!(
        string(&ready["error"]["message"]).contains("RUNNING"),
        "{ready:#}"
    );

    // A force-ack by a key not trusted: refused, and the ticket still waits for one.
    let record = t.artifact(&paused["run_record"], "mechanism.run-record/v0");
    let plan = string(&record["plan_hash"]);
    let stranger = Operator::new(&t.w.s.path("stranger"));
    let mut approve = t.admission();
    approve
        .args(["approve", &plan, "--approver", APPROVER, "--key"])
        .arg(&stranger.key)
        .args(["-o", "stranger-ack.json"]);
    exits(&mut approve, 0);
    let head = t.w.head();
    let mut execute = t.admission();
    execute
        .args([
            "--json",
            "execute",
            &plan,
            "--force-ack",
            "stranger-ack.json",
        ])
        .arg("--allowed-signers")
        .arg(&t.w.operator.allowed_signers);
    let refused = json_of(&exits(&mut execute, 3));
    assert_eq!(refused["error"]["code"], "FORCE_ACK_INVALID", "{refused:#}");
    assert_eq!(refused["ticket"]["status"], "RUNNING", "{refused:#}");
    assert_eq!(t.w.head(), head, "nothing committed");
    let (digest, pause) = t.pause_state("OPS-12");
    assert_eq!(digest, refused["ticket"]["pause_state"]);
    assert_eq!(pause["status"], "RUNNING", "{pause:#}");
    let actions = commands(&pause["actions"]);
    assert!(
        actions[0].contains(&format!(" approve {plan} ")),
        "{actions:#?}"
    );

    // The repository moves on before the approval: the plan is stale and the ticket FAILED.
    repo::write(&t.w.repo(), "docs/late.txt", "late\n");
    git(&t.w.repo(), &["add", "-A"]);
    git(&t.w.repo(), &["commit", "-q", "-m", "late"]);
    let mut approve = t.admission();
    approve
        .args(["approve", &plan, "--approver", APPROVER, "--key"])
        .arg(&t.w.operator.key)
        .args(["-o", "ack.json"]);
    exits(&mut approve, 0);
    let mut execute = t.admission();
    execute
        .args(["--json", "execute", &plan, "--force-ack", "ack.json"])
        .arg("--allowed-signers")
        .arg(&t.w.operator.allowed_signers);
    let stale = json_of(&exits(&mut execute, 6));
    assert_eq!(stale["error"]["code"], "STALE_PLAN", "{stale:#}");
    assert_eq!(stale["ticket"]["status"], "FAILED", "{stale:#}");
    let failed = t.show("OPS-12");
    assert_eq!(failed["ticket"]["status"], "FAILED", "{failed:#}");
    assert_eq!(
        failed["ticket"]["resolution"]["error"]["code"], "STALE_PLAN",
        "{failed:#}"
    );
    assert!(t.w.repo().join("src/old.rs").is_file(), "nothing deleted");

    // Made ready again, it plans against the new state and pauses for a fresh approval.
    t.ready("OPS-12");
    let replanned = t.process_one();
    assert_eq!(replanned["ticket_status"], "RUNNING", "{replanned:#}");
    let record = t.artifact(&replanned["run_record"], "mechanism.run-record/v0");
    assert_ne!(string(&record["plan_hash"]), plan, "a new plan");
}

#[test]
fn a_ticket_refused_for_its_work_stores_nothing_not_even_its_inputs() {
    let t = Tix::new();
    let patch = t.append_patch("orphan");
    t.file_ticket(&t.ticket("OPS-13", &t.append_patch("kept")));
    let objects = t.objects();
    for (id, member, value) in [
        ("BAD-6", "mechanism", "no_such_mechanism"),
        ("BAD-7", "operation", "frobnicate"),
    ] {
        let mut ticket = t.ticket(id, &patch);
        ticket["work"][member] = json!(value);
        let file = t.write_json(&format!("{id}.json"), &ticket);
        let why = t.refused(&["ticket", "new", &file]);
        assert!(why.contains(value), "{why}");
        assert_eq!(
            t.objects(),
            objects,
            "refusing {id} (work.{member} {value}) stored its patch all the same"
        );
    }
}

#[test]
fn a_ticket_file_cannot_claim_a_status_only_a_run_gives() {
    let t = Tix::new();
    let patch = t.append_patch("claims");
    let mut ticket = t.ticket("OPS-14", &patch);
    ticket["status"] = json!("RUNNING");
    let file = t.write_json("OPS-14.json", &ticket);
    // Filed RUNNING with no run, it could never be made ready nor run: refuse it up front.
    let why = t.refused(&["ticket", "new", &file]);
    assert!(why.contains("RUNNING"), "{why}");
    // Refused before anything is opened: not even a store was made.
    assert!(!t.w.store().exists(), "a refused ticket made a store");
}

#[test]
fn an_events_process_killed_mid_cycle_is_taken_up_by_the_next_and_applies_once() {
    // The debug build aborts itself (as `kill -9`) where MECHANISM_FAILPOINT says: after the
    // ticket went RUNNING (no run yet), and after the run was recorded (ticket not ended).
    for (n, step) in ["ticket:running", "ticket:ran"].into_iter().enumerate() {
        let t = Tix::new();
        let id = format!("OPS-{}", 40 + n);
        let patch = t.append_patch(&format!("killed-{n}"));
        t.file_ticket(&t.ticket(&id, &patch));
        t.ready(&id);
        let head = repo::rev(&t.w.repo(), "HEAD");

        let mut killed = t.admission();
        killed
            .env("MECHANISM_FAILPOINT", step)
            .args(["--json", "events", "process"]);
        let out = killed.output().expect("admission runs");
        assert!(
            !out.status.success(),
            "{step}: the failpoint did not stop events process: {}",
            stdout(&out)
        );
        assert_eq!(t.show(&id)["ticket"]["status"], "RUNNING", "{step}");
        let pending = t.show(&id)["events"].clone();
        assert_eq!(pending[0]["processed"], false, "{step}: {pending:#}");

        // The next events process takes the same event up, to one outcome, once.
        let done = t.process_one();
        assert_eq!(done["outcome"], "SCHEDULED", "{step}: {done:#}");
        assert_eq!(done["ticket_status"], "DONE", "{step}: {done:#}");
        if step == "ticket:ran" {
            assert!(
                string(&done["reason"]).starts_with("taken up after an interruption"),
                "{step}: {done:#}"
            );
        }
        let shown = t.show(&id);
        let commit = string(&shown["ticket"]["resolution"]["commit"]);
        assert_eq!(repo::rev(&t.w.repo(), "HEAD"), commit, "{step}");
        assert_eq!(
            repo::rev(&t.w.repo(), "HEAD~1"),
            head,
            "{step}: applied twice?"
        );
        assert!(t.process().is_empty(), "{step}: processed again");
    }
}
