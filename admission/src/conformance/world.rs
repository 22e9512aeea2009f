//! The throw-away world a mechanism is checked in: a workspace (its root), an object store,
//! a trusted and an untrusted operator key, and the admission records the harness writes
//! for the plans it executes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use protocol::artifact::kinds::{
    AdmissionDecision, AdmissionWitness, GateDecision, GateRecord, MechanismRef,
};
use protocol::artifact::Artifact;
use protocol::force_ack::{self, ssh_key};
use protocol::store::{Provenance, Store};
use protocol::Digest;
use serde_json::Value;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};
use tempfile::TempDir;
use time::OffsetDateTime;

/// The principal the harness's trusted key signs force-acks as.
pub const APPROVER: &str = "conformance@admission.invalid";

/// Who the harness says produced what it stores.
const PRODUCER: &str = "admission conformance";

/// A scratch workspace and store, and the operator keys.
pub struct World {
    _dir: TempDir,
    /// The mechanism's root: `{workspace}`.
    pub workspace: PathBuf,
    /// The object store directory: `{store}`.
    pub store_dir: PathBuf,
    /// The store, opened.
    pub store: Store,
    /// The allowed_signers file naming only the trusted key.
    pub allowed_signers: PathBuf,
    trusted: PrivateKey,
    untrusted: PrivateKey,
}

/// Why the world could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Generating keys or storing artifacts failed.
    #[error("{0}")]
    Other(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> WorldError {
    let what = what.into();
    move |source| WorldError::Io { what, source }
}

impl World {
    /// A fresh world; the workspace starts as a copy of `seed` when given, else empty.
    pub fn new(seed: Option<&Path>) -> Result<Self, WorldError> {
        let dir = tempfile::Builder::new()
            .prefix("admission-conformance-")
            .tempdir()
            .map_err(io_error("creating a scratch directory"))?;
        let workspace = dir.path().join("workspace");
        let store_dir = dir.path().join("store");
        match seed {
            Some(seed) => copy_tree(seed, &workspace).map_err(io_error(format!(
                "copying {} as the workspace",
                seed.display()
            )))?,
            None => fs::create_dir(&workspace).map_err(io_error("creating the workspace"))?,
        }
        let store = Store::open(&store_dir).map_err(|e| WorldError::Other(e.to_string()))?;
        let key = || {
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| WorldError::Other(format!("generating an ed25519 key: {e}")))
        };
        let trusted = key()?;
        let untrusted = key()?;
        let public = trusted
            .public_key()
            .to_openssh()
            .map_err(|e| WorldError::Other(e.to_string()))?;
        let allowed_signers = dir.path().join("allowed_signers");
        fs::write(
            &allowed_signers,
            format!(
                "{APPROVER} namespaces=\"{}\" {public}\n",
                force_ack::NAMESPACE
            ),
        )
        .map_err(io_error("writing allowed_signers"))?;
        Ok(Self {
            _dir: dir,
            workspace,
            store_dir,
            store,
            allowed_signers,
            trusted,
            untrusted,
        })
    }

    /// Stores an artifact value under its digest, as the admission would.
    pub fn put(&self, value: Value) -> Result<Digest, String> {
        let artifact = Artifact::from_value(value).map_err(|e| e.to_string())?;
        self.store
            .put_artifact(&artifact, &Provenance::new(PRODUCER))
            .map_err(|e| e.to_string())
    }

    /// Whether the store holds exactly `value` under `digest`; otherwise what it holds
    /// instead, naming the object as `what`.
    pub fn holds(&self, digest: &Digest, value: &Value, what: &str) -> Result<(), String> {
        match self.store.get_artifact(digest) {
            Ok(stored) if stored.value() == value => Ok(()),
            Ok(_) => Err(format!(
                "the store holds something else under the {what}'s hash"
            )),
            Err(e) => Err(format!(
                "the {what} is not in the store under its hash: {e}"
            )),
        }
    }

    /// Stores a blob, returning its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, String> {
        self.store
            .put_blob_bytes(bytes, &Provenance::new(PRODUCER))
            .map_err(|e| e.to_string())
    }

    /// Writes an AdmissionWitness for `plan_hash` with `decision` and returns its digest.
    ///
    /// The harness judges nothing (conformance is about the mechanism, not a policy), so
    /// every gate says so; the mechanism must only check that the witness exists, is for
    /// this plan and admits it.
    pub fn admission(
        &self,
        plan_hash: Digest,
        mechanism: MechanismRef,
        destructive: bool,
        decision: AdmissionDecision,
    ) -> Result<Digest, String> {
        self.witness(plan_hash, mechanism, destructive, decision, String::new())
    }

    /// Another ADMIT witness for `plan_hash`, told apart from every other by `round` (its
    /// gates' reasons name it), so a result recorded with it is known to be that round's.
    pub fn admission_for_round(
        &self,
        plan_hash: Digest,
        mechanism: MechanismRef,
        destructive: bool,
        round: &str,
    ) -> Result<Digest, String> {
        let note = format!(" ({round})");
        self.witness(
            plan_hash,
            mechanism,
            destructive,
            AdmissionDecision::Admit,
            note,
        )
    }

    fn witness(
        &self,
        plan_hash: Digest,
        mechanism: MechanismRef,
        destructive: bool,
        decision: AdmissionDecision,
        note: String,
    ) -> Result<Digest, String> {
        let gate_decision = match decision {
            AdmissionDecision::Admit => GateDecision::Pass,
            AdmissionDecision::Deny => GateDecision::Fail,
        };
        let witness = AdmissionWitness {
            plan_hash,
            mechanism,
            policy_digest: Digest::of_bytes(PRODUCER.as_bytes()),
            gates: protocol::artifact::kinds::Gate::ALL
                .into_iter()
                .map(|gate| GateRecord {
                    gate,
                    decision: gate_decision,
                    code: (decision == AdmissionDecision::Deny)
                        .then_some(protocol::ErrorCode::CapabilityDenied),
                    reason: format!("set by the conformance harness{note}"),
                })
                .collect(),
            decision,
            force_ack_required: destructive,
            workorder: None,
        };
        let artifact = Artifact::from_typed(&witness).map_err(|e| e.to_string())?;
        self.put(artifact.into_value())
    }

    /// A force-ack for `plan_hash` and `admission`, expiring at `expires_at`, signed by the
    /// trusted key or, when `trusted` is false, by a key the mechanism was not told of.
    pub fn force_ack(
        &self,
        plan_hash: &Digest,
        admission: &Digest,
        expires_at: OffsetDateTime,
        trusted: bool,
    ) -> Result<Value, String> {
        let nonce = force_ack::random_nonce().map_err(|e| e.to_string())?;
        let mut unsigned =
            force_ack::new_unsigned(plan_hash, admission, APPROVER, expires_at, &nonce);
        let key = if trusted {
            &self.trusted
        } else {
            &self.untrusted
        };
        let signature = force_ack::sign(&unsigned, key).map_err(|e| e.to_string())?;
        if let Some(object) = unsigned.as_object_mut() {
            object.insert("signature".to_owned(), Value::String(signature));
        }
        Ok(unsigned)
    }

    /// A copy of the workspace as it is now, to put back with [`World::restore`].
    pub fn save(&self) -> Result<Saved, String> {
        let dir = tempfile::tempdir_in(self._dir.path())
            .map_err(|e| format!("saving the workspace: {e}"))?;
        let copy = dir.path().join("workspace");
        copy_tree(&self.workspace, &copy).map_err(|e| format!("saving the workspace: {e}"))?;
        Ok(Saved { _dir: dir, copy })
    }

    /// Puts the workspace back as it was saved. The directory itself stays (a mechanism may
    /// hold it open); everything in it is replaced.
    pub fn restore(&self, saved: &Saved) -> Result<(), String> {
        let restore = || -> io::Result<()> {
            for entry in fs::read_dir(&self.workspace)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    fs::remove_dir_all(entry.path())?;
                } else {
                    fs::remove_file(entry.path())?;
                }
            }
            for entry in fs::read_dir(&saved.copy)? {
                let entry = entry?;
                copy_entry(&entry, &self.workspace.join(entry.file_name()))?;
            }
            Ok(())
        };
        restore().map_err(|e| format!("restoring the workspace: {e}"))
    }

    /// Every file, directory and symlink under the workspace with its content digest,
    /// mode or target, to tell whether anything at all changed.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        let mut entries = BTreeMap::new();
        walk(&self.workspace, &self.workspace, &mut entries)
            .map_err(|e| format!("reading the workspace: {e}"))?;
        Ok(Snapshot(entries))
    }
}

/// A saved copy of the workspace.
pub struct Saved {
    _dir: TempDir,
    copy: PathBuf,
}

/// The state of a workspace, path by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, Entry>);

/// One path of a snapshot: what it is, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `file MODE`, `directory MODE` or `symlink`.
    shape: String,
    /// A file's digest, a symlink's target; empty for a directory.
    content: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.content.is_empty() {
            f.write_str(&self.shape)
        } else {
            write!(f, "{} {}", self.shape, self.content)
        }
    }
}

impl Snapshot {
    /// The first difference from `later`, for a report; `None` when they are equal.
    pub fn first_difference(&self, later: &Snapshot) -> Option<String> {
        self.first_difference_except(later, &BTreeSet::new())
    }

    /// As [`Snapshot::first_difference`], except that the paths in `content_free` need only
    /// be there, of the same shape (kind and mode), in both: their content may differ.
    pub fn first_difference_except(
        &self,
        later: &Snapshot,
        content_free: &BTreeSet<PathBuf>,
    ) -> Option<String> {
        let paths: BTreeSet<&PathBuf> = self.0.keys().chain(later.0.keys()).collect();
        paths.into_iter().find_map(|path| {
            let (before, after) = (self.0.get(path), later.0.get(path));
            let same = match (before, after) {
                (Some(b), Some(a)) if content_free.contains(path) => b.shape == a.shape,
                _ => before == after,
            };
            (!same).then(|| {
                let show = |e: Option<&Entry>| e.map_or("absent".to_owned(), Entry::to_string);
                format!("{}: {} -> {}", path.display(), show(before), show(after))
            })
        })
    }

    /// The paths both snapshots hold in the same shape but with other content.
    pub fn changed_content(&self, later: &Snapshot) -> BTreeSet<PathBuf> {
        self.0
            .iter()
            .filter(|(path, entry)| {
                later
                    .0
                    .get(*path)
                    .is_some_and(|l| l.shape == entry.shape && l.content != entry.content)
            })
            .map(|(path, _)| path.clone())
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            let content = format!("to {}", fs::read_link(&path)?.display());
            out.insert(
                rel,
                Entry {
                    shape: "symlink".to_owned(),
                    content,
                },
            );
        } else if meta.is_dir() {
            out.insert(
                rel,
                Entry {
                    shape: format!("directory {mode:o}"),
                    content: String::new(),
                },
            );
            walk(root, &path, out)?;
        } else {
            let digest = Digest::of_reader(fs::File::open(&path)?)?;
            out.insert(
                rel,
                Entry {
                    shape: format!("file {mode:o}"),
                    content: digest.to_string(),
                },
            );
        }
    }
    Ok(())
}

/// Copies a directory tree, keeping modes and symlinks as they are.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        copy_entry(&entry, &to.join(entry.file_name()))?;
    }
    Ok(())
}

fn copy_entry(entry: &fs::DirEntry, to: &Path) -> io::Result<()> {
    let from = entry.path();
    let kind = entry.file_type()?;
    if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(&from)?, to)
    } else if kind.is_dir() {
        copy_tree(&from, to)
    } else {
        fs::copy(&from, to).map(|_| ())
    }
}
