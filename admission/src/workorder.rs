//! Workorder files: read strictly, inputs stored, and the resolved workorder stored too.
//!
//! An input is either a path, relative to the workorder file, which is streamed into the
//! store as a blob, or the digest of a blob already there. The stored workorder names every
//! input by digest, so it alone says exactly what was asked for.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use protocol::artifact::kinds::Workorder;
use protocol::artifact::Artifact;
use protocol::store::{Provenance, Store, StoreError};
use protocol::{canonical, schema, Digest, ErrorCode, ErrorInfo};

/// The largest workorder file read: it holds params and paths, never payloads.
pub const MAX_WORKORDER_BYTES: u64 = 1024 * 1024;

/// Why a workorder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WorkorderError {
    /// The file could not be read.
    #[error("cannot read the workorder {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is too big to be a workorder.
    #[error("the workorder {} is larger than {MAX_WORKORDER_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not strict I-JSON, or not a valid workorder.
    #[error("the workorder {} is invalid: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// An input could not be found, read or stored.
    #[error("input {name:?} of the workorder: {reason}")]
    Input {
        /// The input's name.
        name: String,
        /// What went wrong.
        reason: String,
        /// The code to report.
        code: ErrorCode,
    },
    /// The store refused the workorder or an input.
    #[error("storing the workorder: {0}")]
    Store(#[from] StoreError),
}

impl WorkorderError {
    /// The protocol error code reported for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            WorkorderError::Read { .. } | WorkorderError::Invalid { .. } => {
                ErrorCode::InvalidParams
            }
            WorkorderError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            WorkorderError::Input { code, .. } => *code,
            WorkorderError::Store(e) => e.code(),
        }
    }
}

impl From<WorkorderError> for ErrorInfo {
    fn from(error: WorkorderError) -> Self {
        ErrorInfo::new(error.code(), error.to_string())
    }
}

/// A workorder with its inputs in the store.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The workorder, every input named by digest.
    pub workorder: Workorder,
    /// The digest of the stored, resolved workorder.
    pub digest: Digest,
    /// The inputs by name.
    pub inputs: BTreeMap<String, Digest>,
    /// The file it was read from (the directory its inputs were relative to, when it was
    /// not read from a file).
    pub path: PathBuf,
}

/// Reads the workorder at `path`, stores its path inputs and itself, and returns it resolved.
pub fn load(path: &Path, store: &Store) -> Result<Loaded, WorkorderError> {
    let invalid = |reason: String| WorkorderError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_bounded(path)?;
    let value = canonical::parse(&bytes).map_err(|e| invalid(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut loaded = load_value(value, base, store).map_err(|e| match e {
        WorkorderError::Invalid { reason, .. } => invalid(reason),
        other => other,
    })?;
    loaded.path = path.to_path_buf();
    Ok(loaded)
}

/// Checks a workorder already parsed, stores its path inputs (relative to `base`) and
/// itself, and returns it resolved.
pub fn load_value(
    value: serde_json::Value,
    base: &Path,
    store: &Store,
) -> Result<Loaded, WorkorderError> {
    let path = base;
    let invalid = |reason: String| WorkorderError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    // Before the schema, whose answer to a misspelt member is only that one is missing.
    if let Some(reason) = unknown_member(&value, Workorder::FIELDS, "a workorder") {
        return Err(invalid(reason));
    }
    schema::validate(schema::SchemaName::Workorder, &value).map_err(|e| invalid(e.to_string()))?;
    let mut workorder: Workorder = Artifact::from_value(value)
        .and_then(|a| a.view())
        .map_err(|e| invalid(e.to_string()))?;

    let mut inputs = BTreeMap::new();
    for (name, given) in &workorder.inputs {
        let digest = resolve_input(store, base, name, given, &workorder.work_order_id)?;
        inputs.insert(name.clone(), digest);
    }
    workorder.inputs = inputs
        .iter()
        .map(|(name, digest)| (name.clone(), digest.to_string()))
        .collect();
    let artifact = Artifact::from_typed(&workorder).map_err(|e| invalid(e.to_string()))?;
    let provenance =
        Provenance::new("admission workorder").with_derived_from(inputs.values().copied());
    let digest = store.put_artifact(&artifact, &provenance)?;
    Ok(Loaded {
        workorder,
        digest,
        inputs,
        path: path.to_path_buf(),
    })
}

/// The first member of `value` not among `fields`, with the known one it is probably meant
/// for; `what` names the document (`a workorder`).
pub fn unknown_member(value: &serde_json::Value, fields: &[&str], what: &str) -> Option<String> {
    let object = value.as_object()?;
    let unknown = object.keys().find(|key| !fields.contains(&key.as_str()))?;
    let mut message = format!("unknown field {unknown:?}");
    if let Some(known) = closest(unknown, fields) {
        message.push_str(&format!("; did you mean {known:?}?"));
    }
    message.push_str(&format!(" ({what} has only {})", fields.join(", ")));
    Some(message)
}

/// The candidate nearest to `word` (case ignored), if it is close enough to be a misspelling:
/// at most a third of its letters edited, and at least one edit allowed.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&word, c), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Levenshtein distance in characters: small enough not to need a crate.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The mechanism the workorder at `path` names, read without checking anything else (that is
/// [`load`]'s work): enough to start that mechanism early. `None` when it names none.
pub fn mechanism_named(path: &Path) -> Option<String> {
    let bytes = read_bounded(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("mechanism")?.as_str().map(str::to_owned)
}

pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, WorkorderError> {
    let read_error = |source| WorkorderError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_WORKORDER_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_WORKORDER_BYTES {
        return Err(WorkorderError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// A digest must name a stored blob that re-hashes; a path is streamed into the store.
pub(crate) fn resolve_input(
    store: &Store,
    base: &Path,
    name: &str,
    given: &str,
    work_order_id: &str,
) -> Result<Digest, WorkorderError> {
    let input_error = |code: ErrorCode, reason: String| WorkorderError::Input {
        name: name.to_owned(),
        reason,
        code,
    };
    if given.starts_with("sha256:") {
        let digest: Digest = given
            .parse()
            .map_err(|e| input_error(ErrorCode::InvalidParams, format!("{given:?}: {e}")))?;
        store
            .verify(&digest)
            .map_err(|e| input_error(e.code(), e.to_string()))?;
        return Ok(digest);
    }
    let path = base.join(given);
    let file = File::open(&path).map_err(|e| {
        input_error(
            ErrorCode::InvalidParams,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let provenance = Provenance::new(format!(
        "admission workorder {work_order_id}: input {name} from {}",
        path.display()
    ));
    store
        .put_blob(file, &provenance)
        .map_err(|e| input_error(e.code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("ticketid", "ticket_id"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    fn unknown_field(value: &serde_json::Value) -> Option<String> {
        unknown_member(value, Workorder::FIELDS, "a workorder")
    }

    #[test]
    fn unknown_fields_are_named_with_the_likely_known_one() {
        let message = unknown_field(&json!({"kind": "x", "ticketid": "OPS-1"})).unwrap();
        assert!(
            message.starts_with(r#"unknown field "ticketid"; did you mean "ticket_id"?"#),
            "{message}"
        );
        let message = unknown_field(&json!({"Work_Order_ID": "x"})).unwrap();
        assert!(
            message.contains(r#"did you mean "work_order_id"?"#),
            "{message}"
        );
        let message = unknown_field(&json!({"colour": "x"})).unwrap();
        assert!(!message.contains("did you mean"), "{message}");
        assert_eq!(unknown_field(&json!({"kind": "x", "ticket_id": "y"})), None);
    }
}
