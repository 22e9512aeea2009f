//! What can go wrong talking to a mechanism, each case with its own message.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use protocol::ErrorCode;
use serde_json::Value;

/// A failed exchange with a mechanism subprocess.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The mechanism could not be started.
    #[error("could not start the mechanism {}: {source}", program.display())]
    Spawn {
        /// The program that was to be run.
        program: PathBuf,
        /// Why it could not be.
        #[source]
        source: io::Error,
    },
    /// The params given for a call or notification are not a JSON object.
    #[error("the params of {method:?} must be a JSON object")]
    ParamsNotObject {
        /// The method they were given for.
        method: String,
    },
    /// The mechanism answered with a JSON-RPC error.
    #[error("the mechanism refused: {message} ({})", rpc_code_text(*code, *number))]
    Rpc {
        /// The stable code from `error.data.code`, when it is one of ours.
        code: Option<ErrorCode>,
        /// The JSON-RPC `error.code` number.
        number: i64,
        /// The mechanism's message.
        message: String,
        /// `error.data` as sent (`null` when absent).
        data: Value,
    },
    /// No answer came within the time allowed.
    #[error("the mechanism did not answer {method:?} within {after:?}")]
    Timeout {
        /// The method that went unanswered.
        method: String,
        /// The time it was given.
        after: Duration,
    },
    /// The mechanism exited, or closed its stdout, with the call unanswered.
    #[error("the mechanism died ({}){}", status_text(*status), tail_text(stderr_tail))]
    Died {
        /// Its exit code; `None` when a signal ended it or it had not exited yet.
        status: Option<i32>,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The mechanism wrote something on stdout that is not a JSON-RPC message for us.
    #[error(
        "the mechanism broke the protocol (its stdout is for JSON-RPC messages only): \
         {reason}: {excerpt}"
    )]
    ProtocolViolation {
        /// What is wrong with what it wrote.
        reason: String,
        /// The start of the offending line.
        excerpt: String,
    },
    /// Our own side of the connection failed.
    #[error("the connection to the mechanism failed: {0}")]
    Transport(String),
    /// Waiting for the mechanism to exit, or killing it, failed.
    #[error("could not {action} the mechanism: {source}")]
    Process {
        /// What was being done.
        action: &'static str,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// The protocol error code this failure stands for, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Rpc { code, .. } => *code,
            ClientError::Timeout { .. } => Some(ErrorCode::DeadlineExceeded),
            ClientError::Spawn { .. }
            | ClientError::ParamsNotObject { .. }
            | ClientError::Died { .. }
            | ClientError::ProtocolViolation { .. }
            | ClientError::Transport(_)
            | ClientError::Process { .. } => None,
        }
    }
}

/// Names an RPC error by its stable code when it has one, else by its number.
fn rpc_code_text(code: Option<ErrorCode>, number: i64) -> String {
    match code {
        Some(code) => format!("{code}, {number}"),
        None => format!("code {number}"),
    }
}

/// Describes how the mechanism ended.
fn status_text(status: Option<i32>) -> String {
    match status {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal, or its exit status is unknown".to_owned(),
    }
}

/// Appends the stderr tail, which usually says why it died.
fn tail_text(tail: &str) -> String {
    if tail.is_empty() {
        "; it wrote nothing to stderr".to_owned()
    } else {
        format!("; the last lines of its stderr:\n{tail}")
    }
}
