//! The protocol's errors: [`ErrorCode`] (a JSON-RPC number and a stable string) and
//! [`ErrorInfo`], the one error every layer carries: mechanisms, the runtime, admission,
//! artifacts and the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($number:expr, $name:literal), )*) => {
        /// A protocol error code, carried as `error.data.code` in JSON-RPC errors.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The JSON-RPC `error.code` number.
            pub const fn number(self) -> i32 {
                match self { $(ErrorCode::$variant => $number,)* }
            }

            /// The stable string code, e.g. `STALE_PLAN`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(ErrorCode::$variant),)*
                    _ => Err(UnknownErrorCode(s.to_owned())),
                }
            }
        }
    };
}

error_codes! {
    /// The message is not valid JSON.
    ParseError = (-32700, "PARSE_ERROR"),
    /// The message is JSON but not a valid JSON-RPC 2.0 request.
    InvalidRequest = (-32600, "INVALID_REQUEST"),
    /// No such method.
    MethodNotFound = (-32601, "METHOD_NOT_FOUND"),
    /// The params do not fit the method or operation.
    InvalidParams = (-32602, "INVALID_PARAMS"),
    /// A fault inside the peer, not caused by the request.
    InternalError = (-32603, "INTERNAL_ERROR"),
    /// The message, or one of its header lines, exceeds a size bound.
    MessageTooLarge = (-32001, "MESSAGE_TOO_LARGE"),
    /// No protocol version both sides speak.
    UnsupportedVersion = (-32002, "UNSUPPORTED_VERSION"),
    /// The mechanism has no such operation.
    UnknownOperation = (-32003, "UNKNOWN_OPERATION"),
    /// A payload must be put into the store and passed by digest.
    ArtifactRequired = (-32004, "ARTIFACT_REQUIRED"),
    /// No plan with that hash is known.
    UnknownPlan = (-32005, "UNKNOWN_PLAN"),
    /// No artifact or blob with that digest is in the store.
    UnknownArtifact = (-32006, "UNKNOWN_ARTIFACT"),
    /// Stored bytes do not hash to their digest.
    IntegrityMismatch = (-32007, "INTEGRITY_MISMATCH"),
    /// The plan recomputed against the current state has another hash.
    StalePlan = (-32008, "STALE_PLAN"),
    /// No admitting AdmissionWitness for this plan.
    AdmissionRequired = (-32009, "ADMISSION_REQUIRED"),
    /// A destructive plan needs a force-ack.
    ForceAckRequired = (-32010, "FORCE_ACK_REQUIRED"),
    /// The force-ack is malformed, unsigned, untrusted or for another plan.
    ForceAckInvalid = (-32011, "FORCE_ACK_INVALID"),
    /// The force-ack has expired or lives longer than allowed.
    ForceAckExpired = (-32012, "FORCE_ACK_EXPIRED"),
    /// The force-ack's nonce was already used.
    ForceAckReplayed = (-32013, "FORCE_ACK_REPLAYED"),
    /// A resource or effect lies outside what is granted.
    CapabilityDenied = (-32014, "CAPABILITY_DENIED"),
    /// Estimated or actual cost exceeds the budget.
    BudgetExceeded = (-32015, "BUDGET_EXCEEDED"),
    /// The deadline passed before the work finished.
    DeadlineExceeded = (-32016, "DEADLINE_EXCEEDED"),
    /// The request was cancelled.
    Cancelled = (-32017, "CANCELLED"),
    /// The same work is already running.
    Busy = (-32018, "BUSY"),
    /// The effect could not be applied.
    ExecutionFailed = (-32019, "EXECUTION_FAILED"),
    /// A path is refused: absolute, `..`, inside `.git`, through a symlink, or colliding.
    PathRefused = (-32020, "PATH_REFUSED"),
}

/// What went wrong: a stable code, a message for people, and structured facts.
///
/// The same shape everywhere: a mechanism returns it, the runtime answers it as a JSON-RPC
/// error (`{code: number, message, data: {code: "STABLE_CODE", ..data}}`), a client reads it
/// back from one, and a result or run record stores it (`{code, message, data?}`). Every
/// library error of this workspace converts into it with `From`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ErrorInfo {
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
    /// Structured facts beside the code (a JSON-RPC error's `data` less its `code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

impl ErrorInfo {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with one more structured fact.
    pub fn with_data(mut self, key: &str, value: Value) -> Self {
        self.data
            .get_or_insert_with(Map::new)
            .insert(key.to_owned(), value);
        self
    }

    /// The same error with `context` put before its message (`context: message`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The JSON-RPC error object: `{code, message, data: {code: "STABLE_CODE", ..data}}`.
    pub fn to_json_rpc(&self) -> Value {
        crate::jsonrpc::error_object(self.code, &self.message, self.data.clone())
    }

    /// Reads a JSON-RPC error object back; `None` when it carries no stable code of ours.
    pub fn from_json_rpc(error: &Value) -> Option<Self> {
        let code = crate::jsonrpc::error_code_of(error)?;
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        let mut data = error.get("data").and_then(Value::as_object).cloned();
        if let Some(map) = data.as_mut() {
            map.remove("code");
        }
        Some(Self {
            code,
            message: message.to_owned(),
            data: data.filter(|m| !m.is_empty()),
        })
    }
}

/// The library errors that know their code convert into [`ErrorInfo`] with their message.
macro_rules! into_error_info {
    ($($error:ty),*) => {$(
        impl From<$error> for ErrorInfo {
            fn from(error: $error) -> Self {
                Self::new(error.code(), error.to_string())
            }
        }
    )*};
}

into_error_info!(
    crate::store::StoreError,
    crate::force_ack::ForceAckError,
    crate::schema::SchemaError,
    crate::framing::FrameError
);

/// A string that is not a known error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn an_error_round_trips_through_a_json_rpc_error_object() {
        let error = ErrorInfo::new(ErrorCode::StalePlan, "the base moved")
            .with_data("recomputed", Value::from("sha256:00"));
        let object = error.to_json_rpc();
        assert_eq!(object["code"], ErrorCode::StalePlan.number());
        assert_eq!(object["data"]["code"], "STALE_PLAN");
        assert_eq!(object["data"]["recomputed"], "sha256:00");
        assert_eq!(ErrorInfo::from_json_rpc(&object), Some(error));
        assert_eq!(
            ErrorInfo::from_json_rpc(&serde_json::json!({"code": -32601, "message": "x"})),
            None
        );
    }

    #[test]
    fn an_error_without_data_serialises_as_code_and_message() {
        let error = ErrorInfo::new(ErrorCode::Busy, "locked");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"code": "BUSY", "message": "locked"})
        );
        assert_eq!(error.to_string(), "BUSY: locked");
    }

    #[test]
    fn numbers_and_strings_are_unique_and_round_trip() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(
                numbers.insert(code.number()),
                "duplicate number {}",
                code.number()
            );
            assert!(names.insert(code.as_str()), "duplicate name {code}");
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn standard_json_rpc_numbers_are_kept() {
        assert_eq!(ErrorCode::ParseError.number(), -32700);
        assert_eq!(ErrorCode::InvalidRequest.number(), -32600);
        assert_eq!(ErrorCode::MethodNotFound.number(), -32601);
        assert_eq!(ErrorCode::InvalidParams.number(), -32602);
        for &code in ErrorCode::ALL {
            let n = code.number();
            assert!(
                (-32768..=-32000).contains(&n),
                "{code} uses {n}, outside the range JSON-RPC reserves"
            );
        }
    }

    #[test]
    fn every_design_code_exists() {
        for name in [
            "PARSE_ERROR",
            "INVALID_REQUEST",
            "METHOD_NOT_FOUND",
            "INVALID_PARAMS",
            "MESSAGE_TOO_LARGE",
            "UNSUPPORTED_VERSION",
            "UNKNOWN_OPERATION",
            "ARTIFACT_REQUIRED",
            "UNKNOWN_PLAN",
            "UNKNOWN_ARTIFACT",
            "INTEGRITY_MISMATCH",
            "STALE_PLAN",
            "ADMISSION_REQUIRED",
            "FORCE_ACK_REQUIRED",
            "FORCE_ACK_INVALID",
            "FORCE_ACK_EXPIRED",
            "FORCE_ACK_REPLAYED",
            "CAPABILITY_DENIED",
            "BUDGET_EXCEEDED",
            "DEADLINE_EXCEEDED",
            "CANCELLED",
            "BUSY",
            "EXECUTION_FAILED",
            "PATH_REFUSED",
        ] {
            assert!(name.parse::<ErrorCode>().is_ok(), "{name} is missing");
        }
        assert!("NOPE".parse::<ErrorCode>().is_err());
    }
}
