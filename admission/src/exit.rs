//! Command failures and the exit codes they map to (documented in the README).

use protocol::ErrorCode;

/// Exit code: an internal error.
pub const INTERNAL: u8 = 1;
/// Exit code: usage or bad input.
pub const BAD_INPUT: u8 = 2;
/// Exit code: denied, by a gate, the mechanism's own checks, or a force-ack refusal.
pub const DENIED: u8 = 3;
/// Exit code: admitted, waiting for an operator's force-ack.
pub const AWAITING_FORCE_ACK: u8 = 4;
/// Exit code: the execution failed (or its outcome could not be confirmed).
pub const EXECUTION_FAILED: u8 = 5;
/// Exit code: the plan is stale; plan again.
pub const STALE: u8 = 6;

/// A failed command: what to tell the user, its stable code, and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// The protocol error code, when there is one.
    pub code: Option<ErrorCode>,
    /// A sentence for people.
    pub message: String,
    exit: u8,
}

impl CommandError {
    /// A failure with an explicit exit code.
    pub fn new(exit: u8, code: Option<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            exit,
        }
    }

    /// A failure caused by the user's input (exit 2).
    pub fn bad_input(code: Option<ErrorCode>, message: impl Into<String>) -> Self {
        Self::new(BAD_INPUT, code, message)
    }

    /// A failure of our own or of the environment (exit 1).
    pub fn internal(code: Option<ErrorCode>, message: impl Into<String>) -> Self {
        Self::new(INTERNAL, code, message)
    }

    /// A failure reported with a protocol code, exiting as that code calls for.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(exit_for(code), Some(code), message)
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.exit
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
        ExecutionFailed | DeadlineExceeded | Cancelled | Busy => EXECUTION_FAILED,
        ParseError | InvalidRequest | InvalidParams | MessageTooLarge | UnknownOperation
        | ArtifactRequired | UnknownPlan | UnknownArtifact => BAD_INPUT,
        MethodNotFound | InternalError | UnsupportedVersion | IntegrityMismatch => INTERNAL,
    }
}
