//! Whole-document snapshots `exec/<uid>/<NNN>-<label>.json`, written atomically.
//!
//! A snapshot goes to a temporary file in the same directory (named with a leading dot, which
//! no snapshot name has, so readers never pick it up), is flushed, renamed into place without
//! replacing anything, and the directory is flushed: a crash leaves the whole snapshot or
//! none of it, and a written snapshot is never overwritten.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use protocol::artifact::kinds::ExecutionDocument;
use protocol::artifact::Artifact;
use protocol::schema;
use protocol::store::MAX_ARTIFACT_BYTES;

use super::{io_at, sync_dir, JournalError, Result, Uid};

/// The longest step label, as the execution schema allows.
const MAX_LABEL_LEN: usize = 128;

/// Checks that `label` can be a step label and part of a file name: 1 to 128 ASCII letters,
/// digits, `_` or `-`, starting with a letter or digit (the schema's `uid` pattern).
pub(super) fn check_label(label: &str) -> Result<()> {
    let mut chars = label.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if first_ok && rest_ok && label.len() <= MAX_LABEL_LEN {
        Ok(())
    } else {
        Err(JournalError::BadLabel(label.to_owned()))
    }
}

/// The file name of snapshot number `seq`. Three digits keep `ls` order equal to history
/// order up to 999 snapshots; past that the number just grows, and [`parse_name`] orders by
/// number, not by name.
pub(super) fn file_name(seq: u32, label: &str) -> String {
    format!("{seq:03}-{label}.json")
}

/// Reads a snapshot file name back into its number and label; `None` for any other file.
pub(super) fn parse_name(name: &str) -> Option<(u32, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (digits, label) = stem.split_once('-')?;
    if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    check_label(label).ok()?;
    Some((digits.parse().ok()?, label))
}

/// Checks the document against the execution schema and encodes it as a snapshot's bytes.
///
/// Kept apart from [`write`] so a document that would be refused is refused before anything
/// is created on disk.
pub(super) fn encode(doc: &ExecutionDocument, uid: &Uid) -> Result<Vec<u8>> {
    let artifact = Artifact::from_typed(doc).map_err(|source| JournalError::NotIJson {
        uid: uid.clone(),
        source,
    })?;
    // Checked on the way in so that `show` never meets a snapshot it must refuse.
    schema::validate_artifact(&artifact).map_err(|source| JournalError::Invalid {
        uid: uid.clone(),
        source,
    })?;
    let mut bytes =
        serde_json::to_vec_pretty(artifact.value()).map_err(|e| JournalError::Encode {
            what: "execution document",
            source: e,
        })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `bytes` as snapshot `name` in `dir`, atomically and durably, never replacing one.
pub(super) fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".json")
        .tempfile_in(dir)
        .map_err(io_at(dir))?;
    temp.write_all(bytes).map_err(io_at(temp.path()))?;
    temp.as_file().sync_all().map_err(io_at(temp.path()))?;
    let path = dir.join(name);
    temp.persist_noclobber(&path)
        .map_err(|e| io_at(&path)(e.error))?;
    sync_dir(dir)
}

/// Reads the snapshot at `path`, which must be a document of execution `uid`.
pub(super) fn read(path: &Path, uid: &Uid) -> Result<ExecutionDocument> {
    let corrupt = |reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| file.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_at(path))?;
    if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
        return Err(corrupt(format!("larger than {MAX_ARTIFACT_BYTES} bytes")));
    }
    let doc: ExecutionDocument = Artifact::from_bytes(&bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .view()
        .map_err(|e| corrupt(e.to_string()))?;
    if doc.uid != uid.as_str() {
        return Err(corrupt(format!(
            "it is a snapshot of execution {:?}, filed under {uid}",
            doc.uid
        )));
    }
    Ok(doc)
}

/// The snapshots in `dir` as (number, label), ordered by number.
pub(super) fn list(dir: &Path) -> Result<Vec<(u32, String)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if let Some((seq, label)) = entry.file_name().to_str().and_then(parse_name) {
            found.push((seq, label.to_owned()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_file_name_safe() {
        for good in ["created", "plan", "gate-G_CAP", "a", &"x".repeat(128)] {
            check_label(good).unwrap();
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "_x",
            "a.b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(check_label(bad), Err(JournalError::BadLabel(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_round_trip_and_order_by_number_past_999() {
        assert_eq!(file_name(7, "plan"), "007-plan.json");
        assert_eq!(parse_name("007-plan.json"), Some((7, "plan")));
        assert_eq!(parse_name(&file_name(1000, "x")), Some((1000, "x")));
        for other in [
            ".tmp-abc.json",
            "07-plan.json",
            "007-plan.txt",
            "007-.json",
            "abc-x.json",
        ] {
            assert_eq!(parse_name(other), None, "{other:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "1000-late.json",
            "999-early.json",
            "000-created.json",
            ".tmp-x.json",
        ] {
            fs::write(dir.path().join(name), b"{}").unwrap();
        }
        let labels: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(labels, ["created", "early", "late"]);
    }
}
