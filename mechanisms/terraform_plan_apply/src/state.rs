//! The facts a plan pins: the state (lineage, serial, digest) and the configuration.

use std::fs;
use std::path::Path;

use protocol::Digest;
use serde_json::{json, Value};

use crate::error::TerraformError;

/// What identifies one version of a terraform state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFacts {
    /// The state's lineage, `None` before the first apply.
    pub lineage: Option<String>,
    /// Its serial, `None` before the first apply.
    pub serial: Option<u64>,
    /// The sha256 of its bytes as `terraform state pull` gives them; `None` when empty.
    pub digest: Option<Digest>,
    /// Its outputs, each as [`crate::plan_json::value_digest`] or `(sensitive)`.
    pub outputs: Value,
}

impl StateFacts {
    /// Reads the facts from the bytes `terraform state pull` printed.
    pub fn read(pulled: &[u8]) -> Result<Self, TerraformError> {
        if pulled.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self {
                lineage: None,
                serial: None,
                digest: None,
                outputs: json!({}),
            });
        }
        let state: Value = serde_json::from_slice(pulled)
            .map_err(|e| TerraformError::Internal(format!("the state is not JSON: {e}")))?;
        let mut outputs = serde_json::Map::new();
        if let Some(all) = state["outputs"].as_object() {
            for (name, output) in all {
                let digest = if output["sensitive"].as_bool() == Some(true) {
                    json!(crate::plan_json::SENSITIVE)
                } else {
                    json!(crate::plan_json::value_digest(&output["value"]).to_string())
                };
                outputs.insert(name.clone(), digest);
            }
        }
        Ok(Self {
            lineage: state["lineage"].as_str().map(str::to_owned),
            serial: state["serial"].as_u64(),
            digest: Some(Digest::of_bytes(pulled)),
            outputs: Value::Object(outputs),
        })
    }

    /// The facts as JSON: lineage, serial and digest.
    pub fn to_json(&self) -> Value {
        json!({
            "lineage": self.lineage,
            "serial": self.serial,
            "digest": self.digest.map(|d| d.to_string()),
        })
    }
}

/// Whether `name` is part of the root module's configuration: what terraform reads there
/// (`*.tf`, `*.tf.json`, the lock file, auto-loaded variable files).
fn is_configuration(name: &str) -> bool {
    [".tf", ".tf.json", ".auto.tfvars", ".auto.tfvars.json"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
        || matches!(
            name,
            ".terraform.lock.hcl" | "terraform.tfvars" | "terraform.tfvars.json"
        )
}

/// The sha256 over the root module's configuration files, sorted by name: each name, its
/// length and its bytes.
pub fn configuration_digest(module: &Path) -> Result<Digest, TerraformError> {
    let io = |e: std::io::Error| {
        TerraformError::Internal(format!("reading the module {}: {e}", module.display()))
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(module).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_configuration(n)) {
            if entry.file_type().map_err(io)?.is_file() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    let mut hasher = protocol::digest::Hasher::new();
    for name in names {
        let bytes = fs::read(module.join(&name)).map_err(io)?;
        hasher.update(format!("{name}\0{}\0", bytes.len()).as_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finish())
}
