//! JSON-RPC 2.0 envelopes: telling requests, notifications and responses apart, and error
//! objects that always carry the stable string code in `error.data.code`.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::ErrorCode;

/// The method a client sends to cancel one of its requests (LSP's spelling).
pub const CANCEL_REQUEST: &str = "$/cancelRequest";

/// The most entries one batch may hold.
///
/// A larger batch is refused whole, with one `INVALID_REQUEST` (id null) and none of its
/// entries served, so one frame cannot fan out into unbounded work: the reply to a batch is at
/// most this many responses. The connection goes on after the refusal.
pub const MAX_BATCH_ENTRIES: usize = 1024;

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that expects a response.
    Request {
        /// The request id (a string or a number).
        id: Value,
        /// The method name.
        method: String,
        /// The params, when present (an object or an array).
        params: Option<Value>,
    },
    /// A call without an id: no response, ever.
    Notification {
        /// The method name.
        method: String,
        /// The params, when present.
        params: Option<Value>,
    },
    /// A response to one of our requests.
    Response {
        /// The id of the request it answers (`null` for errors about unparseable input).
        id: Value,
        /// The result, or the error object.
        outcome: Result<Value, Value>,
    },
    /// Not a valid JSON-RPC 2.0 message; `id` is kept when it could be read, so the error
    /// response can name it.
    Invalid {
        /// The id, if the message had a valid one.
        id: Value,
        /// What is wrong.
        reason: String,
    },
}

/// Classifies one (non-batch) JSON value.
pub fn classify(value: Value) -> Message {
    let Value::Object(mut object) = value else {
        return invalid(Value::Null, "a JSON-RPC message must be an object");
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return invalid(Value::Null, "\"id\" must be a string, a number or null"),
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(id.unwrap_or(Value::Null), "\"jsonrpc\" must be \"2.0\"");
    }
    if let Some(method) = object.remove("method") {
        let Value::String(method) = method else {
            return invalid(id.unwrap_or(Value::Null), "\"method\" must be a string");
        };
        let params = object.remove("params");
        if params
            .as_ref()
            .is_some_and(|p| !p.is_object() && !p.is_array())
        {
            return invalid(
                id.unwrap_or(Value::Null),
                "\"params\" must be an object or an array",
            );
        }
        if let Some(extra) = unexpected_member(&object, &["jsonrpc"]) {
            return invalid(
                id.unwrap_or(Value::Null),
                &format!("unexpected member {extra:?}"),
            );
        }
        return match id {
            Some(id) => Message::Request { id, method, params },
            None => Message::Notification { method, params },
        };
    }
    let id = id.unwrap_or(Value::Null);
    match (object.remove("result"), object.remove("error")) {
        (Some(result), None) => Message::Response {
            id,
            outcome: Ok(result),
        },
        (None, Some(error)) if error.is_object() => Message::Response {
            id,
            outcome: Err(error),
        },
        _ => invalid(
            id,
            "a message needs \"method\", or exactly one of \"result\" and \"error\"",
        ),
    }
}

fn unexpected_member(object: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    object
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .cloned()
}

fn invalid(id: Value, reason: &str) -> Message {
    Message::Invalid {
        id,
        reason: reason.to_owned(),
    }
}

/// An error object: `{code, message, data: {code: "STABLE_CODE", ...extra}}`.
pub fn error_object(code: ErrorCode, message: &str, extra: Option<Map<String, Value>>) -> Value {
    let mut data = extra.unwrap_or_default();
    data.insert("code".to_owned(), Value::String(code.as_str().to_owned()));
    json!({ "code": code.number(), "message": message, "data": data })
}

/// A complete error response.
pub fn error_response(id: Value, code: ErrorCode, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error_object(code, message, None) })
}

/// A complete error response, serialised straight to bytes: the same JSON as
/// [`error_response`] without building a [`Value`] first, for a server's hot path.
pub fn encode_error_response(id: &Value, code: ErrorCode, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Response<'a> {
        jsonrpc: &'static str,
        id: &'a Value,
        error: Error<'a>,
    }
    #[derive(Serialize)]
    struct Error<'a> {
        code: i32,
        message: &'a str,
        data: Data<'a>,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        code: &'a str,
    }
    let response = Response {
        jsonrpc: "2.0",
        id,
        error: Error {
            code: code.number(),
            message,
            data: Data {
                code: code.as_str(),
            },
        },
    };
    // Strings, an integer and an already-valid `Value`: nothing here can fail to serialise.
    serde_json::to_vec(&response).unwrap_or_else(|_| {
        error_response(id.clone(), code, message)
            .to_string()
            .into_bytes()
    })
}

/// A complete success response.
pub fn success_response(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// The stable code of an error object, when it carries one of ours.
pub fn error_code_of(error: &Value) -> Option<ErrorCode> {
    error
        .pointer("/data/code")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Message {
        classify(serde_json::from_str(s).unwrap())
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":7,"method":"plan","params":{"a":1}}"#),
            Message::Request {
                id: json!(7),
                method: "plan".into(),
                params: Some(json!({"a":1}))
            }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"progress","params":[1]}"#),
            Message::Notification {
                method: "progress".into(),
                params: Some(json!([1]))
            }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":"a","result":null}"#),
            Message::Response {
                id: json!("a"),
                outcome: Ok(Value::Null)
            }
        );
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Message::Response {
                outcome: Err(_),
                ..
            }
        ));
    }

    #[test]
    fn invalid_messages_keep_their_id_when_it_is_valid() {
        for (text, id) in [
            (r#"{"id":1,"method":"x"}"#, json!(1)),
            (r#"{"jsonrpc":"1.0","id":"q","method":"x"}"#, json!("q")),
            (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, json!(2)),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"x","params":"s"}"#,
                json!(3),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"o":1},"method":"x"}"#,
                Value::Null,
            ),
            (r#"{"jsonrpc":"2.0","id":4}"#, json!(4)),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"x","extra":1}"#,
                json!(5),
            ),
            ("42", Value::Null),
        ] {
            match parse(text) {
                Message::Invalid { id: got, .. } => assert_eq!(got, id, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_objects_carry_the_stable_code() {
        let response = error_response(json!(9), ErrorCode::StalePlan, "stale");
        assert_eq!(response["error"]["code"], ErrorCode::StalePlan.number());
        assert_eq!(
            error_code_of(&response["error"]),
            Some(ErrorCode::StalePlan)
        );
        assert_eq!(response["id"], 9);
    }

    #[test]
    fn encoded_error_responses_are_the_error_responses() {
        for (id, code, message) in [
            (json!(9), ErrorCode::StalePlan, "stale"),
            (
                Value::Null,
                ErrorCode::ParseError,
                "invalid JSON: \"quoted\"\n",
            ),
            (
                json!("a-string-id"),
                ErrorCode::MethodNotFound,
                "no method \"x\"",
            ),
        ] {
            let encoded: Value = serde_json::from_slice(&encode_error_response(&id, code, message))
                .expect("encoded response is JSON");
            assert_eq!(encoded, error_response(id, code, message));
        }
    }
}
