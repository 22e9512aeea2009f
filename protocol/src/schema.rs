//! The JSON Schemas of this crate's `schemas/`, embedded at build time and compiled once per
//! process.
//!
//! Every schema has an `$id` under [`BASE_URI`] (an `.invalid` host: never fetchable) and
//! refers to the others by those absolute ids. All of them are registered up front, and the
//! validator refuses to fetch anything, so resolution is always offline and the answer does
//! not depend on the network or the working directory.

use std::fmt;
use std::sync::{LazyLock, OnceLock};

use jsonschema::{Draft, Registry, Resource, Validator as JsonValidator};
use serde_json::Value;

use crate::artifact::Artifact;
use crate::error::ErrorCode;
use crate::verbs;

/// The prefix of every schema `$id`; the rest is the file's path without `.json`.
pub const BASE_URI: &str = "https://schemas.mechanism.invalid/v0/";

/// The meta-schema every schema, ours or a mechanism's, is read as.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The shared definitions file, relative to `schemas/`; referenced, never validated against.
pub const DEFS_PATH: &str = "defs.json";

const DEFS_SOURCE: &str = include_str!("../schemas/defs.json");

/// At most this many violations are reported; one broken list can produce thousands.
pub const MAX_VIOLATIONS: usize = 20;

/// Longest message kept per violation: messages quote the offending value, which may be a
/// whole artifact.
const MAX_MESSAGE_CHARS: usize = 240;

macro_rules! schemas {
    ($( $(#[$doc:meta])* $variant:ident => $stem:literal, )*) => {
        /// A schema to validate against: one per artifact kind and per verb's params and result.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SchemaName {
            $( $(#[$doc])* $variant, )*
        }

        impl SchemaName {
            /// Every schema, in declaration order.
            pub const ALL: &'static [SchemaName] = &[$(SchemaName::$variant,)*];

            /// The file, relative to `schemas/`.
            pub const fn path(self) -> &'static str {
                match self { $(SchemaName::$variant => concat!($stem, ".json"),)* }
            }

            /// The schema's `$id`.
            pub const fn id(self) -> &'static str {
                match self {
                    $(SchemaName::$variant =>
                        concat!("https://schemas.mechanism.invalid/v0/", $stem),)*
                }
            }

            const fn source(self) -> &'static str {
                match self {
                    $(SchemaName::$variant =>
                        include_str!(concat!("../schemas/", $stem, ".json")),)*
                }
            }
        }
    };
}

schemas! {
    /// `mechanism.plan/v0`.
    Plan => "plan.v0",
    /// `mechanism.cost-witness/v0`.
    CostWitness => "cost-witness.v0",
    /// `mechanism.admission-witness/v0`.
    AdmissionWitness => "admission-witness.v0",
    /// `mechanism.force-ack/v0`.
    ForceAck => "force-ack.v0",
    /// `mechanism.result/v0`.
    Result => "result.v0",
    /// `mechanism.result-witness/v0`.
    ResultWitness => "result-witness.v0",
    /// `mechanism.workorder/v0`.
    Workorder => "workorder.v0",
    /// `mechanism.run-record/v0`.
    RunRecord => "run-record.v0",
    /// `mechanism.next-actions/v0`.
    NextActions => "next-actions.v0",
    /// `mechanism.registry/v0`.
    Registry => "registry.v0",
    /// `mechanism.execution/v0`.
    Execution => "execution.v0",
    /// `describe` params.
    DescribeParams => "verbs/describe.params",
    /// `describe` result.
    DescribeResult => "verbs/describe.result",
    /// `plan` params.
    PlanParams => "verbs/plan.params",
    /// `plan` result.
    PlanResult => "verbs/plan.result",
    /// `declare_cost` params.
    DeclareCostParams => "verbs/declare_cost.params",
    /// `declare_cost` result.
    DeclareCostResult => "verbs/declare_cost.result",
    /// `execute` params.
    ExecuteParams => "verbs/execute.params",
    /// `execute` result.
    ExecuteResult => "verbs/execute.result",
    /// `status` params.
    StatusParams => "verbs/status.params",
    /// `status` result.
    StatusResult => "verbs/status.result",
    /// `progress` notification params.
    ProgressParams => "verbs/progress.params",
}

impl SchemaName {
    /// The schema for an artifact kind, e.g. `mechanism.plan/v0`.
    pub fn for_kind(kind: &str) -> Option<Self> {
        use crate::artifact::kinds::*;
        use crate::artifact::Kind;
        Some(match kind {
            Plan::KIND => Self::Plan,
            CostWitness::KIND => Self::CostWitness,
            AdmissionWitness::KIND => Self::AdmissionWitness,
            ForceAck::KIND => Self::ForceAck,
            ResultArtifact::KIND => Self::Result,
            ResultWitness::KIND => Self::ResultWitness,
            Workorder::KIND => Self::Workorder,
            RunRecord::KIND => Self::RunRecord,
            NextActions::KIND => Self::NextActions,
            Registry::KIND => Self::Registry,
            ExecutionDocument::KIND => Self::Execution,
            _ => return None,
        })
    }

    /// The schema for a method's params (or a notification's), if the method is ours.
    pub fn for_params(method: &str) -> Option<Self> {
        Some(match method {
            verbs::DESCRIBE => Self::DescribeParams,
            verbs::PLAN => Self::PlanParams,
            verbs::DECLARE_COST => Self::DeclareCostParams,
            verbs::EXECUTE => Self::ExecuteParams,
            verbs::STATUS => Self::StatusParams,
            verbs::PROGRESS => Self::ProgressParams,
            _ => return None,
        })
    }

    /// The schema for a method's result, if the method is ours.
    pub fn for_result(method: &str) -> Option<Self> {
        Some(match method {
            verbs::DESCRIBE => Self::DescribeResult,
            verbs::PLAN => Self::PlanResult,
            verbs::DECLARE_COST => Self::DeclareCostResult,
            verbs::EXECUTE => Self::ExecuteResult,
            verbs::STATUS => Self::StatusResult,
            _ => return None,
        })
    }
}

/// Every embedded schema file as (path relative to `schemas/`, source text).
pub fn embedded_files() -> Vec<(&'static str, &'static str)> {
    std::iter::once((DEFS_PATH, DEFS_SOURCE))
        .chain(SchemaName::ALL.iter().map(|s| (s.path(), s.source())))
        .collect()
}

/// One way an instance fails a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending value; empty for the whole instance.
    pub instance_path: String,
    /// What is wrong with it (shortened when it quotes a large value).
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.instance_path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.instance_path, self.message)
        }
    }
}

/// Why a value does not pass, or a schema cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchemaError {
    /// The instance violates the schema.
    #[error("does not match {schema}: {}{}", list(violations), if *truncated { " (and more)" } else { "" })]
    Invalid {
        /// The schema's `$id`.
        schema: String,
        /// The first violations, at most [`MAX_VIOLATIONS`].
        violations: Vec<Violation>,
        /// Whether there were more than are listed.
        truncated: bool,
    },
    /// The artifact's kind has no schema here.
    #[error("unknown artifact kind {kind:?}; this build knows {}", crate::artifact::kinds::ALL_KINDS.join(", "))]
    UnknownKind {
        /// The kind found.
        kind: String,
    },
    /// A declared schema (a mechanism's params schema) is not a usable draft 2020-12 schema.
    #[error("not a usable JSON Schema (draft 2020-12, no remote references): {reason}")]
    BadSchema {
        /// The compiler's description.
        reason: String,
    },
    /// The embedded schemas did not compile: a defect of this build, not of the input.
    #[error("the embedded schemas do not compile: {reason}")]
    Embedded {
        /// The compiler's description.
        reason: String,
    },
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SchemaError {
    /// The protocol error code: bad input is `INVALID_PARAMS`, a broken build is internal.
    pub fn code(&self) -> ErrorCode {
        match self {
            SchemaError::Embedded { .. } => ErrorCode::InternalError,
            _ => ErrorCode::InvalidParams,
        }
    }
}

/// A compiled schema a mechanism declared, e.g. an operation's params schema.
#[derive(Debug)]
pub struct Validator {
    inner: JsonValidator,
}

impl Validator {
    /// Checks `instance`, listing every violation (up to [`MAX_VIOLATIONS`]).
    pub fn validate(&self, instance: &Value) -> Result<(), SchemaError> {
        check(&self.inner, "the declared schema", instance)
    }
}

struct Compiled {
    registry: Registry<'static>,
    documents: Vec<Value>,
    // Each embedded schema is compiled on first use, once: a process that validates two
    // kinds should not pay for all of them at startup.
    validators: Vec<OnceLock<Result<JsonValidator, String>>>,
}

static COMPILED: LazyLock<Result<Compiled, String>> = LazyLock::new(compile_embedded);

fn compile_embedded() -> Result<Compiled, String> {
    let mut documents = Vec::new();
    for (path, source) in embedded_files() {
        let value: Value =
            serde_json::from_str(source).map_err(|e| format!("schemas/{path}: {e}"))?;
        let id = value
            .get("$id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("schemas/{path} has no string $id"))?
            .to_owned();
        documents.push((id, value));
    }
    let registry = Registry::new()
        .draft(Draft::Draft202012)
        .extend(
            documents
                .iter()
                .map(|(id, value)| (id.clone(), Resource::from_contents(value.clone()))),
        )
        .and_then(|builder| builder.prepare())
        .map_err(|e| e.to_string())?;
    // Ordered as `SchemaName::ALL`, so a name's discriminant is its index.
    let documents = SchemaName::ALL
        .iter()
        .map(|name| {
            documents
                .iter()
                .find(|(id, _)| id == name.id())
                .map(|(_, value)| value.clone())
                .ok_or_else(|| format!("schemas/{} does not have $id {}", name.path(), name.id()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Compiled {
        registry,
        validators: documents.iter().map(|_| OnceLock::new()).collect(),
        documents,
    })
}

fn compiled() -> Result<&'static Compiled, SchemaError> {
    COMPILED.as_ref().map_err(|reason| SchemaError::Embedded {
        reason: reason.clone(),
    })
}

/// The validator of an embedded schema, compiled on first use.
fn embedded_validator(name: SchemaName) -> Result<&'static JsonValidator, SchemaError> {
    let compiled = compiled()?;
    let index = name as usize;
    let (Some(slot), Some(document)) = (
        compiled.validators.get(index),
        compiled.documents.get(index),
    ) else {
        return Err(SchemaError::Embedded {
            reason: format!("no validator for {}", name.id()),
        });
    };
    slot.get_or_init(|| {
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&compiled.registry)
            .offline()
            .build(document)
            .map_err(|e| format!("schemas/{}: {e}", name.path()))
    })
    .as_ref()
    .map_err(|reason| SchemaError::Embedded {
        reason: reason.clone(),
    })
}

/// Validates `instance` against one of the embedded schemas.
pub fn validate(name: SchemaName, instance: &Value) -> Result<(), SchemaError> {
    check(embedded_validator(name)?, name.id(), instance)
}

/// Validates an artifact against the schema of its `kind`; an unknown kind is an error.
pub fn validate_artifact(artifact: &Artifact) -> Result<(), SchemaError> {
    let name = SchemaName::for_kind(artifact.kind()).ok_or_else(|| SchemaError::UnknownKind {
        kind: artifact.kind().to_owned(),
    })?;
    validate(name, artifact.value())
}

/// Compiles a schema a mechanism declared. It is read as draft 2020-12 (a `$schema` naming
/// another draft is refused rather than silently reinterpreted), may refer to the embedded
/// schemas by their ids, and may not refer to anything else: nothing is ever fetched.
/// `format` is asserted, so `"format": "date-time"` means what its author expects.
pub fn compile(schema: &Value) -> Result<Validator, SchemaError> {
    if let Some(declared) = schema.get("$schema") {
        // The empty fragment names the same meta-schema; many schemas are written with it.
        if declared.as_str().map(|s| s.trim_end_matches('#')) != Some(DRAFT_2020_12) {
            return Err(SchemaError::BadSchema {
                reason: format!("$schema is {declared}, only {DRAFT_2020_12:?} is accepted"),
            });
        }
    }
    let compiled = compiled()?;
    let inner = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_registry(&compiled.registry)
        .offline()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| SchemaError::BadSchema {
            reason: shorten(e.to_string()),
        })?;
    Ok(Validator { inner })
}

fn check(validator: &JsonValidator, schema: &str, instance: &Value) -> Result<(), SchemaError> {
    let mut violations = Vec::new();
    let mut truncated = false;
    for error in validator.iter_errors(instance) {
        if violations.len() == MAX_VIOLATIONS {
            truncated = true;
            break;
        }
        violations.push(Violation {
            instance_path: error.instance_path().to_string(),
            message: shorten(error.to_string()),
        });
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Invalid {
            schema: schema.to_owned(),
            violations,
            truncated,
        })
    }
}

fn shorten(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_schemas_compile_and_ids_follow_paths() {
        assert!(compiled().is_ok(), "{:?}", compiled().err());
        for (path, source) in embedded_files() {
            let value: Value = serde_json::from_str(source).unwrap();
            let stem = path.strip_suffix(".json").unwrap();
            assert_eq!(value["$id"], format!("{BASE_URI}{stem}"), "{path}");
            assert_eq!(value["$schema"], DRAFT_2020_12, "{path}");
        }
        for name in SchemaName::ALL {
            assert!(name.id().starts_with(BASE_URI));
        }
    }

    #[test]
    fn violations_name_their_path_and_are_capped() {
        let schema = compile(&json!({
            "type": "array",
            "items": {"enum": ["a", "b"]}
        }))
        .unwrap();
        let err = schema.validate(&json!(["a", "x"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/1: "), "{text}");
        assert_eq!(err.code(), ErrorCode::InvalidParams);

        let many: Vec<Value> = (0..100).map(|i| json!(i)).collect();
        match schema.validate(&Value::Array(many)).unwrap_err() {
            SchemaError::Invalid {
                violations,
                truncated,
                ..
            } => {
                assert_eq!(violations.len(), MAX_VIOLATIONS);
                assert!(truncated);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn long_messages_are_shortened_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let short = shorten(long);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn declared_schemas_are_2020_12_offline_and_may_use_our_defs() {
        let err =
            compile(&json!({"$schema": "http://json-schema.org/draft-07/schema#"})).unwrap_err();
        assert!(matches!(err, SchemaError::BadSchema { .. }), "{err}");
        let err = compile(&json!({"$ref": "https://example.com/remote.json"})).unwrap_err();
        assert!(matches!(err, SchemaError::BadSchema { .. }), "{err}");
        let err = compile(&json!({"type": "nonsense"})).unwrap_err();
        assert!(matches!(err, SchemaError::BadSchema { .. }), "{err}");

        let digest = compile(&json!({
            "$schema": format!("{DRAFT_2020_12}#"),
            "$ref": "https://schemas.mechanism.invalid/v0/defs#/$defs/digest"
        }))
        .unwrap();
        assert!(digest
            .validate(&json!(crate::Digest::of_bytes(b"x").to_string()))
            .is_ok());
        assert!(digest.validate(&json!("sha256:00")).is_err());

        let time = compile(&json!({"type": "string", "format": "date-time"})).unwrap();
        assert!(time.validate(&json!("2026-11-22T18:00:00Z")).is_ok());
        assert!(time.validate(&json!("yesterday")).is_err());
    }
}
