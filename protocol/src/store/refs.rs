//! Named references: a small mutable index from names to JSON records, beside the objects.
//!
//! Objects are named by their content, so "the admission witness of plan P" or "the last
//! result of plan P" needs a name of its own. A reference is a small JSON record (usually
//! holding digests) filed as `refs/<namespace>/<key>.json` under the store root.
//!
//! Namespaces and keys become path components, so both are restricted to `[a-z0-9_.-]+`, may
//! not start with a dot (which rules out `.` and `..`) and are at most [`MAX_REF_NAME`] bytes.
//!
//! A record is replaced whole: written to a temporary file in `tmp/`, flushed, renamed over
//! the old one, and the directory flushed. Concurrent writers each land a whole record and
//! the last rename wins. A record that cannot be read or decoded is
//! [`StoreError::BadRef`], which callers that merely cache may treat as absent.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{create_dir_durable, io_at, new_temp, sync_parent, Result, Store, StoreError};
use crate::digest::Digest;

/// The namespace where a mechanism server records each plan's last execution, keyed by the
/// plan's hex digest; admissions read it to find a result's witness.
pub const RESULTS: &str = "results";

/// What a mechanism server records under `results/<plan hex>` for one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The ResultArtifact.
    pub result: Digest,
    /// The ResultWitness.
    pub witness: Digest,
    /// Whether the result says success.
    pub succeeded: bool,
}

/// Longest namespace or key, in bytes; leaves room for `.json` within a 255-byte file name.
pub const MAX_REF_NAME: usize = 200;

/// Largest record accepted: references hold a few digests, and a reader must not be made to
/// load an arbitrary file whole.
pub const MAX_REF_BYTES: u64 = 64 * 1024;

/// Directory under the store root that holds the references.
const REFS_DIR: &str = "refs";

impl Store {
    /// The last execution of `plan` a mechanism server recorded, if any.
    pub fn result_record(&self, plan: &Digest) -> Result<Option<ResultRecord>> {
        self.get_ref(RESULTS, &plan.hex())
    }

    /// Records an execution of `plan`, replacing any earlier record.
    pub fn set_result_record(&self, plan: &Digest, record: &ResultRecord) -> Result<()> {
        self.set_ref(RESULTS, &plan.hex(), record)
    }

    /// Where the reference `namespace`/`key` lives (whether or not it is there).
    pub fn ref_path(&self, namespace: &str, key: &str) -> Result<PathBuf> {
        check_name(namespace)?;
        check_name(key)?;
        // Built in one allocation: `status` asks for a plan's result record every time.
        let root = self.root.as_os_str();
        let mut path = PathBuf::with_capacity(
            root.len() + REFS_DIR.len() + namespace.len() + key.len() + ".json".len() + 3,
        );
        path.push(root);
        path.push(REFS_DIR);
        path.push(namespace);
        path.push(key);
        path.as_mut_os_string().push(".json");
        Ok(path)
    }

    /// Replaces the reference `namespace`/`key` with `value`, atomically and durably.
    pub fn set_ref<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let path = self.ref_path(namespace, key)?;
        let bad = |reason: String| StoreError::BadRef {
            path: path.clone(),
            reason,
        };
        let mut json = serde_json::to_vec_pretty(value).map_err(|e| bad(e.to_string()))?;
        json.push(b'\n');
        if json.len() as u64 > MAX_REF_BYTES {
            // Refused here, since get_ref would refuse to read it back.
            return Err(bad(format!(
                "the record is {} bytes, more than the {MAX_REF_BYTES} a reference may hold; \
                 store it as an object and reference its digest",
                json.len()
            )));
        }
        create_dir_durable(&self.root.join(REFS_DIR))?;
        if let Some(dir) = path.parent() {
            create_dir_durable(dir)?;
        }
        let mut temp = new_temp(&self.tmp)?;
        let temp_path = temp.path().to_path_buf();
        temp.as_file_mut()
            .write_all(&json)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(io_at(&temp_path))?;
        temp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        sync_parent(&path)
    }

    /// Removes the reference `namespace`/`key`, durably; removing an absent one is no error.
    pub fn remove_ref(&self, namespace: &str, key: &str) -> Result<()> {
        let path = self.ref_path(namespace, key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_parent(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// The keys set in `namespace`, sorted; names that are not references are skipped.
    pub fn ref_keys(&self, namespace: &str) -> Result<Vec<String>> {
        check_name(namespace)?;
        let dir = self.root.join(REFS_DIR).join(namespace);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let key = name.to_str().and_then(|n| n.strip_suffix(".json"));
            if let Some(key) = key.filter(|k| check_name(k).is_ok()) {
                keys.push(key.to_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The reference `namespace`/`key`, decoded; `None` if it was never set.
    pub fn get_ref<T: DeserializeOwned>(&self, namespace: &str, key: &str) -> Result<Option<T>> {
        let path = self.ref_path(namespace, key)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_REF_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_at(&path))?;
        if bytes.len() as u64 > MAX_REF_BYTES {
            return Err(StoreError::BadRef {
                path,
                reason: format!("larger than the {MAX_REF_BYTES} bytes a reference may hold"),
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::BadRef {
                path,
                reason: e.to_string(),
            })
    }
}

/// Refuses a namespace or key that is not a plain, visible file name of `[a-z0-9_.-]`.
fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.len() > MAX_REF_NAME {
        format!("it is longer than {MAX_REF_NAME} bytes")
    } else if name.starts_with('.') {
        "it starts with a dot".to_owned()
    } else if !name
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
    {
        "only a-z, 0-9, '_', '.' and '-' are allowed".to_owned()
    } else {
        return Ok(());
    };
    Err(StoreError::BadRefName {
        name: name.to_owned(),
        reason,
    })
}
