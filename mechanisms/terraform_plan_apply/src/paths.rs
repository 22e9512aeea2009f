//! The root module's directory: a relative path that stays inside the root.

use std::path::{Component, Path, PathBuf};

use crate::error::TerraformError;

/// A root module directory found inside the root.
#[derive(Debug, Clone)]
pub struct ModuleDir {
    /// Its canonical path.
    pub path: PathBuf,
    /// Its `/`-separated path relative to the root, empty for the root itself; the prefix
    /// of every resource the plan names.
    pub relative: String,
}

impl ModuleDir {
    /// `name` (e.g. `terraform_data.a`) as a resource relative to the root.
    pub fn resource(&self, name: &str) -> String {
        if self.relative.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.relative)
        }
    }
}

/// Resolves `dir` under `root`: absolute paths, `..` and symlinks that lead out of the root
/// are refused (`PATH_REFUSED`); a missing directory is `INVALID_PARAMS`.
pub fn resolve(root: &Path, dir: &str) -> Result<ModuleDir, TerraformError> {
    let refused = |why: &str| TerraformError::PathRefused(format!("dir {dir:?}: {why}"));
    let mut parts = Vec::new();
    for component in Path::new(dir).components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or_else(|| refused("not UTF-8"))?)
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(refused("`..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused("must be relative to the root"))
            }
        }
    }
    let root = root
        .canonicalize()
        .map_err(|e| TerraformError::Internal(format!("the root {}: {e}", root.display())))?;
    let path = root.join(parts.join("/")).canonicalize().map_err(|e| {
        TerraformError::InvalidParams(format!(
            "dir {dir:?} is not a directory under the root: {e}"
        ))
    })?;
    if !path.starts_with(&root) {
        return Err(refused("a symlink leads out of the root"));
    }
    if !path.is_dir() {
        return Err(TerraformError::InvalidParams(format!(
            "dir {dir:?} is not a directory"
        )));
    }
    Ok(ModuleDir {
        path,
        relative: parts.join("/"),
    })
}
