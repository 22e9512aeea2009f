//! The tools `admission mcp` offers: names, descriptions, input and output JSON Schemas and
//! annotations, written out once here so that what `tools/list` says is what `tools/call`
//! accepts (calls.rs reads the arguments into structs with the same members).

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Value};

/// `list_mechanisms`.
pub const LIST_MECHANISMS: &str = "list_mechanisms";
/// `plan`.
pub const PLAN: &str = "plan";
/// `execute`.
pub const EXECUTE: &str = "execute";
/// `show`.
pub const SHOW: &str = "show";
/// `verify`.
pub const VERIFY: &str = "verify";

/// Every tool, in the order `tools/list` gives them.
pub fn all() -> Vec<Tool> {
    vec![
        tool(
            LIST_MECHANISMS,
            "List mechanisms",
            "The mechanisms this admission may run (its registry), each with its operations: \
             what each does, its params (a JSON Schema), its inputs, the effects it can have, \
             whether it can be destructive, and worked examples. Starts each mechanism to ask \
             it; changes nothing.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            list_output(),
            ToolAnnotations::new().read_only(true).open_world(false),
        ),
        tool(
            PLAN,
            "Plan an effect",
            "Ask a mechanism for the exact plan of an operation, then run the admission's gates \
             over it. Nothing in the world changes: the plan, its inputs and the gates' \
             decision are recorded in the admission's store. Returns the plan hash to execute, \
             the decision of every gate, whether the plan is destructive (then an operator must \
             approve it before it can run) and why, the effects, and a preview (for git, the \
             diff). Inputs are given as text ({\"text\": \"...\"}, e.g. a unified diff) or as \
             the digest of a blob already stored; files are never read.",
            plan_input(),
            plan_output(),
            ToolAnnotations::new().read_only(true).open_world(false),
        ),
        tool(
            EXECUTE,
            "Execute a plan",
            "Execute a plan by its hash, exactly as planned and admitted, then verify what came \
             back. A destructive plan runs only with an operator's approval recorded by \
             `admission approve`; without one this returns FORCE_ACK_REQUIRED and the command \
             the operator runs. The world may have changed since planning: then nothing \
             happens (STALE_PLAN), plan again. Executing a plan that already succeeded returns \
             the recorded result and changes nothing. Sends progress notifications; a \
             cancellation stops the execution if it has not reached its point of no return.",
            json!({
                "type": "object",
                "properties": {"plan_hash": digest_schema("The plan hash `plan` returned.")},
                "required": ["plan_hash"],
                "additionalProperties": false
            }),
            execute_output(),
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(true),
        ),
        tool(
            SHOW,
            "Show a run or artifact",
            "Show a run (by the run uid plan or execute returned) or any stored artifact (by \
             its digest), rebuilt from the store and the journal: as `admission show`.",
            json!({
                "type": "object",
                "properties": {"id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "A run uid, or a digest `sha256:<64 hex>`."
                }},
                "required": ["id"],
                "additionalProperties": false
            }),
            json!({"type": "object", "properties": {"error": error_schema()}}),
            ToolAnnotations::new().read_only(true).open_world(false),
        ),
        tool(
            VERIFY,
            "Verify an execution",
            "Check a whole chain offline, every check listed: result, plan, admission, \
             approval, and the state of the world now (for git, the commit). As \
             `admission verify`. Any failed check makes this an error.",
            json!({
                "type": "object",
                "properties": {"digest": digest_schema(
                    "A run record, result witness or result digest (execute returns them)."
                )},
                "required": ["digest"],
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "verified": {"type": "boolean"},
                    "checks": {"type": "array"},
                    "error": error_schema()
                }
            }),
            ToolAnnotations::new().read_only(true).open_world(false),
        ),
    ]
}

fn tool(
    name: &'static str,
    title: &str,
    description: &'static str,
    input: Value,
    output: Value,
    annotations: ToolAnnotations,
) -> Tool {
    Tool::new(name, description, object(input))
        .with_title(title)
        .with_raw_output_schema(object(output))
        .with_annotations(annotations)
}

/// A schema written above as a JSON object.
fn object(schema: Value) -> Arc<JsonObject> {
    Arc::new(match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    })
}

fn digest_schema(description: &str) -> Value {
    json!({"type": "string", "pattern": "^sha256:[0-9a-f]{64}$", "description": description})
}

/// The `error` member of a refusal: the protocol's stable code and its message.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "The stable protocol error code, e.g. FORCE_ACK_REQUIRED."},
            "message": {"type": "string"},
            "data": {"type": "object"}
        },
        "required": ["code", "message"]
    })
}

fn plan_input() -> Value {
    json!({
        "type": "object",
        "properties": {
            "mechanism": {
                "type": "string",
                "minLength": 1,
                "description": "A mechanism id from list_mechanisms, e.g. git_apply_patch."
            },
            "operation": {
                "type": "string",
                "minLength": 1,
                "description": "One of its operations, e.g. apply."
            },
            "params": {
                "type": "object",
                "description": "The operation's params, as its params_schema in list_mechanisms \
                                says. Paths are relative to the workspace and cannot leave it."
            },
            "inputs": {
                "type": "object",
                "description": "The operation's inputs by name (e.g. patch): the content itself \
                                as {\"text\": \"...\"}, stored first, or the digest of a blob \
                                already stored.",
                "additionalProperties": {"oneOf": [
                    digest_schema("A stored blob."),
                    {
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "required": ["text"],
                        "additionalProperties": false
                    }
                ]}
            },
            "work_order_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "description": "Your id for this request, kept in every record; one is made up \
                                when not given."
            },
            "wall_ms": {
                "type": "integer",
                "minimum": 1,
                "maximum": 86_400_000,
                "description": "The wall-clock budget in milliseconds, which becomes the \
                                execute deadline; default 120000."
            }
        },
        "required": ["mechanism", "operation", "params"],
        "additionalProperties": false
    })
}

/// Members every run's result has (plan and execute alike).
fn run_members() -> serde_json::Map<String, Value> {
    let members = json!({
        "run_uid": {"type": "string", "description": "The run in the journal (show takes it)."},
        "outcome": {"type": "string", "enum": ["admitted", "awaiting_force_ack", "succeeded", "failed", "stale", "denied", "error"]},
        "work_order_id": {"type": "string"},
        "mechanism": {"type": "string"},
        "operation": {"type": "string"},
        "plan_hash": {"type": "string"},
        "admission_hash": {"type": "string"},
        "destructive": {"type": "boolean"},
        "gates": {"type": "array", "items": {"type": "object"}},
        "next_actions": {
            "type": "array",
            "description": "Commands for the operator's terminal, most useful first.",
            "items": {"type": "object"}
        },
        "approve_command": {
            "type": "string",
            "description": "For a destructive plan: the command an operator runs to approve it."
        },
        "error": error_schema()
    });
    match members {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn with_members(extra: Value) -> Value {
    let mut properties = run_members();
    if let Value::Object(extra) = extra {
        properties.extend(extra);
    }
    json!({"type": "object", "properties": properties})
}

fn plan_output() -> Value {
    with_members(json!({
        "decision": {"type": "string", "enum": ["ADMIT", "DENY"]},
        "force_ack_required": {"type": "boolean"},
        "destructive_reasons": {"type": "array", "items": {"type": "string"}},
        "effects": {"type": "array", "items": {"type": "object"}},
        "preview": {"type": "string"},
        "inputs": {"type": "object", "additionalProperties": {"type": "string"}}
    }))
}

fn execute_output() -> Value {
    with_members(json!({
        "result_hash": {"type": "string"},
        "witness_hash": {"type": "string"},
        "force_ack_hash": {"type": "string"},
        "commit": {"type": "string", "description": "For git: the commit the change is in."},
        "evidence": {"type": "object", "description": "What the mechanism reports of the state after."},
        "run_record_hash": {"type": "string"},
        "run_record": {"type": "object"}
    }))
}

fn list_output() -> Value {
    json!({
        "type": "object",
        "properties": {
            "mechanisms": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "version": {"type": "string"},
                        "operations": {"type": "array", "items": {"type": "object"}},
                        "grants": {"type": "array", "items": {"type": "object"}},
                        "error": error_schema()
                    },
                    "required": ["id"]
                }
            },
            "error": error_schema()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_is_an_object_schema_and_names_are_unique() {
        let tools = all();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names, [EXECUTE, LIST_MECHANISMS, PLAN, SHOW, VERIFY]);
        for tool in &tools {
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
            let output = tool.output_schema.as_ref().map(|s| s.get("type"));
            assert_eq!(output, Some(Some(&json!("object"))), "{}", tool.name);
        }
    }

    #[test]
    fn only_execute_may_change_the_world() {
        for tool in all() {
            let annotations = tool.annotations.unwrap_or_default();
            let read_only = annotations.read_only_hint == Some(true);
            assert_eq!(read_only, tool.name != EXECUTE, "{}", tool.name);
            if tool.name == EXECUTE {
                assert_eq!(annotations.destructive_hint, Some(true));
                assert_eq!(annotations.idempotent_hint, Some(true));
            }
        }
    }
}
