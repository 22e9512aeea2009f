//! The built-in mechanisms, by name, and the command line of the `mechanism-server`
//! executable that serves one of them.

use std::sync::Arc;

use mechanism_server::Mechanism;

pub mod cli;

/// The names of the built-in mechanisms.
pub const BUILTIN: &[&str] = &[git_apply_patch::ID];

/// A built-in mechanism by name.
pub fn builtin(name: &str) -> Option<Arc<dyn Mechanism>> {
    match name {
        git_apply_patch::ID => Some(Arc::new(git_apply_patch::GitApplyPatch)),
        _ => None,
    }
}
