//! Reading `terraform show -json PLANFILE`: the resource and output changes, with values
//! reduced to digests. Only deterministic fields are read; the plan file itself (which
//! holds timestamps) is never hashed.

use protocol::Digest;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::TerraformError;

/// What a value that is (partly) sensitive is shown as, instead of its digest.
pub const SENSITIVE: &str = "(sensitive)";

/// The kind of one change, which is also its effect type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Created.
    Create,
    /// Updated in place.
    Update,
    /// Destroyed (or forgotten: removed from the state only).
    Delete,
    /// Destroyed and created again, in either order.
    Replace,
}

impl Kind {
    /// Every kind, in the order the preview counts them.
    pub const ALL: [Kind; 4] = [Kind::Create, Kind::Update, Kind::Delete, Kind::Replace];

    /// The effect type, e.g. `terraform.create`.
    pub fn effect_type(self) -> &'static str {
        match self {
            Kind::Create => "terraform.create",
            Kind::Update => "terraform.update",
            Kind::Delete => "terraform.delete",
            Kind::Replace => "terraform.replace",
        }
    }

    /// The sign terraform's summary shows it with.
    pub fn sign(self) -> &'static str {
        match self {
            Kind::Create => "+",
            Kind::Update => "~",
            Kind::Delete => "-",
            Kind::Replace => "-/+",
        }
    }

    /// The kind of terraform's `actions`; `None` for no-op and read.
    fn of(actions: &[String]) -> Option<Kind> {
        let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
        match actions.as_slice() {
            ["create"] => Some(Kind::Create),
            ["update"] => Some(Kind::Update),
            ["delete"] | ["forget"] => Some(Kind::Delete),
            ["delete", "create"] | ["create", "delete"] => Some(Kind::Replace),
            _ => None,
        }
    }
}

/// One change of a managed resource or a root output.
#[derive(Debug, Clone)]
pub struct Change {
    /// The address, e.g. `terraform_data.a` or `output.o`.
    pub address: String,
    /// Its kind.
    pub kind: Kind,
    /// terraform's actions, e.g. `["delete", "create"]`.
    pub actions: Vec<String>,
    /// The resource type, `None` for an output.
    pub resource_type: Option<String>,
    /// The provider, `None` for an output.
    pub provider: Option<String>,
    /// Why terraform chose the action (e.g. `replace_because_cannot_update`).
    pub action_reason: Option<String>,
    /// The digest of the value before, or [`SENSITIVE`]; `None` when there was none.
    pub before: Option<String>,
    /// The digest of the value after (with what is unknown until applied), or
    /// [`SENSITIVE`]; `None` when there will be none.
    pub after: Option<String>,
}

/// The changes a plan makes, resources first, each list in terraform's order.
#[derive(Debug, Clone)]
pub struct PlanJson {
    /// The terraform version that made the plan.
    pub terraform_version: String,
    /// The changes, no-ops and reads left out.
    pub changes: Vec<Change>,
    /// The root module's variables marked sensitive, sorted.
    pub sensitive_variables: Vec<String>,
}

#[derive(Deserialize)]
struct Show {
    terraform_version: String,
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
    #[serde(default)]
    output_changes: Map<String, Value>,
    #[serde(default)]
    configuration: Value,
}

#[derive(Deserialize)]
struct ResourceChange {
    address: String,
    mode: String,
    #[serde(rename = "type")]
    resource_type: String,
    provider_name: String,
    change: Value,
    action_reason: Option<String>,
}

impl PlanJson {
    /// Reads what `terraform show -json` printed.
    pub fn read(bytes: &[u8]) -> Result<Self, TerraformError> {
        let show: Show = serde_json::from_slice(bytes).map_err(|e| {
            TerraformError::Internal(format!("terraform show -json gave unreadable JSON: {e}"))
        })?;
        let mut changes = Vec::new();
        for resource in show
            .resource_changes
            .into_iter()
            .filter(|r| r.mode == "managed")
        {
            if let Some(change) = change(resource.address, &resource.change) {
                changes.push(Change {
                    resource_type: Some(resource.resource_type),
                    provider: Some(resource.provider_name),
                    action_reason: resource.action_reason,
                    ..change
                });
            }
        }
        for (name, output) in &show.output_changes {
            changes.extend(change(format!("output.{name}"), output));
        }
        let mut sensitive_variables: Vec<String> = show.configuration["root_module"]["variables"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, variable)| variable["sensitive"] == Value::Bool(true))
            .map(|(name, _)| name.clone())
            .collect();
        sensitive_variables.sort();
        Ok(Self {
            terraform_version: show.terraform_version,
            changes,
            sensitive_variables,
        })
    }
}

/// The change `change` (a `show -json` change object) makes to `address`, if any.
fn change(address: String, change: &Value) -> Option<Change> {
    let actions: Vec<String> = serde_json::from_value(change["actions"].clone()).ok()?;
    let kind = Kind::of(&actions)?;
    let digest = |value: &Value, unknown: &Value, sensitive: &Value| {
        if any_true(sensitive) {
            return Some(SENSITIVE.to_owned());
        }
        (!value.is_null() || any_true(unknown)).then(|| {
            let both = serde_json::json!({"value": value, "unknown": unknown});
            value_digest(&both).to_string()
        })
    };
    Some(Change {
        address,
        kind,
        before: digest(&change["before"], &Value::Null, &change["before_sensitive"]),
        after: digest(
            &change["after"],
            &change["after_unknown"],
            &change["after_sensitive"],
        ),
        actions,
        resource_type: None,
        provider: None,
        action_reason: None,
    })
}

/// Whether `marks` (terraform's `*_sensitive` or `*_unknown` tree) marks anything.
fn any_true(marks: &Value) -> bool {
    match marks {
        Value::Bool(b) => *b,
        Value::Array(items) => items.iter().any(any_true),
        Value::Object(map) => map.values().any(any_true),
        _ => false,
    }
}

/// The sha256 of a value's canonical JSON (of its plain JSON when it holds numbers JCS
/// cannot carry).
pub fn value_digest(value: &Value) -> Digest {
    protocol::canonical::digest(value)
        .unwrap_or_else(|_| Digest::of_bytes(value.to_string().as_bytes()))
}
