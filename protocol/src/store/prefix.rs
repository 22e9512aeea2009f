//! Short digests: a unique prefix of an object's hex digits names it, as in git.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, PREFIX};
use crate::error::ErrorCode;

use super::{Store, SIDECAR_SUFFIX};

/// The fewest hex digits a prefix must have: shorter ones soon name several objects.
pub const MIN_PREFIX_HEX: usize = 8;

/// Why a digest or digest prefix names no single object.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// Not `[sha256:]` followed by 8 to 64 lowercase hex digits.
    #[error(
        "{given:?} is not a digest: expected {MIN_PREFIX_HEX} to 64 hex digits (lowercase), \
         with or without \"sha256:\""
    )]
    Malformed {
        /// The text as given.
        given: String,
    },
    /// No stored object starts with the prefix.
    #[error("no object in the store {} starts with {PREFIX}{prefix}", store.display())]
    NotFound {
        /// The hex digits given.
        prefix: String,
        /// The store searched.
        store: PathBuf,
    },
    /// Several stored objects start with the prefix.
    #[error(
        "{PREFIX}{prefix} is ambiguous: {} objects start with it: {}",
        candidates.len(),
        candidates.iter().map(Digest::to_string).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The hex digits given.
        prefix: String,
        /// Every object they start, in order.
        candidates: Vec<Digest>,
    },
    /// The store's directory could not be listed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

impl PrefixError {
    /// The protocol error code this error is reported as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed { .. } | Self::Ambiguous { .. } => ErrorCode::InvalidParams,
            Self::NotFound { .. } => ErrorCode::UnknownArtifact,
            Self::Io { .. } => ErrorCode::InternalError,
        }
    }
}

/// A digest argument as written, before any store is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestArg {
    /// All 64 hex digits: the digest itself.
    Full(Digest),
    /// Fewer: the hex digits of a prefix, to look up in a store.
    Prefix(String),
}

/// Reads `given` as a digest argument: `[sha256:]` and [`MIN_PREFIX_HEX`] to 64 lowercase
/// hex digits.
pub fn parse_digest_arg(given: &str) -> Result<DigestArg, PrefixError> {
    let hex = given.strip_prefix(PREFIX).unwrap_or(given);
    let malformed = || PrefixError::Malformed {
        given: given.to_owned(),
    };
    if hex.len() < MIN_PREFIX_HEX
        || hex.len() > 64
        || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(malformed());
    }
    if hex.len() == 64 {
        return format!("{PREFIX}{hex}")
            .parse()
            .map(DigestArg::Full)
            .map_err(|_| malformed());
    }
    Ok(DigestArg::Prefix(hex.to_owned()))
}

impl Store {
    /// The digest that `given` names: a full digest (with or without `sha256:`) as it is, or
    /// the one stored object whose hex digits start with a prefix of at least
    /// [`MIN_PREFIX_HEX`] of them. A full digest is returned whether or not it is stored, so
    /// its absence is reported by whoever reads it, as before.
    pub fn resolve_prefix(&self, given: &str) -> Result<Digest, PrefixError> {
        let hex = match parse_digest_arg(given)? {
            DigestArg::Full(digest) => return Ok(digest),
            DigestArg::Prefix(hex) => hex,
        };
        let (dir_name, rest) = hex.split_at(2);
        let dir = self.objects.join(dir_name);
        let not_found = || PrefixError::NotFound {
            prefix: hex.clone(),
            store: self.root.clone(),
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
            Err(source) => return Err(PrefixError::Io { path: dir, source }),
        };
        let mut candidates = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| PrefixError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Sidecars and stray files are not objects; only a 62-hex name is.
            if name.ends_with(SIDECAR_SUFFIX) || !name.starts_with(rest) {
                continue;
            }
            if let Ok(digest) = format!("{PREFIX}{dir_name}{name}").parse::<Digest>() {
                candidates.push(digest);
            }
        }
        candidates.sort();
        match candidates.len() {
            0 => Err(not_found()),
            1 => Ok(candidates[0]),
            _ => Err(PrefixError::Ambiguous {
                prefix: hex.clone(),
                candidates,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Provenance;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        (dir, store)
    }

    fn put(store: &Store, bytes: &[u8]) -> Digest {
        store
            .put_blob_bytes(bytes, &Provenance::new("test"))
            .unwrap()
    }

    #[test]
    fn a_unique_prefix_with_or_without_the_algorithm_names_its_object() {
        let (_dir, store) = store();
        let digest = put(&store, b"hello");
        let hex = digest.hex();
        for given in [
            hex[..8].to_owned(),
            format!("sha256:{}", &hex[..12]),
            hex.clone(),
            digest.to_string(),
        ] {
            assert_eq!(store.resolve_prefix(&given).unwrap(), digest, "{given}");
        }
    }

    #[test]
    fn a_full_digest_resolves_even_when_not_stored() {
        let (_dir, store) = store();
        let digest = Digest::of_bytes(b"absent");
        assert_eq!(store.resolve_prefix(&digest.hex()).unwrap(), digest);
    }

    #[test]
    fn short_uppercase_or_non_hex_text_is_malformed() {
        let (_dir, store) = store();
        let digest = put(&store, b"hello");
        let hex = digest.hex();
        for given in [
            hex[..7].to_owned(),
            format!("sha256:{}", &hex[..7]),
            hex[..10].to_uppercase(),
            "sha256:zzzzzzzzzz".to_owned(),
            format!("{hex}0"),
            "01a24f33-c1b9-73e2".to_owned(),
        ] {
            assert!(
                matches!(
                    store.resolve_prefix(&given),
                    Err(PrefixError::Malformed { .. })
                ),
                "{given}"
            );
        }
    }

    #[test]
    fn an_unknown_prefix_names_the_store_searched() {
        let (_dir, store) = store();
        put(&store, b"hello");
        let err = store.resolve_prefix("00000000").unwrap_err();
        assert!(matches!(err, PrefixError::NotFound { .. }), "{err}");
        assert_eq!(err.code(), ErrorCode::UnknownArtifact);
        assert!(
            err.to_string()
                .contains(&store.root().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn an_ambiguous_prefix_lists_every_candidate_and_ignores_sidecars() {
        let (_dir, store) = store();
        // Two real digests sharing 8 hex digits are too rare to find, so a second object is
        // filed by hand beside a real one, sharing its first 20 digits and not the 21st.
        let digest = put(&store, b"hello");
        let hex = digest.hex();
        let other = if hex.as_bytes()[20] == b'0' { "1" } else { "0" };
        let twin = format!("{}{other}{}", &hex[..20], "0".repeat(43));
        let twin_path = store.objects.join(&twin[..2]).join(&twin[2..]);
        fs::write(&twin_path, b"x").unwrap();
        let err = store.resolve_prefix(&hex[..8]).unwrap_err();
        let PrefixError::Ambiguous { candidates, .. } = &err else {
            panic!("{err}")
        };
        let mut expected = vec![digest, format!("sha256:{twin}").parse().unwrap()];
        expected.sort();
        assert_eq!(candidates, &expected);
        assert_eq!(err.code(), ErrorCode::InvalidParams);
        let text = err.to_string();
        assert!(
            text.contains(&digest.to_string()) && text.contains(&twin),
            "{text}"
        );
        // One digit further, they part.
        assert_eq!(store.resolve_prefix(&hex[..21]).unwrap(), digest);
    }
}
