//! Command failures and the exit codes they map to (documented in the README).

use protocol::{ErrorCode, ErrorInfo};

/// Exit code: an internal error.
pub const INTERNAL: u8 = 1;
/// Exit code: usage or bad input.
pub const BAD_INPUT: u8 = 2;
/// Exit code: denied, by a gate, the mechanism's own checks, or a force-ack refusal.
pub const DENIED: u8 = 3;
/// Exit code: admitted, waiting for an operator's force-ack.
pub const AWAITING_FORCE_ACK: u8 = 4;
/// Exit code: the execution failed (or its outcome could not be confirmed), or an artifact
/// failed verification.
pub const EXECUTION_FAILED: u8 = 5;
/// Exit code: the plan is stale; plan again.
pub const STALE: u8 = 6;

/// A failed command: the error to report, and the exit code it ends the process with.
#[derive(Debug, thiserror::Error)]
#[error("{}", error.message)]
pub struct CommandError {
    /// What went wrong, with its stable code.
    pub error: ErrorInfo,
    exit: u8,
}

impl CommandError {
    /// A failure with an explicit exit code.
    pub fn new(exit: u8, error: impl Into<ErrorInfo>) -> Self {
        Self {
            error: error.into(),
            exit,
        }
    }

    /// A failure caused by the user's input (exit 2).
    pub fn bad_input(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(BAD_INPUT, ErrorInfo::new(code, message))
    }

    /// A failure of our own or of the environment (exit 1).
    pub fn internal(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(INTERNAL, ErrorInfo::new(code, message))
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.exit
    }
}

/// An error reported as is, exiting as its code calls for.
impl From<ErrorInfo> for CommandError {
    fn from(error: ErrorInfo) -> Self {
        Self {
            exit: exit_for(error.code),
            error,
        }
    }
}

/// The exit code a protocol error code calls for.
pub fn exit_for(code: ErrorCode) -> u8 {
    use ErrorCode::*;
    match code {
        CapabilityDenied | PathRefused | BudgetExceeded | AdmissionRequired | ForceAckInvalid
        | ForceAckExpired | ForceAckReplayed => DENIED,
        ForceAckRequired => AWAITING_FORCE_ACK,
        StalePlan => STALE,
        // An object that does not match its digest fails verification, whoever reads it.
        ExecutionFailed | DeadlineExceeded | Cancelled | Busy | IntegrityMismatch => {
            EXECUTION_FAILED
        }
        ParseError | InvalidRequest | InvalidParams | MessageTooLarge | UnknownOperation
        | ArtifactRequired | UnknownPlan | UnknownArtifact => BAD_INPUT,
        MethodNotFound | InternalError | UnsupportedVersion => INTERNAL,
    }
}
