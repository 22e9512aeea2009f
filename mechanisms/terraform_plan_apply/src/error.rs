//! Why a terraform plan or apply was refused or failed; each kind maps to one protocol code.

use protocol::{ErrorCode, ErrorInfo};

/// A refusal or failure of `plan` or `execute`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerraformError {
    /// `dir` is absolute, climbs out with `..`, or leads out of the root through a symlink.
    #[error("{0}")]
    PathRefused(String),
    /// The params do not fit, or terraform refused the configuration (a provider it would
    /// have to download, a syntax error).
    #[error("{0}")]
    InvalidParams(String),
    /// Another plan or apply of the same module and workspace holds its lock.
    #[error("{0}")]
    Busy(String),
    /// terraform could not apply the plan (wholly).
    #[error("{0}")]
    ExecutionFailed(String),
    /// A fault not caused by the request: terraform missing, I/O, unreadable output.
    #[error("{0}")]
    Internal(String),
}

impl From<TerraformError> for ErrorInfo {
    fn from(error: TerraformError) -> Self {
        let code = match &error {
            TerraformError::PathRefused(_) => ErrorCode::PathRefused,
            TerraformError::InvalidParams(_) => ErrorCode::InvalidParams,
            TerraformError::Busy(_) => ErrorCode::Busy,
            TerraformError::ExecutionFailed(_) => ErrorCode::ExecutionFailed,
            TerraformError::Internal(_) => ErrorCode::InternalError,
        };
        ErrorInfo::new(code, error.to_string())
    }
}
