//! JSON-RPC 2.0 behaviour of a real spawned `mechanism-server`: errors, batches,
//! notifications, bounds and both framings.

use std::time::Duration;

use serde_json::{json, Value};
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
fn oversized_and_deeply_nested_messages_are_refused_and_the_connection_survives() {
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

    let deep = format!("{}{}\n", "[".repeat(5000), "]".repeat(5000));
    srv.send_raw(deep.as_bytes());
    let response = srv.recv();
    assert_eq!(response["id"], Value::Null);
    assert!(response["error"]["data"]["code"].is_string(), "{response}");

    let result = srv.result("describe", json!({}));
    assert_eq!(result["mechanism"]["id"], "git_apply_patch");
    assert!(srv.close().success());
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
