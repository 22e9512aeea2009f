//! The mechanism client against scripted fake mechanisms (`tests/fixtures/fake_mechanism.py`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::client::{Client, ClientError, Notification, SpawnSpec};
use protocol::ErrorCode;
use serde_json::{json, Value};

/// Generous: only hangs should ever reach it.
const LONG: Duration = Duration::from_secs(20);

fn fake() -> SpawnSpec {
    SpawnSpec {
        program: "python3".into(),
        args: vec![concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fake_mechanism.py"
        )
        .into()],
        cwd: None,
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
    }
}

fn spawn() -> Client {
    Client::spawn(&fake()).unwrap()
}

#[tokio::test]
async fn calls_succeed_while_progress_notifications_arrive_aside() {
    let client = spawn();
    let mut notifications = client.notifications();
    let params = json!({"steps": 3, "tag": "t"});
    let result = client.call("progress", params.clone(), LONG).await.unwrap();
    assert_eq!(result, params);
    for step in 0..3 {
        let got = tokio::time::timeout(LONG, notifications.recv()).await;
        let got = got.unwrap().unwrap();
        assert_eq!(
            got,
            Notification {
                method: "progress".into(),
                params: json!({ "step": step })
            }
        );
    }
    assert_eq!(
        client.call("echo", Value::Null, LONG).await.unwrap(),
        json!({})
    );
}

#[tokio::test]
async fn concurrent_calls_are_matched_to_their_responses() {
    let client = Arc::new(spawn());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8u64 {
        let client = Arc::clone(&client);
        // Later calls answer sooner, so the answers come back out of order.
        let params = json!({"n": n, "delay_ms": (8 - n) * 40});
        tasks.spawn(async move { (n, client.call("sleep_echo", params, LONG).await) });
    }
    let mut seen = 0;
    while let Some(joined) = tasks.join_next().await {
        let (n, result) = joined.unwrap();
        assert_eq!(result.unwrap()["n"], n);
        seen += 1;
    }
    assert_eq!(seen, 8);
}

#[tokio::test]
async fn an_error_response_is_an_rpc_error_with_its_stable_code() {
    let client = spawn();
    let error = client.call("stale", json!({}), LONG).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::StalePlan));
    match &error {
        ClientError::Rpc {
            code,
            number,
            message,
            data,
        } => {
            assert_eq!(*code, Some(ErrorCode::StalePlan));
            assert_eq!(*number, -32008);
            assert_eq!(message, "the plan is stale");
            assert_eq!(data["plan_hash"], "sha256:ab");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("STALE_PLAN"), "{error}");
    // An error answer leaves the connection working.
    let error = client
        .call("no_such_verb", json!({}), LONG)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::MethodNotFound));
    assert_eq!(
        client.call("echo", json!({"a": 1}), LONG).await.unwrap(),
        json!({"a": 1})
    );
}

/// Calls `method`, which makes the fake break the protocol, and checks every call fails fast.
async fn assert_protocol_violation(method: &str, excerpt_part: &str) {
    let client = spawn();
    let started = Instant::now();
    let error = client.call(method, json!({}), LONG).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{method} took {:?}",
        started.elapsed()
    );
    match &error {
        ClientError::ProtocolViolation { excerpt, .. } => {
            assert!(excerpt.contains(excerpt_part), "{excerpt}")
        }
        other => panic!("{method}: {other:?}"),
    }
    assert_eq!(error.code(), None);
    // Later calls fail at once with the same error.
    let started = Instant::now();
    let again = client.call("echo", json!({}), LONG).await.unwrap_err();
    assert!(
        matches!(again, ClientError::ProtocolViolation { .. }),
        "{again:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_log_line_on_stdout_is_a_protocol_violation() {
    assert_protocol_violation("log_to_stdout", "INFO mechanism: starting work").await;
}

#[tokio::test]
async fn json_that_is_not_json_rpc_is_a_protocol_violation() {
    assert_protocol_violation("not_jsonrpc", "hello").await;
}

#[tokio::test]
async fn an_oversized_message_is_a_protocol_violation() {
    assert_protocol_violation("huge", "progress").await;
}

#[tokio::test]
async fn stray_messages_are_routed_aside_and_server_requests_refused() {
    let client = spawn();
    // The fake sends an id-less error, an unasked-for response, a blank line and a request
    // of its own, then answers with what the client replied to that request.
    let answer = client.call("stray", json!({}), LONG).await.unwrap();
    assert_eq!(answer["id"], "srv-1");
    assert_eq!(answer["error"]["data"]["code"], "METHOD_NOT_FOUND");
    assert_eq!(
        client
            .call("echo", json!({"ok": true}), LONG)
            .await
            .unwrap()["ok"],
        true
    );
}

#[tokio::test]
async fn a_hanging_call_times_out_and_is_cancelled() {
    let client = spawn();
    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let error = client.call("hang", json!({}), limit).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= limit && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert_eq!(error.code(), Some(ErrorCode::DeadlineExceeded));
    // The fake lists the ids it was asked to cancel: the hung request's, and only it.
    let cancelled = client.call("cancelled", json!({}), LONG).await.unwrap();
    assert_eq!(cancelled.as_array().map(Vec::len), Some(1), "{cancelled}");
}

#[tokio::test]
async fn a_mechanism_exiting_mid_call_died_with_its_stderr_tail() {
    let client = spawn();
    let error = client.call("die", json!({}), LONG).await.unwrap_err();
    match &error {
        ClientError::Died {
            status,
            stderr_tail,
        } => {
            assert_eq!(*status, Some(3));
            assert!(stderr_tail.ends_with("about to die"), "{stderr_tail}");
            assert_eq!(stderr_tail.lines().count(), 20, "{stderr_tail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("exit status 3"), "{error}");
    let again = client.call("echo", json!({}), LONG).await.unwrap_err();
    assert!(
        matches!(
            again,
            ClientError::Died {
                status: Some(3),
                ..
            }
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_megabyte_on_stderr_does_not_block_the_mechanism() {
    let client = spawn();
    let result = client
        .call("spam_stderr", json!({"x": 1}), LONG)
        .await
        .unwrap();
    assert_eq!(result, json!({"x": 1}));
}

#[tokio::test]
async fn shutdown_closes_stdin_and_the_mechanism_exits_cleanly() {
    let client = spawn();
    client.call("echo", json!({}), LONG).await.unwrap();
    let status = client.shutdown().await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_client_kills_the_mechanism() {
    let client = spawn();
    client.call("echo", json!({}), LONG).await.unwrap();
    let pid = client.pid().unwrap();
    let stat = format!("/proc/{pid}/stat");
    assert!(std::fs::metadata(&stat).is_ok());
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Gone, or dead and waiting to be reaped: the state follows the `)` closing its name.
        let state = std::fs::read_to_string(&stat).ok().and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        });
        if matches!(state, None | Some(Some('Z' | 'X'))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} still alive: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let spec = SpawnSpec {
        program: "/nonexistent/mechanism".into(),
        ..SpawnSpec::default()
    };
    let error = Client::spawn(&spec).unwrap_err();
    assert!(matches!(error, ClientError::Spawn { .. }), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/mechanism"),
        "{error}"
    );
}

#[tokio::test]
async fn params_must_be_an_object() {
    let client = spawn();
    let error = client.call("echo", json!([1, 2]), LONG).await.unwrap_err();
    assert!(
        matches!(error, ClientError::ParamsNotObject { .. }),
        "{error:?}"
    );
}

#[test]
fn calls_can_run_on_other_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let client = spawn();
    assert_send(&client.call("echo", json!({}), LONG));
    assert_send(&client.notify("$/cancelRequest", json!({"id": 1})));
}
