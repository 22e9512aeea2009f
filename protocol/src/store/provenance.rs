//! Provenance: who produced an object, when, from what. Kept beside the object in a sidecar,
//! never in the hashed bytes, so the same inputs give the same digest on every run.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::digest::Digest;

/// The `kind` a provenance record gives a raw blob.
pub const BLOB_KIND: &str = "blob";

/// What the caller says about an object it puts; the store adds time, size and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Who produced the object, e.g. `admission put` or a mechanism's name.
    pub producer: String,
    /// The objects this one was computed from.
    pub derived_from: Vec<Digest>,
    /// The trace the put belongs to, if any.
    pub trace_id: Option<String>,
}

impl Provenance {
    /// Provenance naming only the producer.
    pub fn new(producer: impl Into<String>) -> Self {
        Self {
            producer: producer.into(),
            ..Self::default()
        }
    }

    /// Adds the digests the object was computed from.
    pub fn with_derived_from(mut self, digests: impl IntoIterator<Item = Digest>) -> Self {
        self.derived_from.extend(digests);
        self
    }

    /// Sets the trace id.
    pub fn with_trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }
}

/// The provenance sidecar `<object>.prov.json`, written once by the first put of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceRecord {
    /// Who produced the object.
    pub producer: String,
    /// When the record was written: RFC 3339, UTC.
    pub created_at: String,
    /// The objects this one was computed from.
    #[serde(default)]
    pub derived_from: Vec<Digest>,
    /// The trace the first put belonged to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `blob`, or the artifact's `kind`.
    pub kind: String,
    /// The object's size in bytes.
    pub size: u64,
}

impl ProvenanceRecord {
    /// A record stamped with the current UTC time.
    pub(super) fn now(
        provenance: &Provenance,
        kind: &str,
        size: u64,
    ) -> Result<Self, time::error::Format> {
        Ok(Self {
            producer: provenance.producer.clone(),
            created_at: OffsetDateTime::now_utc().format(&Rfc3339)?,
            derived_from: provenance.derived_from.clone(),
            trace_id: provenance.trace_id.clone(),
            kind: kind.to_owned(),
            size,
        })
    }
}
