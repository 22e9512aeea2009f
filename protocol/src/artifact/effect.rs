//! Typed effects and touches: what a plan intends to do and which resources it reaches.
//!
//! Every effect names its `type` (which is also the capability it needs, e.g. `fs.write`)
//! and the `resource` it acts on, a `/`-separated path relative to the mechanism's root.
//! Type-specific fields sit beside them, so a new mechanism can add effect types without a
//! protocol change, and the admission can check any effect against its grants.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Effect type: write (create or replace) a file's content.
pub const FS_WRITE: &str = "fs.write";
/// Effect type: delete a file.
pub const FS_DELETE: &str = "fs.delete";
/// Effect type: change a file's mode (e.g. `100644` to `100755`).
pub const FS_MODE: &str = "fs.mode";
/// Effect type: create a commit and move a branch to it.
pub const GIT_COMMIT: &str = "git.commit";

/// One intended or applied effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The effect type, which is also the capability it needs.
    #[serde(rename = "type")]
    pub effect_type: String,
    /// The resource acted on, relative to the mechanism's root.
    pub resource: String,
    /// Type-specific fields (`before`, `after`, `mode`, `from`, `to`, ...).
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl Effect {
    /// An effect with no detail yet.
    pub fn new(effect_type: &str, resource: impl Into<String>) -> Self {
        Self {
            effect_type: effect_type.to_owned(),
            resource: resource.into(),
            detail: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

/// How a plan reaches a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read only.
    Read,
    /// Create or modify.
    Write,
    /// Remove.
    Delete,
}

/// One resource a plan reads, writes or deletes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Touch {
    /// The resource, relative to the mechanism's root.
    pub resource: String,
    /// How it is reached.
    pub access: Access,
}

/// Why `resource` is not a safe path relative to the root, if it is not: every effect and
/// touch must name one (no absolute path, no `.` or `..` component, no empty component, no
/// backslash or NUL).
pub fn unsafe_resource(resource: &str) -> Option<&'static str> {
    if resource.is_empty() {
        return Some("is empty");
    }
    if resource.starts_with('/') {
        return Some("is absolute");
    }
    if resource.contains('\\') {
        return Some("contains a backslash");
    }
    if resource.contains('\0') {
        return Some("contains a NUL byte");
    }
    resource.split('/').find_map(|component| match component {
        "" => Some("has an empty component"),
        "." => Some("has a . component"),
        ".." => Some("climbs out with .."),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_resources_are_named_with_the_reason() {
        assert_eq!(unsafe_resource("repo/a.txt"), None);
        assert_eq!(unsafe_resource("/etc/passwd"), Some("is absolute"));
        assert_eq!(unsafe_resource("repo/../x"), Some("climbs out with .."));
        assert_eq!(unsafe_resource(".."), Some("climbs out with .."));
        assert_eq!(unsafe_resource("a//b"), Some("has an empty component"));
        assert_eq!(unsafe_resource("./a"), Some("has a . component"));
        assert_eq!(unsafe_resource("a\\b"), Some("contains a backslash"));
        assert_eq!(unsafe_resource("a\0b"), Some("contains a NUL byte"));
        assert_eq!(unsafe_resource(""), Some("is empty"));
    }
}
