//! The object store as its users see it: round trips, streaming, corruption, provenance,
//! crash safety (no stray temporary files), spent nonces and several processes writing at once.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::artifact::{Artifact, ArtifactError};
use protocol::canonical::{CanonError, MAX_NESTING_DEPTH};
use protocol::digest::Hasher;
use protocol::store::{NonceClaim, Provenance, Store, StoreError, StoreLocation, BLOB_KIND};
use protocol::{Digest, ErrorCode};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn prov(producer: &str) -> Provenance {
    Provenance::new(producer)
}

/// Deterministic pseudo-random bytes, generated on demand so no test holds them in memory.
struct Generated {
    state: u64,
    remaining: u64,
}

impl Generated {
    fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed | 1,
            remaining: len,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        for byte in &mut buf[..n] {
            // xorshift64: cheap and deterministic.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *byte = (self.state >> 24) as u8;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn generated_bytes(seed: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Generated::new(seed, len).read_to_end(&mut out).unwrap();
    out
}

/// Flips one byte of a stored object in place, as disk rot or a careless edit would.
fn flip_byte(path: &Path, at: usize) {
    let mut perms = fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(path, perms).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn tmp_entries(store: &Store) -> Vec<PathBuf> {
    fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Every object file (not sidecar) under `objects/`.
fn object_files(store: &Store) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fan in fs::read_dir(store.root().join("objects/sha256")).unwrap() {
        for entry in fs::read_dir(fan.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".prov.json") {
                out.push(path);
            }
        }
    }
    out
}

fn sidecar(store: &Store, digest: &Digest) -> PathBuf {
    let mut s = store.path_of(digest).into_os_string();
    s.push(".prov.json");
    PathBuf::from(s)
}

fn sample_artifact() -> Artifact {
    // Not canonical as written: keys out of order, whitespace, an escaped character.
    Artifact::from_bytes(
        br#"{ "title": "caf\u00e9", "kind": "mechanism.test/v0", "n": [3, 1, 2] }"#,
    )
    .unwrap()
}

#[test]
fn open_creates_the_layout_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let store = Store::open(&root).unwrap();
    assert_eq!(store.root(), root);
    assert!(root.join("objects/sha256").is_dir());
    assert!(root.join("tmp").is_dir());
    let d = store.put_blob_bytes(b"kept", &prov("t")).unwrap();
    let again = Store::open(&root).unwrap();
    assert_eq!(again.read_blob(&d, 100).unwrap(), b"kept");
}

#[test]
fn objects_are_filed_by_digest_with_a_sidecar_beside() {
    let (_dir, store) = new_store();
    let d = store.put_blob_bytes(b"hello", &prov("t")).unwrap();
    let hex = d.hex();
    let expected = store
        .root()
        .join("objects/sha256")
        .join(&hex[..2])
        .join(&hex[2..]);
    assert_eq!(store.path_of(&d), expected);
    assert_eq!(fs::read(&expected).unwrap(), b"hello");
    assert!(sidecar(&store, &d).is_file());
    assert!(store.contains(&d));
}

#[test]
fn artifact_round_trip_stores_canonical_bytes() {
    let (_dir, store) = new_store();
    let artifact = sample_artifact();
    let d = store.put_artifact(&artifact, &prov("t")).unwrap();
    assert_eq!(d, artifact.digest());
    let stored = fs::read(store.path_of(&d)).unwrap();
    assert_eq!(stored, artifact.canonical_bytes());
    assert_eq!(Digest::of_bytes(&stored), d);
    let back = store.get_artifact(&d).unwrap();
    assert_eq!(back.digest(), d);
    assert_eq!(back.value(), artifact.value());
    assert_eq!(back.kind(), "mechanism.test/v0");
    // A second put of the same artifact is a no-op that returns the same digest.
    assert_eq!(store.put_artifact(&artifact, &prov("t")).unwrap(), d);
    assert_eq!(object_files(&store).len(), 1);
}

#[test]
fn blob_round_trip_through_every_reader() {
    let (_dir, store) = new_store();
    let bytes = generated_bytes(7, 700_000);
    let d = store.put_blob_bytes(&bytes, &prov("t")).unwrap();
    assert_eq!(d, Digest::of_bytes(&bytes));
    assert_eq!(store.read_blob(&d, bytes.len() as u64).unwrap(), bytes);

    let mut copied = Vec::new();
    assert_eq!(
        store.copy_blob_to(&d, &mut copied).unwrap(),
        bytes.len() as u64
    );
    assert_eq!(copied, bytes);

    let mut streamed = Vec::new();
    store
        .open_verified(&d)
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed, bytes);

    store.verify(&d).unwrap();
    // The empty blob is an object too.
    let empty = store.put_blob_bytes(b"", &prov("t")).unwrap();
    assert_eq!(store.read_blob(&empty, 0).unwrap(), b"");
}

#[test]
fn streaming_put_of_64_mib_matches_of_reader() {
    const LEN: u64 = 64 * 1024 * 1024;
    let (_dir, store) = new_store();
    let d = store.put_blob(Generated::new(42, LEN), &prov("t")).unwrap();
    assert_eq!(d, Digest::of_reader(Generated::new(42, LEN)).unwrap());
    assert_eq!(fs::metadata(store.path_of(&d)).unwrap().len(), LEN);
    assert_eq!(store.provenance(&d).unwrap().unwrap().size, LEN);

    // Streaming out again without holding it: the copy hashes to the same digest.
    let mut sink = Hasher::new();
    assert_eq!(store.copy_blob_to(&d, &mut sink).unwrap(), LEN);
    assert_eq!(sink.finish(), d);
}

#[test]
fn a_flipped_byte_is_an_integrity_mismatch_on_every_read() {
    let (_dir, store) = new_store();
    let artifact = sample_artifact();
    let a = store.put_artifact(&artifact, &prov("t")).unwrap();
    let bytes = generated_bytes(3, 300_000);
    let b = store.put_blob_bytes(&bytes, &prov("t")).unwrap();
    flip_byte(&store.path_of(&a), 5);
    flip_byte(&store.path_of(&b), 299_999);

    let is_mismatch = |err: StoreError, digest: Digest| {
        assert_eq!(err.code(), ErrorCode::IntegrityMismatch, "{err}");
        assert!(
            matches!(err, StoreError::IntegrityMismatch { digest: d, actual } if d == digest && actual != digest)
        );
    };
    is_mismatch(store.get_artifact(&a).unwrap_err(), a);
    is_mismatch(store.verify(&a).unwrap_err(), a);
    is_mismatch(store.read_blob(&b, 1 << 20).unwrap_err(), b);
    is_mismatch(store.verify(&b).unwrap_err(), b);

    let mut out = Vec::new();
    is_mismatch(store.copy_blob_to(&b, &mut out).unwrap_err(), b);
    assert!(
        out.is_empty(),
        "a corrupt object leaked {} bytes",
        out.len()
    );

    let err = store
        .open_verified(&b)
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err.get_ref().unwrap().downcast_ref::<StoreError>().unwrap();
    assert_eq!(inner.code(), ErrorCode::IntegrityMismatch);
    // `contains` only says something is filed there; it does not vouch for the bytes.
    assert!(store.contains(&b));
}

#[test]
fn a_second_read_is_answered_from_the_cache_the_clones_share() {
    let (_dir, store) = new_store();
    let artifact = sample_artifact();
    let a = store.put_artifact(&artifact, &prov("t")).unwrap();
    let first = store.get_artifact_shared(&a).unwrap();
    assert_eq!(*first, artifact);
    // A clone of the store shares the cache: the same allocation comes back.
    let again = store.clone().get_artifact_shared(&a).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(store.get_artifact(&a).unwrap(), artifact);
}

#[test]
fn a_corrupt_artifact_is_caught_on_first_read_and_a_verified_one_is_trusted_after() {
    let (dir, store) = new_store();
    let artifact = sample_artifact();
    let a = store.put_artifact(&artifact, &prov("t")).unwrap();
    let b = store
        .put_artifact(
            &Artifact::from_value(json!({"kind": "mechanism.test/v0", "other": true})).unwrap(),
            &prov("t"),
        )
        .unwrap();

    // Corrupt before this process ever read it: the first read hashes the file and refuses.
    flip_byte(&store.path_of(&b), 3);
    let err = store.get_artifact(&b).unwrap_err();
    assert_eq!(err.code(), ErrorCode::IntegrityMismatch, "{err}");
    // A failed read is not cached: it fails again.
    let err = store.get_artifact_shared(&b).unwrap_err();
    assert_eq!(err.code(), ErrorCode::IntegrityMismatch, "{err}");

    // Corrupt after a verified read: objects are immutable by construction, so this
    // process trusts its verified copy, while `verify` and any other process re-hash.
    assert_eq!(store.get_artifact(&a).unwrap(), artifact);
    flip_byte(&store.path_of(&a), 5);
    assert_eq!(store.get_artifact(&a).unwrap(), artifact);
    assert_eq!(
        store.verify(&a).unwrap_err().code(),
        ErrorCode::IntegrityMismatch
    );
    let fresh = Store::open(dir.path().join("store")).unwrap();
    assert_eq!(
        fresh.get_artifact(&a).unwrap_err().code(),
        ErrorCode::IntegrityMismatch
    );
}

#[test]
fn a_put_repairs_a_corrupt_object_and_keeps_its_provenance() {
    let (_dir, store) = new_store();
    let d = store
        .put_blob_bytes(b"precious bytes", &prov("first"))
        .unwrap();
    flip_byte(&store.path_of(&d), 0);
    assert!(store.verify(&d).is_err());
    assert_eq!(
        store
            .put_blob_bytes(b"precious bytes", &prov("second"))
            .unwrap(),
        d
    );
    store.verify(&d).unwrap();
    assert_eq!(store.provenance(&d).unwrap().unwrap().producer, "first");

    let artifact = sample_artifact();
    let a = store.put_artifact(&artifact, &prov("t")).unwrap();
    flip_byte(&store.path_of(&a), 1);
    store.put_artifact(&artifact, &prov("t")).unwrap();
    assert_eq!(store.get_artifact(&a).unwrap().digest(), a);
    assert!(tmp_entries(&store).is_empty());
}

#[test]
fn a_missing_object_is_not_found_everywhere() {
    let (_dir, store) = new_store();
    let d = Digest::of_bytes(b"never stored");
    assert!(!store.contains(&d));
    let not_found = |err: StoreError| {
        assert_eq!(err.code(), ErrorCode::UnknownArtifact, "{err}");
        assert!(matches!(err, StoreError::NotFound(x) if x == d));
    };
    not_found(store.get_artifact(&d).unwrap_err());
    not_found(store.read_blob(&d, 10).unwrap_err());
    not_found(store.copy_blob_to(&d, io::sink()).unwrap_err());
    not_found(store.open_verified(&d).unwrap_err());
    not_found(store.verify(&d).unwrap_err());
    not_found(store.provenance(&d).unwrap_err());
}

#[test]
fn provenance_is_recorded_and_the_first_writer_wins() {
    let (_dir, store) = new_store();
    let parent = Digest::of_bytes(b"parent");
    let first = Provenance::new("planner")
        .with_derived_from([parent])
        .with_trace_id("trace-1");
    let before = OffsetDateTime::now_utc();
    let d = store.put_blob_bytes(b"derived", &first).unwrap();

    let record = store.provenance(&d).unwrap().unwrap();
    assert_eq!(record.producer, "planner");
    assert_eq!(record.derived_from, vec![parent]);
    assert_eq!(record.trace_id.as_deref(), Some("trace-1"));
    assert_eq!(record.kind, BLOB_KIND);
    assert_eq!(record.size, 7);
    let at = OffsetDateTime::parse(&record.created_at, &Rfc3339).unwrap();
    assert!(at.offset().is_utc(), "{}", record.created_at);
    assert!(record.created_at.ends_with('Z'), "{}", record.created_at);
    assert!(at >= before - time::Duration::seconds(1));
    assert!(at <= OffsetDateTime::now_utc() + time::Duration::seconds(1));

    // Time and origin stay out of the hash: another producer gets the same digest, and the
    // first record is kept.
    let second = Provenance::new("someone else").with_trace_id("trace-2");
    assert_eq!(store.put_blob_bytes(b"derived", &second).unwrap(), d);
    assert_eq!(store.provenance(&d).unwrap().unwrap(), record);

    let artifact = sample_artifact();
    let a = store.put_artifact(&artifact, &prov("t")).unwrap();
    let record = store.provenance(&a).unwrap().unwrap();
    assert_eq!(record.kind, "mechanism.test/v0");
    assert_eq!(record.size, artifact.canonical_bytes().len() as u64);
    assert!(record.derived_from.is_empty());
    assert_eq!(record.trace_id, None);
}

#[test]
fn an_object_without_a_sidecar_has_no_provenance_until_put_again() {
    let (_dir, store) = new_store();
    let d = store.put_blob_bytes(b"x", &prov("first")).unwrap();
    // As if a crash struck between the object's rename and the sidecar's.
    fs::remove_file(sidecar(&store, &d)).unwrap();
    assert_eq!(store.provenance(&d).unwrap(), None);
    store.put_blob_bytes(b"x", &prov("second")).unwrap();
    assert_eq!(store.provenance(&d).unwrap().unwrap().producer, "second");
}

#[test]
fn no_temporary_file_is_left_behind_even_when_a_put_fails() {
    struct FailsHalfway(Generated);
    impl Read for FailsHalfway {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::other("connection reset")),
                n => Ok(n),
            }
        }
    }

    let (_dir, store) = new_store();
    store.put_blob_bytes(b"one", &prov("t")).unwrap();
    store.put_blob_bytes(b"one", &prov("t")).unwrap();
    store.put_artifact(&sample_artifact(), &prov("t")).unwrap();
    store
        .put_blob(Generated::new(1, 3_000_000), &prov("t"))
        .unwrap();
    assert!(tmp_entries(&store).is_empty());

    let err = store
        .put_blob(FailsHalfway(Generated::new(2, 1_000_000)), &prov("t"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Input(_)), "{err}");
    assert!(tmp_entries(&store).is_empty());
    assert_eq!(object_files(&store).len(), 3);
}

#[cfg(unix)]
#[test]
fn objects_and_sidecars_are_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = new_store();
    let d = store.put_blob_bytes(b"fixed", &prov("t")).unwrap();
    for path in [store.path_of(&d), sidecar(&store, &d)] {
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{}", path.display());
    }
}

#[test]
fn read_blob_refuses_an_object_bigger_than_asked() {
    let (_dir, store) = new_store();
    let d = store.put_blob_bytes(&[7; 1000], &prov("t")).unwrap();
    let err = store.read_blob(&d, 999).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MessageTooLarge);
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 1000,
                max: 999,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.read_blob(&d, 1000).unwrap().len(), 1000);
}

#[test]
fn get_artifact_refuses_a_blob_that_is_not_an_artifact() {
    let (_dir, store) = new_store();
    let not_json = store
        .put_blob_bytes(b"diff --git a/x b/x", &prov("t"))
        .unwrap();
    let err = store.get_artifact(&not_json).unwrap_err();
    assert!(matches!(err, StoreError::Artifact { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::InvalidParams);

    // Not I-JSON: a lone surrogate, or nesting beyond the bound, named as such. The frame
    // reader answers these as PARSE_ERROR; the store refuses them as artifacts, as ever.
    let deep = format!(
        "{{\"kind\":\"mechanism.test/v0\",\"x\":{}{}}}",
        "[".repeat(MAX_NESTING_DEPTH),
        "]".repeat(MAX_NESTING_DEPTH)
    );
    let lone = br#"{"kind":"mechanism.test/v0","x":"\ud800"}"#;
    for (bytes, lone_surrogate) in [(&lone[..], true), (deep.as_bytes(), false)] {
        let stored = store.put_blob_bytes(bytes, &prov("t")).unwrap();
        let err = store.get_artifact(&stored).unwrap_err();
        let StoreError::Artifact {
            source: ArtifactError::Canon(canon),
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            matches!(canon, CanonError::LoneSurrogate { .. }),
            lone_surrogate,
            "{err:?}"
        );
        assert_eq!(
            matches!(canon, CanonError::TooDeep { .. }),
            !lone_surrogate,
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::InvalidParams);
    }

    // Valid JSON, but not canonical: its bytes hash to another digest than the artifact.
    let loose = store
        .put_blob_bytes(br#"{ "kind": "mechanism.test/v0" }"#, &prov("t"))
        .unwrap();
    let err = store.get_artifact(&loose).unwrap_err();
    assert!(
        matches!(err, StoreError::NotCanonical(d) if d == loose),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::InvalidParams);

    // Canonical bytes put as a blob are the artifact: same bytes, same digest.
    let artifact = sample_artifact();
    let as_blob = store
        .put_blob_bytes(&artifact.canonical_bytes(), &prov("t"))
        .unwrap();
    assert_eq!(as_blob, artifact.digest());
    assert_eq!(store.get_artifact(&as_blob).unwrap().digest(), as_blob);
}

// ---- named references ---------------------------------------------------------------------

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Witnessed {
    admission: Digest,
}

#[test]
fn a_reference_is_absent_then_set_then_replaced_whole() {
    let (_dir, store) = new_store();
    let plan = Digest::of_bytes(b"plan");
    assert_eq!(
        store
            .get_ref::<Witnessed>("admissions", &plan.hex())
            .unwrap(),
        None
    );

    let first = Witnessed {
        admission: Digest::of_bytes(b"a1"),
    };
    store.set_ref("admissions", &plan.hex(), &first).unwrap();
    let path = store
        .root()
        .join("refs/admissions")
        .join(format!("{}.json", plan.hex()));
    assert_eq!(store.ref_path("admissions", &plan.hex()).unwrap(), path);
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk, json!({ "admission": Digest::of_bytes(b"a1") }));
    assert_eq!(
        store.get_ref("admissions", &plan.hex()).unwrap(),
        Some(first)
    );

    // An untyped JSON value replaces the typed record; it reads back either way.
    let second = json!({ "admission": Digest::of_bytes(b"a2").to_string() });
    store.set_ref("admissions", &plan.hex(), &second).unwrap();
    assert_eq!(
        store
            .get_ref::<serde_json::Value>("admissions", &plan.hex())
            .unwrap(),
        Some(second)
    );
    assert_eq!(
        store
            .get_ref::<Witnessed>("admissions", &plan.hex())
            .unwrap()
            .unwrap()
            .admission,
        Digest::of_bytes(b"a2")
    );
    // Another namespace is another name.
    assert_eq!(
        store.get_ref::<Witnessed>("results", &plan.hex()).unwrap(),
        None
    );
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
}

#[test]
fn references_are_listed_by_key_and_removed() {
    let (_dir, store) = new_store();
    assert_eq!(store.ref_keys("executions").unwrap(), Vec::<String>::new());
    let record = Witnessed {
        admission: Digest::of_bytes(b"a"),
    };
    for key in ["b2", "a1"] {
        store.set_ref("executions", key, &record).unwrap();
    }
    // A stray file that is not a reference is not listed.
    fs::write(store.root().join("refs/executions/.put-x"), b"{}").unwrap();
    assert_eq!(store.ref_keys("executions").unwrap(), ["a1", "b2"]);

    store.remove_ref("executions", "a1").unwrap();
    assert_eq!(store.ref_keys("executions").unwrap(), ["b2"]);
    assert_eq!(
        store.get_ref::<Witnessed>("executions", "a1").unwrap(),
        None
    );
    // Removing what is not there is no error, and hostile names are refused as for set.
    store.remove_ref("executions", "a1").unwrap();
    assert!(store.remove_ref("executions", "../x").is_err());
    assert!(store.ref_keys("../refs").is_err());
}

#[test]
fn reference_names_that_are_not_plain_file_names_are_refused() {
    let (_dir, store) = new_store();
    let long = "a".repeat(201);
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../x",
        "a\\b",
        "A",
        "x y",
        "caf\u{e9}",
        "a\0b",
        &long,
    ] {
        for (namespace, key) in [(bad, "key"), ("ns", bad)] {
            let err = store.set_ref(namespace, key, &json!({})).unwrap_err();
            assert!(
                matches!(err, StoreError::BadRefName { .. }),
                "{bad:?}: {err}"
            );
            assert_eq!(err.code(), ErrorCode::InvalidParams);
            let err = store
                .get_ref::<serde_json::Value>(namespace, key)
                .unwrap_err();
            assert!(
                matches!(err, StoreError::BadRefName { .. }),
                "{bad:?}: {err}"
            );
            assert!(store.ref_path(namespace, key).is_err(), "{bad:?}");
        }
    }
    // Nothing was written anywhere, inside the store or beside it.
    assert!(!store.root().join("refs").exists());
    let beside: Vec<_> = fs::read_dir(store.root().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["store"]);

    let longest = "a".repeat(200);
    for good in ["a", "0.9_x-y", "sha256.ab", longest.as_str()] {
        store.set_ref(good, good, &json!({"ok": true})).unwrap();
        assert_eq!(
            store.get_ref(good, good).unwrap(),
            Some(json!({"ok": true}))
        );
    }
}

#[test]
fn a_torn_or_oversized_reference_is_an_error_callers_can_tell_apart() {
    let (_dir, store) = new_store();
    store
        .set_ref("results", "p", &json!({"result": "x"}))
        .unwrap();
    let path = store.ref_path("results", "p").unwrap();

    fs::write(&path, b"{\"result\":").unwrap();
    let err = store
        .get_ref::<serde_json::Value>("results", "p")
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::BadRef { path, .. } if path.ends_with("refs/results/p.json")),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::InternalError);

    // Intact JSON of the wrong shape is just as unusable.
    fs::write(&path, b"{\"admission\": 1}").unwrap();
    let err = store.get_ref::<Witnessed>("results", "p").unwrap_err();
    assert!(matches!(err, StoreError::BadRef { .. }), "{err}");

    let max = usize::try_from(protocol::store::refs::MAX_REF_BYTES).unwrap();
    fs::write(&path, format!("\"{}\"", "x".repeat(max))).unwrap();
    let err = store
        .get_ref::<serde_json::Value>("results", "p")
        .unwrap_err();
    assert!(matches!(err, StoreError::BadRef { .. }), "{err}");
    let err = store.set_ref("results", "p", &"x".repeat(max)).unwrap_err();
    assert!(matches!(err, StoreError::BadRef { .. }), "{err}");

    // A write replaces the damaged record.
    store
        .set_ref("results", "p", &json!({"result": "y"}))
        .unwrap();
    assert_eq!(
        store.get_ref("results", "p").unwrap(),
        Some(json!({"result": "y"}))
    );
}

const NONCE: &str = "00112233445566778899aabbccddeeff";

#[test]
fn a_nonce_is_claimed_once_in_its_file_under_nonces() {
    let (_dir, store) = new_store();
    let (plan, other) = (Digest::of_bytes(b"plan"), Digest::of_bytes(b"other plan"));
    assert!(!store.nonce_spent(NONCE).unwrap());
    assert_eq!(store.nonce_claim(NONCE).unwrap(), None);

    assert_eq!(
        store.claim_nonce(NONCE, &plan).unwrap(),
        NonceClaim::Claimed
    );
    // The layout the specification and mechanisms in other languages share.
    let path = store.root().join("nonces").join(NONCE);
    assert_eq!(store.nonce_path(NONCE).unwrap(), path);
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{plan}\n"));

    // Spent for good, whoever asks next and for whatever plan; the first claim stands.
    let reopened = Store::open(store.root()).unwrap();
    assert_eq!(
        reopened.claim_nonce(NONCE, &other).unwrap(),
        NonceClaim::Spent
    );
    assert!(reopened.nonce_spent(NONCE).unwrap());
    assert_eq!(reopened.nonce_claim(NONCE).unwrap(), Some(plan));
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{plan}\n"));
}

#[test]
fn malformed_nonces_name_no_file_and_touch_nothing() {
    let (_dir, store) = new_store();
    let before = fs::read_dir(store.root()).unwrap().count();
    let plan = Digest::of_bytes(b"plan");
    for bad in [
        "",
        "../../../../../../../../../../x",
        "00112233445566778899AABBCCDDEEFF",
        "00112233445566778899aabbccddeef",
        "00112233445566778899aabbccddeeff0",
    ] {
        let errors = [
            store.nonce_path(bad).unwrap_err(),
            store.claim_nonce(bad, &plan).unwrap_err(),
            store.nonce_spent(bad).unwrap_err(),
            store.nonce_claim(bad).unwrap_err(),
        ];
        for error in errors {
            assert!(matches!(&error, StoreError::BadNonce { nonce, .. } if nonce == bad));
            assert_eq!(error.code(), ErrorCode::InvalidParams);
            assert!(error.to_string().contains("32 lowercase hex"), "{error}");
        }
    }
    assert_eq!(fs::read_dir(store.root()).unwrap().count(), before);
}

#[test]
fn a_claim_that_names_no_plan_is_an_error_not_an_absence() {
    let (_dir, store) = new_store();
    let plan = Digest::of_bytes(b"plan");
    let path = store.nonce_path(NONCE).unwrap();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let oversized = format!("{plan}{}\n", " ".repeat(2000));
    for torn in ["", "sha256:00", "not a digest\n", oversized.as_str()] {
        fs::write(&path, torn).unwrap();
        let error = store.nonce_claim(NONCE).unwrap_err();
        assert!(
            matches!(&error, StoreError::BadNonceClaim { path: p, .. } if *p == path),
            "{torn:?}: {error}"
        );
        assert_eq!(error.code(), ErrorCode::InternalError);
        // Whatever it holds, the nonce is spent.
        assert!(store.nonce_spent(NONCE).unwrap());
        assert_eq!(store.claim_nonce(NONCE, &plan).unwrap(), NonceClaim::Spent);
    }
}

#[test]
fn readers_never_see_a_half_written_reference() {
    let (_dir, store) = new_store();
    let record = |writer: usize, round: usize| json!({"writer": writer, "round": round, "pad": "p".repeat(4000 + round)});
    store.set_ref("results", "p", &record(0, 0)).unwrap();
    std::thread::scope(|scope| {
        for writer in 1..=4 {
            let store = &store;
            scope.spawn(move || {
                for round in 0..50 {
                    store
                        .set_ref("results", "p", &record(writer, round))
                        .unwrap();
                }
            });
        }
        for _ in 0..200 {
            let seen: serde_json::Value = store.get_ref("results", "p").unwrap().unwrap();
            let writer = usize::try_from(seen["writer"].as_u64().unwrap()).unwrap();
            let round = usize::try_from(seen["round"].as_u64().unwrap()).unwrap();
            assert_eq!(seen, record(writer, round));
        }
    });
    assert!(tmp_entries(&store).is_empty());
}

// ---- several processes writing at once ----------------------------------------------------

/// The test's path in the `integration` test executable, for the writer processes to run.
const CONCURRENT_TEST: &str = "store::several_processes_put_the_same_and_distinct_objects_at_once";
const ROLE_ROOT_ENV: &str = "PROTOCOL_STORE_TEST_WRITER_ROOT";
const ROLE_ID_ENV: &str = "PROTOCOL_STORE_TEST_WRITER_ID";
const WRITERS: usize = 4;
const SHARED: usize = 200;
const DISTINCT: usize = 20;

/// One object every writer puts: artifacts and blobs of assorted sizes.
enum Object {
    Artifact(Artifact),
    Blob(Vec<u8>),
}

impl Object {
    fn shared(i: usize) -> Self {
        if i.is_multiple_of(2) {
            Self::Artifact(
                Artifact::from_value(json!({
                    "kind": "mechanism.test/v0",
                    "i": i,
                    "pad": "p".repeat(i * 37 % 5000),
                }))
                .unwrap(),
            )
        } else {
            Self::Blob(generated_bytes(i as u64, (i as u64 * 7919) % 400_000))
        }
    }

    fn distinct(writer: usize, j: usize) -> Self {
        Self::Blob(generated_bytes(
            1_000_000 + (writer * DISTINCT + j) as u64,
            50_000 + j as u64,
        ))
    }

    fn digest(&self) -> Digest {
        match self {
            Self::Artifact(a) => a.digest(),
            Self::Blob(b) => Digest::of_bytes(b),
        }
    }

    fn put(&self, store: &Store, provenance: &Provenance) -> Digest {
        match self {
            Self::Artifact(a) => store.put_artifact(a, provenance).unwrap(),
            Self::Blob(b) => store.put_blob_bytes(b, provenance).unwrap(),
        }
    }
}

/// The child role: wait for the start signal so all writers overlap, then put everything.
fn run_writer(root: &Path, id: usize) {
    let go = root.join("go");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() {
        assert!(
            Instant::now() < deadline,
            "writer {id} never got the start signal"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let store = Store::open(root.join("store")).unwrap();
    let provenance = Provenance::new(format!("writer {id}"));
    for i in 0..SHARED {
        let object = Object::shared(i);
        assert_eq!(object.put(&store, &provenance), object.digest());
    }
    for j in 0..DISTINCT {
        let object = Object::distinct(id, j);
        assert_eq!(object.put(&store, &provenance), object.digest());
    }
}

#[test]
fn several_processes_put_the_same_and_distinct_objects_at_once() {
    if let Ok(root) = std::env::var(ROLE_ROOT_ENV) {
        let id = std::env::var(ROLE_ID_ENV).unwrap().parse().unwrap();
        run_writer(Path::new(&root), id);
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    CONCURRENT_TEST,
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ROLE_ROOT_ENV, dir.path())
                .env(ROLE_ID_ENV, id.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    fs::write(dir.path().join("go"), b"").unwrap();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "writer failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Guards against a filter that matched nothing and "passed" without writing.
        assert!(stdout.contains("1 passed"), "writer did not run:\n{stdout}");
    }

    let store = Store::open(dir.path().join("store")).unwrap();
    let shared = (0..SHARED).map(Object::shared);
    let distinct = (0..WRITERS).flat_map(|w| (0..DISTINCT).map(move |j| Object::distinct(w, j)));
    let mut expected = 0;
    for object in shared.chain(distinct) {
        let d = object.digest();
        store.verify(&d).unwrap();
        let record = store.provenance(&d).unwrap().unwrap();
        assert!(record.producer.starts_with("writer "), "{record:?}");
        match &object {
            Object::Artifact(a) => {
                assert_eq!(store.get_artifact(&d).unwrap().digest(), d);
                assert_eq!(record.kind, a.kind());
            }
            Object::Blob(b) => {
                assert_eq!(store.read_blob(&d, 1 << 20).unwrap(), *b);
                assert_eq!(record.kind, BLOB_KIND);
            }
        }
        expected += 1;
    }
    assert_eq!(object_files(&store).len(), expected);
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
}

#[test]
fn the_store_knows_where_it_lies_inside_a_root_however_the_root_is_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let store = Store::open(root.join("repo/.mechanism")).unwrap();
    let location = store.location_within(&root).unwrap().expect("inside");
    assert_eq!(location.resource, "repo/.mechanism");
    // Through a symlink and a `..` the root is the same directory.
    std::os::unix::fs::symlink(&root, dir.path().join("link")).unwrap();
    let spelled = dir.path().join("link/repo/..");
    assert_eq!(
        store.location_within(&spelled).unwrap(),
        Some(location.clone())
    );
    for inside in [
        "repo/.mechanism",
        "repo/.mechanism/nonces/ab",
        "REPO/.Mechanism/refs/x",
    ] {
        assert!(location.contains(inside), "{inside}");
    }
    for outside in [
        "repo/.mechanism2/x",
        "repo/.mechanis",
        "repo",
        "other/.mechanism/x",
    ] {
        assert!(!location.contains(outside), "{outside}");
    }
    // A store elsewhere is not in the root; a store that is the root holds everything.
    let elsewhere = Store::open(dir.path().join("store")).unwrap();
    assert_eq!(elsewhere.location_within(&root).unwrap(), None);
    let whole = Store::open(&root).unwrap().location_within(&root).unwrap();
    assert_eq!(
        whole,
        Some(StoreLocation {
            resource: String::new()
        })
    );
    assert!(whole.unwrap().contains("repo/src/lib.rs"));
}
