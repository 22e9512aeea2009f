//! The content-addressed object store: a directory of immutable objects named by digest.
//!
//! Layout under the root:
//!
//! - `objects/sha256/<first 2 hex>/<remaining 62 hex>`: the object's bytes (an artifact's
//!   canonical bytes, or a blob's raw bytes), read-only once written;
//! - `objects/sha256/<first 2 hex>/<remaining 62 hex>.prov.json`: its provenance sidecar;
//! - `refs/<namespace>/<key>.json`: small mutable records naming objects ([`refs`]), the
//!   one part of the store that is replaced in place;
//! - `nonces/<nonce>`: one file per spent force-ack nonce, created exclusively and never
//!   changed ([`Store::claim_nonce`]);
//! - `tmp/`: files being written. They live on the same filesystem as `objects/`, so the final
//!   rename is atomic and a reader never sees half an object.
//!
//! Writes go to a temporary file, are flushed (`sync_all`), renamed into place and the
//! directory is flushed, so a crash leaves either the whole object or none of it. A crash can
//! leave a stray file in `tmp/`; the store never reads `tmp/`, so such a file is only wasted
//! space, and it is not swept on open because another process may be writing it right now.
//!
//! Every read re-hashes the bytes: a mismatch is [`StoreError::IntegrityMismatch`], never data.
//! The one exception is an artifact this process has already read and verified: objects are
//! immutable by construction, so [`Store::get_artifact`] answers it from a bounded in-memory
//! cache shared by the store's clones. [`Store::verify`] always re-hashes.
//!
//! Several processes may put into one store at once. Two puts of the same object write the
//! same bytes, so whichever rename lands last leaves the same content; the sidecar is created
//! with a no-clobber rename, so the first record to land is kept.

mod cache;
mod nonces;
mod prefix;
mod provenance;
pub mod refs;
mod verified;

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::NamedTempFile;

use crate::artifact::{Artifact, ArtifactError};
use crate::digest::{Digest, Hasher};
use crate::error::ErrorCode;

use cache::ArtifactCache;
pub use cache::{CACHE_MAX_BYTES, CACHE_MAX_ENTRIES};
pub use nonces::{check_nonce, NonceClaim};
pub use prefix::{parse_digest_arg, DigestArg, PrefixError, MIN_PREFIX_HEX};
pub use provenance::{Provenance, ProvenanceRecord, BLOB_KIND};
pub use verified::VerifiedReader;

/// Size of the one buffer each streaming copy uses, so memory stays flat for any object size.
const BUF_SIZE: usize = 256 * 1024;

/// The largest artifact [`Store::put_artifact`] accepts and [`Store::get_artifact`] reads.
///
/// An artifact is parsed whole into memory, so a digest that names a huge blob must not make
/// a reader allocate and parse gigabytes; big payloads are blobs.
pub const MAX_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;

/// Suffix of the provenance sidecar beside each object.
const SIDECAR_SUFFIX: &str = ".prov.json";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object with this digest is in the store.
    #[error("no object {0} in the store")]
    NotFound(Digest),
    /// The stored bytes do not hash to the digest they are filed under.
    #[error("object {digest} is corrupt: its bytes hash to {actual}")]
    IntegrityMismatch {
        /// The digest asked for.
        digest: Digest,
        /// The digest of the bytes found.
        actual: Digest,
    },
    /// The object is bigger than the caller (or an artifact) allows.
    #[error("object {digest} is {size} bytes, more than the {max} allowed here")]
    TooLarge {
        /// The object.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// The bound it exceeds.
        max: u64,
    },
    /// The object is intact but its bytes are not an artifact.
    #[error("object {digest} is not an artifact: {source}")]
    Artifact {
        /// The object.
        digest: Digest,
        /// Why its bytes are not an artifact.
        source: ArtifactError,
    },
    /// The object is intact JSON but not in canonical form, so it was stored as a blob.
    #[error("object {0} is not in canonical form: it is a blob, not an artifact")]
    NotCanonical(Digest),
    /// Reading the caller's input failed.
    #[error("reading the input to store: {0}")]
    Input(#[source] io::Error),
    /// Writing to the caller's output failed.
    #[error("writing the object out: {0}")]
    Output(#[source] io::Error),
    /// A file or directory of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A reference namespace or key is not a plain name; it would become a path component.
    #[error("bad reference name {name:?}: {reason}")]
    BadRefName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A reference record cannot be encoded, or is torn, oversized or not the expected JSON.
    #[error("{}: unreadable reference record: {reason}", path.display())]
    BadRef {
        /// The record's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A force-ack nonce is not 32 lowercase hex digits, so it names no file of the store.
    #[error("bad force-ack nonce: {reason}")]
    BadNonce {
        /// The nonce as given.
        nonce: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A nonce's claim is torn, oversized or names no plan.
    #[error("{}: unreadable nonce claim: {reason}", path.display())]
    BadNonceClaim {
        /// The claim's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A provenance sidecar could not be encoded or decoded.
    #[error("{}: bad provenance record: {source}", path.display())]
    Provenance {
        /// The sidecar.
        path: PathBuf,
        /// serde's description.
        source: serde_json::Error,
    },
}

impl StoreError {
    /// The protocol error code this error is reported as.
    ///
    /// An intact object that is not an artifact was named by the caller where an artifact was
    /// expected, so it is `INVALID_PARAMS`, not `INTEGRITY_MISMATCH`: nothing is corrupt.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::UnknownArtifact,
            Self::IntegrityMismatch { .. } => ErrorCode::IntegrityMismatch,
            Self::TooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::Artifact { .. }
            | Self::NotCanonical(_)
            | Self::BadRefName { .. }
            | Self::BadNonce { .. } => ErrorCode::InvalidParams,
            Self::Input(_)
            | Self::Output(_)
            | Self::Io { .. }
            | Self::BadRef { .. }
            | Self::BadNonceClaim { .. }
            | Self::Provenance { .. } => ErrorCode::InternalError,
        }
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A content-addressed object store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    /// Artifacts read and verified by this process; never refs or nonces, which change.
    cache: Arc<ArtifactCache>,
}

/// The store's place among the resources of a root it lies inside. Nothing a mechanism
/// plans may change it: a write there could forge a result record or free a spent force-ack
/// nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// The store directory as a resource path relative to the root.
    pub resource: String,
}

impl StoreLocation {
    /// Whether `resource` is the store or lies inside it. Compared without regard to ASCII
    /// case, since on a case-insensitive filesystem `.Mechanism/x` is `.mechanism/x`.
    pub fn contains(&self, resource: &str) -> bool {
        let store = self.resource.as_bytes();
        let r = resource.as_bytes();
        store.is_empty()
            || (r.len() >= store.len()
                && r[..store.len()].eq_ignore_ascii_case(store)
                && (r.len() == store.len() || r[store.len()] == b'/'))
    }
}

/// A fully written, flushed, read-only temporary file not yet renamed into place.
struct Staged {
    temp: NamedTempFile,
    digest: Digest,
    size: u64,
}

/// What is filed under a digest before a put.
enum Existing {
    Missing,
    Intact,
    Corrupt,
}

impl Store {
    /// Opens the store at `root`, creating the root and its directories if missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(io_at(&root))?;
        let store = Self {
            objects: root.join("objects").join("sha256"),
            tmp: root.join("tmp"),
            root,
            cache: Arc::new(ArtifactCache::new(CACHE_MAX_ENTRIES, CACHE_MAX_BYTES)),
        };
        create_dir_durable(&store.root.join("objects"))?;
        create_dir_durable(&store.objects)?;
        create_dir_durable(&store.tmp)?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the store lies inside `root`, as a `/`-separated resource path (empty when it is
    /// `root` itself); `None` when it lies elsewhere. Both are resolved first, so a symlink
    /// or a relative spelling does not hide the store from [`StoreLocation::contains`].
    pub fn location_within(&self, root: &Path) -> io::Result<Option<StoreLocation>> {
        let (store, root) = (self.root.canonicalize()?, root.canonicalize()?);
        Ok(store.strip_prefix(&root).ok().map(|inside| StoreLocation {
            resource: inside
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
        }))
    }

    /// Where the object with this digest lives (whether or not it is there).
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let (dir, name) = hex.split_at(2);
        self.objects.join(dir).join(name)
    }

    /// Whether an object is filed under this digest; does not check its bytes.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path_of(digest).is_file()
    }

    /// Stores an artifact's canonical bytes and returns its digest.
    pub fn put_artifact(&self, artifact: &Artifact, provenance: &Provenance) -> Result<Digest> {
        let digest = artifact.digest();
        let bytes = artifact.canonical_bytes();
        let size = bytes.len() as u64;
        if size > MAX_ARTIFACT_BYTES {
            return Err(StoreError::TooLarge {
                digest,
                size,
                max: MAX_ARTIFACT_BYTES,
            });
        }
        let path = self.path_of(&digest);
        // Unlike a blob, the digest is known up front, so an intact copy saves the write.
        if let Existing::Intact = existing(&path, &digest)? {
            if write_sidecar_if_absent(&self.tmp, &path, provenance, artifact.kind(), size)? {
                sync_parent(&path)?;
            }
            return Ok(digest);
        }
        let staged = self.stage(bytes.as_slice())?;
        if staged.digest != digest {
            // Artifact guarantees its digest is that of its canonical bytes; refuse to file
            // bytes under a name they do not hash to should that ever break.
            return Err(StoreError::IntegrityMismatch {
                digest,
                actual: staged.digest,
            });
        }
        self.install(staged, artifact.kind(), provenance)
    }

    /// Stores everything `reader` yields as a blob, streaming, and returns its digest.
    pub fn put_blob<R: Read>(&self, reader: R, provenance: &Provenance) -> Result<Digest> {
        let staged = self.stage(reader)?;
        self.install(staged, BLOB_KIND, provenance)
    }

    /// Stores a byte string as a blob and returns its digest.
    pub fn put_blob_bytes(&self, bytes: &[u8], provenance: &Provenance) -> Result<Digest> {
        self.put_blob(bytes, provenance)
    }

    /// Reads, verifies and strictly parses the artifact stored under `digest`.
    ///
    /// A copy of [`Store::get_artifact_shared`]'s answer, for callers that want to own it.
    pub fn get_artifact(&self, digest: &Digest) -> Result<Artifact> {
        self.get_artifact_shared(digest).map(Arc::unwrap_or_clone)
    }

    /// The artifact stored under `digest`, read, verified and strictly parsed the first time
    /// this process asks, then answered from the cache of verified artifacts.
    pub fn get_artifact_shared(&self, digest: &Digest) -> Result<Arc<Artifact>> {
        if let Some(hit) = self.cache.get(digest) {
            return Ok(hit);
        }
        let bytes = self.read_blob(digest, MAX_ARTIFACT_BYTES)?;
        // The bytes hash to `digest`; if they are not their canonical form they were not
        // stored as an artifact, and returning them would hand out an artifact whose own
        // digest differs from the one asked for.
        let artifact = Artifact::from_verified_bytes(&bytes, *digest)
            .map_err(|source| StoreError::Artifact {
                digest: *digest,
                source,
            })?
            .ok_or(StoreError::NotCanonical(*digest))?;
        let artifact = Arc::new(artifact);
        self.cache.insert(Arc::clone(&artifact), bytes.len() as u64);
        Ok(artifact)
    }

    /// Reads and verifies a whole object, refusing one bigger than `max_bytes`.
    pub fn read_blob(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>> {
        let path = self.path_of(digest);
        let file = open_object(&path, digest)?;
        let size = file.metadata().map_err(io_at(&path))?.len();
        let too_large = |size| StoreError::TooLarge {
            digest: *digest,
            size,
            max: max_bytes,
        };
        if size > max_bytes {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).map_err(|_| too_large(size))?);
        // The bound also holds if the file grew after the size was taken.
        (&file)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_at(&path))?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        check(digest, Digest::of_bytes(&bytes))?;
        Ok(bytes)
    }

    /// Verifies the whole object, then streams it to `out`; returns the number of bytes.
    ///
    /// Nothing reaches `out` unless every byte hashed right. The copy reads the same open
    /// file as the check, so a concurrent rename into place cannot swap the content between.
    pub fn copy_blob_to<W: Write>(&self, digest: &Digest, mut out: W) -> Result<u64> {
        let path = self.path_of(digest);
        let mut file = open_object(&path, digest)?;
        let size = verify_file(&mut file, &path, digest)?;
        file.seek(SeekFrom::Start(0)).map_err(io_at(&path))?;
        let mut buf = vec![0; BUF_SIZE];
        let copied = pump((&file).take(size), &mut buf, io_at(&path), |chunk| {
            out.write_all(chunk).map_err(StoreError::Output)
        })?;
        if copied != size {
            return Err(StoreError::Io {
                path,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shrank while being copied",
                ),
            });
        }
        out.flush().map_err(StoreError::Output)?;
        Ok(copied)
    }

    /// Opens an object as a reader that verifies as it goes and fails at EOF on a mismatch.
    ///
    /// Bytes are unverified until a read returns `Ok(0)`; only consumers that can discard
    /// what they read on error should use this rather than [`Store::copy_blob_to`].
    pub fn open_verified(&self, digest: &Digest) -> Result<VerifiedReader> {
        let path = self.path_of(digest);
        let file = open_object(&path, digest)?;
        Ok(VerifiedReader::new(file, *digest))
    }

    /// Checks that the object is present and hashes to its digest.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let path = self.path_of(digest);
        let mut file = open_object(&path, digest)?;
        verify_file(&mut file, &path, digest).map(drop)
    }

    /// The object's provenance record; `None` if the object has none, `NotFound` if absent.
    pub fn provenance(&self, digest: &Digest) -> Result<Option<ProvenanceRecord>> {
        let path = self.path_of(digest);
        let sidecar = sidecar_path(&path);
        match fs::read(&sidecar) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Provenance {
                        path: sidecar,
                        source,
                    })
            }
            // A crash between the object's rename and the sidecar's leaves an object without
            // a record; the next put of the same object writes one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => match path.try_exists() {
                Ok(true) => Ok(None),
                Ok(false) => Err(StoreError::NotFound(*digest)),
                Err(source) => Err(StoreError::Io { path, source }),
            },
            Err(source) => Err(StoreError::Io {
                path: sidecar,
                source,
            }),
        }
    }

    /// Copies `reader` into a read-only, flushed temporary file, hashing on the way.
    fn stage<R: Read>(&self, reader: R) -> Result<Staged> {
        let mut temp = new_temp(&self.tmp)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0; BUF_SIZE];
        let temp_path = temp.path().to_path_buf();
        let size = pump(reader, &mut buf, StoreError::Input, |chunk| {
            hasher.update(chunk);
            temp.as_file_mut()
                .write_all(chunk)
                .map_err(io_at(&temp_path))
        })?;
        seal(&temp)?;
        Ok(Staged {
            temp,
            digest: hasher.finish(),
            size,
        })
    }

    /// Renames a staged file into place unless an intact copy is already there, then makes
    /// sure the sidecar exists and flushes the directory.
    ///
    /// A corrupt object already filed under the digest is replaced by the staged bytes,
    /// which hash right: a put heals the store rather than trusting what is there.
    fn install(&self, staged: Staged, kind: &str, provenance: &Provenance) -> Result<Digest> {
        let Staged { temp, digest, size } = staged;
        let path = self.path_of(&digest);
        if let Some(dir) = path.parent() {
            create_dir_durable(dir)?;
        }
        let mut changed = false;
        match existing(&path, &digest)? {
            // Same digest, same bytes: dropping the temporary file deletes it.
            Existing::Intact => drop(temp),
            Existing::Missing | Existing::Corrupt => {
                temp.persist(&path).map_err(|e| StoreError::Io {
                    path: path.clone(),
                    source: e.error,
                })?;
                changed = true;
            }
        }
        changed |= write_sidecar_if_absent(&self.tmp, &path, provenance, kind, size)?;
        // One directory flush makes both renames durable.
        if changed {
            sync_parent(&path)?;
        }
        Ok(digest)
    }
}

/// Maps an io error to [`StoreError::Io`] at `path`.
fn io_at(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fails with `IntegrityMismatch` unless `actual` is `digest`.
fn check(digest: &Digest, actual: Digest) -> Result<()> {
    if actual == *digest {
        Ok(())
    } else {
        Err(StoreError::IntegrityMismatch {
            digest: *digest,
            actual,
        })
    }
}

/// Opens an object for reading; a missing file is `NotFound`.
fn open_object(path: &Path, digest: &Digest) -> Result<File> {
    File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound(*digest),
        _ => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Hashes an open object from its current position to EOF; returns its size if it verifies.
fn verify_file(file: &mut File, path: &Path, digest: &Digest) -> Result<u64> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0; BUF_SIZE];
    let size = pump(file, &mut buf, io_at(path), |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    check(digest, hasher.finish())?;
    Ok(size)
}

/// What is filed under `digest` at `path`: nothing, the right bytes, or other bytes.
fn existing(path: &Path, digest: &Digest) -> Result<Existing> {
    let mut file = match open_object(path, digest) {
        Ok(file) => file,
        Err(StoreError::NotFound(_)) => return Ok(Existing::Missing),
        Err(e) => return Err(e),
    };
    match verify_file(&mut file, path, digest) {
        Ok(_) => Ok(Existing::Intact),
        Err(StoreError::IntegrityMismatch { .. }) => Ok(Existing::Corrupt),
        Err(e) => Err(e),
    }
}

/// Reads `reader` to EOF through `buf`, handing each chunk to `sink`; returns the byte count.
fn pump<R: Read>(
    mut reader: R,
    buf: &mut [u8],
    read_error: impl Fn(io::Error) -> StoreError,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        sink(&buf[..n])?;
        total += n as u64;
    }
}

/// A new temporary file in the store's `tmp/` directory; deleted on drop unless persisted.
fn new_temp(tmp: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".put-")
        .tempfile_in(tmp)
        .map_err(io_at(tmp))
}

/// Makes a fully written temporary file read-only and flushes it to disk before its rename,
/// so the name never points at bytes that are not durable or at a writable object.
fn seal(temp: &NamedTempFile) -> Result<()> {
    let file = temp.as_file();
    let on_err = io_at(temp.path());
    read_only(file)
        .and_then(|permissions| file.set_permissions(permissions))
        .map_err(&on_err)?;
    file.sync_all().map_err(&on_err)
}

/// Read-only for everyone: objects are immutable once filed.
#[cfg(unix)]
fn read_only(_file: &File) -> io::Result<fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::Permissions::from_mode(0o444))
}

/// The file's own permissions with the read-only flag set.
#[cfg(not(unix))]
fn read_only(file: &File) -> io::Result<fs::Permissions> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(true);
    Ok(permissions)
}

/// The sidecar path beside an object.
fn sidecar_path(object: &Path) -> PathBuf {
    let mut name = object.as_os_str().to_owned();
    name.push(SIDECAR_SUFFIX);
    PathBuf::from(name)
}

/// Writes the sidecar unless one exists; returns whether this call created it.
///
/// The no-clobber rename is atomic, so of several concurrent writers exactly one record lands
/// and later puts never overwrite it.
fn write_sidecar_if_absent(
    tmp: &Path,
    object: &Path,
    provenance: &Provenance,
    kind: &str,
    size: u64,
) -> Result<bool> {
    let sidecar = sidecar_path(object);
    if sidecar.try_exists().map_err(io_at(&sidecar))? {
        return Ok(false);
    }
    let record = ProvenanceRecord::now(provenance, kind, size)
        .map_err(|e| io_at(&sidecar)(io::Error::other(e)))?;
    let json = serde_json::to_vec_pretty(&record).map_err(|source| StoreError::Provenance {
        path: sidecar.clone(),
        source,
    })?;
    let mut temp = new_temp(tmp)?;
    temp.as_file_mut()
        .write_all(&json)
        .map_err(io_at(temp.path()))?;
    seal(&temp)?;
    match temp.persist_noclobber(&sidecar) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::Io {
            path: sidecar,
            source: e.error,
        }),
    }
}

/// Creates a directory if missing and, when it was created, flushes its parent so the new
/// entry survives a crash.
fn create_dir_durable(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => sync_parent(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// Flushes the directory holding `path`, making renames and creations in it durable.
fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Other platforms cannot open a directory to flush it; their renames are what they are.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}
