//! Small types shared by several artifact kinds and verbs.

use serde::{Deserialize, Serialize};

/// Which mechanism, at which version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MechanismRef {
    /// The mechanism id, e.g. `git_apply_patch`.
    pub id: String,
    /// Its version, compared for equality with the registry pin.
    pub version: String,
}

/// How deterministic an operation is; lower is stricter, so a level is within a ceiling
/// when `level <= ceiling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Determinism {
    /// Plan and effects are a pure function of the inputs and the recorded state.
    D0,
    /// The plan is; the effect's incidental details (times, ids) may differ.
    D1,
    /// The effect depends on systems outside the recorded state.
    D2,
    /// No promise.
    D3,
}

/// A capability over the resources matching any of the globs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The capability, which is also an effect type, e.g. `fs.write`.
    pub capability: String,
    /// Resource globs, relative to the mechanism's root (or the workspace, in a registry).
    pub resources: Vec<String>,
}

/// Estimated or measured costs; a field left out is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Costs {
    /// Wall-clock milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// Bytes written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// Files created, changed or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_touched: Option<u64>,
}

/// Upper bounds on costs; `wall_ms` is always set because it becomes the execute deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Budget {
    /// Wall-clock milliseconds.
    pub wall_ms: u64,
    /// Bytes written, if bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// Files created, changed or deleted, if bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_touched: Option<u64>,
}

/// A gate's (or a run's) decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GateDecision {
    /// The check held.
    Pass,
    /// The check failed.
    Fail,
}
