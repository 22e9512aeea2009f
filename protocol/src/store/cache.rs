//! A bounded in-memory cache of parsed artifacts whose stored bytes were verified against
//! their digest.
//!
//! An object is immutable by construction (its name is the hash of its bytes), so once this
//! process has read it and checked the hash, it trusts the parsed copy: a hit costs no IO, no
//! hashing and no parsing. Every object is still verified when first read by the process.
//! Corruption of the file after that read is not seen by [`Store::get_artifact`] until the
//! entry is evicted; [`Store::verify`] always re-hashes the file.
//!
//! Entries are dropped oldest first once the count or the total of their canonical sizes
//! would exceed the bounds, so memory stays bounded whatever is read.
//!
//! [`Store::get_artifact`]: super::Store::get_artifact
//! [`Store::verify`]: super::Store::verify

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::artifact::Artifact;
use crate::digest::Digest;

/// The most artifacts one store's cache holds.
pub const CACHE_MAX_ENTRIES: usize = 1024;

/// The most canonical bytes the artifacts in one store's cache add up to. Parsed JSON takes
/// a few times its canonical size, so this keeps the cache to tens of MiB; a bigger artifact
/// is never cached, only read.
pub const CACHE_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Verified artifacts by digest, shared by the clones of one [`super::Store`].
pub(super) struct ArtifactCache {
    max_entries: usize,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Digest, (Arc<Artifact>, u64)>,
    /// Digests in insertion order, oldest first: the eviction order.
    order: VecDeque<Digest>,
    bytes: u64,
}

impl ArtifactCache {
    /// An empty cache of at most `max_entries` artifacts and `max_bytes` canonical bytes.
    pub(super) fn new(max_entries: usize, max_bytes: u64) -> Self {
        Self {
            max_entries,
            max_bytes,
            inner: Mutex::default(),
        }
    }

    /// The cached artifact filed under `digest`, if any.
    pub(super) fn get(&self, digest: &Digest) -> Option<Arc<Artifact>> {
        // A poisoned lock only costs the cache: the caller reads from disk.
        let inner = self.inner.lock().ok()?;
        inner.entries.get(digest).map(|(a, _)| Arc::clone(a))
    }

    /// Caches `artifact`, whose `size` canonical bytes the caller verified against its digest.
    /// Evicts the oldest entries to stay within the bounds; one that alone exceeds them is
    /// not cached.
    pub(super) fn insert(&self, artifact: Arc<Artifact>, size: u64) {
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let digest = artifact.digest();
        if inner.entries.contains_key(&digest) {
            return;
        }
        while inner.entries.len() >= self.max_entries || inner.bytes + size > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, freed)) = inner.entries.remove(&oldest) {
                inner.bytes -= freed;
            }
        }
        inner.entries.insert(digest, (artifact, size));
        inner.order.push_back(digest);
        inner.bytes += size;
    }

    /// How many artifacts are cached and their total canonical size.
    pub(super) fn usage(&self) -> (usize, u64) {
        self.inner
            .lock()
            .map_or((0, 0), |inner| (inner.entries.len(), inner.bytes))
    }
}

impl fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("ArtifactCache")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn artifact(i: usize) -> Arc<Artifact> {
        Arc::new(Artifact::from_value(json!({"kind": "test/v0", "i": i})).unwrap())
    }

    #[test]
    fn the_count_never_exceeds_its_bound_and_the_oldest_go_first() {
        let cache = ArtifactCache::new(3, 1 << 20);
        for i in 0..10 {
            cache.insert(artifact(i), 10);
            let (entries, bytes) = cache.usage();
            assert!(entries <= 3, "{entries} entries after {} inserts", i + 1);
            assert_eq!(bytes, entries as u64 * 10);
        }
        assert!(cache.get(&artifact(6).digest()).is_none());
        for i in 7..10 {
            assert_eq!(cache.get(&artifact(i).digest()), Some(artifact(i)));
        }
    }

    #[test]
    fn the_bytes_never_exceed_their_bound_and_an_oversized_artifact_is_not_cached() {
        let cache = ArtifactCache::new(100, 25);
        for i in 0..10 {
            cache.insert(artifact(i), 10);
            let (entries, bytes) = cache.usage();
            assert!(bytes <= 25, "{bytes} bytes after {} inserts", i + 1);
            assert_eq!(entries, (i + 1).min(2));
        }
        cache.insert(artifact(99), 26);
        assert!(cache.get(&artifact(99).digest()).is_none());
        assert_eq!(cache.usage(), (2, 20));
    }

    #[test]
    fn inserting_a_cached_artifact_again_counts_it_once() {
        let cache = ArtifactCache::new(10, 100);
        cache.insert(artifact(1), 10);
        cache.insert(artifact(1), 10);
        assert_eq!(cache.usage(), (1, 10));
    }
}
