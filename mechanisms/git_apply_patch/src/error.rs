//! Why an apply was refused or failed; each kind maps to one protocol error code.

use protocol::{ErrorCode, ErrorInfo};

/// A refusal or failure of `plan` or `execute`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A path the patch names is unsafe: absolute, `..`, `.git`, `.gitmodules`, a symlink
    /// or through one, colliding, or a symlink or submodule change. Nothing was written.
    #[error("{0}")]
    PathRefused(String),
    /// The repository lies outside the root.
    #[error("{0}")]
    CapabilityDenied(String),
    /// The params or the patch are malformed, or the patch does not apply.
    #[error("{0}")]
    InvalidParams(String),
    /// The state changed since the plan: the recomputed plan differs, or the ref moved.
    #[error("{0}")]
    StalePlan(String),
    /// Another process holds a lock the execute needs (ours, `index.lock`, a ref's lock);
    /// nothing was changed, and retrying later may succeed.
    #[error("{0}")]
    Busy(String),
    /// The effect could not be (fully) applied.
    #[error("{0}")]
    ExecutionFailed(String),
    /// Stopped before the point of no return (cancelled, or past the deadline), with the
    /// code to report; nothing was applied.
    #[error("{1}")]
    Stopped(ErrorCode, String),
    /// A fault not caused by the request (a git or I/O error).
    #[error("{0}")]
    Internal(String),
}

impl ApplyError {
    /// The protocol error code this error is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApplyError::PathRefused(_) => ErrorCode::PathRefused,
            ApplyError::CapabilityDenied(_) => ErrorCode::CapabilityDenied,
            ApplyError::InvalidParams(_) => ErrorCode::InvalidParams,
            ApplyError::StalePlan(_) => ErrorCode::StalePlan,
            ApplyError::Busy(_) => ErrorCode::Busy,
            ApplyError::ExecutionFailed(_) => ErrorCode::ExecutionFailed,
            ApplyError::Stopped(code, _) => *code,
            ApplyError::Internal(_) => ErrorCode::InternalError,
        }
    }
}

impl From<ApplyError> for ErrorInfo {
    fn from(error: ApplyError) -> Self {
        ErrorInfo::new(error.code(), error.to_string())
    }
}

impl From<git2::Error> for ApplyError {
    fn from(error: git2::Error) -> Self {
        ApplyError::Internal(format!("git: {}", error.message()))
    }
}
