//! The facts a plan pins: the state (lineage, serial, digest) and the configuration (the
//! root module and the modules it calls).

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

/// The sha256 over the configuration: the root module's files, sorted by name (each name,
/// its length and its bytes), then, by module key, each module terraform installed (its
/// key, its source and its files). Modules are read from `modules.json` in terraform's data
/// directory `data_dir`, as `init` left it; a local module (`./x`, `../x`) must lie inside
/// `root` (`PATH_REFUSED`).
pub fn configuration_digest(
    root: &Path,
    module: &Path,
    data_dir: &Path,
) -> Result<Digest, TerraformError> {
    let mut hasher = protocol::digest::Hasher::new();
    hash_files(&mut hasher, module)?;
    for installed in installed_modules(data_dir)? {
        let dir = module.join(&installed.dir);
        if installed.is_local() {
            check_inside(root, &dir, &installed.key)?;
        }
        hasher.update(format!("module\0{}\0{}\0", installed.key, installed.source).as_bytes());
        hash_files(&mut hasher, &dir)?;
    }
    Ok(hasher.finish())
}

/// One module call terraform installed, as `modules.json` records it.
#[derive(Debug, serde::Deserialize)]
struct Installed {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Source")]
    source: String,
    #[serde(rename = "Dir")]
    dir: String,
}

impl Installed {
    /// A module in a directory of the configuration's, not one terraform downloaded.
    fn is_local(&self) -> bool {
        self.source.starts_with("./") || self.source.starts_with("../")
    }
}

/// The modules `init` installed, the root module left out, sorted by key; none before
/// the first `init` or when the configuration calls none.
fn installed_modules(data_dir: &Path) -> Result<Vec<Installed>, TerraformError> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(rename = "Modules", default)]
        modules: Vec<Installed>,
    }
    let path = data_dir.join("modules").join("modules.json");
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(TerraformError::Internal(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        TerraformError::Internal(format!("terraform's {} is unreadable: {e}", path.display()))
    })?;
    let mut modules: Vec<Installed> = manifest
        .modules
        .into_iter()
        .filter(|m| !m.key.is_empty())
        .collect();
    modules.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(modules)
}

/// Refuses a local module `key` whose directory `dir` is not inside `root`.
fn check_inside(root: &Path, dir: &Path, key: &str) -> Result<(), TerraformError> {
    let canonical = |p: &Path| {
        p.canonicalize().map_err(|e| {
            TerraformError::InvalidParams(format!("module {key:?}: {}: {e}", p.display()))
        })
    };
    if canonical(dir)?.starts_with(canonical(root)?) {
        Ok(())
    } else {
        Err(TerraformError::PathRefused(format!(
            "module {key:?}: its source {} is outside the root",
            dir.display()
        )))
    }
}

/// Adds the configuration files directly in `dir`, sorted by name: each name, its length
/// and its bytes.
fn hash_files(hasher: &mut protocol::digest::Hasher, dir: &Path) -> Result<(), TerraformError> {
    let io = |e: std::io::Error| {
        TerraformError::Internal(format!("reading the module {}: {e}", dir.display()))
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_configuration(n)) {
            if entry.file_type().map_err(io)?.is_file() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    for name in names {
        let bytes = fs::read(dir.join(&name)).map_err(io)?;
        hasher.update(format!("{name}\0{}\0", bytes.len()).as_bytes());
        hasher.update(&bytes);
    }
    Ok(())
}
