//! Artifacts: JSON objects with a versioned kind, addressed by the digest of their canonical
//! bytes.
//!
//! An artifact names its kind in one of two ways (see [`Artifact::kind`]): a `kind` field, or,
//! for an in-toto Statement v1, its `_type` and `predicateType`. A statement carries no `kind`
//! field, because in-toto's own parsers refuse fields a Statement does not define.
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

/// A typed artifact view that knows its kind.
pub trait Kind: Serialize + DeserializeOwned {
    /// The versioned kind, e.g. `mechanism.plan/v0`.
    const KIND: &'static str;
}

/// The in-toto Statement v1 `_type`: a top-level object with it is a statement, whose kind is
/// read from its `predicateType` (see [`kinds::PREDICATE_KINDS`]).
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// Why bytes or a value are not an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not strict I-JSON.
    #[error(transparent)]
    Canon(#[from] CanonError),
    /// The top level is not an object.
    #[error("an artifact must be a JSON object")]
    NotAnObject,
    /// Neither a string `kind` nor, for an in-toto Statement v1, a string `predicateType`.
    #[error("an artifact must have a string \"kind\", or be an in-toto Statement v1 (\"_type\": {IN_TOTO_STATEMENT_V1:?}) with a string \"predicateType\"")]
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

    /// Serialises a typed view and names its kind: sets `kind`, unless the view is an in-toto
    /// statement, which names its kind itself. Refuses a view that then names another kind
    /// (a statement built with a foreign `predicateType`).
    pub fn from_typed<T: Kind>(typed: &T) -> Result<Self, ArtifactError> {
        let mut value = serde_json::to_value(typed).map_err(|source| ArtifactError::Shape {
            kind: T::KIND.to_owned(),
            source,
        })?;
        let Value::Object(map) = &mut value else {
            return Err(ArtifactError::NotAnObject);
        };
        if !is_statement(map) {
            map.insert("kind".to_owned(), Value::String(T::KIND.to_owned()));
        }
        let artifact = Self::from_value(value)?;
        if artifact.kind() != T::KIND {
            return Err(ArtifactError::WrongKind {
                expected: T::KIND,
                found: artifact.kind().to_owned(),
            });
        }
        Ok(artifact)
    }

    /// Parses bytes already verified to hash to `digest` (a stored object): `None` when they
    /// are not the artifact's canonical form, whose digest is then another. Comparing the
    /// canonical form with the bytes stands for hashing it a second time.
    pub(crate) fn from_verified_bytes(
        bytes: &[u8],
        digest: Digest,
    ) -> Result<Option<Self>, ArtifactError> {
        let value = canonical::parse(bytes)?;
        let object = value.as_object().ok_or(ArtifactError::NotAnObject)?;
        if kind_of(object).is_none() {
            return Err(ArtifactError::MissingKind);
        }
        if canonical::to_vec(&value)? != bytes {
            return Ok(None);
        }
        Ok(Some(Self { value, digest }))
    }

    fn from_checked(value: Value) -> Result<Self, ArtifactError> {
        let object = value.as_object().ok_or(ArtifactError::NotAnObject)?;
        if kind_of(object).is_none() {
            return Err(ArtifactError::MissingKind);
        }
        let digest = canonical::digest(&value)?;
        Ok(Self { value, digest })
    }

    /// The digest of the canonical bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The kind: the `kind` field or, for an in-toto Statement v1, the kind its
    /// `predicateType` stands for (the `predicateType` itself when this build does not know it).
    pub fn kind(&self) -> &str {
        kind_of(self.object()).unwrap_or_default()
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

/// Whether a top-level object is an in-toto Statement v1.
fn is_statement(object: &Map<String, Value>) -> bool {
    object.get("_type").and_then(Value::as_str) == Some(IN_TOTO_STATEMENT_V1)
}

/// The one rule naming an artifact's kind: a statement by its `predicateType` (a `kind` field
/// on it is not consulted; the schemas refuse one), anything else by its `kind` field.
fn kind_of(object: &Map<String, Value>) -> Option<&str> {
    if is_statement(object) {
        let predicate_type = object.get("predicateType")?.as_str()?;
        Some(
            kinds::PREDICATE_KINDS
                .iter()
                .find(|(known, _)| *known == predicate_type)
                .map_or(predicate_type, |(_, kind)| kind),
        )
    } else {
        object.get("kind")?.as_str()
    }
}
