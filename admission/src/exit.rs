//! Command failures and the exit codes they map to (documented in the README).

use protocol::ErrorCode;

/// Exit code: an internal error.
pub const INTERNAL: u8 = 1;
/// Exit code: usage or bad input.
pub const BAD_INPUT: u8 = 2;

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
    /// A failure caused by the user's input (exit 2).
    pub fn bad_input(code: Option<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            exit: BAD_INPUT,
        }
    }

    /// A failure of our own or of the environment (exit 1).
    pub fn internal(code: Option<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            exit: INTERNAL,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.exit
    }
}
