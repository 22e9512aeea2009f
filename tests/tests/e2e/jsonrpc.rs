//! JSON-RPC 2.0 behaviour of a real spawned `mechanism-server`: errors, batches,
//! notifications, bounds and both framings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::canonical::MAX_NESTING_DEPTH;
use protocol::jsonrpc::MAX_BATCH_ENTRIES;
use protocol::store::Store;
use protocol::Digest;
use serde_json::{json, Value};
use tests::fixtures::{admit, put_patch};
use tests::repo;
use tests::server::Server;
use tests::Scratch;

fn server(s: &Scratch) -> Server {
    std::fs::create_dir_all(s.path("root")).unwrap();
    Server::spawn(&s.path("root"), &s.path("store"), None)
}

fn assert_error(response: &Value, number: i64, code: &str) {
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["error"]["code"], number, "{response}");
    assert_eq!(response["error"]["data"]["code"], code, "{response}");
}

/// Asserts the error's message contains `needle`.
fn assert_message(response: &Value, needle: &str) {
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {response}");
}

/// A git repository at `root/repo` and a patch to it in the store: the params of a `plan`
/// that succeeds (and stores the plan).
fn plan_params(s: &Scratch) -> Value {
    let repo = repo::init(&s.path("root/repo"));
    let text = repo::patch_from_edits(&repo, |dir| repo::write(dir, "new.txt", "new\n"));
    let patch = put_patch(&s.path("store"), &text);
    json!({
        "operation": "apply",
        "params": {
            "repo": "repo",
            "message": "add new.txt",
            "author": {"name": "Mechanism Test", "email": "test@example.com"},
        },
        "inputs": {"patch": patch},
    })
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The responses among `messages`, leaving out notifications (`progress`).
fn responses(messages: Vec<Value>) -> Vec<Value> {
    messages
        .into_iter()
        .filter(|m| m.get("id").is_some())
        .collect()
}

#[test]
fn invalid_json_gets_a_parse_error_with_null_id_and_the_connection_survives() {
    let s = Scratch::new();
    let mut srv = server(&s);
    srv.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n");
    let response = srv.recv();
    assert_error(&response, -32700, "PARSE_ERROR");
    assert_eq!(response["id"], Value::Null);
    let result = srv.result("describe", json!({}));
    assert_eq!(result["mechanism"]["id"], "git_apply_patch");
}

#[test]
fn invalid_requests_get_minus_32600_with_their_id_when_readable() {
    let s = Scratch::new();
    let mut srv = server(&s);
    srv.send(&json!({"jsonrpc": "1.0", "id": 7, "method": "describe"}));
    let response = srv.recv();
    assert_error(&response, -32600, "INVALID_REQUEST");
    assert_eq!(response["id"], 7);
    srv.send(&json!({"jsonrpc": "2.0", "id": 8, "method": 42}));
    assert_error(&srv.recv(), -32600, "INVALID_REQUEST");
    srv.send(&json!(17));
    let response = srv.recv();
    assert_error(&response, -32600, "INVALID_REQUEST");
    assert_eq!(response["id"], Value::Null);
    // Ids jsonrpsee cannot carry into a response are refused by name, and kept.
    for id in [json!(-1), json!(1.5)] {
        srv.send(&json!({"jsonrpc": "2.0", "id": id, "method": "describe"}));
        let response = srv.recv();
        assert_error(&response, -32600, "INVALID_REQUEST");
        assert_message(&response, "a request id must be");
        assert_eq!(response["id"], id);
    }
    // Every id it can carry comes back as sent, alone or in a batch.
    for id in [json!(0), json!("a string id"), json!(9007199254740991u64)] {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "describe", "params": {}});
        srv.send(&request);
        assert_eq!(srv.recv()["id"], id);
        srv.send(&json!([request]));
        assert_eq!(srv.recv()[0]["id"], id);
    }
}

#[test]
fn params_are_strict_i_json_by_name_and_valid_against_the_verb_schema() {
    let s = Scratch::new();
    let mut srv = server(&s);
    // A duplicate key is refused, not resolved: the last copy would otherwise be hashed.
    srv.send_raw(
        br#"{"jsonrpc":"2.0","id":"dup","method":"plan","params":{"operation":"apply","operation":"apply","params":{}}}"#,
    );
    srv.send_raw(b"\n");
    let response = srv.recv();
    assert_error(&response, -32602, "INVALID_PARAMS");
    assert_eq!(response["id"], "dup");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key \"operation\""),
        "{response}"
    );
    // Outside params it is the request that is invalid.
    srv.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"id\":3,\"method\":\"describe\"}\n");
    assert_error(&srv.recv(), -32600, "INVALID_REQUEST");
    // An integer a double cannot carry.
    srv.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"plan\",\"params\":{\"operation\":\"apply\",\"params\":{\"n\":9007199254740993}}}\n",
    );
    assert_error(&srv.recv(), -32602, "INVALID_PARAMS");
    // Unknown fields and positional params are errors, as the verb schemas say.
    let digest = protocol::Digest::of_bytes(b"x").to_string();
    let response = srv.call("status", json!({"plan_hash": digest, "plan_hahs": digest}));
    assert_error(&response, -32602, "INVALID_PARAMS");
    let response = srv.call("status", json!([digest]));
    assert_error(&response, -32602, "INVALID_PARAMS");
    let response = srv.call("describe", json!({"protocol_version": ["mechanism/0"]}));
    assert_error(&response, -32602, "INVALID_PARAMS");
    // And the connection goes on.
    assert_eq!(
        srv.result("describe", json!({}))["protocol_version"],
        "mechanism/0"
    );
}

#[test]
fn batches_empty_invalid_and_mixed() {
    let s = Scratch::new();
    let mut srv = server(&s);
    srv.send_raw(b"[]\n");
    let response = srv.recv();
    assert!(
        response.is_object(),
        "an empty batch gets one error, not an array: {response}"
    );
    assert_error(&response, -32600, "INVALID_REQUEST");

    srv.send(&json!([1, 2, 3]));
    let responses = srv.recv();
    let responses = responses.as_array().expect("a batch gets an array");
    assert_eq!(responses.len(), 3);
    for r in responses {
        assert_error(r, -32600, "INVALID_REQUEST");
    }

    srv.send(&json!([
        {"jsonrpc": "2.0", "id": "a", "method": "describe", "params": {}},
        {"jsonrpc": "2.0", "method": "describe"},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
    ]));
    let responses = srv.recv();
    let responses = responses.as_array().expect("array");
    assert_eq!(
        responses.len(),
        2,
        "the notification gets no reply: {responses:?}"
    );
    assert_eq!(responses[0]["id"], "a");
    assert!(responses[0]["result"]["operations"].is_array());
    assert_eq!(responses[1]["id"], "b");
    assert_error(&responses[1], -32601, "METHOD_NOT_FOUND");

    // A batch of notifications only gets nothing at all.
    srv.send(&json!([{"jsonrpc": "2.0", "method": "describe"}]));
    assert_eq!(srv.try_recv(Duration::from_millis(500)), None);
}

#[test]
fn notifications_get_no_reply_and_unknown_methods_get_minus_32601() {
    let s = Scratch::new();
    let mut srv = server(&s);
    srv.send(&json!({"jsonrpc": "2.0", "method": "describe", "params": {}}));
    srv.send(&json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 99}}));
    let response = srv.call("no_such_method", json!({}));
    assert_error(&response, -32601, "METHOD_NOT_FOUND");
}

#[test]
fn oversized_messages_are_refused_and_the_connection_survives() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("root")).unwrap();
    let mut srv = Server::spawn_with(
        &s.path("root"),
        &s.path("store"),
        None,
        &["--max-message-bytes", "65536"],
    );
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"describe\",\"params\":{{\"x\":\"{}\"}}}}\n",
        "a".repeat(200_000)
    );
    srv.send_raw(big.as_bytes());
    let response = srv.recv();
    assert_error(&response, -32001, "MESSAGE_TOO_LARGE");
    assert_eq!(response["id"], Value::Null);

    let result = srv.result("describe", json!({}));
    assert_eq!(result["mechanism"]["id"], "git_apply_patch");
    assert!(srv.close().success());
}

#[test]
fn nesting_beyond_the_limit_is_a_parse_error_with_null_id_and_the_connection_survives() {
    let s = Scratch::new();
    let mut srv = server(&s);
    let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    for deep in [
        "[".repeat(100_000),
        nested(5000),
        nested(MAX_NESTING_DEPTH + 1),
        // In a request's params, where a lenient read could find the id: still not trusted.
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"describe\",\"params\":{{\"x\":{}}}}}",
            nested(MAX_NESTING_DEPTH)
        ),
    ] {
        srv.send_raw(format!("{deep}\n").as_bytes());
        let response = srv.recv();
        assert_error(&response, -32700, "PARSE_ERROR");
        assert_eq!(response["id"], Value::Null);
        assert_message(
            &response,
            &format!("nesting deeper than {MAX_NESTING_DEPTH} levels"),
        );
    }
    // At the limit it is JSON: a batch of one entry that is no request.
    srv.send_raw(format!("[{}]\n", nested(MAX_NESTING_DEPTH - 1)).as_bytes());
    let response = srv.recv();
    assert_error(&response[0], -32600, "INVALID_REQUEST");
    let result = srv.result("describe", json!({}));
    assert_eq!(result["mechanism"]["id"], "git_apply_patch");
    assert!(srv.close().success());
}

#[test]
fn a_lone_surrogate_is_a_parse_error_with_null_id_and_the_connection_survives() {
    let s = Scratch::new();
    let mut srv = server(&s);
    for frame in [
        &br#"{"jsonrpc":"2.0","id":1,"method":"describe","params":{"protocol_versions":["\ud800"]}}"#[..],
        br#"{"jsonrpc":"2.0","id":"\udc00","method":"describe"}"#,
        // In a batch the whole frame is refused once, not entry by entry.
        br#"[{"jsonrpc":"2.0","id":2,"method":"describe"},{"jsonrpc":"2.0","id":3,"method":"x\uD83D"}]"#,
    ] {
        srv.send_raw(frame);
        srv.send_raw(b"\n");
        let response = srv.recv();
        assert!(response.is_object(), "{response}");
        assert_error(&response, -32700, "PARSE_ERROR");
        assert_eq!(response["id"], Value::Null);
        assert_message(&response, "lone surrogate");
    }
    // A surrogate pair is a character like any other.
    srv.send_raw(
        br#"{"jsonrpc":"2.0","id":4,"method":"describe","params":{"protocol_versions":["\ud83d\ude00","mechanism/0"]}}"#,
    );
    srv.send_raw(b"\n");
    let response = srv.recv();
    assert_eq!(response["id"], 4);
    assert_eq!(response["result"]["protocol_version"], "mechanism/0");
    assert!(srv.close().success());
}

#[test]
fn a_batch_over_the_cap_gets_one_error_serves_nothing_and_the_connection_goes_on() {
    let s = Scratch::new();
    let mut srv = server(&s);
    let plan = plan_params(&s);
    let describe = |id: usize| json!({"jsonrpc": "2.0", "id": id, "method": "describe"});

    // First a plan, which would store an object, then describes to one entry over the cap.
    let mut batch = vec![json!({"jsonrpc": "2.0", "id": "plan", "method": "plan", "params": plan})];
    batch.extend((1..=MAX_BATCH_ENTRIES).map(describe));
    let objects = files_under(&s.path("store/objects"));
    srv.send(&Value::Array(batch));
    let response = srv.recv();
    assert!(response.is_object(), "one error, not an array");
    assert_error(&response, -32600, "INVALID_REQUEST");
    assert_eq!(response["id"], Value::Null);
    assert_message(
        &response,
        &format!(
            "a batch of {} entries exceeds the limit of {MAX_BATCH_ENTRIES} entries",
            MAX_BATCH_ENTRIES + 1
        ),
    );
    assert_eq!(srv.try_recv(Duration::from_millis(500)), None);
    assert_eq!(
        files_under(&s.path("store/objects")),
        objects,
        "no entry of the refused batch was served"
    );

    // The connection goes on: the plan alone is served (and stores), and so is a batch of
    // exactly the cap.
    let planned = srv.result("plan", plan);
    assert!(planned["plan_hash"].is_string(), "{planned}");
    assert_ne!(files_under(&s.path("store/objects")), objects);
    srv.send(&Value::Array(
        (1..=MAX_BATCH_ENTRIES).map(describe).collect(),
    ));
    let replies = srv.recv();
    let replies = replies.as_array().expect("a batch gets an array");
    assert_eq!(replies.len(), MAX_BATCH_ENTRIES);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["id"], i + 1);
        assert_eq!(
            reply["result"]["limits"]["max_batch_entries"],
            MAX_BATCH_ENTRIES
        );
    }
    assert!(srv.close().success());
}

#[test]
fn a_header_line_beyond_8_kib_is_too_large_and_the_next_frame_is_read() {
    let s = Scratch::new();
    let mut srv = server(&s);
    let frame = |id: u64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "describe"}).to_string();
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    };
    srv.send_raw(frame(1).as_bytes());
    assert_eq!(srv.recv()["id"], 1);
    let long = format!("X-Pad: {}\r\n", "z".repeat(9000));
    srv.send_raw(
        frame(99)
            .replacen("\r\n", &format!("\r\n{long}"), 1)
            .as_bytes(),
    );
    let response = srv.recv();
    assert_error(&response, -32001, "MESSAGE_TOO_LARGE");
    assert_eq!(response["id"], Value::Null);
    assert_message(&response, "header line exceeds the limit of 8192 bytes");
    // The refused frame's body is passed over while resynchronising: the next frame is read.
    srv.send_raw(frame(2).as_bytes());
    assert_eq!(srv.recv()["id"], 2);
    let (status, rest) = srv.finish();
    assert!(status.success());
    assert_eq!(rest, Vec::<Value>::new());
}

#[test]
fn a_content_length_beyond_the_limit_is_answered_at_once_and_its_body_skipped() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("root")).unwrap();
    let mut srv = Server::spawn_with(
        &s.path("root"),
        &s.path("store"),
        None,
        &["--max-message-bytes", "65536"],
    );
    const DECLARED: usize = 1_000_000;
    srv.send_raw(format!("Content-Length: {DECLARED}\r\n\r\n").as_bytes());
    // Answered before a byte of the body is sent: nothing waits for, or holds, the body.
    let response = srv.recv();
    assert_error(&response, -32001, "MESSAGE_TOO_LARGE");
    assert_eq!(response["id"], Value::Null);
    assert_message(
        &response,
        &format!("message of {DECLARED} bytes exceeds the limit of 65536 bytes"),
    );
    // The body holds a whole frame of its own: skipped with the rest, never served.
    let inner = json!({"jsonrpc": "2.0", "id": "inside", "method": "describe"}).to_string();
    let mut body = format!("Content-Length: {}\r\n\r\n{inner}", inner.len()).into_bytes();
    body.resize(DECLARED, b' ');
    srv.send_raw(&body);
    let after = json!({"jsonrpc": "2.0", "id": "after", "method": "describe"}).to_string();
    srv.send_raw(format!("Content-Length: {}\r\n\r\n{after}", after.len()).as_bytes());
    assert_eq!(srv.recv()["id"], "after");
    let (status, rest) = srv.finish();
    assert!(status.success());
    assert_eq!(
        rest,
        Vec::<Value>::new(),
        "the frame inside the body was served"
    );
}

#[test]
fn a_thousand_pipelined_requests_are_all_answered_in_bounded_memory_and_threads() {
    const PLANS: usize = 500;
    const STATUSES: usize = 500;
    let s = Scratch::new();
    let mut srv = server(&s);
    let params = plan_params(&s);
    let plan_hash = srv.result("plan", params.clone())["plan_hash"].clone();
    let mut burst = Vec::new();
    for i in 0..PLANS + STATUSES {
        let request = if i.is_multiple_of(2) {
            json!({"jsonrpc": "2.0", "id": i, "method": "plan", "params": params})
        } else {
            json!({"jsonrpc": "2.0", "id": i, "method": "status",
                   "params": {"plan_hash": plan_hash}})
        };
        burst.extend_from_slice(request.to_string().as_bytes());
        burst.push(b'\n');
    }
    // Threads are counted while the burst is served: every plan at once would be a thread
    // each on the blocking pool; the server serves at most 32 such frames at a time, on
    // at most 32 blocking threads.
    let pid = srv.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let done = std::sync::Arc::clone(&done);
        move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(tests::server::proc_status(pid, "Threads").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(1));
            }
            most
        }
    });
    srv.send_raw(&burst);
    let mut answered = vec![false; PLANS + STATUSES];
    for _ in 0..PLANS + STATUSES {
        let (response, _) = srv.recv_response();
        let id = response["id"].as_u64().expect("a numeric id") as usize;
        assert!(!answered[id], "{id} answered twice");
        answered[id] = true;
        if id.is_multiple_of(2) {
            assert_eq!(response["result"]["plan_hash"], plan_hash, "{response}");
        } else {
            assert_eq!(response["result"]["state"], "planned", "{response}");
        }
    }
    let peak_kib = srv.proc_status("VmHWM").expect("the server runs");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let threads = sampler.join().unwrap();
    assert!(srv.close().success());
    // 32 frames on the blocking pool, two workers, and the main thread that reads.
    assert!(threads <= 35, "{threads} threads at once");
    assert!(peak_kib < 64 * 1024, "peak resident memory {peak_kib} KiB");
}

#[test]
fn a_partial_line_at_eof_gets_no_reply_and_an_execute_in_flight_still_finishes() {
    let s = Scratch::new();
    let mut srv = server(&s);
    let planned = srv.result("plan", plan_params(&s));
    let plan_hash: Digest = planned["plan_hash"].as_str().unwrap().parse().unwrap();
    let admission = admit(&s.path("store"), &plan_hash, &planned["plan"]);
    srv.send(&json!({
        "jsonrpc": "2.0",
        "id": "execute",
        "method": "execute",
        "params": {"plan_hash": plan_hash, "admission": admission},
    }));
    // Cut off mid-message, as by a client that died; then EOF.
    srv.send_raw(br#"{"jsonrpc":"2.0","id":"partial","method":"desc"#);
    let (status, rest) = srv.finish();
    assert!(status.success(), "{status}");
    let replies = responses(rest);
    assert_eq!(
        replies.len(),
        1,
        "only the execute is answered: {replies:?}"
    );
    assert_eq!(replies[0]["id"], "execute");
    let result = &replies[0]["result"];
    assert_eq!(result["result"]["status"], "success", "{result}");
    let record = Store::open(s.path("store"))
        .unwrap()
        .result_record(&plan_hash)
        .unwrap()
        .expect("the execution is recorded");
    assert!(record.succeeded);
    assert_eq!(json!(record.result), result["result_hash"]);
    assert!(s.path("root/repo/new.txt").exists());
}

#[test]
fn a_partial_content_length_frame_at_eof_gets_no_reply_and_the_server_exits_0() {
    for partial in [
        &b"Content-Length: 100\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":2,"[..],
        b"Content-Length: 100\r\n",
        b"Content-Len",
    ] {
        let s = Scratch::new();
        let mut srv = server(&s);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "describe"}).to_string();
        srv.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        srv.send_raw(partial);
        let (status, rest) = srv.finish();
        assert!(status.success(), "{status}");
        let ids: Vec<&Value> = rest.iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, vec![&json!(1)], "{rest:?}");
    }
}

#[test]
fn content_length_framing_is_answered_in_kind() {
    let s = Scratch::new();
    let mut srv = server(&s);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "describe", "params": {}}).to_string();
    srv.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let response = srv.recv();
    assert_eq!(response["id"], 1);
    assert_eq!(response["result"]["protocol_version"], "mechanism/0");
    // A second frame, then garbage, then a good one: answered in order, garbage refused.
    srv.send_raw(b"Content-Length: 5\r\n\r\n{bad}");
    assert_error(&srv.recv(), -32700, "PARSE_ERROR");
    srv.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    assert_eq!(srv.recv()["id"], 1);
}

#[test]
fn describe_negotiates_the_protocol_version() {
    let s = Scratch::new();
    let mut srv = server(&s);
    let result = srv.result(
        "describe",
        json!({"protocol_versions": ["mechanism/9", "mechanism/0"]}),
    );
    assert_eq!(result["protocol_version"], "mechanism/0");
    let code = srv.error_code("describe", json!({"protocol_versions": ["mechanism/9"]}));
    assert_eq!(code, "UNSUPPORTED_VERSION");
    let op = &result["operations"][0];
    assert_eq!(op["name"], "apply");
    assert!(!op["examples"].as_array().unwrap().is_empty());
}

#[test]
fn eof_ends_the_server_cleanly() {
    let s = Scratch::new();
    let mut srv = server(&s);
    srv.result("describe", json!({}));
    assert!(srv.close().success());
}
