//! Wire types of the mechanism protocol: digests, canonical JSON, artifacts, schemas,
//! error codes, message framing and the content-addressed object store.
//!
//! Nothing here starts processes, touches git or needs an async runtime.

pub mod artifact;
pub mod canonical;
pub mod digest;
pub mod error;
pub mod force_ack;
pub mod framing;
pub mod jsonrpc;
pub mod schema;
pub mod store;
pub mod verbs;

pub use digest::Digest;
pub use error::{ErrorCode, ErrorInfo};
