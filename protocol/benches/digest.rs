//! Canonical digest of a ~1 MiB artifact against plain `serde_json::to_vec` of the same
//! value, and blob hashing throughput, in one run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use protocol::{canonical, Digest};
use serde_json::{json, Value};
use std::hint::black_box;

/// A plan-shaped artifact of about 1 MiB: many effects with paths, ids and numbers.
fn artifact() -> Value {
    let effects: Vec<Value> = (0..4000)
        .map(|i| {
            json!({
                "type": "fs.write",
                "resource": format!("repo/src/module_{i}/file_{i}.rs"),
                "path": format!("src/module_{i}/file_{i}.rs"),
                "before": format!("{:040x}", i * 7919),
                "after": format!("{:040x}", i * 104729),
                "mode": "100644",
                "size": i * 37,
                "ratio": f64::from(i) / 7.0,
                "note": "é ü 😀 \"quoted\" \\ tab\t",
            })
        })
        .collect();
    json!({"kind": "mechanism.plan/v0", "operation": "apply", "intended_effects": effects})
}

fn canonical_digest(c: &mut Criterion) {
    let value = artifact();
    let bytes = serde_json::to_vec(&value).unwrap();
    let mut group = c.benchmark_group("artifact_1MiB");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("serde_json::to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)).unwrap())
    });
    group.bench_function("canonical::digest", |b| {
        b.iter(|| canonical::digest(black_box(&value)).unwrap())
    });
    group.bench_function("canonical::parse+digest", |b| {
        b.iter(|| canonical::digest(&canonical::parse(black_box(&bytes)).unwrap()).unwrap())
    });
    group.finish();
}

fn blob_hash(c: &mut Criterion) {
    let blob: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut group = c.benchmark_group("blob_64MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(blob.len() as u64));
    group.bench_function("Digest::of_reader", |b| {
        b.iter(|| Digest::of_reader(black_box(&blob[..])).unwrap())
    });
    group.finish();
}

criterion_group!(benches, canonical_digest, blob_hash);
criterion_main!(benches);
