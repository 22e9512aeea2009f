//! The JSON Schemas of this crate's `schemas/`, embedded at build time and compiled once per
//! process, on first use.
//!
//! Every schema has an `$id` under [`BASE_URI`] (an `.invalid` host: never fetchable) and
//! refers to the others by those absolute ids. A schema is compiled with the embedded files
//! it refers to registered (all of them, for a declared schema that refers in any other
//! way), and the validator refuses to fetch anything, so resolution is always offline and
//! the answer does not depend on the network or the working directory.

use std::fmt;
use std::sync::{LazyLock, OnceLock};

use jsonschema::{Draft, Registry, Validator as JsonValidator};
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
    /// `mechanism.ticket/v0`.
    Ticket => "ticket.v0",
    /// `mechanism.event/v0`.
    Event => "event.v0",
    /// `mechanism.context-snapshot/v0`.
    ContextSnapshot => "context-snapshot.v0",
    /// `mechanism.output-bundle/v0`.
    OutputBundle => "output-bundle.v0",
    /// `mechanism.pause-state/v0`.
    PauseState => "pause-state.v0",
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
            Ticket::KIND => Self::Ticket,
            Event::KIND => Self::Event,
            ContextSnapshot::KIND => Self::ContextSnapshot,
            OutputBundle::KIND => Self::OutputBundle,
            PauseState::KIND => Self::PauseState,
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

/// How many embedded files there are: `defs.json`, then one per [`SchemaName`].
const FILE_COUNT: usize = SchemaName::ALL.len() + 1;

/// Each embedded file, parsed on first use (index as [`file`]): a process that validates one
/// verb's params should not parse, or register, all of them.
static PARSED: [OnceLock<Result<Value, String>>; FILE_COUNT] =
    [const { OnceLock::new() }; FILE_COUNT];

/// Each embedded schema's validator, compiled on first use (index: the name's discriminant).
static VALIDATORS: [OnceLock<Result<JsonValidator, String>>; SchemaName::ALL.len()] =
    [const { OnceLock::new() }; SchemaName::ALL.len()];

/// Every embedded file registered, for a declared schema whose references the scan in
/// [`referenced_files`] cannot follow.
static ALL_FILES: LazyLock<Result<Registry<'static>, String>> =
    LazyLock::new(|| registry(&(0..FILE_COUNT).collect::<Vec<_>>()));

/// The embedded file at `index`: 0 is `defs.json`, then [`SchemaName::ALL`] in order.
fn file(index: usize) -> Option<(&'static str, &'static str)> {
    match index.checked_sub(1) {
        None => Some((DEFS_PATH, DEFS_SOURCE)),
        Some(i) => SchemaName::ALL
            .get(i)
            .map(|name| (name.path(), name.source())),
    }
}

/// The `$id` of the embedded file at `path`.
fn id_of(path: &str) -> String {
    format!("{BASE_URI}{}", path.trim_end_matches(".json"))
}

/// The embedded file at `index`, parsed, with its `$id` checked.
fn document(index: usize) -> Result<&'static Value, String> {
    let (Some((path, source)), Some(slot)) = (file(index), PARSED.get(index)) else {
        return Err(format!("no embedded schema file {index}"));
    };
    slot.get_or_init(|| {
        let value: Value =
            serde_json::from_str(source).map_err(|e| format!("schemas/{path}: {e}"))?;
        let id = id_of(path);
        if value.get("$id").and_then(Value::as_str) != Some(id.as_str()) {
            return Err(format!("schemas/{path} does not have $id {id}"));
        }
        Ok(value)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The embedded files `schema` refers to, directly or through one another, as [`file`]
/// indexes; `None` when it may refer to them in a way the scan does not follow (a relative
/// reference, an `$id`), so that all must be registered. Registering fewer files only ever
/// costs less: the answer is the same.
fn referenced_files(schema: &Value) -> Result<Option<Vec<usize>>, String> {
    let mut ids = Vec::new();
    if !collect_references(schema, false, &mut ids) {
        return Ok(None);
    }
    let mut found = std::collections::BTreeSet::new();
    while let Some(id) = ids.pop() {
        let stem = id.strip_prefix(BASE_URI).unwrap_or_default();
        let Some(index) = (0..FILE_COUNT)
            .find(|&i| file(i).is_some_and(|(path, _)| path.strip_suffix(".json") == Some(stem)))
        else {
            // Not ours: compiling fails to resolve it whatever is registered.
            return Ok(None);
        };
        if found.insert(index) && !collect_references(document(index)?, true, &mut ids) {
            return Ok(None);
        }
    }
    Ok(Some(found.into_iter().collect()))
}

/// Pushes the absolute ids (fragment cut) `value` refers to under [`BASE_URI`] onto `ids`;
/// false on a reference elsewhere or an `$id` (allowed at the top when `own_id`).
fn collect_references(value: &Value, own_id: bool, ids: &mut Vec<String>) -> bool {
    match value {
        Value::Object(map) => map.iter().all(|(key, child)| match (key.as_str(), child) {
            ("$ref" | "$dynamicRef" | "$recursiveRef", Value::String(target)) => {
                if target.starts_with('#') {
                    return true;
                }
                let document = target.split('#').next().unwrap_or_default();
                if !document.starts_with(BASE_URI) {
                    return false;
                }
                ids.push(document.to_owned());
                true
            }
            ("$id", _) => own_id,
            _ => collect_references(child, false, ids),
        }),
        Value::Array(items) => items
            .iter()
            .all(|item| collect_references(item, false, ids)),
        _ => true,
    }
}

/// A registry of the embedded files at `indexes`, borrowing their parsed documents.
fn registry(indexes: &[usize]) -> Result<Registry<'static>, String> {
    let mut resources = Vec::with_capacity(indexes.len());
    for &index in indexes {
        let (path, _) = file(index).ok_or_else(|| format!("no embedded schema file {index}"))?;
        resources.push((id_of(path), document(index)?));
    }
    Registry::new()
        .draft(Draft::Draft202012)
        .extend(resources)
        .and_then(|builder| builder.prepare())
        .map_err(|e| e.to_string())
}

/// Why [`build`] failed.
enum BuildError {
    /// The embedded schemas are broken.
    Embedded(String),
    /// `schema` itself does not compile.
    Schema(String),
}

/// Compiles `schema`, offline, with the embedded files it refers to registered.
fn build(schema: &Value, assert_formats: bool) -> Result<JsonValidator, BuildError> {
    let own;
    let registry = match referenced_files(schema).map_err(BuildError::Embedded)? {
        Some(indexes) => {
            own = registry(&indexes).map_err(BuildError::Embedded)?;
            &own
        }
        None => ALL_FILES
            .as_ref()
            .map_err(|reason| BuildError::Embedded(reason.clone()))?,
    };
    let mut options = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_registry(registry)
        .offline();
    if assert_formats {
        options = options.should_validate_formats(true);
    }
    options
        .build(schema)
        .map_err(|e| BuildError::Schema(e.to_string()))
}

/// The validator of an embedded schema, compiled on first use.
fn embedded_validator(name: SchemaName) -> Result<&'static JsonValidator, SchemaError> {
    let index = name as usize;
    let Some(slot) = VALIDATORS.get(index) else {
        return Err(SchemaError::Embedded {
            reason: format!("no validator for {}", name.id()),
        });
    };
    slot.get_or_init(|| {
        // Compiled through a reference, as a registered resource: the compiler checks a root
        // schema against the meta-schema, and the check of an `$id`'s pattern alone cost
        // more than compiling status's params schema. The files are constants, checked
        // against the meta-schema by a test instead.
        build(&serde_json::json!({ "$ref": name.id() }), false).map_err(|e| match e {
            BuildError::Embedded(reason) => reason,
            BuildError::Schema(reason) => format!("schemas/{}: {reason}", name.path()),
        })
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
    let inner = build(schema, true).map_err(|e| match e {
        BuildError::Embedded(reason) => SchemaError::Embedded { reason },
        BuildError::Schema(reason) => SchemaError::BadSchema {
            reason: shorten(reason),
        },
    })?;
    Ok(Validator { inner })
}

fn check(validator: &JsonValidator, schema: &str, instance: &Value) -> Result<(), SchemaError> {
    // Most instances pass: `is_valid` stops at nothing and builds no error to find that out.
    if validator.is_valid(instance) {
        return Ok(());
    }
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
        assert!(ALL_FILES.is_ok(), "{:?}", ALL_FILES.as_ref().err());
        // Compiling them through a reference skips this check, so it is made here.
        for index in 0..FILE_COUNT {
            let document = document(index).unwrap();
            let checked = jsonschema::draft202012::meta::validate(document);
            assert!(checked.is_ok(), "{:?}: {:?}", file(index), checked.err());
        }
        for name in SchemaName::ALL {
            let validator = embedded_validator(*name);
            assert!(validator.is_ok(), "{name:?}: {:?}", validator.err());
        }
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

        // A relative reference under an `$id` of ours resolves too (every file registered).
        let relative = compile(&json!({
            "$id": format!("{BASE_URI}mine"),
            "$ref": "defs#/$defs/digest"
        }))
        .unwrap();
        assert!(relative.validate(&json!("sha256:00")).is_err());

        let time = compile(&json!({"type": "string", "format": "date-time"})).unwrap();
        assert!(time.validate(&json!("2026-11-22T18:00:00Z")).is_ok());
        assert!(time.validate(&json!("yesterday")).is_err());
    }

    #[test]
    fn only_the_files_a_schema_refers_to_are_registered() {
        let files = |name: SchemaName| referenced_files(&json!({ "$ref": name.id() })).unwrap();
        let file = |name: SchemaName| name as usize + 1;
        for name in SchemaName::ALL {
            let found = files(*name);
            assert!(
                found.is_some(),
                "{name:?} refers in a way the scan does not follow"
            );
        }
        let describe = file(SchemaName::DescribeParams);
        assert_eq!(files(SchemaName::DescribeParams), Some(vec![describe]));
        let status = file(SchemaName::StatusParams);
        assert_eq!(files(SchemaName::StatusParams), Some(vec![0, status]));
        // Through force-ack.v0 to defs.
        let (force_ack, execute) = (file(SchemaName::ForceAck), file(SchemaName::ExecuteParams));
        assert_eq!(
            files(SchemaName::ExecuteParams),
            Some(vec![0, force_ack, execute])
        );
        let declared = |schema: Value| referenced_files(&schema).unwrap();
        assert_eq!(
            declared(json!({"$ref": format!("{BASE_URI}defs#/$defs/digest")})),
            Some(vec![0])
        );
        assert_eq!(declared(json!({"$id": "https://example.com/s"})), None);
        assert_eq!(declared(json!({"$ref": "defs#/$defs/digest"})), None);
        assert_eq!(
            declared(json!({"$ref": format!("{BASE_URI}nothing")})),
            None
        );
    }
}
