//! The mechanism side of the protocol: the server runtime and the built-in mechanisms.

use std::sync::Arc;

pub mod cli;
pub mod failpoint;
pub mod git_apply_patch;
pub mod mechanism;
pub mod server;

pub use mechanism::Mechanism;

/// The names of the built-in mechanisms.
pub const BUILTIN: &[&str] = &[git_apply_patch::ID];

/// A built-in mechanism by name.
pub fn builtin(name: &str) -> Option<Arc<dyn Mechanism>> {
    match name {
        git_apply_patch::ID => Some(Arc::new(git_apply_patch::GitApplyPatch)),
        _ => None,
    }
}
