//! Artifacts: JSON objects with a versioned `kind`, addressed by the digest of their
//! canonical bytes.
//!
//! An [`Artifact`] keeps the JSON value exactly as received and computes its digest from
//! that value, so a field added by a newer version is never dropped from a hash. Typed views
//! (see [`kinds`]) are read from it with [`Artifact::view`] and built into one with
//! [`Artifact::from_typed`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::canonical::{self, CanonError};
use crate::digest::Digest;

pub mod effect;
pub mod kinds;

/// A typed artifact view that knows its `kind` string.
pub trait Kind: Serialize + DeserializeOwned {
    /// The versioned kind, e.g. `mechanism.plan/v0`.
    const KIND: &'static str;
}

/// Why bytes or a value are not an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not strict I-JSON.
    #[error(transparent)]
    Canon(#[from] CanonError),
    /// The top level is not an object.
    #[error("an artifact must be a JSON object")]
    NotAnObject,
    /// `kind` is missing or not a string.
    #[error("an artifact must have a string \"kind\"")]
    MissingKind,
    /// `kind` is not the one the typed view expects.
    #[error("expected kind {expected:?}, found {found:?}")]
    WrongKind {
        /// What the caller asked for.
        expected: &'static str,
        /// What the artifact says.
        found: String,
    },
    /// The value does not fit the typed view.
    #[error("artifact of kind {kind:?} does not fit its type: {source}")]
    Shape {
        /// The artifact's kind.
        kind: String,
        /// serde's description.
        source: serde_json::Error,
    },
}

/// An immutable artifact: its JSON value as received, and that value's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    value: Value,
    digest: Digest,
}

impl Artifact {
    /// Parses strict I-JSON bytes into an artifact.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        Self::from_checked(canonical::parse(bytes)?)
    }

    /// Wraps a value built in memory, checking it is I-JSON.
    pub fn from_value(value: Value) -> Result<Self, ArtifactError> {
        canonical::check(&value)?;
        Self::from_checked(value)
    }

    /// Serialises a typed view and sets its `kind`.
    pub fn from_typed<T: Kind>(typed: &T) -> Result<Self, ArtifactError> {
        let mut value = serde_json::to_value(typed).map_err(|source| ArtifactError::Shape {
            kind: T::KIND.to_owned(),
            source,
        })?;
        let Value::Object(map) = &mut value else {
            return Err(ArtifactError::NotAnObject);
        };
        map.insert("kind".to_owned(), Value::String(T::KIND.to_owned()));
        Self::from_value(value)
    }

    fn from_checked(value: Value) -> Result<Self, ArtifactError> {
        let object = value.as_object().ok_or(ArtifactError::NotAnObject)?;
        if !object.get("kind").is_some_and(Value::is_string) {
            return Err(ArtifactError::MissingKind);
        }
        let digest = canonical::digest(&value)?;
        Ok(Self { value, digest })
    }

    /// The digest of the canonical bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The `kind` string.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    /// The JSON value as received.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The top-level object.
    pub fn object(&self) -> &Map<String, Value> {
        self.value.as_object().expect("checked at construction")
    }

    /// Gives up the value.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The RFC 8785 canonical bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_jcs::to_vec(&self.value).expect("checked at construction")
    }

    /// Reads a typed view, refusing another kind.
    pub fn view<T: Kind>(&self) -> Result<T, ArtifactError> {
        if self.kind() != T::KIND {
            return Err(ArtifactError::WrongKind {
                expected: T::KIND,
                found: self.kind().to_owned(),
            });
        }
        T::deserialize(&self.value).map_err(|source| ArtifactError::Shape {
            kind: self.kind().to_owned(),
            source,
        })
    }
}
